r"""A user's ``torch.nn.Sequential`` as a jacobian_bp :class:`~jacobian_bp.engine.network.Network`, torch's names kept.

``jb.from_torch(module, example_input, loss)`` walks the Sequential (nested Sequentials are flattened,
their paths kept: ``"1.0"``), asks every registered layer family whether it imports the submodule
(``cls.torch_module_types``, the ``torch.nn`` class names, and ``cls.from_torch_module(module, in_shape)
-> (constructor kwargs, canonical float64 parameters)``) and builds the network with the same
parameters (a family may return ``(kwargs, params, other_family)`` to hand the module to another
family, e.g. ``BatchNorm1d`` in eval mode).  Nothing here switches on a module type: a new family that declares the two facts is
imported without a line here.  A submodule no family claims is refused with a
:class:`~jacobian_bp.errors.SpecError` naming its path, its type and the supported types.

Names, shapes and order.  The network names its parameters ``W1, b1, K2, …`` (by parametric stage);
the returned :class:`TorchNetwork` maps every gradient and Jacobian back to torch's names
(``module.named_parameters()``: ``"0.weight"``, ``"0.bias"``), shapes and order.  The map of one
submodule is the adjoint of its import: the family's ``torch_gradients(module, grads)`` classmethod
when it defines one (a family whose canonical parameters are not the module's own one for one, e.g.
a fused bias), else the default: the module's parameters in order, one for one with the family's
canonical parameters, checked entry by entry at import (same sizes, same values), a reshape.

Losses.  ``loss`` is a loss name, a :class:`~jacobian_bp.layers.losses.Loss` (bound to the convention:
``MSE()`` follows its MSE knobs) or a ``torch.nn`` loss module (``CrossEntropyLoss``, ``BCEWithLogitsLoss``,
``MSELoss``, ``BCELoss``): then the batch reduction is torch's own (``mean`` as ``reduction="mean_elements"``,
:func:`~jacobian_bp.engine.conventions.reduction_factor`), so the gradient is torch's ``loss.backward()``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from math import prod

import numpy as np

from ..engine.conventions import Convention, get_convention
from ..engine.network import Network
from ..errors import DataError, ShapeError, SpecError
from ..layers.losses import Loss, loss_from_torch, make_loss
from ..layers.registry import all_layer_classes

__all__ = ["from_torch", "TorchNetwork", "torch_leaves", "family_of", "supported_torch_modules"]


def _torch():
    try:
        import torch
    except Exception as exc:  # pragma: no cover - depends on the environment
        raise SpecError(f"from_torch needs PyTorch (pip install 'jacobian_bp[torch]'): {exc}") from None
    return torch


def supported_torch_modules() -> dict[str, type]:
    """``torch.nn`` class name → the layer family that imports it (every registered family's ``torch_module_types``)."""
    out: dict[str, type] = {}
    for cls in all_layer_classes().values():
        for name in getattr(cls, "torch_module_types", ()):
            if name in out and out[name] is not cls:
                raise SpecError(f"torch module {name} is claimed by two layer families ({out[name].__name__}, {cls.__name__})")
            out[name] = cls
    return out


def family_of(module) -> "type | None":
    """The layer family that imports ``module`` (exact ``torch.nn`` type; a subclass is a user's module), or None."""
    t = type(module)
    if not t.__module__.startswith("torch.nn"):
        return None
    return supported_torch_modules().get(t.__name__)


def torch_leaves(module, prefix: str = "") -> list[tuple[str, object]]:
    """``(path, submodule)`` of a Sequential in order, nested Sequentials flattened (``"1.0"``); a
    module that is not a Sequential is one leaf with the path ``prefix``."""
    torch = _torch()
    if isinstance(module, torch.nn.Sequential):
        out = []
        for key, sub in module.named_children():
            out += torch_leaves(sub, f"{prefix}.{key}" if prefix else key)
        return out
    return [(prefix, module)]


def _as_array(v, what: str) -> np.ndarray:
    if hasattr(v, "detach"):  # a tensor: integer class labels keep their integer dtype
        v = v.detach().cpu()
        v = (v if not v.is_floating_point() else v.double()).numpy()
    a = np.asarray(v)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number)):
        raise DataError(f"{what}: expected a numeric array or tensor, received dtype {a.dtype}")
    return a


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    d = float(np.max(np.abs(a - b))) if a.size else 0.0
    return d / max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-300)


@dataclass
class Leaf:
    """One imported submodule: its path in the Sequential, the module, its layer family, the layer
    (built for ``in_shape``), its canonical parameters and the torch names of its parameters."""

    path: str
    module: object
    family: type
    layer: object
    in_shape: tuple
    out_shape: tuple
    params: dict = field(default_factory=dict)  # canonical local parameters (float64)
    torch_names: list = field(default_factory=list)  # relative names ("weight", "bias")
    stage: int = 0  # the network stage whose parameters these are (0: no parameters)

    def full_name(self, rel: str) -> str:
        return f"{self.path}.{rel}" if self.path else rel

    def to_torch(self, grads: dict[str, np.ndarray], lead: tuple = ()) -> dict[str, np.ndarray]:
        """Canonical local gradients (leading axes ``lead``) → torch-named gradients in torch's shapes."""
        named = dict(self.module.named_parameters())
        own = getattr(self.family, "torch_gradients", None)
        if callable(own):  # the family's adjoint map, one row at a time
            k = prod(lead)
            rows = [own(self.module, {n: np.asarray(g).reshape((k,) + np.shape(self.params[n]))[i] for n, g in grads.items()})
                    for i in range(k)]
            return {rel: np.stack([np.asarray(r[rel]) for r in rows]).reshape(lead + tuple(named[rel].shape))
                    for rel in self.torch_names}
        return {rel: np.asarray(grads[local]).reshape(lead + tuple(named[rel].shape))
                for rel, local in zip(self.torch_names, self.params)}


def _positional_names(leaf: Leaf) -> list[str]:
    """The default map: the module's parameters one for one with the family's canonical ones, checked."""
    named = list(leaf.module.named_parameters())
    if getattr(leaf.family, "torch_gradients", None) is not None:
        return [n for n, _ in named]
    locals_ = list(leaf.params)
    who = f"from_torch: module {leaf.path!r} ({type(leaf.module).__name__})"
    if len(named) != len(locals_):
        raise SpecError(f"{who}: the {leaf.family.__name__} family gives parameters {locals_} but the module has "
                        f"{[n for n, _ in named]}; the family must define torch_gradients(module, grads)")
    for (rel, p), local in zip(named, locals_):
        theirs = p.detach().cpu().double().numpy().ravel()
        ours = np.asarray(leaf.params[local], dtype=float).ravel()
        if theirs.shape != ours.shape or not np.array_equal(theirs, ours):
            raise SpecError(f"{who}: parameter {rel} is not the {leaf.family.__name__} family's {local!r} entry for "
                            "entry; the family must define torch_gradients(module, grads)")
    return [rel for rel, _ in named]


class TorchNetwork:
    """A :class:`~jacobian_bp.engine.network.Network` imported from torch, speaking torch's names.

    Attributes
    ----------
    network : Network
        The jacobian_bp network (its own names ``W1, b1, K2, …``, under its convention).
    params : dict
        The module's parameters in the network's names and the convention's layout.
    leaves : list of Leaf
        The imported submodules, in order.
    torch_param_names : list of str
        ``module.named_parameters()`` names, in torch's order: the order of every vector returned here.
    name_map : dict
        torch name → network name, where a torch parameter is one canonical parameter (the default map).
    """

    def __init__(self, module, network: Network, leaves: list[Leaf], params: dict):
        self.module = module
        self.network = network
        self.leaves = leaves
        self.params = params
        self.torch_param_names = [n for n, _ in module.named_parameters()]
        self.torch_shapes = {n: tuple(p.shape) for n, p in module.named_parameters()}
        self.name_map: dict[str, str] = {}
        for leaf in leaves:
            if leaf.stage and getattr(leaf.family, "torch_gradients", None) is None:
                for rel, local in zip(leaf.torch_names, leaf.params):
                    self.name_map[leaf.full_name(rel)] = network.param_name(leaf.stage, local)
        ours = [leaf.full_name(r) for leaf in leaves for r in leaf.torch_names]
        if sorted(ours) != sorted(self.torch_param_names):
            raise SpecError(f"from_torch: the imported parameters {ours} are not the module's {self.torch_param_names}")

    # ------------------------------------------------------------------ data
    def _batch(self, X, Y=None):
        X = _as_array(X, "from_torch: input").astype(np.float64)
        batched = X.ndim == len(self.network.input_shape) + 1
        if Y is None:
            return X, None
        Y = _as_array(Y, "from_torch: targets")
        Y = np.asarray(self.network.loss.as_targets(Y, self.network.n_out, batched), dtype=np.float64)
        return X, Y

    def to_torch(self, canonical: dict[str, np.ndarray], lead: tuple = ()) -> dict[str, np.ndarray]:
        """Network-named canonical arrays (with leading axes ``lead``) → torch-named arrays in torch's shapes and order."""
        out: dict[str, np.ndarray] = {}
        for leaf in self.leaves:
            if not leaf.stage:
                continue
            local = {loc: canonical[self.network.param_name(leaf.stage, loc)] for loc in leaf.params}
            for rel, v in leaf.to_torch(local, lead).items():
                out[leaf.full_name(rel)] = v
        return {n: out[n] for n in self.torch_param_names}

    # ------------------------------------------------------------------ results in torch's names
    def predict(self, X) -> np.ndarray:
        """The network's output (float64) for a batch ``X`` (or one sample)."""
        X, _ = self._batch(X)
        return self.network.predict(X, self.params)

    def loss_value(self, X, Y) -> float:
        """The reduced loss (integer class labels accepted for cross entropy)."""
        X, Y = self._batch(X, Y)
        return self.network.loss_value(X, Y, self.params)

    def gradient_dict(self, X, Y, method: str = "chain") -> dict[str, np.ndarray]:
        r""":math:`\nabla_\theta\ell` keyed by torch's names, in torch's shapes and ``named_parameters()`` order
        (the ``.grad`` that ``loss.backward()`` leaves on each parameter)."""
        X, Y = self._batch(X, Y)
        g = self.network.gradient(X, Y, self.params, method=method)
        return self.to_torch(g.canonical)

    def gradient_vector(self, X, Y, method: str = "chain") -> np.ndarray:
        """:meth:`gradient_dict` flattened row-major and concatenated in torch's order."""
        return np.concatenate([v.ravel() for v in self.gradient_dict(X, Y, method).values()])

    def jacobian_theta(self, x) -> np.ndarray:
        r""":math:`\mathbf J_\theta\mathbf z^{[L]}` of one sample, ``n_L × |θ|``, columns in torch's order
        (each parameter flattened row-major, as ``torch.cat([p.flatten() for p in module.parameters()])``)."""
        x, _ = self._batch(x)
        J = self.network.jacobian_theta(x, self.params).to_dense()
        rows = J.shape[0]
        canon = {e.name: np.stack([J[r, e.slice].reshape(e.canonical_shape, order=e.order) for r in range(rows)])
                 for e in self.network.entries}
        return np.concatenate([v.reshape(rows, -1) for v in self.to_torch(canon, (rows,)).values()], axis=1)

    @property
    def theta_blocks(self) -> list[tuple[str, int]]:
        """``(torch name, size)`` of every block of θ in torch's order (the columns of :meth:`jacobian_theta`)."""
        return [(n, prod(self.torch_shapes[n])) for n in self.torch_param_names]

    def verify(self, X, Y, **kwargs):
        """:func:`jacobian_bp.oracles.verify.verify` on the imported network; blocks named by torch's names."""
        from ..oracles.verify import verify

        X, Y = self._batch(X, Y)
        report = verify(self.network, X, Y, self.params, **kwargs)
        back = {v: k for k, v in self.name_map.items()}
        for e in report.errors:
            e.block = back.get(e.block, e.block)
        return report

    def __repr__(self) -> str:
        parts = ", ".join(f"{leaf.path or '<module>'}: {type(leaf.module).__name__}" for leaf in self.leaves)
        return f"TorchNetwork([{parts}]; {self.network.describe()})"


def _resolve_loss(loss, convention) -> tuple[object, Convention]:
    """The loss for the network and the convention (a torch loss module sets torch's batch reduction)."""
    if loss is not None and not isinstance(loss, (str, Loss)) and type(loss).__module__.startswith("torch.nn"):
        jl, red = loss_from_torch(loss)
        conv = get_convention("pytorch" if convention is None else convention)
        if convention is None:
            conv = conv.replace(name=f"pytorch (reduction={red})",
                                reduction="mean_elements" if red == "mean" else "sum")
        return jl, conv
    conv = get_convention("pytorch" if convention is None else convention)
    if loss is None:
        return "mse", conv
    if isinstance(loss, str):
        return loss, conv
    if isinstance(loss, Loss):
        bind = getattr(loss, "bind_convention", None)
        return (bind(conv) if callable(bind) else loss), conv
    raise SpecError(f"from_torch: loss must be a loss name, a jacobian_bp Loss or a torch.nn loss module, "
                    f"received {type(loss).__name__}")


def _output_choice(path: str, sub, fam, choice, last: bool) -> str:
    """Which of its outputs a module that returns several (``nn.LSTM``: ``(output, (h_n, c_n))``) passes on."""
    choices = tuple(fam.torch_output_choices)
    if choice is not None:
        if choice not in choices:
            raise SpecError(f"from_torch: recurrent_output must be one of {', '.join(map(repr, choices))}, received {choice!r}")
        return choice
    if last:
        raise SpecError(f"from_torch: module {path or '<root>'!r} ({type(sub).__name__}) returns every state and the last "
                        f"state; pass recurrent_output='last' (h_n, shape (N, H)) or 'all' (torch's output, (N, T, H))")
    return "all"  # not the last module: torch's output (every state) is what the next module would read


def from_torch(module, example_input, loss=None, convention=None, name: str = "", check: bool = True,
               recurrent_output: str | None = None) -> TorchNetwork:
    r"""Import a ``torch.nn.Sequential`` (nested Sequentials flattened) as a jacobian_bp network.

    Parameters
    ----------
    module : torch.nn.Sequential or a supported torch.nn module
        Linear, Conv2d (any padding/stride/dilation, with or without bias), MaxPool2d, AvgPool2d,
        Flatten, ReLU, LeakyReLU, Sigmoid, Tanh, ELU, Softplus, GELU, Identity, Dropout (eval),
        Softmax(dim=-1), and every family that declares ``torch_module_types``
        (:func:`supported_torch_modules`).
    example_input : tensor or array, ``(N, *sample_shape)``
        A batch as the module takes it; fixes the per-sample input shape.
    loss : str, Loss, torch.nn loss module or None
        ``None``: the convention's MSE (enough for Jacobians).  A torch loss module
        (``CrossEntropyLoss`` with integer labels, ``BCEWithLogitsLoss``, ``MSELoss``, ``BCELoss``) gives
        torch's batch reduction exactly.
    convention : str or Convention, optional
        Default ``"pytorch"``.
    check : bool
        Compare every imported layer's output with the submodule's own (float64) on ``example_input``.
    recurrent_output : {"last", "all"}, optional
        What an ``nn.LSTM`` / ``nn.RNN`` (which return ``(output, (h_n, c_n))`` / ``(output, h_n)``) outputs:
        ``"last"``, the last state :math:`\mathbf h_T` (torch's ``h_n[-1]``, shape ``(N, H)``), or ``"all"``, every
        state (torch's ``output``, ``(N, T, H)``; ``batch_first`` either way: the package's batches are samples first).
        Default None: required when the recurrent module is the last one (the output of the network: the choice
        is the user's, a one-line ``SpecError`` names the two); a recurrent module followed by others passes on
        every state, torch's ``output``.  An output of several axes (every state, ``(T, H)``) is flattened
        row-major for the loss (torch's ``flatten(1)``), so ``predict`` returns ``(N, T·H)``.

    Returns
    -------
    TorchNetwork
        ``.network``, ``.params`` and the gradients/Jacobians in torch's names (:meth:`TorchNetwork.gradient_dict`).

    Raises
    ------
    SpecError
        A submodule no family imports (naming its path, its type and the supported types), or an
        option of a supported one that is not (``groups=2``, ``ceil_mode=True``, ...).
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise SpecError(f"from_torch: expected a torch.nn.Module (a Sequential), received {type(module).__name__}")
    X = _as_array(example_input, "from_torch: example_input").astype(np.float64)
    if X.ndim < 2:
        raise ShapeError(f"from_torch: example_input must be a batch (N, *sample_shape), received shape {X.shape}")
    jloss, conv = _resolve_loss(loss, convention)
    supported = supported_torch_modules()
    leaves: list[Leaf] = []
    shape = tuple(X.shape[1:])
    stage = 0
    if recurrent_output is not None and not isinstance(recurrent_output, str):
        raise SpecError(f"from_torch: recurrent_output must be 'last' or 'all', received {recurrent_output!r}")
    paths = torch_leaves(module)
    for i, (path, sub) in enumerate(paths):
        fam = family_of(sub)
        if fam is None:
            raise SpecError(f"from_torch: module {path or '<root>'!r} is {type(sub).__module__}.{type(sub).__name__}, "
                            f"which no layer family imports; supported: {', '.join(sorted(supported))}")
        if getattr(fam, "torch_output_choices", None):  # a module with several outputs: the user's choice
            res = fam.from_torch_module(sub, shape, output=_output_choice(path, sub, fam, recurrent_output, i == len(paths) - 1))
        else:
            res = fam.from_torch_module(sub, shape)
        if len(res) == 3:  # the claiming family hands the module to another (BatchNorm1d in eval mode, say)
            kwargs, params, fam = res
        else:
            kwargs, params = res
        layer = fam(**kwargs)
        out = copy.copy(layer).build(shape, conv)
        if layer.parametric:
            stage += 1
        leaf = Leaf(path, sub, fam, layer, shape, tuple(out), {k: np.asarray(v, dtype=np.float64) for k, v in params.items()},
                    stage=stage if layer.parametric else 0)
        leaf.torch_names = _positional_names(leaf) if leaf.stage else []
        if not leaf.stage and list(sub.parameters()):
            raise SpecError(f"from_torch: module {path!r} ({type(sub).__name__}) has parameters but its family "
                            f"{fam.__name__} is not parametric")
        leaves.append(leaf)
        shape = tuple(out)
    if not leaves:
        raise SpecError("from_torch: the Sequential is empty")
    layers = [leaf.layer for leaf in leaves]
    if len(shape) > 1:  # every state of a recurrent module, an attention's sequence: flattened row-major for the loss
        from ..layers.registry import layer_class

        layers.append(layer_class("flatten")())
    net = Network(layers, jloss, shape_of(X), convention=conv, name=name or type(module).__name__)
    canon = {net.param_name(leaf.stage, k): v for leaf in leaves if leaf.stage for k, v in leaf.params.items()}
    result = TorchNetwork(module, net, leaves, net.user_params(canon))
    if check:
        _check_forward(result, X)
    return result


def first_output(out):
    """A module's output tensor (``nn.RNN``/``nn.LSTM``/``nn.MultiheadAttention`` return tuples: their first item)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def shape_of(X: np.ndarray) -> tuple:
    return tuple(int(s) for s in X.shape[1:])


def _check_forward(tn: TorchNetwork, X: np.ndarray, tol: float = 1e-9) -> None:
    """Every imported layer's forward against the submodule's own (a float64 copy), on the torch input of that layer."""
    torch = _torch()
    canon = tn.network.canonical_params(tn.params)
    A = torch.tensor(X, dtype=torch.float64)
    for leaf, layer in zip(tn.leaves, tn.network.layers):
        ref = copy.deepcopy(leaf.module).double()
        run = getattr(leaf.family, "torch_module_output", None)  # a module with several outputs: the one imported
        with torch.no_grad():
            theirs = run(ref, A, layer.output) if callable(run) else first_output(ref(A))
        local = {k: canon[tn.network.param_name(leaf.stage, k)] for k in leaf.params} if leaf.stage else {}
        ours = layer.forward(A.numpy(), local)
        t = theirs.numpy().reshape(ours.shape) if theirs.numel() == ours.size else None
        if t is None or _rel_err(ours, t) > tol:
            got = "shape mismatch" if t is None else f"relative difference {_rel_err(ours, t):.3g}"
            raise DataError(f"from_torch: module {leaf.path!r} ({type(leaf.module).__name__}) imported as "
                            f"{layer.describe()} does not reproduce the module's output ({got})")
        A = theirs
