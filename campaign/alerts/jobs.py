"""Background jobs of the alerts domain: the dispatch of an alert and the sending of its chunks."""

from __future__ import annotations

import logging

from campaign import queue
from campaign.mailings.jobs import STALLED, resume_stalled
from campaign.queue import Job, job

log = logging.getLogger(__name__)


@job("alert.dispatch", queue="mail", max_attempts=5)
def dispatch_alert(row: Job, alert_id: int) -> None:
    """Schedule one chunk job per batch of the alert's due deliveries (and a later dispatch for
    those waiting on a backoff); marks the alert finished when nothing is left."""
    from campaign.alerts import sending
    from campaign.extensions import db

    sending.expire_leases()
    rows = sending.dispatch_due(alert_id)
    db.session.commit()
    log.info("job %s: alert %s, %s job(s) scheduled", row.id, alert_id, len(rows))
    sending.finish_if_done(alert_id)
    queue.dispatch(*rows)


@job("alert.chunk", queue="mail", max_attempts=3)
def send_alert_chunk(row: Job, alert_id: int) -> None:
    """Claim a batch of the alert's deliveries (one language), send it in one request, and go on
    with the next while time remains.  Running twice is harmless: a second run claims other
    deliveries, or none."""
    from campaign.alerts import sending

    claimed = sending.send_chunks(alert_id, row.id)
    log.info("job %s: alert %s, %s deliveries handled", row.id, alert_id, claimed)


@queue.sweeper
def redispatch_stalled() -> int:
    """Dispatch again the alerts whose due deliveries wait with no job left to send them (their
    chunk jobs failed for good, the database was away); returns how many.  Registered with the
    worker's maintenance loop on import, like the jobs."""
    import sqlalchemy as sa

    from campaign.alerts.models import Alert, AlertDelivery, AlertStatus
    from campaign.db import utcnow
    from campaign.extensions import db
    from campaign.mailings.models import DeliveryStatus

    now = utcnow()
    waiting = db.session.scalars(
        sa.select(Alert.id).where(
            Alert.status.in_([AlertStatus.SCHEDULED.value, AlertStatus.SENDING.value]),
            sa.or_(Alert.due_at.is_(None), Alert.due_at <= now - STALLED),
            sa.exists().where(
                AlertDelivery.alert_id == Alert.id,
                AlertDelivery.status == DeliveryStatus.PENDING.value,
                sa.or_(AlertDelivery.lease_until.is_(None), AlertDelivery.lease_until <= now - STALLED),
            ),
        )
    ).all()
    return resume_stalled("alert", waiting, now)
