r"""The body of a residual block in LaTeX (:class:`_BodyLatex`) and the block algebra of the LaTeX model
(:class:`_LatexAlgebra`), used by :class:`~jacobian_bp.render.latex.NetworkLatex`.  Moved verbatim out of
:mod:`jacobian_bp.render.latex` (which re-exports the names) to keep that module under the size limit.
"""
from __future__ import annotations

import numpy as np

from ..backend import operators as ops
from ..backend.escape import escape_text
from ..engine.body_walk import BodyWalk
from .jacobian_latex import _dense_value
from .matrix_expr import Eye, Kron, MatExpr, Named, Ones, Prod, Sum, Sym, render


def _column(v) -> np.ndarray:
    v = np.asarray(v)
    return v.reshape(-1, 1)


class _LatexAlgebra:
    r"""The matrix-expression algebra a layer's ``block_param_jacobian`` writes its block in (LaTeX model).

    ``a`` is the :class:`Sym` of the layer's input, ``op`` the numeric Jacobian when bound (its im2col
    factor gives :math:`\mathbf P` its value); vec permutations have no LaTeX form here (None).
    """

    def __init__(self, a, op):
        self._a, self._op = a, op

    def identity(self, n):
        return Eye(n)

    def kron(self, A, B):
        return Kron(A, B)

    def matmul(self, A, B):
        return Prod([A, B])

    def ones(self, n):
        return Ones(n)

    def input_column(self):
        return self._a

    def input_row(self):
        return self._a.T

    def patches(self, rows, cols):
        op = self._op
        if not (op is None or (isinstance(op, ops.Kron) and isinstance(op.A, ops.Identity))):
            return None
        P = None if op is None else _dense_value(op.B)
        return Sym(rf"\mathbf{{P}}({self._a.latex_str})", (rows, cols), P, atomic=True)

    def permutation(self, local):
        return None


def _is_block(layer) -> bool:
    """A composite layer that states its inner stages (:meth:`jacobian_bp.layers.base.Layer.inner_stages`), drawn expanded."""
    ask = getattr(layer, "inner_stages", None)
    return callable(ask) and ask() is not None


class _ParamsAs:
    """The notation ``nt``, except that ``param(local, ...)`` writes the sub-layer's parameters as the θ table does
    (``names``: local name → LaTeX), so that a sub-layer's ``latex_forward`` names them consistently."""

    def __init__(self, nt, names: dict):
        self._nt, self._names = nt, names

    def __getattr__(self, attr):
        return getattr(self._nt, attr)

    def param(self, local, l=None, layer=None):
        return self._names[local] if local in self._names else self._nt.param(local, l, layer)

    def weight(self, local="W", l=None, *args, **kwargs):
        return self._names[local] if local in self._names else self._nt.weight(local, l, *args, **kwargs)

    def bias(self, l=None, *args, **kwargs):
        return self._names["b"] if "b" in self._names else self._nt.bias(l, *args, **kwargs)


class _BodyLatex(BodyWalk):
    r"""The body :math:`\mathbf g` of a residual block at tag ``tag`` (``"2"``, or ``"2.1"`` when nested), in LaTeX.

    The block's input is the :class:`Sym` ``a_in`` (:math:`\mathbf a^{[l-1]}`); its sub-stage ``k`` makes
    :math:`\mathbf z^{[l.k]}` and, after its activations, :math:`\mathbf a^{[l.k]}`
    (:meth:`~jacobian_bp.layers.residual.Residual.sub_stages`).  ``A`` (a batch of one) and ``params``
    (the block's canonical parameters) bind values; ``name`` maps the block's local parameter names to
    the network's (``"W.1"`` → ``"W2.1"``).

    * :meth:`jacobian` -- :math:`\mathbf J_{\mathbf a^{[l-1]}}\mathbf g`, the product of the body's factors, so
      that the block's input Jacobian is :math:`\mathbf I + \mathbf J_{\mathbf a^{[l-1]}}\mathbf g`;
    * :meth:`param_jacobian` -- :math:`\mathbf J_{\theta}\mathbf z^{[l]} = \mathbf J_{\theta}\mathbf g`: the chain from the
      body's output down to :math:`\mathbf z^{[l.k]}` times the sub-layer's own block (Algorithm 1 inside the block);
    * :meth:`forward_lines` -- the named forward pass of the body.
    """

    def __init__(self, nl: "NetworkLatex", block, tag: str, a_in: "Sym", A, params, name):
        self.nl, self.nt, self.block, self.tag, self.a_in, self.name = nl, nl.nt, block, tag, a_in, name
        self.pre, self.subs = block.inner_stages()
        self.params = params
        self.steps = None if A is None else block.body_steps(A, params)
        self.sub_params = None if params is None else block.sub_params(params)
        self.inner: dict[int, "_BodyLatex"] = {}
        for ss in self.subs:
            if _is_block(ss.layer):
                A_k = None if self.steps is None else self.steps[ss.position][1]
                p_k = None if self.sub_params is None else self.sub_params[ss.position]
                self.inner[ss.index] = _BodyLatex(nl, ss.layer, block.tag(tag, ss.index), self.input_of(ss.index), A_k, p_k,
                                                  lambda local, m=ss.names: name(m[local]))

    # ------------------------------------------------------------------ named vectors
    def _value(self, pos: int, which: int):
        """Input (``which=1``) or output (2) of body layer ``pos`` as a column, when bound."""
        return None if self.steps is None else _column(self.steps[pos][which][0])

    def _vec(self, tex: str, layer, pos: int, which: int) -> Sym:
        size = layer.in_size if which == 1 else layer.out_size
        return Sym(tex, (size, 1), self._value(pos, which))

    def z(self, k: int) -> Sym:
        ss = self.subs[k - 1]
        return self._vec(self.nt.z(self.block.tag(self.tag, k)), ss.layer, ss.position, 2)

    def output_of(self, k: int) -> Sym:
        r""":math:`\mathbf a^{[l.k]}` (or :math:`\mathbf z^{[l.k]}` for a sub-stage without activation)."""
        ss = self.subs[k - 1]
        if not ss.post:
            return self.z(k)
        return self._vec(self.nt.a(self.block.tag(self.tag, k)), ss.post[-1], ss.position + len(ss.post), 2)

    def input_of(self, k: int) -> Sym:
        if k > 1:
            return self.output_of(k - 1)
        if self.pre:
            return self._vec(self.nt.a(self.block.tag(self.tag, 0)), self.pre[-1], len(self.pre) - 1, 2)
        return self.a_in

    def output(self) -> Sym:
        r""":math:`\mathbf g(\mathbf a^{[l-1]})`: the last named vector of the body."""
        if not self.subs:
            return self.input_of(1)
        return self.output_of(len(self.subs))

    # ------------------------------------------------------------------ factors
    def _free_factors(self, layers, first_pos: int, inp: str, out: str, t: str) -> list:
        r"""Factors of parameter-free layers (last layer first): :math:`\operatorname{diag} f'(\cdot)`, closed forms, symbols."""
        facs = []
        n = len(layers)
        for j in reversed(range(n)):
            layer = layers[j]
            i_tex = inp if j == 0 else self.nt.h(t, j)
            o_tex = out if j == n - 1 else self.nt.h(t, j + 1)
            value = None
            if self.steps is not None:
                _, I, O, _p = self.steps[first_pos + j]
                value = _dense_value(layer.jac_input(I[0], O[0], {}))
            facs.append(self.nl.free_factor(layer, t, i_tex, o_tex, value))
        return [f for f in facs if not isinstance(f, Eye)]

    def post_factors(self, k: int) -> list:
        ss = self.subs[k - 1]
        t = self.block.tag(self.tag, k)
        return self._free_factors(ss.post, ss.position + 1, self.nt.z(t), self.nt.a(t), t)

    def input_factor(self, k: int) -> MatExpr:
        r""":math:`\mathbf J_{\mathbf a^{[l.k-1]}}\mathbf z^{[l.k]}`: :math:`(\mathbf W^{[l.k]})^\top` in Damadi's layout, a closed form,
        or :math:`\mathbf I + \mathbf J` of a nested block."""
        ss = self.subs[k - 1]
        t = self.block.tag(self.tag, k)
        layer = ss.layer
        inp = self.input_of(k)
        shape = (layer.out_size, layer.in_size)
        value = None
        if self.steps is not None:
            _, I, O, p = self.steps[ss.position]
            value = _dense_value(layer.jac_input(I[0], O[0], p))
        label = Sym(self.nt.jac(self.nt.z(t), inp.latex_str), shape, atomic=False)
        if k in self.inner:  # a nested block: I + J_body (its skip_sum), defined once, named in the chains
            return Named(label, layer.skip_sum(Eye(layer.out_size), self.inner[k].jacobian()), notation=self.nt,
                         defined=True)
        if layer.affine_weight_name is not None:
            e = self.nl.net.entry(self.name(ss.names[layer.affine_weight_name]))
            W = self.nl.param_sym(e)
            return W.T if self.nl.net.convention.weight_layout == "in_out" else W
        closed = layer.latex_input_jacobian(self.param_names(ss))
        if closed is not None:  # a closed form (LayerNorm, attention): defined once, named in the chains
            return Named(label, Sym(closed, shape, value), notation=self.nt, defined=True)
        return Sym(label.latex_str, shape, value, atomic=False)

    def param_names(self, ss) -> dict:
        """LaTeX of sub-stage ``ss``'s parameters, keyed by the sub-layer's local names, as the network's θ table writes them."""
        out = {}
        for p, outer in ss.names.items():
            if "." in p:  # a nested block's own name: its sub-layers name their parameters
                continue
            out[p] = self.nl.param_tex(self.nl.net.entry(self.name(outer)))
        return out

    def definitions(self) -> list:
        r"""The factors of the body that are defined once (nested blocks' :math:`\mathbf I + \mathbf J`, closed forms), in
        forward order, the inner blocks' own first: ``[(Named, sub-layer)]``."""
        out = []
        for ss in self.subs:
            if ss.index in self.inner:
                out += self.inner[ss.index].definitions()
            f = self.input_factor(ss.index)
            if isinstance(f, Named) and f.defined:
                out.append((f, ss.layer))
        return out

    def jacobian(self) -> MatExpr:
        r""":math:`\mathbf J_{\mathbf a^{[l-1]}}\mathbf g` as the product of the body's factors."""
        facs: list = []
        if self.subs:
            facs = self.chain_above(1) + [self.input_factor(1)]
        if self.pre:
            facs += self._free_factors(self.pre, 0, self.a_in.latex_str, self.nt.a(self.block.tag(self.tag, 0)),
                                       self.block.tag(self.tag, 0))
        n = self.a_in.shape[0]
        if not facs:
            return Eye(n)
        return facs[0] if len(facs) == 1 else Prod(facs)

    def param_jacobian(self, local: str, order: str, size: int) -> MatExpr:
        r""":math:`\mathbf J_{\operatorname{vec}\theta}\mathbf g` of the block's parameter ``local``: the chain from the body's output
        down to :math:`\mathbf z^{[l.k]}` times the sub-layer's own block."""
        k, sub = self.owner(local)
        ss = self.subs[k - 1]
        t = self.block.tag(self.tag, k)
        if k in self.inner:
            own = self.inner[k].param_jacobian(sub, order, size)
        else:
            op = None
            if self.steps is not None:
                _, I, O, p = self.steps[ss.position]
                op = ss.layer.jac_params(I[0], O[0], p, order)[sub]
            own = ss.layer.block_param_jacobian(_LatexAlgebra(self.input_of(k), op), sub, order)
            if own is None:
                wrt = self.nl.param_tex(self.nl.net.entry(self.name(local)), wrt=True)
                own = Sym(self.nt.jac(self.nt.z(t), wrt), (ss.layer.out_size, size),
                          None if op is None else _dense_value(op), atomic=False)
        facs = self.chain_above(k)
        if facs and isinstance(own, Eye):  # a bias: P I = P
            return facs[0] if len(facs) == 1 else Prod(facs)
        return own if not facs else Prod(facs + [own])

    # ------------------------------------------------------------------ forward pass
    def forward_lines(self, weight_layout: str) -> list:
        """``(name, right-hand side, value)`` of every named vector of the body, in evaluation order."""
        nt, lines = self.nt, []
        if self.pre:
            t0 = self.block.tag(self.tag, 0)
            rhs = r" \circ ".join(rf"\mathrm{{{escape_text(layer.kind)}}}" for layer in reversed(self.pre))
            lines.append((nt.a(t0), rf"{rhs}({self.a_in.latex_str})", self.input_of(1).value if self.subs else None))
        for ss in self.subs:
            t = self.block.tag(self.tag, ss.index)
            inp = self.input_of(ss.index).latex_str
            if ss.index in self.inner:
                inner = self.inner[ss.index]
                lines += inner.forward_lines(weight_layout)
                rhs = render(ss.layer.skip_sum(inner.a_in, inner.output()), nt)
            else:
                rhs = ss.layer.latex_forward(_ParamsAs(nt, self.param_names(ss)), t, inp, weight_layout)
            lines.append((nt.z(t), rhs, self.z(ss.index).value))
            if ss.post:
                lines.append((nt.a(t), rf"{nt.act(t, vector=True)}({nt.z(t)})", self.output_of(ss.index).value))
        return lines
