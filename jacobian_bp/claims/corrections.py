"""Output-level candidate corrections: a factor or sign, a transpose, a commutation permutation,
θ blocks in the opposite order, an unreduced batch axis -- and how one is applied to a value.

(The mistake taxonomy itself is :class:`~.model.Mistake`; quantity-level corrections are
:class:`~.quantities._QCorrection`; which candidates to try is decided in :mod:`.diagnose`.)
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import sympy

from ..backend.exact import exact_number
from ..engine.conventions import commutation_matrix
from .compare import _as_numeric, _sym_matrix
from .instances import _InstanceData
from .model import Mistake


@dataclass(frozen=True)
class _OutCorrection:
    """Output-level correction: c · P_r · C^(T) · P_c (+ block reorder, + reduction)."""

    factor: Any = 1  # number or ("N", power, const)
    transpose: bool = False
    row_perm: tuple | None = None  # (p, r): rows permuted by K_{p,r}
    col_perm: tuple | None = None
    reverse_blocks: bool = False
    reduce_axis: tuple | None = None  # (axis, "sum"|"mean")


_FACTORS = [
    (-1, "corrected formula −C", Mistake.SIGN),
    (2, "factor 2 missing: corrected formula 2·C", Mistake.FACTOR),
    (Fraction(1, 2), "factor ½ missing (or an extra 2): corrected formula C/2", Mistake.FACTOR),
    (-2, "sign flipped and factor 2 missing: corrected formula −2·C", Mistake.SIGN),
    (Fraction(-1, 2), "sign flipped and factor ½ missing: corrected formula −C/2", Mistake.SIGN),
    (("N", -1, 1), "factor 1/N missing (summed where the convention averages): corrected formula C/N", Mistake.REDUCTION),
    (("N", 1, 1), "extra factor 1/N (averaged where the convention sums): corrected formula N·C", Mistake.REDUCTION),
    (("N", -1, -1), "sign flipped and factor 1/N missing: corrected formula −C/N", Mistake.SIGN),
    (("N", 1, -1), "sign flipped and extra factor 1/N: corrected formula −N·C", Mistake.SIGN),
    (("N", -1, 2), "factors 2 and 1/N missing: corrected formula 2C/N", Mistake.FACTOR),
    (("N", -1, Fraction(1, 2)), "factors ½ and 1/N missing: corrected formula C/(2N)", Mistake.FACTOR),
    (("N", 1, 2), "corrected formula 2N·C", Mistake.FACTOR),
    (("N", 1, Fraction(1, 2)), "corrected formula N·C/2", Mistake.FACTOR),
]


#: normalizers other than N and 2 (K = n_L, the number of outputs or classes): a mean over the outputs
#: (PyTorch's MSELoss) or over all N·K elements taken where the convention sums, or the reverse.
#: Each factor is ("NK", power of N, power of K, constant).
_K_FACTORS = [
    (("NK", 0, 1, 1), "extra factor 1/K (K = n_L outputs: averaged over the outputs where the loss sums them): "
                      "corrected formula K·C", Mistake.NORMALIZER),
    (("NK", 0, -1, 1), "factor 1/K missing (K = n_L outputs: the loss averages over the outputs): corrected formula "
                       "C/K", Mistake.NORMALIZER),
    (("NK", 1, 1, 1), "extra factor 1/(N·K) (averaged over all N·K elements where the cost sums): corrected formula "
                      "N·K·C", Mistake.NORMALIZER),
    (("NK", -1, -1, 1), "factor 1/(N·K) missing (the cost averages over all N·K elements): corrected formula "
                        "C/(N·K)", Mistake.NORMALIZER),
    (("NK", -1, 1, 1), "1/K where 1/N is needed (averaged over the outputs instead of the samples): corrected "
                       "formula K·C/N", Mistake.NORMALIZER),
    (("NK", 1, -1, 1), "1/N where 1/K is needed (averaged over the samples instead of the outputs): corrected "
                       "formula N·C/K", Mistake.NORMALIZER),
    (("NK", 0, 1, 2), "factors 2 and 1/K missing or misplaced: corrected formula 2K·C", Mistake.NORMALIZER),
    (("NK", 0, -1, 2), "factor 2/K missing (the derivative of the mean square over K outputs): corrected formula "
                       "2C/K", Mistake.NORMALIZER),
    (("NK", -1, -1, 2), "factor 2/(N·K) missing (PyTorch's MSELoss): corrected formula 2C/(N·K)", Mistake.NORMALIZER),
    (("NK", 1, 1, Fraction(1, 2)), "extra factor 2/(N·K): corrected formula N·K·C/2", Mistake.NORMALIZER),
]


def _factor_value(f, N: int, K: int = 1):
    if isinstance(f, tuple):
        if f[0] == "NK":
            _, pn, pk, c = f
            return (sympy.Integer(N) ** pn) * (sympy.Integer(K) ** pk) * exact_number(c)
        _, p, c = f
        return (sympy.Integer(N) ** p) * exact_number(c)
    return exact_number(f)


def _perm_matrix(p: int, r: int) -> np.ndarray:
    return commutation_matrix(p, r).toarray()


def _apply_out(oc: _OutCorrection, value, d: _InstanceData, target: str, l):
    if oc == _OutCorrection():
        return value
    if d.symbolic and not isinstance(value, sympy.MatrixBase):
        value = _sym_matrix(value)  # object arrays of SymPy expressions (and plain numbers) as a matrix
    sym = isinstance(value, sympy.MatrixBase)
    if not sym:
        value = _as_numeric(value)
        if value.ndim == 1:
            value = value.reshape(-1, 1)
    if oc.reduce_axis is not None:
        ax, how = oc.reduce_axis
        if sym:
            raise TypeError("reduction corrections are numeric only")
        value = value.sum(axis=ax, keepdims=True) if how == "sum" else value.mean(axis=ax, keepdims=True)
    if oc.transpose:
        value = value.T
    if oc.reverse_blocks:
        value = _reverse_theta_blocks(value, d, target)
    if oc.row_perm is not None:
        P = _perm_matrix(*oc.row_perm)
        value = (sympy.Matrix(P.astype(int)) * value) if sym else P @ value
    if oc.col_perm is not None:
        P = _perm_matrix(*oc.col_perm)
        value = (value * sympy.Matrix(P.T.astype(int))) if sym else value @ P.T
    if oc.factor != 1:
        c = _factor_value(oc.factor, d.N, int(d.widths[-1]) if d.widths else 1)
        value = value * c if sym else value * float(c)
    return value


def _theta_sizes(d: _InstanceData) -> list[int]:
    """Sizes of the per-layer [W, b] blocks in the convention's θ order (forward or reverse)."""
    w = d.widths
    L = len(w) - 1
    order = range(L, 0, -1) if d.conv.theta_order == "reverse" else range(1, L + 1)
    return [w[l - 1] * w[l] + w[l] for l in order]


def _reverse_theta_blocks(value, d: _InstanceData, target: str):
    sizes = _theta_sizes(d)
    if target == "grad_theta":
        axis = 0
    elif target == "J_theta":
        axis = 1
    else:
        raise TypeError("block order applies to θ-shaped targets only")
    n = value.shape[axis]
    if n != sum(sizes):
        raise ValueError(f"θ has {sum(sizes)} entries, the formula {n}")
    rev_sizes = sizes[::-1]
    # the claim's blocks are in the reversed order: block k of the claim has size rev_sizes[k]
    offs_c = np.cumsum([0] + rev_sizes)
    pieces = []
    for k in range(len(sizes) - 1, -1, -1):
        sl = slice(int(offs_c[k]), int(offs_c[k + 1]))
        pieces.append(value[sl, :] if axis == 0 else value[:, sl])
    if isinstance(value, sympy.MatrixBase):
        return sympy.Matrix.vstack(*pieces) if axis == 0 else sympy.Matrix.hstack(*pieces)
    return np.concatenate(pieces, axis=axis)


def _divisor_pairs(n: int) -> list[tuple[int, int]]:
    return [(p, n // p) for p in range(2, n) if n % p == 0]
