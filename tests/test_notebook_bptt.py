"""notebooks/backprop_through_time.ipynb executes headless, plots the vanishing gradient and checks its numbers."""
from __future__ import annotations

import re

from conftest import execute_notebook, notebook_outputs


def _floats(line: str) -> list[float]:
    return [float(v) for v in re.findall(r"[-+]?\d+\.\d+e[-+]\d+", line)]


def test_bptt_notebook_executes_and_shows_vanishing_gradients():
    nb = execute_notebook("backprop_through_time.ipynb")
    assert len(notebook_outputs(nb, "image/png")) == 2  # the two plots
    text = "\n".join(notebook_outputs(nb))
    lines = {name: _floats(next(ln for ln in text.splitlines() if ln.startswith(name) and "T-s" in ln))
             for name in ("tanh RNN", "LSTM (torch init)", "LSTM (forget bias +1)")}
    # ||J_{s_s} h_T|| at T - s = 10, 30, 59: decaying, and far faster for the tanh RNN than for the gated LSTM
    for vals in lines.values():
        assert vals[0] > vals[1] > vals[2] > 0
    assert lines["tanh RNN"][2] < 1e-6 * lines["LSTM (forget bias +1)"][2]
    assert lines["tanh RNN"][2] < lines["LSTM (torch init)"][2] < lines["LSTM (forget bias +1)"][2]
    # the product of the explicit factors agrees with central differences of the forward pass
    prod_, fd = _floats(next(ln for ln in text.splitlines() if "central differences" in ln))
    assert abs(prod_ - fd) <= 1e-6 * abs(fd)
    # the per-step contributions to the gradient of W_hh sum to the batched BPTT gradient
    errs = [_floats(ln)[0] for ln in text.splitlines() if "sum of the 60 contributions" in ln]
    assert len(errs) == 2 and max(errs) <= 1e-12
