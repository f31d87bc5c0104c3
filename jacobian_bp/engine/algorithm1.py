r"""Damadi's Algorithm 1 (corrected): the left products, the parameter blocks and the explicit Jacobians.

:math:`\mathbf P_L = \mathbf I`, :math:`\mathbf P_{k-1} = \mathbf P_k\,\mathbf J_{\mathbf a^{[k-1]}}\mathbf z^{[k]}\,\mathbf J_{\mathbf z^{[k-1]}}\mathbf a^{[k-1]}`
(reverse mode, batched), and every block of :math:`\mathbf J_\theta\mathbf z^{[L]}` is
:math:`\mathbf P_l\,\mathbf J_{\theta_l}\mathbf z^{[l]}` (see :mod:`jacobian_bp.engine.network` for the
corrections to the printed algorithm).  A stage's layer may be a composite block (a residual block):
it answers ``left_jac_input`` and ``jac_params`` with the chain of its parts, so the recursion of
Algorithm 1 into the block happens in the block.  With parameter-free layers before the first
parametric one (:math:`\mathbf a^{[0]} = \mathbf f^{[0]}(\mathbf x)`), :math:`\mathbf P_0` is carried on
through them to :math:`\mathbf J_{\mathbf x}\mathbf z^{[L]}`.

A mixin of :class:`~jacobian_bp.engine.network.Network`; the methods are the network's public API.
"""
from __future__ import annotations

import numpy as np

from ..backend.operators import Dense as DenseOp, Identity, Product
from ..errors import ShapeError
from ..layers.dense import Dense
from .chain import LeftChain
from .jacobian import Jacobian, Space, block_diag, hstack, vstack

__all__ = ["Algorithm1"]


class Algorithm1:
    """Left products, parameter blocks and explicit Jacobians of a network (mixin)."""

    # ------------------------------------------------------------------ display
    def _displayed(self, J: Jacobian) -> Jacobian:
        """``J`` marked with the network's notation (its convention's ``notation``), so that its Jupyter display
        (``_repr_latex_``) and its blocks print in the user's notation, not Damadi's.  The mark is the
        attribute ``display_notation`` (a name or a Notation), read by the display printer of
        :mod:`jacobian_bp.render.latex`; the Jacobian's own symbol keeps Damadi's spaces."""
        J.display_notation = self.convention.notation
        for b in J.blocks:
            b.display_notation = self.convention.notation
        return J

    # ------------------------------------------------------------------ Algorithm 1
    def left_products(self, cache: Cache, canon: dict, need_input: bool = False) -> list[np.ndarray]:
        """P[l] = J_{z[l]} z[L] for every stage, batched: ``(N, n_L, size z[l])``; P[0] = J_x z[L]
        (computed only when ``need_input``: it is not needed for J_θ z[L]), carried through the
        parameter-free layers before stage 1 when there are any."""
        N = cache.a[0].shape[0]
        nL = self.n_out
        P: list = [None] * (self.L + 1)
        symbolic = self._is_symbolic(cache.a[0], canon)
        # exact integer identity for SymPy entries (a float eye would put 1.0 factors into exact Jacobians)
        eye = np.eye(nL, dtype=np.int64).astype(object) if symbolic else np.eye(nL)
        cur = eye[None] if N == 1 else np.broadcast_to(eye, (N, nL, nL))
        P[self.L] = cur
        for l in range(self.L, 0 if need_input else 1, -1):
            st = self.stages[l - 1]
            # J_{a[l-1]} z[l]; while P is the identity, a dense layer's factor is W itself
            if l == self.L and not symbolic and type(st.layer) is Dense:  # exact type: J_a z = W
                W = canon[f"W{l}"]
                cur = W[None] if N == 1 else np.broadcast_to(W, (N,) + W.shape)
            else:
                cur = st.layer.left_jac_input(cache.a[l - 1], cache.z[l], cur, cache.params[l])
            if l - 1 >= 1:
                for layer, A, O in self.post_steps(cache, l - 1):
                    cur = layer.left_jac_input(A, O, cur, {})
            P[l - 1] = cur
        if need_input:  # on through the parameter-free layers before stage 1: J_x z[L] = P_0 J_x a[0]
            for layer, A, O in self.pre_steps(cache):
                cur = layer.left_jac_input(A, O, cur, {})
            P[0] = cur
        return P

    def _left_chains(self, cache: Cache, i: int, symbolic: bool, P: list | None = None) -> list:
        """The left factors P[l] = J_{z[l]} z[L] of sample ``i`` as :class:`~jacobian_bp.engine.chain.LeftChain`
        links (P[L] = identity is ``None``); nothing is multiplied until a block needs it, unless the
        batched products ``P`` of :meth:`_left_products` are given."""
        chains: list = [None] * (self.L + 1)
        s = slice(i, i + 1)
        for l in range(self.L - 1, 0, -1):
            nxt = self.stages[l]  # stage l + 1: J_{a[l]} z[l+1], then J_{z[l]} a[l] back through stage l's activations
            steps = [(nxt.layer, cache.a[l][s], cache.z[l + 1][s], cache.params[l + 1])]
            steps += [(layer, A[s], O[s], {}) for layer, A, O in self.post_steps(cache, l)]
            chains[l] = LeftChain(chains[l + 1], steps, self.n_out, symbolic, None if P is None else P[l][i])
        return chains

    def _param_blocks(self, cache: Cache, i: int, symbolic: bool = False,
                      P: list | None = None) -> dict[str, Jacobian]:
        """Per-parameter Jacobian blocks J_{θ_p} z[L] = P_l J_{θ_p} z[l] of sample ``i`` (structured products)."""
        zL = self._zL_space
        chains = self._left_chains(cache, i, symbolic, P)
        blocks: dict[str, Jacobian] = {}
        for st in self.stages:
            l = st.index
            params = cache.params[l]
            stage_entries = self._stage_entries[l]
            a_prev = cache.a[l - 1][i]
            z_l = cache.z[l][i]
            # one call per distinct vec order among the stage's parameters
            local_ops = {}
            for order in {e.order for e in stage_entries}:
                wanted = {e.local for e in stage_entries if e.order == order}
                for k, op in st.layer.jac_params(a_prev, z_l, params, order).items():
                    if k in wanted:
                        local_ops[k] = op
            Pl = chains[l]
            for e in stage_entries:
                op = local_ops[e.local]
                full = op if Pl is None else Product([Pl, op])
                blocks[e.name] = Jacobian(full, zL, e.space)
        return blocks

    def _is_symbolic(self, Xb: np.ndarray, canon: dict) -> bool:
        return Xb.dtype == object or any(np.asarray(v).dtype == object for v in canon.values())

    def jacobian_theta(self, x, params) -> Jacobian:
        r""":math:`\mathbf J_\theta\mathbf z^{[L]}` of one sample, ``n_L × |θ|``, blocks in θ order (Alg. 1 line 7).

        Each block is the structured product :math:`\mathbf J_{\mathbf z^{[l]}}\mathbf z^{[L]}\,\mathbf J_{\theta_l}\mathbf z^{[l]}`
        (e.g. :math:`\mathbf P_l(\mathbf I\otimes\mathbf a^{[l-1]\top})`), never materialized
        until :meth:`Jacobian.to_dense` / :meth:`Jacobian.to_sparse`.
        """
        Xb, _, single = self.as_batch(x)
        if not single:
            raise ShapeError(f"jacobian_theta: expected one sample of shape {self.input_shape}, received a batch {np.shape(x)}; use batch_jacobian_theta")
        canon = self.canonical_params(params)
        cache = self.forward_cache(Xb, canon, need_output=False)
        blocks = self._param_blocks(cache, 0, self._is_symbolic(Xb, canon))
        return self._displayed(hstack([blocks[e.name] for e in self.entries], space=self.theta_space))

    def layer_jacobian(self, x, params, l: int) -> Jacobian:
        r"""Damadi's :math:`\mathbf J_{\mathbf W^{[l]},\mathbf b^{[l]}}\mathbf z^{[L]}` (all parameters of stage ``l``)."""
        l = self._check_stage(l, "layer_jacobian")
        J = self.jacobian_theta(x, params)
        bl = [b for b in J.blocks if any(e.stage == l and e.space == b.input for e in self.entries)]
        return self._displayed(hstack(bl, name=f"theta[{l}]", latex=",".join(b.input.latex for b in bl))) if bl else None

    def jacobian_input(self, x, params) -> Jacobian:
        r""":math:`\mathbf J_{\mathbf x}\mathbf z^{[L]}` of one sample, ``n_L × n_0``."""
        Xb, _, single = self.as_batch(x)
        if not single:
            raise ShapeError(f"jacobian_input: expected one sample of shape {self.input_shape}, received {np.shape(x)}")
        canon = self.canonical_params(params)
        cache = self.forward_cache(Xb, canon)
        P = self.left_products(cache, canon, need_input=True)
        return self._displayed(Jacobian(DenseOp(P[0][0]), self.z_space(self.L), self.input_space()))

    def chain_factors(self, x, params, l: int) -> list[Jacobian]:
        r"""The typed factors of :math:`\mathbf J_{\mathbf z^{[l]}}\mathbf z^{[L]}`, left to right:
        :math:`\mathbf J_{\mathbf a^{[L-1]}}\mathbf z^{[L]}, \mathbf J_{\mathbf z^{[L-1]}}\mathbf a^{[L-1]}, \dots,
        \mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}` (one sample).  Their product, formed with ``@``,
        type-checks every link of the chain.  ``l`` is in ``0..L`` (``l = 0``: down to the input
        :math:`\mathbf x`, through :math:`\mathbf J_{\mathbf x}\mathbf a^{[0]}` when parameter-free layers
        come first; ``l = L``: no factor)."""
        l = self._check_stage(l, "chain_factors", allow_zero=True)
        Xb, _, _ = self.as_batch(x)
        canon = self.canonical_params(params)
        cache = self.forward_cache(Xb, canon)
        factors = []
        for k in range(self.L, l, -1):
            st = self.stages[k - 1]
            op = st.layer.jac_input(cache.a[k - 1][0], cache.z[k][0], cache.params[k])
            factors.append(Jacobian(op, self.z_space(k), self.a_space(k - 1)))
            if k == 1:  # below the first layer: x itself, or the parameter-free layers a[0] = f[0](x)
                if self.pre:
                    ops = [layer.jac_input(A[0], O[0], {}) for layer, A, O in self.pre_steps(cache)]
                    factors.append(Jacobian(Product(ops), self.a_space(0), self.input_space()))
                break
            prev = self.stages[k - 2]
            ins = cache.post[k - 1]
            outs = ins[1:] + [cache.a[k - 1]]
            ops = [layer.jac_input(A[0], O[0], {}) for layer, A, O in zip(prev.post, ins, outs)]
            post_op = Product(list(reversed(ops))) if ops else Identity(prev.layer.out_size)
            factors.append(Jacobian(post_op, self.a_space(k - 1), self.z_space(k - 1)))
        return [self._displayed(f) for f in factors]

    def local_jacobian(self, x, params, l: int) -> Jacobian:
        r""":math:`\mathbf J_{\theta_l}\mathbf z^{[l]}`, e.g. Damadi's :math:`[\mathbf I\otimes\mathbf a^{[l-1]\top}\ \ \mathbf I]`.

        The blocks are in θ order (the order of :attr:`entries`, hence of :meth:`jacobian_theta`'s columns of
        stage ``l``): a residual block's ``W.1, b.1, W.2, b.2``, not all weights first."""
        l = self._check_stage(l, "local_jacobian")
        Xb, _, _ = self.as_batch(x)
        canon = self.canonical_params(params)
        cache = self.forward_cache(Xb, canon)
        st = self.stages[l - 1]
        blocks = []
        for e in self.entries:
            if e.stage == l:
                op = st.layer.jac_params(cache.a[l - 1][0], cache.z[l][0], cache.params[l], e.order)[e.local]
                blocks.append(Jacobian(op, self.z_space(l), e.space))
        return self._displayed(hstack(blocks, name=f"theta[{l}]", latex=",".join(b.input.latex for b in blocks)))

    # ------------------------------------------------------------------ batches
    def batch_jacobian_theta(self, X, params) -> Jacobian:
        r""":math:`\mathbf J_\theta \mathbf Z^{[L]}` of a batch: per-sample Jacobians stacked (sample-major rows)."""
        Xb, _, _ = self.as_batch(X)
        canon = self.canonical_params(params)
        cache = self.forward_cache(Xb, canon, need_output=False)
        symbolic = self._is_symbolic(Xb, canon)
        # the left products of all samples at once (batched BLAS), handed to each sample's chain
        P = self.left_products(cache, canon) if Xb.shape[0] > 1 else None
        rows = []
        for i in range(Xb.shape[0]):
            blocks = self._param_blocks(cache, i, symbolic, P)
            rows.append(hstack([blocks[e.name] for e in self.entries], space=self.theta_space))
        rows = [Jacobian(r.op, Space(f"z[{self.L}]_{i + 1}", r.output.shape, rf"\mathbf{{z}}^{{[{self.L}]}}_{{{i + 1}}}"), r.input, blocks=r.blocks)
                for i, r in enumerate(rows)]
        return self._displayed(vstack(rows, name=f"Z[{self.L}]", latex=rf"\mathbf{{Z}}^{{[{self.L}]}}"))

    def batch_jacobian_input(self, X, params) -> Jacobian:
        r""":math:`\mathbf J_{\mathbf X}\mathbf Z^{[L]} = \sum_i \mathbf E_{ii}\otimes\mathbf J_{\mathbf x_i}\mathbf z_i^{[L]}` (block diagonal over samples)."""
        Xb, _, _ = self.as_batch(X)
        canon = self.canonical_params(params)
        cache = self.forward_cache(Xb, canon)
        P = self.left_products(cache, canon, need_input=True)
        js = [Jacobian(DenseOp(P[0][i]), Space(f"z[{self.L}]_{i + 1}", (self.n_out,)), Space(f"x_{i + 1}", self.input_shape))
              for i in range(Xb.shape[0])]
        return self._displayed(block_diag(js, f"Z[{self.L}]", rf"\mathbf{{Z}}^{{[{self.L}]}}", "X", r"\mathbf{X}"))

    def activation_jacobian_batch(self, X, params, l: int) -> Jacobian:
        r"""Ganev Prop. 4.1's :math:`\Phi_\ell = \sum_i \mathbf E_{ii}\otimes \mathrm{Jac}_{i,\ell}^\top` for stage ``l``.

        Returned as the block-diagonal operator of the transposed per-sample activation
        Jacobians (batch-first, rows of :math:`\mathbf Z_\ell` stacked)."""
        l = self._check_stage(l, "activation_jacobian_batch")
        Xb, _, _ = self.as_batch(X)
        canon = self.canonical_params(params)
        cache = self.forward_cache(Xb, canon)
        st = self.stages[l - 1]
        ins = cache.post[l]
        outs = ins[1:] + [cache.a[l]]
        js = []
        for i in range(Xb.shape[0]):
            ops = [layer.jac_input(A[i], O[i], {}) for layer, A, O in zip(st.post, ins, outs)]
            op = Product(list(reversed(ops))) if ops else Identity(st.layer.out_size)
            js.append(Jacobian(op.T, Space(f"z[{l}]_{i + 1}", st.layer.out_shape), Space(f"a[{l}]_{i + 1}", self.a_space(l).shape)))
        return self._displayed(block_diag(js, f"Z[{l}]", rf"\mathbf{{Z}}_{{{l}}}", f"A[{l}]", rf"\mathbf{{A}}_{{{l}}}"))

