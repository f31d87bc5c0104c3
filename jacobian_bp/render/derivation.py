r"""A whole derivation as a standalone LaTeX article, and its compilation with pdflatex.

:func:`derivation_document` writes, for any network, parameters and data:

1. the network, its convention and the layout of :math:`\theta`;
2. the forward pass (:math:`\mathbf z^{[l]}`, :math:`\mathbf a^{[l]}`, with values);
3. each layer's Jacobians :math:`\mathbf J_{\theta_l}\mathbf z^{[l]}`, :math:`\mathbf J_{\mathbf a^{[l-1]}}\mathbf z^{[l]}`,
   :math:`\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}` at the block level (shapes under every factor) and
   at the entries level;
4. the product chain :math:`\mathbf J_{\theta_l}\mathbf z^{[L]}` for every parameter block and
   :math:`\mathbf J_\theta\mathbf z^{[L]}` (Damadi Alg. 1 lines 3, 4, 7, corrected);
5. the closed-form deltas :math:`\boldsymbol\delta^{[l]}` and each parameter's gradient;
6. the gradient :math:`\nabla_\theta\ell = (\mathbf J_\theta\mathbf z^{[L]})^\top\boldsymbol\delta^{[L]}` with values;
7. the verification table of :func:`jacobian_bp.oracles.verify.verify`;

and, for dense networks, Damadi's Algorithm 1 instantiated with the printed differences.
The notation follows the network's convention preset (:mod:`jacobian_bp.render.notation`); every
user-supplied text (title, network and convention names, layer descriptions) goes through
:func:`jacobian_bp.backend.escape.escape_text`, and a custom notation's math symbols are
validated against the whitelist of :func:`jacobian_bp.backend.escape.check_math`.  Only
packages of Debian's ``texlive-latex-base`` are used (``amsmath``, ``amssymb``,
``geometry``) and only OT1 Computer Modern fonts, so the document compiles with a
minimal TeX installation.

:func:`compile_pdf` runs ``pdflatex -halt-on-error -interaction=nonstopmode -no-shell-escape``
in a temporary directory with kpathsea's paranoid file access (``openin_any=p``,
``openout_any=p``) and a time limit, and writes the PDF atomically.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..backend.atomic import atomic_write_bytes, check_writable
from ..errors import JacobianBPError, SpecError, UnsupportedInputError
from .latex import Eye, NetworkLatex, Sum, Zeros, fraction_text, matrix_latex, render, verification_table_latex
from .body_latex import _is_block
from .layout import display, fits
from ..backend.escape import escape_text
from .notation import Notation

__all__ = ["derivation_document", "compile_pdf", "LatexError", "PdflatexNotFoundError", "LatexCompileError"]


class LatexError(JacobianBPError):
    """A LaTeX document could not be produced."""


class PdflatexNotFoundError(LatexError):
    """``pdflatex`` is not installed (Debian/Ubuntu: ``apt-get install texlive-latex-base``)."""


class LatexCompileError(LatexError):
    """pdflatex failed; the message ends with the tail of its log."""


_PREAMBLE = r"""\documentclass[10pt,a4paper]{article}
\usepackage{amsmath,amssymb}
\usepackage[margin=1.8cm]{geometry}
\IfFileExists{glyphtounicode.tex}{\input{glyphtounicode}\pdfgentounicode=1}{}
\setcounter{MaxMatrixCols}{40}
\allowdisplaybreaks
\setlength{\parindent}{0pt}
\setlength{\parskip}{4pt}
\setlength{\arraycolsep}{3pt}
"""


def _names(network) -> str:
    return escape_text(network.name)


def _vec_row(nt: Notation, sym: str, v, precision: int, max_cols: int) -> str:
    """``(v)^T = [ … ]`` for a column vector, compact on the page."""
    v = np.asarray(v).reshape(1, -1)
    return rf"{nt.T(sym)} = {matrix_latex(v, 3, max_cols, precision)}"


def _align(lines: list[str]) -> str:
    return "\\begin{align*}\n" + " \\\\\n".join(lines) + "\n\\end{align*}"


def _steps(nl: NetworkLatex, named, steps, shapes_last: bool = True) -> str:
    """``label &= step_1 \\\\ &= step_2 …`` with the shapes under the last step."""
    nt = nl.nt
    lab = render(named.label, nt)
    rendered = []
    space = r" \in " + (Notation.reals(named.shape[0]) if named.shape[1] == 1 else Notation.reals(*named.shape))
    for i, s in enumerate(steps):
        t = render(named.body, nt, shapes_last and i == len(steps) - 1, s)
        plain = render(named.body, nt, False, s)
        if rendered and not fits(f"{lab} = {t}{space}"):  # too wide: without the shapes, or not at all (a shorter step stands)
            t = plain if fits(f"{lab} = {plain}{space}") else None
        if t is not None and all(plain != render(named.body, nt, False, p) for p in steps[:i]):
            rendered.append(t)
    lines = [f"{lab} &= {rendered[0]}"] + [f"&= {t}" for t in rendered[1:]]
    lines[-1] += space
    return _align(lines)


def _affine(nl: NetworkLatex, l: int) -> str:
    nt, net = nl.nt, nl.net
    return net.stages[l - 1].layer.latex_forward(nt, l, nl.a_tex(l - 1), net.convention.weight_layout)


def _convention_text(network, nt: Notation, nl: "NetworkLatex") -> str:
    """The convention as a sentence (weight layout, vec, θ order, batch, reduction, MSE scale, ReLU'(0))."""
    conv = network.convention
    W, a, b, z = nt.weight("W", "l"), nt.a("l-1"), nt.bias("l"), nt.z("l")
    if conv.weight_layout == "in_out":
        aff = rf"${z} = {nt.T(W)}{a} + {b}$ with ${W}\in\mathbb{{R}}^{{n_{{l-1}}\times n_l}}$"
    else:
        aff = rf"${z} = {W}{a} + {b}$ with ${W}\in\mathbb{{R}}^{{n_l\times n_{{l-1}}}}$"
    parts = [aff, f"vec stacks the {'columns' if conv.vec_order == 'col' else 'rows'} of a weight",
             f"a batch is laid out {'samples first' if conv.batch_axis == 'first' else 'samples last'} and reduced by the "
             + {"sum": "sum", "mean": "mean",
                "mean_elements": "mean over all entries (PyTorch's default mean)"}.get(conv.reduction, escape_text(conv.reduction))]
    scale = nl.squared_error_scale()
    if scale is not None:  # the constant the closed-form delta uses: 2c (y^ - y)
        c, _, how = scale
        coef = "" if c == 1 else fraction_text(c)
        parts.append(rf"the per-sample squared error is ${coef}\|{nt.yhat} - {nt.y}\|^2$"
                     + (f" ({escape_text(how[2:])})" if how else ""))
    if any(p.follows_convention_at_zero for st in network.stages for p in st.post):
        parts.append(f"ReLU$'(0) = {conv.relu_at_zero:g}$")
    return rf"Convention \texttt{{{escape_text(conv.name)}}}: " + "; ".join(parts) + "."


def _activation_text(layer) -> str:
    return layer.prose()


def _has_skip(layer) -> bool:
    """Whether a composite layer adds its input to its body's output (asks the layer's ``skip_sum``)."""
    return isinstance(layer.skip_sum(Eye(1), Zeros(1, 1)), Sum)


def _skip_paragraph(nl: NetworkLatex, l: int) -> str:
    r"""What the composite layer at stage ``l`` does to the chain rule, in the network's notation: a residual block's
    skip connection (He et al. 2016, eq. (1)) adds the identity; a block without one (a Transformer block made of two
    residual blocks) multiplies its inner blocks' Jacobians."""
    nt, net = nl.nt, nl.net
    layer = net.stages[l - 1].layer
    body = nl.body(l)
    a_prev, z = nl.a_tex(l - 1), nt.z(l)
    g = nt.vec("g", l)
    ks = [ss.index for ss in body.subs]
    tags = ", ".join(f"${nt.z(layer.tag(l, k))}$" for k in ks)
    params = ", ".join(f"${nl.param_tex(e)}$" for e in net.entries if e.stage == l)
    nested = any(_is_block(ss.layer) for ss in body.subs)
    if _has_skip(layer):
        parts = r" $\to$ ".join(p.latex_describe() for p in layer.body)
        out = (rf"Layer {l} is a residual block (He et al., 2016): its output adds its input to the output of its body "
               rf"${g}$ ({parts}), ${z} = {a_prev} + {g}({a_prev})$. ")
    else:
        out = rf"Layer {l} is {layer.prose()}. "
    out += (rf"Inside the block the layer index is written $l.k$: the $k$-th parametric layer of the body makes {tags} "
            rf"(and the activations after it ${nt.a(layer.tag(l, 'k'))}$)"
            + (r"; a nested block's own stages are written $l.k.j$" if nested else "")
            + rf", with parameters {params}. ")
    if _has_skip(layer):
        out += (rf"The skip connection adds the identity to the chain rule, "
                rf"${nt.jac(z, a_prev)} = \mathbf{{I}} + {nt.jac(g, a_prev)}$: the gradient reaches "
                rf"${a_prev}$ both through the body and unchanged through the skip. ")
    else:
        out += (rf"It has no skip connection of its own: ${z}$ is the output of its last inner block, and "
                rf"${nt.jac(z, a_prev)}$ is the product of its inner blocks' Jacobians, each $\mathbf{{I}}$ plus the chain of "
                rf"that block's body. ")
    return out + (rf"A parameter inside the block enters only through the body, so its block of ${nt.jac(z, nt.theta)}$ is "
                  rf"the chain from the block's output down to the sub-layer that owns it, times that sub-layer's own block: "
                  rf"Algorithm~1 applied inside the block.")


def _definitions(nl: NetworkLatex, l: int) -> list[str]:
    """The Jacobians of the stages inside the block at stage ``l``, each stated once (the chains name them)."""
    nt = nl.nt
    defs = nl.body(l).definitions()
    if not defs:
        return []
    lines, notes = [], []
    for f, layer in defs:
        lines.append(rf"{render(f.label, nt)} &= {render(f.body, nt, False, 99)} \in {Notation.reals(*f.shape)}")
        if not _is_block(layer):
            where = layer.latex_jacobian_where()
            notes.append(rf"${render(f.label, nt)}$ is the Jacobian of {layer.prose()}" + (f"; {where}" if where else ""))
    text = [r"The Jacobians of the stages inside the block, each stated once and named in the chains below "
            r"(a nested residual block contributes $\mathbf{I}$ plus the chain of its body):", _align(lines)]
    if notes:
        text.append("Here\n\\begin{itemize}\n" + "\n".join(rf"\item {n}." for n in notes) + "\n\\end{itemize}")
    return text


def _algorithm1_recursive(nl: NetworkLatex) -> str:
    r"""Damadi's Algorithm 1 (corrected) for a network with residual blocks, in the network's notation.

    Line 1 is the output delta; line 3 gives every parameter block as the chain from :math:`\mathbf z^{[L]}` down
    to the layer, and inside a block on down to the sub-layer that owns the parameter (a block's input Jacobian
    is :math:`\mathbf I + \mathbf J_{\text{body}}`); line 7 stacks the blocks in θ order; line 8 is the gradient.
    Printed lines are not quoted: the paper's algorithm has no residual blocks."""
    nt, net, L = nl.nt, nl.net, nl.L
    formula, _ = nl.output_delta_formula()
    items = [rf"\item (line 1) ${nt.dz(L)} = \nabla_{{{nt.z(L)}}}{nt.loss} = {formula}$."]
    lines = []
    for g in nl.stage_groups():
        for part in ([[e] for e in g] if _is_block(net.stages[g[0].stage - 1].layer) else [g]):
            B = nl.block(part)
            lines.append(rf"{render(B.label, nt)} &= {render(B.body, nt, False, 2)}")
    items.append(r"\item (lines 3--4, for $l = L, \dots, 1$; inside a residual block for each of its parameters)"
                 + _align(lines))
    Jt = nl.jacobian_theta()
    items.append(rf"\item (line 7) ${render(Jt.label, nt)} = {render(Jt.body, nt, False, 0)}$.")
    G = nl.gradient()
    items.append(rf"\item (line 8) ${render(G.label, nt)} = {render(G.body, nt, False, 0)}$.")
    return "\\begin{enumerate}\n" + "\n".join(items) + "\n\\end{enumerate}"


def derivation_document(network, params, X, Y, title: str | None = None, *, notation=None, precision: int = 4,
                        max_rows: int = 8, max_cols: int = 8, report=None, use_torch: bool = True,
                        include_algorithm: bool = True) -> str:
    r"""A standalone LaTeX article deriving :math:`\nabla_\theta\ell` of ``network`` at ``params`` on ``(X, Y)``.

    Parameters
    ----------
    network : Network
    params : dict
        Parameters in the convention's layout (``W1``, ``b1``, …).
    X, Y : array
        One sample (shapes ``input_shape`` and ``(n_L,)``) or a batch laid out per the
        convention's batch axis; Jacobians are shown for the first sample, the gradient for
        the (summed or averaged) batch loss.
    title : str, optional
        Escaped; defaults to ``"Backpropagation as a product of Jacobians: <network name>"``.
    notation : str or Notation, optional
        Defaults to the network's convention preset.
    precision : int
        Significant digits of the numbers shown.
    max_rows, max_cols : int
        Elision size of explicit matrices (``\vdots``, ``\cdots``, ``\ddots`` beyond).
    report : VerificationReport, optional
        A precomputed report; otherwise :func:`~jacobian_bp.oracles.verify.verify` runs on ``(X, Y)``.
    use_torch : bool
        Passed to ``verify`` (PyTorch autograd as an oracle when installed).
    include_algorithm : bool
        Append Damadi's Algorithm 1 instantiated for the network (dense networks only).

    Returns
    -------
    str
        The ``.tex`` source (pure ASCII).
    """
    from ..engine.network import Network
    from ..oracles.verify import verify

    if not isinstance(network, Network):
        raise TypeError(f"derivation_document: expected a Network, received {type(network).__name__}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"derivation_document: title must be a string, received {type(title).__name__}")
    Xb, Yb, single = network.as_batch(X, Y)
    N = Xb.shape[0]
    x0, y0 = Xb[0], Yb[0]
    require = getattr(network, "require_renderable", None)
    if callable(require):  # e.g. batch norm in training mode: no per-sample chain to write
        try:
            require("derivation_document")
        except UnsupportedInputError as exc:
            raise UnsupportedInputError(f"{exc} (for the batch: jacobian_bp.render.batch_derivation."
                                        "batch_derivation_document)") from None
    nl = NetworkLatex(network, params, x0, y0, notation=notation)
    nt = nl.nt
    L = network.L
    conv = network.convention
    grad = network.gradient(X, Y, params)
    if report is None:
        report = verify(network, X, Y, params, use_torch=use_torch)
    title = title if title is not None else f"Backpropagation as a product of Jacobians: {network.name}"
    out: list[str] = [_PREAMBLE, r"\title{" + escape_text(title) + "}",
                      r"\author{generated by " + escape_text("jacobian_bp") + "}", r"\date{}", r"\begin{document}", r"\maketitle"]

    def M(A):
        return matrix_latex(A, max_rows, max_cols, precision)

    # ------------------------------------------------------------------ 1. network
    out.append(r"\section{The network}")
    in_shape = r"\times ".join(map(str, network.input_shape))
    out.append(rf"Network \texttt{{{_names(network)}}}: input of shape ${in_shape}$, "
               rf"{L} parametric layer{'s' if L > 1 else ''}, loss {escape_text(network.loss.kind.replace('_', ' '))}, "
               rf"$|{nt.theta}| = {network.n_params}$. " + _convention_text(network, nt, nl))
    rows = []
    if network.pre:  # parameter-free first layers: a[0] = f[0](x)
        shape_in = r"\times ".join(map(str, network.input_shape))
        shape_out = r"\times ".join(map(str, network.pre[-1].out_shape))
        kinds = r" $\to$ ".join(p.latex_describe() for p in network.pre)
        rows.append(rf"0 & {kinds} (no parameters) & ${shape_in}$ & ${shape_out}$ ($" + nl.a_tex(0) + r"$) & none \\")
    for st in network.stages:
        post = ", ".join(escape_text(p.kind) for p in st.post) or "none"
        shape_in = r"\times ".join(map(str, st.layer.in_shape))
        shape_out = r"\times ".join(map(str, st.layer.out_shape))
        layer_text = st.layer.latex_describe()
        rows.append(rf"{st.index} & {layer_text} & ${shape_in}$ & ${shape_out}$ & {post} \\")
    wide = max(len(st.layer.latex_describe()) for st in network.stages) > 70  # a long description wraps in its column
    cols = r"rp{0.5\textwidth}lll" if wide else "rllll"
    out.append(r"\begin{center}\begin{tabular}{" + cols + r"}\hline $l$ & layer & input & $" + nt.z("l") + r"$ & activation \\ \hline "
               + "\n".join(rows) + r" \hline\end{tabular}\end{center}")
    order = {"C": "rows", "F": "columns"}
    rows = []
    for e in network.entries:
        shape = r"\times ".join(map(str, e.user_shape))
        how = f"{order[e.space.order]} stacked" if e.space.order in order else "vector"
        rows.append(rf"${nl.param_tex(e)}$ & ${shape}$ & ${e.offset + 1}$--${e.offset + e.size}$ & {how} \\")
    out.append(r"The parameter vector $" + nt.theta + r"$ stacks the blocks in this order ("
               + {"reverse": r"last layer first, Damadi Alg.~1 line 7", "forward": "first layer first",
                  "weights_first": "all weights, then all biases (Ganev's Param)"}[conv.theta_order] + "):")
    out.append(r"\begin{center}\begin{tabular}{llll}\hline block & shape & entries of $" + nt.theta
               + r"$ & vec \\ \hline " + "\n".join(rows) + r" \hline\end{tabular}\end{center}")

    # ------------------------------------------------------------------ 2. forward pass
    out.append(r"\section{Forward pass}")
    out.append(("One sample" if N == 1 else rf"Sample 1 of the batch of $N = {N}$")
               + r" (the Jacobians below are those of this sample):" + r"\[" + _vec_row(nt, nt.x, x0, precision, max_cols) + r"\]")
    lines = []
    rows_below = False
    if network.pre:
        rhs = " \\circ ".join(rf"\mathrm{{{escape_text(p.kind)}}}" for p in reversed(network.pre))
        lines.append(rf"{nl.a_tex(0)} &= {rhs}({nt.x}), && {_vec_row(nt, nl.a_tex(0), nl.cache.a[0][0], precision, max_cols)}")
    for st in network.stages:
        l = st.index
        rhs = _affine(nl, l)
        if _is_block(st.layer):
            for name, rhs, value in nl.body(l).forward_lines(conv.weight_layout):
                rows_below = rows_below or "\\\\" in rhs  # a formula of several rows (attention's projections)
                lines.append(rf"{name} &= {rhs}, && {_vec_row(nt, name, value, precision, max_cols)}")
            rhs = render(st.layer.skip_sum(nl.a(l - 1), nl.body(l).output()), nt)  # the block's output, named
        lines.append(rf"{nt.z(l)} &= {rhs}, && {_vec_row(nt, nt.z(l), nl.cache.z[l][0], precision, max_cols)}")
        if st.post:
            lines.append(rf"{nt.a(l)} &= {nt.act(l, vector=True)}({nt.z(l)}), && "
                         + _vec_row(nt, nt.a(l), nl.cache.a[l][0], precision, max_cols))
    rows_below = rows_below or not all(fits(line) for line in lines)
    if rows_below:  # a formula of several rows or a long one would push the values off the page: values below
        lines = [line.replace(" && ", r" \\ & \qquad ", 1) for line in lines]
    out.append(_align(lines))
    acts = [rf"${nt.act(st.index, vector=True)}$ is " + "; then ".join(_activation_text(p) for p in st.post)
            for st in network.stages if st.post]
    if acts:
        out.append("Activations: " + "; ".join(acts) + ".")
    for st in network.stages:
        if _is_block(st.layer):
            out.append(_skip_paragraph(nl, st.index))
    for st in network.stages:  # a layer with more to say about its forward pass (an unrolled recurrence)
        para = getattr(st.layer, "latex_paragraph", None)
        if callable(para):
            out.append(para(nt, st.index, nl.a_tex(st.index - 1)))
    if network.pre:
        out.append(rf"The parameter-free first layers make ${nl.a_tex(0)}$ from ${nt.x}$; the parametric layers start from "
                   rf"${nl.a_tex(0)}$, so no parameter block contains ${nt.jac(nl.a_tex(0), nt.x)}$.")
    out.append(rf"The prediction is ${nt.yhat} = {nt.a(L)}$; the target is "
               + rf"${_vec_row(nt, nt.y, y0, precision, max_cols)}$, and the loss of this sample is "
               + rf"${nt.loss} = {float(network.loss_value(x0, y0, params)):.{precision}g}$.")

    # ------------------------------------------------------------------ 3. layer Jacobians
    out.append(r"\section{The Jacobians of each layer}")
    out.append("Each layer contributes three Jacobians: with respect to its parameters, with respect to its input, "
               "and of its activation. Shapes are written under each block.")
    for st in network.stages:
        l = st.index
        out.append(rf"\subsection{{Layer {l}}}")
        loc = nl.local_jacobian(l)
        label = render(loc.label, nt)
        if _is_block(st.layer):  # the inner stages' Jacobians once, then one line per parameter (a chain inside the block)
            out += _definitions(nl, l)
            for e in network.entries:
                if e.stage == l:
                    out.append(_steps(nl, nl.local_jacobian(l, [e]), (99,)))
            theta_l = nt.index_on(nt.theta, l)
            label = nt.jac(nt.z(l), theta_l)
            out.append(rf"Stacked in the order of ${nt.theta}$, these blocks make ${label}$, ${theta_l}$ the parameters "
                       rf"of layer {l}:")
        else:
            out.append(_steps(nl, loc, (99,)))
        jl = network.local_jacobian(x0, params, l)  # its blocks in θ order
        out.append(display([label, M(jl)]))
        if l > 1:
            ij = nl.input_jacobian(l)
            out.append(display([render(ij.label, nt), render(ij.body, nt), M(ij.op)], r" \in " + Notation.reals(*ij.shape)))
        aj = nl.activation_jacobian(l)
        if l < L:
            out.append(display([render(aj.label, nt), render(aj.body, nt), M(aj.evaluate())],
                               r" \in " + Notation.reals(*aj.shape)))
        else:
            out.append(rf"The last activation ${nt.act(L, vector=True)}$ is paired with the loss (Damadi Fig.~2): "
                       rf"it enters only through ${nt.dz(L)} = \nabla_{{{nt.z(L)}}}{nt.loss}$.")

    # ------------------------------------------------------------------ 4. chains
    out.append(r"\section{The chain for every parameter block}")
    out.append(rf"By the chain rule, the block of ${render(nl.jacobian_theta().label, nt)}$ for the parameters of layer $l$ "
               rf"is the product of the Jacobians between ${nt.z('l')}$ and ${nt.z(L)}$ with the layer's own block "
               r"(Damadi Alg.~1 lines 3--4, corrected).")
    J_op = network.jacobian_theta(x0, params)
    groups = []
    for g in nl.stage_groups():  # a residual block's parameters one by one: each block is a longer chain
        groups += [[e] for e in g] if _is_block(network.stages[g[0].stage - 1].layer) else [g]
    for g in groups:
        B = nl.block(g)
        out.append(_steps(nl, B, (0, 1, 99)))
        cols = [b for b in J_op.blocks if any(b.input == e.space for e in g)]
        if cols and g[0].stage != L:  # the last layer's block was shown with its entries above
            from ..engine.jacobian import hstack

            Jg = hstack(cols) if len(cols) > 1 else cols[0]
            out.append(display([render(B.label, nt), M(Jg)]))
    Jt = nl.jacobian_theta()
    out.append("Stacking the blocks in the order of $" + nt.theta + r"$ (Alg.~1 line 7):")
    out.append(display([render(Jt.label, nt), render(Jt.body, nt, False, 0)], r" \in " + Notation.reals(*Jt.shape)))
    out.append(display([render(Jt.label, nt), M(J_op)]))

    # ------------------------------------------------------------------ 5. deltas
    out.append(r"\section{Closed-form deltas}")
    formula, src = nl.output_delta_formula()
    out.append(rf"At the output, ${nt.dz(L)} = \nabla_{{{nt.z(L)}}}{nt.loss} = {formula}$ ({escape_text(src)}). "
               r"Transposing the chain gives the backward recursion (Ganev Prop.~3.1 (3.2), Park Thm.~5.4):")
    lines = []
    rows = []
    for l in range(L, 0, -1):
        d = nl.delta(l)
        body = render(d.body, nt, False, 99)
        if l < L:
            body = render(d.body, nt, False, 0) + " = " + body
        rows.append((rf"{render(d.label, nt)} &= {body}", _vec_row(nt, nt.dz(l), nl.delta_symbol(l).value, precision, max_cols)))
    below = network.composite or any(_is_block(st.layer) for st in network.stages)  # long chains through blocks
    if below or not all(fits(f"{f} {v}") for f, v in rows):  # values on their own lines
        lines = [r for f, v in rows for r in (f, rf"& {v}")]
    else:
        lines = [rf"{f} && {v}" for f, v in rows]
    out.append(_align(lines))
    out.append(r"Each parameter's gradient is the transposed local block times its delta:")
    lines = []
    for e in network.entries:
        pg = nl.param_gradient(e)
        closed = render(nl.param_gradient_closed(e), nt)
        first = render(pg.body, nt, False, 99)
        rhs = first if first == closed else f"{first} = {closed}"
        if e.local == network.stages[e.stage - 1].layer.affine_weight_name:
            rhs += (rf" = \operatorname{{vec}}\big({nl.gradient_matrix_form(e)}\big)")
        lines.append(rf"{render(pg.label, nt)} &= {rhs}")
    out.append(_align(lines))
    if any(e.local == network.stages[e.stage - 1].layer.affine_weight_name for e in network.entries):
        a_, d_ = nt.vec("a"), (nt.delta or nt.grad(nt.vec("z")))
        out.append(r"Here $\operatorname{vec}$ stacks the " + {"col": "columns", "row": "rows"}[conv.vec_order]
                   + rf" of the weight as laid out in the convention, and $(\mathbf{{I}}\otimes{a_}){d_} = "
                   rf"{d_}\otimes{a_}$ is the mixed-product rule.")

    # ------------------------------------------------------------------ 6. gradient
    out.append(r"\section{The gradient}")
    G = nl.gradient()
    blocks = any(_is_block(st.layer) for st in network.stages)  # the expanded chains are stated above: names here
    out.append(_steps(nl, G, (0, 1) if blocks else (0, 99), shapes_last=False))
    if N > 1:
        red = {"sum": "", "mean": r"\frac{1}{N}"}.get(conv.reduction, "")
        if conv.reduction == "mean_elements":  # PyTorch's element mean: 1/(N n_L) when the loss sums over outputs
            r = network.reduce_factor(N)
            red = r"\frac{1}{N}" if abs(r * N - 1.0) < 1e-15 else rf"\frac{{1}}{{N \cdot {network.n_out}}}"
        out.append(rf"For the batch of $N = {N}$ samples the loss is {'the mean' if red else 'the sum'} of the "
                   rf"per-sample losses, so $\nabla_{{{nt.theta}}}{nt.loss} = {red}\sum_{{i=1}}^{{N}}"
                   rf"({nt.jac('{' + nt.z(L) + '}_{i}', nt.theta)})^{nt.transpose} \, {{{nt.dz(L)}}}_{{i}}$. Its value:")
    else:
        out.append("Its value, block by block in the layout of the convention:")
    if nt.batch_gradient == "d":
        out.append(r"In Park's notation (Remark 5.3, Thm.~5.4) $d\mathbf{T} = \nabla_{\mathbf{T}}J$ for the cost $J$: "
                   r"$d\boldsymbol{Z}[\ell] = \frac{1}{N}\boldsymbol{\Delta}[\ell]$, "
                   r"$d\boldsymbol{W}[\ell] = d\boldsymbol{Z}[\ell]\,\boldsymbol{A}[\ell-1]^T$ and $d\boldsymbol{b}[\ell]$ "
                   r"is the sum of the columns of $d\boldsymbol{Z}[\ell]$ (samples as columns).")
    lines = []
    for e in network.entries:
        v = np.asarray(grad.params[e.name])
        lines.append(rf"{nt.cost_grad(nl.param_tex(e))} &= {M(v if v.ndim <= 2 else v.reshape(v.shape[0], -1))}"
                     + r" \in " + Notation.reals(*e.user_shape))
    out.append(_align(lines))

    # ------------------------------------------------------------------ 7. verification
    out.append(r"\section{Verification}")
    out.append(r"The gradient by the explicit chain (Damadi Alg.~1, corrected) against the other methods, per block: "
               r"maximum absolute error and normwise relative error $\|g - g_{\mathrm{chain}}\|/\max(\|g_{\mathrm{chain}}\|, \|"
               + nt.grad(nt.theta) + r"\|)$, "
               r"measured against the whole gradient when a block's own gradient is smaller.")
    out.append(r"\begin{center}\small " + verification_table_latex(report, "text", nt) + r"\end{center}")
    out.append(rf"Verdict: \textbf{{{escape_text(report.verdict)}}}.")

    # ------------------------------------------------------------------ appendix: Algorithm 1 as printed
    if include_algorithm:
        from .paper_equations import damadi_algorithm1

        try:
            alg = damadi_algorithm1(network)
        except SpecError:
            alg = None
        if alg is not None:
            out.append(r"\appendix")
            out.append(r"\section{Damadi's Algorithm 1 for this network, as printed and corrected}")
            out.append(alg.to_latex(section=None))
        elif any(_is_block(st.layer) for st in network.stages):
            out.append(r"\appendix")
            out.append(r"\section{Damadi's Algorithm 1 applied recursively through the residual blocks}")
            out.append(_algorithm1_recursive(nl))
    out.append(r"\end{document}")
    return "\n\n".join(out) + "\n"


def _log_tail(log: str, n: int = 40) -> str:
    lines = log.splitlines()
    errors = [i for i, s in enumerate(lines) if s.startswith("!")]
    if errors:
        start = max(0, errors[0] - 2)
        return "\n".join(lines[start:start + n])
    return "\n".join(lines[-n:])


def compile_pdf(tex_path, timeout: float = 120.0, output: "str | Path | None" = None) -> Path:
    """Compile a ``.tex`` file with pdflatex and return the path of the PDF.

    Runs ``pdflatex -halt-on-error -interaction=nonstopmode -no-shell-escape`` twice (for
    the title and any references) in a temporary directory, with kpathsea's paranoid file
    access (``openin_any=p``, ``openout_any=p``: no absolute path, no ``..``, no dot file),
    shell escape also disabled in the environment (``shell_escape=f``), standard input
    closed and a time limit per run, and writes the PDF next to ``tex_path`` (or to
    ``output``) atomically (a temporary file in the same folder, then :func:`os.replace`).

    Parameters
    ----------
    tex_path : str or Path
        The ``.tex`` file (it is copied into the temporary directory; pdflatex never runs
        in the user's folder).
    timeout : float
        Seconds allowed for each of the two pdflatex runs.
    output : str or Path, optional
        Where to write the PDF (default: ``tex_path`` with suffix ``.pdf``).

    Raises
    ------
    PdflatexNotFoundError
        When ``pdflatex`` is not on the PATH.
    LatexCompileError
        When pdflatex fails or times out; the message ends with the log tail.
    FileNotFoundError
        When ``tex_path`` does not exist.
    DataError
        When the output path cannot be written (checked before pdflatex runs).
    """
    tex_path = Path(tex_path)
    if not tex_path.is_file():
        raise FileNotFoundError(f"compile_pdf: {str(tex_path)!r} does not exist")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise SpecError(f"compile_pdf: timeout must be a positive number of seconds, received {timeout!r}")
    exe = shutil.which("pdflatex")
    if exe is None:
        raise PdflatexNotFoundError("compile_pdf: pdflatex is not installed or not on the PATH "
                                    "(Debian/Ubuntu: apt-get install texlive-latex-base)")
    dest = Path(output) if output is not None else tex_path.with_suffix(".pdf")
    dest.parent.mkdir(parents=True, exist_ok=True)
    check_writable(dest)  # fail before running pdflatex
    with tempfile.TemporaryDirectory(prefix="jacobian_bp_tex_") as td:
        work = Path(td)
        shutil.copyfile(tex_path, work / "document.tex")
        env = dict(os.environ, openin_any="p", openout_any="p", shell_escape="f", TEXMFOUTPUT=str(work))
        cmd = [exe, "-halt-on-error", "-interaction=nonstopmode", "-no-shell-escape", "document.tex"]
        for _ in range(2):
            try:
                proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, timeout=timeout,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise LatexCompileError(f"compile_pdf: pdflatex did not finish {str(tex_path)!r} within {timeout:g} s") from None
            log_file = work / "document.log"
            log = log_file.read_text(encoding="latin-1") if log_file.exists() else proc.stdout.decode("latin-1")
            if proc.returncode != 0 or not (work / "document.pdf").exists():
                raise LatexCompileError(f"compile_pdf: pdflatex failed on {str(tex_path)!r} (exit code {proc.returncode}); "
                                        f"log:\n{_log_tail(log)}")
        # the PDF appears complete or not at all (an existing file is replaced by a rename)
        atomic_write_bytes(dest, (work / "document.pdf").read_bytes())
    return dest
