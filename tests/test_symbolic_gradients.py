"""Readable gradients with named intermediates.

Oracles: SymPy's own derivative of the expanded loss (exact), central finite differences of
the numeric engine's loss (float64), and the textbook formula ∂ℓ/∂W_ij = δ_i a_j (Ganev eq. 3.3).
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy

from jacobian_bp import (BCE, MSE, Dense, GenericActivation, IdentityActivation, Network, PRESETS, ReLU, Sigmoid,
                         Softmax, SpecError, Tanh)
from jacobian_bp.oracles.reference import central_differences
from jacobian_bp.spec import generate_data
from jacobian_bp.symbolic import (SymbolicNetwork, chain_gradient, expanded_delta, lambdify_gradient, latex,
                                  named_forward, named_gradient, simplifies_to_zero)


def S(name):
    return sympy.Symbol(name, real=True)


def _net(preset="damadi", widths=(3,), hidden=Sigmoid, last=Softmax, loss="cross_entropy", n_in=4):
    layers = []
    for w in widths[:-1]:
        layers += [Dense(w), hidden()]
    layers += [Dense(widths[-1])] + ([last()] if last is not None else [])
    return Network(layers, loss, n_in, preset)


def _fd_gradient(net, x, y, params):
    theta = net.pack(params)
    return central_differences(lambda t: net.loss_value(x, y, net.unpack(t)), theta, h=1e-6)


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("case", ["softmax+ce", "sigmoid+bce", "identity+mse", "tanh+mse (unmatched)"])
def test_named_gradient_matches_finite_differences(preset, case):
    if case == "softmax+ce":
        net = _net(preset, (3, 3))
    elif case == "sigmoid+bce":
        net = _net(preset, (3, 2), hidden=Tanh, last=Sigmoid, loss="bce")
    elif case == "identity+mse":
        net = _net(preset, (3, 2), last=None, loss="mse")
    else:
        net = _net(preset, (3, 2), last=Tanh, loss="mse")
    g = named_gradient(SymbolicNetwork(net))
    assert g.delta_form == ("chain" if "unmatched" in case else "closed")
    params = net.init_params(4)
    x, y = generate_data(net, 1, 5)
    sym = lambdify_gradient(g)(x, y, params)
    np.testing.assert_allclose(sym, _fd_gradient(net, x, y, params), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("loss", ["cross_entropy", "bce", "mse"])
def test_expanded_named_gradient_equals_sympy_derivative_of_the_expanded_loss(loss):
    """Exact oracle: SymPy differentiates ℓ(y, ŷ(x, θ)) w.r.t. every θ entry."""
    last = {"cross_entropy": Softmax, "bce": Sigmoid, "mse": None}[loss]
    widths = (1, 2) if loss == "cross_entropy" else (2, 2)  # SymPy's own derivative of softmax-CE is slow to compare
    net = _net("damadi", widths, hidden=Tanh, last=last, loss=loss, n_in=1 if loss == "cross_entropy" else 2)
    snet = SymbolicNetwork(net)
    g = named_gradient(snet, delta="chain")  # chain form: no assumption on the targets
    expanded = g.expand()
    ell = snet.loss()
    for k, t in enumerate(snet.theta):
        assert simplifies_to_zero(sympy.diff(ell, t) - expanded[k]), f"entry {k} ({t})"


def test_closed_and_chain_delta_agree_for_one_hot_targets():
    net = _net("ganev", (3, 3))
    snet = SymbolicNetwork(net)
    closed, chain = named_gradient(snet, delta="closed"), named_gradient(snet, delta="chain")
    params = net.init_params(1)
    x, y = generate_data(net, 1, 2)
    np.testing.assert_allclose(lambdify_gradient(closed)(x, y, params), lambdify_gradient(chain)(x, y, params),
                               rtol=1e-12, atol=1e-14)
    # for targets that do not sum to 1 only the chain form is the true gradient of -sum y log ŷ
    y2 = np.array([0.5, 0.2, 0.1])
    fd = central_differences(lambda t: _ce(net, x, y2, net.unpack(t)), net.pack(params))
    np.testing.assert_allclose(lambdify_gradient(chain).evaluate(_values(snet, x, y2, params)), fd, rtol=1e-6, atol=1e-8)
    assert np.max(np.abs(lambdify_gradient(closed).evaluate(_values(snet, x, y2, params)) - fd)) > 1e-3


def _ce(net, x, y, params):
    yhat = net.predict(x, params)
    return -float(np.sum(y * np.log(yhat)))


def _values(snet, x, y, params):
    out = {}
    for arr, val in [(snet.x, x), (snet.y, y)] + [(snet.params[k], params[k]) for k in snet.params]:
        out.update({s: float(v) for s, v in zip(np.ravel(arr), np.ravel(val))})
    return out


def test_closed_delta_requires_a_matched_pair():
    net = _net("damadi", (3, 2), last=Tanh, loss="mse")
    with pytest.raises(SpecError, match="matched"):
        named_gradient(SymbolicNetwork(net), delta="closed")
    with pytest.raises(ValueError, match="delta must be"):
        named_gradient(SymbolicNetwork(net), delta="exact")
    with pytest.raises(TypeError):
        named_gradient(net)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_weight_gradient_is_delta_times_previous_activation(preset):
    """Ganev eq. (3.3) / Park eq. (18): ∇_W ℓ = δ a_{l-1}ᵀ in the out x in layout (transposed for Damadi)."""
    net = _net(preset, (3, 2))
    g = named_gradient(SymbolicNetwork(net))
    d1, d2, x1, a2 = S(r"\delta^{[1]}_{2}"), S(r"\delta^{[2]}_{1}"), S("x_{1}"), S("a^{[1]}_{3}")
    if PRESETS[preset].weight_layout == "in_out":  # Damadi: W[1] is 4 x 3, w_ij joins input i to output j
        assert g["W1"][0, 1] == d1 * x1
        assert g["W2"][2, 0] == d2 * a2
    else:
        assert g["W1"][1, 0] == d1 * x1
        assert g["W2"][0, 2] == d2 * a2
    assert list(g["b2"]) == [S(r"\delta^{[2]}_{1}"), S(r"\delta^{[2]}_{2}")]
    # δ[L] = ŷ - y (Damadi Table 1)
    assert g.definition(S(r"\delta^{[2]}_{1}")) == S(r"\hat{y}_{1}") - S("y_{1}")


def test_hidden_delta_is_fprime_times_W_transpose_delta_for_generic_f():
    """Park eq. (17): δ[1] = f'(z[1]) ⊙ (W[2]ᵀ δ[2]), with f' an unevaluated derivative."""
    net = _net("ganev", (2, 2), hidden=GenericActivation, n_in=2)
    g = named_gradient(SymbolicNetwork(net))
    f = sympy.Function("f", real=True)
    z1 = S("z^{[1]}_{1}")
    rhs = sympy.Derivative(f(z1), z1) * (S("w^{[2]}_{11}") * S(r"\delta^{[2]}_{1}") + S("w^{[2]}_{21}") * S(r"\delta^{[2]}_{2}"))
    assert sympy.expand(g.definition(S(r"\delta^{[1]}_{1}")) - rhs) == 0
    tex = latex(g.definition(S(r"\delta^{[1]}_{1}")))
    assert r"f'\left(z^{[1]}_{1}\right)" in tex


def test_named_activation_jacobians_are_as_in_the_papers():
    net = _net("damadi", (3, 2), hidden=GenericActivation, n_in=2)
    nf = named_forward(SymbolicNetwork(net))
    f = sympy.Function("f", real=True)
    z = [S(f"z^{{[1]}}_{{{i}}}") for i in (1, 2, 3)]
    assert nf.activation_jacobian(1).to_sympy() == sympy.diag(*[sympy.Derivative(f(t), t) for t in z])
    yh = [S(r"\hat{y}_{1}"), S(r"\hat{y}_{2}")]
    S_ = nf.activation_jacobian(2).to_sympy()  # softmax in named ŷ: diag(ŷ) - ŷŷᵀ (Ganev Ex. 1d)
    assert S_ == sympy.diag(*yh) - sympy.Matrix(yh) * sympy.Matrix(yh).T
    # Damadi's J_{a[0]} z[1] = (W[1])ᵀ and J_{θ1} z[1] = [I ⊗ xᵀ, I]
    W = sympy.Matrix(SymbolicNetwork(net).params["W1"].tolist())
    assert nf.input_jacobian(1).to_sympy() == W.T
    x = sympy.Matrix([S("x_{1}"), S("x_{2}")])
    assert nf.param_jacobian(1).to_sympy() == sympy.Matrix.hstack(sympy.kronecker_product(sympy.eye(3), x.T), sympy.eye(3))
    with pytest.raises(ValueError, match="layer index"):
        nf.input_jacobian(3)


def test_relu_named_gradient_uses_heaviside_of_the_preset():
    for preset, h0 in (("damadi", 0), ("park", 1)):
        net = _net(preset, (2, 2), hidden=ReLU, n_in=2)
        g = named_gradient(SymbolicNetwork(net))
        z = S("z^{[1]}_{1}")
        assert g.definition(S(r"\delta^{[1]}_{1}")).has(sympy.Heaviside(z, h0))


def test_expand_on_request_keeps_the_chosen_kinds():
    net = _net("damadi", (3, 2), n_in=2)
    g = named_gradient(SymbolicNetwork(net))
    keep_z = g.expand(keep=("z",))
    syms = set().union(*(e.free_symbols for e in keep_z))
    assert syms & g.symbols_of("z")
    assert not syms & (g.symbols_of("delta") | g.symbols_of("a"))
    full = set().union(*(e.free_symbols for e in g.expand()))
    assert full <= set(SymbolicNetwork(net).symbols())
    with pytest.raises(ValueError, match="unknown kind"):
        g.expand(keep=("q",))


def test_generic_f_expansion_evaluates_fprime_at_the_expression():
    net = _net("ganev", (2, 1), hidden=GenericActivation, last=None, loss="mse", n_in=1)
    g = named_gradient(SymbolicNetwork(net))
    e = g.expand()
    f = sympy.Function("f", real=True)
    zexpr = S("w^{[1]}_{11}") * S("x_{1}") + S("b^{[1]}_{1}")
    assert any(s.has(sympy.Subs) for s in e)
    # oracle: SymPy's own derivative of the expanded MSE loss
    snet = SymbolicNetwork(net)
    ell = snet.loss()
    for k, t in enumerate(snet.theta):
        assert simplifies_to_zero(sympy.diff(ell, t) - e[k])
    assert sympy.diff(f(zexpr), S("x_{1}")).has(sympy.Subs)


def test_size_of_named_gradient_of_damadis_three_layer_network():
    net = _net("damadi", (5, 5, 3))
    c = named_gradient(SymbolicNetwork(net)).count_ops()
    assert c["entries"] == 73
    assert c["max_entry"] <= 50 and c["max_definition"] <= 50


def test_chain_gradient_shapes_and_errors():
    net = _net("damadi", (2,), n_in=2)
    snet = SymbolicNetwork(net)
    with pytest.raises(Exception, match="delta_L must have 2 entries"):
        chain_gradient(snet, [1, 2, 3])
    d = expanded_delta(snet)
    assert len(d) == 2
    with pytest.raises(SpecError):
        expanded_delta(SymbolicNetwork(_net("damadi", (2,), last=Tanh, loss="mse", n_in=2)), "closed")


def test_latex_and_repr():
    g = named_gradient(SymbolicNetwork(_net("damadi", (3, 2), n_in=2)))
    tex = g.latex()
    assert tex.startswith("\\begin{aligned}") and r"\delta^{[2]}_{1} &= \hat{y}_{1} - y_{1}" in tex
    assert r"\frac{\partial \ell}{\partial w^{[1]}_{11}}" in tex
    assert "$" in g._repr_latex_()
    assert "entries" in repr(g)
    with pytest.raises(KeyError):
        g["W9"]


def test_mse_scale_of_the_convention_enters_the_delta():
    """Damadi: ℓ = ‖y − ŷ‖² → δ = 2(ŷ − y); Park: ½‖·‖² → ŷ − y (Park eq. 27)."""
    for preset, c in (("damadi", 2), ("park", 1)):
        net = _net(preset, (2,), last=None, loss="mse", n_in=2)
        g = named_gradient(SymbolicNetwork(net))
        assert sympy.expand(g.definition(S(r"\delta^{[1]}_{1}")) - c * (S(r"\hat{y}_{1}") - S("y_{1}"))) == 0
    assert isinstance(_net("park", (2,), last=None, loss="mse").loss, MSE)
    assert isinstance(_net("park", (2,), last=Sigmoid, loss="bce").loss, BCE)
    assert IdentityActivation().sympy_df(S("t")) == 1
