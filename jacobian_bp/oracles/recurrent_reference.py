r"""Closed-form backpropagation through time for the Elman RNN and the LSTM, written independently of the
Jacobian machinery (plain NumPy loops over samples and time steps, no operator, no layer object).

These are the textbook recursions (Werbos 1990, *Backpropagation through time: what it does and how to do
it*; for the LSTM Hochreiter & Schmidhuber 1997 in the form of Graves 2012, *Supervised Sequence Labelling
with RNNs*, §4.6, without peepholes, with torch's gate order i, f, g, o).  They restate the layers'
definitions on purpose (as :mod:`jacobian_bp.oracles.reference` restates the others): the tests compare
:mod:`jacobian_bp.layers.recurrent` against them, against central differences and against torch.

Shapes: one sequence ``X`` is ``(T, d)``; ``W_ih`` is ``(G, d)``, ``W_hh`` ``(G, H)``, biases ``(G,)`` with
``G = H`` (RNN) or ``4H`` (LSTM).  ``g`` is the cotangent of the output: ``(H,)`` for the last state or
``(T, H)`` for every state.  The functions return ``(dX, grads)`` with ``grads`` keyed like the layer's
parameters, matrix-shaped.

Elman RNN, :math:`\mathbf h_t = \tanh(\mathbf W_{ih}\mathbf x_t + \mathbf b + \mathbf W_{hh}\mathbf h_{t-1})`:

.. math::

   \bar{\mathbf h}_T = \mathbf g_T,\quad
   \bar{\mathbf z}_t = \bar{\mathbf h}_t\odot(1-\mathbf h_t^2),\quad
   \bar{\mathbf h}_{t-1} = \mathbf W_{hh}^\top\bar{\mathbf z}_t + \mathbf g_{t-1},\quad
   \nabla\mathbf W_{hh} = \sum_t\bar{\mathbf z}_t\mathbf h_{t-1}^\top,\ \nabla\mathbf W_{ih} = \sum_t\bar{\mathbf z}_t\mathbf x_t^\top,\
   \nabla\mathbf b = \sum_t\bar{\mathbf z}_t,\ \bar{\mathbf x}_t = \mathbf W_{ih}^\top\bar{\mathbf z}_t.

LSTM, with the cell-state recursion (the forget gate carries the gradient back):

.. math::

   \bar{\mathbf c}_t \mathrel{+}= \bar{\mathbf h}_t\odot\mathbf o_t\odot(1-\tanh^2\mathbf c_t),\quad
   \bar{\mathbf o}_t = \bar{\mathbf h}_t\odot\tanh\mathbf c_t,\ \bar{\mathbf i}_t = \bar{\mathbf c}_t\odot\mathbf g_t,\
   \bar{\mathbf f}_t = \bar{\mathbf c}_t\odot\mathbf c_{t-1},\ \bar{\mathbf g}_t = \bar{\mathbf c}_t\odot\mathbf i_t,

   \bar{\mathbf c}_{t-1} = \bar{\mathbf c}_t\odot\mathbf f_t,\qquad
   \bar{\mathbf h}_{t-1} = \mathbf W_{hh}^\top\bar{\mathbf p}_t + \mathbf g_{t-1},

with :math:`\bar{\mathbf p}_t` the pre-activation cotangents (:math:`\bar{\mathbf i}\odot\mathbf i(1-\mathbf i)`, ...).
"""
from __future__ import annotations

import numpy as np

__all__ = ["elman_forward", "elman_bptt", "lstm_forward", "lstm_bptt", "elman_whh_contributions",
           "lstm_whh_contributions"]


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def elman_forward(X, W_ih, W_hh, b=None):
    """Hidden states ``h_0 .. h_T`` (``(T + 1, H)``, ``h_0 = 0``) of one sequence."""
    X = np.asarray(X, float)
    T, H = X.shape[0], W_hh.shape[0]
    h = np.zeros((T + 1, H))
    for t in range(T):
        z = W_ih @ X[t] + W_hh @ h[t]
        if b is not None:
            z = z + b
        h[t + 1] = np.tanh(z)
    return h


def _cot(g, T, H, output):
    """The output cotangent as ``(T, H)`` (zero rows before the last step for ``last``)."""
    g = np.asarray(g, float)
    full = np.zeros((T, H))
    if output == "last":
        full[T - 1] = g.reshape(H)
    else:
        full[:] = g.reshape(T, H)
    return full


def elman_bptt(X, W_ih, W_hh, b, g, output="last"):
    """``(dX, {"W_ih", "W_hh", "b"})`` for one sequence (``b`` None: no bias)."""
    X = np.asarray(X, float)
    T, H = X.shape[0], W_hh.shape[0]
    h = elman_forward(X, W_ih, W_hh, b)
    gout = _cot(g, T, H, output)
    dW_ih, dW_hh, db = np.zeros_like(W_ih), np.zeros_like(W_hh), np.zeros(H)
    dX = np.zeros_like(X)
    dh = np.zeros(H)
    for t in range(T - 1, -1, -1):
        dh = dh + gout[t]
        dz = dh * (1.0 - h[t + 1] ** 2)
        dW_ih += np.outer(dz, X[t])
        dW_hh += np.outer(dz, h[t])
        db += dz
        dX[t] = W_ih.T @ dz
        dh = W_hh.T @ dz
    grads = {"W_ih": dW_ih, "W_hh": dW_hh}
    if b is not None:
        grads["b"] = db
    return dX, grads


def elman_whh_contributions(X, W_ih, W_hh, b, g, output="last"):
    r"""The ``T`` terms :math:`\bar{\mathbf z}_t\mathbf h_{t-1}^\top` of :math:`\nabla\mathbf W_{hh}`, ``(T, H, H)``."""
    X = np.asarray(X, float)
    T, H = X.shape[0], W_hh.shape[0]
    h = elman_forward(X, W_ih, W_hh, b)
    gout = _cot(g, T, H, output)
    out = np.zeros((T, H, H))
    dh = np.zeros(H)
    for t in range(T - 1, -1, -1):
        dz = (dh + gout[t]) * (1.0 - h[t + 1] ** 2)
        out[t] = np.outer(dz, h[t])
        dh = W_hh.T @ dz
    return out


def lstm_forward(X, W_ih, W_hh, b_ih=None, b_hh=None):
    """``(h, c, gates)`` of one sequence: ``h``, ``c`` ``(T + 1, H)`` from zero, ``gates[t] = (i, f, g, o)``."""
    X = np.asarray(X, float)
    T, H = X.shape[0], W_hh.shape[1]
    h, c = np.zeros((T + 1, H)), np.zeros((T + 1, H))
    gates = []
    for t in range(T):
        p = W_ih @ X[t] + W_hh @ h[t]
        if b_ih is not None:
            p = p + b_ih + b_hh
        i, f, gg, o = _sig(p[:H]), _sig(p[H:2 * H]), np.tanh(p[2 * H:3 * H]), _sig(p[3 * H:])
        c[t + 1] = f * c[t] + i * gg
        h[t + 1] = o * np.tanh(c[t + 1])
        gates.append((i, f, gg, o))
    return h, c, gates


def _lstm_backward(X, W_ih, W_hh, b_ih, b_hh, g, output):
    X = np.asarray(X, float)
    T, H = X.shape[0], W_hh.shape[1]
    h, c, gates = lstm_forward(X, W_ih, W_hh, b_ih, b_hh)
    gout = _cot(g, T, H, output)
    dh, dc = np.zeros(H), np.zeros(H)
    dps = [None] * T
    for t in range(T - 1, -1, -1):
        i, f, gg, o = gates[t]
        dh = dh + gout[t]
        tc = np.tanh(c[t + 1])
        dc = dc + dh * o * (1.0 - tc ** 2)
        do = dh * tc
        di = dc * gg
        df = dc * c[t]
        dg = dc * i
        dp = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - gg ** 2), do * o * (1 - o)])
        dps[t] = dp
        dc = dc * f  # the cell-state recursion: the forget gate carries the gradient to c_{t-1}
        dh = W_hh.T @ dp
    return h, dps


def lstm_bptt(X, W_ih, W_hh, b_ih, b_hh, g, output="last"):
    """``(dX, {"W_ih", "W_hh", "b_ih", "b_hh"})`` for one sequence (biases None: no bias)."""
    X = np.asarray(X, float)
    h, dps = _lstm_backward(X, W_ih, W_hh, b_ih, b_hh, g, output)
    dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
    db = np.zeros(W_ih.shape[0])
    dX = np.zeros_like(X)
    for t, dp in enumerate(dps):
        dW_ih += np.outer(dp, X[t])
        dW_hh += np.outer(dp, h[t])
        db += dp
        dX[t] = W_ih.T @ dp
    grads = {"W_ih": dW_ih, "W_hh": dW_hh}
    if b_ih is not None:
        grads["b_ih"] = db
        grads["b_hh"] = db.copy()
    return dX, grads


def lstm_whh_contributions(X, W_ih, W_hh, b_ih, b_hh, g, output="last"):
    r"""The ``T`` terms :math:`\bar{\mathbf p}_t\mathbf h_{t-1}^\top` of :math:`\nabla\mathbf W_{hh}`, ``(T, 4H, H)``."""
    h, dps = _lstm_backward(X, W_ih, W_hh, b_ih, b_hh, g, output)
    return np.stack([np.outer(dp, h[t]) for t, dp in enumerate(dps)])
