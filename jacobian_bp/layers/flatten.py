r"""Flatten: reshape a per-sample array to a vector, row-major.

:math:`\mathbf o = \operatorname{vec}_r(\mathbf A)` for :math:`\mathbf A \in \mathbb R^{C\times H\times W}`
(any shape), i.e. channels one after the other, each channel row by row -- Damadi's
:math:`\operatorname{Vec}(\mathbf X^\top)` per channel.  Because the engine already
flattens every per-sample array row-major, the Jacobian is the identity
:math:`\mathbf I_{CHW}`: flatten changes the *shape* of the space, not the coordinates.
"""
from __future__ import annotations

from math import prod

import numpy as np

from ..errors import ShapeError, SpecError
from ..backend.operators import Identity, Operator
from .base import Layer
from .registry import register

__all__ = ["Flatten"]


@register("flatten")
class Flatten(Layer):
    r"""Reshape ``(C, H, W)`` (or any per-sample shape) to ``(C*H*W,)``; Jacobian :math:`\mathbf I`."""

    kind = "flatten"
    jacobian_is_identity = True

    def prose(self) -> str:
        return "flatten (identity on the row-major vector)"

    @classmethod
    def protocol_examples(cls):
        return [({}, (2, 3, 4)), ({}, (6,))]

    #: the ``torch.nn`` classes this family imports (:func:`jacobian_bp.uses.torch_import.from_torch`)
    torch_module_types: tuple[str, ...] = ("Flatten",)

    @classmethod
    def from_torch_module(cls, module, in_shape) -> tuple[dict, dict[str, np.ndarray]]:
        """``torch.nn.Flatten()`` (``start_dim=1, end_dim=-1``: the whole sample, row-major) → no kwargs."""
        if module.start_dim != 1 or module.end_dim != -1:
            raise SpecError(f"torch.nn.Flatten(start_dim={module.start_dim}, end_dim={module.end_dim}): only the "
                            "default start_dim=1, end_dim=-1 (flatten the whole sample) is supported")
        return {}, {}

    def build(self, in_shape, convention=None):
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) < 1 or any(s < 1 for s in in_shape):
            raise ShapeError(f"{self._name()}: expected a non-empty per-sample input shape, received {in_shape}")
        self.in_shape = in_shape
        self.out_shape = (prod(in_shape),)
        return self.out_shape

    def forward(self, A, params):
        A = np.asarray(A)
        if A.shape[1:] != self.in_shape:
            raise ShapeError(
                f"{self._name()}: expected an input batch of shape (N, {', '.join(map(str, self.in_shape))}), "
                f"received {A.shape}"
            )
        return A.reshape(A.shape[0], -1)

    def jac_input(self, a, o, params) -> Operator:
        return Identity(self.out_size)

    def vjp_input(self, A, O, G, params):
        G = np.asarray(G)
        return G.reshape(G.shape[0], -1)

    def left_jac_input(self, A, O, P, params):
        return np.asarray(P)

    def jvp_input(self, A, O, T, params):
        """Flatten is linear: the tangent is flattened like the input, ``(N, out_size)``."""
        A = np.asarray(A)
        return self.forward(T.reshape(A.shape), {})

    def torch_forward(self, A, params):
        return A.reshape(A.shape[0], -1)

    def describe(self):
        return f"flatten {'x'.join(map(str, self.in_shape or ()))}->{self.out_size if self.in_shape else '?'}"

    def latex_name(self):
        return r"\operatorname{vec}"
