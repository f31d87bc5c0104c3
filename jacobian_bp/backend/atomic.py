"""Atomic file writes: the target appears complete or not at all.

Every writer first writes a temporary file in the *same folder* as the target (so that the
final :func:`os.replace` is a rename on one file system, atomic on POSIX and Windows), then
renames it over the target only when writing succeeded.  On any failure (an exception, a
full disk, ``KeyboardInterrupt``) the temporary file is removed and an existing target is
left unchanged.

The path written is exactly the path given: no suffix is appended.  (``numpy.savez`` and
``scipy.sparse.save_npz`` append ``.npz`` to a *name* without it; give them the open file
object yielded by :func:`atomic_file`, or write to the path yielded by :func:`atomic_path`
through an open file object.)

Examples
--------
>>> from jacobian_bp.backend.atomic import atomic_file
>>> import numpy as np, tempfile, os
>>> target = os.path.join(tempfile.mkdtemp(), "grad")        # no .npz suffix: none is added
>>> with atomic_file(target) as fh:
...     np.savez(fh, theta=np.zeros(3))
>>> os.path.exists(target)
True
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from ..errors import DataError

__all__ = ["atomic_path", "atomic_file", "atomic_write_bytes", "atomic_write_text", "check_writable"]


def check_writable(path: "str | os.PathLike[str]") -> Path:
    """Check that ``path`` can be written as a file, before any work is done.

    Parameters
    ----------
    path : str or path-like
        The target file.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    DataError
        If ``path`` is empty, is an existing directory, or its folder does not exist, is not a
        directory, or is not writable.
    """
    s = os.fspath(path)
    if not s:
        raise DataError("output path is empty")
    p = Path(s)
    if p.is_dir():
        raise DataError(f"output path {s!r} is a directory; give a file name")
    if s.endswith((os.sep, "/")):
        raise DataError(f"output path {s!r} ends with a path separator; give a file name")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.exists():
        raise DataError(f"output folder {str(folder)!r} of {s!r} does not exist")
    if not folder.is_dir():
        raise DataError(f"output folder {str(folder)!r} of {s!r} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(f"output folder {str(folder)!r} of {s!r} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        # os.replace would still succeed (it needs only the folder's permission), but a
        # read-only target is a user's statement that it must not be overwritten
        raise DataError(f"output file {s!r} exists and is read-only")
    return p


@contextlib.contextmanager
def atomic_path(path: "str | os.PathLike[str]") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    Parameters
    ----------
    path : str or path-like
        The target file.  Its folder must exist (checked by :func:`check_writable`).

    Yields
    ------
    Path
        A fresh, empty temporary file in the target's folder.  Write it (for ``.npz``
        writers through an open file object: ``np.savez(open(tmp, "wb"), ...)``, since
        given a name they append ``.npz``).

    Notes
    -----
    On an exception inside the ``with`` block (including ``KeyboardInterrupt``), the
    temporary file is removed, the target is untouched, and the exception propagates.
    The new file gets the permissions a newly created file would get (umask applied).
    """
    target = check_writable(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _apply_umask(tmp_path)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_file(path: "str | os.PathLike[str]", mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Yield an open file object whose contents replace ``path`` atomically when the block succeeds.

    Parameters
    ----------
    path : str or path-like
        The target file.
    mode : {"wb", "w"}
        Binary or text.
    encoding : str, optional
        For text mode (default UTF-8).

    Notes
    -----
    The data are flushed and ``fsync``-ed before the rename.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file: mode must be 'wb' or 'w', received {mode!r}")
    with atomic_path(path) as tmp:
        kw = {} if mode == "wb" else {"encoding": encoding or "utf-8", "newline": ""}
        with open(tmp, mode, **kw) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_bytes(path: "str | os.PathLike[str]", data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path written."""
    with atomic_file(path, "wb") as fh:
        fh.write(data)
    return Path(os.fspath(path))


def atomic_write_text(path: "str | os.PathLike[str]", text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8, newlines unchanged); returns the path written."""
    with atomic_file(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(os.fspath(path))


def _apply_umask(p: Path) -> None:
    # mkstemp creates the file 0600; give it the mode an ordinary open() would have
    if os.name != "posix":  # pragma: no cover
        return
    mask = os.umask(0)
    os.umask(mask)
    with contextlib.suppress(OSError):
        os.chmod(p, 0o666 & ~mask)
