"""The "next steps" claims catalogue (issue #13, item 6): verdicts computed by the judge.

Oracles: the verdicts come from :func:`jacobian_bp.claims.judge.check` (complex step in float64);
independently, the functions being differentiated are compared with PyTorch's own modules
(F.batch_norm, F.layer_norm, F.scaled_dot_product_attention, nn.RNN, nn.LSTMCell, F.gelu), and the
true claims' formulas with torch autograd.
"""
from dataclasses import replace

import numpy as np
import pytest

from jacobian_bp.claims.derivative import StatedCorrection
from jacobian_bp.claims.judge import FAILS, HOLDS
from jacobian_bp.claims.mistakes import (CHAIN_ORDER, KINDS, MISSING_FACTOR, MISSING_TERM, NORMALIZER, SIGN,
                                         SOFTMAX_DIAG)
from jacobian_bp.documents import next_steps as ns
from jacobian_bp.errors import SpecError

#: the diagnosis of each failing claim, who names it ("judge": the judge's own numeric candidates;
#: "verified correction": a correction stated with the claim, verified by the judge), and a piece of
#: the description that identifies the named term / factor / constant
EXPECTED_DIAGNOSIS = {
    "bn-dx-no-mean": (MISSING_TERM, "verified correction", "mean term"),
    "bn-dx-no-xhat": (MISSING_TERM, "verified correction", "variance term"),
    "bn-dx-unbiased": (NORMALIZER, "verified correction", "biased variance"),
    "ln-jac-no-outer": (MISSING_TERM, "verified correction", "x̂x̂ᵀ/n"),
    "ln-jac-sign": (SIGN, "judge", "the opposite sign of the term 'variance'"),
    "attn-dQ-no-scale": (NORMALIZER, "judge", "off by a factor 1/√d_k: the derivative is 1/√d_k times the claim"),
    "attn-dQ-diag-softmax": (SOFTMAX_DIAG, "verified correction", "diag(p) − ppᵀ"),
    "res-jac-no-identity": (MISSING_TERM, "judge", "identity I"),
    "rnn-bptt-reversed": (CHAIN_ORDER, "verified correction", "backward order"),
    "lstm-dc-no-forget": (MISSING_FACTOR, "verified correction", "forget gate"),
    "lstm-seq-dc0-no-forget": (MISSING_FACTOR, "verified correction", "forget gate"),
    "lstm-seq-dh0-no-forget": (MISSING_FACTOR, "verified correction", "forget gate"),
    "gelu-phi-only": (MISSING_TERM, "verified correction", "x φ(x)"),
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
        kind, by, what = EXPECTED_DIAGNOSIS[c.id]
        assert v.diagnosis == kind, (c.id, v.diagnosis)
        assert ns.diagnosed_by(v) == by, (c.id, ns.diagnosed_by(v))
        assert kind in KINDS and what in v.description, (c.id, v.description)
        assert "do not tell" not in v.description, (c.id, v.description)  # the sizes identify the constant
        assert v.corrected and "verified on fresh instances" in v.confidence, (c.id, v.corrected)
        assert "entry" in v.counterexample and "the derivative is" in v.counterexample, (c.id, v.counterexample)


def test_corrected_latex_composed_from_the_claim(results):
    by_id = {c.id: v for c, v in results}
    assert by_id["attn-dQ-no-scale"].corrected.startswith(r"\frac{1}{\sqrt{d_k}}")
    assert by_id["gelu-phi-only"].corrected == r"\Phi(x) + x\varphi(x)"
    assert by_id["res-jac-no-identity"].corrected.endswith("+ I")
    assert r"-\frac{\gamma}{\sigma}\,\bar g" in by_id["bn-dx-no-mean"].corrected


def test_the_multi_step_lstm_claims_span_at_least_three_steps():
    for cid in ("lstm-seq-dc0", "lstm-seq-dh0", "lstm-seq-dc0-no-forget", "lstm-seq-dh0-no-forget"):
        assert _claim(cid).shapes["X"][1] >= 3


def test_a_stated_correction_that_does_not_hold_names_nothing():
    c = _claim("bn-dx-no-mean")
    # the variance term is not what this claim dropped; stated alone, it must not be named
    only_wrong = replace(c, corrections=(c.corrections[1],))
    v = ns._judge(only_wrong)
    assert v.verdict == FAILS and v.diagnosis is None and v.corrected is None
    # a correction that is itself wrong (the claim's own value as the "formula") is not named either
    bogus = replace(c, corrections=(StatedCorrection("not a fix", formula=ns._bn_dx_no_mean, kind=SOFTMAX_DIAG),))
    assert ns._judge(bogus).diagnosis is None
    with pytest.raises(SpecError, match="mistakes.KINDS"):
        ns._judge(replace(c, corrections=(StatedCorrection("x", formula=ns._bn_dx, kind="made-up kind"),)))


def test_the_judges_own_candidates_need_no_stated_correction():
    # without their stated corrections these claims are not diagnosed (the terms are not guessable) ...
    for cid in ("bn-dx-no-mean", "gelu-phi-only", "lstm-dc-no-forget"):
        assert ns._judge(replace(_claim(cid), corrections=())).diagnosis is None, cid
    # ... while the constant factor and the identity are found by the judge itself
    assert ns._judge(_claim("attn-dQ-no-scale")).diagnosis == NORMALIZER
    assert ns._judge(_claim("res-jac-no-identity")).diagnosis == MISSING_TERM


def test_report_table(results):
    text = ns.next_steps_report(results)
    lines = text.splitlines()
    assert lines[0].split(" | ")[0].strip() == "id" and len(lines) == len(results) + 2
    for c, v in results:
        row = next(line for line in lines if line.startswith(c.id + " "))
        assert c.source in row and v.verdict in row
    assert "EXPECTED" not in text
    assert "no single correction" not in text and "[verified correction]" in text


# ============================================================================ independent: PyTorch


def _arrays(claim, seed=5):
    return claim.arrays(seed)


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


def test_lstm_sequence_claims_against_torch_autograd():
    """The T = 4 LSTM (torch.nn.LSTM, gate order i, f, g, o) and torch's gradients w.r.t. c₀ and h₀."""
    torch = pytest.importorskip("torch")
    a = _arrays(_claim("lstm-seq-dc0"), seed=11)
    lstm = torch.nn.LSTM(2, 3, bias=False).double()
    with torch.no_grad():
        lstm.weight_hh_l0.copy_(torch.tensor(a["W"][:, :3]))
        lstm.weight_ih_l0.copy_(torch.tensor(a["W"][:, 3:]))
    h0 = torch.tensor(a["h0"].T[None], requires_grad=True)
    c0 = torch.tensor(a["c0"].T[None], requires_grad=True)
    _, (hT, cT) = lstm(torch.tensor(a["X"].T[:, None, :]), (h0, c0))
    loss = (torch.tensor(a["Gc"].T[None]) * cT).sum() + (torch.tensor(a["Gh"].T[None]) * hT).sum()
    loss.backward()
    assert np.isclose(ns._lstm_seq_loss(**a), float(loss.detach()), rtol=1e-12)
    assert np.allclose(ns._lstm_bptt(**a), c0.grad.numpy()[0].T, atol=1e-12)
    assert np.allclose(ns._lstm_bptt(**a, wrt="h"), h0.grad.numpy()[0].T, atol=1e-12)
    assert not np.allclose(ns._lstm_bptt(**a, forget=False), c0.grad.numpy()[0].T, atol=1e-6)
    assert not np.allclose(ns._lstm_bptt(**a, wrt="h", forget=False), h0.grad.numpy()[0].T, atol=1e-6)


def test_stated_terms_against_torch_autograd():
    """The terms the BatchNorm and GELU corrections restore are exactly what the slips lack (torch's gradient)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    a = _arrays(_claim("bn-dx"), seed=3)
    X = torch.tensor(a["X"], requires_grad=True)
    (torch.tensor(a["G"]) * F.batch_norm(X, None, None, torch.tensor(a["gamma"][0]), torch.tensor(a["beta"][0]),
                                         training=True, eps=ns.EPS)).sum().backward()
    g = X.grad.numpy()
    assert np.allclose(ns._bn_dx_no_mean(**a) + ns._bn_mean_term(**a), g, atol=1e-10)
    assert np.allclose(ns._bn_dx_no_xhat(**a) + ns._bn_xhat_term(**a), g, atol=1e-10)
    x = torch.linspace(-3, 3, 13, dtype=torch.float64, requires_grad=True)
    F.gelu(x).sum().backward()
    xs = x.detach().numpy()
    assert np.allclose(ns._Phi(xs) + xs * ns._phi(xs), x.grad.numpy(), atol=1e-12)
    assert not np.allclose(ns._Phi(xs), x.grad.numpy(), atol=1e-6)
