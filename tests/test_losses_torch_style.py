"""Torch-style losses: integer class labels, losses on logits (no Softmax/Sigmoid layer), MSE that says what it
computes and follows the convention when bound, top-level exports.  Oracle: torch.nn.functional in float64."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import jacobian_bp as jb  # noqa: E402
from jacobian_bp.errors import DataError, SpecError  # noqa: E402
from jacobian_bp.layers.losses import make_loss  # noqa: E402


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


rng = np.random.default_rng(0)
Z = rng.standard_normal((5, 4)) * 3
LABELS = np.array([0, 3, 1, 1, 2])


def torch_grad(fn, Z):
    t = torch.tensor(Z, requires_grad=True)
    v = fn(t)
    (g,) = torch.autograd.grad(v, t)
    return float(v.detach()), g.numpy()


@pytest.mark.parametrize("loss", [jb.CrossEntropy(from_logits=True), make_loss("cross_entropy_logits"),
                                  make_loss("ce_logits"), make_loss("cross_entropy", from_logits=True)])
def test_cross_entropy_on_logits_with_integer_labels_equals_torch(loss):
    assert isinstance(loss, jb.CrossEntropyLogits) and loss.from_logits
    v_t, g_t = torch_grad(lambda t: F.cross_entropy(t, torch.tensor(LABELS), reduction="sum"), Z)
    assert rel(loss.value(LABELS, Z).sum(), v_t) <= 1e-12
    assert rel(loss.grad_yhat(LABELS, Z), g_t) <= 1e-12
    onehot = np.eye(4)[LABELS]
    assert rel(loss.value(onehot, Z), loss.value(LABELS, Z)) == 0.0
    # stable far out: logits of ±1000 (softmax of the raw logits would overflow)
    big = np.array([[1000.0, 0.0, -1000.0, 5.0]])
    v_t, g_t = torch_grad(lambda t: F.cross_entropy(t, torch.tensor([1]), reduction="sum"), big)
    assert rel(loss.value(np.array([1]), big), v_t) <= 1e-12 and rel(loss.grad_yhat(np.array([1]), big), g_t) <= 1e-12


def test_cross_entropy_on_probabilities_accepts_integer_labels():
    P = np.exp(Z) / np.exp(Z).sum(-1, keepdims=True)
    ce = jb.CrossEntropy()
    v_t = float(F.nll_loss(torch.log(torch.tensor(P)), torch.tensor(LABELS), reduction="none").sum())
    assert rel(ce.value(LABELS, P).sum(), v_t) <= 1e-12
    assert rel(ce.value(LABELS[0], P[0]), ce.value(np.eye(4)[LABELS[0]], P[0])) == 0.0  # one sample: a 0-d label
    with pytest.raises(DataError, match="0..3"):
        ce.value(np.array([0, 4, 1, 1, 2]), P)


def test_bce_with_logits_equals_torch():
    Y = rng.integers(0, 2, Z.shape).astype(float)
    for loss in (jb.BCE(from_logits=True), make_loss("bce_logits"), jb.BCEWithLogits()):
        assert isinstance(loss, jb.BCEWithLogits)
        v_t, g_t = torch_grad(lambda t: F.binary_cross_entropy_with_logits(t, torch.tensor(Y), reduction="sum"), Z)
        assert rel(loss.value(Y, Z).sum(), v_t) <= 1e-12 and rel(loss.grad_yhat(Y, Z), g_t) <= 1e-12
    big = np.array([[800.0, -800.0]])
    v_t, g_t = torch_grad(lambda t: F.binary_cross_entropy_with_logits(t, torch.tensor([[0.0, 1.0]]), reduction="sum"), big)
    assert rel(jb.BCEWithLogits().value(np.array([[0.0, 1.0]]), big), v_t) <= 1e-12


def _net_and_torch(loss, y_torch, reduction_torch):
    """A Dense network with no output activation, its gradient vs torch's F loss on the same logits."""
    net = jb.Network([jb.Dense(5), jb.Tanh(), jb.Dense(4)], loss, 3, convention="pytorch")
    p = net.init_params(1)
    X = rng.standard_normal((6, 3))
    W1, b1, W2, b2 = (torch.tensor(p[k], requires_grad=True) for k in ("W1", "b1", "W2", "b2"))
    logits = torch.tanh(torch.tensor(X) @ W1.T + b1) @ W2.T + b2
    total = reduction_torch(logits, y_torch)
    grads = torch.autograd.grad(total, [W1, b1, W2, b2])
    return net, p, X, float(total.detach()), dict(zip(("W1", "b1", "W2", "b2"), (g.numpy() for g in grads)))


def test_network_with_logits_losses_matches_torch_mean():
    labels = rng.integers(0, 4, 6)
    net, p, X, v_t, g_t = _net_and_torch(jb.CrossEntropy(from_logits=True), torch.tensor(labels), F.cross_entropy)
    Y = np.eye(4)[labels]  # the engine takes one-hot rows (integer labels: through jb.from_torch or the loss itself)
    assert net.matched  # the closed-form delta softmax(z) - y, no Softmax layer
    assert rel(net.loss_value(X, Y, p), v_t) <= 1e-12
    g = net.gradient(X, Y, p)
    assert all(rel(g[k], g_t[k]) <= 1e-12 for k in g_t)
    Yb = rng.integers(0, 2, (6, 4)).astype(float)
    conv = jb.get_convention("pytorch").replace(reduction="mean_elements")
    net = jb.Network([jb.Dense(5), jb.Tanh(), jb.Dense(4)], "bce_logits", 3, convention=conv)
    _, p, X, v_t, g_t = _net_and_torch("bce_logits", torch.tensor(Yb), F.binary_cross_entropy_with_logits)
    assert rel(net.loss_value(X, Yb, p), v_t) <= 1e-12
    assert all(rel(net.gradient(X, Yb, p)[k], g_t[k]) <= 1e-12 for k in g_t)


def test_verify_runs_torch_on_logits_losses():
    net = jb.Network([jb.Dense(4), jb.Sigmoid(), jb.Dense(3)], "ce_logits", 2)
    p = net.init_params(0)
    X = rng.standard_normal((4, 2))
    Y = np.eye(3)[[0, 2, 1, 1]]
    r = jb.verify(net, X, Y, p)
    assert r.passed and "torch autograd" in r.methods


def test_mse_says_what_it_computes_and_follows_a_bound_convention():
    mse = jb.MSE()
    assert "1·Σ" in repr(mse) and "sum over the n outputs" in repr(mse) and "not bound" in repr(mse)
    bound = mse.bind_convention(jb.get_convention("pytorch"))
    assert bound.reduce_outputs == "mean" and bound.scale == 1.0 and mse.reduce_outputs == "sum"  # a copy
    assert "1/n·Σ" in repr(bound) and "from convention 'pytorch'" in repr(bound)
    stated = jb.MSE(scale=0.5).bind_convention(jb.get_convention("pytorch"))
    assert stated.scale == 0.5 and stated.reduce_outputs == "mean" and "scale 0.5: stated" in repr(stated)
    # bound under pytorch: torch's MSELoss (mean over N·n)
    Y, P = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    v_t = float(F.mse_loss(torch.tensor(P), torch.tensor(Y)))
    assert rel(bound.value(Y, P).mean(), v_t) <= 1e-12
    net_str = jb.Network([jb.Dense(3)], "mse", 2, convention="pytorch")
    net_obj = jb.Network([jb.Dense(3)], bound, 2, convention="pytorch")
    X = rng.standard_normal((5, 2))
    q = net_str.init_params(0)
    assert net_str.loss_value(X, Y, q) == net_obj.loss_value(X, Y, q)


def test_bad_loss_options_refused():
    with pytest.raises(SpecError, match="from_logits"):
        jb.CrossEntropy(from_logits="yes")
    with pytest.raises(SpecError, match="unsupported torch loss"):
        jb.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2)), torch.randn(1, 2), loss=torch.nn.NLLLoss())
    with pytest.raises(SpecError, match="label_smoothing"):
        jb.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2)), torch.randn(1, 2),
                      loss=torch.nn.CrossEntropyLoss(label_smoothing=0.1))


def test_every_layer_class_is_a_top_level_name():
    from jacobian_bp.layers.registry import all_layer_classes

    for cls in all_layer_classes().values():
        assert getattr(jb, cls.__name__) is cls
    for name in ("Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "LayerNorm", "BatchNorm1dEval", "GELU", "Residual"):
        assert name in jb.__all__ and isinstance(getattr(jb, name), type)
    from jacobian_bp import Conv2d  # noqa: F401  (import form too)
