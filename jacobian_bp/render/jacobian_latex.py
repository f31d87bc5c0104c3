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
        return HCat([jacobian_block_expr(b, nt) for b in J.blocks], groups=[_layer_of_space(b.input) for b in J.blocks])
    if J.blocks and isinstance(J.op, ops.VStack):
        return VCat([jacobian_block_expr(b, nt) for b in J.blocks])
    if J.factors:
        return Prod([jacobian_block_expr(f, nt) for f in J.factors])
    return _infer(J.op, J.output.name, J.input.name, nt, jacobian_symbol(J, notation))


def display_notation_of(J):
    """The notation a Jacobian should be displayed in: the one its network marked on it (``display_notation``,
    set by :mod:`jacobian_bp.engine.algorithm1`), or its factors' / blocks' mark; None when unmarked."""
    stack, seen = [J], 0
    while stack and seen < 64:
        j = stack.pop(0)
        seen += 1
        mark = getattr(j, "display_notation", None)
        if mark is not None:
            return mark
        stack.extend(list(getattr(j, "factors", ())) + list(getattr(j, "blocks", ())))
    return None


def space_tex(space, nt: Notation) -> str:
    r"""The LaTeX of a network's named space in the notation ``nt``: ``z[2]`` is :math:`\mathbf z^{(2)}` under
    ``pytorch``, ``vec W[1]`` is :math:`\operatorname{vec}W_1` under ``ganev``, ``theta`` is :math:`\boldsymbol\theta`;
    a composite space lists its parts; a name it does not know keeps the space's own LaTeX."""
    import re

    from ..layers.base import default_param_role

    name = space.name
    if name == "theta":
        return nt.theta
    if name == "x":
        return nt.x
    m = re.fullmatch(r"theta\[(\d+)\]", name)
    if m and space.parts:
        wrt = ",".join(space_tex(p, nt) for p in space.parts)
        return f"({wrt})" if (len(space.parts) > 1 and nt.jacobian != "J") else wrt
    m = re.fullmatch(r"(vec )?([A-Za-z][A-Za-z0-9_]*)\[(\d+(?:\.\d+)*)\]", name)
    if not m:
        return space.latex
    vec, base, tag = m.groups()
    if not vec and base in ("z", "a"):
        return nt.z(tag) if base == "z" else (nt.vec("a", tag) if tag == "0" else nt.a(tag))
    if not vec and base != "b":
        return space.latex
    sym = nt.param(base, tag)
    if vec and len(space.shape) > 1 and default_param_role(base) != "bias":
        return rf"\operatorname{{vec}}{sym}"
    return sym


def jacobian_symbol(J, notation=None) -> str:
    r"""The symbol of ``J`` (:math:`\mathbf J_{\text{input}}\text{output}`) in a notation: its own ``symbol``
    (Damadi's, validated) when the notation is None or Damadi's, else rebuilt from its spaces (:func:`space_tex`)."""
    if notation is None:
        return _symbol(J)
    nt = get_notation(notation)
    if nt.name == "damadi":
        return _symbol(J)
    return nt.jac(space_tex(J.output, nt), space_tex(J.input, nt))


def _layer_of_space(space) -> str:
    """The layer of a parameter space from its name (``vec W[2]`` and ``b[2.1]`` belong to layer 2), else its name."""
    import re

    m = re.fullmatch(r"(?:vec )?[A-Za-z][A-Za-z0-9_]*\[(\d+)(?:\.[\d.]+)?\]", space.name)
    return m.group(1) if m else space.name


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
    if notation is None:  # the notation of the network that made it (a pytorch network prints in its own)
        notation = display_notation_of(J)
    symbol = jacobian_symbol(J, notation)
    parts = [symbol]
    if level in ("auto", "block", "both"):
        e = jacobian_block_expr(J, notation)
        if not _opaque(e, symbol):
            parts.append(render(e, notation, shapes))
    small = J.shape[0] <= max_rows and J.shape[1] <= max_cols
    if level in ("entries", "both") or (level == "auto" and small):
        parts.append(matrix_latex(_named_entries(J, max_rows, max_cols), max_rows, max_cols, precision))
    return " = ".join(parts) + r" \in " + Notation.reals(*J.shape)


def _named_entries(J, max_rows: int, max_cols: int):
    r"""What the entries level shows: a symbolic :math:`\mathbf J_\theta\mathbf z^{[L]}` of a
    :class:`~jacobian_bp.symbolic.networks.SymbolicNetwork` in named form (:math:`a^{[l]}_i`, :math:`z^{[l]}_i` kept,
    :meth:`~jacobian_bp.symbolic.blocks.BlockChain.explicit`) when it fits the elision window, else ``J`` itself."""
    snet = getattr(J, "symbolic_network", None)
    if snet is None or J.shape[0] * J.shape[1] > 4096:
        return J
    from ..symbolic.blocks import BlockChain

    named = BlockChain(snet.network).explicit(snet)
    return np.array(named.tolist(), dtype=object) if named.shape == J.shape else J


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
        sym = nt.param(e.local, e.stage, net.stages[e.stage - 1].layer)  # W.1 of stage 2 is W^{[2.1]}
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
    symbols = {e.name: nt.param(e.local, e.stage, net.stages[e.stage - 1].layer) for e in net.entries}
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
