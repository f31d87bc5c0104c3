"""The errata report: CLI, Markdown, LaTeX that compiles with ``pdflatex -halt-on-error``."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from jacobian_bp import cli
from jacobian_bp.documents.catalogue import DOCUMENTS, Entry, run_catalogue
from jacobian_bp.claims import FAILS, HOLDS, ILL_TYPED, Claim, Correction, Mistake, Setting
from jacobian_bp.documents.model import Artefact
from jacobian_bp.documents.errata import build_errata, to_ascii


@pytest.fixture(scope="module")
def report():
    return build_errata()


def _pdflatex(tex_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed")
    p = subprocess.run(["pdflatex", "-halt-on-error", "-interaction=nonstopmode", tex_path.name], cwd=tex_path.parent,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:]
    assert tex_path.with_suffix(".pdf").stat().st_size > 1000


def test_counts_match_the_checker(report):
    c = report.counts()
    res = run_catalogue()
    for key in DOCUMENTS:
        vs = [r.verdict for e, r in res if e.document == key]
        assert c[key] == {"checked": len(vs), HOLDS: vs.count(HOLDS), FAILS: vs.count(FAILS), ILL_TYPED: vs.count(ILL_TYPED)}
    tot = c["total"]
    assert tot["checked"] == sum(c[k]["checked"] for k in DOCUMENTS) == tot[HOLDS] + tot[FAILS] + tot[ILL_TYPED]
    assert tot[FAILS] + tot[ILL_TYPED] == len(report.not_holding())


def test_cli_writes_markdown_and_latex(tmp_path, capsys, report):
    md, tex = tmp_path / "errata.md", tmp_path / "errata.tex"
    assert cli.main(["errata", "--markdown", str(md), "--latex", str(tex)]) == 0
    out = capsys.readouterr().out
    assert "Damadi et al." in out and "total" in out and f"wrote {md}" in out
    text = md.read_text(encoding="utf-8")
    assert text.startswith("# Errata") and "| document | checked | holds | fails | ill-typed |" in text
    for it in report.not_holding():  # one table row per statement that does not hold
        assert it.entry.location.replace("|", "\\|").replace("_", "\\_") in text or it.entry.location in text
    _pdflatex(tex)


def test_latex_survives_hostile_text(tmp_path):
    evil = r"\input{/etc/passwd} $x$ % # & _ ^ ~ { } \end{document} ᵀ⊗∇ 中"
    st = Setting("ganev", widths=((2, 2),), seeds=(0,))
    e = Entry("ganev.evil", "ganev", "l. 1 " + evil, "formula", evil,
              Claim(evil, lambda q, l: -q.delta[l], "grad_b", st,
                    corrections=(Correction(evil, lambda q, l: q.delta[l]),)), note=evil)
    rep = build_errata([e])
    assert rep.counts()["ganev"][FAILS] == 1
    tex = tmp_path / "evil.tex"
    tex.write_text(rep.to_latex(), encoding="utf-8")
    assert r"\input{/etc" not in tex.read_text()
    _pdflatex(tex)
    rows = [ln for ln in rep.to_markdown().splitlines() if ln.startswith("| l. 1")]
    assert len(rows) == 1 and rows[0].count(" | ") == 5  # the '|'-free cells keep the row a single table row
    assert evil.split()[0] in rep.to_text()


def test_one_line_summaries(report):
    lines = [it.one_line() for it in report.not_holding()]
    assert len(lines) == len(set(lines)) and all("\n" not in s for s in lines)
    sign = [s for s in lines if "simple linear regression (l. 161)" in s]
    assert sign and "−2 [x ; 1] (y − ŷ)" in sign[0]


def test_to_ascii():
    assert to_ascii("Wᵀ ⊗ ∇ℓ") == "W^T  (x)  grad l"
    assert np.all([ord(ch) < 128 for ch in to_ascii("θσδ∈→…")])


def test_build_errata_validates():
    with pytest.raises(TypeError):
        build_errata(["not an entry"])


def test_no_diagnosis_is_repeated(report):
    """One correction described twice (σ_L for σ_l) is one diagnosis: every diagnosis appears once."""
    for it in report.not_holding():
        parts = [str(e) for e in it.result.diagnosis]
        assert len(parts) == len(set(parts)), (it.entry.id, parts)
        kinds = [e.mistake for e in it.result.diagnosis]
        assert kinds.count(Mistake.OUTPUT_ACTIVATION) <= 1, (it.entry.id, parts)


def test_transcription_artefacts_are_reported_apart(report):
    """Ganev (3.3) a^1 and §4.3 ∇Z ⊗ W: one edit from what the source uses later, which holds."""
    arts = {it.entry.id for it in report.artefacts()}
    assert arts == {"ganev.prop31.eq3", "ganev.s43.dim"}
    for it in report.artefacts():
        assert it.verdict != HOLDS and it.verified_correction and it.label() == "transcription artefact"
    assert not ({it.entry.id for it in report.errors()} & arts)
    assert len(report.errors()) + len(arts) == len(report.not_holding())
    text = report.to_text()
    assert "[transcription artefact, not the author's error] Prop. 3.1 (3.3)" in text
    assert "Transcription artefacts (not errors of the author" in report.to_markdown()


def test_artefact_label_needs_a_consistent_later_use():
    """An artefact whose 'later use' does not hold is an error like any other."""
    st = Setting("ganev", widths=((2, 3, 2),), seeds=(0,))
    claim = Claim("δ aᵀ without ᵀ", lambda q, l: q.delta[l] @ q.a[l - 1], "grad_W", st,
                  corrections=(Correction("δ aᵀ", lambda q, l: q.delta[l] @ q.a[l - 1].T),))
    good = Entry("ganev.t1", "ganev", "l. 82", "formula", "∇W = δ a^1", claim,
                 artefact=Artefact("a^1 → aᵀ", ("ganev.proof33",)))
    bad = Entry("ganev.t2", "ganev", "l. 82", "formula", "∇W = δ a^1", claim,
                artefact=Artefact("a^1 → aᵀ", ("ganev.alg1.jac",)))  # Jacobian(σ_L, ·): fails
    rep = build_errata([good, bad])
    assert [it.is_artefact for it in rep.items] == [True, False]
    with pytest.raises(TypeError):
        Entry("ganev.t3", "ganev", "l. 82", "formula", "x", claim, artefact="a^1 → aᵀ")
