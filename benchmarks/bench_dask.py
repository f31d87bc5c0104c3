"""jacobian_bp on dask (issue #16): per-sample gradients and the empirical NTK of LeNet-300-100.

For N in {256, 1024} (and 4096 with ``--big``): ``jacobian_bp.uses.distributed`` on a LocalCluster of 1
and of 2 worker processes (one thread each), against the single-process functions
(``engine.per_sample.per_sample_gradients``, ``curvature.empirical_ntk(...).to_dense()``) where the
memory guard lets them run, and ``torch.func.vmap(torch.func.grad(...))`` for the per-sample gradients.
Each result is computed into this process's memory.  Methods are interleaved round by round (so that
background load hits all of them); the median of the rounds is reported, with the ratio to the
single-process function (or to torch when the single-process function is refused).  Peak memory per
worker is the workers' ``ru_maxrss`` (``client.run``) at the end; bytes spilled from the workers' spill
buffers.  BLAS and torch run single-threaded.  Usage::

    python benchmarks/bench_dask.py [--rounds 3] [--big] [--chunks 256]

No assertions: this is a measurement, not a test.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from jacobian_bp import MemoryBudgetError  # noqa: E402
from jacobian_bp.engine.per_sample import per_sample_gradients  # noqa: E402
from jacobian_bp.spec import generate_data, load_spec  # noqa: E402
from jacobian_bp.uses.curvature import empirical_ntk  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def spilled_bytes(dask_worker=None) -> int:
    data = getattr(dask_worker, "data", None)
    total = getattr(data, "spilled_total", None)
    return int(getattr(total, "disk", 0) or 0) if total is not None else 0


def torch_per_sample(net, P):
    from baselines import torch_lenet_per_sample_grad

    torch, f = torch_lenet_per_sample_grad()
    tp = [torch.tensor(np.asarray(P[k])) for k in ("W1", "b1", "W2", "b2", "W3", "b3")]
    return lambda X, Y: [g.numpy() for g in f(tp, torch.tensor(X), torch.tensor(Y))]


def timed(fn):
    t = time.perf_counter()
    try:
        fn()
    except MemoryBudgetError:
        return None
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--big", action="store_true", help="also N = 4096")
    ap.add_argument("--chunks", type=int, default=256)
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    from jacobian_bp.uses import distributed as jd

    net = load_spec("lenet-300-100").network
    P = net.validated_params(net.init_params(0))
    sizes = [256, 1024] + ([4096] if args.big else [])
    try:
        torch_fn = torch_per_sample(net, P)
    except ImportError:
        torch_fn = None
    clusters = {}
    for w in (1, 2):
        lc = LocalCluster(n_workers=w, threads_per_worker=1, processes=True, memory_limit="8GiB",
                          dashboard_address=None, silence_logs=40)
        clusters[w] = (lc, Client(lc, set_as_default=False))

    def on(w, make):
        cl = clusters[w][1]
        with cl.as_current():  # gathered block by block into this process (jd.compute)
            return jd.compute(make(), progress=False)

    print(f"LeNet-300-100, |θ| = {net.n_params}, chunks = {args.chunks}, {args.rounds} interleaved rounds, medians (s)")
    print(f"{'quantity':<22} {'N':>5} {'single':>8} {'torch':>8} {'dask 1w':>8} {'dask 2w':>8} "
          f"{'1w/ref':>7} {'2w/ref':>7} {'2w/1w':>6}")
    for N in sizes:
        X, Y = generate_data(net, N, seed=1)
        c = args.chunks
        methods = {
            "per-sample gradients": {
                "single": lambda: per_sample_gradients(net, X, Y, P),
                "torch": (lambda: torch_fn(X, Y)) if torch_fn else None,
                "dask 1w": lambda: on(1, lambda: jd.per_sample_gradients(net, X, Y, P, chunks=c)),
                "dask 2w": lambda: on(2, lambda: jd.per_sample_gradients(net, X, Y, P, chunks=c)),
            },
            "empirical NTK": {
                "single": lambda: empirical_ntk(net, X, P).to_dense(),
                "torch": None,
                "dask 1w": lambda: on(1, lambda: jd.empirical_ntk(net, X, P, chunks=c)),
                "dask 2w": lambda: on(2, lambda: jd.empirical_ntk(net, X, P, chunks=c)),
            },
        }
        for name, fns in methods.items():
            times = {k: [] for k, f in fns.items() if f is not None}
            for _ in range(args.rounds):
                for k in times:
                    times[k].append(timed(fns[k]))
            med = {k: (None if any(t is None for t in v) else float(np.median(v))) for k, v in times.items()}
            ref = med.get("single") or med.get("torch")

            def f(x):
                return "refused" if x is None else f"{x:8.3f}"

            def r(a, b):
                return "   -" if a is None or b is None else f"{a / b:7.2f}"

            print(f"{name:<22} {N:>5} {f(med.get('single')):>8} {f(med.get('torch')) if 'torch' in med else '       -':>8} "
                  f"{f(med['dask 1w']):>8} {f(med['dask 2w']):>8} {r(med['dask 1w'], ref):>7} {r(med['dask 2w'], ref):>7} "
                  f"{r(med['dask 2w'], med['dask 1w']):>6}")
    print()
    print(f"peak RSS of this process (single-process runs, torch, gathered results): {peak_rss_mb():.0f} MB")
    for w, (lc, cl) in clusters.items():
        peaks = cl.run(peak_rss_mb)
        spilled = cl.run(spilled_bytes)
        print(f"dask {w} worker(s): peak RSS per worker " + ", ".join(f"{v:.0f} MB" for v in peaks.values())
              + f"; bytes spilled {sum(spilled.values())}")
    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)  # quiet shutdown
    for lc, cl in clusters.values():
        cl.close()
        lc.close()


if __name__ == "__main__":
    main()
