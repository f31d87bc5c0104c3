"""Recurrent layers (``rnn``, ``lstm``) against independent oracles.

* PyTorch's own modules (``torch.nn.RNN``, ``torch.nn.LSTM``, ``torch.nn.RNNCell``, ``torch.nn.LSTMCell``) with the
  weights copied in (``torch.func.functional_call``), differentiated by autograd / ``torch.func.jacrev``;
* the closed-form BPTT of :mod:`jacobian_bp.oracles.recurrent_reference` (plain NumPy, no Jacobian machinery);
* float64 central differences of the layer's forward pass.

Tolerances: rel <= 1e-12 against torch and the closed forms, 1e-6 against central differences.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jacobian_bp.errors import DataError, ShapeError, SpecError  # noqa: E402
from jacobian_bp.layers.recurrent import LSTM, RNN  # noqa: E402
from jacobian_bp.oracles import recurrent_reference as ref  # noqa: E402

TOL = 1e-12


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def make(kind, H=3, T=4, d=2, output="last", bias=True, seed=0):
    cls = RNN if kind == "rnn" else LSTM
    layer = cls(hidden_size=H, output=output, bias=bias)
    layer.build((T, d))
    rng = np.random.default_rng(seed)
    params = {k: 0.6 * rng.standard_normal(s) for k, s in layer.param_shapes().items()}
    return layer, params, rng


@functools.lru_cache(maxsize=None)
def _module(kind, d, H, bias):
    cls = torch.nn.RNN if kind == "rnn" else torch.nn.LSTM
    kw = {"nonlinearity": "tanh"} if kind == "rnn" else {}
    return cls(d, H, bias=bias, batch_first=True, dtype=torch.float64, **kw)


def torch_params(kind, params) -> dict:
    """torch's parameter dict from the layer's (the Elman bias split unevenly into b_ih + b_hh)."""
    t = {k: (v if isinstance(v, torch.Tensor) else torch.tensor(v)) for k, v in params.items()}
    out = {"weight_ih_l0": t["W_ih"], "weight_hh_l0": t["W_hh"]}
    if kind == "rnn" and "b" in t:
        out["bias_ih_l0"] = 0.25 * t["b"]
        out["bias_hh_l0"] = 0.75 * t["b"]
    elif "b_ih" in t:
        out["bias_ih_l0"], out["bias_hh_l0"] = t["b_ih"], t["b_hh"]
    return out


def torch_out(layer, params, X):
    """The output of torch's module on a batch ``X`` ``(N, T, d)`` (tensors in, tensor out)."""
    m = _module(layer.kind, layer.d, layer.hidden_size, layer.bias)
    Xt = X if isinstance(X, torch.Tensor) else torch.tensor(X)
    out, _ = torch.func.functional_call(m, torch_params(layer.kind, params), (Xt,))
    return out[:, -1] if layer.output == "last" else out


KINDS = [("rnn", "last", True), ("rnn", "all", True), ("rnn", "last", False),
         ("lstm", "last", True), ("lstm", "all", True), ("lstm", "all", False)]


@pytest.mark.parametrize("kind, output, bias", KINDS)
def test_forward_equals_torch_module(kind, output, bias):
    layer, params, rng = make(kind, output=output, bias=bias)
    X = rng.standard_normal((5, 4, 2))
    out = layer.forward(X, params)
    want = torch_out(layer, params, X).detach().numpy()
    assert out.shape == (5,) + layer.out_shape == want.shape
    assert rel(out, want) <= 1e-14


@pytest.mark.parametrize("kind, output, bias", KINDS)
def test_full_jacobians_equal_torch_jacrev(kind, output, bias):
    layer, params, rng = make(kind, output=output, bias=bias, seed=1)
    x = rng.standard_normal((4, 2))
    tp = {k: torch.tensor(v) for k, v in params.items()}
    xt = torch.tensor(x)
    Jx = layer.jac_input(x, None, params)
    want = torch.func.jacrev(lambda v: torch_out(layer, tp, v[None])[0])(xt).reshape(layer.out_size, -1).numpy()
    assert rel(Jx.to_dense(), want) <= TOL
    assert rel(Jx.to_sparse().toarray(), want) <= TOL
    ops = {o: layer.jac_params(x, None, params, o) for o in ("C", "F")}
    for k in params:
        Jt = torch.func.jacrev(lambda v, k=k: torch_out(layer, {**tp, k: v}, xt[None])[0])(tp[k])
        Jt = Jt.reshape(layer.out_size, -1).numpy()
        assert rel(ops["C"][k].to_dense(), Jt) <= TOL, k
        perm = np.arange(params[k].size).reshape(params[k].shape).ravel(order="F")
        assert rel(ops["F"][k].to_dense(), Jt[:, perm]) <= TOL, k
        # both application directions of the unrolled operator
        v = rng.standard_normal(params[k].size)
        u = rng.standard_normal(layer.out_size)
        assert rel(ops["C"][k].matvec(v), Jt @ v) <= TOL
        assert rel(ops["C"][k].rmatvec(u), Jt.T @ u) <= TOL
        assert rel(ops["C"][k].T.to_dense(), Jt.T) <= TOL


@pytest.mark.parametrize("kind, output, bias", KINDS)
def test_batched_vjp_jvp_equal_torch_autograd(kind, output, bias):
    layer, params, rng = make(kind, output=output, bias=bias, seed=2)
    N = 4
    X = rng.standard_normal((N, 4, 2))
    G = rng.standard_normal((N, layer.out_size))
    Xt = torch.tensor(X, requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    out = torch_out(layer, tp, Xt).reshape(N, -1)
    (out * torch.tensor(G)).sum().backward()
    gp = layer.vjp_params(X, None, G, params)
    for k in params:
        assert rel(gp[k], tp[k].grad.numpy().ravel()) <= TOL, k
    assert rel(layer.vjp_input(X, None, G, params), Xt.grad.numpy().reshape(N, -1)) <= TOL
    P = rng.standard_normal((N, 2, layer.out_size))
    left = layer.left_jac_input(X, None, P, params)
    J = [torch.func.jacrev(lambda v: torch_out(layer, params, v[None])[0])(torch.tensor(X[i])).reshape(layer.out_size, -1).numpy()
         for i in range(N)]
    assert rel(left, np.stack([P[i] @ J[i] for i in range(N)])) <= TOL
    # forward mode against torch.func.jvp
    Tx = rng.standard_normal(X.shape)
    dparams = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    _, jx = torch.func.jvp(lambda v: torch_out(layer, params, v), (torch.tensor(X),), (torch.tensor(Tx),))
    assert rel(layer.jvp_input(X, None, Tx.reshape(N, -1), params), jx.reshape(N, -1).numpy()) <= TOL
    keys = list(params)
    _, jp = torch.func.jvp(lambda *vs: torch_out(layer, dict(zip(keys, vs)), torch.tensor(X)),
                           tuple(torch.tensor(params[k]) for k in keys), tuple(torch.tensor(dparams[k]) for k in keys))
    assert rel(layer.jvp_params(X, None, dparams, params), jp.reshape(N, -1).numpy()) <= TOL


def _reference_bptt(layer, params, x, g):
    if layer.kind == "rnn":
        return ref.elman_bptt(x, params["W_ih"], params["W_hh"], params.get("b"), g, layer.output)
    return ref.lstm_bptt(x, params["W_ih"], params["W_hh"], params.get("b_ih"), params.get("b_hh"), g, layer.output)


@pytest.mark.parametrize("kind, output, bias", KINDS)
def test_closed_form_bptt_agrees_with_torch_the_layer_and_central_differences(kind, output, bias):
    layer, params, rng = make(kind, H=3, T=5, d=2, output=output, bias=bias, seed=3)
    x = rng.standard_normal((5, 2))
    g = rng.standard_normal(layer.out_shape)
    dX, grads = _reference_bptt(layer, params, x, g)
    # torch autograd on torch's module
    xt = torch.tensor(x[None], requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    (torch_out(layer, tp, xt)[0] * torch.tensor(g)).sum().backward()
    assert rel(dX, xt.grad.numpy()[0]) <= TOL
    for k in params:
        assert rel(grads[k], tp[k].grad.numpy()) <= TOL, k
    # the layer's explicit chain: (J_θ o)^T g with the materialized unrolled Jacobians
    for k, J in layer.jac_params(x, None, params).items():
        assert rel(J.to_dense().T @ g.ravel(), grads[k].ravel()) <= TOL, k
    assert rel(layer.jac_input(x, None, params).to_dense().T @ g.ravel(), dX.ravel()) <= TOL
    # float64 central differences of the forward pass
    h = 1e-6
    f = lambda p: float(np.sum(layer.forward(x[None], p)[0] * g))  # noqa: E731
    for k in params:
        fd = np.zeros(params[k].size)
        for j in range(params[k].size):
            e = np.zeros(params[k].size)
            e[j] = h
            fd[j] = (f({**params, k: params[k] + e.reshape(params[k].shape)})
                     - f({**params, k: params[k] - e.reshape(params[k].shape)})) / (2 * h)
        assert rel(grads[k].ravel(), fd) <= 1e-6, k


@pytest.mark.parametrize("kind, output", [("rnn", "last"), ("rnn", "all"), ("lstm", "last"), ("lstm", "all")])
def test_unrolled_terms_are_the_chained_blocks_and_sum_to_the_jacobian(kind, output):
    layer, params, rng = make(kind, H=2, T=4, d=3, output=output, seed=4)
    x = rng.standard_normal((4, 3))
    H = layer.hidden_size
    for wrt in ("x",) + tuple(params):
        J = (layer.jac_input(x, None, params) if wrt == "x" else layer.jac_params(x, None, params)[wrt]).to_dense()
        for t in ([4] if output == "last" else [1, 2, 4]):
            terms = layer.unrolled_terms(x, params, wrt, t)
            assert len(terms) == t
            total = sum(op.to_dense() for op in terms)
            block = J if output == "last" else J[(t - 1) * H:t * H]
            assert rel(total, block) <= TOL, (wrt, t)
    # W_hh's first term is zero (h_0 = 0): the shared weight's Jacobian is a sum of T - 1 non-zero blocks
    first = layer.unrolled_terms(x, params, "W_hh")[0].to_dense()
    assert np.all(first == 0)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_step_jacobians_equal_torch_cell_autograd(kind):
    """A_t = J_{s_{t-1}} s_t against torch.nn.RNNCell / LSTMCell differentiated at the trajectory's states."""
    layer, params, rng = make(kind, H=3, T=4, d=2, seed=5)
    x = rng.standard_normal((4, 2))
    A = layer.step_jacobians(x, params)
    assert len(A) == 4
    tp = torch_params(kind, params)
    cell_cls = torch.nn.RNNCell if kind == "rnn" else torch.nn.LSTMCell
    cell = cell_cls(2, 3, dtype=torch.float64)
    cp = {k.replace("_l0", ""): v for k, v in tp.items()}
    H = 3
    h = torch.zeros(H, dtype=torch.float64)
    c = torch.zeros(H, dtype=torch.float64)
    for t in range(4):
        xt = torch.tensor(x[t])[None]
        if kind == "rnn":
            J = torch.func.jacrev(lambda hh: torch.func.functional_call(cell, cp, (xt, hh[None]))[0])(h).numpy()
            h = torch.func.functional_call(cell, cp, (xt, h[None]))[0].detach()
        else:
            def step(s):
                hn, cn = torch.func.functional_call(cell, cp, (xt, (s[:H][None], s[H:][None])))
                return torch.cat([hn[0], cn[0]])
            J = torch.func.jacrev(step)(torch.cat([h, c])).numpy()
            s = step(torch.cat([h, c])).detach()
            h, c = s[:H], s[H:]
        assert rel(A[t].to_dense(), J) <= TOL, t
    prods = layer.hidden_jacobian_products(x, params)
    assert len(prods) == 4 and np.allclose(prods[0], np.eye(3))


@pytest.mark.parametrize("kind, output", [("rnn", "last"), ("rnn", "all"), ("lstm", "last"), ("lstm", "all")])
def test_bptt_contributions_per_step_equal_torch_with_one_weight_copy_per_step(kind, output):
    """Contribution s of ∇W_hh = torch's gradient w.r.t. the copy of W_hh used at step s only (cells unrolled by hand)."""
    layer, params, rng = make(kind, H=3, T=4, d=2, output=output, seed=6)
    x = rng.standard_normal((4, 2))
    g = rng.standard_normal(layer.out_shape)
    contrib = layer.bptt_contributions(x, params, g)
    assert contrib.shape == (4,) + params["W_hh"].shape
    tp = torch_params(kind, params)
    cell = (torch.nn.RNNCell if kind == "rnn" else torch.nn.LSTMCell)(2, 3, dtype=torch.float64)
    copies = [tp["weight_hh_l0"].clone().requires_grad_(True) for _ in range(4)]
    h = torch.zeros(1, 3, dtype=torch.float64)
    c = torch.zeros(1, 3, dtype=torch.float64)
    hs = []
    for t in range(4):
        cp = {k.replace("_l0", ""): v for k, v in tp.items()}
        cp["weight_hh"] = copies[t]
        xt = torch.tensor(x[t])[None]
        if kind == "rnn":
            h = torch.func.functional_call(cell, cp, (xt, h))
        else:
            h, c = torch.func.functional_call(cell, cp, (xt, (h, c)))
        hs.append(h[0])
    out = hs[-1] if output == "last" else torch.stack(hs)
    (out * torch.tensor(g)).sum().backward()
    for t in range(4):
        assert rel(contrib[t], copies[t].grad.numpy()) <= TOL if t else np.all(contrib[0] == 0)
    assert rel(contrib.sum(0).ravel(), layer.vjp_params(x[None], None, g[None], params)["W_hh"]) <= TOL
    # the closed form's terms
    fn = ref.elman_whh_contributions if kind == "rnn" else ref.lstm_whh_contributions
    args = (params.get("b"),) if kind == "rnn" else (params.get("b_ih"), params.get("b_hh"))
    assert rel(contrib, fn(x, params["W_ih"], params["W_hh"], *args, g, output)) <= TOL
    # other parameters and a batch (summed over its samples)
    X = rng.standard_normal((3, 4, 2))
    Gb = rng.standard_normal((3,) + layer.out_shape)
    for k in params:
        cb = layer.bptt_contributions(X, params, Gb, wrt=k)
        assert rel(cb.sum(0).ravel(), layer.vjp_params(X, None, Gb.reshape(3, -1), params)[k]) <= TOL


def test_T1_rnn_is_a_dense_layer_followed_by_tanh():
    from jacobian_bp.layers.activations import Tanh
    from jacobian_bp.layers.dense import Dense

    layer, params, rng = make("rnn", H=3, T=1, d=4, seed=7)
    dense, tanh = Dense(3), Tanh()
    dense.build((4,))
    tanh.build((3,))
    dp = {"W": params["W_ih"], "b": params["b"]}
    X = rng.standard_normal((5, 1, 4))
    Z = dense.forward(X[:, 0], dp)
    A = tanh.forward(Z, {})
    assert rel(layer.forward(X, params), A) <= 1e-15
    lin = torch.nn.Linear(4, 3, dtype=torch.float64)
    want = torch.tanh(torch.func.functional_call(lin, {"weight": torch.tensor(params["W_ih"]),
                                                        "bias": torch.tensor(params["b"])}, (torch.tensor(X[:, 0]),)))
    assert rel(layer.forward(X, params), want.numpy()) <= 1e-15
    x = X[0]
    D = tanh.jac_input(Z[0], A[0], {}).to_dense()
    assert rel(layer.jac_input(x, None, params).to_dense(), D @ dense.jac_input(x[0], Z[0], dp).to_dense()) <= TOL
    Jd = dense.jac_params(x[0], Z[0], dp, "C")
    Jr = layer.jac_params(x, None, params)
    assert rel(Jr["W_ih"].to_dense(), D @ Jd["W"].to_dense()) <= TOL
    assert rel(Jr["b"].to_dense(), D @ Jd["b"].to_dense()) <= TOL
    assert np.all(Jr["W_hh"].to_dense() == 0)  # h_0 = 0: W_hh plays no part at T = 1
    Jt = torch.func.jacrev(lambda w: torch.tanh(torch.tensor(x[0]) @ w.T + torch.tensor(params["b"])))(torch.tensor(params["W_ih"]))
    assert rel(Jr["W_ih"].to_dense(), Jt.reshape(3, -1).numpy()) <= TOL


# ---------------------------------------------------------------------- networks, every backend
def _network(kind, output, preset="pytorch", N=3, T=4, d=2, H=3):
    from jacobian_bp.spec import load_spec

    layers = [{"type": kind, "hidden_size": H, "output": output}]
    if output == "all":
        layers.append({"type": "flatten"})
    layers += [{"type": "dense", "out_features": 3}, {"type": "softmax"}]
    s = load_spec({"input": [T, d], "layers": layers, "loss": "cross_entropy", "convention": preset,
                   "data": {"seed": 3, "batch": N}, "params": {"seed": 4}})
    return s.network, s.data(), s.params()


def _torch_model(net, theta, Xb, kind, output):
    """logits of torch's module + Linear, θ in the pytorch preset's order (the layers' parameters in torch's order)."""
    layer = net.stages[0].layer
    shapes = list(layer.param_shapes().items()) + [("W2", (3, layer.out_size)), ("b2", (3,))]
    p, off = {}, 0
    for k, s in shapes:
        n = int(np.prod(s))
        p[k] = theta[off:off + n].reshape(s)
        off += n
    h = torch_out(layer, {k: v for k, v in p.items() if not k.endswith("2")}, Xb)
    return h.reshape(h.shape[0], -1) @ p["W2"].T + p["b2"]


@pytest.mark.parametrize("kind, output", [("rnn", "last"), ("rnn", "all"), ("lstm", "last"), ("lstm", "all")])
def test_network_every_backend_equals_torch(kind, output):
    net, (X, Y), params = _network(kind, output)
    theta = net.pack(params)
    tt = torch.tensor(theta, requires_grad=True)
    Xb = torch.tensor(np.asarray(X))
    yb = torch.tensor(np.asarray(Y))
    logp = torch.log_softmax(_torch_model(net, tt, Xb, kind, output), -1)
    per = -(yb * logp).sum(-1)
    per.mean().backward(retain_graph=True)
    want = tt.grad.numpy()
    for method in ("chain", "operator"):
        assert rel(net.gradient(X, Y, params, method=method).vector, want) <= TOL, method
    rows = net.per_sample_gradients(X, Y, params)
    for i in range(rows.shape[0]):
        (gi,) = torch.autograd.grad(per[i], tt, retain_graph=True)
        assert rel(rows[i], gi.numpy()) <= TOL
    x = np.asarray(X)[0]
    Jt = torch.func.jacrev(lambda th: _torch_model(net, th, torch.tensor(x)[None], kind, output)[0])(torch.tensor(theta)).numpy()
    J = net.jacobian_theta(x, params)
    assert rel(J.to_dense(), Jt) <= TOL
    assert rel(J.to_sparse().toarray(), Jt) <= TOL
    Jxt = torch.func.jacrev(lambda v: _torch_model(net, torch.tensor(theta), v[None], kind, output)[0])(torch.tensor(x))
    assert rel(net.jacobian_input(x, params).to_dense(), Jxt.reshape(3, -1).numpy()) <= TOL


@pytest.mark.parametrize("preset", ["damadi", "park", "mml", "ganev"])
def test_network_under_other_conventions_matches_central_differences(preset):
    from jacobian_bp.oracles import reference

    net, (X, Y), params = _network("lstm", "last", preset=preset, N=2, T=3)
    theta = net.pack(params)
    fd = reference.central_differences(lambda t: net.loss_value(X, Y, net.unpack(t)), theta, h=1e-6)
    for method in ("chain", "operator"):
        assert rel(net.gradient(X, Y, params, method=method).vector, fd) <= 1e-7


# ---------------------------------------------------------------------- torch modules in, bad input out
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_from_torch_module_reproduces_the_module(kind):
    cls = RNN if kind == "rnn" else LSTM
    mod = (torch.nn.RNN if kind == "rnn" else torch.nn.LSTM)(3, 4, batch_first=True, dtype=torch.float64)
    assert type(mod).__name__ in cls.torch_module_types
    kw, params = cls.from_torch_module(mod, (5, 3))
    assert all(v.dtype == np.float64 for v in params.values())
    layer = cls(**kw)
    layer.build((5, 3))
    assert set(params) == set(layer.param_shapes())
    X = np.random.default_rng(0).standard_normal((2, 5, 3))
    with torch.no_grad():
        out, _ = mod(torch.tensor(X))
    assert rel(layer.forward(X, params), out[:, -1].numpy()) <= 1e-14
    kw, params = cls.from_torch_module(mod, (5, 3), output="all")
    layer = cls(**kw)
    layer.build((5, 3))
    assert rel(layer.forward(X, params), out.numpy()) <= 1e-14


def test_from_torch_module_refuses_what_it_cannot_represent():
    with pytest.raises(SpecError, match="num_layers"):
        LSTM.from_torch_module(torch.nn.LSTM(3, 4, num_layers=2), (5, 3))
    with pytest.raises(SpecError, match="bidirectional"):
        RNN.from_torch_module(torch.nn.RNN(3, 4, bidirectional=True), (5, 3))
    with pytest.raises(SpecError, match="proj_size"):
        LSTM.from_torch_module(torch.nn.LSTM(3, 4, proj_size=2), (5, 3))
    with pytest.raises(SpecError, match="tanh"):
        RNN.from_torch_module(torch.nn.RNN(3, 4, nonlinearity="relu"), (5, 3))
    with pytest.raises(SpecError, match="input_size"):
        RNN.from_torch_module(torch.nn.RNN(3, 4), (5, 2))
    with pytest.raises(SpecError, match="T >= 1"):
        RNN.from_torch_module(torch.nn.RNN(3, 4), (0, 3))
    with pytest.raises(SpecError, match="LSTM"):
        LSTM.from_torch_module(torch.nn.RNN(3, 4), (5, 3))


@pytest.mark.parametrize("cls", [RNN, LSTM])
def test_bad_constructor_arguments_and_shapes(cls):
    for bad in (0, -1, 2.5, "3", True, None):
        with pytest.raises(SpecError, match="hidden_size must be a positive integer"):
            cls(hidden_size=bad)
    with pytest.raises(SpecError, match="output must be 'last' or 'all'"):
        cls(hidden_size=2, output="first")
    with pytest.raises(SpecError, match="bias must be a boolean"):
        cls(hidden_size=2, bias="yes")
    layer = cls(hidden_size=2)
    with pytest.raises(ShapeError, match="T >= 1"):
        layer.build((0, 3))
    with pytest.raises(ShapeError, match=r"\(T, d\)"):
        layer.build((6,))
    with pytest.raises(ShapeError, match=r"expected input of shape \(T, 4\)"):
        cls(hidden_size=2, input_size=4).build((3, 3))
    layer.build((3, 2))
    params = layer.init_params(np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"expected input of shape \(3, 2\)"):
        layer.forward(np.zeros((2, 3, 3)), params)
    with pytest.raises(ShapeError, match="step_jacobians takes one sample"):
        layer.step_jacobians(np.zeros((2, 3, 2)), params)
    with pytest.raises(ShapeError, match="cotangent"):
        layer.bptt_contributions(np.zeros((3, 2)), params, np.zeros(5))
    with pytest.raises(DataError, match="no parameter"):
        layer.bptt_contributions(np.zeros((3, 2)), params, np.zeros(2), wrt="W")
    with pytest.raises(DataError, match="vec order"):
        layer.jac_params(np.zeros((3, 2)), None, params, "K")


def test_spec_errors_name_the_layer():
    from jacobian_bp.spec import load_spec

    base = {"layers": [{"type": "lstm", "hidden_size": 2}, {"type": "dense", "out_features": 2}, {"type": "softmax"}],
            "loss": "cross_entropy"}
    with pytest.raises(SpecError, match="spec.input"):  # T = 0 refused by the spec already
        load_spec({**base, "input": [0, 3]})
    with pytest.raises(ShapeError, match=r"\(T, d\)"):
        load_spec({**base, "input": 6})
    with pytest.raises(SpecError, match="hidden_size"):
        load_spec({**base, "input": [3, 2], "layers": [{"type": "rnn", "hidden_size": 0}, {"type": "dense", "out_features": 2}]})
    net = load_spec({**base, "input": [3, 2]}).network
    params = net.init_params(0)
    with pytest.raises(ShapeError):
        net.gradient(np.zeros((2, 3, 3)), np.eye(2), params)


def test_forward_output_is_not_the_kept_trajectory():
    """The layer keeps its last forward pass for reuse; changing the returned array or the input must not reach it."""
    layer, params, rng = make("lstm", output="all", seed=8)
    X = rng.standard_normal((2, 4, 2))
    out = layer.forward(X, params)
    ref_out = out.copy()
    out[...] = 0
    assert rel(layer.forward(X, params), ref_out) == 0
    X[0, 0, 0] += 1.0  # in place: the kept pass must not be reused
    assert rel(layer.forward(X, params), torch_out(layer, params, X).detach().numpy()) <= 1e-14
    params["W_hh"] *= 0.5
    assert rel(layer.forward(X, params), torch_out(layer, params, X).detach().numpy()) <= 1e-14
