"""Network claims over any registered layer (issue 14, item 2): layer normalization, batch normalization
(training), residual blocks, self-attention, the Elman RNN -- stated as closed forms from their papers and
textbooks, true and wrong, each judged with the truth computed by the engine.

Oracles: the closed forms of the claims (written here, independently of the Jacobian machinery: a correct one
must hold, a wrong one must fail) and, for the targets themselves, PyTorch autograd on networks written here
with torch's own functions and modules (``F.layer_norm``, ``nn.BatchNorm1d``, ``nn.RNN``, softmax attention).
"""
from __future__ import annotations

import numpy as np
import pytest

from jacobian_bp.claims import FAILS, HOLDS, ILL_TYPED, Claim, Mistake, Setting, build_instances, check, targets
from jacobian_bp.claims.targets import target_function
from jacobian_bp.errors import SpecError

LN = Setting(None, network=[{"type": "dense", "out_features": 5}, {"type": "tanh"}, {"type": "layer_norm"},
                            {"type": "dense", "out_features": 3}], input_shape=4, batch=3)
BN = Setting(None, network=[{"type": "dense", "out_features": 4}, {"type": "batch_norm"}, {"type": "tanh"},
                            {"type": "dense", "out_features": 2}], input_shape=3, batch=5)
RES = Setting(None, network=[{"type": "dense", "out_features": 4}, {"type": "tanh"},
                             {"type": "residual", "body": [{"type": "dense", "out_features": 4}, {"type": "tanh"},
                                                          {"type": "dense", "out_features": 4}]},
                             {"type": "dense", "out_features": 2}], input_shape=3)
ATT = Setting(None, network=[{"type": "self_attention", "heads": 1}, {"type": "flatten"},
                             {"type": "dense", "out_features": 3}], input_shape=(3, 4))
RNN = Setting(None, network=[{"type": "rnn", "hidden_size": 3}, {"type": "dense", "out_features": 2}], input_shape=(4, 2))


# ----------------------------------------------------------------------------- the closed forms
def ln_jacobian(q, l, xx=True, gamma=True):
    """Ba et al. (2016): J = diag(γ/σ)(I − 11ᵀ/n − x̂x̂ᵀ/n)."""
    n = q.n[l]
    xh = q.xhat[l]
    P = q.I(n) - q.ones(n, n) / n - (xh @ xh.T / n if xx else 0.0)
    return (q.diag(q.gamma[l] / q.std[l]) if gamma else q.I(n) / q.std[l]) @ P


def bn_dx(q, l, coupled=True):
    """Ioffe & Szegedy (2015), backward: dX = (γ/s) ⊙ (dY − mean_i dY − x̂ ⊙ mean_i(dY ⊙ x̂))."""
    dY, Xh, g, s = q.dOut[l], q.Xhat[l], q.gamma[l].T, q.s[l].T
    if not coupled:
        return g / s * dY
    return g / s * (dY - q.np.mean(dY, axis=0, keepdims=True) - Xh * q.np.mean(dY * Xh, axis=0, keepdims=True))


def residual_body(q, l):
    u = q.W_1[l] @ q.inp[l] + q.b_1[l]
    return q.W_2[l] @ q.diag(1 - q.np.tanh(u) ** 2) @ q.W_1[l]


def bptt_W_hh(q, l, last_only=False, h_shift=0):
    """Elman RNN, backpropagation through time: ∂ℓ/∂W_hh = Σ_t δ_t h_{t-1}ᵀ, δ_T = (1 − h_T²) ⊙ g,
    δ_{t-1} = (1 − h_{t-1}²) ⊙ (W_hhᵀ δ_t)."""
    h, W = q.h[l], q.W_hh[l]
    T = h.shape[0] - 1
    d = (1 - h[T] ** 2)[:, None] * q.dout[l]
    G = q.zeros(W.shape[0], W.shape[1])
    for t in range(T, 0, -1):
        G = G + d @ h[t - 1 + h_shift][None, :]
        if last_only:
            break
        d = (1 - h[t - 1] ** 2)[:, None] * (W.T @ d)
    return G


#: (name, source, formula, target, setting, layers, expected verdict, expected first diagnosis or None, target_offset)
CLAIMS = [
    ("LN input Jacobian", "Ba-Kiros-Hinton 2016", ln_jacobian, "J_z_a_prev", LN, [2], HOLDS, None, 0),
    ("LN Jacobian without x̂x̂ᵀ/n", "Ba-Kiros-Hinton 2016 (wrong)", lambda q, l: ln_jacobian(q, l, xx=False),
     "J_z_a_prev", LN, [2], FAILS, Mistake.MISSING_TERM, 0),
    ("LN Jacobian without γ", "Ba-Kiros-Hinton 2016 (wrong)", lambda q, l: ln_jacobian(q, l, gamma=False),
     "J_z_a_prev", LN, [2], FAILS, Mistake.MISSING_FACTOR, 0),
    ("LN dγ = Σ dY ⊙ x̂", "Ba-Kiros-Hinton 2016", lambda q, l: q.np.sum(q.dOut[l] * q.Xhat[l], axis=0)[:, None],
     "grad:gamma", LN, [2], HOLDS, None, 0),
    ("BN dγ = Σ δ ⊙ x̂", "Ioffe-Szegedy 2015 Alg. 1", lambda q, l: q.np.sum(q.dOut[l] * q.Xhat[l], axis=0)[:, None],
     "grad:gamma", BN, [2], HOLDS, None, 0),
    ("BN dβ = Σ δ", "Ioffe-Szegedy 2015 Alg. 1", lambda q, l: q.np.sum(q.dOut[l], axis=0)[:, None],
     "grad:beta", BN, [2], HOLDS, None, 0),
    ("BN dγ without x̂", "Ioffe-Szegedy (wrong)", lambda q, l: q.np.sum(q.dOut[l], axis=0)[:, None],
     "grad:gamma", BN, [2], FAILS, Mistake.MISSING_FACTOR, 0),
    ("BN dβ averaged", "Ioffe-Szegedy (wrong)", lambda q, l: q.np.mean(q.dOut[l], axis=0)[:, None],
     "grad:beta", BN, [2], FAILS, Mistake.REDUCTION, 0),
    ("BN dγ over the wrong axis", "Ioffe-Szegedy (wrong)", lambda q, l: q.np.sum(q.dOut[l] * q.Xhat[l], axis=1)[:, None],
     "grad:gamma", BN, [2], ILL_TYPED, Mistake.WRONG_AXIS, 0),
    ("BN input gradient", "Ioffe-Szegedy 2015 (backward)", bn_dx, "dA", BN, [2], HOLDS, None, -1),
    ("BN input gradient, batch coupling dropped", "Ioffe-Szegedy (wrong: eval-mode Jacobian)",
     lambda q, l: bn_dx(q, l, coupled=False), "dA", BN, [2], FAILS, Mistake.MISSING_TERM, -1),
    ("residual Jacobian I + J_body", "He et al. 2016", lambda q, l: q.I(q.n[l]) + residual_body(q, l),
     "J_z_a_prev", RES, [2], HOLDS, None, 0),
    ("residual Jacobian without I", "He et al. 2016 (wrong)", residual_body, "J_z_a_prev", RES, [2], FAILS, Mistake.MISSING_TERM, 0),
    ("attention dW_V = W_Oᵀ dYᵀ P X", "Vaswani et al. 2017 / FlashAttention Alg. 2",
     lambda q, l: q.W_O[l].T @ q.dout[l].T @ q.P[l][0] @ q.inp[l], "grad:W_V", ATT, [1], HOLDS, None, 0),
    ("attention dW_V with Pᵀ", "attention (wrong: dV = P dY)",
     lambda q, l: q.W_O[l].T @ q.dout[l].T @ q.P[l][0].T @ q.inp[l], "grad:W_V", ATT, [1], FAILS, Mistake.TRANSPOSE, 0),
    ("attention dW_V transposed", "attention (wrong)",
     lambda q, l: (q.W_O[l].T @ q.dout[l].T @ q.P[l][0] @ q.inp[l]).T, "grad:W_V", ATT, [1], FAILS, Mistake.TRANSPOSE, 0),
    ("attention dW_O = dYᵀ C", "Vaswani et al. 2017", lambda q, l: q.dout[l].T @ q.C[l], "grad:W_O", ATT, [1], HOLDS,
     None, 0),
    ("Elman RNN dW_hh by BPTT", "Werbos 1990 / Goodfellow et al. §10.2.2", bptt_W_hh, "grad:W_hh", RNN, [1], HOLDS,
     None, 0),
    ("RNN dW_hh, last step only", "BPTT (wrong: truncated to one step)", lambda q, l: bptt_W_hh(q, l, last_only=True),
     "grad:W_hh", RNN, [1], FAILS, Mistake.LAST_STEP_ONLY, 0),
    ("RNN dW_hh with h_t for h_{t-1}", "BPTT (wrong: index slip)", lambda q, l: bptt_W_hh(q, l, h_shift=1),
     "grad:W_hh", RNN, [1], FAILS, Mistake.TIME_INDEX, 0),
]


@pytest.mark.parametrize("name, source, formula, target, setting, layers, verdict, mistake, offset", CLAIMS,
                         ids=[c[0] for c in CLAIMS])
def test_layer_claims_are_judged_right(name, source, formula, target, setting, layers, verdict, mistake, offset):
    r = check(Claim(name, formula, target, setting, layers=layers, target_offset=offset))
    assert r.verdict == verdict, r.summary()
    if verdict != HOLDS:  # every wrong claim of the table gets its named, verified diagnosis (issue 14)
        assert mistake is not None and r.diagnosis and r.diagnosis[0].mistake == mistake, r.summary()
        assert r.diagnosis[0].verified > 0 and not r.diagnosis_note
    if verdict == HOLDS:
        assert r.max_error < 1e-10 and not r.diagnosis


def test_the_table_of_claims():
    """Every claim above, true and wrong: all verdicts right (the table of the report)."""
    rows = []
    for name, source, formula, target, setting, layers, verdict, mistake, offset in CLAIMS:
        r = check(Claim(name, formula, target, setting, layers=layers, target_offset=offset))
        diag = r.diagnosis[0].mistake.value if r.diagnosis else (r.diagnosis_note or "—")
        rows.append((name, source, r.verdict, diag, r.verdict == verdict))
    assert all(ok for *_, ok in rows), [r for r in rows if not r[-1]]
    assert sum(r[2] == HOLDS for r in rows) >= 9 and sum(r[2] != HOLDS for r in rows) >= 10


# ----------------------------------------------------------------------------- the targets against PyTorch
torch = pytest.importorskip("torch")
F = torch.nn.functional


def _t(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=float), dtype=torch.float64, requires_grad=grad)


def _mse_sum(out, Y):
    return ((out - _t(Y)) ** 2).sum()  # the neutral knobs: ‖ŷ − y‖², summed over the batch


def test_layer_norm_targets_against_torch():
    d = build_instances(LN)[0]
    p = {k: _t(v, True) for k, v in d.params.items()}
    X = _t(d.Xb)
    h = torch.tanh(X @ p["W1"].T + p["b1"])
    z2 = F.layer_norm(h, (5,), p["gamma2"], p["beta2"], eps=1e-5)
    loss = _mse_sum(z2 @ p["W3"].T + p["b3"], d.Yb)
    loss.backward()
    assert np.allclose(target_function("grad:gamma")(d, 2).ravel(), p["gamma2"].grad.numpy(), atol=1e-10)
    assert np.allclose(target_function("grad:beta")(d, 2).ravel(), p["beta2"].grad.numpy(), atol=1e-10)
    J = torch.autograd.functional.jacobian(lambda a: F.layer_norm(a, (5,), p["gamma2"].detach(), p["beta2"].detach(),
                                                                  eps=1e-5), h[0].detach())
    assert np.allclose(target_function("J_z_a_prev")(d, 2), J.numpy(), atol=1e-10)
    JG = torch.autograd.functional.jacobian(lambda g: F.layer_norm(h[0].detach(), (5,), g, p["beta2"].detach(), eps=1e-5),
                                            p["gamma2"].detach())
    assert np.allclose(target_function("J_local:gamma")(d, 2), JG.numpy(), atol=1e-10)


def test_batch_norm_training_targets_against_torch():
    d = build_instances(BN)[0]
    p = {k: _t(v, True) for k, v in d.params.items()}
    X = _t(d.Xb)
    bn = torch.nn.BatchNorm1d(4, eps=1e-5, dtype=torch.float64).train()
    with torch.no_grad():
        bn.weight.copy_(p["gamma2"])
        bn.bias.copy_(p["beta2"])
    z1 = X @ p["W1"].T + p["b1"]
    z1.retain_grad()
    out = torch.tanh(bn(z1)) @ p["W3"].T + p["b3"]
    _mse_sum(out, d.Yb).backward()
    assert np.allclose(target_function("grad:gamma")(d, 2).ravel(), bn.weight.grad.numpy(), atol=1e-10)
    assert np.allclose(target_function("grad:beta")(d, 2).ravel(), bn.bias.grad.numpy(), atol=1e-10)
    assert np.allclose(target_function("dA")(d, 1), z1.grad.numpy(), atol=1e-10)


def test_attention_and_rnn_targets_against_torch():
    d = build_instances(ATT)[0]
    p = {k: _t(v, True) for k, v in d.params.items()}
    X = _t(d.Xb[0])  # (T, d), one sample
    Q, K, V = (X @ p[f"W_{c}1"].T + p[f"b_{c}1"] for c in "QKV")
    P = torch.softmax(Q @ K.T / np.sqrt(4.0), dim=-1)
    Y = P @ V @ p["W_O1"].T + p["b_O1"]
    _mse_sum(Y.reshape(-1) @ p["W2"].T + p["b2"], d.Yb[0]).backward()
    for name in ("W_V", "W_O", "W_Q", "b_V"):
        assert np.allclose(target_function(f"grad:{name}")(d, 1), np.atleast_2d(p[f"{name}1"].grad.numpy().T).T
                           if name.startswith("b") else p[f"{name}1"].grad.numpy(), atol=1e-10), name

    d = build_instances(RNN)[0]
    rnn = torch.nn.RNN(2, 3, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(_t(d.params["W_ih1"]))
        rnn.weight_hh_l0.copy_(_t(d.params["W_hh1"]))
        rnn.bias_ih_l0.copy_(_t(d.params["b1"]))
        rnn.bias_hh_l0.zero_()
    _, hT = rnn(_t(d.Xb))
    out = hT[0] @ _t(d.params["W2"]).T + _t(d.params["b2"])
    _mse_sum(out, d.Yb).backward()
    assert np.allclose(target_function("grad:W_hh")(d, 1), rnn.weight_hh_l0.grad.numpy(), atol=1e-10)
    assert np.allclose(target_function("grad:W_ih")(d, 1), rnn.weight_ih_l0.grad.numpy(), atol=1e-10)


# ----------------------------------------------------------------------------- the vocabulary
def test_new_targets_are_listed_and_validated():
    names = [t.name for t in targets()]
    for n in ("grad:<p>", "param:<p>", "J_local:<p>", "J_theta_l:<p>", "J_a_a_prev", "dinp", "dout"):
        assert n in names
    with pytest.raises(SpecError, match="unknown target"):
        Claim("x", lambda q, l: 0, "grad:", LN)
    with pytest.raises(SpecError, match="unknown target"):
        Claim("x", lambda q, l: 0, "hess:gamma", LN)
    r = check(Claim("no such parameter", lambda q, l: q.gamma[l], "grad:delta", LN, layers=[2]))
    assert r.verdict == ILL_TYPED and "gamma, beta" in r.reason


def test_quantities_of_a_layer():
    d = build_instances(ATT)[0]
    from jacobian_bp.claims.quantities import Quantities, _Log

    q = Quantities(d, _Log())
    assert q.inp[1].shape == (3, 4) and q.out[1].shape == (3, 4) and q.P[1].shape == (1, 3, 3)
    assert q.W_Q[1].shape == (4, 4) and q.b_Q[1].shape == (4, 1)
    assert np.allclose(q.P[1][0].sum(axis=1), 1.0)
    assert q.Inp[1].shape == (1, 3, 4) and q.dOut[1].shape == (1, 3, 4)
    dr = build_instances(RES)[0]
    qr = Quantities(dr, _Log())
    assert np.array_equal(qr.param("W.1", 2), qr.W_1[2])
    with pytest.raises(Exception, match="no layer-indexed quantity|no parameter|W_9"):
        qr.param("W.9", 2)


@pytest.mark.parametrize("kw, match", [
    ({"network": [{"type": "nope"}], "input_shape": 3}, "unknown layer type"),
    ({"network": [{"type": "dense", "out_features": 2}]}, "input_shape"),
    ({"network": [], "input_shape": 3}, "non-empty list"),
    ({"network": [{"type": "dense", "out_features": 2}], "input_shape": "3"}, "input_shape"),
    ({"network": [{"type": "dense", "out_features": 2}, {"type": "batch_norm"}], "input_shape": 3}, "batch must be >= 2"),
    ({"network": {"input": 3, "layers": [{"type": "dense", "out_features": 2}], "loss": "mse"}}, "loss and the convention"),
    ({"input_shape": 3}, "without network"),
    ({"network": [{"type": "dense", "out_features": 2}], "input_shape": 3, "symbolic": (2, 2)}, "numeric"),
])
def test_network_setting_errors_are_one_line(kw, match):
    with pytest.raises(SpecError, match=match) as e:
        Setting(None, **kw)
    assert "\n" not in str(e.value)


def test_layer_objects_and_spec_dicts_are_accepted():
    from jacobian_bp.layers import Dense, Tanh

    s1 = Setting(None, network=[Dense(3), Tanh(), Dense(2)], input_shape=4)
    s2 = Setting(None, network={"input": 4, "layers": [{"type": "dense", "out_features": 3}, {"type": "tanh"},
                                                       {"type": "dense", "out_features": 2}]})
    f = lambda q, l: q.delta[l] @ q.inp[l].T  # noqa: E731 - ∂ℓ/∂W = δ aᵀ
    assert check(Claim("dense dW", f, "grad:W", s1, layers="all")).verdict == HOLDS
    assert check(Claim("dense dW", f, "grad_W", s2, layers="all")).verdict == HOLDS
    assert hash(s2) == hash(Setting(None, network={"input": 4, "layers": [{"type": "dense", "out_features": 3},
                                                                          {"type": "tanh"},
                                                                          {"type": "dense", "out_features": 2}]}))


# ----------------------------------------------------------------------------- LSTM: intermediates and torch
LSTM = Setting(None, network=[{"type": "lstm", "hidden_size": 2}, {"type": "dense", "out_features": 2}], input_shape=(3, 2))


@pytest.mark.parametrize("name, formula, verdict", [
    ("h_T = o_T ⊙ tanh(c_T)", lambda q, l: (q.o[l][-1] * q.np.tanh(q.c[l][-1]))[:, None], HOLDS),
    ("c_T = f_T ⊙ c_{T-1} + i_T ⊙ g_T, h_T = o_T ⊙ tanh(c_T)",
     lambda q, l: (q.o[l][-1] * q.np.tanh(q.f[l][-1] * q.c[l][-2] + q.i[l][-1] * q.g[l][-1]))[:, None], HOLDS),
    ("h_T = o_T ⊙ c_T (tanh forgotten)", lambda q, l: (q.o[l][-1] * q.c[l][-1])[:, None], FAILS),
], ids=["h", "c recursion", "tanh forgotten"])
def test_lstm_cell_claims(name, formula, verdict):
    """Hochreiter & Schmidhuber 1997 / Goodfellow et al. §10.10.1: the LSTM's last hidden state from its gates."""
    r = check(Claim(name, formula, "z", LSTM, layers=[1]))
    assert r.verdict == verdict, r.summary()


def test_lstm_targets_against_torch():
    d = build_instances(LSTM)[0]
    lstm = torch.nn.LSTM(2, 2, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for a, b in (("weight_ih_l0", "W_ih1"), ("weight_hh_l0", "W_hh1"), ("bias_ih_l0", "b_ih1"), ("bias_hh_l0", "b_hh1")):
            getattr(lstm, a).copy_(_t(d.params[b]))
    _, (hT, _) = lstm(_t(d.Xb))
    out = hT[0] @ _t(d.params["W2"]).T + _t(d.params["b2"])
    _mse_sum(out, d.Yb).backward()
    assert np.allclose(target_function("grad:W_hh")(d, 1), lstm.weight_hh_l0.grad.numpy(), atol=1e-10)
    assert np.allclose(target_function("grad:b_ih")(d, 1).ravel(), lstm.bias_ih_l0.grad.numpy(), atol=1e-10)
    params = {k: v.detach() for k, v in lstm.named_parameters()}

    def z_L(w):
        _, (h, _) = torch.func.functional_call(lstm, {**params, "weight_hh_l0": w}, (_t(d.Xb[:1]),))
        return (h[0] @ _t(d.params["W2"]).T + _t(d.params["b2"])).reshape(-1)

    J = torch.autograd.functional.jacobian(z_L, params["weight_hh_l0"])
    assert np.allclose(target_function("J_theta_l:W_hh")(d, 1), J.reshape(2, -1).numpy(), atol=1e-10)


def test_whole_layer_jacobian_and_dotted_names():
    """J_{a[l-1]} a[l] = diag(1 − a²) W for dense + tanh (the layer and its activation); a Transformer block's
    parameters are read by their dotted names (``gamma.ln1`` as ``q.gamma_ln1``)."""
    S = Setting(None, network=[{"type": "dense", "out_features": 4}, {"type": "tanh"},
                               {"type": "dense", "out_features": 3}, {"type": "tanh"},
                               {"type": "dense", "out_features": 2}], input_shape=3)
    f = lambda q, l: q.diag(1 - q.a[l] ** 2) @ q.W[l]  # noqa: E731
    assert check(Claim("J_{a[l-1]} a[l]", f, "J_a_a_prev", S, layers=[1, 2])).verdict == HOLDS
    r = check(Claim("J_{a[l-1]} a[l] without σ′", lambda q, l: q.W[l], "J_a_a_prev", S, layers=[1, 2]))
    assert r.verdict == FAILS
    T = Setting(None, network=[{"type": "transformer_block", "heads": 2, "mlp_hidden": 5}, {"type": "flatten"},
                               {"type": "dense", "out_features": 2}], input_shape=(3, 4))
    assert check(Claim("γ of LN1", lambda q, l: q.gamma_ln1[l], "param:gamma.ln1", T, layers=[1])).verdict == HOLDS
    assert check(Claim("γ of LN1 read as LN2", lambda q, l: q.param("gamma.ln2", l), "param:gamma.ln1", T,
                       layers=[1])).verdict == FAILS
    d = build_instances(T)[0]
    g = target_function("grad:W_Q.attn")(d, 1)
    name = next(e.name for e in d.net.entries if e.local == "W_Q.attn")
    fd = np.zeros_like(g)
    for idx in np.ndindex(*g.shape):  # float64 central differences of the loss
        for sign in (1, -1):
            P = {k: v.copy() for k, v in d.params.items()}
            P[name][idx] += sign * 1e-6
            fd[idx] += sign * d.net.loss_value(d.X, d.Y, P) / 2e-6
    assert np.allclose(g, fd, atol=1e-6)
