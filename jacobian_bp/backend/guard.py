"""Memory guard: refuse to materialize matrices beyond a configurable byte budget.

Every ``to_dense``/``to_sparse`` of a structured operator first estimates the bytes
of its result and calls :func:`check_bytes`.  The default budget is 2 GiB; change it
process-wide with :func:`set_memory_budget`, or for a block of code with the
:func:`memory_budget` context manager, whose setting holds only in the current thread (more
precisely, in the current :mod:`contextvars` context) and takes precedence there.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

from ..errors import DataError, MemoryBudgetError

DEFAULT_BUDGET = 2 * 1024**3
_budget = DEFAULT_BUDGET  # the process-wide budget (set_memory_budget)
_ctx_budget: contextvars.ContextVar[int | None] = contextvars.ContextVar("jacobian_bp_memory_budget", default=None)


def _check_budget(nbytes) -> int:
    if not isinstance(nbytes, (int,)) or isinstance(nbytes, bool) or nbytes <= 0:
        raise DataError(f"memory budget must be a positive integer number of bytes, got {nbytes!r}")
    return int(nbytes)


def get_memory_budget() -> int:
    """Return the budget in bytes in force here: an enclosing :func:`memory_budget` block's, else the process-wide one."""
    b = _ctx_budget.get()
    return _budget if b is None else b


def set_memory_budget(nbytes: int) -> None:
    """Set the process-wide budget in bytes (a positive integer; else :class:`~jacobian_bp.errors.DataError`,
    a ``ValueError``).

    Inside a :func:`memory_budget` block the block's budget still applies until it ends.
    """
    global _budget
    _budget = _check_budget(nbytes)


@contextlib.contextmanager
def memory_budget(nbytes: int) -> Iterator[None]:
    """Context manager: use the budget ``nbytes`` (a positive integer) inside the block.

    The setting is local to the current thread (to the current :mod:`contextvars` context):
    materializations in other threads keep their own budget.
    """
    token = _ctx_budget.set(_check_budget(nbytes))
    try:
        yield
    finally:
        _ctx_budget.reset(token)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_bytes(nbytes: float, what: str) -> None:
    """Raise :class:`MemoryBudgetError` if ``nbytes`` exceeds the budget."""
    budget = get_memory_budget()
    if nbytes > budget:
        raise MemoryBudgetError(
            f"refusing to materialize {what}: estimated {format_bytes(nbytes)} "
            f"exceeds the memory budget of {format_bytes(budget)} "
            "(raise it with jacobian_bp.set_memory_budget or keep the operator structured)"
        )
