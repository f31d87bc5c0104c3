r"""Dense write kernels for materializing Kronecker blocks.

The largest write in :math:`\mathbf J_\theta\mathbf z^{[L]}` is the outer-product block
:math:`\mathbf P_l\otimes\mathbf a^\top` (Damadi Alg. 1 line 3): row :math:`i` of
:math:`\mathbf P_l` times :math:`\mathbf a^\top` fills a contiguous ``n_l × n_{l-1}`` slab,
:math:`S_{jk} = p_j a_k`.  :func:`outer_into` writes one slab with the fastest kernel
available; all three write bitwise the same numbers (one IEEE product per entry):

1. a compiled loop (Numba, ``nogil``) when ``numba`` is installed -- the ``fast`` extra.
   It is compiled on the first large write (about a second; cached on disk afterwards)
   and writes at close to memory speed.  ``JACOBIAN_BP_JIT=0`` turns it off.  The blocks of a
   materialization of at least :data:`STREAM_MIN_BYTES` use its streaming twin, whose
   stores are marked non-temporal (x86 ``movnt*``: the line is written without first being
   read into the caches) and end with a fence -- the same products, about half the memory
   traffic; between :data:`STREAM_TRIAL_MIN_BYTES` and that size, :class:`StoreChooser` times both
   on this machine and keeps the faster (:func:`store_kind`, ``JACOBIAN_BP_STREAM``);
2. the BLAS rank-1 update ``dger`` (:math:`\mathbf A \leftarrow \alpha\,\mathbf x\mathbf y^\top
   + \mathbf A`) on the zeroed slab, when ``threadpoolctl`` is installed: each entry is
   :math:`0 + (1\cdot p_j)\,a_k = p_j a_k`;
3. NumPy's broadcast multiply ``p[:, None] * a``, which runs one short inner loop per slab
   row and reaches about a third of the speed of a contiguous multiply.

Slabs smaller than :data:`KERNEL_MIN_SIZE` always take NumPy (no compilation for small
networks).  :func:`blas_limit` caps the BLAS libraries' threads (through ``threadpoolctl``):
at one (:func:`blas_single_threaded`) while :mod:`jacobian_bp.backend.parallel` runs its own threads,
so that the two thread pools do not oversubscribe the cores, and at
:func:`jacobian_bp.get_num_threads` during every materialization.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
from typing import Iterator

import numpy as np

__all__ = ["outer_into", "blas_single_threaded", "blas_limit", "set_blas_threads", "blas_threads_controllable", "jit_kernel_available",
           "KERNEL_MIN_SIZE", "STREAM_MIN_BYTES", "STREAM_TRIAL_MIN_BYTES", "STORE_POLICY", "StoreChooser", "store_kind",
           "streaming_stores", "all_finite", "jit_outer_kernel"]

KERNEL_MIN_SIZE = 16384
"""Slabs with fewer entries than this are written by NumPy (call overhead and compilation dominate)."""

_ger = None
_controller = None
_cpu_total = os.cpu_count() or 1
_jit_outer = None  # the compiled kernel, False when numba is missing or disabled


def _outer_loop(out, p, a):  # pragma: no cover - runs compiled (its result is tested bitwise)
    for j in range(p.shape[0]):
        v = p[j]
        for k in range(a.shape[0]):
            out[j, k] = v * a[k]


_jit_outer_stream = None  # the compiled streaming kernel, False when it cannot be built


def _outer_loop_stream(out, p, a):  # pragma: no cover - runs compiled (its result is tested bitwise)
    n = a.shape[0]
    for j in range(p.shape[0]):
        v = p[j]
        base = j * n
        for k in range(n):
            _store_streaming(out, base + k, v * a[k])  # out[j, k] = v * a[k], bypassing the caches
    _store_fence()


def _define_streaming_intrinsics() -> None:
    """Define the two Numba intrinsics the streaming kernel calls (as module globals, read when it compiles):
    ``_store_streaming(out, i, v)``, a store of ``v`` at flat index ``i`` of the C-contiguous ``out`` marked
    ``!nontemporal`` (x86: ``movnt*``, written to memory without first reading the line into the caches),
    and ``_store_fence()``, a sequentially consistent fence (x86: ``mfence``) that makes those weakly
    ordered stores visible before the thread reports its task done."""
    global _store_streaming, _store_fence
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def _store_streaming(typingctx, arr, idx, val):
        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = builder.gep(ary.data, [args[1]])
            st = builder.store(args[2], ptr)
            st.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
            return context.get_dummy_value()
        return types.void(arr, idx, val), codegen

    @intrinsic
    def _store_fence(typingctx):
        def codegen(context, builder, signature, args):
            builder.fence("seq_cst")
            return context.get_dummy_value()
        return types.void(), codegen


def _get_jit_outer_stream():
    """The Numba-compiled :func:`_outer_loop_stream` (streaming stores, ``nogil``), or False.

    Built only when the plain kernel is (``JACOBIAN_BP_JIT``); checked once against the plain
    kernel on a small slab (bit for bit), else not used."""
    global _jit_outer_stream
    if _jit_outer_stream is None:
        _jit_outer_stream = False
        if not _get_jit_outer():
            return _jit_outer_stream
        try:
            import numba
            from numba import types

            _define_streaming_intrinsics()
            vec = types.Array(types.float64, 1, "C", readonly=True)
            sig = types.void(types.Array(types.float64, 2, "C"), vec, vec)
            fn = None
            for cache in (True, False):
                try:
                    fn = numba.njit(sig, nogil=True, cache=cache, fastmath=False, boundscheck=False)(_outer_loop_stream)
                    break
                except Exception:  # noqa: BLE001 - any compiler failure means: use the plain kernel
                    fn = None
            if fn is not None:
                rng = np.random.default_rng(0)
                p, a = rng.standard_normal(7), rng.standard_normal(13)
                got, ref = np.empty((7, 13)), np.empty((7, 13))
                fn(got, p, a)
                _jit_outer(ref, p, a)
                if np.array_equal(got.view(np.int64), ref.view(np.int64)):
                    _jit_outer_stream = fn
        except Exception:  # noqa: BLE001 - llvmlite/numba without these features: the plain kernel
            _jit_outer_stream = False
    return _jit_outer_stream


def _last_level_cache_bytes() -> int:
    """The size of the largest CPU cache (Linux sysfs), else 32 MiB."""
    best = 0
    try:
        base = "/sys/devices/system/cpu/cpu0/cache"
        for entry in os.listdir(base):
            if entry.startswith("index"):
                with open(os.path.join(base, entry, "size")) as fh:
                    text = fh.read().strip().upper()
                mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
                best = max(best, int(text.rstrip("KMG")) * mult)
    except (OSError, ValueError):
        best = 0
    return best or 32 * 1024**2


STREAM_MIN_BYTES = 2 * _last_level_cache_bytes()
"""Materializations of at least this many bytes (twice the last-level cache) write their large
outer-product slabs with streaming (non-temporal) stores (:func:`outer_into` with ``stream=True``):
such a result cannot stay in the cache, and skipping the read-for-ownership of each cache line
halves the memory traffic (LeNet-300-100's J_θ Z[L] of 64 samples, 1.37 GB: 164-208 ms against
180-350 ms).  A smaller result (one sample's 21.3 MB on a 32 MB L3) is written with ordinary
stores: on a quiet machine it stays in the cache, where they run at cache speed (0.4-0.6 ms for
21.3 MB on two cores, against about 1 ms streamed to memory)."""


STREAM_TRIAL_MIN_BYTES = _last_level_cache_bytes() // 4
"""Materializations between this size (a quarter of the last-level cache) and :data:`STREAM_MIN_BYTES` may or
may not stay in the cache, depending on how much of it the other processes of a shared machine leave free:
ordinary stores won (0.4-0.6 ms against 1.0 ms for LeNet-300-100's 21.3 MB J_θ z[L] on a quiet machine) and
lost (1.9-2.1 ms against 1.55-1.8 ms, medians, when the same write filled the cache at 1.1-1.3 ms) on the
same kind of machine.  In this band :class:`StoreChooser` times both kinds of store on this machine and
keeps the faster one (both write bitwise the same numbers)."""

STORE_POLICY = os.environ.get("JACOBIAN_BP_STREAM", "auto").strip().lower() or "auto"
if STORE_POLICY not in ("auto", "stream", "plain"):  # tested in a subprocess (tests/test_fast_paths.py)
    import warnings

    warnings.warn(f"jacobian_bp: JACOBIAN_BP_STREAM must be auto, stream or plain, received {STORE_POLICY!r}; using auto")
    STORE_POLICY = "auto"
"""``"auto"`` (the default: by size, and in the band above by timing), ``"stream"`` (always streaming
stores for the large outer-product slabs) or ``"plain"`` (never); from ``JACOBIAN_BP_STREAM``."""


class StoreChooser:
    r"""Ordinary or streaming stores for a materialization in the band
    :data:`STREAM_TRIAL_MIN_BYTES` :math:`\le` size :math:`<` :data:`STREAM_MIN_BYTES`, chosen by timing.

    The writes are grouped by the power of two of their size and their number of threads.  For each group the first :attr:`TRIALS` materializations
    of each kind alternate (ordinary first); then the kind with the smaller median time per byte is used for
    the next :attr:`REVISIT` materializations of that group, after which both are timed again (a shared
    machine's free cache changes).  Only the choice of store depends on the timings, never a number of the
    result: both kernels write the same products (tests/test_fast_paths.py checks the bits).
    """

    TRIALS = 5
    REVISIT = 500

    def __init__(self):
        self._lock = threading.Lock()
        self._groups: dict[int, dict] = {}

    def _group(self, nbytes: int, threads: int) -> dict:
        key = (int(nbytes).bit_length(), int(threads))
        return self._groups.setdefault(key, {"plain": [], "stream": [], "choice": None, "used": 0})

    def choose(self, nbytes: int, threads: int = 1) -> tuple[bool, bool]:
        """``(stream, timed)``: whether to write with streaming stores, and whether to time this write
        and report it to :meth:`record` (only while the two kinds are being compared)."""
        with self._lock:
            g = self._group(nbytes, threads)
            if g["choice"] is not None:
                g["used"] += 1
                if g["used"] <= self.REVISIT:
                    return g["choice"], False
                g.update(plain=[], stream=[], choice=None, used=0)
            return len(g["stream"]) < len(g["plain"]), True

    def record(self, nbytes: int, stream: bool, seconds: float, threads: int = 1) -> None:
        """Report the time of a write that :meth:`choose` asked to be timed."""
        if not (seconds >= 0.0) or nbytes <= 0:
            return
        with self._lock:
            g = self._group(nbytes, threads)
            if g["choice"] is not None:
                return
            g["stream" if stream else "plain"].append(seconds / nbytes)
            if len(g["plain"]) >= self.TRIALS and len(g["stream"]) >= self.TRIALS:
                g["choice"] = bool(np.median(g["stream"]) < np.median(g["plain"]))
                g["used"] = 0

    def choice(self, nbytes: int, threads: int = 1) -> bool | None:
        """The kind in use for sizes like ``nbytes`` written on ``threads`` threads (True: streaming), None while
        both are being timed."""
        with self._lock:
            return self._group(nbytes, threads)["choice"]


_CHOOSER = StoreChooser()
_streaming: contextvars.ContextVar = contextvars.ContextVar("jacobian_bp_streaming", default=None)


class _StoreKind:
    """The context of one materialization whose kind of store was decided (see :func:`store_kind`)."""

    __slots__ = ("nbytes", "stream", "timed", "threads", "token", "start")

    def __init__(self, nbytes: int, stream: bool, timed: bool, threads: int = 1):
        self.nbytes, self.stream, self.timed, self.threads = nbytes, stream, timed, threads

    def __enter__(self) -> "_StoreKind":
        self.token = _streaming.set(self.stream)
        self.start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        _streaming.reset(self.token)
        if self.timed and exc_type is None:
            _CHOOSER.record(self.nbytes, self.stream, time.perf_counter() - self.start, self.threads)


_ORDINARY = contextlib.nullcontext()


def store_kind(nbytes: int, threads: int = 1) -> contextlib.AbstractContextManager:
    """A context manager around one materialization of ``nbytes`` bytes on ``threads`` threads that decides, once for all of its
    large outer-product slabs, whether they are written with streaming stores (:func:`streaming_stores`
    reads it): by :data:`STORE_POLICY`, by the size (:data:`STREAM_MIN_BYTES` and above: streaming; below
    :data:`STREAM_TRIAL_MIN_BYTES`: ordinary, and then nothing is set) and in the band between by
    :class:`StoreChooser`, to which a write it asked to time is reported on a normal exit."""
    policy = STORE_POLICY
    if policy in ("stream", "plain"):
        return _StoreKind(nbytes, policy == "stream", False)
    if nbytes >= STREAM_MIN_BYTES:
        return _StoreKind(nbytes, True, False)
    if nbytes < STREAM_TRIAL_MIN_BYTES or not _get_jit_outer():
        return _ORDINARY  # ordinary stores (streaming_stores decides by size); no streaming twin without numba
    stream, timed = _CHOOSER.choose(nbytes, threads)
    return _StoreKind(nbytes, stream, timed, threads)


def streaming_stores(nbytes: int) -> bool:
    """Whether the large outer-product slabs of a result of ``nbytes`` bytes are written with streaming
    stores: as :func:`store_kind` decided for the materialization under way, else by size alone."""
    decided = _streaming.get()
    if decided is not None:
        return decided
    if STORE_POLICY in ("stream", "plain"):
        return STORE_POLICY == "stream"
    return nbytes >= STREAM_MIN_BYTES


def _get_jit_outer():
    """The Numba-compiled :func:`_outer_loop` (``nogil``: several threads run it at once), or False."""
    global _jit_outer
    if _jit_outer is None:
        import os

        if os.environ.get("JACOBIAN_BP_JIT", "1").strip() in ("0", "false", "no", "off"):
            _jit_outer = False
            return _jit_outer
        try:
            import numba
        except ImportError:
            _jit_outer = False
            return _jit_outer
        from numba import types

        vec = types.Array(types.float64, 1, "C", readonly=True)  # writable arrays convert to it
        sig = types.void(types.Array(types.float64, 2, "C"), vec, vec)
        for cache in (True, False):  # no writable cache directory: compile for this process only
            try:
                _jit_outer = numba.njit(sig, nogil=True, cache=cache, fastmath=False, boundscheck=False)(_outer_loop)
                break
            except Exception as exc:  # noqa: BLE001 - any compiler failure means: use the fallbacks
                err = exc
        else:
            import warnings

            warnings.warn(f"jacobian_bp: the Numba outer-product kernel failed to compile ({err}); using NumPy/BLAS")
            _jit_outer = False
    return _jit_outer


def jit_outer_kernel(stream: bool = False):
    """The compiled outer-product kernel ``kernel(out, p, a)`` (``out`` C-contiguous float64 ``len(p) × len(a)``,
    ``p`` and ``a`` contiguous float64), its streaming twin with ``stream`` when that can be built; None without numba."""
    if not _get_jit_outer():
        return None
    return (_get_jit_outer_stream() or _jit_outer) if stream else _jit_outer


def jit_kernel_available() -> bool:
    """Whether large outer-product slabs are written by the compiled (Numba) kernel."""
    return bool(_get_jit_outer())


def _get_ger():
    global _ger
    if _ger is None:
        from scipy.linalg.blas import dger

        _ger = dger
    return _ger


def outer_into(out: np.ndarray, p: np.ndarray, a: np.ndarray, stream: bool = False) -> None:
    r"""Write :math:`\mathbf p\,\mathbf a^\top` into the 2-D float64 view ``out`` (``len(p) × len(a)``).

    Large C-contiguous slabs go to the compiled kernel or BLAS ``dger`` (see the module
    docstring), others to NumPy's broadcast multiply; all give bitwise the same products.
    With ``stream`` (a large materialization, see :data:`STREAM_MIN_BYTES`) the compiled kernel
    writes with streaming stores when it can be built: the same products, not kept in the caches.
    """
    if out.shape != (p.shape[0], a.shape[0]):
        raise ValueError(f"outer_into: expected out of shape {(p.shape[0], a.shape[0])}, received {out.shape}")
    large = out.size >= KERNEL_MIN_SIZE and out.flags.c_contiguous and out.dtype == np.float64 \
        and p.dtype == np.float64 and a.dtype == np.float64
    if large and _get_jit_outer():
        kernel = (_get_jit_outer_stream() or _jit_outer) if stream else _jit_outer
        kernel(out, np.ascontiguousarray(p), np.ascontiguousarray(a))
        return
    if large and blas_threads_controllable():
        slab = out.T  # Fortran-ordered (len(a) × len(p)): dger updates it in place
        slab.fill(0.0)
        res = _get_ger()(1.0, a, p, a=slab, overwrite_a=True)
        if res is not slab and not np.shares_memory(res, slab):  # pragma: no cover - a wrapper that copied
            slab[...] = res
        return
    np.multiply(p[:, None], a[None, :], out=out)


_FLOAT_MAX = float(np.finfo(np.float64).max)


def all_finite(a) -> bool:
    r"""Whether every entry of the numeric array ``a`` is finite (no NaN, no :math:`\pm\infty`).

    The same answer as ``np.all(np.isfinite(a))`` (the fallback), without its boolean temporary: for a
    contiguous float64 array the sum of squares :math:`\sum_i a_i^2` is formed by one BLAS ``ddot`` (one
    pass; about half the time of a plain sum, 8 against 17 µs for a 64 × 784 batch, and it raises no
    floating-point warning).  A NaN or infinite entry makes it NaN or infinite, so a finite sum proves every
    entry finite; a non-finite one (an invalid entry, or entries above about :math:`10^{154}` whose squares
    overflow) sends the array to the entrywise test, which decides.  Object (SymPy) arrays count as finite:
    they are not checked here.
    """
    a = np.asarray(a)
    if a.dtype == np.float64:
        if a.flags.c_contiguous or a.flags.f_contiguous:
            v = a.ravel(order="K")  # a view: no copy
            s = float(np.dot(v, v))
            if s <= _FLOAT_MAX:  # finite (False for NaN and for +inf)
                return True
    elif a.dtype == object:
        return True
    return bool(np.all(np.isfinite(a)))


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


def _blas_controller():
    """A ``threadpoolctl`` controller of the loaded BLAS libraries, or None without threadpoolctl."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
            return None
        import scipy.linalg.blas  # noqa: F401  (load SciPy's BLAS before the controller scans)

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller or None


def _blas_threads(ctl) -> int:
    """The largest thread count among the BLAS libraries (a few microseconds: no library scan)."""
    counts = [lib.get_num_threads() for lib in ctl.lib_controllers]
    return max((c for c in counts if c is not None), default=1)


_NO_LIMIT = contextlib.nullcontext()


def blas_limit(n: int) -> contextlib.AbstractContextManager:
    """A context manager that limits the BLAS libraries to at most ``n`` threads for its duration.

    A no-op without ``threadpoolctl`` (the ``fast`` extra), when ``n`` is at least the number
    of CPUs (free: BLAS was not told to use more, e.g. by ``OPENBLAS_NUM_THREADS``) or when BLAS
    already uses at most ``n`` threads (a few microseconds); otherwise ``threadpoolctl`` sets the
    limit (some tens of microseconds) and restores the previous counts on exit.
    """
    if n >= _cpu_total:  # BLAS does not start more threads than there are CPUs (unless told to)
        return _NO_LIMIT
    ctl = _blas_controller()
    if ctl is None or _blas_threads(ctl) <= n:
        return _NO_LIMIT
    return ctl.limit(limits=n)


_blas_original: list | None = None  # [(library controller, its thread count before set_blas_threads)]


def set_blas_threads(n: int | None) -> bool:
    """Limit the BLAS libraries to at most ``n`` threads from now on (process-wide); None restores them.

    Called by :func:`jacobian_bp.backend.parallel.set_num_threads`, so that ``set_num_threads(1)`` keeps
    every BLAS call on one thread -- gradients and products included, not only materializations.  The
    counts in force before the first call are remembered and put back by ``set_blas_threads(None)``
    (or by a count of at least the original one).  Returns whether BLAS could be controlled
    (``threadpoolctl`` installed, the ``fast`` extra).
    """
    global _blas_original
    ctl = _blas_controller()
    if ctl is None:
        return False
    if _blas_original is None:
        _blas_original = [(lib, lib.get_num_threads()) for lib in ctl.lib_controllers]
    for lib, orig in _blas_original:
        if orig is None:
            continue
        lib.set_num_threads(orig if n is None else min(int(n), orig))
    if n is None:
        _blas_original = None
    return True


def blas_single_threaded() -> contextlib.AbstractContextManager:
    """Limit the BLAS libraries to one thread for the duration (no-op without ``threadpoolctl``)."""
    return blas_limit(1)
