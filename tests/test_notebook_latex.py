"""notebooks/latex_rendering.ipynb executes headless and displays the block and entries levels."""
from __future__ import annotations

from conftest import execute_notebook, notebook_outputs


def test_latex_notebook_executes():
    nb = execute_notebook("latex_rendering.ipynb")
    latex = "\n".join(notebook_outputs(nb, "text/latex"))
    # block level (Jacobian._repr_latex_) of Damadi's one-layer network
    assert r"[\mathbf{I}_3 \otimes \mathbf{x}^\top \; \mathbf{I}_3] \in \mathbb{R}^{3\times 15}" in latex
    # entries level, symbolic and elided
    assert "x_{1}" in latex and r"\cdots" in latex and r"\vdots" in latex
    # LeNet-300-100 at block level, with shapes
    assert r"\mathbf{I}_{300} \otimes \mathbf{x}^\top" in latex and r"\mathbb{R}^{10\times 266610}" in latex
    # the other notations
    assert r"\mathrm{Jac}_1" in latex and r"\boldsymbol{z}[1]" in latex
    # gradient and verification report display themselves
    assert r"\nabla_{\mathbf{W}^{[2]}}" in latex and "verdict: PASS" in latex
    markdown = "\n".join(notebook_outputs(nb, "text/markdown"))
    assert "Damadi §3.2" in markdown and "Printed" in markdown and "Ganev Prop. 3.1" in markdown
