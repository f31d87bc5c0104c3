"""Block- and entries-level LaTeX of Jacobians, products and gradients.

Oracles: central finite differences of the forward pass (the block expressions, evaluated
with their bound values, must equal the true Jacobians and gradients), NumPy indexing (the
displayed entries), float parsing (number formatting), SymPy (symbolic entries) and
pdflatex (every rendered string compiles)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st

import jacobian_bp as jb
from jacobian_bp.render.derivation import compile_pdf
from jacobian_bp.errors import JacobianBPError, ShapeError, SpaceMismatchError
from jacobian_bp.render.latex import (Eye, HCat, Kron, NetworkLatex, Prod, Sym, VCat, format_number, gradient_latex,
                               jacobian_block_expr, jacobian_equation_latex, matrix_latex, product_latex, render,
                               verification_table_latex)
from jacobian_bp.spec import generate_data, load_spec
from conftest import needs_pdflatex


# ------------------------------------------------------------------ oracles
def fd_jacobian_theta(net, x, params, h=1e-6):
    theta = net.pack(params)

    def f(t):
        return net.forward(x, net.unpack(t)).z[net.L][0].ravel()

    cols = []
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = h
        cols.append((f(theta + e) - f(theta - e)) / (2 * h))
    return np.stack(cols, axis=1)


def fd_gradient(net, x, y, params, h=1e-6):
    theta = net.pack(params)
    g = np.zeros_like(theta)
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = h
        g[j] = (net.loss_value(x, y, net.unpack(theta + e)) - net.loss_value(x, y, net.unpack(theta - e))) / (2 * h)
    return g


def loss_from_z(net, params, y, l, z):
    """The loss as a function of z[l] alone (the rest of the network run forward by the layers)."""
    canon = net.canonical_params(params)
    cur = np.asarray(z, dtype=float).reshape((1,) + net.stages[l - 1].layer.out_shape)
    for layer in net.stages[l - 1].post:
        cur = layer.forward(cur, {})
    for st in net.stages[l:]:
        cur = st.layer.forward(cur, {k: canon[f"{k}{st.index}"] for k in st.layer.param_shapes()})
        for layer in st.post:
            cur = layer.forward(cur, {})
    return float(net.loss.value(np.asarray(y, dtype=float)[None], cur.reshape(1, -1))[0])


def fd_delta(net, params, x, y, l, h=1e-6):
    z = net.forward(x, params).z[l][0].ravel()
    g = np.zeros_like(z)
    for j in range(z.size):
        e = np.zeros_like(z)
        e[j] = h
        g[j] = (loss_from_z(net, params, y, l, z + e) - loss_from_z(net, params, y, l, z - e)) / (2 * h)
    return g


def make(spec_name=None, layers=None, loss="cross_entropy", n_in=4, convention="damadi", seed=0):
    if spec_name:
        sp = load_spec(spec_name)
        net = sp.network
        x, y = sp.data()
    else:
        net = jb.Network(layers, loss, n_in, convention=convention, name="t")
        x, y = generate_data(net, 1, seed)
    return net, net.init_params(seed), x, y


NETS = [
    ("damadi-2layer", None, None, None),
    ("damadi-3layer", None, None, None),
    (None, lambda: [jb.Dense(4), jb.Tanh(), jb.Dense(3), jb.Sigmoid()], "bce", "ganev"),
    (None, lambda: [jb.Dense(5), jb.Sigmoid(), jb.Dense(3), jb.IdentityActivation()], "mse", "park"),
    (None, lambda: [jb.Dense(5), jb.Arctan(), jb.Dense(4), jb.Tanh(), jb.Dense(3), jb.Softmax()], "cross_entropy", "mml"),
    (None, lambda: [jb.Dense(3), jb.Softplus(), jb.Dense(2)], "mse", "pytorch"),
]


def build(case):
    name, layers, loss, conv = case
    if name:
        return make(name)
    return make(layers=layers(), loss=loss, convention=conv)


# ------------------------------------------------------------------ golden strings
def test_golden_damadi_one_layer_jacobian_theta():
    net, p, x, y = make("damadi-1layer")
    J = net.jacobian_theta(x, p)
    expected = (r"\mathbf{J}_{\boldsymbol{\theta}} \mathbf{z}^{[1]} = [\mathbf{I}_3 \otimes \mathbf{x}^\top \; \mathbf{I}_3]"
                r" \in \mathbb{R}^{3\times 15}")
    assert jacobian_equation_latex(J, level="block") == expected
    assert J._repr_latex_() == "$" + expected + "$"
    nl = NetworkLatex(net, p, x, y)
    assert render(nl.jacobian_theta().body) == r"[\mathbf{I}_3 \otimes \mathbf{x}^\top \; \mathbf{I}_3]"


def test_golden_damadi_two_layer_block_with_shapes():
    net, p, x, y = make("damadi-2layer")
    nl = NetworkLatex(net, p, x, y)
    B = nl.block([e for e in net.entries if e.stage == 1])
    assert nl.equation(B, steps=(0,)) == (
        r"\mathbf{J}_{\mathbf{W}^{[1]},\mathbf{b}^{[1]}}\mathbf{z}^{[2]} = \mathbf{J}_{\mathbf{z}^{[1]}}\mathbf{z}^{[2]} \, "
        r"\mathbf{J}_{\mathbf{W}^{[1]},\mathbf{b}^{[1]}}\mathbf{z}^{[1]} \in \mathbb{R}^{3\times 25}")
    assert render(B.body, shapes=True) == (
        r"\underbrace{(\mathbf{W}^{[2]})^\top}_{3\times 5} \, \underbrace{\operatorname{diag} f^{[1]\prime}(\mathbf{z}^{[1]})}_{5\times 5}"
        r" \, \underbrace{\left[\underbrace{\mathbf{I}_5 \otimes \mathbf{x}^\top}_{5\times 20} \quad "
        r"\underbrace{\mathbf{I}_5}_{5\times 5}\right]}_{5\times 25}")


def test_golden_other_notations():
    net, p, x, y = make(layers=[jb.Dense(5), jb.Sigmoid(), jb.Dense(3), jb.Softmax()], convention="ganev")
    nl = NetworkLatex(net, p, x, y)
    assert nl.equation(nl.local_jacobian(1), steps=(99,)) == \
        r"\frac{\partial \mathbf{z}_1}{\partial (\operatorname{vec}W_1,b_1)} = [\mathbf{I}_5 \otimes x^T \; \mathbf{I}_5] \in \mathbb{R}^{5\times 25}"  # vec: issue #15
    assert render(nl.activation_jacobian(1).label) == r"\mathrm{Jac}_1"
    assert render(nl.input_jacobian(2).body) == "W_2"
    net, p, x, y = make(layers=[jb.Dense(5), jb.Sigmoid(), jb.Dense(3), jb.Softmax()], convention="park")
    nl = NetworkLatex(net, p, x, y)
    assert render(nl.delta(1).body) == (r"\operatorname{diag}(g[1]'(\boldsymbol{z}[1])) \, \boldsymbol{W}[2]^T \, "
                                        r"\boldsymbol{\delta}[2]")
    assert gradient_latex(net.gradient(x, y, p)).startswith(r"\begin{aligned}d\boldsymbol{W}[1] &= \left[")
    net, p, x, y = make(layers=[jb.Dense(5), jb.Sigmoid(), jb.Dense(3), jb.Softmax()], convention="mml")
    nl = NetworkLatex(net, p, x, y)
    # MML stacks columns of the out x in weight: J_vec W z = a^T (x) I
    assert render(nl.local_jacobian(1).body) == r"[\boldsymbol{x}^\top \otimes \mathbf{I}_5 \; \mathbf{I}_5]"


# ------------------------------------------------------------------ block expressions are the true Jacobians
@pytest.mark.parametrize("case", NETS, ids=lambda c: c[0] or c[3])
def test_block_expressions_equal_finite_differences(case):
    net, p, x, y = build(case)
    nl = NetworkLatex(net, p, x, y)
    J_fd = fd_jacobian_theta(net, x, p)
    Jt = nl.jacobian_theta()
    assert Jt.shape == J_fd.shape
    np.testing.assert_allclose(Jt.evaluate(), J_fd, rtol=1e-6, atol=1e-8)
    # every stage block equals its columns of the finite-difference Jacobian
    for g in nl.stage_groups():
        cols = np.concatenate([np.arange(e.offset, e.offset + e.size) for e in g])
        np.testing.assert_allclose(nl.block(g).evaluate(), J_fd[:, cols], rtol=1e-6, atol=1e-8)
    g_fd = fd_gradient(net, x, y, p)
    np.testing.assert_allclose(nl.gradient().evaluate().ravel(), g_fd, rtol=1e-6, atol=1e-8)
    for e in net.entries:
        np.testing.assert_allclose(nl.param_gradient(e).evaluate().ravel(), g_fd[e.slice], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(nl.param_gradient_closed(e).evaluate().ravel(), g_fd[e.slice], rtol=1e-6, atol=1e-8)
    for l in range(1, net.L + 1):
        np.testing.assert_allclose(nl.delta(l).evaluate().ravel(), fd_delta(net, p, x, y, l), rtol=1e-6, atol=1e-8)


def test_cnn_block_expression_equals_finite_differences():
    pytest.importorskip("jacobian_bp.layers.conv")
    net, p, x, y = make("small-cnn")
    nl = NetworkLatex(net, p, x, y)
    J_fd = fd_jacobian_theta(net, x, p)
    np.testing.assert_allclose(nl.jacobian_theta().evaluate(), J_fd, rtol=1e-5, atol=1e-7)
    tex = render(nl.jacobian_theta().body)
    assert r"\mathbf{I}_2 \otimes \mathbf{P}(\mathbf{x})" in tex and r"\mathbf{I}_2 \otimes \mathbf{1}_{16}" in tex
    assert r"\operatorname{Toep}" not in tex  # layer 2 is dense; the conv input Jacobian is not in the chain
    assert r"\operatorname{Toep}(\mathbf{K}^{(1)})" == render(nl.input_jacobian(1).body)


@pytest.mark.parametrize("case", NETS[:3], ids=lambda c: c[0] or c[3])
def test_bare_jacobian_block_form_evaluates_to_the_operator(case):
    net, p, x, y = build(case)
    J = net.jacobian_theta(x, p)
    e = jacobian_block_expr(J)
    np.testing.assert_allclose(e.evaluate(), fd_jacobian_theta(net, x, p), rtol=1e-6, atol=1e-8)
    for b in J.blocks:
        np.testing.assert_allclose(jacobian_block_expr(b).evaluate(), b.to_dense(), rtol=0, atol=1e-14)


def test_product_latex_and_chain_typecheck():
    net, p, x, y = make("damadi-3layer")
    fac = net.chain_factors(x, p, 1)
    s = product_latex(fac)
    syms = [f.symbol for f in fac]
    pos = [s.index(t) for t in syms]
    assert pos == sorted(pos) and s.endswith(r"\in \mathbb{R}^{3\times 5}")
    assert s.startswith(r"\mathbf{J}_{\mathbf{z}^{[1]}} \mathbf{z}^{[3]} = ")
    with pytest.raises(SpaceMismatchError):
        product_latex(list(reversed(fac)))
    P = fac[0] @ fac[1]
    assert P._repr_latex_().startswith(r"$\mathbf{J}_{\mathbf{z}^{[2]}} \mathbf{z}^{[3]} = ")


# ------------------------------------------------------------------ expression algebra
def test_transpose_rules_and_shape_checks():
    x = Sym(r"\mathbf{x}", (4, 1), np.arange(4.0))
    a = Sym(r"\mathbf{a}^{[1]}", (5, 1), np.arange(5.0))
    W = Sym(r"\mathbf{W}", (5, 4), np.arange(20.0).reshape(5, 4))
    D = Sym(r"\operatorname{diag} f'(\mathbf{z})", (5, 5), np.diag(np.arange(5.0)), symmetric=True)
    assert render(x.T) == r"\mathbf{x}^\top" and render(a.T) == r"(\mathbf{a}^{[1]})^\top"
    assert x.T.T is x and D.T is D and Eye(3).T.shape == (3, 3)
    K = Kron(Eye(3), x.T)
    assert render(K.T) == r"\mathbf{I}_3 \otimes \mathbf{x}"
    np.testing.assert_array_equal(K.T.evaluate(), np.kron(np.eye(3), np.arange(4.0)[:, None]))
    P = Prod([W.T, D])
    np.testing.assert_array_equal(P.T.evaluate(), (W.value.T @ D.value).T)
    assert render(P.T) == r"\operatorname{diag} f'(\mathbf{z}) \, \mathbf{W}"
    H = HCat([K, Eye(3)])
    assert isinstance(H.T, VCat) and H.T.shape == (15, 3)
    np.testing.assert_array_equal(H.T.evaluate(), H.evaluate().T)
    with pytest.raises(ShapeError):
        Prod([W, W])
    with pytest.raises(ShapeError):
        HCat([W, x])
    with pytest.raises(ShapeError):
        Sym("s", (2, 2), np.zeros(3))
    with pytest.raises(JacobianBPError):
        Sym("s", (2, 2)).evaluate()
    v = Sym(r"\mathbf{v}", (8, 1))
    assert render(Prod([Kron(Eye(2), x.T), v])) == r"(\mathbf{I}_2 \otimes \mathbf{x}^\top) \, \mathbf{v}"


# ------------------------------------------------------------------ entries level
def parse_array(tex: str) -> list[list[str]]:
    m = re.fullmatch(r"\\left\[\\begin\{array\}\{c+\}(.*)\\end\{array\}\\right\]", tex)
    assert m, tex
    return [row.split(" & ") for row in m.group(1).split(r" \\ ")]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 25), st.integers(1, 25), st.integers(3, 12), st.integers(3, 12), st.integers(1, 6))
def test_matrix_latex_elision(m, n, mr, mc, prec):
    A = np.random.default_rng(m * 100 + n).standard_normal((m, n))
    cells = parse_array(matrix_latex(A, mr, mc, prec))
    ri = list(range(m)) if m <= mr else list(range(mr - 2)) + [None, m - 1]
    ci = list(range(n)) if n <= mc else list(range(mc - 2)) + [None, n - 1]
    assert len(cells) == len(ri) and all(len(r) == len(ci) for r in cells)
    for r, i in zip(cells, ri):
        for c, j in zip(r, ci):
            if i is None and j is None:
                assert c == r"\ddots"
            elif i is None:
                assert c == r"\vdots"
            elif j is None:
                assert c == r"\cdots"
            else:
                assert c == format_number(A[i, j], prec)


def test_matrix_latex_of_a_large_operator_computes_few_columns():
    net, p, x, y = make("lenet-300-100")
    J = net.jacobian_theta(x, p)  # 10 x 266610
    cells = parse_array(matrix_latex(J, 10, 10, 6))
    rows = np.stack([J.op.rmatvec(np.eye(10)[i]) for i in range(10)])  # rows through the transposed operator
    cols = list(range(8)) + [J.shape[1] - 1]
    for i in range(10):
        shown = [c for k, c in enumerate(cells[i]) if k != 8]
        assert shown == [format_number(rows[i, j], 6) for j in cols]
    assert cells[0][8] == r"\cdots"


@settings(max_examples=50, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12), st.integers(1, 8))
def test_format_number_round_trips(v, p):
    s = format_number(v, p)
    m = re.fullmatch(r"(-?[0-9.]+)(?:\\times 10\^\{(-?\d+)\})?|(-?)10\^\{(-?\d+)\}", s)
    assert m, s
    if m.group(1) is not None:
        back = float(m.group(1)) * (10.0 ** int(m.group(2)) if m.group(2) else 1.0)
    else:
        back = (-1 if m.group(3) else 1) * 10.0 ** int(m.group(4))
    assert abs(back - v) <= 0.51 * 10.0 ** (1 - p) * abs(v) + 1e-300


def test_format_number_special_values():
    assert format_number(-0.0) == "0" and format_number(3) == "3" and format_number(2.0) == "2"
    assert format_number(1.5e-5, 3) == r"1.5\times 10^{-5}"
    assert format_number(float("nan")) == r"\mathrm{NaN}" and format_number(-np.inf) == r"-\infty"
    assert format_number(sympy.Rational(1, 3)) == r"\frac{1}{3}"
    with pytest.raises(ValueError):
        format_number(1.0, 0)
    with pytest.raises(ValueError):
        matrix_latex(np.eye(3), 2, 10)


def test_symbolic_entries():
    net, p, _, y = make("damadi-1layer")
    xs = np.array(sympy.symbols("x_1:5", real=True), dtype=object)
    J = net.jacobian_theta(xs, p)
    cells = parse_array(matrix_latex(J, 10, 20))
    # I_3 (x) x^T: row i holds x_1..x_4 in columns 4i..4i+3, then the bias identity
    for i in range(3):
        for j in range(15):
            if j < 12:
                want = sympy.latex(xs[j - 4 * i]) if 4 * i <= j < 4 * i + 4 else "0"
            else:
                want = "1" if j - 12 == i else "0"
            assert cells[i][j] == want


# ------------------------------------------------------------------ errors
def test_bad_inputs():
    net, p, x, y = make("damadi-2layer")
    with pytest.raises(ValueError):
        NetworkLatex(net, p)
    nl = NetworkLatex(net, p, x, y)
    with pytest.raises(ValueError, match="1..2"):
        nl.local_jacobian(0)
    with pytest.raises(ValueError):
        jacobian_equation_latex(net.jacobian_theta(x, p), level="fancy")
    with pytest.raises(TypeError):
        jacobian_equation_latex(np.eye(3))
    with pytest.raises(ShapeError):
        NetworkLatex(net, p, np.ones((2, 4)), None)


# ------------------------------------------------------------------ everything compiles
@needs_pdflatex
def test_rendered_strings_compile(tmp_path):
    snippets = []
    for case in NETS:
        net, p, x, y = build(case)
        nl = NetworkLatex(net, p, x, y)
        snippets.append(nl.equation(nl.jacobian_theta(), steps=(0, 99), shapes=True))
        snippets.append(nl.equation(nl.gradient(), steps=(0, 99)))
        snippets += [nl.equation(nl.delta(l), steps=(0, 99), shapes=True) for l in range(1, net.L + 1)]
        snippets.append(jacobian_equation_latex(net.jacobian_theta(x, p), level="both", shapes=True))
        g = net.gradient(x, y, p)
        snippets.append(gradient_latex(g))
        assert g._repr_latex_() == "$$" + gradient_latex(g) + "$$"
    net, p, x, y = make("damadi-2layer")
    rep = jb.verify(net, x, y, p, use_torch=False)
    snippets.append(verification_table_latex(rep, "math"))
    assert rep._repr_latex_().startswith("$$") and "PASS" in rep._repr_latex_()
    body = "\n".join(r"\[" + s + r"\]" for s in snippets)
    tex = tmp_path / "snippets.tex"
    tex.write_text("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\usepackage[margin=1cm,a3paper]{geometry}\n"
                   "\\begin{document}\n" + body + "\n\\begin{center}" + verification_table_latex(rep, "text")
                   + "\\end{center}\n\\end{document}\n")
    assert compile_pdf(tex).exists()
