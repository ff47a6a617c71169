"""Subscribers: double opt-in, preferences, unsubscribing, their data, and the figures coordinators see.

The rules, for the pages and the API alike:

- ``subscribe`` answers the same whatever the address already is: a new or pending address
  gets a confirmation link, a confirmed one an "already subscribed" email with its
  preferences link, a suppressed one (bounces, spam reports) nothing.  No address gets
  more than one of these emails per ``RESEND_INTERVAL``.  A confirmed subscriber's
  preferences are never changed by the public form: only the signed preferences link does that.
- Confirmation is a POST (``confirm``); a GET of the link changes nothing.
- ``unsubscribe`` and ``suppress`` are what the SendGrid webhook calls too.  Deliveries of the
  subscriber still pending become ``suppressed`` with the reason, so the fan-out skips them
  visibly rather than silently.
- ``delete`` removes the subscriber and their topics.  Their alert deliveries stay (the alerts'
  delivery reports keep their counts) with the address blanked and no link to the subscriber;
  those still pending are cancelled.  SendGrid events about those deliveries lose the address
  and the raw event, and keep their id (so a replayed event stays a duplicate).

Functions flush; callers commit, then call ``dispatch_after_commit`` to send queued email.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import email_validator
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from campaign import queue
from campaign.admin.services import consent_wording
from campaign.alerts import tokens
from campaign.alerts.models import (
    AlertDelivery,
    Subscriber,
    SubscriberStatus,
    Topic,
    TopicKind,
    subscriber_topics,
)
from campaign.db import utcnow
from campaign.extensions import db
from campaign.forms import has_control_characters
from campaign.letters.models import UN_LANGUAGES
from campaign.mailings.models import DeliveryStatus, SendGridEvent
from campaign.queue import Job

#: At most one confirmation (or "already subscribed") email per address in this time.
RESEND_INTERVAL = timedelta(minutes=5)
#: RFC 5321: 254 characters in all, 64 before the @.
MAX_EMAIL, MAX_LOCAL = 254, 64
MAX_NAME = 200
BUILTIN_KINDS = (TopicKind.LETTERS.value, TopicKind.MEETINGS.value)
_AFTER_COMMIT = "alerts.after_commit_jobs"
CONSENT_MISSING = "Tick the box to agree to receive the alerts."


class SubscriberError(ValueError):
    """A rule refused the request; ``field`` names the form field at fault, if one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidEmail(SubscriberError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "email")


# --- input -------------------------------------------------------------------------------------


def normalise_email(raw: str) -> str:
    """The address as stored and compared: trimmed and lower-cased, or ``InvalidEmail``.

    Refused: control characters (CR, LF, NUL, tabs), anything email-validator does not
    accept as an address (no quoted local parts, no IP literals), and more than
    254 characters (64 before the @).
    """
    if not isinstance(raw, str):
        raise InvalidEmail("Give an email address.")
    if has_control_characters(raw):
        raise InvalidEmail("An email address is a single line without control characters.")
    value = raw.strip()
    if not value:
        raise InvalidEmail("Give an email address.")
    if len(value) > MAX_EMAIL:
        raise InvalidEmail(f"An email address has at most {MAX_EMAIL} characters.")
    if len(value.rpartition("@")[0]) > MAX_LOCAL:
        raise InvalidEmail(f"The part before the @ has at most {MAX_LOCAL} characters.")
    try:
        checked = email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise InvalidEmail(f"This is not a valid email address: {exc}") from None
    normalised = checked.normalized.lower()
    if len(normalised) > MAX_EMAIL:
        raise InvalidEmail(f"An email address has at most {MAX_EMAIL} characters.")
    return normalised


def clean_name(raw: str | None) -> str:
    value = raw or ""
    if has_control_characters(value):
        raise SubscriberError("Your name must be a single line.", "name")
    value = " ".join(value.split())
    if len(value) > MAX_NAME:
        raise SubscriberError(f"Your name has at most {MAX_NAME} characters.", "name")
    return value


def clean_language(raw: str | None) -> str:
    if raw not in UN_LANGUAGES:
        raise SubscriberError("Choose a language from the list.", "language")
    return raw


def offered_topics() -> list[Topic]:
    """The topics the subscribe and preferences forms offer: active ones, built-ins first."""
    builtin_first = sa.case((Topic.kind.in_(BUILTIN_KINDS), 0), else_=1)
    return list(
        db.session.scalars(
            sa.select(Topic).where(Topic.active.is_(True)).order_by(builtin_first, Topic.position, Topic.label)
        )
    )


def chosen_topics(topic_ids: Iterable[object], keep: Iterable[Topic] = ()) -> list[Topic]:
    """The offered topics with these ids, or ``SubscriberError``: an id not offered, or none chosen.

    ``keep``: retired topics the subscriber already follows, which they may keep ticked.
    """
    offered = {topic.id: topic for topic in offered_topics()}
    offered.update({topic.id: topic for topic in keep})
    wanted: list[Topic] = []
    for raw in topic_ids:
        try:
            topic_id = int(str(raw))
        except ValueError:
            raise SubscriberError("Choose topics from the list.", "topics") from None
        if topic_id not in offered:
            raise SubscriberError("Choose topics from the list.", "topics")
        if offered[topic_id] not in wanted:
            wanted.append(offered[topic_id])
    if not wanted:
        raise SubscriberError("Choose at least one topic.", "topics")
    return sorted(wanted, key=lambda topic: (topic.kind not in BUILTIN_KINDS, topic.position, topic.label))


# --- consent -----------------------------------------------------------------------------------


def consent_text() -> str:
    """What a subscriber agrees to, worded with the coalition's current settings."""
    name, notice = consent_wording()
    text = (
        f"I agree that {name} emails me alerts on the topics I chose, in the language I chose, "
        "and keeps my email address, name and choices for that purpose only. Every alert has a link "
        "to unsubscribe in one click; I can change my choices, export my data or delete it at any time."
    )
    notice = notice.strip()
    if notice:
        text += f" Privacy notice: {notice}"
    return text


def consent_version(text: str) -> str:
    """A short fingerprint of the wording: a new wording is a new version."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _record_consent(subscriber: Subscriber, text: str) -> None:
    subscriber.consent_text = text
    subscriber.consent_version = consent_version(text)
    subscriber.consented_at = utcnow()


# --- mail after commit ---------------------------------------------------------------------------


def _queue_email(subscriber: Subscriber, subject: str, template: str, **context: Any) -> Job:
    from campaign.mailings.notices import queue_email

    row = queue_email(subscriber.email, subject, template, subscriber=subscriber, **context)
    db.session.info.setdefault(_AFTER_COMMIT, []).append(row.id)
    subscriber.confirmation_sent_at = utcnow()
    return row


def dispatch_after_commit() -> int:
    """Hand the emails this session queued to the queue; call after the commit."""
    ids = db.session.info.pop(_AFTER_COMMIT, [])
    rows = [row for row in (db.session.get(Job, job_id) for job_id in ids) if row is not None]
    if rows:
        queue.dispatch(*rows)
    return len(rows)


def forget_queued() -> None:
    """Drop the emails of a rolled-back transaction from the list to dispatch."""
    db.session.info.pop(_AFTER_COMMIT, None)


# --- subscribing --------------------------------------------------------------------------------


@dataclass
class SubscribeRequest:
    email: str
    name: str = ""
    language: str = "en"
    topic_ids: Sequence[object] = field(default_factory=list)
    consent: bool = False
    #: The consent text the form showed; by default the current wording.
    consent_text: str | None = None


def problems(data: SubscribeRequest) -> dict[str, str]:
    """Every field of a subscribe request that ``subscribe`` would refuse, with the reason."""
    checks = (
        ("email", lambda: normalise_email(data.email)),
        ("name", lambda: clean_name(data.name)),
        ("language", lambda: clean_language(data.language)),
        ("topics", lambda: chosen_topics(data.topic_ids)),
    )
    found: dict[str, str] = {}
    for name, check in checks:
        try:
            check()
        except SubscriberError as error:
            found[error.field or name] = str(error)
    if not data.consent:
        found["consent"] = CONSENT_MISSING
    return found


def _find(email: str) -> Subscriber | None:
    return db.session.scalar(sa.select(Subscriber).where(Subscriber.email == email))


def _may_email(subscriber: Subscriber) -> bool:
    sent = subscriber.confirmation_sent_at
    return sent is None or utcnow() - sent >= RESEND_INTERVAL


def subscribe(data: SubscribeRequest) -> Subscriber:
    """Ask for alerts (double opt-in); flushes; idempotent and safe against a concurrent twin.

    Checks every field (``SubscriberError`` names the first wrong one), then:
    a new address becomes a pending subscriber with the consent recorded and a
    confirmation email queued; a pending or unsubscribed one takes the new choices and
    consent and gets a new confirmation email; a confirmed one is left as it is and gets an
    "already subscribed" email with its preferences link; a suppressed one gets nothing.
    No address gets a second email within ``RESEND_INTERVAL``.
    """
    email = normalise_email(data.email)
    name = clean_name(data.name)
    language = clean_language(data.language)
    topics = chosen_topics(data.topic_ids)
    if not data.consent:
        raise SubscriberError(CONSENT_MISSING, "consent")
    text = data.consent_text or consent_text()

    subscriber = _find(email)
    if subscriber is None:
        subscriber = Subscriber(email=email, name=name, language=language, topics=topics)
        _record_consent(subscriber, text)
        try:
            with db.session.begin_nested():
                db.session.add(subscriber)
        except IntegrityError:  # the same address, subscribing at the same moment: it is now known
            subscriber = _find(email)
            if subscriber is None:
                raise
        else:
            _queue_email(subscriber, "Confirm your subscription", "alert_confirm", link=tokens.confirm_url(subscriber))
            return subscriber

    if subscriber.status == SubscriberStatus.CONFIRMED:
        if subscriber.suppressed_at is None and _may_email(subscriber):
            _queue_email(
                subscriber, "You are already subscribed", "alert_already", link=tokens.preferences_url(subscriber)
            )
    else:
        subscriber.name, subscriber.language, subscriber.topics = name, language, topics
        subscriber.status = SubscriberStatus.PENDING.value
        _record_consent(subscriber, text)
        if subscriber.suppressed_at is None and _may_email(subscriber):
            _queue_email(subscriber, "Confirm your subscription", "alert_confirm", link=tokens.confirm_url(subscriber))
    db.session.flush()
    return subscriber


def confirm(subscriber: Subscriber) -> bool:
    """Complete the double opt-in (the POST of the confirmation page); flushes.

    True when the subscriber is confirmed afterwards (including when they already were);
    False when they are unsubscribed: an old confirmation link does not subscribe again.
    """
    if subscriber.status == SubscriberStatus.CONFIRMED:
        return True
    if subscriber.status != SubscriberStatus.PENDING:
        return False
    subscriber.status = SubscriberStatus.CONFIRMED.value
    subscriber.confirmed_at = utcnow()
    subscriber.unsubscribed_at = None
    subscriber.unsubscribed_via = ""
    db.session.flush()
    return True


def resume(subscriber: Subscriber, text: str | None = None) -> None:
    """Subscribe again from the preferences link (which proves the mailbox): confirmed at once,
    with the consent given now recorded; flushes."""
    _record_consent(subscriber, text or consent_text())
    subscriber.status = SubscriberStatus.PENDING.value
    confirm(subscriber)


def update_preferences(subscriber: Subscriber, name: str, language: str, topic_ids: Sequence[object]) -> None:
    """Change the name, language and topics (retired topics already followed may be kept); flushes."""
    cleaned = (clean_name(name), clean_language(language))
    retired = [topic for topic in subscriber.topics if not topic.active]
    subscriber.topics = chosen_topics(topic_ids, keep=retired)
    subscriber.name, subscriber.language = cleaned
    db.session.flush()


def _stop_pending(subscriber_id: int, status: DeliveryStatus, reason: str) -> None:
    db.session.execute(
        sa.update(AlertDelivery)
        .where(AlertDelivery.subscriber_id == subscriber_id, AlertDelivery.status == DeliveryStatus.PENDING.value)
        .values(status=status.value, reason=reason[:1000], updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def unsubscribe(subscriber: Subscriber, via: str) -> None:
    """Stop all alerts to the subscriber; idempotent (the first time and way are kept); flushes.

    ``via``: "one-click", "page", "sendgrid", "coordinator".  Pending deliveries become
    ``suppressed`` ("unsubscribed").
    """
    if subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED.value
        subscriber.unsubscribed_at = utcnow()
        subscriber.unsubscribed_via = via[:20]
    _stop_pending(subscriber.id, DeliveryStatus.SUPPRESSED, "unsubscribed")
    db.session.flush()


def suppress(subscriber: Subscriber, reason: str) -> None:
    """No alert goes to the address any more (a bounce, a spam report); flushes.

    The first suppression's time and reason are kept; pending deliveries become
    ``suppressed`` with the reason.
    """
    if subscriber.suppressed_at is None:
        subscriber.suppressed_at = utcnow()
        subscriber.suppressed_reason = (reason or "suppressed")[:500]
    _stop_pending(subscriber.id, DeliveryStatus.SUPPRESSED, f"address suppressed: {subscriber.suppressed_reason}")
    db.session.flush()


def delete(subscriber: Subscriber) -> int:
    """Delete the subscriber and what names them; flushes; returns how many deliveries were blanked.

    Deliveries stay for the alerts' reports, without address or subscriber; pending ones are
    cancelled.  SendGrid events about them keep only their id, type and outcome.
    """
    delivery_ids = sa.select(AlertDelivery.id).where(AlertDelivery.subscriber_id == subscriber.id)
    db.session.execute(
        sa.update(SendGridEvent)
        .where(sa.or_(SendGridEvent.alert_delivery_id.in_(delivery_ids), SendGridEvent.email == subscriber.email))
        .where(SendGridEvent.delivery_id.is_(None))
        .values(email="", data={}, detail="")
        .execution_options(synchronize_session=False)
    )
    _stop_pending(subscriber.id, DeliveryStatus.CANCELLED, "the subscriber deleted their data")
    blanked = db.session.execute(
        sa.update(AlertDelivery)
        .where(AlertDelivery.subscriber_id == subscriber.id)
        .values(email="", subscriber_id=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.delete(subscriber)
    db.session.flush()
    return blanked or 0


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def export(subscriber: Subscriber) -> dict[str, Any]:
    """Everything held about the subscriber, JSON-ready: details, consent, topics, deliveries."""
    deliveries = db.session.scalars(
        sa.select(AlertDelivery).where(AlertDelivery.subscriber_id == subscriber.id).order_by(AlertDelivery.id)
    )
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "language": subscriber.language,
        "status": subscriber.status,
        "topics": [{"key": t.key, "label": t.label, "kind": t.kind} for t in subscriber.topics],
        "consent": {
            "text": subscriber.consent_text,
            "version": subscriber.consent_version,
            "given_at": _stamp(subscriber.consented_at),
        },
        "created_at": _stamp(subscriber.created_at),
        "confirmation_sent_at": _stamp(subscriber.confirmation_sent_at),
        "confirmed_at": _stamp(subscriber.confirmed_at),
        "unsubscribed_at": _stamp(subscriber.unsubscribed_at),
        "unsubscribed_via": subscriber.unsubscribed_via or None,
        "suppressed_at": _stamp(subscriber.suppressed_at),
        "suppressed_reason": subscriber.suppressed_reason or None,
        "alert_deliveries": [
            {
                "alert": delivery.alert_id,
                "subject": text.subject if (text := delivery.alert.text_for(delivery.language)) else None,
                "email": delivery.email,
                "language": delivery.language,
                "status": delivery.status,
                "sent_at": _stamp(delivery.sent_at),
                "reason": delivery.reason or None,
            }
            for delivery in deliveries
        ],
    }


# --- coordinators ---------------------------------------------------------------------------------


@dataclass
class SubscriberFilter:
    q: str = ""
    #: A ``SubscriberStatus`` value, or "suppressed".
    status: str = ""
    topic: int | None = None
    language: str = ""


FILTER_STATES = (*(s.value for s in SubscriberStatus), "suppressed")


def filter_query(criteria: SubscriberFilter) -> sa.Select:
    """Subscribers matching the filters, newest first."""
    query = sa.select(Subscriber).order_by(Subscriber.created_at.desc(), Subscriber.id.desc())
    q = " ".join(criteria.q.split()).lower()
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            sa.or_(
                Subscriber.email.like(pattern, escape="\\"), sa.func.lower(Subscriber.name).like(pattern, escape="\\")
            )
        )
    if criteria.status == "suppressed":
        query = query.where(Subscriber.suppressed_at.is_not(None))
    elif criteria.status:
        query = query.where(Subscriber.status == criteria.status)
    if criteria.topic is not None:
        follows = sa.select(subscriber_topics.c.subscriber_id).where(subscriber_topics.c.topic_id == criteria.topic)
        query = query.where(Subscriber.id.in_(follows))
    if criteria.language:
        query = query.where(Subscriber.language == criteria.language)
    return query


def topic_id_for(key_or_id: str) -> int | None:
    """The id of the topic with this key (or this id), None when there is none."""
    condition = Topic.key == key_or_id
    if key_or_id.isdigit() and len(key_or_id) < 10:
        condition = sa.or_(condition, Topic.id == int(key_or_id))
    return db.session.scalar(sa.select(Topic.id).where(condition).limit(1))


def get_subscriber(subscriber_id: int) -> Subscriber | None:
    return db.session.get(Subscriber, subscriber_id)


_RECEIVING = sa.and_(Subscriber.status == SubscriberStatus.CONFIRMED.value, Subscriber.suppressed_at.is_(None))


def status_counts() -> dict[str, int]:
    """How many subscribers are in each state, "suppressed" (any state) and "receiving" (alerts go to them)."""
    counts = {s.value: 0 for s in SubscriberStatus}
    counts.update(db.session.execute(sa.select(Subscriber.status, sa.func.count()).group_by(Subscriber.status)).all())
    counts["suppressed"] = db.session.scalar(
        sa.select(sa.func.count()).select_from(Subscriber).where(Subscriber.suppressed_at.is_not(None))
    )
    counts["receiving"] = db.session.scalar(sa.select(sa.func.count()).select_from(Subscriber).where(_RECEIVING))
    return counts


def counts_by_language() -> list[tuple[str, int]]:
    """(language, subscribers receiving alerts) in the UN's order of languages; every language listed."""
    found = dict(
        db.session.execute(
            sa.select(Subscriber.language, sa.func.count()).where(_RECEIVING).group_by(Subscriber.language)
        ).all()
    )
    return [(code, found.get(code, 0)) for code in UN_LANGUAGES] + [
        (code, n) for code, n in sorted(found.items()) if code not in UN_LANGUAGES
    ]


def counts_by_topic(include_retired: bool = True) -> list[tuple[Topic, int]]:
    """(topic, subscribers receiving alerts who follow it), built-ins first, topics with none included."""
    receiving = (
        sa.select(subscriber_topics.c.topic_id, sa.func.count().label("n"))
        .join(Subscriber, Subscriber.id == subscriber_topics.c.subscriber_id)
        .where(_RECEIVING)
        .group_by(subscriber_topics.c.topic_id)
        .subquery()
    )
    builtin_first = sa.case((Topic.kind.in_(BUILTIN_KINDS), 0), else_=1)
    query = (
        sa.select(Topic, sa.func.coalesce(receiving.c.n, 0))
        .outerjoin(receiving, receiving.c.topic_id == Topic.id)
        .order_by(builtin_first, Topic.position, Topic.label)
    )
    if not include_retired:
        query = query.where(Topic.active.is_(True))
    return [(topic, int(n)) for topic, n in db.session.execute(query).all()]


@dataclass(frozen=True)
class GrowthPoint:
    start: date
    joined: int
    left: int
    #: Subscribers confirmed and not unsubscribed at the end of the period.
    total: int


def _bucket(column: Any, by: str) -> Any:
    if db.engine.dialect.name == "sqlite":
        return sa.func.date(column) if by == "day" else sa.func.date(column, "weekday 0", "-6 days")
    utc = sa.func.timezone("UTC", column)
    return sa.cast(utc if by == "day" else sa.func.date_trunc("week", utc), sa.Date)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def growth(by: str = "week") -> list[GrowthPoint]:
    """Confirmations and unsubscriptions per day or week (weeks start on Monday), grouped in SQL,
    with the running total of subscribers; every period from the first to the last, gaps filled."""
    if by not in ("day", "week"):
        raise ValueError("by is 'day' or 'week'")
    joined_bucket = _bucket(Subscriber.confirmed_at, by)
    joined = {
        _as_date(start): n
        for start, n in db.session.execute(
            sa.select(joined_bucket, sa.func.count())
            .where(Subscriber.confirmed_at.is_not(None))
            .group_by(joined_bucket)
        ).all()
    }
    left_bucket = _bucket(Subscriber.unsubscribed_at, by)
    left = {
        _as_date(start): n
        for start, n in db.session.execute(
            sa.select(left_bucket, sa.func.count())
            .where(
                Subscriber.status == SubscriberStatus.UNSUBSCRIBED.value,
                Subscriber.unsubscribed_at.is_not(None),
                Subscriber.confirmed_at.is_not(None),
            )
            .group_by(left_bucket)
        ).all()
    }
    if not joined and not left:
        return []
    step = timedelta(days=1 if by == "day" else 7)
    current, last = min(joined.keys() | left.keys()), max(joined.keys() | left.keys())
    points, total = [], 0
    while current <= last:
        total += joined.get(current, 0) - left.get(current, 0)
        points.append(GrowthPoint(current, joined.get(current, 0), left.get(current, 0), total))
        current += step
    return points


# --- topics -------------------------------------------------------------------------------------


def _topic_label(raw: str) -> str:
    if has_control_characters(raw or ""):
        raise SubscriberError("The label must be a single line.", "label")
    label = " ".join((raw or "").split())
    if not label:
        raise SubscriberError("Give the topic a label.", "label")
    if len(label) > 120:
        raise SubscriberError("A label has at most 120 characters.", "label")
    return label


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = "".join(ch if ch.isalnum() else " " for ch in ascii_text).split()
    return "-".join(words)[:60] or "topic"


def add_topic(kind: str, label: str, country: str | None = None) -> Topic:
    """List a country (ISO 3166-1 alpha-2 code) or a situation supporters can follow; flushes."""
    import pycountry

    if kind not in (TopicKind.COUNTRY.value, TopicKind.SITUATION.value):
        raise SubscriberError("A new topic is a country or a situation.", "kind")
    label = _topic_label(label)
    if kind == TopicKind.COUNTRY:
        code = (country or "").strip().upper()
        if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
            raise SubscriberError("Choose a country from the list.", "country")
        key = f"country-{code.lower()}"
    else:
        code, key = None, f"situation-{_slug(label)}"
    base, n = key, 2
    while db.session.scalar(sa.select(Topic.id).where(Topic.key == key)) is not None:
        if kind == TopicKind.COUNTRY:
            raise SubscriberError("This country is already a topic.", "country")
        key, n = f"{base}-{n}", n + 1
    position = (db.session.scalar(sa.select(sa.func.max(Topic.position))) or 0) + 1
    topic = Topic(key=key, kind=kind, label=label, country=code, position=position, active=True)
    db.session.add(topic)
    db.session.flush()
    return topic


def rename_topic(topic: Topic, label: str) -> None:
    topic.label = _topic_label(label)
    db.session.flush()


def set_topic_active(topic: Topic, active: bool) -> None:
    """Retire a topic (no longer offered; its followers keep it) or offer it again; built-ins stay."""
    if topic.kind in BUILTIN_KINDS and not active:
        raise SubscriberError("New letters and meetings are always offered.")
    topic.active = active
    db.session.flush()
