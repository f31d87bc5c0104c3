r"""Escaping of user-supplied text for LaTeX documents and notebook displays.

Every name that comes from a user (network names, document titles, convention
names, generic activation names, spec descriptions) goes through this module before it
enters LaTeX, so that no input can break or inject into a document and the name is
still *shown literally*.

Design (for ``pdflatex`` with its default OT1 encoding and Computer Modern fonts, the
only setup guaranteed by Debian's ``texlive-latex-base``):

* no raw special character survives: ``\ { } % $ # & _ ^ ~`` become commands that
  typeset the literal glyph, so ``\input{…}``, ``}``, ``%`` or ``$`` cannot open a
  group, a comment, math mode or a command;
* characters that OT1 Computer Modern prints as *other* glyphs (``<`` is ``¡``, ``>``
  is ``¿``, ``|`` is an em dash, ``"`` a closing quote) and the ligature builders
  ``- ' `` are taken from the typewriter font ``cmtt`` by character code
  (``\char34``), where the code points are the ASCII glyphs;
* non-ASCII characters are mapped explicitly -- accented Latin letters to accent
  commands (``é`` → ``\'{e}``, via Unicode NFD), ``ß æ ø ł …`` to their LaTeX
  commands, Greek letters and common math symbols to ``\ensuremath{\alpha}`` etc.;
  anything else (CJK, emoji, …), which pdflatex cannot typeset with the base fonts,
  is shown as its code point ``[U+4E2D]``.  No ``inputenc``/``\detokenize`` trick is
  needed, so the output is pure ASCII;
* control characters (newline, tab, NUL, …) become spaces, so no input can end a
  paragraph or a line of the file.

Functions
---------
:func:`escape_text`
    For text mode (titles, paragraphs, table cells).
:func:`escape_latex`
    The same wrapped in ``\mbox{…}``: safe in text *and* math mode (used for the
    default LaTeX of a :class:`~jacobian_bp.engine.jacobian.Space`).
:func:`escape_mathjax`
    For notebook displays rendered by MathJax (``\text{…}`` with a conservative
    ASCII subset; every other character shown as ``U+XXXX``).
:func:`check_math`
    For user strings that are *meant* to be LaTeX math (a custom
    :class:`~jacobian_bp.render.notation.Notation` symbol, a Jacobian's symbol).

Policy for math-mode strings
----------------------------
A math-mode symbol cannot be escaped (``\mathbf{W}`` must stay a command), so it is
*validated* against a whitelist instead, and rejected with a
:class:`~jacobian_bp.errors.SpecError` that names the field:

* only printable ASCII, no control character (so no line break, no blank line =
  ``\par``);
* none of ``% # $ &`` (comment, macro parameter, math shift, alignment tab) and no
  ``^^`` (TeX's ``^^5c`` input notation would produce a backslash);
* balanced braces, and never closing a group that the string did not open;
* every control word in :data:`MATH_COMMANDS` (fonts, accents, Greek letters, operators,
  delimiters, and the commands produced by :func:`escape_latex`) -- so ``\input``,
  ``\write18``, ``\def``, ``\catcode``, ``\csname``, ``\begin``/``\end`` … are refused;
* every control symbol (backslash and one non-letter) in ``\, \; \: \! \  \{ \} \|
  \% \# \& \$ \_`` or a text accent (``\' \" \` \^ \~ \= \.``); ``\\``, ``\(``,
  ``\)``, ``\[``, ``\]`` are refused.

Such a string can typeset glyphs only: it cannot read or write a file, run a command,
define or redefine anything, or leave its group or math mode.
"""
from __future__ import annotations

import unicodedata

from ..errors import SpecError

__all__ = ["escape_text", "escape_latex", "escape_mathjax", "check_math", "is_safe_math", "MATH_COMMANDS"]


def _tt(code: int) -> str:
    """The glyph at ``code`` of the typewriter font (ASCII layout in OT1 cmtt)."""
    return r"{\ttfamily\char" + str(code) + "}"


#: ASCII characters that need a replacement in text mode.
_ASCII = {
    "\\": r"\ensuremath{\backslash}",
    "{": r"\{",
    "}": r"\}",
    "%": r"\%",
    "$": _tt(36),   # \$ would load a TS1 (textcomp) bitmap font
    "#": r"\#",
    "&": r"\&",
    "_": _tt(95),   # a real glyph (\_ is a rule that text extraction loses)
    "^": _tt(94),
    "~": _tt(126),
    "<": _tt(60),
    ">": _tt(62),
    "|": _tt(124),
    '"': _tt(34),
    "'": _tt(13),   # cmtt 13 is the straight (upright) single quote
    "`": _tt(18),   # grave accent
    "-": "{-}",     # no -- / --- ligatures
    "!": "{!}",     # no !` ligature
    "?": "{?}",     # no ?` ligature
}

#: Combining accents (Unicode NFD) and the OT1-safe LaTeX accent command for each.
_ACCENTS = {
    "\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0304": "=",
    "\u0306": "u", "\u0307": ".", "\u0308": '"', "\u030a": "r", "\u030b": "H",
    "\u030c": "v", "\u0327": "c", "\u0323": "d", "\u0331": "b",
}

#: Non-ASCII characters with a direct LaTeX equivalent in the base fonts.
_SPECIAL = {
    "ß": r"\ss{}", "æ": r"\ae{}", "Æ": r"\AE{}", "œ": r"\oe{}", "Œ": r"\OE{}",
    "ø": r"\o{}", "Ø": r"\O{}", "ł": r"\l{}", "Ł": r"\L{}", "ı": r"\i{}", "ȷ": r"\j{}",
    "å": r"\aa{}", "Å": r"\AA{}", "¡": r"\textexclamdown{}", "¿": r"\textquestiondown{}",
    "§": r"\ensuremath{\S}", "¶": r"\ensuremath{\P}", "†": r"\ensuremath{\dagger}", "‡": r"\ensuremath{\ddagger}",
    "–": "--", "—": "---", "…": r"\ldots{}", "‘": "`", "’": "'", "“": "``", "”": "''",
    "°": r"\ensuremath{^\circ}", "±": r"\ensuremath{\pm}", "×": r"\ensuremath{\times}",
    "÷": r"\ensuremath{\div}", "·": r"\ensuremath{\cdot}", "µ": r"\ensuremath{\mu}",
    "¬": r"\ensuremath{\neg}", "→": r"\ensuremath{\rightarrow}", "←": r"\ensuremath{\leftarrow}",
    "↔": r"\ensuremath{\leftrightarrow}", "⇒": r"\ensuremath{\Rightarrow}", "≤": r"\ensuremath{\leq}",
    "≥": r"\ensuremath{\geq}", "≠": r"\ensuremath{\neq}", "≈": r"\ensuremath{\approx}",
    "∞": r"\ensuremath{\infty}", "∑": r"\ensuremath{\sum}", "∏": r"\ensuremath{\prod}",
    "∫": r"\ensuremath{\int}", "√": r"\ensuremath{\surd}", "∂": r"\ensuremath{\partial}",
    "∇": r"\ensuremath{\nabla}", "∈": r"\ensuremath{\in}", "⊗": r"\ensuremath{\otimes}",
    "⊕": r"\ensuremath{\oplus}", "∘": r"\ensuremath{\circ}", "⊤": r"\ensuremath{\top}",
    "ℓ": r"\ensuremath{\ell}", "∅": r"\ensuremath{\emptyset}", "−": r"\ensuremath{-}",
}
_GREEK = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "ζ": "zeta", "η": "eta",
    "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu", "ξ": "xi",
    "π": "pi", "ρ": "rho", "σ": "sigma", "ς": "varsigma", "τ": "tau", "υ": "upsilon", "φ": "phi",
    "χ": "chi", "ψ": "psi", "ω": "omega", "ϑ": "vartheta", "ϕ": "varphi", "ϵ": "varepsilon",
    "Γ": "Gamma", "Δ": "Delta", "Θ": "Theta", "Λ": "Lambda", "Ξ": "Xi", "Π": "Pi", "Σ": "Sigma",
    "Υ": "Upsilon", "Φ": "Phi", "Ψ": "Psi", "Ω": "Omega",
}
for _g, _name in _GREEK.items():
    _SPECIAL[_g] = r"\ensuremath{\%s}" % _name
# Greek capitals that look like Latin ones
for _g, _lat in zip("ΑΒΕΖΗΙΚΜΝΟΡΤΧ", "ABEZHIKMNOPTX"):
    _SPECIAL[_g] = _lat


def _code_point(ch: str) -> str:
    return f"[U+{ord(ch):04X}]"


def _escape_char(ch: str) -> str:
    o = ord(ch)
    if ch in _ASCII:
        return _ASCII[ch]
    if o < 32 or o == 127:
        return " "
    if o < 127:
        return ch
    if ch in _SPECIAL:
        return _SPECIAL[ch]
    decomposed = unicodedata.normalize("NFD", ch)
    base, marks = decomposed[0], decomposed[1:]
    if marks and ord(base) < 128 and base.isalpha() and all(m in _ACCENTS for m in marks):
        out = {"i": r"\i{}", "j": r"\j{}"}.get(base, base) if any(_ACCENTS[m] not in "cdb" for m in marks) else base
        for m in marks:
            out = "\\" + _ACCENTS[m] + "{" + out + "}"
        return out
    if unicodedata.category(ch).startswith("Z"):  # other space separators
        return " "
    return _code_point(ch)


def escape_text(text) -> str:
    r"""``text`` as literal LaTeX for *text mode* under pdflatex (pure ASCII output).

    Parameters
    ----------
    text : str
        Any user-supplied string (a non-string is converted with ``str``).

    Returns
    -------
    str
        LaTeX that typesets the characters of ``text`` literally; it contains no
        unbalanced brace, no ``%``, ``$``, ``#``, ``&``, ``_``, ``^``, ``~`` outside a
        command, and no line break.

    Examples
    --------
    >>> escape_text("a_b%}")
    'a{\\ttfamily\\char95}b\\%\\}'
    """
    if not isinstance(text, str):
        text = str(text)
    return "".join(_escape_char(ch) for ch in text)


def escape_latex(text) -> str:
    r"""``text`` as literal LaTeX that is safe in text mode *and* in math mode.

    The text-mode escape of :func:`escape_text` wrapped in ``\mbox{…}`` (an LR box
    works in both modes and keeps the text font and the spaces).
    """
    return r"\mbox{" + escape_text(text) + "}"


_MATHJAX_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:()[]+-=/*@")


def escape_mathjax(text) -> str:
    r"""``text`` as ``\text{…}`` for notebook displays (MathJax and LaTeX alike).

    Only letters, digits, spaces and ``.,;:()[]+-=/*@`` are kept; every other
    character is shown as its code point ``U+XXXX`` (MathJax does not expand text-mode
    commands, so no escape sequence would display literally in both renderers).
    """
    if not isinstance(text, str):
        text = str(text)
    out = "".join(ch if ch in _MATHJAX_SAFE else f"U+{ord(ch):04X}" for ch in text)
    return r"\text{" + out + "}"


# =========================================================================== math-mode strings
_GREEK_CMDS = (
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa varkappa lambda mu nu xi "
    "pi varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega "
    "Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega "
    "varGamma varDelta varTheta varLambda varXi varPi varSigma varUpsilon varPhi varPsi varOmega")
_MATH_CMDS = (
    # fonts and text
    "mathbf mathrm mathit mathsf mathtt mathcal mathbb mathfrak mathscr boldsymbol operatorname text textrm "
    "textbf textit textsf texttt textnormal mbox ensuremath ttfamily rmfamily bfseries itshape "
    "displaystyle textstyle scriptstyle scriptscriptstyle "
    # accents and decorations
    "hat widehat bar overline underline tilde widetilde vec dot ddot breve check acute grave mathring "
    "overbrace underbrace overrightarrow overleftarrow "
    # letters and symbols
    "ell hbar imath jmath wp Re Im aleph partial nabla infty emptyset varnothing top bot perp prime "
    "dagger ddagger star ast bullet circ cdot cdotp cdots ldots dots vdots ddots times otimes oplus odot ominus "
    "pm mp div setminus cap cup wedge vee land lor neg lnot forall exists in notin ni subset subseteq supset "
    "supseteq leq le geq ge neq ne approx equiv sim simeq cong propto ll gg mid parallel "
    "to rightarrow leftarrow leftrightarrow Rightarrow Leftarrow Leftrightarrow mapsto longrightarrow "
    "sum prod int oint coprod bigotimes bigoplus bigcup bigcap sqrt surd frac tfrac dfrac binom "
    "log ln exp sin cos tan sinh cosh tanh arcsin arccos arctan max min sup inf det dim ker lim arg deg "
    "diag "
    # delimiters and spacing
    "left right middle big Big bigg Bigg bigl bigr Bigl Bigr biggl biggr langle rangle lvert rvert lVert rVert "
    "vert Vert lbrace rbrace lbrack rbrack lfloor rfloor lceil rceil backslash quad qquad "
    # produced by escape_text / escape_latex
    "char i j ss ae AE oe OE o O l L aa AA S P textexclamdown textquestiondown u r H v c d b not")
#: Control words allowed in a user-supplied math-mode string (see "Policy for math-mode strings").
MATH_COMMANDS: frozenset[str] = frozenset((_GREEK_CMDS + " " + _MATH_CMDS).split())
#: Control symbols (backslash + one non-letter) allowed in a math-mode string.
_MATH_SYMBOLS = frozenset(",;:! {}|%#&$_'\"`^~=.")
_MATH_FORBIDDEN = set("%#$&")


def _math_problem(s: str) -> str:
    """Why ``s`` is not a safe math-mode string, or ``""``."""
    if "^^" in s:  # anywhere, also after a backslash: TeX reduces ^^5c before it reads a command name
        return "'^^' (TeX's character-code notation is not allowed)"
    depth, i, n = 0, 0, len(s)
    while i < n:
        c = s[i]
        o = ord(c)
        if o < 32 or o > 126:
            return f"character {c!r} (only printable ASCII is allowed)"
        if c in _MATH_FORBIDDEN:
            return f"character {c!r} (comment, parameter, math shift and alignment characters are not allowed)"
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                return "an unmatched '}'"
        elif c == "\\":
            if i + 1 >= n:
                return "a trailing backslash"
            j = i + 1
            if s[j].isalpha():
                while j < n and s[j].isascii() and s[j].isalpha():
                    j += 1
                name = s[i + 1:j]
                if name not in MATH_COMMANDS:
                    return f"the command \\{name} (not in the whitelist of math-mode commands)"
                i = j
                continue
            if s[j] not in _MATH_SYMBOLS:
                return f"the control symbol \\{s[j]}"
            i = j + 1
            continue
        i += 1
    if depth:
        return f"{depth} unclosed '{{'"
    return ""


def is_safe_math(text) -> bool:
    """Whether ``text`` passes the math-mode whitelist (see :func:`check_math`)."""
    return isinstance(text, str) and not _math_problem(text)


def check_math(text, where: str) -> str:
    r"""Validate a user-supplied *math-mode* LaTeX string and return it unchanged.

    Parameters
    ----------
    text : str
        A LaTeX fragment for math mode, e.g. ``r"\mathbf{W}"`` or ``r"\sigma"``.
    where : str
        The field it comes from, named in the error message.

    Returns
    -------
    str
        ``text`` itself.

    Raises
    ------
    SpecError
        When ``text`` is not a string or breaks the policy of this module (a command
        outside :data:`MATH_COMMANDS`, one of ``% # $ &``, ``^^``, unbalanced braces,
        a control or non-ASCII character).

    Examples
    --------
    >>> check_math(r"\mathbf{W}^{[1]}", "notation.matrix")
    '\\mathbf{W}^{[1]}'
    """
    if not isinstance(text, str):
        raise SpecError(f"{where}: expected a LaTeX math string, received {type(text).__name__} {text!r}")
    problem = _math_problem(text)
    if problem:
        raise SpecError(f"{where}: unsafe LaTeX math string {text!r}: {problem}; "
                        "use only whitelisted commands (jacobian_bp.backend.escape.MATH_COMMANDS)")
    return text
