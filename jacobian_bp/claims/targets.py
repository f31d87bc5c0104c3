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

from dataclasses import dataclass
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
    """:math:`\\mathbf J_{\\mathbf z^{[l]}}\\mathbf a^{[l]}`, rows indexed by the outputs ``a_i`` and columns by the
    inputs ``z_j`` (the standard, numerator layout).  It was stored transposed before; for the activations the
    checker builds (elementwise: diagonal; softmax: symmetric) the two agree, so no verdict changed."""
    return d.net.activation_jacobian_batch(_single_x(d), d.params, l).to_dense()


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
    p = d.cache.params[l]  # the stage's canonical parameters by local name (a residual block's W.1 too)
    if getattr(st.layer, "couples_samples", False):  # the batch Jacobian (N·out × N·in, sample-major)
        return np.asarray(st.layer.batch_jac_input(d.cache.a[l - 1], d.cache.z[l], p).to_dense())
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
    "J_act": (_t_J_act, "J_{z[l]} a[l] (rows: a_i, columns: z_j)"),
    "J_x": (_t_J_x, "J_x z[L]"),
    "J_zL_zl": (_t_J_zL_zl, "J_{z[l]} z[L]"),
    "J_local_W": (lambda d, l: _t_J_local_part(d, l, "W"), "J_{vec W[l]} z[l]"),
    "J_local_b": (lambda d, l: _t_J_local_part(d, l, "b"), "J_{b[l]} z[l]"),
    "loss": (_t_loss, "the (reduced) loss"),
    "W": (lambda d, l: _t_param(d, l, "W"), "the weight W[l] itself (user layout)"),
    "b": (lambda d, l: _t_param(d, l, "b"), "the bias b[l] itself (column)"),
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


# =========================================================================== targets of any layer, by parameter
class _NoSuchParameter(LookupError):
    """A parameter target names a parameter the layer lacks (reported as a target that cannot be evaluated;
    this module sits below :mod:`.model`, so it does not raise :class:`~.model.MissingQuantity`)."""


def _stage_entries(d, l):
    return [e for e in d.net.entries if e.stage == l]


def _entry(d, l, local: str):
    """The θ entry of the local parameter ``local`` of stage ``l`` (the layer's own name: ``gamma``, ``W_hh``, ``K``,
    ``W.1``); a name the layer lacks raises :class:`_NoSuchParameter` listing the layer's parameters."""
    if l is None or not (1 <= l <= d.net.L):
        raise _NoSuchParameter(f"layer {l}: the network has layers 1..{d.net.L}")
    es = _stage_entries(d, l)
    for e in es:
        if e.local == local:
            return e
    layer = d.net.stages[l - 1].layer
    raise _NoSuchParameter(f"layer {l} ({layer.kind}) has no parameter {local!r} "
                          f"(its parameters: {', '.join(e.local for e in es) or 'none'})")


def _shaped(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v.reshape(-1, 1) if v.ndim == 1 else v


def _t_grad_param(d, l, local: str):
    e = _entry(d, l, local)
    return _shaped(d.net.gradient(d.X, d.Y, d.params).params[e.name])


def _t_param_value(d, l, local: str):
    e = _entry(d, l, local)
    return _shaped(d.params[e.name])


def _stage_columns(d, l, local: str) -> slice:
    """The columns of ``local`` in the stage's block ``[vec θ_1, vec θ_2, ...]`` (θ order)."""
    e = _entry(d, l, local)
    start = 0
    for f in _stage_entries(d, l):
        if f is e:
            return slice(start, start + f.size)
        start += f.size
    raise AssertionError  # pragma: no cover - e is an entry of stage l


def _t_J_local_param(d, l, local: str):
    cols = _stage_columns(d, l, local)
    return d.net.local_jacobian(_single_x(d), d.params, l).to_dense()[:, cols]


def _t_J_theta_l_param(d, l, local: str):
    cols = _stage_columns(d, l, local)
    return d.net.layer_jacobian(_single_x(d), d.params, l).to_dense()[:, cols]


def _t_J_a_a_prev(d, l):
    """J_{a[l-1]} a[l] = J_{z[l]} a[l] · J_{a[l-1]} z[l]: the whole stage (the layer and the layers after it)."""
    return _t_J_act(d, l) @ _t_J_z_a_prev(d, l)


#: targets of one parameter of layer l, written ``"<kind>:<parameter>"`` (``"grad:gamma"``, ``"J_local:W_hh"``):
#: kind -> (truth(d, l, local), meaning)
PARAM_TARGETS: dict[str, tuple[Callable, str]] = {
    "grad": (_t_grad_param, "∇_{p[l]} ℓ, the gradient of the (reduced) loss w.r.t. parameter p of layer l"),
    "param": (_t_param_value, "the parameter p[l] itself"),
    "J_local": (_t_J_local_param, "J_{vec p[l]} z[l], the layer's own parameter Jacobian"),
    "J_theta_l": (_t_J_theta_l_param, "J_{vec p[l]} z[L], the output's Jacobian w.r.t. p[l]"),
}

def _t_dinp(d, l):
    """∇_{a[l-1]} ℓ (first sample) in the shape of layer l's input (a column for a flat vector)."""
    return _shaped(np.asarray(d.grad_a_samples(l - 1)[0]).reshape(d.cache.a[l - 1].shape[1:]))


def _t_dout(d, l):
    """∇_{z[l]} ℓ (first sample) in the shape of layer l's output."""
    return _shaped(np.asarray(d.delta_samples(l)[0]).reshape(d.cache.z[l].shape[1:]))


TARGETS["J_a_a_prev"] = (_t_J_a_a_prev, "J_{a[l-1]} a[l]")
TARGETS["dinp"] = (_t_dinp, "∇_{a[l-1]} ℓ in the input's shape")
TARGETS["dout"] = (_t_dout, "∇_{z[l]} ℓ in the output's shape")


def _template(kind: str) -> Callable:
    def truth(d, l):
        raise KeyError(f"{kind}:<p> is a template: name the parameter, e.g. {kind}:gamma")
    return truth


# the templates are listed with the other targets (TARGETS documents every name a claim can use); a claim names
# the parameter (``grad:gamma``), never the template itself
for _k, (_f, _m) in PARAM_TARGETS.items():
    TARGETS[f"{_k}:<p>"] = (_template(_k), _m)


def split_target(target) -> tuple[str, str | None]:
    """``"grad:gamma"`` -> ``("grad", "gamma")``; a plain target -> ``(target, None)``."""
    if isinstance(target, str) and ":" in target:
        kind, _, local = target.partition(":")
        return kind, local
    return target, None


def is_target(target) -> bool:
    """Whether ``target`` names a target: a key of :data:`TARGETS` or ``"<kind>:<parameter>"`` with ``kind`` a key of
    :data:`PARAM_TARGETS` and a non-empty parameter name."""
    if not isinstance(target, str):
        return False
    kind, local = split_target(target)
    if local is None:
        return kind in TARGETS
    if local == "<p>":
        return False
    return kind in PARAM_TARGETS and bool(local) and all(ch.isalnum() or ch in "_." for ch in local)


def target_function(target: str) -> Callable:
    """The truth ``(d, l) -> value`` of a target (a plain one or ``"<kind>:<parameter>"``)."""
    kind, local = split_target(target)
    if local is None:
        return TARGETS[kind][0]
    fn = PARAM_TARGETS[kind][0]
    return lambda d, l: fn(d, l, local)


@dataclass(frozen=True)
class Target:
    """What a network claim can state: its key, its meaning, its shape and the layers it exists at."""

    name: str
    meaning: str
    shape: str
    layers: str

    def __str__(self) -> str:
        return f"{self.name:<14} {self.meaning} — shape {self.shape}; layers {self.layers}"


#: the documentation of every target: (meaning, shape, layers at which it exists).  ``n_l`` are the widths,
#: ``N`` the batch size, "layout" the convention's batch axis (N × n or n × N), "user layout" its weight
#: layout (``n_l × n_{l-1}`` for ``out_in``, ``n_{l-1} × n_l`` for ``in_out``).
_DOCS: dict[str, tuple[str, str, str]] = {
    "grad_W": ("gradient of the (reduced) loss with respect to the weight W[l]", "like W[l] (user layout)", "1..L"),
    "grad_b": ("gradient of the loss with respect to the bias b[l]", "n_l × 1", "1..L"),
    "grad_theta": ("gradient with respect to all parameters θ, in the convention's θ order and vec order",
                   "P × 1 (P parameters)", "none (layers='none')"),
    "grad_theta_l": ("gradient with respect to layer l's parameters [vec W[l]; b[l]]", "(n_{l-1} n_l + n_l) × 1", "1..L"),
    "grad_row_l": ("∂ℓ/∂θ_l as a row (MML's row-gradient form) of [vec W[l]; b[l]]", "1 × (n_{l-1} n_l + n_l)", "1..L"),
    "grad_vecW": ("gradient with respect to vec W[l] (the convention's vec order)", "n_{l-1} n_l × 1", "1..L"),
    "delta": ("δ[l] = ∇_{z[l]} ℓ, the per-sample gradient with respect to the pre-activation (first sample)",
              "n_l × 1", "1..L"),
    "grad_a": ("∇_{a[l]} ℓ, the per-sample gradient with respect to the activation (a[0] = x)", "n_l × 1", "0..L"),
    "z": ("the pre-activation z[l] = W[l] a[l-1] + b[l] (first sample)", "n_l × 1", "1..L"),
    "a": ("the activation a[l] = σ_l(z[l]) (a[0] = x)", "n_l × 1", "0..L"),
    "yhat": ("the network output ŷ = a[L]", "n_L × 1", "none"),
    "J_theta": ("Jacobian of the output pre-activation z[L] with respect to θ (first sample)", "n_L × P", "none"),
    "J_theta_l": ("Jacobian of z[L] with respect to layer l's parameters [vec W[l]; b[l]]",
                  "n_L × (n_{l-1} n_l + n_l)", "1..L"),
    "J_local": ("Jacobian of z[l] with respect to its own layer's parameters [vec W[l]; b[l]]",
                "n_l × (n_{l-1} n_l + n_l)", "1..L"),
    "J_local_W": ("the vec W[l] columns of J_local: J_{vec W[l]} z[l]", "n_l × n_{l-1} n_l", "1..L"),
    "J_local_b": ("the b[l] columns of J_local: J_{b[l]} z[l] (the identity)", "n_l × n_l", "1..L"),
    "J_act": ("Jacobian J_{z[l]} a[l] of the activation at z[l]: entry (i, j) = ∂a_i/∂z_j "
              "(diag σ′(z) for an elementwise σ)", "n_l × n_l", "1..L"),
    "J_x": ("Jacobian of z[L] with respect to the input x", "n_L × n_0", "none"),
    "J_zL_zl": ("Jacobian J_{z[l]} z[L] = W[L] J_act[L-1] ⋯ W[l+1] J_act[l] (the identity at l = L)", "n_L × n_l",
                "1..L"),
    "J_z_a_prev": ("Jacobian J_{a[l-1]} z[l] of layer l alone, its input Jacobian (W[l] in out_in layout for a dense "
                   "layer; the batch Jacobian, samples coupled, for batch normalization in training mode)",
                   "n_l × n_{l-1}", "1..L"),
    "loss": ("the (reduced) loss of the batch", "1 × 1", "none"),
    "W": ("the weight W[l] itself", "user layout", "1..L"),
    "b": ("the bias b[l] itself", "n_l × 1", "1..L"),
    "fprime_batch": ("σ′(Z[l]) elementwise, for a batch", "layout (N × n_l or n_l × N)", "1..L"),
    "Z": ("the batch pre-activations Z[l]", "layout (N × n_l or n_l × N)", "1..L"),
    "A": ("the batch activations A[l] (A[0] = X)", "layout", "0..L"),
    "dZ": ("∇_{Z[l]} J, the gradient of the reduced batch cost (1/N included when the reduction is the mean)",
           "layout", "1..L"),
    "Delta": ("per-sample deltas δ_i[l] stacked, unreduced (no 1/N)", "layout", "1..L"),
    "dA": ("∇_{A[l]} J, the gradient of the reduced batch cost with respect to the activations", "layout", "0..L"),
    "J_a_a_prev": ("Jacobian J_{a[l-1]} a[l] of the whole layer l (its layer and the parameter-free layers after it; "
                   "J_z_a_prev is the layer alone)", "size a[l] × size a[l-1]", "1..L"),
    "dinp": ("∇_{a[l-1]} ℓ, the gradient with respect to layer l's input (first sample, per-sample loss) in the "
             "input's shape: (C, H, W) for an image, (T, d) for a sequence, a column for a vector", "like a[l-1]", "1..L"),
    "dout": ("∇_{z[l]} ℓ = δ[l] in the shape of layer l's output (first sample, per-sample loss)", "like z[l]", "1..L"),
    "grad:<p>": ("gradient of the (reduced) loss with respect to parameter p of layer l, by the layer's own name "
                 "(grad:gamma, grad:W_Q, grad:W_hh, grad:K, grad:W.1; a vector as a column)", "like p (user layout)",
                 "1..L (the layers that have p)"),
    "param:<p>": ("the parameter p of layer l itself", "like p (user layout; a vector as a column)", "1..L (the layers that have p)"),
    "J_local:<p>": ("Jacobian J_{vec p[l]} z[l] of the layer's output w.r.t. its parameter p (first sample; vec order "
                    "of the convention)", "size z[l] × size p", "1..L (the layers that have p)"),
    "J_theta_l:<p>": ("Jacobian J_{vec p[l]} z[L] of the network's output w.r.t. parameter p of layer l (first sample)",
                      "n_L × size p", "1..L (the layers that have p)"),
}

#: ``target_offset`` (a keyword of :class:`~.model.Claim`, not a target): the truth is taken at layer
#: ``l + target_offset`` -- ``-1`` for a recursion that states ``δ[l-1]`` from layer ``l``.
TARGET_OFFSET_DOC = ("the truth is taken at layer l + target_offset (e.g. -1 for a recursion giving δ[l-1] or "
                     "∇_{a[l-1]} from layer l)")


def targets() -> list[Target]:
    """Every target a network claim can state, with its meaning, its shape and its layers.

    Returns
    -------
    list of Target
        In the order of :data:`TARGETS`; ``str(t)`` is one line.  Claims pick the layers with
        ``layers=`` (``"all"`` = 1..L, ``"hidden"`` = 1..L-1, ``"last"``, ``"from2"``, ``"all0"``, ``"inputs"`` =
        0..L-1, ``"none"``, a list of indices such as ``[1, 2]``, or a function ``L -> indices``) and shift the
        truth's layer with ``target_offset``.
    """
    return [Target(k, *_DOCS[k]) for k in TARGETS]


def describe_targets() -> str:
    """:func:`targets` as text, one target a line."""
    return "\n".join(str(t) for t in targets())



def _truth(d: _InstanceData, target: str, l, form: str = "as_is"):
    key = (target, l, form)
    if key not in d.truth_cache:
        if d.symbolic:
            v = d.symbolic_truth(target, l)
        else:
            v = target_function(target)(d, l)
        if form == "T":
            v = v.T
        d.truth_cache[key] = v
    return d.truth_cache[key]
