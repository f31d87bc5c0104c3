r"""Thread-parallel writes for large materializations.

Materializing :math:`\mathbf J_\theta\mathbf z^{[L]}` is one large write: for LeNet-300-100
the block :math:`\mathbf P_1(\mathbf I_{300}\otimes\mathbf x^\top)` alone is an 18.8 MB
outer product per sample.  Every block of the result is a set of independent *tasks*
(``(entries, fn, uses_blas)``) that write disjoint parts of the preallocated array;
:func:`run_tasks` cuts them into one contiguous run per thread.  NumPy, BLAS and the
compiled kernels of :mod:`jacobian_bp.kernels` release the GIL, so the runs proceed in
parallel; how much that gains depends on whether one core already saturates the
machine's memory bandwidth (``benchmarks/bench_numeric.py`` prints both).

The workers are persistent daemon threads fed through queues (a hand-off costs some tens
of microseconds), so only writes of at least :data:`MIN_PARALLEL_BYTES` are split.  A call
made from inside a parallel region runs serially, so nested structures never wait on the
workers they run in, and one parallel region runs at a time.

The thread count is ``JACOBIAN_BP_NUM_THREADS`` when set, else the number of cores this
process may run on (at most 8); change it with :func:`set_num_threads` or for a block of
code with the :func:`num_threads` context manager.  Results do not depend on it: each
entry is computed by the same floating-point operations whichever thread writes it.
"""
from __future__ import annotations

import contextlib
import os
import threading
import queue
from typing import Callable, Iterator, Sequence, TypeVar

__all__ = ["get_num_threads", "set_num_threads", "num_threads", "parallel_for", "run_tasks", "MIN_PARALLEL_BYTES"]

T = TypeVar("T")

MIN_PARALLEL_BYTES = 2 * 1024**2
"""Writes smaller than this (bytes) are never split over threads."""

_MAX_DEFAULT = 8
_state = threading.local()
_lock = threading.Lock()
_region_lock = threading.Lock()  # one parallel region at a time uses the workers
_pool: "_Workers | None" = None
_num_threads: int | None = None


def _default_threads() -> int:
    env = os.environ.get("JACOBIAN_BP_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"JACOBIAN_BP_NUM_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"JACOBIAN_BP_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without sched_getaffinity
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_DEFAULT))


def get_num_threads() -> int:
    """The number of threads a large materialization is split over (1 = serial)."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_threads()
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the number of threads for large materializations (a positive integer; 1 disables threading)."""
    global _num_threads
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive integer, received {n!r}")
    _num_threads = n


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Context manager that sets the thread count and restores the previous one."""
    old = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(old)


class _Workers:
    """Persistent daemon threads fed through queues: a hand-off costs one queue put and one get
    (about half the latency of ``concurrent.futures``, which matters for millisecond writes)."""

    def __init__(self):
        self.inbox: list[queue.SimpleQueue] = []
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()

    def grow(self, n: int) -> None:
        """Start threads until there are ``n``."""
        for k in range(len(self.inbox), n):
            self.inbox.append(queue.SimpleQueue())
            threading.Thread(target=self._loop, args=(k,), name=f"jacobian_bp-{k}", daemon=True).start()

    def _loop(self, k: int) -> None:
        inbox = self.inbox[k]
        while True:
            fn, arg = inbox.get()
            try:
                fn(arg)
                result = None
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                result = exc
            # drop the task (it holds views of the result) before reporting: an idle worker
            # must not keep the caller's arrays alive
            del fn, arg
            self.outbox.put(result)
            del result


def _get_workers(n: int) -> _Workers:
    global _pool
    with _lock:
        if _pool is None:
            _pool = _Workers()
        _pool.grow(n)
        return _pool


def _run_serial(fn: Callable[[T], None], items: Sequence[T]) -> None:
    was_inside = getattr(_state, "inside", False)
    _state.inside = True
    try:
        for it in items:
            fn(it)
    finally:
        _state.inside = was_inside


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
    here after every chunk has finished.
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

    workers = _get_workers(n - 1)
    # BLAS calls inside the chunks run single-threaded: our threads already use the cores
    with blas_single_threaded() if blas else contextlib.nullcontext():
        with _region_lock:
            for k, c in enumerate(chunks[1:]):
                workers.inbox[k].put((lambda chunk: _run_serial(fn, chunk), c))
            try:
                _run_serial(fn, chunks[0])
            finally:
                errors = [workers.outbox.get() for _ in chunks[1:]]
    errors = [e for e in errors if e is not None]
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
