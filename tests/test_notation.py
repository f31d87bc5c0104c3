"""Issue #12 leftovers / #15 item 4: parameter facts from the layer, notation that follows the network.

* the θ layout and the renderers ask the layer what a parameter is (``param_role``) and how it is written
  (``param_symbol``), with defaults from the name that treat ``b_Q``, ``b_hh`` as biases;
* a network's Jacobians display (Jupyter ``_repr_latex_``) and its :class:`BlockChain` print in the network's
  notation (a ``pytorch`` network in its own), with an option to choose another;
* the block chain writes a residual block's Jacobian as its formula :math:`\\mathbf I + \\mathbf J_{\\text{body}}`;
* terminal printing is readable Unicode, never raw LaTeX.

Oracles: the θ order written by hand from the convention's definition, float64 central differences of the
loss, SymPy simplification to zero against the engine's exact symbolic Jacobian, and torch autograd.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import sympy

import jacobian_bp as jb
from jacobian_bp.backend.operators import Dense as DenseOp
from jacobian_bp.errors import SpecError
from jacobian_bp.layers.base import default_param_role
from jacobian_bp.layers.dense import Dense
from jacobian_bp.layers.normalization import LayerNorm
from jacobian_bp.layers.residual import Residual
from jacobian_bp.render.derivation import derivation_document
from jacobian_bp.render.notation import Notation
from jacobian_bp.symbolic import SymbolicNetwork, named_gradient
from jacobian_bp.symbolic.blocks import BlockChain
from jacobian_bp.symbolic.intermediates import named_forward, substitute_definitions


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


class QDense(Dense):
    """A dense layer whose parameters are named as attention's are (``W_Q``, ``b_Q``): z = W_Q a + b_Q."""

    kind = "q_dense_sketch"
    affine_weight_name = "W_Q"
    MAP = {"W": "W_Q", "b": "b_Q"}

    def __init__(self, n):
        super().__init__(n)
        self.param_names = ("W_Q", "b_Q")

    def _in(self, p):
        return {k: p[v] for k, v in self.MAP.items() if v in p}

    def _out(self, d):
        return {self.MAP[k]: v for k, v in d.items()}

    def param_shapes(self):
        return self._out(super().param_shapes())

    def init_params(self, rng):
        return self._out(super().init_params(rng))

    def forward(self, A, params):
        return super().forward(A, self._in(params))

    def jac_input(self, a, o, params):
        return super().jac_input(a, o, self._in(params))

    def jac_params(self, a, o, params, order="C"):
        return self._out(super().jac_params(a, o, self._in(params), order))

    def vjp_input(self, A, O, G, params):
        return super().vjp_input(A, O, G, self._in(params))

    def vjp_params(self, A, O, G, params):
        return self._out(super().vjp_params(A, O, G, self._in(params)))

    def left_jac_input(self, A, O, P, params):
        return super().left_jac_input(A, O, P, self._in(params))

    def jvp_input(self, A, O, T, params):
        return super().jvp_input(A, O, T, self._in(params))

    def jvp_params(self, A, O, dparams, params):
        return super().jvp_params(A, O, self._in(dparams), self._in(params))

    def weight_transposed_by_layout(self, local):
        return local == "W_Q"

    def block_param_jacobian(self, alg, local, order):
        return super().block_param_jacobian(alg, {"W_Q": "W", "b_Q": "b"}[local], order)

    def block_param_gradient(self, alg, local, order, delta):
        return super().block_param_gradient(alg, {"W_Q": "W", "b_Q": "b"}[local], order, delta)

    def latex_forward(self, nt, l, a_prev, weight_layout):
        return f"{nt.param('W_Q', l, self)}{a_prev} + {nt.param('b_Q', l, self)}"


# ------------------------------------------------------------------ 1. parameter facts from the layer
@pytest.mark.parametrize("name, role", [("W", "weight"), ("b", "bias"), ("K", "weight"), ("W_Q", "weight"),
                                        ("b_Q", "bias"), ("W_ih", "weight"), ("b_hh", "bias"), ("b_ih", "bias"),
                                        ("gamma", "weight"), ("b.1", "bias"), ("W.2.1", "weight"), ("b_Q.3", "bias")])
def test_default_param_roles_read_the_name(name, role):
    assert default_param_role(name) == role
    assert Dense(3).param_role(name) == role  # the layer's default


def _q_network(convention):
    return jb.Network([QDense(4), jb.Tanh(), jb.Dense(2)], "mse", 3, convention=convention)


def test_weights_first_theta_puts_every_bias_of_the_layers_last():
    """Ganev's Param: all weights, then all biases -- b_Q is a bias although it is not called "b"."""
    net = _q_network("ganev")
    assert net.param_names == ["W_Q1", "W2", "b_Q1", "b2"]  # by hand from theta_order="weights_first"
    assert [e.is_bias for e in net.entries] == [False, False, True, True]
    assert _q_network("pytorch").param_names == ["W_Q1", "b_Q1", "W2", "b2"]  # forward: per layer
    # the packed gradient is the loss's derivative in that order: float64 central differences of the loss
    rng = np.random.default_rng(0)
    p = net.init_params(1)
    X, Y = rng.standard_normal((3, 3)), rng.standard_normal((3, 2))
    theta = net.pack(p)
    g = net.gradient(X, Y, p).vector
    fd = np.array([(net.loss_value(X, Y, net.unpack(theta + 1e-6 * d)) - net.loss_value(X, Y, net.unpack(theta - 1e-6 * d)))
                   / 2e-6 for d in np.eye(theta.size)])
    assert rel(g, fd) <= 1e-8
    assert np.array_equal(theta[20:24], p["b_Q1"])  # 12 entries of W_Q1, 8 of W2, then b_Q1


class Renamed(QDense):
    """A layer that states its own LaTeX letter for a parameter and says its W_Q is the bias-like one (to show
    that the facts are asked, not read from the name)."""

    kind = "renamed_sketch"

    def param_symbol(self, local):
        return r"\mathbf{Q}" if local == "W_Q" else None


def test_latex_symbols_come_from_the_layer():
    net = jb.Network([LayerNorm(), jb.Dense(2)], "mse", 3, convention="pytorch")
    rng = np.random.default_rng(2)
    doc = derivation_document(net, net.init_params(0), rng.standard_normal(3), rng.standard_normal(2), use_torch=False)
    assert r"\mathbf{gamma}" not in doc and r"\mathbf{beta}" not in doc
    assert r"\boldsymbol{\gamma}^{(1)}" in doc and r"\boldsymbol{\beta}^{(1)}" in doc
    net = _q_network("pytorch")
    doc = derivation_document(net, net.init_params(0), rng.standard_normal(3), rng.standard_normal(2), use_torch=False)
    assert r"\mathbf{W}_{Q}^{(1)}" in doc and r"\mathbf{b}_{Q}^{(1)}" in doc and r"\mathbf{W_Q}" not in doc
    net = jb.Network([Renamed(4), jb.Tanh(), jb.Dense(2)], "mse", 3, convention="ganev")
    doc = derivation_document(net, net.init_params(0), rng.standard_normal(3), rng.standard_normal(2), use_torch=False)
    assert r"\mathbf{Q}_1" in doc and r"b_{Q,1}" in doc  # Ganev: plain bias letters, the index joins the subscript


# ------------------------------------------------------------------ 4. Jupyter display in the network's notation
def _mse_net(convention):
    return jb.Network([jb.Dense(4), jb.Tanh(), jb.Dense(2)], "mse", 3, convention=convention)


def test_jacobian_display_follows_the_network_notation():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(3)
    net = _mse_net("pytorch")
    p = net.init_params(0)
    shown = net.jacobian_theta(x, p)._repr_latex_()
    assert shown.startswith(r"$\frac{\partial \mathbf{z}^{(2)}}{\partial \boldsymbol{\theta}} = ")
    assert "^{[" not in shown and r"\mathbf{J}" not in shown
    local = net.local_jacobian(x, p, 1)._repr_latex_()
    assert local.startswith(r"$\frac{\partial \mathbf{z}^{(1)}}{\partial (\operatorname{vec}\mathbf{W}^{(1)},\mathbf{b}^{(1)})} = ")
    net = _mse_net("ganev")
    shown = net.jacobian_theta(x, net.init_params(0))._repr_latex_()
    assert r"\frac{\partial \mathbf{z}_2}{\partial \theta}" in shown and "^{[" not in shown
    # Damadi's own network keeps its symbols byte for byte
    net = _mse_net("damadi")
    assert net.jacobian_theta(x, net.init_params(0))._repr_latex_().startswith(r"$\mathbf{J}_{\boldsymbol{\theta}} \mathbf{z}^{[2]} = ")


def test_local_jacobian_columns_are_in_theta_order():
    """A residual block's local Jacobian lists W.1, b.1, W.2, b.2 as θ does (it listed the weights first)."""
    net = jb.Network([jb.Dense(3), jb.Tanh(), Residual([jb.Dense(3), jb.Tanh(), jb.Dense(3)]), jb.Dense(2)], "mse", 3,
                     convention="pytorch")
    x, p = np.random.default_rng(4).standard_normal(3), net.init_params(0)
    J = net.local_jacobian(x, p, 2)
    theta_names = [e.space.name for e in net.entries if e.stage == 2]
    assert [b.input.name for b in J.blocks] == theta_names == ["vec W[2.1]", "b[2.1]", "vec W[2.2]", "b[2.2]"]
    # and its columns are the derivative of z[2] in that order: central differences of the block's output
    theta = net.pack(p)
    idx = np.concatenate([np.arange(e.offset, e.offset + e.size) for e in net.entries if e.stage == 2])

    def z2(t):
        return net.forward(x, net.unpack(t)).z[2][0]

    fd = np.stack([(z2(theta + 1e-6 * np.eye(theta.size)[j]) - z2(theta - 1e-6 * np.eye(theta.size)[j])) / 2e-6
                   for j in idx], axis=1)
    assert rel(J.to_dense(), fd) <= 1e-8


# ------------------------------------------------------------------ 3. BlockChain: notation and residual formula
def test_block_chain_follows_the_network_notation_and_takes_an_option():
    net = _mse_net("pytorch")
    tex = BlockChain(net).latex()
    assert r"\frac{\partial \mathbf{z}^{(2)}}{\partial \boldsymbol{\theta}}" in tex and r"\mathbf{W}^{(2)}" in tex
    assert "^{[" not in tex
    assert BlockChain(net)._repr_latex_() == "$" + tex + "$"
    ganev = BlockChain(net, notation="ganev").latex()
    assert r"W_2" in ganev and r"\mathbf{a}_1^{T}" in ganev
    mine = Notation("mine_bc", vector=r"\vec{%s}", matrix=r"\mathsf{%s}", index="sub", jacobian="partial")
    assert r"\mathsf{W}_2" in BlockChain(net, notation=mine).latex()
    with pytest.raises(SpecError, match="unknown notation"):
        BlockChain(net, notation="nonesuch")


def _residual_net(convention):
    return jb.Network([jb.Dense(3), jb.Tanh(), Residual([jb.Dense(3), jb.Sigmoid(), jb.Dense(3)]), jb.Tanh(),
                       jb.Dense(2)], "mse", 2, convention=convention)


@pytest.mark.parametrize("convention", ["damadi", "pytorch", "mml"])
def test_block_chain_writes_a_residual_block_as_identity_plus_its_body(convention):
    net = _residual_net(convention)
    bc = BlockChain(net)
    names = {s.name for b in bc.blocks for s in b.atoms(sympy.MatrixSymbol)}
    assert not any(n.startswith("Jin") or n.startswith("JW") or n.startswith("Jb") for n in names), names
    assert {"W[2.1]", "W[2.2]", "D[2.1]"} <= names
    assert isinstance(bc.input_jac[2], sympy.MatAdd) and sympy.Identity(3) in bc.input_jac[2].args
    tex = bc.latex()
    assert r"\mathbf{I}_{3} + " in tex
    # exact: the named explicit chain, definitions substituted, equals the engine's symbolic Jacobian
    snet = SymbolicNetwork(net)
    E = bc.explicit(snet)
    expanded = substitute_definitions(list(E), named_forward(snet).definitions)
    J = snet.jacobian_theta().to_sympy()
    # both exact expressions in x and θ, compared at a random point with 30-digit arithmetic
    rng = np.random.default_rng(6)
    point = {s: sympy.Float(rng.uniform(-1, 1), 30) for s in snet.symbols()}
    for a, b in zip(expanded, J):
        assert abs((a.xreplace(point).doit() - b.xreplace(point)).evalf(30)) < 1e-25


def test_residual_block_chain_at_numbers_equals_central_differences():
    net = _residual_net("damadi")
    rng = np.random.default_rng(5)
    x, p = rng.standard_normal(2), net.init_params(0)
    bc = BlockChain(net)
    snet = SymbolicNetwork(net).substitute({"x": x, **p})
    E = bc.explicit(snet)
    expanded = substitute_definitions(list(E), named_forward(snet).definitions)
    value = np.array([float(sympy.N(v)) for v in expanded]).reshape(E.shape)
    theta = net.pack(p)

    def logits(t):
        return net.forward(x, net.unpack(t)).z[net.L][0]

    fd = np.stack([(logits(theta + 1e-6 * d) - logits(theta - 1e-6 * d)) / 2e-6 for d in np.eye(theta.size)], axis=1)
    assert rel(value, fd) <= 1e-8


# ------------------------------------------------------------------ 4. terminal printing
def test_terminal_printing_is_readable_unicode():
    from jacobian_bp.symbolic.printing import readable, readable_name

    assert readable_name(r"\delta^{[1]}_{1}") == "δ₁⁽¹⁾" and readable_name("w^{[2.1]}_{12}") == "w₁₂⁽²·¹⁾"
    snet = SymbolicNetwork(_mse_net("damadi"))
    g = named_gradient(snet)
    text = str(g)
    assert "δ" in text and "\\" not in text and "{[" not in text
    assert "\\" not in repr(BlockChain(_mse_net("pytorch"))) and "\\" not in str(BlockChain(_mse_net("pytorch")))
    expr = g.vector[0]
    assert "\\" in str(expr) and "\\" not in readable(expr)  # sympy's own str shows the LaTeX name; readable() does not


# ------------------------------------------------------------------ 6. the torch twin knows residual blocks
@pytest.mark.parametrize("preset", ["damadi", "ganev", "park", "mml", "pytorch"])
def test_the_torch_twin_knows_residual_blocks(preset):
    """tests/twin_residual.py: ``a + body(a)`` from the twin's own per-kind functions, the θ layout of dotted names
    (``W2.1``); test_contract.py then checks residual networks against torch autograd, not central differences."""
    torch = pytest.importorskip("torch")
    import torch_twin

    net = jb.Network([jb.Dense(3), Residual([jb.Dense(3), jb.Tanh(), Residual([jb.Dense(3, bias=False), jb.Sigmoid()]),
                                             jb.Dense(3)]), jb.Tanh(), jb.Dense(2)], "mse", 4, convention=preset)
    slots = torch_twin.theta_layout(net)
    assert [s.name for s in slots] == net.param_names  # W2.1, b2.1, W2.2.1, ... in the convention's θ order
    rng = np.random.default_rng(7)
    p = net.init_params(3)
    theta = net.pack(p)
    x = rng.standard_normal(4)
    assert rel(net.jacobian_theta(x, p).to_dense(), torch_twin.jacobian_theta(net, x, theta)) <= 1e-12
    X, Y = rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    if preset == "park":
        X, Y = X.T, Y.T
    loss, g = torch_twin.loss_and_gradient(net, X, Y, theta)
    assert abs(net.loss_value(X, Y, p) - loss) <= 1e-12 * abs(loss)
    assert rel(net.gradient(X, Y, p).vector, g) <= 1e-12
    assert torch.is_tensor(torch_twin.forward(net, torch.tensor(theta), torch.tensor(X if preset != "park" else X.T))[0])
