r"""The θ layout: where every parameter tensor sits in θ under a convention, and the validation of parameters.

Each parametric stage ``l`` of a :class:`~jacobian_bp.engine.network.Network` owns the local
parameters its layer names (``W``, ``b``, ``K``; a residual block ``W.1``, ``b.1``, …).  Their network
names are :func:`param_name` ``(l, local)``: ``W1, b1, K2`` for plain layers (Damadi's ``W^{[l]}``,
``b^{[l]}``) and ``W2.1, b2.1`` for the first parametric sub-layer of the block at stage 2 (the stage
number first, as in every other name, then the position inside the block).  The canonical layout is
the layers' own (a Dense weight ``out × in``); the convention decides the user's layout (``in_out``
transposes the parameters the layer says are transposed by the layout), the vec order of each
tensor and the order of the tensors in θ (:mod:`jacobian_bp.engine.conventions`).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from math import prod

import numpy as np
import sympy

from ..errors import DataError, ShapeError, UnknownNameError
from ..layers.base import default_param_role, default_param_symbol
from ..layers.residual import weight_transposed_by_layout
from .jacobian import Space

__all__ = ["ParamEntry", "ValidatedParams", "ThetaLayout", "param_name", "real_array", "check_seed", "is_bias"]


def real_array(v, what: str) -> np.ndarray:
    """``v`` as a float64 array, or a NumPy object array of SymPy expressions/real numbers (symbolic use).

    Refused with :class:`DataError` (never silently converted): booleans (they would become 0/1),
    complex numbers (the imaginary part would be dropped), strings (never parsed), ``None``,
    ragged nestings, and object arrays holding anything but SymPy expressions and real numbers.
    """
    if type(v) is np.ndarray and v.dtype == np.float64:  # the common case, decided without issubdtype
        return v
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
    if np.issubdtype(a.dtype, np.bool_):
        raise DataError(f"{what}: expected real numbers, received a boolean array (convert it explicitly, e.g. .astype(float))")
    if np.issubdtype(a.dtype, np.complexfloating):
        raise DataError(f"{what}: expected real numbers, received a complex array (dtype {a.dtype}); "
                        "the imaginary part would be lost")
    if np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float64, copy=False)
    if a.dtype == object:  # a list holding SymPy numbers, Fractions, … : accepted only if every entry is a real number
        if all(isinstance(t, numbers.Real) and not isinstance(t, (bool, np.bool_)) for t in a.flat):
            try:
                return a.astype(np.float64)
            except (TypeError, ValueError):
                pass
        raise DataError(f"{what}: expected real numbers; pass symbolic entries as a NumPy object array")
    raise DataError(f"{what}: expected real numbers, received an array of dtype {a.dtype} (strings are never parsed)")


def check_seed(seed, what: str) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"{what}: seed must be an integer >= 0, received {seed!r}")
    return int(seed)



@dataclass(frozen=True)
class ParamEntry:
    """Where one parameter tensor sits in θ under the network's convention."""

    name: str  # network name: "W1", "b2", "K1", "W2.1" (see param_name)
    stage: int
    local: str  # local name in the stage's layer: "W", "b", "K", "W.1"
    canonical_shape: tuple[int, ...]
    user_shape: tuple[int, ...]
    order: str  # flattening order of the canonical array that gives the user's vec
    is_dense_weight: bool  # transposed by the convention's weight layout (the layer says which)
    offset: int
    space: Space
    #: the layer says it is a bias (:meth:`~jacobian_bp.layers.base.Layer.param_role`)
    is_bias: bool = False

    @property
    def size(self) -> int:
        return prod(self.canonical_shape)

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.size)



class ValidatedParams(dict):
    """Parameters already validated and converted to the canonical layout (read-only copies).

    Returned by :meth:`Network.validated_params`; every method accepts it in place of a
    user-layout dict and then skips validation (useful in loops and benchmarks).
    """

    network_id: int = 0



def param_name(l: int, local: str) -> str:
    """The network name of the local parameter ``local`` of stage ``l``.

    ``W`` of stage 2 is ``W2`` (Damadi's :math:`\\mathbf W^{[2]}`); a block parameter ``W.1`` (the
    first parametric sub-layer of a residual block) of stage 2 is ``W2.1``: the stage number sits
    where it sits in every plain name, so that names sort and read by stage, and the position in the
    block follows it (``W2.1.3`` for a nested block).
    """
    base, dot, rest = local.partition(".")
    return f"{base}{l}.{rest}" if dot else f"{local}{l}"


def _space(name: str, local: str, ushape: tuple, vec_order: str, bias: bool = False) -> Space:
    r"""The θ space of one parameter: ``b[l]`` / ``vec W[l]`` with Damadi's superscript ``[l]`` (``[l.k]`` in a block).

    A bias (``bias``: the layer's :meth:`~jacobian_bp.layers.base.Layer.param_role`) is written without
    ``vec`` (:math:`\mathbf b_{Q}^{[2]}`); any other parameter as ``vec`` of it.  The LaTeX letter of a
    name other than ``W``/``b`` comes from :func:`~jacobian_bp.layers.base.default_param_symbol`
    (``gamma``: :math:`\boldsymbol\gamma`, ``W_Q``: :math:`\mathbf W_{Q}`)."""
    base, _, rest = local.partition(".")
    tag = name[len(base):]  # "2" or "2.1"
    if base == "b":
        return Space(f"b[{tag}]", ushape, rf"\mathbf{{b}}^{{[{tag}]}}")
    sym = r"\mathbf{W}" if base == "W" else default_param_symbol(base, r"\mathbf{%s}")
    if bias or len(ushape) <= 1:  # a vector: no vec in its LaTeX (the plain name keeps the "vec" every non-"b" name has had)
        return Space(f"vec {base}[{tag}]", ushape, rf"{sym}^{{[{tag}]}}",
                     "C" if vec_order == "row" else "F")
    return Space(f"vec {base}[{tag}]", ushape, rf"\operatorname{{vec}}{sym}^{{[{tag}]}}",
                 "C" if vec_order == "row" else "F")


class ThetaLayout:
    """The θ layout of a network and the conversions between user and canonical parameters.

    A mixin of :class:`~jacobian_bp.engine.network.Network` (it reads ``stages``, ``convention``,
    ``name``); the methods are the network's public API.
    """

    def _build_entries(self) -> None:
        conv = self.convention
        per_stage = []
        for st in self.stages:
            items = []
            for local, cshape in st.layer.param_shapes().items():
                transposed = weight_transposed_by_layout(st.layer, local)
                ushape = tuple(reversed(cshape)) if (transposed and conv.weight_layout == "in_out") else tuple(cshape)
                order = conv.canonical_order(transposed) if len(cshape) > 1 else "C"  # vectors: order is moot
                items.append((local, tuple(cshape), ushape, order, transposed, is_bias(st.layer, local)))
            per_stage.append(items)
        order: list[tuple[int, tuple]] = []
        if conv.theta_order == "forward":
            order = [(l, it) for l, items in enumerate(per_stage, 1) for it in items]
        elif conv.theta_order == "reverse":
            order = [(l, it) for l, items in reversed(list(enumerate(per_stage, 1))) for it in items]
        else:  # weights_first: all non-bias tensors, then all biases
            order = [(l, it) for l, items in enumerate(per_stage, 1) for it in items if not it[5]]
            order += [(l, it) for l, items in enumerate(per_stage, 1) for it in items if it[5]]
        entries, off = [], 0
        for l, (local, cshape, ushape, o, transposed, bias) in order:
            name = param_name(l, local)
            space = _space(name, local, ushape, conv.vec_order, bias)
            entries.append(ParamEntry(name, l, local, cshape, ushape, o, transposed, off, space, bias))
            off += prod(cshape)
        self.entries: list[ParamEntry] = entries
        self._stage_entries = {st.index: [e for e in entries if e.stage == st.index] for st in self.stages}
        self._stage_names = {st.index: [(local, param_name(st.index, local)) for local in st.layer.param_shapes()]
                             for st in self.stages}
        self._zL_space = self.z_space(self.L)
        self.n_params = off
        self.theta_space = Space.concat([e.space for e in entries])

    def param_name(self, l: int, local: str) -> str:
        """The network name of stage ``l``'s local parameter ``local`` (:func:`param_name`)."""
        return param_name(l, local)

    def stage_param_names(self, l: int) -> list[tuple[str, str]]:
        """``(local name, network name)`` of every parameter of stage ``l``."""
        return list(self._stage_names[l])

    def entry(self, name: str) -> ParamEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise UnknownNameError(f"network {self.name!r} has no parameter {name!r}; parameters: {', '.join(self.param_names)}")

    @property
    def param_names(self) -> list[str]:
        return [e.name for e in self.entries]

    # ------------------------------------------------------------------ parameters
    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Random parameters (fan-in scaled Gaussian), in the convention's layout."""
        rng = np.random.default_rng(check_seed(seed, f"network {self.name!r}: init_params"))
        canon = {}
        for st in self.stages:
            for local, v in st.layer.init_params(rng).items():
                canon[param_name(st.index, local)] = v
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
            v = real_array(params[e.name], f"layer {e.stage} ({self.stages[e.stage - 1].layer.kind}): parameter {e.name}")
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


def is_bias(layer, local: str) -> bool:
    """Whether the layer's local parameter ``local`` is a bias (Ganev's weights-first θ puts them last).

    Asks the layer (:meth:`~jacobian_bp.layers.base.Layer.param_role`); a layer object without the
    method (written before it existed) is answered by the default reading of the name."""
    ask = getattr(layer, "param_role", None)
    role = ask(local) if callable(ask) else default_param_role(local)
    return role == "bias"
