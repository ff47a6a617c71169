"""The application's own emails: account links and notices, queued in the caller's transaction."""

from __future__ import annotations

from email.headerregistry import Address
from typing import Any

from flask import current_app, render_template, url_for

from campaign import queue
from campaign.admin.services import get_settings
from campaign.extensions import db
from campaign.mailings import jobs  # noqa: F401 - registers the mail.send handler
from campaign.mailings.backends import _address, _clean
from campaign.queue import Job


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute link for an email, built on ``SITE_URL``, never on the request's Host header."""
    return current_app.config["SITE_URL"] + url_for(endpoint, **values)


def sender_address() -> tuple[str, str | None]:
    """The From and Reply-To the coalition set, else the configured default."""
    settings = get_settings()
    if settings.mail_from_address:
        # Address quotes and escapes the name, so a quote or backslash in it cannot change the address.
        name = settings.mail_from_name or settings.name
        sender = str(Address(display_name=name, addr_spec=settings.mail_from_address))
    else:
        sender = current_app.config["MAIL_FROM"]
    return sender, settings.reply_to or None


def render_email(to: str, subject: str, template: str, **context: Any) -> dict[str, Any]:
    """``templates/email/<template>.txt`` (and ``.html``) rendered, with the headers checked
    (``build_mime``'s checks, without building the message): the arguments of ``mail.send``."""
    context.setdefault("coalition", get_settings())
    text = render_template(f"email/{template}.txt", **context)
    html = render_template(f"email/{template}.html", **context)
    sender, reply_to = sender_address()
    _clean(subject, "the subject")
    for address in (to, sender, reply_to):
        if address:
            _address(address)
    return {"to": [to], "subject": subject, "text": text, "html": html, "sender": sender, "reply_to": reply_to}


def queue_email(to: str, subject: str, template: str, **context: Any) -> Job:
    """``render_email`` into a send job of this transaction.

    Headers are checked now, so a bad address fails here rather than in the worker.
    The caller commits, then dispatches the job.
    """
    return queue.schedule(
        "mail.send", render_email(to, subject, template, **context), description=f"Email {template} to {to}"
    )


def send_template(to: str, subject: str, template: str, **context: Any) -> Job:
    """``queue_email``, committed and dispatched at once.

    Call after the commit that the message reports on: this commits the job row.
    """
    row = queue_email(to, subject, template, **context)
    db.session.commit()
    queue.dispatch(row)
    return row
