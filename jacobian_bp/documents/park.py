"""Park, *Gradients in a deep neural network and their Python implementations*: its checkable statements.

Convention ``park``: ``W[l]`` is ``n_l × n_{l-1}``, batch last (``n × N``), mean over the batch,
``½‖·‖²``.  Park's NumPy listings are checked as printed (parsed, never run) and, transcribed as
functions of the quantities, against the engine.
"""
from __future__ import annotations

from functools import partial
import numpy as np
import sympy

from ..claims import Claim, ExpressionClaim, ListingClaim, Setting
from .model import Document, Entry
from .shared import _BATCH, _C, _DEEP, _prop1_claim


DOCUMENT = Document("park", "Y. H. Park: Gradients in a deep neural network and their Python implementations",
                    "Park", "002_7c456f8b39eac482.txt", "park")


#: the network Park's formulas are stated for (keywords override it)
_park = partial(Setting, "park", hidden="tanh", output="softmax", loss="cross_entropy")


# Park's NumPy listings, transcribed as functions of the quantities (batch last, n × N)
def _park_softmax_code1(q, Z):
    Z_exp = q.np.exp(Z)
    Z_sum = q.np.sum(Z_exp, axis=1, keepdims=True)
    return Z_exp / Z_sum


def _park_softmax_axis0(q, Z):
    Z_exp = q.np.exp(Z)
    return Z_exp / q.np.sum(Z_exp, axis=0, keepdims=True)


def _park_code4(q, l, softmax=_park_softmax_code1, which="W"):
    """Park's Python Code 4 (forward + back_propagation), returning dW[l] or db[l]."""
    L = q.L
    W = {i: q.W[i] for i in range(1, L + 1)}
    b = {i: q.b[i] for i in range(1, L + 1)}
    X, Y = q.X, q.Y
    Z, A = {}, {0: X}
    for i in range(1, L):
        Z[i] = W[i] @ A[i - 1] + b[i]
        A[i] = q.np.maximum(0, Z[i])
    Z[L] = W[L] @ A[L - 1] + b[L]
    A[L] = softmax(q, Z[L])
    N = X.shape[1]
    dZ, dA, dW, db = {}, {}, {}, {}
    dZ[L] = 1 / N * (A[L] - Y)
    dW[L] = dZ[L] @ A[L - 1].T
    db[L] = q.np.sum(dZ[L], axis=1, keepdims=True)
    for i in range(L - 1, 0, -1):
        dA[i] = W[i + 1].T @ dZ[i + 1]
        dZ[i] = (Z[i] >= 0) * 1.0 * dA[i]
        dW[i] = dZ[i] @ A[i - 1].T
        db[i] = q.np.sum(dZ[i], axis=1, keepdims=True)
    return dW[l] if which == "W" else db[l]


_PARK_CODE1 = """import numpy as np
def sigmoid(Z):
    A = 1/(1+np.exp(-Z))
    return A
def d_sigmoid(Z):
    s = sigmoid(Z)
    return s * (1 - s)
def relu(Z):
    A = np.maximum(0,Z)
    return A
def d_relu(Z):
    return (Z>=0)*1.0
def softmax(Z):
    Z_exp = np.exp(Z)
    Z_sum = np.sum(Z_exp, axis=1, keepdims=True)
    A = Z_exp/Z_sum
    return A
"""

_PARK_CODE2 = """Z[i] = W[i] @ A[i-1] + b[i]
A[i] = relu(Z[i])
dA[i] = W[i+1].T @ dZ[i+1]
dZ[i] = d_relu(Z[i]) * dA[i]
dW[i] = dZ[i] @ A[i-1].T
db[i] = np.sum(dZ[i], axis=1, keepdims=True)
"""

_PARK_CODE3 = """# After reading in the data (X,y):
# X = matrix of shape (n, N) whose columns are samples
# y = array of shape (1,N)
# initialization
n, N = X.shape
W = np.random.rand(1,n)*0.01
b = 0
def forward_propagation(X, W, b):
    Z = W @ X + b
    A = Z # not necessary in practice
    return A
def back_propagation(X, y, W, b)
    A = forward_propagation(X, W, b)
    N = X.shape[1]
    dZ = 1/N * (A - y)
    dW = dZ @ X.T
    db = np.sum(dZ, axis=1, keepdims=True)
    return dW, db
def update_params(W, b, dW, db, learning_rate=0.1):
    W -= learning_rate * dW
    b -= learning_rate * db
    return W, b
def cost(A,y):
    return np.sum(((A-y)**2)) / (2*N)
# Gradient Descent Algorithm
# hyperparameters
n_iter = 300
learning_rate = 0.01
cost_history = []
for i in range(n_iter):
    A = forward_propagation(X, W, b)
    dW, db = backward_propagation(X, y, W, b)
    W, b = update_params(W, b, dW, db, learning_rate)
    cost_history.append(cost(A,y))
print(f'Final cost : {cost_history[-1]}')
print(f'W = {W}')
print(f'b = {b}')
"""

_PARK_CODE4 = """# multiclass classification (softmax output)
# Set A[0] = X
def forward_propagation(X, W, b):
    for i in range(1, L):
        Z[i] = W[i] @ A[i-1] + b[i]
        A[i] = relu(Z[i])
    Z[L] = W[L] @ A[L-1] + b[L]
    A[L] = softmax(Z[L])
    return Z, A
def back_propagation(X, Y, W, b)
    Z, A = forward_propagation(X, W, b)
    N = X.shape[1]
    dZ[L] = 1/N * (A[L] - Y)
    dW[L] = dZ[L] @ A[L-1].T
    db[L] = np.sum(dZ[L], axis=1, keepdims=True)
    for i in range(L-1,0,-1):
        dA[i] = Ws[i+1].T @ dZ[i+1]
        dZ[i] = d_relu(Z[i]) * dA[i]
        dW[i] = dZ[i] @ A[i-1].T
        db[i] = np.sum(dZ[i], axis=1, keepdims=True)
    return dW, db
"""


def entries() -> list[Entry]:
    E: list[Entry] = []

    def add(id_, loc, category, printed, claim, note=""):
        E.append(Entry(f"park.{id_}", "park", loc, category, printed, claim, note))

    P = _park(widths=_DEEP, symbolic=(2, 3, 2))
    Pn = _park(widths=_DEEP)
    PB = _park(widths=_DEEP, batch=_BATCH)
    PR = _park(widths=_DEEP, hidden="relu", batch=_BATCH)
    PS = _park(widths=((4, 3), (4, 5, 3), (3, 6, 4, 3), (3, 3, 3, 3)), hidden="relu", batch=_BATCH)
    add("s1.z", "§1 (l. 23)", "formula", "z[ℓ] = W[ℓ] a[ℓ−1] + b[ℓ]",
        Claim("Park §1 z[ℓ]", lambda q, l: q.W[l] @ q.a[l - 1] + q.b[l], "z", Pn))
    add("s1.g", "§1 (l. 37)", "dimension", "g[ℓ] : R^{n[ℓ−1]} → R^{n[ℓ]},  a[ℓ] = g[ℓ](z[ℓ])",
        Claim("Park §1 g[ℓ] : R^{n[ℓ−1]} → R^{n[ℓ]}", lambda q, l: (q.n[l], q.n[l - 1]), "J_act", Pn, states="shape",
              corrections=(_C("g[ℓ] : R^{n[ℓ]} → R^{n[ℓ]}", lambda q, l: (q.n[l], q.n[l])),)),
        "Compared with the shape of the activation's Jacobian (output × input dimension).")
    add("s1.W", "§1 (l. 39)", "dimension", "W[ℓ] ∈ Mat_{n[ℓ] × n[ℓ−1]}(R)",
        Claim("Park §1 W[ℓ]", lambda q, l: (q.n[l], q.n[l - 1]), "W", Pn, states="shape"))
    add("s1.J", "§1 (l. 47)", "formula", "J(W, b) = (1/N) Σ_k L(o_k, y_k)",
        Claim("Park §1 cost", lambda q: sum(q.loss_value(q.Yhat[:, [k]], q.Y[:, [k]]) for k in range(q.N)) / q.N,
              "loss", _park(widths=_DEEP, output="identity", loss="mse", batch=_BATCH), layers="none"))
    add("s2.chain", "§2 (l. 85)", "formula", "∂z/∂x = (∂z/∂y)(∂y/∂x)  (chain rule, through every layer)",
        Claim("Park §2 chain rule", lambda q: _park_chain(q), "J_x", Pn, layers="none"))
    add("s2.grad", "§2 (l. 93)", "formula", "∇_x g = [∂g/∂x]ᵀ", _prop1_claim("Park §2"))
    add("s3.relu_eps", "§3 (l. 126) and Lemma 3.1 (l. 137)", "formula",
        "relu_ε(z) = −(2/ε³)z⁴ − (3/ε²)z³ + z on [−ε, 0], relu(z) elsewhere: differentiable, relu_ε'(z) = 1 (z ≥ 0), 0 (z ≤ −ε)",
        _relu_eps_claim())
    add("s3.sigmoid", "§3 (2) (l. 149)", "formula", "σ'(z) = σ(z)(1 − σ(z))", _sigmoid_claim())
    add("code1.sigmoid", "Python Code 1 (l. 155-160)", "listing", "sigmoid(Z) = 1/(1+np.exp(−Z)); d_sigmoid(Z) = s(1 − s)",
        Claim("Park Code 1 d_sigmoid", lambda q, l: (lambda s: s * (1 - s))(1 / (1 + q.np.exp(-q.Z[l]))), "fprime_batch",
              _park(widths=_DEEP, hidden="sigmoid", output="sigmoid", loss="bce", batch=_BATCH)))
    add("code1.relu", "Python Code 1 (l. 161-165)", "listing", "relu(Z) = np.maximum(0, Z); d_relu(Z) = (Z >= 0)*1.0",
        Claim("Park Code 1 relu / d_relu", lambda q, l: (np.asarray(q.Z[l]) >= 0) * 1.0, "fprime_batch", PR,
              layers="hidden"), "d_relu agrees with (1), relu'(0) = 1 (Park's convention).")
    add("code1.softmax", "Python Code 1 (l. 166-170)", "listing",
        "softmax(Z): Z_exp = np.exp(Z); Z_sum = np.sum(Z_exp, axis=1, keepdims=True); A = Z_exp/Z_sum  (Z is m × N)",
        Claim("Park Code 1 softmax", lambda q, l: _park_softmax_code1(q, q.Z[l]), "A", PS, layers="last",
              corrections=(_C("np.sum(Z_exp, axis=0, keepdims=True): normalise each column (sample) over the classes",
                              lambda q, l: _park_softmax_axis0(q, q.Z[l])),)),
        "Park's arrays are batch-last (n × N): axis=1 sums over the samples.")
    add("code1.static", "Python Code 1 (l. 153-171)", "listing", "(the listing)", ListingClaim("Park Code 1", _PARK_CODE1))
    # §4
    add("s4.3", "§4 (3) (l. 184)", "formula", "z = Wx + b ∈ R^m  (one layer: x its input)",
        Claim("Park (3)", lambda q, l: q.W[l] @ q.a[l - 1] + q.b[l], "z", P))
    add("s4.4", "§4 (4) (l. 188-190)", "formula", "a = g(z) = [g(z_1), …, g(z_m)]ᵀ",
        Claim("Park (4)", lambda q, l: q.sigma(l, q.z[l]), "a", P, layers="hidden"))
    add("s4.5", "§4 (5) (l. 195-196)", "formula", "z_i = Σ_{j=1}^{n} w_ij x_j + b_i",
        Claim("Park (5)", lambda q, l: q.vstack([[sum(q.W[l][i, j] * q.a[l - 1][j, 0] for j in range(q.n[l - 1]))
                                                  + q.b[l][i, 0]] for i in range(q.n[l])]), "z", Pn))
    add("s4.6", "§4 (6) (l. 226-238)", "formula",
        "∂S/∂w_ij = Σ_{k=1}^{m} (∂S/∂z_k)(∂z_k/∂w_ij) = (∂S/∂z_i) x_j  (S = the loss)",
        Claim("Park (6)", lambda q, l: q.vstack([[sum(q.delta[l][k, 0] * (1.0 if k == i else 0.0) * q.a[l - 1][j, 0]
                                                      for k in range(q.n[l])) for j in range(q.n[l - 1])]
                                                    for i in range(q.n[l])]), "grad_W", Pn))
    add("thm41.7", "Thm 4.1 (7) (l. 247)", "formula", "∂z/∂x = W",
        Claim("Park (7)", lambda q, l: q.W[l], "J_z_a_prev", Pn))
    add("thm41.8", "Thm 4.1 (8) (l. 250)", "formula", "∂z/∂b = I",
        Claim("Park (8)", lambda q, l: q.I(q.n[l]), "J_local_b", Pn))
    add("thm41.9", "Thm 4.1 (9) (l. 253)", "formula", "∂a/∂z = diag(g'(z))",
        Claim("Park (9)", lambda q, l: q.diag(q.fprime[l]), "J_act", Pn, layers="hidden"))
    add("s4.dzdw", "§4 (l. 233)", "formula", "∂z_k/∂w_ij = δ_ik x_j",
        Claim("Park ∂z_k/∂w_ij", lambda q, l: _park_dz_dw(q, l), "J_local_W", Pn))
    add("s4.dim", "§4 (l. 206)", "dimension", "∇_W S is an mn × 1 matrix (before reshaping)",
        Claim("Park ∇_W S ∈ R^{mn×1}", lambda q, l: (q.n[l] * q.n[l - 1], 1), "grad_vecW", Pn, states="shape"))
    add("thm41.10", "Thm 4.1 (10), (11), (18) (l. 256, 290, 350)", "formula", "∇_{W[ℓ]} L = δ[ℓ] a[ℓ−1]ᵀ",
        Claim("Park (18)", lambda q, l: q.delta[l] @ q.a[l - 1].T, "grad_W", P))
    add("s5.dLdz", "§5.1 (l. 275)", "dimension", "∂L/∂z = (∇_z L)ᵀ ∈ M_{1×m}(R)",
        Claim("Park ∂L/∂z ∈ M_{1×m}", lambda q, l: (1, q.n[l]), "delta", Pn, form="T", states="shape"))
    add("eq12", "(12), (19) (l. 295, 353)", "formula", "∇_{b[ℓ]} L = δ[ℓ]",
        Claim("Park (19)", lambda q, l: q.delta[l], "grad_b", P))
    add("eq13", "(13), (16) (l. 304, 344)", "formula", "∇_{a[ℓ−1]} L = W[ℓ]ᵀ δ[ℓ]",
        Claim("Park (16)", lambda q, l: q.W[l].T @ q.delta[l], "grad_a", P, target_offset=-1))
    add("eq14row", "§5.1 (l. 308-309)", "formula", "δ◁ᵀ = (δᵀ W) diag(g◁'(z◁))",
        Claim("Park δ◁ᵀ row form", lambda q, l: (q.delta[l].T @ q.W[l]) @ q.diag(q.fprime[l - 1]), "delta", Pn,
              layers="from2", target_offset=-1, form="T"))
    add("eq14", "(14) (l. 314)", "formula", "δ◁ = diag(g◁'(z◁)) (Wᵀ δ)",
        Claim("Park (14)", lambda q, l: q.diag(q.fprime[l - 1]) @ (q.W[l].T @ q.delta[l]), "delta", Pn,
              layers="from2", target_offset=-1))
    add("thm51", "(15), Thm 5.1, (17) (l. 323, 329, 347)", "formula", "δ[ℓ−1] = g[ℓ−1]'(z[ℓ−1]) ∗ (W[ℓ]ᵀ δ[ℓ])",
        Claim("Park Thm 5.1", lambda q, l: q.hadamard(q.fprime[l - 1], q.W[l].T @ q.delta[l]), "delta", P,
              layers="from2", target_offset=-1))
    add("s51.delta", "§5.1 (l. 335)", "formula", "δ = g'(z) ∗ ∇_a L",
        Claim("Park δ = g'(z) ∗ ∇_a L", lambda q, l: q.hadamard(q.fprime[l], q.grad_a[l]), "delta", P,
              layers="hidden"), "Elementwise g (hidden layers); softmax is treated in §6.3.")
    # §5.2 vectorization
    add("s52.ZA", "§5.2 (l. 369)", "dimension", "Z = [z_1 … z_N], A = [a_1 … a_N] ∈ Mat_{m×N}(R)",
        Claim("Park Z, A ∈ Mat_{m×N}", lambda q, l: (q.n[l], q.N), "Z", PB, states="shape"))
    add("s52.deltak", "§5.2 (l. 381)", "dimension", "δ_k = ∇_{z_k} L ∈ Mat_{n×1}(R)",
        Claim("Park δ_k ∈ Mat_{n×1}", lambda q, l: (q.n[l - 1], 1), "delta", Pn, states="shape",
              corrections=(_C("δ_k ∈ Mat_{m×1}(R) (m = the layer's width, as Z ∈ Mat_{m×N})", lambda q, l: (q.n[l], 1)),)),
        "n and m as in §4 (W ∈ Mat_{m×n}: the layer maps Rⁿ to R^m) and l. 369.")
    add("s52.Zdim", "§5.2 (l. 393)", "dimension", "Z = [z_ij] ∈ Mat_{n×N}(R)",
        Claim("Park Z ∈ Mat_{n×N}", lambda q, l: (q.n[l - 1], q.N), "Z", PB, states="shape",
              corrections=(_C("Z ∈ Mat_{m×N}(R)", lambda q, l: (q.n[l], q.N)),)))
    add("s52.dzk", "§5.2 (l. 397)", "formula", "∇_{z_k} J = (1/N) δ_k", Claim(
        "Park ∇_{z_k} J", lambda q, l: q.Delta[l] / q.N, "dZ", PB))
    add("s52.dA", "§5.2 (l. 405)", "formula", "∇_{A◁} J = (1/N) Wᵀ Δ = Wᵀ (∇_Z J)",
        Claim("Park ∇_{A◁} J", lambda q, l: q.W[l].T @ (q.Delta[l] / q.N), "dA", PB, target_offset=-1))
    add("s52.dW", "§5.2 (l. 409-410)", "formula", "∇_W J = (1/N) Σ_k δ_k a◁kᵀ = (1/N) Δ A◁ᵀ",
        Claim("Park ∇_W J", lambda q, l: q.Delta[l] @ q.A[l - 1].T / q.N, "grad_W", PB))
    add("eq20", "(20) (l. 415)", "formula", "∇_b J = (1/N) Σ_k δ_k = Σ_k ∇_{z_k} J  (sum of the columns of ∇_Z J)",
        Claim("Park (20)", lambda q, l: q.np.sum(q.dZ[l], axis=1, keepdims=True), "grad_b", PB))
    add("thm54.21", "Thm 5.4 (21) (l. 428)", "formula", "dZ[ℓ] = (1/N) Δ[ℓ]",
        Claim("Park (21)", lambda q, l: q.Delta[l] / q.N, "dZ", PB))
    add("thm54.22", "Thm 5.4 (22) (l. 433)", "formula", "dA[ℓ−1] = W[ℓ]ᵀ dZ[ℓ]",
        Claim("Park (22)", lambda q, l: q.W[l].T @ q.dZ[l], "dA", PB, target_offset=-1))
    add("thm54.23", "Thm 5.4 (23) (l. 436)", "formula", "dZ[ℓ−1] = g'(Z[ℓ−1]) ∗ dA[ℓ−1]",
        Claim("Park (23)", lambda q, l: q.hadamard(q.dsigma(l - 1, q.Z[l - 1]), q.dA[l - 1]), "dZ", PB,
              layers="from2", target_offset=-1))
    add("thm54.24", "Thm 5.4 (24) (l. 439)", "formula", "dW[ℓ] = dZ[ℓ] A[ℓ−1]ᵀ",
        Claim("Park (24)", lambda q, l: q.dZ[l] @ q.A[l - 1].T, "grad_W", PB))
    add("thm54.25", "Thm 5.4 (25) (l. 441)", "formula", "db[ℓ] = sum of columns of dZ[ℓ]",
        Claim("Park (25)", lambda q, l: q.dZ[l] @ q.ones(q.N, 1), "grad_b", PB))
    # Code 2
    add("code2", "Python Code 2 (l. 447-457)", "listing",
        "Z[i] = W[i] @ A[i-1] + b[i]; A[i] = relu(Z[i]); dA[i] = W[i+1].T @ dZ[i+1]; dZ[i] = d_relu(Z[i]) * dA[i]; "
        "dW[i] = dZ[i] @ A[i-1].T; db[i] = np.sum(dZ[i], axis=1, keepdims=True)",
        Claim("Park Code 2 (dW, db of a relu layer)", lambda q, l: _park_code2(q, l), "grad_theta_l", PR,
              layers="hidden"), "Checked through [vec dW[i]; db[i]] (rows of W stacked) of every hidden layer.")
    add("code2.static", "Python Code 2 (l. 447-457)", "listing", "(the listing)",
        ListingClaim("Park Code 2", _PARK_CODE2, frozenset({"W", "A", "b", "Z", "dA", "dZ", "dW", "db", "i", "relu",
                                                             "d_relu", "np"})))
    # §6.1 linear regression
    lin = _park(widths=((4, 1), (6, 1)), output="identity", loss="mse")
    linB = _park(widths=((4, 1), (6, 1)), output="identity", loss="mse", batch=_BATCH)
    add("s61.dLdz", "§6.1 (l. 489)", "formula", "∂L/∂z = ∂L/∂a = (a − y)ᵀ",
        Claim("Park §6.1 ∂L/∂z", lambda q, l: (q.yhat - q.y).T, "delta", lin, layers="last", form="T"))
    add("eq27", "(27) (l. 493)", "formula", "δ = ∇_z L = a − y",
        Claim("Park (27)", lambda q, l: q.yhat - q.y, "delta", lin, layers="last"))
    add("eq28", "(28) (l. 495)", "formula", "∇_W L = δ xᵀ",
        Claim("Park (28)", lambda q, l: (q.yhat - q.y) @ q.x.T, "grad_W", lin, layers="last"))
    add("eq29", "(29) (l. 496)", "formula", "∇_b L = δ",
        Claim("Park (29)", lambda q, l: q.yhat - q.y, "grad_b", lin, layers="last"))
    add("eq30", "(30) (l. 501)", "formula", "dZ = (1/N)(A − Y)",
        Claim("Park (30)", lambda q, l: (q.Yhat - q.Y) / q.N, "dZ", linB, layers="last"))
    add("eq31", "(31) (l. 503)", "formula", "dW = dZ 𝒳ᵀ",
        Claim("Park (31)", lambda q, l: (q.Yhat - q.Y) / q.N @ q.X.T, "grad_W", linB, layers="last"))
    add("eq32", "(32) (l. 505)", "formula", "db = sum of columns of dZ",
        Claim("Park (32)", lambda q, l: q.np.sum((q.Yhat - q.Y) / q.N, axis=1, keepdims=True), "grad_b", linB,
              layers="last"))
    add("code3.grad", "Python Code 3, back_propagation (l. 528-534)", "listing",
        "dZ = 1/N * (A - y); dW = dZ @ X.T; db = np.sum(dZ, axis=1, keepdims=True)",
        Claim("Park Code 3 gradient", lambda q, l: _park_code3(q), "grad_theta_l", linB, layers="last"))
    add("code3.cost", "Python Code 3, cost (l. 539-540)", "listing", "cost(A, y) = np.sum((A − y)**2) / (2*N)",
        Claim("Park Code 3 cost", lambda q: q.np.sum((q.Yhat - q.Y) ** 2) / (2 * q.N), "loss", linB, layers="none"))
    add("code3.static", "Python Code 3 (l. 511-554)", "listing", "(the listing)",
        ListingClaim("Park Code 3", _PARK_CODE3, frozenset({"X", "y", "np"})),
        "Transcription artefacts normalised: n_{iter} → n_iter, \\{W\\} → {W}.")
    # §6.2 binary classification
    add("s62.dLdz", "§6.2 (l. 569)", "formula", "dL/dz = −y a(1−a)/a − (1−y)(−a(1−a))/(1−a) = a − y", _bce_claim())
    binS = _park(widths=((4, 1), (4, 5, 1)), output="sigmoid", loss="bce", symbolic=(2, 1), symbolic_output="sigmoid")
    binB = _park(widths=((4, 1), (4, 5, 1)), hidden="tanh", output="sigmoid", loss="bce", batch=_BATCH)
    add("eq34", "(34) (l. 576)", "formula", "∇_W L = Δ xᵀ",
        Claim("Park (34)", lambda q, l: (q.yhat - q.y) @ q.a[l - 1].T, "grad_W", binS, layers="last"),
        "For a single sample Δ is δ = a − y (the section's 'vectorized notation' uses Δ for it).")
    add("eq35", "(35) (l. 579)", "formula", "∇_b L = Δ",
        Claim("Park (35)", lambda q, l: q.yhat - q.y, "grad_b", binS, layers="last"))
    add("eq36", "(36) (l. 584)", "formula", "dZ[L] = (1/N)(A[L] − Y)",
        Claim("Park (36)", lambda q, l: (q.Yhat - q.Y) / q.N, "dZ", binB, layers="last"))
    add("eq37", "(37) (l. 587)", "formula", "dW[L] = dZ[L] A[L−1]ᵀ",
        Claim("Park (37)", lambda q, l: (q.Yhat - q.Y) / q.N @ q.A[l - 1].T, "grad_W", binB, layers="last"))
    add("eq38", "(38) (l. 590)", "formula", "db[L] = sum of columns of dZ[L]",
        Claim("Park (38)", lambda q, l: ((q.Yhat - q.Y) / q.N) @ q.ones(q.N, 1), "grad_b", binB, layers="last"))
    # §6.3 softmax
    PSm = _park(widths=((4, 3), (4, 5, 3), (3, 6, 4, 3), (3, 2, 3), (3, 3, 3, 3)))
    add("s63.softmax", "§6.3 (l. 594)", "formula", "o = s(z) = [ e^{z_i} / Σ_{k=1}^{n} e^{z_k} ] ∈ M_{m×1}(R)",
        Claim("Park §6.3 softmax", lambda q, l: _park_softmax_sum_to(q, q.n[l - 1]), "a", PSm, layers="last",
              corrections=(_C("o = [ e^{z_i} / Σ_{k=1}^{m} e^{z_k} ]", lambda q, l: _park_softmax_sum_to(q, q.n[l])),)),
        "n is the layer's input width (Figure 5); the classes are m.")
    add("eq39", "(39) (l. 611)", "formula", "∂o/∂z = [o_i(δ_ij − o_j)]",
        Claim("Park (39)", lambda q, l: q.diag(q.yhat) - q.yhat @ q.yhat.T, "J_act", PSm, layers="last"))
    for key, loc, printed, formula, corr in _park_ce_steps():
        add(key, loc, "formula", printed, ExpressionClaim(f"Park §6.3 {printed}", formula, _ce_truth(), corrections=corr))
    for key, st in (("identity", _park(widths=((4, 3), (4, 5, 3)), output="identity", loss="mse", symbolic=(2, 2),
                                       symbolic_output="identity")),
                    ("sigmoid", _park(widths=((4, 1), (4, 5, 2)), output="sigmoid", loss="bce")),
                    ("softmax", _park(widths=((4, 3), (4, 5, 3))))):
        add(f"thm61.{key}", "Thm 6.1 (l. 627-638)", "formula", f"δ = ∇_z L = o − y  ({key} output)",
            Claim(f"Park Thm 6.1 ({key})", lambda q, l: q.yhat - q.y, "delta", st, layers="last"))
    add("code4", "Python Code 4 (l. 642-677)", "listing", "forward_propagation / back_propagation with Code 1's softmax",
        Claim("Park Code 4 gradients", lambda q, l: _park_code4(q, l), "grad_W", PS,
              corrections=(_C("softmax with np.sum(…, axis=0, keepdims=True)",
                              lambda q, l: _park_code4(q, l, softmax=_park_softmax_axis0)),)),
        "Ws[i+1] read as W[i+1] (the static entry reports the name).")
    add("code4.static", "Python Code 4 (l. 642-677)", "listing", "(the listing)",
        ListingClaim("Park Code 4", _PARK_CODE4,
                     frozenset({"X", "Y", "W", "b", "L", "Z", "A", "dZ", "dA", "dW", "db", "np", "relu", "d_relu",
                                "softmax"})),
        "The two printed blocks are joined as one function body (the page break separated them).")
    return E


def _park_chain(q):
    P = q.W[q.L]
    for k in range(q.L - 1, 0, -1):
        P = P @ q.diag(q.fprime[k]) @ q.W[k]
    return P


def _park_dz_dw(q, l):
    """Matrix of ∂z_k/∂w_ij = δ_ik x_j, columns in Park's vec order (rows of W stacked)."""
    m, n = q.n[l], q.n[l - 1]
    x = q.a[l - 1]
    J = np.zeros((m, m * n))
    for k in range(m):
        for i in range(m):
            for j in range(n):
                J[k, i * n + j] = (1.0 if i == k else 0.0) * x[j, 0]
    return J


def _park_code2(q, i):
    dA = q.W[i + 1].T @ q.dZ[i + 1]
    dZ = (np.asarray(q.Z[i]) >= 0) * 1.0 * dA
    dW = dZ @ q.A[i - 1].T
    db = q.np.sum(dZ, axis=1, keepdims=True)
    return np.vstack([dW.reshape(-1, 1), db])


def _park_code3(q):
    X, y, W, b = q.X, q.Y, q.W[1], q.b[1]
    A = W @ X + b
    N = X.shape[1]
    dZ = 1 / N * (A - y)
    dW = dZ @ X.T
    db = q.np.sum(dZ, axis=1, keepdims=True)
    return np.vstack([dW.reshape(-1, 1), db])


def _park_softmax_sum_to(q, n):
    z = q.z[q.L]
    m = z.shape[0]
    den = sum(np.exp(z[k, 0]) for k in range(n))
    return np.array([[np.exp(z[i, 0]) / den] for i in range(m)])


def _relu_eps_claim() -> ExpressionClaim:
    z = sympy.Symbol("z", real=True)
    eps = sympy.Symbol("epsilon", positive=True)
    p = -2 / eps ** 3 * z ** 4 - 3 / eps ** 2 * z ** 3 + z
    dp = sympy.diff(p, z)
    claimed = sympy.Matrix([p.subs(z, -eps), p.subs(z, 0), dp.subs(z, -eps), dp.subs(z, 0)])
    # relu's values at −ε and 0, and its one-sided derivatives there (0 to the left of −ε, 1 to the right of 0)
    truth = sympy.Matrix([0, 0, 0, 1])
    return ExpressionClaim("Park relu_ε (values and one-sided derivatives at the junctions)", claimed, truth,
                           symbols=(eps,))


def _sigmoid_claim() -> ExpressionClaim:
    z = sympy.Symbol("z", real=True)
    s = 1 / (1 + sympy.exp(-z))
    return ExpressionClaim("Park (2) σ' = σ(1−σ)", s * (1 - s), sympy.diff(s, z), symbols=(z,))


def _bce_claim() -> ExpressionClaim:
    z, y = sympy.symbols("z y", real=True)
    a = 1 / (1 + sympy.exp(-z))
    Lz = -(y * sympy.log(a) + (1 - y) * sympy.log(1 - a))
    da = a * (1 - a)
    printed = -y * da / a - (1 - y) * (-da) / (1 - a)
    return ExpressionClaim("Park §6.2 dL/dz", sympy.Matrix([printed, a - y]), sympy.Matrix([sympy.diff(Lz, z)] * 2),
                           symbols=(z, y))


def _ce_symbols():
    z = sympy.symbols("z_1:4", real=True)
    y1, y2 = sympy.symbols("y_1 y_2", real=True)
    y = [y1, y2, 1 - y1 - y2]  # Σ y_i = 1 (one-hot labels are a special case)
    den = sum(sympy.exp(t) for t in z)
    o = [sympy.exp(t) / den for t in z]
    return z, y, o


def _ce_truth() -> sympy.Matrix:
    z, y, o = _ce_symbols()
    Lz = -sum(yi * sympy.log(oi) for yi, oi in zip(y, o))
    return sympy.Matrix([sympy.diff(Lz, zj) for zj in z])


def _park_ce_steps():
    z, y, o = _ce_symbols()
    m = 3
    dlog = lambda i, j: sympy.diff(sympy.log(o[i]), z[j])  # noqa: E731
    do = lambda i, j: o[i] * ((1 if i == j else 0) - o[j])  # noqa: E731
    s1 = sympy.Matrix([-sum(y[i] * dlog(i, j) for i in range(m)) for j in range(m)])
    s2 = sympy.Matrix([-sum(o[i] * (1 / o[i]) * sympy.diff(o[i], z[j]) for i in range(m)) for j in range(m)])
    s2c = sympy.Matrix([-sum(y[i] * (1 / o[i]) * sympy.diff(o[i], z[j]) for i in range(m)) for j in range(m)])
    s3 = sympy.Matrix([-sum(o[i] * (1 / o[i]) * do(i, j) for i in range(m)) for j in range(m)])
    s3c = sympy.Matrix([-sum(y[i] * (1 / o[i]) * do(i, j) for i in range(m)) for j in range(m)])
    s4 = sympy.Matrix([-sum(o[i] * ((1 if i == j else 0) - o[j]) for i in range(m)) for j in range(m)])
    s4c = sympy.Matrix([-sum(y[i] * ((1 if i == j else 0) - o[j]) for i in range(m)) for j in range(m)])
    s5 = sympy.Matrix([sum(y[i] * o[j] for i in range(m) if i != j) + y[j] * (-1 + o[j]) for j in range(m)])
    s6 = sympy.Matrix([sum(y) * o[j] - y[j] for j in range(m)])
    s7 = sympy.Matrix([o[j] - y[j] for j in range(m)])
    return [
        ("s63.ce1", "§6.3 (l. 619), first equality", "∂L/∂z_j = −Σ_i y_i ∂log(o_i)/∂z_j", s1, ()),
        ("s63.ce2", "§6.3 (l. 619), second equality", "∂L/∂z_j = −Σ_i o_i (1/o_i) ∂o_i/∂z_j", s2,
         (_C("−Σ_i y_i (1/o_i) ∂o_i/∂z_j", s2c),)),
        ("s63.ce3", "§6.3 (l. 620), first equality", "∂L/∂z_j = −Σ_i o_i (1/o_i) · o_i(δ_ij − o_j)", s3,
         (_C("−Σ_i y_i (1/o_i) · o_i(δ_ij − o_j)", s3c),)),
        ("s63.ce4", "§6.3 (l. 620), second equality", "∂L/∂z_j = −Σ_i o_i (δ_ij − o_j)", s4,
         (_C("−Σ_i y_i (δ_ij − o_j)", s4c),)),
        ("s63.ce5", "§6.3 (l. 621)", "∂L/∂z_j = Σ_{i≠j} y_i o_j + y_j(−1 + o_j)", s5, ()),
        ("s63.ce6", "§6.3 (l. 621)", "∂L/∂z_j = (Σ_i y_i) o_j − y_j = o_j − y_j", s6, ()),
        ("s63.ce7", "§6.3 (l. 625)", "δ = o − y", s7, ()),
    ]
