r"""Convolution as matrix multiplication: doubly block-Toeplitz matrices and im2col.

A 2-D convolution layer with ``C_in`` input channels, ``C_out`` filters of size
``kh x kw``, stride ``s``, zero padding ``p`` and dilation ``d`` computes, in the
deep-learning convention (cross-correlation, ``torch.nn.functional.conv2d``),

.. math::

   z_{o,i,j} \;=\; \sum_{c=0}^{C_\text{in}-1}\sum_{u=0}^{k_h-1}\sum_{v=0}^{k_w-1}
   K_{o,c,u,v}\; \tilde X_{c,\; i s_h + u d_h,\; j s_w + v d_w},

where :math:`\tilde{\mathbf X}` is the zero-padded input.  *True* convolution
(``mode="convolution"``; ``scipy.signal.convolve2d``) uses the flipped kernel
:math:`K_{o,c,k_h-1-u,k_w-1-v}` instead.  The output size follows the floor rule of
PyTorch (:func:`output_size`):

.. math:: H_\text{out} = \Big\lfloor \frac{H + 2p_h - d_h(k_h-1) - 1}{s_h} \Big\rfloor + 1 .

**One set of triplets, three matrices.**  The map is linear in the input *and* in the
kernel.  :func:`conv_entries` enumerates, with vectorized index arithmetic, every
triplet ``(r, c, k)`` "output entry ``r`` receives input entry ``c`` times kernel
entry ``k``" (entries falling on the padding are dropped).  From it:

* the Toeplitz matrix :math:`\mathbf T = \operatorname{Toep}(\mathbf K)` with
  :math:`T_{rc} = K_k` -- Damadi Prop. 2, :math:`\mathbf z = \operatorname{Toep}(\mathbf K)
  \operatorname{Vec}(\mathbf X^\top)`; this is :math:`\mathbf J_{\mathbf x}\mathbf z`
  (:func:`toeplitz`);
* the patch (im2col) matrix :math:`\mathbf J_{\operatorname{vec}\mathbf K}\mathbf z` with
  entry :math:`x_c` at ``(r, k)`` (:func:`kernel_jacobian`, and the dense per-filter
  block :func:`patch_matrix`, so that :math:`\mathbf J_{\operatorname{vec}_r \mathbf K}\mathbf z
  = \mathbf I_{C_\text{out}} \otimes \mathbf P`);
* the 0/1 matrix :math:`\partial \operatorname{vec}\mathbf W / \partial \operatorname{vec}\mathbf K`
  of Damadi Prop. 3 with :math:`\mathbf W = \operatorname{Toep}(\mathbf K)^\top`, entry 1 at
  ``(r * in_size + c, k)`` (:func:`weight_map`), so that
  :math:`\mathbf J_{\mathbf K}\mathbf z = \mathbf J_{\operatorname{vec}\mathbf W}\mathbf z\,
  \partial\operatorname{vec}\mathbf W/\partial\operatorname{vec}\mathbf K` (:func:`prop3_kernel_jacobian`).

**Stackings.**  ``stacking="row"`` flattens each channel row by row (C order; Damadi's
:math:`\operatorname{Vec}(\mathbf X^\top)`, the engine's convention), channels one after
the other.  ``stacking="column"`` flattens each channel column by column
(:math:`\operatorname{Vec}(\mathbf X)`), channels one after the other: entry
``(c, h, w)`` of a ``C x H x W`` array sits at ``c*H*W + w*H + h``.  The stacking
applies to input and output alike.  Kernel (and untied bias) vectors use ``order``:
``"C"`` (row-major ravel of the canonical array) or ``"F"`` (column-major ravel).

**Symbolic.**  :func:`toeplitz_sympy` builds the same matrix with SymPy entries;
:func:`prop2_matrix` is Damadi's 3x3-input, 2x2-kernel example, and
:func:`damadi_printed_prop2` the matrix as printed in the paper (whose last two rows are
wrong; see the notebook ``convolution_as_matrix.ipynb``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import sympy

from ..errors import DataError, ShapeError, SpecError
from .operators import sympy_scalar

__all__ = [
    "as_pair", "output_size", "ConvGeometry", "window_grid", "extract_patches", "conv_entries",
    "toeplitz", "toeplitz_sympy", "patch_matrix", "kernel_jacobian", "bias_jacobian",
    "weight_map", "prop3_kernel_jacobian", "flat_index", "prop2_matrix", "damadi_printed_prop2",
    "MODES", "STACKINGS",
]

MODES = ("correlation", "convolution")
STACKINGS = ("row", "column")

Pair = tuple[int, int]


# --------------------------------------------------------------------------- validation
def as_pair(value, name: str, who: str = "conv2d", minimum: int = 0) -> Pair:
    """Return ``(a, b)`` from an int, a 2-tuple or a 2-list of ints (JSON gives lists).

    Raises
    ------
    SpecError
        If ``value`` is not an integer or a pair of integers, or an entry is below ``minimum``.
    """
    if isinstance(value, (list, tuple)):
        vals = tuple(value)
    else:
        vals = (value, value)
    if len(vals) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in vals):
        raise SpecError(f"{who}: {name} must be an integer or a pair of integers, received {value!r}")
    if min(vals) < minimum:
        raise SpecError(f"{who}: {name} must be >= {minimum}, received {value!r}")
    return int(vals[0]), int(vals[1])


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                who: str = "conv2d", axis: str = "height", rule: str = "floor") -> int:
    r"""Output length along one axis, :math:`\lfloor (n + 2p - d(k-1) - 1)/s \rfloor + 1`.

    Parameters
    ----------
    size, kernel, stride, padding, dilation : int
        Input length :math:`n`, kernel length :math:`k`, :math:`s \ge 1`, :math:`p \ge 0`, :math:`d \ge 1`.
    who : str
        Name of the layer, used in error messages.
    axis : str
        ``"height"`` or ``"width"``, used in error messages.
    rule : {"floor", "exact"}
        ``"floor"`` (PyTorch) drops the positions where a last window does not fit;
        ``"exact"`` raises :class:`ShapeError` unless the windows tile the padded input exactly.

    Raises
    ------
    SpecError
        Stride or dilation < 1, negative padding, kernel < 1, unknown rule.
    ShapeError
        The dilated kernel is larger than the padded input, or (``rule="exact"``) the
        output size is not an integer.
    """
    if rule not in ("floor", "exact"):
        raise SpecError(f"{who}: output-size rule must be 'floor' or 'exact', received {rule!r}")
    for nm, v, lo in (("kernel size", kernel, 1), ("stride", stride, 1), ("dilation", dilation, 1),
                      ("padding", padding, 0), ("input size", size, 1)):
        if v < lo:
            raise SpecError(f"{who}: {nm} must be >= {lo} along the {axis}, received {v}")
    extent = dilation * (kernel - 1) + 1
    padded = size + 2 * padding
    if extent > padded:
        dil = f" (dilated extent {extent})" if dilation > 1 else ""
        raise ShapeError(
            f"{who}: kernel {kernel}{dil} is larger than the padded input along the {axis}: "
            f"expected a kernel extent <= {padded} (input {size} + 2*padding {padding}), received {extent}"
        )
    span = padded - extent
    if rule == "exact" and span % stride:
        raise ShapeError(
            f"{who}: output {axis} ({size} + 2*{padding} - {extent})/{stride} + 1 = {span / stride + 1:g} "
            f"is not an integer under the rule 'exact'"
        )
    return span // stride + 1


@dataclass(frozen=True)
class ConvGeometry:
    """Validated geometry of a 2-D convolution (pooling uses it with ``out_channels = in_channels``).

    Parameters
    ----------
    in_channels, in_hw : int, (int, int)
        Per-sample input shape ``(C_in, H, W)``.
    out_channels : int
        Number of filters ``C_out``.
    kernel, stride, padding, dilation : (int, int)
        As in :func:`output_size`, per axis (height, width).
    who : str
        Layer name for error messages (not compared).
    rule : str
        Output-size rule, see :func:`output_size`.
    """

    in_channels: int
    in_hw: Pair
    out_channels: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    who: str = field(default="conv2d", compare=False)
    rule: str = field(default="floor", compare=False)

    def __post_init__(self):
        for nm in ("kernel", "stride", "padding", "dilation", "in_hw"):
            object.__setattr__(self, nm, as_pair(getattr(self, nm), nm, self.who,
                                                 0 if nm == "padding" else 1))
        for nm in ("in_channels", "out_channels"):
            v = getattr(self, nm)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise SpecError(f"{self.who}: {nm} must be a positive integer, received {v!r}")
            object.__setattr__(self, nm, int(v))
        hw = tuple(
            output_size(self.in_hw[a], self.kernel[a], self.stride[a], self.padding[a], self.dilation[a],
                        self.who, ("height", "width")[a], self.rule)
            for a in (0, 1)
        )
        object.__setattr__(self, "_out_hw", hw)

    @classmethod
    def from_shape(cls, in_shape: Sequence[int], out_channels: int, kernel_size, stride=1, padding=0,
                   dilation=1, who: str = "conv2d", rule: str = "floor") -> "ConvGeometry":
        """Build from a per-sample input shape ``(C_in, H, W)`` or ``(H, W)`` (one channel)."""
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) == 2:
            in_shape = (1,) + in_shape
        if len(in_shape) != 3:
            raise ShapeError(
                f"{who}: expected a per-sample input of shape (channels, height, width), received {in_shape}"
            )
        return cls(in_shape[0], in_shape[1:], out_channels, as_pair(kernel_size, "kernel_size", who, 1),
                   as_pair(stride, "stride", who, 1), as_pair(padding, "padding", who, 0),
                   as_pair(dilation, "dilation", who, 1), who, rule)

    @property
    def out_hw(self) -> Pair:
        return self._out_hw  # type: ignore[attr-defined]

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (self.in_channels,) + self.in_hw

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.out_channels,) + self.out_hw

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels) + self.kernel

    @property
    def in_size(self) -> int:
        return prod(self.in_shape)

    @property
    def out_size(self) -> int:
        return prod(self.out_shape)

    @property
    def kernel_size(self) -> int:
        return prod(self.kernel_shape)


def _check_choice(value: str, choices: Sequence[str], name: str, who: str) -> str:
    if value not in choices:
        raise SpecError(f"{who}: {name} must be one of {', '.join(map(repr, choices))}, received {value!r}")
    return value


# --------------------------------------------------------------------------- index arithmetic
def window_grid(in_hw: Pair, kernel: Pair, stride: Pair = (1, 1), padding: Pair = (0, 0),
                dilation: Pair = (1, 1)):
    r"""Input coordinates met by every window, per axis.

    Returns ``(h, w, vh, vw)``: ``h[i, u] = i s_h + u d_h - p_h`` of shape ``(H_out, kh)``,
    ``w[j, v]`` of shape ``(W_out, kw)`` (unpadded coordinates, may be out of range),
    and the boolean masks ``vh``, ``vw`` of the in-range (non-padding) coordinates.
    """
    H, W = in_hw
    Ho = (H + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    Wo = (W + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    h = np.arange(Ho)[:, None] * stride[0] + np.arange(kernel[0])[None, :] * dilation[0] - padding[0]
    w = np.arange(Wo)[:, None] * stride[1] + np.arange(kernel[1])[None, :] * dilation[1] - padding[1]
    return h, w, (h >= 0) & (h < H), (w >= 0) & (w < W)


def extract_patches(A: np.ndarray, kernel: Pair, stride: Pair = (1, 1), padding: Pair = (0, 0),
                    dilation: Pair = (1, 1), pad_value=0) -> np.ndarray:
    r"""Batched im2col: the windows of ``A`` (``(N, C, H, W)``) as ``(N, C, kh, kw, H_out, W_out)``.

    ``out[n, c, u, v, i, j] = \tilde A[n, c, i s_h + u d_h, j s_w + v d_w]`` where
    :math:`\tilde{\mathbf A}` is ``A`` padded with ``pad_value`` (0 for convolution and
    average pooling, :math:`-\infty` for max pooling).  Works for object (SymPy) arrays.
    """
    A = np.asarray(A)
    ph, pw = padding
    if ph or pw:
        A = np.pad(A, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    h, w, _, _ = window_grid((A.shape[2] - 2 * ph, A.shape[3] - 2 * pw), kernel, stride, padding, dilation)
    h = (h + ph).T  # (kh, Ho), padded coordinates
    w = (w + pw).T  # (kw, Wo)
    return A[:, :, h[:, None, :, None], w[None, :, None, :]]


def flat_index(idx: Sequence[np.ndarray], shape: Sequence[int], order: str) -> np.ndarray:
    """``np.ravel_multi_index`` in order ``"C"`` or ``"F"`` (a ``ValueError`` for any other order)."""
    if order not in ("C", "F"):
        raise DataError(f"vec order must be 'C' or 'F', got {order!r}")
    return np.ravel_multi_index(tuple(idx), tuple(shape), order=order)


def _stacked_index(c, h, w, C, H, W, stacking: str):
    """Position of entry ``(c, h, w)`` of a ``C x H x W`` array in the stacked vector."""
    if stacking == "row":
        return (c * H + h) * W + w
    return (c * W + w) * H + h


def conv_entries(geom: ConvGeometry, mode: str = "correlation", stacking: str = "row",
                 order: str = "C"):
    r"""Every structural non-zero of the convolution as triplets ``(rows, cols, kidx)``.

    Output entry ``rows[t]`` (stacked as ``stacking``) receives input entry ``cols[t]``
    (stacked as ``stacking``) times kernel entry ``kidx[t]`` (position in the ``order``
    ravel of ``K``, shape ``(C_out, C_in, kh, kw)``); window positions on the zero
    padding are dropped.  The arrays are 1-D, of length ``nnz``, built without Python
    loops; for ``stacking="row"`` they are sorted by ``rows`` and, within a row, by ``cols``
    (ready-made CSR).

    Returns
    -------
    rows, cols, kidx : ndarray of int64
    counts : ndarray of int64
        Number of entries of each output row (row stacking order), for CSR ``indptr``.
    """
    _check_choice(mode, MODES, "mode", geom.who)
    _check_choice(stacking, STACKINGS, "stacking", geom.who)
    Co, Ci = geom.out_channels, geom.in_channels
    H, W = geom.in_hw
    Ho, Wo = geom.out_hw
    kh, kw = geom.kernel
    h, w, vh, vw = window_grid(geom.in_hw, geom.kernel, geom.stride, geom.padding, geom.dilation)
    # axes: (o, i, j, c, u, v)
    o = np.arange(Co)[:, None, None, None, None, None]
    i = np.arange(Ho)[None, :, None, None, None, None]
    j = np.arange(Wo)[None, None, :, None, None, None]
    c = np.arange(Ci)[None, None, None, :, None, None]
    u = np.arange(kh)[None, None, None, None, :, None]
    v = np.arange(kw)[None, None, None, None, None, :]
    hh = h[None, :, None, None, :, None]
    ww = w[None, None, :, None, None, :]
    full = (Co, Ho, Wo, Ci, kh, kw)
    valid = np.broadcast_to(vh[None, :, None, None, :, None] & vw[None, None, :, None, None, :], full)
    if mode == "convolution":
        ku, kv = kh - 1 - u, kw - 1 - v
    else:
        ku, kv = u, v
    rows = _stacked_index(o, i, j, Co, Ho, Wo, stacking)
    cols = _stacked_index(c, np.clip(hh, 0, H - 1), np.clip(ww, 0, W - 1), Ci, H, W, stacking)
    kidx = flat_index(np.broadcast_arrays(o, c, ku, kv), geom.kernel_shape, order)
    counts = (Ci * vh.sum(axis=1)[:, None] * vw.sum(axis=1)[None, :]).ravel()
    counts = np.tile(counts, Co)
    if valid.all():
        sel = slice(None)
        rows, cols, kidx = (np.broadcast_to(a, full).ravel() for a in (rows, cols, kidx))
    else:
        sel = valid
        rows, cols, kidx = (np.broadcast_to(a, full)[sel] for a in (rows, cols, kidx))
    return rows, cols, kidx, counts


def _index_dtype(n: int):
    return np.int32 if n < 2**31 - 1 else np.int64


def _csr(data, rows, cols, counts, shape, sorted_rows: bool) -> sp.csr_array:
    """CSR from triplets; builds ``indptr`` directly when the triplets are already row-sorted."""
    it = _index_dtype(max(shape[0], shape[1], len(data)))
    if sorted_rows:
        indptr = np.zeros(shape[0] + 1, dtype=it)
        np.cumsum(counts, out=indptr[1:])
        M = sp.csr_array((data, cols.astype(it, copy=False), indptr), shape=shape)
        M.has_sorted_indices = True
        return M
    M = sp.coo_array((data, (rows.astype(it), cols.astype(it))), shape=shape).tocsr()
    M.sort_indices()
    return M


def _kernel4(K):
    K = K if isinstance(K, np.ndarray) else (np.array(K.tolist(), dtype=object) if isinstance(K, sympy.MatrixBase) else np.asarray(K))
    if K.ndim == 2:
        K = K[None, None]
    if K.ndim != 4:
        raise ShapeError(
            f"toeplitz: expected a kernel of shape (C_out, C_in, kh, kw) or (kh, kw), received {K.shape}"
        )
    return K


def _geometry(K: np.ndarray, in_shape, stride, padding, dilation, who, rule="floor") -> ConvGeometry:
    in_shape = tuple(int(s) for s in in_shape)
    if len(in_shape) == 2:
        in_shape = (1,) + in_shape
    if len(in_shape) != 3:
        raise ShapeError(f"{who}: expected an input shape (C_in, H, W) or (H, W), received {in_shape}")
    if in_shape[0] != K.shape[1]:
        raise ShapeError(
            f"{who}: the kernel expects {K.shape[1]} input channels, received an input with {in_shape[0]} channels"
        )
    return ConvGeometry.from_shape(in_shape, K.shape[0], K.shape[2:], stride, padding, dilation, who, rule)


# --------------------------------------------------------------------------- matrices
def toeplitz(K, in_shape: Sequence[int], stride=1, padding=0, dilation=1, mode: str = "correlation",
             stacking: str = "row", who: str = "toeplitz") -> sp.csr_array:
    r"""The doubly block-Toeplitz matrix :math:`\operatorname{Toep}(\mathbf K)` (Damadi Prop. 2).

    .. math:: \operatorname{vec}(\mathbf X \star \mathbf K) = \operatorname{Toep}(\mathbf K)\,\operatorname{vec}\mathbf X

    with ``vec`` the chosen ``stacking`` (``"row"`` = Damadi's :math:`\operatorname{Vec}(\mathbf X^\top)`).
    It is the Jacobian :math:`\mathbf J_{\mathbf x}\mathbf z` of the convolution.

    Parameters
    ----------
    K : ndarray, shape ``(C_out, C_in, kh, kw)`` or ``(kh, kw)``
        Numeric kernel (use :func:`toeplitz_sympy` for SymPy kernels).
    in_shape : tuple
        ``(C_in, H, W)`` or ``(H, W)``.
    stride, padding, dilation : int or pair
    mode : {"correlation", "convolution"}
    stacking : {"row", "column"}

    Returns
    -------
    scipy.sparse.csr_array, shape ``(C_out H_out W_out, C_in H W)``
        ``float64`` data, ``int32`` indices, exactly one stored entry per structural
        non-zero: ``C_out * C_in * (#in-range window entries)``.
    """
    K = _kernel4(K)
    geom = _geometry(K, in_shape, stride, padding, dilation, who)
    rows, cols, kidx, counts = conv_entries(geom, mode, stacking, "C")
    data = np.ascontiguousarray(K, dtype=np.float64).ravel()[kidx]
    return _csr(data, rows, cols, counts, (geom.out_size, geom.in_size), stacking == "row")


def toeplitz_sympy(K, in_shape: Sequence[int], stride=1, padding=0, dilation=1, mode: str = "correlation",
                   stacking: str = "row", who: str = "toeplitz") -> sympy.Matrix:
    """:func:`toeplitz` with SymPy entries (``K`` a SymPy ``Matrix`` or an object array)."""
    K = _kernel4(K)
    geom = _geometry(K, in_shape, stride, padding, dilation, who)
    rows, cols, kidx, _ = conv_entries(geom, mode, stacking, "C")
    flat = K.ravel()
    M = sympy.zeros(geom.out_size, geom.in_size)
    for r, c, k in zip(rows.tolist(), cols.tolist(), kidx.tolist()):
        M[r, c] = sympy_scalar(flat[k])
    return M


def _input3(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ShapeError(f"patch matrix: expected an input of shape (C_in, H, W) or (H, W), received {x.shape}")
    return x


def patch_matrix(x, kernel_size, stride=1, padding=0, dilation=1, mode: str = "correlation") -> np.ndarray:
    r"""Dense per-filter im2col matrix :math:`\mathbf P` of one sample ``x`` (``(C_in, H, W)``).

    Row ``i W_out + j`` holds the window of output position ``(i, j)``, columns ordered
    like ``K[o].ravel()`` (row-major ``(c, u, v)``), zero where the window covers padding;
    in ``"convolution"`` mode the window is flipped.  Hence
    :math:`\mathbf z_o = \mathbf P \operatorname{vec}_r \mathbf K_o` and

    .. math:: \mathbf J_{\operatorname{vec}_r \mathbf K}\mathbf z = \mathbf I_{C_\text{out}} \otimes \mathbf P,

    the convolutional analogue of :math:`\mathbf I_n\otimes\mathbf a^\top` for a dense layer.
    Shape ``(H_out W_out, C_in kh kw)``.  Works for object (SymPy) inputs.
    """
    x = _input3(x)
    geom = ConvGeometry.from_shape(x.shape, 1, kernel_size, stride, padding, dilation, "patch matrix")
    _check_choice(mode, MODES, "mode", "patch matrix")
    P = extract_patches(x[None], geom.kernel, geom.stride, geom.padding, geom.dilation)[0]  # (C, kh, kw, Ho, Wo)
    if mode == "convolution":
        P = P[:, ::-1, ::-1]
    return np.ascontiguousarray(P.transpose(3, 4, 0, 1, 2).reshape(prod(geom.out_hw), -1))


def kernel_jacobian(x, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                    mode: str = "correlation", stacking: str = "row", order: str = "C") -> sp.csr_array:
    r"""Sparse :math:`\mathbf J_{\operatorname{vec}\mathbf K}\mathbf z` (the im2col matrix) for one sample.

    Entry ``(r, k)`` is :math:`x_c` for every triplet ``(r, c, k)`` of :func:`conv_entries`:
    :math:`\partial z_r/\partial K_k = x_c`.  Rows follow ``stacking``, columns the
    ``order`` ravel of ``K`` (``(C_out, C_in, kh, kw)``).  Shape ``(out_size, C_out C_in kh kw)``.
    """
    x = _input3(x)
    geom = ConvGeometry.from_shape(x.shape, out_channels, kernel_size, stride, padding, dilation, "kernel jacobian")
    rows, cols, kidx, _ = conv_entries(geom, mode, stacking, order)
    xs = x.transpose(0, 2, 1) if stacking == "column" else x
    data = np.asarray(xs, dtype=np.float64).ravel()[cols]
    return sp.coo_array((data, (rows, kidx)), shape=(geom.out_size, geom.kernel_size)).tocsr()


def bias_jacobian(out_shape: Sequence[int], bias: str = "tied", stacking: str = "row",
                  order: str = "C") -> sp.csr_array:
    r""":math:`\mathbf J_{\mathbf b}\mathbf z` for a tied (``(C_out,)``) or untied (``(C_out, H_out, W_out)``) bias.

    Tied: :math:`\mathbf I_{C_\text{out}} \otimes \mathbf 1_{H_\text{out}W_\text{out}}` (one bias per
    filter, Damadi's :math:`\mathbf B_i` constant); untied: a permutation (identity when the
    ``order`` of the bias and the ``stacking`` of the output agree), Damadi Prop. 3's
    :math:`\mathbf b_i = \operatorname{Vec}(\mathbf B_i)`.
    """
    Co, Ho, Wo = (int(s) for s in out_shape)
    o, i, j = np.meshgrid(np.arange(Co), np.arange(Ho), np.arange(Wo), indexing="ij")
    rows = _stacked_index(o, i, j, Co, Ho, Wo, stacking).ravel()
    if bias == "tied":
        cols, n = o.ravel(), Co
    elif bias == "untied":
        cols, n = flat_index((o.ravel(), i.ravel(), j.ravel()), (Co, Ho, Wo), order), Co * Ho * Wo
    else:
        raise SpecError(f"bias jacobian: bias must be 'tied' or 'untied', received {bias!r}")
    return sp.coo_array((np.ones(rows.size), (rows, cols)), shape=(Co * Ho * Wo, n)).tocsr()


def weight_map(geom: ConvGeometry, mode: str = "correlation", order: str = "C") -> sp.csr_array:
    r"""The 0/1 matrix :math:`\partial \operatorname{vec}\mathbf W/\partial \operatorname{vec}\mathbf K` of Damadi Prop. 3.

    Prop. 3 writes the layer as a dense one, :math:`\mathbf z = \mathbf W^\top \mathbf x + \mathbf b`
    with :math:`\mathbf W = \operatorname{Toep}(\mathbf K)^\top \in \mathbb R^{n_\text{in}\times n_\text{out}}`
    (row stacking of input and output).  With Damadi's column-stacking ``Vec``,
    :math:`\operatorname{Vec}\mathbf W` lists :math:`\operatorname{Toep}(\mathbf K)` row by row, so
    entry :math:`T_{rc}` sits at ``r * in_size + c``; the map has a 1 at ``(r * in_size + c, k)``
    for every triplet.  Shape ``(in_size * out_size, C_out C_in kh kw)``.
    """
    rows, cols, kidx, _ = conv_entries(geom, mode, "row", order)
    it = _index_dtype(geom.in_size * geom.out_size)
    r = rows.astype(it) * geom.in_size + cols.astype(it)
    return sp.coo_array((np.ones(r.size), (r, kidx)), shape=(geom.in_size * geom.out_size, geom.kernel_size)).tocsr()


def prop3_kernel_jacobian(x, geom: ConvGeometry, mode: str = "correlation", order: str = "C") -> sp.csr_array:
    r""":math:`\mathbf J_{\mathbf K}\mathbf z` by Damadi's Prop. 3 route (row stacking).

    .. math:: \mathbf J_{\operatorname{vec}\mathbf K}\mathbf z =
              \underbrace{(\mathbf I_{n_\text{out}} \otimes \mathbf x^\top)}_{\mathbf J_{\operatorname{Vec}\mathbf W}\mathbf z}
              \;\frac{\partial\operatorname{Vec}\mathbf W}{\partial\operatorname{vec}\mathbf K}

    (Damadi §3.1: the Jacobian of :math:`\mathbf W^\top\mathbf x` w.r.t. the stacked columns
    of :math:`\mathbf W` is :math:`\mathbf I\otimes\mathbf x^\top`).  Equal to :func:`kernel_jacobian`;
    far more expensive (the middle dimension is ``in_size * out_size``) -- it exists to
    verify Prop. 3.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size != geom.in_size:
        raise ShapeError(f"{geom.who}: expected an input with {geom.in_size} entries, received {x.size}")
    JW = sp.kron(sp.eye_array(geom.out_size, format="csr"), sp.csr_array(x[None, :]), format="csr")
    return sp.csr_array(JW @ weight_map(geom, mode, order))


# --------------------------------------------------------------------------- Damadi's example
def prop2_matrix(in_hw: Pair = (3, 3), kernel: Pair = (2, 2), mode: str = "correlation",
                 stacking: str = "row") -> tuple[sympy.Matrix, sympy.Matrix, sympy.Matrix]:
    r"""Damadi Prop. 2 symbolically: ``(Toep(K), K, X)`` with symbols ``k_1..`` and ``x_1..``.

    ``K = [[k_1, k_2], [k_3, k_4]]`` and ``X = [[x_1, x_2, x_3], ..., [x_7, x_8, x_9]]``
    are numbered row by row, so that :math:`\operatorname{Vec}(\mathbf X^\top) = (x_1,\dots,x_9)^\top`.
    For the default 3x3 input and 2x2 kernel in correlation mode the result is the exact
    4x9 matrix

    .. math::
       \begin{bmatrix}
       k_1&k_2&0&k_3&k_4&0&0&0&0\\ 0&k_1&k_2&0&k_3&k_4&0&0&0\\
       0&0&0&k_1&k_2&0&k_3&k_4&0\\ 0&0&0&0&k_1&k_2&0&k_3&k_4
       \end{bmatrix}.
    """
    kh, kw = as_pair(kernel, "kernel", "prop2_matrix", 1)
    H, W = as_pair(in_hw, "in_hw", "prop2_matrix", 1)
    ks = sympy.symbols(f"k_1:{kh * kw + 1}")
    xs = sympy.symbols(f"x_1:{H * W + 1}")
    K = sympy.Matrix(kh, kw, ks)
    X = sympy.Matrix(H, W, xs)
    return toeplitz_sympy(K, (H, W), mode=mode, stacking=stacking, who="prop2_matrix"), K, X


def damadi_printed_prop2() -> sympy.Matrix:
    """The 4x9 matrix exactly as printed in Damadi et al. §3.5 (a plain 1-D Toeplitz band; rows 3-4 are wrong)."""
    k1, k2, k3, k4 = sympy.symbols("k_1:5")
    band = [k1, k2, 0, k3, k4]
    return sympy.Matrix([[0] * r + band + [0] * (4 - r) for r in range(4)])
