r"""A third opinion for the formula judge: the derivative by SymPy's symbolic differentiation.

On one small instance the argument's entries become real symbols :math:`x_{kl}`, the other arrays
keep their exact rational values, the function is built as a :class:`sympy.Matrix` (SymPy's own
``inv``, ``det``, ``kronecker_product``, ``exp``, ``log``), every entry is differentiated with
:func:`sympy.diff` and evaluated at the instance.  No ``simplify`` is called: the values are
compared with the exact forward-mode derivative numerically to 40 digits (exactly for rationals).

Bounded: only for analytic matrix functions (no convolution, pooling, ReLU), arguments with at
most :data:`MAX_ENTRIES` entries and matrices inverted or differentiated through a determinant of
at most 3 × 3 (and then at most :data:`MAX_ENTRIES_INVERSE` symbols); otherwise the check is skipped
and the judge says so.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Mapping

import numpy as np

from .formula_tree import EvalError, Node, walk

__all__ = ["sympy_derivative", "agree", "MAX_ENTRIES", "supported"]

#: largest argument (entries) differentiated symbolically
MAX_ENTRIES = 9
#: ... when the function inverts a matrix or takes a determinant (SymPy's symbolic inverse grows fast)
MAX_ENTRIES_INVERSE = 4
_SUPPORTED = {"sym", "num", "eye", "ones", "zeros", "add", "sub", "neg", "mul", "cdot", "hadamard", "hadamard_or_scale",
              "div", "pow", "T", "inv", "det", "logdet", "tr", "sum", "mean", "inner", "norm", "kron", "diag", "vec",
              "vecr", "func", "softmax", "lse"}
_FUNCS = {"exp", "log", "sqrt", "sigma", "tanh", "softplus"}


def supported(f: Node) -> bool:
    """Whether SymPy can build this function (analytic matrix operations only)."""
    return all(n.op in _SUPPORTED and (n.op != "func" or n.attr("name") in _FUNCS) for _, n in walk(f))


class _Sym:
    def __init__(self, env: Mapping, dims: Mapping, nodes: Mapping | None = None):
        import sympy
        self.sp, self.env, self.dims = sympy, env, dims
        self.nodes = nodes or {}  # id(unsized ones / identity node) -> its inferred (rows, cols), None where free

    def ev(self, n: Node, want=None):
        sp = self.sp
        op = n.op
        a = [self.ev(x) for x in n.args] if op not in ("add", "sub", "mul", "hadamard", "eye", "ones", "zeros") else None
        if op == "sym":
            name = n.attr("name")
            if name in self.env:
                return self.env[name]
            if name in self.dims:
                return sp.Matrix([[sp.Integer(self.dims[name])]])
            raise EvalError(f"unknown symbol {name!r}")
        if op == "num":
            v = n.attr("value")
            return sp.Matrix([[sp.Rational(v.numerator, v.denominator)]])
        if op in ("eye", "ones", "zeros"):
            k = n.attr("n")
            if k is not None:
                k = self.dims[k] if isinstance(k, str) else int(k)
                shape = (k, k) if op == "eye" else (k, 1)
            elif self.nodes.get(id(n)) is not None and all(d is not None for d in self.nodes[id(n)]):
                shape = tuple(int(d) for d in self.nodes[id(n)])  # the shape inference's size (judge.py)
            elif want is not None and any(w is not None for w in want):
                shape = ((next(w for w in want if w is not None),) * 2 if op == "eye"
                         else tuple(1 if w is None else w for w in want))
            else:
                raise EvalError("unsized identity")
            return sp.eye(shape[0]) if op == "eye" else (sp.ones(*shape) if op == "ones" else sp.zeros(*shape))
        if op in ("add", "sub", "hadamard"):
            A = self.ev(n.args[0])
            B = self.ev(n.args[1], A.shape)
            if A.shape == (1, 1) and B.shape != (1, 1) and op != "hadamard":
                A = sp.ones(*B.shape) * A[0, 0]
            if B.shape == (1, 1) and A.shape != (1, 1) and op != "hadamard":
                B = sp.ones(*A.shape) * B[0, 0]
            if A.shape != B.shape:
                raise EvalError("shapes")
            return A + B if op == "add" else (A - B if op == "sub" else A.multiply_elementwise(B))
        if op == "mul":
            A = self.ev(n.args[0])
            B = self.ev(n.args[1], (A.shape[1], None))
            return self._mul(A, B)
        if op == "neg":
            return -a[0]
        if op == "hadamard_or_scale":
            return a[0].multiply_elementwise(a[1]) if a[0].shape == a[1].shape else self._mul(a[0], a[1])
        if op == "cdot":
            A, B = a
            if A.shape == B.shape and A.shape[1] == 1 and A.shape[0] > 1:
                return A.T * B
            return self._mul(A, B)
        if op == "div":
            A, B = a
            if B.shape == (1, 1):
                return A / B[0, 0]
            return sp.Matrix(A.shape[0], A.shape[1], lambda i, j: A[i, j] / B[i, j])
        if op == "pow":
            A, k = a[0], int(n.args[1].attr("value"))
            if A.shape == (1, 1) or A.shape[0] != A.shape[1]:
                return A.applyfunc(lambda z: z ** k)
            return A ** k
        if op == "T":
            return a[0].T
        if op == "inv":
            return a[0].inv(method="LU")
        if op == "det":
            return sp.Matrix([[a[0].det(method="berkowitz")]])
        if op == "logdet":
            d = a[0].det(method="berkowitz")
            return sp.Matrix([[sp.log(d if d.subs(self.point) > 0 else -d)]])
        if op == "tr":
            return sp.Matrix([[a[0].trace()]])
        if op == "sum":
            return sp.Matrix([[sum(a[0])]])
        if op == "mean":
            return sp.Matrix([[sum(a[0]) / len(a[0])]])
        if op == "inner":
            return sp.Matrix([[sum(x * y for x, y in zip(a[0], a[1]))]])
        if op == "norm":
            return sp.Matrix([[sp.sqrt(sum(x ** 2 for x in a[0]))]])
        if op == "kron":
            from sympy.physics.quantum import TensorProduct
            return TensorProduct(a[0], a[1])
        if op == "diag":
            A = a[0]
            if 1 in A.shape:
                return sp.diag(*list(A))
            return sp.Matrix([A[i, i] for i in range(A.shape[0])])
        if op == "vec":
            A = a[0]
            return sp.Matrix([A[i, j] for j in range(A.shape[1]) for i in range(A.shape[0])])
        if op == "vecr":
            A = a[0]
            return sp.Matrix([A[i, j] for i in range(A.shape[0]) for j in range(A.shape[1])])
        if op == "func":
            f = {"exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "tanh": sp.tanh,
                 "sigma": lambda z: 1 / (1 + sp.exp(-z)), "softplus": lambda z: sp.log(1 + sp.exp(z))}[n.attr("name")]
            return a[0].applyfunc(f)
        if op in ("softmax", "lse"):
            A = a[0]
            cols = []
            for j in range(A.shape[1]):
                e = [sp.exp(A[i, j]) for i in range(A.shape[0])]
                s = sum(e)
                cols.append([x / s for x in e] if op == "softmax" else [sp.log(s)])
            return sp.Matrix(cols).T
        raise EvalError(f"SymPy check: unsupported operation {op!r}")

    def _mul(self, A, B):
        if A.shape == (1, 1):
            return B * A[0, 0]
        if B.shape == (1, 1):
            return A * B[0, 0]
        return A * B


def agree(Ds: np.ndarray, Dexact: np.ndarray) -> tuple[bool, bool]:
    """(agree, exactly): SymPy's values against the exact forward-mode derivative (Fractions or 50-digit)."""
    from .exact_eval import _mp
    mp = _mp()
    exactly = True
    for idx in np.ndindex(*Dexact.shape):
        s, e = Ds[idx], Dexact[idx]
        if getattr(s, "is_Rational", False) and isinstance(e, Fraction):
            if Fraction(int(s.p), int(s.q)) != e:
                return False, False
            continue
        exactly = False
        sv = mp.mpf(str(s.evalf(45)))  # SymPy's own decimal output, read by mpmath as a number
        ev = mp.mpf(e.numerator) / e.denominator if isinstance(e, Fraction) else mp.mpf(e)
        if abs(sv - ev) > mp.mpf(10) ** -30 * max(1, abs(ev)):
            return False, False
    return True, exactly


def sympy_derivative(f: Node, wrt: str, env: Mapping[str, np.ndarray], dims: Mapping[str, int],
                     nodes: Mapping[int, tuple] | None = None) -> np.ndarray | None:
    """``D[i, j, k, l] = ∂F_ij/∂X_kl`` at the instance (values as SymPy numbers), or ``None`` when the
    function is out of the bounded scope (see the module docstring).  ``nodes`` gives the sizes the shape
    inference found for unsized ``\\mathbf 1`` / ``I`` nodes of ``f`` (``Instance.nodes``)."""
    import sympy as sp
    X = env[wrt]
    if not supported(f) or X.size > MAX_ENTRIES:
        return None

    def rat(v):
        v = Fraction(v)
        return sp.Rational(v.numerator, v.denominator)

    syms = sp.Matrix(X.shape[0], X.shape[1], lambda i, j: sp.Symbol(f"x_{i}_{j}", real=True))
    senv = {k: (syms if k == wrt else sp.Matrix(a.shape[0], a.shape[1], lambda i, j, a=a: rat(a[i, j])))
            for k, a in env.items()}
    point = {syms[i, j]: rat(X[i, j]) for i in range(X.shape[0]) for j in range(X.shape[1])}
    ev = _Sym(senv, dims, nodes)
    ev.point = point
    for _, n in walk(f):  # bounded: symbolic inverses and determinants of at most 3 x 3, of at most 4 symbols
        if n.op in ("inv", "det", "logdet"):
            try:
                if max(ev.ev(n.args[0]).shape) > 3 or X.size > MAX_ENTRIES_INVERSE:
                    return None
            except EvalError:
                return None
    F = ev.ev(f)
    out = np.empty((F.shape[0], F.shape[1]) + X.shape, dtype=object)
    for i in range(F.shape[0]):
        for j in range(F.shape[1]):
            for k in range(X.shape[0]):
                for l in range(X.shape[1]):
                    out[i, j, k, l] = sp.diff(F[i, j], syms[k, l]).subs(point)
    return out
