"""Gauss-Newton matrix and empirical NTK (jacobian_bp.uses.curvature) against dense J^T H J / J J^T with
an independently written H, the exact Hessian (one layer: GGN = Hessian), finite differences of the
gradient, SciPy eigensolvers and torch."""
import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse.linalg as spla
from scipy.special import expit, softmax

import jacobian_bp as jb
from jacobian_bp.uses.curvature import EmpiricalNTKOperator, GaussNewtonOperator, empirical_ntk, gauss_newton
from jacobian_bp.backend.operators import Product
from jacobian_bp.spec import load_spec
from conftest import make_data, dense_net as _dense_net


def dense_net(*args, widths=(4,), **kwargs):
    """The shared dense network, one hidden layer by default (curvature matrices stay small)."""
    return _dense_net(*args, widths=widths, **kwargs)


PRESETS = ["damadi", "ganev", "park", "mml", "pytorch"]




def cnn_net(preset="pytorch"):
    return load_spec({"input": [1, 4, 4],
                      "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 2}, {"type": "relu"},
                                 {"type": "maxpool2d", "kernel_size": 2, "stride": 1}, {"type": "flatten"},
                                 {"type": "dense", "out_features": 3}, {"type": "softmax"}],
                      "loss": "cross_entropy", "convention": preset}).network


def loss_hessian_by_hand(net, Z, Y):
    """∇²_z ℓ per sample, written from the textbook formulas (not from jacobian_bp.layers.losses)."""
    kind = net.loss.kind
    n = Z.shape[1]
    if kind == "cross_entropy":
        out = []
        for z, y in zip(Z, Y):
            s = softmax(z)
            out.append(y.sum() * (np.diag(s) - np.outer(s, s)))
        return np.array(out)
    if kind == "bce":
        s = expit(Z)
        return np.array([np.diag(v * (1 - v)) for v in s])
    c = net.loss.scale / (n if net.loss.reduce_outputs == "mean" else 1)
    return np.array([2 * c * np.eye(n) for _ in Z])


def dense_ggn(net, X, Y, p):
    J = net.batch_jacobian_theta(X, p).to_dense()
    Xb, Yb, _ = net.as_batch(X, Y)
    Z = net.forward(X, p).z[-1]
    H = loss_hessian_by_hand(net, Z, Yb)
    r = 1 / Xb.shape[0] if net.convention.reduction == "mean" else 1.0
    return r * J.T @ sla.block_diag(*H) @ J, J


NETS = {
    "ce": lambda pr: dense_net(pr),
    "bce": lambda pr: dense_net(pr, jb.ReLU, jb.Sigmoid, "bce"),
    "mse": lambda pr: dense_net(pr, jb.Sigmoid, None, "mse"),
    "deep-softmax-hidden": lambda pr: dense_net(pr, jb.Softmax, widths=(4, 3)),
    "cnn": lambda pr: cnn_net(pr),
}


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("preset", PRESETS)
def test_ggn_and_ntk_against_dense(name, preset):
    net = NETS[name](preset)
    p = net.init_params(1)
    X, Y = make_data(net, 3, 2)
    G0, J = dense_ggn(net, X, Y, p)
    G = gauss_newton(net, X, Y, p)
    K = empirical_ntk(net, X, p)
    assert G.shape == (net.n_params, net.n_params) and K.shape == (3 * net.n_out, 3 * net.n_out)
    rng = np.random.default_rng(0)
    v = rng.standard_normal(net.n_params)
    u = rng.standard_normal(K.shape[0])
    np.testing.assert_allclose(G.matvec(v), G0 @ v, atol=1e-12)
    np.testing.assert_allclose(G.rmatvec(v), G0 @ v, atol=1e-12)
    np.testing.assert_allclose(G.to_dense(), G0, atol=1e-13)
    np.testing.assert_allclose(K.matvec(u), J @ (J.T @ u), atol=1e-11)
    np.testing.assert_allclose(K.to_dense(), J @ J.T, atol=1e-11)
    V = rng.standard_normal((net.n_params, 2))
    np.testing.assert_allclose(G.matmat(V), G0 @ V, atol=1e-12)
    # symmetric positive semi-definite
    Gd, Kd = G.to_dense(), K.to_dense()
    np.testing.assert_array_equal(Gd, Gd.T)
    assert np.linalg.eigvalsh(Gd).min() > -1e-12 and np.linalg.eigvalsh(Kd).min() > -1e-11


def test_one_layer_ggn_is_the_hessian_by_finite_differences():
    """z[L] is linear in θ for one Dense layer, so the GGN is the exact Hessian of the loss:
    check G v against central differences of the gradient, (∇ℓ(θ+hv) − ∇ℓ(θ−hv)) / 2h."""
    for preset in ("damadi", "pytorch"):
        for net in (dense_net(preset, widths=()), dense_net(preset, widths=(), last=jb.Sigmoid, loss="bce")):
            p = net.init_params(3)
            X, Y = make_data(net, 5, 3)
            G = gauss_newton(net, X, Y, p)
            theta = net.pack(p)
            h = 1e-5
            for seed in range(3):
                v = np.random.default_rng(seed).standard_normal(theta.size)
                gp = net.gradient(X, Y, net.unpack(theta + h * v)).vector
                gm = net.gradient(X, Y, net.unpack(theta - h * v)).vector
                np.testing.assert_allclose(G.matvec(v), (gp - gm) / (2 * h), atol=1e-8)


def test_ggn_against_torch_hessian_and_ntk_against_jacrev():
    torch = pytest.importorskip("torch")
    from test_per_sample import torch_jacobian, torch_logits, torch_params

    # one layer: GGN = exact Hessian of the reduced loss by torch.func.hessian
    net = dense_net("pytorch", widths=())
    p = net.init_params(0)
    X, Y = make_data(net, 4, 0)
    tp = torch_params(net, p)
    tX, tY = torch.tensor(X), torch.tensor(Y)
    names = list(tp)
    flat = torch.cat([tp[k].reshape(-1) for k in names])
    sizes = [tp[k].numel() for k in names]

    def loss(theta):
        parts = dict(zip(names, [t.reshape(tp[k].shape) for t, k in zip(torch.split(theta, sizes), names)]))
        Z = torch_logits(net, parts, tX)
        return (-(tY * torch.log_softmax(Z, dim=-1)).sum(-1)).mean()

    Ht = torch.func.hessian(loss)(flat).numpy()  # pytorch preset: θ = [W1 rows stacked, b1]
    np.testing.assert_allclose(gauss_newton(net, X, Y, p).to_dense(), Ht, atol=1e-12)
    # two layers: GGN = Jᵀ H J with J by jacrev and H by torch.func.hessian of the loss in z
    for net in (dense_net("damadi", widths=(4,)), cnn_net("park")):
        p = net.init_params(2)
        X, Y = make_data(net, 3, 1)
        Jt = torch_jacobian(net, X, p)
        Xb, Yb, _ = net.as_batch(X, Y)
        Z = torch.tensor(net.forward(X, p).z[-1])
        Hs = [torch.func.hessian(lambda z: -(torch.tensor(y) * torch.log_softmax(z, dim=-1)).sum())(z).numpy()
              for z, y in zip(Z, Yb)]
        r = 1 / 3 if net.convention.reduction == "mean" else 1.0
        Gt = r * sum(Jt[i].T @ Hs[i] @ Jt[i] for i in range(3))
        np.testing.assert_allclose(gauss_newton(net, X, Y, p).to_dense(), Gt, atol=1e-12)
        Jf = Jt.reshape(-1, net.n_params)
        np.testing.assert_allclose(empirical_ntk(net, X, p).to_dense(), Jf @ Jf.T, atol=1e-11)


def test_scipy_eigensolvers_on_the_lazy_operators():
    net = dense_net("ganev", widths=(6,))
    p = net.init_params(4)
    X, Y = make_data(net, 6, 4)
    G = gauss_newton(net, X, Y, p)
    K = empirical_ntk(net, X, p)
    top = spla.eigsh(G.as_linear_operator(), k=2, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), np.sort(np.linalg.eigvalsh(G.to_dense()))[-2:], rtol=1e-8)
    topk = spla.eigsh(K.as_linear_operator(), k=1, which="LA", return_eigenvectors=False)
    assert topk[0] == pytest.approx(np.linalg.eigvalsh(K.to_dense())[-1], rel=1e-8)


def test_single_sample_ntk_and_ntk_convention_invariance():
    x = np.random.default_rng(0).standard_normal(3)
    kernels = []
    for preset in ("damadi", "ganev", "mml"):  # θ order and vec differ; J Jᵀ must not
        net = dense_net(preset)
        p = net.init_params(9)
        K = empirical_ntk(net, x, p)
        assert K.shape == (3, 3)
        J = net.jacobian_theta(x, p).to_dense()
        np.testing.assert_allclose(K.to_dense(), J @ J.T, atol=1e-12)
        kernels.append(K.to_dense())
    for k in kernels[1:]:
        np.testing.assert_allclose(k, kernels[0], atol=1e-12)


def test_bad_input_is_a_clear_error():
    net = dense_net("pytorch")
    p = net.init_params(0)
    X, Y = make_data(net, 3, 0)
    G = gauss_newton(net, X, Y, p)
    K = empirical_ntk(net, X, p)
    with pytest.raises(jb.ShapeError, match=f"expected a vector of length {net.n_params}"):
        G.matvec(np.ones(net.n_params - 1))
    with pytest.raises(jb.ShapeError, match="expected a vector of length 9"):
        K.matvec(np.ones(10))
    with pytest.raises(jb.ShapeError, match="do not chain"):
        Product([G, K])
    with pytest.raises(jb.ShapeError, match="do not chain"):
        K @ G
    assert (G @ G).shape == G.shape  # operators that do chain
    with jb.memory_budget(256):  # K is 9 x 9 = 648 bytes
        with pytest.raises(jb.MemoryBudgetError, match="exceeds the memory budget"):
            G.to_dense()
        with pytest.raises(jb.MemoryBudgetError, match="exceeds the memory budget"):
            K.to_dense()
    # the budget also covers the batch Jacobian that the GGN materialization needs
    nbytes = net.n_params ** 2 * 8
    with jb.memory_budget(nbytes + 8):
        with pytest.raises(jb.MemoryBudgetError, match="batch Jacobian"):
            G.to_dense()
    unmatched = jb.Network([jb.Dense(3), jb.Softmax()], "mse", 3, "pytorch")
    Xu, Yu = make_data(unmatched, 2, 0)
    with pytest.raises(jb.SpecError, match="matched pair"):
        gauss_newton(unmatched, Xu, Yu, unmatched.init_params(0))
    assert isinstance(empirical_ntk(unmatched, Xu, unmatched.init_params(0)), EmpiricalNTKOperator)
    with pytest.raises(jb.ShapeError, match="expected targets"):
        GaussNewtonOperator(net, X, Y[:2], p)
    with pytest.raises(ValueError, match="targets Y are required"):
        GaussNewtonOperator(net, X, None, p)
