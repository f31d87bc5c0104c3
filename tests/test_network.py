"""The explicit chain (Damadi Alg. 1) against closed form, finite differences and torch, for
every layer type, convention preset, loss, reduction and batch size."""
import numpy as np
import pytest

import jacobian_bp as jb
from jacobian_bp.oracles import reference
from conftest import fd_gradient, make_data, rel_err

PRESETS = list(jb.PRESETS)
HIDDEN = [jb.IdentityActivation, jb.ReLU, lambda: jb.LeakyReLU(0.1), jb.Sigmoid, jb.Tanh, jb.Arctan, jb.Softplus,
          jb.ELU, lambda: jb.ELU(0.5), jb.Softmax, jb.RadialSigmoid]
HIDDEN_IDS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "arctan", "softplus", "elu", "elu0.5", "softmax",
              "radial_sigmoid"]
PAIRS = [("cross_entropy", jb.Softmax), ("bce", jb.Sigmoid), ("mse", jb.IdentityActivation),
         ("mse", jb.Tanh), ("cross_entropy", jb.Sigmoid), ("bce", jb.Softmax)]


def _net(hidden, last, loss, conv, widths=(4, 5, 3)):
    layers = [jb.Dense(widths[1]), hidden(), jb.Dense(widths[2]), last()]
    return jb.Network(layers, loss, widths[0], conv)


@pytest.mark.parametrize("conv", PRESETS)
@pytest.mark.parametrize("N", [1, 3])
@pytest.mark.parametrize("hidden", HIDDEN, ids=HIDDEN_IDS)
def test_chain_equals_closed_form_and_fd_every_layer(conv, N, hidden):
    net = _net(hidden, jb.Softmax, "cross_entropy", conv)
    p = net.init_params(7)
    X, Y = make_data(net, N, 3)
    g = net.gradient(X, Y, p).vector
    assert rel_err(net.gradient(X, Y, p, method="operator").vector, g) <= 1e-12
    assert rel_err(fd_gradient(net, X, Y, p), g) <= 1e-6
    rep = jb.verify(net, X, Y, p, fd_directions=0, fd_max_coords=5)
    assert rep.passed, rep.to_text()
    assert any(e.method in ("closed form", "Ganev Alg. 5") for e in rep.errors)


@pytest.mark.parametrize("conv", PRESETS)
@pytest.mark.parametrize("loss,last", PAIRS, ids=[f"{a}-{b.__name__}" for a, b in PAIRS])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_losses_reductions_against_torch(conv, loss, last, reduction):
    torch = pytest.importorskip("torch")  # noqa: F841
    c = jb.get_convention(conv).replace(reduction=reduction)
    net = _net(jb.Tanh, last, loss, c)
    p = net.init_params(1)
    X, Y = make_data(net, 4, 2)
    rep = jb.verify(net, X, Y, p, fd_directions=1, fd_max_coords=8)
    assert "torch autograd" in rep.methods
    assert rep.passed, rep.to_text()


def test_reduction_mean_is_sum_over_N():
    s = _net(jb.Tanh, jb.Softmax, "cross_entropy", jb.get_convention("ganev"))
    m = _net(jb.Tanh, jb.Softmax, "cross_entropy", jb.get_convention("ganev").replace(reduction="mean"))
    p = s.init_params(0)
    X, Y = make_data(s, 5, 0)
    np.testing.assert_allclose(m.gradient(X, Y, p).vector * 5, s.gradient(X, Y, p).vector, rtol=1e-13)


def test_damadi_fig4_shapes_and_kronecker_structure():
    net = jb.Network([jb.Dense(3), jb.Softmax()], "cross_entropy", 4, "damadi")
    p = net.init_params(0)
    x = np.array([1.0, -2.0, 0.5, 3.0])
    J = net.jacobian_theta(x, p)
    assert J.shape == (3, 15)
    M = J.to_dense()
    np.testing.assert_array_equal(M, np.hstack([np.kron(np.eye(3), x[None, :]), np.eye(3)]))
    assert [b.structure for b in J.blocks] == ["kronecker", "identity"]
    # W (Damadi layout 4x3) stacked by columns: θ[:12] = vec_c(W)
    np.testing.assert_array_equal(net.pack(p)[:12], p["W1"].ravel(order="F"))
    # J z = W^T x + b: directional derivative along θ is exact for an affine map
    d = np.random.default_rng(0).standard_normal(15)
    q = net.unpack(net.pack(p) + d)
    z0 = net.forward(x, p).z[1][0]
    z1 = net.forward(x, q).z[1][0]
    np.testing.assert_allclose(z1 - z0, M @ d, atol=1e-12)


def test_damadi_two_layer_block_shapes():
    net = jb.Network([jb.Dense(5), jb.Sigmoid(), jb.Dense(3), jb.Softmax()], "cross_entropy", 4, "damadi")
    p = net.init_params(0)
    x = np.ones(4)
    assert net.layer_jacobian(x, p, 2).shape == (3, 18)
    assert net.layer_jacobian(x, p, 1).shape == (3, 25)
    # the chain of typed factors type-checks and equals the block
    f = net.chain_factors(x, p, 1)
    chain = f[0] @ f[1]
    assert chain.output.name == "z[2]" and chain.input.name == "z[1]"
    full = chain @ net.local_jacobian(x, p, 1)
    np.testing.assert_allclose(full.to_dense(), net.layer_jacobian(x, p, 1).to_dense(), atol=1e-14)


def test_lenet_shape_and_gradient():
    net = jb.spec.load_spec("lenet-300-100").network
    p = net.init_params(0)
    X, Y = make_data(net, 2, 0)
    J = net.jacobian_theta(X[0], p)
    assert J.shape == (10, 266_610)
    assert [b.shape for b in J.blocks] == [(10, 1000), (10, 10), (10, 30000), (10, 100), (10, 235200), (10, 300)]
    g = net.gradient(X, Y, p)
    dW, db = reference.ganev_batch_backprop([p["W1"].T, p["W2"].T, p["W3"].T], [p["b1"], p["b2"], p["b3"]],
                                             [jb.ReLU(), jb.ReLU(), None], X,
                                             lambda Z: net.loss.delta(Y, Z))
    assert rel_err(g["W1"], dW[0].T) <= 1e-12 and rel_err(g["W3"], dW[2].T) <= 1e-12


def test_jacobian_input_against_fd():
    net = _net(jb.Tanh, jb.Softmax, "cross_entropy", "park")
    p = net.init_params(0)
    x = np.random.default_rng(1).standard_normal(4)
    J = net.jacobian_input(x, p).to_dense()
    h = 1e-6
    fd = np.stack([(net.forward(x + h * e, p).z[-1][0] - net.forward(x - h * e, p).z[-1][0]) / (2 * h)
                   for e in np.eye(4)], axis=1)
    np.testing.assert_allclose(J, fd, atol=1e-8)


def test_batch_jacobians():
    net = _net(jb.Tanh, jb.Softmax, "cross_entropy", "ganev")
    p = net.init_params(0)
    X, Y = make_data(net, 3, 0)
    JB = net.batch_jacobian_theta(X, p)
    assert JB.shape == (9, net.n_params)
    for i in range(3):
        np.testing.assert_allclose(JB.to_dense()[3 * i:3 * i + 3], net.jacobian_theta(X[i], p).to_dense(), atol=1e-14)
    JX = net.batch_jacobian_input(X, p).to_dense()
    assert JX.shape == (9, 12)
    np.testing.assert_allclose(JX[3:6, 4:8], net.jacobian_input(X[1], p).to_dense(), atol=1e-14)
    assert np.all(JX[0:3, 4:] == 0)
    # per-sample gradients sum to the batch gradient (sum reduction)
    G = net.per_sample_gradients(X, Y, p)
    np.testing.assert_allclose(G.sum(0), net.gradient(X, Y, p).vector, atol=1e-13)
    # Ganev Φ_ℓ = Σ E_ii ⊗ Jac_iᵀ: block diagonal of transposed activation Jacobians
    Phi = net.activation_jacobian_batch(X, p, 1).to_dense()
    Z1 = net.forward(X, p).z[1]
    np.testing.assert_allclose(Phi, np.diag((1 - np.tanh(Z1) ** 2).ravel()), atol=1e-14)


def test_park_batch_last_layout():
    net = _net(jb.ReLU, jb.Softmax, "cross_entropy", "park")
    p = net.init_params(0)
    X, Y = make_data(net, 6, 0)
    assert X.shape == (4, 6) and Y.shape == (3, 6)
    dW, db = reference.park_backprop([p["W1"], p["W2"]], [p["b1"], p["b2"]], [jb.ReLU(), None], X,
                                     lambda Z, A: (jb.CrossEntropy().delta(Y.T, Z.T) / 6).T)
    g = net.gradient(X, Y, p)
    assert rel_err(g["W1"], dW[0]) <= 1e-12 and rel_err(g["b2"], db[1]) <= 1e-12


def test_relu_at_zero_is_the_stated_choice():
    for h0 in (0.0, 1.0, 0.5):
        r = jb.ReLU(at_zero=h0)
        assert r.df(np.array([0.0]))[0] == h0
    net = jb.Network([jb.Dense(2), jb.ReLU(), jb.Dense(1)], "mse", 2, "park")
    assert net.stages[0].post[0].at_zero == 1.0


def test_chain_factors_down_to_the_input():
    net = _net(jb.Tanh, jb.Softmax, "cross_entropy", "damadi")
    p = net.init_params(0)
    x = np.linspace(-1, 1, 4)
    f = net.chain_factors(x, p, 0)
    assert [j.input.name for j in f] == ["a[1]", "z[1]", "x"]
    prod = f[0] @ f[1] @ f[2]
    np.testing.assert_allclose(prod.to_dense(), net.jacobian_input(x, p).to_dense(), atol=1e-14)


@pytest.mark.parametrize("conv", PRESETS)
def test_gradient_is_materialized_jacobian_transpose_times_delta(conv):
    """Alg. 1 line 8 with the materialized J_θ z[L], sample by sample: Σ_i J_iᵀ δ_i (× 1/N for mean)."""
    net = _net(jb.ReLU, jb.Softmax, "cross_entropy", conv)
    p = net.init_params(4)
    X, Y = make_data(net, 3, 4)
    Xb, Yb, _ = net.as_batch(X, Y)
    D = net.delta(X, Y, p)
    scale = 1 / 3 if net.convention.reduction == "mean" else 1.0
    g = sum(net.jacobian_theta(Xb[i], p).to_dense().T @ D[i] for i in range(3)) * scale
    assert rel_err(net.gradient(X, Y, p).vector, g) <= 1e-13
