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
``maxpool2d``/``avgpool2d`` (``kernel_size``, ``stride``, ``padding``, ``size_rule``), ``flatten``,
``residual`` (``body``: a non-empty list of layer objects, output shape equal to the input shape;
``x + body(x)``; its parameters are named ``W<l>.<k>``, ``b<l>.<k>`` -- stage ``l``, ``k``-th
parametric layer of the body).  The first layers may be parameter-free (e.g. pooling or flatten on
the input): they make ``a[0]`` and own no parameters.
Losses: ``mse`` (``scale``, ``reduce_outputs``), ``bce``, ``cross_entropy``.
Conventions: a preset or ``{"preset": ..., knob: value}``; ``"reduction": "mean_elements"`` is
PyTorch's default mean of each loss (``MSELoss``/``BCELoss`` over all ``N·n_L`` elements,
``CrossEntropyLoss`` over the ``N`` samples; :func:`jacobian_bp.engine.conventions.reduction_factor`).

Unknown keys anywhere are errors; values are never evaluated as code.
"""
from __future__ import annotations

import inspect
import json
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .engine.conventions import PRESETS, get_convention
from .errors import DataError, SpecError
from .layers import layer_class
from .layers.losses import LOSSES
from .layers.residual import Residual  # noqa: F401 - registers the "residual" layer type
from .engine.network import Network

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
    "transformer-block": {
        "name": "transformer-block",
        "description": "pre-norm Transformer block (T = 4 tokens, d = 8, 2 heads, MLP 16, GELU) -> flatten -> dense 3 -> softmax + CE",
        "input": [4, 8],
        "layers": [{"type": "transformer_block", "heads": 2, "mlp_hidden": 16}, {"type": "flatten"},
                   {"type": "dense", "out_features": 3}, {"type": "softmax"}],
        "loss": "cross_entropy", "convention": "pytorch",
    },
    "lstm-sequence": {
        "name": "lstm-sequence",
        "description": "LSTM over T = 5 steps (3 features, hidden 4, last state) -> dense 3 -> softmax + CE",
        "input": [5, 3],
        "layers": [{"type": "lstm", "hidden_size": 4}, {"type": "dense", "out_features": 3}, {"type": "softmax"}],
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
    if isinstance(batch, (bool, np.bool_)) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise DataError(f"generate_data: batch must be an integer >= 1, received {_short(batch)}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"generate_data: seed must be an integer >= 0, received {_short(seed)}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch,) + network.input_shape)
    Y = _sample_targets(network.loss, rng, batch, network.n_out)
    if batch == 1:
        return X[0], Y[0]
    if network.convention.batch_axis == "last":
        return np.moveaxis(X, 0, -1), Y.T
    return X, Y


def _sample_targets(loss, rng: np.random.Generator, batch: int, n: int) -> np.ndarray:
    """Valid random targets ``(batch, n)``: the loss's own ``sample_targets`` (the layer protocol).

    Until every loss has it, the facts of today's losses, drawn in the order they always were (so
    that seeded data stay the same): one-hot rows for cross entropy, {0, 1} for BCE, standard
    normal for MSE.
    """
    own = getattr(loss, "sample_targets", None)
    if callable(own):
        return np.asarray(own(rng, batch, n), dtype=float)
    from .layers.losses import BCE, CrossEntropy

    if isinstance(loss, CrossEntropy):
        return np.eye(n)[rng.integers(0, n, size=batch)]
    if isinstance(loss, BCE):
        return rng.integers(0, 2, size=(batch, n)).astype(float)
    return rng.standard_normal((batch, n))


def _check_keys(obj: dict, allowed: set, where: str) -> None:
    if not isinstance(obj, dict):
        raise SpecError(f"{where}: expected a JSON object, received {type(obj).__name__}")
    unknown = set(obj) - allowed
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(sorted(allowed))}")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 3, 60, 60, 6, 6


def _short(v) -> str:
    """A bounded ``repr`` for error messages (deeply nested or huge values stay one short line)."""
    return _REPR.repr(v)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _int(v, where: str, minimum: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise SpecError(f"{where}: expected an integer >= {minimum}, received {_short(v)}")
    return v


_JSON_TYPES = {"int": "an integer", "float": "a number", "bool": "a boolean (true/false)", "str": "a string",
               "None": "null", "list[float]": "a list of numbers"}


def _matches(v, name: str) -> bool:
    if name == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if name == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if name == "bool":
        return isinstance(v, bool)
    if name == "str":
        return isinstance(v, str)
    if name == "None":
        return v is None
    return True  # an annotation this check does not know: left to the constructor


#: the parameter sorts of a constructor that a spec may name (not ``*args``, ``**kwargs``, positional-only)
_NAMED_PARAMETERS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _keyword_parameters(cls) -> dict[str, inspect.Parameter]:
    """The named keyword parameters of ``cls.__init__`` (``*args``/``**kwargs`` are not spec keys)."""
    sig = inspect.signature(cls.__init__)
    return {n: p for n, p in sig.parameters.items()
            if n != "self" and any(p.kind is named for named in _NAMED_PARAMETERS)}


def _check_kwargs(cls, kwargs: dict, where: str) -> dict:
    """Check spec keywords against the constructor's signature: known names, and for annotated
    parameters (``int``, ``float``, ``bool``, ``str``, ``None`` and unions of them) a JSON value
    of that type -- so that ``"bias": "no"`` is an error, not ``True``.  Lists (of numbers) become tuples."""
    params = _keyword_parameters(cls)
    unknown = set(kwargs) - set(params)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                        f"allowed: {', '.join(sorted(params)) or 'none'}")
    out = {}
    for k, v in kwargs.items():
        ann = params[k].annotation
        if isinstance(v, (list, tuple)) and isinstance(ann, str) and "list[float]" in ann:
            # a list of real numbers (running statistics): finite ints or floats, never booleans or strings
            if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and np.isfinite(t) for t in v):
                raise SpecError(f"{where}: list value of {k!r} must hold finite numbers only, received {_short(list(v))}")
            out[k] = tuple(v)
            continue
        if isinstance(v, (list, tuple)):
            if ann is not inspect.Parameter.empty:
                raise SpecError(f"{where}: {k} must be {_describe(ann)}, received the list {_short(list(v))}")
            if not all(isinstance(t, int) and not isinstance(t, bool) for t in v):
                raise SpecError(f"{where}: list value of {k!r} must hold integers only, received {_short(list(v))}")
            out[k] = tuple(v)
            continue
        if not isinstance(v, (int, float, str, bool)) and v is not None:
            raise SpecError(f"{where}: value of {k!r} must be a number, string, boolean or list, received {_short(v)}")
        if isinstance(v, float) and not np.isfinite(v):
            raise SpecError(f"{where}: {k} must be finite, received {_short(v)}")
        if isinstance(ann, str):
            names = [t.strip() for t in ann.split("|")]
            if all(n in _JSON_TYPES for n in names) and not any(_matches(v, n) for n in names):
                raise SpecError(f"{where}: {k} must be {_describe(ann)}, received {_short(v)} ({_json_type(v)})")
        elif ann is inspect.Parameter.empty and not (isinstance(v, int) and not isinstance(v, bool)) and v is not None:
            # unannotated keywords are the integer-or-pair geometry fields (kernel_size, stride, padding, dilation)
            raise SpecError(f"{where}: {k} must be an integer or a list of two integers, received {_short(v)} ({_json_type(v)})")
        out[k] = v
    return out


def _describe(ann) -> str:
    if not isinstance(ann, str):
        return "an integer or a list of two integers"
    return " or ".join(_JSON_TYPES.get(t.strip(), t.strip()) for t in ann.split("|"))


def _json_type(v) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(type(v), type(v).__name__)


def _construct(cls, kwargs: dict, where: str):
    try:
        return cls(**kwargs)
    except SpecError as exc:
        msg, kind = str(exc), where.rsplit("(", 1)[-1].rstrip(")")
        for prefix in (f"{kind} layer: ", f"{kind} loss: ", f"{kind}: "):
            if msg.startswith(prefix):
                msg = msg[len(prefix):]
                break
        raise SpecError(f"{where}: {msg}") from None
    except (TypeError, ValueError, ArithmeticError) as exc:  # a constructor's own check, phrased as Python's
        raise SpecError(f"{where}: {type(exc).__name__}: {exc}") from None


def _build_layer(entry: dict, i: int, path: str = "layers"):
    """One layer object of the spec; ``path`` locates it in error messages (``layers[1].body[0]``).

    A composite layer class (``composite = True``, e.g. ``residual``) takes its ``body`` as a
    non-empty list of layer objects, each built (and checked) by this function in turn.
    """
    at = f"{path}[{i}]"
    if not isinstance(entry, dict) or "type" not in entry:
        raise SpecError(f"{at}: expected an object with a \"type\" key, received {_short(entry)}")
    kind = entry["type"]
    if not isinstance(kind, str):
        raise SpecError(f"{at}: \"type\" must be a string, received {_short(kind)}")
    try:
        cls = layer_class(kind)
    except SpecError as exc:
        raise SpecError(f"{at}: {exc}") if path != "layers" else exc from None
    where = f"{at} ({kind})"
    rest = {k: v for k, v in entry.items() if k != "type"}
    if getattr(cls, "composite", False):
        unknown = set(rest) - {"body"}
        if unknown:
            raise SpecError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; allowed: body")
        body = rest.get("body")
        if not isinstance(body, list) or not body:
            raise SpecError(f"{where}: body must be a non-empty list of layer objects, received {_short(body)}")
        layers = [_build_layer(e, j, f"{at}.body") for j, e in enumerate(body)]
        return _construct(cls, {"body": layers}, where)
    kwargs = _check_kwargs(cls, rest, where)
    return _construct(cls, kwargs, where)


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
        except SpecError as exc:
            raise SpecError(f"spec.convention: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise SpecError(f"spec.convention: {type(exc).__name__}: {exc}") from None
    elif isinstance(conv_obj, str):
        conv = get_convention(conv_obj)
    else:
        raise SpecError(f"spec.convention: expected a preset name ({', '.join(PRESETS)}) or an object, received {_short(conv_obj)}")
    loss_obj = obj.get("loss", "cross_entropy")
    if isinstance(loss_obj, str):
        loss = loss_obj
        if loss not in LOSSES:
            raise SpecError(f"spec.loss: unknown loss {_short(loss)}; known: {', '.join(sorted(LOSSES))}")
    elif isinstance(loss_obj, dict):
        kind = loss_obj.get("type")
        if not isinstance(kind, str) or kind not in LOSSES:
            raise SpecError(f"spec.loss: unknown loss {_short(kind)}; known: {', '.join(sorted(LOSSES))}")
        cls = LOSSES[kind]
        where = f"spec.loss ({kind})"
        kwargs = _check_kwargs(cls, {k: v for k, v in loss_obj.items() if k != "type"}, where)
        loss = _construct(cls, kwargs, where)
    else:
        raise SpecError(f"spec.loss: expected a loss name or an object, received {_short(loss_obj)}")
    name = obj.get("name", "network")
    if not isinstance(name, str):
        raise SpecError(f"spec.name: expected a string, received {_short(name)}")
    if not isinstance(obj.get("description", ""), str):
        raise SpecError(f"spec.description: expected a string, received {_short(obj['description'])}")
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
    if not isinstance(source, (str, Path)):
        raise SpecError(f"spec: expected an example name, a JSON file, a JSON string or a dict, "
                        f"received {type(source).__name__}")
    s = str(source)
    if s in EXAMPLES:
        return parse_spec(json.loads(json.dumps(EXAMPLES[s])))
    if s.lstrip().startswith("{"):
        return parse_spec(parse_json(s, s))
    p = Path(s)
    try:
        exists = p.exists()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte, …
        raise SpecError(f"{_short(s)} is neither a built-in example ({', '.join(EXAMPLES)}) nor a readable "
                        f"JSON file: {_one_line(exc)}") from None
    if not (p.suffix.lower() == ".json" or exists):
        raise SpecError(f"{_short(s)} is neither a built-in example ({', '.join(EXAMPLES)}) nor a JSON file")
    if not exists:
        raise SpecError(f"spec file {s!r} does not exist (built-in examples: {', '.join(EXAMPLES)})")
    if p.is_dir():
        raise SpecError(f"spec {s!r} is a directory, not a JSON file")
    try:
        size = p.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"spec file {s!r} is {size} bytes; a spec is at most {MAX_SPEC_BYTES} bytes")
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec file {s!r} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except OSError as exc:
        raise SpecError(f"spec file {s!r} cannot be read: {exc.strerror or exc}") from None
    return parse_spec(parse_json(text, s))


#: largest spec file read (a spec is a few hundred bytes; this only stops reading a wrong, huge file)
MAX_SPEC_BYTES = 10_000_000
#: deepest nesting of arrays/objects accepted in a spec (a valid spec nests 3 levels)
MAX_SPEC_DEPTH = 32


def parse_json(text: str, source: str = "spec") -> Any:
    """Decode spec JSON strictly: refuse ``NaN``/``Infinity``, deep nesting and huge integers
    with a :class:`SpecError` (never a ``RecursionError`` or ``ValueError``)."""
    depth = _max_depth(text)
    if depth > MAX_SPEC_DEPTH:
        raise SpecError(f"spec {source[:60]!r} nests arrays/objects {depth} levels deep; at most {MAX_SPEC_DEPTH} are accepted")

    def _no_constant(name):
        raise SpecError(f"spec {source[:60]!r}: {name} is not a JSON number; use a finite number")

    try:
        return json.loads(text, parse_constant=_no_constant)
    except SpecError:
        raise
    except json.JSONDecodeError as exc:
        raise SpecError(f"spec {source[:60]!r} is not valid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer with more digits than Python converts
        raise SpecError(f"spec {source[:60]!r} is not acceptable JSON: {exc}") from None


def _max_depth(text: str) -> int:
    """Nesting depth of brackets outside strings (a linear scan, no recursion)."""
    depth = best = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


# ---------------------------------------------------------------------------- the JSON Schema of the format
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_ANNOTATION_SCHEMA = {"int": {"type": "integer"}, "float": {"type": "number"}, "bool": {"type": "boolean"},
                      "str": {"type": "string"}, "None": {"type": "null"},
                      "list[float]": {"type": "array", "minItems": 1, "items": {"type": "number"}}}


def _doc_parameters(cls) -> dict[str, tuple[str, str]]:
    """``name -> (type text, description)`` from the numpydoc ``Parameters`` section of ``cls``'s docstring.

    Plain text handling only (lines ``name[, name] : type`` and their indented descriptions); nothing is evaluated.
    """
    doc = inspect.getdoc(cls) or ""
    lines = doc.splitlines()
    out: dict[str, tuple[str, str]] = {}
    try:
        i = next(k for k, ln in enumerate(lines[:-1]) if ln.strip() == "Parameters" and set(lines[k + 1].strip()) == {"-"})
    except StopIteration:
        return out
    names: list[str] = []
    typ, desc = "", []

    def flush():
        for n in names:
            out.setdefault(n, (typ, " ".join(desc)))

    for k in range(i + 2, len(lines)):
        ln = lines[k]
        nxt = lines[k + 1].strip() if k + 1 < len(lines) else ""
        if ln.strip() and not ln.startswith(" "):
            flush()
            if nxt and set(nxt) == {"-"}:  # the next section's title: the parameters end
                return out
            head, colon, typ = ln.partition(" : ") if " : " in ln else (ln, "", "")
            names, desc, typ = [n.strip() for n in head.split(",") if n.strip().isidentifier()], [], typ.strip()
        elif ln.strip() and names:
            desc.append(ln.strip())
    flush()
    return out


def _enum_from_doc(typ: str) -> list[str]:
    """The string choices of a numpydoc type ``{"a", "b"}`` (quoted words between braces), else ``[]``."""
    if not (typ.startswith("{") and "}" in typ):
        return []
    inner = typ[1:typ.index("}")]
    words = [w.strip() for w in inner.split(",")]
    return [w[1:-1] for w in words if len(w) >= 2 and w[0] == w[-1] and w[0] in "\"'"]


def _keyword_schema(p: inspect.Parameter, doc: tuple[str, str] | None) -> dict:
    """The JSON Schema of one constructor keyword: from its annotation (``int``, ``float``, ``bool``,
    ``str``, ``None`` and unions of them), else from the docstring's type text; enumerations from
    ``{"a", "b"}`` in the docstring; the default when it is a JSON value."""
    typ, desc = doc if doc else ("", "")
    ann = p.annotation
    options: list[dict] = []
    if isinstance(ann, str) and all(t.strip() in _ANNOTATION_SCHEMA for t in ann.split("|")):
        choices = _enum_from_doc(typ)
        for t in (t.strip() for t in ann.split("|")):
            s = dict(_ANNOTATION_SCHEMA[t])
            if t == "str" and choices:
                s["enum"] = choices
            options.append(s)
    elif ann is inspect.Parameter.empty:
        low = typ.lower()
        if "list of float" in low or "list of number" in low:
            options = [{"type": "array", "items": {"type": "number"}}]
        elif "(int, int)" in low:
            options = [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}]
        else:  # what the checker accepts for an unannotated keyword: an integer or a list of integers
            options = [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]
    else:
        options = [{}]  # an annotation the format does not describe: left to the constructor
    if p.default is None and {"type": "null"} not in options:
        options.append({"type": "null"})
    out = options[0] if len(options) == 1 else {"anyOf": options}
    if desc:
        out = {"description": desc, **out}
    if p.default is not inspect.Parameter.empty and (p.default is None or isinstance(p.default, (bool, int, float, str))):
        out = {**out, "default": p.default}
    return out


def _object_schema(type_name: str, cls, extra: dict | None = None) -> dict:
    """``{"type": type_name, **keywords}`` of one registered class (a layer or a loss)."""
    doc = _doc_parameters(cls)
    first = (inspect.getdoc(cls) or "").strip().split("\n\n")[0].replace("\n", " ")
    props: dict[str, Any] = {"type": {"const": type_name}}
    required = ["type"]
    if extra is not None:
        props.update(extra)
        required += list(extra)
    else:
        for name, p in _keyword_parameters(cls).items():
            props[name] = _keyword_schema(p, doc.get(name))
            if p.default is inspect.Parameter.empty:
                required.append(name)
    return {"title": f"{type_name} ({cls.__name__})", "description": first, "type": "object",
            "properties": props, "required": required, "additionalProperties": False}


def spec_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the spec format, generated from the registries.

    Every registered layer class (:func:`jacobian_bp.layers.registry.all_layer_classes`) gives one
    ``{"type": NAME, …}`` object whose properties are its constructor's keywords (types from the
    annotations, enumerations and descriptions from the numpydoc ``Parameters`` section, required
    when they have no default); a composite layer takes ``body``, a list of layers.  Losses come
    from :data:`jacobian_bp.layers.losses.LOSSES`, conventions from the presets and the
    :class:`~jacobian_bp.engine.conventions.Convention` knobs.  A new layer appears here once it is
    registered.  The schema checks the structure; :func:`parse_spec` also checks values (e.g.
    shapes that fit together) and stays the authority.  ``jacobian-bp schema`` prints it.
    """
    from dataclasses import fields

    from .engine.conventions import CONVENTION_CHOICES as conv_choices
    from .engine.conventions import Convention
    from .layers.registry import all_layer_classes

    layers = []
    for name, cls in sorted(all_layer_classes().items()):
        if getattr(cls, "composite", False):
            body = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/layer"},
                    "description": "the layers of the block, applied in order"}
            layers.append(_object_schema(name, cls, {"body": body}))
        else:
            layers.append(_object_schema(name, cls))
    losses = [_object_schema(name, cls) for name, cls in sorted(LOSSES.items()) if isinstance(cls, type)]
    knobs: dict[str, Any] = {"preset": {"enum": list(PRESETS), "default": "pytorch",
                                        "description": "the preset the other knobs change"}}
    for f in fields(Convention):
        if f.name in conv_choices:
            knobs[f.name] = {"enum": list(conv_choices[f.name])}
        elif f.type in ("float", float):
            knobs[f.name] = {"type": "number"}
        else:
            knobs[f.name] = {"type": "string"}
    knobs["mse_scale"] = {**knobs.get("mse_scale", {}), "exclusiveMinimum": 0}
    knobs["relu_at_zero"] = {**knobs.get("relu_at_zero", {}), "minimum": 0, "maximum": 1}
    seed = {"type": "integer", "minimum": 0}
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "urn:jacobian-bp:spec",
        "title": "jacobian_bp network spec",
        "description": "A network for jacobian-bp: input shape, layers, loss, convention, generated data and "
                       "parameters (jacobian_bp.spec). Unknown keys are errors; values are never evaluated.",
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "shown in reports"},
            "description": {"type": "string"},
            "input": {"description": "input shape: an integer n (a vector) or a list such as [C, H, W]",
                      "anyOf": [{"type": "integer", "minimum": 1},
                                {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}}]},
            "layers": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/layer"}},
            "loss": {"$ref": "#/$defs/loss", "default": "cross_entropy"},
            "convention": {"$ref": "#/$defs/convention", "default": "pytorch"},
            "data": {"type": "object", "additionalProperties": False, "description": "generated data",
                     "properties": {"seed": seed, "batch": {"type": "integer", "minimum": 1}}},
            "params": {"type": "object", "additionalProperties": False, "description": "generated parameters",
                       "properties": {"seed": seed}},
        },
        "required": ["input", "layers"],
        "additionalProperties": False,
        "$defs": {
            "layer": {"oneOf": layers},
            "loss": {"anyOf": [{"enum": sorted(LOSSES)}, {"oneOf": losses}]},
            "convention": {"anyOf": [{"enum": list(PRESETS)},
                                     {"type": "object", "properties": knobs, "additionalProperties": False}]},
        },
    }
