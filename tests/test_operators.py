"""Structured operators against their dense materializations (NumPy/SciPy as oracle)."""
import numpy as np
import pytest
import scipy.sparse as sp
import sympy

from jacobian_bp.backend import operators as O
from jacobian_bp.errors import MemoryBudgetError, ShapeError
from jacobian_bp.backend.guard import memory_budget

rng = np.random.default_rng(0)


def _ops():
    A = rng.standard_normal((3, 4))
    B = rng.standard_normal((2, 5))
    d = rng.standard_normal(4)
    S = sp.random(6, 4, density=0.5, random_state=1, format="csr")
    return {
        "identity": (O.Identity(4), np.eye(4)),
        "zero": (O.Zero(3, 4), np.zeros((3, 4))),
        "diagonal": (O.Diagonal(d), np.diag(d)),
        "dense": (O.Dense(A), A),
        "sparse": (O.Sparse(S), S.toarray()),
        "kron": (O.Kron(A, B), np.kron(A, B)),
        "kron_I_row": (O.Kron(O.Identity(3), O.Dense(d[None, :])), np.kron(np.eye(3), d[None, :])),
        "kron_row_I": (O.Kron(O.Dense(d[None, :]), O.Identity(3)), np.kron(d[None, :], np.eye(3))),
        "hstack": (O.HStack([O.Dense(A), O.Identity(3)]), np.hstack([A, np.eye(3)])),
        "vstack": (O.VStack([O.Dense(A), O.Diagonal(d)]), np.vstack([A, np.diag(d)])),
        "blockdiag": (O.BlockDiag([O.Dense(A), O.Dense(B)]), np.block([[A, np.zeros((3, 5))], [np.zeros((2, 4)), B]])),
        "product": (O.Product([O.Dense(A), O.Diagonal(d), O.Kron(O.Identity(4), O.Dense(np.ones((1, 2))))]),
                    A @ np.diag(d) @ np.kron(np.eye(4), np.ones((1, 2)))),
    }


@pytest.mark.parametrize("name", list(_ops()))
def test_operator_matches_dense(name):
    op, M = _ops()[name]
    assert op.shape == M.shape
    np.testing.assert_allclose(op.to_dense(), M, atol=1e-14)
    np.testing.assert_allclose(op.to_sparse().toarray(), M, atol=1e-14)
    v = rng.standard_normal(M.shape[1])
    u = rng.standard_normal(M.shape[0])
    np.testing.assert_allclose(op.matvec(v), M @ v, atol=1e-12)
    np.testing.assert_allclose(op.rmatvec(u), M.T @ u, atol=1e-12)
    X = rng.standard_normal((M.shape[1], 3))
    np.testing.assert_allclose(op.matmat(X), M @ X, atol=1e-12)
    L = rng.standard_normal((2, M.shape[0]))
    np.testing.assert_allclose(op.left_matmat(L), L @ M, atol=1e-12)
    np.testing.assert_allclose(op.T.to_dense(), M.T, atol=1e-14)
    lo = op.as_linear_operator()
    np.testing.assert_allclose(lo @ v, M @ v, atol=1e-12)
    np.testing.assert_allclose(lo.T @ u, M.T @ u, atol=1e-12)


def test_kron_row_major_identity():
    A, B, X = rng.standard_normal((3, 2)), rng.standard_normal((4, 5)), rng.standard_normal((2, 5))
    np.testing.assert_allclose(O.Kron(A, B).matvec(X.ravel()), (A @ X @ B.T).ravel(), atol=1e-12)


def test_wrong_length_vector_is_a_clear_error():
    op = O.Kron(O.Identity(3), O.Dense(np.ones((1, 4))))
    with pytest.raises(ShapeError, match="length 12.*received shape \\(5,\\)"):
        op.matvec(np.ones(5))
    with pytest.raises(ShapeError, match="do not chain"):
        O.Product([O.Identity(3), O.Identity(4)])
    with pytest.raises(ShapeError, match="same number of rows"):
        O.HStack([O.Identity(3), O.Identity(4)])


def test_memory_guard_refuses_with_estimate():
    op = O.Kron(O.Identity(1000), O.Dense(np.ones((1, 1000))))
    with memory_budget(1024 * 1024):
        with pytest.raises(MemoryBudgetError, match="estimated 7.6 GiB|estimated .* exceeds"):
            op.to_dense()
        with pytest.raises(MemoryBudgetError, match="11.4 MiB"):
            op.to_sparse()  # 1e6 nonzeros * 12 B = 11.4 MiB > 1 MiB
    with memory_budget(64 * 1024 * 1024):
        assert op.to_sparse().nnz == 1_000_000


def test_symbolic_materialization_is_exact():
    a1, a2 = sympy.symbols("a1 a2", real=True)
    op = O.Kron(O.Identity(2), O.Dense(sympy.Matrix([[a1, a2]])))
    M = op.to_sympy()
    assert M == sympy.Matrix([[a1, a2, 0, 0], [0, 0, a1, a2]])
    d = O.Diagonal(sympy.Matrix([a1, a2]))
    assert (O.Product([d, O.Dense(sympy.Matrix([[1, 2], [3, 4]]))]).to_sympy()
            - sympy.Matrix([[a1, 2 * a1], [3 * a2, 4 * a2]])) == sympy.zeros(2, 2)


def test_the_split_modules_are_reexported_by_operators():
    """``backend.operators`` exports every operator (the classes live in operator_core, operators and
    block_operators, one concept each), the old alias ``jacobian_bp.operators`` is the same module,
    and ``A @ B`` still builds the lazy Product across the modules."""
    import importlib

    from jacobian_bp.backend import block_operators, operator_core

    assert importlib.import_module("jacobian_bp.operators") is O
    for name in O.__all__ + ["sympy_scalar"]:
        assert hasattr(O, name), name
    for name in operator_core.__all__:
        assert getattr(O, name) is getattr(operator_core, name)
    for name in block_operators.__all__:
        assert getattr(O, name) is getattr(block_operators, name)
        assert issubclass(getattr(O, name), O.Operator)
    A, d = rng.standard_normal((3, 4)), rng.standard_normal(3)
    P = O.Diagonal(d) @ O.HStack([O.Dense(A), O.Identity(3)])
    assert isinstance(P, O.Product)
    np.testing.assert_allclose(P.to_dense(), np.diag(d) @ np.hstack([A, np.eye(3)]), atol=1e-14)
