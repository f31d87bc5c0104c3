"""Random numeric instances of a setting: a network, its parameters and data, its quantities and truths.

One instance per architecture and seed; they are read-only and cached per setting, so that claims
sharing a setting share the engine's work.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ..layers import Softmax
from .layer_networks import dense_network as _make_network
from .model import MissingQuantity, Setting
from .targets import _col

#: Vector activations whose Jacobian is taken at a vector of any width (softmax is defined on every
#: R^n, so a claim may apply σ_L at z[l] of another width and be diagnosed); the Jacobian of another
#: vector activation is asked at its layer's width only.  Elementwise layers take any width too.
_ANY_WIDTH_VECTOR_ACTIVATIONS = (Softmax,)


class _InstanceData:
    """Quantities and truths of one instance (one network, parameters and data)."""

    symbolic = False

    def __init__(self, label: str):
        self.label = label
        self.families: dict[str, tuple[dict, str]] = {}
        self.scalars: dict[str, Any] = {}
        self.activations: dict[int, Any] = {}
        self.L = 0
        self.widths: tuple = ()
        self.seed = 0
        self.N = 1
        self.truth_cache: dict = {}

    # overridden
    def layer_of(self, v):  # pragma: no cover
        return None

    def layer_of_activation(self, v):  # pragma: no cover
        return None

    def apply_act(self, k, v):  # pragma: no cover
        raise NotImplementedError

    def apply_dact(self, k, v):  # pragma: no cover
        raise NotImplementedError

    def act_jacobian(self, k, v):  # pragma: no cover
        raise NotImplementedError

    def grad_C(self, yhat):  # pragma: no cover
        raise NotImplementedError


class _NumericData(_InstanceData):
    #: the given point (``Setting(points=...)``) this instance is, as a dict; None for a random instance
    point: dict | None = None

    def __init__(self, setting: Setting, widths: tuple, seed: int, N: int, point: dict | None = None):
        super().__init__(f"{'-'.join(map(str, widths))}, seed {seed}, N = {N}" if point is None else
                         f"{'-'.join(map(str, widths))}, {point['label']}")
        from ..spec import generate_data

        self.point = point
        net = _make_network(setting, widths)
        self.net = net
        self.conv = net.convention
        self.widths = tuple(widths)
        self.L = net.L
        self.seed = seed
        self.N = N
        self.params = net.init_params(seed)
        rng = np.random.default_rng(1000 + seed)
        # biases drawn larger than the default init so that b-index slips are visible
        for k in self.params:
            if k.startswith("b"):
                self.params[k] = self.params[k] + 0.5 * rng.standard_normal(self.params[k].shape)
        _apply_point_params(self.params, point)
        if setting.at_kink:  # the first units of every hidden layer exactly at the kink: z_j = 0 for every sample
            for l in range(1, self.L):
                W, b = self.params[f"W{l}"].copy(), self.params[f"b{l}"].copy()
                units = range(min(int(setting.at_kink), int(widths[l]) - 1))  # one unit at least stays off the kink
                for j in units:
                    if self.conv.weight_layout == "in_out":
                        W[:, j] = 0.0
                    else:
                        W[j, :] = 0.0
                    b[j] = 0.0
                self.params[f"W{l}"], self.params[f"b{l}"] = W, b
        X, Y = _point_data(net, setting, point, N, seed)
        self.X, self.Y = X, Y  # convention layout (single sample when N == 1)
        Xb, Yb, _ = net.as_batch(X, Y)
        self.Xb, self.Yb = Xb, Yb
        self.N = Xb.shape[0]
        self.cache = net.forward(X, self.params)  # batch-first cache
        self.activations = {st.index: (st.post[0] if st.post else None) for st in net.stages}
        self._build()

    # ----------------------------------------------------------------- layouts
    def to_layout(self, M_batch_first: np.ndarray) -> np.ndarray:
        """(N, n) batch-first to the convention's layout."""
        return M_batch_first if self.conv.batch_axis == "first" else M_batch_first.T

    def _build(self):
        net, L = self.net, self.L
        c = self.cache
        fam = self.families
        fam["W"] = ({l: self.params[f"W{l}"] for l in range(1, L + 1)}, "weight matrix W")
        fam["b"] = ({l: _col(self.params[f"b{l}"]) for l in range(1, L + 1)}, "bias b")
        fam["z"] = ({l: _col(c.z[l][0]) for l in range(1, L + 1)}, "pre-activation z")
        fam["a"] = ({l: _col(c.a[l][0]) for l in range(0, L + 1)}, "activation a")
        fam["n"] = ({l: int(self.widths[l]) for l in range(0, L + 1)}, "width n")
        fam["Ai"] = ({l - 1: self.params[f"W{l}"] for l in range(1, L + 1)}, "MML weight A_i (layer i+1)")
        fam["bi"] = ({l - 1: _col(self.params[f"b{l}"]) for l in range(1, L + 1)}, "MML bias b_i (layer i+1)")
        fam["delta"] = ({l: (lambda l=l: _col(self.delta_samples(l)[0])) for l in range(1, L + 1)}, "delta ∇_z ℓ")
        fam["grad_a"] = ({l: (lambda l=l: _col(self.grad_a_samples(l)[0])) for l in range(0, L + 1)}, "gradient ∇_a ℓ")
        fam["fprime"] = ({l: (lambda l=l: self.apply_dact(l, fam["z"][0][l])) for l in range(1, L + 1)}, "derivative f'(z)")
        fam["Jact"] = ({l: (lambda l=l: self.act_jacobian(l, fam["z"][0][l])) for l in range(1, L + 1)}, "activation Jacobian")
        lay = self.to_layout
        fam["Z"] = ({l: lay(c.z[l]) for l in range(1, L + 1)}, "batch pre-activation Z")
        fam["A"] = ({l: lay(c.a[l]) for l in range(0, L + 1)}, "batch activation A")
        red = 1.0 / self.N if self.conv.reduction == "mean" else 1.0
        fam["Delta"] = ({l: (lambda l=l: lay(self.delta_samples(l))) for l in range(1, L + 1)}, "per-sample deltas Δ")
        fam["dZ"] = ({l: (lambda l=l: lay(self.delta_samples(l)) * red) for l in range(1, L + 1)}, "gradient ∇_Z J")
        fam["dA"] = ({l: (lambda l=l: lay(self.grad_a_samples(l)) * red) for l in range(0, L + 1)}, "gradient ∇_A J")
        s = self.scalars
        s.update(L=L, N=self.N, x=fam["a"][0][0], y=_col(self.Yb[0]), yhat=fam["a"][0][L],
                 X=lay(self.Xb), Y=lay(self.Yb), Yhat=lay(c.a[L]), ones_N=np.ones((self.N, 1)),
                 G=lambda: lay(self.net.loss.grad_yhat(self.Yb, c.a[L])),
                 theta=lambda: net.pack(self.params)[:, None], conv=self.conv)

    # ----------------------------------------------------------------- truths
    def delta_samples(self, l: int) -> np.ndarray:
        """(N, n_l): per-sample ∇_{z[l]} ℓ_i (unreduced) = (J_{z[l]} z[L])ᵀ δ_L."""
        key = ("delta", l)
        if key not in self.truth_cache:
            net, rows = self.net, []
            for i in range(self.N):
                xi, yi = self.Xb[i], self.Yb[i]
                dL = net.delta(xi, yi, self.params)
                P = np.eye(net.n_out)
                for f in net.chain_factors(xi, self.params, l):
                    P = P @ f.to_dense()
                rows.append(P.T @ dL)
            self.truth_cache[key] = np.array(rows)
        return self.truth_cache[key]

    def grad_a_samples(self, l: int) -> np.ndarray:
        """(N, n_l): per-sample ∇_{a[l]} ℓ_i (l = 0..L; a[L] = ŷ)."""
        key = ("grad_a", l)
        if key not in self.truth_cache:
            net, rows = self.net, []
            for i in range(self.N):
                xi, yi = self.Xb[i], self.Yb[i]
                if l == self.L:
                    rows.append(net.loss.grad_yhat(yi[None], self.cache.a[l][i][None])[0])
                    continue
                dL = net.delta(xi, yi, self.params)
                if l == 0:
                    P = net.jacobian_input(xi, self.params).to_dense()
                else:
                    fs = net.chain_factors(xi, self.params, l)[:-1]
                    P = np.eye(net.n_out)
                    for f in fs:
                        P = P @ f.to_dense()
                rows.append(P.T @ dL)
            self.truth_cache[key] = np.array(rows)
        return self.truth_cache[key]

    # ----------------------------------------------------------------- activations
    def _layer(self, k: int):
        act = self.activations[k]
        if act is None:
            from ..layers import IdentityActivation

            act = IdentityActivation()
            act.build((int(self.widths[k]),))
        return act

    def _apply_rows(self, k: int, v, fn):
        v = np.asarray(v, dtype=float)
        n = int(self.widths[k])
        if v.ndim == 1:
            return fn(v[None])[0]
        if v.ndim != 2:
            raise ValueError(f"σ_{k}: expected a vector or a batch matrix, received shape {v.shape}")
        if v.shape == (n, 1):
            return fn(v.T).T
        if self.conv.batch_axis == "first" or v.shape == (1, n):
            if v.shape[1] != n:
                raise ValueError(f"σ_{k} maps R^{n} to R^{n}: received a batch of shape {v.shape} (rows must have {n} entries)")
            return fn(v)
        if v.shape[0] != n:
            raise ValueError(f"σ_{k} maps R^{n} to R^{n}: received a batch of shape {v.shape} (columns must have {n} entries)")
        return fn(v.T).T

    def apply_act(self, k, v):
        layer = self._layer(k)
        return self._apply_rows(k, v, lambda M: layer.forward(M, {}))

    def apply_dact(self, k, v):
        layer = self._layer(k)
        if not getattr(layer, "elementwise", False):
            raise TypeError(f"σ_{k} ({layer.kind}) is not elementwise: it has no elementwise derivative; use Jac(k, v)")
        return self._apply_rows(k, v, lambda M: layer.derivative(M))

    def act_jacobian(self, k, v):
        layer = self._layer(k)
        v = np.asarray(v, dtype=float).ravel()
        n = int(self.widths[k])
        any_width = getattr(layer, "elementwise", False) or isinstance(layer, _ANY_WIDTH_VECTOR_ACTIVATIONS)
        if v.size != n and not any_width:
            raise ValueError(f"Jacobian of σ_{k}: expected a vector in R^{n}, received {v.size} entries")
        o = layer.forward(v[None], {})[0]
        return layer.jac_input(v, o, {}).to_dense()

    def grad_C(self, yhat):
        yhat = _col(yhat)
        y = self.scalars["y"]
        if yhat.shape != y.shape:
            raise ValueError(f"∇_ŷ C: ŷ must have shape {y.shape}, received {yhat.shape}")
        return _col(self.net.loss.grad_yhat(y.T, yhat.T)[0])

    def loss_value(self, yhat, y=None):
        yhat = _col(yhat)
        y = self.scalars["y"] if y is None else _col(y)
        if yhat.shape != y.shape:
            raise ValueError(f"C(ŷ, y): ŷ has shape {yhat.shape}, y has shape {y.shape}")
        return float(self.net.loss.value(y.T, yhat.T)[0])

    def layer_of(self, v, family: str = "z"):
        """Index ``j`` when ``v`` is (a row or column of) ``z[j]`` / ``Z[j]`` (``family="a"``: ``a[j]`` /
        ``A[j]``, j >= 1), else None."""
        try:
            v = np.asarray(v, dtype=float)
        except (TypeError, ValueError):
            return None
        flat = v.ravel()
        close = lambda a, b: a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=1e-14)  # noqa: E731
        for j in range(1, self.L + 1):
            Zj = self.cache.z[j] if family == "z" else self.cache.a[j]
            if Zj.shape[1] == flat.size and any(close(flat, Zj[i]) for i in range(Zj.shape[0])):
                return j
            if Zj.size == flat.size and close(np.sort(flat), np.sort(Zj.ravel())):
                return j
        return None

    def layer_of_activation(self, v):
        """Index ``j`` when ``v`` is (a row or column of) ``a[j]`` / ``A[j]`` and not also ``z[j]``
        (an identity layer), else None."""
        j = self.layer_of(v, "a")
        return None if j is None or self.layer_of(v, "z") == j else j


class _LayerNetData(_NumericData):
    r"""One instance of a setting with ``network=[...]``: any registered layer, quantities asked of the layers.

    Stage ``l`` is the ``l``-th parametric layer with the parameter-free layers after it (the engine's stages):
    its layer maps :math:`\mathbf a^{[l-1]}` to :math:`\mathbf z^{[l]}`, the layers after it make :math:`\mathbf a^{[l]}`.
    Besides the quantities of a dense instance that have a meaning here (``x``, ``y``, ``X``, ``Y``, ``N``, ``L``,
    ``z``, ``a``, ``delta``, ``grad_a``, ``Z``, ``A``, ``Delta``, ``dZ``, ``dA``, ``n``, ``yhat``, ``G``, ``theta``), a
    claim reads

    * every parameter of layer ``l`` by its local name, user layout (vectors as columns): ``q.gamma[l]``,
      ``q.W_Q[l]``, ``q.W_hh[l]``, ``q.W[l]``; a residual block's ``W.1`` as ``q.W_1[l]``, a kernel ``K`` as ``q.K_[l]``
      (:func:`~.layer_networks.family_name`);
    * ``inp[l]``, ``out[l]``: the layer's input :math:`\mathbf a^{[l-1]}` and output :math:`\mathbf z^{[l]}` for the first
      sample in the layer's own shapes (a column for a flat vector, ``(T, d)`` for a sequence, ``(C, H, W)`` for an
      image); ``dout[l]`` :math:`= \nabla_{\mathbf z^{[l]}}\ell` of the first sample in the output's shape;
    * ``Inp[l]``, ``Out[l]``, ``dOut[l]``: the same for the batch, ``(N, *shape)`` (batch first whatever the
      convention); ``dOut`` is the gradient of the *reduced* cost (1/N included for the mean);
    * the intermediates the layer exposes (:func:`~.layer_networks.layer_intermediates`): ``xhat``, ``std``,
      ``Xhat``, ``s``, ``mu``, ``var``, ``P``, ``Q``, ``K_``, ``V``, ``C``, ``h``, ...

    Gradients with respect to activations are the engine's reverse sweep through the layers' own ``vjp_input``
    (batch-level for a layer that couples the samples); ``delta[l]`` is then :math:`\nabla_{\mathbf z_1^{[l]}}\sum_i\ell_i`,
    the per-sample delta when the samples are independent.
    """

    def __init__(self, setting: Setting, seed: int, N: int, point: dict | None = None):
        _InstanceData.__init__(self, f"network, seed {seed}, N = {N}" if point is None else f"network, {point['label']}")
        from .layer_networks import build_network

        self.point = point
        net = build_network(setting)
        self.net = net
        self.conv = net.convention
        self.L = net.L
        self.seed = seed
        self.params = net.init_params(seed)
        rng = np.random.default_rng(1000 + seed)
        for e in net.entries:  # biases drawn larger than the default init, as on dense instances
            if e.is_bias:
                self.params[e.name] = self.params[e.name] + 0.5 * rng.standard_normal(self.params[e.name].shape)
        _apply_point_params(self.params, point)
        X, Y = _point_data(net, setting, point, N, seed)
        self.X, self.Y = X, Y
        self.Xb, self.Yb, _ = net.as_batch(X, Y)
        self.N = self.Xb.shape[0]
        self.cache = net.forward(X, self.params)
        c = self.cache
        self.widths = (int(np.prod(c.a[0].shape[1:])),) + tuple(int(np.prod(c.z[l].shape[1:])) for l in range(1, self.L + 1))
        self.activations = {st.index: (st.post[0] if len(st.post) == 1 and getattr(st.post[0], "elementwise", False)
                                       else None) for st in net.stages}
        self._sweep()
        self._build()

    # ----------------------------------------------------------------- the reverse sweep (truths of the deltas)
    def _sweep(self) -> None:
        r"""Per-sample (unreduced) gradients of :math:`\sum_i\ell_i` with respect to every z[l] and a[l], batch-first
        flat rows: the loss's gradient, then each layer's ``vjp_input`` and the stage's ``post_vjp``."""
        net, c, N = self.net, self.cache, self.N
        GZ = {self.L: np.asarray(net.delta_from_cache(c, self.Yb), dtype=float).reshape(N, -1)}
        GA = {self.L: np.asarray(net.loss.grad_yhat(self.Yb, c.a[self.L]), dtype=float).reshape(N, -1)}
        for l in range(self.L, 0, -1):
            st = net.stages[l - 1]
            gin = np.asarray(st.layer.vjp_input(c.a[l - 1], c.z[l], GZ[l], c.params[l]), dtype=float).reshape(N, -1)
            GA[l - 1] = gin
            if l - 1 >= 1:
                GZ[l - 1] = np.asarray(net.post_vjp(c, l - 1, gin), dtype=float).reshape(N, -1)
        self._GZ, self._GA = GZ, GA

    def delta_samples(self, l: int) -> np.ndarray:
        return self._GZ[l]

    def grad_a_samples(self, l: int) -> np.ndarray:
        return self._GA[l]

    def stage_entries(self, l: int) -> list:
        """The network's θ entries of stage ``l`` (θ order)."""
        return [e for e in self.net.entries if e.stage == l]

    def entry(self, l: int, local: str):
        """The θ entry of the local parameter ``local`` of stage ``l``; ``KeyError`` naming the stage's parameters."""
        if not (1 <= l <= self.L):
            raise MissingQuantity(f"layer {l}: the network has layers 1..{self.L}")
        for e in self.stage_entries(l):
            if e.local == local:
                return e
        layer = self.net.stages[l - 1].layer
        names = ", ".join(e.local for e in self.stage_entries(l)) or "none"
        raise MissingQuantity(f"layer {l} ({layer.kind}) has no parameter {local!r} (its parameters: {names})")

    # ----------------------------------------------------------------- quantities
    def _build(self):
        from .layer_networks import family_name, layer_intermediates

        net, L, c, N = self.net, self.L, self.cache, self.N
        fam = self.families
        lay = self.to_layout
        red = 1.0 / N if self.conv.reduction == "mean" else 1.0
        shaped = lambda v: v.reshape(-1, 1) if v.ndim == 1 else v  # noqa: E731 - a flat vector as a column
        for st in net.stages:
            l = st.index
            for e in self.stage_entries(l):
                name = family_name(e.local)
                items, _ = fam.setdefault(name, ({}, f"parameter {e.local}"))
                items[l] = shaped(np.asarray(self.params[e.name], dtype=float))
        fam["z"] = ({l: _col(c.z[l][0]) for l in range(1, L + 1)}, "pre-activation z")
        fam["a"] = ({l: _col(c.a[l][0]) for l in range(0, L + 1)}, "activation a")
        fam["n"] = ({l: int(self.widths[l]) for l in range(0, L + 1)}, "width n")
        fam["delta"] = ({l: (lambda l=l: _col(self.delta_samples(l)[0])) for l in range(1, L + 1)}, "delta ∇_z ℓ")
        fam["grad_a"] = ({l: (lambda l=l: _col(self.grad_a_samples(l)[0])) for l in range(0, L + 1)}, "gradient ∇_a ℓ")
        fam["Z"] = ({l: lay(c.z[l].reshape(N, -1)) for l in range(1, L + 1)}, "batch pre-activation Z")
        fam["A"] = ({l: lay(c.a[l].reshape(N, -1)) for l in range(0, L + 1)}, "batch activation A")
        fam["Delta"] = ({l: (lambda l=l: lay(self.delta_samples(l))) for l in range(1, L + 1)}, "per-sample deltas Δ")
        fam["dZ"] = ({l: (lambda l=l: lay(self.delta_samples(l)) * red) for l in range(1, L + 1)}, "gradient ∇_Z J")
        fam["dA"] = ({l: (lambda l=l: lay(self.grad_a_samples(l)) * red) for l in range(0, L + 1)}, "gradient ∇_A J")
        ins = {l: np.asarray(c.a[l - 1], dtype=float) for l in range(1, L + 1)}
        outs = {l: np.asarray(c.z[l], dtype=float) for l in range(1, L + 1)}
        fam["inp"] = ({l: shaped(ins[l][0]) for l in ins}, "layer input a[l-1] (its shape)")
        fam["out"] = ({l: shaped(outs[l][0]) for l in outs}, "layer output z[l] (its shape)")
        fam["dout"] = ({l: (lambda l=l: shaped(self.delta_samples(l)[0].reshape(outs[l].shape[1:])))
                        for l in outs}, "∇_{z[l]} ℓ (its shape)")
        fam["Inp"] = ({l: ins[l] for l in ins}, "batch of layer inputs (N, *shape)")
        fam["Out"] = ({l: outs[l] for l in outs}, "batch of layer outputs (N, *shape)")
        fam["dOut"] = ({l: (lambda l=l: self.delta_samples(l).reshape(outs[l].shape) * red) for l in outs},
                       "∇_{Z[l]} J of the reduced cost (N, *shape)")
        for st in net.stages:
            l = st.index
            try:
                inter = layer_intermediates(st.layer, c.a[l - 1], c.z[l], c.params[l])
            except Exception:  # noqa: BLE001 - a layer whose intermediates are not available: none
                inter = {}
            for k, v in inter.items():
                name = family_name(k)
                if name in fam and l in fam[name][0]:
                    continue  # a parameter of the same name wins
                items, _ = fam.setdefault(name, ({}, f"intermediate {k}"))
                items[l] = v
        s = self.scalars
        s.update(L=L, N=N, x=fam["a"][0][0], y=_col(self.Yb[0]), yhat=fam["a"][0][L],
                 X=lay(self.Xb.reshape(N, -1)), Y=lay(self.Yb), Yhat=lay(c.a[L].reshape(N, -1)), ones_N=np.ones((N, 1)),
                 G=lambda: lay(self.net.loss.grad_yhat(self.Yb, c.a[L])),
                 theta=lambda: net.pack(self.params)[:, None], conv=self.conv)

    def act_jacobian(self, k, v):
        layer = self.activations.get(k)
        if layer is None:
            raise TypeError(f"Jac({k}, ·): layer {k} has no single elementwise activation; use the layer's quantities")
        return super().act_jacobian(k, v)


def _apply_point_params(params: dict, point: dict | None) -> None:
    """The parameters a given point sets (user layout, checked when the setting was made)."""
    if point is None:
        return
    for k, v in point.items():
        if k in params:
            params[k] = np.array(v, dtype=float)


def _point_data(net, setting: Setting, point: dict | None, N: int, seed: int):
    """Inputs and targets (convention layout): the random ones of the seed, or a given point's (its ``x``, and its
    ``y`` or targets drawn for as many samples)."""
    from ..spec import generate_data

    if point is not None and "x" in point:
        X = point["x"]
        Xb, _, _ = net.as_batch(X)
        N = Xb.shape[0]
    else:
        X = None
    X0, Y = generate_data(net, N, 7919 * (seed + 1))
    if setting.loss == "bce":
        Y = np.clip(Y, 0, 1)
    if X is None:
        X = X0
    if point is not None and "y" in point:
        Y = point["y"]
    return X, Y


def build_instances(setting: Setting) -> list[_NumericData]:
    """The numeric instances of a setting: one per architecture and seed.

    Instances are read-only and cached per setting (with their truths), so that claims
    sharing a setting share the engine's work.
    """
    if not isinstance(setting, Setting):
        raise TypeError(f"build_instances: expected a Setting, received {type(setting).__name__}")
    return list(_cached_instances(setting))


@lru_cache(maxsize=64)
def _cached_instances(setting: Setting) -> tuple:
    out = []
    batches = setting.batch if isinstance(setting.batch, (tuple, list)) else (setting.batch,) * len(setting.seeds)
    if setting.network is not None:
        for seed, N in zip(setting.seeds, batches):
            out.append(_LayerNetData(setting, int(seed), int(N)))
    for widths in setting.widths:
        if len(widths) - 1 < setting.min_depth:
            continue
        for seed, N in zip(setting.seeds, batches):
            out.append(_NumericData(setting, tuple(widths), int(seed), int(N)))
    if setting.points:
        from .points import thaw_point

        for pt in setting.points:
            p = thaw_point(pt)
            seed, N = int(setting.seeds[0]), int(batches[0])
            if setting.network is not None:
                out.append(_LayerNetData(setting, seed, N, point=p))
            else:
                out.append(_NumericData(setting, tuple(p["widths"]), seed, N, point=p))
    return tuple(out)
