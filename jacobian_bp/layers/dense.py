r"""Fully connected (affine) layer.

Canonical form (Ganev §2, Park eq. (1), PyTorch): :math:`\mathbf z = \mathbf W\mathbf a + \mathbf b`
with :math:`\mathbf W \in \mathbb R^{n_\text{out}\times n_\text{in}}`.  Damadi writes
:math:`\mathbf z = \mathbf W_D^\top \mathbf a + \mathbf b` with :math:`\mathbf W_D = \mathbf W^\top
\in \mathbb R^{n_\text{in}\times n_\text{out}}`; the network converts between the two
(:mod:`jacobian_bp.engine.conventions`).

Jacobians (one sample, ``n = n_out``):

* :math:`\mathbf J_{\mathbf a}\mathbf z = \mathbf W` (Damadi: :math:`\mathbf W_D^\top`), ``n x n_in``;
* :math:`\mathbf J_{\operatorname{vec}_r \mathbf W}\mathbf z = \mathbf I_n \otimes \mathbf a^\top`
  (rows of ``W`` stacked = columns of :math:`\mathbf W_D` stacked: Damadi §3.1, Fig. 4),
  :math:`\mathbf J_{\operatorname{vec}_c \mathbf W}\mathbf z = \mathbf a^\top \otimes \mathbf I_n`
  (columns of ``W`` stacked, MML 5.4), both ``n x (n n_in)``;
* :math:`\mathbf J_{\mathbf b}\mathbf z = \mathbf I_n`.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError, ShapeError, SpecError
from ..backend.operators import Dense as DenseOp, Identity, Kron
from .base import Layer
from .registry import register


class WeightBiasLayer(Layer):
    r"""Base of the layers with a weight :math:`\mathbf W` ``(out_features, in_features)`` and an optional bias
    :math:`\mathbf b` ``(out_features,)`` (:class:`Dense`, :class:`~jacobian_bp.layers.linear.Linear`): their shapes
    and random start :math:`\mathbf W\sim\mathcal N(0, 1/n_\text{in})`, :math:`\mathbf b\sim\mathcal N(0, 0.01)`."""

    out_features: int
    in_features: int
    bias: bool

    def param_shapes(self):
        shapes = {"W": (self.out_features, self.in_features)}
        if self.bias:
            shapes["b"] = (self.out_features,)
        return shapes

    def init_params(self, rng):
        p = {"W": rng.standard_normal((self.out_features, self.in_features)) / np.sqrt(self.in_features)}
        if self.bias:
            p["b"] = 0.1 * rng.standard_normal(self.out_features)
        return p


@register("dense")
class Dense(WeightBiasLayer):
    r"""Affine layer :math:`\mathbf z = \mathbf W \mathbf a + \mathbf b`.

    Parameters
    ----------
    out_features : int
        :math:`n_\text{out}`.
    in_features : int, optional
        :math:`n_\text{in}`; inferred from the previous layer when omitted.
    bias : bool
        Whether the layer has a bias :math:`\mathbf b` (default True).
    """

    kind = "dense"
    parametric = True
    affine_weight_name = "W"

    def __init__(self, out_features: int, in_features: int | None = None, bias: bool = True):
        super().__init__()
        for nm, v in (("out_features", out_features), ("in_features", in_features)):
            if (v is None and nm == "out_features") or (
                    v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) or v < 1)):
                raise SpecError(f"dense layer: {nm} must be a positive integer, received {v!r}")
        if not isinstance(bias, (bool, np.bool_)):
            raise SpecError(f"dense layer: bias must be a boolean (true/false), received {bias!r}")
        self.out_features = int(out_features)
        self.in_features = None if in_features is None else int(in_features)
        self.bias = bool(bias)
        self.param_names = ("W", "b") if self.bias else ("W",)

    def build(self, in_shape, convention=None):
        in_shape = tuple(in_shape)
        if len(in_shape) != 1:
            raise ShapeError(
                f"{self._name()}: expected a flat input vector (n_in,), received shape {in_shape}; "
                "insert a flatten layer before it"
            )
        if self.in_features is not None and in_shape[0] != self.in_features:
            raise ShapeError(
                f"{self._name()}: expected input of shape ({self.in_features},), received {in_shape}"
            )
        self.in_features = in_shape[0]
        self.in_shape = in_shape
        self.out_shape = (self.out_features,)
        return self.out_shape

    def forward(self, A, params):
        W = params["W"]
        # one sample: a matrix-vector product (BLAS gemv) is faster than a 1-row gemm
        Z = (W @ A[0])[None] if A.shape[0] == 1 and A.ndim == 2 else A @ W.T
        if self.bias:
            b = params["b"]
            if Z.dtype == np.float64 and getattr(b, "dtype", None) == np.float64:
                Z += b  # Z is a fresh product: added in place (the same sums, no second array)
            else:
                Z = Z + b
        return Z

    def jac_input(self, a, o, params):
        return DenseOp(params["W"])

    def jac_params(self, a, o, params, order="C"):
        a_row = DenseOp(np.asarray(a).reshape(1, -1))
        n = self.out_features
        if order == "C":
            jw = Kron(Identity(n), a_row)
        elif order == "F":
            jw = Kron(a_row, Identity(n))
        else:
            raise DataError(f"{self._name()}: vec order must be 'C' or 'F', got {order!r}")
        out = {"W": jw}
        if self.bias:
            out["b"] = Identity(n)
        return out

    def vjp_input(self, A, O, G, params):
        return G @ params["W"]

    def left_jac_input(self, A, O, P, params):
        # one BLAS call on the stacked rows (numpy's batched matmul is slow on broadcast views)
        P = np.ascontiguousarray(P)
        N, k, _ = P.shape
        return (P.reshape(N * k, -1) @ params["W"]).reshape(N, k, -1)

    def vjp_params(self, A, O, G, params):
        out = {"W": (G.T @ A).ravel()}
        if self.bias:
            out["b"] = G.sum(axis=0)
        return out

    def jvp_input(self, A, O, T, params):
        r""":math:`\dot{\mathbf z} = \mathbf W\dot{\mathbf a}` for every sample, ``(N, n_out)``."""
        N = A.shape[0]
        return T.reshape(N, -1) @ params["W"].T

    def jvp_params(self, A, O, dparams, params):
        r""":math:`\dot{\mathbf z} = \dot{\mathbf W}\mathbf a + \dot{\mathbf b}` for every sample, ``(N, n_out)``."""
        out = A @ dparams["W"].T
        if "b" in dparams:
            out = out + dparams["b"]
        return out

    def torch_forward(self, A, params):
        r"""``torch.nn.functional.linear`` (:math:`\mathbf W\mathbf a + \mathbf b`)."""
        import torch

        return torch.nn.functional.linear(A, params["W"], params.get("b"))

    @classmethod
    def protocol_examples(cls):
        return [({"out_features": 3}, (4,)), ({"out_features": 2, "bias": False}, (5,))]

    #: the ``torch.nn`` classes this family imports (:func:`jacobian_bp.uses.torch_import.from_torch`)
    torch_module_types: tuple[str, ...] = ("Linear",)

    @classmethod
    def from_torch_module(cls, module, in_shape) -> tuple[dict, dict[str, np.ndarray]]:
        r"""``torch.nn.Linear`` → (constructor kwargs, ``{"W": weight, "b": bias}``) as float64 arrays.

        torch's ``weight`` is :math:`\mathbf W\in\mathbb R^{n_\text{out}\times n_\text{in}}` with
        :math:`\mathbf z = \mathbf W\mathbf a + \mathbf b`: the canonical layout, unchanged.
        """
        if len(tuple(in_shape)) != 1:
            raise SpecError(f"torch.nn.Linear({module.in_features}, {module.out_features}): expected a flat input "
                            f"(n_in,) per sample, received shape {tuple(in_shape)}; insert torch.nn.Flatten() before it")
        params = {"W": module.weight.detach().cpu().double().numpy().copy()}
        if module.bias is not None:
            params["b"] = module.bias.detach().cpu().double().numpy().copy()
        return ({"out_features": int(module.out_features), "in_features": int(module.in_features),
                 "bias": module.bias is not None}, params)

    # ------------------------------------------------------------------ LaTeX and block facts
    def latex_describe(self):
        return rf"dense ${self.in_features}\to {self.out_features}$"

    def latex_forward(self, nt, l, a_prev, weight_layout):
        r""":math:`\mathbf W^\top\mathbf a + \mathbf b` (Damadi, ``in_out``) or :math:`\mathbf W\mathbf a + \mathbf b`."""
        W = nt.weight("W", l)
        Wa = rf"{nt.T(W)}{a_prev}" if weight_layout == "in_out" else rf"{W}{a_prev}"
        return Wa + (rf" + {nt.bias(l)}" if self.bias else "")

    def block_param_jacobian(self, alg, local, order):
        r""":math:`\mathbf I_n\otimes\mathbf a^\top` (rows of ``W`` stacked), :math:`\mathbf a^\top\otimes\mathbf I_n` (columns), :math:`\mathbf I_n` for ``b``."""
        n = self.out_features
        if local == "b":
            return alg.identity(n)
        aT = alg.input_row()
        return alg.kron(alg.identity(n), aT) if order == "C" else alg.kron(aT, alg.identity(n))

    def block_param_gradient(self, alg, local, order, delta):
        r"""Mixed-product rule: :math:`(\mathbf I\otimes\mathbf a^\top)^\top\boldsymbol\delta = \boldsymbol\delta\otimes\mathbf a`; :math:`\boldsymbol\delta` for ``b``."""
        if local == "b":
            return delta
        a = alg.input_column()
        return alg.kron(delta, a) if order == "C" else alg.kron(a, delta)

    def describe(self):
        return f"dense {self.in_features}->{self.out_features}"
