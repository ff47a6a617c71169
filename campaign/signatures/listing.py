"""The approved signatories of a letter, as the public page, the PDF and the API show them.

``approved_signatories`` is one query whatever the number of signatures (the index
``ix_signatures_letter_id_status`` serves it), and nothing is kept in process
memory: the letter page is made cheap to repeat by HTTP validators instead
(``page_validator``: an ETag from one aggregate query, so approving, withdrawing or
editing a signature changes it at once).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from campaign.admin.models import CoalitionSettings
from campaign.auth.services import country_name
from campaign.extensions import db
from campaign.letters.models import Letter, Revision, Translation
from campaign.signatures.models import Signature, SignatureStatus


@dataclass(frozen=True, slots=True)
class Signatory:
    """What the public may know of an approved signature: no signer, no email."""

    organisation_name: str
    country: str
    country_name: str
    #: The number of the revision signed, and whether it is the one now published.
    revision_number: int | None
    signed_published: bool
    approved_at: datetime | None
    needs_reconfirmation: bool

    @property
    def revision_note(self) -> str:
        """ "signed revision 2" when the organisation signed an earlier text, else ""."""
        if self.signed_published or self.revision_number is None:
            return ""
        return f"signed revision {self.revision_number}"


@dataclass(frozen=True, slots=True)
class CountryGroup:
    country: str
    country_name: str
    signatories: list[Signatory]


def _fold(text: str) -> str:
    """Case and accents folded, for sorting names as a reader expects ("Émile" with "E")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def approved_signatories(letter: Letter) -> list[Signatory]:
    """The letter's approved signatories by name (case and accents folded); one query."""
    query = (
        sa.select(
            Signature.organisation_name,
            Signature.country,
            Signature.revision_id,
            Revision.number,
            Signature.approved_at,
            Signature.needs_reconfirmation,
        )
        .outerjoin(Revision, Revision.id == Signature.revision_id)
        .where(Signature.letter_id == letter.id, Signature.status == SignatureStatus.APPROVED.value)
        .order_by(Signature.organisation_key, Signature.id)
    )
    # Core rows on the session's connection (same transaction): no ORM loading per row.
    rows = db.session.connection().execute(query).all()
    names: dict[str, str] = {}
    published = letter.published_revision_id
    return [
        Signatory(
            organisation_name=name,
            country=country,
            country_name=names.get(country) or names.setdefault(country, country_name(country)),
            revision_number=number,
            signed_published=revision_id is None or revision_id == published,
            approved_at=approved_at,
            needs_reconfirmation=needs_reconfirmation,
        )
        for name, country, revision_id, number, approved_at, needs_reconfirmation in rows
    ]


def grouped_by_country(signatories: Iterable[Signatory]) -> list[CountryGroup]:
    """Signatories under their country, countries by name; order within a country is kept."""
    groups: dict[str, CountryGroup] = {}
    for signatory in signatories:
        group = groups.get(signatory.country)
        if group is None:
            group = groups[signatory.country] = CountryGroup(signatory.country, signatory.country_name, [])
        group.signatories.append(signatory)
    return sorted(groups.values(), key=lambda g: (_fold(g.country_name), g.country))


def alphabetical(signatories: Iterable[Signatory]) -> list[Signatory]:
    """Signatories by name, case and accents folded (``approved_signatories`` already is)."""
    return sorted(signatories, key=lambda s: (_fold(s.organisation_name), s.country))


def count_label(count: int) -> str:
    """ "1 organisation has signed", "12 organisations have signed"."""
    return "1 organisation has signed" if count == 1 else f"{count:,} organisations have signed"


def pdf_rows(signatories: Sequence[Signatory]) -> list[tuple[str, str, str]]:
    """(name, country code, revision signed when not the published one) for the PDF and its
    cache key (``pdf.signatories_key``): a newly approved signature makes a new PDF."""
    return [
        (s.organisation_name, s.country, "" if s.signed_published else str(s.revision_number or ""))
        for s in signatories
    ]


def page_validator(letter: Letter, *varying: object) -> str:
    """A strong ETag for the public letter page, from one aggregate query.

    It covers what the page shows of the signatures, the approved ones (how many, and the
    latest change among them: approving, withdrawing or editing one changes it, and the count
    tells apart two changes made at the same instant), the published revision and the
    letter's own change time, its translations, its meeting, the coalition's settings
    and whether it still takes signatures; ``varying`` adds what the request chooses
    (language, grouping, the signed-in user), so a cached page is never stale.  A sign-on
    awaiting confirmation or approval changes nothing here, as it changes nothing on the
    page: a page ``pagecache`` kept through one is the page a new render would give.
    """
    signatures = sa.select(sa.func.count(Signature.id), sa.func.max(Signature.updated_at)).where(
        Signature.letter_id == letter.id, Signature.status == SignatureStatus.APPROVED.value
    )
    translations = (
        sa.select(sa.func.max(Translation.updated_at)).where(Translation.letter_id == letter.id).scalar_subquery()
    )
    settings = sa.select(sa.func.max(CoalitionSettings.updated_at)).scalar_subquery()
    row = db.session.execute(signatures.add_columns(translations, settings)).one()
    meeting = letter.meeting
    material = (
        *row,
        letter.published_revision_id,
        letter.updated_at,
        letter.published_at,
        letter.accepts_signatures(),
        (meeting.title, meeting.location, meeting.starts_at, meeting.ends_at_local, meeting.timezone)
        if meeting
        else None,
        *varying,
    )
    return hashlib.sha256(repr(material).encode()).hexdigest()[:32]


# --- coordinators: every signature, all fields -----------------------------------------------

#: The export's columns, in order; the CSV and the JSON carry the same fields.
EXPORT_FIELDS = (
    "id", "organisation_name", "country", "country_name", "region", "website", "signer_name", "signer_title",
    "signer_email", "status", "source", "revision_number", "signed_published_revision", "needs_reconfirmation",
    "created_date", "consent_date", "verified_date", "approved_date", "decided_date", "rejection_reason",
    "withdrawn_date", "reconfirmed_date", "consent_text", "organisation_id", "user_id", "decided_by_id",
)  # fmt: skip


def signatures_query(letter: Letter, status: str | None = None) -> sa.Select:
    """Every signature of the letter (or those in ``status``), by status then name."""
    query = (
        sa.select(Signature)
        .where(Signature.letter_id == letter.id)
        .options(sa.orm.selectinload(Signature.revision))
        .order_by(Signature.status, Signature.organisation_key, Signature.id)
    )
    return query if status is None else query.where(Signature.status == status)


def status_counts(letter: Letter) -> dict[str, int]:
    """How many signatures the letter has in each status (every status listed, zeros included)."""
    rows = db.session.execute(
        sa.select(Signature.status, sa.func.count(Signature.id))
        .where(Signature.letter_id == letter.id)
        .group_by(Signature.status)
    )
    counts = {status.value: 0 for status in SignatureStatus}
    counts.update(dict(rows.tuples().all()))
    return counts


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def export_record(signature: Signature, published_revision_id: int | None) -> dict[str, object]:
    """All of a signature's fields, as the exports write them."""
    from campaign.signatures.charts import region_of

    return {
        "id": signature.id,
        "organisation_name": signature.organisation_name,
        "country": signature.country,
        "country_name": country_name(signature.country),
        "region": region_of(signature.country),
        "website": signature.website or "",
        "signer_name": signature.signer_name,
        "signer_title": signature.signer_title,
        "signer_email": signature.signer_email,
        "status": signature.status,
        "source": signature.source,
        "revision_number": signature.revision.number if signature.revision else None,
        "signed_published_revision": signature.revision_id == published_revision_id,
        "needs_reconfirmation": signature.needs_reconfirmation,
        "created_date": _iso(signature.created_at),
        "consent_date": _iso(signature.consent_at),
        "verified_date": _iso(signature.verified_at),
        "approved_date": _iso(signature.approved_at),
        "decided_date": _iso(signature.decided_at),
        "rejection_reason": signature.rejection_reason,
        "withdrawn_date": _iso(signature.withdrawn_at),
        "reconfirmed_date": _iso(signature.reconfirmed_at),
        "consent_text": signature.consent_text,
        "organisation_id": signature.organisation_id,
        "user_id": signature.user_id,
        "decided_by_id": signature.decided_by_id,
    }
