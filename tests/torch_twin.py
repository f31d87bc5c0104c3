"""An independent PyTorch twin of a jacobian_bp network (for tests/test_differential.py).

Written from first principles and the documented conventions, *not* from
``jacobian_bp/torch_oracle.py`` nor from the engine's packing code:

* the model is rebuilt layer by layer from the public attributes of the layer objects
  (``out_features``, ``bias``, ``kernel_size``, ``stride``, ``padding``, ``dilation``, ``mode``,
  ``negative_slope``, ``alpha``) with ``torch.nn.functional``;
* the θ layout is derived from the convention's knobs alone: a Dense weight is
  ``n_out × n_in`` (``z = W a + b``) or, with ``weight_layout="in_out"`` (Damadi),
  ``n_in × n_out`` (``z = Wᵀ a + b``); a conv kernel is ``(C_out, C_in, k_h, k_w)``; the user
  array is flattened row-major (``vec_order="row"``) or column-major (``"col"``); the
  tensors are concatenated per layer forward ``[W1, b1, W2, …]``, reversed
  ``[W_L, b_L, …, W1, b1]``, or weights first ``[W1, …, W_L, b1, …, b_L]``;
* the loss is the per-sample loss of the network's loss object (MSE ``c‖ŷ−y‖²`` or
  ``c/n ‖ŷ−y‖²``, BCE, CE), summed or averaged over the batch per the convention.

Gradients come from ``torch.autograd`` w.r.t. one float64 θ tensor, hence directly in the
convention's θ order.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Slot:
    """One parameter tensor in θ: name, stage, local name, canonical and user shape, flattening."""

    name: str
    stage: int
    local: str
    canonical_shape: tuple
    user_shape: tuple
    order: str  # "C" or "F": flattening of the *user* array
    transposed: bool  # user array is the transpose of the canonical one (Damadi's in_out)
    offset: int

    @property
    def size(self) -> int:
        return prod(self.canonical_shape)


def _stages(net):
    """[(parametric layer, [following parameter-free layers])]."""
    stages = []
    for layer in net.layers:
        if layer.parametric:
            stages.append((layer, []))
        else:
            stages[-1][1].append(layer)
    return stages


#: twins of further layer families, each written in its own file ``tests/twin_<family>.py`` (imported at the end
#: of this module): kind -> ``canonical_shapes(layer) -> [(local name, shape)]`` for a parametric family
EXTRA_SHAPES: dict = {}
#: kind -> ``forward(layer, a, local_params) -> output`` (batch-first torch tensors; ``local_params`` empty for a
#: parameter-free family)
EXTRA_FORWARD: dict = {}


def _canonical_shapes(layer) -> list[tuple[str, tuple]]:
    if layer.kind in EXTRA_SHAPES:
        return list(EXTRA_SHAPES[layer.kind](layer))
    if layer.kind == "dense":
        out = [("W", (layer.out_features, layer.in_shape[0]))]
        if layer.bias:
            out.append(("b", (layer.out_features,)))
        return out
    if layer.kind == "conv2d":
        kh, kw = layer.kernel_size
        out = [("K", (layer.out_channels, layer.in_shape[0], kh, kw))]
        if layer.bias == "tied":
            out.append(("b", (layer.out_channels,)))
        elif layer.bias == "untied":
            out.append(("b", tuple(layer.out_shape)))
        return out
    raise NotImplementedError(layer.kind)


def _is_bias(local: str) -> bool:
    """Ganev's weights-first θ puts the biases last: ``b`` and the named biases ``b_ih``, ``b_Q``, ``b.1``."""
    return local == "b" or local.startswith(("b_", "b."))


def theta_layout(net) -> list[Slot]:
    """The θ layout from the convention's knobs (see the module docstring)."""
    conv = net.convention
    per_stage = []
    for l, (layer, _) in enumerate(_stages(net), 1):
        items = []
        for local, cshape in _canonical_shapes(layer):
            transposed = layer.kind == "dense" and local == "W" and conv.weight_layout == "in_out"
            ushape = tuple(reversed(cshape)) if transposed else cshape
            order = "C" if conv.vec_order == "row" else "F"
            items.append((l, local, cshape, ushape, order, transposed))
        per_stage.append(items)
    if conv.theta_order == "forward":
        seq = [it for items in per_stage for it in items]
    elif conv.theta_order == "reverse":
        seq = [it for items in reversed(per_stage) for it in items]
    elif conv.theta_order == "weights_first":
        seq = [it for items in per_stage for it in items if not _is_bias(it[1])]
        seq += [it for items in per_stage for it in items if _is_bias(it[1])]
    else:  # pragma: no cover
        raise ValueError(conv.theta_order)
    slots, off = [], 0
    for l, local, cshape, ushape, order, transposed in seq:
        slots.append(Slot(f"{local}{l}", l, local, cshape, ushape, order, transposed, off))
        off += prod(cshape)
    return slots


def _unflatten(t: torch.Tensor, shape: tuple, order: str) -> torch.Tensor:
    if order == "C" or len(shape) <= 1:
        return t.reshape(shape)
    rev = tuple(reversed(shape))
    return t.reshape(rev).permute(*reversed(range(len(shape))))


def canonical_params(net, theta: torch.Tensor) -> dict[int, dict[str, torch.Tensor]]:
    """Per stage, the canonical tensors read from θ (differentiable views of ``theta``)."""
    out: dict[int, dict[str, torch.Tensor]] = {}
    for s in theta_layout(net):
        U = _unflatten(theta[s.offset:s.offset + s.size], s.user_shape, s.order)
        out.setdefault(s.stage, {})[s.local] = U.T if s.transposed else U
    return out


def _activation(layer, z: torch.Tensor) -> torch.Tensor:
    k = layer.kind
    if k in EXTRA_FORWARD:
        return EXTRA_FORWARD[k](layer, z, {})
    if k == "identity":
        return z
    if k == "relu":
        return torch.clamp(z, min=0.0)
    if k == "leaky_relu":
        return torch.where(z > 0, z, layer.negative_slope * z)
    if k == "sigmoid":
        return torch.sigmoid(z)
    if k == "tanh":
        return torch.tanh(z)
    if k == "arctan":
        return torch.atan(z)
    if k == "softplus":
        return torch.logaddexp(z, torch.zeros_like(z))
    if k == "elu":
        return torch.where(z > 0, z, layer.alpha * torch.expm1(torch.clamp(z, max=0.0)))
    if k == "gelu":  # torch's definitions: x Φ(x), or the tanh approximation
        if getattr(layer, "approximate", "none") == "tanh":
            return 0.5 * z * (1 + torch.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
        return 0.5 * z * (1 + torch.erf(z / np.sqrt(2.0)))
    if k == "softmax":
        return torch.softmax(z, dim=-1)
    if k == "radial_sigmoid":
        r = torch.linalg.vector_norm(z, dim=-1, keepdim=True)
        return torch.sigmoid(r) * z / r
    if k == "maxpool2d":
        return F.max_pool2d(z, layer.kernel_size, layer.stride, layer.padding)
    if k == "avgpool2d":
        return F.avg_pool2d(z, layer.kernel_size, layer.stride, layer.padding, count_include_pad=True)
    if k == "flatten":
        return z.reshape(z.shape[0], -1)
    raise NotImplementedError(k)


def _parametric(layer, a: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    if layer.kind in EXTRA_FORWARD:
        return EXTRA_FORWARD[layer.kind](layer, a, p)
    if layer.kind == "dense":
        z = a @ p["W"].T
        return z + p["b"] if "b" in p else z
    K = p["K"]
    if layer.mode == "convolution":
        K = torch.flip(K, dims=(2, 3))
    z = F.conv2d(a, K, None, stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
    if layer.bias == "tied":
        z = z + p["b"][None, :, None, None]
    elif layer.bias == "untied":
        z = z + p["b"][None]
    return z


def forward(net, theta: torch.Tensor, Xb: torch.Tensor, upto_logits: bool = False):
    """``(logits z[L], output ŷ)`` for a batch-first input; ``ŷ`` is None with ``upto_logits``."""
    params = canonical_params(net, theta)
    a = Xb
    stages = _stages(net)
    z = None
    for l, (layer, post) in enumerate(stages, 1):
        z = _parametric(layer, a, params[l])
        if l == len(stages) and upto_logits:
            return z, None
        a = z
        for act in post:
            a = _activation(act, a)
    return z, a


def per_sample_loss(net, Z: torch.Tensor, Yhat: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    loss = net.loss
    last_post = _stages(net)[-1][1]
    last = last_post[0].kind if len(last_post) == 1 else ("identity" if not last_post else "")
    if loss.kind == "mse":
        c = loss.scale / (Y.shape[-1] if loss.reduce_outputs == "mean" else 1)
        return c * ((Yhat - Y) ** 2).sum(-1)
    if loss.kind == "bce":
        if last == "sigmoid":  # the logits form, stable for saturated outputs
            return (torch.logaddexp(Z, torch.zeros_like(Z)) - Y * Z).sum(-1)
        return -(Y * torch.log(Yhat) + (1 - Y) * torch.log1p(-Yhat)).sum(-1)
    if loss.kind == "cross_entropy":
        if last == "softmax":
            return -(Y * torch.log_softmax(Z, dim=-1)).sum(-1)
        return -(Y * torch.log(Yhat)).sum(-1)
    raise NotImplementedError(loss.kind)


def batch_first(net, X, Y=None):
    """Convention layout -> batch-first float64 tensors."""
    X = np.asarray(X, dtype=np.float64)
    single = X.ndim == len(net.input_shape)
    if single:
        Xb = X[None]
    else:
        Xb = X if net.convention.batch_axis == "first" else np.moveaxis(X, -1, 0)
    Yb = None
    if Y is not None:
        Y = np.asarray(Y, dtype=np.float64)
        Yb = Y[None] if single else (Y if net.convention.batch_axis == "first" else Y.T)
        Yb = torch.tensor(np.ascontiguousarray(Yb))
    return torch.tensor(np.ascontiguousarray(Xb)), Yb


def loss_and_gradient(net, X, Y, theta: np.ndarray) -> tuple[float, np.ndarray]:
    """The reduced loss and its θ-gradient (convention's θ order) by torch autograd, float64."""
    Xb, Yb = batch_first(net, X, Y)
    t = torch.tensor(np.asarray(theta, dtype=np.float64), requires_grad=True)
    Z, Yhat = forward(net, t, Xb)
    per = per_sample_loss(net, Z, Yhat, Yb)
    total = per.sum() / (Xb.shape[0] if net.convention.reduction == "mean" else 1)
    (g,) = torch.autograd.grad(total, t)
    return float(total.detach()), g.numpy()


def delta(net, X, Y, theta: np.ndarray) -> np.ndarray:
    """Per-sample ∇_{z[L]} ℓ (unreduced), batch-first ``(N, n_L)``."""
    Xb, Yb = batch_first(net, X, Y)
    t = torch.tensor(np.asarray(theta, dtype=np.float64))
    with torch.no_grad():
        Z, _ = forward(net, t, Xb, upto_logits=True)
    Z = Z.detach().clone().requires_grad_(True)
    post = _stages(net)[-1][1]
    A = Z
    for act in post:
        A = _activation(act, A)
    per = per_sample_loss(net, Z, A, Yb)
    (d,) = torch.autograd.grad(per.sum(), Z)
    return d.reshape(d.shape[0], -1).numpy()


def jacobian_theta(net, x, theta: np.ndarray) -> np.ndarray:
    """J_θ z[L] of one sample by ``torch.func.jacrev``, ``n_L × |θ|``."""
    Xb, _ = batch_first(net, x)
    t = torch.tensor(np.asarray(theta, dtype=np.float64))

    def f(th):
        Z, _ = forward(net, th, Xb, upto_logits=True)
        return Z.reshape(-1)

    return torch.func.jacrev(f)(t).numpy()


def _load_family_twins() -> None:
    """Import every ``tests/twin_<family>.py``; each fills :data:`EXTRA_SHAPES` / :data:`EXTRA_FORWARD`."""
    import importlib
    import pathlib

    for f in sorted(pathlib.Path(__file__).parent.glob("twin_*.py")):
        importlib.import_module(f.stem)


_load_family_twins()
