"""Admin pages for the outbox: every message the outbox backend wrote."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from flask import abort, current_app, render_template
from werkzeug.wrappers import Response

from campaign.mailings import bp
from campaign.mailings.backends import OutboxBackend
from campaign.security import admin_required

PER_PAGE = 100

# The stored HTML part is shown in a sandbox: no script, no outside requests.
_HTML_PART_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _outbox() -> OutboxBackend:
    backend = current_app.extensions["mail_backend"]
    if isinstance(backend, OutboxBackend):
        return backend
    return OutboxBackend(current_app.config["OUTBOX_DIR"])


def _read(name: str) -> EmailMessage:
    path = _outbox().path_for(name) or abort(404)
    with path.open("rb") as handle:
        return BytesParser(policy=policy.default).parse(handle)


@bp.route("/outbox")
@admin_required
def outbox() -> str:
    names = _outbox().names()[:PER_PAGE]
    messages = []
    for name in names:
        message = _read(name)
        messages.append({"name": name, "to": message["To"], "subject": message["Subject"], "date": message["Date"]})
    return render_template("mailings/outbox.html", messages=messages, total=len(_outbox().names()))


@bp.route("/outbox/<name>")
@admin_required
def outbox_message(name: str) -> str:
    message = _read(name)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    attachments = [(part.get_filename(), part.get_content_type()) for part in message.iter_attachments()]
    return render_template(
        "mailings/outbox_message.html",
        name=name,
        headers=list(message.items()),
        text=text.get_content() if text else "",
        has_html=html is not None,
        attachments=attachments,
    )


@bp.route("/outbox/<name>/html")
@admin_required
def outbox_html(name: str) -> Response:
    html = _read(name).get_body(preferencelist=("html",)) or abort(404)
    response = current_app.response_class(html.get_content(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = _HTML_PART_CSP
    return response
