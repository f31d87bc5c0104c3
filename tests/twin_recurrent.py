"""Torch twins of the recurrent layers (``rnn``, ``lstm``) for ``tests/torch_twin.py``: torch's own modules.

The twin builds a ``torch.nn.RNN`` (tanh) / ``torch.nn.LSTM`` from the layer's public attributes (``hidden_size``,
``in_shape = (T, d)``, ``bias``, ``output``) and runs it with ``torch.func.functional_call`` on the parameters read
from θ, so the oracle is torch's recurrent kernel itself, not a re-implementation.  The package's Elman RNN has
one bias ``b`` (``b_ih + b_hh`` of torch): the twin passes it as ``bias_ih_l0`` with ``bias_hh_l0 = 0``.
Canonical shapes follow torch's layout: ``W_ih`` ``(G, d)``, ``W_hh`` ``(G, H)``, biases ``(G,)`` with ``G = H``
(RNN) or ``4H`` (LSTM, gate order i, f, g, o).
"""
from __future__ import annotations

import functools

import torch

import torch_twin


def _shapes(layer, gates: int, biases: tuple[str, ...]):
    H, d = layer.hidden_size, layer.in_shape[1]
    out = [("W_ih", (gates * H, d)), ("W_hh", (gates * H, H))]
    if layer.bias:
        out += [(b, (gates * H,)) for b in biases]
    return out


@functools.lru_cache(maxsize=None)
def _module(module_cls, d: int, H: int, bias: bool, **kw):
    # built once per shape, in float64 (``.double()`` would mutate ``.data``, refused inside torch.func transforms);
    # its own weights are never used: functional_call substitutes the parameters read from θ
    return module_cls(d, H, num_layers=1, bias=bias, batch_first=True, dtype=torch.float64, **kw)


def _run(module_cls, layer, a, p, torch_params):
    kw = {"nonlinearity": "tanh"} if module_cls is torch.nn.RNN else {}
    m = _module(module_cls, layer.in_shape[1], layer.hidden_size, layer.bias, **kw)
    out, _ = torch.func.functional_call(m, torch_params, (a,))
    return out[:, -1] if layer.output == "last" else out


def _rnn(layer, a, p):
    tp = {"weight_ih_l0": p["W_ih"], "weight_hh_l0": p["W_hh"]}
    if layer.bias:
        tp["bias_ih_l0"] = p["b"]
        tp["bias_hh_l0"] = torch.zeros_like(p["b"])
    return _run(torch.nn.RNN, layer, a, p, tp)


def _lstm(layer, a, p):
    tp = {"weight_ih_l0": p["W_ih"], "weight_hh_l0": p["W_hh"]}
    if layer.bias:
        tp["bias_ih_l0"] = p["b_ih"]
        tp["bias_hh_l0"] = p["b_hh"]
    return _run(torch.nn.LSTM, layer, a, p, tp)


torch_twin.EXTRA_SHAPES["rnn"] = lambda layer: _shapes(layer, 1, ("b",))
torch_twin.EXTRA_SHAPES["lstm"] = lambda layer: _shapes(layer, 4, ("b_ih", "b_hh"))
torch_twin.EXTRA_FORWARD["rnn"] = _rnn
torch_twin.EXTRA_FORWARD["lstm"] = _lstm
