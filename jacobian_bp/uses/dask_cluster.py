r"""The dask side of :mod:`jacobian_bp.uses.distributed`: the client, the per-worker memory budget, computing
with a progress bar and writing zarr stores atomically.

:func:`client` starts a ``LocalCluster`` (``n_workers`` processes) or connects to a scheduler address and
becomes the default client; :func:`set_worker_memory_budget` gives every worker (also restarted ones,
through a worker plugin) jacobian_bp's memory budget; :func:`task_budget` is the smallest budget a task
must respect (this process's and every worker's); :func:`compute` gathers results (block by block into one
preallocated array for a dask array on a client) with dask's progress bar when stderr is a terminal;
:func:`to_zarr` writes chunk by chunk to ``path + ".tmp"`` and renames.  Optional extra:
``pip install -e ".[dask]"``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import uuid

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ModuleNotFoundError(
        "jacobian_bp.uses.distributed needs dask: pip install -e \".[dask]\" "
        "(dask[array], distributed, zarr)") from exc

try:
    import distributed as _distributed
    _WorkerPlugin = _distributed.WorkerPlugin
except ImportError:  # pragma: no cover - dask without distributed: the local scheduler only
    _distributed = None
    _WorkerPlugin = object

from ..errors import DataError
from ..backend.guard import get_memory_budget, set_memory_budget

__all__ = ["active_client", "task_budget", "compute", "to_zarr", "MemoryBudgetPlugin", "set_worker_memory_budget",
           "client"]


def active_client():
    """The active ``dask.distributed`` client (``distributed.default_client()``), or ``None``."""
    try:
        return None if _distributed is None else _distributed.default_client()
    except ValueError:
        return None


def task_budget() -> int:
    """The memory budget a task must respect: this process's budget and, with an active client, every worker's.

    The smallest of them: the chunk size is checked against it before the graph is built.
    """
    budget = get_memory_budget()
    cl = active_client()
    if cl is not None:
        budgets = cl.run(get_memory_budget)
        if budgets:
            budget = min(budget, *budgets.values())
    return budget


# ---------------------------------------------------------------------------- running and saving
def _show_progress(progress: bool | None) -> bool:
    """``None``: as the package's progress bars (stderr a terminal, not quiet: :func:`~jacobian_bp.backend.progress.show_progress`)."""
    from ..backend.progress import show_progress

    return show_progress() if progress is None else bool(progress)


def compute(*collections, progress: bool | None = None):
    """Compute dask collections on the active client (else dask's default scheduler), with a progress bar.

    ``progress=None`` shows it only when stderr is a terminal; ``False`` never, ``True`` always.
    Returns one result per collection (a tuple when several are given).
    """
    show = _show_progress(progress)
    cl = active_client()
    if cl is not None and len(collections) == 1 and isinstance(collections[0], da.Array):
        return _gather_array(cl, collections[0], show)
    if cl is not None:
        futures = cl.compute(list(collections))
        if show:
            _distributed.progress(futures)
        results = cl.gather(futures)
    else:
        bar = contextlib.nullcontext()
        if show:
            from dask.diagnostics import ProgressBar

            bar = ProgressBar(out=sys.stderr)
        with bar:
            results = dask.compute(*collections)
    return results[0] if len(collections) == 1 else tuple(results)


def _gather_array(cl, array: "da.Array", show: bool) -> np.ndarray:
    """Compute a dask array on a client block by block into one preallocated array here: no worker
    ever holds the concatenation, and each block is released once copied."""
    blocks = array.to_delayed()
    where = list(np.ndindex(blocks.shape))
    futures = cl.compute([blocks[i] for i in where])
    if show:
        _distributed.progress(futures)
    offsets = [np.cumsum((0,) + tuple(c)) for c in array.chunks]
    out = np.empty(array.shape, dtype=array.dtype)
    slots: dict = {}
    for fut, i in zip(futures, where):
        slots.setdefault(fut.key, []).append(i)
    for fut, block in _distributed.as_completed(futures, with_results=True):
        for i in slots.pop(fut.key, []):
            out[tuple(slice(o[k], o[k + 1]) for o, k in zip(offsets, i))] = block
        fut.release()
    return out


def to_zarr(array: "da.Array", path: str | os.PathLike, progress: bool | None = None, overwrite: bool = False) -> str:
    """Write a dask array to a zarr store at ``path``, chunk by chunk (results larger than memory).

    Atomic where the file system allows: written to ``path + ".tmp"`` and renamed to ``path`` only
    when complete (an interrupted write leaves ``path`` untouched).  An existing ``path`` is refused
    unless ``overwrite=True``.  Needs ``zarr`` (``pip install -e ".[dask]"``).  Returns the path;
    read it back with ``dask.array.from_zarr(path)``.
    """
    if not isinstance(array, da.Array):
        array = da.from_array(np.asarray(array))
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise DataError(f"to_zarr: {path!r} exists (pass overwrite=True to replace it)")
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp) if os.path.isdir(tmp) else os.remove(tmp)
    try:
        compute(da.to_zarr(array, tmp, compute=False, overwrite=True), progress=progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path + f".old-{uuid.uuid4().hex}" if os.path.exists(path) else None
    if old is not None:
        os.rename(path, old)  # (overwrite) the old store leaves only after the new one is complete
    os.rename(tmp, path)
    if old is not None:
        shutil.rmtree(old) if os.path.isdir(old) else os.remove(old)
    return path


class MemoryBudgetPlugin(_WorkerPlugin):
    """A ``distributed`` worker plugin: sets :func:`jacobian_bp.set_memory_budget` in every worker,
    also in workers started (or restarted) later."""

    name = "jacobian-bp-memory-budget"

    def __init__(self, nbytes: int):
        self.nbytes = nbytes

    def setup(self, worker=None):
        set_memory_budget(self.nbytes)


def set_worker_memory_budget(cl, nbytes: int) -> None:
    """Give every worker of client ``cl`` the memory budget ``nbytes`` (kept across worker restarts)."""
    if _distributed is None:  # pragma: no cover
        raise ModuleNotFoundError("set_worker_memory_budget needs distributed: pip install -e \".[dask]\"")
    if isinstance(nbytes, (bool, np.bool_)) or not isinstance(nbytes, (int, np.integer)) or nbytes <= 0:
        raise DataError(f"memory budget must be a positive integer number of bytes, got {nbytes!r}")
    cl.register_plugin(MemoryBudgetPlugin(int(nbytes)))


def client(address: str | None = None, n_workers: int = 2, threads_per_worker: int = 1,
           memory_limit: str | int = "auto", worker_budget: int | None = None, processes: bool = True, **kwargs):
    """A ``distributed.Client`` (the default one from then on) connected to the scheduler at ``address``
    (``"tcp://host:8786"``), or to a new ``LocalCluster`` of ``n_workers`` processes, closed with the client;
    ``worker_budget`` sets jacobian_bp's memory budget in every worker (:func:`set_worker_memory_budget`)."""
    if _distributed is None:  # pragma: no cover
        raise ModuleNotFoundError("client needs distributed: pip install -e \".[dask]\"")
    if address is not None:
        cl = _distributed.Client(address, **kwargs)
    else:
        cl = _distributed.Client(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                 memory_limit=memory_limit, processes=processes, **kwargs)
    if worker_budget is not None:
        set_worker_memory_budget(cl, worker_budget)
    return cl
