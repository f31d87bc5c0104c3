r"""Per-sample gradients and the materialized batch Jacobian, vectorized over the samples.

Both are products of Damadi's Algorithm 1 kept per sample instead of summed over the batch.

**Per-sample gradients** (:func:`per_sample_gradients`), ``(N, |θ|)``: row ``i`` is

.. math:: \mathbf g_i = (\mathbf J_\theta\mathbf z_i^{[L]})^\top\nabla_{\mathbf z_i^{[L]}}\ell_i
   \qquad\text{(Damadi eq. (1) for sample } i\text{, unreduced)},

so that the network's gradient is :math:`r\sum_i\mathbf g_i` with :math:`r = 1/N` for a mean
reduction and :math:`r = 1` for a sum.  One batched backward sweep computes the deltas
:math:`\boldsymbol\delta^{[l]}_i = \nabla_{\mathbf z_i^{[l]}}\ell_i` of all samples at once
(Ganev Prop. 4.1); a Dense stage then gives every sample's weight block at once as the
outer products :math:`\boldsymbol\delta^{[l]}_i(\mathbf a^{[l-1]}_i)^\top` -- the einsum
``"ni,nj->nij"`` -- (that is :math:`(\mathbf I\otimes\mathbf a_i^{[l-1]\top})^\top\boldsymbol\delta_i^{[l]}`,
Damadi §3.1) and its bias block :math:`\boldsymbol\delta^{[l]}_i`.  Any other parametric
layer (Conv2d) falls back to the generic per-sample path: the layer's own ``vjp_params``
on each one-sample batch.

**Batch Jacobian** (:func:`batch_jacobian`), ``(N, n_L, |θ|)``: sample ``i``'s
:math:`\mathbf J_\theta\mathbf z_i^{[L]}` with the blocks of Alg. 1 line 7,

.. math:: \mathbf J_{\mathbf W^{[l]}}\mathbf z_i^{[L]} = \mathbf P_{l,i}\,(\mathbf I\otimes\mathbf a_i^{[l-1]\top})
   = \mathbf P_{l,i}\otimes\mathbf a_i^{[l-1]\top},\qquad
   \mathbf J_{\mathbf b^{[l]}}\mathbf z_i^{[L]} = \mathbf P_{l,i},

with :math:`\mathbf P_{l,i} = \mathbf J_{\mathbf z^{[l]}}\mathbf z^{[L]}` of sample ``i`` from the
batched left products (reverse mode) -- again one einsum per Dense stage,
``"nki,nj->nkij"``, and the layer's own structured ``jac_params`` per sample otherwise.
The column order and vec (rows or columns of ``W`` stacked) follow the network's convention.

**Coupled samples** (a ``batch_norm`` layer in training mode, :mod:`jacobian_bp.engine.coupled`):
:math:`\mathbf z_i^{[L]}` depends on every sample of the batch, so the per-sample gradient of
:math:`\ell_i` alone is not the row of a batch quantity -- :func:`per_sample_gradients` refuses (one
line, :class:`~jacobian_bp.errors.UnsupportedInputError`) -- while the batch Jacobian is still defined:
:func:`batch_jacobian` returns :math:`\mathbf J_\theta\mathbf z_i^{[L]}` *of the whole batch* for each ``i``,
formed by Algorithm 1 at the batch level.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..backend.guard import check_bytes
from .coupled import batch_theta_matrix, per_sample_error
from .sweeps import Linearization, linearize, theta_view

# ``Network`` and ``Cache`` in annotations are jacobian_bp.engine.network's; this module is imported by it
# and so never imports it (a network is recognized by what it does).

__all__ = ["per_sample_gradients", "batch_jacobian", "jacobian_from_linearization"]


def _dtype(lin: Linearization):
    """``object`` when the parameters or inputs are SymPy expressions, else float64."""
    symbolic = lin.cache.a[0].dtype == object or any(
        isinstance(v, np.ndarray) and v.dtype == object for v in lin.canon.values())
    return object if symbolic else np.float64


def _outer_into(P: np.ndarray, A: np.ndarray, out: np.ndarray, spec: str) -> None:
    """Batched outer products ``einsum(spec, P, A)`` written into the view ``out`` (numeric or SymPy)."""
    if out.dtype == object or P.dtype == object or A.dtype == object:
        out[...] = P[..., None] * A.reshape(A.shape[:1] + (1,) * (P.ndim - 1) + A.shape[1:])
    else:
        np.einsum(spec, P, A, out=out)


def dense_stage(layer) -> bool:
    """Whether the stage is a plain Dense layer (whose Kronecker blocks the vectorized per-sample routes use)."""
    from ..layers.dense import Dense

    return type(layer) is Dense


_dense_stage = dense_stage  # former name


def per_sample_gradients(network: "Network", X, Y, params) -> np.ndarray:
    r"""Per-sample gradients :math:`(\mathbf J_\theta\mathbf z_i^{[L]})^\top\nabla_{\mathbf z_i^{[L]}}\ell_i`, ``(N, |θ|)``.

    Parameters
    ----------
    network : Network
    X, Y : array
        A batch (or one sample) in the convention's layout (``batch_axis``).
    params : dict
        Parameters in the convention's layout.

    Returns
    -------
    ndarray, shape (N, |θ|)
        Unreduced: row ``i`` is the gradient of sample ``i``'s own loss, columns in the
        convention's θ order.  ``network.gradient(X, Y, params).vector`` equals
        ``r * rows.sum(0)`` (``r = 1/N`` for a mean reduction, 1 for a sum).
    """
    if getattr(network, "couples_samples", False):
        raise per_sample_error(network, "per_sample_gradients")
    lin = linearize(network, X, params, Y, numeric_only=False)
    if lin.Yb is None:
        raise DataError("per_sample_gradients: targets Y are required")
    cache, canon = lin.cache, lin.canon
    N, P = lin.N, network.n_params
    check_bytes(N * P * 8, f"per-sample gradients ({N} x {P})")
    G = network.delta_from_cache(cache, lin.Yb)
    out = np.empty((N, P), dtype=_dtype(lin))
    for l in range(network.L, 0, -1):
        st = network.stages[l - 1]
        layer = st.layer
        p = network.stage_params(canon, l)
        A = cache.a[l - 1]
        entries = [e for e in network.entries if e.stage == l]
        if _dense_stage(layer):
            for e in entries:
                if e.local == "W":
                    # einsum "ni,nj->nij": δ_i a_iᵀ for every sample, written in place
                    _outer_into(G, A, theta_view(out[:, e.slice], (N,), e), "ni,nj->nij")
                else:
                    out[:, e.slice] = G
        else:  # generic per-sample path: the layer's own vjp on each one-sample batch
            for i in range(N):
                grads = layer.vjp_params(A[i:i + 1], cache.z[l][i:i + 1], G[i:i + 1], p)
                for e in entries:
                    out[i, e.slice] = np.asarray(grads[e.local]).reshape(e.canonical_shape).ravel(order=e.order)
        if l == 1:
            break
        G = network.post_vjp(cache, l - 1, layer.vjp_input(A, cache.z[l], G, p))
    return out


def jacobian_from_linearization(lin: Linearization) -> np.ndarray:
    r"""Materialized :math:`\mathbf J_\theta\mathbf z_i^{[L]}` for every sample of a linearization, ``(N, n_L, |θ|)``."""
    network, cache, canon = lin.network, lin.cache, lin.canon
    N, nL, P = lin.N, network.n_out, network.n_params
    check_bytes(N * nL * P * 8, f"the batch Jacobian J_theta Z[{network.L}] ({N} x {nL} x {P})")
    if getattr(network, "couples_samples", False):  # row block i depends on the whole batch (engine/coupled.py)
        if _dtype(lin) is object:
            raise per_sample_error(network, "the materialized batch Jacobian of SymPy entries")
        return batch_theta_matrix(network, cache).reshape(N, nL, P)
    left = network.left_products(cache, canon)  # left[l]: (N, n_L, size z[l]) = J_{z[l]} z[L]
    out = np.empty((N, nL, P), dtype=_dtype(lin))
    for e in network.entries:
        l = e.stage
        layer = network.stages[l - 1].layer
        Pl = left[l]
        A = cache.a[l - 1]
        if _dense_stage(layer):
            if e.local == "W":
                # einsum "nki,nj->nkij": P_{l,i} ⊗ a_iᵀ for every sample, written in place
                _outer_into(Pl, A, theta_view(out[:, :, e.slice], (N, nL), e), "nki,nj->nkij")
            else:
                out[:, :, e.slice] = Pl
        else:  # the layer's structured Jacobian, multiplied from the left per sample
            p = network.stage_params(canon, l)
            for i in range(N):
                op = layer.jac_params(A[i], cache.z[l][i], p, e.order)[e.local]
                out[i, :, e.slice] = op.left_matmat(np.ascontiguousarray(Pl[i]))
    return out


def batch_jacobian(network: "Network", X, params) -> np.ndarray:
    r"""Materialized batch Jacobian :math:`\mathbf J_\theta\mathbf Z^{[L]}`, ``(N, n_L, |θ|)``.

    ``out[i]`` is :math:`\mathbf J_\theta\mathbf z_i^{[L]}` with its blocks in the convention's
    θ order (Damadi Alg. 1 line 7); ``out.reshape(N * n_L, -1)`` equals
    ``network.batch_jacobian_theta(X, params).to_dense()``.  For one sample (``X`` of shape
    ``network.input_shape``) the result is ``(n_L, |θ|)``, ``jacobian_theta(x, params).to_dense()``.
    The memory guard is asked first (``N·n_L·|θ|`` float64 numbers).
    """
    lin = linearize(network, X, params, numeric_only=False)
    J = jacobian_from_linearization(lin)
    return J[0] if lin.single else J
