"""Exceptions raised by jacobian_bp.

Every error names the object it concerns (a layer, a space, a spec key) and, for
shape errors, the expected and the received shape, so that a user can fix the
input without reading the source.
"""
from __future__ import annotations


class JacobianBPError(Exception):
    """Base class of every error raised by jacobian_bp."""


class ShapeError(JacobianBPError, ValueError):
    """An array or operator has the wrong shape."""


class SpaceMismatchError(ShapeError):
    """Two Jacobians were multiplied whose spaces do not chain."""


class MemoryBudgetError(JacobianBPError, MemoryError):
    """Materializing a matrix would exceed the configured memory budget."""


class SpecError(JacobianBPError, ValueError):
    """A network specification (JSON or Python) is invalid."""


class DataError(JacobianBPError, ValueError):
    """Inputs, targets or parameters are invalid (NaN/Inf, empty batch, bad targets)."""


class UnknownNameError(JacobianBPError, KeyError):
    """A name (parameter, layer, example) that does not exist was looked up.

    Also a :class:`KeyError`, so ``except KeyError`` keeps working; its message is shown
    as is (a plain ``KeyError`` would show it quoted).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnsupportedInputError(DataError, TypeError):
    """An input of a kind this entry point does not handle (e.g. SymPy entries given to a
    numeric-only operator, or max pooling of symbolic values).

    Also a :class:`TypeError`, as these were before they became package errors.
    """
