r"""Scaled dot-product self-attention (single- and multi-head) and the pre-norm Transformer block.

Both follow PyTorch exactly (``torch.nn.MultiheadAttention(d, h, batch_first=True)`` called as
``mha(X, X, X, need_weights=False, attn_mask=M)``), so that a torch user's numbers match (float64).

Sequences and their flattening
------------------------------
One sample is a sequence :math:`\mathbf X\in\mathbb R^{T\times d}`: ``T`` tokens, one per *row*.  It is
flattened row-major, :math:`\mathbf x = \operatorname{vec}_r\mathbf X` (the tokens stacked,
:math:`x_{td+j} = X_{tj}`), the toolkit's convention for every shaped input; then
:math:`\operatorname{vec}_r(\mathbf A\mathbf X\mathbf B^\top) = (\mathbf A\otimes\mathbf B)\operatorname{vec}_r\mathbf X`.
Every Jacobian below is with respect to these flattened vectors, and parameters are vectorized
row-major (``order="C"``) or column-major (``"F"``) as the convention says.

Self-attention (Vaswani et al., *Attention Is All You Need*, 2017, eqs. (1)-(2); torch's layout)
-----------------------------------------------------------------------------------------------
Parameters in torch's ``Linear`` layout ``(out, in)``: :math:`\mathbf W_Q,\mathbf W_K,\mathbf W_V,\mathbf W_O\in\mathbb R^{d\times d}`
(torch's ``in_proj_weight`` is :math:`[\mathbf W_Q;\mathbf W_K;\mathbf W_V]`, ``out_proj.weight`` is :math:`\mathbf W_O`) and,
with ``bias=True``, :math:`\mathbf b_Q,\mathbf b_K,\mathbf b_V,\mathbf b_O\in\mathbb R^d`.  With ``h`` heads of width
:math:`d_k = d/h` (head :math:`j` owns the columns :math:`jd_k,\dots,(j+1)d_k-1`):

.. math::

   \mathbf Q = \mathbf X\mathbf W_Q^\top + \mathbf 1\mathbf b_Q^\top,\quad
   \mathbf K = \mathbf X\mathbf W_K^\top + \mathbf 1\mathbf b_K^\top,\quad
   \mathbf V = \mathbf X\mathbf W_V^\top + \mathbf 1\mathbf b_V^\top,

   \mathbf S_j = \mathbf Q_j\mathbf K_j^\top/\sqrt{d_k} + \mathbf M,\qquad
   \mathbf P_j = \operatorname{softmax}_\text{rows}(\mathbf S_j),\qquad
   \mathbf C = [\mathbf P_1\mathbf V_1,\dots,\mathbf P_h\mathbf V_h],\qquad
   \mathbf Y = \mathbf C\mathbf W_O^\top + \mathbf 1\mathbf b_O^\top ,

with :math:`M_{ts} = -\infty` where token ``t`` may not attend to token ``s`` (the causal mask
:math:`s > t`, or torch's boolean ``attn_mask``: ``True`` = masked) and 0 elsewhere.  The softmax is
the stable one (each row shifted by its maximum), so logits of size :math:`10^4` are exact.

The key bias cancels: :math:`\mathbf b_K` adds :math:`\mathbf q_t^\top\mathbf b_K` to every logit of row ``t``, which the
softmax removes.  The logits are therefore formed from :math:`\mathbf X\mathbf W_K^\top` (equal in exact
arithmetic to torch's), so :math:`\mathbf J_{\mathbf b_K}\mathbf y = \mathbf 0` exactly; torch's gradient of
``in_proj_bias[d:2d]`` is rounding noise (:math:`\sim 10^{-17}`).  The parameter is kept, as torch keeps it.

Jacobians.  Row ``t`` of :math:`\mathbf P_j` is :math:`\mathbf p = \operatorname{softmax}(\mathbf s)` with the Jacobian
:math:`\mathbf J_{\mathbf s}\mathbf p = \operatorname{diag}(\mathbf p) - \mathbf p\mathbf p^\top` (symmetric, rank
:math:`\le T-1`).  Then, for head :math:`j` and query token :math:`t`
(:math:`\mathbf c_{t,j} = \mathbf V_j^\top\mathbf p_{t,j}`):

.. math::

   \frac{\partial\mathbf c_{t,j}}{\partial\mathbf q_{t,j}} = \tfrac{1}{\sqrt{d_k}}\mathbf V_j^\top(\operatorname{diag}\mathbf p_{t,j}-\mathbf p_{t,j}\mathbf p_{t,j}^\top)\mathbf K_j,\qquad
   \frac{\partial\mathbf c_{t,j}}{\partial\mathbf k_{s,j}} = \tfrac{1}{\sqrt{d_k}}\big[\mathbf V_j^\top(\operatorname{diag}\mathbf p_{t,j}-\mathbf p_{t,j}\mathbf p_{t,j}^\top)\big]_{:,s}\mathbf q_{t,j}^\top,\qquad
   \frac{\partial\mathbf c_{t,j}}{\partial\mathbf v_{s,j}} = (P_j)_{ts}\,\mathbf I_{d_k},

and, with :math:`\mathbf J_{\mathbf Q}\mathbf C`, :math:`\mathbf J_{\mathbf K}\mathbf C`, :math:`\mathbf J_{\mathbf V}\mathbf C` the
``(Td, Td)`` matrices of these blocks (zero across heads; :math:`\mathbf J_{\mathbf Q}\mathbf C` also zero across tokens),

.. math::

   \mathbf J_{\mathbf x}\mathbf y = (\mathbf I_T\otimes\mathbf W_O)\big[\mathbf J_{\mathbf Q}\mathbf C\;\;\mathbf J_{\mathbf K}\mathbf C\;\;\mathbf J_{\mathbf V}\mathbf C\big]
   \begin{bmatrix}\mathbf I_T\otimes\mathbf W_Q\\ \mathbf I_T\otimes\mathbf W_K\\ \mathbf I_T\otimes\mathbf W_V\end{bmatrix},\qquad
   \mathbf J_{\operatorname{vec}\mathbf W_Q}\mathbf y = (\mathbf I_T\otimes\mathbf W_O)\,\mathbf J_{\mathbf Q}\mathbf C\,
   \begin{bmatrix}\mathbf I_d\otimes\mathbf x_1^\top\\ \vdots\\ \mathbf I_d\otimes\mathbf x_T^\top\end{bmatrix}

(the last factor the token-wise Kronecker stack :class:`~jacobian_bp.layers.linear.TokenwiseWeight`;
likewise for ``K``, ``V``; :math:`\mathbf J_{\mathbf b_Q}\mathbf y = (\mathbf I_T\otimes\mathbf W_O)\mathbf J_{\mathbf Q}\mathbf C(\mathbf 1_T\otimes\mathbf I_d)`;
:math:`\mathbf J_{\operatorname{vec}\mathbf W_O}\mathbf y` is the token-wise stack of :math:`\mathbf I_d\otimes\mathbf c_t^\top`).
:meth:`SelfAttention.attention_jacobians` returns these factors; :meth:`SelfAttention.structured_input_jacobian`
their product as an operator.

The operators the engine uses (:class:`AttentionInputJacobian`, :class:`AttentionParamJacobian`) apply the
same matrices without forming them: a product :math:`\mathbf M\mathbf J` with ``k`` rows is the
backward pass of attention run on ``k`` cotangents at once (the classic gradients, e.g.
Dao et al., *FlashAttention*, 2022, Alg. 2: :math:`d\mathbf V_j = \mathbf P_j^\top d\mathbf O_j`,
:math:`d\mathbf P_j = d\mathbf O_j\mathbf V_j^\top`, :math:`d\mathbf S_j = \mathbf P_j\odot(d\mathbf P_j - \operatorname{rowsum}(d\mathbf P_j\odot\mathbf P_j))`,
:math:`d\mathbf Q_j = d\mathbf S_j\mathbf K_j/\sqrt{d_k}`, :math:`d\mathbf K_j = d\mathbf S_j^\top\mathbf Q_j/\sqrt{d_k}`),
and :math:`\mathbf J\mathbf V` is the forward-mode pass.  Every batched product (``vjp_*``, ``jvp_*``,
``left_jac_input``) is vectorized with ``einsum``; SymPy entries (object arrays) go through the same
code with :func:`sympy.exp` and an unshifted softmax.

The Transformer block
---------------------
:class:`TransformerBlock` (``"transformer_block"``) is the pre-norm block (Xiong et al., *On Layer
Normalization in the Transformer Architecture*, 2020, Fig. 1(b); GPT-2):

.. math::

   \mathbf U = \mathbf X + \operatorname{MHA}(\operatorname{LN}_1(\mathbf X)),\qquad
   \mathbf Y = \mathbf U + \mathbf W_2\,\phi(\mathbf W_1\operatorname{LN}_2(\mathbf U) + \mathbf b_1) + \mathbf b_2
   \quad\text{(token-wise)},

two :class:`~jacobian_bp.layers.residual.Residual` blocks in sequence, so
:math:`\mathbf J_{\mathbf x}\mathbf y = (\mathbf I + \mathbf J_{\mathbf u}\,\text{MLP}\circ\operatorname{LN}_2)(\mathbf I + \mathbf J_{\mathbf x}\,\text{MHA}\circ\operatorname{LN}_1)`.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import DataError, ShapeError, SpecError, UnsupportedInputError
from ..backend.exact import real_number
from ..backend.operators import Operator, Product
from .attention_ops import (
    _QKV, _check_bool, _check_heads, _check_mask, _same_view, AttentionInputJacobian, AttentionParamJacobian, _Forward, _Memo, _Shared,
    factor_blocks, softmax_row_jacobians,
    structured_param_products, structured_product,
)
from .base import Layer
from .block_passes import KeptPass, block_backward, leaf_pass
from .lazy_operators import OperatorSum
from .linear import Linear
from .registry import register
from .residual import Residual
from .token_blocks import ChainBlock

__all__ = ["SelfAttention", "TransformerBlock", "AttentionInputJacobian", "AttentionParamJacobian",
           "softmax_row_jacobians"]

@register("self_attention")
class SelfAttention(Layer):
    r"""Multi-head scaled dot-product self-attention on a sequence ``(T, d)`` (``nn.MultiheadAttention``); see the module docstring.

    Parameters
    ----------
    heads : int
        :math:`h`; ``d`` must be divisible by it (default 1: single-head attention).
    causal : bool
        Token ``t`` attends to tokens ``s <= t`` only (default False).
    bias : bool
        Whether the projections have biases :math:`\mathbf b_Q,\mathbf b_K,\mathbf b_V,\mathbf b_O` (torch's ``bias``; default True).
    attn_mask : list of lists of bool, optional
        torch's boolean ``attn_mask`` ``(T, T)``: ``True`` where token ``t`` (row) may *not* attend to token
        ``s`` (column); combined with ``causal`` by "or".  Every row must leave a token to attend to.

    Raises
    ------
    SpecError
        ``heads`` not a positive integer, ``causal``/``bias`` not booleans, a mask that is not a list of
        lists of booleans.
    ShapeError
        At build: an input that is not ``(T, d)``, ``T = 0``, ``d`` not divisible by ``heads``, a mask
        whose shape is not ``(T, T)``, a mask row that masks every token.
    """

    kind = "self_attention"
    parametric = True
    torch_module_types = ("MultiheadAttention",)
    #: the block symbol of J_a o and its meaning
    block_symbol = ("A", r"\mathbf{{J}}_{{\mathbf{{x}}}}\operatorname{{MHA}}", r"\mathbf{{A}}^{{[{l}]}}")
    block_input_name = "A"
    #: LaTeX letters of the parameters (the notation adds the layer index)
    param_latex = {"W_Q": r"\mathbf{W}_{Q}", "W_K": r"\mathbf{W}_{K}", "W_V": r"\mathbf{W}_{V}", "W_O": r"\mathbf{W}_{O}",
                   "b_Q": r"\mathbf{b}_{Q}", "b_K": r"\mathbf{b}_{K}", "b_V": r"\mathbf{b}_{V}", "b_O": r"\mathbf{b}_{O}"}

    def __init__(self, heads: int = 1, causal: bool = False, bias: bool = True, attn_mask=None):
        super().__init__()
        self.heads = _check_heads(heads)
        self.causal = _check_bool(causal, "self_attention layer: causal")
        self.bias = _check_bool(bias, "self_attention layer: bias")
        self.attn_mask = _check_mask(attn_mask)
        self.param_names = (("W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V", "W_O", "b_O") if self.bias
                            else ("W_Q", "W_K", "W_V", "W_O"))
        self._mask = None
        self._shared_key = None

    @classmethod
    def protocol_examples(cls):
        return [({"heads": 2}, (3, 4)), ({"heads": 1, "causal": True}, (3, 2)),
                ({"heads": 2, "bias": False, "attn_mask": [[False, True, False], [False, False, False], [True, False, False]]},
                 (3, 4))]

    # ------------------------------------------------------------------ shapes
    def build(self, in_shape, convention=None):
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != 2:
            raise ShapeError(f"{self._name()}: expected a sequence (T, d), received shape {in_shape}")
        T, d = in_shape
        if T < 1:
            raise ShapeError(f"{self._name()}: sequence length T must be >= 1, received T = {T} (shape {in_shape})")
        if d < 1:
            raise ShapeError(f"{self._name()}: model width d must be >= 1, received shape {in_shape}")
        if d % self.heads:
            raise ShapeError(f"{self._name()}: d = {d} (d_model) is not divisible by heads = {self.heads}")
        mask = np.zeros((T, T), dtype=bool)
        if self.causal:
            mask |= np.triu(np.ones((T, T), dtype=bool), 1)
        if self.attn_mask is not None:
            shape = (len(self.attn_mask), len(self.attn_mask[0]) if self.attn_mask else 0)
            if any(len(r) != shape[1] for r in self.attn_mask) or shape != (T, T):
                got = shape if all(len(r) == shape[1] for r in self.attn_mask) else "ragged"
                raise ShapeError(f"{self._name()}: attn_mask must have shape (T, T) = {(T, T)}, received {got}")
            mask |= np.array(self.attn_mask, dtype=bool)
        full = np.flatnonzero(mask.all(axis=1))
        if full.size:
            raise ShapeError(f"{self._name()}: the mask leaves token {int(full[0])} nothing to attend to "
                             "(every entry of its row is masked)")
        self._mask = mask
        self.in_shape = self.out_shape = in_shape
        return self.out_shape

    @property
    def T_len(self) -> int:
        return self.in_shape[0]

    @property
    def d(self) -> int:
        return self.in_shape[1]

    @property
    def d_k(self) -> int:
        return self.d // self.heads

    @property
    def mask(self) -> np.ndarray:
        """The boolean ``(T, T)`` mask in use (True = masked: causal and ``attn_mask`` combined)."""
        return self._mask.copy()

    def weight_transposed_by_layout(self, local: str) -> bool:
        """The projections stay in torch's ``(out, in)`` layout under every convention."""
        return False

    def param_shapes(self):
        d = self.d
        return {k: ((d, d) if k.startswith("W") else (d,)) for k in self.param_names}

    def init_params(self, rng):
        d = self.d
        out = {}
        for k in self.param_names:
            out[k] = (rng.standard_normal((d, d)) / np.sqrt(d)) if k.startswith("W") else 0.1 * rng.standard_normal(d)
        return out

    # ------------------------------------------------------------------ pieces
    def split_heads(self, M):
        """``(..., T, d)`` -> ``(..., h, T, d_k)``."""
        M = np.asarray(M)
        lead = M.shape[:-2]
        return np.swapaxes(M.reshape(*lead, self.T_len, self.heads, self.d_k), -2, -3)

    def merge_heads(self, M):
        """``(..., h, T, d_k)`` -> ``(..., T, d)``."""
        M = np.asarray(M)
        lead = M.shape[:-3]
        return np.swapaxes(M, -2, -3).reshape(*lead, self.T_len, self.d)

    def scale(self, symbolic: bool = False):
        r""":math:`1/\sqrt{d_k}` (exact for SymPy entries)."""
        return 1 / sympy.sqrt(self.d_k) if symbolic else 1.0 / np.sqrt(self.d_k)

    def softmax(self, S):
        r"""Row softmax of the logits ``S`` (``(..., T, T)``) with the mask: the stable form (rows shifted by their
        maximum over the allowed entries) for floats; :func:`sympy.exp` and exact zeros at masked entries for SymPy."""
        S = np.asarray(S)
        mask = self._mask
        if S.dtype == object:
            E = np.vectorize(sympy.exp, otypes=[object])(S)
            E = np.where(mask, sympy.Integer(0), E)
            return E / E.sum(axis=-1, keepdims=True)
        S = np.where(mask, -np.inf, S)
        E = np.exp(S - S.max(axis=-1, keepdims=True))
        return E / E.sum(axis=-1, keepdims=True)

    def _shared(self, a, params) -> _Shared:
        """The forward pass of one sample, reused by the operators of one ``jac_params`` / ``jac_input`` call pair."""
        key = self._shared_key
        if key is not None and key[1] is params and _same_view(key[0], a):
            return key[2]
        sh = _Shared(_Forward(self, np.asarray(a)[None], params))
        self._shared_key = (a, params, sh)
        return sh

    # ------------------------------------------------------------------ protocol
    def forward(self, A, params):
        return _Forward(self, A, params).Y

    def jac_input(self, a, o, params):
        r""":math:`\mathbf J_{\mathbf x}\mathbf y` (:class:`AttentionInputJacobian`)."""
        return AttentionInputJacobian(self._shared(a, params))

    def jac_params(self, a, o, params, order="C"):
        r""":math:`\mathbf J_{\operatorname{vec}\theta}\mathbf y` of every parameter (:class:`AttentionParamJacobian`, one shared backward pass)."""
        if order not in ("C", "F"):
            raise DataError(f"{self._name()}: vec order must be 'C' or 'F', got {order!r}")
        sh = self._shared(a, params)
        return {k: AttentionParamJacobian(sh, k, order) for k in self.param_names}

    def vjp_input(self, A, O, G, params):
        N = np.shape(A)[0]
        fwd = _Forward(self, A, params)
        return fwd.backward(np.asarray(G).reshape(N, 1, self.T_len, self.d))["dX"].reshape(N, -1)

    def vjp_params(self, A, O, G, params):
        N = np.shape(A)[0]
        fwd = _Forward(self, A, params)
        dY = np.asarray(G).reshape(N, 1, self.T_len, self.d)
        return fwd.param_gradients(fwd.backward(dY, need_x=False), dY)

    def vjp_both(self, A, O, G, params) -> tuple[np.ndarray, dict]:
        r"""``(vjp_input, vjp_params)`` from one forward and one backward pass (what a composite block calls)."""
        return self.vjp_from_state(_Forward(self, A, params), G)

    def forward_state(self, A, params) -> tuple[np.ndarray, _Forward]:
        """``(forward(A, params), the kept forward pass)``: a composite block keeps the pass for :meth:`vjp_from_state`."""
        fwd = _Forward(self, A, params)
        return fwd.Y, fwd

    def vjp_from_state(self, fwd: _Forward, G, want_params: bool = True) -> tuple[np.ndarray, dict]:
        r"""``(vjp_input, vjp_params)`` (``{}`` without ``want_params``) from a kept forward pass (:meth:`forward_state`):
        one backward pass, :math:`d\mathbf X` and every :math:`d\mathbf W` from the same cotangents."""
        N = fwd.X.shape[0]
        dY = np.asarray(G).reshape(N, 1, self.T_len, self.d)
        back = fwd.backward(dY)
        if not want_params:
            return back["dX"].reshape(N, -1), {}
        return back["dX"].reshape(N, -1), fwd.param_gradients(back, dY)

    def left_jac_input(self, A, O, P, params):
        P = np.asarray(P)
        N, k = P.shape[:2]
        fwd = _Forward(self, A, params)
        return fwd.backward(P.reshape(N, k, self.T_len, self.d))["dX"].reshape(N, k, -1)

    def jvp_input(self, A, O, T, params):
        N = np.shape(A)[0]
        fwd = _Forward(self, A, params)
        return fwd.tangent(dX=np.asarray(T).reshape(N, 1, self.T_len, self.d)).reshape(N, -1)

    def jvp_params(self, A, O, dparams, params):
        N = np.shape(A)[0]
        fwd = _Forward(self, A, params)
        dp = {k: np.asarray(v)[None] for k, v in dparams.items()}
        return fwd.tangent(dparams=dp).reshape(N, -1)

    # ------------------------------------------------------------------ the factors, for users and the notebook
    def attention_jacobians(self, x, params) -> dict:
        r"""The factors of :math:`\mathbf J_{\mathbf x}\mathbf y` for one sample ``x`` (``(T, d)`` or flat), canonical ``params``.

        Returns a dict with ``"P"`` the attention weights ``(h, T, T)``; ``"softmax"`` the row Jacobians
        :math:`\operatorname{diag}\mathbf p_{t,j}-\mathbf p_{t,j}\mathbf p_{t,j}^\top` ``(h, T, T, T)`` (head, query row, ...);
        ``"J_Q"``, ``"J_K"``, ``"J_V"`` the ``(Td, Td)`` matrices :math:`\mathbf J_{\mathbf Q}\mathbf C`,
        :math:`\mathbf J_{\mathbf K}\mathbf C`, :math:`\mathbf J_{\mathbf V}\mathbf C` (row-major flattened ``Q``, ``K``, ``V``, ``C``);
        ``"J_Q_heads"`` ``(h, T, d_k, d_k)``, the diagonal blocks of :math:`\mathbf J_{\mathbf Q}\mathbf C`
        (:math:`\tfrac1{\sqrt{d_k}}\mathbf V_j^\top(\operatorname{diag}\mathbf p-\mathbf p\mathbf p^\top)\mathbf K_j`); and ``"Q"``, ``"K"``, ``"V"``, ``"C"`` ``(T, d)``.
        """
        x = np.asarray(x).reshape(1, self.T_len, self.d)
        fwd = _Forward(self, x, params)
        return factor_blocks(self, fwd)

    def structured_input_jacobian(self, x, params) -> Product:
        r""":math:`\mathbf J_{\mathbf x}\mathbf y` as the explicit product :math:`(\mathbf I_T\otimes\mathbf W_O)[\mathbf J_{\mathbf Q}\mathbf C\;\mathbf J_{\mathbf K}\mathbf C\;\mathbf J_{\mathbf V}\mathbf C][\mathbf I_T\otimes\mathbf W_Q;\mathbf I_T\otimes\mathbf W_K;\mathbf I_T\otimes\mathbf W_V]`."""
        return structured_product(self, _Forward(self, np.asarray(x).reshape(1, self.T_len, self.d), params))

    def structured_param_jacobians(self, x, params, order: str = "C") -> dict[str, Product]:
        r"""Each :math:`\mathbf J_{\operatorname{vec}\theta}\mathbf y` as the explicit product of the module docstring
        (:math:`(\mathbf I_T\otimes\mathbf W_O)\mathbf J_{\mathbf Q}\mathbf C\,\mathbf J_{\operatorname{vec}\mathbf W_Q}\mathbf Q`, ...)."""
        return structured_param_products(self, _Forward(self, np.asarray(x).reshape(1, self.T_len, self.d), params), order)

    # ------------------------------------------------------------------ torch twin
    def torch_forward(self, A, params):
        """``torch.nn.functional.multi_head_attention_forward`` (torch's MHA code path) on the batch-first input."""
        import torch
        import torch.nn.functional as F

        d = self.d
        W_in = torch.cat([params["W_Q"], params["W_K"], params["W_V"]], dim=0)
        b_in = torch.cat([params["b_Q"], params["b_K"], params["b_V"]]) if self.bias else None
        q = A.transpose(0, 1)
        mask = torch.tensor(self._mask) if self._mask.any() else None
        out, _ = F.multi_head_attention_forward(
            q, q, q, d, self.heads, W_in, b_in, None, None, False, 0.0, params["W_O"],
            params["b_O"] if self.bias else None, training=False, need_weights=False, attn_mask=mask)
        return out.transpose(0, 1)

    @classmethod
    def from_torch_module(cls, module, in_shape) -> tuple[dict, dict]:
        r"""``(constructor kwargs, local parameters as float64 arrays)`` of an ``nn.MultiheadAttention`` used as
        self-attention on a per-sample input ``in_shape = (T, d)``.

        Raises
        ------
        UnsupportedInputError
            Separate key/value widths (``kdim``/``vdim``), ``add_bias_kv``, ``add_zero_attn``, or an input shape
            that is not ``(T, embed_dim)``.
        """
        in_shape = tuple(int(s) for s in in_shape)
        d = int(module.embed_dim)
        if len(in_shape) != 2 or in_shape[1] != d:
            raise UnsupportedInputError(f"self_attention: MultiheadAttention(embed_dim={d}) needs a per-sample input "
                                        f"(T, {d}), received {in_shape}")
        if not getattr(module, "_qkv_same_embed_dim", True) or module.in_proj_weight is None:
            raise UnsupportedInputError("self_attention: MultiheadAttention with kdim/vdim != embed_dim is not supported")
        if module.bias_k is not None or module.bias_v is not None:
            raise UnsupportedInputError("self_attention: MultiheadAttention with add_bias_kv=True is not supported")
        if module.add_zero_attn:
            raise UnsupportedInputError("self_attention: MultiheadAttention with add_zero_attn=True is not supported")
        bias = module.in_proj_bias is not None
        if bias != (module.out_proj.bias is not None):
            raise UnsupportedInputError("self_attention: MultiheadAttention with biases on only some projections is not supported")
        W = module.in_proj_weight.detach().cpu().double().numpy()
        params = {"W_Q": W[:d].copy(), "W_K": W[d:2 * d].copy(), "W_V": W[2 * d:].copy(),
                  "W_O": module.out_proj.weight.detach().cpu().double().numpy().copy()}
        if bias:
            b = module.in_proj_bias.detach().cpu().double().numpy()
            params.update({"b_Q": b[:d].copy(), "b_K": b[d:2 * d].copy(), "b_V": b[2 * d:].copy(),
                           "b_O": module.out_proj.bias.detach().cpu().double().numpy().copy()})
        return {"heads": int(module.num_heads), "bias": bias}, params

    # ------------------------------------------------------------------ LaTeX facts
    def prose(self) -> str:
        c = "causal " if self.causal else ""
        return (rf"{c}multi-head self-attention ($h={self.heads}$ heads of width $d_k={self.d_k if self.in_shape else 'd/h'}$): "
                r"$\operatorname{softmax}(\mathbf{Q}_j\mathbf{K}_j^\top/\sqrt{d_k})\mathbf{V}_j$ per head, heads concatenated "
                r"and projected by $\mathbf{W}_O$; each softmax row $\mathbf{p}$ contributes the Jacobian "
                r"$\operatorname{diag}(\mathbf{p})-\mathbf{p}\mathbf{p}^\top$")

    def latex_describe(self) -> str:
        parts = [rf"self-attention, ${self.heads}$ head{'s' if self.heads > 1 else ''}"]
        if self.in_shape is not None:
            parts[0] += rf" of width ${self.d_k}$"
        if self.causal:
            parts.append("causal")
        if self.attn_mask is not None:
            parts.append("masked")
        if not self.bias:
            parts.append("no bias")
        return ", ".join(parts)

    def latex_name(self) -> str:
        return r"\operatorname{MHA}"

    def latex_forward(self, nt, l, a_prev, weight_layout):
        r""":math:`\operatorname{vec}_r\big(\big[\operatorname{softmax}(\mathbf Q_j\mathbf K_j^\top/\sqrt{d_k}+\mathbf M)\mathbf V_j\big]_{j=1}^h\mathbf W_O^\top+\mathbf 1\mathbf b_O^\top\big)`
        with :math:`\mathbf Q = \mathbf X\mathbf W_Q^\top+\mathbf 1\mathbf b_Q^\top` on the sequence :math:`\mathbf X` of ``a_prev``."""
        def P(name):
            return nt.param(name, l, self) if nt is not None and hasattr(nt, "param") else self.param_latex[name]

        def T(sym):
            return nt.T(sym) if nt is not None and hasattr(nt, "T") else rf"{{{sym}}}^\top"

        dk = self.d_k if self.in_shape is not None else "d_k"
        mask = r" + \mathbf{M}" if (self._mask is not None and self._mask.any()) else ""
        inner = (rf"\Big[\operatorname{{softmax}}\Big(\tfrac{{1}}{{\sqrt{{{dk}}}}}\mathbf{{Q}}_j\mathbf{{K}}_j^\top{mask}\Big)"
                 rf"\mathbf{{V}}_j\Big]_{{j=1}}^{{{self.heads}}}{T(P('W_O'))}")
        if self.bias:
            inner += rf" + \mathbf{{1}}{T(P('b_O'))}"
        proj = [rf"\mathbf{{{c}}} = \mathbf{{X}}{T(P('W_' + c))}" + (rf" + \mathbf{{1}}{T(P('b_' + c))}" if self.bias else "")
                for c in _QKV]
        shape = rf"{self.T_len if self.in_shape else 'T'}\times {self.d if self.in_shape else 'd'}"
        # further rows of the caller's align environment: the projections of the input sequence
        return (rf"\operatorname{{vec}}_r\Big({inner}\Big) \\ &\qquad\text{{with }} {proj[0]},\ {proj[1]}, \\ "
                rf"&\qquad\phantom{{\text{{with }}}} {proj[2]},\ \mathbf{{X}} = \operatorname{{mat}}_{{{shape}}}({a_prev})")

    def latex_jacobian_where(self) -> str:
        r"""What the symbols of :meth:`latex_input_jacobian` are: the per-head blocks and the row-softmax Jacobians.

        For head :math:`j` and query token :math:`t`, with softmax row :math:`\mathbf p_{t,j}` and
        :math:`\mathbf S_{t,j} = \operatorname{diag}(\mathbf p_{t,j}) - \mathbf p_{t,j}\mathbf p_{t,j}^\top`:
        :math:`\partial\mathbf c_{t,j}/\partial\mathbf q_{t,j} = d_k^{-1/2}\mathbf V_j^\top\mathbf S_{t,j}\mathbf K_j`,
        :math:`\partial\mathbf c_{t,j}/\partial\mathbf k_{s,j} = d_k^{-1/2}[\mathbf V_j^\top\mathbf S_{t,j}]_{:,s}\mathbf q_{t,j}^\top`,
        :math:`\partial\mathbf c_{t,j}/\partial\mathbf v_{s,j} = (P_j)_{ts}\mathbf I_{d_k}` (Vaswani et al. 2017, eq. 1).
        """
        return (r"there $\mathbf{J}_{\mathbf{Q}}\mathbf{C}$, $\mathbf{J}_{\mathbf{K}}\mathbf{C}$, $\mathbf{J}_{\mathbf{V}}\mathbf{C}$ "
                r"collect, for head $j$ and query token $t$ with the softmax row $\mathbf{p}_{t,j}$ of $\mathbf{P}_j$ and its "
                r"Jacobian $\mathbf{S}_{t,j} = \operatorname{diag}(\mathbf{p}_{t,j}) - \mathbf{p}_{t,j}\mathbf{p}_{t,j}^\top$, the blocks "
                r"$\partial\mathbf{c}_{t,j}/\partial\mathbf{q}_{t,j} = \tfrac{1}{\sqrt{d_k}}\mathbf{V}_j^\top\mathbf{S}_{t,j}\mathbf{K}_j$, "
                r"$\partial\mathbf{c}_{t,j}/\partial\mathbf{k}_{s,j} = \tfrac{1}{\sqrt{d_k}}\big[\mathbf{V}_j^\top\mathbf{S}_{t,j}\big]_{:,s}"
                r"\mathbf{q}_{t,j}^\top$ and $\partial\mathbf{c}_{t,j}/\partial\mathbf{v}_{s,j} = (P_j)_{ts}\mathbf{I}_{d_k}$ "
                r"(zero across heads; $\mathbf{J}_{\mathbf{Q}}\mathbf{C}$ also across tokens)")

    def latex_input_jacobian(self, params_latex):
        r""":math:`(\mathbf I_T\otimes\mathbf W_O)[\mathbf J_{\mathbf Q}\mathbf C\;\mathbf J_{\mathbf K}\mathbf C\;\mathbf J_{\mathbf V}\mathbf C][\mathbf I_T\otimes\mathbf W_Q;\dots]`."""
        T = self.T_len if self.in_shape is not None else "T"
        W = {k: params_latex.get(k, self.param_latex[k]) for k in ("W_Q", "W_K", "W_V", "W_O")}
        return (rf"(\mathbf{{I}}_{{{T}}}\otimes {W['W_O']})\left[\mathbf{{J}}_{{\mathbf{{Q}}}}\mathbf{{C}}\;\;"
                rf"\mathbf{{J}}_{{\mathbf{{K}}}}\mathbf{{C}}\;\;\mathbf{{J}}_{{\mathbf{{V}}}}\mathbf{{C}}\right]"
                rf"\begin{{bmatrix}}\mathbf{{I}}_{{{T}}}\otimes {W['W_Q']}\\ \mathbf{{I}}_{{{T}}}\otimes {W['W_K']}\\ "
                rf"\mathbf{{I}}_{{{T}}}\otimes {W['W_V']}\end{{bmatrix}}")

    def block_param_jacobian(self, alg, local, order):
        r""":math:`\mathbf 1_T\otimes\mathbf I_d` for ``b_O`` (the others have no form in the block algebra: None)."""
        if local == "b_O":
            return alg.kron(alg.ones(self.T_len), alg.identity(self.d))
        return None

    def describe(self):
        if self.in_shape is None:
            return f"self_attention heads={self.heads}" + (" causal" if self.causal else "")
        return (f"self_attention T={self.T_len} d={self.d} heads={self.heads}" + (" causal" if self.causal else "")
                + (" masked" if self.attn_mask is not None else "") + ("" if self.bias else " no-bias"))


# ---------------------------------------------------------------------------------------------------- Transformer block
#: the block's names of the parameters of its two residual sub-blocks: (sub-block, sub-layer name) -> block name
_BLOCK_NAMES = (
    {"gamma.1": "gamma.ln1", "beta.1": "beta.ln1", "W_Q.2": "W_Q.attn", "W_K.2": "W_K.attn", "W_V.2": "W_V.attn",
     "b_Q.2": "b_Q.attn", "b_K.2": "b_K.attn", "b_V.2": "b_V.attn", "W_O.2": "W_O.attn", "b_O.2": "b_O.attn"},
    {"gamma.1": "gamma.ln2", "beta.1": "beta.ln2", "W.2": "W.fc1", "b.2": "b.fc1", "W.3": "W.fc2", "b.3": "b.fc2"},
)


@register("transformer_block")
class TransformerBlock(Residual):
    r"""Pre-norm Transformer block :math:`\mathbf U = \mathbf X + \operatorname{MHA}(\operatorname{LN}_1\mathbf X)`,
    :math:`\mathbf Y = \mathbf U + \operatorname{MLP}(\operatorname{LN}_2\mathbf U)` on a sequence ``(T, d)``.

    Built on :class:`~jacobian_bp.layers.residual.Residual`: its body is the two residual blocks
    ``residual[layer_norm, self_attention]`` and ``residual[layer_norm, linear, activation, linear]``,
    applied in sequence (the block itself adds no skip: :math:`\mathbf J = \mathbf J_2\mathbf J_1`, each
    :math:`\mathbf J_i = \mathbf I + \mathbf J_{\text{body}_i}`).  Every Jacobian, VJP and JVP is the residual
    machinery's composition of the sub-layers' own.

    Parameter names (local; the network inserts the stage number after the letter, as for any block):
    ``gamma.ln1, beta.ln1`` (first LayerNorm), ``W_Q.attn, W_K.attn, W_V.attn, b_Q.attn, b_K.attn,
    b_V.attn, W_O.attn, b_O.attn`` (attention), ``gamma.ln2, beta.ln2``, ``W.fc1, b.fc1, W.fc2, b.fc2``
    (the MLP); at stage 2 of a network: ``W_Q2.attn``, ``W2.fc1``, ``gamma2.ln1`` ...

    Parameters
    ----------
    heads : int
        Attention heads (``d`` divisible by it).
    mlp_hidden : int, optional
        Width of the MLP's hidden layer (default ``4 d``).
    causal : bool
        Causal attention (default False).
    eps : float
        The LayerNorms' :math:`\epsilon` (default ``1e-5``).
    activation : str
        A registered elementwise activation for the MLP (default ``"gelu"``, torch's exact GELU).
    """

    kind = "transformer_block"
    #: not a spec composite: the spec passes its keyword arguments (the block builds its own body)
    composite = False
    #: hidden from the symbolic backend (one stage there); the LaTeX renderers draw the block expanded through
    #: :meth:`inner_stages` (its two residual blocks, each as I + its body chain)
    sub_stages = None
    renders_symbolically = True
    block_symbol = ("Tb", r"(\mathbf{{I}}+\mathbf{{J}}_{{\mathrm{{MLP}}}})(\mathbf{{I}}+\mathbf{{J}}_{{\mathrm{{MHA}}}})",
                    r"\mathbf{{B}}^{{[{l}]}}")

    def __init__(self, heads: int = 1, mlp_hidden: int | None = None, causal: bool = False, eps: float = 1e-5,
                 activation: str = "gelu"):
        self.heads = _check_heads(heads)
        if mlp_hidden is not None and (isinstance(mlp_hidden, (bool, np.bool_)) or not isinstance(mlp_hidden, (int, np.integer))
                                       or mlp_hidden < 1):
            raise SpecError(f"transformer_block: mlp_hidden must be a positive integer, received {mlp_hidden!r}")
        self.mlp_hidden = None if mlp_hidden is None else int(mlp_hidden)
        self.causal = _check_bool(causal, "transformer_block: causal")
        self.eps = real_number(eps, "transformer_block: eps", minimum=0.0, strict_minimum=True)
        if not isinstance(activation, str):
            raise SpecError(f"transformer_block: activation must be the name of an elementwise activation, received {activation!r}")
        from .registry import layer_class

        act_cls = layer_class(activation)
        if not getattr(act_cls, "elementwise", False) or getattr(act_cls, "composite", False):
            raise SpecError(f"transformer_block: activation must be an elementwise activation, received {activation!r}")
        self.activation = activation
        super().__init__(self._make_body(1, self.mlp_hidden or 4))

    def _make_body(self, d: int, hidden: int) -> list:
        from .normalization import LayerNorm
        from .registry import layer_class

        att = Residual([LayerNorm(eps=self.eps), SelfAttention(heads=self.heads, causal=self.causal)])
        mlp = Residual([LayerNorm(eps=self.eps), Linear(hidden), layer_class(self.activation)(), Linear(d)])
        return [att, mlp]

    def _index_names(self) -> None:
        self.name_map = []
        for k, layer in enumerate(self.body):
            built = layer.in_shape is not None
            locals_ = layer.param_shapes() if built else layer.param_names
            self.name_map.append({local: _BLOCK_NAMES[k][local] for local in locals_})

    @classmethod
    def protocol_examples(cls):
        return [({"heads": 2, "mlp_hidden": 5}, (3, 4)), ({"heads": 1, "causal": True, "activation": "tanh"}, (2, 2))]

    def build(self, in_shape, convention=None):
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != 2 or min(in_shape) < 1:
            raise ShapeError(f"{self._name()}: expected a sequence (T, d) with T, d >= 1, received shape {in_shape}")
        d = in_shape[1]
        self.body = self._make_body(d, self.mlp_hidden or 4 * d)
        return super().build(in_shape, convention)

    @property
    def attention(self) -> SelfAttention:
        """The attention sub-layer (built)."""
        return self.body[0].body[1]

    # ------------------------------------------------------------------ no skip of its own: the body is the block
    def forward(self, A, params):
        A = np.asarray(A)
        passes, Y = self._leaf_pass(A, params)
        KeptPass.keep(self, A, params, passes, Y)
        return Y

    def jac_input(self, a, o, params):
        steps = self._steps(np.asarray(a)[None], params)
        return Product([layer.jac_input(A[0], O[0], p) for layer, A, O, p in reversed(steps)])

    def jac_params(self, a, o, params, order="C"):
        r""":math:`\mathbf J_{\theta}\mathbf y` of every parameter: the chain above its residual sub-block (kept once,
        :class:`_Memo`; the MLP block's :math:`\mathbf I + \mathbf J_{\mathrm{MLP}\circ\mathrm{LN}_2}` is token-wise, kept as its
        ``T`` diagonal blocks) times that sub-block's own parameter Jacobian.  Each sub-block's forward pass runs
        once for its input and parameter Jacobians (the attention's backward passes are shared by both)."""
        steps = self._steps(np.asarray(a)[None], params)
        out: dict[str, Operator] = {}
        above: list[Operator] = []
        T = self.in_shape[0] if self.in_shape is not None and self.in_shape[0] > 1 else None
        for (layer, A, O, p), names in reversed(list(zip(steps, self.name_map))):
            left = None if not above else _Memo(above[0] if len(above) == 1 else Product(above), T)
            J_in, blocks = layer.jacobians(A[0], p, order)
            for sub, op in blocks.items():
                block = op if left is None else ChainBlock(left, op)
                name = names[sub]
                out[name] = block if name not in out else OperatorSum(out[name], block)
            above = above + [J_in]
        return out

    # ------------------------------------------------------------------ one forward pass, one backward pass
    #: the last numeric forward pass (:class:`~.block_passes.KeptPass`), reused by the engine's ``vjp_params`` /
    #: ``vjp_input`` with the same ``A`` and ``O = forward(A, p)``
    _kept = None

    def _leaf_pass(self, A, params) -> tuple[list, np.ndarray]:
        """The forward pass through the leaves of both residual blocks (:func:`~.block_passes.leaf_pass`)."""
        return leaf_pass(self, A, params)

    def _backward(self, A, G, params, want_params: bool, want_input: bool, O=None):
        """One reverse pass through the leaves (:func:`~.block_passes.block_backward`)."""
        return block_backward(self, A, G, params, want_params, want_input, O)

    def vjp_input(self, A, O, G, params):
        return self._backward(A, G, params, want_params=False, want_input=True, O=O)[0]

    def vjp_params(self, A, O, G, params):
        return self._backward(A, G, params, want_params=True, want_input=False, O=O)[1]

    def left_jac_input(self, A, O, P, params):
        Q = P
        for layer, Ain, Oout, p in reversed(self._steps(A, params)):
            Q = layer.left_jac_input(Ain, Oout, Q, p)
        return Q

    def jvp_input(self, A, O, T, params):
        N = A.shape[0]
        t = np.asarray(T).reshape(N, -1)
        for layer, Ain, Oout, p in self._steps(A, params):
            t = np.asarray(layer.jvp_input(Ain, Oout, t, p)).reshape(N, -1)
        return t

    def torch_forward(self, A, params):
        """The two residual blocks' torch twins in sequence."""
        H = A
        for layer, p in zip(self.body, self._sub_params(params)):
            H = layer.torch_forward(H, p)
        return H

    def skip_sum(self, a, g):
        """No skip of its own: the output is the body's."""
        return g

    def latex_skip(self, out: str, body_jacobian: str, identity: str) -> str:
        return body_jacobian

    def latex_forward(self, nt, l, a_prev, weight_layout):
        r""":math:`\mathbf u + \operatorname{MLP}(\operatorname{LN}_2(\mathbf u))` with :math:`\mathbf u = \mathbf a + \operatorname{MHA}(\operatorname{LN}_1(\mathbf a))`."""
        u = rf"\mathbf{{u}}^{{[{l}]}}"
        return (rf"{u} + \operatorname{{MLP}}\big(\operatorname{{LN}}_2({u})\big),\ "
                rf"{u} = {a_prev} + \operatorname{{MHA}}\big(\operatorname{{LN}}_1({a_prev})\big)")

    def latex_input_jacobian(self, params_latex):
        r""":math:`(\mathbf I+\mathbf J_{\mathbf u}\operatorname{MLP}\circ\operatorname{LN}_2)(\mathbf I+\mathbf J_{\mathbf a}\operatorname{MHA}\circ\operatorname{LN}_1)`."""
        return (r"\big(\mathbf{I} + \mathbf{J}_{\mathbf{u}}(\operatorname{MLP}\circ\operatorname{LN}_2)\big)"
                r"\big(\mathbf{I} + \mathbf{J}_{\mathbf{a}}(\operatorname{MHA}\circ\operatorname{LN}_1)\big)")

    def latex_name(self) -> str:
        return r"\operatorname{Block}"

    # ------------------------------------------------------------------ torch
    torch_module_types = ()

    # ------------------------------------------------------------------ LaTeX facts
    def prose(self) -> str:
        return (r"a pre-norm Transformer block $\mathbf{U}=\mathbf{X}+\operatorname{MHA}(\operatorname{LN}_1(\mathbf{X}))$, "
                r"$\mathbf{Y}=\mathbf{U}+\operatorname{MLP}(\operatorname{LN}_2(\mathbf{U}))$, whose Jacobian is the product "
                r"$(\mathbf{I}+\mathbf{J}_{\mathrm{MLP}})(\mathbf{I}+\mathbf{J}_{\mathrm{MHA}})$ of its two residual blocks")

    def latex_describe(self) -> str:
        hid = self.body[1].body[1].out_features if self.in_shape is not None else (self.mlp_hidden or "4d")
        return (rf"pre-norm Transformer block: ${self.heads}$ head{'s' if self.heads > 1 else ''}"
                + (", causal" if self.causal else "") + rf", MLP hidden width ${hid}$ ({self.activation})")

    def describe(self):
        size = "" if self.in_shape is None else f" T={self.in_shape[0]} d={self.in_shape[1]}"
        hid = self.body[1].body[1].out_features if self.in_shape is not None else (self.mlp_hidden or "4d")
        return (f"transformer_block{size} heads={self.heads} mlp={hid} {self.activation}"
                + (" causal" if self.causal else ""))
