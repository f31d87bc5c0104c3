r"""The names of the formula judge's diagnoses (:data:`KINDS`), a candidate correction and a diagnosis,
and the size monomials (:math:`1/N`, :math:`1/(N\cdot K)`, ...) shared by :mod:`.mistakes` and
:mod:`.term_mistakes`."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

from .derivative import Layout, Node, num, sym

LOGDET_TRANSPOSE = "inverse instead of inverse-transpose (log|det X|)"
SOFTMAX_DIAG = "softmax Jacobian taken as diagonal"
ACT_AT_ACTIVATION = "derivative at the activation instead of the pre-activation"
SIGMA_PRIME_TWICE = "σ′ counted twice"
OTHER_FUNCTION = "another function's derivative"
KERNEL_FLIP = "kernel flipped vs not"
STRIDE_IGNORED = "stride ignored"
SIGN = "sign error"
KRON_SWAP = "Kronecker factors swapped"
CHAIN_ORDER = "chain rule in the wrong order"
FACTOR_2 = "missing factor 2"
NORMALIZER = "wrong normalizer"
SYMMETRY = "symmetry assumed"
TRANSPOSE = "transpose"
WRONG_AXIS = "wrong axis"
MISSING_TERM = "missing term"
MISSING_FACTOR = "missing factor"
EXTRA_TERM = "extra term"
#: every diagnosis name, most specific first
KINDS = (LOGDET_TRANSPOSE, SOFTMAX_DIAG, ACT_AT_ACTIVATION, SIGMA_PRIME_TWICE, OTHER_FUNCTION, KERNEL_FLIP,
         STRIDE_IGNORED, WRONG_AXIS, SIGN, KRON_SWAP, CHAIN_ORDER, FACTOR_2, NORMALIZER, SYMMETRY, TRANSPOSE,
         MISSING_FACTOR, MISSING_TERM, EXTRA_TERM)


@dataclass(frozen=True)
class Candidate:
    """A rewrite of the claim: its kind, what it changes, the new formula and (optionally) layout."""

    kind: str
    description: str
    formula: Node
    layout: Layout | None = None
    transposition: bool = False


@dataclass
class Diagnosis:
    """The verified correction of a wrong claim."""

    kind: str
    description: str
    formula: Node
    layout: Layout | None = None
    note: str = ""




def _product(fs: list) -> Node:
    out = fs[0]
    for f in fs[1:]:
        out = Node("mul", (out, f))
    return out



_ELEMENTARY = ("sigma", "tanh", "relu", "softplus", "exp")


_CONSTS = (Fraction(2), Fraction(1, 2), Fraction(4), Fraction(1, 4), Fraction(-2), Fraction(-1, 2), Fraction(1))


def _monomials(names: list) -> Iterator[tuple]:
    """(constant, {name: exponent}) with at most two names, exponents -2..2, simplest first."""
    yield Fraction(2), {}
    for k in (1, 2):
        for combo in itertools.combinations(names, k):
            for exps in itertools.product((-1, 1, -2, 2), repeat=k):
                yield Fraction(1), dict(zip(combo, exps))
    yield from ((c, {}) for c in _CONSTS if c not in (1, 2))
    for k in (1, 2):
        for combo in itertools.combinations(names, k):
            for exps in itertools.product((-1, 1, -2, 2), repeat=k):
                for c in _CONSTS:
                    yield c, dict(zip(combo, exps))


def _factor_node(c: Fraction, mono: dict) -> Node:
    numer, denom = [], []
    for nm, e in mono.items():
        (numer if e > 0 else denom).extend([sym(nm)] * abs(e))
    top = [num(c.numerator)] if c.numerator != 1 or not numer else []
    top += numer
    bot = ([num(c.denominator)] if c.denominator != 1 else []) + denom
    t = _product(top) if top else num(1)
    return t if not bot else Node("div", (t, _product(bot)))


def _mono_text(c: Fraction, mono: dict) -> str:
    """``2``, ``1/N``, ``1/(N·K)``, ``1/k²``, ``2·N/K``."""
    sup = {1: "", 2: "²"}
    top = ([str(c.numerator)] if c.numerator != 1 or not any(e > 0 for e in mono.values()) else [])
    top += [nm + sup[e] for nm, e in mono.items() if e > 0]
    bot = ([str(c.denominator)] if c.denominator != 1 else []) + [nm + sup[-e] for nm, e in mono.items() if e < 0]
    t = "·".join(top)
    if not bot:
        return t
    b = "·".join(bot)
    return f"{t}/({b})" if len(bot) > 1 else f"{t}/{b}"

