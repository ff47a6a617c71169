"""Rules for letters: revisions on every save, the workflow, translations, meetings.

Functions flush and record audit events; callers commit.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, available_timezones

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from campaign import audit
from campaign.auth.services import slugify
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters.models import (
    PUBLISHED,
    UN_LANGUAGES,
    Letter,
    LetterStatus,
    Meeting,
    Revision,
    Translation,
    TranslationStatus,
)
from campaign.rendering import render

MAX_BODY = 200_000
#: Addresses the coordinators' pages use (/admin/letters/new, …/preview): no letter may take them.
RESERVED_SLUGS = frozenset({"new", "preview", "history", "signer-data"})


class LetterError(ValueError):
    """A request about letters that breaks a rule; the message is for the user."""


#: The moves coordinators may make, from each status.
TRANSITIONS: dict[LetterStatus, tuple[LetterStatus, ...]] = {
    LetterStatus.DRAFT: (LetterStatus.REVIEW,),
    LetterStatus.REVIEW: (LetterStatus.DRAFT, LetterStatus.OPEN),
    LetterStatus.OPEN: (LetterStatus.CLOSED,),
    LetterStatus.CLOSED: (LetterStatus.OPEN, LetterStatus.SENT),
    LetterStatus.SENT: (),
}


@dataclass
class LetterText:
    title: str
    body_markdown: str
    addressee: str = ""
    note: str = ""


def _check_text(text: LetterText) -> LetterText:
    title = " ".join(text.title.split())
    if not title:
        raise LetterError("A letter needs a title.")
    if len(title) > 300:
        raise LetterError("Keep the title under 300 characters.")
    if not text.body_markdown.strip():
        raise LetterError("The letter has no text.")
    if len(text.body_markdown) > MAX_BODY:
        raise LetterError(f"The text is longer than {MAX_BODY:,} characters.")
    if any("\x00" in part for part in (text.title, text.body_markdown, text.addressee, text.note)):
        raise LetterError("The text contains a NUL character.")
    body = text.body_markdown.replace("\r\n", "\n")
    addressee = text.addressee.replace("\r\n", "\n").strip()
    return LetterText(title=title, body_markdown=body, addressee=addressee, note=" ".join(text.note.split())[:500])


def get_letter(slug: str) -> Letter | None:
    return db.session.scalar(sa.select(Letter).where(Letter.slug == slug))


def _free_slug(base: str) -> str:
    base = base[:110] or "letter"
    slug, n = base, 2
    while slug in RESERVED_SLUGS or get_letter(slug) is not None:
        slug, n = f"{base}-{n}", n + 1
    return slug


def _title_slug(title: str) -> str:
    # slugify keeps ASCII only and falls back to "organisation": an Arabic, Chinese or
    # Russian title has no ASCII letters, so its letter is called "letter" (then "letter-2", …).
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return slugify(title) if re.search(r"[A-Za-z0-9]", ascii_title) else "letter"


def check_language(language: str) -> str:
    if language not in UN_LANGUAGES:
        raise LetterError(f"{language!r} is not one of the UN languages ({', '.join(UN_LANGUAGES)}).")
    return language


def _next_number(letter: Letter, language: str) -> int:
    latest = db.session.scalar(
        sa.select(sa.func.max(Revision.number)).where(Revision.letter_id == letter.id, Revision.language == language)
    )
    return (latest or 0) + 1


def _new_revision(letter: Letter, language: str, text: LetterText, author: object) -> Revision:
    revision = Revision(
        letter_id=letter.id,
        language=language,
        number=_next_number(letter, language),
        title=text.title,
        addressee=text.addressee,
        body_markdown=text.body_markdown,
        body_html=render(text.body_markdown).html,
        note=text.note,
        author_id=getattr(author, "id", None),
    )
    db.session.add(revision)
    db.session.flush()
    return revision


def _refuse_if_sent(letter: Letter) -> None:
    if letter.status_enum is LetterStatus.SENT:
        raise LetterError("This letter has been sent: its text is final, and so are its settings.")


def _same_text(revision: Revision | None, text: LetterText) -> bool:
    return revision is not None and (revision.title, revision.addressee, revision.body_markdown) == (
        text.title,
        text.addressee,
        text.body_markdown,
    )


def create_letter(
    text: LetterText,
    *,
    language: str = "en",
    slug: str | None = None,
    author: object = None,
    signature_deadline: datetime | None = None,
    embargo_until: datetime | None = None,
    meeting: Meeting | None = None,
    members_only: bool = False,
) -> Letter:
    text = _check_text(text)
    wanted = slugify(slug) if slug else _title_slug(text.title)
    if slug and (wanted in RESERVED_SLUGS or get_letter(wanted) is not None):
        raise LetterError(f"The address {wanted!r} is taken.")
    letter = Letter(
        slug=wanted if slug else _free_slug(wanted),
        language=check_language(language),
        signature_deadline=signature_deadline,
        embargo_until=embargo_until,
        meeting=meeting,
        members_only=members_only,
        created_by_id=getattr(author, "id", None),
    )
    db.session.add(letter)
    db.session.flush()
    letter.current_revision = _new_revision(letter, language, text, author)
    db.session.flush()
    audit.record("letter.create", letter, f"Drafted {text.title!r}", slug=letter.slug)
    return letter


def save_revision(letter: Letter, text: LetterText, author: object = None) -> Revision | None:
    """Save the original's text as a new revision; None when nothing changed.

    A sent letter is final.  On a published letter the new revision waits until
    ``publish_changes`` puts it before the public.
    """
    _refuse_if_sent(letter)
    text = _check_text(text)
    if _same_text(letter.current_revision, text):
        return None
    revision = _new_revision(letter, letter.language, text, author)
    letter.current_revision = revision
    letter.updated_at = utcnow()
    db.session.flush()
    audit.record(
        "letter.revise", letter, f"Saved revision {revision.number} of {letter.slug}", revision=revision.number
    )
    return revision


def update_settings(
    letter: Letter,
    *,
    signature_deadline: datetime | None,
    embargo_until: datetime | None,
    meeting: Meeting | None,
    members_only: bool,
) -> None:
    """Set the letter's deadline, embargo, meeting and whether only member organisations may sign.

    A sent letter's settings are final; what changed is recorded in the audit log.  A changed
    deadline moves the reminder to invited organisations (a job: the caller commits, then
    dispatches it with ``signatures.services.dispatch_after_commit``).
    """
    _refuse_if_sent(letter)
    changed = {
        name: str(value)
        for name, value in (
            ("signature_deadline", signature_deadline),
            ("embargo_until", embargo_until),
            ("meeting_id", meeting.id if meeting else None),
            ("members_only", members_only),
        )
        if getattr(letter, name) != value
    }
    letter.signature_deadline, letter.embargo_until, letter.meeting = signature_deadline, embargo_until, meeting
    letter.members_only = members_only
    db.session.flush()
    if changed:
        audit.record("letter.settings", letter, f"Changed settings of {letter.slug}", **changed)
    if "signature_deadline" in changed:
        _reschedule_reminders(letter)


def _reschedule_reminders(letter: Letter) -> None:
    # Imported here: the signatures package imports this module.
    from campaign.signatures import invitations

    invitations.schedule_reminders(letter)


def allowed_moves(letter: Letter) -> tuple[LetterStatus, ...]:
    return TRANSITIONS[letter.status_enum]


def transition(letter: Letter, to: str, actor: object = None) -> Letter:
    """Move the letter along the workflow; opening it publishes the current revision.

    Opening or closing it schedules or drops the reminder to invited organisations (the
    caller commits, then dispatches it with ``signatures.services.dispatch_after_commit``).
    """
    try:
        target = LetterStatus(to)
    except ValueError:
        raise LetterError(f"Unknown status {to!r}.") from None
    if target not in TRANSITIONS[letter.status_enum]:
        raise LetterError(f"A letter that is {letter.status_enum.label.lower()} cannot become {target.label.lower()}.")
    if target is LetterStatus.OPEN:
        if letter.signature_deadline is not None and letter.signature_deadline <= utcnow():
            raise LetterError("The signature deadline has passed: move it before opening the letter.")
        if letter.published_revision_id is None or letter.status_enum is LetterStatus.REVIEW:
            letter.published_revision = letter.current_revision
            letter.published_at = letter.published_at or utcnow()
    before = letter.status
    letter.status = target.value
    db.session.flush()
    audit.record(
        "letter.transition",
        letter,
        f"{letter.slug}: {before} → {target.value}",
        actor=actor,
        before=before,
        after=target.value,
    )
    if LetterStatus.OPEN.value in (before, target.value):
        _reschedule_reminders(letter)
    if target is LetterStatus.OPEN:
        from campaign.alerts import triggers

        triggers.on_letter_opened(letter)
    return letter


def publish_changes(letter: Letter, actor: object = None) -> Revision:
    """Put the current revision of a published letter before the public."""
    if letter.status_enum not in PUBLISHED or letter.status_enum is LetterStatus.SENT:
        raise LetterError("Only an open or closed letter has published text to update.")
    if letter.current_revision_id == letter.published_revision_id:
        raise LetterError("The published text is already the latest revision.")
    previous = letter.published_revision
    letter.published_revision = letter.current_revision
    db.session.flush()
    audit.record(
        "letter.publish_changes",
        letter,
        f"Published revision {letter.current_revision.number} of {letter.slug}",
        actor=actor,
        previous=previous.number if previous else None,
    )
    return letter.current_revision


def revisions(letter: Letter, language: str | None = None) -> list[Revision]:
    return list(
        db.session.scalars(
            sa.select(Revision)
            .where(Revision.letter_id == letter.id, Revision.language == (language or letter.language))
            .order_by(Revision.number.desc())
        )
    )


def get_revision(letter: Letter, number: int, language: str | None = None) -> Revision | None:
    return db.session.scalar(
        sa.select(Revision).where(
            Revision.letter_id == letter.id,
            Revision.language == (language or letter.language),
            Revision.number == number,
        )
    )


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "same", "added", "removed"
    text: str


def diff(old: Revision, new: Revision) -> list[DiffLine]:
    """A word-level diff of two revisions (title, addressee and text), for reading."""

    def words(revision: Revision) -> list[str]:
        whole = f"{revision.title}\n\n{revision.addressee}\n\n{revision.body_markdown}"
        return re.findall(r"\s+|[^\s]+", whole)

    a, b = words(old), words(new)
    result: list[DiffLine] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            result.append(DiffLine("same", "".join(a[i1:i2])))
            continue
        if op in ("replace", "delete"):
            result.append(DiffLine("removed", "".join(a[i1:i2])))
        if op in ("replace", "insert"):
            result.append(DiffLine("added", "".join(b[j1:j2])))
    return result


# --- translations ------------------------------------------------------------


def save_translation(letter: Letter, language: str, text: LetterText, author: object = None) -> Translation:
    """Save a translation's text as a new revision of that language.

    Allowed after a letter was sent: a translation made later serves its public page,
    and each mailing records the revisions it sent.
    """
    check_language(language)
    if language == letter.language:
        raise LetterError("That is the letter's own language: edit the letter instead.")
    text = _check_text(text)
    translation = letter.translation(language)
    if translation is None:
        translation = Translation(letter=letter, language=language)
        db.session.add(translation)
        db.session.flush()
    if not _same_text(translation.current_revision, text):
        translation.current_revision = _new_revision(letter, language, text, author)
        translation.source_revision_id = letter.published_revision_id or letter.current_revision_id
        db.session.flush()
        audit.record(
            "translation.revise", letter, f"Saved the {language} translation of {letter.slug}", language=language
        )
    return translation


def set_translation_status(translation: Translation, status: str, actor: object = None) -> Translation:
    try:
        target = TranslationStatus(status)
    except ValueError:
        raise LetterError(f"Unknown translation status {status!r}.") from None
    if translation.current_revision is None:
        raise LetterError("The translation has no text yet.")
    before = translation.status
    translation.status = target.value
    if target is TranslationStatus.PUBLISHED:
        translation.published_revision = translation.current_revision
    db.session.flush()
    audit.record(
        "translation.status",
        translation.letter,
        f"{translation.letter.slug} ({translation.language}): {before} → {target.value}",
        actor=actor,
        language=translation.language,
    )
    return translation


def published_translations(letter: Letter) -> list[Translation]:
    return [t for t in letter.translations if t.status == TranslationStatus.PUBLISHED and t.published_revision_id]


# --- meetings ----------------------------------------------------------------


@dataclass
class MeetingData:
    title: str
    starts_at_local: datetime
    timezone: str
    location: str = ""
    ends_at_local: datetime | None = None
    description: str = ""


def _check_meeting(data: MeetingData) -> None:
    if not " ".join(data.title.split()):
        raise LetterError("A meeting needs a title.")
    if data.timezone not in available_timezones():
        raise LetterError(f"{data.timezone!r} is not a time zone name such as America/New_York.")
    for value in (data.starts_at_local, data.ends_at_local):
        if value is not None and value.tzinfo is not None:
            raise LetterError("Give meeting times as local times, without a zone.")
    if data.ends_at_local is not None and data.ends_at_local < data.starts_at_local:
        raise LetterError("The meeting ends before it starts.")
    ZoneInfo(data.timezone)


def save_meeting(data: MeetingData, meeting: Meeting | None = None) -> Meeting:
    _check_meeting(data)
    created = meeting is None
    meeting = meeting or Meeting()
    meeting.title = " ".join(data.title.split())[:300]
    meeting.location = " ".join(data.location.split())[:300]
    meeting.starts_at_local, meeting.ends_at_local = data.starts_at_local, data.ends_at_local
    meeting.timezone, meeting.description = data.timezone, data.description
    meeting.refresh_utc()
    db.session.add(meeting)
    db.session.flush()
    audit.record("meeting.create" if created else "meeting.update", meeting, f"Meeting {meeting.title!r}")
    return meeting


def public_letters(now: datetime | None = None) -> sa.Select:
    """Published letters past any embargo, newest first."""
    now = now or utcnow()
    return (
        sa.select(Letter)
        .where(Letter.status.in_([s.value for s in PUBLISHED]), Letter.published_revision_id.is_not(None))
        .where(sa.or_(Letter.embargo_until.is_(None), Letter.embargo_until <= now))
        .order_by(Letter.published_at.desc(), Letter.id.desc())
    )


# --- what the public sees --------------------------------------------------


def public_letter(slug: str, now: datetime | None = None, *, text: bool = True) -> Letter | None:
    """The letter at ``slug`` if the public may read it (published, past any embargo), else None.

    Its published text comes in the same query, as every public page shows it; ``text=False``
    leaves it to be loaded if read (a form's post that is answered with a redirect).
    """
    letter = db.session.scalar(_BY_SLUG_WITH_TEXT if text else _BY_SLUG, {"slug": slug})
    return letter if letter is not None and letter.is_public(now) else None


#: Built once: every public page runs one of these, and SQLAlchemy then finds the compiled form by identity.
_BY_SLUG = sa.select(Letter).where(Letter.slug == sa.bindparam("slug"))
_BY_SLUG_WITH_TEXT = _BY_SLUG.options(joinedload(Letter.published_revision))


def public_revision(letter: Letter, language: str | None = None) -> Revision | None:
    """The published text in ``language``: the original for None or its own language,
    else a published translation; None when that language is not published."""
    if not language or language == letter.language:
        return letter.published_revision
    translation = letter.translation(language)
    if translation is None or translation not in published_translations(letter):
        return None
    return translation.published_revision


def public_letters_for_meeting(meeting_id: int, now: datetime | None = None) -> list[Letter]:
    """The public letters written for a meeting; a meeting without any is not public."""
    return list(db.session.scalars(public_letters(now).where(Letter.meeting_id == meeting_id)))


# --- letter files ------------------------------------------------------------

#: The workflow in its forward order, as ``flask letters import`` walks it.
FORWARD: tuple[LetterStatus, ...] = (
    LetterStatus.DRAFT,
    LetterStatus.REVIEW,
    LetterStatus.OPEN,
    LetterStatus.CLOSED,
    LetterStatus.SENT,
)


def moves_to(letter: Letter, to: str) -> list[LetterStatus]:
    """The forward moves that take ``letter`` to status ``to``, one ``transition`` each.

    Moving back (review → draft, closed → open) is a coordinator's decision, made on
    the letter's page: a file asking for it is refused rather than obeyed.
    """
    try:
        target = LetterStatus(to)
    except ValueError:
        raise LetterError(f"Unknown status {to!r}.") from None
    here, there = FORWARD.index(letter.status_enum), FORWARD.index(target)
    if there < here:
        raise LetterError(
            f"The letter is {letter.status_enum.label.lower()}; it cannot go back to "
            f"{target.label.lower()} by import (a coordinator can move it back on the letter's page)."
        )
    return list(FORWARD[here + 1 : there + 1])


def find_meeting(title: str, starts_at_local: datetime, timezone: str) -> Meeting | None:
    """The meeting with this title, local start and zone: how letter files name their occasion."""
    return db.session.scalar(
        sa.select(Meeting)
        .where(
            Meeting.title == " ".join(title.split())[:300],
            Meeting.starts_at_local == starts_at_local,
            Meeting.timezone == timezone,
        )
        .order_by(Meeting.id)
        .limit(1)
    )
