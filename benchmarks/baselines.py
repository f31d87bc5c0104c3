"""The baseline every benchmark compares with: NumPy closed-form backprop, written without jacobian_bp."""
from __future__ import annotations

import numpy as np


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
