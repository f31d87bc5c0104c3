"""The documents' displayed equations, instantiated: the corrected ones equal the truth and
the printed ones (where they differ) do not.  Oracles: central finite differences of the
forward pass and of the loss; pdflatex for the rendered sections."""
from __future__ import annotations

import re

import numpy as np
import pytest

import jacobian_bp as jb
from jacobian_bp.render.derivation import compile_pdf
from jacobian_bp.errors import SpecError
from jacobian_bp.render.paper_equations import damadi_algorithm1, damadi_displayed_equations, ganev_prop31
from jacobian_bp.spec import generate_data

from test_latex import fd_delta, fd_gradient, fd_jacobian_theta
from conftest import needs_pdflatex, example




def truth(net, p, x, y):
    """Finite-difference Jacobian J_theta z[L], gradient, and each stage's columns."""
    J = fd_jacobian_theta(net, x, p)
    g = fd_gradient(net, x, y, p)
    cols = {l: np.concatenate([np.arange(e.offset, e.offset + e.size) for e in net.entries if e.stage == l])
            for l in range(1, net.L + 1)}
    return J, g, cols


def matches_any(value, candidates, tol=1e-6):
    return any(value.shape == c.shape and np.allclose(value, c, rtol=tol, atol=1e-8) for c in candidates)


@pytest.mark.parametrize("name", ["damadi-1layer", "damadi-2layer", "damadi-3layer"])
def test_damadi_displayed_equations_are_correct_and_printed_ones_are_not(name):
    net, p, x, y = example(name)
    J, g, cols = truth(net, p, x, y)
    candidates = [J, g[:, None]] + [J[:, cols[l]] for l in cols]
    eqs = damadi_displayed_equations(net, p, x, y)
    assert len(eqs) >= 2
    for e in eqs:
        assert e.expr is not None
        assert matches_any(e.expr.evaluate(), candidates), e.source
        if e.printed_expr is not None:
            assert not matches_any(e.printed_expr.evaluate(), candidates), e.source
    grads = [e for e in eqs if "gradient" in e.source]
    assert len(grads) == 1 and grads[0].differs and grads[0].notes
    if name == "damadi-3layer":
        # the printed third-layer row cannot even be formed
        assert "do not chain" in grads[0].printed_error


def test_damadi_one_layer_golden():
    net, p, x, y = example("damadi-1layer")
    eqs = damadi_displayed_equations(net, p, x, y)
    assert r"= [\mathbf{I}_3 \otimes \mathbf{x}^\top \; \mathbf{I}_3] \in \mathbb{R}^{3\times 15}" in eqs[0].latex
    assert r"(\mathbf{W}_{\bullet 1})^\top\mathbf{x} + b_{1}" in eqs[0].latex
    assert r"(\mathbf{W}_{\bullet 1})^\top + b_1" in eqs[0].printed
    # the printed gradient has 12 rows, theta has 15
    assert eqs[1].printed_expr.evaluate().shape == (12, 1) and net.n_params == 15
    assert r"\begin{bmatrix} \mathbf{I}_3 \otimes \mathbf{x} \\[2pt] \mathbf{I}_3 \end{bmatrix} \, (\hat{\mathbf{y}} - \mathbf{y})" \
        in eqs[1].latex


@pytest.mark.parametrize("name", ["damadi-1layer", "damadi-2layer", "damadi-3layer"])
def test_algorithm1_lines(name):
    net, p, x, y = example(name)
    J, g, cols = truth(net, p, x, y)
    eqs = damadi_algorithm1(net, p, x, y)
    by = {e.source: e for e in eqs}
    line1 = next(e for s, e in by.items() if "line 1" in s)
    np.testing.assert_allclose(line1.expr.evaluate().ravel(), fd_delta(net, p, x, y, net.L), rtol=1e-6, atol=1e-8)
    for l in range(1, net.L + 1):
        e = next(e for s, e in by.items() if f"$l = {l}$" in s or f"$l = L = {l}$" in s)
        np.testing.assert_allclose(e.expr.evaluate(), J[:, cols[l]], rtol=1e-6, atol=1e-8)
        assert e.differs
        # the printed Kronecker block (a^[l] for a^[l-1]) is wrong: different shape or different values
        if e.printed_expr is not None:
            v = e.printed_expr.evaluate()
            assert v.shape != J[:, cols[l]].shape or not np.allclose(v, J[:, cols[l]])
        else:
            assert e.printed_error
    line7 = next(e for s, e in by.items() if "line 7" in s)
    np.testing.assert_allclose(line7.expr.evaluate(), J, rtol=1e-6, atol=1e-8)
    assert line7.differs == (net.L != 2)  # the printed z^[2] is right only for two layers
    line8 = next(e for s, e in by.items() if "line 8" in s)
    np.testing.assert_allclose(line8.expr.evaluate().ravel(), g, rtol=1e-6, atol=1e-8)


def test_algorithm1_same_width_layers_differ_by_value():
    # 4 -> 5 -> 5 -> 3: at l = 2 the printed (a^[2])^T has the width of (a^[1])^T; only the values tell
    net, p, x, y = example("damadi-3layer")
    J, _, cols = truth(net, p, x, y)
    e = next(e for e in damadi_algorithm1(net, p, x, y) if "$l = 2$" in e.source)
    v = e.printed_expr.evaluate()
    assert v.shape == J[:, cols[2]].shape and not np.allclose(v, J[:, cols[2]], atol=1e-6)


@pytest.mark.parametrize("conv,loss,acts", [("damadi", "cross_entropy", (jb.Sigmoid, jb.Softmax)),
                                            ("ganev", "bce", (jb.Tanh, jb.Sigmoid)),
                                            ("park", "mse", (jb.Arctan, jb.IdentityActivation))])
def test_ganev_prop31(conv, loss, acts):
    net = jb.Network([jb.Dense(5), acts[0](), jb.Dense(4), acts[0](), jb.Dense(3), acts[1]()], loss, 4, convention=conv)
    p = net.init_params(1)
    x, y = generate_data(net, 1, 1)
    eqs = ganev_prop31(net, p, x, y)
    g = fd_gradient(net, x, y, p)
    canon_grad = net.unpack_canonical(g)
    for e in eqs:
        m = re.search(r"\((3\.\d)\), \$\\ell = (\d+)\$", e.source)
        kind, l = m.group(1), int(m.group(2))
        v = e.expr.evaluate()
        if kind == "3.3":  # dW_l, Ganev's layout n_l x n_{l-1}
            np.testing.assert_allclose(v, canon_grad[f"W{l}"], rtol=1e-6, atol=1e-8)
        elif kind == "3.4":
            np.testing.assert_allclose(v.ravel(), canon_grad[f"b{l}"], rtol=1e-6, atol=1e-8)
        elif kind == "3.1":
            np.testing.assert_allclose(v.ravel(), fd_delta(net, p, x, y, l), rtol=1e-6, atol=1e-8)
        elif kind == "3.2":  # gives the gradient w.r.t. z_{l-1}
            np.testing.assert_allclose(v.ravel(), fd_delta(net, p, x, y, l - 1), rtol=1e-6, atol=1e-8)
        else:  # pragma: no cover
            raise AssertionError(e.source)
    assert sum("(3.3)" in e.source for e in eqs) == net.L


def test_non_dense_networks_are_refused():
    net, p, x, y = example("small-cnn")
    for f in (damadi_displayed_equations, damadi_algorithm1, ganev_prop31):
        with pytest.raises(SpecError, match="dense"):
            f(net, p, x, y)
    net = jb.Network([layer for _ in range(4) for layer in (jb.Dense(3), jb.Sigmoid())], "bce", 2, convention="damadi")
    with pytest.raises(SpecError, match="damadi_algorithm1"):
        damadi_displayed_equations(net)


@needs_pdflatex
def test_paper_sections_compile(tmp_path):
    parts = []
    for name in ["damadi-1layer", "damadi-2layer", "damadi-3layer", "lenet-300-100"]:
        net, p, x, y = example(name)
        bind = name != "lenet-300-100"  # LeNet: block level only, no values
        args = (net, p, x, y) if bind else (net,)
        for f in (damadi_displayed_equations, damadi_algorithm1, ganev_prop31):
            eqs = f(*args)
            parts.append(eqs.to_latex())
            assert eqs._repr_markdown_().startswith("### ")
    tex = tmp_path / "paper.tex"
    tex.write_text("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\usepackage[margin=1.5cm]{geometry}\n"
                   "\\begin{document}\n" + "\n\n".join(parts) + "\n\\end{document}\n")
    assert compile_pdf(tex).exists()
