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

Constructor arguments are validated when the loss is made (``scale`` a finite positive
real number, ``reduce_outputs`` the string ``"sum"`` or ``"mean"``; strings are never
parsed as numbers).  Every numeric result (value, gradient, delta) is checked: a loss that
is infinite or a gradient that is not finite -- e.g. an unmatched sigmoid + cross entropy
whose saturated prediction is exactly 0 where the target is 1 -- raises
:class:`~jacobian_bp.errors.DataError` naming the loss and the cause instead of returning
NaN/Inf silently (:meth:`Loss.check_finite`).
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit, log_softmax, softmax

from ..errors import DataError, ShapeError, SpecError
from ..backend.exact import real_number
from ..backend.escape import escape_text

#: the loss registry: spec name -> class, filled by :func:`register_loss` on each class
LOSSES: dict[str, type] = {}


def register_loss(*names: str):
    """Class decorator: record a loss class under its spec name(s) (the first is its ``kind``)."""
    def deco(cls: type) -> type:
        for name in names:
            old = LOSSES.get(name)
            if old is not None and old is not cls:
                raise SpecError(f"loss {name!r} is registered twice ({old.__name__} and {cls.__name__})")
            LOSSES[name] = cls
        return cls

    return deco


_MATCH_HINT = ("pair the last activation with its matching loss (sigmoid + bce, softmax + cross_entropy), "
               "which is computed stably from the logits, or scale the inputs/parameters down")


class Loss:
    """Base class.  Subclasses: :class:`MSE`, :class:`BCE`, :class:`CrossEntropy`."""

    kind = "loss"
    matched_activation: str = ""

    def check_targets(self, Y: np.ndarray, Yhat_shape: tuple) -> None:
        Y = np.asarray(Y)
        if Y.shape != tuple(Yhat_shape):
            raise ShapeError(f"{self.kind} loss: expected targets of shape {tuple(Yhat_shape)}, received {Y.shape}")
        if not np.all(np.isfinite(Y)):
            raise DataError(f"{self.kind} loss: targets contain NaN or Inf")

    def check_finite(self, values, what: str, cause: str = "") -> np.ndarray:
        """Return ``values`` if every entry is finite, else raise :class:`DataError`.

        Parameters
        ----------
        values : array_like
            A numeric result of the loss (object arrays of SymPy entries are not checked).
        what : str
            What it is: ``"value"``, ``"gradient with respect to the prediction"``, ...
        cause : str
            The likely cause, appended to the message.

        Raises
        ------
        DataError
            ``"<kind> loss: the <what> is infinite/NaN: <cause>"`` on one line.
        """
        a = np.asarray(values)
        if a.dtype != object and not np.all(np.isfinite(a)):
            kind = "NaN" if np.any(np.isnan(a)) else "infinite"
            raise DataError(f"{self.kind} loss: the {what} is {kind}: {cause or _MATCH_HINT}")
        return values

    def _arrays(self, Y, Yhat, what: str = "prediction") -> tuple[np.ndarray, np.ndarray]:
        Y, Yhat = np.asarray(Y), np.asarray(Yhat)
        if Y.shape != Yhat.shape:
            raise ShapeError(f"{self.kind} loss: targets of shape {Y.shape} do not match the {what} of shape {Yhat.shape}")
        return Y, Yhat

    def value(self, Y, Yhat) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def grad_yhat(self, Y, Yhat) -> np.ndarray:  # pragma: no cover
        """:math:`\\nabla_{\\hat{\\mathbf y}}\\ell`, ``(N, n)``."""
        raise NotImplementedError

    def matches(self, activation) -> bool:
        """Whether ``activation`` is this loss's canonical last activation (Damadi Table 1)."""
        return getattr(activation, "kind", "identity" if activation is None else "") == self.matched_activation

    def value_from_logits(self, Y, Z) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def delta(self, Y, Z) -> np.ndarray:  # pragma: no cover
        """Closed-form :math:`\\nabla_{\\mathbf z^{[L]}}\\ell` of the matched pair, ``(N, n)``."""
        raise NotImplementedError

    def hessian_z(self, Y, Z) -> np.ndarray:  # pragma: no cover
        """:math:`\\nabla^2_{\\mathbf z^{[L]}}\\ell` of the matched pair, ``(N, n, n)`` (Gauss--Newton's H)."""
        raise NotImplementedError

    def latex(self) -> str:
        return r"\ell"

    #: the convention's MSE scale applies to this loss (the derivation states it)
    scaled_by_convention: bool = False

    def output_scale(self, n: int) -> float:
        """The constant :math:`c` in front of the per-sample loss of ``n`` outputs (1 unless a subclass scales it)."""
        return 1.0

    def latex_output_delta(self, diff: str, n: int, format_number) -> tuple[str, str]:
        r"""(closed form, source) of :math:`\nabla_{\mathbf z^{[L]}}\ell` for the matched pair, in LaTeX.

        ``diff`` is the LaTeX of :math:`\hat{\mathbf y}-\mathbf y`, ``n`` the number of outputs,
        ``format_number(x, digits)`` the renderer's number format.
        """
        return (diff, f"{escape_text(self.kind)}, Damadi Table 1")

    def sample_targets(self, rng: np.random.Generator, batch: int, n: int) -> np.ndarray:
        """Valid random targets for this loss, ``(batch, n)`` (standard normal unless a subclass restricts them)."""
        return rng.standard_normal((batch, n))

    def torch_per_sample(self, Y, output, logits, matched: bool):
        r"""The per-sample loss ``(N,)`` in torch (float64): the autograd oracle's twin of :meth:`value`.

        ``output`` is the network's prediction :math:`\hat{\mathbf y}`, ``logits`` its last
        pre-activation :math:`\mathbf z^{[L]}`; a matched pair is computed from the logits, as
        the engine does.
        """
        raise NotImplementedError(f"no torch equivalent for loss {self.kind!r}")


@register_loss("mse")
class MSE(Loss):
    r"""Squared error :math:`c\sum_i (\hat y_i - y_i)^2` (``reduce_outputs="sum"``) or
    :math:`\frac{c}{n}\sum_i(\hat y_i-y_i)^2` (``"mean"``, PyTorch's ``MSELoss``)."""

    kind = "mse"
    matched_activation = "identity"

    def __init__(self, scale: float = 1.0, reduce_outputs: str = "sum"):
        self.scale = real_number(scale, "mse loss: scale", minimum=0.0, strict_minimum=True)
        if not isinstance(reduce_outputs, str) or reduce_outputs not in ("sum", "mean"):
            raise SpecError(f"mse loss: reduce_outputs must be 'sum' or 'mean', received {reduce_outputs!r}")
        self.reduce_outputs = str(reduce_outputs)

    scaled_by_convention = True

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
class BCE(Loss):
    r"""Binary cross entropy :math:`-\sum_i y_i\log\hat y_i + (1-y_i)\log(1-\hat y_i)`, targets in [0, 1]."""

    kind = "bce"
    matched_activation = "sigmoid"

    def check_targets(self, Y, Yhat_shape):
        super().check_targets(Y, Yhat_shape)
        Y = np.asarray(Y)
        if np.any((Y < 0) | (Y > 1)):
            raise DataError("bce loss: targets must lie in [0, 1]")

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
        with np.errstate(over="ignore", invalid="ignore"):
            v = np.sum(np.logaddexp(0.0, Z) - Y * Z, axis=-1)
        return self.check_finite(v, "value", "the logits z[L] are not finite (the forward pass overflowed); "
                                 "scale the inputs/parameters down")

    def delta(self, Y, Z):
        Y, Z = self._arrays(Y, Z, "logits")
        return self.check_finite(expit(Z) - Y, "gradient with respect to z[L]",
                                 "the logits z[L] are not finite (the forward pass overflowed)")

    def hessian_z(self, Y, Z):
        s = expit(Z)
        return np.einsum("ni,ij->nij", s * (1 - s), np.eye(Z.shape[-1]))

    def latex(self):
        return r"\ell_{\mathrm{BCE}}"

    def latex_output_delta(self, diff, n, format_number):
        return (diff, "sigmoid output and binary cross entropy, Damadi Table 1")

    def sample_targets(self, rng, batch, n):
        """Targets in {0, 1}."""
        return rng.integers(0, 2, size=(batch, n)).astype(float)

    def torch_per_sample(self, Y, output, logits, matched):
        import torch

        F = torch.nn.functional
        if matched:
            return F.binary_cross_entropy_with_logits(logits, Y, reduction="none").sum(-1)
        return F.binary_cross_entropy(output, Y, reduction="none").sum(-1)


@register_loss("cross_entropy", "ce")
class CrossEntropy(Loss):
    r"""Cross entropy :math:`-\sum_i y_i\log\hat y_i`; targets one-hot or a probability distribution."""

    kind = "cross_entropy"
    matched_activation = "softmax"

    def check_targets(self, Y, Yhat_shape):
        super().check_targets(Y, Yhat_shape)
        Y = np.asarray(Y)
        if np.any(Y < 0) or np.max(np.abs(Y.sum(axis=-1) - 1.0)) > 1e-9:
            raise DataError(
                "cross_entropy loss: each target must be one-hot or a probability distribution "
                "(non-negative, summing to 1)"
            )

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
        with np.errstate(over="ignore", invalid="ignore"):
            v = -np.sum(Y * log_softmax(Z, axis=-1), axis=-1)
        return self.check_finite(v, "value", "the logits z[L] are not finite (the forward pass overflowed); "
                                 "scale the inputs/parameters down")

    def delta(self, Y, Z):
        Y, Z = self._arrays(Y, Z, "logits")
        with np.errstate(over="ignore", invalid="ignore"):
            d = softmax(Z, axis=-1) * Y.sum(axis=-1, keepdims=True) - Y
        return self.check_finite(d, "gradient with respect to z[L]",
                                 "the logits z[L] are not finite (the forward pass overflowed)")

    def hessian_z(self, Y, Z):
        S = softmax(Z, axis=-1)
        w = Y.sum(axis=-1)
        return w[:, None, None] * (np.einsum("ni,ij->nij", S, np.eye(Z.shape[-1])) - np.einsum("ni,nj->nij", S, S))

    def latex(self):
        return r"\ell_{\mathrm{CE}}"

    def latex_output_delta(self, diff, n, format_number):
        return (diff, "softmax output and cross entropy, Damadi Table 1")

    def sample_targets(self, rng, batch, n):
        """One-hot rows."""
        return np.eye(n)[rng.integers(0, n, size=batch)]

    def torch_per_sample(self, Y, output, logits, matched):
        import torch

        if matched:
            return -(Y * torch.log_softmax(logits, dim=-1)).sum(-1)
        return -(Y * torch.log(output)).sum(-1)




def make_loss(name: str, **kwargs) -> Loss:
    """Build a loss from its spec name (``mse``, ``bce``, ``cross_entropy``/``ce``).

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
