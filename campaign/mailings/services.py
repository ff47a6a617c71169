"""Sending the application's own emails (account links and notices)."""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template, url_for

from campaign.admin.services import get_settings
from campaign.mailings.backends import Message, SendResult


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute link for an email, built on ``SITE_URL``, never on the request's Host header."""
    return current_app.config["SITE_URL"] + url_for(endpoint, **values)


def sender_address() -> tuple[str, str | None]:
    """The From and Reply-To the coalition set, else the configured default."""
    settings = get_settings()
    if settings.mail_from_address:
        name = (settings.mail_from_name or settings.name).replace('"', "'")
        sender = f'"{name}" <{settings.mail_from_address}>'
    else:
        sender = current_app.config["MAIL_FROM"]
    return sender, settings.reply_to or None


def send_template(to: str, subject: str, template: str, **context: Any) -> SendResult:
    """Render ``templates/email/<template>.txt`` (and ``.html``) and send it now.

    Call after the commit that the message reports on.
    """
    settings = get_settings()
    context.setdefault("coalition", settings)
    text = render_template(f"email/{template}.txt", **context)
    html = render_template(f"email/{template}.html", **context)
    sender, reply_to = sender_address()
    message = Message(to=[to], subject=subject, text=text, html=html, sender=sender, reply_to=reply_to)
    result = current_app.extensions["mail_backend"].send(message)
    if not result.ok:
        current_app.logger.error("mail to %s failed: %s", to, result.error)
    return result
