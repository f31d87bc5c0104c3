r"""Verification report: the explicit Jacobian chain against independent oracles.

For a network, parameters and data, :func:`verify` computes :math:`\nabla_\theta\ell`

* by the explicit chain :math:`(\mathbf J_\theta\mathbf z^{[L]})^\top\nabla_{\mathbf z^{[L]}}\ell` (Damadi Alg. 1),
* by the same chain as one batched vector-Jacobian sweep (operator mode),
* in closed form (Ganev Alg. 4 for one sample / Alg. 5 batch-first, Park Thm. 5.4 batch-last with ``1/N``)
  for dense networks,
* by central finite differences in float64 (every coordinate of small blocks; a seeded
  sample of coordinates plus random directional derivatives for large ones),
* by PyTorch autograd in float64 when torch is installed,

and compares them per parameter block (max abs error and normwise relative error
:math:`\|g_m - g_\text{chain}\|/\max(\|g_\text{chain}\|, \|\nabla_\theta\ell\|)` -- the floor keeps a block
with a tiny gradient from amplifying the other method's absolute rounding error).  The verdict is PASS when every exact
method agrees to ``1e-12`` (torch: ``1e-10``) and finite differences to ``1e-6``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import reference
from . import torch_oracle
from ..errors import DataError
from ..engine.jacobian import display_latex
from ..engine.network import Network

TOL = {"operator": 1e-12, "closed form": 1e-12, "Ganev Alg. 5": 1e-12, "Park Thm. 5.4": 1e-12,
       "finite differences": 1e-6, "torch autograd": 1e-10}


@dataclass
class BlockError:
    method: str
    block: str
    max_abs: float
    rel: float
    n_checked: int

    @property
    def ok(self) -> bool:
        return self.rel <= TOL.get(self.method, 1e-6)


@dataclass
class VerificationReport:
    network: Network
    n_samples: int
    loss: float
    gradient: np.ndarray  # θ under the convention, by the explicit chain
    errors: list[BlockError] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(e.method for e in self.errors))

    @property
    def passed(self) -> bool:
        return all(e.ok for e in self.errors) and bool(self.errors)

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def worst(self, method: str) -> float:
        return max((e.rel for e in self.errors if e.method == method), default=float("nan"))

    def to_text(self) -> str:
        net = self.network
        lines = [
            f"Verification of {net.name}: {net.describe()}",
            f"convention: {net.convention.describe()}",
            f"samples: {self.n_samples}   loss: {self.loss:.12g}   |θ| = {net.n_params}",
            f"reference: explicit Jacobian chain (Damadi Alg. 1, corrected), ‖∇θℓ‖ = {np.linalg.norm(self.gradient):.6g}",
            "",
            f"{'method':<20} {'block':<8} {'checked':>8} {'max abs err':>12} {'rel err':>10}  {'tol':>7}  ok",
        ]
        for e in self.errors:
            lines.append(f"{e.method:<20} {e.block:<8} {e.n_checked:>8} {e.max_abs:>12.3e} {e.rel:>10.2e}  "
                         f"{TOL.get(e.method, 1e-6):>7.0e}  {'yes' if e.ok else 'NO'}")
        for m, why in self.skipped.items():
            lines.append(f"{m:<20} skipped: {why}")
        lines.append("")
        lines.append(f"verdict: {self.verdict}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_latex_(self) -> "str | None":
        return display_latex(self)

    def to_dict(self) -> dict:
        return {
            "network": self.network.name, "verdict": self.verdict, "loss": self.loss,
            "errors": [e.__dict__ | {"ok": e.ok} for e in self.errors], "skipped": self.skipped,
        }


def _compare(report, method, net, ref_canon, other_canon, checked=None):
    # normwise relative error of a block, relative to max(‖block‖, ‖∇θℓ‖): a block whose
    # gradient is tiny must not amplify the (absolute) rounding error of the other method
    full = np.sqrt(sum(np.sum(np.asarray(ref_canon[e.name], dtype=float) ** 2) for e in net.entries))
    for e in net.entries:
        g = np.asarray(ref_canon[e.name], dtype=float).ravel()
        o = np.asarray(other_canon[e.name], dtype=float).ravel()
        if checked is not None:
            idx = checked[e.name]
            g, o = g[idx], o[idx]
        diff = o - g
        nrm = max(np.linalg.norm(g), full)
        rel = np.linalg.norm(diff) / nrm if nrm > 0 else np.linalg.norm(diff)
        report.errors.append(BlockError(method, e.name, float(np.max(np.abs(diff))) if diff.size else 0.0,
                                        float(rel), int(g.size)))


def _closed_forms(net: Network, Xb, Yb, canon) -> dict[str, dict]:
    """Closed-form references for dense networks; {} when not applicable."""
    try:
        acts = reference.dense_stack(net)
    except TypeError:
        return {}
    Ws = [canon[f"W{l}"] for l in range(1, net.L + 1)]
    if any(f"b{l}" not in canon for l in range(1, net.L + 1)):
        return {}
    bs = [canon[f"b{l}"] for l in range(1, net.L + 1)]
    N = Xb.shape[0]
    scale = net.reduce_factor(N)
    # For a matched pair the references stop at z[L] and start from the exact delta (no division by
    # ŷ(1-ŷ) in BCE/CE): the output activation is dropped and ∇_{z[L]}ℓ is fed in; otherwise ∇_ŷ ℓ.
    from_logits = net.matched and acts[-1] is not None
    acts_ref = list(acts[:-1]) + [None] if from_logits else acts

    def grad_out(A):  # ∇ of the reduced loss at the references' output, batch first
        return (net.loss.delta(Yb, A) if from_logits else net.loss.grad_yhat(Yb, A)) * scale

    def named(dW, db):
        return {**{f"W{l + 1}": dW[l] for l in range(net.L)}, **{f"b{l + 1}": db[l] for l in range(net.L)}}

    if N == 1:  # Ganev Alg. 4 (one sample)
        out = {"closed form": named(*reference.ganev_backprop(Ws, bs, acts_ref, Xb[0], lambda a: grad_out(a[None])[0]))}
    else:
        out = {"Ganev Alg. 5": named(*reference.ganev_batch_backprop(Ws, bs, acts_ref, Xb, grad_out))}
    if net.matched:
        out["Park Thm. 5.4"] = named(*reference.park_backprop(Ws, bs, acts_ref, Xb.T, lambda ZL, AL: grad_out(ZL.T).T))
    return out


def _beyond_the_oracle(net: Network) -> str:
    """Why the torch oracle cannot check ``net`` yet ("" when it can).

    The oracle runs the stages with their parameters named ``f"{local}{l}"`` and reduces by
    ``sum``/``mean``; until it asks the network (``Network.torch_forward`` and
    ``Network.reduce_factor``, and says so with ``torch_oracle.RUNS_THE_NETWORK = True``), a
    residual block, parameter-free first layers and the element mean are reported as skipped, never
    compared with a wrong twin.
    """
    if getattr(torch_oracle, "RUNS_THE_NETWORK", False):
        return ""
    if any(getattr(st.layer, "composite", False) for st in net.stages):
        return "the torch oracle does not run residual blocks yet (needs Network.torch_forward)"
    if net.pre:
        return "the torch oracle does not run parameter-free first layers yet (needs Network.torch_forward)"
    if net.convention.reduction == "mean_elements":
        return "the torch oracle does not reduce by the element mean yet (needs Network.reduce_factor)"
    return ""


def verify(network: Network, X, Y, params, fd_max_coords: int = 60, fd_directions: int = 3,
           use_torch: bool = True, seed: int = 0, h: float = 1e-6) -> VerificationReport:
    """Compare the explicit chain with every available oracle; see the module docstring.

    Raises
    ------
    DataError
        Bad options (``fd_max_coords < 1``, ``fd_directions < 0``, a step ``h`` that is not a
        positive finite number, a negative ``seed``), or inputs/parameters refused by the network,
        including a non-finite loss or gradient.
    """
    for nm, v, lo in (("fd_max_coords", fd_max_coords, 1), ("fd_directions", fd_directions, 0), ("seed", seed, 0)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lo:
            raise DataError(f"verify: {nm} must be an integer >= {lo}, received {v!r}")
    if isinstance(h, (bool, np.bool_)) or not isinstance(h, (int, float, np.integer, np.floating)) or not (0 < h < np.inf):
        raise DataError(f"verify: the finite-difference step h must be a positive finite number, received {h!r}")
    if not isinstance(network, Network):
        raise DataError(f"verify: expected a jacobian_bp Network, received {type(network).__name__}")
    Xb, Yb, _ = network.as_batch(X, Y)
    canon = network.canonical_params(params)
    grad_chain = network.gradient(X, Y, params, method="chain")
    ref = grad_chain.canonical
    report = VerificationReport(network, Xb.shape[0], network.loss_value(X, Y, params), grad_chain.vector)

    _compare(report, "operator", network, ref, network.gradient(X, Y, params, method="operator").canonical)
    cf = _closed_forms(network, Xb, Yb, canon)
    if not cf:
        report.skipped["closed form"] = "textbook closed forms cover dense networks only"
    for name, g in cf.items():
        _compare(report, name, network, ref, g)

    # finite differences on the loss as a function of θ (convention order)
    theta = network.pack_canonical(canon)

    def f(t):
        c = network.unpack_canonical(t)
        cache = network.forward_cache(Xb, c)
        return float(np.sum(network.per_sample_loss(cache, Yb)) * network.reduce_factor(Xb.shape[0]))

    rng = np.random.default_rng(seed)
    idx_all, checked = [], {}
    for e in network.entries:
        n = e.size
        loc = np.arange(n) if n <= fd_max_coords else np.sort(rng.choice(n, fd_max_coords, replace=False))
        idx_all.extend((e.offset + loc).tolist())
        # canonical flat index (C order) of each checked θ coordinate
        canon_idx = np.ravel_multi_index(np.unravel_index(loc, e.canonical_shape, order=e.order), e.canonical_shape)
        checked[e.name] = canon_idx
    g_fd = reference.central_differences(f, theta, h=h, indices=idx_all)
    fd_canon = network.unpack_canonical(np.nan_to_num(g_fd))
    _compare(report, "finite differences", network, ref, fd_canon, checked)
    # directional derivatives along random directions over the whole θ
    if fd_directions:
        errs = []
        for _ in range(fd_directions):
            v = rng.standard_normal(theta.size)
            v /= np.linalg.norm(v)
            dd = reference.directional_difference(f, theta, v, h=h)
            exact = float(grad_chain.vector @ v)
            errs.append((abs(dd - exact), abs(dd - exact) / max(abs(exact), 1e-300)))
        report.errors.append(BlockError("finite differences", "dir.", max(e[0] for e in errs),
                                        max(e[0] for e in errs) / max(np.linalg.norm(grad_chain.vector), 1e-300),
                                        fd_directions))
    beyond = _beyond_the_oracle(network)
    if use_torch and beyond:
        report.skipped["torch autograd"] = beyond
    elif use_torch and torch_oracle.available():
        try:
            _, tg = torch_oracle.torch_loss_and_grad(network, Xb, Yb, canon)
            _compare(report, "torch autograd", network, ref, tg)
        except NotImplementedError as exc:
            report.skipped["torch autograd"] = str(exc)
    elif use_torch:
        report.skipped["torch autograd"] = "torch is not installed (pip install torch==2.13.0)"
    return report
