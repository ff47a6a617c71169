"""JSON endpoints of the letters domain: letters, their workflow and revisions, meetings.

Coordinators and admins see every letter as it is being written (its current
revision); other token holders see published letters past their embargo, as the
public reads them (the published revision), and get 404 for anything else.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import available_timezones

import marshmallow as ma
import sqlalchemy as sa
from flask import abort
from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy.orm import selectinload

from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import services
from campaign.letters.models import UN_LANGUAGES, Letter, LetterStatus, Meeting, Revision
from campaign.restapi import PREFIX, PageArgs, api_roles, documents, page_of, paginate, problem, single_line
from campaign.signatures import services as signatures

blp = Blueprint("letters_api", __name__, url_prefix=PREFIX, description="Letters, revisions and meetings")

STAFF = ("coordinator", "admin")
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_slug = [ma.validate.Length(1, 80), ma.validate.Regexp(_SLUG, error="Lowercase letters, digits and hyphens.")]
_language = ma.validate.OneOf(list(UN_LANGUAGES))
_status = ma.validate.OneOf([s.value for s in LetterStatus])
_MEMBERS_ONLY = "Only member organisations may sign: the public has no sign-on form"


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise ma.ValidationError("Must not contain a NUL character.")


def _sane_time(value: datetime) -> None:
    if not 1900 <= value.year <= 2999:
        raise ma.ValidationError("Out of range.")


def _timezone(value: str) -> None:
    if value not in available_timezones():
        raise ma.ValidationError("Not an IANA time zone name such as Europe/Zurich.")


#: Local wall-clock times have no offset, so they are not RFC 3339 ``date-time``s.
_LOCAL_TIME = {
    "format": "local-date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$",
    "example": "2027-09-21T10:00:00",
}


class MeetingSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    title = ma.fields.String(required=True, validate=[ma.validate.Length(1, 300), single_line])
    location = ma.fields.String(load_default="", validate=[ma.validate.Length(max=300), single_line])
    starts_at_local = ma.fields.NaiveDateTime(
        required=True,
        validate=_sane_time,
        metadata={**_LOCAL_TIME, "description": "Wall-clock time at the meeting's place, in its timezone"},
    )
    ends_at_local = ma.fields.NaiveDateTime(
        allow_none=True, load_default=None, validate=_sane_time, metadata=_LOCAL_TIME
    )
    timezone = ma.fields.String(required=True, validate=_timezone, metadata={"example": "Europe/Zurich"})
    starts_at = ma.fields.AwareDateTime(dump_only=True, metadata={"description": "The start in UTC"})
    description = ma.fields.String(load_default="", validate=[ma.validate.Length(max=10_000), _no_nul])
    created_date = ma.fields.AwareDateTime(attribute="created_at", dump_only=True)


class MeetingFilterArgs(PageArgs):
    upcoming = ma.fields.Boolean(metadata={"description": "Only meetings that have not started (true) or have"})


class TranslationSummarySchema(ma.Schema):
    language = ma.fields.String(required=True)
    status = ma.fields.String(required=True)


class LetterSchema(ma.Schema):
    """A letter as the caller may read it (see the module's description)."""

    slug = ma.fields.String(required=True)
    title = ma.fields.String(required=True)
    language = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"enum": [s.value for s in LetterStatus]})
    addressee = ma.fields.String(required=True)
    body_markdown = ma.fields.String(required=True)
    body_html = ma.fields.String(required=True, metadata={"description": "Sanitised HTML of body_markdown"})
    signature_deadline = ma.fields.AwareDateTime(allow_none=True)
    embargo_until = ma.fields.AwareDateTime(allow_none=True)
    accepts_signatures = ma.fields.Boolean(required=True)
    members_only = ma.fields.Boolean(required=True, metadata={"description": _MEMBERS_ONLY})
    meeting = ma.fields.Nested(MeetingSchema, allow_none=True)
    current_revision = ma.fields.Integer(allow_none=True, metadata={"description": "Number of the latest revision"})
    published_revision = ma.fields.Integer(allow_none=True, metadata={"description": "Number of the public revision"})
    published_date = ma.fields.AwareDateTime(allow_none=True)
    created_date = ma.fields.AwareDateTime(required=True)
    modified_date = ma.fields.AwareDateTime(required=True)
    translations = ma.fields.List(ma.fields.Nested(TranslationSummarySchema), required=True)


class _LetterInput(ma.Schema):
    title = ma.fields.String(validate=[ma.validate.Length(1, 300), single_line])
    addressee = ma.fields.String(validate=[ma.validate.Length(max=2_000), _no_nul])
    body_markdown = ma.fields.String(validate=[ma.validate.Length(1, services.MAX_BODY), _no_nul])
    note = ma.fields.String(
        validate=[ma.validate.Length(max=500), single_line], metadata={"description": "Revision note"}
    )
    signature_deadline = ma.fields.AwareDateTime(allow_none=True, validate=_sane_time)
    embargo_until = ma.fields.AwareDateTime(allow_none=True, validate=_sane_time)
    meeting_id = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(1, 2**31 - 1))
    members_only = ma.fields.Boolean(metadata={"description": _MEMBERS_ONLY})


class LetterCreateSchema(_LetterInput):
    title = ma.fields.String(required=True, validate=[ma.validate.Length(1, 300), single_line])
    body_markdown = ma.fields.String(required=True, validate=[ma.validate.Length(1, services.MAX_BODY), _no_nul])
    slug = ma.fields.String(validate=_slug, metadata={"description": "Made from the title when not given"})
    language = ma.fields.String(load_default="en", validate=_language)
    members_only = ma.fields.Boolean(load_default=False, metadata={"description": _MEMBERS_ONLY})


class LetterUpdateSchema(_LetterInput):
    """Changed text saves a revision; omitted fields keep their value."""


class LetterFilterArgs(PageArgs):
    status = ma.fields.String(validate=_status)
    language = ma.fields.String(validate=_language)


class TransitionSchema(ma.Schema):
    to = ma.fields.String(required=True, validate=_status, metadata={"enum": [s.value for s in LetterStatus]})


class RevisionSchema(ma.Schema):
    number = ma.fields.Integer(required=True)
    language = ma.fields.String(required=True)
    title = ma.fields.String(required=True)
    note = ma.fields.String(required=True)
    created_date = ma.fields.AwareDateTime(required=True)
    author = ma.fields.String(allow_none=True, metadata={"description": "Email of the author's account"})


class RevisionFilterArgs(PageArgs):
    language = ma.fields.String(validate=_language)


def _is_staff() -> bool:
    return current_user.role in STAFF


def _letter_or_404(slug: str) -> Letter:
    letter = services.get_letter(slug) if _SLUG.match(slug) else None
    if letter is None or not (_is_staff() or letter.is_public()):
        abort(404)
    return letter


def _meeting_or_problem(meeting_id: int | None) -> Meeting | None:
    if meeting_id is None:
        return None
    meeting = db.session.get(Meeting, meeting_id)
    if meeting is None:
        abort(problem(422, "Unknown meeting.", {"json": {"meeting_id": [f"No meeting {meeting_id}."]}}))
    return meeting


def _view(letter: Letter) -> dict[str, Any]:
    """The letter for the caller: staff read the current revision, others the published one."""
    staff = _is_staff()
    revision = letter.current_revision if staff else letter.published_revision
    translations = letter.translations if staff else services.published_translations(letter)
    return {
        "slug": letter.slug,
        "title": revision.title,
        "language": letter.language,
        "status": letter.status,
        "addressee": revision.addressee,
        "body_markdown": revision.body_markdown,
        "body_html": revision.body_html,
        "signature_deadline": letter.signature_deadline,
        "embargo_until": letter.embargo_until,
        "accepts_signatures": letter.accepts_signatures(),
        "members_only": letter.members_only,
        "meeting": letter.meeting,
        "current_revision": letter.current_revision.number if staff and letter.current_revision else None,
        "published_revision": letter.published_revision.number if letter.published_revision else None,
        "published_date": letter.published_at,
        "created_date": letter.created_at,
        "modified_date": letter.updated_at,
        "translations": [{"language": t.language, "status": t.status} for t in translations],
    }


_LOAD = (
    selectinload(Letter.current_revision),
    selectinload(Letter.published_revision),
    selectinload(Letter.meeting),
    selectinload(Letter.translations),
)


@blp.route("/letters")
@documents(blp, 422)
@api_roles()
@blp.arguments(LetterFilterArgs, location="query")
@blp.response(200, page_of(LetterSchema))
def list_letters(args: dict[str, Any]) -> Any:
    """Letters, newest first: every letter for coordinators and admins, public ones for others."""
    if _is_staff():
        query = sa.select(Letter).order_by(Letter.created_at.desc(), Letter.id.desc())
    else:
        query = services.public_letters()
    if "status" in args:
        query = query.where(Letter.status == args["status"])
    if "language" in args:
        query = query.where(Letter.language == args["language"])
    page = paginate(query.options(*_LOAD), args)
    page["items"] = [_view(letter) for letter in page["items"]]
    return page


@blp.route("/letters", methods=["POST"])
@documents(blp, 409, 422)
@api_roles(*STAFF)
@blp.arguments(LetterCreateSchema)
@blp.response(201, LetterSchema)
def create_letter(data: dict[str, Any]) -> Any:
    """Draft a letter (coordinators, admins); its text is revision 1."""
    meeting = _meeting_or_problem(data.get("meeting_id"))
    slug = data.get("slug")
    if slug and (slug in services.RESERVED_SLUGS or services.get_letter(slug) is not None):
        return problem(409, f"The address {slug!r} is taken.", {"json": {"slug": ["Taken."]}})
    text = services.LetterText(
        title=data["title"],
        body_markdown=data["body_markdown"],
        addressee=data.get("addressee", ""),
        note=data.get("note", ""),
    )
    try:
        letter = services.create_letter(
            text,
            language=data["language"],
            slug=slug,
            author=current_user,
            signature_deadline=data.get("signature_deadline"),
            embargo_until=data.get("embargo_until"),
            meeting=meeting,
            members_only=data["members_only"],
        )
    except services.LetterError as exc:
        db.session.rollback()
        return problem(422, str(exc))
    db.session.commit()
    return _view(letter)


@blp.route("/letters/<slug>")
@documents(blp, 404)
@api_roles()
@blp.response(200, LetterSchema)
def get_letter(slug: str) -> Any:
    """One letter; drafts and embargoed letters are visible to coordinators and admins only."""
    return _view(_letter_or_404(slug))


@blp.route("/letters/<slug>", methods=["PATCH"])
@documents(blp, 404, 409, 422)
@api_roles(*STAFF)
@blp.arguments(LetterUpdateSchema)
@blp.response(200, LetterSchema)
def update_letter(data: dict[str, Any], slug: str) -> Any:
    """Change a letter (coordinators, admins): new text saves a revision; settings change in place.

    On an open or closed letter the new revision is not public until the changes are
    published from the letter's page; a sent letter's text is final (409).
    """
    letter = _letter_or_404(slug)
    current = letter.current_revision
    text = services.LetterText(
        title=data.get("title", current.title),
        body_markdown=data.get("body_markdown", current.body_markdown),
        addressee=data.get("addressee", current.addressee),
        note=data.get("note", ""),
    )
    settings = {"signature_deadline", "embargo_until", "meeting_id", "members_only"} & data.keys()
    meeting = _meeting_or_problem(data["meeting_id"]) if "meeting_id" in data else letter.meeting
    try:
        if letter.status_enum is LetterStatus.SENT:
            return problem(409, "This letter has been sent: its text is final, and so are its settings.")
        if {"title", "body_markdown", "addressee"} & data.keys():
            services.save_revision(letter, text, current_user)
        if settings:
            services.update_settings(
                letter,
                signature_deadline=data.get("signature_deadline", letter.signature_deadline),
                embargo_until=data.get("embargo_until", letter.embargo_until),
                meeting=meeting,
                members_only=data.get("members_only", letter.members_only),
            )
    except services.LetterError as exc:
        db.session.rollback()
        return problem(422, str(exc))
    db.session.commit()
    signatures.dispatch_after_commit()
    return _view(letter)


@blp.route("/letters/<slug>/transitions", methods=["POST"])
@documents(blp, 404, 409, 422)
@api_roles(*STAFF)
@blp.arguments(TransitionSchema)
@blp.response(200, LetterSchema)
def transition_letter(data: dict[str, Any], slug: str) -> Any:
    """Move a letter along the workflow (coordinators, admins).

    draft → review → open → closed → sent; review may go back to draft and closed to
    open.  Opening publishes the current revision.  A move the workflow refuses is a 409.
    """
    letter = _letter_or_404(slug)
    try:
        services.transition(letter, data["to"], actor=current_user)
    except services.LetterError as exc:
        db.session.rollback()
        return problem(409, str(exc))
    db.session.commit()
    signatures.dispatch_after_commit()
    return _view(letter)


@blp.route("/letters/<slug>/revisions")
@documents(blp, 404, 422)
@api_roles(*STAFF)
@blp.arguments(RevisionFilterArgs, location="query")
@blp.response(200, page_of(RevisionSchema))
def list_revisions(args: dict[str, Any], slug: str) -> Any:
    """A letter's saved revisions, newest first, in every language or in ``language``."""
    letter = _letter_or_404(slug)
    query = (
        sa.select(Revision)
        .where(Revision.letter_id == letter.id)
        .options(selectinload(Revision.author))
        .order_by(Revision.created_at.desc(), Revision.id.desc())
    )
    if "language" in args:
        query = query.where(Revision.language == args["language"])
    page = paginate(query, args)
    page["items"] = [
        {
            "number": r.number,
            "language": r.language,
            "title": r.title,
            "note": r.note,
            "created_date": r.created_at,
            "author": r.author.email if r.author else None,
        }
        for r in page["items"]
    ]
    return page


@blp.route("/meetings")
@documents(blp, 422)
@api_roles()
@blp.arguments(MeetingFilterArgs, location="query")
@blp.response(200, page_of(MeetingSchema))
def list_meetings(args: dict[str, Any]) -> Any:
    """Meetings letters are written for, by start; others than coordinators see those of public letters."""
    query = sa.select(Meeting).order_by(Meeting.starts_at, Meeting.id)
    if not _is_staff():
        public_ids = services.public_letters().with_only_columns(Letter.meeting_id).order_by(None)
        query = query.where(Meeting.id.in_(public_ids))
    if "upcoming" in args:
        now = utcnow()
        query = query.where(Meeting.starts_at >= now if args["upcoming"] else Meeting.starts_at < now)
    return paginate(query, args)


@blp.route("/meetings", methods=["POST"])
@documents(blp, 422)
@api_roles(*STAFF)
@blp.arguments(MeetingSchema)
@blp.response(201, MeetingSchema)
def create_meeting(data: dict[str, Any]) -> Any:
    """Add a meeting (coordinators, admins); times are local to ``timezone``."""
    try:
        meeting = services.save_meeting(services.MeetingData(**data))
    except services.LetterError as exc:
        db.session.rollback()
        return problem(422, str(exc))
    db.session.commit()
    return meeting


@blp.route("/meetings/<id:id>")
@documents(blp, 404)
@api_roles()
@blp.response(200, MeetingSchema)
def get_meeting(id: int) -> Any:
    meeting = db.session.get(Meeting, id)
    if meeting is None or not (_is_staff() or services.public_letters_for_meeting(id)):
        abort(404)
    return meeting
