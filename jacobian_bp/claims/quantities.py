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

    def __init__(self, name: str, items: dict, log: _Log, what: str = ""):
        self._name = name
        self._items = items
        self._log = log
        self._what = what or name

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
        v = _readonly(self._items[k2])
        if callable(v) and not isinstance(v, (np.ndarray, sympy.MatrixBase)):
            v = _readonly(v())
            self._items[k2] = v
        for fam, anchor, offset in log.corr.transpose:
            av = _anchor_value(anchor, log)
            if fam == self._name and av is not None and k - av == offset:
                v = v.T
        return v

    def __contains__(self, k) -> bool:
        return k in self._items

    def __repr__(self) -> str:
        return f"<{self._name}[{self._range()}]>"


class _NumpyProxy:
    """NumPy with ``sum``/``mean``/``max``/``min``/``amax``/``prod`` instrumented for axis corrections."""

    _REDUCTIONS = ("sum", "mean", "max", "min", "amax", "amin", "prod")

    def __init__(self, log: _Log):
        self._log = log

    def __getattr__(self, name):
        fn = getattr(np, name)
        if name not in self._REDUCTIONS:
            return fn
        log = self._log

        def reduction(a, *args, axis=None, **kwargs):
            if args:
                axis, args = args[0], args[1:]
            c = log.next_call("np." + name)
            log.calls.append(("np." + name, c, axis))
            if ("np." + name, c) in log.corr.flip_axis and axis is not None:
                nd = np.ndim(a)
                ax = axis % nd if nd else axis
                if nd == 2:
                    axis = 1 - ax
            return fn(a, *args, axis=axis, **kwargs)

        return reduction


class Quantities:
    """Read-only named quantities of one instance (numeric or symbolic); see the module docstring.

    Build it with :func:`build_instances` (numeric) or :func:`symbolic_quantities`; a
    claim only reads it.
    """

    def __init__(self, data: "_InstanceData", log: _Log):
        object.__setattr__(self, "_d", data)
        object.__setattr__(self, "_log", log)
        fams = {}
        for name, (items, what) in data.families.items():
            fams[name] = Family(name, items, log, what)
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
            if d.symbolic:
                raise MissingQuantity("q.np: NumPy is not available on symbolic quantities; use the q helpers")
            return _NumpyProxy(object.__getattribute__(self, "_log"))
        raise MissingQuantity(f"q.{name}: this instance has no quantity {name!r} "
                              f"(available: {', '.join(sorted(set(d.scalars) | set(fams)))})")

    # ------------------------------------------------------------------ helpers
    @property
    def symbolic(self) -> bool:
        return object.__getattribute__(self, "_d").symbolic

    def I(self, n: int):  # noqa: E743 - the identity matrix
        return sympy.eye(int(n)) if self.symbolic else np.eye(int(n))

    def zeros(self, m: int, n: int):
        return sympy.zeros(int(m), int(n)) if self.symbolic else np.zeros((int(m), int(n)))

    def ones(self, m: int, n: int):
        return sympy.ones(int(m), int(n)) if self.symbolic else np.ones((int(m), int(n)))

    def diag(self, v):
        """Diagonal matrix from a column, a row or a 1-D vector."""
        if self.symbolic:
            v = sympy.Matrix(v)
            return sympy.diag(*list(v))
        return np.diag(np.ravel(v))

    def kron(self, A, B):
        """:math:`\\mathbf A\\otimes\\mathbf B` (call sites are instrumented: a swapped order is diagnosed)."""
        log = object.__getattribute__(self, "_log")
        c = log.next_call("kron")
        log.calls.append(("kron", c, None))
        if c in log.corr.swap_kron:
            A, B = B, A
        if self.symbolic:
            from sympy.physics.quantum import TensorProduct

            return sympy.Matrix(TensorProduct(sympy.Matrix(A), sympy.Matrix(B)))
        return np.kron(A, B)

    def _vec(self, helper: str, M, order: str):
        log = object.__getattribute__(self, "_log")
        c = log.next_call(helper)
        log.calls.append((helper, c, None))
        if (helper, c) in log.corr.flip_vec:
            order = "C" if order == "F" else "F"
        if self.symbolic:
            M = sympy.Matrix(M)
            src = M.T if order == "F" else M
            return sympy.Matrix(list(src))  # SymPy lists entries row by row
        return np.asarray(M).reshape(-1, 1, order=order)

    def vec(self, M):
        """Columns of ``M`` stacked (the vec of Damadi and MML), as a column."""
        return self._vec("vec", M, "F")

    def vec_r(self, M):
        """Rows of ``M`` stacked (row-major flatten), as a column."""
        return self._vec("vec_r", M, "C")

    def hadamard(self, A, B):
        if self.symbolic:
            A, B = sympy.Matrix(A), sympy.Matrix(B)
            if A.shape != B.shape:
                raise ValueError(f"hadamard: shapes {A.shape} and {B.shape} differ")
            return A.multiply_elementwise(B)
        A, B = np.asarray(A), np.asarray(B)
        if A.shape != B.shape:
            raise ValueError(f"hadamard: shapes {A.shape} and {B.shape} differ")
        return A * B

    def hstack(self, blocks: Sequence):
        if self.symbolic:
            return sympy.Matrix.hstack(*[sympy.Matrix(b) for b in blocks])
        return np.hstack(list(blocks))

    def vstack(self, blocks: Sequence):
        if self.symbolic:
            return sympy.Matrix.vstack(*[sympy.Matrix(b) for b in blocks])
        return np.vstack(list(blocks))

    def K(self, m: int, n: int):
        """Commutation matrix :math:`\\mathbf K_{m,n}` (``K vec(A) = vec(Aᵀ)`` for ``A`` m×n)."""
        Kmn = commutation_matrix(int(m), int(n)).toarray()
        return sympy.Matrix(Kmn.astype(int)) if self.symbolic else Kmn

    # activations -------------------------------------------------------------
    def _act_index(self, k: int, v, helper: str) -> int:
        d = object.__getattribute__(self, "_d")
        log = object.__getattribute__(self, "_log")
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"{helper}(k, v): k must be a layer index, received {k!r}")
        k = int(k)
        src = d.layer_of(v)
        log.act_calls.append((k, src))
        log.accesses.add(("sigma", k, log.l, log.L))
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
        return k2

    def sigma(self, k: int, v):
        """Activation :math:`\\sigma_k` applied to a column, or to a batch in the convention's layout."""
        k2 = self._act_index(k, v, "sigma")
        return object.__getattribute__(self, "_d").apply_act(k2, v)

    def dsigma(self, k: int, v):
        """Elementwise derivative :math:`\\sigma_k'` at ``v`` (same shape as ``v``)."""
        k2 = self._act_index(k, v, "dsigma")
        return object.__getattribute__(self, "_d").apply_dact(k2, v)

    def Jac(self, k: int, v):
        """Jacobian :math:`d(\\sigma_k)_v` of layer ``k``'s activation at the vector ``v`` (Ganev's Jacobian(σ, z))."""
        k2 = self._act_index(k, v, "Jac")
        return object.__getattribute__(self, "_d").act_jacobian(k2, v)

    def grad_C(self, yhat):
        """:math:`\\nabla_{\\hat{\\mathbf y}} C(\\hat{\\mathbf y}, \\mathbf y)` of the per-sample loss, at ``yhat`` (column)."""
        return object.__getattribute__(self, "_d").grad_C(yhat)

    def loss_value(self, yhat, y=None):
        """Per-sample loss :math:`C(\\hat{\\mathbf y}, \\mathbf y)` (``y`` defaults to the instance's target)."""
        return object.__getattribute__(self, "_d").loss_value(yhat, y)

    def indexed(self, name: str, k: int):
        """``name[k]`` for a family given by name -- a family the network lacks raises :class:`MissingQuantity`."""
        fams = object.__getattribute__(self, "_fams")
        if name not in fams:
            raise MissingQuantity(f"{name}_{k}: the network has no layer-indexed quantity {name!r} "
                                  f"(families: {', '.join(sorted(fams))})")
        return fams[name][k]

    def __repr__(self) -> str:
        d = object.__getattribute__(self, "_d")
        return f"Quantities({d.label})"


def _readonly(v):
    """Numeric quantities are handed out read-only, so that a claim cannot alter the instance."""
    if isinstance(v, np.ndarray):
        v = v.view()
        v.flags.writeable = False
    return v
