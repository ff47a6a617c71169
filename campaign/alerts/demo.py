"""Demo subscribers: the countries and situations the demo letter speaks of as topics, and
thirty supporters in five languages who joined over the past ten weeks: most confirmed,
some awaiting confirmation, one unsubscribed and one suppressed after a bounce.

Loading again adds only what is missing; no email is sent.
"""

from __future__ import annotations

from datetime import timedelta

import click
import sqlalchemy as sa

from campaign.alerts import subscribers
from campaign.alerts.models import Subscriber, SubscriberStatus, Topic, TopicKind
from campaign.db import utcnow
from campaign.extensions import db

# (kind, label, country)
TOPICS = [
    (TopicKind.COUNTRY, "Sudan", "SD"),
    (TopicKind.COUNTRY, "Syria", "SY"),
    (TopicKind.COUNTRY, "Mali", "ML"),
    (TopicKind.SITUATION, "Explosive weapons in populated areas", None),
    (TopicKind.SITUATION, "Attacks on health care", None),
    (TopicKind.SITUATION, "Humanitarian access", None),
]

_NAMES = {
    "en": ["Grace Okafor", "Tom Whitfield", "Priya Raman", "Daniel Mensah", "Helen Carter", "Samuel Ortiz"],
    "fr": ["Amina Diallo", "Luc Moreau", "Claire Fontaine", "Ousmane Traoré", "Élise Bernard", "Jean Kaboré"],
    "es": ["Lucía Fernández", "Mateo Rojas", "Valentina Cruz", "Diego Herrera", "Camila Vargas"],
    "ar": ["ليلى حداد", "عمر الخطيب", "سارة منصور", "يوسف العلي", "نور إبراهيم"],
    "ru": ["Анна Смирнова", "Илья Петров", "Мария Козлова"],
    "zh": ["王芳", "李明", "陈静", "张伟", "刘洋"],
}


def load_topics() -> list[Topic]:
    """The demo topics, added where missing; all offered topics, built-ins first."""
    existing = set(db.session.scalars(sa.select(Topic.label)))
    for kind, label, country in TOPICS:
        if label not in existing:
            subscribers.add_topic(kind.value, label, country)
    return subscribers.offered_topics()


def load_subscribers() -> None:
    topics = load_topics()
    now = utcnow()
    consent = subscribers.consent_text()
    people = [(language, name) for language, names in _NAMES.items() for name in names]
    added = 0
    for n, (language, name) in enumerate(people, start=1):
        email = f"supporter{n:02d}.{language}@example.org"
        if db.session.scalar(sa.select(Subscriber.id).where(Subscriber.email == email)) is not None:
            continue
        joined = now - timedelta(days=70 - 2 * n, hours=n)
        chosen = [topics[0], *topics[2 + n % 4 :: 3]] if n % 3 else topics[:2]
        subscriber = Subscriber(
            email=email,
            name=name,
            language=language,
            topics=chosen,
            consent_text=consent,
            consent_version=subscribers.consent_version(consent),
            consented_at=joined,
            confirmation_sent_at=joined,
            created_at=joined,
        )
        if n % 7 == 0:
            subscriber.status = SubscriberStatus.PENDING.value
        else:
            subscriber.status = SubscriberStatus.CONFIRMED.value
            subscriber.confirmed_at = joined + timedelta(minutes=12)
        db.session.add(subscriber)
        db.session.flush()
        if n == 5:
            subscribers.unsubscribe(subscriber, "one-click")
        elif n == 11:
            subscribers.suppress(subscriber, "bounce: mailbox does not exist")
        added += 1
    db.session.commit()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Subscriber))
    click.echo(f"Subscribers: {added} added, {total} in all; {len(topics)} topics offered.")


#: The demo's alert written by hand and sent, in three languages, and the draft beside it.
SENT_ALERT = {
    "en": ("Ahead of the ministerial meeting: add your voice", "We have written to every Permanent Mission ahead of "
           "the ministerial meeting. **Read the letter**, share it, and ask your organisation to co-sign:\n\n"
           "[The open letter]({url})"),
    "fr": ("Avant la réunion ministérielle : faites-vous entendre", "Nous avons écrit à toutes les missions "
           "permanentes avant la réunion ministérielle. **Lisez la lettre**, partagez-la et proposez à votre "
           "organisation de la cosigner :\n\n[La lettre ouverte]({url})"),
    "es": ("Antes de la reunión ministerial: sume su voz", "Hemos escrito a todas las misiones permanentes antes de "
           "la reunión ministerial. **Lea la carta**, compártala y pida a su organización que la firme:\n\n"
           "[La carta abierta]({url})"),
}  # fmt: skip
DRAFT_ALERT = (
    "Briefing: what to ask your mission before the meeting",
    "Three questions to put to your country's mission this week:\n\n"
    "1. Will it support the commitments in the letter?\n"
    "2. Who will speak for it at the meeting?\n"
    "3. How will it report back?",
)


def load_alerts(author: object) -> None:
    """One alert already sent to the demo subscribers (through the sending code, to the outbox)
    and one draft waiting; nothing is added when the sent one exists."""
    from campaign.alerts import sending, services
    from campaign.alerts.models import Alert, AlertText
    from campaign.signatures.demo import DEMO_LETTER
    from campaign.signatures.services import external_url

    subject = SENT_ALERT["en"][0]
    if db.session.scalar(sa.select(AlertText.id).where(AlertText.subject == subject)) is not None:
        click.echo("Alerts: already there.")
        return
    letters = db.session.scalar(sa.select(Topic.id).where(Topic.key == "letters"))
    meetings = db.session.scalar(sa.select(Topic.id).where(Topic.key == "meetings"))
    url = external_url("public.letter", slug=DEMO_LETTER)
    texts = [services.AlertTextData(code, title, body.format(url=url)) for code, (title, body) in SENT_ALERT.items()]
    sent = services.create_alert(services.AlertData(texts[0], [letters], texts[1:]), actor=author)
    db.session.commit()
    try:
        services.request_send(sent, author)
    except services.AlertError as exc:
        click.echo(f"Alerts: the demo alert was not sent: {exc}")
    else:
        while sending.send_chunk(sent.id):  # with Redis too: sent from here, like the demo mailing
            pass
        sending.finish_if_done(sent.id)
    progress = sending.progress(sent.id)
    click.echo(f"Alerts: '{subject}' {db.session.get(Alert, sent.id).status}, {progress.counts['sent']} in the outbox")
    draft = services.create_alert(
        services.AlertData(services.AlertTextData("en", *DRAFT_ALERT), [meetings]), actor=author
    )
    db.session.commit()
    click.echo(f"  a draft waits at /admin/alerts/{draft.id}")
