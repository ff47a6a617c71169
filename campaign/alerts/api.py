"""JSON endpoints for alerts: ``/api/v1/alerts`` (coordinators and admins).

``POST /api/v1/alerts`` writes an alert (the original, translations, topics by key,
languages) and, with ``"send": true`` or ``"send_at"``, sends it; otherwise it stays a draft
for ``POST /api/v1/alerts/{id}/send``.  Input that cannot be used is a 422 problem naming
the field; a step the alert's state refuses (sending twice, cancelling a finished alert)
is a 409 problem whose ``detail`` says why.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import abort
from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy.orm import selectinload

from campaign.alerts import sending, services
from campaign.alerts.models import Alert, AlertDelivery, Topic
from campaign.alerts.schemas import AlertCreateSchema, AlertFilterArgs, AlertSchema, AlertSendSchema
from campaign.extensions import db
from campaign.mailings.services import progress_of
from campaign.restapi import PREFIX, api_roles, documents, page_of, paginate, problem, refused

blp = Blueprint("alerts_api", __name__, url_prefix=PREFIX, description="Alerts to subscribers")

STAFF = ("coordinator", "admin")


def _view(alert: Alert, topic_keys: dict[int, str], progress: sending.Progress | None = None) -> dict[str, Any]:
    progress = progress or sending.progress(alert.id)
    texts = sorted(alert.texts, key=lambda text: text.language != alert.language)
    return {
        "id": alert.id,
        "kind": alert.kind,
        "status": alert.status,
        "language": alert.language,
        "texts": [{"language": t.language, "subject": t.subject, "body": t.body} for t in texts],
        "topics": [topic_keys[topic_id] for topic_id in alert.topic_ids if topic_id in topic_keys],
        "languages": list(alert.languages),
        "letter": alert.letter.slug if alert.letter else None,
        "created_by": alert.created_by.email if alert.created_by else None,
        "send_requested_date": alert.send_requested_at,
        "due_date": alert.due_at,
        "started_date": alert.started_at,
        "finished_date": alert.finished_at,
        "cancelled_date": alert.cancelled_at,
        "progress": {**vars(progress), "percent": progress.percent},
        "created_date": alert.created_at,
        "modified_date": alert.updated_at,
    }


def _topic_keys() -> dict[int, str]:
    return dict(db.session.execute(sa.select(Topic.id, Topic.key)).all())


def _alert_or_404(id: int) -> Alert:
    return db.session.get(Alert, id) or abort(404)


@blp.route("/alerts")
@documents(blp, 422)
@api_roles(*STAFF)
@blp.arguments(AlertFilterArgs, location="query")
@blp.response(200, page_of(AlertSchema))
def list_alerts(args: dict[str, Any]) -> Any:
    """Alerts, newest first, each with its deliveries counted per state; filter by status and kind."""
    query = sa.select(Alert).order_by(Alert.created_at.desc(), Alert.id.desc())
    if "status" in args:
        query = query.where(Alert.status == args["status"])
    if "kind" in args:
        query = query.where(Alert.kind == args["kind"])
    page = paginate(query.options(selectinload(Alert.texts), selectinload(Alert.created_by)), args)
    progress = progress_of(AlertDelivery.alert_id, [alert.id for alert in page["items"]])
    keys = _topic_keys()
    page["items"] = [_view(alert, keys, progress[alert.id]) for alert in page["items"]]
    return page


@blp.route("/alerts", methods=["POST"])
@documents(blp, 409, 422)
@api_roles(*STAFF)
@blp.arguments(AlertCreateSchema)
@blp.response(201, AlertSchema)
@blp.alt_response(202, schema=AlertSchema, description="Written and sent (or scheduled)")
def create_alert(data: dict[str, Any]) -> Any:
    """Write an alert; with `"send": true` it is sent now, with `"send_at"` then (202 either way),
    else it stays a draft (201).  Subscribers following any of its topics receive it, in their
    language where it has a text, else in the original's."""
    topic_ids, unknown = services.topics_by_key(data["topics"])
    if unknown:
        return problem(422, f"Unknown topics: {', '.join(unknown)[:200]}.",
                       {"json": {"topics": [f"No active topic {key!r}." for key in unknown[:20]]}})  # fmt: skip
    alert_data = services.AlertData(
        original=services.AlertTextData(data["language"], data["subject"], data["body"]),
        topic_ids=topic_ids,
        translations=[services.AlertTextData(t["language"], t["subject"], t["body"]) for t in data["translations"]],
        languages=data["languages"],
    )
    try:
        alert = services.create_alert(alert_data, actor=current_user)
    except services.AlertError as exc:
        return refused(exc, 422)
    db.session.commit()
    if not (data["send"] or "send_at" in data):
        return _view(alert, _topic_keys()), 201
    try:
        services.request_send(alert, current_user, data.get("send_at"))
    except services.AlertError as exc:
        db.session.rollback()
        return problem(409, f"Alert {alert.id} was saved as a draft but not sent: {exc}")
    return _view(alert, _topic_keys()), 202


@blp.route("/alerts/<id:id>")
@documents(blp, 404)
@api_roles(*STAFF)
@blp.response(200, AlertSchema)
def get_alert(id: int) -> Any:
    """An alert with its texts and its deliveries counted per state."""
    return _view(_alert_or_404(id), _topic_keys())


@blp.route("/alerts/<id:id>/send", methods=["POST"])
@documents(blp, 404, 409, 422)
@api_roles(*STAFF)
@blp.arguments(AlertSendSchema, required=False)
@blp.response(202, AlertSchema)
def send_alert(data: dict[str, Any], id: int) -> Any:
    """Send a draft: no body (or `{}`) now, `{"at": "2027-03-01T09:00:00+01:00"}` then.  Each
    subscriber of the audience gets one delivery; the answer comes at once (202)."""
    alert = _alert_or_404(id)
    try:
        services.request_send(alert, current_user, (data or {}).get("at"))
    except services.AlertError as exc:
        return refused(exc)
    return _view(alert, _topic_keys()), 202


@blp.route("/alerts/<id:id>/cancel", methods=["POST"])
@documents(blp, 404, 409)
@api_roles(*STAFF)
@blp.response(200, AlertSchema)
def cancel_alert(id: int) -> Any:
    """Stop an alert: deliveries not yet sent are cancelled; those in flight finish.  A finished
    or cancelled alert is a 409."""
    alert = _alert_or_404(id)
    try:
        services.cancel(alert, current_user)
    except services.AlertError as exc:
        return refused(exc)
    db.session.commit()
    return _view(alert, _topic_keys())
