"""Conv2d and the Toeplitz module against independent oracles.

Oracles: ``scipy.signal.correlate2d`` / ``convolve2d`` (forward, summed over input
channels), central finite differences in float64 (every Jacobian), PyTorch autograd
(``torch.nn.functional.conv2d``, float64) when installed, and SymPy direct correlation
for Damadi's Prop. 2 example.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.signal
import scipy.sparse
import sympy
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from jacobian_bp.backend import toeplitz as tp
from jacobian_bp.errors import ShapeError, SpecError
from jacobian_bp.layers import layer_class
from jacobian_bp.layers.conv import Conv2d
from jacobian_bp.backend.operators import Kron, Sparse
from conftest import fd_jacobian

# ----------------------------------------------------------------------------- helpers


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def scipy_conv(x, K, stride=1, padding=0, dilation=1, mode="correlation"):
    """Oracle: per (filter, channel) scipy 'valid' correlation / convolution of the zero-padded
    input with the dilated kernel, summed over channels, subsampled by the stride."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    Co, Ci, kh, kw = K.shape
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    out = []
    for o in range(Co):
        acc = 0
        for c in range(Ci):
            Kd = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1))
            Kd[::dh, ::dw] = K[o, c]
            f = scipy.signal.correlate2d if mode == "correlation" else scipy.signal.convolve2d
            acc = acc + f(xp[c], Kd, mode="valid")
        out.append(acc[::sh, ::sw])
    return np.stack(out)




def make(cfg, mode="correlation", bias="tied", seed=0):
    """Build a Conv2d for ``cfg`` with random params and a random input sample."""
    rng = np.random.default_rng(seed)
    layer = Conv2d(cfg["co"], cfg["k"], cfg.get("s", 1), cfg.get("p", 0), cfg.get("d", 1), mode=mode, bias=bias)
    layer.build(cfg["in"])
    params = layer.init_params(rng)
    x = rng.standard_normal(cfg["in"])
    return layer, params, x


# every option of the issue: channels > 1, stride 2, padding 1, dilation 2, rectangular
# inputs and kernels, tuples and lists, and all of them together
CONFIGS = {
    "basic": dict(**{"in": (1, 4, 5)}, co=1, k=2),
    "channels": dict(**{"in": (3, 5, 5)}, co=2, k=3),
    "stride2": dict(**{"in": (2, 7, 6)}, co=2, k=3, s=2),
    "padding1": dict(**{"in": (2, 4, 5)}, co=3, k=3, p=1),
    "dilation2": dict(**{"in": (2, 7, 7)}, co=2, k=3, d=2),
    "rect": dict(**{"in": (2, 6, 4)}, co=2, k=(3, 2)),
    "mixed": dict(**{"in": (2, 8, 7)}, co=3, k=[3, 2], s=(2, 1), p=[1, 2], d=(1, 2)),
}
MODES = ["correlation", "convolution"]
BIASES = ["tied", "untied", "none"]


def torch_jacobians(layer, params, x):
    """Jacobians of the torch conv2d (float64) w.r.t. input, K and b, flattened (out, ...)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    g = layer.geometry

    def f(xt, Kt, bt):
        Kc = Kt.flip(-1, -2) if layer.mode == "convolution" else Kt
        z = F.conv2d(xt[None], Kc, stride=g.stride, padding=g.padding, dilation=g.dilation)[0]
        if layer.bias == "tied":
            z = z + bt[:, None, None]
        elif layer.bias == "untied":
            z = z + bt
        return z

    xt = torch.tensor(x)
    Kt = torch.tensor(params["K"])
    bt = torch.tensor(params["b"]) if "b" in params else torch.zeros(1, dtype=torch.float64)
    Jx, JK, Jb = torch.autograd.functional.jacobian(f, (xt, Kt, bt), vectorize=True)
    n = layer.out_size
    z = f(xt, Kt, bt).numpy()
    return z, Jx.reshape(n, -1).numpy(), JK.reshape((n,) + g.kernel_shape).numpy(), Jb.reshape(n, -1).numpy()


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_matches_scipy(name, mode):
    cfg = CONFIGS[name]
    layer, params, x = make(cfg, mode, "tied")
    z = layer.forward(x[None], params)[0]
    ref = scipy_conv(x, params["K"], cfg.get("s", 1), cfg.get("p", 0), cfg.get("d", 1), mode)
    ref = ref + params["b"][:, None, None]
    assert z.shape == ref.shape == layer.out_shape
    np.testing.assert_allclose(z, ref, atol=1e-12)


def test_forward_batch_and_untied_bias():
    layer, params, x = make(CONFIGS["mixed"], "correlation", "untied")
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4,) + layer.in_shape)
    Z = layer.forward(X, params)
    for i in range(4):
        ref = scipy_conv(X[i], params["K"], (2, 1), (1, 2), (1, 2)) + params["b"]
        np.testing.assert_allclose(Z[i], ref, atol=1e-12)


def test_true_convolution_is_correlation_with_flipped_kernel():
    layer_c, params, x = make(CONFIGS["channels"], "convolution", "none")
    layer_r = Conv2d(2, 3, mode="correlation", bias="none")
    layer_r.build(layer_c.in_shape)
    flipped = {"K": params["K"][:, :, ::-1, ::-1]}
    np.testing.assert_allclose(layer_c.forward(x[None], params), layer_r.forward(x[None], flipped), atol=1e-12)
    # ... and therefore differs from correlation with the same kernel (the kernel is not symmetric)
    assert not np.allclose(layer_c.forward(x[None], params), layer_r.forward(x[None], params))


# ----------------------------------------------------------------------------- Jacobians vs FD and torch


@pytest.mark.parametrize("bias", BIASES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_jacobians_match_torch_autograd(name, mode, bias):
    layer, params, x = make(CONFIGS[name], mode, bias, seed=len(name))
    z_t, Jx_t, JK_t, Jb_t = torch_jacobians(layer, params, x)
    z = layer.forward(x[None], params)[0]
    np.testing.assert_allclose(z, z_t, atol=1e-12)
    Jx = layer.jac_input(x, z, params)
    assert isinstance(Jx, Sparse) and Jx.structure == "toeplitz"
    np.testing.assert_allclose(Jx.to_dense(), Jx_t, atol=1e-12)
    n = layer.out_size
    for order in ("C", "F"):
        J = layer.jac_params(x, z, params, order)
        assert set(J) == set(layer.param_names)
        # torch's kernel Jacobian with its columns in C resp. F order of K
        JK_ref = JK_t.reshape(n, -1) if order == "C" else JK_t.transpose(0, 4, 3, 2, 1).reshape(n, -1)
        np.testing.assert_allclose(J["K"].to_dense(), JK_ref, atol=1e-12)
        if bias == "tied":
            np.testing.assert_allclose(J["b"].to_dense(), Jb_t, atol=1e-12)
        elif bias == "untied":
            Jb_ref = Jb_t if order == "C" else Jb_t.reshape((n,) + layer.out_shape).transpose(0, 3, 2, 1).reshape(n, -1)
            np.testing.assert_allclose(J["b"].to_dense(), Jb_ref, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["channels", "stride2", "padding1", "dilation2", "rect", "mixed"])
def test_jacobians_match_finite_differences(name, mode):
    for bias in ("tied", "untied"):
        layer, params, x = make(CONFIGS[name], mode, bias, seed=7)
        z = layer.forward(x[None], params)[0]

        def f_x(xx):
            return layer.forward(xx[None], params)

        def f_K(K):
            return layer.forward(x[None], dict(params, K=K))

        def f_b(b):
            return layer.forward(x[None], dict(params, b=b))

        np.testing.assert_allclose(layer.jac_input(x, z, params).to_dense(), fd_jacobian(f_x, x), atol=1e-7)
        J = layer.jac_params(x, z, params, "C")
        np.testing.assert_allclose(J["K"].to_dense(), fd_jacobian(f_K, params["K"]), atol=1e-7)
        np.testing.assert_allclose(J["b"].to_dense(), fd_jacobian(f_b, params["b"]), atol=1e-7)
        JF = layer.jac_params(x, z, params, "F")
        fdF = fd_jacobian(lambda k: f_K(k.reshape(params["K"].shape, order="F")), params["K"].ravel(order="F"))
        np.testing.assert_allclose(JF["K"].to_dense(), fdF, atol=1e-7)
        fdFb = fd_jacobian(lambda b: f_b(b.reshape(params["b"].shape, order="F")), params["b"].ravel(order="F"))
        np.testing.assert_allclose(JF["b"].to_dense(), fdFb, atol=1e-7)


def test_kernel_jacobian_is_kronecker_of_patch_matrix():
    layer, params, x = make(CONFIGS["channels"])
    JK = layer.jac_params(x, None, params, "C")["K"]
    assert isinstance(JK, Kron)
    P = tp.patch_matrix(x, 3)
    np.testing.assert_allclose(JK.to_dense(), np.kron(np.eye(2), P))
    # z = (I ⊗ P) vec_r K + bias: the layer is linear in K
    z = layer.forward(x[None], params)[0].ravel()
    np.testing.assert_allclose(JK.matvec(params["K"].ravel()) + np.repeat(params["b"], 9), z, atol=1e-12)


# ----------------------------------------------------------------------------- stackings


def col_vec(a):
    """Column stacking per channel: Vec(X_c), channels one after the other."""
    return np.asarray(a).transpose(0, 2, 1).ravel()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_both_stackings(name, mode):
    cfg = CONFIGS[name]
    layer, params, x = make(cfg, mode, "none")
    g = layer.geometry
    args = (g.in_shape, g.stride, g.padding, g.dilation, mode)
    z = layer.forward(x[None], params)[0]
    T_row = tp.toeplitz(params["K"], *args, stacking="row")
    T_col = tp.toeplitz(params["K"], *args, stacking="column")
    np.testing.assert_allclose(T_row @ x.ravel(), z.ravel(), atol=1e-12)  # Damadi: Toep(K) Vec(X^T)
    np.testing.assert_allclose(T_col @ col_vec(x), col_vec(z), atol=1e-12)
    # the two are permutations of one another
    perm_in = np.arange(g.in_size).reshape(g.in_shape).transpose(0, 2, 1).ravel()
    perm_out = np.arange(g.out_size).reshape(g.out_shape).transpose(0, 2, 1).ravel()
    np.testing.assert_array_equal(T_col.toarray(), T_row.toarray()[perm_out][:, perm_in])
    assert T_row.has_sorted_indices and T_col.has_sorted_indices
    # im2col matrix in both stackings and both kernel orders, against finite differences
    for stacking, order in itertools.product(("row", "column"), ("C", "F")):
        JK = tp.kernel_jacobian(x, g.out_channels, g.kernel, g.stride, g.padding, g.dilation, mode, stacking, order)
        vec = (lambda a: a.ravel()) if stacking == "row" else col_vec
        K0 = params["K"]

        def f(k):
            return vec(layer.forward(x[None], {"K": k.reshape(K0.shape, order=order)})[0])

        np.testing.assert_allclose(JK.toarray(), fd_jacobian(f, K0.ravel(order=order)), atol=1e-7)


def test_bias_jacobian_stackings():
    out_shape = (2, 3, 4)
    Jt = tp.bias_jacobian(out_shape, "tied", "row").toarray()
    np.testing.assert_array_equal(Jt, np.kron(np.eye(2), np.ones((12, 1))))
    np.testing.assert_array_equal(tp.bias_jacobian(out_shape, "tied", "column").toarray(), Jt)
    np.testing.assert_array_equal(tp.bias_jacobian(out_shape, "untied", "row", "C").toarray(), np.eye(24))
    # column stacking of the output and F order of b agree per channel only: check by construction
    B = np.arange(24.0).reshape(out_shape)
    J = tp.bias_jacobian(out_shape, "untied", "column", "F").toarray()
    np.testing.assert_array_equal(J @ B.ravel(order="F"), col_vec(B))
    with pytest.raises(SpecError):
        tp.bias_jacobian(out_shape, "none")


# ----------------------------------------------------------------------------- Prop. 3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["basic", "channels", "mixed"])
def test_prop3_route_equals_direct_route(name, mode):
    layer, params, x = make(CONFIGS[name], mode, "untied", seed=11)
    g = layer.geometry
    T = tp.toeplitz(params["K"], g.in_shape, g.stride, g.padding, g.dilation, mode)
    # the conv layer is a dense layer z = W^T x + b with W = Toep(K)^T and b = Vec(B)
    W = T.toarray().T
    z = layer.forward(x[None], params)[0].ravel()
    np.testing.assert_allclose(W.T @ x.ravel() + params["b"].ravel(), z, atol=1e-12)
    # d vec W / d vec K: vec W (Damadi column stacking) is linear in vec K
    D = tp.weight_map(g, mode, "C")
    np.testing.assert_array_equal(D @ params["K"].ravel(), W.ravel(order="F"))
    for order in ("C", "F"):
        J3 = tp.prop3_kernel_jacobian(x, g, mode, order).toarray()
        direct = layer.jac_params(x, None, params, order)["K"].to_dense()
        np.testing.assert_allclose(J3, direct, atol=1e-12)
        np.testing.assert_allclose(
            J3, tp.kernel_jacobian(x, g.out_channels, g.kernel, g.stride, g.padding, g.dilation, mode, "row", order).toarray(),
            atol=1e-12,
        )


# ----------------------------------------------------------------------------- Prop. 2, symbolic

PAPER_ROWS_CORRECT = [
    "k_1 k_2 0 k_3 k_4 0 0 0 0",
    "0 k_1 k_2 0 k_3 k_4 0 0 0",
    "0 0 0 k_1 k_2 0 k_3 k_4 0",
    "0 0 0 0 k_1 k_2 0 k_3 k_4",
]


def _mat(rows):
    return sympy.Matrix([[sympy.sympify(t) for t in r.split()] for r in rows])


def sympy_correlation(X, K):
    """Oracle: valid cross-correlation of two SymPy matrices, written out entry by entry."""
    m, n = X.shape
    p, q = K.shape
    return sympy.Matrix(m - p + 1, n - q + 1,
                        lambda i, j: sum(X[i + u, j + v] * K[u, v] for u in range(p) for v in range(q)))


def test_prop2_symbolic_matrix_matches_oracle_and_not_the_paper():
    M, K, X = tp.prop2_matrix()
    assert M.shape == (4, 9)
    x = sympy.Matrix(list(X))  # Vec(X^T) = (x_1, ..., x_9): X is numbered row by row
    oracle = sympy_correlation(X, K)
    assert (M * x - sympy.Matrix(list(oracle))).expand() == sympy.zeros(4, 1)
    assert M == _mat(PAPER_ROWS_CORRECT)
    printed = tp.damadi_printed_prop2()
    assert printed.row(0) == M.row(0) and printed.row(1) == M.row(1)
    assert printed.row(2) != M.row(2) and printed.row(3) != M.row(3)
    # the printed 4th row is the correct 3rd one; the correct 4th row starts at x_5
    assert printed.row(3) == M.row(2)
    assert M.row(3)[4] == sympy.Symbol("k_1")
    # the printed 3rd row, k_1 x_3 + k_2 x_4 + k_3 x_6 + k_4 x_7, is a window that wraps around
    # the end of the first image row: it is not the row of any window, under either stacking and mode
    bad = printed.row(2)
    for mode, stacking in itertools.product(tp.MODES, tp.STACKINGS):
        Mm, _, _ = tp.prop2_matrix(mode=mode, stacking=stacking)
        assert all(Mm.row(r) != bad for r in range(4))
    # the printed matrix computes something else than the convolution
    assert (printed * x - sympy.Matrix(list(oracle))).expand() != sympy.zeros(4, 1)


def test_prop2_convolution_mode_flips_the_kernel():
    M, K, X = tp.prop2_matrix(mode="convolution")
    oracle = sympy_correlation(X, K[::-1, ::-1])
    x = sympy.Matrix(list(X))
    assert (M * x - sympy.Matrix(list(oracle))).expand() == sympy.zeros(4, 1)
    assert list(M.row(0)) == [sympy.Symbol(s) if s != "0" else 0 for s in "k_4 k_3 0 k_2 k_1 0 0 0 0".split()]


def test_symbolic_jac_input_of_layer():
    layer = Conv2d(1, 2, bias="none")
    layer.build((1, 3, 3))
    ks = sympy.symbols("k_1:5")
    K = np.array(ks, dtype=object).reshape(1, 1, 2, 2)
    J = layer.jac_input(np.zeros((1, 3, 3)), None, {"K": K})
    assert J.symbolic
    assert J.to_sympy() == _mat(PAPER_ROWS_CORRECT)
    # numeric substitution equals the numeric Toeplitz matrix
    vals = dict(zip(ks, [0.5, -1.0, 2.0, 3.0]))
    Kn = np.array([0.5, -1.0, 2.0, 3.0]).reshape(1, 1, 2, 2)
    num = np.array(J.to_sympy().subs(vals), dtype=float)
    np.testing.assert_array_equal(num, layer.jac_input(None, None, {"K": Kn}).to_dense())


@pytest.mark.parametrize("bias", ["tied", "untied"])
@pytest.mark.parametrize("mode", MODES)
def test_symbolic_jacobians_match_sympy_differentiation(mode, bias):
    """All three Jacobians, exact, against SymPy's own derivative of the symbolic forward pass."""
    layer = Conv2d(2, (2, 1), stride=(1, 2), padding=1, mode=mode, bias=bias)
    layer.build((1, 2, 3))
    shapes = layer.param_shapes()

    def syms(name, shape):
        n = int(np.prod(shape))
        return np.array(sympy.symbols(f"{name}_1:{n + 1}"), dtype=object).reshape(shape)

    x = syms("x", layer.in_shape)
    params = {"K": syms("k", shapes["K"]), "b": syms("b", shapes["b"])}
    z = sympy.Matrix(list(layer.forward(x[None], params)[0].ravel()))
    assert z.shape[0] == layer.out_size
    assert layer.jac_input(x, None, params).to_sympy() == z.jacobian(list(x.ravel()))
    for order in ("C", "F"):
        J = layer.jac_params(x, None, params, order)
        for name in ("K", "b"):
            expect = z.jacobian(list(params[name].ravel(order=order)))
            assert (J[name].to_sympy() - expect).is_zero_matrix, (name, order)
            assert J[name].to_sympy() == expect  # exact: no floats such as 1.0*x_1


def test_toeplitz_sympy_matches_numeric_on_general_geometry():
    rng = np.random.default_rng(5)
    K = rng.integers(-3, 4, size=(2, 2, 2, 3)).astype(float)
    for mode, stacking in itertools.product(tp.MODES, tp.STACKINGS):
        S = tp.toeplitz_sympy(K.astype(object), (2, 4, 5), 1, 1, (1, 2), mode, stacking)
        N = tp.toeplitz(K, (2, 4, 5), 1, 1, (1, 2), mode, stacking)
        np.testing.assert_array_equal(np.array(S, dtype=float), N.toarray())


# ----------------------------------------------------------------------------- batched products


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["channels", "stride2", "padding1", "dilation2", "mixed"])
def test_vjp_and_left_products_match_jacobians(name, mode):
    for bias in BIASES:
        layer, params, _ = make(CONFIGS[name], mode, bias, seed=2)
        rng = np.random.default_rng(9)
        N = 3
        A = rng.standard_normal((N,) + layer.in_shape)
        O = layer.forward(A, params)
        G = rng.standard_normal((N, layer.out_size))
        VI = layer.vjp_input(A, O, G, params)
        VP = layer.vjp_params(A, O, G, params)
        Pm = rng.standard_normal((N, 2, layer.out_size))
        LJ = layer.left_jac_input(A, O, Pm, params)
        ref_p = {}
        for i in range(N):
            J = layer.jac_input(A[i], O[i], params).to_dense()
            np.testing.assert_allclose(VI[i], J.T @ G[i], atol=1e-12)
            np.testing.assert_allclose(LJ[i], Pm[i] @ J, atol=1e-12)
            for k, op in layer.jac_params(A[i], O[i], params, "C").items():
                ref_p[k] = ref_p.get(k, 0) + op.rmatvec(G[i])
        assert set(VP) == set(ref_p) == set(layer.param_names)
        for k in VP:
            assert VP[k].shape == (int(np.prod(layer.param_shapes()[k])),)
            np.testing.assert_allclose(VP[k], ref_p[k], atol=1e-12)


# ----------------------------------------------------------------------------- structure and memory


def test_toeplitz_memory_and_nnz_lenet_first_layer():
    rng = np.random.default_rng(0)
    K = rng.standard_normal((6, 1, 5, 5))
    T = tp.toeplitz(K, (1, 28, 28))
    assert T.shape == (6 * 24 * 24, 28 * 28)
    assert T.nnz == 6 * 24 * 24 * 25  # every window entry exactly once, no padding, no duplicates
    assert T.indices.dtype == np.int32 and T.indptr.dtype == np.int32
    nbytes = T.data.nbytes + T.indices.nbytes + T.indptr.nbytes
    assert nbytes <= 1.5 * (T.nnz * 12 + (T.shape[0] + 1) * 4)
    # every row holds the 25 kernel entries of its filter
    assert np.all(np.diff(T.indptr) == 25)
    np.testing.assert_array_equal(np.sort(T.data[:25]), np.sort(K[0, 0].ravel()))


def test_toeplitz_csr_indices_really_sorted_and_unique():
    """The row-stacked CSR is built directly (no COO round trip): check the claimed sortedness."""
    K = np.random.default_rng(1).standard_normal((3, 2, 3, 2))
    T = tp.toeplitz(K, (2, 7, 6), stride=(2, 1), padding=(1, 2), dilation=(2, 1))
    row_of = np.repeat(np.arange(T.shape[0]), np.diff(T.indptr))
    same_row = row_of[1:] == row_of[:-1]
    assert np.all(np.diff(T.indices)[same_row] > 0)
    ref = scipy.sparse.csr_array(T.toarray())
    np.testing.assert_array_equal(T.indptr, ref.indptr)  # no explicit zeros beyond structural ones
    np.testing.assert_array_equal(T.indices, ref.indices)


def test_toeplitz_nnz_with_padding_counts_only_real_entries():
    T = tp.toeplitz(np.ones((1, 1, 3, 3)), (1, 4, 4), padding=1)
    # interior output entries see 9 real inputs, edges 6, corners 4
    assert T.nnz == 4 * 9 + 8 * 6 + 4 * 4
    np.testing.assert_array_equal(T.toarray().sum(1).reshape(4, 4), [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])


def test_toeplitz_is_doubly_block_toeplitz():
    """Single channel, stride 1: T[(i,j),(h,w)] depends only on (h-i, w-j)."""
    K = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    T = tp.toeplitz(K, (5, 6)).toarray().reshape(4, 4, 5, 6)
    for i, j, h, w in itertools.product(range(4), range(4), range(5), range(6)):
        u, v = h - i, w - j
        expect = K[0, 0, u, v] if 0 <= u < 2 and 0 <= v < 3 else 0.0
        assert T[i, j, h, w] == expect


# ----------------------------------------------------------------------------- validation


def _built(layer, shape, label="layer 1 (conv2d)"):
    layer.label = label
    return layer.build(shape)


def test_kernel_larger_than_padded_input():
    with pytest.raises(ShapeError, match=r"layer 1 \(conv2d\).*kernel 5.*larger than the padded input.*height.*<= 4.*received 5"):
        _built(Conv2d(2, 5, padding=1), (1, 2, 9))
    with pytest.raises(ShapeError, match=r"dilated extent 7.*width"):
        _built(Conv2d(2, (1, 3), dilation=3), (1, 9, 6))
    with pytest.raises(ShapeError):
        tp.toeplitz(np.ones((1, 1, 4, 4)), (3, 3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(stride=0), "stride must be >= 1"),
    (dict(dilation=0), "dilation must be >= 1"),
    (dict(padding=-1), "padding must be >= 0"),
    (dict(stride=(1, 0)), "stride must be >= 1"),
    (dict(mode="full"), "mode must be"),
    (dict(bias="shared"), "bias must be"),
    (dict(kernel_size=2.5), "kernel_size must be an integer"),
    (dict(kernel_size=(2, 2, 2)), "kernel_size must be an integer or a pair"),
    (dict(out_channels=0), "out_channels must be a positive integer"),
])
def test_bad_hyperparameters(kwargs, match):
    base = dict(out_channels=2, kernel_size=3)
    base.update(kwargs)
    with pytest.raises(SpecError, match=match):
        Conv2d(**base)


def test_channel_mismatch_and_non_3d_input():
    with pytest.raises(ShapeError, match=r"layer 1 \(conv2d\): expected an input with 3 channels.*received 2 channels"):
        _built(Conv2d(4, 3, in_channels=3), (2, 8, 8))
    with pytest.raises(ShapeError, match=r"layer 1 \(conv2d\): expected a per-sample input of shape \(channels, height, width\), received \(64,\)"):
        _built(Conv2d(4, 3), (64,))
    layer = Conv2d(2, 3)
    layer.build((1, 5, 5))
    p = layer.init_params(np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"expected an input batch of shape \(N, 1, 5, 5\), received \(1, 1, 5, 6\)"):
        layer.forward(np.zeros((1, 1, 5, 6)), p)
    with pytest.raises(ShapeError, match=r"expected parameter K of shape \(2, 1, 3, 3\)"):
        layer.forward(np.zeros((1, 1, 5, 5)), {"K": np.zeros((2, 1, 2, 2)), "b": p["b"]})


def test_exact_output_size_rule():
    assert tp.output_size(7, 3, 2) == 3
    assert tp.output_size(8, 3, 2) == 3  # floor drops the last column
    with pytest.raises(ShapeError, match="not an integer under the rule 'exact'"):
        tp.output_size(8, 3, 2, who="conv", rule="exact")
    with pytest.raises(SpecError, match="rule"):
        tp.output_size(8, 3, 2, rule="ceil")


def test_spec_construction_with_json_lists_and_registry():
    cls = layer_class("conv2d")
    assert cls is Conv2d
    layer = cls(**{"out_channels": 4, "kernel_size": [3, 2], "stride": [2, 1], "padding": [1, 0],
                   "dilation": [1, 2], "mode": "convolution", "bias": "untied", "in_channels": 2})
    out = layer.build((2, 9, 8))
    assert out == (4, 5, 6)
    assert layer.param_shapes() == {"K": (4, 2, 3, 2), "b": (4, 5, 6)}
    assert layer.param_names == ("K", "b")
    assert Conv2d(1, 2, bias="none").param_names == ("K",)
    assert Conv2d(1, 2, bias=False).bias == "none" and Conv2d(1, 2, bias=True).bias == "tied"
    assert "conv2d 2->4 k3x2" in layer.describe()


def test_init_params_fan_in_scaled():
    layer = Conv2d(64, 5)
    layer.build((8, 12, 12))
    p = layer.init_params(np.random.default_rng(0))
    assert p["K"].shape == (64, 8, 5, 5) and p["b"].shape == (64,)
    assert abs(p["K"].std() * np.sqrt(8 * 25) - 1) < 0.05
    assert abs(p["K"].mean()) < 0.01


# ----------------------------------------------------------------------------- property tests

geometries = st.fixed_dictionaries({
    "ci": st.integers(1, 3), "co": st.integers(1, 3),
    "h": st.integers(1, 7), "w": st.integers(1, 7),
    "kh": st.integers(1, 4), "kw": st.integers(1, 4),
    "sh": st.integers(1, 3), "sw": st.integers(1, 3),
    "ph": st.integers(0, 2), "pw": st.integers(0, 2),
    "dh": st.integers(1, 2), "dw": st.integers(1, 2),
    "mode": st.sampled_from(MODES), "bias": st.sampled_from(BIASES),
    "seed": st.integers(0, 2**16),
})


def _fits(g):
    return (g["dh"] * (g["kh"] - 1) + 1 <= g["h"] + 2 * g["ph"]) and (g["dw"] * (g["kw"] - 1) + 1 <= g["w"] + 2 * g["pw"])


def _layer_from(g):
    layer = Conv2d(g["co"], (g["kh"], g["kw"]), (g["sh"], g["sw"]), (g["ph"], g["pw"]), (g["dh"], g["dw"]),
                   g["mode"], g["bias"], in_channels=g["ci"])
    layer.build((g["ci"], g["h"], g["w"]))
    rng = np.random.default_rng(g["seed"])
    return layer, layer.init_params(rng), rng.standard_normal((2, g["ci"], g["h"], g["w"]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(geometries)
def test_property_random_geometries(g):
    if not _fits(g):
        with pytest.raises(ShapeError):
            _layer_from(g)
        return
    layer, params, X = _layer_from(g)
    Z = layer.forward(X, params)
    ref = scipy_conv(X[0], params["K"], (g["sh"], g["sw"]), (g["ph"], g["pw"]), (g["dh"], g["dw"]), g["mode"])
    zb = Z[0] - (0 if g["bias"] == "none" else (params["b"] if g["bias"] == "untied" else params["b"][:, None, None]))
    np.testing.assert_allclose(zb, ref, atol=1e-12)
    # linear in the input and in the kernel: both Jacobians reproduce the bias-free output exactly
    Jx = layer.jac_input(X[0], Z[0], params)
    np.testing.assert_allclose(Jx.matvec(X[0].ravel()), zb.ravel(), atol=1e-12)
    J = layer.jac_params(X[0], Z[0], params, "C")
    np.testing.assert_allclose(J["K"].matvec(params["K"].ravel()), zb.ravel(), atol=1e-12)
    JF = layer.jac_params(X[0], Z[0], params, "F")
    np.testing.assert_allclose(JF["K"].matvec(params["K"].ravel(order="F")), zb.ravel(), atol=1e-12)
    # transposes
    G = np.random.default_rng(g["seed"] + 1).standard_normal((2, layer.out_size))
    np.testing.assert_allclose(layer.vjp_input(X, Z, G, params)[1], Jx.to_dense().T @ G[1], atol=1e-12)
    # structural non-zeros: C_out * C_in * #(real window cells)
    _, _, vh, vw = tp.window_grid(layer.geometry.in_hw, layer.geometry.kernel, layer.geometry.stride,
                                  layer.geometry.padding, layer.geometry.dilation)
    assert Jx.nnz == g["co"] * g["ci"] * int(vh.sum()) * int(vw.sum())


@settings(max_examples=20, deadline=None)
@given(geometries)
def test_property_random_geometries_vs_torch(g):
    pytest.importorskip("torch")
    assume(_fits(g))
    layer, params, X = _layer_from(g)
    z_t, Jx_t, JK_t, Jb_t = torch_jacobians(layer, params, X[0])
    z = layer.forward(X[:1], params)[0]
    np.testing.assert_allclose(z, z_t, atol=1e-12)
    np.testing.assert_allclose(layer.jac_input(X[0], z, params).to_dense(), Jx_t, atol=1e-12)
    J = layer.jac_params(X[0], z, params, "C")
    np.testing.assert_allclose(J["K"].to_dense(), JK_t.reshape(layer.out_size, -1), atol=1e-12)
    if g["bias"] != "none":
        np.testing.assert_allclose(J["b"].to_dense(), Jb_t, atol=1e-12)
