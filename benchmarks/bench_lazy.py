"""Lazy structured Jacobians against baselines measured in the same run (issue 7 targets).

1. Operator-mode gradient (Damadi Alg. 1 applied right to left as one batched sweep) vs NumPy
   closed-form backprop for LeNet-300-100 at N = 1 and N = 64.   target: ratio <= 1.3
2. Materialized J_θ z[L] (one sample, ``per_sample.batch_jacobian``) vs closed-form backprop of
   the same sample, for n -> n -> n -> 10, n = 32 … 1024.        target: ratio <= 2 n_L = 20
3. Per-sample gradients, N = 64, LeNet-300-100 (``per_sample.per_sample_gradients``) vs
   ``torch.func.vmap(torch.func.grad(...))``.                      target: ratio <= 2
4. Curvature products: one Gauss-Newton and one NTK matrix-vector product vs one gradient, and
   the NTK materialized from Gram matrices vs J Jᵀ from the materialized Jacobian.

Every number is a time ratio against a baseline timed in the same process, interleaved round by
round (so that background load hits both); the best (minimum) of the rounds is reported, the
median in brackets.  All computations run single-threaded in float64 (BLAS and torch threads = 1)
so that the ratios compare algorithms, not thread pools.  Usage::

    python benchmarks/bench_lazy.py [--rounds 30] [--quick]

No assertions: this is a measurement, not a test.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import jacobian_bp as jb  # noqa: E402
from jacobian_bp.uses.curvature import empirical_ntk, gauss_newton  # noqa: E402
from jacobian_bp.engine.per_sample import batch_jacobian, per_sample_gradients  # noqa: E402
from jacobian_bp.spec import load_spec  # noqa: E402

from baselines import closed_form_backprop, interleaved_times, torch_lenet_per_sample_grad  # noqa: E402


# ---------------------------------------------------------------------------- baselines


#: CPU time of this process: on a shared machine it excludes the time the process waits for a
#: core (wall-clock minima are also printed by ``--wall``); the work is single-threaded.
CLOCK = time.process_time


def interleaved(fns: dict, rounds: int) -> dict:
    """Best and median seconds of each callable, timed round-robin after one warm-up call each."""
    return {k: (min(v), float(np.median(v))) for k, v in interleaved_times(fns, rounds, clock=CLOCK).items()}


def mlp(n_in: int, widths: list[int], n_out: int = 10, convention="pytorch") -> jb.Network:
    layers = []
    for w in widths:
        layers += [jb.Dense(w), jb.ReLU()]
    layers += [jb.Dense(n_out), jb.Softmax()]
    return jb.Network(layers, "cross_entropy", n_in, convention, name=f"{n_in}->{'->'.join(map(str, widths))}->{n_out}")


def data(net: jb.Network, N: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N,) + net.input_shape)
    Y = np.eye(net.n_out)[rng.integers(0, net.n_out, N)]
    return X, Y


def weights(net, canon):
    return ([canon[f"W{l}"] for l in range(1, net.L + 1)], [canon[f"b{l}"] for l in range(1, net.L + 1)])


def fmt(pair, scale=1e3):
    return f"{pair[0] * scale:9.3f} [{pair[1] * scale:8.3f}]"


def ratio(a, b):
    return f"{a[0] / b[0]:6.2f}x [{a[1] / b[1]:5.2f}x]"


# ---------------------------------------------------------------------------- sections
def section_gradient(rounds: int) -> None:
    net = load_spec("lenet-300-100").network
    P = net.validated_params(net.init_params(0))
    Ws, bs = weights(net, P)
    print(f"1. gradient, LeNet-300-100 (|θ| = {net.n_params}), ms best [median]; target operator/closed <= 1.3")
    for N in (1, 64):
        X, Y = data(net, N)
        g = net.gradient(X, Y, P, method="operator")
        gW, gb = closed_form_backprop(Ws, bs, X, Y)
        err = max(np.max(np.abs(g.canonical[f"W{l}"] - gW[l - 1])) for l in range(1, 4))
        t = interleaved({
            "closed": lambda: closed_form_backprop(Ws, bs, X, Y),
            "operator": lambda: net.gradient(X, Y, P, method="operator"),
        }, rounds)
        print(f"   N={N:<3d} closed form {fmt(t['closed'])}   operator mode {fmt(t['operator'])}   "
              f"ratio {ratio(t['operator'], t['closed'])}   (max |Δ| = {err:.1e})")


def section_materialized(rounds: int, widths) -> None:
    print("2. materialized J_θ z[L] of one sample vs closed-form backprop of that sample, n->n->n->10; "
          "target ratio <= 2 n_L = 20")
    print(f"   {'n':>5} {'|θ|':>9} {'backprop ms':>20} {'J_θ z[L] ms':>20} {'ratio':>16}")
    for n in widths:
        net = mlp(n, [n, n])
        P = net.validated_params(net.init_params(0))
        Ws, bs = weights(net, P)
        X, Y = data(net, 1)
        x = X[0]
        J = batch_jacobian(net, x, P)
        ref = net.jacobian_theta(x, P).to_dense()
        assert np.max(np.abs(J - ref)) < 1e-12
        r = max(3, rounds // (1 + n // 128))
        t = interleaved({"bp": lambda: closed_form_backprop(Ws, bs, X, Y), "J": lambda: batch_jacobian(net, x, P)}, r)
        print(f"   {n:>5d} {net.n_params:>9d} {fmt(t['bp']):>20} {fmt(t['J']):>20} {ratio(t['J'], t['bp']):>16}")


def torch_lenet_functions():
    return torch_lenet_per_sample_grad()


def section_per_sample(rounds: int) -> None:
    net = load_spec("lenet-300-100").network
    P = net.validated_params(net.init_params(0))
    X, Y = data(net, 64)
    G = per_sample_gradients(net, X, Y, P)
    print(f"3. per-sample gradients, LeNet-300-100, N = 64 ({64 * net.n_params * 8 / 1e6:.0f} MB of output), ms best [median]; "
          "target jacobian_bp/torch <= 2")
    fns = {"jbp": lambda: per_sample_gradients(net, X, Y, P)}
    try:
        torch, per_sample_grad = torch_lenet_functions()
    except ImportError:
        print("   torch not installed: torch baseline skipped")
        torch = None
    if torch is not None:
        tp = [torch.tensor(np.asarray(P[k])) for k in ("W1", "b1", "W2", "b2", "W3", "b3")]
        tX, tY = torch.tensor(X), torch.tensor(Y)
        tg = per_sample_grad(tp, tX, tY)
        # Damadi θ layout: [vec W3 (columns of W_D stacked = rows of W), b3, W2, b2, W1, b1]
        ref = np.concatenate([tg[i].reshape(64, -1).numpy() for i in (4, 5, 2, 3, 0, 1)], axis=1)
        print(f"   check: max |jacobian_bp - torch| = {np.max(np.abs(G - ref)):.1e}")
        fns["torch"] = lambda: per_sample_grad(tp, tX, tY)
    t = interleaved(fns, rounds)
    line = f"   per_sample_gradients {fmt(t['jbp'])}"
    if "torch" in t:
        line += f"   torch.func.vmap(grad) {fmt(t['torch'])}   ratio {ratio(t['jbp'], t['torch'])}"
    print(line)


def section_curvature(rounds: int) -> None:
    net = mlp(64, [64, 64])
    P = net.validated_params(net.init_params(0))
    X, Y = data(net, 32)
    Gop = gauss_newton(net, X, Y, P)
    Kop = empirical_ntk(net, X, P)
    v = np.random.default_rng(1).standard_normal(net.n_params)
    u = np.random.default_rng(2).standard_normal(Kop.shape[0])
    print(f"4. curvature, 64->64->64->10, N = 32, |θ| = {net.n_params}: ms best [median]")
    t = interleaved({
        "grad": lambda: net.gradient(X, Y, P, method="operator"),
        "ggn_mv": lambda: Gop.matvec(v),
        "ntk_mv": lambda: Kop.matvec(u),
    }, rounds)
    print(f"   gradient {fmt(t['grad'])}   GGN matvec {fmt(t['ggn_mv'])} ({ratio(t['ggn_mv'], t['grad'])})   "
          f"NTK matvec {fmt(t['ntk_mv'])} ({ratio(t['ntk_mv'], t['grad'])})")

    def ntk_from_J():
        J = batch_jacobian(net, X, P).reshape(Kop.shape[0], -1)
        return J @ J.T

    err = np.max(np.abs(Kop.to_dense() - ntk_from_J()))
    t = interleaved({"gram": Kop.to_dense, "JJT": ntk_from_J}, max(3, rounds // 3))
    print(f"   NTK {Kop.shape[0]}x{Kop.shape[1]}: Gram assembly {fmt(t['gram'])}   J Jᵀ via materialized J {fmt(t['JJT'])}   "
          f"ratio {ratio(t['gram'], t['JJT'])}   (max |Δ| = {err:.1e})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30, help="timing rounds per comparison (default 30)")
    ap.add_argument("--quick", action="store_true", help="few rounds, widths up to 256")
    args = ap.parse_args()
    rounds = 5 if args.quick else args.rounds
    widths = [32, 64, 128, 256] if args.quick else [32, 64, 128, 256, 512, 1024]
    t0 = time.perf_counter()
    section_gradient(rounds * 4)
    section_materialized(rounds, widths)
    section_per_sample(max(3, rounds // 3))
    section_curvature(rounds)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
