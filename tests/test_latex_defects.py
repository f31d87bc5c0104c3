"""Issue #15 item 4: the LaTeX defects found on the rendered pages, each fixed, each checked on the string and
compiled with pdflatex.

1. The pytorch preset's MSE (``MSELoss``: the mean over the ``n_L`` outputs) was described as "scaled by 1" next to
   :math:`\\boldsymbol\\delta = \\frac{2}{3}(\\hat{\\mathbf y}-\\mathbf y)`; with 2 outputs the formula read ``\\frac{2}{2}``.
2. Blocks of different layers in :math:`\\mathbf J_\\theta\\mathbf z^{[L]}` were separated by a thin space only.
3. Entry-level symbolic matrices expanded every activation into its formula.
4. :math:`\\partial\\mathbf z/\\partial\\mathbf W` of a matrix without vec.
5. ``\\left( ... \\right)^\\top`` around a single symbol in the block chain.

Oracles: torch autograd of ``torch.nn.functional.mse_loss`` for the delta (the words and the printed constant must
agree with it), closed-form counts (bars = layer boundaries), and the exact symbolic Jacobian.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import sympy

import jacobian_bp as jb
from conftest import needs_pdflatex
from jacobian_bp.layers.residual import Residual
from jacobian_bp.render.derivation import compile_pdf, derivation_document
from jacobian_bp.render.latex import NetworkLatex, jacobian_equation_latex
from jacobian_bp.symbolic import SymbolicNetwork
from jacobian_bp.symbolic.blocks import BlockChain, lenet_block_chain

torch = pytest.importorskip("torch")


def _mse(n_out, convention="pytorch"):
    net = jb.Network([jb.Dense(4), jb.Sigmoid(), jb.Dense(n_out)], "mse", 3, convention=convention)
    rng = np.random.default_rng(n_out)
    return net, net.init_params(0), rng.standard_normal(3), rng.standard_normal(n_out)


def _torch_delta(net, p, x, y):
    """∂ MSELoss(ŷ, y) / ∂ z[L] for one sample, torch's own loss (the mean over the outputs)."""
    W1, b1, W2, b2 = (torch.tensor(p[k]) for k in ("W1", "b1", "W2", "b2"))
    z = torch.nn.functional.linear(torch.sigmoid(torch.nn.functional.linear(torch.tensor(x), W1, b1)), W2, b2)
    z = z.detach().requires_grad_(True)
    loss = torch.nn.functional.mse_loss(z, torch.tensor(y))
    (g,) = torch.autograd.grad(loss, z)
    return z.detach().numpy(), g.numpy()


@pytest.mark.parametrize("n_out, coef, words", [(3, r"\frac{2}{3}", "1/3"), (2, "", "1/2")])
def test_pytorch_mse_words_and_formula_agree_with_torch(n_out, coef, words):
    net, p, x, y = _mse(n_out)
    zt, g = _torch_delta(net, p, x, y)
    # the constant the document prints, times (ŷ − y), is torch's gradient
    c = 2.0 / n_out
    np.testing.assert_allclose(g, c * (zt - y), rtol=1e-12)
    doc = derivation_document(net, p, x, y, use_torch=False)
    body = doc.split(r"\appendix")[0]
    assert "scaled by $1$" not in body and r"\frac{2}{2}" not in doc
    delta = rf"\boldsymbol{{\delta}}^{{(2)}} = \nabla_{{\mathbf{{z}}^{{(2)}}}}\ell = {coef}{'(' if coef else ''}\hat{{\mathbf{{y}}}} - \mathbf{{y}}{')' if coef else ''}$"
    assert delta in body, re.findall(r"At the output.{0,200}", body)
    assert f"squared error scaled by {words}: scale 1 averaged over the {n_out} outputs" in body
    frac = r"\frac{1}{3}" if n_out == 3 else r"\frac{1}{2}"
    assert rf"the per-sample squared error is ${frac}\|\hat{{\mathbf{{y}}}} - \mathbf{{y}}\|^2$" in body
    # the δ values the page shows are torch's
    nl = NetworkLatex(net, p, x, y)
    np.testing.assert_allclose(nl.delta_symbol(net.L).value.ravel(), g, rtol=1e-12)


def test_other_presets_keep_their_wording():
    net, p, x, y = _mse(3, "damadi")
    body = derivation_document(net, p, x, y, use_torch=False).split(r"\appendix")[0]
    assert r"= 2(\hat{\mathbf{y}} - \mathbf{y})$ (identity output and squared error scaled by 1, Damadi Table 1)" in body
    assert r"the per-sample squared error is $\|\hat{\mathbf{y}} - \mathbf{y}\|^2$" in body


def test_layers_are_separated_by_a_visible_bar():
    for name in ("damadi-2layer", "damadi-3layer"):
        spec = jb.load_spec(name) if hasattr(jb, "load_spec") else None
        from jacobian_bp.spec import load_spec

        spec = load_spec(name)
        net, p = spec.network, spec.params()
        X, Y = spec.data()
        nl = NetworkLatex(net, p, X, Y)
        for steps in ((0,), (99,)):
            tex = nl.equation(nl.jacobian_theta(), steps=steps)
            assert tex.count(r"\;\middle|\;") == net.L - 1, tex  # one bar per boundary between two layers
            assert not re.search(r"\]\s*(\\;|\\,|\\quad)?\s*\[", tex), tex  # no "[..][..]" that reads as a product
        shown = jacobian_equation_latex(net.jacobian_theta(X, p))
        assert shown.count(r"\;\middle|\;") == net.L - 1
    # one layer: nothing to separate, Damadi's golden form is unchanged
    spec = load_spec("damadi-1layer")
    X, _ = spec.data()
    assert r"\middle" not in jacobian_equation_latex(spec.network.jacobian_theta(X, spec.params()))


def test_symbolic_entries_keep_the_named_activations():
    net = jb.Network([jb.Dense(2), jb.Sigmoid(), jb.Dense(1)], "mse", 2, convention="damadi")
    snet = SymbolicNetwork(net)
    J = snet.jacobian_theta()
    shown = J._repr_latex_()
    assert "a^{[1]}_{1}" in shown and "a^{[1]}_{2}" in shown
    assert not re.search(r"e\^\{- b\^\{\[1\]\}", shown)  # no activation written out in x and θ
    assert len(shown) < 1000
    # what it shows is the exact Jacobian: the named entries, definitions substituted, equal the engine's
    from jacobian_bp.symbolic.intermediates import named_forward, substitute_definitions

    named = BlockChain(net).explicit(snet)
    expanded = substitute_definitions(list(named), named_forward(snet).definitions)
    assert all(sympy.simplify(a - b) == 0 for a, b in zip(expanded, J.to_sympy()))


def test_derivatives_with_respect_to_a_matrix_are_written_with_vec():
    for conv, wrt in (("pytorch", r"\partial (\operatorname{vec}\mathbf{W}^{(1)},\mathbf{b}^{(1)})"),
                      ("ganev", r"\partial (\operatorname{vec}W_1,b_1)"),
                      ("park", r"\partial (\operatorname{vec}\boldsymbol{W}[1],\boldsymbol{b}[1])")):
        net, p, x, y = _mse(3, conv)
        doc = derivation_document(net, p, x, y, use_torch=False)
        assert wrt in doc, conv
        assert not re.search(r"\\partial \(?\\(mathbf|boldsymbol)\{W\}", doc) and r"\partial (W_1" not in doc
        assert re.search(r"\\nabla_\{\\operatorname\{vec\}", doc)  # the vec gradient (I ⊗ x)δ is ∇_{vec W}
        assert r"\nabla_{\mathbf{b}" in doc or r"\nabla_{b_1}" in doc or r"\boldsymbol{b}[1]} \mathcal{L}" in doc


def test_a_transposed_symbol_has_no_parentheses():
    tex = lenet_block_chain("damadi").latex()
    assert r"\mathbf{a}^{[2]\top}" in tex and r"\mathbf{W}^{[3]\top}" in tex
    assert not re.search(r"\\left\(\\mathbf\{[a-zA-Z]\}\^\{\[\d\]\}\\right\)\^", tex)
    assert r"\mathbf{a}^{(1)\top}" in BlockChain(_mse(3)[0]).latex()


def _residual_net():
    return jb.Network([jb.Dense(3), jb.Tanh(), Residual([jb.Dense(3), jb.Tanh(), jb.Dense(3)]), jb.Tanh(), jb.Dense(2)],
                      "mse", 2, convention="pytorch")


def test_residual_networks_get_algorithm_1_applied_recursively():
    net = _residual_net()
    rng = np.random.default_rng(1)
    doc = derivation_document(net, net.init_params(0), rng.standard_normal(2), rng.standard_normal(2), use_torch=False)
    appendix = doc.split(r"\appendix")[1]
    assert "applied recursively through the residual blocks" in appendix
    assert r"(\mathbf{I}_3 + " in appendix  # the block's input Jacobian as its formula
    assert r"\partial \operatorname{vec}\mathbf{W}^{(2.1)}" in appendix and r"\;\middle|\;" in appendix


@needs_pdflatex
def test_the_fixed_pages_compile(tmp_path):
    rng = np.random.default_rng(2)
    docs = {}
    for n_out in (2, 3):
        net, p, x, y = _mse(n_out)
        docs[f"mse{n_out}"] = derivation_document(net, p, x, y, use_torch=False)
    net = _residual_net()
    docs["residual"] = derivation_document(net, net.init_params(0), rng.standard_normal(2), rng.standard_normal(2),
                                           use_torch=False)
    chain = BlockChain(net)
    docs["chain"] = ("\\documentclass{article}\\usepackage{amsmath,amssymb}\\usepackage[margin=1cm,a3paper,landscape]{geometry}"
                     "\\begin{document}\\tiny\\[" + chain.latex() + "\\]\\[" + chain.legend_latex() + "\\]\\end{document}\n")
    for name, tex in docs.items():
        path = tmp_path / f"{name}.tex"
        path.write_text(tex)
        assert compile_pdf(path).stat().st_size > 1000, name
