r"""Shape inference for expression trees: a union-find over dimensions.

A dimension is an ``int`` or a variable; user-named dimensions (``shapes={"X": ("m", "n")}``) are
*rigid* -- two different names are different sizes, never 1 -- so a product whose sizes only
conform when ``m = n`` is reported as ill-typed.  Undeclared symbols get a default shape by their
letter (:func:`default_shape`).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import ShapeError, SpecError
from .formula_tree import Node, to_text

__all__ = ["infer_shapes", "default_shape", "node_sizes"]


# ============================================================================ shapes
class _Dims:
    """Union-find over dimensions: each class is bound to an int or free (a named or anonymous size)."""

    def __init__(self):
        self.parent: dict = {}
        self.value: dict = {}
        self.count = 0
        self.rigid: set = set()  # user-named dimensions: distinct names are distinct sizes (>= 2)
        self.soft: set = set()  # dimensions that are 1 unless something forces otherwise (a ones' columns)
        self.unsized: dict = {}  # id(node) -> shape, for the ones and identities without a stated size
        self.roots: list = []  # the shapes of the formulas of the last inference

    def fresh(self, name: str | None = None):
        if name is None:
            self.count += 1
            name = f"_d{self.count}"
        self.parent.setdefault(name, name)
        return name

    def find(self, d):
        if isinstance(d, int):
            return d
        self.parent.setdefault(d, d)
        while self.parent[d] != d:
            self.parent[d] = self.parent[self.parent[d]]
            d = self.parent[d]
        return d

    def resolve(self, d):
        r = self.find(d)
        return r if isinstance(r, int) else self.value.get(r, r)

    def _rigid(self, r) -> str | None:
        if isinstance(r, int):
            return None
        names = [k for k in self.rigid if self.find(k) == r]
        return names[0] if names else None

    def unify(self, a, b, why: str):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            na, nb = self._rigid(ra), self._rigid(rb)
            if na and nb:
                raise ShapeError(f"{why}: the sizes {na} and {nb} would have to be equal")
            if (na and isinstance(rb, int)) or (nb and isinstance(ra, int)):
                raise ShapeError(f"{why}: the size {na or nb} would have to be {rb if na else ra}")
        va = ra if isinstance(ra, int) else self.value.get(ra)
        vb = rb if isinstance(rb, int) else self.value.get(rb)
        if va is not None and vb is not None:
            if va != vb:
                raise ShapeError(f"{why}: sizes {va} and {vb} do not match")
            if not isinstance(ra, int) and not isinstance(rb, int) and ra != rb:
                self.parent[ra] = rb
            return
        if isinstance(ra, int):
            ra, rb = rb, ra
            va, vb = vb, va
        # ra is a variable
        if isinstance(rb, int):
            self.value[ra] = rb
        elif ra != rb:
            self.parent[ra] = rb
            if va is not None:
                self.value[rb] = va

    def copy(self) -> "_Dims":
        c = _Dims()
        c.parent, c.value, c.count, c.rigid = dict(self.parent), dict(self.value), self.count, set(self.rigid)
        c.soft, c.unsized, c.roots = set(self.soft), dict(self.unsized), list(self.roots)
        return c

    def is_soft(self, d) -> bool:
        """A free class made only of soft dimensions (it becomes 1 unless unified with a size)."""
        r = self.find(d)
        if isinstance(r, int) or r in self.value or not self.soft:
            return False
        return all(k in self.soft for k in self.parent if self.find(k) == r)

    def settle_soft(self) -> None:
        """Bind every free soft class to 1 (a ones vector is a column unless its use says otherwise)."""
        for k in list(self.soft):
            if self.is_soft(k):
                self.unify(k, 1, "soft dimension")


_GREEK_SCALARS = {"alpha", "beta", "gamma", "lambda", "eta", "epsilon", "varepsilon", "tau", "rho", "nu", "kappa",
                  "omega", "ell"}
_VECTOR_GREEK = {"delta", "theta", "xi", "phi", "psi", "zeta", "pi"}


def default_shape(name: str, D: _Dims) -> tuple:
    """The shape a symbol gets when none is declared: lower-case Latin and some Greek letters are
    column vectors, upper-case letters matrices, other Greek letters scalars."""
    base = name.split("^")[0].split("_")[0]
    if base in _GREEK_SCALARS:
        return (1, 1)
    if base in _VECTOR_GREEK or base == "mu" or (len(base) == 1 and base.islower()):
        return (D.fresh(), 1)
    return (D.fresh(), D.fresh())


class _Infer:
    def __init__(self, D: _Dims, shapes: dict, dim_names: set, knobs: Mapping[str, Any]):
        self.D, self.shapes, self.dim_names, self.knobs = D, shapes, dim_names, knobs
        self.defaulted: set = set()  # symbols whose shape is the default of their letter (not declared)

    def adopt(self, na: Node, a: tuple, nb: Node, b: tuple) -> tuple[tuple, tuple]:
        """An undeclared symbol beside an array with channels takes that array's shape (``G`` in
        ``⟨G, conv(X, K)⟩`` is ``(C_out, H', W')``); shapes of equal lengths are returned as they are."""
        if len(a) == len(b):
            return a, b
        for n_, other in ((na, b), (nb, a)):
            if n_.op == "sym" and n_.attr("name") in self.defaulted:
                self.shapes[n_.attr("name")] = tuple(self.D.fresh() for _ in other)
                self.defaulted.discard(n_.attr("name"))
                return self.sh(na), self.sh(nb)
        return a, b

    def scalar(self, s) -> bool:
        return all(self.D.resolve(d) == 1 or self.D.is_soft(d) for d in s)

    def same(self, a, b, why: str) -> None:
        """Equal shapes: rows and columns, and the channels of multi-channel arrays (``(C, H, W)``)."""
        if len(a) != len(b):
            raise ShapeError(f"{why}: arrays of {len(a)} and {len(b)} dimensions")
        if len(a) == 2:
            self.D.unify(a[0], b[0], f"rows in {why}")
            self.D.unify(a[1], b[1], f"columns in {why}")
            return
        for x, y in zip(a, b):
            self.D.unify(x, y, why)

    def conc(self, d):
        v = self.D.resolve(d)
        return v if isinstance(v, int) else None

    def sh(self, n: Node) -> tuple:
        op, D = n.op, self.D
        where = to_text(n)
        if op == "sym":
            name = n.attr("name")
            if name in self.dim_names or name in self.knobs:
                return (1, 1)
            if name not in self.shapes:
                self.shapes[name] = default_shape(name, D)
                self.defaulted.add(name)
            return self.shapes[name]
        if op in ("num", "tr", "det", "logdet", "sum", "mean", "inner", "norm"):
            for a in n.args:
                s = self.sh(a)
                if op in ("tr", "det", "logdet"):
                    D.unify(s[0], s[1], f"{op} needs a square matrix in {where}")
            if op == "inner":
                s1, s2 = self.adopt(n.args[0], self.sh(n.args[0]), n.args[1], self.sh(n.args[1]))
                if len(s1) == len(s2) == 2:
                    D.unify(s1[0], s2[0], f"inner product in {where}")
                    D.unify(s1[1], s2[1], f"inner product in {where}")
                else:
                    self.same(s1, s2, f"inner product in {where}")
            return (1, 1)
        if op in ("eye", "ones", "zeros"):
            k = n.attr("n")
            if k is not None:
                k = k if isinstance(k, int) else (self.knobs.get(k) if k in self.knobs else D.fresh(k))
                return (k, k) if op == "eye" else (k, 1)
            if op == "ones":
                # a column of ones (its transpose a row): rows free, columns 1 unless the use needs more
                soft = D.fresh()
                D.soft.add(soft)
                s = (D.fresh(), soft)
                D.unsized[id(n)] = s
                return s
            if op == "eye":
                d = D.fresh()
                D.unsized[id(n)] = (d, d)
                return (d, d)
            return (D.fresh(), D.fresh())
        if op in ("add", "sub", "hadamard", "hadamard_or_scale"):
            a, b = self.sh(n.args[0]), self.sh(n.args[1])
            if op != "hadamard" and self.scalar(a) and not self.scalar(b):
                return b
            if op != "hadamard" and self.scalar(b) and not self.scalar(a):
                return a
            if len(a) != 2 or len(b) != 2:
                a, b = self.adopt(n.args[0], a, n.args[1], b)
                self.same(a, b, f"{op} in {where}")
                return a
            D.unify(a[0], b[0], f"rows in {where}")
            D.unify(a[1], b[1], f"columns in {where}")
            return a
        if op in ("neg",):
            return self.sh(n.args[0])
        if op in ("func", "dfunc"):
            return self.sh(n.args[0])
        if op in ("mul", "cdot"):
            a, b = self.sh(n.args[0]), self.sh(n.args[1])
            if (len(a) != 2 and not self.scalar(b)) or (len(b) != 2 and not self.scalar(a)):
                raise ShapeError(f"product in {where}: a matrix product of arrays with channels "
                                 f"({len(a)} and {len(b)} dimensions)")
            if op == "cdot" and self.D.resolve(a[1]) == 1 and self.D.resolve(b[1]) == 1 and not self.scalar(a) \
                    and not self.scalar(b):
                D.unify(a[0], b[0], f"inner product in {where}")
                return (1, 1)
            if self.scalar(a):
                return b
            if self.scalar(b):
                return a
            D.unify(a[1], b[0], f"product in {where}")
            return (a[0], b[1])
        if op == "div":
            a, b = self.sh(n.args[0]), self.sh(n.args[1])
            if self.scalar(b):
                return a
            if self.scalar(a):
                return b
            D.unify(a[0], b[0], f"quotient in {where}")
            D.unify(a[1], b[1], f"quotient in {where}")
            return a
        if op == "pow":
            return self.sh(n.args[0])
        if op == "T":
            a = self.sh(n.args[0])
            return (a[1], a[0])
        if op == "inv":
            a = self.sh(n.args[0])
            D.unify(a[0], a[1], f"inverse of a square matrix in {where}")
            return a
        if op == "kron":
            a, b = self.sh(n.args[0]), self.sh(n.args[1])
            return tuple(self._prod(x, y) for x, y in zip(a, b))
        if op == "diag":
            a = self.sh(n.args[0])
            if self.D.resolve(a[1]) == 1:
                return (a[0], a[0])
            if self.D.resolve(a[0]) == 1:
                return (a[1], a[1])
            D.unify(a[0], a[1], f"diag of a square matrix in {where}")
            return (a[0], 1)
        if op in ("vec", "vecr"):
            a = self.sh(n.args[0])
            return (self._prod(a[0], a[1]), 1)
        if op in ("softmax",):
            return self.sh(n.args[0])
        if op == "lse":
            a = self.sh(n.args[0])
            return (1, a[1])
        # convolution and pooling: sizes computed when known, else free; the spatial sizes are the last two axes,
        # an input (C_in, H, W), a kernel (C_out, C_in, h, w) or a gradient (C_out, H', W') carry channels
        shp = [self.sh(a) for a in n.args]
        kn = self.knobs

        def par(key, default):
            v = n.attr("p", None) if key == "p_attr" else kn.get(key, default)
            if isinstance(v, str):
                v = kn.get(v)
            return v if isinstance(v, int) else None

        lead, chans = self._channels(op, shp, where)
        c = [tuple(self.conc(d) for d in s_[-2:]) for s_ in shp]
        known = all(v is not None for s_ in c for v in s_)
        if known:
            try:
                hw = None
                if op == "conv2d":
                    s_, p_, d_ = par("s", 1), par("p", 0), par("d", 1)
                    (H, W), (h, w) = c[0], c[1]
                    hw = ((H + 2 * p_ - d_ * (h - 1) - 1) // s_ + 1, (W + 2 * p_ - d_ * (w - 1) - 1) // s_ + 1)
                elif op in ("corr", "convolve"):
                    hw = (c[0][0] - c[1][0] + 1, c[0][1] - c[1][1] + 1)
                elif op == "full":
                    hw = (c[0][0] + c[1][0] - 1, c[0][1] + c[1][1] - 1)
                elif op == "rot180":
                    hw = c[0]
                q = par("p_attr", None)
                if op == "pad" and q is not None:
                    hw = (c[0][0] + 2 * q, c[0][1] + 2 * q)
                if op == "crop" and q is not None:
                    hw = (c[0][0] - 2 * q, c[0][1] - 2 * q)
                if op == "dilate" and q is not None:
                    hw = ((c[0][0] - 1) * q + 1, (c[0][1] - 1) * q + 1)
                if op == "upsample" and q is not None:
                    hw = (c[0][0] * q, c[0][1] * q)
                if op in ("avgpool", "maxpool"):
                    k_ = par("k", 2)
                    if "s" not in kn and "p" not in kn:
                        hw = (c[0][0] // k_, c[0][1] // k_)
                    else:
                        s_, p_ = par("s", k_), par("p", 0)
                        hw = ((c[0][0] + 2 * p_ - k_) // s_ + 1, (c[0][1] + 2 * p_ - k_) // s_ + 1)
                if hw is not None:
                    return lead + tuple(hw)
            except (TypeError, ZeroDivisionError):
                pass
        if op in ("rot180", "maxmask"):
            return shp[0]
        if op == "maxunpool":
            return shp[1]
        if not chans:
            return (D.fresh(), D.fresh())
        return lead + (D.fresh(), D.fresh())

    def _channels(self, op: str, shp: list, where: str) -> tuple[tuple, bool]:
        """The leading (channel) axes of a convolution or pooling result, and whether any operand has channels.

        ``conv(X, K)``: ``(C_out,)`` from a kernel ``(C_out, C_in, h, w)`` (its ``C_in`` unified with the input's);
        ``X ⋆ G`` of two ``(C, H, W)`` arrays: ``(C_out, C_in)`` (the kernel gradient); ``full(G, R)`` of a gradient
        ``(C_out, H', W')`` and a kernel ``(C_out, C_in, h, w)``: ``(C_in,)`` (the input gradient); the other operations
        keep their operand's leading axes."""
        D = self.D
        nd = [len(s_) for s_ in shp]
        if all(k == 2 for k in nd):
            return (), False
        if any(k not in (2, 3, 4) for k in nd):
            raise ShapeError(f"{op} in {where}: arrays of 2, 3 (channels) or 4 (kernels) dimensions expected")
        if op == "conv2d":
            X, K = shp
            if len(K) != 4 or len(X) not in (2, 3):
                raise ShapeError(f"conv in {where}: an input (C_in, H, W) and a kernel (C_out, C_in, h, w) are needed")
            D.unify(X[0] if len(X) == 3 else 1, K[1], f"input channels in {where}")
            return (K[0],), True
        if op in ("corr",):
            A, B = shp
            if len(A) != 3 or len(B) != 3:
                raise ShapeError(f"⋆ in {where}: two (C, H, W) arrays are needed (the input and the upstream gradient)")
            return (B[0], A[0]), True
        if op == "full":
            A, B = shp
            if len(A) != 3 or len(B) != 4:
                raise ShapeError(f"full in {where}: a gradient (C_out, H', W') and a kernel (C_out, C_in, h, w) are needed")
            D.unify(A[0], B[0], f"output channels in {where}")
            return (B[1],), True
        if op == "maxunpool":
            G, X = shp
            if len(G) != len(X):
                raise ShapeError(f"maxunpool in {where}: G and X need the same number of dimensions")
            for x, y in zip(G[:-2], X[:-2]):
                D.unify(x, y, f"channels in {where}")
            return tuple(X[:-2]), True
        if len(shp) != 1:
            raise ShapeError(f"{op} in {where}: 2-D operands expected")
        return tuple(shp[0][:-2]), True

    def _prod(self, x, y):
        cx, cy = self.conc(x), self.conc(y)
        if cx is not None and cy is not None:
            return cx * cy
        if cx == 1:
            return y
        if cy == 1:
            return x
        return self.D.fresh()


def _norm_shape(s, name: str):
    if isinstance(s, (int, str)):
        s = (s,)
    s = tuple(s)
    if len(s) == 0:
        return (1, 1)
    if len(s) == 1:
        return (s[0], 1)
    if len(s) not in (2, 3, 4):
        raise SpecError(f"shapes: {name!r} must have 0, 1 or 2 dimensions (3 for an image with channels (C, H, W), 4 "
                        f"for a kernel (C_out, C_in, h, w)), received {s!r}")
    return s


def infer_shapes(nodes: list[Node], shapes: Mapping[str, Any] | None = None, knobs: Mapping[str, Any] | None = None,
                 base: tuple | None = None) -> tuple[dict, _Dims, set]:
    """Infer the shape of every symbol of ``nodes`` (raises :class:`~jacobian_bp.errors.ShapeError`).

    ``shapes`` maps a symbol to its shape: ints, or names of dimensions (``("m", "n")``: the same
    name is the same size, and the name may appear as a scalar in the formula, e.g. ``1/N``).
    Returns ``(symbol shapes, dimension classes, dimension names)``.
    """
    if base is not None:
        sh0, D0, names = base
        D, sh = D0.copy(), dict(sh0)
    else:
        D, sh, names = _Dims(), {}, set()
        for name, s in (shapes or {}).items():
            s = _norm_shape(s, name)
            dd = []
            for d in s:
                if isinstance(d, str):
                    names.add(d)
                    dd.append(D.fresh(d))
                elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1:
                    dd.append(int(d))
                else:
                    raise SpecError(f"shapes: a dimension of {name!r} must be a positive int or a name, received {d!r}")
            sh[name] = tuple(dd)
        D.rigid = set(names)
    inf = _Infer(D, sh, names, knobs or {})
    D.roots = [inf.sh(n) for n in nodes]
    return sh, D, names


def node_sizes(D: _Dims, sizes: Mapping) -> dict:
    """The shape of every ones or identity without a stated size on one instance: ``id(node) -> (rows, cols)``, each an int,
    or ``None`` where the inference left the size free (the evaluator then takes it from the context)."""
    out = {}
    for key, s in D.unsized.items():
        dd = []
        for d in s:
            v = D.resolve(d)
            dd.append(v if isinstance(v, int) else sizes.get(v))
        out[key] = tuple(dd)
    return out
