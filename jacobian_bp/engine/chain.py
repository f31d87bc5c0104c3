r"""The left factor :math:`\mathbf P_l = \mathbf J_{\mathbf z^{[l]}}\mathbf z^{[L]}` of Algorithm 1, one sample.

Every block of :math:`\mathbf J_\theta\mathbf z^{[L]}` for the parameters of stage :math:`l`
is :math:`\mathbf P_l\,\mathbf J_{\theta_l}\mathbf z^{[l]}` (Damadi Alg. 1 line 3, corrected:
see :mod:`jacobian_bp.engine.network`), with

.. math::

   \mathbf P_L = \mathbf I_{n_L},\qquad
   \mathbf P_{l} = \mathbf P_{l+1}\,\mathbf J_{\mathbf a^{[l]}}\mathbf z^{[l+1]}\,
                   \mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}
   \in\mathbb R^{n_L\times n_l}.

:class:`LeftChain` keeps :math:`\mathbf P_l` as that chain of layer Jacobians: a link to
:math:`\mathbf P_{l+1}` (its *parent*) and the layer steps in between.  Building it costs
nothing; its ``n_L × n_l`` value is formed the first time it is needed (materializing,
applying or transposing a block) and then kept, so the W and b blocks of one stage, and
every stage below, share one evaluation of each link -- the reverse-mode order of Alg. 1.
:attr:`LeftChain.factors` gives the typed layer Jacobians themselves (``W``,
``diag f'(z)``, Toeplitz, pooling selections), for display and for the symbolic backend.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import numpy as np
import sympy

from ..backend.operators import Dense, Operator, Product

__all__ = ["LeftChain", "ChainStep"]

#: One step of a link: ``(layer, A, O, params)`` with the layer's input ``A`` and output
#: ``O`` of one sample, each with a leading batch axis of length 1.
ChainStep = tuple


class LeftChain(Operator):
    r""":math:`\mathbf P_l = \mathbf P_{l+1}\,\mathbf J_1\cdots\mathbf J_k` for one sample, evaluated on demand.

    Parameters
    ----------
    parent : LeftChain or None
        :math:`\mathbf P_{l+1}`; ``None`` for the link below :math:`\mathbf P_L = \mathbf I`.
    steps : sequence of ``(layer, A, O, params)``
        The layers between :math:`\mathbf z^{[l]}` and :math:`\mathbf z^{[l+1]}`, left to right
        (the parametric layer :math:`l+1` first, then the activations of stage :math:`l`
        from the last to the first).  ``A`` and ``O`` are the layer's input and output,
        shaped ``(1, *shape)``.
    n_out : int
        :math:`n_L`, the number of rows.
    symbolic : bool
        True when the entries are SymPy expressions (object arrays).
    value : ndarray, optional
        :math:`\mathbf P_l` when it is already known (e.g. formed for a whole batch at once
        by :meth:`Network._left_products`); it must equal the chain's product.
    """

    structure = "product"

    def __init__(self, parent: "LeftChain | None", steps: Sequence[ChainStep], n_out: int, symbolic: bool = False,
                 value: np.ndarray | None = None):
        if not steps:
            raise ValueError("LeftChain: a link needs at least one layer step")
        self.parent = parent
        self.steps = list(steps)
        self.symbolic = bool(symbolic or (parent is not None and parent.symbolic))
        rightmost = self.steps[-1][0]
        self.shape = (int(n_out), int(rightmost.in_size))
        self._value: np.ndarray | None = None
        if value is not None:
            value = np.asarray(value)
            if value.shape != self.shape:
                raise ValueError(f"LeftChain: expected a value of shape {self.shape}, received {value.shape}")
            self._value = value
        self._factors: list[Operator] | None = None

    # ------------------------------------------------------------------ evaluation
    def value(self) -> np.ndarray:
        r"""The ``n_L × n_l`` matrix :math:`\mathbf P_l` (computed once, read-only).

        The links above that are not yet evaluated are evaluated first, top down, in a loop
        (no recursion: a network of any depth works under Python's recursion limit).
        """
        if self._value is None:
            pending = []
            link = self
            while link is not None and link._value is None:
                pending.append(link)
                link = link.parent
            for link in reversed(pending):
                link._evaluate()
        return self._value

    def _evaluate(self) -> None:
        """Form this link's value from its parent's (which must be evaluated already)."""
        if self.parent is not None:
            cur = self.parent._value[None]
            steps = self.steps
        else:
            layer, A, O, params = self.steps[0]
            if not self.symbolic and layer.affine_weight_name is not None:
                # P_L = I, so the first factor J_{a[L-1]} z[L] = W[L] is the product itself
                cur = np.asarray(params[layer.affine_weight_name])[None]
                steps = self.steps[1:]
            else:
                n = self.shape[0]
                eye = np.eye(n, dtype=np.int64).astype(object) if self.symbolic else np.eye(n)
                cur = eye[None]
                steps = self.steps
        for layer, A, O, params in steps:
            cur = layer.left_jac_input(A, O, cur, params)
        val = np.asarray(cur[0]).reshape(self.shape)
        val.flags.writeable = False
        self._value = val

    @property
    def evaluated(self) -> bool:
        """Whether :meth:`value` has been formed."""
        return self._value is not None

    @property
    def factors(self) -> list[Operator]:
        r"""The typed layer Jacobians :math:`\mathbf J_{\mathbf a^{[L-1]}}\mathbf z^{[L]}, \dots, \mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}`, left to right."""
        if self._factors is None:
            pending = []
            link = self
            while link is not None and link._factors is None:  # a loop, not recursion (any depth)
                pending.append(link)
                link = link.parent
            for link in reversed(pending):
                own = [layer.jac_input(A[0], O[0], params) for layer, A, O, params in link.steps]
                link._factors = (link.parent._factors if link.parent is not None else []) + own
        return list(self._factors)

    def as_product(self) -> Product:
        """The chain as an explicit :class:`~jacobian_bp.backend.operators.Product` of its layer Jacobians."""
        return Product(self.factors)

    # ------------------------------------------------------------------ Operator protocol
    def _as_dense(self) -> Dense:
        return Dense(self.value())

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        return self._as_dense().matmat(X)

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        return self._as_dense().rmatmat(X)

    def left_matmat(self, M):
        return self._as_dense().left_matmat(M)

    @property
    def T(self) -> Operator:
        return self._as_dense().T

    def _dense(self) -> np.ndarray:
        if self.symbolic:
            raise TypeError("LeftChain.to_dense: symbolic entries; use to_sympy()")
        return self.value()

    def _dense_into(self, out: np.ndarray) -> None:
        out[...] = self._dense()

    def _dense_tasks(self, out: np.ndarray) -> list:
        self._dense()  # formed now, copied by the task
        return [(out.size, partial(self._dense_into, out), False)]

    def _sympy(self) -> sympy.Matrix:
        return self._as_dense()._sympy()

    def __repr__(self) -> str:
        n, link = 0, self
        while link is not None:
            n, link = n + len(link.steps), link.parent
        state = "evaluated" if self.evaluated else "not yet evaluated"
        return f"LeftChain({self.shape[0]}x{self.shape[1]}, {n} layer factors, {state})"
