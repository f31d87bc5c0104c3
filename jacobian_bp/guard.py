"""Memory guard: refuse to materialize matrices beyond a configurable byte budget.

Every ``to_dense``/``to_sparse`` of a structured operator first estimates the bytes
of its result and calls :func:`check_bytes`.  The default budget is 2 GiB; change it
with :func:`set_memory_budget` or temporarily with the :func:`memory_budget` context
manager.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from .errors import MemoryBudgetError

DEFAULT_BUDGET = 2 * 1024**3
_budget = DEFAULT_BUDGET


def get_memory_budget() -> int:
    """Return the current budget in bytes."""
    return _budget


def set_memory_budget(nbytes: int) -> None:
    """Set the budget in bytes (a positive integer)."""
    global _budget
    if not isinstance(nbytes, (int,)) or isinstance(nbytes, bool) or nbytes <= 0:
        raise ValueError(f"memory budget must be a positive integer number of bytes, got {nbytes!r}")
    _budget = int(nbytes)


@contextlib.contextmanager
def memory_budget(nbytes: int) -> Iterator[None]:
    """Context manager that sets the budget and restores the previous one."""
    old = _budget
    set_memory_budget(nbytes)
    try:
        yield
    finally:
        set_memory_budget(old)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_bytes(nbytes: float, what: str) -> None:
    """Raise :class:`MemoryBudgetError` if ``nbytes`` exceeds the budget."""
    if nbytes > _budget:
        raise MemoryBudgetError(
            f"refusing to materialize {what}: estimated {format_bytes(nbytes)} "
            f"exceeds the memory budget of {format_bytes(_budget)} "
            "(raise it with jacobian_bp.set_memory_budget or keep the operator structured)"
        )
