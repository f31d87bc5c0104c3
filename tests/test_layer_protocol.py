"""The layer protocol, checked for every registered layer class (a new layer is covered by registering it).

For each class and each of its ``protocol_examples()`` (small random instances), against the
layer's own dense Jacobians and against float64 central differences of ``forward``:

* ``jvp_input`` / ``jvp_params`` = dense Jacobian × tangent;
* ``vjp_input`` / ``vjp_params`` = transposed Jacobian × cotangent (summed over the batch for θ);
* ``left_jac_input`` = row block × Jacobian;
* ``jac_input`` / ``jac_params`` = central differences of ``forward`` (``order="F"`` = ``"C"`` permuted);
* ``torch_forward`` = ``forward`` (torch autograd is the oracle's twin of the layer).
"""
from __future__ import annotations

import numpy as np
import pytest

from jacobian_bp.layers import all_layer_classes

N = 3
H = 1e-6
CASES = [pytest.param(name, kw, shape, id=f"{name}-{i}")
         for name, cls in sorted(all_layer_classes().items())
         for i, (kw, shape) in enumerate(cls.protocol_examples())]


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _make(name, kw, shape, seed=0):
    cls = all_layer_classes()[name]
    try:
        layer = cls(**kw)
        layer.build(shape, None)
    except (TypeError, ValueError) as exc:
        pytest.fail(f"layer {name!r}: its protocol_examples() entry ({kw}, {shape}) does not build ({exc}); "
                    f"override {cls.__name__}.protocol_examples() with small valid instances")
    rng = np.random.default_rng(seed)
    params = layer.init_params(rng)
    A = rng.standard_normal((N,) + tuple(shape))
    O = layer.forward(A, params)
    return layer, params, A, O, rng


def _fd(f, x, direction):
    return (f(x + H * direction) - f(x - H * direction)) / (2 * H)


@pytest.mark.parametrize("name, kw, shape", CASES)
def test_forward_shape_and_jacobians_against_central_differences(name, kw, shape):
    layer, params, A, O, rng = _make(name, kw, shape)
    assert O.shape == (N,) + layer.out_shape
    for i in range(N):
        J = layer.jac_input(A[i], O[i], params).to_dense()
        assert J.shape == (layer.out_size, layer.in_size)
        E = np.eye(layer.in_size)
        fd = np.stack([_fd(lambda a: layer.forward(a[None], params)[0].ravel(), A[i], E[j].reshape(A[i].shape))
                       for j in range(layer.in_size)], axis=1)
        assert _rel(J, fd) <= 1e-6, f"{name}: J_a o vs central differences"
        for k, Jp in layer.jac_params(A[i], O[i], params, "C").items():
            Jp = Jp.to_dense()
            size = params[k].size
            Ek = np.eye(size)

            def f(v, k=k):
                return layer.forward(A[i][None], {**params, k: v})[0].ravel()

            fdp = np.stack([_fd(f, params[k], Ek[j].reshape(params[k].shape)) for j in range(size)], axis=1)
            assert _rel(Jp, fdp) <= 1e-6, f"{name}: J_{k} o vs central differences"
            JF = layer.jac_params(A[i], O[i], params, "F")[k].to_dense()
            perm = np.arange(size).reshape(params[k].shape).ravel(order="F")
            assert _rel(JF, Jp[:, perm]) <= 1e-14, f"{name}: column-major vec of {k}"


@pytest.mark.parametrize("name, kw, shape", CASES)
def test_forward_and_reverse_products_equal_the_dense_jacobians(name, kw, shape):
    layer, params, A, O, rng = _make(name, kw, shape, seed=1)
    T = rng.standard_normal((N, layer.in_size))
    G = rng.standard_normal((N, layer.out_size))
    P = rng.standard_normal((N, 2, layer.out_size))
    dparams = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    Js = [layer.jac_input(A[i], O[i], params).to_dense() for i in range(N)]
    Jps = [{k: J.to_dense() for k, J in layer.jac_params(A[i], O[i], params, "C").items()} for i in range(N)]

    jvp = np.asarray(layer.jvp_input(A, O, T, params)).reshape(N, -1)
    assert _rel(jvp, np.stack([Js[i] @ T[i] for i in range(N)])) <= 1e-12
    fd = _fd(lambda a: layer.forward(a, params).reshape(N, -1), A, T.reshape(A.shape))
    assert _rel(jvp, fd) <= 1e-6

    vjp = np.asarray(layer.vjp_input(A, O, G, params)).reshape(N, -1)
    assert _rel(vjp, np.stack([Js[i].T @ G[i] for i in range(N)])) <= 1e-12

    left = np.asarray(layer.left_jac_input(A, O, P, params)).reshape(N, 2, -1)
    assert _rel(left, np.stack([P[i] @ Js[i] for i in range(N)])) <= 1e-12

    if not params:
        return
    jvpp = np.asarray(layer.jvp_params(A, O, dparams, params)).reshape(N, -1)
    ref = np.stack([sum(Jps[i][k] @ dparams[k].ravel() for k in params) for i in range(N)])
    assert _rel(jvpp, ref) <= 1e-12
    plus = {k: params[k] + H * dparams[k] for k in params}
    minus = {k: params[k] - H * dparams[k] for k in params}
    fdp = (layer.forward(A, plus) - layer.forward(A, minus)).reshape(N, -1) / (2 * H)
    assert _rel(jvpp, fdp) <= 1e-6

    vjpp = layer.vjp_params(A, O, G, params)
    assert set(vjpp) == set(params)
    for k in params:
        assert _rel(np.ravel(vjpp[k]), sum(Jps[i][k].T @ G[i] for i in range(N))) <= 1e-12


@pytest.mark.parametrize("name, kw, shape", CASES)
def test_torch_twin_equals_forward(name, kw, shape):
    torch = pytest.importorskip("torch")
    layer, params, A, O, rng = _make(name, kw, shape, seed=2)
    tparams = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
    try:
        out = layer.torch_forward(torch.tensor(A, dtype=torch.float64), tparams)
    except NotImplementedError as exc:  # pragma: no cover - every registered layer has a twin today
        pytest.fail(f"{name} has no torch twin, so verify would skip torch for it: {exc}")
    assert tuple(out.shape) == O.shape
    assert _rel(out.numpy(), O) <= 1e-13
