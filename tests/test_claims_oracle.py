"""The checker's truths against independent oracles, and claims that misbehave.

* Every target the checker compares with is checked against central finite differences
  in float64 (gradients, deltas, Jacobians) or a forward pass written here, on several
  conventions, depths and widths -- so a catalogue verdict never rests on the engine alone.
* The symbolic instance (its own forward pass, SymPy differentiation) is checked against
  the numeric engine at a point.
* A claim that raises, returns the wrong shape, NaN, a string, refers to a missing
  quantity or tries to write into the instance gets a verdict with the reason -- never a
  crash.
"""
from __future__ import annotations

import numpy as np
import pytest

from jacobian_bp.claims import (FAILS, HOLDS, ILL_TYPED, TARGETS, Claim, Setting, build_instances, check,
                                symbolic_quantities)
from jacobian_bp.errors import SpecError

SETTINGS = [
    Setting("ganev", hidden="tanh", output="sigmoid", loss="mse", widths=((3, 2), (3, 4, 2), (2, 3, 4, 2)), seeds=(0,)),
    Setting("damadi", hidden="sigmoid", output="softmax", loss="cross_entropy", widths=((3, 4, 3),), seeds=(1,)),
    Setting("park", hidden="tanh", output="sigmoid", loss="bce", widths=((3, 4, 2),), batch=(3,), seeds=(2,)),
    Setting("mml", hidden="sigmoid", output="identity", loss="mse", widths=((2, 3, 2),), batch=(2,), seeds=(3,)),
]


def _loss_at(d, params):
    return d.net.loss_value(d.X, d.Y, params)


def _fd_param(d, name, h=1e-6):
    """Central differences of the reduced loss w.r.t. one parameter (user layout)."""
    P = {k: v.copy() for k, v in d.params.items()}
    g = np.zeros_like(P[name])
    for idx in np.ndindex(P[name].shape):
        old = P[name][idx]
        P[name][idx] = old + h
        fp = _loss_at(d, P)
        P[name][idx] = old - h
        fm = _loss_at(d, P)
        P[name][idx] = old
        g[idx] = (fp - fm) / (2 * h)
    return g


def _forward_from(d, l, z_l_batch):
    """Manual forward pass from pre-activations z[l] (batch-first) to the loss, written from scratch."""
    net = d.net
    cur = z_l_batch
    canon = net.canonical_params(d.params)
    for k in range(l, net.L + 1):
        if k > l:
            cur = cur @ canon[f"W{k}"].T + canon[f"b{k}"]
        act = d.activations[k]
        if k < net.L or not net.matched:
            cur = act.forward(cur, {}) if act is not None else cur
    per = net.loss.value_from_logits(d.Yb, cur) if net.matched else net.loss.value(d.Yb, cur)
    return float(np.sum(per) * (1.0 / d.N if d.conv.reduction == "mean" else 1.0))


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.convention for s in SETTINGS])
def test_gradient_targets_match_finite_differences(setting):
    for d in build_instances(setting):
        for l in range(1, d.L + 1):
            for which in ("W", "b"):
                truth = TARGETS["grad_" + which][0](d, l)
                fd = _fd_param(d, f"{which}{l}")
                np.testing.assert_allclose(np.ravel(truth), np.ravel(fd), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.convention for s in SETTINGS])
def test_delta_targets_match_finite_differences(setting):
    h = 1e-6
    for d in build_instances(setting):
        red = 1.0 / d.N if d.conv.reduction == "mean" else 1.0
        for l in range(1, d.L + 1):
            Z = d.cache.z[l].copy()
            fd = np.zeros_like(Z)
            for idx in np.ndindex(Z.shape):
                Zp, Zm = Z.copy(), Z.copy()
                Zp[idx] += h
                Zm[idx] -= h
                fd[idx] = (_forward_from(d, l, Zp) - _forward_from(d, l, Zm)) / (2 * h)
            # dZ is ∇ of the reduced cost in the convention's layout; Delta is unreduced
            np.testing.assert_allclose(d.to_layout(fd), TARGETS["dZ"][0](d, l), rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(d.to_layout(fd) / red, TARGETS["Delta"][0](d, l), rtol=1e-6, atol=1e-8)


def test_jacobian_targets_match_finite_differences():
    st = Setting("damadi", hidden="tanh", output="softmax", loss="cross_entropy", widths=((3, 4, 2),), seeds=(0,))
    d = build_instances(st)[0]
    x = d.Xb[0]
    h = 1e-6
    theta = d.net.pack(d.params)

    def zL(th):
        return d.net.forward(x, d.net.unpack(th)).z[-1][0]

    J = np.stack([(zL(theta + h * e) - zL(theta - h * e)) / (2 * h) for e in np.eye(theta.size)], axis=1)
    np.testing.assert_allclose(TARGETS["J_theta"][0](d, None), J, atol=1e-8)
    # Damadi's θ is [W2, b2, W1, b1]: the layer-1 block is the last 3*4 + 4 columns
    np.testing.assert_allclose(TARGETS["J_theta_l"][0](d, 1), J[:, -16:], atol=1e-8)
    a = d.cache.a[1][0]
    Ja = np.stack([(np.tanh(d.cache.z[1][0] + h * e) - np.tanh(d.cache.z[1][0] - h * e)) / (2 * h) for e in np.eye(4)], 1)
    np.testing.assert_allclose(TARGETS["J_act"][0](d, 1), Ja, atol=1e-8)
    assert a.shape == (4,)


def test_forward_targets_match_manual_forward():
    st = Setting("park", hidden="relu", output="softmax", loss="cross_entropy", widths=((3, 4, 3),), batch=(4,), seeds=(0,))
    d = build_instances(st)[0]
    W1, b1, W2, b2 = (d.params[k] for k in ("W1", "b1", "W2", "b2"))
    X = d.X  # Park: n × N
    Z1 = W1 @ X + b1[:, None]
    A1 = np.maximum(Z1, 0)
    Z2 = W2 @ A1 + b2[:, None]
    E = np.exp(Z2 - Z2.max(axis=0))
    np.testing.assert_allclose(TARGETS["Z"][0](d, 1), Z1, atol=1e-12)
    np.testing.assert_allclose(TARGETS["A"][0](d, 2), E / E.sum(axis=0), atol=1e-12)


def test_symbolic_instance_agrees_with_engine():
    """The checker's own SymPy forward pass and derivatives equal the numeric engine at a point."""
    st = Setting("ganev", hidden="tanh", output="sigmoid", loss="mse", symbolic=(2, 3, 2),
                 symbolic_hidden="tanh", symbolic_output="sigmoid")
    q = symbolic_quantities(st)
    d = object.__getattribute__(q, "_d")
    import jacobian_bp as jb

    net = jb.Network([jb.Dense(3), jb.Tanh(), jb.Dense(2), jb.Sigmoid()], "mse", 2, convention="ganev")
    params = net.init_params(5)
    x, y = np.array([0.3, -0.7]), np.array([0.2, -0.4])
    vals = {}
    for l in (1, 2):
        for (i, j), s_ in np.ndenumerate(np.array(d.W[l].tolist(), dtype=object)):
            vals[s_] = params[f"W{l}"][i, j]
        for i, s_ in enumerate(d.b[l]):
            vals[s_] = params[f"b{l}"][i]
    vals.update({s_: v for s_, v in zip(d.x, x)})
    vals.update({s_: v for s_, v in zip(d.y, y)})
    g = net.gradient(x, y, params)
    for l in (1, 2):
        gw = np.array(d.symbolic_truth("grad_W", l).subs(vals).evalf(), dtype=float)
        np.testing.assert_allclose(gw, g.params[f"W{l}"], atol=1e-12)
    delta1 = np.array(d.symbolic_truth("delta", 1).subs(vals).evalf(), dtype=float).ravel()
    P = np.eye(2)
    for f in net.chain_factors(x, params, 1):
        P = P @ f.to_dense()
    np.testing.assert_allclose(delta1, P.T @ net.delta(x, y, params), atol=1e-12)


# ---------------------------------------------------------------------------------------- bad claims
ST = Setting("ganev", widths=((3, 2), (3, 4, 2)), seeds=(0,))


def _bad(f, **kw):
    return check(Claim("bad", f, "grad_W", ST, **kw))


def test_claim_that_raises():
    def boom(q, l):
        raise RuntimeError("kaboom")

    r = _bad(boom)
    assert r.verdict == ILL_TYPED and "RuntimeError: kaboom" in r.reason


def test_claim_with_wrong_shape():
    r = _bad(lambda q, l: np.zeros((7, 7)))
    assert r.verdict == ILL_TYPED and "shape 7×7" in r.reason


def test_claim_returning_nan():
    r = _bad(lambda q, l: q.delta[l] @ q.a[l - 1].T * np.nan)
    assert r.verdict == FAILS and "NaN" in r.reason


def test_claim_returning_a_string():
    r = _bad(lambda q, l: "grad")
    assert r.verdict == ILL_TYPED and "non-numeric" in r.reason


def test_claim_referring_to_missing_quantities():
    r = _bad(lambda q, l: q.delta[l + 5] @ q.a[l].T)
    assert r.verdict == ILL_TYPED and "lacks" in r.reason and "delta" in r.reason
    r = _bad(lambda q, l: q.nonexistent)
    assert r.verdict == ILL_TYPED and "nonexistent" in r.reason
    r = _bad(lambda q, l: q.W["1"])
    assert r.verdict == ILL_TYPED and "integer" in r.reason


def test_claim_cannot_modify_the_instance():
    def writer(q, l):
        q.W[l][0, 0] = 1e9
        return q.delta[l] @ q.a[l - 1].T

    r = _bad(writer)
    assert r.verdict == ILL_TYPED and "read-only" in r.reason
    # the cached instance is untouched: the correct formula still holds on it
    assert check(Claim("ok", lambda q, l: q.delta[l] @ q.a[l - 1].T, "grad_W", ST)).verdict == HOLDS


def test_setattr_is_reported_not_raised():
    r = check(Claim("set", lambda q, l: setattr(q, "x", 1), "grad_W", ST))
    assert r.verdict == ILL_TYPED and "read-only" in r.reason


def test_symbolic_claim_that_raises_is_reported():
    st = Setting("ganev", widths=((2, 2),), seeds=(0,), symbolic=(2, 2))
    # NumPy constructors work on symbolic instances too (exact integers): a wrong value, not a crash
    r = check(Claim("numpy on sympy", lambda q, l: q.np.ones((2, 2)), "grad_W", st))
    assert r.verdict == FAILS, r.summary()
    # a NumPy function that needs numbers is refused on the symbolic instance, with its name
    r = check(Claim("random on sympy", lambda q, l: q.np.fliplr(q.W[l]) * 0 + q.delta[l] @ q.a[l - 1].T, "grad_W", st))
    assert r.verdict == ILL_TYPED and "q.np.fliplr" in r.reason, r.summary()


def test_claim_validation():
    with pytest.raises(SpecError, match="unknown target"):
        Claim("x", lambda q, l: 0, "no_such_target")
    with pytest.raises(SpecError, match="callable"):
        Claim("x", 3, "grad_W")
    with pytest.raises(SpecError, match="kind"):
        Claim("x", lambda q, l: 0, "grad_W", kind="vibes")
    with pytest.raises(TypeError, match="expected a Claim"):
        check("δ = ŷ − y")
    with pytest.raises(TypeError):
        build_instances("ganev")
