"""Fuzzing the JSON spec (issue #11).

Valid specs (the built-in EXAMPLES and a few small ones) are mutated by hypothesis --
keys replaced, added and removed, values swapped for random JSON values (strings with
code and LaTeX payloads, huge/negative/float/NaN/Inf numbers, nested lists and objects)
-- and fed to ``load_spec(dict)``; when a spec loads and stays small (|θ| ≤ 10,000), the
network is run (``net.gradient`` on generated data) and, when tiny, a
:class:`~jacobian_bp.symbolic.SymbolicNetwork` is built.  The only exception allowed is
:class:`~jacobian_bp.errors.JacobianBPError`; no example may hang (hypothesis deadline);
no string is ever evaluated (the MARKER file never appears).  Derandomized: every run
tries the same 200 examples.
"""
from __future__ import annotations

import copy
import math
import os
import warnings
from math import prod

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from jacobian_bp.errors import JacobianBPError  # noqa: E402
from jacobian_bp.spec import EXAMPLES, load_spec  # noqa: E402

MARKER = "MARKER"
PAYLOADS = [
    "__import__('os').system('touch MARKER') or 0",
    "exec(\"open('MARKER','w').write('x')\")",
    r"\input{/etc/passwd}",
    r"\immediate\write18{touch MARKER}",
    "$(touch MARKER)",
    "{{7*7}}",
    "",
    "\x00",
    "relu",
    "damadi",
    "mse",
]
MAX_PARAMS = 10_000
MAX_ACTIVATION = 10_000

SMALL = [
    {"input": 3, "layers": [{"type": "dense", "out_features": 2}, {"type": "relu", "at_zero": 0.5},
                            {"type": "dense", "out_features": 2}], "loss": "mse", "convention": "park"},
    {"input": [1, 5, 5], "layers": [{"type": "conv2d", "out_channels": 1, "kernel_size": 2, "bias": "untied"},
                                    {"type": "avgpool2d", "kernel_size": 2}, {"type": "flatten"},
                                    {"type": "dense", "out_features": 2}, {"type": "sigmoid"}],
     "loss": {"type": "bce"}, "convention": {"preset": "mml", "reduction": "mean"}, "data": {"batch": 2}},
    {"input": 2, "layers": [{"type": "dense", "out_features": 3, "bias": False}, {"type": "elu", "alpha": 0.5},
                            {"type": "dense", "out_features": 2}, {"type": "softmax"}],
     "loss": "cross_entropy", "convention": "ganev", "data": {"seed": 3, "batch": 3}, "params": {"seed": 1}},
]
BASES = [v for v in EXAMPLES.values()] + SMALL

KEYS = ["name", "description", "input", "layers", "loss", "convention", "data", "params", "type", "out_features",
        "bias", "at_zero", "negative_slope", "alpha", "kernel_size", "stride", "padding", "dilation", "mode",
        "in_channels", "size_rule", "out_channels", "in_features", "scale", "reduce_outputs", "preset",
        "reduction", "mse_scale", "relu_at_zero", "weight_layout", "vec_order", "theta_order", "batch_axis",
        "notation", "seed", "batch", "__class__", "__init__"]
LAYER_TYPES = ["dense", "identity", "relu", "leaky_relu", "sigmoid", "tanh", "arctan", "softplus", "elu",
               "softmax", "radial_sigmoid", "conv2d", "maxpool2d", "avgpool2d", "flatten", "generic", "gelu"]

numbers = st.one_of(
    st.integers(-3, 8),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, 1.5, 1e308, -1e308, 2**31, 2**63, float("nan"), float("inf")]),
)
texts = st.one_of(st.sampled_from(PAYLOADS + LAYER_TYPES), st.text(max_size=12))
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=4)),
    max_leaves=12,
)
keys = st.one_of(st.sampled_from(KEYS), texts)
# values a real spec would hold: most mutations keep the spec loadable, so the network code runs too
plausible = st.one_of(
    st.integers(0, 4), st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, True, False, [1, 2], [2, 2], [3, 1]]),
    st.sampled_from(["tied", "untied", "none", "correlation", "convolution", "floor", "exact", "sum", "mean",
                     "damadi", "ganev", "park", "mml", "pytorch", "in_out", "out_in", "row", "col", "forward",
                     "reverse", "weights_first", "first", "last"]),
)
LAYER_KEYS = ["out_features", "bias", "at_zero", "negative_slope", "alpha", "kernel_size", "stride", "padding",
              "dilation", "mode", "size_rule", "out_channels", "in_channels"]


def _layer_keys(kind) -> list[str]:
    """The constructor keywords of a layer type (its valid spec keys), [] when unknown."""
    import inspect

    from jacobian_bp.layers import layer_class

    try:
        cls = layer_class(kind) if isinstance(kind, str) else None
    except JacobianBPError:
        return []
    return [] if cls is None else sorted(p for p in inspect.signature(cls.__init__).parameters if p != "self")


@st.composite
def mutated_specs(draw):
    spec = copy.deepcopy(draw(st.sampled_from(BASES)))
    mild = draw(st.booleans())  # mild: plausible values for valid keys, so that many specs load and run
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["tweak", "tweak_conv"] if mild else
                                  ["top_set", "top_del", "layer_set", "layer_del", "layer_replace", "layer_insert",
                                   "layer_remove", "conv", "loss", "tweak", "tweak_conv"]))
        layers = spec.get("layers")
        if op == "tweak" and isinstance(layers, list) and layers and isinstance(layers[-1], dict):
            i = draw(st.integers(0, len(layers) - 1))
            if isinstance(layers[i], dict):
                allowed = _layer_keys(layers[i].get("type")) or LAYER_KEYS
                layers[i][draw(st.sampled_from(allowed))] = draw(plausible)
        elif op == "tweak_conv":
            spec["convention"] = {"preset": draw(st.sampled_from(["damadi", "ganev", "park", "mml", "pytorch"])),
                                  draw(st.sampled_from(["reduction", "mse_scale", "relu_at_zero", "vec_order",
                                                        "theta_order", "batch_axis", "weight_layout"])): draw(plausible)}
        elif op == "top_set":
            spec[draw(keys)] = draw(json_values)
        elif op == "top_del" and spec:
            spec.pop(draw(st.sampled_from(sorted(spec, key=str))))
        elif op in ("layer_set", "layer_del", "layer_replace", "layer_remove") and isinstance(layers, list) and layers:
            i = draw(st.integers(0, len(layers) - 1))
            if op == "layer_replace":
                layers[i] = draw(json_values)
            elif op == "layer_remove":
                layers.pop(i)
            elif isinstance(layers[i], dict):
                if op == "layer_set":
                    layers[i][draw(keys)] = draw(json_values)
                elif layers[i]:
                    layers[i].pop(draw(st.sampled_from(sorted(layers[i], key=str))))
        elif op == "layer_insert" and isinstance(layers, list):
            entry = {"type": draw(st.one_of(st.sampled_from(LAYER_TYPES), texts))}
            for _ in range(draw(st.integers(0, 2))):
                entry[draw(keys)] = draw(json_values)
            layers.insert(draw(st.integers(0, len(layers))), entry)
        elif op == "conv":
            spec["convention"] = draw(st.one_of(
                json_values, st.sampled_from(["damadi", "ganev", "park", "mml", "pytorch"]),
                st.dictionaries(st.sampled_from(["preset", "reduction", "mse_scale", "relu_at_zero", "weight_layout",
                                                 "vec_order", "theta_order", "batch_axis", "notation", "name"]),
                                scalars, max_size=3)))
        elif op == "loss":
            spec["loss"] = draw(st.one_of(
                json_values, st.sampled_from(["mse", "bce", "cross_entropy", "ce"]),
                st.fixed_dictionaries({"type": st.sampled_from(["mse", "bce", "cross_entropy"])},
                                      optional={"scale": scalars, "reduce_outputs": scalars})))
    return spec


def _small_enough(net) -> bool:
    if net.n_params > MAX_PARAMS or prod(net.input_shape) > MAX_ACTIVATION:
        return False
    return all(prod(getattr(layer, "out_shape", ()) or (1,)) <= MAX_ACTIVATION for layer in net.layers)


def _exercise(spec: dict) -> None:
    try:
        s = load_spec(spec)
    except JacobianBPError:
        return
    net = s.network
    if not _small_enough(net):
        return
    try:
        batch = s.batch if s.batch <= 8 else 2
        from jacobian_bp.spec import generate_data

        X, Y = generate_data(net, batch, s.data_seed % (2**32))
        params = net.init_params(s.param_seed % (2**32))
        g = net.gradient(X, Y, params)
        assert g.vector.shape == (net.n_params,)
        if net.n_params <= 60 and not any(layer.kind == "maxpool2d" for layer in net.layers):
            from jacobian_bp.symbolic import SymbolicNetwork

            SymbolicNetwork(net)
    except JacobianBPError:
        return


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    old = os.getcwd()
    os.chdir(d)
    yield d
    os.chdir(old)


@settings(max_examples=200, deadline=5000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(spec=mutated_specs())
def _fuzz(spec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _exercise(spec)
        except RecursionError as exc:  # report a readable failure instead of a pytest recursion crash
            raise AssertionError(f"RecursionError on {str(spec)[:300]}") from exc
    assert not os.path.exists(MARKER), f"code was executed for the spec {spec!r}"


def test_fuzz_json_spec(workdir):
    """200 mutated specs: only JacobianBPError, no hang, no code execution."""
    _fuzz()
    assert not (workdir / MARKER).exists()


def test_fuzz_strategy_produces_loadable_and_refused_specs():
    """The strategy is not degenerate: some mutated specs load, some are refused."""
    import random

    rnd = random.Random(0)
    loaded = refused = 0
    for base in BASES:
        s = copy.deepcopy(base)
        s.setdefault("data", {})
        loaded += 1 if _loads(s) else 0
        bad = copy.deepcopy(base)
        bad[rnd.choice(["input", "layers", "loss"])] = float("nan")
        refused += 0 if _loads(bad) else 1
    assert loaded == len(BASES) and refused == len(BASES)
    assert not math.isnan(0.0)


def _loads(spec) -> bool:
    try:
        load_spec(spec)
        return True
    except JacobianBPError:
        return False
