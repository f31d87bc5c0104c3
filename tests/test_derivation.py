"""Standalone derivation documents: they compile with pdflatex -halt-on-error for every
built-in example, convention preset and batch layout; hostile names are shown literally;
the CLI writes and compiles them; compilation failures are reported with the log."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import jacobian_bp as jb
from jacobian_bp.render import derivation
from jacobian_bp.cli import main
from jacobian_bp.render.derivation import LatexCompileError, PdflatexNotFoundError, compile_pdf, derivation_document
from jacobian_bp.render.latex import format_number
from jacobian_bp.render.notation import get_notation
from jacobian_bp.spec import generate_data

from test_latex_escape import _normalize
from conftest import needs_pdflatex, example




def pdf_text(pdf) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, check=True).stdout.decode()


def write_and_compile(tmp_path, tex, name="doc"):
    path = tmp_path / f"{name}.tex"
    path.write_text(tex, encoding="ascii")  # pure ASCII by construction
    return compile_pdf(path)


@needs_pdflatex
@pytest.mark.parametrize("name", ["damadi-1layer", "damadi-2layer", "damadi-3layer", "lenet-300-100", "small-cnn"])
def test_examples_compile(tmp_path, name):
    net, p, x, y = example(name)
    rep = jb.verify(net, x, y, p, use_torch=False)
    tex = derivation_document(net, p, x, y, report=rep)
    for section in ("The network", "Forward pass", "The Jacobians of each layer", "The chain for every parameter block",
                    "Closed-form deltas", "The gradient", "Verification"):
        assert r"\section{" + section + "}" in tex
    pdf = write_and_compile(tmp_path, tex, name)
    text = pdf_text(pdf)
    assert "Verdict: PASS" in text
    # the numbers shown for the gradient are the engine's, checked against finite differences by verify
    g = net.gradient(x, y, p)
    first = net.entries[0]
    assert format_number(float(np.asarray(g.params[first.name]).ravel()[0]), 4) in tex


@needs_pdflatex
@pytest.mark.parametrize("conv", ["ganev", "park", "mml", "pytorch"])
def test_conventions_and_batches_compile(tmp_path, conv):
    net = jb.Network([jb.Dense(4), jb.ReLU(), jb.Dense(3), jb.Softmax()], "cross_entropy", 3, convention=conv, name=f"net-{conv}")
    p = net.init_params(2)
    X, Y = generate_data(net, 3, 2)  # a batch of 3, laid out per the convention's batch axis
    tex = derivation_document(net, p, X, Y, use_torch=False)
    assert "N = 3" in tex
    nt = get_notation(conv)
    assert nt.z(1) in tex and nt.weight("W", 2) in tex
    pdf = write_and_compile(tmp_path, tex, conv)
    assert "Verdict: PASS" in pdf_text(pdf)


@needs_pdflatex
def test_hostile_names_are_shown_literally(tmp_path):
    title = r"}\input{/etc/passwd} 100% $x$ #1 a_b^c & d~e é α 中"
    net = jb.Network([jb.Dense(3), jb.Sigmoid()], "bce", 2, convention="damadi", name=r"\end{document}%_{}")
    p = net.init_params(0)
    x, y = generate_data(net, 1, 0)
    tex = derivation_document(net, p, x, y, title=title, use_torch=False)
    assert r"\input{/etc" not in tex and r"\end{document}%" not in tex
    text = _normalize(pdf_text(write_and_compile(tmp_path, tex, "hostile")))
    assert _normalize(r"}\input{/etc/passwd} 100% $x$ #1 a_b^c & d~e é α [U+4E2D]") in text
    assert r"\end{document}%_{}" in text


@needs_pdflatex
def test_cli_latex_end_to_end(tmp_path, capsys):
    out = tmp_path / "two.tex"
    assert main(["latex", "damadi-2layer", "-o", str(out), "--pdf"]) == 0
    assert out.exists() and out.with_suffix(".pdf").exists()
    printed = capsys.readouterr().out
    assert str(out) in printed and str(out.with_suffix(".pdf")) in printed
    text = pdf_text(out.with_suffix(".pdf"))
    assert "Damadi" in text and "Verdict: PASS" in text
    # a batch and another seed through the same command
    out2 = tmp_path / "batch.tex"
    assert main(["latex", "damadi-1layer", "-o", str(out2), "--batch", "4", "--seed", "3"]) == 0
    assert "N = 4" in out2.read_text()


def test_cli_reports_a_missing_pdflatex(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(derivation.shutil, "which", lambda name: None)
    out = tmp_path / "one.tex"
    assert main(["latex", "damadi-1layer", "-o", str(out), "--pdf"]) == 2
    assert out.exists()  # the .tex is written before compiling
    assert "pdflatex is not installed" in capsys.readouterr().err
    with pytest.raises(PdflatexNotFoundError):
        compile_pdf(out)


@needs_pdflatex
def test_compile_errors_carry_the_log(tmp_path):
    bad = tmp_path / "bad.tex"
    bad.write_text("\\documentclass{article}\\begin{document}\\undefinedmacro\\end{document}\n")
    with pytest.raises(LatexCompileError, match="Undefined control sequence"):
        compile_pdf(bad)
    with pytest.raises(FileNotFoundError):
        compile_pdf(tmp_path / "missing.tex")
    with pytest.raises(ValueError):
        compile_pdf(bad, timeout=0)


def test_bad_arguments():
    net, p, x, y = example("damadi-1layer")
    with pytest.raises(TypeError):
        derivation_document("not a network", p, x, y)
    with pytest.raises(TypeError):
        derivation_document(net, p, x, y, title=3)
    with pytest.raises(jb.ShapeError):
        derivation_document(net, p, np.ones(5), y)
