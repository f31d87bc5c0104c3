"""The checker's entry point, :func:`check`: a verdict, a counterexample and a diagnosis for any claim."""
from __future__ import annotations

import numpy as np

from ..errors import DataError, SpecError
from .diagnose import _diagnose
from .evaluate import _Run, _run
from .expressions import _check_expression
from .instances import build_instances
from .listings import _check_listing
from .model import (HOLDS, ILL_TYPED, NO_KNOWN_MISTAKE, _RANK, CheckResult, Claim, Counterexample, Explanation, ExpressionClaim,
                    ListingClaim, Mistake)
from .symbolic_oracle import _cached_symbolic


def _counterexample(outcomes: list) -> Counterexample | None:
    bad = [(d, l, o) for d, l, o in outcomes if o.status != HOLDS]
    if not bad:
        return None
    d, l, o = min(bad, key=lambda t: (sum(t[0].widths) if t[0].widths else 0, t[0].N, t[0].seed,
                                      -_RANK[t[2].status]))
    small = lambda v: v is not None and (isinstance(v, tuple) or np.size(v) <= 16)  # noqa: E731
    point = getattr(d, "point", None)
    return Counterexample(d.widths, d.seed, d.N, l, o.reason,
                          o.value if small(o.value) and o.status != ILL_TYPED else None,
                          o.truth if small(o.truth) and o.status != ILL_TYPED else None,
                          point=None if point is None else str(point.get("label", "given point")))


def _reason(run: _Run) -> str:
    bad = [(d, l, o) for d, l, o in run.outcomes if o.status == run.verdict]
    if not bad:
        return ""
    d, l, o = bad[0]
    n_bad = len([1 for *_, o2 in run.outcomes if o2.status != HOLDS])
    where = f"widths {'-'.join(map(str, d.widths))}" + ("" if l is None else f", l = {l}")
    return f"{o.reason} ({where}; {n_bad} of {len(run.outcomes)} cases)"


def check(claim, diagnose: bool = True) -> CheckResult:
    """Check a :class:`Claim`, :class:`ExpressionClaim` or :class:`ListingClaim`; never raises for a bad claim.

    Returns
    -------
    CheckResult
        verdict (holds / fails / ill-typed), reason, max error, counterexample,
        diagnosis (explanations that make the claim hold) and the verdicts of the
        claim-specific corrections.
    """
    if isinstance(claim, ExpressionClaim):
        return _check_expression(claim)
    if isinstance(claim, ListingClaim):
        return _check_listing(claim)
    if not isinstance(claim, Claim):
        raise TypeError(f"check: expected a Claim, ExpressionClaim or ListingClaim, received {type(claim).__name__}")
    setting = claim.setting
    instances = build_instances(setting)
    if not instances and not setting.symbolic:
        raise SpecError(f"claim {claim.name!r}: no architecture with at least {setting.min_depth} layers")
    logs: list = []
    run = _run(claim, instances, logs=logs)
    method = "numeric" if instances else "symbolic"
    sym_instances = []
    if setting.symbolic and claim.states == "value":
        sym_instances = [_cached_symbolic(setting, tuple(setting.symbolic))]
        slogs: list = []
        srun = _run(claim, sym_instances, logs=slogs)
        method = "symbolic+numeric" if instances else "symbolic"
        if _RANK[srun.verdict] > _RANK[run.verdict]:
            run = _Run(srun.verdict, srun.outcomes + run.outcomes, max(run.max_error, srun.max_error))
        else:
            run = _Run(run.verdict, run.outcomes + srun.outcomes, run.max_error)
        logs = logs + slogs
    all_instances = instances + sym_instances
    res = CheckResult(claim.name, run.verdict, _reason(run), method,
                      max_error=(run.max_error if run.verdict != ILL_TYPED else None),
                      n_instances=len(all_instances), details=[(d.label, l, o.status, o.reason) for d, l, o in run.outcomes])
    if not run.outcomes:
        raise DataError(f"claim {claim.name!r}: no architecture of the setting has the layers {claim.layers!r} "
                        f"(depths {sorted({len(w) - 1 for w in setting.widths})})")
    if run.verdict != HOLDS:
        res.counterexample = _counterexample(run.outcomes)
        if diagnose:
            res.diagnosis = _diagnose(claim, all_instances, run, logs)
    for corr in claim.corrections:
        insts = all_instances
        if corr.setting is not None:
            insts = build_instances(corr.setting)
        crun = _run(claim, insts, formula=corr.formula, target=corr.target)
        res.corrections.append((corr, crun.verdict))
        if run.verdict != HOLDS and crun.verdict == HOLDS:
            res.diagnosis.append(Explanation(Mistake.CUSTOM, corr.description))
    if run.verdict != HOLDS and diagnose and not res.diagnosis:
        res.diagnosis_note = NO_KNOWN_MISTAKE
    return res
