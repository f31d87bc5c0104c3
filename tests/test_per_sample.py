"""Per-sample gradients and the materialized batch Jacobian (jacobian_bp.engine.per_sample) against
single-sample gradients, central differences, SymPy and torch (vmap(grad), jacrev)."""
import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st

import jacobian_bp as jb
from jacobian_bp.engine.per_sample import batch_jacobian, per_sample_gradients
from jacobian_bp.spec import load_spec
from jacobian_bp.oracles.torch_oracle import _act
from conftest import make_data, dense_net

PRESETS = ["damadi", "ganev", "park", "mml", "pytorch"]




def cnn_net(preset="pytorch"):
    return load_spec({"input": [2, 5, 4],
                      "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": (2, 3), "stride": 1, "padding": 1},
                                 {"type": "tanh"}, {"type": "avgpool2d", "kernel_size": 2}, {"type": "flatten"},
                                 {"type": "dense", "out_features": 3}, {"type": "softmax"}],
                      "loss": "cross_entropy", "convention": preset}).network


def batch_first(net, X):
    return X if net.convention.batch_axis == "first" else np.moveaxis(X, -1, 0)


def sample(net, X, Y, i):
    """Sample i of a batch laid out per the convention, as a single sample."""
    return batch_first(net, X)[i], batch_first(net, Y)[i]


# ---------------------------------------------------------------------------- torch helpers (shared with other tests)
def torch_logits(net, tp: dict, A):
    """z[L] of a batch-first torch batch, from canonical torch parameters ``tp`` (W is out x in)."""
    import torch

    F = torch.nn.functional
    for stg in net.stages:
        p = {local: tp[f"{local}{stg.index}"] for local in stg.layer.param_shapes()}
        lay = stg.layer
        if lay.kind == "dense":
            Z = F.linear(A, p["W"], p.get("b"))
        else:
            K = torch.flip(p["K"], dims=(-2, -1)) if lay.mode == "convolution" else p["K"]
            Z = F.conv2d(A, K, None, lay.stride, lay.padding, lay.dilation)
            if lay.bias == "tied":
                Z = Z + p["b"][None, :, None, None]
            elif lay.bias == "untied":
                Z = Z + p["b"][None]
        if stg.index == net.L:
            return Z
        A = Z
        for post in stg.post:
            A = _act(torch, post, A)


def torch_per_sample_loss(net, tp, x, y):
    """ℓ(y, f(z[L](x))) of one sample (matched pairs), from its logits."""
    import torch

    z = torch_logits(net, tp, x[None])[0]
    kind = net.loss.kind
    if kind == "cross_entropy":
        return -(y * torch.log_softmax(z, dim=-1)).sum()
    if kind == "bce":
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
    c = net.loss.scale / (z.numel() if net.loss.reduce_outputs == "mean" else 1)
    return c * ((z - y) ** 2).sum()


def to_theta(net, grads: dict, lead: int) -> np.ndarray:
    """Canonical per-parameter arrays with ``lead`` leading axes -> θ order and vec of the convention."""
    cols = []
    for e in net.entries:
        a = np.asarray(grads[e.name])
        nd = len(e.canonical_shape)
        if e.order == "F":
            a = a.transpose(tuple(range(lead)) + tuple(range(lead + nd - 1, lead - 1, -1)))
        cols.append(a.reshape(a.shape[:lead] + (-1,)))
    return np.concatenate(cols, axis=-1)


def torch_params(net, p):
    import torch

    return {k: torch.tensor(np.asarray(v, dtype=float)) for k, v in net.canonical_params(p).items()}


def torch_jacobian(net, X, p) -> np.ndarray:
    """J_θ z_i[L] for every sample by torch.func.jacrev, ``(N, n_L, |θ|)`` in the convention's θ order."""
    import torch

    tp = torch_params(net, p)
    A = torch.tensor(batch_first(net, np.asarray(X, dtype=float)))
    jac = torch.func.jacrev(lambda ps: torch_logits(net, ps, A))(tp)
    return to_theta(net, {k: v.numpy() for k, v in jac.items()}, 2)


def torch_per_sample_gradients(net, X, Y, p) -> np.ndarray:
    import torch
    from torch.func import grad, vmap

    tp = torch_params(net, p)
    tX = torch.tensor(batch_first(net, np.asarray(X, dtype=float)))
    tY = torch.tensor(batch_first(net, np.asarray(Y, dtype=float)))
    g = vmap(grad(lambda ps, x, y: torch_per_sample_loss(net, ps, x, y)), in_dims=(None, 0, 0))(tp, tX, tY)
    return to_theta(net, {k: v.numpy() for k, v in g.items()}, 1)


# ---------------------------------------------------------------------------- per-sample gradients
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("kind", ["ce", "bce", "mse", "cnn"])
def test_rows_are_single_sample_gradients(preset, kind):
    net = {"ce": lambda: dense_net(preset),
           "bce": lambda: dense_net(preset, jb.ReLU, jb.Sigmoid, "bce"),
           "mse": lambda: dense_net(preset, jb.Sigmoid, None, "mse"),
           "cnn": lambda: cnn_net(preset)}[kind]()
    p = net.init_params(3)
    X, Y = make_data(net, 4, 1)
    G = per_sample_gradients(net, X, Y, p)
    assert G.shape == (4, net.n_params)
    for i in range(4):
        x, y = sample(net, X, Y, i)
        np.testing.assert_allclose(G[i], net.gradient(x, y, p, method="chain").vector, atol=1e-13)
    r = 1 / 4 if net.convention.reduction == "mean" else 1.0
    np.testing.assert_allclose(r * G.sum(0), net.gradient(X, Y, p).vector, atol=1e-13)
    np.testing.assert_array_equal(net.per_sample_gradients(X, Y, p), G)


@settings(max_examples=25, deadline=None)
@given(preset=st.sampled_from(PRESETS), N=st.integers(1, 5), seed=st.integers(0, 10**6),
       widths=st.lists(st.integers(1, 4), min_size=0, max_size=2))
def test_per_sample_property(preset, N, seed, widths):
    net = dense_net(preset, widths=tuple(widths))
    p = net.init_params(seed % 101)
    X, Y = make_data(net, N, seed % 1000)
    if N == 1:  # a single sample given as a batch of one
        X = X[None] if net.convention.batch_axis == "first" else X[:, None]
        Y = Y[None] if net.convention.batch_axis == "first" else Y[:, None]
    G = per_sample_gradients(net, X, Y, p)
    for i in range(N):
        x, y = sample(net, X, Y, i)
        np.testing.assert_allclose(G[i], net.gradient(x, y, p, method="chain").vector, atol=1e-12)


def test_per_sample_against_torch_vmap_grad():
    pytest.importorskip("torch")
    for net in (dense_net("damadi"), dense_net("mml", jb.ReLU, jb.Sigmoid, "bce"), dense_net("park", jb.Sigmoid, None, "mse"),
                cnn_net("pytorch"), cnn_net("damadi")):
        p = net.init_params(7)
        X, Y = make_data(net, 5, 7)
        np.testing.assert_allclose(per_sample_gradients(net, X, Y, p), torch_per_sample_gradients(net, X, Y, p),
                                   atol=1e-12)


def test_per_sample_symbolic_against_sympy_diff():
    """Exact per-sample gradients with SymPy parameters equal d ℓ_i / d θ_k by sympy.diff."""
    net = jb.Network([jb.Dense(2), jb.Tanh(), jb.Dense(1)], "mse", 2, "damadi")
    names = net.param_names
    syms = {}
    params = {}
    for e in net.entries:
        s = np.array([sympy.Symbol(f"{e.name}_{k}", real=True) for k in range(e.size)], dtype=object)
        syms[e.name] = list(s)
        params[e.name] = s.reshape(e.user_shape)
    values = {s: sympy.Rational(k % 5 - 2, 3) for k, s in enumerate(v for n in names for v in syms[n])}
    X = np.array([[sympy.Rational(1, 2), -1], [2, sympy.Rational(1, 3)]], dtype=object)
    Y = np.array([[1], [0]], dtype=object)
    G = per_sample_gradients(net, X, Y, params)
    theta_syms = [s for e in net.entries for s in np.asarray(params[e.name]).ravel(order="F" if e.space.order == "F" else "C")]
    for i in range(2):
        loss_i = net.loss.value(Y[i:i + 1], net.forward(X[i], params).a[-1])[0]
        for k, s in enumerate(theta_syms):
            diff = G[i, k].subs(values) - sympy.diff(loss_i, s).subs(values)
            if i == 0:
                assert sympy.simplify(diff) == 0
            else:  # the same identity evaluated numerically (faster than simplify); the MSE
                # factor 2c enters as a float, so agreement is to double precision
                assert abs(sympy.N(diff, 30)) < 1e-13


# ---------------------------------------------------------------------------- batch Jacobian
@pytest.mark.parametrize("preset", PRESETS)
def test_batch_jacobian_against_chain_and_fd(preset):
    for net in (dense_net(preset), cnn_net(preset)):
        p = net.init_params(2)
        X, _ = make_data(net, 3, 4)
        J = batch_jacobian(net, X, p)
        assert J.shape == (3, net.n_out, net.n_params)
        np.testing.assert_allclose(J.reshape(3 * net.n_out, -1), net.batch_jacobian_theta(X, p).to_dense(), atol=1e-14)
        theta = net.pack(p)
        h = 1e-6
        rng = np.random.default_rng(0)
        for _ in range(2):
            v = rng.standard_normal(theta.size)
            fd = (net.forward(X, net.unpack(theta + h * v)).z[-1] - net.forward(X, net.unpack(theta - h * v)).z[-1]) / (2 * h)
            np.testing.assert_allclose(J @ v, fd, atol=1e-7)
        x, _ = make_data(net, 1, 4)
        np.testing.assert_allclose(batch_jacobian(net, x, p), net.jacobian_theta(x, p).to_dense(), atol=1e-14)


def test_batch_jacobian_against_torch_jacrev():
    pytest.importorskip("torch")
    for net in (dense_net("damadi"), dense_net("ganev", jb.RadialSigmoid), cnn_net("mml")):
        p = net.init_params(1)
        X, _ = make_data(net, 3, 2)
        np.testing.assert_allclose(batch_jacobian(net, X, p), torch_jacobian(net, X, p), atol=1e-12)


def test_memory_guard_and_bad_input():
    net = dense_net("pytorch")
    p = net.init_params(0)
    X, Y = make_data(net, 4, 0)
    with jb.memory_budget(64):
        with pytest.raises(jb.MemoryBudgetError, match="per-sample gradients"):
            per_sample_gradients(net, X, Y, p)
        with pytest.raises(jb.MemoryBudgetError, match="batch Jacobian"):
            batch_jacobian(net, X, p)
    with pytest.raises(ValueError, match="targets Y are required"):
        per_sample_gradients(net, X, None, p)
    with pytest.raises(jb.ShapeError, match="expected targets of shape"):
        per_sample_gradients(net, X, Y[:3], p)
    with pytest.raises(jb.ShapeError, match="parameter W1 expected shape"):
        per_sample_gradients(net, X, Y, {**p, "W1": np.zeros((2, 2))})
    with pytest.raises(jb.DataError, match="one-hot"):
        per_sample_gradients(net, X, Y * 2, p)
