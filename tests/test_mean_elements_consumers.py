"""The element-mean reduction (PyTorch's default ``MSELoss()``/``BCELoss()``) reaches every consumer that
reduces a batch: conversion between conventions, the lambdified symbolic gradient, training's mean loss,
the derivation text, and the claim checker (which refuses it clearly).  Oracle: the engine's gradient under
the target convention, itself checked against torch in tests/test_torch_mean.py, and the closed form
(1/(N·K)) Σ of the per-sample gradients."""
from __future__ import annotations

import numpy as np
import pytest

from jacobian_bp.engine.conventions import get_convention
from jacobian_bp.engine.network import Network
from jacobian_bp.errors import SpecError
from jacobian_bp.layers.activations import Sigmoid, Tanh
from jacobian_bp.layers.dense import Dense
from jacobian_bp.spec import generate_data

N, K = 4, 3


def _net(reduction: str, loss: str = "bce") -> Network:
    conv = get_convention("pytorch").replace(name=f"pytorch-{reduction}", reduction=reduction)
    return Network([Dense(5), Tanh(), Dense(K), Sigmoid()], loss, 4, conv)


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_gradient_is_the_element_mean_of_the_per_sample_gradients(loss):
    net = _net("mean_elements", loss)
    X, Y = generate_data(net, N, 0)
    p = net.init_params(1)
    rows = net.per_sample_gradients(X, Y, p)
    factor = 1.0 / (N * K) if loss == "bce" or net.loss.output_scale(K) == 1.0 else 1.0 / N
    np.testing.assert_allclose(net.gradient(X, Y, p).vector, factor * rows.sum(axis=0), rtol=1e-12, atol=0)


def test_convert_gradient_from_sum_to_element_mean():
    from jacobian_bp.uses.convert import convert_gradient

    a, b = _net("sum"), _net("mean_elements")
    X, Y = generate_data(a, N, 0)
    p = a.init_params(1)
    g_sum = a.gradient(X, Y, p).vector
    np.testing.assert_allclose(convert_gradient(g_sum, a, b, n_samples=N), b.gradient(X, Y, p).vector, rtol=1e-12)


def test_lambdified_symbolic_gradient_reduces_by_the_element_mean():
    from jacobian_bp.symbolic import SymbolicNetwork
    from jacobian_bp.symbolic.lambdify import lambdify_gradient

    net = _net("mean_elements")
    X, Y = generate_data(net, N, 0)
    p = net.init_params(1)
    f = lambdify_gradient(SymbolicNetwork(net))
    np.testing.assert_allclose(f(X, Y, p, reduce=True), net.gradient(X, Y, p).vector, rtol=1e-10)


def test_training_mean_loss_is_the_per_sample_mean():
    from jacobian_bp.uses.training import _mean_loss

    net = _net("mean_elements")
    X, Y = generate_data(net, N, 0)
    p = net.init_params(1)
    per = net.per_sample_loss(net.forward_cache(X, net.canonical_params(p)), Y)
    assert _mean_loss(net, X, Y, p) == pytest.approx(float(np.mean(per)), rel=1e-13)


def test_derivation_states_the_element_mean_factor():
    from jacobian_bp.render.derivation import derivation_document

    net = _net("mean_elements")
    X, Y = generate_data(net, N, 0)
    tex = derivation_document(net, net.init_params(1), X, Y)
    assert rf"\frac{{1}}{{N \cdot {K}}}\sum" in tex


def test_claim_checker_refuses_the_element_mean():
    from jacobian_bp.claims import Setting

    with pytest.raises(SpecError, match="mean_elements"):
        Setting(convention="pytorch", reduction="mean_elements").conv()


def test_derivation_under_the_element_mean_compiles(tmp_path):
    """The reduction's name reached the text unescaped (``mean_elements``: a bare ``_`` stops pdflatex)."""
    import shutil

    from jacobian_bp.render.derivation import compile_pdf, derivation_document

    net = _net("mean_elements")
    X, Y = generate_data(net, N, 0)
    tex = derivation_document(net, net.init_params(1), X, Y)
    assert "mean_elements" not in tex and "mean over all entries" in tex
    if shutil.which("pdflatex"):
        path = tmp_path / "d.tex"
        path.write_text(tex, encoding="utf-8")
        assert compile_pdf(path).exists()
