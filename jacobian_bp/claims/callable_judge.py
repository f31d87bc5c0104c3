r"""The formula judge for a claim whose function is a NumPy callable (numeric truth), and its diagnosis.

The truth is the complex-step derivative (central differences when the function does not accept
complex input) on random instances -- of several sizes when the shapes name their dimensions
(``shapes={"Q": ("T", "d_k")}``, ``sizes=[{...}, ...]``).  A failing claim is diagnosed by
:func:`_diagnose_callable`: the corrections stated with the claim
(:class:`~.derivative.StatedCorrection`), then a constant ratio (:func:`~.term_mistakes.identify_constant`),
the transpose, a missing identity term -- each screened on the judging instances and verified on
fresh ones.  Used by :func:`.judge.check`, which owns the :class:`~.judge.Verdict`.
"""
from __future__ import annotations

import time
from typing import Mapping

import numpy as np

from ..errors import ShapeError, SpecError
from .derivative import DerivativeClaim, EvalError, Node, evaluate
from .mistake_kinds import EXTRA_TERM, KINDS, MISSING_FACTOR, MISSING_TERM, NORMALIZER, SIGN, TRANSPOSE
from .term_mistakes import identify_constant

__all__ = ["check_callable", "HOLDS", "FAILS", "ILL_TYPED"]

HOLDS, FAILS, ILL_TYPED = "holds", "fails", "ill-typed"


def _shape_txt(s) -> str:
    return "×".join(map(str, s))


def _callable_sizes(claim: DerivativeClaim) -> tuple[dict, list]:
    """The claim's shapes (ints or size names) and the named sizes of each instance (``[{}]`` without names)."""
    shapes, names = {}, set()
    for k, s in claim.shapes.items():
        s = (s,) if isinstance(s, (int, str)) else tuple(s)
        ok = 1 <= len(s) <= 2 and all((isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1) or
                                      (isinstance(d, str) and d) for d in s)
        if not ok:
            raise SpecError(f"derivative claim {claim.name!r}: a NumPy function needs shapes of at most two ints or "
                            f"size names, received {k}: {s!r}")
        shapes[k] = s if len(s) == 2 else (s[0], 1)
        names |= {d for d in s if isinstance(d, str)}
    if claim.wrt not in shapes:
        raise SpecError(f"derivative claim {claim.name!r}: give the shape of {claim.wrt!r} (shapes=...)")
    if not names:
        return shapes, [{}]
    if not claim.sizes:
        raise SpecError(f"derivative claim {claim.name!r}: a NumPy function needs shapes of ints, or size names "
                        f"with their values: shapes name sizes ({', '.join(sorted(names))}), give sizes=[{{...}}, ...]")
    out = []
    for sz in claim.sizes:
        if not isinstance(sz, Mapping) or not names <= set(sz):
            raise SpecError(f"derivative claim {claim.name!r}: every entry of sizes must give "
                            f"{', '.join(sorted(names))}, received {sz!r}")
        for nm, v in sz.items():
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise SpecError(f"derivative claim {claim.name!r}: size {nm} must be a positive int, received {v!r}")
        out.append({nm: int(v) for nm, v in sz.items()})
    return shapes, out


def _resolve(shape: tuple, sizes: dict) -> tuple:
    return tuple(sizes[d] if isinstance(d, str) else int(d) for d in shape)


def _close(T: np.ndarray, X: np.ndarray, rtol: float = 1e-6) -> bool:
    if X.shape != T.shape or not np.all(np.isfinite(X)):
        return False
    return float(np.max(np.abs(X - T), initial=0.0)) <= rtol * max(1.0, float(np.max(np.abs(T), initial=0.0)))


class _CallableJudge:
    """A NumPy claim being judged: instances (several sizes), numeric truths, the claim's values."""

    def __init__(self, claim: DerivativeClaim):
        self.claim = claim
        self.shapes, self.sizes = _callable_sizes(claim)
        self.how: set = set()
        self._fresh = None

    def F(self, env: dict) -> np.ndarray:
        out = np.asarray(self.claim.function(**env))
        return out.reshape(1, 1) if out.ndim == 0 else (out.reshape(-1, 1) if out.ndim == 1 else out)

    def envs(self, seed: int, count: int) -> list:
        rng = np.random.default_rng(seed)
        count = max(count, len(self.sizes))
        out = []
        for k in range(count):
            sz = self.sizes[k % len(self.sizes)]
            out.append(({n: rng.standard_normal(_resolve(s, sz)) for n, s in self.shapes.items()}, sz))
        return out

    def point_envs(self) -> list:
        rng = np.random.default_rng(self.claim.seed + 100)
        out = []
        for pt in self.claim.points:
            sz = self.sizes[0]
            e = {k: rng.standard_normal(_resolve(s, sz)) for k, s in self.shapes.items()}
            for k, v in pt.items():
                if k not in self.shapes:
                    raise SpecError(f"points: {k!r} is not an argument of the claim (arguments: {', '.join(sorted(self.shapes))})")
                try:
                    e[k] = np.asarray(v, dtype=float).reshape(_resolve(self.shapes[k], sz))
                except ValueError:
                    raise ShapeError(f"points: {k!r} must have shape {_resolve(self.shapes[k], sz)}, received "
                                     f"{np.shape(v)}") from None
            out.append((e, sz))
        return out

    def truth(self, env: dict) -> np.ndarray:
        """The derivative by the complex step (when the function accepts complex input), else central differences."""
        claim = self.claim
        X = env[claim.wrt]
        F0 = self.F(env)
        Dfull = np.empty(F0.shape + X.shape)
        try:
            for idx in np.ndindex(*X.shape):
                Xc = X.astype(complex)
                Xc[idx] += 1e-30j
                Dfull[(Ellipsis,) + idx] = np.imag(self.F({**env, claim.wrt: Xc})) / 1e-30
            self.how.add("complex step")
        except (TypeError, ValueError, np.ComplexWarning if hasattr(np, "ComplexWarning") else TypeError):
            for idx in np.ndindex(*X.shape):
                h = 1e-6 * max(1.0, abs(X[idx]))
                Xp, Xm = X.copy(), X.copy()
                Xp[idx] += h
                Xm[idx] -= h
                Dfull[(Ellipsis,) + idx] = (self.F({**env, claim.wrt: Xp}) - self.F({**env, claim.wrt: Xm})) / (2 * h)
            self.how.add("central differences")
        return claim.layout.arrange(Dfull, F0.shape, X.shape)

    def value(self, formula, env: dict, want: tuple) -> np.ndarray:
        """A formula's value (a Node or a callable of the arrays), shaped like the derivative where it only
        differs by a vector's orientation."""
        if isinstance(formula, Node):
            C = np.real(evaluate(formula, env, exact=False, knobs=self.claim.knobs, want=want))
        else:
            C = np.asarray(formula(**env), dtype=float)
            C = C.reshape(1, 1) if C.ndim == 0 else (C.reshape(-1, 1) if C.ndim == 1 else C)
        if C.shape != want and C.size == int(np.prod(want)) and C.ndim == 2 and 1 in C.shape:
            C = C.reshape(want)
        return C

    def fresh(self) -> list:
        """Fresh instances (new values, every size) with their truths and the claim's values."""
        if self._fresh is None:
            out = []
            for env, sz in self.envs(self.claim.seed + 1000, max(2, len(self.sizes))):
                T = self.truth(env)
                out.append((env, sz, T, self.value(self.claim.claimed, env, T.shape)))
            self._fresh = out
        return self._fresh


def _corrected_value(corr, env: dict, C: np.ndarray, sign: int, J: _CallableJudge) -> np.ndarray:
    if corr.how == "formula":
        return J.value(corr.formula, env, C.shape)
    if corr.how == "term":
        t = np.asarray(corr.term(**env), dtype=float)
        t = t.reshape(C.shape) if t.size == C.size and t.shape != C.shape else t
        return C + sign * np.broadcast_to(t, C.shape)
    f = np.asarray(corr.factor(**env), dtype=float)
    f = f.reshape(C.shape) if f.size == C.size and f.shape != C.shape else f
    return np.broadcast_to(f, C.shape) * C


def _rhs_latex(claim: DerivativeClaim) -> str:
    """The claimed formula's LaTeX (right of the first ``=``), or a placeholder."""
    tex = claim.latex or ""
    depth = 0
    for i, ch in enumerate(tex):
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "=" and depth == 0:
            return tex[i + 1:].strip()
    return r"\text{claimed}"


def _ratio(T: np.ndarray, C: np.ndarray) -> float | None:
    """The constant c with T = c·C on this instance (None when there is none)."""
    if T.shape != C.shape:
        return None
    scale = max(1.0, float(np.max(np.abs(T), initial=0.0)))
    mask = np.abs(C) > 1e-6 * max(1e-300, float(np.max(np.abs(C), initial=0.0)))
    if not mask.any() or np.any(np.abs(T[~mask]) > 1e-7 * scale):
        return None
    r = T[mask] / C[mask]
    c = float(np.median(r))
    return c if _close(T, c * C) else None


def _diagnose_callable(J: _CallableJudge, judged: list):
    """The first verified correction of a failing NumPy claim: (kind, description, corrected LaTeX, by) or None.

    Candidates, most specific first: the claim's stated corrections (a formula; a missing term, ± ; a
    missing factor), then the judge's own -- a constant ratio truth = c·claim (a sign, a factor 2, a
    normalizer named as an expression of the sizes: ``1/√d_k``), the transpose, a missing identity
    term.  Each is screened on the judging instances and verified on fresh ones (new values, every size).
    """
    claim = J.claim
    rhs = _rhs_latex(claim)

    def holds_everywhere(fix) -> bool:
        for env, sz, T, C in judged + J.fresh():
            try:
                X = fix(env, sz, T, C)
            except (ValueError, TypeError, ArithmeticError, EvalError, ShapeError):
                return False
            if X is None or not _close(T, np.asarray(X, dtype=float)):
                return False
        return True

    for corr in claim.corrections:
        kind = corr.kind or (MISSING_TERM if corr.how == "term" else MISSING_FACTOR if corr.how == "factor" else None)
        if kind not in KINDS:
            raise SpecError(f"derivative claim {claim.name!r}: the kind of stated correction {corr.description!r} "
                            f"must be one of mistakes.KINDS, received {kind!r}")
        for sign in ((1, -1) if corr.how == "term" else (1,)):
            if holds_everywhere(lambda env, sz, T, C, s=sign: _corrected_value(corr, env, C, s, J)):
                term = corr.latex or r"\text{(the stated " + corr.how + ")}"
                if corr.corrected:
                    fixed = corr.corrected
                elif corr.how == "term":
                    fixed = (f"{rhs} - ({term})" if sign < 0 else
                             f"{rhs} {'' if term.lstrip().startswith('-') else '+ '}{term}")
                elif corr.how == "factor":
                    fixed = rf"{term}\odot\Bigl({rhs}\Bigr)"
                else:
                    fixed = r"\text{(the stated corrected formula)}"
                desc = corr.description + (" (with the opposite sign)" if sign < 0 else "")
                return kind, desc, fixed, "verified correction"
    # a constant ratio: sign, factor 2, normalizer
    rs = [_ratio(T, C) for _, _, T, C in judged]
    if all(r is not None for r in rs):
        c = identify_constant(rs, [sz for _, sz, _, _ in judged])
        if c is not None and holds_everywhere(lambda env, sz, T, C: c.value(sz) * C):
            kind = c.kind
            if c.decimal is None and not c.mono and not c.root and c.const == -1:
                return kind, "the opposite sign", rf"-\Bigl({rhs}\Bigr)", "judge"
            desc = (f"a factor {c.text} missing" if kind != NORMALIZER else
                    f"off by a factor {c.text}: the derivative is {c.text} times the claim" +
                    (" (a constant not identified as a simple expression of the sizes)" if c.decimal is not None else "") +
                    (f" (the sizes tried do not tell it from {', '.join(c.others[:3])}: give sizes that do)" if c.others
                     else ""))
            return kind, desc, rf"{c.latex}\,\Bigl({rhs}\Bigr)", "judge"
    found = _diagnose_terms(J, judged, holds_everywhere)
    if found is not None:
        return found
    if holds_everywhere(lambda env, sz, T, C: C.T if C.T.shape == T.shape else None):
        return TRANSPOSE, "the transpose of the claimed formula", rf"\Bigl({rhs}\Bigr)^\top", "judge"
    for sign in (1, -1):
        if holds_everywhere(lambda env, sz, T, C, s=sign: C + s * np.eye(T.shape[0]) if T.shape[0] == T.shape[1] else None):
            return (MISSING_TERM, ("the identity I (e.g. a skip connection's Jacobian)" if sign > 0 else
                                   "the identity with a minus sign, −I"),
                    f"{rhs} {'+' if sign > 0 else '-'} I", "judge")
    return None


def _term_value(fn, env: dict, shape: tuple) -> np.ndarray:
    t = np.asarray(fn(**env), dtype=float)
    t = t.reshape(shape) if t.size == int(np.prod(shape)) and t.shape != shape else t
    return np.broadcast_to(t, shape)


def _diagnose_terms(J: _CallableJudge, judged: list, holds_everywhere):
    """A slip in one of the claim's stated summands (``terms=``): a term that does not belong, its sign,
    or a constant factor on it -- truth = claim − tₖ + c·tₖ, c = 0, −1 or a named constant."""
    claim = J.claim
    if not claim.terms:
        return None
    sizes = [sz for _, sz, _, _ in judged]
    for k, (name, fn, tex) in enumerate(claim.terms):
        vals = [_term_value(fn, env, T.shape) for env, _, T, _ in judged]
        cands = []
        if all(_close(T, C - t) for (_, _, T, C), t in zip(judged, vals)):
            cands.append((0.0, None))
        rs = [_ratio(T - C + t, t) for (_, _, T, C), t in zip(judged, vals)]
        if all(r is not None for r in rs):
            c = identify_constant(rs, sizes)
            if c is not None:
                cands.append((None, c))
        for zero, c in cands:
            def fix(env, sz, T, C, fn=fn, zero=zero, c=c):
                t = _term_value(fn, env, T.shape)
                return C - t if zero is not None else C - t + c.value(sz) * t
            if not holds_everywhere(fix):
                continue
            parts = []
            for j, (nm, _, tx) in enumerate(claim.terms):
                piece = tx or rf"\text{{{nm}}}"
                if j == k:
                    if zero is not None:
                        continue
                    plain_minus = c.decimal is None and not c.mono and not c.root and c.const == -1
                    piece = rf"-\bigl({piece}\bigr)" if plain_minus else rf"{c.latex}\,\bigl({piece}\bigr)"
                parts.append(rf"\bigl({piece}\bigr)")
            fixed = " + ".join(parts)
            if zero is not None:
                return EXTRA_TERM, f"the term {name!r} does not belong: drop it", fixed, "judge"
            if c.decimal is None and not c.mono and not c.root and c.const == -1:
                return SIGN, f"the opposite sign of the term {name!r}", fixed, "judge"
            return c.kind, f"the term {name!r} off by a factor {c.text}", fixed, "judge"
    return None


def check_callable(claim: DerivativeClaim, v, t0: float):
    """A NumPy function: the truth by complex step (when the function accepts complex input) or central
    differences in float64 -- numeric evidence only, stated as such in the confidence.  A failing claim
    is diagnosed by :func:`_diagnose_callable` (stated corrections, then constant ratios, transpose,
    a missing identity), each verified on fresh instances."""
    for corr in claim.corrections:
        named = corr.kind
        if named is not None and named not in KINDS:
            raise SpecError(f"derivative claim {claim.name!r}: the kind of stated correction {corr.description!r} "
                            f"must be one of mistakes.KINDS, received {corr.kind!r}")
    J = _CallableJudge(claim)
    envs = J.envs(claim.seed, max(1, claim.instances)) + J.point_envs()
    n_gen = len(envs) - len(claim.points)
    if claim.terms and not isinstance(claim.claimed, Node):
        for env, _ in envs[:1]:
            C = np.asarray(claim.claimed(**env), dtype=float)
            C = C.reshape(-1, 1) if C.ndim == 1 else C.reshape(1, 1) if C.ndim == 0 else C
            try:
                S = sum(_term_value(fn, env, C.shape) for _, fn, _ in claim.terms)
            except ValueError:
                S = None
            if S is None or not _close(C, S):
                raise SpecError(f"derivative claim {claim.name!r}: its terms ({', '.join(t[0] for t in claim.terms)}) "
                                f"do not add up to the claimed derivative")
    judged = []
    for k, (env, sz) in enumerate(envs):
        T = J.truth(env)
        try:
            C = J.value(claim.claimed, env, T.shape)
        except (EvalError, ShapeError) as exc:
            v.verdict, v.reason = ILL_TYPED, f"the formula cannot be evaluated: {exc}"
            break
        judged.append((env, sz, T, C))
        if not _close(T, C):
            v.verdict = FAILS
            label = ", ".join(f"{n}: {_shape_txt(a.shape)}" for n, a in sorted(env.items()))
            if C.shape != T.shape:
                v.reason = f"the formula is {_shape_txt(C.shape)} where the derivative is {_shape_txt(T.shape)}"
                v.counterexample = f"instance {k + 1} ({label})"
            else:
                D = np.abs(C - T)
                where = np.unravel_index(int(np.argmax(D)), D.shape)
                v.reason = f"differs from the derivative by up to {float(D[where]):.3g}"
                v.counterexample = (f"instance {k + 1}" + (" (a given point)" if k >= n_gen else "") +
                                    f" ({label}, random normal values, seed {claim.seed}): entry "
                                    f"{tuple(int(i) + 1 for i in where)} is {float(C[where]):.6g}, the derivative is "
                                    f"{float(T[where]):.6g}")
            break
    if v.verdict == FAILS:
        try:
            judged += [(e, s, J.truth(e), None) for e, s in envs[len(judged):]]
            judged = [(e, s, T, C if C is not None else J.value(claim.claimed, e, T.shape)) for e, s, T, C in judged]
            d = _diagnose_callable(J, judged)
        except SpecError:
            raise
        except (EvalError, ShapeError, ValueError, TypeError, ArithmeticError):
            d = None  # the claim cannot be evaluated on some instance: no diagnosis
        if d is not None:
            v.diagnosis, v.description, v.corrected, by = d
            v.details.append(("diagnosed_by", by))
    sizes = "; ".join(", ".join(f"{n}={x}" for n, x in sz.items()) for sz in J.sizes if sz)
    v.confidence = (f"numeric only ({' and '.join(sorted(J.how))} in float64, tolerance 1e-6) on {len(envs)} instance(s)"
                    + (f" of sizes {sizes}" if sizes else "") + ": a NumPy function has no exact derivative"
                    + ("; the diagnosis was verified on fresh instances" if v.diagnosis else ""))
    v.seconds = time.perf_counter() - t0
    return v
