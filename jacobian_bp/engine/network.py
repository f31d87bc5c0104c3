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
"""
from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass, field
from math import prod
from typing import Sequence

import numpy as np
import sympy

from .conventions import Convention, get_convention
from ..errors import DataError, ShapeError, SpecError, UnknownNameError
from .jacobian import Jacobian, Space, block_diag, display_latex, hstack, vstack
from ..layers.base import Layer
from ..layers.losses import Loss, make_loss
from ..backend.operators import Dense as DenseOp, Identity, Product

__all__ = ["Network", "Stage", "ParamEntry", "Cache", "Gradient"]


def _real_array(v, what: str) -> np.ndarray:
    """``v`` as a float64 array, or a NumPy object array of SymPy expressions/real numbers (symbolic use).

    Refused with :class:`DataError` (never silently converted): booleans (they would become 0/1),
    complex numbers (the imaginary part would be dropped), strings (never parsed), ``None``,
    ragged nestings, and object arrays holding anything but SymPy expressions and real numbers.
    """
    if isinstance(v, np.ndarray) and v.dtype == object:
        for t in v.flat:
            if isinstance(t, (bool, np.bool_)) or not isinstance(t, (sympy.Basic, numbers.Real)):
                raise DataError(f"{what}: an object array must hold SymPy expressions or real numbers, found "
                                f"{type(t).__name__} {str(t)[:40]!r} (strings are never parsed)")
        return v
    if v is None:
        raise DataError(f"{what}: expected an array of real numbers, received None")
    try:
        a = np.asarray(v)
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise DataError(f"{what}: not an array of real numbers ({' '.join(str(exc).split())[:120]})") from None
    kind = a.dtype.kind
    if kind == "b":
        raise DataError(f"{what}: expected real numbers, received a boolean array (convert it explicitly, e.g. .astype(float))")
    if kind == "c":
        raise DataError(f"{what}: expected real numbers, received a complex array (dtype {a.dtype}); "
                        "the imaginary part would be lost")
    if kind in "iuf":
        return a.astype(np.float64, copy=False)
    if kind == "O":  # a list holding SymPy numbers, Fractions, … : accepted only if every entry is a real number
        if all(isinstance(t, numbers.Real) and not isinstance(t, (bool, np.bool_)) for t in a.flat):
            try:
                return a.astype(np.float64)
            except (TypeError, ValueError):
                pass
        raise DataError(f"{what}: expected real numbers; pass symbolic entries as a NumPy object array")
    raise DataError(f"{what}: expected real numbers, received an array of dtype {a.dtype} (strings are never parsed)")


def _check_seed(seed, what: str) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"{what}: seed must be an integer >= 0, received {seed!r}")
    return int(seed)


@dataclass
class Stage:
    """Stage ``l``: a parametric layer and the parameter-free layers after it."""

    index: int
    layer: Layer
    post: list[Layer] = field(default_factory=list)


@dataclass(frozen=True)
class ParamEntry:
    """Where one parameter tensor sits in θ under the network's convention."""

    name: str  # global name: "W1", "b2", "K1"
    stage: int
    local: str  # local name in the layer: "W", "b", "K"
    canonical_shape: tuple[int, ...]
    user_shape: tuple[int, ...]
    order: str  # flattening order of the canonical array that gives the user's vec
    is_dense_weight: bool
    offset: int
    space: Space

    @property
    def size(self) -> int:
        return prod(self.canonical_shape)

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.size)


@dataclass
class Cache:
    """Forward cache, batch-first: ``z[l]`` (``z[0]`` is None), ``a[l]`` (``a[0]`` = x) and
    ``post[l]`` the inputs of each post layer of stage ``l`` followed by ``a[l]``; ``params[l]`` the
    parameters stage ``l`` was run with (``params[0]`` is empty)."""

    z: list
    a: list
    post: list
    params: list = field(default_factory=list)  # params[l]: stage l's canonical parameters, by local name

    @property
    def output(self) -> np.ndarray:
        return self.a[-1]


_OVERFLOW_HINT = ("the loss or an activation overflowed or saturated -- scale the inputs/parameters down, or "
                  "pair the last activation with its matching loss (softmax + cross_entropy, sigmoid + bce)")


class ValidatedParams(dict):
    """Parameters already validated and converted to the canonical layout (read-only copies).

    Returned by :meth:`Network.validated_params`; every method accepts it in place of a
    user-layout dict and then skips validation (useful in loops and benchmarks).
    """

    network_id: int = 0


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


class Network:
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
        if not layers[0].parametric:
            raise SpecError(
                f"network {self.name!r}: the first layer must be parametric (dense or conv2d), received {layers[0].kind!r}"
            )
        self.layers = layers
        self.stages: list[Stage] = []
        shape = self.input_shape
        for layer in layers:
            if layer.parametric:
                self.stages.append(Stage(len(self.stages) + 1, layer))
                layer.label = f"layer {len(self.stages)} ({layer.kind})"
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
        if a.dtype != object and not np.all(np.isfinite(a)):
            kind = "NaN" if np.any(np.isnan(a)) else "Inf"
            raise DataError(f"network {self.name!r}: the {what} is not finite ({kind}); {hint or _OVERFLOW_HINT}")

    def z_space(self, l: int) -> Space:
        s = self.stages[l - 1].layer
        return Space(f"z[{l}]", s.out_shape, rf"\mathbf{{z}}^{{[{l}]}}")

    def a_space(self, l: int) -> Space:
        if l == 0:
            return Space("x", self.input_shape, r"\mathbf{x}")
        st = self.stages[l - 1]
        shape = st.post[-1].out_shape if st.post else st.layer.out_shape
        return Space(f"a[{l}]", shape, rf"\mathbf{{a}}^{{[{l}]}}")

    def _build_entries(self) -> None:
        conv = self.convention
        per_stage = []
        for st in self.stages:
            items = []
            for local, cshape in st.layer.param_shapes().items():
                dense_w = st.layer.kind == "dense" and local == "W"
                ushape = tuple(reversed(cshape)) if (dense_w and conv.weight_layout == "in_out") else tuple(cshape)
                order = conv.canonical_order(dense_w) if len(cshape) > 1 else "C"  # vectors: order is moot
                items.append((local, tuple(cshape), ushape, order, dense_w))
            per_stage.append(items)
        order: list[tuple[int, tuple]] = []
        if conv.theta_order == "forward":
            order = [(l, it) for l, items in enumerate(per_stage, 1) for it in items]
        elif conv.theta_order == "reverse":
            order = [(l, it) for l, items in reversed(list(enumerate(per_stage, 1))) for it in items]
        else:  # weights_first: all non-bias tensors, then all biases
            order = [(l, it) for l, items in enumerate(per_stage, 1) for it in items if it[0] != "b"]
            order += [(l, it) for l, items in enumerate(per_stage, 1) for it in items if it[0] == "b"]
        entries, off = [], 0
        for l, (local, cshape, ushape, o, dense_w) in order:
            name = f"{local}{l}"
            if local == "b":
                space = Space(f"b[{l}]", ushape, rf"\mathbf{{b}}^{{[{l}]}}")
            else:
                sym = r"\mathbf{W}" if local == "W" else rf"\mathbf{{{local}}}"
                space = Space(f"vec {local}[{l}]", ushape, rf"\operatorname{{vec}}{sym}^{{[{l}]}}",
                              "C" if conv.vec_order == "row" else "F")
            entries.append(ParamEntry(name, l, local, cshape, ushape, o, dense_w, off, space))
            off += prod(cshape)
        self.entries: list[ParamEntry] = entries
        self._stage_entries = {st.index: [e for e in entries if e.stage == st.index] for st in self.stages}
        self._stage_names = {st.index: [(local, f"{local}{st.index}") for local in st.layer.param_shapes()]
                             for st in self.stages}
        self._zL_space = self.z_space(self.L)
        self.n_params = off
        self.theta_space = Space.concat([e.space for e in entries])

    def entry(self, name: str) -> ParamEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise UnknownNameError(f"network {self.name!r} has no parameter {name!r}; parameters: {', '.join(self.param_names)}")

    @property
    def param_names(self) -> list[str]:
        return [e.name for e in self.entries]

    def describe(self) -> str:
        parts = [f"input {self.input_shape}"] + [l.describe() for l in self.layers] + [f"loss {self.loss.kind}"]
        return " -> ".join(parts) + f"  [{self.convention.name}; |θ| = {self.n_params}]"

    def __repr__(self) -> str:
        return f"Network({self.describe()})"

    # ------------------------------------------------------------------ parameters
    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Random parameters (fan-in scaled Gaussian), in the convention's layout."""
        rng = np.random.default_rng(_check_seed(seed, f"network {self.name!r}: init_params"))
        canon = {}
        for st in self.stages:
            for local, v in st.layer.init_params(rng).items():
                canon[f"{local}{st.index}"] = v
        return self.user_params(canon)

    def user_params(self, canonical: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for e in self.entries:
            out[e.name] = self.convention.to_user(np.asarray(canonical[e.name]).reshape(e.canonical_shape), e.is_dense_weight)
        return out

    def validated_params(self, params: dict[str, np.ndarray]) -> ValidatedParams:
        """Validate once; the result (canonical, read-only copies) is accepted by every method without re-validation."""
        canon = self.canonical_params(params)
        out = ValidatedParams()
        for k, v in canon.items():
            c = np.array(v, copy=True)
            c.flags.writeable = False
            out[k] = c
        out.network_id = id(self)
        return out

    def canonical_params(self, params: dict[str, np.ndarray], symbolic_ok: bool = True) -> dict[str, np.ndarray]:
        """Validate user-layout parameters and return them in the canonical layout."""
        if isinstance(params, ValidatedParams) and params.network_id == id(self):
            return params
        if not isinstance(params, dict):
            raise DataError(f"network {self.name!r}: parameters must be a dict keyed {', '.join(self.param_names)}")
        missing = [n for n in self.param_names if n not in params]
        extra = [k for k in params if k not in self.param_names]
        if missing or extra:
            raise DataError(
                f"network {self.name!r}: parameter names do not match; missing: {missing or 'none'}, "
                f"unknown: {extra or 'none'}; expected {self.param_names}"
            )
        canon = {}
        for e in self.entries:
            v = _real_array(params[e.name], f"layer {e.stage} ({self.stages[e.stage - 1].layer.kind}): parameter {e.name}")
            if v.shape != e.user_shape:
                raise ShapeError(
                    f"layer {e.stage} ({self.stages[e.stage - 1].layer.kind}): parameter {e.name} expected shape "
                    f"{e.user_shape} under convention {self.convention.name!r}, received {v.shape}"
                )
            if v.dtype == object:
                pass  # entries checked by _real_array
            elif not np.all(np.isfinite(v)):
                raise DataError(f"layer {e.stage}: parameter {e.name} contains NaN or Inf")
            canon[e.name] = self.convention.from_user(v, e.is_dense_weight)
        return canon

    def stage_params(self, canon: dict, l: int) -> dict[str, np.ndarray]:
        return {local: canon[name] for local, name in self._stage_names[l]}

    def pack_canonical(self, canonical: dict[str, np.ndarray]) -> np.ndarray:
        """θ vector (convention order and vec) from canonical parameters."""
        arrays = [np.asarray(canonical[e.name]).reshape(e.canonical_shape).ravel(order=e.order) for e in self.entries]
        return np.concatenate(arrays) if arrays else np.zeros(0)

    def pack(self, params: dict[str, np.ndarray]) -> np.ndarray:
        """θ vector from user-layout parameters (Damadi: [vec W[L]; b[L]; …; vec W[1]; b[1]])."""
        return self.pack_canonical(self.canonical_params(params))

    def unpack_canonical(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        theta = np.asarray(theta)
        if theta.shape != (self.n_params,):
            raise ShapeError(f"network {self.name!r}: expected θ of shape ({self.n_params},), received {theta.shape}")
        return {e.name: theta[e.slice].reshape(e.canonical_shape, order=e.order) for e in self.entries}

    def unpack(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        return self.user_params(self.unpack_canonical(theta))

    # ------------------------------------------------------------------ data
    def as_batch(self, X, Y=None, what: str = "input"):
        """Return batch-first arrays ``(Xb, Yb, single)`` from the convention's layout."""
        X = _real_array(X, f"network {self.name!r}: {what}")
        k = len(self.input_shape)
        if X.ndim == k:
            single = True
            if X.shape != self.input_shape:
                raise ShapeError(f"{self.stages[0].layer.label}: expected input of shape {self.input_shape}, received {X.shape}")
            Xb = X[None]
        elif X.ndim == k + 1:
            single = False
            Xb = X if self.convention.batch_axis == "first" else np.moveaxis(X, -1, 0)
            if Xb.shape[1:] != self.input_shape:
                lay = "(N, *shape)" if self.convention.batch_axis == "first" else "(*shape, N)"
                raise ShapeError(
                    f"{self.stages[0].layer.label}: expected a batch of inputs of shape {self.input_shape} laid out "
                    f"{lay} (batch axis {self.convention.batch_axis}), received {X.shape}"
                )
        else:
            raise ShapeError(
                f"{self.stages[0].layer.label}: expected input of shape {self.input_shape} or a batch of them, received {X.shape}"
            )
        if Xb.shape[0] == 0:
            raise DataError(f"network {self.name!r}: empty batch (N = 0)")
        if Xb.dtype != object and not np.all(np.isfinite(Xb)):
            raise DataError(f"network {self.name!r}: input contains NaN or Inf")
        if Y is None:
            return Xb, None, single
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
        z: list = [None]
        a: list = [Xb]
        post: list = [[]]
        params: list = [{}] + [self.stage_params(canon, st.index) for st in self.stages]
        cur = Xb
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
        return Cache(z, a, post, params)

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
        return 1.0 / N if self.convention.reduction == "mean" else 1.0

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

    # ------------------------------------------------------------------ Algorithm 1
    def left_products(self, cache: Cache, canon: dict, need_input: bool = False) -> list[np.ndarray]:
        """P[l] = J_{z[l]} z[L] for every stage, batched: ``(N, n_L, size z[l])``; P[0] = J_x z[L]
        (computed only when ``need_input``: it is not needed for J_θ z[L])."""
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
            if l == self.L and not symbolic and st.layer.kind == "dense":
                W = canon[f"W{l}"]
                cur = W[None] if N == 1 else np.broadcast_to(W, (N,) + W.shape)
            else:
                cur = st.layer.left_jac_input(cache.a[l - 1], cache.z[l], cur, cache.params[l])
            if l - 1 >= 1:
                for layer, A, O in self.post_steps(cache, l - 1):
                    cur = layer.left_jac_input(A, O, cur, {})
            P[l - 1] = cur
        return P

    def _left_chains(self, cache: Cache, i: int, symbolic: bool, P: list | None = None) -> list:
        """The left factors P[l] = J_{z[l]} z[L] of sample ``i`` as :class:`~jacobian_bp.engine.chain.LeftChain`
        links (P[L] = identity is ``None``); nothing is multiplied until a block needs it, unless the
        batched products ``P`` of :meth:`_left_products` are given."""
        from .chain import LeftChain

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
        return hstack([blocks[e.name] for e in self.entries], space=self.theta_space)

    def layer_jacobian(self, x, params, l: int) -> Jacobian:
        r"""Damadi's :math:`\mathbf J_{\mathbf W^{[l]},\mathbf b^{[l]}}\mathbf z^{[L]}` (all parameters of stage ``l``)."""
        l = self._check_stage(l, "layer_jacobian")
        J = self.jacobian_theta(x, params)
        bl = [b for b in J.blocks if any(e.stage == l and e.space == b.input for e in self.entries)]
        return hstack(bl, name=f"theta[{l}]", latex=",".join(b.input.latex for b in bl)) if bl else None

    def jacobian_input(self, x, params) -> Jacobian:
        r""":math:`\mathbf J_{\mathbf x}\mathbf z^{[L]}` of one sample, ``n_L × n_0``."""
        Xb, _, single = self.as_batch(x)
        if not single:
            raise ShapeError(f"jacobian_input: expected one sample of shape {self.input_shape}, received {np.shape(x)}")
        canon = self.canonical_params(params)
        cache = self.forward_cache(Xb, canon)
        P = self.left_products(cache, canon, need_input=True)
        return Jacobian(DenseOp(P[0][0]), self.z_space(self.L), self.a_space(0))

    def chain_factors(self, x, params, l: int) -> list[Jacobian]:
        r"""The typed factors of :math:`\mathbf J_{\mathbf z^{[l]}}\mathbf z^{[L]}`, left to right:
        :math:`\mathbf J_{\mathbf a^{[L-1]}}\mathbf z^{[L]}, \mathbf J_{\mathbf z^{[L-1]}}\mathbf a^{[L-1]}, \dots,
        \mathbf J_{\mathbf z^{[l]}}\mathbf a^{[l]}` (one sample).  Their product, formed with ``@``,
        type-checks every link of the chain.  ``l`` is in ``0..L`` (``l = 0``: down to the input
        :math:`\mathbf x`; ``l = L``: no factor)."""
        l = self._check_stage(l, "chain_factors", allow_zero=True)
        Xb, _, _ = self.as_batch(x)
        canon = self.canonical_params(params)
        cache = self.forward_cache(Xb, canon)
        factors = []
        for k in range(self.L, l, -1):
            st = self.stages[k - 1]
            op = st.layer.jac_input(cache.a[k - 1][0], cache.z[k][0], cache.params[k])
            factors.append(Jacobian(op, self.z_space(k), self.a_space(k - 1)))
            if k == 1:  # a[0] = x: no activation below the first layer
                break
            prev = self.stages[k - 2]
            ins = cache.post[k - 1]
            outs = ins[1:] + [cache.a[k - 1]]
            ops = [layer.jac_input(A[0], O[0], {}) for layer, A, O in zip(prev.post, ins, outs)]
            post_op = Product(list(reversed(ops))) if ops else Identity(prev.layer.out_size)
            factors.append(Jacobian(post_op, self.a_space(k - 1), self.z_space(k - 1)))
        return factors

    def local_jacobian(self, x, params, l: int) -> Jacobian:
        r""":math:`\mathbf J_{\theta_l}\mathbf z^{[l]}`, e.g. Damadi's :math:`[\mathbf I\otimes\mathbf a^{[l-1]\top}\ \ \mathbf I]`."""
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
        blocks.sort(key=lambda j: 0 if not j.input.name.startswith("b") else 1)
        return hstack(blocks, name=f"theta[{l}]", latex=",".join(b.input.latex for b in blocks))

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
        return vstack(rows, name=f"Z[{self.L}]", latex=rf"\mathbf{{Z}}^{{[{self.L}]}}")

    def batch_jacobian_input(self, X, params) -> Jacobian:
        r""":math:`\mathbf J_{\mathbf X}\mathbf Z^{[L]} = \sum_i \mathbf E_{ii}\otimes\mathbf J_{\mathbf x_i}\mathbf z_i^{[L]}` (block diagonal over samples)."""
        Xb, _, _ = self.as_batch(X)
        canon = self.canonical_params(params)
        cache = self.forward_cache(Xb, canon)
        P = self.left_products(cache, canon, need_input=True)
        js = [Jacobian(DenseOp(P[0][i]), Space(f"z[{self.L}]_{i + 1}", (self.n_out,)), Space(f"x_{i + 1}", self.input_shape))
              for i in range(Xb.shape[0])]
        return block_diag(js, f"Z[{self.L}]", rf"\mathbf{{Z}}^{{[{self.L}]}}", "X", r"\mathbf{X}")

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
        return block_diag(js, f"Z[{l}]", rf"\mathbf{{Z}}_{{{l}}}", f"A[{l}]", rf"\mathbf{{A}}_{{{l}}}")

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
            cache = self.forward_cache(Xb, canon)
            D = self.delta_from_cache(cache, Yb) * self.reduce_factor(Xb.shape[0])
        self._check_finite(D, "gradient of the loss with respect to z[L] (delta)")
        g = self._gradient(Xb, canon, cache, D, method)
        self._check_finite(g.vector, "gradient ∇θℓ")
        return g

    def _gradient(self, Xb: np.ndarray, canon: dict, cache: Cache, D: np.ndarray, method: str) -> Gradient:
        symbolic = D.dtype == object or self._is_symbolic(Xb, canon)
        if method == "chain" and not symbolic:
            # Alg. 1 for the whole batch at once: the explicit chain P_l = J_{z[l]} z[L] (one n_L x n_l
            # matrix per sample), then the transposed local block (J_{θ_l} z[l])^T (e.g. (I ⊗ a^T)^T g = g ⊗ a)
            P = self.left_products(cache, canon)
            canon_grad = {}
            for st in self.stages:
                l = st.index
                Gl = D if l == self.L else np.einsum("nk,nkj->nj", D, P[l])
                for k, v in st.layer.vjp_params(cache.a[l - 1], cache.z[l], Gl, cache.params[l]).items():
                    canon_grad[f"{k}{l}"] = np.asarray(v).reshape(st.layer.param_shapes()[k])
        elif method == "chain":
            total = {e.name: 0.0 for e in self.entries}
            for i in range(Xb.shape[0]):
                blocks = self._param_blocks(cache, i, True)
                for e in self.entries:
                    total[e.name] = total[e.name] + blocks[e.name].rmatvec(D[i])
            canon_grad = {e.name: np.asarray(total[e.name]).reshape(e.canonical_shape, order=e.order) for e in self.entries}
        elif method == "operator":
            from .sweeps import vjp_sweep

            if D.dtype != object and all(np.asarray(v).dtype != object for v in canon.values()):
                theta = np.empty(self.n_params)
                return Gradient(self, vjp_sweep(self, cache, canon, D, out=theta), vector=theta)
            canon_grad = self._vjp_sweep(cache, canon, D)
        else:  # pragma: no cover - checked by gradient()
            raise DataError(f"gradient: method must be 'chain' or 'operator', received {method!r}")
        return Gradient(self, canon_grad)

    def _vjp_sweep(self, cache: Cache, canon: dict, D: np.ndarray) -> dict[str, np.ndarray]:
        """The batched reverse sweep :math:`\\sum_i (\\mathbf J_\\theta\\mathbf z_i^{[L]})^\\top\\mathbf d_i` (see :func:`jacobian_bp.uses.lazy.vjp_sweep`)."""
        from .sweeps import vjp_sweep

        return vjp_sweep(self, cache, canon, D)

    # the engine methods other modules call are public; their former private names stay as aliases
    _forward = forward_cache
    _stage_params = stage_params
    _reduce_factor = reduce_factor
    _per_sample_loss = per_sample_loss
    _left_products = left_products
    _delta = delta_from_cache

    def per_sample_gradients(self, X, Y, params) -> np.ndarray:
        r"""Per-sample gradients :math:`(\mathbf J_\theta\mathbf z_i^{[L]})^\top\nabla_{\mathbf z_i^{[L]}}\ell_i`, ``(N, |θ|)``
        (unreduced: each row is the gradient of that sample's own loss); vectorized over the
        samples by :func:`jacobian_bp.engine.per_sample.per_sample_gradients`."""
        from .per_sample import per_sample_gradients

        return per_sample_gradients(self, X, Y, params)
