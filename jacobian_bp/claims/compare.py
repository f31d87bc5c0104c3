"""Comparing a claimed value with the truth: numeric (float64 tolerance), symbolic (exact), shapes.

A symbolic difference is first evaluated at a random point (undefined activations replaced by
concrete functions) for a quick rejection, then tested for zero soundly (:func:`_is_zero`).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import sympy

from ..backend.exact import exact_number
from ..backend.operators import sympy_scalar
from .model import ATOL, FAILS, HOLDS, ILL_TYPED, RTOL
from .symbolic_oracle import _SymbolicData


@dataclass
class _Outcome:
    status: str
    err: float
    reason: str
    value: Any = None
    truth: Any = None


def _as_numeric(v):
    if isinstance(v, sympy.MatrixBase):
        return np.array(v.evalf(), dtype=float)
    if isinstance(v, sympy.Basic):
        return np.array([[float(v)]])
    a = np.asarray(v)
    if a.dtype == object:
        a = a.astype(float)
    return a.astype(float)


def _compare_numeric(value, truth) -> _Outcome:
    try:
        C = _as_numeric(value)
    except (TypeError, ValueError) as exc:
        return _Outcome(ILL_TYPED, np.inf, f"the formula returned a non-numeric value ({exc})")
    T = np.asarray(truth, dtype=float)
    if C.ndim == 0 and T.size == 1:
        C = C.reshape(T.shape)
    if C.ndim == 1 and T.ndim == 2 and 1 in T.shape and C.size == T.size:
        C = C.reshape(T.shape)  # a 1-D vector has no orientation
    if T.ndim == 0 and C.size == 1:
        C = C.reshape(())
    if C.shape != T.shape:
        return _Outcome(ILL_TYPED, np.inf, f"shape {_shape_txt(C.shape)} where {_shape_txt(T.shape)} is expected",
                        C, T)
    if not np.all(np.isfinite(C)):
        return _Outcome(FAILS, np.inf, "the formula returned NaN or Inf", C, T)
    err = float(np.max(np.abs(C - T))) if T.size else 0.0
    scale = float(np.max(np.abs(T))) if T.size else 0.0
    if err <= ATOL + RTOL * max(scale, 1.0):
        return _Outcome(HOLDS, err, "", C, T)
    return _Outcome(FAILS, err, f"values differ (max abs error {err:.3g}, |truth| ≤ {scale:.3g})", C, T)


def _shape_txt(s) -> str:
    return "×".join(map(str, s)) if len(s) else "scalar"


def _sym_matrix(v):
    if isinstance(v, sympy.MatrixBase):
        return sympy.Matrix(v)
    if isinstance(v, sympy.Basic) or isinstance(v, (int, float, Fraction)):
        return sympy.Matrix([[v if isinstance(v, sympy.Basic) else sympy.Rational(v.numerator, v.denominator) if isinstance(v, Fraction) else sympy_scalar(v)]])
    a = np.asarray(v, dtype=object).view(np.ndarray)
    if a.ndim == 0:
        M = sympy.Matrix([[_exact_entry(a.item())]])
    elif a.ndim == 1:
        M = sympy.Matrix([_exact_entry(t) for t in a.tolist()])
    else:
        M = sympy.Matrix([[_exact_entry(t) for t in row] for row in a.tolist()])
    floats = M.atoms(sympy.Float)
    return M.xreplace({f: exact_number(float(f)) for f in floats}) if floats else M


def _exact_entry(t):
    """One entry of a claim's value as SymPy: a float (``0.5`` typed in a formula) becomes the exact number
    it stands for (:func:`~jacobian_bp.backend.exact.exact_number`, never parsing text)."""
    if isinstance(t, sympy.Basic):
        return t
    if isinstance(t, (bool, np.bool_)):
        return sympy.Integer(int(t))
    if isinstance(t, (int, np.integer)):
        return sympy.Integer(int(t))
    if isinstance(t, Fraction):
        return sympy.Rational(t.numerator, t.denominator)
    if isinstance(t, (float, np.floating)):
        return exact_number(float(t))
    return sympy_scalar(t)


_CONCRETE = [  # (NumPy f, f') replacing the undefined activations f_1, f_2, … for numeric evaluation
    (lambda t: np.sin(t) + t ** 3 / 5 + 1, lambda t: np.cos(t) + 3 * t ** 2 / 5),
    (lambda t: np.cos(t) * t + t / 2, lambda t: -np.sin(t) * t + np.cos(t) + 0.5),
    (lambda t: np.exp(t / 3) - t ** 2 / 7, lambda t: np.exp(t / 3) / 3 - 2 * t / 7),
    (lambda t: np.arctan(t) + t ** 2 / 9, lambda t: 1 / (1 + t ** 2) + 2 * t / 9),
]


_NP_FUNCS = {"exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos, "tan": np.tan, "tanh": np.tanh,
             "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "Abs": np.abs}


def _num_eval(e, vals: dict, funcs: dict, memo: dict) -> float:
    """Evaluate a SymPy expression tree in float64 (memoised on shared sub-expressions).

    ``funcs`` maps the names of undefined functions ``f_l`` to ``(f, f')`` NumPy pairs; their
    derivatives appear as ``Subs(Derivative(f_l(ξ), ξ), ξ, u)`` or ``Derivative(f_l(x), x)``.
    """
    if e in memo:
        return memo[e]
    if e.is_Symbol:
        v = vals[e]
    elif e.is_Number or e.is_NumberSymbol:
        v = float(e)
    elif e.is_Add:
        v = sum(_num_eval(a, vals, funcs, memo) for a in e.args)
    elif e.is_Mul:
        v = 1.0
        for a in e.args:
            v *= _num_eval(a, vals, funcs, memo)
    elif e.is_Pow:
        with np.errstate(all="ignore"):
            v = float(np.power(_num_eval(e.base, vals, funcs, memo), _num_eval(e.exp, vals, funcs, memo)))
    elif isinstance(e, sympy.Subs) and isinstance(e.expr, sympy.Derivative) and \
            getattr(e.expr.expr.func, "__name__", "") in funcs and len(e.point) == 1:
        v = float(funcs[e.expr.expr.func.__name__][1](_num_eval(e.point[0], vals, funcs, memo)))
    elif isinstance(e, sympy.Derivative) and getattr(e.expr.func, "__name__", "") in funcs and len(e.variables) == 1:
        v = float(funcs[e.expr.func.__name__][1](_num_eval(e.expr.args[0], vals, funcs, memo)))
    elif isinstance(e, sympy.Function) and getattr(e.func, "__name__", "") in funcs:
        v = float(funcs[e.func.__name__][0](_num_eval(e.args[0], vals, funcs, memo)))
    elif isinstance(e, sympy.Function) and e.func.__name__ in _NP_FUNCS and len(e.args) == 1:
        with np.errstate(all="ignore"):
            v = float(_NP_FUNCS[e.func.__name__](_num_eval(e.args[0], vals, funcs, memo)))
    else:  # anything else (Heaviside, Max, Piecewise, …): SymPy's own numeric evaluation
        sub = {s_: sympy.Float(vals[s_]) for s_ in e.free_symbols if s_ in vals}
        v = complex(e.xreplace(sub).evalf()).real
    memo[e] = v
    return v


def _numeric_substitution(d: "_SymbolicData", exprs: list, seed: int = 0) -> list:
    """Evaluate SymPy matrices at one random point, the undefined activations ``f_l`` replaced by
    concrete functions (and their derivatives by the concrete derivatives)."""
    rng = np.random.default_rng(seed)
    funcs = {f.__name__: _CONCRETE[(l - 1) % len(_CONCRETE)] for l, f in d.funcs.items()}
    syms: set = set()
    mats = [sympy.Matrix(e) for e in exprs]
    for M in mats:
        syms |= M.free_symbols
    syms_l = sorted(syms, key=str)
    vals = dict(zip(syms_l, rng.uniform(-1.5, 1.5, size=len(syms_l)).tolist()))
    if d.loss_kind in ("cross_entropy", "bce"):
        for i, yi in enumerate(list(d.y)):
            if yi in vals:
                vals[yi] = 1.0 / (4 + i)
    memo: dict = {}
    return [np.array([[_num_eval(M[i, j], vals, funcs, memo) for j in range(M.shape[1])] for i in range(M.shape[0])],
                     dtype=float).reshape(M.shape) for M in mats]


#: ``sympy.simplify`` is only run on expressions of at most this many operations (``sympy.count_ops``):
#: larger ones can take minutes; the checker then relies on exact cancellation and numeric evidence
SIMPLIFY_MAX_OPS = 24
#: ``expand``/``cancel`` are only run on expressions of at most this many operations
CANCEL_MAX_OPS = 3000


def _ops(e) -> int:
    try:
        return int(sympy.count_ops(e))
    except Exception:  # noqa: BLE001 - not an expression
        return 0


def bounded_simplify(e, max_ops: int = SIMPLIFY_MAX_OPS):
    """``sympy.simplify(e)`` when ``e`` is small (at most ``max_ops`` operations), else ``e`` unchanged.

    Every simplification of the claim checker goes through here, so that no check spends minutes in
    ``simplify`` (a failing claim once spent 93 s there while building its message).
    """
    if _ops(e) > max_ops:
        return e
    return sympy.simplify(e)


def _is_zero(e) -> bool:
    """Sound (never wrongly True) and fast zero test: expand; then, with every ``exp(·)`` and
    undefined-function atom replaced by a free symbol, ``cancel`` (a rational function that is
    identically zero in free symbols is zero at the actual atoms); finally ``simplify`` of a small
    difference (:func:`bounded_simplify`).  False means "not proven zero"."""
    if _ops(e) > CANCEL_MAX_OPS:
        return False
    e = sympy.expand(e)
    if e == 0:
        return True
    try:
        e2 = sympy.expand(e, power_exp=True, log=False)
        # exp(k·u) → E_u^k with one free symbol E_u per u (k rational): exp(u), exp(−u), exp(2u) share it
        dummies: dict = {}

        def _exp_atom(a):
            c, u = a.args[0].as_coeff_Mul()
            if u not in dummies:
                dummies[u] = sympy.Dummy(f"E{len(dummies)}", positive=True)
            return dummies[u] ** c

        e2 = e2.replace(lambda a: isinstance(a, sympy.exp), _exp_atom)
        atoms = [a for a in e2.atoms(sympy.Subs, sympy.Derivative, sympy.log)] + \
            [a for a in e2.atoms(sympy.Function) if isinstance(a, sympy.core.function.AppliedUndef)]
        rep = {a: sympy.Dummy(f"atom{i}") for i, a in enumerate(atoms)}
        if sympy.cancel(sympy.together(e2.xreplace(rep))) == 0:
            return True
    except Exception:  # noqa: BLE001 - fall through to simplify
        pass
    if _ops(e) > SIMPLIFY_MAX_OPS:
        return False
    return bounded_simplify(e) == 0


def _compare_symbolic(d: "_SymbolicData", value, truth, exact: bool = True) -> _Outcome:
    try:
        C = _sym_matrix(value)
    except Exception as exc:  # noqa: BLE001 - anything a claim returns
        return _Outcome(ILL_TYPED, np.inf, f"the formula returned a non-matrix value ({exc})")
    T = sympy.Matrix(truth)
    if C.shape != T.shape:
        return _Outcome(ILL_TYPED, np.inf, f"shape {_shape_txt(C.shape)} where {_shape_txt(T.shape)} is expected", C, T)
    try:
        cv, tv = _numeric_substitution(d, [C, T])
    except Exception as exc:  # noqa: BLE001
        return _Outcome(ILL_TYPED, np.inf, f"cannot evaluate the formula ({type(exc).__name__}: {exc})", C, T)
    if not np.all(np.isfinite(cv)):
        return _Outcome(FAILS, np.inf, "the formula evaluates to NaN or Inf", C, T)
    err = float(np.max(np.abs(cv - tv))) if tv.size else 0.0
    Dm = C - T
    if err > 1e-9 * max(1.0, float(np.max(np.abs(tv)))):
        return _Outcome(FAILS, err, f"differs symbolically (e.g. entry difference {_first_nonzero(Dm)})", C, T)
    if not exact:
        return _Outcome(HOLDS, err, "", C, T)
    if all(_is_zero(e) for e in Dm):
        return _Outcome(HOLDS, 0.0, "", C, T)
    more = [_numeric_substitution(d, [Dm], seed=s)[0] for s in (1, 2, 3, 4)]
    if all(np.max(np.abs(m)) < 1e-10 for m in more):
        return _Outcome(HOLDS, 0.0, "equal at 5 random points to 1e-10 (numeric evidence: SymPy did not reduce the "
                                    "difference to 0 within the size bound)", C, T)
    return _Outcome(FAILS, err, "differs symbolically", C, T)


def _first_nonzero(M) -> str:
    for e in M:
        e2 = sympy.expand(e) if _ops(e) <= SIMPLIFY_MAX_OPS else e
        if e2 != 0:
            s = str(e2)
            return s if len(s) < 120 else s[:117] + "…"
    return "0"


def _compare_shape(value, truth_shape) -> _Outcome:
    try:
        vs = tuple(int(s) for s in value)
    except (TypeError, ValueError):
        return _Outcome(ILL_TYPED, np.inf, f"a dimension statement must give a shape tuple, received {value!r}")
    ts = tuple(int(s) for s in truth_shape)
    if vs == ts:
        return _Outcome(HOLDS, 0.0, "", vs, ts)
    return _Outcome(FAILS, np.inf, f"states {_shape_txt(vs)}, the object is {_shape_txt(ts)}", vs, ts)
