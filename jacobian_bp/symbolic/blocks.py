r"""Block-level Jacobian chains of any size, as SymPy matrix expressions with shapes.

:class:`BlockChain` writes Damadi's Algorithm 1 (corrected, see :mod:`jacobian_bp.engine.network`)
for a whole network with *matrix symbols* instead of entries, so that LeNet-300-100 costs
nothing to build or display:

.. math::

   \mathbf J_\theta\mathbf z^{[3]} = \Big[\ \mathbf I_{10}\otimes\mathbf a^{[2]\top},\ \mathbf I_{10}
   \ \Big|\ \mathbf W^{[3]\top}\mathbf D^{[2]}(\mathbf I_{100}\otimes\mathbf a^{[1]\top}),\
   \mathbf W^{[3]\top}\mathbf D^{[2]}\ \Big|\ \cdots\Big]

(Damadi's conventions; under ``out_in`` layouts the factor is :math:`\mathbf W^{[3]}`, and a
column-major vec of a canonical weight gives :math:`\mathbf a^\top\otimes\mathbf I`).  The
pieces are SymPy's ``MatrixSymbol``, ``Identity``, ``KroneckerProduct``, ``MatMul``,
``BlockMatrix``: every product is shape-checked by SymPy, and a mismatch is re-raised as
:class:`~jacobian_bp.errors.ShapeError` naming the factors.

Symbols (plain names, LaTeX in :attr:`BlockChain.symbol_latex`):

* ``x`` (:math:`n_0\times1`), ``a[l]`` (:math:`n_l\times1`): the layer inputs;
* ``W[l]``: the weight in the convention's layout;
* ``D[l]`` = :math:`\operatorname{diag} f'(\mathbf z^{[l]})` (elementwise activations),
  ``S[l]`` = :math:`\operatorname{diag}(\mathbf a^{[l]})-\mathbf a^{[l]}\mathbf a^{[l]\top}` (softmax),
  ``R[l]`` (radial sigmoid), ``Mmax[l]``/``Mavg[l]`` (pooling), ``T[l]`` = Toep(:math:`\mathbf K^{[l]}`),
  ``P[l]`` (im2col patches of the conv input), ``Pi[l]`` (vec permutations).

:meth:`BlockChain.explicit` expands to explicit entries (via the engine's own layer
Jacobians at the named symbols :math:`z^{[l]}_i`, :math:`a^{[l]}_i`, :math:`w^{[l]}_{ij}`, …) only
when the result *and* every symbol involved have at most ``max_entries`` entries (default
:data:`DEFAULT_MAX_ENTRIES`); beyond that it raises
:class:`~jacobian_bp.symbolic.errors.SizeBoundError`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy
from sympy import BlockMatrix, Identity, KroneckerProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix
from sympy.matrices.exceptions import ShapeError as SympyShapeError

from ..errors import ShapeError, SpecError
from ..backend.escape import escape_text
from ..engine.conventions import INSTALLED_NOTATIONS, resolve_notation
from ..backend.operators import Product
from ..engine.network import Network, ParamEntry
from .block_body import BodyChain, is_block as _is_block
from .errors import SizeBoundError
from .intermediates import OUTPUT_NAME
from .networks import SymbolicNetwork, param_symbol_base, symbol_array
from .printing import latex as paper_latex

__all__ = ["BlockChain", "BlockSymbol", "matmul", "evaluate_matrix_expression", "lenet_block_chain", "DEFAULT_MAX_ENTRIES"]

#: default bound on the number of entries :meth:`BlockChain.explicit` will materialize
DEFAULT_MAX_ENTRIES = 4096


def _shape_str(m) -> str:
    return f"{m.shape[0]}x{m.shape[1]}"


def matmul(*factors, what: str = "matrix product") -> sympy.MatrixExpr:
    """Shape-checked product of SymPy matrix expressions; a mismatch names both factors.

    Raises
    ------
    ShapeError
        ``"<what>: cannot multiply W[3].T (10x100) by D[1] (300x300)"``.
    """
    factors = [f for f in factors if f is not None]
    if not factors:
        raise ShapeError(f"{what}: needs at least one factor")
    for f in factors:
        if not isinstance(f, (sympy.MatrixExpr, sympy.MatrixBase)):
            raise TypeError(f"{what}: factors must be SymPy matrices or matrix expressions, received {type(f).__name__}")
    for left, right in zip(factors[:-1], factors[1:]):
        if left.shape[1] != right.shape[0]:
            raise ShapeError(f"{what}: cannot multiply {left} ({_shape_str(left)}) by {right} ({_shape_str(right)}): "
                             f"{left.shape[1]} columns vs {right.shape[0]} rows")
    if len(factors) == 1:
        return factors[0]
    try:
        return MatMul(*factors)
    except SympyShapeError as exc:  # pragma: no cover - the loop above catches every mismatch first
        raise ShapeError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class BlockSymbol:
    """A matrix symbol of the chain: its LaTeX, what it stands for, and how to expand it."""

    symbol: MatrixSymbol
    latex: str
    meaning: str
    provider: Callable[["_NamedValues"], sympy.Matrix]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.symbol.shape)


class _NamedValues:
    """Named explicit values (``z^{[l]}_i``, ``a^{[l]}_i``, parameters) for :meth:`BlockChain.explicit`."""

    def __init__(self, network: Network, snet: SymbolicNetwork | None):
        self.network = network
        self.snet = snet
        self._io: dict = {}

    def x(self) -> np.ndarray:
        return self.snet.x if self.snet is not None else symbol_array("x", self.network.input_shape)

    def z(self, l: int) -> np.ndarray:
        return symbol_array("z", self.network.stages[l - 1].layer.out_shape, l)

    def a(self, l: int) -> np.ndarray:
        if l == 0:
            return self.x()
        st = self.network.stages[l - 1]
        if not st.post and l < self.network.L:
            return self.z(l)
        shape = st.post[-1].out_shape if st.post else st.layer.out_shape
        return symbol_array(OUTPUT_NAME, shape) if l == self.network.L else symbol_array("a", shape, l)

    def user_param(self, entry: ParamEntry) -> np.ndarray:
        if self.snet is not None:
            return self.snet.params[entry.name]
        return symbol_array(param_symbol_base(entry.local, entry.stage)[0], entry.user_shape,
                            param_symbol_base(entry.local, entry.stage)[1])

    def stage_params(self, l: int) -> dict[str, np.ndarray]:
        conv = self.network.convention
        return {e.local: conv.from_user(self.user_param(e), e.is_dense_weight)
                for e in self.network.entries if e.stage == l}

    def named_block(self, l: int):
        """The residual block of stage ``l`` in named form (:func:`~jacobian_bp.symbolic.intermediates.named_forward`):
        the symbols :math:`z^{[l.k]}_i`, :math:`a^{[l.k]}_i` of its body and the values around them."""
        if "named" not in self._io:
            from .intermediates import named_forward

            self._io["named"] = named_forward(self.snet if self.snet is not None else SymbolicNetwork(self.network))
        return self._io["named"].blocks[l]

    def post_io(self, l: int) -> list:
        if l not in self._io:
            st = self.network.stages[l - 1]
            cur, io = self.z(l), []
            for layer in st.post:
                out = layer.forward(cur[None], {})[0]
                io.append([cur, out])
                cur = out
            if io:
                io[-1][1] = self.a(l)
            self._io[l] = [tuple(p) for p in io]
        return self._io[l]


def _column(arr: np.ndarray) -> sympy.Matrix:
    return sympy.Matrix(list(np.asarray(arr, dtype=object).ravel()))


class _BlockAlgebra:
    """The matrix-expression algebra a layer's ``block_param_jacobian`` writes its block in (SymPy model).

    Named matrices (im2col patches, vec permutations) become :class:`BlockSymbol` entries of the chain,
    with providers that evaluate them from the layer's own ``jac_params`` at named values: ``jp(v, order)``
    is the layer's block of the parameter ``local`` there; ``a_in`` the matrix symbol of the layer's input;
    ``tag`` its stage (``"2"``) or block tag (``"2.1"``).
    """

    def __init__(self, chain: "BlockChain", layer, tag, a_in, jp, local: str, size: int):
        self._chain, self._layer, self._tag, self._a_in = chain, layer, tag, a_in
        self._jp, self._local, self._size = jp, local, size

    def identity(self, n):
        return Identity(n)

    def kron(self, A, B):
        return KroneckerProduct(A, B)

    def matmul(self, A, B):
        return matmul(A, B, what=f"{self._layer.kind} parameter Jacobian of layer {self._tag}")

    def ones(self, n):
        return OneMatrix(n, 1)

    def input_column(self):
        return self._a_in

    def input_row(self):
        return self._a_in.T

    def patches(self, rows, cols):
        t, nt = self._tag, self._chain.notation
        return self._chain._symbol(f"P[{t}]", rows, cols, nt.mat("P", t),
                                   rf"\text{{im2col patches of }}{self._chain.symbols_tex(self._a_in)}",
                                   lambda v: self._jp(v, "C").B.to_sympy())

    def permutation(self, local):
        r""":math:`\boldsymbol\Pi` with :math:`\mathbf J_{\operatorname{vec}_c} = \mathbf J_{\operatorname{vec}_r}\boldsymbol\Pi`: the last factor of
        the layer's column-major Jacobian (the whole of it when the row-major one is the identity).
        Named ``Pi[l]`` for the layer's first parameter, ``Pi<name>[l]`` for the others."""
        t, nt = self._tag, self._chain.notation
        first = local == self._layer.param_names[0]
        name = f"Pi{'' if first else local}[{t}]"
        tex = nt.index_on(r"\boldsymbol{\Pi}" + ("" if first else f"_{{{local}}}"), t)

        def provider(v):
            J = self._jp(v, "F")
            return (J.factors[-1] if isinstance(J, Product) else J).to_sympy()

        return self._chain._symbol(name, self._size, self._size, tex, r"\text{column-major vec permutation}", provider)


def reindex(template: str, l, nt) -> str:
    r"""A layer's LaTeX template in ``{l}`` (written in Damadi's :math:`^{[l]}`, e.g. ``\mathbf{{S}}^{{[{l}]}}``) with the
    layer index in the notation's style: :math:`\mathbf S^{(2)}` (PyTorch), :math:`\mathbf S_{2}`, :math:`\mathbf S[2]`;
    a subscript right after it takes the index in (:math:`\mathbf M_{\max,2}`)."""
    mark = "\x00"
    t = template.format(l=mark)
    key = "^{[" + mark + "]}"
    if key not in t:
        return template.format(l=l)
    out, rest = "", t
    while key in rest:
        head, rest = rest.split(key, 1)
        if nt.index == "sub" and rest.startswith("_{"):
            close = rest.index("}")
            out += f"{head}_{{{rest[2:close]},{l}}}"
            rest = rest[close + 1:]
        else:
            out += nt.index_on(head, l) if head else head
    return (out + rest).replace(mark, str(l))


class BlockChain:
    r""":math:`\mathbf J_\theta\mathbf z^{[L]}` of a network as SymPy matrix expressions (any size).

    Parameters
    ----------
    network : Network
        Any engine network; its convention fixes the weight layout, the vec order (hence
        :math:`\mathbf I\otimes\mathbf a^\top` or :math:`\mathbf a^\top\otimes\mathbf I`) and the
        block order (Damadi Alg. 1 line 7: :math:`[\text{layer }L\ \cdots\ \text{layer }1]`).

    Attributes
    ----------
    blocks : list of sympy.MatrixExpr
        :math:`\mathbf J_{\theta_k}\mathbf z^{[L]}` for every parameter tensor, in θ order.
    entries : list of ParamEntry
        The matching θ entries (name, stage, space).
    symbols : dict[str, BlockSymbol]
        Every matrix symbol used, by plain name (``"W[3]"``, ``"D[2]"``, ``"a[1]"``, ``"x"``).
    chain : dict[int, sympy.MatrixExpr or None]
        :math:`\mathbf J_{\mathbf z^{[l]}}\mathbf z^{[L]}` (``None`` for :math:`l = L`: the identity).
    """

    #: the shape-checked product (:func:`matmul`), for the residual body (:mod:`.block_body`)
    matmul = staticmethod(matmul)

    def __init__(self, network: Network, notation=None):
        if not isinstance(network, Network):
            raise TypeError(f"BlockChain: expected a jacobian_bp Network, received {type(network).__name__}")
        self.network = network
        self.convention = network.convention
        nt = resolve_notation(notation if notation is not None else network)
        if nt is None:
            raise SpecError(f"BlockChain: unknown notation {notation!r}; use a preset name ({', '.join(INSTALLED_NOTATIONS)}), "
                            "a registered name or a Notation")
        #: the notation of every symbol (default: the network's convention's)
        self.notation = nt
        self.symbols: dict[str, BlockSymbol] = {}
        L = network.L
        self.input_jac: dict[int, sympy.MatrixExpr] = {}
        self.activation_jac: dict[int, sympy.MatrixExpr | None] = {}
        self.local: dict[str, sympy.MatrixExpr] = {}
        self.bodies: dict = {}
        for st in network.stages:
            l = st.index
            if _is_block(st.layer):
                self.bodies[l] = BodyChain(self, st.layer, str(l), self._a(l - 1),
                                           lambda local, l=l: network.param_name(l, local), lambda v, l=l: v.named_block(l))
            self.input_jac[l] = self._input_jacobian(l)
            # f^[L] is paired with the loss (Damadi Fig. 2): it is not a factor of J_theta z[L]
            self.activation_jac[l] = self._activation_jacobian(l) if l < L else None
            for e in network.entries:
                if e.stage == l:
                    self.local[e.name] = self._param_jacobian(e)
        self.chain: dict[int, sympy.MatrixExpr | None] = {L: None}
        factors: list = []
        for l in range(L, 1, -1):
            factors = factors + [self.input_jac[l], self.activation_jac[l - 1]]
            self.chain[l - 1] = matmul(*factors, what=f"block chain J_[z[{l - 1}]] z[{L}]")
        self.entries: list[ParamEntry] = list(network.entries)
        self.blocks: list[sympy.MatrixExpr] = []
        for e in self.entries:
            chain = self.chain[e.stage]
            factors = [] if chain is None else list(chain.args if isinstance(chain, MatMul) else [chain])
            local = self.local[e.name]
            if not (factors and isinstance(local, Identity)):  # P_l I = P_l
                factors += list(local.args) if (factors and isinstance(local, MatMul)) else [local]
            self.blocks.append(matmul(*factors, what=f"block J_[{e.space.name}] z[{L}]"))

    # ------------------------------------------------------------------ symbols
    def _symbol(self, name: str, rows: int, cols: int, tex: str, meaning: str, provider) -> MatrixSymbol:
        if name not in self.symbols:
            self.symbols[name] = BlockSymbol(MatrixSymbol(name, rows, cols), tex, meaning, provider)
        return self.symbols[name].symbol

    def symbols_tex(self, symbol) -> str:
        """The LaTeX of one of the chain's matrix symbols."""
        return self.symbols[symbol.name].latex

    def _a(self, l: int) -> MatrixSymbol:
        net, nt = self.network, self.notation
        if l == 0:
            n = int(np.prod(net.input_shape))
            return self._symbol("x", n, 1, nt.x, r"\text{the input}", lambda v: _column(v.x()))
        size = int(np.prod(net.a_space(l).shape))
        return self._symbol(f"a[{l}]", size, 1, nt.a(l), rf"{nt.act(l, vector=True)}({nt.z(l)})",
                            lambda v, l=l: _column(v.a(l)))

    def _input_jacobian(self, l: int) -> sympy.MatrixExpr:
        st, nt = self.network.stages[l - 1], self.notation
        if l in self.bodies:  # a residual block: I + J_body, the body's chain written out (He et al. 2016, eq. (1))
            return MatAdd(Identity(st.layer.out_size), self.bodies[l].jacobian())
        if st.layer.affine_weight_name is not None:
            e = next(e for e in self.network.entries if e.stage == l and e.local == st.layer.affine_weight_name)
            W = self._symbol(f"W[{l}]", *e.user_shape, nt.param(e.local, l, st.layer),
                             rf"\text{{weight of layer {l} ({self.convention.weight_layout.replace('_', '-')} layout)}}",
                             lambda v, e=e: sympy.Matrix(v.user_param(e).tolist()))
            return W.T if self.convention.weight_layout == "in_out" else W
        label = nt.jac(nt.z(l), self.symbols_tex(self._a(l - 1)))
        closed = st.layer.latex_input_jacobian({p: nt.param(p, l, st.layer) for p in st.layer.param_names})
        name, tex = (f"{st.layer.block_input_name}[{l}]", closed) if closed is not None else (f"Jin[{l}]", label)
        return self._symbol(name, st.layer.out_size, st.layer.in_size, tex, label,
                            lambda v, l=l, st=st: st.layer.jac_input(v.a(l - 1), v.z(l), v.stage_params(l)).to_sympy())

    def free_factors(self, layers, tag, io) -> list:
        r"""The factors of parameter-free layers at stage (or block tag) ``tag``, last layer first:
        :math:`\mathbf D` for an elementwise activation, the layer's block symbol, or a generic
        :math:`\mathbf J`; ``io(v)`` gives the layers' (input, output) pairs at named values."""
        nt, mats, n_elem = self.notation, [], 0
        for k, layer in enumerate(layers):
            n = layer.out_size
            provider = (lambda v, k=k, layer=layer: layer.jac_input(*io(v)[k], {}).to_sympy())
            if layer.jacobian_is_identity:
                continue
            if getattr(layer, "elementwise", False):
                suffix = "" if n_elem == 0 else str(n_elem + 1)
                n_elem += 1
                f = layer.latex_name()
                mats.append(self._symbol(f"D{suffix}[{tag}]", n, n, nt.mat(f"D{suffix}", tag),
                                         rf"\operatorname{{diag}} {f}'({nt.z(tag)})", provider))
            elif layer.block_symbol is not None:
                base, meaning, tex = layer.block_symbol
                mats.append(self._symbol(f"{base}[{tag}]", n, layer.in_size, reindex(tex, tag, nt),
                                         reindex(meaning, tag, nt), provider))
            else:
                mats.append(self._symbol(f"J{k + 1}[{tag}]", n, layer.in_size,
                                         nt.index_on(rf"\mathbf{{J}}_{{{k + 1}}}", tag),
                                         rf"\text{{Jacobian of {escape_text(layer.kind)}}}", provider))
        return list(reversed(mats))

    def _activation_jacobian(self, l: int) -> sympy.MatrixExpr | None:
        st = self.network.stages[l - 1]
        mats = self.free_factors(st.post, l, lambda v, l=l: v.post_io(l))
        if not mats:
            return None
        return matmul(*mats, what=f"activation Jacobian J_[z[{l}]] a[{l}]")

    def param_block(self, layer, tag, a_in, local: str, order: str, size: int, jp) -> sympy.MatrixExpr:
        r""":math:`\mathbf J_{\operatorname{vec}\theta}\mathbf z` of the parameter ``local`` of ``layer`` (stage or block tag ``tag``,
        input symbol ``a_in``): the layer's closed form in the block algebra, or a named symbol; ``jp(v, order)`` is the
        layer's own block at named values (the symbol's explicit value)."""
        nt = self.notation
        block = layer.block_param_jacobian(_BlockAlgebra(self, layer, tag, a_in, jp, local, size), local, order)
        if block is not None:
            return block
        wrt = nt.param_vec(local, tag, layer) if nt.jacobian != "J" else nt.param(local, tag, layer)
        return self._symbol(f"J{local}[{tag}]", layer.out_size, size, nt.jac(nt.z(tag), wrt),
                            r"\text{local parameter Jacobian}", lambda v: jp(v, order).to_sympy())

    def _param_jacobian(self, e: ParamEntry) -> sympy.MatrixExpr:
        l = e.stage
        if l in self.bodies:  # inside a residual block: the chain from the block's output down to the parameter
            return self.bodies[l].param_jacobian(e.local, e.order, e.size)
        st = self.network.stages[l - 1]
        return self.param_block(st.layer, l, self._a(l - 1), e.local, e.order, e.size,
                                lambda v, order, e=e, st=st: st.layer.jac_params(v.a(l - 1), v.z(l), v.stage_params(l),
                                                                               order)[e.local])

    # ------------------------------------------------------------------ access
    @property
    def matrix(self) -> BlockMatrix:
        r"""The 1×k block matrix :math:`[\mathbf J_{\theta_1}\mathbf z^{[L]}\ \cdots]` (θ order)."""
        return BlockMatrix([list(self.blocks)])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.network.n_out, self.network.n_params)

    def block(self, name: str) -> sympy.MatrixExpr:
        """The block of one parameter tensor (``"W1"``, ``"b3"``)."""
        for e, b in zip(self.entries, self.blocks):
            if e.name == name:
                return b
        raise KeyError(f"network {self.network.name!r} has no parameter {name!r}; parameters: "
                       f"{', '.join(e.name for e in self.entries)}")

    def shapes(self) -> dict[str, tuple[int, int]]:
        """``{parameter name: block shape}`` in θ order."""
        return {e.name: tuple(int(s) for s in b.shape) for e, b in zip(self.entries, self.blocks)}

    @property
    def symbol_latex(self) -> dict[str, str]:
        return {k: s.latex for k, s in self.symbols.items()}

    def gradient(self) -> BlockMatrix:
        r""":math:`\nabla_\theta\ell = (\mathbf J_\theta\mathbf z^{[L]})^\top\boldsymbol\delta^{[L]}` as a column of blocks."""
        L, nt = self.network.L, self.notation
        delta = self._symbol(f"delta[{L}]", self.network.n_out, 1, nt.dz(L), nt.grad(nt.z(L)), lambda v: None)
        return BlockMatrix([[matmul(b.T, delta, what=f"gradient block of {e.name}")] for e, b in zip(self.entries, self.blocks)])

    # ------------------------------------------------------------------ LaTeX
    def _tex(self, expr) -> str:
        return paper_latex(expr, symbol_latex=self.symbol_latex, transpose=self.notation.transpose)

    def latex_block(self, name: str) -> str:
        return self._tex(self.block(name))

    def latex(self, shapes: bool = True) -> str:
        r"""``\mathbf J_{\boldsymbol\theta}\mathbf z^{[L]} = [\,\cdots\,]`` with bars between layers
        and, with ``shapes=True``, every block's shape under it."""
        L = self.network.L
        cells, spec, prev = [], [], None
        for e, b in zip(self.entries, self.blocks):
            tex = self._tex(b)
            if shapes:
                tex = rf"\underbrace{{{tex}}}_{{{b.shape[0]}\times {b.shape[1]}}}"
            if prev is not None and e.stage != prev:
                spec.append("|")
            spec.append("c")
            cells.append(tex)
            prev = e.stage
        body = r"\left[\begin{array}{" + "".join(spec) + "}" + " & ".join(cells) + r"\end{array}\right]"
        nt = self.notation
        return (rf"{nt.jac(nt.z(L), nt.theta)} = {body}"
                + (rf"\in\mathbb R^{{{self.shape[0]}\times {self.shape[1]}}}" if shapes else ""))

    def legend_latex(self) -> str:
        r"""What each symbol of the blocks stands for, with its shape (an ``aligned`` block)."""
        used = {s.name for b in self.blocks for s in b.atoms(MatrixSymbol)}
        rows = [rf"{s.latex} &:= {s.meaning} \in \mathbb R^{{{s.shape[0]}\times {s.shape[1]}}}"
                for name, s in self.symbols.items() if name in used]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        return "$" + self.latex() + "$"

    def __repr__(self) -> str:
        return (f"BlockChain({self.network.name}: J_theta z[{self.network.L}], {self.shape[0]} x {self.shape[1]}, "
                f"{len(self.blocks)} blocks, notation {self.notation.name})")

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """Plain text: one line per block, ``name  rows x cols  expression``."""
        lines = [f"J_theta z[{self.network.L}] of {self.network.name} ({self.convention.name}): "
                 f"{self.shape[0]} x {self.shape[1]}"]
        for e, b in zip(self.entries, self.blocks):
            lines.append(f"  {e.name:>4}  {b.shape[0]} x {b.shape[1]}  {b}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ explicit entries
    def explicit(self, snet: SymbolicNetwork | None = None, block: str | None = None,
                 max_entries: int = DEFAULT_MAX_ENTRIES) -> sympy.Matrix:
        r"""Explicit SymPy entries of the chain (or of one block), in named form.

        Each symbol is replaced by the engine's own matrix at the named point:
        ``W[l]`` by :math:`(w^{[l]}_{ij})` (or ``snet``'s values), ``a[l]`` by
        :math:`(a^{[l]}_i)`, ``D[l]`` by :math:`\operatorname{diag}(f'(z^{[l]}_i))`, ...

        Parameters
        ----------
        snet : SymbolicNetwork, optional
            Supplies x and the parameters (e.g. with some numbers substituted); must wrap
            this chain's network.
        block : str, optional
            A parameter name (``"W1"``); default the whole :math:`\mathbf J_\theta\mathbf z^{[L]}`.
        max_entries : int
            Bound on the entries of the result and of every symbol expanded.

        Raises
        ------
        SizeBoundError
            The result or one of its symbols has more than ``max_entries`` entries.
        """
        if isinstance(max_entries, bool) or not isinstance(max_entries, (int, np.integer)) or max_entries < 1:
            raise ValueError(f"explicit: max_entries must be a positive integer, received {max_entries!r}")
        if snet is not None and (not isinstance(snet, SymbolicNetwork) or snet.network is not self.network):
            raise ValueError("explicit: snet must be a SymbolicNetwork wrapping this chain's network")
        expr = self.matrix if block is None else self.block(block)
        what = f"J_theta z[{self.network.L}]" if block is None else f"block J_[{self.block_space(block)}] z[{self.network.L}]"
        rows, cols = (int(s) for s in expr.shape)
        if rows * cols > max_entries:
            raise SizeBoundError(
                f"explicit: {what} of network {self.network.name!r} is {rows} x {cols} = {rows * cols:,} entries, "
                f"above the bound max_entries={max_entries:,}; keep it at block level (BlockChain.latex) or raise the bound")
        used = sorted(expr.atoms(MatrixSymbol), key=lambda s: s.name)
        for s in used:
            n = int(s.shape[0]) * int(s.shape[1])
            if n > max_entries:
                raise SizeBoundError(
                    f"explicit: {what} needs the symbol {s.name} ({s.shape[0]} x {s.shape[1]} = {n:,} entries), "
                    f"above the bound max_entries={max_entries:,}")
        values = _NamedValues(self.network, snet)
        mapping = {s: sympy.ImmutableMatrix(self.symbols[s.name].provider(values)) for s in used}
        for s, m in mapping.items():
            if m.shape != s.shape:  # pragma: no cover - guards the providers
                raise ShapeError(f"explicit: {s.name} expanded to {m.shape}, expected {s.shape}")
        return evaluate_matrix_expression(expr, mapping)

    def block_space(self, name: str) -> str:
        for e in self.entries:
            if e.name == name:
                return e.space.name
        raise KeyError(name)


def _safe_matrix(value, where: str) -> sympy.Matrix:
    """A SymPy matrix from a SymPy matrix or a 2-D array-like, every entry checked by
    :func:`~jacobian_bp.symbolic.networks.as_sympy_entry` (``sympy.Matrix`` itself would
    evaluate strings as Python code)."""
    from .networks import as_sympy_entry

    if isinstance(value, sympy.MatrixBase):
        rows = value.tolist()
    else:
        if isinstance(value, str):
            as_sympy_entry(value, where)  # raises: strings are never parsed
        rows = np.array(value, dtype=object)
        if rows.ndim == 1:
            rows = rows[:, None]
        if rows.ndim != 2:
            raise ShapeError(f"{where}: expected a matrix, received an array of shape {rows.shape}")
        rows = rows.tolist()
    return sympy.Matrix([[as_sympy_entry(v, f"{where}[{i}, {j}]") for j, v in enumerate(r)] for i, r in enumerate(rows)])


def evaluate_matrix_expression(expr, values: dict) -> sympy.Matrix:
    """Explicit matrix of a block-level expression, with ``values[symbol]`` for every matrix symbol.

    Evaluated node by node (products, Kronecker products, transposes, blocks) with explicit
    SymPy matrices -- much faster than SymPy's entry-wise ``as_explicit`` of a ``MatMul``.
    """
    from sympy import MatAdd, Transpose, ZeroMatrix, kronecker_product

    if isinstance(expr, sympy.MatrixBase):
        return sympy.Matrix(expr)
    if isinstance(expr, MatrixSymbol):
        if expr not in values:
            raise KeyError(f"no explicit value for the matrix symbol {expr.name}")
        return _safe_matrix(values[expr], f"evaluate_matrix_expression: value of {expr.name}")
    if isinstance(expr, Identity):
        return sympy.eye(int(expr.rows))
    if isinstance(expr, OneMatrix):
        return sympy.ones(int(expr.rows), int(expr.cols))
    if isinstance(expr, ZeroMatrix):
        return sympy.zeros(int(expr.rows), int(expr.cols))
    if isinstance(expr, Transpose):
        return evaluate_matrix_expression(expr.arg, values).T
    if isinstance(expr, MatMul):
        scalar, mats = sympy.Integer(1), []
        for arg in expr.args:
            if isinstance(arg, (sympy.MatrixExpr, sympy.MatrixBase)):
                mats.append(evaluate_matrix_expression(arg, values))
            else:
                scalar = scalar * arg
        out = mats[0]
        for m in mats[1:]:
            out = out * m
        return out if scalar == 1 else scalar * out
    if isinstance(expr, MatAdd):
        parts = [evaluate_matrix_expression(a, values) for a in expr.args]
        out = parts[0]
        for p in parts[1:]:
            out = out + p
        return out
    if isinstance(expr, KroneckerProduct):
        return sympy.Matrix(kronecker_product(*[evaluate_matrix_expression(a, values) for a in expr.args]))
    if isinstance(expr, BlockMatrix):
        rows = [sympy.Matrix.hstack(*[evaluate_matrix_expression(b, values) for b in row])
                for row in expr.blocks.tolist()]
        return sympy.Matrix.vstack(*rows)
    raise TypeError(f"cannot evaluate the matrix expression {expr} ({type(expr).__name__})")


def lenet_block_chain(convention: str = "damadi") -> BlockChain:
    """The block chain of the built-in ``lenet-300-100`` example under a convention preset."""
    import copy

    from ..spec import EXAMPLES, parse_spec

    raw = copy.deepcopy(EXAMPLES["lenet-300-100"])
    raw["convention"] = convention
    return BlockChain(parse_spec(raw).network)

