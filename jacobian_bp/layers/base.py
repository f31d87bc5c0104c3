r"""The layer protocol shared by every layer family (after BackPACK's per-layer derivative classes).

A layer maps one sample :math:`\mathbf a \in \mathbb R^{\text{in\_shape}}` to
:math:`\mathbf o \in \mathbb R^{\text{out\_shape}}`.  Arrays are *batch-first and
shaped* inside the engine (``(N, *in_shape)``); vectors of a single sample are
flattened in row-major (C) order, which for an image ``X`` is Damadi's
:math:`\operatorname{Vec}(\mathbf X^\top)` (rows stacked).

Methods every layer implements
------------------------------
``build(in_shape, convention) -> out_shape``
    Validate the input shape (``ShapeError`` naming the layer, the expected and the
    received shape) and fix the output shape.
``forward(A, params) -> O``
    Batch forward pass, ``A`` of shape ``(N, *in_shape)``.
``jac_input(a, o, params) -> Operator``
    :math:`\mathbf J_{\mathbf a}\mathbf o` for one sample, ``(out_size, in_size)``.
``jac_params(a, o, params, order) -> dict[str, Operator]``
    :math:`\mathbf J_{\operatorname{vec}\boldsymbol\theta_j}\mathbf o` for each local parameter
    ``θ_j`` in its *canonical* shape, with ``vec`` stacking rows (``order="C"``) or
    columns (``order="F"``).
``vjp_input(A, O, G, params)`` / ``vjp_params(A, O, G, params)``
    Batched products with the transposed Jacobians (used by the operator-mode
    gradient); the defaults loop over samples and call the Jacobians.

Parametric layers (Dense, Conv2d) open a new *stage* ``l`` of the network:
:math:`\mathbf z^{[l]}` is their output, and the parameter-free layers that follow
(activations, pooling, flatten) make :math:`\mathbf a^{[l]} = \mathbf f^{[l]}(\mathbf z^{[l]})`.
"""
from __future__ import annotations

from math import prod
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..backend.operators import Operator


class Layer:
    """Base class; see the module docstring for the protocol."""

    kind: str = "layer"
    param_names: tuple[str, ...] = ()
    parametric: bool = False
    #: a vector activation (softmax, radial sigmoid) or elementwise (diagonal Jacobian)
    elementwise: bool = False

    def __init__(self) -> None:
        self.in_shape: tuple[int, ...] | None = None
        self.out_shape: tuple[int, ...] | None = None
        self.label: str = ""  # set by the network: "layer 2 (dense)"

    # ------------------------------------------------------------------ protocol
    def build(self, in_shape: tuple[int, ...], convention: Any = None) -> tuple[int, ...]:
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = self.in_shape
        return self.out_shape

    @property
    def in_size(self) -> int:
        return prod(self.in_shape)

    @property
    def out_size(self) -> int:
        return prod(self.out_shape)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {}

    def forward(self, A: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def jac_input(self, a: np.ndarray, o: np.ndarray, params: dict[str, np.ndarray]) -> Operator:  # pragma: no cover
        raise NotImplementedError

    def jac_params(self, a: np.ndarray, o: np.ndarray, params: dict[str, np.ndarray], order: str = "C") -> dict[str, Operator]:
        return {}

    def vjp_input(self, A: np.ndarray, O: np.ndarray, G: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        """Rows ``G[i]`` (flat, ``out_size``) times :math:`\\mathbf J_{\\mathbf a_i}\\mathbf o_i`; returns ``(N, in_size)``."""
        return np.stack([self.jac_input(A[i], O[i], params).rmatvec(G[i]) for i in range(G.shape[0])])

    def vjp_params(self, A: np.ndarray, O: np.ndarray, G: np.ndarray, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Sum over the batch of :math:`(\\mathbf J_{\\theta}\\mathbf o_i)^\\top \\mathbf g_i`, canonical (C) vec order."""
        out: dict[str, np.ndarray] = {}
        for i in range(G.shape[0]):
            for k, J in self.jac_params(A[i], O[i], params, "C").items():
                out[k] = out.get(k, 0) + J.rmatvec(G[i])
        return out

    def left_jac_input(self, A: np.ndarray, O: np.ndarray, P: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        r"""Batched :math:`\mathbf P_i\,\mathbf J_{\mathbf a_i}\mathbf o_i` for ``P`` of shape ``(N, k, out_size)``.

        Returns ``(N, k, in_size)``.  This is one step of Damadi Alg. 1 from the left
        (reverse mode); the default loops over samples.
        """
        return np.stack([self.jac_input(A[i], O[i], params).left_matmat(P[i]) for i in range(P.shape[0])])

    # ------------------------------------------------------------------ helpers
    def describe(self) -> str:
        return self.kind

    def latex_name(self) -> str:
        return self.kind

    def _name(self) -> str:
        return self.label or self.kind

    def check_input(self, A: np.ndarray, batched: bool = True) -> np.ndarray:
        A = np.asarray(A)
        expect = self.in_shape
        got = A.shape[1:] if batched else A.shape
        if tuple(got) != tuple(expect):
            raise ShapeError(
                f"{self._name()}: expected input of shape {expect}"
                f"{' per sample' if batched else ''}, received {tuple(got)}"
            )
        return A

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"
