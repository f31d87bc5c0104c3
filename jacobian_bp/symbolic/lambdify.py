r"""Compile symbolic gradients and Jacobians to NumPy, and cross-check them with the numeric engine.

* :func:`lambdify_gradient` turns a :class:`~jacobian_bp.symbolic.gradients.NamedGradient`
  into a NumPy function.  The named intermediates become local variables of the generated
  code, in evaluation order (SymPy's ``lambdify`` with the definitions passed as its
  common-subexpression list), so the compiled gradient costs what backpropagation costs
  instead of what the expanded expression costs.  Inputs may carry a batch axis: the
  function then returns the per-sample gradients.
* :func:`lambdify_matrix` compiles a SymPy matrix (e.g. ``snet.jacobian_theta().to_sympy()``
  or a named layer Jacobian) to a function returning a dense array, or a
  :class:`scipy.sparse.csr_array` with the matrix's structural sparsity pattern (the
  entries that are exactly zero symbolically are never evaluated).
* :func:`cross_check_gradient` / :func:`cross_check_jacobian` evaluate both the compiled
  symbolic object and the numeric engine (:meth:`Network.gradient`,
  :meth:`Network.jacobian_theta`) at one numeric point and report the largest difference.

Numeric values are given in the same form as to the numeric engine: ``x``, ``y`` (single
sample, or a batch laid out per the convention's batch axis) and ``params`` in the
convention's layout.  Only the entries that are free symbols of the
:class:`~jacobian_bp.symbolic.networks.SymbolicNetwork` are read; substituted entries keep
their substituted values.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import sympy
from sympy.core.function import AppliedUndef

from ..errors import ShapeError
from .errors import UndefinedSymbolError
from .gradients import NamedGradient, named_gradient
from .networks import SymbolicNetwork, as_sympy_entry, require_symbolic_network

__all__ = ["LambdifiedGradient", "LambdifiedMatrix", "lambdify_gradient", "lambdify_matrix",
           "symbol_values", "cross_check_gradient", "cross_check_jacobian"]


def _check_lambdifiable(exprs, what: str) -> None:
    for e in exprs:
        if isinstance(e, sympy.Basic) and e.has(AppliedUndef):
            f = next(iter(e.atoms(AppliedUndef))).func
            raise TypeError(f"cannot lambdify {what}: it contains the undefined function {f} (a GenericActivation); "
                            "substitute a concrete activation to evaluate it numerically")


def _safe_names(symbols: Sequence[sympy.Symbol], prefix: str) -> dict:
    """Valid Python identifiers for symbols named in LaTeX (``w^{[1]}_{12}`` is not one)."""
    return {s: sympy.Symbol(f"{prefix}{k}", real=True) for k, s in enumerate(symbols)}


def _gather_plan(snet: SymbolicNetwork) -> dict:
    """``{symbol: (tensor name, flat index)}`` of the first plain occurrence of every symbol entry."""
    plan: dict = {}
    for name, arr in snet.arrays().items():
        for k, v in enumerate(arr.flat):
            if isinstance(v, sympy.Symbol) and v not in plan:
                plan[v] = (name, k)
    return plan


def symbol_values(snet: SymbolicNetwork, x, y=None, params: Mapping[str, Any] | None = None,
                  extra: Mapping[sympy.Symbol, Any] | None = None,
                  needed: Sequence[sympy.Symbol] | None = None, plan: dict | None = None) -> tuple[dict, bool]:
    r"""Numeric values of the free symbols of ``snet``, read from engine-style arrays.

    Parameters
    ----------
    x, y : array-like
        One sample (``input_shape``, ``(n_L,)``) or a batch in the convention's layout
        (validated by :meth:`Network.as_batch`); a batch gives length-``N`` value arrays.
    params : dict, optional
        Numeric parameters in the convention's layout (validated by
        :meth:`Network.canonical_params`); needed when θ has free symbols.
    extra : mapping Symbol -> number, optional
        Values of free symbols that are not plain entries of x, y or θ (e.g. a symbol that
        was substituted into a tied weight ``2 t``).
    needed : sequence of Symbol, optional
        The symbols that must receive a value (default: every free symbol of ``snet``).
    plan : dict, optional
        A precomputed ``_gather_plan(snet)`` (speeds up repeated calls).

    Returns
    -------
    (dict[Symbol, float or ndarray], bool)
        The values and whether the input was a single sample.
    """
    net = require_symbolic_network(snet, "symbol_values").network
    Xb, Yb, single = net.as_batch(x, y)
    flat = {"x": Xb.reshape(Xb.shape[0], -1)}
    if Yb is not None:
        flat["y"] = Yb.reshape(Yb.shape[0], -1)
    if params is not None:
        net.canonical_params(params, symbolic_ok=False)  # validates names, shapes, finiteness
        for name in snet.params:
            flat[name] = np.asarray(params[name], dtype=float).ravel()
    values: dict = {}
    for sym, (name, k) in (plan if plan is not None else _gather_plan(snet)).items():
        if name in flat:
            arr = flat[name]
            values[sym] = (arr[0, k] if single else arr[:, k]) if arr.ndim == 2 else arr[k]
    for s, v in (extra or {}).items():
        if not isinstance(s, sympy.Symbol):
            raise TypeError(f"symbol_values: keys of extra must be SymPy symbols, received {type(s).__name__}")
        values[s] = np.asarray(v, dtype=float)
    missing = [s for s in (snet.symbols() if needed is None else needed) if s not in values]
    if missing:
        hint = "pass y" if (y is None and any(s in set(snet.y.flat) for s in missing)) else \
            "pass params" if params is None else "pass extra={symbol: value}"
        raise UndefinedSymbolError(f"no numeric value for {len(missing)} free symbol(s) of network "
                                   f"{net.name!r}, e.g. {missing[0]}; {hint}")
    return values, single


class LambdifiedGradient:
    r"""A NumPy function of a :class:`NamedGradient`: ``f(x, y, params)`` -> :math:`\nabla_\theta\ell`.

    Call with engine-style arrays; returns the gradient in θ order, ``(|θ|,)`` for one
    sample or ``(N, |θ|)`` per-sample gradients for a batch (``reduce=True`` applies the
    convention's sum/mean, as :meth:`Network.gradient` does).

    Attributes
    ----------
    symbols : list of Symbol
        The free symbols, in the order of the generated function's arguments.
    source : str
        The generated Python source.
    """

    def __init__(self, gradient: NamedGradient):
        if not isinstance(gradient, NamedGradient):
            raise TypeError(f"LambdifiedGradient: expected a NamedGradient, received {type(gradient).__name__}")
        self.gradient = gradient
        self.snet = gradient.snet
        self.symbols = self.snet.symbols()
        self._symbol_set = set(self.symbols)
        self._plan = _gather_plan(self.snet)
        _check_lambdifiable([e for _, e in gradient.definitions] + list(gradient.vector), "the gradient")
        named = [s for s, _ in gradient.definitions]
        rename = _safe_names(self.symbols, "p")
        rename.update(_safe_names(named, "t"))
        defs = [(rename[s], e.xreplace(rename)) for s, e in gradient.definitions]
        outs = [as_sympy_entry(e, "gradient entry").xreplace(rename) for e in gradient.vector]
        args = [rename[s] for s in self.symbols]
        self._fn = sympy.lambdify(args, outs, modules="numpy", cse=lambda exprs: (defs, list(exprs)), docstring_limit=0)
        self.source = self._fn.__doc__ or ""
        import inspect

        try:
            self.source = inspect.getsource(self._fn)
        except (OSError, TypeError):  # pragma: no cover - generated code without source
            pass

    def evaluate(self, values: Mapping[sympy.Symbol, Any]) -> np.ndarray:
        """Evaluate at ``{symbol: value}`` (every free symbol needed); values may be arrays of one length."""
        missing = [s for s in self.symbols if s not in values]
        if missing:
            raise UndefinedSymbolError(f"LambdifiedGradient.evaluate: no value for {missing[0]} (and {len(missing) - 1} more)")
        extra = [s for s in values if s not in self._symbol_set]
        if extra:
            raise UndefinedSymbolError(f"LambdifiedGradient.evaluate: {extra[0]} is not a free symbol of the gradient")
        out = self._fn(*[values[s] for s in self.symbols])
        if all(np.ndim(v) == 0 for v in out):
            return np.array(out, dtype=float)
        return np.stack(np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in out]), axis=-1)

    def __call__(self, x, y, params: Mapping[str, Any] | None = None, reduce: bool = False,
                 extra: Mapping[sympy.Symbol, Any] | None = None) -> np.ndarray:
        values, single = symbol_values(self.snet, x, y, params, extra, self.symbols, self._plan)
        g = self.evaluate(values)
        if single or not reduce:
            return g
        g = np.atleast_2d(g)
        return g.sum(axis=0) * self.snet.network.reduce_factor(g.shape[0])


def lambdify_gradient(obj: "NamedGradient | SymbolicNetwork") -> LambdifiedGradient:
    """Compile a named gradient (or the named gradient of a symbolic network) to NumPy."""
    if isinstance(obj, SymbolicNetwork):
        obj = named_gradient(obj)
    return LambdifiedGradient(obj)


class LambdifiedMatrix:
    r"""A NumPy function of a SymPy matrix, dense or sparse.

    Parameters
    ----------
    matrix : sympy.MatrixBase or Jacobian
        A Jacobian is materialized with ``to_sympy()`` (after the memory guard).
    symbols : sequence of Symbol
        The arguments, in order.
    sparse : bool or "auto"
        Return a :class:`scipy.sparse.csr_array` with the structural pattern (entries that
        are not identically zero).  ``"auto"``: sparse when at most half of the entries are
        structurally non-zero (CSR then needs less memory than the dense array).
    definitions : list of (Symbol, Expr), optional
        Named intermediates used by the entries, in evaluation order (e.g. a
        :class:`NamedGradient`'s definitions); they become local variables.
    """

    def __init__(self, matrix, symbols: Sequence[sympy.Symbol], sparse: "bool | str" = "auto",
                 definitions: Sequence = ()):
        from ..engine.jacobian import Jacobian

        if isinstance(matrix, Jacobian):
            matrix = matrix.to_sympy()
        if not isinstance(matrix, sympy.MatrixBase):
            raise TypeError(f"lambdify_matrix: expected a SymPy matrix or a Jacobian, received {type(matrix).__name__}")
        if sparse not in (True, False, "auto"):
            raise ValueError(f"lambdify_matrix: sparse must be True, False or 'auto', received {sparse!r}")
        self.shape = tuple(matrix.shape)
        self.symbols = list(symbols)
        for s in self.symbols:
            if not isinstance(s, sympy.Symbol):
                raise TypeError(f"lambdify_matrix: arguments must be SymPy symbols, received {s!r}")
        named = [s for s, _ in definitions]
        allowed = set(self.symbols) | set(named)
        free = set().union(*(as_sympy_entry(e, "matrix entry").free_symbols for e in matrix)) if len(matrix) else set()
        undefined = free - allowed
        if undefined:
            raise UndefinedSymbolError(
                f"lambdify_matrix: the matrix depends on {sorted(map(str, undefined))[:3]} which are neither "
                "arguments nor named intermediates")
        _check_lambdifiable(list(matrix) + [e for _, e in definitions], "the matrix")
        rows, cols, entries = [], [], []
        for (i, j), e in np.ndenumerate(np.array(matrix.tolist(), dtype=object).reshape(self.shape)):
            if e != 0:
                rows.append(i)
                cols.append(j)
                entries.append(e)
        self.nnz = len(entries)
        total = self.shape[0] * self.shape[1]
        self.sparse = bool(sparse) if sparse != "auto" else (2 * self.nnz <= total)
        self._rows, self._cols = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)
        rename = _safe_names(self.symbols, "p")
        rename.update(_safe_names(named, "t"))
        defs = [(rename[s], as_sympy_entry(e, f"definition of {s}").xreplace(rename)) for s, e in definitions]
        outs = [as_sympy_entry(e, "matrix entry").xreplace(rename) for e in entries]
        self._fn = sympy.lambdify([rename[s] for s in self.symbols], outs, modules="numpy",
                                  cse=lambda exprs: (defs, list(exprs)), docstring_limit=0)

    def __call__(self, *values):
        """Evaluate at scalar values of :attr:`symbols` (positional), or one mapping ``{symbol: value}``."""
        if len(values) == 1 and isinstance(values[0], Mapping):
            m = values[0]
            missing = [s for s in self.symbols if s not in m]
            if missing:
                raise UndefinedSymbolError(f"LambdifiedMatrix: no value for {missing[0]}")
            values = tuple(m[s] for s in self.symbols)
        if len(values) != len(self.symbols):
            raise ShapeError(f"LambdifiedMatrix: expected {len(self.symbols)} values, received {len(values)}")
        data = np.array([float(v) for v in self._fn(*values)], dtype=float) if self.nnz else np.zeros(0)
        if self.sparse:
            return sp.csr_array((data, (self._rows, self._cols)), shape=self.shape)
        out = np.zeros(self.shape)
        out[self._rows, self._cols] = data
        return out


def lambdify_matrix(matrix, symbols: Sequence[sympy.Symbol], sparse: "bool | str" = "auto",
                    definitions: Sequence = ()) -> LambdifiedMatrix:
    """See :class:`LambdifiedMatrix`."""
    return LambdifiedMatrix(matrix, symbols, sparse, definitions)


def cross_check_gradient(snet: SymbolicNetwork, x, y, params, gradient: NamedGradient | None = None) -> float:
    r"""Largest absolute difference between the compiled symbolic gradient and :meth:`Network.gradient`.

    Both are evaluated at the same numeric point (a batch is reduced per the convention).
    The numeric point must agree with every value already substituted into ``snet``.
    """
    _check_substituted_agree(snet, x, y, params)
    f = lambdify_gradient(gradient if gradient is not None else snet)
    sym = f(x, y, params, reduce=True)
    num = snet.network.gradient(x, y, params).vector
    return float(np.max(np.abs(sym - num)))


def cross_check_jacobian(snet: SymbolicNetwork, x, params, sparse: "bool | str" = "auto") -> float:
    r"""Largest absolute difference between the compiled exact :math:`\mathbf J_\theta\mathbf z^{[L]}`
    (``snet.jacobian_theta().to_sympy()``) and the engine's numeric one at one sample."""
    _check_substituted_agree(snet, x, None, params)
    M = snet.jacobian_theta().to_sympy()
    syms = [s for s in snet.symbols() if s in M.free_symbols]
    values, single = symbol_values(snet, x, None, params, needed=syms)
    if not single:
        raise ShapeError("cross_check_jacobian: expected one sample")
    f = lambdify_matrix(M, syms, sparse)
    J = f(*[values[s] for s in syms])
    J = J.toarray() if sp.issparse(J) else J
    return float(np.max(np.abs(J - snet.network.jacobian_theta(x, params).to_dense())))


def _check_substituted_agree(snet: SymbolicNetwork, x, y, params) -> None:
    net = require_symbolic_network(snet, "cross-check").network
    Xb, Yb, _ = net.as_batch(x, y)
    given = {"x": Xb}
    if y is not None:
        given["y"] = Yb
    user = net.user_params(net.canonical_params(params, symbolic_ok=False))
    for name, arr in snet.arrays().items():
        for idx in np.ndindex(*arr.shape):
            v = arr[idx]
            if isinstance(v, sympy.Basic) and not v.free_symbols:
                num = given[name][(slice(None),) + idx] if name in given else (
                    np.asarray(user[name])[idx] if name in user else None)
                if num is not None and not np.allclose(np.asarray(num, dtype=float), float(v), rtol=1e-12, atol=1e-12):
                    raise ValueError(f"cross-check: {name}[{', '.join(map(str, idx))}] was substituted by {v} "
                                     f"but the numeric point gives {num}")
