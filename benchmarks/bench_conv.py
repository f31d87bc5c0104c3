"""Benchmark: explicit convolution Jacobians for LeNet-5-shaped layers.

For the first (1x28x28 input, 6 filters 5x5) and second (6 -> 16 channels on 14x14,
5x5) LeNet-5 convolutions it prints

* the time (best of several repeats), nnz and bytes (CSR data + indices + indptr) to
  build the Toeplitz matrix J_x z = Toep(K), against the cost of its non-zeros
  (8 B value + 4 B index per nnz + 4 B per row pointer) and the bytes of the dense matrix;
* the time to build the Jacobian w.r.t. the kernel J_K z -- structured (I ⊗ P, the
  layer's operator), as a sparse CSR matrix, and dense -- against
  ``torch.func.jacrev`` of ``torch.nn.functional.conv2d`` w.r.t. the weight (float64),
  as ratios; the same for J_x z.

Run: ``python benchmarks/bench_conv.py``.  No assertions: the numbers are for the notes.
Targets of issue 4: first-layer Toeplitz matrix in < 10 ms, memory within 1.5x of its
non-zeros' cost.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jacobian_bp.backend import toeplitz as tp  # noqa: E402
from jacobian_bp.layers.conv import Conv2d  # noqa: E402

LAYERS = {
    "LeNet-5 conv1": dict(in_shape=(1, 28, 28), out_channels=6, k=5),
    "LeNet-5 conv2": dict(in_shape=(6, 14, 14), out_channels=16, k=5),
}


def best_of(fn, repeats=15, warmup=2):
    """Best wall-clock time of ``fn()`` in seconds, and its last result."""
    for _ in range(warmup):
        out = fn()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def main():
    rng = np.random.default_rng(0)
    try:
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        torch = None
    print(f"numpy {np.__version__}" + (f", torch {torch.__version__} (1 thread)" if torch else ", torch not installed"))
    print()
    print("Toeplitz matrix J_x z = Toep(K) (CSR, float64 data, int32 indices)")
    hdr = f"{'layer':<15} {'shape':>13} {'build ms':>9} {'nnz':>9} {'CSR bytes':>11} {'nnz cost':>11} {'CSR/cost':>8} {'dense bytes':>12} {'dense/CSR':>9}"
    print(hdr)
    print("-" * len(hdr))
    results = {}
    for name, cfg in LAYERS.items():
        C, H, W = cfg["in_shape"]
        K = rng.standard_normal((cfg["out_channels"], C, cfg["k"], cfg["k"]))
        t, T = best_of(lambda: tp.toeplitz(K, cfg["in_shape"]), repeats=30)
        csr = T.data.nbytes + T.indices.nbytes + T.indptr.nbytes
        cost = T.nnz * 12 + (T.shape[0] + 1) * 4
        dense = T.shape[0] * T.shape[1] * 8
        print(f"{name:<15} {T.shape[0]:>6}x{T.shape[1]:<6} {t * 1e3:>9.2f} {T.nnz:>9} {fmt_bytes(csr):>11} "
              f"{fmt_bytes(cost):>11} {csr / cost:>8.2f} {fmt_bytes(dense):>12} {dense / csr:>9.1f}")
        results[name] = (K, T)
    print()
    print("Jacobians w.r.t. the kernel and the input vs torch.func.jacrev (float64)")
    hdr = f"{'layer':<15} {'Jacobian':<28} {'ours ms':>9} {'torch ms':>9} {'torch/ours':>10} {'max |diff|':>10}"
    print(hdr)
    print("-" * len(hdr))
    for name, cfg in LAYERS.items():
        K, T = results[name]
        layer = Conv2d(cfg["out_channels"], cfg["k"], bias="none")
        layer.build(cfg["in_shape"])
        x = rng.standard_normal(cfg["in_shape"])
        params = {"K": K}
        n = layer.out_size
        rows = {
            "J_K z structured (I⊗P)": lambda: layer.jac_params(x, None, params, "C")["K"],
            "J_K z sparse CSR": lambda: tp.kernel_jacobian(x, cfg["out_channels"], cfg["k"]),
            "J_K z dense": lambda: layer.jac_params(x, None, params, "C")["K"].to_dense(),
            "J_x z sparse CSR (Toeplitz)": lambda: layer.jac_input(x, None, params),
            "J_x z dense": lambda: layer.jac_input(x, None, params).to_dense(),
        }
        ref = {}
        if torch is not None:
            xt = torch.tensor(x)[None]
            Kt = torch.tensor(K)
            jk = torch.func.jacrev(lambda k: F.conv2d(xt, k))
            jx = torch.func.jacrev(lambda xx: F.conv2d(xx, Kt))
            tk, JKt = best_of(lambda: jk(Kt), repeats=5, warmup=1)
            tx, JXt = best_of(lambda: jx(xt), repeats=5, warmup=1)
            ref = {"K": (tk, JKt.reshape(n, -1).numpy()), "x": (tx, JXt.reshape(n, -1).numpy())}
        for label, fn in rows.items():
            t, J = best_of(fn, repeats=10)
            which = "K" if label.startswith("J_K") else "x"
            Jd = J.toarray() if hasattr(J, "toarray") else (J.to_dense() if hasattr(J, "to_dense") else J)
            if which in ref:
                tt, Jt = ref[which]
                diff = np.abs(Jd - Jt).max()
                print(f"{name:<15} {label:<28} {t * 1e3:>9.3f} {tt * 1e3:>9.1f} {tt / t:>10.1f} {diff:>10.1e}")
            else:  # pragma: no cover
                print(f"{name:<15} {label:<28} {t * 1e3:>9.3f} {'-':>9} {'-':>10} {'-':>10}")
    print()
    print("torch/ours > 1 means the explicit construction is faster than torch.func.jacrev.")


if __name__ == "__main__":
    main()
