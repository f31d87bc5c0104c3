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
"""
from __future__ import annotations

from functools import partial, reduce
from itertools import accumulate
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import sympy

from ..errors import ShapeError
from .guard import check_bytes
from .kernels import KERNEL_MIN_SIZE, blas_limit, jit_kernel_available, outer_into
from .parallel import get_num_threads, run_tasks

__all__ = [
    "Operator", "Identity", "Zero", "Diagonal", "Dense", "Sparse", "Kron", "HStack",
    "VStack", "BlockDiag", "Product", "as_operator",
]

_ITEM = 8  # float64


def sympy_scalar(v) -> sympy.Basic:
    """A SymPy scalar from a SymPy expression or a number; strings are refused (never parsed)."""
    if isinstance(v, sympy.Basic):
        return v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"expected a SymPy expression or a real number as a matrix entry, received {type(v).__name__} {v!r}")
    return sympy.Integer(int(v)) if isinstance(v, (int, np.integer)) else sympy.Float(float(v))


def _is_sym(x) -> bool:
    return isinstance(x, (sympy.MatrixBase, sympy.Basic)) or (
        isinstance(x, np.ndarray) and x.dtype == object
    )


def _sparse_bytes(nnz: int, rows: int) -> int:
    return int(nnz) * (_ITEM + 4) + (int(rows) + 1) * 4


class Operator:
    """Base class of the structured linear operators.

    Subclasses define ``shape``, ``structure`` (a short name), ``nnz`` (an upper bound
    of the number of structural non-zeros), the application methods and
    materialization.  ``A @ B`` builds a lazy :class:`Product`.
    """

    shape: tuple[int, int]
    structure: str = "operator"
    symbolic: bool = False

    # --- application -------------------------------------------------------
    def matvec(self, v: np.ndarray) -> np.ndarray:
        v = self._check_vec(v, self.shape[1], "matvec")
        return self.matmat(v[:, None])[:, 0]

    def rmatvec(self, v: np.ndarray) -> np.ndarray:
        v = self._check_vec(v, self.shape[0], "rmatvec")
        return self.rmatmat(v[:, None])[:, 0]

    def matmat(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def rmatmat(self, X: np.ndarray) -> np.ndarray:
        return self.T.matmat(X)

    def left_matmat(self, M: np.ndarray) -> np.ndarray:
        """Return the dense product ``M @ self`` (``M`` dense, ``(k, shape[0])``)."""
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            raise ShapeError(
                f"{type(self).__name__}.left_matmat: expected a matrix with {self.shape[0]} "
                f"columns, received shape {M.shape}"
            )
        return self.rmatmat(M.T).T

    # --- structure -----------------------------------------------------------
    @property
    def T(self) -> "Operator":  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def nnz(self) -> int:
        return self.shape[0] * self.shape[1]

    def dense_nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * _ITEM

    def sparse_nbytes(self) -> int:
        return _sparse_bytes(self.nnz, self.shape[0])

    # --- materialization -----------------------------------------------------
    def to_dense(self) -> np.ndarray:
        check_bytes(self.dense_nbytes(), f"a dense {self.shape[0]}x{self.shape[1]} {self.structure} matrix")
        if self.symbolic:
            return self._dense()
        out = np.empty(self.shape)
        # every block of the result is one or more independent writes into ``out``; large
        # materializations run them on several threads (see jacobian_bp.backend.parallel).  BLAS, used
        # for the left products and some writes, gets no more threads than jacobian_bp itself
        with blas_limit(get_num_threads()):
            run_tasks(self._dense_tasks(out))
        return out

    def to_sparse(self) -> sp.csr_array:
        check_bytes(self.sparse_nbytes(), f"a sparse {self.shape[0]}x{self.shape[1]} {self.structure} matrix")
        # serial, but its dense left products call BLAS: limited to the thread count as in to_dense
        with blas_limit(get_num_threads()):
            return sp.csr_array(self._sparse())

    def to_sympy(self) -> sympy.Matrix:
        check_bytes(self.dense_nbytes() * 8, f"a SymPy {self.shape[0]}x{self.shape[1]} matrix")
        return self._sympy()

    def _dense(self) -> np.ndarray:
        return self.left_matmat(np.eye(self.shape[0]))

    def _dense_into(self, out: np.ndarray) -> None:
        """Write the dense matrix into the preallocated view ``out`` (no intermediate copy when possible)."""
        out[...] = self._dense()

    def _left_matmat_into(self, M: np.ndarray, out: np.ndarray) -> None:
        """Write ``M @ self`` into ``out``."""
        out[...] = self.left_matmat(M)

    def _dense_tasks(self, out: np.ndarray) -> list:
        """The writes that fill ``out`` with the dense matrix, as ``(entries, callable, uses_blas)``
        tasks that touch disjoint parts of ``out`` (run by :func:`jacobian_bp.backend.parallel.run_tasks`).
        Composite operators return their blocks' tasks; this default is one task for the whole."""
        return [(out.size, partial(self._dense_into, out), True)]

    def _left_matmat_tasks(self, M: np.ndarray, out: np.ndarray) -> list:
        """Like :meth:`_dense_tasks` for ``M @ self``.  The third field of a task says whether it
        may call BLAS (then BLAS is kept single-threaded while our threads run)."""
        return [(out.size, partial(self._left_matmat_into, M, out), True)]

    def _sparse(self):
        return sp.csr_array(self._dense())

    def _sympy(self) -> sympy.Matrix:  # pragma: no cover - abstract
        raise NotImplementedError

    def as_linear_operator(self):
        """Wrap as :class:`scipy.sparse.linalg.LinearOperator` (numeric operators only)."""
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator(
            self.shape, matvec=self.matvec, rmatvec=self.rmatvec,
            matmat=self.matmat, rmatmat=self.rmatmat, dtype=np.float64,
        )

    # --- algebra ---------------------------------------------------------------
    def __matmul__(self, other: "Operator") -> "Operator":
        if isinstance(other, Operator):
            return Product([self, other])
        return NotImplemented

    def _check_vec(self, v, n, what):
        v = np.asarray(v)
        if v.ndim != 1 or v.shape[0] != n:
            raise ShapeError(
                f"{type(self).__name__}.{what}: expected a vector of length {n} for a "
                f"{self.shape[0]}x{self.shape[1]} operator, received shape {v.shape}"
            )
        return v

    def _check_mat(self, X, n, what):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != n:
            raise ShapeError(
                f"{type(self).__name__}.{what}: expected a matrix with {n} rows for a "
                f"{self.shape[0]}x{self.shape[1]} operator, received shape {X.shape}"
            )
        return X

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shape[0]}x{self.shape[1]})"


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


class Dense(Operator):
    """A dense matrix (NumPy array or SymPy ``Matrix``)."""

    structure = "dense"

    def __init__(self, M):
        if isinstance(M, sympy.MatrixBase):
            self.M = sympy.Matrix(M)
            self.symbolic = True
            self.shape = tuple(self.M.shape)
            return
        M = np.asarray(M)
        if M.ndim == 1:
            M = M[None, :]
        if M.ndim != 2:
            raise ShapeError(f"Dense: expected a 2-D matrix, received shape {M.shape}")
        self.M = M
        self.symbolic = M.dtype == object
        self.shape = M.shape

    def _np(self):
        return np.array(self.M.tolist(), dtype=object) if isinstance(self.M, sympy.MatrixBase) else self.M

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        return self._np() @ X

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        return self._np().T @ X

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        return M @ self._np()

    @property
    def T(self):
        return Dense(self.M.T)

    def _dense(self):
        if self.symbolic:
            raise TypeError("Dense.to_dense: symbolic entries; use to_sympy()")
        return np.array(self.M, dtype=float)

    def _sparse(self):
        return sp.csr_array(self._dense())

    def _sympy(self):
        return sympy.Matrix(self.M.tolist()) if not isinstance(self.M, sympy.MatrixBase) else self.M


class Sparse(Operator):
    """A SciPy sparse matrix (e.g. a Toeplitz convolution matrix or a permutation)."""

    structure = "sparse"

    def __init__(self, M, structure: str | None = None):
        self.M = sp.csr_array(M)
        self.shape = self.M.shape
        if structure:
            self.structure = structure

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        return np.asarray(self.M @ X)

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        return np.asarray(self.M.T @ X)

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        return np.asarray((self.M.T @ M.T).T)

    @property
    def T(self):
        return Sparse(self.M.T, self.structure)

    @property
    def nnz(self):
        return int(self.M.nnz)

    def _dense(self):
        return self.M.toarray()

    def _sparse(self):
        return self.M

    def _sympy(self):
        return sympy.Matrix(self.M.toarray())


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
        out3 = out.reshape(m, q, s)
        if not np.shares_memory(out3, out):
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
        large = any(out3[i, c].size >= KERNEL_MIN_SIZE for i, c in parts)
        blas = large and not jit_kernel_available()
        return [(out3[i, c].size, partial(outer_into, out3[i, c], Mf[i, c], b), blas) for i, c in parts]

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


class Product(Operator):
    """Lazy product ``F_1 F_2 ... F_k`` of operators; applied right to left, materialized left to right."""

    structure = "product"

    def __init__(self, factors: Sequence[Operator]):
        flat: list[Operator] = []
        for f in factors:
            f = as_operator(f)
            flat.extend(f.factors if isinstance(f, Product) else [f])
        if not flat:
            raise ShapeError("Product: needs at least one factor")
        for a, b in zip(flat[:-1], flat[1:]):
            if a.shape[1] != b.shape[0]:
                raise ShapeError(
                    f"Product: factors do not chain: {type(a).__name__} {a.shape} @ {type(b).__name__} {b.shape}"
                )
        self.factors = flat
        self.symbolic = any(f.symbolic for f in flat)
        self.shape = (flat[0].shape[0], flat[-1].shape[1])

    def matmat(self, X):
        X = self._check_mat(X, self.shape[1], "matmat")
        for f in reversed(self.factors):
            X = f.matmat(X)
        return X

    def rmatmat(self, X):
        X = self._check_mat(X, self.shape[0], "rmatmat")
        for f in self.factors:
            X = f.rmatmat(X)
        return X

    def left_matmat(self, M):
        M = np.asarray(M)
        if M.ndim != 2 or M.shape[1] != self.shape[0]:
            return super().left_matmat(M)
        for f in self.factors:
            M = f.left_matmat(M)
        return M

    @property
    def T(self):
        return Product([f.T for f in reversed(self.factors)])

    @property
    def nnz(self):
        return self.shape[0] * self.shape[1]

    def _dense(self):
        first, rest = self.factors[0], self.factors[1:]
        M = first._dense()
        for f in rest:
            M = f.left_matmat(M)
        return M

    def _left_factor(self):
        """The product of all factors but the last, dense (the left-to-right order of Alg. 1)."""
        first, mid = self.factors[0], self.factors[1:-1]
        M = first.M if isinstance(first, Dense) and not first.symbolic else first._dense()
        for f in mid:
            M = f.left_matmat(M)
        return M

    def _dense_tasks(self, out):
        if len(self.factors) == 1:
            return self.factors[0]._dense_tasks(out)
        # the small left product is formed now; the large write of its product with the last
        # factor is what the tasks do
        return self.factors[-1]._left_matmat_tasks(self._left_factor(), out)

    def _sparse(self):
        from .guard import check_bytes as _check

        M = self.factors[0]._sparse()
        for f in self.factors[1:]:
            M = sp.csr_array(M @ f._sparse())
            _check(_sparse_bytes(M.nnz, M.shape[0]), f"an intermediate sparse product {M.shape}")
        return M

    def _sympy(self):
        return reduce(lambda a, b: a * b, [f._sympy() for f in self.factors])


def as_operator(x) -> Operator:
    """Wrap an array, sparse matrix or SymPy matrix as an :class:`Operator`."""
    if isinstance(x, Operator):
        return x
    if sp.issparse(x):
        return Sparse(x)
    if isinstance(x, sympy.MatrixBase):
        return Dense(x)
    arr = np.asarray(x)
    if arr.ndim in (1, 2):
        return Dense(arr)
    raise ShapeError(f"as_operator: cannot interpret an object of shape {arr.shape} as a matrix")
