r"""Entries level of the LaTeX renderer: explicit matrices, numeric or SymPy, elided beyond ``max_rows × max_cols``.

Only the displayed entries are computed (columns of the structured operator), so a
10 × 266 610 Jacobian of LeNet-300-100 costs 10 columns.  Re-exported by :mod:`jacobian_bp.render.latex`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import sympy

from ..errors import ShapeError
from ..backend import operators as ops

DEFAULT_MAX = 10


# =====================================================================================
# entries level
# =====================================================================================
def reduce_integer_fractions(tex: str) -> str:
    r"""Every ``\frac{p}{q}`` of two integers in lowest terms: ``\frac{2}{4}`` → ``\frac{1}{2}``, ``\frac{6}{3}`` → ``2``;
    a coefficient that reduces to 1 in front of a parenthesis disappears (``\frac{2}{2}(\hat{\mathbf y} - \mathbf y)``
    → ``(\hat{\mathbf y} - \mathbf y)``)."""
    import re
    from math import gcd

    def one(m):
        p, q = int(m.group(1)), int(m.group(2))
        if q == 0:
            return m.group(0)
        g = gcd(p, q)
        p, q = p // g, q // g
        if q == 1:
            return "" if (p == 1 and m.group(3) == "(") else str(p)
        return rf"\frac{{{p}}}{{{q}}}"

    return re.sub(r"\\frac\{(\d+)\}\{(\d+)\}(?=(\(?))", lambda m: one(m), tex)


def fraction_text(v: float, latex: bool = True, max_denominator: int = 1000) -> str:
    r"""A positive constant as an exact fraction when it is one (``1/3`` → ``\frac{1}{3}``, or ``1/3`` with ``latex=False``),
    else with six significant digits."""
    from fractions import Fraction

    f = Fraction(float(v)).limit_denominator(max_denominator)
    if abs(float(f) - float(v)) > 1e-12 * max(1.0, abs(float(v))):
        return format_number(float(v), 6) if latex else f"{float(v):.6g}"
    if f.denominator == 1:
        return str(f.numerator)
    return rf"\frac{{{f.numerator}}}{{{f.denominator}}}" if latex else f"{f.numerator}/{f.denominator}"


def format_number(v, precision: int = 4) -> str:
    r"""A number as LaTeX with ``precision`` significant digits.

    ``0.000012345`` → ``1.234\times 10^{-5}``, ``-0.0`` → ``0``, integers stay integers,
    SymPy expressions go through :func:`sympy.latex`.
    """
    if not isinstance(precision, (int, np.integer)) or isinstance(precision, bool) or precision < 1:
        raise ValueError(f"format_number: precision must be a positive integer, received {precision!r}")
    if isinstance(v, sympy.Basic):
        if v.is_Number and not v.is_Rational:
            v = float(v)
        else:
            return sympy.latex(v)
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (complex, np.complexfloating)):
        raise TypeError("format_number: complex entries are not supported")
    v = float(v)
    if np.isnan(v):
        return r"\mathrm{NaN}"
    if np.isinf(v):
        return r"\infty" if v > 0 else r"-\infty"
    if v == 0:
        return "0"
    s = f"{v:.{int(precision)}g}"
    if "e" in s:
        mant, ex = s.split("e")
        ex = int(ex)
        return (r"10^{%d}" % ex) if mant in ("1", "1.0") else (rf"{mant}\times 10^{{{ex}}}" if mant != "-1" else r"-10^{%d}" % ex)
    return s


def _elide(n: int, keep: int) -> tuple[list[int], int | None]:
    """Indices shown out of ``n`` when at most ``keep`` slots are available; the position of the
    ellipsis slot (or None)."""
    if n <= keep:
        return list(range(n)), None
    head = keep - 2
    return list(range(head)) + [n - 1], head


def _check_max(max_rows, max_cols):
    for nm, v in (("max_rows", max_rows), ("max_cols", max_cols)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 3:
            raise ValueError(f"matrix_latex: {nm} must be an integer >= 3 (room for the first, an ellipsis and the last), received {v!r}")


def operator_entries(op, rows: Sequence[int], cols: Sequence[int]) -> np.ndarray:
    """The entries ``op[rows][:, cols]`` of a structured operator, computing only those columns.

    Parameters
    ----------
    op : Operator, Jacobian, ndarray, sympy Matrix
    rows, cols : sequence of int

    Returns
    -------
    ndarray, ``(len(rows), len(cols))``, float or object (SymPy entries).
    """
    from ..engine.jacobian import Jacobian

    if isinstance(op, Jacobian):
        op = op.op
    if isinstance(op, sympy.MatrixBase):
        return np.array([[op[i, j] for j in cols] for i in rows], dtype=object)
    if not isinstance(op, ops.Operator):
        A = np.asarray(op)
        if A.ndim == 1:
            A = A[:, None]
        return A[np.ix_(list(rows), list(cols))]
    m, n = op.shape
    if any(not (0 <= i < m) for i in rows) or any(not (0 <= j < n) for j in cols):
        raise ShapeError(f"operator_entries: indices out of range for a {m}x{n} operator")
    if op.symbolic:
        E = np.zeros((n, len(cols)), dtype=object)
        E[:] = sympy.Integer(0)
        for t, j in enumerate(cols):
            E[j, t] = sympy.Integer(1)
    else:
        E = np.zeros((n, len(cols)))
        E[list(cols), np.arange(len(cols))] = 1.0
    C = op.matmat(E)
    return np.asarray(C)[list(rows)]


def matrix_latex(M, max_rows: int = DEFAULT_MAX, max_cols: int = DEFAULT_MAX, precision: int = 4) -> str:
    r"""An explicit matrix ``\left[\begin{array}…\end{array}\right]``, elided beyond ``max_rows × max_cols``.

    Parameters
    ----------
    M : ndarray (1-D is a column), sympy Matrix, Operator or Jacobian
    max_rows, max_cols : int, >= 3
        Beyond these, the first ``max - 2`` rows/columns, an ellipsis (``\vdots``, ``\cdots``,
        ``\ddots`` at the crossing) and the last one are shown.
    precision : int
        Significant digits of numeric entries.
    """
    _check_max(max_rows, max_cols)
    from ..engine.jacobian import Jacobian

    if isinstance(M, Jacobian):
        M = M.op
    if isinstance(M, (ops.Operator, sympy.MatrixBase)):
        m, n = M.shape
    else:
        A = np.asarray(M)
        if A.ndim == 0:
            A = A.reshape(1, 1)
        if A.ndim == 1:
            A = A[:, None]
        if A.ndim != 2:
            raise ShapeError(f"matrix_latex: expected a vector or a matrix, received shape {A.shape}")
        M = A
        m, n = A.shape
    if m == 0 or n == 0:
        return rf"\mathbf{{0}}_{{{m}\times {n}}}"
    ri, rdots = _elide(m, max_rows)
    ci, cdots = _elide(n, max_cols)
    vals = operator_entries(M, ri, ci)
    lines = []
    for a, i in enumerate(ri):
        if rdots is not None and a == rdots:
            cells = [r"\vdots"] * len(ci)
            if cdots is not None:
                cells.insert(cdots, r"\ddots")
            lines.append(" & ".join(cells))
        cells = [format_number(vals[a, b], precision) for b in range(len(ci))]
        if cdots is not None:
            cells.insert(cdots, r"\cdots")
        lines.append(" & ".join(cells))
    ncols = len(ci) + (1 if cdots is not None else 0)
    return r"\left[\begin{array}{" + "c" * ncols + "}" + r" \\ ".join(lines) + r"\end{array}\right]"
