"""PyTorch autograd as an independent oracle (optional: needs ``pip install torch==2.13.0``).

The network is rebuilt from ``torch.nn.functional`` primitives in float64, the loss
is reduced as in the convention, and ``torch.autograd.grad`` gives the gradient,
returned in the canonical layout so that it can be packed under any convention.
Each layer brings its own torch twin (``Layer.torch_forward``) and each loss its per-sample
twin (``Loss.torch_per_sample``); this module only runs the stages.  A layer without a twin
raises :class:`NotImplementedError` naming it, which :func:`jacobian_bp.oracles.verify.verify`
reports as "torch autograd" skipped.
"""
from __future__ import annotations

import numpy as np


#: the oracle runs the whole network through :meth:`~jacobian_bp.engine.network.Network.torch_forward`
#: (parameter-free first layers and residual blocks included) and reduces by ``Network.reduce_factor``
RUNS_THE_NETWORK = True


def available() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:  # pragma: no cover - depends on the environment
        return False
    return True


def _act(torch, layer, Z):
    """Kept for old callers (tests): the parameter-free layer's own torch twin."""
    return layer.torch_forward(Z, {})


def torch_loss_and_grad(network, Xb: np.ndarray, Yb: np.ndarray, canon: dict) -> tuple[float, dict]:
    """Loss and canonical gradient by PyTorch autograd (float64)."""
    import torch

    tp = {k: torch.tensor(np.asarray(v, dtype=float), dtype=torch.float64, requires_grad=True) for k, v in canon.items()}
    # every layer runs its own twin: the parameter-free first layers, the stages (a residual block runs its
    # body), their activations (Network.torch_forward asks each layer; it switches on no kind)
    Z, A = network.torch_forward(torch.tensor(Xb, dtype=torch.float64), tp)
    Y = torch.tensor(Yb, dtype=torch.float64)
    per = network.loss.torch_per_sample(Y, A, Z, network.matched)
    # the convention's reduction r Σ_i ℓ_i: r = 1 (sum), 1/N (mean), 1/(N·K) for MSE/BCE under the element mean
    total = per.sum() * network.reduce_factor(int(Xb.shape[0]))
    grads = torch.autograd.grad(total, list(tp.values()))
    return float(total.detach()), {k: g.detach().numpy() for k, g in zip(tp.keys(), grads)}


