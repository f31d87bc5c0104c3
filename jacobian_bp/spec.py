"""JSON network specifications and the built-in examples.

A spec is a JSON object with exactly these keys (``input`` and ``layers`` required)::

    {
      "name": "damadi-2layer",                      # optional, shown in reports
      "description": "…",                           # optional
      "input": 4,                                   # int or list, e.g. [1, 28, 28]
      "layers": [                                   # each {"type": NAME, **constructor keywords}
        {"type": "dense", "out_features": 5},
        {"type": "sigmoid"},
        {"type": "dense", "out_features": 3},
        {"type": "softmax"}
      ],
      "loss": "cross_entropy",                      # or {"type": "mse", "scale": 0.5}
      "convention": "damadi",                       # a preset, or {"preset": "damadi", "reduction": "mean", …}
      "data": {"seed": 0, "batch": 1},              # generated data (optional)
      "params": {"seed": 0}                         # generated parameters (optional)
    }

Layer types: ``dense`` (``out_features``, ``bias``), ``identity``, ``relu`` (``at_zero``),
``leaky_relu`` (``negative_slope``), ``sigmoid``, ``tanh``, ``arctan``, ``softplus``,
``elu`` (``alpha``), ``softmax``, ``radial_sigmoid``, ``conv2d`` (``out_channels``,
``kernel_size``, ``stride``, ``padding``, ``dilation``, ``mode`` (``correlation``/``convolution``),
``bias`` (``tied``/``untied``/``none``), ``in_channels``, ``size_rule`` (``floor``/``exact``)),
``maxpool2d``/``avgpool2d`` (``kernel_size``, ``stride``, ``padding``, ``size_rule``), ``flatten``.
Losses: ``mse`` (``scale``, ``reduce_outputs``), ``bce``, ``cross_entropy``.

Unknown keys anywhere are errors; values are never evaluated as code.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .conventions import PRESETS, get_convention
from .errors import DataError, SpecError
from .layers import layer_class
from .losses import LOSSES
from .network import Network

_TOP_KEYS = {"name", "description", "input", "layers", "loss", "convention", "data", "params"}
_DATA_KEYS = {"seed", "batch"}
_PARAM_KEYS = {"seed"}

EXAMPLES: dict[str, dict[str, Any]] = {
    "damadi-1layer": {
        "name": "damadi-1layer",
        "description": "Damadi Fig. 4: 3-class classifier with 4 features, one layer, softmax + CE",
        "input": 4,
        "layers": [{"type": "dense", "out_features": 3}, {"type": "softmax"}],
        "loss": "cross_entropy", "convention": "damadi",
    },
    "damadi-2layer": {
        "name": "damadi-2layer",
        "description": "Damadi §3.2 / Fig. 5: 4 -> 5 -> 3, sigmoid hidden layer, softmax + CE",
        "input": 4,
        "layers": [{"type": "dense", "out_features": 5}, {"type": "sigmoid"},
                   {"type": "dense", "out_features": 3}, {"type": "softmax"}],
        "loss": "cross_entropy", "convention": "damadi",
    },
    "damadi-3layer": {
        "name": "damadi-3layer",
        "description": "Three layers 4 -> 5 -> 5 -> 3, sigmoid hidden layers, softmax + CE",
        "input": 4,
        "layers": [{"type": "dense", "out_features": 5}, {"type": "sigmoid"},
                   {"type": "dense", "out_features": 5}, {"type": "sigmoid"},
                   {"type": "dense", "out_features": 3}, {"type": "softmax"}],
        "loss": "cross_entropy", "convention": "damadi",
    },
    "lenet-300-100": {
        "name": "lenet-300-100",
        "description": "Damadi §3.3: LeNet-300-100 (784 -> 300 -> 100 -> 10), ReLU hidden layers, softmax + CE",
        "input": 784,
        "layers": [{"type": "dense", "out_features": 300}, {"type": "relu"},
                   {"type": "dense", "out_features": 100}, {"type": "relu"},
                   {"type": "dense", "out_features": 10}, {"type": "softmax"}],
        "loss": "cross_entropy", "convention": "damadi",
    },
    "small-cnn": {
        "name": "small-cnn",
        "description": "conv(2 filters 3x3) -> ReLU -> max-pool 2x2 -> flatten -> dense 3 -> softmax + CE on a 1x6x6 image",
        "input": [1, 6, 6],
        "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3}, {"type": "relu"},
                   {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
                   {"type": "dense", "out_features": 3}, {"type": "softmax"}],
        "loss": "cross_entropy", "convention": "pytorch",
    },
}


@dataclass
class Spec:
    """A parsed spec: the network and how to generate its data and parameters."""

    network: Network
    raw: dict
    data_seed: int = 0
    batch: int = 1
    param_seed: int = 0

    def params(self) -> dict[str, np.ndarray]:
        return self.network.init_params(self.param_seed)

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets from the data seed, laid out per the convention's batch axis
        (a single sample when ``batch == 1``)."""
        return generate_data(self.network, self.batch, self.data_seed)


def generate_data(network: Network, batch: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal inputs and valid targets for the network's loss (one-hot for CE,
    {0,1} for BCE, standard normal for MSE).  ``batch == 1`` gives a single sample."""
    if batch < 1:
        raise DataError(f"generate_data: batch must be >= 1, received {batch}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch,) + network.input_shape)
    n = network.n_out
    kind = network.loss.kind
    if kind == "cross_entropy":
        Y = np.eye(n)[rng.integers(0, n, size=batch)]
    elif kind == "bce":
        Y = rng.integers(0, 2, size=(batch, n)).astype(float)
    else:
        Y = rng.standard_normal((batch, n))
    if batch == 1:
        return X[0], Y[0]
    if network.convention.batch_axis == "last":
        return np.moveaxis(X, 0, -1), Y.T
    return X, Y


def _check_keys(obj: dict, allowed: set, where: str) -> None:
    if not isinstance(obj, dict):
        raise SpecError(f"{where}: expected a JSON object, received {type(obj).__name__}")
    unknown = set(obj) - allowed
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(sorted(allowed))}")


def _int(v, where: str, minimum: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise SpecError(f"{where}: expected an integer >= {minimum}, received {v!r}")
    return v


def _build_layer(entry: dict, i: int):
    if not isinstance(entry, dict) or "type" not in entry:
        raise SpecError(f"layers[{i}]: expected an object with a \"type\" key, received {entry!r}")
    kind = entry["type"]
    if not isinstance(kind, str):
        raise SpecError(f"layers[{i}]: \"type\" must be a string, received {kind!r}")
    cls = layer_class(kind)
    kwargs = {k: v for k, v in entry.items() if k != "type"}
    sig = inspect.signature(cls.__init__)
    allowed = {p for p in sig.parameters if p != "self"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise SpecError(f"layers[{i}] ({kind}): unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed)) or 'none'}")
    for k, v in kwargs.items():
        if isinstance(v, (list, tuple)):
            if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in v):
                raise SpecError(f"layers[{i}] ({kind}): list value of {k!r} must hold numbers only, received {v!r}")
            kwargs[k] = tuple(v)
        elif not isinstance(v, (int, float, str, bool)) and v is not None:
            raise SpecError(f"layers[{i}] ({kind}): value of {k!r} must be a number, string, boolean or list, received {v!r}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise SpecError(f"layers[{i}] ({kind}): {exc}") from None


def parse_spec(obj: dict) -> Spec:
    """Build a :class:`Spec` from a decoded JSON object (strict: unknown keys are errors)."""
    _check_keys(obj, _TOP_KEYS, "spec")
    for req in ("input", "layers"):
        if req not in obj:
            raise SpecError(f"spec: missing required key {req!r}")
    inp = obj["input"]
    if isinstance(inp, list):
        inp = tuple(_int(v, "spec.input", 1) for v in inp)
    else:
        inp = _int(inp, "spec.input", 1)
    if not isinstance(obj["layers"], list) or not obj["layers"]:
        raise SpecError("spec.layers: expected a non-empty list of layer objects")
    layers = [_build_layer(e, i) for i, e in enumerate(obj["layers"])]
    conv_obj = obj.get("convention", "pytorch")
    if isinstance(conv_obj, dict):
        conv_obj = dict(conv_obj)
        preset = conv_obj.pop("preset", "pytorch")
        conv = get_convention(preset)
        try:
            conv = conv.replace(**conv_obj) if conv_obj else conv
        except TypeError as exc:
            raise SpecError(f"spec.convention: {exc}") from None
    elif isinstance(conv_obj, str):
        conv = get_convention(conv_obj)
    else:
        raise SpecError(f"spec.convention: expected a preset name ({', '.join(PRESETS)}) or an object, received {conv_obj!r}")
    loss_obj = obj.get("loss", "cross_entropy")
    if isinstance(loss_obj, str):
        loss = loss_obj
        if loss not in LOSSES:
            raise SpecError(f"spec.loss: unknown loss {loss!r}; known: {', '.join(sorted(LOSSES))}")
    elif isinstance(loss_obj, dict):
        kind = loss_obj.get("type")
        if kind not in LOSSES:
            raise SpecError(f"spec.loss: unknown loss {kind!r}; known: {', '.join(sorted(LOSSES))}")
        cls = LOSSES[kind]
        allowed = {p for p in inspect.signature(cls.__init__).parameters if p != "self"} | {"type"}
        _check_keys(loss_obj, allowed, f"spec.loss ({kind})")
        loss = cls(**{k: v for k, v in loss_obj.items() if k != "type"})
    else:
        raise SpecError(f"spec.loss: expected a loss name or an object, received {loss_obj!r}")
    name = obj.get("name", "network")
    if not isinstance(name, str):
        raise SpecError(f"spec.name: expected a string, received {name!r}")
    net = Network(layers, loss, inp, conv, name=name)
    data = obj.get("data", {})
    _check_keys(data, _DATA_KEYS, "spec.data")
    params = obj.get("params", {})
    _check_keys(params, _PARAM_KEYS, "spec.params")
    return Spec(net, obj, _int(data.get("seed", 0), "spec.data.seed"), _int(data.get("batch", 1), "spec.data.batch", 1),
                _int(params.get("seed", 0), "spec.params.seed"))


def load_spec(source: "str | Path | dict") -> Spec:
    """A spec from a built-in example name, a JSON file path, a JSON string, or a dict."""
    if isinstance(source, dict):
        return parse_spec(source)
    s = str(source)
    if s in EXAMPLES:
        return parse_spec(json.loads(json.dumps(EXAMPLES[s])))
    p = Path(s)
    if p.suffix.lower() == ".json" or p.exists():
        if not p.exists():
            raise SpecError(f"spec file {s!r} does not exist (built-in examples: {', '.join(EXAMPLES)})")
        text = p.read_text(encoding="utf-8")
    elif s.lstrip().startswith("{"):
        text = s
    else:
        raise SpecError(f"{s!r} is neither a built-in example ({', '.join(EXAMPLES)}) nor a JSON file")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"spec {s[:60]!r} is not valid JSON: {exc}") from None
    return parse_spec(obj)
