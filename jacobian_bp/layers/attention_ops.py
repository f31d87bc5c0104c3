r"""The forward and backward machinery of self-attention and the operators of its Jacobians (:mod:`.attention`).

:class:`_Forward` keeps one forward pass of a batch (projections, heads, attention weights); its
``backward`` runs the classic attention gradients on ``k`` cotangents per sample at once
(:math:`d\mathbf V_j = \mathbf P_j^\top d\mathbf O_j`, :math:`d\mathbf P_j = d\mathbf O_j\mathbf V_j^\top`,
:math:`d\mathbf S_j = \mathbf P_j\odot(d\mathbf P_j - \operatorname{rowsum}(d\mathbf P_j\odot\mathbf P_j))`,
:math:`d\mathbf Q_j = d\mathbf S_j\mathbf K_j/\sqrt{d_k}`, :math:`d\mathbf K_j = d\mathbf S_j^\top\mathbf Q_j/\sqrt{d_k}`) and
``tangent`` the forward mode.  :class:`AttentionInputJacobian` and :class:`AttentionParamJacobian` are
:math:`\mathbf J_{\mathbf x}\mathbf y` and :math:`\mathbf J_{\operatorname{vec}\theta}\mathbf y` of one sample applied through them;
:func:`factor_blocks` forms the explicit factors (:math:`\mathbf J_{\mathbf Q}\mathbf C`, ..., the softmax row Jacobians).
Everything here also runs on SymPy entries (object arrays).
"""
from __future__ import annotations

from math import prod

import numpy as np

from ..errors import SpecError
from ..backend.operators import Dense as DenseOp, HStack, Identity, Kron, Operator, Product, VStack
from .lazy_operators import RowOperator, has_object_entries as _is_object
from .linear import TokenwiseWeight, weight_rows

__all__ = ["AttentionInputJacobian", "AttentionParamJacobian", "softmax_row_jacobians", "factor_blocks",
           "structured_product", "structured_param_products"]

_QKV = ("Q", "K", "V")


def _obj_einsum(spec: str, *ops):
    """``np.einsum`` (NumPy >= 1.25 supports object arrays; ``optimize`` only for floats)."""
    if _is_object(*ops):
        return np.einsum(spec, *ops)
    return np.einsum(spec, *ops, optimize=True)


def softmax_row_jacobians(P: np.ndarray) -> np.ndarray:
    r""":math:`\operatorname{diag}(\mathbf p) - \mathbf p\mathbf p^\top` for every row :math:`\mathbf p` of ``P`` (``(..., T)`` -> ``(..., T, T)``)."""
    P = np.asarray(P)
    eye = np.eye(P.shape[-1], dtype=np.int64)
    if P.dtype == object:
        eye = eye.astype(object)
    return P[..., :, None] * eye - P[..., :, None] * P[..., None, :]


class _Forward:
    r"""The forward pass of attention on a batch, kept for the backward and forward-mode products.

    Shapes: ``X``, ``Q``, ``K``, ``V``, ``C``, ``Y`` are ``(N, T, d)``; ``Qh``, ``Kh``, ``Vh`` the heads
    ``(N, h, T, d_k)``; ``P`` the attention weights ``(N, h, T, T)``.
    """

    def __init__(self, layer, A, params):
        self.layer = layer  # the SelfAttention layer (its shapes, heads, mask and softmax)
        N = np.shape(A)[0]
        T, d = layer.T_len, layer.d
        X = np.asarray(A).reshape(N, T, d)
        self.symbolic = _is_object(X, *(np.asarray(v) for v in params.values()))
        self.params = params
        self.X = X
        proj = {}
        for c in _QKV:
            M = X @ np.asarray(params["W_" + c]).T
            if layer.bias:
                M = M + params["b_" + c]
            proj[c] = M
        self.Q, self.K, self.V = proj["Q"], proj["K"], proj["V"]
        # b_K adds q_t . b_K to every logit of row t: the softmax cancels it, so the logits use X W_K^T only
        # (equal in exact arithmetic; then J_{b_K} y = 0 exactly, not up to rounding)
        K_logits = X @ np.asarray(params["W_K"]).T
        self.Qh, self.Kh, self.Vh = (layer.split_heads(M) for M in (self.Q, K_logits, self.V))
        self.scale = layer.scale(self.symbolic)
        S = (self.Qh @ np.swapaxes(self.Kh, -1, -2)) * self.scale
        self.P = layer.softmax(S)
        self.C = layer.merge_heads(self.P @ self.Vh)
        Y = self.C @ np.asarray(params["W_O"]).T
        if layer.bias:
            Y = Y + params["b_O"]
        self.Y = Y

    # ------------------------------------------------------------------ reverse mode
    def backward(self, dY, need_x: bool = True) -> dict:
        r"""Cotangents ``dY`` ``(N, k, T, d)`` (``k`` per sample) -> ``dQ, dK, dV, dC`` and (``need_x``) ``dX``, each ``(N, k, T, d)``."""
        L = self.layer
        dY = np.asarray(dY)
        dC = dY @ np.asarray(self.params["W_O"])
        dO = L.split_heads(dC)  # (N, k, h, T, dk)
        P = self.P[:, None]
        dV = np.swapaxes(P, -1, -2) @ dO
        dP = dO @ np.swapaxes(self.Vh[:, None], -1, -2)
        dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))
        dQ = (dS @ self.Kh[:, None]) * self.scale
        dK = (np.swapaxes(dS, -1, -2) @ self.Qh[:, None]) * self.scale
        out = {"dC": dC, "dQ": L.merge_heads(dQ), "dK": L.merge_heads(dK), "dV": L.merge_heads(dV)}
        if need_x:
            self.input_cotangent(out)
        return out

    def input_cotangent(self, back: dict) -> np.ndarray:
        r""":math:`d\mathbf X = d\mathbf Q\mathbf W_Q + d\mathbf K\mathbf W_K + d\mathbf V\mathbf W_V` (kept in ``back``)."""
        if "dX" not in back:
            back["dX"] = sum(back["d" + c] @ np.asarray(self.params["W_" + c]) for c in _QKV)
        return back["dX"]

    def param_cotangents(self, back: dict, dY) -> dict:
        r"""Per sample and cotangent ``(N, k, ...)``: :math:`d\mathbf W_c = d\mathbf c^\top\mathbf X`, :math:`d\mathbf b_c = d\mathbf c^\top\mathbf 1`,
        :math:`d\mathbf W_O = d\mathbf Y^\top\mathbf C`, :math:`d\mathbf b_O = d\mathbf Y^\top\mathbf 1`."""
        out = {}
        for c in _QKV:
            g = back["d" + c]
            out["W_" + c] = _obj_einsum("nkti,ntj->nkij", g, self.X)
            if self.layer.bias:
                out["b_" + c] = g.sum(axis=2) if c != "K" else np.zeros_like(g[:, :, 0, :])
        out["W_O"] = _obj_einsum("nkti,ntj->nkij", np.asarray(dY), self.C)
        if self.layer.bias:
            out["b_O"] = np.asarray(dY).sum(axis=2)
        return out

    # ------------------------------------------------------------------ forward mode
    def tangent(self, dX=None, dparams=None):
        r"""Tangents ``dX`` ``(N, k, T, d)`` and/or parameter tangents (``dparams[name]`` ``(k, *shape)``) ->
        :math:`\dot{\mathbf Y}` ``(N, k, T, d)``."""
        L = self.layer
        N = self.X.shape[0]
        k = (np.shape(dX)[1] if dX is not None else next(iter(dparams.values())).shape[0])
        dparams = dparams or {}
        proj = {}
        for c in _QKV:
            t = 0
            if dX is not None:
                t = np.asarray(dX) @ np.asarray(self.params["W_" + c]).T
            if "W_" + c in dparams:
                t = t + _obj_einsum("ntj,kij->nkti", self.X, np.asarray(dparams["W_" + c]))
            if "b_" + c in dparams and c != "K":  # b_K cancels in the softmax
                t = t + np.asarray(dparams["b_" + c])[None, :, None, :]
            if isinstance(t, int):
                t = np.zeros((N, k, L.T_len, L.d))
            proj[c] = L.split_heads(np.broadcast_to(t, (N, k, L.T_len, L.d)))
        P = self.P[:, None]
        dS = (proj["Q"] @ np.swapaxes(self.Kh[:, None], -1, -2)
              + self.Qh[:, None] @ np.swapaxes(proj["K"], -1, -2)) * self.scale
        dP = P * (dS - (P * dS).sum(axis=-1, keepdims=True))
        dO = dP @ self.Vh[:, None] + P @ proj["V"]
        dC = L.merge_heads(dO)
        dY = dC @ np.asarray(self.params["W_O"]).T
        if "W_O" in dparams:
            dY = dY + _obj_einsum("ntj,kij->nkti", self.C, np.asarray(dparams["W_O"]))
        if "b_O" in dparams:
            dY = dY + np.asarray(dparams["b_O"])[None, :, None, :]
        return dY


class _Shared:
    """The forward pass of one sample and its last backward pass, shared by the Jacobian operators of one call
    (the products of the W and b blocks with one left factor run the backward pass once)."""

    def __init__(self, fwd: _Forward):
        self.fwd = fwd
        self._last = None  # (M, result): keyed by the identity of M
        self._eye = None

    def eye(self) -> np.ndarray:
        if self._eye is None:
            n = self.fwd.layer.out_size
            self._eye = np.eye(n, dtype=np.int64).astype(object) if self.fwd.symbolic else np.eye(n)
        return self._eye

    def backward(self, M) -> dict:
        """The activation cotangents (``dY, dQ, dK, dV, dC``; ``dX`` on demand) of the rows of ``M`` (``(k, out_size)``)."""
        if self._last is not None and self._last[0] is M:
            return self._last[1]
        L = self.fwd.layer
        dY = np.asarray(M).reshape(1, -1, L.T_len, L.d)
        back = self.fwd.backward(dY, need_x=False)
        back["dY"] = dY
        self._last = (M, back)
        return back


class AttentionInputJacobian(RowOperator):
    r""":math:`\mathbf J_{\mathbf x}\mathbf y` of self-attention for one sample, ``(T d, T d)``, applied without forming it.

    ``left_matmat(M)`` is the backward pass on the rows of ``M``, ``matmat(V)`` the forward-mode pass
    on the columns of ``V``; ``to_dense`` is the backward pass on the identity.  :meth:`factors`
    gives the structured product :math:`(\mathbf I_T\otimes\mathbf W_O)[\mathbf J_{\mathbf Q}\mathbf C\;\mathbf J_{\mathbf K}\mathbf C\;\mathbf J_{\mathbf V}\mathbf C]
    [\mathbf I_T\otimes\mathbf W_Q;\dots]` (module docstring).
    """

    structure = "attention (softmax rows, Kronecker projections)"

    def __init__(self, shared: _Shared):
        self.shared = shared
        n = shared.fwd.layer.in_size
        self.shape = (n, n)
        self.symbolic = shared.fwd.symbolic
        self._dense_value = None

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        back = self.shared.backward(M)
        return self.shared.fwd.input_cotangent(back)[0].reshape(M.shape[0], -1)

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        L = self.shared.fwd.layer
        dY = self.shared.fwd.tangent(dX=X.T.reshape(1, -1, L.T_len, L.d))
        return dY[0].reshape(X.shape[1], -1).T

    def _dense(self):
        if self._dense_value is None:
            self._dense_value = self.left_matmat(self.shared.eye())
        return self._dense_value

    def factors(self) -> Product:
        """The structured product of the module docstring (dense blocks :math:`\\mathbf J_{\\mathbf Q}\\mathbf C`, ...)."""
        fwd = self.shared.fwd
        return fwd.layer._structured(fwd)


class AttentionParamJacobian(RowOperator):
    r""":math:`\mathbf J_{\operatorname{vec}\theta}\mathbf y` of one attention parameter (``W_Q``, ``b_Q``, ..., ``W_O``, ``b_O``), one sample.

    ``left_matmat(M)`` is the backward pass on the rows of ``M`` followed by :math:`d\mathbf W = d\mathbf c^\top\mathbf X`
    (shared by every parameter of the layer: one backward pass per left factor), ``matmat`` the forward-mode
    pass with a tangent of this parameter only.
    """

    structure = "attention parameter block"

    def __init__(self, shared: _Shared, name: str, order: str):
        self.shared = shared
        self.name = name
        self.order = order
        L = shared.fwd.layer
        self.pshape = L.param_shapes()[name]
        self.shape = (L.out_size, prod(self.pshape))
        self.symbolic = shared.fwd.symbolic

    def _unvec_cols(self, V):
        """Columns ``(size, k)`` -> ``(k, *pshape)``."""
        k = V.shape[1]
        if self.order == "F" and len(self.pshape) == 2:
            return np.swapaxes(V.T.reshape(k, self.pshape[1], self.pshape[0]), 1, 2)
        return V.T.reshape(k, *self.pshape)

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        return self._rows(M)

    def _rows(self, M, out=None):
        back = self.shared.backward(M)
        kind, c = self.name.split("_")
        G = back["dY" if c == "O" else "d" + c][0]  # (k, T, d)
        if kind == "W":
            Xin = self.shared.fwd.C[0] if c == "O" else self.shared.fwd.X[0]
            return weight_rows(G, Xin, self.order, out=out)
        rows = np.zeros_like(G[:, 0, :]) if c == "K" else G.sum(axis=1)  # b_K cancels in the softmax
        if out is not None:
            out[...] = rows
            return out
        return rows

    def _left_matmat_into(self, M, out):
        self._rows(np.asarray(M), out=out)

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        dY = self.shared.fwd.tangent(dparams={self.name: self._unvec_cols(X)})
        return dY[0].reshape(X.shape[1], -1).T

    def _dense(self):
        return self.left_matmat(self.shared.eye())


def factor_blocks(layer, fwd: "_Forward") -> dict:
    r"""The explicit factors of the attention Jacobian of one sample (see ``SelfAttention.attention_jacobians``)."""
    T, h, dk, d = layer.T_len, layer.heads, layer.d_k, layer.d
    P = fwd.P[0]                                # (h, T, T)
    Js = softmax_row_jacobians(P)               # (h, T, T, T): [j, t] = diag p - p p^T
    Qh, Kh, Vh = fwd.Qh[0], fwd.Kh[0], fwd.Vh[0]  # (h, T, dk)
    sc = fwd.scale
    # VJ[j, t] = V_j^T Js[j, t]: (h, T, dk, T)
    VJ = _obj_einsum("jsa,jtsr->jtar", Vh, Js)
    dtype = object if fwd.symbolic else float
    JQ = np.zeros((T, h, dk, T, h, dk), dtype=dtype)
    JK = np.zeros((T, h, dk, T, h, dk), dtype=dtype)
    JV = np.zeros((T, h, dk, T, h, dk), dtype=dtype)
    if fwd.symbolic:
        JQ[...] = 0
        JK[...] = 0
        JV[...] = 0
    blocksQ = _obj_einsum("jtar,jrb->jtab", VJ, Kh) * sc         # (h, T, dk, dk)
    blocksK = _obj_einsum("jtas,jtb->jtasb", VJ, Qh) * sc        # (h, T, dk, T(s), dk)
    eye = np.eye(dk, dtype=np.int64)
    for j in range(h):
        for t in range(T):
            JQ[t, j, :, t, j, :] = blocksQ[j, t]
            JK[t, j, :, :, j, :] = blocksK[j, t]
            JV[t, j, :, :, j, :] = P[j, t][None, :, None] * eye[:, None, :]
    n = T * d
    return {"P": P, "softmax": Js, "J_Q": JQ.reshape(n, n), "J_K": JK.reshape(n, n), "J_V": JV.reshape(n, n),
            "J_Q_heads": blocksQ, "Q": fwd.Q[0], "K": fwd.K[0], "V": fwd.V[0], "C": fwd.C[0]}


def structured_product(layer, fwd: "_Forward") -> Product:
    r""":math:`(\mathbf I_T\otimes\mathbf W_O)[\mathbf J_{\mathbf Q}\mathbf C\;\mathbf J_{\mathbf K}\mathbf C\;\mathbf J_{\mathbf V}\mathbf C][\mathbf I_T\otimes\mathbf W_Q;\dots]` as an explicit product."""
    F = factor_blocks(layer, fwd)
    T = layer.T_len
    p = fwd.params
    kr = lambda name: Kron(Identity(T), DenseOp(np.asarray(p[name])))  # noqa: E731
    return Product([kr("W_O"), HStack([DenseOp(F["J_Q"]), DenseOp(F["J_K"]), DenseOp(F["J_V"])]),
                    VStack([kr("W_Q"), kr("W_K"), kr("W_V")])])


def structured_param_products(layer, fwd: "_Forward", order: str = "C") -> dict:
    r"""Each :math:`\mathbf J_{\operatorname{vec}\theta}\mathbf y` as an explicit product (``SelfAttention.structured_param_jacobians``)."""
    params = fwd.params
    F = factor_blocks(layer, fwd)
    T, d = layer.T_len, layer.d
    WO = Kron(Identity(T), DenseOp(np.asarray(params["W_O"])))
    ones = Kron(DenseOp(np.ones((T, 1), dtype=np.int64)), Identity(d))
    out = {}
    for c in _QKV:
        out["W_" + c] = Product([WO, DenseOp(F["J_" + c]), TokenwiseWeight(fwd.X[0], d, order)])
        if layer.bias:
            out["b_" + c] = Product([WO, DenseOp(F["J_" + c]), ones])
    out["W_O"] = Product([TokenwiseWeight(fwd.C[0], d, order)])
    if layer.bias:
        out["b_O"] = Product([ones])
    return out


class _Memo(Operator):
    """An operator whose dense value and last left product are kept (the chain above a block's sub-layer,
    shared by the Jacobians of every parameter below it)."""

    structure = "product"

    def __init__(self, op: Operator):
        self.op = op
        self.shape = op.shape
        self.symbolic = op.symbolic
        self._dense_value = None
        self._last = None

    def matmat(self, X):
        return self.op.matmat(X)

    def rmatmat(self, X):
        return self.op.rmatmat(X)

    def left_matmat(self, M):
        if self._last is not None and self._last[0] is M:
            return self._last[1]
        out = self.op.left_matmat(M)
        self._last = (M, out)
        return out

    @property
    def T(self):
        return self.op.T

    def _dense(self):
        if self._dense_value is None:
            self._dense_value = self.op._dense()
        return self._dense_value

    def _sparse(self):
        return self.op._sparse()

    def _sympy(self):
        return self.op._sympy()


# ---------------------------------------------------------------------------------------------------- argument checks
def _check_heads(heads) -> int:
    if isinstance(heads, (bool, np.bool_)) or not isinstance(heads, (int, np.integer)) or heads < 1:
        raise SpecError(f"self_attention layer: heads must be a positive integer, received {heads!r}")
    return int(heads)


def _check_bool(v, what: str) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise SpecError(f"{what} must be a boolean (true/false), received {v!r}")
    return bool(v)


def _check_mask(mask) -> tuple | None:
    """A user mask: None, or a square list of lists of booleans (torch's ``attn_mask``: True = masked)."""
    if mask is None:
        return None
    if isinstance(mask, (str, bytes)) or not isinstance(mask, (list, tuple, np.ndarray)):
        raise SpecError(f"self_attention layer: attn_mask must be a T x T list of lists of booleans, received {mask!r}")
    rows = []
    for r in mask:
        if isinstance(r, (str, bytes)) or not isinstance(r, (list, tuple, np.ndarray)):
            raise SpecError(f"self_attention layer: attn_mask must be a T x T list of lists of booleans, received row {r!r}")
        vals = list(np.asarray(r, dtype=object).ravel())
        for v in vals:
            if not isinstance(v, (bool, np.bool_)):
                raise SpecError(f"self_attention layer: attn_mask entries must be booleans (true = masked), received {v!r}")
        rows.append(tuple(bool(v) for v in vals))
    return tuple(rows)


def _same_view(a, b) -> bool:
    """``a is b``, or two views of one read-only base array with the same memory, shape and strides (``A[0]`` taken twice
    from the engine's cached batch, which nothing writes to)."""
    if a is b:
        return True
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.base is None or a.base is not b.base:
        return False
    base = a.base
    return (not base.flags.writeable and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])
