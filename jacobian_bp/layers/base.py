r"""The layer protocol shared by every layer family (after BackPACK's per-layer derivative classes).

A layer maps one sample :math:`\mathbf a \in \mathbb R^{\text{in\_shape}}` to
:math:`\mathbf o \in \mathbb R^{\text{out\_shape}}`.  Arrays are *batch-first and
shaped* inside the engine (``(N, *in_shape)``); vectors of a single sample are
flattened in row-major (C) order, which for an image ``X`` is Damadi's
:math:`\operatorname{Vec}(\mathbf X^\top)` (rows stacked).

Methods every layer implements
------------------------------
``build(in_shape, convention) -> out_shape``
    Validate the input shape (``ShapeError`` naming the layer, the expected and the
    received shape) and fix the output shape.
``forward(A, params) -> O``
    Batch forward pass, ``A`` of shape ``(N, *in_shape)``.
``jac_input(a, o, params) -> Operator``
    :math:`\mathbf J_{\mathbf a}\mathbf o` for one sample, ``(out_size, in_size)``.
``jac_params(a, o, params, order) -> dict[str, Operator]``
    :math:`\mathbf J_{\operatorname{vec}\boldsymbol\theta_j}\mathbf o` for each local parameter
    ``θ_j`` in its *canonical* shape, with ``vec`` stacking rows (``order="C"``) or
    columns (``order="F"``).
``vjp_input(A, O, G, params)`` / ``vjp_params(A, O, G, params)``
    Batched products with the transposed Jacobians (used by the operator-mode
    gradient); the defaults loop over samples and call the Jacobians.

``jvp_input(A, O, T, params)`` / ``jvp_params(A, O, dparams, params)``
    Forward mode: batched :math:`\mathbf J_{\mathbf a_i}\mathbf o_i\mathbf t_i` and
    :math:`\sum_j\mathbf J_{\theta_j}\mathbf o_i\operatorname{vec}\dot\theta_j`, flat rows ``(N, out_size)``;
    the defaults apply the per-sample Jacobians.
``torch_forward(A, params)``
    The PyTorch twin (float64, batch-first) the autograd oracle runs; the default raises
    ``NotImplementedError`` naming the layer, which ``verify`` reports as torch skipped.
``protocol_examples()`` (classmethod)
    Small ``(kwargs, in_shape)`` instances on which ``tests/test_layer_protocol.py`` checks all of
    the above for every registered class.

Facts the consumers ask for instead of switching on ``kind``
-----------------------------------------------------------
Attributes: ``affine_weight_name`` (the parameter that *is* :math:`\mathbf J_{\mathbf a}\mathbf o`,
Dense's ``"W"``), ``jacobian_is_identity``, ``jacobian_symmetric``, ``is_kinked``,
``follows_convention_at_zero``, ``block_symbol`` / ``block_input_name`` (names in the SymPy block
chain).  Methods: ``prose()`` and ``latex_describe()`` (derivation text), ``latex_forward(nt, l, a_prev,
weight_layout)`` (:math:`\mathbf z^{[l]} = \dots`), ``latex_input_jacobian(params_latex)``,
``latex_jacobian(out, transpose)``, ``block_param_jacobian(alg, local, order)`` and
``block_param_gradient(alg, local, order, delta)`` (written once in an abstract matrix algebra that
the LaTeX renderer and the SymPy block chain both implement), ``sympy_vector(z)`` (the defining
formula on SymPy symbols).  Elementwise activations add ``f``, ``df``, ``sympy_f`` (``sympy_df`` by
differentiation), ``symbol``, ``torch_f`` (:mod:`.activations`).  Losses have their own set
(:mod:`.losses`: ``torch_per_sample``, ``sample_targets``, ``output_scale``, ``latex_output_delta``,
``scaled_by_convention``).  Every class registers itself with ``@register(name)`` (:mod:`.registry`).

Parametric layers (Dense, Conv2d) open a new *stage* ``l`` of the network:
:math:`\mathbf z^{[l]}` is their output, and the parameter-free layers that follow
(activations, pooling, flatten) make :math:`\mathbf a^{[l]} = \mathbf f^{[l]}(\mathbf z^{[l]})`.
"""
from __future__ import annotations

from math import prod
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..backend.escape import escape_text
from ..backend.operators import Operator


class Layer:
    """Base class; see the module docstring for the protocol."""

    kind: str = "layer"
    param_names: tuple[str, ...] = ()
    parametric: bool = False
    #: a vector activation (softmax, radial sigmoid) or elementwise (diagonal Jacobian)
    elementwise: bool = False
    #: the parameter that *is* the input Jacobian :math:`\mathbf J_{\mathbf a}\mathbf o` in its canonical
    #: shape ``(out_size, in_size)``, whatever the input: the weight of an affine layer
    #: :math:`\mathbf W\mathbf a + \mathbf b` (``"W"``); None otherwise
    affine_weight_name: str | None = None
    #: :math:`\mathbf J_{\mathbf a}\mathbf o = \mathbf I` (identity activation, flatten): renderers drop the factor
    jacobian_is_identity: bool = False
    #: :math:`\mathbf J_{\mathbf a}\mathbf o` is declared symmetric (diagonal; softmax's
    #: :math:`\operatorname{diag}\mathbf s - \mathbf s\mathbf s^\top`): renderers may print its transpose as itself
    jacobian_symmetric: bool = False
    #: piecewise with a kink at 0 where SymPy's derivative of the formula and the stated
    #: subgradient differ (leaky ReLU, ELU): exact identities are refused for it
    is_kinked: bool = False
    #: the block-level symbol of :math:`\mathbf J_{\mathbf a}\mathbf o` in :class:`jacobian_bp.symbolic.blocks.BlockChain`
    #: as ``(plain name, meaning, LaTeX)``, the last two templates in ``{l}`` (the stage); None: a generic
    #: :math:`\mathbf J^{[l]}_k`
    block_symbol: tuple[str, str, str] | None = None
    #: the plain name of the block symbol of :math:`\mathbf J_{\mathbf a}\mathbf z^{[l]}` when
    #: :meth:`latex_input_jacobian` gives its LaTeX (e.g. ``"T"`` for a Toeplitz matrix)
    block_input_name: str = "Jin"
    #: the layer takes a subgradient at 0 from the convention (ReLU's ``relu_at_zero``)
    follows_convention_at_zero: bool = False
    #: the output of a sample depends on the other samples of the batch (batch normalization in training mode):
    #: such a layer implements the batch-level protocol (``batch_jac_input(A, O, params)`` of shape
    #: ``(N·out_size, N·in_size)``, rows and columns sample-major, ``batch_jac_params``, ``batch_left_jac_input``,
    #: ``batch_protocol_examples``) and refuses the per-sample methods; the engine then refuses every per-sample
    #: route with one line (:mod:`jacobian_bp.engine.coupled`)
    couples_samples: bool = False

    def __init__(self) -> None:
        self.in_shape: tuple[int, ...] | None = None
        self.out_shape: tuple[int, ...] | None = None
        self.label: str = ""  # set by the network: "layer 2 (dense)"

    # ------------------------------------------------------------------ protocol
    def build(self, in_shape: tuple[int, ...], convention: Any = None) -> tuple[int, ...]:
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = self.in_shape
        return self.out_shape

    @property
    def in_size(self) -> int:
        return prod(self.in_shape)

    @property
    def out_size(self) -> int:
        return prod(self.out_shape)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {}

    def forward(self, A: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def jac_input(self, a: np.ndarray, o: np.ndarray, params: dict[str, np.ndarray]) -> Operator:  # pragma: no cover
        raise NotImplementedError

    def jac_params(self, a: np.ndarray, o: np.ndarray, params: dict[str, np.ndarray], order: str = "C") -> dict[str, Operator]:
        return {}

    def vjp_input(self, A: np.ndarray, O: np.ndarray, G: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        """Rows ``G[i]`` (flat, ``out_size``) times :math:`\\mathbf J_{\\mathbf a_i}\\mathbf o_i`; returns ``(N, in_size)``."""
        return np.stack([self.jac_input(A[i], O[i], params).rmatvec(G[i]) for i in range(G.shape[0])])

    def vjp_params(self, A: np.ndarray, O: np.ndarray, G: np.ndarray, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Sum over the batch of :math:`(\\mathbf J_{\\theta}\\mathbf o_i)^\\top \\mathbf g_i`, canonical (C) vec order."""
        out: dict[str, np.ndarray] = {}
        for i in range(G.shape[0]):
            for k, J in self.jac_params(A[i], O[i], params, "C").items():
                out[k] = out.get(k, 0) + J.rmatvec(G[i])
        return out

    def left_jac_input(self, A: np.ndarray, O: np.ndarray, P: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        r"""Batched :math:`\mathbf P_i\,\mathbf J_{\mathbf a_i}\mathbf o_i` for ``P`` of shape ``(N, k, out_size)``.

        Returns ``(N, k, in_size)``.  This is one step of Damadi Alg. 1 from the left
        (reverse mode); the default loops over samples.
        """
        return np.stack([self.jac_input(A[i], O[i], params).left_matmat(P[i]) for i in range(P.shape[0])])

    # ------------------------------------------------------------------ forward mode
    def jvp_input(self, A: np.ndarray, O: np.ndarray, T: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        r"""Batched :math:`\mathbf J_{\mathbf a_i}\mathbf o_i\,\mathbf t_i` for tangents ``T`` of shape ``(N, in_size)``.

        Returns ``(N, out_size)`` (flat rows).  The default is correct for every layer but not
        vectorized: per sample, the structured ``jac_input`` times the tangent.
        """
        N = A.shape[0]
        T = np.asarray(T).reshape(N, -1)
        out = np.empty((N, self.out_size))
        for i in range(N):
            out[i] = self.jac_input(A[i], O[i], params).matvec(T[i])
        return out

    def jvp_params(self, A: np.ndarray, O: np.ndarray, dparams: dict[str, np.ndarray],
                   params: dict[str, np.ndarray]) -> np.ndarray:
        r"""Batched :math:`\sum_j \mathbf J_{\operatorname{vec}\theta_j}\mathbf o_i\,\operatorname{vec}(\dot\theta_j)`, ``(N, out_size)``.

        ``dparams`` holds the tangents keyed by local parameter name, in canonical shapes.  The
        default applies the per-sample ``jac_params(..., "C")`` (row-major vec, the canonical one).
        """
        N = A.shape[0]
        out = np.zeros((N, self.out_size))
        for i in range(N):
            for k, J in self.jac_params(A[i], O[i], params, "C").items():
                out[i] += J.matvec(np.ravel(dparams[k]))
        return out

    # ------------------------------------------------------------------ torch twin
    def torch_forward(self, A, params):
        """The layer's PyTorch twin (float64, batch-first ``(N, *in_shape)``), used by the autograd oracle.

        ``params`` holds torch tensors keyed by local parameter name in canonical shapes.  A
        layer without a twin raises :class:`NotImplementedError`; the oracle then reports torch
        as skipped, naming the layer.
        """
        raise NotImplementedError(f"no torch equivalent for layer {self.kind!r} ({type(self).__name__})")

    # ------------------------------------------------------------------ examples for the contract tests
    @classmethod
    def protocol_examples(cls) -> list[tuple[dict, tuple[int, ...]]]:
        """Small ``(constructor kwargs, per-sample input shape)`` pairs on which the contract tests
        (``tests/test_layer_protocol.py``) check every protocol method of the class; default: the
        default constructor on a vector of 5 entries.  A layer with required arguments overrides it."""
        return [({}, (5,))]

    # ------------------------------------------------------------------ symbolic and LaTeX facts
    def prose(self) -> str:
        """A LaTeX-safe phrase naming the layer in a derivation's text ("the sigmoid ..."); default: its kind."""
        return escape_text(self.kind)

    def latex_describe(self) -> str:
        """The layer in a derivation's table of layers (LaTeX text mode); default: :meth:`describe`, escaped."""
        return escape_text(self.describe())

    def latex_forward(self, nt, l: int, a_prev: str, weight_layout: str) -> str:
        r"""The right-hand side of :math:`\mathbf z^{[l]} = \dots` for a stage-opening layer, in LaTeX.

        ``nt`` is the renderer's notation (``weight(name, l)``, ``bias(l)``, ``T(symbol)``),
        ``a_prev`` the LaTeX of its input, ``weight_layout`` the convention's (``"in_out"``:
        Damadi's :math:`\mathbf W^\top\mathbf a`).  Default: :math:`\mathrm{kind}(\mathbf a)`.
        """
        return rf"\mathrm{{{escape_text(self.kind)}}}({a_prev})"

    def latex_input_jacobian(self, params_latex: dict[str, str]) -> str | None:
        r"""LaTeX of :math:`\mathbf J_{\mathbf a}\mathbf o` from the LaTeX of the layer's parameters, when it has a
        closed name (a convolution's :math:`\operatorname{Toep}(\mathbf K)`); None: a generic Jacobian symbol."""
        return None

    def latex_jacobian_where(self) -> str | None:
        r"""A LaTeX sentence (text mode) defining the symbols that :meth:`latex_input_jacobian` uses, when it uses
        some of its own (an attention layer's :math:`\mathbf J_{\mathbf Q}\mathbf C` and its row-softmax Jacobians);
        the derivation prints it after the formula.  None (the default): nothing to define."""
        return None

    def latex_jacobian(self, out: str, transpose) -> str | None:
        r"""LaTeX of a parameter-free layer's :math:`\mathbf J_{\mathbf a}\mathbf o` from the LaTeX ``out`` of its output
        (``transpose(symbol)`` writes a transpose), when it has a closed form; None: a generic symbol."""
        return None

    def block_param_jacobian(self, alg, local: str, order: str):
        r""":math:`\mathbf J_{\operatorname{vec}\theta}\mathbf z` of the local parameter ``local`` as a matrix expression.

        ``alg`` is the caller's matrix-expression algebra (the LaTeX renderer's and the SymPy
        block chain's implement the same operations): ``identity(n)``, ``kron(A, B)``,
        ``matmul(A, B)``, ``ones(n)`` (a column of ones), ``input_column()`` / ``input_row()``
        (:math:`\mathbf a` and :math:`\mathbf a^\top` of the layer's input), ``patches(rows, cols)``
        (im2col matrix :math:`\mathbf P(\mathbf a)`) and ``permutation(local)`` (the vec
        permutation of ``local`` for ``order="F"``); the last two may return None (not
        expressible by that caller).  Returns None for a generic symbol (the default).
        """
        return None

    def block_param_gradient(self, alg, local: str, order: str, delta):
        r"""Closed form of :math:`(\mathbf J_{\operatorname{vec}\theta}\mathbf z)^\top\boldsymbol\delta` in ``alg``
        (see :meth:`block_param_jacobian`), or None: the transposed block times :math:`\boldsymbol\delta`."""
        return None

    def sympy_vector(self, z: list) -> list:
        """The layer's defining formula applied to a list of SymPy symbols ``z`` (one sample, flat).

        Default: :meth:`forward` on an object array (every layer that accepts SymPy entries).
        """
        return list(np.ravel(self.forward(np.array([list(z)], dtype=object), {})[0]))

    # ------------------------------------------------------------------ composite layers
    def inner_stages(self):
        r"""The stages inside a composite layer, for the renderers that draw it expanded; None (the default): none.

        A composite layer (a residual block, a Transformer block) returns ``(pre, subs)``: the parameter-free
        layers before its first parametric sub-layer, then one
        :class:`~jacobian_bp.layers.residual.SubStage` per parametric sub-layer ``k`` (``index``, ``layer``,
        ``position``, ``names``: the sub-layer's local parameter names mapped to the composite's, ``post``: the
        parameter-free layers after it).  A sub-layer may itself have inner stages (nested blocks).  How its
        input and its body's output combine is :meth:`skip_sum` (:math:`\mathbf a + \mathbf g` for a residual
        block, :math:`\mathbf g` for a composite without a skip connection of its own).
        """
        return None

    def skip_sum(self, a, g):
        r"""A composite layer's output from its input ``a`` and its body's output ``g`` (any objects with ``+``:
        arrays, SymPy matrices, the renderers' matrix expressions); the default, for a layer without inner stages,
        is the body's output ``g``.  A residual block returns :math:`\mathbf a + \mathbf g`, and the renderers
        apply it to :math:`(\mathbf I, \mathbf J_{\mathbf a}\mathbf g)` to write its input Jacobian."""
        return g

    # ------------------------------------------------------------------ parameter facts
    def param_role(self, local: str) -> str:
        r"""What the local parameter ``local`` is: ``"weight"`` or ``"bias"`` (consumers never read names).

        Ganev's weights-first θ order (``theta_order="weights_first"``) puts every ``"bias"`` after
        every ``"weight"``; renderers write a bias as a vector and a weight as a matrix.  The default
        reads the name (:func:`default_param_role`): ``b``, ``b_Q``, ``b_hh`` and the block names
        ``b.1`` are biases, everything else (``W``, ``K``, ``W_Q``, ``W_ih``, ``gamma``, ``beta``) a
        weight.  A layer whose names say
        otherwise overrides it.
        """
        return default_param_role(local)

    def param_symbol(self, local: str) -> str | None:
        r"""The bare LaTeX letter of the local parameter ``local`` (no layer index), e.g.
        :math:`\boldsymbol\gamma`; the notation adds the layer index in its own style.

        Default: the layer's ``param_latex`` table when it has one (normalization layers), else
        None -- the notation's matrix letter for a weight, its vector letter for a bias
        (:func:`default_param_symbol` spells Greek names and subscripts: ``W_Q`` is
        :math:`\mathbf W_{Q}`, ``gamma`` :math:`\boldsymbol\gamma`).
        """
        table = getattr(self, "param_latex", None)
        base = local.partition(".")[0]
        if isinstance(table, dict) and isinstance(table.get(base), str):
            return table[base]
        return None

    # ------------------------------------------------------------------ helpers
    def describe(self) -> str:
        return self.kind

    def latex_name(self) -> str:
        return self.kind

    def _name(self) -> str:
        return self.label or self.kind

    def check_input(self, A: np.ndarray, batched: bool = True) -> np.ndarray:
        A = np.asarray(A)
        expect = self.in_shape
        got = A.shape[1:] if batched else A.shape
        if tuple(got) != tuple(expect):
            raise ShapeError(
                f"{self._name()}: expected input of shape {expect}"
                f"{' per sample' if batched else ''}, received {tuple(got)}"
            )
        return A

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


#: a parameter named ``bias`` is one too (LayerNorm's β keeps the role ``weight`` by default, as before:
#: a normalization layer that wants Ganev's weights-first order to put it last overrides ``param_role``)
_BIAS_NAMES = frozenset({"bias"})
_GREEK = frozenset({"alpha", "beta", "gamma", "delta", "epsilon", "eta", "theta", "kappa", "lambda", "mu", "nu",
                    "rho", "sigma", "tau", "phi", "psi", "omega"})


def default_param_role(local: str) -> str:
    r"""``"bias"`` or ``"weight"`` from a parameter's local name (the default of :meth:`Layer.param_role`).

    The name before the first dot (a residual block's ``b.1`` is its sub-layer's ``b``) is a bias when
    it is ``b``, starts with ``b_`` (``b_Q``, ``b_ih``, ``b_hh``) or is ``bias``; a weight otherwise.
    """
    base = str(local).partition(".")[0]
    return "bias" if (base == "b" or base.startswith("b_") or base in _BIAS_NAMES) else "weight"


def default_param_symbol(base: str, fmt: str) -> str:
    r"""LaTeX of a parameter letter from its name: ``fmt % letter`` with the part after ``_`` as a subscript.

    ``W`` gives ``fmt % "W"`` (:math:`\mathbf W`), ``W_Q`` gives :math:`\mathbf W_{Q}`, ``b_hh``
    :math:`\mathbf b_{hh}`; Greek names are bold symbols (``gamma``: :math:`\boldsymbol\gamma`).
    Names are identifiers (letters, digits, ``_``), so the result is plain LaTeX.
    """
    letter, _, subscript = str(base).partition("_")
    if not letter.replace("_", "").isalnum() or (subscript and not subscript.replace("_", "").isalnum()):
        from ..errors import SpecError

        raise SpecError(f"parameter name {base!r}: expected letters, digits and '_'")
    head = rf"\boldsymbol{{\{letter}}}" if letter in _GREEK else fmt % letter
    return f"{head}_{{{subscript}}}" if subscript else head
