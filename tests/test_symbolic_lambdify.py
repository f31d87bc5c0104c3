"""Lambdified gradients and Jacobians: numeric engine, finite differences and autograd agree.

Oracles: the numeric engine (Network.gradient / jacobian_theta / per_sample_gradients),
central finite differences in float64, and torch autograd (skipped without torch).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import scipy.sparse as sp
import sympy

from jacobian_bp import Dense, GenericActivation, Network, PRESETS, ReLU, ShapeError, Sigmoid, Softmax, Tanh
from jacobian_bp.oracles.reference import central_differences
from jacobian_bp.spec import generate_data
from jacobian_bp.symbolic import (SymbolicNetwork, UndefinedSymbolError, cross_check_gradient, cross_check_jacobian,
                                  lambdify_gradient, lambdify_matrix, named_forward, named_gradient, symbol_values)


def _net(preset, hidden=Sigmoid, layers=3):
    if layers == 2:
        return Network([Dense(3), hidden(), Dense(2), Softmax()], "cross_entropy", 3, preset)
    return Network([Dense(3), hidden(), Dense(3), Tanh(), Dense(2), Softmax()], "cross_entropy", 3, preset)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_lambdified_gradient_equals_the_numeric_engine(preset):
    net = _net(preset, ReLU)
    snet = SymbolicNetwork(net)
    params = net.init_params(3)
    x, y = generate_data(net, 1, 4)
    assert cross_check_gradient(snet, x, y, params) < 1e-12
    X, Y = generate_data(net, 5, 6)  # batch, in the convention's layout
    f = lambdify_gradient(snet)
    per = f(X, Y, params)
    assert per.shape == (5, net.n_params)
    np.testing.assert_allclose(per, net.per_sample_gradients(X, Y, params), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(f(X, Y, params, reduce=True), net.gradient(X, Y, params).vector, rtol=1e-11, atol=1e-13)
    assert cross_check_gradient(snet, X, Y, params) < 1e-12


def test_lambdified_gradient_matches_central_differences():
    net = _net("damadi")
    params = net.init_params(1)
    x, y = generate_data(net, 1, 2)
    g = lambdify_gradient(SymbolicNetwork(net))(x, y, params)
    fd = central_differences(lambda t: net.loss_value(x, y, net.unpack(t)), net.pack(params))
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_lambdified_gradient_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    net = _net("pytorch")
    params = net.init_params(5)
    x, y = generate_data(net, 1, 6)
    g = lambdify_gradient(SymbolicNetwork(net))(x, y, params)
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    a = torch.tensor(x, dtype=torch.float64)
    a = torch.sigmoid(t["W1"] @ a + t["b1"])
    a = torch.tanh(t["W2"] @ a + t["b2"])
    z = t["W3"] @ a + t["b3"]
    loss = -(torch.tensor(y) * torch.log_softmax(z, dim=0)).sum()
    loss.backward()
    auto = np.concatenate([np.concatenate([t[f"W{l}"].grad.numpy().ravel(), t[f"b{l}"].grad.numpy()]) for l in (1, 2, 3)])
    np.testing.assert_allclose(g, auto, rtol=1e-10, atol=1e-12)


def test_partially_substituted_network_evaluates_at_its_substituted_values():
    net = _net("ganev")
    params = net.init_params(2)
    x, y = generate_data(net, 1, 3)
    part = SymbolicNetwork(net).substitute({"W1": params["W1"], "b3": params["b3"]})
    f = lambdify_gradient(part)
    assert len(f.symbols) == len(SymbolicNetwork(net).symbols()) - params["W1"].size - params["b3"].size
    np.testing.assert_allclose(f(x, y, params), net.gradient(x, y, params).vector, rtol=1e-11, atol=1e-13)
    other = {k: (v + 1.0 if k == "W1" else v) for k, v in params.items()}
    with pytest.raises(ValueError, match="substituted"):
        cross_check_gradient(part, x, y, other)


def test_missing_and_undefined_values_raise():
    net = _net("damadi")
    snet = SymbolicNetwork(net)
    f = lambdify_gradient(snet)
    x, y = generate_data(net, 1, 0)
    with pytest.raises(UndefinedSymbolError, match="pass params"):
        f(x, y)
    with pytest.raises(ShapeError):
        f(np.ones(4), y, net.init_params(0))
    with pytest.raises(UndefinedSymbolError, match="not a free symbol"):
        f.evaluate({**symbol_values(snet, x, y, net.init_params(0))[0], sympy.Symbol("q"): 1.0})
    with pytest.raises(UndefinedSymbolError, match="no value"):
        f.evaluate({})


def test_generic_activation_cannot_be_lambdified():
    net = Network([Dense(2), GenericActivation(), Dense(2), Softmax()], "cross_entropy", 2, "damadi")
    with pytest.raises(TypeError, match="undefined function f"):
        lambdify_gradient(SymbolicNetwork(net))


def test_sparse_lambdified_local_jacobian_has_the_kronecker_pattern():
    """J_θ1 z[1] = [I ⊗ xᵀ, I] (Damadi Fig. 4: 3 x 15 with 15 structural non-zeros)."""
    net = Network([Dense(3), Softmax()], "cross_entropy", 4, "damadi")
    snet = SymbolicNetwork(net)
    J = named_forward(snet).param_jacobian(1).to_sympy()
    assert J.shape == (3, 15)
    xs = list(snet.x)
    f = lambdify_matrix(J, xs, sparse="auto")
    xv = np.array([0.5, -1.0, 2.0, 0.25])
    M = f(*xv)
    assert sp.issparse(M) and M.nnz == 15 and f.nnz == 15
    params = net.init_params(0)
    np.testing.assert_array_equal(M.toarray(), net.local_jacobian(xv, params, 1).to_dense())
    D = lambdify_matrix(J, xs, sparse=False)({s: v for s, v in zip(xs, xv)})
    assert isinstance(D, np.ndarray) and np.array_equal(D, M.toarray())
    with pytest.raises(UndefinedSymbolError, match="neither arguments"):
        lambdify_matrix(J, xs[:2])
    with pytest.raises(ShapeError):
        f(1.0, 2.0)
    with pytest.raises(ValueError):
        lambdify_matrix(J, xs, sparse="maybe")


@pytest.mark.parametrize("preset", ["damadi", "mml"])
def test_jacobian_cross_check_dense_and_sparse(preset):
    net = _net(preset, layers=2)
    snet = SymbolicNetwork(net)
    params = net.init_params(8)
    x, _ = generate_data(net, 1, 9)
    assert cross_check_jacobian(snet, x, params, sparse=True) < 1e-12
    assert cross_check_jacobian(snet, x, params, sparse=False) < 1e-12


def test_lambdify_matrix_with_named_definitions():
    """A named Jacobian factor compiled with the definitions of its intermediates."""
    net = _net("park")
    snet = SymbolicNetwork(net)
    g = named_gradient(snet)
    nf = g.forward
    J = nf.activation_jacobian(1).to_sympy()  # diag f'(z[1]) in named z
    params = net.init_params(0)
    x, y = generate_data(net, 1, 1)
    values, _ = symbol_values(snet, x, y, params)
    syms = list(values)
    f = lambdify_matrix(J, syms, sparse="auto", definitions=nf.definitions)
    M = f(values)
    assert sp.issparse(M) and M.nnz == 3
    cache = net.forward(x, params)
    np.testing.assert_allclose(M.diagonal(), Sigmoid().df(cache.z[1][0]), rtol=1e-12)


_ACTS = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU}


@settings(max_examples=25, deadline=None)
@given(preset=st.sampled_from(sorted(PRESETS)), act=st.sampled_from(sorted(_ACTS)),
                  widths=st.lists(st.integers(1, 3), min_size=1, max_size=2), n_in=st.integers(1, 3),
                  n_out=st.integers(2, 3), seed=st.integers(0, 10_000))
def test_property_named_gradient_equals_engine_at_random_points(preset, act, widths, n_in, n_out, seed):
    layers = []
    for w in widths:
        layers += [Dense(w), _ACTS[act]()]
    net = Network(layers + [Dense(n_out), Softmax()], "cross_entropy", n_in, preset)
    params = net.init_params(seed)
    x, y = generate_data(net, 1, seed + 1)
    assert cross_check_gradient(SymbolicNetwork(net), x, y, params) < 1e-11
