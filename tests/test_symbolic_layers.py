"""Symbolic layer and network Jacobians equal the numeric ones at random points.

Oracles: SymPy's own ``Matrix.jacobian`` of the layer's symbolic forward pass (exact
differentiation, independent of the layers' ``jac_input``/``sympy_df``), and the numeric
engine's float64 Jacobians at the same point.  Every layer type, every convention preset.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import sympy

from jacobian_bp import (ELU, Arctan, Dense, GenericActivation, IdentityActivation, LeakyReLU, Network, PRESETS,
                         RadialSigmoid, ReLU, Sigmoid, Softmax, Softplus, Tanh)
from jacobian_bp.spec import generate_data
from jacobian_bp.symbolic import SymbolicNetwork, cross_check_jacobian, lambdify_matrix, symbol_array

ELEMENTWISE = [IdentityActivation, lambda: ReLU(at_zero=0.0), lambda: ReLU(at_zero=1.0), LeakyReLU, Sigmoid, Tanh,
               Arctan, Softplus, ELU, lambda: ELU(alpha=0.5)]
VECTOR = [Softmax, RadialSigmoid]


def _point(rng, n, away_from_zero=True):
    v = rng.uniform(0.2, 1.5, size=n) * rng.choice([-1.0, 1.0], size=n)
    return v if away_from_zero else rng.standard_normal(n)


def _evaluate(M: sympy.Matrix, symbols, values) -> np.ndarray:
    return np.asarray(lambdify_matrix(M, list(symbols), sparse=False)(*values), dtype=float)


@pytest.mark.parametrize("make", ELEMENTWISE + VECTOR, ids=lambda m: getattr(m, "__name__", "param"))
@pytest.mark.parametrize("seed", [0, 1])
def test_activation_jacobian_symbolic_equals_sympy_and_numeric(make, seed):
    layer = make()
    n = 4
    layer.build((n,))
    z = symbol_array("z", (n,))
    out = layer.forward(z[None], {})[0]
    J_sym = layer.jac_input(z, out, {}).to_sympy()
    assert J_sym.shape == (n, n)
    J_oracle = sympy.Matrix(list(out)).jacobian(list(z))
    rng = np.random.default_rng(seed)
    zv = _point(rng, n)
    a = _evaluate(J_sym, z, zv)
    b = _evaluate(J_oracle.applyfunc(lambda e: e.replace(lambda t: isinstance(t, sympy.DiracDelta),
                                                         lambda t: sympy.Integer(0))), z, zv)
    num_out = layer.forward(zv[None], {})[0]
    c = layer.jac_input(zv, num_out, {}).to_dense()
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("at_zero", [0.0, 1.0])
def test_relu_symbolic_derivative_uses_heaviside_with_stated_value_at_zero(at_zero):
    layer = ReLU(at_zero=at_zero)
    layer.build((2,))
    z = symbol_array("z", (2,))
    J = layer.jac_input(z, layer.forward(z[None], {})[0], {}).to_sympy()
    assert J[0, 0] == sympy.Heaviside(z[0], sympy.nsimplify(at_zero))
    assert J.subs(z[0], 0)[0, 0] == sympy.nsimplify(at_zero)
    assert J[0, 1] == 0


@pytest.mark.parametrize("preset", list(PRESETS))
def test_relu_takes_the_presets_value_at_zero(preset):
    net = Network([Dense(2), ReLU(), Dense(2), Softmax()], "cross_entropy", 2, preset)
    relu = net.stages[0].post[0]
    z = symbol_array("z", (2,), 1)
    J = relu.jac_input(z, relu.forward(z[None], {})[0], {}).to_sympy()
    assert J[1, 1] == sympy.Heaviside(z[1], sympy.nsimplify(PRESETS[preset].relu_at_zero))


def test_generic_activation_jacobian_is_diag_of_unevaluated_derivatives():
    f = GenericActivation("f")
    f.build((3,))
    z = symbol_array("z", (3,), 1)
    J = f.jac_input(z, f.forward(z[None], {})[0], {}).to_sympy()
    F = sympy.Function("f", real=True)
    assert J == sympy.diag(*[sympy.Derivative(F(zi), zi) for zi in z])
    assert all(isinstance(J[i, i], sympy.Derivative) for i in range(3))


@pytest.mark.parametrize("order", ["C", "F"])
def test_dense_jacobians_symbolic_equal_sympy_and_numeric(order):
    layer = Dense(3)
    layer.build((4,))
    a = symbol_array("a", (4,))
    W = symbol_array("w", (3, 4), 1)
    b = symbol_array("b", (3,), 1)
    params = {"W": W, "b": b}
    z = layer.forward(a[None], params)[0]
    J_in = layer.jac_input(a, z, params).to_sympy()
    J_W = layer.jac_params(a, z, params, order)["W"].to_sympy()
    J_b = layer.jac_params(a, z, params, order)["b"].to_sympy()
    vecW = list(W.ravel(order=order))
    assert J_in == sympy.Matrix(list(z)).jacobian(list(a))
    assert J_W == sympy.Matrix(list(z)).jacobian(vecW)
    assert J_b == sympy.Matrix(list(z)).jacobian(list(b))
    rng = np.random.default_rng(3)
    av, Wv, bv = rng.standard_normal(4), rng.standard_normal((3, 4)), rng.standard_normal(3)
    syms = list(a) + list(W.ravel()) + list(b)
    vals = list(av) + list(Wv.ravel()) + list(bv)
    num = layer.jac_params(av, Wv @ av + bv, {"W": Wv, "b": bv}, order)["W"].to_dense()
    np.testing.assert_allclose(_evaluate(J_W, syms, vals), num, rtol=0, atol=1e-14)


def _net(preset, hidden, last, loss, width=3):
    layers = [Dense(width), hidden(), Dense(2)] + ([last()] if last else [])
    return Network(layers, loss, 2, preset)


NETWORKS = {
    "sigmoid/softmax": (Sigmoid, Softmax, "cross_entropy"),
    "tanh/sigmoid": (Tanh, Sigmoid, "bce"),
    "relu/identity": (ReLU, None, "mse"),
    "leaky/softmax": (LeakyReLU, Softmax, "cross_entropy"),
    "elu/softmax": (ELU, Softmax, "cross_entropy"),
    "softplus/softmax": (Softplus, Softmax, "cross_entropy"),
    "arctan/softmax": (Arctan, Softmax, "cross_entropy"),
    "radial/softmax": (RadialSigmoid, Softmax, "cross_entropy"),
    "softmax-hidden/softmax": (Softmax, Softmax, "cross_entropy"),
}


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("kind", list(NETWORKS))
def test_network_jacobian_theta_symbolic_equals_numeric(preset, kind):
    hidden, last, loss = NETWORKS[kind]
    # vector activations in a hidden layer give long expanded expressions: keep them narrow
    net = _net(preset, hidden, last, loss, width=2 if hidden in (RadialSigmoid, Softmax) else 3)
    snet = SymbolicNetwork(net)
    params = net.init_params(7)
    x, _ = generate_data(net, 1, 11)
    assert cross_check_jacobian(snet, x, params) < 1e-12


@pytest.mark.parametrize("preset", list(PRESETS))
def test_network_jacobian_theta_columns_follow_theta_of_the_convention(preset):
    """Oracle: SymPy differentiates the expanded z[L] w.r.t. theta = pack(symbolic params)."""
    net = _net(preset, Tanh, Softmax, "cross_entropy")
    snet = SymbolicNetwork(net)
    J = snet.jacobian_theta().to_sympy()
    assert not J.atoms(sympy.Float), "exact symbolic Jacobians must not contain floating-point numbers"
    oracle = sympy.Matrix(list(snet.logits())).jacobian(list(snet.theta))
    syms = snet.symbols()
    rng = np.random.default_rng(5)
    vals = rng.standard_normal(len(syms))
    x_syms = [s for s in syms if s in J.free_symbols | oracle.free_symbols]
    vals = [vals[syms.index(s)] for s in x_syms]
    np.testing.assert_allclose(_evaluate(J, x_syms, vals), _evaluate(oracle, x_syms, vals), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_input_jacobian_symbolic_equals_numeric(preset):
    net = _net(preset, Sigmoid, Softmax, "cross_entropy")
    snet = SymbolicNetwork(net)
    J = snet.jacobian_input().to_sympy()
    oracle = sympy.Matrix(list(snet.logits())).jacobian(list(snet.x))
    params = net.init_params(1)
    x, _ = generate_data(net, 1, 2)
    values = {"x": x, **params}
    point = snet.substitute(values)  # every symbol replaced by a number: exact evaluation
    num = np.array(point.jacobian_input().to_sympy().evalf(), dtype=float)
    np.testing.assert_allclose(num, net.jacobian_input(x, params).to_dense(), rtol=1e-12, atol=1e-14)
    vals = {}
    for arr, val in [(snet.x, x)] + [(snet.params[k], params[k]) for k in snet.params]:
        vals.update({s: float(v) for s, v in zip(np.ravel(arr), np.ravel(val))})
    used = sorted(J.free_symbols | oracle.free_symbols, key=sympy.default_sort_key)
    np.testing.assert_allclose(_evaluate(J, used, [vals[s] for s in used]), _evaluate(oracle, used, [vals[s] for s in used]),
                               rtol=1e-12, atol=1e-14)


_HAS_CONV = importlib.util.find_spec("jacobian_bp.layers.conv") is not None


@pytest.mark.skipif(not _HAS_CONV, reason="conv layers not available")
@pytest.mark.parametrize("preset", ["pytorch", "damadi", "mml"])
def test_conv_network_symbolic_jacobian_equals_numeric(preset):
    from jacobian_bp.layers import Conv2d, Flatten

    net = Network([Conv2d(2, 2), Sigmoid(), Flatten(), Dense(2), Softmax()], "cross_entropy", (1, 3, 3), preset)
    snet = SymbolicNetwork(net)
    params = net.init_params(3)
    x, _ = generate_data(net, 1, 4)
    assert cross_check_jacobian(snet, x, params) < 1e-12
    assert not snet.jacobian_theta().to_sympy().atoms(sympy.Float)  # exact, also for column-major vec permutations
    if preset != "pytorch":
        return
    # oracle: SymPy's derivative of the expanded logits w.r.t. theta
    J = snet.jacobian_theta().to_sympy()
    oracle = sympy.Matrix(list(snet.logits())).jacobian(list(snet.theta))
    syms = sorted(J.free_symbols | oracle.free_symbols, key=sympy.default_sort_key)
    vals = np.random.default_rng(9).standard_normal(len(syms))
    np.testing.assert_allclose(_evaluate(J, syms, vals), _evaluate(oracle, syms, vals), rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(not _HAS_CONV, reason="conv layers not available")
def test_flatten_symbolic_jacobian_is_identity():
    from jacobian_bp.layers import Flatten

    fl = Flatten()
    fl.build((2, 2, 2))
    a = symbol_array("a", (2, 2, 2))
    out = fl.forward(a[None], {})[0]
    assert list(out) == list(a.ravel())
    assert fl.jac_input(a, out, {}).to_sympy() == sympy.Matrix(list(out)).jacobian(list(a.ravel()))
