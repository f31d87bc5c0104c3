"""jacobian_bp on dask (issue #16): per-sample gradients, batch Jacobian, NTK, Gauss-Newton and
verification over a data set, on a LocalCluster of two worker processes started here.

Oracles: the single-machine functions of the package (the same chunks must give the same bits, the
whole batch agrees to rel <= 1e-14), and J Jᵀ / Jᵀ H J formed in the test from the dense Jacobian.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import BLOCK_DASK_IMPORTS, local_dask_cluster

import jacobian_bp as jb
from jacobian_bp import Dense, MemoryBudgetError, Network, ReLU, Softmax, Tanh
from jacobian_bp.engine import per_sample as ps
from jacobian_bp.layers.conv import Conv2d
from jacobian_bp.layers.flatten import Flatten
from jacobian_bp.layers.residual import Residual
from jacobian_bp.spec import generate_data
from jacobian_bp.uses import curvature as cv

HAVE_DASK = all(importlib.util.find_spec(m) is not None for m in ("dask", "distributed"))
needs_dask = pytest.mark.skipif(not HAVE_DASK, reason="dask and distributed are the optional extra [dask]")


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def mlp(conv="pytorch"):
    return Network([Dense(16), Tanh(), Dense(16), ReLU(), Dense(4), Softmax()], "cross_entropy", (20,), conv,
                   name="mlp-20-16-16-4")


def res_cnn(conv="pytorch"):
    body = [Conv2d(2, 3, padding=1), Tanh(), Conv2d(2, 3, padding=1)]
    return Network([Conv2d(2, 3, padding=1), Tanh(), Residual(body), Tanh(), Flatten(), Dense(3), Softmax()],
                   "cross_entropy", (1, 5, 5), conv, name="res-cnn")


def chunked(f, net, X, Y, params, c):
    """The single-machine function applied chunk by chunk (convention layout), stacked along the samples."""
    last = net.convention.batch_axis == "last"
    N = X.shape[-1] if last else X.shape[0]
    out = []
    for s in range(0, N, c):
        Xc = X[..., s:s + c] if last else X[s:s + c]
        Yc = None if Y is None else (Y[:, s:s + c] if last else Y[s:s + c])
        out.append(f(net, Xc, params) if Y is None else f(net, Xc, Yc, params))
    return out


# ----------------------------------------------------------------------------- the core does not need dask
def test_core_imports_without_dask():
    code = BLOCK_DASK_IMPORTS + (
        "import jacobian_bp, jacobian_bp.cli, jacobian_bp.uses, jacobian_bp.engine.per_sample\n"
        "assert not any(m.split('.')[0] in ('dask', 'distributed', 'zarr') for m in sys.modules)\n"
        "try:\n"
        "    import jacobian_bp.uses.distributed\n"
        "except ModuleNotFoundError as exc:\n"
        "    print('REFUSED:', exc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "REFUSED:" in res.stdout and '.[dask]' in res.stdout


@needs_dask
def test_refusal_on_the_local_scheduler(jd):
    """(Runs before the module's cluster starts: no default client yet.)"""
    net = mlp()
    X, Y = generate_data(net, 64, seed=1)
    p = net.init_params(0)
    import dask

    if jd.active_client() is not None:
        pytest.skip("a default client is active")
    K0 = cv.empirical_ntk(net, X, p).to_dense()  # 256 x 256: 512 KiB
    with dask.config.set(scheduler="threads"), jb.memory_budget(200_000):
        with pytest.raises(MemoryBudgetError):  # refused on one machine under this budget ...
            cv.empirical_ntk(net, X, p).to_dense()
        with pytest.raises(MemoryBudgetError, match=r"empirical NTK block of chunks of 64 samples \(256 x 256.*"
                                                    r"at most \d+ samples per chunk fit"):
            jd.empirical_ntk(net, X, p, chunks=64)
        K = jd.empirical_ntk(net, X, p, chunks=8).compute()  # ... done in chunks on the threaded scheduler
    assert rel(K, K0) <= 1e-14
    with jb.memory_budget(10_000):
        with pytest.raises(MemoryBudgetError, match=r"batch Jacobian of a chunk \(8 x 4 x 676\).*"
                                                    "even one sample per chunk does not fit"):
            jd.batch_jacobian(net, X, p, chunks=8)


# ----------------------------------------------------------------------------- the cluster
@pytest.fixture(scope="module")
def jd():
    pytest.importorskip("dask")
    pytest.importorskip("distributed")
    from jacobian_bp.uses import distributed

    return distributed


@pytest.fixture(scope="module")
def cluster(jd):
    with local_dask_cluster() as (lc, cl):
        yield cl


@pytest.fixture(scope="module")
def data():
    out = {}
    for conv in ("pytorch", "park"):  # batch axis first / last
        net = mlp(conv)
        X, Y = generate_data(net, 96, seed=3)
        out[conv] = (net, X, Y, net.init_params(1))
    return out


# ----------------------------------------------------------------------------- equal to the single machine
@needs_dask
@pytest.mark.parametrize("conv", ["pytorch", "park"])
def test_per_sample_gradients_and_batch_jacobian(cluster, jd, data, conv):
    net, X, Y, p = data[conv]
    G = jd.per_sample_gradients(net, X, Y, p, chunks=40)  # 40, 40, 16: uneven chunks
    assert G.shape == (96, net.n_params) and G.chunks[0] == (40, 40, 16)
    G = G.compute()
    assert np.array_equal(G, np.concatenate(chunked(ps.per_sample_gradients, net, X, Y, p, 40)))
    assert rel(G, ps.per_sample_gradients(net, X, Y, p)) <= 1e-14
    # the network's gradient is r * the sum of the rows
    assert rel(net.reduce_factor(96) * G.sum(0), net.gradient(X, Y, p).vector) <= 1e-13

    J = jd.batch_jacobian(net, X, p, chunks=40).compute()
    parts = [Jc.reshape(-1, net.n_params) for Jc in chunked(ps.batch_jacobian, net, X, None, p, 40)]
    assert np.array_equal(J, np.concatenate(parts))
    assert rel(J, ps.batch_jacobian(net, X, p).reshape(J.shape)) <= 1e-14


@needs_dask
@pytest.mark.parametrize("conv", ["pytorch", "park"])
def test_empirical_ntk_blockwise(cluster, jd, data, conv):
    net, X, Y, p = data[conv]
    c, nL = 40, net.n_out
    K = jd.empirical_ntk(net, X, p, chunks=c).compute()
    K0 = cv.empirical_ntk(net, X, p).to_dense()
    assert K.shape == (96 * nL, 96 * nL)
    assert np.array_equal(K, K.T)
    assert rel(K, K0) <= 1e-14
    for I, Kc in enumerate(chunked(lambda n, x, q: cv.empirical_ntk(n, x, q).to_dense(), net, X, None, p, c)):
        s = slice(I * c * nL, I * c * nL + Kc.shape[0])
        assert np.array_equal(K[s, s], Kc)  # the same chunk gives the same bits
    J = ps.batch_jacobian(net, X, p).reshape(96 * nL, -1)  # independent assembly: J Jᵀ
    assert rel(K, J @ J.T) <= 1e-13


@needs_dask
def test_ntk_and_gauss_newton_products(cluster, jd, data):
    net, X, Y, p = data["park"]  # mean reduction: chunk weights r_N / r_Nc matter
    rng = np.random.default_rng(5)
    u = rng.standard_normal(96 * net.n_out)
    K0 = cv.empirical_ntk(net, X, p).to_dense()
    assert rel(jd.ntk_matvec(net, X, p, u, chunks=40).compute(), K0 @ u) <= 1e-14
    U = rng.standard_normal((96 * net.n_out, 2))
    assert rel(jd.ntk_matvec(net, X, p, U, chunks=40).compute(), K0 @ U) <= 1e-14

    G0 = cv.gauss_newton(net, X, Y, p).to_dense()
    v = rng.standard_normal(net.n_params)
    assert rel(jd.gauss_newton_matvec(net, X, Y, p, v, chunks=40).compute(), G0 @ v) <= 1e-14
    G = jd.gauss_newton(net, X, Y, p, chunks=40).compute()
    assert rel(G, G0) <= 1e-14
    # independent assembly: r Σ_i J_iᵀ H_i J_i with the softmax+CE Hessian diag(ŷ) - ŷŷᵀ
    J = ps.batch_jacobian(net, X, p)
    Yhat = net.forward(X, p).a[-1]
    H = np.stack([np.diag(y) - np.outer(y, y) for y in Yhat])
    assert rel(G, net.reduce_factor(96) * np.einsum("nkp,nkl,nlq->pq", J, H, J)) <= 1e-12


@needs_dask
def test_generic_stages_and_dask_inputs(cluster, jd):
    """Conv and residual stages (no Gram shortcut) with uneven chunks; inputs given as dask arrays."""
    import dask.array as da

    net = res_cnn()
    X, Y = generate_data(net, 11, seed=2)
    p = net.init_params(4)
    K = jd.empirical_ntk(net, da.from_array(X, chunks=3), p, chunks=4).compute()
    assert rel(K, cv.empirical_ntk(net, X, p).to_dense()) <= 1e-14
    G = jd.per_sample_gradients(net, da.from_array(X, chunks=5), da.from_array(Y, chunks=5), p, chunks=4).compute()
    assert np.array_equal(G, np.concatenate(chunked(ps.per_sample_gradients, net, X, Y, p, 4)))


@needs_dask
@pytest.mark.parametrize("conv", ["pytorch", "park"])
def test_verify_dataset(cluster, jd, data, conv):
    net, X, Y, p = data[conv]
    rep = jd.verify_dataset(net, X, Y, p, chunks=40, use_torch=False, fd_max_coords=8, fd_directions=1,
                            progress=False)
    assert rep.verdict == "PASS" and rep.n_samples == 96 and len(rep.chunks) == 3
    assert [(s, n) for s, n, _ in rep.chunks] == [(0, 40), (40, 40), (80, 16)]
    assert rel(rep.gradient, net.gradient(X, Y, p).vector) <= 1e-14
    assert abs(rep.loss - net.loss_value(X, Y, p)) <= 1e-14 * abs(net.loss_value(X, Y, p))
    assert "verdict: PASS" in rep.to_text() and rep.failing() == []


# ----------------------------------------------------------------------------- memory
@needs_dask
def test_larger_than_one_workers_budget(cluster, jd):
    net = mlp()
    X, Y = generate_data(net, 256, seed=7)
    p = net.init_params(2)
    budget = 256 * 1024  # the whole result, 256 x 676 float64 = 1.3 MiB, is over it; a chunk of 32 is not
    built_before = jd.per_sample_gradients(net, X, Y, p, chunks=256)  # checked against the default budget
    jd.set_worker_memory_budget(cluster, budget)
    try:
        assert set(cluster.run(jb.get_memory_budget).values()) == {budget}
        single = cluster.submit(ps.per_sample_gradients, net, X, Y, p, pure=False)
        # (a bare Exception: tblib cannot unpickle a MemoryError subclass; see TaskMemoryBudgetError)
        with pytest.raises(Exception, match="exceeds the memory budget of 256.0 KiB"):
            single.result()
        with pytest.raises(MemoryBudgetError, match="in a task: refusing.*256.0 KiB"):  # the workers' guard
            built_before.compute()
        G = jd.per_sample_gradients(net, X, Y, p, chunks=32).compute()
        assert np.array_equal(G, np.concatenate(chunked(ps.per_sample_gradients, net, X, Y, p, 32)))
        # refused up front, with the chunk size that fits
        with pytest.raises(MemoryBudgetError, match=r"pass a smaller chunks= \(at most (\d+) samples") as info:
            jd.per_sample_gradients(net, X, Y, p, chunks=256)
        fit = int(info.value.args[0].split("at most ")[1].split()[0])
        assert 32 <= fit < 256
        jd.per_sample_gradients(net, X, Y, p, chunks=fit)  # accepted
        with pytest.raises(MemoryBudgetError):
            jd.per_sample_gradients(net, X, Y, p, chunks=fit + 1)
    finally:
        jd.set_worker_memory_budget(cluster, jb.backend.guard.DEFAULT_BUDGET)


# ----------------------------------------------------------------------------- a worker dies
@needs_dask
def test_worker_killed_mid_computation(cluster, jd):
    net = mlp()
    X, Y = generate_data(net, 128, seed=11)
    p = net.init_params(3)
    expected = np.concatenate(chunked(ps.per_sample_gradients, net, X, Y, p, 8))
    # slow the 16 tasks down (a lambda travels by value) so that the kill lands mid-computation
    arr = jd.per_sample_gradients(net, X, Y, p, chunks=8).map_blocks(lambda b: (time.sleep(0.15), b)[1],
                                                                     dtype=float)
    future = cluster.compute(arr)
    deadline = time.time() + 30
    victim = None
    while time.time() < deadline and victim is None:
        busy = [w for w, keys in cluster.processing().items() if keys]
        done = sum(len(v) for v in cluster.has_what().values())
        if busy and done:
            victim = busy[0]
        time.sleep(0.02)
    assert victim is not None, "the computation never got going"
    def kill():  # the worker dies before it can answer: the call's own error is expected
        try:
            cluster.run(os._exit, 1, workers=[victim])
        except Exception:
            pass

    killer = threading.Thread(target=kill)
    killer.start()
    result = future.result(timeout=120)
    killer.join(timeout=60)
    assert future.status == "finished"
    assert np.array_equal(result, expected)
    cluster.wait_for_workers(2, timeout=60)  # the nanny brings the worker back, at a new address
    assert victim not in cluster.scheduler_info()["workers"]


# ----------------------------------------------------------------------------- to disk
@needs_dask
def test_to_zarr_round_trip(cluster, jd, data, tmp_path):
    pytest.importorskip("zarr")
    import dask.array as da

    net, X, Y, p = data["pytorch"]
    K = jd.empirical_ntk(net, X, p, chunks=40)
    path = str(tmp_path / "ntk.zarr")
    assert jd.to_zarr(K, path, progress=False) == path
    assert not os.path.exists(path + ".tmp")
    back = da.from_zarr(path).compute()
    assert np.array_equal(back, K.compute())
    with pytest.raises(jb.DataError, match="exists"):
        jd.to_zarr(K, path)
    jd.to_zarr(K[:8, :8], path, overwrite=True)
    assert np.array_equal(da.from_zarr(path).compute(), back[:8, :8])
    assert sorted(os.listdir(tmp_path)) == ["ntk.zarr"]


@needs_dask
def test_compute_with_progress(cluster, jd, data, capsys):
    net, X, Y, p = data["pytorch"]
    G = jd.per_sample_gradients(net, X, Y, p, chunks=40)
    quiet = jd.compute(G, progress=False)
    assert capsys.readouterr().err == ""
    assert np.array_equal(jd.compute(G, progress=True), quiet)
    assert np.array_equal(quiet, G.compute())  # gathered block by block = dask's own assembly
    a, b = jd.compute(G, G.sum(0), progress=False)
    assert np.array_equal(a, quiet) and b.shape == (net.n_params,)


@needs_dask
def test_bad_arguments(jd, data):
    net, X, Y, p = data["pytorch"]
    with pytest.raises(jb.DataError, match="chunks must be a positive integer"):
        jd.per_sample_gradients(net, X, Y, p, chunks=0)
    with pytest.raises(jb.DataError, match="targets Y are required"):
        jd.per_sample_gradients(net, X, None, p)
    with pytest.raises(jb.ShapeError):
        jd.ntk_matvec(net, X, p, np.ones(3))
    with pytest.raises(jb.DataError):
        jd.per_sample_gradients(net, X, Y, {"W1": 1})
