r"""Typed Jacobians: a structured matrix that knows the spaces it maps between.

A :class:`Space` is a named coordinate space -- ``z^{[2]}``, ``\operatorname{vec} W^{[1]}``
-- with a shape and the order in which its entries are flattened.  A
:class:`Jacobian` is a structured :class:`~jacobian_bp.backend.operators.Operator` together
with its output space (rows) and input space (columns) and a LaTeX *symbol* such as
``\mathbf J_{\mathbf z^{[1]}} \mathbf a^{[1]}``.

``A @ B`` is the chain rule: it is only allowed when ``A.input == B.output``; a
mismatch raises :class:`~jacobian_bp.errors.SpaceMismatchError` naming both spaces.
:func:`hstack` stacks Jacobians of one output over parameter groups (Damadi Alg. 1
line 7) and concatenates their input spaces.
"""
from __future__ import annotations


from dataclasses import dataclass, field
from math import prod
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import sympy

from ..backend.escape import escape_latex
from ..errors import DataError, ShapeError, SpaceMismatchError
from ..backend.operators import Dense, HStack, Operator, Product, VStack, BlockDiag, as_operator

__all__ = ["Space", "Jacobian", "BatchJacobian", "hstack", "vstack", "block_diag"]


@dataclass(frozen=True)
class Space:
    r"""A named coordinate space.

    Parameters
    ----------
    name : str
        Plain-text name, unique within a network (``"z[2]"``, ``"vec W[1]"``, ``"theta"``).
    shape : tuple of int
        Shape of the underlying object (``(5,)`` for ``z^{[1]}``, ``(5, 4)`` for a weight).
    latex : str
        LaTeX symbol, e.g. ``\mathbf{z}^{[2]}``.
    order : {"C", "F", "-"}
        Flattening order of a matrix-shaped object: row-major ``"C"`` (stack rows),
        column-major ``"F"`` (stack columns, the ``vec`` of Damadi and MML), ``"-"`` for
        vectors and composite spaces.
    parts : tuple of Space
        For a composite space (``theta``), the spaces it concatenates, in order.
    """

    name: str
    shape: tuple[int, ...]
    latex: str = ""
    order: str = "-"
    parts: tuple["Space", ...] = field(default=(), compare=True)

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if any(s < 0 for s in self.shape):
            raise ShapeError(f"Space {self.name!r}: negative dimension in shape {self.shape}")
        if self.order not in ("C", "F", "-"):
            raise ValueError(f"Space {self.name!r}: order must be 'C', 'F' or '-', got {self.order!r}")
        if not self.latex:
            object.__setattr__(self, "latex", _escape_plain(self.name))
        object.__setattr__(self, "_size", prod(self.shape) if self.shape else 1)

    @property
    def size(self) -> int:
        return self._size

    @staticmethod
    def concat(parts: Sequence["Space"], name: str = "theta", latex: str = r"\boldsymbol{\theta}") -> "Space":
        parts = tuple(parts)
        return Space(name, (sum(p.size for p in parts),), latex, "-", parts)

    def describe(self) -> str:
        dims = "x".join(str(s) for s in self.shape)
        o = {"C": ", rows stacked", "F": ", columns stacked", "-": ""}[self.order]
        return f"{self.name} ({dims}{o})"

    def __str__(self) -> str:
        return self.describe()


def _escape_plain(name: str) -> str:
    return escape_latex(name)


#: Notebook display printers, keyed by the class name of what they print (``"Jacobian"``, ``"Gradient"``,
#: ``"VerificationReport"``).  :mod:`jacobian_bp.render.latex` installs them when it is imported (the
#: package imports it), so the engine shows LaTeX in Jupyter without importing a floor above it.
DISPLAY_PRINTERS: dict[str, "Callable[[object], str]"] = {}


def display_latex(obj: object) -> "str | None":
    """The installed display printer's LaTeX for ``obj`` (``None`` when no printer is installed)."""
    printer = DISPLAY_PRINTERS.get(type(obj).__name__)
    return None if printer is None else printer(obj)


class Jacobian:
    r"""A Jacobian matrix :math:`\mathbf J_{\text{input}}\,\text{output}` with typed spaces.

    Parameters
    ----------
    op : Operator or array-like
        The matrix, kept structured (identity, diagonal, Kronecker, Toeplitz, block, product).
    output, input : Space
        Row space and column space; ``op.shape == (output.size, input.size)``.
    symbol : str, optional
        LaTeX for the Jacobian itself; defaults to ``\mathbf J_{input} output``.
    factors : tuple of Jacobian, optional
        For a product, the factor Jacobians (kept for rendering the chain).
    display_notation : str or Notation, optional
        The notation its Jupyter display (``_repr_latex_``) is written in: a preset name (``"damadi"``,
        ``"ganev"``, ``"park"``, ``"mml"``, ``"pytorch"``) or a :class:`~jacobian_bp.render.notation.Notation`.
        A network marks every Jacobian it returns with its convention's notation; a product (``@``) and a
        stack (:func:`hstack`, :func:`vstack`, :func:`block_diag`) keep the mark of their parts.  None
        (the default): the parts' mark, else Damadi's notation.  Only the display reads it; the Jacobian's
        own ``symbol`` keeps Damadi's spaces; the attribute of that name is assignable (validated).
    """

    def __init__(self, op, output: Space, input: Space, symbol: str | None = None,
                 factors: Sequence["Jacobian"] = (), blocks: Sequence["Jacobian"] = (), notation: str | None = None,
                 display_notation: "str | object | None" = None):
        self.op: Operator = as_operator(op)
        if not isinstance(output, Space) or not isinstance(input, Space):
            raise TypeError("Jacobian: output and input must be Space objects")
        if self.op.shape != (output.size, input.size):
            raise ShapeError(
                f"Jacobian J_[{input.name}] {output.name}: expected a {output.size}x{input.size} matrix "
                f"(output {output.describe()}, input {input.describe()}), received {self.op.shape[0]}x{self.op.shape[1]}"
            )
        self.output = output
        self.input = input
        self.symbol = symbol or rf"\mathbf{{J}}_{{{input.latex}}} {output.latex}"
        self.factors = tuple(factors)
        self.blocks = tuple(blocks)
        self.notation = notation  # optional block-level LaTeX of the matrix itself (e.g. I_3 \otimes x^T)
        if display_notation is None:  # the parts' mark (a product, a stack)
            display_notation = next((j.display_notation for j in self.factors + self.blocks
                                     if j.display_notation is not None), None)
        self.display_notation = display_notation

    @property
    def display_notation(self) -> "str | object | None":
        """The notation of the Jupyter display (see the class docstring); None: Damadi's."""
        return self._display_notation

    @display_notation.setter
    def display_notation(self, value: "str | object | None") -> None:
        if value is not None and not isinstance(value, str) and not callable(getattr(value, "jac", None)):
            raise TypeError(f"Jacobian.display_notation: expected a notation name (str), a Notation or None, "
                            f"received {type(value).__name__}")
        if isinstance(value, str) and not value.strip():
            raise TypeError("Jacobian.display_notation: expected a notation name, received an empty string")
        self._display_notation = value

    # ------------------------------------------------------------------ basics
    @property
    def shape(self) -> tuple[int, int]:
        return self.op.shape

    @property
    def structure(self) -> str:
        return self.op.structure

    def __repr__(self) -> str:
        return (f"Jacobian(J_[{self.input.name}] {self.output.name}: {self.shape[0]}x{self.shape[1]}, "
                f"{self.structure})")

    # ------------------------------------------------------------------ algebra
    def __matmul__(self, other: "Jacobian") -> "Jacobian":
        if not isinstance(other, Jacobian):
            return NotImplemented
        if self.input != other.output:
            raise SpaceMismatchError(
                f"cannot chain {self.symbol_plain()} @ {other.symbol_plain()}: the left factor's input space "
                f"{self.input.describe()} is not the right factor's output space {other.output.describe()}"
            )
        factors = (self.factors or (self,)) + (other.factors or (other,))
        return Jacobian(Product([self.op, other.op]), self.output, other.input,
                        rf"\mathbf{{J}}_{{{other.input.latex}}} {self.output.latex}", factors=factors)

    def symbol_plain(self) -> str:
        return f"J_[{self.input.name}] {self.output.name} ({self.shape[0]}x{self.shape[1]})"

    @property
    def T(self) -> Operator:
        """The transposed operator (a gradient map, not a Jacobian)."""
        return self.op.T

    def matvec(self, v):
        return self.op.matvec(v)

    def rmatvec(self, v):
        return self.op.rmatvec(v)

    # ------------------------------------------------------------------ materialize
    def to_dense(self) -> np.ndarray:
        return self.op.to_dense()

    def to_sparse(self) -> sp.csr_array:
        return self.op.to_sparse()

    def to_sympy(self) -> sympy.Matrix:
        return self.op.to_sympy()

    def __array__(self, dtype=None, copy=None):
        a = self.to_dense()
        return a.astype(dtype) if dtype is not None else a

    def block(self, name: str) -> "Jacobian":
        """The block of a stacked Jacobian whose input space is named ``name``."""
        for b in self.blocks:
            if b.input.name == name:
                return b
        raise KeyError(f"{self.symbol_plain()} has no block with input {name!r}; blocks: "
                       + ", ".join(b.input.name for b in self.blocks))

    def _repr_latex_(self) -> "str | None":
        return display_latex(self)


def hstack(jacobians: Sequence[Jacobian], name: str = "theta", latex: str = r"\boldsymbol{\theta}",
           space: Space | None = None) -> Jacobian:
    r"""Stack Jacobians of one output side by side: :math:`[\mathbf J_{\theta_1} z\ \cdots\ \mathbf J_{\theta_k} z]`.

    This is Damadi Alg. 1 line 7.  All blocks must share the output space.  ``space`` is
    the concatenated input space when the caller already has it (its parts must be the
    blocks' input spaces, in order); otherwise it is built from ``name`` and ``latex``.
    """
    jacobians = list(jacobians)
    if not jacobians:
        raise ShapeError("hstack: needs at least one Jacobian")
    out = jacobians[0].output
    for j in jacobians[1:]:
        if j.output is not out and j.output != out:
            raise SpaceMismatchError(
                f"hstack: blocks have different output spaces: {out.describe()} vs {j.output.describe()}"
            )
    if space is None:
        space = Space.concat([j.input for j in jacobians], name, latex)
    elif len(space.parts) != len(jacobians) or any(
        p is not j.input and p != j.input for p, j in zip(space.parts, jacobians)
    ):
        raise SpaceMismatchError(
            f"hstack: the space {space.describe()} does not concatenate the blocks' input spaces "
            + ", ".join(j.input.describe() for j in jacobians)
        )
    return Jacobian(HStack([j.op for j in jacobians]), out, space,
                    rf"\mathbf{{J}}_{{{latex}}} {out.latex}", blocks=jacobians)


def vstack(jacobians: Sequence[Jacobian], name: str, latex: str) -> Jacobian:
    """Stack Jacobians of one input vertically (per-sample Jacobians of a batch)."""
    jacobians = list(jacobians)
    if not jacobians:
        raise ShapeError("vstack: needs at least one Jacobian")
    inp = jacobians[0].input
    for j in jacobians[1:]:
        if j.input != inp:
            raise SpaceMismatchError(
                f"vstack: blocks have different input spaces: {inp.describe()} vs {j.input.describe()}"
            )
    space = Space.concat([j.output for j in jacobians], name, latex)
    return Jacobian(VStack([j.op for j in jacobians]), space, inp,
                    rf"\mathbf{{J}}_{{{inp.latex}}} {latex}", blocks=jacobians)


def block_diag(jacobians: Sequence[Jacobian], out_name: str, out_latex: str, in_name: str, in_latex: str) -> Jacobian:
    r"""Block diagonal :math:`\sum_i \mathbf E_{ii} \otimes \mathbf J_i` over the samples of a batch."""
    jacobians = list(jacobians)
    if not jacobians:
        raise ShapeError("block_diag: needs at least one Jacobian")
    out = Space.concat([j.output for j in jacobians], out_name, out_latex)
    inp = Space.concat([j.input for j in jacobians], in_name, in_latex)
    return Jacobian(BlockDiag([j.op for j in jacobians]), out, inp, blocks=jacobians)


class BatchJacobian(Jacobian):
    r"""The Jacobian of a whole batch, rows sample-major: :math:`\mathbf J_{\operatorname{vec}\mathbf X}\operatorname{vec}\mathbf Z`
    (columns sample-major too) or :math:`\mathbf J_\theta\operatorname{vec}\mathbf Z` (columns θ).

    Row ``i·n_out + k`` is output ``k`` of sample ``i``.  :meth:`block` gives the rows of one sample
    (``block(i)``) or, when the columns are samples, the block :math:`\mathbf J_{\mathbf x_k}\mathbf z_i`
    (``block(i, k)``); for a network whose layers map each sample on its own the off-diagonal blocks
    are zero (block-diagonal; Ganev Prop. 4.1), for one with batch normalization in training mode
    they are not (``couples_samples``).  Sample indices start at 0.  ``block(name)`` with a string is
    :meth:`Jacobian.block` (a block by its input space's name).
    """

    def __init__(self, op, output: Space, input: Space, *, n_samples: int, out_size: int, in_size: int | None,
                 couples_samples: bool, symbol: str | None = None, blocks: Sequence[Jacobian] = ()):
        super().__init__(op, output, input, symbol=symbol, blocks=blocks)
        self.n_samples = int(n_samples)
        self.out_size = int(out_size)
        self.in_size = None if in_size is None else int(in_size)
        #: whether the network couples the samples (off-diagonal blocks may be nonzero)
        self.couples_samples = bool(couples_samples)

    def _index(self, v, what: str) -> int:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not 0 <= v < self.n_samples:
            raise DataError(f"{self.symbol_plain()}.block: {what} must be an integer in 0..{self.n_samples - 1} "
                            f"(a sample of the batch of {self.n_samples}), received {v!r}")
        return int(v)

    def _part(self, space: Space, i: int, name: str, size: int) -> Space:
        if len(space.parts) == self.n_samples:
            return space.parts[i]
        return Space(f"{name}_{i + 1}", (size,))

    def sample_rows(self, i: int) -> np.ndarray:
        """The dense rows of sample ``i``, ``(out_size, columns)``."""
        i = self._index(i, "i")
        m = self.out_size
        E = np.zeros((m, self.shape[0]), dtype=object if self.op.symbolic else float)
        E[:, i * m:(i + 1) * m] = np.eye(m, dtype=np.int64) if self.op.symbolic else np.eye(m)
        return np.asarray(self.op.left_matmat(E))

    def block(self, i, k=None) -> Jacobian:
        r"""``block(i)``: sample ``i``'s rows; ``block(i, k)``: :math:`\mathbf J_{\mathbf x_k}\mathbf z_i` (sample columns only);
        ``block(name)``: the block whose input space is named ``name``."""
        if isinstance(i, str) and k is None:
            return super().block(i)
        rows = self.sample_rows(i)
        out = self._part(self.output, int(i), self.output.name, self.out_size)
        if k is None:
            return Jacobian(Dense(rows), out, self.input)
        if self.in_size is None:
            raise DataError(f"{self.symbol_plain()}.block(i, k): the columns are the parameters, not samples; use block(i)")
        k = self._index(k, "k")
        inp = self._part(self.input, k, self.input.name, self.in_size)
        return Jacobian(Dense(rows[:, k * self.in_size:(k + 1) * self.in_size]), out, inp)

    def block_norms(self) -> np.ndarray:
        r"""``(N, N)`` Frobenius norms of the blocks :math:`\mathbf J_{\mathbf x_k}\mathbf z_i` (sample columns only):
        zero off the diagonal unless the samples are coupled."""
        if self.in_size is None:
            raise DataError(f"{self.symbol_plain()}.block_norms: the columns are the parameters, not samples")
        D = np.asarray(self.to_dense(), dtype=float).reshape(self.n_samples, self.out_size, self.n_samples, self.in_size)
        return np.sqrt(np.einsum("ijkl,ijkl->ik", D, D))

    def _repr_latex_(self) -> "str | None":
        printer = DISPLAY_PRINTERS.get("Jacobian")
        return None if printer is None else printer(self)
