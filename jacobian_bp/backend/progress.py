"""Progress bars on long work: tqdm on a terminal, silent everywhere else.

:func:`progress` wraps an iterable; :func:`progress_bar` is a context manager for work counted by
hand (``bar.update(k)``).  Both show a `tqdm <https://tqdm.github.io>`_ bar on ``sys.stderr`` only
when

* stderr is a terminal (``sys.stderr.isatty()``): a log file, a pipe, a notebook cell or a test
  run stay clean;
* the package is not quiet (:func:`set_quiet`, :func:`quiet`, the CLI's ``--quiet``, or the
  environment variable ``JACOBIAN_BP_QUIET=1``);
* tqdm is installed (the optional extra ``pip install "jacobian_bp[progress]"``); without it the
  bars are silently off.

When a bar is off, :func:`progress` returns the iterable itself (no wrapper, no cost), and
:func:`progress_bar` yields an object whose ``update`` does nothing.  :func:`show_progress` answers
the same question for code that drives its own bar (e.g. dask's ``progress=`` options).
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterable, Iterator, TypeVar

__all__ = ["progress", "progress_bar", "show_progress", "set_quiet", "is_quiet", "quiet", "tqdm_available"]

T = TypeVar("T")

_QUIET = False


def set_quiet(flag: bool = True) -> bool:
    """Switch every progress bar of the package off (``True``) or back on (``False``); returns the old value."""
    global _QUIET
    if not isinstance(flag, bool):
        from ..errors import DataError

        raise DataError(f"set_quiet: expected True or False, received {flag!r}")
    old, _QUIET = _QUIET, flag
    return old


def is_quiet() -> bool:
    """Whether progress output is switched off (:func:`set_quiet` or ``JACOBIAN_BP_QUIET`` set and not ``0``)."""
    return _QUIET or os.environ.get("JACOBIAN_BP_QUIET", "") not in ("", "0")


@contextlib.contextmanager
def quiet(flag: bool = True) -> Iterator[None]:
    """Within the block, progress bars are off (``flag=True``) or follow the terminal (``False``)."""
    old = set_quiet(flag)
    try:
        yield
    finally:
        set_quiet(old)


def tqdm_available() -> bool:
    """Whether tqdm can be imported."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def show_progress() -> bool:
    """Whether a bar would be shown now: not quiet, stderr a terminal, tqdm importable."""
    if is_quiet():
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        tty = bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed or detached stream
        tty = False
    return tty and tqdm_available()


def _tqdm(**kwargs):
    from tqdm import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs)


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "") -> Iterable[T]:
    """``iterable`` with a progress bar on stderr when :func:`show_progress`, else ``iterable`` itself.

    Parameters
    ----------
    iterable : iterable
        The work items, yielded unchanged and in order.
    total : int, optional
        The number of items when ``len(iterable)`` is not available (a generator).
    desc : str
        A short label shown before the bar (``"errata"``, ``"epochs"``).
    """
    if not show_progress():
        return iterable
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    return _tqdm(iterable=iterable, total=total, desc=desc or None)


class _Silent:
    """The bar of :func:`progress_bar` when bars are off: every call does nothing."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_description(self, desc: str = "") -> None:
        pass

    def set_postfix_str(self, s: str = "") -> None:
        pass


@contextlib.contextmanager
def progress_bar(total: int | None = None, desc: str = ""):
    """A bar advanced by hand: ``with progress_bar(total=n, desc="blocks") as bar: ... bar.update(1)``.

    Yields a tqdm bar when :func:`show_progress`, else an object whose methods do nothing.
    """
    if not show_progress():
        yield _Silent()
        return
    bar = _tqdm(total=total, desc=desc or None)
    try:
        yield bar
    finally:
        bar.close()
