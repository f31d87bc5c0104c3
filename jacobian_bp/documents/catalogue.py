r"""Catalogue of the checkable statements of the four source documents.

Every formula, table entry, algorithm line, example matrix, code listing and
dimension statement of

* ``damadi`` -- Damadi, Moharrer, Cham, *The backpropagation algorithm for a math student*;
* ``ganev`` -- Ganev, *Notes on backpropagation*;
* ``park`` -- Park, *Gradients in a deep neural network and their Python implementations*;
* ``mml`` -- CSE463 lecture slides (Abd El Munim) with excerpts of *Mathematics for Machine
  Learning* ch. 5,

that can be checked is encoded here as a :mod:`jacobian_bp.claims` claim *under its own
document's convention* (``damadi``: ``z = Wᵀa + b``, columns of ``W`` stacked, θ blocks
``[L … 1]``; ``ganev``: ``z = Wa + b``, batch first, sum; ``park``: batch last, mean, ``½‖·‖²``;
``mml``: row gradients, column-major vec), with its citation (document, section, line
of the seed text, the printed formula).  The verdict is *never* typed in: it is computed
by :func:`jacobian_bp.claims.check` each time (:func:`run_catalogue`).  Entries whose
printed form fails carry the corrected formula as a :class:`~jacobian_bp.claims.Correction`,
which the checker verifies too.

Encoding rules
--------------
* One entry isolates one statement; where a printed line contains several slips, each
  slip gets its own entry (the others corrected), plus one entry for the line as printed.
* Transcription artefacts of the text extraction (``n_{iter}`` in a listing, ``\{W\}``) are
  normalised and said so in the entry's note; everything else is taken as printed.
* Prose statements that are not formulas (run-time claims, historical remarks) are not
  encoded.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, Callable

import numpy as np
import sympy

from ..claims.core import Claim, CheckResult, Correction, ExpressionClaim, ListingClaim, Setting, check

__all__ = ["Document", "DOCUMENTS", "Entry", "catalogue", "run_catalogue", "result", "entry"]


@dataclass(frozen=True)
class Document:
    """One of the four source documents."""

    key: str
    title: str
    short: str
    seed_file: str
    convention: str


DOCUMENTS: dict[str, Document] = {
    "damadi": Document("damadi", "S. Damadi, G. Moharrer, M. Cham: The backpropagation algorithm for a math student",
                       "Damadi et al.", "000_982746a94e14742a.txt", "damadi"),
    "ganev": Document("ganev", "I. Ganev: Notes on backpropagation", "Ganev", "001_79528ccd9fe71acc.txt", "ganev"),
    "park": Document("park", "Y. H. Park: Gradients in a deep neural network and their Python implementations",
                     "Park", "002_7c456f8b39eac482.txt", "park"),
    "mml": Document("mml", "H. Abd El Munim: CSE463 Backpropagation slides, with Mathematics for Machine Learning ch. 5",
                    "CSE463 slides / MML", "003_5c7989aa3e8fd706.txt", "mml"),
}

KINDS = ("formula", "table", "algorithm", "example", "listing", "dimension")


@dataclass
class Entry:
    """One checkable statement of a document.

    Attributes
    ----------
    id : str
        Stable identifier, ``"<document>.<place>"``.
    document : str
        Key of :data:`DOCUMENTS`.
    location : str
        Section / equation / algorithm line and the line of the seed text (``l. 55``).
    kind : str
        ``formula``, ``table``, ``algorithm``, ``example``, ``listing`` or ``dimension``.
    printed : str
        The statement as printed (plain text).
    claim : Claim, ExpressionClaim or ListingClaim
        Its encoding under the document's convention.
    note : str
        How it was read (ambiguities, transcription artefacts).
    """

    id: str
    document: str
    location: str
    kind: str
    printed: str
    claim: Any
    note: str = ""

    def __post_init__(self):
        if self.document not in DOCUMENTS:
            raise ValueError(f"entry {self.id!r}: unknown document {self.document!r}")
        if self.kind not in KINDS:
            raise ValueError(f"entry {self.id!r}: kind must be one of {KINDS}, received {self.kind!r}")

    def check(self) -> CheckResult:
        """Run the checker on this entry's claim."""
        return check(self.claim)

    @property
    def corrected(self) -> str:
        """The corrected formula text (the first claim-specific correction), or ``""``."""
        corr = getattr(self.claim, "corrections", ())
        return corr[0].description if corr else ""


# =========================================================================== shared helpers
def _C(desc: str, formula: Callable | None = None, target: str | None = None, setting: Setting | None = None):
    return Correction(desc, formula, target, setting)


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


# Ganev / Park / MML: W[l] is n_l × n_{l-1}, z = Wa + b
def _g_forward_z(q, l):
    prev = q.x if l == 1 else q.sigma(l - 1, q.z[l - 1])  # σ_0 = identity
    return q.W[l] @ prev + q.b[l]


def _rows(q, M, fn):
    """Apply ``fn(i, row_i)`` to the rows of a batch-first matrix and stack the resulting rows."""
    return q.vstack([fn(i, M[i:i + 1, :]) for i in range(M.shape[0])])


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


# =========================================================================== settings
_W2 = ((4, 5, 3), (3, 6, 2), (4, 4, 4))
_W3 = ((6, 5, 4, 3), (4, 3, 5, 2), (3, 3, 3, 3))
_DEEP = ((4, 5, 3), (3, 6, 4, 2), (3, 3, 3, 3), (5, 4, 6, 3, 2))
_BATCH = (3, 4)


#: each document's default setting (its convention and the network its formulas are stated for)
_DEFAULTS = {
    "damadi": dict(hidden="tanh", output="softmax", loss="cross_entropy"),
    "ganev": dict(hidden="tanh", output="sigmoid", loss="mse"),
    "park": dict(hidden="tanh", output="softmax", loss="cross_entropy"),
    "mml": dict(hidden="sigmoid", output="sigmoid", loss="mse"),
}


def _setting(convention: str, **kw) -> Setting:
    """The document's default :class:`Setting` with ``kw`` overriding it."""
    return Setting(**{"convention": convention, **_DEFAULTS[convention], **kw})


_damadi = partial(_setting, "damadi")
_ganev = partial(_setting, "ganev")
_park = partial(_setting, "park")
_mml = partial(_setting, "mml")


# =========================================================================== conv helpers (Damadi §3.5)
def _sym_grid(prefix: str, m: int, n: int) -> sympy.Matrix:
    """``m × n`` matrix of symbols numbered row by row: ``prefix_1 … prefix_{mn}``."""
    return sympy.Matrix(m, n, sympy.symbols(f"{prefix}_1:{m * n + 1}", real=True))


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


# =========================================================================== Damadi
def _damadi_entries() -> list[Entry]:
    E: list[Entry] = []
    doc = "damadi"

    def add(id_, loc, kind, printed, claim, note=""):
        E.append(Entry(f"damadi.{id_}", doc, loc, kind, printed, claim, note))

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
              kind="shape"))
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
            Claim(f"Damadi Table 2 {key} parameters", dims, "grad_theta", st, layers="none", kind="shape"))
    # --- §3.2
    two = _damadi(widths=((4, 5, 3), (3, 6, 2)))
    add("s32.delta", "§3.2 (l. 171)", "formula", "∇_{z[2]} ℓ(y, f[2](z[2])) = −(y − ŷ)",
        Claim("Damadi §3.2 delta", lambda q, l: _minus_y_minus_yhat(q), "delta", two, layers="last"))
    add("s32.J2", "§3.2 (l. 179)", "example", "J_{W[2],b[2]}(z[2](θ)) = [I ⊗ (a[1])ᵀ  I_{3×3}]",
        Claim("Damadi §3.2 J_{W[2],b[2]} z[2]", lambda q, l: _d_block(q, 2, q.a[1]), "J_theta_l", two, layers="last"))
    add("s32.J2dim", "§3.2 (l. 179)", "dimension", "J_{W[2],b[2]}(z[2](θ)) ∈ R^{3×18}",
        Claim("Damadi §3.2 ∈ R^{3×18}", lambda q, l: (3, 18), "J_theta_l", _damadi(widths=((4, 5, 3),)),
              layers="last", kind="shape"))
    add("s32.a1dim", "§3.2 (l. 181)", "dimension", "a[1] ∈ R⁵ because W[2] ∈ R^{5×3}",
        Claim("Damadi §3.2 W[2] ∈ R^{5×3}", lambda q, l: (5, 3), "W", _damadi(widths=((4, 5, 3),)),
              layers=lambda L: [2], kind="shape"))
    add("s32.J1", "§3.2 (l. 183-187)", "example",
        "J_{W[1],b[1]}(z[2](θ)) = (W[2])ᵀ J_{z[1]}(f[1](z[1])) [I ⊗ xᵀ  I_{5×5}]",
        Claim("Damadi §3.2 J_{W[1],b[1]} z[2]", lambda q, l: q.W[2].T @ q.Jact[1] @ _d_block(q, 1, q.x),
              "J_theta_l", two, layers=lambda L: [1]))
    add("s32.J1dim", "§3.2 (l. 187)", "dimension", "J_{W[1],b[1]}(z[2](θ)) ∈ R^{3×25}",
        Claim("Damadi §3.2 ∈ R^{3×25}", lambda q, l: (3, 25), "J_theta_l", _damadi(widths=((4, 5, 3),)),
              layers=lambda L: [1], kind="shape"))
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
              _damadi(widths=((784, 100, 300, 10),), seeds=(0,)), layers=lambda L: [1, 2], kind="shape",
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


def _prop1_claim(name: str) -> ExpressionClaim:
    x1, x2, x3 = sympy.symbols("x_1:4", real=True)
    f = x1 ** 2 * x2 + sympy.sin(x3) * x1 + sympy.exp(x2 * x3)
    xs = sympy.Matrix([x1, x2, x3])
    return ExpressionClaim(name, sympy.Matrix([f]).jacobian(xs).T,
                           sympy.Matrix([sympy.diff(f, v) for v in xs]), symbols=(x1, x2, x3))


# =========================================================================== Ganev
def _ganev_entries() -> list[Entry]:
    E: list[Entry] = []

    def add(id_, loc, kind, printed, claim, note=""):
        E.append(Entry(f"ganev.{id_}", "ganev", loc, kind, printed, claim, note))

    G = _ganev(widths=_DEEP, symbolic=(2, 3, 2))
    Gn = _ganev(widths=_DEEP)
    GB = _ganev(widths=_DEEP, batch=_BATCH)
    GS = _ganev(widths=_DEEP, output="softmax", loss="cross_entropy")
    add("s15.grad", "§1.5 (l. 30)", "formula", "∇_x F = (dF_x)ᵀ  (F: Rⁿ → R)", _prop1_claim("Ganev §1.5"))
    add("s21.W", "§2.1 (l. 36-40)", "dimension", "W_ℓ ∈ R^{n_ℓ × n_{ℓ−1}}",
        Claim("Ganev §2.1 W_ℓ", lambda q, l: (q.n[l], q.n[l - 1]), "W", Gn, kind="shape"))
    add("s21.b", "§2.1 (l. 36-40)", "dimension", "b_ℓ ∈ R^{n_ℓ}",
        Claim("Ganev §2.1 b_ℓ", lambda q, l: (q.n[l], 1), "b", Gn, kind="shape"))
    add("s23.F", "§2.3 (l. 46)", "formula", "F_{θ,ℓ}(x) = W_ℓ @ (σ_{ℓ−1} ∘ F_{θ,ℓ−1}(x)) + b_ℓ,  F_{θ,0}(x) = x, σ_0 = id",
        Claim("Ganev §2.3 partial feedforward", _g_forward_z, "z", G))
    add("s23.Fθ", "§2.3 (l. 48)", "formula", "F_θ = σ_L ∘ F_{θ,L}",
        Claim("Ganev §2.3 feedforward", lambda q: q.sigma(q.L, q.z[q.L]), "yhat", G, layers="none"))
    add("s24.partial", "§2.4 (l. 57)", "formula",
        "L_ℓ(z) = C(σ_L(z), y) for ℓ = L;  L_{ℓ+1}(W_{ℓ+1} σ_ℓ(z) + b_{ℓ+1}) otherwise",
        Claim("Ganev §2.4 partial loss L_ℓ(z_ℓ) = loss", lambda q, l: _partial_loss(q, l), "loss", Gn))
    add("s31.Jac", "§3.1 (l. 70)", "dimension", "Jac_ℓ := d(σ_ℓ)_{z_ℓ} ∈ R^{n_ℓ × n_ℓ}",
        Claim("Ganev §3.1 Jac_ℓ", lambda q, l: (q.n[l], q.n[l]), "J_act", Gn, kind="shape"))
    add("prop31.eq1", "Prop. 3.1 (3.1) (l. 76)", "formula", "∇_{z_L} L = Jac_Lᵀ @ ∇_ŷ C(−, y)",
        Claim("Ganev (3.1)", lambda q, l: q.Jac(q.L, q.z[q.L]).T @ q.grad_C(q.yhat), "delta", G, layers="last"))
    add("prop31.eq2", "Prop. 3.1 (3.2) (l. 79)", "formula", "∇_{z_{ℓ−1}} L = Jac_{ℓ−1}ᵀ @ W_ℓᵀ @ ∇_{z_ℓ} L",
        Claim("Ganev (3.2)", lambda q, l: q.Jac(l - 1, q.z[l - 1]).T @ q.W[l].T @ q.delta[l], "delta", G,
              layers="from2", target_offset=-1))
    add("prop31.eq3", "Prop. 3.1 (3.3) (l. 82)", "formula", "∇_{W_ℓ} L = ∇_{z_ℓ} L @ a_{ℓ−1}^1",
        Claim("Ganev (3.3) as transcribed", lambda q, l: q.delta[l] @ q.a[l - 1], "grad_W", G,
              corrections=(_C("∇_{z_ℓ} L @ a_{ℓ−1}ᵀ", lambda q, l: q.delta[l] @ q.a[l - 1].T),)),
        "The seed text reads a_{ℓ−1}^1 (probably ᵀ misread in the transcription; the proof has a_{ℓ−1}ᵀ).")
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
        Claim("Ganev §4.2 σ_ℓ : R^{n_L} → R^{n_L}", lambda q, l: (q.n[q.L], q.n[q.L]), "J_act", Gn, kind="shape",
              corrections=(_C("σ_ℓ : R^{n_ℓ} → R^{n_ℓ}", lambda q, l: (q.n[l], q.n[l])),)))
    add("s42.C", "§4.2 (l. 154-158)", "formula", "L = C̃(F̃_θ(X), Y) = Σ_i C(Ŷ[i], Y[i])",
        Claim("Ganev §4.2 extended cost", lambda q: sum(q.loss_value(q.Yhat[i], q.Y[i]) for i in range(q.N)), "loss",
              GB, layers="none"))
    add("s42.dim", "§4.2 (l. 160)", "dimension", "∇_{Z_ℓ} L is an N × n_ℓ matrix",
        Claim("Ganev §4.2 ∇_{Z_ℓ} L", lambda q, l: (q.N, q.n[l]), "dZ", GB, kind="shape"))
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
              target_offset=-1, kind="shape",
              corrections=(_C("∇_{Z_ℓ} L @ W_ℓ ∈ R^{N × n_{ℓ−1}}", lambda q, l: (q.dZ[l] @ q.W[l]).shape),)),
        "Possibly '@' typeset as '⊗'; as printed, the Kronecker product is N n_ℓ × n_ℓ n_{ℓ−1}.")
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


# =========================================================================== Park
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


def _park_entries() -> list[Entry]:
    E: list[Entry] = []

    def add(id_, loc, kind, printed, claim, note=""):
        E.append(Entry(f"park.{id_}", "park", loc, kind, printed, claim, note))

    P = _park(widths=_DEEP, symbolic=(2, 3, 2))
    Pn = _park(widths=_DEEP)
    PB = _park(widths=_DEEP, batch=_BATCH)
    PR = _park(widths=_DEEP, hidden="relu", batch=_BATCH)
    PS = _park(widths=((4, 3), (4, 5, 3), (3, 6, 4, 3), (3, 3, 3, 3)), hidden="relu", batch=_BATCH)
    add("s1.z", "§1 (l. 23)", "formula", "z[ℓ] = W[ℓ] a[ℓ−1] + b[ℓ]",
        Claim("Park §1 z[ℓ]", lambda q, l: q.W[l] @ q.a[l - 1] + q.b[l], "z", Pn))
    add("s1.g", "§1 (l. 37)", "dimension", "g[ℓ] : R^{n[ℓ−1]} → R^{n[ℓ]},  a[ℓ] = g[ℓ](z[ℓ])",
        Claim("Park §1 g[ℓ] : R^{n[ℓ−1]} → R^{n[ℓ]}", lambda q, l: (q.n[l], q.n[l - 1]), "J_act", Pn, kind="shape",
              corrections=(_C("g[ℓ] : R^{n[ℓ]} → R^{n[ℓ]}", lambda q, l: (q.n[l], q.n[l])),)),
        "Compared with the shape of the activation's Jacobian (output × input dimension).")
    add("s1.W", "§1 (l. 39)", "dimension", "W[ℓ] ∈ Mat_{n[ℓ] × n[ℓ−1]}(R)",
        Claim("Park §1 W[ℓ]", lambda q, l: (q.n[l], q.n[l - 1]), "W", Pn, kind="shape"))
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
    add("thm41.7", "Thm 4.1 (7) (l. 247)", "formula", "∂z/∂x = W",
        Claim("Park (7)", lambda q, l: q.W[l], "J_z_a_prev", Pn))
    add("thm41.8", "Thm 4.1 (8) (l. 250)", "formula", "∂z/∂b = I",
        Claim("Park (8)", lambda q, l: q.I(q.n[l]), "J_local_b", Pn))
    add("thm41.9", "Thm 4.1 (9) (l. 253)", "formula", "∂a/∂z = diag(g'(z))",
        Claim("Park (9)", lambda q, l: q.diag(q.fprime[l]), "J_act", Pn, layers="hidden"))
    add("s4.dzdw", "§4 (l. 233)", "formula", "∂z_k/∂w_ij = δ_ik x_j",
        Claim("Park ∂z_k/∂w_ij", lambda q, l: _park_dz_dw(q, l), "J_local_W", Pn))
    add("s4.dim", "§4 (l. 206)", "dimension", "∇_W S is an mn × 1 matrix (before reshaping)",
        Claim("Park ∇_W S ∈ R^{mn×1}", lambda q, l: (q.n[l] * q.n[l - 1], 1), "grad_vecW", Pn, kind="shape"))
    add("thm41.10", "Thm 4.1 (10), (11), (18) (l. 256, 290, 350)", "formula", "∇_{W[ℓ]} L = δ[ℓ] a[ℓ−1]ᵀ",
        Claim("Park (18)", lambda q, l: q.delta[l] @ q.a[l - 1].T, "grad_W", P))
    add("s5.dLdz", "§5.1 (l. 275)", "dimension", "∂L/∂z = (∇_z L)ᵀ ∈ M_{1×m}(R)",
        Claim("Park ∂L/∂z ∈ M_{1×m}", lambda q, l: (1, q.n[l]), "delta", Pn, form="T", kind="shape"))
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
        Claim("Park Z, A ∈ Mat_{m×N}", lambda q, l: (q.n[l], q.N), "Z", PB, kind="shape"))
    add("s52.deltak", "§5.2 (l. 381)", "dimension", "δ_k = ∇_{z_k} L ∈ Mat_{n×1}(R)",
        Claim("Park δ_k ∈ Mat_{n×1}", lambda q, l: (q.n[l - 1], 1), "delta", Pn, kind="shape",
              corrections=(_C("δ_k ∈ Mat_{m×1}(R) (m = the layer's width, as Z ∈ Mat_{m×N})", lambda q, l: (q.n[l], 1)),)),
        "n and m as in §4 (W ∈ Mat_{m×n}: the layer maps Rⁿ to R^m) and l. 369.")
    add("s52.Zdim", "§5.2 (l. 393)", "dimension", "Z = [z_ij] ∈ Mat_{n×N}(R)",
        Claim("Park Z ∈ Mat_{n×N}", lambda q, l: (q.n[l - 1], q.N), "Z", PB, kind="shape",
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


# =========================================================================== MML / slides
def _mml_entries() -> list[Entry]:
    E: list[Entry] = []

    def add(id_, loc, kind, printed, claim, note=""):
        E.append(Entry(f"mml.{id_}", "mml", loc, kind, printed, claim, note))

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
              "grad_theta", M, layers="none", form="T", kind="shape"))
    for key, loc, printed, claim in _mml_calculus_claims():
        add(key, loc, "formula", printed, claim)
    add("ex512", "MML Example 5.12 (5.86)-(5.92) (l. 228-256)", "formula",
        "f = Ax: df/dA ∈ R^{M×(M×N)}, ∂f_i/∂A_{i,:} = xᵀ, ∂f_i/∂A_{k≠i,:} = 0ᵀ", _mml_ex512())
    add("5.6.index", "MML §5.6.1 (l. 285, l. 291-295)", "formula",
        "gradient w.r.t. all model parameters A_j, b_j for j = 1, …, K  (θ = {A_0, b_0, …, A_{K−1}, b_{K−1}})",
        Claim("MML §5.6.1 parameters A_j, j = 1..K", lambda q, l: q.Ai[l].shape, "W", M, kind="shape",
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


# =========================================================================== public API
@lru_cache(maxsize=1)
def _all_entries() -> tuple[Entry, ...]:
    entries = _damadi_entries() + _ganev_entries() + _park_entries() + _mml_entries()
    ids = [e.id for e in entries]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise RuntimeError(f"duplicate catalogue ids: {sorted(dup)}")
    return tuple(entries)


def catalogue(document: str | None = None) -> list[Entry]:
    """The catalogue entries, optionally of one document (``damadi``, ``ganev``, ``park``, ``mml``)."""
    if document is not None and document not in DOCUMENTS:
        raise ValueError(f"catalogue: unknown document {document!r}; known: {', '.join(DOCUMENTS)}")
    return [e for e in _all_entries() if document is None or e.document == document]


def entry(entry_id: str) -> Entry:
    """The entry with this id."""
    for e in _all_entries():
        if e.id == entry_id:
            return e
    raise KeyError(f"catalogue has no entry {entry_id!r}")


_RESULTS: dict[str, CheckResult] = {}


def result(e: Entry, fresh: bool = False) -> CheckResult:
    """The checker's result for an entry, computed on first use in this process (``fresh``: recompute)."""
    if fresh or e.id not in _RESULTS:
        _RESULTS[e.id] = e.check()
    return _RESULTS[e.id]


def run_catalogue(entries: list[Entry] | None = None, fresh: bool = False) -> list[tuple[Entry, CheckResult]]:
    """Check every entry: the verdicts are computed by :func:`jacobian_bp.claims.check`, once per process
    unless ``fresh``."""
    entries = catalogue() if entries is None else entries
    return [(e, result(e, fresh)) for e in entries]
