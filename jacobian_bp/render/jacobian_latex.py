r"""LaTeX of a bare Jacobian (its block form inferred from operator structure and spaces), of products of
Jacobians, of gradients and of verification reports.  Re-exported by :mod:`jacobian_bp.render.latex`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import sympy

from ..errors import ShapeError
from ..backend.escape import check_math, escape_mathjax, escape_text
from .notation import Notation, get_notation
from ..backend import operators as ops
from ..engine.chain import LeftChain

from .entries import DEFAULT_MAX, _check_max, matrix_latex
from .matrix_expr import MatExpr, Sym, Eye, Zeros, Kron, Prod, HCat, VCat, render


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
        sym = nt.param(e.local, e.stage)  # W.1 of stage 2 is W^{[2.1]}
        v = np.asarray(gradient.params[e.name])
        v = v if v.ndim <= 2 else v.reshape(v.shape[0], -1)  # a convolution kernel: one row per output channel
        lines.append(rf"{nt.cost_grad(sym)} &= {matrix_latex(v, max_rows, max_cols, precision)}"
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
