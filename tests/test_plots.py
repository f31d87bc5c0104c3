"""Plots (the ``plot`` extra): a Jacobian spy plot with its blocks and layers labelled, per-parameter gradient norms.
The drawn pattern and bar heights are checked against independent oracles (torch autograd, numpy norms)."""
from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jacobian_bp as jb  # noqa: E402
from jacobian_bp.errors import DataError  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def labels(ax):
    return [t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.texts], \
        [t.get_text() for t in ax.get_yticklabels()]


def test_network_spy_plot_labels_blocks_and_layers(tmp_path):
    net = jb.Network([jb.Dense(4), jb.Sigmoid(), jb.Dense(3), jb.ReLU(), jb.Dense(2)], "mse", 3, convention="damadi")
    p = net.init_params(0)
    x = np.array([0.3, -0.2, 0.5])
    ax = jb.plot_jacobian(net, x, p)
    cols, texts, rows = labels(ax)
    assert cols == ["vec W[3]", "b[3]", "vec W[2]", "b[2]", "vec W[1]", "b[1]"]  # Damadi's θ order, Alg. 1 line 7
    assert texts == ["layer 3", "layer 2", "layer 1"] and rows == ["z[3]"]
    assert len(ax.lines) == 5  # a boundary between each pair of blocks
    # the drawn pattern is the nonzero pattern of J_θ z[L] by central differences of the forward pass
    theta = net.pack(p)

    def out(t):
        return net.predict(x, net.unpack(t))
    J_fd = np.stack([(out(theta + 1e-6 * e) - out(theta - 1e-6 * e)) / 2e-6 for e in np.eye(theta.size)], axis=1)
    drawn = np.asarray(ax.images[0].get_array())
    assert drawn.shape == J_fd.shape and np.array_equal(drawn.astype(bool), np.abs(J_fd) > 1e-9)
    path = tmp_path / "spy.png"
    ax.figure.savefig(path, dpi=60)
    assert path.stat().st_size > 1000


def test_torch_network_spy_plot_and_gradient_norms(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 3 * 3, 3))
    X = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2])
    tn = jb.from_torch(m, X, loss=nn.CrossEntropyLoss())
    ax = jb.plot_jacobian(tn, X[0])
    cols, texts, _ = labels(ax)
    assert cols == ["0.weight", "0.bias", "3.weight", "3.bias"] and texts == ["module 0", "module 3"]
    md = m.double()
    params = {k: v.detach() for k, v in md.named_parameters()}
    J = torch.func.jacrev(lambda q: torch.func.functional_call(md, q, (X[:1],))[0])(params)
    Jt = np.concatenate([J[k].reshape(3, -1).numpy() for k in params], axis=1)
    assert np.array_equal(np.asarray(ax.images[0].get_array()).astype(bool), Jt != 0)
    ax.figure.savefig(tmp_path / "spy_torch.png", dpi=60)

    ax = jb.plot_gradient_norms(tn, X, y)
    names = [t.get_text() for t in ax.get_xticklabels()]
    assert names == ["0.weight", "0.bias", "3.weight", "3.bias"]
    md.zero_grad()
    nn.CrossEntropyLoss()(md(X), y).backward()
    heights = [b.get_height() for b in ax.patches]
    ref = [float(np.linalg.norm(p.grad.numpy())) for _, p in md.named_parameters()]
    assert np.allclose(heights, ref, rtol=1e-12)
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["module 0", "module 3"]
    ax.figure.savefig(tmp_path / "norms.png", dpi=60)


def test_bare_matrix_needs_consistent_blocks_and_network_gradient_norms():
    M = np.kron(np.eye(2), np.ones((1, 3)))
    ax = jb.plot_jacobian(M, row_blocks=[("z", 2)], col_blocks=[("W", 4, "layer 1"), ("b", 2, "layer 1")])
    assert labels(ax)[0] == ["W", "b"] and labels(ax)[1] == ["layer 1"]
    with pytest.raises(DataError, match="add up to 5"):
        jb.plot_jacobian(M, col_blocks=[("W", 5)])
    with pytest.raises(DataError, match="Jacobian, a Network"):
        jb.plot_jacobian("J")
    net = jb.Network([jb.Dense(3), jb.Tanh(), jb.Dense(2)], "mse", 2)
    p = net.init_params(0)
    X, Y = np.ones((3, 2)), np.zeros((3, 2))
    ax = jb.plot_gradient_norms(net, X, Y, p, log=False)
    g = net.gradient(X, Y, p)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["W1", "b1", "W2", "b2"]
    assert np.allclose([b.get_height() for b in ax.patches], [np.sqrt(np.sum(g[k] ** 2)) for k in ("W1", "b1", "W2", "b2")])
