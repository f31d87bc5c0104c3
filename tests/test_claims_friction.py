"""Friction of the claim checker (issue 14): NumPy-style symbolic claims, layer lists, bounded simplify,
documented targets, settings by knob, kink conventions, "no known mistake fits".

Oracles: the engine's truths (independent baseline: the correct formula must hold first), SymPy's own
derivative, float64 central differences and, for ReLU'(0), PyTorch autograd.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy

import jacobian_bp as jb
from jacobian_bp.claims import (FAILS, HOLDS, ILL_TYPED, NO_KNOWN_MISTAKE, TARGETS, Claim, ExpressionClaim, Mistake,
                                Setting, build_instances, check, targets)
from jacobian_bp.errors import DataError, SpecError

SYM = Setting("ganev", hidden="tanh", output="identity", loss="mse", widths=((3, 4, 2),), seeds=(0,),
              symbolic=(2, 3, 2), symbolic_hidden="tanh", symbolic_output="identity")
SYM_ONLY = Setting("ganev", hidden="tanh", output="identity", loss="mse", widths=(), symbolic=(2, 3, 2),
                   symbolic_hidden="tanh", symbolic_output="identity")


def _kinds(r) -> list:
    return [e.mistake for e in r.diagnosis]


# ------------------------------------------------------------------ 1. NumPy-style formulas in symbolic mode
@pytest.mark.parametrize("setting", [SYM, SYM_ONLY], ids=["symbolic+numeric", "symbolic"])
def test_numpy_style_hand_derivation_holds_in_symbolic_mode(setting):
    """δ[l] = (1 − a²) ⊙ (Wᵀ δ[l+1]) for tanh, written with ``1 - v`` and ``v**2``: exactly right."""
    r = check(Claim("tanh backprop, NumPy style", lambda q, l: (1 - q.a[l] ** 2) * (q.W[l + 1].T @ q.delta[l + 1]),
                    "delta", setting, layers="hidden"))
    assert r.verdict == HOLDS, r.summary()
    assert "symbolic" in r.method


def test_numpy_style_scalars_broadcast_and_np_functions_in_symbolic_mode():
    """Scalars broadcast (``2 * v``, ``v / 2``) and ``q.np.tanh`` acts elementwise on SymPy entries."""
    r = check(Claim("a = tanh(z) via q.np", lambda q, l: q.np.tanh(q.z[l]), "a", SYM, layers="hidden"))
    assert r.verdict == HOLDS, r.summary()
    r = check(Claim("δ_L = 2(ŷ − y)/2 · 1", lambda q, l: 2 * (q.yhat - q.y) / 2 * 2, "delta", SYM, layers="last"))
    assert r.verdict == HOLDS, r.summary()


def test_sign_slip_in_symbolic_mode_is_a_sign_flip_not_ill_typed():
    r = check(Claim("sign slip", lambda q, l: (q.a[l] ** 2 - 1) * (q.W[l + 1].T @ q.delta[l + 1]), "delta", SYM,
                    layers="hidden"))
    assert r.verdict == FAILS, r.summary()
    assert _kinds(r)[0] == Mistake.SIGN, r.summary()


def test_transposed_numpy_style_result_is_diagnosed_in_symbolic_mode():
    r = check(Claim("transposed", lambda q, l: ((1 - q.a[l] ** 2) * (q.W[l + 1].T @ q.delta[l + 1])).T, "delta",
                    SYM_ONLY, layers="hidden"))
    assert r.verdict == ILL_TYPED and "3×1" in r.reason, r.summary()
    assert Mistake.TRANSPOSE in _kinds(r), r.summary()


@pytest.mark.parametrize("setting", [SYM, SYM_ONLY, Setting("ganev", widths=((3, 4, 2),), seeds=(0,))],
                         ids=["symbolic+numeric", "symbolic", "numeric"])
def test_ill_typed_messages_are_one_line_with_operation_shapes_and_claim(setting):
    r = check(Claim("my bad product", lambda q, l: q.W[l] @ q.delta[l], "grad_a", setting, layers="last"))
    assert r.verdict == ILL_TYPED
    assert "\n" not in r.reason
    assert "matrix product A @ B of shapes 2×" in r.reason and "and 2×1: inner dimensions" in r.reason, r.reason
    assert "my bad product" in r.reason
    r = check(Claim("my bad sum", lambda q, l: q.delta[l] + q.a[l - 1], "grad_b", setting, layers="last"))
    assert r.verdict == ILL_TYPED and "elementwise sum + of shapes 2×1 and " in r.reason, r.reason
    for rr in (r,):
        assert "NonSquareMatrixError" not in rr.reason and not rr.reason.startswith(" ")


def test_sympy_matrix_power_message_is_not_empty():
    r = check(Claim("square of a column", lambda q, l: sympy.Matrix(q.z[l]) ** 2, "a", SYM_ONLY, layers="hidden"))
    assert r.verdict == ILL_TYPED
    assert "non-square" in r.reason and "square of a column" in r.reason, r.reason


# ------------------------------------------------------------------ 2. layers as a list of stage indices
def test_layers_as_a_list():
    st = Setting("ganev", widths=((3, 4, 2), (2, 3, 4, 2)), seeds=(0,))
    r = check(Claim("∇b = δ at l = 1", lambda q, l: q.delta[l], "grad_b", st, layers=[1]))
    assert r.verdict == HOLDS and r.n_instances == 2
    assert {l for _, l, _, _ in r.details} == {1}
    r = check(Claim("∇b = δ at l = 2, 3", lambda q, l: q.delta[l], "grad_b", st, layers=(3, 2)))
    assert r.verdict == HOLDS and {l for _, l, _, _ in r.details} == {2, 3}
    bad = check(Claim("∇b = −δ at l = 1", lambda q, l: -q.delta[l], "grad_b", st, layers=[1]))
    assert bad.verdict == FAILS and bad.counterexample.layer == 1


@pytest.mark.parametrize("layers", [["1"], [], [-1], [1.5], [True], 3, {"l": 1}])
def test_layers_validation(layers):
    with pytest.raises(SpecError, match="layers"):
        Claim("x", lambda q, l: q.delta[l], "grad_b", layers=layers)


def test_layers_that_no_network_has():
    st = Setting("ganev", widths=((3, 4, 2),), seeds=(0,))
    with pytest.raises(DataError, match="no architecture"):
        check(Claim("x", lambda q, l: q.delta[l], "grad_b", st, layers=[5]))


# ------------------------------------------------------------------ 3. bounded simplify
def test_simplify_is_never_run_on_large_expressions(monkeypatch):
    """A failing claim whose entries are large: the message is built without simplifying them."""
    from jacobian_bp.claims import compare

    sizes = []
    real = sympy.simplify

    def spy(e, *a, **k):
        sizes.append(int(sympy.count_ops(e)))
        return real(e, *a, **k)

    monkeypatch.setattr(sympy, "simplify", spy)
    x = sympy.symbols("x_1:5", real=True)
    f = sympy.Integer(0)
    for i in range(4):
        f += sympy.exp(x[i] * x[(i + 1) % 4]) * sympy.sin(x[i]) / (1 + x[(i + 2) % 4] ** 2)
        f += sympy.cos(x[i] * x[(i + 3) % 4]) * sympy.log(1 + x[(i + 1) % 4] ** 2)
    g = sympy.Matrix([f]).jacobian(sympy.Matrix(x)).T
    wrong = g + sympy.Matrix([x[0] * x[1] ** 2 * sympy.cos(x[2]) * sympy.exp(x[3])] * 4)  # a wrong derivative
    # entries of 60-150 operations: the former message builder simplified every entry below 150
    assert all(compare.SIMPLIFY_MAX_OPS < sympy.count_ops(e) < 150 for e in wrong)
    r = check(ExpressionClaim("large gradient", wrong, g, symbols=x))
    assert r.verdict == FAILS and r.reason
    assert all(n <= compare.SIMPLIFY_MAX_OPS for n in sizes), sizes  # the large entries were not simplified
    # small entries still are (the spy sees them): d/dt t² stated as t
    t = sympy.Symbol("t", real=True)
    r = check(ExpressionClaim("small derivative", sympy.Matrix([t]), sympy.Matrix([sympy.diff(t ** 2, t)]), symbols=(t,)))
    assert r.verdict == FAILS and "2*t" in r.reason
    assert sizes and max(sizes) <= compare.SIMPLIFY_MAX_OPS, sizes
    # a true claim whose difference SymPy cannot cancel within the bound is judged on numeric evidence
    r = check(ExpressionClaim("large gradient, other form", sympy.Matrix([sympy.diff(f, v) for v in x]), g, symbols=x))
    assert r.verdict == HOLDS


def test_bounded_simplify():
    from jacobian_bp.claims.compare import bounded_simplify

    t = sympy.Symbol("t")
    assert bounded_simplify(sympy.sin(t) ** 2 + sympy.cos(t) ** 2) == 1
    big = sum(sympy.sin(t * k) ** 2 + sympy.cos(t * k) ** 2 for k in range(1, 30))
    assert bounded_simplify(big, max_ops=20) is big


# ------------------------------------------------------------------ 4. targets documented
def test_every_target_is_documented():
    ts = {t.name: t for t in targets()}
    assert set(ts) == set(TARGETS)
    for t in ts.values():
        assert t.meaning and t.shape and t.layers and t.name in str(t)
    assert jb.claims.targets()[0].name == next(iter(TARGETS))
    assert "∂a_i/∂z_j" in ts["J_act"].meaning


@pytest.mark.parametrize("hidden", ["softmax", "radial_sigmoid", "tanh"])
def test_activation_jacobian_target_is_numerator_layout(hidden):
    """J_act[i, j] = ∂a_i/∂z_j by float64 central differences of the layer's forward map."""
    from jacobian_bp.layers import layer_class

    st = Setting("ganev", hidden=hidden, widths=((3, 4, 2),), seeds=(0,))
    d = build_instances(st)[0]
    lay = layer_class(hidden)()
    lay.build((4,))
    z = d.cache.z[1][0]
    h = 1e-6
    J = np.stack([(lay.forward((z + h * e)[None], {})[0] - lay.forward((z - h * e)[None], {})[0]) / (2 * h)
                  for e in np.eye(4)], axis=1)
    np.testing.assert_allclose(TARGETS["J_act"][0](d, 1), J, atol=1e-7)


# ------------------------------------------------------------------ 5. settings by knob
def test_cs231n_xw_plus_b_by_knob():
    """CS231n: Z = XW + b (W is n_in × n_out), batch first, mean loss: dW = Xᵀ dZ, db = Σ_rows dZ."""
    st = Setting(None, weight_layout="in_out", reduction="mean", hidden="relu", output="softmax", loss="cross_entropy",
                 widths=((4, 3), (4, 5, 3)), batch=(3, 4), seeds=(0, 1))
    assert st.conv().weight_layout == "in_out" and st.conv().reduction == "mean"  # no document's preset named
    assert st.conv().name == "knobs" and st.conv().theta_order == "forward"
    r = check(Claim("CS231n Z = XW + b", lambda q, l: q.A[l - 1] @ q.W[l] + q.ones_N @ q.b[l].T, "Z", st))
    assert r.verdict == HOLDS, r.summary()
    r = check(Claim("CS231n dW = Xᵀ dZ", lambda q, l: q.A[l - 1].T @ q.dZ[l], "grad_W", st))
    assert r.verdict == HOLDS, r.summary()
    r = check(Claim("CS231n dscores = (P − Y)/N", lambda q, l: (q.Yhat - q.Y) / q.N, "dZ", st, layers="last"))
    assert r.verdict == HOLDS, r.summary()


def test_nielsen_half_squared_error_by_knob():
    """Nielsen (BP1): δ^L = (a^L − y) ⊙ σ′(z^L) for C = ½‖y − a‖², z = Wa + b."""
    st = Setting(None, mse_scale=0.5, hidden="sigmoid", output="sigmoid", loss="mse", widths=((3, 4, 2), (2, 3, 4, 2)),
                 seeds=(0,))
    r = check(Claim("Nielsen BP1", lambda q, l: (q.a[l] - q.y) * q.a[l] * (1 - q.a[l]), "delta", st, layers="last"))
    assert r.verdict == HOLDS, r.summary()
    r = check(Claim("Nielsen BP1 with C = ‖y − a‖²", lambda q, l: (q.a[l] - q.y) * q.a[l] * (1 - q.a[l]), "delta",
                    Setting(None, hidden="sigmoid", output="sigmoid", widths=((3, 4, 2),), seeds=(0,)), layers="last"))
    assert r.verdict == FAILS and _kinds(r)[0] == Mistake.FACTOR


@pytest.mark.parametrize("knob,value", [("weight_layout", "diagonal"), ("batch_axis", "middle"), ("reduction", "median"),
                                        ("mse_scale", -1.0), ("mse_scale", "0.5"), ("relu_at_zero", 2.0),
                                        ("mse_reduce_outputs", "max"), ("at_kink", -1)])
def test_knob_validation(knob, value):
    with pytest.raises(SpecError, match=knob):
        Setting(**{knob: value})


def test_knobs_equal_the_presets():
    """A preset is a shorthand: the same knobs on another preset give the same truths."""
    a = Setting("park", widths=((3, 4, 2),), seeds=(0,), batch=3)
    b = Setting("ganev", batch_axis="last", reduction="mean", mse_scale=0.5, relu_at_zero=1.0, vec_order="row",
                theta_order="forward", widths=((3, 4, 2),), seeds=(0,), batch=3)
    da, db = build_instances(a)[0], build_instances(b)[0]
    for key in ("grad_W", "dZ", "Z"):
        np.testing.assert_allclose(TARGETS[key][0](da, 1), TARGETS[key][0](db, 1), atol=1e-12)


# ------------------------------------------------------------------ kinks: ReLU'(0)
KINK = dict(hidden="relu", output="identity", loss="mse", widths=((3, 4, 2), (2, 5, 3, 2)), seeds=(0, 1), at_kink=2)


def test_at_kink_instances_sit_at_zero():
    for d in build_instances(Setting("pytorch", **KINK)):
        for l in range(1, d.L):
            assert np.all(d.cache.z[l][:, :2] == 0.0)
            assert np.all(d.cache.z[l][:, 2:] != 0.0)


def test_relu_prime_at_zero_is_a_stated_convention():
    """δ[l] = [z > 0] ⊙ (Wᵀδ[l+1]) holds at the kink iff ReLU'(0) = 0; [z ≥ 0] iff ReLU'(0) = 1."""
    gt = lambda q, l: (q.z[l] > 0) * (q.W[l + 1].T @ q.delta[l + 1])  # noqa: E731
    ge = lambda q, l: (q.z[l] >= 0) * (q.W[l + 1].T @ q.delta[l + 1])  # noqa: E731
    at0 = Setting("ganev", relu_at_zero=0.0, **KINK)
    at1 = Setting("ganev", relu_at_zero=1.0, **KINK)
    assert check(Claim("ReLU'(0) = 0", gt, "delta", at0, layers="hidden")).verdict == HOLDS
    assert check(Claim("ReLU'(0) = 1", ge, "delta", at1, layers="hidden")).verdict == HOLDS
    assert check(Claim("ReLU'(0) = 0", gt, "delta", at1, layers="hidden")).verdict == FAILS
    assert check(Claim("ReLU'(0) = 1", ge, "delta", at0, layers="hidden")).verdict == FAILS
    # random instances never hit the kink: there both claims hold under either convention
    rnd = Setting("ganev", relu_at_zero=1.0, **{**KINK, "at_kink": 0})
    assert check(Claim("ReLU'(0) = 0", gt, "delta", rnd, layers="hidden")).verdict == HOLDS


def test_relu_prime_at_zero_in_pytorch_is_zero():
    """The claim "ReLU'(0) = 0 in PyTorch": the truth at the kink equals torch autograd's gradient."""
    torch = pytest.importorskip("torch")
    st = Setting("pytorch", hidden="relu", output="identity", loss="mse", widths=((3, 4, 2),), seeds=(0,), batch=3,
                 at_kink=2)
    d = build_instances(st)[0]
    W1 = torch.tensor(d.params["W1"], requires_grad=True)
    b1 = torch.tensor(d.params["b1"], requires_grad=True)
    W2 = torch.tensor(d.params["W2"], requires_grad=True)
    b2 = torch.tensor(d.params["b2"], requires_grad=True)
    X, Y = torch.tensor(d.Xb), torch.tensor(d.Yb)
    Z1 = X @ W1.T + b1
    assert bool((Z1[:, :2] == 0).all())
    out = torch.relu(Z1) @ W2.T + b2
    torch.nn.MSELoss()(out, Y).backward()
    np.testing.assert_allclose(TARGETS["grad_W"][0](d, 1), W1.grad.numpy(), atol=1e-12)
    r = check(Claim("PyTorch: ReLU'(0) = 0", lambda q, l: ((q.z[l] > 0) * (q.W[l + 1].T @ q.delta[l + 1])), "delta",
                    st, layers="hidden"))
    assert r.verdict == HOLDS


# ------------------------------------------------------------------ 6. no misleading diagnosis
def test_no_known_mistake_fits():
    st = Setting("ganev", widths=((3, 4, 2), (2, 3, 4, 2)), seeds=(0,))
    r = check(Claim("∇b = δ + 1", lambda q, l: q.delta[l] + 1, "grad_b", st))
    assert r.verdict == FAILS and r.diagnosis == []
    assert r.diagnosis_note == NO_KNOWN_MISTAKE and NO_KNOWN_MISTAKE in r.summary()


def test_diagnoses_are_verified_on_fresh_instances():
    st = Setting("ganev", widths=((3, 4, 2), (2, 3, 4, 2)), seeds=(0,))
    r = check(Claim("∇W = a δᵀ", lambda q, l: q.a[l - 1] @ q.delta[l].T, "grad_W", st))
    assert r.diagnosis and all(e.verified >= 2 for e in r.diagnosis)
    assert r.counterexample is not None
