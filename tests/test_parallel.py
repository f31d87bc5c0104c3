"""Threaded materialization (jacobian_bp.backend.parallel) and the outer-product kernel (jacobian_bp.backend.kernels).

Oracles: the serial materialization (one thread), NumPy's broadcast multiply, and an
independent torch.func.jacrev Jacobian where torch is installed."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import jacobian_bp as jb
from jacobian_bp.backend import operators as ops
from jacobian_bp.backend.kernels import KERNEL_MIN_SIZE as GER_MIN_SIZE, outer_into
from jacobian_bp.backend.parallel import MIN_PARALLEL_BYTES, parallel_for, run_tasks

from conftest import example


def test_set_num_threads_validates_and_restores():
    old = jb.get_num_threads()
    for bad in (0, -1, 1.5, "2", True, None):
        with pytest.raises(ValueError, match="positive integer"):
            jb.set_num_threads(bad)
    with jb.num_threads(3):
        assert jb.get_num_threads() == 3
    assert jb.get_num_threads() == old


def test_env_var_sets_the_default(monkeypatch):
    from jacobian_bp.backend import parallel

    monkeypatch.setenv("JACOBIAN_BP_NUM_THREADS", "3")
    assert parallel._default_threads() == 3
    monkeypatch.setenv("JACOBIAN_BP_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="JACOBIAN_BP_NUM_THREADS"):
        parallel._default_threads()
    monkeypatch.setenv("JACOBIAN_BP_NUM_THREADS", "0")
    with pytest.raises(ValueError, match="JACOBIAN_BP_NUM_THREADS"):
        parallel._default_threads()


@pytest.mark.parametrize("rows,cols", [(30, 784), (3, 5), (1, GER_MIN_SIZE + 7), (200, 100)])
def test_outer_into_equals_the_broadcast_product_bitwise(rows, cols):
    rng = np.random.default_rng(rows * cols)
    p, a = rng.standard_normal(rows), rng.standard_normal(cols)
    out = np.full((rows, cols), np.nan)
    outer_into(out, p, a)
    assert np.array_equal(out, p[:, None] * a[None, :])


@pytest.mark.parametrize("kernel", ["jit", "ger", "numpy"])
def test_every_outer_product_kernel_writes_the_same_bits(monkeypatch, kernel):
    from jacobian_bp.backend import kernels

    if kernel == "jit":
        pytest.importorskip("numba")
        monkeypatch.setattr(kernels, "_jit_outer", None)
        assert kernels.jit_kernel_available()
    else:
        monkeypatch.setattr(kernels, "_jit_outer", False)
        monkeypatch.setattr(kernels, "_controllable", kernel == "ger")
        if kernel == "ger":
            pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(7)
    p, a = rng.standard_normal(300), rng.standard_normal(784)
    big = np.full((2, 300, 784), np.nan)
    outer_into(big[1], p, a)
    assert np.array_equal(big[1], p[:, None] * a[None, :]) and np.all(np.isnan(big[0]))


def test_jit_kernel_can_be_switched_off(monkeypatch):
    from jacobian_bp.backend import kernels

    monkeypatch.setattr(kernels, "_jit_outer", None)
    monkeypatch.setenv("JACOBIAN_BP_JIT", "0")
    assert not kernels.jit_kernel_available()


def test_outer_into_without_threadpoolctl_stays_in_numpy(monkeypatch):
    from jacobian_bp.backend import kernels

    calls = []
    monkeypatch.setattr(kernels, "_jit_outer", False)
    monkeypatch.setattr(kernels, "_controllable", False)
    monkeypatch.setattr(kernels, "_ger", lambda *a, **k: calls.append(1))
    rng = np.random.default_rng(2)
    p, a = rng.standard_normal(30), rng.standard_normal(784)
    out = np.empty((30, 784))
    outer_into(out, p, a)
    assert calls == [] and np.array_equal(out, p[:, None] * a)


def test_outer_into_on_a_strided_view_and_bad_shape():
    rng = np.random.default_rng(1)
    p, a = rng.standard_normal(40), rng.standard_normal(600)
    big = np.full((40, 1200), 7.0)
    view = big[:, ::2]  # not contiguous: the NumPy path
    outer_into(view, p, a)
    assert np.array_equal(view, np.outer(p, a)) and np.all(big[:, 1::2] == 7.0)
    with pytest.raises(ValueError, match=r"expected out of shape \(40, 600\), received \(40, 650\)"):
        outer_into(np.empty((40, 650)), p, a)


def test_parallel_for_runs_every_item_once_and_raises_worker_errors():
    seen, lock = [], threading.Lock()

    def record(i):
        with lock:
            seen.append(i)

    with jb.num_threads(2):
        parallel_for(record, range(50), MIN_PARALLEL_BYTES)
    assert sorted(seen) == list(range(50))

    def boom(i):
        if i == 40:  # in the second chunk: raised on a worker thread
            raise RuntimeError("item 40 failed")

    with jb.num_threads(2), pytest.raises(RuntimeError, match="item 40 failed"):
        parallel_for(boom, range(50), MIN_PARALLEL_BYTES)
    seen.clear()
    with jb.num_threads(2):  # the worker that raised still serves later regions
        parallel_for(record, range(10), MIN_PARALLEL_BYTES)
    assert sorted(seen) == list(range(10))
    with pytest.raises(ValueError, match="do not add up"):
        with jb.num_threads(2):
            parallel_for(record, range(5), MIN_PARALLEL_BYTES, bounds=[2, 2])


def test_nested_parallel_regions_run_serially_without_deadlock():
    inner_threads = []

    def outer(i):
        parallel_for(lambda j: inner_threads.append(threading.current_thread().name), range(4), MIN_PARALLEL_BYTES)

    with jb.num_threads(2):
        parallel_for(outer, range(4), MIN_PARALLEL_BYTES)
    assert len(inner_threads) == 16


def test_run_tasks_balances_by_size_and_keeps_order_within_runs():
    order = []
    tasks = [(c, (lambda k: lambda: order.append(k))(k)) for k, c in enumerate([10**6, 1, 1, 10**6, 5])]
    with jb.num_threads(2):
        run_tasks(tasks)
    assert sorted(order) == [0, 1, 2, 3, 4]
    with jb.num_threads(1):
        order.clear()
        run_tasks(tasks)
    assert order == [0, 1, 2, 3, 4]


def _dense_with(threads, J):
    with jb.num_threads(threads):
        return J.to_dense()


def test_lenet_jacobian_is_identical_on_one_and_two_threads():
    net, p, x, _ = example("lenet-300-100")
    J1 = _dense_with(1, net.jacobian_theta(x, p))
    J2 = _dense_with(2, net.jacobian_theta(x, p))
    assert J1.shape == (10, 266610)
    assert np.array_equal(J1, J2)
    # the blocks agree with their own structured products, materialized without the fast path
    for b, o0, o1 in zip(net.jacobian_theta(x, p).blocks, *_offsets(net)):
        M = b.op.factors[0].value() if isinstance(b.op, ops.Product) else None
        if M is not None and isinstance(b.op.factors[1], ops.Kron):
            ref = np.kron(M, b.op.factors[1].B.to_dense()) if isinstance(b.op.factors[1].A, ops.Identity) else None
            if ref is not None:
                assert np.array_equal(J1[:, o0:o1], ref)


def _offsets(net):
    starts = [e.offset for e in net.entries]
    return starts, [e.offset + e.size for e in net.entries]


def test_batch_jacobian_is_identical_on_one_and_two_threads_and_matches_per_sample():
    net, p, _, _ = example("damadi-2layer")
    X = np.random.default_rng(3).standard_normal((40, 4))
    B1 = _dense_with(1, net.batch_jacobian_theta(X, p))
    with jb.num_threads(2):
        from jacobian_bp.backend import parallel

        old = parallel.MIN_PARALLEL_BYTES
        parallel.MIN_PARALLEL_BYTES = 0  # force the threaded path on this small batch
        try:
            B2 = net.batch_jacobian_theta(X, p).to_dense()
        finally:
            parallel.MIN_PARALLEL_BYTES = old
    assert np.array_equal(B1, B2)
    for i in (0, 17, 39):
        # the batch forms its left products with batched BLAS: equal up to rounding
        np.testing.assert_allclose(B1[3 * i:3 * i + 3], net.jacobian_theta(X[i], p).to_dense(), rtol=1e-13, atol=1e-15)


def test_lenet_jacobian_matches_torch_jacrev():
    torch = pytest.importorskip("torch")
    net, p, x, _ = example("lenet-300-100")
    with jb.num_threads(2):
        J = net.jacobian_theta(x, p).to_dense()
    canon = net.canonical_params(p)
    names = [e.name for e in net.entries]
    tp = [torch.tensor(canon[k]) for k in names]

    def f(*ps):
        d = dict(zip(names, ps))
        h = torch.relu(d["W1"] @ torch.tensor(x) + d["b1"])
        h = torch.relu(d["W2"] @ h + d["b2"])
        return d["W3"] @ h + d["b3"]

    jac = torch.func.jacrev(f, argnums=tuple(range(len(names))))(*tp)
    for e, blk in zip(net.entries, jac):
        ref = blk.reshape(10, -1).numpy()
        if e.order == "F":
            ref = blk.permute(0, 2, 1).reshape(10, -1).numpy() if blk.ndim == 3 else ref
        np.testing.assert_allclose(J[:, e.offset:e.offset + e.size], ref, rtol=1e-12, atol=1e-13)


def test_more_threads_than_before_grow_the_workers_and_agree(monkeypatch):
    from jacobian_bp.backend import parallel

    net, p, _, _ = example("damadi-3layer")
    X = np.random.default_rng(4).standard_normal((25, net.input_shape[0]))
    serial = _dense_with(1, net.batch_jacobian_theta(X, p))
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    for n in (2, 3, 5):
        assert np.array_equal(_dense_with(n, net.batch_jacobian_theta(X, p)), serial)


def test_idle_workers_do_not_keep_the_result_alive(monkeypatch):
    import gc
    import weakref

    from jacobian_bp.backend import parallel

    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    net, p, _, _ = example("damadi-2layer")
    X = np.random.default_rng(6).standard_normal((12, 4))
    with jb.num_threads(2):
        M = net.batch_jacobian_theta(X, p).to_dense()
    ref = weakref.ref(M)
    del M
    gc.collect()
    assert ref() is None
