"""Escaping of user-supplied names: nothing can break or inject into a document, and the
names are shown literally.  Oracles: pdflatex itself (the document compiles with
-halt-on-error) and pdftotext (the text of the PDF is the input)."""
from __future__ import annotations

import random
import re
import shutil
import subprocess
import unicodedata

import pytest
from hypothesis import given, settings, strategies as st

from jacobian_bp.render.derivation import compile_pdf
from jacobian_bp.backend.escape import escape_latex, escape_mathjax, escape_text
from conftest import needs_pdflatex

HOSTILE = [
    "}", "{", r"\input{/etc/passwd}", r"\end{document}", "100%", "$x^2$", "#1", "a_b", "x^y", "a & b", "~home",
    r"\\", r"\def\x{1}", "<tag>", "a|b", '"q"', "it's", "`g`", "--", "---", "!`", "?`", "}{}}}{", "%$#&_^~\\",
]
NON_ASCII = ["café", "Ünïcödé", "çà", "straße", "æøå", "Łódź", "αβγ", "ΩΣ", "µ", "∞ → ≤", "中文", "🙂"]


def _balanced(s: str) -> bool:
    depth, i = 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2  # an escaped character or the first letter of a command
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                return False
        i += 1
    return depth == 0


def _raw_specials(s: str) -> set[str]:
    """Special characters outside a command (after a backslash they are escapes); the degree sign's
    fixed replacement is a superscript in math mode by design."""
    s = s.replace(r"\ensuremath{^\circ}", "")
    out, i = set(), 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            while i < len(s) and s[i].isalpha() and s[i - 1].isalpha():
                i += 1
            continue
        if c in "%$#&_^~":
            out.add(c)
        i += 1
    return out


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=40))
def test_escape_text_structure(text):
    out = escape_text(text)
    assert out.isascii()
    assert "\n" not in out and "\r" not in out
    assert _balanced(out)
    assert not _raw_specials(out)
    boxed = escape_latex(text)
    assert boxed.startswith(r"\mbox{") and boxed.endswith("}") and _balanced(boxed)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=40))
def test_escape_mathjax_structure(text):
    out = escape_mathjax(text)
    assert out.startswith(r"\text{") and out.endswith("}")
    inner = out[len(r"\text{"):-1]
    assert re.fullmatch(r"[A-Za-z0-9 .,;:()\[\]+\-=/*@]*", inner)


def test_escape_examples():
    assert escape_text("a_b%}") == r"a{\ttfamily\char95}b\%\}"
    assert escape_text(r"\input") == r"\ensuremath{\backslash}input"
    assert escape_text("é") == r"\'{e}"
    assert escape_text("ï") == r'\"{\i{}}'
    assert escape_text("α") == r"\ensuremath{\alpha}"
    assert escape_text("中") == "[U+4E2D]"
    assert escape_text("a\nb\tc") == "a b c"
    assert escape_mathjax("a{b}") == r"\text{aU+007BbU+007D}"


def _normalize(s: str) -> str:
    s = unicodedata.normalize("NFKD", s).replace("ı", "i").replace("ł", "l").replace("Ł", "L")
    s = "".join(c for c in s if not unicodedata.combining(c))
    return re.sub(r"\s+", "", s)


def _pdftotext(pdf) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, check=True).stdout.decode()


def _doc(lines: list[str]) -> str:
    body = "\n\n".join(lines)
    return ("\\documentclass{article}\n\\usepackage{amsmath}\n"
            "\\IfFileExists{glyphtounicode.tex}{\\input{glyphtounicode}\\pdfgentounicode=1}{}\n"
            "\\begin{document}\n" + body + "\n\\end{document}\n")


@needs_pdflatex
def test_hostile_names_compile_and_show_literally(tmp_path):
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(32, 127)] + list("éüçßæøåαβΩ→≤中🙂\t\n")
    randoms = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(60)]
    names = HOSTILE + NON_ASCII + randoms
    lines = []
    for i, n in enumerate(names):
        # text mode, math mode (\mbox) and a sectioning command (a moving argument)
        lines.append(f"BEGIN{i}:" + escape_text(n) + f":END{i}")
        lines.append(f"$M{i}:" + escape_latex(n) + f":N{i}$")
    lines.append(r"\section{" + escape_text(HOSTILE[2] + " " + HOSTILE[4]) + "}")
    tex = tmp_path / "hostile.tex"
    tex.write_text(_doc(lines), encoding="ascii")
    pdf = compile_pdf(tex)
    text = _normalize(_pdftotext(pdf))
    for i, n in enumerate(names):
        # characters without a glyph in the base fonts are shown as their code point
        expected = _normalize("".join(" " if ord(c) < 32 else (escape_text(c) if escape_text(c).startswith("[U+") else c)
                                      for c in n))
        assert f"BEGIN{i}:{expected}:END{i}" in text, (n, expected)
        assert f"M{i}:{expected}:N{i}" in text, (n, expected)
    assert _normalize(r"\input{/etc/passwd} 100%") in text
