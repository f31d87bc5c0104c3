"""GELU (exact and tanh forms): the demonstration that a new activation is one file (layers/activations.py).

Oracles, all independent of the package: mpmath at 50 digits for f and f'; torch autograd (the
network written here with ``torch.nn.functional.gelu``) for the gradient and the full Jacobians
:math:`\\mathbf J_\\theta\\mathbf z^{[L]}`, :math:`\\mathbf J_{\\mathbf x}\\mathbf z^{[L]}` with the chain, operator
and per-sample backends; SymPy ``simplify`` for the symbolic derivative; pdflatex for the derivation.
"""
from __future__ import annotations

import json

import mpmath
import numpy as np
import pytest
import sympy

import jacobian_bp as jb
from jacobian_bp.errors import SpecError
from jacobian_bp.layers import layer_class
from jacobian_bp.spec import load_spec

from conftest import needs_pdflatex, rel_err

mpmath.mp.dps = 50
FORMS = ["none", "tanh"]
_C = mpmath.mpf(44715) / 10 ** 6


def _mp_gelu(x, form):
    """(f, f', f'') at ``x`` in 50-digit arithmetic, written from the definitions."""
    x = mpmath.mpf(float(x))
    if form == "none":
        def f(t):
            return t * mpmath.ncdf(t)

        def df(t):
            return mpmath.ncdf(t) + t * mpmath.npdf(t)
    else:
        k = mpmath.sqrt(2 / mpmath.pi)

        def f(t):  # t (1 + tanh u)/2 = t σ(2u): the left side cancels even at 50 digits for t ≪ 0
            return t / (1 + mpmath.exp(-2 * k * (t + _C * t ** 3)))

        def df(t):
            u, du = k * (t + _C * t ** 3), k * (1 + 3 * _C * t ** 2)
            s, sm = 1 / (1 + mpmath.exp(-2 * u)), 1 / (1 + mpmath.exp(2 * u))
            return s + 2 * t * du * s * sm
    return f(x), df(x), mpmath.diff(df, x)


def _grid(form):
    tail = 37.0 if form == "none" else 20.0  # beyond, f' is below the smallest normal double
    core = np.linspace(-8, 8, 161)
    tails = np.concatenate([np.linspace(-tail, -8, 30), np.linspace(8, tail, 30)])
    tiny = np.array([0.0, 1e-300, -1e-300, 1e-8, -1e-8, 1e-3, -1e-3])
    return np.concatenate([core, tails, tiny])


@pytest.mark.parametrize("form", FORMS)
def test_f_and_df_against_mpmath_at_50_digits(form):
    layer = layer_class("gelu")(approximate=form)
    z = _grid(form)
    f, d = layer.f(z), layer.df(z)
    for zi, fi, di in zip(z, f, d):
        rf, rd, rdd = _mp_gelu(zi, form)
        # relative accuracy up to the rounding of the scaled argument inside erfc / exp (error
        # ~ ε·|z g'(z)| for g = f, f'), which is what a double evaluation can promise: in the
        # tails too (the textbook forms lose every digit there), and near the root of f'
        # (z ≈ -0.75) relative to the size of z f''
        assert abs(fi - float(rf)) <= 2e-15 * (abs(float(rf)) + abs(zi * float(rd))) + 1e-300, (zi, fi, rf)
        assert abs(di - float(rd)) <= 2e-15 * (abs(float(rd)) + abs(zi * float(rdd))) + 1e-300, (zi, di, rd)
        if 2 <= abs(zi) <= 8:
            assert abs(di - float(rd)) <= 1e-13 * abs(float(rd)), (zi, di, rd)


@pytest.mark.parametrize("form", FORMS)
def test_df_is_finite_for_huge_inputs(form):
    layer = layer_class("gelu")(approximate=form)
    z = np.array([-1e300, -1e200, -1e20, 1e20, 1e200, 1e300, -np.finfo(float).max, np.finfo(float).max])
    d = layer.df(z)
    assert np.all(np.isfinite(d))
    np.testing.assert_array_equal(d, np.where(z > 0, 1.0, 0.0))


@pytest.mark.parametrize("form", FORMS)
def test_symbolic_derivative_simplifies_to_the_closed_form_and_matches_df(form):
    layer = layer_class("gelu")(approximate=form)
    t = sympy.Symbol("t", real=True)
    if form == "none":
        closed = (1 + sympy.erf(t / sympy.sqrt(2))) / 2 + t * sympy.exp(-t ** 2 / 2) / sympy.sqrt(2 * sympy.pi)
    else:
        c = sympy.Rational(44715, 10 ** 6)
        u = sympy.sqrt(2 / sympy.pi) * (t + c * t ** 3)
        closed = (1 + sympy.tanh(u)) / 2 + t / 2 * (1 - sympy.tanh(u) ** 2) * sympy.diff(u, t)
    d = layer.sympy_df(t)
    assert sympy.simplify((d - closed).rewrite(sympy.exp)) == 0
    for v in (-6.0, -0.75, -0.1, 0.0, 0.3, 2.5, 9.0):
        exact = float(d.subs(t, sympy.Float(v, 30)).evalf(30))
        assert abs(layer.df(np.array([v]))[0] - exact) <= 1e-14 * max(1.0, abs(exact))


def _net(form, convention="pytorch"):
    spec = {"input": [3], "convention": convention, "loss": "mse", "layers": [
        {"type": "dense", "out_features": 4}, {"type": "gelu", "approximate": form},
        {"type": "dense", "out_features": 4}, {"type": "gelu", "approximate": form},
        {"type": "dense", "out_features": 2}]}
    return load_spec(spec).network


def _torch_twin(form, shapes):
    """z[L] of the network above as a function of (θ, x), written directly in torch."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    def zL(theta, x):
        k, a = 0, x
        for i, (W_shape, b_shape) in enumerate(shapes):
            nW, nb = int(np.prod(W_shape)), int(np.prod(b_shape))
            W = theta[k:k + nW].reshape(W_shape)
            b = theta[k + nW:k + nW + nb]
            k += nW + nb
            a = a @ W.T + b
            if i < len(shapes) - 1:
                a = F.gelu(a, approximate=form)
        return a

    return torch, zL


@pytest.mark.parametrize("form", FORMS)
def test_network_jacobians_and_gradients_against_torch_autograd(form):
    net = _net(form)  # pytorch convention: θ = (W1, b1, W2, b2, W3, b3), rows stacked
    p = net.init_params(3)
    shapes = [(p[f"W{l}"].shape, p[f"b{l}"].shape) for l in (1, 2, 3)]
    torch, zL = _torch_twin(form, shapes)
    theta = torch.tensor(net.pack(p), dtype=torch.float64)
    rng = np.random.default_rng(7)
    X = rng.standard_normal((5, 3)) * 2
    Y = rng.standard_normal((5, 2))

    # one sample: J_θ z[L] and J_x z[L] (chain backend) vs torch.autograd.functional.jacobian
    x = torch.tensor(X[0])
    Jt_ref = torch.autograd.functional.jacobian(lambda th: zL(th, x), theta).numpy()
    Jx_ref = torch.autograd.functional.jacobian(lambda xx: zL(theta, xx), x).numpy()
    assert rel_err(net.jacobian_theta(X[0], p).to_dense(), Jt_ref) <= 1e-12
    assert rel_err(net.jacobian_input(X[0], p).to_dense(), Jx_ref) <= 1e-12

    # the batch: per-sample backend (materialized) and operator backend (forward mode, one column at a time)
    Xt = torch.tensor(X)
    Jb_ref = torch.autograd.functional.jacobian(lambda th: zL(th, Xt), theta).numpy().reshape(5 * 2, -1)
    assert rel_err(net.batch_jacobian_theta(X, p).to_dense(), Jb_ref) <= 1e-12
    from jacobian_bp.uses.lazy import BatchJacobianOperator

    op = BatchJacobianOperator(net, X, p)
    E = np.eye(net.n_params)
    assert rel_err(np.stack([op.matvec(E[:, j]) for j in range(net.n_params)], axis=1), Jb_ref) <= 1e-12

    # gradients: chain, operator, per-sample, against autograd of the loss (pytorch: mse_loss, mean)
    th = theta.clone().requires_grad_(True)
    loss = torch.nn.functional.mse_loss(zL(th, Xt), torch.tensor(Y))
    (g_ref,) = torch.autograd.grad(loss, th)
    g_ref = g_ref.numpy()
    for method in ("chain", "operator"):
        assert rel_err(net.gradient(X, Y, p, method=method).vector, g_ref) <= 1e-12, method
    per = net.per_sample_gradients(X, Y, p)
    assert rel_err(np.asarray(per).reshape(5, -1).mean(axis=0), g_ref) <= 1e-12
    assert abs(net.loss_value(X, Y, p) - float(loss)) <= 1e-12 * abs(float(loss))


@pytest.mark.parametrize("form", FORMS)
def test_verify_passes_with_torch_covered_automatically(form):
    pytest.importorskip("torch")
    net = _net(form, "damadi")
    p = net.init_params(0)
    from jacobian_bp.spec import generate_data

    X, Y = generate_data(net, 3, 1)
    rep = jb.verify(net, X, Y, p)
    assert rep.passed
    assert "torch autograd" not in rep.skipped
    assert "torch autograd" in rep.methods


def test_spec_round_trip_and_bad_values():
    spec = {"input": [3], "loss": "mse", "layers": [{"type": "dense", "out_features": 2},
                                                     {"type": "gelu", "approximate": "tanh"}]}
    net = load_spec(json.loads(json.dumps(spec))).network
    layer = net.stages[0].post[0]
    assert type(layer) is layer_class("gelu") and layer.approximate == "tanh" and layer.kind == "gelu"
    again = {"type": layer.kind, "approximate": layer.approximate}
    assert again == spec["layers"][1]
    assert layer_class("gelu")().approximate == "none"
    for bad in ("exact", "", "TANH", None, 1, True, ["tanh"]):
        with pytest.raises(SpecError, match="approximate"):
            load_spec({**spec, "layers": [spec["layers"][0], {"type": "gelu", "approximate": bad}]})
        with pytest.raises(SpecError, match="approximate"):
            layer_class("gelu")(approximate=bad)


@needs_pdflatex
@pytest.mark.parametrize("form", FORMS)
def test_derivation_of_a_gelu_network_compiles(tmp_path, form):
    from jacobian_bp.render.derivation import compile_pdf, derivation_document
    from jacobian_bp.spec import generate_data

    net = _net(form, "damadi")
    p = net.init_params(0)
    x, y = generate_data(net, 1, 0)
    rep = jb.verify(net, x, y, p, use_torch=False)
    tex = derivation_document(net, p, x, y, report=rep)
    assert net.stages[0].post[0].prose() in tex and "GELU" in tex  # the layer's own sentence
    path = tmp_path / f"gelu-{form}.tex"
    path.write_text(tex, encoding="ascii")
    assert compile_pdf(path).exists()


def test_the_kept_state_backward_of_a_composite_block_is_gelu_s_own_derivative():
    """``forward_state``/``vjp_from_state`` (used inside a Transformer block's backward) give the same numbers as
    ``f``/``df`` bit for bit, torch's gradient to 1e-12 where torch is accurate, and float64 central differences."""
    torch = pytest.importorskip("torch")
    from jacobian_bp.layers.activations import GELU

    rng = np.random.default_rng(3)
    z = np.concatenate([rng.normal(size=(4, 30)) * 3, np.array([[-30.0, -6.0, -1e-3, 0.0, 1e-3, 6.0] + [0.5] * 24])])
    G = rng.normal(size=z.shape)
    layer = GELU()
    out, state = layer.forward_state(z, {})
    gin, gp = layer.vjp_from_state(state, G)
    assert gp == {} and np.array_equal(out, layer.f(z)) and np.array_equal(gin, G * layer.df(z))
    moderate = np.abs(z) < 6
    zt = torch.tensor(z, requires_grad=True)
    torch.nn.functional.gelu(zt).backward(torch.tensor(G))
    ref = zt.grad.numpy()
    # normwise: f' has a zero near z = -0.75, where entrywise relative differences mean nothing
    assert np.max(np.abs(ref - gin)[moderate]) <= 1e-12 * np.max(np.abs(ref[moderate]))
    h = 1e-6
    fd = (layer.f(z + h) - layer.f(z - h)) / (2 * h) * G
    assert np.max(np.abs(fd - gin)) <= 1e-7
    assert GELU(approximate="tanh").forward_state(z, {})[1] is None
