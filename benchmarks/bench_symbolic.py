"""Benchmark: the full symbolic gradient by jacobian_bp vs naive SymPy.

Cases (Damadi's examples, softmax + cross entropy, sigmoid hidden layers, damadi convention):

  (i)   4 -> 3
  (ii)  4 -> 5 -> 3
  (iii) 4 -> 5 -> 5 -> 3

jacobian_bp: ``named_gradient(SymbolicNetwork(net))`` -- the Jacobian chain applied to named
intermediates z, a, delta (each with a short definition).  Naive SymPy: expand the scalar
loss in x, y, theta with plain SymPy and differentiate it w.r.t. every parameter.  Both are
timed with SymPy's cache cleared first (``--warm`` also reports the warm-cache time of
jacobian_bp).  Sizes are SymPy ``count_ops``: for jacobian_bp the total over the gradient
entries and the definitions, and the largest entry / definition; for naive SymPy the total
over the derivatives.  The two gradients are compared at a random point (a few entries).
Finally the lambdified gradient of (iii) is timed per call, against the numeric engine's
``Network.gradient`` on the same sample.

    python benchmarks/bench_symbolic.py [--skip-naive-3] [--repeat 5]

Naive (iii) takes 20-60 s on 2 cores (more under load); ``--skip-naive-3`` skips it.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import sympy
from sympy.core.cache import clear_cache

from jacobian_bp import Dense, Network, Sigmoid, Softmax
from jacobian_bp.spec import generate_data
from jacobian_bp.symbolic import SymbolicNetwork, lambdify_gradient, named_gradient

CASES = {"(i) 4->3": [3], "(ii) 4->5->3": [5, 3], "(iii) 4->5->5->3": [5, 5, 3]}


def build(widths: list[int]) -> Network:
    layers = []
    for w in widths[:-1]:
        layers += [Dense(w), Sigmoid()]
    layers += [Dense(widths[-1]), Softmax()]
    return Network(layers, "cross_entropy", 4, "damadi", name="x".join(map(str, [4] + widths)))


def naive_gradient(snet: SymbolicNetwork) -> list:
    """Plain SymPy: expanded loss -sum y log softmax(z[L](x, theta)), differentiated w.r.t. each theta entry."""
    canon = snet.canonical_params()
    a = sympy.Matrix(list(snet.x))
    L = snet.network.L
    for l in range(1, L + 1):
        z = sympy.Matrix(canon[f"W{l}"].tolist()) * a + sympy.Matrix(list(canon[f"b{l}"]))
        if l < L:
            a = z.applyfunc(lambda t: 1 / (1 + sympy.exp(-t)))
    e = [sympy.exp(t) for t in z]
    total = sum(e)
    loss = -sum(yi * sympy.log(ei / total) for yi, ei in zip(snet.y, e))
    return [sympy.diff(loss, p) for p in snet.theta]


def timed(fn, repeat: int, cold: bool = True):
    times, out = [], None
    for _ in range(repeat):
        if cold:
            clear_cache()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def agree(grad, naive: list, snet: SymbolicNetwork, rng: np.random.Generator, k: int = 4) -> float:
    """Max |named - naive| over k random entries at a random point (mpmath evaluation of the naive form)."""
    net = snet.network
    params = net.init_params(int(rng.integers(1000)))
    x, y = generate_data(net, 1, int(rng.integers(1000)))
    f = lambdify_gradient(grad)
    g = f(x, y, params)
    point = {}
    for arr, val in [(snet.x, x), (snet.y, y)] + [(snet.params[n], params[n]) for n in snet.params]:
        for s, v in zip(np.ravel(arr), np.ravel(val)):
            point[s] = sympy.Float(float(v), 30)
    idx = rng.choice(len(naive), size=min(k, len(naive)), replace=False)
    return max(abs(float(naive[i].xreplace(point).evalf(20)) - g[i]) for i in idx)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-naive-3", action="store_true", help="skip naive SymPy for (iii) (20-60 s)")
    ap.add_argument("--repeat", type=int, default=5, help="repetitions of the jacobian_bp timing (median)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)

    print("Full symbolic gradient of softmax + CE networks (sigmoid hidden), one sample, damadi convention")
    print(f"{'case':18s} {'|theta|':>7s} {'jbp cold':>10s} {'jbp warm':>10s} {'ops total':>10s} {'max/entry':>9s} "
          f"{'max/def':>8s} | {'naive':>9s} {'naive ops':>11s} {'speedup':>8s} {'|diff|':>9s}")
    last = None
    for label, widths in CASES.items():
        net = build(widths)
        cold, grad = timed(lambda: named_gradient(SymbolicNetwork(net)), args.repeat)
        warm, grad = timed(lambda: named_gradient(SymbolicNetwork(net)), args.repeat, cold=False)
        c = grad.count_ops()
        snet = grad.snet
        last = (net, grad)
        if args.skip_naive_3 and widths == [5, 5, 3]:
            print(f"{label:18s} {net.n_params:7d} {cold:9.4f}s {warm:9.4f}s {c['total']:10d} {c['max_entry']:9d} "
                  f"{c['max_definition']:8d} | {'skipped':>9s}")
            continue
        tn, naive = timed(lambda: naive_gradient(snet), 1)
        nops = int(sum(sympy.count_ops(e) for e in naive))
        diff = agree(grad, naive, snet, rng)
        print(f"{label:18s} {net.n_params:7d} {cold:9.4f}s {warm:9.4f}s {c['total']:10d} {c['max_entry']:9d} "
              f"{c['max_definition']:8d} | {tn:8.3f}s {nops:11d} {tn / cold:7.0f}x {diff:9.1e}")

    net, grad = last
    t0 = time.perf_counter()
    f = lambdify_gradient(grad)
    compile_time = time.perf_counter() - t0
    params = net.init_params(1)
    x, y = generate_data(net, 1, 2)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        g = f(x, y, params)
    t_sym = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n):
        ref = net.gradient(x, y, params).vector
    t_num = (time.perf_counter() - t0) / n
    X, Y = generate_data(net, 256, 3)
    t0 = time.perf_counter()
    G = f(X, Y, params, reduce=True)
    t_batch = time.perf_counter() - t0
    print()
    print(f"lambdified gradient of (iii): compile {compile_time * 1e3:.1f} ms, one sample {t_sym * 1e3:.3f} ms per call "
          f"(numeric engine Network.gradient: {t_num * 1e3:.3f} ms, ratio {t_sym / t_num:.2f}); "
          f"batch of 256 {t_batch * 1e3:.2f} ms; max |lambdified - engine| = {np.max(np.abs(g - ref)):.1e} (one sample), "
          f"{np.max(np.abs(G - net.gradient(X, Y, params).vector)):.1e} (batch)")


if __name__ == "__main__":
    main()
