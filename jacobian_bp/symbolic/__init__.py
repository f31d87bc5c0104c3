r"""Symbolic engine: exact Jacobians in SymPy, readable gradients, block-level chains, proofs.

The numeric engine's layers and :class:`~jacobian_bp.engine.network.Network` also run on NumPy
object arrays of SymPy expressions; this subpackage builds on that:

* :mod:`~jacobian_bp.symbolic.networks` -- :class:`SymbolicNetwork`: symbols named as in
  the documents (``x_{i}``, ``y_{i}``, ``w^{[l]}_{ij}``, ``b^{[l]}_{i}``, real), exact
  Jacobians, substitution of numbers for some symbols;
* :mod:`~jacobian_bp.symbolic.intermediates` -- the forward pass with named
  :math:`z^{[l]}_i`, :math:`a^{[l]}_i`, :math:`\hat y_i` and their definitions;
* :mod:`~jacobian_bp.symbolic.gradients` -- :func:`named_gradient`: the gradient with
  named :math:`\delta^{[l]}_i`, expandable on request; :func:`chain_gradient`: Damadi's
  explicit chain with the expanded :math:`\mathbf J_\theta\mathbf z^{[L]}`;
* :mod:`~jacobian_bp.symbolic.identities` -- exact proofs: last-layer deltas (Damadi
  Table 1, Park Thm. 6.1) and chain = closed form (Ganev Prop. 3.1, Park Thm. 5.1);
* :mod:`~jacobian_bp.symbolic.blocks` -- :class:`BlockChain`: block-level
  :math:`\mathbf J_\theta\mathbf z^{[L]}` of any size (LeNet-300-100) with shapes, explicit
  entries under a size bound;
* :mod:`~jacobian_bp.symbolic.lambdify` -- compile gradients/Jacobians to NumPy (sparse
  when the structure is) and cross-check them with the numeric engine;
* :mod:`~jacobian_bp.symbolic.printing` -- LaTeX in the papers' notation (:math:`f'(z)`,
  :math:`\mathbf I_n`, :math:`^\top`).

Example
-------
>>> from jacobian_bp.symbolic import SymbolicNetwork, named_gradient
>>> g = named_gradient(SymbolicNetwork.from_spec("damadi-2layer"))
>>> g.params["W2"][0, 0]          # Damadi's W[2] is 5 x 3: input unit 1 -> output unit 1
\delta^{[2]}_{1}*a^{[1]}_{1}
"""
from .blocks import DEFAULT_MAX_ENTRIES, BlockChain, lenet_block_chain, matmul
from .errors import SizeBoundError, UndefinedSymbolError
from .gradients import NamedGradient, chain_gradient, expanded_delta, named_gradient
from .identities import (PAIRS, ExactIdentity, chain_identity, delta_chain_identity, delta_identity,
                         ganev_prop31, park_thm51, simplifies_to_zero)
from .intermediates import NamedForward, named_forward, substitute_definitions
from .lambdify import (LambdifiedGradient, LambdifiedMatrix, cross_check_gradient, cross_check_jacobian,
                       lambdify_gradient, lambdify_matrix, symbol_values)
from .loss_expressions import closed_form_delta, loss_expression, loss_latex
from .networks import SymbolicNetwork, symbol_array, symbol_name
from .printing import latex, readable

__all__ = [
    "readable",
    "SymbolicNetwork", "symbol_array", "symbol_name", "NamedForward", "named_forward", "substitute_definitions",
    "NamedGradient", "named_gradient", "chain_gradient", "expanded_delta", "ExactIdentity", "PAIRS",
    "delta_identity", "delta_chain_identity", "ganev_prop31", "park_thm51", "chain_identity", "simplifies_to_zero",
    "BlockChain", "lenet_block_chain", "matmul", "DEFAULT_MAX_ENTRIES", "LambdifiedGradient", "LambdifiedMatrix",
    "lambdify_gradient", "lambdify_matrix", "symbol_values", "cross_check_gradient", "cross_check_jacobian",
    "loss_expression", "closed_form_delta", "loss_latex", "latex", "SizeBoundError", "UndefinedSymbolError",
]
