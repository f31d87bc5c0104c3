"""The "next steps" claims catalogue (issue #13, item 6): verdicts computed by the judge.

Oracles: the verdicts come from :func:`jacobian_bp.claims.judge.check` (complex step in float64);
independently, the functions being differentiated are compared with PyTorch's own modules
(F.batch_norm, F.layer_norm, F.scaled_dot_product_attention, nn.RNN, nn.LSTMCell, F.gelu), and the
true claims' formulas with torch autograd.
"""
from dataclasses import replace

import numpy as np
import pytest

from jacobian_bp.claims.judge import FAILS, HOLDS
from jacobian_bp.claims.mistakes import CHAIN_ORDER, KINDS, NORMALIZER, SOFTMAX_DIAG
from jacobian_bp.documents import next_steps as ns

#: the diagnosis of each failing claim and who names it ("judge": judge.py's callable path itself;
#: "verified correction": the claim's candidate correction, judged and holding); None: no single correction
EXPECTED_DIAGNOSIS = {
    "bn-dx-no-mean": (None, ""),
    "bn-dx-no-xhat": (None, ""),
    "bn-dx-unbiased": (NORMALIZER, "verified correction"),
    "ln-jac-no-outer": (None, ""),
    "attn-dQ-no-scale": (NORMALIZER, "judge"),
    "attn-dQ-diag-softmax": (SOFTMAX_DIAG, "verified correction"),
    "res-jac-no-identity": (None, ""),
    "rnn-bptt-reversed": (CHAIN_ORDER, "verified correction"),
    "lstm-dc-no-forget": (None, ""),
    "gelu-phi-only": (None, ""),
}


@pytest.fixture(scope="module")
def results():
    return ns.next_steps_results()


def test_ids_unique_and_both_verdicts_present():
    ids = [c.id for c in ns.CLAIMS]
    assert len(ids) == len(set(ids))
    assert {c.expected for c in ns.CLAIMS} == {HOLDS, FAILS}
    assert {c.id for c in ns.CLAIMS if c.expected == FAILS} == set(EXPECTED_DIAGNOSIS)


def test_every_verdict_is_the_expected_one(results):
    wrong = [(c.id, v.verdict, c.expected) for c, v in results if v.verdict != c.expected]
    assert not wrong, wrong
    for c, v in results:
        assert "complex step" in v.confidence, (c.id, v.confidence)


def test_failing_claims_have_counterexamples(results):
    for c, v in results:
        if v.verdict == FAILS:
            assert v.counterexample and v.reason.startswith("differs from the derivative"), (c.id, v)
        else:
            assert v.counterexample is None and v.diagnosis is None


def test_diagnoses(results):
    for c, v in results:
        if c.id not in EXPECTED_DIAGNOSIS:
            continue
        kind, by = EXPECTED_DIAGNOSIS[c.id]
        assert v.diagnosis == kind, (c.id, v.diagnosis)
        assert ns.diagnosed_by(v) == by, (c.id, ns.diagnosed_by(v))
        if kind is not None:
            assert kind in KINDS


def test_adapter_names_nothing_when_the_correction_does_not_hold():
    c = next(c for c in ns.CLAIMS if c.id == "attn-dQ-diag-softmax")
    bogus = replace(c, correction=(SOFTMAX_DIAG, "not a fix", ns._attn_dQ_no_scale))
    v = ns._judge(bogus)
    assert v.verdict == FAILS and v.diagnosis is None
    with pytest.raises(ValueError, match="mistakes.KINDS"):
        ns._judge(replace(c, correction=("made-up kind", "x", ns._attn_dQ)))


def test_report_table(results):
    text = ns.next_steps_report(results)
    lines = text.splitlines()
    assert lines[0].split(" | ")[0].strip() == "id" and len(lines) == len(results) + 2
    for c, v in results:
        row = next(line for line in lines if line.startswith(c.id + " "))
        assert c.source in row and v.verdict in row
    assert "EXPECTED" not in text
    assert "no single correction" in text and "[verified correction]" in text


# ============================================================================ independent: PyTorch


def _arrays(claim, seed=5):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s) for k, s in claim.shapes.items()}


def _claim(cid):
    return next(c for c in ns.CLAIMS if c.id == cid)


def test_functions_equal_torch_modules():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    a = _arrays(_claim("bn-dx"))
    y = F.batch_norm(t(a["X"]), None, None, t(a["gamma"][0]), t(a["beta"][0]), training=True, eps=ns.EPS)
    assert np.isclose(ns._bn_loss(**a), float((t(a["G"]) * y).sum()), rtol=1e-12)
    a = _arrays(_claim("ln-jac"))
    y = F.layer_norm(t(a["x"].T), (5,), t(a["gamma"][:, 0]), None, eps=ns.EPS)
    assert np.allclose(ns._ln(**a), y.numpy().T, atol=1e-12)
    a = _arrays(_claim("attn-dQ"))
    y = F.scaled_dot_product_attention(t(a["Q"]), t(a["K"]), t(a["V"]))
    assert np.isclose(ns._attn_loss(**a), float((t(a["G"]) * y).sum()), rtol=1e-12)
    a = _arrays(_claim("rnn-bptt"))
    rnn = torch.nn.RNN(2, 3, bias=False, nonlinearity="tanh").double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(t(a["U"]))
        rnn.weight_hh_l0.copy_(t(a["W"]))
        _, hT = rnn(t(a["X"].T[:, None, :]), t(a["h0"].T[None]))
    assert np.allclose(ns._rnn_hT(**a), hT.numpy()[0].T, atol=1e-12)
    a = _arrays(_claim("lstm-dc"))
    cell = torch.nn.LSTMCell(2, 3, bias=False).double()
    with torch.no_grad():
        cell.weight_hh.copy_(t(a["W"][:, :3]))
        cell.weight_ih.copy_(t(a["W"][:, 3:]))
        h, c = cell(t(a["x"].T), (t(a["h_prev"].T), t(a["c_prev"].T)))
    c_np, h_np, _, _ = ns._lstm_step(a["c_prev"], a["h_prev"], a["x"], a["W"])
    assert np.allclose(c_np, c.numpy().T, atol=1e-12) and np.allclose(h_np, h.numpy().T, atol=1e-12)
    x = np.linspace(-3, 3, 13)
    assert np.allclose(ns._gelu(x), F.gelu(t(x)).numpy(), atol=1e-12)


def test_true_formulas_equal_torch_autograd():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    a = _arrays(_claim("bn-dx"), seed=9)
    X = torch.tensor(a["X"], requires_grad=True)
    g = torch.tensor(a["gamma"][0], requires_grad=True)
    b = torch.tensor(a["beta"][0], requires_grad=True)
    (torch.tensor(a["G"]) * F.batch_norm(X, None, None, g, b, training=True, eps=ns.EPS)).sum().backward()
    assert np.allclose(ns._bn_dx(**a), X.grad.numpy(), atol=1e-10)
    assert np.allclose(ns._bn_dgamma(**a)[0], g.grad.numpy(), atol=1e-10)
    assert np.allclose(ns._bn_dbeta(**a)[0], b.grad.numpy(), atol=1e-10)
    assert not np.allclose(ns._bn_dx_unbiased(**a), X.grad.numpy(), atol=1e-6)
    a = _arrays(_claim("attn-dQ"), seed=9)
    Q, V = (torch.tensor(a[k], requires_grad=True) for k in ("Q", "V"))
    (torch.tensor(a["G"]) * F.scaled_dot_product_attention(Q, torch.tensor(a["K"]), V)).sum().backward()
    assert np.allclose(ns._attn_dQ(**a), Q.grad.numpy(), atol=1e-10)
    assert np.allclose(ns._attn_dV(**a), V.grad.numpy(), atol=1e-10)
    assert np.allclose(ns._attn_dQ_no_scale(**a), 2 * Q.grad.numpy(), atol=1e-10)  # d_k = 4
