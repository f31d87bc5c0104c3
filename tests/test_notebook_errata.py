"""notebooks/errata_walkthrough.ipynb executes headless and shows the computed findings."""
from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "errata_walkthrough.ipynb"


def _text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", ""))
            out.append(o.get("data", {}).get("text/plain", ""))
            if o.get("output_type") == "error":
                out.append("ERROR " + o.get("ename", ""))
    return "\n".join(out)


def test_errata_notebook_executes():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = _text(nb)
    assert "ERROR" not in text
    assert "Damadi Table 2 simple linear regression gradient: fails" in text and "sign flip" in text
    assert "output activation used for a hidden layer" in text
    assert "wrong axis" in text
    assert "printed code, column sums: [" in text
    # the user's own claim dW = Aᵀ dZ is the transpose of Ganev's (4.3)
    assert "dW = A[l-1]ᵀ dZ[l]: ill-typed" in text and "transpose" in text
