r"""Network claims over any registered layer: a :class:`~.model.Setting` given a layer list.

``Setting(None, network=[{"type": "dense", "out_features": 5}, {"type": "tanh"}, {"type": "layer_norm"},
{"type": "dense", "out_features": 3}], input_shape=4)`` checks claims on that network (its layers as in a JSON
spec, :mod:`jacobian_bp.spec`, or :class:`~jacobian_bp.layers.base.Layer` objects).  The setting keeps the
list in a frozen (hashable) form so that its instances are cached like those of a dense setting; every
instance builds its own :class:`~jacobian_bp.engine.network.Network` under the setting's convention and loss.

What a claim reads about layer ``l`` (the ``l``-th stage: the layer that opens it and the parameter-free
layers after it) is listed in :mod:`.instances` (``_LayerNetData``); which intermediates a layer exposes is
asked of the layer (:func:`layer_intermediates`), never read from its kind.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..errors import JacobianBPError, SpecError
from ..layers.base import Layer

__all__ = ["dense_network", "freeze_network", "thaw_network", "build_network", "check_network_setting", "describe_network",
           "layer_intermediates", "family_name"]


# =========================================================================== the frozen layer list
class _LayerRef:
    """A :class:`Layer` object inside a frozen setting: compared and hashed by identity, copied when used."""

    __slots__ = ("layer",)

    def __init__(self, layer: Layer):
        self.layer = layer

    def __eq__(self, other) -> bool:
        return isinstance(other, _LayerRef) and other.layer is self.layer

    def __hash__(self) -> int:
        return id(self.layer)

    def __repr__(self) -> str:
        return repr(self.layer)


def _freeze(v, where: str):
    """JSON-like values as hashable tuples: a dict is ``("{}", ((key, value), ...))``, a list a tuple."""
    if isinstance(v, Layer):
        return _LayerRef(v)
    if isinstance(v, dict):
        for k in v:
            if not isinstance(k, str):
                raise SpecError(f"setting: network {where}: keys must be strings, received {k!r}")
        return ("{}", tuple((k, _freeze(v[k], f"{where}.{k}")) for k in sorted(v)))
    if isinstance(v, (list, tuple)):
        return ("[]", tuple(_freeze(x, f"{where}[{i}]") for i, x in enumerate(v)))
    if v is None or isinstance(v, (bool, int, float, str, np.integer, np.floating, np.bool_)):
        return v.item() if isinstance(v, np.generic) else v
    raise SpecError(f"setting: network {where}: expected JSON values (numbers, strings, lists, objects) or Layer "
                    f"objects, received {type(v).__name__}")


def _thaw(v):
    if isinstance(v, _LayerRef):
        return copy.copy(v.layer)
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "{}":
        return {k: _thaw(x) for k, x in v[1]}
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "[]":
        return [_thaw(x) for x in v[1]]
    return v


def _shape(input_shape) -> tuple[int, ...]:
    if isinstance(input_shape, (bool, np.bool_)):
        raise SpecError(f"setting: input_shape must be a positive integer or a tuple of them, received {input_shape!r}")
    if isinstance(input_shape, (int, np.integer)):
        input_shape = (int(input_shape),)
    if not isinstance(input_shape, (tuple, list)) or not input_shape or any(
            isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)) or s < 1 for s in input_shape):
        raise SpecError(f"setting: input_shape must be a positive integer or a tuple of them (one sample's shape), "
                        f"received {input_shape!r}")
    return tuple(int(s) for s in input_shape)


def freeze_network(network, input_shape) -> tuple[tuple, tuple[int, ...]]:
    """The setting's ``network`` (a list of layer objects or spec entries, or a spec dict with ``input`` and
    ``layers``) and ``input_shape`` in the frozen form a :class:`~.model.Setting` keeps.

    Raises
    ------
    SpecError
        Not a list of layers, an empty list, a spec dict with other keys, no input shape.
    """
    if isinstance(network, tuple) and len(network) == 2 and network[0] == "[]":
        return network, _shape(input_shape)  # already frozen (dataclasses.replace of a setting)
    if isinstance(network, dict):
        extra = set(network) - {"input", "layers", "name", "description"}
        if extra:
            raise SpecError(f"setting: network: a spec dict takes 'input' and 'layers' (the loss and the convention are "
                            f"the setting's knobs), received the key(s) {', '.join(sorted(map(str, extra)))}")
        if "layers" not in network:
            raise SpecError("setting: network: a spec dict needs 'layers'")
        if "input" in network:
            if input_shape is not None and _shape(network["input"]) != _shape(input_shape):
                raise SpecError(f"setting: network: 'input' {network['input']!r} and input_shape={input_shape!r} disagree")
            input_shape = network["input"]
        network = network["layers"]
    if not isinstance(network, (list, tuple)) or not network:
        raise SpecError(f"setting: network must be a non-empty list of layers (Layer objects or spec entries such as "
                        f"{{'type': 'dense', 'out_features': 3}}), received {type(network).__name__} {network!r:.80}")
    if input_shape is None:
        raise SpecError("setting: network=... needs input_shape=... (one sample's shape, e.g. 4 or (3, 4))")
    return _freeze(list(network), "layers"), _shape(input_shape)


def thaw_network(frozen) -> list:
    """The layer list of a frozen network: fresh copies of Layer objects, spec entries as dicts."""
    return _thaw(frozen)


# =========================================================================== building
def _layers(entries: list) -> list[Layer]:
    if all(isinstance(e, Layer) for e in entries):
        return entries
    if any(isinstance(e, Layer) for e in entries):
        raise SpecError("setting: network: give Layer objects or spec entries ({'type': ...}), not both")
    return _spec_layers(entries)


def _spec_layers(entries: list) -> list[Layer]:
    """Layer objects from spec entries, checked as :func:`jacobian_bp.spec.parse_spec` checks them."""
    from ..spec import _build_layer  # the spec's own entry reader (key checks, one-line errors)

    return [_build_layer(e, i) for i, e in enumerate(entries)]


def dense_network(setting, widths: tuple):
    """The dense network of a setting with widths ``(n_0, ..., n_L)``: Dense layers, the hidden activation, the
    output activation on the last one, the setting's loss and convention."""
    from ..engine.network import Network
    from ..layers import Dense, layer_class
    from ..layers.losses import MSE

    conv = setting.conv()
    layers = []
    L = len(widths) - 1
    for l in range(1, L + 1):
        layers.append(Dense(int(widths[l])))
        kind = setting.output if l == L else setting.hidden
        layers.append(layer_class(kind)())
    loss: Any = setting.loss
    if setting.loss == "mse":
        loss = MSE(scale=conv.mse_scale, reduce_outputs=conv.mse_reduce_outputs)
    return Network(layers, loss, int(widths[0]), convention=conv, name="claim-" + "-".join(map(str, widths)))


def build_network(setting):
    """A fresh :class:`~jacobian_bp.engine.network.Network` of the setting (its layers, input shape, loss, convention)."""
    from ..engine.network import Network
    from ..layers.losses import MSE

    conv = setting.conv()
    loss: Any = setting.loss
    if setting.loss == "mse":
        loss = MSE(scale=conv.mse_scale, reduce_outputs=conv.mse_reduce_outputs)
    layers = _layers(thaw_network(setting.network))
    return Network(layers, loss, setting.input_shape, convention=conv, name="claim-network")


def check_network_setting(setting) -> None:
    """Build the setting's network once, so that a bad layer list is refused when the setting is made.

    Raises
    ------
    SpecError
        The network cannot be built (the layer's own one-line message), or a layer that couples the samples
        (batch normalization in training mode) with a batch of one sample.
    """
    try:
        net = build_network(setting)
    except SpecError as exc:
        raise SpecError(f"setting: network: {exc}") from None
    except JacobianBPError as exc:
        raise SpecError(f"setting: network: {type(exc).__name__}: {exc}") from None
    batches = setting.batch if isinstance(setting.batch, (tuple, list)) else (setting.batch,)
    for b in batches:
        if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, np.integer)) or b < 1:
            raise SpecError(f"setting: batch must hold integers >= 1, received {b!r}")
        if net.couples_samples and b < 2:
            raise SpecError(f"setting: a layer of the network couples the samples (batch statistics): batch must be "
                            f">= 2, received {b}")


def describe_network(setting) -> str:
    """``input (4,) → dense(5) → tanh → layer_norm → dense(3)``: the layer list in one line."""
    try:
        net = build_network(setting)
    except JacobianBPError:  # pragma: no cover - refused when the setting was made
        return "(invalid)"
    return f"input {setting.input_shape} → " + " → ".join(layer.describe() for layer in net.layers)


# =========================================================================== intermediates, asked of the layer
#: the attributes of the quantities object a family must not shadow (``q.K`` is the commutation matrix)
_RESERVED = frozenset({"I", "K", "zeros", "ones", "diag", "kron", "vec", "vec_r", "hadamard", "hstack", "vstack",
                       "sigma", "dsigma", "Jac", "grad_C", "loss_value", "indexed", "symbolic", "np", "param", "at"})


def family_name(name: str) -> str:
    """The attribute under which a claim reads a layer quantity: ``.`` becomes ``_`` (a residual block's ``W.1`` is
    ``q.W_1``), and a name the quantities object already uses gets a trailing ``_`` (a kernel ``K`` is ``q.K_``)."""
    base = str(name).replace(".", "_")
    return base + "_" if base in _RESERVED else base


def _col_or_shape(v):
    v = np.asarray(v, dtype=float)
    return v.reshape(-1, 1) if v.ndim == 1 else v


def layer_intermediates(layer: Layer, A: np.ndarray, O: np.ndarray, params: dict) -> dict[str, np.ndarray]:
    r"""The intermediates a layer exposes, for a batch ``A`` (``(N, *in_shape)``) and canonical ``params``.

    Asked of the layer by its public methods (never by its kind): ``intermediates(A, params)`` when it has
    one (a dict of named arrays, used as given); else

    * ``batch_statistics(A)`` (batch normalization, training): ``Xhat`` ``(N, n)``, ``s``
      :math:`=\sqrt{\sigma^2+\epsilon}`, ``mu``, ``var`` (columns), and ``xhat`` (the first sample's row, a column);
    * ``moments(A)`` (layer normalization): ``xhat`` and ``std`` of the first sample (x̂ a column for a flat input,
      ``(T, d)`` for a sequence; σ a number, or ``(T, 1)``), ``Xhat`` of the batch ``(N, *in_shape)``;
    * ``normalized(A)`` (batch normalization, evaluation): ``xhat`` of the first sample, ``Xhat`` of the batch;
    * ``attention_jacobians(x, params)`` (self-attention): ``P`` the attention weights ``(h, T, T)``, ``Q``, ``K``,
      ``V``, ``C`` ``(T, d)`` of the first sample;
    * ``trajectory(A, params)`` (recurrent layers): the first sample's time series, one row per step: ``h``
      ``(T + 1, H)`` with :math:`\mathbf h_0 = \mathbf 0`, and the LSTM's ``c``, ``i``, ``f``, ``g``, ``o``, ``tc``.
    """
    own = getattr(layer, "intermediates", None)
    if callable(own):
        return {str(k): np.asarray(v) for k, v in own(A, params).items()}
    out: dict[str, np.ndarray] = {}
    if callable(getattr(layer, "batch_statistics", None)):
        Xh, s, mu, var = layer.batch_statistics(A)
        out.update(Xhat=np.asarray(Xh, dtype=float), s=_col_or_shape(s), mu=_col_or_shape(mu), var=_col_or_shape(var),
                   xhat=_col_or_shape(np.asarray(Xh)[0]))
    elif callable(getattr(layer, "moments", None)):
        Xh, S = layer.moments(A)
        N = np.shape(A)[0]
        Xh = np.asarray(Xh, dtype=float).reshape((N,) + tuple(layer.in_shape))
        S = np.asarray(S, dtype=float).reshape(N, -1, 1)
        out.update(xhat=_col_or_shape(Xh[0]), Xhat=Xh, std=float(S[0, 0, 0]) if S.shape[1] == 1 else S[0])
    elif callable(getattr(layer, "normalized", None)):
        Xh = np.asarray(layer.normalized(A), dtype=float)
        out.update(xhat=_col_or_shape(Xh[0]), Xhat=Xh)
    if callable(getattr(layer, "attention_jacobians", None)):
        f = layer.attention_jacobians(np.asarray(A)[0], params)
        for k in ("P", "Q", "K", "V", "C"):
            if k in f:
                out[k] = np.asarray(f[k], dtype=float)
    if callable(getattr(layer, "trajectory", None)):
        tr = layer.trajectory(np.asarray(A), params)
        for k in tr.names:
            if k != "X":
                out[k] = np.asarray(getattr(tr, k), dtype=float)[:, 0]
    return out
