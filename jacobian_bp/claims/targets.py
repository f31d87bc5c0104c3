r"""What a network claim can state, and its truth computed by the engine (:data:`TARGETS`).

Each target maps an instance's data ``d`` (a numeric instance, :class:`.instances._NumericData`) and a
layer index ``l`` to the true value: :meth:`Network.gradient`, :meth:`Network.chain_factors`,
:meth:`Network.jacobian_theta`, :meth:`Network.layer_jacobian`, :meth:`Network.local_jacobian`,
:meth:`Network.activation_jacobian_batch`, :meth:`Network.delta`, the forward cache.  Symbolic
instances give their own truths (:meth:`.symbolic_oracle._SymbolicData.symbolic_truth`).
This module sits below the instances (a claim validates its target against :data:`TARGETS`), so it
names their classes in annotations only.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def _col(v) -> np.ndarray:
    return np.asarray(v, dtype=float).reshape(-1, 1)


def _t_grad(d: _NumericData, l, which: str):
    g = d.net.gradient(d.X, d.Y, d.params)
    v = g.params[f"{which}{l}"]
    return _col(v) if which == "b" else np.asarray(v)


def _t_grad_theta(d: _NumericData, l):
    return d.net.gradient(d.X, d.Y, d.params).vector[:, None]


def _theta_l_entries(d: _NumericData, l):
    return [e for e in d.net.entries if e.stage == l]


def _t_grad_theta_l(d: _NumericData, l):
    g = d.net.gradient(d.X, d.Y, d.params).vector
    return np.concatenate([g[e.slice] for e in _theta_l_entries(d, l)])[:, None]


def _single_x(d: _NumericData):
    return d.Xb[0]


def _t_J_theta(d, l):
    return d.net.jacobian_theta(_single_x(d), d.params).to_dense()


def _t_J_theta_l(d, l):
    return d.net.layer_jacobian(_single_x(d), d.params, l).to_dense()


def _t_J_local(d, l):
    return d.net.local_jacobian(_single_x(d), d.params, l).to_dense()


def _t_J_act(d, l):
    return d.net.activation_jacobian_batch(_single_x(d), d.params, l).to_dense().T


def _t_J_x(d, l):
    return d.net.jacobian_input(_single_x(d), d.params).to_dense()


def _t_J_zL_zl(d, l):
    P = np.eye(d.net.n_out)
    for f in d.net.chain_factors(_single_x(d), d.params, l):
        P = P @ f.to_dense()
    return P


def _t_loss(d, l):
    return np.array([[d.net.loss_value(d.X, d.Y, d.params)]])


def _t_param(d, l, which: str):
    v = d.params[f"{which}{l}"]
    return _col(v) if which == "b" else np.asarray(v)


def _t_J_local_part(d, l, which: str):
    J = _t_J_local(d, l)
    nW = d.widths[l - 1] * d.widths[l]
    return J[:, :nW] if which == "W" else J[:, nW:]


def _t_J_z_a_prev(d, l):
    """J_{a[l-1]} z[l] from the layer's own Jacobian (canonical parameters)."""
    st = d.net.stages[l - 1]
    canon = d.net.canonical_params(d.params)
    p = {k: canon[f"{k}{l}"] for k in st.layer.param_shapes()}
    return st.layer.jac_input(d.cache.a[l - 1][0], d.cache.z[l][0], p).to_dense()


def _t_fprime_batch(d, l):
    """f'(Z[l]) in the convention's layout: diagonals of the per-sample activation Jacobians."""
    J = d.net.activation_jacobian_batch(d.X, d.params, l).to_dense()
    n = d.widths[l]
    rows = [np.diag(J[i * n:(i + 1) * n, i * n:(i + 1) * n]) for i in range(d.N)]
    return d.to_layout(np.array(rows))


def _t_mml_grad_row(d, l):
    """∂L/∂θ_l as a row in the convention's vec order, layer l's (W, b) (MML 5.115-5.118)."""
    return _t_grad_theta_l(d, l).T


TARGETS: dict[str, tuple[Callable, str]] = {
    "grad_W": (lambda d, l: _t_grad(d, l, "W"), "∇_{W[l]} ℓ (user layout)"),
    "grad_b": (lambda d, l: _t_grad(d, l, "b"), "∇_{b[l]} ℓ (column)"),
    "grad_theta": (_t_grad_theta, "∇_θ ℓ (column, θ order of the convention)"),
    "grad_theta_l": (_t_grad_theta_l, "∇_{W[l],b[l]} ℓ (column [vec W[l]; b[l]])"),
    "grad_row_l": (_t_mml_grad_row, "∂ℓ/∂θ_l (row [vec W[l]; b[l]]ᵀ)"),
    "delta": (lambda d, l: _col(d.delta_samples(l)[0]), "∇_{z[l]} ℓ (column)"),
    "grad_a": (lambda d, l: _col(d.grad_a_samples(l)[0]), "∇_{a[l]} ℓ (column)"),
    "z": (lambda d, l: _col(d.cache.z[l][0]), "z[l] (column)"),
    "a": (lambda d, l: _col(d.cache.a[l][0]), "a[l] (column)"),
    "yhat": (lambda d, l: _col(d.cache.a[d.L][0]), "ŷ (column)"),
    "J_theta": (_t_J_theta, "J_θ z[L]"),
    "J_theta_l": (_t_J_theta_l, "J_{W[l],b[l]} z[L]"),
    "J_local": (_t_J_local, "J_{W[l],b[l]} z[l]"),
    "J_act": (_t_J_act, "J_{z[l]} a[l]"),
    "J_x": (_t_J_x, "J_x z[L]"),
    "J_zL_zl": (_t_J_zL_zl, "J_{z[l]} z[L]"),
    "loss": (_t_loss, "the (reduced) loss"),
    "W": (lambda d, l: _t_param(d, l, "W"), "the weight W[l] itself (user layout)"),
    "b": (lambda d, l: _t_param(d, l, "b"), "the bias b[l] itself (column)"),
    "J_local_W": (lambda d, l: _t_J_local_part(d, l, "W"), "J_{vec W[l]} z[l]"),
    "J_local_b": (lambda d, l: _t_J_local_part(d, l, "b"), "J_{b[l]} z[l]"),
    "J_z_a_prev": (_t_J_z_a_prev, "J_{a[l-1]} z[l]"),
    "fprime_batch": (_t_fprime_batch, "f'(Z[l]) elementwise (convention layout)"),
    "grad_vecW": (lambda d, l: _t_grad_theta_l(d, l)[: d.widths[l - 1] * d.widths[l]], "∇_{vec W[l]} ℓ (column)"),
    "Z": (lambda d, l: d.to_layout(d.cache.z[l]), "Z[l] (batch, convention layout)"),
    "A": (lambda d, l: d.to_layout(d.cache.a[l]), "A[l] (batch, convention layout)"),
    "dZ": (lambda d, l: d.to_layout(d.delta_samples(l)) * (1.0 / d.N if d.conv.reduction == "mean" else 1.0),
           "∇_{Z[l]} J (reduced cost, convention layout)"),
    "Delta": (lambda d, l: d.to_layout(d.delta_samples(l)), "per-sample deltas (unreduced, convention layout)"),
    "dA": (lambda d, l: d.to_layout(d.grad_a_samples(l)) * (1.0 / d.N if d.conv.reduction == "mean" else 1.0),
           "∇_{A[l]} J (reduced cost, convention layout)"),
}


def _truth(d: _InstanceData, target: str, l, form: str = "as_is"):
    key = (target, l, form)
    if key not in d.truth_cache:
        if d.symbolic:
            v = d.symbolic_truth(target, l)
        else:
            v = TARGETS[target][0](d, l)
        if form == "T":
            v = v.T
        d.truth_cache[key] = v
    return d.truth_cache[key]
