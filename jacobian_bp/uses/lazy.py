r"""Lazy operators for the batch Jacobian :math:`\mathbf J_\theta\mathbf Z^{[L]}`: Algorithm 1 at the cost of backprop.

:class:`BatchJacobianOperator` applies :math:`\mathbf J_\theta\mathbf Z^{[L]}` and its transpose with the
engine's forward-mode (:func:`~jacobian_bp.engine.sweeps.jvp`) and reverse-mode
(:func:`~jacobian_bp.engine.sweeps.vjp_sweep`) sweeps, asked through the network
(``Network.forward_sweep`` / ``Network.reverse_sweep``, keyed by its parameter names), never materializing it; it is an
:class:`~jacobian_bp.backend.operators.Operator` of shape ``(N·n_L, |θ|)`` (rows sample-major,
columns in the convention's θ order), so it chains with the other structured operators and wraps
as a SciPy ``LinearOperator``.  :class:`TransposedOperator` is the lazy transpose of any operator.
The sweeps themselves (and :class:`Linearization`) live in :mod:`jacobian_bp.engine.sweeps` and are
re-exported here.

For a network whose samples are coupled (batch normalization in training mode) the operator is the
Jacobian of the whole batch, row block ``i`` being :math:`\mathbf J_\theta\mathbf z_i^{[L]}` with every other
sample held fixed: the sweeps use the layers' batch products, ``to_dense`` the batch-level Algorithm 1
(:mod:`jacobian_bp.engine.coupled`); a batch of one sample is refused (its batch variance is 0).
"""
from __future__ import annotations

import numpy as np

from ..backend.operators import Operator
from ..engine.sweeps import Linearization, jvp, linearize, theta_view, vjp_sweep
from ..errors import DataError, ShapeError, UnsupportedInputError

__all__ = ["vjp_sweep", "jvp", "theta_view", "BatchJacobianOperator", "TransposedOperator", "Linearization", "linearize"]


# ---------------------------------------------------------------------------- operators
class TransposedOperator(Operator):
    """The lazy transpose :math:`\\mathbf A^\\top` of an operator: ``matmat`` is ``A.rmatmat`` and vice versa."""

    structure = "transpose"

    def __init__(self, op: Operator):
        if not isinstance(op, Operator):
            raise UnsupportedInputError(f"TransposedOperator: expected an Operator, received {type(op).__name__}")
        self.op = op
        self.shape = (op.shape[1], op.shape[0])
        self.symbolic = op.symbolic
        self.structure = f"transposed {op.structure}"

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        return self.op.rmatmat(X)

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        return self.op.matmat(X)

    @property
    def T(self) -> Operator:
        return self.op

    @property
    def nnz(self) -> int:
        return self.op.nnz

    def _dense(self):
        return self.op._dense().T


class BatchJacobianOperator(Operator):
    r"""Lazy :math:`\mathbf J_\theta\mathbf Z^{[L]}` of a batch, ``(N·n_L) × |θ|``, never materialized unless asked.

    Rows are sample-major (row ``i·n_L + k`` is :math:`z^{[L]}_{i,k}`), as in
    :meth:`Network.batch_jacobian_theta`; columns follow the convention's θ order and vec.

    * ``matvec(v)``: forward mode, :math:`[\mathbf J_\theta\mathbf z_1^{[L]}\mathbf v;\dots;\mathbf J_\theta\mathbf z_N^{[L]}\mathbf v]`;
    * ``rmatvec(u)``: the batched backward sweep, :math:`\sum_i(\mathbf J_\theta\mathbf z_i^{[L]})^\top\mathbf u_i`;
      with :math:`\mathbf u_i = \nabla_{\mathbf z_i^{[L]}}\ell` (times the reduction) this is
      the gradient (Damadi eq. (1));
    * ``to_dense()``: the materialized Jacobian via :func:`jacobian_bp.engine.per_sample.batch_jacobian`
      (after the memory guard).

    Each product costs one forward- or reverse-mode pass; ``matmat`` loops over columns.

    Parameters
    ----------
    network : Network
    X : array
        One sample or a batch in the convention's layout.
    params : dict
        Parameters in the convention's layout.
    """

    structure = "lazy batch Jacobian"

    def __init__(self, network: "Network", X=None, params=None, *, linearization: Linearization | None = None):
        if linearization is None:
            if X is None or params is None:
                raise UnsupportedInputError("BatchJacobianOperator: give (network, X, params) or linearization=")
            linearization = linearize(network, X, params)
        elif linearization.network is not network:
            raise DataError("BatchJacobianOperator: the linearization belongs to another network")
        self.lin = linearization
        self.network = network
        self.shape = (linearization.N * network.n_out, network.n_params)

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        net, lin = self.network, self.lin
        out = np.empty((self.shape[0], X.shape[1]))
        for j in range(X.shape[1]):
            tangent = net.unpack_canonical(np.ascontiguousarray(X[:, j], dtype=float))
            out[:, j] = net.forward_sweep(lin.cache, lin.canon, tangent).ravel()
        return out

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        net, lin = self.network, self.lin
        out = np.empty((self.shape[1], X.shape[1]))
        for j in range(X.shape[1]):
            g = net.reverse_sweep(lin.cache, lin.canon, np.asarray(X[:, j], dtype=float).reshape(lin.N, net.n_out))
            out[:, j] = net.pack_canonical(g)
        return out

    @property
    def T(self) -> Operator:
        return TransposedOperator(self)

    def _dense(self):
        from ..engine.per_sample import jacobian_from_linearization

        return jacobian_from_linearization(self.lin).reshape(self.shape)

    def __repr__(self) -> str:
        lin = self.lin
        return (f"BatchJacobianOperator(J_theta Z[{self.network.L}]: {self.shape[0]}x{self.shape[1]}, "
                f"N={lin.N}, n_L={lin.n_out})")
