r"""Token-block-diagonal chains: the Jacobians of token-wise layers on a sequence, kept as their ``T`` diagonal blocks.

A layer applied to every token of a sequence :math:`\mathbf X\in\mathbb R^{T\times d}` on its own (a token-wise
``linear`` layer, an elementwise activation, a LayerNorm over the feature axis) has, on the row-major flattened
sequence, a block-diagonal Jacobian :math:`\operatorname{blkdiag}(\mathbf B_1,\dots,\mathbf B_T)`
(:math:`\mathbf I_T\otimes\mathbf W`, :math:`\operatorname{diag}f'(\mathbf z)`, the per-token centering projection),
and so has any product or skip sum of them, e.g. the Jacobian :math:`\mathbf I + \mathbf J_{\text{MLP}\circ\text{LN}}`
of a Transformer block's MLP residual.  Its ``T`` blocks are one product with the *stacked identity*
:math:`\mathbf S = [\mathbf I_r\;\cdots\;\mathbf I_r]` (``r`` rows per token):

.. math::

   \mathbf S\operatorname{blkdiag}(\mathbf B_1,\dots,\mathbf B_T) = [\mathbf B_1\;\cdots\;\mathbf B_T],

``r`` rows instead of ``T r``, :math:`T` times fewer flops than the dense product, and the product
:math:`\operatorname{blkdiag}(\mathbf B_t)\,\mathbf J` of such a chain with a layer's parameter Jacobian
:math:`\mathbf J` touches only token ``t``'s rows of :math:`\mathbf J` in row block ``t``
(for :math:`\mathbf J = [\mathbf I\otimes\mathbf x_t^\top]_t`: the outer products
:math:`\mathbf B_t[i,:]\otimes\mathbf x_t^\top`, written straight into the materialized result).

:class:`ChainMemo` keeps such a chain (its dense value, and its blocks when it is token-wise);
:class:`ChainBlock` is the product of a kept chain with one parameter Jacobian, materialized through the blocks.
Everything else about them is :class:`~jacobian_bp.backend.operators.Product`'s.  Symbolic entries take the
generic path.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from ..backend.block_operators import VStack
from ..backend.operators import Dense as DenseOp, Diagonal, Identity, Kron, Operator, Product

__all__ = ["tokenwise", "ChainMemo", "ChainBlock", "blockdiag_dense", "token_rows_tasks"]


def tokenwise(op: Operator, T: int | None) -> bool:
    r"""Whether ``op`` is block diagonal with ``T`` equal diagonal blocks (``T`` tokens; numeric entries only).

    Known: :class:`Identity` and :class:`Diagonal`; :math:`\mathbf I_{kT}\otimes\mathbf B`; a :class:`Product` of
    token-wise factors; an operator that says so through its method ``tokenwise(T)`` (the skip sum
    :math:`\mathbf I + \mathbf B`, the layer norm's centering projection, :class:`ChainMemo`).
    """
    if T is None or T < 1 or getattr(op, "symbolic", True):
        return False
    n, m = op.shape
    if n % T or m % T:
        return False
    ask = getattr(op, "tokenwise", None)
    if callable(ask):
        return bool(ask(T))
    if isinstance(op, (Identity, Diagonal)):
        return n == m
    if isinstance(op, Kron):
        return isinstance(op.A, Identity) and op.A.shape[0] % T == 0
    if isinstance(op, Product):
        return all(tokenwise(f, T) for f in op.factors)
    return False


def stacked_identity(r: int, T: int) -> np.ndarray:
    r""":math:`\mathbf S = [\mathbf I_r\;\cdots\;\mathbf I_r]`, ``(r, T r)``."""
    return np.tile(np.eye(r), (1, T))


def blockdiag_dense(S: np.ndarray, T: int) -> np.ndarray:
    r"""The dense :math:`\operatorname{blkdiag}(\mathbf B_1,\dots,\mathbf B_T)` from the stacked blocks
    ``S = [B_1 ... B_T]`` ``(r, T c)``."""
    r, Tc = S.shape
    c = Tc // T
    out = np.zeros((T, r, T, c))
    t = np.arange(T)
    out[t, :, t, :] = S.reshape(r, T, c).transpose(1, 0, 2)
    return out.reshape(T * r, T * c)


class ChainMemo(Operator):
    r"""A chain of Jacobians kept once for all the parameter blocks below it (its dense value, and, for a
    token-wise chain on ``T`` tokens, its stacked blocks :math:`[\mathbf B_1\cdots\mathbf B_T]`).

    ``op`` is the chain; when it is a :class:`Product` whose first factor is a :class:`ChainMemo`, its blocks
    and dense value continue from that one (the chain above sub-layer ``k`` of a residual block is the
    chain above sub-layer ``k+1`` times that sub-layer's input Jacobian: each is formed once).
    """

    structure = "product"

    def __init__(self, op: Operator, T: int | None = None):
        self.op = op
        self.shape = op.shape
        self.symbolic = op.symbolic
        self.T_tokens = T if tokenwise(op, T) else None
        self._dense_value = None
        self._stacked_value = None

    def tokenwise(self, T: int) -> bool:
        return self.T_tokens is not None and T == self.T_tokens

    def _parts(self):
        """``(kept first factor or None, the remaining factors)``."""
        factors = self.op.factors if isinstance(self.op, Product) else [self.op]
        if isinstance(factors[0], ChainMemo):
            return factors[0], factors[1:]
        return None, factors

    def stacked(self) -> np.ndarray | None:
        r"""``[B_1 ... B_T]`` ``(r, T c)`` for a token-wise chain (None otherwise)."""
        T = self.T_tokens
        if T is None:
            return None
        if self._stacked_value is None:
            first, rest = self._parts()
            S = first.stacked() if first is not None and first.tokenwise(T) else None
            if S is None:
                S, rest = stacked_identity(self.shape[0] // T, T), (self.op.factors if isinstance(self.op, Product)
                                                                    else [self.op])
            for f in rest:
                S = f.left_matmat(S)
            self._stacked_value = np.ascontiguousarray(S)
        return self._stacked_value

    def blocks(self) -> np.ndarray | None:
        """The diagonal blocks ``(T, r, c)`` of a token-wise chain (None otherwise; the same array on every call, so that
        an operator may keep what it computes from them)."""
        if getattr(self, "_blocks_value", None) is None:
            S = self.stacked()
            if S is None:
                return None
            T = self.T_tokens
            r = S.shape[0]
            self._blocks_value = np.ascontiguousarray(S.reshape(r, T, -1).transpose(1, 0, 2))
        return self._blocks_value

    def left_token_rows(self, B: np.ndarray) -> np.ndarray:
        r""":math:`\operatorname{blkdiag}(\mathbf B_1,\dots,\mathbf B_T)` times this chain, dense ``(T r, columns)``: through the first
        factor's ``left_token_rows`` when it has one (attention: its backward pass on the token rows), else densely."""
        factors = self.op.factors if isinstance(self.op, Product) else [self.op]
        first, rest = factors[0], factors[1:]
        fast = getattr(first, "left_token_rows", None)
        M = fast(B) if callable(fast) else None
        if M is None:
            M = first.left_matmat(blockdiag_dense(np.ascontiguousarray(np.transpose(B, (1, 0, 2))).reshape(B.shape[1], -1),
                                                  B.shape[0]))
        for f in rest:
            M = f.left_matmat(M)
        return M

    def matmat(self, X):
        return self.op.matmat(X)

    def rmatmat(self, X):
        return self.op.rmatmat(X)

    def left_matmat(self, M):
        return self.op.left_matmat(M)

    @property
    def T(self):
        return self.op.T

    def _dense(self):
        if self._dense_value is None:
            S = self.stacked()
            if S is not None:
                self._dense_value = blockdiag_dense(S, self.T_tokens)
            else:
                first, rest = self._parts()
                if first is None:
                    self._dense_value = self.op._dense()
                else:
                    B = first.blocks() if rest and not self.symbolic else None
                    fast = getattr(rest[0], "left_token_rows", None) if B is not None else None
                    M = fast(B) if callable(fast) else None  # a token-wise chain times attention: its token rows
                    if M is None:
                        M = first._dense()
                        M = rest[0].left_matmat(M) if rest else M
                    for f in rest[1:]:
                        M = f.left_matmat(M)
                    self._dense_value = M
        return self._dense_value

    def _sparse(self):
        return self.op._sparse()

    def _sympy(self):
        return self.op._sympy()


def _row_slabs(out: np.ndarray, T: int) -> list:
    r = out.shape[0] // T
    return [out[t * r:(t + 1) * r] for t in range(T)]


def _vstack_rows(op: VStack, B: np.ndarray, out: np.ndarray) -> None:
    for t, (blk, slab) in enumerate(zip(op.blocks, _row_slabs(out, B.shape[0]))):
        slab[...] = blk.left_matmat(B[t])


def _kron_column_rows(op: Kron, B: np.ndarray, out: np.ndarray) -> None:
    a = np.asarray(op.A._dense()).reshape(-1)
    for t, slab in enumerate(_row_slabs(out, B.shape[0])):
        part = op.B.left_matmat(B[t])
        slab[...] = a[t] * part


def token_rows_tasks(op: Operator, B: np.ndarray, out: np.ndarray) -> list | None:
    r"""Write tasks for :math:`\operatorname{blkdiag}(\mathbf B_1,\dots,\mathbf B_T)\,\mathbf J` (``B`` ``(T, r, c)``) into
    ``out``, or None when ``J = op`` has no per-token row form.

    Row block ``t`` of the product is :math:`\mathbf B_t` times row block ``t`` of :math:`\mathbf J` (``c`` rows).
    Known: an operator with ``_left_token_blocks_tasks(B, out)`` (:class:`~jacobian_bp.layers.linear.TokenwiseWeight`),
    a :class:`VStack` of ``T`` blocks of ``c`` rows (e.g. a layer norm's :math:`\mathbf J_{\boldsymbol\gamma}`),
    and :math:`\mathbf a\otimes\mathbf K` for a column :math:`\mathbf a\in\mathbb R^T` (a bias: :math:`\mathbf 1_T\otimes\mathbf I`).
    """
    T, r, c = B.shape
    if op.symbolic or op.shape[0] != T * c:
        return None
    fast = getattr(op, "_left_token_blocks_tasks", None)
    if callable(fast):
        return fast(B, out)
    if isinstance(op, VStack) and len(op.blocks) == T and all(b.shape[0] == c for b in op.blocks):
        return [(out.size, partial(_vstack_rows, op, B, out), True)]
    if isinstance(op, Kron) and op.A.shape == (T, 1) and isinstance(op.A, (DenseOp, Identity)) and not op.A.symbolic:
        return [(out.size, partial(_kron_column_rows, op, B, out), True)]
    return None


class ChainBlock(Product):
    r"""The product :math:`\mathbf C\mathbf J` of a kept chain :math:`\mathbf C` (:class:`ChainMemo`) with one parameter
    Jacobian :math:`\mathbf J`: a :class:`Product` whose materialization goes through the chain's token blocks
    (:func:`token_rows_tasks`) when it is token-wise, and through its kept dense value otherwise."""

    def __init__(self, chain: ChainMemo, op: Operator):
        super().__init__([chain, op])
        self.chain, self.op = chain, op

    def _left_token_blocks_tasks(self, B, out):
        """As the right factor of another token-wise chain ``blkdiag(B_t)``: that chain times this one's (through its
        ``left_token_rows``), then this block's parameter Jacobian."""
        if self.symbolic or B.shape[0] * B.shape[2] != self.shape[0]:
            return None
        return self.op._left_matmat_tasks(self.chain.left_token_rows(B), out)

    def _dense_tasks(self, out):
        B = self.chain.blocks()
        if B is not None:
            tasks = token_rows_tasks(self.op, B, out)
            if tasks is not None:
                return tasks
        return self.op._left_matmat_tasks(self.chain._dense(), out)

    def _dense(self):
        if self.symbolic:
            return super()._dense()
        out = np.empty(self.shape)
        for _, fn, _blas in self._dense_tasks(out):
            fn()
        return out
