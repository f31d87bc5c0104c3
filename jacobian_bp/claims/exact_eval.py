r"""Evaluating expression trees: exactly (object arrays of dual numbers over
:class:`fractions.Fraction`, 50-digit :mod:`mpmath` after a transcendental function) or in
float64/complex128 (for screening and the complex-step second opinion).

Only :meth:`Dual.exp`, :meth:`Dual.log` and :meth:`Dual.sqrt` carry a derivative rule; the
inverse and the determinant are Gaussian elimination, convolution and pooling explicit loops,
:math:`\sigma`, :math:`\tanh`, softplus and softmax are composed from ``exp`` and ``log`` -- so the
derivative of a function is obtained by differentiating its elementary definition.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Mapping

import numpy as np

from .exact_conv import ConvOps
from .formula_tree import EvalError, Node, to_text, walk

__all__ = ["Dual", "ELEMENTWISE", "evaluate", "is_analytic", "to_float"]


# ============================================================================ exact dual numbers
_MP = None


def _mp():
    """A private mpmath context with 50 significant digits (never the global one)."""
    global _MP
    if _MP is None:
        import mpmath
        _MP = mpmath.MPContext()
        _MP.dps = 50
    return _MP


def _is_frac(x) -> bool:
    return isinstance(x, (Fraction, int))


def _to_mp(x):
    if isinstance(x, Fraction):
        return _mp().mpf(x.numerator) / x.denominator
    if isinstance(x, int):
        return _mp().mpf(x)
    return x


_ZERO = Fraction(0)
_ONE = Fraction(1)


def _op2(x, y, f):
    if type(x) is Fraction and type(y) is Fraction:
        return f(x, y)
    if _is_frac(x) and _is_frac(y):
        return f(Fraction(x), Fraction(y))
    return f(_to_mp(x), _to_mp(y))


def _mix(x, y):
    """Bring two numbers to a common type (Fraction, or mpmath when either is transcendental)."""
    if type(x) is Fraction and type(y) is Fraction:
        return x, y
    if _is_frac(x) and _is_frac(y):
        return Fraction(x), Fraction(y)
    return _to_mp(x), _to_mp(y)


def _iszero(x) -> bool:
    return x == 0


class Dual:
    r"""An exact dual number :math:`a + b\varepsilon`, :math:`\varepsilon^2 = 0`.

    ``a`` and ``b`` are :class:`~fractions.Fraction` while the computation is rational, and
    50-digit :mod:`mpmath` numbers after a transcendental function.  Only :meth:`exp`,
    :meth:`log` and :meth:`sqrt` carry a derivative rule; everything else is composed.
    """

    __slots__ = ("a", "b")

    def __init__(self, a, b=Fraction(0)):
        self.a, self.b = a, b

    @staticmethod
    def lift(x) -> "Dual":
        return x if isinstance(x, Dual) else Dual(Fraction(x) if _is_frac(x) else x, Fraction(0))

    def __add__(self, o):
        if isinstance(o, np.ndarray):
            return NotImplemented
        if type(o) is not Dual:
            o = Dual.lift(o)
        a1, a2 = _mix(self.a, o.a)
        if _iszero(self.b):
            return Dual(a1 + a2, o.b)
        if _iszero(o.b):
            return Dual(a1 + a2, self.b)
        b1, b2 = _mix(self.b, o.b)
        return Dual(a1 + a2, b1 + b2)

    __radd__ = __add__

    def __neg__(self):
        return Dual(-self.a, -self.b)

    def __sub__(self, o):
        if isinstance(o, np.ndarray):
            return NotImplemented
        return self + (-Dual.lift(o))

    def __rsub__(self, o):
        return Dual.lift(o) - self

    def __mul__(self, o):
        if isinstance(o, np.ndarray):
            return NotImplemented
        if type(o) is not Dual:
            o = Dual.lift(o)
        a1, a2 = _mix(self.a, o.a)
        z1, z2 = _iszero(self.b), _iszero(o.b)
        if z1 and z2:
            return Dual(a1 * a2, _ZERO)
        if z1:
            x, y = _mix(a1, o.b)
            return Dual(a1 * a2, x * y)
        if z2:
            x, y = _mix(self.b, a2)
            return Dual(a1 * a2, x * y)
        x1, y1 = _mix(a1, o.b)
        x2, y2 = _mix(self.b, a2)
        p, q = _mix(x1 * y1, x2 * y2)
        return Dual(a1 * a2, p + q)

    __rmul__ = __mul__

    def __truediv__(self, o):
        if isinstance(o, np.ndarray):
            return NotImplemented
        o = Dual.lift(o)
        if o.a == 0:
            raise EvalError("division by zero")
        inv_a = _op2(1, o.a, lambda u, v: u / v)
        a = _op2(self.a, inv_a, lambda u, v: u * v)
        num_b = _op2(self.b, _op2(a, o.b, lambda u, v: u * v), lambda u, v: u - v)
        return Dual(a, _op2(num_b, inv_a, lambda u, v: u * v))

    def __rtruediv__(self, o):
        return Dual.lift(o) / self

    def __pow__(self, k: int):
        if not isinstance(k, int):
            raise EvalError(f"only integer powers are supported, received {k!r}")
        if k < 0:
            return Dual(Fraction(1)) / (self ** (-k))
        out = Dual(Fraction(1))
        for _ in range(k):
            out = out * self
        return out

    def sign(self) -> int:
        return (self.a > 0) - (self.a < 0)

    def exp(self) -> "Dual":
        e = _mp().exp(_to_mp(self.a))
        return Dual(e, e * _to_mp(self.b))

    def log(self) -> "Dual":
        if self.a <= 0:
            raise EvalError(f"log of a non-positive number ({float(self.a):.4g})")
        return Dual(_mp().log(_to_mp(self.a)), _to_mp(self.b) / _to_mp(self.a))

    def sqrt(self) -> "Dual":
        if self.a <= 0:
            raise EvalError(f"square root of a non-positive number ({float(self.a):.4g})")
        r = _mp().sqrt(_to_mp(self.a))
        return Dual(r, _to_mp(self.b) / (2 * r))

    def __repr__(self) -> str:
        return f"Dual({self.a}, {self.b})"


def to_float(x) -> float:
    """A float of a Fraction, an mpmath number or a :class:`Dual` (its value)."""
    if isinstance(x, Dual):
        x = x.a
    return float(x)


# ============================================================================ evaluation
#: elementwise functions: name -> (analytic?, exact definition on a Dual, float64/complex definition)
def _relu_exact(z: Dual, kink) -> Dual:
    s = z.sign()
    if s > 0:
        return z
    if s < 0:
        return Dual(Fraction(0))
    return Dual(Fraction(0), _op2(kink, z.b, lambda u, v: u * v))


def _abs_exact(z: Dual, kink) -> Dual:
    s = z.sign()
    if s != 0:
        return z if s > 0 else -z
    return Dual(Fraction(0), _op2(kink, z.b, lambda u, v: u * v))


def _sig_exact(z: Dual, kink=None) -> Dual:
    return Dual(Fraction(1)) / (Dual(Fraction(1)) + (-z).exp())


def _tanh_exact(z: Dual, kink=None) -> Dual:
    e = (z * 2).exp()
    return (e - 1) / (e + 1)


ELEMENTWISE: dict[str, tuple] = {
    "exp": (True, lambda z, k: z.exp(), np.exp),
    "log": (True, lambda z, k: z.log(), np.log),
    "sqrt": (True, lambda z, k: z.sqrt(), np.sqrt),
    "sigma": (True, _sig_exact, lambda z: 1.0 / (1.0 + np.exp(-z))),
    "tanh": (True, _tanh_exact, np.tanh),
    "softplus": (True, lambda z, k: (Dual(Fraction(1)) + z.exp()).log(), lambda z: np.log1p(np.exp(z))),
    "relu": (False, _relu_exact, lambda z: np.where(np.real(z) > 0, z, 0 * z)),
    "abs": (False, _abs_exact, lambda z: np.where(np.real(z) > 0, z, -z)),
    "sign": (False, lambda z, k: Dual(Fraction(z.sign())), lambda z: np.sign(np.real(z)) + 0j),
}

#: closed-form derivatives a *claim* may write as f'(z) (the truth never uses them)
_DERIV_TEXT = {"sigma": "σ(z)(1-σ(z))", "tanh": "1-tanh(z)²", "relu": "H(z)", "softplus": "σ(z)", "exp": "exp(z)",
               "log": "1/z", "sqrt": "1/(2√z)", "abs": "sign(z)"}


def _dfunc_scalar(name: str, z, exact: bool, kink):
    if exact:
        if name == "sigma":
            s = _sig_exact(z)
            return s * (Dual(Fraction(1)) - s)
        if name == "tanh":
            t = _tanh_exact(z)
            return Dual(Fraction(1)) - t * t
        if name in ("relu", "abs"):
            s = z.sign()
            if s == 0:
                return Dual(Fraction(kink))
            return Dual(Fraction(1) if s > 0 else Fraction(0 if name == "relu" else -1))
        if name == "softplus":
            return _sig_exact(z)
        if name == "exp":
            return z.exp()
        if name == "log":
            return Dual(Fraction(1)) / z
        if name == "sqrt":
            return Dual(Fraction(1)) / (z.sqrt() * 2)
    raise EvalError(f"no derivative of {name!r}")


def _dfunc_numeric(name: str, z, kink):
    if name == "sigma":
        s = 1.0 / (1.0 + np.exp(-z))
        return s * (1 - s)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name == "relu":
        return np.where(np.real(z) > 0, 1.0, np.where(np.real(z) < 0, 0.0, float(kink))) + 0 * z
    if name == "abs":
        return np.where(np.real(z) > 0, 1.0, np.where(np.real(z) < 0, -1.0, float(kink))) + 0 * z
    if name == "softplus":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "exp":
        return np.exp(z)
    if name == "log":
        return 1.0 / z
    if name == "sqrt":
        return 0.5 / np.sqrt(z)
    raise EvalError(f"no derivative of {name!r}")


class _Ev(ConvOps):
    """Evaluate an expression tree: ``exact`` (object arrays of :class:`Dual`) or float64/complex."""

    def __init__(self, env: Mapping[str, np.ndarray], exact: bool, knobs: Mapping[str, Any], dims: Mapping[str, int],
                 nodes: Mapping[int, tuple]):  # nodes: id(ones without a size) -> inferred (rows, cols), None if free
        self.env, self.exact, self.knobs, self.dims, self.nodes = env, exact, knobs, dims, nodes

    # -- scalars
    def const(self, v) -> np.ndarray:
        if self.exact:
            out = np.empty((1, 1), dtype=object)
            out[0, 0] = Dual(Fraction(v) if _is_frac(v) else v)
            return out
        return np.array([[complex(float(v))]])

    def full(self, shape, v) -> np.ndarray:
        if self.exact:
            out = np.empty(shape, dtype=object)
            for idx in np.ndindex(*shape):
                out[idx] = Dual(Fraction(v))
            return out
        return np.full(shape, complex(float(v)))

    def param(self, n: Node, key: str, default=None) -> int:
        v = n.attr(key, default)
        if isinstance(v, str):
            if v in self.knobs:
                v = self.knobs[v]
            elif v in self.dims:
                v = self.dims[v]
            else:
                raise EvalError(f"{n.op}: size parameter {v!r} is neither a knob ({', '.join(sorted(self.knobs)) or 'none'}) "
                                f"nor a dimension")
        if v is None:
            raise EvalError(f"{n.op}: a size is needed")
        return int(v)

    def ev(self, n: Node, want: tuple | None = None) -> np.ndarray:
        op = n.op
        f = getattr(self, "op_" + op, None)
        if f is None:
            raise EvalError(f"unknown operation {op!r}")
        return f(n, want)

    # -- leaves
    def op_sym(self, n, want):
        name = n.attr("name")
        if name in self.env:
            return self.env[name]
        if name in self.dims:
            return self.const(self.dims[name])
        if name in self.knobs and isinstance(self.knobs[name], (int, Fraction)):
            return self.const(self.knobs[name])
        raise EvalError(f"unknown symbol {name!r}")

    def op_num(self, n, want):
        return self.const(n.attr("value"))

    def _sized(self, n, want, fill):
        size = n.attr("n")
        if size is not None:
            k = self.param(n, "n")
            shape = (k, k) if n.op == "eye" else (k, 1)
        elif n.op in ("ones", "eye") and None not in self._inferred(n, want):
            shape = self._inferred(n, want)
        elif want is not None and any(w is not None for w in want):
            if n.op == "eye":
                k = next(w for w in want if w is not None)
                shape = (k, k)
            else:
                shape = tuple(1 if w is None else w for w in want)
        else:
            raise EvalError(f"the size of {to_text(n)} cannot be inferred here; write it with a subscript (I_n)")
        if n.op == "eye":
            if shape[0] != shape[1]:
                raise EvalError(f"an identity matrix cannot be {shape[0]}×{shape[1]}")
            out = self.full(shape, 0)
            for i in range(shape[0]):
                out[i, i] = self.const(1)[0, 0]
            return out
        return self.full(shape, fill)

    def _inferred(self, n, want) -> tuple:  # each axis's size from the shape inference, else from the context
        return tuple(a if a is not None else w for a, w in zip(self.nodes.get(id(n), (None, None)), want or (None, None)))

    def op_eye(self, n, want):
        return self._sized(n, want, 0)

    def op_ones(self, n, want):
        return self._sized(n, want, 1)

    def op_zeros(self, n, want):
        return self._sized(n, want, 0)

    # -- arithmetic
    def _pair(self, n, same: bool):
        a, b = n.args
        if _unsized(a) and not _unsized(b):
            B = self.ev(b)
            return self.ev(a, B.shape if same else None), B
        A = self.ev(a)
        return A, self.ev(b, A.shape if same and _unsized(b) else None)

    @staticmethod
    def _bshape(A, B, what):
        if A.shape == B.shape:
            return A, B
        if A.shape == (1, 1):
            return np.broadcast_to(A, B.shape), B
        if B.shape == (1, 1):
            return A, np.broadcast_to(B, A.shape)
        raise EvalError(f"{what} of a {A.shape[0]}×{A.shape[1]} and a {B.shape[0]}×{B.shape[1]} array")

    def op_add(self, n, want):
        A, B = self._bshape(*self._pair(n, True), "sum")
        return A + B

    def op_sub(self, n, want):
        A, B = self._bshape(*self._pair(n, True), "difference")
        return A - B

    def op_neg(self, n, want):
        return -self.ev(n.args[0], want)

    def op_hadamard(self, n, want):
        A, B = self._pair(n, True)
        if A.shape != B.shape:
            raise EvalError(f"Hadamard product of a {A.shape[0]}×{A.shape[1]} and a {B.shape[0]}×{B.shape[1]} array")
        return A * B

    def _matmul(self, A, B):
        if A.shape == (1, 1):
            return B * A[0, 0]
        if B.shape == (1, 1):
            return A * B[0, 0]
        if A.shape[1] != B.shape[0]:
            raise EvalError(f"product of a {A.shape[0]}×{A.shape[1]} and a {B.shape[0]}×{B.shape[1]} matrix")
        if self.exact:
            out = np.empty((A.shape[0], B.shape[1]), dtype=object)
            for i in range(A.shape[0]):
                for j in range(B.shape[1]):
                    acc = Dual(Fraction(0))
                    for k in range(A.shape[1]):
                        acc = acc + A[i, k] * B[k, j]
                    out[i, j] = acc
            return out
        return A @ B

    def op_mul(self, n, want):
        a, b = n.args
        if _unsized(a) and not _unsized(b):
            B = self.ev(b)
            return self._matmul(self.ev(a, (None, B.shape[0])), B)
        A = self.ev(a)
        if _unsized(b):
            return self._matmul(A, self.ev(b, (A.shape[1], None)))
        return self._matmul(A, self.ev(b))

    def op_hadamard_or_scale(self, n, want):
        A, B = self.ev(n.args[0]), self.ev(n.args[1])
        if A.shape == B.shape:
            return A * B
        return self._matmul(A, B)

    def op_cdot(self, n, want):
        A, B = self.ev(n.args[0]), self.ev(n.args[1])
        if A.shape == B.shape and A.shape[1] == 1 and A.shape[0] > 1:
            return self._matmul(A.T, B)
        return self._matmul(A, B)

    def op_div(self, n, want):
        A, B = self.ev(n.args[0]), self.ev(n.args[1])
        if B.shape == (1, 1):
            return A * (self.const(1)[0, 0] / B[0, 0]) if self.exact else A / B[0, 0]
        if A.shape == (1, 1) or A.shape == B.shape:
            A, B = self._bshape(A, B, "quotient")
            return A / B
        raise EvalError(f"quotient of a {A.shape[0]}×{A.shape[1]} by a {B.shape[0]}×{B.shape[1]} array")

    def op_pow(self, n, want):
        A = self.ev(n.args[0])
        e = n.args[1]
        if e.op != "num" or e.attr("value").denominator != 1:
            raise EvalError(f"only integer exponents are supported, received {to_text(e)}")
        k = int(e.attr("value"))
        if A.shape == (1, 1) or A.shape[0] != A.shape[1]:
            if self.exact:
                return np.vectorize(lambda z: z ** k, otypes=[object])(A)
            return A ** k
        if k < 0:
            A, k = self._inv(A), -k
        out = self.ev(Node("eye"), A.shape)
        for _ in range(k):
            out = self._matmul(out, A)
        return out

    def op_T(self, n, want):
        return self.ev(n.args[0], None if want is None else want[::-1]).T

    def _inv(self, A):
        if A.shape[0] != A.shape[1]:
            raise EvalError(f"inverse of a non-square {A.shape[0]}×{A.shape[1]} matrix")
        if not self.exact:
            return np.linalg.inv(A)
        k = A.shape[0]
        M = np.concatenate([A.copy(), self.ev(Node("eye"), (k, k))], axis=1)
        for c in range(k):
            p = next((r for r in range(c, k) if M[r, c].a != 0), None)
            if p is None:
                raise EvalError("the matrix is singular")
            if p != c:
                M[[c, p]] = M[[p, c]]
            piv = M[c, c]
            M[c] = np.array([v / piv for v in M[c]], dtype=object)
            for r in range(k):
                if r != c and not (M[r, c].a == 0 and M[r, c].b == 0):
                    f = M[r, c]
                    M[r] = np.array([M[r, j] - f * M[c, j] for j in range(2 * k)], dtype=object)
        return M[:, k:]

    def op_inv(self, n, want):
        return self._inv(self.ev(n.args[0]))

    def _det(self, A):
        if A.shape[0] != A.shape[1]:
            raise EvalError(f"determinant of a non-square {A.shape[0]}×{A.shape[1]} matrix")
        if not self.exact:
            return np.linalg.det(A) if not np.iscomplexobj(A) else _complex_det(A)
        M = A.copy()
        k = A.shape[0]
        det = Dual(Fraction(1))
        for c in range(k):
            p = next((r for r in range(c, k) if M[r, c].a != 0), None)
            if p is None:
                return Dual(Fraction(0))
            if p != c:
                M[[c, p]] = M[[p, c]]
                det = -det
            det = det * M[c, c]
            for r in range(c + 1, k):
                f = M[r, c] / M[c, c]
                M[r] = np.array([M[r, j] - f * M[c, j] for j in range(k)], dtype=object)
        return det

    def op_det(self, n, want):
        d = self._det(self.ev(n.args[0]))
        return self.const(1) * d if self.exact else np.array([[d]])

    def op_logdet(self, n, want):
        d = self._det(self.ev(n.args[0]))
        if self.exact:
            if d.a == 0:
                raise EvalError("log|det| of a singular matrix")
            out = self.const(1)
            out[0, 0] = (d if d.a > 0 else -d).log()
            return out
        s = np.sign(np.real(d))
        return np.array([[np.log(d * s)]])

    def op_tr(self, n, want):
        A = self.ev(n.args[0])
        if A.shape[0] != A.shape[1]:
            raise EvalError(f"trace of a non-square {A.shape[0]}×{A.shape[1]} matrix")
        acc = A[0, 0]
        for i in range(1, A.shape[0]):
            acc = acc + A[i, i]
        out = self.const(0)
        out[0, 0] = acc
        return out

    def op_sum(self, n, want):
        A = self.ev(n.args[0])
        acc = A.flat[0]
        for v in A.flat[1:]:
            acc = acc + v
        out = self.const(0)
        out[0, 0] = acc
        return out

    def op_mean(self, n, want):
        A = self.ev(n.args[0])
        s = self.op_sum(Node("sum", (n.args[0],)), None)
        return s * (self.const(1)[0, 0] / A.size) if self.exact else s / A.size

    def op_inner(self, n, want):
        A, B = self.ev(n.args[0]), self.ev(n.args[1])
        if A.shape != B.shape:
            raise EvalError(f"inner product of a {A.shape[0]}×{A.shape[1]} and a {B.shape[0]}×{B.shape[1]} array")
        acc = (A * B)
        return self.op_sum(Node("sum", (Node("_val", (), (("v", acc),)),)), None)

    def op__val(self, n, want):
        return n.attr("v")

    def op_norm(self, n, want):
        A = self.ev(n.args[0])
        s = self.op_sum(Node("sum", (Node("_val", (), (("v", A * A),)),)), None)
        return self._func("sqrt", s)

    def op_kron(self, n, want):
        A, B = self.ev(n.args[0]), self.ev(n.args[1])
        if self.exact:
            out = np.empty((A.shape[0] * B.shape[0], A.shape[1] * B.shape[1]), dtype=object)
            for i in range(A.shape[0]):
                for j in range(A.shape[1]):
                    out[i * B.shape[0]:(i + 1) * B.shape[0], j * B.shape[1]:(j + 1) * B.shape[1]] = A[i, j] * B
            return out
        return np.kron(A, B)

    def op_diag(self, n, want):
        A = self.ev(n.args[0])
        if A.shape[1] == 1 or A.shape[0] == 1:
            v = A.reshape(-1)
            out = self.full((v.size, v.size), 0)
            for i in range(v.size):
                out[i, i] = v[i]
            return out
        if A.shape[0] == A.shape[1]:
            return np.array([A[i, i] for i in range(A.shape[0])], dtype=A.dtype).reshape(-1, 1)
        raise EvalError(f"diag of a non-square {A.shape[0]}×{A.shape[1]} matrix")

    def op_vec(self, n, want):
        A = self.ev(n.args[0])
        return A.reshape(-1, 1, order="F")

    def op_vecr(self, n, want):
        A = self.ev(n.args[0])
        return A.reshape(-1, 1, order="C")

    def _func(self, name, A):
        analytic, exact_f, num_f = ELEMENTWISE[name]
        if self.exact:
            kink = self.knobs.get("kinks", {}).get(name, Fraction(0))
            return np.vectorize(lambda z: exact_f(z, kink), otypes=[object])(A)
        with np.errstate(all="ignore"):
            out = num_f(A)
        return out

    def op_func(self, n, want):
        return self._func(n.attr("name"), self.ev(n.args[0], want))

    def op_dfunc(self, n, want):
        name = n.attr("name")
        A = self.ev(n.args[0], want)
        kink = self.knobs.get("kinks", {}).get(name, Fraction(0))
        if self.exact:
            return np.vectorize(lambda z: _dfunc_scalar(name, z, True, kink), otypes=[object])(A)
        return _dfunc_numeric(name, A, kink)

    def op_softmax(self, n, want):
        A = self.ev(n.args[0])
        E = self._func("exp", A)
        cols = []
        for j in range(A.shape[1]):
            s = self.op_sum(Node("sum", (Node("_val", (), (("v", E[:, j:j + 1]),)),)), None)[0, 0]
            cols.append(E[:, j:j + 1] * (self.const(1)[0, 0] / s) if self.exact else E[:, j:j + 1] / s)
        return np.concatenate(cols, axis=1)

    def op_lse(self, n, want):
        A = self.ev(n.args[0])
        E = self._func("exp", A)
        out = []
        for j in range(A.shape[1]):
            s = self.op_sum(Node("sum", (Node("_val", (), (("v", E[:, j:j + 1]),)),)), None)
            out.append(self._func("log", s))
        return np.concatenate(out, axis=1)

def _unsized(n: Node) -> bool:
    """An identity, ones or zeros without a stated size (possibly transposed or negated)."""
    while n.op in ("T", "neg"):
        n = n.args[0]
    return n.op in ("eye", "ones", "zeros") and n.attr("n") is None


def _complex_det(A):
    # LU without pivot search on the complex values (pivoting by real part keeps complex-step analytic)
    M = np.array(A, dtype=complex)
    k = M.shape[0]
    det = 1.0 + 0j
    for c in range(k):
        p = c + int(np.argmax(np.abs(np.real(M[c:, c]))))
        if M[p, c] == 0:
            return 0j
        if p != c:
            M[[c, p]] = M[[p, c]]
            det = -det
        det *= M[c, c]
        M[c + 1:] -= np.outer(M[c + 1:, c] / M[c, c], M[c])
    return det


_NON_ANALYTIC = {"maxpool", "maxmask", "maxunpool"}


def is_analytic(node: Node) -> bool:
    """Whether complex-step differentiation applies (no ReLU, |x|, max)."""
    for _, n in walk(node):
        if n.op == "func" and not ELEMENTWISE[n.attr("name")][0]:
            return False
        if n.op in _NON_ANALYTIC or n.op == "dfunc":
            return False
    return True


def evaluate(node: Node, env: Mapping[str, np.ndarray], *, exact: bool, knobs: Mapping[str, Any] | None = None,
             dims: Mapping[str, int] | None = None, want: tuple | None = None,
             nodes: Mapping[int, tuple] | None = None) -> np.ndarray:
    """Evaluate an expression on named arrays (2-D; object arrays of :class:`Dual` when ``exact``).

    Raises
    ------
    EvalError
        The expression cannot be evaluated as written (with the reason).
    """
    with np.errstate(all="ignore"):
        out = _Ev(env, exact, knobs or {}, dims or {}, nodes or {}).ev(node, want)
    out = np.asarray(out)
    if out.ndim == 0:
        out = out.reshape(1, 1)
    return out
