"""The documents' identities simplify to exactly zero -- and wrong variants do not.

Oracles: SymPy's differentiation of the composed loss (Table 1 deltas), and closed-form
backprop written with plain SymPy matrices (Ganev Prop. 3.1, Park Thm. 5.1) against the
engine's explicit chain (Damadi Alg. 1).
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy

from jacobian_bp import (Arctan, Dense, GenericActivation, LeakyReLU, Network, RadialSigmoid, ReLU, Sigmoid, Softmax,
                         Softplus, Tanh)
from jacobian_bp.symbolic import (PAIRS, ExactIdentity, SymbolicNetwork, chain_gradient, chain_identity,
                                  delta_chain_identity, delta_identity, expanded_delta, ganev_prop31, park_thm51,
                                  simplifies_to_zero, symbol_array)


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_last_layer_delta_identities_hold(pair, n):
    assert delta_identity(pair, n).holds()
    assert delta_chain_identity(pair, n).holds()


def test_mse_delta_unhalved_and_halved():
    """Damadi Table 1: ‖y−ŷ‖² gives −2(y−ŷ); Park eq. (26)-(27): ½‖·‖² gives ŷ−y."""
    damadi = delta_identity("identity+mse", 3, mse_scale=1)
    z, y = symbol_array("z", (3,)), symbol_array("y", (3,))
    assert all(simplifies_to_zero(r - (-2 * (t - p))) for r, t, p in zip(damadi.rhs, y, z))
    park = delta_identity("identity+mse", 3, mse_scale=sympy.Rational(1, 2))
    assert park.holds()
    assert all(simplifies_to_zero(r - (p - t)) for r, t, p in zip(park.rhs, y, z))


def test_wrong_claims_do_not_hold():
    ok = delta_identity("identity+mse", 2)
    halved = ExactIdentity("MSE without the 2", "wrong", ok.lhs, ok.rhs / 2)
    assert not halved.holds() and len(halved.residual()) == 2
    ce = delta_identity("softmax+ce", 3)
    no_sum = ExactIdentity("CE without sum(y) = 1", "wrong", ce.lhs, ce.rhs)
    assert not no_sum.holds()  # the assumption Σy = 1 is needed
    sig = delta_identity("sigmoid+bce", 2)
    assert not ExactIdentity("sign", "wrong", sig.lhs, -sig.rhs).holds()


def test_bad_pairs_and_sizes():
    with pytest.raises(Exception, match="unknown matched pair"):
        delta_identity("tanh+mse", 2)
    with pytest.raises(ValueError):
        delta_identity("sigmoid+bce", 0)
    with pytest.raises(Exception, match="left side"):
        ExactIdentity("x", "", sympy.Matrix([1, 2]), sympy.Matrix([1]))


def _net(preset, widths, hidden, n_in=2):
    layers = []
    for w in widths[:-1]:
        layers += [Dense(w), hidden()]
    layers += [Dense(widths[-1]), Softmax()]
    return Network(layers, "cross_entropy", n_in, preset)


CASES = [
    ("damadi", (2,), GenericActivation), ("damadi", (2, 2), GenericActivation), ("damadi", (2, 2, 2), GenericActivation),
    ("ganev", (3,), Sigmoid), ("ganev", (3, 2), Sigmoid), ("ganev", (2, 2, 2), Sigmoid),
    ("park", (2, 2), ReLU), ("mml", (3, 2), Tanh), ("pytorch", (2, 2), Arctan), ("park", (2, 2), Softplus),
]


@pytest.mark.parametrize("preset,widths,hidden", CASES, ids=lambda v: str(v))
def test_explicit_chain_equals_ganev_and_park_closed_forms(preset, widths, hidden):
    snet = SymbolicNetwork(_net(preset, widths, hidden))
    for ref in ("ganev", "park"):
        for form in ("expanded", "named"):
            ident = chain_identity(snet, ref, form=form)
            assert ident.lhs.shape == (snet.network.n_params, 1)
            assert ident.holds(), ident.residual()[:1]


def test_chain_identity_with_the_actual_last_layer_delta():
    snet = SymbolicNetwork(_net("damadi", (2, 2), Sigmoid))
    d = expanded_delta(snet)  # ŷ − y expanded in x, θ
    assert chain_identity(snet, "ganev", delta_L=d).holds()


def test_hidden_vector_activation_in_ganev_but_not_park():
    snet = SymbolicNetwork(_net("ganev", (2, 2), RadialSigmoid))
    assert chain_identity(snet, "ganev", form="named").holds()
    assert chain_identity(SymbolicNetwork(_net("damadi", (2, 2), Softmax)), "ganev", form="named").holds()
    with pytest.raises(TypeError, match="elementwise"):
        park_thm51(snet, symbol_array("g", (2,)))
    with pytest.raises(TypeError, match="kink"):
        chain_identity(SymbolicNetwork(_net("ganev", (2, 2), LeakyReLU)), "ganev")


def test_identity_detects_layout_and_order_mistakes():
    """The checks have teeth: Damadi's θ (reverse order, columns stacked) is not Ganev's packing."""
    damadi = SymbolicNetwork(_net("damadi", (2, 2), Sigmoid))
    ganev = SymbolicNetwork(_net("ganev", (2, 2), Sigmoid))
    g = symbol_array(r"\delta", (2,), 2)
    lhs = chain_gradient(damadi, g)
    wrong = ExactIdentity("damadi chain vs ganev packing", "wrong", sympy.Matrix(list(lhs)),
                          sympy.Matrix(list(ganev_prop31(ganev, g))))
    assert not wrong.holds()
    # Damadi Alg. 1 as printed uses a^{[l]} instead of a^{[l-1]} in the Kronecker block: δ[2] a[2]ᵀ is wrong
    right = ganev_prop31(damadi, g)
    printed = right.copy()
    snet_named = damadi.network
    w2 = next(e for e in snet_named.entries if e.name == "W2")
    yhat = damadi.output()
    # W2 block (Damadi layout 2x2, columns stacked): entry (i, j) = a_i δ_j; the printed version uses ŷ_i
    for j in range(2):
        for i in range(2):
            printed[w2.offset + 2 * j + i] = yhat[i] * g[j]
    assert not ExactIdentity("printed Alg. 1", "Damadi Alg. 1 line 4 as printed", sympy.Matrix(list(lhs)),
                             sympy.Matrix(list(printed))).holds()
    assert ExactIdentity("corrected", "", sympy.Matrix(list(lhs)), sympy.Matrix(list(right))).holds()


def test_reference_input_validation():
    snet = SymbolicNetwork(_net("damadi", (2,), Sigmoid))
    with pytest.raises(Exception, match="delta_L must have 2 entries"):
        ganev_prop31(snet, [1])
    with pytest.raises(ValueError, match="reference"):
        chain_identity(snet, "damadi")
    with pytest.raises(ValueError, match="form"):
        chain_identity(snet, "ganev", form="entries")


def test_identity_latex_and_simplifier():
    ident = delta_identity("sigmoid+bce", 1)
    assert "=" in ident.latex() and ident._repr_latex_().startswith("$")
    t = sympy.Symbol("t", real=True)
    assert simplifies_to_zero(sympy.sin(t) ** 2 + sympy.cos(t) ** 2 - 1)
    assert not simplifies_to_zero(sympy.exp(t) - 1)
    assert simplifies_to_zero(np.float64(0.0))
