r"""Candidate corrections of a wrong network claim over any layer (``Setting(network=[...])``) and of kink conventions.

A network claim's formula is a callable of the quantities ``q``; the candidates here change what the formula
reads, what it returns, or the setting it is evaluated on -- never the formula's text:

* **setting variants** (the unchanged formula holds on another network): a convolution's or pooling's
  ``stride``, ``padding`` or ``dilation`` set to its neutral value (*stride ignored*, *padding forgotten*,
  *dilation ignored*), the kernel flipped (``mode`` correlation ↔ convolution: *kernel flipped vs not*), max
  pooling ↔ average pooling with the same window (*max taken as average*, *average taken as max*), one sample
  (``batch=1``: the sum over the batch is missing), the other value of ReLU'(0) (*kink convention*);
* **quantities read differently** (a view of ``q``): an array with three axes or more transposed in its last two
  (:math:`\mathbf P^\top` for :math:`\mathbf P`), a quantity multiplied elementwise by another quantity of its layer
  of the same shape (*missing factor*, e.g. :math:`\sum_i \mathbf{dY}\odot\hat{\mathbf x}` written
  :math:`\sum_i \mathbf{dY}`);
* **the value corrected** (truth :math:`=` a function of the claim :math:`C`): a diagonal factor :math:`\mathrm{diag}(v)C`,
  :math:`C\,\mathrm{diag}(v)` with :math:`v` (or :math:`1/v`) a vector of the layer or :math:`\sigma'(\mathbf z)` (*missing
  factor*); a missing term built from the quantities the claim read -- :math:`\pm\mathbf I`, :math:`\pm F`,
  :math:`-C\,\mathbf u\mathbf u^\top/n` or :math:`-\mathbf u\mathbf u^\top C/n` (a projection such as layer
  normalization's :math:`\hat{\mathbf x}\hat{\mathbf x}^\top/n`), the batch-mean terms :math:`-\overline{C}` and
  :math:`-\mathbf X\odot\overline{C\odot\mathbf X}` (batch normalization's coupling of the samples) (*missing term*,
  *extra term*); the padding cropped from the result (*padding forgotten*);
* **the stage's parameter-free layers' backward pass replaced** (target: the gradient at z[l]): an average whose
  divisor counts the real cells only (the padding not counted: *wrong normalizer*), and -- at given points -- the
  gradient of a tied maximum shared equally among the tied inputs, found with the layer's forward pass only
  (*tie convention*);
* **per-step decompositions** of a recurrent layer's gradient (the layer's ``bptt_contributions``): the claim is
  the last step's term only (*only the last step*), or :math:`\sum_t \bar{\mathbf p}_t\mathbf h_t^\top` where
  :math:`\sum_t \bar{\mathbf p}_t\mathbf h_{t-1}^\top` is needed (*wrong time index*).

As everywhere in the diagnosis, :mod:`.diagnose` names a candidate only when the corrected claim holds on every
instance *and* on fresh instances (other seeds); otherwise the claim keeps "no known mistake fits".
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .model import Mistake, Setting


@dataclass(frozen=True)
class NetCandidate:
    """A candidate correction: the mistake, its description, and a replacement formula (same signature as the
    claim's) or a setting on which the unchanged formula is evaluated instead."""

    mistake: Mistake
    text: str
    formula: Callable | None = None
    setting: Setting | None = None


# ============================================================================ helpers
def _data(q):
    """The instance behind a quantities object."""
    return object.__getattribute__(q, "_d")


def _call(formula, q, l):
    return formula(q) if l is None else formula(q, l)


def _num(v) -> np.ndarray | None:
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        return None
    return a


class _FamilyView:
    """A family read through a function of (value, index)."""

    def __init__(self, fam, fn):
        self._fam, self._fn = fam, fn

    def __getitem__(self, k):
        return self._fn(self._fam[k], k)

    def __contains__(self, k) -> bool:
        return k in self._fam


class _QView:
    """The quantities ``q`` with some families read through functions (``{name: fn(value, k)}``)."""

    def __init__(self, q, over: dict):
        object.__setattr__(self, "_q", q)
        object.__setattr__(self, "_over", over)

    def __getattr__(self, name):
        v = getattr(object.__getattribute__(self, "_q"), name)
        over = object.__getattribute__(self, "_over")
        return _FamilyView(v, over[name]) if name in over else v


def _same_layer(off: int) -> Callable:
    """Whether index ``k`` is ``l + off`` (``off`` itself for a claim without a layer)."""
    return lambda k, l: (l is not None and k == l + off) or (l is None and k == off)


# ============================================================================ setting variants
def _not_neutral(v, neutral: int) -> bool:
    return any(int(x) != neutral for x in np.ravel(v))


def _txt(v) -> str:
    vals = [int(x) for x in np.ravel(v)]
    return str(vals[0]) if len(set(vals)) == 1 else "×".join(map(str, vals))


def _network_variants(setting: Setting) -> list[NetCandidate]:
    """The network with one knob of one convolution or pooling layer changed (spec entries only)."""
    from .layer_networks import thaw_network

    layers = thaw_network(setting.network)
    if not all(isinstance(e, dict) for e in layers):
        return []
    out = []

    def variant(i, **ch):
        new = [dict(e) for e in layers]
        new[i] = {**layers[i], **ch}
        try:
            return replace(setting, network=new, input_shape=setting.input_shape, symbolic=None)
        except Exception:  # noqa: BLE001 - a variant the network refuses (shapes): not a candidate
            return None

    for i, e in enumerate(layers):
        t = e.get("type")
        name = f"layer {i + 1} ({t})"
        if t == "conv2d":
            s, p, d = e.get("stride", 1), e.get("padding", 0), e.get("dilation", 1)
            if _not_neutral(s, 1):
                out.append((variant(i, stride=1), Mistake.STRIDE_IGNORED,
                            f"the formula is right for stride 1, not stride {_txt(s)} ({name}): the stride is ignored"))
            if _not_neutral(p, 0):
                out.append((variant(i, padding=0), Mistake.PADDING_FORGOTTEN,
                            f"the formula is right without padding, not with padding {_txt(p)} ({name}): the zero "
                            "padding is forgotten"))
            if _not_neutral(d, 1):
                out.append((variant(i, dilation=1), Mistake.DILATION_IGNORED,
                            f"the formula is right for dilation 1, not dilation {_txt(d)} ({name}): the dilation is "
                            "ignored"))
            mode = e.get("mode", "correlation")
            other = "convolution" if mode == "correlation" else "correlation"
            out.append((variant(i, mode=other), Mistake.KERNEL_FLIP,
                        f"the formula is right for a {other} layer (the kernel flipped, rot180 K), not the setting's "
                        f"{mode} ({name})"))
        elif t in ("maxpool2d", "avgpool2d"):
            k = e.get("kernel_size")
            s = e.get("stride", None)
            s = k if s is None else s
            p = e.get("padding", 0)
            if k is not None and np.shape(s) == np.shape(k) and not np.array_equal(np.ravel(s), np.ravel(k)):
                out.append((variant(i, stride=k), Mistake.STRIDE_IGNORED,
                            f"the formula is right for stride {_txt(k)} (the window), not stride {_txt(s)} ({name}): "
                            "the stride is ignored (taken equal to the window)"))
            if _not_neutral(s, 1):
                out.append((variant(i, stride=1), Mistake.STRIDE_IGNORED,
                            f"the formula is right for stride 1, not stride {_txt(s)} ({name}): the stride is ignored"))
            if _not_neutral(p, 0):
                out.append((variant(i, padding=0), Mistake.PADDING_FORGOTTEN,
                            f"the formula is right without padding, not with padding {_txt(p)} ({name}): the padding "
                            "is forgotten"))
            if t == "maxpool2d":
                out.append((variant(i, type="avgpool2d"), Mistake.MAX_AS_AVERAGE,
                            f"the formula is average pooling's backward pass (1/k² spread over the window), but {name} "
                            "takes the maximum: max taken as average"))
            else:
                out.append((variant(i, type="maxpool2d"), Mistake.AVERAGE_AS_MAX,
                            f"the formula is max pooling's backward pass (routed to the window's maximum), but {name} "
                            "averages: average taken as max"))
    return [NetCandidate(m, t, setting=st) for st, m, t in out if st is not None]


def _batch_variant(setting: Setting) -> list[NetCandidate]:
    b = setting.batch
    if not any(int(x) > 1 for x in np.ravel(b)):
        return []
    try:
        st = replace(setting, batch=1, symbolic=None, points=())
    except Exception:  # noqa: BLE001 - a layer that needs a batch (batch normalization): no candidate
        return []
    return [NetCandidate(Mistake.REDUCTION, "the formula is right for one sample (N = 1) only: the other samples' "
                                            "terms are missing (e.g. one sample's gradient taken for the batch's sum)",
                         setting=st)]


def _kink_variant(setting: Setting) -> list[NetCandidate]:
    """ReLU'(0) = 1 for 0 (or 0 for 1) when the setting reaches the kink (given points, ``at_kink``)."""
    if not setting.points and not setting.at_kink:
        return []
    try:
        r = float(setting.conv().relu_at_zero)
    except Exception:  # noqa: BLE001
        return []
    other = 1.0 if r == 0.0 else 0.0
    try:
        st = replace(setting, relu_at_zero=other, symbolic=None)
    except Exception:  # noqa: BLE001
        return []
    return [NetCandidate(Mistake.KINK_CONVENTION,
                         f"the formula takes ReLU′(0) = {other:g}; the setting's convention is ReLU′(0) = {r:g} (it "
                         "differs only where a pre-activation is exactly 0)", setting=st)]


# ============================================================================ quantities read differently
def _accessed(logs: list) -> list[tuple[str, int, tuple]]:
    """(family, offset from l, shape) of every access whose shape is known, first instance's shape."""
    out: dict = {}
    for d, l, log in logs:
        for fam, k, ll, LL in log.accesses:
            off = k - ll if ll is not None else k
            sh = log.shapes.get((fam, k))
            if sh is not None and (fam, off) not in out:
                out[(fam, off)] = tuple(sh)
    return [(f, o, sh) for (f, o), sh in out.items()]


def _idx(off: int) -> str:
    return "l" if off == 0 else f"l{'+' if off > 0 else '-'}{abs(off)}"


def _transposed_arrays(claim, logs: list) -> list[NetCandidate]:
    out = []
    for fam, off, sh in _accessed(logs):
        if len(sh) >= 3 and sh[-1] == sh[-2] > 1:
            at = _same_layer(off)

            def formula(q, l=None, fam=fam, at=at):
                return _call(claim.formula, _QView(q, {fam: lambda v, k: np.swapaxes(v, -1, -2) if at(k, l) else v}), l)

            out.append(NetCandidate(Mistake.TRANSPOSE, f"{fam}[{_idx(off)}] should be transposed (its last two axes: "
                                                       f"{fam}ᵀ for {fam})", formula))
    return out


#: families that are the same quantity in another layout or scale (never offered as a factor)
_NOT_FACTORS = ("n",)


def _factor_families(d, fam: str, k: int, shape: tuple) -> list[str]:
    """Other families of layer ``k`` with the given shape (numeric)."""
    out = []
    for name, (items, _) in d.families.items():
        if name == fam or name in _NOT_FACTORS or k not in items:
            continue
        v = items[k]
        if callable(v) and not isinstance(v, np.ndarray):
            try:
                v = v()
            except Exception:  # noqa: BLE001
                continue
        if isinstance(v, np.ndarray) and v.shape == shape and v.dtype != object and np.any(v != 0) \
                and not np.allclose(v, 1.0):
            out.append(name)
    return out


def _missing_factor_reads(claim, logs: list, first) -> list[NetCandidate]:
    """A quantity read where its product with another quantity of the layer is needed (Σ dY for Σ dY ⊙ x̂)."""
    out = []
    d0, l0, _ = first
    for fam, off, sh in _accessed(logs):
        if len(sh) < 1 or int(np.prod(sh)) < 2:
            continue
        k0 = (l0 + off) if l0 is not None else off
        for g in _factor_families(d0, fam, k0, sh):
            at = _same_layer(off)

            def formula(q, l=None, fam=fam, g=g, at=at):
                other = getattr(q, g)
                return _call(claim.formula, _QView(q, {fam: lambda v, k: v * other[k] if at(k, l) else v}), l)

            out.append(NetCandidate(Mistake.MISSING_FACTOR,
                                    f"a factor {g}[{_idx(off)}] missing: the formula holds with {fam}[{_idx(off)}] ⊙ "
                                    f"{g}[{_idx(off)}] where it reads {fam}[{_idx(off)}]", formula))
    return out


# ============================================================================ the value corrected
def _vectors(d, l) -> dict[str, Callable]:
    """Vectors of layer ``l`` (parameters, intermediates) and σ′(z[l]) of its elementwise activation, by name,
    each as a function of the instance (read fresh on every instance)."""
    out: dict = {}
    if l is None:
        return out
    for name, (items, _) in d.families.items():
        if l not in items or name in ("n",):
            continue
        v = items[l]
        if callable(v) and not isinstance(v, np.ndarray):
            continue
        if isinstance(v, np.ndarray) and v.dtype != object and (v.ndim == 1 or (v.ndim == 2 and v.shape[1] == 1)) \
                and v.size > 1:
            out[f"{name}[l]"] = (lambda dd, ll, name=name: np.ravel(np.asarray(dd.families[name][0][ll], dtype=float)))
    act = getattr(d, "activations", {}).get(l)
    if act is not None and getattr(act, "elementwise", False):
        out["σ′(z[l])"] = (lambda dd, ll: np.ravel(dd.activations[ll].derivative(
            np.asarray(dd.cache.z[ll][0], dtype=float).reshape(1, -1))))
    return out


def _diag_factors(claim, first) -> list[NetCandidate]:
    d0, l0, _ = first
    out = []
    for name, get in _vectors(d0, l0).items():
        for inv in (False, True):
            for side in ("left", "right"):
                def formula(q, l=None, get=get, inv=inv, side=side):
                    C = _num(_call(claim.formula, q, l))
                    v = get(_data(q), l)
                    if inv:
                        if np.any(v == 0):
                            raise ZeroDivisionError("a zero entry")
                        v = 1.0 / v
                    if C is None or C.ndim != 2:
                        raise ValueError("not a matrix")
                    if side == "left":
                        if C.shape[0] != v.size:
                            raise ValueError("shapes")
                        return v[:, None] * C
                    if C.shape[1] != v.size:
                        raise ValueError("shapes")
                    return C * v[None, :]

                t = f"1/{name}" if inv else name
                where = f"diag({t}) times the claim" if side == "left" else f"the claim times diag({t})"
                out.append(NetCandidate(Mistake.MISSING_FACTOR, f"a factor {t} missing: the truth is {where}", formula))
    return out


def _batch_axis(d) -> int:
    return 0 if getattr(getattr(d, "conv", None), "batch_axis", "first") == "first" else 1


def _term_candidates(claim, logs: list, first) -> list[NetCandidate]:
    d0, l0, o0 = first
    out = []
    acc = _accessed(logs)

    def add(mistake, text, term):
        def formula(q, l=None, term=term):
            C = _num(_call(claim.formula, q, l))
            if C is None or not np.any(C):
                raise ValueError("not numeric, or 0 (a claim of 0 misses every term: no diagnosis)")
            return C + term(C, q, l)

        out.append(NetCandidate(mistake, text, formula))

    # ± I (a residual connection's identity)
    add(Mistake.MISSING_TERM, "a term I missing: the truth is the claim + I (e.g. a residual connection's identity "
                              "path)", lambda C, q, l: _eye_like(C))
    add(Mistake.EXTRA_TERM, "an extra term I: the truth is the claim − I", lambda C, q, l: -_eye_like(C))
    # ± a quantity the claim read, of the claim's shape
    for fam, off, sh in acc:
        at = f"{fam}[{_idx(off)}]"
        get = (lambda q, l, fam=fam, off=off: _num(getattr(q, fam)[(l + off) if l is not None else off]))
        add(Mistake.MISSING_TERM, f"a term {at} missing: the truth is the claim + {at}",
            lambda C, q, l, get=get: _same_shape(get(q, l), C))
        add(Mistake.EXTRA_TERM, f"an extra term {at}: the truth is the claim − {at}",
            lambda C, q, l, get=get: -_same_shape(get(q, l), C))
    # projections: −C u uᵀ/n, −u uᵀ C/n (u a vector the claim read, or 1)
    vecs = [("1", None)] + [(f"{fam}[{_idx(off)}]", (fam, off)) for fam, off, sh in acc
                            if len(sh) == 2 and sh[1] == 1 and sh[0] > 1 or len(sh) == 1 and sh[0] > 1]
    for uname, src in vecs:
        def u_of(q, l, C, src=src, axis=None):
            if src is None:
                return np.ones(C.shape[axis])
            fam, off = src
            return np.ravel(_num(getattr(q, fam)[(l + off) if l is not None else off]))

        for side in ("right", "left"):
            for sign in (-1, 1):
                def term(C, q, l, side=side, sign=sign, u_of=u_of):
                    if C.ndim != 2:
                        raise ValueError("not a matrix")
                    u = u_of(q, l, C, axis=1 if side == "right" else 0)
                    n = u.size
                    if side == "right":
                        return sign * (C @ u)[:, None] * u[None, :] / n
                    return sign * u[:, None] * (u @ C)[None, :] / n

                uu = "11ᵀ" if src is None else f"{uname}{uname}ᵀ"
                sg = "−" if sign < 0 else "+"
                expr = f"{sg}C·{uu}/n" if side == "right" else f"{sg}{uu}·C/n"
                kind = Mistake.MISSING_TERM if sign < 0 else Mistake.EXTRA_TERM
                what = (f"a term {expr} missing (C the claim, n = {'its width' if src is None else f'the size of {uname}'}):"
                        f" the truth is {'C(I − ' + uu + '/n)' if side == 'right' else '(I − ' + uu + '/n)C'}"
                        if sign < 0 else f"an extra term: the truth is the claim {expr}")
                add(kind, what, term)
    # the batch-mean terms of a batch-shaped claim: −mean_i C, −X ⊙ mean_i(C ⊙ X)
    N = getattr(d0, "N", 1)
    if N > 1:
        ax = _batch_axis(d0)
        batch_fams = [(fam, off) for fam, off, sh in acc if len(sh) == 2 and sh[ax] == N]

        def mean_term(C, q, l):
            if C.ndim != 2 or C.shape[ax] != N:
                raise ValueError("not a batch")
            return -C.mean(axis=ax, keepdims=True) * np.ones_like(C)

        add(Mistake.MISSING_TERM, "the batch-mean term −mean_i(C) missing (C the claim): the samples are coupled "
                                  "through the batch mean", mean_term)
        for fam, off in batch_fams:
            at = f"{fam}[{_idx(off)}]"

            def proj(C, q, l, fam=fam, off=off):
                X = _same_shape(_num(getattr(q, fam)[(l + off) if l is not None else off]), C)
                return -X * (C * X).mean(axis=ax, keepdims=True)

            add(Mistake.MISSING_TERM, f"the batch-mean term −{at} ⊙ mean_i({at} ⊙ C) missing (C the claim): the "
                                      "samples are coupled through the batch statistics", proj)
            add(Mistake.MISSING_TERM, f"the batch-mean terms −mean_i(C) − {at} ⊙ mean_i({at} ⊙ C) missing (C the "
                                      "claim): the coupling of the samples through the batch mean and variance is "
                                      "dropped", lambda C, q, l, proj=proj: mean_term(C, q, l) + proj(C, q, l))
    return out


def _eye_like(C):
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] < 2:
        raise ValueError("not a square matrix")
    return np.eye(C.shape[0])


def _same_shape(X, C):
    if X is None or X.shape != C.shape:
        raise ValueError("shapes differ")
    return X


def _crop_candidates(claim, setting: Setting) -> list[NetCandidate]:
    """The padding not cropped from the result: crop p from both ends of the last two axes."""
    from .layer_networks import thaw_network

    pads = set()
    for e in thaw_network(setting.network):
        if isinstance(e, dict) and e.get("type") in ("conv2d", "maxpool2d", "avgpool2d"):
            p = e.get("padding", 0)
            vals = tuple(int(x) for x in np.ravel(p))
            if any(vals):
                pads.add(vals if len(vals) == 2 else (vals[0], vals[0]))
    out = []
    for ph, pw in sorted(pads):
        def formula(q, l=None, ph=ph, pw=pw):
            C = _num(_call(claim.formula, q, l))
            if C is None or C.ndim < 2 or C.shape[-2] <= 2 * ph or C.shape[-1] <= 2 * pw:
                raise ValueError("too small to crop")
            return C[..., ph:C.shape[-2] - ph, pw:C.shape[-1] - pw]

        out.append(NetCandidate(Mistake.PADDING_FORGOTTEN,
                                f"the padding is not cropped: the truth is the claim with {ph}×{pw} entries cropped from "
                                "each side (the padded input's gradient, cut back to the input)", formula))
    return out


# ============================================================================ averages over the real cells only
def _averaging_layers(d, L: int) -> list[int]:
    """Indices (in the stage's parameter-free layers) of the linear layers whose output on an all-ones input is
    below 1 somewhere and positive everywhere: averages whose windows overlap a zero padding (the divisor counts
    the padding)."""
    out = []
    try:
        steps = d.net.post_steps(d.cache, L)
        post = list(d.net.stages[L - 1].post)
    except Exception:  # noqa: BLE001
        return out
    rng = np.random.default_rng(0)
    for layer, A, O in steps:
        A = np.asarray(A, dtype=float)
        try:
            ones = np.asarray(layer.forward(np.ones_like(A), {}), dtype=float)
            A1, A2 = rng.standard_normal(A.shape), rng.standard_normal(A.shape)
            lin = np.allclose(layer.forward(A1 + 2 * A2, {}), np.asarray(layer.forward(A1, {})) + 2 * np.asarray(
                layer.forward(A2, {})), atol=1e-12)
        except Exception:  # noqa: BLE001
            continue
        if lin and ones.size and float(ones.min()) > 0 and float(ones.min()) < 1 - 1e-12 and float(ones.max()) <= 1 + 1e-12:
            out.append(next(j for j, p in enumerate(post) if p is layer))
    return out


def _post_chain_candidate(claim, j: int, vjp_j: Callable) -> Callable:
    """A formula that is the claim corrected by (the gradient at z[l] through the stage's parameter-free layers with
    layer ``j``'s backward pass replaced by ``vjp_j(layer, A, O, G)``) − (the truth): it holds when the claim is
    that other backward pass."""
    from .targets import _truth

    def formula(q, l=None):
        C = _num(_call(claim.formula, q, l))
        dd, L = _data(q), l + claim.target_offset
        G = np.asarray(dd.grad_a_samples(L), dtype=float)
        for layer, A, O in dd.net.post_steps(dd.cache, L):
            G = G.reshape(O.shape[0], -1)
            if layer is dd.net.stages[L - 1].post[j]:
                G = vjp_j(layer, np.asarray(A, dtype=float), np.asarray(O, dtype=float), G)
            else:
                G = np.asarray(layer.vjp_input(A, O, G, {}), dtype=float)
        R = G.reshape(G.shape[0], -1)[0]
        T = _num(_truth(dd, claim.target, L, claim.form))
        if C is None or T is None or C.size != R.size or C.shape != T.shape:
            raise ValueError("shapes differ")
        return C - R.reshape(C.shape) + T

    return formula


def _real_cells_vjp(layer, A, O, G):
    w = np.asarray(layer.forward(np.ones_like(A), {}), dtype=float).reshape(O.shape[0], -1)
    return np.asarray(layer.vjp_input(A, O, G / w, {}), dtype=float)


def _tied_windows(layer, a: np.ndarray, delta: float = 1e-2) -> list[list[int]]:
    """For one sample ``a``: for each output entry, the inputs tied at its value that it follows with slope 1 (the
    tied maxima of its window), found with the layer's forward pass only (raise one input by ``delta``)."""
    o = np.asarray(layer.forward(a[None], {}), dtype=float)[0].ravel()
    flat = a.ravel()
    tied: list[list[int]] = [[] for _ in range(o.size)]
    for i in range(flat.size):
        same = o == flat[i]
        if not np.any(same):
            continue
        b = flat.copy()
        b[i] += delta
        ob = np.asarray(layer.forward(b.reshape(a.shape)[None], {}), dtype=float)[0].ravel()
        for k in np.nonzero(same & (np.abs(ob - o - delta) <= 1e-12))[0]:
            tied[k].append(i)
    return tied


def _shared_ties_vjp(layer, A, O, G):
    """The backward pass with the gradient of every output entry tied between m ≥ 2 inputs shared equally (1/m)."""
    out = []
    for n in range(A.shape[0]):
        tied = _tied_windows(layer, A[n])
        g = G[n].copy()
        multi = [k for k, t in enumerate(tied) if len(t) >= 2]
        g[multi] = 0.0
        gin = np.asarray(layer.vjp_input(A[n:n + 1], O[n:n + 1], g[None], {}), dtype=float).reshape(-1)
        for k in multi:
            gin[tied[k]] += G[n, k] / len(tied[k])
        out.append(gin)
    return np.array(out)


def _post_layer_candidates(claim, first, points: bool) -> list[NetCandidate]:
    """Candidates through the stage's parameter-free layers (target: the gradient at z[l]): an average over the real
    cells only (divisor without the padding), and -- at given points -- ties shared among the tied maxima."""
    d0, l0, _ = first
    if l0 is None or claim.target not in ("dout", "delta") or not hasattr(d0, "net"):
        return []
    L0 = l0 + claim.target_offset
    out = []
    for j in _averaging_layers(d0, L0):
        kind = getattr(d0.net.stages[L0 - 1].post[j], "kind", "the average")
        out.append(NetCandidate(Mistake.NORMALIZER, f"averaged over the real cells only: the formula divides each window "
                                                    f"by its number of real cells, the layer ({kind}) by the full window "
                                                    "size (the zero padding counted, PyTorch's count_include_pad=True)",
                                _post_chain_candidate(claim, j, _real_cells_vjp)))
    if points:
        try:
            steps = d0.net.post_steps(d0.cache, L0)
            post = list(d0.net.stages[L0 - 1].post)
        except Exception:  # noqa: BLE001
            steps, post = [], []
        for j, layer in enumerate(post):
            if not any(layer is st[0] for st in steps):
                continue
            kind = getattr(layer, "kind", "the layer")
            out.append(NetCandidate(Mistake.TIE_CONVENTION,
                                    f"the formula shares the gradient equally among tied maxima; the layer ({kind}) "
                                    "routes it to one of them (the first in row-major order, PyTorch's rule) -- they "
                                    "differ only at ties", _post_chain_candidate(claim, j, _shared_ties_vjp)))
    return out


# ============================================================================ recurrent layers: per-step terms
def _recurrent_candidates(claim, first) -> list[NetCandidate]:
    d0, l0, _ = first
    target = claim.target
    if l0 is None or not isinstance(target, str) or not target.startswith("grad:") or not hasattr(d0, "net"):
        return []
    wrt = target.split(":", 1)[1]
    try:
        layer = d0.net.stages[l0 + claim.target_offset - 1].layer
    except (AttributeError, IndexError, TypeError):
        return []
    if not hasattr(layer, "bptt_contributions") or wrt not in getattr(layer, "param_names", ()):
        return []

    def parts(dd, l):
        """(per-step contributions of the reduced cost (T, *shape), the trajectory, the per-sample cotangents)."""
        ly = dd.net.stages[l - 1].layer
        red = 1.0 / dd.N if dd.conv.reduction == "mean" else 1.0
        A = np.asarray(dd.cache.a[l - 1], dtype=float)
        G = np.asarray(dd.delta_samples(l), dtype=float).reshape(dd.cache.z[l].shape) * red
        P = dd.cache.params[l]
        return ly, A, G, P, np.asarray(ly.bptt_contributions(A, P, G, wrt=wrt), dtype=float)

    def last_only(q, l=None):
        C = _num(_call(claim.formula, q, l))
        _, _, _, _, S = parts(_data(q), l + claim.target_offset)
        return C + S[:-1].sum(axis=0).reshape(C.shape) if C is not None and C.size == S[0].size else C

    out = [NetCandidate(Mistake.LAST_STEP_ONLY, "only the last step's term of the sum over time: the gradient is the "
                                                "sum of the per-step terms Σ_t (backpropagation through all T steps, "
                                                "not truncated to one)", last_only)]
    bias = [b for b in getattr(layer, "param_names", ()) if b not in ("W_ih", "W_hh")]
    if wrt == "W_hh" and bias:
        for shift in (1, -1):
            def shifted(q, l=None, shift=shift):
                C = _num(_call(claim.formula, q, l))
                ly, A, G, P, S = parts(_data(q), l + claim.target_offset)
                if C is None or C.shape != S[0].shape:
                    raise ValueError("shapes differ")
                wrong = np.zeros_like(C)
                for n in range(A.shape[0]):
                    pb = np.asarray(ly.bptt_contributions(A[n], P, G[n], wrt=bias[0]), dtype=float)  # (T, G)
                    h = np.asarray(ly.trajectory(A[n:n + 1], P).h, dtype=float)[:, 0]  # (T + 1, H)
                    for t in range(pb.shape[0]):  # step t + 1 reads h_t; the slip reads h_{t + shift}
                        j = t + shift
                        if 0 <= j < h.shape[0]:
                            wrong += np.outer(pb[t], h[j])
                return C - wrong + S.sum(axis=0)

            a, b = ("h_t", "h_{t−1}") if shift == 1 else ("h_{t−2}", "h_{t−1}")
            out.append(NetCandidate(Mistake.TIME_INDEX, f"{a} used where {b} is needed: the gradient is Σ_t p̄_t "
                                                        f"{b}ᵀ (wrong time index)", shifted))
    return out


# ============================================================================ all
def network_candidates(claim, base, logs: list) -> list[NetCandidate]:
    """The candidates of this module for a failing claim (``base`` its run, ``logs`` its access logs)."""
    setting = claim.setting
    out: list[NetCandidate] = []
    out += _kink_variant(setting)
    numeric = [(d, l, lg) for d, l, lg in logs if not d.symbolic]
    first = next(((d, l, o) for d, l, o in base.outcomes if not d.symbolic), None)
    if setting.network is not None:
        out += _network_variants(setting)
        out += _crop_candidates(claim, setting)
    if first is None:
        return out
    out += _transposed_arrays(claim, numeric)
    out += _recurrent_candidates(claim, first)
    out += _post_layer_candidates(claim, first, bool(setting.points))
    if setting.network is not None:
        out += _missing_factor_reads(claim, numeric, first)
        out += _diag_factors(claim, first)
        out += _term_candidates(claim, numeric, first)
        out += _batch_variant(setting)
    return out
