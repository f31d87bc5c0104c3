"""Residual blocks and parameter-free first layers in LaTeX (issue #12): the block's input Jacobian renders as
I + J_body with the body's factors, a parameter inside the block as the chain from the network output down to
it, every rendered expression evaluates to the numeric engine's matrix, gradient tables name W^{[2.1]}, and the
derivation document (CLI ``latex``) covers both and compiles with pdflatex."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from jacobian_bp.cli import main
from jacobian_bp.engine.network import Network
from jacobian_bp.errors import UnsupportedInputError
from jacobian_bp.layers.activations import Sigmoid, Tanh
from jacobian_bp.layers.conv import Conv2d
from jacobian_bp.layers.dense import Dense
from jacobian_bp.layers.flatten import Flatten
from jacobian_bp.layers.pooling import MaxPool2d
from jacobian_bp.layers.residual import Residual
from jacobian_bp.layers.vector_activations import Softmax
from jacobian_bp.render.derivation import compile_pdf, derivation_document
from jacobian_bp.render.latex import NetworkLatex, gradient_latex, render

PRESETS = ["damadi", "ganev", "park", "mml", "pytorch"]


def res_mlp(conv):
    return Network([Dense(5), Tanh(), Residual([Dense(5), Tanh(), Dense(5)]), Tanh(), Dense(3), Softmax()],
                   "cross_entropy", 4, conv, name="res-mlp")


def res_cnn(conv):  # pre-activation body (relu first) of two padded convolutions
    body = [Tanh(), Conv2d(2, 3, padding=1), Tanh(), Conv2d(2, 3, padding=1)]
    return Network([Conv2d(2, 3, padding=1), Residual(body), Flatten(), Dense(3), Softmax()],
                   "cross_entropy", (1, 4, 4), conv, name="res-cnn")


def nested(conv):
    return Network([Dense(3), Residual([Dense(3), Sigmoid(), Residual([Dense(3), Tanh()])]), Dense(2)],
                   "mse", 2, conv, name="nested")


def pool_first(conv):
    return Network([MaxPool2d(2), Flatten(), Dense(4), Sigmoid(), Dense(3), Softmax()],
                   "cross_entropy", (1, 4, 4), conv, name="pool-first")


NETS = {"res_mlp": res_mlp, "res_cnn": res_cnn, "nested": nested, "pool_first": pool_first}


def point(net, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(net.input_shape)
    y = np.eye(net.n_out)[0] if net.loss.kind == "cross_entropy" else rng.standard_normal(net.n_out)
    return x, y, net.init_params(seed)


def test_block_input_jacobian_is_identity_plus_the_body_chain():
    nl = NetworkLatex(res_mlp("damadi"))
    assert render(nl.input_jacobian(2), nl.nt) == (
        r"\mathbf{I}_5 + (\mathbf{W}^{[2.2]})^\top \, \operatorname{diag} f^{[2.1]\prime}(\mathbf{z}^{[2.1]}) \, "
        r"(\mathbf{W}^{[2.1]})^\top")
    nl = NetworkLatex(res_mlp("pytorch"))  # out_in layout: no transposes
    assert render(nl.input_jacobian(2), nl.nt) == (
        r"\mathbf{I}_5 + \mathbf{W}^{(2.2)} \, \operatorname{diag} f^{(2.1)\prime}(\mathbf{z}^{(2.1)}) \, \mathbf{W}^{(2.1)}")
    # inside a product the sum is parenthesized (the delta recursion)
    assert r"(\mathbf{I}_5 + \mathbf{W}^{[2.1]}" in render(NetworkLatex(res_mlp("damadi")).delta(1), "damadi")


def test_parameter_inside_the_block_is_the_chain_from_the_output():
    net = res_mlp("damadi")
    nl = NetworkLatex(net)
    assert render(nl.block([net.entry("W2.1")]), nl.nt) == (
        r"(\mathbf{W}^{[3]})^\top \, \operatorname{diag} f^{[2]\prime}(\mathbf{z}^{[2]}) \, (\mathbf{W}^{[2.2]})^\top \, "
        r"\operatorname{diag} f^{[2.1]\prime}(\mathbf{z}^{[2.1]}) \, (\mathbf{I}_5 \otimes (\mathbf{a}^{[1]})^\top)")
    assert render(nl.block([net.entry("b2.2")]), nl.nt) == (
        r"(\mathbf{W}^{[3]})^\top \, \operatorname{diag} f^{[2]\prime}(\mathbf{z}^{[2]}) \, \mathbf{I}_5")
    assert render(nl.block([net.entry("b2.2")]), nl.nt, False, 1) == (
        r"\mathbf{J}_{\mathbf{z}^{[2]}}\mathbf{z}^{[3]} \, \mathbf{J}_{\mathbf{b}^{[2.2]}}\mathbf{z}^{[2]}")


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("which", sorted(NETS))
def test_every_rendered_expression_evaluates_to_the_engine(which, preset):
    net = NETS[which](preset)
    x, y, p = point(net)
    nl = NetworkLatex(net, p, x, y)
    J = net.jacobian_theta(x, p).to_dense()
    cols = {e.name: J[:, e.slice] for e in net.entries}
    for g in nl.stage_groups():
        got = nl.block(g).evaluate()
        want = np.concatenate([cols[e.name] for e in g], axis=1)
        assert np.max(np.abs(got - want)) <= 1e-12 * max(1.0, np.max(np.abs(want)))
        for e in g:  # one parameter at a time, and the local block J_θ z^{[l]}
            assert np.max(np.abs(nl.block([e]).evaluate() - cols[e.name])) <= 1e-12 * max(1.0, np.max(np.abs(want)))
    assert np.max(np.abs(nl.jacobian_theta().evaluate() - J)) <= 1e-12 * max(1.0, np.max(np.abs(J)))
    for l in range(1, net.L + 1):
        Jl = net.local_jacobian(x, p, l)  # its blocks in θ order (the engine lists weights before biases)
        local = np.concatenate([b.to_dense() for e in net.entries if e.stage == l for b in (Jl.blocks or [Jl])
                                if b.input == e.space], axis=1)
        assert np.max(np.abs(nl.local_jacobian(l).evaluate() - local)) <= 1e-12 * max(1.0, np.max(np.abs(local)))
        if l > 1:
            ij = nl.input_jacobian(l)
            assert np.max(np.abs(ij.evaluate() - ij.op.to_dense())) <= 1e-12
    deltas = nl.delta(1).evaluate().ravel()
    g = net.gradient(x, y, p).vector
    grad = nl.gradient().evaluate().ravel()
    assert np.max(np.abs(grad - g)) <= 1e-10 * max(1.0, np.max(np.abs(g)))
    assert deltas.shape == (net.stages[0].layer.out_size,)


def test_gradient_display_names_block_parameters():
    net = res_mlp("damadi")
    x, y, p = point(net)
    tex = gradient_latex(net.gradient(x, y, p))
    assert r"\nabla_{\mathbf{W}^{[2.1]}} \ell" in tex and "W.1" not in tex
    assert r"\nabla_{W_{2.1}}" in gradient_latex(res_mlp("ganev").gradient(x, y, res_mlp("ganev").init_params(0)))
    assert "$$" in net.gradient(x, y, p)._repr_latex_() and "W.1" not in net.gradient(x, y, p)._repr_latex_()
    cnn = res_cnn("damadi")  # 4-D kernels: one row per output channel (this raised a ShapeError before)
    xc, yc, pc = point(cnn)
    assert r"\nabla_{\mathbf{K}^{[2.1]}} \ell" in gradient_latex(cnn.gradient(xc, yc, pc))


@pytest.mark.parametrize("preset", ["damadi", "ganev", "park"])
@pytest.mark.parametrize("which", sorted(NETS))
def test_derivation_document_covers_blocks_and_pool_first(which, preset):
    net = NETS[which](preset)
    x, y, p = point(net)
    tex = derivation_document(net, p, x, y, use_torch=False)
    if which == "pool_first":
        assert "parameter-free first layers make" in tex
    else:
        assert "is a residual block (He et al., 2016)" in tex and "Algorithm~1 applied inside the block" in tex
    assert "W.1" not in tex and "K.1" not in tex and tex.isascii()


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("which", ["res_cnn", "nested", "pool_first"])
def test_derivation_document_compiles(which, tmp_path):
    net = NETS[which]("damadi")
    x, y, p = point(net)
    f = tmp_path / "d.tex"
    f.write_text(derivation_document(net, p, x, y, use_torch=False))
    assert compile_pdf(f).stat().st_size > 1000


SPEC = {"name": "res-spec", "input": 4, "convention": "damadi", "loss": "cross_entropy", "data": {"batch": 2},
        "layers": [{"type": "dense", "out_features": 5}, {"type": "tanh"},
                   {"type": "residual", "body": [{"type": "dense", "out_features": 5}, {"type": "tanh"},
                                                 {"type": "dense", "out_features": 5}]},
                   {"type": "dense", "out_features": 3}, {"type": "softmax"}]}
POOL = {"name": "pool-first", "input": [1, 6, 6], "convention": "ganev", "loss": "cross_entropy", "data": {"batch": 2},
        "layers": [{"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"}, {"type": "dense", "out_features": 3},
                   {"type": "softmax"}]}


@pytest.mark.parametrize("spec", [SPEC, POOL])
def test_cli_latex_renders_blocks_and_pool_first(spec, tmp_path, capsys):
    f = tmp_path / "s.json"
    f.write_text(json.dumps(spec))
    args = ["latex", str(f), "-o", str(tmp_path / "d.tex")]
    if shutil.which("pdflatex") is not None:
        args.append("--pdf")
    assert main(args) == 0, capsys.readouterr().err
    assert (tmp_path / "d.tex").read_text().startswith(r"\documentclass")


class _OpaqueBlock(Residual):
    """A composite layer that does not state its LaTeX facts (as a future block type might not)."""

    renders_symbolically = False


def test_composites_without_latex_facts_are_still_refused():
    net = Network([Dense(3), _OpaqueBlock([Dense(3)])], "mse", 2, "damadi", name="opaque")
    with pytest.raises(UnsupportedInputError, match="residual blocks are not rendered symbolically yet"):
        net.require_renderable("latex")
    res_mlp("damadi").require_renderable("latex")  # residual blocks and pool-first networks pass
    pool_first("damadi").require_renderable("latex")
