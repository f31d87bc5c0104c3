"""LaTeX in the papers' notation; the output compiles with pdflatex."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import sympy
from sympy import Identity, KroneckerProduct, MatrixSymbol, OneMatrix

from jacobian_bp.symbolic import latex
from jacobian_bp.symbolic.printing import matrix_symbol_latex

f = sympy.Function("f", real=True)
z = sympy.Symbol("z^{[1]}_{1}", real=True)
w = sympy.Symbol("w^{[1]}_{11}", real=True)


def test_derivatives_of_undefined_functions_print_as_primes():
    assert latex(sympy.Derivative(f(z), z)) == r"f'\left(z^{[1]}_{1}\right)"
    s = sympy.Dummy("s")
    assert latex(sympy.Subs(sympy.Derivative(f(s), s), s, 2 * w)) == r"f'\left(2 w^{[1]}_{11}\right)"
    # second derivatives and derivatives of known functions keep SymPy's notation
    assert "f'" not in latex(sympy.Derivative(f(z), z, 2))
    assert latex(sympy.Heaviside(z, 0)) == r"H\left(z^{[1]}_{1}\right)"


def test_block_symbols_identity_and_transpose():
    a = MatrixSymbol("a[2]", 100, 1)
    assert latex(KroneckerProduct(Identity(10), a.T)) == r"\mathbf{I}_{10} \otimes \mathbf{a}^{[2]\top}"  # no oversized parentheses (#15)
    assert latex(MatrixSymbol("x", 4, 1).T) == r"\mathbf{x}^{\top}"
    assert latex(OneMatrix(16, 1)) == r"\mathbf{1}_{16}"
    assert matrix_symbol_latex("delta[3]") == r"\boldsymbol{\delta}^{[3]}"
    assert matrix_symbol_latex("W[3]") == r"\mathbf{W}^{[3]}"
    assert latex(MatrixSymbol("Mmax[2]", 4, 4), symbol_latex={"Mmax[2]": r"\mathbf{M}_{\max}"}) == r"\mathbf{M}_{\max}"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_printed_latex_compiles(tmp_path):
    exprs = [sympy.Derivative(f(z), z) * w, KroneckerProduct(Identity(3), MatrixSymbol("a[1]", 5, 1).T),
             sympy.Subs(sympy.Derivative(f(z), z), z, z ** 2), sympy.Heaviside(z, 1) * w]
    body = "\n".join(r"\[" + latex(e) + r"\]" for e in exprs)
    (tmp_path / "p.tex").write_text("\\documentclass{article}\\usepackage{amsmath,amssymb}\\begin{document}"
                                    + body + "\\end{document}", encoding="utf-8")
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "p.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]
