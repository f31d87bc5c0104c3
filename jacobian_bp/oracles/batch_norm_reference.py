r"""Batch normalization in training mode, restated from the paper in plain NumPy (an independent oracle).

Ioffe & Szegedy, *Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate
Shift*, ICML 2015.  Algorithm 1 (the transform over a mini-batch :math:`\mathcal B = \{x_1, \dots, x_m\}`,
per feature):

.. math::

   \mu_{\mathcal B} = \tfrac1m\sum_i x_i,\quad
   \sigma^2_{\mathcal B} = \tfrac1m\sum_i (x_i-\mu_{\mathcal B})^2,\quad
   \hat x_i = \frac{x_i-\mu_{\mathcal B}}{\sqrt{\sigma^2_{\mathcal B}+\epsilon}},\quad
   y_i = \gamma\hat x_i + \beta,

and the backward pass of its §3, the chain rule term by term (for the loss :math:`\ell`):

.. math::

   \frac{\partial\ell}{\partial\hat x_i} = \frac{\partial\ell}{\partial y_i}\gamma,\qquad
   \frac{\partial\ell}{\partial\sigma^2_{\mathcal B}} = \sum_i\frac{\partial\ell}{\partial\hat x_i}(x_i-\mu_{\mathcal B})
      \cdot\frac{-1}{2}(\sigma^2_{\mathcal B}+\epsilon)^{-3/2},

.. math::

   \frac{\partial\ell}{\partial\mu_{\mathcal B}} = \Big(\sum_i\frac{\partial\ell}{\partial\hat x_i}\frac{-1}{\sqrt{\sigma^2_{\mathcal B}+\epsilon}}\Big)
      + \frac{\partial\ell}{\partial\sigma^2_{\mathcal B}}\frac{\sum_i -2(x_i-\mu_{\mathcal B})}{m},\qquad
   \frac{\partial\ell}{\partial x_i} = \frac{\partial\ell}{\partial\hat x_i}\frac{1}{\sqrt{\sigma^2_{\mathcal B}+\epsilon}}
      + \frac{\partial\ell}{\partial\sigma^2_{\mathcal B}}\frac{2(x_i-\mu_{\mathcal B})}{m}
      + \frac{\partial\ell}{\partial\mu_{\mathcal B}}\frac1m,

.. math::

   \frac{\partial\ell}{\partial\gamma} = \sum_i\frac{\partial\ell}{\partial y_i}\hat x_i,\qquad
   \frac{\partial\ell}{\partial\beta} = \sum_i\frac{\partial\ell}{\partial y_i}.

(The term :math:`\sum_i -2(x_i-\mu_{\mathcal B})/m` is zero, but it is kept as printed.)  Everything here is
written on purpose without :mod:`jacobian_bp.layers.batch_norm` and without the Jacobian machinery: plain
arrays, batch first ``(m, n)``, features independent.  :func:`batch_jacobian_entrywise` writes the full
batch Jacobian entry by entry from the same derivation; :func:`naive_input_gradient` is the classic mistake
(the statistics treated as constants, i.e. the two mean terms dropped), kept to show it is wrong;
:func:`running_update` is torch's update of the running buffers (unbiased variance).
"""
from __future__ import annotations

import numpy as np

__all__ = ["forward", "backward", "batch_jacobian_entrywise", "naive_input_gradient", "running_update"]


def forward(X, gamma=None, beta=None, eps: float = 1e-5) -> np.ndarray:
    """Alg. 1 of Ioffe & Szegedy on a batch ``X`` ``(m, n)`` (biased variance); ``gamma``/``beta`` None: 1 and 0."""
    X = np.asarray(X, dtype=float)
    m, n = X.shape
    gamma = np.ones(n) if gamma is None else np.asarray(gamma, dtype=float)
    beta = np.zeros(n) if beta is None else np.asarray(beta, dtype=float)
    mu = X.sum(axis=0) / m
    var = ((X - mu) ** 2).sum(axis=0) / m
    xhat = (X - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta


def backward(dY, X, gamma=None, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""``(∂ℓ/∂X, ∂ℓ/∂γ, ∂ℓ/∂β)`` by the paper's §3 chain rule, term by term (module docstring); batch first."""
    X = np.asarray(X, dtype=float)
    dY = np.asarray(dY, dtype=float).reshape(X.shape)
    m, n = X.shape
    gamma = np.ones(n) if gamma is None else np.asarray(gamma, dtype=float)
    mu = X.sum(axis=0) / m
    var = ((X - mu) ** 2).sum(axis=0) / m
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (X - mu) * inv
    dxhat = dY * gamma
    dvar = np.sum(dxhat * (X - mu), axis=0) * (-0.5) * (var + eps) ** (-1.5)
    dmu = np.sum(dxhat * (-inv), axis=0) + dvar * np.sum(-2.0 * (X - mu), axis=0) / m
    dX = dxhat * inv + dvar * 2.0 * (X - mu) / m + dmu / m
    return dX, np.sum(dY * xhat, axis=0), np.sum(dY, axis=0)


def batch_jacobian_entrywise(X, gamma=None, eps: float = 1e-5) -> np.ndarray:
    r"""The full batch Jacobian :math:`\partial y_{ij}/\partial x_{kl}`, ``(m·n, m·n)``, sample-major, entry by entry.

    From the paper's quantities: :math:`\partial\hat x_{ij}/\partial x_{kj} = \frac{1}{\sqrt{\sigma^2_j+\epsilon}}
    \big(\delta_{ik} - \frac1m\big) - \frac{(x_{ij}-\mu_j)(x_{kj}-\mu_j)}{m(\sigma_j^2+\epsilon)^{3/2}}` and zero across
    features; times :math:`\gamma_j`.  Loops, no vectorization: slow and plain on purpose.
    """
    X = np.asarray(X, dtype=float)
    m, n = X.shape
    gamma = np.ones(n) if gamma is None else np.asarray(gamma, dtype=float)
    J = np.zeros((m * n, m * n))
    for j in range(n):
        col = X[:, j]
        mu = sum(col) / m
        var = sum((c - mu) ** 2 for c in col) / m
        for i in range(m):
            for k in range(m):
                d = (1.0 if i == k else 0.0) - 1.0 / m
                J[i * n + j, k * n + j] = gamma[j] * (d / np.sqrt(var + eps)
                                                      - (col[i] - mu) * (col[k] - mu) / (m * (var + eps) ** 1.5))
    return J


def naive_input_gradient(dY, X, gamma=None, eps: float = 1e-5) -> np.ndarray:
    r"""The classic mistake: :math:`\partial\ell/\partial x_i = \gamma\,\partial\ell/\partial y_i/\sqrt{\sigma^2_{\mathcal B}+\epsilon}`,
    as if :math:`\mu_{\mathcal B}` and :math:`\sigma^2_{\mathcal B}` did not depend on :math:`x_i` (the mean terms dropped).  Wrong in
    training mode; it is the gradient of evaluation mode with the batch statistics frozen."""
    X = np.asarray(X, dtype=float)
    m, n = X.shape
    gamma = np.ones(n) if gamma is None else np.asarray(gamma, dtype=float)
    var = ((X - X.mean(axis=0)) ** 2).mean(axis=0)
    return np.asarray(dY, dtype=float).reshape(X.shape) * gamma / np.sqrt(var + eps)


def running_update(X, running_mean, running_var, momentum: float | None = 0.1) -> tuple[np.ndarray, np.ndarray]:
    r"""torch's buffers after one training step: :math:`(1-m)\mathbf r + m\,\boldsymbol\mu_{\mathcal B}` and
    :math:`(1-m)\mathbf v + m\,\tfrac{N}{N-1}\boldsymbol\sigma^2_{\mathcal B}` (the *unbiased* variance; ``momentum=None``:
    torch's cumulative average, which after the first batch is the batch's own statistics)."""
    X = np.asarray(X, dtype=float)
    m = X.shape[0]
    mu = X.mean(axis=0)
    unbiased = ((X - mu) ** 2).sum(axis=0) / (m - 1)
    w = 1.0 if momentum is None else momentum
    return (1 - w) * np.asarray(running_mean, float) + w * mu, (1 - w) * np.asarray(running_var, float) + w * unbiased
