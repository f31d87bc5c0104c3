"""Torch twin of the ``batch_norm`` family (training mode) for ``tests/torch_twin.py``.

Written from torch's definition, not from the layer: ``torch.nn.functional.batch_norm(..., training=True)``
with no running buffers normalizes each feature with the mean and the biased variance of the batch
(``eps`` inside the square root), then applies γ, β.  A batch of one sample raises torch's own
``ValueError`` ("Expected more than 1 value per channel when training").
"""
from __future__ import annotations

import torch.nn.functional as F

import torch_twin


def _shapes(layer):
    n = layer.in_shape[0]
    return [("gamma", (n,)), ("beta", (n,))] if layer.affine else []


def _forward(layer, a, p):
    return F.batch_norm(a, None, None, p.get("gamma"), p.get("beta"), training=True, momentum=0.0, eps=layer.eps)


torch_twin.EXTRA_SHAPES["batch_norm"] = _shapes
torch_twin.EXTRA_FORWARD["batch_norm"] = _forward
