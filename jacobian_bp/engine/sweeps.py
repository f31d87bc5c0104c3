r"""Lazy products with the batch Jacobian :math:`\mathbf J_\theta\mathbf Z^{[L]}`: Algorithm 1 at the cost of backprop.

Materializing :math:`\mathbf J_\theta\mathbf z^{[L]}` costs :math:`n_L\,|\theta|` numbers per
sample; applying it (or its transpose) to one vector costs what backpropagation
costs, because the chain

.. math::

   \mathbf J_{\theta_l}\mathbf z^{[L]}
   = \mathbf J_{\mathbf a^{[L-1]}}\mathbf z^{[L]}\,\mathbf J_{\mathbf z^{[L-1]}}\mathbf a^{[L-1]}
     \cdots \mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}\;\mathbf J_{\theta_l}\mathbf z^{[l]}
   \qquad\text{(Damadi Alg. 1 line 3, corrected)}

is kept as its structured factors (``W``, ``diag f'(z)``, ``I ⊗ aᵀ``, Toeplitz) and applied
to a vector one factor at a time:

* **reverse mode** (:func:`vjp_sweep`): :math:`\mathbf g = \sum_i(\mathbf J_\theta\mathbf z_i^{[L]})^\top\mathbf u_i`,
  factors applied left to right to the row :math:`\mathbf u_i^\top` -- the transposed chain of
  Damadi Alg. 1 line 8, i.e. backpropagation (Ganev Alg. 4/5);
* **forward mode** (:func:`jvp`): :math:`\mathbf t_i = \mathbf J_\theta\mathbf z_i^{[L]}\,\mathbf v`
  for every sample, factors applied right to left to the column :math:`\mathbf v`
  (the directional derivative of the forward pass).

:class:`jacobian_bp.uses.lazy.BatchJacobianOperator` packages both as an :class:`~jacobian_bp.backend.operators.Operator`
of shape ``(N·n_L, |θ|)`` (rows sample-major, columns in the convention's θ order), so that
it chains with the other structured operators and wraps as a SciPy ``LinearOperator``;
:class:`jacobian_bp.uses.lazy.TransposedOperator` is the lazy transpose of any operator.

Layer rules.  The reverse sweep uses each layer's batched ``vjp_input`` / ``vjp_params``, the
forward sweep its ``jvp_params`` / ``jvp_input`` (:mod:`jacobian_bp.layers.base`): each layer states
its own forward-mode rule (Dense :math:`\dot{\mathbf z} = \mathbf W\dot{\mathbf a} + \dot{\mathbf W}\mathbf a + \dot{\mathbf b}`,
elementwise :math:`\dot{\mathbf a} = f'(\mathbf z)\odot\dot{\mathbf z}`, …), and a layer without one
falls back to its structured Jacobian times the tangent, per sample.

Coupled samples.  A layer that couples the samples (``couples_samples = True``: batch normalization in
training mode) gives batched products with its *batch* Jacobian (row ``k`` of its ``vjp_input`` is
:math:`\sum_i(\mathbf J_{\mathbf a_k}\mathbf o_i)^\top\mathbf g_i`), so both sweeps stay exact for such
networks with no change here: the reverse sweep is then :math:`(\mathbf J_\theta\operatorname{vec}\mathbf Z^{[L]})^\top\operatorname{vec}\mathbf D`
and the forward sweep :math:`\mathbf J_\theta\operatorname{vec}\mathbf Z^{[L]}\mathbf v` of the whole batch
(:mod:`jacobian_bp.engine.coupled`).
"""
from __future__ import annotations

import math
import weakref

import numpy as np

from ..errors import DataError, ShapeError, UnsupportedInputError
from ..backend.kernels import outer_into
from ..backend.operators import Operator

# ``Network`` and ``Cache`` in annotations are jacobian_bp.engine.network's; this module is imported by it
# and so never imports it (a network is recognized by what it does).

__all__ = ["vjp_sweep", "jvp", "theta_view", "Linearization", "linearize", "SweepGradient"]


# ---------------------------------------------------------------------------- the linearization point
class Linearization:
    """The data every product with :math:`\\mathbf J_\\theta\\mathbf Z^{[L]}` needs: the network,
    the canonical parameters, the forward cache of a batch and (optionally) its targets.

    Built by :func:`linearize`; shared by the lazy Jacobian, the Gauss--Newton and the NTK
    operators so that the forward pass runs once.
    """

    def __init__(self, network: "Network", canon: dict, cache: "Cache", Yb: np.ndarray | None, single: bool):
        self.network = network
        self.canon = canon
        self.cache = cache
        self.Yb = Yb
        self.single = single

    @property
    def N(self) -> int:
        """Number of samples in the batch."""
        return self.cache.a[0].shape[0]

    @property
    def n_out(self) -> int:
        """:math:`n_L`, the size of :math:`\\mathbf z^{[L]}`."""
        return self.network.n_out

    @property
    def n_params(self) -> int:
        """:math:`|\\theta|`."""
        return self.network.n_params


def linearize(network: "Network", X, params, Y=None, numeric_only: bool = True) -> Linearization:
    r"""Validate ``X`` (and ``Y``) in the convention's batch layout, run the forward pass once.

    Parameters
    ----------
    network : Network
    X : array
        One sample of shape ``network.input_shape`` or a batch laid out per the
        convention's ``batch_axis``.
    params : dict
        Parameters in the convention's layout.
    Y : array, optional
        Targets (needed for the Gauss--Newton matrix, whose :math:`\mathbf H` depends on them).
    numeric_only : bool
        Refuse SymPy (object) parameters or inputs with a ``TypeError`` (the lazy operators are
        numeric); per-sample gradients and the materialized Jacobian also accept them.
    """
    if not all(hasattr(network, m) for m in ("as_batch", "canonical_params", "forward_cache")):
        raise UnsupportedInputError(f"linearize: expected a jacobian_bp Network, received {type(network).__name__}")
    Xb, Yb, single = network.as_batch(X, Y)
    canon = network.canonical_params(params)
    if numeric_only:
        for name, v in canon.items():
            if isinstance(v, np.ndarray) and v.dtype == object:
                raise UnsupportedInputError(f"network {network.name!r}: parameter {name} is symbolic; lazy products are numeric only")
        if Xb.dtype == object:
            raise UnsupportedInputError(f"network {network.name!r}: symbolic inputs; lazy products are numeric only")
    cache = network.forward_cache(Xb, canon)
    return Linearization(network, canon, cache, Yb, single)


# ---------------------------------------------------------------------------- reverse mode
def theta_view(block: np.ndarray, lead: tuple[int, ...], e) -> np.ndarray:
    """View of ``block`` (shape ``lead + (e.size,)``, one parameter entry's θ coordinates)
    shaped ``lead + e.canonical_shape``, so that writing the canonical array into it writes θ.

    The θ coordinates of an entry are its canonical array raveled in ``e.order``; for the
    column-major order the view is the C reshape of the reversed shape, transposed
    (not C-contiguous).
    """
    k = len(lead)
    shape = tuple(e.canonical_shape)
    if e.order == "C":
        return np.reshape(block, lead + shape, copy=False)
    v = np.reshape(block, lead + shape[::-1], copy=False)
    return v.transpose(tuple(range(k)) + tuple(range(k + len(shape) - 1, k - 1, -1)))


def _dense_weight_vjp(G: np.ndarray, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    r""":math:`\sum_i \mathbf g_i\mathbf a_i^\top = \mathbf G^\top\mathbf A` (``n_out × n_in``), into ``out`` when given.

    For one sample this is the outer product :math:`\mathbf g\mathbf a^\top`, written by
    :func:`~jacobian_bp.backend.kernels.outer_into` (the compiled kernel: 300 × 784 in about a third of
    ``einsum``'s time; a BLAS ``gemm`` with inner dimension 1 is slower still): one IEEE product per
    entry, so :math:`g_j\cdot 0 = -0.0` for :math:`g_j<0` where ``einsum`` (which sums into a zero) wrote
    :math:`+0.0` -- numerically the same array.  ``out`` must be
    C-contiguous (the result is then bit-for-bit the one without ``out``).
    """
    if G.dtype == object or A.dtype == object:
        R = G.T @ A
        if out is None:
            return R
        out[...] = R
        return out
    if G.shape[0] == 1:
        if G.dtype == np.float64 and A.dtype == np.float64 and (out is None or out.flags.c_contiguous):
            if out is None:
                out = np.empty((G.shape[1], A.shape[1]))
            outer_into(out, G[0], A[0])  # the compiled kernel for large slabs (backend/kernels.py)
            return out
        return np.einsum("i,j->ij", G[0], A[0], out=out)
    if G.dtype == np.float64 and A.dtype == np.float64 and (out is None or out.flags.c_contiguous):
        # Aᵀ G into the transposed (Fortran-ordered) view of the C-ordered result: the same gemm
        # with its operands packed the other way, bit for bit the numbers of G.T @ A, about a fifth
        # faster for LeNet's 300 × 784 block (tests/test_fast_paths.py checks the bits)
        if out is None:
            out = np.empty((G.shape[1], A.shape[1]))
        np.matmul(A.T, G, out=out.T)
        return out
    return np.matmul(G.T, A, out=out)


class SweepGradient(dict):
    """The blocks of a reverse sweep (a ``dict``), with ``proved_finite``: True when the sweep proved
    every entry of θ finite from bounds (:func:`vjp_sweep`), so that the caller's entrywise check of
    θ is redundant."""

    proved_finite: bool = False


_SAFE_SUM = 1e300
"""A bound below which a sum of products is finite whatever the order and rounding of its terms."""


def _norm(M: np.ndarray) -> float:
    r"""The Frobenius norm :math:`\|\mathbf M\|_F` of a float array from one BLAS ``ddot`` of its entries (NaN or
    :math:`\infty` when an entry is, or when the sum of squares overflows: the bound then fails, never wrongly holds)."""
    v = M.ravel(order="K") if (M.flags.c_contiguous or M.flags.f_contiguous) else M.ravel()
    s = float(np.dot(v, v))
    return math.sqrt(s) if s == s else s


def _post_vjp(post: list, cache: "Cache", l: int, G: np.ndarray) -> np.ndarray:
    r""":meth:`Network.post_vjp` without its list building: :math:`(\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]})^\top`
    applied to each row of ``G``, the parameter-free layers ``post`` of stage ``l`` taken last to first."""
    if post:
        ins = cache.post[l]
        for k in range(min(len(post), len(ins)) - 1, -1, -1):
            O = ins[k + 1] if k + 1 < len(ins) else cache.a[l]
            G = post[k].vjp_input(ins[k], O, G.reshape(O.shape[0], -1), {})
    return G.reshape(G.shape[0], -1)


_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _theta_plan(network: "Network") -> list:
    """``(name, start, stop, canonical_shape, order, entry)`` of every θ entry of ``network``, formed once per
    network (and again whenever its ``entries`` list is replaced): the per-call cost of the θ views."""
    entries = network.entries
    try:
        hit = _PLANS.get(network)
    except TypeError:  # an unhashable or non-weakref-able network: no cache
        hit = None
    if hit is not None and hit[0] is entries:
        return hit[1]
    plan = [(e.name, e.offset, e.offset + e.size, tuple(e.canonical_shape), e.order, e) for e in entries]
    try:
        _PLANS[network] = (entries, plan)
    except TypeError:
        pass
    return plan


_STAGE_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _stage_plan(network: "Network") -> list:
    """``(l, layer, dense, W name, b name or None)`` for the stages ``L, …, 1`` of ``network`` (``dense``: the
    layer's exact type is :class:`~jacobian_bp.layers.dense.Dense`), formed once per network and again when its
    stage list or a stage's layer is replaced."""
    from ..layers.dense import Dense

    stages = network.stages
    try:
        hit = _STAGE_PLANS.get(network)
    except TypeError:
        hit = None
    if hit is not None and hit[0] is stages and len(hit[1]) == len(stages) \
            and all(row[1] is stages[row[0] - 1].layer for row in hit[1]):
        return hit[1]
    plan = []
    for l in range(len(stages), 0, -1):
        layer = stages[l - 1].layer
        dense = type(layer) is Dense
        plan.append((l, layer, dense, network.param_name(l, "W") if dense else None,
                     network.param_name(l, "b") if dense and layer.bias else None))
    try:
        _STAGE_PLANS[network] = (stages, plan)
    except TypeError:
        pass
    return plan


def vjp_sweep(network: "Network", cache: "Cache", canon: dict, D: np.ndarray,
              out: np.ndarray | None = None) -> dict[str, np.ndarray]:
    r"""Reverse-mode product :math:`\sum_i (\mathbf J_\theta\mathbf z_i^{[L]})^\top\mathbf d_i` by one batched sweep.

    Parameters
    ----------
    network : Network
    cache : Cache
        Forward cache of the batch (``network._forward``).
    canon : dict
        Canonical parameters.
    D : ndarray, shape (N, n_L)
        Row ``i`` is the cotangent :math:`\mathbf d_i` of :math:`\mathbf z_i^{[L]}` (for the
        gradient: the reduced :math:`\nabla_{\mathbf z^{[L]}}\ell`).
    out : ndarray, shape (|θ|,), optional
        A θ-vector buffer: every block is written into its place in θ (convention order and
        vec), and the returned arrays are views of it.  This avoids allocating the blocks and
        then copying them into θ (on a 2 MB gradient the fresh pages cost more than the copy).

    Returns
    -------
    dict
        Canonical-layout sums over the batch, keyed by the network's parameter names
        (:meth:`Network.param_name`: ``W1, b1, …``, ``W2.1`` inside a residual block; Ganev Prop. 4.1:
        ``grad_W = grad_Zᵀ A``, ``grad_b = grad_Zᵀ 1``, ``grad_A = grad_Z W``).  A :class:`SweepGradient`:
        with ``out`` and only dense layers, ``proved_finite`` says that every entry is finite, by the
        Cauchy--Schwarz bound :math:`|(\mathbf G^\top\mathbf A)_{jk}| \le \|\mathbf G\|_F\|\mathbf A\|_F` (and
        :math:`|\sum_i g_{ij}| \le \sqrt N\|\mathbf G\|_F`) below :math:`10^{300}` for every layer (finite norms:
        finite entries); every partial sum of the products then stays far below the float64 maximum
        :math:`1.8\cdot 10^{308}`, whatever the order and rounding, so the caller need not read θ again.
    """
    N = cache.a[0].shape[0]
    D = np.asarray(D)
    if D.shape != (N, network.n_out):
        raise ShapeError(
            f"vjp_sweep: expected cotangents of z[{network.L}] of shape {(N, network.n_out)}, received {D.shape}"
        )
    views = None
    if out is not None:
        if not isinstance(out, np.ndarray) or out.shape != (network.n_params,):
            raise ShapeError(f"vjp_sweep: out must be a θ vector of shape ({network.n_params},), "
                             f"received {getattr(out, 'shape', type(out).__name__)}")
        views = {name: (out[start:stop].reshape(shape) if order == "C" else theta_view(out[start:stop], (), e))
                 for name, start, stop, shape, order, e in _theta_plan(network)}
    grads = SweepGradient()
    # the finiteness proof: only with a θ buffer (the gradient's path), and only while every block is a dense one
    proving = views is not None and D.dtype == np.float64

    def put(name: str, value) -> None:
        if views is None:
            grads[name] = value
        else:
            views[name][...] = value
            grads[name] = views[name]

    G = D
    stages = network.stages
    rootN = math.sqrt(N)
    with np.errstate(over="ignore", invalid="ignore"):  # for the bound's norms (an overflow there only drops the proof)
        for l, layer, dense, w_name, b_name in _stage_plan(network):
            A = cache.a[l - 1]
            if dense:  # exact type Dense: a subclass may change vjp_params
                target = None if views is None else views[w_name]
                if target is not None and target.flags.c_contiguous:
                    grads[w_name] = _dense_weight_vjp(G, A, out=target)
                else:
                    put(w_name, _dense_weight_vjp(G, A))
                if proving:
                    # Cauchy-Schwarz over the samples: |Σ_i g_ij a_ik| <= ||G||_F ||A||_F, |Σ_i g_ij| <= √N ||G||_F
                    g_norm = _norm(G) if G.dtype == np.float64 else math.nan
                    a_norm = _norm(A) if A.dtype == np.float64 else math.nan
                    proving = g_norm * a_norm <= _SAFE_SUM and rootN * g_norm <= _SAFE_SUM  # False for NaN
                if b_name is not None:
                    target = None if views is None else views[b_name]
                    if target is not None and G.dtype != object:
                        grads[b_name] = np.add.reduce(G, axis=0, out=target)  # G.sum(axis=0), in place
                    else:
                        put(b_name, G.sum(axis=0))
                if l == 1:
                    break
                G_in = G @ canon[w_name]  # Dense.vjp_input: grad_A = grad_Z W
            else:
                proving = False
                p = network.stage_params(canon, l)
                shapes = layer.param_shapes()
                for k, v in layer.vjp_params(A, cache.z[l], G, p).items():
                    put(network.param_name(l, k), np.asarray(v).reshape(shapes[k]))
                if l == 1:
                    break
                G_in = layer.vjp_input(A, cache.z[l], G, p)
            G = _post_vjp(stages[l - 2].post, cache, l - 1, G_in)
    grads.proved_finite = proving
    return grads


# ---------------------------------------------------------------------------- forward mode
def jvp(network: "Network", cache: "Cache", canon: dict, tangent: dict[str, np.ndarray]) -> np.ndarray:
    r"""Forward-mode product :math:`\mathbf t_i = \mathbf J_\theta\mathbf z_i^{[L]}\,\mathbf v` for every sample.

    Parameters
    ----------
    tangent : dict
        The direction :math:`\mathbf v` in the canonical layout (``network.unpack_canonical(v)``), keyed by
        the network's parameter names.

    Returns
    -------
    ndarray, shape (N, n_L)
        Row ``i`` is the directional derivative of :math:`\mathbf z_i^{[L]}` along ``v``.
    """
    T = None  # the input x does not depend on θ
    for st in network.stages:
        l = st.index
        p = network.stage_params(canon, l)
        dp = {}
        for k, shape in st.layer.param_shapes().items():
            name = network.param_name(l, k)
            v = np.asarray(tangent[name], dtype=float)
            if v.shape != tuple(shape):
                raise ShapeError(f"jvp: tangent {name} expected canonical shape {tuple(shape)}, received {v.shape}")
            dp[k] = v
        A, Z = cache.a[l - 1], cache.z[l]
        out = st.layer.jvp_params(A, Z, dp, p)  # J_θ z · θ̇, then + J_a z · ȧ (the input tangent)
        T = out if T is None else out + st.layer.jvp_input(A, Z, T, p)
        if l == network.L:
            break
        ins = cache.post[l]
        outs = ins[1:] + [cache.a[l]]
        for post, Ain, Oout in zip(st.post, ins, outs):
            T = post.jvp_input(Ain, Oout, T, {})
    return np.asarray(T).reshape(T.shape[0], -1)


