"""Hardening of the materialization back end (issue #11): interrupts during threaded writes,
per-context thread count and memory budget, bounded worker threads, BLAS threads under
``set_num_threads(1)``, and networks deeper than Python's recursion limit.

Oracles: the serial materialization (one thread) bit for bit, the exact values a task
function is known to write, ``threadpoolctl.threadpool_info()`` for BLAS thread counts, and
float64 central differences of the network output for the deep network."""
from __future__ import annotations

import queue
import random
import signal
import sys
import threading
import time

import numpy as np
import pytest

import jacobian_bp as jb
from jacobian_bp.backend import operators as ops
from jacobian_bp.backend import parallel
from jacobian_bp.errors import MemoryBudgetError
from jacobian_bp.backend.parallel import MIN_PARALLEL_BYTES, parallel_for

from conftest import example

_main_only = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                reason="signals are delivered to the main thread")


class _SigintTrap:
    """Install a SIGINT handler that raises KeyboardInterrupt only while ``armed`` (so a late
    signal can never escape the test), and records whether it fired."""

    def __init__(self):
        self.armed = False
        self.fired = threading.Event()

    def _handler(self, signum, frame):
        if self.armed:
            self.armed = False
            self.fired.set()
            raise KeyboardInterrupt

    def __enter__(self):
        self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        self.armed = False
        signal.signal(signal.SIGINT, self._old)


def _interrupt_main():
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


# ----------------------------------------------------------------------------- 1. interrupts
@_main_only
def test_interrupt_while_waiting_for_workers_never_leaks_into_the_next_region():
    """The interrupt lands while the caller waits for a worker's chunk (the old shared outbox then
    kept the worker's late completion and the next region returned before its worker wrote)."""
    with _SigintTrap() as trap, jb.num_threads(2):
        out = np.zeros(2)

        def slow_worker(i):
            if i == 1:  # the worker's chunk: interrupt the caller, then finish late
                trap.armed = True
                _interrupt_main()
                assert trap.fired.wait(30)  # returns as soon as the handler ran; 30 s for a loaded machine
                time.sleep(0.05)
            out[i] = 1.0

        with pytest.raises(KeyboardInterrupt):
            parallel_for(slow_worker, [0, 1], MIN_PARALLEL_BYTES)
        # the interrupted region waited for its worker: nothing is still being written
        assert out.tolist() == [1.0, 1.0]
        for _ in range(3):
            res = np.zeros(2)

            def write(i):
                if i == 1:
                    time.sleep(0.02)  # the worker's part is the slow one
                res[i] = i + 10.0

            parallel_for(write, [0, 1], MIN_PARALLEL_BYTES)
            assert res.tolist() == [10.0, 11.0]


def test_interrupt_in_the_callers_chunk_waits_for_the_workers():
    """A KeyboardInterrupt raised by the caller's own chunk reaches the caller only after the
    workers' chunks are done, and the next region is exact."""
    done = []
    with jb.num_threads(3):
        def fn(i):
            if i == 0:
                raise KeyboardInterrupt
            time.sleep(0.03)
            done.append(i)

        with pytest.raises(KeyboardInterrupt):
            parallel_for(fn, [0, 1, 2], MIN_PARALLEL_BYTES)
        assert sorted(done) == [1, 2]
        res = np.zeros(3)

        def write(i):
            time.sleep(0.01 * i)
            res[i] = i

        parallel_for(write, [0, 1, 2], MIN_PARALLEL_BYTES)
        assert res.tolist() == [0.0, 1.0, 2.0]


def test_region_that_outlives_the_settle_time_gets_fresh_workers(monkeypatch):
    """If the chunks of an interrupted region do not finish in time the pool is discarded: the
    next region runs on new threads and is exact."""
    monkeypatch.setattr(parallel, "SETTLE_SECONDS", 0.05)
    release = threading.Event()
    with jb.num_threads(2):
        def fn(i):
            if i == 0:
                raise KeyboardInterrupt
            release.wait(5)

        with pytest.raises(KeyboardInterrupt):
            parallel_for(fn, [0, 1], MIN_PARALLEL_BYTES)
        old_pool = parallel._pool
        res = np.zeros(2)
        parallel_for(lambda i: res.__setitem__(i, 7.0 + i), [0, 1], MIN_PARALLEL_BYTES)
        assert res.tolist() == [7.0, 8.0]
        assert parallel._pool is not None and parallel._pool is not old_pool
    release.set()


@_main_only
def test_lenet_to_dense_after_random_interrupts_is_always_exact(monkeypatch):
    """Ctrl-C at random moments of a threaded LeNet-300-100 J_θ z[L] materialization, 30 times:
    every following materialization equals the serial reference bit for bit.  The worker's slabs
    are slowed down (as on a loaded machine), so many interrupts land while the caller waits."""
    net, p, x, _ = example("lenet-300-100")
    with jb.num_threads(1):
        ref = net.jacobian_theta(x, p).to_dense()
    real_outer = ops.outer_into

    def slow_on_workers(*a):
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.0005)
        real_outer(*a)

    monkeypatch.setattr(ops, "outer_into", slow_on_workers)
    spans = []
    with jb.num_threads(2):
        for _ in range(5):
            Jk = net.jacobian_theta(x, p)
            t0 = time.perf_counter()
            Jk.to_dense()
            spans.append(time.perf_counter() - t0)
    span = sorted(spans)[2]
    rng = random.Random(11)
    interrupted = 0
    with _SigintTrap() as trap, jb.num_threads(2):
        for _ in range(30):
            Jk = net.jacobian_theta(x, p)  # fresh left chains: the interrupt may hit their evaluation too
            timer = threading.Timer(rng.uniform(0.0, span), _interrupt_main)
            timer.start()
            try:
                trap.armed = True  # a signal before this line or after the call is ignored
                Jk.to_dense()
                trap.armed = False
            except KeyboardInterrupt:
                interrupted += 1
            finally:
                trap.armed = False
                timer.join()
            assert np.array_equal(net.jacobian_theta(x, p).to_dense(), ref)
    assert interrupted >= 3  # the interrupts did land


# ----------------------------------------------------------------------------- 2. process-global state
def test_memory_budget_block_in_one_thread_does_not_limit_another():
    entered, checked = threading.Event(), threading.Event()
    outcome = {}

    def small_budget_thread():
        with jb.memory_budget(64):
            entered.set()
            checked.wait(5)
            try:
                ops.Dense(np.ones((10, 10))).to_dense()
            except MemoryBudgetError:
                outcome["small"] = "refused"

    t = threading.Thread(target=small_budget_thread)
    t.start()
    assert entered.wait(5)
    try:
        assert jb.get_memory_budget() != 64
        M = ops.Dense(np.arange(100.0).reshape(10, 10)).to_dense()  # 800 bytes > 64: must not be refused here
        assert np.array_equal(M, np.arange(100.0).reshape(10, 10))
    finally:
        checked.set()
        t.join()
    assert outcome == {"small": "refused"}


def test_memory_budget_block_overrides_and_restores_the_process_budget():
    from jacobian_bp.backend import guard

    old = jb.get_memory_budget()
    try:
        jb.set_memory_budget(10**6)
        with jb.memory_budget(100):
            assert jb.get_memory_budget() == 100
            with pytest.raises(MemoryBudgetError, match="100 B"):
                ops.Dense(np.ones((4, 4))).to_dense()
        assert jb.get_memory_budget() == 10**6
        with pytest.raises(jb.DataError, match="positive integer"):
            with jb.memory_budget(0):
                pass
    finally:
        jb.set_memory_budget(old)
    assert guard.get_memory_budget() == old


def test_memory_budget_of_the_caller_applies_in_worker_threads(monkeypatch):
    """Tasks run on pool workers see the caller's context (budget) and thread count."""
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    seen = []
    with jb.num_threads(2), jb.memory_budget(12345):
        parallel_for(lambda i: seen.append((threading.current_thread().name, jb.get_memory_budget())), [0, 1], 0)
    assert sorted(b for _, b in seen) == [12345, 12345]
    assert any(name.startswith("jacobian_bp-") for name, _ in seen)


def test_num_threads_block_is_local_to_its_thread():
    entered, checked = threading.Event(), threading.Event()
    inner = {}

    def other():
        with jb.num_threads(5):
            inner["n"] = jb.get_num_threads()
            entered.set()
            checked.wait(5)

    before = jb.get_num_threads()
    t = threading.Thread(target=other)
    t.start()
    assert entered.wait(5)
    try:
        assert jb.get_num_threads() == before
    finally:
        checked.set()
        t.join()
    assert inner["n"] == 5


def test_thread_count_is_capped_with_a_clear_error(monkeypatch):
    cap = parallel.MAX_THREADS
    for bad in (cap + 1, 1000):
        with pytest.raises(jb.DataError, match=rf"at most MAX_THREADS = {cap}.*received {bad}"):
            jb.set_num_threads(bad)
        with pytest.raises(jb.DataError, match=rf"at most MAX_THREADS = {cap}"):
            with jb.num_threads(bad):
                pass
    monkeypatch.setattr(parallel, "_num_threads", None)
    monkeypatch.setenv("JACOBIAN_BP_NUM_THREADS", "1000")
    with pytest.raises(jb.DataError, match="JACOBIAN_BP_NUM_THREADS must be at most"):
        jb.get_num_threads()


def _wait_for_thread_count(n, seconds=10):
    deadline = time.monotonic() + seconds
    while threading.active_count() > n and time.monotonic() < deadline:
        time.sleep(0.01)
    return threading.active_count()


def test_workers_beyond_the_process_count_stop_when_idle(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(parallel, "IDLE_SECONDS", 0.05)
    base = threading.active_count()
    for _ in range(3):  # a loop of blocks reuses the workers while they are busy
        with jb.num_threads(6):
            parallel_for(lambda i: time.sleep(0.001), range(6), 0)
            assert len(parallel._pool.inbox) >= 5
    keep = max(0, jb.get_num_threads() - 1)
    assert _wait_for_thread_count(base) <= base
    assert len(parallel._pool.inbox) <= keep


def test_set_num_threads_stops_the_workers_beyond_it(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    old = parallel._num_threads
    try:
        jb.set_num_threads(4)
        base = threading.active_count() - len(parallel._pool.inbox if parallel._pool else [])
        parallel_for(lambda i: time.sleep(0.001), range(4), 0)
        assert len(parallel._pool.inbox) == 3
        jb.set_num_threads(1)  # at once, not after IDLE_SECONDS
        assert len(parallel._pool.inbox) == 0
        assert _wait_for_thread_count(base) <= base
    finally:
        parallel.reset_num_threads()
        parallel._num_threads = old


def test_env_var_is_read_at_every_call(monkeypatch):
    monkeypatch.setattr(parallel, "_num_threads", None)  # no explicit set_num_threads in force
    monkeypatch.setenv("JACOBIAN_BP_NUM_THREADS", "3")
    assert jb.get_num_threads() == 3
    monkeypatch.setenv("JACOBIAN_BP_NUM_THREADS", "1")
    assert jb.get_num_threads() == 1
    with jb.num_threads(2):  # an explicit block takes precedence
        assert jb.get_num_threads() == 2
    assert jb.get_num_threads() == 1


def _blas_threads():
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def _record_blas_threads(monkeypatch, seen):
    """Record BLAS thread counts while the left products are formed and while the write tasks run."""
    from jacobian_bp.engine.chain import LeftChain

    real_eval, real_outer = LeftChain._evaluate, ops.outer_into

    def evaluate(self):
        seen.append(("left product", _blas_threads()))
        return real_eval(self)

    def outer(*a):
        seen.append(("task", _blas_threads()))
        return real_outer(*a)

    monkeypatch.setattr(LeftChain, "_evaluate", evaluate)
    monkeypatch.setattr(ops, "outer_into", outer)


def test_one_thread_means_one_blas_thread_and_no_new_threads(monkeypatch):
    pytest.importorskip("threadpoolctl")
    from jacobian_bp.backend import kernels

    kernels.blas_threads_controllable()
    if max(_blas_threads() or [1]) <= 1:
        pytest.skip("BLAS already runs on one thread here: nothing to observe")
    monkeypatch.setattr(kernels, "_jit_outer", False)  # the dger (BLAS) kernel writes the slabs
    net, p, x, _ = example("lenet-300-100")
    with jb.num_threads(1):
        ref = net.jacobian_theta(x, p).to_dense()
    seen = []
    _record_blas_threads(monkeypatch, seen)
    before_count = threading.active_count()
    before_blas = _blas_threads()
    old = parallel._num_threads
    try:
        jb.set_num_threads(1)
        for _ in range(3):
            J = net.jacobian_theta(x, p).to_dense()
            assert np.array_equal(J, ref)
            assert threading.active_count() <= before_count
    finally:
        parallel.reset_num_threads()
        parallel._num_threads = old
    assert {k for k, _ in seen} == {"left product", "task"}
    assert all(max(c) == 1 for _, c in seen), seen
    assert _blas_threads() == before_blas  # restored afterwards


def test_to_sparse_honours_the_env_var_for_blas_threads(monkeypatch):
    pytest.importorskip("threadpoolctl")
    from jacobian_bp.backend import kernels

    kernels.blas_threads_controllable()
    if max(_blas_threads() or [1]) <= 1:
        pytest.skip("BLAS already runs on one thread here: nothing to observe")
    net, p, x, _ = example("damadi-3layer")
    with jb.num_threads(1):
        ref = net.jacobian_theta(x, p).to_dense()
    seen = []
    _record_blas_threads(monkeypatch, seen)
    monkeypatch.setattr(parallel, "_num_threads", None)
    monkeypatch.setenv("JACOBIAN_BP_NUM_THREADS", "1")
    S = net.jacobian_theta(x, p).to_sparse()
    assert np.array_equal(S.toarray(), ref)
    assert seen and all(max(c) == 1 for _, c in seen), seen


# ----------------------------------------------------------------------------- 3. depth
def _deep_net(L=1200, seed=5):
    """L Dense(2)+Tanh stages whose weights are rotations scaled by 1.02, which balances the contraction
    of tanh: the Jacobian of the first stage's parameters stays far from 0 through all of them."""
    net = jb.Network([layer for _ in range(L) for layer in (jb.Dense(2), jb.Tanh())], "mse", 2)
    rng = np.random.default_rng(seed)
    p = net.init_params(0)
    for l in range(1, L + 1):
        t = rng.uniform(-0.5, 0.5)
        p[f"W{l}"] = 1.02 * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        p[f"b{l}"] = 0.01 * rng.standard_normal(2)
    return net, p


def test_network_deeper_than_the_recursion_limit_materializes():
    L = 1200
    net, p = _deep_net(L)
    x, y = np.array([0.3, -0.2]), np.array([0.1, 0.4])
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        J = net.jacobian_theta(x, p)
        D = J.to_dense()
        factors = J.blocks[0].op.factors[0].factors  # P_1 as its typed layer Jacobians
    finally:
        sys.setrecursionlimit(old)
    assert D.shape == (2, 6 * L)
    assert len(factors) == 2 * (L - 1)
    # oracle: central differences of z[L] in a few parameters of the first, a middle and the last stage
    theta = net.pack(p)

    def zL(th):
        return net.forward(x, net.unpack(th)).z[-1][0]

    cols = [e.offset + k for e in net.entries if e.name in ("W1", "b1", f"W{L // 2}", f"b{L}") for k in range(e.size)]
    h = 1e-6
    for c in cols:
        tp, tm = theta.copy(), theta.copy()
        tp[c] += h
        tm[c] -= h
        fd = (zL(tp) - zL(tm)) / (2 * h)
        np.testing.assert_allclose(D[:, c], fd, rtol=1e-6, atol=1e-10)
    assert np.abs(D[:, [net.entry("W1").offset]]).max() > 1e-3  # not vanishing: the check has teeth
    # and the gradient J^T delta agrees with the operator-mode sweep
    g = D.T @ net.delta(x, y, p)
    np.testing.assert_allclose(g, net.gradient(x, y, p, method="operator").as_row().ravel(), rtol=1e-10, atol=1e-13)


def test_set_num_threads_one_keeps_blas_on_one_thread_outside_materializations(monkeypatch):
    """#16 item 4: ``set_num_threads(1)`` limits BLAS process-wide (a gradient's matrix products too, not only
    ``to_dense``), and :func:`reset_num_threads` gives BLAS its thread counts back."""
    pytest.importorskip("threadpoolctl")
    from jacobian_bp.backend import kernels
    from jacobian_bp.engine.network import Network

    kernels.blas_threads_controllable()
    before = _blas_threads()
    if max(before or [1]) <= 1:
        pytest.skip("BLAS already runs on one thread here: nothing to observe")
    net, p, x, y = example("lenet-300-100")
    seen = []
    real = Network.forward_cache

    def spy(self, *a, **k):
        seen.append(max(_blas_threads()))
        return real(self, *a, **k)

    monkeypatch.setattr(Network, "forward_cache", spy)
    old = parallel._num_threads
    try:
        jb.set_num_threads(1)
        assert max(_blas_threads()) == 1
        g = net.gradient(x, y, p, method="operator").vector
        assert np.all(np.isfinite(g))
    finally:
        parallel.reset_num_threads()
        parallel._num_threads = old
    assert seen and set(seen) == {1}
    assert _blas_threads() == before


def test_a_caller_blocked_on_its_workers_runs_the_interrupt_handler_at_once():
    """The worker interrupts the caller as soon as its chunk starts (the caller is then entering or blocked in its
    wait): the caller's SIGINT handler must run while the worker is still busy (a blocking queue get without a
    timeout kept it pending until the worker reported: 2 of 7 full runs failed the test above that way), and the
    region still returns only after the worker wrote."""
    late = wrong = 0
    with jb.num_threads(2):
        for _ in range(40):
            with _SigintTrap() as trap:
                out = np.zeros(2)

                def fn(i):
                    nonlocal late
                    if i == 1:
                        trap.armed = True
                        _interrupt_main()
                        late += not trap.fired.wait(5)
                        time.sleep(0.002)
                    out[i] = 1.0

                with pytest.raises(KeyboardInterrupt):
                    parallel_for(fn, [0, 1], MIN_PARALLEL_BYTES)
                wrong += out.tolist() != [1.0, 1.0]
    assert late == 0 and wrong == 0
