"""Each layer's Jacobians against central finite differences and SymPy's derivative."""
import numpy as np
import pytest
import sympy

import jacobian_bp as jb
from conftest import fd_jacobian

ELEMENTWISE = [jb.IdentityActivation(), jb.ReLU(), jb.LeakyReLU(0.2), jb.Sigmoid(), jb.Tanh(), jb.Arctan(),
               jb.Softplus(), jb.ELU(), jb.ELU(0.3)]




@pytest.mark.parametrize("act", ELEMENTWISE + [jb.Softmax(), jb.RadialSigmoid()], ids=lambda a: a.kind)
def test_activation_jacobian_vs_fd(act):
    act.build((6,), jb.get_convention("pytorch"))
    z = np.array([-2.0, -0.7, -0.1, 0.3, 1.1, 2.5])
    J = act.jac_input(z, act.forward(z[None], {})[0], {}).to_dense()
    np.testing.assert_allclose(J, fd_jacobian(lambda t: act.forward(t[None], {})[0], z), atol=1e-8)
    if act.kind == "softmax":
        s = act.forward(z[None], {})[0]
        np.testing.assert_allclose(J, np.diag(s) - np.outer(s, s), atol=1e-15)
    G = np.random.default_rng(0).standard_normal((1, 6))
    np.testing.assert_allclose(act.vjp_input(z[None], act.forward(z[None], {}), G, {})[0], J.T @ G[0], atol=1e-14)


@pytest.mark.parametrize("act", ELEMENTWISE, ids=lambda a: a.kind)
def test_numpy_derivative_equals_sympy(act):
    act.build((1,), jb.get_convention("pytorch"))
    t = sympy.Symbol("t", real=True)
    f, df = sympy.lambdify(t, act.sympy_f(t), "numpy"), sympy.lambdify(t, act.sympy_df(t), "numpy")
    for z in (-1.7, -0.2, 0.4, 2.3):
        assert act.f(np.array(z)) == pytest.approx(float(f(z)), rel=1e-13, abs=1e-15)
        assert act.df(np.array(z)) == pytest.approx(float(df(z)), rel=1e-13, abs=1e-15)
    # and the SymPy derivative is the derivative of the SymPy function (off the kinks)
    for z in (-1.3, 0.8):
        assert float(sympy.diff(act.sympy_f(t), t).subs(t, z)) == pytest.approx(float(act.sympy_df(t).subs(t, z)))


def test_generic_activation_jacobian_is_diag_fprime():
    f = jb.GenericActivation("f")
    z = sympy.symbols("z1:4", real=True)
    J = f.jac_input(np.array(z, dtype=object), None, {}).to_sympy()
    ff = sympy.Function("f", real=True)
    expected = sympy.diag(*[sympy.diff(ff(zi), zi) for zi in z])
    assert sympy.simplify(J - expected) == sympy.zeros(3, 3)


def test_dense_jacobians_vs_fd_both_vec_orders():
    rng = np.random.default_rng(0)
    layer = jb.Dense(3)
    layer.build((4,))
    W, b, a = rng.standard_normal((3, 4)), rng.standard_normal(3), rng.standard_normal(4)
    p = {"W": W, "b": b}
    for order in ("C", "F"):
        Jw = layer.jac_params(a, None, p, order)["W"].to_dense()

        def z_of(w, order=order):
            return layer.forward(a[None], {"W": w.reshape(3, 4, order=order), "b": b})[0]
        np.testing.assert_allclose(Jw, fd_jacobian(z_of, W.ravel(order=order)), atol=1e-9)
    np.testing.assert_allclose(layer.jac_input(a, None, p).to_dense(), W)
    np.testing.assert_array_equal(layer.jac_params(a, None, p)["b"].to_dense(), np.eye(3))


def test_radial_sigmoid_refuses_zero():
    r = jb.RadialSigmoid()
    r.build((3,))
    with pytest.raises(jb.DataError, match="not differentiable at z = 0|undefined at z = 0"):
        r.jac_input(np.zeros(3), None, {})


@pytest.mark.parametrize("loss,pair", [(jb.CrossEntropy(), jb.Softmax()), (jb.BCE(), jb.Sigmoid()),
                                       (jb.MSE(1.0), jb.IdentityActivation()), (jb.MSE(0.5), jb.IdentityActivation())])
def test_matched_delta_is_chain_of_loss_and_activation(loss, pair):
    """Damadi Table 1: delta from logits == J_z f(z)^T ∇_ŷ ℓ, and == FD of ℓ(y, f(z))."""
    pair.build((4,), jb.get_convention("pytorch"))
    rng = np.random.default_rng(2)
    z = rng.standard_normal((1, 4))
    y = np.eye(4)[[2]] if loss.kind == "cross_entropy" else rng.uniform(0.1, 0.9, (1, 4))
    yhat = pair.forward(z, {})
    chained = pair.vjp_input(z, yhat, loss.grad_yhat(y, yhat), {})
    np.testing.assert_allclose(loss.delta(y, z), chained, atol=1e-12)
    fd = fd_jacobian(lambda t: np.atleast_1d(loss.value(y, pair.forward(t[None], {}))), z[0])[0]
    np.testing.assert_allclose(loss.delta(y, z)[0], fd, atol=1e-8)
    np.testing.assert_allclose(loss.value_from_logits(y, z), loss.value(y, yhat), rtol=1e-13)
    # Hessian w.r.t. z (Gauss–Newton's H) against FD of the delta
    H = loss.hessian_z(y, z)[0]
    np.testing.assert_allclose(H, fd_jacobian(lambda t: loss.delta(y, t[None])[0], z[0]), atol=1e-7)


def test_stable_losses_from_logits():
    ce, bce = jb.CrossEntropy(), jb.BCE()
    z = np.array([[1000.0, -1000.0, 0.0]])
    y = np.array([[0.0, 1.0, 0.0]])
    assert np.isfinite(ce.value_from_logits(y, z)).all() and ce.value_from_logits(y, z)[0] == pytest.approx(2000.0)
    assert bce.value_from_logits(np.array([[1.0]]), np.array([[-800.0]]))[0] == pytest.approx(800.0)
    np.testing.assert_allclose(ce.delta(y, z), [[1.0, -1.0, 0.0]], atol=1e-300)
