"""Background jobs of the signatures domain: reminders to invited organisations."""

from __future__ import annotations

import logging

from campaign.extensions import db
from campaign.queue import Job, job
from campaign.signatures import services

log = logging.getLogger(__name__)


@job(services.REMIND_JOB, queue="low")
def remind(row: Job, letter_id: int, deadline: str) -> None:
    """Remind invited organisations that have not signed; idempotent against ``Invitation.reminded_at``."""
    count = services.send_reminders(letter_id, deadline)
    db.session.commit()
    services.dispatch_after_commit()
    log.info("job %s: reminded %s organisations to sign letter %s", row.id, count, letter_id)
