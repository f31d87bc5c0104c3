"""Residual blocks x + body(x) (issue #12): every route of the engine against torch autograd written
here (torch.func.jacrev over θ, the θ layout mapped by hand below) to rel ≤ 1e-12, and against float64
central differences."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.func import jacrev  # noqa: E402

from jacobian_bp.cli import main  # noqa: E402
from jacobian_bp.engine.network import Network  # noqa: E402
from jacobian_bp.errors import JacobianBPError, ShapeError, SpecError, UnsupportedInputError  # noqa: E402
from jacobian_bp.layers.activations import Tanh  # noqa: E402
from jacobian_bp.layers.conv import Conv2d  # noqa: E402
from jacobian_bp.layers.dense import Dense  # noqa: E402
from jacobian_bp.layers.flatten import Flatten  # noqa: E402
from jacobian_bp.layers.residual import Residual  # noqa: E402
from jacobian_bp.layers.vector_activations import Softmax  # noqa: E402
from jacobian_bp.oracles.verify import verify  # noqa: E402
from jacobian_bp.spec import load_spec  # noqa: E402
from jacobian_bp.uses.curvature import empirical_ntk, gauss_newton  # noqa: E402
from jacobian_bp.uses.lazy import BatchJacobianOperator  # noqa: E402

F = torch.nn.functional
PRESETS = ["pytorch", "damadi", "ganev", "park", "mml"]


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


# ----------------------------------------------------------------------------- the two test networks
def mlp(conv):
    return Network([Dense(5), Tanh(), Residual([Dense(5), Tanh(), Dense(5)]), Tanh(), Dense(3), Softmax()],
                   "cross_entropy", 4, conv, name="res-mlp")


def cnn(conv):
    body = [Conv2d(2, 3, padding=1), Tanh(), Conv2d(2, 3, padding=1)]
    return Network([Conv2d(2, 3, padding=1), Tanh(), Residual(body), Tanh(), Flatten(), Dense(3), Softmax()],
                   "cross_entropy", (1, 5, 5), conv, name="res-cnn")


# canonical (torch) shapes and whether the convention's in_out layout transposes the tensor, per network
MLP_PARAMS = [("W1", (5, 4), True), ("b1", (5,), False), ("W2.1", (5, 5), True), ("b2.1", (5,), False),
              ("W2.2", (5, 5), True), ("b2.2", (5,), False), ("W3", (3, 5), True), ("b3", (3,), False)]
CNN_PARAMS = [("K1", (2, 1, 3, 3), False), ("b1", (2,), False), ("K2.1", (2, 2, 3, 3), False), ("b2.1", (2,), False),
              ("K2.2", (2, 2, 3, 3), False), ("b2.2", (2,), False), ("W3", (3, 50), True), ("b3", (3,), False)]


def theta_layout(preset: str, params):
    """The θ layout of each preset, written from the conventions table (not read from the network):
    [(name, canonical shape, user transposed?, flatten order of the canonical array)] in θ order."""
    stage = lambda name: int(name[1:].split(".")[0])  # noqa: E731
    if preset in ("pytorch", "park"):  # forward, out_in, rows stacked
        return [(n, s, False, "C") for n, s, t in params]
    if preset == "mml":  # forward, out_in, columns stacked
        return [(n, s, False, "F") for n, s, t in params]
    if preset == "ganev":  # all weights, then all biases; rows stacked
        return [(n, s, False, "C") for n, s, t in params if n[0] != "b"] + [(n, s, False, "C") for n, s, t in params if n[0] == "b"]
    # damadi: layers L..1, W in_out with its columns stacked (= canonical rows stacked); other tensors column-major
    order = sorted(params, key=lambda p: -stage(p[0]))
    return [(n, s, t, "C" if t else "F") for n, s, t in order]


def torch_params(theta, layout):
    out, off = {}, 0
    for name, shape, _, order in layout:
        size = int(np.prod(shape))
        flat = theta[off:off + size]
        out[name] = flat.reshape(shape) if order == "C" else flat.reshape(tuple(reversed(shape))).permute(
            *reversed(range(len(shape))))
        off += size
    return out


def torch_mlp_logits(x, P):
    h = torch.tanh(F.linear(x, P["W1"], P["b1"]))
    r = F.linear(torch.tanh(F.linear(h, P["W2.1"], P["b2.1"])), P["W2.2"], P["b2.2"])
    return F.linear(torch.tanh(h + r), P["W3"], P["b3"])


def torch_cnn_logits(x, P):
    h = torch.tanh(F.conv2d(x, P["K1"], P["b1"], padding=1))
    r = F.conv2d(torch.tanh(F.conv2d(h, P["K2.1"], P["b2.1"], padding=1)), P["K2.2"], P["b2.2"], padding=1)
    h = torch.tanh(h + r)
    return F.linear(h.flatten(1), P["W3"], P["b3"])


CASES = {"mlp": (mlp, MLP_PARAMS, torch_mlp_logits), "cnn": (cnn, CNN_PARAMS, torch_cnn_logits)}


def setup(kind, preset, N=3, seed=0):
    make, plist, logits = CASES[kind]
    net = make(preset)
    p = net.init_params(seed)
    rng = np.random.default_rng(seed + 1)
    Xb = rng.standard_normal((N,) + net.input_shape)
    Yb = np.eye(3)[rng.integers(0, 3, N)]
    X, Y = (np.moveaxis(Xb, 0, -1), Yb.T) if net.convention.batch_axis == "last" else (Xb, Yb)
    return net, p, X, Y, Xb, Yb, theta_layout(preset, plist), logits


def torch_reduced_loss(theta_t, Xt, Yt, layout, logits, mean):
    z = logits(Xt, torch_params(theta_t, layout))
    per = -(Yt * torch.log_softmax(z, dim=-1)).sum(-1)
    return per.mean() if mean else per.sum()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("preset", PRESETS)
def test_gradients_against_torch_and_differences(kind, preset):
    net, p, X, Y, Xb, Yb, layout, logits = setup(kind, preset)
    assert net.param_names == [n for n, *_ in layout] or sorted(net.param_names) == sorted(n for n, *_ in layout)
    assert [e.name for e in net.entries] == [n for n, *_ in layout]
    theta = net.pack(p)
    tt = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    loss = torch_reduced_loss(tt, torch.tensor(Xb), torch.tensor(Yb), layout, logits, net.convention.reduction == "mean")
    (g_torch,) = torch.autograd.grad(loss, tt)
    g_torch = g_torch.numpy()
    assert abs(net.loss_value(X, Y, p) - float(loss)) <= 1e-12 * abs(float(loss))
    for method in ("chain", "operator"):
        assert rel(net.gradient(X, Y, p, method=method).vector, g_torch) <= 1e-12, method
    ps = net.per_sample_gradients(X, Y, p)
    assert rel(ps.sum(0) * net.reduce_factor(Xb.shape[0]), g_torch) <= 1e-12
    # float64 central differences on a few coordinates of every block
    f = lambda t: net.loss_value(X, Y, net.unpack(t))  # noqa: E731
    for e in net.entries:
        for j in (e.offset, e.offset + e.size - 1):
            d = np.zeros_like(theta)
            d[j] = 1e-6
            assert abs((f(theta + d) - f(theta - d)) / 2e-6 - g_torch[j]) <= 1e-7 * max(1.0, abs(g_torch[j]))


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("preset", ["pytorch", "damadi", "ganev"])
def test_full_jacobians_against_torch(kind, preset):
    net, p, X, Y, Xb, Yb, layout, logits = setup(kind, preset, N=2)
    theta = torch.tensor(net.pack(p))
    x0 = Xb[0]
    J_torch = jacrev(lambda t: logits(torch.tensor(x0)[None], torch_params(t, layout))[0])(theta).numpy()
    assert rel(net.jacobian_theta(x0, p).to_dense(), J_torch) <= 1e-12
    Jx_torch = jacrev(lambda x: logits(x[None], torch_params(theta, layout))[0])(torch.tensor(x0)).numpy()
    assert rel(net.jacobian_input(x0, p).to_dense(), Jx_torch.reshape(3, -1)) <= 1e-12
    # batch Jacobians: explicit, lazy (forward and reverse mode), materialized
    JB = np.concatenate([jacrev(lambda t, i=i: logits(torch.tensor(Xb[i])[None], torch_params(t, layout))[0])(theta).numpy()
                         for i in range(Xb.shape[0])])
    assert rel(net.batch_jacobian_theta(X, p).to_dense(), JB) <= 1e-12
    B = BatchJacobianOperator(net, X, p)
    assert rel(B.to_dense(), JB) <= 1e-12
    v = np.random.default_rng(3).standard_normal(net.n_params)
    u = np.random.default_rng(4).standard_normal(JB.shape[0])
    assert rel(B.matvec(v), JB @ v) <= 1e-12
    assert rel(B.rmatvec(u), JB.T @ u) <= 1e-12
    # GGN J^T H J (H from torch's Hessian of the reduced loss in z) and the NTK J J^T
    mean = net.convention.reduction == "mean"
    H = np.zeros((JB.shape[0], JB.shape[0]))
    for i in range(Xb.shape[0]):
        zi = logits(torch.tensor(Xb[i])[None], torch_params(theta, layout))[0].detach()
        Hi = torch.autograd.functional.hessian(lambda z: -(torch.tensor(Yb[i]) * torch.log_softmax(z, -1)).sum(), zi).numpy()
        H[3 * i:3 * i + 3, 3 * i:3 * i + 3] = Hi / (Xb.shape[0] if mean else 1)
    assert rel(gauss_newton(net, X, Y, p).to_dense(), JB.T @ H @ JB) <= 1e-12
    assert rel(empirical_ntk(net, X, p).to_dense(), JB @ JB.T) <= 1e-12


def test_block_input_jacobian_is_identity_plus_body():
    block = Residual([Dense(4), Tanh(), Dense(4)])
    block.build((4,))
    rng = np.random.default_rng(0)
    params = block.init_params(rng)
    a = rng.standard_normal(4)
    o = block.forward(a[None], params)[0]
    J = block.jac_input(a, o, params).to_dense()
    fd = np.stack([(block.forward((a + 1e-6 * e)[None], params)[0] - block.forward((a - 1e-6 * e)[None], params)[0]) / 2e-6
                   for e in np.eye(4)], 1)
    assert np.max(np.abs(J - fd)) <= 1e-8
    body = np.asarray(params["W.2"]) @ np.diag(1 - np.tanh(params["W.1"] @ a + params["b.1"]) ** 2) @ params["W.1"]
    assert rel(J, np.eye(4) + body) <= 1e-14
    # jvp/vjp/left products composed from the body layers agree with the structured Jacobian
    A = rng.standard_normal((2, 4))
    O = block.forward(A, params)
    T = rng.standard_normal((2, 4))
    Js = [block.jac_input(A[i], O[i], params).to_dense() for i in range(2)]
    assert rel(block.jvp_input(A, O, T, params), np.stack([Js[i] @ T[i] for i in range(2)])) <= 1e-14
    assert rel(block.vjp_input(A, O, T, params), np.stack([Js[i].T @ T[i] for i in range(2)])) <= 1e-14
    P = rng.standard_normal((2, 3, 4))
    assert rel(block.left_jac_input(A, O, P, params), np.stack([P[i] @ Js[i] for i in range(2)])) <= 1e-14
    dp = {k: rng.standard_normal(np.shape(v)) for k, v in params.items()}
    Jp = [{k: op.to_dense() for k, op in block.jac_params(A[i], O[i], params).items()} for i in range(2)]
    want = np.stack([sum(Jp[i][k] @ dp[k].ravel() for k in params) for i in range(2)])
    assert rel(block.jvp_params(A, O, dp, params), want) <= 1e-14
    got = block.vjp_params(A, O, T, params)
    for k in params:
        assert rel(got[k], sum(Jp[i][k].T @ T[i] for i in range(2))) <= 1e-14


def test_torch_forward_of_the_block():
    block = Residual([Dense(4), Tanh(), Dense(4)])
    block.build((4,))
    params = block.init_params(np.random.default_rng(0))
    A = np.random.default_rng(1).standard_normal((3, 4))
    try:
        T = block.torch_forward(torch.tensor(A), {k: torch.tensor(v) for k, v in params.items()})
    except NotImplementedError:
        pytest.skip("the body layers have no torch twin yet (R-A's layer protocol)")
    assert rel(T.numpy(), block.forward(A, params)) <= 1e-15


def test_nested_blocks_and_names():
    inner = Residual([Dense(3), Tanh()])
    net = Network([Dense(3), Residual([Dense(3), Tanh(), inner])], "mse", 2, "damadi")
    assert sorted(net.param_names) == sorted(["W1", "b1", "W2.1", "b2.1", "W2.2.1", "b2.2.1"])
    assert net.entry("W2.1").user_shape == (3, 3) and net.entry("W1").user_shape == (2, 3)  # in_out
    p = net.init_params(0)
    X, Y = np.random.default_rng(0).standard_normal((2, 2)), np.random.default_rng(1).standard_normal((2, 3))
    g = net.gradient(X, Y, p).vector
    theta = net.pack(p)
    f = lambda t: net.loss_value(X, Y, net.unpack(t))  # noqa: E731
    fd = np.array([(f(theta + 1e-6 * e) - f(theta - 1e-6 * e)) / 2e-6 for e in np.eye(theta.size)])
    assert np.max(np.abs(fd - g)) <= 1e-7
    assert rel(net.gradient(X, Y, p, method="operator").vector, g) <= 1e-13


def test_shape_errors_and_refusals():
    with pytest.raises(ShapeError, match="needs equal input and output shapes"):
        Network([Dense(4), Residual([Dense(3)])], "mse", 4)
    with pytest.raises(ShapeError, match="residual"):
        Network([Conv2d(2, 3), Residual([Conv2d(2, 3)]), Flatten()], "mse", (1, 6, 6))  # no padding: 4x4 -> 2x2
    with pytest.raises(SpecError, match="non-empty list"):
        Residual([])
    net = mlp("pytorch")
    net.require_renderable("latex")  # residual blocks carry their LaTeX facts (tests/test_residual_latex.py)


SPEC = {"name": "res-spec", "input": 4, "convention": "damadi", "loss": "cross_entropy", "data": {"batch": 3},
        "layers": [{"type": "dense", "out_features": 5}, {"type": "tanh"},
                   {"type": "residual", "body": [{"type": "dense", "out_features": 5}, {"type": "tanh"},
                                                 {"type": "dense", "out_features": 5}]},
                   {"type": "dense", "out_features": 3}, {"type": "softmax"}]}


def test_spec_errors_name_the_nested_path():
    bad = json.loads(json.dumps(SPEC))
    bad["layers"][2]["body"][0]["out_features"] = "five"
    with pytest.raises(SpecError, match=r"layers\[2\]\.body\[0\] \(dense\): out_features"):
        load_spec(bad)
    bad["layers"][2]["body"] = [{"type": "swish"}]
    with pytest.raises(SpecError, match=r"layers\[2\]\.body\[0\]: unknown layer type 'swish'"):
        load_spec(bad)
    bad["layers"][2] = {"type": "residual", "body": {"type": "relu"}}
    with pytest.raises(SpecError, match=r"layers\[2\] \(residual\): body must be a non-empty list"):
        load_spec(bad)


def test_spec_and_cli_end_to_end(tmp_path, capsys):
    spec = load_spec(SPEC)
    net = spec.network
    assert net.param_names == ["W3", "b3", "W2.1", "b2.1", "W2.2", "b2.2", "W1", "b1"]
    X, Y = spec.data()
    rep = verify(net, X, Y, spec.params())
    assert rep.passed, rep.to_text()
    assert "torch autograd" in rep.methods or "torch autograd" in rep.skipped
    f = tmp_path / "res.json"
    f.write_text(json.dumps(SPEC))
    assert main(["show", str(f)]) == 0
    assert "W2.1" in capsys.readouterr().out
    assert main(["verify", str(f)]) == 0
    assert "verdict: PASS" in capsys.readouterr().out
    out = tmp_path / "g.npz"
    assert main(["gradient", str(f), "-o", str(out)]) == 0
    saved = np.load(out)
    assert rel(saved["theta"], net.gradient(X, Y, spec.params()).vector) <= 1e-15
    assert saved["W2.1"].shape == (5, 5)
    jo = tmp_path / "j.npz"
    assert main(["jacobian", str(f), "-o", str(jo)]) == 0
    capsys.readouterr()
    assert main(["latex", str(f), "-o", str(tmp_path / "d.tex")]) == 0
    assert r"\mathbf{W}^{[2.1]}" in (tmp_path / "d.tex").read_text(encoding="utf-8")


def test_every_residual_failure_is_a_package_error():
    net = mlp("pytorch")
    with pytest.raises(JacobianBPError):
        net.gradient(np.zeros(3), np.eye(3)[0], net.init_params(0))
