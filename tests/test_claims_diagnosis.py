"""The diagnosis taxonomy on 33 wrong network-quantity claims: each must be named with the right mistake.

Every claim below is a subtly wrong variant of a correct formula (the correct formula is checked
first, against the engine's truth: an independent baseline); the checker must report the claim as
not holding and name the expected kind of mistake *first* (the corrected formula it names is
verified on fresh instances by the checker itself).  :data:`CASES` is also the measurement set of
the issue (how many wrong formulas get the right named diagnosis).
"""
from __future__ import annotations

import numpy as np
import pytest

from jacobian_bp.claims import HOLDS, NO_KNOWN_MISTAKE, Claim, Setting, check

# unequal widths (a missing transpose is a shape error) and equal widths (it is a value error)
_W = ((3, 4, 2), (2, 3, 4, 2))
_SQ = ((3, 3, 3), (3, 3, 3, 3))
_WK = ((3, 4, 3), (2, 3, 4, 2))  # two output widths K: a factor 1/K is not a constant
G = Setting("ganev", hidden="tanh", output="sigmoid", loss="mse", widths=_W, seeds=(0,))
GI = Setting("ganev", hidden="tanh", output="identity", loss="mse", widths=_W, seeds=(0,))
GS = Setting("ganev", hidden="sigmoid", output="identity", loss="mse", widths=_W, seeds=(0,))
GB = Setting("ganev", hidden="tanh", output="identity", loss="mse", widths=_WK, seeds=(0, 1), batch=(3, 4))
GSQ = Setting("ganev", hidden="tanh", output="sigmoid", loss="mse", widths=_SQ, seeds=(0,))
PB = Setting("park", hidden="tanh", output="sigmoid", loss="bce", widths=_W, seeds=(0, 1), batch=(3, 4))
PT = Setting("pytorch", hidden="tanh", output="identity", loss="mse", widths=_WK, seeds=(0, 1), batch=(3, 4))
D2 = Setting("ganev", hidden="tanh", output="sigmoid", loss="mse", widths=((3, 4, 2), (2, 5, 3)), seeds=(0,))


def _chain_wrong(q, l):
    """J_{z[l]} z[L] as the product W_{l+1} Jac_l W_{l+2} Jac_{l+1} … (chain multiplied in the wrong order)."""
    P = q.I(q.n[l])
    for k in range(l + 1, q.L + 1):
        P = P @ (q.W[k] @ q.Jac(k - 1, q.z[k - 1]))
    return P


def _chain_right(q, l):
    P = q.I(q.n[l])
    for k in range(l + 1, q.L + 1):
        P = (q.W[k] @ q.Jac(k - 1, q.z[k - 1])) @ P
    return P


D = "derivative at the activation instead of the pre-activation"
TWICE = "σ′ counted twice"
OTHER = "another activation's derivative"
ORDER = "chain rule in the wrong order"
SYM = "symmetry assumed"
NORM = "wrong normalizer"
ARG = "sign inside the argument"

#: (id, correct formula, wrong formula, target, setting, claim keywords, expected mistake (its value), text in it)
CASES = [
    ("fprime-at-a", lambda q, l: q.dsigma(l, q.z[l]) * (q.W[l + 1].T @ q.delta[l + 1]),
     lambda q, l: q.dsigma(l, q.a[l]) * (q.W[l + 1].T @ q.delta[l + 1]), "delta", G, {"layers": "hidden"}, D, "a[l]"),
    ("fprime-at-A-batch", lambda q, l: q.dsigma(l, q.Z[l]) * (q.dZ[l + 1] @ q.W[l + 1]),
     lambda q, l: q.dsigma(l, q.A[l]) * (q.dZ[l + 1] @ q.W[l + 1]), "dZ", GB, {"layers": "hidden"}, D, "A[l]"),
    ("jac-at-a", lambda q, l: q.Jac(l, q.z[l]).T @ q.grad_a[l],
     lambda q, l: q.Jac(l, q.a[l]).T @ q.grad_a[l], "delta", G, {}, D, "a[l]"),
    ("twice-grad-b", lambda q, l: q.delta[l], lambda q, l: q.dsigma(l, q.z[l]) * q.delta[l], "grad_b", G, {}, TWICE, ""),
    ("twice-delta", lambda q, l: q.dsigma(l, q.z[l]) * (q.W[l + 1].T @ q.delta[l + 1]),
     lambda q, l: q.dsigma(l, q.z[l]) * q.dsigma(l, q.z[l]) * (q.W[l + 1].T @ q.delta[l + 1]), "delta", G,
     {"layers": "hidden"}, TWICE, ""),
    ("twice-fprime", lambda q, l: q.delta[l] @ q.a[l - 1].T, lambda q, l: (q.fprime[l] * q.delta[l]) @ q.a[l - 1].T,
     "grad_W", G, {}, TWICE, "fprime"),
    ("sigmoid-deriv-for-tanh", lambda q, l: (1 - q.a[l] ** 2) * (q.W[l + 1].T @ q.delta[l + 1]),
     lambda q, l: q.a[l] * (1 - q.a[l]) * (q.W[l + 1].T @ q.delta[l + 1]), "delta", G, {"layers": "hidden"}, OTHER,
     "sigmoid"),
    ("tanh-deriv-for-sigmoid", lambda q, l: q.a[l] * (1 - q.a[l]) * (q.W[l + 1].T @ q.delta[l + 1]),
     lambda q, l: (1 - q.a[l] ** 2) * (q.W[l + 1].T @ q.delta[l + 1]), "delta", GS, {"layers": "hidden"}, OTHER, "tanh"),
    ("relu-deriv-for-tanh", lambda q, l: (1 - q.a[l] ** 2) * (q.W[l + 1].T @ q.delta[l + 1]),
     lambda q, l: (q.z[l] > 0) * (q.W[l + 1].T @ q.delta[l + 1]), "delta", G, {"layers": "hidden"}, OTHER, "relu"),
    ("order-two-factors", lambda q, l: q.Jac(l - 1, q.z[l - 1]).T @ q.W[l].T @ q.delta[l],
     lambda q, l: q.W[l].T @ q.Jac(l - 1, q.z[l - 1]).T @ q.delta[l], "delta", G,
     {"layers": "from2", "target_offset": -1}, ORDER, ""),
    ("order-loop", _chain_right, _chain_wrong, "J_zL_zl", Setting("ganev", hidden="tanh", output="sigmoid", loss="mse",
     widths=((2, 3, 4, 2), (3, 2, 4, 5, 2)), seeds=(0,)), {"layers": "hidden"}, ORDER, ""),
    ("order-jacobian-pair", lambda q, l: q.W[l + 1] @ q.Jac(l, q.z[l]),
     lambda q, l: q.Jac(l, q.z[l]) @ q.W[l + 1], "J_zL_zl", D2, {"layers": "hidden"}, ORDER, ""),
    ("symmetric-W", lambda q, l: q.Jac(l, q.z[l]).T @ (q.W[l + 1].T @ q.delta[l + 1]),
     lambda q, l: q.Jac(l, q.z[l]).T @ (q.W[l + 1] @ q.delta[l + 1]), "delta", GSQ, {"layers": "hidden"}, SYM, "W[l+1]"),
    ("symmetric-grad-a", lambda q, l: q.W[l].T @ q.delta[l], lambda q, l: q.W[l] @ q.delta[l], "grad_a", GSQ,
     {"target_offset": -1}, SYM, "W[l]"),
    ("normalizer-1/K", lambda q, l: 2 * (q.Yhat - q.Y), lambda q, l: 2 * (q.Yhat - q.Y) / q.n[q.L], "dZ", GB,
     {"layers": "last"}, NORM, "K"),
    ("normalizer-1/NK", lambda q, l: 2 * (q.Yhat - q.Y), lambda q, l: 2 * (q.Yhat - q.Y) / (q.N * q.n[q.L]), "dZ", GB,
     {"layers": "last"}, NORM, "K"),
    ("normalizer-missing-1/K", lambda q, l: 2 * (q.Yhat - q.Y) / (q.N * q.n[q.L]),
     lambda q, l: 2 * (q.Yhat - q.Y) / q.N, "dZ", PT, {"layers": "last"}, NORM, "K"),
    ("sigma-of-minus-z", lambda q: q.sigma(q.L, q.z[q.L]), lambda q: q.sigma(q.L, -q.z[q.L]), "yhat", G,
     {"layers": "none"}, ARG, "z[L]"),
    ("delta-sigma-minus-z", lambda q, l: 2 * (q.sigma(l, q.z[l]) - q.y) * q.fprime[l],
     lambda q, l: 2 * (q.sigma(l, -q.z[l]) - q.y) * q.fprime[l], "delta", G, {"layers": "last"}, ARG, "z"),
    ("explicit-sigmoid-sign", lambda q: 1 / (1 + np.exp(-q.z[q.L])), lambda q: 1 / (1 + np.exp(q.z[q.L])), "yhat", G,
     {"layers": "none"}, ARG, "z[L]"),
    # the kinds the checker named before (kept in the measurement set)
    ("sign", lambda q, l: q.delta[l], lambda q, l: -q.delta[l], "grad_b", G, {}, "sign flip", "−C"),
    ("transpose", lambda q, l: q.delta[l] @ q.a[l - 1].T, lambda q, l: q.a[l - 1] @ q.delta[l].T, "grad_W", G, {},
     "transpose", ""),
    ("index", lambda q, l: q.delta[l] @ q.a[l - 1].T, lambda q, l: q.delta[l] @ q.a[l].T, "grad_W", G, {},
     "layer index shifted", "a[l]"),
    ("factor-2", lambda q, l: 2 * (q.Yhat - q.Y), lambda q, l: q.Yhat - q.Y, "dZ", GB, {"layers": "last"},
     "missing or extra factor", "2"),
    ("reduction-park", lambda q, l: q.dZ[l] @ q.A[l - 1].T, lambda q, l: q.Delta[l] @ q.A[l - 1].T, "grad_W", PB, {},
     "reduction mismatch", "1/N"),
    ("output-activation", lambda q, l: q.Jac(l, q.z[l]), lambda q, l: q.Jac(q.L, q.z[l]), "J_act", G,
     {"layers": "hidden"}, "output activation used for a hidden layer", ""),
]


# a second set, written after the taxonomy was built (other conventions, losses and activations)
_PB = Setting("park", hidden="tanh", output="sigmoid", loss="bce", widths=_W, seeds=(0,), batch=(3,))
_DM = Setting("damadi", hidden="tanh", output="identity", loss="mse", widths=_W, seeds=(0,))
_SM = Setting("ganev", hidden="relu", output="softmax", loss="cross_entropy", widths=_WK, seeds=(0,))
_BC = Setting("ganev", hidden="tanh", output="sigmoid", loss="bce", widths=_W, seeds=(0,))
CASES += [
    ("park-dW-no-T", lambda q, l: q.dZ[l] @ q.A[l - 1].T, lambda q, l: q.dZ[l] @ q.A[l - 1], "grad_W", _PB, {},
     "transpose", "A[l-1]"),
    ("damadi-in-out", lambda q, l: q.a[l - 1] @ q.delta[l].T, lambda q, l: q.delta[l] @ q.a[l - 1].T, "grad_W", _DM,
     {}, "transpose", "Cᵀ"),
    ("softmax-ce-sign", lambda q, l: q.yhat - q.y, lambda q, l: q.y - q.yhat, "delta", _SM, {"layers": "last"},
     "sign flip", "−C"),
    ("sigmoid-fprime-at-a", lambda q, l: q.dsigma(l, q.z[l]) * (q.W[l + 1].T @ q.delta[l + 1]),
     lambda q, l: q.dsigma(l, q.a[l]) * (q.W[l + 1].T @ q.delta[l + 1]), "delta", GS, {"layers": "hidden"}, D, "a[l]"),
    ("bce-sigmoid-twice", lambda q, l: q.yhat - q.y, lambda q, l: (q.yhat - q.y) * q.dsigma(l, q.z[l]), "delta", _BC,
     {"layers": "last"}, TWICE, "dsigma"),
    ("relu-sign-argument", lambda q, l: (q.z[l] > 0) * (q.W[l + 1].T @ q.delta[l + 1]),
     lambda q, l: (q.z[l] < 0) * (q.W[l + 1].T @ q.delta[l + 1]), "delta", _SM, {"layers": "hidden"}, ARG, "z[l]"),
]


CASES += [
    ("bce-sigmoid-twice-by-hand", lambda q, l: q.yhat - q.y, lambda q, l: (q.yhat - q.y) * q.yhat * (1 - q.yhat),
     "delta", _BC, {"layers": "last"}, TWICE, "½‖ŷ − y‖²"),
]


def test_no_misleading_diagnosis_when_no_known_mistake_fits():
    """δ_L = 3.7 (ŷ − y) + ŷ ⊙ ŷ: no candidate correction reproduces it, so the checker says so instead of
    naming a wrong mistake."""
    r = check(Claim("δ_L = 3.7(ŷ − y) + ŷ²", lambda q, l: 3.7 * (q.yhat - q.y) + q.yhat ** 2, "delta", _BC,
                    layers="last"))
    assert r.verdict != HOLDS and r.diagnosis == [] and r.diagnosis_note == NO_KNOWN_MISTAKE


def _named(res, mistake: str, text: str) -> bool:
    """The expected mistake is the first explanation, with the expected text in its description."""
    return bool(res.diagnosis) and res.diagnosis[0].mistake.value == mistake and text in res.diagnosis[0].description


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_wrong_claim_gets_the_right_diagnosis(case):
    cid, good, bad, target, setting, kw, mistake, text = case
    rg = check(Claim(cid + " (correct)", good, target, setting, **kw))
    assert rg.verdict == HOLDS, rg.summary()
    rb = check(Claim(cid, bad, target, setting, **kw))
    assert rb.verdict != HOLDS, rb.summary()
    assert rb.counterexample is not None
    assert _named(rb, mistake, text), rb.summary()
