"""The torch twin of residual blocks ``a + body(a)`` (He et al., 2016, eq. (1)), for tests/torch_twin.py.

Written from the block's public attributes only (``layer.body``, each body layer's own public attributes) and
the twin's own per-kind functions (``torch_twin._parametric`` / ``torch_twin._activation``, recursively for a
nested block), never from the package's ``Residual.torch_forward`` nor its θ code:

* parameters: the ``k``-th *parametric* body layer's tensors are named ``<local>.<k>`` (``W.1``, ``b.1``;
  ``W.2.1`` inside a nested block), the documented naming of :mod:`jacobian_bp.layers.residual`; the network
  calls the block's ``W.1`` of stage ``l`` ``W<l>.1``;
* θ layout: ``torch_twin.theta_layout`` knows one parameter per name ``W``/``b``/``K`` of a flat layer; for a
  network with residual blocks it is wrapped here with the same rules applied to the *leaf* layer that owns a
  dotted name: a dense sub-layer's ``W`` is the tensor the ``in_out`` weight layout transposes, a sub-layer's
  ``b`` (or ``b_*``: ``b_Q``, ``b_hh``) is a bias for the weights-first order (the exact change the wrapper makes
  to ``theta_layout``: ``transposed = leaf.kind == "dense" and leaf_local == "W" and in_out``, bias iff
  the name before a dot is ``b`` or starts with ``b_``, slot name ``f"{base}{l}.{rest}"``).
"""
from __future__ import annotations

from math import prod

import torch_twin as twin


def _join(local: str, k: int) -> str:
    base, dot, rest = local.partition(".")
    return f"{base}.{k}.{rest}" if dot else f"{base}.{k}"


def _parametric_body(layer) -> list:
    return [sub for sub in layer.body if sub.parametric]


def residual_shapes(layer) -> list[tuple[str, tuple]]:
    """The block's canonical parameter shapes: each parametric body layer's own, renamed ``<local>.<k>``."""
    out = []
    for k, sub in enumerate(_parametric_body(layer), 1):
        out += [(_join(local, k), tuple(shape)) for local, shape in twin._canonical_shapes(sub)]
    return out


def residual_forward(layer, a, p):
    """``a + body(a)`` with the twin's own functions for each body layer (batch-first torch tensors)."""
    h, k = a, 0
    for sub in layer.body:
        if sub.parametric:
            k += 1
            own = {local: p[_join(local, k)] for local, _ in twin._canonical_shapes(sub)}
            h = twin._parametric(sub, h, own)
        else:
            h = twin._activation(sub, h)
    return a + h


def _leaf(layer, local: str):
    """``(layer, local name)`` of the flat layer that owns the block parameter ``local`` (``W.2.1``: the first
    parametric layer of the block that is the second parametric layer of ``layer``)."""
    base, _, rest = local.partition(".")
    if layer.kind != "residual" or not rest:
        return layer, local
    k, _, deeper = rest.partition(".")
    return _leaf(_parametric_body(layer)[int(k) - 1], base + ("." + deeper if deeper else ""))


def _name(l: int, local: str) -> str:
    base, dot, rest = local.partition(".")
    return f"{base}{l}.{rest}" if dot else f"{local}{l}"


def theta_layout(net) -> list:
    """``torch_twin.theta_layout`` with dotted block names (see the module docstring); for a flat network it is the
    flat layout, except that the weights-first order also counts ``b_*`` (``b_Q``, ``b_hh``) as biases, as Ganev's
    Param does and as the package's layers now state (``Layer.param_role``)."""
    conv = net.convention
    per_stage = []
    for l, (layer, _) in enumerate(twin._stages(net), 1):
        items = []
        for local, cshape in twin._canonical_shapes(layer):
            leaf, leaf_local = _leaf(layer, local)
            transposed = leaf.kind == "dense" and leaf_local == "W" and conv.weight_layout == "in_out"
            ushape = tuple(reversed(cshape)) if transposed else tuple(cshape)
            order = "C" if conv.vec_order == "row" else "F"
            base = leaf_local.partition(".")[0]  # a composite layer's own dotted names: b.fc1 is its fc1's b
            bias = base == "b" or base.startswith("b_")  # b, and b_Q, b_ih, b_hh of attention / RNN cells
            items.append((l, local, tuple(cshape), ushape, order, transposed, bias))
        per_stage.append(items)
    if conv.theta_order == "forward":
        seq = [it for items in per_stage for it in items]
    elif conv.theta_order == "reverse":
        seq = [it for items in reversed(per_stage) for it in items]
    else:  # weights_first
        seq = [it for items in per_stage for it in items if not it[6]]
        seq += [it for items in per_stage for it in items if it[6]]
    slots, off = [], 0
    for l, local, cshape, ushape, order, transposed, _ in seq:
        slots.append(twin.Slot(_name(l, local), l, local, cshape, ushape, order, transposed, off))
        off += prod(cshape)
    return slots


twin.EXTRA_SHAPES["residual"] = residual_shapes
twin.EXTRA_FORWARD["residual"] = residual_forward
twin.theta_layout = theta_layout
