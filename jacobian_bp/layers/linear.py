r"""Token-wise linear layer on a sequence: ``torch.nn.Linear`` applied to every row of :math:`\mathbf X\in\mathbb R^{T\times d}`.

One sample is a matrix :math:`\mathbf X\in\mathbb R^{T\times d_\text{in}}` (``T`` tokens, one per row), flattened
row-major: :math:`\mathbf x = \operatorname{vec}_r\mathbf X` stacks the tokens,
:math:`x_{t d_\text{in} + j} = X_{tj}` (the toolkit's convention for every shaped input).  With
:math:`\mathbf W\in\mathbb R^{d_\text{out}\times d_\text{in}}` (torch's ``Linear.weight`` layout) and
:math:`\mathbf b\in\mathbb R^{d_\text{out}}`,

.. math::

   \mathbf Z = \mathbf X\mathbf W^\top + \mathbf 1_T\mathbf b^\top\in\mathbb R^{T\times d_\text{out}},
   \qquad \mathbf z_t = \mathbf W\mathbf x_t + \mathbf b .

Jacobians (from :math:`\operatorname{vec}_r(\mathbf A\mathbf X\mathbf B^\top) = (\mathbf A\otimes\mathbf B)\operatorname{vec}_r\mathbf X`):

.. math::

   \mathbf J_{\mathbf x}\mathbf z = \mathbf I_T\otimes\mathbf W,\qquad
   \mathbf J_{\operatorname{vec}_r\mathbf W}\mathbf z =
   \begin{bmatrix}\mathbf I_{d_\text{out}}\otimes\mathbf x_1^\top\\ \vdots\\
   \mathbf I_{d_\text{out}}\otimes\mathbf x_T^\top\end{bmatrix},\qquad
   \mathbf J_{\mathbf b}\mathbf z = \mathbf 1_T\otimes\mathbf I_{d_\text{out}} :

every token contributes the dense layer's block :math:`\mathbf I\otimes\mathbf x_t^\top` (Damadi §3.1), stacked over
the tokens (:class:`TokenwiseWeight`); with columns of :math:`\mathbf W` stacked (``order="F"``) each block is
:math:`\mathbf x_t^\top\otimes\mathbf I`.  The weight is kept in torch's ``(out, in)`` layout under every
convention (the convention's ``in_out`` weight layout transposes Dense weights only).

For a flat input ``(n,)`` use the ``dense`` layer (the same map with :math:`T = 1`).
"""
from __future__ import annotations

from functools import partial

import numpy as np
import scipy.sparse as sp

from ..errors import DataError, ShapeError, SpecError
from ..backend.kernels import jit_kernel_available, outer_into
from ..backend.operators import Dense as DenseOp, Identity, Kron
from .dense import WeightBiasLayer
from .lazy_operators import RowOperator, has_object_entries as _is_object
from .registry import register

__all__ = ["Linear", "TokenwiseWeight", "weight_rows"]


def weight_rows(G, Xin, order: str = "C", out=None):
    r"""Rows :math:`\operatorname{vec}(\mathbf G_k^\top\mathbf X)` for cotangents ``G`` ``(k, T, m)`` of :math:`\mathbf X\mathbf W^\top` and
    ``Xin`` ``(T, n)``: the products of ``k`` rows with :class:`TokenwiseWeight`, ``(k, m n)`` in vec order ``order``.

    With ``out`` (a ``(k, m n)`` view, e.g. a column block of a materialized Jacobian) the batched matrix product is
    written into it directly when it can be viewed as ``(k, m, n)`` (no temporary, no copy).
    """
    G = np.asarray(G)
    Xin = np.asarray(Xin)
    k, T, m = G.shape
    n = Xin.shape[1]
    if _is_object(G, Xin):
        W = np.stack([G[i].T @ Xin for i in range(k)]) if k else np.zeros((0, m, n), dtype=object)
        res = W.reshape(k, -1) if order == "C" else W.transpose(0, 2, 1).reshape(k, -1)
        if out is not None:
            out[...] = res
        return res
    shape3 = (k, m, n) if order == "C" else (k, n, m)
    dst = None
    if out is not None:
        view = out.reshape(shape3)
        if np.shares_memory(view, out):
            dst = view
    if order == "C":
        res = np.matmul(G.transpose(0, 2, 1), Xin, out=dst)
    else:
        res = np.matmul(Xin.T, G, out=dst)
    if out is not None:
        if dst is None:
            out[...] = res.reshape(k, -1)
        return out
    return res.reshape(k, -1)


class TokenwiseWeight(RowOperator):
    r""":math:`\mathbf J_{\operatorname{vec}\mathbf W}\operatorname{vec}_r(\mathbf X\mathbf W^\top)` for a fixed :math:`\mathbf X\in\mathbb R^{T\times n}`.

    Shape ``(T m, m n)`` for :math:`\mathbf W\in\mathbb R^{m\times n}`: the vertical stack over the rows
    :math:`\mathbf x_t` of :math:`\mathbf X` of :math:`\mathbf I_m\otimes\mathbf x_t^\top` (``order="C"``, rows of
    :math:`\mathbf W` stacked) or :math:`\mathbf x_t^\top\otimes\mathbf I_m` (``order="F"``).  Products cost
    :math:`O(T m n)` per vector: ``left_matmat(M)`` is :math:`\sum_t \mathbf M_{:,t}^\top\mathbf x_t`
    (one ``einsum``), ``matmat`` is :math:`\mathbf X\dot{\mathbf W}^\top`.  Entries may be SymPy expressions.
    """

    structure = "token-wise Kronecker stack"

    def __init__(self, X, m: int, order: str = "C"):
        X = np.asarray(X)
        if X.ndim != 2:
            raise ShapeError(f"TokenwiseWeight: expected a (T, n) matrix, received shape {X.shape}")
        if order not in ("C", "F"):
            raise DataError(f"TokenwiseWeight: vec order must be 'C' or 'F', got {order!r}")
        self.X = X
        self.m = int(m)
        self.T_, self.n = X.shape
        self.order = order
        self.symbolic = X.dtype == object
        self.shape = (self.T_ * self.m, self.m * self.n)

    def _w(self, cols: np.ndarray) -> np.ndarray:
        """Columns ``(m n, k)`` of vec W -> ``(k, m, n)``."""
        k = cols.shape[1]
        if self.order == "C":
            return cols.T.reshape(k, self.m, self.n)
        return cols.T.reshape(k, self.n, self.m).transpose(0, 2, 1)

    def _vec(self, W: np.ndarray) -> np.ndarray:
        """``(k, m, n)`` -> rows ``(k, m n)`` in the operator's vec order."""
        k = W.shape[0]
        return W.reshape(k, -1) if self.order == "C" else W.transpose(0, 2, 1).reshape(k, -1)

    def matmat(self, V):
        V = self._check_mat(V, self.shape[1], "matmat")
        W = self._w(V)
        out = np.einsum("tj,kij->kti", self.X, W) if not _is_object(W, self.X) else np.stack(
            [self.X @ W[i].T for i in range(W.shape[0])]) if W.shape[0] else np.zeros((0, self.T_, self.m), dtype=object)
        return out.reshape(V.shape[1], -1).T

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        return weight_rows(M.reshape(M.shape[0], self.T_, self.m), self.X, self.order)

    def _left_matmat_into(self, M, out):
        M = np.asarray(M)
        weight_rows(M.reshape(M.shape[0], self.T_, self.m), self.X, self.order, out=out)

    # ------------------------------------------------------------------ materialization, written in place
    def _token_slab(self, out, t: int, rows: int):
        """Rows ``t*rows:(t+1)*rows`` of ``out`` as a ``(rows, m, n)`` (``"C"``) or ``(rows, n, m)`` (``"F"``) view."""
        shape = (rows, self.m, self.n) if self.order == "C" else (rows, self.n, self.m)
        return np.reshape(out[t * rows:(t + 1) * rows], shape, copy=False)

    def _fill_token(self, out, t: int) -> None:
        r"""Rows of token ``t`` of the dense matrix: :math:`\mathbf I_m\otimes\mathbf x_t^\top` (or :math:`\mathbf x_t^\top\otimes\mathbf I_m`)."""
        v = self._token_slab(out, t, self.m)
        v[...] = 0.0
        i = np.arange(self.m)
        if self.order == "C":
            v[i, i, :] = self.X[t]
        else:
            v[i, :, i] = self.X[t]

    def _outer_token(self, B, out, t: int) -> None:
        r"""Row block ``t`` of :math:`\operatorname{blkdiag}(\mathbf B_t)\,\mathbf J`: row ``i`` is :math:`\operatorname{vec}(\mathbf B_t[i,:]^\top\mathbf x_t^\top)`."""
        v = self._token_slab(out, t, B.shape[1])
        if self.order == "C":
            x = np.ascontiguousarray(self.X[t], dtype=float)
            for i in range(v.shape[0]):  # one contiguous (m, n) outer product per row (compiled kernel when large)
                outer_into(v[i], B[t, i], x)
        else:
            np.multiply(B[t][:, None, :], self.X[t][None, :, None], out=v)

    def _dense_tasks(self, out):
        if self.symbolic or out.dtype == object:
            return super()._dense_tasks(out)
        try:
            self._token_slab(out, 0, self.m)
        except ValueError:  # not viewable as (rows, m, n) without a copy
            return super()._dense_tasks(out)
        return [(self.m * out.shape[1], partial(self._fill_token, out, t), False) for t in range(self.T_)]

    def _left_token_blocks_tasks(self, B, out):
        r"""Tasks writing :math:`\operatorname{blkdiag}(\mathbf B_1,\dots,\mathbf B_T)\,\mathbf J` (``B`` ``(T, r, m)``) into ``out``:
        the outer products :math:`\mathbf B_t[i,:]\otimes\mathbf x_t^\top` (used by
        :class:`~jacobian_bp.layers.token_blocks.ChainBlock`); None when ``out`` is not viewable per token."""
        B = np.asarray(B)
        if self.symbolic or B.dtype == object or B.shape[0] != self.T_ or B.shape[2] != self.m:
            return None
        try:
            self._token_slab(out, 0, B.shape[1])
        except ValueError:
            return None
        blas = not jit_kernel_available()  # outer_into falls back to BLAS dger without the compiled kernel
        return [(B.shape[1] * out.shape[1], partial(self._outer_token, B, out, t), blas) for t in range(self.T_)]

    @property
    def nnz(self):
        return self.T_ * self.m * self.n

    def _dense(self):
        out = np.zeros((self.T_, self.m, self.m, self.n), dtype=object if self.symbolic else float)
        for i in range(self.m):
            out[:, i, i, :] = self.X
        out = out.reshape(self.T_ * self.m, self.m, self.n)
        return out.reshape(self.shape[0], -1) if self.order == "C" else out.transpose(0, 2, 1).reshape(self.shape[0], -1)

    def _sparse(self):
        t, i, j = np.meshgrid(np.arange(self.T_), np.arange(self.m), np.arange(self.n), indexing="ij")
        rows = (t * self.m + i).ravel()
        cols = (i * self.n + j).ravel() if self.order == "C" else (j * self.m + i).ravel()
        vals = np.broadcast_to(self.X[:, None, :], (self.T_, self.m, self.n)).ravel().astype(float)
        return sp.csr_array((vals, (rows, cols)), shape=self.shape)


def _positive_int(v, what: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
        raise SpecError(f"{what} must be a positive integer, received {v!r}")
    return int(v)


@register("linear")
class Linear(WeightBiasLayer):
    r"""Token-wise affine map :math:`\mathbf Z = \mathbf X\mathbf W^\top + \mathbf 1\mathbf b^\top` on ``(T, d_in)`` (``nn.Linear``).

    Parameters
    ----------
    out_features : int
        :math:`d_\text{out}`.
    bias : bool
        Whether the layer has :math:`\mathbf b` (default True).

    Raises
    ------
    SpecError
        ``out_features`` not a positive integer, ``bias`` not a boolean.
    ShapeError
        At build, an input that is not ``(T, d_in)`` with ``T >= 1`` (a flat vector: use ``dense``).
    """

    kind = "linear"
    parametric = True

    def __init__(self, out_features: int, bias: bool = True):
        super().__init__()
        self.out_features = _positive_int(out_features, "linear layer: out_features")
        if not isinstance(bias, (bool, np.bool_)):
            raise SpecError(f"linear layer: bias must be a boolean (true/false), received {bias!r}")
        self.bias = bool(bias)
        self.param_names = ("W", "b") if self.bias else ("W",)

    @classmethod
    def protocol_examples(cls):
        return [({"out_features": 3}, (2, 4)), ({"out_features": 2, "bias": False}, (3, 2))]

    def build(self, in_shape, convention=None):
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != 2:
            raise ShapeError(f"{self._name()}: expected a sequence (T, d_in), received shape {in_shape}; "
                             "for a flat vector use a dense layer")
        if in_shape[0] < 1 or in_shape[1] < 1:
            raise ShapeError(f"{self._name()}: expected T >= 1 tokens of d_in >= 1 features, received shape {in_shape}")
        self.in_shape = in_shape
        self.out_shape = (in_shape[0], self.out_features)
        return self.out_shape

    @property
    def T_len(self) -> int:
        return self.in_shape[0]

    @property
    def in_features(self) -> int:
        return self.in_shape[1]

    def weight_transposed_by_layout(self, local: str) -> bool:
        """The weight stays in torch's ``(out, in)`` layout under every convention."""
        return False

    # ------------------------------------------------------------------ protocol
    def _X(self, A):
        A = np.asarray(A)
        return A.reshape(A.shape[0], self.T_len, self.in_features)

    def forward(self, A, params):
        X = self._X(A)
        N = X.shape[0]
        # one matrix product over every token of the batch (not N small ones)
        Z = (X.reshape(N * self.T_len, self.in_features) @ np.asarray(params["W"]).T).reshape(N, self.T_len, -1)
        if self.bias:
            Z = Z + params["b"]
        return Z

    def jac_input(self, a, o, params):
        r""":math:`\mathbf I_T\otimes\mathbf W`."""
        return Kron(Identity(self.T_len), DenseOp(np.asarray(params["W"])))

    def jac_params(self, a, o, params, order="C"):
        r""":math:`\mathbf J_{\operatorname{vec}\mathbf W}\mathbf z` (:class:`TokenwiseWeight`), :math:`\mathbf 1_T\otimes\mathbf I` for ``b``."""
        if order not in ("C", "F"):
            raise DataError(f"{self._name()}: vec order must be 'C' or 'F', got {order!r}")
        X = np.asarray(a).reshape(self.T_len, self.in_features)
        out = {"W": TokenwiseWeight(X, self.out_features, order)}
        if self.bias:
            out["b"] = Kron(DenseOp(np.ones((self.T_len, 1))), Identity(self.out_features))
        return out

    def vjp_input(self, A, O, G, params):
        N = A.shape[0]
        return (np.asarray(G).reshape(N * self.T_len, self.out_features) @ params["W"]).reshape(N, -1)

    def vjp_params(self, A, O, G, params):
        N = A.shape[0]
        G2 = np.asarray(G).reshape(N * self.T_len, self.out_features)
        X2 = self._X(A).reshape(N * self.T_len, self.in_features)
        out = {"W": (G2.T @ X2).ravel()}
        if self.bias:
            out["b"] = G2.sum(axis=0)
        return out

    def left_jac_input(self, A, O, P, params):
        P = np.asarray(P)
        N, k = P.shape[:2]
        if P.dtype != object:
            P = np.ascontiguousarray(P)
        return (P.reshape(N * k * self.T_len, self.out_features) @ params["W"]).reshape(N, k, -1)

    def jvp_input(self, A, O, T, params):
        N = A.shape[0]
        return (np.asarray(T).reshape(N * self.T_len, self.in_features) @ np.asarray(params["W"]).T).reshape(N, -1)

    def jvp_params(self, A, O, dparams, params):
        N = A.shape[0]
        out = self._X(A).reshape(N * self.T_len, self.in_features) @ np.asarray(dparams["W"]).T
        if self.bias and "b" in dparams:
            out = out + dparams["b"]
        return out.reshape(N, -1)

    def torch_forward(self, A, params):
        """``torch.nn.functional.linear`` on the last axis."""
        import torch

        return torch.nn.functional.linear(A, params["W"], params.get("b"))

    # ------------------------------------------------------------------ LaTeX facts
    def prose(self) -> str:
        return (r"a token-wise linear map $\mathbf{X}\mathbf{W}^\top+\mathbf{1}\mathbf{b}^\top$ (every row of the sequence "
                r"through the same $\mathbf{W}$), with Jacobian $\mathbf{I}_T\otimes\mathbf{W}$")

    def latex_describe(self) -> str:
        return rf"linear ${self.in_features}\to {self.out_features}$"

    def latex_name(self) -> str:
        return r"\operatorname{Lin}"

    def latex_forward(self, nt, l, a_prev, weight_layout):
        r""":math:`(\mathbf I_T\otimes\mathbf W)\mathbf a + \mathbf 1_T\otimes\mathbf b` on the row-major flattened sequence."""
        W = nt.weight("W", l)
        out = rf"(\mathbf{{I}}_{{{self.T_len}}} \otimes {W}){a_prev}"
        return out + (rf" + \mathbf{{1}}_{{{self.T_len}}} \otimes {nt.bias(l)}" if self.bias else "")

    def latex_input_jacobian(self, params_latex):
        W = params_latex.get("W", r"\mathbf{W}")
        return rf"(\mathbf{{I}}_{{{self.T_len}}} \otimes {W})"

    def block_param_jacobian(self, alg, local, order):
        r""":math:`\mathbf 1_T\otimes\mathbf I` for ``b`` (the weight block is a token-wise stack: a generic symbol)."""
        if local == "b":
            return alg.kron(alg.ones(self.T_len), alg.identity(self.out_features))
        return None

    def describe(self):
        if self.in_shape is None:
            return f"linear ?->{self.out_features}"
        return f"linear {self.in_features}->{self.out_features} x{self.T_len} tokens"
