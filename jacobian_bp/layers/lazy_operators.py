r"""Small lazy operators shared by the layer families' own Jacobian operators.

* :class:`RowOperator` -- the base of an operator applied through its rows: a subclass gives ``left_matmat``
  (:math:`\mathbf M\mathbf J`, the backward pass) and ``matmat`` (the forward-mode pass); the transpose
  products :math:`\mathbf J^\top\mathbf X = (\mathbf X^\top\mathbf J)^\top`, the transpose operator and the
  SymPy form (from ``_dense``) follow.  Used by :class:`~jacobian_bp.layers.linear.TokenwiseWeight`, the
  attention Jacobians (:mod:`~jacobian_bp.layers.attention_ops`) and
  :class:`~jacobian_bp.layers.unrolled.UnrolledJacobian`.
* :class:`Transposed` -- :math:`\mathbf J^\top` of such an operator, the products swapped.
* :class:`OperatorSum` -- :math:`\mathbf A + \mathbf B` of two operators of one shape (a parameter shared by two
  sub-layers of a block, or the per-step factor :math:`\mathbf E_t\mathbf W_{hh}\mathbf S + \mathbf C_t` of an LSTM).
* :func:`has_object_entries` -- whether any array holds SymPy entries (object dtype).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import sympy

from ..errors import ShapeError
from ..backend.operators import Operator, sympy_scalar

__all__ = ["RowOperator", "Transposed", "OperatorSum", "has_object_entries"]


def has_object_entries(*arrays) -> bool:
    """Whether any of ``arrays`` is a NumPy array of object dtype (SymPy entries)."""
    return any(isinstance(a, np.ndarray) and a.dtype == object for a in arrays)


class RowOperator(Operator):
    """An operator applied through ``left_matmat`` (rows) and ``matmat`` (columns), both given by the subclass.

    ``rmatmat(X)`` is ``left_matmat(X.T).T``, ``T`` is :class:`Transposed`, ``to_sympy`` converts ``_dense``.
    """

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        return self.left_matmat(X.T).T

    @property
    def T(self):
        return Transposed(self)

    def _sympy(self):
        D = self._dense()
        return sympy.Matrix(self.shape[0], self.shape[1], [sympy_scalar(v) for v in np.ravel(D).tolist()])


class Transposed(Operator):
    """The transpose of an operator that implements ``matmat`` and ``left_matmat`` (products swapped)."""

    structure = "transpose"

    def __init__(self, op: Operator):
        self.op = op
        self.shape = (op.shape[1], op.shape[0])
        self.symbolic = op.symbolic

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        return self.op.left_matmat(X.T).T

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        return self.op.matmat(X)

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        return self.op.matmat(M.T).T

    @property
    def T(self):
        return self.op

    @property
    def nnz(self):
        return self.op.nnz

    def _dense(self):
        return self.op._dense().T

    def _sparse(self):
        return sp.csr_array(self.op._sparse().T)

    def _sympy(self):
        return self.op._sympy().T


class OperatorSum(Operator):
    """``A + B`` of two operators of one shape, applied as the sum of the two products."""

    structure = "sum"

    def __init__(self, a: Operator, b: Operator):
        if a.shape != b.shape:
            raise ShapeError(f"sum of operators: shapes {a.shape} and {b.shape} differ")
        self.a, self.b = a, b
        self.shape = a.shape
        self.symbolic = a.symbolic or b.symbolic

    def matmat(self, X):
        return self.a.matmat(X) + self.b.matmat(X)

    def rmatmat(self, X):
        return self.a.rmatmat(X) + self.b.rmatmat(X)

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        return self.a.left_matmat(M) + self.b.left_matmat(M)

    @property
    def T(self):
        return OperatorSum(self.a.T, self.b.T)

    def _dense(self):
        return self.a._dense() + self.b._dense()

    def _sympy(self):
        return self.a._sympy() + self.b._sympy()
