"""Real data (jacobian_bp.uses.datasets) and training with explicit-chain gradients (jacobian_bp.uses.training)."""
import numpy as np
import pytest

import jacobian_bp as jb
from jacobian_bp.uses.datasets import Dataset, load_dataset, load_digits, load_iris, one_hot, stratified_split
from jacobian_bp.uses.training import (METHODS, TRAINING_CONVENTION, accuracy, compare_models, explicit_gradient,
                                  softmax_regression, train, two_layer_network)

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def iris():
    return load_iris()


# ---------------------------------------------------------------------------- data
def test_iris_split_is_stratified_fixed_and_standardized(iris):
    from sklearn.datasets import load_iris as sk_iris

    raw = sk_iris()
    assert iris.X_train.shape == (120, 4) and iris.X_test.shape == (30, 4)
    assert np.bincount(iris.y_test).tolist() == [10, 10, 10]
    assert np.bincount(iris.y_train).tolist() == [40, 40, 40]
    np.testing.assert_allclose(iris.X_train.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(iris.X_train.std(0), 1, atol=1e-12)
    # every standardized row is an affine image of a distinct raw row with the same label
    train, test = stratified_split(raw.target, 0.2, 0)
    assert np.intersect1d(train, test).size == 0 and np.union1d(train, test).size == 150
    sd = raw.data[train].std(0)
    np.testing.assert_allclose(iris.X_test, (raw.data[test] - raw.data[train].mean(0)) / sd, atol=1e-12)
    np.testing.assert_array_equal(iris.y_test, raw.target[test])
    again = load_iris()
    np.testing.assert_array_equal(again.X_train, iris.X_train)
    other = load_iris(seed=1)
    assert not np.array_equal(other.y_test, iris.y_test) or not np.array_equal(other.X_test, iris.X_test)
    assert iris.class_names == ("setosa", "versicolor", "virginica")
    np.testing.assert_array_equal(iris.Y_train.argmax(1), iris.y_train)


def test_digits_split():
    d = load_digits(test_fraction=0.25, seed=3)
    assert d.n_features == 64 and d.n_classes == 10
    assert d.X_train.shape[0] + d.X_test.shape[0] == 1797
    counts = np.bincount(d.y_test, minlength=10)
    full = counts + np.bincount(d.y_train, minlength=10)
    np.testing.assert_array_equal(counts, np.round(0.25 * full).astype(int))
    assert np.all(np.isfinite(d.X_train)) and np.all(np.isfinite(d.X_test))  # constant border pixels are only centred
    assert "digits" in d.describe()


def test_data_bad_input():
    with pytest.raises(jb.DataError, match="unknown data set"):
        load_dataset("mnist")
    with pytest.raises(jb.DataError, match="strictly between 0 and 1"):
        stratified_split(np.array([0, 1, 0, 1]), 1.0)
    with pytest.raises(jb.DataError, match="both must be positive"):
        stratified_split(np.array([0, 0, 0, 1]), 0.2)
    with pytest.raises(jb.DataError, match="labels must lie in 0..2"):
        one_hot(np.array([0, 3]), 3)
    with pytest.raises(jb.DataError, match="integer labels"):
        one_hot(np.array([0.5]), 3)
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])


# ---------------------------------------------------------------------------- gradients on real data
def test_explicit_gradients_agree_with_each_other_and_torch(iris):
    net = two_layer_network(4, 5, 3)
    assert net.convention == TRAINING_CONVENTION and net.convention.reduction == "mean"
    p = net.init_params(0)
    X, Y = iris.X_train[:17], iris.Y_train[:17]
    grads = {m: explicit_gradient(net, X, Y, p, m) for m in METHODS}
    np.testing.assert_allclose(grads["jacobian"], grads["chain"], atol=1e-14)
    np.testing.assert_allclose(grads["operator"], grads["chain"], atol=1e-14)
    torch_oracle = pytest.importorskip("jacobian_bp.oracles.torch_oracle")
    pytest.importorskip("torch")
    _, g = torch_oracle.torch_loss_and_grad(net, X, Y, net.canonical_params(p))
    np.testing.assert_allclose(grads["chain"], net.pack_canonical(g), atol=1e-14)
    with pytest.raises(ValueError, match="method must be one of"):
        explicit_gradient(net, X, Y, p, "autograd")


def test_training_methods_follow_the_same_trajectory(iris):
    """Three evaluations of the explicit chain give the same SGD iterates (to rounding)."""
    res = {m: train(two_layer_network(4, 5, 3), iris, epochs=3, lr=0.3, batch_size=16, seed=2, method=m) for m in METHODS}
    for m in ("jacobian", "operator"):
        np.testing.assert_allclose(res[m].train_loss, res["chain"].train_loss, rtol=1e-12)
        for k in res["chain"].params:
            np.testing.assert_allclose(res[m].params[k], res["chain"].params[k], atol=1e-12)


def test_full_batch_gd_step_is_theta_minus_lr_gradient(iris):
    net = softmax_regression(4, 3)
    p0 = net.init_params(5)
    r = train(net, iris, epochs=1, lr=0.1, seed=5)
    expect = net.pack(p0) - 0.1 * net.gradient(iris.X_train, iris.Y_train, p0).vector
    np.testing.assert_allclose(net.pack(r.params), expect, atol=1e-14)
    # the recorded losses are the mean cross entropy, computed here independently
    def mean_ce(params, X, y):
        W, b = params["W1"], params["b1"]  # Damadi layout: z = Wᵀx + b
        Z = X @ W + b
        Z = Z - Z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(Z).sum(1)) - Z[np.arange(len(y)), y]))
    assert r.train_loss[0] == pytest.approx(mean_ce(p0, iris.X_train, iris.y_train), rel=1e-12)
    assert r.train_loss[1] == pytest.approx(mean_ce(r.params, iris.X_train, iris.y_train), rel=1e-12)
    assert r.test_loss[1] == pytest.approx(mean_ce(r.params, iris.X_test, iris.y_test), rel=1e-12)
    pred = (iris.X_test @ r.params["W1"] + r.params["b1"]).argmax(1)
    assert r.test_accuracy == pytest.approx(np.mean(pred == iris.y_test))
    assert accuracy(net, r.params, iris.X_test, iris.y_test) == r.test_accuracy


def test_sgd_is_reproducible_and_seeded(iris):
    a = train(softmax_regression(4, 3), iris, epochs=2, lr=0.2, batch_size=10, seed=1, method="operator")
    b = train(softmax_regression(4, 3), iris, epochs=2, lr=0.2, batch_size=10, seed=1, method="operator")
    c = train(softmax_regression(4, 3), iris, epochs=2, lr=0.2, batch_size=10, seed=2, method="operator")
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    assert not np.array_equal(a.train_loss, c.train_loss)


def test_training_learns_iris():
    """Softmax regression and the 4-5-3 network of Damadi Fig. 5 both learn iris: the loss falls
    and the test accuracy on the fixed split beats chance (1/3) by far."""
    data = load_iris()
    results = compare_models(data, epochs=150, method="operator")
    assert [r.model for r in results] == ["softmax regression 4->3", "two-layer 4->5->3 (sigmoid)"]
    for r in results:
        assert r.train_loss[-1] < 0.3 * r.train_loss[0]
        assert np.all(np.diff(r.train_loss) < 1e-12)  # full-batch GD with a small step: monotone
        assert r.test_accuracy >= 0.85 and r.train_accuracy >= 0.9
        assert "test acc" in r.summary()


def test_park_layout_training(iris):
    """A batch-last convention (Park) trains identically to the batch-first one."""
    a = train(softmax_regression(4, 3, "park"), iris, epochs=2, lr=0.1, seed=0, method="chain")
    b = train(softmax_regression(4, 3, "pytorch"), iris, epochs=2, lr=0.1, seed=0, method="chain")
    # same canonical model (both out x in, rows stacked, mean); Park's MSE scale is irrelevant for CE
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=1e-12)
    assert a.test_accuracy == b.test_accuracy


def test_training_bad_input(iris):
    net = softmax_regression(4, 3)
    with pytest.raises(jb.DataError, match="has 4 features and 3 classes"):
        train(softmax_regression(5, 3), iris, 1, 0.1)
    with pytest.raises(jb.DataError, match="lr must be positive"):
        train(net, iris, 1, 0.0)
    with pytest.raises(jb.DataError, match="epochs must be a non-negative integer"):
        train(net, iris, -1, 0.1)
    with pytest.raises(jb.DataError, match="batch_size must be None or an integer in 1..120"):
        train(net, iris, 1, 0.1, batch_size=0)
    with pytest.raises(ValueError, match="method must be one of"):
        train(net, iris, 1, 0.1, method="magic")
    with pytest.raises(TypeError, match="expected a Dataset"):
        train(net, (iris.X_train, iris.y_train), 1, 0.1)
    with np.errstate(all="ignore"), pytest.raises(jb.DataError, match="diverged"):
        train(net, iris, 3, 1e308)
    with pytest.raises(jb.SpecError, match="elementwise"):
        two_layer_network(4, 5, 3, activation="softmax")
    assert isinstance(iris, Dataset)
