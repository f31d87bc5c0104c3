"""What the catalogue is made of: the source documents and their checkable statements (entries).

A source document (:class:`Document`) is registered in :data:`DOCUMENTS` by :mod:`.catalogue`;
each of its statements is an :class:`Entry` whose claim is checked by :func:`jacobian_bp.claims.check`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..claims import CheckResult, check


@dataclass(frozen=True)
class Document:
    """A source document of the catalogue: its title, short name, seed text and convention preset."""

    key: str
    title: str
    short: str
    seed_file: str
    convention: str


#: the source documents by key, in the catalogue's order (filled by :func:`register_document`, which
#: :mod:`.catalogue` calls for each of its sources before any entry is built)
DOCUMENTS: dict[str, Document] = {}


def register_document(document: Document) -> Document:
    """Add a source document to :data:`DOCUMENTS`, so that entries may name it; returns it.

    Raises
    ------
    TypeError
        ``document`` is not a :class:`Document`.
    ValueError
        Another document is registered under the same key.
    """
    if not isinstance(document, Document):
        raise TypeError(f"register_document: expected a Document, received {type(document).__name__}")
    known = DOCUMENTS.get(document.key)
    if known is not None and known != document:
        raise ValueError(f"register_document: another document is registered as {document.key!r}")
    DOCUMENTS[document.key] = document
    return document


@dataclass(frozen=True)
class Artefact:
    """A statement that reads wrong as transcribed, but whose intended formula is one edit away and whose
    later use in the source is consistent: a *transcription artefact*, not an error of the author.

    Attributes
    ----------
    edit : str
        The one edit, as printed → as intended (``"a_{ℓ−1}^1 → a_{ℓ−1}ᵀ"``).
    consistent_with : tuple of str
        Ids of the entries that use the intended formula later in the source; each must hold.

    The label is *computed* (:meth:`jacobian_bp.documents.errata.ErrataItem.is_artefact`): the entry does
    not hold as printed, its first stated correction (the one edit) holds, and every entry of
    ``consistent_with`` holds.
    """

    edit: str
    consistent_with: tuple = ()


#: what an entry's statement is, as printed
CATEGORIES = ("formula", "table", "algorithm", "example", "listing", "dimension")
KINDS = CATEGORIES  # the former name


@dataclass
class Entry:
    """One checkable statement of a document.

    Attributes
    ----------
    id : str
        Stable identifier, ``"<document>.<place>"``.
    document : str
        Key of :data:`DOCUMENTS`.
    location : str
        Section / equation / algorithm line and the line of the seed text (``l. 55``).
    category : str
        What the statement is, as printed: ``formula``, ``table``, ``algorithm``, ``example``,
        ``listing`` or ``dimension`` (:data:`CATEGORIES`).  ``entry.kind`` is its former name.
    printed : str
        The statement as printed (plain text).
    claim : Claim, ExpressionClaim or ListingClaim
        Its encoding under the document's convention.
    note : str
        How it was read (ambiguities, transcription artefacts).
    artefact : Artefact, optional
        Set when the statement may be a transcription artefact (one edit from a formula the source
        uses consistently later); the errata report labels it so when the checker confirms both.
    """

    id: str
    document: str
    location: str
    category: str
    printed: str
    claim: Any
    note: str = ""
    artefact: Artefact | None = None

    def __post_init__(self):
        if self.document not in DOCUMENTS:
            raise ValueError(f"entry {self.id!r}: unknown document {self.document!r}")
        if self.category not in CATEGORIES:
            raise ValueError(f"entry {self.id!r}: category must be one of {CATEGORIES}, received {self.category!r}")
        if self.artefact is not None and not isinstance(self.artefact, Artefact):
            raise TypeError(f"entry {self.id!r}: artefact must be an Artefact, received {type(self.artefact).__name__}")

    @property
    def kind(self) -> str:
        """The former name of :attr:`category`."""
        return self.category

    def check(self) -> CheckResult:
        """Run the checker on this entry's claim."""
        return check(self.claim)

    @property
    def corrected(self) -> str:
        """The corrected formula text (the first claim-specific correction), or ``""``."""
        corr = getattr(self.claim, "corrections", ())
        return corr[0].description if corr else ""
