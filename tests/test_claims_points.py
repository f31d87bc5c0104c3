"""Given points of a network claim (issue 14, items 1 and 3): ``Setting(points=[...])`` judges a claim also at
inputs and parameters the user chooses -- a pre-activation exactly at ReLU's kink, a symmetric weight, ties in
a max-pooling window -- besides the generic random instances; every point is validated with a one-line error.

Oracles: closed forms written here (the correct formula must hold at the point), the points' own values
(z exactly 0, Wᵀ = W), and PyTorch autograd for the truths at the points (ReLU'(0) = 0, max pooling's tie rule).
"""
from __future__ import annotations

import numpy as np
import pytest

from jacobian_bp.claims import FAILS, HOLDS, NO_KNOWN_MISTAKE, Claim, Mistake, Setting, build_instances, check
from jacobian_bp.claims.targets import target_function
from jacobian_bp.errors import SpecError

KINK = {"x": [0.0, 0.0], "b1": [0.0, 0.0, 0.0], "label": "z[1] = 0"}
RELU = Setting(None, hidden="relu", output="identity", widths=((2, 3, 1),), relu_at_zero=0, points=[KINK])


def relu_delta(q, l, at_zero):
    mask = (q.z[l] > 0) if not at_zero else (q.z[l] >= 0)
    return (q.W[l + 1].T @ q.delta[l + 1]) * mask


def test_point_instance_sits_where_asked():
    insts = build_instances(RELU)
    assert len(insts) == 3  # two seeds, then the point
    p = insts[-1]
    assert p.point["label"] == "z[1] = 0" and "z[1] = 0" in p.label
    assert np.array_equal(p.cache.z[1], np.zeros((1, 3)))
    assert np.array_equal(p.params["W1"], insts[0].params["W1"])  # parameters not given keep the first seed's


def test_relu_kink_convention_is_judged_at_the_point():
    r_ok = check(Claim("δ = (Wᵀδ) ⊙ 1[z > 0]", lambda q, l: relu_delta(q, l, False), "delta", RELU, layers="hidden"))
    assert r_ok.verdict == HOLDS, r_ok.summary()
    r = check(Claim("δ = (Wᵀδ) ⊙ 1[z ≥ 0]", lambda q, l: relu_delta(q, l, True), "delta", RELU, layers="hidden"))
    assert r.verdict == FAILS, r.summary()
    # named: the formula holds with the other value of ReLU'(0), verified on fresh instances and the point
    assert r.diagnosis and r.diagnosis[0].mistake == Mistake.KINK_CONVENTION and r.diagnosis[0].verified > 0
    assert "ReLU′(0) = 1" in r.diagnosis[0].description
    # the counterexample is the given point, named by its label (not "seed 0")
    assert r.counterexample.point == "z[1] = 0" and "point 'z[1] = 0'" in r.counterexample.to_text()
    statuses = {label: status for label, _, status, _ in r.details}
    assert statuses["2-3-1, z[1] = 0"] == FAILS
    assert all(s == HOLDS for k, s in statuses.items() if "seed" in k)  # random instances never hit the kink
    # the same claim with ReLU'(0) = 1 (Park's convention) holds at the point too
    r1 = check(Claim("δ = (Wᵀδ) ⊙ 1[z ≥ 0]", lambda q, l: relu_delta(q, l, True), "delta",
                     Setting(None, hidden="relu", widths=((2, 3, 1),), relu_at_zero=1, points=[KINK]), layers="hidden"))
    assert r1.verdict == HOLDS, r1.summary()


def test_relu_truth_at_the_point_against_torch():
    torch = pytest.importorskip("torch")
    p = build_instances(RELU)[-1]
    W1 = torch.tensor(p.params["W1"], requires_grad=True)
    z1 = torch.tensor(p.Xb) @ W1.T + torch.tensor(p.params["b1"])
    out = torch.relu(z1) @ torch.tensor(p.params["W2"]).T + torch.tensor(p.params["b2"])
    ((out - torch.tensor(p.Yb)) ** 2).sum().backward()
    np.testing.assert_allclose(target_function("grad_W")(p, 1), W1.grad.numpy(), atol=1e-12)


def test_symmetry_assumed_holds_only_at_a_symmetric_point():
    W = [[0.5, -1.0, 0.3], [-1.0, 0.2, 0.7], [0.3, 0.7, -0.4]]
    S = Setting(None, hidden="tanh", widths=((3, 3, 2),), points=[{"W1": W, "label": "W1 symmetric"}])
    f = lambda q, l: q.W[l] @ q.delta[l]  # noqa: E731 - ∇_{a[l-1]} ℓ written W δ instead of Wᵀ δ
    r = check(Claim("∇a = W δ", f, "grad_a", S, layers=[1], target_offset=-1))
    assert r.verdict == FAILS
    statuses = {label: status for label, _, status, _ in r.details}
    assert statuses["3-3-2, W1 symmetric"] == HOLDS and statuses["3-3-2, seed 0, N = 1"] == FAILS
    assert r.diagnosis and r.diagnosis[0].mistake in (Mistake.SYMMETRY, Mistake.TRANSPOSE), r.summary()


# ----------------------------------------------------------------------------- ties in a max-pooling window
TIES = [[[1.0, 1.0, 0.0, -1.0], [0.5, 1.0, 2.0, 2.0], [3.0, 3.0, 3.0, 0.0], [3.0, -2.0, 0.0, 0.0]]]
POOL = Setting(None, network=[{"type": "conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 1, "bias": "none"},
                              {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
                              {"type": "dense", "out_features": 2}],
               input_shape=(1, 4, 4), points=[{"x": TIES, "K1": [[[[1.0]]]], "label": "ties"}])


def maxpool_backward(q, l, split, last=False):
    """CS231n: the upstream gradient goes to the window's maximum -- the first one in row-major order at a tie
    (PyTorch's rule), or (``split``) shared equally by the tied entries."""
    Z = np.asarray(q.out[l])[0]
    G = np.asarray(q.grad_a[l]).reshape(2, 2)
    out = np.zeros((1, 4, 4))
    for i in range(2):
        for j in range(2):
            cells = [(2 * i + u, 2 * j + v) for u in range(2) for v in range(2)]
            m = max(Z[c] for c in cells)
            best = [c for c in cells if Z[c] == m]
            for c in (best if split else best[-1:] if last else best[:1]):
                out[0][c] += G[i, j] / (len(best) if split else 1)
    return out


def test_ties_in_a_pooling_window():
    p = build_instances(POOL)[-1]
    assert np.array_equal(p.cache.z[1][0, 0], np.array(TIES[0]))
    r = check(Claim("max pooling: first maximum", lambda q, l: maxpool_backward(q, l, False), "dout", POOL, layers=[1]))
    assert r.verdict == HOLDS, r.summary()
    r = check(Claim("max pooling: ties share", lambda q, l: maxpool_backward(q, l, True), "dout", POOL, layers=[1]))
    assert r.verdict == FAILS, r.summary()
    # named: the formula is the backward pass with the gradient shared among the tied maxima (verified)
    assert [e.mistake for e in r.diagnosis] == [Mistake.TIE_CONVENTION] and r.diagnosis[0].verified > 0, r.summary()
    # a claim wrong otherwise at the tie point (routed to the last maximum): no convention explains it
    r = check(Claim("max pooling: last maximum", lambda q, l: maxpool_backward(q, l, False, last=True), "dout", POOL,
                    layers=[1]))
    assert r.verdict == FAILS and not r.diagnosis and r.diagnosis_note == NO_KNOWN_MISTAKE, r.summary()
    statuses = {label: status for label, _, status, _ in r.details}
    assert statuses["network, ties"] == FAILS and statuses["network, seed 0, N = 1"] == HOLDS


def test_tie_truth_against_torch():
    torch = pytest.importorskip("torch")
    p = build_instances(POOL)[-1]
    Z = torch.tensor(p.cache.z[1], requires_grad=True)
    out = torch.nn.functional.max_pool2d(Z, 2).reshape(1, -1) @ torch.tensor(p.params["W2"]).T + torch.tensor(p.params["b2"])
    ((out - torch.tensor(p.Yb)) ** 2).sum().backward()
    np.testing.assert_allclose(target_function("dout")(p, 1), Z.grad.numpy()[0], atol=1e-12)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("points, match", [
    ([{"W9": [[1.0]]}], "unknown key 'W9'; known: x, y, label, widths, W1, b1, W2, b2"),
    ([{"W1": [[1.0, 2.0]]}], r"W1 must have shape \(3, 2\)"),
    ([{"b1": [0.0, np.nan, 0.0]}], "finite"),
    ([{"x": "0 0"}], "expected numbers"),
    ([{"x": [0.0, 0.0, 0.0]}], "point 1: x: .*expected input of shape"),
    ([{"y": [1.0]}], "y is given without x"),
    ([{"widths": (2, 4, 1)}], "widths must be one of"),
    ([{"x": [1.0, 2.0], "label": 3}], "label must be a string"),
    ("x", "points must be a list"),
    ([[1.0, 2.0]], "expected a dict"),
])
def test_points_are_validated_in_one_line(points, match):
    with pytest.raises(SpecError, match=match) as e:
        Setting(None, hidden="relu", widths=((2, 3, 1),), points=points)
    assert "\n" not in str(e.value)


def test_points_of_a_network_setting_are_validated():
    with pytest.raises(SpecError, match=r"gamma2 must have shape \(3,\)"):
        Setting(None, network=[{"type": "dense", "out_features": 3}, {"type": "layer_norm"},
                               {"type": "dense", "out_features": 1}], input_shape=2, points=[{"gamma2": [1.0, 2.0]}])
    with pytest.raises(SpecError, match="widths applies to dense settings"):
        Setting(None, network=[{"type": "dense", "out_features": 1}], input_shape=2, points=[{"widths": (2, 1)}])


def test_settings_with_points_are_hashable_and_equal():
    a = Setting(None, hidden="relu", widths=((2, 3, 1),), points=[KINK])
    b = Setting(None, hidden="relu", widths=((2, 3, 1),), points=({"x": np.zeros(2), "b1": np.zeros(3), "label": "z[1] = 0"},))
    assert a == b and hash(a) == hash(b)
    from dataclasses import replace

    assert replace(a, seeds=(3,)).points == a.points
    assert "1 given point(s)" in a.describe()
