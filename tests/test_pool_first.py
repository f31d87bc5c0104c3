"""Networks whose first layers have no parameters (pooling / flatten on the input, then dense), issue #12:
θ is unchanged (it starts at the first parametric layer), a[0] = f[0](x), and J_x z[L] chains through
them.  Checked against torch autograd written here and float64 central differences."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.func import jacrev  # noqa: E402

from jacobian_bp.cli import main  # noqa: E402
from jacobian_bp.engine.network import Network  # noqa: E402
from jacobian_bp.errors import SpecError  # noqa: E402
from jacobian_bp.layers.activations import Tanh  # noqa: E402
from jacobian_bp.layers.dense import Dense  # noqa: E402
from jacobian_bp.layers.flatten import Flatten  # noqa: E402
from jacobian_bp.layers.pooling import AvgPool2d, MaxPool2d  # noqa: E402
from jacobian_bp.layers.vector_activations import Softmax  # noqa: E402
from jacobian_bp.oracles.verify import verify  # noqa: E402
from jacobian_bp.spec import load_spec  # noqa: E402
from jacobian_bp.uses.lazy import BatchJacobianOperator  # noqa: E402

F = torch.nn.functional


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def make(pool, conv):
    return Network([pool(2), Flatten(), Dense(4), Tanh(), Dense(3), Softmax()], "cross_entropy", (1, 6, 6), conv)


def torch_logits(x, W1, b1, W2, b2, pool):
    h = (F.max_pool2d if pool is MaxPool2d else F.avg_pool2d)(x, 2).flatten(1)
    return F.linear(torch.tanh(F.linear(h, W1, b1)), W2, b2)


@pytest.mark.parametrize("pool", [MaxPool2d, AvgPool2d])
@pytest.mark.parametrize("conv", ["pytorch", "damadi"])
def test_pooling_first_against_torch(pool, conv):
    net = make(pool, conv)
    assert net.L == 2 and net.param_names[0] in ("W1", "W2") and len(net.pre) == 2
    p = net.init_params(0)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, 1, 6, 6))
    Y = np.eye(3)[[0, 2, 1]]
    c = net.canonical_params(p)  # canonical = torch layout (W out x in)
    tp = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in c.items()}
    z = torch_logits(torch.tensor(X), tp["W1"], tp["b1"], tp["W2"], tp["b2"], pool)
    per = -(torch.tensor(Y) * torch.log_softmax(z, -1)).sum(-1)
    loss = per.mean() if net.convention.reduction == "mean" else per.sum()
    grads = dict(zip(tp, torch.autograd.grad(loss, list(tp.values()))))
    for method in ("chain", "operator"):
        g = net.gradient(X, Y, p, method=method).canonical
        for k in tp:
            assert rel(g[k], grads[k].numpy()) <= 1e-12, (method, k)
    ps = net.per_sample_gradients(X, Y, p).sum(0) * net.reduce_factor(3)
    assert rel(ps, net.gradient(X, Y, p).vector) <= 1e-13
    # J_x z[L] through the pooling and the flatten, and J_θ z[L], against torch.func.jacrev
    x0 = X[0]
    Jx = jacrev(lambda x: torch_logits(x[None], *(tp[k].detach() for k in ("W1", "b1", "W2", "b2")), pool)[0])(torch.tensor(x0))
    assert rel(net.jacobian_input(x0, p).to_dense(), Jx.numpy().reshape(3, -1)) <= 1e-12
    assert rel(net.batch_jacobian_input(X, p).to_dense()[:3, :36], Jx.numpy().reshape(3, -1)) <= 1e-12
    Jt = net.jacobian_theta(x0, p).to_dense()
    B = BatchJacobianOperator(net, X, p)
    assert rel(B.to_dense()[:3], Jt) <= 1e-14
    v = rng.standard_normal(net.n_params)
    assert rel(B.matvec(v)[:3], Jt @ v) <= 1e-12
    # the chain factors end with J_x a[0]
    factors = net.chain_factors(x0, p, 0)
    assert factors[-1].input.name == "x" and factors[-1].output.name == "a[0]"
    prod = factors[0].to_dense()
    for f in factors[1:]:
        prod = prod @ f.to_dense()
    assert rel(prod, Jx.numpy().reshape(3, -1)) <= 1e-12
    # float64 central differences of the loss in x
    f = lambda x: net.loss_value(x, Y[0], p)  # noqa: E731
    g_x = net.jacobian_input(x0, p).to_dense().T @ net.delta(x0, Y[0], p)
    for j in (0, 7, 20, 35):
        e = np.zeros(36)
        e[j] = 1e-6
        e = e.reshape(x0.shape)
        assert abs((f(x0 + e) - f(x0 - e)) / 2e-6 - g_x.ravel()[j]) <= 1e-7


def test_theta_is_unchanged_by_the_first_layers():
    plain = Network([Dense(4), Tanh(), Dense(3), Softmax()], "cross_entropy", 9, "damadi")
    pooled = Network([AvgPool2d(2), Flatten(), Dense(4), Tanh(), Dense(3), Softmax()], "cross_entropy", (1, 6, 6), "damadi")
    assert plain.param_names == pooled.param_names
    assert [e.user_shape for e in plain.entries] == [e.user_shape for e in pooled.entries]


def test_verify_spec_and_cli(tmp_path, capsys):
    spec = {"input": [1, 6, 6], "layers": [{"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
                                           {"type": "dense", "out_features": 3}, {"type": "softmax"}],
            "data": {"batch": 2}}
    s = load_spec(spec)
    X, Y = s.data()
    rep = verify(s.network, X, Y, s.params())
    assert rep.passed, rep.to_text()
    assert "closed form" in rep.skipped  # the textbook references start with a dense layer on x
    import json

    f = tmp_path / "p.json"
    f.write_text(json.dumps(spec))
    assert main(["verify", str(f)]) == 0
    assert main(["jacobian", str(f), "--wrt", "input", "-o", str(tmp_path / "j.npz")]) == 0
    capsys.readouterr()
    assert main(["latex", str(f), "-o", str(tmp_path / "d.tex")]) == 0
    assert "maxpool2d" in (tmp_path / "d.tex").read_text(encoding="utf-8")


def test_a_network_without_parameters_is_refused():
    with pytest.raises(SpecError, match="first layer must be parametric"):
        Network([Flatten()], "mse", (1, 2, 2))
