"""README.md states what a claim can state: every network-claim target, every Setting keyword, every judge preset,
``check_latex`` keyword and ``jacobian-bp check`` option, read from the code (a new one fails this test until the
README names it); and its two set-up commands stay exactly as they are."""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"
SETUP = ('python -m pip install -e . && jacobian-bp verify damadi-2layer',
         'python -m pip install -q -e ".[test,torch,fast,dask]" && python -m pytest')


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^## What a claim can state\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert m, "README.md has no section '## What a claim can state'"
    return m.group(1)


def _named(section: str, name: str) -> bool:
    return f"`{name}`" in section


def test_every_claim_target_is_in_the_readme():
    from jacobian_bp.claims import targets

    section = _section()
    names = [t.name for t in targets()]
    assert len(names) > 10
    missing = [n for n in names if not re.search(rf"^- `{re.escape(n)}` — ", section, flags=re.M)]
    assert not missing, f"targets missing from README's 'What a claim can state': {missing}"


def test_every_setting_keyword_and_judge_knob_is_in_the_readme():
    from jacobian_bp.claims import JUDGE_PRESETS, check_latex
    from jacobian_bp.claims.model import Setting

    section = _section()
    fields = [f.name for f in dataclasses.fields(Setting)]
    assert "weight_layout" in fields
    missing = [f for f in fields if not _named(section, f)]
    missing += [p for p in JUDGE_PRESETS if not _named(section, p)]
    missing += [k for k in inspect.signature(check_latex).parameters if k != "latex" and not _named(section, k)]
    assert not missing, f"missing from README's 'What a claim can state': {missing}"


def test_every_check_command_option_is_in_the_readme():
    from jacobian_bp.claims.judge import main_check

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            main_check(["--help"])
        except SystemExit:  # argparse's --help exits; main_check may also return its code
            pass
    options = sorted(set(re.findall(r"(--[a-z][a-z-]*)", out.getvalue())) - {"--help"})
    assert "--setting" in options
    section = _section()
    missing = [o for o in options if f"`{o}" not in section]
    assert not missing, f"`jacobian-bp check` options missing from the README: {missing}"


def test_the_set_up_commands_are_unchanged():
    text = README.read_text(encoding="utf-8")
    for cmd in SETUP:
        assert f"```bash\n{cmd}\n```" in text
