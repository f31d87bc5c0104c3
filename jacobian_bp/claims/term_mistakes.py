r"""Diagnoses about whole terms and factors, and constant factors of NumPy claims.

* :func:`_extra_term` -- one summand of the claim does not belong;
* :func:`_missing_factor` -- the truth is :math:`t\odot C`, :math:`tC` or :math:`Ct` for one of the
  formula's own sub-formulas :math:`t`;
* :func:`_missing_term` -- truth − claim is :math:`c\,t`, :math:`t` a product of at most three of the
  formula's own factors;
* :func:`identify_constant` -- the constant :math:`c` of truth :math:`= c\cdot` claim, named as a
  number or an expression of the sizes (:math:`1/\sqrt{d_k}`).

Candidates are screened in float64 here; :func:`~.mistakes.diagnose` verifies every one exactly on
fresh instances before it is named.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import numpy as np

from .formula_tree import Node, walk
from .mistake_kinds import (_ELEMENTARY, EXTRA_TERM, FACTOR_2, MISSING_FACTOR, MISSING_TERM, NORMALIZER, SIGN,
                            Candidate, _factor_node, _mono_text, _monomials)

__all__ = ["ConstantFactor", "identify_constant"]


def _summands(n: Node, sign: int = 1, path: tuple = ()) -> list:
    """The summands of a (nested) sum: (sign, path, node) for every term of ``add``/``sub``/``neg``."""
    if n.op == "add":
        return _summands(n.args[0], sign, path + (0,)) + _summands(n.args[1], sign, path + (1,))
    if n.op == "sub":
        return _summands(n.args[0], sign, path + (0,)) + _summands(n.args[1], -sign, path + (1,))
    if n.op == "neg":
        return _summands(n.args[0], -sign, path + (0,))
    return [(sign, path, n)]


def _drop(n: Node, path: tuple) -> Node:
    """``n`` without the summand at ``path`` (a path through ``add``/``sub``/``neg`` nodes)."""
    i = path[0]
    if n.op == "neg":
        return Node("neg", (_drop(n.args[0], path[1:]),))
    if len(path) == 1:
        other = n.args[1 - i]
        return other if (n.op == "add" or i == 1) else Node("neg", (other,))
    return Node(n.op, tuple(_drop(a, path[1:]) if k == i else a for k, a in enumerate(n.args)), n.attrs)


def _at(n: Node, path: tuple) -> Node:
    for i in path:
        n = n.args[i]
    return n


def _extra_term(ctx) -> Iterator[Candidate]:
    """One summand of the claim's top-level sum that does not belong (the claim minus it holds)."""
    terms = _summands(ctx.claimed)
    if len(terms) < 2:
        return
    for sign, path, t in terms:
        while path and _at(ctx.claimed, path[:-1]).op == "neg":
            path = path[:-1]  # drop the negated summand as a whole
        if not path:
            continue
        yield Candidate(EXTRA_TERM, f"the term {'−' if sign < 0 else ''}{t} does not belong: drop it",
                        _drop(ctx.claimed, path))


_ATOM_SKIP = ("add", "sub", "neg", "num", "eye", "ones", "zeros")


def _atom_pool(ctx, limit: int = 28) -> list:
    """Candidate factors of a missing term: the claim's and the function's own sub-formulas (not sums),
    symbols transposed and untransposed, distinct by value; with their float values per instance."""
    nodes = []
    for src in (ctx.claimed, ctx.function):
        for _, n in walk(src):
            if n.op in _ATOM_SKIP:
                continue
            nodes.append(n)
            if n.op == "func" and n.attr("name") in _ELEMENTARY:
                nodes.append(Node("dfunc", n.args, n.attrs))
            if n.op == "sym":
                nodes.append(Node("T", (n,)))
            elif n.op == "T" and n.args[0].op == "sym":
                nodes.append(n.args[0])
    pool, seen_nodes, seen_vals = [], set(), []
    # smallest first: symbols (transposed or not), then larger sub-formulas, so that the simplest
    # product explaining the residual is found first
    size = {n: sum(1 for _ in walk(n)) for n in nodes}
    nodes = sorted(dict.fromkeys(nodes), key=lambda n: size[n])
    for n in nodes:
        if n in seen_nodes:
            continue
        seen_nodes.add(n)
        vals = ctx.float_values(n, want=False)
        if vals is None or all(not np.any(v) for v in vals):
            continue
        if any(all(a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(vals, other))
               for other in seen_vals):
            continue
        seen_vals.append(vals)
        pool.append((n, vals))
        if len(pool) >= limit:
            break
    return pool


def _combine(a, b):
    """(op, values) of the product of two value lists (matrix product, scalar times, or Hadamard); None if
    they do not conform."""
    A, B = a[0], b[0]
    if A.shape == (1, 1) or B.shape == (1, 1):
        return "mul", [x * y if x.shape == (1, 1) or y.shape == (1, 1) else None for x, y in zip(a, b)]
    if all(x.ndim == 2 and y.ndim == 2 and x.shape[1] == y.shape[0] for x, y in zip(a, b)):
        return "mul", [x @ y for x, y in zip(a, b)]
    return None


def _term_ratio(R: list, V: list) -> list | None:
    """The constant c_i with R_i = c_i V_i on each instance, or None."""
    out = []
    for r, v in zip(R, V):
        if v is None or v.shape != r.shape:
            return None
        sv = float(np.max(np.abs(v), initial=0.0))
        sr = max(1.0, float(np.max(np.abs(r), initial=0.0)))
        if sv == 0.0:
            return None
        mask = np.abs(v) > 1e-9 * sv
        if np.any(np.abs(r[~mask]) > 1e-9 * sr):
            return None
        q = r[mask] / v[mask]
        c = float(np.median(q))
        if c == 0.0 or float(np.max(np.abs(r - c * v))) > 1e-8 * sr:
            return None
        out.append(c)
    return out


def _missing_term(ctx, most: int = 4) -> Iterator[Candidate]:
    r"""A term the claim lacks: truth − claim :math:`= c\,t` on every judging instance, with :math:`t` a
    product of at most three of the formula's own factors (the claim's and the function's sub-formulas,
    symbols transposed or not, the identity) and :math:`c` a small constant times a monomial of the sizes.
    Yields at most ``most`` candidates ``claim + c t``; :func:`diagnose` verifies them exactly."""
    R = ctx.residuals()
    if R is None:
        return
    C = ctx.float_values(ctx.claimed)
    if C is None or all(not np.any(c) for c in C):
        return  # a claim of 0 "misses" everything: no diagnosis
    sizes = ctx.size_values()
    names = sorted({k for sz in sizes for k in sz})
    n = len(sizes)
    pool = _atom_pool(ctx)
    if all(r.ndim == 2 and r.shape[0] == r.shape[1] > 1 for r in R):
        pool.insert(0, (Node("eye"), [np.eye(r.shape[0]) for r in R]))

    def coefficient(rs):
        for c, mono in itertools.chain(((Fraction(1), {}), (Fraction(-1), {})), _monomials(names)):
            if all(abs(float(c * _mono_value(mono, sz)) - r) <= 1e-8 * max(1.0, abs(r)) for r, sz in zip(rs, sizes)):
                return c, mono
        return None

    def products():
        for a in pool:
            yield a[0], a[1]
        for a, b in itertools.product(pool, repeat=2):
            for op, vals in _pairs(a[1], b[1]):
                yield Node(op, (a[0], b[0])), vals
        for a, b, c in itertools.product(pool, repeat=3):
            ab = _combine(a[1], b[1])
            if ab is None or any(x is None for x in ab[1]) or ab[1][0].shape == (1, 1):
                continue
            abc = _combine(ab[1], c[1])
            if abc is None or any(x is None for x in abc[1]):
                continue
            yield Node("mul", (Node("mul", (a[0], b[0])), c[0])), abc[1]

    found, tried = 0, 0
    claim_vals = C
    for node, vals in products():
        tried += 1
        if tried > 60000:
            return
        if any(v.shape != r.shape for v, r in zip(vals, R)):
            continue
        rs = _term_ratio(R[:n], vals[:n])
        if rs is None:
            continue
        cr = _term_ratio(claim_vals[:n], vals[:n])
        if cr is not None and max(cr) - min(cr) <= 1e-8 * max(abs(x) for x in cr):
            continue  # the term is a constant multiple of the claim: a factor, not a term
        co = coefficient(rs)
        if co is None:
            continue
        c, mono = co
        t = node
        if c == 1 and not mono:
            new, txt = Node("add", (ctx.claimed, t)), f"+ {t}"
        elif c == -1 and not mono:
            new, txt = Node("sub", (ctx.claimed, t)), f"− {t}"
        elif c < 0:
            new = Node("sub", (ctx.claimed, Node("mul", (_factor_node(-c, mono), t))))
            txt = f"− {_mono_text(-c, mono)}·{t}"
        else:
            new, txt = Node("add", (ctx.claimed, Node("mul", (_factor_node(c, mono), t)))), f"+ {_mono_text(c, mono)}·{t}"
        found += 1
        yield Candidate(MISSING_TERM, f"a term missing: the derivative is the claim {txt}", new)
        if found >= most:
            return


def _missing_factor(ctx, most: int = 4) -> Iterator[Candidate]:
    r"""A factor the claim lacks: the truth is :math:`t\odot C`, :math:`tC` or :math:`Ct` on every judging
    instance, with :math:`t` one of the formula's own sub-formulas (the claim's or the function's, a
    symbol transposed or not, the derivative :math:`f'(u)` of a function :math:`f(u)` it uses) --
    e.g. :math:`\sigma'(\mathbf z)` or :math:`W^\top` dropped from a chain rule.  Screened in float64
    here, verified exactly by :func:`diagnose`."""
    C = ctx.float_values(ctx.claimed)
    T = ctx.truths_float() if hasattr(ctx, "truths_float") else None
    if C is None or T is None or all(not np.any(c) for c in C):
        return
    found = 0
    for node, vals in _atom_pool(ctx):
        for op, order in (("hadamard", 0), ("mul", 0), ("mul", 1)):
            ok = True
            for c, v, t in zip(C, vals, T):
                if op == "hadamard":
                    if v.shape != c.shape or v.shape == (1, 1):
                        ok = False
                        break
                    x = v * c
                else:
                    a, b = (v, c) if order == 0 else (c, v)
                    # a matrix product of matrices only (arrays with channels are multiplied elementwise or not
                    # at all): a claim whose shape differs from the truth's is skipped, never a crash
                    if a.ndim != 2 or b.ndim != 2 or a.shape == (1, 1) or b.shape == (1, 1) or a.shape[1] != b.shape[0]:
                        ok = False
                        break
                    x = a @ b
                if x.shape != t.shape or float(np.max(np.abs(x - t), initial=0.0)) > 1e-8 * max(
                        1.0, float(np.max(np.abs(t), initial=0.0))):
                    ok = False
                    break
            if not ok:
                continue
            new = (Node("hadamard", (ctx.claimed, node)) if op == "hadamard" else
                   Node("mul", (node, ctx.claimed) if order == 0 else (ctx.claimed, node)))
            where = {"hadamard": "the claim ⊙ {t}",
                     "mul": "{t} times the claim" if order == 0 else "the claim times {t}"}[op]
            found += 1
            yield Candidate(MISSING_FACTOR, "a factor dropped: the derivative is " + where.format(t=node), new)
            if found >= most:
                return


def _mono_value(mono: dict, sz: dict) -> Fraction:
    v = Fraction(1)
    for nm, e in mono.items():
        v *= Fraction(sz[nm]) ** e
    return v


def _pairs(a: list, b: list):
    """The products of two value lists that conform: matrix (or scalar) product and Hadamard product."""
    A, B = a[0], b[0]
    if A.shape == (1, 1) or B.shape == (1, 1):
        if B.shape == (1, 1) and A.shape != (1, 1):
            return  # the scalar is written first: (b, a) yields it
        if all(x.shape == (1, 1) or y.shape == (1, 1) for x, y in zip(a, b)):
            yield "mul", [x * y for x, y in zip(a, b)]
        return
    if all(x.ndim == 2 and y.ndim == 2 and x.shape[1] == y.shape[0] for x, y in zip(a, b)):
        yield "mul", [x @ y for x, y in zip(a, b)]
    if A.shape == B.shape and all(x.shape == y.shape for x, y in zip(a, b)):
        yield "hadamard", [x * y for x, y in zip(a, b)]



# ============================================================================ constants (NumPy claims)
@dataclass(frozen=True)
class ConstantFactor:
    r"""A constant :math:`c` with truth :math:`= c\cdot` claim: a number times a monomial of named sizes.

    ``const`` is :math:`\pm\sqrt{p/q}` or :math:`p/q` (``root`` says which), ``mono`` maps size names
    to (possibly half-integer) exponents.  ``text`` (``1/√d_k``) and ``latex`` (``\frac{1}{\sqrt{d_k}}``)
    name it; :meth:`value` evaluates it at given sizes.
    """

    const: Fraction
    root: bool = False
    mono: tuple = ()
    decimal: float | None = None  # a constant not identified as a simple number (its value)
    others: tuple = ()  # other expressions that fit the sizes tried equally well (texts)

    def value(self, sizes: dict) -> float:
        if self.decimal is not None:
            return self.decimal
        v = float(abs(self.const)) ** (0.5 if self.root else 1.0) * (1 if self.const > 0 else -1)
        for nm, e in self.mono:
            v *= float(sizes[nm]) ** float(e)
        return v

    def _parts(self, latex: bool):
        """(sign, numerator factors, denominator factors) as text or LaTeX."""
        c = abs(self.const)
        sq = (lambda t: rf"\sqrt{{{t}}}") if latex else (lambda t: f"√{t}" if len(str(t)) == 1 or "_" in str(t) or
                                                           str(t).isdigit() else f"√({t})")
        top, bot = [], []
        if self.root:
            if c.numerator != 1:
                top.append(sq(c.numerator))
            if c.denominator != 1:
                bot.append(sq(c.denominator))
        else:
            if c.numerator != 1:
                top.append(str(c.numerator))
            if c.denominator != 1:
                bot.append(str(c.denominator))
        for nm, e in self.mono:
            a = abs(e)
            whole, half = int(a), (a - int(a)) != 0
            parts = [nm] * whole + ([sq(nm)] if half else [])
            (top if e > 0 else bot).extend(parts)
        return ("-" if self.const < 0 else ""), top, bot

    @property
    def text(self) -> str:
        if self.decimal is not None:
            return f"{self.decimal:.6g}"
        sign, top, bot = self._parts(False)
        t = "·".join(top) or "1"
        if not bot:
            return sign + t
        b = "·".join(bot)
        return f"{sign}{t}/({b})" if len(bot) > 1 else f"{sign}{t}/{b}"

    @property
    def latex(self) -> str:
        if self.decimal is not None:
            return f"{self.decimal:.6g}"
        sign, top, bot = self._parts(True)
        sep = r"\,"
        t = sep.join(top) or "1"
        b = sep.join(bot)
        return sign + (t if not bot else rf"\frac{{{t}}}{{{b}}}")

    @property
    def kind(self) -> str:
        """:data:`SIGN` for −1, :data:`FACTOR_2` for 2, :data:`NORMALIZER` otherwise."""
        if self.decimal is None and not self.mono and not self.root and self.const == -1:
            return SIGN
        if self.decimal is None and not self.mono and not self.root and self.const == 2:
            return FACTOR_2
        return NORMALIZER


def _nice_number(r: float, rtol: float) -> ConstantFactor | None:
    """``r`` as ±p/q or ±√(p/q) with small p, q (simplest first), or None."""
    if r == 0 or not np.isfinite(r):
        return None
    for root in (False, True):
        target = r * r if root else r
        for q in range(1, 13):
            p = round(abs(target) * q)
            if 1 <= p <= 144 and abs(p / q - abs(target)) <= rtol * abs(target):
                f = Fraction(p, q)
                if root:
                    # a perfect square under the root is a plain rational: already tried
                    if all(int(round(x ** 0.5)) ** 2 == x for x in (f.numerator, f.denominator)):
                        continue
                return ConstantFactor(f if r > 0 else -f, root)
    return None


def _size_monomials(names: list) -> Iterator[tuple]:
    """Monomials of at most two size names, exponents ±1/2, ±1, ±3/2, ±2 (simplest first)."""
    exps = (Fraction(-1, 2), Fraction(-1), Fraction(1, 2), Fraction(1), Fraction(-2), Fraction(2),
            Fraction(-3, 2), Fraction(3, 2))
    for k in (1, 2):
        for combo in itertools.combinations(names, k):
            for ex in itertools.product(exps, repeat=k):
                yield tuple(zip(combo, ex))


_SMALL = (Fraction(1), Fraction(2), Fraction(1, 2), Fraction(-1), Fraction(-2), Fraction(-1, 2), Fraction(4),
          Fraction(1, 4))


def identify_constant(ratios: list, sizes: list, rtol: float = 1e-6) -> ConstantFactor | None:
    r"""Name the constant :math:`c` with truth :math:`= c\cdot` claim, from its value on each instance.

    Parameters
    ----------
    ratios : list of float
        :math:`c` measured on each instance (the same on every entry of that instance).
    sizes : list of dict
        The named sizes of each instance (``{"d_k": 4}``); empty dicts when the sizes have no names.
    rtol : float

    Returns
    -------
    ConstantFactor or None
        The simplest expression matching every instance: a plain number when the ratio does not
        change with the sizes (±p/q, ±√(p/q), else its decimal value), else a small constant
        times a monomial of the sizes (``1/√d_k``, ``1/(N·K)``); ``None`` when the ratio changes
        with the sizes in no recognised way (then it is not a constant).
    """
    if not ratios or any(not np.isfinite(r) or r == 0 for r in ratios):
        return None
    close = lambda a, b: abs(a - b) <= rtol * max(abs(a), abs(b))  # noqa: E731
    varying = [k for k in sorted({k for s in sizes for k in s}) if len({s.get(k) for s in sizes}) > 1]
    if all(close(r, ratios[0]) for r in ratios):
        c = _nice_number(ratios[0], rtol)
        return c if c is not None else ConstantFactor(Fraction(1), decimal=float(ratios[0]))
    if not varying or len(sizes) != len(ratios):
        return None
    fits = []
    for mono in _size_monomials(varying):
        for root in (False, True):
            for c in _SMALL:
                if root and abs(c) in (1, 4):  # √1, √4 are rational
                    continue
                cand = ConstantFactor(c, root, mono)
                if all(close(cand.value(s), r) for s, r in zip(sizes, ratios)):
                    fits.append(cand)
    if not fits:
        return None
    # several expressions may fit the sizes tried (1/S and 1/√d_k when S² = d_k): name the simplest, list the others
    return ConstantFactor(fits[0].const, fits[0].root, fits[0].mono,
                          others=tuple(dict.fromkeys(f.text for f in fits[1:] if f.text != fits[0].text)))

