r"""Algorithm 1 at the batch level, for networks with a layer that couples the samples.

Every layer of the package but one maps each sample on its own, so the Jacobian of a batch is
block-diagonal over the samples (Ganev Prop. 4.1's :math:`\Phi = \sum_i\mathbf E_{ii}\otimes\mathrm{Jac}_i^\top`)
and Algorithm 1 runs per sample.  Batch normalization in training mode (``batch_norm``,
:mod:`jacobian_bp.layers.batch_norm`) normalizes with the statistics of the batch: its output
:math:`\mathbf o_i` depends on every input :math:`\mathbf a_k`, and so does :math:`\mathbf z_i^{[L]}` of
every network that contains it.  Such a layer declares ``couples_samples = True`` and gives its
Jacobians for the whole batch (``batch_jac_input``, ``batch_jac_params``, ``batch_left_jac_input``).

Here the chain is formed for the batch as one vector, flattened *sample-major*
(:math:`\operatorname{vec}\mathbf Z = [\mathbf z_1;\dots;\mathbf z_N]`, row ``i·n + j`` is entry ``j`` of sample ``i``):

.. math::

   \mathbf P_L = \mathbf I_{Nn_L},\qquad
   \mathbf P_{l-1} = \mathbf P_l\,\mathbf J_{\operatorname{vec}\mathbf A^{[l-1]}}\operatorname{vec}\mathbf Z^{[l]}\,
   \mathbf J_{\operatorname{vec}\mathbf Z^{[l-1]}}\operatorname{vec}\mathbf A^{[l-1]}
   \in\mathbb R^{Nn_L\times Nn_{l-1}},\qquad
   \mathbf J_{\theta_l}\operatorname{vec}\mathbf Z^{[L]} = \mathbf P_l\,\mathbf J_{\theta_l}\operatorname{vec}\mathbf Z^{[l]},

where the factor of a per-sample layer is block-diagonal (applied with its own ``left_jac_input`` on the
column blocks of :math:`\mathbf P`, one per sample) and the factor of a coupling layer is its full batch
Jacobian (``batch_left_jac_input``).  :math:`\mathbf J_{\theta_l}\operatorname{vec}\mathbf Z^{[l]}` stacks the
per-sample parameter Jacobians (``jac_params`` per sample, or ``batch_jac_params``).  The gradient is
:math:`\nabla_\theta\ell = (\mathbf J_\theta\operatorname{vec}\mathbf Z^{[L]})^\top\operatorname{vec}\mathbf D`
with the reduced deltas :math:`\mathbf D` (Damadi eq. (1) for the batch as one sample).

The cost is that of the materialized batch Jacobians, :math:`(Nn_L)\times(Nn_l)` per stage: the memory
guard is asked first; the operator-mode gradient (``method="operator"``: the layers' batched VJPs, which
for a coupling layer are the exact products with its batch Jacobian) costs what backprop costs.

Per-sample quantities (per-sample gradients, :math:`\mathbf J_\theta\mathbf z^{[L]}` of one sample, the
Jacobian chain of one sample) are not defined for these networks; :func:`per_sample_error` is the one
refusal every such route raises.
"""
from __future__ import annotations

import numpy as np

from ..backend.guard import check_bytes
from ..errors import UnsupportedInputError

# ``Network`` and ``Cache`` in annotations are jacobian_bp.engine.network's; this module is imported by it.

__all__ = ["couples", "coupled_kinds", "per_sample_error", "batch_left_products", "batch_theta_matrix",
           "batch_chain_gradient", "COUPLING_HINT"]

#: what to use instead of a per-sample quantity
COUPLING_HINT = ("use the batch quantities instead: gradient(X, Y, params), batch_jacobian_theta(X, params), "
                 "batch_jacobian_input(X, params) (.block(i, k) shows the coupling), or batch_norm_eval for per-sample ones")


def couples(layer) -> bool:
    """Whether ``layer`` couples the samples of a batch (its class says ``couples_samples = True``)."""
    return bool(getattr(layer, "couples_samples", False))


def coupled_kinds(network) -> str:
    """The kinds of the coupling layers of ``network``, comma-separated (for messages)."""
    return ", ".join(sorted({layer.kind for layer in network.layers if couples(layer)}))


def per_sample_error(network, what: str) -> UnsupportedInputError:
    """The one-line refusal of a per-sample route on a network whose samples are coupled."""
    return UnsupportedInputError(
        f"{what}: network {network.name!r} has a {coupled_kinds(network)} layer (training mode) whose batch statistics "
        f"couple the samples -- z_i[L] depends on every sample of the batch, so no per-sample quantity is defined; "
        + COUPLING_HINT)


def _is_dense(layer) -> bool:
    from ..layers.dense import Dense

    return type(layer) is Dense  # exact type: a subclass may change its parameter Jacobians


def _left_step(layer, A, O, P, params) -> np.ndarray:
    r""":math:`\mathbf P\,\mathbf J_{\operatorname{vec}\mathbf A}\operatorname{vec}\mathbf O` of one layer for ``P`` of shape ``(M, N·out)``."""
    if couples(layer):
        return np.asarray(layer.batch_left_jac_input(A, O, P, params))
    N, M = A.shape[0], P.shape[0]
    P3 = P.reshape(M, N, -1).transpose(1, 0, 2)  # (N, M, out) view: sample i's column block
    R = np.asarray(layer.left_jac_input(A, O, P3, params)).reshape(N, M, -1)
    return R.transpose(1, 0, 2).reshape(M, -1)


def batch_left_products(network: "Network", cache: "Cache", need_input: bool = False) -> list:
    r"""``P[l]`` :math:`= \mathbf J_{\operatorname{vec}\mathbf Z^{[l]}}\operatorname{vec}\mathbf Z^{[L]}`, ``(N·n_L, N·size z[l])``, for every stage;
    ``P[0]`` :math:`= \mathbf J_{\operatorname{vec}\mathbf X}\operatorname{vec}\mathbf Z^{[L]}` when ``need_input`` (through the
    parameter-free first layers).  Sample-major rows and columns; numeric only."""
    if cache.a[0].dtype == object or any(np.asarray(v).dtype == object for ps in cache.params for v in ps.values()):
        raise UnsupportedInputError(f"network {network.name!r}: the batch Jacobians of coupled samples are numeric only "
                                    f"(SymPy entries received); the layer's sympy_batch gives the exact formula")
    N = cache.a[0].shape[0]
    M = N * network.n_out
    widths = [N * st.layer.in_size for st in network.stages] + [N * int(np.prod(network.input_shape))]
    check_bytes(8 * M * (M + sum(widths)), f"the batch Jacobians of the chain ({M} rows; samples coupled)")
    P: list = [None] * (network.L + 1)
    cur = np.eye(M)
    P[network.L] = cur
    for l in range(network.L, 0 if need_input else 1, -1):
        st = network.stages[l - 1]
        cur = _left_step(st.layer, cache.a[l - 1], cache.z[l], cur, cache.params[l])
        if l - 1 >= 1:
            for layer, A, O in network.post_steps(cache, l - 1):
                cur = _left_step(layer, A, O, cur, {})
        P[l - 1] = cur
    if need_input:
        for layer, A, O in network.pre_steps(cache):
            cur = _left_step(layer, A, O, cur, {})
        P[0] = cur
    return P


def _stage_blocks(network, cache, l: int, Pl: np.ndarray) -> dict[str, np.ndarray]:
    r""":math:`\mathbf P_l\,\mathbf J_{\theta}\operatorname{vec}\mathbf Z^{[l]}` for every parameter of stage ``l``, keyed by network name."""
    st = network.stages[l - 1]
    layer, A, O, params = st.layer, cache.a[l - 1], cache.z[l], cache.params[l]
    entries = [e for e in network.entries if e.stage == l]
    out: dict[str, np.ndarray] = {}
    for order in sorted({e.order for e in entries}):
        wanted = [e for e in entries if e.order == order]
        if couples(layer):
            ops = layer.batch_jac_params(A, O, params, order)
            for e in wanted:
                out[e.name] = np.asarray(ops[e.local].left_matmat(Pl))
            continue
        N = A.shape[0]
        width = Pl.shape[1] // N
        if _is_dense(layer):  # Σ_i P_i (I ⊗ a_iᵀ) = Σ_i P_i ⊗ a_iᵀ as one einsum; the bias block Σ_i P_i
            P3 = Pl.reshape(Pl.shape[0], N, width)
            for e in wanted:
                if e.local == "W":
                    B = np.einsum("mno,nj->moj", P3, A.reshape(N, -1))
                    out[e.name] = (B if order == "C" else B.transpose(0, 2, 1)).reshape(Pl.shape[0], -1)
                else:
                    out[e.name] = P3.sum(axis=1)
            continue
        for i in range(N):
            ops = layer.jac_params(A[i], O[i], params, order)
            Pi = np.ascontiguousarray(Pl[:, i * width:(i + 1) * width])
            for e in wanted:
                part = np.asarray(ops[e.local].left_matmat(Pi))
                out[e.name] = part if i == 0 else out[e.name] + part
    return out


def batch_theta_matrix(network: "Network", cache: "Cache") -> np.ndarray:
    r""":math:`\mathbf J_\theta\operatorname{vec}\mathbf Z^{[L]}`, ``(N·n_L, |θ|)``: rows sample-major, columns in the convention's θ order."""
    N = cache.a[0].shape[0]
    check_bytes(8 * N * network.n_out * network.n_params, f"the batch Jacobian J_theta Z[{network.L}] (samples coupled)")
    P = batch_left_products(network, cache)
    out = np.empty((N * network.n_out, network.n_params))
    for st in network.stages:
        for name, block in _stage_blocks(network, cache, st.index, P[st.index]).items():
            out[:, network.entry(name).slice] = block
    return out


def batch_chain_gradient(network: "Network", cache: "Cache", D: np.ndarray) -> dict[str, np.ndarray]:
    r"""The explicit-chain gradient of a batch: for each stage :math:`\mathbf g_l = \mathbf P_l^\top\operatorname{vec}\mathbf D`
    (the cotangent of :math:`\mathbf Z^{[l]}`), then the layer's transposed parameter Jacobian (``vjp_params``).
    Canonical layout, keyed by the network's parameter names."""
    P = batch_left_products(network, cache)
    d = np.asarray(D, dtype=float).reshape(-1)
    N = D.shape[0]
    grads: dict[str, np.ndarray] = {}
    for st in network.stages:
        l = st.index
        G = D if l == network.L else (d @ P[l]).reshape(N, -1)
        shapes = st.layer.param_shapes()
        for k, v in st.layer.vjp_params(cache.a[l - 1], cache.z[l], G, cache.params[l]).items():
            grads[network.param_name(l, k)] = np.asarray(v).reshape(shapes[k])
    return grads
