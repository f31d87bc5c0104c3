"""Checking an :class:`~.model.ExpressionClaim`: two SymPy expressions compared exactly, with a
numeric counterexample and generic corrections (factor, transpose, Kronecker order) when they differ."""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from ..backend.exact import exact_number
from .compare import CANCEL_MAX_OPS, _is_zero, _ops, _shape_txt, _sym_matrix, bounded_simplify
from .corrections import _FACTORS, _divisor_pairs, _perm_matrix
from .diagnose import _dedupe
from .model import FAILS, HOLDS, ILL_TYPED, _RANK, CheckResult, Counterexample, Explanation, ExpressionClaim, Mistake


def _expr_cases(claim: ExpressionClaim) -> list:
    return list(claim.cases) if claim.cases else [None]


def _expr_value(e, case):
    if callable(e):
        return e() if case is None else e(case)
    return e


def _expr_compare(claim: ExpressionClaim, formula, case) -> tuple[str, str, float, Any, Any]:
    """Compare formula and truth of one case: (status, reason, error, C, T)."""
    try:
        C = _sym_matrix(_expr_value(formula, case))
    except Exception as exc:  # noqa: BLE001 - a stated formula may be anything
        return ILL_TYPED, f"the formula cannot be built ({type(exc).__name__}: {exc})", np.inf, None, None
    T = _sym_matrix(_expr_value(claim.truth, case))
    if C.shape != T.shape:
        return ILL_TYPED, f"shape {_shape_txt(C.shape)} where {_shape_txt(T.shape)} is expected", np.inf, C, T
    Dm = (C - T).applyfunc(lambda e: sympy.expand(e) if _ops(e) <= CANCEL_MAX_OPS else e)
    if all(e == 0 for e in Dm):
        return HOLDS, "", 0.0, C, T
    rng = np.random.default_rng(0)
    syms = sorted((C.free_symbols | T.free_symbols), key=str)
    for _ in range(4):
        if claim.sample:
            vals = claim.sample(rng)
        else:
            vals = {sy: (sympy.Rational(int(rng.integers(1, 40)), 13) if sy.is_positive
                         else sympy.Rational(int(rng.integers(-40, 41)), 13) + sympy.Rational(1, 97)) for sy in syms}
        try:
            cv = np.array(C.subs(vals).evalf(30), dtype=float)
            tv = np.array(T.subs(vals).evalf(30), dtype=float)
        except (TypeError, ValueError) as exc:
            return ILL_TYPED, f"cannot evaluate the formula ({exc})", np.inf, C, T
        if not np.all(np.isfinite(cv)):
            return FAILS, "evaluates to NaN or Inf", np.inf, C, T
        err = float(np.max(np.abs(cv - tv)))
        if err > 1e-9 * max(1.0, float(np.max(np.abs(tv)))):
            i, j = np.unravel_index(int(np.argmax(np.abs(cv - tv))), cv.shape)
            ce, te = bounded_simplify(C[i, j]), bounded_simplify(T[i, j])  # small entries only: never minutes
            ce, te = _short(ce), _short(te)
            pt = ", ".join(f"{k}={float(v):.3g}" for k, v in list(vals.items())[:3])
            where = f" (e.g. at {pt}{', …' if len(vals) > 3 else ''}: {cv[i, j]:.4g} vs {tv[i, j]:.4g})" if vals else ""
            return FAILS, f"entry ({i + 1}, {j + 1}) is {ce}, the true entry is {te}{where}", err, C, T
    if all(_is_zero(e) for e in Dm):
        return HOLDS, "", 0.0, C, T
    return HOLDS, ("equal at 4 random points to 1e-9 (numeric evidence: SymPy did not reduce the difference to 0 "
                   "within the size bound)"), 0.0, C, T


def _short(e, n: int = 70) -> str:
    t = str(e)
    return t if len(t) <= n else t[: n - 1] + "…"


def _expr_fixes(C, T) -> dict:
    """Generic corrections that turn ``C`` into ``T`` for one case: {(mistake, text): detail}."""
    out: dict = {}
    if C is None or T is None:
        return out

    def same(M) -> bool:
        return M.shape == T.shape and all((sympy.expand(e) if _ops(e) <= CANCEL_MAX_OPS else e) == 0 for e in (M - T))

    for c, txt, mistake in _FACTORS:
        if not isinstance(c, tuple) and same(C * exact_number(c)):
            out[(mistake, txt)] = ""
    if C.shape[::-1] == T.shape and same(C.T):
        out[(Mistake.TRANSPOSE, "corrected formula Cᵀ")] = ""
    if C.shape == T.shape:
        for pr in _divisor_pairs(C.shape[0]):
            if same(sympy.Matrix(_perm_matrix(*pr).astype(int)) * C):
                out.setdefault((Mistake.KRONECKER, "rows permuted by a commutation matrix (Kronecker factors swapped)"),
                               f"K_{{{pr[0]},{pr[1]}}}")
        for pc in _divisor_pairs(C.shape[1]):
            if same(C * sympy.Matrix(_perm_matrix(*pc).astype(int)).T):
                out.setdefault((Mistake.KRONECKER, "columns permuted by a commutation matrix (Kronecker factors swapped)"),
                               f"K_{{{pc[0]},{pc[1]}}}")
    return out


def _check_expression(claim: ExpressionClaim) -> CheckResult:
    worst, reason, maxerr, firstbad = HOLDS, "", 0.0, None
    outcomes = []
    for case in _expr_cases(claim):
        st, rs, err, C, T = _expr_compare(claim, claim.formula, case)
        outcomes.append((case, st, rs, C, T))
        if st != ILL_TYPED:
            maxerr = max(maxerr, err)
        if _RANK[st] > _RANK[worst]:
            worst, reason, firstbad = st, rs, case
    where = "" if firstbad is None else f" (case {firstbad})"
    n_bad = sum(1 for o in outcomes if o[1] != HOLDS)
    res = CheckResult(claim.name, worst, (reason + where + (f"; {n_bad} of {len(outcomes)} cases" if len(outcomes) > 1 else ""))
                      if worst != HOLDS else "", "symbolic", max_error=(maxerr if worst != ILL_TYPED else None),
                      n_instances=len(outcomes),
                      details=[(str(c), None, st, rs) for c, st, rs, _, _ in outcomes])
    if worst != HOLDS:
        res.counterexample = Counterexample((), 0, 1, firstbad, reason)
        # generic corrections: must make every case hold
        per_case = [_expr_fixes(C, T) for case, st, rs, C, T in outcomes]
        for key in per_case[0] if per_case else {}:
            if all(key in fx for fx in per_case):
                details = sorted({fx[key] for fx in per_case if fx[key]})
                txt = key[1] + (f": {', '.join(details)}" if details else "")
                res.diagnosis.append(Explanation(key[0], txt))
    for corr in claim.corrections:
        cst = HOLDS
        for case in _expr_cases(claim):
            st, *_ = _expr_compare(claim, corr.formula, case)
            if _RANK[st] > _RANK[cst]:
                cst = st
        res.corrections.append((corr, cst))
        if worst != HOLDS and cst == HOLDS:
            res.diagnosis.append(Explanation(Mistake.CUSTOM, corr.description))
    res.diagnosis = _dedupe(res.diagnosis)
    return res
