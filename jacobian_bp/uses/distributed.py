r"""Past one machine: per-sample gradients, the batch Jacobian, the empirical NTK, Gauss--Newton
products and the verification report over a whole data set, as :mod:`dask.array` objects.

Each is a stack or a sum over the samples, so each task runs this package's single-machine function
(structured per-layer formulas, never dense per-sample Jacobians) on a chunk of ``chunks`` samples:

* per-sample gradients ``(N, |θ|)`` and the batch Jacobian ``(N·n_L, |θ|)`` (rows sample-major):
  block ``c`` is :func:`jacobian_bp.engine.per_sample.per_sample_gradients` /
  :func:`~jacobian_bp.engine.per_sample.batch_jacobian` of chunk ``c`` (Damadi eq. (1) unreduced, Alg. 1 line 7);
* the empirical NTK ``(N·n_L)²``: block :math:`(I, J)` is :math:`\mathbf J_I\mathbf J_J^\top`.  On the
  diagonal it is :func:`jacobian_bp.uses.curvature.empirical_ntk` of chunk ``I`` (the same chunk gives
  the same bits); above it the Gram assembly of ``EmpiricalNTKOperator._dense`` across two chunks: per
  Dense stage :math:`(\mathbf P_{l,i}\otimes\mathbf a_i^\top)(\mathbf P_{l,j}\otimes\mathbf a_j^\top)^\top
  = (\mathbf a_i^\top\mathbf a_j + 1)\,\mathbf P_{l,i}\mathbf P_{l,j}^\top` with the left products
  :math:`\mathbf P_{l,i} = \mathbf J_{\mathbf z^{[l]}}\mathbf z_i^{[L]}` (``n_L × n_l`` per sample), other
  stages through their materialized Jacobian columns; below it the transposes (exactly symmetric);
* Gauss--Newton :math:`r_N\sum_i\mathbf J_i^\top\mathbf H_i\mathbf J_i` (materialized or as products) and
  NTK products :math:`\mathbf J(\mathbf J^\top\mathbf u)` as dask reductions over chunks; chunk ``c``'s
  product, reduced by :math:`r_{N_c}` (``1/N_c`` for a mean), is weighted by :math:`r_N/r_{N_c}`;
* :func:`verify_dataset`: :func:`jacobian_bp.verify` per chunk, verdicts combined.

``X``/``Y`` are NumPy or dask arrays in the convention's layout (:meth:`Network.as_batch`); parameters
are validated once.  Before the graph is built one task's bytes are checked against the memory budget
(:func:`task_budget`: this process's and every worker's) with a refusal naming the ``chunks`` that
fit; inside the tasks the single-machine functions ask the guard again.  The arrays run on the active
``dask.distributed`` client, else on dask's default scheduler; :func:`client` starts a ``LocalCluster``
or connects to a scheduler.  :func:`compute` and :func:`to_zarr` (atomic, via ``path + ".tmp"``) show a
progress bar when stderr is a terminal; these cluster-side functions live in :mod:`.dask_cluster` and are
re-exported here.  Optional extra: ``pip install -e ".[dask]"``; nothing else in
the package imports this module.
"""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ModuleNotFoundError(
        "jacobian_bp.uses.distributed needs dask: pip install -e \".[dask]\" "
        "(dask[array], distributed, zarr)") from exc

from ..errors import DataError, MemoryBudgetError, ShapeError, UnsupportedInputError
from ..backend.guard import check_bytes, get_memory_budget, memory_budget
from ..engine import per_sample as _per_sample_engine
from ..engine.params import ValidatedParams
from ..engine.sweeps import linearize
from ..layers.dense import Dense
from ..oracles.verify import VerificationReport, verify
from .curvature import empirical_ntk as _ntk_operator
from .curvature import ntk_factors, ntk_gram
from .curvature import gauss_newton as _ggn_operator
from .lazy import BatchJacobianOperator
from .dask_cluster import (MemoryBudgetPlugin, active_client, client, compute, set_worker_memory_budget, task_budget,
                           to_zarr)

__all__ = ["per_sample_gradients", "batch_jacobian", "empirical_ntk", "ntk_matvec", "gauss_newton",
           "gauss_newton_matvec", "verify_dataset", "DatasetVerification", "client", "active_client",
           "set_worker_memory_budget", "MemoryBudgetPlugin", "TaskMemoryBudgetError", "compute", "to_zarr",
           "task_budget"]

_BYTES = 8  # float64


# ---------------------------------------------------------------------------- what every task carries
class _Model:
    """The network and its validated canonical parameters, shipped once to every worker.

    :class:`~jacobian_bp.engine.params.ValidatedParams` are keyed to the network object's ``id``,
    which changes when the pair is unpickled in a worker; :meth:`params` re-keys them there so the
    single-machine functions skip validation (done once, in :func:`_prepare`).
    """

    def __init__(self, network, canon: dict, budget: int):
        self.network = network
        self.canon = dict(canon)
        self.budget = budget  # the budget checked up front; tasks never exceed it

    def params(self) -> ValidatedParams:
        out = ValidatedParams(self.canon)
        out.network_id = id(self.network)
        return out

    def layout(self, Xb: np.ndarray, Yb: np.ndarray | None = None):
        """A batch-first chunk back in the convention's layout (what the single-machine functions take)."""
        if self.network.convention.batch_axis == "first":
            return Xb, Yb
        return np.moveaxis(Xb, 0, -1), (None if Yb is None else Yb.T)

    def guard(self):
        """The budget inside a task: the smaller of the one checked up front and the worker's own."""
        return memory_budget(min(self.budget, get_memory_budget()))


def _task(fn):
    """A task function run under ``model.guard()``, whose memory refusal travels back to the client as :class:`TaskMemoryBudgetError`."""

    @functools.wraps(fn)
    def run(model: _Model, *args):
        try:
            with model.guard():
                return fn(model, *args)
        except TaskMemoryBudgetError:
            raise
        except MemoryBudgetError as exc:
            refusal = f"in a task: {exc}"
        # raised outside the handler, so that no unpicklable __context__ travels along
        raise TaskMemoryBudgetError(refusal)

    return run


class TaskMemoryBudgetError(MemoryBudgetError):
    """A :class:`~jacobian_bp.errors.MemoryBudgetError` raised inside a task, picklable by ``distributed``:
    its ``tblib`` unpickler calls ``cls.__new__(cls, *args)``, which for a ``MemoryError`` subclass is
    ``MemoryError.__new__`` and refused by Python ("not safe"); ``BaseException.__new__`` is safe."""

    def __new__(cls, *args, **kwargs):
        return Exception.__new__(cls, *args)


@dataclass
class _Prepared:
    model: object  # dask.delayed(_Model)
    Xb: "da.Array"  # batch-first, chunked along the samples only
    Yb: "da.Array | None"
    N: int
    starts: list[int]
    sizes: list[int]
    budget: int  # the budget one task must respect (task_budget at construction)


def _check_chunks(chunks) -> int:
    if isinstance(chunks, (bool, np.bool_)) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
        raise DataError(f"distributed: chunks must be a positive integer number of samples, received {chunks!r}")
    return int(chunks)


def _check_task(estimate, c: int, N: int, what: str, budget: int, n_out: int = 1) -> None:
    """Refuse up front when one task of ``c`` samples would exceed ``budget``; name the ``chunks`` that fit.

    ``estimate(c)`` is one task's bytes; ``what`` names the task (``{c}`` and ``{cn}`` = ``c·n_out`` filled in).
    """
    c = min(c, N)
    try:
        with memory_budget(budget):
            check_bytes(estimate(c), what.format(c=c, cn=c * n_out))
    except MemoryBudgetError as exc:
        fit = 0
        lo, hi = 1, c
        while lo <= hi:  # the largest chunk that fits (estimates grow with the chunk)
            mid = (lo + hi) // 2
            if estimate(mid) <= budget:
                fit, lo = mid, mid + 1
            else:
                hi = mid - 1
        hint = (f"pass a smaller chunks= (at most {fit} samples per chunk fit)" if fit
                else "even one sample per chunk does not fit; raise the budget")
        raise MemoryBudgetError(f"{exc}; {hint}") from None


def _activation_bytes(network, c: int) -> int:
    """Rough bytes of a chunk's forward cache and sweeps: three arrays per stage output and the input."""
    sizes = [int(np.prod(network.input_shape))] + [int(np.prod(w)) for w in network.widths]
    return 3 * c * sum(sizes) * _BYTES


def _prepare(network, X, Y, params, chunks, need_y: bool, estimate, what: str, n_out: int = 1) -> _Prepared:
    """Validate the data and the parameters once; chunk the samples; check one task's bytes
    (:func:`_check_task`); wrap the model for the workers."""
    if not all(hasattr(network, m) for m in ("as_batch", "validated_params", "convention")):
        raise UnsupportedInputError(f"distributed: expected a jacobian_bp Network, received {type(network).__name__}")
    c = _check_chunks(chunks)
    if getattr(network, "couples_samples", False):
        # a chunk would normalize with its own batch statistics: the results would silently differ from the batch's
        raise UnsupportedInputError(
            f"distributed: network {getattr(network, 'name', '')!r} couples its samples (batch normalization in "
            "training mode), so chunks of the data set cannot be computed apart; use the single-machine functions on the batch")
    if need_y and Y is None:
        raise DataError("distributed: targets Y are required")
    canon = network.validated_params(params)
    if isinstance(X, da.Array) or isinstance(Y, da.Array):
        Xb, Yb = _dask_batch_first(network, X, Y)
    else:
        Xn, Yn, _ = network.as_batch(X, Y)  # validates shapes, finiteness and targets
        if Xn.dtype == object or (Yn is not None and Yn.dtype == object):
            raise UnsupportedInputError(f"network {network.name!r}: symbolic inputs; the distributed path is numeric only")
        Xb = da.from_array(np.ascontiguousarray(Xn), chunks=(c,) + Xn.shape[1:])
        Yb = None if Yn is None else da.from_array(np.ascontiguousarray(Yn), chunks=(c,) + Yn.shape[1:])
    Xb = Xb.rechunk((c,) + Xb.shape[1:])
    if Yb is not None:
        Yb = Yb.rechunk((c,) + Yb.shape[1:])
    N = int(Xb.shape[0])
    if N == 0:
        raise DataError(f"network {network.name!r}: empty batch (N = 0)")
    sizes = [int(s) for s in Xb.chunks[0]]
    starts = [int(s) for s in np.cumsum([0] + sizes[:-1])]
    budget = task_budget()
    _check_task(estimate, c, N, what, budget, n_out)
    model = _Model(network, canon, budget)
    wrapped = dask.delayed(model, name=f"jacobian-bp-model-{uuid.uuid4().hex}", traverse=False)
    return _Prepared(wrapped, Xb, Yb, N, starts, sizes, budget)


def _dask_batch_first(network, X, Y):
    """Batch-first dask arrays from dask inputs in the convention's layout (values validated in the tasks)."""
    first = network.convention.batch_axis == "first"
    X = X if isinstance(X, da.Array) else da.from_array(np.asarray(X))
    Xb = X if first or X.ndim < 2 else da.moveaxis(X, -1, 0)
    Y = None if Y is None else (Y if isinstance(Y, da.Array) else da.from_array(np.asarray(Y)))
    Yb = None if Y is None else (Y if first or Y.ndim != 2 else Y.T)
    if tuple(Xb.shape[1:]) != tuple(network.input_shape) or (
            Yb is not None and tuple(Yb.shape) != (Xb.shape[0],) + tuple(network.output_shape)):
        raise ShapeError(f"network {network.name!r}: expected a batch of inputs of shape {network.input_shape} and "
                         f"targets of shape {network.output_shape} (batch axis {network.convention.batch_axis}), "
                         f"received {X.shape} and {None if Y is None else Y.shape}")
    return Xb, Yb


def _blocks(arr):
    return [] if arr is None else list(arr.to_delayed().ravel())


# ---------------------------------------------------------------------------- per-chunk tasks
# Each runs in a worker under _Model.guard (see _task), on a batch-first chunk put back in the convention's layout.
@_task
def _psg_task(model: _Model, Xb, Yb):
    return _per_sample_engine.per_sample_gradients(model.network, *model.layout(Xb, Yb), model.params())


@_task
def _jacobian_task(model: _Model, Xb):
    J = _per_sample_engine.batch_jacobian(model.network, model.layout(Xb)[0], model.params())
    return J.reshape(Xb.shape[0] * model.network.n_out, model.network.n_params)


@_task
def _ntk_diagonal_task(model: _Model, Xb):
    return _ntk_operator(model.network, model.layout(Xb)[0], model.params()).to_dense()


@_task
def _ntk_factors_task(model: _Model, Xb):
    """A chunk's NTK factors (:func:`jacobian_bp.uses.curvature.ntk_factors`)."""
    return ntk_factors(linearize(model.network, model.layout(Xb)[0], model.params()))


@_task
def _ntk_cross_task(model: _Model, FI, FJ):
    r"""Off-diagonal NTK block :math:`\mathbf J_I\mathbf J_J^\top` from the two chunks' factors (:func:`~jacobian_bp.uses.curvature.ntk_gram`)."""
    return ntk_gram(FI, FJ)


@_task
def _ggn_task(model: _Model, Xb, Yb, weight: float):
    return _ggn_operator(model.network, *model.layout(Xb, Yb), model.params()).to_dense() * weight


@_task
def _ggn_matvec_task(model: _Model, Xb, Yb, v, weight: float):
    op = _ggn_operator(model.network, *model.layout(Xb, Yb), model.params())
    return (op.matvec(v) if v.ndim == 1 else op.matmat(v)) * weight


@_task
def _jt_task(model: _Model, Xb, u):
    """:math:`\\mathbf J_c^\\top\\mathbf u_c` for one chunk (the reverse sweep)."""
    op = BatchJacobianOperator(model.network, model.layout(Xb)[0], model.params())
    return op.rmatvec(u) if u.ndim == 1 else op.rmatmat(u)


@_task
def _j_task(model: _Model, Xb, g):
    """:math:`\\mathbf J_c\\mathbf g` for one chunk (forward mode)."""
    op = BatchJacobianOperator(model.network, model.layout(Xb)[0], model.params())
    return op.matvec(g) if g.ndim == 1 else op.matmat(g)


@_task
def _verify_task(model: _Model, Xb, Yb, kwargs: dict):
    return verify(model.network, *model.layout(Xb, Yb), model.params(), **kwargs)


def _stack(tasks, shapes, axis=0):
    arrays = [da.from_delayed(t, shape=s, dtype=np.float64) for t, s in zip(tasks, shapes)]
    return arrays[0] if len(arrays) == 1 else da.concatenate(arrays, axis=axis)


# ---------------------------------------------------------------------------- public functions
def per_sample_gradients(network, X, Y, params, chunks: int = 256) -> "da.Array":
    r"""Per-sample gradients :math:`(\mathbf J_\theta\mathbf z_i^{[L]})^\top\nabla_{\mathbf z_i^{[L]}}\ell_i`, ``(N, |θ|)``, lazily.

    Parameters
    ----------
    network : Network
    X, Y : array or dask.array
        The data set in the convention's layout (one sample counts as ``N = 1``).
    params : dict
        Parameters in the convention's layout (validated once).
    chunks : int
        Samples per task.  One task holds ``chunks × |θ|`` numbers plus the chunk's forward cache.

    Returns
    -------
    dask.array.Array, shape (N, |θ|), chunks ``(chunks, |θ|)``
        Block ``c`` is :func:`jacobian_bp.engine.per_sample.per_sample_gradients` of chunk ``c``.

    Raises
    ------
    MemoryBudgetError
        One task would exceed the memory budget (:func:`task_budget`); the message says which ``chunks`` fit.
    """
    P = network.n_params
    prep = _prepare(network, X, Y, params, chunks, True,
                    lambda c: c * P * _BYTES + _activation_bytes(network, c),
                    "per-sample gradients of a chunk ({c} x %d)" % P)
    task = dask.delayed(_psg_task, pure=True)
    tasks = [task(prep.model, x, y) for x, y in zip(_blocks(prep.Xb), _blocks(prep.Yb))]
    return _stack(tasks, [(n, P) for n in prep.sizes])


def batch_jacobian(network, X, params, chunks: int = 256) -> "da.Array":
    r"""The materialized batch Jacobian :math:`\mathbf J_\theta\mathbf Z^{[L]}`, ``(N·n_L, |θ|)``, lazily.

    Rows are sample-major (row ``i·n_L + k`` is :math:`z^{[L]}_{i,k}`), columns in the convention's θ
    order; block ``c`` is :func:`jacobian_bp.engine.per_sample.batch_jacobian` of chunk ``c``
    (``chunks · n_L · |θ|`` numbers per task -- choose ``chunks`` accordingly).
    """
    P, nL = network.n_params, network.n_out
    prep = _prepare(network, X, None, params, chunks, False,
                    lambda c: c * nL * P * _BYTES + _activation_bytes(network, c) * (1 + nL),
                    "the batch Jacobian of a chunk ({c} x %d x %d)" % (nL, P))
    task = dask.delayed(_jacobian_task, pure=True)
    tasks = [task(prep.model, x) for x in _blocks(prep.Xb)]
    return _stack(tasks, [(n * nL, P) for n in prep.sizes])


def _ntk_task_bytes(network, c: int) -> int:
    """One NTK task: the block and its temporaries (five ``(c·n_L)²`` arrays) plus two chunks' factors."""
    nL = network.n_out
    dense_width = sum(int(np.prod(st.layer.out_shape)) * nL + int(np.prod(st.layer.in_shape))
                      for st in network.stages if type(st.layer) is Dense)
    generic = sum(e.size for e in network.entries if type(network.stages[e.stage - 1].layer) is not Dense) * nL
    return 5 * (c * nL) ** 2 * _BYTES + 2 * c * (dense_width + generic) * _BYTES + _activation_bytes(network, c) * (1 + nL)


def empirical_ntk(network, X, params, chunks: int = 256) -> "da.Array":
    r"""The empirical NTK :math:`\boldsymbol\Theta = \mathbf J\mathbf J^\top`, ``(N·n_L) × (N·n_L)``, blockwise and lazily.

    Block :math:`(I, J)` of chunks is :math:`\mathbf J_I\mathbf J_J^\top`: on the diagonal
    :func:`jacobian_bp.uses.curvature.empirical_ntk` of chunk ``I`` materialized; above it the Gram
    assembly from both chunks' left products and layer inputs (see the module docstring); below
    it the transposes.  Rows are sample-major.  One task holds about five ``(chunks·n_L)²`` arrays.
    """
    nL = network.n_out
    prep = _prepare(network, X, None, params, chunks, False,
                    lambda c: _ntk_task_bytes(network, c),
                    "an empirical NTK block of chunks of {c} samples ({cn} x {cn}, with its factors)", nL)
    xs = _blocks(prep.Xb)
    diag = dask.delayed(_ntk_diagonal_task, pure=True)
    factors = [dask.delayed(_ntk_factors_task, pure=True)(prep.model, x) for x in xs]
    cross = dask.delayed(_ntk_cross_task, pure=True)
    m = [n * nL for n in prep.sizes]
    rows = [[None] * len(xs) for _ in xs]
    for I in range(len(xs)):
        rows[I][I] = da.from_delayed(diag(prep.model, xs[I]), shape=(m[I], m[I]), dtype=np.float64)
        for J in range(I + 1, len(xs)):
            blk = da.from_delayed(cross(prep.model, factors[I], factors[J]), shape=(m[I], m[J]), dtype=np.float64)
            rows[I][J] = blk
            rows[J][I] = blk.T
    return da.block(rows)


def ntk_matvec(network, X, params, u, chunks: int = 256) -> "da.Array":
    r""":math:`\boldsymbol\Theta\mathbf u = \mathbf J(\mathbf J^\top\mathbf u)` without the kernel: a reduction and a map over chunks.

    ``u`` has shape ``(N·n_L,)`` or ``(N·n_L, k)`` (rows sample-major).  First
    :math:`\mathbf g = \sum_c\mathbf J_c^\top\mathbf u_c` (one reverse sweep per chunk, summed as a
    dask tree reduction), then :math:`\mathbf J_c\mathbf g` per chunk (forward mode).
    """
    nL, P = network.n_out, network.n_params
    cols = np.shape(u)[1] if np.ndim(u) == 2 else 1
    prep = _prepare(network, X, None, params, chunks, False,
                    lambda c: _activation_bytes(network, c) * 2 + (P + 2 * c * nL) * _BYTES * cols,
                    "an NTK product over a chunk of {c} samples")
    u = _check_vector(u, prep.N * nL, "ntk_matvec: u")
    k = () if u.ndim == 1 else (u.shape[1],)
    ud = da.from_array(u, chunks=(tuple(n * nL for n in prep.sizes),) + ((k[0],) if k else ()))
    jt, jv = dask.delayed(_jt_task, pure=True), dask.delayed(_j_task, pure=True)
    parts = [da.from_delayed(jt(prep.model, x, ub), shape=(P,) + k, dtype=np.float64)
             for x, ub in zip(_blocks(prep.Xb), _blocks(ud))]
    g = da.stack(parts).sum(axis=0)
    gd = g.to_delayed().ravel()[0]
    return _stack([jv(prep.model, x, gd) for x in _blocks(prep.Xb)], [(n * nL,) + k for n in prep.sizes])


def _check_vector(v, rows: int, what: str) -> np.ndarray:
    if isinstance(v, da.Array):
        v = v.compute()
    v = np.asarray(v)
    if v.dtype == object or not np.issubdtype(v.dtype, np.number) or np.iscomplexobj(v):
        raise DataError(f"{what} must be a real numeric array, received dtype {v.dtype}")
    if v.ndim not in (1, 2) or v.shape[0] != rows:
        raise ShapeError(f"{what}: expected shape ({rows},) or ({rows}, k), received {v.shape}")
    if not np.all(np.isfinite(v)):
        raise DataError(f"{what} contains NaN or Inf")
    return v.astype(float, copy=False)


def _chunk_weights(network, prep: _Prepared) -> list[float]:
    """:math:`r_N / r_{N_c}`: a chunk's reduced product rescaled to the reduction of the whole data set."""
    rN = network.reduce_factor(prep.N)
    return [rN / network.reduce_factor(n) for n in prep.sizes]


def gauss_newton(network, X, Y, params, chunks: int = 256) -> "da.Array":
    r"""The materialized Gauss--Newton matrix :math:`r_N\sum_i\mathbf J_i^\top\mathbf H_i\mathbf J_i`, ``|θ| × |θ|``, lazily.

    The sum over chunks of :func:`jacobian_bp.uses.curvature.gauss_newton` ``(...).to_dense()``
    weighted by :math:`r_N/r_{N_c}` (a dask tree reduction); each task holds ``|θ|²`` numbers.
    """
    P, nL = network.n_params, network.n_out
    prep = _prepare(network, X, Y, params, chunks, True,
                    lambda c: 2 * c * nL * P * _BYTES + 2 * P * P * _BYTES + _activation_bytes(network, c) * (1 + nL),
                    "a Gauss-Newton matrix (%d x %d) of a chunk of {c} samples" % (P, P))
    task = dask.delayed(_ggn_task, pure=True)
    parts = [da.from_delayed(task(prep.model, x, y, w), shape=(P, P), dtype=np.float64)
             for x, y, w in zip(_blocks(prep.Xb), _blocks(prep.Yb), _chunk_weights(network, prep))]
    return parts[0] if len(parts) == 1 else da.stack(parts).sum(axis=0)


def gauss_newton_matvec(network, X, Y, params, v, chunks: int = 256) -> "da.Array":
    r""":math:`\mathbf G\mathbf v` for ``v`` of shape ``(|θ|,)`` or ``(|θ|, k)``: per chunk one forward- and one
    reverse-mode pass (:class:`~jacobian_bp.uses.curvature.GaussNewtonOperator`), weighted by
    :math:`r_N/r_{N_c}` and summed as a dask tree reduction; the matrix is never formed."""
    P, nL = network.n_params, network.n_out
    v = _check_vector(v, P, "gauss_newton_matvec: v")
    k = () if v.ndim == 1 else (v.shape[1],)
    prep = _prepare(network, X, Y, params, chunks, True,
                    lambda c: _activation_bytes(network, c) * 2 + c * nL * nL * _BYTES + 3 * P * _BYTES * (k[0] if k else 1),
                    "a Gauss-Newton product over a chunk of {c} samples")
    vd = dask.delayed(v, name=f"jacobian-bp-vector-{uuid.uuid4().hex}", traverse=False)
    task = dask.delayed(_ggn_matvec_task, pure=True)
    parts = [da.from_delayed(task(prep.model, x, y, vd, w), shape=(P,) + k, dtype=np.float64)
             for x, y, w in zip(_blocks(prep.Xb), _blocks(prep.Yb), _chunk_weights(network, prep))]
    return parts[0] if len(parts) == 1 else da.stack(parts).sum(axis=0)


# ---------------------------------------------------------------------------- verification over a data set
@dataclass
class DatasetVerification:
    """:func:`jacobian_bp.verify` per chunk of a data set, verdicts combined.

    ``chunks`` holds ``(first sample, number of samples, report)``; ``loss`` and ``gradient`` are the
    data set's (reduction :math:`r_N`), combined from the chunks' as :math:`r_N\\sum_c r_{N_c}^{-1}(\\cdot)_c`.
    """

    network: object
    n_samples: int
    loss: float
    gradient: np.ndarray
    chunks: list[tuple[int, int, VerificationReport]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.chunks) and all(r.passed for _, _, r in self.chunks)

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(m for _, _, r in self.chunks for m in r.methods))

    @property
    def skipped(self) -> dict[str, str]:
        return {m: why for _, _, r in self.chunks for m, why in r.skipped.items()}

    def worst(self, method: str) -> float:
        """The largest relative error of ``method`` over every block of every chunk."""
        vals = [r.worst(method) for _, _, r in self.chunks if method in r.methods]
        return max(vals, default=float("nan"))

    def failing(self) -> list[tuple[int, int]]:
        """``(first sample, number of samples)`` of the chunks that did not pass."""
        return [(s, n) for s, n, r in self.chunks if not r.passed]

    def to_text(self) -> str:
        net = self.network
        lines = [f"Verification of {net.name} over a data set: {net.describe()}",
                 f"samples: {self.n_samples} in {len(self.chunks)} chunks   loss: {self.loss:.12g}   "
                 f"‖∇θℓ‖ = {np.linalg.norm(self.gradient):.6g}", "",
                 f"{'method':<20} {'worst rel err':>14}"]
        lines += [f"{m:<20} {self.worst(m):>14.2e}" for m in self.methods]
        lines += [f"{m:<20} skipped: {why}" for m, why in self.skipped.items()]
        lines += [f"FAIL in samples {s}..{s + n - 1}" for s, n in self.failing()]
        lines += ["", f"verdict: {self.verdict}"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def verify_dataset(network, X, Y, params, chunks: int = 256, progress: bool | None = None,
                   **verify_options) -> DatasetVerification:
    r"""Run :func:`jacobian_bp.verify` on every chunk of a data set (in parallel) and combine the verdicts.

    ``verify_options`` go to :func:`jacobian_bp.verify` (``fd_max_coords``, ``use_torch``, ``seed``, ...).
    Computes at once (on the active client or the local scheduler) and returns a
    :class:`DatasetVerification`: PASS when every chunk passes.
    """
    P = network.n_params
    prep = _prepare(network, X, Y, params, chunks, True, lambda c: _activation_bytes(network, c) * 4 + 8 * P * _BYTES,
                    "the verification of a chunk of {c} samples")
    task = dask.delayed(_verify_task, pure=True)
    tasks = [task(prep.model, x, y, dict(verify_options)) for x, y in zip(_blocks(prep.Xb), _blocks(prep.Yb))]
    reports = compute(*tasks, progress=progress)
    weights = _chunk_weights(network, prep)
    loss = float(sum(w * r.loss for w, r in zip(weights, reports)))
    gradient = sum(w * r.gradient for w, r in zip(weights, reports))
    return DatasetVerification(network, prep.N, loss, gradient,
                               [(s, n, r) for s, n, r in zip(prep.starts, prep.sizes, reports)])
