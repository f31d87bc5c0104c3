"""Differential test (issue #11): ≥ 1,000 random networks per run.

For each random network (every activation, every loss, every preset, both reductions,
batch 1–5, dense nets and small CNNs with conv2d/maxpool2d/avgpool2d/flatten):

    explicit chain  = operator sweep  = closed form  = torch autograd   (rel ≤ 1e-10)
    float64 central differences on a random subset of θ coordinates  (rel ≤ 1e-6)

and for 200 of them the full J_θ z[L] of one sample against ``torch.func.jacrev``.
"Closed form" is Ganev's corrected Algorithm 5 (jacobian_bp.oracles.reference, dense nets with at
most one activation per layer) and, for every net, ``net.delta`` (δ = ∇_{z[L]}ℓ, closed
form for the matched pairs) against torch.  The torch side (tests/torch_twin.py) rebuilds
model and θ layout from first principles.  On failure the seed and the JSON spec of the
network are printed so the case can be reproduced with ``check_network(spec, seed)``.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.dirname(__file__))

import torch_twin  # noqa: E402

from jacobian_bp.oracles import reference  # noqa: E402
from jacobian_bp.engine.conventions import PRESETS  # noqa: E402
from jacobian_bp.spec import generate_data, load_spec  # noqa: E402

N_NETWORKS = 1000
N_CHUNKS = 10
N_JACREV = 200
BASE_SEED = 20240611  # fixed: the run is reproducible; each network has its own seed

ELEMENTWISE = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "arctan", "softplus", "elu"]
HIDDEN = ELEMENTWISE + ["softmax", "radial_sigmoid"]
LOSSES = ["mse", "bce", "cross_entropy"]
# last activations that keep the loss finite: BCE needs ŷ in (0,1), CE needs ŷ > 0
LAST = {
    "mse": [None] + HIDDEN,
    "bce": ["sigmoid", "softmax"],
    "cross_entropy": ["softmax", "sigmoid", "softplus"],
}


def _act(rng, kind: str) -> dict:
    d = {"type": kind}
    if kind == "relu" and rng.random() < 0.5:
        d["at_zero"] = float(rng.choice([0.0, 0.5, 1.0]))
    elif kind == "leaky_relu" and rng.random() < 0.7:
        d["negative_slope"] = float(np.round(rng.uniform(-0.5, 0.5), 3))
    elif kind == "elu" and rng.random() < 0.7:
        d["alpha"] = float(np.round(rng.uniform(0.2, 2.0), 3))
    return d


def random_spec(seed: int) -> dict:
    """A small random network spec (JSON-able) with a convention and a batch size
    (geometries that do not fit the input are redrawn)."""
    from jacobian_bp.errors import JacobianBPError

    rng = np.random.default_rng(seed)
    for _ in range(50):
        spec = _draw_spec(rng, seed)
        try:
            load_spec(spec)
            return spec
        except JacobianBPError:
            continue
    raise AssertionError(f"random_spec({seed}): no valid geometry drawn")  # pragma: no cover


def _draw_spec(rng, seed: int) -> dict:
    loss = LOSSES[seed % 3]
    preset = list(PRESETS)[(seed // 3) % len(PRESETS)]
    reduction = ["sum", "mean"][(seed // 15) % 2]
    cnn = rng.random() < 0.3
    layers: list[dict] = []
    if cnn:
        C, H, W = int(rng.integers(1, 3)), int(rng.integers(5, 8)), int(rng.integers(5, 8))
        inp: object = [C, H, W]
        conv = {"type": "conv2d", "out_channels": int(rng.integers(1, 3)), "kernel_size": int(rng.integers(2, 4))}
        if rng.random() < 0.4:
            conv["stride"] = int(rng.integers(1, 3))
        if rng.random() < 0.4:
            conv["padding"] = int(rng.integers(0, 2))
        if rng.random() < 0.3:
            conv["dilation"] = 2
        if rng.random() < 0.3:
            conv["mode"] = "convolution"
        conv["bias"] = str(rng.choice(["tied", "untied", "none"]))
        layers.append(conv)
        layers.append(_act(rng, str(rng.choice(ELEMENTWISE))))
        if rng.random() < 0.7:
            pool = {"type": str(rng.choice(["maxpool2d", "avgpool2d"])), "kernel_size": 2}
            if rng.random() < 0.4:
                pool["stride"] = 1
            if rng.random() < 0.3:
                pool["padding"] = 1
            layers.append(pool)
        layers.append({"type": "flatten"})
        n_hidden = int(rng.integers(0, 2))
    else:
        inp = int(rng.integers(2, 6))
        n_hidden = int(rng.integers(0, 3))
        layers.append({"type": "dense", "out_features": int(rng.integers(2, 6)), "bias": bool(rng.random() < 0.85)})
        layers.append(_act(rng, str(rng.choice(HIDDEN))))
    for _ in range(n_hidden):
        layers.append({"type": "dense", "out_features": int(rng.integers(2, 6)), "bias": bool(rng.random() < 0.85)})
        if rng.random() < 0.9:
            layers.append(_act(rng, str(rng.choice(HIDDEN))))
    n_out = int(rng.integers(2, 5))
    layers.append({"type": "dense", "out_features": n_out, "bias": bool(rng.random() < 0.85)})
    last = LAST[loss][int(rng.integers(0, len(LAST[loss])))]
    if last is not None:
        layers.append(_act(rng, last))
    loss_obj: object = loss
    if loss == "mse" and rng.random() < 0.3:
        loss_obj = {"type": "mse", "scale": float(rng.choice([0.5, 1.0, 2.0])),
                    "reduce_outputs": str(rng.choice(["sum", "mean"]))}
    return {"name": f"rand{seed}", "input": inp, "layers": layers, "loss": loss_obj,
            "convention": {"preset": preset, "reduction": reduction},
            "data": {"seed": seed, "batch": int(rng.integers(1, 6))}, "params": {"seed": seed}}


def _data(net, batch: int, seed: int):
    X, Y = generate_data(net, batch, seed)
    rng = np.random.default_rng(seed + 7)
    if net.loss.kind == "bce":  # soft targets exercise the general formula
        Y = rng.uniform(0.05, 0.95, size=np.shape(Y))
    elif net.loss.kind == "cross_entropy" and seed % 2:
        P = rng.dirichlet(np.ones(net.n_out), size=max(batch, 1))
        Yb = P[0] if batch == 1 else P
        Y = Yb if (batch == 1 or net.convention.batch_axis == "first") else Yb.T
    return X, Y


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _closed_form(net, X, Y, theta) -> np.ndarray | None:
    """Ganev Alg. 5 (corrected) on the canonical weights, packed by the twin's θ layout; None if not dense."""
    if any(st.layer.kind != "dense" or len(st.post) > 1 or not st.layer.bias for st in net.stages):
        return None
    canon = torch_twin.canonical_params(net, torch.tensor(theta))
    Ws = [canon[l]["W"].numpy() for l in range(1, net.L + 1)]
    bs = [canon[l]["b"].numpy() for l in range(1, net.L + 1)]
    acts = [st.post[0] if st.post else None for st in net.stages]
    Xb, Yb = (t.numpy() for t in torch_twin.batch_first(net, X, Y))
    c = 1.0 / Xb.shape[0] if net.convention.reduction == "mean" else 1.0
    dWs, dbs = reference.ganev_batch_backprop(Ws, bs, acts, Xb, lambda A: c * net.loss.grad_yhat(Yb, A))
    out = np.empty(theta.size)
    for s in torch_twin.theta_layout(net):
        v = (dWs if s.local == "W" else dbs)[s.stage - 1]
        u = v.T if s.transposed else v
        out[s.offset:s.offset + s.size] = np.ravel(u, order=s.order)
    return out


def check_network(spec: dict, seed: int, jac: bool = False) -> list[str]:
    """All comparisons for one network; returns the list of failures (empty if all agree)."""
    fails = []
    s = load_spec(spec)
    net = s.network
    X, Y = _data(net, s.batch, seed)
    theta = net.pack(net.init_params(seed))
    params = net.unpack(theta)
    # the θ layout from first principles must match the engine's
    layout = [(t.name, t.offset, t.size) for t in torch_twin.theta_layout(net)]
    engine = [(e.name, e.offset, e.size) for e in net.entries]
    if layout != engine:
        fails.append(f"θ layout: twin {layout} != engine {engine}")
    loss_t, g_t = torch_twin.loss_and_gradient(net, X, Y, theta)
    loss_e = net.loss_value(X, Y, params)
    if abs(loss_e - loss_t) > 1e-10 * max(1.0, abs(loss_t)):
        fails.append(f"loss: engine {loss_e!r} torch {loss_t!r}")
    g_chain = net.gradient(X, Y, params, method="chain").vector
    g_op = net.gradient(X, Y, params, method="operator").vector
    scale = max(np.linalg.norm(g_t), 1e-12)
    for what, g in (("chain", g_chain), ("operator", g_op)):
        r = np.linalg.norm(g - g_t) / scale
        if not r <= 1e-10:
            fails.append(f"{what} vs torch: rel {r:.3e}")
    r = np.linalg.norm(g_chain - g_op) / scale
    if not r <= 1e-10:
        fails.append(f"chain vs operator: rel {r:.3e}")
    g_cf = _closed_form(net, X, Y, theta)
    if g_cf is not None:
        r = np.linalg.norm(g_cf - g_t) / scale
        if not r <= 1e-10:
            fails.append(f"closed form (Ganev Alg. 5) vs torch: rel {r:.3e}")
    d_e = np.atleast_2d(net.delta(X, Y, params))
    d_t = torch_twin.delta(net, X, Y, theta)
    r = np.linalg.norm(d_e - d_t) / max(np.linalg.norm(d_t), 1e-12)
    if not r <= 1e-10:
        fails.append(f"delta (closed form) vs torch: rel {r:.3e}")
    # central differences on a few random coordinates
    rng = np.random.default_rng(seed + 1)
    idx = rng.choice(theta.size, size=min(4, theta.size), replace=False)
    fd = reference.central_differences(lambda t: net.loss_value(X, Y, net.unpack(t)), theta, h=1e-6, indices=idx)[idx]
    denom = max(np.max(np.abs(g_t)), 1e-8)
    r = float(np.max(np.abs(fd - g_t[idx])) / denom)
    if not r <= 1e-6:
        fails.append(f"central differences vs torch on θ{list(idx)}: rel {r:.3e}")
    if jac:
        x = X if np.ndim(X) == len(net.input_shape) else torch_twin.batch_first(net, X)[0][0].numpy()
        J_e = net.jacobian_theta(x, params).to_dense()
        J_t = torch_twin.jacobian_theta(net, x, theta)
        r = rel(J_e, J_t)
        if not r <= 1e-10:
            fails.append(f"J_θ z[L] vs torch.func.jacrev: rel {r:.3e}")
    return fails


def _seeds(chunk: int) -> range:
    per = N_NETWORKS // N_CHUNKS
    return range(BASE_SEED + chunk * per, BASE_SEED + (chunk + 1) * per)


@pytest.mark.parametrize("chunk", range(N_CHUNKS))
def test_random_networks_agree_with_torch_and_closed_form(chunk):
    report = []
    jac_every = N_NETWORKS // N_JACREV
    for k, seed in enumerate(_seeds(chunk)):
        spec = random_spec(seed)
        try:
            fails = check_network(spec, seed, jac=(k % jac_every == 0))
        except Exception as exc:  # noqa: BLE001 - report with the reproduction recipe
            fails = [f"raised {type(exc).__name__}: {exc}"]
        if fails:
            report.append(f"seed {seed}: {'; '.join(fails)}\n  spec: {json.dumps(spec)}")
    assert not report, (f"{len(report)} of {len(_seeds(chunk))} networks disagree "
                        "(reproduce with tests.test_differential.check_network(spec, seed)):\n" + "\n".join(report))


def test_generator_covers_everything():
    """The random family covers every activation, loss, preset, reduction, CNN layer and batch size."""
    seen: dict[str, set] = {"act": set(), "loss": set(), "preset": set(), "reduction": set(), "layer": set(),
                            "batch": set(), "bias": set(), "mode": set()}
    for seed in range(BASE_SEED, BASE_SEED + N_NETWORKS):
        sp = random_spec(seed)
        seen["loss"].add(sp["loss"] if isinstance(sp["loss"], str) else sp["loss"]["type"])
        seen["preset"].add(sp["convention"]["preset"])
        seen["reduction"].add(sp["convention"]["reduction"])
        seen["batch"].add(sp["data"]["batch"])
        for ly in sp["layers"]:
            seen["layer"].add(ly["type"])
            if ly["type"] in HIDDEN:
                seen["act"].add(ly["type"])
            if ly["type"] == "conv2d":
                seen["bias"].add(ly["bias"])
                seen["mode"].add(ly.get("mode", "correlation"))
    assert seen["act"] == set(HIDDEN)
    assert seen["loss"] == set(LOSSES)
    assert seen["preset"] == set(PRESETS)
    assert seen["reduction"] == {"sum", "mean"}
    assert seen["batch"] == {1, 2, 3, 4, 5}
    assert {"conv2d", "maxpool2d", "avgpool2d", "flatten", "dense"} <= seen["layer"]
    assert seen["bias"] == {"tied", "untied", "none"} and seen["mode"] == {"correlation", "convolution"}
