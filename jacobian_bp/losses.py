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
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit, log_softmax, softmax

from .errors import DataError, ShapeError, SpecError


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


class MSE(Loss):
    r"""Squared error :math:`c\sum_i (\hat y_i - y_i)^2` (``reduce_outputs="sum"``) or
    :math:`\frac{c}{n}\sum_i(\hat y_i-y_i)^2` (``"mean"``, PyTorch's ``MSELoss``)."""

    kind = "mse"
    matched_activation = "identity"

    def __init__(self, scale: float = 1.0, reduce_outputs: str = "sum"):
        if not np.isfinite(scale) or scale <= 0:
            raise SpecError(f"mse loss: scale must be positive and finite, received {scale!r}")
        if reduce_outputs not in ("sum", "mean"):
            raise SpecError(f"mse loss: reduce_outputs must be 'sum' or 'mean', received {reduce_outputs!r}")
        self.scale = float(scale)
        self.reduce_outputs = reduce_outputs

    def _c(self, n):
        return self.scale / (n if self.reduce_outputs == "mean" else 1)

    def value(self, Y, Yhat):
        return self._c(Yhat.shape[-1]) * np.sum((Yhat - Y) ** 2, axis=-1)

    def grad_yhat(self, Y, Yhat):
        return 2 * self._c(Yhat.shape[-1]) * (Yhat - Y)

    value_from_logits = value
    delta = grad_yhat

    def hessian_z(self, Y, Z):
        n = Z.shape[-1]
        return np.broadcast_to(2 * self._c(n) * np.eye(n), (Z.shape[0], n, n)).copy()

    def latex(self):
        return r"\ell_{\mathrm{MSE}}"


class BCE(Loss):
    r"""Binary cross entropy :math:`-\sum_i y_i\log\hat y_i + (1-y_i)\log(1-\hat y_i)`, targets in [0, 1]."""

    kind = "bce"
    matched_activation = "sigmoid"

    def check_targets(self, Y, Yhat_shape):
        super().check_targets(Y, Yhat_shape)
        Y = np.asarray(Y)
        if np.any((Y < 0) | (Y > 1)):
            raise DataError("bce loss: targets must lie in [0, 1]")

    def value(self, Y, Yhat):
        with np.errstate(divide="ignore", invalid="ignore"):
            v = -(np.where(Y > 0, Y * np.log(Yhat), 0.0) + np.where(Y < 1, (1 - Y) * np.log1p(-Yhat), 0.0))
        return np.sum(v, axis=-1)

    def grad_yhat(self, Y, Yhat):
        return (Yhat - Y) / (Yhat * (1 - Yhat))

    def value_from_logits(self, Y, Z):
        # log(1+e^z) - y z, stable via logaddexp
        return np.sum(np.logaddexp(0.0, Z) - Y * Z, axis=-1)

    def delta(self, Y, Z):
        return expit(Z) - Y

    def hessian_z(self, Y, Z):
        s = expit(Z)
        return np.einsum("ni,ij->nij", s * (1 - s), np.eye(Z.shape[-1]))

    def latex(self):
        return r"\ell_{\mathrm{BCE}}"


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

    def value(self, Y, Yhat):
        with np.errstate(divide="ignore"):
            return -np.sum(np.where(Y > 0, Y * np.log(Yhat), 0.0), axis=-1)

    def grad_yhat(self, Y, Yhat):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(Y > 0, -Y / Yhat, 0.0)

    def value_from_logits(self, Y, Z):
        return -np.sum(Y * log_softmax(Z, axis=-1), axis=-1)

    def delta(self, Y, Z):
        return softmax(Z, axis=-1) * Y.sum(axis=-1, keepdims=True) - Y

    def hessian_z(self, Y, Z):
        S = softmax(Z, axis=-1)
        w = Y.sum(axis=-1)
        return w[:, None, None] * (np.einsum("ni,ij->nij", S, np.eye(Z.shape[-1])) - np.einsum("ni,nj->nij", S, S))

    def latex(self):
        return r"\ell_{\mathrm{CE}}"


LOSSES = {"mse": MSE, "bce": BCE, "cross_entropy": CrossEntropy, "ce": CrossEntropy}


def make_loss(name: str, **kwargs) -> Loss:
    """Build a loss from its spec name (``mse``, ``bce``, ``cross_entropy``/``ce``)."""
    if name not in LOSSES:
        raise SpecError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**kwargs)
