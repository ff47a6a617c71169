"""Letters, their revisions and translations, and the meetings they are written for."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from campaign.db import TimestampMixin, utcnow
from campaign.extensions import db

#: The six official languages of the United Nations, in the UN's order.
UN_LANGUAGES = {
    "ar": "العربية",
    "zh": "中文",
    "en": "English",
    "fr": "Français",
    "ru": "Русский",
    "es": "Español",
}
LANGUAGE_NAMES_EN = {"ar": "Arabic", "zh": "Chinese", "en": "English", "fr": "French", "ru": "Russian", "es": "Spanish"}
RTL_LANGUAGES = frozenset({"ar"})


class LetterStatus(enum.StrEnum):
    DRAFT = "draft"
    REVIEW = "review"
    OPEN = "open"
    CLOSED = "closed"
    SENT = "sent"

    @property
    def label(self) -> str:
        return {
            "draft": "Draft",
            "review": "In review",
            "open": "Open for signatures",
            "closed": "Closed",
            "sent": "Sent",
        }[self.value]


#: Statuses whose letters are public (once any embargo has passed).
PUBLISHED = frozenset({LetterStatus.OPEN, LetterStatus.CLOSED, LetterStatus.SENT})


class TranslationStatus(enum.StrEnum):
    DRAFT = "draft"
    REVIEW = "review"
    PUBLISHED = "published"


class Meeting(TimestampMixin, db.Model):
    """A meeting letters are written for; times are local to its place."""

    __tablename__ = "meetings"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    location: Mapped[str] = mapped_column(sa.String(300), default="")
    #: Wall-clock times in ``timezone`` (kept local: zone rules change, the agenda does not).
    starts_at_local: Mapped[datetime] = mapped_column(sa.DateTime(timezone=False))
    ends_at_local: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=False))
    timezone: Mapped[str] = mapped_column(sa.String(64))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    #: ``starts_at_local`` in UTC, kept for ordering and scheduling.
    starts_at: Mapped[datetime] = mapped_column(index=True)

    letters: Mapped[list[Letter]] = relationship(back_populates="meeting")

    def _aware(self, local: datetime | None) -> datetime | None:
        return local.replace(tzinfo=ZoneInfo(self.timezone)) if local else None

    @property
    def starts_at_aware(self) -> datetime:
        return self._aware(self.starts_at_local)

    @property
    def ends_at_aware(self) -> datetime | None:
        return self._aware(self.ends_at_local)

    def refresh_utc(self) -> None:
        self.starts_at = self.starts_at_aware.astimezone(UTC)


class Letter(TimestampMixin, db.Model):
    __tablename__ = "letters"
    __table_args__ = (sa.CheckConstraint("status IN ('draft', 'review', 'open', 'closed', 'sent')", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(120), unique=True)
    language: Mapped[str] = mapped_column(sa.String(2), default="en")
    status: Mapped[str] = mapped_column(sa.String(12), default=LetterStatus.DRAFT.value, index=True)
    signature_deadline: Mapped[datetime | None]
    embargo_until: Mapped[datetime | None]
    meeting_id: Mapped[int | None] = mapped_column(sa.ForeignKey("meetings.id", ondelete="SET NULL"), index=True)
    #: The latest revision of the original.
    current_revision_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("revisions.id", use_alter=True, ondelete="SET NULL")
    )
    #: The revision the public, the signers and the mailings see, frozen at publication.
    published_revision_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("revisions.id", use_alter=True, ondelete="SET NULL")
    )
    published_at: Mapped[datetime | None]
    #: Only member organisations may sign (no public sign-on form).
    members_only: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    meeting: Mapped[Meeting | None] = relationship(back_populates="letters")
    current_revision: Mapped[Revision | None] = relationship(foreign_keys=[current_revision_id], post_update=True)
    published_revision: Mapped[Revision | None] = relationship(foreign_keys=[published_revision_id], post_update=True)
    translations: Mapped[list[Translation]] = relationship(
        back_populates="letter", cascade="all, delete-orphan", order_by="Translation.language"
    )

    @property
    def status_enum(self) -> LetterStatus:
        return LetterStatus(self.status)

    @property
    def title(self) -> str:
        revision = self.current_revision
        return revision.title if revision else self.slug

    @property
    def is_published(self) -> bool:
        return self.status_enum in PUBLISHED and self.published_revision_id is not None

    def is_public(self, now: datetime | None = None) -> bool:
        """Published, and past any embargo."""
        now = now or utcnow()
        return self.is_published and (self.embargo_until is None or self.embargo_until <= now)

    def accepts_signatures(self, now: datetime | None = None) -> bool:
        """Open and before the deadline: checked when read, whatever jobs ran."""
        now = now or utcnow()
        return self.status_enum is LetterStatus.OPEN and (
            self.signature_deadline is None or now < self.signature_deadline
        )

    def translation(self, language: str) -> Translation | None:
        return next((t for t in self.translations if t.language == language), None)

    def __repr__(self) -> str:
        return f"<Letter {self.slug} {self.status}>"


class Revision(db.Model):
    """One saved version of a letter's text, in one language; never changed after saving."""

    __tablename__ = "revisions"
    __table_args__ = (sa.UniqueConstraint("letter_id", "language", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    letter_id: Mapped[int] = mapped_column(sa.ForeignKey("letters.id", ondelete="CASCADE"), index=True)
    language: Mapped[str] = mapped_column(sa.String(2))
    number: Mapped[int]
    title: Mapped[str] = mapped_column(sa.String(300))
    addressee: Mapped[str] = mapped_column(sa.Text, default="")
    body_markdown: Mapped[str] = mapped_column(sa.Text)
    #: The sanitised HTML of ``body_markdown``, rendered once when saved.
    body_html: Mapped[str] = mapped_column(sa.Text)
    note: Mapped[str] = mapped_column(sa.String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    letter: Mapped[Letter] = relationship(foreign_keys=[letter_id])
    author = relationship("User")


class Translation(TimestampMixin, db.Model):
    """A letter in another UN language, with a status of its own."""

    __tablename__ = "translations"
    __table_args__ = (
        sa.UniqueConstraint("letter_id", "language"),
        sa.CheckConstraint("status IN ('draft', 'review', 'published')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    letter_id: Mapped[int] = mapped_column(sa.ForeignKey("letters.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(sa.String(2))
    status: Mapped[str] = mapped_column(sa.String(12), default=TranslationStatus.DRAFT.value)
    current_revision_id: Mapped[int | None] = mapped_column(sa.ForeignKey("revisions.id", ondelete="SET NULL"))
    published_revision_id: Mapped[int | None] = mapped_column(sa.ForeignKey("revisions.id", ondelete="SET NULL"))
    #: The revision of the original this translation was made from.
    source_revision_id: Mapped[int | None] = mapped_column(sa.ForeignKey("revisions.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    letter: Mapped[Letter] = relationship(back_populates="translations")
    current_revision: Mapped[Revision | None] = relationship(foreign_keys=[current_revision_id])
    published_revision: Mapped[Revision | None] = relationship(foreign_keys=[published_revision_id])
    source_revision: Mapped[Revision | None] = relationship(foreign_keys=[source_revision_id])

    @property
    def is_rtl(self) -> bool:
        return self.language in RTL_LANGUAGES

    @property
    def is_outdated(self) -> bool:
        """Made from an older revision of the original than the published one (or, unpublished, the current)."""
        reference = self.letter.published_revision_id or self.letter.current_revision_id
        return self.source_revision_id is not None and self.source_revision_id != reference


class LetterPdf(db.Model):
    """A rendered PDF, kept per revision and signatory list so it is made once."""

    __tablename__ = "letter_pdfs"
    __table_args__ = (sa.UniqueConstraint("revision_id", "signatories_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    letter_id: Mapped[int] = mapped_column(sa.ForeignKey("letters.id", ondelete="CASCADE"), index=True)
    revision_id: Mapped[int] = mapped_column(sa.ForeignKey("revisions.id", ondelete="CASCADE"))
    #: A digest of the signatory list printed in it (and of the letterhead).
    signatories_key: Mapped[str] = mapped_column(sa.String(64))
    content: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
