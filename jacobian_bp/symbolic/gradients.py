r"""Readable symbolic gradients: named intermediates :math:`\mathbf z^{[l]}`, :math:`\mathbf a^{[l]}`, :math:`\boldsymbol\delta^{[l]}`.

:func:`named_gradient` computes :math:`\nabla_\theta\ell` for one sample exactly as the
engine's Jacobian chain prescribes (Damadi eq. (1) and Alg. 1 line 8,
:math:`\nabla_\theta\ell = (\mathbf J_\theta\mathbf z^{[L]})^\top\nabla_{\mathbf z^{[L]}}\ell`),
but applies the transposed factors right to left on *named* symbols, so that every
quantity stays short:

.. math::

   \delta^{[L]}_i &:= \big(\nabla_{\mathbf z^{[L]}}\ell\big)_i
        \quad(\hat y_i - y_i \text{ for the matched pairs, Damadi Table 1}),\\
   \boldsymbol\delta^{[l-1]} &:= (\mathbf J_{\mathbf z^{[l-1]}}\mathbf a^{[l-1]})^\top
        (\mathbf J_{\mathbf a^{[l-1]}}\mathbf z^{[l]})^\top\boldsymbol\delta^{[l]}
        \quad(= f'(\mathbf z^{[l-1]})\odot \mathbf W^{[l]\top}\boldsymbol\delta^{[l]} \text{ for Dense}),\\
   \nabla_{\theta_l}\ell &= (\mathbf J_{\theta_l}\mathbf z^{[l]})^\top\boldsymbol\delta^{[l]}
        \quad(\partial\ell/\partial W_{ij} = \delta_i a^{[l-1]}_j,\ \partial\ell/\partial b_i = \delta_i).

Each factor is the engine's own layer Jacobian (``jac_input``/``jac_params``), evaluated
at the named symbols.  The result keeps the intermediates as symbols with their
definitions (:attr:`NamedGradient.definitions`); :meth:`NamedGradient.expand` inserts the
definitions on request (all, or all but the kinds you keep).

:func:`chain_gradient` is the same product formed with the *expanded* Jacobian
:math:`\mathbf J_\theta\mathbf z^{[L]}` (everything in x, y, θ): Damadi's explicit chain.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import sympy

from ..errors import ShapeError, SpecError
from .intermediates import NamedForward, named_forward, substitute_definitions
from .loss_expressions import closed_form_delta, loss_expression
from .networks import SymbolicNetwork, as_sympy_entry, require_symbolic_network, symbol_array
from .printing import latex as paper_latex

__all__ = ["NamedGradient", "named_gradient", "chain_gradient", "expanded_delta", "DELTA_NAME"]

#: symbol base of the error signals :math:`\delta^{[l]}_i` (Park §5.1)
DELTA_NAME = r"\delta"

_KINDS = ("z", "a", "delta")


class NamedGradient:
    r"""A gradient :math:`\nabla_\theta\ell` in named-intermediate form.

    Attributes
    ----------
    forward : NamedForward
        Symbols and definitions of :math:`\mathbf z^{[l]}`, :math:`\mathbf a^{[l]}`, :math:`\hat{\mathbf y}`.
    delta : dict[int, numpy.ndarray]
        The symbols :math:`\delta^{[l]}_i`, shaped like :math:`\mathbf z^{[l]}`.
    inner_delta : dict[str, numpy.ndarray]
        Inside residual blocks, by tag: :math:`\delta^{[l.k]}_i = \partial\ell/\partial z^{[l.k]}_i`.
    definitions : list of (Symbol, Expr)
        All definitions in evaluation order: forward quantities, then
        :math:`\boldsymbol\delta^{[L]}, \dots, \boldsymbol\delta^{[1]}`.
    canonical : dict[str, numpy.ndarray]
        Gradient per parameter, canonical layout.
    params : dict[str, numpy.ndarray]
        Gradient per parameter in the convention's layout (Damadi's ``W`` is ``n_in × n_out``).
    vector : numpy.ndarray
        The gradient in θ order (Damadi Alg. 1 line 7's block order), object dtype.
    delta_form : {"closed", "chain"}
        How :math:`\boldsymbol\delta^{[L]}` was formed (Table 1 closed form or
        :math:`(\mathbf J_{\mathbf z^{[L]}}\hat{\mathbf y})^\top\nabla_{\hat{\mathbf y}}\ell`).
    """

    def __init__(self, forward: NamedForward, delta: dict, delta_definitions: list, canonical: dict, delta_form: str,
                 inner_delta: dict | None = None):
        self.forward = forward
        self.snet = forward.snet
        self.network = forward.network
        self.delta = delta
        self.inner_delta = dict(inner_delta or {})
        self.definitions = list(forward.definitions) + list(delta_definitions)
        self.canonical = canonical
        self.params = self.network.user_params(canonical)
        self.vector = self.network.pack_canonical(canonical)
        self.delta_form = delta_form

    # ------------------------------------------------------------------ access
    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.params:
            raise KeyError(f"gradient has no parameter {name!r}; parameters: {', '.join(self.params)}")
        return self.params[name]

    def as_matrix(self) -> sympy.Matrix:
        """The gradient as a SymPy column (θ order)."""
        return sympy.Matrix(list(self.vector))

    def symbols_of(self, intermediate: str) -> set:
        """The named symbols of one kind: ``"z"``, ``"a"`` (incl. ŷ) or ``"delta"``."""
        if intermediate == "z":
            arrs = list(self.forward.z.values()) + list(self.forward.inner_z.values())
        elif intermediate == "a":
            arrs = [v for l, v in self.forward.a.items() if (l >= 1 or self.forward.pre_io) and v is not self.forward.z.get(l)]
            arrs += list(self.forward.inner_a.values())
        elif intermediate == "delta":
            arrs = list(self.delta.values()) + list(self.inner_delta.values())
        else:
            raise ValueError(f"unknown kind of intermediate {intermediate!r}; expected one of {_KINDS}")
        return {s for arr in arrs for s in np.asarray(arr).flat}

    def labels(self) -> list[str]:
        r"""LaTeX of :math:`\partial\ell/\partial\theta_k` for every θ entry (θ order)."""
        theta = self.snet.theta
        out = []
        for k, t in enumerate(theta):
            if isinstance(t, sympy.Symbol):
                out.append(rf"\frac{{\partial \ell}}{{\partial {sympy.latex(t)}}}")
            else:
                out.append(rf"\left(\nabla_{{\boldsymbol\theta}}\ell\right)_{{{k + 1}}}")
        return out

    # ------------------------------------------------------------------ expansion
    def _keep_symbols(self, keep: Iterable) -> set:
        out = set()
        for k in keep:
            if isinstance(k, str):
                out |= self.symbols_of(k)
            elif isinstance(k, sympy.Symbol):
                out.add(k)
            else:
                raise TypeError(f"expand: keep must hold kinds {_KINDS} or symbols, received {type(k).__name__}")
        return out

    def expand(self, keep: Iterable = ()) -> np.ndarray:
        r"""The gradient (θ order) with the named intermediates replaced by their definitions.

        Parameters
        ----------
        keep : iterable of {"z", "a", "delta"} or Symbol
            Intermediates to keep as symbols (e.g. ``keep=("z",)`` writes everything in terms
            of the pre-activations).  Default: expand everything down to x, y and θ.
        """
        return np.array(substitute_definitions(self.vector, self.definitions, self._keep_symbols(keep)), dtype=object)

    def expand_params(self, keep: Iterable = ()) -> dict[str, np.ndarray]:
        """:meth:`expand`, per parameter in the convention's layout."""
        return self.network.unpack(self.expand(keep))

    def definition(self, symbol: sympy.Symbol) -> sympy.Expr:
        for s, e in self.definitions:
            if s == symbol:
                return e
        raise KeyError(f"{symbol} is not a named intermediate of this gradient")

    # ------------------------------------------------------------------ size
    def count_ops(self) -> dict[str, int]:
        """Operation counts (SymPy ``count_ops``): the largest gradient entry, the largest
        definition, and the total over entries and definitions."""
        entries = [sympy.count_ops(e) for e in self.vector]
        defs = [sympy.count_ops(e) for _, e in self.definitions]
        return {"max_entry": max(entries, default=0), "max_definition": max(defs, default=0),
                "total": int(sum(entries) + sum(defs)), "entries": len(entries), "definitions": len(defs)}

    # ------------------------------------------------------------------ display
    def latex(self, max_rows: int | None = None) -> str:
        r"""An ``aligned`` block: the definitions, then :math:`\partial\ell/\partial\theta_k` for every entry."""
        rows = [rf"{paper_latex(s)} &= {paper_latex(e)}" for s, e in self.definitions]
        rows += [rf"{lab} &= {paper_latex(e)}" for lab, e in zip(self.labels(), self.vector)]
        if max_rows is not None and len(rows) > max_rows:
            rows = rows[:max_rows] + [r"&\ \vdots"]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        return "$" + self.latex(max_rows=60) + "$"

    def __str__(self) -> str:
        """Readable terminal text (Unicode names such as ``δ₁⁽²⁾``, never raw LaTeX): the definitions, then each entry."""
        from .printing import readable

        names = [e.name for e in self.network.entries for _ in range(e.size)]
        rows = [f"{readable(s)} = {readable(e)}" for s, e in self.definitions]
        rows += [f"d loss / d {readable(t) if isinstance(t, sympy.Symbol) else n} = {readable(e)}"
                 for n, t, e in zip(names, self.snet.theta, self.vector)]
        return repr(self) + "\n" + "\n".join("  " + r for r in rows)

    def __repr__(self) -> str:
        c = self.count_ops()
        return (f"NamedGradient({self.network.name}: {c['entries']} entries, {c['definitions']} definitions, "
                f"max {c['max_entry']} ops per entry, {c['max_definition']} per definition)")


def named_gradient(snet: SymbolicNetwork, delta: str = "auto", assume_distribution: bool = True) -> NamedGradient:
    r"""The gradient of the per-sample loss in named-intermediate form.

    Parameters
    ----------
    snet : SymbolicNetwork
    delta : {"auto", "closed", "chain"}
        ``closed``: :math:`\boldsymbol\delta^{[L]}` from Damadi Table 1 (matched pairs only);
        ``chain``: :math:`(\mathbf J_{\mathbf z^{[L]}}\hat{\mathbf y})^\top\nabla_{\hat{\mathbf y}}\ell`
        with the engine's activation Jacobian and SymPy's derivative of the loss;
        ``auto``: ``closed`` when the last activation and the loss are a matched pair.
    assume_distribution : bool
        Softmax + CE: use :math:`\hat{\mathbf y}-\mathbf y` (targets sum to 1).

    Returns
    -------
    NamedGradient
    """
    require_symbolic_network(snet, "named_gradient")
    if delta not in ("auto", "closed", "chain"):
        raise ValueError(f"named_gradient: delta must be 'auto', 'closed' or 'chain', received {delta!r}")
    net = snet.network
    nf = named_forward(snet)
    L = net.L
    form = ("closed" if net.matched else "chain") if delta == "auto" else delta
    if form == "closed" and not net.matched:
        raise SpecError(
            f"named_gradient: network {net.name!r} has no matched last activation for loss {net.loss.kind!r} "
            "(Damadi Table 1: sigmoid+BCE, softmax+CE, identity+MSE); use delta='chain'")
    dL = expanded_or_named_delta(nf, form, assume_distribution)
    deltas: dict[int, np.ndarray] = {}
    delta_defs: list = []

    def name_delta(l: int, values: np.ndarray) -> np.ndarray:
        syms = symbol_array(DELTA_NAME, net.stages[l - 1].layer.out_shape, l)
        delta_defs.extend(zip(syms.flat, (as_sympy_entry(v, f"delta[{l}]") for v in np.ravel(values))))
        deltas[l] = syms
        return syms

    def name_inner_delta(tag: str, values) -> np.ndarray:
        syms = symbol_array(DELTA_NAME, np.shape(values), tag)
        delta_defs.extend(zip(syms.flat, (as_sympy_entry(v, f"delta[{tag}]") for v in np.ravel(values))))
        inner[tag] = syms
        return syms

    inner: dict[str, np.ndarray] = {}
    block_grads: dict[str, np.ndarray] = {}  # network name -> canonical gradient (C order), parameters inside blocks
    name_delta(L, dL)
    for l in range(L, 0, -1):
        block = nf.blocks.get(l)
        if block is not None:  # Algorithm 1 inside the block, on named deltas; then the skip adds delta[l]
            g = deltas[l].ravel() + _block_backward(block, deltas[l].ravel(), name_inner_delta, block_grads)
        elif l > 1:
            g = nf.input_jacobian(l).op.rmatvec(deltas[l].ravel())
        if l == 1:
            break
        for layer, (i, o) in reversed(list(zip(net.stages[l - 2].post, nf.post_io[l - 1]))):
            g = layer.jac_input(i, o, {}).rmatvec(np.ravel(g))
        name_delta(l - 1, g)
    canonical: dict[str, np.ndarray] = {}
    for st in net.stages:
        l = st.index
        for e in net.entries:
            if e.stage != l:
                continue
            if e.name in block_grads:
                v = np.array([as_sympy_entry(t, f"gradient of {e.name}") for t in np.ravel(block_grads[e.name])], dtype=object)
                canonical[e.name] = v.reshape(e.canonical_shape)
                continue
            op = st.layer.jac_params(nf.a[l - 1], nf.z[l], nf.stage_params(l), e.order)[e.local]
            v = op.rmatvec(deltas[l].ravel())
            v = np.array([as_sympy_entry(t, f"gradient of {e.name}") for t in np.ravel(v)], dtype=object)
            canonical[e.name] = v.reshape(e.canonical_shape, order=e.order)
    return NamedGradient(nf, deltas, delta_defs, canonical, form, inner)


def _block_backward(block, d_out: np.ndarray, name_delta, grads: dict) -> np.ndarray:
    r"""Backward through a residual block's body in named form (Damadi Alg. 1 inside the block).

    ``d_out`` is :math:`\nabla_{\mathbf z^{[l]}}\ell` (flat); since :math:`\mathbf z^{[l]} = \mathbf a^{[l-1]} + \mathbf g`, it is
    also the gradient with respect to the body's output :math:`\mathbf g`.  Each sub-stage gets its named
    :math:`\boldsymbol\delta^{[l.k]} = \nabla_{\mathbf z^{[l.k]}}\ell`, its parameters
    :math:`(\mathbf J_{\theta}\mathbf z^{[l.k]})^\top\boldsymbol\delta^{[l.k]}` (into ``grads``, by network name), and the
    transposed sub-layer Jacobian carries the gradient down.  Returns the body's part of the gradient
    with respect to the block input (the caller adds the skip term ``d_out``).
    """
    g = np.ravel(d_out)
    for sub in reversed(block.subs):
        for layer, (i, o) in reversed(list(zip(sub.post, sub.post_io))):
            g = layer.jac_input(i, o, {}).rmatvec(np.ravel(g))
        d = name_delta(sub.tag, np.reshape(np.asarray(g, dtype=object), sub.z.shape)).ravel()
        if sub.inner is not None:
            g = d + _block_backward(sub.inner, d, name_delta, grads)
        else:
            for local, op in sub.layer.jac_params(sub.a_in, sub.z, sub.params, "C").items():
                grads[sub.name[local]] = op.rmatvec(d)
            g = sub.layer.jac_input(sub.a_in, sub.z, sub.params).rmatvec(d)
    for layer, (i, o) in reversed(list(zip(block.pre, block.pre_io))):
        g = layer.jac_input(i, o, {}).rmatvec(np.ravel(g))
    return np.ravel(g)


def expanded_or_named_delta(nf: NamedForward, form: str, assume_distribution: bool = True) -> np.ndarray:
    r""":math:`\nabla_{\mathbf z^{[L]}}\ell` in terms of the named :math:`\hat{\mathbf y}` (and ``z^{[L]}`` if needed)."""
    net = nf.network
    L = net.L
    yhat = nf.a[L].ravel()
    y = nf.snet.y.ravel()
    if form == "closed":
        return closed_form_delta(net.loss, y, yhat, assume_distribution)
    ell = loss_expression(net.loss, y, yhat)
    g = np.array([sympy.diff(ell, s) for s in yhat], dtype=object)
    for layer, (i, o) in reversed(list(zip(net.stages[L - 1].post, nf.post_io[L]))):
        g = layer.jac_input(i, o, {}).rmatvec(np.ravel(g))
    return np.ravel(g)


def expanded_delta(snet: SymbolicNetwork, form: str = "closed", assume_distribution: bool = True) -> np.ndarray:
    r""":math:`\nabla_{\mathbf z^{[L]}}\ell` fully expanded in x, y, θ (``form`` as in :func:`named_gradient`)."""
    require_symbolic_network(snet, "expanded_delta")
    if form not in ("closed", "chain"):
        raise ValueError(f"expanded_delta: form must be 'closed' or 'chain', received {form!r}")
    nf = named_forward(snet)
    if form == "closed" and not snet.network.matched:
        raise SpecError(f"expanded_delta: network {snet.network.name!r} has no matched last activation; use form='chain'")
    d = expanded_or_named_delta(nf, form, assume_distribution)
    return np.array(substitute_definitions(d, nf.definitions), dtype=object)


def chain_gradient(snet: SymbolicNetwork, delta_L=None) -> np.ndarray:
    r"""Damadi's explicit chain :math:`(\mathbf J_\theta\mathbf z^{[L]})^\top\boldsymbol\delta^{[L]}`, θ order.

    :math:`\mathbf J_\theta\mathbf z^{[L]}` is the engine's (:meth:`SymbolicNetwork.jacobian_theta`),
    expanded in x and θ and materialized exactly (``to_sympy``).

    Parameters
    ----------
    delta_L : array-like of length ``n_L``, optional
        The vector :math:`\nabla_{\mathbf z^{[L]}}\ell`; default: the expanded closed form (matched
        pairs) or chain form.  Any vector is allowed -- e.g. free symbols, to prove an identity
        that is linear in it.
    """
    n = require_symbolic_network(snet, "chain_gradient").network.n_out
    if delta_L is None:
        delta_L = expanded_delta(snet, "closed" if snet.network.matched else "chain")
    d = np.asarray(delta_L, dtype=object).ravel()
    if d.shape != (n,):
        raise ShapeError(f"chain_gradient: delta_L must have {n} entries (size of z[{snet.network.L}]), received {d.shape[0]}")
    J = snet.jacobian_theta().to_sympy()
    g = J.T * sympy.Matrix([as_sympy_entry(v, "chain_gradient: delta_L") for v in d])
    return np.array(list(g), dtype=object)
