"""Multi-channel convolution with stride, padding and dilation, and pooling with stride ≠ window and padding
(issue 14, item 2): claims from Dumoulin & Visin (*A guide to convolution arithmetic*, 2016) and the CS231n
notes, true and wrong (stride ignored, kernel flipped, padding forgotten, max taken as average), judged as
network claims over the package's Conv2d / MaxPool2d / AvgPool2d layers and -- single channel -- as LaTeX
formulas whose truth the judge computes exactly (:mod:`jacobian_bp.claims.exact_conv`).

Oracles: the claims' loop definitions written here (a correct one must hold, a wrong one must fail), and
PyTorch autograd of ``F.conv2d`` / ``F.max_pool2d`` / ``F.avg_pool2d`` for the truths themselves.
"""
from __future__ import annotations

import numpy as np
import pytest

from jacobian_bp.claims import (FAILS, HOLDS, ILL_TYPED, NO_KNOWN_MISTAKE, Claim, Mistake, Setting, build_instances, check,
                                check_latex)
from jacobian_bp.claims.targets import target_function


def conv_setting(s, p, d, bias="tied"):
    return Setting(None, network=[{"type": "conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3, "stride": s,
                                   "padding": p, "dilation": d, "bias": bias}, {"type": "tanh"}, {"type": "flatten"},
                                  {"type": "dense", "out_features": 2}], input_shape=(2, 7, 8), batch=2)


CONV_S2P1 = conv_setting(2, 1, 1)
CONV_D2 = conv_setting(1, 0, 2)
KNOBS = {CONV_S2P1: (2, 1, 1), CONV_D2: (1, 0, 2)}


# ----------------------------------------------------------------------------- the closed forms (loop definitions)
def dK(q, l, s, p, d, flip=False, pad=True):
    """Dumoulin-Visin §2 / CS231n: ∂ℓ/∂K[o, c, u, v] = Σ_n Σ_{i,j} dY[n, o, i, j] X̃[n, c, i s + u d, j s + v d]
    (X̃ the zero-padded input); summed over the batch."""
    Xs, Gs = q.Inp[l], q.dOut[l]
    O, C, kh, kw = q.K_[l].shape
    out = np.zeros((O, C, kh, kw))
    for n in range(Xs.shape[0]):
        X = np.pad(np.asarray(Xs[n]), ((0, 0), (p, p), (p, p))) if pad else np.asarray(Xs[n])
        G = np.asarray(Gs[n])
        Ho, Wo = G.shape[1:]
        for u in range(kh):
            for v in range(kw):
                win = X[:, u * d: u * d + s * (Ho - 1) + 1: s, v * d: v * d + s * (Wo - 1) + 1: s]
                if win.shape[1:] != (Ho, Wo):
                    raise ValueError(f"the kernel offset ({u}, {v}) leaves the input")
                out[:, :, u, v] += np.einsum("oij,cij->oc", G, win)
    return out[:, :, ::-1, ::-1] if flip else out


def dX(q, l, s, p, d, flip=False, crop=True):
    """Dumoulin-Visin §4: the input gradient is the transposed convolution: every dY[o, i, j] K[o, c, :, :] added at
    (i s + u d, j s + v d) of the padded input, then the padding cropped."""
    X, G, K = np.asarray(q.inp[l]), np.asarray(q.dout[l]), np.asarray(q.K_[l])
    C, H, W = X.shape
    O, _, kh, kw = K.shape
    if flip:
        K = K[:, :, ::-1, ::-1]
    Xp = np.zeros((C, H + 2 * p, W + 2 * p))
    for i in range(G.shape[1]):
        for j in range(G.shape[2]):
            for u in range(kh):
                for v in range(kw):
                    Xp[:, i * s + u * d, j * s + v * d] += G[:, i, j] @ K[:, :, u, v]
    return Xp[:, p:p + H, p:p + W] if crop else Xp


def conv_claims(S):
    s, p, d = KNOBS[S]
    M = Mistake
    return [
        ("dK = X̃ ⋆_s dY", lambda q, l: dK(q, l, s, p, d), "grad:K", S, HOLDS, None),
        ("dK, stride ignored", lambda q, l: dK(q, l, 1, p, d), "grad:K", S, FAILS if s > 1 else HOLDS,
         M.STRIDE_IGNORED if s > 1 else None),
        ("dK, kernel flipped", lambda q, l: dK(q, l, s, p, d, flip=True), "grad:K", S, FAILS, M.KERNEL_FLIP),
        ("dK, padding forgotten", lambda q, l: dK(q, l, s, p, d, pad=False), "grad:K", S, ILL_TYPED if p else HOLDS,
         M.PADDING_FORGOTTEN if p else None),
        ("dK, dilation ignored", lambda q, l: dK(q, l, s, p, 1), "grad:K", S, FAILS if d > 1 else HOLDS,
         M.DILATION_IGNORED if d > 1 else None),
        ("dX = transposed convolution", lambda q, l: dX(q, l, s, p, d), "dinp", S, HOLDS, None),
        ("dX, kernel flipped", lambda q, l: dX(q, l, s, p, d, flip=True), "dinp", S, FAILS, M.KERNEL_FLIP),
        ("dX, stride ignored", lambda q, l: dX(q, l, 1, p, d), "dinp", S, FAILS if s > 1 else HOLDS,
         M.STRIDE_IGNORED if s > 1 else None),
        ("dX, padding not cropped", lambda q, l: dX(q, l, s, p, d, crop=False), "dinp", S, ILL_TYPED if p else HOLDS,
         M.PADDING_FORGOTTEN if p else None),
        ("db = Σ dY", lambda q, l: q.np.sum(q.dOut[l], axis=(0, 2, 3))[:, None], "grad:b", S, HOLDS, None),
        ("db, one sample only", lambda q, l: q.np.sum(q.dOut[l][0], axis=(1, 2))[:, None], "grad:b", S, FAILS,
         M.REDUCTION),
    ]


CONV_CLAIMS = conv_claims(CONV_S2P1) + conv_claims(CONV_D2)


@pytest.mark.parametrize("name, formula, target, setting, verdict, mistake", CONV_CLAIMS,
                         ids=[f"{c[0]} [s,p,d={KNOBS[c[3]]}]" for c in CONV_CLAIMS])
def test_multichannel_conv_claims(name, formula, target, setting, verdict, mistake):
    r = check(Claim(name, formula, target, setting, layers=[1]))
    assert r.verdict == verdict, r.summary()
    if verdict == HOLDS:
        assert not r.diagnosis
    else:  # the named diagnosis, verified on fresh instances (issue 14)
        assert r.diagnosis and r.diagnosis[0].mistake == mistake and r.diagnosis[0].verified > 0, r.summary()


def test_conv_truths_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for S, (s, p, d) in KNOBS.items():
        inst = build_instances(S)[0]
        X = torch.tensor(inst.Xb, requires_grad=True)
        K = torch.tensor(inst.params["K1"], requires_grad=True)
        b = torch.tensor(inst.params["b1"], requires_grad=True)
        W2, b2 = torch.tensor(inst.params["W2"]), torch.tensor(inst.params["b2"])
        Z = F.conv2d(X, K, b, stride=s, padding=p, dilation=d)
        out = torch.tanh(Z).reshape(X.shape[0], -1) @ W2.T + b2
        ((out - torch.tensor(inst.Yb)) ** 2).sum().backward()
        assert np.allclose(target_function("grad:K")(inst, 1), K.grad.numpy(), atol=1e-10)
        assert np.allclose(target_function("grad:b")(inst, 1).ravel(), b.grad.numpy(), atol=1e-10)
        assert np.allclose(target_function("dinp")(inst, 1), X.grad.numpy()[0], atol=1e-10)


# ----------------------------------------------------------------------------- pooling, stride ≠ window, padding
def pool_setting(kind):
    return Setting(None, network=[{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 2},
                                  {"type": kind, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "flatten"},
                                  {"type": "dense", "out_features": 2}], input_shape=(1, 7, 8))


MAXP, AVGP = pool_setting("maxpool2d"), pool_setting("avgpool2d")


def pool_backward(q, l, how, k=3, s=2, p=1):
    """CS231n: max pooling routes each upstream entry to its window's maximum (overlapping windows add up);
    average pooling spreads it as 1/k² over the window (zero padding counted, PyTorch's default)."""
    Z = np.asarray(q.out[l])  # (C, H, W), the pooling's input
    C, H, W = Z.shape
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    G = np.asarray(q.grad_a[l]).reshape(C, Ho, Wo)
    out = np.zeros_like(Z)
    for c in range(C):
        for i in range(Ho):
            for j in range(Wo):
                cells = [(i * s + u - p, j * s + v - p) for u in range(k) for v in range(k)
                         if 0 <= i * s + u - p < H and 0 <= j * s + v - p < W]
                if how == "max":
                    best = max(cells, key=lambda t: Z[c][t])
                    out[c][best] += G[c, i, j]
                else:
                    for t in cells:
                        out[c][t] += G[c, i, j] / (k * k if how == "avg" else len(cells))
    return out


POOL_CLAIMS = [
    ("max pooling: route to the maximum", lambda q, l: pool_backward(q, l, "max"), MAXP, HOLDS, None),
    ("max pooling, stride ignored (s = k)", lambda q, l: pool_backward(q, l, "max", s=3), MAXP, ILL_TYPED,
     Mistake.STRIDE_IGNORED),
    ("max pooling, padding forgotten", lambda q, l: pool_backward(q, l, "max", p=0), MAXP, ILL_TYPED,
     Mistake.PADDING_FORGOTTEN),
    ("max pooling taken as average", lambda q, l: pool_backward(q, l, "avg"), MAXP, FAILS, Mistake.MAX_AS_AVERAGE),
    ("average pooling: 1/k² over the window", lambda q, l: pool_backward(q, l, "avg"), AVGP, HOLDS, None),
    ("average pooling over the real cells only", lambda q, l: pool_backward(q, l, "count"), AVGP, FAILS,
     Mistake.NORMALIZER),
    ("average pooling taken as max", lambda q, l: pool_backward(q, l, "max"), AVGP, FAILS, Mistake.AVERAGE_AS_MAX),
]


@pytest.mark.parametrize("name, formula, setting, verdict, mistake", POOL_CLAIMS, ids=[c[0] for c in POOL_CLAIMS])
def test_pooling_claims_stride_and_padding(name, formula, setting, verdict, mistake):
    r = check(Claim(name, formula, "dout", setting, layers=[1]))
    assert r.verdict == verdict, r.summary()
    if verdict == HOLDS:
        assert not r.diagnosis
    elif mistake is None:
        assert not r.diagnosis and r.diagnosis_note == NO_KNOWN_MISTAKE, r.summary()
    else:
        assert r.diagnosis and r.diagnosis[0].mistake == mistake and r.diagnosis[0].verified > 0, r.summary()


def test_pooling_truths_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for S, pool in ((MAXP, F.max_pool2d), (AVGP, F.avg_pool2d)):
        inst = build_instances(S)[0]
        Z = torch.tensor(inst.cache.z[1], requires_grad=True)
        out = pool(Z, 3, 2, 1).reshape(1, -1) @ torch.tensor(inst.params["W2"]).T + torch.tensor(inst.params["b2"])
        ((out - torch.tensor(inst.Yb)) ** 2).sum().backward()
        assert np.allclose(target_function("dout")(inst, 1), Z.grad.numpy()[0], atol=1e-10)


# ----------------------------------------------------------------------------- the judge (LaTeX), one channel
_POOL = {"pool": 3, "stride": 2, "padding": 1}
LATEX = [
    (r"\frac{\partial}{\partial X} \langle G, \operatorname{maxpool}(X) \rangle = \operatorname{maxunpool}(G, X)",
     _POOL, HOLDS, None),
    (r"\frac{\partial}{\partial X} \langle G, \operatorname{maxpool}(X) \rangle = \operatorname{maxunpool}(G, X)",
     {"pool": 2}, HOLDS, None),
    (r"\frac{\partial}{\partial X} \langle G, \operatorname{maxpool}(X) \rangle = \operatorname{upsample}_{k}(G) \odot "
     r"\operatorname{maxmask}(X)", _POOL, ILL_TYPED, None),
    (r"\frac{\partial}{\partial X} \langle G, \operatorname{avgpool}(X) \rangle = \frac{1}{k^2} \operatorname{crop}_{p}"
     r"(\operatorname{full}(\operatorname{dilate}_{s}(G), \mathbf{1}_{k} \mathbf{1}_{k}^\top))", _POOL, HOLDS, None),
    (r"\frac{\partial}{\partial X} \langle G, \operatorname{avgpool}(X) \rangle = \frac{1}{k^2} \operatorname{crop}_{p}"
     r"(\operatorname{full}(G, \mathbf{1}_{k} \mathbf{1}_{k}^\top))", _POOL, FAILS, "stride ignored"),
    (r"\frac{\partial}{\partial X} \langle G, \operatorname{avgpool}(X) \rangle = \operatorname{crop}_{p}"
     r"(\operatorname{full}(\operatorname{dilate}_{s}(G), \mathbf{1}_{k} \mathbf{1}_{k}^\top))", _POOL, FAILS, "wrong normalizer"),
]


@pytest.mark.parametrize("latex, setting, verdict, diagnosis", LATEX, ids=range(len(LATEX)))
def test_judge_pooling_with_stride_and_padding(latex, setting, verdict, diagnosis):
    v = check_latex(latex, setting, shapes={"X": (5, 7)} if setting.get("padding") else {"X": (4, 6)})
    assert v.verdict == verdict, str(v)
    if diagnosis:
        assert v.diagnosis == diagnosis, str(v)
    if verdict == HOLDS:
        assert "Pool2d layer Jacobians agree" in v.confidence


def test_judge_pooling_truth_against_torch():
    torch = pytest.importorskip("torch")
    from jacobian_bp.claims.judge import _Judge, claim_from_latex

    F = torch.nn.functional
    for op, pool in (("maxpool", F.max_pool2d), ("avgpool", F.avg_pool2d)):
        claim = claim_from_latex(rf"\frac{{\partial}}{{\partial X}} \langle G, \operatorname{{{op}}}(X) \rangle = G",
                                 _POOL, shapes={"X": (5, 7)})
        j = _Judge(claim)
        env, T = j.truths[0]["float_env"], j.arranged(j.truths[0], claim.layout, False)
        X = torch.tensor(env["X"][None, None], dtype=torch.float64, requires_grad=True)
        (pool(X, 3, 2, 1) * torch.tensor(env["G"][None, None])).sum().backward()
        assert np.allclose(T, X.grad.numpy()[0, 0], atol=1e-12)


def test_legacy_pooling_still_needs_tiling():
    """Without stride or padding knobs the window must tile the input, as before."""
    v = check_latex(r"\frac{\partial}{\partial X} \langle G, \operatorname{avgpool}(X) \rangle = \frac{1}{k^2} "
                    r"\operatorname{upsample}_{k}(G)", {"pool": 2}, shapes={"X": (4, 6)})
    assert v.verdict == HOLDS


# ----------------------------------------------------------------------------- multi-channel: exact truth, second opinion
def _fracs(rng, shape):
    from fractions import Fraction

    return np.vectorize(lambda v: Fraction(int(v), 7), otypes=[object])(rng.integers(-20, 21, size=shape))


@pytest.mark.parametrize("knobs", [{"s": 2, "p": 1, "d": 1}, {"s": 1, "p": 0, "d": 2}, {"s": 2, "p": 0, "d": 1,
                                                                                        "mode": "convolution"}],
                         ids=["s2p1", "d2", "s2-convolution"])
def test_multichannel_exact_truth_and_second_opinion_against_torch(knobs):
    """⟨G, conv(X, K)⟩ with X (2, 7, 6), K (3, 2, 3, 2): the exact forward-mode derivative (Fractions, loop
    definition of exact_conv) and the Conv2d layer's Jacobians both equal torch's autograd; the single-channel
    notation keeps its meaning on channels (K: X̃ ⋆ dilate_s(G); X: crop_p(full(dilate_s(G), rot180(K))))."""
    torch = pytest.importorskip("torch")
    from fractions import Fraction

    from jacobian_bp.claims.derivative import Instance, forward_derivative
    from jacobian_bp.claims.exact_eval import evaluate
    from jacobian_bp.claims.formula_tree import Node, sym
    from jacobian_bp.claims.layer_opinion import layer_opinion

    rng = np.random.default_rng(3)
    s, p, d = knobs["s"], knobs["p"], knobs["d"]
    X, K = _fracs(rng, (2, 7, 6)), _fracs(rng, (3, 2, 3, 2))
    Kt = torch.tensor(K.astype(float)[:, :, ::-1, ::-1].copy() if knobs.get("mode") == "convolution" else K.astype(float),
                      requires_grad=True)
    Xt = torch.tensor(X.astype(float), requires_grad=True)
    Y = torch.nn.functional.conv2d(Xt[None], Kt, stride=s, padding=p, dilation=d)[0]
    G = _fracs(rng, tuple(Y.shape))
    (Y * torch.tensor(G.astype(float))).sum().backward()
    dK = Kt.grad.numpy()[:, :, ::-1, ::-1] if knobs.get("mode") == "convolution" else Kt.grad.numpy()
    inst = Instance(env={"X": X, "K": K, "G": G}, dims={})
    f = Node("inner", (sym("G"), Node("conv2d", (sym("X"), sym("K")))))
    for wrt, truth in (("K", dK), ("X", Xt.grad.numpy())):
        D, fshape = forward_derivative(f, wrt, inst, knobs)
        assert fshape == (1, 1) and isinstance(D[0, 0].flat[0], Fraction)
        assert np.allclose(D[0, 0].astype(float), truth, atol=1e-12), wrt
        assert np.allclose(layer_opinion(f, wrt, knobs, inst), truth, atol=1e-12), wrt
    if knobs.get("mode") == "convolution" or d != 1:
        return
    env = {k: v.astype(float) for k, v in inst.env.items()}
    dil = Node("dilate", (sym("G"),), (("p", "s"),))
    claimed_K = Node("corr", (Node("pad", (sym("X"),), (("p", "p"),)), dil))
    claimed_X = Node("crop", (Node("full", (dil, Node("rot180", (sym("K"),)))),), (("p", "p"),))
    got_K = np.real(evaluate(claimed_K, env, exact=False, knobs=knobs))
    got_X = np.real(evaluate(claimed_X, env, exact=False, knobs=knobs))
    assert np.allclose(got_K[:, :, :3, :2], dK, atol=1e-12)  # X̃ ⋆ dilate_s(G), cut to the kernel's size
    assert np.allclose(got_X[:, :7, :6], Xt.grad.numpy(), atol=1e-12)
    flipped = Node("crop", (Node("full", (dil, sym("K"))),), (("p", "p"),))  # the kernel not flipped: wrong
    assert not np.allclose(np.real(evaluate(flipped, env, exact=False, knobs=knobs))[:, :7, :6], Xt.grad.numpy(), atol=1e-6)


def test_multichannel_pooling_exact_truth_against_torch():
    torch = pytest.importorskip("torch")
    from jacobian_bp.claims.derivative import Instance, forward_derivative
    from jacobian_bp.claims.exact_eval import evaluate
    from jacobian_bp.claims.formula_tree import Node, sym

    rng = np.random.default_rng(4)
    X = _fracs(rng, (2, 5, 7))
    knobs = {"k": 3, "s": 2, "p": 1}
    for op, pool in (("maxpool", torch.nn.functional.max_pool2d), ("avgpool", torch.nn.functional.avg_pool2d)):
        Xt = torch.tensor(X.astype(float), requires_grad=True)
        Y = pool(Xt, 3, 2, 1)
        G = _fracs(rng, tuple(Y.shape))
        (Y * torch.tensor(G.astype(float))).sum().backward()
        f = Node("inner", (sym("G"), Node(op, (sym("X"),))))
        D, _ = forward_derivative(f, "X", Instance(env={"X": X, "G": G}, dims={}), knobs)
        assert np.allclose(D[0, 0].astype(float), Xt.grad.numpy(), atol=1e-12), op
        if op == "maxpool":
            got = np.real(evaluate(Node("maxunpool", (sym("G"), sym("X"))), {"X": X.astype(float), "G": G.astype(float)},
                                   exact=False, knobs=knobs))
            assert np.allclose(got, Xt.grad.numpy(), atol=1e-12)


# ----------------------------------------------------------------------------- multi-channel LaTeX claims, end to end
def _nd_instances_supported() -> bool:
    """The judge's instances and layouts take arrays with channels (derivative._sample, Layout.arrange)."""
    from jacobian_bp.claims import derivative as D

    try:
        a = D._sample(np.random.default_rng(0), (2, 2, 2), "generic", False)
        g = D.Layout().arrange(np.zeros((1, 1, 2, 2, 2), dtype=object), (1, 1), (2, 2, 2))
        return a.shape == (2, 2, 2) and g.shape == (2, 2, 2)
    except (ValueError, TypeError):
        return False


_MC = {"L": r"\langle G, \operatorname{conv}(X, K) \rangle"}
MC_LATEX = [
    (r"\frac{\partial L}{\partial K} = X \star \operatorname{dilate}_{s}(G)", {"stride": 2}, HOLDS, None),
    (r"\frac{\partial L}{\partial K} = X \star G", {"stride": 2}, FAILS, "stride ignored"),
    (r"\frac{\partial L}{\partial X} = \operatorname{full}(\operatorname{dilate}_{s}(G), \operatorname{rot180}(K))",
     {"stride": 2}, HOLDS, None),
    (r"\frac{\partial L}{\partial X} = \operatorname{full}(\operatorname{dilate}_{s}(G), K)", {"stride": 2}, FAILS,
     "kernel flipped vs not"),
    (r"\frac{\partial L}{\partial K} = \operatorname{pad}_{p}(X) \star G", {"padding": 1}, HOLDS, None),
    (r"\frac{\partial L}{\partial X} = \operatorname{crop}_{p}(\operatorname{full}(G, \operatorname{rot180}(K)))",
     {"padding": 1}, HOLDS, None),
]


@pytest.mark.parametrize("latex, setting, verdict, diagnosis", MC_LATEX, ids=range(len(MC_LATEX)))
def test_multichannel_latex_claims(latex, setting, verdict, diagnosis):
    """Dumoulin-Visin / CS231n on an input (2, H, W) and a kernel (3, 2, 3, 3): the single-channel notation, read
    on channels, judged with the exact multi-channel truth and the Conv2d layer's second opinion."""
    assert _nd_instances_supported()
    shapes = {"X": (2, 5, 5) if "stride" in setting else (2, 4, 4), "K": (3, 2, 3, 3)}
    v = check_latex(latex, setting, definitions=_MC, shapes=shapes)
    assert v.verdict == verdict, str(v)
    if diagnosis:
        assert v.diagnosis == diagnosis, str(v)
    if verdict == HOLDS:
        assert "Conv2d layer Jacobians agree" in v.confidence


def test_multichannel_shapes_are_inferred():
    """Shapes with channels: G in ⟨G, conv(X, K)⟩ takes the output's (C_out, H', W'); channel counts must agree."""
    from jacobian_bp.claims.formula_shapes import infer_shapes
    from jacobian_bp.claims.latex_grammar import parse_expression
    from jacobian_bp.errors import ShapeError

    e = parse_expression(r"\langle G, \operatorname{conv}(X, K) \rangle")
    sh, D, _ = infer_shapes([e], {"X": (2, 7, 6), "K": (3, 2, 3, 2)}, {"s": 2, "p": 1, "d": 1})
    assert tuple(D.resolve(d) for d in sh["G"]) == (3, 4, 4)
    with pytest.raises(ShapeError, match="input channels"):
        infer_shapes([e], {"X": (2, 7, 6), "K": (3, 4, 3, 2)}, {})
    e2 = parse_expression(r"X \star G")
    sh, D, _ = infer_shapes([e2], {"X": (2, 7, 6), "G": (3, 5, 5)}, {})
    assert tuple(D.resolve(d) for d in sh["G"]) == (3, 5, 5)
