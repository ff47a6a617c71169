"""JSON endpoints of the mailings domain: ``/api/v1/mailings`` (coordinators and admins).

A mailing is drafted, previewed as a recipient, checked, approved by a coordinator
other than its author, then sent now, at a time, or before the letter's meeting.
Input that cannot be used is a 422 problem naming the field; a step the mailing's
state refuses (a second approval, sending a draft, editing a sent mailing) is a 409
problem whose ``detail`` says why.  Each mailing's deliveries are listed with their
history, SendGrid's events included.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import abort
from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy.orm import selectinload

from campaign import queue
from campaign.contacts.models import Contact
from campaign.extensions import db
from campaign.letters import services as letter_services
from campaign.letters.models import Letter
from campaign.mailings import schedule, services
from campaign.mailings.models import Delivery, Mailing
from campaign.mailings.personalise import Renderer
from campaign.mailings.schemas import (
    CheckSchema,
    DeliveryFilterArgs,
    DeliverySchema,
    MailingCreateSchema,
    MailingFilterArgs,
    MailingSchema,
    MailingUpdateSchema,
    PreviewArgs,
    PreviewSchema,
    SendSchema,
)
from campaign.mailings.sending import Progress
from campaign.rendering import TemplateError
from campaign.restapi import PREFIX, api_roles, documents, page_of, paginate, problem, refused

blp = Blueprint("mailings_api", __name__, url_prefix=PREFIX, description="Mailings of letters to contacts")

STAFF = ("coordinator", "admin")


def _email(user: Any) -> str | None:
    return user.email if user is not None else None


def _view(mailing: Mailing, progress: Progress | None = None) -> dict[str, Any]:
    progress = progress or services.progress(mailing)
    return {
        "id": mailing.id,
        "name": mailing.name,
        "status": mailing.status,
        "version": mailing.version,
        "letter": mailing.letter.slug,
        "subject": mailing.subject,
        "introduction": mailing.introduction,
        "audience": {"tags": mailing.tags, "countries": mailing.countries, "languages": mailing.languages},
        "rate_per_minute": mailing.rate_per_minute,
        "created_by": _email(mailing.created_by),
        "approved_by": _email(mailing.approved_by),
        "approved_date": mailing.approved_at,
        "schedule": mailing.schedule or None,
        "send_requested_by": _email(mailing.send_requested_by),
        "send_requested_date": mailing.send_requested_at,
        "first_due_date": mailing.first_due_at,
        "started_date": mailing.started_at,
        "finished_date": mailing.finished_at,
        "cancelled_date": mailing.cancelled_at,
        "progress": {**vars(progress), "percent": progress.percent},
        "created_date": mailing.created_at,
        "modified_date": mailing.updated_at,
    }


def _mailing_or_404(id: int, *, lock: bool = False) -> Mailing:
    # ``update_mailing`` writes without a condition: FOR UPDATE (PostgreSQL) keeps a send from
    # committing between this read and that write, which would turn a scheduled mailing back into a draft.
    return db.session.get(Mailing, id, with_for_update=lock or None) or abort(404)


def _letter_or_problem(slug: str) -> Letter:
    letter = letter_services.get_letter(slug)
    if letter is None:
        abort(problem(422, "Unknown letter.", {"json": {"letter": [f"No letter {slug!r}."]}}))
    return letter


_LOAD = (
    selectinload(Mailing.letter),
    selectinload(Mailing.created_by),
    selectinload(Mailing.approved_by),
    selectinload(Mailing.send_requested_by),
)


@blp.route("/mailings")
@documents(blp, 422)
@api_roles(*STAFF)
@blp.arguments(MailingFilterArgs, location="query")
@blp.response(200, page_of(MailingSchema))
def list_mailings(args: dict[str, Any]) -> Any:
    """Mailings, newest first; filter by status and by letter (its slug)."""
    query = sa.select(Mailing).order_by(Mailing.created_at.desc(), Mailing.id.desc())
    if "status" in args:
        query = query.where(Mailing.status == args["status"])
    if "letter" in args:
        query = query.join(Letter, Mailing.letter_id == Letter.id).where(Letter.slug == args["letter"])
    page = paginate(query.options(*_LOAD), args)
    progress = services.progress_of(Delivery.mailing_id, [mailing.id for mailing in page["items"]])
    page["items"] = [_view(mailing, progress[mailing.id]) for mailing in page["items"]]
    return page


@blp.route("/mailings", methods=["POST"])
@documents(blp, 422)
@api_roles(*STAFF)
@blp.arguments(MailingCreateSchema)
@blp.response(201, MailingSchema)
def create_mailing(data: dict[str, Any]) -> Any:
    """Draft a mailing of a published letter; the author cannot approve it."""
    audience = data["audience"]
    mailing_data = services.MailingData(
        letter=_letter_or_problem(data["letter"]),
        subject=data["subject"],
        introduction=data["introduction"],
        name=data.get("name", ""),
        tags=audience["tags"],
        countries=audience["countries"],
        languages=audience["languages"],
        rate_per_minute=data.get("rate_per_minute"),
    )
    try:
        mailing = services.create_mailing(mailing_data, actor=current_user)
    except services.MailingError as exc:
        return refused(exc, 422)
    db.session.commit()
    return _view(mailing), 201


@blp.route("/mailings/<id:id>")
@documents(blp, 404)
@api_roles(*STAFF)
@blp.response(200, MailingSchema)
def get_mailing(id: int) -> Any:
    """A mailing with its approval, schedule and deliveries counted per state."""
    return _view(_mailing_or_404(id))


@blp.route("/mailings/<id:id>", methods=["PATCH"])
@documents(blp, 404, 409, 422)
@api_roles(*STAFF)
@blp.arguments(MailingUpdateSchema)
@blp.response(200, MailingSchema)
def update_mailing(data: dict[str, Any], id: int) -> Any:
    """Change a draft or approved mailing; omitted fields keep their value.  A change
    withdraws the approval (the mailing is a draft again); once sending was asked, 409."""
    mailing = _mailing_or_404(id, lock=True)
    if not mailing.editable:
        return refused(services.MailingError(f"A {mailing.status} mailing can no longer be changed."))
    audience = data.get("audience", {})
    merged = services.MailingData(
        letter=_letter_or_problem(data["letter"]) if "letter" in data else mailing.letter,
        subject=data.get("subject", mailing.subject),
        introduction=data.get("introduction", mailing.introduction),
        name=data.get("name", mailing.name),
        tags=audience.get("tags", mailing.tags),
        countries=audience.get("countries", mailing.countries),
        languages=audience.get("languages", mailing.languages),
        rate_per_minute=data.get("rate_per_minute", mailing.rate_per_minute),
    )
    try:
        services.update_mailing(mailing, merged, actor=current_user)
    except services.MailingError as exc:
        return refused(exc, 422)
    db.session.commit()
    return _view(mailing)


@blp.route("/mailings/<id:id>/preview")
@documents(blp, 404, 422)
@api_roles(*STAFF)
@blp.arguments(PreviewArgs, location="query")
@blp.response(200, PreviewSchema)
def preview_mailing(args: dict[str, Any], id: int) -> Any:
    """The message a contact of the audience would receive: subject, text and HTML parts,
    in the language they would get.  A contact outside the audience, or templates that
    do not render for this contact, is a 422 whose ``detail`` says why."""
    mailing = _mailing_or_404(id)
    contact = db.session.get(Contact, args["contact"])
    if contact is None:
        return problem(404, f"No contact {args['contact']}.")
    member = services.recipients_query(mailing).where(Contact.id == contact.id).with_only_columns(Contact.id)
    if db.session.scalar(member) is None:
        return problem(422, f"{contact.email} is not in this mailing's audience.",
                       {"query": {"contact": ["Not in the mailing's audience."]}})  # fmt: skip
    try:
        rendered = Renderer(mailing).render(contact)
    except TemplateError as exc:
        return problem(422, f"The mailing does not render for {contact.email}: {exc}.")
    return {
        "contact": contact.id,
        "email": contact.email,
        "language": rendered.language,
        "revision": rendered.revision.number,
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
    }


@blp.route("/mailings/<id:id>/check")
@documents(blp, 404)
@api_roles(*STAFF)
@blp.response(200, CheckSchema)
def check_mailing(id: int) -> Any:
    """What approval requires, checked now: every deliverable recipient renders (each
    failure with its reason), and the targeted states left without a deliverable contact."""
    mailing = _mailing_or_404(id)
    contacts = services.recipients_query(mailing).order_by(None).subquery()
    recipients, suppressed = db.session.execute(
        sa.select(
            sa.func.count().filter(contacts.c.suppression.is_(None)),
            sa.func.count().filter(contacts.c.suppression.is_not(None)),
        )
    ).one()
    failures = services.check_recipients(mailing)
    return {
        "recipients": recipients,
        "suppressed": suppressed,
        "failures": [{"contact": f.contact_id or None, "email": f.email, "error": f.error} for f in failures],
        "uncovered": [
            {"country": row.code, "country_name": row.name, "suppressed": row.suppressed}
            for row in services.uncovered(mailing)
        ],
        "ready": bool(recipients) and not failures,
    }


@blp.route("/mailings/<id:id>/approve", methods=["POST"])
@documents(blp, 404, 409)
@api_roles(*STAFF)
@blp.response(200, MailingSchema)
def approve_mailing(id: int) -> Any:
    """Approve a draft (a coordinator other than its author: 403 for the author).  Every
    recipient must render; the letter's revisions and signatory list are frozen now.
    Two approvals at once: one wins, the other is a 409."""
    mailing = _mailing_or_404(id)
    try:
        services.approve(mailing, current_user)
    except services.MailingError as exc:
        return refused(exc, 403 if mailing.created_by_id == current_user.id else 409)
    job = services.render_documents_later(mailing)
    db.session.commit()
    queue.dispatch(job)
    return _view(mailing)


@blp.route("/mailings/<id:id>/send", methods=["POST"])
@documents(blp, 404, 409, 422)
@api_roles(*STAFF)
@blp.arguments(SendSchema, required=False)
@blp.response(202, MailingSchema)
def send_mailing(data: dict[str, Any], id: int) -> Any:
    """Send an approved mailing: no body (or `{}`) sends now; `{"at": "2027-03-01T09:00:00+01:00"}`
    at a time; `{"before_meeting": "P3D", "local_time": "09:00"}` that long before the
    letter's meeting, at that time of day in each recipient's timezone.  Each contact gets
    one delivery; the mailing answers at once (202) and sends in the background."""
    mailing = _mailing_or_404(id)
    try:
        schedule.plan(data, mailing.letter.meeting)
    except schedule.ScheduleError as exc:
        field = "before_meeting" if "before_meeting" in data else "at"
        return problem(422, f"That send time cannot be used: {exc}.", {"json": {field: [f"{exc}."]}})
    try:
        row = services.request_send(mailing, data, actor=current_user)
    except services.MailingError as exc:
        return refused(exc)
    db.session.commit()
    queue.dispatch(row)
    return _view(mailing), 202


@blp.route("/mailings/<id:id>/cancel", methods=["POST"])
@documents(blp, 404, 409)
@api_roles(*STAFF)
@blp.response(200, MailingSchema)
def cancel_mailing(id: int) -> Any:
    """Stop a mailing: deliveries not yet sent are cancelled (and counted so); those in
    flight finish.  A finished or cancelled mailing is a 409."""
    mailing = _mailing_or_404(id)
    try:
        services.cancel(mailing, current_user)
    except services.MailingError as exc:
        return refused(exc)
    db.session.commit()
    return _view(mailing)


def _delivery_view(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "mailing": delivery.mailing_id,
        "contact": delivery.contact_id,
        "email": delivery.email,
        "country": delivery.country,
        "language": delivery.language,
        "status": delivery.status,
        "reason": delivery.reason,
        "message_id": delivery.message_id,
        "attempts": delivery.attempts,
        "due_date": delivery.due_at,
        "sent_date": delivery.sent_at,
        "modified_date": delivery.updated_at,
        "events": [
            {"id": e.id, "kind": e.kind, "detail": e.detail, "source": e.source, "data": e.data or {},
             "created_date": e.created_at}
            for e in delivery.events
        ],
    }  # fmt: skip


@blp.route("/mailings/<id:id>/deliveries")
@documents(blp, 404, 422)
@api_roles(*STAFF)
@blp.arguments(DeliveryFilterArgs, location="query")
@blp.response(200, page_of(DeliverySchema))
def list_deliveries(args: dict[str, Any], id: int) -> Any:
    """A mailing's deliveries, one per contact, in order, each with its history (the sending's
    steps and SendGrid's events); filter by status (e.g. `bounced`, `uncertain`)."""
    mailing = _mailing_or_404(id)
    query = sa.select(Delivery).where(Delivery.mailing_id == mailing.id).order_by(Delivery.id)
    if "status" in args:
        query = query.where(Delivery.status == args["status"])
    page = paginate(query.options(selectinload(Delivery.events)), args)
    page["items"] = [_delivery_view(delivery) for delivery in page["items"]]
    return page


@blp.route("/mailings/<id:id>/deliveries/<id:delivery_id>")
@documents(blp, 404)
@api_roles(*STAFF)
@blp.response(200, DeliverySchema)
def get_delivery(id: int, delivery_id: int) -> Any:
    """One delivery of the mailing with its history, oldest first."""
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None or delivery.mailing_id != id:
        abort(404)
    return _delivery_view(delivery)
