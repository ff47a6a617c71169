"""Co-signatures of letters by organisations, their history, and invitations to sign."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaign.db import TimestampMixin, utcnow
from campaign.extensions import db


class SignatureStatus(enum.StrEnum):
    PENDING_VERIFICATION = "pending_verification"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"

    @property
    def label(self) -> str:
        return {
            "pending_verification": "Awaiting email confirmation",
            "pending_approval": "Awaiting approval",
            "approved": "Signed",
            "rejected": "Rejected",
            "withdrawn": "Withdrawn",
        }[self.value]


class SignatureSource(enum.StrEnum):
    MEMBER = "member"  # a member organisation's representative, signed in
    PUBLIC = "public"  # the public sign-on form: verified by email, then moderated
    COORDINATOR = "coordinator"  # entered by the secretariat


class Signature(TimestampMixin, db.Model):
    """One organisation's signature of one letter; history is kept in ``SignatureEvent``."""

    __tablename__ = "signatures"
    __table_args__ = (
        sa.UniqueConstraint("letter_id", "organisation_key"),
        sa.CheckConstraint(
            "status IN ('pending_verification', 'pending_approval', 'approved', 'rejected', 'withdrawn')",
            name="status",
        ),
        sa.Index("ix_signatures_letter_id_status", "letter_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    letter_id: Mapped[int] = mapped_column(sa.ForeignKey("letters.id", ondelete="CASCADE"))
    #: The organisation's record, when it has one (always for members).
    organisation_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="SET NULL"), index=True
    )
    #: The name as it is shown, and folded for comparison (``organisation_name_key``).
    organisation_name: Mapped[str] = mapped_column(sa.String(200))
    organisation_key: Mapped[str] = mapped_column(sa.String(200))
    country: Mapped[str] = mapped_column(sa.String(2))
    website: Mapped[str | None] = mapped_column(sa.String(300))
    signer_name: Mapped[str] = mapped_column(sa.String(200))
    signer_title: Mapped[str] = mapped_column(sa.String(200), default="")
    #: Lower-cased; never shown publicly.
    signer_email: Mapped[str] = mapped_column(sa.String(254))
    status: Mapped[str] = mapped_column(sa.String(24))
    source: Mapped[str] = mapped_column(sa.String(12))
    #: The revision of the letter's text the organisation signed.
    revision_id: Mapped[int | None] = mapped_column(sa.ForeignKey("revisions.id", ondelete="SET NULL"))
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    consent_text: Mapped[str] = mapped_column(sa.Text, default="")
    consent_at: Mapped[datetime | None]
    verified_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    rejection_reason: Mapped[str] = mapped_column(sa.String(500), default="")
    withdrawn_at: Mapped[datetime | None]
    #: Set when the published text changed substantively after signing.
    needs_reconfirmation: Mapped[bool] = mapped_column(default=False)
    reconfirmed_at: Mapped[datetime | None]
    #: When the signature counts publicly (approval), for charts and ordering.
    approved_at: Mapped[datetime | None] = mapped_column(index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    letter = relationship("Letter")
    organisation = relationship("Organisation")
    revision = relationship("Revision")
    events: Mapped[list[SignatureEvent]] = relationship(
        back_populates="signature", cascade="all, delete-orphan", order_by="SignatureEvent.id"
    )

    @property
    def status_enum(self) -> SignatureStatus:
        return SignatureStatus(self.status)


class SignatureEvent(db.Model):
    __tablename__ = "signature_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    signature_id: Mapped[int] = mapped_column(sa.ForeignKey("signatures.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_email: Mapped[str | None] = mapped_column(sa.String(254))
    kind: Mapped[str] = mapped_column(sa.String(40))
    summary: Mapped[str] = mapped_column(sa.String(500), default="")
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)

    signature: Mapped[Signature] = relationship(back_populates="events")


class Invitation(db.Model):
    """A member organisation invited to sign a letter, and the reminder sent."""

    __tablename__ = "invitations"
    __table_args__ = (sa.UniqueConstraint("letter_id", "organisation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    letter_id: Mapped[int] = mapped_column(sa.ForeignKey("letters.id", ondelete="CASCADE"))
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisations.id", ondelete="CASCADE"))
    invited_at: Mapped[datetime] = mapped_column(default=utcnow)
    invited_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    reminded_at: Mapped[datetime | None]

    letter = relationship("Letter")
    organisation = relationship("Organisation")
