"""Torch twins of the sequence families (``linear``, ``self_attention``, ``layer_norm`` on sequences,
``transformer_block``) for ``tests/torch_twin.py``.

Written from torch's own definitions, not from the package: the attention runs torch's
``F.multi_head_attention_forward`` (the code path of ``nn.MultiheadAttention``) with
``in_proj_weight = [W_Q; W_K; W_V]``; the Transformer block is the pre-norm block written out
(``x + MHA(LN1 x)``, then ``u + fc2(act(fc1(LN2 u)))``) with ``F.layer_norm`` and ``F.linear``.
The parameter shapes are read from the layer's public facts (``d``, ``heads``, ``bias``,
``param_shapes()`` for the composite's names).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_twin

_ACT = {"gelu": F.gelu, "tanh": torch.tanh, "relu": F.relu, "sigmoid": torch.sigmoid, "identity": lambda z: z}


def _attention(a, p, heads: int, mask, bias: bool):
    d = a.shape[-1]
    W_in = torch.cat([p["W_Q"], p["W_K"], p["W_V"]], dim=0)
    b_in = torch.cat([p["b_Q"], p["b_K"], p["b_V"]]) if bias else None
    q = a.transpose(0, 1)  # (T, N, d): torch's sequence-first layout
    out, _ = F.multi_head_attention_forward(q, q, q, d, heads, W_in, b_in, None, None, False, 0.0, p["W_O"],
                                            p["b_O"] if bias else None, training=False, need_weights=False,
                                            attn_mask=mask)
    return out.transpose(0, 1)


def _mask(T: int, causal: bool, attn_mask):
    m = torch.zeros((T, T), dtype=torch.bool)
    if causal:
        m = m | torch.triu(torch.ones((T, T), dtype=torch.bool), 1)
    if attn_mask is not None:
        m = m | torch.tensor(attn_mask, dtype=torch.bool)
    return m if bool(m.any()) else None


def _sa_shapes(layer):
    d = layer.in_shape[1]
    names = ["W_Q", "W_K", "W_V"] + (["b_Q", "b_K", "b_V"] if layer.bias else []) + ["W_O"] + (["b_O"] if layer.bias else [])
    return [(n, (d, d) if n.startswith("W") else (d,)) for n in names]


def _sa_forward(layer, a, p):
    return _attention(a, p, layer.heads, _mask(layer.in_shape[0], layer.causal, layer.attn_mask), layer.bias)


def _linear_shapes(layer):
    out = [("W", (layer.out_features, layer.in_shape[1]))]
    return out + ([("b", (layer.out_features,))] if layer.bias else [])


def _linear_forward(layer, a, p):
    return F.linear(a, p["W"], p.get("b"))


def _ln_shapes(layer):
    n = layer.in_shape[-1]
    return [("gamma", (n,)), ("beta", (n,))] if layer.affine else []


def _ln_forward(layer, a, p):
    return F.layer_norm(a, (layer.in_shape[-1],), p.get("gamma"), p.get("beta"), layer.eps)


def _block_shapes(layer):
    return list(layer.param_shapes().items())


def _block_forward(layer, x, p):
    d = layer.in_shape[1]
    eps = layer.eps
    att = {k.split(".")[0]: v for k, v in p.items() if k.endswith(".attn")}
    h = F.layer_norm(x, (d,), p["gamma.ln1"], p["beta.ln1"], eps)
    u = x + _attention(h, att, layer.heads, _mask(layer.in_shape[0], layer.causal, None), True)
    h = F.layer_norm(u, (d,), p["gamma.ln2"], p["beta.ln2"], eps)
    h = _ACT[layer.activation](F.linear(h, p["W.fc1"], p["b.fc1"]))
    return u + F.linear(h, p["W.fc2"], p["b.fc2"])


torch_twin.EXTRA_SHAPES.update({"self_attention": _sa_shapes, "linear": _linear_shapes, "transformer_block": _block_shapes})
torch_twin.EXTRA_FORWARD.update({"self_attention": _sa_forward, "linear": _linear_forward, "transformer_block": _block_forward})
torch_twin.EXTRA_SHAPES.setdefault("layer_norm", _ln_shapes)
torch_twin.EXTRA_FORWARD.setdefault("layer_norm", _ln_forward)


class TorchBlock(nn.Module):
    """The pre-norm block with torch's own modules (``nn.LayerNorm``, ``nn.MultiheadAttention``, ``nn.Linear``):
    x + MHA(LN1 x), then u + fc2(gelu(fc1(LN2 u))); causal masks with ``torch.triu``."""

    def __init__(self, d, h, hidden, causal):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, h, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.causal = causal

    def forward(self, x):
        T = x.shape[1]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if self.causal else None
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
