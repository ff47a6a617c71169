"""Supporters who follow the coalition (subscribers and the topics they chose) and the
alerts sent to them, one delivery row per subscriber and alert."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaign.db import TimestampMixin, utcnow
from campaign.extensions import db
from campaign.mailings.models import DeliveryStatus


class TopicKind(enum.StrEnum):
    #: Built in: a letter opens for signatures, or a mailing of it has been delivered.
    LETTERS = "letters"
    #: Built in: a meeting the coalition follows is near.
    MEETINGS = "meetings"
    #: Listed by the coalition: a country (``country`` holds its ISO code).
    COUNTRY = "country"
    #: Listed by the coalition: a situation or theme.
    SITUATION = "situation"


#: The two topics every installation has, by key.
BUILTIN_TOPICS = {"letters": ("New letters", TopicKind.LETTERS), "meetings": ("Meetings", TopicKind.MEETINGS)}


class SubscriberStatus(enum.StrEnum):
    #: Asked to subscribe; the confirmation link has not been used (POST) yet.
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"


class AlertKind(enum.StrEnum):
    MANUAL = "manual"
    LETTER_OPENED = "letter_opened"
    MAILING_DELIVERED = "mailing_delivered"
    MEETING_SOON = "meeting_soon"


class AlertStatus(enum.StrEnum):
    DRAFT = "draft"
    #: Deliveries exist (or are being made) and wait for their due time.
    SCHEDULED = "scheduled"
    SENDING = "sending"
    #: No delivery is pending or in flight any more.
    FINISHED = "finished"
    CANCELLED = "cancelled"


_TOPIC_KINDS = ", ".join(f"'{k.value}'" for k in TopicKind)
_SUBSCRIBER_STATES = ", ".join(f"'{s.value}'" for s in SubscriberStatus)
_ALERT_KINDS = ", ".join(f"'{k.value}'" for k in AlertKind)
_ALERT_STATES = ", ".join(f"'{s.value}'" for s in AlertStatus)
_DELIVERY_STATES = ", ".join(f"'{s.value}'" for s in DeliveryStatus)


def new_token_key() -> str:
    return secrets.token_urlsafe(16)


class Topic(TimestampMixin, db.Model):
    """Something supporters can follow: new letters, meetings, a country or a situation."""

    __tablename__ = "alert_topics"
    __table_args__ = (sa.CheckConstraint(f"kind IN ({_TOPIC_KINDS})", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stable, URL-safe: ``letters``, ``meetings``, ``country-sd``, ``situation-darfur``.
    key: Mapped[str] = mapped_column(sa.String(80), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(12))
    label: Mapped[str] = mapped_column(sa.String(120))
    country: Mapped[str | None] = mapped_column(sa.String(2))
    position: Mapped[int] = mapped_column(default=0)
    #: Retired topics stay on the subscribers who chose them but are no longer offered.
    active: Mapped[bool] = mapped_column(default=True)

    def __repr__(self) -> str:
        return f"<Topic {self.key}>"


subscriber_topics = sa.Table(
    "subscriber_topics",
    db.metadata,
    sa.Column("subscriber_id", sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("topic_id", sa.ForeignKey("alert_topics.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Subscriber(TimestampMixin, db.Model):
    """A supporter who asked for alerts.  ``email`` is normalised (``normalise_email``) and unique,
    so no address is ever written to twice by one alert."""

    __tablename__ = "subscribers"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_SUBSCRIBER_STATES})", name="status"),
        sa.Index("ix_subscribers_status_language", "status", "language"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    language: Mapped[str] = mapped_column(sa.String(2))
    status: Mapped[str] = mapped_column(sa.String(12), default=SubscriberStatus.PENDING.value)
    #: Mixed into every signed link (confirm, preferences, unsubscribe): replacing it revokes them all.
    token_key: Mapped[str] = mapped_column(sa.String(40), default=new_token_key)
    #: The consent given: the text shown, its version, and when.
    consent_text: Mapped[str] = mapped_column(sa.Text, default="")
    consent_version: Mapped[str] = mapped_column(sa.String(40), default="")
    consented_at: Mapped[datetime | None]
    confirmation_sent_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    #: How: "one-click", "page", "sendgrid", "coordinator".
    unsubscribed_via: Mapped[str] = mapped_column(sa.String(20), default="")
    #: Set by a bounce or a spam report: no alert goes to the address while it is set.
    suppressed_at: Mapped[datetime | None]
    suppressed_reason: Mapped[str] = mapped_column(sa.String(500), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    topics: Mapped[list[Topic]] = relationship(secondary=subscriber_topics, order_by=Topic.position)

    @property
    def receives_alerts(self) -> bool:
        return self.status == SubscriberStatus.CONFIRMED and self.suppressed_at is None

    def __repr__(self) -> str:
        return f"<Subscriber {self.id} {self.status}>"


class Alert(TimestampMixin, db.Model):
    """A message to the subscribers who follow any of its topics, in their languages.

    Automatic alerts carry ``trigger_key`` (``letter_opened:12``): it is unique, so a trigger
    that fires twice makes one alert.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        sa.CheckConstraint(f"kind IN ({_ALERT_KINDS})", name="kind"),
        sa.CheckConstraint(f"status IN ({_ALERT_STATES})", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20), default=AlertKind.MANUAL.value)
    status: Mapped[str] = mapped_column(sa.String(12), default=AlertStatus.DRAFT.value, index=True)
    trigger_key: Mapped[str | None] = mapped_column(sa.String(80), unique=True)
    letter_id: Mapped[int | None] = mapped_column(sa.ForeignKey("letters.id", ondelete="SET NULL"), index=True)
    mailing_id: Mapped[int | None] = mapped_column(sa.ForeignKey("mailings.id", ondelete="SET NULL"))
    meeting_id: Mapped[int | None] = mapped_column(sa.ForeignKey("meetings.id", ondelete="SET NULL"))
    #: The audience: subscribers following any of these topics (ids of ``Topic``) …
    topic_ids: Mapped[list[int]] = mapped_column(sa.JSON, default=list)
    #: … whose language is one of these; empty means every language the alert has a text in.
    languages: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    #: The language of the original text; subscribers in a language without a text get this one.
    language: Mapped[str] = mapped_column(sa.String(2))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    send_requested_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    send_requested_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]

    texts: Mapped[list[AlertText]] = relationship(
        back_populates="alert", cascade="all, delete-orphan", order_by="AlertText.language"
    )
    letter = relationship("Letter")
    mailing = relationship("Mailing")
    meeting = relationship("Meeting")
    created_by = relationship("User", foreign_keys=[created_by_id])

    def text_for(self, language: str) -> AlertText | None:
        by_language = {t.language: t for t in self.texts}
        return by_language.get(language) or by_language.get(self.language)

    def __repr__(self) -> str:
        return f"<Alert {self.id} {self.kind} {self.status}>"


class AlertText(db.Model):
    """An alert's subject and Markdown body in one language (the original or a translation)."""

    __tablename__ = "alert_texts"
    __table_args__ = (sa.UniqueConstraint("alert_id", "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(sa.ForeignKey("alerts.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(sa.String(2))
    subject: Mapped[str] = mapped_column(sa.String(300))
    body: Mapped[str] = mapped_column(sa.Text, default="")

    alert: Mapped[Alert] = relationship(back_populates="texts")


class AlertDelivery(db.Model):
    """The promise to one subscriber: this alert reaches them once, or the reason it did not.

    The states and the sending rule are the mailings' (``DeliveryStatus``); ``email`` and
    ``language`` are copied when the delivery is made.  ``message_id`` is the provider's id
    of the request that carried it (one request carries up to 1,000 deliveries).
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("alert_id", "subscriber_id"),
        sa.CheckConstraint(f"status IN ({_DELIVERY_STATES})", name="status"),
        sa.Index("ix_alert_deliveries_claim", "alert_id", "status", "language", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    alert_id: Mapped[int] = mapped_column(sa.ForeignKey("alerts.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int | None] = mapped_column(sa.ForeignKey("subscribers.id", ondelete="SET NULL"), index=True)
    email: Mapped[str] = mapped_column(sa.String(254))
    language: Mapped[str] = mapped_column(sa.String(2))
    status: Mapped[str] = mapped_column(sa.String(12), default=DeliveryStatus.PENDING.value)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(160))
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    message_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    reason: Mapped[str] = mapped_column(sa.String(1000), default="")
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    alert: Mapped[Alert] = relationship()
    subscriber: Mapped[Subscriber | None] = relationship()

    def __repr__(self) -> str:
        return f"<AlertDelivery {self.id} {self.status}>"
