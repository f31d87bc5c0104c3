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

from functools import partial
from math import prod

import numpy as np

from ..errors import SpecError
from ..backend.kernels import blas_limit
from ..backend.operators import Dense as DenseOp, HStack, Identity, Kron, Operator, Product, VStack
from .lazy_operators import RowOperator, has_object_entries as _is_object
from .linear import TokenwiseWeight, weight_rows
from .token_blocks import ChainMemo

__all__ = ["AttentionInputJacobian", "AttentionParamJacobian", "softmax_row_jacobians", "factor_blocks",
           "structured_product", "structured_param_products"]

_QKV = ("Q", "K", "V")


def _obj_einsum(spec: str, *ops):
    """``np.einsum`` (NumPy >= 1.25 supports object arrays; ``optimize`` only for floats)."""
    if _is_object(*ops):
        return np.einsum(spec, *ops)
    return np.einsum(spec, *ops, optimize=True)


def _mm(A, W):
    """``A @ W`` for a stack ``A`` ``(..., n)`` and a matrix ``W`` ``(n, m)``, as one matrix product over the stack."""
    A = np.asarray(A)
    W = np.asarray(W)
    return (A.reshape(-1, A.shape[-1]) @ W).reshape(*A.shape[:-1], W.shape[-1])


def _one_blas_thread(fn):
    """Run ``fn`` with BLAS on one thread (:func:`~jacobian_bp.backend.kernels.blas_limit`): attention's passes are many
    small products, where BLAS threads add only synchronization (and stall on a loaded machine); as the unrolled
    recurrent layers do."""
    from functools import wraps

    @wraps(fn)
    def run(*args, **kwargs):
        with blas_limit(1):
            return fn(*args, **kwargs)
    return run


def _assign(out, value) -> None:
    out[...] = value


def _outer_rows(out, G, H, t: int, r: int, shape: tuple, order: str) -> None:
    """Rows ``t r .. (t+1) r`` of ``out``: ``G[t, i, h, a] H[t, i, h, j]`` at entry ``(h d_k + a) n + j`` (``"C"``) or
    ``j d + h d_k + a`` (``"F"``)."""
    v = np.reshape(out[t * r:(t + 1) * r], shape, copy=False)
    g, hh = G[t], H[t]                                   # (r|1, h, dk), (r|1, h, n)
    if order == "C":
        np.multiply(g[:, :, :, None], hh[:, :, None, :], out=v)
    else:
        np.multiply(g[:, :, :, None], hh[:, :, None, :], out=v.transpose(0, 2, 3, 1))


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

    @_one_blas_thread
    def __init__(self, layer, A, params):
        self.layer = layer  # the SelfAttention layer (its shapes, heads, mask and softmax)
        N = np.shape(A)[0]
        T, d = layer.T_len, layer.d
        X = np.asarray(A).reshape(N, T, d)
        self.symbolic = _is_object(X, *(np.asarray(v) for v in params.values()))
        self.params = params
        self.X = X
        proj = {}
        X2 = X.reshape(N * T, d)  # one matrix product over every token of the batch
        for c in _QKV:
            M = (X2 @ np.asarray(params["W_" + c]).T).reshape(N, T, d)
            proj[c] = M
        # b_K adds q_t . b_K to every logit of row t: the softmax cancels it, so the logits use X W_K^T only
        # (equal in exact arithmetic; then J_{b_K} y = 0 exactly, not up to rounding)
        K_logits = proj["K"]
        if layer.bias:
            proj = {c: M + params["b_" + c] for c, M in proj.items()}
        self.Q, self.K, self.V = proj["Q"], proj["K"], proj["V"]
        self.Qh, self.Kh, self.Vh = (layer.split_heads(M) for M in (self.Q, K_logits, self.V))
        self.scale = layer.scale(self.symbolic)
        S = (self.Qh @ np.swapaxes(self.Kh, -1, -2)) * self.scale
        self.P = layer.softmax(S)
        self.C = layer.merge_heads(self.P @ self.Vh)
        Y = (self.C.reshape(N * T, d) @ np.asarray(params["W_O"]).T).reshape(N, T, d)
        if layer.bias:
            Y = Y + params["b_O"]
        self.Y = Y

    # ------------------------------------------------------------------ reverse mode
    @_one_blas_thread
    def backward(self, dY, need_x: bool = True) -> dict:
        r"""Cotangents ``dY`` ``(N, k, T, d)`` (``k`` per sample) -> ``dQ, dK, dV, dC`` and (``need_x``) ``dX``, each ``(N, k, T, d)``."""
        L = self.layer
        dY = np.asarray(dY)
        dC = _mm(dY, self.params["W_O"])
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

    @_one_blas_thread
    def input_cotangent(self, back: dict) -> np.ndarray:
        r""":math:`d\mathbf X = d\mathbf Q\mathbf W_Q + d\mathbf K\mathbf W_K + d\mathbf V\mathbf W_V` (kept in ``back``)."""
        if "dX" not in back:
            back["dX"] = sum(_mm(back["d" + c], self.params["W_" + c]) for c in _QKV)
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

    @_one_blas_thread
    def param_gradients(self, back: dict, dY) -> dict:
        r""":meth:`param_cotangents` summed over the samples and cotangents, each ``(*shape,)`` flattened row-major: for one
        cotangent per sample one matrix product over every token of the batch, :math:`d\mathbf W_c = \sum_{n,t} d\mathbf c_{nt}\mathbf x_{nt}^\top`."""
        dY = np.asarray(dY)
        N, k = dY.shape[:2]
        if k != 1 or _is_object(dY, self.X):
            return {name: v.sum(axis=(0, 1)).ravel() for name, v in self.param_cotangents(back, dY).items()}
        T, d = self.layer.T_len, self.layer.d
        X2, C2 = self.X.reshape(N * T, d), self.C.reshape(N * T, d)
        out = {}
        for c in _QKV:
            g = back["d" + c].reshape(N * T, d)
            out["W_" + c] = (g.T @ X2).ravel()
            if self.layer.bias:
                out["b_" + c] = g.sum(axis=0) if c != "K" else np.zeros(d)
        g = dY.reshape(N * T, d)
        out["W_O"] = (g.T @ C2).ravel()
        if self.layer.bias:
            out["b_O"] = g.sum(axis=0)
        return {name: out[name] for name in self.layer.param_names}

    # ------------------------------------------------------------------ forward mode
    @_one_blas_thread
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
                t = _mm(dX, np.asarray(self.params["W_" + c]).T)
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
        dY = _mm(dC, np.asarray(self.params["W_O"]).T)
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

    def token_backward(self, B) -> "_TokenBackward":
        r"""The backward pass on the rows of :math:`\operatorname{blkdiag}(\mathbf B_1,\dots,\mathbf B_T)` (``B`` ``(T, r, d)``), kept
        for the identity of ``B`` (:class:`_TokenBackward`)."""
        last = getattr(self, "_last_tokens", None)
        if last is not None and last[0] is B:
            return last[1]
        tb = _TokenBackward(self.fwd, B)
        self._last_tokens = (B, tb)
        return tb


class _TokenBackward:
    r"""The backward pass of one sample's attention on the cotangents of a token-block-diagonal left factor.

    Row ``(t, i)`` of :math:`\operatorname{blkdiag}(\mathbf B_1,\dots,\mathbf B_T)` (``B`` ``(T, r, d)``) is the cotangent
    :math:`d\mathbf Y = \mathbf e_t\mathbf B_t[i,:]`: one token's row.  Then (per head ``h``; :math:`\mathbf p = \mathbf P_h[t,:]`)
    :math:`d\mathbf O = \mathbf e_t\,d\mathbf o^\top` with :math:`d\mathbf o = (\mathbf B_t[i,:]\mathbf W_O)_h`,
    :math:`d\mathbf S = \mathbf e_t\,d\mathbf s^\top` with :math:`d\mathbf s = \mathbf p\odot(\mathbf V_h d\mathbf o - \mathbf p^\top\mathbf V_h d\mathbf o)`,
    :math:`d\mathbf Q = \mathbf e_t(d\mathbf s^\top\mathbf K_h)/\sqrt{d_k}`, :math:`d\mathbf K = d\mathbf s\,\mathbf q_t^\top/\sqrt{d_k}`,
    :math:`d\mathbf V = \mathbf p\,d\mathbf o^\top`: every parameter row is an outer product
    (:math:`d\mathbf W_Q = d\mathbf q\,\mathbf x_t^\top`, :math:`d\mathbf W_K = \mathbf q_t(\mathbf X^\top d\mathbf s)^\top/\sqrt{d_k}`,
    :math:`d\mathbf W_V = d\mathbf o\,(\mathbf X^\top\mathbf p)^\top`, :math:`d\mathbf W_O = \mathbf B_t[i,:]^\top\mathbf c_t^\top`), written
    straight into the materialized Jacobian; the ``(T, r, T, d)`` cotangents :math:`d\mathbf K, d\mathbf V` are never formed.
    Equal to :meth:`_Forward.backward` on the dense rows (the same sums, without the zero terms).
    """

    @_one_blas_thread
    def __init__(self, fwd: _Forward, B):
        L = fwd.layer
        T, d, h, dk = L.T_len, L.d, L.heads, L.d_k
        B = np.asarray(B, dtype=float)
        r = B.shape[1]
        self.fwd, self.B, self.r = fwd, B, r
        P = fwd.P[0]                                    # (h, T, T)
        self.Pt = P.transpose(1, 0, 2)                  # (T, h, T): [t, h, s]
        dC = _mm(B, fwd.params["W_O"])                  # (T, r, d)
        self.dO = dC.reshape(T, r, h, dk)               # [t, i, h, a]
        Vh, Kh = fwd.Vh[0], fwd.Kh[0]                   # (h, T, dk)
        dP = np.einsum("tiha,hsa->tihs", self.dO, Vh, optimize=True)
        Pb = self.Pt[:, None]                           # (T, 1, h, T)
        self.dS = Pb * (dP - (dP * Pb).sum(axis=-1, keepdims=True))  # (T, r, h, T)
        self.dQ = (np.einsum("tihs,hsa->tiha", self.dS, Kh, optimize=True) * fwd.scale).reshape(T, r, d)
        self.Qt = fwd.Qh[0].transpose(1, 0, 2)          # (T, h, dk)
        self._dX = None

    # ------------------------------------------------------------------ the rows of each parameter block
    def weight_factors(self, c: str):
        r"""``(G, H)`` with the row ``(t, i)`` of :math:`\mathbf J_{\operatorname{vec}\mathbf W_c}` equal to
        :math:`\operatorname{vec}(\mathbf G[t,i]\,\mathbf H[t,i]^\top)` per head block: ``G`` ``(T, r|1, h, d_k)``, ``H`` ``(T, r|1, h, n)``."""
        fwd = self.fwd
        L = fwd.layer
        T, d, h, dk = L.T_len, L.d, L.heads, L.d_k
        X = fwd.X[0]
        if c == "Q":
            return self.dQ.reshape(T, self.r, h, dk), np.broadcast_to(X[:, None, None, :], (T, 1, h, d))
        if c == "K":
            U = (self.dS.reshape(-1, T) @ X).reshape(T, self.r, h, d) * fwd.scale   # (T, r, h, n), contiguous
            return np.broadcast_to(self.Qt[:, None], (T, 1, h, dk)), U
        if c == "V":
            PX = (self.Pt.reshape(-1, T) @ X).reshape(T, h, d)                   # (T, h, n)
            return self.dO, PX[:, None]
        # O: dY = e_t B_t[i]; the input of W_O is C
        return self.B.reshape(T, self.r, h, dk), np.broadcast_to(fwd.C[0][:, None, None, :], (T, 1, h, d))

    def bias_rows(self, c: str) -> np.ndarray:
        r"""Rows ``(T r, d)`` of :math:`\mathbf J_{\mathbf b_c}`: :math:`d\mathbf q`, 0, :math:`d\mathbf o\sum_s p_s`, :math:`\mathbf B_t[i,:]`."""
        L = self.fwd.layer
        T, r, d = L.T_len, self.r, L.d
        if c == "Q":
            return self.dQ.reshape(T * r, d)
        if c == "K":
            return np.zeros((T * r, d))
        if c == "V":
            return (self.dO * self.Pt.sum(axis=-1)[:, None, :, None]).reshape(T * r, d)
        return self.B.reshape(T * r, d)

    @_one_blas_thread
    def input_rows(self) -> np.ndarray:
        r"""The ``(T r, T d)`` rows :math:`d\mathbf X = d\mathbf Q\mathbf W_Q + d\mathbf K\mathbf W_K + d\mathbf V\mathbf W_V` (kept):
        :math:`d\mathbf X[s] = \delta_{ts}d\mathbf q\mathbf W_Q + \sum_h ds_s(\mathbf q_{t,h}^\top\mathbf W_{K,h})/\sqrt{d_k} + \sum_h p_s\,d\mathbf o_h^\top\mathbf W_{V,h}`."""
        if self._dX is None:
            fwd = self.fwd
            L = fwd.layer
            T, d, h, dk, r = L.T_len, L.d, L.heads, L.d_k, self.r
            p = fwd.params
            # q_{t,h}^T W_{K,h} / sqrt(d_k): (T, h, d); do_h^T W_{V,h}: (h, T r, d) -> [t, i, h, j]
            QWK = np.matmul(self.Qt.transpose(1, 0, 2), np.asarray(p["W_K"]).reshape(h, dk, d)).transpose(1, 0, 2) * fwd.scale
            dOWV = np.matmul(self.dO.transpose(2, 0, 1, 3).reshape(h, T * r, dk), np.asarray(p["W_V"]).reshape(h, dk, d))
            dOWV = dOWV.reshape(h, T, r, d).transpose(1, 2, 0, 3)
            # sum_h ds_{t,i,h,s} QWK[t, h]: one (r T, h) x (h, d) product per query token t, already in (t, i, s, j) order
            dX = np.matmul(self.dS.transpose(0, 1, 3, 2).reshape(T, r * T, h), QWK).reshape(T, r, T, d)
            dX += np.matmul(self.Pt.transpose(0, 2, 1)[:, None], dOWV)   # sum_h p_{t,h,s} dOWV[t, i, h]
            t = np.arange(T)
            dX[t, :, t, :] += _mm(self.dQ, p["W_Q"])
            self._dX = dX.reshape(T * r, T * d)
        return self._dX


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

    def left_token_rows(self, B):
        r""":math:`\operatorname{blkdiag}(\mathbf B_1,\dots,\mathbf B_T)\,\mathbf J_{\mathbf x}\mathbf y` (``B`` ``(T, r, d)``), dense ``(T r, T d)``:
        the backward pass on one token's row per cotangent (:class:`_TokenBackward`); None for SymPy entries."""
        L = self.shared.fwd.layer
        B = np.asarray(B)
        if self.symbolic or B.dtype == object or B.ndim != 3 or B.shape[0] != L.T_len or B.shape[2] != L.d:
            return None
        return self.shared.token_backward(B).input_rows()

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

    def _left_token_blocks_tasks(self, B, out):
        r"""Tasks writing :math:`\operatorname{blkdiag}(\mathbf B_1,\dots,\mathbf B_T)\,\mathbf J_{\theta}` into ``out`` (one per
        token's rows): the outer products of :class:`_TokenBackward` (its backward pass runs here, once per ``B``)."""
        L = self.shared.fwd.layer
        B = np.asarray(B)
        if self.symbolic or B.dtype == object or B.shape[0] != L.T_len or B.shape[2] != L.d:
            return None
        tb = self.shared.token_backward(B)
        kind, c = self.name.split("_")
        T, r = L.T_len, B.shape[1]
        if kind == "b":
            return [(out.size, partial(_assign, out, tb.bias_rows(c)), False)]
        h, dk, n = L.heads, L.d_k, L.d
        G, H = tb.weight_factors(c)
        shape = (r, h, dk, n) if self.order == "C" else (r, n, h, dk)
        try:
            np.reshape(out[:r], shape, copy=False)
        except ValueError:
            return None
        return [(r * out.shape[1], partial(_outer_rows, out, G, H, t, r, shape, self.order), False) for t in range(T)]

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


class _Memo(ChainMemo):
    """A kept chain (:class:`~jacobian_bp.layers.token_blocks.ChainMemo`: its dense value, its token blocks) that also
    keeps its last left product (the chain above a block's sub-layer, shared by the Jacobians of every parameter
    below it)."""

    def __init__(self, op: Operator, T: int | None = None):
        super().__init__(op, T)
        self._last = None

    def left_matmat(self, M):
        if self._last is not None and self._last[0] is M:
            return self._last[1]
        out = self.op.left_matmat(M)
        self._last = (M, out)
        return out


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
