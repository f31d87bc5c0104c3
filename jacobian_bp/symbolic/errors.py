"""Errors specific to the symbolic engine.

Both derive from :class:`jacobian_bp.errors.JacobianBPError` (and ``ValueError``), so
``except JacobianBPError`` catches every error of the package.
"""
from __future__ import annotations

from ..errors import JacobianBPError

__all__ = ["SizeBoundError", "UndefinedSymbolError"]


class SizeBoundError(JacobianBPError, ValueError):
    """Expanding a block-level expression to explicit entries would exceed the stated bound."""


class UndefinedSymbolError(JacobianBPError, ValueError):
    """A substitution names a symbol (or a parameter) that the network does not have."""
