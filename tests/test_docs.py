"""The documentation site (issue #15 item 7): a quick build of docs/ (without the notebook gallery) with
warnings as errors, and what the generated pages must contain.

Oracles: the package's own registries and presets (every layer type, loss and convention appears),
``spec_schema()`` (the published schema file is exactly it), and the offline rule (MathJax is a local
file of the site, no page refers to another host).  The full build with executed notebooks and the
browser check run in ``.ci/run`` (``docs/build.sh --check``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MATHJAX = Path(os.environ.get("JBP_MATHJAX_DIR", "/usr/share/javascript/mathjax"))

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
if not (MATHJAX / "MathJax.js").is_file():
    pytest.skip("MathJax 2 (Debian libjs-mathjax) is not installed; docs/build.sh installs it",
                allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A quick build of a copy of docs/ (its generated files stay out of the real docs/)."""
    work = tmp_path_factory.mktemp("docs")
    src = work / "docs"
    shutil.copytree(ROOT / "docs", src, ignore=shutil.ignore_patterns("_build", "_generated"))
    out = work / "html"
    env = dict(os.environ, JBP_DOCS_QUICK="1", JBP_DOCS_ROOT=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
                        "-d", str(work / ".doctrees"), str(src), str(out)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, f"sphinx failed or warned:\n{r.stderr[-4000:]}"
    return out


def _text(site: Path, page: str) -> str:
    return (site / page).read_text(encoding="utf-8")


def test_pages_exist(site):
    for page in ("index.html", "getting-started.html", "uses/derive.html", "uses/verify.html", "uses/latex.html",
                 "spec.html", "conventions.html", "cli.html", "api.html", "gallery.html"):
        assert (site / page).is_file(), page


def test_published_schema_is_the_generated_one_and_lists_every_layer(site):
    from jacobian_bp.layers.registry import all_layer_classes
    from jacobian_bp.spec import spec_schema

    published = json.loads(_text(site, "spec.schema.json"))
    assert published == json.loads(json.dumps(spec_schema()))
    spec_page = _text(site, "spec.html")
    for name in all_layer_classes():
        assert f"<code class=\"docutils literal notranslate\"><span class=\"pre\">{name}</span></code>" in spec_page, name
    assert "https://json-schema.org/draft/2020-12/schema" in spec_page
    assert '<a href="spec.schema.json">' in spec_page  # the published file, at the site root


def test_conventions_table_is_generated_from_the_presets(site):
    from dataclasses import fields

    from jacobian_bp.engine.conventions import PRESETS, Convention

    page = _text(site, "conventions.html")
    table = page[page.index("<table"):page.index("</table>")]
    for name, conv in PRESETS.items():
        assert f">{name}<" in table
    for f in fields(Convention):
        if f.name not in ("name", "source"):
            assert f">{f.name}<" in table, f.name
    # one row per knob, one cell per preset: the weight layouts as the presets have them
    row = re.search(r"weight_layout</span></code></p></td>(.*?)</tr>", table, re.S) or \
        re.search(r"weight_layout</span></code></td>(.*?)</tr>", table, re.S)
    assert row, "no weight_layout row"
    cells = re.findall(r'<span class="pre">(\w+)</span>', row.group(1))
    assert cells == [PRESETS[n].weight_layout for n in PRESETS]


def test_api_reference_from_docstrings_with_math(site):
    page = _text(site, "api.html")
    for name in ("jacobian_theta", "verify", "spec_schema", "derivation_document", "progress"):
        assert name in page, name
    assert page.count('class="math notranslate nohighlight"') >= 10  # :math: roles reach MathJax


def test_cli_reference_lists_every_command(site):
    from jacobian_bp.cli import build_parser

    page = _text(site, "cli.html")
    import argparse

    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in subs:
        assert f"jacobian-bp {name}" in page, name


def test_offline_mathjax(site):
    assert (site / "_static" / "mathjax" / "MathJax.js").is_file()
    assert (site / "_static" / "mathjax" / "config" / "TeX-AMS_CHTML.js").is_file()
    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        assert not re.search(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//', text), html.name
    assert '_static/mathjax/MathJax.js?config=TeX-AMS_CHTML' in _text(site, "index.html")
