r"""Conventions: every knob on which the four source documents differ, as first-class data.

=================  ================  ===============  ===============  ================  ================
knob               ``damadi``        ``ganev``        ``park``         ``mml``           ``pytorch``
=================  ================  ===============  ===============  ================  ================
weight layout      ``in_out``:       ``out_in``:      ``out_in``       ``out_in``        ``out_in``
                   z = Wᵀa + b       z = Wa + b
vec of W           columns stacked   rows stacked     rows stacked     columns stacked   rows stacked
θ order            [L, ..., 1]       all W, all b     per layer        per layer         per layer
batch axis         first             first (§4)       last (n×N)       first             first
reduction          sum               sum              mean (1/N)       sum               mean (1/N)
MSE per sample     ‖y−ŷ‖²            ‖y−ŷ‖²           ½‖y−ŷ‖²          ½‖y−ŷ‖²           mean over outputs
ReLU'(0)           0                 0                1 (Park §3)      0                 0
=================  ================  ===============  ===============  ================  ================

Sources: Damadi §3.1 ("stacking each column of W on top of each other", ``z = Wᵀx + b``,
θ blocks ``[J_{W[L],b[L]} … J_{W[1],b[1]}]`` of Alg. 1 line 7, MSE ``‖y−ŷ‖²`` of Table 1);
Ganev §2 (``W_ℓ ∈ R^{n_ℓ×n_{ℓ-1}}``), §4.1 (batch-first ``X ∈ R^{N×n_0}``), Prop. 4.1 (sum);
Park eq. (1), Python code 1 (``X`` of shape ``(n, N)``, ``dZ = 1/N (A − y)``, cost
``/(2N)``), §3 (``relu'(0) = 1``); MML §5.4 (column-major vec); PyTorch ``nn.Linear``
(``weight`` is out×in, flattened row-major) and ``MSELoss``/``CrossEntropyLoss``
(``reduction="mean"``).

PyTorch's own default ``reduction="mean"`` averages ``MSELoss`` and ``BCELoss`` over all ``N·n_L``
elements and ``CrossEntropyLoss`` over the ``N`` samples.  The ``pytorch`` preset reproduces
``MSELoss()`` (per-sample MSE averaged over the outputs, then the batch mean) and
``CrossEntropyLoss()``; for ``BCELoss()`` with ``n_L > 1`` outputs it is ``n_L`` times larger (the
batch mean of per-sample sums).  ``replace(reduction="mean_elements")`` gives all three exactly
(:func:`reduction_factor`).

Internally the engine keeps every weight in the *canonical* layout ``out×in``.  For a
Dense weight, the user-facing ``vec`` corresponds to a row-major (``"C"``) or a
column-major (``"F"``) flattening of the canonical matrix:
``in_out`` + columns stacked = canonical rows stacked (Damadi's ``I ⊗ aᵀ``), and so on
(:meth:`Convention.canonical_order`).  The two flattenings of an ``m×n`` matrix are
related by the commutation matrix :func:`commutation_matrix`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from ..errors import DataError, SpecError

#: the allowed values of every choice knob of a :class:`Convention` (field name → its allowed values);
#: the JSON schema of specs (:func:`jacobian_bp.spec.spec_schema`) and the validation read it
CONVENTION_CHOICES: dict[str, tuple[str, ...]] = {
    "weight_layout": ("out_in", "in_out"),
    "vec_order": ("row", "col"),
    "theta_order": ("forward", "reverse", "weights_first"),
    "batch_axis": ("first", "last"),
    "reduction": ("sum", "mean", "mean_elements"),
    "mse_reduce_outputs": ("sum", "mean"),
    "gradient_form": ("column", "row"),
}

#: the names a convention's ``notation`` may take: the five documents' notations, and every notation
#: registered since (:func:`register_notation_name`; :func:`jacobian_bp.render.notation.register_notation`
#: registers a :class:`~jacobian_bp.render.notation.Notation` here and in the renderer's table)
NOTATION_NAMES: list[str] = ["damadi", "ganev", "park", "mml", "pytorch"]


#: the notation objects by name, installed by :mod:`jacobian_bp.render.notation` when it is imported (the package
#: imports it): floors below ``render`` (the SymPy block chain) reach a network's notation through
#: :func:`resolve_notation` without importing a floor above them
INSTALLED_NOTATIONS: dict[str, object] = {}


def install_notation(notation) -> None:
    """Record a notation object under its name (called by the render floor for every preset and registration)."""
    INSTALLED_NOTATIONS[notation.name] = notation
    register_notation_name(notation.name)


def resolve_notation(obj):
    """The notation object for a name, a Notation, a Convention or a Network (their convention's ``notation``);
    None when it is not installed (the render floor not imported) or ``obj`` names none."""
    for _ in range(3):
        if obj is None:
            return None
        if isinstance(getattr(obj, "name", None), str) and callable(getattr(obj, "vec", None)):
            return obj
        if isinstance(obj, str):
            return INSTALLED_NOTATIONS.get(obj)
        obj = getattr(obj, "convention", None) or getattr(obj, "notation", None)
    return None


def register_notation_name(name: str) -> str:
    """Make ``name`` a valid ``Convention.notation`` (idempotent); returns it.

    The engine keeps only the names; the symbols live on the render floor
    (:func:`jacobian_bp.render.notation.register_notation` calls this)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError(f"register_notation_name: a notation name is an identifier, received {name!r}")
    if name not in NOTATION_NAMES:
        NOTATION_NAMES.append(name)
    return name


@dataclass(frozen=True)
class Convention:
    """One complete set of conventions.  Use a preset (:data:`PRESETS`) or :meth:`replace`.

    Attributes
    ----------
    name : str
    weight_layout : {"out_in", "in_out"}
        ``out_in``: :math:`\\mathbf z = \\mathbf W\\mathbf a + \\mathbf b`, ``W`` is ``n_out × n_in``;
        ``in_out``: :math:`\\mathbf z = \\mathbf W^\\top \\mathbf a + \\mathbf b` (Damadi).
    vec_order : {"row", "col"}
        How the user-facing weight (in its layout) is flattened into θ.
    theta_order : {"forward", "reverse", "weights_first"}
        ``forward``: ``[W1, b1, W2, b2, …]``; ``reverse``: ``[WL, bL, …, W1, b1]``
        (Damadi Alg. 1 line 7); ``weights_first``: ``[W1, …, WL, b1, …, bL]`` (Ganev's Param).
    batch_axis : {"first", "last"}
        Where the sample index sits in ``X``, ``Y`` (``N×n`` or ``n×N``).
    reduction : {"sum", "mean", "mean_elements"}
        Batch loss is the sum or the mean of per-sample losses; ``mean_elements`` is PyTorch's default
        ``reduction="mean"`` of each loss: the mean over all ``N·n_L`` elements for a loss whose
        per-sample value sums over the outputs (``BCELoss``; ``MSELoss`` when the per-sample MSE sums,
        ``mse_reduce_outputs="sum"``) and the mean over the ``N`` samples for the others
        (``CrossEntropyLoss``, whose per-sample value is already one number per sample; an MSE that
        already averages its outputs).  See :func:`reduction_factor`.
    mse_scale : float
        ``c`` in the per-sample MSE :math:`c\\,\\|\\mathbf y-\\hat{\\mathbf y}\\|^2`.
    mse_reduce_outputs : {"sum", "mean"}
        Whether the per-sample MSE also divides by the number of outputs (PyTorch).
    relu_at_zero : float
        The ReLU subgradient used at 0.
    gradient_form : {"column", "row"}
        Whether a gradient is reported as a column (∇ = Jᵀ) or as a row (MML's convention).
    notation : str or Notation
        Which notation the LaTeX renderer uses: a name in :data:`NOTATION_NAMES` (the five documents'
        and any registered one) or a :class:`~jacobian_bp.render.notation.Notation` value itself.
    """

    name: str
    weight_layout: str = "out_in"
    vec_order: str = "row"
    theta_order: str = "forward"
    batch_axis: str = "first"
    reduction: str = "sum"
    mse_scale: float = 1.0
    mse_reduce_outputs: str = "sum"
    relu_at_zero: float = 0.0
    gradient_form: str = "column"
    notation: str = "pytorch"
    source: str = ""

    def __post_init__(self):
        for field in ("name", "source"):
            if not isinstance(getattr(self, field), str):
                raise SpecError(f"convention: {field} must be a string, received {getattr(self, field)!r}")
        for field in ("mse_scale", "relu_at_zero"):
            v = getattr(self, field)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise SpecError(f"convention {self.name!r}: {field} must be a real number, received {v!r}")
        for field, allowed in CONVENTION_CHOICES.items():
            v = getattr(self, field)
            if v not in allowed:
                raise SpecError(f"convention {self.name!r}: {field} must be one of {allowed}, received {v!r}")
        nt = self.notation
        if isinstance(nt, str):
            if nt not in NOTATION_NAMES:
                raise SpecError(f"convention {self.name!r}: notation must be one of {tuple(NOTATION_NAMES)} (or a name "
                                f"registered with register_notation), received {nt!r}")
        elif not (isinstance(getattr(nt, "name", None), str) and callable(getattr(nt, "vec", None))):
            raise SpecError(f"convention {self.name!r}: notation must be a registered notation name or a Notation, "
                            f"received {type(nt).__name__}")
        if not (self.mse_scale > 0 and np.isfinite(self.mse_scale)):
            raise SpecError(f"convention {self.name!r}: mse_scale must be positive, received {self.mse_scale!r}")
        if not (0.0 <= self.relu_at_zero <= 1.0):
            raise SpecError(f"convention {self.name!r}: relu_at_zero must lie in [0, 1], received {self.relu_at_zero!r}")

    def replace(self, **changes) -> "Convention":
        """A copy with some knobs changed (unknown knobs raise ``SpecError``)."""
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise SpecError(f"unknown convention knob(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    def canonical_order(self, is_dense_weight: bool) -> str:
        """Flattening order ("C"/"F") of the *canonical* parameter that gives the user's vec.

        ``is_dense_weight``: the parameter is one the weight layout transposes (the layer says which:
        a Dense weight, also inside a residual block).  Stored ``in_out``, the user's matrix is the
        transpose of the canonical one, so stacking its columns is stacking the canonical rows.
        """
        user = "C" if self.vec_order == "row" else "F"
        if is_dense_weight and self.weight_layout == "in_out":
            return "F" if user == "C" else "C"
        return user

    def to_user(self, value: np.ndarray, is_dense_weight: bool) -> np.ndarray:
        """Canonical parameter (``out×in`` for a weight) to the user's layout (``is_dense_weight``: see :meth:`canonical_order`)."""
        return value.T if (is_dense_weight and self.weight_layout == "in_out") else value

    def from_user(self, value: np.ndarray, is_dense_weight: bool) -> np.ndarray:
        return value.T if (is_dense_weight and self.weight_layout == "in_out") else value

    def describe(self) -> str:
        return (f"{self.name}: W layout {self.weight_layout}, vec {self.vec_order}-stacked, θ {self.theta_order}, "
                f"batch {self.batch_axis}, reduction {self.reduction}, MSE scale {self.mse_scale:g}"
                f"{' / n_out' if self.mse_reduce_outputs == 'mean' else ''}, relu'(0)={self.relu_at_zero:g}")


PRESETS: dict[str, Convention] = {
    "damadi": Convention("damadi", weight_layout="in_out", vec_order="col", theta_order="reverse",
                         batch_axis="first", reduction="sum", mse_scale=1.0, relu_at_zero=0.0,
                         notation="damadi", source="Damadi, Moharrer, Cham §3.1, Alg. 1, Table 1"),
    "ganev": Convention("ganev", weight_layout="out_in", vec_order="row", theta_order="weights_first",
                        batch_axis="first", reduction="sum", mse_scale=1.0, relu_at_zero=0.0,
                        notation="ganev", source="Ganev §2, §4 (batch size first), Prop. 4.1"),
    "park": Convention("park", weight_layout="out_in", vec_order="row", theta_order="forward",
                       batch_axis="last", reduction="mean", mse_scale=0.5, relu_at_zero=1.0,
                       notation="park", source="Park eq. (1), §3, Thm. 5.4, Python code 1"),
    "mml": Convention("mml", weight_layout="out_in", vec_order="col", theta_order="forward",
                      batch_axis="first", reduction="sum", mse_scale=0.5, relu_at_zero=0.0,
                      gradient_form="row", notation="mml", source="MML ch. 5 / CSE463 slides"),
    "pytorch": Convention("pytorch", weight_layout="out_in", vec_order="row", theta_order="forward",
                          batch_axis="first", reduction="mean", mse_scale=1.0, mse_reduce_outputs="mean",
                          relu_at_zero=0.0, notation="pytorch", source="torch.nn.Linear, MSELoss, CrossEntropyLoss"),
}


def _sums_over_outputs(loss) -> bool:
    """Whether the loss's per-sample value is a sum over the ``n_L`` outputs (which PyTorch's element
    mean divides by ``n_L``).  Asks the loss (``loss.sums_over_outputs``); until every loss says it, the
    facts of today's losses: BCE sums, cross entropy does not, MSE sums unless it averages its outputs."""
    says = getattr(loss, "sums_over_outputs", None)
    if isinstance(says, bool):
        return says
    from ..layers.losses import BCE, MSE

    if isinstance(loss, MSE):
        return loss.reduce_outputs == "sum"
    return isinstance(loss, BCE)


def reduction_factor(convention: Convention, loss, n_samples: int, n_out: int) -> float:
    r"""The factor :math:`r` of the batch loss :math:`r\sum_i\ell_i` (and of its gradient).

    ``sum``: 1; ``mean``: :math:`1/N`; ``mean_elements`` (PyTorch's default mean): :math:`1/(N n_L)` when
    the per-sample loss sums over the outputs (BCE, an MSE that sums), :math:`1/N` otherwise.
    """
    if convention.reduction == "sum":
        return 1.0
    if convention.reduction == "mean_elements" and _sums_over_outputs(loss):
        return 1.0 / (n_samples * n_out)
    return 1.0 / n_samples


def get_convention(conv: "str | Convention") -> Convention:
    """A preset by name, or the :class:`Convention` itself."""
    if isinstance(conv, Convention):
        return conv
    if isinstance(conv, str) and conv in PRESETS:
        return PRESETS[conv]
    raise SpecError(f"unknown convention {conv!r}; presets: {', '.join(PRESETS)}")


def commutation_matrix(m: int, n: int) -> sp.csr_array:
    r"""The commutation matrix :math:`\mathbf K_{m,n}` with
    :math:`\mathbf K_{m,n}\operatorname{vec}_c(\mathbf A) = \operatorname{vec}_c(\mathbf A^\top)` for
    :math:`\mathbf A\in\mathbb R^{m\times n}`.

    Since :math:`\operatorname{vec}_c(\mathbf A^\top) = \operatorname{vec}_r(\mathbf A)`, it maps the
    column-stacked vec to the row-stacked one; and
    :math:`\mathbf K_{m,n}(\mathbf a^\top\otimes\mathbf I_m) = \mathbf I_m\otimes\mathbf a^\top`
    ... in Jacobian form: :math:`\mathbf J_{\operatorname{vec}_r}= \mathbf J_{\operatorname{vec}_c}\mathbf K_{m,n}^\top`.
    """
    if m < 0 or n < 0:
        raise DataError(f"commutation_matrix: sizes must be >= 0, received ({m}, {n})")
    idx = np.arange(m * n).reshape(m, n, order="F")  # idx[i, j] = position of A[i,j] in vec_c
    perm = idx.ravel(order="C")  # row r of K picks vec_c entry perm[r]
    return sp.csr_array((np.ones(m * n), (np.arange(m * n), perm)), shape=(m * n, m * n))
