r"""Claims about gradients and Jacobians, checked against the engine, with a diagnosis.

A *claim* states a formula -- a gradient, a delta, a Jacobian, a forward quantity,
a dimension -- the way a textbook prints it, and the checker decides whether it is
true:

* **holds** -- equal to the truth on every instance (exactly in SymPy, or to float64
  tolerance on random instances of several architectures);
* **fails** -- well typed but wrong on some instance (or non-finite);
* **ill-typed** -- it cannot be evaluated as written: a shape mismatch, a quantity the
  network lacks (``W[0]``, ``z[3]`` of a two-layer network), an exception.

For every claim that does not hold, the checker *diagnoses* it by testing candidate
corrections and reporting those that make it hold on every instance:

==========================  ==========================================================
mistake                     candidate correction
==========================  ==========================================================
sign flip                   ``-C``
transpose                   ``C^T``, or one operand transposed (``a`` for ``a^T``)
missing / extra factor      ``c C`` for c in 2, 1/2, N, 1/N, ... (1/N vs N = reduction)
Kronecker / vec order       ``B ⊗ A`` for ``A ⊗ B``; ``vec`` rows vs columns; rows or
                            columns of ``C`` permuted by a commutation matrix
layer index shifted         one access ``W[l-1]`` -> ``W[l]`` (or ``a[l]`` -> ``a[l-1]``, ...)
output activation           ``σ_L`` applied at ``z[l]`` -> ``σ_l``
reduction mismatch          an extra batch axis summed / averaged
wrong axis                  a reduction (e.g. softmax's sum) over axis 1 -> axis 0
θ block order               the per-layer blocks of θ in the opposite order
==========================  ==========================================================

plus any claim-specific :class:`Correction` the author supplies (e.g. the corrected
formula of an erratum), which is verified the same way.

Writing a claim
---------------
A network claim is a Python function ``formula(q, l)`` of a read-only
:class:`Quantities` object ``q`` -- the named quantities of one network instance under
the claim's convention -- and of the layer index ``l`` (claims that hold "for every
layer" are checked for each ``l`` in ``layers``)::

    from jacobian_bp.claims import Claim, Setting, check
    park_18 = Claim("Park (18)", lambda q, l: q.delta[l] @ q.a[l - 1].T, target="grad_W",
                    setting=Setting("park"))
    check(park_18).verdict        # 'holds'

Vectors are *columns* (``n × 1`` arrays), so that a missing transpose is a shape error.
Batches follow the convention's layout (Park: ``n × N``; Ganev: ``N × n``).  The
quantities are

* single sample: ``x``, ``y``, ``yhat``, ``W[l]``, ``b[l]`` (user layout: Damadi's
  ``W[l]`` is ``n_{l-1} × n_l``), ``z[l]``, ``a[l]`` (``a[0] = x``), ``delta[l]``
  (:math:`\nabla_{\mathbf z^{[l]}}\ell`), ``grad_a[l]`` (:math:`\nabla_{\mathbf a^{[l]}}\ell`),
  ``fprime[l]`` (:math:`f'(\mathbf z^{[l]})`, elementwise layers), ``Jact[l]``
  (:math:`\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}`), ``n[l]`` (widths), ``L``, ``theta``;
* batch: ``N``, ``X``, ``Y``, ``Yhat``, ``Z[l]``, ``A[l]``, ``Delta[l]`` (per-sample deltas,
  unreduced), ``dZ[l]`` / ``dA[l]`` (gradients of the *reduced* cost), ``G`` (per-sample
  :math:`\nabla_{\hat{\mathbf y}} C`), ``ones_N``;
* helpers (NumPy or SymPy alike): ``I(n)``, ``zeros``, ``ones``, ``diag``, ``kron``,
  ``vec`` (columns stacked), ``vec_r`` (rows stacked), ``hadamard``, ``hstack``,
  ``vstack``, ``sigma(k, v)``, ``dsigma(k, v)``, ``Jac(k, v)`` (activation of layer ``k``
  at ``v``), ``grad_C(yhat)``, ``K(m, n)`` (commutation matrix), and ``np`` -- NumPy with
  its reductions instrumented, so that a wrong ``axis`` can be diagnosed.

The truth (``target``) comes from the engine: :meth:`Network.gradient`,
:meth:`Network.chain_factors`, :meth:`Network.jacobian_theta`,
:meth:`Network.layer_jacobian`, :meth:`Network.local_jacobian`,
:meth:`Network.activation_jacobian_batch`, :meth:`Network.delta`, the forward cache.
With ``Setting(symbolic=...)`` the claim is also evaluated on SymPy quantities
(symbols ``w^{[l]}_{ij}``, ``x_i``, undefined activations ``f_l``) and compared
*exactly* with a symbolic truth obtained by differentiating the symbolic loss -- an
oracle independent of the engine.

Function claims (:class:`ExpressionClaim`) compare two SymPy expressions (a stated
derivative and the true one) exactly, with a numeric counterexample when they differ;
:class:`ListingClaim` checks that a printed code listing is well-formed Python
(parsed with :mod:`ast`, never executed).
"""
from __future__ import annotations

import ast
import builtins
import itertools
from dataclasses import dataclass, field
from functools import lru_cache
from enum import Enum
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np
import sympy

from ..engine.conventions import Convention, commutation_matrix, get_convention
from ..errors import JacobianBPError, SpecError
from ..backend.exact import exact_number
from ..backend.operators import sympy_scalar

__all__ = [
    "HOLDS", "FAILS", "ILL_TYPED", "VERDICTS", "MissingQuantity", "Mistake", "Explanation", "Correction",
    "Setting", "Claim", "ExpressionClaim", "ListingClaim", "CheckResult", "Counterexample", "Quantities",
    "TARGETS", "check", "build_instances", "symbolic_quantities", "DEFAULT_WIDTHS",
]

HOLDS, FAILS, ILL_TYPED = "holds", "fails", "ill-typed"
VERDICTS = (HOLDS, FAILS, ILL_TYPED)
_RANK = {HOLDS: 0, FAILS: 1, ILL_TYPED: 2}

#: default architectures (widths n_0, ..., n_L): unequal widths so that index slips are shape
#: errors, plus equal widths so that they are value errors.
DEFAULT_WIDTHS: tuple[tuple[int, ...], ...] = ((4, 3), (4, 5, 3), (3, 6, 4, 2), (3, 3, 3, 3))
RTOL, ATOL = 1e-8, 1e-10


class MissingQuantity(JacobianBPError, LookupError):
    """A claim refers to a quantity the network does not have (``W[0]``, ``z[3]`` when L = 2)."""


class Mistake(str, Enum):
    """The kinds of mistakes the checker diagnoses."""

    SIGN = "sign flip"
    TRANSPOSE = "transpose"
    FACTOR = "missing or extra factor"
    REDUCTION = "reduction mismatch"
    KRONECKER = "Kronecker factor order / vec order"
    INDEX_SHIFT = "layer index shifted"
    OUTPUT_ACTIVATION = "output activation used for a hidden layer"
    WRONG_AXIS = "wrong axis"
    BLOCK_ORDER = "θ block order"
    CUSTOM = "stated correction"


@dataclass(frozen=True)
class Explanation:
    """A correction that makes the claim hold on every instance."""

    kind: Mistake
    description: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.description}"


@dataclass(frozen=True)
class Correction:
    """A claim-specific candidate correction: another formula, or another target.

    Parameters
    ----------
    description : str
        What the correction changes, e.g. ``"W[l] for W[l-1]"``.
    formula : callable, optional
        Replacement formula with the claim's signature.
    target : str, optional
        The quantity the (unchanged) formula actually equals.
    setting : Setting, optional
        Other networks on which the (unchanged) formula holds (e.g. other layer widths).
    """

    description: str
    formula: Callable | None = None
    target: str | None = None
    setting: "Setting | None" = None


# =========================================================================== quantities
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


# =========================================================================== settings & claims
@dataclass(frozen=True)
class Setting:
    """The family of networks a claim is checked on.

    Parameters
    ----------
    convention : str or Convention
        The claim's document convention (``damadi``, ``ganev``, ``park``, ``mml``).
    hidden, output : str
        Activation kinds (``tanh``, ``sigmoid``, ``relu``, ``identity``, ``softmax``, ...) of the
        hidden layers and of the last layer.
    loss : str
        ``mse``, ``bce`` or ``cross_entropy``.
    widths : tuple of tuples
        Architectures ``(n_0, ..., n_L)``; several depths, unequal and equal widths.
    batch : int or tuple of int
        Batch size ``N`` (1: single sample); a tuple gives one ``N`` per seed.
    seeds : tuple of int
        Seeds of parameters and data (one instance per architecture and seed).
    mse_scale, reduction : optional
        Override the convention's MSE scale (e.g. 1 for MML's eq. 5.114) and reduction.
    symbolic : tuple of int, optional
        Widths of a small architecture on which the claim is also checked exactly in SymPy.
    symbolic_hidden, symbolic_output : str
        Activations of that symbolic network: ``"generic"`` (an undefined function ``f_l``, the
        default: the claim must then hold for *every* activation), ``identity``, ``sigmoid``,
        ``tanh`` or ``softmax`` (needed for the closed-form deltas of matched pairs).
    min_depth : int
        Skip architectures with fewer layers.
    """

    convention: Any = "ganev"
    hidden: str = "tanh"
    output: str = "identity"
    loss: str = "mse"
    widths: tuple = DEFAULT_WIDTHS
    batch: Any = 1
    seeds: tuple = (0, 1)
    mse_scale: float | None = None
    reduction: str | None = None
    symbolic: tuple | None = None
    symbolic_hidden: str = "generic"
    symbolic_output: str = "generic"
    min_depth: int = 1

    def __post_init__(self):
        get_convention(self.convention)  # raises SpecError for an unknown preset
        if self.loss not in ("mse", "bce", "cross_entropy"):
            raise SpecError(f"setting: loss must be 'mse', 'bce' or 'cross_entropy', received {self.loss!r}")
        if not self.widths and not self.symbolic:
            raise SpecError("setting: give numeric architectures (widths) or a symbolic one (symbolic=...)")
        for w in self.widths:
            if len(w) < 2 or any((not isinstance(n, (int, np.integer))) or n < 1 for n in w):
                raise SpecError(f"setting: each architecture is (n_0, ..., n_L) with L >= 1 positive widths, received {w!r}")
        if isinstance(self.batch, (tuple, list)) and len(self.batch) != len(self.seeds):
            raise SpecError(f"setting: one batch size per seed expected ({len(self.seeds)} seeds), received {self.batch!r}")
        if not self.seeds:
            raise SpecError("setting: at least one seed is needed")

    def conv(self) -> Convention:
        c = get_convention(self.convention)
        ch = {}
        if self.mse_scale is not None:
            ch["mse_scale"] = float(self.mse_scale)
        if self.reduction is not None:
            ch["reduction"] = self.reduction
        return c.replace(**ch) if ch else c

    def describe(self) -> str:
        b = self.batch if isinstance(self.batch, int) else "/".join(map(str, self.batch))
        return (f"{self.conv().name} convention; hidden {self.hidden}, output {self.output}, loss {self.loss}; "
                f"widths {', '.join('-'.join(map(str, w)) for w in self.widths if len(w) - 1 >= self.min_depth)}; N = {b}")


LAYER_SETS = {
    "all": lambda L: range(1, L + 1),
    "hidden": lambda L: range(1, L),
    "last": lambda L: [L],
    "from2": lambda L: range(2, L + 1),
    "all0": lambda L: range(0, L + 1),
    "inputs": lambda L: range(0, L),
    "none": lambda L: [None],
}


@dataclass
class Claim:
    """A formula for a network quantity, to be checked against the engine.

    Parameters
    ----------
    name : str
    formula : callable ``(q, l) -> array`` (or ``(q) -> array`` when ``layers="none"``)
        Evaluated on :class:`Quantities`; returns a NumPy array, a SymPy matrix or a number.
        For ``kind="shape"`` it returns a shape tuple.
    target : str
        Key of :data:`TARGETS` (``grad_W``, ``grad_b``, ``delta``, ``J_theta_l``, ``z``, ...).
    setting : Setting
    layers : str or callable
        ``"all"`` (1..L), ``"hidden"`` (1..L-1), ``"last"``, ``"from2"``, ``"all0"``, ``"inputs"``
        (0..L-1), ``"none"``, or a function ``L -> iterable``.
    kind : {"value", "shape"}
        ``"shape"``: a dimension statement, compared with the target's shape.
    corrections : tuple of Correction
        Claim-specific candidate corrections (verified, reported with the diagnosis).
    form : {"as_is", "T"}
        ``"T"`` compares with the transposed truth (e.g. a differential, i.e. a row gradient).
    target_offset : int
        The truth is taken at layer ``l + target_offset`` (``-1`` for a recursion that gives
        ``∇_{a[l-1]}`` from layer ``l``).
    """

    name: str
    formula: Callable
    target: str
    setting: Setting = field(default_factory=Setting)
    layers: Any = "all"
    kind: str = "value"
    corrections: tuple = ()
    form: str = "as_is"
    target_offset: int = 0
    description: str = ""

    def __post_init__(self):
        if not callable(self.formula):
            raise SpecError(f"claim {self.name!r}: formula must be callable, received {type(self.formula).__name__}")
        if self.target not in TARGETS:
            raise SpecError(f"claim {self.name!r}: unknown target {self.target!r}; known: {', '.join(sorted(TARGETS))}")
        if self.kind not in ("value", "shape"):
            raise SpecError(f"claim {self.name!r}: kind must be 'value' or 'shape', received {self.kind!r}")
        if self.form not in ("as_is", "T"):
            raise SpecError(f"claim {self.name!r}: form must be 'as_is' or 'T', received {self.form!r}")
        if not (callable(self.layers) or self.layers in LAYER_SETS):
            raise SpecError(f"claim {self.name!r}: layers must be one of {sorted(LAYER_SETS)} or callable")

    @classmethod
    def from_sympy(cls, name: str, expr, target: str, setting: "Setting", layers: Any = "none", **kw) -> "Claim":
        """A claim stated as a fixed SymPy expression in the symbols of :func:`symbolic_quantities`
        (``x_i``, ``y_i``, ``w^{[l]}_{ij}``, ``b^{[l]}_i``, undefined ``f_l``); checked exactly, on the
        setting's symbolic architecture only."""
        if not setting.symbolic:
            raise SpecError(f"claim {name!r}: a SymPy claim needs Setting(symbolic=(n_0, ..., n_L))")
        if not isinstance(expr, (sympy.Basic, sympy.MatrixBase)):
            raise SpecError(f"claim {name!r}: expected a SymPy expression or matrix, received {type(expr).__name__}")
        from dataclasses import replace as _replace

        f = (lambda q: expr) if layers == "none" else (lambda q, l: expr)
        return cls(name, f, target, _replace(setting, widths=()), layers=layers, **kw)

    def layer_range(self, L: int) -> list:
        f = self.layers if callable(self.layers) else LAYER_SETS[self.layers]
        return list(f(L))


@dataclass
class ExpressionClaim:
    """A stated SymPy expression compared exactly with the true one (e.g. a derivative).

    Parameters
    ----------
    name : str
    formula, truth : sympy.Expr or sympy.Matrix
        The stated expression and the independent truth (e.g. ``sympy.diff`` of the function).
    symbols : sequence of sympy.Symbol
        Free symbols, sampled for the numeric counterexample.
    sample : callable ``(rng) -> dict``, optional
        Values for the symbols (default: uniform in [-2, 2], positive where assumed).
    corrections : tuple of Correction
        Alternative formulas (``formula`` is a SymPy expression or a callable returning one).
    cases : tuple
        When given, ``formula``, ``truth`` (and corrections' formulas) are callables of a case
        (e.g. input and kernel sizes) and the claim must hold in every case.
    """

    name: str
    formula: Any
    truth: Any
    symbols: Sequence = ()
    sample: Callable | None = None
    corrections: tuple = ()
    cases: tuple = ()
    description: str = ""


@dataclass
class ListingClaim:
    """A printed code listing: it must parse as Python and use only defined or declared names.

    ``inputs`` are the names the listing declares as given (its comments, earlier listings).
    The listing is parsed with :mod:`ast` and never executed.
    """

    name: str
    source: str
    inputs: frozenset = frozenset()
    description: str = ""


# =========================================================================== results
@dataclass
class Counterexample:
    """The smallest failing instance: architecture, seed, layer, values or the reason."""

    widths: tuple
    seed: int
    N: int
    layer: Any
    reason: str
    claimed: Any = None
    truth: Any = None

    def to_text(self) -> str:
        arch = "-".join(map(str, self.widths)) if self.widths else "—"
        lay = "" if self.layer is None else f", l = {self.layer}"
        s = f"widths {arch}, seed {self.seed}, N = {self.N}{lay}: {self.reason}"
        if self.claimed is not None and self.truth is not None:
            s += f"; claimed {_fmt_small(self.claimed)} vs true {_fmt_small(self.truth)}"
        return s


def _fmt_small(v) -> str:
    if isinstance(v, tuple):
        return "×".join(map(str, v)) if v else "()"
    if isinstance(v, (sympy.Basic, sympy.MatrixBase)):
        return str(v)
    a = np.asarray(v, dtype=float)
    if a.size > 12:
        return f"array{a.shape} (first {np.round(a.ravel()[:4], 4).tolist()} …)"
    return str(np.round(a, 4).tolist())


@dataclass
class CheckResult:
    """Outcome of checking one claim."""

    name: str
    verdict: str
    reason: str
    method: str
    max_error: float | None = None
    counterexample: Counterexample | None = None
    diagnosis: list = field(default_factory=list)
    corrections: list = field(default_factory=list)  # (Correction, verdict)
    n_instances: int = 0
    details: list = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return self.verdict == HOLDS

    def summary(self) -> str:
        s = f"{self.name}: {self.verdict}"
        if self.max_error is not None and np.isfinite(self.max_error):
            s += f" (max error {self.max_error:.2e})"
        if self.verdict != HOLDS:
            s += f" — {self.reason}"
            if self.diagnosis:
                s += "; diagnosis: " + "; ".join(str(e) for e in self.diagnosis)
        return s

    def __repr__(self) -> str:
        return f"CheckResult({self.summary()})"


# =========================================================================== instances (numeric)
class _InstanceData:
    """Quantities and truths of one instance (one network, parameters and data)."""

    symbolic = False

    def __init__(self, label: str):
        self.label = label
        self.families: dict[str, tuple[dict, str]] = {}
        self.scalars: dict[str, Any] = {}
        self.activations: dict[int, Any] = {}
        self.L = 0
        self.widths: tuple = ()
        self.seed = 0
        self.N = 1
        self.truth_cache: dict = {}

    # overridden
    def layer_of(self, v):  # pragma: no cover
        return None

    def apply_act(self, k, v):  # pragma: no cover
        raise NotImplementedError

    def apply_dact(self, k, v):  # pragma: no cover
        raise NotImplementedError

    def act_jacobian(self, k, v):  # pragma: no cover
        raise NotImplementedError

    def grad_C(self, yhat):  # pragma: no cover
        raise NotImplementedError


def _col(v) -> np.ndarray:
    return np.asarray(v, dtype=float).reshape(-1, 1)


def _readonly(v):
    """Numeric quantities are handed out read-only, so that a claim cannot alter the instance."""
    if isinstance(v, np.ndarray):
        v = v.view()
        v.flags.writeable = False
    return v


def _make_network(setting: Setting, widths: tuple):
    from ..layers import Dense, layer_class
    from ..engine.network import Network

    conv = setting.conv()
    layers = []
    L = len(widths) - 1
    for l in range(1, L + 1):
        layers.append(Dense(int(widths[l])))
        kind = setting.output if l == L else setting.hidden
        layers.append(layer_class(kind)())
    loss: Any = setting.loss
    if setting.loss == "mse":
        from ..layers.losses import MSE

        loss = MSE(scale=conv.mse_scale, reduce_outputs=conv.mse_reduce_outputs)
    return Network(layers, loss, int(widths[0]), convention=conv, name="claim-" + "-".join(map(str, widths)))


class _NumericData(_InstanceData):
    def __init__(self, setting: Setting, widths: tuple, seed: int, N: int):
        super().__init__(f"{'-'.join(map(str, widths))}, seed {seed}, N = {N}")
        from ..spec import generate_data

        net = _make_network(setting, widths)
        self.net = net
        self.conv = net.convention
        self.widths = tuple(widths)
        self.L = net.L
        self.seed = seed
        self.N = N
        self.params = net.init_params(seed)
        rng = np.random.default_rng(1000 + seed)
        # biases drawn larger than the default init so that b-index slips are visible
        for k in self.params:
            if k.startswith("b"):
                self.params[k] = self.params[k] + 0.5 * rng.standard_normal(self.params[k].shape)
        X, Y = generate_data(net, N, 7919 * (seed + 1))
        if setting.loss == "bce":
            Y = np.clip(Y, 0, 1)
        self.X, self.Y = X, Y  # convention layout (single sample when N == 1)
        Xb, Yb, _ = net.as_batch(X, Y)
        self.Xb, self.Yb = Xb, Yb
        self.cache = net.forward(X, self.params)  # batch-first cache
        self.activations = {st.index: (st.post[0] if st.post else None) for st in net.stages}
        self._build()

    # ----------------------------------------------------------------- layouts
    def to_layout(self, M_batch_first: np.ndarray) -> np.ndarray:
        """(N, n) batch-first to the convention's layout."""
        return M_batch_first if self.conv.batch_axis == "first" else M_batch_first.T

    def _build(self):
        net, L = self.net, self.L
        c = self.cache
        fam = self.families
        fam["W"] = ({l: self.params[f"W{l}"] for l in range(1, L + 1)}, "weight matrix W")
        fam["b"] = ({l: _col(self.params[f"b{l}"]) for l in range(1, L + 1)}, "bias b")
        fam["z"] = ({l: _col(c.z[l][0]) for l in range(1, L + 1)}, "pre-activation z")
        fam["a"] = ({l: _col(c.a[l][0]) for l in range(0, L + 1)}, "activation a")
        fam["n"] = ({l: int(self.widths[l]) for l in range(0, L + 1)}, "width n")
        fam["Ai"] = ({l - 1: self.params[f"W{l}"] for l in range(1, L + 1)}, "MML weight A_i (layer i+1)")
        fam["bi"] = ({l - 1: _col(self.params[f"b{l}"]) for l in range(1, L + 1)}, "MML bias b_i (layer i+1)")
        fam["delta"] = ({l: (lambda l=l: _col(self.delta_samples(l)[0])) for l in range(1, L + 1)}, "delta ∇_z ℓ")
        fam["grad_a"] = ({l: (lambda l=l: _col(self.grad_a_samples(l)[0])) for l in range(0, L + 1)}, "gradient ∇_a ℓ")
        fam["fprime"] = ({l: (lambda l=l: self.apply_dact(l, fam["z"][0][l])) for l in range(1, L + 1)}, "derivative f'(z)")
        fam["Jact"] = ({l: (lambda l=l: self.act_jacobian(l, fam["z"][0][l])) for l in range(1, L + 1)}, "activation Jacobian")
        lay = self.to_layout
        fam["Z"] = ({l: lay(c.z[l]) for l in range(1, L + 1)}, "batch pre-activation Z")
        fam["A"] = ({l: lay(c.a[l]) for l in range(0, L + 1)}, "batch activation A")
        red = 1.0 / self.N if self.conv.reduction == "mean" else 1.0
        fam["Delta"] = ({l: (lambda l=l: lay(self.delta_samples(l))) for l in range(1, L + 1)}, "per-sample deltas Δ")
        fam["dZ"] = ({l: (lambda l=l: lay(self.delta_samples(l)) * red) for l in range(1, L + 1)}, "gradient ∇_Z J")
        fam["dA"] = ({l: (lambda l=l: lay(self.grad_a_samples(l)) * red) for l in range(0, L + 1)}, "gradient ∇_A J")
        s = self.scalars
        s.update(L=L, N=self.N, x=fam["a"][0][0], y=_col(self.Yb[0]), yhat=fam["a"][0][L],
                 X=lay(self.Xb), Y=lay(self.Yb), Yhat=lay(c.a[L]), ones_N=np.ones((self.N, 1)),
                 G=lambda: lay(self.net.loss.grad_yhat(self.Yb, c.a[L])),
                 theta=lambda: net.pack(self.params)[:, None], conv=self.conv)

    # ----------------------------------------------------------------- truths
    def delta_samples(self, l: int) -> np.ndarray:
        """(N, n_l): per-sample ∇_{z[l]} ℓ_i (unreduced) = (J_{z[l]} z[L])ᵀ δ_L."""
        key = ("delta", l)
        if key not in self.truth_cache:
            net, rows = self.net, []
            for i in range(self.N):
                xi, yi = self.Xb[i], self.Yb[i]
                dL = net.delta(xi, yi, self.params)
                P = np.eye(net.n_out)
                for f in net.chain_factors(xi, self.params, l):
                    P = P @ f.to_dense()
                rows.append(P.T @ dL)
            self.truth_cache[key] = np.array(rows)
        return self.truth_cache[key]

    def grad_a_samples(self, l: int) -> np.ndarray:
        """(N, n_l): per-sample ∇_{a[l]} ℓ_i (l = 0..L; a[L] = ŷ)."""
        key = ("grad_a", l)
        if key not in self.truth_cache:
            net, rows = self.net, []
            for i in range(self.N):
                xi, yi = self.Xb[i], self.Yb[i]
                if l == self.L:
                    rows.append(net.loss.grad_yhat(yi[None], self.cache.a[l][i][None])[0])
                    continue
                dL = net.delta(xi, yi, self.params)
                if l == 0:
                    P = net.jacobian_input(xi, self.params).to_dense()
                else:
                    fs = net.chain_factors(xi, self.params, l)[:-1]
                    P = np.eye(net.n_out)
                    for f in fs:
                        P = P @ f.to_dense()
                rows.append(P.T @ dL)
            self.truth_cache[key] = np.array(rows)
        return self.truth_cache[key]

    # ----------------------------------------------------------------- activations
    def _layer(self, k: int):
        act = self.activations[k]
        if act is None:
            from ..layers import IdentityActivation

            act = IdentityActivation()
            act.build((int(self.widths[k]),))
        return act

    def _apply_rows(self, k: int, v, fn):
        v = np.asarray(v, dtype=float)
        n = int(self.widths[k])
        if v.ndim == 1:
            return fn(v[None])[0]
        if v.ndim != 2:
            raise ValueError(f"σ_{k}: expected a vector or a batch matrix, received shape {v.shape}")
        if v.shape == (n, 1):
            return fn(v.T).T
        if self.conv.batch_axis == "first" or v.shape == (1, n):
            if v.shape[1] != n:
                raise ValueError(f"σ_{k} maps R^{n} to R^{n}: received a batch of shape {v.shape} (rows must have {n} entries)")
            return fn(v)
        if v.shape[0] != n:
            raise ValueError(f"σ_{k} maps R^{n} to R^{n}: received a batch of shape {v.shape} (columns must have {n} entries)")
        return fn(v.T).T

    def apply_act(self, k, v):
        layer = self._layer(k)
        return self._apply_rows(k, v, lambda M: layer.forward(M, {}))

    def apply_dact(self, k, v):
        layer = self._layer(k)
        if not getattr(layer, "elementwise", False):
            raise TypeError(f"σ_{k} ({layer.kind}) is not elementwise: it has no elementwise derivative; use Jac(k, v)")
        return self._apply_rows(k, v, lambda M: layer.derivative(M))

    def act_jacobian(self, k, v):
        layer = self._layer(k)
        v = np.asarray(v, dtype=float).ravel()
        n = int(self.widths[k])
        if v.size != n and not getattr(layer, "elementwise", False) and layer.kind != "softmax":
            raise ValueError(f"Jacobian of σ_{k}: expected a vector in R^{n}, received {v.size} entries")
        o = layer.forward(v[None], {})[0]
        return layer.jac_input(v, o, {}).to_dense()

    def grad_C(self, yhat):
        yhat = _col(yhat)
        y = self.scalars["y"]
        if yhat.shape != y.shape:
            raise ValueError(f"∇_ŷ C: ŷ must have shape {y.shape}, received {yhat.shape}")
        return _col(self.net.loss.grad_yhat(y.T, yhat.T)[0])

    def loss_value(self, yhat, y=None):
        yhat = _col(yhat)
        y = self.scalars["y"] if y is None else _col(y)
        if yhat.shape != y.shape:
            raise ValueError(f"C(ŷ, y): ŷ has shape {yhat.shape}, y has shape {y.shape}")
        return float(self.net.loss.value(y.T, yhat.T)[0])

    def layer_of(self, v):
        """Index ``j`` when ``v`` is (a row or column of) ``z[j]`` / ``Z[j]``, else None."""
        v = np.asarray(v, dtype=float)
        flat = v.ravel()
        close = lambda a, b: a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=1e-14)  # noqa: E731
        for j in range(1, self.L + 1):
            Zj = self.cache.z[j]
            if Zj.shape[1] == flat.size and any(close(flat, Zj[i]) for i in range(Zj.shape[0])):
                return j
            if Zj.size == flat.size and close(np.sort(flat), np.sort(Zj.ravel())):
                return j
        return None


def build_instances(setting: Setting) -> list[_NumericData]:
    """The numeric instances of a setting: one per architecture and seed.

    Instances are read-only and cached per setting (with their truths), so that claims
    sharing a setting share the engine's work.
    """
    if not isinstance(setting, Setting):
        raise TypeError(f"build_instances: expected a Setting, received {type(setting).__name__}")
    return list(_cached_instances(setting))


@lru_cache(maxsize=64)
def _cached_instances(setting: Setting) -> tuple:
    out = []
    batches = setting.batch if isinstance(setting.batch, (tuple, list)) else (setting.batch,) * len(setting.seeds)
    for widths in setting.widths:
        if len(widths) - 1 < setting.min_depth:
            continue
        for seed, N in zip(setting.seeds, batches):
            out.append(_NumericData(setting, tuple(widths), int(seed), int(N)))
    return tuple(out)


@lru_cache(maxsize=32)
def _cached_symbolic(setting: Setting, widths: tuple) -> "_SymbolicData":
    return _SymbolicData(setting, widths)


# =========================================================================== targets (engine truth)
def _t_grad(d: _NumericData, l, which: str):
    g = d.net.gradient(d.X, d.Y, d.params)
    v = g.params[f"{which}{l}"]
    return _col(v) if which == "b" else np.asarray(v)


def _t_grad_theta(d: _NumericData, l):
    return d.net.gradient(d.X, d.Y, d.params).vector[:, None]


def _theta_l_entries(d: _NumericData, l):
    return [e for e in d.net.entries if e.stage == l]


def _t_grad_theta_l(d: _NumericData, l):
    g = d.net.gradient(d.X, d.Y, d.params).vector
    return np.concatenate([g[e.slice] for e in _theta_l_entries(d, l)])[:, None]


def _single_x(d: _NumericData):
    return d.Xb[0]


def _t_J_theta(d, l):
    return d.net.jacobian_theta(_single_x(d), d.params).to_dense()


def _t_J_theta_l(d, l):
    return d.net.layer_jacobian(_single_x(d), d.params, l).to_dense()


def _t_J_local(d, l):
    return d.net.local_jacobian(_single_x(d), d.params, l).to_dense()


def _t_J_act(d, l):
    return d.net.activation_jacobian_batch(_single_x(d), d.params, l).to_dense().T


def _t_J_x(d, l):
    return d.net.jacobian_input(_single_x(d), d.params).to_dense()


def _t_J_zL_zl(d, l):
    P = np.eye(d.net.n_out)
    for f in d.net.chain_factors(_single_x(d), d.params, l):
        P = P @ f.to_dense()
    return P


def _t_loss(d, l):
    return np.array([[d.net.loss_value(d.X, d.Y, d.params)]])


def _t_param(d, l, which: str):
    v = d.params[f"{which}{l}"]
    return _col(v) if which == "b" else np.asarray(v)


def _t_J_local_part(d, l, which: str):
    J = _t_J_local(d, l)
    nW = d.widths[l - 1] * d.widths[l]
    return J[:, :nW] if which == "W" else J[:, nW:]


def _t_J_z_a_prev(d, l):
    """J_{a[l-1]} z[l] from the layer's own Jacobian (canonical parameters)."""
    st = d.net.stages[l - 1]
    canon = d.net.canonical_params(d.params)
    p = {k: canon[f"{k}{l}"] for k in st.layer.param_shapes()}
    return st.layer.jac_input(d.cache.a[l - 1][0], d.cache.z[l][0], p).to_dense()


def _t_fprime_batch(d, l):
    """f'(Z[l]) in the convention's layout: diagonals of the per-sample activation Jacobians."""
    J = d.net.activation_jacobian_batch(d.X, d.params, l).to_dense()
    n = d.widths[l]
    rows = [np.diag(J[i * n:(i + 1) * n, i * n:(i + 1) * n]) for i in range(d.N)]
    return d.to_layout(np.array(rows))


def _t_mml_grad_row(d, l):
    """∂L/∂θ_l as a row in the convention's vec order, layer l's (W, b) (MML 5.115-5.118)."""
    return _t_grad_theta_l(d, l).T


TARGETS: dict[str, tuple[Callable, str]] = {
    "grad_W": (lambda d, l: _t_grad(d, l, "W"), "∇_{W[l]} ℓ (user layout)"),
    "grad_b": (lambda d, l: _t_grad(d, l, "b"), "∇_{b[l]} ℓ (column)"),
    "grad_theta": (_t_grad_theta, "∇_θ ℓ (column, θ order of the convention)"),
    "grad_theta_l": (_t_grad_theta_l, "∇_{W[l],b[l]} ℓ (column [vec W[l]; b[l]])"),
    "grad_row_l": (_t_mml_grad_row, "∂ℓ/∂θ_l (row [vec W[l]; b[l]]ᵀ)"),
    "delta": (lambda d, l: _col(d.delta_samples(l)[0]), "∇_{z[l]} ℓ (column)"),
    "grad_a": (lambda d, l: _col(d.grad_a_samples(l)[0]), "∇_{a[l]} ℓ (column)"),
    "z": (lambda d, l: _col(d.cache.z[l][0]), "z[l] (column)"),
    "a": (lambda d, l: _col(d.cache.a[l][0]), "a[l] (column)"),
    "yhat": (lambda d, l: _col(d.cache.a[d.L][0]), "ŷ (column)"),
    "J_theta": (_t_J_theta, "J_θ z[L]"),
    "J_theta_l": (_t_J_theta_l, "J_{W[l],b[l]} z[L]"),
    "J_local": (_t_J_local, "J_{W[l],b[l]} z[l]"),
    "J_act": (_t_J_act, "J_{z[l]} a[l]"),
    "J_x": (_t_J_x, "J_x z[L]"),
    "J_zL_zl": (_t_J_zL_zl, "J_{z[l]} z[L]"),
    "loss": (_t_loss, "the (reduced) loss"),
    "W": (lambda d, l: _t_param(d, l, "W"), "the weight W[l] itself (user layout)"),
    "b": (lambda d, l: _t_param(d, l, "b"), "the bias b[l] itself (column)"),
    "J_local_W": (lambda d, l: _t_J_local_part(d, l, "W"), "J_{vec W[l]} z[l]"),
    "J_local_b": (lambda d, l: _t_J_local_part(d, l, "b"), "J_{b[l]} z[l]"),
    "J_z_a_prev": (_t_J_z_a_prev, "J_{a[l-1]} z[l]"),
    "fprime_batch": (_t_fprime_batch, "f'(Z[l]) elementwise (convention layout)"),
    "grad_vecW": (lambda d, l: _t_grad_theta_l(d, l)[: d.widths[l - 1] * d.widths[l]], "∇_{vec W[l]} ℓ (column)"),
    "Z": (lambda d, l: d.to_layout(d.cache.z[l]), "Z[l] (batch, convention layout)"),
    "A": (lambda d, l: d.to_layout(d.cache.a[l]), "A[l] (batch, convention layout)"),
    "dZ": (lambda d, l: d.to_layout(d.delta_samples(l)) * (1.0 / d.N if d.conv.reduction == "mean" else 1.0),
           "∇_{Z[l]} J (reduced cost, convention layout)"),
    "Delta": (lambda d, l: d.to_layout(d.delta_samples(l)), "per-sample deltas (unreduced, convention layout)"),
    "dA": (lambda d, l: d.to_layout(d.grad_a_samples(l)) * (1.0 / d.N if d.conv.reduction == "mean" else 1.0),
           "∇_{A[l]} J (reduced cost, convention layout)"),
}


def _truth(d: _InstanceData, target: str, l, form: str = "as_is"):
    key = (target, l, form)
    if key not in d.truth_cache:
        if d.symbolic:
            v = d.symbolic_truth(target, l)
        else:
            v = TARGETS[target][0](d, l)
        if form == "T":
            v = v.T
        d.truth_cache[key] = v
    return d.truth_cache[key]


# =========================================================================== symbolic instances
_SYM_ACTS = ("generic", "identity", "sigmoid", "tanh", "softmax")


class _SymbolicData(_InstanceData):
    """A small network with SymPy symbols for every entry; truths by differentiating the loss.

    Parameters ``w^{[l]}_{ij}`` (user layout), ``b^{[l]}_i``, inputs ``x_i``, targets
    ``y_i``; activations per layer ``generic`` (an undefined function ``f_l``),
    ``identity``, ``sigmoid``, ``tanh`` or ``softmax``; loss MSE (convention scale),
    BCE or CE.  This forward pass is written here, independently of the engine.
    """

    symbolic = True

    def __init__(self, setting: Setting, widths: tuple):
        super().__init__(f"symbolic {'-'.join(map(str, widths))}")
        conv = setting.conv()
        self.conv = conv
        self.widths = tuple(int(w) for w in widths)
        L = len(widths) - 1
        self.L = L
        self.N = 1
        self.seed = 0
        hidden = setting.symbolic_hidden
        output = setting.symbolic_output
        for kind in (hidden, output):
            if kind not in _SYM_ACTS:
                raise SpecError(f"symbolic check: activation {kind!r} not supported; use one of {_SYM_ACTS}")
        self.kinds = {l: (output if l == L else hidden) for l in range(1, L + 1)}
        self.funcs = {l: sympy.Function(f"f_{l}", real=True) for l in range(1, L + 1)}
        self.loss_kind = setting.loss
        n = self.widths
        self.x = sympy.Matrix(n[0], 1, lambda i, j: sympy.Symbol(f"x_{i + 1}", real=True))
        self.y = sympy.Matrix(n[L], 1, lambda i, j: sympy.Symbol(f"y_{i + 1}", real=True))
        self.W, self.Wc, self.b = {}, {}, {}
        for l in range(1, L + 1):
            if conv.weight_layout == "in_out":
                Wu = sympy.Matrix(n[l - 1], n[l], lambda i, j: sympy.Symbol(f"w^{{[{l}]}}_{{{i + 1}{j + 1}}}", real=True))
                Wc = Wu.T
            else:
                Wu = sympy.Matrix(n[l], n[l - 1], lambda i, j: sympy.Symbol(f"w^{{[{l}]}}_{{{i + 1}{j + 1}}}", real=True))
                Wc = Wu
            self.W[l], self.Wc[l] = Wu, Wc
            self.b[l] = sympy.Matrix(n[l], 1, lambda i, j: sympy.Symbol(f"b^{{[{l}]}}_{{{i + 1}}}", real=True))
        self.z, self.a = {}, {0: self.x}
        for l in range(1, L + 1):
            self.z[l] = self.Wc[l] * self.a[l - 1] + self.b[l]
            self.a[l] = self._act(l, self.z[l])
        self.loss_expr = self._loss(self.a[L])
        fam = self.families
        fam["W"] = (dict(self.W), "weight matrix W")
        fam["b"] = (dict(self.b), "bias b")
        fam["z"] = (dict(self.z), "pre-activation z")
        fam["a"] = (dict(self.a), "activation a")
        fam["n"] = ({l: n[l] for l in range(L + 1)}, "width n")
        fam["Ai"] = ({l - 1: self.W[l] for l in range(1, L + 1)}, "MML weight A_i (layer i+1)")
        fam["bi"] = ({l - 1: self.b[l] for l in range(1, L + 1)}, "MML bias b_i (layer i+1)")
        fam["delta"] = ({l: (lambda l=l: self.symbolic_truth("delta", l)) for l in range(1, L + 1)}, "delta ∇_z ℓ")
        fam["grad_a"] = ({l: (lambda l=l: self.symbolic_truth("grad_a", l)) for l in range(0, L + 1)}, "gradient ∇_a ℓ")
        fam["fprime"] = ({l: (lambda l=l: self.apply_dact(l, self.z[l])) for l in range(1, L + 1)}, "derivative f'(z)")
        fam["Jact"] = ({l: (lambda l=l: self.act_jacobian(l, self.z[l])) for l in range(1, L + 1)}, "activation Jacobian")
        self.activations = {l: self.kinds[l] for l in range(1, L + 1)}
        self.scalars.update(L=L, N=1, x=self.x, y=self.y, yhat=self.a[L], conv=conv,
                            theta=lambda: self._theta())

    def _theta(self):
        parts = []
        order = range(self.L, 0, -1) if self.conv.theta_order == "reverse" else range(1, self.L + 1)
        for l in order:
            W = self.W[l]
            parts.append(sympy.Matrix(list(W.T)) if self.conv.vec_order == "col" else sympy.Matrix(list(W)))
            parts.append(self.b[l])
        return sympy.Matrix.vstack(*parts)

    def _scalar_act(self, l, t):
        kind = self.kinds[l]
        if kind == "generic":
            return self.funcs[l](t)
        if kind == "identity":
            return t
        if kind == "sigmoid":
            return 1 / (1 + sympy.exp(-t))
        if kind == "tanh":
            return sympy.tanh(t)
        raise SpecError(f"σ_{l} ({kind}) is not elementwise")

    def _act(self, l, v):
        v = sympy.Matrix(v)
        if self.kinds[l] == "softmax":
            e = [sympy.exp(t) for t in v]
            s = sum(e)
            return sympy.Matrix(v.shape[0], v.shape[1], [t / s for t in e])
        return v.applyfunc(lambda t: self._scalar_act(l, t))

    def _loss(self, yhat):
        y = self.y
        if self.loss_kind == "mse":
            c = exact_number(self.conv.mse_scale, f"convention {self.conv.name!r}: mse_scale")
            return c * sum((yhat[i] - y[i]) ** 2 for i in range(y.shape[0]))
        if self.loss_kind == "bce":
            return -sum(y[i] * sympy.log(yhat[i]) + (1 - y[i]) * sympy.log(1 - yhat[i]) for i in range(y.shape[0]))
        if self.loss_kind == "cross_entropy":
            return -sum(y[i] * sympy.log(yhat[i]) for i in range(y.shape[0]))
        raise SpecError(f"symbolic check: loss {self.loss_kind!r} not supported")

    # helpers --------------------------------------------------------------------
    def apply_act(self, k, v):
        return self._act(k, v)

    def apply_dact(self, k, v):
        if self.kinds[k] == "softmax":
            raise TypeError(f"σ_{k} (softmax) is not elementwise: it has no elementwise derivative; use Jac(k, v)")
        t = sympy.Dummy("t", real=True)
        d = sympy.diff(self._scalar_act(k, t), t)
        return sympy.Matrix(v).applyfunc(lambda e: d.subs(t, e))

    def act_jacobian(self, k, v):
        v = sympy.Matrix(v)
        if v.shape[1] != 1:
            v = v.T
        zs = sympy.Matrix(v.shape[0], 1, lambda i, j: sympy.Dummy(f"u{i}", real=True))
        J = self._act(k, zs).jacobian(zs)
        return J.subs(dict(zip(list(zs), list(v))))

    def grad_C(self, yhat):
        yhat = sympy.Matrix(yhat)
        us = sympy.Matrix(yhat.shape[0], 1, lambda i, j: sympy.Dummy(f"v{i}", real=True))
        g = sympy.Matrix([self._loss(us)]).jacobian(us).T
        return g.subs(dict(zip(list(us), list(yhat))))

    def loss_value(self, yhat, y=None):
        if y is not None and sympy.Matrix(y) != self.y:
            raise ValueError("symbolic C(ŷ, y): only the instance's target y is supported")
        return self._loss(sympy.Matrix(yhat))

    def layer_of(self, v):
        v = sympy.Matrix(v)
        for j, zj in self.z.items():
            if v.shape == zj.shape and v == zj or v.T.shape == zj.shape and v.T == zj:
                return j
        return None

    # truths ---------------------------------------------------------------------
    def _partial_loss_gradient(self, l: int, at: str) -> sympy.Matrix:
        """∇ of the loss w.r.t. z[l] (at='z') or a[l] (at='a'), via fresh symbols."""
        n = self.widths[l]
        u = sympy.Matrix(n, 1, lambda i, j: sympy.Dummy(f"u{i}", real=True))
        cur = self._act(l, u) if at == "z" else u
        for k in range(l + 1, self.L + 1):
            cur = self._act(k, self.Wc[k] * cur + self.b[k])
        g = sympy.Matrix([self._loss(cur)]).jacobian(u).T
        val = self.z[l] if at == "z" else self.a[l]
        return g.subs(dict(zip(list(u), list(val))))

    def symbolic_truth(self, target: str, l):
        key = ("sym", target, l)
        if key in self.truth_cache:
            return self.truth_cache[key]
        if target == "grad_W":
            W = self.W[l]
            v = W.applyfunc(lambda w: sympy.diff(self.loss_expr, w))
        elif target == "grad_b":
            v = self.b[l].applyfunc(lambda w: sympy.diff(self.loss_expr, w))
        elif target == "delta":
            v = self._partial_loss_gradient(l, "z")
        elif target == "grad_a":
            v = self._partial_loss_gradient(l, "a") if l < self.L else self.grad_C(self.a[self.L])
        elif target == "z":
            v = self.z[l]
        elif target == "a":
            v = self.a[l]
        elif target == "yhat":
            v = self.a[self.L]
        elif target == "J_act":
            v = self.act_jacobian(l, self.z[l])
        elif target == "loss":
            v = sympy.Matrix([[self.loss_expr]])
        elif target == "grad_theta":
            th = self._theta()
            v = th.applyfunc(lambda w: sympy.diff(self.loss_expr, w))
        elif target == "grad_theta_l":
            W = self.W[l]
            vecW = sympy.Matrix(list(W.T)) if self.conv.vec_order == "col" else sympy.Matrix(list(W))
            th = sympy.Matrix.vstack(vecW, self.b[l])
            v = th.applyfunc(lambda w: sympy.diff(self.loss_expr, w))
        else:
            raise SpecError(f"symbolic check: target {target!r} has no symbolic truth")
        self.truth_cache[key] = v
        return v



def symbolic_quantities(setting: Setting, widths: Sequence[int] | None = None) -> Quantities:
    """SymPy :class:`Quantities` of the setting's symbolic architecture (for writing SymPy claims)."""
    w = tuple(widths) if widths is not None else (setting.symbolic or (2, 3, 2))
    return Quantities(_SymbolicData(setting, w), _Log())


# =========================================================================== comparison
@dataclass
class _Outcome:
    status: str
    err: float
    reason: str
    value: Any = None
    truth: Any = None


def _as_numeric(v):
    if isinstance(v, sympy.MatrixBase):
        return np.array(v.evalf(), dtype=float)
    if isinstance(v, sympy.Basic):
        return np.array([[float(v)]])
    a = np.asarray(v)
    if a.dtype == object:
        a = a.astype(float)
    return a.astype(float)


def _compare_numeric(value, truth) -> _Outcome:
    try:
        C = _as_numeric(value)
    except (TypeError, ValueError) as exc:
        return _Outcome(ILL_TYPED, np.inf, f"the formula returned a non-numeric value ({exc})")
    T = np.asarray(truth, dtype=float)
    if C.ndim == 0 and T.size == 1:
        C = C.reshape(T.shape)
    if C.ndim == 1 and T.ndim == 2 and 1 in T.shape and C.size == T.size:
        C = C.reshape(T.shape)  # a 1-D vector has no orientation
    if T.ndim == 0 and C.size == 1:
        C = C.reshape(())
    if C.shape != T.shape:
        return _Outcome(ILL_TYPED, np.inf, f"shape {_shape_txt(C.shape)} where {_shape_txt(T.shape)} is expected",
                        C, T)
    if not np.all(np.isfinite(C)):
        return _Outcome(FAILS, np.inf, "the formula returned NaN or Inf", C, T)
    err = float(np.max(np.abs(C - T))) if T.size else 0.0
    scale = float(np.max(np.abs(T))) if T.size else 0.0
    if err <= ATOL + RTOL * max(scale, 1.0):
        return _Outcome(HOLDS, err, "", C, T)
    return _Outcome(FAILS, err, f"values differ (max abs error {err:.3g}, |truth| ≤ {scale:.3g})", C, T)


def _shape_txt(s) -> str:
    return "×".join(map(str, s)) if len(s) else "scalar"


def _sym_matrix(v):
    if isinstance(v, sympy.MatrixBase):
        return sympy.Matrix(v)
    if isinstance(v, sympy.Basic) or isinstance(v, (int, float, Fraction)):
        return sympy.Matrix([[v if isinstance(v, sympy.Basic) else sympy.Rational(v.numerator, v.denominator) if isinstance(v, Fraction) else sympy_scalar(v)]])
    a = np.asarray(v, dtype=object)
    if a.ndim == 0:
        return sympy.Matrix([[a.item()]])
    if a.ndim == 1:
        return sympy.Matrix(a.tolist())
    return sympy.Matrix(a.tolist())


_CONCRETE = [  # (NumPy f, f') replacing the undefined activations f_1, f_2, … for numeric evaluation
    (lambda t: np.sin(t) + t ** 3 / 5 + 1, lambda t: np.cos(t) + 3 * t ** 2 / 5),
    (lambda t: np.cos(t) * t + t / 2, lambda t: -np.sin(t) * t + np.cos(t) + 0.5),
    (lambda t: np.exp(t / 3) - t ** 2 / 7, lambda t: np.exp(t / 3) / 3 - 2 * t / 7),
    (lambda t: np.arctan(t) + t ** 2 / 9, lambda t: 1 / (1 + t ** 2) + 2 * t / 9),
]


_NP_FUNCS = {"exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos, "tan": np.tan, "tanh": np.tanh,
             "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "Abs": np.abs}


def _num_eval(e, vals: dict, funcs: dict, memo: dict) -> float:
    """Evaluate a SymPy expression tree in float64 (memoised on shared sub-expressions).

    ``funcs`` maps the names of undefined functions ``f_l`` to ``(f, f')`` NumPy pairs; their
    derivatives appear as ``Subs(Derivative(f_l(ξ), ξ), ξ, u)`` or ``Derivative(f_l(x), x)``.
    """
    if e in memo:
        return memo[e]
    if e.is_Symbol:
        v = vals[e]
    elif e.is_Number or e.is_NumberSymbol:
        v = float(e)
    elif e.is_Add:
        v = sum(_num_eval(a, vals, funcs, memo) for a in e.args)
    elif e.is_Mul:
        v = 1.0
        for a in e.args:
            v *= _num_eval(a, vals, funcs, memo)
    elif e.is_Pow:
        with np.errstate(all="ignore"):
            v = float(np.power(_num_eval(e.base, vals, funcs, memo), _num_eval(e.exp, vals, funcs, memo)))
    elif isinstance(e, sympy.Subs) and isinstance(e.expr, sympy.Derivative) and \
            getattr(e.expr.expr.func, "__name__", "") in funcs and len(e.point) == 1:
        v = float(funcs[e.expr.expr.func.__name__][1](_num_eval(e.point[0], vals, funcs, memo)))
    elif isinstance(e, sympy.Derivative) and getattr(e.expr.func, "__name__", "") in funcs and len(e.variables) == 1:
        v = float(funcs[e.expr.func.__name__][1](_num_eval(e.expr.args[0], vals, funcs, memo)))
    elif isinstance(e, sympy.Function) and getattr(e.func, "__name__", "") in funcs:
        v = float(funcs[e.func.__name__][0](_num_eval(e.args[0], vals, funcs, memo)))
    elif isinstance(e, sympy.Function) and e.func.__name__ in _NP_FUNCS and len(e.args) == 1:
        with np.errstate(all="ignore"):
            v = float(_NP_FUNCS[e.func.__name__](_num_eval(e.args[0], vals, funcs, memo)))
    else:  # anything else (Heaviside, Max, Piecewise, …): SymPy's own numeric evaluation
        sub = {s_: sympy.Float(vals[s_]) for s_ in e.free_symbols if s_ in vals}
        v = complex(e.xreplace(sub).evalf()).real
    memo[e] = v
    return v


def _numeric_substitution(d: "_SymbolicData", exprs: list, seed: int = 0) -> list:
    """Evaluate SymPy matrices at one random point, the undefined activations ``f_l`` replaced by
    concrete functions (and their derivatives by the concrete derivatives)."""
    rng = np.random.default_rng(seed)
    funcs = {f.__name__: _CONCRETE[(l - 1) % len(_CONCRETE)] for l, f in d.funcs.items()}
    syms: set = set()
    mats = [sympy.Matrix(e) for e in exprs]
    for M in mats:
        syms |= M.free_symbols
    syms_l = sorted(syms, key=str)
    vals = dict(zip(syms_l, rng.uniform(-1.5, 1.5, size=len(syms_l)).tolist()))
    if d.loss_kind in ("cross_entropy", "bce"):
        for i, yi in enumerate(list(d.y)):
            if yi in vals:
                vals[yi] = 1.0 / (4 + i)
    memo: dict = {}
    return [np.array([[_num_eval(M[i, j], vals, funcs, memo) for j in range(M.shape[1])] for i in range(M.shape[0])],
                     dtype=float).reshape(M.shape) for M in mats]


def _is_zero(e) -> bool:
    """Sound (never wrongly True) and fast zero test: expand; then, with every ``exp(·)`` and
    undefined-function atom replaced by a free symbol, ``cancel`` (a rational function that is
    identically zero in free symbols is zero at the actual atoms); finally ``simplify``."""
    e = sympy.expand(e)
    if e == 0:
        return True
    try:
        e2 = sympy.expand(e, power_exp=True, log=False)
        # exp(k·u) → E_u^k with one free symbol E_u per u (k rational): exp(u), exp(−u), exp(2u) share it
        dummies: dict = {}

        def _exp_atom(a):
            c, u = a.args[0].as_coeff_Mul()
            if u not in dummies:
                dummies[u] = sympy.Dummy(f"E{len(dummies)}", positive=True)
            return dummies[u] ** c

        e2 = e2.replace(lambda a: isinstance(a, sympy.exp), _exp_atom)
        atoms = [a for a in e2.atoms(sympy.Subs, sympy.Derivative, sympy.log)] + \
            [a for a in e2.atoms(sympy.Function) if isinstance(a, sympy.core.function.AppliedUndef)]
        rep = {a: sympy.Dummy(f"atom{i}") for i, a in enumerate(atoms)}
        if sympy.cancel(sympy.together(e2.xreplace(rep))) == 0:
            return True
    except Exception:  # noqa: BLE001 - fall through to simplify
        pass
    return sympy.simplify(e) == 0


def _compare_symbolic(d: "_SymbolicData", value, truth, exact: bool = True) -> _Outcome:
    try:
        C = _sym_matrix(value)
    except Exception as exc:  # noqa: BLE001 - anything a claim returns
        return _Outcome(ILL_TYPED, np.inf, f"the formula returned a non-matrix value ({exc})")
    T = sympy.Matrix(truth)
    if C.shape != T.shape:
        return _Outcome(ILL_TYPED, np.inf, f"shape {_shape_txt(C.shape)} where {_shape_txt(T.shape)} is expected", C, T)
    try:
        cv, tv = _numeric_substitution(d, [C, T])
    except Exception as exc:  # noqa: BLE001
        return _Outcome(ILL_TYPED, np.inf, f"cannot evaluate the formula ({type(exc).__name__}: {exc})", C, T)
    if not np.all(np.isfinite(cv)):
        return _Outcome(FAILS, np.inf, "the formula evaluates to NaN or Inf", C, T)
    err = float(np.max(np.abs(cv - tv))) if tv.size else 0.0
    Dm = C - T
    if err > 1e-9 * max(1.0, float(np.max(np.abs(tv)))):
        return _Outcome(FAILS, err, f"differs symbolically (e.g. entry difference {_first_nonzero(Dm)})", C, T)
    if not exact:
        return _Outcome(HOLDS, err, "", C, T)
    if all(_is_zero(e) for e in Dm):
        return _Outcome(HOLDS, 0.0, "", C, T)
    more = [_numeric_substitution(d, [Dm], seed=s)[0] for s in (1, 2)]
    if all(np.max(np.abs(m)) < 1e-10 for m in more):
        return _Outcome(HOLDS, 0.0, "equal at random points (SymPy could not simplify the difference to 0)", C, T)
    return _Outcome(FAILS, err, "differs symbolically", C, T)


def _first_nonzero(M) -> str:
    for e in M:
        e2 = sympy.expand(e)
        if e2 != 0:
            s = str(e2)
            return s if len(s) < 120 else s[:117] + "…"
    return "0"


# =========================================================================== evaluation of network claims
@dataclass(frozen=True)
class _OutCorrection:
    """Output-level correction: c · P_r · C^(T) · P_c (+ block reorder, + reduction)."""

    factor: Any = 1  # number or ("N", power, const)
    transpose: bool = False
    row_perm: tuple | None = None  # (p, r): rows permuted by K_{p,r}
    col_perm: tuple | None = None
    reverse_blocks: bool = False
    reduce_axis: tuple | None = None  # (axis, "sum"|"mean")


_FACTORS = [
    (-1, "corrected formula −C", Mistake.SIGN),
    (2, "factor 2 missing: corrected formula 2·C", Mistake.FACTOR),
    (Fraction(1, 2), "factor ½ missing (or an extra 2): corrected formula C/2", Mistake.FACTOR),
    (-2, "sign flipped and factor 2 missing: corrected formula −2·C", Mistake.SIGN),
    (Fraction(-1, 2), "sign flipped and factor ½ missing: corrected formula −C/2", Mistake.SIGN),
    (("N", -1, 1), "factor 1/N missing (summed where the convention averages): corrected formula C/N", Mistake.REDUCTION),
    (("N", 1, 1), "extra factor 1/N (averaged where the convention sums): corrected formula N·C", Mistake.REDUCTION),
    (("N", -1, -1), "sign flipped and factor 1/N missing: corrected formula −C/N", Mistake.SIGN),
    (("N", 1, -1), "sign flipped and extra factor 1/N: corrected formula −N·C", Mistake.SIGN),
    (("N", -1, 2), "factors 2 and 1/N missing: corrected formula 2C/N", Mistake.FACTOR),
    (("N", -1, Fraction(1, 2)), "factors ½ and 1/N missing: corrected formula C/(2N)", Mistake.FACTOR),
    (("N", 1, 2), "corrected formula 2N·C", Mistake.FACTOR),
    (("N", 1, Fraction(1, 2)), "corrected formula N·C/2", Mistake.FACTOR),
]


def _factor_value(f, N: int):
    if isinstance(f, tuple):
        _, p, c = f
        return (sympy.Integer(N) ** p) * exact_number(c)
    return exact_number(f)


def _perm_matrix(p: int, r: int) -> np.ndarray:
    return commutation_matrix(p, r).toarray()


def _apply_out(oc: _OutCorrection, value, d: _InstanceData, target: str, l):
    if oc == _OutCorrection():
        return value
    sym = isinstance(value, sympy.MatrixBase)
    if not sym:
        value = _as_numeric(value)
        if value.ndim == 1:
            value = value.reshape(-1, 1)
    if oc.reduce_axis is not None:
        ax, how = oc.reduce_axis
        if sym:
            raise TypeError("reduction corrections are numeric only")
        value = value.sum(axis=ax, keepdims=True) if how == "sum" else value.mean(axis=ax, keepdims=True)
    if oc.transpose:
        value = value.T
    if oc.reverse_blocks:
        value = _reverse_theta_blocks(value, d, target)
    if oc.row_perm is not None:
        P = _perm_matrix(*oc.row_perm)
        value = (sympy.Matrix(P.astype(int)) * value) if sym else P @ value
    if oc.col_perm is not None:
        P = _perm_matrix(*oc.col_perm)
        value = (value * sympy.Matrix(P.T.astype(int))) if sym else value @ P.T
    if oc.factor != 1:
        c = _factor_value(oc.factor, d.N)
        value = value * c if sym else value * float(c)
    return value


def _theta_sizes(d: _InstanceData) -> list[int]:
    """Sizes of the per-layer [W, b] blocks in the convention's θ order (forward or reverse)."""
    w = d.widths
    L = len(w) - 1
    order = range(L, 0, -1) if d.conv.theta_order == "reverse" else range(1, L + 1)
    return [w[l - 1] * w[l] + w[l] for l in order]


def _reverse_theta_blocks(value, d: _InstanceData, target: str):
    sizes = _theta_sizes(d)
    if target == "grad_theta":
        axis = 0
    elif target == "J_theta":
        axis = 1
    else:
        raise TypeError("block order applies to θ-shaped targets only")
    n = value.shape[axis]
    if n != sum(sizes):
        raise ValueError(f"θ has {sum(sizes)} entries, the formula {n}")
    rev_sizes = sizes[::-1]
    # the claim's blocks are in the reversed order: block k of the claim has size rev_sizes[k]
    offs_c = np.cumsum([0] + rev_sizes)
    pieces = []
    for k in range(len(sizes) - 1, -1, -1):
        sl = slice(int(offs_c[k]), int(offs_c[k + 1]))
        pieces.append(value[sl, :] if axis == 0 else value[:, sl])
    if isinstance(value, sympy.MatrixBase):
        return sympy.Matrix.vstack(*pieces) if axis == 0 else sympy.Matrix.hstack(*pieces)
    return np.concatenate(pieces, axis=axis)


def _evaluate(claim: Claim, d: _InstanceData, l, qc: _QCorrection, oc: _OutCorrection,
              formula: Callable | None = None, target: str | None = None, exact: bool = True,
              log: _Log | None = None) -> _Outcome:
    """Evaluate the (corrected) claim on one instance and layer; never raises."""
    formula = formula or claim.formula
    target = target or claim.target
    log = log or _Log(qc)
    log.corr = qc
    log.l, log.L = l, d.L
    q = Quantities(d, log)
    try:
        value = formula(q) if l is None else formula(q, l)
    except MissingQuantity as exc:
        return _Outcome(ILL_TYPED, np.inf, f"refers to a quantity the network lacks: {exc}")
    except (ValueError, TypeError, IndexError, ZeroDivisionError, ArithmeticError, AttributeError,
            KeyError, sympy.ShapeError, NotImplementedError, np.linalg.LinAlgError) as exc:
        return _Outcome(ILL_TYPED, np.inf, _friendly(exc))
    except JacobianBPError as exc:
        return _Outcome(ILL_TYPED, np.inf, f"the formula raised {type(exc).__name__}: {exc}"[:300])
    except Exception as exc:  # noqa: BLE001 - a claim is arbitrary user code; never crash the checker
        return _Outcome(ILL_TYPED, np.inf, f"the formula raised {type(exc).__name__}: {exc}"[:300])
    try:
        truth = _truth(d, target, None if l is None else l + claim.target_offset, claim.form)
    except MissingQuantity as exc:
        return _Outcome(ILL_TYPED, np.inf, f"the target does not exist: {exc}")
    except Exception as exc:  # noqa: BLE001 - e.g. a layer index the target does not accept
        return _Outcome(ILL_TYPED, np.inf, f"the target {target!r} cannot be evaluated at l = {l} "
                                           f"({type(exc).__name__}: {exc})")
    if claim.kind == "shape":
        return _compare_shape(value, np.shape(truth) if not d.symbolic else tuple(sympy.Matrix(truth).shape))
    variants = [oc]
    if oc.row_perm == "any" or oc.col_perm == "any":  # the commutation matrix of this instance's shape
        shape = tuple(sympy.Matrix(value).shape) if d.symbolic else np.shape(_as_numeric(value))
        if len(shape) != 2:
            return _Outcome(ILL_TYPED, np.inf, "correction not applicable (not a matrix)")
        side = 0 if oc.row_perm == "any" else 1
        variants = [_OutCorrection(factor=oc.factor, transpose=oc.transpose,
                                   row_perm=pr if side == 0 else None, col_perm=pr if side == 1 else None)
                    for pr in _divisor_pairs(shape[side])]
        if not variants:
            return _Outcome(ILL_TYPED, np.inf, "correction not applicable (no nontrivial factorization)")
    out = None
    for v in variants:
        try:
            val = _apply_out(v, value, d, target, l)
        except Exception as exc:  # noqa: BLE001 - a correction that does not apply
            out = _Outcome(ILL_TYPED, np.inf, f"correction not applicable ({type(exc).__name__}: {exc})")
            continue
        out = _compare_symbolic(d, val, truth, exact) if d.symbolic else _compare_numeric(val, truth)
        if out.status == HOLDS:
            return out
    return out


def _friendly(exc: Exception) -> str:
    """A one-line reason for an exception raised by a formula (NumPy's shape errors made readable)."""
    import re

    msg = str(exc).splitlines()[0] if str(exc) else ""
    m = re.search(r"matmul: .*size (\d+) is different from (\d+)", msg)
    if m:
        return f"ill-typed matrix product: inner dimensions {m.group(2)} and {m.group(1)} differ"
    m = re.search(r"along dimension (\d+), the array at index (\d+) has size (\d+) and the array at index (\d+) "
                  r"has size (\d+)", msg)
    if m:
        return (f"blocks of incompatible sizes stacked: block {int(m.group(2)) + 1} has {m.group(3)}, block "
                f"{int(m.group(4)) + 1} has {m.group(5)} along axis {m.group(1)}")
    m = re.search(r"operands could not be broadcast together with shapes (\S+) (\S+)", msg)
    if m:
        return f"elementwise operation on incompatible shapes {m.group(1)} and {m.group(2)}"
    return f"the formula raised {type(exc).__name__}: {msg}"[:300]


def _compare_shape(value, truth_shape) -> _Outcome:
    try:
        vs = tuple(int(s) for s in value)
    except (TypeError, ValueError):
        return _Outcome(ILL_TYPED, np.inf, f"a dimension statement must give a shape tuple, received {value!r}")
    ts = tuple(int(s) for s in truth_shape)
    if vs == ts:
        return _Outcome(HOLDS, 0.0, "", vs, ts)
    return _Outcome(FAILS, np.inf, f"states {_shape_txt(vs)}, the object is {_shape_txt(ts)}", vs, ts)


@dataclass
class _Run:
    verdict: str
    outcomes: list  # (instance, l, _Outcome)
    max_error: float


def _run(claim: Claim, instances: list, qc: _QCorrection = _QCorrection(), oc: _OutCorrection = _OutCorrection(),
         formula=None, target=None, stop_early: bool = False, logs: list | None = None, exact: bool = True) -> _Run:
    outs = []
    worst = HOLDS
    maxerr = 0.0
    for d in instances:
        for l in claim.layer_range(d.L):
            log = _Log(qc)
            o = _evaluate(claim, d, l, qc, oc, formula, target, exact=exact, log=log)
            if logs is not None:
                logs.append((d, l, log))
            outs.append((d, l, o))
            if _RANK[o.status] > _RANK[worst]:
                worst = o.status
            if o.status != ILL_TYPED and np.isfinite(o.err):
                maxerr = max(maxerr, o.err)
            elif o.status == FAILS:
                maxerr = np.inf
            if stop_early and o.status != HOLDS:
                return _Run(worst, outs, maxerr)
    return _Run(worst, outs, maxerr)


# =========================================================================== diagnosis
def _divisor_pairs(n: int) -> list[tuple[int, int]]:
    return [(p, n // p) for p in range(2, n) if n % p == 0]


def _out_candidates(claim: Claim, runs_outcomes: list) -> list[tuple[_OutCorrection, Mistake, str]]:
    """Output-level candidate corrections from the shapes seen (N-factors only when some N > 1,
    θ block order only when some network has two layers or more)."""
    cands: list = []
    batch = any(d.N > 1 for d, _, _ in runs_outcomes)
    deep = any(d.L > 1 for d, _, _ in runs_outcomes)
    for f, txt, kind in _FACTORS:
        if isinstance(f, tuple) and not batch:
            continue
        cands.append((_OutCorrection(factor=f), kind, txt))
    shapes = set()
    for d, l, o in runs_outcomes:
        if o.value is not None and o.truth is not None and not isinstance(o.value, tuple):
            try:
                cs = tuple(np.shape(o.value)) if not isinstance(o.value, sympy.MatrixBase) else o.value.shape
                ts = tuple(np.shape(o.truth)) if not isinstance(o.truth, sympy.MatrixBase) else o.truth.shape
                shapes.add((cs, ts, d.N))
            except Exception:  # noqa: BLE001
                pass
    any_T = any(len(cs) == 2 and cs[::-1] == ts for cs, ts, _ in shapes)
    if any_T:
        cands.append((_OutCorrection(transpose=True), Mistake.TRANSPOSE, "corrected formula Cᵀ"))
        cands.append((_OutCorrection(transpose=True, factor=-1), Mistake.TRANSPOSE, "transposed and sign flipped: corrected formula −Cᵀ"))
    if claim.target in ("grad_theta", "J_theta") and deep:
        cands.append((_OutCorrection(reverse_blocks=True), Mistake.BLOCK_ORDER,
                      "per-layer blocks in the opposite order (θ = [layer 1; …; layer L] vs [layer L; …; layer 1])"))
        cands.append((_OutCorrection(reverse_blocks=True, factor=-1), Mistake.BLOCK_ORDER,
                      "per-layer blocks in the opposite order and sign flip"))
    # reductions over an extra batch axis
    for cs, ts, N in shapes:
        if len(cs) == 2 and len(ts) == 2 and N > 1:
            for ax in (0, 1):
                red = list(cs)
                red[ax] = 1
                if tuple(red) == ts and cs[ax] == N:
                    for how in ("sum", "mean"):
                        cands.append((_OutCorrection(reduce_axis=(ax, how)), Mistake.REDUCTION,
                                      f"the batch axis {ax} left unreduced: {how} over it"))
    # commutation permutations (same shape only; the K_{p,r} of each instance's shape)
    same = [(cs, ts) for cs, ts, _ in shapes if cs == ts and len(cs) == 2]
    if any(_divisor_pairs(cs[0]) for cs, _ in same):
        cands.append((_OutCorrection(row_perm="any"), Mistake.KRONECKER,
                      "rows permuted by a commutation matrix K_{p,r} (Kronecker factors or vec order swapped)"))
    if any(_divisor_pairs(cs[1]) for cs, _ in same):
        cands.append((_OutCorrection(col_perm="any"), Mistake.KRONECKER,
                      "columns permuted by a commutation matrix K_{p,r} (Kronecker factors or vec order swapped)"))
    return cands


_SHIFT_FAMILIES = ("W", "b", "z", "a", "delta", "grad_a", "fprime", "Jact", "n", "Z", "A", "Delta", "dZ", "dA", "sigma")


def _q_candidates(claim: Claim, logs: list) -> list[tuple[_QCorrection, Mistake, str]]:
    """Quantity-level candidate corrections from the recorded accesses and helper calls."""
    cands: list = []
    seen = set()
    last_only = claim.layers == "last"
    anchors_pref = ("L", "l", "abs") if last_only else ("l", "L", "abs")
    accessed = set()
    for d, l, log in logs:
        for fam, k, ll, LL in log.accesses:
            accessed.add((fam, k, ll, LL))
    # index shifts, anchored at l, L or absolute
    for anchor in anchors_pref:
        for fam, k, ll, LL in sorted(accessed, key=str):
            if fam not in _SHIFT_FAMILIES:
                continue
            av = {"l": ll, "L": LL, "abs": 0}[anchor]
            if av is None:
                continue
            off = k - av
            for delta in (-1, +1):
                key = ("shift", fam, anchor, off, delta)
                if key in seen:
                    continue
                seen.add(key)
                old = f"{fam}[{_fmt_index(anchor, off)}]"
                new = f"{fam}[{_fmt_index(anchor, off + delta)}]"
                if fam == "sigma":
                    old, new = f"σ_{_fmt_index(anchor, off)}", f"σ_{_fmt_index(anchor, off + delta)}"
                cands.append((_QCorrection(shift=((fam, anchor, off, delta),)), Mistake.INDEX_SHIFT,
                              f"{old} used where {new} is needed"))
    # the last layer's index L used where the current layer l is needed (σ_L for σ_l, n[L] for n[l])
    for fam in sorted({f for f, k, ll, LL in accessed if f in _SHIFT_FAMILIES and ll is not None and k == LL and ll != LL}):
        key = ("Ltol", fam)
        if key not in seen:
            seen.add(key)
            kind = Mistake.OUTPUT_ACTIVATION if fam in ("sigma", "fprime", "Jact") else Mistake.INDEX_SHIFT
            old = "σ_L" if fam == "sigma" else f"{fam}[L]"
            new = "σ_l" if fam == "sigma" else f"{fam}[l]"
            cands.append((_QCorrection(L_to_l=(fam,)), kind, f"{old} (the last layer's) used where {new} is needed"))
    # one operand transposed
    for anchor in anchors_pref:
        for fam, k, ll, LL in sorted(accessed, key=str):
            if fam in ("n", "sigma"):
                continue
            av = {"l": ll, "L": LL, "abs": 0}[anchor]
            if av is None:
                continue
            off = k - av
            key = ("T", fam, anchor, off)
            if key in seen:
                continue
            seen.add(key)
            cands.append((_QCorrection(transpose=((fam, anchor, off),)), Mistake.TRANSPOSE,
                          f"{fam}[{_fmt_index(anchor, off)}] should be transposed"))
    # output activation for a hidden layer
    mism = any(src is not None and k != src for d, l, log in logs for k, src in log.act_calls)
    if mism:
        cands.append((_QCorrection(act_follows_argument=True), Mistake.OUTPUT_ACTIVATION,
                      "σ_L (the output activation) applied at z[l]: use the layer's own σ_l"))
    # helper call sites
    calls = set()
    for d, l, log in logs:
        for helper, c, info in log.calls:
            calls.add((helper, c, info))
    for helper, c, info in sorted(calls, key=str):
        if helper.startswith("np.") and info is not None:
            key = ("axis", helper, c)
            if key not in seen:
                seen.add(key)
                cands.append((_QCorrection(flip_axis=((helper, c),)), Mistake.WRONG_AXIS,
                              f"{helper}(…, axis={info}) (call {c + 1}) reduces over the wrong axis: use axis={1 - info % 2}"))
        elif helper == "kron":
            key = ("kron", c)
            if key not in seen:
                seen.add(key)
                cands.append((_QCorrection(swap_kron=(c,)), Mistake.KRONECKER,
                              f"Kronecker factors in the wrong order (kron call {c + 1}): B ⊗ A for A ⊗ B"))
        elif helper in ("vec", "vec_r"):
            key = ("vec", helper, c)
            if key not in seen:
                seen.add(key)
                other = "rows" if helper == "vec" else "columns"
                cands.append((_QCorrection(flip_vec=((helper, c),)), Mistake.KRONECKER,
                              f"vec order: {helper} (call {c + 1}) should stack {other}"))
    return cands


def _diagnose(claim: Claim, instances: list, base: _Run, logs: list, max_pairs: int = 600) -> list[Explanation]:
    """Candidate corrections that make the claim hold on every instance and layer."""
    failing = [(d, l) for d, l, o in base.outcomes if o.status != HOLDS]
    if not failing:
        return []
    # instances ordered: failing ones first, for quick rejection
    order = list(dict.fromkeys([d for d, _ in failing] + list(instances)))
    order.sort(key=lambda d: (d.symbolic, d not in {f for f, _ in failing}))  # cheap numeric rejections first
    qcs = _q_candidates(claim, logs)
    ocs = _out_candidates(claim, base.outcomes)
    found: list[Explanation] = []

    def works(qc, oc) -> bool:
        return _run(claim, order, qc, oc, stop_early=True, exact=False).verdict == HOLDS

    for qc, kind, txt in qcs:
        if works(qc, _OutCorrection()):
            found.append(Explanation(kind, txt))
    for oc, kind, txt in ocs:
        if works(_QCorrection(), oc):
            found.append(Explanation(kind, txt))
    if found:
        return _dedupe(found)
    # pairs: a quantity-level correction with an output-level one, or two quantity-level ones
    tried = 0
    for (qc, k1, t1), (oc, k2, t2) in itertools.product(qcs, ocs):
        tried += 1
        if tried > max_pairs:
            break
        if works(qc, oc):
            found.append(Explanation(k1, f"{t1}, and {t2}"))
    for (qa, k1, t1), (qb, k2, t2) in itertools.combinations(qcs, 2):
        tried += 1
        if tried > 2 * max_pairs:
            break
        merged = _QCorrection(shift=qa.shift + qb.shift, transpose=qa.transpose + qb.transpose,
                              flip_axis=qa.flip_axis + qb.flip_axis, swap_kron=qa.swap_kron + qb.swap_kron,
                              flip_vec=qa.flip_vec + qb.flip_vec,
                              act_follows_argument=qa.act_follows_argument or qb.act_follows_argument,
                              L_to_l=qa.L_to_l + qb.L_to_l)
        if works(merged, _OutCorrection()):
            found.append(Explanation(k1, f"{t1}, and {t2}"))
    return _dedupe(found)


def _dedupe(found: list[Explanation]) -> list[Explanation]:
    """Drop repeated explanations, and index shifts that only re-anchor one already found
    (``a[l]`` → ``a[l-1]`` and ``a[2]`` → ``a[1]`` describe the same access)."""
    out, seen, shifted = [], set(), set()
    for e in found:
        if e.description in seen:
            continue
        seen.add(e.description)
        if e.kind == Mistake.INDEX_SHIFT and " used where " in e.description and ", and " not in e.description:
            old, new = e.description.split(" used where ")
            fam = old.split("[")[0]
            key = (fam, _shift_sign(old, new))
            if key in shifted:
                continue
            shifted.add(key)
        out.append(e)
    return out


def _shift_sign(old: str, new: str) -> str:
    """'+' or '-' (or '?') from two index texts such as ``a[l]`` and ``a[l-1]``."""
    import re

    def val(t):
        m = re.search(r"\[([^\]]*)\]", t)
        inner = m.group(1) if m else t
        m2 = re.match(r"^[lL]?([+-]\d+)?$|^(\d+)$", inner.replace(" ", ""))
        if not m2:
            return None
        if m2.group(2) is not None:
            return int(m2.group(2))
        return int(m2.group(1) or 0)

    a, b = val(old), val(new)
    if a is None or b is None:
        return "?"
    return "+" if b > a else "-"


# =========================================================================== check
def _counterexample(outcomes: list) -> Counterexample | None:
    bad = [(d, l, o) for d, l, o in outcomes if o.status != HOLDS]
    if not bad:
        return None
    d, l, o = min(bad, key=lambda t: (sum(t[0].widths) if t[0].widths else 0, t[0].N, t[0].seed,
                                      -_RANK[t[2].status]))
    small = lambda v: v is not None and (isinstance(v, tuple) or np.size(v) <= 16)  # noqa: E731
    return Counterexample(d.widths, d.seed, d.N, l, o.reason,
                          o.value if small(o.value) and o.status != ILL_TYPED else None,
                          o.truth if small(o.truth) and o.status != ILL_TYPED else None)


def _reason(run: _Run) -> str:
    bad = [(d, l, o) for d, l, o in run.outcomes if o.status == run.verdict]
    if not bad:
        return ""
    d, l, o = bad[0]
    n_bad = len([1 for *_, o2 in run.outcomes if o2.status != HOLDS])
    where = f"widths {'-'.join(map(str, d.widths))}" + ("" if l is None else f", l = {l}")
    return f"{o.reason} ({where}; {n_bad} of {len(run.outcomes)} cases)"


def check(claim, diagnose: bool = True) -> CheckResult:
    """Check a :class:`Claim`, :class:`ExpressionClaim` or :class:`ListingClaim`; never raises for a bad claim.

    Returns
    -------
    CheckResult
        verdict (holds / fails / ill-typed), reason, max error, counterexample,
        diagnosis (explanations that make the claim hold) and the verdicts of the
        claim-specific corrections.
    """
    if isinstance(claim, ExpressionClaim):
        return _check_expression(claim)
    if isinstance(claim, ListingClaim):
        return _check_listing(claim)
    if not isinstance(claim, Claim):
        raise TypeError(f"check: expected a Claim, ExpressionClaim or ListingClaim, received {type(claim).__name__}")
    setting = claim.setting
    instances = build_instances(setting)
    if not instances and not setting.symbolic:
        raise SpecError(f"claim {claim.name!r}: no architecture with at least {setting.min_depth} layers")
    logs: list = []
    run = _run(claim, instances, logs=logs)
    method = "numeric" if instances else "symbolic"
    sym_instances = []
    if setting.symbolic and claim.kind == "value":
        sym_instances = [_cached_symbolic(setting, tuple(setting.symbolic))]
        slogs: list = []
        srun = _run(claim, sym_instances, logs=slogs)
        method = "symbolic+numeric" if instances else "symbolic"
        if _RANK[srun.verdict] > _RANK[run.verdict]:
            run = _Run(srun.verdict, srun.outcomes + run.outcomes, max(run.max_error, srun.max_error))
        else:
            run = _Run(run.verdict, run.outcomes + srun.outcomes, run.max_error)
        logs = logs + slogs
    all_instances = instances + sym_instances
    res = CheckResult(claim.name, run.verdict, _reason(run), method,
                      max_error=(run.max_error if run.verdict != ILL_TYPED else None),
                      n_instances=len(all_instances), details=[(d.label, l, o.status, o.reason) for d, l, o in run.outcomes])
    if run.verdict != HOLDS:
        res.counterexample = _counterexample(run.outcomes)
        if diagnose:
            res.diagnosis = _diagnose(claim, all_instances, run, logs)
    for corr in claim.corrections:
        insts = all_instances
        if corr.setting is not None:
            insts = build_instances(corr.setting)
        crun = _run(claim, insts, formula=corr.formula, target=corr.target)
        res.corrections.append((corr, crun.verdict))
        if run.verdict != HOLDS and crun.verdict == HOLDS:
            res.diagnosis.append(Explanation(Mistake.CUSTOM, corr.description))
    return res


# =========================================================================== expression claims
def _expr_cases(claim: ExpressionClaim) -> list:
    return list(claim.cases) if claim.cases else [None]


def _expr_value(e, case):
    if callable(e):
        return e() if case is None else e(case)
    return e


def _expr_compare(claim: ExpressionClaim, formula, case) -> tuple[str, str, float, Any, Any]:
    """Compare formula and truth of one case: (status, reason, error, C, T)."""
    try:
        C = _sym_matrix(_expr_value(formula, case))
    except Exception as exc:  # noqa: BLE001 - a stated formula may be anything
        return ILL_TYPED, f"the formula cannot be built ({type(exc).__name__}: {exc})", np.inf, None, None
    T = _sym_matrix(_expr_value(claim.truth, case))
    if C.shape != T.shape:
        return ILL_TYPED, f"shape {_shape_txt(C.shape)} where {_shape_txt(T.shape)} is expected", np.inf, C, T
    Dm = (C - T).applyfunc(sympy.expand)
    if all(e == 0 for e in Dm):
        return HOLDS, "", 0.0, C, T
    rng = np.random.default_rng(0)
    syms = sorted((C.free_symbols | T.free_symbols), key=str)
    for _ in range(4):
        if claim.sample:
            vals = claim.sample(rng)
        else:
            vals = {sy: (sympy.Rational(int(rng.integers(1, 40)), 13) if sy.is_positive
                         else sympy.Rational(int(rng.integers(-40, 41)), 13) + sympy.Rational(1, 97)) for sy in syms}
        try:
            cv = np.array(C.subs(vals).evalf(30), dtype=float)
            tv = np.array(T.subs(vals).evalf(30), dtype=float)
        except (TypeError, ValueError) as exc:
            return ILL_TYPED, f"cannot evaluate the formula ({exc})", np.inf, C, T
        if not np.all(np.isfinite(cv)):
            return FAILS, "evaluates to NaN or Inf", np.inf, C, T
        err = float(np.max(np.abs(cv - tv)))
        if err > 1e-9 * max(1.0, float(np.max(np.abs(tv)))):
            i, j = np.unravel_index(int(np.argmax(np.abs(cv - tv))), cv.shape)
            ce, te = C[i, j], T[i, j]
            if sympy.count_ops(ce) < 150:
                ce = sympy.simplify(ce)
            if sympy.count_ops(te) < 150:
                te = sympy.simplify(te)
            ce, te = _short(ce), _short(te)
            pt = ", ".join(f"{k}={float(v):.3g}" for k, v in list(vals.items())[:3])
            where = f" (e.g. at {pt}{', …' if len(vals) > 3 else ''}: {cv[i, j]:.4g} vs {tv[i, j]:.4g})" if vals else ""
            return FAILS, f"entry ({i + 1}, {j + 1}) is {ce}, the true entry is {te}{where}", err, C, T
    if all(_is_zero(e) for e in Dm):
        return HOLDS, "", 0.0, C, T
    return HOLDS, "equal at random points (SymPy could not simplify the difference to 0)", 0.0, C, T


def _short(e, n: int = 70) -> str:
    t = str(e)
    return t if len(t) <= n else t[: n - 1] + "…"


def _expr_fixes(C, T) -> dict:
    """Generic corrections that turn ``C`` into ``T`` for one case: {(kind, text): detail}."""
    out: dict = {}
    if C is None or T is None:
        return out

    def same(M) -> bool:
        return M.shape == T.shape and all(sympy.expand(e) == 0 for e in (M - T))

    for c, txt, kind in _FACTORS:
        if not isinstance(c, tuple) and same(C * exact_number(c)):
            out[(kind, txt)] = ""
    if C.shape[::-1] == T.shape and same(C.T):
        out[(Mistake.TRANSPOSE, "corrected formula Cᵀ")] = ""
    if C.shape == T.shape:
        for pr in _divisor_pairs(C.shape[0]):
            if same(sympy.Matrix(_perm_matrix(*pr).astype(int)) * C):
                out.setdefault((Mistake.KRONECKER, "rows permuted by a commutation matrix (Kronecker factors swapped)"),
                               f"K_{{{pr[0]},{pr[1]}}}")
        for pc in _divisor_pairs(C.shape[1]):
            if same(C * sympy.Matrix(_perm_matrix(*pc).astype(int)).T):
                out.setdefault((Mistake.KRONECKER, "columns permuted by a commutation matrix (Kronecker factors swapped)"),
                               f"K_{{{pc[0]},{pc[1]}}}")
    return out


def _check_expression(claim: ExpressionClaim) -> CheckResult:
    worst, reason, maxerr, firstbad = HOLDS, "", 0.0, None
    outcomes = []
    for case in _expr_cases(claim):
        st, rs, err, C, T = _expr_compare(claim, claim.formula, case)
        outcomes.append((case, st, rs, C, T))
        if st != ILL_TYPED:
            maxerr = max(maxerr, err)
        if _RANK[st] > _RANK[worst]:
            worst, reason, firstbad = st, rs, case
    where = "" if firstbad is None else f" (case {firstbad})"
    n_bad = sum(1 for o in outcomes if o[1] != HOLDS)
    res = CheckResult(claim.name, worst, (reason + where + (f"; {n_bad} of {len(outcomes)} cases" if len(outcomes) > 1 else ""))
                      if worst != HOLDS else "", "symbolic", max_error=(maxerr if worst != ILL_TYPED else None),
                      n_instances=len(outcomes),
                      details=[(str(c), None, st, rs) for c, st, rs, _, _ in outcomes])
    if worst != HOLDS:
        res.counterexample = Counterexample((), 0, 1, firstbad, reason)
        # generic corrections: must make every case hold
        per_case = [_expr_fixes(C, T) for case, st, rs, C, T in outcomes]
        for key in per_case[0] if per_case else {}:
            if all(key in fx for fx in per_case):
                details = sorted({fx[key] for fx in per_case if fx[key]})
                txt = key[1] + (f": {', '.join(details)}" if details else "")
                res.diagnosis.append(Explanation(key[0], txt))
    for corr in claim.corrections:
        cst = HOLDS
        for case in _expr_cases(claim):
            st, *_ = _expr_compare(claim, corr.formula, case)
            if _RANK[st] > _RANK[cst]:
                cst = st
        res.corrections.append((corr, cst))
        if worst != HOLDS and cst == HOLDS:
            res.diagnosis.append(Explanation(Mistake.CUSTOM, corr.description))
    res.diagnosis = _dedupe(res.diagnosis)
    return res


# =========================================================================== listings
_BUILTINS = frozenset(dir(builtins))


def _check_listing(claim: ListingClaim) -> CheckResult:
    """Parse a listing with :mod:`ast` (never execute it); report syntax errors and undefined names.

    A ``def`` line missing its colon is reported, repaired, and the analysis goes on, so
    that every problem of the listing is listed.
    """
    src = claim.source
    problems: list[str] = []
    fixes: list[Explanation] = []
    tree = None
    for _ in range(10):
        try:
            tree = ast.parse(src)
            break
        except SyntaxError as exc:
            line = (exc.text or "").rstrip("\n")
            problems.append(f"not valid Python: {exc.msg} at line {exc.lineno}: {line.strip()!r}")
            lines = src.split("\n")
            if exc.lineno and line.strip().startswith("def ") and not line.rstrip().endswith(":"):
                fixes.append(Explanation(Mistake.CUSTOM, f"missing ':' after {line.strip()!r}"))
                lines[exc.lineno - 1] = lines[exc.lineno - 1].rstrip() + ":"
                src = "\n".join(lines)
                continue
            break
    if tree is not None:
        defined = set(claim.inputs) | _BUILTINS
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                defined.add(node.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    defined.add((a.asname or a.name).split(".")[0])
            elif isinstance(node, ast.arg):
                defined.add(node.arg)
        used = sorted({(n.id, n.lineno) for n in ast.walk(tree)
                       if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in defined},
                      key=lambda t: (t[1], t[0]))
        if used:
            problems.append("uses undefined name(s) " + ", ".join(f"{n!r} (line {ln})" for n, ln in used))
            for n, _ in used:
                close = sorted(d for d in defined - _BUILTINS if _one_edit_apart(n, d))
                if close:
                    fixes.append(Explanation(Mistake.CUSTOM, f"{n!r} should be {close[0]!r}"))
    if not problems:
        return CheckResult(claim.name, HOLDS, "", "static", n_instances=1)
    reason = "; ".join(problems)
    res = CheckResult(claim.name, ILL_TYPED, reason, "static", n_instances=1)
    res.counterexample = Counterexample((), 0, 1, None, reason)
    res.diagnosis = _dedupe(fixes)
    return res


def _one_edit_apart(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by a few inserted/deleted letters (``Ws``/``W``, ``backward_x``/``back_x``)."""
    if a == b:
        return False
    short, long_ = sorted((a, b), key=len)
    if len(long_) - len(short) > 4:
        return False
    # prefix + suffix of the longer equal the shorter
    for i in range(len(short) + 1):
        for extra in range(1, 5):
            if long_[:i] + long_[i + extra:] == short:
                return True
    return False
