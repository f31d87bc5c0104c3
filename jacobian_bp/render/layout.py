r"""Page layout of the derivation documents: a rough width of a math formula, and displays that break before they overflow.

pdflatex cannot break a display: a formula wider than the text (17.4 cm on A4 with 1.8 cm margins, about
:data:`TEXT_WIDTH` units of :func:`width`) runs off the page.  :func:`display` writes ``label = rhs_1 = rhs_2 …``
on one line when it fits and as an ``align*`` with one right-hand side per line otherwise; :func:`fits` is the test.
"""
from __future__ import annotations

import re

__all__ = ["width", "fits", "display", "TEXT_WIDTH"]

#: the text width of the derivation documents in :func:`width` units (calibrated on pdflatex's overfull boxes)
TEXT_WIDTH = 88.0

_FORMAT = {"mathbf", "boldsymbol", "operatorname", "mathrm", "text", "textstyle", "displaystyle", "left", "right",
           "middle", "big", "Big", "bigg", "Bigg", "mathbb", "hat", "tilde", "bar", "phantom", "limits", "nolimits", "mathit", "texttt", "scriptstyle"}
_SPACE = {"quad": 2.0, "qquad": 4.0, ",": 0.3, ";": 0.5, ":": 0.4, "!": 0.0, " ": 0.5}


def _group(s, i):
    """(content, end index) of the brace group starting at s[i] == '{' (or a single token)."""
    if i >= len(s):
        return "", i
    if s[i] != "{":
        if s[i] == "\\":
            m = re.match(r"\\([a-zA-Z]+|.)", s[i:])
            return m.group(0), i + len(m.group(0))
        return s[i], i + 1
    depth, j = 0, i
    while j < len(s):
        if s[j] == "\\":
            j += 2
            continue
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return s[i + 1:j], j + 1
        j += 1
    return s[i + 1:], len(s)


def width(tex: str) -> float:
    r"""A rough width of math-mode LaTeX in character units (one unit is about 5pt in a 10pt document).

    A fraction counts its wider part, an ``\underbrace`` its content, a sub- or superscript 0.7 of its own,
    an array or ``bmatrix`` its widest row; formatting commands (``\mathbf``, ``\left``) count nothing.
    An estimate, used only to choose a layout; pdflatex's log is the judge (the tests read it).
    """
    s, i, w = tex, 0, 0.0
    while i < len(s):
        c = s[i]
        if c == "\\":
            m = re.match(r"\\([a-zA-Z]+|.)", s[i:])
            name = m.group(1)
            i += len(m.group(0))
            if name in ("frac", "tfrac", "dfrac"):
                a, i = _group(s, i)
                b, i = _group(s, i)
                w += max(width(a), width(b)) * (0.75 if name == "tfrac" else 1.0) + 0.4
            elif name == "underbrace":
                a, i = _group(s, i)
                w += width(a)
            elif name == "begin":
                env, i = _group(s, i)
                if env in ("array",):
                    _, i = _group(s, i)
                end = s.find(r"\end{" + env + "}", i)
                body = s[i:end if end >= 0 else len(s)]
                i = (end + len(r"\end{" + env + "}")) if end >= 0 else len(s)
                rows = re.split(r"\\\\", body)
                if env in ("bmatrix", "pmatrix", "matrix") and len(rows) > 0 and "&" not in body:
                    w += max(width(r) for r in rows) + 1.5
                else:
                    w += max(sum(width(cell) + 1.2 for cell in r.split("&")) for r in rows) + 1.5
            elif name == "end":
                _, i = _group(s, i)
            elif name in _SPACE:
                w += _SPACE[name]
            elif name in _FORMAT:
                pass
            elif name in ("sqrt",):
                a, i = _group(s, i)
                w += width(a) + 1
            else:
                w += 1.3 if len(name) > 1 else 0.0  # a symbol (\partial, \otimes, \gamma, \cdots)
        elif c in "^_":
            a, i = _group(s, i + 1)
            w += 0.7 * width(a)
        elif c in "{} &\n":
            i += 1
        elif c in "=+-<>":
            w += 1.8
            i += 1
        else:
            w += 1.0
            i += 1
    return w


def fits(tex: str, limit: float = TEXT_WIDTH) -> bool:
    """Whether a formula (math mode) is estimated to fit on one line."""
    return width(tex) <= limit


def display(parts, tail: str = "", limit: float = TEXT_WIDTH) -> str:
    r"""``\[ parts[0] = parts[1] = … tail \]`` when it fits, else ``align*`` rows ``parts[0] &= parts[1] \\ &= parts[2] …``
    (``tail``, e.g. ``\in\mathbb R^{3\times 4}``, after the last), or the label alone on the first row when a row
    ``parts[0] = parts[k]`` would not fit either."""
    parts = [p for p in parts if p]
    one = " = ".join(parts) + tail
    if len(parts) < 2 or fits(one, limit):
        return r"\[" + one + r"\]"
    if all(fits(f"{parts[0]} = {p}{tail}", limit) for p in parts[1:]):
        rows = [f"{parts[0]} &= {parts[1]}"] + [f"&= {p}" for p in parts[2:]]
    else:  # the label alone on the first row, each right-hand side indented below it
        rows = [f"&{parts[0]}"] + [rf"&\qquad = {p}" for p in parts[1:]]
    rows[-1] += tail
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}"
