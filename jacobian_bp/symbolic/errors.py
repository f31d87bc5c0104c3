"""Errors specific to the symbolic engine.

All derive from :class:`jacobian_bp.errors.JacobianBPError` (and ``ValueError``), so
``except JacobianBPError`` catches every error of the package.
"""
from __future__ import annotations

from ..errors import JacobianBPError

__all__ = ["SizeBoundError", "UndefinedSymbolError", "SymbolicInputError"]


class SizeBoundError(JacobianBPError, ValueError):
    """Expanding a block-level expression to explicit entries would exceed the stated bound."""


class UndefinedSymbolError(JacobianBPError, ValueError):
    """A substitution names a symbol (or a parameter) that the network does not have."""


class SymbolicInputError(JacobianBPError, TypeError):
    """A value of the wrong type reached the symbolic engine (a string -- never parsed --, a boolean,
    a complex number, an object that is not a network, ...).  Also a ``TypeError``."""
