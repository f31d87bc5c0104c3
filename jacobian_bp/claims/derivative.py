r"""Derivative claims whose truth the project computes itself.

A :class:`DerivativeClaim` names a *function* (an expression tree :class:`Node` of named
matrices, vectors and scalars -- usually read from LaTeX by :mod:`.latex_grammar` -- or a
NumPy callable), the *argument* it is differentiated with respect to, a *layout*, and the
*claimed derivative* (another :class:`Node`, or a callable).  The truth is derived here,
never supplied by the user:

* **exactly**, by forward-mode differentiation of the function in exact arithmetic on
  small generic instances: every entry of the argument is perturbed in turn,
  :math:`X = X_0 + \varepsilon E_{kl}` with :math:`\varepsilon^2 = 0`, and the function is
  evaluated through its elementary definition (products, sums, Gaussian elimination for
  :math:`X^{-1}` and :math:`\det X`, explicit loops for convolution and pooling,
  :math:`\sigma(z) = 1/(1+e^{-z})`, :math:`\tanh z = (e^{2z}-1)/(e^{2z}+1)`,
  :math:`\operatorname{softmax}(\mathbf z) = e^{\mathbf z}/\mathbf 1^\top e^{\mathbf z}`).
  Rational parts stay :class:`fractions.Fraction` (exact); transcendental values are
  carried with 50 significant digits (:mod:`mpmath`).  No matrix-calculus identity is used,
  so the Matrix Cookbook's identities are *tested*, not assumed;
* as a **second opinion** in float64: complex-step differentiation
  :math:`\operatorname{Im} f(x + i h e_k)/h` when every operation is analytic, central
  differences otherwise (ReLU, |x|, max pooling), and, for convolution, the package's
  own :class:`~jacobian_bp.layers.conv.Conv2d` Jacobians.

Instances are generic: random rationals, pairwise distinct (no ties), non-symmetric,
away from kinks, several sizes; on request the claim is also judged at given points
(a ReLU kink with the convention ``kinks={"relu": 0}``, a symmetric matrix, ...).

Layout (:class:`Layout`) of the derivative of :math:`F \in \mathbb R^{p\times q}` with
respect to :math:`X \in \mathbb R^{m\times n}`:

* scalar :math:`F`: ``denominator`` -- shaped like :math:`X` (the gradient); ``numerator``
  -- shaped like :math:`X^\top` (a row for a column vector);
* scalar :math:`X`: shaped like :math:`F`;
* otherwise ``numerator``: :math:`\partial \operatorname{vec} F / \partial
  (\operatorname{vec} X)^\top \in \mathbb R^{pq \times mn}` (for vectors the Jacobian
  :math:`p \times m`), ``denominator`` its transpose; ``vec="column"`` stacks columns
  (Magnus--Neudecker), ``vec="row"`` stacks rows (NumPy's C order).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from fractions import Fraction
from typing import Any, Mapping

import numpy as np

from ..errors import ShapeError, SpecError
from .exact_eval import ELEMENTWISE, Dual, evaluate, is_analytic, to_float
from .formula_shapes import _Dims, default_shape, infer_shapes, node_sizes
from .formula_tree import EvalError, Node, num, replace_at, substitute, sym, walk

__all__ = ["Node", "sym", "num", "Dual", "Layout", "DerivativeClaim", "StatedCorrection", "Instance", "EvalError",
           "evaluate", "infer_shapes", "make_instances", "exact_truth", "numeric_truth",
           "substitute", "walk", "replace_at", "to_float", "ELEMENTWISE", "CONSTRAINTS", "default_shape", "is_analytic",
           "loss_definition"]


# ============================================================================ settings, claims
@dataclass(frozen=True)
class Layout:
    r"""How a derivative is arranged (see the module docstring).

    Parameters
    ----------
    layout : {"denominator", "numerator"}
        ``denominator``: a scalar's gradient is shaped like the argument (Goodfellow et al.,
        CS231n, the Matrix Cookbook's matrix derivatives); ``numerator``: Jacobians
        :math:`\partial \mathbf f/\partial \mathbf x^\top` (Magnus--Neudecker).
    vec : {"column", "row"}
        Column-major (Magnus--Neudecker, Cookbook) or row-major stacking in vec'd derivatives.
    """

    layout: str = "denominator"
    vec: str = "column"

    def __post_init__(self):
        if self.layout not in ("denominator", "numerator"):
            raise SpecError(f"layout: must be 'denominator' or 'numerator', received {self.layout!r}")
        if self.vec not in ("column", "row"):
            raise SpecError(f"layout: vec must be 'column' or 'row', received {self.vec!r}")

    def arrange(self, Dfull: np.ndarray, fshape: tuple, xshape: tuple) -> np.ndarray:
        """Arrange ``Dfull[i, j, k, l] = ∂F_ij/∂X_kl`` (shape ``fshape + xshape``).

        For a scalar function of an array with channels (``xshape`` of length other than 2, e.g. ``(C, H, W)``)
        the derivative is the gradient, shaped like the argument, in either layout: numerator layout (the
        Jacobian as a row) has no other meaning for an array that is not a matrix."""
        if tuple(fshape) == (1, 1) and len(xshape) != 2:
            return Dfull[0, 0]
        p, q = fshape
        m, n = xshape
        if (p, q) == (1, 1):
            G = Dfull[0, 0]
            return G if self.layout == "denominator" else G.T
        if (m, n) == (1, 1):
            return Dfull[:, :, 0, 0]
        order = "F" if self.vec == "column" else "C"
        rows = [np.arange(p * q).reshape(p, q, order=order)]
        cols = np.arange(m * n).reshape(m, n, order=order)
        J = np.empty((p * q, m * n), dtype=Dfull.dtype)
        for i in range(p):
            for j in range(q):
                for k in range(m):
                    for l in range(n):
                        J[rows[0][i, j], cols[k, l]] = Dfull[i, j, k, l]
        return J if self.layout == "numerator" else J.T


@dataclass(frozen=True)
class StatedCorrection:
    r"""A candidate correction stated with a claim (by its author or a catalogue): what may have gone wrong.

    Exactly one of ``term``, ``factor`` or ``formula`` is given, as a callable of the same arrays as
    the claim's function (``term(**arrays) -> ndarray``).  The judge tries it only when the claim
    fails, and names it only when the corrected derivative equals the truth on the judging
    instances *and* on fresh ones (new random values) -- a stated correction can never make a
    wrong diagnosis, at worst it is not named.

    * ``term``: a summand the claim may have dropped -- the correction is claim :math:`+` term
      (then claim :math:`-` term is tried too); diagnosis *missing term*;
    * ``factor``: a factor the claim may have dropped -- the correction is factor :math:`\odot`
      claim (a scalar, or an array broadcast elementwise); diagnosis *missing factor*;
    * ``formula``: the corrected derivative itself; its ``kind`` must be one of
      :data:`~jacobian_bp.claims.mistakes.KINDS`.

    Parameters
    ----------
    description : str
        What the correction restores, for the report (``"the mean term −(γ/σ)·ḡ"``).
    term, factor, formula : callable, optional
    kind : str, optional
        The diagnosis name; defaults to *missing term* / *missing factor*; required with ``formula``.
    latex : str
        LaTeX of the term or factor (``-\frac{\gamma}{\sigma}\bar g``).
    corrected : str
        LaTeX of the whole corrected formula (otherwise composed from the claim's LaTeX and ``latex``).
    """

    description: str
    term: Any = None
    factor: Any = None
    formula: Any = None
    kind: str | None = None
    latex: str = ""
    corrected: str = ""

    def __post_init__(self):
        given = [k for k in ("term", "factor", "formula") if getattr(self, k) is not None]
        if len(given) != 1:
            raise SpecError(f"stated correction {self.description!r}: give exactly one of term, factor or formula, "
                            f"received {', '.join(given) or 'none'}")
        if not callable(getattr(self, given[0])):
            raise SpecError(f"stated correction {self.description!r}: {given[0]} must be a callable of the claim's "
                            f"arrays, received {type(getattr(self, given[0])).__name__}")
        if self.formula is not None and not self.kind:
            raise SpecError(f"stated correction {self.description!r}: a corrected formula needs its kind "
                            f"(one of mistakes.KINDS)")

    @property
    def how(self) -> str:
        """``"term"``, ``"factor"`` or ``"formula"``."""
        return "term" if self.term is not None else ("factor" if self.factor is not None else "formula")


def _normalize_terms(name: str, terms) -> tuple:
    """``terms`` as a tuple of (name, callable, latex)."""
    if not terms:
        return ()
    items = list(terms.items()) if isinstance(terms, Mapping) else list(terms)
    out = []
    for it in items:
        if not isinstance(it, (tuple, list)) or len(it) not in (2, 3) or not isinstance(it[0], str) or not callable(it[1]):
            raise SpecError(f"derivative claim {name!r}: terms must be {{name: callable}} or (name, callable[, latex]) "
                            f"pairs, received {it!r}")
        out.append((it[0], it[1], str(it[2]) if len(it) == 3 else ""))
    if len(out) < 2:
        raise SpecError(f"derivative claim {name!r}: terms must list at least two summands, received {len(out)}")
    return tuple(out)


#: sample constraints a symbol may carry
CONSTRAINTS = ("generic", "positive", "symmetric", "spd", "simplex", "onehot", "simplex_rows", "onehot_rows",
               "unit_interval")


@dataclass
class DerivativeClaim:
    r"""A claimed derivative, with everything needed to derive the truth.

    Parameters
    ----------
    name : str
    function : Node or callable
        The function :math:`F` (after definitions are substituted), or ``f(**arrays) -> ndarray``.
    wrt : str
        The argument's symbol.
    claimed : Node or callable
        The stated derivative.
    layout : Layout
    shapes : dict
        Symbol -> shape (ints or dimension names); undeclared shapes are inferred.
    knobs : dict
        ``s`` (stride), ``p`` (padding), ``d`` (dilation), ``mode`` (``correlation`` or
        ``convolution``), ``k`` (pooling window), ``kinks`` ({function: derivative at the kink}).
    constraints : dict
        Symbol -> one of :data:`CONSTRAINTS` (``y`` a probability vector: ``"simplex"``).
    points : list of dict
        Extra points (symbol -> array) at which the claim is also judged (kinks, ties, symmetry).
    sizes : list of dict, optional
        Sizes of the named dimensions per instance (default: generated).
    later_use : Node, optional
        How the source uses the result later; if that is right and the claim is one edit away,
        the failure is labelled a probable transcription slip.
    source, latex : str
    instances, seed : int
        Number of generic instances (of different sizes) and the seed.
    sympy_check : bool
        Also differentiate symbolically with SymPy on the first instance (bounded, see
        :mod:`.sympy_check`), a third opinion next to the exact forward mode and float64.
    corrections : sequence of StatedCorrection
        Candidate corrections the author or a catalogue states for a NumPy claim (a term or a
        factor that may have been dropped, or a corrected formula of a named kind); tried, most
        specific first, before the judge's own numeric candidates, and named only when verified
        on fresh instances.  (For an expression claim the candidates come from the formula.)

    terms : dict or sequence, optional
        For a NumPy claim, its summands: ``{name: callable}`` or ``[(name, callable[, latex]), ...]``
        whose sum is the claimed derivative (checked).  With them the judge can also name a slip in
        *one* term: its sign, a constant factor on it, or a term that does not belong.

    Notes
    -----
    A NumPy claim's shapes are ints, or dimension names with ``sizes`` giving their values per
    instance (``shapes={"Q": ("T", "d_k")}``, ``sizes=[{"T": 3, "d_k": 4}, {"T": 2, "d_k": 9}]``):
    instances of several sizes let the judge name a wrong constant factor as an expression of the
    sizes (``1/√d_k``) instead of a number.
    """

    name: str
    function: Any
    wrt: str
    claimed: Any
    layout: Layout = field(default_factory=Layout)
    shapes: dict = field(default_factory=dict)
    knobs: dict = field(default_factory=dict)
    constraints: dict = field(default_factory=dict)
    points: list = field(default_factory=list)
    sizes: list | None = None
    later_use: Any = None
    source: str = ""
    latex: str = ""
    instances: int = 2
    seed: int = 0
    sympy_check: bool = False
    corrections: tuple = ()
    terms: Any = ()

    def __post_init__(self):
        self.terms = _normalize_terms(self.name, self.terms)
        if isinstance(self.corrections, StatedCorrection):
            self.corrections = (self.corrections,)
        try:
            self.corrections = tuple(self.corrections or ())
        except TypeError:
            raise SpecError(f"derivative claim {self.name!r}: corrections must be a sequence of StatedCorrection, "
                            f"received {type(self.corrections).__name__}") from None
        for c in self.corrections:
            if not isinstance(c, StatedCorrection):
                raise SpecError(f"derivative claim {self.name!r}: corrections must be StatedCorrection objects, "
                                f"received {type(c).__name__}")
        if not isinstance(self.wrt, str) or not self.wrt:
            raise SpecError(f"derivative claim {self.name!r}: wrt must be a symbol name, received {self.wrt!r}")
        for s, c in self.constraints.items():
            if c not in CONSTRAINTS:
                raise SpecError(f"derivative claim {self.name!r}: constraint of {s!r} must be one of "
                                f"{', '.join(CONSTRAINTS)}, received {c!r}")
        if not isinstance(self.function, Node) and not callable(self.function):
            raise SpecError(f"derivative claim {self.name!r}: the function must be an expression (Node) or a callable, "
                            f"received {type(self.function).__name__}")
        if not isinstance(self.claimed, Node) and not callable(self.claimed):
            raise SpecError(f"derivative claim {self.name!r}: the claimed derivative must be an expression (Node) or a "
                            f"callable, received {type(self.claimed).__name__}")
        if isinstance(self.function, Node):
            names = {n.attr("name") for _, n in walk(self.function) if n.op == "sym"}
            if self.wrt not in names:
                raise SpecError(f"derivative claim {self.name!r}: the function does not depend on {self.wrt!r} "
                                f"(its symbols: {', '.join(sorted(map(str, names))) or 'none'})")


@dataclass
class Instance:
    """One generic instance: exact values (Fractions) and shapes of every symbol, sizes of named dims."""

    env: dict
    dims: dict
    label: str = ""
    #: the sizes of the ones without a stated size on this instance (``id(node) -> (rows, cols)``, see
    #: :func:`~.formula_shapes.node_sizes`)
    nodes: dict = field(default_factory=dict)

    def dual_env(self) -> dict:
        return {k: np.vectorize(lambda v: Dual(v), otypes=[object])(a) for k, a in self.env.items()}

    def float_env(self) -> dict:
        return {k: np.vectorize(float, otypes=[float])(a) for k, a in self.env.items()}


def _rand_fracs(rng, k: int, positive: bool) -> list[Fraction]:
    """``k`` pairwise distinct, non-zero rationals with small denominators, away from 0 and 1."""
    pool = set()
    out = []
    while len(out) < k:
        den = int(rng.choice([3, 5, 7]))
        nu = int(rng.integers(1, 4 * den)) * (1 if positive or rng.random() < 0.5 else -1)
        f = Fraction(nu, den)
        if f in pool or abs(f) == 1:
            continue
        pool.add(f)
        out.append(f)
    return out


def _sample(rng, shape: tuple, constraint: str, symmetric_point: bool) -> np.ndarray:
    if len(shape) != 2:  # an array with channels (C, H, W), (O, C, kh, kw): generic exact fractions
        return np.array(_rand_fracs(rng, prod(shape), constraint == "positive"), dtype=object).reshape(shape)
    m, n = shape
    if constraint in ("simplex_rows", "onehot_rows"):
        return _sample(rng, (n, m), constraint[:-5], False).T.copy()
    if constraint == "simplex" or constraint == "onehot":
        # one probability vector (or one-hot vector) per column
        out = np.empty((m, n), dtype=object)
        for j in range(n):
            if constraint == "onehot":
                col = [Fraction(0)] * m
                col[int(rng.integers(0, m))] = Fraction(1)
            else:
                w = _rand_fracs(rng, m, True)
                col = [v / sum(w) for v in w]
            out[:, j] = col
        return out
    if constraint == "unit_interval":
        vals = [Fraction(int(v), 17) for v in rng.choice(np.arange(1, 17), size=m * n, replace=m * n > 16)]
        return np.array(vals, dtype=object).reshape(m, n)
    vals = _rand_fracs(rng, m * n, constraint in ("positive",))
    A = np.array(vals, dtype=object).reshape(m, n)
    if constraint == "spd" and m == n:
        A = A @ A.T + np.diag([Fraction(1)] * m).astype(object)
    elif (constraint == "symmetric" or symmetric_point) and m == n and m > 1:
        A = np.array([[A[min(i, j), max(i, j)] for j in range(n)] for i in range(m)], dtype=object)
    return A


def _assign_sizes(free: list, rng, cap_entries: int, shapes: dict, D: _Dims, wrt: str) -> dict:
    """Sizes for the free dimension classes: distinct (non-square) where possible, in 2..4."""
    for _ in range(50):
        pool = [2, 3, 4] if len(free) <= 3 else [2, 3, 4, 5, 6]
        vals = list(rng.permutation(pool))
        sizes = {d: int(vals[i % len(vals)]) for i, d in enumerate(free)}
        s = shapes.get(wrt, (1, 1))
        ent = 1
        for d in s:
            v = D.resolve(d)
            ent *= v if isinstance(v, int) else sizes.get(v, 1)
        if ent <= cap_entries:
            return sizes
    return {d: 2 for d in free}


def make_instances(claim: DerivativeClaim, shapes: dict, D: _Dims, names: set, *, count: int, seed: int,
                   symmetric_point: bool = False, cap_entries: int = 12) -> list[Instance]:
    """``count`` generic instances (different sizes and values); invertible where needed."""
    rng = np.random.default_rng(seed)
    free = sorted({D.resolve(d) for s in shapes.values() for d in s if not isinstance(D.resolve(d), int)} |
                  {D.resolve(nm) for nm in names if not isinstance(D.resolve(nm), int)}, key=str)
    out, used = [], []
    given = list(claim.sizes or [])
    for i in range(count):
        if i < len(given):
            sizes = {}
            for nm, v in given[i].items():
                r = D.resolve(nm)
                if not isinstance(r, int):
                    sizes[r] = int(v)
            for d in free:
                sizes.setdefault(d, 3)
        else:
            sizes = _assign_sizes(free, rng, cap_entries, shapes, D, claim.wrt)
            for _ in range(20):
                if not any(sizes == prev for prev in used):
                    break
                sizes = _assign_sizes(free, rng, cap_entries, shapes, D, claim.wrt)
        used.append(sizes)
        env = {}
        for name, s in shapes.items():
            shp = tuple(int(D.resolve(d)) if isinstance(D.resolve(d), int) else sizes[D.resolve(d)] for d in s)
            env[name] = _sample(rng, shp, claim.constraints.get(name, "generic"), symmetric_point)
        dims = {nm: (D.resolve(nm) if isinstance(D.resolve(nm), int) else sizes[D.resolve(nm)]) for nm in names}
        label = ", ".join(f"{k}: {'×'.join(map(str, a.shape))}" for k, a in sorted(env.items()))
        out.append(Instance(env, dims, label, node_sizes(D, sizes)))
    return out


def point_instance(claim: DerivativeClaim, point: Mapping[str, Any], shapes: dict, D: _Dims, names: set,
                   seed: int) -> Instance:
    """An instance at a user-given point: the given arrays, the other symbols sampled to fit."""
    from ..backend.exact import exact_number
    env, fixed_sizes = {}, {}
    for name, val in point.items():
        if name not in shapes:
            raise SpecError(f"points: {name!r} is not a symbol of the claim (symbols: {', '.join(sorted(shapes))})")
        a = np.asarray(val, dtype=object)
        if a.ndim == 0:
            a = a.reshape(1, 1)
        elif a.ndim == 1:
            a = a.reshape(-1, 1)
        conv = np.empty(a.shape, dtype=object)
        for idx in np.ndindex(*a.shape):
            e = exact_number(a[idx])
            p, q = e.as_numer_denom() if hasattr(e, "as_numer_denom") else (e, 1)
            conv[idx] = Fraction(int(p), int(q))
        env[name] = conv
        for d, v in zip(shapes[name], conv.shape):
            r = D.resolve(d)
            if isinstance(r, int):
                if r != v:
                    raise ShapeError(f"points: {name!r} must have a size {r} where it has {v}")
            else:
                fixed_sizes[r] = v
    rng = np.random.default_rng(seed)
    free = sorted({D.resolve(d) for s in shapes.values() for d in s if not isinstance(D.resolve(d), int)}, key=str)
    for d in free:
        fixed_sizes.setdefault(d, 3)
    for name, s in shapes.items():
        if name not in env:
            shp = tuple(int(D.resolve(d)) if isinstance(D.resolve(d), int) else fixed_sizes[D.resolve(d)] for d in s)
            env[name] = _sample(rng, shp, claim.constraints.get(name, "generic"), False)
    dims = {nm: (D.resolve(nm) if isinstance(D.resolve(nm), int) else fixed_sizes.get(D.resolve(nm), 3)) for nm in names}
    return Instance(env, dims, "given point", node_sizes(D, fixed_sizes))


# ============================================================================ the truth
def exact_truth(claim: DerivativeClaim, inst: Instance) -> tuple[np.ndarray, tuple]:
    """The exact derivative on one instance, arranged in the claim's layout.

    Forward-mode differentiation in exact arithmetic: one evaluation of the function per entry
    of the argument, with that entry's tangent set to 1.  Returns (derivative, shape of F).
    """
    Dfull, fshape = forward_derivative(claim.function, claim.wrt, inst, claim.knobs)
    return claim.layout.arrange(Dfull, fshape, inst.env[claim.wrt].shape), fshape


def forward_derivative(function: Node, wrt: str, inst: Instance, knobs: Mapping[str, Any]) -> tuple[np.ndarray, tuple]:
    r"""Every partial derivative :math:`\partial F_j / \partial X_i` of ``function`` at ``inst``, exactly.

    Forward mode with exact dual numbers: one evaluation per entry ``i`` of ``X = inst.env[wrt]``,
    that entry's tangent set to 1 and all others 0.  Returns ``(D, shape of F)`` with ``D`` of shape
    ``F.shape + X.shape`` (object array of exact numbers), in no layout yet.
    """
    X = inst.env[wrt]
    base = inst.dual_env()
    Dfull, fshape = None, None
    for idx in np.ndindex(*X.shape):
        Xd = base[wrt].copy()
        Xd[idx] = Dual(X[idx], Fraction(1))
        env = dict(base)
        env[wrt] = Xd
        F = evaluate(function, env, exact=True, knobs=knobs, dims=inst.dims, nodes=inst.nodes)
        if Dfull is None:
            fshape = F.shape
            Dfull = np.empty(F.shape + X.shape, dtype=object)
        for j in np.ndindex(*F.shape):
            Dfull[j + idx] = F[j].b
    return Dfull, fshape


def numeric_truth(claim: DerivativeClaim, inst: Instance) -> tuple[np.ndarray, str]:
    """The second opinion in float64: complex step (analytic functions) or central differences."""
    env = inst.float_env()
    X = env[claim.wrt]
    analytic = isinstance(claim.function, Node) and is_analytic(claim.function)

    def F(Xv):
        e = dict(env)
        e[claim.wrt] = Xv
        if isinstance(claim.function, Node):
            return evaluate(claim.function, e, exact=False, knobs=claim.knobs, dims=inst.dims, nodes=inst.nodes)
        return np.atleast_2d(np.asarray(claim.function(**e)))

    F0 = np.asarray(F(X))
    Dfull = np.empty(F0.shape + X.shape)
    for idx in np.ndindex(*X.shape):
        if analytic:
            h = 1e-30
            Xc = X.astype(complex)
            Xc[idx] += 1j * h
            Dfull[(Ellipsis,) + idx] = np.imag(F(Xc)) / h
        else:
            h = 1e-6 * max(1.0, abs(X[idx]))
            Xp, Xm = X.copy(), X.copy()
            Xp[idx] += h
            Xm[idx] -= h
            Dfull[(Ellipsis,) + idx] = np.real(F(Xp) - F(Xm)) / (2 * h)
    return claim.layout.arrange(Dfull, F0.shape, X.shape), ("complex step" if analytic else "central differences")


# ============================================================================ losses set by knobs
def loss_definition(loss: str, reduction: str = "mean", mse_scale=1, batch_axis: int = 1) -> tuple[Node, dict, dict]:
    r"""The loss ``L`` of predictions (logits) ``Z`` and targets ``Y`` set by knobs, as an expression.

    Parameters
    ----------
    loss : {"mse", "cross_entropy", "bce"}
        ``mse``: :math:`c\sum_{ij}(Z_{ij}-Y_{ij})^2`; ``cross_entropy``: :math:`-\sum Y\odot\log\operatorname{softmax}(Z)`
        (softmax over the class axis); ``bce``: :math:`-\sum Y\odot\log\sigma(Z) + (1-Y)\odot\log(1-\sigma(Z))`.
    reduction : {"sum", "mean", "mean_all"}
        Divide by 1, by the batch size ``N``, or by the number of entries ``N K`` (PyTorch's ``"mean"``
        for ``MSELoss``/``BCELoss``).
    mse_scale : number
        The factor :math:`c` of the MSE (``1/2`` for Nielsen's and Bishop's :math:`\tfrac12\|\cdot\|^2`).
    batch_axis : {0, 1}
        ``1``: ``Z`` and ``Y`` are ``K × N`` (samples are columns, Nielsen, Bishop); ``0``: ``N × K``
        (batch-first, PyTorch, CS231n).

    Returns
    -------
    (definition of L, shapes of Z and Y, constraints)
    """
    from ..backend.exact import exact_number
    if loss not in ("mse", "cross_entropy", "bce"):
        raise SpecError(f"setting: loss must be 'mse', 'cross_entropy' or 'bce', received {loss!r}")
    if reduction not in ("sum", "mean", "mean_all"):
        raise SpecError(f"setting: reduction must be 'sum', 'mean' or 'mean_all', received {reduction!r}")
    if batch_axis not in (0, 1) or isinstance(batch_axis, bool):
        raise SpecError(f"setting: batch_axis must be 0 (N × K) or 1 (K × N), received {batch_axis!r}")
    Z, Y = sym("Z"), sym("Y")
    if loss == "mse":
        e = exact_number(mse_scale)
        p, q = e.as_numer_denom()
        D = Node("sub", (Z, Y))
        body = Node("mul", (num(Fraction(int(p), int(q))), Node("sum", (Node("hadamard", (D, D)),))))
        cons = {}
    elif loss == "cross_entropy":
        S = Node("softmax", (Z,)) if batch_axis == 1 else Node("T", (Node("softmax", (Node("T", (Z,)),)),))
        body = Node("neg", (Node("sum", (Node("hadamard", (Y, Node("func", (S,), (("name", "log"),)))),)),))
        cons = {"Y": "onehot" if batch_axis == 1 else "onehot_rows"}
    else:
        s_ = Node("func", (Z,), (("name", "sigma"),))
        one = num(1)
        t1 = Node("hadamard", (Y, Node("func", (s_,), (("name", "log"),))))
        t2 = Node("hadamard", (Node("sub", (one, Y)), Node("func", (Node("sub", (one, s_)),), (("name", "log"),))))
        body = Node("neg", (Node("sum", (Node("add", (t1, t2)),)),))
        cons = {"Y": "unit_interval"}
    div = {"sum": None, "mean": sym("N"), "mean_all": Node("mul", (sym("N"), sym("K")))}[reduction]
    L = body if div is None else Node("div", (body, div))
    shape = ("K", "N") if batch_axis == 1 else ("N", "K")
    return L, {"Z": shape, "Y": shape}, cons
