"""The coalition's settings and the audit log queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import available_timezones

import sqlalchemy as sa
from flask import g

from campaign import audit
from campaign.admin.models import CoalitionSettings
from campaign.audit import AuditEvent
from campaign.extensions import db

#: Where most missions sit; what contacts get until an admin chooses otherwise.
DEFAULT_TIMEZONE = "America/New_York"


class SettingsError(ValueError):
    """The settings given break a rule; the message is for the admin."""


#: Accepted logo formats by their leading bytes.  SVG is refused: it can carry script.
_LOGO_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}


#: The coalition's name until an admin saves one.
DEFAULT_NAME = "Demarche"


def get_settings() -> CoalitionSettings:
    """The settings row, or unsaved defaults before an admin first saves them (cached per request)."""
    cached = g.get("coalition_settings")
    if cached is None:
        cached = db.session.get(CoalitionSettings, 1) or CoalitionSettings(
            id=1, name=DEFAULT_NAME, default_timezone=DEFAULT_TIMEZONE
        )
        g.coalition_settings = cached
    return cached


_WORDING = sa.select(CoalitionSettings.name, CoalitionSettings.privacy_notice).where(CoalitionSettings.id == 1)


def consent_wording() -> tuple[str, str]:
    """The coalition's name and privacy notice, which consent texts quote: from the settings
    this request loaded, else from those two columns alone (a form's post, answered with a
    redirect, needs nothing else of them)."""
    settings = g.get("coalition_settings")
    if settings is None:
        row = db.session.execute(_WORDING).first()
        return (row.name, row.privacy_notice or "") if row is not None else (DEFAULT_NAME, "")
    return settings.name, settings.privacy_notice or ""


def logo_mimetype(data: bytes) -> str | None:
    for signature, mimetype in _LOGO_SIGNATURES.items():
        if data.startswith(signature):
            return mimetype
    return None


@dataclass
class SettingsData:
    name: str
    letterhead: str
    mail_from_name: str
    mail_from_address: str
    reply_to: str
    postal_address: str
    privacy_notice: str
    #: The zone a contact gets when none is given: an IANA name (Geneva's is Europe/Zurich).
    default_timezone: str = DEFAULT_TIMEZONE


def update_settings(
    data: SettingsData, logo: bytes | None = None, remove_logo: bool = False, max_logo: int = 512 * 1024
) -> CoalitionSettings:
    """Save the settings; a logo must be a PNG or JPEG no larger than ``max_logo`` bytes."""
    for label, value in (("Sender name", data.mail_from_name), ("Coalition name", data.name)):
        if "\r" in value or "\n" in value:
            raise SettingsError(f"{label} must be on one line.")
    if data.default_timezone not in available_timezones():
        raise SettingsError(f"{data.default_timezone!r} is not a time zone of the IANA database.")
    settings = db.session.get(CoalitionSettings, 1)
    if settings is None:
        settings = CoalitionSettings(id=1, default_timezone=DEFAULT_TIMEZONE)
        db.session.add(settings)
    if logo:
        if len(logo) > max_logo:
            raise SettingsError(f"The logo is larger than {max_logo // 1024} KiB.")
        mimetype = logo_mimetype(logo)
        if mimetype is None:
            raise SettingsError("The logo must be a PNG or JPEG image.")
        settings.logo, settings.logo_mimetype = logo, mimetype
    elif remove_logo:
        settings.logo, settings.logo_mimetype = None, None
    changed = sorted(k for k, v in vars(data).items() if getattr(settings, k) != v)
    for key, value in vars(data).items():
        setattr(settings, key, value)
    db.session.flush()
    g.coalition_settings = settings
    audit.record("settings.update", settings, "Updated coalition settings", fields=changed, logo=bool(logo))
    return settings


@dataclass
class AuditFilter:
    actor: str = ""
    action: str = ""
    object_type: str = ""
    since: date | None = None
    until: date | None = None


def audit_query(f: AuditFilter) -> sa.Select:
    query = sa.select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    if f.actor:
        query = query.where(AuditEvent.actor_email.icontains(f.actor, autoescape=True))
    if f.action:
        query = query.where(AuditEvent.action.startswith(f.action, autoescape=True))
    if f.object_type:
        query = query.where(AuditEvent.object_type == f.object_type)
    if f.since:
        query = query.where(AuditEvent.created_at >= datetime.combine(f.since, time(), UTC))
    if f.until:
        query = query.where(AuditEvent.created_at < datetime.combine(f.until + timedelta(days=1), time(), UTC))
    return query


def audit_choices() -> tuple[list[str], list[str]]:
    """The actions and the object types in the log, each sorted, from one query."""
    pairs = db.session.execute(sa.select(AuditEvent.action, AuditEvent.object_type).distinct()).all()
    actions = sorted({action for action, _ in pairs})
    object_types = sorted({object_type for _, object_type in pairs if object_type is not None})
    return actions, object_types
