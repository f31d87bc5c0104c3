"""SymbolicNetwork: document-style symbols per convention, real assumptions, substitution, bad input."""
from __future__ import annotations

import doctest
from fractions import Fraction

import numpy as np
import pytest
import sympy

from jacobian_bp import Dense, Network, PRESETS, ShapeError, Sigmoid, Softmax
from jacobian_bp.spec import generate_data
from jacobian_bp.symbolic import SymbolicNetwork, UndefinedSymbolError, symbol_array, symbol_name
import jacobian_bp.symbolic as symbolic_pkg
import jacobian_bp.symbolic.networks as networks_mod


def _net(preset="damadi", widths=(3,)):
    layers = []
    for w in widths[:-1]:
        layers += [Dense(w), Sigmoid()]
    layers += [Dense(widths[-1]), Softmax()]
    return Network(layers, "cross_entropy", 4, preset)


def S(name):
    return sympy.Symbol(name, real=True)


def test_symbol_names_follow_the_documents():
    assert symbol_name("w", (0, 1), (4, 3), 1) == "w^{[1]}_{12}"
    assert symbol_name("b", (2,), (3,), 2) == "b^{[2]}_{3}"
    assert symbol_name("x", (0,), (784,)) == "x_{1}"
    assert symbol_name("w", (0, 9), (3, 10), 1) == "w^{[1]}_{1,10}"  # commas once a dimension exceeds 9
    with pytest.raises(ShapeError):
        symbol_name("w", (0,), (3, 3), 1)


def test_all_symbols_are_real():
    snet = SymbolicNetwork(_net())
    assert snet.symbols()
    assert all(s.is_real for s in snet.symbols())
    assert snet.x[0] == S("x_{1}") and snet.y[2] == S("y_{3}")


@pytest.mark.parametrize("preset", list(PRESETS))
def test_weight_indices_follow_the_convention_layout(preset):
    """Oracle: differentiate z_2 = (affine map)_2 by x_1; Damadi's w_ij joins input i to output j (z = Wᵀx + b),
    the other documents' w_ij joins input j to output i (z = Wx + b)."""
    snet = SymbolicNetwork(_net(preset))
    z = snet.logits()
    coeff = sympy.diff(z[1], snet.x[0])
    if PRESETS[preset].weight_layout == "in_out":
        assert snet.params["W1"].shape == (4, 3)
        assert coeff == S("w^{[1]}_{12}")
    else:
        assert snet.params["W1"].shape == (3, 4)
        assert coeff == S("w^{[1]}_{21}")
    assert sympy.diff(z[1], S("b^{[1]}_{2}")) == 1


def test_theta_follows_damadi_block_order():
    """Damadi Alg. 1 line 7: [vec W[L]; b[L]; ...; vec W[1]; b[1]], columns of W stacked."""
    snet = SymbolicNetwork(_net("damadi", (5, 3)))
    theta = list(snet.theta)
    assert theta[:3] == [S("w^{[2]}_{11}"), S("w^{[2]}_{21}"), S("w^{[2]}_{31}")]  # first column of W[2] (5x3)
    assert theta[15:18] == [S("b^{[2]}_{1}"), S("b^{[2]}_{2}"), S("b^{[2]}_{3}")]
    assert theta[18] == S("w^{[1]}_{11}") and theta[-1] == S("b^{[1]}_{5}")
    assert len(theta) == 43


def test_forward_and_loss_match_the_numeric_engine_after_full_substitution():
    net = _net("park", (5, 3))
    snet = SymbolicNetwork(net)
    params = net.init_params(2)
    x, y = generate_data(net, 1, 3)
    point = snet.substitute({"x": x, "y": y, **params})
    assert point.symbols() == []
    np.testing.assert_allclose(np.array([sympy.N(v) for v in point.output()], dtype=float),
                               net.predict(x, params), rtol=1e-12)
    assert float(sympy.N(point.loss())) == pytest.approx(net.loss_value(x, y, params), rel=1e-12)


def test_partial_substitution_keeps_the_remaining_symbols():
    net = _net("damadi")
    snet = SymbolicNetwork(net)
    w = S("w^{[1]}_{12}")
    part = snet.substitute({w: sympy.Rational(1, 2), "b1": [1, 2, 3], S("x_{1}"): Fraction(1, 3)})
    assert part.params["W1"][0, 1] == sympy.Rational(1, 2)
    assert list(part.params["b1"]) == [1, 2, 3]
    assert w not in part.symbols() and S("b^{[1]}_{1}") not in part.symbols()
    assert S("w^{[1]}_{11}") in part.symbols()
    # z_2 = sum_i w_i2 x_i + b_2 with w_12 = 1/2 and x_1 = 1/3: exact
    z2 = part.logits()[1]
    assert sympy.expand(z2 - (sympy.Rational(1, 6) + sum(S(f"w^{{[1]}}_{{{i}2}}") * S(f"x_{{{i}}}") for i in (2, 3, 4)) + 2)) == 0
    # the original is unchanged
    assert snet.params["W1"][0, 1] == w


def test_substitution_by_symbol_name_and_by_expression():
    snet = SymbolicNetwork(_net())
    t = sympy.Symbol("t", real=True)
    part = snet.substitute({"w^{[1]}_{11}": 2 * t})
    assert part.params["W1"][0, 0] == 2 * t
    assert t in part.symbols()


def test_custom_symbols_are_validated():
    net = _net()
    snet = SymbolicNetwork(net, x=sympy.Matrix(sympy.symbols("u1:5", real=True)))
    assert snet.x[3] == sympy.Symbol("u4", real=True)
    with pytest.raises(ShapeError, match=r"input x: expected shape \(4,\), received \(3,\)"):
        SymbolicNetwork(net, x=sympy.symbols("u1:4"))
    with pytest.raises(ShapeError, match=r"parameter W1: expected shape \(4, 3\), received \(3, 4\)"):
        SymbolicNetwork(net, params={"W1": np.zeros((3, 4))})
    with pytest.raises(UndefinedSymbolError, match="unknown parameter"):
        SymbolicNetwork(net, params={"W7": np.zeros((3, 4))})
    with pytest.raises(TypeError, match="Network"):
        SymbolicNetwork("damadi-1layer")


def test_bad_substitutions_raise_clear_errors():
    snet = SymbolicNetwork(_net("damadi"))
    with pytest.raises(ShapeError, match=r"substitute: W1: expected shape \(4, 3\), received \(3, 4\)"):
        snet.substitute({"W1": np.ones((3, 4))})
    with pytest.raises(ShapeError, match=r"substitute: x: expected shape \(4,\), received \(5,\)"):
        snet.substitute({"x": np.ones(5)})
    with pytest.raises(UndefinedSymbolError, match="does not occur"):
        snet.substitute({sympy.Symbol("w^{[9]}_{11}", real=True): 1})
    with pytest.raises(UndefinedSymbolError, match="does not occur"):
        snet.substitute({sympy.Symbol("x_{1}"): 1})  # same name but not real: a different symbol
    with pytest.raises(UndefinedSymbolError, match="neither a tensor"):
        snet.substitute({"W9": np.ones((4, 3))})
    with pytest.raises(TypeError, match="never parsed"):
        snet.substitute({"w^{[1]}_{11}": "1/2"})
    with pytest.raises(TypeError, match="never parsed"):
        snet.substitute({"x": "[1, 2, 3, 4]"})
    with pytest.raises(ValueError, match="finite"):
        snet.substitute({"w^{[1]}_{11}": float("nan")})
    with pytest.raises(TypeError, match="boolean"):
        snet.substitute({"w^{[1]}_{11}": True})
    with pytest.raises(ValueError, match="both"):
        snet.substitute({"W1": np.ones((4, 3)), "w^{[1]}_{11}": 2})
    with pytest.raises(TypeError, match="mapping"):
        snet.substitute([("x", 1)])


def test_symbol_lookup_by_name():
    snet = SymbolicNetwork(_net())
    assert snet.symbol("b^{[1]}_{2}") == S("b^{[1]}_{2}")
    with pytest.raises(UndefinedSymbolError):
        snet.symbol("b^{[4]}_{2}")


def test_from_spec_builds_damadis_examples():
    snet = SymbolicNetwork.from_spec("damadi-2layer")
    assert snet.params["W2"].shape == (5, 3) and snet.network.n_params == 43
    assert "free symbols" in repr(snet)


def test_docstring_examples_run():
    for mod in (networks_mod, symbolic_pkg):
        failures, _ = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert failures == 0


def test_symbol_array_shapes():
    K = symbol_array("k", (2, 1, 2, 2), 1)
    assert K.shape == (2, 1, 2, 2) and K[1, 0, 1, 0] == S("k^{[1]}_{2121}")


def test_symbolic_functions_reject_a_plain_network_with_a_hint():
    from jacobian_bp.symbolic import (chain_gradient, chain_identity, cross_check_gradient, expanded_delta,
                                      ganev_prop31, named_forward, named_gradient)

    net = _net()
    calls = [named_gradient, named_forward, chain_gradient, expanded_delta, chain_identity,
             lambda n: ganev_prop31(n, [0, 0, 0]), lambda n: cross_check_gradient(n, np.zeros(4), np.eye(3)[0], {})]
    for call in calls:
        with pytest.raises(TypeError, match=r"expected a SymbolicNetwork, received Network \(wrap it"):
            call(net)
