r"""Losses as SymPy expressions, and the closed-form deltas of the matched pairs.

For one sample with target :math:`\mathbf y` and prediction :math:`\hat{\mathbf y}` (the
engine's :class:`~jacobian_bp.layers.losses.Loss` objects give the kind and the scale):

* MSE: :math:`\ell = c\sum_i(\hat y_i-y_i)^2`, divided by :math:`n` when the loss averages
  over outputs (PyTorch); :math:`c = 1` for Damadi Table 1, ½ for Park eq. (26) / MML;
* BCE: :math:`\ell = -\sum_i\big(y_i\log\hat y_i + (1-y_i)\log(1-\hat y_i)\big)` (Park §6.2);
* CE: :math:`\ell = -\sum_i y_i\log\hat y_i` (Damadi Table 1, Park §6.3).

:func:`closed_form_delta` is :math:`\nabla_{\mathbf z^{[L]}}\ell` of the matched pairs
(Damadi Table 1, Park Thm. 6.1): :math:`\hat{\mathbf y}-\mathbf y` for sigmoid+BCE and
softmax+CE (the latter when :math:`\sum_i y_i = 1`), :math:`2c(\hat{\mathbf y}-\mathbf y)` for
identity+MSE (Damadi's unhalved MSE: :math:`-2(\mathbf y-\hat{\mathbf y})`).  Whether these
are right is *proved*, not assumed, in :mod:`jacobian_bp.symbolic.identities`.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import ShapeError, SpecError
from ..backend.exact import exact_number
from ..layers.losses import BCE, MSE, CrossEntropy, Loss

__all__ = ["loss_expression", "closed_form_delta", "loss_latex"]


def _vectors(y, yhat, who: str) -> tuple[list, list]:
    y = list(np.asarray(y, dtype=object).ravel())
    yhat = list(np.asarray(yhat, dtype=object).ravel())
    if len(y) != len(yhat) or not y:
        raise ShapeError(f"{who}: target and prediction must be non-empty vectors of equal length, "
                         f"received lengths {len(y)} and {len(yhat)}")
    return y, yhat


def _mse_factor(loss: MSE, n: int) -> sympy.Expr:
    c = exact_number(loss.scale, "mse loss: scale")
    return c / n if loss.reduce_outputs == "mean" else c


def loss_expression(loss: Loss, y, yhat) -> sympy.Expr:
    r"""The per-sample loss :math:`\ell(\mathbf y, \hat{\mathbf y})` as a SymPy expression.

    Parameters
    ----------
    loss : Loss
        An engine loss (:class:`~jacobian_bp.layers.losses.MSE`, ``BCE`` or ``CrossEntropy``).
    y, yhat : sequence of SymPy expressions
        Target and prediction, equal lengths.
    """
    y, yhat = _vectors(y, yhat, f"{getattr(loss, 'kind', 'loss')} loss expression")
    if isinstance(loss, MSE):
        return _mse_factor(loss, len(y)) * sum((p - t) ** 2 for t, p in zip(y, yhat))
    if isinstance(loss, BCE):
        return -sum(t * sympy.log(p) + (1 - t) * sympy.log(1 - p) for t, p in zip(y, yhat))
    if isinstance(loss, CrossEntropy):
        return -sum(t * sympy.log(p) for t, p in zip(y, yhat))
    raise SpecError(f"loss_expression: no symbolic form for loss {type(loss).__name__}")


def closed_form_delta(loss: Loss, y, yhat, assume_distribution: bool = True) -> np.ndarray:
    r"""Closed-form :math:`\nabla_{\mathbf z^{[L]}}\ell` of the matched pair of ``loss`` (Damadi Table 1).

    Parameters
    ----------
    assume_distribution : bool
        For softmax + CE, return :math:`\hat{\mathbf y}-\mathbf y` (valid when
        :math:`\sum_i y_i = 1`: one-hot or probability targets, which the engine enforces);
        otherwise the general :math:`(\sum_i y_i)\,\hat{\mathbf y}-\mathbf y`.

    Returns
    -------
    numpy.ndarray of object, shape ``(n_L,)``
    """
    y, yhat = _vectors(y, yhat, "closed_form_delta")
    if isinstance(loss, MSE):
        c2 = 2 * _mse_factor(loss, len(y))
        return np.array([c2 * (p - t) for t, p in zip(y, yhat)], dtype=object)
    if isinstance(loss, BCE):
        return np.array([p - t for t, p in zip(y, yhat)], dtype=object)
    if isinstance(loss, CrossEntropy):
        total = sympy.Integer(1) if assume_distribution else sum(y)
        return np.array([total * p - t for t, p in zip(y, yhat)], dtype=object)
    raise SpecError(f"closed_form_delta: no matched pair for loss {type(loss).__name__}")


def loss_latex(loss: Loss) -> str:
    r"""LaTeX of the per-sample loss formula, e.g. ``-\sum_i y_i \log \hat y_i``."""
    if isinstance(loss, MSE):
        c = sympy.latex(exact_number(loss.scale, "mse loss: scale"))
        c = "" if c == "1" else c + r"\,"
        mean = r"\frac{1}{n}" if loss.reduce_outputs == "mean" else ""
        return rf"{c}{mean}\lVert \hat{{\mathbf y}} - \mathbf y\rVert^2"
    if isinstance(loss, BCE):
        return r"-\sum_i \big(y_i \log \hat y_i + (1-y_i)\log(1-\hat y_i)\big)"
    if isinstance(loss, CrossEntropy):
        return r"-\sum_i y_i \log \hat y_i"
    raise SpecError(f"loss_latex: unknown loss {type(loss).__name__}")
