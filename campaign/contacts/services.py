"""The rules of the contacts directory: changes with their history, tags in bulk, the CSV import.

Functions flush and leave the commit to the caller.  Every change writes a
``ContactEvent`` on the contact and an audit event.  This module is the domain's
interface: it re-exports validation (``validation``) and search, coverage and
audiences (``selection``); the CSV format lives in ``csvio``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import has_request_context
from flask_login import current_user

from campaign import audit
from campaign.contacts.models import Contact, ContactEvent, ContactTag, Suppression
from campaign.contacts.selection import (
    FILTER_SUPPRESSION,
    ContactFilter,
    CoverageRow,
    audience_query,
    coverage,
    coverage_for,
    delete_audience,
    filter_query,
    get_audience,
    list_audiences,
    save_audience,
    uncovered_states,
)
from campaign.contacts.validation import (
    FIELDS,
    MAX_LENGTHS,
    ContactData,
    ContactError,
    DuplicateEmailError,
    canonical_tags,
    default_timezone,
    normalise_email,
    normalise_tags,
    validate,
)
from campaign.db import utcnow
from campaign.extensions import db

__all__ = [
    "FIELDS", "FILTER_SUPPRESSION", "MAX_LENGTHS", "ContactData", "ContactError", "ContactFilter", "CoverageRow",
    "DuplicateEmailError", "ImportReport", "RejectedRow", "actor_email", "add_tags", "audience_query",
    "canonical_tags", "coverage", "coverage_for", "create_contact", "default_timezone", "delete_audience",
    "delete_contact", "export_csv", "filter_query", "get_audience", "get_by_email", "get_contact", "import_csv",
    "list_audiences", "mark_verified", "normalise_email", "normalise_tags", "remove_tags", "save_audience",
    "suppress", "tag_counts", "uncovered_states", "unsuppress", "update_contact", "validate",
]  # fmt: skip

CHUNK = 500  # ids or emails per IN list


@dataclass
class RejectedRow:
    line: int  #: physical line in the file; the header is line 1
    email: str
    reason: str


@dataclass
class ImportReport:
    """What ``import_csv`` found and did; ``error`` is a problem with the whole file."""

    total: int = 0
    valid: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    imported: bool = False
    dry_run: bool = False
    error: str | None = None


# --- one contact ------------------------------------------------------------------------------


def get_contact(id: int) -> Contact | None:
    return db.session.get(Contact, id)


def get_by_email(email: str) -> Contact | None:
    return db.session.scalar(sa.select(Contact).where(Contact.email == normalise_email(email)))


def create_contact(data: ContactData, actor: Any = None) -> Contact:
    """Add a contact; its email must not belong to another contact."""
    data = validate(data)
    if get_by_email(data.email) is not None:
        raise DuplicateEmailError(f"A contact with the email {data.email} already exists.")
    contact = Contact(**{name: getattr(data, name) for name in FIELDS})
    contact.tag_rows = [ContactTag(name=tag) for tag in canonical_tags(data.tags)]
    db.session.add(contact)
    db.session.flush()
    _event(contact, "created", "Created", actor)
    audit.record("contacts.create", contact, f"Created contact {contact.email}", actor=actor)
    return contact


def update_contact(contact: Contact, data: ContactData, actor: Any = None) -> Contact:
    """Change a contact to ``data``; the history records which fields changed, from what to what."""
    data = validate(data)
    other = get_by_email(data.email)
    if other is not None and other.id != contact.id:
        raise DuplicateEmailError(f"Another contact already has the email {data.email}.")
    changes = {
        name: [getattr(contact, name), getattr(data, name)]
        for name in FIELDS
        if getattr(contact, name) != getattr(data, name)
    }
    tags = canonical_tags(data.tags)
    if tags != normalise_tags(contact.tags):  # the relationship orders them by byte, not by letter
        changes["tags"] = [normalise_tags(contact.tags), tags]
        kept = {row.name: row for row in contact.tag_rows}
        contact.tag_rows = [kept.get(tag) or ContactTag(name=tag) for tag in tags]
    if not changes:
        return contact
    for name in FIELDS:
        setattr(contact, name, getattr(data, name))
    db.session.flush()
    summary = "Changed " + ", ".join(name.replace("_", " ") for name in changes)
    _event(contact, "updated", summary, actor, changes=changes)
    audit.record("contacts.update", contact, f"{summary} of {contact.email}", actor=actor, fields=sorted(changes))
    return contact


def delete_contact(contact: Contact, actor: Any = None) -> None:
    """Delete a contact with its tags and history; the audit log keeps who and which address."""
    audit.record("contacts.delete", contact, f"Deleted contact {contact.email}", actor=actor, email=contact.email)
    db.session.delete(contact)
    db.session.flush()


def suppress(contact: Contact, reason: Suppression | str, note: str = "", actor: Any = None) -> Contact:
    """Stop mail to a contact, with the reason and a note; a bounce or complaint also asks
    for the address to be verified again."""
    try:
        reason = Suppression(reason)
    except ValueError:
        raise ContactError(f"Unknown suppression reason {str(reason)[:20]!r}.") from None
    note = " ".join((note or "").split())
    if len(note) > 500:
        raise ContactError("The note is longer than 500 characters.")
    contact.suppression, contact.suppression_reason, contact.suppressed_at = reason.value, note, utcnow()
    if reason in (Suppression.BOUNCED, Suppression.COMPLAINED):
        contact.needs_verification = True
    db.session.flush()
    _event(contact, "suppressed", f"Suppressed: {reason.label}", actor, reason=reason.value, note=note)
    audit.record("contacts.suppress", contact, f"Suppressed {contact.email}: {reason.label}", actor=actor)
    return contact


def unsuppress(contact: Contact, actor: Any = None) -> Contact:
    """Make a contact deliverable again."""
    if contact.suppression is None:
        return contact
    before = contact.suppression
    contact.suppression, contact.suppression_reason, contact.suppressed_at = None, "", None
    db.session.flush()
    _event(contact, "unsuppressed", "Deliverable again", actor, was=before)
    audit.record("contacts.unsuppress", contact, f"Made {contact.email} deliverable again", actor=actor)
    return contact


def mark_verified(contact: Contact, actor: Any = None) -> Contact:
    """Record that someone checked the address today; clears ``needs_verification``."""
    contact.last_verified_at, contact.needs_verification = utcnow(), False
    db.session.flush()
    _event(contact, "verified", "Address verified", actor)
    audit.record("contacts.verify", contact, f"Verified {contact.email}", actor=actor)
    return contact


# --- tags in bulk -----------------------------------------------------------------------------


def add_tags(contact_ids: Iterable[int], tags: Iterable[str], actor: Any = None) -> int:
    """Give every listed contact the tags; returns how many contacts changed."""
    ids, tags = sorted(set(contact_ids)), canonical_tags(tags)
    if not ids or not tags:
        return 0
    have = _tag_pairs(ids, tags)
    rows = [{"contact_id": i, "name": t} for i in _existing_ids(ids) for t in tags if (i, t.lower()) not in have]
    if rows:
        db.session.execute(sa.insert(ContactTag), rows)
    changed = sorted({row["contact_id"] for row in rows})
    _bulk_events(changed, "tagged", "Tagged " + ", ".join(tags), actor, tags=tags)
    if changed:
        audit.record(
            "contacts.tag", None, f"Tagged {len(changed)} contacts", actor=actor, tags=tags, count=len(changed)
        )
    return len(changed)


def remove_tags(contact_ids: Iterable[int], tags: Iterable[str], actor: Any = None) -> int:
    """Take the tags (matched case-insensitively) off every listed contact; returns how many changed."""
    ids, lowered = sorted(set(contact_ids)), [t.lower() for t in normalise_tags(tags)]
    if not ids or not lowered:
        return 0
    changed = sorted({contact_id for contact_id, _ in _tag_pairs(ids, lowered)})
    for chunk in _chunks(changed):
        db.session.execute(
            sa.delete(ContactTag).where(ContactTag.contact_id.in_(chunk), sa.func.lower(ContactTag.name).in_(lowered))
        )
    _bulk_events(changed, "untagged", "Untagged " + ", ".join(lowered), actor, tags=lowered)
    if changed:
        audit.record(
            "contacts.untag", None, f"Untagged {len(changed)} contacts", actor=actor, tags=lowered, count=len(changed)
        )
    return len(changed)


def tag_counts() -> list[tuple[str, int]]:
    """Every tag in use with its number of contacts, by name."""
    query = sa.select(ContactTag.name, sa.func.count()).group_by(ContactTag.name).order_by(ContactTag.name)
    return [(name, count) for name, count in db.session.execute(query)]


def _tag_pairs(ids: Sequence[int], tags: Sequence[str]) -> set[tuple[int, str]]:
    lowered = [t.lower() for t in tags]
    pairs = set()
    for chunk in _chunks(ids):
        query = sa.select(ContactTag.contact_id, ContactTag.name).where(
            ContactTag.contact_id.in_(chunk), sa.func.lower(ContactTag.name).in_(lowered)
        )
        pairs |= {(contact_id, name.lower()) for contact_id, name in db.session.execute(query)}
    return pairs


def _existing_ids(ids: Sequence[int]) -> list[int]:
    found: list[int] = []
    for chunk in _chunks(ids):
        found += db.session.scalars(sa.select(Contact.id).where(Contact.id.in_(chunk)))
    return sorted(found)


# --- history ----------------------------------------------------------------------------------


def actor_email(actor: Any = None) -> str | None:
    """The acting user's address: ``actor`` or else whoever is signed in."""
    if actor is None and has_request_context() and current_user.is_authenticated:
        actor = current_user
    return getattr(actor, "email", None)


def _event(contact: Contact, kind: str, summary: str, actor: Any, **details: Any) -> None:
    db.session.add(
        ContactEvent(
            contact_id=contact.id, kind=kind, summary=summary[:500], actor_email=actor_email(actor), details=details
        )
    )
    db.session.expire(contact, ["events"])


def _bulk_events(ids: Sequence[int], kind: str, summary: str, actor: Any, **details: Any) -> None:
    """One history line per contact, inserted in bulk, and loaded contacts told to reload."""
    email, now = actor_email(actor), utcnow()
    rows = [
        {"contact_id": i, "kind": kind, "summary": summary[:500], "actor_email": email, "details": details,
         "created_at": now}
        for i in ids
    ]  # fmt: skip
    if rows:
        db.session.execute(sa.insert(ContactEvent), rows)
    expire_contacts(ids)


def expire_contacts(ids: Iterable[int]) -> None:
    """Contacts changed by bulk statements reload their tags and history when next read."""
    wanted = set(ids)
    for obj in list(db.session.identity_map.values()):
        if isinstance(obj, Contact) and obj.id in wanted:
            db.session.expire(obj)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- CSV --------------------------------------------------------------------------------------


def import_csv(data: bytes, *, dry_run: bool, accept_valid: bool, actor: Any = None) -> ImportReport:
    """Import contacts from CSV bytes (the format is described in ``csvio``).

    Contacts are matched by email and updated, never duplicated.  A file with any
    rejected row imports nothing unless ``accept_valid``; ``dry_run`` imports nothing.
    The import is written in one savepoint: all of it or none of it.
    """
    from campaign.contacts import csvio  # csvio builds on the rules above

    return csvio.import_csv(data, dry_run=dry_run, accept_valid=accept_valid, actor=actor)


def export_csv(query: sa.Select) -> Iterator[str]:
    """The contacts ``query`` selects as CSV text, line by line (cells that a spreadsheet
    would run as a formula are prefixed with ``'``); it imports back unchanged."""
    from campaign.contacts import csvio

    return csvio.export_csv(query)
