"""Scaling of the gradient computed four ways, vs width and vs depth, in one run.

Networks ``n -> n -> … -> n -> 10`` (ReLU hidden layers, softmax + cross entropy, float64, one
sample): a width sweep ``n = 32, 64, …, 1024`` at depth L = 3 (``n -> n -> n -> 10``) and a depth
sweep ``L = 2, …, 8`` at width 256.  The gradient is computed by

* ``operator``  -- jacobian_bp operator mode: Damadi Alg. 1 kept as structured factors and applied
  right to left (``Network.gradient(method="operator")``);
* ``sparse``    -- the explicit J_θ z[L] of Alg. 1 materialized as a SciPy sparse matrix
  (``jacobian_theta(x).to_sparse()``), then ``Jᵀ δ``;
* ``closed``    -- NumPy closed-form backprop (Ganev Prop. 4.1, the baseline of the ratios);
* ``torch``     -- PyTorch autograd (``torch.autograd.grad``), when torch is installed.

Time: best of interleaved rounds (CPU time of the process, single-threaded BLAS and torch).
Memory: peak bytes allocated during one call by ``tracemalloc`` for the NumPy/SciPy methods
(exact, NumPy reports its buffers to tracemalloc); torch's allocator is invisible to tracemalloc,
so torch is measured as the growth of the peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs``) during a second call in a fresh interpreter, and the closed form is
measured the same way for calibration.  In that child glibc's mmap threshold is pinned to 64 KiB,
so buffers of at least 64 KiB are returned to the system when freed and counted again in the
second call; smaller ones are reused from the first call and missed (RSS reads ~0 for the smallest
widths, where no ratio is reported: below 256 KiB).
Growth exponents are least-squares slopes of log(cost) against log(n) (or log(L)).

Usage: ``python benchmarks/bench_scaling.py [--quick] [--no-subprocess-memory]``.  No
assertions: this is a measurement, not a test.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

import jacobian_bp as jb  # noqa: E402

from baselines import closed_form_backprop  # noqa: E402

WIDTHS = [32, 64, 128, 256, 512, 1024]
DEPTHS = [2, 3, 4, 5, 6, 7, 8]
DEPTH_WIDTH = 256
CLOCK = time.process_time
#: RSS growth below this is dominated by page granularity and heap reuse: no ratio is printed
RSS_FLOOR = 256 * 1024
#: the bracketed exponents fit only the widths where the cost is not dominated by fixed overheads
FIT_FROM = 256


# ---------------------------------------------------------------------------- the cases
def make_case(n: int, L: int):
    """Network n -> n (L-1 hidden layers) -> 10, validated parameters, one sample (batch of 1)."""
    layers = []
    for _ in range(L - 1):
        layers += [jb.Dense(n), jb.ReLU()]
    layers += [jb.Dense(10), jb.Softmax()]
    net = jb.Network(layers, "cross_entropy", n, "pytorch", name=f"width {n}, depth {L}")
    P = net.validated_params(net.init_params(0))
    rng = np.random.default_rng(1)
    X = rng.standard_normal((1, n))
    Y = np.eye(10)[[3]]
    Ws = [P[f"W{l}"] for l in range(1, L + 1)]
    bs = [P[f"b{l}"] for l in range(1, L + 1)]
    return net, P, X, Y, Ws, bs




def sparse_gradient(net, P, X, Y):
    """Alg. 1 materialized: the sparse n_L × |θ| matrix J_θ z[L], then ``Jᵀ δ``."""
    J = net.jacobian_theta(X[0], P).to_sparse()
    return J.T @ net.delta(X[0], Y[0], P)


def torch_setup(Ws, bs, X, Y):
    import torch

    torch.set_num_threads(1)
    tW = [torch.tensor(np.asarray(W)) for W in Ws]
    tb = [torch.tensor(np.asarray(b)) for b in bs]
    tX, tY = torch.tensor(X), torch.tensor(Y)

    def grad():
        ps = [t.detach().requires_grad_(True) for t in tW + tb]
        k = len(tW)
        A = tX
        for l in range(k):
            Z = torch.nn.functional.linear(A, ps[l], ps[k + l])
            A = torch.relu(Z) if l < k - 1 else Z
        loss = -(tY * torch.log_softmax(Z, dim=-1)).sum(-1).mean()
        return torch.autograd.grad(loss, ps)

    return grad


def methods(net, P, X, Y, Ws, bs, with_torch: bool) -> dict:
    fns = {
        "operator": lambda: net.gradient(X, Y, P, method="operator"),
        "sparse": lambda: sparse_gradient(net, P, X, Y),
        "closed": lambda: closed_form_backprop(Ws, bs, X, Y, mean=True),
    }
    if with_torch:
        fns["torch"] = torch_setup(Ws, bs, X, Y)
    return fns


def check(net, P, X, Y, Ws, bs) -> float:
    """Max |Δ| between the operator, sparse and closed-form gradients (θ order of the pytorch preset)."""
    g_op = net.gradient(X, Y, P, method="operator").vector
    g_sp = sparse_gradient(net, P, X, Y)
    gW, gb = closed_form_backprop(Ws, bs, X, Y, mean=True)
    g_cf = np.concatenate([a for l in range(len(Ws)) for a in (gW[l].ravel(), gb[l])])
    return float(max(np.max(np.abs(g_op - g_cf)), np.max(np.abs(g_sp - g_cf))))


# ---------------------------------------------------------------------------- measurements
def best_times(fns: dict, budget: float) -> dict:
    """Best CPU time per callable over interleaved rounds (at least 3, about ``budget`` seconds)."""
    t1 = {}
    for k, f in fns.items():
        t0 = CLOCK()
        f()
        t1[k] = CLOCK() - t0
    rounds = int(min(50, max(3, budget / max(sum(t1.values()), 1e-9))))
    best = dict(t1)
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = CLOCK()
            f()
            best[k] = min(best[k], CLOCK() - t0)
    return best


def tracemalloc_peak(f) -> int:
    """Peak bytes allocated (above the level at the start) while ``f()`` runs."""
    import gc

    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        f()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def rss_peak_in_child(method: str, n: int, L: int) -> float:
    """Peak-RSS growth (bytes) of one call of ``method`` in a fresh interpreter (NaN on failure)."""
    env = os.environ.copy()
    # buffers >= 64 KiB are mmap'ed and returned to the OS when freed, so the second call's
    # large buffers are counted again instead of being served from the first call's heap
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    out = subprocess.run([sys.executable, __file__, "--child", method, str(n), str(L)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return float("nan")
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def child(method: str, n: int, L: int) -> None:
    import gc

    net, P, X, Y, Ws, bs = make_case(n, L)
    f = methods(net, P, X, Y, Ws, bs, with_torch=(method == "torch"))[method]
    f()  # steady state: one-time set-up (autograd engine, BLAS buffers) is not counted
    gc.collect()

    def kb(key):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
        raise RuntimeError(key)

    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = kb("VmRSS:")
    f()
    print(json.dumps((kb("VmHWM:") - base) * 1024))


def slope(xs, ys) -> float:
    xs, ys = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    ok = np.isfinite(ys)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(xs[ok], ys[ok], 1)[0])


def sweep(label: str, cases: list[tuple[int, int]], xkey: str, with_torch: bool, rss: bool, budget: float) -> None:
    names = ["operator", "sparse", "closed"] + (["torch"] if with_torch else [])
    rows = []
    for n, L in cases:
        net, P, X, Y, Ws, bs = make_case(n, L)
        err = check(net, P, X, Y, Ws, bs)
        fns = methods(net, P, X, Y, Ws, bs, with_torch)
        t = best_times(fns, budget)
        mem = {k: tracemalloc_peak(fns[k]) for k in ("operator", "sparse", "closed")}
        rmem = {}
        if rss:
            rmem["closed"] = rss_peak_in_child("closed", n, L)
            if with_torch:
                rmem["torch"] = rss_peak_in_child("torch", n, L)
        rows.append(dict(n=n, L=L, params=net.n_params, t=t, mem=mem, rss=rmem, err=err))
    print(f"\n== {label} ==")
    head = f"{'n':>5} {'L':>2} {'|θ|':>9} | " + " ".join(f"{k + ' ms':>12}" for k in names)
    head += " | " + " ".join(f"{k + '/closed':>15}" for k in names if k != "closed") + " | max|Δ|"
    print("time (best CPU ms)\n" + head)
    for r in rows:
        line = f"{r['n']:>5} {r['L']:>2} {r['params']:>9} | " + " ".join(f"{r['t'][k] * 1e3:>12.3f}" for k in names)
        line += " | " + " ".join(f"{r['t'][k] / r['t']['closed']:>14.2f}x" for k in names if k != "closed")
        print(line + f" | {r['err']:.1e}")
    print("peak memory (MB): tracemalloc" + ("; RSS growth in a fresh process" if rss else ""))
    head = f"{'n':>5} {'L':>2} | " + " ".join(f"{k + ' MB':>12}" for k in ("operator", "sparse", "closed"))
    head += " | " + " ".join(f"{k + '/closed':>15}" for k in ("operator", "sparse"))
    if rss:
        head += " | " + " ".join(f"{'RSS ' + k:>12}" for k in rmem) + (f" | {'torch/closed':>13}" if with_torch else "")
    print(head)
    for r in rows:
        m = r["mem"]
        line = f"{r['n']:>5} {r['L']:>2} | " + " ".join(f"{m[k] / 1e6:>12.3f}" for k in ("operator", "sparse", "closed"))
        line += " | " + " ".join(f"{m[k] / m['closed']:>14.2f}x" for k in ("operator", "sparse"))
        if rss:
            line += " | " + " ".join(f"{r['rss'][k] / 1e6:>12.3f}" for k in r["rss"])
            if with_torch:
                c = r["rss"]["closed"]
                line += f" | {r['rss']['torch'] / c:>12.2f}x" if c > RSS_FLOOR else f" | {'n/a':>13}"
        print(line)
    xs = [r[xkey] for r in rows]
    print(f"fitted growth exponents (slope of log cost vs log {xkey}, all points"
          + (f"; in brackets n >= {FIT_FROM}" if xkey == "n" else "") + "):")
    for k in names:
        s = slope(xs, [r["t"][k] for r in rows])
        tail = ""
        if xkey == "n":
            big = [r for r in rows if r["n"] >= FIT_FROM]
            tail = f" [{slope([r['n'] for r in big], [r['t'][k] for r in big]):.2f}]"
        line = f"   time   {k:<9} {s:5.2f}{tail}"
        if k in rows[0]["mem"]:
            s = slope(xs, [r["mem"][k] for r in rows])
            tail = ""
            if xkey == "n":
                big = [r for r in rows if r["n"] >= FIT_FROM]
                tail = f" [{slope([r['n'] for r in big], [r['mem'][k] for r in big]):.2f}]"
            line += f"   memory {s:5.2f}{tail}"
        elif rss and k in rows[0]["rss"]:
            big = [r for r in rows if r["rss"]["closed"] > RSS_FLOOR]
            line += f"   RSS    {slope([r[xkey] for r in big], [r['rss'][k] for r in big]):5.2f} (points with RSS > 256 KiB)"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="widths up to 256, depths up to 5, short timing")
    ap.add_argument("--no-subprocess-memory", action="store_true", help="skip the RSS measurements (fresh interpreters)")
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "N", "L"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    try:
        import torch  # noqa: F401

        with_torch = True
    except ImportError:
        with_torch = False
        print("torch not installed: the torch column is skipped")
    widths = WIDTHS[:4] if args.quick else WIDTHS
    depths = DEPTHS[:4] if args.quick else DEPTHS
    budget = 0.3 if args.quick else 1.5
    rss = not args.no_subprocess_memory
    t0 = time.perf_counter()
    print(__doc__.split("\n\n")[0])
    sweep("width sweep: n -> n -> n -> 10 (L = 3), one sample", [(n, 3) for n in widths], "n", with_torch, rss, budget)
    sweep(f"depth sweep: width {DEPTH_WIDTH}, L = {depths[0]}..{depths[-1]}, one sample",
          [(DEPTH_WIDTH, L) for L in depths], "L", with_torch, rss, budget)
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
