r"""The forward and backward passes of a :class:`~jacobian_bp.layers.attention.TransformerBlock` on a batch.

:func:`leaf_pass` runs the leaves of both residual blocks once (a leaf with ``forward_state`` keeps its own pass:
attention its projections and weights, layer norm its moments); :func:`block_backward` runs one reverse pass with
every leaf's parameter gradient on the way; :class:`KeptPass` keeps the last forward pass so that the engine's
``vjp_params`` / ``vjp_input`` after ``forward`` do not run it again.  BLAS runs on one thread here (many small
products), as in the unrolled recurrent layers.
"""
from __future__ import annotations

import numpy as np

from .attention_ops import _one_blas_thread

__all__ = ["KeptPass", "leaf_pass", "block_backward"]


class KeptPass:
    """The last numeric forward pass of a :class:`~.attention.TransformerBlock` (its leaves' inputs, outputs and kept
    states), held on the block as ``_kept`` until its output is garbage collected.

    The engine's reverse sweep calls ``vjp_params(A, O, G, p)`` and then ``vjp_input(A, O, G, p)`` with the ``A`` it
    passed to ``forward`` and ``O = forward(A, p)`` (the same objects): both reuse this pass instead of running the
    forward pass again, and ``vjp_input`` reuses the input cotangent of the parameter pass with the same ``G``.
    """

    def __init__(self, A, params, passes, Y):
        import weakref

        self.A, self.params, self.passes = A, dict(params), passes
        self.ref = weakref.ref(Y)
        self.G = self.gin = None

    @classmethod
    def keep(cls, block, A, params, passes, Y) -> None:
        """Keep the pass on ``block`` (numeric arrays only)."""
        if A.dtype == object or not isinstance(Y, np.ndarray) or Y.dtype == object:
            return
        import weakref

        kept = cls(A, params, passes, Y)
        block._kept = kept
        # the finalizer holds the block and the pass's weak reference only (a long-lived output keeps no pass alive)
        weakref.finalize(Y, cls._drop, block, kept.ref)

    @staticmethod
    def _drop(block, ref) -> None:
        kept = block.__dict__.get("_kept")
        if kept is not None and kept.ref is ref:
            block._kept = None

    @staticmethod
    def find(block, A, O, params) -> "KeptPass | None":
        """The kept pass that made ``O`` from ``A`` and ``params`` (the same array objects), or None."""
        kept = block.__dict__.get("_kept")
        if kept is None or O is None or kept.A is not A or kept.ref() is not O:
            return None
        kp = kept.params
        if kp.keys() != params.keys() or any(kp[k] is not params[k] for k in kp):
            return None
        return kept


@_one_blas_thread
def leaf_pass(block, A, params) -> tuple[list, np.ndarray]:
    """The forward pass through the leaves of both residual blocks of a Transformer block: per block ``(block,
    [(leaf, input, output, leaf params, kept state or None)])``, and the block's output.  A leaf with
    ``forward_state`` (attention) keeps its own forward pass for its backward."""
    passes, H = [], A
    for R, pR in zip(block.body, block._sub_params(params)):
        steps, cur = [], H
        for layer, p in zip(R.body, R.sub_params(pR)):
            fs = getattr(layer, "forward_state", None)
            if callable(fs) and not (isinstance(cur, np.ndarray) and cur.dtype == object):
                o, st = fs(cur, p)
            else:
                o, st = layer.forward(cur, p), None
            steps.append((layer, cur, o, p, st))
            cur = o
        passes.append((R, steps))
        H = H + cur
    return passes, H


@_one_blas_thread
def block_backward(block, A, G, params, want_params: bool, want_input: bool, O=None):
    r"""One reverse pass through the leaves of a Transformer block: :math:`\mathbf g_{\mathbf u} = \mathbf g + \mathbf J_{\mathrm{MLP}}^\top\mathbf g`,
    :math:`\mathbf g_{\mathbf x} = \mathbf g_{\mathbf u} + \mathbf J_{\mathrm{MHA}}^\top\mathbf g_{\mathbf u}`, with every leaf's parameter
    gradient on the way (the attention's from the same backward pass as its input gradient).

    With ``O`` the output of the block's ``forward`` on the same ``A`` and ``params``, its kept pass (:class:`KeptPass`)
    is reused, and the input cotangent of a parameter pass is kept for a following ``vjp_input`` with the same ``G``.
    Returns ``(input cotangent or None, {block parameter name: gradient})``.
    """
    N = A.shape[0]
    kept = KeptPass.find(block, A, O, params)
    if kept is not None:
        if want_input and not want_params and kept.G is G:
            return kept.gin, {}
        passes = kept.passes
        want_input = want_input or want_params  # one more small step: kept for the engine's vjp_input with this G
    else:
        passes = leaf_pass(block, A, params)[0]
    g_out = np.asarray(G).reshape(N, -1)
    grads: dict[str, np.ndarray] = {}
    for k in range(len(passes) - 1, -1, -1):
        R, steps = passes[k]
        g = g_out
        for j in range(len(steps) - 1, -1, -1):
            layer, In, Out, p, st = steps[j]
            need_in = j > 0 or k > 0 or want_input
            gin, vp = None, {}
            if st is not None and (need_in or want_params):
                gin, vp = layer.vjp_from_state(st, g, want_params and layer.parametric)
            elif want_params and layer.parametric:
                if need_in and callable(getattr(layer, "vjp_both", None)):
                    gin, vp = layer.vjp_both(In, Out, g, p)
                else:
                    vp = layer.vjp_params(In, Out, g, p)
            for local, v in vp.items():
                name = block.name_map[k][R.name_map[j][local]]
                v = np.asarray(v).ravel()
                grads[name] = v if name not in grads else grads[name] + v
            if not need_in:
                break
            if gin is None:
                gin = layer.vjp_input(In, Out, g, p)
            g = np.asarray(gin).reshape(N, -1)
        if k > 0 or want_input:
            g_out = g_out + g  # the skip connection of residual block k
    if kept is not None and want_params:
        kept.G, kept.gin = G, g_out
    return (g_out if want_input else None), grads
