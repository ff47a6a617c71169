"""A small world for mailing tests: a published letter with translations and a meeting,
contacts in several languages and scripts, and two coordinators; made through the services."""

# ruff: noqa: RUF001, E501 - names in Arabic, Chinese and Cyrillic scripts; one contact a line

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask

from campaign.contacts import services as contacts
from campaign.contacts.validation import ContactData
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters.services import MeetingData
from campaign.mailings import services
from campaign.mailings.models import Mailing
from tests import factories
from tests.letters.publishing import TRANSLATIONS, publish

#: (country, email, honorific, given, family, salutation, language, tags, timezone)
CONTACTS = (
    ("IE", "oneill@mission.example", "H.E. Ms", "Siobhán", "O'Neill", "Excellency,", "en", ["P5", "EU"], "America/New_York"),
    ("FR", "dupont@mission.example", "S.E. M.", "Jean", "Dupont", "Excellence,", "fr", ["P5"], "Europe/Paris"),
    ("EG", "hassan@mission.example", "H.E. Mr", "أحمد", "حسن", "سعادة السفير،", "ar", [], "Africa/Cairo"),
    ("CN", "wang@mission.example", "H.E. Mr", "伟", "王", "尊敬的大使阁下：", "zh", ["P5"], "Asia/Shanghai"),
    ("RU", "ivanov@mission.example", "H.E. Mr", "Иван", "Иванов", "Ваше Превосходительство,", "ru", [], "Europe/Moscow"),
    ("AR", "garcia@mission.example", "Excma. Sra.", "Lucía", "García", "Excelentísima Señora:", "es", [], "America/Argentina/Buenos_Aires"),
)  # fmt: skip


@dataclass(frozen=True)
class World:
    letter_id: int
    letter_slug: str
    author: factories.Account
    approver: factories.Account
    contact_ids: list[int]


def make_world(app: Flask, *, meeting_in: timedelta = timedelta(days=10), suppressed: int = 0) -> World:
    """Committed: a letter published in English with French and Arabic translations, six contacts
    (the first ``suppressed`` of them suppressed as bounced) and two coordinators."""
    starts = (utcnow() + meeting_in).replace(tzinfo=None, second=0, microsecond=0)
    meeting = MeetingData(title="Ministerial meeting on civilians", location="New York",
                          starts_at_local=starts, ends_at_local=None, timezone="America/New_York")  # fmt: skip
    translations = {language: TRANSLATIONS[language] for language in ("fr", "ar")}
    letter = publish(app, translations=translations, meeting=meeting)
    with app.app_context():
        author = factories.Account.of(factories.user("coordinator"))
        approver = factories.Account.of(factories.user("coordinator"))
        ids = []
        for index, (country, email, honorific, given, family, salutation, language, tags, tz) in enumerate(CONTACTS):
            contact = contacts.create_contact(
                ContactData(
                    country=country,
                    email=email,
                    organisation=f"Permanent Mission of {country}",
                    honorific=honorific,
                    given_name=given,
                    family_name=family,
                    salutation=salutation,
                    language=language,
                    tags=tags,
                    timezone=tz,
                )
            )
            if index < suppressed:
                contacts.suppress(contact, "bounced", "mailbox full")
            ids.append(contact.id)
        db.session.commit()
    return World(letter.id, letter.slug, author, approver, ids)


def draft(app: Flask, world: World, **fields: object) -> int:
    """A draft mailing by ``world.author``; returns its id."""
    from campaign.auth.models import User
    from campaign.letters.models import Letter

    with app.app_context():
        values = {"subject": "Open letter: {{ letter.title }}",
                  "introduction": "{{ contact.salutation }}\n\nWe enclose our letter ahead of {{ meeting.title }}.",
                  "rate_per_minute": 100_000} | fields  # fmt: skip
        data = services.MailingData(letter=db.session.get(Letter, world.letter_id), **values)
        mailing = services.create_mailing(data, actor=db.session.get(User, world.author.id))
        db.session.commit()
        return mailing.id


def approved(app: Flask, world: World, **fields: object) -> int:
    from campaign.auth.models import User

    mailing_id = draft(app, world, **fields)
    with app.app_context():
        services.approve(db.session.get(Mailing, mailing_id), db.session.get(User, world.approver.id))
        db.session.commit()
    return mailing_id


def at(days: int = 0, hours: int = 0) -> datetime:
    return utcnow() + timedelta(days=days, hours=hours)
