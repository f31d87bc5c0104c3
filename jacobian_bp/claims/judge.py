r"""The formula judge: is a stated derivative right?  The project derives the truth itself.

::

    from jacobian_bp.claims.judge import check_latex
    v = check_latex(r"\frac{\partial}{\partial X}\operatorname{tr}(A X B) = A^\top B^\top")
    v.verdict      # 'holds'
    v = check_latex(r"\frac{\partial \log|\det X|}{\partial X} = X^{-1}")
    v.verdict, v.diagnosis, v.corrected   # 'fails', 'inverse instead of inverse-transpose ...', 'X^{-\top}'

How a claim is judged (see :mod:`.derivative` for the truth and :mod:`.mistakes` for the
diagnosis):

1. the left-hand side gives the function and the argument; shapes are declared
   (``shapes={"X": ("m", "n")}``) or inferred;
2. the exact derivative is computed on generic instances of several sizes (forward-mode
   differentiation in exact arithmetic), with a float64 second opinion (complex step or
   central differences; for convolutions also the package's :class:`~jacobian_bp.layers.conv.Conv2d`
   Jacobians), and at the user's points (kinks, symmetric matrices);
3. the claimed formula is evaluated on the same instances and compared entry by entry;
4. a failing claim is diagnosed: candidate corrections are verified on fresh instances;
   the first that holds names the mistake and gives the corrected formula.

A claim whose function is a NumPy callable is judged by :mod:`.callable_judge` (numeric truth by
the complex step, instances of several sizes when the shapes name their dimensions); its diagnosis
tries the corrections stated with the claim (:class:`~.derivative.StatedCorrection`: a dropped term,
a dropped factor, a corrected formula of a named kind), slips in one of its stated ``terms``, a
constant ratio named as an expression of the sizes (``off by a factor 1/√d_k``), the transpose and
a missing identity -- all verified on fresh instances, the corrected formula in ``Verdict.corrected``::

    from jacobian_bp.claims.derivative import DerivativeClaim, StatedCorrection
    v = check(DerivativeClaim("gelu'", gelu, "x", Phi, shapes={"x": (1,)},
                              corrections=[StatedCorrection("x φ(x) dropped", term=x_phi, latex=r"x\varphi(x)")]))
    v.diagnosis, v.corrected   # 'missing term', '\Phi(x) + x\varphi(x)' (with latex=r"... = \Phi(x)")

Verdicts are the claim checker's: ``holds``, ``fails`` (a counterexample is given), and
``ill-typed`` (the formula cannot be evaluated: operands that do not conform).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np

from ..errors import JacobianBPError, ShapeError, SpecError
from .derivative import (DerivativeClaim, EvalError, Instance, Layout, Node, Dual, evaluate, infer_shapes,
                         make_instances, numeric_truth, point_instance, substitute, to_float)
from .derivative import forward_derivative, loss_definition
from .exact_eval import _mp
from .layer_opinion import layer_opinion
from .callable_judge import FAILS, HOLDS, ILL_TYPED, _shape_txt, check_callable
from .mistakes import diagnose

__all__ = ["Verdict", "check", "check_latex", "claim_from_latex", "loss_definition", "main_check", "PRESETS", "HOLDS",
           "FAILS", "ILL_TYPED"]


#: shorthand settings: layout and vec order (and kink conventions) of common sources
PRESETS: dict[str, dict] = {
    "cookbook": {"layout": "denominator", "vec": "column"},
    "magnus": {"layout": "numerator", "vec": "column"},
    "numerator": {"layout": "numerator", "vec": "column"},
    "denominator": {"layout": "denominator", "vec": "column"},
    "numpy": {"layout": "denominator", "vec": "row"},
    "pytorch": {"layout": "denominator", "vec": "row", "kinks": {"relu": 0, "abs": 0}},
}
_KNOBS = ("layout", "vec", "s", "p", "d", "mode", "k", "kinks", "stride", "padding", "dilation", "pool", "loss",
          "reduction", "mse_scale", "batch_axis")
_LOSS_KNOBS = ("loss", "reduction", "mse_scale", "batch_axis")
_KNOB_ALIASES = {"stride": "s", "padding": "p", "dilation": "d", "pool": "k"}


@dataclass
class Verdict:
    """The judgement of one derivative claim.

    Attributes
    ----------
    name, source : str
    verdict : {"holds", "fails", "ill-typed"}
    diagnosis : str or None
        The kind of mistake (:data:`~.mistakes.KINDS`) whose correction makes the claim hold.
    description : str
        What the correction changes.
    corrected : str or None
        The corrected formula, LaTeX.
    counterexample : str or None
        An instance and an entry where the claim and the truth differ.
    confidence : str
        How the truth was obtained and cross-checked.
    transcription_slip : bool
        The claim is one edit from right and the source's later use is right.
    reason : str
        Why a failing claim fails (or why it is ill-typed).
    seconds : float
    """

    name: str
    verdict: str
    source: str = ""
    claim_latex: str = ""
    diagnosis: str | None = None
    description: str = ""
    corrected: str | None = None
    counterexample: str | None = None
    confidence: str = ""
    transcription_slip: bool = False
    reason: str = ""
    note: str = ""
    seconds: float = 0.0
    details: list = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return self.verdict == HOLDS

    def __str__(self) -> str:
        lines = [f"{self.name}: {self.verdict.upper()}" + (f"  [{self.source}]" if self.source else "")]
        if self.claim_latex:
            lines.append(f"  claim: {self.claim_latex}")
        if self.reason:
            lines.append(f"  why: {self.reason}")
        if self.counterexample:
            lines.append(f"  counterexample: {self.counterexample}")
        if self.verdict != HOLDS:
            if self.diagnosis:
                lines.append(f"  diagnosis: {self.diagnosis} -- {self.description}")
                if self.note:
                    lines.append(f"  note: {self.note}")
                lines.append(f"  corrected: {self.corrected}")
                if self.transcription_slip:
                    lines.append("  probable transcription slip: the corrected formula is one edit away and the "
                                 "source's later use is right")
            else:
                lines.append("  diagnosis: none of the known mistakes explains it (no single correction makes it hold)")
        lines.append(f"  truth: {self.confidence}")
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        from ..backend.escape import escape_text, is_safe_math

        def math(t: str) -> str:  # user LaTeX only if it passes the math-mode whitelist, else as text
            return t if is_safe_math(t) else rf"\text{{{escape_text(t)}}}"

        head = rf"\text{{{escape_text(self.name)}: {escape_text(self.verdict)}}}"
        parts = [head]
        if self.claim_latex:
            parts.append(math(self.claim_latex))
        if self.verdict != HOLDS and self.corrected:
            parts.append(rf"\text{{{escape_text('diagnosis: ' + str(self.diagnosis))}; corrected: }}\; "
                         + math(self.corrected))
        elif self.verdict != HOLDS:
            parts.append(r"\text{no single correction makes it hold}")
        return "$\\displaystyle\\begin{array}{l}" + r" \\ ".join(parts) + r"\end{array}$"


# ============================================================================ comparison helpers
def _exact_equal(T: np.ndarray, C: np.ndarray) -> tuple[bool, float, tuple | None]:
    """Exact comparison (50 digits where transcendental): (equal, max |difference|, worst entry)."""
    worst, where = 0.0, None
    mp = _mp()
    for idx in np.ndindex(*T.shape):
        t = T[idx]
        c = C[idx].a if isinstance(C[idx], Dual) else C[idx]
        if isinstance(t, Fraction) and isinstance(c, Fraction):
            if t == c:
                continue
            d = abs(float(t - c))
        else:
            tt = mp.mpf(t.numerator) / t.denominator if isinstance(t, Fraction) else mp.mpf(t)
            cc = mp.mpf(c.numerator) / c.denominator if isinstance(c, Fraction) else mp.mpf(c)
            dd = abs(tt - cc)
            if dd <= mp.mpf(10) ** -30 * max(1, abs(tt)):
                continue
            d = float(dd)
        if d >= worst:
            worst, where = d, idx
    return where is None, worst, where


def _float_close(T: np.ndarray, C: np.ndarray) -> bool:
    if T.shape != C.shape or not np.all(np.isfinite(C)):
        return False
    scale = max(1.0, float(np.max(np.abs(T))) if T.size else 1.0)
    return bool(np.max(np.abs(T - C), initial=0.0) <= 1e-7 * scale)


def _fmt_arr(a: np.ndarray, limit: int = 6) -> str:
    vals = [f"{to_float(v):.4g}" for v in a.flat[:limit]]
    return "[" + ", ".join(vals) + (", …" if a.size > limit else "") + "]"


# ============================================================================ the judge
def _match_derivative(D, fshape: tuple, xshape: tuple | None, cshape: tuple, layout: Layout):
    r"""Unify the claimed formula's shape with the derivative's (in ``layout``), then make the remaining soft
    dimensions (the columns of ones vectors) 1.  ``\mathbf 1`` is a column of ones (its transpose a row),
    possibly widened into a matrix of ones where the derivative is a matrix.  Only the plain cases are unified -- a
    scalar function, a scalar argument, a vector function of a vector -- (a vec'd Jacobian's sizes are products); a
    claim that cannot match is tried transposed (it then fails on its shape and the diagnosis can name the layout),
    else left as inferred (its evaluation reports the mismatch).  Returns the dimension classes."""
    one = lambda d: D.resolve(d) == 1  # noqa: E731
    want = None
    if xshape is not None and len(cshape) == 2:
        if all(one(d) for d in fshape):
            if len(xshape) == 2:
                want = tuple(xshape) if layout.layout == "denominator" else tuple(xshape)[::-1]
        elif len(xshape) == 2 and all(one(d) for d in xshape):
            want = tuple(fshape) if len(fshape) == 2 else None
        elif len(fshape) == 2 and len(xshape) == 2 and one(fshape[1]) and one(xshape[1]):
            want = (fshape[0], xshape[0]) if layout.layout == "numerator" else (xshape[0], fshape[0])
    if want is not None:
        # first as written (a ones vector may widen into a matrix of ones, never turn into a row); else the claim's
        # transpose (the claim then fails on its shape, and the diagnosis can name the layout)
        for soft, target in ((True, want), (False, want[::-1])):
            trial = D.copy()
            if not soft:
                trial.settle_soft()
            try:
                trial.unify(cshape[0], target[0], "rows of the claimed derivative")
                trial.unify(cshape[1], target[1], "columns of the claimed derivative")
            except ShapeError:
                continue
            if all(not (trial.resolve(r) == 1 and trial.resolve(c) != 1 and not trial.is_soft(c))
                   for r, c in trial.unsized.values()):
                D = trial
                break
    D.settle_soft()
    return D


class _Judge:
    """One claim being judged: shapes, instances, truths; implements :class:`~.mistakes.JudgeContext`."""

    def __init__(self, claim: DerivativeClaim):
        self.claim = claim
        if not isinstance(claim.function, Node):
            raise SpecError(f"derivative claim {claim.name!r}: the function must be an expression (Node); "
                            f"use check_callable for NumPy functions")
        self.function, self.wrt, self.layout, self.knobs = claim.function, claim.wrt, claim.layout, claim.knobs
        self.claimed = claim.claimed
        try:
            self.base = infer_shapes([claim.function], claim.shapes, claim.knobs)
            # the function means what it says on its own: a ones vector whose use does not need more is a column
            self.base[1].settle_soft()
        except ShapeError as exc:
            raise SpecError(f"derivative claim {claim.name!r}: the function is not well formed: {exc}") from None
        self.claim_shape_error = None
        try:
            self.full = infer_shapes([claim.claimed], base=self.base, knobs=claim.knobs)
            self.full = (self.full[0], _match_derivative(self.full[1], self.base[1].roots[0],
                                                         self.full[0].get(claim.wrt), self.full[1].roots[0],
                                                         claim.layout), self.full[2])
        except ShapeError as exc:
            self.claim_shape_error = str(exc)
            self.full = self.base
        shapes, D, names = self.full
        if claim.wrt not in shapes:
            raise SpecError(f"derivative claim {claim.name!r}: {claim.wrt!r} is not a symbol of the function")
        self.instances = self._make(claim.instances, claim.seed)
        for k, pt in enumerate(claim.points):
            self.instances.append(point_instance(claim, pt, shapes, D, names, seed=claim.seed + 100 + k))
        self.truths = [self._truth(I) for I in self.instances]
        self._fresh = None
        self._sym = None

    # -- instances and truths
    def _make(self, count, seed, symmetric=False):
        shapes, D, names = self.full
        for attempt in range(8):
            insts = make_instances(self.claim, shapes, D, names, count=count, seed=seed + 7919 * attempt,
                                   symmetric_point=symmetric)
            try:
                for I in insts:
                    evaluate(self.function, I.dual_env(), exact=True, knobs=self.knobs, dims=I.dims, nodes=I.nodes)
                return insts
            except EvalError as exc:
                last = exc
        raise SpecError(f"derivative claim {self.claim.name!r}: the function cannot be evaluated on generic "
                        f"instances: {last}")

    def _truth(self, I: Instance) -> dict:
        Dfull, fshape = forward_derivative(self.function, self.wrt, I, self.knobs)
        return {"D": Dfull, "f": fshape, "x": I.env[self.wrt].shape, "float_env": {k: v.astype(float) if v.dtype != object else
                                                                     np.vectorize(float, otypes=[float])(v)
                                                                     for k, v in I.env.items()},
                "arr": {}}

    def arranged(self, t: dict, layout: Layout, exact: bool = True):
        key = (layout, exact)
        if key not in t["arr"]:
            A = layout.arrange(t["D"], t["f"], t["x"])
            t["arr"][key] = A if exact else np.vectorize(to_float, otypes=[float])(A)
        return t["arr"][key]

    # -- evaluating formulas
    def eval_exact(self, formula: Node, I: Instance, want: tuple | None = None) -> np.ndarray:
        return evaluate(formula, I.dual_env(), exact=True, knobs=self.knobs, dims=I.dims, want=want, nodes=I.nodes)

    def eval_float(self, formula: Node, I: Instance, t: dict, layout: Layout | None = None) -> np.ndarray:
        want = self.arranged(t, layout or self.layout, False).shape
        return np.real(evaluate(formula, t["float_env"], exact=False, knobs=self.knobs, dims=I.dims, want=want,
                                nodes=I.nodes))

    # -- JudgeContext
    def screen(self, formula: Node, layout: Layout | None = None) -> bool:
        layout = layout or self.layout
        for I, t in zip(self.instances, self.truths):
            try:
                C = self.eval_float(formula, I, t, layout)
            except (EvalError, ShapeError, ValueError, ZeroDivisionError, np.linalg.LinAlgError):
                return False
            if not _float_close(self.arranged(t, layout, False), C):
                return False
        return True

    def fresh(self):
        if self._fresh is None:
            insts = self._make(2, self.claim.seed + 1000)
            self._fresh = [(I, self._truth(I)) for I in insts]
        return self._fresh

    def verify(self, formula: Node, layout: Layout | None = None) -> bool:
        layout = layout or self.layout
        for I, t in self.fresh():
            T = self.arranged(t, layout)
            try:
                C = self.eval_exact(formula, I, T.shape)
            except (EvalError, ShapeError, ValueError, ZeroDivisionError):
                return False
            if T.shape != C.shape or not _exact_equal(T, C)[0]:
                return False
        return True

    def holds_symmetric(self) -> bool:
        """Whether the claim holds at the first instance with every square matrix made symmetric."""
        if self._sym is None:
            try:
                I0 = self.instances[0]
                env = {}
                for k, a in I0.env.items():
                    if a.ndim == 2 and a.shape[0] == a.shape[1] > 1:
                        a = np.array([[a[min(i, j), max(i, j)] for j in range(a.shape[1])] for i in range(a.shape[0])],
                                     dtype=object)
                    env[k] = a
                I = Instance(env, I0.dims, "symmetric point", I0.nodes)
                t = self._truth(I)
                T = self.arranged(t, self.layout)
                C = self.eval_exact(self.claimed, I, T.shape)
                self._sym = T.shape == C.shape and _exact_equal(T, C)[0]
            except (EvalError, ShapeError, SpecError, ValueError, ZeroDivisionError):
                self._sym = False
        return self._sym

    def ratios(self, formula: Node, term: Node | None):
        out = []
        for I, t in zip(self.instances, self.truths):
            T = self.arranged(t, self.layout, False)
            try:
                C = self.eval_float(formula, I, t)
                V = C if term is None else self.eval_float(term, I, t)
            except (EvalError, ShapeError, ValueError, ZeroDivisionError, np.linalg.LinAlgError):
                return None
            if C.shape != T.shape or V.shape != T.shape:
                return None
            num_ = T if term is None else T - C
            mask = np.abs(V) > 1e-9 * max(1.0, float(np.max(np.abs(V))))
            if not mask.any() or np.any(np.abs(num_[~mask]) > 1e-9 * max(1.0, float(np.max(np.abs(T))))):
                return None
            r = num_[mask] / V[mask]
            if np.max(r) - np.min(r) > 1e-7 * max(1.0, float(np.max(np.abs(r)))):
                return None
            out.append(float(np.mean(r)) + (0.0 if term is None else 1.0))
        return out

    def float_values(self, formula: Node, want: bool = True) -> list | None:
        """The formula's float64 values on the judging instances (``None`` if it cannot be evaluated);
        ``want``: an unsized identity or ones takes the derivative's shape."""
        out = []
        for I, t in zip(self.instances, self.truths):
            try:
                if want:
                    out.append(self.eval_float(formula, I, t))
                else:
                    out.append(np.real(evaluate(formula, t["float_env"], exact=False, knobs=self.knobs, dims=I.dims,
                                                nodes=I.nodes)))
            except (EvalError, ShapeError, ValueError, ZeroDivisionError, OverflowError, np.linalg.LinAlgError):
                return None
            if not np.all(np.isfinite(out[-1])):
                return None
        return out

    def truths_float(self) -> list:
        """The truth (arranged in the claim's layout), float64, on the judging instances."""
        return [self.arranged(t, self.layout, False) for t in self.truths]

    def residuals(self) -> list | None:
        """Truth minus claim, float64, on the judging instances (``None`` when the shapes differ)."""
        if not hasattr(self, "_residuals"):
            C = self.float_values(self.claimed)
            R = None
            if C is not None:
                T = self.truths_float()
                if all(t.shape == c.shape for t, c in zip(T, C)):
                    R = [t - c for t, c in zip(T, C)]
            self._residuals = R
        return self._residuals

    def size_values(self) -> list[dict]:
        out = []
        for I in self.instances[:self.claim.instances]:
            d = dict(I.dims)
            for k in ("k", "s"):
                v = self.knobs.get(k)
                if isinstance(v, int) and v > 1:
                    d[k] = v
            out.append(d)
        return out

    def matches(self, sub: Node, target: Node) -> bool:
        I, t = self.instances[0], self.truths[0]
        try:
            A, B = self.eval_float(sub, I, t), self.eval_float(target, I, t)
        except (EvalError, ShapeError, ValueError, ZeroDivisionError, np.linalg.LinAlgError):
            return False
        return A.shape == B.shape and _float_close(B, A)


def check(claim: DerivativeClaim, *, diagnose_failures: bool = True) -> Verdict:
    """Judge a :class:`~.derivative.DerivativeClaim` with the truth computed by the project.

    Returns
    -------
    Verdict
    """
    t0 = time.perf_counter()
    if not isinstance(claim, DerivativeClaim):
        raise SpecError(f"check: expected a DerivativeClaim, received {type(claim).__name__}")
    if callable(claim.function) and not isinstance(claim.function, Node):
        v = Verdict(claim.name, HOLDS, claim.source, claim.latex)
        check_callable(claim, v, t0)
        return v
    j = _Judge(claim)
    v = Verdict(claim.name, HOLDS, claim.source, claim.latex)
    # second opinion (float64) on the first instance, and the Conv2d layer where it applies
    I0, t0d = j.instances[0], j.truths[0]
    N, how = numeric_truth(claim, I0)
    T0 = j.arranged(t0d, claim.layout, False)
    agree = float(np.max(np.abs(N - T0), initial=0.0)) / max(1.0, float(np.max(np.abs(T0), initial=0.0)))
    opinions = [f"{how} agrees to {agree:.1e}" if agree < 1e-5 else f"{how} DISAGREES ({agree:.1e})"]
    conv = layer_opinion(j.function, j.wrt, j.knobs, I0)
    if conv is not None:
        e = float(np.max(np.abs(conv - T0)))
        what = {"avgpool": "AvgPool2d", "maxpool": "MaxPool2d"}.get(j.function.args[1].op, "Conv2d")
        opinions.append(f"{what} layer Jacobians agree to {e:.1e}" if e < 1e-8 else f"{what} layer DISAGREES ({e:.1e})")
    if claim.sympy_check:
        from .sympy_check import agree, sympy_derivative
        try:
            Ds = sympy_derivative(claim.function, claim.wrt, I0.env, I0.dims, I0.nodes)
        except EvalError as exc:  # e.g. a ones vector whose size only the shape inference knows
            Ds, why = None, str(exc)
        else:
            why = "outside its bounded scope"
        if Ds is None:
            opinions.append(f"SymPy check skipped ({why})")
        else:
            ok, exactly = agree(Ds, t0d["D"])
            opinions.append(("SymPy's symbolic derivative agrees" + (" exactly" if exactly else " to 30 digits"))
                            if ok else "SymPy's symbolic derivative DISAGREES")
    n_gen = claim.instances
    sizes = "; ".join(I.label for I in j.instances[:n_gen])
    v.confidence = (f"exact derivative (forward mode in exact arithmetic) on {n_gen} generic instances ({sizes})"
                    + (f" and {len(claim.points)} given point(s)" if claim.points else "") + "; " + ", ".join(opinions))
    # judge
    if j.claim_shape_error:
        v.verdict = ILL_TYPED
        v.reason = f"the formula's operands do not conform: {j.claim_shape_error}"
    for I, t in zip(j.instances, j.truths):
        if v.verdict != HOLDS:
            break
        T = j.arranged(t, claim.layout)
        try:
            C = j.eval_exact(claim.claimed, I, T.shape)
        except (EvalError, ShapeError) as exc:
            v.verdict = ILL_TYPED
            v.reason = f"the formula cannot be evaluated: {exc}" + (
                f" ({j.claim_shape_error})" if j.claim_shape_error else "")
            break
        if C.shape != T.shape:
            v.verdict = FAILS
            v.reason = f"the formula is {_shape_txt(C.shape)} where the derivative is {_shape_txt(T.shape)} ({claim.layout.layout} layout)"
            v.counterexample = f"at {I.label}"
            break
        ok, err, where = _exact_equal(T, C)
        if not ok:
            v.verdict = FAILS
            v.reason = f"differs from the derivative by up to {err:.3g}"
            v.counterexample = (f"at {I.label}: entry {tuple(i + 1 for i in where)} is {to_float(C[where]):.6g}, "
                                f"the derivative is {to_float(T[where]):.6g}" +
                                (f" (values {', '.join(f'{k}={_fmt_arr(a)}' for k, a in sorted(I.env.items()))})"
                                 if sum(a.size for a in I.env.values()) <= 24 else ""))
            break
    if v.verdict != HOLDS and diagnose_failures:
        d = diagnose(j)
        if d is not None:
            from .latex_grammar import to_latex
            v.diagnosis, v.description, v.note = d.kind, d.description, d.note
            v.corrected = to_latex(d.formula) + (f"  ({d.layout.layout} layout)" if d.layout is not None else "")
            if claim.later_use is not None:
                later = claim.later_use
                try:
                    v.transcription_slip = j.screen(later) and j.verify(later)
                except (EvalError, ShapeError):
                    v.transcription_slip = False
    v.seconds = time.perf_counter() - t0
    return v


# ============================================================================ LaTeX entry point
def _settings(setting) -> dict:
    if setting is None:
        return {}
    if isinstance(setting, str):
        if setting not in PRESETS:
            raise SpecError(f"setting: unknown preset {setting!r} (known: {', '.join(sorted(PRESETS))})")
        return dict(PRESETS[setting])
    if isinstance(setting, Layout):
        return {"layout": setting.layout, "vec": setting.vec}
    if isinstance(setting, Mapping):
        out = {}
        for k, val in setting.items():
            if k == "preset":
                out.update(_settings(val))
                continue
            if k not in _KNOBS:
                raise SpecError(f"setting: unknown knob {k!r} (knobs: {', '.join(_KNOBS)}, preset)")
            out[_KNOB_ALIASES.get(k, k)] = val
        return out
    raise SpecError(f"setting: expected a preset name, a dict of knobs or a Layout, received {type(setting).__name__}")


def claim_from_latex(latex: str, setting=None, *, shapes: Mapping | None = None, definitions: Mapping | None = None,
                     constraints: Mapping | None = None, points: Sequence | None = None, later_use: str | None = None,
                     sizes: Sequence | None = None, name: str | None = None, source: str = "",
                     sympy_check: bool = False) -> DerivativeClaim:
    """Build a :class:`~.derivative.DerivativeClaim` from ``LHS = RHS`` in LaTeX (see :func:`check_latex`)."""
    from .latex_grammar import parse_claim, parse_expression
    knobs = _settings(setting)
    pc = parse_claim(latex)
    defs = {}
    for k, text in (definitions or {}).items():
        if not isinstance(k, str):
            raise SpecError(f"definitions: names must be strings, received {k!r}")
        if not isinstance(text, (str, Node)):
            raise SpecError(f"definitions: {k!r} must be LaTeX (str) or an expression (Node), received {type(text).__name__}")
        defs[k] = parse_expression(text) if isinstance(text, str) else text
    shapes = dict(shapes or {})
    constraints = dict(constraints or {})
    loss_knobs = {k: knobs.pop(k) for k in _LOSS_KNOBS if k in knobs}
    if loss_knobs:
        if "loss" not in loss_knobs:
            raise SpecError(f"setting: {', '.join(loss_knobs)} given without loss=... (mse, cross_entropy or bce)")
        L, sh, cons = loss_definition(**loss_knobs)
        defs.setdefault("L", L)
        for k, v in sh.items():
            shapes.setdefault(k, v)
        for k, v in cons.items():
            constraints.setdefault(k, v)
    F = substitute(pc.function, defs)
    C = substitute(pc.claimed, defs)
    layout = Layout(knobs.pop("layout", pc.layout_hint or "denominator"), knobs.pop("vec", "column"))
    for k in ("s", "p", "d", "k"):
        if k in knobs and (not isinstance(knobs[k], int) or isinstance(knobs[k], bool) or knobs[k] < (0 if k == "p" else 1)):
            raise SpecError(f"setting: {k} must be a {'non-negative' if k == 'p' else 'positive'} integer, received {knobs[k]!r}")
    if "mode" in knobs and knobs["mode"] not in ("correlation", "convolution"):
        raise SpecError(f"setting: mode must be 'correlation' or 'convolution', received {knobs['mode']!r}")
    later = substitute(parse_claim(later_use).claimed if "=" in later_use else parse_expression(later_use), defs) \
        if later_use else None
    return DerivativeClaim(name or "claim", F, pc.wrt, C, layout=layout, shapes=shapes, knobs=knobs,
                           constraints=constraints, points=list(points or []),
                           sizes=list(sizes) if sizes else None, later_use=later, source=source, latex=latex,
                           sympy_check=bool(sympy_check))


def check_latex(latex: str, setting=None, *, shapes: Mapping | None = None, definitions: Mapping | None = None,
                constraints: Mapping | None = None, points: Sequence | None = None, later_use: str | None = None,
                sizes: Sequence | None = None, name: str | None = None, source: str = "",
                sympy_check: bool = False) -> Verdict:
    r"""Judge a derivative stated in LaTeX, with the truth computed by the project.

    Parameters
    ----------
    latex : str
        ``\frac{\partial F}{\partial X} = C`` (or ``\frac{\partial}{\partial X} F = C``, ``\nabla_X F = C``).
    setting : str, dict or Layout, optional
        A preset (``cookbook``, ``magnus``, ``numpy``, ``pytorch``, ...) or knobs: ``layout``
        (``denominator``/``numerator``), ``vec`` (``column``/``row``), ``stride``, ``padding``,
        ``dilation``, ``mode`` (``correlation``/``convolution``), ``pool`` (window), ``kinks``
        (``{"relu": 0}``: the derivative used at a kink); and a loss ``L`` of predictions ``Z`` and
        targets ``Y`` by ``loss`` (``mse``, ``cross_entropy``, ``bce``), ``reduction`` (``sum``,
        ``mean`` over the batch, ``mean_all`` over all entries), ``mse_scale`` and ``batch_axis``
        (see :func:`loss_definition`).
    shapes : dict, optional
        Symbol -> shape, ints or dimension names (``{"X": ("m", "n"), "Y": ("K", "N")}``); a
        dimension name may appear in the formula as a number (``\frac{1}{N}``).
    definitions : dict, optional
        Symbol -> LaTeX of its definition (``{"C": r"\tfrac12\|\sigma(Wx+b) - y\|^2"}``).
    constraints : dict, optional
        Symbol -> ``positive``, ``symmetric``, ``spd``, ``simplex``, ``onehot``, ``unit_interval``.
    points : list of dict, optional
        Extra points (symbol -> array) where the claim is also judged (a ReLU kink, a symmetric matrix).
    later_use : str, optional
        The source's later use of the same derivative, LaTeX; a failure one edit away with a right
        later use is labelled a probable transcription slip.
    sympy_check : bool
        Also differentiate with SymPy (bounded; a third opinion, see :mod:`.sympy_check`).
    """
    claim = claim_from_latex(latex, setting, shapes=shapes, definitions=definitions, constraints=constraints,
                             points=points, later_use=later_use, sizes=sizes, name=name, source=source,
                             sympy_check=sympy_check)
    return check(claim)


def main_check(argv: Sequence[str] | None = None) -> int:
    """``jacobian-bp check 'LATEX' [--setting PRESET] [--layout L] [--vec V] [--shape X=m,n ...]
    [--define C='LATEX' ...] [--stride s] [--padding p] [--dilation d] [--mode M] [--pool k]``.

    Prints the verdict; returns 0 when the claim holds, 1 when it fails, 2 for bad input.
    """
    import argparse
    ap = argparse.ArgumentParser(prog="jacobian-bp check", description="Judge a derivative formula given in LaTeX.")
    ap.add_argument("latex")
    ap.add_argument("--setting", default=None, help=f"preset: {', '.join(sorted(PRESETS))}")
    ap.add_argument("--layout", choices=("denominator", "numerator"))
    ap.add_argument("--vec", choices=("column", "row"))
    ap.add_argument("--shape", action="append", default=[], metavar="X=m,n")
    ap.add_argument("--define", action="append", default=[], metavar="NAME=LATEX")
    for k in ("stride", "padding", "dilation", "pool"):
        ap.add_argument(f"--{k}", type=int)
    ap.add_argument("--mode", choices=("correlation", "convolution"))
    try:
        a = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return 2 if exc.code else 0
    try:
        knobs = _settings(a.setting) if a.setting else {}
        for k in ("layout", "vec", "stride", "padding", "dilation", "pool", "mode"):
            val = getattr(a, k)
            if val is not None:
                knobs[_KNOB_ALIASES.get(k, k)] = val
        shapes = {}
        for s in a.shape:
            nm, _, dims = s.partition("=")
            if not nm or not dims:
                raise SpecError(f"--shape: expected NAME=d1,d2, received {s!r}")
            shapes[nm.strip()] = tuple(int(d) if d.strip().isdigit() else d.strip() for d in dims.split(","))
        defs = {}
        for s in a.define:
            nm, _, tex = s.partition("=")
            if not nm or not tex:
                raise SpecError(f"--define: expected NAME=LATEX, received {s!r}")
            defs[nm.strip()] = tex
        v = check_latex(a.latex, knobs or None, shapes=shapes, definitions=defs)
    except JacobianBPError as exc:
        print(f"jacobian-bp check: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(v)
    return 0 if v.holds else 1
