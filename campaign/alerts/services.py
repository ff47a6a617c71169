"""The life of an alert as coordinators see it: written (with translations), previewed, tested,
sent once to its audience, or cancelled.

An alert is a draft until sending is asked; only drafts change.  Its audience is the
confirmed subscribers who follow any of its topics, in its languages (``audience_languages``),
counted by query and never loaded.  Functions flush and record audit events; callers
commit, then hand the returned job to the queue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app

from campaign import audit, queue
from campaign.alerts import render, sending
from campaign.alerts.models import (
    Alert,
    AlertDelivery,
    AlertKind,
    AlertStatus,
    AlertText,
    Subscriber,
    SubscriberStatus,
    Topic,
    new_token_key,
)
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters.models import UN_LANGUAGES
from campaign.mailings.backends import HeaderInjectionError, Message, has_line_break
from campaign.mailings.models import DeliveryStatus
from campaign.queue import Job, job

log = logging.getLogger(__name__)

#: Longest subject (the column's size) and body an alert may have.
MAX_SUBJECT = 300
MAX_BODY = 20_000
#: What a stand-in subscriber is called in previews.
SAMPLE_NAMES = {"ar": "ليلى", "zh": "李明", "en": "Alex Morgan", "fr": "Camille Martin", "ru": "Анна", "es": "Lucía"}


class AlertError(ValueError):
    """An alert action refused by the rules; the message is for the coordinator."""


@dataclass
class AlertTextData:
    """An alert's subject and Markdown body in one language."""

    language: str
    subject: str
    body: str


@dataclass
class AlertData:
    """What a coordinator writes: the original text, its translations, topics and languages."""

    original: AlertTextData
    topic_ids: list[int]
    translations: list[AlertTextData] = field(default_factory=list)
    #: Empty: every language the alert has a text in.
    languages: list[str] = field(default_factory=list)


def get_alert(alert_id: int) -> Alert | None:
    return db.session.get(Alert, alert_id)


def active_topics() -> list[Topic]:
    return list(db.session.scalars(sa.select(Topic).where(Topic.active.is_(True)).order_by(Topic.position, Topic.id)))


def topics_by_key(keys: list[str]) -> tuple[list[int], list[str]]:
    """The ids of the active topics named by ``keys``, and the keys that name none."""
    found = dict(
        db.session.execute(sa.select(Topic.key, Topic.id).where(Topic.key.in_(keys), Topic.active.is_(True))).all()
    )
    return [found[key] for key in keys if key in found], [key for key in keys if key not in found]


def _check_text(text: AlertTextData, what: str) -> AlertTextData:
    if text.language not in UN_LANGUAGES:
        raise AlertError(f"The language of the {what} must be one of {', '.join(UN_LANGUAGES)}.")
    subject = text.subject or ""
    if has_line_break(subject):
        raise AlertError(f"The subject of the {what} must be a single line.")
    subject = " ".join(subject.split())
    if not subject or len(subject) > MAX_SUBJECT:
        raise AlertError(f"The subject of the {what} is required and has at most {MAX_SUBJECT} characters.")
    body = (text.body or "").strip()
    if not body or len(body) > MAX_BODY:
        raise AlertError(f"The text of the {what} is required and has at most {MAX_BODY:,} characters.")
    if "\x00" in subject or "\x00" in body:
        raise AlertError(f"The {what} must not contain a NUL character.")
    for part in (subject, body):
        problem = render.tag_problem(part)
        if problem:
            raise AlertError(f"The {what} cannot be used: {problem}.")
    return AlertTextData(text.language, subject, body)


def _check(data: AlertData) -> AlertData:
    original = _check_text(data.original, "original")
    translations: dict[str, AlertTextData] = {}
    for text in data.translations:
        name = f"{UN_LANGUAGES.get(text.language, text.language)} translation"
        if text.language == original.language:
            raise AlertError(f"The {name} is in the original's language: write it as the original.")
        if text.language in translations:
            raise AlertError(f"The {name} is given twice.")
        translations[text.language] = _check_text(text, name)
    wanted = sorted({int(topic_id) for topic_id in data.topic_ids})
    if not wanted:
        raise AlertError("Choose at least one topic: the alert goes to the subscribers who follow it.")
    known = set(db.session.scalars(sa.select(Topic.id).where(Topic.id.in_(wanted), Topic.active.is_(True))))
    if len(known) != len(wanted):
        raise AlertError("Topics must be among those offered to subscribers.")
    languages = {language.strip().lower() for language in data.languages if language.strip()}
    if languages - UN_LANGUAGES.keys():
        raise AlertError(f"Languages must be among {', '.join(UN_LANGUAGES)}.")
    ordered = [language for language in UN_LANGUAGES if language in languages]
    return AlertData(original, wanted, [translations[k] for k in UN_LANGUAGES if k in translations], ordered)


def _apply(alert: Alert, data: AlertData) -> None:
    alert.language, alert.topic_ids, alert.languages = data.original.language, data.topic_ids, data.languages
    wanted = {text.language: text for text in (data.original, *data.translations)}
    for existing in list(alert.texts):
        if existing.language not in wanted:
            alert.texts.remove(existing)
    have = {text.language: text for text in alert.texts}
    for language, text in wanted.items():
        row = have.get(language)
        if row is None:
            alert.texts.append(AlertText(language=language, subject=text.subject, body=text.body))
        else:
            row.subject, row.body = text.subject, text.body


def _differs(alert: Alert, data: AlertData) -> bool:
    texts = {t.language: (t.subject, t.body) for t in alert.texts}
    wanted = {t.language: (t.subject, t.body) for t in (data.original, *data.translations)}
    return (alert.language, list(alert.topic_ids), list(alert.languages), texts) != (
        data.original.language,
        data.topic_ids,
        data.languages,
        wanted,
    )


def create_alert(data: AlertData, actor: Any = None, kind: AlertKind = AlertKind.MANUAL) -> Alert:
    """A draft alert; the caller commits."""
    data = _check(data)
    alert = Alert(kind=kind.value, status=AlertStatus.DRAFT.value, created_by_id=getattr(actor, "id", None))
    _apply(alert, data)
    db.session.add(alert)
    db.session.flush()
    audit.record("alerts.create", alert, f"Drafted alert {alert.id}: {data.original.subject}", actor=actor)
    return alert


def update_alert(alert: Alert, data: AlertData, actor: Any = None) -> bool:
    """Change a draft; returns whether anything changed.  Once sending is asked it is final."""
    if alert.status != AlertStatus.DRAFT:
        raise AlertError(f"A {alert.status} alert can no longer be changed.")
    data = _check(data)
    if not _differs(alert, data):
        return False
    _apply(alert, data)
    db.session.flush()
    audit.record("alerts.update", alert, f"Changed alert {alert.id}: {data.original.subject}", actor=actor)
    return True


# --- the audience ----------------------------------------------------------------------------


def audience_languages(alert: Alert) -> list[str]:
    """The subscribers' languages the alert goes to: its ``languages``, or, when it names none,
    every language it has a text in.  A subscriber whose language has no text reads the original."""
    return sending.audience_languages(alert)


def audience_query(alert: Alert) -> sa.Select:
    """The ids of the confirmed subscribers the alert is for (suppressed ones included): the
    query ``sending.start`` makes the deliveries from."""
    return sending.audience(alert)


@dataclass(frozen=True)
class Audience:
    """Who an alert reaches, per subscriber language: those it is sent to, and the suppressed."""

    by_language: dict[str, int]
    suppressed: int

    @property
    def total(self) -> int:
        return sum(self.by_language.values())


def audience_count(alert: Alert) -> Audience:
    """The alert's audience counted by language in one query (nothing loaded)."""
    deliverable = Subscriber.suppressed_at.is_(None)
    rows = db.session.execute(
        audience_query(alert)
        .with_only_columns(Subscriber.language, deliverable, sa.func.count())
        .group_by(Subscriber.language, deliverable)
    ).all()
    by_language = dict.fromkeys(audience_languages(alert), 0)
    suppressed = 0
    for language, deliverable, count in rows:
        if deliverable:
            by_language[language] = by_language.get(language, 0) + count
        else:
            suppressed += count
    return Audience(by_language, suppressed)


# --- sending ---------------------------------------------------------------------------------


def request_send(alert: Alert, actor: Any = None, at: datetime | None = None) -> int:
    """Send a draft now, or at ``at``: one delivery per subscriber of the audience, made now,
    due then.  Two requests at once: one wins, the other is refused.

    Commits (with the deliveries) and hands the sending job to the queue; returns how many
    deliveries were made.
    """
    if alert.status != AlertStatus.DRAFT:
        raise AlertError(f"Only a draft can be sent; this alert is {alert.status}.")
    if alert.text_for(alert.language) is None:
        raise AlertError("The alert has no text in its original language.")
    if not alert.topic_ids:
        raise AlertError("The alert has no topic: choose who it is for.")
    if at is not None and at.tzinfo is None:
        raise AlertError("Give the time to send at with its time zone.")
    if not audience_count(alert).total:
        raise AlertError("No confirmed subscriber follows these topics in these languages: there is no one to send to.")
    now = utcnow()
    due = max(at, now) if at is not None else now
    later = due > now
    won = db.session.execute(
        sa.update(Alert)
        .where(Alert.id == alert.id, Alert.status == AlertStatus.DRAFT.value)
        .values(
            status=(AlertStatus.SCHEDULED if later else AlertStatus.SENDING).value,
            send_requested_by_id=getattr(actor, "id", None),
            send_requested_at=now,
            due_at=due,
            started_at=None if later else now,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not won:
        raise AlertError("This alert is already being sent, or changed meanwhile.")
    db.session.refresh(alert)
    when = f"at {due:%Y-%m-%d %H:%M} UTC" if later else "now"
    audit.record("alerts.send", alert, f"Asked to send alert {alert.id} {when}", actor=actor)
    try:
        return sending.start(alert, actor, due_at=due)
    except sending.AlertStateError as exc:
        raise AlertError(f"The alert cannot be sent: {exc}.") from exc


def cancel(alert: Alert, actor: Any = None) -> int:
    """Stop an alert: pending deliveries are cancelled (recorded, with who did it); those in
    flight finish.  A draft is set aside unsent.  Returns how many deliveries were cancelled."""
    if alert.status in (AlertStatus.FINISHED, AlertStatus.CANCELLED):
        raise AlertError(f"The alert is already {alert.status}.")
    now = utcnow()
    won = db.session.execute(
        sa.update(Alert)
        .where(Alert.id == alert.id, Alert.status == alert.status)
        .values(status=AlertStatus.CANCELLED.value, cancelled_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not won:
        raise AlertError("The alert changed meanwhile; reload it.")
    reason = f"cancelled by {getattr(actor, 'email', None) or 'a coordinator'}"
    cancelled = db.session.execute(
        sa.update(AlertDelivery)
        .where(AlertDelivery.alert_id == alert.id, AlertDelivery.status == DeliveryStatus.PENDING.value)
        .values(status=DeliveryStatus.CANCELLED.value, reason=reason, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(alert)
    audit.record("alerts.cancel", alert, f"Cancelled alert {alert.id} ({cancelled} not sent)", actor=actor)
    return int(cancelled or 0)


# --- previews and tests ----------------------------------------------------------------------


def sample_subscriber(language: str, email: str = "sample@example.org", name: str | None = None) -> Subscriber:
    """A subscriber that is never saved, for previews and test sends: its links lead nowhere
    (no subscriber has id 0), so a test message cannot unsubscribe anyone."""
    return Subscriber(
        id=0,
        email=email,
        name=SAMPLE_NAMES.get(language, "") if name is None else name,
        language=language,
        status=SubscriberStatus.CONFIRMED.value,
        token_key=new_token_key(),
    )


def preview(alert: Alert, language: str) -> Message:
    """The message a subscriber reading ``language`` receives (the original's text where the
    alert has none in that language)."""
    if language not in UN_LANGUAGES:
        raise AlertError(f"Preview in one of {', '.join(UN_LANGUAGES)}.")
    try:
        return render.message_for_subscriber(alert, sample_subscriber(language), language)
    except LookupError as exc:
        raise AlertError("The alert has no text to preview yet.") from exc


def test_send(alert: Alert, actor: Any, language: str | None = None) -> Job:
    """Queue the alert, as a subscriber reading ``language`` receives it, to the coordinator's
    own address, with "[Test]" before the subject; the caller commits and dispatches."""
    language = language or alert.language
    preview(alert, language)  # refuses what cannot be rendered, now rather than in the worker
    audit.record("alerts.test", alert, f"Test send of alert {alert.id} ({language}) to {actor.email}", actor=actor)
    return queue.schedule(
        "alert.test",
        {"alert_id": alert.id, "to": actor.email, "name": getattr(actor, "name", "") or "", "language": language},
        description=f"Test of alert {alert.id} to {actor.email}",
        created_by=actor,
    )


@job("alert.test", queue="high", max_attempts=3)
def send_test(row: Job, alert_id: int, to: str, name: str, language: str) -> None:
    """Send the test message of an alert: the same message, headers included, a subscriber gets."""
    alert = db.session.get(Alert, alert_id)
    if alert is None:
        row.message = "not sent: the alert no longer exists"
        return
    try:
        message = render.message_for_subscriber(alert, sample_subscriber(language, to, name), language)
    except (LookupError, HeaderInjectionError, ValueError) as exc:
        row.message = f"not sent: {exc}"[:500]
        return
    message = Message(
        to=[to],
        subject=f"[Test] {message.subject}",
        text=message.text,
        html=message.html,
        sender=message.sender,
        reply_to=message.reply_to,
        headers=message.headers,
        categories=("alert-test",),
    )
    result = current_app.extensions["mail_backend"].send(message)
    if result.retryable:
        raise RuntimeError(f"the mail backend could not send now: {result.error}")
    if not result.ok:
        row.message = f"not sent: {result.error}"[:500]
        log.warning("job %s: test of alert %s to %s not sent: %s", row.id, alert_id, to, result.error)


# --- reports ---------------------------------------------------------------------------------


def counts_by_language(alert: Alert) -> dict[str, dict[str, int]]:
    """Deliveries per language and state (one GROUP BY): ``{"fr": {"sent": 120, …}, …}``."""
    rows = db.session.execute(
        sa.select(AlertDelivery.language, AlertDelivery.status, sa.func.count())
        .where(AlertDelivery.alert_id == alert.id)
        .group_by(AlertDelivery.language, AlertDelivery.status)
    ).all()
    found: dict[str, dict[str, int]] = {}
    for language, status, count in rows:
        found.setdefault(language, dict.fromkeys((s.value for s in DeliveryStatus), 0))[status] = count
    return {language: found[language] for language in sorted(found, key=_language_order)}


def _language_order(language: str) -> int:
    order = list(UN_LANGUAGES)
    return order.index(language) if language in order else len(order)


#: States that need a coordinator's eye on an alert's report.
TROUBLE = (
    DeliveryStatus.FAILED.value,
    DeliveryStatus.UNCERTAIN.value,
    DeliveryStatus.BOUNCED.value,
    DeliveryStatus.DROPPED.value,
)


def troubled_deliveries(alert: Alert, limit: int = 100) -> list[AlertDelivery]:
    """The first deliveries that failed, bounced, were dropped or are uncertain, with the reason."""
    return list(
        db.session.scalars(
            sa.select(AlertDelivery)
            .where(AlertDelivery.alert_id == alert.id, AlertDelivery.status.in_(TROUBLE))
            .order_by(AlertDelivery.id)
            .limit(limit)
        )
    )
