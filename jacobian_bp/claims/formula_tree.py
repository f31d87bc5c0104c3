r"""Expression trees of the formula judge: :class:`Node` (an operation, its operands, its attributes),
built by :mod:`.latex_grammar` from LaTeX or by hand, walked and rewritten by :mod:`.mistakes`."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Mapping

from ..errors import JacobianBPError, SpecError

__all__ = ["EvalError", "Node", "sym", "num", "walk", "replace_at", "substitute", "to_text"]


class EvalError(JacobianBPError, ValueError):
    """An expression cannot be evaluated as written (operands that do not conform, a singular
    matrix, the log of a non-positive number)."""


# ============================================================================ expression trees
@dataclass(frozen=True)
class Node:
    """One node of an expression: ``op`` (``sym``, ``num``, ``add``, ``mul``, ``T``, ``inv``,
    ``tr``, ``kron``, ``func``, ``conv2d``, ...), its operands ``args`` and attributes ``attrs``
    (a tuple of ``(key, value)`` pairs: a symbol's ``name``, a number's ``value``, a function's
    ``name``, a size parameter ``p``)."""

    op: str
    args: tuple = ()
    attrs: tuple = ()

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    def __str__(self) -> str:
        return to_text(self)


def sym(name: str) -> Node:
    """A named array."""
    return Node("sym", (), (("name", name),))


def num(value) -> Node:
    """An exact number (int or :class:`~fractions.Fraction`)."""
    return Node("num", (), (("value", Fraction(value)),))


def walk(node: Node, path: tuple = ()) -> Iterator[tuple[tuple, Node]]:
    """All sub-nodes with their paths (tuples of argument indices), parents first."""
    yield path, node
    for i, a in enumerate(node.args):
        yield from walk(a, path + (i,))


def replace_at(node: Node, path: tuple, new: Node) -> Node:
    """A copy of ``node`` with the sub-node at ``path`` replaced by ``new``."""
    if not path:
        return new
    args = list(node.args)
    args[path[0]] = replace_at(args[path[0]], path[1:], new)
    return Node(node.op, tuple(args), node.attrs)


def substitute(node: Node, defs: Mapping[str, Node], _depth: int = 0) -> Node:
    """Replace every symbol named in ``defs`` by its definition (recursively, at most 20 levels)."""
    if _depth > 20:
        raise SpecError("definitions: a definition refers to itself (more than 20 levels of substitution)")
    if node.op == "sym" and node.attr("name") in defs:
        return substitute(defs[node.attr("name")], defs, _depth + 1)
    if not node.args:
        return node
    return Node(node.op, tuple(substitute(a, defs, _depth) for a in node.args), node.attrs)


_INFIX = {"add": " + ", "sub": " - ", "mul": " ", "kron": " ⊗ ", "hadamard": " ⊙ ", "div": " / ", "cdot": " · "}


def to_text(n: Node) -> str:
    """A compact one-line reading of an expression (for messages)."""
    if n.op == "sym":
        return str(n.attr("name"))
    if n.op == "num":
        v = n.attr("value")
        return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"
    if n.op in _INFIX:
        return "(" + _INFIX[n.op].join(to_text(a) for a in n.args) + ")"
    if n.op == "neg":
        return "-" + to_text(n.args[0])
    if n.op == "T":
        return to_text(n.args[0]) + "ᵀ"
    if n.op == "inv":
        return to_text(n.args[0]) + "⁻¹"
    if n.op == "pow":
        return f"{to_text(n.args[0])}^{to_text(n.args[1])}"
    if n.op in ("eye", "ones", "zeros"):
        s = n.attr("n")
        return {"eye": "I", "ones": "1", "zeros": "0"}[n.op] + ("" if s is None else f"_{s}")
    name = n.attr("name") if n.op in ("func", "dfunc") else n.op
    if n.op == "dfunc":
        name = f"{name}'"
    params = [f"{k}={v}" for k, v in n.attrs if k not in ("name",)]
    return f"{name}{'[' + ','.join(params) + ']' if params else ''}(" + ", ".join(to_text(a) for a in n.args) + ")"
