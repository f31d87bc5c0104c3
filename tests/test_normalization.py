"""Layer normalization and batch normalization (evaluation mode): issue #13, a new layer family in one file.

Oracles, all independent of the Jacobian machinery: PyTorch autograd written here (``nn.LayerNorm`` /
``F.layer_norm`` / ``F.batch_norm(training=False)``, ``torch.func.jacrev``), the closed-form backward passes
of :mod:`jacobian_bp.oracles.reference`, float64 central differences, and SymPy's ``Matrix.jacobian`` of the
defining formula.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from jacobian_bp.engine.conventions import PRESETS  # noqa: E402
from jacobian_bp.errors import ShapeError, SpecError  # noqa: E402
from jacobian_bp.layers import layer_class  # noqa: E402
from jacobian_bp.oracles import reference  # noqa: E402
from jacobian_bp.oracles.verify import verify  # noqa: E402
from jacobian_bp.spec import load_spec  # noqa: E402

LayerNorm = layer_class("layer_norm")
BatchNorm1dEval = layer_class("batch_norm_eval")

MEAN, VAR = [1, 0, -1, 2, 0], [2, 1, 3, 1, 4]


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _t(v):
    return torch.tensor(np.asarray(v, dtype=float), dtype=torch.float64)


# ---------------------------------------------------------------------------- networks
def _spec(norm: dict, preset: str, batch: int = 3, n_in: int = 4) -> dict:
    return {"input": n_in, "layers": [{"type": "dense", "out_features": 5}, norm, {"type": "tanh"},
                                      {"type": "dense", "out_features": 3}, {"type": "softmax"}],
            "loss": "cross_entropy", "convention": preset, "data": {"seed": 3, "batch": batch}, "params": {"seed": 4}}


NORMS = {
    "ln": {"type": "layer_norm"},
    "ln-eps": {"type": "layer_norm", "eps": 0.25},
    "ln-plain": {"type": "layer_norm", "affine": False},
    "bn": {"type": "batch_norm_eval", "running_mean": MEAN, "running_var": VAR},
    "bn-plain": {"type": "batch_norm_eval", "affine": False, "eps": 0.1},
}


def _torch_norm(layer_spec: dict, H, p: dict):
    """The normalization written with torch's own modules and functions (not the layer's twin)."""
    if layer_spec["type"] == "layer_norm":
        eps = layer_spec.get("eps", 1e-5)
        if layer_spec.get("affine", True):
            mod = torch.nn.LayerNorm(H.shape[-1], eps=eps, dtype=torch.float64)
            # the module's computation with our γ, β (functional_call keeps them differentiable inputs)
            return torch.func.functional_call(mod, {"weight": p["gamma"], "bias": p["beta"]}, (H,))
        return F.layer_norm(H, (H.shape[-1],), None, None, eps)
    m = _t(layer_spec.get("running_mean", [0] * H.shape[-1]))
    v = _t(layer_spec.get("running_var", [1] * H.shape[-1]))
    return F.batch_norm(H, m, v, p.get("gamma"), p.get("beta"), training=False, eps=layer_spec.get("eps", 1e-5))


def _torch_logits(layer_spec, X, tp):
    """z[L] of the network, batch first, from canonical torch parameters keyed W1, b1, gamma2, ... (or W1, b1, W2, b2)."""
    H = F.linear(X, tp["W1"], tp["b1"])
    if "gamma2" in tp:
        H = _torch_norm(layer_spec, H, {"gamma": tp["gamma2"], "beta": tp["beta2"]})
        last = 3
    else:
        H = _torch_norm(layer_spec, H, {})
        last = 2
    return F.linear(torch.tanh(H), tp[f"W{last}"], tp[f"b{last}"])


def _setup(key, preset, batch=3):
    s = load_spec(_spec(NORMS[key], preset, batch))
    net = s.network
    X, Y = s.data()
    params = s.params()
    Xb, Yb, _ = net.as_batch(X, Y)
    return net, X, Y, params, np.asarray(Xb, float), np.asarray(Yb, float), net.canonical_params(params)


def _theta_columns(net, J_canon: dict) -> np.ndarray:
    """Columns in the convention's θ order from per-tensor Jacobians ``(n_L, *canonical shape)``."""
    cols = np.zeros((next(iter(J_canon.values())).shape[0], net.n_params))
    for e in net.entries:
        Jt = J_canon[e.name]
        if e.order == "F":
            Jt = Jt.transpose(0, *reversed(range(1, Jt.ndim)))
        cols[:, e.slice] = Jt.reshape(Jt.shape[0], -1)
    return cols


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("key", sorted(NORMS))
def test_gradients_chain_operator_per_sample_against_torch(key, preset):
    net, X, Y, params, Xb, Yb, canon = _setup(key, preset)
    tp = {k: _t(v).requires_grad_(True) for k, v in canon.items()}
    Z = _torch_logits(NORMS[key], _t(Xb), tp)
    per = -(_t(Yb) * torch.log_softmax(Z, dim=-1)).sum(-1)
    N = Xb.shape[0]
    total = per.sum() * net.reduce_factor(N)
    grads = dict(zip(tp, torch.autograd.grad(total, list(tp.values()))))
    for method in ("chain", "operator"):
        got = net.gradient(X, Y, params, method=method).canonical
        for k in tp:
            assert _rel(got[k], grads[k].numpy()) <= 1e-12, (method, k)
    rows = net.per_sample_gradients(X, Y, params)
    for i in range(N):
        tpi = {k: _t(v).requires_grad_(True) for k, v in canon.items()}
        Zi = _torch_logits(NORMS[key], _t(Xb[i:i + 1]), tpi)
        li = -(_t(Yb[i:i + 1]) * torch.log_softmax(Zi, dim=-1)).sum()
        gi = dict(zip(tpi, torch.autograd.grad(li, list(tpi.values()))))
        want = net.pack_canonical({k: v.numpy() for k, v in gi.items()})
        assert _rel(rows[i], want) <= 1e-12, i


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("key", sorted(NORMS))
def test_full_jacobians_against_torch_jacrev(key, preset):
    net, X, Y, params, Xb, Yb, canon = _setup(key, preset, batch=1)
    x = Xb[0]
    names = list(canon)
    tcanon = tuple(_t(canon[k]) for k in names)

    def z_of_params(*ps):
        return _torch_logits(NORMS[key], _t(x)[None], dict(zip(names, ps)))[0]

    jac = torch.func.jacrev(z_of_params, argnums=tuple(range(len(names))))(*tcanon)
    want = _theta_columns(net, {k: j.numpy() for k, j in zip(names, jac)})
    xin = np.reshape(x, net.input_shape)
    J = net.jacobian_theta(xin, params)
    assert _rel(J.to_dense(), want) <= 1e-12
    assert _rel(J.to_sparse().toarray(), want) <= 1e-12
    Jx = torch.func.jacrev(lambda v: _torch_logits(NORMS[key], v[None], dict(zip(names, tcanon)))[0])(_t(x))
    assert _rel(net.jacobian_input(xin, params).to_dense(), Jx.numpy()) <= 1e-12


@pytest.mark.parametrize("key", ["ln", "ln-plain", "bn"])
def test_gradient_against_central_differences(key):
    net, X, Y, params, *_ = _setup(key, "pytorch", batch=4)
    theta = net.pack(params)
    fd = reference.central_differences(lambda t: net.loss_value(X, Y, net.unpack(t)), theta, h=1e-6)
    assert _rel(net.gradient(X, Y, params).vector, fd) <= 1e-7


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("key", ["ln", "bn"])
def test_verify_passes_with_torch(key, preset):
    net, X, Y, params, *_ = _setup(key, preset)
    rep = verify(net, X, Y, params)
    assert rep.passed, rep.to_text()
    assert "torch autograd" in rep.methods, rep.skipped
    assert {"gamma2", "beta2"} <= {e.block for e in rep.errors}


def test_parameter_names_and_stages():
    net, *_ = _setup("ln", "pytorch")
    assert net.param_names == ["W1", "b1", "gamma2", "beta2", "W3", "b3"]
    assert net.L == 3 and net.stages[1].layer.kind == "layer_norm"
    plain, *_ = _setup("ln-plain", "pytorch")
    assert plain.param_names == ["W1", "b1", "W2", "b2"]  # no parameter: it follows stage 1 like an activation
    assert [layer.kind for layer in plain.stages[0].post] == ["layer_norm", "tanh"]


# ---------------------------------------------------------------------------- the closed forms
@pytest.mark.parametrize("eps", [1e-5, 0.3])
def test_layer_norm_closed_form_backward_against_torch_and_the_layer(eps):
    rng = np.random.default_rng(5)
    N, n = 4, 6
    X, G = rng.standard_normal((N, n)), rng.standard_normal((N, n))
    gamma, beta = 1 + 0.2 * rng.standard_normal(n), rng.standard_normal(n)
    tx, tg, tb = (_t(v).requires_grad_(True) for v in (X, gamma, beta))
    mod = torch.nn.LayerNorm(n, eps=eps, dtype=torch.float64)
    y = torch.func.functional_call(mod, {"weight": tg, "bias": tb}, (tx,))
    dx, dg, db = torch.autograd.grad(y, (tx, tg, tb), _t(G))
    rX, rg, rb = reference.layer_norm_backward(X, G, gamma, eps)
    assert _rel(rX, dx.numpy()) <= 1e-12 and _rel(rg, dg.numpy()) <= 1e-12 and _rel(rb, db.numpy()) <= 1e-12
    layer = LayerNorm(eps=eps)
    layer.build((n,))
    p = {"gamma": gamma, "beta": beta}
    O = layer.forward(X, p)
    assert _rel(O, y.detach().numpy()) <= 1e-13
    assert _rel(layer.vjp_input(X, O, G, p), rX) <= 1e-12
    vp = layer.vjp_params(X, O, G, p)
    assert _rel(vp["gamma"], rg) <= 1e-12 and _rel(vp["beta"], rb) <= 1e-12
    rX0, _, _ = reference.layer_norm_backward(X, G, None, eps)
    dx0, = torch.autograd.grad(F.layer_norm(tx, (n,), None, None, eps), (tx,), _t(G))
    assert _rel(rX0, dx0.numpy()) <= 1e-12


def test_batch_norm_eval_closed_form_backward_against_torch():
    rng = np.random.default_rng(6)
    N, n = 3, 5
    X, G = rng.standard_normal((N, n)), rng.standard_normal((N, n))
    gamma, beta = rng.standard_normal(n), rng.standard_normal(n)
    tx, tg, tb = (_t(v).requires_grad_(True) for v in (X, gamma, beta))
    mod = torch.nn.BatchNorm1d(n, eps=1e-3, dtype=torch.float64).eval()
    mod.running_mean.copy_(_t(MEAN))
    mod.running_var.copy_(_t(VAR))
    y = torch.func.functional_call(mod, {"weight": tg, "bias": tb, "running_mean": _t(MEAN), "running_var": _t(VAR),
                                         "num_batches_tracked": mod.num_batches_tracked}, (tx,))
    dx, dg, db = torch.autograd.grad(y, (tx, tg, tb), _t(G))
    r = reference.batch_norm_eval_backward(X, G, gamma, MEAN, VAR, 1e-3)
    for a, b in zip(r, (dx, dg, db)):
        assert _rel(a, b.numpy()) <= 1e-12
    layer = BatchNorm1dEval(running_mean=MEAN, running_var=VAR, eps=1e-3)
    layer.build((n,))
    p = {"gamma": gamma, "beta": beta}
    O = layer.forward(X, p)
    assert _rel(O, y.detach().numpy()) <= 1e-13
    assert _rel(layer.vjp_input(X, O, G, p), r[0]) <= 1e-12
    assert _rel(layer.vjp_params(X, O, G, p)["gamma"], r[1]) <= 1e-12


# ---------------------------------------------------------------------------- structure, symbolic, edge cases
def test_layer_norm_input_jacobian_is_structured_and_matches_the_formula():
    rng = np.random.default_rng(7)
    n = 6
    layer = LayerNorm(eps=0.1)
    layer.build((n,))
    p = layer.init_params(rng)
    a = rng.standard_normal(n)
    J = layer.jac_input(a, layer.forward(a[None], p)[0], p)
    assert J.structure == "product" and [f.structure for f in J.factors] == ["diagonal", "identity minus rank 2"]
    mu, sigma = a.mean(), np.sqrt(a.var() + 0.1)
    xh = (a - mu) / sigma
    want = np.diag(p["gamma"] / sigma) @ (np.eye(n) - np.ones((n, n)) / n - np.outer(xh, xh) / n)
    assert _rel(J.to_dense(), want) <= 1e-14
    M = rng.standard_normal((3, n))
    assert _rel(J.left_matmat(M), M @ want) <= 1e-14
    assert _rel(J.T.to_dense(), want.T) <= 1e-14


@pytest.mark.parametrize("affine", [True, False])
def test_constant_rows(affine):
    """Constant rows: x̂ = 0, σ = sqrt(eps), J = (γ/sqrt(eps))(I − 11ᵀ/n); against torch and central differences."""
    n, eps = 5, 0.04
    layer = LayerNorm(eps=eps, affine=affine)
    layer.build((n,))
    p = layer.init_params(np.random.default_rng(8))
    A = np.array([[0.7] * n, [0.0] * n, [-3.0] * n])
    O = layer.forward(A, p)
    assert np.all(np.isfinite(O))
    tp = {k: _t(v) for k, v in p.items()}
    want_O = F.layer_norm(_t(A), (n,), tp.get("gamma"), tp.get("beta"), eps).numpy()
    assert np.max(np.abs(O - want_O)) <= 1e-13 * max(1.0, np.max(np.abs(want_O)))
    g = p["gamma"] if affine else np.ones(n)
    want = np.diag(g / np.sqrt(eps)) @ (np.eye(n) - np.ones((n, n)) / n)
    for i in range(A.shape[0]):
        J = layer.jac_input(A[i], O[i], p).to_dense()
        assert np.max(np.abs(J - want)) <= 1e-12 * np.max(np.abs(want))
        Jt = torch.func.jacrev(lambda v: F.layer_norm(v, (n,), tp.get("gamma"), tp.get("beta"), eps))(_t(A[i]))
        assert np.max(np.abs(J - Jt.numpy())) <= 1e-12 * np.max(np.abs(want))
        h = 1e-6
        fd = np.stack([(layer.forward((A[i] + h * e)[None], p)[0] - layer.forward((A[i] - h * e)[None], p)[0]) / (2 * h)
                       for e in np.eye(n)], axis=1)
        assert _rel(J, fd) <= 1e-6


def test_network_on_constant_inputs_against_torch():
    """A network that starts with the layer norm, fed constant rows: J_x z[L] and the gradient against torch."""
    s = load_spec({"input": 4, "layers": [{"type": "layer_norm", "eps": 0.01}, {"type": "dense", "out_features": 3},
                                          {"type": "softmax"}], "loss": "cross_entropy", "convention": "pytorch",
                   "params": {"seed": 1}})
    net, params = s.network, s.params()
    canon = net.canonical_params(params)
    X = np.array([[2.0] * 4, [-1.0] * 4])
    Y = np.eye(3)[[0, 2]]
    tp = {k: _t(v).requires_grad_(True) for k, v in canon.items()}

    def logits(V, tp):
        return F.linear(F.layer_norm(V, (4,), tp["gamma1"], tp["beta1"], 0.01), tp["W2"], tp["b2"])

    loss = -(_t(Y) * torch.log_softmax(logits(_t(X), tp), -1)).sum(-1).mean()
    grads = torch.autograd.grad(loss, list(tp.values()))
    got = net.gradient(X, Y, params).canonical
    for k, g in zip(tp, grads):
        assert np.max(np.abs(got[k] - g.numpy())) <= 1e-12 * max(1.0, np.max(np.abs(g.numpy()))), k
    Jx = torch.func.jacrev(lambda v: logits(v[None], {k: t.detach() for k, t in tp.items()})[0])(_t(X[0]))
    assert _rel(net.jacobian_input(X[0], params).to_dense(), Jx.numpy()) <= 1e-12


@pytest.mark.parametrize("cls", ["layer_norm", "batch_norm_eval"])
def test_sympy_formula_and_exact_jacobians(cls):
    """The layer on SymPy entries equals the float forward, and its exact Jacobians (input, γ, β) equal SymPy's
    ``Matrix.jacobian`` of the defining formula (difference simplifies to 0)."""
    n = 3
    kw = {"eps": 0.25} if cls == "layer_norm" else {"eps": 0.5, "running_mean": [1, 0, -1], "running_var": [2, 1, 3]}
    layer = layer_class(cls)(**kw)
    layer.build((n,))
    z = sympy.symbols("z1:4", real=True)
    gs, bs = sympy.symbols("gamma_1:4", real=True), sympy.symbols("beta_1:4", real=True)
    f = sympy.Matrix(layer.sympy_vector(list(z)))  # γ_i, β_i symbols
    g = np.array([sympy.Rational(3, 2), sympy.Rational(-1, 2), 2], dtype=object)
    b = np.array([sympy.Rational(1, 3), 0, 1], dtype=object)
    p = {"gamma": g, "beta": b}
    point = {z[0]: sympy.Rational(1, 2), z[1]: -1, z[2]: 2, **dict(zip(gs, g)), **dict(zip(bs, b))}
    a = np.array([point[s] for s in z], dtype=object)
    J = layer.jac_input(a, None, p).to_sympy()
    assert sympy.simplify(J - f.jacobian(sympy.Matrix(z)).subs(point)) == sympy.zeros(n, n)
    Jp = layer.jac_params(a, None, p)
    assert sympy.simplify(Jp["gamma"].to_sympy() - f.jacobian(sympy.Matrix(gs)).subs(point)) == sympy.zeros(n, n)
    assert sympy.simplify(Jp["beta"].to_sympy() - f.jacobian(sympy.Matrix(bs)).subs(point)) == sympy.zeros(n, n)
    af = np.array([0.5, -1.0, 2.0])
    pf = {"gamma": g.astype(float), "beta": b.astype(float)}
    assert _rel(np.array(f.subs(point), dtype=float).ravel(), layer.forward(af[None], pf)[0]) <= 1e-14
    assert _rel(np.array(J, dtype=float), layer.jac_input(af, None, pf).to_dense()) <= 1e-14


@pytest.mark.parametrize("bad", [0, 0.0, -1e-5, float("nan"), float("inf"), "1e-5", True, None, [1e-5]])
@pytest.mark.parametrize("cls", ["layer_norm", "batch_norm_eval"])
def test_bad_eps_is_a_spec_error(cls, bad):
    with pytest.raises(SpecError, match="eps"):
        layer_class(cls)(eps=bad)


@pytest.mark.parametrize("bad", [0, -1.0, "1e-5", True, [1]])
def test_bad_eps_in_a_spec(bad):
    spec = _spec({"type": "layer_norm", "eps": bad}, "pytorch")
    with pytest.raises(SpecError):
        load_spec(spec)


def test_other_bad_arguments():
    with pytest.raises(SpecError, match="affine"):
        LayerNorm(affine="yes")
    with pytest.raises(SpecError, match="running_var"):
        BatchNorm1dEval(running_var=[1.0, -0.5])
    with pytest.raises(SpecError, match="running_mean"):
        BatchNorm1dEval(running_mean="0 0")
    with pytest.raises(SpecError, match="running_mean"):
        BatchNorm1dEval(running_mean=[1.0, float("nan")])
    with pytest.raises(ShapeError, match="running_mean has 2 entries for 3 features"):
        BatchNorm1dEval(running_mean=[1.0, 2.0]).build((3,))
    with pytest.raises(ShapeError, match="flat input"):
        LayerNorm().build((2, 3, 4))
    with pytest.raises(SpecError, match="eps"):
        load_spec(_spec({"type": "batch_norm_eval", "eps": -1}, "pytorch"))


def test_latex_facts_and_descriptions():
    layer = LayerNorm()
    layer.build((5,))
    assert r"\boldsymbol{\gamma}^{[2]}" in layer.latex_forward(None, 2, r"\mathbf{a}^{[1]}", "out_in")
    assert r"\hat{\mathbf{x}}" in layer.latex_input_jacobian({"gamma": r"\boldsymbol{\gamma}^{[2]}"})
    assert "layer normalization" in layer.prose()
    assert layer.describe() == "layer_norm 5 eps=1e-05"
    assert layer.weight_transposed_by_layout("gamma") is False
    bn = BatchNorm1dEval(affine=False)
    bn.build((3,))
    assert bn.latex_jacobian("o", lambda s: s + "^T") is not None and not bn.parametric
    import jacobian_bp.layers.normalization as module

    assert "training mode" in BatchNorm1dEval.__doc__.lower() and "not block-diagonal" in module.__doc__


@pytest.mark.parametrize("preset", ["ganev", "damadi"])
def test_inside_a_residual_block_and_after_it(preset):
    """Layer norm as the first parametric layer of a residual body, batch norm after the block: verify with torch."""
    s = load_spec({"input": 4, "layers": [
        {"type": "dense", "out_features": 4},
        {"type": "residual", "body": [{"type": "layer_norm"}, {"type": "tanh"}, {"type": "dense", "out_features": 4}]},
        {"type": "batch_norm_eval", "running_mean": [1, 0, 0, 1], "running_var": [1, 2, 3, 4]},
        {"type": "dense", "out_features": 3}, {"type": "softmax"}], "loss": "cross_entropy", "convention": preset,
        "data": {"seed": 1, "batch": 3}, "params": {"seed": 2}})
    net = s.network
    assert {"gamma2.1", "beta2.1", "gamma3", "beta3"} <= set(net.param_names)
    X, Y = s.data()
    rep = verify(net, X, Y, s.params())
    assert rep.passed and "torch autograd" in rep.methods, rep.to_text()
