r"""Thread-parallel writes for large materializations.

Materializing :math:`\mathbf J_\theta\mathbf z^{[L]}` is one large write: for LeNet-300-100
the block :math:`\mathbf P_1(\mathbf I_{300}\otimes\mathbf x^\top)` alone is an 18.8 MB
outer product per sample.  Every block of the result is a set of independent *tasks*
(``(entries, fn, uses_blas)``) that write disjoint parts of the preallocated array;
:func:`run_tasks` cuts them into one contiguous run per thread.  NumPy, BLAS and the
compiled kernels of :mod:`jacobian_bp.backend.kernels` release the GIL, so the runs proceed in
parallel; how much that gains depends on whether one core already saturates the
machine's memory bandwidth (``benchmarks/bench_numeric.py`` prints both).

The workers are persistent daemon threads fed through queues (a hand-off costs some tens
of microseconds), so only writes of at least :data:`MIN_PARALLEL_BYTES` are split.  A call
made from inside a parallel region runs serially, so nested structures never wait on the
workers they run in, and one parallel region runs at a time.  Each region collects its
workers' completions in its own queue, so a region cut short (e.g. by ``KeyboardInterrupt``)
can never hand its late completions to the next region: the interrupted call first waits,
for at most :data:`SETTLE_SECONDS`, for the chunks it handed out, and if they do not finish
the workers are replaced by fresh ones.

The thread count is, in this order of precedence: the value of an enclosing
:func:`num_threads` block (per thread and per ``contextvars`` context), the value given to
:func:`set_num_threads` (process-wide), ``JACOBIAN_BP_NUM_THREADS`` (read on every call, so
it can be changed at run time), else the number of cores this process may run on (at most
8).  It is at most :data:`MAX_THREADS`.  The same count bounds the BLAS threads used while a
matrix is materialized (``to_dense``/``to_sparse``), when ``threadpoolctl`` is installed (the
``fast`` extra); with one thread, BLAS runs on one thread too.  Results do not depend on the
count: each entry is computed by the same floating-point operations whichever thread
writes it.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import queue
import sys
import threading
import time
from typing import Callable, Iterator, Sequence, TypeVar

from ..errors import DataError

__all__ = ["get_num_threads", "set_num_threads", "reset_num_threads", "num_threads", "parallel_for", "run_tasks", "MIN_PARALLEL_BYTES",
           "MAX_THREADS"]

T = TypeVar("T")

MIN_PARALLEL_BYTES = 2 * 1024**2
"""Writes smaller than this (bytes) are never split over threads."""

MAX_THREADS = 64
"""The largest accepted thread count (:func:`set_num_threads`, :func:`num_threads`, ``JACOBIAN_BP_NUM_THREADS``)."""

IDLE_SECONDS = 10.0
"""A worker beyond the process-wide thread count (:func:`set_num_threads`, else the default) that
has had no work for this long stops; it is started again when a region needs it."""

SETTLE_SECONDS = 30.0
"""How long a region cut short by an exception waits for the chunks its workers are still running
before it gives up on those workers (the next region then starts fresh ones)."""

_MAX_DEFAULT = 8
_ENV = "JACOBIAN_BP_NUM_THREADS"
_state = threading.local()
_lock = threading.Lock()  # guards _pool
_region_lock = threading.Lock()  # one parallel region at a time uses the workers
_pool: "_Workers | None" = None
_num_threads: int | None = None  # set_num_threads: the process-wide explicit value
_ctx_threads: contextvars.ContextVar[int | None] = contextvars.ContextVar("jacobian_bp_num_threads", default=None)
_cores: int | None = None


def _check_count(n, what: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise DataError(f"{what}: expected a positive integer, received {n!r}")
    if n > MAX_THREADS:
        raise DataError(f"{what}: expected at most MAX_THREADS = {MAX_THREADS} threads, received {n}")
    return n


try:  # the raw environment dict: a missing key costs no KeyError (os.environ.get: several microseconds)
    _ENV_DATA, _ENV_KEY, _decode = os.environ._data, os.environ.encodekey(_ENV), os.environ.decodevalue
    if not isinstance(_ENV_DATA, dict):  # pragma: no cover - another implementation of os.environ
        raise TypeError
except (AttributeError, TypeError):  # pragma: no cover
    _ENV_DATA = None


def _env_value() -> str:
    """``JACOBIAN_BP_NUM_THREADS`` as set now (``os.environ`` changes are seen at once)."""
    if _ENV_DATA is not None:
        raw = _ENV_DATA.get(_ENV_KEY)
        return "" if raw is None else _decode(raw)
    return os.environ.get(_ENV, "")  # pragma: no cover


def _default_threads() -> int:
    env = _env_value().strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise DataError(f"{_ENV} must be a positive integer, got {env!r}") from None
        if n < 1:
            raise DataError(f"{_ENV} must be a positive integer, got {env!r}")
        if n > MAX_THREADS:
            raise DataError(f"{_ENV} must be at most MAX_THREADS = {MAX_THREADS}, got {env!r}")
        return n
    global _cores
    if _cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # pragma: no cover - platforms without sched_getaffinity
            cores = os.cpu_count() or 1
        _cores = max(1, min(cores, _MAX_DEFAULT))
    return _cores


def get_num_threads() -> int:
    """The number of threads a large materialization is split over (1 = serial).

    An enclosing :func:`num_threads` block takes precedence, then :func:`set_num_threads`,
    then ``JACOBIAN_BP_NUM_THREADS`` (read on every call), then the number of usable cores (at most 8).
    """
    n = _ctx_threads.get()
    if n is not None:
        return n
    if _num_threads is not None:
        return _num_threads
    return _default_threads()


def set_num_threads(n: int) -> None:
    """Set the process-wide number of threads: our own workers and the BLAS libraries.

    Parameters
    ----------
    n : int
        A positive integer, at most :data:`MAX_THREADS`; 1 disables threading.  BLAS is limited
        to ``n`` threads from now on, for every computation (gradients, products, materializations),
        and so is numba's thread pool when numba is loaded: ``set_num_threads(1)`` keeps the whole
        computation on one core.  Controlling BLAS needs ``threadpoolctl`` (the ``fast`` extra);
        without it BLAS keeps its own thread count.  :func:`reset_num_threads` undoes the call.

    Raises
    ------
    DataError
        (a ``ValueError``) when ``n`` is not an integer in ``1 .. MAX_THREADS``.

    Idle worker threads beyond the new count are stopped.  An enclosing :func:`num_threads`
    block still takes precedence in its own context.
    """
    global _num_threads
    _num_threads = _check_count(n, "set_num_threads")
    _limit_libraries(_num_threads)
    _retire_idle()


def reset_num_threads() -> None:
    """Undo :func:`set_num_threads`: back to ``JACOBIAN_BP_NUM_THREADS`` or the number of cores, and the BLAS
    libraries (and numba) back to the thread counts they had before."""
    global _num_threads
    _num_threads = None
    _limit_libraries(None)


_numba_original: int | None = None


def _limit_libraries(n: int | None) -> None:
    """BLAS (through threadpoolctl) and, when it is loaded, numba: at most ``n`` threads; None restores them."""
    global _numba_original
    from .kernels import set_blas_threads

    set_blas_threads(n)
    numba = sys.modules.get("numba")
    if numba is not None and hasattr(numba, "set_num_threads"):
        if _numba_original is None:
            _numba_original = numba.get_num_threads()
        numba.set_num_threads(_numba_original if n is None else max(1, min(n, _numba_original)))
        if n is None:
            _numba_original = None


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Context manager: use ``n`` threads (``1 .. MAX_THREADS``) inside the block.

    The setting is local to the current thread (more precisely, to the current
    :mod:`contextvars` context): other threads keep their own count.
    """
    token = _ctx_threads.set(_check_count(n, "num_threads"))
    try:
        yield
    finally:
        # workers started for a larger count stop after IDLE_SECONDS without work, not now:
        # a loop of such blocks reuses them
        _ctx_threads.reset(token)


class _Workers:
    """Persistent daemon threads, one inbox each: a hand-off costs one queue put and one get
    (about half the latency of ``concurrent.futures``, which matters for millisecond writes).

    A task is ``(fn, arg, ctx, results, done)``: the worker runs ``ctx.run(fn, arg)`` (the
    caller's context variables, e.g. the memory budget), appends the outcome (None or the
    exception) to the region's own list ``results``, then wakes the caller through the
    region's own queue ``done``.  ``None`` in an inbox stops that worker."""

    def __init__(self):
        self.inbox: list[queue.SimpleQueue] = []

    def grow(self, n: int) -> None:
        """Start threads until there are ``n``."""
        for k in range(len(self.inbox), n):
            q: queue.SimpleQueue = queue.SimpleQueue()
            # start first, then publish the inbox: an inbox is never without its thread
            threading.Thread(target=self._loop, args=(q,), name=f"jacobian_bp-{k}", daemon=True).start()
            self.inbox.append(q)

    def retire(self, n: int) -> None:
        """Stop the threads beyond the first ``n`` once they have finished what they were given."""
        while len(self.inbox) > max(0, n):
            self.inbox.pop().put(None)

    @staticmethod
    def _loop(inbox: queue.SimpleQueue) -> None:
        while True:
            try:
                task = inbox.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                if _idle_exit(inbox):
                    return
                continue
            if task is None:
                return
            fn, arg, ctx, results, done = task
            del task
            try:
                ctx.run(fn, arg)
                result = None
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                result = exc
            # drop the task (it holds views of the result) before reporting: an idle worker
            # must not keep the caller's arrays alive
            del fn, arg, ctx
            results.append(result)  # counted by the caller: a wake-up lost to an interrupt loses nothing
            del result, results
            done.put(None)
            del done


def _get_workers(n: int) -> _Workers:
    global _pool
    with _lock:
        if _pool is None:
            _pool = _Workers()
        _pool.grow(n)
        return _pool


def _retire_idle() -> None:
    """Stop idle workers beyond the current thread count now (skipped while a region runs: then
    they stop after :data:`IDLE_SECONDS`)."""
    if _pool is None:
        return
    try:
        n = get_num_threads() - 1
    except ValueError:  # a malformed JACOBIAN_BP_NUM_THREADS is reported where the count is used
        return
    if len(_pool.inbox) <= n:
        return
    if not _region_lock.acquire(blocking=False):
        return
    try:
        with _lock:
            if _pool is not None:
                _pool.retire(n)
    finally:
        _region_lock.release()


def _idle_exit(inbox: queue.SimpleQueue) -> bool:
    """Called by an idle worker: remove it from the pool if it is beyond the process-wide count."""
    if not _region_lock.acquire(blocking=False):  # a region runs: stay
        return False
    try:
        with _lock:
            pool = _pool
            if pool is None or not any(q is inbox for q in pool.inbox):
                return False  # a discarded pool: its stop sentinel is on the way
            try:
                keep = (_num_threads if _num_threads is not None else _default_threads()) - 1
            except ValueError:
                return False
            k = next(i for i, q in enumerate(pool.inbox) if q is inbox)
            if k < keep or not inbox.empty():
                return False
            del pool.inbox[k]
            return True
    finally:
        _region_lock.release()


def _discard_pool(workers: _Workers) -> None:
    """Give up on ``workers`` (they did not finish in time): later regions start fresh threads."""
    global _pool
    with _lock:
        if _pool is workers:
            _pool = None
    workers.retire(0)  # each stops after the tasks already in its inbox


def _run_serial(fn: Callable[[T], None], items: Sequence[T]) -> None:
    was_inside = getattr(_state, "inside", False)
    _state.inside = True
    try:
        for it in items:
            fn(it)
    finally:
        _state.inside = was_inside


def _chunk_runner(fn: Callable[[T], None]) -> Callable[[Sequence[T]], None]:
    return lambda chunk: _run_serial(fn, chunk)


_POLL_SECONDS = 0.05
"""How often a caller waiting for its workers returns to the interpreter: a ``SimpleQueue.get`` without a timeout
may keep a signal's Python handler (Ctrl-C's ``KeyboardInterrupt``) from running until a worker reports."""


def _wait(results: list, sent: int, done: queue.SimpleQueue) -> None:
    """Block until the workers have reported ``sent`` outcomes in ``results``, back in the interpreter every
    :data:`_POLL_SECONDS` so that a pending ``KeyboardInterrupt`` is raised here (then :func:`_settle` waits)."""
    while len(results) < sent:
        try:
            done.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            pass


def _settle(results: list, sent: int, done: queue.SimpleQueue, workers: _Workers) -> None:
    """After the region was cut short: wait, for at most :data:`SETTLE_SECONDS` and ignoring
    further interrupts, until the ``sent`` chunks handed to workers have finished, so that no
    worker still writes when the exception reaches the caller; else discard the workers."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        try:
            while len(results) < sent:
                left = deadline - time.monotonic()
                if left <= 0:
                    _discard_pool(workers)
                    return
                try:
                    done.get(timeout=left)
                except queue.Empty:
                    pass
            return
        except BaseException:  # noqa: BLE001 - a second Ctrl-C: keep waiting (bounded)
            continue


def parallel_for(fn: Callable[[T], None], items: Sequence[T], nbytes: int,
                 bounds: Sequence[int] | None = None, blas: bool = True) -> None:
    """Call ``fn(item)`` for every item, split into contiguous chunks over the thread pool.

    Parameters
    ----------
    fn : callable
        Writes one item's share of the result into memory no other item touches.
    items : sequence
        The work items, e.g. row slices of the output.
    nbytes : int
        Bytes the whole call writes; below :data:`MIN_PARALLEL_BYTES` it runs serially.
    bounds : sequence of int, optional
        The number of items in each chunk (one chunk per thread); by default the items are
        split into chunks of equal count.
    blas : bool
        Whether ``fn`` may call BLAS; if so, BLAS is kept single-threaded meanwhile.

    The calling thread takes the first chunk itself; an exception in any chunk is raised
    here after every chunk has finished.  If the calling thread is interrupted (e.g.
    ``KeyboardInterrupt``), the interrupt is raised after the chunks already handed out
    have finished (see :data:`SETTLE_SECONDS`).
    """
    items = list(items)
    n = min(get_num_threads(), len(items))
    if n <= 1 or nbytes < MIN_PARALLEL_BYTES or getattr(_state, "inside", False):
        _run_serial(fn, items)
        return
    if bounds is None:
        edges = [len(items) * k // n for k in range(n + 1)]
    else:
        if sum(bounds) != len(items) or any(b < 0 for b in bounds):
            raise ValueError(f"parallel_for: chunk sizes {list(bounds)} do not add up to {len(items)} items")
        edges = [0]
        for b in bounds:
            edges.append(edges[-1] + b)
    chunks = [items[edges[k]:edges[k + 1]] for k in range(len(edges) - 1)]
    chunks = [c for c in chunks if c] or [[]]
    n = len(chunks)
    if n <= 1:
        _run_serial(fn, chunks[0])
        return
    from .kernels import blas_single_threaded

    run = _chunk_runner(fn)
    # BLAS calls inside the chunks run single-threaded: our threads already use the cores
    with blas_single_threaded() if blas else contextlib.nullcontext():
        with _region_lock:
            workers = _get_workers(n - 1)
            done: queue.SimpleQueue = queue.SimpleQueue()  # this region's completions only
            results: list = []
            sent = 0
            try:
                for k, c in enumerate(chunks[1:]):
                    workers.inbox[k].put((run, c, contextvars.copy_context(), results, done))
                    sent += 1
                _run_serial(fn, chunks[0])
                _wait(results, sent, done)
            except BaseException:
                _settle(results, sent, done, workers)
                raise
    errors = [e for e in results if e is not None]
    if errors:
        raise errors[0]


def run_tasks(tasks: Sequence[tuple]) -> None:
    """Run independent write tasks ``(entries, fn)`` or ``(entries, fn, uses_blas)``, split over the
    threads by their entry counts.

    The tasks are cut into contiguous runs of about equal total size (neighbouring tasks
    write neighbouring memory), one run per thread; small totals run serially.  A task
    without the third field is assumed to call BLAS.
    """
    tasks = [t if len(t) == 3 else (t[0], t[1], True) for t in tasks]
    total = sum(int(t[0]) for t in tasks)
    n = min(get_num_threads(), len(tasks))
    if n <= 1 or total * 8 < MIN_PARALLEL_BYTES:
        _run_serial(_call_task, tasks)
        return
    runs: list[list] = [[] for _ in range(n)]
    done, k = 0, 0
    for t in tasks:
        c = t[0]
        # the task goes to the run whose share of the total its midpoint falls in
        k = max(k, min(n - 1, int((done + c / 2) * n // total)))
        runs[k].append(t)
        done += c
    parallel_for(_call_task, [t for run in runs for t in run], total * 8, bounds=[len(r) for r in runs],
                 blas=any(t[2] for t in tasks))


def _call_task(task) -> None:
    task[1]()
