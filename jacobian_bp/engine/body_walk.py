r"""Walking the body :math:`\mathbf g` of a composite block, shared by its symbolic and LaTeX forms.

A block (:class:`~jacobian_bp.layers.residual.Residual`) states its body through ``sub_stages()``:
parameter-free first layers, then sub-stages ``k = 1 … K`` (``ss.index``), each a layer making
:math:`\mathbf z^{[l.k]}` followed by its activations.  By the chain rule (Algorithm 1 inside the block)

.. math::
    \mathbf J_{\mathbf z^{[l.k]}}\mathbf g = P_K\, J_K\, P_{K-1} \cdots J_{k+1}\, P_k,

with :math:`P_j` the factors of sub-stage ``j``'s activations and :math:`J_j` its input factor
:math:`\mathbf J_{\mathbf a^{[l.j-1]}}\mathbf z^{[l.j]}`.  The factor objects (SymPy matrices in
:mod:`jacobian_bp.symbolic.block_body`, LaTeX expressions in :mod:`jacobian_bp.render.body_latex`) are the
subclass's; the order of the walk is here, once.
"""
from __future__ import annotations


class BodyWalk:
    """Mixin: the chain order of a block's body.  The subclass sets ``self.subs`` (the block's sub-stages, with
    ``index`` and ``names``) and defines ``post_factors(k)`` and ``input_factor(k)`` (lists / one factor)."""

    subs: list

    def chain_above(self, k: int) -> list:
        r"""The factors of :math:`\mathbf J_{\mathbf z^{[l.k]}}\mathbf g`, left to right (empty: the identity)."""
        facs: list = []
        for j in range(len(self.subs), k, -1):
            facs += self.post_factors(j) + [self.input_factor(j)]
        return facs + self.post_factors(k)

    def owner(self, local: str) -> tuple:
        """``(sub-stage index, local name in the sub-layer)`` of the block's parameter ``local``."""
        for ss in self.subs:
            for sub, outer in ss.names.items():
                if outer == local:
                    return ss.index, sub
        raise KeyError(local)  # pragma: no cover - entries come from the block's own names

    def post_factors(self, k: int) -> list:  # pragma: no cover - the subclass's
        raise NotImplementedError

    def input_factor(self, k: int):  # pragma: no cover - the subclass's
        raise NotImplementedError
