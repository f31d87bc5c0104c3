"""Execute notebooks/convolution_as_matrix.ipynb headless (nbclient, kernel python3)."""
from __future__ import annotations

import pytest

from conftest import execute_notebook, notebook_outputs


def test_notebook_executes():
    pytest.importorskip("matplotlib")
    nb = execute_notebook("convolution_as_matrix.ipynb", timeout=300)  # raises on any failing cell or assert
    text = "\n".join(notebook_outputs(nb))
    assert "Prop. 3 route == direct route: True" in text
    assert "row 3: printed gives" in text and "WRONG" in text
    assert notebook_outputs(nb, "image/png"), "the sparsity pattern was not plotted"
