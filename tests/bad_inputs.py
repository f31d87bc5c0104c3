"""The bad-input catalogue, as data (issue #11).

Every record is one *kind* of bad input on one surface:

* ``api``      -- a callable ``call(tmp_path)`` using the Python API;
* ``spec``     -- ``spec``: a dict or a JSON text given to :func:`jacobian_bp.spec.load_spec`;
  when it loads, the network is also run (generated data, ``net.gradient``) -- the error
  may come from either step;
* ``cli``      -- ``argv`` for :func:`jacobian_bp.cli.main`, where ``{tmp}`` stands for the
  test's temporary directory; ``setup(tmp_path)`` writes the input files first;
* ``symbolic`` -- a callable ``call(tmp_path)`` using :mod:`jacobian_bp.symbolic`.

Expected outcome (``expect``):

* ``"error"`` (default): api/spec/symbolic raise a subclass of
  :class:`jacobian_bp.errors.JacobianBPError` with a one-line message; cli exits with 2
  and prints exactly one line ``jacobian-bp: error: ...`` on stderr (or argparse's standard
  usage + error lines when ``argparse=True``), no traceback, and leaves no new file;
* ``"safe"``: a hostile string that the package may either refuse as above or accept; when
  accepted, every LaTeX document produced must not contain the payload verbatim.

In every case the file ``MARKER`` must never appear in the working directory (the tests
run with ``cwd = tmp_path``): no string is ever evaluated.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

MARKER = "MARKER"
CODE = "__import__('os').system('touch MARKER') or 0"
CODE2 = "exec(\"open('MARKER','w').write('x')\")"
LATEX = r"\input{/etc/passwd}"
LATEX2 = r"\immediate\write18{touch MARKER}"
PAYLOADS = (LATEX, LATEX2, CODE)


@dataclass(frozen=True)
class Case:
    id: str
    surface: str  # "api" | "spec" | "cli" | "symbolic"
    call: Callable[[Path], Any] | None = None
    spec: Any = None
    argv: tuple = ()
    setup: Callable[[Path], None] | None = None
    expect: str = "error"  # "error" | "safe"
    argparse: bool = False  # cli: an argparse usage error (2-line standard form accepted)
    note: str = ""


# --------------------------------------------------------------------------- helpers
def _spec(**over) -> dict:
    """damadi-2layer with top-level keys replaced."""
    base = {
        "name": "t", "input": 4,
        "layers": [{"type": "dense", "out_features": 5}, {"type": "sigmoid"},
                   {"type": "dense", "out_features": 3}, {"type": "softmax"}],
        "loss": "cross_entropy", "convention": "damadi",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def _layer_spec(layer: dict, *, before: list | None = None) -> dict:
    """dense 5 -> LAYER -> dense 3 -> softmax, or a custom prefix."""
    layers = (before if before is not None else [{"type": "dense", "out_features": 5}]) + [layer]
    return _spec(layers=layers + [{"type": "dense", "out_features": 3}, {"type": "softmax"}])


def _cnn(layer: dict, inp=(1, 6, 6)) -> dict:
    return {"name": "c", "input": list(inp),
            "layers": [layer, {"type": "relu"}, {"type": "flatten"}, {"type": "dense", "out_features": 3},
                       {"type": "softmax"}],
            "loss": "cross_entropy", "convention": "pytorch"}


def _pool(layer: dict) -> dict:
    return {"name": "p", "input": [1, 6, 6],
            "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3}, layer, {"type": "flatten"},
                       {"type": "dense", "out_features": 3}, {"type": "softmax"}],
            "loss": "cross_entropy", "convention": "pytorch"}


def _net(name="damadi-2layer"):
    from jacobian_bp.spec import load_spec

    return load_spec(name).network


def _grad(name="damadi-2layer", x=None, y=None, params=None, **kw):
    """net.gradient with the default data/params, some replaced."""
    from jacobian_bp.spec import generate_data

    def run(tmp):
        net = _net(name)
        X, Y = generate_data(net, 3, 0)
        p = net.init_params(0)
        if callable(params):
            p = params(p)
        X2 = x(X) if callable(x) else X
        Y2 = y(Y) if callable(y) else Y
        return net.gradient(X2, Y2, p, **kw)

    return run


def _with(p: dict, key: str, value) -> dict:
    p = dict(p)
    p[key] = value
    return p


def _set0(arr, value, dtype=None):
    a = np.array(arr, dtype=dtype if dtype is not None else np.result_type(arr, np.asarray(value)))
    a.flat[0] = value
    return a


def _layer(cls_name: str, **kw):
    def run(tmp):
        from jacobian_bp.layers import layer_class

        return layer_class(cls_name)(**kw)

    return run


def _build(layers_fn, loss="cross_entropy", inp=4, conv="pytorch"):
    def run(tmp):
        from jacobian_bp import Network

        return Network(layers_fn(), loss, inp, conv)

    return run


def _write_json(name: str, obj=None, text: str | None = None):
    def setup(tmp: Path):
        (tmp / name).write_text(text if text is not None else json.dumps(obj), encoding="utf-8")

    return setup


def _write_npz(name: str, fn):
    def setup(tmp: Path):
        np.savez(tmp / name, **fn())

    return setup


def _params_npz(over=None, drop=None):
    def fn():
        p = _net().init_params(0)
        if over:
            p.update(over(p))
        if drop:
            p.pop(drop)
        return p

    return fn


def _data_npz(x=None, y=None, extra=None):
    def fn():
        from jacobian_bp.spec import generate_data

        X, Y = generate_data(_net(), 2, 0)
        d = {"x": X if x is None else x(X), "y": Y if y is None else y(Y)}
        if extra:
            d.update(extra)
        return {k: v for k, v in d.items() if v is not None}

    return fn


def _chain(*setups):
    def setup(tmp):
        for s in setups:
            s(tmp)

    return setup


def _deep_python(depth: int) -> dict:
    """A spec whose ``input`` is a Python list nested ``depth`` deep (built without recursion)."""
    inner: list = []
    for _ in range(depth):
        inner = [inner]
    return _spec(input=inner)


def _nested_json(depth: int) -> str:
    return '{"name": "deep", "input": ' + "[" * depth + "]" * depth + ', "layers": []}'


# --------------------------------------------------------------------------- api
API: list[Case] = [
    Case("api-x-wrong-shape", "api", _grad(x=lambda X: X[:, :3])),
    Case("api-x-wrong-ndim", "api", _grad(x=lambda X: X[None])),
    Case("api-x-complex", "api", _grad(x=lambda X: X + 1j)),
    Case("api-x-bool", "api", _grad(x=lambda X: X > 0)),
    Case("api-x-object-strings", "api", _grad(x=lambda X: np.full(X.shape, "1.0", dtype=object))),
    Case("api-x-str-array", "api", _grad(x=lambda X: X.astype(str))),
    Case("api-x-str-payload", "api", _grad(x=lambda X: np.full(X.shape, CODE))),
    Case("api-x-nan", "api", _grad(x=lambda X: _set0(X, np.nan))),
    Case("api-x-inf", "api", _grad(x=lambda X: _set0(X, np.inf))),
    Case("api-x-none", "api", _grad(x=lambda X: None)),
    Case("api-empty-batch", "api", _grad(x=lambda X: X[:0], y=lambda Y: Y[:0])),
    Case("api-y-nan", "api", _grad(y=lambda Y: _set0(Y, np.nan))),
    Case("api-y-wrong-shape", "api", _grad(y=lambda Y: Y[:, :2])),
    Case("api-y-batch-mismatch", "api", _grad(y=lambda Y: Y[:2])),
    Case("api-y-complex", "api", _grad(y=lambda Y: Y + 0j + 1e-3j)),
    Case("api-ce-target-not-probability-row", "api", _grad(y=lambda Y: 2 * Y)),
    Case("api-ce-target-negative", "api", _grad(y=lambda Y: Y - 0.5 + np.array([0.0, 0.0, 1.5]))),
    Case("api-bce-target-above-1", "api", lambda tmp: _bce_run(lambda Y: Y + 1.5)),
    Case("api-bce-target-below-0", "api", lambda tmp: _bce_run(lambda Y: Y - 1.5)),
    Case("api-params-nan", "api", _grad(params=lambda p: _with(p, "W1", _set0(p["W1"], np.nan)))),
    Case("api-params-inf", "api", _grad(params=lambda p: _with(p, "b2", _set0(p["b2"], -np.inf)))),
    Case("api-params-wrong-shape", "api", _grad(params=lambda p: _with(p, "W1", p["W1"].T))),
    Case("api-params-missing", "api", _grad(params=lambda p: {k: v for k, v in p.items() if k != "b1"})),
    Case("api-params-unknown-key", "api", _grad(params=lambda p: _with(p, "W9", p["W1"]))),
    Case("api-params-complex", "api", _grad(params=lambda p: _with(p, "W1", p["W1"] + 1j))),
    Case("api-params-str", "api", _grad(params=lambda p: _with(p, "b1", np.full(p["b1"].shape, CODE)))),
    Case("api-params-object-str", "api",
         _grad(params=lambda p: _with(p, "b1", np.full(p["b1"].shape, CODE, dtype=object)))),
    Case("api-params-not-a-dict", "api", _grad(params=lambda p: list(p.values()))),
    Case("api-gradient-unknown-method", "api", _grad(method="bogus")),
    Case("api-overflow-unmatched-softmax-bce", "api", lambda tmp: _overflow_run("bce")),
    Case("api-overflow-unmatched-sigmoid-ce", "api", lambda tmp: _overflow_run("sigmoid-ce")),
    Case("api-chain-factors-negative-l", "api", lambda tmp: _single(lambda net, x, p: net.chain_factors(x, p, l=-3))),
    Case("api-chain-factors-l-too-large", "api", lambda tmp: _single(lambda net, x, p: net.chain_factors(x, p, l=7))),
    Case("api-layer-jacobian-l-0", "api", lambda tmp: _single(lambda net, x, p: net.layer_jacobian(x, p, 0))),
    Case("api-local-jacobian-l-0", "api", lambda tmp: _single(lambda net, x, p: net.local_jacobian(x, p, 0))),
    Case("api-jacobian-theta-of-batch", "api",
         lambda tmp: _single(lambda net, x, p: net.jacobian_theta(np.stack([x, x]), p))),
    Case("api-unpack-wrong-length", "api", lambda tmp: _net().unpack(np.zeros(3))),
    Case("api-entry-unknown-name", "api", lambda tmp: _net().entry("W9")),
    Case("api-dense-out-features-0", "api", _layer("dense", out_features=0)),
    Case("api-dense-out-features-negative", "api", _layer("dense", out_features=-2)),
    Case("api-dense-out-features-float", "api", _layer("dense", out_features=2.5)),
    Case("api-dense-out-features-bool", "api", _layer("dense", out_features=True)),
    Case("api-dense-out-features-str", "api", _layer("dense", out_features="3")),
    Case("api-dense-bias-no", "api", _layer("dense", out_features=3, bias="no")),
    Case("api-relu-at-zero-1.5", "api", _layer("relu", at_zero=1.5)),
    Case("api-relu-at-zero-nan", "api", _layer("relu", at_zero=float("nan"))),
    Case("api-relu-at-zero-str", "api", _layer("relu", at_zero="abc")),
    Case("api-relu-at-zero-code", "api", _layer("relu", at_zero=CODE)),
    Case("api-leaky-relu-at-zero-5", "api", _layer("leaky_relu", at_zero=5)),
    Case("api-leaky-relu-slope-str", "api", _layer("leaky_relu", negative_slope="abc")),
    Case("api-elu-alpha-str", "api", _layer("elu", alpha="abc")),
    Case("api-conv-stride-0", "api", _layer("conv2d", out_channels=2, kernel_size=3, stride=0)),
    Case("api-conv-dilation-0", "api", _layer("conv2d", out_channels=2, kernel_size=3, dilation=0)),
    Case("api-conv-out-channels-float", "api", _layer("conv2d", out_channels=2.0, kernel_size=3)),
    Case("api-pool-padding-ge-kernel", "api", _layer("maxpool2d", kernel_size=2, padding=2)),
    Case("api-network-input-0", "api",
         _build(lambda: [_layer("dense", out_features=3)(None)], inp=0)),
    Case("api-network-input-float", "api",
         _build(lambda: [_layer("dense", out_features=3)(None)], inp=2.5)),
    Case("api-network-no-parametric-layer", "api",
         _build(lambda: [_layer("relu")(None)])),
    Case("api-network-not-a-layer", "api", _build(lambda: [_layer("dense", out_features=3)(None), "softmax"])),
    Case("api-network-unknown-loss", "api", _build(lambda: [_layer("dense", out_features=3)(None)], loss="hinge")),
    Case("api-network-unknown-preset", "api", _build(lambda: [_layer("dense", out_features=3)(None)], conv="keras")),
    Case("api-network-conv-without-flatten", "api",
         _build(lambda: [_layer("conv2d", out_channels=1, kernel_size=3)(None)], inp=(1, 5, 5))),
    Case("api-convention-unknown-knob", "api", lambda tmp: _conv().replace(colour="red")),
    Case("api-convention-relu-at-zero-2", "api", lambda tmp: _conv().replace(relu_at_zero=2.0)),
    Case("api-convention-mse-scale-str", "api", lambda tmp: _conv().replace(mse_scale="abc")),
    Case("api-mse-scale-negative", "api", lambda tmp: _loss("mse", scale=-1.0)),
    Case("api-mse-scale-str", "api", lambda tmp: _loss("mse", scale="abc")),
    Case("api-generate-data-batch-0", "api", lambda tmp: _gen(0, 0)),
    Case("api-generate-data-negative-seed", "api", lambda tmp: _gen(2, -1)),
    Case("api-init-params-negative-seed", "api", lambda tmp: _net().init_params(-5)),
    Case("api-memory-budget-negative", "api", lambda tmp: _budget(-1)),
    Case("api-radial-sigmoid-at-zero", "api", lambda tmp: _radial_zero()),
]


def _conv():
    from jacobian_bp.engine.conventions import get_convention

    return get_convention("pytorch")


def _loss(name, **kw):
    from jacobian_bp.layers.losses import make_loss

    return make_loss(name, **kw)


def _gen(batch, seed):
    from jacobian_bp.spec import generate_data

    return generate_data(_net(), batch, seed)


def _budget(n):
    from jacobian_bp.backend.guard import set_memory_budget

    return set_memory_budget(n)


def _single(fn):
    from jacobian_bp.spec import generate_data

    net = _net()
    x, _ = generate_data(net, 1, 0)
    return fn(net, x, net.init_params(0))


def _bce_run(ymap):
    from jacobian_bp.spec import generate_data, load_spec

    net = load_spec({"input": 4, "layers": [{"type": "dense", "out_features": 3}, {"type": "sigmoid"}],
                     "loss": "bce"}).network
    X, Y = generate_data(net, 3, 0)
    return net.gradient(X, ymap(Y), net.init_params(0))


def _overflow_run(kind):
    """Unmatched pair with logits ~ ±1e4: the activation saturates to exact 0/1 and the loss's
    gradient w.r.t. ŷ divides by 0 -- an all-NaN/Inf gradient must be refused, not returned."""
    from jacobian_bp.spec import generate_data, load_spec

    act, loss = ("softmax", "bce") if kind == "bce" else ("sigmoid", "cross_entropy")
    net = load_spec({"input": 4, "layers": [{"type": "dense", "out_features": 3}, {"type": act}],
                     "loss": loss}).network
    X, Y = generate_data(net, 3, 0)
    p = {k: v * 1e4 for k, v in net.init_params(0).items()}
    g = net.gradient(X, Y, p)
    if not np.all(np.isfinite(g.vector)):
        raise AssertionError(f"non-finite gradient returned silently: {g.vector}")
    return g


def _radial_zero():
    from jacobian_bp.spec import load_spec

    net = load_spec({"input": 2, "layers": [{"type": "dense", "out_features": 3}, {"type": "radial_sigmoid"},
                                            {"type": "dense", "out_features": 2}], "loss": "mse"}).network
    p = {k: np.zeros_like(v) for k, v in net.init_params(0).items()}
    return net.gradient(np.ones(2), np.ones(2), p)


# --------------------------------------------------------------------------- spec
SPEC: list[Case] = [
    Case("spec-not-an-object", "spec", spec=[1, 2, 3]),
    Case("spec-malformed-json", "spec", spec='{"input": 4, "layers": ['),
    Case("spec-deeply-nested-json", "spec", spec=_nested_json(100_000)),
    Case("spec-deeply-nested-object", "spec", spec=lambda: _deep_python(100_000)),
    Case("spec-missing-input", "spec", spec=_spec(input=_DROP)),
    Case("spec-missing-layers", "spec", spec=_spec(layers=_DROP)),
    Case("spec-empty-layers", "spec", spec=_spec(layers=[])),
    Case("spec-layers-not-a-list", "spec", spec=_spec(layers={"type": "dense"})),
    Case("spec-unknown-top-key", "spec", spec=_spec(optimizer="sgd")),
    Case("spec-unknown-dunder-key", "spec", spec=_spec(__class__="x")),
    Case("spec-input-0", "spec", spec=_spec(input=0)),
    Case("spec-input-negative", "spec", spec=_spec(input=-4)),
    Case("spec-input-float", "spec", spec=_spec(input=4.0)),
    Case("spec-input-bool", "spec", spec=_spec(input=True)),
    Case("spec-input-empty-list", "spec", spec=_spec(input=[])),
    Case("spec-input-list-str", "spec", spec=_spec(input=[1, "6", 6])),
    Case("spec-input-nan", "spec", spec=_spec(input=float("nan"))),
    Case("spec-layer-not-an-object", "spec", spec=_spec(layers=["dense"])),
    Case("spec-layer-missing-type", "spec", spec=_spec(layers=[{"out_features": 3}])),
    Case("spec-layer-type-not-str", "spec", spec=_spec(layers=[{"type": 5}])),
    Case("spec-unknown-layer-type", "spec", spec=_layer_spec({"type": "swish"})),
    Case("spec-layer-type-code", "spec", spec=_layer_spec({"type": CODE})),
    Case("spec-unknown-layer-key", "spec", spec=_layer_spec({"type": "relu", "inplace": True})),
    Case("spec-layer-value-dict", "spec", spec=_layer_spec({"type": "relu", "at_zero": {"x": 1}})),
    Case("spec-no-parametric-layer", "spec", spec=_spec(layers=[{"type": "relu"}])),
    Case("spec-dense-out-features-0", "spec", spec=_spec(layers=[{"type": "dense", "out_features": 0}])),
    Case("spec-dense-out-features-negative", "spec", spec=_spec(layers=[{"type": "dense", "out_features": -3}])),
    Case("spec-dense-out-features-float", "spec", spec=_spec(layers=[{"type": "dense", "out_features": 2.5}])),
    Case("spec-dense-out-features-bool", "spec", spec=_spec(layers=[{"type": "dense", "out_features": True}])),
    Case("spec-dense-out-features-str", "spec", spec=_spec(layers=[{"type": "dense", "out_features": "3"}])),
    Case("spec-dense-missing-out-features", "spec", spec=_spec(layers=[{"type": "dense"}])),
    Case("spec-dense-bias-no", "spec", spec=_spec(layers=[{"type": "dense", "out_features": 3, "bias": "no"},
                                                          {"type": "softmax"}])),
    Case("spec-dense-in-features-mismatch", "spec", spec=_spec(layers=[{"type": "dense", "out_features": 3,
                                                                        "in_features": 7}])),
    Case("spec-relu-at-zero-1.5", "spec", spec=_layer_spec({"type": "relu", "at_zero": 1.5})),
    Case("spec-relu-at-zero-negative", "spec", spec=_layer_spec({"type": "relu", "at_zero": -0.5})),
    Case("spec-relu-at-zero-nan", "spec", spec=_layer_spec({"type": "relu", "at_zero": float("nan")})),
    Case("spec-relu-at-zero-inf", "spec", spec=_layer_spec({"type": "relu", "at_zero": float("inf")})),
    Case("spec-relu-at-zero-str", "spec", spec=_layer_spec({"type": "relu", "at_zero": "abc"})),
    Case("spec-relu-at-zero-5", "spec", spec=_layer_spec({"type": "relu", "at_zero": 5})),
    Case("spec-relu-at-zero-code", "spec", spec=_layer_spec({"type": "relu", "at_zero": CODE})),
    Case("spec-relu-at-zero-bool", "spec", spec=_layer_spec({"type": "relu", "at_zero": True})),
    Case("spec-leaky-relu-at-zero-5", "spec", spec=_layer_spec({"type": "leaky_relu", "at_zero": 5})),
    Case("spec-leaky-relu-at-zero-code", "spec", spec=_layer_spec({"type": "leaky_relu", "at_zero": CODE})),
    Case("spec-leaky-relu-slope-nan", "spec", spec=_layer_spec({"type": "leaky_relu", "negative_slope": float("nan")})),
    Case("spec-leaky-relu-slope-str", "spec", spec=_layer_spec({"type": "leaky_relu", "negative_slope": "0.1"})),
    Case("spec-elu-alpha-0", "spec", spec=_layer_spec({"type": "elu", "alpha": 0})),
    Case("spec-elu-alpha-str", "spec", spec=_layer_spec({"type": "elu", "alpha": "abc"})),
    Case("spec-elu-alpha-list", "spec", spec=_layer_spec({"type": "elu", "alpha": [1, 2]})),
    Case("spec-conv-stride-0", "spec", spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 0})),
    Case("spec-conv-dilation-0", "spec", spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "dilation": 0})),
    Case("spec-conv-padding-negative", "spec", spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": -1})),
    Case("spec-conv-kernel-0", "spec", spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 0})),
    Case("spec-conv-kernel-larger-than-input", "spec", spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 7})),
    Case("spec-conv-dilated-kernel-too-large", "spec",
         spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "dilation": 3})),
    Case("spec-conv-kernel-triple", "spec", spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": [3, 3, 3]})),
    Case("spec-conv-kernel-float", "spec", spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 2.5})),
    Case("spec-conv-out-channels-0", "spec", spec=_cnn({"type": "conv2d", "out_channels": 0, "kernel_size": 3})),
    Case("spec-conv-in-channels-mismatch", "spec",
         spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "in_channels": 3})),
    Case("spec-conv-on-flat-input", "spec", spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 3}, inp=(36,))),
    Case("spec-conv-size-rule-exact-no-tiling", "spec",
         spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "size_rule": "exact"})),
    Case("spec-conv-bias-no", "spec", spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "bias": "no"})),
    Case("spec-conv-mode-code", "spec", spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "mode": CODE})),
    Case("spec-conv-mode-latex", "spec", spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "mode": LATEX})),
    Case("spec-conv-size-rule-latex", "spec",
         spec=_cnn({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "size_rule": LATEX})),
    Case("spec-pool-padding-ge-kernel", "spec", spec=_pool({"type": "maxpool2d", "kernel_size": 2, "padding": 2})),
    Case("spec-pool-stride-0", "spec", spec=_pool({"type": "avgpool2d", "kernel_size": 2, "stride": 0})),
    Case("spec-pool-kernel-too-large", "spec", spec=_pool({"type": "maxpool2d", "kernel_size": 5})),
    Case("spec-missing-flatten", "spec", spec={"input": [1, 6, 6], "layers": [
        {"type": "conv2d", "out_channels": 2, "kernel_size": 3}, {"type": "dense", "out_features": 3}]}),
    Case("spec-unknown-preset", "spec", spec=_spec(convention="keras")),
    Case("spec-preset-latex", "spec", spec=_spec(convention=LATEX)),
    Case("spec-convention-not-str-or-object", "spec", spec=_spec(convention=3)),
    Case("spec-convention-unknown-preset-in-object", "spec", spec=_spec(convention={"preset": "keras"})),
    Case("spec-convention-unknown-knob", "spec", spec=_spec(convention={"preset": "damadi", "colour": "red"})),
    Case("spec-convention-reduction-median", "spec", spec=_spec(convention={"preset": "damadi", "reduction": "median"})),
    Case("spec-convention-mse-scale-str", "spec", spec=_spec(convention={"preset": "damadi", "mse_scale": "abc"})),
    Case("spec-convention-mse-scale-nan", "spec", spec=_spec(convention={"preset": "damadi", "mse_scale": float("nan")})),
    Case("spec-convention-relu-at-zero-str", "spec",
         spec=_spec(convention={"preset": "damadi", "relu_at_zero": "abc"})),
    Case("spec-convention-relu-at-zero-nan", "spec",
         spec=_spec(convention={"preset": "damadi", "relu_at_zero": float("nan")})),
    Case("spec-convention-notation-latex", "spec", spec=_spec(convention={"preset": "damadi", "notation": LATEX})),
    Case("spec-convention-weight-layout-code", "spec",
         spec=_spec(convention={"preset": "damadi", "weight_layout": CODE})),
    Case("spec-unknown-loss", "spec", spec=_spec(loss="hinge")),
    Case("spec-loss-not-str-or-object", "spec", spec=_spec(loss=5)),
    Case("spec-loss-code", "spec", spec=_spec(loss=CODE)),
    Case("spec-loss-object-unknown-key", "spec", spec=_spec(loss={"type": "mse", "weight": 2})),
    Case("spec-loss-object-missing-type", "spec", spec=_spec(loss={"scale": 2})),
    Case("spec-loss-scale-str", "spec", spec=_spec(loss={"type": "mse", "scale": "abc"})),
    Case("spec-loss-scale-negative", "spec", spec=_spec(loss={"type": "mse", "scale": -1})),
    Case("spec-loss-scale-list", "spec", spec=_spec(loss={"type": "mse", "scale": [1, 2]})),
    Case("spec-loss-reduce-outputs-latex", "spec", spec=_spec(loss={"type": "mse", "reduce_outputs": LATEX})),
    Case("spec-name-not-str", "spec", spec=_spec(name=["x"])),
    Case("spec-description-not-str", "spec", spec=_spec(description={"x": 1})),
    Case("spec-data-not-object", "spec", spec=_spec(data=[1])),
    Case("spec-data-unknown-key", "spec", spec=_spec(data={"seed": 0, "noise": 1})),
    Case("spec-data-batch-0", "spec", spec=_spec(data={"batch": 0})),
    Case("spec-data-batch-float", "spec", spec=_spec(data={"batch": 1.5})),
    Case("spec-data-seed-negative", "spec", spec=_spec(data={"seed": -1})),
    Case("spec-params-seed-str", "spec", spec=_spec(params={"seed": "0"})),
    Case("spec-params-seed-negative", "spec", spec=_spec(params={"seed": -7})),
    # hostile strings in free-text fields: refused, or accepted and escaped in every LaTeX output
    *[Case(f"spec-hostile-{field}-{i}", "spec", spec=sp, expect="safe")
      for i, payload in enumerate(PAYLOADS)
      for field, sp in (("name", _spec(name=payload)), ("description", _spec(description=payload)),
                        ("convention-name", _spec(convention={"preset": "damadi", "name": payload})),
                        ("convention-source", _spec(convention={"preset": "damadi", "source": payload})))],
]


# --------------------------------------------------------------------------- cli
def _cli(id, *argv, setup=None, argparse=False, expect="error", note=""):
    return Case(id, "cli", argv=tuple(argv), setup=setup, argparse=argparse, expect=expect, note=note)


_GOOD = "damadi-2layer"
CLI: list[Case] = [
    _cli("cli-spec-missing-file", "verify", "{tmp}/nope.json", "--no-torch"),
    _cli("cli-spec-is-directory", "show", "{tmp}"),
    _cli("cli-spec-unknown-example", "show", "nope-example"),
    _cli("cli-spec-malformed-json", "show", "{tmp}/bad.json", setup=_write_json("bad.json", text="{\"input\": 4,")),
    _cli("cli-spec-deeply-nested-json", "show", "{tmp}/deep.json", setup=_write_json("deep.json", text=_nested_json(100_000))),
    _cli("cli-spec-not-utf8", "show", "{tmp}/bin.json", setup=lambda t: (t / "bin.json").write_bytes(b"\xff\xfe\x00{")),
    _cli("cli-spec-unknown-preset", "show", "{tmp}/s.json", setup=_write_json("s.json", _spec(convention="keras"))),
    _cli("cli-spec-unknown-layer", "show", "{tmp}/s.json",
         setup=_write_json("s.json", _layer_spec({"type": "swish"}))),
    _cli("cli-spec-relu-at-zero-code", "show", "{tmp}/s.json",
         setup=_write_json("s.json", _layer_spec({"type": "relu", "at_zero": CODE}))),
    _cli("cli-params-missing-file", "gradient", _GOOD, "--params", "{tmp}/nope.npz", "-o", "{tmp}/g.npz"),
    _cli("cli-params-is-directory", "gradient", _GOOD, "--params", "{tmp}", "-o", "{tmp}/g.npz"),
    _cli("cli-params-not-npz", "gradient", _GOOD, "--params", "{tmp}/p.npz", "-o", "{tmp}/g.npz",
         setup=lambda t: (t / "p.npz").write_text("not a zip")),
    _cli("cli-params-pickled-object-array", "gradient", _GOOD, "--params", "{tmp}/p.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("p.npz", _params_npz(over=lambda p: {"b1": np.array([CODE] * 5, dtype=object)}))),
    _cli("cli-params-wrong-key", "gradient", _GOOD, "--params", "{tmp}/p.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("p.npz", _params_npz(drop="b2", over=lambda p: {"B2": p["b2"]}))),
    _cli("cli-params-wrong-shape", "gradient", _GOOD, "--params", "{tmp}/p.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("p.npz", _params_npz(over=lambda p: {"W1": p["W1"].T}))),
    _cli("cli-params-nan", "gradient", _GOOD, "--params", "{tmp}/p.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("p.npz", _params_npz(over=lambda p: {"W2": _set0(p["W2"], np.nan)}))),
    _cli("cli-params-str-array", "gradient", _GOOD, "--params", "{tmp}/p.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("p.npz", _params_npz(over=lambda p: {"b1": np.array(["1"] * 5)}))),
    _cli("cli-data-missing-file", "gradient", _GOOD, "--data", "{tmp}/nope.npz", "-o", "{tmp}/g.npz"),
    _cli("cli-data-wrong-keys", "gradient", _GOOD, "--data", "{tmp}/d.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("d.npz", lambda: {"X": np.zeros((2, 4)), "Y": np.eye(3)[:2]})),
    _cli("cli-data-wrong-shape", "gradient", _GOOD, "--data", "{tmp}/d.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("d.npz", _data_npz(x=lambda X: X[:, :3]))),
    _cli("cli-data-batch-mismatch", "gradient", _GOOD, "--data", "{tmp}/d.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("d.npz", _data_npz(y=lambda Y: np.vstack([Y, Y])))),
    _cli("cli-data-nan", "gradient", _GOOD, "--data", "{tmp}/d.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("d.npz", _data_npz(x=lambda X: _set0(X, np.nan)))),
    _cli("cli-data-bad-labels", "gradient", _GOOD, "--data", "{tmp}/d.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("d.npz", _data_npz(y=lambda Y: 3 * Y))),
    _cli("cli-data-empty-batch", "gradient", _GOOD, "--data", "{tmp}/d.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("d.npz", _data_npz(x=lambda X: X[:0], y=lambda Y: Y[:0]))),
    _cli("cli-data-complex", "gradient", _GOOD, "--data", "{tmp}/d.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("d.npz", _data_npz(x=lambda X: X + 1j))),
    _cli("cli-data-pickled-object-array", "gradient", _GOOD, "--data", "{tmp}/d.npz", "-o", "{tmp}/g.npz",
         setup=_write_npz("d.npz", _data_npz(x=lambda X: np.array([[CODE] * 4] * 2, dtype=object)))),
    _cli("cli-output-missing-dir", "gradient", _GOOD, "-o", "{tmp}/nodir/g.npz"),
    _cli("cli-output-is-directory", "latex", _GOOD, "-o", "{tmp}/outdir",
         setup=lambda t: (t / "outdir").mkdir()),
    _cli("cli-npz-output-is-directory", "gradient", _GOOD, "-o", "{tmp}/outdir",
         setup=lambda t: (t / "outdir").mkdir(),
         note="np.savez silently appends .npz and writes outdir.npz next to the directory"),
    _cli("cli-output-under-a-file", "jacobian", _GOOD, "-o", "{tmp}/f.txt/J.npz",
         setup=lambda t: (t / "f.txt").write_text("x")),
    _cli("cli-latex-output-missing-dir", "latex", _GOOD, "-o", "{tmp}/nodir/d.tex"),
    _cli("cli-errata-markdown-missing-dir", "errata", "--markdown", "{tmp}/nodir/e.md"),
    _cli("cli-negative-seed", "gradient", _GOOD, "--seed", "-1", "-o", "{tmp}/g.npz"),
    _cli("cli-negative-param-seed", "gradient", _GOOD, "--param-seed", "-3", "-o", "{tmp}/g.npz"),
    _cli("cli-negative-fd-coords", "verify", _GOOD, "--no-torch", "--fd-coords", "-5"),
    _cli("cli-batch-0", "gradient", _GOOD, "--batch", "0", "-o", "{tmp}/g.npz"),
    _cli("cli-batch-negative", "show", _GOOD, "--batch", "-2"),
    _cli("cli-seed-not-int", "show", _GOOD, "--seed", "abc", argparse=True),
    _cli("cli-seed-code", "show", _GOOD, "--seed", CODE, argparse=True),
    _cli("cli-unknown-command", "train", _GOOD, argparse=True),
    _cli("cli-no-command", argparse=True),
    _cli("cli-missing-output", "gradient", _GOOD, argparse=True),
    _cli("cli-unknown-method", "gradient", _GOOD, "--method", "adjoint", "-o", "{tmp}/g.npz", argparse=True),
    _cli("cli-unknown-option", "show", _GOOD, "--eval", CODE, argparse=True),
    *[_cli(f"cli-latex-hostile-name-{i}", "latex", "{tmp}/s.json", "-o", "{tmp}/d.tex", expect="safe",
           setup=_write_json("s.json", _spec(name=payload, description=payload)))
      for i, payload in enumerate(PAYLOADS)],
    _cli("cli-show-hostile-convention-name", "latex", "{tmp}/s.json", "-o", "{tmp}/d.tex", expect="safe",
         setup=_write_json("s.json", _spec(convention={"preset": "damadi", "name": LATEX}))),
]


# --------------------------------------------------------------------------- symbolic
def _snet(name="damadi-1layer", **kw):
    from jacobian_bp.symbolic import SymbolicNetwork

    return SymbolicNetwork(_net(name), **kw)


SYMBOLIC: list[Case] = [
    Case("sym-x-string", "symbolic", lambda tmp: _snet(x=["1", "2", "3", "4"])),
    Case("sym-x-code-string", "symbolic", lambda tmp: _snet(x=CODE)),
    Case("sym-x-wrong-shape", "symbolic", lambda tmp: _snet(x=[1, 2, 3])),
    Case("sym-x-nan", "symbolic", lambda tmp: _snet(x=[1.0, float("nan"), 0, 0])),
    Case("sym-x-bool", "symbolic", lambda tmp: _snet(x=[True, False, True, False])),
    Case("sym-x-complex", "symbolic", lambda tmp: _snet(x=[1j, 0, 0, 0])),
    Case("sym-param-code-string", "symbolic",
         lambda tmp: _snet(params={"b1": [CODE, CODE, CODE]})),
    Case("sym-param-latex-string", "symbolic", lambda tmp: _snet(params={"b1": [LATEX] * 3})),
    Case("sym-param-unknown-name", "symbolic", lambda tmp: _snet(params={"W7": np.zeros((4, 3))})),
    Case("sym-not-a-network", "symbolic", lambda tmp: __import__("jacobian_bp.symbolic", fromlist=["x"])
         .SymbolicNetwork("damadi-1layer")),
    Case("sym-substitute-unknown-symbol", "symbolic", lambda tmp: _snet().substitute({"q_{1}": 1})),
    Case("sym-substitute-code-value", "symbolic", lambda tmp: _snet().substitute({"x": [CODE] * 4})),
    Case("sym-substitute-not-mapping", "symbolic", lambda tmp: _snet().substitute([1, 2])),
    Case("sym-maxpool-symbolic-forward", "symbolic", lambda tmp: _snet("small-cnn").forward()),
    Case("sym-generic-activation-code-name", "symbolic",
         lambda tmp: __import__("jacobian_bp.layers", fromlist=["x"]).GenericActivation(CODE)),
    Case("sym-generic-activation-numeric", "symbolic", lambda tmp: _generic_numeric()),
    Case("sym-from-spec-unknown-example", "symbolic",
         lambda tmp: __import__("jacobian_bp.symbolic", fromlist=["x"]).SymbolicNetwork.from_spec("nope")),
    Case("sym-relu-at-zero-code", "symbolic", lambda tmp: __import__("jacobian_bp.symbolic", fromlist=["x"])
         .SymbolicNetwork.from_spec(_layer_spec({"type": "relu", "at_zero": CODE})).jacobian_theta()),
]


def _generic_numeric():
    from jacobian_bp import Network
    from jacobian_bp.layers import Dense, GenericActivation

    net = Network([Dense(2), GenericActivation("g")], "mse", 3)
    return net.gradient(np.ones(3), np.ones(2), net.init_params(0))


CATALOGUE: list[Case] = API + SPEC + CLI + SYMBOLIC

assert len({c.id for c in CATALOGUE}) == len(CATALOGUE), "duplicate case ids"
