"""Execute notebooks/training_real_data.ipynb headless (nbclient, kernel python3) in its fast mode."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "training_real_data.ipynb"


def test_notebook_is_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    assert all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_executes_in_fast_mode(monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    monkeypatch.setenv("JBP_FAST", "1")  # inherited by the kernel: few epochs and seeds
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell (including its asserts)
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"
    )
    assert "fast mode" in text
    assert "iris: 4 features, 3 classes, 120 train / 30 test" in text
    rows = re.findall(r"^(iris|digits)\s+(\d+\.\d)%\s+(\d+\.\d)%$", text, flags=re.M)
    assert [r[0] for r in rows] == ["iris", "digits"], text
    for _, x, y in rows:
        assert 0 <= float(x) <= 100 and 0 <= float(y) <= 100
    assert "λ_max(G)" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 1, "the loss curves were not plotted"
