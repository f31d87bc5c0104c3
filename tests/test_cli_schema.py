"""`jacobian-bp schema`: the JSON Schema (draft 2020-12) of the spec format, generated from the registries.

Oracle: the spec parser itself (``parse_spec``) on every spec written anywhere in the repository --
the built-in examples, spec objects and JSON texts in the tests and notebooks, JSON files under docs/:
whatever the parser accepts, the schema accepts; and a list of structurally bad specs the schema
refuses (as the parser does).
"""
from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import pytest

from jacobian_bp.cli import main
from jacobian_bp.errors import JacobianBPError
from jacobian_bp.layers.registry import REGISTRY, all_layer_classes
from jacobian_bp.layers.losses import LOSSES
from jacobian_bp.spec import EXAMPLES, parse_spec, spec_schema

jsonschema = pytest.importorskip("jsonschema")
ROOT = Path(__file__).resolve().parents[1]


def _validator(schema=None):
    schema = spec_schema() if schema is None else schema
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _looks_like_spec(d) -> bool:
    return isinstance(d, dict) and "layers" in d and "input" in d


def _specs_in_python(source: str) -> list[dict]:
    """Spec literals (dicts with "input" and "layers") and JSON spec texts in Python source, read as data."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            try:
                d = ast.literal_eval(node)  # literals only: nothing is executed
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            if _looks_like_spec(d):
                out.append(d)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lstrip().startswith("{"):
            try:
                d = json.loads(node.value)
            except ValueError:
                continue
            if _looks_like_spec(d):
                out.append(d)
    return out


def repository_specs() -> list[tuple[str, dict]]:
    found = [(f"EXAMPLES[{k}]", v) for k, v in EXAMPLES.items()]
    for p in sorted((ROOT / "tests").glob("*.py")):
        found += [(p.name, d) for d in _specs_in_python(p.read_text(encoding="utf-8"))]
    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(p.read_text(encoding="utf-8"))
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "code":
                try:
                    found += [(p.name, d) for d in _specs_in_python("".join(cell.get("source", "")))]
                except SyntaxError:  # a cell with IPython magics
                    continue
    for p in sorted((ROOT / "docs").rglob("*.json")) if (ROOT / "docs").is_dir() else []:
        d = json.loads(p.read_text(encoding="utf-8"))
        if _looks_like_spec(d):
            found.append((str(p.relative_to(ROOT)), d))
    return found


def _accepted(d: dict) -> bool:
    try:
        parse_spec(copy.deepcopy(d))
    except (JacobianBPError, TypeError, ValueError):
        return False
    return True


def test_schema_command_prints_a_valid_draft_2020_12_schema(tmp_path, capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema == json.loads(json.dumps(spec_schema()))
    _validator(schema)
    out = tmp_path / "spec.schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == schema


def test_every_registered_layer_loss_and_preset_is_described():
    schema = spec_schema()
    layer_types = {alt["properties"]["type"]["const"] for alt in schema["$defs"]["layer"]["oneOf"]}
    assert layer_types == set(all_layer_classes())
    loss_names = set(schema["$defs"]["loss"]["anyOf"][0]["enum"])
    assert loss_names == set(LOSSES)
    from jacobian_bp.engine.conventions import PRESETS

    assert set(schema["$defs"]["convention"]["anyOf"][0]["enum"]) == set(PRESETS)
    conv = next(a for a in schema["$defs"]["layer"]["oneOf"] if a["properties"]["type"]["const"] == "conv2d")
    assert conv["required"] == ["type", "out_channels", "kernel_size"]
    assert conv["properties"]["mode"]["enum"] == ["correlation", "convolution"]  # from the docstring


def test_every_spec_in_the_repository_that_parses_validates():
    specs = repository_specs()
    assert len(specs) >= len(EXAMPLES) + 10  # the scan does find the specs of the tests
    v = _validator()
    accepted = 0
    for where, d in specs:
        if _accepted(d):
            accepted += 1
            errors = [e.message for e in v.iter_errors(d)]
            assert not errors, f"{where}: parse_spec accepts {json.dumps(d)[:200]} but the schema says {errors[:2]}"
    assert accepted >= len(EXAMPLES) + 5


GOOD = {"input": [1, 6, 6], "convention": {"preset": "damadi", "reduction": "mean"},
        "loss": {"type": "mse", "scale": 0.5}, "data": {"seed": 1, "batch": 4}, "params": {"seed": 2},
        "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": [3, 3], "bias": False},
                   {"type": "relu"},
                   {"type": "residual", "body": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3,
                                                  "padding": 1}]},
                   {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
                   {"type": "dense", "out_features": 3}]}

BAD = {
    "unknown top-level key": {**GOOD, "optimizer": "sgd"},
    "missing layers": {"input": 4},
    "empty layers": {"input": 4, "layers": []},
    "input zero": {**GOOD, "input": 0},
    "input as text": {**GOOD, "input": "4"},
    "unknown layer type": {"input": 4, "layers": [{"type": "dense2", "out_features": 3}]},
    "layer without type": {"input": 4, "layers": [{"out_features": 3}]},
    "unknown layer key": {"input": 4, "layers": [{"type": "dense", "out_features": 3, "units": 3}]},
    "missing required keyword": {"input": 4, "layers": [{"type": "dense"}]},
    "bool as text": {"input": 4, "layers": [{"type": "dense", "out_features": 3, "bias": "no"}]},
    "number as text": {"input": 4, "layers": [{"type": "dense", "out_features": "3"}]},
    "unknown enum value": {"input": [1, 4, 4], "layers": [{"type": "conv2d", "out_channels": 1, "kernel_size": 3,
                                                           "mode": "xcorr"}]},
    "kernel as 3 numbers": {"input": [1, 4, 4], "layers": [{"type": "conv2d", "out_channels": 1,
                                                            "kernel_size": [3, 3, 3]}]},
    "residual with empty body": {"input": 4, "layers": [{"type": "residual", "body": []}]},
    "residual with a bad body": {"input": 4, "layers": [{"type": "residual", "body": [{"type": "nope"}]}]},
    "unknown loss": {**GOOD, "loss": "hinge"},
    "unknown loss keyword": {**GOOD, "loss": {"type": "mse", "weight": 2}},
    "unknown preset": {**GOOD, "convention": "keras"},
    "unknown convention knob": {**GOOD, "convention": {"preset": "damadi", "lr": 0.1}},
    "bad knob value": {**GOOD, "convention": {"reduction": "median"}},
    "negative seed": {**GOOD, "data": {"seed": -1}},
    "batch zero": {**GOOD, "data": {"batch": 0}},
    "unknown data key": {**GOOD, "data": {"n": 3}},
}


def test_good_spec_validates_and_bad_specs_fail():
    assert _accepted(GOOD)
    v = _validator()
    assert not list(v.iter_errors(GOOD))
    for why, spec in BAD.items():
        assert list(v.iter_errors(spec)), f"the schema accepts a spec with {why}"
        assert not _accepted(spec), f"(test premise) the parser accepts a spec with {why}"


def test_a_newly_registered_layer_appears_in_the_schema(monkeypatch):
    """The schema comes from the registry: a new layer's constructor keywords become its properties."""

    class Scaled:
        """Scale by a constant.

        Parameters
        ----------
        factor : float
            The constant.
        how : {"left", "right"}
            Which side.
        """

        def __init__(self, factor: float, how: str = "left", clip: int | None = None):
            pass

    monkeypatch.setitem(REGISTRY, "scaled_test_only", Scaled)
    schema = spec_schema()
    alt = next(a for a in schema["$defs"]["layer"]["oneOf"] if a["properties"]["type"]["const"] == "scaled_test_only")
    assert alt["required"] == ["type", "factor"]
    assert alt["properties"]["factor"]["type"] == "number" and alt["properties"]["factor"]["description"] == "The constant."
    assert alt["properties"]["how"]["enum"] == ["left", "right"] and alt["properties"]["how"]["default"] == "left"
    assert {"type": "null"} in alt["properties"]["clip"]["anyOf"]
    v = _validator(schema)
    assert not list(v.iter_errors({"input": 3, "layers": [{"type": "scaled_test_only", "factor": 2.0}]}))
    assert list(v.iter_errors({"input": 3, "layers": [{"type": "scaled_test_only", "factor": 2.0, "how": "up"}]}))
