"""CNNs through Algorithm 1 (issue: convolution as Toeplitz matrices, part 5): conv -> ReLU ->
pool -> flatten -> dense -> softmax+CE, with every check of the engine."""
import json

import numpy as np
import pytest

import jacobian_bp as jb
from jacobian_bp.cli import main
from jacobian_bp.spec import generate_data, load_spec

CONVS = [
    dict(out_channels=2, kernel_size=3),
    dict(out_channels=3, kernel_size=(2, 3), stride=2, padding=1),
    dict(out_channels=2, kernel_size=2, dilation=2, mode="convolution", bias="untied"),
    dict(out_channels=2, kernel_size=3, padding=(1, 0), bias="none"),
]
POOLS = [{"type": "maxpool2d", "kernel_size": 2}, {"type": "avgpool2d", "kernel_size": 2, "stride": 1}]


def _spec(conv, pool, in_shape=(2, 7, 6), preset="pytorch"):
    return {"name": "cnn", "input": list(in_shape),
            "layers": [{"type": "conv2d", **conv}, {"type": "relu"}, pool, {"type": "flatten"},
                       {"type": "dense", "out_features": 3}, {"type": "softmax"}],
            "loss": "cross_entropy", "convention": preset}


@pytest.mark.parametrize("conv", CONVS, ids=range(len(CONVS)))
@pytest.mark.parametrize("pool", POOLS, ids=["max", "avg"])
@pytest.mark.parametrize("preset", ["pytorch", "damadi", "park"])
def test_cnn_gradient_verified(conv, pool, preset):
    net = load_spec(_spec(conv, pool, preset=preset)).network
    p = net.init_params(3)
    X, Y = generate_data(net, 2, 5)
    rep = jb.verify(net, X, Y, p, fd_max_coords=20, fd_directions=1)
    assert rep.passed, rep.to_text()
    assert "finite differences" in rep.methods
    try:
        import torch  # noqa: F401
        assert "torch autograd" in rep.methods
    except ImportError:
        pass


def test_cnn_jacobians_against_fd():
    net = load_spec(_spec(CONVS[1], POOLS[0])).network
    p = net.init_params(0)
    x = np.random.default_rng(2).standard_normal(net.input_shape)
    J = net.jacobian_theta(x, p)
    assert J.shape == (3, net.n_params)
    assert J.blocks[0].input.name == "vec K[1]"
    theta = net.pack(p)
    h = 1e-6
    fd = np.stack([(net.forward(x, net.unpack(theta + h * e)).z[-1][0] - net.forward(x, net.unpack(theta - h * e)).z[-1][0]) / (2 * h)
                   for e in np.eye(theta.size)], axis=1)
    np.testing.assert_allclose(J.to_dense(), fd, atol=1e-7)
    Jx = net.jacobian_input(x, p).to_dense()
    xs = x.ravel()
    fdx = np.stack([(net.forward((xs + h * e).reshape(x.shape), p).z[-1][0] - net.forward((xs - h * e).reshape(x.shape), p).z[-1][0]) / (2 * h)
                    for e in np.eye(xs.size)], axis=1)
    np.testing.assert_allclose(Jx, fdx, atol=1e-7)
    # the first factor of the chain w.r.t. the input is the Toeplitz matrix of the conv layer
    assert net.stages[0].layer.jac_input(x, None, net.stage_params(net.canonical_params(p), 1)).structure == "toeplitz"


def test_cnn_cli_spec(tmp_path, capsys):
    f = tmp_path / "cnn.json"
    f.write_text(json.dumps(_spec(CONVS[0], POOLS[0])))
    assert main(["verify", str(f), "--batch", "2"]) == 0
    assert "verdict: PASS" in capsys.readouterr().out
    assert main(["jacobian", str(f), "-o", str(tmp_path / "J.npz")]) == 0
    assert main(["verify", "small-cnn"]) == 0


def test_cnn_bad_geometry_is_a_clear_error():
    with pytest.raises(jb.ShapeError, match="kernel"):
        load_spec(_spec(dict(out_channels=1, kernel_size=9), POOLS[0], in_shape=(1, 5, 5)))
    with pytest.raises((jb.SpecError, jb.ShapeError), match="stride"):
        load_spec(_spec(dict(out_channels=1, kernel_size=2, stride=0), POOLS[0]))


def test_exact_size_rule_refuses_non_integer_output():
    ok = _spec(dict(out_channels=1, kernel_size=3, stride=2, size_rule="exact"), POOLS[1], in_shape=(1, 7, 7))
    load_spec(ok)  # (7 - 3) / 2 is an integer
    bad = _spec(dict(out_channels=1, kernel_size=3, stride=2, size_rule="exact"), POOLS[1], in_shape=(1, 8, 8))
    with pytest.raises(jb.ShapeError, match="not an integer"):
        load_spec(bad)
    badpool = _spec(dict(out_channels=1, kernel_size=2), {"type": "maxpool2d", "kernel_size": 2, "size_rule": "exact"},
                    in_shape=(1, 6, 6))
    with pytest.raises(jb.ShapeError, match="not an integer"):
        load_spec(badpool)
