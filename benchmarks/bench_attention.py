"""Benchmark: a pre-norm Transformer block (T = 16, d = 64, 4 heads, MLP 256, GELU), explicit Jacobians vs torch.

Prints medians over interleaved repeats (ours, torch, ours, torch, ...), float64, one process:

1. ``J_θ z[L]`` materialized (``net.jacobian_theta(x, params).to_dense()``) for the block's own output
   (``z[L]`` = the flattened ``(16, 64)`` output, 1024 rows x 49,984 parameters) against
   ``torch.func.jacrev`` of the same block written with torch's modules (``nn.MultiheadAttention``,
   ``nn.LayerNorm``, ``nn.Linear``) w.r.t. its parameters (the dict of per-parameter Jacobians, not
   concatenated);
2. the same for the block followed by a dense head to 10 outputs (``J_θ z[L]``: 10 x 60,234);
3. the operator-mode gradient (``net.gradient(..., method="operator")``) of the head network with a
   cross-entropy loss on a batch of 32 against torch's forward + ``backward()``.

For 1. the write floor is measured in the same rounds: allocating the same ``1024 x 49,984`` float64 array and
writing every entry once (``np.empty`` + ``fill``), the least any materialization of it costs.

Run: ``python benchmarks/bench_attention.py [repeats]``.  No assertions: the numbers are for the notes.
Goal of issue 13: materialization no slower than jacrev.
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from jacobian_bp.engine.network import Network  # noqa: E402
from jacobian_bp.layers import Dense, Softmax  # noqa: E402
from jacobian_bp.layers.attention import TransformerBlock  # noqa: E402
from jacobian_bp.layers.flatten import Flatten  # noqa: E402

from baselines import interleaved_median  # noqa: E402

T, D, H, HID, N_OUT, BATCH = 16, 64, 4, 256, 10, 32


class TorchBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attn = nn.MultiheadAttention(D, H, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(D, HID), nn.Linear(HID, D)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


def engine_params(block, head=None):
    W = block.attn.in_proj_weight.detach().numpy()
    b = block.attn.in_proj_bias.detach().numpy()
    src = {"gamma1.ln1": block.ln1.weight, "beta1.ln1": block.ln1.bias, "gamma1.ln2": block.ln2.weight,
           "beta1.ln2": block.ln2.bias, "W_O1.attn": block.attn.out_proj.weight, "b_O1.attn": block.attn.out_proj.bias,
           "W1.fc1": block.fc1.weight, "b1.fc1": block.fc1.bias, "W1.fc2": block.fc2.weight, "b1.fc2": block.fc2.bias}
    if head is not None:
        src.update({"W2": head.weight, "b2": head.bias})
    out = {k: v.detach().numpy().copy() for k, v in src.items()}
    for j, c in enumerate("QKV"):
        out[f"W_{c}1.attn"] = W[j * D:(j + 1) * D].copy()
        out[f"b_{c}1.attn"] = b[j * D:(j + 1) * D].copy()
    return out


def compare(title: str, fns: dict, repeats: int, ours: str = "ours (materialized)",
            other: str = "torch.func.jacrev") -> None:
    """Print ``title`` and the interleaved medians of ``fns`` (``"ours"`` and one torch baseline) with their ratio."""
    print(title)
    (_, t_ours), (_, t_other) = interleaved_median(fns, repeats).items()
    print(f"   {ours} {t_ours * 1e3:8.1f} ms   {other} {t_other * 1e3:8.1f} ms   "
          f"ratio ours/torch = {t_ours / t_other:.2f}")


def main(repeats: int = 5) -> None:
    torch.manual_seed(0)
    block = TorchBlock().double()
    head = nn.Linear(T * D, N_OUT).double()
    with torch.no_grad():
        for p in list(block.parameters()) + list(head.parameters()):
            p.add_(0.05 * torch.randn_like(p))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, D))
    xt = torch.tensor(x)
    print(f"Transformer block T={T}, d={D}, heads={H}, MLP {HID} (GELU), float64, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads")

    # 1. the block's own output
    net = Network([TransformerBlock(heads=H, mlp_hidden=HID), Flatten()], "mse", (T, D), convention="pytorch")
    params = net.validated_params(engine_params(block))
    tparams = {k: v.detach() for k, v in block.named_parameters()}

    def torch_jac():
        return torch.func.jacrev(lambda p: torch.func.functional_call(block, p, (xt[None],)).reshape(-1))(tparams)

    def ours_jac():
        return net.jacobian_theta(x, params).to_dense()

    J = ours_jac()
    shape = J.shape

    def write_floor():
        # the allocate-and-fill floor of the same result: a fresh float64 array of its shape, every entry written once
        F0 = np.empty(shape)
        F0.fill(1.0)
        return F0

    print(f"\n1. J_theta z[L] of the block output: {J.shape[0]} x {J.shape[1]} ({J.nbytes / 2**20:.0f} MiB)")
    del J
    t = interleaved_median({"ours": ours_jac, "jacrev": torch_jac, "floor": write_floor}, repeats)
    print(f"   ours (materialized) {t['ours'] * 1e3:8.1f} ms   torch.func.jacrev {t['jacrev'] * 1e3:8.1f} ms   "
          f"ratio ours/torch = {t['ours'] / t['jacrev']:.2f}")
    print(f"   write floor (np.empty + fill of the same array) {t['floor'] * 1e3:8.1f} ms   "
          f"ratio ours/floor = {t['ours'] / t['floor']:.2f}")

    # 2. block + dense head
    net2 = Network([TransformerBlock(heads=H, mlp_hidden=HID), Flatten(), Dense(N_OUT), Softmax()], "cross_entropy",
                   (T, D), convention="pytorch")
    params2 = net2.validated_params(engine_params(block, head))
    tp2 = {**{f"block.{k}": v.detach() for k, v in block.named_parameters()},
           **{f"head.{k}": v.detach() for k, v in head.named_parameters()}}
    model = nn.ModuleDict({"block": block, "head": head})

    def f2(p, xb):
        y = torch.func.functional_call(block, {k[6:]: v for k, v in p.items() if k.startswith("block.")}, (xb,))
        return F.linear(y.reshape(xb.shape[0], -1), p["head.weight"], p["head.bias"])

    def torch_jac2():
        return torch.func.jacrev(lambda p: f2(p, xt[None])[0])(tp2)

    def ours_jac2():
        return net2.jacobian_theta(x, params2).to_dense()

    J2 = ours_jac2()
    compare(f"\n2. J_theta z[L] with a dense head: {J2.shape[0]} x {J2.shape[1]}",
            {"ours": ours_jac2, "jacrev": torch_jac2}, repeats)

    # 3. operator-mode gradient, batch of 32
    X = rng.standard_normal((BATCH, T, D))
    Y = np.eye(N_OUT)[rng.integers(0, N_OUT, BATCH)]
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    model.zero_grad()

    def torch_grad():
        for p in model.parameters():
            p.grad = None
        logits = f2({f"block.{k}": v for k, v in block.named_parameters()} | {"head.weight": head.weight,
                                                                                "head.bias": head.bias}, Xt)
        loss = -(Yt * torch.log_softmax(logits, -1)).sum(-1).mean()
        loss.backward()
        return loss

    def ours_grad():
        return net2.gradient(X, Y, params2, method="operator")

    g = ours_grad().vector
    torch_grad()
    compare(f"\n3. gradient of the mean cross-entropy, batch {BATCH} ({g.size} parameters)",
            {"ours": ours_grad, "torch": torch_grad}, repeats * 2, "ours (operator mode)", "torch forward+backward")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
