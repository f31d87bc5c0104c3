r"""The forward pass with *named* intermediate quantities.

Instead of expanding :math:`\mathbf z^{[2]} = \mathbf W^{[2]}\sigma(\mathbf W^{[1]}\mathbf x+\mathbf b^{[1]})+\mathbf b^{[2]}`
into one expression, every pre-activation and activation entry gets its own symbol and a
definition in terms of the previous layer's symbols (Damadi §3, Ganev §3.1, Park §5.1):

.. math::

   z^{[l]}_i := \big(\mathbf W^{[l]}\mathbf a^{[l-1]} + \mathbf b^{[l]}\big)_i,\qquad
   a^{[l]}_i := f^{[l]}(\mathbf z^{[l]})_i,\qquad \hat y_i := a^{[L]}_i,\qquad \mathbf a^{[0]} = \mathbf x.

Residual blocks (:mod:`jacobian_bp.layers.residual`) keep their intermediates named too: the block at
stage :math:`l` reads :math:`\mathbf a^{[l-1]}`, its ``k``-th parametric sub-layer makes
:math:`z^{[l.k]}_i` (its activations :math:`a^{[l.k]}_i`; parameter-free layers before the first one
make :math:`a^{[l.0]}_i`), and the block's output is
:math:`z^{[l]}_i := a^{[l-1]}_i + g_i`, :math:`g_i` the last of these (:attr:`NamedForward.blocks`).
Parameter-free first layers of the network make :math:`a^{[0]}_i` from :math:`\mathbf x`.

The definitions are produced by the engine's own layer code (``layer.forward`` on NumPy
object arrays), and the layer Jacobians in named form by ``layer.jac_input`` /
``layer.jac_params`` -- e.g. :math:`\mathbf J_{\mathbf z^{[1]}}\mathbf a^{[1]} =
\operatorname{diag}(f'(z^{[1]}_1),\dots,f'(z^{[1]}_n))` for an undefined activation ``f``,
:math:`\operatorname{diag}(\hat{\mathbf y})-\hat{\mathbf y}\hat{\mathbf y}^\top` for softmax.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy

from ..engine.jacobian import Jacobian, hstack
from ..backend.operators import Identity, Product
from .networks import SymbolicNetwork, as_sympy_entry, require_symbolic_network, symbol_array

__all__ = ["NamedForward", "named_forward", "substitute_definitions", "OUTPUT_NAME"]

#: the symbol base of the network output :math:`\hat{\mathbf y} = \mathbf a^{[L]}`
OUTPUT_NAME = r"\hat{y}"


@dataclass
class NamedForward:
    r"""Named symbols and definitions of one forward pass.

    Attributes
    ----------
    snet : SymbolicNetwork
    z : dict[int, numpy.ndarray]
        ``z[l]``: object array of the symbols :math:`z^{[l]}_i` (shape of the layer output).
    a : dict[int, numpy.ndarray]
        ``a[0]`` is the input itself (``snet.x``); ``a[l]`` the symbols :math:`a^{[l]}_i`
        (:math:`\hat y_i` for ``l = L``), or ``z[l]`` when stage ``l < L`` has no activation.
    post_io : dict[int, list[tuple[numpy.ndarray, numpy.ndarray]]]
        For each stage, the (input, output) of every parameter-free layer, in named form;
        the last output is ``a[l]``.
    definitions : list[tuple[sympy.Symbol, sympy.Expr]]
        In evaluation order: every symbol is defined in terms of earlier ones, x and θ.
    canonical : dict[str, numpy.ndarray]
        The parameters in the engine's canonical layout.
    """

    snet: SymbolicNetwork
    z: dict = field(default_factory=dict)
    a: dict = field(default_factory=dict)
    post_io: dict = field(default_factory=dict)
    definitions: list = field(default_factory=list)
    canonical: dict = field(default_factory=dict)
    #: the residual block of stage ``l`` in named form (:class:`NamedBlock`), for the composite stages only
    blocks: dict = field(default_factory=dict)
    #: the intermediates inside blocks by tag: ``inner_z["2.1"]`` is :math:`\mathbf z^{[2.1]}`, ``inner_a["2.1"]``
    #: :math:`\mathbf a^{[2.1]}` (``"2.0"``: after the body's parameter-free first layers)
    inner_z: dict = field(default_factory=dict)
    inner_a: dict = field(default_factory=dict)
    #: the parameter-free first layers of the network as (input, output) pairs, the last output :math:`\mathbf a^{[0]}`
    pre_io: list = field(default_factory=list)

    @property
    def network(self):
        return self.snet.network

    @property
    def L(self) -> int:
        return self.network.L

    def stage_params(self, l: int) -> dict[str, np.ndarray]:
        return self.network.stage_params(self.canonical, l)

    # ------------------------------------------------------------------ typed Jacobians, named form
    def input_jacobian(self, l: int) -> Jacobian:
        r""":math:`\mathbf J_{\mathbf a^{[l-1]}}\mathbf z^{[l]}` (``W`` canonical, Damadi's :math:`(\mathbf W^{[l]})^\top`)."""
        self._check_stage(l)
        st = self.network.stages[l - 1]
        op = st.layer.jac_input(self.a[l - 1], self.z[l], self.stage_params(l))
        return Jacobian(op, self.network.z_space(l), self.network.a_space(l - 1))

    def activation_jacobian(self, l: int) -> Jacobian:
        r""":math:`\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}` in named form, e.g. :math:`\operatorname{diag}(f'(z^{[l]}_i))`."""
        self._check_stage(l)
        st = self.network.stages[l - 1]
        ops = [layer.jac_input(i, o, {}) for layer, (i, o) in zip(st.post, self.post_io[l])]
        op = Product(list(reversed(ops))) if ops else Identity(st.layer.out_size)
        return Jacobian(op, self.network.a_space(l), self.network.z_space(l))

    def param_jacobian(self, l: int) -> Jacobian:
        r""":math:`\mathbf J_{\theta_l}\mathbf z^{[l]}`, e.g. :math:`[\mathbf I\otimes(\mathbf a^{[l-1]})^\top\ \ \mathbf I]` (θ order)."""
        self._check_stage(l)
        st = self.network.stages[l - 1]
        blocks = []
        for e in self.network.entries:
            if e.stage == l:
                op = st.layer.jac_params(self.a[l - 1], self.z[l], self.stage_params(l), e.order)[e.local]
                blocks.append(Jacobian(op, self.network.z_space(l), e.space))
        return hstack(blocks, name=f"theta[{l}]", latex=",".join(b.input.latex for b in blocks))

    def _check_stage(self, l: int) -> None:
        if not isinstance(l, (int, np.integer)) or not 1 <= l <= self.L:
            raise ValueError(f"network {self.network.name!r}: layer index must be in 1..{self.L}, received {l!r}")


@dataclass
class NamedSubStage:
    r"""Sub-stage ``k`` of a block in named form: input :math:`\mathbf a^{[l.k-1]}` (or the block's input),
    :math:`\mathbf z^{[l.k]}`, the parameter-free layers' (input, output) pairs and the output (:math:`\mathbf a^{[l.k]}`,
    or :math:`\mathbf z^{[l.k]}` without activation).  ``inner`` is the nested :class:`NamedBlock` when the
    sub-layer is itself a block; ``name`` maps the sub-layer's local parameter names to the network's."""

    tag: str
    layer: object
    params: dict
    a_in: np.ndarray
    z: np.ndarray
    post_io: list
    out: np.ndarray
    name: dict
    post: list = field(default_factory=list)
    inner: "NamedBlock | None" = None


@dataclass
class NamedBlock:
    r"""A residual block in named form: its input, the body's parameter-free first layers, its sub-stages
    and the body's output :math:`\mathbf g` (so that :math:`\mathbf z^{[l]} = \mathbf a^{[l-1]} + \mathbf g`)."""

    tag: str
    layer: object
    a_in: np.ndarray
    pre_io: list
    subs: list
    out: np.ndarray
    pre: list = field(default_factory=list)


def _is_block(layer) -> bool:
    """A composite layer that states its sub-stages (:meth:`jacobian_bp.layers.residual.Residual.sub_stages`)."""
    return callable(getattr(layer, "sub_stages", None))


def _name(nf: NamedForward, base: str, values: np.ndarray, tag) -> np.ndarray:
    """New symbols ``base^{[tag]}_i`` defined as ``values`` (in evaluation order)."""
    syms = symbol_array(base, values.shape, tag)
    nf.definitions += list(zip(syms.flat, values.flat))
    return syms


def _run_post(nf: NamedForward, layers, cur: np.ndarray, base: str, tag) -> tuple[list, np.ndarray]:
    """Apply parameter-free layers to ``cur``; name the last output ``base^{[tag]}`` (none: ``cur`` itself)."""
    io = []
    for layer in layers:
        out = layer.forward(cur[None], {})[0]
        io.append([cur, out])
        cur = out
    if io:
        cur = _name(nf, base, cur, tag)
        io[-1][1] = cur
    return [tuple(p) for p in io], cur


def _named_block(nf: NamedForward, block, params: dict, tag: str, a_in: np.ndarray, name) -> NamedBlock:
    """Name the body of a residual block (recursively for nested blocks); ``name`` maps the block's local
    parameter names to the network's."""
    pre, subs = block.sub_stages()
    sub_params = block.sub_params(params)
    pre_io, cur = _run_post(nf, pre, a_in, "a", block.tag(tag, 0))
    if pre:
        nf.inner_a[block.tag(tag, 0)] = cur
    named = []
    for ss in subs:
        t = block.tag(tag, ss.index)
        p = sub_params[ss.position]
        sub_name = {local: name(outer) for local, outer in ss.names.items()}
        inner = None
        if _is_block(ss.layer):
            inner = _named_block(nf, ss.layer, p, t, cur, lambda local, m=ss.names: name(m[local]))
            zexpr = ss.layer.skip_sum(cur, inner.out)
        else:
            zexpr = ss.layer.forward(cur[None], p)[0]
        z = _name(nf, "z", np.asarray(zexpr, dtype=object), t)
        nf.inner_z[t] = z
        post_io, out = _run_post(nf, ss.post, z, "a", t)
        if ss.post:
            nf.inner_a[t] = out
        named.append(NamedSubStage(t, ss.layer, p, cur, z, post_io, out, sub_name, list(ss.post), inner))
        cur = out
    return NamedBlock(tag, block, a_in, pre_io, named, cur, list(pre))


def named_forward(snet: SymbolicNetwork) -> NamedForward:
    """Run the engine's layers on named symbols and record the definitions (see the module docstring)."""
    require_symbolic_network(snet, "named_forward")
    net = snet.network
    nf = NamedForward(snet, canonical=snet.canonical_params())
    nf.pre_io, nf.a[0] = _run_post(nf, net.pre, snet.x, "a", 0)
    for st in net.stages:
        l = st.index
        if _is_block(st.layer):
            block = _named_block(nf, st.layer, nf.stage_params(l), str(l), nf.a[l - 1],
                                 lambda local, l=l: net.param_name(l, local))
            nf.blocks[l] = block
            zexpr = st.layer.skip_sum(nf.a[l - 1], block.out)
        else:
            zexpr = st.layer.forward(nf.a[l - 1][None], nf.stage_params(l))[0]
        zsym = symbol_array("z", st.layer.out_shape, l)
        nf.definitions += list(zip(zsym.flat, zexpr.flat))
        nf.z[l] = zsym
        cur, io = zsym, []
        for layer in st.post:
            out = layer.forward(cur[None], {})[0]
            io.append([cur, out])
            cur = out
        if l == net.L or st.post:
            asym = symbol_array(OUTPUT_NAME, cur.shape) if l == net.L else symbol_array("a", cur.shape, l)
            nf.definitions += list(zip(asym.flat, cur.flat))
            if io:
                io[-1][1] = asym
            nf.a[l] = asym
        else:
            nf.a[l] = zsym
        nf.post_io[l] = [tuple(p) for p in io]
    return nf


def _derivatives_as_subs(expr: sympy.Expr, symbols: set) -> sympy.Expr:
    """Rewrite ``Derivative(f(t), t)`` with ``t`` in ``symbols`` as ``Subs(Derivative(f(s), s), s, t)``,
    so that replacing ``t`` by an expression stays a valid derivative *evaluated at* that expression."""
    def is_target(e):
        return isinstance(e, sympy.Derivative) and any(v in symbols for v, _ in e.variable_count)

    def rewrite(e):
        vars_ = [v for v, _ in e.variable_count]
        dummies = [sympy.Dummy(f"s{i}", real=True) for i in range(len(vars_))]
        body = e.xreplace(dict(zip(vars_, dummies)))
        return sympy.Subs(body, tuple(dummies), tuple(vars_))

    return expr.replace(is_target, rewrite) if expr.has(sympy.Derivative) else expr


def substitute_definitions(exprs, definitions, keep=()) -> list:
    r"""Replace named symbols by their definitions, recursively, except the symbols in ``keep``.

    Parameters
    ----------
    exprs : iterable of sympy.Expr
    definitions : list of (Symbol, Expr)
        In evaluation order (each right-hand side uses earlier symbols only).
    keep : collection of Symbol
        Symbols left in place (their definitions are not inserted).

    Returns
    -------
    list of sympy.Expr
        Derivatives of undefined functions with respect to a replaced symbol become
        ``Subs`` objects (:math:`f'(\cdot)` evaluated at the inserted expression).
    """
    keep = set(keep)
    resolved: dict = {}
    targets = {s for s, _ in definitions if s not in keep}
    for sym, rhs in definitions:
        if sym in keep:
            continue
        resolved[sym] = _derivatives_as_subs(rhs, targets).xreplace(resolved)
    return [_derivatives_as_subs(as_sympy_entry(e, "substitute_definitions"), targets).xreplace(resolved) for e in exprs]
