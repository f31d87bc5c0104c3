r"""Small real data sets shipped with scikit-learn, with a fixed stratified train/test split.

* ``iris`` -- 150 flowers, 4 features, 3 classes (the problem of Damadi §3.1, Fig. 4);
* ``digits`` -- 1797 handwritten digits as 8×8 images (64 features, values 0..16), 10 classes.

Both come with scikit-learn (no download).  scikit-learn is an optional dependency
(``pip install "jacobian_bp[data]"``), imported only when a data set is loaded.

The split is ours, not scikit-learn's, so that it does not change between versions: for
each class ``c`` with :math:`n_c` samples, a permutation drawn from
``numpy.random.default_rng(seed)`` puts :math:`\operatorname{round}(f\,n_c)` of them in the
test set (``f = test_fraction``), so every class keeps its proportion.  Features are then
standardized with the *training* mean and standard deviation (a feature that is constant
on the training set -- digit pixels at the border -- is only centred).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError

__all__ = ["Dataset", "load_dataset", "load_iris", "load_digits", "stratified_split", "one_hot", "DATASETS"]

DATASETS = ("iris", "digits")


@dataclass(frozen=True)
class Dataset:
    """A classification data set split into train and test parts (batch-first arrays).

    Attributes
    ----------
    name : str
    X_train, X_test : ndarray, shape (N, n_features)
    y_train, y_test : ndarray of int, shape (N,)
        Class indices ``0 … n_classes-1``.
    class_names, feature_names : tuple of str
    seed : int
        The seed of the split.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    seed: int = 0

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def Y_train(self) -> np.ndarray:
        """One-hot training targets, ``(N_train, n_classes)``."""
        return one_hot(self.y_train, self.n_classes)

    @property
    def Y_test(self) -> np.ndarray:
        """One-hot test targets, ``(N_test, n_classes)``."""
        return one_hot(self.y_test, self.n_classes)

    def describe(self) -> str:
        counts = np.bincount(self.y_test, minlength=self.n_classes)
        return (f"{self.name}: {self.n_features} features, {self.n_classes} classes, "
                f"{len(self.y_train)} train / {len(self.y_test)} test (test per class {counts.tolist()}, seed {self.seed})")


def one_hot(labels, n_classes: int) -> np.ndarray:
    """Rows :math:`\\mathbf e_{y_i}^\\top`: ``(N, n_classes)`` from integer labels ``0 … n_classes-1``."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"one_hot: expected a 1-D array of integer labels, received dtype {labels.dtype} shape {labels.shape}")
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise DataError(f"one_hot: n_classes must be a positive integer, received {n_classes!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"one_hot: labels must lie in 0..{n_classes - 1}, received range {labels.min()}..{labels.max()}")
    return np.eye(int(n_classes))[labels]


def stratified_split(labels, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""Indices ``(train, test)`` with :math:`\operatorname{round}(f\,n_c)` test samples of every class ``c``.

    Both index arrays are sorted.  Raises :class:`~jacobian_bp.errors.DataError` when
    ``test_fraction`` is not in (0, 1) or a class would have no training or no test sample.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise DataError(f"stratified_split: expected a non-empty 1-D label array, received shape {labels.shape}")
    if not (0.0 < float(test_fraction) < 1.0):
        raise DataError(f"stratified_split: test_fraction must lie strictly between 0 and 1, received {test_fraction!r}")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(float(test_fraction) * idx.size))
        if k == 0 or k == idx.size:
            raise DataError(
                f"stratified_split: class {c!r} has {idx.size} samples; test_fraction {test_fraction} leaves "
                f"{k} for testing and {idx.size - k} for training (both must be positive)"
            )
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(labels.size), test_idx)
    return train_idx, test_idx


def _sklearn_datasets():
    try:
        from sklearn import datasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "jacobian_bp.uses.datasets needs scikit-learn for its bundled data sets (iris, digits); "
            'install the optional extra: pip install "jacobian_bp[data]"'
        ) from exc
    return datasets


def _make(name: str, X: np.ndarray, y: np.ndarray, class_names, feature_names, test_fraction: float, seed: int,
          standardize: bool) -> Dataset:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    tr, te = stratified_split(y, test_fraction, seed)
    Xtr, Xte = X[tr], X[te]
    if standardize:
        mu = Xtr.mean(axis=0)
        sd = Xtr.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        Xtr = (Xtr - mu) / sd
        Xte = (Xte - mu) / sd
    return Dataset(name, Xtr, y[tr], Xte, y[te], tuple(str(c) for c in class_names),
                   tuple(str(f) for f in feature_names), int(seed))


def load_iris(test_fraction: float = 0.2, seed: int = 0, standardize: bool = True) -> Dataset:
    """Fisher's iris (150 × 4, 3 classes) with a stratified split (default 120 train / 30 test)."""
    raw = _sklearn_datasets().load_iris()
    return _make("iris", raw.data, raw.target, raw.target_names, raw.feature_names, test_fraction, seed, standardize)


def load_digits(test_fraction: float = 0.2, seed: int = 0, standardize: bool = True) -> Dataset:
    """The 8×8 digits (1797 × 64, 10 classes) with a stratified split (default 1438 train / 359 test)."""
    raw = _sklearn_datasets().load_digits()
    names = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    return _make("digits", raw.data, raw.target, raw.target_names, names, test_fraction, seed, standardize)


def load_dataset(name: str, test_fraction: float = 0.2, seed: int = 0, standardize: bool = True) -> Dataset:
    """Load ``"iris"`` or ``"digits"`` (see :func:`load_iris`, :func:`load_digits`)."""
    if name == "iris":
        return load_iris(test_fraction, seed, standardize)
    if name == "digits":
        return load_digits(test_fraction, seed, standardize)
    raise DataError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
