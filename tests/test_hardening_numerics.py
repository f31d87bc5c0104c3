"""Issue #11 (hardening): numeric arguments of activations and losses, safe exact constants,
per-network ReLU'(0), tail accuracy of the derivatives, and non-finite losses.

Oracles: mpmath at 50 digits for the activations, closed forms for the gradients.
"""
from __future__ import annotations

import os
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy

import jacobian_bp as jb
from jacobian_bp.engine.conventions import get_convention
from jacobian_bp.errors import DataError, ShapeError, SpecError
from jacobian_bp.backend.exact import exact_number, real_number
from jacobian_bp.layers.activations import ELU, Arctan, IdentityActivation, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from jacobian_bp.layers.vector_activations import RadialSigmoid, Softmax
from jacobian_bp.layers.losses import BCE, MSE, CrossEntropy, make_loss
from jacobian_bp.spec import load_spec
from jacobian_bp.symbolic import SymbolicNetwork

MARKER = "MARKER"
CODE = "__import__('os').system('touch MARKER') or 0"

# every numeric constructor field of every activation and loss: (spec layer type or loss, field)
LAYER_FIELDS = [("relu", "at_zero"), ("leaky_relu", "at_zero"), ("leaky_relu", "negative_slope"), ("elu", "alpha")]
LOSS_FIELDS = [("mse", "scale"), ("mse", "reduce_outputs")]
LAYER_CLASSES = {"relu": ReLU, "leaky_relu": LeakyReLU, "elu": ELU}


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg
    return msg


# --------------------------------------------------------------------------- 1. no code from a spec
@pytest.mark.parametrize("kind,field", LAYER_FIELDS)
def test_code_payload_in_activation_field_is_refused_by_the_python_api(kind, field, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as err:
        layer = LAYER_CLASSES[kind](**{field: CODE})
        layer.build((2,), get_convention("pytorch"))  # pre-fix: reaching SymPy ran the payload
        z = sympy.Symbol("z", real=True)
        layer.sympy_f(z), layer.sympy_df(z)
    msg = _one_line(err.value)
    assert kind in msg and field in msg and "str" in msg
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("kind,field", LAYER_FIELDS)
def test_code_payload_in_activation_field_is_refused_through_a_spec(kind, field, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = {"input": 2, "layers": [{"type": "dense", "out_features": 2}, {"type": kind, field: CODE},
                                   {"type": "dense", "out_features": 2}], "loss": "mse"}
    with pytest.raises(SpecError) as err:
        load_spec(dict(spec))
    _one_line(err.value)
    with pytest.raises(SpecError):
        SymbolicNetwork.from_spec(dict(spec)).jacobian_theta().to_sympy()
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("loss,field", LOSS_FIELDS)
def test_code_payload_in_loss_field_is_refused(loss, field, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as err:
        make_loss(loss, **{field: CODE})
    assert "mse" in _one_line(err.value) and field in str(err.value)
    with pytest.raises(SpecError):
        MSE(**{field: CODE})
    spec = {"input": 2, "layers": [{"type": "dense", "out_features": 2}], "loss": {"type": loss, field: CODE}}
    with pytest.raises(SpecError):
        load_spec(dict(spec))
    with pytest.raises(SpecError):
        SymbolicNetwork.from_spec(dict(spec)).gradient()
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("knob", ["relu_at_zero", "mse_scale"])
def test_code_payload_in_a_convention_knob_never_runs(knob, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = {"input": 2, "layers": [{"type": "dense", "out_features": 2}, {"type": "relu"},
                                   {"type": "dense", "out_features": 1}], "loss": "mse",
            "convention": {"preset": "damadi", knob: CODE}}
    with pytest.raises(jb.errors.JacobianBPError):
        SymbolicNetwork.from_spec(spec).jacobian_theta().to_sympy()
    assert not os.path.exists(MARKER)


def test_code_payload_in_relu_at_zero_setter_and_delta_identity(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = ReLU()
    with pytest.raises(SpecError):
        r.at_zero = CODE
    from jacobian_bp.symbolic.identities import delta_identity

    with pytest.raises(SpecError):
        delta_identity("identity+mse", 2, mse_scale=CODE)
    with pytest.raises(SpecError):  # pre-fix: float("0.5") accepted the string
        delta_identity("identity+mse", 2, mse_scale="0.5")
    assert not os.path.exists(MARKER)


def test_matrix_values_are_never_sympified(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from jacobian_bp.symbolic.blocks import evaluate_matrix_expression

    A = sympy.MatrixSymbol("A", 1, 1)
    with pytest.raises(TypeError):
        evaluate_matrix_expression(A, {A: [[CODE]]})
    assert not os.path.exists(MARKER)
    assert evaluate_matrix_expression(A, {A: [[Fraction(1, 3)]]})[0, 0] == sympy.Rational(1, 3)


BAD_NUMBERS = ["0.5", "1", True, np.bool_(False), float("nan"), float("inf"), -float("inf"), complex(0.5, 0),
               np.complex128(0.5), sympy.Symbol("h"), [0.5], object()]


@pytest.mark.parametrize("bad", BAD_NUMBERS, ids=repr)
@pytest.mark.parametrize("kind,field", LAYER_FIELDS + [("mse", "scale")])
def test_every_numeric_field_refuses_non_real_values(kind, field, bad):
    cls = LAYER_CLASSES.get(kind, MSE)
    with pytest.raises(SpecError) as err:
        cls(**{field: bad})
    msg = _one_line(err.value)
    assert field in msg and "received" in msg and "finite real number" in msg


@pytest.mark.parametrize("call", [
    lambda: ReLU(at_zero=1.5), lambda: ReLU(at_zero=-0.1),
    lambda: LeakyReLU(0.1, at_zero=5), lambda: LeakyReLU(0.1, at_zero=0.05), lambda: LeakyReLU(2.0, at_zero=0.5),
    lambda: ELU(alpha=0), lambda: ELU(alpha=-1), lambda: MSE(scale=0), lambda: MSE(scale=-0.5),
    lambda: MSE(reduce_outputs="no"), lambda: MSE(reduce_outputs=True), lambda: MSE(reduce_outputs=["sum"]),
    lambda: make_loss("mse", weight=2), lambda: make_loss(["mse"]),
])
def test_out_of_range_values_are_refused(call):
    with pytest.raises(SpecError) as err:
        call()
    _one_line(err.value)


def test_valid_numbers_of_every_kind_are_accepted():
    assert ReLU(at_zero=Fraction(1, 2)).at_zero == 0.5
    assert ReLU(at_zero=np.float32(1)).at_zero == 1.0 and ReLU(at_zero=1).at_zero == 1.0
    assert LeakyReLU(np.float64(0.2), at_zero=sympy.Rational(1, 2)).at_zero == 0.5
    assert LeakyReLU(2.0, at_zero=1.5).at_zero == 1.5  # between 1 and the slope
    assert ELU(np.int64(2)).alpha == 2.0 and MSE(Fraction(1, 2), "mean").scale == 0.5


def test_exact_number_never_parses_and_is_exact():
    assert exact_number(0.5) == sympy.Rational(1, 2) and exact_number(0.01) == sympy.Rational(1, 100)
    assert exact_number(1 / 3) == sympy.Rational(1, 3) and exact_number(1e-9) == sympy.Rational(1, 10 ** 9)
    assert exact_number(np.int64(7)) == 7 and exact_number(Fraction(2, 7)) == sympy.Rational(2, 7)
    x = 0.1 + 0.2  # not a short decimal nor a small fraction: kept as the double's exact value
    assert isinstance(exact_number(x), sympy.Float) and float(exact_number(x)) == x
    for bad in (CODE, "0.5", True, float("nan"), sympy.oo, sympy.Symbol("x"), None, 1j):
        with pytest.raises(SpecError):
            exact_number(bad, "test")
    with pytest.raises(SpecError):
        real_number(2.0, "test", maximum=1.0)


def test_relu_symbolic_derivative_uses_exact_constants():
    z = sympy.Symbol("z", real=True)
    assert ReLU(at_zero=0.5).sympy_df(z) == sympy.Heaviside(z, sympy.Rational(1, 2))
    assert LeakyReLU(0.01).sympy_df(sympy.Integer(-1)) == sympy.Rational(1, 100)
    assert ELU(0.5).sympy_f(sympy.Integer(-1)) == sympy.Rational(1, 2) * (sympy.exp(-1) - 1)


# --------------------------------------------------------------------------- 2. ReLU'(0) per convention
def test_relu_rebuilt_under_another_convention_takes_that_conventions_value():
    r = ReLU()
    r.build((2,), get_convention("park"))
    assert r.df(np.array([0.0]))[0] == 1.0
    r.build((2,), get_convention("pytorch"))  # pre-fix: kept park's 1
    assert r.df(np.array([0.0]))[0] == 0.0 and r.at_zero_stated is None
    s = ReLU(at_zero=0.25)
    s.build((2,), get_convention("park"))
    assert s.df(np.array([0.0]))[0] == 0.25


def _b1_gradient_closed_form(net, x, y, W2, b2, h0):
    """ℓ for z1 = (0, 1): ŷ = W2[1] + b2; ∂ℓ/∂b1 = 2c(ŷ - y) (W2[0] h0, W2[1]); batch of one, one output."""
    c = net.loss.scale
    yhat = W2[1] + b2[0]
    return 2 * c * (yhat - y[0]) * np.array([W2[0] * h0, W2[1]])


def test_relu_shared_by_two_networks_keeps_each_conventions_value_at_zero():
    shared = ReLU()
    nets = {conv: jb.Network([jb.Dense(2), shared, jb.Dense(1)], "mse", 3, conv) for conv in ("pytorch", "park")}
    x, y = np.array([0.3, -1.2, 2.0]), np.array([0.7])
    W2v, b2 = np.array([1.5, -0.4]), np.array([0.2])
    for conv, h0 in (("pytorch", 0.0), ("park", 1.0)):
        net = nets[conv]
        p = net.init_params(0)
        p["W1"] = np.zeros_like(p["W1"])
        p["b1"] = np.array([0.0, 1.0])  # z1 = (0, 1): the ReLU is evaluated exactly at 0
        p["W2"] = W2v.reshape(p["W2"].shape)
        p["b2"] = b2
        g = net.gradient(x, y, p)
        np.testing.assert_allclose(g["b1"], _b1_gradient_closed_form(net, x, y, W2v, b2, h0), rtol=1e-14, atol=0)


# --------------------------------------------------------------------------- 3. tail accuracy
mpmath.mp.dps = 50
GRID = np.unique(np.concatenate([np.linspace(-700, 700, 1401), [-300, -30, -19, -1e-8, 0.0, 1e-8, 19, 30, 300],
                                 [-1e100, -1e10, 1e10, 1e100]]))


def _mp_sig(t):
    return 1 / (1 + mpmath.exp(-t))


REFERENCE = {
    "sigmoid": (Sigmoid, _mp_sig, lambda t: _mp_sig(t) * _mp_sig(-t)),
    "tanh": (Tanh, mpmath.tanh, lambda t: mpmath.sech(t) ** 2),
    "arctan": (Arctan, mpmath.atan, lambda t: 1 / (1 + t ** 2)),
    "softplus": (Softplus, lambda t: mpmath.log1p(mpmath.exp(t)), _mp_sig),
    "elu": (ELU, lambda t: t if t > 0 else mpmath.expm1(t), lambda t: 1 if t > 0 else mpmath.exp(t)),
    "elu-0.5": (lambda: ELU(0.5), lambda t: t if t > 0 else mpmath.expm1(t) / 2,
                lambda t: 1 if t > 0 else mpmath.exp(t) / 2),
    "leaky": (lambda: LeakyReLU(0.01), lambda t: t if t > 0 else t / 100, lambda t: 1 if t > 0 else mpmath.mpf(1) / 100),
    "identity": (IdentityActivation, lambda t: t, lambda t: 1),
}


def _check_against_mp(got: np.ndarray, ref, grid, what: str):
    bad = []
    for z, v in zip(grid, got):
        t = ref(mpmath.mpf(float(z)))
        ta = abs(t)
        if ta > 1e-300:  # a normal float: relative accuracy
            ok = abs(mpmath.mpf(float(v)) - t) <= 1e-13 * ta
        else:  # the true value underflows: 0 (or a subnormal close to it) is fine
            ok = abs(float(v)) <= 1e-300
        if not ok:
            bad.append((float(z), float(v), mpmath.nstr(t, 17)))
    assert not bad, f"{what}: {len(bad)} points off, e.g. {bad[:3]}"


@pytest.mark.parametrize("name", list(REFERENCE))
def test_activation_values_and_derivatives_keep_relative_accuracy_in_the_tails(name):
    make, f, df = REFERENCE[name]
    act = make()
    act.build((GRID.size,))
    with np.errstate(over="raise", invalid="raise"):
        fv, dv = act.f(GRID), act.df(GRID)
    _check_against_mp(fv, f, GRID, f"{name} f")
    _check_against_mp(dv, df, GRID, f"{name} f'")


def test_tanh_and_sigmoid_derivatives_at_19_and_40_are_not_zero():
    # 1 - tanh(19)^2 rounds to 0 (true 1.26e-16); sigma(40)(1 - sigma(40)) rounds to 0 (true 4.25e-18)
    assert Tanh().df(np.array([19.0]))[0] == pytest.approx(float(mpmath.sech(19) ** 2), rel=1e-14, abs=0)
    assert Sigmoid().df(np.array([40.0]))[0] == pytest.approx(float(_mp_sig(40) * _mp_sig(-40)), rel=1e-14, abs=0)


def test_softmax_with_overflowing_logits_is_finite_and_exact():
    sm = Softmax()
    sm.build((3,))
    z = np.array([[1000.0, 0.0, -1000.0]])
    s = sm.forward(z, {})
    e = [mpmath.exp(mpmath.mpf(v) - 1000) for v in z[0]]
    ref = [v / sum(e) for v in e]
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s[0], [float(v) for v in ref], rtol=1e-15, atol=0)
    J = sm.jac_input(z[0], s[0], {}).to_dense()
    Jref = np.array([[float((ref[i] if i == j else 0) - ref[i] * ref[j]) for j in range(3)] for i in range(3)])
    assert np.all(np.isfinite(J))
    np.testing.assert_allclose(J, Jref, rtol=1e-15, atol=1e-300)
    G = np.array([[1.0, -2.0, 3.0]])
    np.testing.assert_allclose(sm.vjp_input(z, s, G, {})[0], Jref.T @ G[0], rtol=1e-14, atol=1e-300)


def _radial_reference(z):
    zm = [mpmath.mpf(float(v)) for v in z]
    r = mpmath.sqrt(sum(v * v for v in zm))
    s, ds = _mp_sig(r), _mp_sig(r) * _mp_sig(-r)
    u = [v / r for v in zm]
    f = [float(s * v) for v in u]
    J = [[float(ds * u[i] * u[j] + s / r * ((1 if i == j else 0) - u[i] * u[j])) for j in range(len(z))]
         for i in range(len(z))]
    return np.array(f), np.array(J)


@pytest.mark.parametrize("scale", [1e-200, 1e-3, 1.0, 1e3, 1e200])
def test_radial_sigmoid_neither_overflows_nor_underflows_the_norm(scale):
    rs = RadialSigmoid()
    rs.build((3,))
    z = np.array([3.0, -4.0, 12.0]) * scale
    f_ref, J_ref = _radial_reference(z)
    f = rs.forward(z[None], {})[0]
    J = rs.jac_input(z, f, {}).to_dense()
    np.testing.assert_allclose(f, f_ref, rtol=1e-14, atol=0)
    np.testing.assert_allclose(J, J_ref, rtol=1e-13, atol=1e-13 * np.max(np.abs(J_ref)))
    G = np.array([[0.5, 1.0, -2.0]])
    np.testing.assert_allclose(rs.vjp_input(z[None], f[None], G, {})[0], J_ref.T @ G[0], rtol=1e-13,
                               atol=1e-13 * np.max(np.abs(J_ref)) * 3.5)


def test_radial_sigmoid_refuses_non_flat_input_and_zero_in_vjp():
    with pytest.raises(ShapeError):
        RadialSigmoid().build((2, 3))
    rs = RadialSigmoid()
    rs.build((2,))
    with pytest.raises(DataError):
        rs.vjp_input(np.zeros((1, 2)), np.zeros((1, 2)), np.ones((1, 2)), {})


# --------------------------------------------------------------------------- 4. losses
def test_one_unit_softmax_bce_refuses_an_infinite_loss_and_differentiates_the_finite_case():
    net = jb.Network([jb.Dense(1), jb.Softmax()], "bce", 3, "pytorch")
    p = net.init_params(0)
    x = np.array([0.5, -1.0, 2.0])
    # ŷ = softmax of one unit = 1 exactly: with y = 0 the loss is +inf
    with pytest.raises(DataError) as err:
        net.gradient(x, np.array([0.0]), p)
    assert "bce loss" in _one_line(err.value) or "not finite" in str(err.value)
    with pytest.raises(DataError) as err:
        BCE().value(np.array([[0.0]]), np.array([[1.0]]))
    assert "bce loss" in _one_line(err.value) and "probability" in str(err.value)
    # with y = 1, ℓ = -log 1 = 0 for every θ: the gradient is exactly 0 (pre-fix: 0/0 = NaN)
    g = net.gradient(x, np.array([1.0]), p)
    assert np.array_equal(g.vector, np.zeros_like(g.vector))


def test_unmatched_sigmoid_cross_entropy_with_saturated_logits_raises_data_error():
    Z = np.array([[1000.0, -1000.0]])
    Yhat = 1 / (1 + np.exp(-np.clip(Z, -700, 700)))  # [1, ~0]
    Yhat[0, 1] = 0.0
    Y = np.array([[0.0, 1.0]])
    for call in (lambda: CrossEntropy().value(Y, Yhat), lambda: CrossEntropy().grad_yhat(Y, Yhat)):
        with pytest.raises(DataError) as err:
            call()
        assert "cross_entropy loss" in _one_line(err.value) and "0 where the target" in str(err.value)
    with pytest.raises(DataError) as err:  # a negative "probability" (identity + CE): log undefined
        CrossEntropy().value(Y, np.array([[0.5, -0.5]]))
    assert "negative" in str(err.value)
    net = jb.Network([jb.Dense(2), jb.Sigmoid()], "cross_entropy", 2, "pytorch")
    p = net.init_params(0)
    p["W1"] = np.array([[1e3, 0.0], [-1e3, 0.0]])
    p["b1"] = np.zeros(2)
    with pytest.raises(DataError):
        net.gradient(np.array([1.0, 0.0]), np.array([0.0, 1.0]), p)


def test_bce_gradient_at_saturated_predictions_is_its_finite_limit():
    Y = np.array([[0.0, 1.0, 0.3]])
    Yhat = np.array([[0.0, 1.0, 0.6]])
    g = BCE().grad_yhat(Y, Yhat)
    # closed form -y/ŷ + (1-y)/(1-ŷ), terms with a zero coefficient dropped
    np.testing.assert_allclose(g[0], [1.0, -1.0, -0.3 / 0.6 + 0.7 / 0.4], rtol=1e-15)
    with pytest.raises(DataError) as err:
        BCE().grad_yhat(np.array([[1.0]]), np.array([[0.0]]))
    assert "bce loss" in _one_line(err.value)
    with pytest.raises(DataError) as err:  # tanh output fed to BCE: not a probability (pre-fix: NaN)
        BCE().value(np.array([[0.0]]), np.array([[-0.5]]))
    assert "[0, 1]" in _one_line(err.value)


def test_losses_refuse_overflow_and_mismatched_shapes():
    with pytest.raises(DataError) as err:
        MSE().value(np.zeros((1, 2)), np.array([[1e200, 0.0]]))
    assert "mse loss" in _one_line(err.value)
    with pytest.raises(DataError):
        BCE().value_from_logits(np.zeros((1, 1)), np.array([[np.inf]]))
    with pytest.raises(DataError):
        CrossEntropy().delta(np.array([[1.0, 0.0]]), np.array([[np.nan, 0.0]]))
    with pytest.raises(ShapeError):  # pre-fix: broadcast silently to a (2,) result
        MSE().value(np.zeros((2, 3)), np.zeros((1, 3)))
    with pytest.raises(DataError):
        MSE().check_finite(np.array([1.0, np.nan]), "value")
    v = np.array([1.0, 2.0])
    assert MSE().check_finite(v, "value") is v


def test_matched_pairs_with_huge_logits_stay_finite_and_exact():
    # softmax + CE and sigmoid + BCE from the logits: δ = ŷ - y exactly, even at ±1000
    Z = np.array([[1000.0, 0.0, -1000.0]])
    Y = np.array([[0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(CrossEntropy().delta(Y, Z), [[1.0, -1.0, 0.0]])
    assert CrossEntropy().value_from_logits(Y, Z)[0] == pytest.approx(1000.0, rel=1e-15)
    np.testing.assert_array_equal(BCE().delta(np.array([[0.0, 1.0]]), np.array([[1000.0, -1000.0]])), [[1.0, -1.0]])
