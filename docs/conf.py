"""Sphinx configuration of the jacobian_bp documentation site (built by docs/build.sh).

At build time this file generates (into ``docs/_generated/``, never committed):

* ``spec.schema.json`` -- the JSON Schema of the spec format, from ``jacobian-bp schema`` (published
  at the site root as ``spec.schema.json``), and the table of layer types from it;
* the conventions table, from :data:`jacobian_bp.engine.conventions.PRESETS`;
* the command-line reference, from the argparse help of every command;
* ``gallery/``: a copy of every ``notebooks/*.ipynb`` (committed without outputs; myst-nb executes them).

Math is rendered by MathJax 2 from Debian's ``libjs-mathjax`` (``/usr/share/javascript/mathjax``,
or ``$JBP_MATHJAX_DIR``), copied into the site: no CDN, the pages work offline.

Environment: ``JBP_DOCS_QUICK=1`` builds without the notebook gallery (the test suite's quick build, of a
copy of docs/ with ``JBP_DOCS_ROOT`` naming the repository).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("JBP_DOCS_ROOT", DOCS.parent)).resolve()  # the repository (a test builds a copy of docs/)
GEN = DOCS / "_generated"
QUICK = os.environ.get("JBP_DOCS_QUICK", "") not in ("", "0")
sys.path.insert(0, str(ROOT))

import jacobian_bp  # noqa: E402

project = "jacobian_bp"
author = "jacobian_bp authors"
copyright = "jacobian_bp authors"
release = version = jacobian_bp.__version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "build.sh", "browser_check.py", "README.md", "_generated/*.md", "_generated/gallery/*.md"]
if QUICK:
    exclude_patterns += ["_generated/gallery"]
# ``|θ|`` (the number of parameters) is everywhere in the docstrings; in reST it would be a substitution
rst_prolog = ".. |θ| replace:: \\|θ\\|\n"
root_doc = "index"
html_theme = "alabaster"
html_title = f"jacobian_bp {release}"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_extra_path = [str(GEN / "extra")]
html_theme_options = {"description": "Backpropagation as an explicit product of Jacobians", "fixed_sidebar": True,
                      "page_width": "1100px", "sidebar_width": "230px"}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}

# MyST / myst-nb
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "off" if QUICK else os.environ.get("JBP_NB_EXECUTION", "cache")
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_merge_streams = True
nb_render_markdown_format = "myst"  # Markdown outputs (e.g. "$$ … $$" of the paper-equation displays) get their math

# autodoc (NumPy-style docstrings)
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": False}  # members: as each directive lists them
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
suppress_warnings = ["myst.header"]


# ---------------------------------------------------------------------------- MathJax from the Debian package
def _mathjax() -> None:
    """Copy the parts of MathJax 2 the pages use into ``_generated/mathjax_static/mathjax`` (once)."""
    src = Path(os.environ.get("JBP_MATHJAX_DIR", "/usr/share/javascript/mathjax"))
    if not (src / "MathJax.js").is_file():
        raise RuntimeError(f"MathJax not found at {src} (install the Debian package libjs-mathjax, or set "
                           f"JBP_MATHJAX_DIR to a MathJax 2 folder); docs/build.sh installs it")
    dst = GEN / "mathjax_static" / "mathjax"
    if (dst / "MathJax.js").is_file():
        return
    parts = ["MathJax.js", "config/TeX-AMS_CHTML.js", "config/local", "extensions", "jax/input/TeX",
             "jax/output/CommonHTML", "jax/element", "localization/en", "fonts/HTML-CSS/TeX/woff",
             "fonts/HTML-CSS/TeX/otf"]
    for part in parts:
        s, d = src / part, dst / part
        if not s.exists():
            continue
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d, dirs_exist_ok=True)
        else:
            shutil.copy2(s, d)


_mathjax()
html_static_path.append(str(GEN / "mathjax_static"))
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_CHTML"
mathjax2_config = {
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True,
                "processEnvironments": True, "processClass": "tex2jax_process|mathjax_process|math|output_area",
                "ignoreClass": "tex2jax_ignore|mathjax_ignore|document"},
    "TeX": {"extensions": ["AMSmath.js", "AMSsymbols.js", "boldsymbol.js"]},
    "CommonHTML": {"linebreaks": {"automatic": False}},
    "showMathMenu": False,
    "messageStyle": "none",
}
# myst-nb/myst-parser configure MathJax 3 unless told otherwise; this site loads MathJax 2 (above)
myst_update_mathjax = False


# ---------------------------------------------------------------------------- generated pages
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:  # unchanged files keep Sphinx's cache
        path.write_text(text, encoding="utf-8")


def _schema() -> None:
    """``jacobian-bp schema`` into _generated/extra (the site root) and a table of the layer types."""
    out = GEN / "extra" / "spec.schema.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "jacobian_bp.cli", "schema", "-o", str(out)], check=True,
                   cwd=str(ROOT), stdout=subprocess.DEVNULL)
    schema = json.loads(out.read_text(encoding="utf-8"))
    _write(GEN / "spec.schema.json", out.read_text(encoding="utf-8"))

    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    def kind(prop: dict) -> str:
        alts = prop.get("anyOf", [prop])
        words = []
        for a in alts:
            if "enum" in a:
                words.append(" / ".join(f'`"{v}"`' for v in a["enum"]))
            elif a.get("type") == "array":
                words.append(f"list of {a.get('items', {}).get('type', 'layer objects') if '$ref' not in a.get('items', {}) else 'layer objects'}")
            elif "type" in a:
                words.append(str(a["type"]))
        return ", ".join(words) or "any"

    rows = ["| type | keywords (required in **bold**) | what it is |", "|---|---|---|"]
    for alt in schema["$defs"]["layer"]["oneOf"]:
        props = {k: v for k, v in alt["properties"].items() if k != "type"}
        req = set(alt.get("required", []))
        kws = "; ".join((f"**`{k}`**" if k in req else f"`{k}`") + f" ({cell(kind(v))}"
                        + (f", default `{json.dumps(v['default'])}`" if "default" in v else "") + ")"
                        for k, v in props.items()) or "--"
        rows.append(f"| `{alt['properties']['type']['const']}` | {kws} | {cell(alt.get('description', ''))} |")
    _write(GEN / "layer_types.md", "\n".join(rows) + "\n")


def _conventions() -> None:
    """The knobs of every preset, from jacobian_bp.engine.conventions (the code, not a copy of it)."""
    from dataclasses import fields

    from jacobian_bp.engine.conventions import PRESETS, Convention

    names = list(PRESETS)
    knobs = [f.name for f in fields(Convention) if f.name not in ("name", "source")]
    rows = ["| knob | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---|" * len(names)]
    for k in knobs:
        rows.append(f"| `{k}` | " + " | ".join(f"`{getattr(PRESETS[n], k)}`" for n in names) + " |")
    rows.append("| source | " + " | ".join(PRESETS[n].source.replace("|", "\\|") for n in names) + " |")
    _write(GEN / "conventions_table.md", "\n".join(rows) + "\n")


def _cli() -> None:
    """The help of every command (argparse), as the command line prints it."""
    import argparse
    import io
    from contextlib import redirect_stdout

    from jacobian_bp.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    parts = []
    for name, p in [("jacobian-bp", parser)] + [(f"jacobian-bp {n}", s) for n, s in subs.items()]:
        buf = io.StringIO()
        with redirect_stdout(buf):
            p.print_help()
        parts.append(f"## `{name}`\n\n```text\n{buf.getvalue().rstrip()}\n```\n")
    _write(GEN / "cli_reference.md", "\n".join(parts))


def _gallery() -> None:
    """Copy notebooks/*.ipynb (any that exist now: other notebooks appear as they are added) and list them."""
    if QUICK:
        _write(GEN / "gallery_toc.md", "(This quick build leaves the notebooks out; `docs/build.sh` executes them.)\n")
        return
    dst = GEN / "gallery"
    dst.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    for old in dst.glob("*.ipynb"):
        if old.name not in wanted:
            old.unlink()
    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        data = p.read_bytes()
        target = dst / p.name
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
    names = "\n".join(f"_generated/gallery/{p.stem}" for p in sorted((ROOT / "notebooks").glob("*.ipynb")))
    _write(GEN / "gallery_toc.md", f"```{{toctree}}\n:maxdepth: 1\n\n{names}\n```\n")


os.environ.setdefault("JBP_FAST", "1")  # the training notebook's fast mode (few epochs): CI time
os.environ.setdefault("JACOBIAN_BP_QUIET", "1")
_schema()
_conventions()
_cli()
_gallery()
