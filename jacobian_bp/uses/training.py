r"""Training on real data with gradients from the explicit Jacobian chain.

The update is plain (stochastic) gradient descent on the parameter vector θ in the
network's convention,

.. math:: \theta \leftarrow \theta - \eta\,\nabla_\theta\mathcal L_B(\theta),\qquad
   \nabla_\theta\mathcal L_B = r\sum_{i\in B}(\mathbf J_\theta\mathbf z_i^{[L]})^\top\nabla_{\mathbf z_i^{[L]}}\ell_i
   \quad\text{(Damadi eq. (1), Alg. 1 line 8)},

over the whole training set (``batch_size=None``: full-batch gradient descent) or over
mini-batches ``B`` drawn without replacement from a seeded permutation each epoch (SGD).
The gradient comes from the explicit chain, in one of three evaluations of the same
product (they agree to rounding; ``tests/test_training.py`` checks it):

* ``"chain"`` -- :meth:`Network.gradient` with ``method="chain"``: per sample, the structured
  :math:`\mathbf J_\theta\mathbf z^{[L]}` of Algorithm 1 (blocks ``P_l (I ⊗ aᵀ)``), then its transpose
  times the delta;
* ``"jacobian"`` -- the materialized batch Jacobian (:func:`jacobian_bp.engine.per_sample.batch_jacobian`,
  ``N × n_L × |θ|``) contracted with the deltas;
* ``"operator"`` -- the same transposed chain applied right to left as one batched sweep
  (:func:`jacobian_bp.uses.lazy.vjp_sweep`): Algorithm 1 at the cost of backprop.

:func:`compare_models` runs the measurement that Damadi et al. §3.1 leave as "X%" and "Y%":
one-layer softmax regression (Damadi Fig. 4) against a two-layer network (Fig. 5) on a fixed
split and fixed seeds.  By default the networks use Damadi's layout (``W`` is
``n_in × n_out``, columns stacked, θ blocks ``[layer L … layer 1]``) with a *mean* over the
batch, so that the step size does not depend on the batch size (:data:`TRAINING_CONVENTION`).
"""
from __future__ import annotations

from ..backend.progress import progress

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..engine.conventions import Convention, get_convention
from .datasets import Dataset
from ..errors import DataError, SpecError
from ..layers import Dense, Softmax, layer_class
from ..engine.network import Network

__all__ = ["TRAINING_CONVENTION", "METHODS", "TrainingResult", "softmax_regression", "two_layer_network",
           "explicit_gradient", "accuracy", "train", "compare_models", "DEFAULTS"]

#: Damadi's layout with a mean reduction over the batch.
TRAINING_CONVENTION: Convention = get_convention("damadi").replace(name="damadi-mean", reduction="mean")

METHODS = ("chain", "jacobian", "operator")

#: Hyper-parameters of :func:`compare_models` per data set (the same for both models).
DEFAULTS: dict[str, dict] = {
    "iris": {"hidden": 5, "activation": "sigmoid", "epochs": 300, "lr": 0.5, "batch_size": None},
    "digits": {"hidden": 32, "activation": "sigmoid", "epochs": 30, "lr": 0.2, "batch_size": 32},
}


@dataclass
class TrainingResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    model : str
        The network's name.
    dataset : str
    method : str
        How the gradient was evaluated (:data:`METHODS`).
    train_loss : ndarray, shape (epochs + 1,)
        Mean per-sample training loss before training and after each epoch.
    test_loss : ndarray, shape (epochs + 1,)
        The same on the test set.
    train_accuracy, test_accuracy : float
        Fraction of correctly classified samples after training (argmax of the output).
    params : dict
        The trained parameters in the convention's layout.
    """

    model: str
    dataset: str
    method: str
    epochs: int
    lr: float
    batch_size: int | None
    seed: int
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_accuracy: float
    test_accuracy: float
    params: dict = field(repr=False)
    seconds: float = 0.0

    def summary(self) -> str:
        bs = "full batch" if self.batch_size is None else f"batch {self.batch_size}"
        return (f"{self.dataset:7s} {self.model:28s} {self.method:8s} {self.epochs:4d} epochs, lr {self.lr:g}, {bs}: "
                f"train loss {self.train_loss[0]:.3f} -> {self.train_loss[-1]:.3f}, "
                f"train acc {100 * self.train_accuracy:.1f}%, test acc {100 * self.test_accuracy:.1f}% "
                f"({self.seconds:.1f} s)")


# ---------------------------------------------------------------------------- models
def softmax_regression(n_features: int, n_classes: int, convention="damadi-mean") -> Network:
    r"""One layer, :math:`\hat{\mathbf y} = \operatorname{softmax}(\mathbf W^\top\mathbf x + \mathbf b)`, cross entropy (Damadi Fig. 4)."""
    conv = TRAINING_CONVENTION if convention == "damadi-mean" else get_convention(convention)
    return Network([Dense(n_classes), Softmax()], "cross_entropy", n_features, conv,
                   name=f"softmax regression {n_features}->{n_classes}")


def two_layer_network(n_features: int, n_hidden: int, n_classes: int, activation: str = "sigmoid",
                      convention="damadi-mean") -> Network:
    r"""Two layers :math:`n_0\to n_1\to n_2`, hidden activation ``activation``, softmax + cross entropy (Damadi Fig. 5)."""
    conv = TRAINING_CONVENTION if convention == "damadi-mean" else get_convention(convention)
    act = layer_class(activation)
    if not getattr(act, "elementwise", False):
        raise SpecError(f"two_layer_network: activation must be elementwise (relu, sigmoid, tanh, …), received {activation!r}")
    return Network([Dense(n_hidden), act(), Dense(n_classes), Softmax()], "cross_entropy", n_features, conv,
                   name=f"two-layer {n_features}->{n_hidden}->{n_classes} ({activation})")


# ---------------------------------------------------------------------------- gradients and metrics
def _to_layout(network: Network, X: np.ndarray) -> np.ndarray:
    """Batch-first array to the convention's batch layout."""
    return X if network.convention.batch_axis == "first" else np.moveaxis(X, 0, -1)


def explicit_gradient(network: Network, X, Y, params, method: str = "chain") -> np.ndarray:
    r"""θ-vector gradient :math:`r\sum_i(\mathbf J_\theta\mathbf z_i^{[L]})^\top\nabla_{\mathbf z_i^{[L]}}\ell_i`.

    ``X``, ``Y`` are laid out per the convention; ``method`` is one of :data:`METHODS`.
    """
    if method == "chain":
        return network.gradient(X, Y, params, method="chain").vector
    if method == "operator":
        return network.gradient(X, Y, params, method="operator").vector
    if method == "jacobian":
        from ..engine.per_sample import batch_jacobian

        J = batch_jacobian(network, X, params)
        D = network.delta(X, Y, params)
        if J.ndim == 2:  # one sample
            return J.T @ D
        N, nL, P = J.shape
        return (D.reshape(N * nL) @ J.reshape(N * nL, P)) * network.reduce_factor(N)
    raise ValueError(f"explicit_gradient: method must be one of {METHODS}, received {method!r}")


def _predict_batch_first(network: Network, X: np.ndarray, params) -> np.ndarray:
    out = network.predict(_to_layout(network, X), params)
    return out if network.convention.batch_axis == "first" else out.T


def accuracy(network: Network, params, X: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose largest output is the true class; ``X`` batch-first ``(N, n)``."""
    X = np.asarray(X, dtype=float)
    labels = np.asarray(labels)
    if X.ndim != 2 or labels.shape != (X.shape[0],):
        raise DataError(f"accuracy: expected X of shape (N, n) and N labels, received {X.shape} and {labels.shape}")
    return float(np.mean(np.argmax(_predict_batch_first(network, X, params), axis=1) == labels))


def _mean_loss(network: Network, X: np.ndarray, Y: np.ndarray, params) -> float:
    value = network.loss_value(_to_layout(network, X), _to_layout(network, Y), params)
    # loss_value is r Σ_i ℓ_i (r from the convention's reduction); the mean per sample is Σ_i ℓ_i / N
    return value / (network.reduce_factor(X.shape[0]) * X.shape[0])


def train(network: Network, data: Dataset, epochs: int, lr: float, batch_size: int | None = None, seed: int = 0,
          method: str = "chain", params: dict | None = None,
          callback: Callable[[int, float], None] | None = None) -> TrainingResult:
    r"""Train ``network`` on ``data`` by (stochastic) gradient descent with explicit-chain gradients.

    Parameters
    ----------
    network : Network
        Its input size must be ``data.n_features`` and its output size ``data.n_classes``.
    data : Dataset
    epochs : int
        Passes over the training set (``epochs >= 0``; 0 only evaluates).
    lr : float
        Step size :math:`\eta > 0`.
    batch_size : int, optional
        ``None``: full-batch gradient descent; otherwise SGD with this mini-batch size.
    seed : int
        Seeds the initial parameters (``network.init_params(seed)``) and the mini-batch order.
    method : {"chain", "jacobian", "operator"}
        How the explicit chain is evaluated (see the module docstring).
    params : dict, optional
        Initial parameters (default: ``network.init_params(seed)``).
    callback : callable, optional
        Called as ``callback(epoch, train_loss)`` after every epoch.
    """
    if not isinstance(network, Network):
        raise TypeError(f"train: expected a Network, received {type(network).__name__}")
    if not isinstance(data, Dataset):
        raise TypeError(f"train: expected a Dataset, received {type(data).__name__}")
    if network.input_shape != (data.n_features,) or network.n_out != data.n_classes:
        raise DataError(
            f"train: network {network.name!r} maps {network.input_shape} -> ({network.n_out},), but data set "
            f"{data.name!r} has {data.n_features} features and {data.n_classes} classes"
        )
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise DataError(f"train: epochs must be a non-negative integer, received {epochs!r}")
    if not (np.isfinite(lr) and lr > 0):
        raise DataError(f"train: lr must be positive and finite, received {lr!r}")
    N = data.X_train.shape[0]
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or not 1 <= batch_size <= N):
        raise DataError(f"train: batch_size must be None or an integer in 1..{N}, received {batch_size!r}")
    if method not in METHODS:
        raise ValueError(f"train: method must be one of {METHODS}, received {method!r}")

    rng = np.random.default_rng(seed)
    params = network.init_params(seed) if params is None else params
    theta = network.pack(params).astype(float)
    Xtr, Ytr, Xte, Yte = data.X_train, data.Y_train, data.X_test, data.Y_test
    train_loss = [_mean_loss(network, Xtr, Ytr, params)]
    test_loss = [_mean_loss(network, Xte, Yte, params)]
    t0 = time.perf_counter()
    for epoch in progress(range(1, epochs + 1), total=epochs, desc="training"):
        if batch_size is None:
            batches = [np.arange(N)]
        else:
            order = rng.permutation(N)
            batches = [order[k:k + batch_size] for k in range(0, N, batch_size)]
        for idx in batches:
            if not np.all(np.isfinite(theta)):
                break
            p = network.unpack(theta)
            try:
                g = explicit_gradient(network, _to_layout(network, Xtr[idx]), _to_layout(network, Ytr[idx]), p, method)
            except DataError as exc:  # a non-finite loss or gradient: the iteration left the finite range
                raise DataError(f"train: the iteration diverged at epoch {epoch} (lr {lr} too large?): {exc}") from None
            theta = theta - lr * g
        if not np.all(np.isfinite(theta)):
            raise DataError(f"train: the parameters overflowed at epoch {epoch}: the iteration diverged (lr {lr} too large?)")
        params = network.unpack(theta)
        try:
            train_loss.append(_mean_loss(network, Xtr, Ytr, params))
            test_loss.append(_mean_loss(network, Xte, Yte, params))
        except DataError as exc:
            raise DataError(f"train: the loss diverged at epoch {epoch} (lr {lr} too large?): {exc}") from None
        if not np.isfinite(train_loss[-1]):
            raise DataError(f"train: the loss diverged at epoch {epoch} (lr {lr} too large?)")
        if callback is not None:
            callback(epoch, train_loss[-1])
    seconds = time.perf_counter() - t0
    return TrainingResult(network.name, data.name, method, int(epochs), float(lr), batch_size, int(seed),
                          np.array(train_loss), np.array(test_loss), accuracy(network, params, Xtr, data.y_train),
                          accuracy(network, params, Xte, data.y_test), params, seconds)


def compare_models(data: Dataset, epochs: int | None = None, lr: float | None = None,
                   batch_size: int | None | str = "default", hidden: int | None = None,
                   activation: str | None = None, seed: int = 0, method: str = "chain") -> list[TrainingResult]:
    """Softmax regression vs a two-layer network on ``data`` with the same optimizer and seed.

    Unspecified hyper-parameters come from :data:`DEFAULTS` for the data set (iris: 4→5→3
    sigmoid as Damadi Fig. 5, full batch; digits: 64→32→10 sigmoid, SGD with batch 32).
    Returns ``[softmax_regression_result, two_layer_result]``.
    """
    d = dict(DEFAULTS.get(data.name, DEFAULTS["digits"]))
    epochs = d["epochs"] if epochs is None else epochs
    lr = d["lr"] if lr is None else lr
    batch_size = d["batch_size"] if batch_size == "default" else batch_size
    hidden = d["hidden"] if hidden is None else hidden
    activation = d["activation"] if activation is None else activation
    models = [softmax_regression(data.n_features, data.n_classes),
              two_layer_network(data.n_features, hidden, data.n_classes, activation)]
    return [train(m, data, epochs, lr, batch_size, seed, method) for m in models]
