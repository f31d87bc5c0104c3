"""The command line's options (issue #15 item 8): help text on every option, --version, --notation,
--quiet and progress, and the row/column names of the Jacobian .npz.

Oracles for the names: ``network.pack`` of parameters whose every entry holds its own id (so a column
name must point at the entry whose value sits in that θ coordinate), and the single-sample Jacobians
for the rows of a batch Jacobian.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import sys
from importlib.metadata import version

import numpy as np
import pytest
import scipy.sparse as sp

import jacobian_bp as jb
from jacobian_bp.cli import build_parser, main, theta_labels
from jacobian_bp.render.notation import NOTATIONS
from jacobian_bp.spec import generate_data, load_spec

PARK_CNN = {"name": "park-cnn", "input": [2, 5, 5], "convention": "park", "loss": "cross_entropy",
            "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1}, {"type": "tanh"},
                       {"type": "avgpool2d", "kernel_size": 2}, {"type": "flatten"},
                       {"type": "dense", "out_features": 3}, {"type": "softmax"}]}
MML_MLP = {"name": "mml-mlp", "input": 3, "convention": "mml", "loss": "mse",
           "layers": [{"type": "dense", "out_features": 4}, {"type": "sigmoid"}, {"type": "dense", "out_features": 2}]}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_option_of_every_command_has_help_text():
    parser = build_parser()
    subs = _subparsers(parser)
    assert {"examples", "show", "verify", "gradient", "jacobian", "latex", "errata", "schema", "ntk",
            "per-sample"} <= set(subs)
    for name, sp_ in [("jacobian-bp", parser)] + list(subs.items()):
        for action in sp_._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip() and action.help is not argparse.SUPPRESS, \
                f"{name}: option {action.option_strings or action.dest} has no help text"
    for name, sp_ in subs.items():
        assert sp_.description, f"{name} has no description"


def test_version(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"jacobian-bp {version('jacobian_bp')}" and version("jacobian_bp") == jb.__version__


def _write_spec(tmp_path, spec: dict) -> str:
    p = tmp_path / f"{spec['name']}.json"
    p.write_text(json.dumps(spec))
    return str(p)


def test_latex_notation_option(tmp_path, capsys):
    """--notation picks whose symbols the derivation uses (the convention's by default)."""
    texts = {}
    for notation in (None, "ganev", "park", "pytorch"):
        out = tmp_path / f"d-{notation}.tex"
        argv = ["latex", "damadi-1layer", "-o", str(out), "--quiet"] + (["--notation", notation] if notation else [])
        assert main(argv) == 0, capsys.readouterr().err
        texts[notation] = out.read_text(encoding="utf-8")
    # the spec's convention is Damadi's: z^{[1]}, loss \ell; Ganev: W_1, \mathcal{L}; Park: \boldsymbol{z}[1];
    # PyTorch-style: z^{(1)}
    assert r"\mathbf{z}^{[1]}" in texts[None] and r"\mathcal{L}" not in texts[None]
    assert "W_1" in texts["ganev"] and r"\mathcal{L}" in texts["ganev"] and "W_1" not in texts[None]
    assert r"\boldsymbol{z}[1]" in texts["park"] and r"\boldsymbol{z}[1]" not in texts[None]
    assert r"\mathbf{z}^{(1)}" in texts["pytorch"] and r"\mathbf{z}^{(1)}" not in texts[None]
    rc = main(["latex", "damadi-1layer", "-o", str(tmp_path / "x.tex"), "--notation", "nobody"])
    err = capsys.readouterr().err
    assert rc == 2 and "invalid choice: 'nobody'" in err and all(n in err for n in NOTATIONS)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_errata_progress_on_a_terminal_and_quiet(monkeypatch, capsys):
    """A tqdm bar on stderr when it is a terminal; --quiet (before or after the command) silences it."""
    pytest.importorskip("tqdm")
    from jacobian_bp.documents import catalogue

    few = catalogue.catalogue()[:3]
    monkeypatch.setattr(catalogue, "catalogue", lambda document=None: few)
    monkeypatch.delenv("JACOBIAN_BP_QUIET", raising=False)
    from jacobian_bp.documents import errata

    monkeypatch.setattr(errata, "build_errata", lambda: errata.ErrataReport(
        [errata.ErrataItem(e, catalogue.result(e)) for e in few]))
    for argv, shown in ((["errata"], True), (["errata", "--quiet"], False), (["-q", "errata"], False)):
        term = _Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        assert main(argv) == 0
        monkeypatch.setattr(sys, "stderr", sys.__stderr__)
        assert ("errata" in term.getvalue() and "/3" in term.getvalue()) is shown, (argv, term.getvalue())
    # not a terminal: silent
    assert main(["errata"]) == 0
    assert capsys.readouterr().err == ""
    from jacobian_bp.backend.progress import is_quiet

    assert not is_quiet()  # the switch is restored after the run


def _named_theta(net) -> dict[str, np.ndarray]:
    """Parameters in the user's layout whose every entry is its own id (1, 2, 3, ...)."""
    out, k = {}, 1
    for e in net.entries:
        shape = tuple(e.space.shape)
        n = int(np.prod(shape))
        out[e.name] = np.arange(k, k + n, dtype=float).reshape(shape)
        k += n
    return out


_LABEL = re.compile(r"^(?:sample(\d+)\.)?([A-Za-z]+[0-9.]*?)\[([0-9,]+)\]$")


def _parse(label: str):
    m = _LABEL.match(label)
    assert m, label
    sample = None if m.group(1) is None else int(m.group(1))
    return sample, m.group(2), tuple(int(i) for i in m.group(3).split(","))


@pytest.mark.parametrize("spec", ["damadi-2layer", "small-cnn", "park-cnn", "mml-mlp"])
def test_theta_labels_point_at_the_packed_entries(spec, tmp_path):
    net = load_spec({"park-cnn": PARK_CNN, "mml-mlp": MML_MLP}.get(spec, spec)).network
    params = _named_theta(net)
    theta = net.pack(params)
    labels = theta_labels(net)
    assert len(labels) == net.n_params == len(set(labels))
    for c, lab in enumerate(labels):
        _, name, idx = _parse(lab)
        assert params[name][idx] == theta[c], (lab, c)


@pytest.mark.parametrize("spec", ["damadi-2layer", "park-cnn"])
@pytest.mark.parametrize("wrt", ["theta", "input"])
def test_jacobian_npz_has_row_and_column_names(spec, wrt, tmp_path, capsys):
    src = {"park-cnn": _write_spec(tmp_path, PARK_CNN)}.get(spec, spec)
    net = load_spec(src).network
    for batch in (1, 3):
        out = tmp_path / f"J-{wrt}-{batch}.npz"
        assert main(["jacobian", src, "-o", str(out), "--wrt", wrt, "--batch", str(batch), "--seed", "2"]) == 0
        assert "rows and cols named" in capsys.readouterr().out
        M = sp.load_npz(out).toarray()  # still a scipy sparse file
        with np.load(out, allow_pickle=False) as z:
            rows, cols = list(z["rows"]), list(z["cols"])
        assert M.shape == (len(rows), len(cols))
        X, _ = generate_data(net, batch, 2)
        p = net.init_params(0)
        first = net.convention.batch_axis == "first"
        xs = [X] if batch == 1 else [X[i] if first else X[..., i] for i in range(batch)]
        for r, lab in enumerate(rows):  # oracle: the row of the single-sample Jacobian it names
            sample, name, (k,) = _parse(lab)
            assert name == f"z{net.L}" and (sample is None) == (batch == 1)
            x = xs[sample or 0]
            J1 = (net.jacobian_theta(x, p) if wrt == "theta" else net.jacobian_input(x, p)).to_dense()
            if wrt == "theta":
                np.testing.assert_allclose(M[r], J1[k], rtol=1e-12, atol=1e-14)
                assert cols == theta_labels(net)
            else:
                cols_s = [c for c in range(len(cols)) if _parse(cols[c])[0] == sample]
                np.testing.assert_allclose(M[r, cols_s], J1[k], rtol=1e-12, atol=1e-14)
                other = [c for c in range(len(cols)) if c not in cols_s]
                assert not np.any(M[r, other])
        if wrt == "input":  # x[c,h,w] names index the sample's input array
            for c, lab in enumerate(cols):
                sample, name, idx = _parse(lab)
                assert name == "x" and len(idx) == len(net.input_shape)
                x = xs[sample or 0]
                e = np.zeros(net.input_shape)
                e[idx] = 1.0
                assert np.ravel(e)[c - (sample or 0) * e.size] == 1.0


def test_help_mentions_notation_and_quiet(capsys):
    assert main(["latex", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--notation" in out and "--quiet" in out and "whose notation" in out
