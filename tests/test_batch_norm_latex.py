"""LaTeX facts of ``batch_norm`` (training mode) and the batch derivation document, which compiles with pdflatex."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from jacobian_bp.errors import UnsupportedInputError
from jacobian_bp.layers import layer_class
from jacobian_bp.render.batch_derivation import batch_derivation_document
from jacobian_bp.render.notation import get_notation
from jacobian_bp.spec import load_spec

BN = layer_class("batch_norm")


def _spec(preset="damadi", norm=None):
    return {"input": 3, "layers": [{"type": "dense", "out_features": 4}, norm or {"type": "batch_norm"}, {"type": "tanh"},
                                   {"type": "dense", "out_features": 2}, {"type": "softmax"}], "loss": "cross_entropy",
            "convention": preset, "data": {"seed": 0, "batch": 3}, "params": {"seed": 1}, "name": "bn_mlp"}


def test_latex_facts():
    layer = BN(eps=1e-3)
    layer.build((4,))
    fwd = layer.latex_forward(get_notation("damadi"), 2, r"\mathbf{a}^{[1]}_i", "in_out")
    assert r"\boldsymbol{\mu}_B" in fwd and r"\boldsymbol{\sigma}_B^2 + \epsilon" in fwd and r"\boldsymbol{\gamma}" in fwd
    assert r"\boldsymbol{\beta}" in fwd
    assert r"\frac{1}{N}\sum_{i=1}^{N}(\mathbf{a}_i-\boldsymbol{\mu}_B)^{\odot 2}" in layer.latex_statistics()  # biased: 1/N
    assert r"\delta_{ik}" in layer.latex_batch_jacobian_block() and r"\mathbf{E}_{ik}" in layer.latex_batch_jacobian()
    assert "couples" in layer.prose() and "batch" in layer.prose()
    assert layer.latex_describe() == r"batch norm (training: batch statistics) over $4$ features, $\epsilon = 0.001$"
    plain = BN(affine=False)
    plain.build((2,))
    assert r"\boldsymbol{\gamma}" not in plain.latex_forward(None, 1, "a", "out_in") and "no affine" in plain.latex_describe()
    assert layer.describe() == "batch_norm 4 eps=0.001"


@pytest.mark.parametrize("preset", ["damadi", "pytorch"])
def test_batch_derivation_document_compiles(preset, tmp_path):
    s = load_spec(_spec(preset))
    net = s.network
    tex = batch_derivation_document(net, s.params(), *s.data(), use_torch=False)
    assert tex.isascii()
    assert r"\mathbf{J}_{\mathbf{a}_k}\mathbf{o}_i" in tex and "the samples are coupled" in tex
    assert "Verdict: \\textbf{PASS}" in tex
    assert r"\in \mathbb{R}^{6\times 9}" in tex  # J_vec X vec Z[L]: (N n_L) x (N n_0)
    # the per-sample derivation refuses this network in one line
    with pytest.raises(UnsupportedInputError, match="couple the samples"):
        net.require_renderable("latex")
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    from jacobian_bp.render.derivation import compile_pdf

    path = tmp_path / "bn.tex"
    path.write_text(tex, encoding="ascii")
    pdf = compile_pdf(path)
    assert pdf.exists() and pdf.stat().st_size > 10_000


def test_batch_derivation_of_an_uncoupled_network_says_block_diagonal():
    s = load_spec(_spec("pytorch", {"type": "layer_norm"}))
    tex = batch_derivation_document(s.network, s.params(), *s.data(), use_torch=False)
    assert "vanish off the diagonal" in tex and "No layer couples the samples" in tex
    norms = s.network.batch_jacobian_input(s.data()[0], s.params()).block_norms()
    assert np.all(norms[~np.eye(3, dtype=bool)] == 0)
