r"""Catalogue of the checkable statements of the four source documents.

Every formula, table entry, algorithm line, example matrix, code listing and
dimension statement of

* ``damadi`` -- Damadi, Moharrer, Cham, *The backpropagation algorithm for a math student*;
* ``ganev`` -- Ganev, *Notes on backpropagation*;
* ``park`` -- Park, *Gradients in a deep neural network and their Python implementations*;
* ``mml`` -- CSE463 lecture slides (Abd El Munim) with excerpts of *Mathematics for Machine
  Learning* ch. 5,

that can be checked is encoded as a :mod:`jacobian_bp.claims` claim *under its own
document's convention* (``damadi``: ``z = Wᵀa + b``, columns of ``W`` stacked, θ blocks
``[L … 1]``; ``ganev``: ``z = Wa + b``, batch first, sum; ``park``: batch last, mean, ``½‖·‖²``;
``mml``: row gradients, column-major vec), with its citation (document, section, line
of the seed text, the printed formula).  The verdict is *never* typed in: it is computed
by :func:`jacobian_bp.claims.check` each time (:func:`run_catalogue`).  Entries whose
printed form fails carry the corrected formula as a :class:`~jacobian_bp.claims.Correction`,
which the checker verifies too.

Each document is one module (:mod:`.damadi`, :mod:`.ganev`, :mod:`.park`, :mod:`.mml`) giving its
``DOCUMENT`` and its ``entries()``; this module registers them (:data:`SOURCES`) and serves the
entries and their results.  Adding a document is one new module and its name in :data:`SOURCES`.

Encoding rules
--------------
* One entry isolates one statement; where a printed line contains several slips, each
  slip gets its own entry (the others corrected), plus one entry for the line as printed.
* Transcription artefacts of the text extraction (``n_{iter}`` in a listing, ``\{W\}``) are
  normalised and said so in the entry's note; everything else is taken as printed.
* Prose statements that are not formulas (run-time claims, historical remarks) are not
  encoded.
"""
from __future__ import annotations

from ..backend.progress import progress

from functools import lru_cache

from ..claims import CheckResult
from . import damadi, ganev, mml, park
from .damadi import _conv_truth_matrix, _damadi_printed_matrix  # noqa: F401 - imported from here by tests, notebook
from .model import CATEGORIES, DOCUMENTS, KINDS, Document, Entry, register_document  # noqa: F401 - re-exported

__all__ = ["Document", "DOCUMENTS", "Entry", "catalogue", "run_catalogue", "result", "entry", "SOURCES"]

#: the source documents, in the catalogue's order: each module gives its ``DOCUMENT`` and its ``entries()``
SOURCES = (damadi, ganev, park, mml)
for _source in SOURCES:
    register_document(_source.DOCUMENT)


@lru_cache(maxsize=1)
def _all_entries() -> tuple[Entry, ...]:
    entries = [e for source in SOURCES for e in source.entries()]
    ids = [e.id for e in entries]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise RuntimeError(f"duplicate catalogue ids: {sorted(dup)}")
    return tuple(entries)


def catalogue(document: str | None = None) -> list[Entry]:
    """The catalogue entries, optionally of one document (``damadi``, ``ganev``, ``park``, ``mml``)."""
    if document is not None and document not in DOCUMENTS:
        raise ValueError(f"catalogue: unknown document {document!r}; known: {', '.join(DOCUMENTS)}")
    return [e for e in _all_entries() if document is None or e.document == document]


def entry(entry_id: str) -> Entry:
    """The entry with this id."""
    for e in _all_entries():
        if e.id == entry_id:
            return e
    raise KeyError(f"catalogue has no entry {entry_id!r}")


_RESULTS: dict[str, CheckResult] = {}


def result(e: Entry, fresh: bool = False) -> CheckResult:
    """The checker's result for an entry, computed on first use in this process (``fresh``: recompute)."""
    if fresh or e.id not in _RESULTS:
        _RESULTS[e.id] = e.check()
    return _RESULTS[e.id]


def run_catalogue(entries: list[Entry] | None = None, fresh: bool = False) -> list[tuple[Entry, CheckResult]]:
    """Check every entry: the verdicts are computed by :func:`jacobian_bp.claims.check`, once per process
    unless ``fresh``."""
    entries = catalogue() if entries is None else entries
    return [(e, result(e, fresh)) for e in progress(entries, desc="catalogue")]
