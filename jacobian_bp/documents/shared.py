"""Encoding helpers shared by several documents: stated corrections, architectures, symbol grids."""
from __future__ import annotations

from typing import Callable

import sympy

from ..claims import Correction, ExpressionClaim, Setting


def _C(desc: str, formula: Callable | None = None, target: str | None = None, setting: Setting | None = None):
    return Correction(desc, formula, target, setting)


# architectures the claims are checked on (several depths, unequal and equal widths) and batch sizes
_W2 = ((4, 5, 3), (3, 6, 2), (4, 4, 4))
_W3 = ((6, 5, 4, 3), (4, 3, 5, 2), (3, 3, 3, 3))
_DEEP = ((4, 5, 3), (3, 6, 4, 2), (3, 3, 3, 3), (5, 4, 6, 3, 2))
_BATCH = (3, 4)


def _sym_grid(prefix: str, m: int, n: int) -> sympy.Matrix:
    """``m × n`` matrix of symbols numbered row by row: ``prefix_1 … prefix_{mn}``."""
    return sympy.Matrix(m, n, sympy.symbols(f"{prefix}_1:{m * n + 1}", real=True))


def _prop1_claim(name: str) -> ExpressionClaim:
    x1, x2, x3 = sympy.symbols("x_1:4", real=True)
    f = x1 ** 2 * x2 + sympy.sin(x3) * x1 + sympy.exp(x2 * x3)
    xs = sympy.Matrix([x1, x2, x3])
    return ExpressionClaim(name, sympy.Matrix([f]).jacobian(xs).T,
                           sympy.Matrix([sympy.diff(f, v) for v in xs]), symbols=(x1, x2, x3))
