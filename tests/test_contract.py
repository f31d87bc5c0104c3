"""The contract: every case of ``tests/cases.py`` (registered layer × preset × backend) against the
independent oracles — PyTorch autograd through ``tests/torch_twin.py`` (not the package's own oracle) and
float64 central differences.  Tolerance rel ≤ 1e-10 against torch, 1e-6 against central differences.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.dirname(__file__))

import cases as case_data  # noqa: E402
import torch_twin  # noqa: E402

from jacobian_bp.oracles import reference  # noqa: E402
from jacobian_bp.spec import load_spec  # noqa: E402

CASES = case_data.cases()


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def test_every_registered_layer_has_a_case():
    missing = case_data.registered_layers() - set(case_data.CONTEXTS)
    assert not missing, f"registered layers without a contract case (add them to tests/cases.py CONTEXTS): {sorted(missing)}"


def test_cases_cover_every_preset_and_backend():
    from jacobian_bp.engine.conventions import PRESETS

    assert {c.preset for c in CASES} == set(PRESETS)
    assert {c.backend for c in CASES} == set(case_data.BACKENDS)


def _twin_supports(net) -> bool:
    try:
        theta = net.pack(net.init_params(0))
        x = np.zeros(net.input_shape)
        torch_twin.jacobian_theta(net, x, theta)
        return True
    except NotImplementedError:
        return False


def _zL(net, x, theta) -> np.ndarray:
    return np.asarray(net.forward(x, net.unpack(theta)).z[-1][0], dtype=float)


def _fd_jacobian(f, v: np.ndarray, h: float = 1e-6) -> np.ndarray:
    cols = []
    for k in range(v.size):
        e = np.zeros_like(v)
        e.flat[k] = h
        cols.append((f(v + e) - f(v - e)) / (2 * h))
    return np.stack(cols, axis=-1).reshape(-1, v.size)


def _against_central_differences(case, net, X, Y, params, theta):
    """Layers the torch twin does not know (composite blocks): float64 central differences of the network's
    own forward pass and loss — independent of the Jacobian machinery — at rel ≤ 1e-6."""
    if case.backend in ("chain", "operator", "per_sample"):
        want = reference.central_differences(lambda t: net.loss_value(X, Y, net.unpack(t)), theta, h=1e-6)
        if case.backend == "per_sample":
            factor = net.reduce_factor(int(np.shape(net.as_batch(X)[0])[0]))
            got = net.per_sample_gradients(X, Y, params).sum(axis=0) * factor
        else:
            got = net.gradient(X, Y, params, method=case.backend).vector
        assert _rel(got, want) <= 1e-6
        return
    x = X if np.ndim(X) == len(net.input_shape) else np.asarray(net.as_batch(X)[0])[0]
    if case.backend == "dense_input":
        got = net.jacobian_input(x, params).to_dense()
        want = _fd_jacobian(lambda v: _zL(net, v, theta), np.asarray(x, float))
    else:
        J = net.jacobian_theta(x, params)
        got = J.to_dense() if case.backend == "dense_theta" else J.to_sparse().toarray()
        want = _fd_jacobian(lambda t: _zL(net, x, t), theta)
    assert got.shape == want.shape
    assert _rel(got, want) <= 1e-6


def _check_full_gradient(case, net, X, Y, params, theta):
    """``chain`` / ``operator`` backends: the gradient against torch's autograd (rel <= 1e-10), and torch's
    gradient against float64 central differences of the loss on five entries of θ."""
    got = net.gradient(X, Y, params, method=case.backend).vector
    _, want = torch_twin.loss_and_gradient(net, X, Y, theta)
    assert _rel(got, want) <= 1e-10
    idx = np.random.default_rng(0).choice(theta.size, size=min(5, theta.size), replace=False)
    fd = reference.central_differences(lambda t: net.loss_value(X, Y, net.unpack(t)), theta, h=1e-6, indices=idx)[idx]
    assert np.max(np.abs(fd - want[idx])) <= 1e-6 * max(np.max(np.abs(want)), 1e-8)


def _coupled_case(case, s):
    """A network with a layer that couples the samples (``couples_samples``: batch norm in training mode).

    A batch of one is refused by the package and by torch alike; on a batch of 3 the gradient (chain, operator)
    is compared with torch autograd, the per-sample routes must refuse in one line, and the *batch* Jacobians
    ``J_θ vec Z[L]`` and ``J_vec X vec Z[L]`` (off-diagonal blocks included) are compared with ``torch.func.jacrev``
    over the whole batch; the per-sample backend instead checks the rows ``(J_θ z_i)ᵀ δ_i`` of the batch Jacobian
    against torch's gradient of each ``ℓ_i`` computed in the batch.
    """
    from jacobian_bp.engine.per_sample import batch_jacobian
    from jacobian_bp.errors import DataError, UnsupportedInputError

    net = s.network
    if case.batch < 2:
        X1, Y1 = s.data()
        p1 = s.params()
        with pytest.raises(DataError, match="Expected more than 1 value per channel when training"):
            net.gradient(X1, Y1, p1)
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):  # torch's own refusal
            torch_twin.loss_and_gradient(net, X1, Y1, net.pack(p1))
        spec = case.spec()
        spec["data"] = {"seed": 1, "batch": 3}
        s = load_spec(spec)
        net = s.network
    X, Y = s.data()
    params = s.params()
    theta = net.pack(params)
    Xb, Yb = torch_twin.batch_first(net, X, Y)
    N = Xb.shape[0]
    tt = torch.tensor(theta, dtype=torch.float64)
    x0 = X[0] if net.convention.batch_axis == "first" else np.moveaxis(np.asarray(X), -1, 0)[0]
    if case.backend in ("chain", "operator"):
        _check_full_gradient(case, net, X, Y, params, theta)
    elif case.backend == "per_sample":
        with pytest.raises(UnsupportedInputError, match="couple the samples"):
            net.per_sample_gradients(X, Y, params)
        J = batch_jacobian(net, X, params)  # (N, n_L, |θ|): J_θ z_i[L] of the whole batch
        D = net.delta(X, Y, params)
        t = tt.clone().requires_grad_(True)
        Z, Yhat = torch_twin.forward(net, t, Xb)
        per = torch_twin.per_sample_loss(net, Z, Yhat, Yb)
        for i in range(N):
            (gi,) = torch.autograd.grad(per[i], t, retain_graph=True)
            assert _rel(J[i].T @ D[i], gi.numpy()) <= 1e-10, f"sample {i}"
    elif case.backend in ("dense_theta", "sparse_theta"):
        with pytest.raises(UnsupportedInputError, match="couple the samples"):
            net.jacobian_theta(x0, params)
        JB = net.batch_jacobian_theta(X, params)
        got = JB.to_dense() if case.backend == "dense_theta" else JB.to_sparse().toarray()
        want = torch.func.jacrev(lambda th: torch_twin.forward(net, th, Xb, upto_logits=True)[0].reshape(-1))(tt).numpy()
        assert got.shape == want.shape == (N * net.n_out, net.n_params)
        assert _rel(got, want) <= 1e-10
    else:  # dense_input: the full batch Jacobian, not block-diagonal
        with pytest.raises(UnsupportedInputError, match="couple the samples"):
            net.jacobian_input(x0, params)
        JX = net.batch_jacobian_input(X, params)
        want = torch.func.jacrev(lambda v: torch_twin.forward(net, tt, v, upto_logits=True)[0].reshape(-1))(Xb)
        want = want.reshape(N * net.n_out, -1).numpy()
        assert _rel(JX.to_dense(), want) <= 1e-10
        d = int(np.prod(net.input_shape))
        off = JX.block(0, 1).to_dense()
        assert np.linalg.norm(off) > 1e-3 * np.linalg.norm(want)  # the samples are coupled
        assert _rel(off, want[:net.n_out, d:2 * d]) <= 1e-10


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_against_the_oracles(case):
    if case.layer not in case_data.registered_layers():
        pytest.skip(f"layer {case.layer!r} is not registered in this build")
    s = load_spec(case.spec())
    net = s.network
    if getattr(net, "couples_samples", False):
        _coupled_case(case, s)
        return
    X, Y = s.data()
    params = s.params()
    theta = net.pack(params)
    if not _twin_supports(net):
        _against_central_differences(case, net, X, Y, params, theta)
        return
    if case.backend in ("chain", "operator"):
        _check_full_gradient(case, net, X, Y, params, theta)
    elif case.backend == "per_sample":
        rows = net.per_sample_gradients(X, Y, params)
        Xb, Yb = torch_twin.batch_first(net, X, Y)
        Xb, Yb = np.asarray(Xb), np.asarray(Yb)
        for i in range(rows.shape[0]):
            _, want = torch_twin.loss_and_gradient(net, Xb[i], Yb[i], theta)
            assert _rel(rows[i], want) <= 1e-10, f"sample {i}"
    else:
        x = X if np.ndim(X) == len(net.input_shape) else np.asarray(torch_twin.batch_first(net, X)[0])[0]
        if case.backend == "dense_input":
            got = net.jacobian_input(x, params).to_dense()
            xt = torch.tensor(x, dtype=torch.float64)
            tt = torch.tensor(theta, dtype=torch.float64)
            want = torch.func.jacrev(lambda v: torch_twin.forward(net, tt, v[None], upto_logits=True)[0][0])(xt)
            want = want.reshape(net.n_out, -1).numpy()
        else:
            J = net.jacobian_theta(x, params)
            got = J.to_dense() if case.backend == "dense_theta" else J.to_sparse().toarray()
            want = torch_twin.jacobian_theta(net, x, theta)
        assert got.shape == want.shape
        assert _rel(got, want) <= 1e-10
