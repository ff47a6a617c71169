"""Mailings of a letter to mission contacts, one delivery row per contact, and their history."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaign.db import TimestampMixin, utcnow
from campaign.extensions import db


class MailingStatus(enum.StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    #: Deliveries exist and wait for their due time.
    SCHEDULED = "scheduled"
    SENDING = "sending"
    #: No delivery is pending or in flight any more (some may be failed or uncertain).
    FINISHED = "finished"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        return self.value.capitalize()


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    FAILED = "failed"
    #: The lease expired while sending, or the provider may have accepted it: never re-sent automatically.
    UNCERTAIN = "uncertain"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"


#: States a delivery leaves only by an event from the provider or a coordinator's decision.
SETTLED = frozenset(
    {
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.BOUNCED,
        DeliveryStatus.DROPPED,
        DeliveryStatus.FAILED,
        DeliveryStatus.SUPPRESSED,
        DeliveryStatus.CANCELLED,
    }
)
#: Counted as done by the progress bar: everything but pending and sending.
OPEN = frozenset({DeliveryStatus.PENDING, DeliveryStatus.SENDING})

_DELIVERY_STATES = ", ".join(f"'{s.value}'" for s in DeliveryStatus)
_MAILING_STATES = ", ".join(f"'{s.value}'" for s in MailingStatus)


class Mailing(TimestampMixin, db.Model):
    """A letter sent to an audience, with a subject and an introduction written as templates.

    ``version`` grows with every change of what recipients would receive; an approval
    holds for the version it was given to, so a change after approval withdraws it.
    """

    __tablename__ = "mailings"
    __table_args__ = (sa.CheckConstraint(f"status IN ({_MAILING_STATES})", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    letter_id: Mapped[int] = mapped_column(sa.ForeignKey("letters.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    status: Mapped[str] = mapped_column(sa.String(12), default=MailingStatus.DRAFT.value, index=True)
    version: Mapped[int] = mapped_column(default=1)
    subject: Mapped[str] = mapped_column(sa.String(500))
    introduction: Mapped[str] = mapped_column(sa.Text, default="")
    #: The audience: any of the tags, in the countries, speaking the languages; empty means no condition.
    tags: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    countries: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    languages: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    #: Messages a minute across all workers.
    rate_per_minute: Mapped[int] = mapped_column(default=600)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    #: Everyone who changed it since it was drafted: none of them may approve it.
    editor_ids: Mapped[list[int]] = mapped_column(sa.JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    approved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    approved_at: Mapped[datetime | None]
    approved_version: Mapped[int | None]
    #: Frozen at approval: the revision sent per language, and the signatory list printed.
    revisions: Mapped[dict[str, int]] = mapped_column(sa.JSON, default=dict)
    signatories: Mapped[list[list[str]]] = mapped_column(sa.JSON, default=list)

    #: How the send was asked for: {"at": iso} or {"before_meeting": "P3D", "local_time": "09:00"}.
    schedule: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    send_requested_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    send_requested_at: Mapped[datetime | None]
    first_due_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    cancelled_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    letter = relationship("Letter")
    created_by = relationship("User", foreign_keys=[created_by_id])
    approved_by = relationship("User", foreign_keys=[approved_by_id])
    send_requested_by = relationship("User", foreign_keys=[send_requested_by_id])

    @property
    def status_enum(self) -> MailingStatus:
        return MailingStatus(self.status)

    @property
    def is_approved(self) -> bool:
        return self.approved_at is not None and self.approved_version == self.version

    @property
    def editable(self) -> bool:
        return self.status in (MailingStatus.DRAFT, MailingStatus.APPROVED)

    def __repr__(self) -> str:
        return f"<Mailing {self.id} {self.status}>"


class Delivery(db.Model):
    """The promise to one contact: this mailing reaches them once, or the reason it did not.

    ``email``, ``language`` and ``country`` are copied when the delivery is made, so the
    record stays true when the contact changes or is deleted.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("mailing_id", "contact_id"),
        sa.CheckConstraint(f"status IN ({_DELIVERY_STATES})", name="status"),
        sa.Index("ix_deliveries_claim", "mailing_id", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mailing_id: Mapped[int] = mapped_column(sa.ForeignKey("mailings.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(sa.ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    email: Mapped[str] = mapped_column(sa.String(254))
    country: Mapped[str] = mapped_column(sa.String(2))
    language: Mapped[str] = mapped_column(sa.String(2))
    status: Mapped[str] = mapped_column(sa.String(12), default=DeliveryStatus.PENDING.value)
    due_at: Mapped[datetime]
    #: The worker holding the delivery while it sends, and until when.
    lease_owner: Mapped[str | None] = mapped_column(sa.String(160))
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    message_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    reason: Mapped[str] = mapped_column(sa.String(1000), default="")
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    mailing: Mapped[Mailing] = relationship()
    contact = relationship("Contact")
    events: Mapped[list[DeliveryEvent]] = relationship(
        back_populates="delivery", cascade="all, delete-orphan", order_by="DeliveryEvent.id"
    )

    def __repr__(self) -> str:
        return f"<Delivery {self.id} {self.email} {self.status}>"


class DeliveryEvent(db.Model):
    """A line of a delivery's history: claimed, sent, retried, lease expired, resolved, provider events."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(sa.ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(sa.String(40))
    detail: Mapped[str] = mapped_column(sa.String(1000), default="")
    #: Who or what: a worker id, a coordinator's email, "sendgrid".
    source: Mapped[str] = mapped_column(sa.String(254), default="")
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)

    delivery: Mapped[Delivery] = relationship(back_populates="events")


class EventOutcome(enum.StrEnum):
    """What a provider event did (``campaign.mailings.tracking``)."""

    #: Moved its delivery, or suppressed its contact.
    APPLIED = "applied"
    #: Kept in the delivery's history, changing nothing (late, informational, or it would go backwards).
    RECORDED = "recorded"
    #: Arrived while its delivery was still pending or sending: applied once the send is recorded.
    WAITING = "waiting"
    #: Names no delivery of this installation: kept and acknowledged, so the provider stops retrying.
    UNMATCHED = "unmatched"


_OUTCOMES = ", ".join(f"'{s.value}'" for s in EventOutcome)


class SendGridEvent(db.Model):
    """An event SendGrid's webhook posted, stored once: ``sg_event_id`` is unique, so an event
    posted again (SendGrid retries a batch it thinks failed) is recognised and ignored."""

    __tablename__ = "sendgrid_events"
    __table_args__ = (sa.CheckConstraint(f"outcome IN ({_OUTCOMES})", name="outcome"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sg_event_id: Mapped[str] = mapped_column(sa.String(128), unique=True)
    event: Mapped[str] = mapped_column(sa.String(40))
    #: The event's own ``timestamp``; None when it carried none.
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    email: Mapped[str] = mapped_column(sa.String(254), default="")
    sg_message_id: Mapped[str | None] = mapped_column(sa.String(255))
    delivery_id: Mapped[int | None] = mapped_column(sa.ForeignKey("deliveries.id", ondelete="SET NULL"), index=True)
    #: Or the alert delivery it concerns (``custom_args`` carry ``alert_delivery``).
    alert_delivery_id: Mapped[int | None] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("alert_deliveries.id", ondelete="SET NULL"),
        index=True,
    )
    outcome: Mapped[str] = mapped_column(sa.String(12), index=True)
    detail: Mapped[str] = mapped_column(sa.String(1000), default="")
    #: The event as SendGrid posted it.
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)

    delivery: Mapped[Delivery | None] = relationship()

    def __repr__(self) -> str:
        return f"<SendGridEvent {self.sg_event_id} {self.event} {self.outcome}>"


class MailingDocument(db.Model):
    """The letter's PDF for one mailing and language, rendered once and attached to every message."""

    __tablename__ = "mailing_documents"
    __table_args__ = (sa.UniqueConstraint("mailing_id", "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mailing_id: Mapped[int] = mapped_column(sa.ForeignKey("mailings.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(sa.String(2))
    revision_id: Mapped[int] = mapped_column(sa.ForeignKey("revisions.id", ondelete="RESTRICT"))
    filename: Mapped[str] = mapped_column(sa.String(200))
    content: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
