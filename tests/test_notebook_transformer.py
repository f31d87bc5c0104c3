"""notebooks/transformer_block.ipynb executes headless: the block chain in LaTeX, the product of the factors equal to the
block's Jacobian, the attention's inner factors, and the spy plots of every factor."""
from __future__ import annotations

import re

from conftest import execute_notebook, notebook_outputs


def test_transformer_notebook_executes_and_shows_the_factors():
    nb = execute_notebook("transformer_block.ipynb")
    text = "\n".join(notebook_outputs(nb, "stream"))
    latex = "\n".join(notebook_outputs(nb, "text/latex"))
    # the block chain from the layers' LaTeX facts
    assert r"\mathbf{I}_{6} \otimes \mathbf{W}_1" in latex and r"\mathbf{J}_{\mathbf{Q}}\mathbf{C}" in latex
    assert r"\operatorname{blkdiag}" in latex
    # the product of the factors is the block's Jacobian, and the structured attention product equals the operator
    diffs = [float(v) for v in re.findall(r"max \|difference\| = ([0-9.e+-]+)", text)]
    assert diffs and max(diffs) < 1e-12
    m = re.search(r"vs the operator: ([0-9.e+-]+)", text)
    assert m and float(m.group(1)) < 1e-12
    assert "symmetric True" in text
    # b_K's block is exactly zero, the other attention blocks are not
    assert re.search(r"b_K1\.attn .*non-zeros 0\b", text) and not re.search(r"W_K1\.attn .*non-zeros 0\b", text)
    # the spy plots were drawn
    assert len(notebook_outputs(nb, "image/png")) >= 2
