"""Background jobs of the signatures domain: reminders to invited organisations, and the
confirmation emails of public sign-ons."""

from __future__ import annotations

import logging

from campaign.extensions import db
from campaign.queue import Job, job
from campaign.signatures import invitations, public_signon, services

log = logging.getLogger(__name__)


@job(invitations.REMIND_JOB, queue="low")
def remind(row: Job, letter_id: int, deadline: str) -> None:
    """Remind invited organisations that have not signed; idempotent against ``Invitation.reminded_at``."""
    count = invitations.send_reminders(letter_id, deadline)
    db.session.commit()
    services.dispatch_after_commit()
    log.info("job %s: reminded %s organisations to sign letter %s", row.id, count, letter_id)


@job(public_signon.VERIFY_JOB, queue="high", max_attempts=5)
def send_verification(row: Job, signature_id: int, fingerprint: str) -> None:
    """Email a public sign-on's confirmation link, rendered now; as ``mail.send`` (retried while
    the backend cannot send), unless the attempt was replaced or confirmed meanwhile."""
    from campaign.mailings.jobs import send_message

    message = public_signon.verification_email(signature_id, fingerprint)
    if message is None:
        row.message = "not sent: the sign-on was replaced or confirmed meanwhile"
        log.info("job %s: signature %s was replaced or confirmed, no confirmation email", row.id, signature_id)
        return
    send_message(row, **message)
