r"""Pictures (the ``plot`` extra, matplotlib, imported on first use): Jacobian spy plots and gradient norms.

* :func:`plot_jacobian` -- the sparsity pattern of any Jacobian (nonzero entries black), its column
  blocks labelled (``W1``, ``b1``, ... or torch's ``0.weight``) and grouped by layer (thick lines and a
  ``layer l`` label between layers), its row blocks labelled (``z[L]``, or the parts of a stacked
  output space).  It takes a :class:`~jacobian_bp.engine.jacobian.Jacobian` (blocks from its spaces), a
  network with one sample (:math:`\mathbf J_\theta\mathbf z^{[L]}`, Damadi Alg. 1 line 7), a
  :class:`~jacobian_bp.uses.torch_import.TorchNetwork` (torch's names), or an array with explicit
  ``row_blocks`` / ``col_blocks``.
* :func:`plot_gradient_norms` -- :math:`\|\nabla_{\theta_p}\ell\|_2` for every parameter tensor, one bar
  each, coloured by layer (log scale by default): vanishing or exploding gradients at a glance.

Both return the matplotlib ``Axes`` (drawn into ``ax`` when given); nothing is shown or saved here.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..engine.jacobian import Jacobian
from ..engine.network import Gradient, Network
from ..errors import DataError
from ..uses.torch_import import TorchNetwork

__all__ = ["plot_jacobian", "plot_gradient_norms", "jacobian_blocks"]


def _plt():
    try:
        import matplotlib.pyplot as plt
    except Exception as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"plots need matplotlib: pip install 'jacobian_bp[plot]' ({exc})") from None
    return plt


_LAYER = re.compile(r"\[(\d+)")


def _layer_of_space(name: str) -> str:
    """``"vec W[2]"`` / ``"b[2.1]"`` → ``"layer 2"``; ``""`` when the name carries no layer."""
    m = _LAYER.search(name)
    return f"layer {m.group(1)}" if m else ""


def _layer_of_name(name: str) -> str:
    """A gradient dict's key: torch's ``"3.1.weight"`` → ``"3.1"``, the network's ``"W2"`` / ``"b2.1"`` → ``"layer 2"``."""
    if re.fullmatch(r"[A-Za-z]+\d+(\.\d+)*", name):
        return "layer " + re.search(r"\d+", name).group(0)
    return _torch_layer(name) if "." in name else ""


def _torch_layer(name: str) -> str:
    """``"3.1.weight"`` → ``"module 3.1"`` (the submodule's path)."""
    return "module " + (name.rpartition(".")[0] or name)


Blocks = list  # [(label, size, group)]


def jacobian_blocks(obj, x=None, params=None) -> tuple[np.ndarray, Blocks, Blocks, str]:
    """``(matrix, row blocks, column blocks, title)`` of what :func:`plot_jacobian` draws; blocks are
    ``(label, size, group)`` with ``group`` the layer (columns) or ``""``."""
    if isinstance(obj, TorchNetwork):
        if x is None:
            raise DataError("plot_jacobian: a TorchNetwork needs one sample x")
        M = obj.jacobian_theta(x)
        cols = [(n, size, _torch_layer(n)) for n, size in obj.theta_blocks]
        return M, [("output", M.shape[0], "")], cols, f"J_θ output of {obj.network.name} (torch names)"
    if isinstance(obj, Network):
        if x is None or params is None:
            raise DataError("plot_jacobian: a Network needs one sample x and its params")
        obj = obj.jacobian_theta(x, params)
    if isinstance(obj, Jacobian):
        M = obj.to_sparse() if max(obj.shape) > 2000 else obj.to_dense()
        cparts = obj.input.parts or (obj.input,)
        rparts = obj.output.parts or (obj.output,)
        cols = [(p.name, p.size, _layer_of_space(p.name)) for p in cparts]
        rows = [(p.name, p.size, "") for p in rparts]
        return M, rows, cols, f"J of {obj.output.name} w.r.t. {obj.input.name}"
    if sp.issparse(obj) or isinstance(obj, np.ndarray):
        M = obj
        if M.ndim != 2:
            raise DataError(f"plot_jacobian: expected a 2-D matrix, received shape {M.shape}")
        return M, [("", M.shape[0], "")], [("", M.shape[1], "")], "Jacobian"
    raise DataError(f"plot_jacobian: expected a Jacobian, a Network, a TorchNetwork or a matrix, received {type(obj).__name__}")


def _as_blocks(spec, total: int, what: str) -> Blocks:
    out = []
    for item in spec:
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise DataError(f"plot_jacobian: {what} must be (label, size) or (label, size, layer) pairs, received {item!r}")
        label, size = str(item[0]), item[1]
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise DataError(f"plot_jacobian: {what}: block {label!r} needs a positive integer size, received {size!r}")
        out.append((label, int(size), str(item[2]) if len(item) == 3 else ""))
    if sum(b[1] for b in out) != total:
        raise DataError(f"plot_jacobian: {what} sizes add up to {sum(b[1] for b in out)}, the matrix has {total}")
    return out


def plot_jacobian(obj, x=None, params=None, *, ax=None, row_blocks: "Sequence | None" = None,
                  col_blocks: "Sequence | None" = None, title: "str | None" = None, tol: float = 0.0):
    r"""Spy plot of a Jacobian with its blocks and layers labelled.

    Parameters
    ----------
    obj : Jacobian, Network, TorchNetwork, ndarray or scipy sparse matrix
        A network is drawn as :math:`\mathbf J_\theta\mathbf z^{[L]}` at the sample ``x`` (and ``params``).
    row_blocks, col_blocks : sequence of (label, size) or (label, size, layer), optional
        Override the blocks (needed to label a bare matrix).
    tol : float
        Entries with :math:`|J_{ij}| \le` ``tol`` count as zero.

    Returns
    -------
    matplotlib.axes.Axes
        Column block labels are the top tick labels, layer labels are texts above them, row block
        labels the left tick labels; block boundaries are vertical/horizontal lines.
    """
    plt = _plt()
    M, rows, cols, auto_title = jacobian_blocks(obj, x, params)
    if row_blocks is not None:
        rows = _as_blocks(row_blocks, M.shape[0], "row_blocks")
    if col_blocks is not None:
        cols = _as_blocks(col_blocks, M.shape[1], "col_blocks")
    mask = (abs(M) > tol).toarray() if sp.issparse(M) else np.abs(np.asarray(M, dtype=float)) > tol
    if ax is None:
        w = min(16.0, 3.0 + 0.06 * mask.shape[1])
        _, ax = plt.subplots(figsize=(max(w, 5.0), min(10.0, 2.5 + 0.25 * mask.shape[0])))
    ax.imshow(mask, cmap="Greys", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    # column blocks: thin lines between blocks, thick between layers; labels on top
    edges = np.cumsum([0] + [b[1] for b in cols])
    centers = [(edges[i] + edges[i + 1]) / 2 - 0.5 for i in range(len(cols))]
    for i in range(1, len(cols)):
        thick = cols[i][2] != cols[i - 1][2]
        ax.axvline(edges[i] - 0.5, color="tab:red" if thick else "tab:blue", lw=2.0 if thick else 0.8)
    ax.xaxis.tick_top()
    ax.set_xticks(centers)
    ax.set_xticklabels([b[0] for b in cols], rotation=90 if len(cols) > 8 else 0, fontsize=8)
    groups: dict[str, list] = {}
    for (label, size, g), c in zip(cols, centers):
        if g:
            groups.setdefault(g, []).append(c)
    for g, cs in groups.items():
        ax.text((min(cs) + max(cs)) / 2, -0.03, g, transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=9, color="tab:red")
    redges = np.cumsum([0] + [b[1] for b in rows])
    for i in range(1, len(rows)):
        ax.axhline(redges[i] - 0.5, color="tab:blue", lw=0.8)
    ax.set_yticks([(redges[i] + redges[i + 1]) / 2 - 0.5 for i in range(len(rows))])
    ax.set_yticklabels([b[0] for b in rows], fontsize=8)
    nnz = int(mask.sum())
    info = f"{mask.shape[0]} x {mask.shape[1]}, {nnz} nonzeros ({100.0 * nnz / max(mask.size, 1):.1f}%)"
    ax.set_title(f"{title if title is not None else auto_title}\n{info}", pad=12 if len(cols) <= 8 else 60)
    return ax


def _norm_items(obj, X, Y, params) -> list[tuple[str, float, str]]:
    """``(parameter name, ‖gradient‖₂, layer)`` in θ order (torch's order for a TorchNetwork)."""
    if isinstance(obj, TorchNetwork):
        g = obj.gradient_dict(X, Y)
        return [(n, float(np.linalg.norm(v)), _torch_layer(n)) for n, v in g.items()]
    if isinstance(obj, Network):
        if X is None or Y is None or params is None:
            raise DataError("plot_gradient_norms: a Network needs X, Y and params")
        obj = obj.gradient(X, Y, params)
    if isinstance(obj, Gradient):
        stage = {e.name: e.stage for e in obj.network.entries}
        return [(n, float(np.linalg.norm(v)), f"layer {stage[n]}") for n, v in obj.params.items()]
    if isinstance(obj, dict):
        out = []
        for n, v in obj.items():
            a = np.asarray(v, dtype=float)
            out.append((str(n), float(np.linalg.norm(a)), _layer_of_name(str(n))))
        return out
    raise DataError(f"plot_gradient_norms: expected a Network, TorchNetwork, Gradient or dict, received {type(obj).__name__}")


def plot_gradient_norms(obj, X=None, Y=None, params=None, *, ax=None, log: bool = True, title: "str | None" = None):
    r"""Bar chart of :math:`\|\nabla_{\theta_p}\ell\|_2` per parameter tensor, coloured by layer.

    Parameters
    ----------
    obj : Network (with ``X``, ``Y``, ``params``), TorchNetwork (with ``X``, ``Y``), Gradient or dict
        A dict maps parameter names to gradient arrays.
    log : bool
        Logarithmic norm axis (zero norms are drawn at the axis floor and labelled ``0``).

    Returns
    -------
    matplotlib.axes.Axes
        One bar per parameter (tick labels: the names), legend: the layers.
    """
    plt = _plt()
    items = _norm_items(obj, X, Y, params)
    if not items:
        raise DataError("plot_gradient_norms: no parameters")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(items) + 2), 4))
    layers = list(dict.fromkeys(g for _, _, g in items))
    cmap = plt.get_cmap("tab10")
    vals = np.array([v for _, v, _ in items])
    floor = (vals[vals > 0].min() / 10 if np.any(vals > 0) else 1.0) if log else 0.0
    for i, (name, v, g) in enumerate(items):
        k = layers.index(g)
        ax.bar(i, v if v > 0 or not log else floor, color=cmap(k % 10),
               label=(g or "parameters") if layers.index(g) == k and g not in [it[2] for it in items[:i]] else None)
        if v == 0:
            ax.text(i, floor, "0", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(items)))
    ax.set_xticklabels([n for n, _, _ in items], rotation=45 if len(items) > 6 else 0, ha="right" if len(items) > 6 else "center")
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("‖∇ℓ‖₂ of the parameter")
    ax.legend(fontsize=8)
    ax.set_title(title if title is not None else "gradient norm per parameter")
    return ax
