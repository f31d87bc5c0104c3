"""The claim checker's diagnoses, on deliberately broken variants of correct formulas.

For every kind of mistake the checker names (sign, transpose, factor, reduction,
Kronecker / vec order, index shift, output activation, wrong axis, θ block order), a
correct formula is first shown to *hold* (an independent baseline: the engine's truth),
then a broken variant must *not* hold and must be diagnosed with that kind of mistake.
Settings span depths 1-3 with unequal and equal widths, several conventions, single
samples and batches, and (``symbolic=...``) an exact SymPy instance with undefined
activations.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy

from jacobian_bp.claims import (FAILS, HOLDS, ILL_TYPED, Claim, Correction, ExpressionClaim, ListingClaim, Mistake,
                                Setting, check)

GANEV = Setting("ganev", hidden="tanh", output="sigmoid", loss="mse")
GANEV_SYM = Setting("ganev", hidden="tanh", output="sigmoid", loss="mse", symbolic=(2, 3, 2))
PARK_B = Setting("park", hidden="tanh", output="sigmoid", loss="bce", batch=(3, 4))
DAMADI = Setting("damadi", hidden="tanh", output="softmax", loss="cross_entropy")
MML = Setting("mml", hidden="sigmoid", output="sigmoid", loss="mse")


def kinds(res) -> set:
    return {e.kind for e in res.diagnosis}


def assert_diagnosed(good: Claim, bad: Claim, kind: Mistake, verdicts=(FAILS, ILL_TYPED)):
    rg = check(good)
    assert rg.verdict == HOLDS, rg.summary()
    assert not rg.diagnosis
    rb = check(bad)
    assert rb.verdict in verdicts, rb.summary()
    assert kind in kinds(rb), rb.summary()
    assert rb.counterexample is not None and rb.counterexample.reason
    return rb


def _claim(name, f, target, setting, **kw):
    return Claim(name, f, target, setting, **kw)


# ---------------------------------------------------------------------------------------- sign / factor
@pytest.mark.parametrize("setting", [GANEV, GANEV_SYM, Setting("park"), DAMADI], ids=["ganev", "ganev-sym", "park", "damadi"])
def test_sign_flip(setting):
    good = _claim("∇b = δ", lambda q, l: q.delta[l], "grad_b", setting)
    bad = _claim("∇b = −δ", lambda q, l: -q.delta[l], "grad_b", setting)
    rb = assert_diagnosed(good, bad, Mistake.SIGN, (FAILS,))
    assert any("−C" in e.description for e in rb.diagnosis)


@pytest.mark.parametrize("factor,expect", [(2.0, "C/2"), (0.5, "2·C")])
@pytest.mark.parametrize("setting", [GANEV, GANEV_SYM], ids=["numeric", "symbolic"])
def test_missing_or_extra_factor(setting, factor, expect):
    good = _claim("∇W = δ aᵀ", lambda q, l: q.delta[l] @ q.a[l - 1].T, "grad_W", setting)
    bad = _claim("∇W = c δ aᵀ", lambda q, l: factor * (q.delta[l] @ q.a[l - 1].T), "grad_W", setting)
    rb = assert_diagnosed(good, bad, Mistake.FACTOR, (FAILS,))
    assert any(expect in e.description for e in rb.diagnosis), rb.summary()


def test_mse_factor_two_damadi_symbolic():
    st = Setting("damadi", output="identity", loss="mse", widths=((3, 2), (4, 5, 2)), symbolic=(2, 2),
                 symbolic_output="identity")
    good = _claim("δ = −2(y − ŷ)", lambda q, l: -2 * (q.y - q.yhat), "delta", st, layers="last")
    bad = _claim("δ = −(y − ŷ)", lambda q, l: -(q.y - q.yhat), "delta", st, layers="last")
    rb = assert_diagnosed(good, bad, Mistake.FACTOR, (FAILS,))
    assert rb.method == "symbolic+numeric"


def test_reduction_missing_one_over_N():
    good = _claim("dZ = Δ/N", lambda q, l: q.Delta[l] / q.N, "dZ", PARK_B)
    bad = _claim("dZ = Δ", lambda q, l: q.Delta[l], "dZ", PARK_B)
    rb = assert_diagnosed(good, bad, Mistake.REDUCTION, (FAILS,))
    assert any("1/N" in e.description for e in rb.diagnosis)


def test_reduction_extra_batch_axis():
    good = _claim("db = Σ_cols dZ", lambda q, l: q.dZ[l] @ q.ones(q.N, 1), "grad_b", PARK_B)
    bad = _claim("db = dZ", lambda q, l: q.dZ[l], "grad_b", PARK_B)
    rb = assert_diagnosed(good, bad, Mistake.REDUCTION, (ILL_TYPED,))
    assert any("sum over it" in e.description for e in rb.diagnosis)


# ---------------------------------------------------------------------------------------- transposes
@pytest.mark.parametrize("setting", [GANEV, GANEV_SYM, Setting("park")], ids=["ganev", "ganev-sym", "park"])
def test_transpose_of_result(setting):
    good = _claim("∇W = δ aᵀ", lambda q, l: q.delta[l] @ q.a[l - 1].T, "grad_W", setting)
    bad = _claim("∇W = a δᵀ", lambda q, l: q.a[l - 1] @ q.delta[l].T, "grad_W", setting)
    assert_diagnosed(good, bad, Mistake.TRANSPOSE)


def test_transpose_of_an_operand():
    bad = _claim("∇W = δ a", lambda q, l: q.delta[l] @ q.a[l - 1], "grad_W", GANEV)
    rb = check(bad)
    assert rb.verdict == ILL_TYPED
    assert any(e.kind == Mistake.TRANSPOSE and "a[l-1] should be transposed" in e.description for e in rb.diagnosis)


# ---------------------------------------------------------------------------------------- index shifts
@pytest.mark.parametrize("setting", [GANEV, GANEV_SYM, Setting("park"), Setting("ganev", widths=((3, 3, 3), (3, 3, 3, 3)))],
                         ids=["ganev", "ganev-sym", "park", "equal-widths"])
def test_index_shift_activation(setting):
    good = _claim("∇W = δ a[l−1]ᵀ", lambda q, l: q.delta[l] @ q.a[l - 1].T, "grad_W", setting)
    bad = _claim("∇W = δ a[l]ᵀ", lambda q, l: q.delta[l] @ q.a[l].T, "grad_W", setting)
    rb = assert_diagnosed(good, bad, Mistake.INDEX_SHIFT)
    assert any("a[l] used where a[l-1]" in e.description for e in rb.diagnosis)
    # unequal widths make the slip a shape error, equal widths a value error
    expected = FAILS if setting.widths == ((3, 3, 3), (3, 3, 3, 3)) else ILL_TYPED
    assert rb.verdict == expected


def test_index_shift_weight_refers_to_missing_W0():
    good = _claim("∇a[l−1] = W[l]ᵀ δ", lambda q, l: q.W[l].T @ q.delta[l], "grad_a", GANEV_SYM, target_offset=-1)
    bad = _claim("∇a[l−1] = W[l−1]ᵀ δ", lambda q, l: q.W[l - 1].T @ q.delta[l], "grad_a", GANEV_SYM, target_offset=-1)
    rb = assert_diagnosed(good, bad, Mistake.INDEX_SHIFT, (ILL_TYPED,))
    assert "W[0]" in rb.reason
    assert any("W[l-1] used where W[l]" in e.description for e in rb.diagnosis)


def test_index_shift_damadi_kron_block():
    good = _claim("[I ⊗ a[l−1]ᵀ I]", lambda q, l: q.hstack([q.kron(q.I(q.n[l]), q.a[l - 1].T), q.I(q.n[l])]),
                  "J_local", DAMADI)
    bad = _claim("[I ⊗ a[l]ᵀ I]", lambda q, l: q.hstack([q.kron(q.I(q.n[l]), q.a[l].T), q.I(q.n[l])]),
                 "J_local", DAMADI)
    assert_diagnosed(good, bad, Mistake.INDEX_SHIFT)


# ---------------------------------------------------------------------------------------- output activation
@pytest.mark.parametrize("setting", [GANEV, GANEV_SYM, Setting("ganev", output="softmax", loss="cross_entropy")],
                         ids=["sigmoid-out", "symbolic-generic", "softmax-out"])
def test_output_activation_for_hidden_layer(setting):
    good = _claim("Jac_l = Jacobian(σ_l, z_l)", lambda q, l: q.Jac(l, q.z[l]), "J_act", setting)
    bad = _claim("Jac_l = Jacobian(σ_L, z_l)", lambda q, l: q.Jac(q.L, q.z[l]), "J_act", setting)
    rb = assert_diagnosed(good, bad, Mistake.OUTPUT_ACTIVATION, (FAILS,))
    if setting.symbolic:  # exact: undefined f_1 ≠ f_2
        assert any(s == "fails" and lab.startswith("symbolic") for lab, _, s, _ in rb.details)


# ---------------------------------------------------------------------------------------- Kronecker / vec order
@pytest.mark.parametrize("setting,good_order", [(DAMADI, "IA"), (MML, "AI"), (Setting("ganev"), "IA")],
                         ids=["damadi", "mml", "ganev"])
def test_kronecker_factor_order(setting, good_order):
    def block(q, l, order):
        a = q.a[l - 1].T
        K = q.kron(q.I(q.n[l]), a) if order == "IA" else q.kron(a, q.I(q.n[l]))
        return q.hstack([K, q.I(q.n[l])])

    other = "AI" if good_order == "IA" else "IA"
    good = _claim("J_θl z[l]", lambda q, l: block(q, l, good_order), "J_local", setting)
    bad = _claim("J_θl z[l] swapped", lambda q, l: block(q, l, other), "J_local", setting)
    assert_diagnosed(good, bad, Mistake.KRONECKER, (FAILS,))


def test_kronecker_order_detected_without_instrumented_kron():
    """np.kron instead of q.kron: the commutation-matrix column permutation finds it."""
    good = _claim("J_vecW z", lambda q, l: np.kron(np.eye(q.n[l]), q.a[l - 1].T), "J_local_W", Setting("ganev"))
    bad = _claim("J_vecW z swapped", lambda q, l: np.kron(q.a[l - 1].T, np.eye(q.n[l])), "J_local_W", Setting("ganev"))
    rb = assert_diagnosed(good, bad, Mistake.KRONECKER, (FAILS,))
    assert any("commutation" in e.description for e in rb.diagnosis)


def test_vec_order():
    good = _claim("∇vecW = vec(δ aᵀ)", lambda q, l: q.vec(q.delta[l] @ q.a[l - 1].T), "grad_vecW", MML)
    bad = _claim("∇vecW = vec_r(δ aᵀ)", lambda q, l: q.vec_r(q.delta[l] @ q.a[l - 1].T), "grad_vecW", MML)
    rb = assert_diagnosed(good, bad, Mistake.KRONECKER, (FAILS,))
    assert any("vec order" in e.description or "commutation" in e.description for e in rb.diagnosis)


def test_kronecker_order_expression_claim():
    import sympy

    J = sympy.Matrix(3, 3, sympy.symbols("j1:10"))
    v = sympy.Matrix(1, 3, sympy.symbols("v1:4"))
    from sympy.physics.quantum import TensorProduct as TP

    good = check(ExpressionClaim("ok", sympy.Matrix(TP(v.T, J.T)), sympy.Matrix(TP(v, J)).T))
    assert good.verdict == HOLDS
    bad = check(ExpressionClaim("swapped", sympy.Matrix(TP(J.T, v.T)), sympy.Matrix(TP(v, J)).T))
    assert bad.verdict == FAILS and Mistake.KRONECKER in kinds(bad)


# ---------------------------------------------------------------------------------------- wrong axis
def test_wrong_axis_softmax_over_batch():
    st = Setting("park", output="softmax", loss="cross_entropy", batch=(3, 4), widths=((4, 3), (4, 5, 3), (3, 3, 3)))

    def softmax(q, Z, axis):
        E = q.np.exp(Z)
        return E / q.np.sum(E, axis=axis, keepdims=True)

    good = _claim("softmax over classes", lambda q, l: softmax(q, q.Z[l], 0), "A", st, layers="last")
    bad = _claim("softmax over the batch", lambda q, l: softmax(q, q.Z[l], 1), "A", st, layers="last")
    rb = assert_diagnosed(good, bad, Mistake.WRONG_AXIS, (FAILS,))
    assert any("axis=1" in e.description for e in rb.diagnosis)


def test_wrong_axis_ganev_batch_first():
    st = Setting("ganev", output="sigmoid", loss="mse", batch=(3, 4))
    good = _claim("∇b = ∇Zᵀ 1", lambda q, l: q.np.sum(q.dZ[l], axis=0, keepdims=True).T, "grad_b", st)
    bad = _claim("∇b summed over features", lambda q, l: q.np.sum(q.dZ[l], axis=1, keepdims=True).T, "grad_b", st)
    rb = check(bad)
    assert check(good).verdict == HOLDS
    assert rb.verdict == ILL_TYPED and Mistake.WRONG_AXIS in kinds(rb), rb.summary()


# ---------------------------------------------------------------------------------------- θ block order
def test_theta_block_order():
    def blocks(q, order):
        out = []
        for l in order:
            n = q.n[l]
            J = q.hstack([q.kron(q.I(n), q.a[l - 1].T), q.I(n)])
            P = q.I(q.n[q.L])
            for k in range(q.L, l, -1):
                P = P @ q.W[k].T @ q.Jact[k - 1]
            out.append((P @ J).T @ q.delta[q.L])
        return q.vstack(out)

    st = Setting("damadi", widths=((4, 5, 3), (3, 6, 4, 2), (3, 3, 3, 3)))
    good = _claim("∇θ in Damadi order", lambda q: blocks(q, range(q.L, 0, -1)), "grad_theta", st, layers="none")
    bad = _claim("∇θ in forward order", lambda q: blocks(q, range(1, q.L + 1)), "grad_theta", st, layers="none")
    assert_diagnosed(good, bad, Mistake.BLOCK_ORDER, (FAILS,))


# ---------------------------------------------------------------------------------------- symbolic exactness
def test_symbolic_check_catches_activation_specific_identity():
    """(1 − a²) is tanh' only: it holds on tanh networks but fails for an undefined activation f."""
    numeric = Setting("ganev", hidden="tanh", output="identity")
    with_sym = Setting("ganev", hidden="tanh", output="identity", symbolic=(2, 2, 2))
    f = lambda q, l: q.hadamard(q.ones(q.n[l - 1], 1) - q.hadamard(q.a[l - 1], q.a[l - 1]),  # noqa: E731
                                 q.W[l].T @ q.delta[l])
    assert check(Claim("tanh' trick", f, "delta", numeric, layers="from2", target_offset=-1)).verdict == HOLDS
    r = check(Claim("tanh' trick", f, "delta", with_sym, layers="from2", target_offset=-1))
    assert r.verdict == FAILS and r.method == "symbolic+numeric"


def test_symbolic_sympy_claim_exact_zero():
    import sympy

    x = sympy.Symbol("x", real=True)
    f = sympy.sin(x) * sympy.exp(x ** 2)
    assert check(ExpressionClaim("d/dx", sympy.cos(x) * sympy.exp(x ** 2) + 2 * x * f, sympy.diff(f, x))).verdict == HOLDS
    r = check(ExpressionClaim("d/dx sign", -(sympy.cos(x) * sympy.exp(x ** 2) + 2 * x * f), sympy.diff(f, x)))
    assert r.verdict == FAILS and Mistake.SIGN in kinds(r)


# ---------------------------------------------------------------------------------------- corrections
def test_stated_correction_verified():
    bad = _claim("∇W = δ a[l]ᵀ", lambda q, l: q.delta[l] @ q.a[l].T, "grad_W", GANEV,
                 corrections=(Correction("δ a[l−1]ᵀ", lambda q, l: q.delta[l] @ q.a[l - 1].T),
                              Correction("a δᵀ (wrong)", lambda q, l: q.a[l - 1] @ q.delta[l].T)))
    r = check(bad)
    assert [v for _, v in r.corrections] == [HOLDS, ILL_TYPED]
    assert any(e.kind == Mistake.CUSTOM and e.description == "δ a[l−1]ᵀ" for e in r.diagnosis)


def test_correct_formulas_are_not_diagnosed_on_many_architectures():
    st = Setting("ganev", hidden="sigmoid", output="identity",
                 widths=((2, 1), (5, 2, 4), (3, 4, 4, 2), (2, 3, 2, 3, 2)), seeds=(0, 1, 2))
    for f, t, kw in [(lambda q, l: q.delta[l] @ q.a[l - 1].T, "grad_W", {}),
                     (lambda q, l: q.hadamard(q.dsigma(l - 1, q.z[l - 1]), q.W[l].T @ q.delta[l]), "delta",
                      {"layers": "from2", "target_offset": -1})]:
        r = check(Claim("ok", f, t, st, **kw))
        assert r.verdict == HOLDS and r.max_error < 1e-12, r.summary()


# ---------------------------------------------------------------------------------------- listings
def test_listing_claims():
    ok = check(ListingClaim("ok", "def f(x):\n    return g(x) + 1\n", frozenset({"g"})))
    assert ok.verdict == HOLDS
    r = check(ListingClaim("colon", "def f(x)\n    return x\nprint(f(1))\n"))
    assert r.verdict == ILL_TYPED and "expected ':'" in r.reason
    assert any("missing ':'" in e.description for e in r.diagnosis)
    r = check(ListingClaim("name", "def back(x):\n    return x\nbackward(2)\nW = 1\nprint(Ws)\n"))
    assert r.verdict == ILL_TYPED
    fixes = {e.description for e in r.diagnosis}
    assert "'backward' should be 'back'" in fixes and "'Ws' should be 'W'" in fixes


# ---------------------------------------------------------------------------------------- claims as SymPy expressions
def test_sympy_expression_claims_and_their_diagnoses():
    from jacobian_bp.claims import symbolic_quantities

    st = Setting("ganev", symbolic=(2, 3, 2), widths=())
    q = symbolic_quantities(st)
    last = lambda L: [2]  # noqa: E731
    good = q.delta[2] @ q.a[1].T  # Ganev (3.3), written with the checker's symbols
    r = check(Claim.from_sympy("∇W2", good, "grad_W", st, layers=last))
    assert r.verdict == HOLDS and r.method == "symbolic" and r.max_error == 0.0
    for broken, kind in [(-good, Mistake.SIGN), (good.T, Mistake.TRANSPOSE), (2 * good, Mistake.FACTOR)]:
        rb = check(Claim.from_sympy("broken", broken, "grad_W", st, layers=last))
        assert rb.verdict in (FAILS, ILL_TYPED) and kind in kinds(rb), rb.summary()
    # σ_L for σ_l, stated as an expression: Jacobian of f_2 at z_1 instead of f_1
    wrong_act = q.Jac(2, q.z[1])
    rb = check(Claim.from_sympy("Jac", wrong_act, "J_act", st, layers=lambda L: [1]))
    assert rb.verdict == FAILS
    with pytest.raises(Exception):
        Claim.from_sympy("x", good, "grad_W", Setting("ganev"))


# ---------------------------------------------------------------------------------------- names of the claim's own fields
def test_states_and_its_former_name_kind():
    """``states`` says what a claim states (value or shape); ``kind=`` is still accepted and read back."""
    st = Setting("ganev", widths=((3, 4, 2),), seeds=(0,))
    by_states = Claim("W shape", lambda q, l: (q.n[l], q.n[l - 1]), "W", st, states="shape")
    by_kind = Claim("W shape", lambda q, l: (q.n[l], q.n[l - 1]), "W", st, kind="shape")
    assert by_states.states == by_kind.states == by_kind.kind == "shape"
    assert Claim("v", lambda q, l: q.W[l], "W", st).kind == "value"
    assert check(by_states).verdict == check(by_kind).verdict == HOLDS
    # Ganev's W_ℓ is n_ℓ × n_{ℓ−1}: the transposed shape fails as a dimension statement
    assert check(Claim("W shape", lambda q, l: (q.n[l - 1], q.n[l]), "W", st, states="shape")).verdict == FAILS
    from jacobian_bp.errors import SpecError

    with pytest.raises(SpecError, match="states"):
        Claim("x", lambda q, l: 0, "W", st, states="vibes")


def test_explanation_names_its_mistake():
    r = check(Claim("sign", lambda q, l: -(q.delta[l] @ q.a[l - 1].T), "grad_W", GANEV))
    assert r.verdict == FAILS and r.diagnosis
    assert all(e.kind is e.mistake and isinstance(e.mistake, Mistake) for e in r.diagnosis)
    assert Mistake.SIGN in {e.mistake for e in r.diagnosis}
    assert str(r.diagnosis[0]).startswith(r.diagnosis[0].mistake.value + ": ")


# ---------------------------------------------------------------------------------------- the oracle's own formulas
@pytest.mark.parametrize("name", ["identity", "sigmoid", "tanh"])
def test_symbolic_oracle_restates_the_layers_activations(name):
    """The symbolic oracle restates its activations on purpose (independent of the layers): they must agree
    with the layer classes' SymPy forms, and the oracle's derivative (SymPy's) with the layers' f' at points."""
    from jacobian_bp.claims.symbolic_oracle import _ELEMENTWISE
    from jacobian_bp.layers import layer_class

    t = sympy.Symbol("t", real=True)
    mine = _ELEMENTWISE[name](None, t)
    layer = layer_class(name)()
    assert sympy.simplify(mine - layer.sympy_f(t)) == 0
    z = np.linspace(-3, 3, 13)
    d_mine = sympy.lambdify(t, sympy.diff(mine, t), "numpy")
    np.testing.assert_allclose(np.broadcast_to(d_mine(z), z.shape), layer.df(z), rtol=1e-12, atol=1e-14)


def test_symbolic_oracle_softmax_and_losses_against_closed_forms():
    from jacobian_bp.claims.symbolic_oracle import _LOSSES, _VECTOR
    from jacobian_bp.engine.conventions import get_convention

    v = sympy.Matrix([sympy.Rational(1, 2), -1, 2])
    s = np.array(_VECTOR["softmax"](v).evalf(), dtype=float).ravel()
    e = np.exp([0.5, -1.0, 2.0])
    np.testing.assert_allclose(s, e / e.sum(), rtol=1e-14)
    y, yh = sympy.Matrix([0, 1]), sympy.Matrix([sympy.Rational(1, 4), sympy.Rational(2, 3)])
    conv = get_convention("park")  # ½‖·‖²
    assert _LOSSES["mse"](conv, y, yh) == sympy.Rational(1, 2) * (sympy.Rational(1, 16) + sympy.Rational(1, 9))
    assert _LOSSES["cross_entropy"](conv, y, yh) == -sympy.log(sympy.Rational(2, 3))
    assert sympy.simplify(_LOSSES["bce"](conv, y, yh) + sympy.log(sympy.Rational(3, 4)) + sympy.log(sympy.Rational(2, 3))) == 0


def test_activation_jacobian_at_another_width():
    """Softmax is defined on every R^n, so σ_L's Jacobian at z[l] of another width is computed (closed form
    diag(s) − s sᵀ); another vector activation is asked at its layer's width only."""
    from jacobian_bp.claims import build_instances

    d = build_instances(Setting("ganev", output="softmax", loss="cross_entropy", widths=((3, 5, 2),), seeds=(0,)))[0]
    z = np.array([0.3, -1.2, 0.7, 2.0, -0.4])  # width 5, the output layer has width 2
    s = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(d.act_jacobian(2, z), np.diag(s) - np.outer(s, s), atol=1e-15)
    d2 = build_instances(Setting("ganev", output="radial_sigmoid", widths=((3, 5, 2),), seeds=(0,)))[0]
    with pytest.raises(ValueError, match="expected a vector in R"):
        d2.act_jacobian(2, z)
