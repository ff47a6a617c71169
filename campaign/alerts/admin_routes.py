"""Coordinators' pages for alerts: compose, preview, test send, send, cancel, delivery reports.

Every action goes through ``services``, which refuse what the rules refuse (editing a sent
alert, a second send) with an ``AlertError`` shown as a flash.  Sending commits and hands
the work to the queue itself; other jobs are dispatched after the route's commit.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import (
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from sqlalchemy.orm import selectinload

from campaign import audit, queue
from campaign.alerts import admin_bp, sending, services
from campaign.alerts.alert_forms import AlertForm, AlertSendForm, SendTestForm
from campaign.alerts.models import Alert, AlertDelivery, AlertKind, AlertStatus, Topic
from campaign.auth.forms import ConfirmForm
from campaign.db import begin_write, page_arg
from campaign.extensions import db
from campaign.letters.models import UN_LANGUAGES
from campaign.mailings.models import DeliveryStatus
from campaign.queue import Job, JobStatus
from campaign.security import staff_required
from campaign.spreadsheets import neutralise

log = logging.getLogger(__name__)
PER_PAGE = 50
EXPIRED = "The form expired; please try again."
#: The preview of the HTML part: framed by our own pages only, no script, nothing fetched.
PREVIEW_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
ACTIVE = (AlertStatus.SCHEDULED.value, AlertStatus.SENDING.value)
STATUS_LABELS = {
    "draft": "Draft",
    "scheduled": "Scheduled",
    "sending": "Sending",
    "finished": "Finished",
    "cancelled": "Cancelled",
}
KIND_LABELS = {
    AlertKind.MANUAL.value: "Written by hand",
    AlertKind.LETTER_OPENED.value: "A letter opened",
    AlertKind.MAILING_DELIVERED.value: "A letter delivered",
    AlertKind.MEETING_SOON.value: "A meeting is near",
}
EXPORT_FIELDS = ("id", "email", "language", "status", "reason", "message_id", "attempts", "sent_at", "updated_at")


def get_alert_or_404(alert_id: int) -> Alert:
    return services.get_alert(alert_id) or abort(404)


def alert_for_update(alert_id: int) -> Alert:
    """The alert, locked until the commit: two clicks at once run one after the other."""
    db.session.commit()  # end the read transaction the sign-in check opened
    begin_write(db.session)
    found = db.session.get(Alert, alert_id, with_for_update=True, populate_existing=True)
    return found or abort(404)


def _back(alert: Alert, anchor: str | None = None) -> Response:
    return redirect(url_for("alerts_admin.alert", alert_id=alert.id, _anchor=anchor))


def _dispatch(row: Job) -> None:
    """Hand a committed job to the queue; inline on SQLite a locked database leaves it to the worker."""
    try:
        queue.dispatch(row)
    except sa.exc.OperationalError as exc:
        if "database is locked" not in str(exc):
            raise
        db.session.rollback()
        log.warning("job %s: left to the worker, the database was locked: %s", row.id, exc.orig)


def _labels() -> dict[str, object]:
    return {"status_labels": STATUS_LABELS, "kind_labels": KIND_LABELS, "language_names": UN_LANGUAGES}


# --- the list --------------------------------------------------------------------------------


@admin_bp.route("/alerts")
@staff_required
def alerts() -> str:
    query = (
        sa.select(Alert)
        .options(selectinload(Alert.texts), selectinload(Alert.created_by))
        .order_by(Alert.created_at.desc(), Alert.id.desc())
    )
    page = db.paginate(query, page=page_arg(), per_page=PER_PAGE, error_out=False)
    ids = [alert.id for alert in page.items]
    counts: dict[int, dict[str, int]] = {}
    for alert_id, status, count in db.session.execute(
        sa.select(AlertDelivery.alert_id, AlertDelivery.status, sa.func.count())
        .where(AlertDelivery.alert_id.in_(ids))
        .group_by(AlertDelivery.alert_id, AlertDelivery.status)
    ):
        counts.setdefault(alert_id, {})[status] = count
    return render_template("alerts/alerts.html", page=page, counts=counts, **_labels())


# --- composing -------------------------------------------------------------------------------


def _topics(alert: Alert | None) -> list[Topic]:
    """The topics offered, and any retired one a draft still names."""
    topics = services.active_topics()
    if alert is not None:
        known = {topic.id for topic in topics}
        missing = [topic_id for topic_id in alert.topic_ids if topic_id not in known]
        if missing:
            topics += list(db.session.scalars(sa.select(Topic).where(Topic.id.in_(missing))))
    return topics


def _compose(alert: Alert | None) -> str | Response:
    topics = _topics(alert)
    form = AlertForm(topics=topics) if request.method == "POST" else AlertForm.for_alert(alert, topics)
    if form.validate_on_submit():
        try:
            if alert is None:
                saved = services.create_alert(form.data_for_service(), actor=current_user)
                changed = True
            else:
                changed = services.update_alert(alert, form.data_for_service(), actor=current_user)
                saved = alert
        except services.AlertError as exc:
            db.session.rollback()
            form.attach_error(str(exc))
        else:
            db.session.commit()
            flash("Saved." if changed else "Nothing changed.", "success" if changed else "info")
            return redirect(url_for("alerts_admin.alert", alert_id=saved.id))
    error = None
    if request.method == "POST":
        error = " ".join(form.form_errors) or "The alert was not saved: correct the fields marked below."
    return render_template("alerts/alert_form.html", form=form, alert=alert, error=error)


@admin_bp.route("/alerts/new", methods=["GET", "POST"])
@staff_required
def new_alert() -> str | Response:
    return _compose(None)


@admin_bp.route("/alerts/<id:alert_id>/edit", methods=["GET", "POST"])
@staff_required
def edit_alert(alert_id: int) -> str | Response:
    alert = alert_for_update(alert_id) if request.method == "POST" else get_alert_or_404(alert_id)
    if alert.status != AlertStatus.DRAFT:
        flash(f"This alert is {alert.status}: it can no longer be changed.", "info")
        return _back(alert)
    return _compose(alert)


# --- an alert's page -------------------------------------------------------------------------


def summary(alert: Alert, progress: sending.Progress) -> str:
    """One sentence for people (and the live region): where the alert stands."""
    label = STATUS_LABELS.get(alert.status, alert.status)
    if not progress.total:
        return f"{label}: nothing sent yet."
    states = ", ".join(f"{count} {state}" for state, count in progress.counts.items() if count)
    return f"{label}: {progress.done} of {progress.total} handled ({progress.percent} %): {states}."


def alert_page(alert: Alert, send_form: AlertSendForm | None = None) -> str:
    progress = sending.progress(alert.id)
    topics = {topic.id: topic for topic in db.session.scalars(sa.select(Topic).where(Topic.id.in_(alert.topic_ids)))}
    test_form = SendTestForm(formdata=None, language=alert.language)
    return render_template(
        "alerts/alert.html",
        alert=alert,
        topics=[topics[topic_id] for topic_id in alert.topic_ids if topic_id in topics],
        audience=services.audience_count(alert) if alert.status == AlertStatus.DRAFT else None,
        progress=progress if progress.total else None,
        summary=summary(alert, progress),
        by_language=services.counts_by_language(alert),
        troubled=services.troubled_deliveries(alert),
        active=alert.status in ACTIVE,
        send_form=send_form or AlertSendForm(formdata=None),
        test_form=test_form,
        confirm=ConfirmForm(),
        states=[state.value for state in DeliveryStatus],
        **_labels(),
    )


@admin_bp.route("/alerts/<id:alert_id>")
@staff_required
def alert(alert_id: int) -> str:
    return alert_page(get_alert_or_404(alert_id))


@admin_bp.route("/alerts/<id:alert_id>/progress")
@staff_required
def progress(alert_id: int) -> Response:
    """The deliveries per state, for the page's progress bar (static/js/mailing-progress.js)."""
    alert = get_alert_or_404(alert_id)
    found = sending.progress(alert.id)
    return jsonify(
        status=alert.status,
        status_label=STATUS_LABELS.get(alert.status, alert.status),
        active=alert.status in ACTIVE,
        counts=found.counts,
        total=found.total,
        done=found.done,
        percent=found.percent,
        summary=summary(alert, found),
    )


def _language_arg(alert: Alert) -> str:
    language = request.args.get("language", "")
    return language if language in UN_LANGUAGES else alert.language


@admin_bp.route("/alerts/<id:alert_id>/preview")
@staff_required
def preview(alert_id: int) -> str:
    """The message as a sample subscriber reading a language receives it: subject, HTML (framed), text."""
    alert = get_alert_or_404(alert_id)
    language = _language_arg(alert)
    message, error = None, None
    try:
        message = services.preview(alert, language)
    except services.AlertError as exc:
        error = str(exc)
    text = alert.text_for(language)
    return render_template(
        "alerts/alert_preview.html",
        alert=alert,
        language=language,
        shown=text.language if text else alert.language,
        message=message,
        error=error,
        **_labels(),
    )


@admin_bp.route("/alerts/<id:alert_id>/preview.html")
@staff_required
def preview_html(alert_id: int) -> Response:
    """The HTML part alone, for the preview's sandboxed frame."""
    alert = get_alert_or_404(alert_id)
    try:
        html = services.preview(alert, _language_arg(alert)).html or ""
    except services.AlertError as exc:
        abort(422, str(exc))
    response = current_app.response_class(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@admin_bp.route("/alerts/<id:alert_id>/test", methods=["POST"])
@staff_required
def test_send(alert_id: int) -> Response:
    """The alert as a subscriber receives it, sent to the coordinator's own address."""
    alert = get_alert_or_404(alert_id)
    form = SendTestForm()
    if not form.validate_on_submit():
        flash(EXPIRED if form.csrf_token.errors else "Choose the language of the test.", "error")
        return _back(alert)
    try:
        row = services.test_send(alert, current_user, form.language.data)
    except services.AlertError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _back(alert)
    db.session.commit()
    _dispatch(row)
    row = db.session.get(Job, row.id)
    db.session.refresh(row)
    if row.status == JobStatus.FINISHED and not row.message:
        flash(f"Sent a test to {current_user.email}.", "success")
    elif row.status in (JobStatus.QUEUED, JobStatus.RUNNING) and not row.error:
        flash(f"A test is on its way to {current_user.email}.", "success")
    else:
        flash(f"The test to {current_user.email} was not sent: {row.message or row.error}", "error")
    return _back(alert)


@admin_bp.route("/alerts/<id:alert_id>/send", methods=["POST"])
@staff_required
def send(alert_id: int) -> str | Response:
    """Now or at a time; a refused time comes back on the form, as typed."""
    seen = get_alert_or_404(alert_id)
    if seen.status != AlertStatus.DRAFT:  # a late second click: refused without taking the lock
        flash(f"Only a draft can be sent; this alert is {seen.status}.", "error")
        return _back(seen)
    alert = alert_for_update(alert_id)
    form = AlertSendForm()
    if not form.validate_on_submit():
        db.session.rollback()
        return alert_page(alert, send_form=form)
    try:
        made = services.request_send(alert, current_user, form.send_at())
    except services.AlertError as exc:
        db.session.rollback()
        db.session.refresh(alert)
        if alert.status == AlertStatus.DRAFT:
            form.form_errors.append(str(exc))
            return alert_page(alert, send_form=form)
        flash(str(exc), "error")
        return _back(alert)
    flash(f"Sending to {made} subscriber{'' if made == 1 else 's'}; none receives it twice. The progress is below.",
          "success")  # fmt: skip
    return _back(alert, "progress")


@admin_bp.route("/alerts/<id:alert_id>/cancel", methods=["GET", "POST"])
@staff_required
def cancel(alert_id: int) -> str | Response:
    """A confirmation page; its POST cancels what is not sent yet (messages in flight finish)."""
    alert = alert_for_update(alert_id) if request.method == "POST" else get_alert_or_404(alert_id)
    if alert.status in (AlertStatus.FINISHED, AlertStatus.CANCELLED):
        flash(f"This alert is {alert.status}: there is nothing left to cancel.", "info")
        return _back(alert)
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            cancelled = services.cancel(alert, actor=current_user)
        except services.AlertError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(f"Cancelled the alert: {cancelled} deliver{'y' if cancelled == 1 else 'ies'} will not be sent.",
                  "success")  # fmt: skip
        return _back(alert)
    return render_template(
        "_cancel_sending.html",
        what="alert",
        title=f"alert {alert.id}",
        back=url_for("alerts_admin.alert", alert_id=alert.id),
        remedy="write a new one",
        progress=sending.progress(alert.id),
        form=form,
    )


# --- the deliveries as CSV -------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return neutralise(str(value))


def _csv_lines(alert_id: int) -> Iterator[str]:
    """Streamed in partitions: the deliveries of an alert to 100,000 are never all in memory."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_FIELDS)
    yield "\ufeff" + buffer.getvalue()
    columns = [getattr(AlertDelivery, name) for name in EXPORT_FIELDS]
    query = (
        sa.select(*columns)
        .where(AlertDelivery.alert_id == alert_id)
        .order_by(AlertDelivery.id)
        .execution_options(yield_per=1000)
    )
    for partition in db.session.execute(query).partitions():
        buffer.seek(0)
        buffer.truncate()
        for row in partition:
            writer.writerow(_cell(value) for value in row)
        yield buffer.getvalue()


@admin_bp.route("/alerts/<id:alert_id>/deliveries.csv")
@staff_required
def export_deliveries(alert_id: int) -> Response:
    """Every delivery of the alert, one line per subscriber; formula-like cells are neutralised."""
    alert = get_alert_or_404(alert_id)
    audit.record("alerts.export", alert, f"Exported the deliveries of alert {alert.id} as CSV")
    db.session.commit()
    filename = f"alert-{alert_id}-deliveries-{datetime.now(UTC):%Y%m%d-%H%M}.csv"
    return Response(
        stream_with_context(_csv_lines(alert_id)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
