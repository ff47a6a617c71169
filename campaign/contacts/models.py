"""Mission contacts, their tags and history, and saved audiences."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaign.db import TimestampMixin, utcnow
from campaign.extensions import db


class Suppression(enum.StrEnum):
    """Why mail to a contact is not sent; ``None`` on the contact means deliverable."""

    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    MANUAL = "manual"

    @property
    def label(self) -> str:
        return {"bounced": "Bounced", "complained": "Marked as spam", "unsubscribed": "Unsubscribed",
                "manual": "Set by hand"}[self.value]  # fmt: skip


class Contact(TimestampMixin, db.Model):
    __tablename__ = "contacts"
    __table_args__ = (
        sa.CheckConstraint(
            "suppression IS NULL OR suppression IN ('bounced', 'complained', 'unsubscribed', 'manual')",
            name="suppression",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stored lower-cased: addresses are compared case-insensitively.
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    country: Mapped[str] = mapped_column(sa.String(2), index=True)
    organisation: Mapped[str] = mapped_column(sa.String(300), default="")
    honorific: Mapped[str] = mapped_column(sa.String(80), default="")
    given_name: Mapped[str] = mapped_column(sa.String(120), default="")
    family_name: Mapped[str] = mapped_column(sa.String(120), default="")
    position: Mapped[str] = mapped_column(sa.String(300), default="")
    #: How a letter to this contact opens, e.g. "Excellency," — written by protocol, not derived.
    salutation: Mapped[str] = mapped_column(sa.String(300), default="")
    language: Mapped[str] = mapped_column(sa.String(2), default="en", index=True)
    timezone: Mapped[str] = mapped_column(sa.String(64))
    suppression: Mapped[str | None] = mapped_column(sa.String(20), index=True)
    suppression_reason: Mapped[str] = mapped_column(sa.String(500), default="")
    suppressed_at: Mapped[datetime | None]
    #: Set when a bounce or complaint says the address should be checked again.
    needs_verification: Mapped[bool] = mapped_column(default=False)
    last_verified_at: Mapped[datetime | None]
    notes: Mapped[str] = mapped_column(sa.Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tag_rows: Mapped[list[ContactTag]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="ContactTag.name"
    )
    events: Mapped[list[ContactEvent]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="ContactEvent.id.desc()"
    )

    @property
    def tags(self) -> list[str]:
        return [row.name for row in self.tag_rows]

    @property
    def deliverable(self) -> bool:
        return self.suppression is None

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.honorific, self.given_name, self.family_name) if part)

    def __repr__(self) -> str:
        return f"<Contact {self.email} {self.country}>"


class ContactTag(db.Model):
    __tablename__ = "contact_tags"

    contact_id: Mapped[int] = mapped_column(sa.ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True, index=True)

    contact: Mapped[Contact] = relationship(back_populates="tag_rows")


class ContactEvent(db.Model):
    """A line of a contact's history: created, updated, imported, suppressed, …"""

    __tablename__ = "contact_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(sa.ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_email: Mapped[str | None] = mapped_column(sa.String(254))
    kind: Mapped[str] = mapped_column(sa.String(40))
    summary: Mapped[str] = mapped_column(sa.String(500), default="")
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)

    contact: Mapped[Contact] = relationship(back_populates="events")


class Audience(TimestampMixin, db.Model):
    """A saved selection of contacts: any of the tags, in the countries, speaking the languages.

    An empty list places no condition.
    """

    __tablename__ = "audiences"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    tags: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    countries: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    languages: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
