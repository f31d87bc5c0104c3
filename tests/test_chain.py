"""LeftChain: P_l = J_{z[l]} z[L] kept as the chain of layer Jacobians and evaluated once, on demand.

Oracles: the explicit product of the chain's typed layer Jacobians (each materialized on
its own), and central finite differences of z[L] with respect to z[l]'s parameters."""
from __future__ import annotations

import numpy as np
import pytest

import jacobian_bp as jb
from jacobian_bp.backend import operators as ops
from jacobian_bp.engine.chain import LeftChain

from conftest import dense_net, example, fd_jacobian


def _chains(J):
    return [b.op.factors[0] for b in J.blocks if isinstance(b.op, ops.Product) and isinstance(b.op.factors[0], LeftChain)]


@pytest.mark.parametrize("name", ["damadi-3layer", "lenet-300-100", "small-cnn"])
def test_chain_value_equals_the_product_of_its_layer_jacobians(name):
    net, p, x, _ = example(name)
    J = net.jacobian_theta(x, p)
    chains = _chains(J)
    assert chains, "every stage below the last has a left chain"
    for c in chains:
        explicit = np.eye(c.shape[0])
        for f in c.factors:  # materialize each layer Jacobian on its own, multiply left to right
            explicit = explicit @ f.to_dense()
        np.testing.assert_allclose(c.value(), explicit, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(c.as_product().to_dense(), explicit, rtol=1e-12, atol=1e-13)


def test_chain_is_lazy_shared_and_linked():
    net, p, x, _ = example("damadi-3layer")
    J = net.jacobian_theta(x, p)
    chains = _chains(J)
    assert not any(c.evaluated for c in chains)
    assert "not yet evaluated" in repr(chains[0])
    by_id = {id(c): c for c in chains}
    assert len(by_id) == net.L - 1  # the W and b blocks of a stage share one chain
    top = [c for c in by_id.values() if c.parent is None]  # P_2 = W[3] diag f'(z[2])
    low = [c for c in by_id.values() if c.parent is not None]  # P_1 = P_2 W[2] diag f'(z[1])
    assert len(top) == 1 and len(low) == 1 and low[0].parent is top[0]
    assert len(top[0].factors) == 2 and len(low[0].factors) == 4
    J.to_dense()
    assert all(c.evaluated for c in chains) and "evaluated" in repr(chains[0])


def test_chain_value_matches_finite_differences_of_the_output():
    net = dense_net("ganev", act=jb.Sigmoid, widths=(4, 3))
    p = net.init_params(2)
    x = np.random.default_rng(5).standard_normal(3)
    J = net.jacobian_theta(x, p)
    canon = net.canonical_params(p)
    # P_1 = J_{z[1]} z[3]: perturb z[1] directly and run the rest of the network
    Xb = x[None]
    cache = net.forward_cache(Xb, canon)

    def tail(z1):
        cur = z1[None]
        for layer in net.stages[0].post:
            cur = layer.forward(cur, {})
        for st in net.stages[1:]:
            cur = st.layer.forward(cur, net.stage_params(canon, st.index))
            if st is not net.stages[-1]:
                for layer in st.post:
                    cur = layer.forward(cur, {})
        return cur[0]

    P1 = [c for c in _chains(J) if c.shape[1] == 4][0]
    np.testing.assert_allclose(P1.value(), fd_jacobian(tail, cache.z[1][0]), rtol=1e-7, atol=1e-9)


def test_block_products_apply_without_materializing():
    net, p, x, _ = example("damadi-2layer")
    J = net.jacobian_theta(x, p)
    D = J.to_dense()
    rng = np.random.default_rng(0)
    v, w = rng.standard_normal(J.shape[1]), rng.standard_normal(J.shape[0])
    np.testing.assert_allclose(J.matvec(v), D @ v, rtol=1e-13)
    np.testing.assert_allclose(J.rmatvec(w), D.T @ w, rtol=1e-13)
    c = _chains(J)[0]
    np.testing.assert_allclose(c.T.to_dense(), c.value().T)
    with pytest.raises(ValueError):
        c.value()[0, 0] = 1.0  # the shared value is read-only


def test_chain_validation():
    net, p, x, _ = example("damadi-2layer")
    with pytest.raises(ValueError, match="at least one layer step"):
        LeftChain(None, [], 3)
    c = _chains(net.jacobian_theta(x, p))[0]
    with pytest.raises(ValueError, match=r"expected a value of shape \(3, 5\), received \(5, 3\)"):
        LeftChain(None, c.steps, 3, value=np.zeros((5, 3)))
