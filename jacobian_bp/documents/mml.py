"""The CSE463 backpropagation slides (Abd El Munim) with *Mathematics for Machine Learning* ch. 5:
their checkable statements.

Convention ``mml``: ``f_i = σ(A_{i-1} f_{i-1} + b_{i-1})``, θ_i = (A_i, b_i), column-major ``vec``,
row gradients.
"""
from __future__ import annotations

from functools import partial
import numpy as np
import sympy

from ..claims import Claim, ExpressionClaim, Setting
from .model import Document, Entry
from .shared import _BATCH, _C, _DEEP, _sym_grid


DOCUMENT = Document("mml", "H. Abd El Munim: CSE463 Backpropagation slides, with Mathematics for Machine Learning ch. 5",
                    "CSE463 slides / MML", "003_5c7989aa3e8fd706.txt", "mml")


#: the network the slides' and MML's formulas are stated for (keywords override it)
_mml = partial(Setting, "mml", hidden="sigmoid", output="sigmoid", loss="mse")


# MML / slides: f_i = σ(A_{i-1} f_{i-1} + b_{i-1}); θ_i = (A_i, b_i); column-major vec; row gradients
def _mml_dparams(q, l):
    """``∂f_l/∂θ_{l-1} = diag σ'(z_l) [f_{l-1}ᵀ ⊗ I, I]`` (column-major vec of A)."""
    n = q.n[l]
    return q.Jact[l] @ q.hstack([q.kron(q.a[l - 1].T, q.I(n)), q.I(n)])


def _mml_dL_dtheta(q, l):
    """(5.118): ``∂L/∂f_K · ∂f_K/∂f_{K-1} ⋯ ∂f_{l+1}/∂f_l · ∂f_l/∂θ_{l-1}`` (a row)."""
    R = q.grad_C(q.yhat).T
    for k in range(q.L, l, -1):
        R = R @ (q.Jact[k] @ q.W[k])
    return R @ _mml_dparams(q, l)


def _unit(q, m, n, i, j):
    E = q.zeros(m, n)
    E = E.copy() if not q.symbolic else E
    E[i, j] = 1
    return E


def entries() -> list[Entry]:
    E: list[Entry] = []

    def add(id_, loc, category, printed, claim, note=""):
        E.append(Entry(f"mml.{id_}", "mml", loc, category, printed, claim, note))

    M = _mml(widths=_DEEP)
    MB = _mml(widths=_DEEP, batch=_BATCH)
    M1 = _mml(widths=_DEEP, mse_scale=1.0)
    S2 = _mml(widths=((4, 5, 3), (3, 6, 2), (4, 4, 4)))
    add("cost.total", "slide 'Total Cost' (l. 35)", "formula", "E(θ) = Σ_{r=1}^{R} E^r(θ)",
        Claim("slides total cost", lambda q: sum(q.loss_value(q.Yhat[i], q.Y[i]) for i in range(q.N)), "loss", MB,
              layers="none"))
    add("cost.half", "slide 'Problem Formulation' (l. 49-51)", "formula",
        "E(θ) = ½‖Ŷ(θ) − Y‖² = ½(Ŷ(θ) − Y)ᵀ(Ŷ(θ) − Y)",
        Claim("slides E = ½(Ŷ − Y)ᵀ(Ŷ − Y)", lambda q: (q.yhat - q.y).T @ (q.yhat - q.y) / 2, "loss", M, layers="none"))
    add("cost.grad", "slide 'Problem Formulation' (l. 53)", "formula", "∂E/∂θ = (Ŷ(θ) − Y)ᵀ ∂Ŷ(θ)/∂θ",
        Claim("slides ∂E/∂θ", lambda q: (q.yhat - q.y).T @ q.hstack([_mml_dyhat_dtheta(q, k) for k in range(1, q.L + 1)]),
              "grad_theta", M, layers="none", form="T"),
        "θ = [vec A_0; b_0; vec A_1; …] with column-major vec; ∂Ŷ/∂θ built layer by layer.")
    add("5.40", "MML (5.40) (l. 69)", "dimension", "∇_x f = df/dx ∈ R^{1×n}  (a row vector)",
        Claim("MML (5.40) gradient is 1 × n", lambda q: (1, sum(q.n[l] * q.n[l - 1] + q.n[l] for l in range(1, q.L + 1))),
              "grad_theta", M, layers="none", form="T", states="shape"))
    for key, loc, printed, claim in _mml_calculus_claims():
        add(key, loc, "formula", printed, claim)
    add("ex512", "MML Example 5.12 (5.86)-(5.92) (l. 228-256)", "formula",
        "f = Ax: df/dA ∈ R^{M×(M×N)}, ∂f_i/∂A_{i,:} = xᵀ, ∂f_i/∂A_{k≠i,:} = 0ᵀ", _mml_ex512())
    add("5.6.index", "MML §5.6.1 (l. 285, l. 291-295)", "formula",
        "gradient w.r.t. all model parameters A_j, b_j for j = 1, …, K  (θ = {A_0, b_0, …, A_{K−1}, b_{K−1}})",
        Claim("MML §5.6.1 parameters A_j, j = 1..K", lambda q, l: q.Ai[l].shape, "W", M, states="shape",
              corrections=(_C("A_j, b_j for j = 0, …, K − 1", lambda q, l: q.Ai[l - 1].shape),)),
        "Layer l (= j) of a K-layer network; the parameters are indexed from 0 by (5.113).")
    add("5.113", "MML (5.112)-(5.113) (l. 287-289)", "formula", "f_0 := x,  f_i := σ_i(A_{i−1} f_{i−1} + b_{i−1})",
        Claim("MML (5.113)", lambda q, l: q.sigma(l, q.Ai[l - 1] @ q.a[l - 1] + q.bi[l - 1]), "a", M))
    add("5.115", "MML (5.115) (l. 302)", "formula", "∂L/∂θ_{K−1} = (∂L/∂f_K)(∂f_K/∂θ_{K−1})",
        Claim("MML (5.115)", lambda q, l: q.grad_C(q.yhat).T @ _mml_dparams(q, l), "grad_row_l", M1, layers="last"),
        "L = ‖y − f_K‖² (5.114, no ½); θ_{K−1} = (A_{K−1}, b_{K−1}), A column-major vectorised.")
    add("5.116", "MML (5.116) (l. 304)", "formula", "∂L/∂θ_{K−2} = (∂L/∂f_K)(∂f_K/∂f_{K−1})(∂f_{K−1}/∂θ_{K−2})",
        Claim("MML (5.116)", lambda q, l: q.grad_C(q.yhat).T @ (q.Jact[q.L] @ q.W[q.L]) @ _mml_dparams(q, l),
              "grad_row_l", _mml(widths=_DEEP[:3], mse_scale=1.0, min_depth=2), layers=lambda L: [L - 1]))
    add("5.117", "MML (5.117) (l. 306)", "formula",
        "∂L/∂θ_{K−3} = (∂L/∂f_K)(∂f_K/∂f_{K−1})(∂f_{K−1}/∂f_{K−2})(∂f_{K−2}/∂θ_{K−3})",
        Claim("MML (5.117)", lambda q, l: q.grad_C(q.yhat).T @ (q.Jact[q.L] @ q.W[q.L]) @ (q.Jact[q.L - 1] @ q.W[q.L - 1])
              @ _mml_dparams(q, l), "grad_row_l", _mml(widths=_DEEP, mse_scale=1.0, min_depth=3),
              layers=lambda L: [L - 2]))
    add("5.118", "MML (5.118) (l. 308)", "formula",
        "∂L/∂θ_i = (∂L/∂f_K)(∂f_K/∂f_{K−1}) ⋯ (∂f_{i+2}/∂f_{i+1})(∂f_{i+1}/∂θ_i)",
        Claim("MML (5.118)", _mml_dL_dtheta, "grad_row_l", M1))
    # slides' specific example (two sigmoid layers, E = ½‖f_2 − Y‖²)
    add("ex.forward", "slides 'Forward Path' (l. 326-334)", "formula",
        "f_0 = X, Z_1 = A_0 f_0 + b_0, f_1 = σ(Z_1), Z_2 = A_1 f_1 + b_1, f_2 = σ(Z_2)",
        Claim("slides forward path", lambda q, l: q.Ai[l - 1] @ q.a[l - 1] + q.bi[l - 1], "z", S2))
    add("ex.E", "slides 'Forward Path' (l. 336)", "formula", "E = ½ (f_2 − Y)ᵀ(f_2 − Y)",
        Claim("slides E", lambda q: (q.a[2] - q.y).T @ (q.a[2] - q.y) / 2, "loss", S2, layers="none"))
    add("ex.b1", "slides 'Backward Path (1)' (l. 341-345)", "formula",
        "∂E/∂b_1 = (f_2 − Y)ᵀ (∂f_2/∂Z_2)(∂Z_2/∂b_1), ∂Z_2/∂b_1 = I, ∂f_2/∂Z_2 = diag σ'",
        Claim("slides ∂E/∂b_1", lambda q, l: (q.a[2] - q.y).T @ q.diag(q.fprime[2]) @ q.I(q.n[2]), "grad_b", S2,
              layers=lambda L: [2], form="T"))
    add("ex.dZ2db1", "slides 'Backward Path (1)' (l. 343)", "formula", "∂Z_2/∂b_1 = identity matrix",
        Claim("slides ∂Z_2/∂b_1", lambda q, l: q.I(q.n[l]), "J_local_b", S2, layers=lambda L: [2]))
    add("ex.df2dZ2", "slides 'Backward Path (1)' (l. 345)", "formula", "∂f_2/∂Z_2 = diagonal matrix of σ'",
        Claim("slides ∂f_2/∂Z_2", lambda q, l: q.diag(q.fprime[l]), "J_act", S2, layers=lambda L: [2]))
    add("ex.b0", "slides 'Backward Path (2)' (l. 349)", "formula",
        "∂E/∂b_0 = (f_2 − Y)ᵀ (∂f_2/∂Z_2)(∂Z_2/∂f_1)(∂f_1/∂Z_1)(∂Z_1/∂b_0)",
        Claim("slides ∂E/∂b_0", lambda q, l: (q.a[2] - q.y).T @ q.diag(q.fprime[2]) @ q.Ai[1] @ q.diag(q.fprime[1])
              @ q.I(q.n[1]), "grad_b", S2, layers=lambda L: [1], form="T"))
    add("ex.alpha", "slides 'Backward Path (3)' (l. 355-359)", "formula",
        "∂E/∂α = (f_2 − Y)ᵀ (∂f_2/∂Z_2)(∂Z_2/∂α), ∂Z_2/∂α = [∂A_1/∂α] f_1, α ∈ A_1",
        Claim("slides ∂E/∂α (α ∈ A_1)", lambda q, l: _slides_entrywise(q, 2), "grad_W", S2, layers=lambda L: [2]))
    add("ex.beta", "slides 'Backward Path (4)' (l. 363-365)", "formula",
        "∂E/∂β = (f_2 − Y)ᵀ (∂f_2/∂Z_2)(∂Z_2/∂f_1)(∂f_1/∂Z_1)(∂Z_1/∂β), ∂Z_1/∂β = [∂A_0/∂β] f_0, β ∈ A_0",
        Claim("slides ∂E/∂β (β ∈ A_0)", lambda q, l: _slides_entrywise(q, 1), "grad_W", S2, layers=lambda L: [1]))
    return E


def _mml_dyhat_dtheta(q, l):
    """∂Ŷ/∂θ_{l−1}: ∂f_K/∂f_{K−1} ⋯ ∂f_{l+1}/∂f_l · ∂f_l/∂θ_{l−1}."""
    P = q.I(q.n[q.L])
    for k in range(q.L, l, -1):
        P = P @ q.Jact[k] @ q.W[k]
    return P @ _mml_dparams(q, l)


def _slides_entrywise(q, l):
    """[∂E/∂α]_{ij} with ∂Z_l/∂α = (∂A_{l−1}/∂α) f_{l−1} = E_ij f_{l−1}, back-propagated from E."""
    m, n = q.n[l], q.n[l - 1]
    row = (q.a[2] - q.y).T @ q.diag(q.fprime[2])
    if l == 1:
        row = row @ q.Ai[1] @ q.diag(q.fprime[1])
    G = np.zeros((m, n))
    for i in range(m):
        for j in range(n):
            G[i, j] = (row @ (_unit(q, m, n, i, j) @ q.a[l - 1]))[0, 0]
    return G


def _mml_calculus_claims():
    x1, x2, x3, t, s = sympy.symbols("x_1 x_2 x_3 t s", real=True)
    xs = sympy.Matrix([x1, x2, x3])
    out = []
    f = x1 ** 2 * sympy.sin(x2) + x3
    g = sympy.exp(x1 * x3) - x2 ** 3
    grad = lambda h: sympy.Matrix([h]).jacobian(xs)  # noqa: E731
    out.append(("5.46", "MML (5.46) product rule (l. 77)", "∂/∂x (f g) = (∂f/∂x) g + f (∂g/∂x)",
                ExpressionClaim("MML (5.46)", grad(f) * g + f * grad(g), grad(f * g))))
    out.append(("5.47", "MML (5.47) sum rule (l. 79)", "∂/∂x (f + g) = ∂f/∂x + ∂g/∂x",
                ExpressionClaim("MML (5.47)", grad(f) + grad(g), grad(f + g))))
    u = sympy.Matrix([x1 * x2 + x3, sympy.sin(x1) - x3 ** 2])  # f: R³ → R²
    y1, y2 = sympy.symbols("y_1 y_2", real=True)
    G = sympy.Matrix([y1 ** 2 * y2, sympy.exp(y1) + y2, y1 - 3 * y2])  # g: R² → R³
    Jg = G.jacobian(sympy.Matrix([y1, y2])).subs({y1: u[0], y2: u[1]})
    out.append(("5.48", "MML (5.48) chain rule (l. 81)", "∂/∂x (g ∘ f)(x) = (∂g/∂f)(∂f/∂x)",
                ExpressionClaim("MML (5.48)", Jg * u.jacobian(xs), G.subs({y1: u[0], y2: u[1]}).jacobian(xs))))
    fx = x1 ** 2 * x2 + sympy.cos(x1 * x2)
    xt = {x1: sympy.sin(t) + t, x2: t ** 2}
    grad_x = sympy.Matrix([fx]).jacobian(sympy.Matrix([x1, x2])).subs(xt)
    dxdt = sympy.Matrix([sympy.diff(xt[x1], t), sympy.diff(xt[x2], t)])
    out.append(("5.49", "MML (5.49) (l. 89)", "df/dt = [∂f/∂x_1 ∂f/∂x_2] [∂x_1/∂t ; ∂x_2/∂t]",
                ExpressionClaim("MML (5.49)", grad_x * dxdt, sympy.Matrix([sympy.diff(fx.subs(xt), t)]))))
    xst = {x1: s * t + s ** 2, x2: sympy.exp(s - t)}
    grad_x2 = sympy.Matrix([fx]).jacobian(sympy.Matrix([x1, x2])).subs(xst)
    dxdst = sympy.Matrix([[sympy.diff(xst[x1], s), sympy.diff(xst[x1], t)], [sympy.diff(xst[x2], s), sympy.diff(xst[x2], t)]])
    out.append(("5.51-5.53", "MML (5.51)-(5.53) (l. 95-107)",
                "∂f/∂s = Σ_i (∂f/∂x_i)(∂x_i/∂s), ∂f/∂t likewise; df/d(s,t) = (∂f/∂x)(∂x/∂(s,t))",
                ExpressionClaim("MML (5.53)", grad_x2 * dxdst,
                                sympy.Matrix([fx.subs(xst)]).jacobian(sympy.Matrix([s, t])))))
    F = sympy.Matrix([x1 * x2, sympy.sin(x3), x1 + x3 ** 2, sympy.exp(x2)])
    out.append(("5.58", "MML (5.56)-(5.59), Def. 5.6 (l. 125-135)", "J = df/dx ∈ R^{m×n},  J(i, j) = ∂f_i/∂x_j",
                ExpressionClaim("MML (5.58)", sympy.Matrix(4, 3, lambda i, j: sympy.diff(F[i], xs[j])), F.jacobian(xs))))
    out.append(("5.sum", "MML §5.3 (l. 137)", "f(x) = Σ_i x_i has the 1 × n Jacobian [1 … 1]",
                ExpressionClaim("MML Σ x_i Jacobian", sympy.ones(1, 3), sympy.Matrix([sum(xs)]).jacobian(xs))))
    A = _sym_grid("A", 2, 3)
    out.append(("5.68", "MML Example 5.9 (5.67)-(5.68) (l. 143-151)", "f(x) = Ax:  df/dx = A ∈ R^{M×N}",
                ExpressionClaim("MML (5.68)", A, (A * xs).jacobian(xs))))
    Phi = _sym_grid("Phi", 3, 2)
    th = _sym_grid("theta", 2, 1)
    yv = _sym_grid("y", 3, 1)
    e = yv - Phi * th
    Le = (e.T * e)[0, 0]
    dL_dtheta = sympy.Matrix([Le]).jacobian(th)
    out.append(("5.81", "MML (5.81) (l. 183)", "∂L/∂e = 2eᵀ ∈ R^{1×N}",
                ExpressionClaim("MML (5.81)", 2 * _sym_grid("e", 3, 1).T,
                                sympy.Matrix([(_sym_grid("e", 3, 1).T * _sym_grid("e", 3, 1))[0, 0]]).jacobian(_sym_grid("e", 3, 1)))))
    out.append(("5.82", "MML (5.82) (l. 187)", "∂e/∂θ = −Φ ∈ R^{N×D}", ExpressionClaim("MML (5.82)", -Phi, e.jacobian(th))))
    Es = _sym_grid("e", 3, 1)
    dL_de = sympy.Matrix([(Es.T * Es)[0, 0]]).jacobian(Es).subs(dict(zip(list(Es), list(e))))  # ∂L/∂e at e(θ)
    de_dth = e.jacobian(th)
    out.append(("5.80", "MML (5.79)-(5.80) (l. 175-179)",
                "∂L/∂θ = (∂L/∂e)(∂e/∂θ):  ∂L/∂θ[1, d] = Σ_n ∂L/∂e[n] ∂e/∂θ[n, d]",
                ExpressionClaim("MML (5.80)", sympy.Matrix(1, th.shape[0], lambda _, d_: sum(
                    dL_de[0, n_] * de_dth[n_, d_] for n_ in range(e.shape[0]))), dL_dtheta)))
    out.append(("5.83", "MML (5.83)-(5.84) (l. 191-198)", "∂L/∂θ = −2eᵀΦ = −2(yᵀ − θᵀΦᵀ)Φ ∈ R^{1×D}",
                ExpressionClaim("MML (5.83)", sympy.Matrix.vstack(-2 * e.T * Phi, -2 * (yv.T - th.T * Phi.T) * Phi),
                                sympy.Matrix.vstack(dL_dtheta, dL_dtheta))))
    A42 = sympy.Matrix(4, 2, lambda i, j: (i + 1) * x1 ** (j + 1) + (j + 1) * sympy.sin(x2 * (i + 1)) + i * j * x3)
    dA = [A42.diff(v) for v in xs]  # Approach 1: three 4 × 2 partial derivatives
    out.append(("5.4", "MML §5.4, Approaches 1-2 (l. 209-222)", "∂A/∂x ∈ R^{4×2×3}; flatten A ∈ R^{4×2} to Ã ∈ R⁸: dÃ/dx ∈ R^{8×3}",
                ExpressionClaim("MML §5.4 tensor vs flattened gradient",
                                sympy.Matrix.hstack(*[sympy.Matrix(list(d)) for d in dA]),
                                sympy.Matrix(list(A42)).jacobian(xs))))
    f110 = sympy.sqrt(x1 ** 2 + sympy.exp(x1 ** 2)) + sympy.cos(x1 ** 2 + sympy.exp(x1 ** 2))
    l1 = (2 * x1 + 2 * x1 * sympy.exp(x1 ** 2)) / (2 * sympy.sqrt(x1 ** 2 + sympy.exp(x1 ** 2))) \
        - sympy.sin(x1 ** 2 + sympy.exp(x1 ** 2)) * (2 * x1 + 2 * x1 * sympy.exp(x1 ** 2))
    l2 = 2 * x1 * (1 / (2 * sympy.sqrt(x1 ** 2 + sympy.exp(x1 ** 2))) - sympy.sin(x1 ** 2 + sympy.exp(x1 ** 2))) \
        * (1 + sympy.exp(x1 ** 2))
    out.append(("5.110a", "MML (5.110), first line (l. 268)",
                "df/dx = (2x + 2x exp(x²)) / (2√(x² + exp(x²))) − sin(x² + exp(x²))(2x + 2x exp(x²))",
                ExpressionClaim("MML (5.110) line 1", l1, sympy.diff(f110, x1))))
    out.append(("5.110b", "MML (5.110), second line (l. 268)",
                "df/dx = 2x (1/(2√(x² + exp(x²))) − sin(x² + exp(x²))) (1 + exp(x²))",
                ExpressionClaim("MML (5.110) line 2", l2, sympy.diff(f110, x1))))
    return out


def _mml_ex512() -> ExpressionClaim:
    Mn, Nn = 3, 2
    A = _sym_grid("A", Mn, Nn)
    x = _sym_grid("x", Nn, 1)
    f = A * x
    vecA = sympy.Matrix(list(A))  # rows of A stacked: the tensor ∂f/∂A flattened as (i; k, q) -> (i, k*N + q)
    truth = f.jacobian(vecA)  # M × (M·N)
    claimed = sympy.zeros(Mn, Mn * Nn)
    for i in range(Mn):
        for q_ in range(Nn):
            claimed[i, i * Nn + q_] = x[q_]  # ∂f_i/∂A_iq = x_q; ∂f_i/∂A_{k≠i, q} = 0
    return ExpressionClaim("MML Example 5.12", claimed, truth)
