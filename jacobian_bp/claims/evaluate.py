"""Evaluating a network claim: the (corrected) formula on every instance and layer, compared with the truth."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy

from ..errors import JacobianBPError
from .compare import _Outcome, _as_numeric, _compare_numeric, _compare_shape, _compare_symbolic
from .corrections import _OutCorrection, _apply_out, _divisor_pairs
from .instances import _InstanceData
from .model import FAILS, HOLDS, ILL_TYPED, _RANK, Claim, MissingQuantity
from .quantities import IllTypedOperation, Quantities, _Active, _Log, _QCorrection
from .targets import _truth


def _evaluate(claim: Claim, d: _InstanceData, l, qc: _QCorrection, oc: _OutCorrection,
              formula: Callable | None = None, target: str | None = None, exact: bool = True,
              log: _Log | None = None) -> _Outcome:
    """Evaluate the (corrected) claim on one instance and layer; never raises."""
    formula = formula or claim.formula
    target = target or claim.target
    log = log or _Log(qc)
    log.corr = qc
    log.l, log.L = l, d.L
    q = Quantities(d, log)
    try:
        with _Active(log):
            value = formula(q) if l is None else formula(q, l)
    except MissingQuantity as exc:
        return _Outcome(ILL_TYPED, np.inf, f"refers to a quantity the network lacks: {exc}")
    except IllTypedOperation as exc:
        return _Outcome(ILL_TYPED, np.inf, f"ill-typed {exc} (in {claim.name!r})")
    except (ValueError, TypeError, IndexError, ZeroDivisionError, ArithmeticError, AttributeError,
            KeyError, sympy.ShapeError, NotImplementedError, np.linalg.LinAlgError) as exc:
        return _Outcome(ILL_TYPED, np.inf, f"{_friendly(exc)} (in {claim.name!r})")
    except JacobianBPError as exc:
        return _Outcome(ILL_TYPED, np.inf, f"the formula raised {type(exc).__name__}: {exc}"[:300])
    except Exception as exc:  # noqa: BLE001 - a claim is arbitrary user code; never crash the checker
        return _Outcome(ILL_TYPED, np.inf, f"the formula raised {type(exc).__name__}: {exc}"[:300])
    try:
        truth = _truth(d, target, None if l is None else l + claim.target_offset, claim.form)
    except MissingQuantity as exc:
        return _Outcome(ILL_TYPED, np.inf, f"the target does not exist: {exc}")
    except Exception as exc:  # noqa: BLE001 - e.g. a layer index the target does not accept
        return _Outcome(ILL_TYPED, np.inf, f"the target {target!r} cannot be evaluated at l = {l} "
                                           f"({type(exc).__name__}: {exc})")
    if claim.states == "shape":
        return _compare_shape(value, np.shape(truth) if not d.symbolic else tuple(sympy.Matrix(truth).shape))
    variants = [oc]
    if oc.row_perm == "any" or oc.col_perm == "any":  # the commutation matrix of this instance's shape
        shape = tuple(sympy.Matrix(value).shape) if d.symbolic else np.shape(_as_numeric(value))
        if len(shape) != 2:
            return _Outcome(ILL_TYPED, np.inf, "correction not applicable (not a matrix)")
        side = 0 if oc.row_perm == "any" else 1
        variants = [_OutCorrection(factor=oc.factor, transpose=oc.transpose,
                                   row_perm=pr if side == 0 else None, col_perm=pr if side == 1 else None)
                    for pr in _divisor_pairs(shape[side])]
        if not variants:
            return _Outcome(ILL_TYPED, np.inf, "correction not applicable (no nontrivial factorization)")
    out = None
    for v in variants:
        try:
            val = _apply_out(v, value, d, target, l)
        except Exception as exc:  # noqa: BLE001 - a correction that does not apply
            out = _Outcome(ILL_TYPED, np.inf, f"correction not applicable ({type(exc).__name__}: {exc})")
            continue
        out = _compare_symbolic(d, val, truth, exact) if d.symbolic else _compare_numeric(val, truth)
        if out.status == HOLDS:
            return out
    return out


def _friendly(exc: Exception) -> str:
    """A one-line reason for an exception raised by a formula (NumPy's shape errors made readable)."""
    import re

    msg = str(exc).splitlines()[0] if str(exc) else ""
    m = re.search(r"matmul: .*size (\d+) is different from (\d+)", msg)
    if m:
        return f"ill-typed matrix product: inner dimensions {m.group(2)} and {m.group(1)} differ"
    m = re.search(r"along dimension (\d+), the array at index (\d+) has size (\d+) and the array at index (\d+) "
                  r"has size (\d+)", msg)
    if m:
        return (f"blocks of incompatible sizes stacked: block {int(m.group(2)) + 1} has {m.group(3)}, block "
                f"{int(m.group(4)) + 1} has {m.group(5)} along axis {m.group(1)}")
    m = re.search(r"operands could not be broadcast together with shapes (\S+) (\S+)", msg)
    if m:
        return f"elementwise operation on incompatible shapes {m.group(1)} and {m.group(2)}"
    if type(exc).__name__ == "NonSquareMatrixError":
        return "ill-typed matrix power of a non-square SymPy matrix (use q's arrays: ** is elementwise on them)"
    if isinstance(exc, sympy.ShapeError):
        return f"ill-typed SymPy matrix operation: {msg or 'shapes do not match'}"[:300]
    if not msg:
        return f"the formula raised {type(exc).__name__}"
    return f"the formula raised {type(exc).__name__}: {msg}"[:300]


@dataclass
class _Run:
    verdict: str
    outcomes: list  # (instance, l, _Outcome)
    max_error: float


def _run(claim: Claim, instances: list, qc: _QCorrection = _QCorrection(), oc: _OutCorrection = _OutCorrection(),
         formula=None, target=None, stop_early: bool = False, logs: list | None = None, exact: bool = True) -> _Run:
    outs = []
    worst = HOLDS
    maxerr = 0.0
    for d in instances:
        for l in claim.layer_range(d.L):
            log = _Log(qc)
            o = _evaluate(claim, d, l, qc, oc, formula, target, exact=exact, log=log)
            if logs is not None:
                logs.append((d, l, log))
            outs.append((d, l, o))
            if _RANK[o.status] > _RANK[worst]:
                worst = o.status
            if o.status != ILL_TYPED and np.isfinite(o.err):
                maxerr = max(maxerr, o.err)
            elif o.status == FAILS:
                maxerr = np.inf
            if stop_early and o.status != HOLDS:
                return _Run(worst, outs, maxerr)
    return _Run(worst, outs, maxerr)
