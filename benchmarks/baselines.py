"""What every benchmark shares: NumPy closed-form backprop (written without jacobian_bp) and interleaved timing."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


def interleaved_times(fns: dict, repeats: int, warmup: int = 1,
                      clock: Callable[[], float] = time.perf_counter) -> dict:
    """Seconds of each callable over ``repeats`` rounds, run in turn (A, B, A, B, ...) so that drift hits all alike.

    Every callable is first called ``warmup`` times (also in turn).  Returns ``{name: [seconds per round]}``.
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = clock()
            f()
            times[k].append(clock() - t0)
    return times


def interleaved_median(fns: dict, repeats: int, warmup: int = 1) -> dict:
    """Median wall-clock seconds of each callable (:func:`interleaved_times`)."""
    return {k: float(np.median(v)) for k, v in interleaved_times(fns, repeats, warmup).items()}


def closed_form_backprop(Ws, bs, X, Y, mean: bool = False):
    """Ganev Prop. 4.1 / Alg. 5 (batch first), ReLU hidden layers, softmax + cross entropy.

    Forward pass, then ``D_L = S - Y`` (divided by N when ``mean``), ``grad_W = Dᵀ A``,
    ``grad_b = Dᵀ 1``, ``D_{l-1} = (D_l W_l) ⊙ [Z_{l-1} > 0]``.  ``Ws[l]`` is ``n_out × n_in``.
    Returns the lists ``(grad_W, grad_b)``.
    """
    A, Zs, As = X, [], [X]
    for l, (W, b) in enumerate(zip(Ws, bs)):
        Z = A @ W.T + b
        Zs.append(Z)
        A = np.maximum(Z, 0) if l < len(Ws) - 1 else Z
        As.append(A)
    S = np.exp(Zs[-1] - Zs[-1].max(1, keepdims=True))
    S /= S.sum(1, keepdims=True)
    D = (S - Y) / X.shape[0] if mean else S - Y
    gW, gb = [None] * len(Ws), [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        gW[l] = D.T @ As[l]
        gb[l] = D.sum(0)
        if l:
            D = (D @ Ws[l]) * (Zs[l - 1] > 0)
    return gW, gb


def torch_lenet_per_sample_grad():
    """``(torch, vmap(grad(loss)))``: per-sample gradients of LeNet-300-100 (ReLU, log-softmax cross entropy) with
    ``torch.func``, parameters ``[W1, b1, W2, b2, W3, b3]`` (``n_out × n_in``), one torch thread."""
    import torch
    from torch.func import grad, vmap

    torch.set_num_threads(1)

    def loss(ps, x, y):
        W1, b1, W2, b2, W3, b3 = ps
        h = torch.relu(W1 @ x + b1)
        h = torch.relu(W2 @ h + b2)
        z = W3 @ h + b3
        return -(y * torch.log_softmax(z, dim=-1)).sum()

    return torch, vmap(grad(loss), in_dims=(None, 0, 0))
