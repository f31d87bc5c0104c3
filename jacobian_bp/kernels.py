r"""Dense write kernels for materializing Kronecker blocks.

The largest write in :math:`\mathbf J_\theta\mathbf z^{[L]}` is the outer-product block
:math:`\mathbf P_l\otimes\mathbf a^\top` (Damadi Alg. 1 line 3): row :math:`i` of
:math:`\mathbf P_l` times :math:`\mathbf a^\top` fills a contiguous ``n_l × n_{l-1}`` slab.
NumPy's broadcast multiply ``p[:, None] * a`` runs one short inner loop per slab row and
reaches about a third of the speed of a contiguous multiply; the BLAS rank-1 update
``dger`` (:math:`\mathbf A \leftarrow \alpha\,\mathbf x\mathbf y^\top + \mathbf A`) on a zeroed
slab is a tuned kernel and writes the same numbers: each entry is
:math:`0 + (1\cdot p_j)\,a_k = p_j a_k` exactly.  :func:`outer_into` picks it for large
slabs and falls back to NumPy otherwise.

:func:`blas_single_threaded` limits the BLAS libraries to one thread (through
``threadpoolctl`` when it is installed) while :mod:`jacobian_bp.parallel` runs its own
threads, so that the two thread pools do not oversubscribe the cores.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

__all__ = ["outer_into", "blas_single_threaded", "blas_threads_controllable", "GER_MIN_SIZE"]

GER_MIN_SIZE = 16384
"""Slabs with fewer entries than this are written by NumPy (the BLAS call overhead dominates)."""

_ger = None
_controller = None


def _get_ger():
    global _ger
    if _ger is None:
        from scipy.linalg.blas import dger

        _ger = dger
    return _ger


def outer_into(out: np.ndarray, p: np.ndarray, a: np.ndarray) -> None:
    r"""Write :math:`\mathbf p\,\mathbf a^\top` into the 2-D float64 view ``out`` (``len(p) × len(a)``).

    Uses BLAS ``dger`` on the zeroed slab when ``out`` is C-contiguous and large, NumPy's
    broadcast multiply otherwise; both give bitwise the same products.
    """
    if out.shape != (p.shape[0], a.shape[0]):
        raise ValueError(f"outer_into: expected out of shape {(p.shape[0], a.shape[0])}, received {out.shape}")
    if out.size >= GER_MIN_SIZE and out.flags.c_contiguous and out.dtype == np.float64 \
            and p.dtype == np.float64 and a.dtype == np.float64 and blas_threads_controllable():
        slab = out.T  # Fortran-ordered (len(a) × len(p)): dger updates it in place
        slab.fill(0.0)
        res = _get_ger()(1.0, a, p, a=slab, overwrite_a=True)
        if res is not slab and not np.shares_memory(res, slab):  # pragma: no cover - a wrapper that copied
            slab[...] = res
        return
    np.multiply(p[:, None], a[None, :], out=out)


_controllable: bool | None = None


def blas_threads_controllable() -> bool:
    """Whether ``threadpoolctl`` is installed, so that BLAS can be kept off our threads' cores.

    Without it the outer-product kernel stays in NumPy: a multi-threaded BLAS call made from
    each of several threads would oversubscribe the cores.
    """
    global _controllable
    if _controllable is None:
        try:
            import threadpoolctl  # noqa: F401
        except ImportError:
            _controllable = False
        else:
            _controllable = True
    return _controllable


@contextlib.contextmanager
def blas_single_threaded() -> Iterator[None]:
    """Limit the BLAS libraries to one thread for the duration (no-op without ``threadpoolctl``)."""
    global _controller
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        yield
        return
    if _controller is None:
        import scipy.linalg.blas  # noqa: F401  (load SciPy's BLAS before the controller scans)

        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield
