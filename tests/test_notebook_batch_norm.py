"""notebooks/batch_norm_coupling.ipynb executes headless: the spy plots of the batch Jacobians and the torch check."""
from __future__ import annotations

import pytest

from conftest import execute_notebook, notebook_outputs


def test_batch_norm_notebook_executes():
    pytest.importorskip("matplotlib")
    nb = execute_notebook("batch_norm_coupling.ipynb", timeout=120)  # raises on any failing cell or assert
    text = "\n".join(notebook_outputs(nb))
    assert "couples samples: True | eval: False | layer norm: False" in text
    assert "batch norm, training mode    shape (18, 24), couples samples: True" in text
    assert "per_sample_gradients: refused" in text and "jacobian_theta(x): refused" in text
    assert "relative difference to torch autograd over the batch" in text or "torch is not installed" in text
    assert len(notebook_outputs(nb, "image/png")) >= 2, "the spy plots were not drawn"
