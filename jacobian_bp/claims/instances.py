"""Random numeric instances of a setting: a network, its parameters and data, its quantities and truths.

One instance per architecture and seed; they are read-only and cached per setting, so that claims
sharing a setting share the engine's work.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ..layers import Softmax
from .model import Setting
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


def _make_network(setting: Setting, widths: tuple):
    from ..layers import Dense, layer_class
    from ..engine.network import Network

    conv = setting.conv()
    layers = []
    L = len(widths) - 1
    for l in range(1, L + 1):
        layers.append(Dense(int(widths[l])))
        kind = setting.output if l == L else setting.hidden
        layers.append(layer_class(kind)())
    loss: Any = setting.loss
    if setting.loss == "mse":
        from ..layers.losses import MSE

        loss = MSE(scale=conv.mse_scale, reduce_outputs=conv.mse_reduce_outputs)
    return Network(layers, loss, int(widths[0]), convention=conv, name="claim-" + "-".join(map(str, widths)))


class _NumericData(_InstanceData):
    def __init__(self, setting: Setting, widths: tuple, seed: int, N: int):
        super().__init__(f"{'-'.join(map(str, widths))}, seed {seed}, N = {N}")
        from ..spec import generate_data

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
        X, Y = generate_data(net, N, 7919 * (seed + 1))
        if setting.loss == "bce":
            Y = np.clip(Y, 0, 1)
        self.X, self.Y = X, Y  # convention layout (single sample when N == 1)
        Xb, Yb, _ = net.as_batch(X, Y)
        self.Xb, self.Yb = Xb, Yb
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
    for widths in setting.widths:
        if len(widths) - 1 < setting.min_depth:
            continue
        for seed, N in zip(setting.seeds, batches):
            out.append(_NumericData(setting, tuple(widths), int(seed), int(N)))
    return tuple(out)
