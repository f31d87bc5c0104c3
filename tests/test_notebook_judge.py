"""notebooks/checking_a_formula.ipynb executes headless: ten textbook claims judged with the project's truth."""
from __future__ import annotations

import pytest

from conftest import execute_notebook, notebook_outputs


def test_judge_notebook_executes():
    pytest.importorskip("lark")
    nb = execute_notebook("checking_a_formula.ipynb")
    text = "\n".join(notebook_outputs(nb, "stream"))
    # every claim judged by the project's own truth, with its second opinion
    assert text.count("truth: exact derivative") >= 10 and "DISAGREES" not in text
    for src in ("Matrix Cookbook", "Magnus & Neudecker", "Boyd & Vandenberghe", "Goodfellow", "Nielsen", "Bishop", "CS231n",
                "Dumoulin & Visin", "PyTorch"):
        assert src in text, src
    # the diagnoses the notebook shows
    for diagnosis in ("inverse instead of inverse-transpose", "Kronecker factors swapped", "symmetry assumed", "sign error",
                      "derivative at the activation instead of the pre-activation", "wrong normalizer", "stride ignored"):
        assert diagnosis in text, diagnosis
    assert "corrected: X^{-\\top}" in text
    latex = "\n".join(notebook_outputs(nb, "text/latex"))
    assert r"X^{-\top}" in latex
    summary = text.split("Cookbook (100)")[-1]
    assert "holds" in summary and "fails" in summary
