r"""2-D convolution layer with explicit Jacobians (Damadi §3.5, Props. 2--3).

One sample :math:`\mathbf a\in\mathbb R^{C_\text{in}\times H\times W}` is mapped to
:math:`\mathbf z\in\mathbb R^{C_\text{out}\times H_\text{out}\times W_\text{out}}`,

.. math::

   z_{o,i,j} = \sum_{c,u,v} K_{o,c,u',v'}\,\tilde a_{c,\,i s_h+u d_h,\,j s_w+v d_w} + b_{o[,i,j]},

with :math:`(u',v') = (u,v)` for ``mode="correlation"`` (``torch.nn.functional.conv2d``)
and :math:`(u',v') = (k_h-1-u,\,k_w-1-v)` for ``mode="convolution"`` (flipped kernel,
``scipy.signal.convolve2d``); :math:`\tilde{\mathbf a}` is zero-padded.  The geometry and the
matrices come from :mod:`jacobian_bp.backend.toeplitz`.

Jacobians of one sample (vectors flattened row-major = Damadi's :math:`\operatorname{Vec}(\mathbf X^\top)`
per channel, channels stacked):

* :math:`\mathbf J_{\mathbf a}\mathbf z = \operatorname{Toep}(\mathbf K)` -- a sparse doubly
  block-Toeplitz matrix (Damadi Prop. 2), ``(out_size, in_size)``;
* :math:`\mathbf J_{\operatorname{vec}_r\mathbf K}\mathbf z = \mathbf I_{C_\text{out}}\otimes\mathbf P`
  with the im2col matrix :math:`\mathbf P` (``(H_out W_out, C_in kh kw)``); column-major
  :math:`\operatorname{vec}_c` permutes its columns;
* :math:`\mathbf J_{\mathbf b}\mathbf z = \mathbf I_{C_\text{out}}\otimes\mathbf 1_{H_\text{out}W_\text{out}}`
  (tied bias, one per filter) or the identity / a permutation (untied bias
  ``(C_out, H_out, W_out)``, Damadi Prop. 3's :math:`\operatorname{Vec}(\mathbf B_i)`).
"""
from __future__ import annotations

from math import prod

import numpy as np
import scipy.sparse as sp

from ..errors import DataError, ShapeError, SpecError
from ..backend.operators import Dense as DenseOp, Identity, Kron, Operator, Product, Sparse
from ..backend import toeplitz as tp
from .base import Layer
from .registry import register

__all__ = ["Conv2d"]

_BIAS = ("tied", "untied", "none")


def _is_symbolic(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype == object


def _permutation(perm_cols: np.ndarray, exact: bool = False, label: str = "permutation") -> Sparse:
    """Sparse ``n x n`` matrix ``Π`` with ``Π[perm_cols[t], t] = 1`` (integer entries if ``exact``, for SymPy)."""
    n = perm_cols.size
    ones = np.ones(n, dtype=np.int64 if exact else np.float64)
    return Sparse(sp.csr_array((ones, (perm_cols, np.arange(n))), shape=(n, n)), label)


@register("conv2d")
class Conv2d(Layer):
    r"""2-D convolution :math:`\mathbf z = \mathbf K \star \mathbf a + \mathbf b` with explicit Jacobians.

    Parameters
    ----------
    out_channels : int
        Number of filters :math:`C_\text{out}`.
    kernel_size : int or (int, int)
        :math:`(k_h, k_w)`; JSON lists accepted.
    stride, dilation : int or (int, int)
        :math:`\ge 1` (default 1).
    padding : int or (int, int)
        Symmetric zero padding :math:`\ge 0` (default 0).
    mode : {"correlation", "convolution"}
        Cross-correlation (deep-learning convention, ``torch.nn.functional.conv2d``) or
        true convolution with the flipped kernel (``scipy.signal.convolve2d``).
    bias : {"tied", "untied", "none"}
        One bias per filter (shape ``(C_out,)``), one per output entry (shape
        ``(C_out, H_out, W_out)``, Damadi Prop. 3), or none.  ``True``/``False`` mean
        ``"tied"``/``"none"``.
    in_channels : int, optional
        :math:`C_\text{in}`; inferred at build when omitted, checked when given.

    Notes
    -----
    The output size follows the floor rule
    :math:`H_\text{out} = \lfloor (H+2p_h-d_h(k_h-1)-1)/s_h\rfloor + 1` (PyTorch); with
    ``size_rule="exact"`` a geometry whose windows do not tile the padded input is an error.
    Canonical parameters: ``"K"`` of shape ``(C_out, C_in, kh, kw)`` and ``"b"``.
    """

    kind = "conv2d"
    parametric = True
    block_input_name = "T"

    def __init__(self, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 mode: str = "correlation", bias: str | bool = "tied", in_channels: int | None = None,
                 size_rule: str = "floor"):
        super().__init__()
        who = "conv2d layer"
        for nm, v in (("out_channels", out_channels), ("in_channels", in_channels)):
            if (v is None and nm == "out_channels") or (
                    v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) or v < 1)):
                raise SpecError(f"{who}: {nm} must be a positive integer, received {v!r}")
        self.out_channels = int(out_channels)
        self.in_channels = None if in_channels is None else int(in_channels)
        self.kernel_size = tp.as_pair(kernel_size, "kernel_size", who, 1)
        self.stride = tp.as_pair(stride, "stride", who, 1)
        self.padding = tp.as_pair(padding, "padding", who, 0)
        self.dilation = tp.as_pair(dilation, "dilation", who, 1)
        if not isinstance(mode, str) or mode not in tp.MODES:
            raise SpecError(f"{who}: mode must be 'correlation' or 'convolution', received {mode!r}")
        self.mode = mode
        if isinstance(bias, (bool, np.bool_)):
            bias = "tied" if bias else "none"
        elif bias is None:
            bias = "none"
        if not isinstance(bias, str) or bias not in _BIAS:
            raise SpecError(f"{who}: bias must be 'tied', 'untied' or 'none', received {bias!r}")
        self.bias = bias
        self.param_names = ("K",) if bias == "none" else ("K", "b")
        if not isinstance(size_rule, str) or size_rule not in ("floor", "exact"):
            raise SpecError(f"{who}: size_rule must be 'floor' or 'exact', received {size_rule!r}")
        self.size_rule = size_rule
        self.geometry: tp.ConvGeometry | None = None

    @classmethod
    def protocol_examples(cls):
        return [({"out_channels": 2, "kernel_size": 2}, (2, 4, 5)),
                ({"out_channels": 3, "kernel_size": [2, 3], "stride": 2, "padding": 1, "mode": "convolution",
                  "bias": "untied"}, (1, 5, 6)),
                ({"out_channels": 2, "kernel_size": 2, "dilation": 2, "bias": "none"}, (2, 5, 5))]

    #: the ``torch.nn`` classes this family imports (:func:`jacobian_bp.uses.torch_import.from_torch`)
    torch_module_types: tuple[str, ...] = ("Conv2d",)

    @classmethod
    def from_torch_module(cls, module, in_shape) -> tuple[dict, dict[str, np.ndarray]]:
        """``torch.nn.Conv2d`` → (constructor kwargs, ``{"K": weight, "b": bias}``), float64.

        Cross-correlation (``mode="correlation"``) with a tied bias, as ``torch.nn.functional.conv2d``;
        refused (``SpecError``): ``groups != 1``, ``padding_mode`` other than ``"zeros"``, and a
        ``padding="same"`` that would pad asymmetrically.
        """
        who = f"torch.nn.Conv2d({module.in_channels}, {module.out_channels})"
        if module.groups != 1:
            raise SpecError(f"{who}: groups must be 1 (grouped convolution is not a conv2d layer), received {module.groups}")
        if module.padding_mode != "zeros":
            raise SpecError(f"{who}: padding_mode must be 'zeros', received {module.padding_mode!r}")
        pad = module.padding
        if isinstance(pad, str):
            if pad == "valid":
                pad = (0, 0)
            else:  # "same" (stride 1): total padding d (k - 1) per axis, symmetric only when even
                tot = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
                if any(t % 2 for t in tot):
                    raise SpecError(f"{who}: padding='same' pads asymmetrically here (total {tot}); give an integer padding")
                pad = tuple(t // 2 for t in tot)
        kwargs = {"out_channels": int(module.out_channels), "kernel_size": tuple(int(k) for k in module.kernel_size),
                  "stride": tuple(int(s) for s in module.stride), "padding": tuple(int(p) for p in pad),
                  "dilation": tuple(int(d) for d in module.dilation), "mode": "correlation",
                  "bias": "tied" if module.bias is not None else "none", "in_channels": int(module.in_channels)}
        params = {"K": module.weight.detach().cpu().double().numpy().copy()}
        if module.bias is not None:
            params["b"] = module.bias.detach().cpu().double().numpy().copy()
        return kwargs, params

    # ------------------------------------------------------------------ shapes
    def build(self, in_shape, convention=None):
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != 3:
            raise ShapeError(
                f"{self._name()}: expected a per-sample input of shape (channels, height, width), "
                f"received {in_shape}"
            )
        if self.in_channels is not None and in_shape[0] != self.in_channels:
            raise ShapeError(
                f"{self._name()}: expected an input with {self.in_channels} channels (in_channels), "
                f"received {in_shape[0]} channels (input shape {in_shape})"
            )
        self.geometry = tp.ConvGeometry.from_shape(
            in_shape, self.out_channels, self.kernel_size, self.stride, self.padding, self.dilation, self._name(),
            self.size_rule,
        )
        self.in_channels = in_shape[0]
        self.in_shape = in_shape
        self.out_shape = self.geometry.out_shape
        return self.out_shape

    def param_shapes(self):
        shapes = {"K": self.geometry.kernel_shape}
        if self.bias == "tied":
            shapes["b"] = (self.out_channels,)
        elif self.bias == "untied":
            shapes["b"] = self.out_shape
        return shapes

    def init_params(self, rng):
        """Fan-in scaled Gaussian kernel, :math:`K \\sim \\mathcal N(0, 1/(C_\\text{in} k_h k_w))`; small Gaussian bias."""
        shapes = self.param_shapes()
        fan_in = self.in_channels * prod(self.kernel_size)
        p = {"K": rng.standard_normal(shapes["K"]) / np.sqrt(fan_in)}
        if "b" in shapes:
            p["b"] = 0.1 * rng.standard_normal(shapes["b"])
        return p

    # ------------------------------------------------------------------ helpers
    def _kernel(self, params) -> np.ndarray:
        """The kernel as used in correlation form (flipped for ``mode="convolution"``)."""
        K = np.asarray(params["K"])
        if K.shape != self.geometry.kernel_shape:
            raise ShapeError(
                f"{self._name()}: expected parameter K of shape {self.geometry.kernel_shape}, received {K.shape}"
            )
        return K[:, :, ::-1, ::-1] if self.mode == "convolution" else K

    def _patches(self, A) -> np.ndarray:
        g = self.geometry
        return tp.extract_patches(A, g.kernel, g.stride, g.padding, g.dilation)  # (N, C, kh, kw, Ho, Wo)

    def _batch(self, A) -> np.ndarray:
        A = np.asarray(A)
        return A.reshape((-1,) + self.in_shape)

    # ------------------------------------------------------------------ forward
    def forward(self, A, params):
        A = np.asarray(A)
        if A.ndim != 4 or A.shape[1:] != self.in_shape:
            raise ShapeError(
                f"{self._name()}: expected an input batch of shape (N, {', '.join(map(str, self.in_shape))}), "
                f"received {A.shape}"
            )
        Kc = self._kernel(params)
        Z = np.tensordot(self._patches(A), Kc, axes=([1, 2, 3], [1, 2, 3]))  # (N, Ho, Wo, Co)
        Z = Z.transpose(0, 3, 1, 2)
        if self.bias == "tied":
            Z = Z + np.asarray(params["b"])[None, :, None, None]
        elif self.bias == "untied":
            Z = Z + np.asarray(params["b"])[None]
        return Z

    # ------------------------------------------------------------------ Jacobians
    def jac_input(self, a, o, params) -> Operator:
        r""":math:`\mathbf J_{\mathbf a}\mathbf z = \operatorname{Toep}(\mathbf K)` (Damadi Prop. 2), sparse ``(out_size, in_size)``.

        For a SymPy kernel (object array) the exact matrix is returned as a
        :class:`~jacobian_bp.backend.operators.Dense` with SymPy entries.
        """
        g = self.geometry
        K = np.asarray(params["K"])
        if _is_symbolic(K):
            return DenseOp(tp.toeplitz_sympy(K, g.in_shape, g.stride, g.padding, g.dilation, self.mode, "row", self._name()))
        self._kernel(params)  # shape check
        T = tp.toeplitz(K, g.in_shape, g.stride, g.padding, g.dilation, self.mode, "row", self._name())
        return Sparse(T, "toeplitz")

    def jac_params(self, a, o, params, order="C") -> dict[str, Operator]:
        r"""Jacobians w.r.t. ``K`` (:math:`\mathbf I_{C_\text{out}}\otimes\mathbf P`, columns permuted for ``order="F"``) and ``b``."""
        if order not in ("C", "F"):
            raise DataError(f"{self._name()}: vec order must be 'C' or 'F', got {order!r}")
        g = self.geometry
        a = np.asarray(a).reshape(self.in_shape)
        P = tp.patch_matrix(a, g.kernel, g.stride, g.padding, g.dilation, self.mode)
        exact = _is_symbolic(P) or any(_is_symbolic(np.asarray(v)) for v in params.values())
        JK: Operator = Kron(Identity(g.out_channels), DenseOp(P))
        if order == "F":
            # J_F = J_C Π: column t of the F-ravel is kernel entry perm[t] of the C-ravel
            idx = np.unravel_index(np.arange(g.kernel_size), g.kernel_shape, order="F")
            JK = Product([JK, _permutation(np.ravel_multi_index(idx, g.kernel_shape, order="C"), exact)])
        out = {"K": JK}
        Co, Ho, Wo = self.out_shape
        if self.bias == "tied":
            out["b"] = Kron(Identity(Co), DenseOp(np.ones((Ho * Wo, 1), dtype=np.int64 if exact else np.float64)))
        elif self.bias == "untied":
            if order == "C":
                out["b"] = Identity(Co * Ho * Wo)
            else:
                idx = np.unravel_index(np.arange(Co * Ho * Wo), self.out_shape, order="F")
                out["b"] = _permutation(np.ravel_multi_index(idx, self.out_shape, order="C"), exact)
        return out

    # ------------------------------------------------------------------ batched products
    def vjp_input(self, A, O, G, params):
        r"""Rows :math:`\mathbf g_i^\top\operatorname{Toep}(\mathbf K)` for a batch (transposed convolution), ``(N, in_size)``.

        Computed as :math:`\partial\tilde{\mathbf a}_{c,i s+u d,j s+v d} \mathrel{+}= \sum_o g_{o,i,j} K_{o,c,u,v}`,
        one strided slice update per kernel offset ``(u, v)`` -- never per output position.
        """
        g = self.geometry
        Kc = self._kernel(params)
        G = np.asarray(G).reshape((-1,) + self.out_shape)
        N = G.shape[0]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = g.kernel, g.stride, g.padding, g.dilation
        Ho, Wo = g.out_hw
        H, W = g.in_hw
        dP = np.tensordot(G, Kc, axes=([1], [0]))  # (N, Ho, Wo, C, kh, kw)
        dX = np.zeros((N, g.in_channels, H + 2 * ph, W + 2 * pw), dtype=np.result_type(dP, float))
        for u in range(kh):
            for v in range(kw):
                dX[:, :, u * dh: u * dh + sh * (Ho - 1) + 1: sh, v * dw: v * dw + sw * (Wo - 1) + 1: sw] += \
                    dP[:, :, :, :, u, v].transpose(0, 3, 1, 2)
        return dX[:, :, ph: ph + H, pw: pw + W].reshape(N, -1)

    def left_jac_input(self, A, O, P, params):
        """Batched :math:`\\mathbf P_i \\operatorname{Toep}(\\mathbf K)` for ``P`` ``(N, k, out_size)``; the Jacobian does not depend on ``a``."""
        P = np.asarray(P)
        N, k = P.shape[:2]
        return self.vjp_input(None, None, P.reshape(N * k, -1), params).reshape(N, k, -1)

    def vjp_params(self, A, O, G, params):
        r"""Batch sums :math:`\sum_i (\mathbf J_{\mathbf K}\mathbf z_i)^\top\mathbf g_i` and :math:`\sum_i (\mathbf J_{\mathbf b}\mathbf z_i)^\top\mathbf g_i`, C order, flat.

        :math:`\partial K_{o,c,u,v} = \sum_{n,i,j} g_{n,o,i,j}\,\tilde a_{n,c,i s+u d,j s+v d}` (im2col + ``tensordot``),
        flipped back in ``"convolution"`` mode.
        """
        A = self._batch(A)
        G = np.asarray(G).reshape((-1,) + self.out_shape)
        dK = np.tensordot(G, self._patches(A), axes=([0, 2, 3], [0, 4, 5]))  # (Co, C, kh, kw)
        if self.mode == "convolution":
            dK = dK[:, :, ::-1, ::-1]
        out = {"K": np.ascontiguousarray(dK).ravel()}
        if self.bias == "tied":
            out["b"] = G.sum(axis=(0, 2, 3))
        elif self.bias == "untied":
            out["b"] = G.sum(axis=0).ravel()
        return out

    # ------------------------------------------------------------------ forward mode
    def jvp_input(self, A, O, T, params):
        r""":math:`\operatorname{conv}(\dot{\mathbf a};\mathbf K)` (linear in the input: the bias left out), ``(N, out_size)``."""
        A = np.asarray(A)
        zero_bias = {k: (np.zeros_like(v) if k == "b" else v) for k, v in params.items()}
        return self.forward(T.reshape(A.shape), zero_bias).reshape(A.shape[0], -1)

    def jvp_params(self, A, O, dparams, params):
        r""":math:`\operatorname{conv}(\mathbf a;\dot{\mathbf K}) + \dot{\mathbf b}` (linear in the kernel, affine in the bias), ``(N, out_size)``."""
        A = np.asarray(A)
        return self.forward(A, dparams).reshape(A.shape[0], -1)

    # ------------------------------------------------------------------ torch twin
    def torch_forward(self, A, params):
        """torch.nn.functional.conv2d (cross-correlation); true convolution flips the kernel."""
        import torch

        K = params["K"]
        if self.mode == "convolution":
            K = torch.flip(K, dims=(-2, -1))
        Z = torch.nn.functional.conv2d(A, K, None, self.stride, self.padding, self.dilation)
        if self.bias == "tied":
            Z = Z + params["b"][None, :, None, None]
        elif self.bias == "untied":
            Z = Z + params["b"][None]
        return Z

    # ------------------------------------------------------------------ text
    def describe(self):
        kh, kw = self.kernel_size
        parts = [f"conv2d {self.in_channels or '?'}->{self.out_channels} k{kh}x{kw}"]
        if self.stride != (1, 1):
            parts.append(f"s{self.stride[0]}x{self.stride[1]}")
        if self.padding != (0, 0):
            parts.append(f"p{self.padding[0]}x{self.padding[1]}")
        if self.dilation != (1, 1):
            parts.append(f"d{self.dilation[0]}x{self.dilation[1]}")
        if self.mode == "convolution":
            parts.append("true-conv")
        parts.append(f"bias={self.bias}")
        return " ".join(parts)

    def latex_name(self):
        return r"\operatorname{conv2d}"

    def latex_forward(self, nt, l, a_prev, weight_layout):
        r""":math:`\mathbf K\star\mathbf a + \mathbf b`."""
        K = nt.weight("K", l)
        return rf"{K} \star {a_prev}" + (rf" + {nt.bias(l)}" if "b" in self.param_shapes() else "")

    def latex_input_jacobian(self, params_latex):
        r""":math:`\operatorname{Toep}(\mathbf K)` (Damadi Prop. 2)."""
        return rf"\operatorname{{Toep}}({params_latex['K']})"

    def block_param_jacobian(self, alg, local, order):
        r""":math:`\mathbf I_{C}\otimes\mathbf P(\mathbf a)` (im2col; times the vec permutation for ``order="F"``),
        :math:`\mathbf I_C\otimes\mathbf 1_{H_\text{out}W_\text{out}}` (tied bias), :math:`\mathbf I` or a permutation (untied)."""
        Co = self.out_channels
        n = self.out_size
        HoWo = n // Co
        if local == "K":
            P = alg.patches(HoWo, self.geometry.kernel_size // Co)
            if P is None:
                return None
            J = alg.kron(alg.identity(Co), P)
            if order == "C":
                return J
            Pi = alg.permutation(local)
            return None if Pi is None else alg.matmul(J, Pi)
        if self.bias == "tied":
            return alg.kron(alg.identity(Co), alg.ones(HoWo))  # one bias per filter, broadcast over H_out W_out
        if order == "C":
            return alg.identity(n)  # untied bias, stacked like z
        return alg.permutation(local)
