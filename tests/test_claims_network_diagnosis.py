"""The diagnosis of wrong network claims over any layer (issue 14, item 4): every kind of mistake of
:mod:`jacobian_bp.claims.network_mistakes` with a true claim (it holds, nothing is diagnosed) and a wrong one (the
kind is named first, verified on fresh instances), on networks other than those of the table tests -- and wrong
claims that no candidate explains keep "no known mistake fits" (never a misleading diagnosis).

Oracles: the closed forms written here (Ba et al. 2016, He et al. 2016, Vaswani et al. 2017, Werbos 1990,
Dumoulin & Visin 2016, CS231n); a correct one must hold against the engine's truth, whose targets are checked
against PyTorch autograd in tests/test_judge_layer_quantities.py and tests/test_judge_conv_channels.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from jacobian_bp.claims import FAILS, HOLDS, ILL_TYPED, NO_KNOWN_MISTAKE, Claim, Mistake, Setting, check

M = Mistake

RES = Setting(None, network=[{"type": "dense", "out_features": 3}, {"type": "sigmoid"},
                             {"type": "residual", "body": [{"type": "dense", "out_features": 5}, {"type": "tanh"},
                                                          {"type": "dense", "out_features": 3}]},
                             {"type": "dense", "out_features": 2}], input_shape=4)
DT = Setting(None, network=[{"type": "dense", "out_features": 4}, {"type": "tanh"}, {"type": "dense", "out_features": 3},
                            {"type": "tanh"}, {"type": "dense", "out_features": 2}], input_shape=3)
LN = Setting(None, network=[{"type": "dense", "out_features": 4}, {"type": "layer_norm"},
                            {"type": "dense", "out_features": 2}], input_shape=3, batch=3)
ATT = Setting(None, network=[{"type": "self_attention", "heads": 1}, {"type": "flatten"},
                             {"type": "dense", "out_features": 2}], input_shape=(4, 3))
RNN = Setting(None, network=[{"type": "rnn", "hidden_size": 4}, {"type": "dense", "out_features": 2}], input_shape=(5, 3))
CONV = Setting(None, network=[{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 2, "stride": 2,
                               "padding": 2, "dilation": 2}, {"type": "tanh"}, {"type": "flatten"},
                              {"type": "dense", "out_features": 2}], input_shape=(1, 7, 6), batch=2)
AVG = Setting(None, network=[{"type": "conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 2},
                             {"type": "avgpool2d", "kernel_size": 2, "stride": 1}, {"type": "flatten"},
                             {"type": "dense", "out_features": 2}], input_shape=(1, 5, 5))
MAX = Setting(None, network=[{"type": "conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 2},
                             {"type": "maxpool2d", "kernel_size": 2, "stride": 1}, {"type": "flatten"},
                             {"type": "dense", "out_features": 2}], input_shape=(1, 5, 5))
AVGP = Setting(None, network=[{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 2},
                              {"type": "avgpool2d", "kernel_size": 3, "stride": 1, "padding": 1}, {"type": "flatten"},
                              {"type": "dense", "out_features": 2}], input_shape=(1, 5, 6))
TIES = Setting(None, network=[{"type": "conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 1, "bias": "none"},
                              {"type": "maxpool2d", "kernel_size": 2, "stride": 1}, {"type": "flatten"},
                              {"type": "dense", "out_features": 2}], input_shape=(1, 3, 3),
               points=[{"x": [[[1.0, 1.0, 0.0], [1.0, 0.0, 2.0], [2.0, 2.0, -1.0]]], "K1": [[[[1.0]]]], "label": "ties"}])
KINK = Setting(None, hidden="relu", widths=((3, 4, 2),), relu_at_zero=1, at_kink=2)


# ----------------------------------------------------------------------------- closed forms
def res_body(q, l):
    """He et al. 2016: J_body = W₂ diag(1 − tanh²(W₁x + b₁)) W₁."""
    u = q.W_1[l] @ q.inp[l] + q.b_1[l]
    return q.W_2[l] @ q.diag(1 - q.np.tanh(u) ** 2) @ q.W_1[l]


def ln_jac(q, l, proj=True, gamma=True):
    n, xh = q.n[l], q.xhat[l]
    P = q.I(n) - q.ones(n, n) / n - (xh @ xh.T / n if proj else 0.0)
    return (q.diag(q.gamma[l] / q.std[l]) if gamma else q.I(n) / q.std[l]) @ P


def bptt(q, l, last_only=False, shift=0):
    """Werbos 1990: ∂ℓ/∂W_hh = Σ_t δ_t h_{t−1}ᵀ (one sample), δ_T = (1 − h_T²) ⊙ g, δ_{t−1} = (1 − h_{t−1}²) ⊙ W_hhᵀ δ_t."""
    h, W = q.h[l], q.W_hh[l]
    T = h.shape[0] - 1
    d = (1 - h[T] ** 2)[:, None] * q.dout[l]
    G = q.zeros(*W.shape)
    for t in range(T, 0, -1):
        G = G + d @ h[t - 1 + shift][None, :]
        if last_only:
            break
        d = (1 - h[t - 1] ** 2)[:, None] * (W.T @ d)
    return G


def conv_dK(q, l, s, p, d, flip=False, pad=True):
    """Dumoulin-Visin: ∂ℓ/∂K[o, c, u, v] = Σ_n Σ_{i,j} dY[n, o, i, j] X̃[n, c, i s + u d, j s + v d]."""
    Xs, Gs = np.asarray(q.Inp[l]), np.asarray(q.dOut[l])
    O, C, kh, kw = q.K_[l].shape
    out = np.zeros((O, C, kh, kw))
    for n in range(Xs.shape[0]):
        X = np.pad(Xs[n], ((0, 0), (p, p), (p, p))) if pad else Xs[n]
        Ho, Wo = Gs.shape[2:]
        for u in range(kh):
            for v in range(kw):
                win = X[:, u * d: u * d + s * (Ho - 1) + 1: s, v * d: v * d + s * (Wo - 1) + 1: s]
                if win.shape[1:] != (Ho, Wo):
                    raise ValueError("the kernel offset leaves the input")
                out[:, :, u, v] += np.einsum("oij,cij->oc", Gs[n], win)
    return out[:, :, ::-1, ::-1] if flip else out


def pool_back(q, l, how, k=2, s=1, p=0):
    """CS231n: max pooling routes each upstream entry to its window's maximum, average pooling spreads it as 1/k²
    (the zero padding counted, PyTorch's default) or (``how="count"``) over the window's real cells only."""
    Z = np.asarray(q.out[l])
    C, H, W = Z.shape
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    G = np.asarray(q.grad_a[l]).reshape(C, Ho, Wo)
    out = np.zeros_like(Z)
    for c in range(C):
        for i in range(Ho):
            for j in range(Wo):
                cells = [(i * s + u - p, j * s + v - p) for u in range(k) for v in range(k)
                         if 0 <= i * s + u - p < H and 0 <= j * s + v - p < W]
                if how == "max":
                    out[c][max(cells, key=lambda t: Z[c][t])] += G[c, i, j]
                else:
                    for t in cells:
                        out[c][t] += G[c, i, j] / (k * k if how == "avg" else len(cells))
    return out


def max_back_ties(q, l, share):
    """CS231n with overlapping windows (k = 2, s = 1): each upstream entry to its window's maximum -- the first in
    row-major order at a tie (PyTorch) or (``share``) split equally among the tied maxima."""
    Z = np.asarray(q.out[l])[0]
    H, W = Z.shape
    G = np.asarray(q.grad_a[l]).reshape(H - 1, W - 1)
    out = np.zeros((1, H, W))
    for i in range(H - 1):
        for j in range(W - 1):
            cells = [(i + u, j + v) for u in range(2) for v in range(2)]
            m = max(Z[c] for c in cells)
            best = [c for c in cells if Z[c] == m]
            for c in (best if share else best[:1]):
                out[0][c] += G[i, j] / (len(best) if share else 1)
    return out


def relu_delta(q, l, ge):
    return (q.W[l + 1].T @ q.delta[l + 1]) * ((q.z[l] >= 0) if ge else (q.z[l] > 0))


#: (id, true formula, wrong formula, target, setting, layers, target_offset, expected kind, text in its description)
CASES = [
    ("missing term I", lambda q, l: q.I(q.n[l]) + res_body(q, l), res_body, "J_z_a_prev", RES, [2], 0,
     M.MISSING_TERM, "+ I"),
    ("extra term I", lambda q, l: q.I(q.n[l]) + res_body(q, l), lambda q, l: 2 * q.I(q.n[l]) + res_body(q, l),
     "J_z_a_prev", RES, [2], 0, M.EXTRA_TERM, "− I"),
    ("missing term x̂x̂ᵀ/n", ln_jac, lambda q, l: ln_jac(q, l, proj=False), "J_z_a_prev", LN, [2], 0, M.MISSING_TERM,
     "xhat[l]xhat[l]ᵀ/n"),
    ("missing factor γ", ln_jac, lambda q, l: ln_jac(q, l, gamma=False), "J_z_a_prev", LN, [2], 0, M.MISSING_FACTOR,
     "gamma[l]"),
    ("missing factor σ′", lambda q, l: q.diag(1 - q.a[l] ** 2) @ q.W[l], lambda q, l: q.W[l], "J_a_a_prev", DT, [1, 2],
     0, M.MISSING_FACTOR, "σ′(z[l])"),
    ("missing factor x̂ (inside a sum)", lambda q, l: q.np.sum(q.dOut[l] * q.Xhat[l], axis=0)[:, None],
     lambda q, l: q.np.sum(q.dOut[l], axis=0)[:, None], "grad:gamma", LN, [2], 0, M.MISSING_FACTOR, "Xhat[l]"),
    ("one sample only", lambda q, l: q.np.sum(q.dOut[l], axis=0)[:, None], lambda q, l: q.dOut[l][0][:, None],
     "grad:beta", LN, [2], 0, M.REDUCTION, "one sample"),
    ("Pᵀ for P", lambda q, l: q.W_O[l].T @ q.dout[l].T @ q.P[l][0] @ q.inp[l],
     lambda q, l: q.W_O[l].T @ q.dout[l].T @ q.P[l][0].T @ q.inp[l], "grad:W_V", ATT, [1], 0, M.TRANSPOSE, "P[l]"),
    ("only the last step", bptt, lambda q, l: bptt(q, l, last_only=True), "grad:W_hh", RNN, [1], 0, M.LAST_STEP_ONLY,
     "last step"),
    ("h_t for h_{t−1}", bptt, lambda q, l: bptt(q, l, shift=1), "grad:W_hh", RNN, [1], 0, M.TIME_INDEX, "h_t used"),
    ("stride ignored", lambda q, l: conv_dK(q, l, 2, 2, 2), lambda q, l: conv_dK(q, l, 1, 2, 2), "grad:K", CONV, [1],
     0, M.STRIDE_IGNORED, "stride 1"),
    ("dilation ignored", lambda q, l: conv_dK(q, l, 2, 2, 2), lambda q, l: conv_dK(q, l, 2, 2, 1), "grad:K", CONV, [1],
     0, M.DILATION_IGNORED, "dilation 1"),
    ("padding forgotten", lambda q, l: conv_dK(q, l, 2, 2, 2), lambda q, l: conv_dK(q, l, 2, 2, 2, pad=False),
     "grad:K", CONV, [1], 0, M.PADDING_FORGOTTEN, "padding"),
    ("kernel flipped", lambda q, l: conv_dK(q, l, 2, 2, 2), lambda q, l: conv_dK(q, l, 2, 2, 2, flip=True), "grad:K",
     CONV, [1], 0, M.KERNEL_FLIP, "convolution"),
    ("pooling stride ignored", lambda q, l: pool_back(q, l, "avg"), lambda q, l: pool_back(q, l, "avg", s=2), "dout",
     AVG, [1], 0, M.STRIDE_IGNORED, "stride 2 (the window)"),
    ("max taken as average", lambda q, l: pool_back(q, l, "max"), lambda q, l: pool_back(q, l, "avg"), "dout", MAX,
     [1], 0, M.MAX_AS_AVERAGE, "average pooling"),
    ("average taken as max", lambda q, l: pool_back(q, l, "avg"), lambda q, l: pool_back(q, l, "max"), "dout", AVG,
     [1], 0, M.AVERAGE_AS_MAX, "max pooling"),
    ("real cells only", lambda q, l: pool_back(q, l, "avg", k=3, p=1), lambda q, l: pool_back(q, l, "count", k=3, p=1),
     "dout", AVGP, [1], 0, M.NORMALIZER, "real cells"),
    ("tie convention", lambda q, l: max_back_ties(q, l, False), lambda q, l: max_back_ties(q, l, True), "dout", TIES,
     [1], 0, M.TIE_CONVENTION, "tied maxima"),
    ("kink convention", lambda q, l: relu_delta(q, l, True), lambda q, l: relu_delta(q, l, False), "delta", KINK,
     "hidden", 0, M.KINK_CONVENTION, "ReLU′(0) = 0"),
]


@pytest.mark.parametrize("cid, right, wrong, target, setting, layers, offset, kind, text", CASES,
                         ids=[c[0] for c in CASES])
def test_each_kind_true_and_wrong(cid, right, wrong, target, setting, layers, offset, kind, text):
    r = check(Claim(cid + " (right)", right, target, setting, layers=layers, target_offset=offset))
    assert r.verdict == HOLDS and not r.diagnosis, r.summary()
    w = check(Claim(cid, wrong, target, setting, layers=layers, target_offset=offset))
    assert w.verdict in (FAILS, ILL_TYPED), w.summary()
    assert w.diagnosis, w.summary()
    first = w.diagnosis[0]
    assert first.mistake == kind and text in first.description, w.summary()
    assert first.verified > 0  # re-verified on fresh instances (other seeds)


# ----------------------------------------------------------------------------- never a misleading diagnosis
NONE = [
    ("x̂x̂ᵀ/n with a wrong weight", lambda q, l: ln_jac(q, l) - 0.3 * q.xhat[l] @ q.xhat[l].T / q.n[l], "J_z_a_prev",
     LN, [2]),
    ("residual body times 3", lambda q, l: q.I(q.n[l]) + 3 * res_body(q, l), "J_z_a_prev", RES, [2]),
    ("dK times 3", lambda q, l: 3 * conv_dK(q, l, 2, 2, 2), "grad:K", CONV, [1]),
    ("BPTT over the first step only", lambda q, l: bptt(q, l) - bptt(q, l, last_only=True), "grad:W_hh", RNN, [1]),
    ("a claim of 0", lambda q, l: 0 * q.dOut[l][0][:, None], "grad:beta", LN, [2]),
    ("real cells, and a factor 3", lambda q, l: 3 * pool_back(q, l, "count", k=3, p=1), "dout", AVGP, [1]),
    ("Pᵀ and a factor 3", lambda q, l: 3 * q.W_O[l].T @ q.dout[l].T @ q.P[l][0].T @ q.inp[l], "grad:W_V", ATT, [1]),
]


@pytest.mark.parametrize("cid, wrong, target, setting, layers", NONE, ids=[c[0] for c in NONE])
def test_no_known_mistake_when_nothing_verifies(cid, wrong, target, setting, layers):
    r = check(Claim(cid, wrong, target, setting, layers=layers))
    assert r.verdict == FAILS, r.summary()
    assert not r.diagnosis and r.diagnosis_note == NO_KNOWN_MISTAKE, r.summary()


def test_diagnoses_of_network_claims_are_verified_on_fresh_instances():
    """The fresh instances of a network setting exist (other seeds): a diagnosis is never named unverified."""
    from jacobian_bp.claims.diagnose import _fresh

    fresh = _fresh(LN)
    assert fresh and all(d.seed not in LN.seeds for d in fresh)


# ----------------------------------------------------------------------------- the previous helper's fixes
def test_latex_claim_of_another_shape_is_judged_not_crashed():
    """A claim whose shape differs from the truth's (the padding not cropped) is a failing claim, with channels or
    without; the candidates that need equal shapes are skipped (it used to raise ValueError)."""
    from jacobian_bp.claims import check_latex

    for shapes in ({"X": (4, 4), "K": (3, 3)}, {"X": (2, 4, 4), "K": (3, 2, 3, 3)}):
        v = check_latex(r"\frac{\partial L}{\partial X} = \operatorname{full}(G, \operatorname{rot180}(K))",
                        {"padding": 1}, shapes=shapes,
                        definitions={"L": r"\langle G, \operatorname{conv}(X, K) \rangle"})
        assert v.verdict == FAILS and "6×6" in v.reason, str(v)


def test_maxunpool_is_not_analytic_and_stated_correction_is_exported():
    import jacobian_bp.claims as C
    from jacobian_bp.claims.exact_eval import is_analytic
    from jacobian_bp.claims.formula_tree import Node, sym

    assert not is_analytic(Node("maxunpool", (sym("G"), sym("X"))))
    assert is_analytic(Node("add", (sym("G"), sym("X"))))
    assert "StatedCorrection" in C.__all__ and C.StatedCorrection is C.derivative.StatedCorrection
