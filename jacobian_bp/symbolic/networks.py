r"""Symbolic networks: the engine's :class:`~jacobian_bp.engine.network.Network` with SymPy symbols.

A :class:`SymbolicNetwork` wraps a numeric-engine network and gives every input, target
and parameter entry a real SymPy symbol named as in the documents:

=================  ===========================  =============================================
object             symbol (LaTeX name)          indices
=================  ===========================  =============================================
input              ``x_{i}``                    :math:`i = 1..n_0` (``x_{c,i,j}`` for images)
target             ``y_{i}``                    :math:`i = 1..n_L`
weight             ``w^{[l]}_{ij}``             entry :math:`(i, j)` of :math:`\mathbf W^{[l]}` *in the
                                                convention's layout*: Damadi's
                                                :math:`\mathbf W^{[l]}\in\mathbb R^{n_{l-1}\times n_l}`
                                                (:math:`i` = input unit, :math:`j` = output unit),
                                                Ganev/Park/MML/PyTorch :math:`n_l\times n_{l-1}`
                                                (:math:`i` = output, :math:`j` = input)
bias               ``b^{[l]}_{i}``              :math:`i = 1..n_l`
other parameters   ``k^{[l]}_{o,c,u,v}`` …      lower-cased parameter name, its shape's indices
block parameters   ``w^{[l.k]}_{ij}``           the ``k``-th parametric layer of the residual block at
                                                stage ``l`` (network name ``W<l>.<k>``; nested blocks
                                                ``w^{[l.k.j]}_{ij}``), as Damadi writes the layer index
=================  ===========================  =============================================

Indices are 1-based; they are separated by commas when a dimension exceeds 9.  All
symbols are created with ``real=True``.

The same layer code as the numeric engine evaluates the network: parameters and inputs
are NumPy *object* arrays of SymPy expressions, which every layer's ``forward``,
``jac_input`` and ``jac_params`` accept, and :meth:`jacobian_theta` returns the engine's
structured :class:`~jacobian_bp.engine.jacobian.Jacobian` whose ``to_sympy()`` is exact.

Mixed use: :meth:`SymbolicNetwork.substitute` replaces some symbols (or whole tensors) by
numbers and keeps the rest; keys and values are validated (unknown names or symbols raise
:class:`~jacobian_bp.symbolic.errors.UndefinedSymbolError`, wrong shapes raise
:class:`~jacobian_bp.errors.ShapeError`).  Strings are never parsed as expressions.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Mapping

import numpy as np
import sympy

from ..errors import DataError, ShapeError
from ..engine.jacobian import Jacobian
from ..engine.network import Cache, Network
from .errors import SymbolicInputError, UndefinedSymbolError

__all__ = ["SymbolicNetwork", "symbol_array", "symbol_name", "as_sympy_entry", "require_symbolic_network",
           "param_symbol_base"]


def param_symbol_base(local: str, stage: int) -> tuple[str, str]:
    """``(letter, layer tag)`` of the symbols of a parameter: ``("w", "2")`` for ``W`` of stage 2 and
    ``("w", "2.1")`` for the block parameter ``W.1`` of stage 2 (entries ``w^{[2.1]}_{ij}``)."""
    base, dot, rest = local.partition(".")
    return base.lower(), (f"{stage}.{rest}" if dot else str(stage))


def symbol_name(base: str, index: tuple[int, ...], shape: tuple[int, ...], layer: "int | str | None" = None) -> str:
    """Document-style LaTeX name of one entry: ``symbol_name("w", (0, 1), (4, 3), 1) == "w^{[1]}_{12}"``
    (``layer`` may be a tag such as ``"2.1"``: ``w^{[2.1]}_{12}``).

    ``index`` is 0-based; the name uses 1-based indices, comma-separated when any
    dimension of ``shape`` exceeds 9 (``w^{[1]}_{1,10}``).
    """
    if len(index) != len(shape):
        raise ShapeError(f"symbol_name({base!r}): index {index} does not match shape {shape}")
    sep = "," if (len(shape) > 1 and max(shape) > 9) else ""
    sub = sep.join(str(i + 1) for i in index)
    sup = f"^{{[{layer}]}}" if layer is not None else ""
    return f"{base}{sup}_{{{sub}}}"


def symbol_array(base: str, shape: tuple[int, ...], layer: "int | str | None" = None) -> np.ndarray:
    """Object array of real symbols named by :func:`symbol_name`, of the given shape."""
    shape = tuple(int(s) for s in shape)
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        out[idx] = sympy.Symbol(symbol_name(base, idx, shape, layer), real=True)
    return out


def as_sympy_entry(value: Any, where: str) -> sympy.Expr:
    """Convert one value to a SymPy expression *without parsing text*.

    Accepted: SymPy expressions, Python/NumPy integers (exact ``Integer``), floats
    (``Float``, finite), :class:`fractions.Fraction` (exact ``Rational``).  Strings, booleans,
    NaN/Inf and other objects raise :class:`~jacobian_bp.symbolic.errors.SymbolicInputError`
    (a ``TypeError``) / :class:`~jacobian_bp.errors.DataError` (a ``ValueError``) naming ``where``.
    """
    if isinstance(value, str):
        raise SymbolicInputError(f"{where}: received the string {value!r}; strings are never parsed as expressions -- "
                        "build the value with sympy (sympy.Symbol, sympy.Rational, ...) or pass a number")
    if isinstance(value, (bool, np.bool_)):
        raise SymbolicInputError(f"{where}: expected a number or a SymPy expression, received the boolean {value!r}")
    if isinstance(value, sympy.Basic):
        if not isinstance(value, sympy.Expr):
            raise SymbolicInputError(f"{where}: expected a scalar SymPy expression, received {type(value).__name__}")
        if value.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
            raise DataError(f"{where}: the expression {value} is not finite")
        return value
    if isinstance(value, (int, np.integer)):
        return sympy.Integer(int(value))
    if isinstance(value, Fraction):
        return sympy.Rational(value.numerator, value.denominator)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise DataError(f"{where}: received {value!r}; values must be finite")
        return sympy.Float(float(value))
    raise SymbolicInputError(f"{where}: expected a number or a SymPy expression, received {type(value).__name__}")


def _as_object_array(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Validate an array-like (NumPy array, SymPy matrix, nested list) of the given shape."""
    if isinstance(value, str):
        as_sympy_entry(value, what)  # raises the "never parsed" TypeError
    if isinstance(value, sympy.MatrixBase):
        arr = np.array(value.tolist(), dtype=object)
        if len(shape) == 1 and 1 in arr.shape and arr.size == shape[0]:
            arr = arr.reshape(shape)  # a column or row vector for a vector
    elif isinstance(value, sympy.Basic):
        raise ShapeError(f"{what}: expected an array of shape {shape}, received the scalar {value}")
    else:
        arr = np.array(value, dtype=object)
    if arr.shape != tuple(shape):
        raise ShapeError(f"{what}: expected shape {tuple(shape)}, received {arr.shape}")
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        out[idx] = as_sympy_entry(arr[idx], f"{what}[{', '.join(map(str, idx))}]")
    return out


class SymbolicNetwork:
    r"""A network whose input, target and parameters are SymPy expressions.

    Parameters
    ----------
    network : Network
        Any engine network (dense, activations, softmax, radial sigmoid; conv/pool/flatten
        when their layers accept object arrays).
    x, y : array-like, optional
        The input (shape ``network.input_shape``) and target (``(n_L,)``); default: the
        symbols ``x_{i}``, ``y_{i}``.
    params : dict, optional
        Parameters in the convention's layout keyed ``W1, b1, …``; missing ones default to
        the symbols ``w^{[l]}_{ij}``, ``b^{[l]}_{i}``.

    Attributes
    ----------
    x, y : numpy.ndarray of object
    params : dict[str, numpy.ndarray of object]
        User layout (Damadi's :math:`\mathbf W^{[l]}` is :math:`n_{l-1}\times n_l`).

    Examples
    --------
    >>> from jacobian_bp.spec import load_spec
    >>> snet = SymbolicNetwork(load_spec("damadi-1layer").network)
    >>> snet.params["W1"][0, 1]
    w^{[1]}_{12}
    """

    def __init__(self, network: Network, x: Any = None, y: Any = None, params: Mapping[str, Any] | None = None):
        if not isinstance(network, Network):
            raise SymbolicInputError(f"SymbolicNetwork: expected a jacobian_bp Network, received {type(network).__name__}")
        self.network = network
        self.convention = network.convention
        self.x = symbol_array("x", network.input_shape) if x is None else _as_object_array(
            x, network.input_shape, f"network {network.name!r}: input x")
        self.y = symbol_array("y", network.output_shape) if y is None else _as_object_array(
            y, network.output_shape, f"network {network.name!r}: target y")
        params = dict(params or {})
        unknown = [k for k in params if k not in network.param_names]
        if unknown:
            raise UndefinedSymbolError(
                f"network {network.name!r}: unknown parameter name(s) {unknown}; parameters: {network.param_names}")
        self.params: dict[str, np.ndarray] = {}
        for e in network.entries:
            if e.name in params:
                self.params[e.name] = _as_object_array(params[e.name], e.user_shape,
                                                       f"network {network.name!r}: parameter {e.name}")
            else:
                self.params[e.name] = symbol_array(param_symbol_base(e.local, e.stage)[0], e.user_shape,
                                                        param_symbol_base(e.local, e.stage)[1])

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_spec(cls, source) -> "SymbolicNetwork":
        """From a built-in example name (``"damadi-2layer"``), a JSON file, a JSON string or a dict."""
        from ..spec import load_spec

        return cls(load_spec(source).network)

    def _copy(self, x=None, y=None, params=None) -> "SymbolicNetwork":
        new = object.__new__(SymbolicNetwork)
        new.network = self.network
        new.convention = self.convention
        new.x = self.x if x is None else x
        new.y = self.y if y is None else y
        new.params = dict(self.params) if params is None else params
        return new

    # ------------------------------------------------------------------ symbols
    def arrays(self) -> dict[str, np.ndarray]:
        """``{"x": x, "y": y, "W1": …, "b1": …}`` (user layout), in the order x, y, θ."""
        return {"x": self.x, "y": self.y, **{e.name: self.params[e.name] for e in self.network.entries}}

    def symbols(self) -> list[sympy.Symbol]:
        """Every free symbol, ordered x, y, then θ order; each listed once."""
        seen: dict[sympy.Symbol, None] = {}
        for arr in self.arrays().values():
            for v in arr.flat:
                for s in sorted(v.free_symbols, key=sympy.default_sort_key):
                    seen.setdefault(s, None)
        return list(seen)

    def symbol(self, name: str) -> sympy.Symbol:
        """The free symbol with this exact name (e.g. ``"w^{[1]}_{12}"``); no parsing."""
        for s in self.symbols():
            if s.name == name:
                return s
        raise UndefinedSymbolError(f"network {self.network.name!r} has no symbol named {name!r}")

    @property
    def theta(self) -> np.ndarray:
        r"""θ in the convention's order and vec (Damadi: :math:`[\operatorname{vec}\mathbf W^{[L]}; \mathbf b^{[L]}; …]`)."""
        return self.network.pack(self.params)

    def canonical_params(self) -> dict[str, np.ndarray]:
        """Parameters in the engine's canonical layout (weights ``n_out × n_in``)."""
        return self.network.canonical_params(self.params)

    # ------------------------------------------------------------------ substitution
    def substitute(self, values: Mapping[Any, Any]) -> "SymbolicNetwork":
        r"""A copy with some symbols or whole tensors replaced by numbers (or expressions).

        Parameters
        ----------
        values : mapping
            Keys: ``"x"``, ``"y"``, a parameter name (``"W1"``, user layout and shape) with an
            array value; or a free :class:`sympy.Symbol` of the network (or its exact name,
            e.g. ``"w^{[1]}_{12}"``) with a scalar value.  Values: numbers or SymPy
            expressions (strings are rejected, never parsed).

        Raises
        ------
        UndefinedSymbolError
            A key is neither a tensor name nor a free symbol of the network.
        ShapeError
            An array value has the wrong shape (the message names the tensor, the expected
            and the received shape).
        """
        if not isinstance(values, Mapping):
            raise SymbolicInputError(f"substitute: expected a mapping of symbols/names to values, received {type(values).__name__}")
        arrays = {k: v for k, v in self.arrays().items()}
        shapes = {"x": self.network.input_shape, "y": self.network.output_shape,
                  **{e.name: e.user_shape for e in self.network.entries}}
        known = set(self.symbols())
        by_name = {s.name: s for s in known}
        scalar: dict[sympy.Symbol, sympy.Expr] = {}
        whole: dict[str, np.ndarray] = {}
        for key, value in values.items():
            if isinstance(key, str) and key in arrays:
                whole[key] = _as_object_array(value, shapes[key], f"substitute: {key}")
                continue
            sym = by_name.get(key) if isinstance(key, str) else key
            if isinstance(key, str) and sym is None:
                raise UndefinedSymbolError(
                    f"substitute: {key!r} is neither a tensor of network {self.network.name!r} "
                    f"({', '.join(arrays)}) nor the name of one of its free symbols")
            if not isinstance(sym, sympy.Symbol):
                raise SymbolicInputError(f"substitute: keys must be tensor names or SymPy symbols, received {type(key).__name__}")
            if sym not in known:
                raise UndefinedSymbolError(
                    f"substitute: the symbol {sym} does not occur in network {self.network.name!r} "
                    f"(it has {len(known)} free symbols, e.g. {', '.join(s.name for s in list(known)[:3])})")
            scalar[sym] = as_sympy_entry(value, f"substitute: value of {sym}")
        for name, arr in whole.items():
            clash = [s for s in scalar if any(s in v.free_symbols for v in arrays[name].flat)]
            if clash:
                raise DataError(f"substitute: {clash[0]} is set both on its own and through the whole tensor {name!r}")
        new = {}
        for name, arr in arrays.items():
            if name in whole:
                new[name] = whole[name]
            elif scalar:
                new[name] = np.vectorize(lambda v: v.xreplace(scalar), otypes=[object])(arr).reshape(arr.shape)
            else:
                new[name] = arr
        return self._copy(new["x"], new["y"], {e.name: new[e.name] for e in self.network.entries})

    # ------------------------------------------------------------------ evaluation
    def forward(self) -> Cache:
        """The engine's forward pass on the symbolic point: ``z[l]``, ``a[l]`` (batch of one)."""
        return self.network.forward(self.x, self.params)

    def output(self) -> np.ndarray:
        r""":math:`\hat{\mathbf y} = \mathbf f^{[L]}(\mathbf z^{[L]})`, expanded in x and θ."""
        return self.forward().output[0]

    def logits(self) -> np.ndarray:
        r""":math:`\mathbf z^{[L]}`, expanded in x and θ."""
        return self.forward().z[-1][0]

    def loss(self) -> sympy.Expr:
        r"""The per-sample loss :math:`\ell(\mathbf y, \hat{\mathbf y}(\theta))`, expanded (one sample)."""
        from .loss_expressions import loss_expression

        return loss_expression(self.network.loss, self.y, self.output())

    def jacobian_theta(self) -> Jacobian:
        r""":math:`\mathbf J_\theta\mathbf z^{[L]}` (engine, Damadi Alg. 1), exact SymPy entries; ``.to_sympy()`` materializes.

        The result remembers this network (``symbolic_network``): its display shows the entries with the named
        intermediates :math:`a^{[l]}_i`, :math:`z^{[l]}_i` (:meth:`BlockChain.explicit`) instead of every activation
        expanded into its formula."""
        J = self.network.jacobian_theta(self.x, self.params)
        J.symbolic_network = self
        return J

    def jacobian_input(self) -> Jacobian:
        r""":math:`\mathbf J_{\mathbf x}\mathbf z^{[L]}` with exact SymPy entries."""
        return self.network.jacobian_input(self.x, self.params)

    def __repr__(self) -> str:
        return f"SymbolicNetwork({self.network.describe()}; {len(self.symbols())} free symbols)"


def check_symbol_values(snet: SymbolicNetwork, values: Mapping[sympy.Symbol, Any], where: str) -> None:
    """Raise if ``values`` misses a free symbol of ``snet`` or names one it does not have."""
    syms = set(snet.symbols())
    extra = [s for s in values if s not in syms]
    if extra:
        raise UndefinedSymbolError(f"{where}: {extra[0]} is not a free symbol of network {snet.network.name!r}")
    missing = [s for s in snet.symbols() if s not in values]
    if missing:
        raise UndefinedSymbolError(f"{where}: no value for {len(missing)} free symbol(s), e.g. {missing[0]}")


def require_symbolic_network(obj: Any, who: str) -> SymbolicNetwork:
    """Return ``obj`` if it is a :class:`SymbolicNetwork`, else raise a ``TypeError`` naming ``who``."""
    if not isinstance(obj, SymbolicNetwork):
        hint = " (wrap it: SymbolicNetwork(network))" if isinstance(obj, Network) else ""
        raise SymbolicInputError(f"{who}: expected a SymbolicNetwork, received {type(obj).__name__}{hint}")
    return obj
