"""Self-attention, the token-wise linear layer, LayerNorm on sequences and the pre-norm Transformer block,
against torch's own modules (``nn.MultiheadAttention`` with copied weights, ``nn.LayerNorm``, ``nn.Linear``, a
pre-norm block written with them) through ``torch.func.jacrev``, and against the closed-form attention
gradients of the literature written here in NumPy (independent of the Jacobian machinery).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from jacobian_bp.engine.network import Network  # noqa: E402
from jacobian_bp.errors import ShapeError, SpecError, UnsupportedInputError  # noqa: E402
from jacobian_bp.layers import Dense, Softmax  # noqa: E402
from jacobian_bp.layers.attention import SelfAttention, TransformerBlock, softmax_row_jacobians  # noqa: E402
from jacobian_bp.layers.flatten import Flatten  # noqa: E402
from jacobian_bp.layers.linear import Linear  # noqa: E402
from jacobian_bp.layers.normalization import LayerNorm  # noqa: E402
from jacobian_bp.spec import load_spec  # noqa: E402
from twin_attention import TorchBlock  # noqa: E402

torch.set_default_dtype(torch.float64)


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _mha(d, h, bias=True, seed=0):
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(d, h, batch_first=True, bias=bias).double()
    with torch.no_grad():  # torch zero-initializes the biases: make every term visible
        if bias:
            m.in_proj_bias.normal_(0, 0.3)
            m.out_proj.bias.normal_(0, 0.3)
    return m


def _mask_tensor(layer):
    return torch.tensor(layer.mask) if layer.mask.any() else None


# ---------------------------------------------------------------------------------------------------- the layer alone
@pytest.mark.parametrize("T, d, h, causal, bias, mask", [
    (4, 6, 1, False, True, None),
    (5, 8, 2, True, True, None),
    (3, 4, 4, False, False, None),
    (3, 4, 2, False, True, [[False, True, True], [False, False, True], [True, False, False]]),
])
def test_forward_vjp_and_jacobians_equal_nn_multiheadattention(T, d, h, causal, bias, mask):
    m = _mha(d, h, bias)
    kw, params = SelfAttention.from_torch_module(m, (T, d))
    layer = SelfAttention(causal=causal, attn_mask=mask, **kw)
    layer.build((T, d))
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, T, d))
    Xt = torch.tensor(X)
    am = _mask_tensor(layer)
    want = m(Xt, Xt, Xt, need_weights=False, attn_mask=am)[0]
    Y = layer.forward(X, params)
    assert _rel(Y, want.detach().numpy()) <= 1e-13

    # parameter gradients of <G, Y> (summed over the batch) and the input gradient, by torch autograd
    G = rng.standard_normal(Y.shape)
    Xg = Xt.clone().requires_grad_(True)
    out = m(Xg, Xg, Xg, need_weights=False, attn_mask=am)[0]
    (out * torch.tensor(G)).sum().backward()
    got = layer.vjp_params(X, Y, G.reshape(3, -1), params)
    W = m.in_proj_weight.grad.numpy()
    assert _rel(got["W_Q"], W[:d].ravel()) <= 1e-12
    assert _rel(got["W_K"], W[d:2 * d].ravel()) <= 1e-12
    assert _rel(got["W_V"], W[2 * d:].ravel()) <= 1e-12
    assert _rel(got["W_O"], m.out_proj.weight.grad.numpy().ravel()) <= 1e-12
    if bias:
        b = m.in_proj_bias.grad.numpy()
        assert _rel(got["b_Q"], b[:d]) <= 1e-12 and _rel(got["b_V"], b[2 * d:]) <= 1e-12
        assert _rel(got["b_O"], m.out_proj.bias.grad.numpy()) <= 1e-12
        # b_K cancels in every softmax row: torch's gradient is rounding noise, ours exactly 0
        assert np.max(np.abs(b[d:2 * d])) <= 1e-12 * np.max(np.abs(b)) and not np.any(got["b_K"])
    assert _rel(layer.vjp_input(X, Y, G.reshape(3, -1), params), Xg.grad.numpy().reshape(3, -1)) <= 1e-12

    # the full input Jacobian of one sample: jacrev of torch's module vs the structured operator and its factors
    x0 = Xt[0]
    Jt = torch.func.jacrev(lambda v: m(v[None], v[None], v[None], need_weights=False, attn_mask=am)[0][0])(x0)
    Jt = Jt.reshape(T * d, T * d).detach().numpy()
    J = layer.jac_input(X[0], Y[0], params)
    assert _rel(J.to_dense(), Jt) <= 1e-12
    assert _rel(layer.structured_input_jacobian(X[0], params).to_dense(), Jt) <= 1e-12
    # and every parameter block against jacrev w.r.t. torch's own parameters
    named = dict(m.named_parameters())

    def f(pw):
        return torch.func.functional_call(m, pw, (x0[None], x0[None], x0[None]),
                                          {"need_weights": False, "attn_mask": am})[0][0].reshape(-1)

    Jp = torch.func.jacrev(f)({k: v.detach() for k, v in named.items()})
    Jin = Jp["in_proj_weight"].reshape(T * d, 3, d, d)
    ref = {"W_Q": Jin[:, 0], "W_K": Jin[:, 1], "W_V": Jin[:, 2], "W_O": Jp["out_proj.weight"]}
    if bias:
        Jb = Jp["in_proj_bias"].reshape(T * d, 3, d)
        ref.update({"b_Q": Jb[:, 0], "b_V": Jb[:, 2], "b_O": Jp["out_proj.bias"]})
    ops = layer.jac_params(X[0], Y[0], params, "C")
    structured = layer.structured_param_jacobians(X[0], params, "C")
    for k, want_k in ref.items():
        want_k = want_k.reshape(T * d, -1).detach().numpy()
        assert _rel(ops[k].to_dense(), want_k) <= 1e-12, k
        assert _rel(ops[k].to_sparse().toarray(), want_k) <= 1e-12, k
        assert _rel(structured[k].to_dense(), want_k) <= 1e-12, k


def test_attention_gradients_match_the_closed_forms_of_the_literature():
    r"""dV = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = dS K/√d_k, dK = dSᵀ Q/√d_k (per head),
    written here from the formulas, against the layer's explicit factors J_Q C, J_K C, J_V C and its backward pass."""
    T, d, h = 5, 6, 3
    dk = d // h
    layer = SelfAttention(heads=h, causal=True)
    layer.build((T, d))
    rng = np.random.default_rng(3)
    params = layer.init_params(rng)
    x = rng.standard_normal((T, d))
    F_ = layer.attention_jacobians(x, params)
    Q, K, V = F_["Q"], F_["K"] - params["b_K"], F_["V"]
    dC = rng.standard_normal((T, d))  # cotangent of the concatenated heads C
    dQ, dK, dV = np.zeros((T, d)), np.zeros((T, d)), np.zeros((T, d))
    mask = np.triu(np.ones((T, T), bool), 1)
    for j in range(h):
        cols = slice(j * dk, (j + 1) * dk)
        S = Q[:, cols] @ K[:, cols].T / np.sqrt(dk)
        S[mask] = -np.inf
        P = np.exp(S - S.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        dO = dC[:, cols]
        dV[:, cols] = P.T @ dO
        dP = dO @ V[:, cols].T
        dS = P * (dP - np.sum(dP * P, axis=1, keepdims=True))
        dQ[:, cols] = dS @ K[:, cols] / np.sqrt(dk)
        dK[:, cols] = dS.T @ Q[:, cols] / np.sqrt(dk)
        assert _rel(F_["P"][j], P) <= 1e-14
    g = dC.ravel()
    assert _rel(F_["J_Q"].T @ g, dQ.ravel()) <= 1e-12
    assert _rel(F_["J_K"].T @ g, dK.ravel()) <= 1e-12
    assert _rel(F_["J_V"].T @ g, dV.ravel()) <= 1e-12
    # the layer's backward pass (what the engine uses) gives dQ W_Q + dK W_K + dV W_V for dY = dC W_O^{-T}
    dY = np.linalg.solve(params["W_O"].T, dC.T).T  # dC = dY W_O
    dX = layer.vjp_input(x[None], None, dY.reshape(1, -1), params)[0]
    assert _rel(dX, (dQ @ params["W_Q"] + dK @ params["W_K"] + dV @ params["W_V"]).ravel()) <= 1e-11


def test_softmax_row_jacobians_equal_torch_and_are_not_diagonal():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(5)
    p = np.exp(s - s.max())
    p /= p.sum()
    J = softmax_row_jacobians(p)
    Jt = torch.func.jacrev(lambda v: torch.softmax(v, -1))(torch.tensor(s)).numpy()
    assert _rel(J, Jt) <= 1e-14
    assert np.linalg.norm(J - np.diag(np.diag(J))) > 0.1 * np.linalg.norm(J)  # the classic mistake: diag(p)
    assert abs(np.linalg.matrix_rank(J) - 4) == 0 and np.allclose(J.sum(axis=1), 0)


def test_huge_logits_are_exact_and_finite():
    T, d, h = 4, 4, 2
    m = _mha(d, h)
    with torch.no_grad():
        m.in_proj_weight[: 2 * d] *= 300.0  # logits of size ~1e4
    kw, params = SelfAttention.from_torch_module(m, (T, d))
    layer = SelfAttention(**kw)
    layer.build((T, d))
    X = np.random.default_rng(2).standard_normal((2, T, d))
    Xt = torch.tensor(X)
    Qh = layer.split_heads(X @ params["W_Q"].T)
    Kh = layer.split_heads(X @ params["W_K"].T)
    assert np.max(np.abs(Qh @ np.swapaxes(Kh, -1, -2))) / np.sqrt(layer.d_k) > 1e3
    Y = layer.forward(X, params)
    assert np.all(np.isfinite(Y))
    assert _rel(Y, m(Xt, Xt, Xt, need_weights=False)[0].detach().numpy()) <= 1e-12
    J = layer.jac_input(X[0], Y[0], params).to_dense()
    Jt = torch.func.jacrev(lambda v: m(v[None], v[None], v[None], need_weights=False)[0][0])(Xt[0]).reshape(T * d, -1)
    assert np.all(np.isfinite(J)) and _rel(J, Jt.detach().numpy()) <= 1e-10


def test_bad_input_is_refused_with_one_line_errors():
    with pytest.raises(ShapeError, match="d = 6 .*not divisible by heads = 4"):
        SelfAttention(heads=4).build((3, 6))
    with pytest.raises(ShapeError, match="sequence length T must be >= 1"):
        SelfAttention().build((0, 4))
    with pytest.raises(ShapeError, match=r"expected a sequence \(T, d\)"):
        SelfAttention().build((4,))
    with pytest.raises(ShapeError, match=r"attn_mask must have shape \(T, T\) = \(3, 3\), received \(2, 2\)"):
        SelfAttention(attn_mask=[[False, True], [False, False]]).build((3, 2))
    with pytest.raises(ShapeError, match="nothing to attend to"):
        SelfAttention(causal=True, attn_mask=[[True, False], [False, False]]).build((2, 2))
    with pytest.raises(SpecError, match="heads must be a positive integer"):
        SelfAttention(heads=0)
    with pytest.raises(SpecError, match="booleans"):
        SelfAttention(attn_mask=[[0, 1], [1, 0]])
    with pytest.raises(SpecError, match="causal must be a boolean"):
        SelfAttention(causal="yes")
    with pytest.raises(SpecError, match="out_features"):
        Linear(0)
    with pytest.raises(ShapeError, match="use a dense layer"):
        Linear(3).build((4,))
    with pytest.raises(SpecError, match="elementwise activation"):
        TransformerBlock(activation="softmax")
    with pytest.raises(ShapeError, match="not divisible"):
        load_spec({"input": [3, 6], "layers": [{"type": "transformer_block", "heads": 4}, {"type": "flatten"}],
                   "loss": "mse"})
    with pytest.raises(SpecError):  # the network refuses T = 0 before any layer sees it
        load_spec({"input": [0, 4], "layers": [{"type": "self_attention"}, {"type": "flatten"}], "loss": "mse"})
    layer = SelfAttention(heads=2)
    layer.build((3, 4))
    with pytest.raises(ShapeError):
        layer.check_input(np.zeros((2, 0, 4)))
    m = nn.MultiheadAttention(4, 2, batch_first=True, add_bias_kv=True)
    with pytest.raises(UnsupportedInputError, match="add_bias_kv"):
        SelfAttention.from_torch_module(m, (3, 4))


def test_symbolic_forward_on_sympy_entries():
    import sympy

    layer = SelfAttention(heads=1, causal=True)
    layer.build((2, 2))
    rng = np.random.default_rng(0)
    params = {k: np.round(v * 4) / 4 for k, v in layer.init_params(rng).items()}
    xs = sympy.symbols("x1:5", real=True)
    ys = list(np.ravel(layer.forward(np.array(xs, dtype=object).reshape(1, 2, 2), params)))
    vals = rng.standard_normal(4)
    num = layer.forward(vals.reshape(1, 2, 2), params).ravel()
    sub = dict(zip(xs, vals))
    assert _rel([float(y.subs(sub)) for y in ys], num) <= 1e-12
    # token 0 sees only itself (causal): its output does not depend on token 1
    assert not any(y.has(xs[2]) or y.has(xs[3]) for y in ys[:2])


# ---------------------------------------------------------------------------------------------------- LayerNorm, linear
def test_layer_norm_on_sequences_equals_torch():
    T, d = 4, 5
    ln = nn.LayerNorm(d).double()
    with torch.no_grad():
        ln.weight.normal_(1, 0.2)
        ln.bias.normal_(0, 0.2)
    kw, params = LayerNorm.from_torch_module(ln, (T, d))
    layer = LayerNorm(**kw)
    layer.build((T, d))
    X = np.random.default_rng(0).standard_normal((2, T, d))
    X[1, 2] = 3.0  # a constant token: eps matters, still differentiable
    Y = layer.forward(X, params)
    assert Y.shape == (2, T, d) and _rel(Y, ln(torch.tensor(X)).detach().numpy()) <= 1e-13
    for i in range(2):
        Jt = torch.func.jacrev(lambda v: F.layer_norm(v, (d,), ln.weight, ln.bias, ln.eps))(torch.tensor(X[i]))
        assert _rel(layer.jac_input(X[i], Y[i], params).to_dense(), Jt.reshape(T * d, -1).detach().numpy()) <= 1e-12
    # flat inputs behave as before
    flat = LayerNorm()
    flat.build((d,))
    assert flat.forward(X[0], params).shape == (T, d)


def test_linear_equals_nn_linear_on_every_token():
    lin = nn.Linear(4, 3).double()
    layer = Linear(3)
    layer.build((5, 4))
    params = {"W": lin.weight.detach().numpy().copy(), "b": lin.bias.detach().numpy().copy()}
    X = np.random.default_rng(0).standard_normal((2, 5, 4))
    Y = layer.forward(X, params)
    assert _rel(Y, lin(torch.tensor(X)).detach().numpy()) <= 1e-14
    J = torch.func.jacrev(lambda w: F.linear(torch.tensor(X[0]), w, lin.bias))(lin.weight.detach()).reshape(15, -1)
    assert _rel(layer.jac_params(X[0], Y[0], params, "C")["W"].to_dense(), J.numpy()) <= 1e-14
    assert _rel(layer.jac_params(X[0], Y[0], params, "C")["W"].to_sparse().toarray(), J.numpy()) <= 1e-14


# ---------------------------------------------------------------------------------------------------- the Transformer block in a network
_TorchBlock = TorchBlock  # the pre-norm block written with torch's modules (tests/twin_attention.py)


def _torch_net(T, d, h, hidden, causal, n_out, seed=0):
    torch.manual_seed(seed)
    block = _TorchBlock(d, h, hidden, causal).double()
    head = nn.Linear(T * d, n_out).double()
    with torch.no_grad():
        for p in list(block.parameters()) + list(head.parameters()):
            p.add_(0.2 * torch.randn_like(p))
    return block, head


def _engine_params(net, block, head=None):
    """The engine's parameters of ``net`` from the torch block (and dense ``head``, when given: ``W2``, ``b2``)."""
    d = block.ln1.weight.shape[0]
    W = block.attn.in_proj_weight.detach().numpy()
    b = block.attn.in_proj_bias.detach().numpy()
    src = {"gamma1.ln1": block.ln1.weight, "beta1.ln1": block.ln1.bias, "gamma1.ln2": block.ln2.weight,
           "beta1.ln2": block.ln2.bias, "W_O1.attn": block.attn.out_proj.weight, "b_O1.attn": block.attn.out_proj.bias,
           "W1.fc1": block.fc1.weight, "b1.fc1": block.fc1.bias, "W1.fc2": block.fc2.weight, "b1.fc2": block.fc2.bias}
    if head is not None:
        src.update({"W2": head.weight, "b2": head.bias})
    out = {k: v.detach().numpy().copy() for k, v in src.items()}
    for j, c in enumerate("QKV"):
        out[f"W_{c}1.attn"] = W[j * d:(j + 1) * d].copy()
        out[f"b_{c}1.attn"] = b[j * d:(j + 1) * d].copy()
    assert set(out) == set(net.param_names)
    return out


def _torch_param_dict(net, params):
    return {k: torch.tensor(v) for k, v in params.items()}


def _block_state(tp):
    """The torch block's state dict from the engine's parameter names (Q, K, V stacked into ``in_proj``)."""
    return {"ln1.weight": tp["gamma1.ln1"], "ln1.bias": tp["beta1.ln1"], "ln2.weight": tp["gamma1.ln2"],
            "ln2.bias": tp["beta1.ln2"],
            "attn.in_proj_weight": torch.cat([tp["W_Q1.attn"], tp["W_K1.attn"], tp["W_V1.attn"]]),
            "attn.in_proj_bias": torch.cat([tp["b_Q1.attn"], tp["b_K1.attn"], tp["b_V1.attn"]]),
            "attn.out_proj.weight": tp["W_O1.attn"], "attn.out_proj.bias": tp["b_O1.attn"],
            "fc1.weight": tp["W1.fc1"], "fc1.bias": tp["b1.fc1"], "fc2.weight": tp["W1.fc2"], "fc2.bias": tp["b1.fc2"]}


def _functional(block, head, d):
    def f(tp, x):
        y = torch.func.functional_call(block, _block_state(tp), (x,))
        return F.linear(y.reshape(x.shape[0], -1), tp["W2"], tp["b2"])
    return f


@pytest.mark.parametrize("causal", [False, True])
def test_transformer_block_network_equals_torch_in_every_backend(causal):
    T, d, h, hidden, n_out, N = 4, 8, 2, 12, 3, 3
    net = Network([TransformerBlock(heads=h, mlp_hidden=hidden, causal=causal), Flatten(), Dense(n_out), Softmax()],
                  "cross_entropy", (T, d), convention="pytorch")
    assert [e.name for e in net.entries][:4] == ["gamma1.ln1", "beta1.ln1", "W_Q1.attn", "W_K1.attn"]
    block, head = _torch_net(T, d, h, hidden, causal, n_out)
    params = _engine_params(net, block, head)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((N, T, d))
    Y = np.eye(n_out)[rng.integers(0, n_out, N)]
    f = _functional(block, head, d)
    tp = _torch_param_dict(net, params)
    names = [e.name for e in net.entries]

    def loss(tp, x, y):
        return -(y * torch.log_softmax(f(tp, x), -1)).sum(-1).mean()

    tpg = {k: v.clone().requires_grad_(True) for k, v in tp.items()}
    loss(tpg, torch.tensor(X), torch.tensor(Y)).backward()
    want = np.concatenate([tpg[k].grad.numpy().ravel() for k in names])
    for method in ("chain", "operator"):
        assert _rel(net.gradient(X, Y, params, method=method).vector, want) <= 1e-12, method
    rows = net.per_sample_gradients(X, Y, params)
    for i in range(N):
        gi = torch.func.grad(loss)(tp, torch.tensor(X[i:i + 1]), torch.tensor(Y[i:i + 1]))
        assert _rel(rows[i], np.concatenate([gi[k].numpy().ravel() for k in names])) <= 1e-12

    # full J_θ z[L] and J_x z[L] of one sample by jacrev
    x = X[1]
    Jt = torch.func.jacrev(lambda tp: f(tp, torch.tensor(x)[None])[0])(tp)
    Jt = np.concatenate([Jt[k].reshape(n_out, -1).numpy() for k in names], axis=1)
    J = net.jacobian_theta(x, params)
    assert _rel(J.to_dense(), Jt) <= 1e-12
    assert _rel(J.to_sparse().toarray(), Jt) <= 1e-12
    Jx = torch.func.jacrev(lambda v: f(tp, v[None])[0])(torch.tensor(x)).reshape(n_out, -1).numpy()
    assert _rel(net.jacobian_input(x, params).to_dense(), Jx) <= 1e-12


def test_transformer_block_output_jacobians_against_jacrev_and_the_two_residual_spec():
    """J_θ of the block's own output (the block is the last stage) and J_x, and the same block written in the spec as two
    residual blocks gives the same numbers (the parameters renamed)."""
    T, d, h, hidden = 3, 4, 2, 6
    spec_block = {"input": [T, d], "layers": [{"type": "transformer_block", "heads": h, "mlp_hidden": hidden},
                                              {"type": "flatten"}], "loss": "mse", "convention": "pytorch"}
    spec_res = {"input": [T, d], "layers": [
        {"type": "residual", "body": [{"type": "layer_norm"}, {"type": "self_attention", "heads": h}]},
        {"type": "residual", "body": [{"type": "layer_norm"}, {"type": "linear", "out_features": hidden}, {"type": "gelu"},
                                      {"type": "linear", "out_features": d}]},
        {"type": "flatten"}], "loss": "mse", "convention": "pytorch"}
    net = load_spec(spec_block).network
    net2 = load_spec(spec_res).network
    block, _ = _torch_net(T, d, h, hidden, False, 1)
    params = _engine_params(net, block)
    rename = {"gamma1.ln1": "gamma1.1", "beta1.ln1": "beta1.1", "gamma1.ln2": "gamma2.1", "beta1.ln2": "beta2.1",
              "W1.fc1": "W2.2", "b1.fc1": "b2.2", "W1.fc2": "W2.3", "b1.fc2": "b2.3"}
    for c in "QKVO":
        rename[f"W_{c}1.attn"] = f"W_{c}1.2"
        rename[f"b_{c}1.attn"] = f"b_{c}1.2"
    params2 = {rename[k]: v for k, v in params.items()}
    assert set(params2) == set(net2.param_names)
    x = np.random.default_rng(0).standard_normal((T, d))
    tp = {k: torch.tensor(v) for k, v in params.items()}

    def out(tp, v):
        return torch.func.functional_call(block, _block_state(tp), (v[None],))[0].reshape(-1)

    names = [e.name for e in net.entries]
    Jt = torch.func.jacrev(out)(tp, torch.tensor(x))
    Jt = np.concatenate([Jt[k].reshape(T * d, -1).numpy() for k in names], axis=1)
    J = net.jacobian_theta(x, params).to_dense()
    assert _rel(J, Jt) <= 1e-12
    J2 = net2.jacobian_theta(x, params2).to_dense()
    cols = {e.name: J2[:, e.slice] for e in net2.entries}
    assert _rel(np.concatenate([cols[rename[k]] for k in names], axis=1), Jt) <= 1e-12
    Jx = torch.func.jacrev(lambda v: out(tp, v))(torch.tensor(x)).reshape(T * d, -1).numpy()
    assert _rel(net.jacobian_input(x, params).to_dense(), Jx) <= 1e-12
    assert _rel(net2.jacobian_input(x, params2).to_dense(), Jx) <= 1e-12


def test_symbolic_network_jacobians_of_attention_equal_the_numeric_ones():
    """SymbolicNetwork (exact SymPy entries) through the attention layer: J_x z[L] with the input symbolic, the
    numbers substituted afterwards, equals the numeric engine and torch's module."""
    import sympy

    from jacobian_bp.symbolic import SymbolicNetwork

    spec = {"input": [2, 2], "layers": [{"type": "self_attention", "heads": 1}, {"type": "flatten"},
                                        {"type": "dense", "out_features": 1}], "loss": "mse", "convention": "pytorch"}
    net = load_spec(spec).network
    rng = np.random.default_rng(4)
    params = {k: np.round(4 * v) / 4 for k, v in net.init_params(1).items()}
    sn = SymbolicNetwork(net, params={k: np.vectorize(sympy.Rational)(np.round(4 * v).astype(int), 4).astype(object)
                                      for k, v in params.items()})
    Jx = sn.jacobian_input().to_sympy()
    x = rng.standard_normal((2, 2))
    sub = {s: v for s, v in zip(np.ravel(sn.x), np.ravel(x))}
    got = np.array(Jx.subs(sub).evalf(30).tolist(), dtype=float)
    assert _rel(got, net.jacobian_input(x, params).to_dense()) <= 1e-12
    m = nn.MultiheadAttention(2, 1, batch_first=True).double()
    with torch.no_grad():
        m.in_proj_weight.copy_(torch.tensor(np.concatenate([params["W_Q1"], params["W_K1"], params["W_V1"]])))
        m.in_proj_bias.copy_(torch.tensor(np.concatenate([params["b_Q1"], params["b_K1"], params["b_V1"]])))
        m.out_proj.weight.copy_(torch.tensor(params["W_O1"]))
        m.out_proj.bias.copy_(torch.tensor(params["b_O1"]))
    W2, b2 = torch.tensor(params["W2"]), torch.tensor(params["b2"])
    Jt = torch.func.jacrev(lambda v: F.linear(m(v[None], v[None], v[None], need_weights=False)[0].reshape(1, -1), W2, b2)[0])(
        torch.tensor(x)).reshape(1, -1).detach().numpy()
    assert _rel(got, Jt) <= 1e-12
