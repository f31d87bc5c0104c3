"""notebooks/errata_walkthrough.ipynb executes headless and shows the computed findings."""
from __future__ import annotations

from conftest import execute_notebook


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
    nb = execute_notebook("errata_walkthrough.ipynb")
    text = _text(nb)
    assert "ERROR" not in text
    assert "Damadi Table 2 simple linear regression gradient: fails" in text and "sign flip" in text
    assert "output activation used for a hidden layer" in text
    assert "wrong axis" in text
    assert "printed code, column sums: [" in text
    # the user's own claim dW = Aᵀ dZ is the transpose of Ganev's (4.3)
    assert "dW = A[l-1]ᵀ dZ[l]: ill-typed" in text and "transpose" in text
