"""Coordinators' pages for meetings: the occasions letters are written for."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, url_for
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from campaign.db import page_arg
from campaign.extensions import db
from campaign.letters import meetings_bp, services
from campaign.letters.forms import MeetingForm
from campaign.letters.models import Meeting
from campaign.security import staff_required

PER_PAGE = 50


@meetings_bp.route("")
@staff_required
def meetings() -> str:
    query = sa.select(Meeting).options(selectinload(Meeting.letters)).order_by(Meeting.starts_at.desc())
    page = db.paginate(query, page=page_arg(), per_page=PER_PAGE, error_out=False)
    return render_template("letters/admin/meetings.html", page=page)


def _save(form: MeetingForm, meeting: Meeting | None) -> Meeting | None:
    data = services.MeetingData(
        title=form.title.data,
        starts_at_local=form.starts_at_local.data,
        ends_at_local=form.ends_at_local.data,
        timezone=form.timezone.data,
        location=form.location.data or "",
        description=form.description.data or "",
    )
    try:
        saved = services.save_meeting(data, meeting)
    except services.LetterError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return None
    db.session.commit()
    return saved


@meetings_bp.route("/new", methods=["GET", "POST"])
@staff_required
def new_meeting() -> str | Response:
    form = MeetingForm()
    if form.validate_on_submit() and (meeting := _save(form, None)) is not None:
        flash(f"Added the meeting {meeting.title!r}.", "success")
        return redirect(url_for("meetings.meetings"))
    return render_template("letters/admin/meeting_form.html", form=form, meeting=None)


@meetings_bp.route("/<id:meeting_id>/edit", methods=["GET", "POST"])
@staff_required
def edit_meeting(meeting_id: int) -> str | Response:
    meeting = db.session.get(Meeting, meeting_id) or abort(404)
    form = MeetingForm(obj=meeting)
    if form.validate_on_submit() and _save(form, meeting) is not None:
        flash(f"Saved the meeting {meeting.title!r}.", "success")
        return redirect(url_for("meetings.meetings"))
    return render_template("letters/admin/meeting_form.html", form=form, meeting=meeting)
