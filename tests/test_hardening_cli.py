"""Issue #11 (hardening): CLI exit codes, one-line errors, atomic outputs, strict validation.

The CLI runs in-process through ``jacobian_bp.cli.main``; every error case asserts the exit
code, exactly one ``jacobian-bp: error:`` line on stderr without a traceback, and that no
output file (nor a temporary file) is left behind.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import softmax

import jacobian_bp as jb
from jacobian_bp import cli
from jacobian_bp.backend.atomic import atomic_file, atomic_path, atomic_write_bytes, atomic_write_text
from jacobian_bp.cli import main
from jacobian_bp.errors import DataError, JacobianBPError, ShapeError, SpecError, UnknownNameError
from jacobian_bp.spec import generate_data, load_spec

README = Path(__file__).resolve().parents[1] / "README.md"


# --------------------------------------------------------------------------- helpers
def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_line_error(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("jacobian-bp: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def _spec_file(tmp_path: Path, obj, name="s.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(obj), encoding="utf-8")
    return p


def _small(**over) -> dict:
    base = {"input": 4, "layers": [{"type": "dense", "out_features": 3}, {"type": "softmax"}],
            "loss": "cross_entropy", "convention": "damadi"}
    base.update(over)
    return base


# --------------------------------------------------------------------------- bad input: exit 2, one line
def _setup_npz(name, **arrays):
    def setup(tmp):
        np.savez(tmp / name, **arrays)
    return setup


def _net1():
    return load_spec("damadi-1layer").network


BAD_CLI = [
    # (id, argv with {t} for tmp_path, setup, fragments expected in the message)
    ("spec-is-directory", ["show", "{t}/d"], lambda t: (t / "d").mkdir(), ["is a directory"]),
    ("spec-missing", ["show", "{t}/nope.json"], None, ["does not exist"]),
    ("output-folder-missing", ["gradient", "damadi-1layer", "-o", "{t}/nodir/g.npz"], None, ["does not exist"]),
    ("output-is-directory", ["gradient", "damadi-1layer", "-o", "{t}/d"], lambda t: (t / "d").mkdir(),
     ["is a directory"]),
    ("output-under-a-file", ["jacobian", "damadi-1layer", "-o", "{t}/f/J.npz"], lambda t: (t / "f").write_text("x"),
     ["not a directory"]),
    ("latex-output-folder-missing", ["latex", "damadi-1layer", "-o", "{t}/nodir/d.tex"], None, ["does not exist"]),
    ("errata-output-folder-missing", ["errata", "--markdown", "{t}/nodir/e.md"], None, ["does not exist"]),
    ("seed-negative", ["gradient", "damadi-1layer", "--seed", "-1", "-o", "{t}/g.npz"], None,
     ["--seed", ">= 0", "-1"]),
    ("param-seed-negative", ["gradient", "damadi-1layer", "--param-seed", "-1", "-o", "{t}/g.npz"], None,
     ["--param-seed", ">= 0"]),
    ("fd-coords-negative", ["verify", "damadi-1layer", "--no-torch", "--fd-coords", "-1"], None,
     ["--fd-coords", ">= 1"]),
    ("batch-zero", ["show", "damadi-1layer", "--batch", "0"], None, ["--batch", ">= 1"]),
    ("mse-scale-string", ["show", "{t}/s.json"],
     lambda t: _spec_file(t, _small(loss={"type": "mse", "scale": "x"})), ["spec.loss (mse)", "scale", "'x'"]),
    ("deeply-nested-json", ["show", "{t}/s.json"],
     lambda t: (t / "s.json").write_text('{"input": ' + "[" * 50_000 + "]" * 50_000 + "}"), ["levels deep"]),
    ("relu-at-zero-string", ["show", "{t}/s.json"],
     lambda t: _spec_file(t, _small(layers=[{"type": "dense", "out_features": 3}, {"type": "relu", "at_zero": "x"}],
                                    loss="mse")), ["layers[1] (relu)", "at_zero", "'x'"]),
    ("spec-not-utf8", ["show", "{t}/s.json"], lambda t: (t / "s.json").write_bytes(b'{"input": \xff}'),
     ["not UTF-8"]),
    ("spec-nan-constant", ["show", "{t}/s.json"],
     lambda t: (t / "s.json").write_text('{"input": 4, "layers": [{"type": "dense", "out_features": 3}], '
                                         '"loss": {"type": "mse", "scale": NaN}}'), ["NaN"]),
    ("dense-bias-string", ["show", "{t}/s.json"],
     lambda t: _spec_file(t, _small(layers=[{"type": "dense", "out_features": 3, "bias": "no"}, {"type": "softmax"}])),
     ["layers[0] (dense)", "bias", "boolean", "'no'"]),
    ("conv-out-channels-float", ["show", "{t}/s.json"],
     lambda t: _spec_file(t, {"input": [1, 4, 4], "layers": [{"type": "conv2d", "out_channels": 2.0, "kernel_size": 3},
                                                            {"type": "flatten"}]}), ["out_channels", "integer"]),
    ("npz-object-array", ["show", "damadi-1layer", "--data", "{t}/d.npz"],
     _setup_npz("d.npz", x=np.array([1, "a", None], dtype=object), y=np.eye(3)[0]), ["data file", "allow_pickle"]),
    ("params-wrong-keys", ["show", "damadi-1layer", "--params", "{t}/p.npz"],
     _setup_npz("p.npz", W1=np.ones((4, 3)), c=np.ones(3)), ["missing: ['b1']", "unknown: ['c']"]),
    ("params-wrong-shape", ["show", "damadi-1layer", "--params", "{t}/p.npz"],
     _setup_npz("p.npz", W1=np.ones((4, 3)), b1=np.ones(4)), ["b1", "(3,)", "(4,)"]),
    ("params-string-array", ["show", "damadi-1layer", "--params", "{t}/p.npz"],
     _setup_npz("p.npz", W1=np.ones((4, 3)), b1=np.array(["1", "2", "3"])), ["b1", "dtype <U1"]),
    ("params-is-directory", ["show", "damadi-1layer", "--params", "{t}/d"], lambda t: (t / "d").mkdir(),
     ["not a file"]),
    ("data-wrong-shape", ["show", "damadi-1layer", "--data", "{t}/d.npz"],
     _setup_npz("d.npz", x=np.ones(5), y=np.eye(3)[0]), ["expected input of shape (4,)", "(5,)"]),
    ("data-bool", ["gradient", "damadi-1layer", "--data", "{t}/d.npz", "-o", "{t}/g.npz"],
     _setup_npz("d.npz", x=np.ones(4, dtype=bool), y=np.eye(3)[0]), ["boolean"]),
    ("data-complex", ["gradient", "damadi-1layer", "--data", "{t}/d.npz", "-o", "{t}/g.npz"],
     _setup_npz("d.npz", x=np.ones(4) + 1j, y=np.eye(3)[0]), ["complex", "imaginary part"]),
    ("non-finite-gradient", ["gradient", "{t}/s.json", "-o", "{t}/g.npz"],
     lambda t: _spec_file(t, {"input": 4, "layers": [{"type": "dense", "out_features": 3}], "convention": "damadi",
                              "loss": {"type": "mse", "scale": 1e308}}), ["infinite"]),
    ("non-finite-verify", ["verify", "{t}/s.json", "--no-torch"],
     lambda t: _spec_file(t, {"input": 4, "layers": [{"type": "dense", "out_features": 3}], "convention": "damadi",
                              "loss": {"type": "mse", "scale": 1e308}}), ["infinite"]),
]


@pytest.mark.parametrize("case", BAD_CLI, ids=[c[0] for c in BAD_CLI])
def test_bad_input_is_one_line_exit_2_and_leaves_no_file(case, tmp_path, capsys):
    _, argv, setup, fragments = case
    if setup is not None:
        setup(tmp_path)
    before = _files(tmp_path)
    rc, out, err = _run([a.replace("{t}", str(tmp_path)) for a in argv], capsys)
    assert rc == cli.EXIT_USAGE == 2, err
    _assert_one_line_error(err, *fragments)
    assert _files(tmp_path) == before  # no output, no temporary file


def test_argparse_syntax_errors_keep_the_usage_form_and_exit_2(capsys):
    rc, out, err = _run(["show", "damadi-1layer", "--seed", "abc"], capsys)
    assert rc == 2 and err.startswith("usage: jacobian-bp show") and "invalid int value: 'abc'" in err
    assert "Traceback" not in err
    rc, out, err = _run(["frobnicate"], capsys)
    assert rc == 2 and "invalid choice" in err


# --------------------------------------------------------------------------- exit codes
def test_exit_codes_are_documented_in_help_and_readme(capsys):
    rc, out, _ = _run(["--help"], capsys)
    assert rc == 0
    for code in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert f"  {code}" in out
    assert "JACOBIAN_BP_DEBUG" in out
    rc, out, _ = _run(["gradient", "--help"], capsys)
    assert rc == 0 and "exit codes:" in out
    readme = README.read_text(encoding="utf-8")
    assert "## Exit codes" in readme and "JACOBIAN_BP_DEBUG" in readme
    # the two set-up commands are unchanged
    assert "python -m pip install -e . && jacobian-bp verify damadi-2layer" in readme
    assert 'python -m pip install -q -e ".[test,torch,fast,dask]" && python -m pytest' in readme


class _Report:
    def __init__(self, passed):
        self.passed = passed

    def to_text(self):
        return "verdict: " + ("PASS" if self.passed else "FAIL")

    def to_dict(self):
        return {"verdict": "PASS" if self.passed else "FAIL"}


def test_verification_failure_exits_1_and_pass_exits_0(monkeypatch, capsys):
    import importlib

    verify_mod = importlib.import_module("jacobian_bp.oracles.verify")  # the package exports a function of that name

    monkeypatch.setattr(verify_mod, "verify", lambda *a, **k: _Report(False))
    rc, out, err = _run(["verify", "damadi-1layer", "--no-torch"], capsys)
    assert rc == cli.EXIT_FAILED == 1 and "verdict: FAIL" in out and err == ""
    monkeypatch.setattr(verify_mod, "verify", lambda *a, **k: _Report(True))
    rc, out, err = _run(["verify", "damadi-1layer", "--no-torch"], capsys)
    assert rc == 0 and "verdict: PASS" in out


def test_internal_error_exits_3_with_one_line_and_traceback_only_on_request(monkeypatch, capsys):
    def boom(args):
        raise ZeroDivisionError("division by zero somewhere deep")

    monkeypatch.setattr(cli, "_cmd_show", boom)
    monkeypatch.delenv("JACOBIAN_BP_DEBUG", raising=False)
    rc, out, err = _run(["show", "damadi-1layer"], capsys)
    assert rc == cli.EXIT_INTERNAL == 3
    assert err.strip() == ("jacobian-bp: internal error: ZeroDivisionError: division by zero somewhere deep "
                           "(please report)")
    monkeypatch.setenv("JACOBIAN_BP_DEBUG", "1")
    rc, out, err = _run(["show", "damadi-1layer"], capsys)
    assert rc == 3 and "Traceback" in err and err.rstrip().endswith("(please report)")


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_show", interrupted)
    rc, out, err = _run(["show", "damadi-1layer"], capsys)
    assert rc == cli.EXIT_INTERRUPTED == 130 and "Traceback" not in err


def test_console_script_exit_code_of_bad_input():
    r = subprocess.run([sys.executable, "-m", "jacobian_bp.cli", "show", "damadi-1layer", "--seed", "-4"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- outputs: exact path, atomic
def test_output_is_written_exactly_at_the_given_path(tmp_path, capsys):
    """np.savez appends .npz to a bare name; the CLI writes exactly the path given and says so."""
    target = tmp_path / "grad"  # no suffix
    rc, out, err = _run(["gradient", "damadi-1layer", "--seed", "3", "-o", target], capsys)
    assert rc == 0 and err == ""
    assert _files(tmp_path) == {"grad"}
    assert out.rstrip().endswith(f"to {target}")
    # independent oracle: softmax + CE, z = W^T x + b (Damadi layout W 4x3): dW = x (s - y)^T, db = s - y
    net = _net1()
    x, y = generate_data(net, 1, 3)
    p = net.init_params(0)
    s = softmax(p["W1"].T @ x + p["b1"])
    with np.load(target) as z:
        np.testing.assert_allclose(z["W1"], np.outer(x, s - y), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(z["b1"], s - y, rtol=1e-12, atol=1e-15)
    J = tmp_path / "J.sparse"
    rc, out, _ = _run(["jacobian", "damadi-1layer", "--seed", "3", "-o", J], capsys)
    assert rc == 0 and J.exists() and not Path(str(J) + ".npz").exists()
    # J_θ z = [I_3 ⊗ x^T, I_3]: z_j = Σ_i W_ij x_i, columns of Damadi's W (4x3) stacked (Damadi §3.1)
    np.testing.assert_allclose(sp.load_npz(J).toarray(), np.hstack([np.kron(np.eye(3), x[None]), np.eye(3)]),
                               atol=1e-15)


def _fail_after_some_bytes(real_writer):
    def writer(file, *args, **kwargs):
        file.write(b"PK\x03\x04 partial zip data")
        file.flush()
        raise OSError(28, "No space left on device")
    return writer


@pytest.mark.parametrize("command", ["gradient", "jacobian"])
def test_failure_midway_leaves_no_file_and_keeps_an_existing_one(command, tmp_path, monkeypatch, capsys):
    name = "savez" if command == "gradient" else "savez_compressed"
    monkeypatch.setattr(np, name, _fail_after_some_bytes(getattr(np, name)))
    target = tmp_path / "out.npz"
    rc, out, err = _run([command, "damadi-1layer", "-o", target], capsys)
    assert rc == 2
    _assert_one_line_error(err, "No space left on device")
    assert _files(tmp_path) == set()  # neither the target nor a temporary file
    target.write_bytes(b"previous contents")
    rc, out, err = _run([command, "damadi-1layer", "-o", target], capsys)
    assert rc == 2 and target.read_bytes() == b"previous contents"
    assert _files(tmp_path) == {"out.npz"}


def test_text_outputs_are_atomic_too(tmp_path, monkeypatch, capsys):
    from jacobian_bp.documents import errata

    class Rep:
        def to_text(self):
            return "report"

        def to_markdown(self):
            return "# errata\n"

        def to_latex(self):
            raise RuntimeError("renderer crashed")

    monkeypatch.setattr(errata, "build_errata", lambda: Rep())
    from jacobian_bp.documents import catalogue

    monkeypatch.setattr(catalogue, "catalogue", lambda: [])  # the CLI's progress loop: nothing to check
    md, tex = tmp_path / "e.md", tmp_path / "e.tex"
    rc, out, err = _run(["errata", "--markdown", md, "--latex", tex], capsys)
    assert rc == 3 and "internal error: RuntimeError: renderer crashed" in err
    assert md.read_text(encoding="utf-8") == "# errata\n" and not tex.exists()
    assert _files(tmp_path) == {"e.md"}


def test_atomic_helpers_roundtrip_and_cleanup(tmp_path):
    p = atomic_write_text(tmp_path / "a.txt", "héllo\r\nworld")
    assert p.read_bytes() == "héllo\r\nworld".encode("utf-8")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="inside"):
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("half")
            raise ValueError("inside")
    assert (tmp_path / "a.txt").read_bytes() == "héllo\r\nworld".encode("utf-8")
    with atomic_file(tmp_path / "c") as fh:  # np.savez through the file object: no suffix added
        np.savez(fh, v=np.arange(3))
    assert _files(tmp_path) == {"a.txt", "b.bin", "c"}
    with pytest.raises(DataError, match="is a directory"):
        atomic_write_text(tmp_path, "x")
    with pytest.raises(DataError, match="does not exist"):
        atomic_write_text(tmp_path / "no" / "x.txt", "x")


def test_atomic_write_under_a_file_size_limit_leaves_nothing(tmp_path):
    """A real mid-write failure: RLIMIT_FSIZE makes the write fail after the first 4 KiB."""
    pytest.importorskip("resource")
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from jacobian_bp.backend.atomic import atomic_write_bytes
        try:
            atomic_write_bytes({str(tmp_path / 'big.bin')!r}, b"x" * 100_000)
        except OSError as exc:
            print("OSError", exc.errno)
            sys.exit(0)
        sys.exit(1)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OSError")
    assert _files(tmp_path) == set()


# --------------------------------------------------------------------------- API validation
@pytest.fixture
def net():
    return jb.Network([jb.Dense(5), jb.ReLU(), jb.Dense(3), jb.Softmax()], "cross_entropy", 4, "damadi")


@pytest.mark.parametrize("bad, match", [
    (np.ones(4, dtype=bool), "boolean"),
    (np.ones(4) + 1e-3j, "complex"),
    (np.array(["1", "2", "3", "4"]), "dtype <U1"),
    (np.array(["1", "2", "3", "4"], dtype=object), "object array must hold SymPy expressions or real numbers"),
    (None, "received None"),
    ([[1, 2], [3]], "not an array of real numbers"),
])
def test_inputs_of_wrong_dtype_are_refused(net, bad, match):
    p = net.init_params(0)
    with pytest.raises(DataError, match=match):
        net.gradient(bad, np.eye(3)[0], p)


def test_targets_and_params_of_wrong_dtype_are_refused(net):
    p = net.init_params(0)
    x = np.ones(4)
    with pytest.raises(DataError, match="targets: expected real numbers, received a complex"):
        net.gradient(x, np.eye(3)[0] + 0j, p)
    with pytest.raises(DataError, match="targets: expected real numbers, received a boolean"):
        net.loss_value(x, np.eye(3, dtype=bool)[0], p)
    with pytest.raises(DataError, match=r"layer 1 \(dense\): parameter W1: expected real numbers, received a complex"):
        net.gradient(x, np.eye(3)[0], dict(p, W1=p["W1"] + 1j))
    with pytest.raises(DataError, match="parameter b1: expected real numbers, received a boolean"):
        net.gradient(x, np.eye(3)[0], dict(p, b1=np.ones(5, dtype=bool)))
    # integer arrays and lists are real numbers: accepted and equal to the float result
    g_int = net.gradient(np.arange(4), [0, 1, 0], p).vector
    np.testing.assert_array_equal(g_int, net.gradient(np.arange(4.0), np.eye(3)[1], p).vector)


@pytest.mark.parametrize("call", [
    lambda n, x, p: n.chain_factors(x, p, l=-3),
    lambda n, x, p: n.chain_factors(x, p, l=3),
    lambda n, x, p: n.chain_factors(x, p, l=1.0),
    lambda n, x, p: n.layer_jacobian(x, p, 0),
    lambda n, x, p: n.layer_jacobian(x, p, True),
    lambda n, x, p: n.local_jacobian(x, p, 0),
    lambda n, x, p: n.local_jacobian(x, p, -1),
    lambda n, x, p: n.activation_jacobian_batch(x, p, 3),
])
def test_stage_index_is_validated(net, call):
    with pytest.raises(DataError, match=r"l must be an integer in [01]\.\.2"):
        call(net, np.ones(4), net.init_params(0))


def test_valid_stage_indices_still_work(net):
    x, p = np.linspace(-1, 1, 4), net.init_params(1)
    assert [j.input.name for j in net.chain_factors(x, p, 0)] == ["a[1]", "z[1]", "x"]
    assert net.chain_factors(x, p, 2) == []
    assert net.local_jacobian(x, p, 2).shape == (3, 18)


@pytest.mark.parametrize("make, match", [
    (lambda: jb.Dense(3, bias="no"), "bias must be a boolean"),
    (lambda: jb.Dense(3, bias=1), "bias must be a boolean"),
    (lambda: jb.Dense(None), "out_features must be a positive integer"),
    (lambda: jb.Dense(2.0), "out_features must be a positive integer"),
    (lambda: jb.Dense(np.True_), "out_features must be a positive integer"),
    (lambda: jb.layers.Conv2d(2, 3, stride=0), "stride must be >= 1"),
    (lambda: jb.layers.Conv2d(2, 3, dilation=0), "dilation must be >= 1"),
    (lambda: jb.layers.Conv2d(2, 3, stride=2.0), "stride must be an integer"),
    (lambda: jb.layers.Conv2d(2, 3, mode=["correlation"]), "mode must be"),
    (lambda: jb.layers.Conv2d(2, 3, bias="yes"), "bias must be"),
    (lambda: jb.layers.Conv2d(2, 3, size_rule=1), "size_rule must be"),
    (lambda: jb.layers.MaxPool2d(2, padding=2), "padding must be at most half"),
    (lambda: jb.layers.AvgPool2d(2, stride=0), "stride must be >= 1"),
    (lambda: jb.layers.AvgPool2d(np.bool_(True)), "kernel_size must be an integer"),
])
def test_layer_constructors_refuse_bad_fields(make, match):
    with pytest.raises(SpecError, match=match):
        make()


def test_impossible_conv_geometry_is_refused():
    with pytest.raises(ShapeError, match="larger than the padded input"):
        jb.Network([jb.layers.Conv2d(1, 5), jb.layers.Flatten()], "mse", (1, 4, 4))


@pytest.mark.parametrize("spec_layer, match", [
    ({"type": "dense", "out_features": 3, "bias": "no"}, "bias must be a boolean"),
    ({"type": "dense", "out_features": 3.0}, "out_features must be an integer"),
    ({"type": "dense", "out_features": 3, "in_features": True}, "in_features must be an integer or null"),
    ({"type": "conv2d", "out_channels": 2, "kernel_size": [3, 3.0]}, "must hold integers only"),
    ({"type": "conv2d", "out_channels": 2, "kernel_size": "3"}, "kernel_size must be an integer or a list"),
])
def test_spec_fields_are_type_checked(spec_layer, match):
    with pytest.raises(SpecError, match=match):
        load_spec({"input": [1, 6, 6] if "conv" in spec_layer["type"] else 4, "layers": [spec_layer]})


def test_spec_bias_false_still_means_no_bias():
    net = load_spec(_small(layers=[{"type": "dense", "out_features": 3, "bias": False}, {"type": "softmax"}])).network
    assert net.param_names == ["W1"]


def test_convention_knobs_are_type_checked():
    conv = jb.conventions.get_convention("pytorch")
    for knob, value in (("mse_scale", "abc"), ("mse_scale", True), ("relu_at_zero", "0"), ("name", 5)):
        with pytest.raises(SpecError, match=knob):
            conv.replace(**{knob: value})
    with pytest.raises(SpecError, match="spec.convention"):
        load_spec(_small(convention={"preset": "damadi", "relu_at_zero": "abc"}))


def test_seeds_and_input_shape_are_validated(net):
    with pytest.raises(DataError, match="seed must be an integer >= 0"):
        net.init_params(-5)
    with pytest.raises(DataError, match="seed must be an integer >= 0"):
        generate_data(net, 2, -1)
    with pytest.raises(DataError, match="batch must be an integer >= 1"):
        generate_data(net, 1.5, 0)
    with pytest.raises(SpecError, match="input_shape must be"):
        jb.Network([jb.Dense(3)], "mse", 2.5)
    with pytest.raises(SpecError, match="input_shape must be"):
        jb.Network([jb.Dense(3)], "mse", (True, 2))


def test_unknown_parameter_name_is_a_package_error_and_a_key_error(net):
    with pytest.raises(UnknownNameError, match="has no parameter 'W9'") as info:
        net.entry("W9")
    assert isinstance(info.value, KeyError) and isinstance(info.value, JacobianBPError)
    assert str(info.value).startswith("network")  # not repr-quoted like a plain KeyError


def test_gradient_method_is_checked_first(net):
    with pytest.raises(DataError, match="method must be 'chain' or 'operator'"):
        net.gradient(np.ones(4), np.eye(3)[0], net.init_params(0), method="adjoint")


def test_shared_layer_object_is_not_mutated_across_networks():
    relu = jb.ReLU()  # at_zero taken from each network's convention
    park = jb.Network([jb.Dense(2), relu, jb.Dense(1)], "mse", 2, "park")
    torch_like = jb.Network([jb.Dense(2), relu, jb.Dense(1)], "mse", 2, "pytorch")
    assert park.stages[0].post[0].at_zero == 1.0
    assert torch_like.stages[0].post[0].at_zero == 0.0
    # oracle: with W1 = 0, b1 = 0 every hidden pre-activation is exactly 0, so dℓ/dW2 = relu(0) a = 0,
    # and dℓ/db1 = f'(0) * W2 * δ: f'(0) is 1 for Park, 0 for PyTorch
    for net, h0 in ((park, 1.0), (torch_like, 0.0)):
        p = net.init_params(0)
        p = {k: (np.zeros_like(v) if k in ("W1", "b1") else np.full_like(v, 2.0)) for k, v in p.items()}
        g = net.gradient(np.ones(2), np.ones(1), p)
        yhat = 2.0  # a[1] = 0, z[2] = W2·0 + b2 = 2
        delta = 2 * net.loss.scale * (yhat - 1.0)  # n_out = 1: "mean" over outputs divides by 1
        np.testing.assert_allclose(g["b1"].ravel(), h0 * 2.0 * delta * np.ones(2), rtol=1e-14)


def test_non_finite_loss_or_gradient_raises_data_error():
    # Damadi's convention: the per-sample MSE sums over the outputs (PyTorch's averages them)
    net = jb.Network([jb.Dense(3)], jb.losses.MSE(scale=1e308), 4, "damadi")
    p = net.init_params(0)
    x, y = np.ones(4), np.zeros(3)
    with pytest.raises(DataError, match="infinite|not finite"):
        net.loss_value(x, y, p)
    with pytest.raises(DataError, match="infinite|not finite"):
        net.gradient(x, y, p)
    with pytest.raises(DataError, match="infinite|not finite"):
        net.delta(x, y, p)
    # unmatched softmax + BCE saturating to exactly 0/1: 1/(ŷ(1-ŷ)) overflows
    sat = load_spec({"input": 4, "layers": [{"type": "dense", "out_features": 3}, {"type": "softmax"}],
                     "loss": "bce"}).network
    X, Y = generate_data(sat, 3, 0)
    big = {k: 1e4 * v for k, v in sat.init_params(0).items()}
    with pytest.raises(DataError, match="infinite|not finite"):
        sat.gradient(X, Y, big)


def test_network_backstop_refuses_a_non_finite_delta(net, monkeypatch):
    """Whatever the loss module lets through, the network refuses a non-finite δ or ∇θℓ."""
    monkeypatch.setattr(net.loss, "delta", lambda Y, Z: np.full_like(Z, np.nan))
    p = net.init_params(0)
    for call in (lambda: net.gradient(np.ones(4), np.eye(3)[0], p),
                 lambda: net.gradient(np.ones(4), np.eye(3)[0], p, method="operator"),
                 lambda: net.delta(np.ones(4), np.eye(3)[0], p)):
        with pytest.raises(DataError, match=r"network 'network': the gradient of the loss with respect to z\[L\] "
                                            r"\(delta\) is not finite \(NaN\)"):
            call()


def test_finite_results_are_unchanged_by_the_checks(net):
    """The checks only refuse: a finite gradient equals float64 central differences of the loss."""
    p = net.init_params(2)
    x, y = np.linspace(-1, 1, 4), np.eye(3)[2]
    g = net.gradient(x, y, p).vector
    theta = net.pack(p)
    h = 1e-6
    fd = np.array([(net.loss_value(x, y, net.unpack(theta + h * e)) - net.loss_value(x, y, net.unpack(theta - h * e)))
                   / (2 * h) for e in np.eye(theta.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_numeric_only_entry_points_raise_package_errors(net):
    import sympy

    from jacobian_bp.errors import UnsupportedInputError
    from jacobian_bp.uses.lazy import linearize
    from jacobian_bp.engine.per_sample import per_sample_gradients

    p = net.init_params(0)
    sym = np.array(sympy.symbols("x1:5"), dtype=object)
    with pytest.raises(UnsupportedInputError, match="symbolic inputs; lazy products are numeric only") as info:
        linearize(net, sym, p)
    assert isinstance(info.value, TypeError)  # as before
    with pytest.raises(UnsupportedInputError, match="expected a jacobian_bp Network"):
        linearize("damadi-1layer", np.ones(4), p)
    with pytest.raises(DataError, match="targets Y are required"):
        per_sample_gradients(net, np.ones(4), None, p)
    pool = jb.Network([jb.layers.Conv2d(1, 1), jb.layers.MaxPool2d(2), jb.layers.Flatten()], "mse", (1, 2, 2))
    with pytest.raises(UnsupportedInputError, match="max pooling of symbolic entries"):
        pool.forward(np.array(sympy.symbols("a:4"), dtype=object).reshape(1, 2, 2), pool.init_params(0))


@pytest.mark.parametrize("kw, match", [
    ({"fd_max_coords": 0}, "fd_max_coords must be an integer >= 1"),
    ({"fd_max_coords": -1}, "fd_max_coords must be an integer >= 1"),
    ({"fd_directions": -2}, "fd_directions must be an integer >= 0"),
    ({"h": 0.0}, "step h must be a positive finite number"),
    ({"h": float("nan")}, "step h must be a positive finite number"),
])
def test_verify_options_are_validated(net, kw, match):
    with pytest.raises(DataError, match=match):
        jb.verify(net, np.ones(4), np.eye(3)[0], net.init_params(0), use_torch=False, **kw)
