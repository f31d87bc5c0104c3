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
from sympy.printing.str import StrPrinter

__all__ = ["latex", "matrix_symbol_latex", "readable", "readable_name"]

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

    #: the transpose sign (the notation's: ``\top`` or ``T``)
    transpose: str = r"\top"

    def _print_Transpose(self, expr):
        r"""A symbol's transpose without parentheses (:math:`\mathbf a^{[2]\top}`: a superscript takes the sign into
        it, as Damadi writes :math:`\mathbf W^{[3]\top}`); a compound expression in parentheses."""
        arg = expr.arg
        inner = self._print(arg)
        t = self.transpose
        if isinstance(arg, sympy.MatrixSymbol):
            head, sup = _split_superscript(inner)
            if sup is not None:
                return rf"{head}^{{{sup}{t if t[0] != chr(92) else t + ' '}}}".replace(" }", "}")
            return rf"{inner}^{{{t}}}"
        return rf"\left({inner}\right)^{{{t}}}"

    def _print_DiagMatrix(self, expr):
        return rf"\operatorname{{diag}}\left({self._print(expr.arg)}\right)"

    def _print_Heaviside(self, expr, exp=None):
        z = self._print(expr.args[0])
        tex = rf"H\left({z}\right)"
        return tex if exp is None else rf"{tex}^{{{exp}}}"


def _split_superscript(tex: str) -> "tuple[str, str | None]":
    """``(head, superscript)`` when ``tex`` ends with a top-level ``^{...}`` (``\\mathbf{a}^{[2]}``), else ``(tex, None)``."""
    if not tex.endswith("}"):
        return tex, None
    depth = 0
    for i in range(len(tex) - 1, -1, -1):
        ch = tex[i]
        if ch == "}":
            depth += 1
        elif ch == "{":
            depth -= 1
            if depth == 0:
                if i > 0 and tex[i - 1] == "^" and tex[:i - 1].count("{") == tex[:i - 1].count("}"):
                    return tex[:i - 1], tex[i + 1:-1]
                return tex, None
    return tex, None


def latex(expr, symbol_latex: dict | None = None, transpose: str | None = None, **settings) -> str:
    """LaTeX of a SymPy object in the papers' notation (``f'(z)``, ``\\mathbf I_n``, ``^\\top``).

    ``symbol_latex`` optionally maps matrix-symbol names to their LaTeX; ``transpose`` is the
    transpose sign (default ``\\top``); other keyword arguments are SymPy's LaTeX settings.
    """
    printer = PaperLatexPrinter(settings)
    if symbol_latex:
        printer.symbol_latex = dict(symbol_latex)
    if transpose:
        printer.transpose = transpose
    return printer.doprint(expr)


# ---------------------------------------------------------------------------- terminal printing
_SUB = str.maketrans("0123456789,", "₀₁₂₃₄₅₆₇₈₉‚")
_SUP = str.maketrans("0123456789()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁽⁾")
_GREEK_UNICODE = {"delta": "δ", "theta": "θ", "gamma": "γ", "beta": "β", "sigma": "σ", "alpha": "α", "ell": "ℓ",
                  "epsilon": "ε", "mu": "μ", "phi": "φ"}
_NAME = re.compile(r"^\\?([A-Za-z]+)(?:\^\{\[([0-9.]+)\]\})?(?:_\{([0-9,]+)\})?$")


def readable_name(name: str) -> str:
    r"""A symbol name of the documents' form (``w^{[1]}_{12}``, ``\delta^{[2]}_{1}``, ``x_{3}``) as readable Unicode for
    a terminal: ``w₁₂⁽¹⁾``, ``δ₁⁽²⁾``, ``x₃``; a block tag keeps its dot (``w₁₁⁽²·¹⁾``).  Other names are returned as
    they are."""
    if name.startswith("\\hat{") and "}" in name:  # \hat{y}_{2}: ŷ₂
        inner, _, rest = name[5:].partition("}")
        return readable_name(inner + rest).replace(inner, inner + "\u0302", 1) if inner.isalpha() else name
    m = _NAME.match(name)
    if not m:
        return name
    base, tag, sub = m.groups()
    head = _GREEK_UNICODE.get(base, base) if name.startswith("\\") or base in _GREEK_UNICODE else base
    out = head + (sub.translate(_SUB) if sub else "")
    if tag:
        out += "⁽" + tag.translate(_SUP).replace(".", "·") + "⁾"
    return out


class ReadableStrPrinter(StrPrinter):
    """SymPy's ``str`` printer with the document-style symbol names in readable Unicode (:func:`readable_name`)."""

    def _print_Symbol(self, expr):
        return readable_name(expr.name)

    def _print_MatrixSymbol(self, expr):
        return expr.name


def readable(expr) -> str:
    r"""Terminal text of a SymPy object with readable names: ``δ₁⁽²⁾*a₁⁽¹⁾`` instead of ``\delta^{[2]}_{1}*a^{[1]}_{1}``
    (SymPy prints a symbol by its name, which is LaTeX here; its pretty printer makes ``\delta_{1}__{[2]}`` of it)."""
    if isinstance(expr, (list, tuple)):
        return "[" + ", ".join(readable(e) for e in expr) + "]"
    return ReadableStrPrinter().doprint(expr)
