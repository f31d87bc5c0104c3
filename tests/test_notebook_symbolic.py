"""Execute notebooks/symbolic_derivations.ipynb headless; its LaTeX output compiles with pdflatex."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import execute_notebook


@pytest.fixture(scope="module")
def executed():
    return execute_notebook("symbolic_derivations.ipynb")


def _outputs(nb, mime):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if mime == "stream" and out.get("output_type") == "stream":
                yield out["text"]
            elif mime in out.get("data", {}):
                yield out["data"][mime]


def test_notebook_runs_and_proves_the_identities(executed):
    text = "".join(_outputs(executed, "stream"))
    assert "simplifies to 0: True" in text and "False" not in text.replace("simplifies to 0: True", "")
    assert "chain = Park Thm. 5.1: True" in text and "chain = Ganev Prop. 3.1: True" in text
    assert "SizeBoundError" in text  # LeNet's first block is refused beyond the bound
    latex = list(_outputs(executed, "text/latex"))
    assert len(latex) >= 15
    joined = "\n".join(latex)
    assert r"f'\left(z^{[1]}_{1}\right)" in joined  # generic f: diag(f'(z_1), ...)
    assert r"\mathbf{I}_{10} \otimes" in joined  # LeNet block level


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_notebook_latex_compiles(executed, tmp_path):
    body = []
    for tex in _outputs(executed, "text/latex"):
        tex = tex.strip().strip("$").replace(r"\displaystyle", "", 1)
        body.append(r"\[" + "\n" + tex + "\n" + r"\]")
    doc = ("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\usepackage[paperwidth=200cm,paperheight=300cm,"
           "margin=1cm]{geometry}\n\\begin{document}\n" + "\n".join(body) + "\n\\end{document}\n")
    (tmp_path / "nb.tex").write_text(doc, encoding="utf-8")
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "nb.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
