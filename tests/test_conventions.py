"""Conventions: presets, commutation matrices, and round-trip conversions of θ, gradients and Jacobians."""
import itertools

import numpy as np
import pytest

import jacobian_bp as jb
from jacobian_bp.uses.convert import convert_gradient, convert_jacobian, convert_theta, theta_permutation
from jacobian_bp.errors import SpecError
from conftest import make_data, rel_err

PRESETS = list(jb.PRESETS)


def _net(conv, loss="cross_entropy", last=jb.Softmax):
    return jb.Network([jb.Dense(5), jb.Tanh(), jb.Dense(2), jb.Sigmoid(), jb.Dense(3), last()], loss, 4, conv)


@pytest.mark.parametrize("m,n", [(1, 1), (2, 3), (4, 2), (5, 5)])
def test_commutation_matrix(m, n):
    A = np.arange(m * n, dtype=float).reshape(m, n) + 1
    K = jb.commutation_matrix(m, n)
    np.testing.assert_array_equal(K @ A.ravel(order="F"), A.T.ravel(order="F"))
    np.testing.assert_array_equal(K @ A.ravel(order="F"), A.ravel(order="C"))
    # J_{vec_r W} z = J_{vec_c W} z K^T: (a^T ⊗ I) K^T = I ⊗ a^T for W ∈ R^{m×n}, a ∈ R^n
    a = np.arange(1.0, n + 1)
    np.testing.assert_array_equal(np.kron(a[None, :], np.eye(m)) @ K.T.toarray(), np.kron(np.eye(m), a[None, :]))


def test_presets_match_the_documents():
    d = jb.get_convention("damadi")
    assert (d.weight_layout, d.vec_order, d.theta_order, d.mse_scale) == ("in_out", "col", "reverse", 1.0)
    p = jb.get_convention("park")
    assert (p.batch_axis, p.reduction, p.mse_scale, p.relu_at_zero) == ("last", "mean", 0.5, 1.0)
    g = jb.get_convention("ganev")
    assert (g.weight_layout, g.theta_order, g.batch_axis) == ("out_in", "weights_first", "first")
    with pytest.raises(SpecError, match="unknown convention"):
        jb.get_convention("nope")
    with pytest.raises(SpecError, match="reduction must be one of"):
        d.replace(reduction="median")
    with pytest.raises(SpecError, match="unknown convention knob"):
        d.replace(colour="red")


def test_theta_orders():
    names = {c: _net(c).param_names for c in PRESETS}
    assert names["damadi"] == ["W3", "b3", "W2", "b2", "W1", "b1"]
    assert names["ganev"] == ["W1", "W2", "W3", "b1", "b2", "b3"]
    assert names["pytorch"] == ["W1", "b1", "W2", "b2", "W3", "b3"]


def test_damadi_weights_are_transposed():
    d, t = _net("damadi"), _net("pytorch")
    assert d.init_params(0)["W1"].shape == (4, 5) and t.init_params(0)["W1"].shape == (5, 4)
    np.testing.assert_array_equal(d.init_params(0)["W1"], t.init_params(0)["W1"].T)


@pytest.mark.parametrize("a,b", list(itertools.permutations(PRESETS, 2)))
def test_conversion_round_trips_and_matches_direct_computation(a, b):
    na, nb = _net(a), _net(b)
    pa = na.init_params(3)
    pb = nb.unpack(convert_theta(na.pack(pa), na, nb))
    Xa, Ya = make_data(na, 3, 1)
    # the same function: same predictions on the same samples
    Xf = na.as_batch(Xa)[0]
    Xb = Xf if nb.convention.batch_axis == "first" else Xf.T
    np.testing.assert_allclose(nb.forward(Xb, pb).output, na.forward(Xa, pa).output, atol=1e-14)
    Yf = na.as_batch(Xa, Ya)[1]
    Yb = Yf if nb.convention.batch_axis == "first" else Yf.T
    ga = na.gradient(Xa, Ya, pa).vector
    gb = nb.gradient(Xb, Yb, pb).vector
    assert rel_err(convert_gradient(ga, na, nb, 3), gb) <= 1e-13
    assert rel_err(convert_gradient(convert_gradient(ga, na, nb, 3), nb, na, 3), ga) <= 1e-14
    x = Xf[0]
    Ja = na.jacobian_theta(x if na.convention.batch_axis == "first" else x, pa).to_dense()
    Jb = nb.jacobian_theta(x, pb).to_dense()
    np.testing.assert_allclose(convert_jacobian(Ja, na, nb), Jb, atol=1e-14)
    np.testing.assert_allclose(convert_jacobian(na.jacobian_theta(x, pa), na, nb).to_dense(), Jb, atol=1e-14)
    P = theta_permutation(na, nb).toarray()
    np.testing.assert_array_equal(P @ P.T, np.eye(P.shape[0]))


def test_mse_scale_conversion():
    na = jb.Network([jb.Dense(3), jb.Tanh(), jb.Dense(2)], "mse", 3, "damadi")  # ‖y−ŷ‖²
    nb = jb.Network([jb.Dense(3), jb.Tanh(), jb.Dense(2)], "mse", 3, "mml")     # ½‖y−ŷ‖²
    pa = na.init_params(0)
    x, y = np.ones(3), np.array([0.5, -1.0])
    pb = nb.unpack(convert_theta(na.pack(pa), na, nb))
    assert nb.loss_value(x, y, pb) == pytest.approx(0.5 * na.loss_value(x, y, pa), rel=1e-14)
    assert rel_err(convert_gradient(na.gradient(x, y, pa).vector, na, nb), nb.gradient(x, y, pb).vector) <= 1e-14
    # MML reports gradients as row vectors
    assert nb.gradient(x, y, pb).as_row().shape == (1, nb.n_params)
