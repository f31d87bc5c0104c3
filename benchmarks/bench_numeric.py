"""LeNet-300-100 in float64: building J_θ z[L] and the gradient, against baselines in the same run.

Prints, for one sample and for a batch of 64:

* time to build J_θ z[L] with jacobian_bp kept structured (Kronecker/diagonal factors) and
  materialized dense, vs ``torch.func.jacrev`` (and ``jax.jit(jax.jacrev)`` when jax is installed);
* peak memory of each (measured in a fresh subprocess as the growth of the maximum RSS);
* the gradient by the explicit chain and by operator mode vs NumPy closed-form backprop.

Usage: ``python benchmarks/bench_numeric.py [--repeats 40] [--no-memory]`` (``pip install -e
".[torch,fast,bench]"`` first for the torch and jax baselines and the compiled kernel).  Ratios < 1 mean
jacobian_bp is faster.  No assertions: this is a measurement, not a test.

The contenders of one batch size are warmed up for 0.1 s each, then timed in eight
interleaved rounds, ``--repeats`` calls each in all (batch cases: a sixth of that, at least
3), so that a machine whose speed drifts affects each alike; the table gives the best and
the median.  The structured build, whose target is absolute (under 0.2 ms), is timed on
its own: 50 × ``--repeats`` warm calls.  jacobian_bp writes
large materializations on ``jacobian_bp.get_num_threads()`` threads (all cores, here 2) and
torch is given the same number; the "1 thread" row shows the serial write.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

import jacobian_bp as jb

from baselines import closed_form_backprop as _closed_form

SETUP = r"""
import numpy as np, jacobian_bp as jb
from jacobian_bp.spec import load_spec
net = load_spec("lenet-300-100").network
params = net.init_params(0)
P = net.validated_params(params)
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 784))
Y = np.eye(10)[rng.integers(0, 10, 64)]
x, y = X[0], Y[0]
canon = {k: np.asarray(v) for k, v in P.items()}
"""

TORCH_SETUP = r"""
import torch
torch.set_num_threads(jb.get_num_threads())
tp = [torch.tensor(canon[k]) for k in ("W1", "b1", "W2", "b2", "W3", "b3")]
def f(ps, x):
    W1, b1, W2, b2, W3, b3 = ps
    h = torch.relu(W1 @ x + b1)
    h = torch.relu(W2 @ h + b2)
    return W3 @ h + b3
jac = torch.func.jacrev(f)
bjac = torch.func.vmap(jac, in_dims=(None, 0))
tx, tX = torch.tensor(x), torch.tensor(X)
"""

FILL = r"""
M = np.empty((10, net.n_params))
from jacobian_bp.backend.parallel import run_tasks
run_tasks([(M[r].size, (lambda r: lambda: M[r].fill(1.0))(r), False) for r in range(10)])
"""

CASES = {
    "jbp structured, N=1": ("", "J = net.jacobian_theta(x, P)"),
    "jbp dense, N=1": ("", "M = net.jacobian_theta(x, P).to_dense()"),
    "jbp dense, N=1, 1 thread": ("", "with jb.num_threads(1): M = net.jacobian_theta(x, P).to_dense()"),
    "torch jacrev, N=1": (TORCH_SETUP, "M = jac(tp, tx)"),
    "jbp dense, N=64": ("", "M = net.batch_jacobian_theta(X, P).to_dense()"),
    "torch jacrev, N=64": (TORCH_SETUP, "M = bjac(tp, tX)"),
    # the floor: allocate and fill a 10 x |θ| float64 array (memset speed), on the same threads
    "floor: fill the result, N=1": ("", FILL),
}


def closed_form_backprop(canon, X, Y):
    """The shared NumPy closed-form baseline (benchmarks/baselines.py), keyed like jacobian_bp's gradient."""
    gW, gb = _closed_form([canon[f"W{l}"] for l in (1, 2, 3)], [canon[f"b{l}"] for l in (1, 2, 3)], X, Y)
    return {**{f"W{l + 1}": g for l, g in enumerate(gW)}, **{f"b{l + 1}": g for l, g in enumerate(gb)}}


def interleaved(fns: dict, repeats: int, rounds: int = 8, cleanup=None) -> dict:
    """Best and median wall time of each callable, timed in ``rounds`` interleaved rounds.

    Each callable is first warmed up for 0.1 s; then every round runs each callable
    ``ceil(repeats / rounds)`` times after a 5 ms pause (so that the thread pools of the
    previous contender go idle).  The same rule holds for every contender."""
    import math

    for fn in fns.values():
        t_end = time.perf_counter() + 0.1
        fn()
        while time.perf_counter() < t_end:
            fn()
        if cleanup is not None:
            cleanup()
    per_round = max(1, math.ceil(repeats / rounds))
    samples: dict = {k: [] for k in fns}
    for _ in range(rounds if repeats >= rounds else repeats):
        for name, fn in fns.items():
            time.sleep(0.005)
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
                if cleanup is not None:
                    cleanup()  # drop the result before the next call (not timed, the same for all)
    return {k: (min(v), float(np.median(v))) for k, v in samples.items()}


def peak_memory(setup: str, stmt: str) -> float:
    """Peak RSS growth (bytes) while running ``stmt`` a second time, in a fresh interpreter.

    The first run is a warm-up (JIT compilation, lazy imports, thread pools) whose result is
    dropped; the kernel's peak-RSS counter (VmHWM) is then reset by writing 5 to
    /proc/self/clear_refs, so earlier peaks do not hide the measured one.  Memory the
    allocator kept from the warm-up counts as base, so a small result may show little
    growth; the 1.37 GB batch result is returned to the system and measured in full."""
    code = SETUP + setup + r"""
import gc
""" + stmt + r"""
M = J = None  # one warm-up call (compilation, lazy imports, thread pools), then measure the next
gc.collect()
def _kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
open("/proc/self/clear_refs", "w").write("5")
base = _kb("VmRSS:")
""" + stmt + r"""
peak = _kb("VmHWM:")
print(json.dumps((peak - base) * 1024))
"""
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True)
    if out.returncode != 0:
        return float("nan")
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--threads", type=int, default=0,
                    help="jb.set_num_threads(N) first: N threads for jacobian_bp and for BLAS (process-wide, so the "
                         "NumPy baseline and torch get the same count); default: all cores")
    args = ap.parse_args()
    if args.threads:
        jb.set_num_threads(args.threads)
    ns: dict = {}
    exec(SETUP, ns)
    try:
        import torch  # noqa: F401  (imported now; set up only after the jacobian_bp timings)
        have_torch = True
    except ImportError:
        have_torch = False
    net = ns["net"]
    print(f"LeNet-300-100, float64, |θ| = {net.n_params}; J_θ z[L] is 10 x {net.n_params} "
          f"({10 * net.n_params * 8 / 1e6:.1f} MB per sample, {64 * 10 * net.n_params * 8 / 1e9:.2f} GB for N = 64)")
    from jacobian_bp.backend.kernels import blas_threads_controllable

    from jacobian_bp.backend.kernels import jit_kernel_available

    kernel = ("the compiled (Numba) kernel" if jit_kernel_available() else
              "BLAS dger (threadpoolctl keeps BLAS single-threaded meanwhile)" if blas_threads_controllable() else
              "NumPy (neither numba nor threadpoolctl is installed)")
    print(f"threads: {jb.get_num_threads()} for jacobian_bp's large writes and for torch; outer-product blocks by {kernel}")
    try:
        from threadpoolctl import threadpool_info

        blas = sorted({str(i.get("num_threads")) for i in threadpool_info() if i.get("user_api") == "blas"})
        print(f"BLAS threads (NumPy/SciPy OpenBLAS, shared by jacobian_bp and the NumPy closed-form baseline): {', '.join(blas)}")
    except ImportError:
        pass
    contenders = {}
    for name, (setup, stmt) in CASES.items():
        if "torch" not in name:
            contenders[name] = (lambda code: lambda: exec(code, ns))(compile(stmt, name, "exec"))
    J = ns["net"].jacobian_theta(ns["x"], ns["P"]).to_dense()
    if have_torch:
        exec(TORCH_SETUP, ns)
        tj = ns["jac"](ns["tp"], ns["tx"])
        # torch blocks are W (out x in, row-major) — the pytorch convention; compare one block
        W1blk = J[:, net.entry("W1").slice]
        t_W1 = tj[0].reshape(10, -1).numpy()
        # damadi stacks columns of W_D = W^T, i.e. rows of W: same order as torch's row-major W
        print(f"check: max |J_W1 (jacobian_bp) - J_W1 (torch)| = {np.max(np.abs(W1blk - t_W1)):.2e}")
        for name, (setup, stmt) in CASES.items():
            if "torch" in name:
                contenders[name] = (lambda code: lambda: exec(code, ns))(compile(stmt, name, "exec"))
    try:
        import jax  # noqa: F401
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        c = ns["canon"]
        jp = [jnp.asarray(c[k]) for k in ("W1", "b1", "W2", "b2", "W3", "b3")]

        def jf(ps, x):
            W1, b1, W2, b2, W3, b3 = ps
            h = jnp.maximum(W1 @ x + b1, 0)
            h = jnp.maximum(W2 @ h + b2, 0)
            return W3 @ h + b3

        jj = jax.jit(jax.jacrev(jf))
        jx = jnp.asarray(ns["x"])
        contenders["jax jit(jacrev), N=1"] = lambda: ns.__setitem__("M", jax.block_until_ready(jj(jp, jx)))
    except ImportError:
        pass
    # all contenders of one batch size are timed in interleaved rounds, so that a machine whose
    # speed drifts (shared hosts) affects each of them alike
    results = {}
    # the structured build has an absolute target: timed on its own, warm, as timeit would
    structured = contenders.pop("jbp structured, N=1")
    results["jbp structured, N=1"] = interleaved({"jbp structured, N=1": structured}, 50 * args.repeats, rounds=1)[
        "jbp structured, N=1"]
    for group in ("N=1", "N=64"):
        members = {k: v for k, v in contenders.items() if k.endswith(group) or (group == "N=1" and "N=1," in k)}
        reps = args.repeats if group == "N=1" else max(3, args.repeats // 6)
        results.update(interleaved(members, reps, cleanup=lambda: [ns.pop(k, None) for k in ("M", "J")]))
    print(f"\n{'J_θ z[L]':<26} {'best ms':>10} {'median ms':>10} {'peak MB':>10}")
    for name, (best, med) in results.items():
        mem = float("nan")
        if not args.no_memory and name in CASES:
            mem = peak_memory(*CASES[name]) / 1e6
        print(f"{name:<26} {best * 1e3:>10.3f} {med * 1e3:>10.3f} {mem:>10.1f}")
    if have_torch:
        print("\nratios (jacobian_bp / torch.func.jacrev, best times):")
        print(f"  structured, N=1 : {results['jbp structured, N=1'][0] / results['torch jacrev, N=1'][0]:.3f}")
        print(f"  dense, N=1      : {results['jbp dense, N=1'][0] / results['torch jacrev, N=1'][0]:.3f}")
        print(f"  dense, N=64     : {results['jbp dense, N=64'][0] / results['torch jacrev, N=64'][0]:.3f}")
    floor = results.get("floor: fill the result, N=1")
    if floor:
        ref = ["jbp dense, N=1"] + [k for k in ("torch jacrev, N=1", "jax jit(jacrev), N=1") if k in results]
        print("  time over the floor (filling the 21.3 MB result): "
              + ", ".join(f"{k.split(',')[0]} {results[k][0] / floor[0]:.2f}x" for k in ref))
    if "jax jit(jacrev), N=1" in results:
        print(f"  dense N=1 / jax.jit(jacrev): {results['jbp dense, N=1'][0] / results['jax jit(jacrev), N=1'][0]:.3f} (best), "
              f"{results['jbp dense, N=1'][1] / results['jax jit(jacrev), N=1'][1]:.3f} (median)")
    if floor:
        print(f"  dense N=1 / floor: {results['jbp dense, N=1'][0] / floor[0]:.2f}x (best), "
              f"{results['jbp dense, N=1'][1] / floor[1]:.2f}x (median)")
    print(f"  structured N=1 absolute: {results['jbp structured, N=1'][0] * 1e3:.3f} ms (target < 0.2 ms)")

    print(f"\n{'gradient':<34} {'N=1 ms':>10} {'N=64 ms':>10}")
    X, Y, P, canon = ns["X"], ns["Y"], ns["P"], ns["canon"]
    rows = {
        "NumPy closed-form backprop": lambda Xs, Ys: closed_form_backprop(canon, Xs, Ys),
        "jacobian_bp explicit chain": lambda Xs, Ys: net.gradient(Xs, Ys, P, method="chain"),
        "jacobian_bp operator mode": lambda Xs, Ys: net.gradient(Xs, Ys, P, method="operator"),
    }
    one = interleaved({k: (lambda f: lambda: f(X[:1], Y[:1]))(f) for k, f in rows.items()}, args.repeats)
    full = interleaved({k: (lambda f: lambda: f(X, Y))(f) for k, f in rows.items()}, args.repeats)
    times, meds = {}, {}
    for name in rows:
        t1, t64 = one[name][0], full[name][0]
        times[name] = (t1, t64)
        meds[name] = (one[name][1], full[name][1])
        print(f"{name:<34} {t1 * 1e3:>10.3f} {t64 * 1e3:>10.3f}   (medians {meds[name][0] * 1e3:.3f}, {meds[name][1] * 1e3:.3f})")
    base, mbase = times["NumPy closed-form backprop"], meds["NumPy closed-form backprop"]
    for name in list(rows)[1:]:
        print(f"  {name} / closed form: N=1 {times[name][0] / base[0]:.2f}x, N=64 {times[name][1] / base[1]:.2f}x (best); "
              f"N=1 {meds[name][0] / mbase[0]:.2f}x, N=64 {meds[name][1] / mbase[1]:.2f}x (median)")
    g = net.gradient(X, Y, P)
    ref = closed_form_backprop(canon, X, Y)
    err = max(np.max(np.abs(g.canonical[k] - ref[k])) for k in ref)
    print(f"check: max |chain - closed form| over all blocks = {err:.2e}")


if __name__ == "__main__":
    main()
