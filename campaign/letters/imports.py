"""Applying letter files to the database: ``flask letters import`` and the demo.

Each file is applied inside a savepoint after it was read and checked whole
(``files.read_file``), so a file with a problem leaves nothing behind.  A letter
is found by its slug; changed text becomes a revision (``services.save_revision``),
unchanged text adds nothing, and the file's status is reached by moving forward
through the workflow (``services.transition``), never by setting it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import files, services
from campaign.letters.models import Letter, LetterStatus, Meeting, Revision
from campaign.letters.services import LetterError, LetterText, MeetingData


@dataclass
class Outcome:
    """What importing one file did: created, revised, updated, unchanged, kept or error."""

    path: Path
    action: str
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.action != "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.action}" + (f" ({'; '.join(self.details)})" if self.details else "")


def import_all(path: Path, *, author: object = None, create_only: bool = False) -> Iterator[Outcome]:
    """Import each file under ``path``; the caller commits after each successful one."""
    for source in files.source_paths(path):
        yield import_file(source, author=author, create_only=create_only)


def import_file(path: Path, *, author: object = None, create_only: bool = False) -> Outcome:
    """Import one file; on any problem nothing of it is kept.  ``create_only`` leaves existing letters alone."""
    try:
        source = files.read_file(path)
        with db.session.begin_nested():
            if source.translation:
                return _apply_translation(source, author, create_only)
            return _apply_letter(source, author, create_only)
    except OSError as exc:
        return Outcome(path, "error", [exc.strerror or str(exc)])
    except (files.LetterFileError, LetterError) as exc:
        return Outcome(path, "error", [str(exc)])


def _same_text(revision: Revision | None, text: LetterText) -> bool:
    """Whether the file's text is what is saved, as the file would write it (``files.clean_body``)."""
    if revision is None:
        return False
    saved = (revision.title, revision.addressee.strip(), files.clean_body(revision.body_markdown))
    return saved == (text.title, text.addressee, text.body_markdown)


def _meeting_for(source: files.MeetingSource | None) -> tuple[Meeting | None, list[str]]:
    if source is None:
        return None, []
    meeting = services.find_meeting(source.title, source.starts_at_local, source.timezone)
    description = source.description if source.description is not None else (meeting.description if meeting else "")
    location, ends = source.location, source.ends_at_local
    data = MeetingData(
        title=source.title,
        starts_at_local=source.starts_at_local,
        timezone=source.timezone,
        location=location,
        ends_at_local=ends,
        description=description,
    )
    if meeting is None:
        return services.save_meeting(data), [f"meeting {source.title!r} created"]
    if (meeting.location, meeting.ends_at_local, meeting.description) == (location, ends, description):
        return meeting, []
    return services.save_meeting(data, meeting), [f"meeting {source.title!r} updated"]


def _deadline_after_walk(source: files.LetterFile, moves: list[LetterStatus]) -> bool:
    # A letter taken through "open" on to closed or sent may carry a deadline that has
    # passed since it opened: it gets that deadline after the walk, as it would have in life.
    passed = source.signature_deadline is not None and source.signature_deadline <= utcnow()
    return passed and LetterStatus.OPEN in moves[:-1]


def _settle(letter: Letter, source: files.LetterFile, meeting: Meeting | None, author: object) -> list[str]:
    """Bring the letter's settings and status to what the file says; what changed, for the report."""
    moves = services.moves_to(letter, source.status) if source.status else []
    wanted = (source.signature_deadline, source.embargo_until, meeting.id if meeting else None, source.members_only)
    differs = (letter.signature_deadline, letter.embargo_until, letter.meeting_id, letter.members_only) != wanted
    later = _deadline_after_walk(source, moves)
    notes: list[str] = []

    def apply_settings() -> None:
        services.update_settings(
            letter,
            signature_deadline=source.signature_deadline,
            embargo_until=source.embargo_until,
            meeting=meeting,
            members_only=source.members_only,
        )
        notes.append("settings updated")

    pending = differs
    if pending and not later:
        apply_settings()
        pending = False
    before = letter.status
    for status in moves:
        if pending and status is LetterStatus.SENT:  # a sent letter's settings are final
            apply_settings()
            pending = False
        services.transition(letter, status.value, actor=author)
    if moves:
        notes.append(f"{before} → {letter.status}")
    if pending:
        apply_settings()
    return notes


def _apply_letter(source: files.LetterFile, author: object, create_only: bool) -> Outcome:
    letter = services.get_letter(source.slug)
    if letter is not None and create_only:
        return Outcome(source.path, "kept", ["the letter exists; left as it is"])
    meeting, notes = _meeting_for(source.meeting)
    if letter is None:
        walk = list(services.FORWARD[1 : services.FORWARD.index(LetterStatus(source.status or "draft")) + 1])
        letter = services.create_letter(
            source.text,
            language=source.language,
            slug=source.slug,
            author=author,
            signature_deadline=None if _deadline_after_walk(source, walk) else source.signature_deadline,
            embargo_until=source.embargo_until,
            meeting=meeting,
            members_only=source.members_only,
        )
        _settle(letter, source, meeting, author)
        return Outcome(source.path, "created", [f"status {letter.status}", *notes])
    if letter.language != source.language:
        raise files.LetterFileError(f"language: the letter is in {letter.language!r}; import cannot change that.")
    revised = not _same_text(letter.current_revision, source.text)
    if revised:
        revision = services.save_revision(letter, source.text, author)
        notes.append(f"revision {revision.number}")
    notes += _settle(letter, source, meeting, author)
    published = letter.published_revision
    if revised and published is not None and published.id != letter.current_revision_id:
        notes.append(f"the public still reads revision {published.number} until the changes are published")
    return Outcome(source.path, "revised" if revised else "updated" if notes else "unchanged", notes)


def _apply_translation(source: files.LetterFile, author: object, create_only: bool) -> Outcome:
    letter = services.get_letter(source.slug)
    if letter is None:
        raise files.LetterFileError(f"There is no letter {source.slug!r} to translate: import {source.slug}.md first.")
    translation = letter.translation(source.language)
    if translation is not None and create_only:
        return Outcome(source.path, "kept", ["the translation exists; left as it is"])
    created = translation is None
    revised = created or not _same_text(translation.current_revision, source.text)
    if revised:
        translation = services.save_translation(letter, source.language, source.text, author)
    notes = [] if created or not revised else [f"revision {translation.current_revision.number}"]
    # Changed text in a file that says "published" is published; unchanged text keeps its status.
    if source.status and (source.status != translation.status or (revised and source.status == "published")):
        services.set_translation_status(translation, source.status, actor=author)
        notes.append(f"status {translation.status}")
    action = "created" if created else "revised" if revised else "updated" if notes else "unchanged"
    return Outcome(source.path, action, notes)
