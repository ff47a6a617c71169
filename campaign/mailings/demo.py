"""Demo mailings: the demo letter sent to the Security Council's missions (drafted by one
coordinator, approved by the other, delivered to the outbox), and a draft to every mission
three days before the meeting, waiting for its approval."""

from __future__ import annotations

import click
import sqlalchemy as sa

from campaign.auth.models import User
from campaign.extensions import db
from campaign.letters.services import get_letter
from campaign.mailings import sending, services
from campaign.mailings.models import Mailing
from campaign.signatures.demo import DEMO_LETTER

SUBJECT = "{% if contact.language == 'fr' %}Lettre ouverte{% else %}Open letter{% endif %}: {{ letter.title }}"
INTRODUCTION = "\n\n".join(
    [
        "{{ contact.salutation }}",
        "On behalf of the {{ letter.signatories }} organisations of {{ coalition.name }}, we write ahead of "
        "{{ meeting.title }} ({{ meeting.date }}, {{ meeting.location }}).",
        "{% if 'P5' in contact.tags %}As a permanent member of the Security Council, {{ contact.country_name }} "
        "carries a particular responsibility for the commitments in this letter.{% endif %}",
        "The letter follows, and is attached as a PDF. We would welcome the opportunity to discuss it with "
        "your delegation.",
        "With the assurances of our highest consideration,\nThe secretariat of {{ coalition.name }}",
    ]
)


def load_mailings(author: User | None, approver: User | None) -> None:
    letter = get_letter(DEMO_LETTER)
    if letter is None or author is None or approver is None or not letter.is_published:
        click.echo("Mailings: the demo letter is not published; none added.")
        return
    if db.session.scalar(sa.select(sa.func.count()).select_from(Mailing).where(Mailing.letter_id == letter.id)):
        click.echo("Mailings: already there.")
        return
    council = services.create_mailing(
        services.MailingData(
            letter,
            SUBJECT,
            INTRODUCTION,
            name="Security Council missions",
            tags=["Security Council"],
            rate_per_minute=6000,
        ),
        actor=author,
    )
    services.approve(council, approver)
    services.request_send(council, {}, actor=author)
    db.session.commit()
    while sending.send_chunk(council.id):
        pass
    db.session.refresh(council)
    progress = sending.progress(council.id)
    click.echo(f"Mailings: '{council.name}' {council.status}, {progress.counts['sent']} messages in the outbox")
    everyone = services.create_mailing(
        services.MailingData(letter, SUBJECT, INTRODUCTION, name="Every mission, three days before the meeting"),
        actor=author,
    )
    db.session.commit()
    click.echo(f"  '{everyone.name}' waits for approval by a second coordinator at /admin/mailings/{everyone.id}")
