r"""LaTeX for symbolic derivations, in the papers' notation.

SymPy's default printer writes the derivative of an undefined activation as
:math:`\frac{d}{dz} f(z)` and an identity matrix as :math:`\mathbb I`.  The documents write
:math:`f'(z_1)` (Damadi §3.4, Park eq. (14)) and :math:`\mathbf I_{10}` (Damadi Alg. 1),
so :func:`latex` prints

* ``Derivative(f(t), t)`` and ``Subs(Derivative(f(s), s), s, e)`` of an undefined function
  ``f`` as :math:`f'(t)`, :math:`f'(e)`;
* ``Identity(n)`` as :math:`\mathbf I_{n}`, ``OneMatrix(n, 1)`` as :math:`\mathbf 1_{n}`,
  transposes as :math:`^\top`, ``DiagMatrix(v)`` as :math:`\operatorname{diag}(v)`;
* the block-level matrix symbols of :mod:`jacobian_bp.symbolic.blocks`, whose plain
  names ``W[3]``, ``a[2]``, ``D[2]``, ``x`` become :math:`\mathbf W^{[3]}`,
  :math:`\mathbf a^{[2]}`, :math:`\mathbf D^{[2]}`, :math:`\mathbf x`.

Everything else is SymPy's own printing.
"""
from __future__ import annotations

import re

import sympy
from sympy.core.function import AppliedUndef
from sympy.printing.latex import LatexPrinter

__all__ = ["latex", "matrix_symbol_latex"]

_BLOCK_NAME = re.compile(r"^([A-Za-z]+)\[(\d+)\]$")
_GREEK = {"delta": r"\boldsymbol{\delta}", "theta": r"\boldsymbol{\theta}"}


def matrix_symbol_latex(name: str) -> str:
    r"""LaTeX of a block-level symbol name: ``"W[3]"`` -> ``\mathbf{W}^{[3]}``, ``"x"`` -> ``\mathbf{x}``."""
    m = _BLOCK_NAME.match(name)
    if m:
        base, layer = m.groups()
        head = _GREEK.get(base, r"\mathbf{" + base + "}")
        return head + "^{[" + layer + "]}"
    if re.fullmatch(r"[A-Za-z]+", name):
        return _GREEK.get(name, r"\mathbf{" + name + "}")
    return name


def _first_derivative_of_undef(expr) -> "tuple[sympy.Basic, sympy.Basic] | None":
    """``(f, t)`` when ``expr`` is ``Derivative(f(t), t)`` with ``f`` undefined, else None."""
    if not isinstance(expr, sympy.Derivative):
        return None
    inner = expr.expr
    if not isinstance(inner, AppliedUndef) or len(inner.args) != 1:
        return None
    if len(expr.variable_count) != 1 or expr.variable_count[0][1] != 1:
        return None
    var = expr.variable_count[0][0]
    if inner.args[0] != var:
        return None
    return inner.func, var


class PaperLatexPrinter(LatexPrinter):
    """SymPy's LaTeX printer with the documents' notation (see the module docstring).

    ``symbol_latex`` maps matrix-symbol names to LaTeX, overriding :func:`matrix_symbol_latex`.
    """

    symbol_latex: dict = {}

    def _print_Derivative(self, expr):
        hit = _first_derivative_of_undef(expr)
        if hit is None:
            return super()._print_Derivative(expr)
        func, var = hit
        return rf"{self._print(sympy.Symbol(func.__name__))}'\left({self._print(var)}\right)"

    def _print_Subs(self, subs):
        expr, old, new = subs.args
        hit = _first_derivative_of_undef(expr)
        if hit is not None and len(old) == 1 and old[0] == hit[1]:
            return rf"{self._print(sympy.Symbol(hit[0].__name__))}'\left({self._print(new[0])}\right)"
        return super()._print_Subs(subs)

    def _print_Identity(self, expr):
        return rf"\mathbf{{I}}_{{{self._print(expr.rows)}}}"

    def _print_OneMatrix(self, expr):
        if expr.cols == 1:
            return rf"\mathbf{{1}}_{{{self._print(expr.rows)}}}"
        return rf"\mathbf{{1}}_{{{self._print(expr.rows)}\times {self._print(expr.cols)}}}"

    def _print_ZeroMatrix(self, expr):
        return rf"\mathbf{{0}}_{{{self._print(expr.rows)}\times {self._print(expr.cols)}}}"

    def _print_MatrixSymbol(self, expr):
        return self.symbol_latex.get(expr.name) or matrix_symbol_latex(expr.name)

    def _print_Transpose(self, expr):
        arg = expr.arg
        inner = self._print(arg)
        if not isinstance(arg, sympy.MatrixSymbol) or "^" in inner:
            inner = rf"\left({inner}\right)"
        return rf"{inner}^{{\top}}"

    def _print_DiagMatrix(self, expr):
        return rf"\operatorname{{diag}}\left({self._print(expr.arg)}\right)"

    def _print_Heaviside(self, expr, exp=None):
        z = self._print(expr.args[0])
        tex = rf"H\left({z}\right)"
        return tex if exp is None else rf"{tex}^{{{exp}}}"


def latex(expr, symbol_latex: dict | None = None, **settings) -> str:
    """LaTeX of a SymPy object in the papers' notation (``f'(z)``, ``\\mathbf I_n``, ``^\\top``).

    ``symbol_latex`` optionally maps matrix-symbol names to their LaTeX; other keyword
    arguments are SymPy's LaTeX settings.
    """
    printer = PaperLatexPrinter(settings)
    if symbol_latex:
        printer.symbol_latex = dict(symbol_latex)
    return printer.doprint(expr)
