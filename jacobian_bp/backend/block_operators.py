r"""Block operators: horizontal and vertical stacks and block-diagonal operators.

* :class:`HStack` ``[B_1  B_2  ...]`` -- the Jacobian with respect to all parameters, one block per
  parameter group (Damadi Alg. 1 line 7);
* :class:`VStack` -- blocks with equal column counts stacked vertically (e.g. per-sample Jacobians);
* :class:`BlockDiag` :math:`\sum_i \mathbf E_{ii}\otimes\mathbf B_i` (Ganev Prop. 4.1).

Each keeps its blocks as operators, applies them blockwise, and materializes block by block (its
dense writes are its blocks' tasks on disjoint views of the result).  Import them from
:mod:`jacobian_bp.backend.operators`.
"""
from __future__ import annotations

from itertools import accumulate
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import sympy

from ..errors import ShapeError
from .operator_core import Operator, as_operator

__all__ = ["HStack", "VStack", "BlockDiag"]


class _Stack(Operator):
    def __init__(self, blocks: Sequence[Operator]):
        blocks = [as_operator(b) for b in blocks]
        if not blocks:
            raise ShapeError(f"{type(self).__name__}: needs at least one block")
        self.blocks = blocks
        self.symbolic = any(b.symbolic for b in blocks)

    @property
    def nnz(self):
        return sum(b.nnz for b in self.blocks)


class HStack(_Stack):
    r"""Horizontal stack ``[B_1  B_2  ...]`` (Damadi Alg. 1 line 7: blocks over parameter groups)."""

    structure = "block"

    def __init__(self, blocks):
        super().__init__(blocks)
        rows = {b.shape[0] for b in self.blocks}
        if len(rows) != 1:
            raise ShapeError(
                "HStack: all blocks must have the same number of rows, received shapes "
                + ", ".join(str(b.shape) for b in self.blocks)
            )
        self.offsets = list(accumulate([b.shape[1] for b in self.blocks], initial=0))
        self.shape = (rows.pop(), int(self.offsets[-1]))

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        out = np.zeros((self.shape[0], X.shape[1]), dtype=np.result_type(X, float))
        for b, o0, o1 in zip(self.blocks, self.offsets[:-1], self.offsets[1:]):
            out = out + b.matmat(X[o0:o1])
        return out

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        return np.concatenate([b.rmatmat(X) for b in self.blocks], axis=0)

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        return np.concatenate([b.left_matmat(M) for b in self.blocks], axis=1)

    @property
    def T(self):
        return VStack([b.T for b in self.blocks])

    def _dense(self):
        return np.concatenate([b._dense() for b in self.blocks], axis=1)

    def _dense_tasks(self, out):
        return [t for b, o0, o1 in zip(self.blocks, self.offsets[:-1], self.offsets[1:])
                for t in b._dense_tasks(out[:, o0:o1])]

    def _sparse(self):
        return sp.hstack([b._sparse() for b in self.blocks], format="csr")

    def _sympy(self):
        return sympy.Matrix.hstack(*[b._sympy() for b in self.blocks])


class VStack(_Stack):
    """Vertical stack of operators with equal column counts (e.g. per-sample Jacobians)."""

    structure = "block"

    def __init__(self, blocks):
        super().__init__(blocks)
        cols = {b.shape[1] for b in self.blocks}
        if len(cols) != 1:
            raise ShapeError(
                "VStack: all blocks must have the same number of columns, received shapes "
                + ", ".join(str(b.shape) for b in self.blocks)
            )
        self.offsets = list(accumulate([b.shape[0] for b in self.blocks], initial=0))
        self.shape = (int(self.offsets[-1]), cols.pop())

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        return np.concatenate([b.matmat(X) for b in self.blocks], axis=0)

    def rmatmat(self, X):
        return self.T.matmat(X)

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        out = None
        for b, o0, o1 in zip(self.blocks, self.offsets[:-1], self.offsets[1:]):
            part = b.left_matmat(M[:, o0:o1])
            out = part if out is None else out + part
        return out

    @property
    def T(self):
        return HStack([b.T for b in self.blocks])

    def _dense(self):
        return np.concatenate([b._dense() for b in self.blocks], axis=0)

    def _dense_tasks(self, out):
        return [t for b, o0, o1 in zip(self.blocks, self.offsets[:-1], self.offsets[1:])
                for t in b._dense_tasks(out[o0:o1, :])]

    def _sparse(self):
        return sp.vstack([b._sparse() for b in self.blocks], format="csr")

    def _sympy(self):
        return sympy.Matrix.vstack(*[b._sympy() for b in self.blocks])


class BlockDiag(_Stack):
    r"""Block-diagonal operator :math:`\sum_i \mathbf E_{ii}\otimes \mathbf B_i` (Ganev Prop. 4.1)."""

    structure = "block-diagonal"

    def __init__(self, blocks):
        super().__init__(blocks)
        self.row_off = list(accumulate([b.shape[0] for b in self.blocks], initial=0))
        self.col_off = list(accumulate([b.shape[1] for b in self.blocks], initial=0))
        self.shape = (int(self.row_off[-1]), int(self.col_off[-1]))

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        return np.concatenate(
            [b.matmat(X[c0:c1]) for b, c0, c1 in zip(self.blocks, self.col_off[:-1], self.col_off[1:])], axis=0
        )

    def rmatmat(self, X):
        return self.T.matmat(X)

    @property
    def T(self):
        return BlockDiag([b.T for b in self.blocks])

    def _dense(self):
        out = np.zeros(self.shape)
        for b, r0, r1, c0, c1 in zip(self.blocks, self.row_off[:-1], self.row_off[1:], self.col_off[:-1], self.col_off[1:]):
            out[r0:r1, c0:c1] = b._dense()
        return out

    def _sparse(self):
        return sp.block_diag([b._sparse() for b in self.blocks], format="csr")

    def _sympy(self):
        return sympy.diag(*[b._sympy() for b in self.blocks])
