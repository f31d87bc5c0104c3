r"""Convolution and pooling on single-channel 2-D arrays, by their loop definitions, for
:mod:`.exact_eval` (exact dual numbers or float64 alike).

``conv2d(X, K)`` is the network layer (stride ``s``, padding ``p``, dilation ``d`` and ``mode``
from the claim's knobs, cross-correlation unless ``mode="convolution"``); ``corr`` (``\\star``) is
the valid cross-correlation, ``convolve`` (``\\ast``) the valid convolution, ``full`` the full
cross-correlation; ``rot180``, ``pad_p``, ``crop_p``, ``dilate_s`` (``s - 1`` zeros between
entries), ``upsample_k`` (``k × k`` blocks); ``avgpool`` and ``maxpool`` with window and stride ``k``
(ties go to the first maximal entry).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .formula_tree import EvalError, Node

__all__ = ["ConvOps"]


class ConvOps:
    """Mixin of the evaluator: convolution and pooling operations (needs ``full``, ``ev``, ``param``,
    ``op_kron``, ``knobs`` and ``exact`` of the evaluator)."""

    # -- convolution and pooling on single-channel 2-D arrays (explicit loops: the definition)
    def _corr(self, A, B, stride=1, dilation=1):
        (H, W), (h, w) = A.shape, B.shape
        eh, ew = dilation * (h - 1) + 1, dilation * (w - 1) + 1
        if H < eh or W < ew:
            raise EvalError(f"a {h}×{w} kernel (dilation {dilation}) does not fit a {H}×{W} input")
        Ho, Wo = (H - eh) // stride + 1, (W - ew) // stride + 1
        out = self.full((Ho, Wo), 0)
        for i in range(Ho):
            for j in range(Wo):
                acc = out[i, j]
                for u in range(h):
                    for v in range(w):
                        acc = acc + A[i * stride + u * dilation, j * stride + v * dilation] * B[u, v]
                out[i, j] = acc
        return out

    def _pad(self, A, p):
        if p < 0:
            raise EvalError(f"negative padding {p}")
        out = self.full((A.shape[0] + 2 * p, A.shape[1] + 2 * p), 0)
        out[p:p + A.shape[0], p:p + A.shape[1]] = A
        return out

    def op_conv2d(self, n, want):
        X, K = self.ev(n.args[0]), self.ev(n.args[1])
        s, p, d = (int(self.knobs.get(k, dflt)) for k, dflt in (("s", 1), ("p", 0), ("d", 1)))
        if self.knobs.get("mode", "correlation") == "convolution":
            K = K[::-1, ::-1]
        return self._corr(self._pad(X, p), K, s, d)

    def op_corr(self, n, want):
        return self._corr(self.ev(n.args[0]), self.ev(n.args[1]))

    def op_convolve(self, n, want):
        return self._corr(self.ev(n.args[0]), self.ev(n.args[1])[::-1, ::-1])

    def op_full(self, n, want):
        A, B = self.ev(n.args[0]), self.ev(n.args[1])
        P = self.full((A.shape[0] + 2 * (B.shape[0] - 1), A.shape[1] + 2 * (B.shape[1] - 1)), 0)
        P[B.shape[0] - 1:B.shape[0] - 1 + A.shape[0], B.shape[1] - 1:B.shape[1] - 1 + A.shape[1]] = A
        return self._corr(P, B)

    def op_rot180(self, n, want):
        return self.ev(n.args[0])[::-1, ::-1]

    def op_pad(self, n, want):
        return self._pad(self.ev(n.args[0]), self.param(n, "p"))

    def op_crop(self, n, want):
        A, p = self.ev(n.args[0]), self.param(n, "p")
        if 2 * p >= min(A.shape):
            raise EvalError(f"cannot crop {p} from each side of a {A.shape[0]}×{A.shape[1]} array")
        return A[p:A.shape[0] - p, p:A.shape[1] - p] if p else A

    def op_dilate(self, n, want):
        A, s = self.ev(n.args[0]), self.param(n, "p")
        out = self.full(((A.shape[0] - 1) * s + 1, (A.shape[1] - 1) * s + 1), 0)
        out[::s, ::s] = A
        return out

    def op_upsample(self, n, want):
        A, k = self.ev(n.args[0]), self.param(n, "p")
        return self.op_kron(Node("kron", (Node("_val", (), (("v", A),)), Node("_val", (), (("v", self.full((k, k), 1)),)))), None)

    def _pool(self, A, k, how):
        H, W = A.shape
        if H % k or W % k:
            raise EvalError(f"a {k}×{k} pooling window does not tile a {H}×{W} input")
        out = self.full((H // k, W // k), 0)
        for i in range(H // k):
            for j in range(W // k):
                block = list(A[i * k:(i + 1) * k, j * k:(j + 1) * k].flat)
                if how == "avg":
                    acc = block[0]
                    for v in block[1:]:
                        acc = acc + v
                    out[i, j] = acc * (Fraction(1, k * k) if self.exact else 1.0 / (k * k))
                else:
                    key = (lambda z: z.a) if self.exact else (lambda z: np.real(z))
                    out[i, j] = max(block, key=key)  # first maximal entry: ties go to the first
        return out

    def op_avgpool(self, n, want):
        return self._pool(self.ev(n.args[0]), int(self.knobs.get("k", 2)), "avg")

    def op_maxpool(self, n, want):
        return self._pool(self.ev(n.args[0]), int(self.knobs.get("k", 2)), "max")

    def op_maxmask(self, n, want):
        """1 at the (first) maximal entry of every ``k × k`` window, 0 elsewhere (where max pooling routes
        the gradient, CS231n)."""
        A, k = self.ev(n.args[0]), int(self.knobs.get("k", 2))
        H, W = A.shape
        if H % k or W % k:
            raise EvalError(f"a {k}×{k} pooling window does not tile a {H}×{W} input")
        out = self.full((H, W), 0)
        key = (lambda z: z.a) if self.exact else (lambda z: np.real(z))
        for i in range(H // k):
            for j in range(W // k):
                cells = [(i * k + u, j * k + v) for u in range(k) for v in range(k)]
                best = max(cells, key=lambda c: key(A[c]))
                out[best] = self.full((1, 1), 1)[0, 0]
        return out
