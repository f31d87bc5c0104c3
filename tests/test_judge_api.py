"""The formula judge's API, LaTeX reader and command-line entry point.

Oracles: hand-written closed forms (NumPy), central differences written here, and the expected
parse trees written out by hand; hostile inputs must fail with a clear error and evaluate nothing.
"""
from __future__ import annotations

import builtins
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

pytest.importorskip("lark")

from jacobian_bp.claims.derivative import DerivativeClaim, Layout, Node, evaluate, num, sym  # noqa: E402
from jacobian_bp.claims.judge import (FAILS, HOLDS, ILL_TYPED, Verdict, check, check_latex, claim_from_latex,  # noqa: E402
                                      main_check)
from jacobian_bp.claims.latex_grammar import LatexError, parse_claim, parse_expression, to_latex  # noqa: E402
from jacobian_bp.claims import mistakes as M  # noqa: E402
from jacobian_bp.errors import SpecError  # noqa: E402


# ----------------------------------------------------------------------------- reading LaTeX
@pytest.mark.parametrize("latex, function, wrt, claimed", [
    (r"\frac{\partial}{\partial X} \operatorname{tr}(A X B) = A^\top B^\top", "tr(((A X) B))", "X", "(Aᵀ Bᵀ)"),
    (r"\frac{\partial \log|\det X|}{\partial X} = X^{-\top}", "logdet(X)", "X", "X⁻¹ᵀ"),
    (r"\frac{\partial \log\det X}{\partial X} = X^{-T}", "logdet(X)", "X", "X⁻¹ᵀ"),
    (r"\nabla_{\mathbf x} \mathbf{x}^\top A \mathbf x = (A + A^T)\mathbf{x}", "((xᵀ A) x)", "x", "((A + Aᵀ) x)"),
    (r"\frac{\partial \ell}{\partial W^{[l]}} = \delta^{[l]} \left(a^{[l-1]}\right)^\top", "ell", "W^[l]",
     "(delta^[l] a^[l-1]ᵀ)"),
    (r"\frac{\partial C}{\partial \mathbf b} = (\sigma(W x + b) - y) \odot \sigma'(W x + b)", "C", "b",
     "((sigma(((W x) + b)) - y) ⊙ sigma'(((W x) + b)))"),
    (r"\frac{\partial C}{\partial b} = \sigma^{\prime}(z) \circ \boldsymbol{\delta}", "C", "b", "(sigma'(z) ⊙ delta)"),
    (r"\frac{\partial \operatorname{vec}(AXB)}{\partial \operatorname{vec}(X)^\top} = B^\top \otimes A", "((A X) B)", "X",
     "(Bᵀ ⊗ A)"),
    (r"\frac{\partial}{\partial z} \log \sum_i e^{z_i} = \operatorname{softmax}(z)", "log(sum(exp(z)))", "z", "softmax(z)"),
    (r"\frac{\partial}{\partial x} \tfrac12 \|A x - b\|_2^2 = A^\top(Ax - b)", "((1 / 2) norm(((A x) - b))^2)", "x",
     "(Aᵀ ((A x) - b))"),
    (r"\frac{\partial L}{\partial X} = \operatorname{full}(\operatorname{dilate}_{s}(G), \operatorname{rot180}(K))", "L", "X",
     "full(dilate[p=s](G), rot180(K))"),
    (r"\frac{\partial}{\partial K} \left\langle G, \operatorname{conv}(X, K) \right\rangle = X \star G", "inner(G, conv2d(X, K))",
     "K", "(X ⋆ G)".replace("⋆", "⋆")),
    (r"\frac{\partial}{\partial x} \frac{1}{2} x^\top x \cdot 0.5 = 0.5 x", "((((1 / 2) xᵀ) x) · 1/2)", "x", "(1/2 x)"),
])
def test_reads_the_notation(latex, function, wrt, claimed):
    pc = parse_claim(latex)
    assert str(pc.function) == function
    assert pc.wrt == wrt
    got = str(pc.claimed)
    if "⋆" in claimed:
        assert pc.claimed.op == "corr"
    else:
        assert got == claimed


def test_layout_hints_from_the_notation():
    assert parse_claim(r"\frac{\partial f}{\partial x^\top} = a^\top").layout_hint == "numerator"
    pc = parse_claim(r"\frac{\partial \operatorname{vec}(AXB)}{\partial \operatorname{vec}(X)^\top} = B^\top \otimes A")
    assert pc.layout_hint == "numerator" and pc.vec_hint


def test_sum_over_indices_is_elementwise():
    e = parse_expression(r"\sum_{i,j} Y_{ij} \log P_{ij}")
    env = {"Y": np.array([[1.0, 2.0], [3.0, 4.0]]), "P": np.array([[0.5, 0.25], [2.0, 1.0]])}
    got = float(np.real(evaluate(e, env, exact=False))[0, 0])
    assert got == pytest.approx(float(np.sum(env["Y"] * np.log(env["P"]))))


def test_printed_latex_reads_back():
    for text in [r"-X^{-\top} a b^\top X^{-\top}", r"\left(A + A^\top\right) x", r"B^\top \otimes A",
                 r"\operatorname{diag}\left(s\right) - s s^\top", r"\frac{1}{K} \frac{2}{N} \left(\hat{y} - y\right)"]:
        e = parse_expression(text)
        assert parse_expression(to_latex(e)) == e


@pytest.mark.parametrize("latex, where, what", [
    (r"\frac{\partial}{\partial X} \operatorname{tr}(A X B) = A^\top @ B^\top", "column {at}", "@"),
    ("\\frac{\\partial f}{\\partial x} =\n a + \\foo b", "line 2, column 6", "\\foo"),
    (r"\frac{\partial}{\partial X} \operatorname{tr}(A X B) = (A^\top B^\top", "ends too early", ""),
    (r"\frac{\partial}{\partial X} \operatorname{trace2}(A X) = A", "unknown operator name", "trace2"),
    (r"= A", "column 1", "="),
])
def test_parse_errors_name_the_position(latex, where, what):
    with pytest.raises(LatexError) as e:
        parse_claim(latex)
    msg = str(e.value)
    where = where.format(at=latex.find("@") + 1)
    assert where in msg and what in msg, msg


@pytest.mark.parametrize("hostile", [
    r"\input{/etc/passwd}",
    r"\def\x{1} \frac{\partial}{\partial x} x = \x",
    r"\newcommand{\f}{x} \frac{\partial}{\partial x} \f = 1",
    r"\begin{verbatim} x \end{verbatim}",
    r"__import__('os').system('true')",
    r"\frac{\partial}{\partial x} x = \csname x\endcsname",
    "x" * 5000,
    "(" * 200 + "x" + ")" * 200,
    "",
])
def test_hostile_inputs_fail_clearly_and_evaluate_nothing(hostile, monkeypatch):
    calls = []
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(builtins, "exec", lambda *a, **k: calls.append(a))
    import sympy
    monkeypatch.setattr(sympy, "sympify", lambda *a, **k: calls.append(a))
    with pytest.raises(LatexError) as e:
        check_latex(hostile)
    assert str(e.value) and "\n" not in str(e.value)
    assert not calls


def test_not_a_string_is_an_error():
    with pytest.raises(LatexError):
        parse_claim(42)  # type: ignore[arg-type]


def test_import_stays_light():
    code = "import sys, jacobian_bp, jacobian_bp.claims.judge; print('lark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


# ----------------------------------------------------------------------------- the truth
def test_truth_against_a_hand_closed_form_and_central_differences():
    """∂ tr(A X B)/∂X computed by the judge equals Aᵀ Bᵀ (closed form) and central differences."""
    rng = np.random.default_rng(3)
    A, X, B = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal((2, 3))
    from jacobian_bp.claims.judge import _Judge
    claim = claim_from_latex(r"\frac{\partial}{\partial X} \operatorname{tr}(A X B) = A^\top B^\top",
                             shapes={"A": (3, 4), "X": (4, 2), "B": (2, 3)})
    j = _Judge(claim)
    I, t = j.instances[0], j.truths[0]
    T = j.arranged(t, claim.layout, False)
    env = t["float_env"]
    assert np.allclose(T, env["A"].T @ env["B"].T, atol=1e-14)
    f = lambda Xv: np.trace(env["A"] @ Xv @ env["B"])  # noqa: E731
    cd = np.zeros_like(env["X"])
    for idx in np.ndindex(*cd.shape):
        E = np.zeros_like(cd)
        E[idx] = 1e-6
        cd[idx] = (f(env["X"] + E) - f(env["X"] - E)) / 2e-6
    assert np.allclose(T, cd, atol=1e-7)
    del A, X, B


def test_check_a_claim_built_from_nodes():
    F = Node("tr", (Node("mul", (sym("A"), sym("X"))),))
    v = check(DerivativeClaim("tr(AX)", F, "X", Node("T", (sym("A"),)), shapes={"A": ("n", "m"), "X": ("m", "n")}))
    assert v.verdict == HOLDS and "agrees" in v.confidence
    v = check(DerivativeClaim("tr(AX) numerator", F, "X", sym("A"), layout=Layout("numerator"),
                              shapes={"A": ("n", "m"), "X": ("m", "n")}))
    assert v.verdict == HOLDS


def test_verdict_reads_well():
    v = check_latex(r"\frac{\partial \log|\det X|}{\partial X} = X^{-1}", name="Cookbook (57)?", source="test")
    assert isinstance(v, Verdict) and v.verdict == FAILS and not v.holds
    assert v.diagnosis == M.LOGDET_TRANSPOSE and v.corrected == r"X^{-\top}"
    s = str(v)
    assert "FAILS" in s and "diagnosis" in s and "corrected: X^{-\\top}" in s and "counterexample" in s
    latex = v._repr_latex_()
    assert latex.startswith("$") and r"X^{-\top}" in latex


def test_no_misleading_diagnosis():
    v = check_latex(r"\frac{\partial}{\partial X} \operatorname{tr}(A X) = \exp(A^\top)", shapes={"A": ("n", "m"), "X": ("m", "n")})
    assert v.verdict == FAILS and v.diagnosis is None
    assert "none of the known mistakes" in str(v)
    # Aᵀ + X is the truth Aᵀ plus a term that does not belong: named as such, with the verified correction
    v = check_latex(r"\frac{\partial}{\partial X} \operatorname{tr}(A X) = A^\top + X", shapes={"A": ("n", "m"), "X": ("m", "n")})
    assert v.verdict == FAILS and v.diagnosis == M.EXTRA_TERM and v.corrected == r"A^\top"


def test_ill_typed_claim():
    v = check_latex(r"\frac{\partial}{\partial X} \operatorname{tr}(A X B) = B^\top A^\top",
                    shapes={"A": ("p", "m"), "X": ("m", "n"), "B": ("n", "p")})
    assert v.verdict == ILL_TYPED and v.diagnosis == M.CHAIN_ORDER
    assert "m and n" in v.reason or "n and m" in v.reason


def test_kink_convention_at_given_points():
    relu_step = r"\frac{\partial}{\partial x} \operatorname{ReLU}(x) = \operatorname{sign}(\operatorname{ReLU}(x))"
    assert check_latex(relu_step, "pytorch", shapes={"x": ()}, points=[{"x": 0}]).holds
    # with the convention ReLU'(0) = 1 the same formula is wrong at the kink, and only there
    v = check_latex(relu_step, {"kinks": {"relu": 1}}, shapes={"x": ()}, points=[{"x": 0}])
    assert v.verdict == FAILS and "given point" in v.counterexample
    assert check_latex(relu_step, {"kinks": {"relu": 1}}, shapes={"x": ()}).holds  # generic points never hit the kink


def test_symmetric_point_given_by_the_user():
    claim = r"\frac{\partial}{\partial X} \operatorname{tr}(A X) = A"
    sym_a = [[1, 2], [2, 5]]
    v = check_latex(claim, shapes={"A": (2, 2), "X": (2, 2)}, points=[{"A": sym_a}])
    assert v.verdict == FAILS and v.diagnosis == M.SYMMETRY  # generic A: fails; the diagnosis says why


def test_transcription_slip():
    kw = dict(shapes={"X": ("N", "D"), "W": ("D", "M")})
    slip = check_latex(r"\frac{\partial}{\partial W} \langle G, X W \rangle = X G", later_use=r"X^\top G", **kw)
    assert slip.transcription_slip and "transcription slip" in str(slip)
    err = check_latex(r"\frac{\partial}{\partial W} \langle G, X W \rangle = X G", later_use=r"X G", **kw)
    assert not err.transcription_slip


def test_settings_validate():
    with pytest.raises(SpecError, match="unknown preset"):
        check_latex(r"\frac{\partial}{\partial x} x^\top x = 2 x", "bishop-2006")
    with pytest.raises(SpecError, match="unknown knob"):
        check_latex(r"\frac{\partial}{\partial x} x^\top x = 2 x", {"strid": 2})
    with pytest.raises(SpecError, match="stride|s must"):
        check_latex(r"\frac{\partial}{\partial x} x^\top x = 2 x", {"stride": 0})
    with pytest.raises(SpecError, match="does not depend"):
        check_latex(r"\frac{\partial}{\partial y} x^\top x = 2 x")
    with pytest.raises(SpecError, match="not well formed|sizes"):
        check_latex(r"\frac{\partial}{\partial X} \operatorname{tr}(X) = I", shapes={"X": ("m", "n")})


def test_conv_truth_agrees_with_the_conv2d_layer():
    v = check_latex(r"\frac{\partial}{\partial X} \langle G, \operatorname{conv}(X, K) + b \rangle = "
                    r"\operatorname{full}(\operatorname{dilate}_{s}(G), \operatorname{rot180}(K))",
                    {"stride": 2}, shapes={"X": (5, 5), "K": (3, 3), "b": ()})
    assert v.holds and "Conv2d layer Jacobians agree" in v.confidence


def test_conv_truth_against_torch():
    torch = pytest.importorskip("torch")
    from jacobian_bp.claims.judge import _Judge
    claim = claim_from_latex(r"\frac{\partial L}{\partial K} = X \star \operatorname{dilate}_{s}(G)", {"stride": 2, "padding": 1},
                             definitions={"L": r"\langle G, \operatorname{conv}(X, K) \rangle"},
                             shapes={"X": (5, 6), "K": (3, 2)})
    j = _Judge(claim)
    env, T = j.truths[0]["float_env"], j.arranged(j.truths[0], claim.layout, False)
    X = torch.tensor(env["X"][None, None], dtype=torch.float64)
    K = torch.tensor(env["K"][None, None], dtype=torch.float64, requires_grad=True)
    Y = torch.nn.functional.conv2d(X, K, stride=2, padding=1)
    (Y * torch.tensor(env["G"][None, None])).sum().backward()
    assert np.allclose(T, K.grad.numpy()[0, 0], atol=1e-12)


def test_exact_arithmetic_is_exact():
    F = Node("tr", (Node("inv", (sym("X"),)),))
    X = np.array([[Fraction(2), Fraction(1, 3)], [Fraction(-1, 7), Fraction(5)]], dtype=object)
    from jacobian_bp.claims.derivative import Dual
    Xd = np.vectorize(lambda v: Dual(v), otypes=[object])(X)
    out = evaluate(F, {"X": Xd}, exact=True)[0, 0]
    det = X[0, 0] * X[1, 1] - X[0, 1] * X[1, 0]
    assert out.a == (X[0, 0] + X[1, 1]) / det and isinstance(out.a, Fraction)
    assert evaluate(num(Fraction(1, 3)), {}, exact=True)[0, 0].a == Fraction(1, 3)


# ----------------------------------------------------------------------------- command line
def test_main_check_exit_codes(capsys):
    assert main_check([r"\frac{\partial}{\partial X} \operatorname{tr}(A X B) = A^\top B^\top"]) == 0
    assert "HOLDS" in capsys.readouterr().out
    assert main_check([r"\frac{\partial \log|\det X|}{\partial X} = X^{-1}", "--setting", "cookbook"]) == 1
    out = capsys.readouterr().out
    assert "FAILS" in out and "X^{-\\top}" in out
    assert main_check([r"\frac{\partial L}{\partial K} = X \star G", "--define", r"L=\langle G, \operatorname{conv}(X, K)\rangle",
                       "--shape", "X=5,5", "--shape", "K=2,2", "--stride", "1"]) == 0
    assert main_check([r"\frac{\partial}{\partial X} \input{x} = 1"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main_check(["--setting", "nope", r"\frac{\partial}{\partial x} x^\top x = 2x"]) == 2
    assert main_check([]) == 2


# ----------------------------------------------------------------------------- NumPy functions
def test_numpy_function_claims():
    """A NumPy function: numeric truth (complex step), stated as numeric evidence."""
    f = lambda A, X: np.trace(A @ X)  # noqa: E731
    ok = check(DerivativeClaim("tr(AX)", f, "X", lambda A, X: A.T, shapes={"A": (3, 2), "X": (2, 3)}))
    assert ok.verdict == HOLDS and "numeric only" in ok.confidence and "complex step" in ok.confidence
    bad = check(DerivativeClaim("tr(AX) = A", f, "X", lambda A, X: A, shapes={"A": (3, 2), "X": (2, 3)}))
    assert bad.verdict == FAILS and bad.diagnosis == "transpose"
    relu = lambda x: np.maximum(x, 0.0).sum()  # noqa: E731  (not complex-safe: central differences)
    v = check(DerivativeClaim("relu", relu, "x", lambda x: 2 * (x > 0), shapes={"x": (4,)}))
    assert v.verdict == FAILS and v.diagnosis == "wrong normalizer"
    with pytest.raises(SpecError, match="shapes of ints"):
        check(DerivativeClaim("x", relu, "x", lambda x: x, shapes={"x": ("n",)}))
    with pytest.raises(SpecError, match="callable"):
        DerivativeClaim("x", 3, "x", lambda x: x)


# ----------------------------------------------------------------------------- fuzzing the reader
_TOKENS = [r"\frac", "{", "}", r"\partial", "X", "x", "A", "=", "^", "_", r"\top", "-1", "(", ")", r"\left(", r"\right)",
           r"\operatorname{tr}", r"\sigma", "'", r"\odot", r"\otimes", "+", "-", "2", r"\|", "|", r"\sum", "i", r"\log",
           r"\det", r"\mathbf", r"\langle", ",", r"\rangle", r"\cdot", r"\nabla", r"\tfrac12", "[l]", r"\foo", "@", " "]


def test_the_reader_fails_only_with_its_own_error():
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies

    @hyp.settings(max_examples=60, deadline=None, derandomize=True)
    @hyp.given(st.lists(st.sampled_from(_TOKENS), min_size=0, max_size=25))
    def run(tokens):
        text = " ".join(tokens)
        try:
            parse_claim(text)
        except LatexError as exc:
            assert str(exc)
    run()


def test_judging_any_readable_claim_fails_only_with_package_errors():
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies
    from jacobian_bp.errors import JacobianBPError
    rhs = [r"A^\top", r"X^{-1}", r"2 X", r"A X", r"\operatorname{tr}(X) I", r"X \otimes A", r"\sigma(X)", r"-A^\top B^\top",
           r"\det(X) X^{-\top}", r"\mathbf 1", r"A \odot X", r"\frac{A}{2}"]
    lhs = [r"\frac{\partial}{\partial X} \operatorname{tr}(A X)", r"\frac{\partial \log|\det X|}{\partial X}",
           r"\nabla_X \operatorname{tr}(X^\top X)", r"\frac{\partial}{\partial X} \langle B, \sigma(X) \rangle"]

    @hyp.settings(max_examples=16, deadline=None, derandomize=True)
    @hyp.given(st.sampled_from(lhs), st.sampled_from(rhs))
    def run(left, right):
        try:
            v = check_latex(left + " = " + right)
        except JacobianBPError as exc:
            assert str(exc)
            return
        assert v.verdict in (HOLDS, FAILS, ILL_TYPED) and v.seconds < 5
    run()


def test_the_issue_example_with_layer_indices():
    """Issue #14's example, with the network quantities given as definitions."""
    defs = {"ell": r"\tfrac12 \|\sigma(z^{[l]}) - y\|^2", "z^[l]": r"W^{[l]} a^{[l-1]} + b^{[l]}",
            "delta^[l]": r"(\sigma(z^{[l]}) - y) \odot \sigma'(z^{[l]})"}
    ok = check_latex(r"\frac{\partial \ell}{\partial W^{[l]}} = \delta^{[l]} (a^{[l-1]})^\top", definitions=defs)
    assert ok.holds
    slip = check_latex(r"\frac{\partial \ell}{\partial W^{[l]}} = a^{[l-1]} (\delta^{[l]})^\top", definitions=defs,
                       shapes={"W^[l]": ("n", "m")})
    assert slip.verdict == FAILS and slip.diagnosis == M.TRANSPOSE
