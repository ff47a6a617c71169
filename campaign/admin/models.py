"""The coalition's own settings: one row, edited by admins."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from campaign.db import utcnow
from campaign.extensions import db


class CoalitionSettings(db.Model):
    __tablename__ = "coalition_settings"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    name: Mapped[str] = mapped_column(sa.String(200), default="Demarche")
    #: Lines printed at the head of letters and emails (address, registration).
    letterhead: Mapped[str] = mapped_column(sa.Text, default="")
    #: Loaded only when read (the PDF, the logo route): pages ask ``logo_mimetype``, set with it.
    logo: Mapped[bytes | None] = mapped_column(sa.LargeBinary, deferred=True)
    logo_mimetype: Mapped[str | None] = mapped_column(sa.String(40))
    mail_from_name: Mapped[str] = mapped_column(sa.String(200), default="")
    mail_from_address: Mapped[str] = mapped_column(sa.String(254), default="")
    reply_to: Mapped[str] = mapped_column(sa.String(254), default="")
    postal_address: Mapped[str] = mapped_column(sa.Text, default="")
    privacy_notice: Mapped[str] = mapped_column(sa.Text, default="")
    #: The zone a contact gets when none is given (missions sit in New York or Geneva).
    default_timezone: Mapped[str] = mapped_column(sa.String(64), default="America/New_York")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
