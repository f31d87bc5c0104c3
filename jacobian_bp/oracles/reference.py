r"""Independent references, written without the Jacobian machinery.

These are the oracles the explicit chain is checked against:

* :func:`ganev_backprop` -- Ganev Prop. 3.1 / Algorithm 4 (single sample,
  :math:`\mathbf W_\ell\in\mathbb R^{n_\ell\times n_{\ell-1}}`), with the printed
  algorithm's two slips corrected (its ``Jacobian(σ_L, z_ℓ)`` must be
  ``Jacobian(σ_ℓ, z_ℓ)``, and ``grad_a_{ℓ-1} ← W_{ℓ-1}ᵀ grad_z_ℓ`` must use ``W_ℓ``);
* :func:`ganev_batch_backprop` -- Ganev Prop. 4.1 / Algorithm 5 (batch first, sum);
* :func:`park_backprop` -- Park Thm. 5.4 / Python code (batch last, ``1/N``);
* :func:`central_differences` -- central finite differences in float64;
* :func:`layer_norm_backward`, :func:`batch_norm_eval_backward` -- the textbook backward passes of layer
  normalization and of batch normalization in evaluation mode, restated on purpose from their
  definitions (not from :mod:`jacobian_bp.layers.normalization`), batch first.

They operate on plain lists of canonical weights ``W[l]`` (``n_l × n_{l-1}``) and
biases, and only support dense networks (the textbooks' setting); the activations
are given as callables ``f``, ``f'`` (elementwise) or as full Jacobian callables.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def _jac_fn(layer) -> Callable[[np.ndarray], np.ndarray]:
    """A function z -> Jacobian matrix of an activation layer, from its own scalar derivative."""
    if getattr(layer, "elementwise", False):
        return lambda z: np.diag(layer.df(z))
    return lambda z: _vector_jac(layer, z)


def _vector_jac(layer, z):
    if layer.kind == "softmax":
        e = np.exp(z - z.max())
        s = e / e.sum()
        return np.diag(s) - np.outer(s, s)
    return layer.jacobian_matrix(z)


def dense_stack(network) -> tuple[list, list]:
    """Extract ``(Ws, acts)`` from a dense-only :class:`~jacobian_bp.engine.network.Network` (activations
    per stage as a single layer or None)."""
    if getattr(network, "pre", None):
        raise TypeError("the textbook references start with a dense layer on x (no parameter-free first layers)")
    acts = []
    for st in network.stages:
        if st.layer.kind != "dense":
            raise TypeError("the textbook references support dense networks only")
        if len(st.post) > 1:
            raise TypeError("the textbook references support one activation per layer")
        acts.append(st.post[0] if st.post else None)
    return acts


def _apply(layer, Z):
    if layer is None:
        return Z
    return layer.forward(Z, {})


def ganev_backprop(Ws: Sequence[np.ndarray], bs: Sequence[np.ndarray], acts: Sequence, x: np.ndarray,
                   grad_C: Callable[[np.ndarray], np.ndarray]) -> tuple[list, list]:
    r"""Ganev Algorithm 4 (combined version), single sample, corrected.

    Forward: :math:`\mathbf z_\ell = W_\ell\mathbf a_{\ell-1} + b_\ell`, :math:`\mathbf a_\ell = \sigma_\ell(\mathbf z_\ell)`,
    :math:`\mathrm{Jac}_\ell = \mathrm{Jacobian}(\sigma_\ell, \mathbf z_\ell)`.
    Backward (:math:`\ell = L, \dots, 1`):
    ``grad_z = Jacᵀ grad_a``, ``grad_W = grad_z a_{ℓ-1}ᵀ``, ``grad_b = grad_z``,
    ``grad_a_{ℓ-1} = W_ℓᵀ grad_z``.

    ``grad_C(a_L)`` is :math:`\nabla_{\hat{\mathbf y}} C`.  Returns ``(dWs, dbs)``.
    """
    a = [np.asarray(x, dtype=float)]
    zs, jacs = [], []
    for W, b, act in zip(Ws, bs, acts):
        z = W @ a[-1] + b
        zs.append(z)
        a.append(_apply(act, z[None])[0])
        jacs.append(np.eye(z.size) if act is None else _jac_fn(act)(z))
    grad_a = grad_C(a[-1])
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        grad_z = jacs[l].T @ grad_a
        dWs[l] = np.outer(grad_z, a[l])
        dbs[l] = grad_z
        grad_a = Ws[l].T @ grad_z
    return dWs, dbs


def ganev_batch_backprop(Ws, bs, acts, X: np.ndarray, grad_C: Callable[[np.ndarray], np.ndarray]) -> tuple[list, list]:
    r"""Ganev Algorithm 5 / Prop. 4.1: batch first (``X`` is ``N × n_0``), sum over samples.

    :math:`Z_\ell = A_{\ell-1}W_\ell^\top + \mathbb 1_N b_\ell^\top`; rows
    ``grad_Z[i] = grad_A[i] @ Jac_{i,ℓ}``; ``grad_W = grad_Zᵀ A_{ℓ-1}``;
    ``grad_b = grad_Zᵀ 1_N``; ``grad_A_{ℓ-1} = grad_Z W_ℓ`` (the printed ``W_{ℓ-1}`` corrected).
    ``grad_C(A_L)`` returns the ``N × n_L`` matrix of per-sample gradients.
    """
    A = [np.asarray(X, dtype=float)]
    Zs = []
    for W, b, act in zip(Ws, bs, acts):
        Z = A[-1] @ W.T + np.ones((A[-1].shape[0], 1)) @ b[None, :]
        Zs.append(Z)
        A.append(_apply(act, Z))
    grad_A = grad_C(A[-1])
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        act = acts[l]
        if act is None:
            grad_Z = grad_A
        else:
            jf = _jac_fn(act)
            grad_Z = np.stack([grad_A[i] @ jf(Zs[l][i]) for i in range(grad_A.shape[0])])
        dWs[l] = grad_Z.T @ A[l]
        dbs[l] = grad_Z.T @ np.ones(grad_Z.shape[0])
        grad_A = grad_Z @ Ws[l]
    return dWs, dbs


def park_backprop(Ws, bs, acts, X: np.ndarray, dZ_L: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[list, list]:
    r"""Park Theorem 5.4 (vectorized, batch last: ``X`` is ``n_0 × N``) with the ``1/N`` mean.

    ``Z[ℓ] = W[ℓ] A[ℓ-1] + b[ℓ]``, ``dZ[L] = dZ_L(Z[L], A[L])`` (already including ``1/N``,
    e.g. ``1/N (A − Y)`` for the matched pairs), then for ``ℓ = L..1``:
    ``dW[ℓ] = dZ[ℓ] A[ℓ-1]ᵀ``, ``db[ℓ] = Σ_columns dZ[ℓ]``,
    ``dA[ℓ-1] = W[ℓ]ᵀ dZ[ℓ]``, ``dZ[ℓ-1] = g'(Z[ℓ-1]) * dA[ℓ-1]`` (elementwise hidden activations).
    """
    A = [np.asarray(X, dtype=float)]
    Zs = []
    for W, b, act in zip(Ws, bs, acts):
        Z = W @ A[-1] + b[:, None]
        Zs.append(Z)
        A.append(_apply(act, Z.T).T)
    dZ = dZ_L(Zs[-1], A[-1])
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        dWs[l] = dZ @ A[l].T
        dbs[l] = np.sum(dZ, axis=1)
        if l == 0:
            break
        dA = Ws[l].T @ dZ
        act = acts[l - 1]
        if act is None:
            dZ = dA
        elif getattr(act, "elementwise", False):
            dZ = act.df(Zs[l - 1]) * dA
        else:  # vector activation in a hidden layer: per column
            jf = _jac_fn(act)
            dZ = np.stack([jf(Zs[l - 1][:, i]).T @ dA[:, i] for i in range(dA.shape[1])], axis=1)
    return dWs, dbs


def central_differences(f: Callable[[np.ndarray], float], theta: np.ndarray, h: float = 1e-6,
                        indices: Sequence[int] | None = None) -> np.ndarray:
    r"""Central differences :math:`(f(\theta + h e_k) - f(\theta - h e_k)) / 2h` in float64.

    Only the coordinates in ``indices`` are computed when given (the others are NaN).
    The truncation error is :math:`O(h^2)`, the rounding error :math:`O(\varepsilon/h)`.
    """
    theta = np.asarray(theta, dtype=np.float64)
    idx = range(theta.size) if indices is None else indices
    g = np.full(theta.size, np.nan)
    t = theta.copy()
    for k in idx:
        old = t[k]
        t[k] = old + h
        fp = f(t)
        t[k] = old - h
        fm = f(t)
        t[k] = old
        g[k] = (fp - fm) / (2 * h)
    return g


def directional_difference(f: Callable[[np.ndarray], float], theta: np.ndarray, v: np.ndarray, h: float = 1e-6) -> float:
    """Central difference of ``f`` along direction ``v``: an estimate of ``∇f · v``."""
    theta = np.asarray(theta, dtype=np.float64)
    return (f(theta + h * v) - f(theta - h * v)) / (2 * h)


def layer_norm_backward(X: np.ndarray, G: np.ndarray, gamma: np.ndarray | None, eps: float
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Backward pass of layer normalization :math:`\mathbf y_i = \boldsymbol\gamma\odot\hat{\mathbf x}_i+\boldsymbol\beta`, batch first.

    With :math:`\mu_i` the mean of row :math:`\mathbf x_i` (``(N, n)``), :math:`\sigma_i =
    \sqrt{\tfrac1n\sum_j(x_{ij}-\mu_i)^2+\epsilon}` (biased variance, as ``torch.nn.LayerNorm``),
    :math:`\hat{\mathbf x}_i = (\mathbf x_i-\mu_i)/\sigma_i`, and the upstream gradients
    :math:`\mathbf g_i = \partial\ell/\partial\mathbf y_i` (Ba et al. 2016; the same derivation as Ioffe &
    Szegedy 2015, §3, over features instead of the batch):

    .. math::

       \frac{\partial\ell}{\partial\mathbf x_i} = \frac1{\sigma_i}\Big(\mathbf h_i - \operatorname{mean}(\mathbf h_i)
       - \hat{\mathbf x}_i\operatorname{mean}(\mathbf h_i\odot\hat{\mathbf x}_i)\Big),\quad
       \mathbf h_i = \boldsymbol\gamma\odot\mathbf g_i,\qquad
       \frac{\partial\ell}{\partial\boldsymbol\gamma} = \sum_i\mathbf g_i\odot\hat{\mathbf x}_i,\qquad
       \frac{\partial\ell}{\partial\boldsymbol\beta} = \sum_i\mathbf g_i .

    ``gamma=None``: no affine part (:math:`\boldsymbol\gamma = \mathbf 1`).  Returns ``(dX, dgamma, dbeta)``.
    """
    X = np.asarray(X, dtype=np.float64)
    G = np.asarray(G, dtype=np.float64)
    n = X.shape[1]
    mu = X.sum(axis=1, keepdims=True) / n
    dev = X - mu
    sigma = np.sqrt((dev ** 2).sum(axis=1, keepdims=True) / n + eps)
    xhat = dev / sigma
    h = G if gamma is None else G * np.asarray(gamma, dtype=np.float64)
    dX = (h - h.sum(axis=1, keepdims=True) / n - xhat * (h * xhat).sum(axis=1, keepdims=True) / n) / sigma
    return dX, (G * xhat).sum(axis=0), G.sum(axis=0)


def batch_norm_eval_backward(X: np.ndarray, G: np.ndarray, gamma: np.ndarray | None, running_mean: np.ndarray,
                             running_var: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Backward pass of batch normalization in evaluation mode (fixed statistics :math:`\mathbf m`, :math:`\mathbf v`).

    :math:`\mathbf y_i = \boldsymbol\gamma\odot(\mathbf x_i-\mathbf m)/\sqrt{\mathbf v+\epsilon}+\boldsymbol\beta` is affine per
    feature (Ioffe & Szegedy 2015, Alg. 2 line 11), so
    :math:`\partial\ell/\partial\mathbf x_i = \boldsymbol\gamma\odot\mathbf g_i/\sqrt{\mathbf v+\epsilon}`,
    :math:`\partial\ell/\partial\boldsymbol\gamma = \sum_i\mathbf g_i\odot(\mathbf x_i-\mathbf m)/\sqrt{\mathbf v+\epsilon}`,
    :math:`\partial\ell/\partial\boldsymbol\beta = \sum_i\mathbf g_i`.  Returns ``(dX, dgamma, dbeta)``.
    """
    X = np.asarray(X, dtype=np.float64)
    G = np.asarray(G, dtype=np.float64)
    std = np.sqrt(np.asarray(running_var, dtype=np.float64) + eps)
    g = 1.0 if gamma is None else np.asarray(gamma, dtype=np.float64)
    return G * g / std, (G * (X - np.asarray(running_mean, dtype=np.float64)) / std).sum(axis=0), G.sum(axis=0)
