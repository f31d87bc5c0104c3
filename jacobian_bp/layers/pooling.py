r"""2-D max and average pooling with explicit (sparse) Jacobians (Ganev Exercise 2).

Each channel is pooled separately over windows of size :math:`k_h\times k_w` moved with
stride :math:`s` (default: the kernel size) over the input padded by :math:`p` on each side
(:math:`p \le k/2`, as in PyTorch, so that every window holds at least one real entry).
The output size follows the floor rule :math:`H_\text{out} = \lfloor (H+2p_h-k_h)/s_h\rfloor+1`.

For one window :math:`\mathbf w = (w_1,\dots,w_n)`, :math:`n = k_h k_w`, Ganev Exercise 2 gives

* max pooling :math:`\max_i w_i`: the Jacobian row is :math:`\mathbf e_{i^*}^\top` with a single
  one at the index :math:`i^*` of the maximum (not differentiable where the maximum is tied);
* average pooling :math:`\frac1n\sum_i w_i`: the Jacobian row is :math:`\frac1n\mathbf 1^\top`.

Stacking the rows of all windows and channels gives a sparse ``(out_size, in_size)``
matrix (rows and columns flattened row-major, i.e. Damadi's :math:`\operatorname{Vec}(\mathbf X^\top)`
per channel): a 0/1 *selection* matrix with one one per row for max pooling, a
depthwise Toeplitz matrix with entries :math:`1/(k_hk_w)` for average pooling.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import ShapeError, SpecError, UnsupportedInputError
from ..backend.operators import Operator, Sparse
from ..backend import toeplitz as tp
from .base import Layer
from .registry import register

__all__ = ["MaxPool2d", "AvgPool2d"]


class _Pool2d(Layer):
    """Shared geometry, validation and batching of the pooling layers."""

    kind = "pool2d"
    pad_value: float = 0.0

    def __init__(self, kernel_size, stride=None, padding=0, size_rule: str = "floor"):
        super().__init__()
        who = f"{self.kind} layer"
        if not isinstance(size_rule, str) or size_rule not in ("floor", "exact"):
            raise SpecError(f"{who}: size_rule must be 'floor' or 'exact', received {size_rule!r}")
        self.size_rule = size_rule
        self.kernel_size = tp.as_pair(kernel_size, "kernel_size", who, 1)
        self.stride = self.kernel_size if stride is None else tp.as_pair(stride, "stride", who, 1)
        self.padding = tp.as_pair(padding, "padding", who, 0)
        for a, axis in ((0, "height"), (1, "width")):
            if 2 * self.padding[a] > self.kernel_size[a]:
                raise SpecError(
                    f"{who}: padding must be at most half the kernel size along the {axis}: expected "
                    f"padding <= {self.kernel_size[a] // 2} for kernel {self.kernel_size[a]}, received {self.padding[a]}"
                )
        self.geometry: tp.ConvGeometry | None = None

    @classmethod
    def protocol_examples(cls):
        return [({"kernel_size": 2}, (2, 4, 5)), ({"kernel_size": [2, 3], "stride": 1, "padding": 1}, (1, 4, 4))]

    def build(self, in_shape, convention=None):
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != 3:
            raise ShapeError(
                f"{self._name()}: expected a per-sample input of shape (channels, height, width), received {in_shape}"
            )
        self.geometry = tp.ConvGeometry.from_shape(
            in_shape, in_shape[0], self.kernel_size, self.stride, self.padding, 1, self._name(), self.size_rule
        )
        self.in_shape = in_shape
        self.out_shape = self.geometry.out_shape
        return self.out_shape

    def _patches(self, A) -> np.ndarray:
        """Windows ``(N, C, kh*kw, Ho, Wo)`` in row-major window order, padding filled with ``pad_value``."""
        g = self.geometry
        A = np.asarray(A, dtype=np.float64).reshape((-1,) + self.in_shape)
        P = tp.extract_patches(A, g.kernel, g.stride, g.padding, (1, 1), self.pad_value)
        return P.reshape(P.shape[0], P.shape[1], g.kernel[0] * g.kernel[1], *g.out_hw)

    def _check_batch(self, A) -> np.ndarray:
        A = np.asarray(A)
        if A.ndim != 4 or A.shape[1:] != self.in_shape:
            raise ShapeError(
                f"{self._name()}: expected an input batch of shape (N, {', '.join(map(str, self.in_shape))}), "
                f"received {A.shape}"
            )
        return A

    @classmethod
    def _torch_pool_kwargs(cls, module, who: str) -> dict:
        """Kernel, stride and padding of a ``torch.nn`` pooling module; ``ceil_mode`` refused."""
        if getattr(module, "ceil_mode", False):
            raise SpecError(f"{who}: ceil_mode=True is not supported (the floor rule is), received ceil_mode=True")
        stride = module.stride if module.stride is not None else module.kernel_size
        return {"kernel_size": tp.as_pair(module.kernel_size, "kernel_size", who, 1),
                "stride": tp.as_pair(stride, "stride", who, 1), "padding": tp.as_pair(module.padding, "padding", who, 0)}

    def describe(self):
        k, s, p = self.kernel_size, self.stride, self.padding
        txt = f"{self.kind} k{k[0]}x{k[1]} s{s[0]}x{s[1]}"
        return txt + (f" p{p[0]}x{p[1]}" if p != (0, 0) else "")

    def latex_name(self):
        return rf"\operatorname{{{self.kind}}}"


@register("maxpool2d")
class MaxPool2d(_Pool2d):
    r"""Max pooling :math:`z_{c,i,j} = \max_{(u,v)} \tilde a_{c,\,i s_h+u,\,j s_w+v}` (``torch.nn.functional.max_pool2d``).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size`` (non-overlapping windows).
    padding : int or (int, int)
        Implicit padding with :math:`-\infty` (never selected), at most half the kernel.

    Notes
    -----
    **Tie rule.**  Where several entries of a window share the maximum, the *first one in
    row-major window order* (smallest :math:`u`, then smallest :math:`v`) receives the whole
    derivative: its Jacobian row is :math:`\mathbf e_{i^*}^\top` with :math:`i^*` that entry.
    This is ``numpy.argmax``'s and PyTorch's CPU choice, so gradients agree with
    PyTorch autograd even on constant inputs.  (At a tie the max is not differentiable;
    the rule picks one element of the subdifferential.)  NaN counts as the maximum.
    Overlapping windows (stride < kernel) may select the same input entry more than once;
    the vector-Jacobian products then add up the contributions.
    """

    kind = "maxpool2d"
    #: the ``torch.nn`` classes this family imports (:func:`jacobian_bp.uses.torch_import.from_torch`)
    torch_module_types: tuple[str, ...] = ("MaxPool2d",)

    @classmethod
    def from_torch_module(cls, module, in_shape) -> tuple[dict, dict[str, np.ndarray]]:
        """``torch.nn.MaxPool2d`` → kwargs (no parameters); ``dilation != 1`` and ``return_indices`` refused."""
        who = f"torch.nn.MaxPool2d(kernel_size={module.kernel_size})"
        if tp.as_pair(module.dilation, "dilation", who, 1) != (1, 1):
            raise SpecError(f"{who}: dilation must be 1, received {module.dilation}")
        if module.return_indices:
            raise SpecError(f"{who}: return_indices=True is not supported (the layer returns the pooled values only)")
        return cls._torch_pool_kwargs(module, who), {}
    block_symbol = ("Mmax", r"\text{{max-pooling selection matrix (one 1 per row)}}", r"\mathbf{{M}}^{{[{l}]}}_{{\max}}")

    def prose(self) -> str:
        return "max pooling (0/1 selection matrix)"
    pad_value = -np.inf

    def forward(self, A, params):
        A = self._check_batch(A)
        if A.dtype == object:
            raise UnsupportedInputError(
                f"{self._name()}: max pooling of symbolic entries is undefined (the position of the maximum "
                "depends on the values); substitute numbers first or use avgpool2d"
            )
        return self._patches(A).max(axis=2)

    def argmax_index(self, A) -> np.ndarray:
        """For each sample and output entry, the flat (row-major) input index selected by the tie rule; ``(N, out_size)``."""
        g = self.geometry
        P = self._patches(A)
        am = P.argmax(axis=2)  # first maximal index in row-major window order
        kh, kw = g.kernel
        (sh, sw), (ph, pw) = g.stride, g.padding
        H, W = g.in_hw
        Ho, Wo = g.out_hw
        u, v = np.divmod(am, kw)
        h = np.arange(Ho)[:, None] * sh + u - ph
        w = np.arange(Wo)[None, :] * sw + v - pw
        # a window whose real entries are all -inf may "select" a padding cell: take its first real cell
        h0 = np.maximum(np.arange(Ho) * sh - ph, 0)[:, None]
        w0 = np.maximum(np.arange(Wo) * sw - pw, 0)[None, :]
        pad = (h < 0) | (h >= H) | (w < 0) | (w >= W)
        if pad.any():
            h = np.where(pad, h0, h)
            w = np.where(pad, w0, w)
        c = np.arange(g.in_channels)[None, :, None, None]
        return ((c * H + h) * W + w).reshape(am.shape[0], -1)

    def torch_forward(self, A, params):
        import torch

        return torch.nn.functional.max_pool2d(A, self.kernel_size, self.stride, self.padding)

    def jac_input(self, a, o, params) -> Operator:
        r"""The 0/1 selection matrix, one one per row at the window's arg-max (tie rule above); ``(out_size, in_size)``."""
        idx = self.argmax_index(np.asarray(a).reshape((1,) + self.in_shape))[0]
        n = idx.size
        it = np.int32
        M = sp.csr_array((np.ones(n), idx.astype(it), np.arange(n + 1, dtype=it)), shape=(n, self.in_size))
        return Sparse(M, "max-pool selection")

    def vjp_input(self, A, O, G, params):
        """Scatter-add of each output gradient onto its selected input entry (``np.bincount``); ``(N, in_size)``."""
        idx = self.argmax_index(A)
        G = np.asarray(G, dtype=np.float64).reshape(idx.shape)
        N, n_in = idx.shape[0], self.in_size
        flat = idx + (np.arange(N) * n_in)[:, None]
        return np.bincount(flat.ravel(), weights=G.ravel(), minlength=N * n_in).reshape(N, n_in)

    def left_jac_input(self, A, O, P, params):
        """Batched :math:`\\mathbf P_i\\mathbf J_{\\mathbf a_i}\\mathbf o_i`: column ``idx`` of the result collects column ``r`` of ``P_i``."""
        idx = self.argmax_index(A)  # (N, out)
        P = np.asarray(P, dtype=np.float64)
        N, k, _ = P.shape
        n_in = self.in_size
        flat = idx[:, None, :] + (np.arange(N * k).reshape(N, k, 1) * n_in)
        return np.bincount(flat.ravel(), weights=P.ravel(), minlength=N * k * n_in).reshape(N, k, n_in)


@register("avgpool2d")
class AvgPool2d(_Pool2d):
    r"""Average pooling :math:`z_{c,i,j} = \frac{1}{k_hk_w}\sum_{(u,v)} \tilde a_{c,\,i s_h+u,\,j s_w+v}` (zero padding).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        Zero padding, at most half the kernel.

    Notes
    -----
    The divisor is always :math:`k_hk_w`, padding cells included: PyTorch's default
    ``count_include_pad=True`` (with ``ceil_mode=False``).  The Jacobian is linear in
    nothing but the geometry: entries :math:`1/(k_hk_w)` at every (window, real input
    cell) pair.
    """

    kind = "avgpool2d"
    #: the ``torch.nn`` classes this family imports (:func:`jacobian_bp.uses.torch_import.from_torch`)
    torch_module_types: tuple[str, ...] = ("AvgPool2d",)

    @classmethod
    def from_torch_module(cls, module, in_shape) -> tuple[dict, dict[str, np.ndarray]]:
        """``torch.nn.AvgPool2d`` → kwargs; only ``count_include_pad=True`` and no ``divisor_override``."""
        who = f"torch.nn.AvgPool2d(kernel_size={module.kernel_size})"
        if not module.count_include_pad and tp.as_pair(module.padding, "padding", who, 0) != (0, 0):
            raise SpecError(f"{who}: count_include_pad=False with padding is not supported (the divisor is k_h k_w)")
        if module.divisor_override is not None:
            raise SpecError(f"{who}: divisor_override is not supported, received {module.divisor_override}")
        return cls._torch_pool_kwargs(module, who), {}
    block_symbol = ("Mavg", r"\text{{average-pooling matrix (entries }}1/(k_hk_w))", r"\mathbf{{M}}^{{[{l}]}}_{{\mathrm{{avg}}}}")

    def prose(self) -> str:
        return "average pooling"
    pad_value = 0.0

    def forward(self, A, params):
        A = self._check_batch(A)
        k = self.kernel_size[0] * self.kernel_size[1]
        if A.dtype == object:  # exact: the 0/1 window-incidence matrix times the entries, divided by k
            import sympy

            M = np.rint(self.jac_input(None, None, {}).M.toarray() * k).astype(np.int64).astype(object)
            flat = A.reshape(A.shape[0], -1)
            out = (flat @ M.T) * sympy.Rational(1, k)
            return out.reshape((A.shape[0],) + self.out_shape)
        return self._patches(A).sum(axis=2) / k

    def jac_input(self, a, o, params) -> Operator:
        r"""Depthwise Toeplitz matrix with entries :math:`1/(k_hk_w)`, ``(out_size, in_size)``."""
        g = self.geometry
        C = g.in_channels
        H, W = g.in_hw
        Ho, Wo = g.out_hw
        h, w, vh, vw = tp.window_grid(g.in_hw, g.kernel, g.stride, g.padding)
        # axes (c, i, j, u, v); rows sorted, columns sorted within a row
        c = np.arange(C)[:, None, None, None, None]
        full = (C, Ho, Wo) + g.kernel
        valid = np.broadcast_to(vh[None, :, None, :, None] & vw[None, None, :, None, :], full)
        cols = np.broadcast_to((c * H + h[None, :, None, :, None]) * W + w[None, None, :, None, :], full)[valid]
        counts = np.tile((vh.sum(1)[:, None] * vw.sum(1)[None, :]).ravel(), C)
        indptr = np.zeros(C * Ho * Wo + 1, dtype=np.int32)
        np.cumsum(counts, out=indptr[1:])
        data = np.full(cols.size, 1.0 / (g.kernel[0] * g.kernel[1]))
        M = sp.csr_array((data, cols.astype(np.int32), indptr), shape=(C * Ho * Wo, C * H * W))
        return Sparse(M, "average-pool")

    def vjp_input(self, A, O, G, params):
        """Spread each output gradient evenly over its window (one strided slice update per window offset); ``(N, in_size)``."""
        g = self.geometry
        G = np.asarray(G, dtype=np.float64).reshape((-1,) + self.out_shape) / (g.kernel[0] * g.kernel[1])
        N = G.shape[0]
        (kh, kw), (sh, sw), (ph, pw) = g.kernel, g.stride, g.padding
        H, W = g.in_hw
        Ho, Wo = g.out_hw
        dX = np.zeros((N, g.in_channels, H + 2 * ph, W + 2 * pw))
        for u in range(kh):
            for v in range(kw):
                dX[:, :, u: u + sh * (Ho - 1) + 1: sh, v: v + sw * (Wo - 1) + 1: sw] += G
        return dX[:, :, ph: ph + H, pw: pw + W].reshape(N, -1)

    def jvp_input(self, A, O, T, params):
        """Average pooling is linear: the tangent is pooled like the input, ``(N, out_size)``."""
        A = np.asarray(A)
        return self.forward(T.reshape(A.shape), {}).reshape(A.shape[0], -1)

    def torch_forward(self, A, params):
        import torch

        return torch.nn.functional.avg_pool2d(A, self.kernel_size, self.stride, self.padding, count_include_pad=True)

    def left_jac_input(self, A, O, P, params):
        """Batched :math:`\\mathbf P_i\\mathbf J`; the Jacobian is the same for every sample."""
        P = np.asarray(P)
        N, k = P.shape[:2]
        return self.vjp_input(None, None, P.reshape(N * k, -1), params).reshape(N, k, -1)
