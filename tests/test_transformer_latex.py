"""The LaTeX derivation of a network with a Transformer block (and of an unrolled LSTM) reads like a paper.

* The block is drawn expanded (asked through :meth:`Layer.inner_stages`, never by its kind): its two residual
  blocks, each stated once as :math:`\\mathbf I + ` its body's chain, each inner stage's Jacobian with its own
  formula (LayerNorm's :math:`(\\gamma/\\sigma)(\\mathbf I - \\mathbf 1\\mathbf 1^\\top/d - \\hat{\\mathbf x}\\hat{\\mathbf x}^\\top/d)`,
  the attention's :math:`(\\mathbf I\\otimes\\mathbf W_O)[\\mathbf J_{\\mathbf Q}\\mathbf C\\;\\dots]`), one chain per
  inner parameter.
* The block formulas evaluated numerically equal the Jacobians of an independent PyTorch model of the same network
  (``F.layer_norm``, ``F.multi_head_attention_forward``, ``F.linear``, ``F.gelu``; ``torch.func.jacrev``), and their
  shapes match the engine's ``chain_factors``.
* The documents compile with pdflatex without an overfull line wider than 20 pt.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from jacobian_bp.render.derivation import derivation_document
from jacobian_bp.render.latex import NetworkLatex, render
from jacobian_bp.spec import load_spec

T, D, HID, HEADS = 3, 4, 6, 2
SPEC = {"name": "transformer net", "input": [T, D],
        "layers": [{"type": "transformer_block", "heads": HEADS, "mlp_hidden": HID}, {"type": "flatten"},
                   {"type": "dense", "out_features": 3}, {"type": "softmax"}],
        "loss": "cross_entropy", "convention": "pytorch", "data": {"seed": 1, "batch": 1}, "params": {"seed": 2}}
LSTM_SPECS = [
    {"name": "lstm net", "input": [3, 2], "layers": [{"type": "lstm", "hidden_size": 2}, {"type": "dense", "out_features": 2},
                                                    {"type": "softmax"}],
     "loss": "cross_entropy", "convention": "pytorch", "data": {"seed": 1, "batch": 1}, "params": {"seed": 2}},
    {"name": "stacked", "input": [4, 3], "layers": [{"type": "rnn", "hidden_size": 3, "output": "all"},
                                                   {"type": "lstm", "hidden_size": 3, "output": "all"}, {"type": "flatten"},
                                                   {"type": "dense", "out_features": 2}, {"type": "softmax"}],
     "loss": "cross_entropy", "convention": "damadi", "data": {"seed": 1, "batch": 2}, "params": {"seed": 2}},
]
BLOCK_NAMES = ["gamma1.ln1", "beta1.ln1", "W_Q1.attn", "W_K1.attn", "W_V1.attn", "b_Q1.attn", "b_K1.attn", "b_V1.attn",
               "W_O1.attn", "b_O1.attn", "gamma1.ln2", "beta1.ln2", "W1.fc1", "b1.fc1", "W1.fc2", "b1.fc2"]


@pytest.fixture(scope="module")
def net():
    s = load_spec(SPEC)
    Xb, Yb, _ = s.network.as_batch(*s.data())
    return s, s.params(), Xb[0], Yb[0]


def _overfull(log: str) -> list[float]:
    return [float(m) for m in re.findall(r"Overfull \\hbox \(([0-9.]+)pt too wide\)", log)]


def _compile(tex: str, tmp_path) -> str:
    """pdflatex once on the document; returns its log (the caller checks overfull boxes)."""
    (tmp_path / "doc.tex").write_text(tex)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
                          cwd=tmp_path, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    log = (tmp_path / "doc.log").read_text(encoding="latin-1")
    assert proc.returncode == 0 and (tmp_path / "doc.pdf").stat().st_size > 1000, log[-3000:]
    return log


# ---------------------------------------------------------------------------------------------------- the expansion
def test_the_block_is_expanded_through_the_layer_protocol(net):
    s, params, x, y = net
    block = s.network.stages[0].layer
    assert block.inner_stages() is not None  # asked, not switched on its kind
    nl = NetworkLatex(s.network, params, x, y)
    body = nl.body(1)
    assert [ss.index for ss in body.subs] == [1, 2] and sorted(body.inner) == [1, 2]  # the two residual blocks
    defs = body.definitions()
    texts = [render(f.body, nl.nt) for f, _ in defs]
    labels = [render(f.label, nl.nt) for f, _ in defs]
    # each inner stage's Jacobian with its own formula, each inner residual as I + its body's chain
    assert sum(r"\tfrac{1}{d}\mathbf{1}\mathbf{1}^\top" in t for t in texts) == 2  # the two LayerNorms
    assert any(r"\mathbf{J}_{\mathbf{Q}}\mathbf{C}" in t and r"\mathbf{W}_{O}^{(1.attn)}" in t for t in texts)
    assert sum(t.startswith(r"\mathbf{I}_{12} + ") for t in texts) == 2
    assert any(r"\mathbf{z}^{(1.1.2)}" in lab for lab in labels)  # the attention stage inside the first block
    # the block's own input Jacobian: the product of its two residual blocks (no skip of its own)
    ij = render(nl.input_jacobian(1).body, nl.nt)
    assert "+" not in ij and ij.count(r"\frac") == 2
    # one chain per inner parameter, the short stacked label for the whole block
    assert [e.name for e in s.network.entries if e.stage == 1] == BLOCK_NAMES
    assert r"\boldsymbol{\theta}^{(1)}" in render(nl.block([e for e in s.network.entries if e.stage == 1]).label, nl.nt)
    tex = derivation_document(s.network, params, x, y, use_torch=False)
    assert r"\frac{\partial \mathbf{z}^{(1)}}{\partial \operatorname{vec}\mathbf{W}_{Q}^{(1.attn)}}" in tex
    assert "pre-norm Transformer block" in tex and "no skip connection of its own" in tex
    assert r"\mathbf{z}^{(1)} &= \mathbf{z}^{(1.2)}" in tex and r"\mathbf{z}^{(1.1)} &= \mathbf{x} + \mathbf{z}^{(1.1.2)}" in tex


def test_the_rendered_factors_have_the_engine_s_shapes(net):
    s, params, x, y = net
    nl = NetworkLatex(s.network, params, x, y)
    factors = s.network.chain_factors(x, params, 0)
    rendered = nl.chain(1).body.factors + [nl.input_jacobian(1)]
    assert [tuple(f.shape) for f in factors] == [f.shape for f in rendered]
    for f, r in zip(factors, rendered):
        np.testing.assert_allclose(r.evaluate(), f.to_dense() if hasattr(f, "to_dense") else np.asarray(f.op.dense()),
                                   rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------------- the numbers
def _torch_net(torch, F, x, p):
    """The network written from torch's own definitions: pre-norm block, flatten, dense (torch layout)."""
    def attention(a, q):
        W_in = torch.cat([q["W_Q"], q["W_K"], q["W_V"]])
        b_in = torch.cat([q["b_Q"], q["b_K"], q["b_V"]])
        s = a.unsqueeze(1)  # (T, 1, d): torch's sequence-first layout, a batch of one
        out, _ = F.multi_head_attention_forward(s, s, s, D, HEADS, W_in, b_in, None, None, False, 0.0, q["W_O"], q["b_O"],
                                                training=False, need_weights=False)
        return out.squeeze(1)

    X = x.reshape(T, D)
    att = {k.split("1.")[0]: v for k, v in p.items() if k.endswith(".attn")}
    u = X + attention(F.layer_norm(X, (D,), p["gamma1.ln1"], p["beta1.ln1"], 1e-5), att)
    h = F.gelu(F.linear(F.layer_norm(u, (D,), p["gamma1.ln2"], p["beta1.ln2"], 1e-5), p["W1.fc1"], p["b1.fc1"]))
    z1 = (u + F.linear(h, p["W1.fc2"], p["b1.fc2"])).reshape(-1)
    return z1, p["W2"] @ z1 + p["b2"]


def test_the_block_formulas_evaluate_to_torch_s_jacobians(net):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    from torch.func import jacrev

    s, params, x, y = net
    nl = NetworkLatex(s.network, params, x, y)
    tp = {k: torch.tensor(np.asarray(v, dtype=float)) for k, v in params.items()}
    tx = torch.tensor(np.asarray(x, dtype=float))
    block = [e for e in s.network.entries if e.stage == 1]
    J1, J2 = jacrev(lambda q: _torch_net(torch, F, tx, dict(tp, **q)))({e.name: tp[e.name] for e in block})
    for e in block:  # torch's Jacobian w.r.t. a parameter tensor, its entries flattened row-major (the pytorch vec)
        np.testing.assert_allclose(nl.local_jacobian(1, [e]).evaluate(), J1[e.name].reshape(T * D, -1).numpy(),
                                   rtol=1e-9, atol=1e-11, err_msg=e.name)
        np.testing.assert_allclose(nl.block([e]).evaluate(), J2[e.name].reshape(3, -1).numpy(),
                                   rtol=1e-9, atol=1e-11, err_msg=e.name)
    Jx = jacrev(lambda v: _torch_net(torch, F, v, tp)[0])(tx)
    np.testing.assert_allclose(nl.input_jacobian(1).evaluate(), Jx.numpy().reshape(T * D, T * D), rtol=1e-9, atol=1e-11)
    for f, lab in nl.body(1).definitions():  # every stated inner Jacobian carries the engine's value
        assert f.evaluate().shape == f.shape


# ---------------------------------------------------------------------------------------------------- the pages
needs_pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")


@needs_pdflatex
def test_the_transformer_derivation_compiles_without_overfull_lines(net, tmp_path):
    s, params, x, y = net
    log = _compile(derivation_document(s.network, params, x, y, use_torch=False), tmp_path)
    assert max(_overfull(log), default=0.0) <= 20.0, [ln for ln in log.splitlines() if "Overfull" in ln]


@needs_pdflatex
@pytest.mark.parametrize("spec", LSTM_SPECS, ids=["lstm", "rnn-lstm-stacked"])
def test_the_unrolled_lstm_derivation_compiles_without_overfull_lines(spec, tmp_path):
    s = load_spec(spec)
    X, Y = s.data()
    tex = derivation_document(s.network, s.params(), X, Y, use_torch=False)
    assert "LSTM over" in tex and r"\prod_{t=T}^{s+1}" in tex
    log = _compile(tex, tmp_path)
    assert max(_overfull(log), default=0.0) <= 20.0, [ln for ln in log.splitlines() if "Overfull" in ln]
