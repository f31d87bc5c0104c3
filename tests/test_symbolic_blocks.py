"""Block-level chains: LeNet-300-100 shapes per convention, structure, explicit entries under a bound.

Oracles: the shapes computed by hand from the layer widths (n_L × n_l n_{l-1} for a weight,
n_L × n_l for a bias), and, for small networks, the engine's own expanded symbolic
Jacobian (and through it SymPy's differentiation, see test_symbolic_layers).
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import sympy
from sympy import Identity, KroneckerProduct, MatMul, MatrixSymbol

from jacobian_bp import Dense, GenericActivation, Network, PRESETS, ShapeError, Sigmoid, Softmax, Tanh
from jacobian_bp.spec import generate_data
from jacobian_bp.symbolic import (BlockChain, SizeBoundError, SymbolicNetwork, lenet_block_chain, matmul,
                                  named_forward, substitute_definitions)

WIDTHS = [784, 300, 100, 10]


def _expected_lenet_shapes() -> dict:
    n = WIDTHS
    out = {}
    for l in (1, 2, 3):
        out[f"W{l}"] = (10, n[l] * n[l - 1])
        out[f"b{l}"] = (10, n[l])
    return out


EXPECTED_ORDER = {
    "damadi": ["W3", "b3", "W2", "b2", "W1", "b1"],
    "ganev": ["W1", "W2", "W3", "b1", "b2", "b3"],
    "park": ["W1", "b1", "W2", "b2", "W3", "b3"],
    "mml": ["W1", "b1", "W2", "b2", "W3", "b3"],
    "pytorch": ["W1", "b1", "W2", "b2", "W3", "b3"],
}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_lenet_block_shapes_and_order(preset):
    bc = lenet_block_chain(preset)
    shapes = bc.shapes()
    assert list(shapes) == EXPECTED_ORDER[preset]
    assert shapes == _expected_lenet_shapes()
    assert bc.shape == (10, 266610) == (10, sum(c for _, c in shapes.values()))
    assert bc.matrix.shape == (10, 266610)
    # every symbol has the dimension the layer widths say
    sym = {k: s.shape for k, s in bc.symbols.items()}
    W3 = (100, 10) if PRESETS[preset].weight_layout == "in_out" else (10, 100)
    assert sym["W[3]"] == W3 and sym["a[2]"] == (100, 1) and sym["x"] == (784, 1)
    assert sym["D[1]"] == (300, 300) and sym["D[2]"] == (100, 100)
    grad = bc.gradient()
    assert grad.shape == (266610, 1)


def test_lenet_blocks_are_damadis_formulas():
    """Damadi §3.3 (corrected Alg. 1): [I₁₀⊗a[2]ᵀ, I₁₀ | W[3]ᵀD[2](I₁₀₀⊗a[1]ᵀ), W[3]ᵀD[2] | …]."""
    bc = lenet_block_chain("damadi")
    a1, a2, x = MatrixSymbol("a[1]", 300, 1), MatrixSymbol("a[2]", 100, 1), MatrixSymbol("x", 784, 1)
    W2, W3 = MatrixSymbol("W[2]", 300, 100), MatrixSymbol("W[3]", 100, 10)
    D1, D2 = MatrixSymbol("D[1]", 300, 300), MatrixSymbol("D[2]", 100, 100)
    assert bc.block("W3") == KroneckerProduct(Identity(10), a2.T)
    assert bc.block("b3") == Identity(10)
    assert bc.block("W2") == MatMul(W3.T, D2, KroneckerProduct(Identity(100), a1.T))
    assert bc.block("b2") == MatMul(W3.T, D2)
    assert bc.block("W1") == MatMul(W3.T, D2, W2.T, D1, KroneckerProduct(Identity(300), x.T))
    tex = bc.latex()
    assert r"\mathbf{I}_{10} \otimes \mathbf{a}^{[2]\top}" in tex  # a symbol's transpose: no parentheses (#15)
    assert r"10\times 235200" in tex and r"\in\mathbb R^{10\times 266610}" in tex
    assert r"\mathbf{W}^{[3]\top} \mathbf{D}^{[2]}" in tex
    assert r"\operatorname{diag} \operatorname{relu}'(\mathbf{z}^{[1]})" in bc.legend_latex()  # z in the notation's own form
    assert "235200" in bc.describe()


def test_column_major_vec_gives_a_transposed_kronecker():
    """MML: W out x in, columns stacked: J_vec W z = aᵀ ⊗ I (MML §5.4)."""
    bc = lenet_block_chain("mml")
    assert bc.block("W3") == KroneckerProduct(MatrixSymbol("a[2]", 100, 1).T, Identity(10))
    assert bc.block("W2").args[0] == MatrixSymbol("W[3]", 10, 100)


NETS = {
    "sigmoid": lambda p: Network([Dense(3), Sigmoid(), Dense(2), Softmax()], "cross_entropy", 2, p),
    "generic-3layer": lambda p: Network([Dense(2), GenericActivation(), Dense(2), Tanh(), Dense(2), Softmax()],
                                        "cross_entropy", 2, p),
    "softmax-hidden": lambda p: Network([Dense(2), Softmax(), Dense(2), Softmax()], "cross_entropy", 2, p),
}


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("kind", list(NETS))
def test_explicit_blocks_equal_the_engines_symbolic_jacobian(preset, kind):
    net = NETS[kind](preset)
    snet = SymbolicNetwork(net)
    bc = BlockChain(net)
    E = bc.explicit(snet)
    assert E.shape == (net.n_out, net.n_params)
    expanded = substitute_definitions(list(E), named_forward(snet).definitions)
    J = snet.jacobian_theta().to_sympy()
    assert all(sympy.expand(a - b) == 0 for a, b in zip(expanded, J))


def test_explicit_single_block_and_substituted_numbers():
    net = NETS["sigmoid"]("damadi")
    snet = SymbolicNetwork(net)
    bc = BlockChain(net)
    B = bc.explicit(snet, block="W1")
    assert B.shape == (2, 6)
    params = net.init_params(0)
    x, _ = generate_data(net, 1, 1)
    numeric = bc.explicit(snet.substitute({"x": x, **params}), block="b1")
    # named z/a remain symbols: evaluate them at the forward pass of the engine
    cache = net.forward(x, params)
    point = {}
    for l in (1,):
        for i in range(3):
            point[sympy.Symbol(f"z^{{[1]}}_{{{i + 1}}}", real=True)] = float(cache.z[1][0, i])
    val = np.array(numeric.xreplace(point).evalf(), dtype=float)
    np.testing.assert_allclose(val, net.jacobian_theta(x, params).block("b[1]").to_dense(), rtol=1e-12)


def test_explicit_refuses_beyond_the_bound():
    bc = lenet_block_chain("damadi")
    with pytest.raises(SizeBoundError, match=r"10 x 235200 = 2,352,000 entries, above the bound max_entries=4,096"):
        bc.explicit(block="W1")
    with pytest.raises(SizeBoundError, match=r"needs the symbol D\[1\] \(300 x 300"):
        bc.explicit(block="b1")
    with pytest.raises(SizeBoundError, match=r"10 x 266610 = 2,666,100 entries"):
        bc.explicit()
    assert bc.explicit(block="b3") == sympy.eye(10)
    small = BlockChain(NETS["sigmoid"]("ganev"))
    with pytest.raises(SizeBoundError):
        small.explicit(max_entries=5)
    with pytest.raises(ValueError, match="positive integer"):
        small.explicit(max_entries=0)
    with pytest.raises(KeyError, match="no parameter"):
        small.block("W9")
    with pytest.raises(ValueError, match="snet"):
        small.explicit(SymbolicNetwork(NETS["sigmoid"]("ganev")))


def test_matmul_rejects_incompatible_shapes_naming_both():
    W = MatrixSymbol("W[3]", 10, 100)
    D = MatrixSymbol("D[1]", 300, 300)
    with pytest.raises(ShapeError, match=r"cannot multiply W\[3\] \(10x100\) by D\[1\] \(300x300\)"):
        matmul(W, D)
    assert matmul(W, MatrixSymbol("D[2]", 100, 100)).shape == (10, 100)
    with pytest.raises(TypeError):
        matmul(W, 3)
    with pytest.raises(ShapeError):
        matmul()


_HAS_CONV = importlib.util.find_spec("jacobian_bp.layers.conv") is not None


@pytest.mark.skipif(not _HAS_CONV, reason="conv layers not available")
@pytest.mark.parametrize("preset", ["pytorch", "mml"])
def test_cnn_block_chain_shapes_and_explicit_entries(preset):
    from jacobian_bp.layers import Conv2d, Flatten

    net = Network([Conv2d(2, 2), Sigmoid(), Flatten(), Dense(2), Softmax()], "cross_entropy", (1, 3, 3), preset)
    bc = BlockChain(net)
    num = net.jacobian_theta(*[generate_data(net, 1, 0)[0]], net.init_params(0))
    assert bc.shapes() == {b.input.name.replace("vec ", "").replace("[", "").replace("]", ""): b.shape for b in num.blocks}
    snet = SymbolicNetwork(net)
    E = bc.explicit(snet)
    expanded = substitute_definitions(list(E), named_forward(snet).definitions)
    J = snet.jacobian_theta().to_sympy()
    assert all(sympy.expand(a - b) == 0 for a, b in zip(expanded, J))
