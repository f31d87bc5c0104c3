"""jacobian_bp.backend.progress: a tqdm bar on a terminal, silent otherwise, off when quiet or without tqdm."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

from jacobian_bp.backend import progress as pg
from jacobian_bp.errors import DataError


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal(monkeypatch):
    """A terminal stderr (set lazily: pytest's capture resets sys.stderr after fixture setup)."""
    monkeypatch.delenv("JACOBIAN_BP_QUIET", raising=False)
    err = _Terminal()

    def install():
        monkeypatch.setattr(sys, "stderr", err)
        return err

    return install


def test_bar_on_a_terminal(terminal):
    terminal = terminal()
    pytest.importorskip("tqdm")
    items = [1, 2, 3]
    bar = pg.progress(items, desc="blocks")
    assert bar is not items and list(bar) == items
    out = terminal.getvalue()
    assert "blocks" in out and "0/3" in out
    with pg.progress_bar(total=4, desc="by hand") as bar:
        bar.update(4)
    assert "by hand" in terminal.getvalue() and "/4" in terminal.getvalue()


def test_generator_with_total(terminal):
    terminal = terminal()
    pytest.importorskip("tqdm")
    assert list(pg.progress((i * i for i in range(5)), total=5, desc="gen")) == [0, 1, 4, 9, 16]
    assert "gen" in terminal.getvalue() and "/5" in terminal.getvalue()


def test_silent_when_not_a_terminal(monkeypatch):
    err = io.StringIO()  # isatty() is False
    monkeypatch.setattr(sys, "stderr", err)
    items = [1, 2]
    assert pg.progress(items, desc="x") is items  # the iterable itself: no wrapper
    with pg.progress_bar(total=2) as bar:
        bar.update(2)
    assert err.getvalue() == "" and not pg.show_progress()


def test_quiet_switch_and_environment(terminal, monkeypatch):
    terminal = terminal()
    pytest.importorskip("tqdm")
    with pg.quiet():
        assert pg.is_quiet() and not pg.show_progress()
        items = [1]
        assert pg.progress(items) is items
    assert not pg.is_quiet() and pg.show_progress()
    old = pg.set_quiet(True)
    try:
        assert old is False and pg.progress([1]) == [1] and terminal.getvalue() == ""
    finally:
        pg.set_quiet(old)
    monkeypatch.setenv("JACOBIAN_BP_QUIET", "1")
    assert pg.is_quiet() and not pg.show_progress()
    monkeypatch.setenv("JACOBIAN_BP_QUIET", "0")
    assert not pg.is_quiet()
    with pytest.raises(DataError, match="set_quiet: expected True or False"):
        pg.set_quiet("yes")


def test_missing_tqdm_is_silent(terminal, monkeypatch):
    terminal = terminal()
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    assert not pg.tqdm_available() and not pg.show_progress()
    items = [1, 2]
    assert pg.progress(items, desc="x") is items
    with pg.progress_bar(total=2) as bar:
        bar.update(2)
    assert terminal.getvalue() == ""


def test_importing_the_package_does_not_import_tqdm():
    code = "import sys, jacobian_bp, jacobian_bp.backend.progress; print('tqdm' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
