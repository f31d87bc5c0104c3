"""MaxPool2d, AvgPool2d and Flatten against independent oracles.

Oracles: a NumPy reshape oracle for non-overlapping windows, central finite
differences (float64), PyTorch ``max_pool2d`` / ``avg_pool2d`` autograd when installed
(``count_include_pad=True``, PyTorch's default), and hand-written tie cases.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from jacobian_bp.errors import ShapeError, SpecError
from jacobian_bp.layers import layer_class
from jacobian_bp.layers.flatten import Flatten
from jacobian_bp.layers.pooling import AvgPool2d, MaxPool2d
from jacobian_bp.backend.operators import Identity, Sparse
from conftest import fd_jacobian

POOLS = {"max": MaxPool2d, "avg": AvgPool2d}




def torch_pool(kind, x, k, s, p, count_include_pad=True):
    """torch forward and Jacobian (float64) of one sample ``x`` (``(C, H, W)``)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    def f(t):
        if kind == "max":
            return F.max_pool2d(t[None], k, s, p)[0]
        return F.avg_pool2d(t[None], k, s, p, count_include_pad=count_include_pad)[0]

    xt = torch.tensor(x)
    z = f(xt).numpy()
    J = torch.autograd.functional.jacobian(f, xt, vectorize=True).reshape(z.size, x.size).numpy()
    return z, J


CONFIGS = {
    "k2s2": dict(shape=(2, 6, 4), k=2, s=None, p=0),
    "k3s2p1": dict(shape=(2, 7, 6), k=3, s=2, p=1),
    "k3s1": dict(shape=(1, 5, 5), k=3, s=1, p=0),
    "rect": dict(shape=(3, 5, 7), k=(2, 3), s=(1, 2), p=(1, 1)),
    "lists": dict(shape=(2, 9, 8), k=[3, 2], s=[3, 1], p=[1, 0]),
}


def make(kind, cfg):
    layer = POOLS[kind](cfg["k"], cfg["s"], cfg["p"])
    layer.build(cfg["shape"])
    return layer


# ----------------------------------------------------------------------------- forward and Jacobians


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_forward_nonoverlapping_matches_reshape_oracle(kind):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 2, 6, 8))
    layer = POOLS[kind]((2, 4))
    assert layer.build((2, 6, 8)) == (2, 3, 2)
    blocks = X.reshape(3, 2, 3, 2, 2, 4)
    ref = blocks.max(axis=(3, 5)) if kind == "max" else blocks.mean(axis=(3, 5))
    np.testing.assert_allclose(layer.forward(X, {}), ref, atol=1e-15)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_and_jacobian_match_torch(kind, name):
    cfg = CONFIGS[name]
    layer = make(kind, cfg)
    x = np.random.default_rng(len(name)).standard_normal(cfg["shape"])
    z_t, J_t = torch_pool(kind, x, layer.kernel_size, layer.stride, layer.padding)
    z = layer.forward(x[None], {})[0]
    np.testing.assert_allclose(z, z_t, atol=1e-14)
    J = layer.jac_input(x, z, {})
    assert isinstance(J, Sparse) and J.shape == (layer.out_size, layer.in_size)
    np.testing.assert_allclose(J.to_dense(), J_t, atol=1e-14)
    assert layer.jac_params(x, z, {}) == {}


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_jacobian_matches_finite_differences(kind, name):
    cfg = CONFIGS[name]
    layer = make(kind, cfg)
    # distinct entries, well separated: no ties, so max pooling is differentiable
    rng = np.random.default_rng(1)
    x = rng.permutation(np.prod(cfg["shape"])).reshape(cfg["shape"]) * 0.1 - 2.0
    J = layer.jac_input(x, None, {}).to_dense()
    np.testing.assert_allclose(J, fd_jacobian(lambda a: layer.forward(a[None], {}), x, 1e-4), atol=1e-9)


def test_max_jacobian_is_a_selection_matrix():
    layer = make("max", CONFIGS["k3s2p1"])
    x = np.random.default_rng(2).standard_normal(CONFIGS["k3s2p1"]["shape"])
    J = layer.jac_input(x, None, {}).to_sparse()
    assert J.nnz == layer.out_size
    np.testing.assert_array_equal(np.diff(J.indptr), 1)
    np.testing.assert_array_equal(J.data, 1.0)
    np.testing.assert_allclose(J @ x.ravel(), layer.forward(x[None], {})[0].ravel())


# ----------------------------------------------------------------------------- tie rule and padding


def test_tie_rule_first_in_row_major_window_order():
    """Constant input: every window is a tie; the first cell (top-left) of each window wins."""
    layer = MaxPool2d(2)
    layer.build((1, 4, 4))
    J = layer.jac_input(np.ones((1, 4, 4)), None, {}).to_dense()
    expect = np.zeros((4, 16))
    for r, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        expect[r, (2 * i) * 4 + 2 * j] = 1.0
    np.testing.assert_array_equal(J, expect)
    # a tie between the 2nd and 4th cells of a window: the 2nd (row-major first) wins
    x = np.zeros((1, 2, 2))
    x[0, 0, 1] = x[0, 1, 1] = 5.0
    layer = MaxPool2d(2)
    layer.build((1, 2, 2))
    np.testing.assert_array_equal(layer.jac_input(x, None, {}).to_dense(), [[0, 1, 0, 0]])


def test_tie_rule_agrees_with_torch_with_overlapping_windows():
    layer = MaxPool2d(3, stride=1, padding=1)
    layer.build((2, 4, 5))
    x = np.full((2, 4, 5), 0.7)
    _, J_t = torch_pool("max", x, 3, 1, 1)
    J = layer.jac_input(x, None, {}).to_dense()
    np.testing.assert_array_equal(J, J_t)
    # the batched product accumulates overlapping selections
    G = np.ones((1, layer.out_size))
    np.testing.assert_array_equal(layer.vjp_input(x[None], None, G, {})[0], J.sum(0))


def test_max_padding_is_minus_infinity():
    """All-negative input with padding: the padding is never the max (zero padding would be)."""
    layer = MaxPool2d(3, stride=2, padding=1)
    layer.build((1, 5, 5))
    x = -1.0 - np.random.default_rng(3).random((1, 5, 5))
    z = layer.forward(x[None], {})[0]
    assert np.all(z < -1.0)
    z_t, J_t = torch_pool("max", x, 3, 2, 1)
    np.testing.assert_allclose(z, z_t)
    np.testing.assert_array_equal(layer.jac_input(x, z, {}).to_dense(), J_t)


def test_max_window_of_minus_infinity_selects_a_real_cell():
    layer = MaxPool2d(2, stride=2, padding=1)
    layer.build((1, 3, 3))
    x = np.full((1, 3, 3), -np.inf)
    J = layer.jac_input(x, None, {}).to_sparse()
    assert J.shape == (4, 9) and J.nnz == 4
    # corner window (0,0) covers only the real cell (0,0); window (1,1) starts at real cell (1,1)
    np.testing.assert_array_equal(J.indices, [0, 1, 3, 4])


def test_avg_pool_counts_padding_in_the_divisor():
    """count_include_pad=True: the corner window with padding 1 and kernel 2 holds one real cell."""
    layer = AvgPool2d(2, stride=2, padding=1)
    layer.build((1, 4, 4))
    x = np.arange(16.0).reshape(1, 4, 4)
    z = layer.forward(x[None], {})[0]
    assert z[0, 0, 0] == pytest.approx(x[0, 0, 0] / 4)
    J = layer.jac_input(x, z, {}).to_dense()
    np.testing.assert_array_equal(np.unique(J[J != 0]), [0.25])
    z_t, _ = torch_pool("avg", x, 2, 2, 1, count_include_pad=True)
    np.testing.assert_allclose(z, z_t)
    z_f, _ = torch_pool("avg", x, 2, 2, 1, count_include_pad=False)
    assert not np.allclose(z, z_f)


# ----------------------------------------------------------------------------- batched products


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_vjp_and_left_products_match_jacobians(kind, name):
    cfg = CONFIGS[name]
    layer = make(kind, cfg)
    rng = np.random.default_rng(4)
    A = rng.standard_normal((3,) + cfg["shape"])
    A[1] = np.round(A[1])  # plenty of ties in sample 1
    O = layer.forward(A, {})
    G = rng.standard_normal((3, layer.out_size))
    P = rng.standard_normal((3, 2, layer.out_size))
    VI = layer.vjp_input(A, O, G, {})
    LJ = layer.left_jac_input(A, O, P, {})
    assert VI.shape == (3, layer.in_size) and LJ.shape == (3, 2, layer.in_size)
    for i in range(3):
        J = layer.jac_input(A[i], O[i], {}).to_dense()
        np.testing.assert_allclose(VI[i], J.T @ G[i], atol=1e-14)
        np.testing.assert_allclose(LJ[i], P[i] @ J, atol=1e-14)
    assert layer.vjp_params(A, O, G, {}) == {}


# ----------------------------------------------------------------------------- validation


def test_pool_validation_errors():
    with pytest.raises(SpecError, match=r"maxpool2d layer: padding must be at most half the kernel size.*<= 1.*received 2"):
        MaxPool2d(3, padding=2)
    with pytest.raises(SpecError, match="stride must be >= 1"):
        AvgPool2d(2, stride=0)
    with pytest.raises(SpecError, match="padding must be >= 0"):
        AvgPool2d(2, padding=-1)
    with pytest.raises(SpecError, match="kernel_size must be an integer"):
        MaxPool2d("2")
    layer = MaxPool2d(5)
    layer.label = "layer 3 (maxpool2d)"
    with pytest.raises(ShapeError, match=r"layer 3 \(maxpool2d\): kernel 5 is larger than the padded input along the width: expected a kernel extent <= 4.*received 5"):
        layer.build((2, 6, 4))
    with pytest.raises(ShapeError, match=r"layer 3 \(maxpool2d\): expected a per-sample input of shape \(channels, height, width\), received \(6, 4\)"):
        layer.build((6, 4))
    ok = AvgPool2d(2)
    ok.build((1, 4, 4))
    with pytest.raises(ShapeError, match=r"expected an input batch of shape \(N, 1, 4, 4\), received \(1, 4, 4\)"):
        ok.forward(np.zeros((1, 4, 4)), {})


def test_registry_and_describe():
    assert layer_class("maxpool2d") is MaxPool2d and layer_class("avgpool2d") is AvgPool2d
    layer = layer_class("maxpool2d")(**{"kernel_size": [2, 3], "stride": [2, 1], "padding": [1, 1]})
    assert layer.build((1, 6, 6)) == (1, 4, 6)
    assert layer.describe() == "maxpool2d k2x3 s2x1 p1x1"
    assert MaxPool2d(2).stride == (2, 2)  # stride defaults to the kernel
    assert not MaxPool2d(2).parametric and MaxPool2d(2).param_names == ()


# ----------------------------------------------------------------------------- property test

pool_geoms = st.fixed_dictionaries({
    "kind": st.sampled_from(["max", "avg"]), "c": st.integers(1, 2),
    "h": st.integers(1, 7), "w": st.integers(1, 7), "kh": st.integers(1, 4), "kw": st.integers(1, 4),
    "sh": st.integers(1, 3), "sw": st.integers(1, 3), "ph": st.integers(0, 2), "pw": st.integers(0, 2),
    "ints": st.booleans(), "seed": st.integers(0, 2**16),
})


@settings(max_examples=30, deadline=None)
@given(pool_geoms)
def test_property_random_pool_geometries_vs_torch(g):
    pytest.importorskip("torch")
    assume(2 * g["ph"] <= g["kh"] and 2 * g["pw"] <= g["kw"])
    assume(g["kh"] <= g["h"] + 2 * g["ph"] and g["kw"] <= g["w"] + 2 * g["pw"])
    layer = POOLS[g["kind"]]((g["kh"], g["kw"]), (g["sh"], g["sw"]), (g["ph"], g["pw"]))
    layer.build((g["c"], g["h"], g["w"]))
    x = np.random.default_rng(g["seed"]).standard_normal((g["c"], g["h"], g["w"]))
    if g["ints"]:
        x = np.round(x)  # ties: the documented rule must agree with torch
    z_t, J_t = torch_pool(g["kind"], x, layer.kernel_size, layer.stride, layer.padding)
    z = layer.forward(x[None], {})[0]
    np.testing.assert_allclose(z, z_t, atol=1e-14)
    np.testing.assert_allclose(layer.jac_input(x, z, {}).to_dense(), J_t, atol=1e-14)


# ----------------------------------------------------------------------------- flatten


def test_flatten_is_row_major_with_identity_jacobian():
    layer = layer_class("flatten")()
    assert isinstance(layer, Flatten)
    assert layer.build((2, 3, 4)) == (24,)
    X = np.arange(48.0).reshape(2, 2, 3, 4)
    O = layer.forward(X, {})
    np.testing.assert_array_equal(O, X.reshape(2, -1))
    np.testing.assert_array_equal(O[1, :4], X[1, 0, 0])  # first channel's first row first
    J = layer.jac_input(X[0], O[0], {})
    assert isinstance(J, Identity) and J.shape == (24, 24)
    np.testing.assert_allclose(J.to_dense(), fd_jacobian(lambda a: layer.forward(a[None], {}), X[0]), atol=1e-8)
    G = np.random.default_rng(0).standard_normal((2, 24))
    np.testing.assert_array_equal(layer.vjp_input(X, O, G, {}), G)
    P = np.ones((2, 3, 24))
    np.testing.assert_array_equal(layer.left_jac_input(X, O, P, {}), P)
    assert layer.describe() == "flatten 2x3x4->24"
    with pytest.raises(ShapeError, match=r"flatten: expected an input batch of shape \(N, 2, 3, 4\), received \(2, 24\)"):
        layer.forward(X.reshape(2, -1), {})


def test_symbolic_pooling_exact_average_and_clear_max_error():
    import sympy

    from jacobian_bp.layers import AvgPool2d, MaxPool2d

    a = AvgPool2d(2, stride=1, padding=1)
    a.build((1, 3, 3))
    X = np.array(sympy.symbols("x1:10", real=True), dtype=object).reshape(1, 1, 3, 3)
    out = a.forward(X, {})
    num = np.random.default_rng(0).standard_normal((1, 1, 3, 3))
    f = sympy.lambdify(list(X.ravel()), list(out.ravel()))
    np.testing.assert_allclose(f(*num.ravel()), a.forward(num, {}).ravel(), atol=1e-15)
    # exact coefficients: the corner window (padding) sees x1 only, with weight 1/4
    assert out[0, 0, 0, 0] == X[0, 0, 0, 0] / 4
    assert sympy.expand(out[0, 0, 1, 1]).coeff(X[0, 0, 0, 0]) == sympy.Rational(1, 4)
    m = MaxPool2d(2)
    m.build((1, 3, 3))
    with pytest.raises(TypeError, match="max pooling of symbolic entries is undefined"):
        m.forward(X, {})
