"""The speed paths of the operator-mode gradient and of the materialized J_θ z[L] (issue #16, item 4).

Each fast path is checked against an independent oracle: the plain NumPy expression it replaces
(bit for bit where the docstring promises it), ``np.isfinite``, closed-form backprop written here
without jacobian_bp, and PyTorch autograd on torch's own modules (``torch.nn.Linear``/``ReLU``,
``F.cross_entropy``, ``torch.func.jacrev``).
"""
import numpy as np
import pytest

import jacobian_bp as jb
from jacobian_bp.backend import kernels, operators
from jacobian_bp.backend.kernels import all_finite, outer_into
from jacobian_bp.engine.sweeps import _dense_weight_vjp, linearize, vjp_sweep
from jacobian_bp.errors import DataError
from jacobian_bp.layers.activations import ElementwiseActivation, ReLU
from jacobian_bp.layers.losses import _softmax_ce_grad
from jacobian_bp.spec import load_spec


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


def small_relu_net(preset="damadi", widths=(7, 5, 3), n_in=6):
    layers = []
    for k, w in enumerate(widths):
        layers.append({"type": "dense", "out_features": w})
        layers.append({"type": "relu"} if k < len(widths) - 1 else {"type": "softmax"})
    return load_spec({"input": n_in, "layers": layers, "loss": "cross_entropy", "convention": preset}).network


def closed_form(Ws, bs, X, Y):
    """Backprop of ReLU layers + softmax cross entropy (sum over the batch), written without jacobian_bp."""
    A, Zs, As = X, [], [X]
    for l, (W, b) in enumerate(zip(Ws, bs)):
        Z = A @ W.T + b
        Zs.append(Z)
        A = np.maximum(Z, 0) if l < len(Ws) - 1 else Z
        As.append(A)
    S = np.exp(Zs[-1] - Zs[-1].max(1, keepdims=True))
    S /= S.sum(1, keepdims=True)
    D = S - Y
    gW, gb = [None] * len(Ws), [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        gW[l] = D.T @ As[l]
        gb[l] = D.sum(0)
        if l:
            D = (D @ Ws[l]) * (Zs[l - 1] > 0)
    return gW, gb


# ---------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("shape", [(64, 300, 784), (2, 3, 4), (64, 10, 100), (257, 33, 65), (5, 1, 9)])
def test_weight_gradient_gemm_is_bitwise_G_transpose_A(shape):
    n, p, q = shape
    rng = np.random.default_rng(n + p + q)
    G, A = rng.standard_normal((n, p)), rng.standard_normal((n, q))
    ref = G.T @ A
    assert np.array_equal(bits(_dense_weight_vjp(G, A)), bits(ref))
    theta = np.empty(p * q + 3)  # an offset view, as a block of θ
    out = theta[3:].reshape(p, q)
    assert _dense_weight_vjp(G, A, out=out) is out
    assert np.array_equal(bits(out), bits(ref))
    F = np.empty((q, p)).T  # a non-C-contiguous target takes the plain product (BLAS may order its sums otherwise)
    _dense_weight_vjp(G, A, out=F)
    np.testing.assert_allclose(F, ref, rtol=1e-13, atol=1e-13 * np.abs(ref).max())


def test_one_sample_weight_gradient_is_the_outer_product():
    rng = np.random.default_rng(3)
    g, a = rng.standard_normal((1, 300)), rng.standard_normal((1, 784))
    a[0, ::7] = 0.0  # ReLU zeros: g_j * 0 keeps the sign of g_j, as the plain product does
    ref = g[0][:, None] * a[0][None, :]
    out = np.empty((300, 784))
    _dense_weight_vjp(g, a, out=out)
    assert np.array_equal(bits(out), bits(ref))
    assert np.array_equal(bits(_dense_weight_vjp(g, a)), bits(ref))


@pytest.mark.parametrize("stream", [False, True])
def test_outer_into_streaming_writes_the_same_products(stream):
    rng = np.random.default_rng(4)
    p, a = rng.standard_normal(300), rng.standard_normal(784)
    p[5], a[9] = -2.0, 0.0
    buf = np.empty(300 * 784 + 1)[1:].reshape(300, 784)  # not 16-byte aligned
    outer_into(buf, p, a, stream=stream)
    assert np.array_equal(bits(buf), bits(p[:, None] * a[None, :]))


def test_streaming_threshold_is_past_the_caches():
    assert kernels.STREAM_MIN_BYTES >= 2 * 1024**2  # twice the last-level cache: results that cannot stay cached


def test_store_chooser_keeps_the_faster_kind_and_times_them_again_later():
    ch = kernels.StoreChooser()
    n = 21_328_800
    asked = []
    for _ in range(2 * ch.TRIALS):  # alternating, ordinary first; streaming 30% faster here
        stream, timed = ch.choose(n, 2)
        assert timed
        asked.append(stream)
        ch.record(n, stream, (0.7e-3 if stream else 1.0e-3) * (1 + 0.01 * len(asked)), 2)
    assert asked == [False, True] * ch.TRIALS
    assert ch.choice(n, 2) is True and ch.choice(n, 1) is None  # per thread count
    assert all(ch.choose(n, 2) == (True, False) for _ in range(ch.REVISIT))
    assert ch.choose(n, 2) == (False, True)  # both timed again: the cache a shared machine leaves free changes
    assert ch.choice(n, 2) is None
    ch.record(n, False, float("nan"), 2)  # ignored
    for _ in range(2 * ch.TRIALS):  # (the choose above was not reported)
        stream, _ = ch.choose(n, 2)
        ch.record(n, stream, 2e-3 if stream else 1e-3, 2)
    assert ch.choice(n, 2) is False  # now ordinary stores win
    assert ch.choice(2 * n, 2) is None  # another power of two: its own comparison


def test_store_kind_by_policy_and_size(monkeypatch):
    seen = {}

    def probe(nbytes, threads=2):
        with kernels.store_kind(nbytes, threads):
            return kernels.streaming_stores(nbytes)

    assert probe(kernels.STREAM_MIN_BYTES) is True
    assert probe(kernels.STREAM_TRIAL_MIN_BYTES - 8) is False
    monkeypatch.setattr(kernels, "STORE_POLICY", "stream")
    assert probe(64) is True
    monkeypatch.setattr(kernels, "STORE_POLICY", "plain")
    assert probe(kernels.STREAM_MIN_BYTES) is False
    assert kernels.streaming_stores(1 << 40) is False  # outside a materialization: the policy
    monkeypatch.setattr(kernels, "STORE_POLICY", "auto")
    if kernels.jit_kernel_available():
        ch = kernels.StoreChooser()
        monkeypatch.setattr(kernels, "_CHOOSER", ch)
        size = kernels.STREAM_TRIAL_MIN_BYTES + 8
        seen = [probe(size) for _ in range(2 * ch.TRIALS)]
        assert seen == [False, True] * ch.TRIALS  # the band: both kinds timed by the chooser
        assert ch.choice(size, 2) in (True, False)


def test_materialization_in_the_band_has_the_same_bits_whichever_store_is_chosen(monkeypatch):
    net = load_spec("lenet-300-100").network
    P = net.validated_params(net.init_params(3))
    x = np.random.default_rng(12).standard_normal(784)
    assert kernels.STREAM_TRIAL_MIN_BYTES <= 10 * net.n_params * 8 < kernels.STREAM_MIN_BYTES or \
        kernels.STREAM_MIN_BYTES <= 10 * net.n_params * 8  # 21.3 MB: in the band on a 32 MB cache
    ch = kernels.StoreChooser()
    monkeypatch.setattr(kernels, "_CHOOSER", ch)
    results = [net.jacobian_theta(x, P).to_dense() for _ in range(4)]
    for R in results[1:]:
        assert np.array_equal(bits(R), bits(results[0]))


@pytest.mark.parametrize("value, policy, warns", [("plain", "plain", False), ("Stream", "stream", False),
                                                  ("", "auto", False), ("sometimes", "auto", True)])
def test_store_policy_from_the_environment(value, policy, warns):
    import subprocess
    import sys

    code = ("import warnings; warnings.simplefilter('always')\n"
            "from jacobian_bp.backend import kernels; print(kernels.STORE_POLICY)")
    env = dict(__import__("os").environ, JACOBIAN_BP_STREAM=value)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == policy
    assert ("JACOBIAN_BP_STREAM must be auto, stream or plain, received 'sometimes'" in r.stderr) is warns


def test_streaming_kernel_is_built_when_numba_is():
    if not kernels.jit_kernel_available():
        pytest.skip("numba kernel not available")
    assert kernels._get_jit_outer_stream()  # the self-check against the plain kernel passed


def test_all_finite_agrees_with_isfinite():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((40, 70))
    cases = [base, base.T, base[:, ::3], base.astype(np.float32), np.zeros(0), np.arange(6), np.float64(2.0)]
    for bad in (np.nan, np.inf, -np.inf):
        b = base.copy()
        b[7, 9] = bad
        cases += [b, b.T, b[:, 1:]]
    big = np.full(10, 1e308)  # finite entries whose sum overflows: decided entrywise
    cases += [big, -big]
    for c in cases:
        assert all_finite(c) == bool(np.all(np.isfinite(c))), c
    assert all_finite(np.array([1, 2], dtype=object))  # SymPy arrays are not checked here


# ---------------------------------------------------------------------------- layers and loss
@pytest.mark.parametrize("at_zero", [None, 0.5])
def test_relu_fast_vjp_and_left_product_match_the_mask(at_zero):
    relu = ReLU(at_zero=at_zero)
    relu.build((12,))
    rng = np.random.default_rng(6)
    A = rng.standard_normal((5, 12))
    A[0, :4] = 0.0
    G, P = rng.standard_normal((5, 12)), rng.standard_normal((5, 3, 12))
    d = (A > 0).astype(float)
    d[A == 0] = at_zero or 0.0
    assert np.array_equal(bits(relu.vjp_input(A, None, G, {})), bits(G * d))
    assert np.array_equal(bits(relu.left_jac_input(A, None, P, {})), bits(P * d[:, None, :]))
    # the generic elementwise rule gives the same bits
    assert np.array_equal(bits(relu.vjp_input(A, None, G, {})), bits(ElementwiseActivation.vjp_input(relu, A, None, G, {})))


def test_softmax_cross_entropy_delta_matches_scipy_softmax():
    from scipy.special import softmax

    rng = np.random.default_rng(7)
    Z = 20 * rng.standard_normal((9, 10))
    for Y in (np.eye(10)[rng.integers(0, 10, 9)], rng.dirichlet(np.ones(10), 9)):
        ref = softmax(Z, axis=-1) * Y.sum(axis=-1, keepdims=True) - Y
        assert np.array_equal(bits(_softmax_ce_grad(Y, Z)), bits(ref))


@pytest.mark.parametrize("bad, message", [(np.nan, "NaN or Inf"), (np.inf, "NaN or Inf"), (-0.5, "one-hot or a probability"),
                                          (0.5, "one-hot or a probability")])
def test_cross_entropy_target_check_still_refuses(bad, message):
    net = small_relu_net()
    X = np.random.default_rng(8).standard_normal((4, 6))
    Y = np.eye(3)[[0, 1, 2, 0]]
    Y[1, 1] = bad
    with pytest.raises(DataError, match=message):
        net.gradient(X, Y, net.init_params(0), method="operator")


# ---------------------------------------------------------------------------- the operator-mode gradient
@pytest.mark.parametrize("N", [1, 5])
@pytest.mark.parametrize("preset", ["damadi", "pytorch"])
def test_operator_gradient_matches_closed_form_and_torch(preset, N):
    torch = pytest.importorskip("torch")
    net = small_relu_net(preset)
    params = net.init_params(1)
    canon = net.canonical_params(params)
    rng = np.random.default_rng(N)
    X = rng.standard_normal((N, 6))
    Y = np.eye(3)[rng.integers(0, 3, N)]
    Xin, Yin = (X, Y) if net.convention.batch_axis == "first" else (X.T, Y.T)
    g = net.gradient(Xin, Yin, params, method="operator")
    assert g.canonical.proved_finite  # dense layers only: θ proved finite by the bound, not re-read
    r = net.reduce_factor(N)
    gW, gb = closed_form([canon[f"W{l}"] for l in (1, 2, 3)], [canon[f"b{l}"] for l in (1, 2, 3)], X, Y)
    for l in (1, 2, 3):
        np.testing.assert_allclose(g.canonical[f"W{l}"], r * gW[l - 1], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g.canonical[f"b{l}"], r * gb[l - 1], rtol=1e-12, atol=1e-14)
    # torch autograd on torch's modules
    lin = [torch.nn.Linear(m.shape[1], m.shape[0]).double() for m in (canon["W1"], canon["W2"], canon["W3"])]
    with torch.no_grad():
        for l, m in enumerate(lin, 1):
            m.weight.copy_(torch.tensor(canon[f"W{l}"]))
            m.bias.copy_(torch.tensor(canon[f"b{l}"]))
    model = torch.nn.Sequential(lin[0], torch.nn.ReLU(), lin[1], torch.nn.ReLU(), lin[2])
    loss = torch.nn.functional.cross_entropy(model(torch.tensor(X)), torch.tensor(Y), reduction="sum") * r
    loss.backward()
    for l, m in enumerate(lin, 1):
        np.testing.assert_allclose(g.canonical[f"W{l}"], m.weight.grad.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g.canonical[f"b{l}"], m.bias.grad.numpy(), rtol=1e-12, atol=1e-14)
    # the θ vector is the pack of the blocks
    np.testing.assert_array_equal(g.vector, net.pack_canonical(g.canonical))


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_overflowing_gradient_is_still_refused():
    net = small_relu_net("damadi")  # reduction "sum"; W1 in the user's in x out layout
    params = net.init_params(0)
    params["W1"] = params["W1"].copy()
    params["W1"][0, :] *= 1e-3  # the weights of input 0: a forward pass of ~1e305, finite
    X = np.zeros((50, 6))
    X[:, 0] = 1e308  # dW1[:, 0] = Σ_i g_i x_i0 overflows: the bound fails, the entrywise check refuses
    Y = np.eye(3)[np.arange(50) % 3]
    z = net.forward(X, params).z[-1]
    assert np.all(np.isfinite(z))
    with pytest.raises(DataError, match="gradient ∇θℓ is not finite"):
        net.gradient(X, Y, params, method="operator")
    with pytest.raises(DataError, match="NaN or Inf"):
        net.gradient(np.full((3, 6), np.nan), Y[:3], params, method="operator")


def test_finite_bound_is_dropped_for_a_non_dense_stage():
    net = load_spec({"input": [1, 5, 5], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3}, {"type": "relu"},
                                                   {"type": "flatten"}, {"type": "dense", "out_features": 3},
                                                   {"type": "softmax"}],
                     "loss": "cross_entropy", "convention": "pytorch"}).network
    X = np.random.default_rng(9).standard_normal((2, 1, 5, 5))
    lin = linearize(net, X, net.init_params(0))
    theta = np.empty(net.n_params)
    out = vjp_sweep(net, lin.cache, lin.canon, np.ones((2, 3)), out=theta)
    assert not out.proved_finite


# ---------------------------------------------------------------------------- the materialized J_θ z[L]
def test_lenet_jacobian_theta_streamed_matches_torch_jacrev(monkeypatch):
    torch = pytest.importorskip("torch")
    net = load_spec("lenet-300-100").network
    P = net.validated_params(net.init_params(0))
    x = np.random.default_rng(10).standard_normal(784)
    monkeypatch.setattr(kernels, "STORE_POLICY", "stream")
    J = net.jacobian_theta(x, P).to_dense()  # the 18.8 MB W1 block written with streaming stores
    monkeypatch.setattr(kernels, "STORE_POLICY", "plain")
    J_plain = net.jacobian_theta(x, P).to_dense()
    assert np.array_equal(bits(J), bits(J_plain))

    tp = [torch.tensor(np.asarray(P[k])) for k in ("W1", "b1", "W2", "b2", "W3", "b3")]
    def f(ps, xx):
        W1, b1, W2, b2, W3, b3 = ps
        h = torch.nn.functional.relu(torch.nn.functional.linear(xx, W1, b1))
        h = torch.nn.functional.relu(torch.nn.functional.linear(h, W2, b2))
        return torch.nn.functional.linear(h, W3, b3)

    tj = torch.func.jacrev(f)(tp, torch.tensor(x))
    for k, name in enumerate(("W1", "b1", "W2", "b2", "W3", "b3")):
        e = net.entry(name)
        np.testing.assert_allclose(J[:, e.slice], tj[k].reshape(10, -1).numpy(), rtol=1e-12, atol=1e-13)


def test_lenet_batch_jacobian_streamed_rows_are_the_single_sample_jacobians(monkeypatch):
    net = load_spec("lenet-300-100").network
    P = net.validated_params(net.init_params(1))
    X = np.random.default_rng(11).standard_normal((2, 784))
    monkeypatch.setattr(kernels, "STORE_POLICY", "stream")
    B = net.batch_jacobian_theta(X, P).to_dense()  # two 18.8 MB blocks, streamed, on the worker threads
    for i in range(2):  # the batch forward is a gemm, the single one a gemv: equal up to rounding
        J = net.jacobian_theta(X[i], P).to_dense()
        np.testing.assert_allclose(B[10 * i:10 * (i + 1)], J, rtol=1e-12, atol=1e-14 * np.abs(J).max())
    monkeypatch.setattr(kernels, "STORE_POLICY", "plain")
    assert np.array_equal(bits(B), bits(net.batch_jacobian_theta(X, P).to_dense()))
