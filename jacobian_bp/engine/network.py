r"""Networks, the forward cache, and Damadi's Algorithm 1 (corrected).

A :class:`Network` is a sequence of layers grouped into *stages*: each parametric
layer (Dense, Conv2d) opens stage ``l`` and produces :math:`\mathbf z^{[l]}`; the
parameter-free layers after it (activations, pooling, flatten) make
:math:`\mathbf a^{[l]} = \mathbf f^{[l]}(\mathbf z^{[l]})`.  The last stage's activation
:math:`\mathbf f^{[L]}` is kept apart and paired with the loss (Damadi Fig. 2).

Algorithm 1 as printed and as implemented
-----------------------------------------
The gradient is :math:`\nabla_\theta\ell = (\mathbf J_\theta\mathbf z^{[L]})^\top\nabla_{\mathbf z^{[L]}}\ell`
(Damadi eq. (1), Alg. 1 line 8), with, for every stage :math:`l`,

.. math::

   \mathbf J_{\mathbf W^{[l]},\mathbf b^{[l]}}\mathbf z^{[L]}
   = \underbrace{\mathbf J_{\mathbf a^{[L-1]}}\mathbf z^{[L]}\,\mathbf J_{\mathbf z^{[L-1]}}\mathbf a^{[L-1]}
     \cdots \mathbf J_{\mathbf a^{[l]}}\mathbf z^{[l+1]}\,\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}}_{\mathbf J_{\mathbf z^{[l]}}\mathbf z^{[L]}}
     \,\big[\mathbf I_{n_l}\otimes(\mathbf a^{[l-1]})^\top\ \ \mathbf I_{n_l}\big]

where for Damadi's Dense layers :math:`\mathbf J_{\mathbf a^{[k-1]}}\mathbf z^{[k]} = (\mathbf W^{[k]})^\top`
and :math:`\mathbf J_{\mathbf z^{[k]}}\mathbf a^{[k]} = \operatorname{diag} f'(\mathbf z^{[k]})`.
The printed algorithm differs in four places, each corrected here:

* **line 3, left-hand side**: :math:`\mathbf J_{\mathbf W^{[l]},\mathbf b^{[l]}}(\mathbf z^{[l]})` must be
  :math:`\mathbf J_{\mathbf W^{[l]},\mathbf b^{[l]}}(\mathbf z^{[L]})` -- the block of the
  *output* Jacobian, not of the layer's own pre-activation;
* **line 3, the chain**: it reads :math:`(\mathbf W^{[L]})^\top\mathbf J_{\mathbf W^{[L-1]},\mathbf b^{[L-1]}}(\mathbf f^{[L-1]}(\mathbf z^{[L-1]}))\cdots`;
  the factors between consecutive activations must be the activation Jacobians
  :math:`\mathbf J_{\mathbf z^{[k]}}\mathbf f^{[k]}` interleaved with *every* weight
  :math:`(\mathbf W^{[k]})^\top`, :math:`k = L, \dots, l+1` (the printed line keeps only
  :math:`\mathbf W^{[L]}`);
* **lines 3 and 4, the Kronecker block**: :math:`(\mathbf a^{[l]})^\top` and :math:`(\mathbf a^{[L]})^\top`
  must be :math:`(\mathbf a^{[l-1]})^\top` and :math:`(\mathbf a^{[L-1]})^\top` -- the *input* of layer
  :math:`l` (with :math:`\mathbf a^{[0]} = \mathbf x`), as in the paper's own §3.1/§3.2 examples;
* **line 7**: the last block :math:`\mathbf J_{\mathbf W^{[1]},\mathbf b^{[1]}}(\mathbf z^{[2]}(\theta))`
  must be :math:`\mathbf J_{\mathbf W^{[1]},\mathbf b^{[1]}}(\mathbf z^{[L]}(\theta))`.

The products are formed from the left (reverse mode): :math:`\mathbf P_L = \mathbf I`,
:math:`\mathbf P_{k-1} = \mathbf P_k\,\mathbf J_{\mathbf a^{[k-1]}}\mathbf z^{[k]}\,\mathbf J_{\mathbf z^{[k-1]}}\mathbf a^{[k-1]}`,
each an ``n_L × n_{k-1}`` matrix, and the block is kept as the structured product
:math:`\mathbf P_l(\mathbf I\otimes\mathbf a^\top) = \mathbf P_l\otimes\mathbf a^\top`.
In :meth:`Network.jacobian_theta` each :math:`\mathbf P_l` is a
:class:`~jacobian_bp.engine.chain.LeftChain`: the chain of layer Jacobians itself, shared by the
blocks of stage :math:`l` and linked to :math:`\mathbf P_{l+1}`, multiplied out once, the
first time a block is materialized or applied.

A layer that couples the samples (``couples_samples``: batch normalization in training mode) makes
``couples_samples`` true for the network: the chain gradient and the batch Jacobians then run Algorithm 1
on the batch as one vector (:mod:`jacobian_bp.engine.coupled`), and the per-sample routes refuse in one line.
"""
from __future__ import annotations
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .algorithm1 import Algorithm1
from .conventions import Convention, get_convention, reduction_factor
from ..errors import DataError, ShapeError, SpecError, UnsupportedInputError
from .coupled import batch_chain_gradient, batch_left_products, batch_theta_matrix, couples, per_sample_error
from .jacobian import BatchJacobian, Jacobian, Space, display_latex
from ..backend.operators import Dense as DenseOp, HStack
from ..backend.kernels import all_finite
from .params import ParamEntry, ThetaLayout, ValidatedParams, check_seed, real_array
from ..layers.base import Layer
from ..layers.losses import Loss, make_loss

_INTEGER_CODES = frozenset(np.typecodes["AllInteger"])  # integer class labels (a dtype test without issubdtype)

__all__ = ["Network", "Stage", "ParamEntry", "Cache", "Gradient", "ValidatedParams"]

# former private names of the helpers that moved to jacobian_bp.engine.params
_real_array = real_array
_check_seed = check_seed


@dataclass
class Stage:
    """Stage ``l``: a parametric layer and the parameter-free layers after it."""

    index: int
    layer: Layer
    post: list[Layer] = field(default_factory=list)



@dataclass
class Cache:
    """Forward cache, batch-first: ``z[l]`` (``z[0]`` is None), ``a[l]`` (``a[0]`` = x, or the output of
    the parameter-free layers before stage 1) and ``post[l]`` the inputs of each post layer of stage
    ``l`` followed by ``a[l]``; ``params[l]`` the parameters stage ``l`` was run with (``params[0]`` is
    empty); ``pre`` the inputs of the parameter-free first layers (``pre[0]`` = x; empty without them)."""

    z: list
    a: list
    post: list
    params: list = field(default_factory=list)  # params[l]: stage l's canonical parameters, by local name
    pre: list = field(default_factory=list)

    @property
    def output(self) -> np.ndarray:
        return self.a[-1]

    @property
    def x(self) -> np.ndarray:
        """The network input, batch-first."""
        return self.pre[0] if self.pre else self.a[0]


_OVERFLOW_HINT = ("the loss or an activation overflowed or saturated -- scale the inputs/parameters down, or "
                  "pair the last activation with its matching loss (softmax + cross_entropy, sigmoid + bce)")


class Gradient:
    """A gradient under a convention: ``vector`` (θ order) and named ``params`` (user layout)."""

    def __init__(self, network: "Network", canonical: dict[str, np.ndarray], *, vector: np.ndarray | None = None):
        # ``vector``: θ already packed, with ``canonical`` holding views of it (written in place by
        # the operator-mode sweep, which saves allocating and copying a second |θ| array)
        self.network = network
        self.canonical = canonical
        self.params = network.user_params(canonical)
        self.vector = network.pack_canonical(canonical) if vector is None else vector

    def __getitem__(self, name: str) -> np.ndarray:
        return self.params[name]

    def keys(self):
        return self.params.keys()

    def as_row(self) -> np.ndarray:
        """The gradient as a row vector ``1 × |θ|`` (MML's convention)."""
        return self.vector[None, :]

    def __repr__(self) -> str:
        return f"Gradient({', '.join(f'{k}: {v.shape}' for k, v in self.params.items())}; |θ|={self.vector.size})"

    def _repr_latex_(self) -> "str | None":
        return display_latex(self)


class Network(ThetaLayout, Algorithm1):
    r"""A feed-forward network with a loss, under a :class:`~jacobian_bp.engine.conventions.Convention`.

    Parameters
    ----------
    layers : sequence of Layer
        The first must be parametric (Dense or Conv2d).
    loss : Loss or str
        ``"cross_entropy"``, ``"bce"``, ``"mse"`` or a :class:`~jacobian_bp.layers.losses.Loss`.
        An MSE loss built from a string takes the convention's scale.
    input_shape : int or tuple of int
        Shape of one sample (``4`` or ``(1, 28, 28)``).
    convention : str or Convention
        A preset name (``damadi``, ``ganev``, ``park``, ``mml``, ``pytorch``) or a Convention.
    name : str
        Used in reports and LaTeX.

    Notes
    -----
    Parameters passed to and returned from every public method are in the
    convention's layout (Damadi's ``W[l]`` is ``n_{l-1} × n_l``), keyed ``W1, b1, W2, …``.
    """

    def __init__(self, layers: Sequence[Layer], loss: "Loss | str", input_shape, convention="pytorch", name: str = ""):
        self.convention: Convention = get_convention(convention)
        self.name = name or "network"
        if isinstance(input_shape, (int, np.integer)):
            input_shape = (input_shape,)
        if not isinstance(input_shape, (tuple, list)):
            raise SpecError(f"network {self.name!r}: input_shape must be a positive integer or a tuple of them, "
                            f"received {input_shape!r}")
        input_shape = tuple(input_shape)
        if not input_shape or any(not isinstance(s, (int, np.integer)) or isinstance(s, (bool, np.bool_)) or s < 1
                                  for s in input_shape):
            raise SpecError(f"network {self.name!r}: input_shape must be positive integers, received {input_shape!r}")
        self.input_shape = tuple(int(s) for s in input_shape)
        layers = list(layers)
        if not layers:
            raise SpecError(f"network {self.name!r}: needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise SpecError(f"network {self.name!r}: item {i} is not a Layer but {type(layer).__name__}")
        # each network builds its own copies: build() fixes shapes, labels and convention-dependent
        # defaults (ReLU's at_zero) on the layer, which must not leak into another network
        layers = [copy.copy(layer) for layer in layers]
        if not any(layer.parametric for layer in layers):
            raise SpecError(
                f"network {self.name!r}: needs a parametric layer (dense, conv2d, a residual block with one): "
                f"the first layer must be parametric or be followed by one, received only "
                f"{', '.join(repr(layer.kind) for layer in layers)}"
            )
        self.layers = layers
        nested = [p for c in self._composite_layers(layers) for p in getattr(c, "body", []) if couples(p)]
        if nested:
            raise UnsupportedInputError(f"network {self.name!r}: a {nested[0].kind} layer (its batch statistics couple the "
                                        "samples) inside a composite block is not supported; put it between the blocks")
        #: a layer couples the samples (batch norm in training mode): per-sample routes refuse, batch ones go batch-level
        self.couples_samples = any(couples(layer) for layer in layers)
        # parameter-free layers before the first parametric one: a[0] = f[0](x) (a[0] = x without them)
        self.pre: list[Layer] = []
        self.stages: list[Stage] = []
        shape = self.input_shape
        for layer in layers:
            if layer.parametric:
                self.stages.append(Stage(len(self.stages) + 1, layer))
                layer.label = f"layer {len(self.stages)} ({layer.kind})"
            elif not self.stages:
                self.pre.append(layer)
                layer.label = f"layer 0 ({layer.kind}, before the first parametric layer)"
            else:
                self.stages[-1].post.append(layer)
                layer.label = f"layer {len(self.stages)} activation ({layer.kind})"
            shape = layer.build(shape, self.convention)
        self.output_shape = tuple(shape)
        if isinstance(loss, str):
            kw = {}
            if loss == "mse":
                kw = {"scale": self.convention.mse_scale, "reduce_outputs": self.convention.mse_reduce_outputs}
            loss = make_loss(loss, **kw)
        if not isinstance(loss, Loss):
            raise SpecError(f"network {self.name!r}: loss must be a Loss or a loss name, received {type(loss).__name__}")
        bind = getattr(loss, "bind_convention", None)
        if callable(bind):  # a loss object's unstated knobs follow the convention (jb.MSE() under "pytorch")
            loss = bind(self.convention)
        self.loss = loss
        if len(self.output_shape) != 1:
            raise ShapeError(
                f"network {self.name!r}: the last layer must output a flat vector for the loss, "
                f"received shape {self.output_shape}; add a flatten layer"
            )
        self._build_entries()

    # ------------------------------------------------------------------ structure
    @property
    def L(self) -> int:
        """Number of stages (Damadi's L)."""
        return len(self.stages)

    @property
    def widths(self) -> list[tuple[int, ...]]:
        """Shapes of z[1], …, z[L]."""
        return [s.layer.out_shape for s in self.stages]

    @property
    def n_out(self) -> int:
        return self.stages[-1].layer.out_size

    @property
    def matched(self) -> bool:
        """True when f^{[L]} + loss is a canonical pair of Damadi Table 1 (delta in closed form)."""
        post = self.stages[-1].post
        if not post:
            return self.loss.matched_activation == "identity"
        return len(post) == 1 and self.loss.matches(post[0])

    def _check_stage(self, l, where: str, allow_zero: bool = False) -> int:
        """``l`` as a stage index in ``1..L`` (``0..L`` with ``allow_zero``), else :class:`DataError`."""
        lo = 0 if allow_zero else 1
        if isinstance(l, (bool, np.bool_)) or not isinstance(l, (int, np.integer)) or not (lo <= l <= self.L):
            raise DataError(f"{where}: l must be an integer in {lo}..{self.L} (the stages of network "
                            f"{self.name!r}), received {l!r}")
        return int(l)

    def _check_finite(self, values: np.ndarray, what: str, hint: str = "") -> None:
        """Refuse a non-finite numeric result (NaN/Inf) with :class:`DataError` naming ``what``."""
        a = np.asarray(values)
        if a.dtype != object and not all_finite(a):
            kind = "NaN" if np.any(np.isnan(a)) else "Inf"
            raise DataError(f"network {self.name!r}: the {what} is not finite ({kind}); {hint or _OVERFLOW_HINT}")

    def z_space(self, l: int) -> Space:
        s = self.stages[l - 1].layer
        return Space(f"z[{l}]", s.out_shape, rf"\mathbf{{z}}^{{[{l}]}}")

    def input_space(self) -> Space:
        """The space of one input sample :math:`\\mathbf x`."""
        return Space("x", self.input_shape, r"\mathbf{x}")

    def a_space(self, l: int) -> Space:
        if l == 0:  # a[0] = x, or f[0](x) after parameter-free first layers
            if not self.pre:
                return self.input_space()
            return Space("a[0]", self.pre[-1].out_shape, r"\mathbf{a}^{[0]}")
        st = self.stages[l - 1]
        shape = st.post[-1].out_shape if st.post else st.layer.out_shape
        return Space(f"a[{l}]", shape, rf"\mathbf{{a}}^{{[{l}]}}")


    @property
    def composite(self) -> bool:
        """Whether the network goes beyond Damadi's stages: parameter-free first layers or a composite
        stage (a residual block)."""
        return bool(self.pre) or any(getattr(st.layer, "composite", False) for st in self.stages)

    def require_renderable(self, what: str) -> None:
        """Refuse symbolic/LaTeX rendering of a network the renderers cannot draw (one-line error).

        Plain stages, parameter-free first layers and residual blocks are drawn; a composite layer
        is drawn when its class says so (``renders_symbolically = True``, with the LaTeX/SymPy facts of
        :mod:`jacobian_bp.layers.residual`), so a future composite without them is refused here.

        Raises
        ------
        UnsupportedInputError
            ``"<what>: <kind> blocks are not rendered symbolically yet (network ...)"``.
        """
        if self.couples_samples:  # the derivation renders one sample's chain, which does not exist here
            raise per_sample_error(self, what)
        for layer in self._composite_layers(self.layers):
            if not getattr(layer, "renders_symbolically", False):
                raise UnsupportedInputError(f"{what}: {layer.kind} blocks are not rendered symbolically yet "
                                            f"(network {self.name!r})")

    @staticmethod
    def _composite_layers(layers) -> list:
        """Every composite layer among ``layers``, nested bodies included."""
        out = []
        for layer in layers:
            if getattr(layer, "composite", False):
                out.append(layer)
                out += Network._composite_layers(getattr(layer, "body", []))
        return out

    def describe(self) -> str:
        parts = [f"input {self.input_shape}"] + [l.describe() for l in self.layers] + [f"loss {self.loss.kind}"]
        return " -> ".join(parts) + f"  [{self.convention.name}; |θ| = {self.n_params}]"

    def __repr__(self) -> str:
        return f"Network({self.describe()})"

    # ------------------------------------------------------------------ data
    def as_batch(self, X, Y=None, what: str = "input"):
        """Return batch-first arrays ``(Xb, Yb, single)`` from the convention's layout."""
        X = _real_array(X, f"network {self.name!r}: {what}")
        k = len(self.input_shape)
        if X.ndim == k:
            single = True
            if X.shape != self.input_shape:
                raise ShapeError(f"{self.layers[0].label}: expected input of shape {self.input_shape}, received {X.shape}")
            Xb = X[None]
        elif X.ndim == k + 1:
            single = False
            Xb = X if self.convention.batch_axis == "first" else np.moveaxis(X, -1, 0)
            if Xb.shape[1:] != self.input_shape:
                lay = "(N, *shape)" if self.convention.batch_axis == "first" else "(*shape, N)"
                raise ShapeError(
                    f"{self.layers[0].label}: expected a batch of inputs of shape {self.input_shape} laid out "
                    f"{lay} (batch axis {self.convention.batch_axis}), received {X.shape}"
                )
        else:
            raise ShapeError(
                f"{self.layers[0].label}: expected input of shape {self.input_shape} or a batch of them, received {X.shape}"
            )
        if Xb.shape[0] == 0:
            raise DataError(f"network {self.name!r}: empty batch (N = 0)")
        if Xb.dtype != object and not all_finite(Xb):
            raise DataError(f"network {self.name!r}: input contains NaN or Inf")
        if Y is None:
            return Xb, None, single
        Yarr = np.asarray(Y) if not isinstance(Y, np.ndarray) else Y
        if Yarr.dtype.char in _INTEGER_CODES and Yarr.ndim == (0 if single else 1) and self.loss.as_targets(Yarr, self.n_out, not single) is not Yarr:
            # integer class labels (cross entropy, torch-style): one-hot rows, batch-first whatever the convention
            Yb = np.asarray(self.loss.as_targets(Yarr, self.n_out, not single), dtype=float)
            Yb = Yb[None] if single else Yb
            if Yb.shape != (Xb.shape[0],) + self.output_shape:
                raise ShapeError(f"{self.loss.kind} loss: expected {Xb.shape[0]} class labels, received {Yarr.shape[0]}")
            return Xb, Yb, single
        Y = _real_array(Y, f"network {self.name!r}: targets")
        if single:
            if Y.shape != self.output_shape:
                raise ShapeError(f"{self.loss.kind} loss: expected a target of shape {self.output_shape}, received {Y.shape}")
            Yb = Y[None]
        else:
            if Y.ndim != 2:
                raise ShapeError(f"{self.loss.kind} loss: expected a batch of targets, received shape {Y.shape}")
            Yb = Y if self.convention.batch_axis == "first" else Y.T
        if Yb.shape != (Xb.shape[0],) + self.output_shape:
            raise ShapeError(
                f"{self.loss.kind} loss: expected targets of shape {(Xb.shape[0],) + self.output_shape} (batch-first), "
                f"received {Yb.shape}"
            )
        if Yb.dtype != object:
            self.loss.check_targets(Yb, Yb.shape)
        return Xb, Yb, single

    # ------------------------------------------------------------------ forward
    def forward_cache(self, Xb: np.ndarray, canon: dict, need_output: bool = True) -> Cache:
        """Forward pass over a batch-first array.  With ``need_output=False`` the post layers of
        the last stage are skipped and ``a[L]`` is None (J_θ z[L] and J_x z[L] never read it)."""
        pre: list = []
        cur = Xb
        for layer in self.pre:  # a[0] = f[0](x): the parameter-free layers before stage 1
            pre.append(cur)
            cur = layer.forward(cur, {})
        z: list = [None]
        a: list = [cur]
        post: list = [[]]
        params: list = [{}] + [self.stage_params(canon, st.index) for st in self.stages]
        last = self.stages[-1]
        for st in self.stages:
            cur = st.layer.forward(cur, params[st.index])
            z.append(cur)
            ins = []
            if st is last and not need_output:
                post.append(ins)
                a.append(None)
                break
            for layer in st.post:
                ins.append(cur)
                cur = layer.forward(cur, {})
            post.append(ins)
            a.append(cur)
        return Cache(z, a, post, params, pre)

    def forward(self, X, params) -> Cache:
        """Forward pass; returns the batch-first :class:`Cache` of z[l] and a[l]."""
        Xb, _, _ = self.as_batch(X)
        return self.forward_cache(Xb, self.canonical_params(params))

    def predict(self, X, params) -> np.ndarray:
        Xb, _, single = self.as_batch(X)
        out = self.forward_cache(Xb, self.canonical_params(params)).output
        return out[0] if single else (out if self.convention.batch_axis == "first" else out.T)

    def per_sample_loss(self, cache: Cache, Yb) -> np.ndarray:
        if self.matched:
            return self.loss.value_from_logits(Yb, cache.z[-1])
        return self.loss.value(Yb, cache.a[-1])

    def reduce_factor(self, N: int) -> float:
        """:math:`r` in the batch loss :math:`r\\sum_i\\ell_i` (:func:`~jacobian_bp.engine.conventions.reduction_factor`)."""
        return reduction_factor(self.convention, self.loss, N, self.n_out)

    def loss_value(self, X, Y, params) -> float:
        """The (reduced) loss: sum or mean over the batch of per-sample losses."""
        Xb, Yb, _ = self.as_batch(X, Y)
        cache = self.forward_cache(Xb, self.canonical_params(params))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            value = np.sum(self.per_sample_loss(cache, Yb)) * self.reduce_factor(Xb.shape[0])
        if np.asarray(value).dtype != object:  # symbolic entries: as before, float() of the expression
            self._check_finite(value, "loss")
        return float(value)

    def post_steps(self, cache: Cache, l: int) -> list[tuple[Layer, np.ndarray, np.ndarray]]:
        r"""The parameter-free layers of stage ``l`` as ``(layer, input, output)`` from a[l] back to z[l]
        (reverse order): the factors of :math:`\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}` read right to left."""
        ins = cache.post[l]
        outs = ins[1:] + [cache.a[l]]
        return list(reversed(list(zip(self.stages[l - 1].post, ins, outs))))

    def torch_forward(self, A, tensors: dict):
        """The network's torch twin, for the autograd oracle: ``(z[L], a[L])`` of a float64 batch ``A``.

        ``tensors`` holds torch tensors keyed by the network's parameter names, canonical layout; every
        layer runs its own ``torch_forward`` (the parameter-free first layers, the stages, their
        activations), so a residual block runs its body.  Raises ``NotImplementedError`` naming a
        layer without a twin.
        """
        for layer in self.pre:
            A = layer.torch_forward(A, {})
        Z = None
        for st in self.stages:
            Z = st.layer.torch_forward(A, {local: tensors[name] for local, name in self._stage_names[st.index]})
            A = Z
            for layer in st.post:
                A = layer.torch_forward(A, {})
        return Z, A

    def pre_steps(self, cache: Cache) -> list[tuple[Layer, np.ndarray, np.ndarray]]:
        r"""The parameter-free layers before stage 1 as ``(layer, input, output)`` from a[0] back to x
        (reverse order): the factors of :math:`\mathbf J_{\mathbf x}\mathbf a^{[0]}` read right to left."""
        outs = cache.pre[1:] + [cache.a[0]]
        return list(reversed(list(zip(self.pre, cache.pre, outs))))

    def post_vjp(self, cache: Cache, l: int, G: np.ndarray) -> np.ndarray:
        r""":math:`(\mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]})^\top` applied to each row of ``G`` (``(N, size a[l])`` → ``(N, size z[l])``)."""
        for layer, A, O in self.post_steps(cache, l):
            G = layer.vjp_input(A, O, G.reshape(O.shape[0], -1), {})
        return G.reshape(G.shape[0], -1)

    def delta_from_cache(self, cache: Cache, Yb) -> np.ndarray:
        r"""Per-sample :math:`\nabla_{\mathbf z^{[L]}}\ell` (unreduced), ``(N, n_L)``.

        Closed form for a matched pair (Damadi Table 1); otherwise
        :math:`(\mathbf J_{\mathbf z^{[L]}}\mathbf f^{[L]})^\top\nabla_{\hat{\mathbf y}}\ell`.
        """
        if self.matched:
            return self.loss.delta(Yb, cache.z[-1])
        return self.post_vjp(cache, self.L, self.loss.grad_yhat(Yb, cache.a[-1]))

    def delta(self, X, Y, params) -> np.ndarray:
        """:math:`\\nabla_{\\mathbf z^{[L]}}\\ell` per sample, batch-first ``(N, n_L)`` (single sample: ``(n_L,)``)."""
        Xb, Yb, single = self.as_batch(X, Y)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            d = self.delta_from_cache(self.forward_cache(Xb, self.canonical_params(params)), Yb)
        self._check_finite(d, "gradient of the loss with respect to z[L] (delta)")
        return d[0] if single else d

    # ------------------------------------------------------------------ gradients
    def gradient(self, X, Y, params, method: str = "chain") -> Gradient:
        r""":math:`\nabla_\theta\ell` under the convention (Damadi Alg. 1 line 8), summed or averaged over the batch.

        Parameters
        ----------
        method : {"chain", "operator"}
            ``chain``: per sample, :math:`(\mathbf J_\theta\mathbf z^{[L]})^\top\nabla_{\mathbf z^{[L]}}\ell` with
            the structured :math:`\mathbf J_\theta\mathbf z^{[L]}` of :meth:`jacobian_theta`;
            ``operator``: the same transposed chain applied right to left as one batched
            vector-Jacobian sweep (the cost of backprop).
        """
        if method not in ("chain", "operator"):
            raise DataError(f"gradient: method must be 'chain' or 'operator', received {method!r}")
        Xb, Yb, _ = self.as_batch(X, Y)
        canon = self.canonical_params(params)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            # a matched pair's delta reads z[L] only: operator mode then skips the last activation (a[L])
            cache = self.forward_cache(Xb, canon, need_output=not (method == "operator" and self.matched))
            D = self.delta_from_cache(cache, Yb)
            r = self.reduce_factor(Xb.shape[0])
            if r != 1.0 or D.dtype == object:  # a sum (r = 1) keeps D as it is: the same numbers, no copy
                D = D * r
        self._check_finite(D, "gradient of the loss with respect to z[L] (delta)")
        g = self._gradient(Xb, canon, cache, D, method)
        if not getattr(g.canonical, "proved_finite", False):  # the sweep's bound proves it (engine/sweeps.py)
            self._check_finite(g.vector, "gradient ∇θℓ")
        return g

    def _gradient(self, Xb: np.ndarray, canon: dict, cache: Cache, D: np.ndarray, method: str) -> Gradient:
        symbolic = D.dtype == object or self._is_symbolic(Xb, canon)
        if method == "chain" and self.couples_samples:  # Algorithm 1 for the batch as one vector (engine/coupled.py)
            if symbolic:
                raise UnsupportedInputError(f"gradient: method 'chain' is numeric only when the samples are coupled "
                                            f"(network {self.name!r}); use method='operator' for SymPy entries")
            return Gradient(self, batch_chain_gradient(self, cache, D))
        if method == "chain" and not symbolic:
            # Alg. 1 for the whole batch at once: the explicit chain P_l = J_{z[l]} z[L] (one n_L x n_l
            # matrix per sample), then the transposed local block (J_{θ_l} z[l])^T (e.g. (I ⊗ a^T)^T g = g ⊗ a)
            # Each block is copied into its place in one θ vector as soon as it is made (as operator mode
            # does): holding every block and then packing θ kept two 2 MB buffers alive for LeNet-300-100,
            # which glibc returned to the OS on every call (555 vs 9 minor page faults per call, 4x slower).
            from .sweeps import theta_view

            P = self.left_products(cache, canon)
            theta = np.empty(self.n_params)
            views = {e.name: theta_view(theta[e.slice], (), e) for e in self.entries}
            for st in self.stages:
                l = st.index
                Gl = D if l == self.L else np.einsum("nk,nkj->nj", D, P[l])
                for k, v in st.layer.vjp_params(cache.a[l - 1], cache.z[l], Gl, cache.params[l]).items():
                    views[self.param_name(l, k)][...] = np.asarray(v).reshape(st.layer.param_shapes()[k])
                    del v
            return Gradient(self, views, vector=theta)
        elif method == "chain":
            total = {e.name: 0.0 for e in self.entries}
            for i in range(Xb.shape[0]):
                blocks = self._param_blocks(cache, i, True)
                for e in self.entries:
                    total[e.name] = total[e.name] + blocks[e.name].rmatvec(D[i])
            canon_grad = {e.name: np.asarray(total[e.name]).reshape(e.canonical_shape, order=e.order) for e in self.entries}
        elif method == "operator":
            if (D.dtype != object
                    and all(np.asarray(v).dtype != object for v in canon.values())):
                theta = np.empty(self.n_params)
                return Gradient(self, self.reverse_sweep(cache, canon, D, out=theta), vector=theta)
            canon_grad = self.reverse_sweep(cache, canon, D)
        else:  # pragma: no cover - checked by gradient()
            raise DataError(f"gradient: method must be 'chain' or 'operator', received {method!r}")
        return Gradient(self, canon_grad)

    # ------------------------------------------------------------------ the sweeps (operator mode)
    def reverse_sweep(self, cache: Cache, canon: dict, D: np.ndarray, out: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The batched reverse sweep :math:`\\sum_i (\\mathbf J_\\theta\\mathbf z_i^{[L]})^\\top\\mathbf d_i`
        (:func:`jacobian_bp.engine.sweeps.vjp_sweep`), keyed by the network's parameter names (canonical layout)."""
        from .sweeps import vjp_sweep

        return vjp_sweep(self, cache, canon, D, out=out)

    def forward_sweep(self, cache: Cache, canon: dict, tangent: dict[str, np.ndarray]) -> np.ndarray:
        """The batched forward sweep :math:`\\mathbf J_\\theta\\mathbf z_i^{[L]}\\mathbf v` of every sample, ``(N, n_L)``
        (:func:`jacobian_bp.engine.sweeps.jvp`), for a tangent keyed by the network's parameter names."""
        from .sweeps import jvp

        return jvp(self, cache, canon, tangent)

    def _vjp_sweep(self, cache: Cache, canon: dict, D: np.ndarray) -> dict[str, np.ndarray]:
        """Former name of :meth:`reverse_sweep`."""
        return self.reverse_sweep(cache, canon, D)

    # the engine methods other modules call are public; their former private names stay as aliases
    _forward = forward_cache
    _stage_params = ThetaLayout.stage_params
    _reduce_factor = reduce_factor
    _per_sample_loss = per_sample_loss
    _left_products = Algorithm1.left_products
    _delta = delta_from_cache

    def per_sample_gradients(self, X, Y, params) -> np.ndarray:
        r"""Per-sample gradients :math:`(\mathbf J_\theta\mathbf z_i^{[L]})^\top\nabla_{\mathbf z_i^{[L]}}\ell_i`, ``(N, |θ|)``
        (unreduced: each row is the gradient of that sample's own loss); vectorized over the
        samples by :func:`jacobian_bp.engine.per_sample.per_sample_gradients`."""
        from .per_sample import per_sample_gradients

        return per_sample_gradients(self, X, Y, params)

    # ------------------------------------------------------------------ coupled samples (engine/coupled.py)
    def require_per_sample(self, what: str) -> None:
        """Refuse a per-sample route (one line, :class:`UnsupportedInputError`) when a layer couples the samples."""
        if self.couples_samples:
            raise per_sample_error(self, what)

    def jacobian_theta(self, x, params) -> Jacobian:
        if self.couples_samples:
            raise per_sample_error(self, "jacobian_theta (one sample)")
        return Algorithm1.jacobian_theta(self, x, params)

    def jacobian_input(self, x, params) -> Jacobian:
        if self.couples_samples:
            raise per_sample_error(self, "jacobian_input (one sample)")
        return Algorithm1.jacobian_input(self, x, params)

    def layer_jacobian(self, x, params, l: int) -> Jacobian:
        if self.couples_samples:
            raise per_sample_error(self, "layer_jacobian (one sample)")
        return Algorithm1.layer_jacobian(self, x, params, l)

    def chain_factors(self, x, params, l: int) -> list[Jacobian]:
        if self.couples_samples:
            raise per_sample_error(self, "chain_factors (one sample)")
        return Algorithm1.chain_factors(self, x, params, l)

    def local_jacobian(self, x, params, l: int) -> Jacobian:
        if self.couples_samples:
            raise per_sample_error(self, "local_jacobian (one sample)")
        return Algorithm1.local_jacobian(self, x, params, l)

    def left_products(self, cache: Cache, canon: dict, need_input: bool = False) -> list:
        if self.couples_samples:
            raise per_sample_error(self, "left_products (per-sample n_L x n_l factors; batch_left_products has the batch ones)")
        return Algorithm1.left_products(self, cache, canon, need_input)

    def activation_jacobian_batch(self, X, params, l: int) -> Jacobian:
        if self.couples_samples and any(couples(p) for p in self.stages[self._check_stage(l, "activation_jacobian_batch") - 1].post):
            raise per_sample_error(self, f"activation_jacobian_batch (Ganev's block-diagonal Phi of stage {l})")
        return Algorithm1.activation_jacobian_batch(self, X, params, l)

    def batch_left_products(self, X, params, need_input: bool = False) -> list:
        r"""The batch-level left products :math:`\mathbf J_{\operatorname{vec}\mathbf Z^{[l]}}\operatorname{vec}\mathbf Z^{[L]}`, ``(N·n_L, N·n_l)`` (any network)."""
        Xb, _, _ = self.as_batch(X)
        return batch_left_products(self, self.forward_cache(Xb, self.canonical_params(params)), need_input)

    def _batch_spaces(self, N: int, inputs: bool) -> tuple[Space, Space]:
        L = self.L
        out = Space.concat([Space(f"z[{L}]_{i + 1}", (self.n_out,), rf"\mathbf{{z}}^{{[{L}]}}_{{{i + 1}}}") for i in range(N)],
                           f"Z[{L}]", rf"\mathbf{{Z}}^{{[{L}]}}")
        if not inputs:
            return out, self.theta_space
        return out, Space.concat([Space(f"x_{i + 1}", self.input_shape) for i in range(N)], "X", r"\mathbf{X}")

    def batch_jacobian_theta(self, X, params) -> BatchJacobian:
        r""":math:`\mathbf J_\theta\operatorname{vec}\mathbf Z^{[L]}` of a batch, ``(N·n_L) × |θ|``, rows sample-major.

        Per-sample Jacobians stacked for a network that maps samples on their own; with a coupling layer
        (batch norm in training mode) row block ``i`` is :math:`\mathbf J_\theta\mathbf z_i^{[L]}` of the whole batch
        (:func:`jacobian_bp.engine.coupled.batch_theta_matrix`).  ``.block(i)`` is sample ``i``'s rows.
        """
        if not self.couples_samples:
            J = Algorithm1.batch_jacobian_theta(self, X, params)
            return BatchJacobian(J.op, J.output, J.input, n_samples=len(J.blocks), out_size=self.n_out, in_size=None,
                                 couples_samples=False, symbol=J.symbol, blocks=J.blocks)
        Xb, _, _ = self.as_batch(X)
        M = batch_theta_matrix(self, self.forward_cache(Xb, self.canonical_params(params), need_output=False))
        out, inp = self._batch_spaces(Xb.shape[0], False)
        blocks = [Jacobian(DenseOp(M[:, e.slice]), out, e.space) for e in self.entries]
        return BatchJacobian(HStack([b.op for b in blocks]), out, inp, n_samples=Xb.shape[0], out_size=self.n_out,
                             in_size=None, couples_samples=True, blocks=blocks)

    def batch_jacobian_input(self, X, params) -> BatchJacobian:
        r""":math:`\mathbf J_{\operatorname{vec}\mathbf X}\operatorname{vec}\mathbf Z^{[L]}`, ``(N·n_L) × (N·n_0)``, rows and columns sample-major.

        Block-diagonal :math:`\sum_i\mathbf E_{ii}\otimes\mathbf J_{\mathbf x_i}\mathbf z_i^{[L]}` for a network that maps
        samples on their own; dense off-diagonal blocks :math:`\mathbf J_{\mathbf x_k}\mathbf z_i^{[L]}` with a coupling layer.
        ``.block(i, k)`` is one block, ``.block_norms()`` their norms.
        """
        if not self.couples_samples:
            J = Algorithm1.batch_jacobian_input(self, X, params)
            return BatchJacobian(J.op, J.output, J.input, n_samples=len(J.blocks), out_size=self.n_out,
                                 in_size=int(np.prod(self.input_shape)), couples_samples=False, symbol=J.symbol, blocks=J.blocks)
        Xb, _, _ = self.as_batch(X)
        P = batch_left_products(self, self.forward_cache(Xb, self.canonical_params(params)), need_input=True)
        out, inp = self._batch_spaces(Xb.shape[0], True)
        return BatchJacobian(DenseOp(P[0]), out, inp, n_samples=Xb.shape[0], out_size=self.n_out,
                             in_size=int(np.prod(self.input_shape)), couples_samples=True)
