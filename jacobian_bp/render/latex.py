r"""LaTeX of Jacobians, products of Jacobians and gradient equations, at two levels.

Block level
    Structured symbols with their shapes: :math:`\mathbf x^\top` blocks,
    :math:`\mathbf I_n`, :math:`(\mathbf W^{[l]})^\top`, :math:`\operatorname{diag} f^{[l]\prime}(\mathbf z^{[l]})`,
    Kronecker products, block rows, and on request the shape of every factor under it
    (``\underbrace{…}_{3\times 15}``).  The model is a small matrix-expression tree
    (:class:`MatExpr`: :class:`Sym`, :class:`Eye`, :class:`Kron`, :class:`Prod`,
    :class:`HCat`, :class:`VCat`, :class:`Named`, …) whose nodes know their shapes
    -- a product of mismatched factors is refused -- and, when values are bound, can be
    *evaluated*, so every rendered formula can be checked numerically against the engine.
Entries level
    Explicit matrices, numeric (to a chosen number of significant digits) or symbolic
    (SymPy), elided with ``\cdots``, ``\vdots``, ``\ddots`` beyond ``max_rows × max_cols``
    (default 10 × 10).  Only the displayed entries are computed (columns of the
    structured operator), so a 10 × 266 610 Jacobian of LeNet-300-100 costs 10 columns.

Two entry points:

* :func:`jacobian_equation_latex` (used by ``Jacobian._repr_latex_``) renders any
  :class:`~jacobian_bp.engine.jacobian.Jacobian` -- a block, a stacked ``J_θ z``, a product
  built with ``@`` -- inferring its block form from its operator structure and spaces;
* :class:`NetworkLatex` builds, for a :class:`~jacobian_bp.engine.network.Network`, every
  expression of Damadi's Algorithm 1 (forward pass, layer Jacobians, the chain for each
  parameter block, :math:`\mathbf J_\theta\mathbf z^{[L]}`, the closed-form deltas and the
  gradient) in the notation of the network's convention preset (:mod:`jacobian_bp.render.notation`),
  from the network's structure: ``stages[l-1].layer`` / ``.post``, ``entries`` (θ layout,
  vec order) and ``convention.weight_layout`` (Damadi's :math:`\mathbf z = \mathbf W^\top\mathbf a + \mathbf b`).

All functions return math-mode LaTeX without delimiters, valid for pdflatex (with
``amsmath``) and for MathJax in notebooks.

Layout: :mod:`jacobian_bp.render.entries` (entries level), :mod:`jacobian_bp.render.matrix_expr`
(block level: the matrix-expression tree and :func:`render`), :mod:`jacobian_bp.render.jacobian_latex`
(bare Jacobians, products, gradients, reports) and this module (:class:`NetworkLatex`, the notebook
display printers); every name of the three stays importable from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod as _prod
from typing import Sequence

import numpy as np
import sympy

from ..errors import JacobianBPError, ShapeError
from ..backend.escape import check_math, escape_mathjax, escape_text
from .notation import Notation, get_notation, sub
from ..backend import operators as ops
from ..engine.chain import LeftChain

from .entries import (  # noqa: F401
    DEFAULT_MAX, format_number, _elide, _check_max, operator_entries, matrix_latex, fraction_text, reduce_integer_fractions,
)
from .matrix_expr import (  # noqa: F401
    shape_latex, _Ctx, MatExpr, _shape2, Sym, _as_2d, Eye, Zeros, Ones, Transpose, Kron, Prod, Sum, HCat, VCat, Named, _effective_prec, _tex, _paren, _brace, render, _children, _find_notation,
)
from .jacobian_latex import (  # noqa: F401
    _dense_value, _parse, _row_values, _infer, jacobian_block_expr, _symbol, _opaque, jacobian_latex, jacobian_equation_latex, product_latex, gradient_latex, verification_table_latex,
)

__all__ = [
    "format_number", "matrix_latex", "operator_entries", "MatExpr", "Sym", "Eye", "Zeros", "Ones",
    "Transpose", "Kron", "Prod", "Sum", "HCat", "VCat", "Named", "render", "shape_latex", "jacobian_block_expr",
    "jacobian_latex", "jacobian_equation_latex", "product_latex", "gradient_latex",
    "verification_table_latex", "NetworkLatex",
]


# =====================================================================================
# networks: every expression of Algorithm 1 from the network's structure
# =====================================================================================
from .body_latex import _BodyLatex, _LatexAlgebra, _column, _is_block  # noqa: E402,F401  (moved; names kept here)


class NetworkLatex:
    r"""The block-level expressions of a network's Jacobians and gradient, in its notation.

    Parameters
    ----------
    network : Network
    params : dict, optional
        Parameters (user layout); with ``x`` they bind values to every symbol, so that
        each expression can be evaluated (and checked) and shown at the entries level.
    x : array, optional
        One input sample (numeric or SymPy object array).
    y : array, optional
        Its target, needed for the values of the deltas and the gradient.
    notation : str or Notation, optional
        Defaults to the network's convention preset.

    Notes
    -----
    With :math:`\mathbf J_{\mathbf a^{[k-1]}}\mathbf z^{[k]}` (``input_jacobian``), :math:`\mathbf J_{\mathbf z^{[k]}}\mathbf a^{[k]}`
    (``activation_jacobian``) and the local block :math:`\mathbf J_{\theta_l}\mathbf z^{[l]}`
    (``local_jacobian``), the block of stage ``l`` is (Damadi Alg. 1 line 3, corrected)

    .. math:: \mathbf J_{\theta_l}\mathbf z^{[L]} = \mathbf J_{\mathbf a^{[L-1]}}\mathbf z^{[L]}\,
              \mathbf J_{\mathbf z^{[L-1]}}\mathbf a^{[L-1]}\cdots\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}\,
              \mathbf J_{\theta_l}\mathbf z^{[l]}.
    """

    def __init__(self, network, params=None, x=None, y=None, notation=None):
        from ..engine.network import Network

        if not isinstance(network, Network):
            raise TypeError(f"NetworkLatex: expected a Network, received {type(network).__name__}")
        self.net = network
        self.nt = get_notation(notation if notation is not None else network)
        self.params = params
        self.cache = None
        self.canon = None
        self.x = None
        self.y = y
        if (params is None) != (x is None):
            raise ValueError("NetworkLatex: pass both params and x (to bind values) or neither")
        if x is not None:
            Xb, _, single = network.as_batch(x)
            if not single:
                raise ShapeError(f"NetworkLatex: expected one sample of shape {network.input_shape}, received {np.shape(x)}")
            self.canon = network.canonical_params(params)
            self.cache = network.forward_cache(Xb, self.canon)
            self.x = x
            if y is not None:
                network.as_batch(x, y)  # validates the target

    # ------------------------------------------------------------------ symbols
    @property
    def L(self) -> int:
        return self.net.L

    def size_z(self, l: int) -> int:
        return self.net.stages[l - 1].layer.out_size

    def size_a(self, l: int) -> int:
        return _prod(self.net.input_shape) if l == 0 and not self.net.pre else _prod(self.net.a_space(l).shape)

    def a_tex(self, l) -> str:
        r""":math:`\mathbf a^{[l]}`; :math:`\mathbf a^{[0]}` is :math:`\mathbf x`, or the output of the parameter-free first layers."""
        if str(l) == "0" and self.net.pre:
            return self.nt.vec("a", 0)
        return self.nt.a(l)

    def z(self, l: int) -> Sym:
        return Sym(self.nt.z(l), (self.size_z(l), 1), None if self.cache is None else _column(self.cache.z[l][0]))

    def a(self, l: int) -> Sym:
        return Sym(self.a_tex(l), (self.size_a(l), 1), None if self.cache is None else _column(self.cache.a[l][0]))

    def body(self, l: int) -> "_BodyLatex":
        """The body of the residual block at stage ``l`` (:class:`_BodyLatex`), with values when bound."""
        if not hasattr(self, "_bodies"):
            self._bodies = {}
        if l not in self._bodies:
            A = None if self.cache is None else self.cache.a[l - 1][:1]
            self._bodies[l] = _BodyLatex(self, self.net.stages[l - 1].layer, str(l), self.a(l - 1), A,
                                         self._stage_params(l), lambda local, l=l: self.net.param_name(l, local))
        return self._bodies[l]

    def param_sym(self, entry) -> Sym:
        """The parameter tensor of an entry of θ, in the user's layout (matrix or vector)."""
        shape = entry.user_shape if len(entry.user_shape) <= 2 else (entry.size, 1)
        val = None
        if self.params is not None:
            val = self.params[entry.name]
            if not (isinstance(val, np.ndarray) and val.dtype == object):
                val = np.asarray(val, dtype=float)
            val = val.reshape(_shape2(shape))
        return Sym(self.param_tex(entry), shape, val)

    def layer_of(self, entry):
        """The layer that owns a θ entry (a residual block for its block parameters)."""
        return self.net.stages[entry.stage - 1].layer

    def param_tex(self, entry, wrt: bool = False) -> str:
        r"""The LaTeX of a θ entry in the notation, as its layer states it (:meth:`Notation.param`); with ``wrt``, as
        the variable of a derivative (:meth:`wrt`)."""
        layer = self.layer_of(entry)
        return self.wrt(entry.local, entry.stage, layer) if wrt else self.nt.param(entry.local, entry.stage, layer)

    def wrt(self, local: str, tag, layer) -> str:
        r"""A parameter as the variable of a derivative: :math:`\operatorname{vec}\mathbf W` for a matrix under the
        :math:`\partial` notations (:math:`\partial\mathbf z/\partial\mathbf W` of a matrix would be a 3-tensor);
        Damadi's :math:`\mathbf J_{\mathbf W^{[l]},\mathbf b^{[l]}}` states the vec once (§3.1) and is printed as in
        the paper."""
        if self.nt.jacobian == "J":
            return self.nt.param(local, tag, layer)
        return self.nt.param_vec(local, tag, layer)

    def _entries_of(self, l: int):
        return [e for e in self.net.entries if e.stage == l]

    def _op_value(self, op):
        return None if self.cache is None else _dense_value(op)

    def _stage_params(self, l):
        return self.net.stage_params(self.canon, l) if self.canon is not None else None

    # ------------------------------------------------------------------ layer Jacobians
    def input_jacobian(self, k: int) -> Named:
        r""":math:`\mathbf J_{\mathbf a^{[k-1]}}\mathbf z^{[k]}`: :math:`(\mathbf W^{[k]})^\top` (Damadi's
        :math:`\mathbf z = \mathbf W^\top\mathbf a + \mathbf b`), :math:`\mathbf W^{[k]}` (``out_in``),
        :math:`\operatorname{Toep}(\mathbf K^{[k]})` for a convolution."""
        self._check_stage(k)
        st = self.net.stages[k - 1]
        layer = st.layer
        shape = (layer.out_size, self.size_a(k - 1))
        label = self.nt.jac(self.nt.z(k), self.a_tex(k - 1))
        op = None
        if self.cache is not None:
            op = layer.jac_input(self.cache.a[k - 1][0], self.cache.z[k][0], self._stage_params(k))
        if _is_block(layer):  # a composite block: its skip_sum of (I, J_body) -- I + J_body for a residual block
            body = layer.skip_sum(Eye(layer.out_size), self.body(k).jacobian())
        elif layer.affine_weight_name is not None:
            W = self.param_sym(next(e for e in self._entries_of(k) if e.local == layer.affine_weight_name))
            body = W.T if self.net.convention.weight_layout == "in_out" else W
        else:
            closed = layer.latex_input_jacobian({name: self.nt.param(name, k, layer) for name in layer.param_names})
            if closed is not None:
                body = Sym(closed, shape, self._op_value(op) if op is not None else None)
            else:
                body = Sym(label, shape, self._op_value(op) if op is not None else None, atomic=False)
        return Named(Sym(label, shape, atomic=False), body, op, notation=self.nt)

    def _post_factor(self, l: int, j: int) -> MatExpr:
        st = self.net.stages[l - 1]
        layer = st.post[j]
        n_post = len(st.post)
        inp = self.nt.z(l) if j == 0 else self.nt.h(l, j)
        out = self.nt.a(l) if j == n_post - 1 else self.nt.h(l, j + 1)
        shape = (layer.out_size, layer.in_size)
        value = None
        if self.cache is not None:
            ins = self.cache.post[l]
            outs = ins[1:] + [self.cache.a[l]]
            value = _dense_value(layer.jac_input(ins[j][0], outs[j][0], {}))
        return self.free_factor(layer, l, inp, out, value)

    def free_factor(self, layer, l, inp: str, out: str, value=None) -> MatExpr:
        r""":math:`\mathbf J_{\text{inp}}\text{out}` of a parameter-free layer of stage (or block tag) ``l``: :math:`\mathbf I`,
        :math:`\operatorname{diag} f^{[l]\prime}(\text{inp})`, the layer's closed form, or a Jacobian symbol."""
        shape = (layer.out_size, layer.in_size)
        if layer.jacobian_is_identity:
            return Eye(layer.out_size)
        if getattr(layer, "elementwise", False):
            return Sym(self.nt.diag_act(l, inp), shape, value, symmetric=True)
        closed = layer.latex_jacobian(out, self.nt.T)
        if closed is not None:
            return Sym(closed, shape, value, symmetric=layer.jacobian_symmetric, compound=True)
        return Sym(self.nt.jac(out, inp), shape, value, atomic=False)

    def activation_jacobian(self, l: int) -> Named:
        r""":math:`\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}`: :math:`\operatorname{diag} f^{[l]\prime}(\mathbf z^{[l]})` for an
        elementwise activation (Damadi §3.4), :math:`\operatorname{diag}(\mathbf a)-\mathbf a\mathbf a^\top`
        for softmax, the product of the factors of several parameter-free layers, :math:`\mathbf I` for none."""
        self._check_stage(l)
        st = self.net.stages[l - 1]
        n = st.layer.out_size
        label = self.nt.act_jac_name(l) or self.nt.jac(self.nt.a(l), self.nt.z(l))
        if not st.post:
            body: MatExpr = Eye(n)
        else:
            facs = [self._post_factor(l, j) for j in reversed(range(len(st.post)))]
            body = facs[0] if len(facs) == 1 else Prod(facs)
        return Named(Sym(label, body.shape, atomic=bool(self.nt.act_jac_name(l))), body, notation=self.nt)

    def param_jacobian(self, entry) -> MatExpr:
        r""":math:`\mathbf J_{\theta_p}\mathbf z^{[l]}` of one parameter tensor: :math:`\mathbf I_n\otimes(\mathbf a^{[l-1]})^\top`
        (rows of the canonical ``W`` stacked: Damadi's columns of :math:`\mathbf W` stacked),
        :math:`(\mathbf a^{[l-1]})^\top\otimes\mathbf I_n` (columns of the canonical ``W``), :math:`\mathbf I_n` for a
        bias; for a convolution :math:`\mathbf I_{C}\otimes\mathbf P(\mathbf a^{[l-1]})` (im2col) and
        :math:`\mathbf I_C\otimes\mathbf 1_{HW}` (tied bias)."""
        l = entry.stage
        layer = self.net.stages[l - 1].layer
        n = layer.out_size
        if _is_block(layer):  # inside a residual block: the chain from the block's output down to the parameter
            return self.body(l).param_jacobian(entry.local, entry.order, entry.size)
        op = None
        if self.cache is not None:
            op = layer.jac_params(self.cache.a[l - 1][0], self.cache.z[l][0], self._stage_params(l), entry.order)[entry.local]
        a = self.a(l - 1)
        block = layer.block_param_jacobian(_LatexAlgebra(a, op), entry.local, entry.order)
        if block is not None:
            return block
        sym = self.nt.jac(self.nt.z(l), self.param_tex(entry, wrt=True))
        return Sym(sym, (n, entry.size), None if op is None else _dense_value(op), atomic=False)

    def _group_label(self, entries, of_l: int) -> Sym:
        n = self.size_z(of_l)
        stage = entries[0].stage
        if len(entries) > 1 and _is_block(self.net.stages[stage - 1].layer) and len(entries) == len(self._entries_of(stage)):
            # every parameter of a composite block (16 for a Transformer block): θ^{[l]}, not the list of names
            wrt = self.nt.index_on(self.nt.theta, stage)
            return Sym(self.nt.jac(self.nt.z(of_l), wrt), (n, sum(e.size for e in entries)), atomic=False)
        wrt = ",".join(self.param_tex(e, wrt=True) for e in entries)
        if self.nt.jacobian != "J" and len(entries) > 1:
            wrt = "(" + wrt + ")"
        return Sym(self.nt.jac(self.nt.z(of_l), wrt), (n, sum(e.size for e in entries)), atomic=False)

    def local_jacobian(self, l: int, entries=None) -> Named:
        r""":math:`\mathbf J_{\theta_l}\mathbf z^{[l]}`, e.g. Damadi's :math:`[\mathbf I_3\otimes\mathbf x^\top\;\mathbf I_3]` (§3.1)."""
        self._check_stage(l)
        entries = self._entries_of(l) if entries is None else list(entries)
        blocks = [self.param_jacobian(e) for e in entries]
        body = blocks[0] if len(blocks) == 1 else HCat(blocks)
        return Named(self._group_label(entries, l), body, notation=self.nt)

    def chain(self, l: int) -> Named:
        r""":math:`\mathbf J_{\mathbf z^{[l]}}\mathbf z^{[L]}` as the product of the typed factors, left to right."""
        self._check_stage(l)
        L = self.L
        n_L = self.size_z(L)
        label = Sym(self.nt.jac(self.nt.z(L), self.nt.z(l)), (n_L, self.size_z(l)), atomic=False)
        if l == L:
            return Named(label, Eye(n_L), notation=self.nt)
        facs: list[MatExpr] = []
        for k in range(L, l, -1):
            facs.append(self.input_jacobian(k))
            facs.append(self.activation_jacobian(k - 1))
        return Named(label, Prod(facs), notation=self.nt)

    def stage_groups(self) -> list[list]:
        """θ's entries grouped into consecutive runs of one stage (Damadi: ``[W^{[L]}, b^{[L]}], …``)."""
        groups: list[list] = []
        for e in self.net.entries:
            if groups and groups[-1][-1].stage == e.stage:
                groups[-1].append(e)
            else:
                groups.append([e])
        return groups

    def block(self, entries) -> Named:
        r""":math:`\mathbf J_{\mathbf W^{[l]},\mathbf b^{[l]}}\mathbf z^{[L]}` for a run of entries of one stage."""
        entries = list(entries)
        l = entries[0].stage
        if any(e.stage != l for e in entries):
            raise ValueError("NetworkLatex.block: entries must belong to one stage")
        local = self.local_jacobian(l, entries)
        label = self._group_label(entries, self.L)
        if l == self.L:
            return Named(label, local.body, notation=self.nt)
        return Named(label, Prod([self.chain(l), local]), notation=self.nt)

    def jacobian_theta(self) -> Named:
        r""":math:`\mathbf J_\theta\mathbf z^{[L]}`, the blocks in θ order (Damadi Alg. 1 line 7)."""
        groups = self.stage_groups()
        blocks = [self.block(g) for g in groups]
        n = self.size_z(self.L)
        label = Sym(self.nt.jac(self.nt.z(self.L), self.nt.theta), (n, self.net.n_params), atomic=False)
        body = blocks[0] if len(blocks) == 1 else HCat(blocks, groups=[g[0].stage for g in groups])
        return Named(label, body, notation=self.nt)

    # ------------------------------------------------------------------ deltas and gradient
    def output_delta_formula(self) -> tuple[str, str]:
        r"""(closed form, source) of :math:`\nabla_{\mathbf z^{[L]}}\ell` for the network's loss.

        Matched pairs (Damadi Table 1): sigmoid+BCE and softmax+CE give :math:`\hat{\mathbf y}-\mathbf y`;
        identity+MSE :math:`2c(\hat{\mathbf y}-\mathbf y)` with the per-sample scale :math:`c`."""
        nt = self.nt
        diff = rf"{nt.yhat} - {nt.y}"
        loss = self.net.loss
        if not self.net.matched:
            g = rf"{nt.grad(nt.yhat)}"
            return (rf"\left({nt.jac(nt.yhat, nt.z(self.L))}\right)^{nt.transpose} {g}",
                    "chain rule through the last activation (no closed form for this pair)")
        formula, source = loss.latex_output_delta(diff, self.size_z(self.L), format_number)
        scale = self.squared_error_scale()
        if scale is not None:  # the words state the constant the formula uses (PyTorch's mean over the outputs too)
            c, c_text, mean_text = scale
            source = f"identity output and squared error scaled by {c_text}{mean_text}, Damadi Table 1"
        formula = reduce_integer_fractions(formula)
        return (diff if formula == f"({diff})" else formula), source

    def squared_error_scale(self):
        r"""``(c, c as text, how)`` of a loss the convention scales, :math:`\ell = c\,\|\hat{\mathbf y}-\mathbf y\|^2` per sample
        (the loss's ``output_scale``: the convention's ``mse_scale``, divided by :math:`n_L` when it averages over the
        outputs, as PyTorch's ``MSELoss``), else None.  ``how`` says so in words (``" (scale 1 averaged over the 3
        outputs)"``, or ``""``)."""
        loss = self.net.loss
        if not getattr(loss, "scaled_by_convention", False):
            return None
        n = self.size_z(self.L)
        c1, cn = float(loss.output_scale(1)), float(loss.output_scale(n))
        mean = n > 1 and abs(cn * n - c1) <= 1e-12 * abs(c1)
        how = f": scale {fraction_text(c1, latex=False)} averaged over the {n} outputs" if mean else ""
        return cn, fraction_text(cn, latex=False), how

    def output_delta(self) -> Sym:
        r""":math:`\boldsymbol\delta^{[L]} = \nabla_{\mathbf z^{[L]}}\ell`, valued from the engine's loss when ``y`` is given."""
        return self.delta_symbol(self.L)

    def delta_symbol(self, l: int) -> Sym:
        r"""The symbol :math:`\boldsymbol\delta^{[l]}` (Ganev: :math:`\nabla_{\mathbf z_\ell}\mathcal L`), with its value when bound."""
        self._check_stage(l)
        val = None
        if self.cache is not None and self.y is not None:
            val = _column(self.net.delta(self.x, self.y, self.params)) if l == self.L else self.delta(l).evaluate()
        sym = self.nt.dz(l)
        return Sym(sym, (self.size_z(l), 1), val, atomic=not self.nt.has_superscript(sym) and "nabla" not in sym)

    def delta(self, l: int) -> Named:
        r"""The closed-form recursion for :math:`\boldsymbol\delta^{[l]} = \nabla_{\mathbf z^{[l]}}\ell`:
        Damadi Table 1 at the output, then
        :math:`\boldsymbol\delta^{[l]} = (\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]})^\top(\mathbf J_{\mathbf a^{[l]}}\mathbf z^{[l+1]})^\top\boldsymbol\delta^{[l+1]}`
        (Ganev Prop. 3.1 (3.2), Park (17)), e.g. in Damadi's layout
        :math:`\operatorname{diag} f^{[l]\prime}(\mathbf z^{[l]})\,\mathbf W^{[l+1]}\boldsymbol\delta^{[l+1]}`."""
        self._check_stage(l)
        dl = Sym(self.nt.dz(l), (self.size_z(l), 1), atomic=False)
        if l == self.L:
            formula, _ = self.output_delta_formula()
            val = None
            if self.cache is not None and self.y is not None:
                val = _column(self.net.delta(self.x, self.y, self.params))
            return Named(dl, Sym(formula, dl.shape, val, compound=True), notation=self.nt)
        body = Prod([self.activation_jacobian(l).T, self.input_jacobian(l + 1).T, self.delta_symbol(l + 1)])
        return Named(dl, body, notation=self.nt)

    def param_gradient(self, entry) -> Named:
        r""":math:`\nabla_{\theta_p}\ell = (\mathbf J_{\theta_p}\mathbf z^{[l]})^\top\boldsymbol\delta^{[l]}`; for a dense weight the
        mixed-product rule gives :math:`(\mathbf I\otimes\mathbf a)\boldsymbol\delta = \boldsymbol\delta\otimes\mathbf a`
        (= :math:`\operatorname{vec}` of :math:`\mathbf a^{[l-1]}(\boldsymbol\delta^{[l]})^\top` in Damadi's layout)."""
        l = entry.stage
        dl = self.delta_symbol(l)
        J = self.param_jacobian(entry)
        label = Sym(self.nt.grad(self.param_tex(entry, wrt=True)), (entry.size, 1), atomic=False)
        return Named(label, Prod([J.T, dl]), notation=self.nt)

    def param_gradient_closed(self, entry) -> MatExpr:
        """The closed form of :meth:`param_gradient` (a Kronecker product of vectors for a dense weight)."""
        l = entry.stage
        layer = self.net.stages[l - 1].layer
        d = self.delta_symbol(l)
        closed = layer.block_param_gradient(_LatexAlgebra(self.a(l - 1), None), entry.local, entry.order, d)
        if closed is not None:
            return closed
        return Prod([self.param_jacobian(entry).T, d])

    def gradient_matrix_form(self, entry) -> str:
        r"""The dense weight gradient in the user's layout: :math:`\mathbf a^{[l-1]}(\boldsymbol\delta^{[l]})^\top`
        (Damadi, ``in_out``) or :math:`\boldsymbol\delta^{[l]}(\mathbf a^{[l-1]})^\top` (Ganev Prop. 3.1 (3.3), Park (18))."""
        l = entry.stage
        nt = self.nt
        d, a = nt.dz(l), self.a_tex(l - 1)
        if self.net.convention.weight_layout == "in_out":
            return rf"{a}\,{nt.T(d)}"
        return rf"{d}\,{nt.T(a)}"

    def gradient(self) -> Named:
        r""":math:`\nabla_\theta\ell = (\mathbf J_\theta\mathbf z^{[L]})^\top\boldsymbol\delta^{[L]}` (Damadi eq. (1), Alg. 1 line 8)."""
        Jt = self.jacobian_theta()
        label = Sym(self.nt.grad(self.nt.theta), (self.net.n_params, 1), atomic=False)
        return Named(label, Prod([Jt.T, self.delta(self.L)]), notation=self.nt)

    # ------------------------------------------------------------------ rendering helpers
    def equation(self, named: Named, steps: Sequence[int] = (0, 99), shapes: bool = False,
                 space: bool = True) -> str:
        """``label = body(expand=steps[0]) = body(expand=steps[1]) … \\in R^{m×n}`` (identical steps merged)."""
        parts = [render(named.label, self.nt)]
        for s in steps:
            t = render(named.body, self.nt, shapes, s)
            if t not in parts:
                parts.append(t)
        out = " = ".join(parts)
        if space:
            out += r" \in " + (Notation.reals(named.shape[0]) if named.shape[1] == 1 else Notation.reals(*named.shape))
        return out

    def entries(self, expr: MatExpr, max_rows: int = DEFAULT_MAX, max_cols: int = DEFAULT_MAX, precision: int = 4) -> str:
        """Entries level of an expression: through the engine's operator when known, else by evaluation."""
        op = expr.op if isinstance(expr, Named) and expr.op is not None else None
        if op is not None:
            return matrix_latex(op, max_rows, max_cols, precision)
        return matrix_latex(expr.evaluate(), max_rows, max_cols, precision)

    def _check_stage(self, l: int) -> None:
        if not isinstance(l, (int, np.integer)) or not (1 <= l <= self.L):
            raise ValueError(f"NetworkLatex: layer index must be in 1..{self.L} for network {self.net.name!r}, received {l!r}")


# ---------------------------------------------------------------------------- notebook display
def _install_display_printers() -> None:
    """Give the engine's ``_repr_latex_`` hooks their printers (the engine never imports this floor)."""
    from ..engine.jacobian import DISPLAY_PRINTERS

    DISPLAY_PRINTERS["Jacobian"] = lambda J: "$" + jacobian_equation_latex(J) + "$"
    DISPLAY_PRINTERS["Gradient"] = lambda g: "$$" + gradient_latex(g) + "$$"
    DISPLAY_PRINTERS["VerificationReport"] = lambda r: "$$" + verification_table_latex(r, "math") + "$$"


_install_display_printers()
