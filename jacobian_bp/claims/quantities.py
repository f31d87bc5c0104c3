"""What a claim reads: the read-only named quantities ``q`` of one instance, with access logging.

Every access and helper call is logged (:class:`_Log`) so that the diagnosis can try corrections at
the level of one quantity (an index shift, a transpose, a swapped Kronecker factor, a wrong axis);
:class:`_QCorrection` is such a correction, applied while the formula is evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import sympy

from ..engine.conventions import commutation_matrix
from .model import MissingQuantity


class _Log:
    """Access log and corrections of one evaluation of a claim."""

    def __init__(self, corr: "_QCorrection | None" = None):
        self.corr = corr or _QCorrection()
        self.accesses: set = set()  # (family, k, l, L)
        self.calls: list = []  # (helper, call index, info)
        self.counters: dict[str, int] = {}
        self.act_calls: list = []  # (k, layer_of_argument)
        self.l: int | None = None
        self.L: int = 0
        self.shapes: dict = {}  # (family, k) -> shape of the value handed out
        self.deriv_at_a: set = set()  # layers j whose activation a[j] was the argument of a derivative (σ′, Jac)

    def next_call(self, helper: str) -> int:
        c = self.counters.get(helper, 0)
        self.counters[helper] = c + 1
        return c


@dataclass(frozen=True)
class _QCorrection:
    """Quantity-level corrections applied during one evaluation."""

    shift: tuple = ()  # ((family, anchor, offset, delta), ...)
    transpose: tuple = ()  # ((family, anchor, offset), ...)
    flip_axis: tuple = ()  # ((helper, call), ...)
    swap_kron: tuple = ()  # call indices
    flip_vec: tuple = ()  # ((helper, call), ...)
    act_follows_argument: bool = False
    L_to_l: tuple = ()  # families whose index L is replaced by l
    swap_family: tuple = ()  # ((family, anchor, offset, other family), ...): a[l] read as z[l], ...
    drop: tuple = ()  # ((family, anchor, offset), ...): f'(z) / Jacobian factors replaced by ones / I
    drop_call: tuple = ()  # ((helper, call), ...): dsigma / Jac calls replaced by ones / I
    negate: tuple = ()  # ((family, anchor, offset), ...): quantity read with the opposite sign
    neg_arg: tuple = ()  # ((helper, call), ...): sigma / dsigma / Jac called at −v
    swap_matmul: tuple = ()  # call indices of ``@`` whose operands are swapped, or ("all",), ("odd",), ("even",)

    def merged(self, other: "_QCorrection") -> "_QCorrection":
        """Both corrections at once."""
        return _QCorrection(**{f: (getattr(self, f) or getattr(other, f)) if isinstance(getattr(self, f), bool)
                               else getattr(self, f) + getattr(other, f)
                               for f in self.__dataclass_fields__})


#: the active log of the formula being evaluated (``@`` between quantities is logged and may be corrected)
_ACTIVE: list = []


class _Active:
    """Context manager: ``log`` is the active log while a formula is evaluated."""

    def __init__(self, log: "_Log"):
        self.log = log

    def __enter__(self):
        _ACTIVE.append(self.log)
        return self.log

    def __exit__(self, *exc):
        _ACTIVE.pop()
        return False


def _shape_txt(s) -> str:
    return "×".join(map(str, s)) if len(s) else "scalar"


class IllTypedOperation(ValueError):
    """An operation of a claim's formula on operands of incompatible shapes (a one-line message)."""


def _shape_of(v):
    return tuple(np.shape(v)) if not isinstance(v, sympy.MatrixBase) else tuple(v.shape)


def _elementwise(name: str, sym: str):
    def op(self, other):
        try:
            out = getattr(np.ndarray, name)(self, other)
        except ValueError as exc:
            if "broadcast" not in str(exc):
                raise
            a, b = (_shape_of(other), self.shape) if name.startswith("__r") else (self.shape, _shape_of(other))
            raise IllTypedOperation(f"elementwise {sym} of shapes {_shape_txt(a)} and {_shape_txt(b)}: they do not "
                                    "broadcast (equal shapes, or a scalar, are needed)") from None
        return out

    op.__name__ = name
    return op


class _QArray(np.ndarray):
    """The NumPy array a claim reads (numeric values, or SymPy expressions with ``dtype=object``).

    It behaves as any NumPy array -- ``@`` is the matrix product, ``*``, ``**``, ``+`` act
    elementwise with broadcasting, so that ``1 - v`` and ``v**2`` mean the same on numeric and
    symbolic instances -- except that an ill-typed operation raises :class:`IllTypedOperation`
    naming the operation and both shapes, and that ``@`` is logged (call by call) so that a chain
    rule multiplied in the wrong order can be diagnosed.
    """

    def __matmul__(self, other):
        return _matmul(self, other, False)

    def __rmatmul__(self, other):
        return _matmul(self, other, True)

    __add__ = _elementwise("__add__", "sum +")
    __radd__ = _elementwise("__radd__", "sum +")
    __sub__ = _elementwise("__sub__", "difference −")
    __rsub__ = _elementwise("__rsub__", "difference −")
    __mul__ = _elementwise("__mul__", "product *")
    __rmul__ = _elementwise("__rmul__", "product *")
    __truediv__ = _elementwise("__truediv__", "quotient /")
    __rtruediv__ = _elementwise("__rtruediv__", "quotient /")
    __pow__ = _elementwise("__pow__", "power **")


def _matmul(self, other, reflected: bool):
    A, B = (other, self) if reflected else (self, other)
    if isinstance(other, sympy.MatrixBase):
        return NotImplemented if not reflected else _as_q(sympy.Matrix(A) * sympy.Matrix(B))
    log = _ACTIVE[-1] if _ACTIVE else None
    if log is not None:
        c = log.next_call("matmul")
        log.calls.append(("matmul", c, (_shape_of(A), _shape_of(B))))
        sw = log.corr.swap_matmul
        if sw and (c in sw or "all" in sw or ("odd" in sw and c % 2 == 1) or ("even" in sw and c % 2 == 0)):
            A, B = B, A
    sa, sb = _shape_of(A), _shape_of(B)
    if len(sa) == 0 or len(sb) == 0:
        raise IllTypedOperation(f"matrix product @ with a scalar operand (shapes {_shape_txt(sa)} and {_shape_txt(sb)}): "
                                "use * for a scalar multiple")
    if sa[-1] != sb[-2 if len(sb) > 1 else 0]:
        raise IllTypedOperation(f"matrix product A @ B of shapes {_shape_txt(sa)} and {_shape_txt(sb)}: inner dimensions "
                                f"{sa[-1]} and {sb[-2 if len(sb) > 1 else 0]} differ")
    return np.matmul(np.asarray(A), np.asarray(B)).view(_QArray)


def _as_q(v):
    """A value handed to a claim: NumPy arrays and SymPy matrices become :class:`_QArray` (object dtype for
    SymPy); numbers and shapes pass."""
    if isinstance(v, _QArray):
        return v
    if isinstance(v, sympy.MatrixBase):
        a = np.empty(v.shape, dtype=object)
        for i in range(v.shape[0]):
            for j in range(v.shape[1]):
                a[i, j] = v[i, j]
        return a.view(_QArray)
    if isinstance(v, np.ndarray):
        return v.view(_QArray)
    return v


def _anchor_value(anchor: str, log: _Log) -> int | None:
    if anchor == "abs":
        return 0
    if anchor == "L":
        return log.L
    return log.l


def _fmt_index(anchor: str, offset: int) -> str:
    if anchor == "abs":
        return str(offset)
    base = anchor
    if offset == 0:
        return base
    return f"{base}{'+' if offset > 0 else '-'}{abs(offset)}"


class Family:
    """A read-only indexed family of quantities (``q.W[l]``), logging accesses.

    Asking for an index the network lacks raises :class:`MissingQuantity` naming the
    family and its valid range.
    """

    def __init__(self, name: str, items: dict, log: _Log, what: str = "", siblings: dict | None = None):
        self._name = name
        self._items = items
        self._log = log
        self._what = what or name
        self._siblings = siblings  # the other families (for a correction that reads a[l] as z[l])

    def _range(self) -> str:
        ks = sorted(self._items)
        return f"{ks[0]}..{ks[-1]}" if ks else "no index"

    def __getitem__(self, k):
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"{self._name}[...] expects an integer layer index, received {k!r}")
        k = int(k)
        log = self._log
        log.accesses.add((self._name, k, log.l, log.L))
        k2 = k
        for fam, anchor, offset, delta in log.corr.shift:
            av = _anchor_value(anchor, log)
            if fam == self._name and av is not None and k - av == offset:
                k2 = k + delta
        if self._name in log.corr.L_to_l and k == log.L and log.l is not None:
            k2 = log.l
        if k2 not in self._items:
            raise MissingQuantity(
                f"{self._name}[{k2}]: the network has no {self._what} with index {k2} "
                f"({self._name} is defined for {self._range()}, L = {log.L})"
            )
        fam = self._name
        for f0, anchor, offset, other in log.corr.swap_family:
            av = _anchor_value(anchor, log)
            if f0 == fam and av is not None and k - av == offset and self._siblings is not None \
                    and other in self._siblings:
                return self._siblings[other][k2]
        v = self._value(k2)
        log.shapes[(fam, k)] = _shape_of(v) if not isinstance(v, (int, np.integer)) else ()
        for f0, anchor, offset in log.corr.transpose:
            av = _anchor_value(anchor, log)
            if f0 == fam and av is not None and k - av == offset:
                v = v.T
        for f0, anchor, offset in log.corr.negate:
            av = _anchor_value(anchor, log)
            if f0 == fam and av is not None and k - av == offset:
                v = -v
        for f0, anchor, offset in log.corr.drop:
            av = _anchor_value(anchor, log)
            if f0 == fam and av is not None and k - av == offset:
                v = _neutral(v, fam == "Jact")
        return v

    def _value(self, k2):
        v = self._items[k2]
        if callable(v) and not isinstance(v, (np.ndarray, sympy.MatrixBase)):
            v = v()
            self._items[k2] = v
        return _readonly(v)

    def __contains__(self, k) -> bool:
        return k in self._items

    def __repr__(self) -> str:
        return f"<{self._name}[{self._range()}]>"


#: NumPy functions that act elementwise, and their SymPy counterparts (for ``q.np`` on symbolic instances)
_SYMPY_ELEMENTWISE = {"exp": sympy.exp, "log": sympy.log, "tanh": sympy.tanh, "sin": sympy.sin, "cos": sympy.cos,
                      "sqrt": sympy.sqrt, "abs": sympy.Abs, "absolute": sympy.Abs, "sign": sympy.sign,
                      "cosh": sympy.cosh, "sinh": sympy.sinh, "arctan": sympy.atan, "square": lambda t: t ** 2,
                      "log1p": lambda t: sympy.log(1 + t), "expm1": lambda t: sympy.exp(t) - 1}
#: NumPy functions that work on object arrays of SymPy expressions as they are
_OBJECT_SAFE = ("transpose", "reshape", "vstack", "hstack", "concatenate", "stack", "outer", "kron", "diagonal",
                "trace", "dot", "matmul", "multiply", "add", "subtract", "divide", "true_divide", "negative", "ravel",
                "newaxis", "shape", "ndim", "size", "swapaxes", "diagflat", "diag", "tile", "repeat", "expand_dims",
                "squeeze", "atleast_2d", "column_stack", "row_stack", "cumsum", "einsum")
#: array constructors, built with exact integers on symbolic instances
_CONSTRUCTORS = ("eye", "identity", "ones", "zeros", "ones_like", "zeros_like", "full")


class _NumpyProxy:
    """NumPy with ``sum``/``mean``/``max``/``min``/``amax``/``prod`` instrumented for axis corrections.

    On symbolic instances the elementwise functions (``exp``, ``log``, ``tanh``, ``sqrt``, ...) apply
    their SymPy counterparts entry by entry, constructors (``eye``, ``ones``, ``zeros``) give exact
    integers, and the functions that need numbers (``linalg``, random) are refused with a clear message.
    """

    _REDUCTIONS = ("sum", "mean", "max", "min", "amax", "amin", "prod")

    def __init__(self, log: _Log, symbolic: bool = False):
        self._log = log
        self._symbolic = symbolic

    def __getattr__(self, name):
        if name == "pi":
            return sympy.pi if self._symbolic else np.pi
        if name == "e":
            return sympy.E if self._symbolic else np.e
        fn = getattr(np, name, None)
        if fn is None:
            raise AttributeError(f"q.np has no attribute {name!r}")
        if self._symbolic:
            fn = self._symbolic_fn(name, fn)
        if name not in self._REDUCTIONS:
            return _wrapping(fn) if callable(fn) else fn
        log = self._log

        def reduction(a, *args, axis=None, **kwargs):
            if args:
                axis, args = args[0], args[1:]
            c = log.next_call("np." + name)
            # only an integer axis can be the wrong one of two (a tuple of axes is logged as None: no correction)
            log.calls.append(("np." + name, c, axis if isinstance(axis, (int, np.integer)) else None))
            if ("np." + name, c) in log.corr.flip_axis and axis is not None:
                nd = np.ndim(a)
                ax = axis % nd if nd else axis
                if nd == 2:
                    axis = 1 - ax
            return _as_q(fn(np.asarray(a), *args, axis=axis, **kwargs))

        return reduction

    @staticmethod
    def _symbolic_fn(name: str, fn):
        if name in _SYMPY_ELEMENTWISE:
            f = _SYMPY_ELEMENTWISE[name]

            def elementwise(a, *args, **kwargs):
                if args or kwargs:
                    raise TypeError(f"q.np.{name} on symbolic quantities takes one array")
                arr = np.asarray(a, dtype=object)
                out = np.empty(arr.shape, dtype=object)
                for idx in np.ndindex(arr.shape):
                    out[idx] = f(arr[idx])
                return out if arr.shape else out.item()

            return elementwise
        if name in _CONSTRUCTORS:
            def constructor(*args, **kwargs):
                kwargs.pop("dtype", None)
                return np.asarray(fn(*args, dtype=int, **kwargs)).astype(object)

            return constructor
        if name in _OBJECT_SAFE or name in _NumpyProxy._REDUCTIONS or not callable(fn):
            return fn
        raise MissingQuantity(f"q.np.{name}: not available on symbolic quantities (elementwise functions "
                              f"{', '.join(sorted(_SYMPY_ELEMENTWISE))}, constructors, reductions and reshaping are)")


def _wrapping(fn):
    """``fn`` with its array result handed out as :class:`_QArray`."""
    def call(*args, **kwargs):
        return _as_q(fn(*args, **kwargs))

    call.__name__ = getattr(fn, "__name__", "function")
    call.__doc__ = getattr(fn, "__doc__", None)
    return call


class Quantities:
    """Read-only named quantities of one instance (numeric or symbolic); see the module docstring.

    Build it with :func:`build_instances` (numeric) or :func:`symbolic_quantities`; a
    claim only reads it.
    """

    def __init__(self, data: "_InstanceData", log: _Log):
        object.__setattr__(self, "_d", data)
        object.__setattr__(self, "_log", log)
        fams: dict = {}
        for name, (items, what) in data.families.items():
            fams[name] = Family(name, items, log, what, siblings=fams)
        object.__setattr__(self, "_fams", fams)

    def __setattr__(self, key, value):
        raise AttributeError("Quantities are read-only")

    def __getattr__(self, name):
        d = object.__getattribute__(self, "_d")
        fams = object.__getattribute__(self, "_fams")
        if name in fams:
            return fams[name]
        if name in d.scalars:
            v = d.scalars[name]
            if callable(v) and not isinstance(v, (np.ndarray, sympy.MatrixBase)):
                v = v()
                d.scalars[name] = v
            return _readonly(v)
        if name == "np":
            return _NumpyProxy(object.__getattribute__(self, "_log"), symbolic=d.symbolic)
        raise MissingQuantity(f"q.{name}: this instance has no quantity {name!r} "
                              f"(available: {', '.join(sorted(set(d.scalars) | set(fams)))})")

    # ------------------------------------------------------------------ helpers
    @property
    def symbolic(self) -> bool:
        return object.__getattribute__(self, "_d").symbolic

    def _const(self, a: np.ndarray):
        """A constant array (identity, zeros, ones): exact integers on symbolic instances."""
        if self.symbolic:
            return a.astype(int).astype(object).view(_QArray)
        return a.astype(float).view(_QArray)

    def I(self, n: int):  # noqa: E743 - the identity matrix
        return self._const(np.eye(int(n)))

    def zeros(self, m: int, n: int):
        return self._const(np.zeros((int(m), int(n))))

    def ones(self, m: int, n: int):
        return self._const(np.ones((int(m), int(n))))

    def diag(self, v):
        """Diagonal matrix from a column, a row or a 1-D vector."""
        if self.symbolic:
            vals = list(np.asarray(v, dtype=object).ravel()) if not isinstance(v, sympy.MatrixBase) else list(v)
            out = np.zeros((len(vals), len(vals)), dtype=int).astype(object)
            for i, t in enumerate(vals):
                out[i, i] = t
            return out.view(_QArray)
        return _as_q(np.diag(np.ravel(np.asarray(v, dtype=float))))

    def kron(self, A, B):
        """:math:`\\mathbf A\\otimes\\mathbf B` (call sites are instrumented: a swapped order is diagnosed)."""
        log = object.__getattribute__(self, "_log")
        c = log.next_call("kron")
        log.calls.append(("kron", c, None))
        if c in log.corr.swap_kron:
            A, B = B, A
        return _as_q(np.kron(np.asarray(_plain(A)), np.asarray(_plain(B))))

    def _vec(self, helper: str, M, order: str):
        log = object.__getattribute__(self, "_log")
        c = log.next_call(helper)
        log.calls.append((helper, c, None))
        if (helper, c) in log.corr.flip_vec:
            order = "C" if order == "F" else "F"
        return _as_q(np.asarray(_plain(M)).reshape(-1, 1, order=order))

    def vec(self, M):
        """Columns of ``M`` stacked (the vec of Damadi and MML), as a column."""
        return self._vec("vec", M, "F")

    def vec_r(self, M):
        """Rows of ``M`` stacked (row-major flatten), as a column."""
        return self._vec("vec_r", M, "C")

    def hadamard(self, A, B):
        A, B = np.asarray(_plain(A)), np.asarray(_plain(B))
        if A.shape != B.shape:
            raise IllTypedOperation(f"Hadamard product ⊙ of shapes {_shape_txt(A.shape)} and {_shape_txt(B.shape)}: "
                                    "equal shapes are needed")
        return _as_q(A * B)

    def hstack(self, blocks: Sequence):
        return _as_q(_stack(np.hstack, "hstack", blocks, 0))

    def vstack(self, blocks: Sequence):
        return _as_q(_stack(np.vstack, "vstack", blocks, 1))

    def K(self, m: int, n: int):
        """Commutation matrix :math:`\\mathbf K_{m,n}` (``K vec(A) = vec(Aᵀ)`` for ``A`` m×n)."""
        return self._const(commutation_matrix(int(m), int(n)).toarray())

    # activations -------------------------------------------------------------
    def _act_index(self, k: int, v, helper: str) -> tuple:
        d = object.__getattribute__(self, "_d")
        log = object.__getattribute__(self, "_log")
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"{helper}(k, v): k must be a layer index, received {k!r}")
        k = int(k)
        c = log.next_call(helper)
        log.calls.append((helper, c, k))
        src = d.layer_of(v)
        log.act_calls.append((k, src))
        log.accesses.add(("sigma", k, log.l, log.L))
        if helper in ("dsigma", "Jac"):
            j = d.layer_of_activation(v)
            if j is not None:
                log.deriv_at_a.add(j)
        k2 = k
        for fam, anchor, offset, delta in log.corr.shift:
            av = _anchor_value(anchor, log)
            if fam == "sigma" and av is not None and k - av == offset:
                k2 = k + delta
        if "sigma" in log.corr.L_to_l and k == log.L and log.l is not None:
            k2 = log.l
        if log.corr.act_follows_argument and src is not None:
            k2 = src
        if k2 not in d.activations:
            raise MissingQuantity(f"{helper}({k2}, ·): the network has no activation σ_{k2} "
                                  f"(defined for 1..{d.L})")
        if (helper, c) in log.corr.neg_arg:
            v = -np.asarray(_plain(v)) if not isinstance(v, sympy.MatrixBase) else -v
        return k2, c, v

    def sigma(self, k: int, v):
        """Activation :math:`\\sigma_k` applied to a column, or to a batch in the convention's layout."""
        k2, c, v = self._act_index(k, v, "sigma")
        return _as_q(object.__getattribute__(self, "_d").apply_act(k2, _plain(v)))

    def dsigma(self, k: int, v):
        """Elementwise derivative :math:`\\sigma_k'` at ``v`` (same shape as ``v``)."""
        k2, c, v = self._act_index(k, v, "dsigma")
        out = _as_q(object.__getattribute__(self, "_d").apply_dact(k2, _plain(v)))
        if ("dsigma", c) in object.__getattribute__(self, "_log").corr.drop_call:
            out = _neutral(out, False)
        return out

    def Jac(self, k: int, v):
        """Jacobian :math:`d(\\sigma_k)_v` of layer ``k``'s activation at the vector ``v`` (Ganev's Jacobian(σ, z))."""
        k2, c, v = self._act_index(k, v, "Jac")
        out = _as_q(object.__getattribute__(self, "_d").act_jacobian(k2, _plain(v)))
        if ("Jac", c) in object.__getattribute__(self, "_log").corr.drop_call:
            out = _neutral(out, True)
        return out

    def grad_C(self, yhat):
        """:math:`\\nabla_{\\hat{\\mathbf y}} C(\\hat{\\mathbf y}, \\mathbf y)` of the per-sample loss, at ``yhat`` (column)."""
        return _as_q(object.__getattribute__(self, "_d").grad_C(_plain(yhat)))

    def loss_value(self, yhat, y=None):
        """Per-sample loss :math:`C(\\hat{\\mathbf y}, \\mathbf y)` (``y`` defaults to the instance's target)."""
        return object.__getattribute__(self, "_d").loss_value(_plain(yhat), None if y is None else _plain(y))

    def indexed(self, name: str, k: int):
        """``name[k]`` for a family given by name -- a family the network lacks raises :class:`MissingQuantity`."""
        fams = object.__getattribute__(self, "_fams")
        if name not in fams:
            raise MissingQuantity(f"{name}_{k}: the network has no layer-indexed quantity {name!r} "
                                  f"(families: {', '.join(sorted(fams))})")
        return fams[name][k]

    def param(self, name: str, l: int):
        """Parameter (or intermediate) ``name`` of layer ``l`` by the layer's own name, e.g. ``q.param("W.1", l)`` for
        a residual block's first weight (also ``q.W_1[l]``) or ``q.param("K", l)`` for a kernel (also ``q.K_[l]``)."""
        from .layer_networks import family_name

        return self.indexed(family_name(name), l)

    def __repr__(self) -> str:
        d = object.__getattribute__(self, "_d")
        return f"Quantities({d.label})"


def _readonly(v):
    """Quantities are handed out as read-only :class:`_QArray` (SymPy matrices as object arrays), so that
    a claim cannot alter the instance and NumPy-style arithmetic works on symbolic instances too."""
    if isinstance(v, (np.ndarray, sympy.MatrixBase)):
        v = _as_q(v)
        v = v.view(_QArray)
        v.flags.writeable = False
    return v


def _plain(v):
    """A claim's value as the instance code expects it: NumPy float arrays, or SymPy matrices on symbolic
    instances (object arrays of SymPy expressions)."""
    if isinstance(v, np.ndarray):
        a = np.asarray(v).view(np.ndarray)
        if a.dtype == object:
            return sympy.Matrix(a.reshape(a.shape[0], -1) if a.ndim >= 1 else a.reshape(1, 1)) if a.ndim <= 2 else a
        return a
    return v


def _stack(fn, name: str, blocks, axis: int):
    blocks = [np.asarray(_plain(b)) if not isinstance(b, sympy.MatrixBase) else _as_q(b) for b in blocks]
    try:
        return fn([np.asarray(b) for b in blocks])
    except ValueError:
        shapes = ", ".join(_shape_txt(np.shape(b)) for b in blocks)
        what = "rows" if axis == 0 else "columns"
        raise IllTypedOperation(f"{name} of blocks of shapes {shapes}: the blocks need equal numbers of {what}") from None


def _neutral(v, jacobian: bool):
    """The neutral factor in place of a derivative: ones (elementwise f′) or the identity (a Jacobian)."""
    shape = _shape_of(v)
    if jacobian and len(shape) == 2 and shape[0] == shape[1]:
        out = np.eye(shape[0], dtype=int if _is_object(v) else float)
    else:
        out = np.ones(shape, dtype=int if _is_object(v) else float)
    return (out.astype(object) if _is_object(v) else out).view(_QArray)


def _is_object(v) -> bool:
    return isinstance(v, sympy.MatrixBase) or (isinstance(v, np.ndarray) and v.dtype == object)
