"""Lazy J_θ Z[L] (jacobian_bp.uses.lazy): forward- and reverse-mode products against dense
materialization, central differences and torch; the operator protocol; bad input."""
import numpy as np
import pytest
import scipy.sparse.linalg as spla
from hypothesis import given, settings, strategies as st

import jacobian_bp as jb
from jacobian_bp.uses.lazy import BatchJacobianOperator, TransposedOperator, jvp, linearize, theta_view, vjp_sweep
from jacobian_bp.backend.operators import Dense as DenseOp, Diagonal, Product
from jacobian_bp.spec import load_spec
from conftest import make_data, dense_net

PRESETS = ["damadi", "ganev", "park", "mml", "pytorch"]




def cnn_net(preset="pytorch", pool="maxpool2d", conv=None):
    conv = conv or dict(out_channels=2, kernel_size=3, padding=1)
    return load_spec({"input": [1, 5, 5],
                      "layers": [{"type": "conv2d", **conv}, {"type": "relu"}, {"type": pool, "kernel_size": 2},
                                 {"type": "flatten"}, {"type": "dense", "out_features": 3}, {"type": "softmax"}],
                      "loss": "cross_entropy", "convention": preset}).network


NETS = {
    "tanh-softmax": lambda p: dense_net(p),
    "relu-sigmoid-bce": lambda p: dense_net(p, jb.ReLU, jb.Sigmoid, "bce"),
    "sigmoid-identity-mse": lambda p: dense_net(p, jb.Sigmoid, None, "mse"),
    "softmax-hidden": lambda p: dense_net(p, jb.Softmax),
    "radial-hidden": lambda p: dense_net(p, jb.RadialSigmoid),  # generic per-sample JVP path
    "cnn-max": lambda p: cnn_net(p),
    "cnn-avg-untied": lambda p: cnn_net(p, "avgpool2d", dict(out_channels=2, kernel_size=2, stride=2, bias="untied",
                                                              mode="convolution")),
}


def dense_J(net, X, p):
    return net.batch_jacobian_theta(X, p).to_dense()


def fd_jvp(net, X, p, v, h=1e-6):
    """Central differences of z[L] along θ-direction v (no Jacobian machinery involved)."""
    theta = net.pack(p)
    zp = net.forward(X, net.unpack(theta + h * v)).z[-1]
    zm = net.forward(X, net.unpack(theta - h * v)).z[-1]
    return ((zp - zm) / (2 * h)).ravel()


# ---------------------------------------------------------------------------- products vs dense and FD
@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("preset", ["damadi", "park", "mml"])
def test_matvec_rmatvec_against_dense_and_fd(name, preset):
    net = NETS[name](preset)
    p = net.init_params(1)
    X, _ = make_data(net, 3, 2)
    J = dense_J(net, X, p)
    op = BatchJacobianOperator(net, X, p)
    assert op.shape == J.shape == (3 * net.n_out, net.n_params)
    rng = np.random.default_rng(0)
    v = rng.standard_normal(net.n_params)
    u = rng.standard_normal(op.shape[0])
    np.testing.assert_allclose(op.matvec(v), J @ v, atol=1e-12)
    np.testing.assert_allclose(op.rmatvec(u), J.T @ u, atol=1e-12)
    np.testing.assert_allclose(op.matvec(v), fd_jvp(net, X, p, v), atol=1e-7)
    V = rng.standard_normal((net.n_params, 2))
    U = rng.standard_normal((op.shape[0], 2))
    np.testing.assert_allclose(op.matmat(V), J @ V, atol=1e-12)
    np.testing.assert_allclose(op.rmatmat(U), J.T @ U, atol=1e-12)
    np.testing.assert_allclose(op.T.matvec(u), J.T @ u, atol=1e-12)
    np.testing.assert_allclose(op.to_dense(), J, atol=1e-13)


def test_single_sample_operator_is_jacobian_theta():
    net = dense_net("damadi")
    p = net.init_params(0)
    x, _ = make_data(net, 1, 0)
    op = BatchJacobianOperator(net, x, p)
    J = net.jacobian_theta(x, p).to_dense()
    assert op.shape == J.shape
    np.testing.assert_allclose(op.to_dense(), J, atol=1e-14)


@settings(max_examples=25, deadline=None)
@given(preset=st.sampled_from(PRESETS), N=st.integers(1, 4), seed=st.integers(0, 10**6),
       widths=st.lists(st.integers(1, 5), min_size=1, max_size=3))
def test_adjoint_identity_property(preset, N, seed, widths):
    """⟨u, J v⟩ = ⟨Jᵀ u, v⟩ and J v agrees with the dense chain, for random architectures."""
    net = dense_net(preset, widths=tuple(widths))
    p = net.init_params(seed % 97)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 3)) if preset != "park" else rng.standard_normal((3, N))
    op = BatchJacobianOperator(net, X, p)
    v = rng.standard_normal(op.shape[1])
    u = rng.standard_normal(op.shape[0])
    Jv, Jtu = op.matvec(v), op.rmatvec(u)
    assert abs(u @ Jv - Jtu @ v) <= 1e-10 * (1 + np.linalg.norm(u) * np.linalg.norm(Jv))
    np.testing.assert_allclose(Jv, dense_J(net, X, p) @ v, atol=1e-11)


def test_reverse_sweep_with_cotangent_delta_is_the_gradient():
    """Jᵀ(r·δ) is the gradient (Damadi eq. (1)), for every preset's reduction."""
    from conftest import fd_gradient

    for preset in PRESETS:
        net = dense_net(preset)
        p = net.init_params(2)
        X, Y = make_data(net, 4, 3)
        op = BatchJacobianOperator(net, X, p)
        D = net.delta(X, Y, p) * (0.25 if net.convention.reduction == "mean" else 1.0)
        g = op.rmatvec(D.ravel())
        np.testing.assert_allclose(g, fd_gradient(net, X, Y, p), atol=1e-7)
        np.testing.assert_array_equal(g, net.gradient(X, Y, p, method="operator").vector)


def test_vjp_sweep_into_theta_buffer_is_bitwise_the_allocating_sweep():
    for preset in PRESETS:
        for net in (dense_net(preset), cnn_net(preset)):
            p = net.init_params(0)
            for N in (1, 3):
                X, _ = make_data(net, N, 1)
                lin = linearize(net, X, p)
                D = np.random.default_rng(N).standard_normal((lin.N, net.n_out))
                plain = vjp_sweep(net, lin.cache, lin.canon, D)
                theta = np.empty(net.n_params)
                views = vjp_sweep(net, lin.cache, lin.canon, D, out=theta)
                np.testing.assert_array_equal(theta, net.pack_canonical(plain))
                for k in plain:
                    np.testing.assert_array_equal(views[k], plain[k])
                    assert np.shares_memory(views[k], theta)


def test_theta_view_writes_the_convention_vec():
    """Writing a canonical W into its view must produce the θ slice that pack_canonical produces."""
    for preset in ("damadi", "mml", "pytorch"):  # C and F vec orders
        net = dense_net(preset)
        canon = net.canonical_params(net.init_params(4))
        theta = np.empty(net.n_params)
        for e in net.entries:
            theta_view(theta[e.slice], (), e)[...] = canon[e.name]
        np.testing.assert_array_equal(theta, net.pack_canonical(canon))


def test_scipy_linear_operator_interop():
    net = dense_net("ganev")
    p = net.init_params(0)
    X, _ = make_data(net, 4, 0)
    op = BatchJacobianOperator(net, X, p)
    J = dense_J(net, X, p)
    L = op.as_linear_operator()
    v = np.random.default_rng(0).standard_normal(op.shape[1])
    np.testing.assert_allclose(L @ v, J @ v, atol=1e-12)
    np.testing.assert_allclose(L.T @ (L @ v), J.T @ (J @ v), atol=1e-11)
    # largest singular value from the lazy operator = from the dense matrix (SciPy's svds)
    s_lazy = spla.svds(L, k=1, return_singular_vectors=False, random_state=0)[0]
    assert s_lazy == pytest.approx(np.linalg.svd(J, compute_uv=False)[0], rel=1e-8)


def test_chains_with_structured_operators():
    net = dense_net("pytorch")
    p = net.init_params(0)
    X, _ = make_data(net, 2, 0)
    op = BatchJacobianOperator(net, X, p)
    J = dense_J(net, X, p)
    M = np.random.default_rng(1).standard_normal((2, op.shape[0]))
    d = np.random.default_rng(2).uniform(1, 2, op.shape[1])
    chain = Product([DenseOp(M), op, Diagonal(d)])
    v = np.random.default_rng(3).standard_normal(op.shape[1])
    np.testing.assert_allclose(chain.matvec(v), M @ J @ (d * v), atol=1e-12)
    np.testing.assert_allclose((op @ Diagonal(d)).to_dense(), J * d, atol=1e-12)
    T = op.T
    assert isinstance(T, TransposedOperator) and T.shape == J.T.shape and T.T is op
    np.testing.assert_allclose(T.to_dense(), J.T, atol=1e-13)


def test_jvp_against_torch():
    pytest.importorskip("torch")
    from test_per_sample import torch_jacobian

    for name in ("tanh-softmax", "cnn-max", "cnn-avg-untied"):
        net = NETS[name]("pytorch")
        p = net.init_params(5)
        X, _ = make_data(net, 2, 5)
        Jt = torch_jacobian(net, X, p)  # (N, n_L, |θ|) from torch.func.jacrev
        op = BatchJacobianOperator(net, X, p)
        v = np.random.default_rng(0).standard_normal(net.n_params)
        np.testing.assert_allclose(op.matvec(v), (Jt @ v).ravel(), atol=1e-11)
        u = np.random.default_rng(1).standard_normal(op.shape[0])
        np.testing.assert_allclose(op.rmatvec(u), Jt.reshape(-1, net.n_params).T @ u, atol=1e-11)


class CustomDense(jb.Dense):
    """A parametric layer the lazy module has no rule for: exercises the generic (per-sample,
    structured-Jacobian) paths of jvp, vjp_sweep, per-sample gradients and the NTK."""

    kind = "custom_dense"


def test_generic_parametric_layer_paths():
    from jacobian_bp.uses.curvature import empirical_ntk, gauss_newton
    from jacobian_bp.engine.per_sample import batch_jacobian, per_sample_gradients

    net = jb.Network([CustomDense(4), jb.Tanh(), jb.Dense(3), jb.Softmax()], "cross_entropy", 3, "ganev")
    ref = jb.Network([jb.Dense(4), jb.Tanh(), jb.Dense(3), jb.Softmax()], "cross_entropy", 3, "ganev")
    p = net.init_params(0)
    X, Y = make_data(net, 3, 1)
    J = dense_J(ref, X, p)
    op = BatchJacobianOperator(net, X, p)
    v = np.random.default_rng(0).standard_normal(net.n_params)
    u = np.random.default_rng(1).standard_normal(op.shape[0])
    np.testing.assert_allclose(op.matvec(v), J @ v, atol=1e-12)
    np.testing.assert_allclose(op.rmatvec(u), J.T @ u, atol=1e-12)
    np.testing.assert_allclose(batch_jacobian(net, X, p).reshape(J.shape), J, atol=1e-14)
    np.testing.assert_allclose(per_sample_gradients(net, X, Y, p), per_sample_gradients(ref, X, Y, p), atol=1e-14)
    np.testing.assert_allclose(empirical_ntk(net, X, p).to_dense(), J @ J.T, atol=1e-12)
    np.testing.assert_allclose(gauss_newton(net, X, Y, p).to_dense(), gauss_newton(ref, X, Y, p).to_dense(), atol=1e-13)
    np.testing.assert_allclose(net.gradient(X, Y, p, method="operator").vector, ref.gradient(X, Y, p).vector, atol=1e-14)


# ---------------------------------------------------------------------------- bad input
def test_bad_input_is_a_clear_error():
    net = dense_net("pytorch")
    p = net.init_params(0)
    X, _ = make_data(net, 3, 0)
    op = BatchJacobianOperator(net, X, p)
    with pytest.raises(jb.ShapeError, match=r"matvec: expected a vector of length %d" % net.n_params):
        op.matvec(np.ones(net.n_params + 1))
    with pytest.raises(jb.ShapeError, match="rmatvec: expected a vector of length 9"):
        op.rmatvec(np.ones(net.n_params))
    with pytest.raises(jb.ShapeError, match="matmat"):
        op.matmat(np.ones((3, 2)))
    with pytest.raises(jb.ShapeError, match="do not chain"):
        Product([op, op])
    with pytest.raises(jb.ShapeError, match="do not chain"):
        op @ Diagonal(np.ones(3))
    with jb.memory_budget(100):
        with pytest.raises(jb.MemoryBudgetError, match="exceeds the memory budget"):
            op.to_dense()
    with pytest.raises(jb.ShapeError, match="expected a batch of inputs of shape"):
        BatchJacobianOperator(net, np.ones((3, 4)), p)
    with pytest.raises(jb.ShapeError, match="cotangents of z"):
        lin = linearize(net, X, p)
        vjp_sweep(net, lin.cache, lin.canon, np.ones((2, 3)))
    with pytest.raises(jb.ShapeError, match="tangent W1 expected canonical shape"):
        lin = linearize(net, X, p)
        bad = net.unpack_canonical(np.zeros(net.n_params))
        bad["W1"] = np.zeros((2, 2))
        jvp(net, lin.cache, lin.canon, bad)
    with pytest.raises(jb.ShapeError, match="out must be a θ vector"):
        lin = linearize(net, X, p)
        vjp_sweep(net, lin.cache, lin.canon, np.ones((3, 3)), out=np.empty(3))
    with pytest.raises(TypeError, match="give"):
        BatchJacobianOperator(net)
    with pytest.raises(jb.DataError, match="NaN"):
        BatchJacobianOperator(net, np.full((2, 3), np.nan), p)
    import sympy

    sym = {**p, "b1": np.array([sympy.Symbol(f"b{i}") for i in range(5)], dtype=object)}
    with pytest.raises(TypeError, match="parameter b1 is symbolic; lazy products are numeric only"):
        BatchJacobianOperator(net, X, sym)
    with pytest.raises(TypeError, match="expected a jacobian_bp Network"):
        linearize("not a network", X, p)
