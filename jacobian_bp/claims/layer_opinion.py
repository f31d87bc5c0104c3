r"""The package's own layers as a second opinion for the formula judge: the derivative of
:math:`\langle G, \operatorname{conv}(X, K) + b\rangle` with respect to ``X``, ``K`` or ``b`` from
:class:`~jacobian_bp.layers.conv.Conv2d` (``jac_input`` / ``jac_params``), and of
:math:`\langle G, \operatorname{pool}(X)\rangle` from :class:`~jacobian_bp.layers.pooling.AvgPool2d` /
:class:`~jacobian_bp.layers.pooling.MaxPool2d` (``jac_input``): :math:`\mathbf J^\top \operatorname{vec} G`."""
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
        layer = (AvgPool2d if Y.op == "avgpool" else MaxPool2d)(int(knobs.get("k", 2)))
        layer.build((1,) + X.shape)
        a = X.reshape(-1)
        o = layer.forward(X.reshape((1, 1) + X.shape), {}).reshape(-1)
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
    layer = Conv2d(1, K.shape, stride=int(kn.get("s", 1)), padding=int(kn.get("p", 0)), dilation=int(kn.get("d", 1)),
                   mode=kn.get("mode", "correlation"), bias="tied")
    layer.build((1,) + X.shape)
    params = {"K": K.reshape((1, 1) + K.shape), "b": np.array([float(env[b.attr("name")][0, 0]) if b is not None else 0.0])}
    a = X.reshape(-1)
    o = layer.forward(X.reshape((1, 1) + X.shape), params).reshape(-1)
    g = Gv.reshape(-1)
    if o.size != g.size:
        return None
    if wrt == Xn:
        return layer.jac_input(a, o, params).rmatvec(g).reshape(X.shape)
    if wrt == Kn:
        return layer.jac_params(a, o, params, "C")["K"].rmatvec(g).reshape(K.shape)
    if b is not None and wrt == b.attr("name"):
        return layer.jac_params(a, o, params, "C")["b"].rmatvec(g).reshape(1, 1)
    return None
