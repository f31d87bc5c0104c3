"""Residual blocks in the symbolic backend (issue #12): symbol names w^{[l.k]}_{ij}, exact Jacobians equal to the
numeric engine at random rational points, the readable named gradient (named block input/output, inner deltas
delta^{[l.k]}), its lambdified form, and SymPy simplify(engine - hand-written closed form) == 0 for a tiny block."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy

from jacobian_bp.engine.network import Network
from jacobian_bp.layers.activations import Sigmoid, Tanh
from jacobian_bp.layers.dense import Dense
from jacobian_bp.layers.flatten import Flatten
from jacobian_bp.layers.pooling import AvgPool2d
from jacobian_bp.layers.residual import Residual
from jacobian_bp.layers.vector_activations import Softmax
from jacobian_bp.symbolic import SymbolicNetwork, cross_check_gradient, lambdify_gradient, named_gradient

PRESETS = ["damadi", "ganev", "pytorch"]


def res_mlp(conv):
    return Network([Dense(3), Tanh(), Residual([Dense(3), Tanh(), Dense(3)]), Sigmoid(), Dense(2), Softmax()],
                   "cross_entropy", 2, conv, name="res-mlp")


def nested(conv):  # a pre-activation body (tanh first) holding a nested block
    inner = Residual([Dense(2), Sigmoid()])
    return Network([Dense(2), Residual([Tanh(), Dense(2), inner]), Dense(2)], "mse", 2, conv, name="nested")


def pool_first(conv):
    return Network([AvgPool2d(2), Flatten(), Dense(2), Tanh(), Residual([Dense(2), Tanh(), Dense(2)]), Dense(2)],
                   "mse", (1, 4, 4), conv, name="pool-res")


NETS = {"res_mlp": res_mlp, "nested": nested, "pool_first": pool_first}


def rational_point(net, seed):
    """Random rational x, y and parameters (user layout), as Fractions and as floats."""
    rng = np.random.default_rng(seed)

    def draw(shape):
        q = np.empty(shape, dtype=object)
        for idx in np.ndindex(*shape):
            q[idx] = Fraction(int(rng.integers(-9, 10)), int(rng.integers(2, 8)))
        return q

    x, y = draw(net.input_shape), draw(net.output_shape)
    if net.loss.kind == "cross_entropy":
        y = np.array([Fraction(1)] + [Fraction(0)] * (net.n_out - 1), dtype=object)
    params = {e.name: draw(e.user_shape) for e in net.entries}
    as_float = lambda a: np.array(a, dtype=float)  # noqa: E731
    return x, y, params, as_float(x), as_float(y), {k: as_float(v) for k, v in params.items()}


def exact(M) -> np.ndarray:
    """Float64 value of a matrix of exact constants (tanh(3/5), …), each entry evaluated once by NumPy."""
    return np.asarray(sympy.lambdify([], sympy.Matrix(M), modules="numpy")(), dtype=float)


def test_block_parameters_are_named_with_the_block_tag():
    s = SymbolicNetwork(res_mlp("damadi"))
    assert s.params["W2.1"][0, 1].name == "w^{[2.1]}_{12}"
    assert s.params["b2.2"][2].name == "b^{[2.2]}_{3}"
    assert s.params["W1"][0, 0].name == "w^{[1]}_{11}"  # plain names untouched
    n = SymbolicNetwork(nested("damadi"))
    assert n.params["W2.2.1"][1, 0].name == "w^{[2.2.1]}_{21}"
    assert n.symbol("w^{[2.1]}_{11}") in n.symbols()


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("which", sorted(NETS))
def test_exact_jacobians_equal_the_numeric_engine(which, preset):
    net = NETS[which](preset)
    _, _, _, xf, yf, pf = rational_point(net, 3)
    s = SymbolicNetwork(net, x=xf, y=yf, params=pf)  # SymPy Floats: the entries stay numbers (the test's speed)
    Jt = exact(s.jacobian_theta().to_sympy())
    assert np.max(np.abs(Jt - net.jacobian_theta(xf, pf).to_dense())) <= 1e-12
    Jx = exact(s.jacobian_input().to_sympy())
    assert np.max(np.abs(Jx - net.jacobian_input(xf, pf).to_dense())) <= 1e-12


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("which", sorted(NETS))
def test_named_gradient_equals_the_numeric_gradient(which, preset):
    net = NETS[which](preset)
    x, y, p, xf, yf, pf = rational_point(net, 5)
    g = named_gradient(SymbolicNetwork(net))
    values = {}
    snet = SymbolicNetwork(net)
    for arr, val in [(snet.x, x), (snet.y, y)] + [(snet.params[k], p[k]) for k in p]:
        for s_, v in zip(np.ravel(arr), np.ravel(val)):
            values[s_] = sympy.Rational(v.numerator, v.denominator)
    for sym, rhs in g.definitions:  # every named intermediate, in evaluation order, at the rational point
        values[sym] = sympy.N(rhs.xreplace(values), 30)
    got = np.array([float(sympy.N(e.xreplace(values), 30)) for e in g.vector])
    want = net.gradient(xf, yf, pf).vector
    assert np.max(np.abs(got - want)) <= 1e-12 * max(1.0, np.max(np.abs(want)))


def test_named_gradient_is_readable():
    """The block's input a^{[1]} and output z^{[2]} = a^{[1]} + z^{[2.2]} are named, each sub-layer has its delta,
    and the skip connection shows as + delta^{[2]} in delta^{[1]} (no entry expands the block)."""
    net = res_mlp("damadi")
    g = named_gradient(SymbolicNetwork(net))
    sym = {s.name: s for s, _ in g.definitions}
    z2, a1, z22 = sym["z^{[2]}_{1}"], sym["a^{[1]}_{1}"], sym["z^{[2.2]}_{1}"]
    assert g.definition(z2) == a1 + z22
    assert {"z^{[2.1]}_{1}", "a^{[2.1]}_{1}", "\\delta^{[2.1]}_{1}", "\\delta^{[2.2]}_{1}"} <= set(sym)
    d1 = g.definition(sym["\\delta^{[1]}_{1}"])
    assert sym["\\delta^{[2]}_{1}"] in d1.free_symbols and sym["\\delta^{[2.1]}_{1}"] in d1.free_symbols
    # dl/dW^{[2.1]}_{ij} = a^{[1]}_i delta^{[2.1]}_j in Damadi's layout (W is n_in x n_out)
    assert g.params["W2.1"][0, 1] == a1 * sym["\\delta^{[2.1]}_{2}"]
    assert g.count_ops()["max_entry"] <= 2
    assert sym["z^{[2.1]}_{1}"] in g.symbols_of("z") and sym["\\delta^{[2.2]}_{1}"] in g.symbols_of("delta")
    assert sym["a^{[2.1]}_{1}"] in g.symbols_of("a")
    # keeping the z's leaves the block's pre-activations in the expanded gradient
    kept = g.expand(keep=("z",))
    assert any(sym["z^{[2.1]}_{1}"] in e.free_symbols for e in kept)


def test_pool_first_names_a0():
    g = named_gradient(SymbolicNetwork(pool_first("damadi")))
    names = {s.name for s, _ in g.definitions}
    assert "a^{[0]}_{1}" in names and "a^{[2.1]}_{1}" in names


@pytest.mark.parametrize("which", sorted(NETS))
def test_lambdified_named_gradient_matches_the_engine(which):
    net = NETS[which]("damadi")
    snet = SymbolicNetwork(net)
    _, _, _, xf, yf, pf = rational_point(net, 7)
    assert cross_check_gradient(snet, xf, yf, pf) <= 1e-12
    f = lambdify_gradient(named_gradient(snet))
    X = np.stack([xf, xf * 0.5, -xf]) if net.convention.batch_axis == "first" else None
    assert np.max(np.abs(f(xf, yf, pf) - net.gradient(xf, yf, pf).vector)) <= 1e-12
    per_sample = f(X, np.stack([yf] * 3), pf)  # a batch gives the per-sample gradients
    assert per_sample.shape == (3, net.n_params)
    assert np.max(np.abs(per_sample[1] - net.gradient(xf * 0.5, yf, pf).vector)) <= 1e-12


def test_tiny_block_equals_the_closed_form():
    r"""z = x + W2^T tanh(W1^T x + b1) + b2 (Damadi's layout): J_x z = I + W2^T diag tanh'(u) W1^T,
    J_{b^{[1.1]}} z = W2^T diag tanh'(u), J_{vec W^{[1.1]}} z = W2^T diag tanh'(u) (I ⊗ x^T) (columns of W1 stacked),
    J_{b^{[1.2]}} z = I, written here by hand from the symbols."""
    net = Network([Residual([Dense(2), Tanh(), Dense(2)])], "mse", 2, "damadi", name="tiny")
    s = SymbolicNetwork(net)
    x = sympy.Matrix(list(s.x))
    W1, W2 = sympy.Matrix(s.params["W1.1"].tolist()), sympy.Matrix(s.params["W1.2"].tolist())
    b1 = sympy.Matrix(list(s.params["b1.1"]))
    u = W1.T * x + b1
    D = sympy.diag(*[1 - sympy.tanh(t) ** 2 for t in u])
    closed_x = sympy.eye(2) + W2.T * D * W1.T
    assert sympy.simplify(s.jacobian_input().to_sympy() - closed_x) == sympy.zeros(2, 2)
    J = s.jacobian_theta().to_sympy()
    cols = {e.name: J[:, e.offset:e.offset + e.size] for e in net.entries}
    assert sympy.simplify(cols["b1.1"] - W2.T * D) == sympy.zeros(2, 2)
    assert sympy.simplify(cols["W1.1"] - W2.T * D * sympy.kronecker_product(sympy.eye(2), x.T)) == sympy.zeros(2, 4)
    assert sympy.simplify(cols["b1.2"] - sympy.eye(2)) == sympy.zeros(2, 2)
    # the named gradient, expanded, is the derivative of the loss written by hand
    g = named_gradient(SymbolicNetwork(net), delta="chain")
    y = sympy.Matrix(list(s.y))
    z = x + W2.T * sympy.Matrix([sympy.tanh(t) for t in u]) + sympy.Matrix(list(s.params["b1.2"]))
    ell = sum((z - y).applyfunc(lambda t: t ** 2))  # Damadi preset: squared error, scale 1, summed over outputs
    got = g.expand()
    for k, t in enumerate(s.theta):
        assert sympy.simplify(got[k] - sympy.diff(ell, t)) == 0
