"""Selecting contacts: search filters, saved audiences, and the coverage of UN Member States.

``services`` re-exports all of this; import it from there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import has_request_context
from flask_login import current_user

from campaign import audit
from campaign.contacts.countries import UN_MEMBER_STATES, country_name
from campaign.contacts.models import Audience, Contact, ContactTag, Suppression
from campaign.contacts.validation import ContactError, canonical_tags, country_codes
from campaign.extensions import db
from campaign.letters.models import UN_LANGUAGES

FILTER_SUPPRESSION = ("deliverable", "suppressed", *(s.value for s in Suppression))


@dataclass
class ContactFilter:
    """``suppression``: "" any, "deliverable", "suppressed", or a ``Suppression`` value."""

    q: str = ""
    country: str = ""
    tag: str = ""
    language: str = ""
    suppression: str = ""


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_query(f: ContactFilter) -> sa.Select:
    """Contacts by country, organisation and email; every word of ``q`` must appear in the
    email, a name, the organisation or the position; the tag is matched case-insensitively."""
    query = sa.select(Contact).order_by(Contact.country, Contact.organisation, Contact.email, Contact.id)
    for word in (f.q or "").split():
        pattern = f"%{_escape_like(word)}%"
        columns = (Contact.email, Contact.given_name, Contact.family_name, Contact.organisation, Contact.position)
        query = query.where(sa.or_(*(column.ilike(pattern, escape="\\") for column in columns)))
    if f.country:
        query = query.where(Contact.country == f.country.strip().upper())
    if f.tag:
        query = query.where(_has_any_tag([f.tag]))
    if f.language:
        query = query.where(Contact.language == f.language.strip().lower())
    if f.suppression == "deliverable":
        query = query.where(Contact.suppression.is_(None))
    elif f.suppression == "suppressed":
        query = query.where(Contact.suppression.is_not(None))
    elif f.suppression:
        query = query.where(Contact.suppression == f.suppression)
    return query


def _has_any_tag(tags: Iterable[str]) -> sa.ColumnElement[bool]:
    lowered = [" ".join(t.split()).lower() for t in tags]
    return sa.exists().where(ContactTag.contact_id == Contact.id, sa.func.lower(ContactTag.name).in_(lowered))


@dataclass
class CoverageRow:
    code: str
    name: str
    deliverable: int
    suppressed: int


def coverage() -> list[CoverageRow]:
    """One row per UN Member State, by name: how many deliverable and suppressed contacts it has."""
    return _coverage(sa.select(Contact), UN_MEMBER_STATES)


def uncovered_states() -> list[str]:
    """Codes of the UN Member States without a deliverable contact, by name."""
    return [row.code for row in coverage() if not row.deliverable]


def coverage_for(target: Audience | ContactFilter) -> list[CoverageRow]:
    """Coverage of the states an audience or filter targets: its countries, or every UN
    Member State when it names none; suppression in a filter is ignored (both are counted)."""
    if isinstance(target, Audience):
        query, countries = audience_query(target), target.countries
    else:
        query = filter_query(ContactFilter(target.q, target.country, target.tag, target.language))
        countries = [target.country.strip().upper()] if target.country else []
    return _coverage(query, countries or UN_MEMBER_STATES)


def _coverage(query: sa.Select, codes: Iterable[str]) -> list[CoverageRow]:
    contacts = query.order_by(None).subquery()
    counts = sa.select(
        contacts.c.country,
        sa.func.count().filter(contacts.c.suppression.is_(None)),
        sa.func.count().filter(contacts.c.suppression.is_not(None)),
    ).group_by(contacts.c.country)
    found = {code: (ok, bad) for code, ok, bad in db.session.execute(counts)}
    rows = [CoverageRow(code, country_name(code), *found.get(code, (0, 0))) for code in set(codes)]
    return sorted(rows, key=lambda row: (row.name.casefold(), row.code))


def list_audiences() -> list[Audience]:
    return list(db.session.scalars(sa.select(Audience).order_by(Audience.name)))


def get_audience(id: int) -> Audience | None:
    return db.session.get(Audience, id)


def save_audience(
    name: str,
    tags: Iterable[str],
    countries: Iterable[str],
    languages: Iterable[str],
    audience: Audience | None = None,
    actor: Any = None,
) -> Audience:
    """Create (or change, when ``audience`` is given) a saved audience.  The name is unique
    (case-insensitively); countries are ISO codes, languages UN languages; empty lists
    place no condition."""
    name = " ".join((name or "").split())
    if not name or len(name) > 200:
        raise ContactError("An audience needs a name of at most 200 characters.")
    clash = db.session.scalar(sa.select(Audience).where(sa.func.lower(Audience.name) == name.lower()))
    if clash is not None and clash is not audience:
        raise ContactError(f"An audience named {clash.name!r} already exists.")
    codes = sorted({c.strip().upper() for c in countries if c.strip()})
    unknown = [c for c in codes if c not in country_codes()]
    if unknown:
        raise ContactError(f"Not ISO 3166-1 alpha-2 country codes: {', '.join(unknown)[:200]}.")
    langs = sorted({lang.strip().lower() for lang in languages if lang.strip()})
    if any(lang not in UN_LANGUAGES for lang in langs):
        raise ContactError(f"Languages must be among {', '.join(UN_LANGUAGES)}.")
    tags, created = canonical_tags(tags), audience is None
    if audience is None:
        audience = Audience(created_by_id=getattr(actor or _signed_in(), "id", None))
        db.session.add(audience)
    audience.name, audience.tags, audience.countries, audience.languages = name, tags, codes, langs
    db.session.flush()
    audit.record(f"audiences.{'create' if created else 'update'}", audience, f"Saved audience {name}", actor=actor)
    return audience


def delete_audience(audience: Audience, actor: Any = None) -> None:
    audit.record("audiences.delete", audience, f"Deleted audience {audience.name}", actor=actor)
    db.session.delete(audience)
    db.session.flush()


def _signed_in() -> Any:
    return current_user if has_request_context() and current_user.is_authenticated else None


def audience_query(audience: Audience) -> sa.Select:
    """The audience's contacts, deliverable and suppressed alike (callers decide): any of its
    tags, in its countries, speaking its languages; an empty list places no condition."""
    query = sa.select(Contact).order_by(Contact.country, Contact.organisation, Contact.email, Contact.id)
    if audience.tags:
        query = query.where(_has_any_tag(audience.tags))
    if audience.countries:
        query = query.where(Contact.country.in_(audience.countries))
    if audience.languages:
        query = query.where(Contact.language.in_(audience.languages))
    return query
