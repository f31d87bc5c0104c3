r"""Hardening against LaTeX injection (issue #11, item 3).

Every user-settable string that can reach a generated LaTeX document -- the network name
(``spec.name``), the convention name and source, the spec description, the derivation's
title, the output file name, notation symbols, Jacobian symbols and space names, errata
texts -- is either escaped by :func:`jacobian_bp.backend.escape.escape_text` (text mode) or,
when it is meant to be math, validated by :func:`jacobian_bp.backend.escape.check_math`.

Oracles: a TeX tokenizer written here (which control words the generated source contains),
pdflatex itself (the document compiles; ``\write18`` creates no marker file) and pdftotext
(the text of the PDF is the user's string, shown literally).
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jacobian_bp as jb
from jacobian_bp.cli import main
from jacobian_bp.render.derivation import LatexCompileError, compile_pdf, derivation_document
from jacobian_bp.errors import SpecError
from jacobian_bp.engine.jacobian import Jacobian, Space
from jacobian_bp.render.latex import jacobian_equation_latex, product_latex, verification_table_latex
from jacobian_bp.backend.escape import MATH_COMMANDS, check_math, escape_latex, escape_text, is_safe_math
from jacobian_bp.render.notation import NOTATIONS, Notation
from jacobian_bp.backend.operators import Dense as DenseOp
from jacobian_bp.render.paper_equations import damadi_algorithm1, damadi_displayed_equations, ganev_prop31
from jacobian_bp.spec import EXAMPLES, load_spec

from conftest import needs_pdflatex
from test_latex_escape import _normalize

PAYLOADS = [r"\input{/etc/passwd}", r"\write18{touch marker}", r"}\end{document}", "$", "%", "#", "&", "_", "^",
            "~", "\\", "{", "}", "line\nbreak", "Ünïcödé αβ 中 🙂", r"\def\x{1}", r"\catcode`\@=11", "^^5cinput"]
LEFT, RIGHT = "QXQ", "ZXZ"  # fences that occur nowhere else in a document


def _commands(tex: str) -> list[tuple[str, str]]:
    """Control words of a TeX source with the 40 characters after each (a tokenizer: ``\\\\`` and
    ``\\%`` are control symbols, ``%`` starts a comment)."""
    out, i, n = [], 0, len(tex)
    while i < n:
        c = tex[i]
        if c == "%":
            j = tex.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if c == "\\" and i + 1 < n:
            j = i + 1
            if tex[j].isalpha():
                while j < n and tex[j].isalpha():
                    j += 1
                out.append((tex[i + 1:j], tex[j:j + 40]))
                i = j
                continue
            i = j + 1
            continue
        i += 1
    return out


def _assert_no_injection(tex: str, *hostile: str) -> None:
    """The generated source is ASCII, every occurrence of the fenced hostile strings is an escaped
    form, and the only file/shell/definition commands are the document's own."""
    assert tex.isascii()
    assert all(escape_text(h) in tex for h in hostile), "a user string does not appear at all"
    assert tex.count(LEFT) == sum(tex.count(escape_text(h)) for h in hostile), "an occurrence of a user string is not escaped"
    cmds = _commands(tex)
    names = [c for c, _ in cmds]
    for bad in ("write", "immediate", "def", "catcode", "csname", "openout", "openin", "read", "newcommand",
                "renewcommand", "let", "special", "include"):
        assert bad not in names, bad
    assert [after[:len("{glyphtounicode}")] for c, after in cmds if c == "input"] in ([], ["{glyphtounicode}"])
    ends = [after for c, after in cmds if c == "end" and after.startswith("{document}")]
    assert len(ends) <= 1 and tex.rstrip().endswith(r"\end{document}") == bool(ends)
    assert r"\input{/etc/passwd}" not in tex and "write18" not in tex.replace(escape_text("write18"), "")


def _fenced(payload: str) -> str:
    return LEFT + payload + RIGHT


def _pdf_text(pdf) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, check=True).stdout.decode()


def _shown(s: str) -> str:
    """What the PDF shows for ``s``: control characters as spaces, glyphs outside the base fonts as code
    points; hyphens dropped (pdftotext joins a line broken at a hyphen without it)."""
    return _normalize("".join(" " if ord(c) < 32 else (escape_text(c) if escape_text(c).startswith("[U+") else c)
                              for c in s)).replace("-", "")


def _text_of(pdf) -> str:
    return _normalize(_pdf_text(pdf)).replace("-", "")


def _spec(name="net", conv_name="damadi", source="", description="", preset="damadi") -> dict:
    obj = copy.deepcopy(EXAMPLES["damadi-2layer"])
    obj["name"] = name
    obj["description"] = description
    obj["convention"] = {"preset": preset, "name": conv_name, "source": source}
    return obj


# =========================================================================== text mode: every field, every payload
@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
@pytest.mark.parametrize("field", ["network name", "convention name", "title"])
def test_derivation_document_escapes_every_user_string(field, payload):
    hostile = _fenced(payload)
    kw = {"network name": {"name": hostile}, "convention name": {"conv_name": hostile}, "title": {}}[field]
    sp = load_spec(_spec(**kw))
    net = sp.network
    x, y = sp.data()
    p = net.init_params(0)
    rep = jb.verify(net, x, y, p, use_torch=False, fd_max_coords=4)
    tex = derivation_document(net, p, x, y, title=hostile if field == "title" else None, report=rep)
    _assert_no_injection(tex, hostile)


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_spec_description_and_convention_source_never_reach_latex(payload):
    hostile = _fenced(payload)
    sp = load_spec(_spec(source=hostile, description=hostile))
    x, y = sp.data()
    p = sp.network.init_params(0)
    rep = jb.verify(sp.network, x, y, p, use_torch=False, fd_max_coords=4)
    tex = derivation_document(sp.network, p, x, y, report=rep)
    assert LEFT not in tex and tex.isascii()


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
@pytest.mark.parametrize("preset", ["damadi", "pytorch"])
def test_paper_equations_escape_the_convention_name(payload, preset):
    """The convention name was printed raw by damadi_algorithm1 (intro) and the convention note."""
    hostile = _fenced(payload)
    net = load_spec(_spec(conv_name=hostile, preset=preset)).network
    for eqs in (damadi_algorithm1(net), damadi_displayed_equations(net)):
        tex = eqs.to_latex()
        assert tex.isascii() and r"\input{/etc" not in tex
        assert tex.count(LEFT) == tex.count(escape_text(hostile))
    alg = damadi_algorithm1(net).to_latex()
    assert escape_text(hostile) in alg  # the intro names the convention
    shown = damadi_displayed_equations(net).to_latex()
    # the "rendered in the conventions of the network" note depends on the knobs, not on the chosen name
    assert (escape_text(hostile) in shown) == (preset != "damadi")


def test_convention_named_damadi_with_other_knobs_gets_the_note():
    """Naming a convention "damadi" does not make it Damadi's (the note used to compare names)."""
    obj = _spec(conv_name="damadi", preset="pytorch")
    net = load_spec(obj).network
    eq = damadi_displayed_equations(net)
    assert any("Rendered in the conventions of the network (damadi)" in n for e in eq for n in e.notes)
    net2 = load_spec(_spec(conv_name="my own name", preset="damadi")).network
    assert not any("Rendered in the conventions" in n for e in damadi_displayed_equations(net2) for n in e.notes)


def test_ganev_prop31_has_no_user_strings():
    net = load_spec(_spec(name=_fenced(PAYLOADS[0]), conv_name=_fenced(PAYLOADS[1]))).network
    tex = ganev_prop31(net).to_latex()
    assert LEFT not in tex and tex.isascii()


# =========================================================================== math mode: whitelist
MATH_FIELDS = ["vector", "matrix", "transpose", "activation", "activation_jacobian", "loss", "delta", "theta",
               "layer_letter"]


@pytest.mark.parametrize("payload", [p for p in PAYLOADS if p not in ("_", "^", "{}")], ids=lambda p: repr(p)[:20])
@pytest.mark.parametrize("field", MATH_FIELDS)
def test_custom_notation_symbols_are_validated(field, payload):
    base = NOTATIONS["damadi"]
    value = (r"\mathbf{%s}" + payload) if field in ("vector", "matrix") else payload
    if payload in ("~",):  # a tie is harmless in math mode
        replace(base, **{field: value})
        return
    with pytest.raises(SpecError, match=field):
        replace(base, **{field: value})


def test_notation_rule_fields_and_format_strings():
    base = NOTATIONS["damadi"]
    for field, bad in (("index", "sup"), ("jacobian", "D"), ("batch_gradient", r"\input{x}"), ("plain_inputs", "yes"),
                       ("vector", r"\mathbf{x}"), ("matrix", r"\mathbf{%s}%d"), ("name", ""), ("source", 3),
                       ("theta", ""), ("loss", None)):
        with pytest.raises(SpecError, match=field):
            replace(base, **{field: bad})
    # every preset and safe custom symbols are accepted
    for nt in NOTATIONS.values():
        assert replace(nt) == nt
    custom = replace(base, vector=r"\vec{%s}", activation=r"\varphi", loss=r"\mathcal{E}", theta=r"\boldsymbol{w}",
                     transpose="T", delta=r"\boldsymbol{\epsilon}")
    assert custom.z(2) == r"\vec{z}^{[2]}"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30))
def test_escape_latex_output_is_safe_math(text):
    """Space names (escaped by escape_latex) pass the math whitelist, whatever the name."""
    assert is_safe_math(escape_latex(text))
    assert check_math(escape_latex(text), "x") == escape_latex(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("\\{}%#$&^_~ ax1\n'é") + ["input", "write", "mathbf", "end", "alpha"]),
                max_size=16).map("".join))
def test_whitelist_accepts_only_whitelisted_commands(s):
    """Independent reading of the policy: printable ASCII, none of %#$&, no ^^, balanced braces that never go
    negative, control words from the whitelist, control symbols from the small set."""
    def oracle(t):
        if any(not (32 <= ord(c) <= 126) for c in t) or "^^" in t:
            return False
        depth = 0
        for m in re.finditer(r"\\([A-Za-z]+|.?)|(.)", t, flags=re.S):
            if m.group(1) is not None:
                name = m.group(1)
                if name.isalpha():
                    if name not in MATH_COMMANDS:
                        return False
                elif name == "" or name not in ",;:! {}|%#&$_'\"`^~=.":
                    return False
            elif m.group(2) in "%#$&":
                return False
            elif m.group(2) in "{}":
                depth += 1 if m.group(2) == "{" else -1
                if depth < 0:
                    return False
        return depth == 0

    assert is_safe_math(s) == oracle(s)


def test_math_whitelist_refuses_file_shell_and_definition_commands():
    for bad in (r"\input{/etc/passwd}", r"\write18{touch m}", r"\immediate", r"\def\a{b}", r"\catcode", r"\csname x\endcsname",
                r"\end{document}", r"\begin{x}", r"\openout", r"\newcommand", r"\let\a\b", r"x^^5cinput", r"a\\b",
                r"\(", r"\]", "}{", "{", "a%b", "$x$", "a#1", "a&b", "x\ny", "é", "\\"):
        assert not is_safe_math(bad), bad
        with pytest.raises(SpecError, match="unsafe LaTeX math string|expected a LaTeX math string"):
            check_math(bad, "field")
    with pytest.raises(SpecError, match="expected a LaTeX math string"):
        check_math(3, "field")
    for ok in (r"\mathbf{W}^{[1]}", r"\operatorname{diag} f^{[l]\prime}(\mathbf{z}^{[l]})", r"\frac{\partial y}{\partial x}",
               r"\boldsymbol{\theta}", r"\mathrm{Jac}_\ell", r"\hat{\mathbf{y}}", r"\nabla_{\mathbf{z}} \ell"):
        assert is_safe_math(ok), ok


# =========================================================================== notebook displays
def _space_jacobian(out_name="out", in_name="in", symbol=None):
    return Jacobian(DenseOp(np.eye(2)), Space(out_name, (2,)), Space(in_name, (2,)), symbol=symbol)


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_jacobian_display_escapes_space_names(payload):
    J = _space_jacobian(_fenced(payload), _fenced(payload))
    tex = J._repr_latex_()
    assert tex.isascii() and r"\input{/etc" not in tex
    assert tex.count(LEFT) == tex.count(escape_text(_fenced(payload))) >= 1
    assert is_safe_math(J.symbol)
    assert product_latex([J]).count(LEFT) == product_latex([J]).count(escape_text(_fenced(payload)))


@pytest.mark.parametrize("payload", [r"\input{/etc/passwd}", r"\write18{touch marker}", r"}\end{document}", "$", "%",
                                     "#", "&", "{", "line\nbreak", "中"])
def test_jacobian_display_refuses_an_unsafe_symbol(payload):
    J = _space_jacobian(symbol=r"\mathbf{J}" + payload)
    with pytest.raises(SpecError, match="symbol of the Jacobian"):
        jacobian_equation_latex(J)
    with pytest.raises(SpecError, match="symbol of the Jacobian"):
        product_latex([J])
    J2 = _space_jacobian()
    J2.notation = r"\mathbf{A}" + payload
    with pytest.raises(SpecError, match="Jacobian.notation"):
        jacobian_equation_latex(J2)


def test_gradient_and_report_displays_with_hostile_names():
    hostile = _fenced(PAYLOADS[0] + PAYLOADS[2] + "%$#")
    sp = load_spec(_spec(name=hostile, conv_name=hostile))
    net = sp.network
    x, y = sp.data()
    p = net.init_params(0)
    g = net.gradient(x, y, p)
    assert LEFT not in g._repr_latex_() and g._repr_latex_().isascii()
    rep = jb.verify(net, x, y, p, use_torch=False, fd_max_coords=4)
    math = verification_table_latex(rep, "math")
    assert r"\text{verdict: PASS}" in math and "\t" not in math
    assert r"\text{all (directions)}" in math  # was a TAB character followed by "ext{...}"
    J = net.jacobian_theta(x, p)
    assert LEFT not in J._repr_latex_()


def test_generic_activation_name_must_be_an_identifier():
    """The generic activation's name becomes a SymPy function (printed by sympy.latex): it is not a
    spec layer type, and through the Python API it must be an identifier (no backslash, brace, %)."""
    for bad in (r"\input{/etc/passwd}", "f}", "a b", "f%", "", "$f"):
        with pytest.raises(SpecError, match="generic activation"):
            jb.GenericActivation(bad)
    obj = {"input": 2, "layers": [{"type": "dense", "out_features": 2}, {"type": "generic", "name": "f"}], "loss": "mse"}
    with pytest.raises(SpecError, match="unknown layer type 'generic'"):
        load_spec(obj)


# =========================================================================== compilation
@needs_pdflatex
def test_cli_latex_with_hostile_spec_compiles_and_runs_nothing(tmp_path, monkeypatch, capsys):
    """End to end: ``jacobian-bp latex SPEC -o FILE --pdf`` with every payload in the network and
    convention names, and an output file name full of special characters."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    payloads = [p.replace("touch marker", f"touch {marker}") for p in PAYLOADS]
    name = _fenced(" ".join(payloads))
    conv = _fenced(" ".join(reversed(payloads)))
    spec_file = tmp_path / "hostile.json"
    spec_file.write_text(json.dumps(_spec(name=name, conv_name=conv, description=name, source=conv)), encoding="utf-8")
    out = tmp_path / "out $%&#{}~^_ x.tex"
    assert main(["latex", str(spec_file), "-o", str(out), "--pdf"]) == 0
    tex = out.read_text(encoding="utf-8")
    _assert_no_injection(tex, name, conv)
    pdf = out.with_suffix(".pdf")
    assert pdf.is_file() and not marker.exists()
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file of the atomic write was left behind"
    text = _text_of(pdf)
    assert _shown(name) in text and _shown(conv) in text


@needs_pdflatex
def test_paper_equations_with_hostile_convention_compile(tmp_path):
    marker = tmp_path / "marker"
    hostile = _fenced(" ".join(p.replace("touch marker", f"touch {marker}") for p in PAYLOADS))
    net = load_spec(_spec(conv_name=hostile, preset="pytorch")).network
    body = damadi_algorithm1(net).to_latex() + "\n\n" + damadi_displayed_equations(net).to_latex()
    doc = ("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n"
           "\\IfFileExists{glyphtounicode.tex}{\\input{glyphtounicode}\\pdfgentounicode=1}{}\n"
           "\\begin{document}\n" + body + "\n\\end{document}\n")
    _assert_no_injection(doc, hostile)
    tex = tmp_path / "paper.tex"
    tex.write_text(doc, encoding="ascii")
    pdf = compile_pdf(tex)
    assert not marker.exists()
    assert _shown(hostile) in _text_of(pdf)


@needs_pdflatex
def test_errata_with_hostile_entry_compiles_without_running_anything(tmp_path):
    from jacobian_bp.documents.catalogue import Entry
    from jacobian_bp.claims import Claim, Correction, Setting
    from jacobian_bp.documents.errata import build_errata

    marker = tmp_path / "marker"
    evil = _fenced(" ".join(p.replace("touch marker", f"touch {marker}") for p in PAYLOADS))
    stg = Setting("ganev", widths=((2, 2),), seeds=(0,))
    e = Entry("ganev.evil", "ganev", evil, "formula", evil,
              Claim(evil, lambda q, l: -q.delta[l], "grad_b", stg, corrections=(Correction(evil, lambda q, l: q.delta[l]),)),
              note=evil)
    doc = build_errata([e]).to_latex()
    assert doc.isascii() and r"\input{/etc" not in doc and "write18" not in doc.replace(escape_text("write18"), "")
    assert [c for c, _ in _commands(doc)].count("end") == [c for c, _ in _commands(doc)].count("begin")
    tex = tmp_path / "errata.tex"
    tex.write_text(doc, encoding="ascii")
    compile_pdf(tex)
    assert not marker.exists()


@needs_pdflatex
def test_compile_pdf_sandbox_even_for_raw_tex(tmp_path):
    """Defence in depth: a hand-written document with \\write18, \\openout outside the work
    directory and \\input of an absolute path neither runs a command, nor writes, nor reads."""
    m1, m2 = tmp_path / "marker1", tmp_path / "marker2.tex"
    shell = tmp_path / "shell.tex"
    shell.write_text("\\documentclass{article}\\begin{document}x\\immediate\\write18{touch " + str(m1) + "}\\end{document}\n")
    compile_pdf(shell)  # shell escape disabled: \write18 only writes to the log
    assert not m1.exists()
    write = tmp_path / "write.tex"
    write.write_text("\\documentclass{article}\\begin{document}x\\immediate\\openout15=" + str(m2)
                     + "\\immediate\\write15{x}\\immediate\\closeout15\\end{document}\n")
    with pytest.raises(LatexCompileError):
        compile_pdf(write)
    assert not m2.exists()
    read = tmp_path / "read.tex"
    read.write_text("\\documentclass{article}\\begin{document}\\input{/etc/passwd}\\end{document}\n")
    with pytest.raises(LatexCompileError):
        compile_pdf(read)
    assert not (tmp_path / "read.pdf").exists()


@needs_pdflatex
def test_compile_pdf_writes_atomically_and_keeps_old_pdf_on_failure(tmp_path):
    good = tmp_path / "doc.tex"
    good.write_text("\\documentclass{article}\\begin{document}first\\end{document}\n")
    pdf = compile_pdf(good)
    before = pdf.read_bytes()
    good.write_text("\\documentclass{article}\\begin{document}\\undefinedmacro\\end{document}\n")
    with pytest.raises(LatexCompileError):
        compile_pdf(good)
    assert pdf.read_bytes() == before  # the old PDF is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.pdf", "doc.tex"]  # no temporary file, no aux files


def test_compile_pdf_argument_errors(tmp_path):
    tex = tmp_path / "a.tex"
    tex.write_text("x")
    for bad in (0, -1, True, "10", float("nan")):
        with pytest.raises(SpecError, match="timeout"):
            compile_pdf(tex, timeout=bad)
