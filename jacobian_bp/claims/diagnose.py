"""Diagnosis: the candidate corrections a failing claim suggests, and those that make it hold.

Candidates come from what the evaluation saw: the quantities accessed (index shifts, transposed
operands -- a *symmetry assumed* when the operand is square --, the output activation for a hidden
layer, ``a[l]`` read where ``z[l]`` is needed -- a derivative evaluated at the activation --, a
derivative factor σ′ counted twice, a sign inside the argument of σ), the helper calls (Kronecker
order, vec order, reduction axis), the matrix products ``@`` (a chain rule multiplied in the wrong
order), the shapes (factors, normalizers 1/N, 1/K, 1/(N·K), transposes, permutations, unreduced
axes, θ block order) and, for a derivative written out by hand, the other activations (the formula
is right for another activation's derivative).

When none of these fits, the kinds of :mod:`.network_mistakes` are tried (missing term or factor, a transposed
array, a layer's stride / padding / dilation / kernel orientation / pooling kind, one sample, one time step or a
time index of a recurrent sum, the kink and tie conventions at given points).

A candidate is reported only when the corrected formula holds on every instance of the claim *and*
again on fresh instances (other seeds); when none does, the result says "no known mistake fits"
instead of a misleading diagnosis.
"""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import sympy

from .corrections import _FACTORS, _K_FACTORS, _OutCorrection, _divisor_pairs, _factor_value
from .evaluate import _Run, _run
from .model import HOLDS, MISTAKE_PRIORITY, Claim, Explanation, Mistake
from .quantities import _QCorrection, _fmt_index

#: activations tried when a derivative written out by hand may be another activation's
_OTHER_ACTIVATIONS = ("sigmoid", "tanh", "relu", "softplus", "arctan")
#: quantity families whose pairs (activation, pre-activation) a formula may mix up
_SWAP = {"a": "z", "A": "Z", "z": "a", "Z": "A"}
#: families that already contain σ′ (so that a further σ′ factor counts it twice)
_HAS_DERIVATIVE = ("delta", "dZ", "Delta")


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
    insts = list(dict.fromkeys(d for d, _, _ in runs_outcomes))

    def values(f):
        return tuple(_factor_value(f, d.N, int(d.widths[-1]) if d.widths else 1) for d in insts)

    # a normalizer K is named only where it differs from the factors above on some instance (K = 2 everywhere
    # is a factor 2; 2/(N·K) with K = 2 is 1/N)
    plain = {values(f) for f, _, _ in _FACTORS if not isinstance(f, tuple) or batch} | {values(1)}
    for f, txt, mistake in _K_FACTORS:
        if insts and values(f) not in plain:
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
            name = f"{fam}[{_fmt_index(anchor, off)}]"
            if _square_everywhere(logs, fam, anchor, off):
                cands.append((_QCorrection(transpose=((fam, anchor, off),)), Mistake.SYMMETRY,
                              f"{name} is used as if it were symmetric ({name} = {name}ᵀ); use {name}ᵀ "
                              f"(the formula holds only for symmetric {name})"))
            else:
                cands.append((_QCorrection(transpose=((fam, anchor, off),)), Mistake.TRANSPOSE,
                              f"{name} should be transposed"))
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
        if helper.startswith("np.") and isinstance(info, (int, np.integer)):
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


def _square_everywhere(logs: list, fam: str, anchor: str, off: int) -> bool:
    """The quantity ``fam[anchor + off]`` was a square matrix wherever the claim read it."""
    shapes = []
    for d, l, log in logs:
        av = {"l": log.l, "L": log.L, "abs": 0}[anchor]
        if av is None:
            continue
        sh = log.shapes.get((fam, av + off))
        if sh is not None:
            shapes.append(sh)
    return bool(shapes) and all(len(sh) == 2 and sh[0] == sh[1] and sh[0] > 1 for sh in shapes)


def _anchored(logs: list, families) -> list:
    """(family, anchor, offset) of every access of the given families, anchored at l, L and absolute."""
    out = []
    for d, l, log in logs:
        for fam, k, ll, LL in log.accesses:
            if fam not in families:
                continue
            for anchor, av in (("l", ll), ("L", LL), ("abs", 0)):
                if av is not None and (fam, anchor, k - av) not in out:
                    out.append((fam, anchor, k - av))
    return out


def _extra_q_candidates(claim: Claim, logs: list) -> list[tuple[_QCorrection, Mistake, str]]:
    """The corrections of the wider taxonomy: quantity mix-ups (a for z), σ′ counted twice, a sign inside
    the argument, a chain rule multiplied in the wrong order."""
    cands: list = []
    deriv_at_a = set()
    has_delta = False
    calls = []
    for d, l, log in logs:
        deriv_at_a |= log.deriv_at_a
        has_delta = has_delta or any(f in _HAS_DERIVATIVE for f, *_ in log.accesses)
        for c in log.calls:
            if c not in calls:
                calls.append(c)
    # a[l] read where z[l] is needed (a derivative evaluated at the activation), and the other mix-ups
    for fam, anchor, off in _anchored(logs, tuple(_SWAP)):
        if anchor == "abs" and off == 0:
            continue
        name, other = f"{fam}[{_fmt_index(anchor, off)}]", f"{_SWAP[fam]}[{_fmt_index(anchor, off)}]"
        at_a = fam in ("a", "A") and any(_layer_matches(logs, anchor, off, j) for j in deriv_at_a)
        if at_a:
            txt = (f"{name} used where {other} is needed: the derivative is evaluated at the activation "
                   f"{name} = σ({other}) instead of the pre-activation {other}")
            cands.append((_QCorrection(swap_family=((fam, anchor, off, _SWAP[fam]),)), Mistake.ACT_AT_ACTIVATION, txt))
        else:
            cands.append((_QCorrection(swap_family=((fam, anchor, off, _SWAP[fam]),)), Mistake.QUANTITY,
                          f"{name} used where {other} is needed"))
    # σ′ counted twice: a derivative factor too many
    for fam, anchor, off in _anchored(logs, ("fprime", "Jact")):
        name = f"{fam}[{_fmt_index(anchor, off)}]"
        mistake = Mistake.DOUBLE_DERIVATIVE
        txt = (f"the factor {name} counts σ′ a second time (δ already contains it): drop it" if has_delta
               else f"the factor {name} counts σ′ a second time (the rest of the formula already contains it, e.g. "
                    "ŷ − y for a matched output and loss): drop it")
        cands.append((_QCorrection(drop=((fam, anchor, off),)), mistake, txt))
    act_calls = _act_calls(logs)
    derivative_calls = [(h, c, k) for h, c, k in act_calls if h in ("dsigma", "Jac")]
    for h, c, k in derivative_calls:
        what = "σ′" if h == "dsigma" else "Jacobian of σ"
        mistake = Mistake.DOUBLE_DERIVATIVE
        txt = (f"the factor {h}({k}, ·) (call {c + 1}) counts {what} a second time "
               f"({'δ already contains it' if has_delta else 'the rest of the formula already contains it, e.g. ŷ − y for a matched output and loss'}): drop it")
        cands.append((_QCorrection(drop_call=((h, c),)), mistake, txt))
    # a sign inside the argument: σ(−z) for σ(z)
    for fam, anchor, off in _anchored(logs, ("z", "Z")):
        name = f"{fam}[{_fmt_index(anchor, off)}]"
        cands.append((_QCorrection(negate=((fam, anchor, off),)), Mistake.ARGUMENT_SIGN,
                      f"−{name} where {name} is needed (a sign inside the argument, e.g. σ(−z) for σ(z))"))
    for h, c, k in act_calls:
        if h in ("sigma", "dsigma", "Jac"):
            cands.append((_QCorrection(neg_arg=((h, c),)), Mistake.ARGUMENT_SIGN,
                          f"{h}({k}, −v) where {h}({k}, v) is needed (call {c + 1}): a sign inside the argument"))
    # the chain rule multiplied in the wrong order
    products = sorted({c for h, c, _ in calls if h == "matmul"})
    for c in products[:12]:
        cands.append((_QCorrection(swap_matmul=(c,)), Mistake.CHAIN_ORDER,
                      f"the factors of product {c + 1} (A @ B) are in the wrong order: B @ A"))
    if len(products) >= 2:
        cands.append((_QCorrection(swap_matmul=("all",)), Mistake.CHAIN_ORDER,
                      "every product in the opposite order: the chain of Jacobians must be multiplied the other way"))
    if len(products) >= 2:  # (an ill-typed evaluation stops at its first bad product: few are logged)
        for parity in ("odd", "even"):
            cands.append((_QCorrection(swap_matmul=(parity,)), Mistake.CHAIN_ORDER,
                          "the accumulated product multiplied on the wrong side (P @ J where J @ P is needed): the "
                          "chain rule in the wrong order"))
    return cands


def _act_calls(logs: list) -> list:
    """(helper, call index, layer text) of the σ / σ′ / Jacobian calls, the layer relative to l when it is."""
    offs: dict = {}
    for d, l, log in logs:
        for h, c, k in log.calls:
            if h in ("sigma", "dsigma", "Jac") and isinstance(k, int):
                offs.setdefault((h, c), set()).add(("l", k - log.l) if log.l is not None else ("abs", k))
    out = []
    for (h, c), ks in offs.items():
        k = _fmt_index(*next(iter(ks))) if len(ks) == 1 else "k"
        out.append((h, c, k))
    return out


def _layer_matches(logs: list, anchor: str, off: int, j: int) -> bool:
    for d, l, log in logs:
        av = {"l": log.l, "L": log.L, "abs": 0}[anchor]
        if av is not None and av + off == j:
            return True
    return False


def _uses_activation_helpers(logs: list) -> bool:
    return any(h in ("sigma", "dsigma", "Jac") for d, l, log in logs for h, *_ in log.calls) or \
        any(f in ("fprime", "Jact") for d, l, log in logs for f, *_ in log.accesses)


def _activation_variants(claim: Claim, base: _Run, logs: list) -> list:
    """A derivative written out by hand (no σ helper) may be another activation's: the settings in which the
    hidden (or output) activation is another one, as (setting, mistake, text)."""
    setting = claim.setting
    if not setting.widths or _uses_activation_helpers(logs):
        return []
    if not any(f in ("a", "A", "z", "Z") for d, l, log in logs for f, *_ in log.accesses):
        return []
    ls = [(d.L, l) for d, l, _ in base.outcomes if not d.symbolic and l is not None]
    if not ls:
        return []
    where = "hidden" if all(l < L for L, l in ls) else ("output" if all(l == L for L, l in ls) else None)
    out = []
    for act in _OTHER_ACTIVATIONS:
        cur = getattr(setting, where) if where else setting.hidden
        if act == cur or (where is None and act == setting.output):
            continue
        ch = {where: act} if where else {"hidden": act, "output": act}
        try:
            st = replace(setting, symbolic=None, **ch)
        except Exception:  # noqa: BLE001 - an activation the setting refuses
            continue
        layers_txt = {"hidden": "hidden", "output": "output", None: "all"}[where]
        out.append((st, Mistake.OTHER_ACTIVATION,
                    f"the formula is right for {act} {layers_txt} layers, not "
                    f"{cur} (it uses {act}′ where {cur}′ is needed)"))
    return out


#: matched output activation and loss: δ_L = ŷ − y already contains σ′ (the derivative cancels)
_MATCHED = {("sigmoid", "bce"), ("softmax", "cross_entropy")}


def _loss_variants(claim: Claim, base: _Run) -> list:
    """A last-layer formula may be right for another loss: (ŷ − y) σ′(z) is δ of ½‖ŷ − y‖², and counts σ′
    a second time for a sigmoid output with BCE (where δ = ŷ − y); as (setting, mistake, text)."""
    setting = claim.setting
    if not setting.widths or not any(not d.symbolic and l is not None and l + claim.target_offset == d.L
                                     for d, l, _ in base.outcomes):
        return []
    out = []
    for loss, scale in (("mse", 0.5), ("mse", 1.0), ("bce", None), ("cross_entropy", None)):
        if loss == setting.loss and (scale is None or scale == setting.conv().mse_scale):
            continue
        try:
            st = replace(setting, symbolic=None, loss=loss, mse_scale=scale)
        except Exception:  # noqa: BLE001 - a loss the setting refuses
            continue
        name = f"{'½' if scale == 0.5 else ''}‖ŷ − y‖²" if loss == "mse" else loss
        if (setting.output, setting.loss) in _MATCHED and loss == "mse":
            out.append((st, Mistake.DOUBLE_DERIVATIVE,
                        f"with a {setting.output} output and {setting.loss} loss, δ_L = ŷ − y already contains σ′ "
                        f"(the loss's derivative cancels it); the formula is δ_L of the {name} loss"))
        else:
            out.append((st, Mistake.QUANTITY, f"the formula is right for the {name} loss, not {setting.loss}"))
    return out


def _fresh(setting) -> list:
    """Fresh numeric instances of a setting: the same architectures with other seeds."""
    from .instances import build_instances

    if not setting.widths and setting.network is None:
        return []
    try:
        return build_instances(replace(setting, seeds=tuple(int(s) + 101 for s in setting.seeds), symbolic=None))
    except Exception:  # noqa: BLE001 - no fresh instances: the explanation stays unverified
        return []


def _diagnose(claim: Claim, instances: list, base: _Run, logs: list, max_pairs: int = 600) -> list[Explanation]:
    """Candidate corrections that make the claim hold on every instance and layer, verified again on
    fresh instances, most specific mistake first (an empty list: no known mistake fits)."""
    from .instances import build_instances

    failing = [(d, l) for d, l, o in base.outcomes if o.status != HOLDS]
    if not failing:
        return []
    # instances ordered: failing ones first, for quick rejection
    order = list(dict.fromkeys([d for d, _ in failing] + list(instances)))
    order.sort(key=lambda d: (d.symbolic, d not in {f for f, _ in failing}))  # cheap numeric rejections first
    qcs = _q_candidates(claim, logs)
    extra = _extra_q_candidates(claim, logs)
    ocs = _out_candidates(claim, base.outcomes)
    found: list = []  # (Explanation, qc, oc, setting or None)

    def works(qc, oc, insts=order) -> bool:
        return _run(claim, insts, qc, oc, stop_early=True, exact=False).verdict == HOLDS

    for qc, mistake, txt in qcs + extra:
        if works(qc, _OutCorrection()):
            found.append((Explanation(mistake, txt), qc, _OutCorrection(), None))
    for oc, mistake, txt in ocs:
        if works(_QCorrection(), oc):
            found.append((Explanation(mistake, txt), _QCorrection(), oc, None))
    variants = _activation_variants(claim, base, logs)
    if not found:
        variants += _loss_variants(claim, base)
    for st, mistake, txt in variants:
        if works(_QCorrection(), _OutCorrection(), build_instances(st)):
            found.append((Explanation(mistake, txt), _QCorrection(), _OutCorrection(), st))
    if not found:
        # pairs: a quantity-level correction with an output-level one, or two quantity-level ones
        tried = 0
        for (qc, k1, t1), (oc, k2, t2) in itertools.product(qcs, ocs):
            tried += 1
            if tried > max_pairs:
                break
            if works(qc, oc):
                found.append((Explanation(k1, f"{t1}, and {t2}"), qc, oc, None))
        for (qa, k1, t1), (qb, k2, t2) in itertools.combinations(qcs, 2):
            tried += 1
            if tried > 2 * max_pairs:
                break
            merged = qa.merged(qb)
            if works(merged, _OutCorrection()):
                found.append((Explanation(k1, f"{t1}, and {t2}"), merged, _OutCorrection(), None))
    found = _prefer_simple_sign(found)
    if not found:  # the network-layer kinds (missing term or factor, knobs of a layer, per-step terms, kinks)
        return _network_diagnosis(claim, order, base, logs)
    # verification on fresh instances (other seeds): a correction that only fits the drawn instances is dropped
    verified = []
    fresh_cache: dict = {}
    for e, qc, oc, st in found:
        st = st or claim.setting
        if st not in fresh_cache:
            fresh_cache[st] = _fresh(st)
        fresh = fresh_cache[st]
        if fresh and not works(qc, oc, fresh):
            continue
        verified.append(Explanation(e.mistake, e.description, len(fresh)))
    verified.sort(key=lambda e: MISTAKE_PRIORITY.index(e.mistake) if e.mistake in MISTAKE_PRIORITY else 99)
    return _dedupe(verified)


def _prefer_simple_sign(found: list) -> list:
    """A sign inside the argument that is equivalent to an overall sign flip (the argument enters linearly)
    is the sign flip."""
    if any(e.mistake == Mistake.SIGN and ", and " not in e.description for e, *_ in found):
        return [f for f in found if not (f[0].mistake == Mistake.ARGUMENT_SIGN and f[1].negate)]
    return found


#: kinds of mistake listed once: their candidates describe the same correction in several ways
_ONE_EACH = (Mistake.OUTPUT_ACTIVATION, Mistake.DOUBLE_DERIVATIVE, Mistake.ARGUMENT_SIGN, Mistake.CHAIN_ORDER,
             Mistake.ACT_AT_ACTIVATION)


def _dedupe(found: list[Explanation]) -> list[Explanation]:
    """Drop repeated explanations, and index shifts that only re-anchor one already found
    (``a[l]`` → ``a[l-1]`` and ``a[2]`` → ``a[1]`` describe the same access)."""
    out, seen, shifted = [], set(), set()
    for e in found:
        if e.description in seen:
            continue
        seen.add(e.description)
        if e.mistake in _ONE_EACH:  # several descriptions of one correction (σ_L for σ_l; σ(−z) as −z or −v)
            if e.mistake in seen:
                continue
            seen.add(e.mistake)
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


def _network_diagnosis(claim: Claim, order: list, base: _Run, logs: list) -> list[Explanation]:
    """The candidates of :mod:`.network_mistakes` that make the claim hold on every instance (or on the variant
    setting's instances), verified again on fresh instances; most specific first."""
    from .instances import build_instances
    from .network_mistakes import network_candidates

    try:
        cands = network_candidates(claim, base, logs)
    except Exception:  # noqa: BLE001 - a candidate generator that cannot read this claim: no candidate
        return []
    out: list[Explanation] = []
    fresh_cache: dict = {}

    def holds(insts, formula=None) -> bool:
        return bool(insts) and _run(claim, insts, formula=formula, stop_early=True, exact=False).verdict == HOLDS

    for nc in cands:
        st = nc.setting if nc.setting is not None else claim.setting
        try:
            insts = build_instances(nc.setting) if nc.setting is not None else order
        except Exception:  # noqa: BLE001 - a variant that cannot be built
            continue
        if not holds(insts, nc.formula):
            continue
        if st not in fresh_cache:
            fresh_cache[st] = _fresh(st)
        fresh = fresh_cache[st]
        if not holds(fresh, nc.formula):
            continue  # unverified (or no fresh instances): never named
        out.append(Explanation(nc.mistake, nc.text, len(fresh)))
    out.sort(key=lambda e: MISTAKE_PRIORITY.index(e.mistake) if e.mistake in MISTAKE_PRIORITY else 99)
    for conv in (Mistake.KINK_CONVENTION, Mistake.TIE_CONVENTION):
        if any(e.mistake == conv for e in out):
            # the claim differs from the truth only at a kink or tie: other corrections that verify (σ′ ⊙ C = C for a
            # 0/1 mask) restate the same difference and are not listed
            out = [e for e in out if e.mistake == conv]
            break
    return _dedupe(out)
