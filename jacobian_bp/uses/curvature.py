r"""Curvature products on the explicit Jacobian: the Gauss--Newton matrix and the empirical NTK.

With the batch Jacobian :math:`\mathbf J_i = \mathbf J_\theta\mathbf z_i^{[L]}` (``n_L × |θ|``,
Damadi Alg. 1) in hand, two classical matrices are products of it:

* the **generalized Gauss--Newton matrix** (GGN) of the reduced loss
  :math:`\mathcal L(\theta) = r\sum_i\ell(\mathbf y_i,\mathbf f^{[L]}(\mathbf z_i^{[L]}))`,

  .. math:: \mathbf G = r\sum_{i=1}^N \mathbf J_i^\top\,\mathbf H_i\,\mathbf J_i,\qquad
     \mathbf H_i = \nabla^2_{\mathbf z^{[L]}}\ell(\mathbf y_i, \mathbf f^{[L]}(\mathbf z_i^{[L]})),

  ``|θ| × |θ|``, with :math:`r = 1/N` (mean reduction) or 1 (sum) from the convention.
  :math:`\mathbf H_i` is the closed-form Hessian of a matched pair (Damadi Table 1):
  :math:`2c\,\mathbf I` for identity + MSE, :math:`\operatorname{diag}(\hat{\mathbf y}\odot(1-\hat{\mathbf y}))`
  for sigmoid + BCE, :math:`\operatorname{diag}\hat{\mathbf y} - \hat{\mathbf y}\hat{\mathbf y}^\top`
  for softmax + CE (:meth:`Loss.hessian_z`).  The GGN is the Hessian of :math:`\mathcal L`
  without the terms :math:`\sum_k \partial_{z_k}\ell\,\nabla^2_\theta z_k`; it *is* the
  Hessian when :math:`\mathbf z^{[L]}` is linear in θ (one Dense layer);
* the **empirical neural tangent kernel** :math:`\boldsymbol\Theta = \mathbf J\mathbf J^\top`,
  ``(N·n_L) × (N·n_L)``, block :math:`(i, j)` equal to :math:`\mathbf J_i\mathbf J_j^\top`
  (rows sample-major); it does not depend on the θ order or vec convention.

Both are lazy :class:`~jacobian_bp.backend.operators.Operator` objects (SciPy ``LinearOperator``
via ``as_linear_operator()``): a product costs one forward-mode and one reverse-mode pass
(:mod:`jacobian_bp.uses.lazy`), never the matrix.  ``to_dense()`` materializes them after the
memory guard; the NTK of Dense stages is then assembled from Gram matrices without ever
forming :math:`\mathbf J` (see :meth:`EmpiricalNTKOperator._dense`).

Coupled samples (a ``batch_norm`` layer in training mode): :math:`\mathbf z_i^{[L]}` depends on the whole
batch, and :math:`\mathbf J` is the batch Jacobian :math:`\mathbf J_\theta\operatorname{vec}\mathbf Z^{[L]}`
(:mod:`jacobian_bp.engine.coupled`).  Both matrices stay defined *for that batch* -- the GGN
:math:`r\,\mathbf J^\top\operatorname{blockdiag}(\mathbf H_i)\,\mathbf J` of the batch loss, the NTK
:math:`\mathbf J\mathbf J^\top` -- and are computed from it (the sweeps use the layers' batch VJP/JVP); but
they are not sums of per-sample terms, so a kernel entry changes when the rest of the batch changes, a
batch of one sample is refused (its variance is 0), and the per-sample Jacobian columns
(:func:`jacobian_columns`) refuse.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError, SpecError
from ..backend.guard import check_bytes
from .lazy import Linearization, jvp, linearize, vjp_sweep
from ..backend.operators import Operator
from ..engine.per_sample import dense_stage, jacobian_from_linearization

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.network import Network

__all__ = ["GaussNewtonOperator", "EmpiricalNTKOperator", "gauss_newton", "empirical_ntk", "loss_hessians",
           "NTKFactors", "ntk_factors", "ntk_gram", "jacobian_columns"]


def loss_hessians(network: "Network", lin: Linearization) -> np.ndarray:
    r"""Per-sample :math:`r\,\mathbf H_i = r\,\nabla^2_{\mathbf z^{[L]}}\ell_i`, ``(N, n_L, n_L)``, reduction included.

    Raises :class:`~jacobian_bp.errors.SpecError` when the last activation and the loss
    are not one of Damadi's matched pairs (Table 1): only those have a closed-form Hessian here.
    """
    if not network.matched:
        last = network.stages[-1].post
        act = "+".join(l.kind for l in last) or "identity"
        raise SpecError(
            f"network {network.name!r}: the Gauss-Newton matrix needs the closed-form Hessian of a matched pair "
            f"(identity+mse, sigmoid+bce, softmax+cross_entropy); received {act}+{network.loss.kind}"
        )
    if lin.Yb is None:
        raise DataError("gauss_newton: targets Y are required (the loss Hessian depends on them)")
    H = np.asarray(network.loss.hessian_z(lin.Yb, lin.cache.z[-1]), dtype=float)
    return H * network.reduce_factor(lin.N)


class _SymmetricOperator(Operator):
    """A symmetric operator: its transpose is itself."""

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        return self.matmat(X)

    @property
    def T(self) -> Operator:
        return self


class GaussNewtonOperator(_SymmetricOperator):
    r"""Lazy GGN :math:`\mathbf G = r\sum_i\mathbf J_i^\top\mathbf H_i\mathbf J_i`, ``|θ| × |θ|``, symmetric PSD.

    ``matvec(v)`` is :math:`\mathbf J^\top(\mathbf H(\mathbf J\mathbf v))`: one forward-mode pass
    (:func:`jacobian_bp.uses.lazy.jvp`), the ``n_L × n_L`` Hessians per sample, one reverse sweep
    (:func:`jacobian_bp.uses.lazy.vjp_sweep`).  Rows and columns follow the convention's θ order.

    Parameters
    ----------
    network : Network
        With a matched last activation + loss pair.
    X, Y : array
        Inputs and targets in the convention's layout.
    params : dict
        Parameters in the convention's layout.
    """

    structure = "Gauss-Newton"

    def __init__(self, network: "Network", X, Y, params):
        self.lin = linearize(network, X, params, Y)
        self.network = network
        self.H = loss_hessians(network, self.lin)
        self.shape = (network.n_params, network.n_params)

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        net, lin = self.network, self.lin
        out = np.empty((self.shape[0], X.shape[1]))
        for j in range(X.shape[1]):
            T = net.forward_sweep(lin.cache, lin.canon, net.unpack_canonical(np.ascontiguousarray(X[:, j], dtype=float)))
            HT = np.einsum("nij,nj->ni", self.H, T)
            out[:, j] = net.pack_canonical(net.reverse_sweep(lin.cache, lin.canon, HT))
        return out

    def _dense(self):
        N, nL, P = self.lin.N, self.network.n_out, self.network.n_params
        check_bytes(2 * N * nL * P * 8 + P * P * 8,
                    f"the Gauss-Newton matrix {P}x{P} with its batch Jacobian ({N} x {nL} x {P}) and H J")
        J = jacobian_from_linearization(self.lin)  # (N, n_L, P)
        HJ = np.matmul(self.H, J)
        G = J.reshape(N * nL, P).T @ HJ.reshape(N * nL, P)
        return 0.5 * (G + G.T)  # exact symmetry (rounding only)

    def __repr__(self) -> str:
        return f"GaussNewtonOperator({self.shape[0]}x{self.shape[1]}, N={self.lin.N}, loss={self.network.loss.kind})"


class EmpiricalNTKOperator(_SymmetricOperator):
    r"""Lazy empirical NTK :math:`\boldsymbol\Theta = \mathbf J\mathbf J^\top`, ``(N·n_L) × (N·n_L)``, symmetric PSD.

    ``matvec(u)`` is :math:`\mathbf J(\mathbf J^\top\mathbf u)`: one reverse sweep summing
    :math:`\sum_j\mathbf J_j^\top\mathbf u_j`, then one forward-mode pass.  Rows are sample-major
    (row ``i·n_L + k`` is output ``k`` of sample ``i``).

    Parameters
    ----------
    network : Network
    X : array
        Inputs in the convention's layout (one sample gives the ``n_L × n_L`` kernel).
    params : dict
    """

    structure = "empirical NTK"

    def __init__(self, network: "Network", X, params):
        self.lin = linearize(network, X, params)
        self.network = network
        n = self.lin.N * network.n_out
        self.shape = (n, n)

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        net, lin = self.network, self.lin
        out = np.empty((self.shape[0], X.shape[1]))
        for j in range(X.shape[1]):
            g = net.reverse_sweep(lin.cache, lin.canon, np.asarray(X[:, j], dtype=float).reshape(lin.N, net.n_out))
            out[:, j] = net.forward_sweep(lin.cache, lin.canon, g).ravel()
        return out

    def _dense(self):
        r"""Assemble :math:`\boldsymbol\Theta = \sum_l \mathbf J_{\theta_l}\mathbf J_{\theta_l}^\top` stage by stage.

        For a Dense stage the block of samples ``(i, j)`` is, from
        :math:`\mathbf J_{\mathbf W^{[l]}}\mathbf z_i^{[L]} = \mathbf P_{l,i}\otimes\mathbf a_i^\top` and
        :math:`(\mathbf A\otimes\mathbf a^\top)(\mathbf B\otimes\mathbf b^\top)^\top = (\mathbf a^\top\mathbf b)\,\mathbf A\mathbf B^\top`,

        .. math:: \mathbf P_{l,i}\mathbf P_{l,j}^\top\,\big(\mathbf a_i^{[l-1]\top}\mathbf a_j^{[l-1]} + 1\big)

        (the ``+1`` is the bias block :math:`\mathbf P_{l,i}\mathbf P_{l,j}^\top`): a Gram matrix of
        the ``n_L × n_l`` left products times a Gram matrix of the layer inputs, never the
        ``n_L × |θ|`` Jacobian.  Other stages materialize their own Jacobian columns.
        """
        net, lin = self.network, self.lin
        N, nL = lin.N, net.n_out
        if getattr(net, "couples_samples", False):  # J of the batch (no per-sample Gram assembly)
            check_bytes(N * nL * net.n_params * 8 + (N * nL) ** 2 * 8, f"the empirical NTK of a coupled batch ({N * nL} x {N * nL})")
            J = jacobian_from_linearization(lin).reshape(N * nL, net.n_params)
            K = J @ J.T
            return 0.5 * (K + K.T)
        F = ntk_factors(lin)
        if F.generic is not None:
            check_bytes(N * nL * F.generic.shape[1] * 8, f"the Jacobian columns of the non-dense stages ({N * nL} x {F.generic.shape[1]})")
        K = ntk_gram(F, F)
        return 0.5 * (K + K.T)

    def __repr__(self) -> str:
        return f"EmpiricalNTKOperator({self.shape[0]}x{self.shape[1]}, N={self.lin.N}, n_L={self.network.n_out})"


@dataclass
class NTKFactors:
    r"""What the NTK Gram assembly needs of ``n`` samples: per Dense stage ``(P, A, bias)`` -- the left products
    :math:`\mathbf P_{l,i}` stacked ``(n·n_L, n_l)``, the layer inputs ``(n, m)``, 1.0 with a bias else 0.0 -- and the
    materialized Jacobian columns ``(n·n_L, ·)`` of every other stage (None when all stages are Dense)."""

    n: int
    dense: list
    generic: "np.ndarray | None"


def ntk_factors(lin: Linearization) -> NTKFactors:
    """The NTK factors of a linearized batch (see :class:`NTKFactors`); the per-sample left products of Alg. 1."""
    net = lin.network
    left = net.left_products(lin.cache, lin.canon)
    n, nL = lin.N, net.n_out
    dense = [(np.ascontiguousarray(left[st.index]).reshape(n * nL, -1), lin.cache.a[st.index - 1].reshape(n, -1),
              1.0 if st.layer.bias else 0.0) for st in net.stages if dense_stage(st.layer)]
    generic = [e for e in net.entries if not dense_stage(net.stages[e.stage - 1].layer)]
    return NTKFactors(n, dense, jacobian_columns(lin, left, generic) if generic else None)


def ntk_gram(FI: NTKFactors, FJ: NTKFactors) -> np.ndarray:
    r"""The NTK block :math:`\mathbf J_I\mathbf J_J^\top` of two sets of samples from their factors, ``(n_I·n_L, n_J·n_L)``.

    Per Dense stage, from :math:`\mathbf J_{\mathbf W^{[l]}}\mathbf z_i^{[L]} = \mathbf P_{l,i}\otimes\mathbf a_i^\top` and
    :math:`(\mathbf A\otimes\mathbf a^\top)(\mathbf B\otimes\mathbf b^\top)^\top = (\mathbf a^\top\mathbf b)\,\mathbf A\mathbf B^\top`:
    :math:`\mathbf P_{l,i}\mathbf P_{l,j}^\top(\mathbf a_i^\top\mathbf a_j + 1)` (the ``+1`` is the bias block), a Gram
    matrix of the ``n_L × n_l`` left products times a Gram matrix of the layer inputs; other stages add
    :math:`\mathbf G_I\mathbf G_J^\top` of their Jacobian columns.
    """
    nI, nJ = FI.n, FJ.n
    nL = FI.dense[0][0].shape[0] // nI if FI.dense else FI.generic.shape[0] // nI
    check_bytes(3 * nI * nJ * nL * nL * 8, f"an NTK block ({nI * nL} x {nJ * nL})")
    K = np.zeros((nI * nL, nJ * nL))
    for (PI, AI, bias), (PJ, AJ, _) in zip(FI.dense, FJ.dense):
        gram = AI @ AJ.T + bias
        K += ((PI @ PJ.T).reshape(nI, nL, nJ, nL) * gram[:, None, :, None]).reshape(nI * nL, nJ * nL)
    if FI.generic is not None:
        K += FI.generic @ FJ.generic.T
    return K


def jacobian_columns(lin: Linearization, left: list, entries: list) -> np.ndarray:
    """Columns of :math:`\\mathbf J_\\theta\\mathbf Z^{[L]}` for some parameter entries, ``(N·n_L, Σ sizes)``."""
    net = lin.network
    if getattr(net, "couples_samples", False):
        net.require_per_sample("jacobian_columns (per-sample left products)")
    N, nL = lin.N, net.n_out
    cols = []
    for e in entries:
        layer = net.stages[e.stage - 1].layer
        p = net.stage_params(lin.canon, e.stage)
        block = np.empty((N, nL, e.size))
        for i in range(N):
            op = layer.jac_params(lin.cache.a[e.stage - 1][i], lin.cache.z[e.stage][i], p, e.order)[e.local]
            block[i] = op.left_matmat(np.ascontiguousarray(left[e.stage][i]))
        cols.append(block.reshape(N * nL, e.size))
    return np.concatenate(cols, axis=1)


def gauss_newton(network: "Network", X, Y, params) -> GaussNewtonOperator:
    r"""The lazy Gauss--Newton matrix :math:`r\sum_i\mathbf J_i^\top\mathbf H_i\mathbf J_i` (see :class:`GaussNewtonOperator`).

    ``gauss_newton(net, X, Y, p).to_dense()`` materializes it through the memory guard.
    """
    return GaussNewtonOperator(network, X, Y, params)


def empirical_ntk(network: "Network", X, params) -> EmpiricalNTKOperator:
    r"""The lazy empirical NTK :math:`\mathbf J\mathbf J^\top` of a batch (see :class:`EmpiricalNTKOperator`).

    ``empirical_ntk(net, X, p).to_dense()`` materializes it through the memory guard.
    """
    return EmpiricalNTKOperator(network, X, params)
