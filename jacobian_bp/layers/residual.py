r"""Residual blocks :math:`\mathbf o = \mathbf a + \mathbf g(\mathbf a)`: a composite layer whose Jacobians are the chain of its parts.

A :class:`Residual` block wraps a *body*, any sequence of layers
:math:`\mathbf g = \mathbf g_m\circ\cdots\circ\mathbf g_1` (dense, conv2d with a padding that keeps the
shape, activations, pooling, flatten, even another residual block) whose output shape equals its
input shape, and adds the skip connection (He et al., *Deep Residual Learning*, 2016, eq. (1)).  With
:math:`\mathbf h_0 = \mathbf a`, :math:`\mathbf h_k = \mathbf g_k(\mathbf h_{k-1})`:

.. math::

   \mathbf J_{\mathbf a}\mathbf o = \mathbf I + \mathbf J_{\mathbf h_{m-1}}\mathbf h_m\cdots\mathbf J_{\mathbf h_0}\mathbf h_1,
   \qquad
   \mathbf J_{\theta_k}\mathbf o = \mathbf J_{\mathbf h_{m-1}}\mathbf h_m\cdots\mathbf J_{\mathbf h_k}\mathbf h_{k+1}\;\mathbf J_{\theta_k}\mathbf h_k

-- Damadi's Algorithm 1 applied inside the block: the Jacobian of a parameter of sub-layer ``k`` is the
chain from the block's output down to that sub-layer's output, times the sub-layer's own local block
(the skip term does not depend on :math:`\theta_k`).  Every batched product (``vjp_input``,
``vjp_params``, ``left_jac_input``, ``jvp_input``, ``jvp_params``) and the torch twin are composed
from the body layers' own methods; the block knows no layer kind.

Parameter names
---------------
The block's local parameter names are ``"<name>.<k>"``: ``k`` counts the *parametric* sub-layers of
the body from 1 (as Damadi counts stages), ``<name>`` is the sub-layer's own local name (``W``, ``b``,
``K``).  A nested block's names are prefixed the same way (``W.2.1``).  The network names a
parameter of the block at stage ``l`` ``W<l>.<k>`` (``W2.1``: the first dense layer of block 2):
the stage number stays Damadi's ``l`` and the plain networks' names ``W1, b1, …`` are untouched;
counting parametric sub-layers only means inserting or removing an activation renames nothing.

Future blocks (shared parameters, several inputs)
-------------------------------------------------
The block maps each sub-layer's local names to its own through ``self.name_map`` (sub-layer ``k``,
local name → block name), and every method reads and writes parameters through that map only.
Shared parameters (the ``W_q, W_k, W_v`` of attention reused across heads, a recurrent cell's
weights reused at every time step) are two sub-layers mapping a local name to the *same* block name:
``vjp_params``/``jac_params`` then sum the contributions of the occurrences (Algorithm 1 sums over
every path from the parameter to the output), which the accumulation below already does.  Several
inputs (attention's queries/keys/values, a cell's state and input) fit the same shape: a block's body
becomes a small graph whose nodes name their inputs, ``jac_input`` sums the chains over the paths
(``I + J_body`` is the two-path case), and the network still sees one stage with one input
:math:`\mathbf a^{[l-1]}` and one output :math:`\mathbf z^{[l]}` -- no change to the engine.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import sympy

from ..errors import ShapeError, SpecError, UnsupportedInputError
from ..backend.operators import Operator, Product
from .base import Layer
from .lazy_operators import OperatorSum
from .registry import register

__all__ = ["Residual", "SkipSum", "SubStage", "weight_transposed_by_layout"]

_NOT_RENDERED = "a residual block has no scalar form"


def weight_transposed_by_layout(layer: Layer, local: str) -> bool:
    """Whether the convention's ``weight_layout`` transposes the layer's parameter ``local``.

    Asks the layer (``layer.weight_transposed_by_layout(local)``).  Until every layer declares it
    (issue #12, the layer protocol), a layer without the method is asked the one fact that holds
    today: the weight ``W`` of a Dense layer is the one transposed by the ``in_out`` layout.
    """
    ask = getattr(layer, "weight_transposed_by_layout", None)
    if callable(ask):
        return bool(ask(local))
    from .dense import Dense  # the fallback named above

    return isinstance(layer, Dense) and local == "W"


class SkipSum(Operator):
    r""":math:`\mathbf I + \mathbf B` for a square operator :math:`\mathbf B` (the residual block's input Jacobian)."""

    structure = "identity plus"

    def __init__(self, body: Operator):
        if body.shape[0] != body.shape[1]:
            raise ShapeError(f"SkipSum: the body Jacobian must be square, received {body.shape}")
        self.body = body
        self.shape = body.shape
        self.symbolic = body.symbolic

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        return X + self.body.matmat(X)

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        return X + self.body.rmatmat(X)

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        return M + self.body.left_matmat(M)

    @property
    def T(self) -> Operator:
        return SkipSum(self.body.T)

    def tokenwise(self, T: int) -> bool:
        """Block diagonal over ``T`` tokens when the body is (:func:`~jacobian_bp.layers.token_blocks.tokenwise`)."""
        from .token_blocks import tokenwise

        return tokenwise(self.body, T)

    def _dense(self):
        D = self.body._dense()
        if D.dtype == object:
            return D + np.eye(self.shape[0], dtype=np.int64).astype(object)
        return D + np.eye(self.shape[0])

    def _sympy(self):
        return sympy.eye(self.shape[0]) + self.body._sympy()


@dataclass
class SubStage:
    r"""Sub-stage ``k`` of a residual block's body, grouped as the network groups its stages.

    ``layer`` is the ``k``-th parametric sub-layer (it makes :math:`\mathbf z^{[l.k]}`), ``post`` the
    parameter-free layers after it (they make :math:`\mathbf a^{[l.k]}`), ``position`` the body index of
    ``layer`` and ``names`` its local parameter names mapped to the block's (``{"W": "W.1"}``).
    """

    index: int
    layer: Layer
    position: int
    names: dict
    post: list = field(default_factory=list)


@register("residual")
class Residual(Layer):
    r"""Residual block :math:`\mathbf o = \mathbf a + \mathbf g(\mathbf a)` (see the module docstring).

    Parameters
    ----------
    body : sequence of Layer
        The layers of :math:`\mathbf g`, applied in order; their output shape must equal their
        input shape (``ShapeError`` otherwise).
    """

    kind = "residual"
    #: a composite layer: the spec builds its ``body`` from nested layer objects
    composite = True
    #: the symbolic backend and the LaTeX renderer draw it (named intermediates, :math:`\mathbf I + \mathbf J_{body}`)
    renders_symbolically = True

    def __init__(self, body: Sequence[Layer]):
        super().__init__()
        if isinstance(body, Layer) or not isinstance(body, (list, tuple)) or not body:
            raise SpecError(f"residual block: body must be a non-empty list of layers, received {body!r}")
        for i, layer in enumerate(body):
            if not isinstance(layer, Layer):
                raise SpecError(f"residual block: body[{i}] is not a Layer but {type(layer).__name__}")
        self.body: list[Layer] = [copy.copy(layer) for layer in body]
        self._index_names()

    def _index_names(self) -> None:
        # name_map[k]: sub-layer k's local name -> the block's local name ("W" -> "W.1")
        self.name_map: list[dict[str, str]] = []
        j = 0
        for layer in self.body:
            names = {}
            if layer.parametric:
                j += 1
                built = layer.in_shape is not None
                for local in (layer.param_shapes() if built else layer.param_names):
                    names[local] = self._join(local, j)
            self.name_map.append(names)

    @staticmethod
    def _join(local: str, j: int) -> str:
        base, dot, rest = local.partition(".")
        return f"{base}.{j}.{rest}" if dot else f"{base}.{j}"

    # ------------------------------------------------------------------ structure
    @property
    def parametric(self) -> bool:  # a block with a parameter opens a stage of the network
        return any(layer.parametric for layer in self.body)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(n for names in self.name_map for n in names.values())

    @classmethod
    def protocol_examples(cls):
        """A dense body with a kink-free activation, and a body of two dense layers with a bias-free one."""
        from .activations import Tanh
        from .dense import Dense

        return [({"body": [Dense(5), Tanh(), Dense(5)]}, (5,)),
                ({"body": [Dense(3, bias=False), Tanh(), Dense(4)]}, (4,))]

    def build(self, in_shape, convention=None):
        in_shape = tuple(int(s) for s in in_shape)
        shape = in_shape
        self.body = [copy.copy(layer) for layer in self.body]
        base = self.label or "residual block"
        for k, layer in enumerate(self.body):
            layer.label = f"{base} body[{k}] ({layer.kind})"
            shape = tuple(layer.build(shape, convention))
        if shape != in_shape:
            raise ShapeError(f"{self._name()}: the body maps shape {in_shape} to {shape}; a residual block "
                             "needs equal input and output shapes (use a padding that keeps the size)")
        self._index_names()  # param_names of the body are final once built (e.g. a conv's bias)
        self.in_shape = self.out_shape = in_shape
        return self.out_shape

    def param_shapes(self):
        out = {}
        for layer, names in zip(self.body, self.name_map):
            for local, shape in layer.param_shapes().items():
                out[names[local]] = shape
        return out

    def init_params(self, rng):
        out = {}
        for layer, names in zip(self.body, self.name_map):
            for local, v in layer.init_params(rng).items():
                out[names[local]] = v
        return out

    def weight_transposed_by_layout(self, local: str) -> bool:
        """Asks the sub-layer that owns ``local``."""
        for layer, names in zip(self.body, self.name_map):
            for sub, name in names.items():
                if name == local:
                    return weight_transposed_by_layout(layer, sub)
        return False

    def _param_owner(self, local: str):
        """``(sub-layer, its local name)`` owning the block's parameter ``local``: a block name (``W.1``, ``gamma.ln1``),
        or a bare sub-layer name (``gamma``, as the notation asks: the first sub-layer with it); None if no sub-layer has it."""
        pairs = [(layer, sub, name) for layer, names in zip(self.body, self.name_map) for sub, name in names.items()]
        base = str(local).partition(".")[0]
        hit = next((p for p in pairs if p[2] == local), None) or next((p for p in pairs if p[1].partition(".")[0] == base), None)
        return None if hit is None else hit[:2]

    def param_role(self, local: str) -> str:
        """The role the sub-layer that owns ``local`` gives it (``"weight"``/``"bias"``); the name's default otherwise."""
        owner = self._param_owner(local)
        return super().param_role(local) if owner is None else owner[0].param_role(owner[1])

    def param_symbol(self, local: str) -> str | None:
        r"""The letter the sub-layer that owns ``local`` gives it (attention's :math:`\mathbf W_{Q}`, LayerNorm's
        :math:`\boldsymbol\gamma`); None (the notation's default letter) when it gives none."""
        owner = self._param_owner(local)
        return None if owner is None else owner[0].param_symbol(owner[1])

    def inner_stages(self):
        """:meth:`sub_stages` (see :meth:`jacobian_bp.layers.base.Layer.inner_stages`); a subclass that hides
        ``sub_stages`` from the older consumers still states its inner stages to the renderers."""
        return Residual.sub_stages(self)

    def _sub_params(self, params) -> list[dict]:
        return [{sub: params[name] for sub, name in names.items()} for names in self.name_map]

    def _run(self, A, params) -> tuple[list, list, np.ndarray]:
        """Body forward pass: the inputs ``h_{k-1}`` of every sub-layer, their parameters, and ``g(a)``."""
        subs = self._sub_params(params)
        ins, H = [], A
        for layer, p in zip(self.body, subs):
            ins.append(H)
            H = layer.forward(H, p)
        return ins, subs, H

    def _steps(self, A, params) -> list[tuple]:
        """``(layer, input, output, params)`` of every sub-layer, forward order."""
        ins, subs, H = self._run(A, params)
        outs = ins[1:] + [H]
        return list(zip(self.body, ins, outs, subs))

    # ------------------------------------------------------------------ protocol
    def forward(self, A, params):
        return A + self._run(A, params)[2]

    def jac_input(self, a, o, params):
        steps = self._steps(np.asarray(a)[None], params)
        ops = [layer.jac_input(A[0], O[0], p) for layer, A, O, p in reversed(steps)]
        return SkipSum(Product(ops))

    def jac_params(self, a, o, params, order="C"):
        return self.jacobians(a, params, order)[1]

    def _tokens(self) -> int | None:
        """``T`` for a sequence input ``(T, d)`` with ``T > 1`` (the chains may then be token-block diagonal)."""
        shape = self.in_shape
        return int(shape[0]) if shape is not None and len(shape) == 2 and shape[0] > 1 else None

    def jacobians(self, a, params, order="C") -> tuple[Operator, dict[str, Operator]]:
        r"""``(jac_input, jac_params)`` of one sample from one forward pass through the body.

        The chain above sub-layer ``k`` (:math:`\mathbf J` of the body's output w.r.t. its output) is kept
        once (:class:`~jacobian_bp.layers.token_blocks.ChainMemo`, built from the chain above sub-layer ``k+1``)
        and shared by the blocks of every parameter below it (:class:`~jacobian_bp.layers.token_blocks.ChainBlock`);
        on a sequence, a chain of token-wise Jacobians is kept as its ``T`` diagonal blocks.
        """
        from .token_blocks import ChainBlock, ChainMemo

        steps = self._steps(np.asarray(a)[None], params)
        T = self._tokens()
        out: dict[str, Operator] = {}
        chain = None  # the kept J of the body's output w.r.t. the current sub-layer's output
        ops: list[Operator] = []
        for (layer, A, O, p), names in reversed(list(zip(steps, self.name_map))):
            a0, o0 = A[0], O[0]  # the same objects for both calls: a layer may share one forward pass between them
            if names:
                for sub, op in layer.jac_params(a0, o0, p, order).items():
                    block = ChainBlock(chain, op) if chain is not None else op
                    name = names[sub]
                    out[name] = block if name not in out else OperatorSum(out[name], block)
            J = layer.jac_input(a0, o0, p)
            ops.append(J)
            chain = ChainMemo(J if chain is None else Product([chain, J]), T)
        return SkipSum(Product(ops)), out

    def vjp_input(self, A, O, G, params):
        N = A.shape[0]
        G = np.asarray(G).reshape(N, -1)
        g = G
        for layer, Ain, Oout, p in reversed(self._steps(A, params)):
            g = np.asarray(layer.vjp_input(Ain, Oout, g.reshape(N, -1), p)).reshape(N, -1)
        return G + g

    def vjp_params(self, A, O, G, params):
        N = A.shape[0]
        g = np.asarray(G).reshape(N, -1)
        out: dict[str, np.ndarray] = {}
        steps = self._steps(A, params)
        for k in range(len(steps) - 1, -1, -1):
            layer, Ain, Oout, p = steps[k]
            names = self.name_map[k]
            if names:
                for sub, v in layer.vjp_params(Ain, Oout, g, p).items():
                    v = np.asarray(v).ravel()
                    out[names[sub]] = v if names[sub] not in out else out[names[sub]] + v
            if k:
                g = np.asarray(layer.vjp_input(Ain, Oout, g, p)).reshape(N, -1)
        return out

    def left_jac_input(self, A, O, P, params):
        Q = P
        for layer, Ain, Oout, p in reversed(self._steps(A, params)):
            Q = layer.left_jac_input(Ain, Oout, Q, p)
        return P + Q

    def jvp_input(self, A, O, T, params):
        N = A.shape[0]
        T = np.asarray(T).reshape(N, -1)
        t = T
        for layer, Ain, Oout, p in self._steps(A, params):
            t = np.asarray(layer.jvp_input(Ain, Oout, t.reshape(N, -1), p)).reshape(N, -1)
        return T + t

    def jvp_params(self, A, O, dparams, params):
        N = A.shape[0]
        t = None  # the block's input a does not depend on its parameters
        for (layer, Ain, Oout, p), names in zip(self._steps(A, params), self.name_map):
            nxt = None if t is None else np.asarray(layer.jvp_input(Ain, Oout, t, p)).reshape(N, -1)
            if names:
                dp = {sub: dparams[name] for sub, name in names.items()}
                own = np.asarray(layer.jvp_params(Ain, Oout, dp, p)).reshape(N, -1)
                nxt = own if nxt is None else nxt + own
            t = nxt
        return np.zeros((N, self.out_size)) if t is None else t

    def torch_forward(self, A, params):
        """``A + body(A)`` with the body layers' own torch twins."""
        H = A
        for layer, p in zip(self.body, self._sub_params(params)):
            H = layer.torch_forward(H, p)
        return A + H

    def sub_params(self, params) -> list[dict]:
        """The parameters of every body layer (body order), keyed by the sub-layer's own local names."""
        return self._sub_params(params)

    def body_steps(self, A, params) -> list[tuple]:
        """``(layer, input, output, sub-layer parameters)`` of every body layer, forward order, for a batch ``A``."""
        return self._steps(A, params)

    # ------------------------------------------------------------------ structure for the renderers
    def sub_stages(self) -> tuple[list[Layer], list[SubStage]]:
        r"""The body grouped as a network groups its layers: the parameter-free layers before the first
        parametric one (they make :math:`\mathbf a^{[l.0]}`), then one :class:`SubStage` per parametric
        sub-layer ``k`` with the parameter-free layers after it.

        The symbolic backend and the LaTeX renderer name the intermediates after it: the block at stage
        ``l`` has input :math:`\mathbf a^{[l-1]}`, sub-stage ``k`` makes :math:`\mathbf z^{[l.k]}` (and
        :math:`\mathbf a^{[l.k]}` after its activations), and the block's output is
        :math:`\mathbf z^{[l]} = \mathbf a^{[l-1]} + \mathbf g(\mathbf a^{[l-1]})`, :math:`\mathbf g(\mathbf a^{[l-1]})` the
        last of these -- the tags ``l.k`` of the parameters :math:`\mathbf W^{[l.k]}`.
        """
        pre: list[Layer] = []
        subs: list[SubStage] = []
        for pos, (layer, names) in enumerate(zip(self.body, self.name_map)):
            if layer.parametric:
                subs.append(SubStage(len(subs) + 1, layer, pos, names))
            elif not subs:
                pre.append(layer)
            else:
                subs[-1].post.append(layer)
        return pre, subs

    @staticmethod
    def tag(l, k) -> str:
        """The tag ``"l.k"`` of sub-stage ``k`` of the block at stage (or tag) ``l``."""
        return f"{l}.{k}"

    def body_output_tag(self, l) -> tuple[str, str]:
        r"""``("z" or "a", tag)``: the named vector that is :math:`\mathbf g(\mathbf a^{[l-1]})` (the last sub-stage's
        :math:`\mathbf z^{[l.m]}`, or its :math:`\mathbf a^{[l.m]}` after an activation; :math:`\mathbf a^{[l.0]}` for a
        body without a parametric layer)."""
        pre, subs = self.sub_stages()
        if not subs:
            return ("a", self.tag(l, 0))
        last = subs[-1]
        return ("a" if last.post else "z", self.tag(l, last.index))

    # ------------------------------------------------------------------ LaTeX and SymPy facts
    def skip_sum(self, a, g):
        r"""The block's output from its input and its body's output: :math:`\mathbf a + \mathbf g` (any array type)."""
        return a + g

    def latex_forward(self, nt, l, a_prev, weight_layout):
        r""":math:`\mathbf a^{[l-1]} + \mathbf z^{[l.m]}`: the skip connection plus the body's output (named)."""
        which, tag = self.body_output_tag(l)
        return rf"{a_prev} + {nt.z(tag) if which == 'z' else nt.vec('a', tag)}"

    def latex_skip(self, out: str, body_jacobian: str, identity: str) -> str:
        r""":math:`\mathbf J_{\mathbf a}\mathbf o = \mathbf I + \mathbf J_{\mathbf a}\mathbf g`, written from the LaTeX of the parts."""
        return rf"{identity} + {body_jacobian}"

    def prose(self) -> str:
        return "a residual block (skip connection)"

    def latex_describe(self) -> str:
        return "residual: " + r" $\to$ ".join(layer.latex_describe() for layer in self.body)

    # ------------------------------------------------------------------ description
    def describe(self):
        return "residual[" + " -> ".join(layer.describe() for layer in self.body) + "]"

    def latex_name(self) -> str:
        raise UnsupportedInputError(_NOT_RENDERED)

    def sympy_f(self, t):  # pragma: no cover - a composite block has no scalar form
        raise UnsupportedInputError(_NOT_RENDERED)
