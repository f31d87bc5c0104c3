"""The catalogue's verdicts, produced here by running the checker, pinned to independent reasoning.

``EXPECTED`` lists every statement that does NOT hold, with the verdict worked out by hand
from the documents (see the comments) before the checker was run; every other entry must
hold.  A regression in the checker, in the engine's truths or in an encoding changes a
verdict and fails this test.  Key diagnoses are pinned too, every stated correction of a
failing entry must be verified by the checker, and the convolution truths are compared with
SciPy's correlation (an oracle independent of both the catalogue and jacobian_bp.backend.toeplitz).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import sympy

from jacobian_bp.documents.catalogue import DOCUMENTS, _conv_truth_matrix, _damadi_printed_matrix, catalogue, entry, run_catalogue
from jacobian_bp.claims import FAILS, HOLDS, ILL_TYPED, Mistake

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"

EXPECTED = {
    # Damadi Alg. 1: a[l] for a[l-1] in the Kronecker blocks (shape error, n_l^2 vs n_{l-1} n_l); W[L] alone in
    # the chain (ill-typed once L >= 3 with unequal widths); z[l] on the left (n_l rows vs n_L); z[2] in line 7.
    "damadi.alg1.l3.kron": ILL_TYPED, "damadi.alg1.l3.chain": ILL_TYPED, "damadi.alg1.l3.lhs": ILL_TYPED,
    "damadi.alg1.l4": ILL_TYPED, "damadi.alg1.l7": ILL_TYPED,
    # §3.1: (W_{•j})ᵀ + b_j misses x (a row, not a number); the gradient misses the bias rows (12 vs 15 entries)
    "damadi.s31.z": ILL_TYPED, "damadi.s31.grad": ILL_TYPED,
    # Table 2: +2[x;1](y−ŷ) has the wrong sign (d/dθ (y−ŷ)² = −2[x;1](y−ŷ)); σ(θᵀx) with θ ∈ R^{n+1}, x ∈ R^n
    "damadi.table2.slr.grad": FAILS, "damadi.table2.mlr.grad": FAILS,
    "damadi.table2.bin.pred": ILL_TYPED, "damadi.table2.log.pred": ILL_TYPED,
    # §3.2: ∇_{z[3]} in a two-layer network; the block gradient stacks layer 1 first, but θ = [θ[2]; θ[1]]
    "damadi.s32.grad.lhs": ILL_TYPED, "damadi.s32.grad": FAILS,
    # §3.3: "100 then 300 units" vs the gradient's I_300 (b[1]) and I_100 (b[2]); a[2], a[3] for a[1], a[2];
    # an extra (J_{z[3]}f[3])ᵀ W[3] in the last block
    "damadi.s33.widths": FAILS, "damadi.s33.grad.b2": ILL_TYPED, "damadi.s33.grad.b3": ILL_TYPED,
    "damadi.s33.grad": ILL_TYPED,
    # §3.5: a single Toeplitz band is wrong when the output has two rows or more; rows 3-4 of the example;
    # Vec(B) stacks columns while the output is stacked by rows
    "damadi.prop2": FAILS, "damadi.prop2.example": FAILS, "damadi.prop3.untied": FAILS,
    # Ganev: a_{ℓ-1}^1 (no transpose) in (3.3); Jacobian(σ_L, ·) for every layer (Algs. 1-4); x_L undefined;
    # σ_ℓ : R^{n_L} → R^{n_L}; ∇Z ⊗ W has N n_ℓ rows; Jᵀ⊗vᵀ = (v⊗J)ᵀ swaps Kronecker factors; W_{ℓ-1} in
    # grad_a (W_0 at ℓ = 1); pooling Jacobians of R^n → R are rows, not columns
    "ganev.prop31.eq3": ILL_TYPED, "ganev.alg1.jac": FAILS, "ganev.alg1.l6": ILL_TYPED, "ganev.alg1": FAILS,
    "ganev.s42.sigma": FAILS, "ganev.s43.dim": FAILS, "ganev.s43.kron": FAILS, "ganev.alg2.jac": FAILS,
    "ganev.alg2": FAILS, "ganev.alg3.jac": FAILS, "ganev.alg3.grada": ILL_TYPED, "ganev.alg3": ILL_TYPED,
    "ganev.alg4.jac": FAILS, "ganev.alg4.grada": ILL_TYPED, "ganev.alg4": ILL_TYPED,
    "ganev.ex2.avg": ILL_TYPED, "ganev.ex2.max": ILL_TYPED,
    # Park: g[ℓ] : R^{n[ℓ-1]} → …; softmax with axis=1 on n × N arrays; δ_k ∈ Mat_{n×1} and Z ∈ Mat_{n×N}
    # (n is the input width); missing ':' and backward_propagation / Ws undefined in Codes 3-4; Σ_{k=1}^{n};
    # y_i replaced by o_i in the CE derivation; Code 4 inherits Code 1's softmax
    "park.s1.g": FAILS, "park.code1.softmax": FAILS, "park.s52.deltak": FAILS, "park.s52.Zdim": FAILS,
    "park.code3.static": ILL_TYPED, "park.s63.softmax": ILL_TYPED, "park.s63.ce2": FAILS, "park.s63.ce3": FAILS,
    "park.s63.ce4": FAILS, "park.code4": FAILS, "park.code4.static": ILL_TYPED,
    # MML / slides: "A_j, b_j for j = 1, …, K" but the parameters are A_0 … A_{K-1}
    "mml.5.6.index": ILL_TYPED,
}

DIAGNOSES = {
    "damadi.table2.slr.grad": Mistake.SIGN, "damadi.table2.mlr.grad": Mistake.SIGN,
    "damadi.alg1.l3.kron": Mistake.INDEX_SHIFT, "damadi.alg1.l4": Mistake.INDEX_SHIFT,
    "damadi.s32.grad": Mistake.BLOCK_ORDER, "damadi.s32.grad.lhs": Mistake.INDEX_SHIFT,
    "damadi.s33.grad.b2": Mistake.INDEX_SHIFT,
    "ganev.prop31.eq3": Mistake.TRANSPOSE, "ganev.alg1.jac": Mistake.OUTPUT_ACTIVATION,
    "ganev.alg1": Mistake.OUTPUT_ACTIVATION, "ganev.alg2": Mistake.OUTPUT_ACTIVATION,
    "ganev.alg4.jac": Mistake.OUTPUT_ACTIVATION, "ganev.alg3.grada": Mistake.INDEX_SHIFT,
    "ganev.alg4.grada": Mistake.INDEX_SHIFT, "ganev.s42.sigma": Mistake.INDEX_SHIFT,
    "ganev.s43.kron": Mistake.KRONECKER, "ganev.ex2.avg": Mistake.TRANSPOSE, "ganev.ex2.max": Mistake.TRANSPOSE,
    "park.s1.g": Mistake.INDEX_SHIFT, "park.code1.softmax": Mistake.WRONG_AXIS, "park.code4": Mistake.WRONG_AXIS,
    "park.s52.deltak": Mistake.INDEX_SHIFT, "park.s63.softmax": Mistake.INDEX_SHIFT,
}


@pytest.fixture(scope="module")
def results():
    return dict((e.id, (e, r)) for e, r in run_catalogue())


def test_every_verdict_is_computed_and_pinned(results):
    got = {i: r.verdict for i, (e, r) in results.items()}
    mismatched = {i: (v, EXPECTED.get(i, HOLDS)) for i, v in got.items() if v != EXPECTED.get(i, HOLDS)}
    assert not mismatched, mismatched
    assert set(EXPECTED) <= set(got), set(EXPECTED) - set(got)


def test_pinned_diagnoses(results):
    for i, kind in DIAGNOSES.items():
        e, r = results[i]
        assert kind in {x.kind for x in r.diagnosis}, r.summary()


def test_failing_entries_have_a_verified_correction(results):
    for i, (e, r) in results.items():
        if r.verdict == HOLDS:
            continue
        assert r.diagnosis, f"{i}: no diagnosis"
        assert r.counterexample is not None and r.reason, i
        if r.corrections:
            assert r.corrections[0][1] == HOLDS, f"{i}: stated correction {r.corrections[0][0].description!r} does not hold"
        else:  # listings: the diagnosis names the fix
            assert r.method == "static", i


def test_holding_entries_are_exact_or_tight(results):
    for i, (e, r) in results.items():
        if r.verdict == HOLDS and r.max_error is not None:
            assert r.max_error < 1e-9, (i, r.max_error)


def test_every_document_and_kind_is_covered(results):
    docs = {e.document for e, _ in results.values()}
    assert docs == set(DOCUMENTS)
    kinds = {e.kind for e, _ in results.values()}
    assert kinds == {"formula", "table", "algorithm", "example", "listing", "dimension"}
    methods = {r.method for _, r in results.values()}
    assert {"numeric", "symbolic", "symbolic+numeric", "static"} <= methods
    for d in DOCUMENTS:
        assert len(catalogue(d)) >= 30


def test_citations_point_into_the_seed_texts():
    if not all((SEEDS / d.seed_file).exists() for d in DOCUMENTS.values()):
        pytest.skip(f"the source documents are not beside this checkout ({SEEDS})")
    lengths = {k: len((SEEDS / d.seed_file).read_text(encoding="utf-8").splitlines()) for k, d in DOCUMENTS.items()}
    for e in catalogue():
        nums = [int(n) for n in re.findall(r"l\. (\d+)", e.location)]
        assert nums, f"{e.id}: no seed line in {e.location!r}"
        assert all(1 <= n <= lengths[e.document] for n in nums), e.id
        assert e.printed.strip()


def test_conv_truth_against_scipy():
    """The catalogue's Toeplitz truth, the printed 4×9 matrix and jacobian_bp.backend.toeplitz vs scipy.signal.correlate2d."""
    from scipy.signal import correlate2d

    from jacobian_bp.backend.toeplitz import toeplitz

    rng = np.random.default_rng(0)
    for case in ((3, 3, 2, 2), (4, 3, 3, 2), (3, 4, 2, 3)):
        mX, nX, mK, nK = case
        X, K = rng.standard_normal((mX, nX)), rng.standard_normal((mK, nK))
        T = _conv_truth_matrix(case)
        ks = sympy.symbols(f"k_1:{mK * nK + 1}", real=True)
        Tn = np.array(T.subs(dict(zip(ks, K.ravel()))).evalf(), dtype=float)
        ref = correlate2d(X, K, mode="valid").ravel()
        np.testing.assert_allclose(Tn @ X.ravel(), ref, atol=1e-12)
        np.testing.assert_allclose(toeplitz(K, (mX, nX)).toarray() @ X.ravel(), ref, atol=1e-12)
    X, K = rng.standard_normal((3, 3)), rng.standard_normal((2, 2))
    P = np.array(_damadi_printed_matrix().subs(dict(zip(sympy.symbols("k_1:5", real=True), K.ravel()))), dtype=float)
    out = P @ X.ravel()
    ref = correlate2d(X, K, mode="valid").ravel()
    np.testing.assert_allclose(out[:2], ref[:2], atol=1e-12)  # rows 1-2 as printed are right
    assert np.all(np.abs(out[2:] - ref[2:]) > 1e-6)  # rows 3-4 are not


def test_entry_lookup_and_validation():
    assert entry("park.code1.softmax").document == "park"
    with pytest.raises(KeyError):
        entry("nope")
    with pytest.raises(ValueError):
        catalogue("knuth")


def test_one_module_per_document():
    """Each source document is one module giving its DOCUMENT and entries(); the catalogue registers them in
    order, and every entry of a module names that module's document."""
    from jacobian_bp.documents import catalogue as cat

    assert [s.__name__.rpartition(".")[2] for s in cat.SOURCES] == ["damadi", "ganev", "park", "mml"]
    assert list(DOCUMENTS) == [s.DOCUMENT.key for s in cat.SOURCES]
    assert all(DOCUMENTS[s.DOCUMENT.key] is s.DOCUMENT for s in cat.SOURCES)
    total = 0
    for s in cat.SOURCES:
        own = s.entries()
        assert own and {e.document for e in own} == {s.DOCUMENT.key}
        assert [e.id for e in own] == [e.id for e in catalogue(s.DOCUMENT.key)]
        total += len(own)
    assert total == len(catalogue())


def test_document_registration_and_entry_category():
    from jacobian_bp.claims import Claim, Setting
    from jacobian_bp.documents.model import CATEGORIES, KINDS, Document, Entry, register_document

    park = DOCUMENTS["park"]
    assert register_document(park) is park  # registering the same document again is harmless
    with pytest.raises(ValueError, match="another document"):
        register_document(Document("park", "t", "s", "f", "park"))
    with pytest.raises(TypeError, match="expected a Document"):
        register_document("park")
    claim = Claim("x", lambda q, l: q.W[l], "W", Setting("park", widths=((2, 3),), seeds=(0,)))
    e = Entry("park.x", "park", "l. 1", "formula", "W", claim)
    assert e.category == e.kind == "formula" and KINDS == CATEGORIES
    with pytest.raises(ValueError, match="category must be one of"):
        Entry("park.x", "park", "l. 1", "poem", "W", claim)
    with pytest.raises(ValueError, match="unknown document"):
        Entry("knuth.x", "knuth", "l. 1", "formula", "W", claim)
    assert entry("park.code1.softmax").category == "listing"


def test_statements_added_for_issue_14_hold(results):
    """Ganev's Algorithm 5 (reconstructed: its body is not in the seed text), Exercise 6 and Exercise 1's
    activations; MML (5.80); Park §4 (3)-(6)."""
    ids = {"ganev.alg5.fwd", "ganev.alg5.gradAL", "ganev.alg5.gradZ", "ganev.alg5.gradA", "ganev.alg5.gradW",
           "ganev.alg5.gradb", "ganev.alg5", "ganev.ex6.gradA", "ganev.ex1.sigmoid", "ganev.ex1.relu",
           "ganev.ex1.arctan", "ganev.ex1.softmax", "ganev.ex1.radial"}
    assert ids <= set(results)
    for i in ids:
        e, r = results[i]
        assert r.verdict == HOLDS, r.summary()
    assert "reconstructed" in results["ganev.alg5"][0].note
    assert results["ganev.ex1.sigmoid"][1].method == "symbolic+numeric"
    assert results["mml.5.80"][1].verdict == HOLDS  # MML (5.80), the chain rule entry by entry
    for i in ("park.s4.3", "park.s4.4", "park.s4.5", "park.s4.6"):  # Park §4 (3)-(6)
        assert results[i][1].verdict == HOLDS, results[i][1].summary()
    assert len(results) >= 223
