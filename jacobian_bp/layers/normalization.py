r"""Normalization layers: layer normalization and batch normalization in evaluation mode.

Both follow PyTorch's definitions exactly, so that a torch user's numbers match
(``torch.nn.LayerNorm``, ``torch.nn.BatchNorm1d`` in ``eval()`` mode; float64).

Layer normalization (Ba, Kiros & Hinton, *Layer Normalization*, 2016, eq. (4); ``nn.LayerNorm(n)`` on a
batch ``(N, n)``), for one sample :math:`\mathbf a\in\mathbb R^n`:

.. math::

   \mu = \tfrac1n\mathbf 1^\top\mathbf a,\qquad
   \sigma = \sqrt{\tfrac1n\lVert\mathbf a-\mu\mathbf 1\rVert^2+\epsilon}\quad\text{(biased variance)},\qquad
   \hat{\mathbf x} = (\mathbf a-\mu\mathbf 1)/\sigma,\qquad
   \mathbf o = \boldsymbol\gamma\odot\hat{\mathbf x}+\boldsymbol\beta .

Differentiating :math:`\hat x_i` (with :math:`\partial\sigma/\partial a_j = (a_j-\mu)/(n\sigma)`):

.. math::

   \mathbf J_{\mathbf a}\mathbf o
   = \operatorname{diag}\!\Big(\frac{\boldsymbol\gamma}{\sigma}\Big)
     \Big(\mathbf I-\tfrac1n\mathbf 1\mathbf 1^\top-\tfrac1n\hat{\mathbf x}\hat{\mathbf x}^\top\Big),\qquad
   \mathbf J_{\boldsymbol\gamma}\mathbf o = \operatorname{diag}(\hat{\mathbf x}),\qquad
   \mathbf J_{\boldsymbol\beta}\mathbf o = \mathbf I_n .

The input Jacobian is kept structured: a :class:`~jacobian_bp.backend.operators.Diagonal` times
:class:`CenteringProjection` (the identity minus a rank-2 symmetric term), so products with it
cost :math:`O(n)` per vector.  With :math:`\epsilon>0` every row is differentiable, constant rows
included: there :math:`\hat{\mathbf x} = \mathbf 0`, :math:`\sigma = \sqrt\epsilon` and
:math:`\mathbf J_{\mathbf a}\mathbf o = (\boldsymbol\gamma/\sqrt\epsilon)\odot(\mathbf I - \tfrac1n\mathbf 1\mathbf 1^\top)`.

On a sequence :math:`\mathbf X\in\mathbb R^{T\times d}` (flattened row-major, the tokens stacked) layer normalization
acts on every token (row) separately, as ``nn.LayerNorm(d)`` on ``(N, T, d)``: :math:`\boldsymbol\gamma,\boldsymbol\beta\in\mathbb R^d`
are shared by the tokens, :math:`\mathbf J_{\mathbf x}\mathbf o = \operatorname{blkdiag}_t\big(\operatorname{diag}(\boldsymbol\gamma/\sigma_t)
(\mathbf I-\tfrac1d\mathbf 1\mathbf 1^\top-\tfrac1d\hat{\mathbf x}_t\hat{\mathbf x}_t^\top)\big)`,
:math:`\mathbf J_{\boldsymbol\gamma}\mathbf o = [\operatorname{diag}\hat{\mathbf x}_1;\dots;\operatorname{diag}\hat{\mathbf x}_T]` and
:math:`\mathbf J_{\boldsymbol\beta}\mathbf o = \mathbf 1_T\otimes\mathbf I_d`.  A flat input ``(n,)`` is the case :math:`T = 1`.

Batch normalization, evaluation mode (Ioffe & Szegedy, *Batch Normalization*, 2015, Alg. 2 line 11;
``nn.BatchNorm1d(n).eval()`` on ``(N, n)``): with the *given* running statistics :math:`\mathbf m`,
:math:`\mathbf v` (constants, not parameters),

.. math::

   \mathbf o = \boldsymbol\gamma\odot\frac{\mathbf a-\mathbf m}{\sqrt{\mathbf v+\epsilon}}+\boldsymbol\beta,\qquad
   \mathbf J_{\mathbf a}\mathbf o = \operatorname{diag}\!\Big(\frac{\boldsymbol\gamma}{\sqrt{\mathbf v+\epsilon}}\Big),\quad
   \mathbf J_{\boldsymbol\gamma}\mathbf o = \operatorname{diag}\!\Big(\frac{\mathbf a-\mathbf m}{\sqrt{\mathbf v+\epsilon}}\Big),\quad
   \mathbf J_{\boldsymbol\beta}\mathbf o = \mathbf I_n .

Batch normalization in *training* mode is deliberately not provided: there :math:`\mathbf m`,
:math:`\mathbf v` are the mean and biased variance of the current batch, so every output
:math:`\mathbf o_i` depends on every input :math:`\mathbf a_k` of the batch.  The Jacobian of the
batch is then not block-diagonal over the samples (:math:`\partial\mathbf o_i/\partial\mathbf a_k\ne 0`
for :math:`i\ne k`), while the layer protocol and the engine (per-sample ``jac_input``, per-sample
gradients, :math:`\mathbf J_\theta\mathbf z_i^{[L]}` stacked per sample) assume each sample's output
depends on that sample only.  Supporting it needs a batch-level layer protocol in the engine.

Parameters and names
--------------------
With ``affine=True`` (the default, as in torch) the layers have the local parameters ``gamma`` and
``beta`` (canonical shape ``(n,)``), so they open a stage of the network: in
``dense → layer_norm → tanh → dense`` the layer norm is stage 2 with the network parameters
``gamma2``, ``beta2`` (:math:`\boldsymbol\gamma^{[2]}`, :math:`\boldsymbol\beta^{[2]}`).  With
``affine=False`` they have no parameter and act like an activation of the stage before them.
:meth:`LayerNorm.init_params` draws :math:`\boldsymbol\gamma = \mathbf 1 + 0.1\,\mathcal N(0, 1)`,
:math:`\boldsymbol\beta = 0.1\,\mathcal N(0, 1)` (torch starts from :math:`\mathbf 1` and :math:`\mathbf 0`;
a random start keeps every term of the Jacobians visible in checks).
"""
from __future__ import annotations

from math import prod

import numpy as np
import sympy

from ..errors import DataError, ShapeError, SpecError
from ..backend.exact import exact_number, real_number
from ..backend.operators import Dense as DenseOp, Diagonal, Identity, Kron, Operator, Product, VStack, sympy_scalar
from .base import Layer
from .registry import register

__all__ = ["LayerNorm", "BatchNorm1dEval", "CenteringProjection"]

#: LaTeX of the local parameters (the engine names them ``gamma<l>``, ``beta<l>``)
PARAM_LATEX = {"gamma": r"\boldsymbol{\gamma}", "beta": r"\boldsymbol{\beta}"}


def _is_symbolic(*arrays) -> bool:
    return any(isinstance(a, np.ndarray) and a.dtype == object for a in arrays)


def _symbolic_in(params: dict, *arrays) -> bool:
    """Whether any array or parameter holds SymPy entries (object dtype)."""
    return _is_symbolic(*(np.asarray(a) for a in arrays), *(np.asarray(v) for v in params.values()))


def _check_affine(affine, who: str) -> bool:
    if not isinstance(affine, (bool, np.bool_)):
        raise SpecError(f"{who}: affine must be a boolean (true/false), received {affine!r}")
    return bool(affine)


class CenteringProjection(Operator):
    r""":math:`\mathbf I - \tfrac1n(\mathbf 1\mathbf 1^\top + \hat{\mathbf x}\hat{\mathbf x}^\top)` (symmetric).

    The factor of the layer-norm input Jacobian right of :math:`\operatorname{diag}(\boldsymbol\gamma/\sigma)`.
    With :math:`\hat{\mathbf x}\perp\mathbf 1` it removes the mean and the component along
    :math:`\hat{\mathbf x}` (scaled by :math:`\lVert\hat{\mathbf x}\rVert^2/n = \sigma_0^2/(\sigma_0^2+\epsilon)\le 1`);
    applying it costs :math:`O(n)` per vector.  Entries may be SymPy expressions.

    Given a matrix ``xhat`` of shape ``(T, n)`` (a sequence normalized token by token) it is the
    block-diagonal :math:`\operatorname{blkdiag}_t(\mathbf I - \tfrac1n(\mathbf 1\mathbf 1^\top + \hat{\mathbf x}_t\hat{\mathbf x}_t^\top))`
    of size ``T n`` on the row-major flattened sequence.
    """

    structure = "identity minus rank 2"

    def __init__(self, xhat):
        xhat = np.asarray(xhat)
        rows = xhat.reshape(1, -1) if xhat.ndim <= 1 else xhat.reshape(-1, xhat.shape[-1])
        self.rows = rows
        self.xhat = rows.ravel()
        self.n = rows.shape[1]
        self.blocks = rows.shape[0]
        size = self.blocks * self.n
        self.shape = (size, size)
        self.symbolic = rows.dtype == object
        if self.blocks > 1:
            self.structure = "block-diagonal identity minus rank 2"

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        if self.blocks == 1:
            return X - (X.sum(axis=0, keepdims=True) + self.xhat[:, None] * (self.xhat @ X)[None, :]) / self.n
        X3 = X.reshape(self.blocks, self.n, X.shape[1])
        proj = (X3 * self.rows[:, :, None]).sum(axis=1, keepdims=True)
        return (X3 - (X3.sum(axis=1, keepdims=True) + self.rows[:, :, None] * proj) / self.n).reshape(X.shape)

    def rmatmat(self, X):
        return self.matmat(X)

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        if self.blocks == 1:
            return M - (M.sum(axis=1, keepdims=True) + (M @ self.xhat)[:, None] * self.xhat[None, :]) / self.n
        M3 = M.reshape(M.shape[0], self.blocks, self.n)
        proj = (M3 * self.rows[None]).sum(axis=2, keepdims=True)
        return (M3 - (M3.sum(axis=2, keepdims=True) + proj * self.rows[None]) / self.n).reshape(M.shape)

    @property
    def T(self):
        return self

    def tokenwise(self, T: int) -> bool:  # block diagonal over T tokens when its blocks split evenly among them
        return not self.symbolic and self.blocks % T == 0

    @property
    def nnz(self):
        return self.blocks * self.n * self.n

    def _block_dense(self, x):
        if self.symbolic:
            eye = np.eye(self.n, dtype=np.int64).astype(object)
            return eye - (np.ones((self.n, self.n), dtype=np.int64).astype(object)
                          + np.outer(x, x)) * sympy.Rational(1, self.n)
        return np.eye(self.n) - (1.0 + np.outer(x, x)) / self.n

    def _dense(self):
        if self.blocks == 1:
            return self._block_dense(self.xhat)
        out = np.zeros(self.shape, dtype=object if self.symbolic else float)
        if self.symbolic:
            out[...] = 0
        for t in range(self.blocks):
            sl = slice(t * self.n, (t + 1) * self.n)
            out[sl, sl] = self._block_dense(self.rows[t])
        return out

    def _sympy(self):
        D = self._dense()
        size = self.shape[0]
        return sympy.Matrix(size, size, [sympy_scalar(v) for v in D.ravel().tolist()]) if size else sympy.zeros(0, 0)


class PerFeatureAffine(Layer):
    r"""Base of the normalization layers with an ``eps`` and optional per-feature ``gamma``/``beta`` of shape
    ``(n,)`` (:class:`LayerNorm`, :class:`BatchNorm1dEval`, :class:`~jacobian_bp.layers.batch_norm.BatchNorm1dTrain`):
    the checks of ``eps`` and ``affine``, the parameters' shapes, random start and LaTeX, :math:`\epsilon` in LaTeX.
    A subclass gives the number of features ``n``."""

    #: the derivation writes the parameters with these LaTeX symbols (``\boldsymbol\gamma^{[l]}``, ...)
    param_latex = PARAM_LATEX

    def __init__(self, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        who = f"{self.kind} layer"
        self.eps = real_number(eps, f"{who}: eps", minimum=0.0, strict_minimum=True)
        self.affine = _check_affine(affine, who)
        self.parametric = self.affine
        self.param_names = ("gamma", "beta") if self.affine else ()

    @property
    def eps_exact(self) -> sympy.Expr:
        """:math:`\\epsilon` as an exact SymPy constant (:func:`~jacobian_bp.backend.exact.exact_number`)."""
        return exact_number(self.eps, f"{self.kind}: eps")

    def weight_transposed_by_layout(self, local: str) -> bool:
        """No parameter of a normalization layer is a weight matrix: the layout transposes none."""
        return False

    def param_shapes(self):
        return {"gamma": (self.n,), "beta": (self.n,)} if self.affine else {}

    def init_params(self, rng):
        r""":math:`\boldsymbol\gamma = \mathbf 1 + 0.1\,\mathcal N(0,1)`, :math:`\boldsymbol\beta = 0.1\,\mathcal N(0,1)` (torch starts
        from 1 and 0; a random start keeps every term of the Jacobians visible in checks)."""
        if not self.affine:
            return {}
        return {"gamma": 1.0 + 0.1 * rng.standard_normal(self.n), "beta": 0.1 * rng.standard_normal(self.n)}

    def latex_param(self, local: str, tag) -> str:
        r"""LaTeX of the local parameter ``local`` at stage (tag) ``tag``: :math:`\boldsymbol\gamma^{[l]}`, :math:`\boldsymbol\beta^{[l]}`."""
        return rf"{self.param_latex[local]}^{{[{tag}]}}"

    def latex_eps(self) -> str:
        r""":math:`\epsilon` in LaTeX: ``1e-05`` is written :math:`10^{-5}`, ``2.5e-06`` :math:`2.5\cdot 10^{-6}`."""
        txt = f"{self.eps:g}"
        if "e" not in txt:
            return txt
        mant, exp = txt.split("e")
        power = rf"10^{{{int(exp)}}}"
        return power if mant == "1" else rf"{mant}\cdot {power}"


class _AffinePerFeature(PerFeatureAffine):
    """Shared parts of the two layers: flat input, ``gamma``/``beta`` of shape ``(n,)``, ``eps``."""

    kind = "normalization"

    def build(self, in_shape, convention=None):
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != 1:
            raise ShapeError(f"{self._name()}: expected a flat input vector (n,), received shape {in_shape}; "
                             "insert a flatten layer before it")
        self.in_shape = self.out_shape = in_shape
        return self.out_shape

    @property
    def n(self) -> int:
        """The number of features (the last axis of the input)."""
        return self.in_shape[-1]

    @property
    def tokens(self) -> int:
        """The number of rows normalized separately: 1 for a flat input, ``T`` for a sequence ``(T, d)``."""
        return prod(self.in_shape[:-1])

    def _gamma(self, params):
        return params["gamma"] if self.affine else None

    def _affine_out(self, Xhat, params):
        if not self.affine:
            return Xhat
        return Xhat * params["gamma"] + params["beta"]

    def jac_params(self, a, o, params, order="C"):
        r""":math:`\mathbf J_{\boldsymbol\gamma}\mathbf o = \operatorname{diag}(\hat{\mathbf x})`, :math:`\mathbf J_{\boldsymbol\beta}\mathbf o = \mathbf I`
        (vectors: both vec orders agree)."""
        if order not in ("C", "F"):
            raise DataError(f"{self._name()}: vec order must be 'C' or 'F', got {order!r}")
        if not self.affine:
            return {}
        xhat = self.normalized(np.asarray(a)[None])[0]
        if self.tokens == 1:
            return {"gamma": Diagonal(np.ravel(xhat)), "beta": Identity(self.n)}
        rows = np.asarray(xhat).reshape(self.tokens, self.n)
        # a sequence: o[t, i] = gamma_i xhat[t, i] + beta_i, one block per token stacked
        return {"gamma": VStack([Diagonal(r) for r in rows]),
                "beta": Kron(DenseOp(np.ones((self.tokens, 1), dtype=np.int64)), Identity(self.n))}

    def vjp_params(self, A, O, G, params):
        r""":math:`\sum_i\mathbf g_i\odot\hat{\mathbf x}_i` and :math:`\sum_i\mathbf g_i`."""
        if not self.affine:
            return {}
        G = np.asarray(G).reshape(-1, self.n)
        return {"gamma": np.sum(G * np.asarray(self.normalized(A)).reshape(-1, self.n), axis=0), "beta": G.sum(axis=0)}

    def jvp_params(self, A, O, dparams, params):
        r""":math:`\dot{\boldsymbol\gamma}\odot\hat{\mathbf x}_i + \dot{\boldsymbol\beta}`."""
        N = A.shape[0]
        if not self.affine:
            return np.zeros((N, self.out_size))
        return (self.normalized(A) * dparams["gamma"] + dparams["beta"]).reshape(N, -1)

    # ------------------------------------------------------------------ LaTeX facts
    def sympy_vector(self, z, params=None):
        r"""The defining formula on SymPy symbols ``z``: :math:`\boldsymbol\gamma\odot\hat{\mathbf x}+\boldsymbol\beta`.

        ``params`` maps ``gamma``/``beta`` to entries; an affine layer without them uses the real
        symbols :math:`\gamma_i`, :math:`\beta_i`.
        """
        z = list(z)
        n = self.n if self.in_shape is not None else len(z)
        if self.affine and params is None:
            params = {"gamma": np.array(sympy.symbols(f"gamma_1:{n + 1}", real=True), dtype=object),
                      "beta": np.array(sympy.symbols(f"beta_1:{n + 1}", real=True), dtype=object)}
        A = np.array([z], dtype=object)
        if self.in_shape is not None:
            A = A.reshape(1, *self.in_shape)
        return list(np.ravel(self.forward(A, params or {})[0]))

    def _affine_latex(self, nt, core: str, l) -> str:
        """``γ ⊙ core + β``; the parameters as the renderer's notation writes them (``nt.param``), so that the
        document names them one way, else as :meth:`latex_param`."""
        if not self.affine:
            return core
        g, b = ((nt.param("gamma", l), nt.param("beta", l)) if nt is not None
                else (self.latex_param("gamma", l), self.latex_param("beta", l)))
        return rf"{g} \odot {core} + {b}"

    def block_param_jacobian(self, alg, local, order):
        r""":math:`\mathbf I_n` for ``beta`` (:math:`\mathbf 1_T\otimes\mathbf I_n` on a sequence); ``gamma``'s
        :math:`\operatorname{diag}(\hat{\mathbf x})` has no form in the algebra (None)."""
        if local != "beta":
            return None
        return alg.identity(self.n) if self.tokens == 1 else alg.kron(alg.ones(self.tokens), alg.identity(self.n))

    def block_param_gradient(self, alg, local, order, delta):
        r""":math:`\boldsymbol\delta` for ``beta`` (None for ``gamma`` and on a sequence: the transposed block times :math:`\boldsymbol\delta`)."""
        return delta if local == "beta" and self.tokens == 1 else None


@register("layer_norm")
class LayerNorm(_AffinePerFeature):
    r"""Layer normalization over the features of a flat vector (``torch.nn.LayerNorm(n)``); see the module docstring.

    Parameters
    ----------
    eps : float
        :math:`\epsilon > 0`, finite (default ``1e-5``, torch's).
    affine : bool
        Whether the layer has :math:`\boldsymbol\gamma`, :math:`\boldsymbol\beta` (torch's
        ``elementwise_affine``; default True).

    Raises
    ------
    SpecError
        ``eps`` not a finite real number > 0 (strings, booleans, NaN, infinities refused), ``affine`` not a boolean.
    """

    kind = "layer_norm"
    #: (as a parameter-free layer of stage l) the block symbol and its meaning, x̂ the normalized input
    block_symbol = ("N", r"\tfrac{{1}}{{\sigma}}(\mathbf I-\tfrac1n\mathbf 1\mathbf 1^\top"
                         r"-\tfrac1n\hat{{\mathbf x}}\hat{{\mathbf x}}^\top)", r"\mathbf{{N}}^{{[{l}]}}")

    @classmethod
    def protocol_examples(cls):
        return [({}, (5,)), ({"eps": 0.5}, (4,)), ({"affine": False}, (5,)), ({}, (3, 4)), ({"affine": False}, (2, 3))]

    def build(self, in_shape, convention=None):
        r"""A flat vector ``(n,)`` or a sequence ``(T, d)`` (normalized over the last axis, token by token, as
        ``nn.LayerNorm(d)`` does on ``(N, T, d)``); the output has the input's shape."""
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) not in (1, 2) or min(in_shape, default=0) < 1:
            raise ShapeError(f"{self._name()}: expected a flat input vector (n,) or a sequence (T, d) with T, d >= 1, "
                             f"received shape {in_shape}")
        self.in_shape = self.out_shape = in_shape
        return self.out_shape

    # ------------------------------------------------------------------ statistics
    def moments(self, A) -> tuple[np.ndarray, np.ndarray]:
        r"""``(x̂, σ)`` of every normalized row: :math:`\hat{\mathbf x}_r` ``(R, n)`` and :math:`\sigma_r` ``(R, 1)``.

        ``A`` is a batch ``(N, *in_shape)``; the rows are its samples (``R = N``) for a flat input and
        its tokens (``R = N T``, sample-major) for a sequence ``(T, d)``.  Float rows use two passes
        (mean, then the mean of the squared deviations); SymPy rows the same formula exactly, with
        :math:`\epsilon` an exact constant.
        """
        A = np.asarray(A)
        n = self.in_shape[-1] if self.in_shape is not None else A.shape[-1]
        A2 = A.reshape(-1, n)
        if _is_symbolic(A2):
            eps = self.eps_exact
            Xhat = np.empty_like(A2)
            S = np.empty((A2.shape[0], 1), dtype=object)
            for i, row in enumerate(A2):
                mu = sum(row) * sympy.Rational(1, n)
                c = [v - mu for v in row]
                s = sympy.sqrt(sum(t ** 2 for t in c) * sympy.Rational(1, n) + eps)
                Xhat[i] = [t / s for t in c]
                S[i, 0] = s
            return Xhat, S
        A2 = A2.astype(float, copy=False)
        C = A2 - A2.mean(axis=1, keepdims=True)
        S = np.sqrt(np.mean(C * C, axis=1, keepdims=True) + self.eps)
        return C / S, S

    def normalized(self, A) -> np.ndarray:
        r""":math:`\hat{\mathbf x}_r = (\mathbf a_r-\mu_r\mathbf 1)/\sigma_r` for every row, shaped like ``A`` (``(N, *in_shape)``)."""
        A = np.asarray(A)
        return self.moments(A)[0].reshape(A.shape)

    def _scale(self, S, params):
        """``γ/σ`` per row, ``(R, n)`` (``1/σ`` broadcast without γ)."""
        inv = 1 / S
        return inv * params["gamma"] if self.affine else np.broadcast_to(inv, (S.shape[0], self.n))

    # ------------------------------------------------------------------ protocol
    def forward(self, A, params):
        return self._affine_out(self.normalized(A), params)

    def jac_input(self, a, o, params):
        r""":math:`\operatorname{diag}(\boldsymbol\gamma/\sigma)\,(\mathbf I-\tfrac1n\mathbf 1\mathbf 1^\top-\tfrac1n\hat{\mathbf x}\hat{\mathbf x}^\top)`;
        on a sequence the block diagonal of these per-token factors (:class:`CenteringProjection` of a ``(T, d)`` matrix)."""
        Xhat, S = self.moments(np.asarray(a)[None])
        return Product([Diagonal(np.ravel(self._scale(S, params))), CenteringProjection(Xhat)])

    def vjp_input(self, A, O, G, params):
        r""":math:`\frac1\sigma\big(\mathbf h-\overline{\mathbf h}\,\mathbf 1-\hat{\mathbf x}\,\overline{\mathbf h\odot\hat{\mathbf x}}\big)`
        with :math:`\mathbf h = \boldsymbol\gamma\odot\mathbf g` (bars: means over the features), per row; ``(N, in_size)``."""
        N = np.shape(A)[0]
        Xhat, S = self.moments(A)
        return self._vjp_rows(Xhat, S, G, params).reshape(N, -1)

    def _vjp_rows(self, Xhat, S, G, params):
        Hg = np.asarray(G).reshape(Xhat.shape) * (params["gamma"] if self.affine else 1)
        return (Hg - Hg.mean(axis=1, keepdims=True) - Xhat * np.mean(Hg * Xhat, axis=1, keepdims=True)) / S

    def forward_state(self, A, params):
        """``(forward(A, params), (x̂, σ, params))``: a composite block keeps the moments for :meth:`vjp_from_state`."""
        A = np.asarray(A)
        Xhat, S = self.moments(A)
        return self._affine_out(Xhat.reshape(A.shape), params), (Xhat, S, params, A.shape[0])

    def vjp_from_state(self, state, G, want_params: bool = True):
        """``(vjp_input, vjp_params)`` (``{}`` without ``want_params``) from the kept moments of :meth:`forward_state`."""
        Xhat, S, params, N = state
        gin = self._vjp_rows(Xhat, S, G, params).reshape(N, -1)
        G2 = np.asarray(G).reshape(-1, self.n)
        return gin, ({"gamma": np.sum(G2 * Xhat, axis=0), "beta": G2.sum(axis=0)} if want_params and self.affine else {})

    def jvp_input(self, A, O, T, params):
        r""":math:`\frac{\boldsymbol\gamma}{\sigma}\odot\big(\mathbf t-\overline{\mathbf t}\,\mathbf 1-\hat{\mathbf x}\,\overline{\hat{\mathbf x}\odot\mathbf t}\big)`, per row; ``(N, out_size)``."""
        N = np.shape(A)[0]
        Xhat, S = self.moments(A)
        T = np.asarray(T).reshape(Xhat.shape)
        out = self._scale(S, params) * (T - T.mean(axis=1, keepdims=True)
                                        - Xhat * np.mean(Xhat * T, axis=1, keepdims=True))
        return out.reshape(N, -1)

    def left_jac_input(self, A, O, P, params):
        r"""Rows of :math:`\mathbf P_i` times the Jacobian: :math:`\mathbf Q = \mathbf P_i\operatorname{diag}(\boldsymbol\gamma/\sigma_i)`,
        then :math:`\mathbf Q - \tfrac1n(\mathbf Q\mathbf 1)\mathbf 1^\top - \tfrac1n(\mathbf Q\hat{\mathbf x}_i)\hat{\mathbf x}_i^\top`
        (token by token on a sequence)."""
        Xhat, S = self.moments(A)
        P = np.asarray(P)
        N, k = P.shape[:2]
        R, n = Xhat.shape
        Tk = R // N  # tokens per sample
        X4 = Xhat.reshape(N, 1, Tk, n)
        Q = P.reshape(N, k, Tk, n) * self._scale(S, params).reshape(N, 1, Tk, n)
        if _is_symbolic(Q, Xhat):
            return np.stack([CenteringProjection(Xhat.reshape(N, Tk, n)[i]).left_matmat(Q[i].reshape(k, -1))
                             for i in range(N)])
        proj = np.einsum("nktj,nktj->nkt", Q, np.broadcast_to(X4, Q.shape))[..., None]
        return (Q - Q.mean(axis=3, keepdims=True) - proj * X4 / n).reshape(N, k, -1)

    def torch_forward(self, A, params):
        """``torch.nn.functional.layer_norm`` over the last axis."""
        import torch

        return torch.nn.functional.layer_norm(A, (self.n,), params.get("gamma"), params.get("beta"), self.eps)

    torch_module_types = ("LayerNorm",)

    @classmethod
    def from_torch_module(cls, module, in_shape) -> tuple[dict, dict]:
        """``(constructor kwargs, local parameters as float64)`` of an ``nn.LayerNorm`` over the last axis of ``in_shape``.

        Raises
        ------
        UnsupportedInputError
            A ``normalized_shape`` other than the last axis of ``in_shape``, or a LayerNorm with an
            affine weight but no bias.
        """
        from ..errors import UnsupportedInputError

        shape = tuple(int(s) for s in module.normalized_shape)
        in_shape = tuple(int(s) for s in in_shape)
        if len(shape) != 1 or not in_shape or shape[0] != in_shape[-1]:
            raise UnsupportedInputError(f"layer_norm: only normalization over the last axis is supported; "
                                        f"normalized_shape {shape} for input shape {in_shape}")
        affine = bool(module.elementwise_affine)
        if affine and getattr(module, "bias", None) is None:
            raise UnsupportedInputError("layer_norm: a LayerNorm with a weight but no bias (bias=False) is not supported")
        kwargs = {"eps": float(module.eps), "affine": affine}
        params = {}
        if affine:
            params = {"gamma": module.weight.detach().cpu().double().numpy().copy(),
                      "beta": module.bias.detach().cpu().double().numpy().copy()}
        return kwargs, params

    # ------------------------------------------------------------------ LaTeX facts
    def prose(self) -> str:
        n = "d" if self.in_shape is not None and self.tokens > 1 else "n"  # the width symbol of latex_input_jacobian: d per token of a sequence
        return (r"layer normalization $\boldsymbol{\gamma}\odot(\mathbf{a}-\mu\mathbf{1})/\sigma+\boldsymbol{\beta}$ "
                rf"over the ${n}$ features (biased variance, $\sigma=\sqrt{{\operatorname{{var}}(\mathbf{{a}})+\epsilon}}$), "
                rf"with Jacobian $\operatorname{{diag}}(\boldsymbol{{\gamma}}/\sigma)(\mathbf{{I}}-\tfrac{{1}}{{{n}}}\mathbf{{1}}\mathbf{{1}}^\top"
                rf"-\tfrac{{1}}{{{n}}}\hat{{\mathbf{{x}}}}\hat{{\mathbf{{x}}}}^\top)$")

    def latex_describe(self) -> str:
        if self.tokens > 1:
            return rf"layer norm per token, $\epsilon = {self.latex_eps()}$" + ("" if self.affine else ", no affine")
        return rf"layer norm over ${self.n}$ features, $\epsilon = {self.latex_eps()}$" + ("" if self.affine else ", no affine")

    def latex_name(self) -> str:
        return r"\operatorname{LN}"

    def latex_forward(self, nt, l, a_prev, weight_layout):
        r""":math:`\boldsymbol\gamma^{[l]}\odot\frac{\mathbf a-\mu(\mathbf a)\mathbf 1}{\sigma(\mathbf a)}+\boldsymbol\beta^{[l]}`."""
        if self.tokens > 1:  # token by token: row t of the (T, d) sequence
            row = rf"({a_prev})_t"
            core = rf"\frac{{{row} - \mu({row})\mathbf{{1}}}}{{\sigma({row})}}"
            return rf"\Big[{self._affine_latex(nt, core, l)}\Big]_{{t=1}}^{{{self.tokens}}}"
        core = rf"\frac{{{a_prev} - \mu({a_prev})\mathbf{{1}}}}{{\sigma({a_prev})}}"
        return self._affine_latex(nt, core, l)

    def latex_input_jacobian(self, params_latex):
        r""":math:`\operatorname{diag}(\boldsymbol\gamma/\sigma)(\mathbf I-\tfrac1n\mathbf 1\mathbf 1^\top-\tfrac1n\hat{\mathbf x}\hat{\mathbf x}^\top)`."""
        g = params_latex.get("gamma")
        if self.tokens > 1:
            scale = rf"\operatorname{{diag}}({g}/\sigma_t)" if g is not None else r"\tfrac{1}{\sigma_t}"
            return (rf"\operatorname{{blkdiag}}_{{t}}\left({scale}\left(\mathbf{{I}} - \tfrac{{1}}{{d}}\mathbf{{1}}\mathbf{{1}}^\top"
                    rf" - \tfrac{{1}}{{d}}\hat{{\mathbf{{x}}}}_t\hat{{\mathbf{{x}}}}_t^\top\right)\right)")
        scale = rf"\operatorname{{diag}}({g}/\sigma)" if g is not None else r"\tfrac{1}{\sigma}"
        return (rf"{scale}\left(\mathbf{{I}} - \tfrac{{1}}{{n}}\mathbf{{1}}\mathbf{{1}}^\top"
                rf" - \tfrac{{1}}{{n}}\hat{{\mathbf{{x}}}}\hat{{\mathbf{{x}}}}^\top\right)")

    def latex_jacobian(self, out, transpose):
        r"""Without the affine part the output is :math:`\hat{\mathbf x}`: :math:`\tfrac1\sigma(\mathbf I-\tfrac1n\mathbf 1\mathbf 1^\top-\tfrac1n\hat{\mathbf x}\hat{\mathbf x}^\top)`."""
        if self.affine or self.tokens > 1:
            return None
        return rf"\tfrac{{1}}{{\sigma}}\left(\mathbf{{I}} - \tfrac{{1}}{{n}}\mathbf{{1}}\mathbf{{1}}^\top - \tfrac{{1}}{{n}}{out}{transpose(out)}\right)"

    def describe(self):
        size = "?" if not self.in_shape else (f"{self.n}" if self.tokens == 1 else f"{self.n} x{self.tokens} tokens")
        return f"layer_norm {size} eps={self.eps:g}" + ("" if self.affine else " no-affine")


def _stat_vector(v, what: str, who: str, positive: bool) -> tuple[float, ...] | None:
    """A running statistic given by the user: None, or a non-empty list of finite reals (``>= 0`` for a variance)."""
    if v is None:
        return None
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple, np.ndarray)):
        raise SpecError(f"{who}: {what} must be a list of real numbers, received {v!r}")
    vals = list(np.ravel(np.asarray(v, dtype=object)))
    if not vals:
        raise SpecError(f"{who}: {what} must not be empty")
    return tuple(real_number(t, f"{who}: {what} entry", minimum=0.0 if positive else None) for t in vals)


@register("batch_norm_eval")
class BatchNorm1dEval(_AffinePerFeature):
    r"""Batch normalization in evaluation mode (``nn.BatchNorm1d(n).eval()``): an affine map per feature.

    :math:`\mathbf o = \boldsymbol\gamma\odot(\mathbf a-\mathbf m)/\sqrt{\mathbf v+\epsilon}+\boldsymbol\beta`
    with the running statistics :math:`\mathbf m`, :math:`\mathbf v` held fixed (module docstring).
    Training mode (batch statistics) is not provided: its batch Jacobian couples the samples
    (not block-diagonal), which the per-sample layer protocol cannot express.

    Parameters
    ----------
    running_mean, running_var : list of float, optional
        :math:`\mathbf m` and :math:`\mathbf v` (``v >= 0``), one entry per feature; default
        :math:`\mathbf 0` and :math:`\mathbf 1` (torch's initial buffers).
    eps : float
        :math:`\epsilon > 0`, finite (default ``1e-5``).
    affine : bool
        Whether the layer has :math:`\boldsymbol\gamma`, :math:`\boldsymbol\beta` (default True).

    Raises
    ------
    SpecError
        Bad ``eps``/``affine``, statistics that are not lists of finite reals, a negative variance.
    ShapeError
        At build, statistics whose length is not the number of features.
    """

    kind = "batch_norm_eval"
    jacobian_symmetric = True  # diagonal
    block_symbol = ("Bn", r"\operatorname{{diag}}(1/\sqrt{{\mathbf v+\epsilon}})", r"\mathbf{{B}}^{{[{l}]}}")

    def __init__(self, running_mean: list[float] | None = None, running_var: list[float] | None = None,
                 eps: float = 1e-5, affine: bool = True):
        super().__init__(eps=eps, affine=affine)
        who = f"{self.kind} layer"
        self.running_mean = _stat_vector(running_mean, "running_mean", who, positive=False)
        self.running_var = _stat_vector(running_var, "running_var", who, positive=True)

    @classmethod
    def protocol_examples(cls):
        return [({}, (4,)), ({"running_mean": [0.5, -1.0, 2.0], "running_var": [0.25, 2.0, 1.5], "eps": 0.1}, (3,)),
                ({"affine": False, "running_mean": [1, 2, 3, 4, 5]}, (5,))]

    def build(self, in_shape, convention=None):
        out = super().build(in_shape, convention)
        for what, v in (("running_mean", self.running_mean), ("running_var", self.running_var)):
            if v is not None and len(v) != self.n:
                raise ShapeError(f"{self._name()}: {what} has {len(v)} entries for {self.n} features")
        return out

    @property
    def mean(self) -> np.ndarray:
        """:math:`\\mathbf m` (float64, ``(n,)``)."""
        return np.zeros(self.n) if self.running_mean is None else np.array(self.running_mean)

    @property
    def var(self) -> np.ndarray:
        """:math:`\\mathbf v` (float64, ``(n,)``)."""
        return np.ones(self.n) if self.running_var is None else np.array(self.running_var)

    def _inv_std(self, symbolic: bool) -> np.ndarray:
        r""":math:`1/\sqrt{\mathbf v+\epsilon}` per feature (exact SymPy constants when ``symbolic``)."""
        if symbolic:
            eps = self.eps_exact
            return np.array([1 / sympy.sqrt(exact_number(v, "running_var") + eps) for v in self.var.tolist()]
                            if self.running_var is not None else [1 / sympy.sqrt(1 + eps)] * self.n, dtype=object)
        return 1.0 / np.sqrt(self.var + self.eps)

    def _mean(self, symbolic: bool) -> np.ndarray:
        if symbolic and self.running_mean is not None:
            return np.array([exact_number(v, "running_mean") for v in self.running_mean], dtype=object)
        return self.mean

    def normalized(self, A) -> np.ndarray:
        r""":math:`(\mathbf a_i-\mathbf m)/\sqrt{\mathbf v+\epsilon}` for every row, ``(N, n)``."""
        A = np.asarray(A)
        A2 = A.reshape(A.shape[0], -1)
        sym = _is_symbolic(A2)
        return (A2 - self._mean(sym)) * self._inv_std(sym)

    def _scale(self, params, symbolic: bool = False) -> np.ndarray:
        inv = self._inv_std(symbolic)
        return inv * params["gamma"] if self.affine else inv

    # ------------------------------------------------------------------ protocol
    def forward(self, A, params):
        return self._affine_out(self.normalized(A), params)

    def jac_input(self, a, o, params):
        r""":math:`\operatorname{diag}(\boldsymbol\gamma/\sqrt{\mathbf v+\epsilon})`."""
        return Diagonal(np.ravel(self._scale(params, _symbolic_in(params, a))))

    def vjp_input(self, A, O, G, params):
        return np.asarray(G).reshape(A.shape[0], -1) * self._scale(params, _symbolic_in(params, A, G))

    def jvp_input(self, A, O, T, params):
        return np.asarray(T).reshape(A.shape[0], -1) * self._scale(params, _symbolic_in(params, A, T))

    def left_jac_input(self, A, O, P, params):
        return np.asarray(P) * self._scale(params, _symbolic_in(params, A, P))[None, None, :]

    def torch_forward(self, A, params):
        """``torch.nn.functional.batch_norm(..., training=False)`` with the running statistics."""
        import torch

        m = torch.tensor(self.mean, dtype=A.dtype)
        v = torch.tensor(self.var, dtype=A.dtype)
        return torch.nn.functional.batch_norm(A, m, v, params.get("gamma"), params.get("beta"),
                                              training=False, eps=self.eps)

    # ------------------------------------------------------------------ LaTeX facts
    def prose(self) -> str:
        return (r"batch normalization in evaluation mode, $\boldsymbol{\gamma}\odot(\mathbf{a}-\mathbf{m})/"
                r"\sqrt{\mathbf{v}+\epsilon}+\boldsymbol{\beta}$ with fixed running statistics $\mathbf{m}$, $\mathbf{v}$ "
                r"(a diagonal Jacobian)")

    def latex_describe(self) -> str:
        return rf"batch norm (eval) over ${self.n}$ features, $\epsilon = {self.latex_eps()}$" + ("" if self.affine else ", no affine")

    def latex_name(self) -> str:
        return r"\operatorname{BN}"

    def latex_forward(self, nt, l, a_prev, weight_layout):
        r""":math:`\boldsymbol\gamma^{[l]}\odot\frac{\mathbf a-\mathbf m}{\sqrt{\mathbf v+\epsilon}}+\boldsymbol\beta^{[l]}`."""
        core = rf"\frac{{{a_prev} - \mathbf{{m}}}}{{\sqrt{{\mathbf{{v}} + \epsilon}}}}"
        return self._affine_latex(nt, core, l)

    def latex_input_jacobian(self, params_latex):
        g = params_latex.get("gamma")
        return (rf"\operatorname{{diag}}\left({g} \oslash \sqrt{{\mathbf{{v}} + \epsilon}}\right)" if g is not None
                else r"\operatorname{diag}\left(1 \oslash \sqrt{\mathbf{v} + \epsilon}\right)")

    def latex_jacobian(self, out, transpose):
        return None if self.affine else r"\operatorname{diag}\left(1 \oslash \sqrt{\mathbf{v} + \epsilon}\right)"

    def describe(self):
        return f"batch_norm_eval {self.in_shape[0] if self.in_shape else '?'} eps={self.eps:g}" + ("" if self.affine else " no-affine")
