"""Batch normalization in training mode (``batch_norm``): the layer that couples the samples (issue #13 item 2).

Oracles, all independent of the Jacobian machinery: PyTorch autograd with torch's own modules
(``nn.BatchNorm1d`` in ``train()`` inside hand-written models, ``F.batch_norm(training=True)``,
``torch.func.jacrev`` over the whole batch), the closed form of Ioffe & Szegedy written in plain NumPy
(:mod:`jacobian_bp.oracles.batch_norm_reference`), float64 central differences, SymPy's ``Matrix.jacobian``.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from jacobian_bp.engine.conventions import PRESETS  # noqa: E402
from jacobian_bp.errors import DataError, ShapeError, SpecError, UnsupportedInputError  # noqa: E402
from jacobian_bp.layers import layer_class  # noqa: E402
from jacobian_bp.oracles import batch_norm_reference as ref  # noqa: E402
from jacobian_bp.spec import load_spec  # noqa: E402

BN = layer_class("batch_norm")


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _t(v):
    return torch.tensor(np.asarray(v, dtype=float), dtype=torch.float64)


def _layer(n=4, N=5, seed=0, **kw):
    layer = BN(**kw)
    layer.build((n,))
    rng = np.random.default_rng(seed)
    p = layer.init_params(rng)
    A = rng.standard_normal((N, n)) * rng.uniform(0.5, 2.0, n) + rng.standard_normal(n)
    return layer, p, A


def _functional(mod):
    """A copy of ``mod`` for ``torch.func`` transforms, without the in-place updates of the running buffers (what
    ``torch.func.replace_all_batch_norm_modules_`` does; training mode still normalizes with the batch statistics)."""
    import copy

    m = copy.deepcopy(mod)
    for sub in m.modules():
        if isinstance(sub, torch.nn.BatchNorm1d):
            sub.running_mean = sub.running_var = sub.num_batches_tracked = None
            sub.track_running_stats = False
    return m.train()


def _module(layer, p, n):
    m = torch.nn.BatchNorm1d(n, eps=layer.eps, affine=layer.affine, dtype=torch.float64)
    if layer.affine:
        with torch.no_grad():
            m.weight.copy_(_t(p["gamma"]))
            m.bias.copy_(_t(p["beta"]))
    return m.train()


# ---------------------------------------------------------------------------- the layer against torch and the closed form
@pytest.mark.parametrize("kw, n, N", [(kw, shape[0], N) for kw, shape, N in BN.batch_protocol_examples()] + [({"eps": 1e-3}, 2, 7)])
def test_layer_forward_batch_jacobian_and_backward_against_torch_and_closed_form(kw, n, N):
    layer, p, A = _layer(n, N, **kw)
    O = layer.forward(A, p)
    mod = _module(layer, p, n)
    assert _rel(O, mod(_t(A)).detach().numpy()) <= 1e-13
    # the full batch Jacobian (N·n × N·n, sample-major) by jacrev over the whole batch, through nn.BatchNorm1d.train()
    fmod = _functional(mod)
    want = torch.func.jacrev(lambda a: fmod(a).reshape(-1))(_t(A))
    want = want.reshape(N * n, N * n).detach().numpy()
    J = layer.batch_jac_input(A, O, p)
    assert _rel(J.to_dense(), want) <= 1e-12
    assert _rel(J.to_sparse().toarray(), want) <= 1e-12
    assert _rel(J.to_dense(), ref.batch_jacobian_entrywise(A, p.get("gamma"), layer.eps)) <= 1e-12
    assert J.nnz == N * N * n and np.count_nonzero(want) <= J.nnz
    # off-diagonal sample blocks: nonzero, diagonal over the features, equal to torch's
    for i, k in [(0, 1), (N - 1, 0)]:
        blk = J.sample_block(i, k).to_dense()
        assert np.linalg.norm(blk) > 1e-3
        assert _rel(blk, want[i * n:(i + 1) * n, k * n:(k + 1) * n]) <= 1e-12
        assert np.count_nonzero(blk - np.diag(np.diag(blk))) == 0
    # backward: the layer's batch VJP = torch autograd = the paper's chain rule term by term
    rng = np.random.default_rng(7)
    G = rng.standard_normal((N, n))
    ta = _t(A).requires_grad_(True)
    out = mod(ta)
    (gA,) = torch.autograd.grad((out * _t(G)).sum(), ta, retain_graph=True)
    dX, dgamma, dbeta = ref.backward(G, A, p.get("gamma"), layer.eps)
    assert _rel(layer.vjp_input(A, O, G, p), gA.numpy()) <= 1e-12
    assert _rel(dX, gA.numpy()) <= 1e-12
    assert _rel(layer.vjp_input(A, O, G, p).ravel(), want.T @ G.ravel()) <= 1e-12
    if layer.affine:
        gg, gb = torch.autograd.grad((out * _t(G)).sum(), [mod.weight, mod.bias])
        vp = layer.vjp_params(A, O, G, p)
        assert _rel(vp["gamma"], gg.numpy()) <= 1e-12 and _rel(vp["gamma"], dgamma) <= 1e-12
        assert _rel(vp["beta"], gb.numpy()) <= 1e-12 and _rel(vp["beta"], dbeta) <= 1e-12
    # forward mode and one step of Algorithm 1 at the batch level
    T = rng.standard_normal((N, n))
    assert _rel(layer.jvp_input(A, O, T, p).ravel(), want @ T.ravel()) <= 1e-12
    Pm = rng.standard_normal((3, N * n))
    assert _rel(layer.batch_left_jac_input(A, O, Pm, p), Pm @ want) <= 1e-12


def test_layer_parameter_jacobians_against_torch_and_central_differences():
    layer, p, A = _layer(4, 5)
    O = layer.forward(A, p)
    mod = _functional(_module(layer, p, 4))
    names = {"gamma": "weight", "beta": "bias"}
    for local, Jop in layer.batch_jac_params(A, O, p).items():
        params = dict(mod.named_parameters())

        def f(v, local=local):
            return torch.func.functional_call(mod, {**params, names[local]: v}, (_t(A),)).reshape(-1)

        want = torch.func.jacrev(f)(_t(p[local])).detach().numpy()
        assert Jop.shape == (20, 4)
        assert _rel(Jop.to_dense(), want) <= 1e-12
        h = 1e-6
        fd = np.stack([(layer.forward(A, {**p, local: p[local] + h * e}) - layer.forward(A, {**p, local: p[local] - h * e})).ravel()
                       / (2 * h) for e in np.eye(4)], axis=1)
        assert _rel(Jop.to_dense(), fd) <= 1e-8
    dparams = {"gamma": np.arange(4.0), "beta": -np.ones(4)}
    jv = layer.jvp_params(A, O, dparams, p).ravel()
    full = sum(J.to_dense() @ dparams[k] for k, J in layer.batch_jac_params(A, O, p).items())
    assert _rel(jv, full) <= 1e-13


def test_batch_jacobian_against_central_differences_and_sympy():
    layer, p, A = _layer(3, 4, eps=0.01)
    O = layer.forward(A, p)
    h = 1e-6
    fd = np.stack([(layer.forward(A + h * e.reshape(A.shape), p) - layer.forward(A - h * e.reshape(A.shape), p)).ravel() / (2 * h)
                   for e in np.eye(A.size)], axis=1)
    assert _rel(layer.batch_jac_input(A, O, p).to_dense(), fd) <= 1e-7
    # exact: SymPy's Jacobian of the defining formula on a symbolic batch (N = 3, n = 2), simplified to zero
    sl = BN(eps=0.5)
    sl.build((1,))
    a = sympy.Matrix(3, 1, sympy.symbols("a1:4", real=True))
    Z = sl.sympy_batch(a)
    JS = Z.reshape(3, 1).jacobian(list(a))
    params = {"gamma": np.array(sympy.symbols("gamma_1:2", real=True), dtype=object),
              "beta": np.array(sympy.symbols("beta_1:2", real=True), dtype=object)}
    Jop = sl.batch_jac_input(np.array(a.tolist(), dtype=object), None, params).to_sympy()
    assert all(sympy.simplify(v) == 0 for v in (JS - Jop))
    assert sympy.simplify(Jop[0, 1]) != 0  # the samples are coupled, exactly


def test_the_classic_mistake_is_wrong():
    """Dropping the mean terms (statistics taken as constants) is not the training-mode gradient."""
    layer, p, A = _layer(4, 6)
    G = np.random.default_rng(3).standard_normal((6, 4))
    mod = _module(layer, p, 4)
    ta = _t(A).requires_grad_(True)
    (gA,) = torch.autograd.grad((mod(ta) * _t(G)).sum(), ta)
    naive = ref.naive_input_gradient(G, A, p["gamma"], layer.eps)
    assert _rel(naive, gA.numpy()) > 0.1
    # the true gradient sums to zero over the batch (a shift of every sample does not change the output); the naive one does not
    assert np.max(np.abs(gA.numpy().sum(axis=0))) <= 1e-12
    assert np.max(np.abs(naive.sum(axis=0))) > 1e-2
    # the naive map is block-diagonal: exactly the diagonal of the true batch Jacobian minus the coupling terms
    J = layer.batch_jac_input(A, layer.forward(A, p), p).to_dense()
    assert _rel(naive.ravel(), J.T @ G.ravel()) > 0.1


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_running_statistics_as_torch_updates_its_buffers(momentum):
    layer, p, A = _layer(4, 5, momentum=momentum)
    mod = torch.nn.BatchNorm1d(4, momentum=momentum, dtype=torch.float64).train()
    mod(_t(A))
    m, v = layer.running_statistics(A)
    assert _rel(m, mod.running_mean.numpy()) <= 1e-13 and _rel(v, mod.running_var.numpy()) <= 1e-13
    m2, v2 = ref.running_update(A, np.zeros(4), np.ones(4), momentum)
    assert _rel(m, m2) <= 1e-13 and _rel(v, v2) <= 1e-13
    # unbiased in the buffer, biased in the output
    assert not np.allclose(v, (1 - (momentum or 1.0)) + (momentum or 1.0) * A.var(axis=0))


# ---------------------------------------------------------------------------- bad input
def test_batch_of_one_is_refused_like_torch():
    layer, p, A = _layer(4, 5)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        _module(layer, p, 4)(_t(A[:1]))
    with pytest.raises(DataError, match="Expected more than 1 value per channel when training") as exc:
        layer.forward(A[:1], p)
    assert "\n" not in str(exc.value) and "batch_norm" in str(exc.value)
    net = _net("pytorch", batch=1).network
    s = _net("pytorch", batch=1)
    X, Y = s.data()
    for call in (lambda: net.gradient(X, Y, s.params()), lambda: net.gradient(X, Y, s.params(), method="operator"),
                 lambda: net.loss_value(X, Y, s.params())):
        with pytest.raises(DataError, match="N >= 2"):
            call()


def test_bad_arguments():
    for kw, what in [({"eps": 0}, "eps"), ({"eps": "1e-5"}, "eps"), ({"eps": float("nan")}, "eps"),
                     ({"affine": "yes"}, "affine"), ({"momentum": 1.5}, "momentum"), ({"momentum": True}, "momentum")]:
        with pytest.raises(SpecError, match=what):
            BN(**kw)
    with pytest.raises(ShapeError, match="flat input"):
        BN().build((2, 3))
    spec = {"input": 4, "layers": [{"type": "dense", "out_features": 3},
                                   {"type": "residual", "body": [{"type": "dense", "out_features": 3}, {"type": "batch_norm"}]},
                                   {"type": "dense", "out_features": 2}, {"type": "softmax"}], "loss": "cross_entropy"}
    with pytest.raises(UnsupportedInputError, match="inside a composite block"):
        load_spec(spec)


# ---------------------------------------------------------------------------- networks
def _spec(preset, batch=4, last=False):
    if last:
        layers = [{"type": "dense", "out_features": 5}, {"type": "tanh"}, {"type": "dense", "out_features": 3},
                  {"type": "batch_norm", "eps": 0.01}]
        loss = "mse"
    else:
        layers = [{"type": "dense", "out_features": 5}, {"type": "batch_norm"}, {"type": "tanh"},
                  {"type": "dense", "out_features": 3}, {"type": "softmax"}]
        loss = "cross_entropy"
    return {"input": 4, "layers": layers, "loss": loss, "convention": preset, "data": {"seed": 3, "batch": batch},
            "params": {"seed": 4}}


def _net(preset, batch=4, last=False):
    return load_spec(_spec(preset, batch, last))


class _TorchNet(torch.nn.Module):
    """dense → BatchNorm1d (train) → tanh → dense, written with torch's modules (our parameters copied in)."""

    def __init__(self, canon, eps=1e-5):
        super().__init__()
        self.l1 = torch.nn.Linear(4, 5, dtype=torch.float64)
        self.bn = torch.nn.BatchNorm1d(5, eps=eps, dtype=torch.float64)
        self.l2 = torch.nn.Linear(5, 3, dtype=torch.float64)
        with torch.no_grad():
            self.l1.weight.copy_(_t(canon["W1"]))
            self.l1.bias.copy_(_t(canon["b1"]))
            self.bn.weight.copy_(_t(canon["gamma2"]))
            self.bn.bias.copy_(_t(canon["beta2"]))
            self.l2.weight.copy_(_t(canon["W3"]))
            self.l2.bias.copy_(_t(canon["b3"]))
        self.train()

    def forward(self, x):
        return self.l2(torch.tanh(self.bn(self.l1(x))))


_TORCH_NAME = {"W1": "l1.weight", "b1": "l1.bias", "gamma2": "bn.weight", "beta2": "bn.bias", "W3": "l2.weight", "b3": "l2.bias"}


def _setup(preset, batch=4):
    s = _net(preset, batch)
    net = s.network
    X, Y = s.data()
    params = s.params()
    Xb, Yb, _ = net.as_batch(X, Y)
    canon = net.canonical_params(params)
    return net, X, Y, params, np.asarray(Xb, float), np.asarray(Yb, float), canon, _TorchNet(canon)


def _theta_columns(net, per_tensor: dict) -> np.ndarray:
    """Columns in the convention's θ order from torch Jacobians ``(rows, *canonical shape)``."""
    rows = next(iter(per_tensor.values())).shape[0]
    cols = np.zeros((rows, net.n_params))
    for e in net.entries:
        Jt = per_tensor[e.name]
        if e.order == "F":
            Jt = Jt.transpose(0, *reversed(range(1, Jt.ndim)))
        cols[:, e.slice] = Jt.reshape(rows, -1)
    return cols


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_network_gradient_chain_and_operator_against_torch_module(preset):
    net, X, Y, params, Xb, Yb, canon, model = _setup(preset)
    assert net.couples_samples
    Z = model(_t(Xb))
    per = -(_t(Yb) * torch.log_softmax(Z, dim=-1)).sum(-1)
    total = per.sum() * net.reduce_factor(Xb.shape[0])
    grads = dict(zip(_TORCH_NAME, torch.autograd.grad(total, [dict(model.named_parameters())[v] for v in _TORCH_NAME.values()])))
    whole = np.concatenate([v.numpy().ravel() for v in grads.values()])
    for method in ("chain", "operator"):
        g = net.gradient(X, Y, params, method=method)
        for k in _TORCH_NAME:
            err = np.linalg.norm(g.canonical[k] - grads[k].numpy())
            assert err <= 1e-12 * max(np.linalg.norm(grads[k].numpy()), np.linalg.norm(whole)), (method, k)
        # the bias right before batch norm has no effect (the batch mean removes it): its gradient is rounding noise
        assert np.linalg.norm(g.canonical["b1"]) <= 1e-14 * np.linalg.norm(whole)
    assert abs(net.loss_value(X, Y, params) - total.item()) <= 1e-12 * abs(total.item())


@pytest.mark.parametrize("preset", ["pytorch", "damadi", "park"])
def test_full_batch_jacobians_against_jacrev_over_the_whole_batch(preset):
    net, X, Y, params, Xb, Yb, canon, model = _setup(preset, batch=5)
    model = _functional(model)
    N, K, d = 5, net.n_out, 4
    pnames = dict(model.named_parameters())
    Jt = torch.func.jacrev(lambda ps: torch.func.functional_call(model, ps, (_t(Xb),)).reshape(-1))(pnames)
    want_theta = _theta_columns(net, {k: Jt[v].detach().numpy() for k, v in _TORCH_NAME.items()})
    JT = net.batch_jacobian_theta(X, params)
    assert JT.shape == (N * K, net.n_params) and JT.couples_samples
    assert _rel(JT.to_dense(), want_theta) <= 1e-12
    assert _rel(JT.to_sparse().toarray(), want_theta) <= 1e-12
    assert _rel(JT.block(2).to_dense(), want_theta[2 * K:3 * K]) <= 1e-12
    assert _rel(JT.block(net.entries[0].space.name).to_dense(), want_theta[:, net.entries[0].slice]) <= 1e-12
    want_x = torch.func.jacrev(lambda v: model(v).reshape(-1))(_t(Xb)).reshape(N * K, N * d).detach().numpy()
    JX = net.batch_jacobian_input(X, params)
    assert JX.shape == (N * K, N * d)
    assert _rel(JX.to_dense(), want_x) <= 1e-12
    norms = JX.block_norms()
    assert np.all(norms > 1e-3)  # every off-diagonal block is nonzero: not block-diagonal
    for i, k in [(0, 1), (3, 2), (4, 4)]:
        assert _rel(JX.block(i, k).to_dense(), want_x[i * K:(i + 1) * K, k * d:(k + 1) * d]) <= 1e-12
    # the batch left products of the explicit chain: P[0] is the same matrix
    assert _rel(net.batch_left_products(X, params, need_input=True)[0], want_x) <= 1e-12


def test_batch_norm_as_the_last_stage_and_as_an_activation():
    s = _net("pytorch", 3, last=True)
    net, (X, Y), params = s.network, s.data(), s.params()
    canon = net.canonical_params(params)
    tp = {k: _t(v).requires_grad_(True) for k, v in canon.items()}

    def logits(tp, x):
        h = torch.tanh(F.linear(x, tp["W1"], tp["b1"]))
        return F.batch_norm(F.linear(h, tp["W2"], tp["b2"]), None, None, tp["gamma3"], tp["beta3"], training=True, eps=0.01)

    Z = logits(tp, _t(X))
    c = net.loss.scale / (3 if net.loss.reduce_outputs == "mean" else 1)
    total = (c * ((Z - _t(Y)) ** 2).sum(-1)).sum() * net.reduce_factor(3)
    grads = dict(zip(tp, torch.autograd.grad(total, list(tp.values()))))
    whole = np.linalg.norm(np.concatenate([v.numpy().ravel() for v in grads.values()]))
    for method in ("chain", "operator"):
        g = net.gradient(X, Y, params, method=method).canonical
        for k in tp:
            assert np.linalg.norm(g[k] - grads[k].numpy()) <= 1e-12 * max(np.linalg.norm(grads[k].numpy()), whole), (method, k)
        assert np.linalg.norm(g["b2"]) <= 1e-14 * whole  # removed by the batch mean
    want = torch.func.jacrev(lambda v: logits({k: t.detach() for k, t in tp.items()}, v).reshape(-1))(_t(X)).reshape(9, 12).numpy()
    assert _rel(net.batch_jacobian_input(X, params).to_dense(), want) <= 1e-12


def test_an_uncoupled_network_batch_jacobians_are_the_per_sample_ones():
    spec = {"input": 4, "layers": [{"type": "dense", "out_features": 5}, {"type": "layer_norm"}, {"type": "tanh"},
                                   {"type": "dense", "out_features": 3}, {"type": "softmax"}], "loss": "cross_entropy",
            "convention": "damadi", "data": {"seed": 1, "batch": 3}, "params": {"seed": 2}}
    s = load_spec(spec)
    net, (X, Y), p = s.network, s.data(), s.params()
    assert not net.couples_samples
    Xb = np.asarray(net.as_batch(X)[0])
    JT = net.batch_jacobian_theta(X, p)
    assert not JT.couples_samples
    stacked = np.vstack([net.jacobian_theta(Xb[i], p).to_dense() for i in range(3)])
    assert _rel(JT.to_dense(), stacked) <= 1e-14
    assert _rel(JT.block(1).to_dense(), stacked[3:6]) <= 1e-14
    JX = net.batch_jacobian_input(X, p)
    norms = JX.block_norms()
    assert np.all(norms[~np.eye(3, dtype=bool)] == 0) and np.all(np.diag(norms) > 0)
    for i in range(3):
        assert _rel(JX.block(i, i).to_dense(), net.jacobian_input(Xb[i], p).to_dense()) <= 1e-14
        assert not np.any(JX.block(i, (i + 1) % 3).to_dense())
    with pytest.raises(DataError, match="the columns are the parameters"):
        JT.block(0, 1)
    with pytest.raises(DataError, match="0..2"):
        JX.block(3, 0)


def test_per_sample_routes_refuse_in_one_line():
    from jacobian_bp.engine import per_sample
    from jacobian_bp.uses import curvature

    net, X, Y, params, Xb, Yb, canon, model = _setup("pytorch")
    x0 = Xb[0]
    calls = {
        "per_sample_gradients": lambda: net.per_sample_gradients(X, Y, params),
        "per_sample.per_sample_gradients": lambda: per_sample.per_sample_gradients(net, X, Y, params),
        "jacobian_theta": lambda: net.jacobian_theta(x0, params),
        "jacobian_input": lambda: net.jacobian_input(x0, params),
        "layer_jacobian": lambda: net.layer_jacobian(x0, params, 1),
        "chain_factors": lambda: net.chain_factors(x0, params, 1),
        "local_jacobian": lambda: net.local_jacobian(x0, params, 1),
        "left_products": lambda: net.left_products(net.forward(X, params), canon),
        "require_renderable": lambda: net.require_renderable("latex"),
        "jacobian_columns": lambda: curvature.jacobian_columns(curvature.linearize(net, X, params), [], net.entries),
    }
    for name, call in calls.items():
        with pytest.raises(UnsupportedInputError) as exc:
            call()
        msg = str(exc.value)
        assert "\n" not in msg and "couple the samples" in msg and "batch_jacobian_theta" in msg, name
    # the per-sample NTK/GGN of one sample: a batch of one, refused with torch's statement
    with pytest.raises(DataError, match="Expected more than 1 value per channel"):
        curvature.empirical_ntk(net, x0, params)
    with pytest.raises(DataError, match="Expected more than 1 value per channel"):
        curvature.gauss_newton(net, x0, Yb[0], params)


def test_curvature_and_lazy_operators_of_a_coupled_batch():
    from jacobian_bp.engine.per_sample import batch_jacobian
    from jacobian_bp.uses import curvature
    from jacobian_bp.uses.lazy import BatchJacobianOperator

    net, X, Y, params, Xb, Yb, canon, model = _setup("pytorch", batch=4)
    model = _functional(model)
    pnames = dict(model.named_parameters())
    Jt = torch.func.jacrev(lambda ps: torch.func.functional_call(model, ps, (_t(Xb),)).reshape(-1))(pnames)
    J = _theta_columns(net, {k: Jt[v].detach().numpy() for k, v in _TORCH_NAME.items()})  # (N K, P)
    assert _rel(batch_jacobian(net, X, params).reshape(J.shape), J) <= 1e-12
    lazy = BatchJacobianOperator(net, X, params)
    rng = np.random.default_rng(0)
    v, u = rng.standard_normal(net.n_params), rng.standard_normal(J.shape[0])
    assert _rel(lazy.matvec(v), J @ v) <= 1e-12 and _rel(lazy.rmatvec(u), J.T @ u) <= 1e-12
    assert _rel(lazy.to_dense(), J) <= 1e-12
    K = curvature.empirical_ntk(net, X, params)
    assert _rel(K.to_dense(), J @ J.T) <= 1e-12 and _rel(K.matvec(u), J @ (J.T @ u)) <= 1e-12
    # GGN of the batch loss: J^T blockdiag(H_i) J with torch's Hessian of the reduced loss w.r.t. Z[L]
    Z = model(_t(Xb)).detach()

    def loss_of_z(z):
        return -(_t(Yb) * torch.log_softmax(z, dim=-1)).sum() * net.reduce_factor(4)

    H = torch.func.hessian(loss_of_z)(Z).reshape(12, 12).numpy()
    G = curvature.gauss_newton(net, X, Y, params)
    assert _rel(G.to_dense(), J.T @ H @ J) <= 1e-12
    assert _rel(G.matvec(v), J.T @ (H @ (J @ v))) <= 1e-12


def test_verify_and_torch_oracle_pass_on_a_coupled_network():
    from jacobian_bp.oracles.verify import verify

    s = _net("ganev", 4)
    rep = verify(s.network, *s.data(), s.params())
    assert rep.passed, rep.to_text()
    assert "torch autograd" in rep.methods


def test_from_torch_module():
    m = torch.nn.BatchNorm1d(3, eps=1e-3, momentum=0.2, dtype=torch.float64).train()
    with torch.no_grad():
        m.weight.copy_(_t([1.0, 2.0, 3.0]))
    kw, p = BN.from_torch_module(m, (3,))
    assert kw == {"eps": 1e-3, "affine": True, "momentum": 0.2}
    assert p["gamma"].dtype == np.float64 and list(p["gamma"]) == [1.0, 2.0, 3.0] and not np.any(p["beta"])
    layer = BN(**kw)
    layer.build((3,))
    A = np.random.default_rng(0).standard_normal((4, 3))
    assert _rel(layer.forward(A, p), m(_t(A)).detach().numpy()) <= 1e-13
    with pytest.raises(UnsupportedInputError, match="batch_norm_eval"):
        BN.from_torch_module(m.eval(), (3,))
    # without running statistics torch normalizes with the batch statistics even in eval()
    m2 = torch.nn.BatchNorm1d(3, track_running_stats=False, affine=False, dtype=torch.float64).eval()
    kw2, p2 = BN.from_torch_module(m2, 3)
    assert kw2["affine"] is False and p2 == {}
    with pytest.raises(ShapeError, match="BatchNorm1d"):
        BN.from_torch_module(m.train(), (4,))
    with pytest.raises(UnsupportedInputError, match="BatchNorm1d"):
        BN.from_torch_module(torch.nn.LayerNorm(3), (3,))


def test_per_sample_protocol_methods_refuse_and_symbolic_batches_are_numeric_only():
    layer, p, A = _layer(3, 4)
    assert BN.protocol_examples() == []  # the per-sample protocol does not apply (tests/test_layer_protocol.py)
    for call in (lambda: layer.jac_input(A[0], None, p), lambda: layer.jac_params(A[0], None, p),
                 lambda: layer.left_jac_input(A, None, np.zeros((4, 1, 3)), p), lambda: layer.sympy_vector(list(A[0]))):
        with pytest.raises(UnsupportedInputError, match="couple the samples"):
            call()
    s = load_spec({"input": 2, "layers": [{"type": "dense", "out_features": 2}, {"type": "batch_norm"},
                                          {"type": "dense", "out_features": 2}, {"type": "softmax"}],
                   "loss": "cross_entropy", "data": {"seed": 0, "batch": 2}, "params": {"seed": 1}})
    net, (X, Y), params = s.network, s.data(), s.params()
    params["W1"] = np.array(sympy.Matrix(2, 2, sympy.symbols("w1:5", real=True)).tolist(), dtype=object)
    for call in (lambda: net.batch_jacobian_theta(X, params), lambda: net.batch_jacobian_input(X, params)):
        with pytest.raises(UnsupportedInputError, match="numeric only"):
            call()


def test_a_convolutional_network_with_batch_norm_after_flatten():
    """conv → relu → maxpool → flatten → batch_norm → tanh → dense: every route against tests/torch_twin.py (F.* functions)."""
    import os
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    import torch_twin

    spec = {"input": [1, 5, 5], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3}, {"type": "relu"},
                                           {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"}, {"type": "batch_norm"},
                                           {"type": "tanh"}, {"type": "dense", "out_features": 3}, {"type": "softmax"}],
            "loss": "cross_entropy", "convention": "damadi", "data": {"seed": 1, "batch": 4}, "params": {"seed": 2}}
    s = load_spec(spec)
    net, (X, Y), params = s.network, s.data(), s.params()
    theta = net.pack(params)
    _, want = torch_twin.loss_and_gradient(net, X, Y, theta)
    for method in ("chain", "operator"):
        assert _rel(net.gradient(X, Y, params, method=method).vector, want) <= 1e-12
    Xb, _ = torch_twin.batch_first(net, X)
    tt = torch.tensor(theta)
    Jt = torch.func.jacrev(lambda th: torch_twin.forward(net, th, Xb, upto_logits=True)[0].reshape(-1))(tt).numpy()
    assert _rel(net.batch_jacobian_theta(X, params).to_dense(), Jt) <= 1e-12
    Jx = torch.func.jacrev(lambda v: torch_twin.forward(net, tt, v, upto_logits=True)[0].reshape(-1))(Xb).numpy()
    assert _rel(net.batch_jacobian_input(X, params).to_dense(), Jx.reshape(12, -1)) <= 1e-12
