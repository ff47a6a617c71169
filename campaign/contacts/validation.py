"""What a valid contact is: normalising and checking the data before anything is saved.

``services`` re-exports all of this; import it from there.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import email_validator
import pycountry
import sqlalchemy as sa

from campaign.admin.services import get_settings
from campaign.contacts.models import Contact, ContactTag
from campaign.extensions import db
from campaign.letters.models import UN_LANGUAGES

#: Column widths of ``contacts`` (see the model); ``notes`` is TEXT, bounded here.
MAX_LENGTHS = {
    "email": 254, "country": 2, "organisation": 300, "honorific": 80, "given_name": 120, "family_name": 120,
    "position": 300, "salutation": 300, "language": 2, "timezone": 64, "notes": 5000,
}  # fmt: skip
MAX_TAG_LENGTH = 64
#: Line breaks of any kind (what ``str.splitlines`` splits on) and the other control characters but tab.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


class ContactError(ValueError):
    """The contact data breaks a rule; the message is for the coordinator."""


class DuplicateEmailError(ContactError):
    """Another contact already has this email."""


@dataclass
class ContactData:
    """A contact as a form, the API or a CSV row gives it; ``validate`` normalises it."""

    country: str
    email: str
    organisation: str = ""
    honorific: str = ""
    given_name: str = ""
    family_name: str = ""
    position: str = ""
    salutation: str = ""
    language: str = "en"
    #: ``None`` (or empty) takes the coalition's default contact timezone.
    timezone: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: str = ""

    @classmethod
    def of(cls, contact: Contact) -> ContactData:
        """The data of a saved contact, e.g. to start an edit from."""
        values = {f.name: getattr(contact, f.name) for f in fields(cls) if f.name != "tags"}
        return cls(**values, tags=list(contact.tags))


FIELDS = tuple(f.name for f in fields(ContactData) if f.name != "tags")


def normalise_email(s: str) -> str:
    """Trimmed and lower-cased: addresses are stored and compared case-insensitively."""
    return (s or "").strip().lower()


def normalise_tags(tags: Iterable[str]) -> list[str]:
    """Trimmed, inner spaces collapsed, empty ones dropped, deduplicated case-insensitively
    (the first spelling wins), sorted.  Raises ``ContactError`` for a tag over 64 characters
    or with ``;`` (the CSV separator) or a control character in it."""
    seen: dict[str, str] = {}
    for raw in tags:
        tag = " ".join(str(raw).split())  # also removes CR, LF and tabs
        if not tag:
            continue
        if len(tag) > MAX_TAG_LENGTH:
            raise ContactError(f"Tag {tag[:20]!r}… is longer than {MAX_TAG_LENGTH} characters.")
        if ";" in tag or CONTROL.search(tag):
            raise ContactError(f"Tag {tag!r} may not contain ';' or control characters.")
        seen.setdefault(tag.casefold(), tag)
    return sorted(seen.values(), key=lambda t: (t.casefold(), t))


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@functools.cache
def country_codes() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries)


def default_timezone() -> str:
    return get_settings().default_timezone or "America/New_York"


def validate(data: ContactData, *, default_tz: str | None = None) -> ContactData:
    """A normalised copy of ``data``, or ``ContactError`` saying what is wrong.

    Email syntax (no DNS lookup; ASCII local part; stored lower-cased), an ISO 3166-1
    alpha-2 country (upper-cased), one of the six UN languages (lower-cased, empty
    means ``en``), an IANA timezone (empty means the coalition's default), text trimmed,
    within the column widths, and no line break or other control character (tab aside) in any field.
    """
    values: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(data, name)
        value = "" if value is None else str(value)
        if CONTROL.search(value):
            raise ContactError(f"{_label(name)} must be on one line, without control characters.")
        values[name] = value.strip()
    if not values["email"]:
        raise ContactError("Email is missing.")
    try:
        checked = email_validator.validate_email(values["email"], check_deliverability=False, allow_smtputf8=False)
    except email_validator.EmailNotValidError as exc:
        raise ContactError(f"Email {values['email'][:80]!r} is not valid: {exc}") from None
    values["email"] = normalise_email(checked.normalized)
    values["country"] = values["country"].upper()
    if not values["country"]:
        raise ContactError("Country is missing.")
    if values["country"] not in country_codes():
        raise ContactError(f"Country {values['country'][:10]!r} is not an ISO 3166-1 alpha-2 code (e.g. FR).")
    values["language"] = values["language"].lower() or "en"
    if values["language"] not in UN_LANGUAGES:
        raise ContactError(f"Language {values['language'][:10]!r} is not one of {', '.join(UN_LANGUAGES)}.")
    values["timezone"] = values["timezone"] or default_tz or default_timezone()
    if values["timezone"] not in _timezones():
        raise ContactError(f"Timezone {values['timezone'][:64]!r} is not an IANA timezone (e.g. Europe/Zurich).")
    for name, limit in MAX_LENGTHS.items():
        if len(values[name]) > limit:
            raise ContactError(f"{_label(name)} is longer than {limit} characters.")
    return ContactData(**values, tags=normalise_tags(data.tags))


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def canonical_tags(tags: Iterable[str]) -> list[str]:
    """``normalise_tags``, then each tag spelt as it already is in the directory ("p5" → "P5")."""
    tags = normalise_tags(tags)
    if not tags:
        return []
    query = sa.select(ContactTag.name).where(sa.func.lower(ContactTag.name).in_([t.lower() for t in tags]))
    known = {name.lower(): name for name in db.session.scalars(query.distinct())}
    return normalise_tags(known.get(tag.lower(), tag) for tag in tags)
