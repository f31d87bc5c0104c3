r"""Losses :math:`\ell(\mathbf y, \hat{\mathbf y})` per sample, their gradients, and the matched-pair deltas.

For the canonical pairs of last activation and loss (Damadi Table 1, Park Thm. 6.1),
the gradient with respect to the last pre-activation has a closed form, computed here
stably from the logits :math:`\mathbf z^{[L]}`:

=============  ==========  ===============================================  ===========================
activation     loss        :math:`\ell`                                     :math:`\nabla_{\mathbf z^{[L]}}\ell`
=============  ==========  ===============================================  ===========================
sigmoid        BCE         :math:`-\sum y\log\hat y + (1-y)\log(1-\hat y)`     :math:`\hat{\mathbf y}-\mathbf y`
softmax        CE          :math:`-\sum_i y_i \log \hat y_i`                 :math:`\hat{\mathbf y}-\mathbf y` (y a distribution)
identity       MSE         :math:`c\,\|\mathbf y-\hat{\mathbf y}\|^2`          :math:`2c(\hat{\mathbf y}-\mathbf y)`
=============  ==========  ===============================================  ===========================

``c`` is the convention's MSE scale: 1 for Damadi (so :math:`-2(\mathbf y - \hat{\mathbf y})`),
½ for Park and MML.  Arrays are batch-first, ``(N, n)``; values are per sample ``(N,)``;
the network applies the reduction (sum or mean over the batch).

PyTorch habits: :class:`CrossEntropyLogits` (``"cross_entropy_logits"``/``"ce_logits"``,
``CrossEntropy(from_logits=True)``, ``nn.CrossEntropyLoss``) and :class:`BCEWithLogits` (``"bce_logits"``,
``BCE(from_logits=True)``, ``nn.BCEWithLogitsLoss``) take the logits, with no Softmax/Sigmoid layer;
cross entropy takes integer class labels ``(N,)`` as well as one-hot rows (:meth:`Loss.as_targets`);
``MSE()`` left unstated follows the convention it is bound to (:meth:`MSE.bind_convention`), and every
loss says what it computes (``repr``).

Constructor arguments are validated when the loss is made (``scale`` a finite positive
real number, ``reduce_outputs`` the string ``"sum"`` or ``"mean"``; strings are never
parsed as numbers).  Every numeric result (value, gradient, delta) is checked: a loss that
is infinite or a gradient that is not finite -- e.g. an unmatched sigmoid + cross entropy
whose saturated prediction is exactly 0 where the target is 1 -- raises
:class:`~jacobian_bp.errors.DataError` naming the loss and the cause instead of returning
NaN/Inf silently (:meth:`Loss.check_finite`).
"""
from __future__ import annotations

import copy

import numpy as np
from scipy.special import expit, log_softmax, softmax

from ..errors import DataError, SpecError
from ..backend.exact import real_number
from .loss_base import LOSSES, Loss, _MATCH_HINT, register_loss  # noqa: F401  (importable from here, as before)

_ZL_NOT_FINITE = "the logits z[L] are not finite (the forward pass overflowed)"
_ZL_OVERFLOW = _ZL_NOT_FINITE + "; scale the inputs/parameters down"


def _softmax_ce(Y, Z) -> np.ndarray:
    r""":math:`-\sum_i y_i\log\operatorname{softmax}(\mathbf z)_i` per row, with ``log_softmax`` (stable)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return -np.sum(Y * log_softmax(Z, axis=-1), axis=-1)


def _softmax_ce_grad(Y, Z) -> np.ndarray:
    r""":math:`\nabla_{\mathbf z} = (\sum_i y_i)\operatorname{softmax}(\mathbf z) - \mathbf y` per row; float64: in one
    buffer, the operations of ``scipy.special.softmax`` (bit for bit, without its dispatch overhead)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if type(Z) is np.ndarray and type(Y) is np.ndarray and Z.dtype == np.float64 and Y.dtype == np.float64:
            E = Z - Z.max(axis=-1, keepdims=True)
            np.exp(E, out=E)
            np.divide(E, E.sum(axis=-1, keepdims=True), out=E)
            E *= Y.sum(axis=-1, keepdims=True)
            E -= Y
            return E
        return softmax(Z, axis=-1) * Y.sum(axis=-1, keepdims=True) - Y


def _softmax_ce_hessian(Y, Z) -> np.ndarray:
    r""":math:`(\sum_i y_i)(\operatorname{diag}\mathbf s - \mathbf s\mathbf s^\top)`, :math:`\mathbf s = \operatorname{softmax}(\mathbf z)`, ``(N, n, n)``."""
    S = softmax(Z, axis=-1)
    w = Y.sum(axis=-1)
    return w[:, None, None] * (np.einsum("ni,ij->nij", S, np.eye(Z.shape[-1])) - np.einsum("ni,nj->nij", S, S))


def _bce_logits(Y, Z) -> np.ndarray:
    r""":math:`\sum_i \log(1+e^{z_i}) - y_i z_i` per row (``logaddexp``, stable)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.sum(np.logaddexp(0.0, Z) - Y * Z, axis=-1)


class _LogitsTwin:
    """Mixin of a loss on probabilities with a logits form: ``Cls(from_logits=True)`` builds the loss registered as
    the class's ``_logits_name`` (``BCE`` -> :class:`BCEWithLogits`, ``CrossEntropy`` -> :class:`CrossEntropyLogits`)."""

    _logits_name = ""

    def __new__(cls, from_logits: bool = False):
        if not isinstance(from_logits, (bool, np.bool_)):
            raise SpecError(f"{cls.kind} loss: from_logits must be a boolean, received {from_logits!r}")
        if from_logits and "_logits_name" in cls.__dict__:  # the class itself, not a subclass
            return LOSSES[cls._logits_name]()
        return super().__new__(cls)

    def __init__(self, from_logits: bool = False):
        pass


class _BinaryTargets:
    r"""Mixin of the binary cross entropies (:class:`BCE`, :class:`BCEWithLogits`): targets in [0, 1], summed over the
    outputs, Hessian in the logits :math:`\operatorname{diag}\sigma(1-\sigma)`."""

    sums_over_outputs = True

    def check_targets(self, Y, Yhat_shape):
        super().check_targets(Y, Yhat_shape)
        Y = np.asarray(Y)
        if np.any((Y < 0) | (Y > 1)):
            raise DataError(f"{self.kind} loss: targets must lie in [0, 1]")

    def hessian_z(self, Y, Z):
        s = expit(Z)
        return np.einsum("ni,ij->nij", s * (1 - s), np.eye(Z.shape[-1]))

    def latex(self):
        return r"\ell_{\mathrm{BCE}}"

    def sample_targets(self, rng, batch, n):
        """Targets in {0, 1}."""
        return rng.integers(0, 2, size=(batch, n)).astype(float)


class _ClassTargets:
    """Mixin of the cross entropies (:class:`CrossEntropy`, :class:`CrossEntropyLogits`): targets one-hot rows,
    distributions or integer class labels (:func:`_labels_to_one_hot`); ``_prediction`` names what they are compared to."""

    _prediction = "prediction"
    #: what a valid target row is (the end of the message for one that is not)
    _targets_rule = ""

    def check_targets(self, Y, Yhat_shape):
        if type(Y) is np.ndarray and Y.dtype == np.float64 and Y.size and Y.shape == tuple(Yhat_shape):
            # float rows (as the network passes them): a NaN makes the minimum NaN, an infinity a row sum
            # infinite, so an invalid array fails here and the full checks below name what is wrong
            if Y.min() >= 0 and np.abs(Y.sum(axis=-1) - 1.0).max() <= 1e-9:
                return
        Y = self.as_targets(Y, Yhat_shape[-1], len(Yhat_shape) > 1)
        super().check_targets(Y, Yhat_shape)
        Y = np.asarray(Y)
        if np.any(Y < 0) or np.max(np.abs(Y.sum(axis=-1) - 1.0)) > 1e-9:
            raise DataError(f"{self.kind} loss: each target must be {self._targets_rule}")

    def as_targets(self, Y, n, batched=True):
        return _labels_to_one_hot(Y, n, batched, self.kind)

    def _arrays(self, Y, Yhat, what=None):
        if type(Y) is np.ndarray and Y.dtype.kind == "f" and type(Yhat) is np.ndarray:  # not class labels
            return super()._arrays(Y, Yhat, self._prediction if what is None else what)
        Yhat = np.asarray(Yhat)
        return super()._arrays(self.as_targets(Y, Yhat.shape[-1], Yhat.ndim > 1), Yhat,
                               self._prediction if what is None else what)

    def latex(self):
        return r"\ell_{\mathrm{CE}}"

    def sample_targets(self, rng, batch, n):
        """One-hot rows."""
        return np.eye(n)[rng.integers(0, n, size=batch)]


@register_loss("mse")
class MSE(Loss):
    r"""Squared error :math:`c\sum_i (\hat y_i - y_i)^2` (``reduce_outputs="sum"``) or
    :math:`\frac{c}{n}\sum_i(\hat y_i-y_i)^2` (``"mean"``, PyTorch's ``MSELoss``).

    ``scale`` (:math:`c`) and ``reduce_outputs`` left as None follow the convention the loss is bound to
    (:meth:`bind_convention`; ``loss="mse"`` is bound by the network), else 1 and ``"sum"``; ``repr`` says which.
    """

    kind = "mse"
    matched_activation = "identity"

    def __init__(self, scale: "float | None" = None, reduce_outputs: "str | None" = None):
        self._scale_stated = None if scale is None else real_number(scale, "mse loss: scale", minimum=0.0,
                                                                    strict_minimum=True)
        if reduce_outputs is not None and (not isinstance(reduce_outputs, str) or reduce_outputs not in ("sum", "mean")):
            raise SpecError(f"mse loss: reduce_outputs must be 'sum' or 'mean', received {reduce_outputs!r}")
        self._reduce_stated = None if reduce_outputs is None else str(reduce_outputs)
        self._convention: tuple[str, float, str] | None = None  # (name, mse_scale, mse_reduce_outputs) once bound

    scaled_by_convention = True
    torch_loss_types = ("MSELoss",)

    @property
    def scale(self) -> float:
        """:math:`c` in use: the stated value, else the bound convention's ``mse_scale``, else 1."""
        if self._scale_stated is not None:
            return self._scale_stated
        return self._convention[1] if self._convention else 1.0

    @property
    def reduce_outputs(self) -> str:
        """``"sum"`` or ``"mean"`` over the outputs: stated, else the bound convention's, else ``"sum"``."""
        if self._reduce_stated is not None:
            return self._reduce_stated
        return self._convention[2] if self._convention else "sum"

    @property
    def sums_over_outputs(self) -> bool:  # type: ignore[override]
        return self.reduce_outputs == "sum"

    def bind_convention(self, convention) -> "MSE":
        r"""A copy whose unstated knobs (``scale``, ``reduce_outputs``) are the convention's ``mse_scale`` and
        ``mse_reduce_outputs``; stated ones are kept.  ``MSE()`` under the ``pytorch`` preset is then
        ``MSELoss``'s :math:`\frac1n\sum_i(\hat y_i-y_i)^2`, exactly like ``loss="mse"``."""
        out = copy.copy(self)
        out._convention = (str(getattr(convention, "name", "")), float(convention.mse_scale),
                           str(convention.mse_reduce_outputs))
        return out

    def describe(self) -> str:
        """E.g. ``mse: per sample 1/n·Σᵢ(ŷᵢ−yᵢ)² (scale 1 from convention 'pytorch', mean over the n outputs ...)``."""
        def src(stated):
            if stated is not None:
                return "stated"
            return f"from convention {self._convention[0]!r}" if self._convention else "default; not bound to a convention"
        form = f"{self.scale:g}" + ("/n" if self.reduce_outputs == "mean" else "")
        return (f"mse: per sample {form}·Σᵢ(ŷᵢ−yᵢ)² (scale {self.scale:g}: {src(self._scale_stated)}; "
                f"{self.reduce_outputs} over the n outputs: {src(self._reduce_stated)})")

    @classmethod
    def from_torch_loss(cls, module):
        """``torch.nn.MSELoss``: ``reduction="mean"`` averages the outputs (and the batch), ``"sum"`` sums both."""
        red = cls._torch_reduction(module)
        return cls(scale=1.0, reduce_outputs="mean" if red == "mean" else "sum"), red

    def _c(self, n):
        return self.scale / (n if self.reduce_outputs == "mean" else 1)

    def output_scale(self, n):
        """:math:`c` = ``scale``, divided by ``n`` for ``reduce_outputs="mean"``."""
        return self._c(n)

    def latex_output_delta(self, diff, n, format_number):
        r""":math:`2c(\hat{\mathbf y}-\mathbf y)` (identity output and squared error, Damadi Table 1)."""
        c = self.scale / (n if self.reduce_outputs == "mean" else 1)
        coef = 2 * c
        cs = "" if coef == 1 else (format_number(coef, 6) if coef != int(coef) else str(int(coef)))
        if self.reduce_outputs == "mean":
            cs = rf"\frac{{{format_number(2 * self.scale, 6)}}}{{{n}}}"
        return (rf"{cs}({diff})" if cs else diff,
                f"identity output and squared error scaled by {self.scale:g}, Damadi Table 1")

    def value(self, Y, Yhat):
        Y, Yhat = self._arrays(Y, Yhat)
        with np.errstate(over="ignore", invalid="ignore"):
            v = self._c(Yhat.shape[-1]) * np.sum((Yhat - Y) ** 2, axis=-1)
        return self.check_finite(v, "value", "the squared error overflowed; scale the inputs/parameters down")

    def grad_yhat(self, Y, Yhat):
        Y, Yhat = self._arrays(Y, Yhat)
        with np.errstate(over="ignore", invalid="ignore"):
            g = 2 * self._c(Yhat.shape[-1]) * (Yhat - Y)
        return self.check_finite(g, "gradient", "the prediction error overflowed; scale the inputs/parameters down")

    value_from_logits = value
    delta = grad_yhat

    def hessian_z(self, Y, Z):
        n = Z.shape[-1]
        return np.broadcast_to(2 * self._c(n) * np.eye(n), (Z.shape[0], n, n)).copy()

    def latex(self):
        return r"\ell_{\mathrm{MSE}}"

    def torch_per_sample(self, Y, output, logits, matched):
        per = self.scale * ((output - Y) ** 2).sum(-1)
        if self.reduce_outputs == "mean":
            per = per / output.shape[-1]
        return per


@register_loss("bce")
class BCE(_BinaryTargets, _LogitsTwin, Loss):
    r"""Binary cross entropy :math:`-\sum_i y_i\log\hat y_i + (1-y_i)\log(1-\hat y_i)`, targets in [0, 1]."""

    kind = "bce"
    matched_activation = "sigmoid"
    torch_loss_types = ("BCELoss",)
    _logits_name = "bce_logits"

    def describe(self) -> str:
        return "bce: per sample −Σᵢ yᵢ log ŷᵢ + (1−yᵢ) log(1−ŷᵢ), ŷ probabilities (after a sigmoid layer)"

    @classmethod
    def from_torch_loss(cls, module):
        """``torch.nn.BCELoss`` (probabilities in); class ``weight`` refused."""
        if getattr(module, "weight", None) is not None:
            raise SpecError("torch.nn.BCELoss(weight=...): per-element weights are not supported")
        return cls(), cls._torch_reduction(module)

    _SATURATED = ("a predicted probability is 0 where the target is > 0, or 1 where the target is < 1 "
                  "(the last activation saturated or is not sigmoid); " + _MATCH_HINT)

    def _check_probabilities(self, Yhat) -> None:
        if Yhat.dtype != object and np.any((Yhat < 0) | (Yhat > 1)):
            raise DataError(f"bce loss: predictions must be probabilities in [0, 1] (use a sigmoid last activation), "
                            f"received values in [{np.nanmin(Yhat):.6g}, {np.nanmax(Yhat):.6g}]")

    def value(self, Y, Yhat):
        Y, Yhat = self._arrays(Y, Yhat)
        self._check_probabilities(Yhat)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = -(np.where(Y > 0, Y * np.log(Yhat), 0.0) + np.where(Y < 1, (1 - Y) * np.log1p(-Yhat), 0.0))
        return self.check_finite(np.sum(v, axis=-1), "value", self._SATURATED)

    def grad_yhat(self, Y, Yhat):
        r""":math:`(\hat y - y)/(\hat y(1-\hat y))`; at :math:`\hat y \in \{0, 1\}` its finite limit
        :math:`-y/\hat y\,[y>0] + (1-y)/(1-\hat y)\,[y<1]` when there is one (``ŷ = y``)."""
        Y, Yhat = self._arrays(Y, Yhat)
        self._check_probabilities(Yhat)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            g = (Yhat - Y) / (Yhat * (1 - Yhat))
            edge = (Yhat <= 0) | (Yhat >= 1)
            if np.any(edge):
                g_edge = np.where(Y > 0, -Y / Yhat, 0.0) + np.where(Y < 1, (1 - Y) / (1 - Yhat), 0.0)
                g = np.where(edge, g_edge, g)
        return self.check_finite(g, "gradient with respect to the prediction", self._SATURATED)

    def value_from_logits(self, Y, Z):
        # log(1+e^z) - y z, stable via logaddexp
        Y, Z = self._arrays(Y, Z, "logits")
        return self.check_finite(_bce_logits(Y, Z), "value", _ZL_OVERFLOW)

    def delta(self, Y, Z):
        Y, Z = self._arrays(Y, Z, "logits")
        return self.check_finite(expit(Z) - Y, "gradient with respect to z[L]", _ZL_NOT_FINITE)

    def latex_output_delta(self, diff, n, format_number):
        return (diff, "sigmoid output and binary cross entropy, Damadi Table 1")

    def torch_per_sample(self, Y, output, logits, matched):
        import torch

        F = torch.nn.functional
        if matched:
            return F.binary_cross_entropy_with_logits(logits, Y, reduction="none").sum(-1)
        return F.binary_cross_entropy(output, Y, reduction="none").sum(-1)


@register_loss("cross_entropy", "ce")
class CrossEntropy(_ClassTargets, _LogitsTwin, Loss):
    r"""Cross entropy :math:`-\sum_i y_i\log\hat y_i`; targets one-hot or a probability distribution."""

    kind = "cross_entropy"
    matched_activation = "softmax"
    _logits_name = "cross_entropy_logits"

    def describe(self) -> str:
        return ("cross_entropy: per sample −Σᵢ yᵢ log ŷᵢ, ŷ probabilities (after a softmax layer); "
                "y one-hot, a distribution or integer class labels")

    _targets_rule = "one-hot or a probability distribution (non-negative, summing to 1)"

    def _cause(self, Y, Yhat) -> str:
        if Yhat.dtype != object and np.any((Y > 0) & (Yhat < 0)):
            return ("a prediction is negative where the target is > 0, so its log is undefined "
                    "(the last activation is not softmax); " + _MATCH_HINT)
        return ("a predicted probability is 0 where the target is > 0 (the last activation saturated "
                "or is not softmax); " + _MATCH_HINT)

    def value(self, Y, Yhat):
        Y, Yhat = self._arrays(Y, Yhat)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = -np.sum(np.where(Y > 0, Y * np.log(Yhat), 0.0), axis=-1)
        if v.dtype != object and not np.all(np.isfinite(v)):
            self.check_finite(v, "value", self._cause(Y, Yhat))
        return v

    def grad_yhat(self, Y, Yhat):
        Y, Yhat = self._arrays(Y, Yhat)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            g = np.where(Y > 0, -Y / Yhat, 0.0)
        if g.dtype != object and not np.all(np.isfinite(g)):
            self.check_finite(g, "gradient with respect to the prediction", self._cause(Y, Yhat))
        return g

    def value_from_logits(self, Y, Z):
        Y, Z = self._arrays(Y, Z, "logits")
        return self.check_finite(_softmax_ce(Y, Z), "value", _ZL_OVERFLOW)

    def delta(self, Y, Z):
        Y, Z = self._arrays(Y, Z, "logits")
        return self.check_finite(_softmax_ce_grad(Y, Z), "gradient with respect to z[L]", _ZL_NOT_FINITE)

    def hessian_z(self, Y, Z):
        return _softmax_ce_hessian(Y, Z)

    def latex_output_delta(self, diff, n, format_number):
        return (diff, "softmax output and cross entropy, Damadi Table 1")

    def torch_per_sample(self, Y, output, logits, matched):
        import torch

        if matched:
            return -(Y * torch.log_softmax(logits, dim=-1)).sum(-1)
        return -(Y * torch.log(output)).sum(-1)




def _labels_to_one_hot(Y, n: int, batched: bool, who: str) -> np.ndarray:
    """Integer class labels (``(N,)`` for a batch, 0-d for one sample) → one-hot float rows; else ``Y`` unchanged."""
    try:
        A = np.asarray(Y)
    except (TypeError, ValueError):  # ragged nestings and the like: left to the caller's validation
        return Y
    if not (np.issubdtype(A.dtype, np.integer) and not np.issubdtype(A.dtype, np.bool_)) or A.ndim != (1 if batched else 0):
        return Y
    Y = A
    if Y.size and (Y.min() < 0 or Y.max() >= n):
        raise DataError(f"{who} loss: class labels must lie in 0..{n - 1} (n = {n} outputs), "
                        f"received values in [{Y.min()}, {Y.max()}]")
    return np.eye(n)[Y]


@register_loss("cross_entropy_logits", "ce_logits")
class CrossEntropyLogits(_ClassTargets, Loss):
    r"""Cross entropy on logits, PyTorch's ``CrossEntropyLoss``: :math:`\ell = -\sum_i y_i\log\operatorname{softmax}(\mathbf z)_i`.

    The prediction is the logits :math:`\mathbf z` (no Softmax layer): computed with ``log_softmax``
    (stable for any finite logits), :math:`\nabla_{\mathbf z}\ell = (\sum_i y_i)\operatorname{softmax}(\mathbf z)-\mathbf y`
    (:math:`\operatorname{softmax}(\mathbf z)-\mathbf y` for one-hot targets), Hessian
    :math:`\operatorname{diag}\mathbf s-\mathbf s\mathbf s^\top`.  Targets: one-hot rows, distributions, or
    integer class labels ``(N,)``.  Also ``CrossEntropy(from_logits=True)`` and ``loss="cross_entropy_logits"``.
    """

    kind = "cross_entropy_logits"
    matched_activation = "identity"
    from_logits = True
    torch_loss_types = ("CrossEntropyLoss",)
    _prediction = "logits"

    def describe(self) -> str:
        return ("cross_entropy_logits: per sample −Σᵢ yᵢ log softmax(z)ᵢ on the logits z (no softmax layer); "
                "y one-hot, a distribution or integer class labels")

    _targets_rule = "one-hot, a probability distribution or a class label"

    def value(self, Y, Yhat):
        Y, Z = self._arrays(Y, Yhat)
        return self.check_finite(_softmax_ce(Y, Z), "value", "the logits are not finite (the forward pass overflowed)")

    def grad_yhat(self, Y, Yhat):
        Y, Z = self._arrays(Y, Yhat)
        return self.check_finite(_softmax_ce_grad(Y, Z), "gradient with respect to the logits", "the logits are not finite")

    value_from_logits = value
    delta = grad_yhat

    def hessian_z(self, Y, Z):
        Y, Z = self._arrays(Y, Z)
        return _softmax_ce_hessian(Y, Z)

    def latex_output_delta(self, diff, n, format_number):
        yhat, _, y = diff.partition(" - ")  # the renderer's "ŷ - y"; ŷ is the logits here
        return (rf"\operatorname{{softmax}}({yhat}) - {y}", "cross entropy on the logits (PyTorch's CrossEntropyLoss)")

    def torch_per_sample(self, Y, output, logits, matched):
        import torch

        return -(Y * torch.log_softmax(output, dim=-1)).sum(-1)

    @classmethod
    def from_torch_loss(cls, module):
        """``torch.nn.CrossEntropyLoss``; class ``weight`` and ``label_smoothing`` refused."""
        if getattr(module, "weight", None) is not None or float(getattr(module, "label_smoothing", 0.0)) != 0.0:
            raise SpecError("torch.nn.CrossEntropyLoss: class weights and label_smoothing are not supported")
        return cls(), cls._torch_reduction(module)


@register_loss("bce_logits")
class BCEWithLogits(_BinaryTargets, Loss):
    r"""Binary cross entropy on logits, PyTorch's ``BCEWithLogitsLoss``:
    :math:`\ell = \sum_i \log(1+e^{z_i}) - y_i z_i` (``logaddexp``, stable), targets in [0, 1].

    :math:`\nabla_{\mathbf z}\ell = \sigma(\mathbf z)-\mathbf y`, Hessian :math:`\operatorname{diag}\sigma(1-\sigma)`.
    No Sigmoid layer.  Also ``BCE(from_logits=True)`` and ``loss="bce_logits"``.
    """

    kind = "bce_logits"
    matched_activation = "identity"
    from_logits = True
    torch_loss_types = ("BCEWithLogitsLoss",)

    def describe(self) -> str:
        return "bce_logits: per sample Σᵢ log(1+e^{zᵢ}) − yᵢzᵢ on the logits z (no sigmoid layer), y in [0, 1]"

    def value(self, Y, Yhat):
        Y, Z = self._arrays(Y, Yhat, "logits")
        return self.check_finite(_bce_logits(Y, Z), "value", "the logits are not finite (the forward pass overflowed)")

    def grad_yhat(self, Y, Yhat):
        Y, Z = self._arrays(Y, Yhat, "logits")
        return self.check_finite(expit(Z) - Y, "gradient with respect to the logits", "the logits are not finite")

    value_from_logits = value
    delta = grad_yhat

    def latex_output_delta(self, diff, n, format_number):
        yhat, _, y = diff.partition(" - ")  # the renderer's "ŷ - y"; ŷ is the logits here
        return (rf"\sigma({yhat}) - {y}", "binary cross entropy on the logits (PyTorch's BCEWithLogitsLoss)")

    def torch_per_sample(self, Y, output, logits, matched):
        import torch

        return torch.nn.functional.binary_cross_entropy_with_logits(output, Y, reduction="none").sum(-1)

    @classmethod
    def from_torch_loss(cls, module):
        """``torch.nn.BCEWithLogitsLoss``; ``weight`` and ``pos_weight`` refused."""
        if getattr(module, "weight", None) is not None or getattr(module, "pos_weight", None) is not None:
            raise SpecError("torch.nn.BCEWithLogitsLoss: weight and pos_weight are not supported")
        return cls(), cls._torch_reduction(module)


def loss_from_torch(module) -> tuple[Loss, str]:
    """The loss whose ``torch_loss_types`` names ``type(module)`` → (loss, torch's ``reduction``).

    Raises
    ------
    SpecError
        Naming the module's type and the supported ones.
    """
    name = type(module).__name__
    for cls in dict.fromkeys(LOSSES.values()):
        if name in cls.torch_loss_types and type(module).__module__.startswith("torch.nn"):
            return cls.from_torch_loss(module)
    known = sorted({t for c in LOSSES.values() for t in c.torch_loss_types})
    raise SpecError(f"unsupported torch loss {name}; supported: {', '.join(known)}")


def make_loss(name: str, **kwargs) -> Loss:
    """Build a loss from its spec name (``mse``, ``bce``, ``cross_entropy``/``ce``, ``cross_entropy_logits``/``ce_logits``,
    ``bce_logits``); ``from_logits=True`` on ``cross_entropy``/``bce`` gives the logits forms.

    Raises
    ------
    SpecError
        For an unknown name, an unknown keyword or an invalid value.
    """
    if not isinstance(name, str) or name not in LOSSES:
        raise SpecError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as exc:
        raise SpecError(f"{name} loss: {exc}") from None
