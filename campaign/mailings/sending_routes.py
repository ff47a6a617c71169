"""A mailing's test sends, approval, sending and cancelling; its deliveries, and settling uncertain ones.

Every action here goes through ``services``, which refuse what the rules refuse (the
author approving, a second send, a delivery no longer uncertain) with a ``MailingError``
shown as a flash; jobs are handed to the queue only after the commit.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from campaign import queue
from campaign.auth.forms import ConfirmForm
from campaign.contacts.countries import country_name
from campaign.contacts.models import Contact
from campaign.db import page_arg
from campaign.extensions import db
from campaign.mailings import bp, services
from campaign.mailings.forms import ResolveForm, SendForm
from campaign.mailings.models import Delivery, DeliveryStatus, Mailing, MailingStatus
from campaign.mailings.routes import get_mailing_or_404, mailing_for_update, mailing_page
from campaign.queue import Job, JobStatus
from campaign.security import staff_required

log = logging.getLogger(__name__)
PER_PAGE = 50
EXPIRED = "The form expired; please try again."


def dispatch(row: Job) -> None:
    """Hand a committed job to the queue.  Inline on SQLite, running it can meet another
    request's write lock ("database is locked": ``queue.run_job`` claims the job in a
    transaction that began with a read, which SQLite cannot make wait).  The job row is
    committed, so the worker runs it when due: the request goes on rather than fail."""
    try:
        queue.dispatch(row)
    except sa.exc.OperationalError as exc:
        if "database is locked" not in str(exc):
            raise
        db.session.rollback()
        log.warning("job %s: left to the worker, the database was locked: %s", row.id, exc.orig)


def _back(mailing: Mailing, anchor: str | None = None) -> Response:
    return redirect(url_for("mailings.mailing", mailing_id=mailing.id, _anchor=anchor))


@bp.route("/mailings/<id:mailing_id>/preview/<id:contact_id>/test", methods=["POST"])
@staff_required
def test_send(mailing_id: int, contact_id: int) -> Response:
    """The message ``contact`` would receive, sent to the coordinator's own address."""
    mailing = get_mailing_or_404(mailing_id)
    contact = db.session.get(Contact, contact_id) or abort(404)
    back = redirect(url_for("mailings.preview", mailing_id=mailing.id, contact=contact.id))
    if not ConfirmForm().validate_on_submit():
        flash(EXPIRED, "error")
        return back
    to = current_user.email
    try:
        row = services.test_send(mailing, contact, current_user)
    except services.MailingError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return back
    db.session.commit()
    dispatch(row)
    flash(*_test_outcome(row.id, contact.email, to))
    return back


def _test_outcome(job_id: int, as_email: str, to: str) -> tuple[str, str]:
    row = db.session.get(Job, job_id)
    db.session.refresh(row)
    if row.status == JobStatus.FINISHED and not row.message:
        return f"Sent a test as {as_email} to {to}.", "success"
    if row.status in (JobStatus.QUEUED, JobStatus.RUNNING) and not row.error:
        return f"A test as {as_email} is on its way to {to}.", "success"
    return f"The test to {to} was not sent: {row.message or row.error}", "error"


@bp.route("/mailings/<id:mailing_id>/approve", methods=["POST"])
@staff_required
def approve(mailing_id: int) -> Response:
    """A second coordinator approves the version they saw (the form carries it)."""
    mailing = mailing_for_update(mailing_id)
    if not ConfirmForm().validate_on_submit():
        flash(EXPIRED, "error")
    elif request.form.get("version") != str(mailing.version):
        flash("The mailing changed since you opened it: review this version, then approve it.", "warning")
    else:
        try:
            services.approve(mailing, current_user)
        except services.MailingError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            job = services.render_documents_later(mailing)
            db.session.commit()
            queue.dispatch(job)
            flash(f"Approved version {mailing.version}: it can be sent now.", "success")
    return _back(mailing)


@bp.route("/mailings/<id:mailing_id>/send", methods=["POST"])
@staff_required
def send(mailing_id: int) -> str | Response:
    """Now, at a time, or before the meeting; a refused time comes back on the form, as typed."""
    seen = get_mailing_or_404(mailing_id)
    if seen.status != MailingStatus.APPROVED:  # a late second click: refused without taking the lock
        flash(f"Only an approved mailing can be sent; this one is {seen.status}.", "error")
        return _back(seen)
    mailing = mailing_for_update(mailing_id)
    form = SendForm()
    if not form.validate_on_submit():
        db.session.rollback()
        return mailing_page(mailing, send_form=form)
    try:
        row = services.request_send(mailing, form.request(), actor=current_user)
    except services.MailingError as exc:
        db.session.rollback()
        db.session.refresh(mailing)
        if mailing.status == MailingStatus.APPROVED and mailing.is_approved:  # the request was wrong: keep it
            form.form_errors.append(str(exc))
            return mailing_page(mailing, send_form=form)
        flash(str(exc), "error")  # sent meanwhile (a second click), or changed
        return _back(mailing)
    db.session.commit()
    description = mailing.schedule.get("description", "now")
    dispatch(row)
    flash(f"Sending {description}. No contact receives it twice; the progress is below.", "success")
    return _back(mailing, "progress")


@bp.route("/mailings/<id:mailing_id>/cancel", methods=["GET", "POST"])
@staff_required
def cancel(mailing_id: int) -> str | Response:
    """A confirmation page; its POST cancels what is not sent yet (messages in flight finish)."""
    mailing = mailing_for_update(mailing_id) if request.method == "POST" else get_mailing_or_404(mailing_id)
    if mailing.status in (MailingStatus.FINISHED, MailingStatus.CANCELLED):
        flash(f"This mailing is {mailing.status}: there is nothing left to cancel.", "info")
        return _back(mailing)
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            cancelled = services.cancel(mailing, actor=current_user)
        except services.MailingError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(
                f"Cancelled the mailing: {cancelled} deliver{'y' if cancelled == 1 else 'ies'} will not be sent.",
                "success",
            )
        return _back(mailing)
    return render_template(
        "_cancel_sending.html",
        what="mailing",
        title=mailing.name,
        back=url_for("mailings.mailing", mailing_id=mailing.id),
        remedy="draft a new one",
        progress=services.progress(mailing),
        form=form,
    )


@bp.route("/mailings/<id:mailing_id>/deliveries")
@staff_required
def deliveries(mailing_id: int) -> str:
    """One row per contact: the proof of who received the mailing, and why anyone did not."""
    mailing = get_mailing_or_404(mailing_id)
    state = request.args.get("state", "")
    state = state if state in {s.value for s in DeliveryStatus} else ""
    q = request.args.get("q", "").strip()[:254]
    query = (
        sa.select(Delivery)
        .where(Delivery.mailing_id == mailing.id)
        .options(selectinload(Delivery.contact))
        .order_by(Delivery.id)
    )
    if state:
        query = query.where(Delivery.status == state)
    if q:
        query = query.where(Delivery.email.icontains(q.lower(), autoescape=True))
    page = db.paginate(query, page=page_arg(), per_page=PER_PAGE, error_out=False)
    args = {name: value for name, value in (("state", state), ("q", q)) if value}
    return render_template(
        "mailings/deliveries.html",
        mailing=mailing,
        page=page,
        state=state,
        q=q,
        args=args,
        counts=services.progress(mailing).counts,
        country_name=country_name,
    )


@bp.route("/mailings/<id:mailing_id>/deliveries/<id:delivery_id>", methods=["GET", "POST"])
@staff_required
def delivery(mailing_id: int, delivery_id: int) -> str | Response:
    """A delivery's history; for an uncertain one, the form that settles it (a POST here)."""
    if request.method == "POST":
        mailing_for_update(mailing_id)  # one decision at a time on this mailing
    found = db.session.get(Delivery, delivery_id)
    if found is None or found.mailing_id != mailing_id:
        abort(404)
    form = ResolveForm(prefix=f"d{found.id}")
    if form.validate_on_submit():
        try:
            row = services.resolve(found, form.outcome.data, form.note.data, current_user)
        except services.MailingError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return redirect(url_for("mailings.delivery", mailing_id=mailing_id, delivery_id=found.id))
        db.session.commit()
        if row is not None:
            dispatch(row)
        flash(f"Recorded for {found.email}: {services.RESOLUTIONS[form.outcome.data]}.", "success")
        return _back(found.mailing, "uncertain")
    return render_template(
        "mailings/delivery.html", mailing=found.mailing, delivery=found, form=form, country_name=country_name
    )
