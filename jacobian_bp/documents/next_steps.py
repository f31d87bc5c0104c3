r"""Claims about the "next steps" layers, judged by the project (issue #13, item 6).

Each claim states a derivative of a BatchNorm, LayerNorm, attention, residual, recurrent or
GELU computation as it is printed in the literature (or as it is classically got wrong),
written *independently* of :mod:`jacobian_bp.layers` as a plain NumPy closed form.  The
verdict is never typed in: :func:`next_steps_results` hands every claim to the project's
formula judge (:func:`jacobian_bp.claims.judge.check`), whose truth for a NumPy function is
numeric -- the complex step in float64 (every function here is analytic in its argument), on
several random instances -- and compares the claimed formula with it entry by entry.

Each claim is a function of ONE argument (the others -- upstream gradients ``G``, weights,
other inputs -- are further random arrays of the judge's instances), e.g.

.. math::

    L(X) = \sum_{ij} G_{ij}\,\mathrm{BN}_{\gamma,\beta}(X)_{ij},\qquad
    \frac{\partial L}{\partial X} \;\text{(denominator layout: shaped like } X\text{)},

and for vector-valued functions the Jacobian :math:`\partial f/\partial x^\top` (numerator layout).

Diagnosis.  When a claim fails, the judge's callable path tries, most specific first, the
*stated corrections* a claim carries (:class:`~jacobian_bp.claims.derivative.StatedCorrection`:
a term the author may have dropped -- BatchNorm's mean term, LayerNorm's
:math:`\hat x\hat x^\top/n`, GELU's :math:`x\varphi(x)` --, a dropped factor -- the LSTM forget
gate --, or a corrected formula of a named kind), then its own numeric candidates (a constant
ratio truth :math:`= c\cdot` claim named as an expression of the sizes, e.g. :math:`1/\sqrt{d_k}`;
the transpose; a missing identity term).  Every candidate is named only when the corrected
derivative equals the truth on the judging instances *and* on fresh ones; ``Verdict.corrected``
holds the corrected formula.  A failing claim that none explains gets "no single correction".

Sources: Ioffe & Szegedy 2015 (BatchNorm, Alg. 1 and §3), Ba, Kiros & Hinton 2016 (LayerNorm),
Vaswani et al. 2017 (scaled dot-product attention, Eq. 1), He et al. 2016 (residual blocks,
Eq. 1), Werbos 1990 / Pascanu, Mikolov & Bengio 2013 (BPTT, Eq. 5), Hochreiter & Schmidhuber
1997 / Graves 2012 (LSTM cell recursion), Hendrycks & Gimpel 2016 (GELU).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from scipy.special import erf

from ..claims.derivative import DerivativeClaim, Layout, StatedCorrection
from ..claims.judge import FAILS, HOLDS, Verdict, check
from ..claims.mistakes import CHAIN_ORDER, MISSING_FACTOR, NORMALIZER, SOFTMAX_DIAG

__all__ = ["NextStepClaim", "CLAIMS", "next_steps_claims", "next_steps_results", "next_steps_report"]

EPS = 1e-5  # BatchNorm / LayerNorm epsilon (torch's default)
GRAD = Layout("denominator")   # a scalar's gradient, shaped like the argument
JAC = Layout("numerator")      # ∂f/∂xᵀ, column-major vec


@dataclass(frozen=True)
class NextStepClaim:
    r"""One claim: what is differentiated, the claimed derivative, and the verdict we expect.

    Attributes
    ----------
    id, source : str
        Identifier and citation (paper, equation / algorithm line).
    statement : str
        The claim in LaTeX, for display.
    function : callable
        ``function(**arrays) -> ndarray``: the function being differentiated (plain NumPy, analytic).
    wrt : str
        The argument.
    shapes : dict
        Shapes (at most 2-D; ints or size names given by ``sizes``) of all arrays ``function`` takes.
    claimed : callable
        ``claimed(**arrays) -> ndarray``: the stated derivative, same inputs.
    expected : {"holds", "fails"}
    layout : Layout
        ``denominator`` for gradients of scalars, ``numerator`` for Jacobians.
    corrections : tuple of StatedCorrection
        Candidate corrections stated with the claim (a dropped term or factor, or a corrected
        formula of a named kind), verified by the judge before it names one.
    sizes : list of dict, optional
        Values of the size names used in ``shapes`` (several: instances of several sizes).
    terms : tuple of (name, callable, latex)
        The claim's summands (they add up to ``claimed``), so that a slip in one term can be named.
    """

    id: str
    source: str
    statement: str
    function: Callable
    wrt: str
    shapes: dict
    claimed: Callable
    expected: str
    layout: Layout = field(default_factory=lambda: GRAD)
    corrections: tuple = ()
    instances: int = 2
    sizes: tuple = ()
    terms: tuple = ()

    def derivative_claim(self, claimed: Callable | None = None) -> DerivativeClaim:
        """The judge's :class:`~jacobian_bp.claims.derivative.DerivativeClaim` for this claim."""
        return DerivativeClaim(name=self.id, function=self.function, wrt=self.wrt,
                               claimed=self.claimed if claimed is None else claimed, layout=self.layout,
                               shapes=dict(self.shapes), source=self.source, latex=self.statement,
                               instances=self.instances, seed=13, corrections=tuple(self.corrections),
                               sizes=[dict(s) for s in self.sizes] or None, terms=self.terms)

    def arrays(self, seed: int = 0, which: int = 0) -> dict:
        """Random arrays of the claim's shapes (size set ``which``), e.g. for an independent check."""
        rng = np.random.default_rng(seed)
        sz = dict(self.sizes[which]) if self.sizes else {}
        return {k: rng.standard_normal(tuple(sz[d] if isinstance(d, str) else d for d in s))
                for k, s in self.shapes.items()}


# ============================================================================ BatchNorm (training mode)
def _bn_stats(X, unbiased=False):
    N = X.shape[0]
    mu = X.sum(axis=0, keepdims=True) / N
    var = ((X - mu) ** 2).sum(axis=0, keepdims=True) / (N - 1 if unbiased else N)
    inv = 1.0 / np.sqrt(var + EPS)
    return (X - mu) * inv, inv


def _bn_loss(X, G, gamma, beta):
    """L = Σ G ⊙ (γ x̂ + β), x̂ = (X − μ)/√(σ² + ε), biased σ² over the batch (rows)."""
    xhat, _ = _bn_stats(X)
    return np.sum(G * (gamma * xhat + beta))


def _bn_dx(X, G, gamma, beta):
    """Ioffe & Szegedy: ∂L/∂x = γ/(Nσ) (N g − Σg − x̂ Σ(g x̂))."""
    N = X.shape[0]
    xhat, inv = _bn_stats(X)
    return gamma * inv / N * (N * G - G.sum(0, keepdims=True) - xhat * (G * xhat).sum(0, keepdims=True))


def _bn_dx_no_mean(X, G, gamma, beta):
    xhat, inv = _bn_stats(X)
    return gamma * inv * (G - xhat * (G * xhat).mean(0, keepdims=True))


def _bn_dx_no_xhat(X, G, gamma, beta):
    _, inv = _bn_stats(X)
    return gamma * inv * (G - G.mean(0, keepdims=True))


def _bn_dx_unbiased(X, G, gamma, beta, unbiased=True):
    xhat, inv = _bn_stats(X, unbiased=unbiased)
    return gamma * inv * (G - G.mean(0, keepdims=True) - xhat * (G * xhat).mean(0, keepdims=True))


def _bn_mean_term(X, G, gamma, beta):
    """The term −(γ/σ) ḡ (the gradient through the batch mean μ)."""
    _, inv = _bn_stats(X)
    return -gamma * inv * G.mean(0, keepdims=True)


def _bn_xhat_term(X, G, gamma, beta):
    """The term −(γ/σ) x̂ ⊙ mean(g ⊙ x̂) (the gradient through the batch variance σ²)."""
    xhat, inv = _bn_stats(X)
    return -gamma * inv * xhat * (G * xhat).mean(0, keepdims=True)


def _bn_dgamma(X, G, gamma, beta):
    return (G * _bn_stats(X)[0]).sum(0, keepdims=True)


def _bn_dbeta(X, G, gamma, beta):
    return G.sum(0, keepdims=True)


_BN_SHAPES = {"X": (5, 3), "G": (5, 3), "gamma": (1, 3), "beta": (1, 3)}
_BN_SRC = "Ioffe & Szegedy 2015, Alg. 1 backward (§3)"


# ============================================================================ LayerNorm
def _ln(x, gamma):
    """y = γ ⊙ (x − mean(x))/√(var(x) + ε), x ∈ ℝⁿ (one sample, biased variance)."""
    n = x.shape[0]
    mu = x.sum() / n
    inv = 1.0 / np.sqrt(((x - mu) ** 2).sum() / n + EPS)
    return gamma * (x - mu) * inv


def _ln_jac(x, gamma, drop_outer=False):
    """∂y/∂xᵀ = diag(γ) (1/σ) (I − 11ᵀ/n − x̂x̂ᵀ/n)."""
    n = x.shape[0]
    mu = x.sum() / n
    inv = 1.0 / np.sqrt(((x - mu) ** 2).sum() / n + EPS)
    xhat = (x - mu) * inv
    P = np.eye(n) - np.ones((n, n)) / n - (0 if drop_outer else xhat @ xhat.T / n)
    return gamma * inv * P


def _ln_parts(x, gamma):
    """The three summands of the LayerNorm Jacobian: (γ/σ)I, −(γ/σ)11ᵀ/n, −(γ/σ)x̂x̂ᵀ/n."""
    n = x.shape[0]
    mu = x.sum() / n
    inv = 1.0 / np.sqrt(((x - mu) ** 2).sum() / n + EPS)
    xhat = (x - mu) * inv
    return gamma * inv * np.eye(n), -gamma * inv * np.ones((n, n)) / n, -gamma * inv * (xhat @ xhat.T) / n


def _ln_outer_term(x, gamma):
    """The term −diag(γ)(1/σ) x̂x̂ᵀ/n (the gradient through the variance)."""
    return _ln_jac(x, gamma) - _ln_jac(x, gamma, drop_outer=True)


# ============================================================================ scaled dot-product attention
_D = 4  # d_k = 4: a missing 1/√d_k is a factor 2, which the judge's callable path names


def _softmax_rows(S):
    E = np.exp(S - S.real.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def _attn_loss(Q, K, V, G):
    """L = Σ G ⊙ softmax(QKᵀ/√d_k) V (softmax over each row)."""
    return np.sum(G * (_softmax_rows(Q @ K.T / math.sqrt(Q.shape[1])) @ V))


def _attn_parts(Q, K, V, G):
    P = _softmax_rows(Q @ K.T / math.sqrt(Q.shape[1]))
    return P, G @ V.T   # P, dP


def _attn_dQ(Q, K, V, G):
    """dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = dS K/√d_k."""
    P, dP = _attn_parts(Q, K, V, G)
    dS = P * (dP - (dP * P).sum(axis=1, keepdims=True))
    return dS @ K / math.sqrt(Q.shape[1])


def _attn_dQ_no_scale(Q, K, V, G):
    P, dP = _attn_parts(Q, K, V, G)
    return P * (dP - (dP * P).sum(axis=1, keepdims=True)) @ K


def _attn_dQ_diag(Q, K, V, G):
    """The softmax Jacobian taken as diag(p): dS = P ⊙ dP."""
    P, dP = _attn_parts(Q, K, V, G)
    return (P * dP) @ K / math.sqrt(Q.shape[1])


def _attn_dV(Q, K, V, G):
    return _attn_parts(Q, K, V, G)[0].T @ G


_ATTN_SHAPES = {"Q": ("T", "d_k"), "K": ("S", "d_k"), "V": ("S", "d_v"), "G": ("T", "d_v")}
#: three size sets (d_k = 4, 9, 16), so that a constant factor is named as an expression of d_k, unambiguously
_ATTN_SIZES = ({"T": 3, "S": 4, "d_k": _D, "d_v": 2}, {"T": 2, "S": 3, "d_k": 9, "d_v": 2},
               {"T": 4, "S": 2, "d_k": 16, "d_v": 3})
_ATTN_SRC = "Vaswani et al. 2017, Eq. 1 (backward)"


# ============================================================================ residual block
def _res(x, W):
    return x + np.tanh(W @ x)


def _res_jac(x, W):
    return np.eye(x.shape[0]) + (1 - np.tanh(W @ x) ** 2) * W


def _res_jac_no_identity(x, W):
    return (1 - np.tanh(W @ x) ** 2) * W


# ============================================================================ Elman RNN, LSTM cell
def _rnn_states(h0, W, U, X):
    hs, h = [], h0
    for t in range(X.shape[1]):
        h = np.tanh(W @ h + U @ X[:, t:t + 1])
        hs.append(h)
    return hs


def _rnn_hT(h0, W, U, X):
    """h_t = tanh(W h_{t−1} + U x_t), t = 1..T; returns h_T."""
    return _rnn_states(h0, W, U, X)[-1]


def _rnn_bptt(h0, W, U, X, reverse=False):
    """∂h_T/∂h_0ᵀ = Π_{t=T}^{1} diag(1 − h_t²) W (leftmost factor t = T)."""
    factors = [(1 - h ** 2) * W for h in _rnn_states(h0, W, U, X)]
    J = np.eye(h0.shape[0])
    for F in (factors if reverse else factors[::-1]):
        J = J @ F
    return J


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def _lstm_step(c_prev, h_prev, x, W):
    """Gates [i; f; g; o] = W [h_{t−1}; x_t]; c_t = f⊙c_{t−1} + i⊙g, h_t = o⊙tanh(c_t)."""
    n = c_prev.shape[0]
    z = W @ np.vstack([h_prev, x])
    i, f, g, o = _sig(z[:n]), _sig(z[n:2 * n]), np.tanh(z[2 * n:3 * n]), _sig(z[3 * n:])
    c = f * c_prev + i * g
    return c, o * np.tanh(c), f, o


def _lstm_loss(c_prev, h_prev, x, W, Gc, Gh):
    """L = Σ Gc ⊙ c_t + Σ Gh ⊙ h_t: one step, c_{t−1} enters only through c_t (no peepholes)."""
    c, h, _, _ = _lstm_step(c_prev, h_prev, x, W)
    return np.sum(Gc * c) + np.sum(Gh * h)


def _lstm_dc_prev(c_prev, h_prev, x, W, Gc, Gh, forget=True):
    """dc_t = Gc + Gh ⊙ o ⊙ (1 − tanh² c_t);  dc_{t−1} = dc_t ⊙ f_t."""
    c, _, f, o = _lstm_step(c_prev, h_prev, x, W)
    dc = Gc + Gh * o * (1 - np.tanh(c) ** 2)
    return dc * f if forget else dc


def _lstm_forget(c_prev, h_prev, x, W, Gc, Gh):
    """The forget gate f_t = σ(W_f [h_{t−1}; x_t])."""
    return _lstm_step(c_prev, h_prev, x, W)[2]


def _lstm_run(c0, h0, X, W):
    """T = X.shape[1] steps from (c₀, h₀); returns [(c_{t−1}, c_t, h_t, i, f, g, o)] for t = 1..T."""
    n = c0.shape[0]
    c, h, out = c0, h0, []
    for t in range(X.shape[1]):
        z = W @ np.vstack([h, X[:, t:t + 1]])
        i, f, g, o = _sig(z[:n]), _sig(z[n:2 * n]), np.tanh(z[2 * n:3 * n]), _sig(z[3 * n:])
        c_new = f * c + i * g
        h = o * np.tanh(c_new)
        out.append((c, c_new, h, i, f, g, o))
        c = c_new
    return out


def _lstm_seq_loss(c0, h0, X, W, Gc, Gh):
    """L = Σ Gc ⊙ c_T + Σ Gh ⊙ h_T after T steps (torch's gate order i, f, g, o; no bias)."""
    last = _lstm_run(c0, h0, X, W)[-1]
    return np.sum(Gc * last[1]) + np.sum(Gh * last[2])


def _lstm_bptt(c0, h0, X, W, Gc, Gh, forget=True, wrt="c"):
    r"""Backpropagation through time of the LSTM (Graves 2012, §4.6), t = T..1:

    δc_t += δh_t ⊙ o_t ⊙ (1 − tanh² c_t);  δz_t = [δc_t⊙g_t⊙i_t(1−i_t); δc_t⊙c_{t−1}⊙f_t(1−f_t);
    δc_t⊙i_t⊙(1−g_t²); δh_t⊙tanh c_t⊙o_t(1−o_t)];  δh_{t−1} = W_hᵀ δz_t;  δc_{t−1} = δc_t ⊙ f_t
    (``forget=False``: the classic slip δc_{t−1} = δc_t).  Returns δc₀ (``wrt="c"``) or δh₀.
    """
    n = c0.shape[0]
    Wh = W[:, :n]
    dc, dh = Gc, Gh
    for c_prev, c, h, i, f, g, o in reversed(_lstm_run(c0, h0, X, W)):
        tc = np.tanh(c)
        dc = dc + dh * o * (1 - tc ** 2)
        dz = np.vstack([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g ** 2), dh * tc * o * (1 - o)])
        dh = Wh.T @ dz
        dc = dc * f if forget else dc
    return dc if wrt == "c" else dh


_T_LSTM = 4
_LSTM_SEQ_SHAPES = {"c0": (3, 1), "h0": (3, 1), "X": (2, _T_LSTM), "W": (12, 5), "Gc": (3, 1), "Gh": (3, 1)}
_LSTM_SEQ_SRC = "Graves 2012 §4.6 (LSTM BPTT over T = 4 steps)"
_FORGET_BACK = StatedCorrection(
    "the forget gate restored in the cell-state recursion, δc_{t−1} = δc_t ⊙ f_t at every step",
    formula=lambda **a: _lstm_bptt(**a), kind=MISSING_FACTOR,
    corrected=r"\delta c_{t-1}=\delta c_t\odot f_t\ \ (t=T,\dots,1)")

_N, _NX = 3, 2
_LSTM_SHAPES = {"c_prev": (_N, 1), "h_prev": (_N, 1), "x": (_NX, 1), "W": (4 * _N, _N + _NX),
                "Gc": (_N, 1), "Gh": (_N, 1)}


# ============================================================================ GELU
def _Phi(x):
    return 0.5 * (1 + erf(x / math.sqrt(2)))


def _phi(x):
    return np.exp(-x ** 2 / 2) / math.sqrt(2 * math.pi)


def _gelu(x):
    """GELU(x) = x Φ(x) (exact, erf form), elementwise."""
    return x * _Phi(x)


# ============================================================================ the claims
def next_steps_claims() -> list[NextStepClaim]:
    """All claims, in report order (see the module docstring)."""
    C = NextStepClaim
    return [
        C("bn-dx", _BN_SRC,
          r"\frac{\partial L}{\partial x_i}=\frac{\gamma}{N\sigma}\Bigl(N g_i-\sum_j g_j-\hat x_i\sum_j g_j\hat x_j\Bigr)",
          _bn_loss, "X", _BN_SHAPES, _bn_dx, HOLDS),
        C("bn-dx-no-mean", "classic mistake: BatchNorm backward without the mean-of-gradient term",
          r"\frac{\partial L}{\partial x_i}=\frac{\gamma}{\sigma}\Bigl(g_i-\hat x_i\,\overline{g\hat x}\Bigr)",
          _bn_loss, "X", _BN_SHAPES, _bn_dx_no_mean, FAILS,
          corrections=(StatedCorrection("the mean term −(γ/σ) ḡ (the path through the batch mean μ) dropped",
                                        term=_bn_mean_term, latex=r"-\frac{\gamma}{\sigma}\,\bar g"),
                       StatedCorrection("the variance term −(γ/σ) x̂ᵢ·mean(g x̂) (the path through σ²) dropped",
                                        term=_bn_xhat_term, latex=r"-\frac{\gamma}{\sigma}\,\hat x_i\,\overline{g\hat x}"))),
        C("bn-dx-no-xhat", "classic mistake: BatchNorm backward without the variance path (x̂ term)",
          r"\frac{\partial L}{\partial x_i}=\frac{\gamma}{\sigma}\bigl(g_i-\bar g\bigr)",
          _bn_loss, "X", _BN_SHAPES, _bn_dx_no_xhat, FAILS,
          corrections=(StatedCorrection("the mean term −(γ/σ) ḡ (the path through the batch mean μ) dropped",
                                        term=_bn_mean_term, latex=r"-\frac{\gamma}{\sigma}\,\bar g"),
                       StatedCorrection("the variance term −(γ/σ) x̂ᵢ·mean(g x̂) (the path through σ²) dropped",
                                        term=_bn_xhat_term, latex=r"-\frac{\gamma}{\sigma}\,\hat x_i\,\overline{g\hat x}"))),
        C("bn-dx-unbiased", "classic mistake: unbiased variance 1/(N−1) where torch normalizes by the biased 1/N",
          r"\frac{\partial L}{\partial x_i}=\frac{\gamma}{\sigma_u}\bigl(g_i-\bar g-\hat x^u_i\,\overline{g\hat x^u}\bigr),"
          r"\ \sigma_u^2=\tfrac{1}{N-1}\sum_j (x_j-\mu)^2",
          _bn_loss, "X", _BN_SHAPES, _bn_dx_unbiased, FAILS,
          corrections=(StatedCorrection("the biased variance 1/N (torch's normalization) instead of 1/(N−1)",
                                        formula=lambda **a: _bn_dx_unbiased(**a, unbiased=False), kind=NORMALIZER,
                                        corrected=r"\sigma^2=\tfrac{1}{N}\sum_j (x_j-\mu)^2"),)),
        C("bn-dgamma", _BN_SRC, r"\frac{\partial L}{\partial\gamma}=\sum_i g_i\hat x_i",
          _bn_loss, "gamma", _BN_SHAPES, _bn_dgamma, HOLDS),
        C("bn-dbeta", _BN_SRC, r"\frac{\partial L}{\partial\beta}=\sum_i g_i",
          _bn_loss, "beta", _BN_SHAPES, _bn_dbeta, HOLDS),
        C("ln-jac", "Ba, Kiros & Hinton 2016 (LayerNorm), input Jacobian",
          r"\frac{\partial y}{\partial x^\top}=\operatorname{diag}(\gamma)\,\frac{1}{\sigma}"
          r"\Bigl(I-\tfrac1n\mathbf 1\mathbf 1^\top-\tfrac1n\hat x\hat x^\top\Bigr)",
          _ln, "x", {"x": (5, 1), "gamma": (5, 1)}, _ln_jac, HOLDS, JAC),
        C("ln-jac-no-outer", "classic mistake: LayerNorm Jacobian without the variance term",
          r"\frac{\partial y}{\partial x^\top}=\operatorname{diag}(\gamma)\,\frac{1}{\sigma}\Bigl(I-\tfrac1n\mathbf 1\mathbf 1^\top\Bigr)",
          _ln, "x", {"x": (5, 1), "gamma": (5, 1)}, lambda x, gamma: _ln_jac(x, gamma, drop_outer=True), FAILS, JAC,
          corrections=(StatedCorrection("the variance term −diag(γ)(1/σ) x̂x̂ᵀ/n dropped", term=_ln_outer_term,
                                        latex=r"-\operatorname{diag}(\gamma)\,\frac{1}{\sigma}\,\tfrac1n\hat x\hat x^\top"),)),
        C("ln-jac-sign", "classic mistake: LayerNorm Jacobian with +x̂x̂ᵀ/n (stated as its three terms)",
          r"\frac{\partial y}{\partial x^\top}=\operatorname{diag}(\gamma)\,\frac{1}{\sigma}"
          r"\Bigl(I-\tfrac1n\mathbf 1\mathbf 1^\top+\tfrac1n\hat x\hat x^\top\Bigr)",
          _ln, "x", {"x": (5, 1), "gamma": (5, 1)},
          lambda x, gamma: _ln_parts(x, gamma)[0] + _ln_parts(x, gamma)[1] - _ln_parts(x, gamma)[2], FAILS, JAC,
          terms=(("identity", lambda x, gamma: _ln_parts(x, gamma)[0], r"\operatorname{diag}(\gamma)\frac{1}{\sigma}I"),
                 ("mean", lambda x, gamma: _ln_parts(x, gamma)[1],
                  r"-\operatorname{diag}(\gamma)\frac{1}{\sigma}\tfrac1n\mathbf 1\mathbf 1^\top"),
                 ("variance", lambda x, gamma: -_ln_parts(x, gamma)[2],
                  r"\operatorname{diag}(\gamma)\frac{1}{\sigma}\tfrac1n\hat x\hat x^\top"))),
        C("attn-dQ", _ATTN_SRC,
          r"\frac{\partial L}{\partial Q}=\frac{1}{\sqrt{d_k}}\,\bigl(P\odot(GV^\top-\operatorname{rowsum}(P\odot GV^\top))\bigr)K",
          _attn_loss, "Q", _ATTN_SHAPES, _attn_dQ, HOLDS, sizes=_ATTN_SIZES),
        C("attn-dQ-no-scale", "classic mistake: attention backward without 1/√d_k",
          r"\frac{\partial L}{\partial Q}=\bigl(P\odot(GV^\top-\operatorname{rowsum}(P\odot GV^\top))\bigr)K",
          _attn_loss, "Q", _ATTN_SHAPES, _attn_dQ_no_scale, FAILS, sizes=_ATTN_SIZES),
        C("attn-dQ-diag-softmax", "classic mistake: softmax Jacobian taken as diag(p)",
          r"\frac{\partial L}{\partial Q}=\frac{1}{\sqrt{d_k}}\,\bigl(P\odot GV^\top\bigr)K",
          _attn_loss, "Q", _ATTN_SHAPES, _attn_dQ_diag, FAILS, sizes=_ATTN_SIZES,
          corrections=(StatedCorrection("the full softmax Jacobian diag(p) − ppᵀ per row, not its diagonal",
                                        formula=_attn_dQ, kind=SOFTMAX_DIAG,
                                        corrected=r"\frac{1}{\sqrt{d_k}}\,\bigl(P\odot(GV^\top-\operatorname{rowsum}(P\odot GV^\top))\bigr)K"),)),
        C("attn-dV", _ATTN_SRC, r"\frac{\partial L}{\partial V}=P^\top G",
          _attn_loss, "V", _ATTN_SHAPES, _attn_dV, HOLDS, sizes=_ATTN_SIZES),
        C("res-jac", "He et al. 2016, Eq. 1 (y = x + F(x)), Jacobian",
          r"\frac{\partial}{\partial x^\top}\bigl(x+\tanh(Wx)\bigr)=I+\operatorname{diag}(1-\tanh^2(Wx))\,W",
          _res, "x", {"x": (4, 1), "W": (4, 4)}, _res_jac, HOLDS, JAC),
        C("res-jac-no-identity", "classic mistake: residual Jacobian without the skip connection's identity",
          r"\frac{\partial}{\partial x^\top}\bigl(x+\tanh(Wx)\bigr)=\operatorname{diag}(1-\tanh^2(Wx))\,W",
          _res, "x", {"x": (4, 1), "W": (4, 4)}, _res_jac_no_identity, FAILS, JAC),
        C("rnn-bptt", "Pascanu, Mikolov & Bengio 2013, Eq. 5 (BPTT)",
          r"\frac{\partial h_T}{\partial h_0^\top}=\prod_{t=T}^{1}\operatorname{diag}(1-h_t^2)\,W",
          _rnn_hT, "h0", {"h0": (3, 1), "W": (3, 3), "U": (3, 2), "X": (2, 4)}, _rnn_bptt, HOLDS, JAC),
        C("rnn-bptt-reversed", "classic mistake: BPTT factors multiplied in time order (t = 1 leftmost)",
          r"\frac{\partial h_T}{\partial h_0^\top}=\prod_{t=1}^{T}\operatorname{diag}(1-h_t^2)\,W",
          _rnn_hT, "h0", {"h0": (3, 1), "W": (3, 3), "U": (3, 2), "X": (2, 4)},
          lambda **a: _rnn_bptt(**a, reverse=True), FAILS, JAC,
          corrections=(StatedCorrection("the factors in backward order: t = T leftmost, t = 1 rightmost",
                                        formula=_rnn_bptt, kind=CHAIN_ORDER,
                                        corrected=r"\prod_{t=T}^{1}\operatorname{diag}(1-h_t^2)\,W"),)),
        C("lstm-dc", "Hochreiter & Schmidhuber 1997; Graves 2012 §4.6 (cell-state recursion)",
          r"\delta c_{t-1}=\delta c_t\odot f_t,\quad \delta c_t=\bar c_t+\bar h_t\odot o_t\odot(1-\tanh^2c_t)",
          _lstm_loss, "c_prev", _LSTM_SHAPES, _lstm_dc_prev, HOLDS),
        C("lstm-dc-no-forget", "classic mistake: cell-state recursion without the forget gate",
          r"\delta c_{t-1}=\delta c_t,\quad \delta c_t=\bar c_t+\bar h_t\odot o_t\odot(1-\tanh^2c_t)",
          _lstm_loss, "c_prev", _LSTM_SHAPES, lambda **a: _lstm_dc_prev(**a, forget=False), FAILS,
          corrections=(StatedCorrection("the forget gate f_t dropped from δc_{t−1} = δc_t ⊙ f_t", factor=_lstm_forget,
                                        latex="f_t", corrected=r"\delta c_{t-1}=\delta c_t\odot f_t"),)),
        C("lstm-seq-dc0", _LSTM_SEQ_SRC,
          r"\delta c_{t-1}=\delta c_t\odot f_t,\ \delta h_{t-1}=W_h^\top\delta z_t,\ t=T,\dots,1;\ "
          r"\frac{\partial L}{\partial c_0}=\delta c_0",
          _lstm_seq_loss, "c0", _LSTM_SEQ_SHAPES, _lstm_bptt, HOLDS),
        C("lstm-seq-dc0-no-forget", "classic mistake: BPTT through T = 4 LSTM steps with the forget gate dropped",
          r"\delta c_{t-1}=\delta c_t,\ \delta h_{t-1}=W_h^\top\delta z_t,\ t=T,\dots,1;\ "
          r"\frac{\partial L}{\partial c_0}=\delta c_0",
          _lstm_seq_loss, "c0", _LSTM_SEQ_SHAPES, lambda **a: _lstm_bptt(**a, forget=False), FAILS,
          corrections=(_FORGET_BACK,)),
        C("lstm-seq-dh0", _LSTM_SEQ_SRC,
          r"\delta c_{t-1}=\delta c_t\odot f_t,\ \delta h_{t-1}=W_h^\top\delta z_t,\ t=T,\dots,1;\ "
          r"\frac{\partial L}{\partial h_0}=\delta h_0",
          _lstm_seq_loss, "h0", _LSTM_SEQ_SHAPES, lambda **a: _lstm_bptt(**a, wrt="h"), HOLDS),
        C("lstm-seq-dh0-no-forget", "classic mistake: BPTT through T = 4 LSTM steps with the forget gate dropped",
          r"\delta c_{t-1}=\delta c_t,\ \delta h_{t-1}=W_h^\top\delta z_t,\ t=T,\dots,1;\ "
          r"\frac{\partial L}{\partial h_0}=\delta h_0",
          _lstm_seq_loss, "h0", _LSTM_SEQ_SHAPES, lambda **a: _lstm_bptt(**a, wrt="h", forget=False), FAILS,
          corrections=(replace(_FORGET_BACK, formula=lambda **a: _lstm_bptt(**a, wrt="h")),)),
        C("gelu", "Hendrycks & Gimpel 2016 (GELU = xΦ(x))", r"\frac{d}{dx}\,x\Phi(x)=\Phi(x)+x\varphi(x)",
          _gelu, "x", {"x": (1, 1)}, lambda x: _Phi(x) + x * _phi(x), HOLDS, instances=4),
        C("gelu-phi-only", "classic mistake: GELU derivative as Φ(x) alone",
          r"\frac{d}{dx}\,x\Phi(x)=\Phi(x)", _gelu, "x", {"x": (1, 1)}, lambda x: _Phi(x), FAILS, instances=4,
          corrections=(StatedCorrection("the product rule's second term x φ(x) dropped", term=lambda x: x * _phi(x),
                                        latex=r"x\varphi(x)"),)),
    ]


#: the claims (built once at import; the verdicts are computed by :func:`next_steps_results`)
CLAIMS: tuple[NextStepClaim, ...] = tuple(next_steps_claims())


# ============================================================================ judging
def _judge(claim: NextStepClaim) -> Verdict:
    """Judge one claim with :func:`~jacobian_bp.claims.judge.check` (its stated corrections included)."""
    return check(claim.derivative_claim())


def next_steps_results() -> list[tuple[NextStepClaim, Verdict]]:
    """Judge every claim with the project's judge.

    Returns
    -------
    list of (NextStepClaim, Verdict)
    """
    return [(c, _judge(c)) for c in CLAIMS]


def diagnosed_by(v: Verdict) -> str:
    """``"judge"`` (the judge's own candidates), ``"verified correction"`` (a stated correction, verified)
    or ``""`` (no diagnosis)."""
    if v.diagnosis is None:
        return ""
    return "verified correction" if ("diagnosed_by", "verified correction") in v.details else "judge"


def next_steps_report(results: list[tuple[NextStepClaim, Verdict]] | None = None) -> str:
    """A plain-text table: id, source, verdict (expected), diagnosis.

    Returns
    -------
    str
    """
    rows = [("id", "source", "verdict", "diagnosis")]
    for c, v in (next_steps_results() if results is None else results):
        verdict = v.verdict + ("" if v.verdict == c.expected else f" (EXPECTED {c.expected})")
        if v.verdict == HOLDS:
            diag = "-"
        elif v.diagnosis is None:
            diag = "no single correction"
        else:
            diag = (f"{v.diagnosis}: {v.description}" +
                    ("" if diagnosed_by(v) == "judge" else " [verified correction]"))
        rows.append((c.id, c.source, verdict, diag))
    w = [max(len(r[k]) for r in rows) for k in range(4)]
    lines = [" | ".join(r[k].ljust(w[k]) for k in range(4)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * x for x in w))
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(next_steps_report())
