r"""LaTeX of Jacobians, products of Jacobians and gradient equations, at two levels.

Block level
    Structured symbols with their shapes: :math:`\mathbf x^\top` blocks,
    :math:`\mathbf I_n`, :math:`(\mathbf W^{[l]})^\top`, :math:`\operatorname{diag} f^{[l]\prime}(\mathbf z^{[l]})`,
    Kronecker products, block rows, and on request the shape of every factor under it
    (``\underbrace{…}_{3\times 15}``).  The model is a small matrix-expression tree
    (:class:`MatExpr`: :class:`Sym`, :class:`Eye`, :class:`Kron`, :class:`Prod`,
    :class:`HCat`, :class:`VCat`, :class:`Named`, …) whose nodes know their shapes
    -- a product of mismatched factors is refused -- and, when values are bound, can be
    *evaluated*, so every rendered formula can be checked numerically against the engine.
Entries level
    Explicit matrices, numeric (to a chosen number of significant digits) or symbolic
    (SymPy), elided with ``\cdots``, ``\vdots``, ``\ddots`` beyond ``max_rows × max_cols``
    (default 10 × 10).  Only the displayed entries are computed (columns of the
    structured operator), so a 10 × 266 610 Jacobian of LeNet-300-100 costs 10 columns.

Two entry points:

* :func:`jacobian_equation_latex` (used by ``Jacobian._repr_latex_``) renders any
  :class:`~jacobian_bp.engine.jacobian.Jacobian` -- a block, a stacked ``J_θ z``, a product
  built with ``@`` -- inferring its block form from its operator structure and spaces;
* :class:`NetworkLatex` builds, for a :class:`~jacobian_bp.engine.network.Network`, every
  expression of Damadi's Algorithm 1 (forward pass, layer Jacobians, the chain for each
  parameter block, :math:`\mathbf J_\theta\mathbf z^{[L]}`, the closed-form deltas and the
  gradient) in the notation of the network's convention preset (:mod:`jacobian_bp.render.notation`),
  from the network's structure: ``stages[l-1].layer`` / ``.post``, ``entries`` (θ layout,
  vec order) and ``convention.weight_layout`` (Damadi's :math:`\mathbf z = \mathbf W^\top\mathbf a + \mathbf b`).

All functions return math-mode LaTeX without delimiters, valid for pdflatex (with
``amsmath``) and for MathJax in notebooks.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod as _prod
from typing import Sequence

import numpy as np
import sympy

from ..errors import JacobianBPError, ShapeError
from ..backend.escape import check_math, escape_mathjax, escape_text
from .notation import Notation, get_notation, sub
from ..backend import operators as ops
from ..engine.chain import LeftChain

__all__ = [
    "format_number", "matrix_latex", "operator_entries", "MatExpr", "Sym", "Eye", "Zeros", "Ones",
    "Transpose", "Kron", "Prod", "HCat", "VCat", "Named", "render", "shape_latex", "jacobian_block_expr",
    "jacobian_latex", "jacobian_equation_latex", "product_latex", "gradient_latex",
    "verification_table_latex", "NetworkLatex",
]

DEFAULT_MAX = 10


# =====================================================================================
# entries level
# =====================================================================================
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


# =====================================================================================
# block level: a tiny matrix-expression tree with shapes and optional values
# =====================================================================================
def shape_latex(shape: tuple[int, int]) -> str:
    return rf"{shape[0]}\times {shape[1]}"


@dataclass
class _Ctx:
    notation: Notation
    shapes: bool = False
    expand: int = 99


class MatExpr:
    """A block-level matrix expression with a shape; ``.T`` simplifies transposes,
    ``a @ b`` checks shapes, :meth:`evaluate` computes the value when every leaf has one."""

    shape: tuple[int, int]
    prec: int = 3  # 3 atom, 2 product, 1 kronecker, 0 compound (needs parentheses)

    @property
    def T(self) -> "MatExpr":
        return Transpose(self)

    def __matmul__(self, other: "MatExpr") -> "Prod":
        return Prod([self, other])

    def evaluate(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def tex(self, ctx: _Ctx) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def leaves(self):
        yield self

    def latex(self, notation=None, shapes: bool = False, expand: int = 99) -> str:
        return render(self, notation, shapes, expand)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({shape_latex(self.shape).replace(chr(92) + 'times ', 'x')})"


def _shape2(shape) -> tuple[int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        shape = (shape[0], 1)
    if len(shape) != 2 or any(s < 0 for s in shape):
        raise ShapeError(f"block expression: expected a 2-D shape, received {shape}")
    return shape


class Sym(MatExpr):
    r"""A named block: a vector :math:`\mathbf x` (``n×1``), a matrix :math:`\mathbf W^{[2]}`,
    :math:`\operatorname{diag} f'(\mathbf z)` (``symmetric=True``) or a compound such as
    :math:`\hat{\mathbf y}-\mathbf y` (``compound=True``: parenthesized in products).

    ``value`` (optional) is its numeric or SymPy value, of shape ``shape``.
    """

    def __init__(self, latex: str, shape, value=None, symmetric: bool = False, compound: bool = False,
                 atomic: bool | None = None):
        self.latex_str = latex
        self.shape = _shape2(shape)
        self.symmetric = bool(symmetric) and self.shape[0] == self.shape[1]
        self.compound = compound
        self.atomic = atomic
        self.prec = 0 if compound else 3
        self.value = None
        if value is not None:
            v = _as_2d(value)
            if v.shape != self.shape:
                raise ShapeError(f"block {latex}: value of shape {v.shape} does not match the declared shape {self.shape}")
            self.value = v

    @property
    def T(self):
        return self if self.symmetric else Transpose(self)

    def evaluate(self):
        if self.value is None:
            raise JacobianBPError(f"block {self.latex_str}: no value bound; build it from a NetworkLatex with params and x")
        return self.value

    def tex(self, ctx):
        return self.latex_str


def _as_2d(value) -> np.ndarray:
    if isinstance(value, sympy.MatrixBase):
        value = np.array(value.tolist(), dtype=object)
    v = np.asarray(value)
    if v.ndim == 1:
        v = v[:, None]
    elif v.ndim == 0:
        v = v.reshape(1, 1)
    return v


class Eye(MatExpr):
    r""":math:`\mathbf I_n`."""

    def __init__(self, n: int):
        self.n = int(n)
        self.shape = (self.n, self.n)

    @property
    def T(self):
        return self

    def evaluate(self):
        return np.eye(self.n)

    def tex(self, ctx):
        return ctx.notation.identity(self.n)


class Zeros(MatExpr):
    r""":math:`\mathbf 0` of shape ``m×n``."""

    def __init__(self, m: int, n: int):
        self.shape = (int(m), int(n))

    @property
    def T(self):
        return Zeros(self.shape[1], self.shape[0])

    def evaluate(self):
        return np.zeros(self.shape)

    def tex(self, ctx):
        return r"\mathbf{0}"


class Ones(MatExpr):
    r""":math:`\mathbf 1_n` (a column)."""

    def __init__(self, n: int):
        self.n = int(n)
        self.shape = (self.n, 1)

    def evaluate(self):
        return np.ones((self.n, 1))

    def tex(self, ctx):
        return rf"\mathbf{{1}}_{sub(self.n)}"


class Transpose(MatExpr):
    def __init__(self, A: MatExpr):
        self.A = A
        self.shape = (A.shape[1], A.shape[0])

    @property
    def T(self):
        return self.A

    def leaves(self):
        yield from self.A.leaves()

    def evaluate(self):
        return self.A.evaluate().T

    def tex(self, ctx):
        inner = _tex(self.A, ctx)
        if isinstance(self.A, Sym) and not self.A.compound:
            atomic = self.A.atomic if self.A.atomic is not None else not ctx.notation.has_superscript(inner)
            atomic = atomic and "\\frac" not in inner and " " not in inner.strip()
            return ctx.notation.T(inner, atomic)
        return ctx.notation.T(inner, False)


class Kron(MatExpr):
    r""":math:`\mathbf A\otimes\mathbf B`."""

    prec = 1

    def __init__(self, A: MatExpr, B: MatExpr):
        self.A, self.B = A, B
        self.shape = (A.shape[0] * B.shape[0], A.shape[1] * B.shape[1])

    @property
    def T(self):
        return Kron(self.A.T, self.B.T)

    def leaves(self):
        yield from self.A.leaves()
        yield from self.B.leaves()

    def evaluate(self):
        return np.kron(self.A.evaluate(), self.B.evaluate())

    def tex(self, ctx):
        sub_ctx = _Ctx(ctx.notation, False, ctx.expand)
        return f"{_paren(self.A, sub_ctx, 2)} \\otimes {_paren(self.B, sub_ctx, 2)}"


class Prod(MatExpr):
    """A product of blocks, shapes checked; nested products are flattened."""

    prec = 2

    def __init__(self, factors: Sequence[MatExpr]):
        flat: list[MatExpr] = []
        for f in factors:
            if not isinstance(f, MatExpr):
                raise TypeError(f"Prod: factors must be block expressions, received {type(f).__name__}")
            flat.extend(f.factors if isinstance(f, Prod) else [f])
        if not flat:
            raise ShapeError("Prod: needs at least one factor")
        for a, b in zip(flat[:-1], flat[1:]):
            if a.shape[1] != b.shape[0]:
                raise ShapeError(f"Prod: factors do not chain: {a!r} {a.shape} times {b!r} {b.shape}")
        self.factors = flat
        self.shape = (flat[0].shape[0], flat[-1].shape[1])

    @property
    def T(self):
        return Prod([f.T for f in reversed(self.factors)])

    def leaves(self):
        for f in self.factors:
            yield from f.leaves()

    def evaluate(self):
        out = self.factors[0].evaluate()
        for f in self.factors[1:]:
            out = out @ f.evaluate()
        return out

    def _flat(self, ctx):
        """Factors with their contexts, expanded named sub-products spliced in (associativity)."""
        out = []
        for f in self.factors:
            g, c = f, ctx
            while isinstance(g, Named) and c.expand > 0:
                g, c = g.body, _Ctx(c.notation, c.shapes, c.expand - 1)
            if isinstance(g, Prod):
                out.extend(g._flat(c))
            else:
                out.append((g, c))
        return out

    def tex(self, ctx):
        parts = []
        for f, c in self._flat(ctx):
            t = _paren(f, c, 2)
            parts.append(_brace(t, f.shape) if ctx.shapes else t)
        return r" \, ".join(parts)


class HCat(MatExpr):
    r"""A block row :math:`[\mathbf A\;\mathbf B]` (Damadi Alg. 1 line 7)."""

    def __init__(self, blocks: Sequence[MatExpr]):
        blocks = list(blocks)
        if not blocks:
            raise ShapeError("HCat: needs at least one block")
        rows = {b.shape[0] for b in blocks}
        if len(rows) != 1:
            raise ShapeError("HCat: blocks have different numbers of rows: " + ", ".join(repr(b) for b in blocks))
        self.blocks = blocks
        self.shape = (rows.pop(), sum(b.shape[1] for b in blocks))

    @property
    def T(self):
        return VCat([b.T for b in self.blocks])

    def leaves(self):
        for b in self.blocks:
            yield from b.leaves()

    def evaluate(self):
        return np.concatenate([b.evaluate() for b in self.blocks], axis=1)

    def tex(self, ctx):
        parts = [_tex(b, ctx) for b in self.blocks]
        if ctx.shapes:
            parts = [_brace(p, b.shape) for p, b in zip(parts, self.blocks)]
        # Damadi's block rows of symbols are spaced thickly ([I_3 (x) x^T \; I_3]); blocks that are
        # Jacobian labels or fractions get a quad so that the row does not read as a product
        labels = any(k in p for p in parts for k in (r"\mathbf{J}", "\\frac", r"\underbrace"))
        body = (r" \quad " if labels else r" \; ").join(parts)
        if any(k in body for k in ("\\frac", "\\underbrace", "\\begin", "\\left")):
            return r"\left[" + body + r"\right]"
        return "[" + body + "]"


class VCat(MatExpr):
    r"""A block column, rendered as a one-column ``bmatrix``."""

    def __init__(self, blocks: Sequence[MatExpr]):
        blocks = list(blocks)
        if not blocks:
            raise ShapeError("VCat: needs at least one block")
        cols = {b.shape[1] for b in blocks}
        if len(cols) != 1:
            raise ShapeError("VCat: blocks have different numbers of columns: " + ", ".join(repr(b) for b in blocks))
        self.blocks = blocks
        self.shape = (sum(b.shape[0] for b in blocks), cols.pop())

    @property
    def T(self):
        return HCat([b.T for b in self.blocks])

    def leaves(self):
        for b in self.blocks:
            yield from b.leaves()

    def evaluate(self):
        return np.concatenate([b.evaluate() for b in self.blocks], axis=0)

    def tex(self, ctx):
        parts = [_tex(b, ctx) for b in self.blocks]
        if ctx.shapes:
            parts = [_brace(p, b.shape) for p, b in zip(parts, self.blocks)]
        return r"\begin{bmatrix} " + r" \\[2pt] ".join(parts) + r" \end{bmatrix}"


class Named(MatExpr):
    r"""An expression with a name, e.g. :math:`\mathbf J_{\mathbf z^{[1]}}\mathbf z^{[2]}` for a product.

    Rendered as its ``label`` when the context's ``expand`` depth is exhausted, as its
    ``body`` otherwise.  ``op`` (optional) is the engine's operator of the same matrix,
    used for entries-level rendering without evaluating the tree.
    """

    def __init__(self, label: "MatExpr | str", body: MatExpr, op=None, notation: Notation | None = None):
        self.notation = notation
        if isinstance(label, str):
            label = Sym(label, body.shape, atomic=False)
        if label.shape != body.shape:
            raise ShapeError(f"Named: label {label!r} and body {body!r} have different shapes")
        self.label = label
        self.body = body
        self.op = op
        self.shape = body.shape
        self.prec = body.prec if not isinstance(body, Sym) else 3

    @property
    def T(self):
        return Named(self.label.T, self.body.T, None if self.op is None else self.op.T, self.notation)

    def leaves(self):
        yield from self.body.leaves()

    def evaluate(self):
        return self.body.evaluate()

    def tex(self, ctx):
        if ctx.expand <= 0:
            return _tex(self.label, ctx)
        return _tex(self.body, _Ctx(ctx.notation, ctx.shapes, ctx.expand - 1))

    def label_tex(self, notation=None) -> str:
        return render(self.label, notation)


def _effective_prec(e: MatExpr, ctx: _Ctx) -> int:
    if isinstance(e, Named):
        return 3 if ctx.expand <= 0 else _effective_prec(e.body, _Ctx(ctx.notation, ctx.shapes, ctx.expand - 1))
    return e.prec


def _tex(e: MatExpr, ctx: _Ctx) -> str:
    return e.tex(ctx)


def _paren(e: MatExpr, ctx: _Ctx, need: int) -> str:
    t = _tex(e, ctx)
    p = _effective_prec(e, ctx)
    if p < need and not (isinstance(e, Prod) and need == 2):
        return r"\left(" + t + r"\right)" if ("\\frac" in t or "\\underbrace" in t) else "(" + t + ")"
    return t


def _brace(t: str, shape) -> str:
    return r"\underbrace{" + t + "}_{" + shape_latex(shape) + "}"


def render(expr: MatExpr, notation=None, shapes: bool = False, expand: int = 99) -> str:
    """LaTeX of a block expression.

    Parameters
    ----------
    notation : Notation, str or None
        Document notation (default Damadi).
    shapes : bool
        Put the shape of every factor and block under it (``\\underbrace``).
    expand : int
        How many levels of :class:`Named` sub-expressions are replaced by their bodies
        (0: the top-level children show their names).
    """
    if not isinstance(expr, MatExpr):
        raise TypeError(f"render: expected a block expression, received {type(expr).__name__}")
    if notation is None:
        notation = _find_notation(expr)
    return _tex(expr, _Ctx(get_notation(notation), bool(shapes), int(expand)))


def _children(e: MatExpr):
    if isinstance(e, Named):
        return [e.label, e.body]
    if isinstance(e, Prod):
        return e.factors
    if isinstance(e, (HCat, VCat)):
        return e.blocks
    if isinstance(e, Kron):
        return [e.A, e.B]
    if isinstance(e, Transpose):
        return [e.A]
    return []


def _find_notation(e: MatExpr):
    """The notation recorded on the first named sub-expression (expressions built by
    :class:`NetworkLatex` remember theirs), else None (Damadi's)."""
    stack = [e]
    while stack:
        node = stack.pop(0)
        if isinstance(node, Named) and node.notation is not None:
            return node.notation
        stack.extend(_children(node))
    return None


# =====================================================================================
# block form of a bare Jacobian (structure + spaces)
# =====================================================================================
def _dense_value(op):
    if op.symbolic:
        return np.array(op.to_sympy().tolist(), dtype=object)
    return op.to_dense()


def _parse(name: str):
    """("z", 2) for "z[2]", ("vec W", 1) for "vec W[1]", ("x", 0) for "x"."""
    import re

    if name == "x":
        return ("a", 0)
    m = re.fullmatch(r"(vec [A-Za-z]+|[A-Za-z]+)\[(\d+)\]", name)
    if not m:
        return (None, None)
    return (m.group(1), int(m.group(2)))


def _row_values(op) -> np.ndarray | None:
    """The single row of a ``1×k`` Dense operator, else None."""
    if isinstance(op, ops.Dense) and op.shape[0] == 1:
        return _dense_value(op)
    return None


def _infer(op, out_name: str, in_name: str, nt: Notation, symbol: str) -> MatExpr:
    """Best block form of ``op`` given the names of its output and input spaces; falls back to
    an opaque block named ``symbol`` (with the operator's value) when the structure says nothing."""
    okind, ol = _parse(out_name)
    ikind, il = _parse(in_name)
    if isinstance(op, ops.Identity):
        return Eye(op.n)
    if isinstance(op, ops.Zero):
        return Zeros(*op.shape)
    if isinstance(op, ops.Diagonal) and okind == "a" and ikind == "z" and ol == il:
        return Sym(nt.diag_act(il, nt.z(il)), op.shape, value=np.diag(op.d) if not op.symbolic else
                   np.array(sympy.diag(*list(op.d)).tolist(), dtype=object), symmetric=True)
    if isinstance(op, ops.Kron) and ikind in ("vec W",) and il is not None:
        a_lat = nt.a(il - 1)
        if isinstance(op.A, ops.Identity):
            row = _row_values(op.B)
            if row is not None:
                return Kron(Eye(op.A.n), Sym(a_lat, (row.shape[1], 1), value=row.T).T)
        if isinstance(op.B, ops.Identity):
            row = _row_values(op.A)
            if row is not None:
                return Kron(Sym(a_lat, (row.shape[1], 1), value=row.T).T, Eye(op.B.n))
    if isinstance(op, ops.Product) and len(op.factors) == 2 and isinstance(op.factors[0], (ops.Dense, LeftChain)) \
            and okind == "z" and ikind in ("vec W", "b") and il is not None and ol is not None and il < ol:
        P = op.factors[0]
        chain = Sym(nt.jac(nt.z(ol), nt.z(il)), P.shape, value=_dense_value(P), atomic=False)
        local = _infer(op.factors[1], f"z[{il}]", in_name, nt, nt.jac(nt.z(il), in_name))
        return Prod([chain, local])
    return Sym(symbol, op.shape, value=None, atomic=False)


def jacobian_block_expr(J, notation=None) -> MatExpr:
    r"""Block form of a :class:`~jacobian_bp.engine.jacobian.Jacobian` from its structure.

    * ``J.notation`` (a LaTeX string set by whoever built it) is used as is;
    * a stacked Jacobian (``J.blocks``) becomes a block row of its blocks' forms;
    * a product built with ``@`` (``J.factors``) becomes the product of its factors' forms;
    * otherwise the operator is read: :math:`\mathbf I_n`, :math:`\operatorname{diag} f^{[l]\prime}(\mathbf z^{[l]})`
      for a diagonal :math:`\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}`,
      :math:`\mathbf I_n\otimes(\mathbf a^{[l-1]})^\top` / :math:`(\mathbf a^{[l-1]})^\top\otimes\mathbf I_n`
      for a weight block, :math:`\mathbf J_{\mathbf z^{[l]}}\mathbf z^{[L]}\,(\cdots)` for a block of
      :math:`\mathbf J_\theta\mathbf z^{[L]}`; anything else is shown as its symbol.
    """
    from ..engine.jacobian import Jacobian

    if not isinstance(J, Jacobian):
        raise TypeError(f"jacobian_block_expr: expected a Jacobian, received {type(J).__name__}")
    nt = get_notation(notation)
    if J.notation:
        return Sym(check_math(J.notation, "Jacobian.notation"), J.shape, atomic=False)
    if J.blocks and isinstance(J.op, ops.HStack):
        return HCat([jacobian_block_expr(b, nt) for b in J.blocks])
    if J.blocks and isinstance(J.op, ops.VStack):
        return VCat([jacobian_block_expr(b, nt) for b in J.blocks])
    if J.factors:
        return Prod([jacobian_block_expr(f, nt) for f in J.factors])
    return _infer(J.op, J.output.name, J.input.name, nt, _symbol(J))


def _symbol(J) -> str:
    """``J.symbol``, validated as a math-mode string (it may come from the user: ``Jacobian(symbol=…)``,
    ``Space(latex=…)``)."""
    return check_math(J.symbol, f"symbol of the Jacobian {J.symbol_plain()}")


def _opaque(e: MatExpr, symbol: str) -> bool:
    return isinstance(e, Sym) and e.latex_str == symbol


def jacobian_latex(J, level: str = "block", shapes: bool = False, max_rows: int = DEFAULT_MAX,
                   max_cols: int = DEFAULT_MAX, precision: int = 4, notation=None) -> str:
    """The right-hand side for ``J``: its block form (``level="block"``) or its entries (``"entries"``)."""
    if level == "block":
        return render(jacobian_block_expr(J, notation), notation, shapes)
    if level == "entries":
        return matrix_latex(J, max_rows, max_cols, precision)
    raise ValueError(f"jacobian_latex: level must be 'block' or 'entries', received {level!r}")


def jacobian_equation_latex(J, level: str = "auto", shapes: bool = False, max_rows: int = DEFAULT_MAX,
                            max_cols: int = DEFAULT_MAX, precision: int = 4, notation=None) -> str:
    r"""``symbol = block form [= entries] \in \mathbb R^{m\times n}`` for a Jacobian (its ``_repr_latex_``).

    Parameters
    ----------
    J : Jacobian
    level : {"auto", "block", "entries", "both"}
        ``auto``: the block form, followed by the entries when the whole matrix fits in
        ``max_rows × max_cols``.
    shapes : bool
        Shapes under every block (``\underbrace``).

    Raises
    ------
    SpecError
        When ``J.symbol`` or ``J.notation`` (LaTeX set by whoever built ``J``) is not a safe
        math-mode string (:func:`jacobian_bp.backend.escape.check_math`).
    """
    from ..engine.jacobian import Jacobian

    if not isinstance(J, Jacobian):
        raise TypeError(f"jacobian_equation_latex: expected a Jacobian, received {type(J).__name__}")
    if level not in ("auto", "block", "entries", "both"):
        raise ValueError(f"jacobian_equation_latex: level must be auto, block, entries or both, received {level!r}")
    _check_max(max_rows, max_cols)
    parts = [_symbol(J)]
    if level in ("auto", "block", "both"):
        e = jacobian_block_expr(J, notation)
        if not _opaque(e, J.symbol):
            parts.append(render(e, notation, shapes))
    small = J.shape[0] <= max_rows and J.shape[1] <= max_cols
    if level in ("entries", "both") or (level == "auto" and small):
        parts.append(matrix_latex(J, max_rows, max_cols, precision))
    return " = ".join(parts) + r" \in " + Notation.reals(*J.shape)


def product_latex(jacobians: Sequence, shapes: bool = False, notation=None) -> str:
    r"""The chain rule for a sequence of Jacobians, left to right, e.g.
    :math:`\mathbf J_{\mathbf z^{[1]}}\mathbf z^{[2]} = (\mathbf W^{[2]})^\top\operatorname{diag} f^{[1]\prime}(\mathbf z^{[1]})`.

    The product is formed with ``@``, so a sequence whose spaces do not chain raises
    :class:`~jacobian_bp.errors.SpaceMismatchError`."""
    js = list(jacobians)
    if not js:
        raise ShapeError("product_latex: needs at least one Jacobian")
    P = js[0]
    for j in js[1:]:
        P = P @ j
    factors = " ".join(_symbol(j) for j in js)
    block = render(jacobian_block_expr(P, notation), notation, shapes)
    parts = [_symbol(P), factors] + ([block] if block != factors else [])
    return " = ".join(parts) + r" \in " + Notation.reals(*P.shape)


# =====================================================================================
# gradients and verification reports
# =====================================================================================
def gradient_latex(gradient, max_rows: int = DEFAULT_MAX, max_cols: int = DEFAULT_MAX, precision: int = 4,
                   notation=None) -> str:
    r"""``\begin{aligned} \nabla_{\mathbf W^{[2]}}\ell &= […] \\ … \end{aligned}`` for a
    :class:`~jacobian_bp.engine.network.Gradient`, parameters in θ order and in the user's layout."""
    from ..engine.network import Gradient

    if not isinstance(gradient, Gradient):
        raise TypeError(f"gradient_latex: expected a Gradient, received {type(gradient).__name__}")
    net = gradient.network
    nt = get_notation(notation if notation is not None else net)
    lines = []
    for e in net.entries:
        sym = nt.param(e.local, e.stage)
        lines.append(rf"{nt.cost_grad(sym)} &= {matrix_latex(np.asarray(gradient.params[e.name]), max_rows, max_cols, precision)}"
                     rf" \in {Notation.reals(*e.user_shape)}")
    return r"\begin{aligned}" + r" \\[4pt] ".join(lines) + r"\end{aligned}"


def verification_table_latex(report, mode: str = "math", notation=None) -> str:
    """The verification report as a table: ``mode="math"`` gives an ``array`` for notebooks
    (MathJax), ``mode="text"`` a ``tabular`` for documents.  Blocks are named by their symbols
    in the network's notation (``\\mathbf{W}^{[2]}``); the random-direction check is "all"."""
    from ..oracles.verify import TOL, VerificationReport

    if not isinstance(report, VerificationReport):
        raise TypeError(f"verification_table_latex: expected a VerificationReport, received {type(report).__name__}")
    if mode not in ("math", "text"):
        raise ValueError(f"verification_table_latex: mode must be 'math' or 'text', received {mode!r}")
    net = report.network
    nt = get_notation(notation if notation is not None else net)
    symbols = {e.name: nt.param(e.local, e.stage) for e in net.entries}
    rows = []
    for e in report.errors:
        tol = TOL.get(e.method, 1e-6)
        rows.append((e.method, e.block, str(e.n_checked), e.max_abs, e.rel, tol, "yes" if e.ok else "NO"))

    def block(b):
        if b in symbols:
            return symbols[b] if mode == "math" else f"${symbols[b]}$"
        if b == "dir.":
            return r"\text{all (directions)}" if mode == "math" else "all (directions)"
        return escape_mathjax(b) if mode == "math" else escape_text(b)

    def sci(v):
        if not np.isfinite(v):
            return r"\mathrm{NaN}" if np.isnan(v) else r"\infty"
        if v == 0:
            return "0"
        m, ex = f"{v:.2e}".split("e")
        return rf"{m}\times 10^{{{int(ex)}}}"

    if mode == "math":
        head = r"\text{method} & \text{block} & \text{checked} & \text{max abs err} & \text{rel err} & \text{tol} & \text{ok}"
        body = [rf"{escape_mathjax(m)} & {block(b)} & {n} & {sci(a)} & {sci(r)} & {sci(t)} & \text{{{ok}}}"
                for m, b, n, a, r, t, ok in rows]
        for m, why in report.skipped.items():
            body.append(rf"{escape_mathjax(m)} & \text{{skipped}} & & & & & ")
        verdict = escape_mathjax(f"verdict: {report.verdict}")
        return (r"\begin{array}{llrrrrl}" + head + r" \\ \hline " + r" \\ ".join(body)
                + r" \\ \hline \end{array} \quad " + verdict)
    head = r"method & block & checked & max abs err & rel err & tol & ok"
    body = [rf"{escape_text(m)} & {block(b)} & {n} & ${sci(a)}$ & ${sci(r)}$ & ${sci(t)}$ & {ok}"
            for m, b, n, a, r, t, ok in rows]
    for m, why in report.skipped.items():
        body.append(rf"{escape_text(m)} & \multicolumn{{6}}{{l}}{{skipped: {escape_text(why)}}}")
    return (r"\begin{tabular}{llrrrrl}\hline " + head + r" \\ \hline " + " \\\\\n".join(body)
            + r" \\ \hline\end{tabular}")


# =====================================================================================
# networks: every expression of Algorithm 1 from the network's structure
# =====================================================================================
def _column(v) -> np.ndarray:
    v = np.asarray(v)
    return v.reshape(-1, 1)


class NetworkLatex:
    r"""The block-level expressions of a network's Jacobians and gradient, in its notation.

    Parameters
    ----------
    network : Network
    params : dict, optional
        Parameters (user layout); with ``x`` they bind values to every symbol, so that
        each expression can be evaluated (and checked) and shown at the entries level.
    x : array, optional
        One input sample (numeric or SymPy object array).
    y : array, optional
        Its target, needed for the values of the deltas and the gradient.
    notation : str or Notation, optional
        Defaults to the network's convention preset.

    Notes
    -----
    With :math:`\mathbf J_{\mathbf a^{[k-1]}}\mathbf z^{[k]}` (``input_jacobian``), :math:`\mathbf J_{\mathbf z^{[k]}}\mathbf a^{[k]}`
    (``activation_jacobian``) and the local block :math:`\mathbf J_{\theta_l}\mathbf z^{[l]}`
    (``local_jacobian``), the block of stage ``l`` is (Damadi Alg. 1 line 3, corrected)

    .. math:: \mathbf J_{\theta_l}\mathbf z^{[L]} = \mathbf J_{\mathbf a^{[L-1]}}\mathbf z^{[L]}\,
              \mathbf J_{\mathbf z^{[L-1]}}\mathbf a^{[L-1]}\cdots\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}\,
              \mathbf J_{\theta_l}\mathbf z^{[l]}.
    """

    def __init__(self, network, params=None, x=None, y=None, notation=None):
        from ..engine.network import Network

        if not isinstance(network, Network):
            raise TypeError(f"NetworkLatex: expected a Network, received {type(network).__name__}")
        self.net = network
        self.nt = get_notation(notation if notation is not None else network)
        self.params = params
        self.cache = None
        self.canon = None
        self.x = None
        self.y = y
        if (params is None) != (x is None):
            raise ValueError("NetworkLatex: pass both params and x (to bind values) or neither")
        if x is not None:
            Xb, _, single = network.as_batch(x)
            if not single:
                raise ShapeError(f"NetworkLatex: expected one sample of shape {network.input_shape}, received {np.shape(x)}")
            self.canon = network.canonical_params(params)
            self.cache = network.forward_cache(Xb, self.canon)
            self.x = x
            if y is not None:
                network.as_batch(x, y)  # validates the target

    # ------------------------------------------------------------------ symbols
    @property
    def L(self) -> int:
        return self.net.L

    def size_z(self, l: int) -> int:
        return self.net.stages[l - 1].layer.out_size

    def size_a(self, l: int) -> int:
        return _prod(self.net.input_shape) if l == 0 else _prod(self.net.a_space(l).shape)

    def z(self, l: int) -> Sym:
        return Sym(self.nt.z(l), (self.size_z(l), 1), None if self.cache is None else _column(self.cache.z[l][0]))

    def a(self, l: int) -> Sym:
        return Sym(self.nt.a(l), (self.size_a(l), 1), None if self.cache is None else _column(self.cache.a[l][0]))

    def param_sym(self, entry) -> Sym:
        """The parameter tensor of an entry of θ, in the user's layout (matrix or vector)."""
        shape = entry.user_shape if len(entry.user_shape) <= 2 else (entry.size, 1)
        val = None
        if self.params is not None:
            val = self.params[entry.name]
            if not (isinstance(val, np.ndarray) and val.dtype == object):
                val = np.asarray(val, dtype=float)
            val = val.reshape(_shape2(shape))
        return Sym(self.nt.param(entry.local, entry.stage), shape, val)

    def _entries_of(self, l: int):
        return [e for e in self.net.entries if e.stage == l]

    def _op_value(self, op):
        return None if self.cache is None else _dense_value(op)

    def _stage_params(self, l):
        return self.net.stage_params(self.canon, l) if self.canon is not None else None

    # ------------------------------------------------------------------ layer Jacobians
    def input_jacobian(self, k: int) -> Named:
        r""":math:`\mathbf J_{\mathbf a^{[k-1]}}\mathbf z^{[k]}`: :math:`(\mathbf W^{[k]})^\top` (Damadi's
        :math:`\mathbf z = \mathbf W^\top\mathbf a + \mathbf b`), :math:`\mathbf W^{[k]}` (``out_in``),
        :math:`\operatorname{Toep}(\mathbf K^{[k]})` for a convolution."""
        self._check_stage(k)
        st = self.net.stages[k - 1]
        layer = st.layer
        shape = (layer.out_size, self.size_a(k - 1))
        label = self.nt.jac(self.nt.z(k), self.nt.a(k - 1))
        op = None
        if self.cache is not None:
            op = layer.jac_input(self.cache.a[k - 1][0], self.cache.z[k][0], self._stage_params(k))
        if layer.kind == "dense":
            W = self.param_sym(next(e for e in self._entries_of(k) if e.local == "W"))
            body = W.T if self.net.convention.weight_layout == "in_out" else W
        elif layer.kind == "conv2d":
            body = Sym(rf"\operatorname{{Toep}}({self.nt.weight('K', k)})", shape, self._op_value(op) if op is not None else None)
        else:
            body = Sym(label, shape, self._op_value(op) if op is not None else None, atomic=False)
        return Named(Sym(label, shape, atomic=False), body, op, notation=self.nt)

    def _post_factor(self, l: int, j: int) -> MatExpr:
        st = self.net.stages[l - 1]
        layer = st.post[j]
        n_post = len(st.post)
        inp = self.nt.z(l) if j == 0 else self.nt.h(l, j)
        out = self.nt.a(l) if j == n_post - 1 else self.nt.h(l, j + 1)
        shape = (layer.out_size, layer.in_size)
        value = None
        if self.cache is not None:
            ins = self.cache.post[l]
            outs = ins[1:] + [self.cache.a[l]]
            value = _dense_value(layer.jac_input(ins[j][0], outs[j][0], {}))
        if getattr(layer, "elementwise", False):
            if layer.kind == "identity":
                return Eye(layer.out_size)
            return Sym(self.nt.diag_act(l, inp), shape, value, symmetric=True)
        if layer.kind == "softmax":
            return Sym(rf"\operatorname{{diag}}({out}) - {out}{self.nt.T(out)}", shape, value, symmetric=True,
                       compound=True)
        if layer.kind == "flatten":
            return Eye(layer.out_size)
        return Sym(self.nt.jac(out, inp), shape, value, atomic=False)

    def activation_jacobian(self, l: int) -> Named:
        r""":math:`\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}`: :math:`\operatorname{diag} f^{[l]\prime}(\mathbf z^{[l]})` for an
        elementwise activation (Damadi §3.4), :math:`\operatorname{diag}(\mathbf a)-\mathbf a\mathbf a^\top`
        for softmax, the product of the factors of several parameter-free layers, :math:`\mathbf I` for none."""
        self._check_stage(l)
        st = self.net.stages[l - 1]
        n = st.layer.out_size
        label = self.nt.act_jac_name(l) or self.nt.jac(self.nt.a(l), self.nt.z(l))
        if not st.post:
            body: MatExpr = Eye(n)
        else:
            facs = [self._post_factor(l, j) for j in reversed(range(len(st.post)))]
            body = facs[0] if len(facs) == 1 else Prod(facs)
        return Named(Sym(label, body.shape, atomic=bool(self.nt.act_jac_name(l))), body, notation=self.nt)

    def param_jacobian(self, entry) -> MatExpr:
        r""":math:`\mathbf J_{\theta_p}\mathbf z^{[l]}` of one parameter tensor: :math:`\mathbf I_n\otimes(\mathbf a^{[l-1]})^\top`
        (rows of the canonical ``W`` stacked: Damadi's columns of :math:`\mathbf W` stacked),
        :math:`(\mathbf a^{[l-1]})^\top\otimes\mathbf I_n` (columns of the canonical ``W``), :math:`\mathbf I_n` for a
        bias; for a convolution :math:`\mathbf I_{C}\otimes\mathbf P(\mathbf a^{[l-1]})` (im2col) and
        :math:`\mathbf I_C\otimes\mathbf 1_{HW}` (tied bias)."""
        l = entry.stage
        layer = self.net.stages[l - 1].layer
        n = layer.out_size
        op = None
        if self.cache is not None:
            op = layer.jac_params(self.cache.a[l - 1][0], self.cache.z[l][0], self._stage_params(l), entry.order)[entry.local]
        a = self.a(l - 1)
        if layer.kind == "dense":
            if entry.local == "b":
                return Eye(n)
            return Kron(Eye(n), a.T) if entry.order == "C" else Kron(a.T, Eye(n))
        if layer.kind == "conv2d":
            C = layer.out_shape[0]
            if entry.local == "b" and getattr(layer, "bias", None) == "tied":
                return Kron(Eye(C), Ones(n // C))  # one bias per filter, broadcast over H_out W_out
            if entry.local == "b" and entry.order == "C":
                return Eye(n)  # untied bias, stacked like z
            structured = op is None or (isinstance(op, ops.Kron) and isinstance(op.A, ops.Identity))
            if entry.local == "K" and entry.order == "C" and structured:
                P = None if op is None else _dense_value(op.B)
                return Kron(Eye(C), Sym(rf"\mathbf{{P}}({a.latex_str})", (n // C, entry.size // C), P, atomic=True))
        sym = self.nt.jac(self.nt.z(l), self.nt.param(entry.local, l))
        return Sym(sym, (n, entry.size), None if op is None else _dense_value(op), atomic=False)

    def _group_label(self, entries, of_l: int) -> Sym:
        wrt = ",".join(self.nt.param(e.local, e.stage) for e in entries)
        if self.nt.jacobian != "J" and len(entries) > 1:
            wrt = "(" + wrt + ")"
        n = self.size_z(of_l)
        return Sym(self.nt.jac(self.nt.z(of_l), wrt), (n, sum(e.size for e in entries)), atomic=False)

    def local_jacobian(self, l: int, entries=None) -> Named:
        r""":math:`\mathbf J_{\theta_l}\mathbf z^{[l]}`, e.g. Damadi's :math:`[\mathbf I_3\otimes\mathbf x^\top\;\mathbf I_3]` (§3.1)."""
        self._check_stage(l)
        entries = self._entries_of(l) if entries is None else list(entries)
        blocks = [self.param_jacobian(e) for e in entries]
        body = blocks[0] if len(blocks) == 1 else HCat(blocks)
        return Named(self._group_label(entries, l), body, notation=self.nt)

    def chain(self, l: int) -> Named:
        r""":math:`\mathbf J_{\mathbf z^{[l]}}\mathbf z^{[L]}` as the product of the typed factors, left to right."""
        self._check_stage(l)
        L = self.L
        n_L = self.size_z(L)
        label = Sym(self.nt.jac(self.nt.z(L), self.nt.z(l)), (n_L, self.size_z(l)), atomic=False)
        if l == L:
            return Named(label, Eye(n_L), notation=self.nt)
        facs: list[MatExpr] = []
        for k in range(L, l, -1):
            facs.append(self.input_jacobian(k))
            facs.append(self.activation_jacobian(k - 1))
        return Named(label, Prod(facs), notation=self.nt)

    def stage_groups(self) -> list[list]:
        """θ's entries grouped into consecutive runs of one stage (Damadi: ``[W^{[L]}, b^{[L]}], …``)."""
        groups: list[list] = []
        for e in self.net.entries:
            if groups and groups[-1][-1].stage == e.stage:
                groups[-1].append(e)
            else:
                groups.append([e])
        return groups

    def block(self, entries) -> Named:
        r""":math:`\mathbf J_{\mathbf W^{[l]},\mathbf b^{[l]}}\mathbf z^{[L]}` for a run of entries of one stage."""
        entries = list(entries)
        l = entries[0].stage
        if any(e.stage != l for e in entries):
            raise ValueError("NetworkLatex.block: entries must belong to one stage")
        local = self.local_jacobian(l, entries)
        label = self._group_label(entries, self.L)
        if l == self.L:
            return Named(label, local.body, notation=self.nt)
        return Named(label, Prod([self.chain(l), local]), notation=self.nt)

    def jacobian_theta(self) -> Named:
        r""":math:`\mathbf J_\theta\mathbf z^{[L]}`, the blocks in θ order (Damadi Alg. 1 line 7)."""
        blocks = [self.block(g) for g in self.stage_groups()]
        n = self.size_z(self.L)
        label = Sym(self.nt.jac(self.nt.z(self.L), self.nt.theta), (n, self.net.n_params), atomic=False)
        return Named(label, blocks[0] if len(blocks) == 1 else HCat(blocks), notation=self.nt)

    # ------------------------------------------------------------------ deltas and gradient
    def output_delta_formula(self) -> tuple[str, str]:
        r"""(closed form, source) of :math:`\nabla_{\mathbf z^{[L]}}\ell` for the network's loss.

        Matched pairs (Damadi Table 1): sigmoid+BCE and softmax+CE give :math:`\hat{\mathbf y}-\mathbf y`;
        identity+MSE :math:`2c(\hat{\mathbf y}-\mathbf y)` with the per-sample scale :math:`c`."""
        nt = self.nt
        diff = rf"{nt.yhat} - {nt.y}"
        loss = self.net.loss
        if not self.net.matched:
            g = rf"{nt.grad(nt.yhat)}"
            return (rf"\left({nt.jac(nt.yhat, nt.z(self.L))}\right)^{nt.transpose} {g}",
                    "chain rule through the last activation (no closed form for this pair)")
        if loss.kind == "mse":
            c = loss.scale / (self.size_z(self.L) if loss.reduce_outputs == "mean" else 1)
            coef = 2 * c
            cs = "" if coef == 1 else (format_number(coef, 6) if coef != int(coef) else str(int(coef)))
            if loss.reduce_outputs == "mean":
                cs = rf"\frac{{{format_number(2 * loss.scale, 6)}}}{{{self.size_z(self.L)}}}"
            return (rf"{cs}({diff})" if cs else diff,
                    f"identity output and squared error scaled by {loss.scale:g}, Damadi Table 1")
        pair = "softmax output and cross entropy" if loss.kind == "cross_entropy" else "sigmoid output and binary cross entropy"
        return (diff, f"{pair}, Damadi Table 1")

    def output_delta(self) -> Sym:
        r""":math:`\boldsymbol\delta^{[L]} = \nabla_{\mathbf z^{[L]}}\ell`, valued from the engine's loss when ``y`` is given."""
        return self.delta_symbol(self.L)

    def delta_symbol(self, l: int) -> Sym:
        r"""The symbol :math:`\boldsymbol\delta^{[l]}` (Ganev: :math:`\nabla_{\mathbf z_\ell}\mathcal L`), with its value when bound."""
        self._check_stage(l)
        val = None
        if self.cache is not None and self.y is not None:
            val = _column(self.net.delta(self.x, self.y, self.params)) if l == self.L else self.delta(l).evaluate()
        sym = self.nt.dz(l)
        return Sym(sym, (self.size_z(l), 1), val, atomic=not self.nt.has_superscript(sym) and "nabla" not in sym)

    def delta(self, l: int) -> Named:
        r"""The closed-form recursion for :math:`\boldsymbol\delta^{[l]} = \nabla_{\mathbf z^{[l]}}\ell`:
        Damadi Table 1 at the output, then
        :math:`\boldsymbol\delta^{[l]} = (\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]})^\top(\mathbf J_{\mathbf a^{[l]}}\mathbf z^{[l+1]})^\top\boldsymbol\delta^{[l+1]}`
        (Ganev Prop. 3.1 (3.2), Park (17)), e.g. in Damadi's layout
        :math:`\operatorname{diag} f^{[l]\prime}(\mathbf z^{[l]})\,\mathbf W^{[l+1]}\boldsymbol\delta^{[l+1]}`."""
        self._check_stage(l)
        dl = Sym(self.nt.dz(l), (self.size_z(l), 1), atomic=False)
        if l == self.L:
            formula, _ = self.output_delta_formula()
            val = None
            if self.cache is not None and self.y is not None:
                val = _column(self.net.delta(self.x, self.y, self.params))
            return Named(dl, Sym(formula, dl.shape, val, compound=True), notation=self.nt)
        body = Prod([self.activation_jacobian(l).T, self.input_jacobian(l + 1).T, self.delta_symbol(l + 1)])
        return Named(dl, body, notation=self.nt)

    def param_gradient(self, entry) -> Named:
        r""":math:`\nabla_{\theta_p}\ell = (\mathbf J_{\theta_p}\mathbf z^{[l]})^\top\boldsymbol\delta^{[l]}`; for a dense weight the
        mixed-product rule gives :math:`(\mathbf I\otimes\mathbf a)\boldsymbol\delta = \boldsymbol\delta\otimes\mathbf a`
        (= :math:`\operatorname{vec}` of :math:`\mathbf a^{[l-1]}(\boldsymbol\delta^{[l]})^\top` in Damadi's layout)."""
        l = entry.stage
        dl = self.delta_symbol(l)
        J = self.param_jacobian(entry)
        label = Sym(self.nt.grad(self.nt.param(entry.local, l)), (entry.size, 1), atomic=False)
        return Named(label, Prod([J.T, dl]), notation=self.nt)

    def param_gradient_closed(self, entry) -> MatExpr:
        """The closed form of :meth:`param_gradient` (a Kronecker product of vectors for a dense weight)."""
        l = entry.stage
        layer = self.net.stages[l - 1].layer
        d = self.delta_symbol(l)
        if layer.kind == "dense":
            if entry.local == "b":
                return d
            a = self.a(l - 1)
            return Kron(d, a) if entry.order == "C" else Kron(a, d)
        return Prod([self.param_jacobian(entry).T, d])

    def gradient_matrix_form(self, entry) -> str:
        r"""The dense weight gradient in the user's layout: :math:`\mathbf a^{[l-1]}(\boldsymbol\delta^{[l]})^\top`
        (Damadi, ``in_out``) or :math:`\boldsymbol\delta^{[l]}(\mathbf a^{[l-1]})^\top` (Ganev Prop. 3.1 (3.3), Park (18))."""
        l = entry.stage
        nt = self.nt
        d, a = nt.dz(l), nt.a(l - 1)
        if self.net.convention.weight_layout == "in_out":
            return rf"{a}\,{nt.T(d)}"
        return rf"{d}\,{nt.T(a)}"

    def gradient(self) -> Named:
        r""":math:`\nabla_\theta\ell = (\mathbf J_\theta\mathbf z^{[L]})^\top\boldsymbol\delta^{[L]}` (Damadi eq. (1), Alg. 1 line 8)."""
        Jt = self.jacobian_theta()
        label = Sym(self.nt.grad(self.nt.theta), (self.net.n_params, 1), atomic=False)
        return Named(label, Prod([Jt.T, self.delta(self.L)]), notation=self.nt)

    # ------------------------------------------------------------------ rendering helpers
    def equation(self, named: Named, steps: Sequence[int] = (0, 99), shapes: bool = False,
                 space: bool = True) -> str:
        """``label = body(expand=steps[0]) = body(expand=steps[1]) … \\in R^{m×n}`` (identical steps merged)."""
        parts = [render(named.label, self.nt)]
        for s in steps:
            t = render(named.body, self.nt, shapes, s)
            if t not in parts:
                parts.append(t)
        out = " = ".join(parts)
        if space:
            out += r" \in " + (Notation.reals(named.shape[0]) if named.shape[1] == 1 else Notation.reals(*named.shape))
        return out

    def entries(self, expr: MatExpr, max_rows: int = DEFAULT_MAX, max_cols: int = DEFAULT_MAX, precision: int = 4) -> str:
        """Entries level of an expression: through the engine's operator when known, else by evaluation."""
        op = expr.op if isinstance(expr, Named) and expr.op is not None else None
        if op is not None:
            return matrix_latex(op, max_rows, max_cols, precision)
        return matrix_latex(expr.evaluate(), max_rows, max_cols, precision)

    def _check_stage(self, l: int) -> None:
        if not isinstance(l, (int, np.integer)) or not (1 <= l <= self.L):
            raise ValueError(f"NetworkLatex: layer index must be in 1..{self.L} for network {self.net.name!r}, received {l!r}")


# ---------------------------------------------------------------------------- notebook display
def _install_display_printers() -> None:
    """Give the engine's ``_repr_latex_`` hooks their printers (the engine never imports this floor)."""
    from ..engine.jacobian import DISPLAY_PRINTERS

    DISPLAY_PRINTERS["Jacobian"] = lambda J: "$" + jacobian_equation_latex(J) + "$"
    DISPLAY_PRINTERS["Gradient"] = lambda g: "$$" + gradient_latex(g) + "$$"
    DISPLAY_PRINTERS["VerificationReport"] = lambda r: "$$" + verification_table_latex(r, "math") + "$$"


_install_display_printers()
