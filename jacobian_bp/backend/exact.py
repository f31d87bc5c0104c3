r"""Safe conversion of user-provided numbers: validation and exact SymPy constants.

Every numeric constructor argument of an activation or a loss (``at_zero``,
``negative_slope``, ``alpha``, ``scale``) may come from a JSON spec, a command line or
a notebook.  Two helpers handle them, in one place:

* :func:`real_number` validates such a value at construction (a real number -- ``int``,
  ``float``, :class:`fractions.Fraction`, a NumPy real scalar or a SymPy number; not a
  ``bool``, a string, a complex number, NaN or infinity -- within stated bounds) and
  returns it as a ``float``, raising :class:`~jacobian_bp.errors.SpecError` otherwise;
* :func:`exact_number` turns such a value into a SymPy constant *without ever parsing
  text* (``sympy.nsimplify``, ``sympy.S`` and ``sympy.Rational`` evaluate strings as
  Python code): integers become ``Integer``, fractions ``Rational``, and a float becomes
  the ``Rational`` with denominator at most :math:`10^6` (or the short decimal) that
  *round-trips exactly* to it (``0.5`` -> ``1/2``, ``0.01`` -> ``1/100``, ``1e-09`` ->
  ``1/1000000000``), else an exact-valued ``Float``.
"""
from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import sympy

from ..errors import SpecError

__all__ = ["real_number", "exact_number", "MAX_DENOMINATOR"]

#: largest denominator :func:`exact_number` tries when it recognises a float as a fraction
MAX_DENOMINATOR = 10 ** 6
#: a float whose shortest decimal form has at most this many significant digits is kept as that decimal
_SHORT_DECIMAL_DIGITS = 6


def _is_real_scalar(value) -> bool:
    if isinstance(value, (bool, np.bool_, str, bytes, complex, np.complexfloating)):
        return False
    if isinstance(value, sympy.Basic):
        return isinstance(value, sympy.Number)  # Integer, Rational, Float: never a symbol or a string
    return isinstance(value, (int, float, Fraction, np.integer, np.floating))


def _describe(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def real_number(value, where: str, *, minimum: float | None = None, maximum: float | None = None,
                strict_minimum: bool = False) -> float:
    """Validate one user-provided real number and return it as a ``float``.

    Parameters
    ----------
    value : object
        The value to check.
    where : str
        What it is, for the message: ``"leaky_relu: negative_slope"``.
    minimum, maximum : float, optional
        Inclusive bounds (``minimum`` exclusive when ``strict_minimum``).
    strict_minimum : bool
        Require ``value > minimum`` instead of ``>=``.

    Returns
    -------
    float

    Raises
    ------
    SpecError
        When ``value`` is not a finite real number (``bool``, ``str``, complex, NaN and
        infinities are refused; strings are never parsed) or lies outside the bounds.
    """
    if minimum is not None and maximum is not None:
        expected = f"a finite real number in [{minimum:g}, {maximum:g}]"
    elif minimum is not None:
        expected = f"a finite real number {'>' if strict_minimum else '>='} {minimum:g}"
    elif maximum is not None:
        expected = f"a finite real number <= {maximum:g}"
    else:
        expected = "a finite real number"
    if not _is_real_scalar(value):
        raise SpecError(f"{where} must be {expected}, received {_describe(value)}")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise SpecError(f"{where} must be {expected}, received {_describe(value)}") from None
    if not math.isfinite(x):
        raise SpecError(f"{where} must be {expected}, received {_describe(value)}")
    if minimum is not None and (x < minimum or (strict_minimum and x == minimum)):
        raise SpecError(f"{where} must be {expected}, received {_describe(value)}")
    if maximum is not None and x > maximum:
        raise SpecError(f"{where} must be {expected}, received {_describe(value)}")
    return x


def exact_number(value, where: str = "value") -> sympy.Expr:
    """A SymPy constant equal to a real number, built without parsing text.

    Parameters
    ----------
    value : int, float, Fraction, NumPy real scalar or SymPy number
        The number; anything else (strings above all) is refused.
    where : str
        What it is, for the message.

    Returns
    -------
    sympy.Integer, sympy.Rational or sympy.Float
        ``Integer`` for integers (and integral floats), ``Rational`` for fractions and for
        floats equal to a fraction with denominator at most :data:`MAX_DENOMINATOR` or to a
        short decimal (at most 6 significant digits, e.g. ``1e-09``), each checked by
        converting back (``float(p/q) == value``); else a ``Float`` holding the float's
        exact value.

    Raises
    ------
    SpecError
        When ``value`` is not a finite real number.
    """
    if isinstance(value, sympy.Basic) and _is_real_scalar(value):
        if not value.is_finite:
            raise SpecError(f"{where} must be a finite real number, received {_describe(value)}")
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return sympy.Integer(int(value))
    if isinstance(value, Fraction):
        return sympy.Rational(value.numerator, value.denominator)
    x = real_number(value, where)
    # a short decimal such as 0.01, 1e-09 or 1e+300 (parsed from the float's own shortest repr, never user text)
    dec = Decimal(repr(x)).normalize()
    if len(dec.as_tuple().digits) <= _SHORT_DECIMAL_DIGITS:
        frac = Fraction(dec)
        if float(frac) == x:
            return sympy.Rational(frac.numerator, frac.denominator)
    frac = Fraction(x).limit_denominator(MAX_DENOMINATOR)  # 1/3, 2/7, ...
    if float(frac) == x:
        return sympy.Rational(frac.numerator, frac.denominator)
    return sympy.Float(x)  # 53-bit mantissa: the double's value exactly
