r"""Convolution and pooling by their loop definitions, for :mod:`.exact_eval` (exact dual numbers or float64
alike): on single-channel 2-D arrays, and -- ``conv`` and the pooling operations -- on multi-channel arrays
(an input ``(C_in, H, W)``, a kernel ``(C_out, C_in, h, w)``, pooling channel by channel).  On channels the
notation of the single-channel formulas keeps its meaning: ``X ⋆ G`` of ``(C_in, H, W)`` and ``(C_out, H', W')``
arrays is the kernel gradient ``(C_out, C_in, h, w)`` (``[o, c] = X_c ⋆ G_o``), ``full(G, R)`` of a ``(C_out, H', W')``
gradient and a ``(C_out, C_in, h, w)`` kernel is the input gradient ``(C_in, H, W)`` (``[c] = Σ_o full(G_o, R_{o,c})``),
and ``rot180``, ``pad``, ``crop``, ``dilate``, ``upsample`` act on the last two axes.

``conv2d(X, K)`` is the network layer (stride ``s``, padding ``p``, dilation ``d`` and ``mode``
from the claim's knobs, cross-correlation unless ``mode="convolution"``); ``corr`` (``\\star``) is
the valid cross-correlation, ``convolve`` (``\\ast``) the valid convolution, ``full`` the full
cross-correlation; ``rot180``, ``pad_p``, ``crop_p``, ``dilate_s`` (``s - 1`` zeros between
entries), ``upsample_k`` (``k × k`` blocks); ``avgpool`` and ``maxpool`` with window ``k``, stride ``s`` (default ``k``) and
padding ``p`` (default 0; zeros for the average, never the maximum) -- ties go to the first maximal entry, as in
:class:`~jacobian_bp.layers.pooling.MaxPool2d` --; ``maxmask`` (1 where max pooling routes the gradient) and
``maxunpool(G, X)`` (the backward pass of max pooling: ``G`` added at every window's maximum).
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
        if X.ndim == 2 and K.ndim == 2:
            if self.knobs.get("mode", "correlation") == "convolution":
                K = K[::-1, ::-1]
            return self._corr(self._pad(X, p), K, s, d)
        return self._conv_channels(X, K, s, p, d)

    def _conv_channels(self, X, K, s, p, d):
        r"""Multi-channel convolution (PyTorch's ``conv2d``, one group): ``X`` ``(C_in, H, W)`` (a 2-D ``X`` is one
        channel), ``K`` ``(C_out, C_in, h, w)`` (a 2-D ``K`` is one filter of one channel);
        :math:`Y_o = \sum_c \operatorname{pad}_p(X_c) \star_{s,d} K_{o,c}`, ``(C_out, H', W')`` -- 2-D when both
        operands were."""
        X3 = X[None] if X.ndim == 2 else X
        K4 = K[None, None] if K.ndim == 2 else (K[None] if K.ndim == 3 else K)
        if X3.ndim != 3 or K4.ndim != 4:
            raise EvalError(f"conv: expected an input (C_in, H, W) and a kernel (C_out, C_in, h, w), received shapes "
                            f"{X.shape} and {K.shape}")
        if K4.shape[1] != X3.shape[0]:
            raise EvalError(f"conv: the kernel has {K4.shape[1]} input channel(s), the input {X3.shape[0]}")
        if self.knobs.get("mode", "correlation") == "convolution":
            K4 = K4[:, :, ::-1, ::-1]
        chans = []
        for o in range(K4.shape[0]):
            acc = None
            for c in range(X3.shape[0]):
                t = self._corr(self._pad(X3[c], p), K4[o, c], s, d)
                acc = t if acc is None else acc + t
            chans.append(acc)
        return np.stack(chans)

    def op_corr(self, n, want):
        A, B = self.ev(n.args[0]), self.ev(n.args[1])
        if A.ndim == 3 and B.ndim == 3:
            # channels (CS231n's dW = X ⋆ dY): X (C_in, H, W) ⋆ G (C_out, H', W') -> (C_out, C_in, h, w), [o, c] = X_c ⋆ G_o
            return np.stack([np.stack([self._corr(A[c], B[o]) for c in range(A.shape[0])]) for o in range(B.shape[0])])
        return self._corr(self._plane(A, "⋆"), self._plane(B, "⋆"))

    def op_convolve(self, n, want):
        return self._corr(self._plane(self.ev(n.args[0]), "∗"), self._plane(self.ev(n.args[1]), "∗")[::-1, ::-1])

    @staticmethod
    def _plane(A, what: str):
        if A.ndim != 2:
            raise EvalError(f"{what}: expected 2-D arrays (or, for ⋆, two (C, H, W) arrays), received shape {A.shape}")
        return A

    def _full2(self, A, B):
        P = self.full((A.shape[0] + 2 * (B.shape[0] - 1), A.shape[1] + 2 * (B.shape[1] - 1)), 0)
        P[B.shape[0] - 1:B.shape[0] - 1 + A.shape[0], B.shape[1] - 1:B.shape[1] - 1 + A.shape[1]] = A
        return self._corr(P, B)

    def op_full(self, n, want):
        A, B = self.ev(n.args[0]), self.ev(n.args[1])
        if A.ndim == 3 and B.ndim == 4:
            # channels (the input gradient, Dumoulin-Visin §4): G (C_out, H', W'), R (C_out, C_in, h, w)
            # -> (C_in, H, W), [c] = Σ_o full(G_o, R_{o,c})
            if B.shape[0] != A.shape[0]:
                raise EvalError(f"full: the kernel has {B.shape[0]} output channel(s), the gradient {A.shape[0]}")
            out = []
            for c in range(B.shape[1]):
                acc = None
                for o in range(A.shape[0]):
                    t = self._full2(A[o], B[o, c])
                    acc = t if acc is None else acc + t
                out.append(acc)
            return np.stack(out)
        return self._full2(self._plane(A, "full"), self._plane(B, "full"))

    def op_rot180(self, n, want):
        return self.ev(n.args[0])[..., ::-1, ::-1]  # the last two axes: every kernel of every channel pair

    def _planes(self, A, fn):
        """``fn`` on the last two axes of ``A`` (2-D, ``(C, H, W)`` or ``(C_out, C_in, h, w)``)."""
        if A.ndim == 2:
            return fn(A)
        return np.stack([self._planes(A[i], fn) for i in range(A.shape[0])])

    def op_pad(self, n, want):
        p = self.param(n, "p")
        return self._planes(self.ev(n.args[0]), lambda A: self._pad(A, p))

    def op_crop(self, n, want):
        A, p = self.ev(n.args[0]), self.param(n, "p")
        if 2 * p >= min(A.shape[-2:]):
            raise EvalError(f"cannot crop {p} from each side of a {A.shape[-2]}×{A.shape[-1]} array")
        return A[..., p:A.shape[-2] - p, p:A.shape[-1] - p] if p else A

    def op_dilate(self, n, want):
        s = self.param(n, "p")

        def dil(A):
            out = self.full(((A.shape[0] - 1) * s + 1, (A.shape[1] - 1) * s + 1), 0)
            out[::s, ::s] = A
            return out

        return self._planes(self.ev(n.args[0]), dil)

    def op_upsample(self, n, want):
        A, k = self.ev(n.args[0]), self.param(n, "p")
        return self._planes(A, lambda P: self.op_kron(Node("kron", (Node("_val", (), (("v", P),)),
                                                                  Node("_val", (), (("v", self.full((k, k), 1)),)))), None))

    def _pool_windows(self, A) -> tuple[int, int, list]:
        r"""The pooling windows of a 2-D array under the knobs: window ``k``, stride ``s`` (default ``k``), padding ``p``
        (default 0).  Returns ``(Ho, Wo, windows)`` with ``windows[i][j]`` the *real* cells of window ``(i, j)`` in
        row-major window order (padding cells are left out: zeros for the average, never the maximum).

        Without a stride or padding knob the windows must tile the input (``H`` and ``W`` multiples of ``k``), as
        before; with one, the output size is :math:`\lfloor (H + 2p - k)/s\rfloor + 1` (PyTorch's floor rule)."""
        k = int(self.knobs.get("k", 2))
        H, W = A.shape
        legacy = "s" not in self.knobs and "p" not in self.knobs
        s = int(self.knobs.get("s", k))
        p = int(self.knobs.get("p", 0))
        if legacy and (H % k or W % k):
            raise EvalError(f"a {k}×{k} pooling window does not tile a {H}×{W} input")
        if 2 * p > k:
            raise EvalError(f"pooling padding {p} is more than half the {k}×{k} window (PyTorch refuses it)")
        Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
        if Ho < 1 or Wo < 1:
            raise EvalError(f"a {k}×{k} pooling window (padding {p}) does not fit a {H}×{W} input")
        wins = [[[(i * s + u - p, j * s + v - p) for u in range(k) for v in range(k)
                  if 0 <= i * s + u - p < H and 0 <= j * s + v - p < W] for j in range(Wo)] for i in range(Ho)]
        return Ho, Wo, wins

    def _argmax(self, A, cells):
        key = (lambda z: z.a) if self.exact else (lambda z: np.real(z))
        return max(cells, key=lambda c: key(A[c]))  # max keeps the first maximal cell: ties go to the first

    def _pool(self, A, k, how):
        Ho, Wo, wins = self._pool_windows(A)
        k = int(self.knobs.get("k", 2))
        out = self.full((Ho, Wo), 0)
        for i in range(Ho):
            for j in range(Wo):
                cells = wins[i][j]
                if how == "avg":  # zero padding; the divisor is always k² (PyTorch's count_include_pad=True)
                    acc = out[i, j]
                    for c in cells:
                        acc = acc + A[c]
                    out[i, j] = acc * (Fraction(1, k * k) if self.exact else 1.0 / (k * k))
                else:
                    out[i, j] = A[self._argmax(A, cells)]
        return out

    def _per_channel(self, fn, *arrays):
        """``fn`` on 2-D arrays, or channel by channel on ``(C, H, W)`` arrays (stacked again)."""
        if all(a.ndim == 2 for a in arrays):
            return fn(*arrays)
        if any(a.ndim != 3 for a in arrays) or len({a.shape[0] for a in arrays}) != 1:
            raise EvalError(f"pooling: expected 2-D arrays or (C, H, W) arrays with one channel count, received shapes "
                            f"{', '.join(str(a.shape) for a in arrays)}")
        return np.stack([fn(*(a[c] for a in arrays)) for c in range(arrays[0].shape[0])])

    def op_avgpool(self, n, want):
        return self._per_channel(lambda A: self._pool(A, int(self.knobs.get("k", 2)), "avg"), self.ev(n.args[0]))

    def op_maxpool(self, n, want):
        return self._per_channel(lambda A: self._pool(A, int(self.knobs.get("k", 2)), "max"), self.ev(n.args[0]))

    def op_maxmask(self, n, want):
        """1 at the (first) maximal entry of every pooling window, 0 elsewhere (where max pooling routes
        the gradient, CS231n)."""
        return self._per_channel(self._maxmask, self.ev(n.args[0]))

    def _maxmask(self, A):
        Ho, Wo, wins = self._pool_windows(A)
        out = self.full(A.shape, 0)
        for i in range(Ho):
            for j in range(Wo):
                out[self._argmax(A, wins[i][j])] = self.full((1, 1), 1)[0, 0]
        return out

    def op_maxunpool(self, n, want):
        r""":math:`\operatorname{maxunpool}(G, X)`: every entry of ``G`` added at the (first) maximal entry of its
        pooling window of ``X`` -- the backward pass of max pooling (PyTorch's ``MaxUnpool2d`` with the indices of
        ``max_pool2d``), overlapping windows (stride < window) adding up."""
        return self._per_channel(self._maxunpool, self.ev(n.args[0]), self.ev(n.args[1]))

    def _maxunpool(self, G, A):
        Ho, Wo, wins = self._pool_windows(A)
        if G.shape != (Ho, Wo):
            raise EvalError(f"maxunpool(G, X): G must have the pooled shape {Ho}×{Wo} of X ({A.shape[0]}×{A.shape[1]}), "
                            f"received {G.shape[0]}×{G.shape[1]}")
        out = self.full(A.shape, 0)
        for i in range(Ho):
            for j in range(Wo):
                c = self._argmax(A, wins[i][j])
                out[c] = out[c] + G[i, j]
        return out
