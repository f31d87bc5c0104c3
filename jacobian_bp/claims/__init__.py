r"""Claims about gradients and Jacobians, checked against the engine, with a diagnosis.

A *claim* states a formula -- a gradient, a delta, a Jacobian, a forward quantity,
a dimension -- the way a textbook prints it, and the checker decides whether it is
true:

* **holds** -- equal to the truth on every instance (exactly in SymPy, or to float64
  tolerance on random instances of several architectures);
* **fails** -- well typed but wrong on some instance (or non-finite);
* **ill-typed** -- it cannot be evaluated as written: a shape mismatch, a quantity the
  network lacks (``W[0]``, ``z[3]`` of a two-layer network), an exception.

For every claim that does not hold, the checker *diagnoses* it by testing candidate
corrections and reporting those that make it hold on every instance:

==========================  ==========================================================
mistake                     candidate correction
==========================  ==========================================================
sign flip                   ``-C``
transpose                   ``C^T``, or one operand transposed (``a`` for ``a^T``)
missing / extra factor      ``c C`` for c in 2, 1/2, N, 1/N, ... (1/N vs N = reduction)
Kronecker / vec order       ``B ⊗ A`` for ``A ⊗ B``; ``vec`` rows vs columns; rows or
                            columns of ``C`` permuted by a commutation matrix
layer index shifted         one access ``W[l-1]`` -> ``W[l]`` (or ``a[l]`` -> ``a[l-1]``, ...)
output activation           ``σ_L`` applied at ``z[l]`` -> ``σ_l``
reduction mismatch          an extra batch axis summed / averaged
wrong axis                  a reduction (e.g. softmax's sum) over axis 1 -> axis 0
θ block order               the per-layer blocks of θ in the opposite order
f′(a) for f′(z)             ``a[l]`` read as ``z[l]`` where a derivative is taken at it
σ′ counted twice            a factor ``dsigma``/``fprime``/``Jac`` dropped (δ already has it)
another activation's σ′     the formula holds for another hidden/output activation
chain rule order            the operands of one ``@`` swapped, or every (alternate) one
symmetry assumed            a square operand transposed (``W`` for ``Wᵀ``)
normalizer                  ``c C`` for c in K, 1/K, N·K, 1/(N·K), K/N, ... (K = n_L)
sign inside the argument    ``σ(z)`` for ``σ(−z)`` (``z[l]`` or a σ call's argument negated)
==========================  ==========================================================

plus any claim-specific :class:`Correction` the author supplies (e.g. the corrected
formula of an erratum), which is verified the same way.  Every candidate that makes the
claim hold is verified again on fresh instances (other seeds,
:attr:`Explanation.verified`) and listed most specific first (:data:`MISTAKE_PRIORITY`);
when none fits, :attr:`CheckResult.diagnosis_note` says ``"no known mistake fits"``.

Settings by knob
----------------
:class:`Setting` takes every convention knob directly -- ``weight_layout``, ``vec_order``,
``theta_order``, ``batch_axis``, ``reduction``, ``mse_scale``, ``mse_reduce_outputs``,
``relu_at_zero`` (:data:`KNOBS`) -- on top of a preset (a shorthand), or of no preset at all
(``convention=None``: neutral defaults): CS231n's ``XW + b`` is
``Setting(None, weight_layout="in_out", reduction="mean")``, Nielsen's ½‖·‖² is
``Setting(None, mse_scale=0.5)``.
``Setting(at_kink=k)`` puts k units of every hidden layer exactly at the kink (z = 0), so that a
claim such as "ReLU′(0) = 0 in PyTorch" is tested at 0 (``relu_at_zero`` states the convention).
The targets are listed, with their meaning and shape, by :func:`targets`.
``Setting(points=[{"x": ..., "W1": ..., "label": "W1 symmetric"}])`` also judges a claim at given inputs and
parameters (a symmetric weight, ties in a pooling window, z = 0 at ReLU's kink), validated when the setting is made.

Any layer
---------
``Setting(None, network=[{"type": "dense", "out_features": 5}, {"type": "tanh"}, {"type": "layer_norm"},
{"type": "dense", "out_features": 3}], input_shape=4)`` checks claims on any network of registered layers
(normalization, attention, recurrent, residual, convolution, pooling).  A claim reads layer ``l``'s parameters by
their own names (``q.gamma[l]``, ``q.W_V[l]``, ``q.W_hh[l]``; ``q.W_1[l]`` for a residual block's ``W.1``,
``q.K_[l]`` for a kernel ``K``), its input and output in their shapes (``q.inp[l]``, ``q.out[l]``, ``q.dout[l]``
:math:`=\nabla_{\mathbf z^{[l]}}\ell`; batches ``q.Inp``, ``q.Out``, ``q.dOut``) and the intermediates the layer
exposes (``q.xhat``, ``q.std``, ``q.Xhat``, ``q.P``, ``q.h``, ...).  Targets name a parameter:
``grad:gamma`` (:math:`\nabla_{\boldsymbol\gamma^{[l]}}\ell`), ``J_local:W_hh``, ``J_theta_l:K``, ``param:beta``;
``dinp`` / ``dout`` are the input and output gradients in the layer's shapes, ``J_z_a_prev`` the layer's input
Jacobian (batch Jacobian for batch normalization in training mode), ``J_a_a_prev`` the whole layer's.

Writing a claim
---------------
A network claim is a Python function ``formula(q, l)`` of a read-only
:class:`Quantities` object ``q`` -- the named quantities of one network instance under
the claim's convention -- and of the layer index ``l`` (claims that hold "for every
layer" are checked for each ``l`` in ``layers``)::

    from jacobian_bp.claims import Claim, Setting, check
    park_18 = Claim("Park (18)", lambda q, l: q.delta[l] @ q.a[l - 1].T, target="grad_W",
                    setting=Setting("park"))
    check(park_18).verdict        # 'holds'

``layers`` may also be a list of layer indices (``layers=[1]``).  Vectors are *columns*
(``n × 1`` arrays), so that a missing transpose is a shape error.  Quantities are NumPy arrays
on numeric *and* symbolic instances (SymPy entries, ``dtype=object``): ``@`` is the matrix
product, ``*``, ``**``, ``1 - v`` act elementwise, and ``q.np.exp``/``tanh``/``log``/... work
entry by entry on SymPy too; an ill-typed operation is reported in one line naming the
operation, both shapes and the claim.
Batches follow the convention's layout (Park: ``n × N``; Ganev: ``N × n``).  The
quantities are

* single sample: ``x``, ``y``, ``yhat``, ``W[l]``, ``b[l]`` (user layout: Damadi's
  ``W[l]`` is ``n_{l-1} × n_l``), ``z[l]``, ``a[l]`` (``a[0] = x``), ``delta[l]``
  (:math:`\nabla_{\mathbf z^{[l]}}\ell`), ``grad_a[l]`` (:math:`\nabla_{\mathbf a^{[l]}}\ell`),
  ``fprime[l]`` (:math:`f'(\mathbf z^{[l]})`, elementwise layers), ``Jact[l]``
  (:math:`\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}`), ``n[l]`` (widths), ``L``, ``theta``;
* batch: ``N``, ``X``, ``Y``, ``Yhat``, ``Z[l]``, ``A[l]``, ``Delta[l]`` (per-sample deltas,
  unreduced), ``dZ[l]`` / ``dA[l]`` (gradients of the *reduced* cost), ``G`` (per-sample
  :math:`\nabla_{\hat{\mathbf y}} C`), ``ones_N``;
* helpers (NumPy or SymPy alike): ``I(n)``, ``zeros``, ``ones``, ``diag``, ``kron``,
  ``vec`` (columns stacked), ``vec_r`` (rows stacked), ``hadamard``, ``hstack``,
  ``vstack``, ``sigma(k, v)``, ``dsigma(k, v)``, ``Jac(k, v)`` (activation of layer ``k``
  at ``v``), ``grad_C(yhat)``, ``K(m, n)`` (commutation matrix), and ``np`` -- NumPy with
  its reductions instrumented, so that a wrong ``axis`` can be diagnosed.

The truth (``target``) comes from the engine: :meth:`Network.gradient`,
:meth:`Network.chain_factors`, :meth:`Network.jacobian_theta`,
:meth:`Network.layer_jacobian`, :meth:`Network.local_jacobian`,
:meth:`Network.activation_jacobian_batch`, :meth:`Network.delta`, the forward cache.
With ``Setting(symbolic=...)`` the claim is also evaluated on SymPy quantities
(symbols ``w^{[l]}_{ij}``, ``x_i``, undefined activations ``f_l``) and compared
*exactly* with a symbolic truth obtained by differentiating the symbolic loss -- an
oracle independent of the engine.

Function claims (:class:`ExpressionClaim`) compare two SymPy expressions (a stated
derivative and the true one) exactly, with a numeric counterexample when they differ;
:class:`ListingClaim` checks that a printed code listing is well-formed Python
(parsed with :mod:`ast`, never executed).

Modules (floor 5, one concept each)
-----------------------------------
:mod:`.model` (verdicts, mistakes, :class:`Setting`, the three kinds of claim, results),
:mod:`.targets` (what a network claim can state, and its truth from the engine),
:mod:`.quantities` (what a formula reads), :mod:`.instances` (random numeric instances),
:mod:`.symbolic_oracle` (SymPy instances; truths by differentiating the loss),
:mod:`.compare` (numeric, exact and shape comparison), :mod:`.evaluate` (a claim on every
instance and layer), :mod:`.corrections` (output-level corrections), :mod:`.diagnose` (which
corrections make a failing claim hold), :mod:`.expressions` and :mod:`.listings` (the other two
kinds of claim) and :mod:`.checker` (:func:`check`).
"""
from .model import (DEFAULT_WIDTHS, FAILS, HOLDS, ILL_TYPED, KNOBS, MISTAKE_PRIORITY, NO_KNOWN_MISTAKE, VERDICTS,
                    CheckResult, Claim, Correction, Counterexample, Explanation, ExpressionClaim, ListingClaim,
                    MissingQuantity, Mistake, Setting)
from .targets import TARGET_OFFSET_DOC, TARGETS, Target, describe_targets, targets
from .quantities import Quantities
from .instances import build_instances
from .symbolic_oracle import symbolic_quantities
from .checker import check
# the formula judge: any derivative formula (LaTeX or SymPy), truth computed by the project (issue #14)
from .judge import PRESETS as JUDGE_PRESETS, Verdict, check as check_derivative, check_latex, claim_from_latex, main_check
from .derivative import DerivativeClaim, Layout, StatedCorrection
from .latex_grammar import LatexError

__all__ = [
    "HOLDS", "FAILS", "ILL_TYPED", "VERDICTS", "MissingQuantity", "Mistake", "Explanation", "Correction",
    "Setting", "Claim", "ExpressionClaim", "ListingClaim", "CheckResult", "Counterexample", "Quantities",
    "TARGETS", "check", "build_instances", "symbolic_quantities", "DEFAULT_WIDTHS", "targets", "describe_targets",
    "Target", "TARGET_OFFSET_DOC", "KNOBS", "NO_KNOWN_MISTAKE", "MISTAKE_PRIORITY",
    "check_latex", "check_derivative", "claim_from_latex", "main_check", "Verdict", "JUDGE_PRESETS", "DerivativeClaim",
    "Layout", "LatexError", "StatedCorrection",
]
