"""Diagnosis: the candidate corrections a failing claim suggests, and those that make it hold.

Candidates come from what the evaluation saw: the quantities accessed (index shifts, transposed
operands, the output activation for a hidden layer), the helper calls (Kronecker order, vec order,
reduction axis) and the shapes (factors, transposes, permutations, unreduced axes, θ block order).
"""
from __future__ import annotations

import itertools

import numpy as np
import sympy

from .corrections import _FACTORS, _OutCorrection, _divisor_pairs
from .evaluate import _Run, _run
from .model import HOLDS, Claim, Explanation, Mistake
from .quantities import _QCorrection, _fmt_index


def _out_candidates(claim: Claim, runs_outcomes: list) -> list[tuple[_OutCorrection, Mistake, str]]:
    """Output-level candidate corrections from the shapes seen (N-factors only when some N > 1,
    θ block order only when some network has two layers or more)."""
    cands: list = []
    batch = any(d.N > 1 for d, _, _ in runs_outcomes)
    deep = any(d.L > 1 for d, _, _ in runs_outcomes)
    for f, txt, mistake in _FACTORS:
        if isinstance(f, tuple) and not batch:
            continue
        cands.append((_OutCorrection(factor=f), mistake, txt))
    shapes = set()
    for d, l, o in runs_outcomes:
        if o.value is not None and o.truth is not None and not isinstance(o.value, tuple):
            try:
                cs = tuple(np.shape(o.value)) if not isinstance(o.value, sympy.MatrixBase) else o.value.shape
                ts = tuple(np.shape(o.truth)) if not isinstance(o.truth, sympy.MatrixBase) else o.truth.shape
                shapes.add((cs, ts, d.N))
            except Exception:  # noqa: BLE001
                pass
    any_T = any(len(cs) == 2 and cs[::-1] == ts for cs, ts, _ in shapes)
    if any_T:
        cands.append((_OutCorrection(transpose=True), Mistake.TRANSPOSE, "corrected formula Cᵀ"))
        cands.append((_OutCorrection(transpose=True, factor=-1), Mistake.TRANSPOSE, "transposed and sign flipped: corrected formula −Cᵀ"))
    if claim.target in ("grad_theta", "J_theta") and deep:
        cands.append((_OutCorrection(reverse_blocks=True), Mistake.BLOCK_ORDER,
                      "per-layer blocks in the opposite order (θ = [layer 1; …; layer L] vs [layer L; …; layer 1])"))
        cands.append((_OutCorrection(reverse_blocks=True, factor=-1), Mistake.BLOCK_ORDER,
                      "per-layer blocks in the opposite order and sign flip"))
    # reductions over an extra batch axis
    for cs, ts, N in shapes:
        if len(cs) == 2 and len(ts) == 2 and N > 1:
            for ax in (0, 1):
                red = list(cs)
                red[ax] = 1
                if tuple(red) == ts and cs[ax] == N:
                    for how in ("sum", "mean"):
                        cands.append((_OutCorrection(reduce_axis=(ax, how)), Mistake.REDUCTION,
                                      f"the batch axis {ax} left unreduced: {how} over it"))
    # commutation permutations (same shape only; the K_{p,r} of each instance's shape)
    same = [(cs, ts) for cs, ts, _ in shapes if cs == ts and len(cs) == 2]
    if any(_divisor_pairs(cs[0]) for cs, _ in same):
        cands.append((_OutCorrection(row_perm="any"), Mistake.KRONECKER,
                      "rows permuted by a commutation matrix K_{p,r} (Kronecker factors or vec order swapped)"))
    if any(_divisor_pairs(cs[1]) for cs, _ in same):
        cands.append((_OutCorrection(col_perm="any"), Mistake.KRONECKER,
                      "columns permuted by a commutation matrix K_{p,r} (Kronecker factors or vec order swapped)"))
    return cands


_SHIFT_FAMILIES = ("W", "b", "z", "a", "delta", "grad_a", "fprime", "Jact", "n", "Z", "A", "Delta", "dZ", "dA", "sigma")


def _q_candidates(claim: Claim, logs: list) -> list[tuple[_QCorrection, Mistake, str]]:
    """Quantity-level candidate corrections from the recorded accesses and helper calls."""
    cands: list = []
    seen = set()
    last_only = claim.layers == "last"
    anchors_pref = ("L", "l", "abs") if last_only else ("l", "L", "abs")
    accessed = set()
    for d, l, log in logs:
        for fam, k, ll, LL in log.accesses:
            accessed.add((fam, k, ll, LL))
    # index shifts, anchored at l, L or absolute
    for anchor in anchors_pref:
        for fam, k, ll, LL in sorted(accessed, key=str):
            if fam not in _SHIFT_FAMILIES:
                continue
            av = {"l": ll, "L": LL, "abs": 0}[anchor]
            if av is None:
                continue
            off = k - av
            for delta in (-1, +1):
                key = ("shift", fam, anchor, off, delta)
                if key in seen:
                    continue
                seen.add(key)
                old = f"{fam}[{_fmt_index(anchor, off)}]"
                new = f"{fam}[{_fmt_index(anchor, off + delta)}]"
                if fam == "sigma":
                    old, new = f"σ_{_fmt_index(anchor, off)}", f"σ_{_fmt_index(anchor, off + delta)}"
                cands.append((_QCorrection(shift=((fam, anchor, off, delta),)), Mistake.INDEX_SHIFT,
                              f"{old} used where {new} is needed"))
    # the last layer's index L used where the current layer l is needed (σ_L for σ_l, n[L] for n[l])
    for fam in sorted({f for f, k, ll, LL in accessed if f in _SHIFT_FAMILIES and ll is not None and k == LL and ll != LL}):
        key = ("Ltol", fam)
        if key not in seen:
            seen.add(key)
            mistake = Mistake.OUTPUT_ACTIVATION if fam in ("sigma", "fprime", "Jact") else Mistake.INDEX_SHIFT
            old = "σ_L" if fam == "sigma" else f"{fam}[L]"
            new = "σ_l" if fam == "sigma" else f"{fam}[l]"
            cands.append((_QCorrection(L_to_l=(fam,)), mistake, f"{old} (the last layer's) used where {new} is needed"))
    # one operand transposed
    for anchor in anchors_pref:
        for fam, k, ll, LL in sorted(accessed, key=str):
            if fam in ("n", "sigma"):
                continue
            av = {"l": ll, "L": LL, "abs": 0}[anchor]
            if av is None:
                continue
            off = k - av
            key = ("T", fam, anchor, off)
            if key in seen:
                continue
            seen.add(key)
            cands.append((_QCorrection(transpose=((fam, anchor, off),)), Mistake.TRANSPOSE,
                          f"{fam}[{_fmt_index(anchor, off)}] should be transposed"))
    # output activation for a hidden layer
    mism = any(src is not None and k != src for d, l, log in logs for k, src in log.act_calls)
    if mism:
        cands.append((_QCorrection(act_follows_argument=True), Mistake.OUTPUT_ACTIVATION,
                      "σ_L (the output activation) applied at z[l]: use the layer's own σ_l"))
    # helper call sites
    calls = set()
    for d, l, log in logs:
        for helper, c, info in log.calls:
            calls.add((helper, c, info))
    for helper, c, info in sorted(calls, key=str):
        if helper.startswith("np.") and info is not None:
            key = ("axis", helper, c)
            if key not in seen:
                seen.add(key)
                cands.append((_QCorrection(flip_axis=((helper, c),)), Mistake.WRONG_AXIS,
                              f"{helper}(…, axis={info}) (call {c + 1}) reduces over the wrong axis: use axis={1 - info % 2}"))
        elif helper == "kron":
            key = ("kron", c)
            if key not in seen:
                seen.add(key)
                cands.append((_QCorrection(swap_kron=(c,)), Mistake.KRONECKER,
                              f"Kronecker factors in the wrong order (kron call {c + 1}): B ⊗ A for A ⊗ B"))
        elif helper in ("vec", "vec_r"):
            key = ("vec", helper, c)
            if key not in seen:
                seen.add(key)
                other = "rows" if helper == "vec" else "columns"
                cands.append((_QCorrection(flip_vec=((helper, c),)), Mistake.KRONECKER,
                              f"vec order: {helper} (call {c + 1}) should stack {other}"))
    return cands


def _diagnose(claim: Claim, instances: list, base: _Run, logs: list, max_pairs: int = 600) -> list[Explanation]:
    """Candidate corrections that make the claim hold on every instance and layer."""
    failing = [(d, l) for d, l, o in base.outcomes if o.status != HOLDS]
    if not failing:
        return []
    # instances ordered: failing ones first, for quick rejection
    order = list(dict.fromkeys([d for d, _ in failing] + list(instances)))
    order.sort(key=lambda d: (d.symbolic, d not in {f for f, _ in failing}))  # cheap numeric rejections first
    qcs = _q_candidates(claim, logs)
    ocs = _out_candidates(claim, base.outcomes)
    found: list[Explanation] = []

    def works(qc, oc) -> bool:
        return _run(claim, order, qc, oc, stop_early=True, exact=False).verdict == HOLDS

    for qc, mistake, txt in qcs:
        if works(qc, _OutCorrection()):
            found.append(Explanation(mistake, txt))
    for oc, mistake, txt in ocs:
        if works(_QCorrection(), oc):
            found.append(Explanation(mistake, txt))
    if found:
        return _dedupe(found)
    # pairs: a quantity-level correction with an output-level one, or two quantity-level ones
    tried = 0
    for (qc, k1, t1), (oc, k2, t2) in itertools.product(qcs, ocs):
        tried += 1
        if tried > max_pairs:
            break
        if works(qc, oc):
            found.append(Explanation(k1, f"{t1}, and {t2}"))
    for (qa, k1, t1), (qb, k2, t2) in itertools.combinations(qcs, 2):
        tried += 1
        if tried > 2 * max_pairs:
            break
        merged = _QCorrection(shift=qa.shift + qb.shift, transpose=qa.transpose + qb.transpose,
                              flip_axis=qa.flip_axis + qb.flip_axis, swap_kron=qa.swap_kron + qb.swap_kron,
                              flip_vec=qa.flip_vec + qb.flip_vec,
                              act_follows_argument=qa.act_follows_argument or qb.act_follows_argument,
                              L_to_l=qa.L_to_l + qb.L_to_l)
        if works(merged, _OutCorrection()):
            found.append(Explanation(k1, f"{t1}, and {t2}"))
    return _dedupe(found)


def _dedupe(found: list[Explanation]) -> list[Explanation]:
    """Drop repeated explanations, and index shifts that only re-anchor one already found
    (``a[l]`` → ``a[l-1]`` and ``a[2]`` → ``a[1]`` describe the same access)."""
    out, seen, shifted = [], set(), set()
    for e in found:
        if e.description in seen:
            continue
        seen.add(e.description)
        if e.mistake == Mistake.INDEX_SHIFT and " used where " in e.description and ", and " not in e.description:
            old, new = e.description.split(" used where ")
            fam = old.split("[")[0]
            key = (fam, _shift_sign(old, new))
            if key in shifted:
                continue
            shifted.add(key)
        out.append(e)
    return out


def _shift_sign(old: str, new: str) -> str:
    """'+' or '-' (or '?') from two index texts such as ``a[l]`` and ``a[l-1]``."""
    import re

    def val(t):
        m = re.search(r"\[([^\]]*)\]", t)
        inner = m.group(1) if m else t
        m2 = re.match(r"^[lL]?([+-]\d+)?$|^(\d+)$", inner.replace(" ", ""))
        if not m2:
            return None
        if m2.group(2) is not None:
            return int(m2.group(2))
        return int(m2.group(1) or 0)

    a, b = val(old), val(new)
    if a is None or b is None:
        return "?"
    return "+" if b > a else "-"
