r"""Structured linear operators: the matrices inside a :class:`~jacobian_bp.engine.jacobian.Jacobian`.

A Jacobian of a network layer is almost never an arbitrary dense matrix.  It is an
identity, a diagonal :math:`\operatorname{diag} f'(\mathbf z)`, a Kronecker product
:math:`\mathbf I_n \otimes \mathbf a^\top`, a (doubly block-) Toeplitz sparse matrix,
a horizontal stack over parameter groups (Damadi Alg. 1 line 7), or a product of
those.  Each class below keeps that structure and never materializes unless asked:

* ``matvec`` / ``rmatvec`` / ``matmat`` / ``rmatmat`` apply the operator (or its
  transpose) at the cost of its factors;
* ``left_matmat(M)`` returns the dense product ``M @ op`` for a dense ``M`` with few
  rows -- the reverse-mode order in which Jacobian chains are cheapest;
* ``to_dense`` / ``to_sparse`` / ``to_sympy`` materialize, after the memory guard
  (:mod:`jacobian_bp.backend.guard`) accepted the estimated size;
* ``as_linear_operator`` wraps the operator as a :class:`scipy.sparse.linalg.LinearOperator`.

Vectors are flattened in row-major (C) order throughout, so
:math:`(\mathbf A\otimes\mathbf B)\,\operatorname{vec}_r \mathbf X =
\operatorname{vec}_r(\mathbf A\mathbf X\mathbf B^\top)`.

Entries may be NumPy numbers or SymPy expressions (``Dense`` and ``Diagonal`` accept
both); products and materialization to SymPy are exact in the latter case.

The classes live in three modules along the seams of the protocol; this module exports them all:

* :mod:`jacobian_bp.backend.operator_core` -- the :class:`Operator` protocol with the operators it
  builds itself: :class:`Dense` and :class:`Sparse` (what :func:`as_operator` wraps) and the lazy
  :class:`Product` (what ``A @ B`` returns);
* this module -- the structured leaves of layer Jacobians: :class:`Identity`, :class:`Zero`,
  :class:`Diagonal` and :class:`Kron` (with the fast outer-product writes of Alg. 1, which look up
  ``outer_into`` in this module's namespace, where the threading tests replace it);
* :mod:`jacobian_bp.backend.block_operators` -- :class:`HStack`, :class:`VStack`, :class:`BlockDiag`.

Imports run one way (``operator_core`` < ``block_operators`` < ``operators``): ``A @ B`` builds a
:class:`Product` and :func:`as_operator` a :class:`Dense` or :class:`Sparse`, so those three cannot
live above the base class.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import scipy.sparse as sp
import sympy

from ..errors import ShapeError
from .block_operators import BlockDiag, HStack, VStack
from .kernels import KERNEL_MIN_SIZE, jit_kernel_available, jit_outer_kernel, outer_into, streaming_stores
from .operator_core import (  # noqa: F401  (the private helpers stay importable from here, as before the split)
    _ITEM, Dense, Operator, Product, Sparse, _is_sym, _sparse_bytes, as_operator, sympy_scalar,
)

__all__ = [
    "Operator", "Identity", "Zero", "Diagonal", "Dense", "Sparse", "Kron", "HStack",
    "VStack", "BlockDiag", "Product", "as_operator",
]


class Identity(Operator):
    r"""The identity :math:`\mathbf I_n`."""

    structure = "identity"

    def __init__(self, n: int):
        if int(n) < 0:
            raise ShapeError(f"Identity: size must be >= 0, received {n}")
        self.n = int(n)
        self.shape = (self.n, self.n)

    def matmat(self, X):
        return self._check_mat(X, self.n, "matmat")

    def rmatmat(self, X):
        return self._check_mat(X, self.n, "rmatmat")

    def left_matmat(self, M):
        return np.asarray(M)

    @property
    def T(self):
        return self

    @property
    def nnz(self):
        return self.n

    def _dense(self):
        return np.eye(self.n)

    def _sparse(self):
        return sp.eye_array(self.n, format="csr")

    def _dense_tasks(self, out):
        return [(out.size, partial(self._dense_into, out), False)]

    def _left_matmat_tasks(self, M, out):
        return [(out.size, partial(self._left_matmat_into, M, out), False)]

    def _sympy(self):
        return sympy.eye(self.n)


class Zero(Operator):
    """The ``m x n`` zero matrix."""

    structure = "zero"

    def __init__(self, m: int, n: int):
        self.shape = (int(m), int(n))

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        return np.zeros((self.shape[0], X.shape[1]))

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        return np.zeros((self.shape[1], X.shape[1]))

    @property
    def T(self):
        return Zero(self.shape[1], self.shape[0])

    @property
    def nnz(self):
        return 0

    def _dense(self):
        return np.zeros(self.shape)

    def _sparse(self):
        return sp.csr_array(self.shape)

    def _sympy(self):
        return sympy.zeros(*self.shape)


class Diagonal(Operator):
    r"""A diagonal matrix :math:`\operatorname{diag}(\mathbf d)` (e.g. :math:`\operatorname{diag} f'(\mathbf z)`)."""

    structure = "diagonal"

    def __init__(self, d):
        if isinstance(d, sympy.MatrixBase):
            d = np.array(list(d), dtype=object)
        d = np.asarray(d)
        if d.ndim != 1:
            raise ShapeError(f"Diagonal: expected a 1-D vector of diagonal entries, received shape {d.shape}")
        self.d = d
        self.symbolic = d.dtype == object
        self.shape = (d.shape[0], d.shape[0])

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        return self.d[:, None] * X

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        return self.d[:, None] * X

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        return M * self.d[None, :]

    @property
    def T(self):
        return self

    @property
    def nnz(self):
        return self.shape[0]

    def _dense(self):
        return np.diag(self.d)

    def _sparse(self):
        return sp.diags_array(self.d.astype(float), format="csr")

    def _sympy(self):
        return sympy.diag(*[sympy_scalar(v) for v in self.d]) if len(self.d) else sympy.zeros(0, 0)


class Kron(Operator):
    r"""Kronecker product :math:`\mathbf A \otimes \mathbf B` of two operators.

    Row-major identity: :math:`(\mathbf A\otimes\mathbf B)\operatorname{vec}_r\mathbf X
    = \operatorname{vec}_r(\mathbf A \mathbf X \mathbf B^\top)`.
    """

    structure = "kronecker"

    def __init__(self, A, B):
        self.A = as_operator(A)
        self.B = as_operator(B)
        self.symbolic = self.A.symbolic or self.B.symbolic
        p, q = self.A.shape
        r, s = self.B.shape
        self.shape = (p * r, q * s)

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        p, q = self.A.shape
        r, s = self.B.shape
        k = X.shape[1]
        T = X.reshape(q, s, k).transpose(1, 0, 2).reshape(s, q * k)
        T = self.B.matmat(T).reshape(r, q, k).transpose(1, 0, 2).reshape(q, r * k)
        return self.A.matmat(T).reshape(p * r, k)

    def rmatmat(self, X):
        return Kron(self.A.T, self.B.T).matmat(X)

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        p, q = self.A.shape
        r, s = self.B.shape
        m = M.shape[0]
        if isinstance(self.A, Identity) and r == 1:
            # M (I_p (x) b^T) = M (x) b^T : one outer product, the fast path of Alg. 1
            b = self.B._dense()[0] if not self.B.symbolic else self.B._np()[0]
            return (M[:, :, None] * b[None, None, :]).reshape(m, q * s)
        if isinstance(self.B, Identity) and p == 1:
            # M (a^T (x) I_r) = a^T (x) M
            a = self.A._dense()[0] if not self.A.symbolic else self.A._np()[0]
            return (a[None, :, None] * M[:, None, :]).reshape(m, q * s)
        T = M.reshape(m, p, r)
        T = self.B.left_matmat(T.reshape(m * p, r)).reshape(m, p, s)
        T = T.transpose(0, 2, 1).reshape(m * s, p)
        T = self.A.left_matmat(T).reshape(m, s, q).transpose(0, 2, 1)
        return T.reshape(m, q * s)

    def _identity_row(self) -> bool:
        r"""Numeric :math:`\mathbf I\otimes\mathbf b^\top` (a weight block of Alg. 1): the case with fast writes."""
        return isinstance(self.A, Identity) and self.B.shape[0] == 1 and not self.symbolic

    def _outer_parts(self, M, out):
        """For ``M (I (x) b^T) = M (x) b^T`` (the largest write of Alg. 1, e.g. P_1 (x) x^T): the 3-D
        view of ``out``, the row ``b`` and the parts (row of M, slice of its columns), each one
        contiguous slab of the result; None when the fast path does not apply."""
        p, q = self.A.shape
        s = self.B.shape[1]
        M = np.asarray(M)
        if not (self._identity_row() and M.ndim == 2 and M.shape[1] == p and M.dtype != object):
            return None
        m = M.shape[0]
        try:  # a view of ``out`` or nothing (np.shares_memory would cost some 35 µs per call)
            out3 = np.reshape(out, (m, q, s), copy=False)
        except ValueError:
            return None
        b = np.ascontiguousarray(self.B._dense()[0], dtype=float)
        Mf = np.asarray(M, dtype=float)
        if m >= 2:
            parts = [(i, slice(None)) for i in range(m)]
        else:
            step = max(1, -(-q // 16))
            parts = [(0, slice(j, min(j + step, q))) for j in range(0, q, step)]
        return out3, b, Mf, parts

    def _left_matmat_tasks(self, M, out):
        fast = self._outer_parts(M, out)
        if fast is None:
            return super()._left_matmat_tasks(M, out)
        out3, b, Mf, parts = fast
        # large slabs go to the compiled kernel (no BLAS) or to dger (BLAS); small ones to NumPy
        slabs = [out3[i, c] for i, c in parts]
        large = any(v.size >= KERNEL_MIN_SIZE for v in slabs)
        blas = large and not jit_kernel_available()
        # a materialization larger than the caches is written with streaming stores (kernels.store_kind decided it
        # for the materialization under way); ``out`` is a view of the whole result, whose size decides otherwise
        whole = out.base if isinstance(out.base, np.ndarray) else out
        stream = streaming_stores(whole.nbytes)
        kernel = jit_outer_kernel(stream) if large else None
        if kernel is not None and all(v.flags.c_contiguous and v.size >= KERNEL_MIN_SIZE for v in slabs):
            # the compiled kernel called directly (the checks of outer_into made once, here)
            rows = [np.ascontiguousarray(Mf[i, c]) for i, c in parts]
            return [(v.size, partial(kernel, v, r, b), False) for v, r in zip(slabs, rows)]
        return [(v.size, partial(outer_into, v, Mf[i, c], b, stream), blas) for v, (i, c) in zip(slabs, parts)]

    def _dense_tasks(self, out):
        if self._identity_row():
            return [(out.size, partial(self._dense_into, out), False)]  # copies only
        return super()._dense_tasks(out)

    def _dense_into(self, out):
        if self._identity_row():
            out[...] = 0.0
            q, s = self.A.shape[1], self.B.shape[1]
            b = self.B._dense()[0]
            for i in range(q):
                out[i, i * s:(i + 1) * s] = b
            return
        out[...] = self._dense()

    @property
    def T(self):
        return Kron(self.A.T, self.B.T)

    @property
    def nnz(self):
        return self.A.nnz * self.B.nnz

    def _dense(self):
        return np.kron(self.A._dense(), self.B._dense())

    def _sparse(self):
        return sp.kron(self.A._sparse(), self.B._sparse(), format="csr")

    def _sympy(self):
        from sympy import kronecker_product

        return sympy.Matrix(kronecker_product(self.A._sympy(), self.B._sympy()))
