r"""Converting gradients and Jacobians between conventions.

Two networks with the same layers but different conventions parametrize the same
function; their θ vectors differ by a permutation :math:`\mathbf P` built from

* block reordering (θ order: forward, Damadi's reverse, Ganev's weights first),
* commutation matrices :math:`\mathbf K_{m,n}` where the two conventions flatten a
  weight in different orders (:math:`\operatorname{vec}_r\mathbf A = \mathbf K_{m,n}\operatorname{vec}_c\mathbf A`),
  which also covers the weight layout (Damadi's :math:`\mathbf W_D = \mathbf W^\top`).

Then :math:`\theta_\text{to} = \mathbf P\theta_\text{from}`,
:math:`\mathbf J_{\theta_\text{to}}\mathbf z = \mathbf J_{\theta_\text{from}}\mathbf z\,\mathbf P^\top`, and
:math:`\nabla_{\theta_\text{to}}\ell_\text{to} = \frac{s_\text{to}}{s_\text{from}}\mathbf P\,\nabla_{\theta_\text{from}}\ell_\text{from}`
where :math:`s` is the loss's scale: :math:`1/N` for a mean reduction and, for MSE, the
per-sample factor :math:`c` (and :math:`1/n_\text{out}` for PyTorch's mean over outputs).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..engine.conventions import commutation_matrix
from ..errors import ShapeError, SpecError
from ..engine.network import Network


def _check_same_architecture(a: Network, b: Network) -> None:
    ka = [(e.stage, e.local, e.canonical_shape) for e in sorted(a.entries, key=lambda e: (e.stage, e.local))]
    kb = [(e.stage, e.local, e.canonical_shape) for e in sorted(b.entries, key=lambda e: (e.stage, e.local))]
    if ka != kb or a.input_shape != b.input_shape:
        raise SpecError(
            f"cannot convert between {a.name!r} and {b.name!r}: the networks have different parameters "
            f"({[e.name for e in a.entries]} vs {[e.name for e in b.entries]})"
        )


def theta_permutation(net_from: Network, net_to: Network) -> sp.csr_array:
    r"""The permutation :math:`\mathbf P` with :math:`\theta_\text{to} = \mathbf P\,\theta_\text{from}`,
    assembled block by block from identities and commutation matrices."""
    _check_same_architecture(net_from, net_to)
    n = net_from.n_params
    rows = []
    for et in net_to.entries:
        ef = net_from.entry(et.name)
        shape = et.canonical_shape
        if et.order == ef.order or len(shape) < 2:
            block = sp.eye_array(et.size, format="csr")
        elif len(shape) == 2:
            m, k = shape
            K = commutation_matrix(m, k)  # vec_c (order F) -> vec_r (order C)
            block = K if (ef.order == "F" and et.order == "C") else K.T
        else:  # tensors (conv kernels): permutation between the two flattenings
            idx = np.arange(et.size).reshape(shape, order=ef.order).ravel(order=et.order)
            block = sp.csr_array((np.ones(et.size), (np.arange(et.size), idx)), shape=(et.size, et.size))
        sel = sp.csr_array((np.ones(ef.size), (np.arange(ef.size), np.arange(ef.offset, ef.offset + ef.size))),
                           shape=(ef.size, n))
        rows.append(sp.csr_array(block @ sel))
    return sp.csr_array(sp.vstack(rows, format="csr"))


def _loss_scale(net: Network, N: int) -> float:
    return net.reduce_factor(N) * net.loss.output_scale(net.n_out)


def convert_theta(theta: np.ndarray, net_from: Network, net_to: Network) -> np.ndarray:
    """A parameter vector θ of ``net_from`` as a θ of ``net_to`` (same function)."""
    theta = np.asarray(theta)
    if theta.shape != (net_from.n_params,):
        raise ShapeError(f"convert_theta: expected θ of shape ({net_from.n_params},), received {theta.shape}")
    return theta_permutation(net_from, net_to) @ theta


def convert_gradient(grad: np.ndarray, net_from: Network, net_to: Network, n_samples: int = 1) -> np.ndarray:
    r""":math:`\nabla_\theta\ell` of ``net_from`` (its θ order, vec, reduction, MSE scale) as ``net_to``'s."""
    grad = np.asarray(grad)
    if grad.shape != (net_from.n_params,):
        raise ShapeError(f"convert_gradient: expected a gradient of shape ({net_from.n_params},), received {grad.shape}")
    if n_samples < 1:
        raise ShapeError(f"convert_gradient: n_samples must be >= 1, received {n_samples}")
    if type(net_from.loss) is not type(net_to.loss):
        raise SpecError(f"convert_gradient: losses differ ({net_from.loss.kind} vs {net_to.loss.kind})")
    ratio = _loss_scale(net_to, n_samples) / _loss_scale(net_from, n_samples)
    return ratio * (theta_permutation(net_from, net_to) @ grad)


def convert_jacobian(J, net_from: Network, net_to: Network):
    r""":math:`\mathbf J_\theta\mathbf z` (dense, sparse or a :class:`~jacobian_bp.engine.jacobian.Jacobian`) with columns in ``net_to``'s θ layout."""
    from ..engine.jacobian import Jacobian

    P = theta_permutation(net_from, net_to)
    if isinstance(J, Jacobian):
        from ..backend.operators import Product, Sparse

        if J.shape[1] != net_from.n_params:
            raise ShapeError(f"convert_jacobian: expected {net_from.n_params} columns, received {J.shape[1]}")
        return Jacobian(Product([J.op, Sparse(P.T, "permutation")]), J.output, net_to.theta_space)
    if J.shape[1] != net_from.n_params:
        raise ShapeError(f"convert_jacobian: expected {net_from.n_params} columns, received {J.shape[1]}")
    return (P @ J.T).T if not sp.issparse(J) else sp.csr_array((P @ J.T).T)
