"""The home page, the logo and the health check."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, current_app, jsonify, render_template
from werkzeug.wrappers import Response

from campaign.admin.services import get_settings
from campaign.extensions import db
from campaign.main import bp


@bp.route("/")
def index() -> str:
    return render_template("main/index.html")


@bp.route("/logo")
def logo() -> Response:
    """The coalition's logo: it heads public pages and letters."""
    settings = get_settings()
    if not settings.logo:
        abort(404)
    response = current_app.response_class(settings.logo, mimetype=settings.logo_mimetype)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.route("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when the database (and Redis, when configured) answer; 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        db.session.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except sa.exc.SQLAlchemyError as exc:
        db.session.rollback()
        checks["database"] = f"error: {type(exc).__name__}"
    client = current_app.extensions["redis"]
    if client is None:
        checks["redis"] = "not configured"
    else:
        try:
            client.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            checks["redis"] = f"error: {type(exc).__name__}"
    healthy = all(v in ("ok", "not configured") for v in checks.values())
    return jsonify(status="ok" if healthy else "unavailable", **checks), 200 if healthy else 503
