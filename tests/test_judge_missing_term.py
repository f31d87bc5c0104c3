"""The formula judge's "missing term", "missing factor", "extra term" and constant-ratio diagnoses.

Oracles: the truth is always computed by the project (exact forward mode for LaTeX claims, the
complex step for NumPy claims); independently, the corrected formulas the judge names are compared
with PyTorch autograd of the function (hand-written here, never the code under test), and a named
diagnosis is required to survive re-verification on fresh instances (a stated correction that only
fits the judging instances is not named).
"""
from __future__ import annotations

import numpy as np
import pytest

from jacobian_bp.claims import mistakes as M
from jacobian_bp.claims.derivative import DerivativeClaim, StatedCorrection
from jacobian_bp.claims.judge import FAILS, HOLDS, check, check_latex
from jacobian_bp.errors import SpecError


# ============================================================================ LaTeX claims
@pytest.mark.parametrize("latex, kw, kind, corrected", [
    (r"\frac{\partial\, \mathbf x^\top B \mathbf x}{\partial \mathbf x} = B \mathbf x", {}, M.MISSING_TERM,
     r"B x + B^\top x"),
    (r"\frac{\partial}{\partial X} \operatorname{tr}(A X B X) = A^\top X^\top B^\top",
     {"shapes": {"A": ("n", "n"), "B": ("n", "n"), "X": ("n", "n")}}, M.MISSING_TERM,
     r"A^\top X^\top B^\top + B^\top X^\top A^\top"),
    (r"\frac{\partial}{\partial x} \|A x - b\|^2 = 2 A^\top A x", {}, M.MISSING_TERM, r"2 A^\top A x - 2 A^\top b"),
    (r"\frac{\partial}{\partial x^\top}\left(x + \tanh(W x)\right) = \operatorname{diag}(1 - \tanh^2(W x))\, W", {},
     M.MISSING_TERM, None),
    (r"\frac{\partial}{\partial b} \left(\tfrac12 \|W x + b - y\|^2 + \tfrac{\lambda}{2} \|W\|_F^2\right) = W x + b - y + \lambda b",
     {}, M.EXTRA_TERM, r"W x + b - y"),
    (r"\frac{\partial C}{\partial z} = \sigma(z) - y", {"definitions": {"C": r"\tfrac12 \|\sigma(z) - y\|^2"}},
     M.MISSING_FACTOR, None),
    (r"\frac{\partial}{\partial x} \tfrac12 \|W x - y\|^2 = W x - y", {"shapes": {"W": ("n", "m"), "x": ("m",), "y": ("n",)}},
     M.MISSING_FACTOR, r"W^\top \left(W x - y\right)"),
])
def test_latex_term_and_factor_diagnoses(latex, kw, kind, corrected):
    v = check_latex(latex, **kw)
    assert v.verdict != HOLDS and v.diagnosis == kind, (v.diagnosis, v.description)
    if corrected is not None:
        assert v.corrected == corrected
    # the corrected formula, read back from its LaTeX, holds (judged afresh)
    again = check_latex(latex.split("=")[0] + "= " + v.corrected, **kw)
    assert again.verdict == HOLDS, str(again)


@pytest.mark.parametrize("rhs", [
    "0",                                     # a zero claim "misses" everything: no diagnosis
    r"2 A^\top b",                           # two slips at once: no single term explains it
    r"\exp(x)",
])
def test_no_term_is_named_when_none_fits(rhs):
    v = check_latex(r"\frac{\partial}{\partial x} \|A x - b\|^2 = " + rhs)
    assert v.verdict != HOLDS and v.diagnosis is None, (v.diagnosis, v.description)


def test_named_terms_against_torch_autograd():
    """The corrected formulas (missing term Bᵀx; missing −2Aᵀb; tr(AXBX)'s second term) equal torch's gradients."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    B, x = rng.standard_normal((4, 4)), rng.standard_normal((4, 1))
    xt = torch.tensor(x, requires_grad=True)
    (xt.T @ torch.tensor(B) @ xt).sum().backward()
    assert np.allclose(B @ x + B.T @ x, xt.grad.numpy(), atol=1e-12)
    A, b = rng.standard_normal((5, 3)), rng.standard_normal((5, 1))
    x = rng.standard_normal((3, 1))
    xt = torch.tensor(x, requires_grad=True)
    ((torch.tensor(A) @ xt - torch.tensor(b)) ** 2).sum().backward()
    assert np.allclose(2 * A.T @ A @ x - 2 * A.T @ b, xt.grad.numpy(), atol=1e-12)
    A, B, X = (rng.standard_normal((3, 3)) for _ in range(3))
    Xt = torch.tensor(X, requires_grad=True)
    torch.trace(torch.tensor(A) @ Xt @ torch.tensor(B) @ Xt).backward()
    assert np.allclose(A.T @ X.T @ B.T + B.T @ X.T @ A.T, Xt.grad.numpy(), atol=1e-12)


# ============================================================================ NumPy claims
def _attn(Q, K):
    return np.sum(Q @ K.T) / np.sqrt(Q.shape[1])


def test_constant_ratio_named_as_an_expression_of_the_sizes():
    shapes = {"Q": ("T", "d_k"), "K": ("S", "d_k")}
    sizes = [{"T": 3, "S": 2, "d_k": 4}, {"T": 2, "S": 5, "d_k": 9}]
    claim = lambda Q, K: np.ones((Q.shape[0], 1)) @ K.sum(0, keepdims=True)  # noqa: E731  (1/√d_k missing)
    v = check(DerivativeClaim("dQ", _attn, "Q", claim, shapes=shapes, sizes=sizes, latex=r"\frac{\partial L}{\partial Q}=\mathbf 1\mathbf 1^\top K"))
    assert v.verdict == FAILS and v.diagnosis == M.NORMALIZER
    assert "1/√d_k" in v.description and v.corrected == r"\frac{1}{\sqrt{d_k}}\,\Bigl(\mathbf 1\mathbf 1^\top K\Bigr)"
    assert "d_k=4" in v.confidence and "d_k=9" in v.confidence and "do not tell" not in v.description
    # sizes that cannot tell 1/S from 1/√d_k (S² = d_k): both are said
    amb = [{"T": 3, "S": 2, "d_k": 4}, {"T": 2, "S": 3, "d_k": 9}]
    v = check(DerivativeClaim("dQ", _attn, "Q", claim, shapes=shapes, sizes=amb))
    assert v.diagnosis == M.NORMALIZER and "do not tell it from" in v.description
    assert {"1/S", "1/√d_k"} <= set(v.description.replace(",", " ").replace(":", " ").split())
    # with one size only, the constant is named as a number
    v = check(DerivativeClaim("dQ", _attn, "Q", claim, shapes={"Q": (3, 4), "K": (2, 4)}))
    assert v.diagnosis == M.NORMALIZER and "1/2" in v.description
    # sign and factor 2 keep their names
    true = lambda Q, K: np.ones((Q.shape[0], 1)) @ K.sum(0, keepdims=True) / 2  # noqa: E731
    assert check(DerivativeClaim("s", _attn, "Q", lambda Q, K: -true(Q, K), shapes={"Q": (3, 4), "K": (2, 4)})).diagnosis == M.SIGN
    assert check(DerivativeClaim("f", _attn, "Q", lambda Q, K: true(Q, K) / 2, shapes={"Q": (3, 4), "K": (2, 4)})).diagnosis == M.FACTOR_2
    assert check(DerivativeClaim("ok", _attn, "Q", true, shapes={"Q": (3, 4), "K": (2, 4)})).verdict == HOLDS


def test_a_ratio_that_changes_with_the_values_is_not_a_constant():
    f = lambda x: np.sum(x ** 3) / 3  # noqa: E731   truth x², claim x: ratio x, not constant
    v = check(DerivativeClaim("cube", f, "x", lambda x: x, shapes={"x": (4,)}))
    assert v.verdict == FAILS and v.diagnosis is None


def _gelu(x):
    from scipy.special import erf
    return x * 0.5 * (1 + erf(x / np.sqrt(2)))


def _Phi(x):
    from scipy.special import erf
    return 0.5 * (1 + erf(x / np.sqrt(2)))


def _xphi(x):
    return x * np.exp(-x ** 2 / 2) / np.sqrt(2 * np.pi)


def test_stated_term_both_signs_and_the_first_that_verifies():
    wrong_term = StatedCorrection("Φ(x) again", term=_Phi, latex=r"\Phi(x)")
    right = StatedCorrection("x φ(x)", term=_xphi, latex=r"x\varphi(x)")
    v = check(DerivativeClaim("gelu", _gelu, "x", _Phi, shapes={"x": (1,)}, instances=3,
                              corrections=(wrong_term, right), latex=r"\frac{d}{dx}x\Phi(x)=\Phi(x)"))
    assert v.diagnosis == M.MISSING_TERM and v.description == "x φ(x)" and v.corrected == r"\Phi(x) + x\varphi(x)"
    # the term stated with the opposite sign is still recognised, and said so
    neg = StatedCorrection("−x φ(x)", term=lambda x: -_xphi(x), latex=r"-x\varphi(x)")
    v = check(DerivativeClaim("gelu", _gelu, "x", _Phi, shapes={"x": (1,)}, instances=3, corrections=(neg,)))
    assert v.diagnosis == M.MISSING_TERM and "opposite sign" in v.description
    # a factor
    v = check(DerivativeClaim("gelu", _gelu, "x", lambda x: _Phi(x) / 2, shapes={"x": (1,)}, instances=3,
                              corrections=(StatedCorrection("a 2 and x φ(x)", factor=lambda x: 2.0),)))
    assert v.diagnosis is None  # 2Φ/2 = Φ is not the derivative: the factor does not verify


def test_a_correction_that_fits_only_the_judging_instances_is_not_named():
    """Re-verification on fresh instances: a 'term' that equals the residual on the first two calls only."""
    calls = {"n": 0}

    def coincidental(x):
        calls["n"] += 1
        return _xphi(x) if calls["n"] <= 2 else _xphi(x) + 1.0

    v = check(DerivativeClaim("gelu", _gelu, "x", _Phi, shapes={"x": (1,)}, instances=2,
                              corrections=(StatedCorrection("coincidence", term=coincidental),)))
    assert calls["n"] >= 3 and v.verdict == FAILS and v.diagnosis is None and v.corrected is None


def test_missing_identity_found_by_the_judge():
    f = lambda x, W: x + np.tanh(W @ x)  # noqa: E731
    from jacobian_bp.claims.derivative import Layout
    v = check(DerivativeClaim("res", f, "x", lambda x, W: (1 - np.tanh(W @ x) ** 2) * W, layout=Layout("numerator"),
                              shapes={"x": (4, 1), "W": (4, 4)}))
    assert v.diagnosis == M.MISSING_TERM and "identity" in v.description


def test_stated_correction_validation():
    with pytest.raises(SpecError, match="exactly one of"):
        StatedCorrection("x")
    with pytest.raises(SpecError, match="exactly one of"):
        StatedCorrection("x", term=_Phi, factor=_Phi)
    with pytest.raises(SpecError, match="callable"):
        StatedCorrection("x", term=3)
    with pytest.raises(SpecError, match="kind"):
        StatedCorrection("x", formula=_Phi)
    with pytest.raises(SpecError, match="StatedCorrection"):
        DerivativeClaim("g", _gelu, "x", _Phi, shapes={"x": (1,)}, corrections=("a term",))
    with pytest.raises(SpecError, match="mistakes.KINDS"):
        check(DerivativeClaim("g", _gelu, "x", _Phi, shapes={"x": (1,)},
                              corrections=(StatedCorrection("x", formula=_Phi, kind="nonsense"),)))
    with pytest.raises(SpecError, match="sizes"):
        check(DerivativeClaim("g", _gelu, "x", _Phi, shapes={"x": ("n",)}))
    with pytest.raises(SpecError, match="positive int"):
        check(DerivativeClaim("g", _gelu, "x", _Phi, shapes={"x": ("n",)}, sizes=[{"n": 0}]))
    with pytest.raises(SpecError, match="every entry of sizes"):
        check(DerivativeClaim("g", _gelu, "x", _Phi, shapes={"x": ("n",)}, sizes=[{"m": 2}]))


def test_identify_constant():
    c = M.identify_constant([0.5, 1 / 3], [{"d_k": 4}, {"d_k": 9}])
    assert c.text == "1/√d_k" and c.latex == r"\frac{1}{\sqrt{d_k}}"
    assert M.identify_constant([1 / 15, 1 / 8], [{"N": 5, "K": 3}, {"N": 4, "K": 2}]).text == "1/(K·N)"
    assert M.identify_constant([2 ** -0.5] * 2, [{}, {}]).text == "1/√2"
    assert M.identify_constant([-1.0, -1.0], [{}, {}]).kind == M.SIGN
    assert M.identify_constant([0.5, 0.7], [{}, {}]) is None        # not constant, sizes do not vary
    assert M.identify_constant([0.123, 0.987], [{"n": 2}, {"n": 3}]) is None


def _quad(x, B):
    return (x.T @ B @ x).sum()


def test_a_slip_in_one_stated_term():
    """``terms=``: the claim's summands; the judge names an extra term, a sign or a factor on one of them."""
    shapes = {"x": (4, 1), "B": (4, 4)}
    Bx = lambda x, B: B @ x  # noqa: E731
    BTx = lambda x, B: B.T @ x  # noqa: E731
    # a term that does not belong
    v = check(DerivativeClaim("q", _quad, "x", lambda x, B: B @ x + B.T @ x + x, shapes=shapes,
                              terms={"Bx": Bx, "Bᵀx": BTx, "x": lambda x, B: x}))
    assert v.diagnosis == M.EXTRA_TERM and "'x'" in v.description
    # the sign of one term
    v = check(DerivativeClaim("q", _quad, "x", lambda x, B: B @ x - B.T @ x, shapes=shapes,
                              terms=[("Bx", Bx, "Bx"), ("−Bᵀx", lambda x, B: -BTx(x, B), "-B^\\top x")]))
    assert v.diagnosis == M.SIGN and "'−Bᵀx'" in v.description
    assert v.corrected == r"\bigl(Bx\bigr) + \bigl(-\bigl(-B^\top x\bigr)\bigr)"
    # a factor on one term
    v = check(DerivativeClaim("q", _quad, "x", lambda x, B: B @ x + 2 * B.T @ x, shapes=shapes,
                              terms={"Bx": Bx, "2Bᵀx": lambda x, B: 2 * BTx(x, B)}))
    assert v.diagnosis == M.NORMALIZER and "1/2" in v.description
    # the same claims without terms: no term-level diagnosis
    assert check(DerivativeClaim("q", _quad, "x", lambda x, B: B @ x + B.T @ x + x, shapes=shapes)).diagnosis is None
    with pytest.raises(SpecError, match="do not add up"):
        check(DerivativeClaim("q", _quad, "x", lambda x, B: B @ x, shapes=shapes, terms={"Bx": Bx, "Bᵀx": BTx}))
    with pytest.raises(SpecError, match="at least two"):
        DerivativeClaim("q", _quad, "x", Bx, shapes=shapes, terms={"Bx": Bx})
    with pytest.raises(SpecError, match="terms must be"):
        DerivativeClaim("q", _quad, "x", Bx, shapes=shapes, terms=[("Bx", 3), ("y", Bx)])


def test_perturbed_textbook_claims_get_sound_diagnoses_only():
    """Soundness: true catalogue claims perturbed by an added term (the argument itself, or an extra
    matrix), judged; whenever a diagnosis is named, its corrected formula (read back) holds."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from judge_claims import CLAIMS
    from jacobian_bp.claims.latex_grammar import parse_claim

    named = 0
    for c in [c for c in CLAIMS if c["expect"] == HOLDS][:24]:
        lhs, rhs = c["latex"].split("=", 1)
        wrt = parse_claim(c["latex"]).wrt
        for extra in (rf"\left({rhs}\right) + {wrt}", rf"\left({rhs}\right) - 3 {wrt}"):
            try:
                v = check_latex(lhs + "= " + extra, **c["kw"])
            except SpecError:
                continue
            if v.verdict == HOLDS or not v.diagnosis or "layout" in (v.corrected or ""):
                continue
            named += 1
            again = check_latex(lhs + "= " + v.corrected, **c["kw"])
            assert again.verdict == HOLDS, (c["id"], extra, v.diagnosis, v.corrected)
    assert named >= 10
