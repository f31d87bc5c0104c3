r"""The source documents' displayed equations, instantiated for a given network -- corrected.

* :func:`damadi_displayed_equations` -- Damadi et al. §3.1 (one layer), §3.2 (two layers)
  and §3.3 (three layers): :math:`\mathbf J_\theta\mathbf z^{[L]}`, its blocks and the gradient,
  with the sizes of the given network;
* :func:`damadi_algorithm1` -- Algorithm 1, lines 1, 3/4, 7 and 8, for every layer of the
  network;
* :func:`ganev_prop31` -- Ganev's Proposition 3.1, equations (3.1)--(3.4), unrolled for
  :math:`\ell = L,\dots,1`.

Every equation carries an evaluable block expression (:class:`~jacobian_bp.render.latex.MatExpr`)
with the network's values bound, so the tests check it against independent oracles
(central finite differences, autograd).  Where the printed version differs, the
equation also carries the printed form (instantiated with the same sizes), the
differences in words, and -- when the printed formula can be formed at all -- its
expression (``printed_expr``), which the tests show to disagree with the truth; when it
cannot be formed because its factors do not chain, ``printed_error`` says why.

The printed versions are transcribed from the documents (Damadi §3.1--3.3 and Alg. 1;
Ganev §3); the differences are listed in each equation's ``notes``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..engine.conventions import PRESETS
from ..errors import ShapeError, SpecError
from ..backend.escape import escape_text
from .latex import (Eye, HCat, Kron, MatExpr, Named, NetworkLatex, Prod, Sym, VCat, render)
from .notation import Notation, get_notation

__all__ = ["PaperEquation", "PaperEquations", "damadi_displayed_equations", "damadi_algorithm1", "ganev_prop31"]


@dataclass
class PaperEquation:
    """One displayed equation of a source document, instantiated and corrected.

    Attributes
    ----------
    source : str
        Where it is printed (plain text, e.g. ``"Damadi §3.2"``).
    latex : str
        The correct equation (math mode).
    expr : MatExpr or None
        Its right-hand side with values bound (``expr.evaluate()``), when values were given.
    printed : str
        The printed equation with this network's sizes (math mode), only when it differs.
    notes : tuple of str
        The differences, as text with inline ``$…$`` math (valid LaTeX and Markdown).
    printed_expr : MatExpr or None
        The printed formula as an expression, when its factors chain.
    printed_error : str
        Why the printed formula cannot be formed (its factors do not chain), else ``""``; text
        with inline ``$…$`` math like ``notes``.
    """

    source: str
    latex: str
    expr: MatExpr | None = None
    printed: str = ""
    notes: tuple[str, ...] = ()
    printed_expr: MatExpr | None = None
    printed_error: str = ""

    @property
    def differs(self) -> bool:
        return bool(self.printed)

    def to_latex(self) -> str:
        """Text-mode LaTeX: the source, the corrected equation, and (if any) the printed one with notes."""
        out = [r"\paragraph{" + _section_sign(self.source) + "}", r"\begin{equation*}", self.latex, r"\end{equation*}"]
        if self.printed:
            out += [r"\noindent\emph{Printed:}", r"\begin{equation*}", self.printed, r"\end{equation*}"]
        if self.printed_error:
            out.append(r"\noindent The printed formula cannot be formed: " + self.printed_error + r"\par")
        if self.notes:
            out.append(r"\begin{itemize}")
            out += [r"\item " + n for n in self.notes]
            out.append(r"\end{itemize}")
        return "\n".join(out)

    def _repr_markdown_(self) -> str:
        md = [f"**{self.source}**", "", "$$" + self.latex + "$$"]
        if self.printed:
            md += ["", "*Printed:*", "", "$$" + self.printed + "$$"]
        if self.printed_error:
            md += ["", "The printed formula cannot be formed: " + self.printed_error]
        md += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(md)


def _section_sign(s: str) -> str:
    r"""``§`` as an OT1-safe command (``\S`` in text mode would load a bitmap TS1 font)."""
    return s.replace("§", r"\ensuremath{\S}")


def _tex_text(s) -> str:
    """User or engine text (names, error messages) as text-mode LaTeX: always through the one escaper."""
    return escape_text(s)


class PaperEquations(list):
    """A list of :class:`PaperEquation` with a title; renders as a LaTeX section or Markdown."""

    def __init__(self, title: str, items=(), intro: str = ""):
        super().__init__(items)
        self.title = title
        self.intro = intro

    def to_latex(self, section: "str | None" = "subsection") -> str:
        """Text-mode LaTeX; ``section`` is the sectioning command of the title (None: no title)."""
        out = [] if section is None else ["\\" + section + "{" + _section_sign(self.title) + "}"]
        if self.intro:
            out.append(self.intro)
        out += [e.to_latex() for e in self]
        return "\n\n".join(out)

    def _repr_markdown_(self) -> str:
        return "\n\n".join([f"### {self.title}", self.intro] + [e._repr_markdown_() for e in self])


# ------------------------------------------------------------------ helpers
def _require_dense(network, who: str) -> None:
    for st in network.stages:
        if st.layer.affine_weight_name is None:
            raise SpecError(f"{who}: the document's equations are for dense layers; layer {st.index} is {st.layer.kind}")
        if len(st.post) > 1:
            raise SpecError(f"{who}: layer {st.index} has {len(st.post)} activation layers; the document has one per layer")
        if st.index < network.L and st.post and not st.post[0].jacobian_symmetric:
            raise SpecError(f"{who}: hidden activation {st.post[0].kind} of layer {st.index} is not covered by the document")


def _sizes(network) -> list[int]:
    return [network.input_shape[0]] + [st.layer.out_size for st in network.stages]


def _try(build: Callable[[], MatExpr]) -> tuple[MatExpr | None, str]:
    """The printed formula as an expression, or (None, a text-safe reason) when its factors do not chain."""
    try:
        return build(), ""
    except ShapeError as exc:
        return None, _tex_text(str(exc))


def _eq(nl: NetworkLatex, named: Named, steps=(0, 99), shapes=False) -> str:
    return nl.equation(named, steps=steps, shapes=shapes)


def _blockdiag_text(nt: Notation, row: str, n: int) -> str:
    """Damadi's printed block-diagonal matrix with ``row`` on the diagonal."""
    return (r"\begin{bmatrix} " + row + r" & 0 & 0 \\ 0 & \ddots & 0 \\ 0 & 0 & " + row + r" \end{bmatrix}")


def _is_damadi(conv) -> bool:
    """Whether ``conv`` has Damadi's knobs (whatever its user-chosen name)."""
    ref = PRESETS["damadi"]
    return replace(conv, name=ref.name, source=ref.source) == ref


def _convention_note(network) -> tuple[str, ...]:
    if _is_damadi(network.convention):
        return ()
    return ("Rendered in the conventions of the network (" + _tex_text(network.convention.name) + "), "
            "not Damadi's: weight layout, vec order and theta order follow the network.",)


# ------------------------------------------------------------------ Damadi §3.1-3.3
def damadi_displayed_equations(network, params=None, x=None, y=None) -> PaperEquations:
    r"""Damadi's displayed equations of §3.1 (L = 1), §3.2 (L = 2) or §3.3 (L = 3) for ``network``.

    Parameters
    ----------
    network : Network
        Dense layers, one elementwise activation per hidden layer (any output pair).
    params, x, y : optional
        Bind values so that every ``expr`` (and ``printed_expr``) can be evaluated.

    Raises
    ------
    SpecError
        For a non-dense network or ``L > 3`` (use :func:`damadi_algorithm1`).
    """
    _require_dense(network, "damadi_displayed_equations")
    L = network.L
    if L not in (1, 2, 3):
        raise SpecError(f"damadi_displayed_equations: Damadi displays networks of 1, 2 or 3 layers; "
                        f"network {network.name!r} has {L}; use damadi_algorithm1")
    if L == 1:
        return _damadi_31(network, params, x, y)
    if L == 2:
        return _damadi_32(network, params, x, y)
    return _damadi_33(network, params, x, y)


def _damadi_31(network, params, x, y) -> PaperEquations:
    base = get_notation("damadi")
    nt = replace(base, index="none")  # "we can drop superscripts" (§3.1)
    nl = NetworkLatex(network, params, x, y, notation=nt)
    n0, n = _sizes(network)
    th = nt.theta
    Jt = nl.jacobian_theta()
    affine = rf"{nt.T(nt.weight('W', 1))}{nt.x} + {nt.bias(1)}" if network.convention.weight_layout == "in_out" \
        else rf"{nt.weight('W', 1)}{nt.x} + {nt.bias(1)}"
    shown = [str(i) for i in range(1, n + 1)] if n <= 3 else ["1", "2", None, str(n)]
    rows = r" \\ ".join(r"\vdots" if i is None else rf"(\mathbf{{W}}_{{\bullet {i}}})^\top\mathbf{{x}} + b_{{{i}}}" for i in shown)
    eq1 = PaperEquation(
        "Damadi §3.1, the Jacobian of a one-layer network",
        rf"\mathbf{{J}}_{{{th}}}\mathbf{{z}}({th}) = \mathbf{{J}}_{{\mathbf{{W}},\mathbf{{b}}}}\left({affine}\right)"
        rf" = \mathbf{{J}}_{{\mathbf{{W}},\mathbf{{b}}}}\begin{{bmatrix}} {rows} \end{{bmatrix}}"
        rf" = {render(Jt.body, nt)} \in {Notation.reals(n, network.n_params)}",
        Jt.body if x is not None else None,
        printed=rf"\mathbf{{J}}_{{\mathbf{{W}},\mathbf{{b}}}}\begin{{bmatrix}} (\mathbf{{W}}_{{\bullet 1}})^\top + b_1 \\ \vdots \\"
                rf" (\mathbf{{W}}_{{\bullet {n}}})^\top + b_{{{n}}} \end{{bmatrix}} = {_blockdiag_text(nt, nt.T(nt.x), n)}"
                rf" \mathbf{{I}}_{{{n}\times {n}}} \in {Notation.reals(n, network.n_params)}",
        notes=(r"The middle step prints the $i$-th row of $\mathbf{W}^\top\mathbf{x}+\mathbf{b}$ as "
               r"$(\mathbf{W}_{\bullet i})^\top + b_i$; the input is missing: it is $(\mathbf{W}_{\bullet i})^\top\mathbf{x} + b_i$.",
               r"The printed block-diagonal matrix followed by $\mathbf{I}$ is the block row "
               + rf"$[\mathbf{{I}}_{{{n}}}\otimes\mathbf{{x}}^\top \; \mathbf{{I}}_{{{n}}}]$ (the shape "
               + rf"${n}\times {network.n_params}$ is printed correctly).") + _convention_note(network),
    )
    grad = nl.gradient()
    d_formula, _ = nl.output_delta_formula()
    kron_x = Kron(Eye(n), nl.a(0))
    printed_expr, perr = _try(lambda: Prod([kron_x, nl.delta(1)]))
    eq2 = PaperEquation(
        "Damadi §3.1, the gradient of a one-layer network",
        rf"\nabla_{{{th}}}\ell(\mathbf{{y}},\hat{{\mathbf{{y}}}}({th})) = (\mathbf{{J}}_{{{th}}}\mathbf{{z}}({th}))^\top\nabla_{{\mathbf{{z}}}}\ell"
        rf" = {render(grad.body, nt)} \in {Notation.reals(network.n_params)}",
        grad.body if x is not None and y is not None else None,
        printed=rf"-{_blockdiag_text(nt, nt.x, n)}(\mathbf{{y}} - \hat{{\mathbf{{y}}}})",
        notes=(rf"The printed gradient keeps only the weight rows $\mathbf{{I}}_{{{n}}}\otimes\mathbf{{x}}$ "
               rf"(${n * n0}$ entries) and drops the bias rows $\mathbf{{I}}_{{{n}}}$: $\theta$ has ${network.n_params}$ entries.",)
        + ((rf"With this loss, $\nabla_{{\mathbf{{z}}}}\ell = {d_formula}$ (Damadi Table 1 writes $-(\mathbf{{y}}-\hat{{\mathbf{{y}}}})$ "
            r"for the matched pairs).",) if network.matched else ()),
        printed_expr=printed_expr if (x is not None and y is not None) else None, printed_error=perr,
    )
    return PaperEquations("Damadi §3.1: one-layer network", [eq1, eq2],
                          intro=f"Network: {n0} inputs, {n} outputs; $|\\theta| = {network.n_params}$.")


def _damadi_32(network, params, x, y) -> PaperEquations:
    nt = get_notation("damadi")
    nl = NetworkLatex(network, params, x, y, notation=nt)
    n0, n1, n2 = _sizes(network)
    bound = x is not None
    Jt = nl.jacobian_theta()
    g2, g1 = ([e for e in network.entries if e.stage == k] for k in (2, 1))
    B2, B1 = nl.block(g2), nl.block(g1)
    th = nt.theta
    W2, W1 = nt.weight("W", 2), nt.weight("W", 1)
    eqs = [
        PaperEquation("Damadi §3.2, the blocks of the Jacobian",
                      rf"\mathbf{{J}}_{{{th}}}\mathbf{{z}}^{{[2]}}({th}) = {render(Jt.body, nt, expand=0)} \in {Notation.reals(n2, network.n_params)}",
                      Jt.body if bound else None, notes=_convention_note(network)),
        PaperEquation("Damadi §3.2, the second layer's block",
                      rf"{render(B2.label, nt)} = \mathbf{{J}}_{{{W2},\mathbf{{b}}^{{[2]}}}}\left({nt.T(W2)}{nt.a(1)} + \mathbf{{b}}^{{[2]}}\right)"
                      rf" = {render(B2.body, nt)} \in {Notation.reals(*B2.shape)}",
                      B2.body if bound else None),
        PaperEquation("Damadi §3.2, the first layer's block (chain rule)",
                      rf"{render(B1.label, nt)} = {nt.T(W2)}\,\mathbf{{J}}_{{\mathbf{{z}}^{{[1]}}}}\left(\mathbf{{f}}^{{[1]}}(\mathbf{{z}}^{{[1]}})\right)"
                      rf"\mathbf{{J}}_{{{W1},\mathbf{{b}}^{{[1]}}}}\left({nt.T(W1)}\mathbf{{x}} + \mathbf{{b}}^{{[1]}}\right)"
                      rf" = {render(B1.body, nt)} \in {Notation.reals(*B1.shape)}",
                      B1.body if bound else None),
    ]
    grad = nl.gradient()
    valued = bound and y is not None

    def printed_build():
        # the printed block order: first layer's rows on top, then the second layer's
        return Prod([VCat([B1.T, B2.T]), nl.delta(2)])

    pexpr, perr = _try(printed_build)
    eqs.append(PaperEquation(
        "Damadi §3.2, the gradient",
        rf"\nabla_{{{th}}}\ell(\mathbf{{y}},\hat{{\mathbf{{y}}}}({th})) = (\mathbf{{J}}_{{{th}}}\mathbf{{z}}^{{[2]}}({th}))^\top"
        rf"\nabla_{{\mathbf{{z}}^{{[2]}}}}\ell(\mathbf{{y}},\mathbf{{f}}(\mathbf{{z}}^{{[2]}})) = {render(grad.body, nt)}",
        grad.body if valued else None,
        printed=(rf"\nabla_{{{th}}}\ell = (\mathbf{{J}}_{{{th}}}\mathbf{{z}}^{{[2]}}({th}))^\top\nabla_{{\mathbf{{z}}^{{[3]}}}}\ell(\mathbf{{y}},\mathbf{{f}}(\mathbf{{z}}^{{[2]}}))"
                 rf" = -\begin{{bmatrix}} {_blockdiag_text(nt, nt.x, n1)}\mathbf{{I}}_{{{n1}\times {n1}}}"
                 rf"\left(\mathbf{{J}}_{{\mathbf{{z}}^{{[1]}}}}(\mathbf{{f}}^{{[1]}}(\mathbf{{z}}^{{[1]}}))\right)^\top {W2} \\"
                 rf" {_blockdiag_text(nt, nt.a(1), n2)}\mathbf{{I}}_{{{n2}\times {n2}}} \end{{bmatrix}}(\mathbf{{y}}-\hat{{\mathbf{{y}}}})"),
        notes=(r"The gradient with respect to $\mathbf{z}^{[2]}$ is printed as $\nabla_{\mathbf{z}^{[3]}}\ell$; the network has no $\mathbf{z}^{[3]}$.",
               r"The printed rows put the first layer's parameters on top, but $\theta$ is ordered "
               r"$[\mathbf{W}^{[2]},\mathbf{b}^{[2]},\mathbf{W}^{[1]},\mathbf{b}^{[1]}]$ (the block row "
               r"$\mathbf{J}_\theta\mathbf{z}^{[2]}$ of the same section and Alg. 1 line 7): "
               r"$(\mathbf{J}_\theta\mathbf{z}^{[2]})^\top$ lists the second layer first.",
               r"The transpose of a block row $[\mathbf{A}\;\mathbf{I}]$ is the block column with $\mathbf{A}^\top$ "
               r"above $\mathbf{I}$; the printed $\mathbf{I}$ stands beside the block.") + _convention_note(network),
        printed_expr=pexpr if valued else None, printed_error=perr,
    ))
    return PaperEquations("Damadi §3.2: two-layer network", eqs,
                          intro=f"Network: ${n0}\\to {n1}\\to {n2}$; $|\\theta| = {network.n_params}$.")


def _damadi_33(network, params, x, y) -> PaperEquations:
    nt = get_notation("damadi")
    nl = NetworkLatex(network, params, x, y, notation=nt)
    n0, n1, n2, n3 = _sizes(network)
    bound = x is not None
    valued = bound and y is not None
    th = nt.theta
    Jt = nl.jacobian_theta()
    grad = nl.gradient()
    W2, W3 = nt.weight("W", 2), nt.weight("W", 3)
    Jf = [None] + [rf"\left(\mathbf{{J}}_{{\mathbf{{z}}^{{[{k}]}}}}(\mathbf{{f}}^{{[{k}]}}(\mathbf{{z}}^{{[{k}]}}))\right)^\top" for k in (1, 2, 3)]
    printed = (rf"\nabla_{{{th}}}\ell = -\begin{{bmatrix}} {_blockdiag_text(nt, nt.x, n1)} {Jf[1]} {W2} {Jf[2]} {W3} \\"
               rf" \mathbf{{I}}_{{{n1}\times {n1}}} {_blockdiag_text(nt, nt.a(2), n2)} {Jf[2]} {W3} \\"
               rf" \mathbf{{I}}_{{{n2}\times {n2}}} {_blockdiag_text(nt, nt.a(3), n3)} {Jf[3]} {W3} \\"
               rf" \mathbf{{I}}_{{{n3}\times {n3}}} \end{{bmatrix}}(\mathbf{{y}}-\hat{{\mathbf{{y}}}})")

    def printed_build():
        # the printed third-layer row: [I (x) a^[3]] (J_z3 f3)^T W^[3] -- W^[3] is n2 x n3 in Damadi's layout
        a3 = Sym(nt.a(3), (n3, 1), None)
        Jf3 = nl.activation_jacobian(3)
        W3s = nl.input_jacobian(3).T
        return Prod([Kron(Eye(n3), a3), Jf3.T, W3s])

    _, perr = _try(printed_build)
    if perr:
        perr = (rf"its third row multiplies $(\mathbf{{J}}_{{\mathbf{{z}}^{{[3]}}}}\mathbf{{f}}^{{[3]}})^\top\in\mathbb{{R}}^{{{n3}\times {n3}}}$ "
                rf"by $\mathbf{{W}}^{{[3]}}\in\mathbb{{R}}^{{{n2}\times {n3}}}$ (Damadi's layout): the factors do not chain.")
    eqs = [
        PaperEquation("Damadi §3.3, the blocks of the Jacobian",
                      rf"\mathbf{{J}}_{{{th}}}\mathbf{{z}}^{{[3]}}({th}) = {render(Jt.body, nt, expand=0)} \in {Notation.reals(n3, network.n_params)}",
                      Jt.body if bound else None, notes=_convention_note(network)),
        PaperEquation(
            "Damadi §3.3, the gradient",
            rf"\nabla_{{{th}}}\ell(\mathbf{{y}},\hat{{\mathbf{{y}}}}({th})) = (\mathbf{{J}}_{{{th}}}\mathbf{{z}}^{{[3]}}({th}))^\top"
            rf"\nabla_{{\mathbf{{z}}^{{[3]}}}}\ell = {render(grad.body, nt)}",
            grad.body if valued else None,
            printed=printed,
            notes=(r"The printed rows start with the first layer, but $\theta$ starts with the third layer "
                   r"(the block row $\mathbf{J}_\theta\mathbf{z}^{[3]}$ just above and Alg. 1 line 7).",
                   r"The second and third layers' weight rows use $\mathbf{a}^{[2]}$ and $\mathbf{a}^{[3]}$; the inputs of "
                   r"these layers are $\mathbf{a}^{[1]}$ and $\mathbf{a}^{[2]}$ (as in §3.2, where layer 2 uses $\mathbf{a}^{[1]}$): "
                   rf"$\mathbf{{I}}_{{{n2}}}\otimes\mathbf{{a}}^{{[2]}}$ has ${n2 * n2}$ rows, $\mathbf{{W}}^{{[2]}}$ has ${n1 * n2}$ entries.",
                   r"The third layer's row carries an extra factor $(\mathbf{J}_{\mathbf{z}^{[3]}}\mathbf{f}^{[3]})^\top\mathbf{W}^{[3]}$; "
                   r"$\mathbf{z}^{[3]}$ depends on $\mathbf{W}^{[3]},\mathbf{b}^{[3]}$ directly, so that block is "
                   rf"$[\mathbf{{I}}_{{{n3}}}\otimes\mathbf{{a}}^{{[2]}};\,\mathbf{{I}}_{{{n3}}}]$.",
                   r"The bias identities $\mathbf{I}_{300\times 300}$, $\mathbf{I}_{100\times 100}$, $\mathbf{I}_{10\times 10}$ "
                   r"are printed at the start of the next row instead of under each layer's weight rows.",
                   r"The section calls the network LeNet-100-300 with 100 units in the first layer and 300 in the second, "
                   r"but its identities ($\mathbf{I}_{300\times 300}$ for the first layer) and LeCun et al. (1998) have "
                   r"300 units first: LeNet-300-100.") + _convention_note(network),
            printed_error=perr,
        ),
    ]
    return PaperEquations("Damadi §3.3: three-layer network", eqs,
                          intro=f"Network: ${n0}\\to {n1}\\to {n2}\\to {n3}$; $|\\theta| = {network.n_params}$.")


# ------------------------------------------------------------------ Damadi Algorithm 1
def damadi_algorithm1(network, params=None, x=None, y=None) -> PaperEquations:
    r"""Damadi's Algorithm 1 instantiated for ``network``: line 1, line 3 for every
    :math:`l < L`, line 4, line 7 and line 8, each corrected, with the printed form and notes."""
    _require_dense(network, "damadi_algorithm1")
    nt = get_notation("damadi")
    nl = NetworkLatex(network, params, x, y, notation=nt)
    L = network.L
    n = _sizes(network)
    bound = x is not None
    valued = bound and y is not None
    th = nt.theta
    eqs = []
    formula, src = nl.output_delta_formula()
    eqs.append(PaperEquation(
        "Damadi Alg. 1, line 1",
        rf"\nabla_{{{nt.z(L)}}}\ell(\mathbf{{y}},\mathbf{{f}}(\mathbf{{z}}^{{[{L}]}})) = {formula} \in {Notation.reals(n[L])}",
        nl.delta(L).body if valued else None, notes=(f"The closed form of the {src}.",) if network.matched else ()))
    groups = {g[0].stage: g for g in nl.stage_groups()}
    for l in range(1, L + 1):
        g = groups.get(l)
        if g is None or len({e.stage for e in g}) != 1 or len(g) != len([e for e in network.entries if e.stage == l]):
            g = [e for e in network.entries if e.stage == l]
        B = nl.block(g)
        if l < L:
            chain_printed = rf"({nt.weight('W', L)})^\top " + " ".join(
                rf"\mathbf{{J}}_{{\mathbf{{W}}^{{[{k}]}},\mathbf{{b}}^{{[{k}]}}}}(\mathbf{{f}}^{{[{k}]}}(\mathbf{{z}}^{{[{k}]}}))"
                for k in range(L - 1, l - 1, -1))
            printed = (rf"\mathbf{{J}}_{{\mathbf{{W}}^{{[{l}]}},\mathbf{{b}}^{{[{l}]}}}}(\mathbf{{z}}^{{[{l}]}}) = {chain_printed}"
                       rf" {_blockdiag_text(nt, nt.T(nt.a(l)), n[l])} \mathbf{{I}}")

            def build(l=l):
                a_l = nl.a(l)
                local = HCat([Kron(Eye(n[l]), a_l.T), Eye(n[l])])
                # charitable reading of the printed chain: every weight and activation factor present;
                # the remaining (unambiguous) difference is the Kronecker block's (a^[l])^T
                facs = []
                for k in range(L, l, -1):
                    facs += [nl.input_jacobian(k), nl.activation_jacobian(k - 1)]
                return Prod(facs + [local])

            pexpr, perr = _try(build)
            notes = [rf"Left-hand side: the block of the output Jacobian is $\mathbf{{J}}_{{\mathbf{{W}}^{{[{l}]}},\mathbf{{b}}^{{[{l}]}}}}\mathbf{{z}}^{{[{L}]}}$, "
                     rf"not $\ldots(\mathbf{{z}}^{{[{l}]}})$."]
            notes.append(r"The activation factors must be $\mathbf{J}_{\mathbf{z}^{[k]}}(\mathbf{f}^{[k]}(\mathbf{z}^{[k]}))$; "
                         r"the printed line differentiates them with respect to $\mathbf{W}^{[k]},\mathbf{b}^{[k]}$.")
            if L - l >= 2:
                notes.append(rf"Every weight $(\mathbf{{W}}^{{[k]}})^\top$, $k = {L},\dots,{l + 1}$, must stand between "
                             r"the activation factors; the printed line shows only $(\mathbf{W}^{[L]})^\top$ explicitly.")
            notes.append(rf"The Kronecker block uses the layer's input $(\mathbf{{a}}^{{[{l - 1}]}})^\top$"
                         + (r" $= \mathbf{x}^\top$" if l == 1 else "") + rf", not $(\mathbf{{a}}^{{[{l}]}})^\top$"
                         + (rf": with $\mathbf{{a}}^{{[{l}]}}\in\mathbb{{R}}^{{{n[l]}}}$ the block would have "
                            rf"${n[l] * n[l] + n[l]}$ columns, $\theta_{l}$ has ${n[l - 1] * n[l] + n[l]}$."
                            if n[l] != n[l - 1] else "."))
            eqs.append(PaperEquation(
                f"Damadi Alg. 1, line 3 ($l = {l}$)", nl.equation(B, steps=(99,)),
                B.body if bound else None, printed=printed, notes=tuple(notes),
                printed_expr=pexpr if bound else None, printed_error=perr))
        else:
            printed = (rf"\mathbf{{J}}_{{\mathbf{{W}}^{{[{L}]}},\mathbf{{b}}^{{[{L}]}}}}(\mathbf{{z}}^{{[{L}]}}) = "
                       rf"{_blockdiag_text(nt, nt.T(nt.a(L)), n[L])}\mathbf{{I}}")

            def build_last():
                return HCat([Kron(Eye(n[L]), nl.a(L).T), Eye(n[L])])

            pexpr, perr = _try(build_last)
            eqs.append(PaperEquation(
                f"Damadi Alg. 1, line 4 ($l = L = {L}$)", nl.equation(B, steps=(99,)), B.body if bound else None,
                printed=printed,
                notes=(rf"The Kronecker block uses the last layer's input $(\mathbf{{a}}^{{[{L - 1}]}})^\top$"
                       + (r" $= \mathbf{x}^\top$" if L == 1 else "") + rf", not $(\mathbf{{a}}^{{[{L}]}})^\top$.",),
                printed_expr=pexpr if bound else None, printed_error=perr))
    Jt = nl.jacobian_theta()
    line7_differs = L != 2
    eqs.append(PaperEquation(
        "Damadi Alg. 1, line 7",
        rf"\mathbf{{J}}_{{{th}}}\mathbf{{z}}^{{[{L}]}}({th}) = {render(Jt.body, nt, expand=0)} \in {Notation.reals(n[L], network.n_params)}",
        Jt.body if bound else None,
        printed=(rf"\mathbf{{J}}_{{{th}}}\mathbf{{z}}^{{[{L}]}}({th}) = \left[\mathbf{{J}}_{{\mathbf{{W}}^{{[{L}]}},\mathbf{{b}}^{{[{L}]}}}}"
                 rf"(\mathbf{{z}}^{{[{L}]}}({th})) \; \cdots \; \mathbf{{J}}_{{\mathbf{{W}}^{{[1]}},\mathbf{{b}}^{{[1]}}}}(\mathbf{{z}}^{{[2]}}({th}))\right]")
        if line7_differs else "",
        notes=(rf"The last block is printed as a Jacobian of $\mathbf{{z}}^{{[2]}}$; every block is a Jacobian of $\mathbf{{z}}^{{[{L}]}}$.",)
        if line7_differs else ()))
    grad = nl.gradient()
    eqs.append(PaperEquation(
        "Damadi Alg. 1, line 8",
        rf"\nabla_{{{th}}}\ell(\mathbf{{y}},\hat{{\mathbf{{y}}}}({th})) = {render(grad.body, nt, expand=0)}",
        grad.body if valued else None))
    sizes = r"\to ".join(str(v) for v in n)
    return PaperEquations("Damadi Algorithm 1, instantiated", eqs,
                          intro=f"Network: ${sizes}$; $|\\theta| = {network.n_params}$, blocks in the order of the "
                                "network's convention (" + _tex_text(network.convention.name) + ").")


# ------------------------------------------------------------------ Ganev Prop. 3.1
def _jac_value(layer, z, a):
    op = layer.jac_input(z, a, {})
    if op.symbolic:
        return np.array(op.to_sympy().tolist(), dtype=object)
    return op.to_dense()


def ganev_prop31(network, params=None, x=None, y=None) -> PaperEquations:
    r"""Ganev's Proposition 3.1 unrolled for ``network`` (:math:`\ell = L,\dots,1`), in Ganev's notation.

    .. math::
        \nabla_{\mathbf z_L}\mathcal L = \mathrm{Jac}_L^T\nabla_{\hat y}C(-,y),\quad
        \nabla_{\mathbf z_{\ell-1}}\mathcal L = \mathrm{Jac}_{\ell-1}^T W_\ell^T\nabla_{\mathbf z_\ell}\mathcal L,\quad
        \nabla_{W_\ell}\mathcal L = \nabla_{\mathbf z_\ell}\mathcal L\,\mathbf a_{\ell-1}^T,\quad
        \nabla_{b_\ell}\mathcal L = \nabla_{\mathbf z_\ell}\mathcal L

    with Ganev's :math:`W_\ell\in\mathbb R^{n_\ell\times n_{\ell-1}}` (for a network in Damadi's layout,
    :math:`W_\ell = (\mathbf W^{[\ell]})^\top`).  Gradients w.r.t. :math:`W_\ell` are matrices of that shape.
    """
    _require_dense(network, "ganev_prop31")
    nt = get_notation("ganev")
    L = network.L
    n = _sizes(network)
    bound = x is not None
    valued = bound and y is not None
    cache = canon = None
    if bound:
        Xb, _, single = network.as_batch(x)
        if not single:
            raise ShapeError(f"ganev_prop31: expected one sample of shape {network.input_shape}, received {np.shape(x)}")
        canon = network.canonical_params(params)
        cache = network.forward_cache(Xb, canon)

    def col(v):
        return None if v is None else np.asarray(v).reshape(-1, 1)

    def W(l):
        return Sym(nt.weight("W", l), (n[l], n[l - 1]), None if canon is None else canon[f"W{l}"])

    def a(l):
        return Sym(nt.a(l), (n[l], 1), None if cache is None else col(cache.a[l][0]))

    def jac(l):
        st = network.stages[l - 1]
        val = None
        if cache is not None:
            val = np.eye(n[l]) if not st.post else _jac_value(st.post[0], cache.z[l][0], cache.a[l][0])
        body = "I" if not st.post else ("diag" if st.post[0].elementwise else "")
        symmetric = not st.post or st.post[0].jacobian_symmetric
        return Sym(nt.act_jac_name(l), (n[l], n[l]), val, symmetric=symmetric), body

    grads: dict[int, Sym] = {}
    eqs = []
    # (3.1)
    JL, kindL = jac(L)
    gy_val = None
    if valued:
        Yb = network.as_batch(x, y)[1]
        gy_val = col(network.loss.grad_yhat(Yb, cache.a[L])[0])
    gyhat = Sym(r"\nabla_{\hat{y}}C(-,y)", (n[L], 1), gy_val, compound=False, atomic=False)
    e31 = Prod([JL.T, gyhat])
    gL_val = e31.evaluate() if valued else None
    grads[L] = Sym(nt.grad(nt.z(L)), (n[L], 1), gL_val, atomic=False)
    closed = ""
    if network.matched:
        closed = " = " + NetworkLatex(network, notation=nt).output_delta_formula()[0]
    eqs.append(PaperEquation(rf"Ganev Prop. 3.1 (3.1), $\ell = {L}$",
                             rf"{nt.grad(nt.z(L))} = {nt.T(nt.act_jac_name(L))} \nabla_{{\hat{{y}}}}C(-,y){closed} \in {Notation.reals(n[L])}",
                             e31 if valued else None))
    for l in range(L, 0, -1):
        g = grads[l]
        dW = Prod([g, a(l - 1).T])
        eqs.append(PaperEquation(rf"Ganev Prop. 3.1 (3.3), $\ell = {l}$",
                                 rf"{nt.grad(nt.weight('W', l))} = {nt.grad(nt.z(l))}\, {nt.T(nt.a(l - 1))} \in {Notation.reals(n[l], n[l - 1])}",
                                 dW if valued else None,
                                 notes=(r"For a network in Damadi's layout, this is the transpose of "
                                        rf"$\nabla_{{\mathbf{{W}}^{{[{l}]}}}}\ell = {get_notation('damadi').a(l - 1)}"
                                        rf"(\boldsymbol{{\delta}}^{{[{l}]}})^\top$.",)
                                 if network.convention.weight_layout == "in_out" else ()))
        eqs.append(PaperEquation(rf"Ganev Prop. 3.1 (3.4), $\ell = {l}$",
                                 rf"{nt.grad(nt.bias(l))} = {nt.grad(nt.z(l))} \in {Notation.reals(n[l])}",
                                 g if valued else None))
        if l > 1:
            Jm, kind = jac(l - 1)
            e32 = Prod([Jm.T, W(l).T, g])
            grads[l - 1] = Sym(nt.grad(nt.z(l - 1)), (n[l - 1], 1), e32.evaluate() if valued else None, atomic=False)
            what = {"diag": rf" = \operatorname{{diag}}\sigma_{{{l - 1}}}'(\mathbf{{z}}_{{{l - 1}}})",
                    "I": rf" = \mathbf{{I}}_{{{n[l - 1]}}}"}.get(kind, "")
            eqs.append(PaperEquation(rf"Ganev Prop. 3.1 (3.2), $\ell = {l}$",
                                     rf"{nt.grad(nt.z(l - 1))} = {nt.T(nt.act_jac_name(l - 1))} {nt.T(nt.weight('W', l))} {nt.grad(nt.z(l))}"
                                     rf" \in {Notation.reals(n[l - 1])}, \qquad {nt.act_jac_name(l - 1)}{what}",
                                     e32 if valued else None))
    intro = (r"Ganev's notation: $\mathbf{z}_\ell = W_\ell\mathbf{a}_{\ell-1} + b_\ell$, $\mathbf{a}_\ell = \sigma_\ell(\mathbf{z}_\ell)$, "
             r"$\mathrm{Jac}_\ell = d(\sigma_\ell)_{\mathbf{z}_\ell}$, $W_\ell\in\mathbb{R}^{n_\ell\times n_{\ell-1}}$. "
             r"Proposition 3.1 is correct as stated; Ganev's Algorithm 1 has two slips: line 4 computes "
             r"$\mathrm{Jacobian}(\sigma_L, \mathbf{z}_\ell)$ for $\mathrm{Jacobian}(\sigma_\ell, \mathbf{z}_\ell)$ and line 6 "
             r"evaluates the cost gradient at $\sigma_L(x_L)$ for $\sigma_L(\mathbf{z}_L)$.")
    if network.convention.weight_layout == "in_out":
        intro += r" The network stores Damadi's $\mathbf{W}^{[\ell]} = W_\ell^T$."
    return PaperEquations("Ganev Proposition 3.1, unrolled", eqs, intro=intro)
