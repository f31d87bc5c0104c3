"""Damadi, Moharrer, Cham, *The backpropagation algorithm for a math student*: its checkable statements.

Convention ``damadi``: ``W[l]`` is ``n_{l-1} × n_l``, ``z = Wᵀa + b``, ``vec`` stacks the columns of
``W``, θ blocks in the order ``[L … 1]``.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
import sympy

from ..claims import Claim, ExpressionClaim, Setting
from .model import Document, Entry
from .shared import _C, _DEEP, _W3, _prop1_claim, _sym_grid


DOCUMENT = Document("damadi", "S. Damadi, G. Moharrer, M. Cham: The backpropagation algorithm for a math student",
                    "Damadi et al.", "000_982746a94e14742a.txt", "damadi")


#: the network Damadi's formulas are stated for (keywords override it)
_damadi = partial(Setting, "damadi", hidden="tanh", output="softmax", loss="cross_entropy")


# Damadi: W[l] is n_{l-1} × n_l, z = Wᵀa + b, vec stacks the columns of W
def _d_block(q, l, a):
    """Damadi's ``[I ⊗ aᵀ  I]`` for layer ``l`` (``n_l`` diagonal copies of ``aᵀ``, then ``I_{n_l}``)."""
    n = q.n[l]
    return q.hstack([q.kron(q.I(n), a.T), q.I(n)])


def _d_chain(q, l, upto):
    """``J_{z[l]} z[upto] = W[upto]ᵀ J_{z[upto-1]}f ⋯ W[l+1]ᵀ J_{z[l]}f`` (Damadi layout)."""
    P = q.I(q.n[upto])
    for k in range(upto, l, -1):
        P = P @ q.W[k].T @ q.Jact[k - 1]
    return P


def _d_J_block(q, l, upto=None):
    """``J_{W[l],b[l]} z[upto]`` built from the printed pieces (corrected Alg. 1)."""
    upto = q.L if upto is None else upto
    return _d_chain(q, l, upto) @ _d_block(q, l, q.a[l - 1])


def _d_J_theta(q):
    return q.hstack([_d_J_block(q, k) for k in range(q.L, 0, -1)])


def _d_grad_block(q, l):
    """``[I ⊗ a[l-1]; I] (J_{z[l]} z[L])ᵀ ∇_{z[L]} ℓ``: the gradient rows of layer l (transposed Alg. 1)."""
    return _d_J_block(q, l).T @ q.delta[q.L]


def _minus_y_minus_yhat(q):
    return -(q.y - q.yhat)


# --------------------------------------------------------------------------- conv helpers (§3.5)
def _correlate(X: sympy.Matrix, K: sympy.Matrix) -> sympy.Matrix:
    """Valid 2-D cross-correlation ``(X ⋆ K)_{ij} = Σ_{uv} K_{uv} X_{i+u, j+v}`` (Damadi Fig. 7), by loops."""
    mX, nX = X.shape
    mK, nK = K.shape
    return sympy.Matrix(mX - mK + 1, nX - nK + 1,
                        lambda i, j: sum(K[u, v] * X[i + u, j + v] for u in range(mK) for v in range(nK)))


def _vec_rows(M: sympy.Matrix) -> sympy.Matrix:
    """Damadi's ``Vec(Mᵀ)``: the rows of ``M`` stacked (the columns of ``Mᵀ``)."""
    return sympy.Matrix(list(M))


def _vec_cols(M: sympy.Matrix) -> sympy.Matrix:
    """``Vec(M)``: the columns of ``M`` stacked."""
    return sympy.Matrix(list(M.T))


def _conv_truth_matrix(case) -> sympy.Matrix:
    mX, nX, mK, nK = case
    X, K = _sym_grid("x", mX, nX), _sym_grid("k", mK, nK)
    return _vec_rows(_correlate(X, K)).jacobian(_vec_rows(X))


def _teop_toeplitz(case, row_offset: Callable[[int, int, int], int] | None = None) -> sympy.Matrix:
    """Prop. 2 read literally: a Toeplitz matrix whose first row is the kernel laid out in an
    ``n_X``-wide frame (``k_1 k_2 0 k_3 k_4`` for a 2×2 kernel, 3×3 input), each row shifted by one.
    With ``row_offset(i, j, nX)`` the row of output ``(i, j)`` starts there instead (the correction)."""
    mX, nX, mK, nK = case
    K = _sym_grid("k", mK, nK)
    band: list = []
    for r in range(mK):
        band += list(K.row(r))
        if r < mK - 1:
            band += [0] * (nX - nK)
    oh, ow = mX - mK + 1, nX - nK + 1
    M = sympy.zeros(oh * ow, mX * nX)
    for i in range(oh):
        for j in range(ow):
            r = i * ow + j
            start = r if row_offset is None else row_offset(i, j, nX)
            for c, v in enumerate(band):
                M[r, start + c] = v
    return M


def _toeplitz_engine(case) -> sympy.Matrix:
    from ..backend.toeplitz import toeplitz_sympy

    mX, nX, mK, nK = case
    return toeplitz_sympy(_sym_grid("k", mK, nK), (mX, nX))


def _prop3(case, tied: bool, bias_vec) -> tuple[sympy.Matrix, sympy.Matrix]:
    mX, nX, mK, nK = case
    X, K = _sym_grid("x", mX, nX), _sym_grid("k", mK, nK)
    oh, ow = mX - mK + 1, nX - nK + 1
    B = sympy.Matrix(oh, ow, lambda i, j: sympy.Symbol("beta", real=True)) if tied else _sym_grid("beta", oh, ow)
    W = _toeplitz_engine(case).T
    claimed = W.T * _vec_rows(X) + bias_vec(B)
    truth = _vec_rows(_correlate(X, K) + B)
    return claimed, truth


def entries() -> list[Entry]:
    E: list[Entry] = []
    doc = "damadi"

    def add(id_, loc, category, printed, claim, note=""):
        E.append(Entry(f"damadi.{id_}", doc, loc, category, printed, claim, note))

    # --- Algorithm 1
    add("alg1.l3.kron", "Alg. 1 line 3 (l. 55)", "algorithm",
        "J_{W[l],b[l]}(z[l]) = … [ (a[l])ᵀ 0 0 ; 0 ⋱ 0 ; 0 0 (a[l])ᵀ ] I   (l ≠ L)",
        Claim("Damadi Alg. 1 l. 3: Kronecker block with a[l]", lambda q, l: _d_block(q, l, q.a[l]), "J_local",
              _damadi(min_depth=2, widths=_DEEP), layers="hidden",
              corrections=(_C("[I ⊗ (a[l−1])ᵀ  I] (the layer's input, a[0] = x)",
                              lambda q, l: _d_block(q, l, q.a[l - 1])),)),
        "The block-diagonal factor is J_{vec W[l], b[l]} z[l]; the rest of the line is checked separately.")
    add("alg1.l3.chain", "Alg. 1 line 3 (l. 55)", "algorithm",
        "J_{W[l],b[l]}(z[L]) = (W[L])ᵀ J(f[L−1](z[L−1])) ⋯ J(f[l](z[l])) [I ⊗ a[l−1]ᵀ  I]   (l ≠ L)",
        Claim("Damadi Alg. 1 l. 3: chain with W[L] only",
              lambda q, l: _chain_W_L_only(q, l) @ _d_block(q, l, q.a[l - 1]),
              "J_theta_l", _damadi(min_depth=2, widths=_DEEP), layers="hidden",
              corrections=(_C("(W[L])ᵀ J_{z[L−1]}f[L−1] (W[L−1])ᵀ ⋯ (W[l+1])ᵀ J_{z[l]}f[l] [I ⊗ a[l−1]ᵀ  I]",
                              lambda q, l: _d_J_block(q, l)),)),
        "Read with the activation Jacobians J_{z[k]}f[k] between W[L]ᵀ and the block (as in the paper's §3.2); "
        "the Kronecker block is taken corrected so that only the chain is tested.")
    add("alg1.l3.lhs", "Alg. 1 line 3 (l. 55)", "algorithm",
        "J_{W[l],b[l]}(z[l]) = (the chain down to layer l)",
        Claim("Damadi Alg. 1 l. 3: left-hand side z[l]", lambda q, l: _d_J_block(q, l), "J_local",
              _damadi(min_depth=2, widths=_DEEP), layers="hidden",
              corrections=(_C("J_{W[l],b[l]}(z[L]) on the left-hand side", target="J_theta_l"),)),
        "The right-hand side is taken corrected (every W[k]ᵀ, a[l−1]); only the left-hand side is tested.")
    add("alg1.l4", "Alg. 1 line 4 (l. 59)", "algorithm",
        "J_{W[L],b[L]}(z[L]) = [ (a[L])ᵀ 0 0 ; 0 ⋱ 0 ; 0 0 (a[L])ᵀ ] I",
        Claim("Damadi Alg. 1 l. 4", lambda q, l: _d_block(q, l, q.a[l]), "J_theta_l", _damadi(), layers="last",
              corrections=(_C("[I ⊗ (a[L−1])ᵀ  I]", lambda q, l: _d_block(q, l, q.a[l - 1])),)))
    add("alg1.l7", "Alg. 1 line 7 (l. 65)", "algorithm",
        "J_θ z[L](θ) = [ J_{W[L],b[L]}(z[L](θ)) … J_{W[1],b[1]}(z[2](θ)) ]",
        Claim("Damadi Alg. 1 l. 7", lambda q: q.hstack([_d_J_block(q, k) for k in range(q.L, 1, -1)]
                                                      + [_d_J_block(q, 1, upto=2)]),
              "J_theta", _damadi(min_depth=2, widths=_DEEP), layers="none",
              corrections=(_C("[J_{W[L],b[L]}(z[L]) … J_{W[1],b[1]}(z[L])]", lambda q: _d_J_theta(q)),)),
        "Blocks built from the corrected line 3; only the last block's output z[2] is tested.")
    add("alg1.l8", "Alg. 1 line 8 (l. 69) and eq. (1) (l. 100)", "algorithm",
        "∇_θ ℓ(y, ŷ(θ)) = (J_θ z[L](θ))ᵀ ∇_{z[L]} ℓ(y, f(z[L]))",
        Claim("Damadi Alg. 1 l. 8", lambda q: _d_J_theta(q).T @ q.delta[q.L], "grad_theta", _damadi(widths=_DEEP),
              layers="none"))
    add("prop1", "Prop. 1 (l. 89)", "formula", "∇_x f(x) = (J_x f(x))ᵀ",
        _prop1_claim("Damadi Prop. 1"))
    # --- Table 1
    add("table1.bce", "Table 1 row 1 (l. 120)", "table", "sigmoid + BCE: ∇_{z[L]} ℓ = −(y − ŷ)  (y, ŷ ∈ R)",
        Claim("Damadi Table 1 sigmoid/BCE", lambda q, l: _minus_y_minus_yhat(q), "delta",
              _damadi(output="sigmoid", loss="bce", widths=((4, 1), (4, 5, 1)), symbolic=(2, 1),
                      symbolic_output="sigmoid"), layers="last"))
    add("table1.ce", "Table 1 row 2 (l. 121)", "table", "softmax + CE: ∇_{z[L]} ℓ = −(y − ŷ)  (y, ŷ ∈ R^c)",
        Claim("Damadi Table 1 softmax/CE", lambda q, l: _minus_y_minus_yhat(q), "delta",
              _damadi(widths=((4, 3), (4, 5, 3))), layers="last"))
    add("table1.mse", "Table 1 row 3 (l. 122)", "table", "identity + MSE ‖y − ŷ‖²: ∇_{z[L]} ℓ = −2(y − ŷ)",
        Claim("Damadi Table 1 identity/MSE", lambda q, l: -2 * (q.y - q.yhat), "delta",
              _damadi(output="identity", loss="mse", widths=((4, 3), (4, 5, 3)), symbolic=(2, 2),
                      symbolic_output="identity"), layers="last"))
    # --- §3.1
    one = _damadi(widths=((4, 3), (5, 2)))
    add("s31.z", "§3.1 (l. 136)", "formula", "(W)ᵀx + b = [ (W_{•1})ᵀ + b_1 ; (W_{•2})ᵀ + b_2 ; (W_{•3})ᵀ + b_3 ]",
        Claim("Damadi §3.1 z entries", lambda q, l: q.vstack([q.W[l][:, j:j + 1].T + q.b[l][j, 0]
                                                               for j in range(q.n[l])]), "z", one, layers="last",
              corrections=(_C("[ (W_{•1})ᵀx + b_1 ; … ]",
                              lambda q, l: q.vstack([q.W[l][:, j:j + 1].T @ q.x + q.b[l][j, 0] for j in range(q.n[l])])),)))
    add("s31.J", "§3.1 (l. 137-138)", "example", "J_θ z(θ) = [ xᵀ 0 0 1 0 0 ; 0 xᵀ 0 0 1 0 ; 0 0 xᵀ 0 0 1 ] = [I ⊗ xᵀ  I_{3×3}]",
        Claim("Damadi §3.1 J_θ z", lambda q: _d_block(q, 1, q.x), "J_theta", one, layers="none"))
    add("s31.Jdim", "§3.1 (l. 138)", "dimension", "J_θ z(θ) ∈ R^{3×15}  (4 features, 3 classes)",
        Claim("Damadi §3.1 J_θ z ∈ R^{3×15}", lambda q: (3, 15), "J_theta", _damadi(widths=((4, 3),)), layers="none",
              states="shape"))
    add("s31.grad", "§3.1 (l. 145)", "example", "∇_θ ℓ = −[ x 0 0 ; 0 x 0 ; 0 0 x ] (y − ŷ)",
        Claim("Damadi §3.1 gradient", lambda q: -q.kron(q.I(q.n[1]), q.x) @ (q.y - q.yhat), "grad_theta", one,
              layers="none",
              corrections=(_C("−[ I ⊗ x ; I_3 ] (y − ŷ)  (the bias rows of Jᵀ are missing)",
                              lambda q: -q.vstack([q.kron(q.I(q.n[1]), q.x), q.I(q.n[1])]) @ (q.y - q.yhat)),)))
    # --- Table 2
    t2_lin = _damadi(output="identity", loss="mse", widths=((1, 1),), seeds=(0, 1, 2), symbolic=(1, 1),
                     symbolic_output="identity")
    t2_bin = _damadi(output="sigmoid", loss="bce", widths=((2, 1),), seeds=(0, 1, 2), symbolic=(2, 1),
                     symbolic_output="sigmoid")
    t2_mlr = _damadi(output="identity", loss="mse", widths=((4, 1), (6, 1)), symbolic=(3, 1),
                     symbolic_output="identity")
    t2_log = _damadi(output="sigmoid", loss="bce", widths=((4, 1), (6, 1)))
    xa = lambda q: q.vstack([q.x, q.ones(1, 1)])  # noqa: E731 - [x; 1]
    add("table2.slr.grad", "Table 2, simple linear regression (l. 161)", "table", "∇ℓ_θ(y, ŷ) = 2 [x ; 1] (y − ŷ)",
        Claim("Damadi Table 2 simple linear regression gradient", lambda q: 2 * xa(q) @ (q.y - q.yhat), "grad_theta",
              t2_lin, layers="none", corrections=(_C("−2 [x ; 1] (y − ŷ)", lambda q: -2 * xa(q) @ (q.y - q.yhat)),)))
    add("table2.slr.pred", "Table 2, simple linear regression (l. 159)", "table", "ŷ = wx + b",
        Claim("Damadi Table 2 simple linear regression prediction", lambda q: q.W[1] * q.x + q.b[1], "yhat", t2_lin,
              layers="none"))
    add("table2.bin.pred", "Table 2, simple binary classifier (l. 159)", "table", "ŷ = σ(θᵀx),  θ = [w_1 ; w_2 ; b] ∈ R³, x ∈ R²",
        Claim("Damadi Table 2 binary classifier prediction", lambda q: q.sigma(1, q.theta.T @ q.x), "yhat", t2_bin,
              layers="none", corrections=(_C("ŷ = σ(θᵀ [x ; 1])", lambda q: q.sigma(1, q.theta.T @ xa(q))),)))
    add("table2.bin.grad", "Table 2, simple binary classifier (l. 161)", "table", "∇ℓ_θ(y, ŷ) = −[x ; 1] (y − σ(θᵀx))",
        Claim("Damadi Table 2 binary classifier gradient", lambda q: -xa(q) @ (q.y - q.yhat), "grad_theta", t2_bin,
              layers="none"),
        "σ(θᵀx) read as the prediction ŷ = σ(θᵀ[x; 1]); the ill-typed θᵀx is the prediction entry's finding.")
    add("table2.mlr.pred", "Table 2, multiple linear regression (l. 159)", "table", "ŷ = wᵀx + b",
        Claim("Damadi Table 2 multiple linear regression prediction", lambda q: q.W[1].T @ q.x + q.b[1], "yhat",
              t2_mlr, layers="none"))
    add("table2.mlr.grad", "Table 2, multiple linear regression (l. 161)", "table", "∇ℓ_θ(y, ŷ) = 2 [x ; 1] (y − ŷ)",
        Claim("Damadi Table 2 multiple linear regression gradient", lambda q: 2 * xa(q) @ (q.y - q.yhat),
              "grad_theta", t2_mlr, layers="none",
              corrections=(_C("−2 [x ; 1] (y − ŷ)", lambda q: -2 * xa(q) @ (q.y - q.yhat)),)))
    add("table2.log.pred", "Table 2, logistic regression (l. 159)", "table", "ŷ = σ(θᵀx),  θ ∈ R^{n+1}, x ∈ R^n",
        Claim("Damadi Table 2 logistic regression prediction", lambda q: q.sigma(1, q.theta.T @ q.x), "yhat", t2_log,
              layers="none", corrections=(_C("ŷ = σ(θᵀ [x ; 1])", lambda q: q.sigma(1, q.theta.T @ xa(q))),)))
    add("table2.log.grad", "Table 2, logistic regression (l. 161)", "table", "∇ℓ_θ(y, ŷ) = −[x ; 1] (y − σ(θᵀx))",
        Claim("Damadi Table 2 logistic regression gradient", lambda q: -xa(q) @ (q.y - q.yhat), "grad_theta", t2_log,
              layers="none"),
        "σ(θᵀx) read as the prediction (see the prediction entry).")
    for key, st, dims, txt in (("slr", t2_lin, lambda q: (2, 1), "θ = [w ; b] ∈ R²"),
                               ("bin", t2_bin, lambda q: (3, 1), "θ = [w_1 ; w_2 ; b] ∈ R³"),
                               ("mlr", t2_mlr, lambda q: (q.n[0] + 1, 1), "θ = [w_1 … w_n ; b] ∈ R^{n+1}"),
                               ("log", t2_log, lambda q: (q.n[0] + 1, 1), "θ = [w_1 … w_n ; b] ∈ R^{n+1}")):
        add(f"table2.{key}.dim", "Table 2, parameters (l. 158)", "dimension", txt,
            Claim(f"Damadi Table 2 {key} parameters", dims, "grad_theta", st, layers="none", states="shape"))
    # --- §3.2
    two = _damadi(widths=((4, 5, 3), (3, 6, 2)))
    add("s32.delta", "§3.2 (l. 171)", "formula", "∇_{z[2]} ℓ(y, f[2](z[2])) = −(y − ŷ)",
        Claim("Damadi §3.2 delta", lambda q, l: _minus_y_minus_yhat(q), "delta", two, layers="last"))
    add("s32.J2", "§3.2 (l. 179)", "example", "J_{W[2],b[2]}(z[2](θ)) = [I ⊗ (a[1])ᵀ  I_{3×3}]",
        Claim("Damadi §3.2 J_{W[2],b[2]} z[2]", lambda q, l: _d_block(q, 2, q.a[1]), "J_theta_l", two, layers="last"))
    add("s32.J2dim", "§3.2 (l. 179)", "dimension", "J_{W[2],b[2]}(z[2](θ)) ∈ R^{3×18}",
        Claim("Damadi §3.2 ∈ R^{3×18}", lambda q, l: (3, 18), "J_theta_l", _damadi(widths=((4, 5, 3),)),
              layers="last", states="shape"))
    add("s32.a1dim", "§3.2 (l. 181)", "dimension", "a[1] ∈ R⁵ because W[2] ∈ R^{5×3}",
        Claim("Damadi §3.2 W[2] ∈ R^{5×3}", lambda q, l: (5, 3), "W", _damadi(widths=((4, 5, 3),)),
              layers=lambda L: [2], states="shape"))
    add("s32.J1", "§3.2 (l. 183-187)", "example",
        "J_{W[1],b[1]}(z[2](θ)) = (W[2])ᵀ J_{z[1]}(f[1](z[1])) [I ⊗ xᵀ  I_{5×5}]",
        Claim("Damadi §3.2 J_{W[1],b[1]} z[2]", lambda q, l: q.W[2].T @ q.Jact[1] @ _d_block(q, 1, q.x),
              "J_theta_l", two, layers=lambda L: [1]))
    add("s32.J1dim", "§3.2 (l. 187)", "dimension", "J_{W[1],b[1]}(z[2](θ)) ∈ R^{3×25}",
        Claim("Damadi §3.2 ∈ R^{3×25}", lambda q, l: (3, 25), "J_theta_l", _damadi(widths=((4, 5, 3),)),
              layers=lambda L: [1], states="shape"))
    add("s32.grad.lhs", "§3.2 (l. 191)", "formula", "∇_θ ℓ(y, ŷ(θ)) = (J_θ z[2](θ))ᵀ ∇_{z[3]} ℓ(y, f(z[2]))",
        Claim("Damadi §3.2 gradient, left line", lambda q: _d_J_theta(q).T @ q.delta[3], "grad_theta",
              _damadi(widths=((4, 5, 3), (3, 6, 2))), layers="none",
              corrections=(_C("(J_θ z[2])ᵀ ∇_{z[2]} ℓ", lambda q: _d_J_theta(q).T @ q.delta[2]),)))
    add("s32.grad", "§3.2 (l. 191)", "example",
        "∇_θ ℓ = −[ [I ⊗ x ; I_5] (J_{z[1]}f[1])ᵀ W[2] ; [I ⊗ a[1] ; I_3] ] (y − ŷ)",
        Claim("Damadi §3.2 gradient, block matrix",
              lambda q: -q.vstack([_d_block(q, 1, q.x).T @ q.Jact[1].T @ q.W[2], _d_block(q, 2, q.a[1]).T])
              @ (q.y - q.yhat), "grad_theta", two, layers="none",
              corrections=(_C("−[ [I ⊗ a[1] ; I_3] ; [I ⊗ x ; I_5] (J_{z[1]}f[1])ᵀ W[2] ] (y − ŷ)  (θ = [θ[2]; θ[1]], Alg. 1 l. 7)",
                              lambda q: -q.vstack([_d_block(q, 2, q.a[1]).T,
                                                   _d_block(q, 1, q.x).T @ q.Jact[1].T @ q.W[2]]) @ (q.y - q.yhat)),)),
        "The juxtaposition '[x … x] I_{5×5}' is read as the stacked transpose [I ⊗ x ; I_5] of §3.1's block.")
    # --- §3.3 (three layers)
    three = _damadi(widths=_W3)
    add("s33.widths", "§3.3 (l. 197, l. 210)", "dimension",
        "LeNet-100-300: 100 units in the first layer, 300 in the second — yet the gradient has I_{300×300} for b[1], I_{100×100} for b[2]",
        Claim("Damadi §3.3 widths vs. the gradient's identity blocks", lambda q, l: {1: (300, 1), 2: (100, 1)}[l], "b",
              _damadi(widths=((784, 100, 300, 10),), seeds=(0,)), layers=lambda L: [1, 2], states="shape",
              corrections=(_C("784-300-100-10 (LeNet-300-100, as the gradient's blocks and LeCun et al. have it)",
                              setting=_damadi(widths=((784, 300, 100, 10),), seeds=(0,))),)),
        "The sizes of the printed identity blocks are compared with the bias sizes of the network the text describes.")
    add("s33.delta", "§3.3 (l. 204)", "formula", "∇_{z[3]} ℓ(y, f[3](z[3])) = −(y − ŷ) ∈ R¹⁰",
        Claim("Damadi §3.3 delta", lambda q, l: _minus_y_minus_yhat(q), "delta", three, layers="last"))
    add("s33.J", "§3.3 (l. 206)", "formula", "J_θ z[3](θ) = [ J_{W[3],b[3]}(z[3]) J_{W[2],b[2]}(z[3]) J_{W[1],b[1]}(z[3]) ]",
        Claim("Damadi §3.3 J_θ z[3]", lambda q: q.hstack([_d_J_block(q, 3), _d_J_block(q, 2), _d_J_block(q, 1)]),
              "J_theta", three, layers="none"))
    add("s33.grad.b1", "§3.3 (l. 210), first block", "example",
        "−[I ⊗ x ; I_{300}] (J_{z[1]}f[1])ᵀ W[2] (J_{z[2]}f[2])ᵀ W[3] (y − ŷ)",
        Claim("Damadi §3.3 gradient, layer-1 block",
              lambda q, l: -_d_block(q, 1, q.x).T @ q.Jact[1].T @ q.W[2] @ q.Jact[2].T @ q.W[3] @ (q.y - q.yhat),
              "grad_theta_l", three, layers=lambda L: [1]),
        "'I_{300×300}' at the start of the next block row is read as this block's bias part.")
    add("s33.grad.b2", "§3.3 (l. 210), second block", "example",
        "−[I ⊗ a[2] ; I_{100}] (J_{z[2]}f[2])ᵀ W[3] (y − ŷ)",
        Claim("Damadi §3.3 gradient, layer-2 block",
              lambda q, l: -_d_block(q, l, q.a[l]).T @ q.Jact[2].T @ q.W[3] @ (q.y - q.yhat), "grad_theta_l", three,
              layers=lambda L: [2],
              corrections=(_C("−[I ⊗ a[1] ; I] (J_{z[2]}f[2])ᵀ W[3] (y − ŷ)",
                              lambda q, l: -_d_block(q, l, q.a[l - 1]).T @ q.Jact[2].T @ q.W[3] @ (q.y - q.yhat)),)))
    add("s33.grad.b3", "§3.3 (l. 210), third block", "example",
        "−[I ⊗ a[3] ; I_{10}] (J_{z[3]}f[3])ᵀ W[3] (y − ŷ)",
        Claim("Damadi §3.3 gradient, layer-3 block",
              lambda q, l: -_d_block(q, l, q.a[l]).T @ q.Jact[3].T @ q.W[3] @ (q.y - q.yhat), "grad_theta_l", three,
              layers=lambda L: [3],
              corrections=(_C("−[I ⊗ a[2] ; I_{10}] (y − ŷ)  (no activation factor: the delta is w.r.t. z[3])",
                              lambda q, l: -_d_block(q, l, q.a[l - 1]).T @ (q.y - q.yhat)),)))
    add("s33.grad", "§3.3 (l. 210)", "example", "∇_θ ℓ = −[ block 1 ; block 2 ; block 3 ] (y − ŷ)  (as printed)",
        Claim("Damadi §3.3 gradient as printed",
              lambda q: -q.vstack([
                  _d_block(q, 1, q.x).T @ q.Jact[1].T @ q.W[2] @ q.Jact[2].T @ q.W[3],
                  _d_block(q, 2, q.a[2]).T @ q.Jact[2].T @ q.W[3],
                  _d_block(q, 3, q.a[3]).T @ q.Jact[3].T @ q.W[3]]) @ (q.y - q.yhat),
              "grad_theta", three, layers="none",
              corrections=(_C("−[ [I ⊗ a[2] ; I] ; [I ⊗ a[1] ; I] (J_{z[2]}f[2])ᵀ W[3] ; [I ⊗ x ; I] (J_{z[1]}f[1])ᵀ W[2] (J_{z[2]}f[2])ᵀ W[3] ] (y − ŷ)",
                              lambda q: -q.vstack([
                                  _d_block(q, 3, q.a[2]).T,
                                  _d_block(q, 2, q.a[1]).T @ q.Jact[2].T @ q.W[3],
                                  _d_block(q, 1, q.x).T @ q.Jact[1].T @ q.W[2] @ q.Jact[2].T @ q.W[3]]) @ (q.y - q.yhat)),)))
    # --- §3.4
    add("s34.diag", "§3.4 (l. 222)", "formula", "J_z(f(z)) = diag(f'(z_1), …, f'(z_d))  (l = 1, …, L−1)",
        Claim("Damadi §3.4 activation Jacobian", lambda q, l: q.diag(q.fprime[l]), "J_act", _damadi(widths=_DEEP),
              layers="hidden"))
    add("s34.relu", "§3.4 (l. 224)", "formula", "ReLU: J_z(f(z)) is diagonal with zeros and ones (negative / positive z)",
        Claim("Damadi §3.4 ReLU Jacobian", lambda q, l: q.diag((np.asarray(q.z[l]) > 0) * 1.0), "J_act",
              _damadi(hidden="relu", widths=_DEEP), layers="hidden"))
    # --- §3.5
    add("prop2", "Prop. 2 (l. 237-239)", "formula",
        "X * K = Teop(K) Vec(Xᵀ), Teop(K) a Toeplitz (diagonal-constant) matrix of K",
        ExpressionClaim("Damadi Prop. 2 (Toeplitz)", lambda c: _teop_toeplitz(c), _conv_truth_matrix,
                        cases=((3, 3, 2, 2), (4, 4, 2, 2), (3, 4, 2, 3), (4, 3, 3, 2), (2, 3, 2, 2)),
                        corrections=(_C("a doubly block-Toeplitz matrix: the row of output (i, j) starts at column "
                                        "i·n_X + j (block rows shift by n_X, not by n_X − n_K + 1)",
                                        lambda c: _teop_toeplitz(c, lambda i, j, nX: i * nX + j)),)),
        "'Teop(K)' read literally as a Toeplitz matrix whose first row is the kernel laid out in an n_X-wide frame; "
        "cases (m_X, n_X, m_K, n_K); '*' is the cross-correlation of Fig. 7.")
    add("prop2.example", "§3.5 example (l. 247)", "example",
        "X * K = [k1 k2 0 k3 k4 0 0 0 0 ; 0 k1 k2 0 k3 k4 0 0 0 ; 0 0 k1 k2 0 k3 k4 0 0 ; 0 0 0 k1 k2 0 k3 k4 0] [x1 … x9]ᵀ",
        ExpressionClaim("Damadi Prop. 2 example matrix", _damadi_printed_matrix, lambda: _conv_truth_matrix((3, 3, 2, 2)),
                        corrections=(_C("rows 3-4: [0 0 0 k1 k2 0 k3 k4 0 ; 0 0 0 0 k1 k2 0 k3 k4]",
                                        lambda: _toeplitz_engine((3, 3, 2, 2))),)),
        "Truth: the Jacobian of Vec((X ⋆ K)ᵀ) w.r.t. Vec(Xᵀ) of the correlation computed entry by entry; the "
        "correction is jacobian_bp.backend.toeplitz.toeplitz_sympy.")
    add("prop3.tied", "Prop. 3 (l. 251)", "formula",
        "X * K_i + B_i ≡ (W_i)ᵀ x + b_i, W_i = (Teop(K_i))ᵀ, b_i = Vec(B_i)  (one bias per filter)",
        ExpressionClaim("Damadi Prop. 3, tied bias", lambda c: _prop3(c, True, _vec_cols)[0],
                        lambda c: _prop3(c, True, _vec_cols)[1], cases=((3, 3, 2, 2), (3, 4, 2, 2))),
        "Teop is the correct (doubly block-Toeplitz) matrix of jacobian_bp.backend.toeplitz; B_i = β·1.")
    add("prop3.untied", "Prop. 3 (l. 251)", "formula",
        "X * K_i + B_i ≡ (W_i)ᵀ x + b_i, b_i = Vec(B_i)  (B_i a general bias matrix)",
        ExpressionClaim("Damadi Prop. 3, bias matrix", lambda c: _prop3(c, False, _vec_cols)[0],
                        lambda c: _prop3(c, False, _vec_cols)[1], cases=((3, 4, 2, 2), (4, 3, 2, 2)),
                        corrections=(_C("b_i = Vec(B_iᵀ) (rows stacked, like the input's Vec(Xᵀ))",
                                        lambda c: _prop3(c, False, _vec_rows)[0]),)),
        "With a non-constant bias matrix on a non-square output the two vec orders differ.")
    return E


def _chain_W_L_only(q, l):
    """Alg. 1 line 3 as printed: (W[L])ᵀ times the activation Jacobians J_{z[L-1]} … J_{z[l]}, no other W."""
    P = q.W[q.L].T
    for k in range(q.L - 1, l - 1, -1):
        P = P @ q.Jact[k]
    return P


def _damadi_printed_matrix() -> sympy.Matrix:
    k1, k2, k3, k4 = sympy.symbols("k_1:5", real=True)
    band = [k1, k2, 0, k3, k4]
    return sympy.Matrix([[0] * r + band + [0] * (4 - r) for r in range(4)])
