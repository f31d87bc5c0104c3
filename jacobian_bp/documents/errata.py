r"""The errata report of the four source documents.

:func:`build_errata` runs the checker (:func:`jacobian_bp.claims.check`) on every entry of
:mod:`jacobian_bp.documents.catalogue` -- the verdicts are computed, never stored -- and returns an
:class:`ErrataReport` that renders as plain text, Markdown or a standalone LaTeX document
(``pdflatex``-clean: every text taken from the documents goes through
:func:`jacobian_bp.backend.escape.escape_text`, the text-mode form of ``escape_latex`` that
lets table cells break lines, after a transliteration of the few symbols it cannot typeset).

Per document it counts the checked statements and how many hold, fail or are ill-typed,
and for every statement that does not hold it gives the verdict's reason, the smallest
counterexample, the diagnosis (which candidate corrections make it hold) and the
corrected formula, itself verified by the checker.

Command line: ``jacobian-bp errata [--markdown FILE] [--latex FILE]``.
"""
from __future__ import annotations

from ..backend.progress import progress

from dataclasses import dataclass, field
from datetime import date

from .catalogue import DOCUMENTS, Entry, catalogue, result
from ..claims import FAILS, HOLDS, ILL_TYPED, CheckResult
from ..backend.escape import escape_text

__all__ = ["ErrataItem", "ErrataReport", "build_errata", "to_ascii"]


@dataclass
class ErrataItem:
    """One catalogue entry and its computed result."""

    entry: Entry
    result: CheckResult

    @property
    def verdict(self) -> str:
        return self.result.verdict

    @property
    def verified_correction(self) -> str:
        """The first claim-specific correction that the checker found to hold, or ``""``."""
        for corr, verdict in self.result.corrections:
            if verdict == HOLDS:
                return corr.description
        return ""

    def diagnosis_text(self) -> str:
        """The diagnosis, without the stated corrections (shown in their own column)."""
        stated = {c.description for c, _ in self.result.corrections}
        return "; ".join(e.description if e.description not in stated and e.mistake.value == "stated correction"
                         else str(e) for e in self.result.diagnosis
                         if not (e.mistake.value == "stated correction" and e.description in stated))

    @property
    def is_artefact(self) -> bool:
        """A *transcription artefact*, not an error of the author: the entry does not hold as printed, its
        stated correction (one edit away, :attr:`Entry.artefact`) holds, and every later use of the intended
        formula in the source (:attr:`Artefact.consistent_with`) holds -- all computed by the checker."""
        art = self.entry.artefact
        if art is None or self.verdict == HOLDS or not self.verified_correction:
            return False
        from .catalogue import entry as _entry

        return all(result(_entry(i)).verdict == HOLDS for i in art.consistent_with)

    def label(self) -> str:
        """``"transcription artefact"`` or the verdict."""
        return "transcription artefact" if self.is_artefact else self.verdict

    def one_line(self) -> str:
        """``id (location): printed — verdict: reason; fix``, for issue notes."""
        fix = self.verified_correction or self.diagnosis_text()
        r = self.result.reason.split(" (widths")[0].split(" (case")[0]
        return f"[{self.entry.document}] {self.entry.location}: {self.entry.printed} — {self.verdict}: {r}" + \
            (f" → {fix}" if fix else "")


_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve")


def _title() -> str:
    """``"Errata of the four source documents"``: the number of registered documents, in words up to twelve."""
    n = len(DOCUMENTS)
    return f"Errata of the {_NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else n} source document{'' if n == 1 else 's'}"


@dataclass
class ErrataReport:
    """Results of the whole catalogue; see the module docstring."""

    items: list[ErrataItem] = field(default_factory=list)

    # ------------------------------------------------------------------ numbers
    def counts(self) -> dict[str, dict[str, int]]:
        """Per document (and ``"total"``): checked, holds, fails, ill-typed."""
        out: dict[str, dict[str, int]] = {}
        for key in list(DOCUMENTS) + ["total"]:
            its = [i for i in self.items if key == "total" or i.entry.document == key]
            out[key] = {"checked": len(its), HOLDS: sum(i.verdict == HOLDS for i in its),
                        FAILS: sum(i.verdict == FAILS for i in its), ILL_TYPED: sum(i.verdict == ILL_TYPED for i in its)}
        return out

    def not_holding(self, document: str | None = None) -> list[ErrataItem]:
        return [i for i in self.items if i.verdict != HOLDS and (document is None or i.entry.document == document)]

    def errors(self, document: str | None = None) -> list[ErrataItem]:
        """The statements that do not hold and are not transcription artefacts: the errata proper."""
        return [i for i in self.not_holding(document) if not i.is_artefact]

    def artefacts(self, document: str | None = None) -> list[ErrataItem]:
        """The statements that do not hold as transcribed but are transcription artefacts
        (:attr:`ErrataItem.is_artefact`), reported apart from the author's errors."""
        return [i for i in self.not_holding(document) if i.is_artefact]

    # ------------------------------------------------------------------ text
    def to_text(self) -> str:
        c = self.counts()
        lines = [f"{_title()} (verdicts computed by jacobian_bp.claims.check)", ""]
        lines.append(f"{'document':<22}{'checked':>8}{'holds':>8}{'fails':>8}{'ill-typed':>11}")
        for key in list(DOCUMENTS) + ["total"]:
            name = DOCUMENTS[key].short if key in DOCUMENTS else "total"
            k = c[key]
            lines.append(f"{name:<22}{k['checked']:>8}{k[HOLDS]:>8}{k[FAILS]:>8}{k[ILL_TYPED]:>11}")
        arts = self.artefacts()
        if arts:
            lines.append(f"({len(arts)} of the statements that do not hold as transcribed are transcription artefacts, "
                         "listed apart: one edit from a formula the source uses consistently later)")
        for key, doc in DOCUMENTS.items():
            bad = self.errors(key)
            lines += ["", f"== {doc.title} ({len(bad)} not holding"
                          f"{f', {len(self.artefacts(key))} transcription artefact(s)' if self.artefacts(key) else ''})"]
            for it in bad + self.artefacts(key):
                if it.is_artefact:
                    lines.append(f"- [transcription artefact, not the author's error] {it.entry.location}: "
                                 f"{it.entry.printed}")
                    lines.append(f"    one edit: {it.entry.artefact.edit}; the source's later use holds: "
                                 f"{', '.join(it.entry.artefact.consistent_with)}")
                else:
                    lines.append(f"- {it.entry.location}: {it.entry.printed}")
                lines.append(f"    verdict: {it.verdict} — {it.result.reason}")
                d = it.diagnosis_text()
                if d:
                    lines.append(f"    diagnosis: {d}")
                if it.verified_correction:
                    lines.append(f"    corrected (verified): {it.verified_correction}")
                if it.entry.note:
                    lines.append(f"    note: {it.entry.note}")
        return "\n".join(lines) + "\n"

    def to_markdown(self) -> str:
        c = self.counts()
        md = [f"# {_title()}", "",
              "Every verdict below was computed by `jacobian_bp.claims.check` from the encoding of the statement "
              "in `jacobian_bp.documents.catalogue`, under the document's own conventions; the corrected formulas were "
              "verified the same way. Reproduce with `jacobian-bp errata --markdown errata.md`.", "",
              "| document | checked | holds | fails | ill-typed |", "|---|---:|---:|---:|---:|"]
        for key in list(DOCUMENTS) + ["total"]:
            name = DOCUMENTS[key].short if key in DOCUMENTS else "**total**"
            k = c[key]
            md.append(f"| {name} | {k['checked']} | {k[HOLDS]} | {k[FAILS]} | {k[ILL_TYPED]} |")
        for key, doc in DOCUMENTS.items():
            md += ["", f"## {_md(doc.title)}", "",
                   "| where | printed | verdict | reason | diagnosis | corrected (verified) |",
                   "|---|---|---|---|---|---|"]
            for it in self.errors(key):
                md.append("| " + " | ".join(_md(x) for x in (
                    it.entry.location, it.entry.printed, it.verdict, it.result.reason, it.diagnosis_text(),
                    it.verified_correction)) + " |")
            if self.artefacts(key):
                md += ["", "Transcription artefacts (not errors of the author: one edit from a formula the source "
                           "uses consistently later; both verified by the checker):", "",
                       "| where | as transcribed | verdict as transcribed | one edit | later use (holds) |",
                       "|---|---|---|---|---|"]
                for it in self.artefacts(key):
                    md.append("| " + " | ".join(_md(x) for x in (
                        it.entry.location, it.entry.printed, it.verdict, it.entry.artefact.edit,
                        ", ".join(it.entry.artefact.consistent_with))) + " |")
            ok = [i for i in self.items if i.entry.document == key and i.verdict == HOLDS]
            md += ["", f"<details><summary>{len(ok)} statements that hold</summary>", ""]
            md += [f"- {_md(i.entry.location)}: `{_md(i.entry.printed, code=True)}` ({i.result.method})" for i in ok]
            md += ["", "</details>"]
        return "\n".join(md) + "\n"

    def to_latex(self) -> str:
        """A standalone document (``article``, ``longtable``) that compiles with ``pdflatex``."""
        c = self.counts()
        out = [r"\documentclass[10pt]{article}", r"\usepackage[margin=1.8cm,landscape]{geometry}",
               r"\usepackage{longtable}", r"\usepackage{array}",
               r"\setlength{\LTpre}{4pt}\setlength{\LTpost}{4pt}",
               rf"\title{{{_title()}}}",
               r"\author{jacobian\_bp claim checker}", rf"\date{{{date.today().isoformat()}}}",
               r"\begin{document}", r"\maketitle",
               _tex("Every verdict was computed by jacobian_bp.claims.check from the encoding of the "
                            "statement in jacobian_bp.documents.catalogue, under the document's own conventions; the "
                            "corrected formulas were verified the same way. Math symbols are transliterated "
                            "(^T transpose, (x) Kronecker product, grad gradient)."),
               "", r"\begin{center}\begin{tabular}{lrrrr}", r"\hline",
               r"document & checked & holds & fails & ill-typed \\ \hline"]
        for key in list(DOCUMENTS) + ["total"]:
            name = DOCUMENTS[key].short if key in DOCUMENTS else "total"
            k = c[key]
            out.append(f"{_tex(name)} & {k['checked']} & {k[HOLDS]} & {k[FAILS]} & {k[ILL_TYPED]} \\\\")
        out += [r"\hline", r"\end{tabular}\end{center}"]
        for key, doc in DOCUMENTS.items():
            bad = self.not_holding(key)
            out += [rf"\section*{{{_tex(doc.title)}}}",
                    rf"{c[key]['checked']} statements checked, {c[key][HOLDS]} hold, {c[key][FAILS]} fail, "
                    rf"{c[key][ILL_TYPED]} are ill-typed.", ""]
            if not bad:
                continue
            out += [r"\begin{longtable}{>{\raggedright}p{3.2cm}>{\raggedright}p{5.6cm}p{1.4cm}"
                    r">{\raggedright}p{6.2cm}>{\raggedright\arraybackslash}p{6.4cm}}",
                    r"\hline where & printed & verdict & reason and diagnosis & corrected (verified) \\ \hline \endhead"]
            for it in bad:
                why = it.result.reason + (("; diagnosis: " + it.diagnosis_text()) if it.diagnosis_text() else "")
                if it.is_artefact:
                    why = (f"transcription artefact, not the author's error (one edit: {it.entry.artefact.edit}; "
                           f"later use holds: {', '.join(it.entry.artefact.consistent_with)}); as transcribed: " + why)
                out.append(" & ".join([_tex(it.entry.location), _tex(it.entry.printed),
                                       _tex("artefact" if it.is_artefact else it.verdict), _tex(why),
                                       _tex(it.verified_correction)]) + r" \\ \hline")
            out.append(r"\end{longtable}")
        out.append(r"\end{document}")
        return "\n".join(out) + "\n"


# =========================================================================== rendering helpers
_ASCII = {
    "ᵀ": "^T", "⊗": " (x) ", "∇": "grad ", "ℓ": "l", "θ": "theta", "σ": "sigma", "−": "-", "…": "...", "⋯": "...",
    "ŷ": "yhat", "Ŷ": "Yhat", "δ": "delta", "Δ": "Delta", "∈": " in ", "→": "->", "←": "<-", "≡": "==", "Σ": "sum",
    "ε": "eps", "≥": ">=", "≤": "<=", "≠": "!=", "·": "*", "⊙": " o ", "∗": "*", "∘": " o ", "×": "x", "²": "^2",
    "³": "^3", "⁴": "^4", "⁵": "^5", "⁸": "^8", "¹": "^1", "⁰": "^0", "ⁿ": "^n", "ᵢ": "_i", "√": "sqrt", "⋆": "*",
    "𝟙": "1", "𝒳": "X", "φ": "phi", "Φ": "Phi", "α": "alpha", "β": "beta", "∂": "d", "∑": "sum", "◁": "<",
    "⋱": "...", "ξ": "xi", "₀": "_0", "₁": "_1", "₂": "_2", "—": "--", "–": "-", "’": "'", "‖": "||", "⁻": "^-",
    "ₗ": "_l", "ᵏ": "^k", "•": "*", "𝐱": "x", "ₓ": "_x", "∞": "inf", "≈": "~", "⟨": "<", "⟩": ">", "′": "'", "ᵣ": "_r",
}


def to_ascii(text: str) -> str:
    """Transliterate the math symbols used in the catalogue to ASCII (for LaTeX text mode)."""
    return "".join(_ASCII.get(ch, ch) for ch in str(text))


def _tex(text: str) -> str:
    """Text-mode LaTeX: symbols the escaper cannot typeset with the base fonts are transliterated first."""
    pre = "".join(_ASCII[ch] if ch in _ASCII and escape_text(ch).startswith("[U+") else ch for ch in str(text))
    return escape_text(pre)


def _md(text: str, code: bool = False) -> str:
    t = str(text).replace("\n", " ")
    if code:
        return t.replace("`", "'").replace("|", "\\|")
    return t.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_").replace("<", "&lt;").replace(">", "&gt;")


# =========================================================================== entry point
def build_errata(entries: list[Entry] | None = None, fresh: bool = False) -> ErrataReport:
    """Check every catalogue entry (or the given ones) and collect the report.

    Parameters
    ----------
    entries : list of Entry, optional
        Default: the whole :func:`jacobian_bp.documents.catalogue.catalogue`.
    fresh : bool
        Recompute verdicts already computed in this process.
    """
    entries = catalogue() if entries is None else list(entries)
    for e in entries:
        if not isinstance(e, Entry):
            raise TypeError(f"build_errata: expected catalogue entries, received {type(e).__name__}")
    return ErrataReport([ErrataItem(e, result(e, fresh)) for e in progress(entries, desc="errata")])
