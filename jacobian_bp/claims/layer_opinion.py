r"""The package's own layers as a second opinion for the formula judge (one channel, or an input ``(C_in, H, W)``
and a kernel ``(C_out, C_in, h, w)``): the derivative of
:math:`\langle G, \operatorname{conv}(X, K) + b\rangle` with respect to ``X``, ``K`` or ``b`` from
:class:`~jacobian_bp.layers.conv.Conv2d` (``jac_input`` / ``jac_params``), and of
:math:`\langle G, \operatorname{pool}(X)\rangle` from :class:`~jacobian_bp.layers.pooling.AvgPool2d` /
:class:`~jacobian_bp.layers.pooling.MaxPool2d` (``jac_input``, with the claim's window ``k``, stride ``s`` -- default ``k`` --
and padding ``p``): :math:`\mathbf J^\top \operatorname{vec} G`."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .derivative import Instance
from .formula_tree import Node

__all__ = ["layer_opinion"]


def layer_opinion(f: Node, wrt: str, knobs: Mapping, I: Instance) -> np.ndarray | None:
    """The derivative of ⟨G, conv(X, K) + b⟩ or ⟨G, pool(X)⟩ from the package's Conv2d / AvgPool2d / MaxPool2d
    layer Jacobians, or None."""
    if f.op != "inner":
        return None
    G, Y = f.args
    if Y.op in ("avgpool", "maxpool") and G.op == "sym" and Y.args[0].op == "sym" and Y.args[0].attr("name") == wrt:
        from ..layers.pooling import AvgPool2d, MaxPool2d
        env = {k: np.vectorize(float, otypes=[float])(v) for k, v in I.env.items()}
        X, Gv = env[wrt], env[G.attr("name")]
        k = int(knobs.get("k", 2))
        stride, pad = int(knobs.get("s", k)), int(knobs.get("p", 0))
        if 2 * pad > k:
            return None
        layer = (AvgPool2d if Y.op == "avgpool" else MaxPool2d)(k, stride=stride, padding=pad)
        shape = X.shape if X.ndim == 3 else (1,) + X.shape  # (C, H, W): pooled channel by channel
        try:
            layer.build(shape)
        except Exception:  # noqa: BLE001 - the window does not fit: no second opinion
            return None
        a = X.reshape(-1)
        o = layer.forward(X.reshape((1,) + shape), {}).reshape(-1)
        if o.size != Gv.size:
            return None
        return layer.jac_input(a, o, {}).rmatvec(Gv.reshape(-1)).reshape(X.shape)
    b = None
    if Y.op == "add" and Y.args[1].op == "sym":
        Y, b = Y.args[0], Y.args[1]
    if Y.op != "conv2d" or G.op != "sym" or any(a.op != "sym" for a in Y.args):
        return None
    from ..layers.conv import Conv2d
    Xn, Kn = Y.args[0].attr("name"), Y.args[1].attr("name")
    env = {k: np.vectorize(float, otypes=[float])(v) for k, v in I.env.items()}
    X, K, Gv = env[Xn], env[Kn], env[G.attr("name")]
    kn = knobs
    xshape = X.shape if X.ndim == 3 else (1,) + X.shape  # (C_in, H, W)
    K4 = K if K.ndim == 4 else K.reshape((1, 1) + K.shape)  # (C_out, C_in, h, w)
    if len(xshape) != 3 or K4.ndim != 4 or K4.shape[1] != xshape[0]:
        return None
    layer = Conv2d(K4.shape[0], K4.shape[2:], stride=int(kn.get("s", 1)), padding=int(kn.get("p", 0)),
                   dilation=int(kn.get("d", 1)), mode=kn.get("mode", "correlation"), bias="tied", in_channels=xshape[0])
    try:
        layer.build(xshape)
    except Exception:  # noqa: BLE001 - the kernel does not fit: no second opinion
        return None
    bv = np.zeros(K4.shape[0]) if b is None else np.asarray(env[b.attr("name")], dtype=float).reshape(-1)
    if bv.size == 1:
        bv = np.full(K4.shape[0], float(bv[0]))
    if bv.size != K4.shape[0]:
        return None
    params = {"K": K4, "b": bv}
    a = X.reshape(-1)
    o = layer.forward(X.reshape((1,) + xshape), params).reshape(-1)
    g = Gv.reshape(-1)
    if o.size != g.size:
        return None
    if wrt == Xn:
        return layer.jac_input(a, o, params).rmatvec(g).reshape(X.shape)
    if wrt == Kn:
        return layer.jac_params(a, o, params, "C")["K"].rmatvec(g).reshape(K.shape)
    if b is not None and wrt == b.attr("name"):
        gb = layer.jac_params(a, o, params, "C")["b"].rmatvec(g)
        return np.array([[gb.sum()]]) if np.size(env[b.attr("name")]) == 1 else gb.reshape(np.shape(env[b.attr("name")]))
    return None
