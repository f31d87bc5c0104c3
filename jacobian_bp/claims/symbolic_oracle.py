"""The symbolic oracle: a small network in SymPy symbols, its truths by differentiating the loss.

Independent of the engine: the forward pass, the activations and the losses are restated here on
purpose (architecture invariant 1 allows the claim checker's symbolic oracle to do so), so that a
claim checked exactly against this oracle is checked against something the engine did not compute.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import sympy

from ..backend.exact import exact_number
from ..errors import SpecError
from .instances import _InstanceData
from .model import Setting
from .quantities import Quantities, _Log


# The oracle's own activations and losses, restated on purpose (architecture invariant 1: the claim
# checker's symbolic oracle stays independent of the layer classes it checks), keyed by the names a
# Setting gives (``symbolic_hidden``, ``symbolic_output``, ``loss``).

#: elementwise activations: (the layer's undefined function f_l, a SymPy scalar t) -> f(t)
_ELEMENTWISE: dict[str, Callable] = {
    "generic": lambda f_l, t: f_l(t),
    "identity": lambda f_l, t: t,
    "sigmoid": lambda f_l, t: 1 / (1 + sympy.exp(-t)),
    "tanh": lambda f_l, t: sympy.tanh(t),
}


def _softmax(v: sympy.Matrix) -> sympy.Matrix:
    r""":math:`\exp(v_i) / \sum_j \exp(v_j)` of a SymPy column."""
    e = [sympy.exp(t) for t in v]
    s = sum(e)
    return sympy.Matrix(v.shape[0], v.shape[1], [t / s for t in e])


#: vector activations: a SymPy column -> its image
_VECTOR: dict[str, Callable] = {"softmax": _softmax}
_SYM_ACTS = tuple(_ELEMENTWISE) + tuple(_VECTOR)


def _mse(conv, y, yhat):
    r""":math:`c\,\|\hat{\mathbf y}-\mathbf y\|^2`, ``c`` the convention's MSE scale."""
    c = exact_number(conv.mse_scale, f"convention {conv.name!r}: mse_scale")
    return c * sum((yhat[i] - y[i]) ** 2 for i in range(y.shape[0]))


def _bce(conv, y, yhat):
    r""":math:`-\sum_i y_i\log\hat y_i + (1-y_i)\log(1-\hat y_i)`."""
    return -sum(y[i] * sympy.log(yhat[i]) + (1 - y[i]) * sympy.log(1 - yhat[i]) for i in range(y.shape[0]))


def _cross_entropy(conv, y, yhat):
    r""":math:`-\sum_i y_i\log\hat y_i`."""
    return -sum(y[i] * sympy.log(yhat[i]) for i in range(y.shape[0]))


#: losses: (convention, target y, prediction ŷ) -> C(ŷ, y)
_LOSSES: dict[str, Callable] = {"mse": _mse, "bce": _bce, "cross_entropy": _cross_entropy}


class _SymbolicData(_InstanceData):
    """A small network with SymPy symbols for every entry; truths by differentiating the loss.

    Parameters ``w^{[l]}_{ij}`` (user layout), ``b^{[l]}_i``, inputs ``x_i``, targets
    ``y_i``; activations per layer ``generic`` (an undefined function ``f_l``),
    ``identity``, ``sigmoid``, ``tanh`` or ``softmax``; loss MSE (convention scale),
    BCE or CE.  This forward pass is written here, independently of the engine.
    """

    symbolic = True

    def __init__(self, setting: Setting, widths: tuple):
        super().__init__(f"symbolic {'-'.join(map(str, widths))}")
        conv = setting.conv()
        self.conv = conv
        self.widths = tuple(int(w) for w in widths)
        L = len(widths) - 1
        self.L = L
        self.N = 1
        self.seed = 0
        hidden = setting.symbolic_hidden
        output = setting.symbolic_output
        for name in (hidden, output):
            if name not in _SYM_ACTS:
                raise SpecError(f"symbolic check: activation {name!r} not supported; use one of {_SYM_ACTS}")
        self.act_names = {l: (output if l == L else hidden) for l in range(1, L + 1)}
        self.funcs = {l: sympy.Function(f"f_{l}", real=True) for l in range(1, L + 1)}
        self.loss_kind = setting.loss
        n = self.widths
        self.x = sympy.Matrix(n[0], 1, lambda i, j: sympy.Symbol(f"x_{i + 1}", real=True))
        self.y = sympy.Matrix(n[L], 1, lambda i, j: sympy.Symbol(f"y_{i + 1}", real=True))
        self.W, self.Wc, self.b = {}, {}, {}
        for l in range(1, L + 1):
            if conv.weight_layout == "in_out":
                Wu = sympy.Matrix(n[l - 1], n[l], lambda i, j: sympy.Symbol(f"w^{{[{l}]}}_{{{i + 1}{j + 1}}}", real=True))
                Wc = Wu.T
            else:
                Wu = sympy.Matrix(n[l], n[l - 1], lambda i, j: sympy.Symbol(f"w^{{[{l}]}}_{{{i + 1}{j + 1}}}", real=True))
                Wc = Wu
            self.W[l], self.Wc[l] = Wu, Wc
            self.b[l] = sympy.Matrix(n[l], 1, lambda i, j: sympy.Symbol(f"b^{{[{l}]}}_{{{i + 1}}}", real=True))
        self.z, self.a = {}, {0: self.x}
        for l in range(1, L + 1):
            self.z[l] = self.Wc[l] * self.a[l - 1] + self.b[l]
            self.a[l] = self._act(l, self.z[l])
        self.loss_expr = self._loss(self.a[L])
        fam = self.families
        fam["W"] = (dict(self.W), "weight matrix W")
        fam["b"] = (dict(self.b), "bias b")
        fam["z"] = (dict(self.z), "pre-activation z")
        fam["a"] = (dict(self.a), "activation a")
        fam["n"] = ({l: n[l] for l in range(L + 1)}, "width n")
        fam["Ai"] = ({l - 1: self.W[l] for l in range(1, L + 1)}, "MML weight A_i (layer i+1)")
        fam["bi"] = ({l - 1: self.b[l] for l in range(1, L + 1)}, "MML bias b_i (layer i+1)")
        fam["delta"] = ({l: (lambda l=l: self.symbolic_truth("delta", l)) for l in range(1, L + 1)}, "delta ∇_z ℓ")
        fam["grad_a"] = ({l: (lambda l=l: self.symbolic_truth("grad_a", l)) for l in range(0, L + 1)}, "gradient ∇_a ℓ")
        fam["fprime"] = ({l: (lambda l=l: self.apply_dact(l, self.z[l])) for l in range(1, L + 1)}, "derivative f'(z)")
        fam["Jact"] = ({l: (lambda l=l: self.act_jacobian(l, self.z[l])) for l in range(1, L + 1)}, "activation Jacobian")
        self.activations = {l: self.act_names[l] for l in range(1, L + 1)}
        self.scalars.update(L=L, N=1, x=self.x, y=self.y, yhat=self.a[L], conv=conv,
                            theta=lambda: self._theta())

    def _theta(self):
        parts = []
        order = range(self.L, 0, -1) if self.conv.theta_order == "reverse" else range(1, self.L + 1)
        for l in order:
            W = self.W[l]
            parts.append(sympy.Matrix(list(W.T)) if self.conv.vec_order == "col" else sympy.Matrix(list(W)))
            parts.append(self.b[l])
        return sympy.Matrix.vstack(*parts)

    def _scalar_act(self, l, t):
        f = _ELEMENTWISE.get(self.act_names[l])
        if f is None:
            raise SpecError(f"σ_{l} ({self.act_names[l]}) is not elementwise")
        return f(self.funcs[l], t)

    def _act(self, l, v):
        v = sympy.Matrix(v)
        vector = _VECTOR.get(self.act_names[l])
        if vector is not None:
            return vector(v)
        return v.applyfunc(lambda t: self._scalar_act(l, t))

    def _loss(self, yhat):
        loss = _LOSSES.get(self.loss_kind)
        if loss is None:
            raise SpecError(f"symbolic check: loss {self.loss_kind!r} not supported")
        return loss(self.conv, self.y, yhat)

    # helpers --------------------------------------------------------------------
    def apply_act(self, k, v):
        return self._act(k, v)

    def apply_dact(self, k, v):
        if self.act_names[k] in _VECTOR:
            raise TypeError(f"σ_{k} ({self.act_names[k]}) is not elementwise: it has no elementwise derivative; "
                            "use Jac(k, v)")
        t = sympy.Dummy("t", real=True)
        d = sympy.diff(self._scalar_act(k, t), t)
        return sympy.Matrix(v).applyfunc(lambda e: d.subs(t, e))

    def act_jacobian(self, k, v):
        v = sympy.Matrix(v)
        if v.shape[1] != 1:
            v = v.T
        zs = sympy.Matrix(v.shape[0], 1, lambda i, j: sympy.Dummy(f"u{i}", real=True))
        J = self._act(k, zs).jacobian(zs)
        return J.subs(dict(zip(list(zs), list(v))))

    def grad_C(self, yhat):
        yhat = sympy.Matrix(yhat)
        us = sympy.Matrix(yhat.shape[0], 1, lambda i, j: sympy.Dummy(f"v{i}", real=True))
        g = sympy.Matrix([self._loss(us)]).jacobian(us).T
        return g.subs(dict(zip(list(us), list(yhat))))

    def loss_value(self, yhat, y=None):
        if y is not None and sympy.Matrix(y) != self.y:
            raise ValueError("symbolic C(ŷ, y): only the instance's target y is supported")
        return self._loss(sympy.Matrix(yhat))

    def layer_of(self, v, family: str = "z"):
        try:
            v = sympy.Matrix(v)
        except Exception:  # noqa: BLE001 - not a matrix: no layer
            return None
        items = self.z if family == "z" else {j: a for j, a in self.a.items() if j >= 1}
        for j, zj in items.items():
            if v.shape == zj.shape and v == zj or v.T.shape == zj.shape and v.T == zj:
                return j
        return None

    def layer_of_activation(self, v):
        j = self.layer_of(v, "a")
        return None if j is None or self.layer_of(v, "z") == j else j

    # truths ---------------------------------------------------------------------
    def _partial_loss_gradient(self, l: int, at: str) -> sympy.Matrix:
        """∇ of the loss w.r.t. z[l] (at='z') or a[l] (at='a'), via fresh symbols."""
        n = self.widths[l]
        u = sympy.Matrix(n, 1, lambda i, j: sympy.Dummy(f"u{i}", real=True))
        cur = self._act(l, u) if at == "z" else u
        for k in range(l + 1, self.L + 1):
            cur = self._act(k, self.Wc[k] * cur + self.b[k])
        g = sympy.Matrix([self._loss(cur)]).jacobian(u).T
        val = self.z[l] if at == "z" else self.a[l]
        return g.subs(dict(zip(list(u), list(val))))

    def symbolic_truth(self, target: str, l):
        key = ("sym", target, l)
        if key in self.truth_cache:
            return self.truth_cache[key]
        if target == "grad_W":
            W = self.W[l]
            v = W.applyfunc(lambda w: sympy.diff(self.loss_expr, w))
        elif target == "grad_b":
            v = self.b[l].applyfunc(lambda w: sympy.diff(self.loss_expr, w))
        elif target == "delta":
            v = self._partial_loss_gradient(l, "z")
        elif target == "grad_a":
            v = self._partial_loss_gradient(l, "a") if l < self.L else self.grad_C(self.a[self.L])
        elif target == "z":
            v = self.z[l]
        elif target == "a":
            v = self.a[l]
        elif target == "yhat":
            v = self.a[self.L]
        elif target == "J_act":
            v = self.act_jacobian(l, self.z[l])
        elif target == "loss":
            v = sympy.Matrix([[self.loss_expr]])
        elif target == "grad_theta":
            th = self._theta()
            v = th.applyfunc(lambda w: sympy.diff(self.loss_expr, w))
        elif target == "grad_theta_l":
            W = self.W[l]
            vecW = sympy.Matrix(list(W.T)) if self.conv.vec_order == "col" else sympy.Matrix(list(W))
            th = sympy.Matrix.vstack(vecW, self.b[l])
            v = th.applyfunc(lambda w: sympy.diff(self.loss_expr, w))
        else:
            raise SpecError(f"symbolic check: target {target!r} has no symbolic truth")
        self.truth_cache[key] = v
        return v



def symbolic_quantities(setting: Setting, widths: Sequence[int] | None = None) -> Quantities:
    """SymPy :class:`Quantities` of the setting's symbolic architecture (for writing SymPy claims)."""
    w = tuple(widths) if widths is not None else (setting.symbolic or (2, 3, 2))
    return Quantities(_SymbolicData(setting, w), _Log())


@lru_cache(maxsize=32)
def _cached_symbolic(setting: Setting, widths: tuple) -> "_SymbolicData":
    return _SymbolicData(setting, widths)
