"""Benchmark: the explicit Jacobians of an LSTM unrolled over time against PyTorch (float64, CPU).

Network: a sequence ``X ∈ R^{T×d}`` per sample (T = 32, d = 32) → LSTM (H = 64, last state) → dense (10) →
softmax / cross entropy, the ``pytorch`` convention.  Measured, interleaved (A, B, A, B, ...), medians:

* :math:`\\mathbf J_\\theta\\mathbf z^{[L]}` of one sample materialized (``net.jacobian_theta(x).to_dense()``)
  against ``torch.func.jacrev`` of the same torch model (``torch.nn.LSTM`` + ``torch.nn.Linear`` through
  ``torch.func.functional_call``) w.r.t. the flat θ;
* the operator-mode gradient of a batch (``net.gradient(X, Y, method="operator")``, BPTT batched over the samples)
  against torch's forward + ``backward()`` (the LSTM module's fused kernel) on the same batch;
* the per-step :math:`\\mathbf J_{\\mathbf s_{t-1}}\\mathbf s_t` factors and the unrolled :math:`\\mathbf J_\\theta\\mathbf h_T`
  of the layer alone, for the notes.

Run: ``python benchmarks/bench_recurrent.py [--batch N] [--repeats R]``.  No assertions: the numbers are for the notes.
The results agree with torch to the printed relative error.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jacobian_bp.spec import load_spec  # noqa: E402

from baselines import interleaved_median  # noqa: E402

T, D, H, OUT = 32, 32, 64, 10


def interleaved(fns: dict, repeats: int) -> dict:
    """Median wall-clock seconds of each callable, run in turn (A, B, A, B, ...) after two warm-up rounds."""
    return interleaved_median(fns, repeats, warmup=2)


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    import torch

    from jacobian_bp.backend.parallel import set_num_threads

    torch.set_num_threads(1)  # both sides on one thread (8 jobs share 2 cores while this was written)
    set_num_threads(1)
    spec = {"input": [T, D], "layers": [{"type": "lstm", "hidden_size": H}, {"type": "dense", "out_features": OUT},
                                         {"type": "softmax"}], "loss": "cross_entropy", "convention": "pytorch",
            "data": {"seed": 1, "batch": args.batch}, "params": {"seed": 2}}
    s = load_spec(spec)
    net = s.network
    X, Y = s.data()
    params = net.validated_params(s.params())
    theta = net.pack(s.params())
    x = np.asarray(X)[0]
    print(f"LSTM T={T}, d={D}, H={H} -> dense {OUT}; |theta| = {net.n_params}, batch {args.batch}; "
          f"torch {torch.__version__}, 1 thread")

    lstm = torch.nn.LSTM(D, H, batch_first=True, dtype=torch.float64)
    lin = torch.nn.Linear(H, OUT, dtype=torch.float64)
    names = [("lstm", n) for n, _ in lstm.named_parameters()] + [("lin", n) for n, _ in lin.named_parameters()]
    shapes = [p.shape for p in lstm.parameters()] + [p.shape for p in lin.parameters()]
    sizes = [int(np.prod(sh)) for sh in shapes]

    def split(th):
        out, off = {"lstm": {}, "lin": {}}, 0
        for (m, n), sh, k in zip(names, shapes, sizes):
            out[m][n] = th[off:off + k].reshape(sh)
            off += k
        return out

    def logits(th, xb):
        p = split(th)
        o, _ = torch.func.functional_call(lstm, p["lstm"], (xb,))
        return torch.func.functional_call(lin, p["lin"], (o[:, -1],))

    tt = torch.tensor(theta)
    xt = torch.tensor(x)[None]
    Xt = torch.tensor(np.asarray(X))
    yt = torch.tensor(np.asarray(Y)).argmax(-1)
    # the torch model holds the same parameters (for the fused-kernel backward)
    with torch.no_grad():
        p = split(tt)
        for n, v in p["lstm"].items():
            getattr(lstm, n).copy_(v)
        for n, v in p["lin"].items():
            getattr(lin, n).copy_(v)

    layer = net.stages[0].layer

    def cold():  # the layer keeps its last forward pass for the next call on the same batch: drop it
        layer._last_trajectory = None

    def ours_jac():
        cold()
        return net.jacobian_theta(x, params).to_dense()

    def torch_jac():
        return torch.func.jacrev(lambda th: logits(th, xt)[0])(tt)

    def ours_grad():
        cold()
        return net.gradient(X, Y, params, method="operator").vector

    def ours_grad_warm():
        return net.gradient(X, Y, params, method="operator").vector

    def torch_grad():
        lstm.zero_grad(set_to_none=True)
        lin.zero_grad(set_to_none=True)
        o, _ = lstm(Xt)
        loss = torch.nn.functional.cross_entropy(lin(o[:, -1]), yt)
        loss.backward()
        return torch.cat([q.grad.reshape(-1) for q in list(lstm.parameters()) + list(lin.parameters())])

    Jo, Jt = ours_jac(), torch_jac().numpy()
    go, gt = ours_grad(), torch_grad().numpy()
    print(f"agreement: J_theta z[L] rel {rel(Jo, Jt):.2e} ({Jo.shape[0]}x{Jo.shape[1]}); gradient rel {rel(go, gt):.2e}")

    t = interleaved({"ours": ours_jac, "jacrev": torch_jac}, args.repeats)
    print(f"J_theta z[L] materialized: ours {t['ours'] * 1e3:8.2f} ms   torch.func.jacrev {t['jacrev'] * 1e3:8.2f} ms"
          f"   ratio ours/torch {t['ours'] / t['jacrev']:.2f}")
    t = interleaved({"ours": ours_grad, "torch": torch_grad, "warm": ours_grad_warm}, args.repeats)
    print(f"operator-mode gradient (N={args.batch}): ours {t['ours'] * 1e3:8.2f} ms   torch forward+backward {t['torch'] * 1e3:8.2f} ms"
          f"   ratio ours/torch {t['ours'] / t['torch']:.2f}   (same batch again, forward pass reused: {t['warm'] * 1e3:.2f} ms)")
    lp = net.stage_params(net.canonical_params(params), 1)
    t = interleaved({"steps": lambda: (cold(), [A.to_dense() for A in layer.step_jacobians(x, lp)]),
                     "layer": lambda: (cold(), {k: J.to_dense() for k, J in layer.jac_params(x, None, lp).items()})},
                    args.repeats)
    print(f"layer alone: the {T} step factors J_s(t-1) s_t (2H x 2H) {t['steps'] * 1e3:.2f} ms; "
          f"J_theta h_T unrolled ({H} x {sum(int(np.prod(v.shape)) for v in lp.values())}) {t['layer'] * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
