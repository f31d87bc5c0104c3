r"""The formula judge on claims with the ones vector :math:`\mathbf 1`, ``\sqrt{...}`` and ``\tfrac1n``.

:math:`\mathbf 1` is a column of ones (its transpose a row); its size comes from its use, and the claimed side is
matched to the derivative's shape (denominator layout: the gradient of a scalar is shaped like :math:`x`).
The truth is computed by the judge itself in exact arithmetic; two closed forms are also checked here against a
NumPy central difference written independently of the judge.
"""
from __future__ import annotations

import numpy as np
import pytest

from jacobian_bp.claims import FAILS, HOLDS, check_latex
from jacobian_bp.claims.formula_tree import to_text
from jacobian_bp.claims.latex_grammar import parse_expression

SHAPES = {"x": ("n", 1)}


def _check(s: str):
    return check_latex(s, shapes=SHAPES)


HOLDING = [
    r"\frac{\partial 3 \mathbf{1}^\top x}{\partial x} = 3\mathbf{1}",
    r"\frac{\partial \mathbf{1}^\top x}{\partial x} = \mathbf{1}",
    r"\frac{\partial (\mathbf{1}^\top x)^2}{\partial x} = 2 (\mathbf{1}^\top x) \mathbf{1}",
    r"\frac{\partial (\mathbf{1}^\top x)^2}{\partial x} = 2 \mathbf{1}\mathbf{1}^\top x",
    r"\frac{\partial}{\partial x} \frac{1}{n} \mathbf{1}^\top x = \frac{1}{n} \mathbf{1}",
    r"\frac{\partial}{\partial x} \tfrac1n \mathbf{1}^\top x = \tfrac1n \mathbf{1}",
    r"\frac{\partial}{\partial x} \frac1n \mathbf{1}^\top x = \frac{1}{n} \mathbf{1}",
    r"\frac{\partial \sqrt{x^\top x}}{\partial x} = \frac{x}{\sqrt{x^\top x}}",
    r"\frac{\partial \sqrt(x^\top x)}{\partial x} = \frac{x}{\sqrt{x^\top x}}",
    # the letter analogue keeps holding
    r"\frac{\partial (a^\top x)^2}{\partial x} = 2 a a^\top x",
]


@pytest.mark.parametrize("s", HOLDING)
def test_true_formulas_hold(s):
    v = _check(s)
    assert v.verdict == HOLDS, (s, v.reason)


@pytest.mark.parametrize("s, kind", [
    # the factor 2 dropped
    (r"\frac{\partial (\mathbf{1}^\top x)^2}{\partial x} = (\mathbf{1}^\top x) \mathbf{1}", "missing factor 2"),
    (r"\frac{\partial (\mathbf{1}^\top x)^2}{\partial x} = \mathbf{1}\mathbf{1}^\top x", "missing factor 2"),
    # a row where the (denominator) layout wants a column
    (r"\frac{\partial (\mathbf{1}^\top x)^2}{\partial x} = 2 (\mathbf{1}^\top x) \mathbf{1}^\top", "transpose"),
    (r"\frac{\partial 3 \mathbf{1}^\top x}{\partial x} = 3\mathbf{1}^\top", "transpose"),
])
def test_wrong_variants_fail_with_their_diagnosis(s, kind):
    v = _check(s)
    assert v.verdict == FAILS, (s, v.reason)
    assert v.diagnosis == kind, (s, v.diagnosis, v.description)
    # the correction the judge proposes is itself a true formula
    lhs = s.split("=")[0]
    fixed = _check(lhs + "= " + v.corrected.split("  (")[0])
    assert fixed.verdict == HOLDS, (v.corrected, fixed.reason)


@pytest.mark.parametrize("s, verdict", [
    # a scalar times an unsized identity: the identity takes its size from the sum, not from the scalar
    (r"\frac{\partial x a^\top x}{\partial x} = x a^\top + (a^\top x) I", HOLDS),
    (r"\frac{\partial x \mathbf{1}^\top x}{\partial x} = \mathbf{1}^\top x I + x \mathbf{1}^\top", HOLDS),
    (r"\frac{\partial x \mathbf{1}^\top x}{\partial x} = x \mathbf{1}^\top + I", FAILS),
    # numerator layout: the gradient is a row, so 1ᵀ holds and 1 is the transpose
    (r"\frac{\partial 3 \mathbf{1}^\top x}{\partial x} = 3\mathbf{1}^\top", HOLDS),
    (r"\frac{\partial 3 \mathbf{1}^\top x}{\partial x} = 3\mathbf{1}", FAILS),
])
def test_numerator_layout_and_scaled_identity(s, verdict):
    v = check_latex(s, "magnus", shapes=SHAPES)
    assert v.verdict == verdict, (s, v.reason)


def test_row_of_ones_is_a_shape_mismatch():
    v = _check(r"\frac{\partial 3 \mathbf{1}^\top x}{\partial x} = 3\mathbf{1}^\top")
    assert v.verdict == FAILS and "1×" in v.reason and "where the derivative is" in v.reason


@pytest.mark.parametrize("wrong", [r"\frac{1}{n-1} \mathbf{1}", r"\frac{2}{n} \mathbf{1}"])
def test_wrong_normalizer_fails(wrong):
    v = _check(r"\frac{\partial}{\partial x} \frac{1}{n} \mathbf{1}^\top x = " + wrong)
    assert v.verdict == FAILS
    assert v.reason.startswith("differs from the derivative")
    # the letter analogue gets the same diagnosis kind
    w = _check(r"\frac{\partial}{\partial x} \frac{1}{n} a^\top x = " + wrong.replace(r"\mathbf{1}", "a"))
    assert w.verdict == FAILS and w.diagnosis == v.diagnosis
    assert v.diagnosis == "wrong normalizer"
    fixed = _check(r"\frac{\partial}{\partial x} \frac{1}{n} \mathbf{1}^\top x = " + v.corrected)
    assert fixed.verdict == HOLDS, fixed.reason  # the corrected formula, judged afresh, holds


def test_sqrt_wrong_denominator_fails():
    v = _check(r"\frac{\partial \sqrt{x^\top x}}{\partial x} = \frac{x}{x^\top x}")
    assert v.verdict == FAILS, v.reason
    assert v.reason.startswith("differs from the derivative")


def test_grammar_sqrt_braces_and_tfrac_letter():
    assert parse_expression(r"\sqrt{x^\top x}") == parse_expression(r"\sqrt(x^\top x)")
    assert to_text(parse_expression(r"\sqrt{x}^2")) == "sqrt(x)^2"
    for s in (r"\tfrac1n x", r"\frac1n x", r"\dfrac 1 n x"):
        assert parse_expression(s) == parse_expression(r"\frac{1}{n} x"), s
    assert parse_expression(r"\tfrac12 x") == parse_expression(r"\frac{1}{2} x")


# ---------------------------------------------------------------- independent oracle: central differences
def _central_gradient(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("n", [3, 5])
def test_closed_forms_against_central_differences(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=n) + 0.5
    ones = np.ones(n)
    # (1ᵀx)² -> 2 1 1ᵀ x
    g = _central_gradient(lambda z: float(ones @ z) ** 2, x)
    np.testing.assert_allclose(g, 2 * ones * (ones @ x), rtol=1e-7, atol=1e-7)
    assert _check(r"\frac{\partial (\mathbf{1}^\top x)^2}{\partial x} = 2 \mathbf{1}\mathbf{1}^\top x").verdict == HOLDS
    # sqrt(xᵀx) -> x / sqrt(xᵀx), and not x / (xᵀx)
    g = _central_gradient(lambda z: float(np.sqrt(z @ z)), x)
    np.testing.assert_allclose(g, x / np.sqrt(x @ x), rtol=1e-7, atol=1e-7)
    assert not np.allclose(g, x / (x @ x))
    assert _check(r"\frac{\partial \sqrt{x^\top x}}{\partial x} = \frac{x}{\sqrt{x^\top x}}").verdict == HOLDS
    assert _check(r"\frac{\partial \sqrt{x^\top x}}{\partial x} = \frac{x}{x^\top x}").verdict == FAILS


def test_sympy_third_opinion_runs_and_agrees_on_unsized_ones():
    v = check_latex(r"\frac{\partial (\mathbf{1}^\top x)^2}{\partial x} = 2 \mathbf{1}\mathbf{1}^\top x", shapes=SHAPES,
                    sympy_check=True)
    # the third opinion sizes the ones vector from the shape inference too, and SymPy's own derivative agrees
    assert v.verdict == HOLDS and "SymPy's symbolic derivative agrees" in v.confidence, v.confidence


@pytest.mark.parametrize("function, claimed", [
    (r"\frac{1}{n-1} x^\top x", r"\frac{2}{n} x"),        # the biased normalizer where the unbiased one is used
    (r"\frac{1}{n} x^\top x", r"\frac{2}{n-1} x"),        # the unbiased one where the biased one is used
    (r"\frac{1}{n} \mathbf{1}^\top x", r"\frac{1}{n+1} \mathbf{1}"),
])
def test_a_normalizer_off_by_one_is_named_and_its_correction_holds(function, claimed):
    v = _check(rf"\frac{{\partial}}{{\partial x}} {function} = {claimed}")
    assert v.verdict == FAILS and v.diagnosis == "wrong normalizer", (v.reason, v.diagnosis)
    fixed = _check(rf"\frac{{\partial}}{{\partial x}} {function} = {v.corrected}")
    assert fixed.verdict == HOLDS, fixed.reason
    # independent of the judge: central differences of the function against the claimed formula, n = 4
    rng = np.random.default_rng(5)
    x, n, h = rng.normal(size=4), 4, 1e-6
    den = {"n-1": n - 1, "n": n}["n-1" if "n-1" in function else "n"]
    f = (lambda v: v @ v / den) if "x^\\top x" in function else (lambda v: v.sum() / den)
    fd = np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(n)])
    scale = {r"\frac{2}{n} x": 2 * x / n, r"\frac{2}{n-1} x": 2 * x / (n - 1), r"\frac{1}{n+1} \mathbf{1}": np.ones(n) / (n + 1)}
    assert np.max(np.abs(fd - scale[claimed])) > 1e-3  # the claimed formula is really wrong
