"""Demo mailings: the demo letter sent to the Security Council's missions (drafted by one
coordinator, approved by the other, delivered to the outbox, then reported on as SendGrid would
report it, so its delivery report has something to show), and a draft to every mission three
days before the meeting, waiting for its approval."""

from __future__ import annotations

import secrets
import time

import click
import sqlalchemy as sa

from campaign import queue
from campaign.auth.models import User
from campaign.extensions import db
from campaign.letters.services import get_letter
from campaign.mailings import sending, services, tracking
from campaign.mailings.models import Delivery, DeliveryStatus, Mailing
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
    job = services.render_documents_later(council)
    db.session.commit()
    queue.dispatch(job)
    services.request_send(council, {}, actor=author)
    db.session.commit()
    while sending.send_chunk(council.id):
        pass
    track_demo_deliveries(council.id)
    db.session.refresh(council)
    progress = sending.progress(council.id)
    click.echo(
        f"Mailings: '{council.name}' {council.status}, {progress.total} messages in the outbox "
        f"({progress.counts['delivered']} reported delivered, {progress.counts['bounced']} bounced): "
        f"see its report at /admin/mailings/{council.id}/report"
    )
    everyone = services.create_mailing(
        services.MailingData(letter, SUBJECT, INTRODUCTION, name="Every mission, three days before the meeting"),
        actor=author,
    )
    db.session.commit()
    click.echo(f"  '{everyone.name}' waits for approval by a second coordinator at /admin/mailings/{everyone.id}")


#: The demo contact whose message bounces (its mission keeps its New York contact).
BOUNCING = "geneva.fr@missions.example.org"
#: The demo contact whose message stays sent, with no report from the provider yet.
UNREPORTED = "pm.us@missions.example.org"


def track_demo_deliveries(mailing_id: int) -> None:
    """Events as SendGrid's webhook would post them, applied by the real tracking code: every
    message processed and delivered, but one that bounces and one not reported on yet."""
    deliveries = db.session.scalars(
        sa.select(Delivery)
        .where(Delivery.mailing_id == mailing_id, Delivery.status == DeliveryStatus.SENT.value)
        .order_by(Delivery.id)
    ).all()
    now = int(time.time())
    events = []
    for delivery in deliveries:
        if delivery.email == UNREPORTED:
            continue
        common = {"email": delivery.email, "delivery": str(delivery.id), "mailing": str(mailing_id)}
        events.append(common | {"event": "processed", "timestamp": now, "sg_event_id": secrets.token_urlsafe(16)})
        if delivery.email == BOUNCING:
            events.append(common | {"event": "bounce", "type": "bounce", "status": "5.1.1", "timestamp": now + 40,
                                    "reason": "550 5.1.1 The email account that you tried to reach does not exist",
                                    "sg_event_id": secrets.token_urlsafe(16)})  # fmt: skip
        else:
            events.append(common | {"event": "delivered", "response": "250 2.0.0 OK", "timestamp": now + 30,
                                    "sg_event_id": secrets.token_urlsafe(16)})  # fmt: skip
    tracking.receive(events)
    db.session.commit()
