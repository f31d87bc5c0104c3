r"""Compare a claimed Jacobian block with a reference one, locate the wrong entries and name the mistake.

A block is a matrix :math:`\mathbf J\in\mathbb R^{m\times n}`: rows are the entries of a layer's output
(shape ``out_shape``, row-major), columns the entries of its input or of one parameter (shape
``col_shape``, row-major, as ``torch.flatten``).  :func:`compare_block` marks an entry wrong when
:math:`|C_{ij}-T_{ij}| > \mathrm{tol}\cdot\max(\max|T|, \max|C|)` and :func:`diagnose` names the
mistake from the whole block and from the wrong entries alone, the small local classifier the
layer-by-layer checks use (the claim checker's diagnosis lives a floor up, in :mod:`jacobian_bp.claims`):

* the whole block: zero (no gradient flows), :math:`-\mathbf J` (sign), :math:`k\mathbf J` (a factor:
  2, ½, 1/N, ...), :math:`\mathbf J^\top` (a square input block), the columns of a square matrix
  parameter transposed (the gradient of :math:`\mathbf W^\top` returned for :math:`\mathbf W`), and the
  last two with the sign flipped;
* the wrong entries alone: a common factor, a sign flip, zeros where the truth is not, nonzeros
  where it is zero, and whether they sit in one row (one output entry) or one column (one input or
  parameter entry).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

import numpy as np

__all__ = ["BlockCheck", "compare_block", "diagnose", "transpose_permutation"]

#: how many wrong entries a report lists
MAX_LISTED = 12


@dataclass
class BlockCheck:
    """One block of one layer's Jacobian, a claim against a reference.

    ``wrong`` lists up to :data:`MAX_LISTED` wrong entries as ``(output index, column index, claimed,
    reference)``, indices as tuples in ``out_shape`` and ``col_shape``.
    """

    block: str  # "input", "weight", "bias", ...
    claim: str  # "explicit Jacobian", "torch autograd (the module's backward)"
    reference: str  # "torch autograd", "central differences", "SymPy"
    shape: tuple
    max_abs: float
    rel: float
    tol: float
    n_wrong: int = 0
    wrong: list = field(default_factory=list)
    diagnosis: str = ""
    sample: "int | None" = None  # which sample of the batch (None: the only one)

    @property
    def ok(self) -> bool:
        return self.n_wrong == 0

    def describe(self) -> str:
        tag = "" if self.sample is None else f" (sample {self.sample})"
        head = (f"{self.block}{tag}: {self.claim} vs {self.reference}, {self.shape[0]}x{self.shape[1]}, "
                f"max abs err {self.max_abs:.3g}, rel {self.rel:.2e} (tol {self.tol:.0e})")
        if self.ok:
            return head + ": agree"
        lines = [head + f": {self.n_wrong} wrong entr{'y' if self.n_wrong == 1 else 'ies'}",
                 f"    diagnosis: {self.diagnosis}"]
        for o, c, got, want in self.wrong:
            lines.append(f"    d out{list(o)} / d {self.block}{list(c)}: claimed {got + 0.0:.6g}, reference {want + 0.0:.6g}")
        if self.n_wrong > len(self.wrong):
            lines.append(f"    ... and {self.n_wrong - len(self.wrong)} more")
        return "\n".join(lines)


def transpose_permutation(shape: tuple) -> "np.ndarray | None":
    """For a square matrix parameter ``(r, r)``: column ``idx(i, j)`` ↦ ``idx(j, i)`` (row-major); else None."""
    if len(shape) != 2 or shape[0] != shape[1]:
        return None
    r = shape[0]
    return np.arange(r * r).reshape(r, r).T.ravel()


def _close(A: np.ndarray, B: np.ndarray, atol: float) -> bool:
    return A.shape == B.shape and bool(np.all(np.abs(A - B) <= atol))


def _fmt_factor(k: float) -> str:
    for num, txt in ((2.0, "2"), (0.5, "1/2"), (-1.0, "-1"), (-2.0, "-2"), (-0.5, "-1/2")):
        if abs(k - num) <= 1e-6 * abs(num):
            return txt
    inv = 1.0 / k if k else np.inf
    if np.isfinite(inv) and abs(inv - round(inv)) <= 1e-6 * abs(inv) and abs(round(inv)) > 1:
        return f"1/{int(round(inv))}"
    return f"{k:.6g}"


def diagnose(C: np.ndarray, T: np.ndarray, atol: float, col_shape: tuple = (), square_input: bool = False) -> str:
    """Name the mistake of the claim ``C`` against the reference ``T`` (see the module docstring)."""
    wrong = np.abs(C - T) > atol
    if not wrong.any():
        return "agree"
    if not np.any(np.abs(C) > atol):
        return "the claimed block is zero: no gradient flows through this block (a missing or detached backward)"
    if _close(C, -T, atol):
        return "sign flipped: the claim is -J"
    tt = float(np.sum(T * T))
    if tt > 0:
        k = float(np.sum(C * T)) / tt
        if abs(k - 1) > 1e-9 and _close(C, k * T, atol):
            return f"scaled: the claim is {_fmt_factor(k)} x J (a factor {_fmt_factor(k)} too many or missing)"
    if square_input and C.shape[0] == C.shape[1]:
        if _close(C, T.T, atol):
            return "transposed: the claim is J^T (rows and columns swapped)"
        if _close(C, -T.T, atol):
            return "transposed and sign flipped: the claim is -J^T"
    perm = transpose_permutation(tuple(col_shape))
    if perm is not None and perm.size == T.shape[1]:
        if _close(C, T[:, perm], atol):
            return ("transposed parameter: the columns are those of the transposed matrix "
                    "(the gradient of W^T returned for W)")
        if _close(C, -T[:, perm], atol):
            return "transposed parameter and sign flipped"
    return _local(C, T, wrong, atol, col_shape)


def _local(C: np.ndarray, T: np.ndarray, wrong: np.ndarray, atol: float, col_shape: tuple) -> str:
    """The wrong entries alone: what they have in common, and where they sit."""
    c, t = C[wrong], T[wrong]
    n = int(wrong.sum())
    what = "wrong values"
    if np.all(np.abs(c) <= atol):
        what = "zero where the reference is not (a missing term)"
    elif np.all(np.abs(t) <= atol):
        what = "nonzero where the reference is zero (a spurious term)"
    elif np.all(np.abs(c + t) <= atol):
        what = "sign flipped at these entries"
    else:
        ratio = c / np.where(t == 0, np.nan, t)
        if np.all(np.isfinite(ratio)) and np.ptp(ratio) <= 1e-6 * max(abs(float(ratio[0])), 1e-300):
            what = f"scaled by {_fmt_factor(float(ratio[0]))} at these entries"
    rows, cols = np.nonzero(wrong)
    where = ""
    if len(set(rows)) == 1 and n > 1:
        where = f", all in output row {int(rows[0])}"
    elif len(set(cols)) == 1 and n > 1:
        where = f", all in column {int(cols[0])}"
    elif np.all(rows == cols) and C.shape[0] == C.shape[1]:
        where = ", on the diagonal"
    total = C.size
    return f"{n} of {total} entries wrong: {what}{where}"


def compare_block(C, T, *, block: str, claim: str, reference: str, tol: float, out_shape: tuple,
                  col_shape: tuple, square_input: bool = False) -> BlockCheck:
    """Compare the claim ``C`` with the reference ``T`` (both ``(prod(out_shape), prod(col_shape))``).

    Returns a :class:`BlockCheck` with the error, the wrong entries (indices in ``out_shape`` and
    ``col_shape``) and the diagnosis.
    """
    C = np.asarray(C, dtype=np.float64).reshape(prod(out_shape), prod(col_shape))
    T = np.asarray(T, dtype=np.float64).reshape(prod(out_shape), prod(col_shape))
    scale = max(float(np.max(np.abs(T))) if T.size else 0.0, float(np.max(np.abs(C))) if C.size else 0.0, 1e-300)
    atol = tol * scale
    diff = np.abs(C - T)
    max_abs = float(diff.max()) if diff.size else 0.0
    ref_norm = float(np.linalg.norm(T))
    rel = float(np.linalg.norm(C - T)) / max(ref_norm, float(np.linalg.norm(C)), 1e-300)
    wrong = diff > atol
    out = BlockCheck(block, claim, reference, (C.shape[0], C.shape[1]), max_abs, rel, tol, int(wrong.sum()))
    if out.n_wrong:
        rows, cols = np.nonzero(wrong)
        order = np.argsort(-diff[rows, cols], kind="stable")[:MAX_LISTED]
        for k in sorted(order, key=lambda k: (rows[k], cols[k])):
            r, c = int(rows[k]), int(cols[k])
            out.wrong.append((tuple(int(i) for i in np.unravel_index(r, out_shape)),
                              tuple(int(i) for i in np.unravel_index(c, col_shape)), float(C[r, c]), float(T[r, c])))
        out.diagnosis = diagnose(C, T, atol, col_shape, square_input)
    return out
