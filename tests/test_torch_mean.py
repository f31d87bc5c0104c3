"""PyTorch's default loss reductions (issue #12): ``reduction="mean_elements"`` reproduces
``nn.MSELoss()``, ``nn.BCELoss()`` (means over all N·K elements) and ``nn.CrossEntropyLoss()`` with
probability targets (mean over N), checked against those torch modules themselves; and the
``pytorch`` preset is pinned as it is (MSELoss and CrossEntropyLoss exactly, BCELoss times K)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jacobian_bp.engine.conventions import PRESETS, reduction_factor  # noqa: E402
from jacobian_bp.engine.network import Network  # noqa: E402
from jacobian_bp.errors import SpecError  # noqa: E402
from jacobian_bp.layers.activations import IdentityActivation, Sigmoid, Tanh  # noqa: E402
from jacobian_bp.layers.dense import Dense  # noqa: E402
from jacobian_bp.layers.vector_activations import Softmax  # noqa: E402
from jacobian_bp.spec import load_spec  # noqa: E402

F = torch.nn.functional
TORCH_MEAN = PRESETS["pytorch"].replace(reduction="mean_elements")
K = 3


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def data(loss, N=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 4))
    if loss == "cross_entropy":
        Y = rng.dirichlet(np.ones(K), size=N)  # probability targets
    elif loss == "bce":
        Y = rng.uniform(0, 1, size=(N, K))
    else:
        Y = rng.standard_normal((N, K))
    return X, Y


LAST = {"mse": IdentityActivation, "bce": Sigmoid, "cross_entropy": Softmax}
MODULE = {"mse": torch.nn.MSELoss, "bce": torch.nn.BCELoss, "cross_entropy": torch.nn.CrossEntropyLoss}


def torch_loss_and_grad(net, p, X, Y, loss):
    c = net.canonical_params(p)
    tp = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in c.items()}
    z = F.linear(torch.tanh(F.linear(torch.tensor(X), tp["W1"], tp["b1"])), tp["W2"], tp["b2"])
    out = {"mse": z, "bce": torch.sigmoid(z), "cross_entropy": z}[loss]  # CrossEntropyLoss takes logits
    value = MODULE[loss]()(out, torch.tensor(Y))  # the module's own default reduction="mean"
    grads = dict(zip(tp, torch.autograd.grad(value, list(tp.values()))))
    return float(value.detach()), {k: g.numpy() for k, g in grads.items()}


@pytest.mark.parametrize("loss", ["mse", "bce", "cross_entropy"])
@pytest.mark.parametrize("method", ["chain", "operator"])
def test_mean_elements_is_torch_default(loss, method):
    net = Network([Dense(5), Tanh(), Dense(K), LAST[loss]()], loss, 4, TORCH_MEAN)
    p = net.init_params(0)
    X, Y = data(loss)
    value, grads = torch_loss_and_grad(net, p, X, Y, loss)
    assert abs(net.loss_value(X, Y, p) - value) <= 1e-12 * abs(value)
    g = net.gradient(X, Y, p, method=method).canonical
    for k in grads:
        assert rel(g[k], grads[k]) <= 1e-12, k
    # float64 central differences agree too
    theta = net.pack(p)
    gv = net.gradient(X, Y, p, method=method).vector
    f = lambda t: net.loss_value(X, Y, net.unpack(t))  # noqa: E731
    for j in (0, 11, theta.size - 1):
        e = np.zeros_like(theta)
        e[j] = 1e-6
        assert abs((f(theta + e) - f(theta - e)) / 2e-6 - gv[j]) <= 1e-8


@pytest.mark.parametrize("loss", ["mse", "bce", "cross_entropy"])
def test_pytorch_preset_unchanged(loss):
    """The pytorch preset (reduction="mean", MSE averaged over the outputs) equals MSELoss() and
    CrossEntropyLoss(); for BCE it is the batch mean of per-sample sums, K times BCELoss()."""
    net = Network([Dense(5), Tanh(), Dense(K), LAST[loss]()], loss, 4, "pytorch")
    p = net.init_params(0)
    X, Y = data(loss)
    value, _ = torch_loss_and_grad(net, p, X, Y, loss)
    expected = value * (K if loss == "bce" else 1)
    assert abs(net.loss_value(X, Y, p) - expected) <= 1e-12 * abs(expected)


def test_reduction_factor_and_knob_validation():
    net = Network([Dense(K), Sigmoid()], "bce", 2, TORCH_MEAN)
    assert reduction_factor(TORCH_MEAN, net.loss, 4, K) == 1 / (4 * K) == net.reduce_factor(4)
    mse_sum = Network([Dense(K)], "mse", 2, TORCH_MEAN.replace(mse_reduce_outputs="sum"))
    assert mse_sum.reduce_factor(4) == 1 / (4 * K)
    assert Network([Dense(K)], "mse", 2, TORCH_MEAN).reduce_factor(4) == 1 / 4  # the MSE already averages its K outputs
    with pytest.raises(SpecError, match="reduction must be one of"):
        PRESETS["pytorch"].replace(reduction="average")
    s = load_spec({"input": 2, "layers": [{"type": "dense", "out_features": 3}, {"type": "sigmoid"}], "loss": "bce",
                   "convention": {"preset": "pytorch", "reduction": "mean_elements"}})
    assert s.network.reduce_factor(2) == 1 / 6
