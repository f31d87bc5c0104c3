"""The fast paths of the Transformer block's Jacobians and gradient (issue #13, speed) against torch and the generic route.

* ``J_θ z[L]`` materialized through the token-block chains (:mod:`jacobian_bp.layers.token_blocks`: the MLP residual's
  Jacobian kept as its ``T`` diagonal blocks, the attention's backward pass on one token row per cotangent, outer
  products written in place) equals ``torch.func.jacrev`` of the block written with torch's own modules
  (``nn.MultiheadAttention``, ``nn.LayerNorm``, ``nn.Linear``), row- and column-stacked vec, causal or not, and the
  generic operator route (the same blocks applied as plain products to the identity) to 1e-14;
* the operator-mode gradient, which reuses the block's kept forward pass and the input cotangent of its parameter pass,
  equals torch's backward for a network of two blocks (the second block's ``vjp_input`` follows its ``vjp_params``);
* a residual block on a sequence (token-wise body) in a plain network keeps the same numbers.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from jacobian_bp.backend.operators import Product  # noqa: E402
from jacobian_bp.engine.network import Network  # noqa: E402
from jacobian_bp.layers import Dense, Softmax  # noqa: E402
from jacobian_bp.layers.activations import Tanh  # noqa: E402
from jacobian_bp.layers.attention import TransformerBlock  # noqa: E402
from jacobian_bp.layers.flatten import Flatten  # noqa: E402
from jacobian_bp.layers.linear import Linear  # noqa: E402
from jacobian_bp.layers.normalization import LayerNorm  # noqa: E402
from twin_attention import TorchBlock  # noqa: E402
from jacobian_bp.layers.residual import Residual  # noqa: E402
from jacobian_bp.layers.token_blocks import ChainBlock, ChainMemo, blockdiag_dense, tokenwise  # noqa: E402


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


_TorchBlock = TorchBlock  # x + MHA(LN1 x), then u + fc2(gelu(fc1(LN2 u))) with torch's modules


def _block(d, h, hidden, causal, seed):
    torch.manual_seed(seed)
    b = _TorchBlock(d, h, hidden, causal).double()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return b


def _names(stage: int) -> dict:
    """Engine name -> (torch state key, row slice of in_proj or None) for the block at ``stage``."""
    out = {f"gamma{stage}.ln1": ("ln1.weight", None), f"beta{stage}.ln1": ("ln1.bias", None),
           f"gamma{stage}.ln2": ("ln2.weight", None), f"beta{stage}.ln2": ("ln2.bias", None),
           f"W_O{stage}.attn": ("attn.out_proj.weight", None), f"b_O{stage}.attn": ("attn.out_proj.bias", None),
           f"W{stage}.fc1": ("fc1.weight", None), f"b{stage}.fc1": ("fc1.bias", None),
           f"W{stage}.fc2": ("fc2.weight", None), f"b{stage}.fc2": ("fc2.bias", None)}
    for j, c in enumerate("QKV"):
        out[f"W_{c}{stage}.attn"] = ("attn.in_proj_weight", j)
        out[f"b_{c}{stage}.attn"] = ("attn.in_proj_bias", j)
    return out


def _params(block, stage, d):
    sd = {k: v.detach().numpy() for k, v in block.state_dict().items()}
    out = {}
    for name, (key, j) in _names(stage).items():
        v = sd[key]
        out[name] = (v[j * d:(j + 1) * d] if j is not None else v).copy()
    return out


def _state(tp, stage, d):
    """The torch state dict of the block at ``stage`` from the engine-named tensors ``tp``."""
    st = {}
    for name, (key, j) in _names(stage).items():
        if j is None:
            st[key] = tp[name]
    for key, kind in (("attn.in_proj_weight", "W"), ("attn.in_proj_bias", "b")):
        st[key] = torch.cat([tp[f"{kind}_{c}{stage}.attn"] for c in "QKV"])
    return st


def _generic(J) -> np.ndarray:
    """Every block of the stacked J_θ applied as a plain product of its factors to the identity (no token blocks)."""
    E = np.eye(J.shape[0])
    cols = [Product(list(b.factors)).left_matmat(E) if isinstance(b, Product) else b.left_matmat(E) for b in J.op.blocks]
    return np.concatenate(cols, axis=1)


@pytest.mark.parametrize("T, d, h, hidden, causal, convention", [
    (5, 8, 2, 12, False, "pytorch"),
    (4, 6, 3, 5, True, "mml"),
    (1, 4, 2, 6, False, "pytorch"),
])
def test_materialized_block_jacobian_equals_jacrev_and_the_generic_route(T, d, h, hidden, causal, convention):
    block = _block(d, h, hidden, causal, seed=T + d)
    net = Network([TransformerBlock(heads=h, mlp_hidden=hidden, causal=causal), Flatten()], "mse", (T, d),
                  convention=convention)
    params = _params(block, 1, d)
    assert set(params) == set(net.param_names)
    x = np.random.default_rng(T).standard_normal((T, d))
    J = net.jacobian_theta(x, params)
    D = J.to_dense()
    assert _rel(D, _generic(J)) <= 1e-14

    tp = {k: torch.tensor(v) for k, v in params.items()}
    Jt = torch.func.jacrev(lambda tp: torch.func.functional_call(block, _state(tp, 1, d),
                                                                 (torch.tensor(x)[None],)).reshape(-1))(tp)
    col = convention == "mml"  # column-stacked vec of every (out, in) matrix
    want = np.concatenate([(Jt[e.name].transpose(-1, -2) if col and Jt[e.name].dim() == 3 else Jt[e.name])
                           .reshape(T * d, -1).numpy() for e in net.entries], axis=1)
    assert _rel(D, want) <= 1e-12
    # the same numbers from a serial and a threaded materialization
    from jacobian_bp.backend.parallel import num_threads

    with num_threads(1):
        D1 = net.jacobian_theta(x, params).to_dense()
    with num_threads(2):
        D2 = net.jacobian_theta(x, params).to_dense()
    assert np.array_equal(D1, D2) and np.array_equal(D1, D)


def test_gradient_of_two_blocks_reuses_the_forward_pass_and_equals_torch():
    T, d, h, hidden, n_out, N = 4, 6, 2, 10, 3, 5
    b1, b2 = _block(d, h, hidden, False, 1), _block(d, h, hidden, True, 2)
    head = nn.Linear(T * d, n_out).double()
    net = Network([TransformerBlock(heads=h, mlp_hidden=hidden), TransformerBlock(heads=h, mlp_hidden=hidden, causal=True),
                   Flatten(), Dense(n_out), Softmax()], "cross_entropy", (T, d), convention="pytorch")
    params = {**_params(b1, 1, d), **_params(b2, 2, d), "W3": head.weight.detach().numpy().copy(),
              "b3": head.bias.detach().numpy().copy()}
    assert set(params) == set(net.param_names)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((N, T, d))
    Y = np.eye(n_out)[rng.integers(0, n_out, N)]
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}

    def logits(tp, x):
        y = torch.func.functional_call(b1, _state(tp, 1, d), (x,))
        y = torch.func.functional_call(b2, _state(tp, 2, d), (y,))
        return F.linear(y.reshape(x.shape[0], -1), tp["W3"], tp["b3"])

    loss = -(torch.tensor(Y) * torch.log_softmax(logits(tp, torch.tensor(X)), -1)).sum(-1).mean()
    loss.backward()
    names = [e.name for e in net.entries]
    want = np.concatenate([tp[k].grad.numpy().ravel() for k in names])
    for _ in range(2):  # the second call starts from a kept forward pass of the first: nothing stale
        assert _rel(net.gradient(X, Y, params, method="operator").vector, want) <= 1e-12
    # a changed parameter array (a new object) is not served from the kept pass
    p2 = dict(params)
    p2["W2.fc1"] = params["W2.fc1"] * 1.5
    tp2 = {k: torch.tensor(v, requires_grad=True) for k, v in p2.items()}
    loss2 = -(torch.tensor(Y) * torch.log_softmax(logits(tp2, torch.tensor(X)), -1)).sum(-1).mean()
    loss2.backward()
    want2 = np.concatenate([tp2[k].grad.numpy().ravel() for k in names])
    assert _rel(net.gradient(X, Y, p2, method="operator").vector, want2) <= 1e-12
    # the layer-level products without a kept pass (another O) agree with the kept ones
    blk = net.stages[1].layer
    A = np.random.default_rng(4).standard_normal((N, T * d))
    p_st = net.stage_params(params, 2)
    assert set(p_st) == set(blk.param_shapes())
    O = blk.forward(A.reshape(N, T, d), p_st)
    G = np.random.default_rng(5).standard_normal((N, T * d))
    kept_p = blk.vjp_params(A.reshape(N, T, d), O, G, p_st)
    kept_x = blk.vjp_input(A.reshape(N, T, d), O, G, p_st)
    fresh_p = blk.vjp_params(A.reshape(N, T, d), None, G, p_st)
    fresh_x = blk.vjp_input(A.reshape(N, T, d), None, G, p_st)
    assert np.array_equal(kept_x, fresh_x)
    for k in fresh_p:
        assert np.array_equal(kept_p[k], fresh_p[k]), k
    # the kept pass lives as long as its output, no longer
    import gc

    assert blk._kept is not None
    del O
    gc.collect()
    assert blk._kept is None


def test_token_blocks_of_a_residual_chain_equal_its_dense_product():
    """The kept chain of a token-wise residual body (LN, linear, tanh, linear on T tokens) is block diagonal; its blocks
    from the stacked identity equal the dense product's diagonal blocks, and its J_θ equals torch's jacrev."""
    T, d, hidden = 3, 4, 5
    res = Residual([LayerNorm(), Linear(hidden), Tanh(), Linear(d)])
    net = Network([res, Flatten(), Dense(2)], "mse", (T, d), convention="pytorch")
    rng = np.random.default_rng(7)
    params = net.init_params(7)
    x = rng.standard_normal((T, d))
    layer = net.stages[0].layer
    J_in, _ = layer.jacobians(x, net.stage_params(params, 1))
    assert tokenwise(J_in, T)
    memo = ChainMemo(J_in, T)
    S = memo.stacked()
    dense = J_in.left_matmat(np.eye(T * d))
    assert _rel(blockdiag_dense(S, T), dense) <= 1e-14
    # the network's J_θ z[L] of one sample against torch
    tp = {k: torch.tensor(v) for k, v in params.items()}
    names = [e.name for e in net.entries]

    def f(tp, v):
        z = F.layer_norm(v, (d,), tp["gamma1.1"], tp["beta1.1"], eps=1e-5)
        z = F.linear(torch.tanh(F.linear(z, tp["W1.2"], tp["b1.2"])), tp["W1.3"], tp["b1.3"])
        return F.linear((v + z).reshape(-1), tp["W2"], tp["b2"])

    Jt = torch.func.jacrev(f)(tp, torch.tensor(x))
    want = np.concatenate([Jt[k].reshape(2, -1).numpy() for k in names], axis=1)
    J = net.jacobian_theta(x, params)
    assert _rel(J.to_dense(), want) <= 1e-12
    assert _rel(J.to_dense(), _generic(J)) <= 1e-14
    # the block as the last stage: its parameter blocks are materialized through the token blocks themselves
    net_b = Network([Residual([LayerNorm(), Linear(hidden), Tanh(), Linear(d)]), Flatten()], "mse", (T, d),
                    convention="mml")
    pb = {k: v for k, v in params.items() if k in net_b.param_names}
    Jb = net_b.jacobian_theta(x, pb)
    assert sum(isinstance(b, ChainBlock) and b.chain.blocks() is not None for b in Jb.op.blocks) == 4
    Jt = torch.func.jacrev(lambda tp, v: (v + F.linear(torch.tanh(F.linear(
        F.layer_norm(v, (d,), tp["gamma1.1"], tp["beta1.1"], eps=1e-5), tp["W1.2"], tp["b1.2"])), tp["W1.3"],
        tp["b1.3"])).reshape(-1))({k: tp[k] for k in pb}, torch.tensor(x))
    want = np.concatenate([(Jt[e.name].transpose(-1, -2) if Jt[e.name].dim() == 3 else Jt[e.name])
                           .reshape(T * d, -1).numpy() for e in net_b.entries], axis=1)
    assert _rel(Jb.to_dense(), want) <= 1e-12
    assert _rel(Jb.to_dense(), _generic(Jb)) <= 1e-14


def test_attention_inside_a_residual_body_with_a_linear_after_it_equals_torch():
    """Residual([LayerNorm, SelfAttention(no bias, causal), Linear]) as the last stage: the attention's parameter blocks
    go through the token rows of the kept Linear chain; equal to jacrev of torch's nn.MultiheadAttention and to the
    generic route."""
    from jacobian_bp.layers.attention import SelfAttention

    T, d, h = 5, 6, 2
    torch.manual_seed(11)
    mha = nn.MultiheadAttention(d, h, bias=False, batch_first=True).double()
    lin = nn.Linear(d, d).double()
    ln = nn.LayerNorm(d).double()
    with torch.no_grad():
        for p in list(mha.parameters()) + list(lin.parameters()) + list(ln.parameters()):
            p.add_(0.3 * torch.randn_like(p))
    net = Network([Residual([LayerNorm(), SelfAttention(heads=h, causal=True, bias=False), Linear(d)]), Flatten()],
                  "mse", (T, d), convention="pytorch")
    W = mha.in_proj_weight.detach().numpy()
    params = {"gamma1.1": ln.weight.detach().numpy().copy(), "beta1.1": ln.bias.detach().numpy().copy(),
              "W_Q1.2": W[:d].copy(), "W_K1.2": W[d:2 * d].copy(), "W_V1.2": W[2 * d:].copy(),
              "W_O1.2": mha.out_proj.weight.detach().numpy().copy(),
              "W1.3": lin.weight.detach().numpy().copy(), "b1.3": lin.bias.detach().numpy().copy()}
    assert set(params) == set(net.param_names)
    x = np.random.default_rng(2).standard_normal((T, d))
    J = net.jacobian_theta(x, params)
    D = J.to_dense()
    assert _rel(D, _generic(J)) <= 1e-14
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    tp = {k: torch.tensor(v) for k, v in params.items()}

    def f(tp, v):
        st = {"in_proj_weight": torch.cat([tp["W_Q1.2"], tp["W_K1.2"], tp["W_V1.2"]]), "out_proj.weight": tp["W_O1.2"]}
        z = F.layer_norm(v, (d,), tp["gamma1.1"], tp["beta1.1"], eps=1e-5)
        a = torch.func.functional_call(mha, st, (z[None], z[None], z[None]), {"need_weights": False, "attn_mask": mask})[0][0]
        return (v + F.linear(a, tp["W1.3"], tp["b1.3"])).reshape(-1)

    Jt = torch.func.jacrev(f)(tp, torch.tensor(x))
    want = np.concatenate([Jt[e.name].reshape(T * d, -1).numpy() for e in net.entries], axis=1)
    assert _rel(D, want) <= 1e-12
