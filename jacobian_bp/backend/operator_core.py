r"""The operator protocol and the operators it is closed under.

:class:`Operator` is the interface every structured matrix of :mod:`jacobian_bp.backend.operators`
implements: application (``matvec`` / ``rmatvec`` / ``matmat`` / ``rmatmat`` and the reverse-mode
``left_matmat``), materialization (``to_dense`` / ``to_sparse`` / ``to_sympy`` after the memory guard,
dense writes split into disjoint tasks run by :func:`jacobian_bp.backend.parallel.run_tasks`) and
``A @ B``.  Three operators belong with it because the protocol itself builds them:

* :class:`Product` -- the lazy product ``F_1 F_2 ... F_k`` that ``A @ B`` returns;
* :class:`Dense` and :class:`Sparse` -- what :func:`as_operator` wraps a NumPy / SymPy matrix or a
  SciPy sparse matrix into (every composite operator accepts plain matrices through it).

The structured leaves (identity, zero, diagonal, Kronecker) live in
:mod:`jacobian_bp.backend.operators`, the block operators (horizontal / vertical stacks, block
diagonal) in :mod:`jacobian_bp.backend.block_operators`; import all of them from
:mod:`jacobian_bp.backend.operators`.
"""
from __future__ import annotations

from functools import partial, reduce
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import sympy

from ..errors import ShapeError
from .guard import check_bytes
from .kernels import blas_limit, store_kind
from .parallel import get_num_threads, run_tasks

__all__ = ["Operator", "Dense", "Sparse", "Product", "as_operator", "sympy_scalar"]

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
        threads = get_num_threads()
        with blas_limit(threads), store_kind(out.nbytes, threads):  # ordinary or streaming stores: kernels.py
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

    def _check_operand(self, A, n, what, ndim: int, expected: str):
        """``A`` as an array with ``ndim`` axes and ``n`` entries along the first, else one-line ShapeError."""
        A = np.asarray(A)
        if A.ndim != ndim or A.shape[0] != n:
            raise ShapeError(
                f"{type(self).__name__}.{what}: expected {expected} for a "
                f"{self.shape[0]}x{self.shape[1]} operator, received shape {A.shape}"
            )
        return A

    def _check_vec(self, v, n, what):
        return self._check_operand(v, n, what, 1, f"a vector of length {n}")

    def _check_mat(self, X, n, what):
        return self._check_operand(X, n, what, 2, f"a matrix with {n} rows")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shape[0]}x{self.shape[1]})"


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
