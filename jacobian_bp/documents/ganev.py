"""Ganev, *Notes on backpropagation*: its checkable statements.

Convention ``ganev``: ``W[l]`` is ``n_l × n_{l-1}``, ``z = Wa + b``, batch first, losses summed.
"""
from __future__ import annotations

from functools import partial
import numpy as np
import sympy

from ..claims import Claim, ExpressionClaim, Setting
from .model import Artefact, Document, Entry
from .shared import _BATCH, _C, _DEEP, _prop1_claim, _sym_grid


DOCUMENT = Document("ganev", "I. Ganev: Notes on backpropagation", "Ganev", "001_79528ccd9fe71acc.txt", "ganev")


#: the network Ganev's formulas are stated for (keywords override it)
_ganev = partial(Setting, "ganev", hidden="tanh", output="sigmoid", loss="mse")


# Ganev / Park / MML: W[l] is n_l × n_{l-1}, z = Wa + b
def _g_forward_z(q, l):
    prev = q.x if l == 1 else q.sigma(l - 1, q.z[l - 1])  # σ_0 = identity
    return q.W[l] @ prev + q.b[l]


def _rows(q, M, fn):
    """Apply ``fn(i, row_i)`` to the rows of a batch-first matrix and stack the resulting rows."""
    return q.vstack([fn(i, M[i:i + 1, :]) for i in range(M.shape[0])])


def entries() -> list[Entry]:
    E: list[Entry] = []

    def add(id_, loc, category, printed, claim, note="", artefact=None):
        E.append(Entry(f"ganev.{id_}", "ganev", loc, category, printed, claim, note, artefact))

    G = _ganev(widths=_DEEP, symbolic=(2, 3, 2))
    Gn = _ganev(widths=_DEEP)
    GB = _ganev(widths=_DEEP, batch=_BATCH)
    GS = _ganev(widths=_DEEP, output="softmax", loss="cross_entropy")
    add("s15.grad", "§1.5 (l. 30)", "formula", "∇_x F = (dF_x)ᵀ  (F: Rⁿ → R)", _prop1_claim("Ganev §1.5"))
    add("s21.W", "§2.1 (l. 36-40)", "dimension", "W_ℓ ∈ R^{n_ℓ × n_{ℓ−1}}",
        Claim("Ganev §2.1 W_ℓ", lambda q, l: (q.n[l], q.n[l - 1]), "W", Gn, states="shape"))
    add("s21.b", "§2.1 (l. 36-40)", "dimension", "b_ℓ ∈ R^{n_ℓ}",
        Claim("Ganev §2.1 b_ℓ", lambda q, l: (q.n[l], 1), "b", Gn, states="shape"))
    add("s23.F", "§2.3 (l. 46)", "formula", "F_{θ,ℓ}(x) = W_ℓ @ (σ_{ℓ−1} ∘ F_{θ,ℓ−1}(x)) + b_ℓ,  F_{θ,0}(x) = x, σ_0 = id",
        Claim("Ganev §2.3 partial feedforward", _g_forward_z, "z", G))
    add("s23.Fθ", "§2.3 (l. 48)", "formula", "F_θ = σ_L ∘ F_{θ,L}",
        Claim("Ganev §2.3 feedforward", lambda q: q.sigma(q.L, q.z[q.L]), "yhat", G, layers="none"))
    add("s24.partial", "§2.4 (l. 57)", "formula",
        "L_ℓ(z) = C(σ_L(z), y) for ℓ = L;  L_{ℓ+1}(W_{ℓ+1} σ_ℓ(z) + b_{ℓ+1}) otherwise",
        Claim("Ganev §2.4 partial loss L_ℓ(z_ℓ) = loss", lambda q, l: _partial_loss(q, l), "loss", Gn))
    add("s31.Jac", "§3.1 (l. 70)", "dimension", "Jac_ℓ := d(σ_ℓ)_{z_ℓ} ∈ R^{n_ℓ × n_ℓ}",
        Claim("Ganev §3.1 Jac_ℓ", lambda q, l: (q.n[l], q.n[l]), "J_act", Gn, states="shape"))
    add("prop31.eq1", "Prop. 3.1 (3.1) (l. 76)", "formula", "∇_{z_L} L = Jac_Lᵀ @ ∇_ŷ C(−, y)",
        Claim("Ganev (3.1)", lambda q, l: q.Jac(q.L, q.z[q.L]).T @ q.grad_C(q.yhat), "delta", G, layers="last"))
    add("prop31.eq2", "Prop. 3.1 (3.2) (l. 79)", "formula", "∇_{z_{ℓ−1}} L = Jac_{ℓ−1}ᵀ @ W_ℓᵀ @ ∇_{z_ℓ} L",
        Claim("Ganev (3.2)", lambda q, l: q.Jac(l - 1, q.z[l - 1]).T @ q.W[l].T @ q.delta[l], "delta", G,
              layers="from2", target_offset=-1))
    add("prop31.eq3", "Prop. 3.1 (3.3) (l. 82)", "formula", "∇_{W_ℓ} L = ∇_{z_ℓ} L @ a_{ℓ−1}^1",
        Claim("Ganev (3.3) as transcribed", lambda q, l: q.delta[l] @ q.a[l - 1], "grad_W", G,
              corrections=(_C("∇_{z_ℓ} L @ a_{ℓ−1}ᵀ", lambda q, l: q.delta[l] @ q.a[l - 1].T),)),
        "The seed text reads a_{ℓ−1}^1 (probably ᵀ misread in the transcription; the proof has a_{ℓ−1}ᵀ).",
        Artefact("a_{ℓ−1}^1 → a_{ℓ−1}ᵀ", ("ganev.proof33", "ganev.alg1.l9", "ganev.alg4.gradW")))
    add("prop31.eq4", "Prop. 3.1 (3.4) (l. 84)", "formula", "∇_{b_ℓ} L = ∇_{z_ℓ} L",
        Claim("Ganev (3.4)", lambda q, l: q.delta[l], "grad_b", G))
    add("proof32", "Proof of (3.2) (l. 98)", "formula", "d(L_{ℓ−1})_{z_{ℓ−1}} = d(L_ℓ)_{z_ℓ} @ W_ℓ @ d(σ_{ℓ−1})_{z_{ℓ−1}}",
        Claim("Ganev proof of (3.2), differentials", lambda q, l: q.delta[l].T @ q.W[l] @ q.Jac(l - 1, q.z[l - 1]),
              "delta", Gn, layers="from2", target_offset=-1, form="T"))
    add("proof33", "Proof of (3.3), Exercise 3 (l. 108, l. 243)", "formula",
        "φ(M) = M @ a + b:  dφ_Mᵀ(v) = v @ aᵀ", _ganev_exercise3())
    add("rem32", "Remark 3.2 (l. 116)", "formula", "pointwise σ: (3.2) = σ'(z_{ℓ−1}) ⊙ (W_ℓᵀ @ ∇_{z_ℓ} L)",
        Claim("Ganev Remark 3.2", lambda q, l: q.hadamard(q.dsigma(l - 1, q.z[l - 1]), q.W[l].T @ q.delta[l]),
              "delta", G, layers="from2", target_offset=-1))
    # Algorithm 1
    add("alg1.fwd", "Alg. 1 line 2 (l. 128)", "algorithm", "z_ℓ ← W_ℓ @ σ_{ℓ−1}(z_{ℓ−1}) + b_ℓ",
        Claim("Ganev Alg. 1 forward", _g_forward_z, "z", Gn))
    add("alg1.jac", "Alg. 1 line 3 (l. 128)", "algorithm", "Jac_ℓ ← Jacobian(σ_L, z_ℓ)",
        Claim("Ganev Alg. 1 Jacobian line", lambda q, l: q.Jac(q.L, q.z[l]), "J_act", G,
              corrections=(_C("Jac_ℓ ← Jacobian(σ_ℓ, z_ℓ)", lambda q, l: q.Jac(l, q.z[l])),)))
    add("alg1.l6", "Alg. 1 line 6 (l. 128)", "algorithm", "grad_z_L ← Jac_Lᵀ @ Gradient(C(−, y), σ_L(x_L))",
        Claim("Ganev Alg. 1 line 6", lambda q, l: q.Jac(l, q.z[l]).T @ q.grad_C(q.sigma(l, q.indexed("x", l))),
              "delta", Gn, layers="last",
              corrections=(_C("grad_z_L ← Jac_Lᵀ @ Gradient(C(−, y), σ_L(z_L))",
                              lambda q, l: q.Jac(l, q.z[l]).T @ q.grad_C(q.sigma(l, q.z[l]))),)),
        "x_L is not defined anywhere (only z_ℓ, a_ℓ and the input x).")
    add("alg1.l8", "Alg. 1 line 8 (l. 128)", "algorithm", "grad_z_{ℓ−1} ← Jac_{ℓ−1}ᵀ @ (W_ℓ)ᵀ @ grad_z_ℓ",
        Claim("Ganev Alg. 1 line 8", lambda q, l: q.Jac(l - 1, q.z[l - 1]).T @ q.W[l].T @ q.delta[l], "delta", Gn,
              layers="from2", target_offset=-1), "Jac_{ℓ−1} taken as defined in §3.1 (the Jacobian line is its own entry).")
    add("alg1.l9", "Alg. 1 line 9 (l. 128)", "algorithm", "grad_W_ℓ ← grad_z_ℓ @ (σ_{ℓ−1}(z_{ℓ−1}))ᵀ",
        Claim("Ganev Alg. 1 line 9", lambda q, l: q.delta[l] @ (q.x if l == 1 else q.sigma(l - 1, q.z[l - 1])).T,
              "grad_W", Gn))
    add("alg1.l10", "Alg. 1 line 10 (l. 128)", "algorithm", "grad_b_ℓ ← grad_z_ℓ",
        Claim("Ganev Alg. 1 line 10", lambda q, l: q.delta[l], "grad_b", Gn))
    add("alg1", "Algorithm 1 (l. 126-128)", "algorithm", "Algorithm 1 run as printed (Jac_ℓ ← Jacobian(σ_L, z_ℓ))",
        Claim("Ganev Algorithm 1 as printed", lambda q, l: _ganev_alg1(q, l), "grad_W", G,
              corrections=(_C("with Jac_ℓ ← Jacobian(σ_ℓ, z_ℓ)", lambda q, l: _ganev_alg1(q, l, own=True)),)))
    # §4 batches
    add("s42.Z", "§4.2 (l. 143)", "formula", "Z_ℓ = A_{ℓ−1} @ W_ℓᵀ + 𝟙_N @ b_ℓᵀ ∈ R^{N × n_ℓ}",
        Claim("Ganev §4.2 Z_ℓ", lambda q, l: q.A[l - 1] @ q.W[l].T + q.ones_N @ q.b[l].T, "Z", GB))
    add("s42.A", "§4.2 (l. 144)", "formula", "A_ℓ = σ_ℓ(Z_ℓ) (rows)",
        Claim("Ganev §4.2 A_ℓ", lambda q, l: q.sigma(l, q.Z[l]), "A", GB))
    add("s42.sigma", "§4.2 (l. 150)", "dimension", "Jac_{i,ℓ} ∈ R^{n_ℓ×n_ℓ}, the Jacobian of σ_ℓ : R^{n_L} → R^{n_L}",
        Claim("Ganev §4.2 σ_ℓ : R^{n_L} → R^{n_L}", lambda q, l: (q.n[q.L], q.n[q.L]), "J_act", Gn, states="shape",
              corrections=(_C("σ_ℓ : R^{n_ℓ} → R^{n_ℓ}", lambda q, l: (q.n[l], q.n[l])),)))
    add("s42.C", "§4.2 (l. 154-158)", "formula", "L = C̃(F̃_θ(X), Y) = Σ_i C(Ŷ[i], Y[i])",
        Claim("Ganev §4.2 extended cost", lambda q: sum(q.loss_value(q.Yhat[i], q.Y[i]) for i in range(q.N)), "loss",
              GB, layers="none"))
    add("s42.dim", "§4.2 (l. 160)", "dimension", "∇_{Z_ℓ} L is an N × n_ℓ matrix",
        Claim("Ganev §4.2 ∇_{Z_ℓ} L", lambda q, l: (q.N, q.n[l]), "dZ", GB, states="shape"))
    add("prop41.eq1", "Prop. 4.1 (4.1) (l. 167)", "formula", "(∇_{Z_L} L)[i] = ∇_{Ŷ[i]} C(−, Y[i]) @ Jac_{i,L}",
        Claim("Ganev (4.1)", lambda q, l: _rows(q, q.G, lambda i, g: g @ q.Jac(l, q.Z[l][i])), "dZ", GB,
              layers="last"))
    add("prop41.eq2", "Prop. 4.1 (4.2) (l. 170)", "formula", "(∇_{Z_{ℓ−1}} L)[i] = (∇_{Z_ℓ} L)[i] @ W_ℓ @ Jac_{i,ℓ−1}",
        Claim("Ganev (4.2)", lambda q, l: _rows(q, q.dZ[l], lambda i, g: g @ q.W[l] @ q.Jac(l - 1, q.Z[l - 1][i])),
              "dZ", GB, layers="from2", target_offset=-1))
    add("prop41.eq3", "Prop. 4.1 (4.3) (l. 173)", "formula", "∇_{W_ℓ} L = (∇_{Z_ℓ} L)ᵀ @ A_{ℓ−1}",
        Claim("Ganev (4.3)", lambda q, l: q.dZ[l].T @ q.A[l - 1], "grad_W", GB))
    add("prop41.eq4", "Prop. 4.1 (4.4) (l. 176)", "formula", "∇_{b_ℓ} L = (∇_{Z_ℓ} L)ᵀ @ 𝟙_N",
        Claim("Ganev (4.4)", lambda q, l: q.dZ[l].T @ q.ones_N, "grad_b", GB))
    add("s43.phiL", "§4.3 (l. 192)", "formula", "∇_{Z_L} L = Φ_L(∇_Ŷ C(−, Y)),  Φ_ℓ = Σ_i E_ii ⊗ Jac_{i,ℓ}ᵀ",
        Claim("Ganev §4.3 Φ_L", lambda q, l: _phi_apply(q, l, q.G), "dZ", GB, layers="last"))
    add("s43.phi", "§4.3 (l. 193)", "formula", "∇_{Z_{ℓ−1}} L = Φ_{ℓ−1}(∇_{Z_ℓ} L @ W_ℓ)",
        Claim("Ganev §4.3 Φ_{ℓ−1}", lambda q, l: _phi_apply(q, l - 1, q.dZ[l] @ q.W[l]), "dZ", GB, layers="from2",
              target_offset=-1))
    add("s43.dim", "§4.3 (l. 195)", "dimension", "∇_{Z_ℓ} L ⊗ W_ℓ ∈ R^{N × n_{ℓ−1}}",
        Claim("Ganev §4.3 ∇_{Z_ℓ}L ⊗ W_ℓ", lambda q, l: np.kron(q.dZ[l], q.W[l]).shape, "dZ", GB, layers="from2",
              target_offset=-1, states="shape",
              corrections=(_C("∇_{Z_ℓ} L @ W_ℓ ∈ R^{N × n_{ℓ−1}}", lambda q, l: (q.dZ[l] @ q.W[l]).shape),)),
        "Possibly '@' typeset as '⊗'; as printed, the Kronecker product is N n_ℓ × n_ℓ n_{ℓ−1}.",
        Artefact("∇_{Z_ℓ} L ⊗ W_ℓ → ∇_{Z_ℓ} L @ W_ℓ", ("ganev.s43.phi",)))
    add("s43.kron", "§4.3 (l. 195)", "formula", "Jᵀ ⊗ vᵀ = (v ⊗ J)ᵀ  (J ∈ R^{n×n}, v ∈ R^{1×n})",
        ExpressionClaim("Ganev §4.3 Kronecker identity", lambda n: _kron(_sym_grid("J", n, n).T, _sym_grid("v", 1, n).T),
                        lambda n: _kron(_sym_grid("v", 1, n), _sym_grid("J", n, n)).T, cases=(2, 3),
                        corrections=(_C("(v ⊗ J)ᵀ = vᵀ ⊗ Jᵀ",
                                        lambda n: _kron(_sym_grid("v", 1, n).T, _sym_grid("J", n, n).T)),)))
    # Algorithm 2
    add("alg2.fwd", "Alg. 2 (l. 208)", "algorithm", "Z_ℓ ← σ_{ℓ−1}(Z_{ℓ−1}) @ W_ℓᵀ + 𝟙_N @ b_ℓᵀ",
        Claim("Ganev Alg. 2 forward", lambda q, l: (q.X if l == 1 else q.sigma(l - 1, q.Z[l - 1])) @ q.W[l].T
              + q.ones_N @ q.b[l].T, "Z", GB))
    add("alg2.jac", "Alg. 2 (l. 214)", "algorithm", "Jac_{i,ℓ} ← Jacobian(σ_L, Z_ℓ[i])",
        Claim("Ganev Alg. 2 Jacobian line", lambda q, l: q.Jac(q.L, q.z[l]), "J_act", Gn,
              corrections=(_C("Jac_{i,ℓ} ← Jacobian(σ_ℓ, Z_ℓ[i])", lambda q, l: q.Jac(l, q.z[l])),)))
    add("alg2.gradZL", "Alg. 2 (l. 216)", "algorithm", "grad_Z_L[i] ← G[i] @ Jac_{i,L}",
        Claim("Ganev Alg. 2 grad_Z_L", lambda q, l: _rows(q, q.G, lambda i, g: g @ q.Jac(l, q.Z[l][i])), "dZ", GB,
              layers="last"))
    add("alg2.gradZ", "Alg. 2 (l. 222)", "algorithm", "grad_Z_{ℓ−1}[i] ← grad_Z_ℓ[i] @ W_ℓ @ Jac_{i,ℓ−1}",
        Claim("Ganev Alg. 2 grad_Z_{ℓ−1}", lambda q, l: _rows(q, q.dZ[l], lambda i, g: g @ q.W[l] @ q.Jac(l - 1, q.Z[l - 1][i])),
              "dZ", GB, layers="from2", target_offset=-1))
    add("alg2.gradW", "Alg. 2 (l. 225)", "algorithm", "grad_W_ℓ ← grad_Z_ℓᵀ @ σ(Z_{ℓ−1})",
        Claim("Ganev Alg. 2 grad_W", lambda q, l: q.dZ[l].T @ (q.X if l == 1 else q.sigma(l - 1, q.Z[l - 1])), "grad_W",
              GB))
    add("alg2.gradb", "Alg. 2 (l. 225)", "algorithm", "grad_b_ℓ ← grad_Z_ℓᵀ @ 𝟙_N",
        Claim("Ganev Alg. 2 grad_b", lambda q, l: q.dZ[l].T @ q.ones_N, "grad_b", GB))
    add("alg2", "Algorithm 2 (l. 199-231)", "algorithm", "Algorithm 2 run as printed (Jacobian(σ_L, ·) for every layer)",
        Claim("Ganev Algorithm 2 as printed", lambda q, l: _ganev_alg2(q, l), "grad_W", GB,
              corrections=(_C("with Jac_{i,ℓ} ← Jacobian(σ_ℓ, Z_ℓ[i]) for every layer", lambda q, l: _ganev_alg2(q, l, own=True)),)))
    # Algorithm 3
    add("alg3.fwd", "Alg. 3 (l. 265)", "algorithm", "a_ℓ ← σ_ℓ(W_ℓ @ a_{ℓ−1} + b_ℓ)",
        Claim("Ganev Alg. 3 forward", lambda q, l: q.sigma(l, q.W[l] @ q.a[l - 1] + q.b[l]), "a", Gn))
    add("alg3.jac", "Alg. 3 (l. 267)", "algorithm", "Jac_ℓ ← Jacobian(σ_L, W_ℓ @ a_{ℓ−1} + b_ℓ)",
        Claim("Ganev Alg. 3 Jacobian line", lambda q, l: q.Jac(q.L, q.W[l] @ q.a[l - 1] + q.b[l]), "J_act", G,
              corrections=(_C("Jac_ℓ ← Jacobian(σ_ℓ, W_ℓ @ a_{ℓ−1} + b_ℓ)", lambda q, l: q.Jac(l, q.W[l] @ q.a[l - 1] + q.b[l])),)))
    add("alg3.gradW", "Alg. 3 (l. 273)", "algorithm", "grad_W_ℓ ← Jac_ℓᵀ @ grad_a_ℓ @ a_{ℓ−1}ᵀ",
        Claim("Ganev Alg. 3 grad_W", lambda q, l: q.Jac(l, q.z[l]).T @ q.grad_a[l] @ q.a[l - 1].T, "grad_W", G))
    add("alg3.gradb", "Alg. 3 (l. 275)", "algorithm", "grad_b_ℓ ← Jac_ℓᵀ @ grad_a_ℓ",
        Claim("Ganev Alg. 3 grad_b", lambda q, l: q.Jac(l, q.z[l]).T @ q.grad_a[l], "grad_b", G))
    add("alg3.grada", "Alg. 3 (l. 275)", "algorithm", "grad_a_{ℓ−1} ← (W_{ℓ−1})ᵀ @ Jac_ℓᵀ @ grad_a_ℓ",
        Claim("Ganev Alg. 3 grad_a", lambda q, l: q.W[l - 1].T @ q.Jac(l, q.z[l]).T @ q.grad_a[l], "grad_a", G,
              target_offset=-1,
              corrections=(_C("grad_a_{ℓ−1} ← (W_ℓ)ᵀ @ Jac_ℓᵀ @ grad_a_ℓ", lambda q, l: q.W[l].T @ q.Jac(l, q.z[l]).T @ q.grad_a[l]),)),
        "The transcription of this line is garbled; the three assignments are legible.")
    add("alg3", "Algorithm 3 (l. 256-280)", "algorithm", "Algorithm 3 run as printed",
        Claim("Ganev Algorithm 3 as printed", lambda q, l: _ganev_alg34(q, l, 3), "grad_W", G,
              corrections=(_C("with Jacobian(σ_ℓ, ·) and W_ℓ in grad_a_{ℓ−1}", lambda q, l: _ganev_alg34(q, l, 3, fixed=True)),)))
    # Algorithm 4
    add("alg4.fwd", "Alg. 4 (l. 282)", "algorithm", "z_ℓ ← W_ℓ @ a_{ℓ−1} + b_ℓ",
        Claim("Ganev Alg. 4 forward", lambda q, l: q.W[l] @ q.a[l - 1] + q.b[l], "z", Gn))
    add("alg4.jac", "Alg. 4 (l. 282)", "algorithm", "Jac_ℓ ← Jacobian(σ_L, z_ℓ)",
        Claim("Ganev Alg. 4 Jacobian line", lambda q, l: q.Jac(q.L, q.z[l]), "J_act", GS,
              corrections=(_C("Jac_ℓ ← Jacobian(σ_ℓ, z_ℓ)", lambda q, l: q.Jac(l, q.z[l])),)),
        "Checked with a softmax output layer (σ_L not elementwise).")
    add("alg4.gradz", "Alg. 4 (l. 282)", "algorithm", "grad_z_ℓ ← Jac_ℓᵀ @ grad_a_ℓ",
        Claim("Ganev Alg. 4 grad_z", lambda q, l: q.Jac(l, q.z[l]).T @ q.grad_a[l], "delta", G))
    add("alg4.grada", "Alg. 4 (l. 282)", "algorithm", "grad_a_{ℓ−1} ← (W_{ℓ−1})ᵀ @ grad_z_ℓ",
        Claim("Ganev Alg. 4 grad_a", lambda q, l: q.W[l - 1].T @ q.delta[l], "grad_a", G, target_offset=-1,
              corrections=(_C("grad_a_{ℓ−1} ← (W_ℓ)ᵀ @ grad_z_ℓ", lambda q, l: q.W[l].T @ q.delta[l]),)))
    add("alg4.gradW", "Alg. 4 (l. 282)", "algorithm", "grad_W_ℓ ← grad_z_ℓ @ a_{ℓ−1}ᵀ",
        Claim("Ganev Alg. 4 grad_W", lambda q, l: q.delta[l] @ q.a[l - 1].T, "grad_W", G))
    add("alg4.gradb", "Alg. 4 (l. 282)", "algorithm", "grad_b_ℓ ← grad_z_ℓ",
        Claim("Ganev Alg. 4 grad_b", lambda q, l: q.delta[l], "grad_b", G))
    add("alg4", "Algorithm 4 (l. 282)", "algorithm", "Algorithm 4 run as printed",
        Claim("Ganev Algorithm 4 as printed", lambda q, l: _ganev_alg34(q, l, 4), "grad_W", G,
              corrections=(_C("with Jacobian(σ_ℓ, z_ℓ) and (W_ℓ)ᵀ in grad_a_{ℓ−1}", lambda q, l: _ganev_alg34(q, l, 4, fixed=True)),)))
    # Algorithm 5 (the seed text has its title only: reconstructed as the batch form of Algorithm 4)
    note5 = ("The seed text has only the title of Algorithm 5 (l. 284); its lines are reconstructed from Appendix A "
             "(l. 254: pre- and post-activation feature matrices in a batch setting), Exercise 6 (l. 246: grad_A_ℓ "
             "is the gradient of the partial loss R^{N×n_ℓ} → R with respect to A_ℓ) and Algorithms 2 and 4, whose "
             "batch form it is.")
    add("alg5.fwd", "Alg. 5 (l. 284; Appendix A, l. 254)", "algorithm", "Z_ℓ ← A_{ℓ−1} @ W_ℓᵀ + 𝟙_N @ b_ℓᵀ;  A_ℓ ← σ_ℓ(Z_ℓ)",
        Claim("Ganev Alg. 5 forward", lambda q, l: q.sigma(l, q.A[l - 1] @ q.W[l].T + q.ones_N @ q.b[l].T), "A", GB),
        note5)
    add("alg5.gradAL", "Alg. 5 (l. 284; Exercise 6, l. 246)", "algorithm", "grad_A_L ← Gradient(C̃(−, Y), A_L)",
        Claim("Ganev Alg. 5 grad_A_L", lambda q, l: q.G, "dA", GB, layers="last"), note5)
    add("alg5.gradZ", "Alg. 5 (l. 284)", "algorithm", "grad_Z_ℓ[i] ← grad_A_ℓ[i] @ Jac_{i,ℓ}",
        Claim("Ganev Alg. 5 grad_Z", lambda q, l: _rows(q, q.dA[l], lambda i, g: g @ q.Jac(l, q.Z[l][i])), "dZ", GB),
        note5)
    add("alg5.gradA", "Alg. 5 (l. 284; Exercise 6, l. 246)", "algorithm", "grad_A_{ℓ−1} ← grad_Z_ℓ @ W_ℓ",
        Claim("Ganev Alg. 5 grad_A", lambda q, l: q.dZ[l] @ q.W[l], "dA", GB, target_offset=-1), note5)
    add("alg5.gradW", "Alg. 5 (l. 284)", "algorithm", "grad_W_ℓ ← grad_Z_ℓᵀ @ A_{ℓ−1}",
        Claim("Ganev Alg. 5 grad_W", lambda q, l: q.dZ[l].T @ q.A[l - 1], "grad_W", GB), note5)
    add("alg5.gradb", "Alg. 5 (l. 284)", "algorithm", "grad_b_ℓ ← grad_Z_ℓᵀ @ 𝟙_N",
        Claim("Ganev Alg. 5 grad_b", lambda q, l: q.dZ[l].T @ q.ones_N, "grad_b", GB), note5)
    add("alg5", "Algorithm 5 (l. 284; Exercise 6, l. 246)", "algorithm",
        "Algorithm 5 run as reconstructed (batch first, grad_A_ℓ and grad_Z_ℓ)",
        Claim("Ganev Algorithm 5", lambda q, l: _ganev_alg5(q, l), "grad_W", GB), note5)
    add("ex6.gradA", "Exercise 6 (l. 246)", "dimension", "grad_A_ℓ is the gradient of a partial loss R^{N × n_ℓ} → R",
        Claim("Ganev Exercise 6 grad_A_ℓ", lambda q, l: (q.N, q.n[l]), "dA", GB, states="shape", layers="all0"))
    # Exercise 1: the activations, as printed (their Jacobians are the exercise)
    add("ex1.sigmoid", "Exercise 1(a) (l. 236)", "formula", "pointwise sigmoid z ↦ 1/(1 + e^{−z})",
        Claim("Ganev Ex. 1(a)", lambda q, l: 1 / (1 + q.np.exp(-q.z[l])), "a",
              _ganev(widths=_DEEP, hidden="sigmoid", symbolic=(2, 3, 2), symbolic_hidden="sigmoid"), layers="hidden"))
    add("ex1.relu", "Exercise 1(b) (l. 237)", "formula", "pointwise ReLU z ↦ max(0, z)",
        Claim("Ganev Ex. 1(b)", lambda q, l: q.np.maximum(0, q.z[l]), "a", _ganev(widths=_DEEP, hidden="relu"),
              layers="hidden"))
    add("ex1.arctan", "Exercise 1(c) (l. 238)", "formula", "pointwise arctan z ↦ arctan(z)",
        Claim("Ganev Ex. 1(c)", lambda q, l: q.np.arctan(q.z[l]), "a", _ganev(widths=_DEEP, hidden="arctan"),
              layers="hidden"))
    add("ex1.softmax", "Exercise 1(d) (l. 240)", "formula", "softmax z ↦ (exp(z_i) / Σ_j exp(z_j))_i",
        Claim("Ganev Ex. 1(d)", lambda q, l: q.np.exp(q.z[l]) / q.np.sum(q.np.exp(q.z[l])), "a", GS, layers="last"))
    add("ex1.radial", "Exercise 1(e) (l. 240)", "formula", "radial sigmoid z ↦ 1/(1 + e^{−|z|}) · z/|z|",
        Claim("Ganev Ex. 1(e)", lambda q, l: q.z[l] / q.np.linalg.norm(q.z[l]) / (1 + q.np.exp(-q.np.linalg.norm(q.z[l]))),
              "a", _ganev(widths=_DEEP, hidden="radial_sigmoid"), layers="hidden"))
    # exercises
    add("ex2.avg", "Exercise 2(b), footnote 3 (l. 242, l. 248)", "formula",
        "the Jacobian of average pooling is the column vector with 1/n in every coordinate",
        ExpressionClaim("Ganev average-pooling Jacobian", lambda n: sympy.ones(n, 1) / n, _avg_pool_jacobian, cases=(3, 4),
                        corrections=(_C("the row vector (1/n, …, 1/n) ∈ R^{1×n} (σ : Rⁿ → R)", lambda n: sympy.ones(1, n) / n),)))
    add("ex2.max", "Exercise 2(a), footnote 3 (l. 241, l. 248)", "formula",
        "the Jacobian of max pooling is a column vector with a single one at the index of the maximum",
        ExpressionClaim("Ganev max-pooling Jacobian", lambda c: sympy.Matrix([1 if i == c[1] else 0 for i in range(len(c[0]))]),
                        _max_pool_jacobian, cases=(((3, 17, -2, 9), 1), ((5, -1, 2), 0)),
                        corrections=(_C("the row vector e_{argmax}ᵀ ∈ R^{1×n}",
                                        lambda c: sympy.Matrix([[1 if i == c[1] else 0 for i in range(len(c[0]))]])),)),
        "Cases (point, index of its maximum); the truth is SymPy's derivative of Max at the point.")
    return E


def _kron(A: sympy.Matrix, B: sympy.Matrix) -> sympy.Matrix:
    from sympy.physics.quantum import TensorProduct

    return sympy.Matrix(TensorProduct(A, B))


def _avg_pool_jacobian(n: int) -> sympy.Matrix:
    z = sympy.Matrix(sympy.symbols(f"z_1:{n + 1}", real=True))
    return sympy.Matrix([sum(z) / n]).jacobian(z)


def _max_pool_jacobian(case) -> sympy.Matrix:
    point, _ = case
    z = sympy.symbols(f"z_1:{len(point) + 1}", real=True)
    J = sympy.Matrix([sympy.Max(*z)]).jacobian(sympy.Matrix(z))
    return J.subs({zi: sympy.Rational(p, 10) for zi, p in zip(z, point)}).doit()


def _ganev_exercise3() -> ExpressionClaim:
    n, m = 2, 3
    M = _sym_grid("M", n, m)
    a = _sym_grid("a", m, 1)
    b = _sym_grid("b", n, 1)
    v = _sym_grid("v", n, 1)
    phi = M * a + b
    s = (v.T * phi)[0, 0]  # dφᵀ(v) is the gradient of v·φ(M) w.r.t. M
    truth = M.applyfunc(lambda e: sympy.diff(s, e))
    return ExpressionClaim("Ganev Exercise 3", v * a.T, truth)


def _partial_loss(q, l):
    """Ganev's L_ℓ evaluated at z_ℓ by the reverse recursion."""
    cur = q.z[l]
    for k in range(l, q.L):
        cur = q.W[k + 1] @ q.sigma(k, cur) + q.b[k + 1]
    return q.loss_value(q.sigma(q.L, cur))


def _phi_apply(q, l, M):
    """Φ_ℓ(M) = (Σ_i E_ii ⊗ Jac_{i,ℓ}ᵀ) vec_r(M), reshaped to N × n_ℓ (rows of M stacked, as in §4.3)."""
    N, n = q.N, q.n[l]
    Phi = sum(np.kron(_e(N, i), q.Jac(l, q.Z[l][i]).T) for i in range(N))
    return (Phi @ q.vec_r(M)).reshape(N, n)


def _e(N, i):
    E = np.zeros((N, N))
    E[i, i] = 1.0
    return E


def _ganev_alg1(q, l, own: bool = False):
    """Ganev Algorithm 1 (single sample), Jac_ℓ ← Jacobian(σ_L, z_ℓ) as printed unless ``own``."""
    L = q.L
    z = {0: q.x}
    jac = {}
    for k in range(1, L + 1):
        z[k] = q.W[k] @ (z[k - 1] if k == 1 else q.sigma(k - 1, z[k - 1])) + q.b[k]
        jac[k] = q.Jac(k if own else L, z[k])
    grad_z = {L: jac[L].T @ q.grad_C(q.sigma(L, z[L]))}
    grad_W = {}
    for k in range(L, 0, -1):
        if k > 1:
            grad_z[k - 1] = jac[k - 1].T @ q.W[k].T @ grad_z[k]
        grad_W[k] = grad_z[k] @ (z[k - 1] if k == 1 else q.sigma(k - 1, z[k - 1])).T
    return grad_W[l]


def _ganev_alg2(q, l, own: bool = False):
    """Ganev Algorithm 2 (batch first), Jacobian(σ_L, ·) as printed unless ``own``."""
    L, N = q.L, q.N
    Z = {0: q.X}
    for k in range(1, L + 1):
        Z[k] = (Z[k - 1] if k == 1 else q.sigma(k - 1, Z[k - 1])) @ q.W[k].T + q.ones_N @ q.b[k].T
    G = q.G
    jac = {(i, k): q.Jac(k if own else L, Z[k][i]) for i in range(N) for k in range(1, L + 1)}
    gZ = {L: np.vstack([G[i:i + 1] @ jac[(i, L)] for i in range(N)])}
    gW = {}
    for k in range(L, 0, -1):
        if k > 1:
            gZ[k - 1] = np.vstack([gZ[k][i:i + 1] @ q.W[k] @ jac[(i, k - 1)] for i in range(N)])
        gW[k] = gZ[k].T @ (Z[k - 1] if k == 1 else q.sigma(k - 1, Z[k - 1]))
    return gW[l]


def _ganev_alg5(q, l):
    """Ganev Algorithm 5 (batch first, combined version) as reconstructed: the batch form of Algorithm 4."""
    L, N = q.L, q.N
    A = {0: q.X}
    jac = {}
    for k in range(1, L + 1):
        Z = A[k - 1] @ q.W[k].T + q.ones_N @ q.b[k].T
        A[k] = q.sigma(k, Z)
        for i in range(N):
            jac[(i, k)] = q.Jac(k, Z[i])
    grad_A = {L: q.G}
    grad_W = {}
    for k in range(L, 0, -1):
        grad_Z = np.vstack([grad_A[k][i:i + 1] @ jac[(i, k)] for i in range(N)])
        grad_A[k - 1] = grad_Z @ q.W[k]
        grad_W[k] = grad_Z.T @ A[k - 1]
    return grad_W[l]


def _ganev_alg34(q, l, which: int, fixed: bool = False):
    """Ganev Algorithms 3 and 4 (single sample) as printed (σ_L, W_{ℓ−1}) unless ``fixed``."""
    L = q.L
    a = {0: q.x}
    jac = {}
    for k in range(1, L + 1):
        zk = q.W[k] @ a[k - 1] + q.b[k]
        a[k] = q.sigma(k, zk)
        jac[k] = q.Jac(k if fixed else L, zk)
    grad_a = {L: q.grad_C(a[L])}
    grad_W = {}
    for k in range(L, 0, -1):
        grad_z = jac[k].T @ grad_a[k]
        grad_W[k] = grad_z @ a[k - 1].T
        if k > 1 or fixed:
            grad_a[k - 1] = (q.W[k] if fixed else q.W[k - 1]).T @ grad_z
        else:  # as printed, ℓ = 1 asks for W_0
            grad_a[0] = q.W[0].T @ grad_z
    return grad_W[l]
