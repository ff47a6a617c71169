"""Background jobs of the mailings domain."""

from __future__ import annotations

import logging

from flask import current_app

from campaign.mailings.backends import Message, SendResult
from campaign.queue import Job, job

log = logging.getLogger(__name__)


class TransientMailError(RuntimeError):
    """The backend could not send now; the job is retried with backoff."""


@job("mail.send", queue="high", max_attempts=5)
def send_message(
    row: Job, to: list[str], subject: str, text: str, html: str | None, sender: str, reply_to: str | None
) -> None:
    """Send one application email (account links, notices)."""
    message = Message(to=to, subject=subject, text=text, html=html, sender=sender, reply_to=reply_to)
    result: SendResult = current_app.extensions["mail_backend"].send(message)
    if result.ok:
        log.info("job %s: sent %r to %s as %s", row.id, subject, ", ".join(to), result.message_id)
        return
    if result.retryable:
        raise TransientMailError(result.error)
    log.error("job %s: %r to %s refused: %s", row.id, subject, ", ".join(to), result.error)
    row.message = f"refused: {result.error}"[:500]
