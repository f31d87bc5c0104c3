r"""The body of a residual block in the SymPy block chain: :math:`\mathbf I + \mathbf J_{\mathbf a}\mathbf g` written out.

A residual block :math:`\mathbf z^{[l]} = \mathbf a^{[l-1]} + \mathbf g(\mathbf a^{[l-1]})` (He et al., 2016, eq. (1))
has the input Jacobian :math:`\mathbf I + \mathbf J_{\mathbf a^{[l-1]}}\mathbf g`, and the Jacobian of a parameter
inside it is the chain from the body's output down to the sub-layer that owns it times that sub-layer's own block
(Damadi's Algorithm 1 applied inside the block).  :class:`BodyChain` writes both with the same matrix symbols
as :class:`~jacobian_bp.symbolic.blocks.BlockChain` -- :math:`\mathbf W^{[l.k]}`, :math:`\mathbf D^{[l.k]}`,
:math:`\mathbf a^{[l.k]}` for sub-stage ``k`` of the block at stage ``l`` (the tags of
:meth:`~jacobian_bp.layers.residual.Residual.sub_stages`), recursively for nested blocks -- instead of one opaque
symbol per block.  Each symbol's explicit value comes from the block in named form
(:func:`~jacobian_bp.symbolic.intermediates.named_forward`), so :meth:`BlockChain.explicit` expands it exactly.
"""
from __future__ import annotations

import numpy as np
import sympy
from sympy import Identity, MatAdd, MatMul

from ..engine.body_walk import BodyWalk

__all__ = ["BodyChain", "is_block"]


def is_block(layer) -> bool:
    """A composite layer that states its sub-stages (:meth:`jacobian_bp.layers.residual.Residual.sub_stages`)."""
    return callable(getattr(layer, "sub_stages", None))


def _column(arr) -> sympy.Matrix:
    return sympy.Matrix(list(np.asarray(arr, dtype=object).ravel()))


def _product(chain, factors, what: str, n: int):
    """The shape-checked product of the factors (the chain's ``matmul``), nested products spliced in; the identity
    of size ``n`` for none."""
    flat = []
    for f in factors:
        flat += list(f.args) if isinstance(f, MatMul) else [f]
    if not flat:
        return Identity(n)
    return flat[0] if len(flat) == 1 else chain.matmul(*flat, what=what)


class BodyChain(BodyWalk):
    r"""The body :math:`\mathbf g` of the residual block ``block`` at tag ``tag`` (``"2"``; ``"2.1"`` when nested).

    Parameters
    ----------
    chain : BlockChain
        Owns the symbols (and the notation).
    block : Residual
    tag : str
    a_in : MatrixSymbol
        The block's input (:math:`\mathbf a^{[l-1]}`, or the inner vector a nested block reads).
    name : callable
        Maps the block's local parameter names to the network's (``"W.1"`` → ``"W2.1"``).
    named : callable
        ``named(v)``: the block in named form (a :class:`~jacobian_bp.symbolic.intermediates.NamedBlock`) at the
        chain's named values ``v``.
    """

    def __init__(self, chain, block, tag: str, a_in, name, named):
        self.chain, self.block, self.tag, self.a_in, self.name, self.named = chain, block, tag, a_in, name, named
        self.nt = chain.notation
        self.pre, self.subs = block.sub_stages()
        self._inputs: dict[int, object] = {}
        self.inner: dict[int, "BodyChain"] = {}
        for ss in self.subs:
            if is_block(ss.layer):
                self.inner[ss.index] = BodyChain(chain, ss.layer, block.tag(tag, ss.index), self.input_of(ss.index),
                                                 lambda local, m=ss.names: name(m[local]),
                                                 lambda v, k=ss.index: named(v).subs[k - 1].inner)

    # ------------------------------------------------------------------ named vectors
    def _t(self, k) -> str:
        return self.block.tag(self.tag, k)

    def output_of(self, k: int):
        r""":math:`\mathbf a^{[t.k]}` (:math:`\mathbf z^{[t.k]}` for a sub-stage without activation)."""
        ss, t, nt = self.subs[k - 1], self._t(k), self.nt
        letter = "a" if ss.post else "z"
        size = (ss.post[-1] if ss.post else ss.layer).out_size
        meaning = rf"{nt.act(t, vector=True)}({nt.z(t)})" if ss.post else rf"\text{{output of sub-layer {k}}}"
        return self.chain._symbol(f"{letter}[{t}]", size, 1, nt.vec(letter, t), meaning,
                                  lambda v, k=k: _column(self.named(v).subs[k - 1].out))

    def input_of(self, k: int):
        if k > 1:
            return self.output_of(k - 1)
        if self.pre:
            t, nt = self._t(0), self.nt
            return self.chain._symbol(f"a[{t}]", self.pre[-1].out_size, 1, nt.vec("a", t),
                                      r"\text{output of the body's parameter-free first layers}",
                                      lambda v: _column(self.named(v).pre_io[-1][1]))
        return self.a_in

    # ------------------------------------------------------------------ factors
    def post_factors(self, k: int) -> list:
        ss = self.subs[k - 1]
        return self.chain.free_factors(ss.post, self._t(k), lambda v, k=k: self.named(v).subs[k - 1].post_io)

    def _pre_factors(self) -> list:
        return self.chain.free_factors(self.pre, self._t(0), lambda v: self.named(v).pre_io)

    def input_factor(self, k: int):
        r""":math:`\mathbf J_{\mathbf a^{[t.k-1]}}\mathbf z^{[t.k]}`: the weight (transposed in Damadi's layout), a closed form,
        :math:`\mathbf I + \mathbf J` of a nested block, or a named symbol."""
        ss, t, nt = self.subs[k - 1], self._t(k), self.nt
        layer = ss.layer
        if k in self.inner:
            return MatAdd(Identity(layer.out_size), self.inner[k].jacobian())
        net = self.chain.network
        if layer.affine_weight_name is not None:
            e = net.entry(self.name(ss.names[layer.affine_weight_name]))
            W = self.chain._symbol(f"W[{t}]", *e.user_shape, nt.param(layer.affine_weight_name, t, layer),
                                   rf"\text{{weight of sub-layer {k} of the block at layer {self.tag}}}",
                                   lambda v, e=e: sympy.Matrix(v.user_param(e).tolist()))
            return W.T if net.convention.weight_layout == "in_out" else W
        label = nt.jac(nt.z(t), self.chain.symbols_tex(self.input_of(k)))
        closed = layer.latex_input_jacobian({p: nt.param(p, t, layer) for p in layer.param_names})
        name = f"{layer.block_input_name if closed is not None else 'Jin'}[{t}]"

        def provider(v, k=k):
            sub = self.named(v).subs[k - 1]
            return layer.jac_input(sub.a_in, sub.z, sub.params).to_sympy()

        return self.chain._symbol(name, layer.out_size, layer.in_size, closed if closed is not None else label, label, provider)

    def jacobian(self):
        r""":math:`\mathbf J_{\mathbf a}\mathbf g`: the product of the body's factors, last layer first."""
        facs: list = []
        if self.subs:
            facs = self.chain_above(1) + [self.input_factor(1)]
        facs += self._pre_factors()
        return _product(self.chain, facs, f"body Jacobian of the block at layer {self.tag}", int(self.a_in.shape[0]))

    def param_jacobian(self, local: str, order: str, size: int):
        r""":math:`\mathbf J_{\operatorname{vec}\theta}\mathbf g` of the block's parameter ``local``: the chain from the body's
        output down to :math:`\mathbf z^{[t.k]}` times the sub-layer's own block (Algorithm 1 inside the block)."""
        k, sub = self.owner(local)
        ss = self.subs[k - 1]
        if k in self.inner:
            own = self.inner[k].param_jacobian(sub, order, size)
        else:
            def jp(v, o, k=k, sub=sub):
                s = self.named(v).subs[k - 1]
                return ss.layer.jac_params(s.a_in, s.z, s.params, o)[sub]

            own = self.chain.param_block(ss.layer, self._t(k), self.input_of(k), sub, order, size, jp)
        facs = self.chain_above(k)
        if facs and isinstance(own, Identity):  # a bias: P I = P
            own = None
        return _product(self.chain, facs + ([own] if own is not None else []),
                        f"parameter {local} of the block at layer {self.tag}", ss.layer.out_size)
