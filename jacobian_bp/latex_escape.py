r"""Escaping of user-supplied text for LaTeX.

Every name that comes from a user (layer names, parameter names, spec strings) goes
through :func:`escape_latex` before it enters a document, so that no input can break
or inject into it: ``}`` ``{`` ``\`` ``%`` ``$`` ``#`` ``_`` ``^`` ``&`` ``~`` are
replaced by their text-mode forms and non-ASCII characters by ``?``-free
``\text{}``-safe escapes (``\char"XXXX``-free: they are written as ``\detokenize``
safe hex codes ``U+XXXX``) so the document compiles under plain ``pdflatex``.
"""
from __future__ import annotations

_MAP = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "^": r"\textasciicircum{}",
    "&": r"\&",
    "~": r"\textasciitilde{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    '"': r"\textquotedbl{}",
}


def escape_latex(text: str) -> str:
    """Return ``text`` safe for LaTeX text mode (and inside ``\\text{...}`` in math mode)."""
    if not isinstance(text, str):
        text = str(text)
    out = []
    for ch in text:
        if ch in _MAP:
            out.append(_MAP[ch])
        elif ord(ch) < 32:
            out.append(" ")
        elif ord(ch) > 126:
            out.append(f"[U+{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)
