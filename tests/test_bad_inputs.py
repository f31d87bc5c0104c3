"""Every kind of bad input of tests/bad_inputs.py is refused cleanly (issue #11).

api/spec/symbolic: a :class:`~jacobian_bp.errors.JacobianBPError` with a one-line message
(never a bare TypeError/ValueError/KeyError/RecursionError, never a silent wrong result);
cli: exit code 2, one ``jacobian-bp: error:`` line on stderr (argparse's usage + error form
for usage errors), no traceback, no output file left behind.  No string is ever evaluated:
the file MARKER never appears in the working directory.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from bad_inputs import CATALOGUE, LATEX, LATEX2, MARKER, PAYLOADS, Case  # noqa: E402

from jacobian_bp.errors import JacobianBPError  # noqa: E402

_RAW_PAYLOADS = (LATEX, LATEX2)  # must never reach a .tex file verbatim


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _check_error(exc: BaseException, case: Case) -> None:
    assert isinstance(exc, JacobianBPError), (
        f"{case.id}: expected a JacobianBPError, got {type(exc).__name__}: {str(exc)[:300]}")
    msg = str(exc)
    assert msg.strip(), f"{case.id}: empty error message"
    assert "\n" not in msg.strip(), f"{case.id}: the error message spans several lines: {msg[:300]!r}"


def _run_python(case: Case, tmp_path: Path):
    """Run an api/spec/symbolic case; return the produced LaTeX texts (for 'safe' cases)."""
    if case.surface in ("api", "symbolic"):
        case.call(tmp_path)
        return []
    from jacobian_bp.spec import load_spec

    src = case.spec() if callable(case.spec) else case.spec
    spec = load_spec(src)
    net = spec.network
    assert net.n_params <= 100_000, f"{case.id}: unexpectedly large network accepted ({net.n_params})"
    X, Y = spec.data()
    params = spec.params()
    net.gradient(X, Y, params)
    texts = []
    if case.expect == "safe":
        from jacobian_bp.render import derivation

        texts.append(derivation.derivation_document(net, params, X, Y))
    return texts


@pytest.mark.parametrize("case", [c for c in CATALOGUE if c.surface != "cli"], ids=lambda c: c.id)
def test_python_surfaces_refuse_bad_input(case: Case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            texts = _run_python(case, tmp_path)
        except BaseException as exc:  # noqa: BLE001 - we classify every exception
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            assert not (tmp_path / MARKER).exists(), f"{case.id}: code was executed (MARKER created)"
            _check_error(exc, case)
            return
    assert not (tmp_path / MARKER).exists(), f"{case.id}: code was executed (MARKER created)"
    if case.expect == "error":
        pytest.fail(f"{case.id}: the bad input was accepted without an error")
    for tex in texts:
        for payload in _RAW_PAYLOADS:
            assert payload not in tex, f"{case.id}: the payload {payload!r} reached the LaTeX output verbatim"


def _check_cli_stderr(case: Case, err: str) -> None:
    assert "Traceback" not in err, f"{case.id}: traceback on stderr:\n{err}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, f"{case.id}: nothing on stderr"
    if case.argparse:
        # argparse's standard form: usage line(s), then "PROG [sub]: error: ..."
        assert lines[0].startswith("usage: jacobian-bp"), f"{case.id}: unexpected stderr:\n{err}"
        assert lines[-1].startswith("jacobian-bp") and ": error:" in lines[-1], f"{case.id}: unexpected stderr:\n{err}"
        assert all(ln.startswith((" ", "usage:")) for ln in lines[1:-1]), f"{case.id}: unexpected stderr:\n{err}"
    else:
        assert len(lines) == 1, f"{case.id}: expected exactly one line on stderr, got {len(lines)}:\n{err}"
        assert lines[0].startswith("jacobian-bp: error:"), f"{case.id}: unexpected stderr:\n{err}"


@pytest.mark.parametrize("case", [c for c in CATALOGUE if c.surface == "cli"], ids=lambda c: c.id)
def test_cli_refuses_bad_input(case: Case, tmp_path, monkeypatch, capsys):
    from jacobian_bp.cli import main

    monkeypatch.chdir(tmp_path)
    if case.setup is not None:
        case.setup(tmp_path)
    before = _files(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in case.argv]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            pytest.fail(f"{case.id}: main() raised {type(exc).__name__}: {str(exc)[:300]} (expected exit code 2)")
    out, err = capsys.readouterr()
    assert not (tmp_path / MARKER).exists(), f"{case.id}: code was executed (MARKER created)"
    new = _files(tmp_path) - before
    if case.expect == "safe" and rc == 0:
        for f in new:
            p = tmp_path / f
            if p.is_file() and p.suffix == ".tex":
                tex = p.read_text(encoding="utf-8")
                for payload in _RAW_PAYLOADS:
                    assert payload not in tex, f"{case.id}: the payload {payload!r} reached {f} verbatim"
        return
    assert rc == 2, f"{case.id}: expected exit code 2, got {rc!r}; stderr:\n{err}"
    _check_cli_stderr(case, err)
    assert not new, f"{case.id}: output file(s) left behind: {sorted(new)}"


def test_catalogue_is_large_and_covers_every_surface():
    ids = [c.id for c in CATALOGUE]
    assert len(ids) == len(set(ids))
    assert len(CATALOGUE) >= 70
    by_surface = {s: sum(c.surface == s for c in CATALOGUE) for s in ("api", "spec", "cli", "symbolic")}
    assert all(n >= 10 for n in by_surface.values()), by_surface
    # the hostile payloads of the brief are all present
    strings = set()

    def walk(v):
        if isinstance(v, str):
            strings.add(v)
        elif isinstance(v, dict):
            for k, w in v.items():
                walk(k)
                walk(w)
        elif isinstance(v, (list, tuple)):
            for w in v:
                walk(w)

    for c in CATALOGUE:
        walk(c.spec)
        walk(c.argv)
    assert set(PAYLOADS) <= strings
