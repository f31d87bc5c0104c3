r"""Layer-by-layer checks of a user's model: ``check_module`` (torch) and ``check_layer`` (a jacobian_bp layer).

``check_module(module, x, y, loss)`` runs the Sequential on ``x`` (a float64 copy; the user's module is
not touched) and, for every submodule on its own input, compares Jacobian blocks --
:math:`\mathbf J_{\mathbf a}\mathbf o` (``"input"``) and :math:`\mathbf J_{\operatorname{vec}\theta}\mathbf o`
for each of its parameters, by torch's names, flattened row-major:

* a submodule a layer family imports (``torch.nn.Linear``, ``Conv2d``, ...): the family's **explicit
  Jacobian** against **torch autograd** of the submodule (``torch.autograd.functional.jacobian``),
  tolerance ``1e-10``; on a disagreement, central differences say which side is wrong;
* any other submodule (a user's module, a custom ``torch.autograd.Function``): **torch autograd** --
  i.e. the module's own backward -- against **central differences** of its forward (float64,
  step :math:`h\max(1,|v|)`), tolerance ``1e-6``;
* the loss (a ``torch.nn`` loss module or any callable ``loss(output, y)``): :math:`\nabla_{\hat{\mathbf y}}`
  of the batch loss, the toolkit's loss (with torch's reduction) against torch autograd, or the
  callable's autograd against central differences.

The report lists every block, the first submodule that disagrees, the wrong entries (output index,
input/parameter index, claimed and reference values) and a diagnosis
(:mod:`jacobian_bp.oracles.jacobian_diagnosis`: sign, factor, transposed, zero, wrong at some entries).

``check_layer(layer, in_shape)`` does the same for a jacobian_bp layer with hand-written
``jac_input``/``jac_params``: against central differences of its ``forward`` and, when its forward
accepts SymPy entries, against the exact SymPy Jacobian.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from math import prod

import numpy as np
import sympy

from ..engine.conventions import get_convention, reduction_factor
from ..errors import DataError, ShapeError, SpecError
from ..layers.base import Layer
from ..layers.losses import loss_from_torch
from ..uses.torch_import import Leaf, _positional_names, family_of, first_output, torch_leaves
from .jacobian_diagnosis import BlockCheck, compare_block

__all__ = ["check_module", "check_layer", "ModuleCheckReport", "LayerCheck", "fd_jacobian"]

TOL_EXACT = 1e-10
TOL_FD = 1e-6


@dataclass
class LayerCheck:
    """The blocks of one submodule (or layer), compared."""

    path: str
    type_name: str
    method: str
    blocks: list = field(default_factory=list)
    note: str = ""
    what: str = "module"  # "module" (check_module) or "layer" (check_layer)

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.blocks)

    @property
    def first_wrong(self) -> "BlockCheck | None":
        return next((b for b in self.blocks if not b.ok), None)

    def describe(self) -> str:
        head = f"{self.what} {self.path!r} ({self.type_name}): {self.method}"
        return "\n".join([head] + ["  " + b.describe().replace("\n", "\n  ") for b in self.blocks]
                         + ([f"  note: {self.note}"] if self.note else []))


@dataclass
class ModuleCheckReport:
    """Every submodule's check, in order; ``first_failure`` is the first that disagrees."""

    name: str
    layers: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.layers)

    @property
    def first_failure(self) -> "LayerCheck | None":
        return next((c for c in self.layers if not c.ok), None)

    def __str__(self) -> str:
        lines = [f"layer-by-layer check of {self.name}"]
        for c in self.layers:
            worst = max((b.rel for b in c.blocks), default=0.0)
            lines.append(f"  {c.path or '<root>':<8} {c.type_name:<18} {'ok  ' if c.ok else 'FAIL'}  "
                         f"max rel {worst:.1e}  [{c.method}; blocks {', '.join(dict.fromkeys(b.block for b in c.blocks))}]")
        bad = self.first_failure
        if bad is None:
            lines.append("verdict: PASS (every block agrees)")
        else:
            lines.append(f"verdict: FAIL; first disagreement in module {bad.path!r} ({bad.type_name})")
            lines.append(bad.describe())
        return "\n".join(lines)

    __repr__ = __str__


def fd_jacobian(fun, v: np.ndarray, h: float = 1e-6) -> np.ndarray:
    r"""Central differences :math:`(f(v+h_j e_j)-f(v-h_j e_j))/(2h_j)`, :math:`h_j = h\max(1,|v_j|)`; ``(size f, size v)``."""
    v = np.array(v, dtype=np.float64)
    flat = v.ravel()
    cols = []
    for j in range(flat.size):
        hj = h * max(1.0, abs(flat[j]))
        p, m = flat.copy(), flat.copy()
        p[j] += hj
        m[j] -= hj
        cols.append((np.ravel(fun(p.reshape(v.shape))) - np.ravel(fun(m.reshape(v.shape)))) / (2 * hj))
    return np.stack(cols, axis=1) if cols else np.zeros((np.size(fun(v)), 0))


# ---------------------------------------------------------------------- torch submodules
def _autograd_blocks(torch, sub, a) -> dict[str, np.ndarray]:
    """torch autograd (the module's backward) of one sample: ``{"input": J, <param name>: J}``, ``(m, n)``."""
    base = {k: v.detach() for k, v in sub.named_parameters()}
    jac = torch.autograd.functional.jacobian
    out = {"input": jac(lambda inp: first_output(sub(inp.unsqueeze(0))).reshape(-1), a)}
    for name in base:
        out[name] = jac(lambda w, name=name: first_output(torch.func.functional_call(
            sub, {**base, name: w}, (a.unsqueeze(0),))).reshape(-1), base[name])
    return {k: J.detach().numpy().reshape(J.shape[0], -1) for k, J in out.items()}


def _fd_blocks(torch, sub, a, h: float) -> dict[str, np.ndarray]:
    """Central differences of the submodule's forward, one sample, same blocks as :func:`_autograd_blocks`."""
    base = {k: v.detach() for k, v in sub.named_parameters()}
    an = a.numpy()

    def run(inp, params):
        with torch.no_grad():
            return first_output(torch.func.functional_call(sub, params, (torch.as_tensor(inp).unsqueeze(0),))).reshape(-1).numpy()

    out = {"input": fd_jacobian(lambda v: run(v, base), an, h)}
    for name, w in base.items():
        out[name] = fd_jacobian(lambda v, name=name: run(an, {**base, name: torch.as_tensor(v)}), w.numpy(), h)
    return out


def _explicit_blocks(fam, sub, a: np.ndarray, in_shape: tuple, path: str) -> tuple[dict, tuple]:
    """The family's explicit Jacobians of one sample, columns in torch's names and order, and the output shape."""
    res = fam.from_torch_module(sub, in_shape)
    kwargs, params = res[:2]
    fam = res[2] if len(res) == 3 else fam
    layer = fam(**kwargs)
    out_shape = tuple(layer.build(in_shape, get_convention("pytorch")))
    params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    o = layer.forward(a[None], params)[0]
    m = prod(out_shape)
    blocks = {"input": layer.jac_input(a, o, params).to_dense()}
    if params:
        leaf = Leaf(path, sub, fam, layer, in_shape, out_shape, params, stage=1)
        leaf.torch_names = _positional_names(leaf)
        J = {k: op.to_dense().reshape((m,) + params[k].shape) for k, op in layer.jac_params(a, o, params, "C").items()}
        for rel, v in leaf.to_torch(J, (m,)).items():
            blocks[rel] = v.reshape(m, -1)
    return blocks, out_shape


def _col_shapes(sub, in_shape) -> dict[str, tuple]:
    return {"input": tuple(in_shape), **{k: tuple(v.shape) for k, v in sub.named_parameters()}}


def _check_submodule(torch, path, sub, a, sample: "int | None", h: float) -> LayerCheck:
    in_shape = tuple(a.shape)
    fam = family_of(sub)
    tname = type(sub).__name__
    cols = _col_shapes(sub, in_shape)
    try:
        ref = _autograd_blocks(torch, sub, a)
    except Exception as exc:  # noqa: BLE001 - a user's backward may raise anything; report it
        return LayerCheck(path, tname, "torch autograd", note=f"torch autograd failed: {type(exc).__name__}: {exc}",
                          blocks=[BlockCheck("backward", "torch autograd", "-", (0, 0), np.inf, np.inf, 0.0, 1,
                                             diagnosis=f"the backward raised {type(exc).__name__}: {exc}")])
    with torch.no_grad():
        out_shape = tuple(first_output(sub(a.unsqueeze(0))).shape[1:])
    if fam is not None:
        claim, ref_name, tol = "explicit Jacobian", "torch autograd", TOL_EXACT
        cand, _ = _explicit_blocks(fam, sub, a.numpy(), in_shape, path)
        method = f"explicit Jacobian ({fam.__name__}) vs torch autograd"
    else:
        claim, ref_name, tol = "torch autograd (the module's backward)", "central differences", TOL_FD
        cand, ref = ref, _fd_blocks(torch, sub, a, h)
        method = "torch autograd (the module's backward) vs central differences of its forward"
    check = LayerCheck(path, tname, method)
    fd = None
    for name, T in ref.items():
        b = compare_block(cand[name], T, block=name, claim=claim, reference=ref_name, tol=tol,
                          out_shape=out_shape, col_shape=cols[name], square_input=name == "input")
        if not b.ok and fam is not None:  # arbitrate: which side do central differences agree with?
            fd = fd if fd is not None else _fd_blocks(torch, sub, a, h)
            side = compare_block(T, fd[name], block=name, claim="", reference="", tol=TOL_FD, out_shape=out_shape,
                                 col_shape=cols[name])
            b.diagnosis += ("; central differences agree with torch autograd: the explicit Jacobian is wrong" if side.ok
                            else "; central differences disagree with torch autograd too")
        b.sample = sample
        check.blocks.append(b)
    return check


def _loss_check(torch, loss, out, y, h: float) -> LayerCheck:
    """:math:`\\nabla_{\\hat{\\mathbf y}}` of the batch loss: the toolkit's (torch's reduction) vs autograd, or a
    custom loss's autograd vs central differences."""
    yt = y if hasattr(y, "detach") else torch.as_tensor(np.asarray(y))
    if yt.is_floating_point():
        yt = yt.double()
    o = out.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(o, yt), o)
    T = g.detach().numpy().reshape(1, -1)
    tname = type(loss).__name__
    try:
        jl, red = loss_from_torch(loss)
    except SpecError:
        jl = None
    if jl is not None:
        conv = get_convention("pytorch").replace(reduction="mean_elements" if red == "mean" else "sum")
        N, n = out.shape[0], int(np.prod(out.shape[1:]))
        Y = np.asarray(jl.as_targets(yt.numpy(), n, True), dtype=float)
        C = jl.grad_yhat(Y, out.detach().numpy()) * reduction_factor(conv, jl, N, n)
        claim, ref_name, tol, method = f"the toolkit's {jl.kind} gradient", "torch autograd", TOL_EXACT, \
            f"loss gradient ({jl.kind}, reduction {red}) vs torch autograd"
        C, T = np.reshape(C, (1, -1)), T
    else:
        def value(v):
            with torch.no_grad():
                return np.array([float(loss(torch.as_tensor(v), yt))])
        C, T = T, fd_jacobian(value, out.detach().numpy(), h)
        claim, ref_name, tol, method = "torch autograd (the loss's backward)", "central differences", TOL_FD, \
            "loss: torch autograd vs central differences"
    b = compare_block(C, T, block="prediction", claim=claim, reference=ref_name, tol=tol, out_shape=(1,),
                      col_shape=tuple(out.shape))
    return LayerCheck("loss", tname, method, [b])


def check_module(module, x, y=None, loss=None, samples: int = 1, h: float = 1e-6) -> ModuleCheckReport:
    r"""Check a ``torch.nn.Sequential`` layer by layer (see the module docstring).

    Parameters
    ----------
    module : torch.nn.Sequential (nested Sequentials flattened) or one module
    x : tensor or array, ``(N, *sample_shape)``
    y, loss : optional
        Targets and a ``torch.nn`` loss module or callable ``loss(output, y)``: the loss gradient is checked too.
    samples : int
        How many samples of ``x`` (the first ones) each submodule is checked on.
    h : float
        The central-difference step (relative to ``max(1, |v|)``).

    Returns
    -------
    ModuleCheckReport
        ``.ok``, ``.first_failure`` (the first :class:`LayerCheck` that disagrees; its ``first_wrong`` block has
        the wrong entries and the diagnosis), ``str()`` a readable table.
    """
    try:
        import torch
    except Exception as exc:  # pragma: no cover
        raise SpecError(f"check_module needs PyTorch: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise SpecError(f"check_module: expected a torch.nn.Module, received {type(module).__name__}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise DataError(f"check_module: samples must be a positive integer, received {samples!r}")
    X = torch.as_tensor(np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64))
    if X.ndim < 2:
        raise ShapeError(f"check_module: x must be a batch (N, *sample_shape), received shape {tuple(X.shape)}")
    ref = copy.deepcopy(module).double()
    report = ModuleCheckReport(type(module).__name__)
    A = X
    for path, sub in torch_leaves(ref):
        per = [_check_submodule(torch, path, sub, A[i], i if samples > 1 else None, h)
               for i in range(min(samples, A.shape[0]))]
        merged = per[0]
        for p in per[1:]:
            merged.blocks += p.blocks
        report.layers.append(merged)
        with torch.no_grad():
            A = first_output(sub(A))
    if loss is not None:
        if y is None:
            raise DataError("check_module: a loss needs targets y")
        report.layers.append(_loss_check(torch, loss, A, y, h))
    return report


# ---------------------------------------------------------------------- a jacobian_bp layer
def _sympy_blocks(layer: Layer, a: np.ndarray, params: dict) -> dict[str, np.ndarray]:
    """The exact Jacobian blocks from the layer's forward on SymPy symbols, evaluated at the point."""
    xs = sympy.symbols(f"x0:{a.size}", real=True)
    A = np.array(xs, dtype=object).reshape((1,) + a.shape)
    psyms, pvals = {}, {}
    for k, v in params.items():
        s = sympy.symbols(f"{k}_0:{np.size(v)}", real=True)
        psyms[k] = np.array(s, dtype=object).reshape(np.shape(v))
        pvals.update(dict(zip(s, np.ravel(v))))
    out = sympy.Matrix(list(np.ravel(layer.forward(A, psyms))))
    subs = {**dict(zip(xs, np.ravel(a))), **pvals}
    res = {"input": out.jacobian(sympy.Matrix(xs))}
    for k, s in psyms.items():
        res[k] = out.jacobian(sympy.Matrix(list(s.ravel())))
    return {k: np.array(J.xreplace({s: sympy.Float(v, 30) for s, v in subs.items()}).evalf(), dtype=np.float64)
            for k, J in res.items()}


def check_layer(layer: Layer, in_shape, params: "dict | None" = None, x=None, convention="pytorch", seed: int = 0,
                h: float = 1e-6, use_sympy: bool = True, max_sympy_size: int = 120) -> LayerCheck:
    r"""Check a jacobian_bp layer's hand-written ``jac_input`` / ``jac_params`` at one point.

    Against central differences of its ``forward`` (tolerance ``1e-6``) and, when ``use_sympy`` and its
    forward runs on SymPy entries (input plus parameters at most ``max_sympy_size`` entries), against the
    exact SymPy Jacobian (tolerance ``1e-10``).  Parameter columns are the canonical parameter flattened
    row-major (``order="C"``).

    Parameters
    ----------
    layer : Layer
        Any object following the layer protocol (:mod:`jacobian_bp.layers.base`); a copy is built.
    in_shape : tuple of int
        One sample's shape.
    params : dict, optional
        Canonical parameters; default ``layer.init_params`` with ``seed``.
    x : array, optional
        The point; default a seeded standard normal sample (away from kinks with probability 1).

    Returns
    -------
    LayerCheck
        ``.ok``, ``.blocks`` (``input`` and each parameter, per reference), ``.first_wrong`` with the wrong
        entries and the diagnosis.
    """
    if not isinstance(layer, Layer):
        raise SpecError(f"check_layer: expected a jacobian_bp Layer, received {type(layer).__name__}")
    lay = copy.copy(layer)
    in_shape = (int(in_shape),) if isinstance(in_shape, (int, np.integer)) else tuple(int(s) for s in in_shape)
    out_shape = tuple(lay.build(in_shape, get_convention(convention)))
    rng = np.random.default_rng(seed)
    params = lay.init_params(rng) if params is None else {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    a = rng.standard_normal(in_shape) if x is None else np.asarray(x, dtype=np.float64)
    if a.shape != in_shape:
        raise ShapeError(f"check_layer: expected a point x of shape {in_shape}, received {a.shape}")
    o = lay.forward(a[None], params)[0]
    cand = {"input": lay.jac_input(a, o, params).to_dense()}
    cand.update({k: op.to_dense() for k, op in lay.jac_params(a, o, params, "C").items()})
    cols = {"input": in_shape, **{k: np.shape(v) for k, v in params.items()}}

    def run(v, ps):
        return np.ravel(lay.forward(v[None], ps)[0])

    refs = {"central differences": ({"input": fd_jacobian(lambda v: run(v, params), a, h),
                                     **{k: fd_jacobian(lambda v, k=k: run(a, {**params, k: v}), params[k], h) for k in params}},
                                    TOL_FD)}
    note = ""
    if use_sympy:
        if a.size + sum(np.size(v) for v in params.values()) > max_sympy_size:
            note = f"SymPy skipped: more than {max_sympy_size} inputs and parameters"
        else:
            try:
                refs["SymPy"] = (_sympy_blocks(lay, a, params), TOL_EXACT)
            except Exception as exc:  # noqa: BLE001 - a forward that does not take SymPy entries
                note = f"SymPy skipped: the forward does not run on SymPy entries ({type(exc).__name__})"
    check = LayerCheck(lay.kind, type(layer).__name__, "hand-written Jacobian vs " + " and ".join(refs), note=note,
                       what="layer")
    for ref_name, (blocks, tol) in refs.items():
        for name, T in blocks.items():
            if name not in cand:
                check.blocks.append(BlockCheck(name, "hand-written Jacobian", ref_name, T.shape, np.inf, np.inf, tol, 1,
                                               diagnosis=f"jac_params gives no block for parameter {name!r}"))
                continue
            check.blocks.append(compare_block(cand[name], T, block=name, claim="hand-written Jacobian", reference=ref_name,
                                              tol=tol, out_shape=out_shape, col_shape=tuple(cols[name]),
                                              square_input=name == "input"))
    return check
