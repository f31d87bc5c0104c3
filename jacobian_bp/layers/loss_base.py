r"""The loss protocol (:class:`Loss`) and the registry of loss kinds (:data:`LOSSES`, :func:`register_loss`).

The concrete losses -- MSE, BCE, cross entropy and their from-logits forms -- live in
:mod:`jacobian_bp.layers.losses`, which re-exports everything here: import from there.
Every numeric result of a loss is checked by :meth:`Loss.check_finite` (one-line
:class:`~jacobian_bp.errors.DataError` naming the loss and the cause).
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError, ShapeError, SpecError
from ..backend.kernels import all_finite
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
        if a.dtype != object and not all_finite(a):
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

    #: the loss takes the *logits* as its prediction (softmax/sigmoid inside the loss, as PyTorch's
    #: ``CrossEntropyLoss``/``BCEWithLogitsLoss``): no separate Softmax/Sigmoid layer
    from_logits: bool = False
    #: the per-sample value sums over the outputs (PyTorch's element mean divides it by ``n_L``)
    sums_over_outputs: bool = False
    #: the ``torch.nn`` loss classes this loss imports (:meth:`from_torch_loss`)
    torch_loss_types: tuple[str, ...] = ()

    @classmethod
    def from_torch_loss(cls, module) -> tuple["Loss", str]:
        """A ``torch.nn`` loss module → (this loss, torch's batch ``reduction``: ``"mean"`` or ``"sum"``); ``SpecError``
        for ``reduction="none"`` or an option the loss does not have (class weights, label smoothing, ...)."""
        raise SpecError(f"{cls.__name__}: no torch loss to import")  # pragma: no cover - only for the types listed

    @staticmethod
    def _torch_reduction(module) -> str:
        red = getattr(module, "reduction", "mean")
        if red not in ("mean", "sum"):
            raise SpecError(f"torch.nn.{type(module).__name__}(reduction={red!r}): only 'mean' and 'sum' are supported")
        return red

    def as_targets(self, Y, n: int, batched: bool = True) -> np.ndarray:
        """The targets as the loss reads them, ``(N, n)`` (``(n,)`` for one sample); default: unchanged.

        :class:`CrossEntropy` and :class:`CrossEntropyLogits` also accept integer class labels
        (shape ``(N,)``, or a 0-d label for one sample), turned into one-hot rows.
        """
        return np.asarray(Y)

    def describe(self) -> str:
        """What the loss computes per sample, in one line (plain text)."""
        return self.kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

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
