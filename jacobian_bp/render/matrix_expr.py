r"""Block level of the LaTeX renderer: a small matrix-expression tree with shapes and optional values.

:class:`MatExpr` nodes (:class:`Sym`, :class:`Eye`, :class:`Kron`, :class:`Prod`, :class:`HCat`,
:class:`VCat`, :class:`Named`, ...) know their shapes -- a product of mismatched factors is refused --
and, when values are bound, can be *evaluated*, so every rendered formula can be checked numerically
against the engine.  :func:`render` writes an expression as LaTeX.  Re-exported by
:mod:`jacobian_bp.render.latex`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import sympy

from ..errors import JacobianBPError, ShapeError
from .notation import Notation, get_notation, sub



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

    def __add__(self, other: "MatExpr") -> "Sum":
        r""":math:`\mathbf A + \mathbf B` (shapes checked; sums are flattened): a residual block's ``skip_sum(I, J)``."""
        if not isinstance(other, MatExpr):
            return NotImplemented
        terms = [t for e in (self, other) for t in (e.terms if isinstance(e, Sum) else [e])]
        return Sum(terms)

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
            while isinstance(g, Named) and c.expand > 0 and not g.defined:
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


class Sum(MatExpr):
    r"""A sum of blocks of one shape, :math:`\mathbf I + \mathbf J_{\mathbf a}\mathbf g` (a residual block's input Jacobian);
    parenthesized inside products and transposes."""

    prec = 0

    def __init__(self, terms: Sequence[MatExpr]):
        terms = list(terms)
        if not terms:
            raise ShapeError("Sum: needs at least one term")
        for t in terms:
            if not isinstance(t, MatExpr):
                raise TypeError(f"Sum: terms must be block expressions, received {type(t).__name__}")
            if t.shape != terms[0].shape:
                raise ShapeError(f"Sum: terms of different shapes: {terms[0]!r} and {t!r}")
        self.terms = terms
        self.shape = terms[0].shape

    @property
    def T(self):
        return Sum([t.T for t in self.terms])

    def leaves(self):
        for t in self.terms:
            yield from t.leaves()

    def evaluate(self):
        out = self.terms[0].evaluate()
        for t in self.terms[1:]:
            out = out + t.evaluate()
        return out

    def tex(self, ctx):
        return " + ".join(_paren(t, _Ctx(ctx.notation, ctx.shapes, ctx.expand), 1) for t in self.terms)


class HCat(MatExpr):
    r"""A block row :math:`[\mathbf A\;\mathbf B]` (Damadi Alg. 1 line 7).

    ``groups`` (optional, one key per block, e.g. the layer of each parameter block) separates blocks of
    different groups by a visible bar, :math:`\left[\mathbf A\;\mathbf B\;\middle|\;\mathbf C\;\mathbf D\right]`,
    so that the blocks of two layers do not read as a product :math:`[\mathbf A\;\mathbf B][\mathbf C\;\mathbf D]`.
    """

    def __init__(self, blocks: Sequence[MatExpr], groups: Sequence | None = None):
        blocks = list(blocks)
        if not blocks:
            raise ShapeError("HCat: needs at least one block")
        rows = {b.shape[0] for b in blocks}
        if len(rows) != 1:
            raise ShapeError("HCat: blocks have different numbers of rows: " + ", ".join(repr(b) for b in blocks))
        if groups is not None and len(list(groups)) != len(blocks):
            raise ShapeError(f"HCat: {len(list(groups))} group keys for {len(blocks)} blocks")
        self.blocks = blocks
        self.groups = None if groups is None else list(groups)
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
        sep = r" \quad " if labels else r" \; "
        if self.groups is not None and len(set(map(str, self.groups))) > 1:  # a bar between the groups (layers)
            body = parts[0]
            for prev, g, p in zip(self.groups[:-1], self.groups[1:], parts[1:]):
                body += (r" \;\middle|\; " if str(g) != str(prev) else sep) + p
            return r"\left[" + body + r"\right]"
        body = sep.join(parts)
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
    used for entries-level rendering without evaluating the tree.  A *defined* factor
    (``defined=True``: a document states its formula once, e.g. a LayerNorm's or an attention
    layer's Jacobian inside a block) is always rendered as its label inside other expressions;
    ``render(named.body)`` writes its definition.
    """

    def __init__(self, label: "MatExpr | str", body: MatExpr, op=None, notation: Notation | None = None,
                 defined: bool = False):
        self.notation = notation
        self.defined = bool(defined)
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
        return Named(self.label.T, self.body.T, None if self.op is None else self.op.T, self.notation, self.defined)

    def leaves(self):
        yield from self.body.leaves()

    def evaluate(self):
        return self.body.evaluate()

    def tex(self, ctx):
        if ctx.expand <= 0 or self.defined:
            return _tex(self.label, ctx)
        return _tex(self.body, _Ctx(ctx.notation, ctx.shapes, ctx.expand - 1))

    def label_tex(self, notation=None) -> str:
        return render(self.label, notation)


def _effective_prec(e: MatExpr, ctx: _Ctx) -> int:
    if isinstance(e, Named):
        return 3 if (ctx.expand <= 0 or e.defined) else _effective_prec(e.body, _Ctx(ctx.notation, ctx.shapes, ctx.expand - 1))
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
    if isinstance(e, Sum):
        return e.terms
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
