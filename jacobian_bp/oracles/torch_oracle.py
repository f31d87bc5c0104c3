"""PyTorch autograd as an independent oracle (optional: needs ``pip install torch==2.13.0``).

The network is rebuilt from ``torch.nn.functional`` primitives in float64, the loss
is reduced as in the convention, and ``torch.autograd.grad`` gives the gradient,
returned in the canonical layout so that it can be packed under any convention.
Every layer family with a torch equivalent is mapped here: dense, conv2d (both modes,
tied/untied bias), max/avg pooling, flatten, the elementwise activations, softmax and
radial sigmoid.
"""
from __future__ import annotations

import numpy as np


def available() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:  # pragma: no cover - depends on the environment
        return False
    return True


def _act(torch, layer, Z):
    F = torch.nn.functional
    k = layer.kind
    if k == "identity":
        return Z
    if k == "relu":
        return F.relu(Z)
    if k == "leaky_relu":
        return F.leaky_relu(Z, layer.negative_slope)
    if k == "sigmoid":
        return torch.sigmoid(Z)
    if k == "tanh":
        return torch.tanh(Z)
    if k == "arctan":
        return torch.atan(Z)
    if k == "softplus":
        return F.softplus(Z)
    if k == "elu":
        return F.elu(Z, layer.alpha)
    if k == "softmax":
        return torch.softmax(Z, dim=-1)
    if k == "radial_sigmoid":
        r = torch.linalg.vector_norm(Z, dim=-1, keepdim=True)
        return torch.sigmoid(r) * Z / r
    if k == "maxpool2d":
        return F.max_pool2d(Z, layer.kernel_size, layer.stride, layer.padding)
    if k == "avgpool2d":
        return F.avg_pool2d(Z, layer.kernel_size, layer.stride, layer.padding, count_include_pad=True)
    if k == "flatten":
        return Z.reshape(Z.shape[0], -1)
    raise NotImplementedError(f"no torch equivalent for layer {layer.kind!r}")


def _conv(torch, layer, A, p):
    """torch.nn.functional.conv2d (cross-correlation); true convolution flips the kernel."""
    K = p["K"]
    if layer.mode == "convolution":
        K = torch.flip(K, dims=(-2, -1))
    Z = torch.nn.functional.conv2d(A, K, None, layer.stride, layer.padding, layer.dilation)
    if layer.bias == "tied":
        Z = Z + p["b"][None, :, None, None]
    elif layer.bias == "untied":
        Z = Z + p["b"][None]
    return Z


def torch_loss_and_grad(network, Xb: np.ndarray, Yb: np.ndarray, canon: dict) -> tuple[float, dict]:
    """Loss and canonical gradient by PyTorch autograd (float64)."""
    import torch

    F = torch.nn.functional
    tp = {k: torch.tensor(np.asarray(v, dtype=float), dtype=torch.float64, requires_grad=True) for k, v in canon.items()}
    A = torch.tensor(Xb, dtype=torch.float64)
    Z = None
    for st in network.stages:
        p = {local: tp[f"{local}{st.index}"] for local in st.layer.param_shapes()}
        if st.layer.kind == "dense":
            Z = F.linear(A, p["W"], p.get("b"))
        elif st.layer.kind == "conv2d":
            Z = _conv(torch, st.layer, A, p)
        else:
            raise NotImplementedError(f"no torch equivalent for layer {st.layer.kind!r}")
        A = Z
        for layer in st.post:
            A = _act(torch, layer, A)
    Y = torch.tensor(Yb, dtype=torch.float64)
    loss = network.loss
    if loss.kind == "cross_entropy":
        if network.matched:
            per = -(Y * torch.log_softmax(Z, dim=-1)).sum(-1)
        else:
            per = -(Y * torch.log(A)).sum(-1)
    elif loss.kind == "bce":
        if network.matched:
            per = F.binary_cross_entropy_with_logits(Z, Y, reduction="none").sum(-1)
        else:
            per = F.binary_cross_entropy(A, Y, reduction="none").sum(-1)
    elif loss.kind == "mse":
        per = loss.scale * ((A - Y) ** 2).sum(-1)
        if loss.reduce_outputs == "mean":
            per = per / A.shape[-1]
    else:  # pragma: no cover
        raise NotImplementedError(loss.kind)
    total = per.sum() if network.convention.reduction == "sum" else per.mean()
    grads = torch.autograd.grad(total, list(tp.values()))
    return float(total.detach()), {k: g.detach().numpy() for k, g in zip(tp.keys(), grads)}


