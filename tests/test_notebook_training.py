"""Execute notebooks/training_real_data.ipynb headless (nbclient, kernel python3) in its fast mode."""
from __future__ import annotations

import re

import pytest

from conftest import execute_notebook, notebook_outputs


def test_notebook_executes_in_fast_mode(monkeypatch):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    monkeypatch.setenv("JBP_FAST", "1")  # inherited by the kernel: few epochs and seeds
    nb = execute_notebook("training_real_data.ipynb")
    text = "\n".join(notebook_outputs(nb))
    assert "fast mode" in text
    assert "iris: 4 features, 3 classes, 120 train / 30 test" in text
    rows = re.findall(r"^(iris|digits)\s+(\d+\.\d)%\s+(\d+\.\d)%$", text, flags=re.M)
    assert [r[0] for r in rows] == ["iris", "digits"], text
    for _, x, y in rows:
        assert 0 <= float(x) <= 100 and 0 <= float(y) <= 100
    assert "λ_max(G)" in text
    assert notebook_outputs(nb, "image/png"), "the loss curves were not plotted"
