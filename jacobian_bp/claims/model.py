"""The claim checker's vocabulary: verdicts, mistakes, settings, the three kinds of claim, results.

A :class:`Claim` states a network quantity (a key of :data:`~.targets.TARGETS`) as a formula of
:class:`~.quantities.Quantities`; an :class:`ExpressionClaim` compares two SymPy expressions; a
:class:`ListingClaim` is a printed code listing.  :func:`~.checker.check` returns a :class:`CheckResult`.
"""
from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from enum import Enum
from typing import Any, Callable, Sequence

import numpy as np
import sympy

from ..engine.conventions import Convention, get_convention
from ..errors import JacobianBPError, SpecError
from .targets import TARGETS, is_target


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
    ACT_AT_ACTIVATION = "derivative at the activation instead of the pre-activation"
    DOUBLE_DERIVATIVE = "σ′ counted twice"
    OTHER_ACTIVATION = "another activation's derivative"
    CHAIN_ORDER = "chain rule in the wrong order"
    SYMMETRY = "symmetry assumed"
    NORMALIZER = "wrong normalizer"
    ARGUMENT_SIGN = "sign inside the argument"
    QUANTITY = "wrong quantity"
    MISSING_TERM = "missing term"
    EXTRA_TERM = "extra term"
    MISSING_FACTOR = "missing factor"
    LAST_STEP_ONLY = "only the last step"
    TIME_INDEX = "wrong time index"
    KERNEL_FLIP = "kernel flipped vs not"
    STRIDE_IGNORED = "stride ignored"
    PADDING_FORGOTTEN = "padding forgotten"
    DILATION_IGNORED = "dilation ignored"
    MAX_AS_AVERAGE = "max taken as average"
    AVERAGE_AS_MAX = "average taken as max"
    KINK_CONVENTION = "kink convention"
    TIE_CONVENTION = "tie convention"
    CUSTOM = "stated correction"


#: the order in which explanations of one claim are listed: the most specific kind of mistake first
#: (σ_L for σ_l is an output-activation mistake before it is an index shift; W for Wᵀ with a square W is a
#: symmetry assumed before it is a transpose)
MISTAKE_PRIORITY = (Mistake.CUSTOM, Mistake.ACT_AT_ACTIVATION, Mistake.DOUBLE_DERIVATIVE, Mistake.OTHER_ACTIVATION,
                    Mistake.ARGUMENT_SIGN, Mistake.CHAIN_ORDER, Mistake.SYMMETRY, Mistake.OUTPUT_ACTIVATION,
                    Mistake.NORMALIZER, Mistake.SIGN, Mistake.TRANSPOSE, Mistake.FACTOR, Mistake.REDUCTION,
                    Mistake.INDEX_SHIFT, Mistake.QUANTITY, Mistake.KRONECKER, Mistake.WRONG_AXIS, Mistake.BLOCK_ORDER,
                    # the network-layer kinds (:mod:`.network_mistakes`), tried when none of the above fits
                    Mistake.KINK_CONVENTION, Mistake.TIE_CONVENTION, Mistake.KERNEL_FLIP, Mistake.STRIDE_IGNORED, Mistake.DILATION_IGNORED,
                    Mistake.PADDING_FORGOTTEN, Mistake.MAX_AS_AVERAGE, Mistake.AVERAGE_AS_MAX, Mistake.LAST_STEP_ONLY,
                    Mistake.TIME_INDEX, Mistake.MISSING_FACTOR, Mistake.MISSING_TERM, Mistake.EXTRA_TERM)

#: what :attr:`CheckResult.diagnosis_note` says when no candidate correction makes a failing claim hold
NO_KNOWN_MISTAKE = "no known mistake fits"


@dataclass(frozen=True)
class Explanation:
    """A correction that makes the claim hold on every instance: the mistake it corrects, and how."""

    mistake: Mistake
    description: str
    #: number of fresh instances (other seeds) on which the corrected formula was verified again
    verified: int = 0

    @property
    def kind(self) -> Mistake:
        """The former name of :attr:`mistake`."""
        return self.mistake

    def __str__(self) -> str:
        return f"{self.mistake.value}: {self.description}"


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


# =========================================================================== settings & claims
#: the convention knobs a :class:`Setting` sets directly (each overrides the preset's value)
KNOBS = ("weight_layout", "vec_order", "theta_order", "batch_axis", "reduction", "mse_scale", "mse_reduce_outputs",
         "relu_at_zero")


@dataclass(frozen=True)
class Setting:
    r"""The family of networks a claim is checked on.

    Conventions are set *by knob*: the preset named by ``convention`` is only a shorthand for a full
    set of knobs, and every knob given here overrides it.  CS231n's ``Z = XW + b`` (weights
    ``n_in × n_out``, batch first, mean) is ``Setting(None, weight_layout="in_out", reduction="mean")``;
    Nielsen's quadratic cost :math:`\tfrac12\|y-\hat y\|^2` summed over the batch is
    ``Setting(None, mse_scale=0.5)``; PyTorch's ``ReLU'(0) = 0`` is ``relu_at_zero=0``.

    Parameters
    ----------
    convention : str, Convention or None
        A preset (``damadi``, ``ganev``, ``park``, ``mml``, ``pytorch``) or a Convention: the knobs not
        given below.  ``None``: no preset -- every knob not given takes its neutral default
        (:math:`z = Wa + b`, rows stacked, θ forward, batch first, sum, MSE :math:`\|\hat y - y\|^2`,
        ReLU'(0) = 0), so that a textbook's conventions are stated knob by knob.
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
    weight_layout : {"out_in", "in_out"}, optional
        ``out_in``: :math:`z = Wa + b` (``W`` is ``n_l × n_{l-1}``); ``in_out``: :math:`z = W^\top a + b`,
        batches :math:`Z = XW + b` (CS231n, Damadi).
    vec_order : {"row", "col"}, optional
        How ``vec W`` stacks the user's matrix (rows or columns).
    theta_order : {"forward", "reverse", "weights_first"}, optional
        Order of the per-layer blocks of θ.
    batch_axis : {"first", "last"}, optional
        ``X`` is ``N × n`` (first) or ``n × N`` (last).
    reduction : {"sum", "mean"}, optional
        The batch cost sums or averages the per-sample losses.
    mse_scale : float, optional
        ``c`` in the per-sample MSE :math:`c\,\|\hat y - y\|^2` (½ for Nielsen, Park, MML).
    mse_reduce_outputs : {"sum", "mean"}, optional
        Whether the per-sample MSE also divides by the number of outputs ``K`` (PyTorch's ``MSELoss``).
    relu_at_zero : float, optional
        The value taken for ReLU'(0) (a kink convention: 0 in PyTorch, 1 in Park §3).
    at_kink : int
        When positive, the first ``at_kink`` units of every hidden layer (all but one unit at most)
        sit exactly *at the kink*: their pre-activation is 0 for every sample (their weight row and
        bias are 0), so that a claim about ReLU'(0) is tested at 0 and not only at random points.
    symbolic : tuple of int, optional
        Widths of a small architecture on which the claim is also checked exactly in SymPy.
    symbolic_hidden, symbolic_output : str
        Activations of that symbolic network: ``"generic"`` (an undefined function ``f_l``, the
        default: the claim must then hold for *every* activation), ``identity``, ``sigmoid``,
        ``tanh`` or ``softmax`` (needed for the closed-form deltas of matched pairs).
    min_depth : int
        Skip architectures with fewer layers.
    network : list, optional
        Any network instead of dense ``widths``: a list of layers -- spec entries (``{"type": "layer_norm"}``,
        :mod:`jacobian_bp.spec`) or :class:`~jacobian_bp.layers.base.Layer` objects -- or a spec dict with
        ``input`` and ``layers``.  ``widths`` is then ignored (set to ``()``); loss and knobs are the setting's.
        Layer ``l`` of a claim is the network's stage ``l`` (its ``l``-th parametric layer and the parameter-free
        layers after it); a claim reads the layer's parameters by their own names (``q.gamma[l]``, ``q.W_hh[l]``),
        its input and output (``q.inp[l]``, ``q.out[l]``, ``q.dout[l]``, batches ``q.Inp``, ``q.Out``, ``q.dOut``)
        and the intermediates it exposes (``q.xhat``, ``q.std``, ``q.P``, ``q.h``, ...), see
        :class:`~.instances._LayerNetData`; targets ``grad:<p>``, ``J_local:<p>``, ... name a parameter.
    input_shape : int or tuple of int, optional
        One sample's shape for ``network`` (``4``, ``(T, d)``, ``(C, H, W)``).
    points : list of dict, optional
        Given points judged besides the random instances (:mod:`.points`): ``x``, ``y``, parameters by name
        (user layout), ``label``, ``widths`` (which dense architecture).  A symmetric weight, ties in a pooling
        window, a pre-activation exactly 0 -- validated when the setting is made.

    Raises
    ------
    SpecError
        An unknown preset, loss or knob value, an empty or invalid architecture, a network that cannot be built,
        a point that does not fit (one line naming the point and the key).
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
    weight_layout: str | None = None
    vec_order: str | None = None
    theta_order: str | None = None
    batch_axis: str | None = None
    mse_reduce_outputs: str | None = None
    relu_at_zero: float | None = None
    at_kink: int = 0
    network: Any = None
    input_shape: Any = None
    points: Any = ()

    def __post_init__(self):
        if self.convention is not None:
            get_convention(self.convention)  # raises SpecError for an unknown preset
        if self.loss not in ("mse", "bce", "cross_entropy"):
            raise SpecError(f"setting: loss must be 'mse', 'bce' or 'cross_entropy', received {self.loss!r}")
        if self.network is not None:
            from .layer_networks import freeze_network

            net, shape = freeze_network(self.network, self.input_shape)
            object.__setattr__(self, "network", net)
            object.__setattr__(self, "input_shape", shape)
            object.__setattr__(self, "widths", ())  # the architecture is the network's
            if self.symbolic:
                raise SpecError("setting: symbolic=... checks dense networks only; a setting with network=... is numeric")
            if self.at_kink:
                raise SpecError("setting: at_kink applies to dense networks (widths=...); state a kink with points=... "
                                "for a network=... setting")
        elif self.input_shape is not None:
            raise SpecError(f"setting: input_shape={self.input_shape!r} is given without network=...; widths' first "
                            "entry is the input width of a dense network")
        if not self.widths and not self.symbolic and self.network is None:
            raise SpecError("setting: give numeric architectures (widths), a network (network=[...], input_shape=...) "
                            "or a symbolic architecture (symbolic=...)")
        for w in self.widths:
            if len(w) < 2 or any((not isinstance(n, (int, np.integer))) or n < 1 for n in w):
                raise SpecError(f"setting: each architecture is (n_0, ..., n_L) with L >= 1 positive widths, received {w!r}")
        if isinstance(self.batch, (tuple, list)) and len(self.batch) != len(self.seeds):
            raise SpecError(f"setting: one batch size per seed expected ({len(self.seeds)} seeds), received {self.batch!r}")
        if not self.seeds:
            raise SpecError("setting: at least one seed is needed")
        if isinstance(self.at_kink, (bool, np.bool_)) or not isinstance(self.at_kink, (int, np.integer)) \
                or self.at_kink < 0:
            raise SpecError(f"setting: at_kink must be a number of units >= 0, received {self.at_kink!r}")
        self.conv()  # every knob validated now (SpecError naming the knob)
        if self.network is not None:
            from .layer_networks import check_network_setting

            check_network_setting(self)
        if self.points is None or (isinstance(self.points, tuple) and not self.points):
            object.__setattr__(self, "points", ())
        else:
            from .points import freeze_points

            object.__setattr__(self, "points", freeze_points(self))

    def conv(self) -> Convention:
        """The convention: the preset with every knob given on this setting applied."""
        c = Convention("knobs") if self.convention is None else get_convention(self.convention)
        ch = {}
        for knob in KNOBS:
            v = getattr(self, knob)
            if v is None:
                continue
            if knob in ("mse_scale", "relu_at_zero"):
                from ..backend.exact import real_number

                v = real_number(v, f"setting: {knob}")
            ch[knob] = v
        c = c.replace(**ch) if ch else c
        if c.reduction not in ("sum", "mean"):
            raise SpecError(f"setting: the claim checker reduces by 'sum' or 'mean', received reduction {c.reduction!r}")
        return c

    def describe(self) -> str:
        b = self.batch if isinstance(self.batch, int) else "/".join(map(str, self.batch))
        c = self.conv()
        kink = f"; {self.at_kink} unit(s) per layer at the kink" if self.at_kink else ""
        kink += f"; {len(self.points)} given point(s)" if self.points else ""
        if self.network is not None:
            from .layer_networks import describe_network

            return (f"{c.name} convention (W {c.weight_layout}, batch {c.batch_axis}, {c.reduction}); loss {self.loss}; "
                    f"network {describe_network(self)}; N = {b}{kink}")
        return (f"{c.name} convention (W {c.weight_layout}, batch {c.batch_axis}, {c.reduction}, MSE scale "
                f"{c.mse_scale:g}{' / K' if c.mse_reduce_outputs == 'mean' else ''}, ReLU'(0) = {c.relu_at_zero:g}); "
                f"hidden {self.hidden}, output {self.output}, loss {self.loss}; "
                f"widths {', '.join('-'.join(map(str, w)) for w in self.widths if len(w) - 1 >= self.min_depth)}; "
                f"N = {b}{kink}")


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
        For ``states="shape"`` it returns a shape tuple.
    target : str
        Key of :data:`TARGETS` (``grad_W``, ``grad_b``, ``delta``, ``J_theta_l``, ``z``, ...).
    setting : Setting
    layers : str or callable
        ``"all"`` (1..L), ``"hidden"`` (1..L-1), ``"last"``, ``"from2"``, ``"all0"``, ``"inputs"``
        (0..L-1), ``"none"``, or a function ``L -> iterable``.
    states : {"value", "shape"}
        What the formula states about the target: its value, or (a dimension statement) its shape,
        compared with the target's shape.
    kind : {"value", "shape"}, optional
        The former name of ``states`` (still accepted; ``claim.kind`` reads ``claim.states``).
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
    states: str = "value"
    corrections: tuple = ()
    form: str = "as_is"
    target_offset: int = 0
    description: str = ""
    kind: InitVar[str | None] = None  # the former name of ``states``; read back by the property below

    def __post_init__(self, kind: str | None = None):
        if kind is not None:
            if self.states not in ("value", kind):
                raise SpecError(f"claim {self.name!r}: states={self.states!r} and kind={kind!r} disagree "
                                "(kind is the former name of states)")
            self.states = kind
        if not callable(self.formula):
            raise SpecError(f"claim {self.name!r}: formula must be callable, received {type(self.formula).__name__}")
        if not is_target(self.target):
            raise SpecError(f"claim {self.name!r}: unknown target {self.target!r}; known: {', '.join(sorted(TARGETS))} "
                            f"(<p>: a parameter's name, e.g. grad:gamma)")
        if self.states not in ("value", "shape"):
            raise SpecError(f"claim {self.name!r}: states (formerly kind) must be 'value' or 'shape', "
                            f"received {self.states!r}")
        if self.form not in ("as_is", "T"):
            raise SpecError(f"claim {self.name!r}: form must be 'as_is' or 'T', received {self.form!r}")
        self.layers = _validate_layers(self.name, self.layers)

    @classmethod
    def from_sympy(cls, name: str, expr, target: str, setting: "Setting", layers: Any = "none", **kw) -> "Claim":
        """A claim stated as a fixed SymPy expression in the symbols of :func:`symbolic_quantities`
        (``x_i``, ``y_i``, ``w^{[l]}_{ij}``, ``b^{[l]}_i``, undefined ``f_l``); checked exactly, on the
        setting's symbolic architecture only."""
        if not setting.symbolic:
            raise SpecError(f"claim {name!r}: a SymPy claim needs Setting(symbolic=(n_0, ..., n_L))")
        if isinstance(expr, np.ndarray) and expr.dtype == object and expr.ndim in (1, 2):
            expr = sympy.Matrix(np.asarray(expr).view(np.ndarray).tolist())  # built from symbolic quantities
        if not isinstance(expr, (sympy.Basic, sympy.MatrixBase)):
            raise SpecError(f"claim {name!r}: expected a SymPy expression or matrix, received {type(expr).__name__}")
        from dataclasses import replace as _replace

        f = (lambda q: expr) if layers == "none" else (lambda q, l: expr)
        return cls(name, f, target, _replace(setting, widths=()), layers=layers, **kw)

    def layer_range(self, L: int) -> list:
        """The layers the claim is checked at on a network with ``L`` layers (explicit indices the
        network lacks are left out; :func:`~.checker.check` raises ``DataError`` when no network has any)."""
        if isinstance(self.layers, tuple):
            return [k for k in self.layers if k <= L]
        f = self.layers if callable(self.layers) else LAYER_SETS[self.layers]
        return list(f(L))


def _validate_layers(name: str, layers):
    """A layer set by name, a callable ``L -> indices``, or explicit stage indices (a list or tuple of
    integers ``>= 0``, returned as a sorted tuple without repeats)."""
    if callable(layers):
        return layers
    if isinstance(layers, str):
        if layers not in LAYER_SETS:
            raise SpecError(f"claim {name!r}: layers must be one of {sorted(LAYER_SETS)}, a list of layer indices "
                            f"or callable, received {layers!r}")
        return layers
    if isinstance(layers, (list, tuple, range)):
        ks = list(layers)
        if not ks:
            raise SpecError(f"claim {name!r}: layers is an empty list; give at least one layer index")
        for k in ks:
            if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 0:
                raise SpecError(f"claim {name!r}: layers must hold layer indices (integers >= 0), received {k!r} "
                                f"in {list(layers)!r}")
        return tuple(sorted({int(k) for k in ks}))
    raise SpecError(f"claim {name!r}: layers must be one of {sorted(LAYER_SETS)}, a list of layer indices or callable, "
                    f"received {type(layers).__name__} {layers!r}")


# ``Claim(..., kind=...)`` is accepted (the InitVar above); ``claim.kind`` reads :attr:`Claim.states`.
# Set after the class body: inside it, the property would become the InitVar's default.
Claim.kind = property(lambda self: self.states, doc="The former name of :attr:`states` (read-only).")


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
    #: the label of the given point (``Setting(points=...)``) this counterexample is, None for a random instance
    point: str | None = None

    def to_text(self) -> str:
        arch = "-".join(map(str, self.widths)) if self.widths else "—"
        lay = "" if self.layer is None else f", l = {self.layer}"
        where = f"point {self.point!r}" if self.point is not None else f"seed {self.seed}"
        s = f"widths {arch}, {where}, N = {self.N}{lay}: {self.reason}"
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
    #: what the diagnosis found besides its explanations (``"no known mistake fits"`` when none did)
    diagnosis_note: str = ""

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
            elif self.diagnosis_note:
                s += f"; diagnosis: {self.diagnosis_note}"
        return s

    def __repr__(self) -> str:
        return f"CheckResult({self.summary()})"
