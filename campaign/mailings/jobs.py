"""Background jobs of the mailings domain: application emails, and mailings' sending."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from campaign import queue
from campaign.db import utcnow
from campaign.mailings.backends import Message, SendResult
from campaign.queue import Job, JobStatus, job

log = logging.getLogger(__name__)
#: How long due deliveries wait, with no mailing (or alert) job queued, running or recently
#: ended, before their mailing (or alert) is dispatched again.
STALLED = timedelta(minutes=10)


class TransientMailError(RuntimeError):
    """The backend could not send now; the job is retried with backoff."""


class RefusedMailError(queue.PermanentJobError):
    """The backend refused the message for good; the job fails with the reason."""


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
    if result.uncertain:
        # It may have arrived: sending it again could duplicate it, so the job ends here.
        log.warning("job %s: %r to %s may have been sent: %s", row.id, subject, ", ".join(to), result.error)
        row.message = f"may have been sent: {result.error}"[:500]
        return
    raise RefusedMailError(f"refused: {result.error}")


@job("mailing.dispatch", queue="mail", max_attempts=5)
def dispatch_mailing(row: Job, mailing_id: int) -> None:
    """Schedule the chunks of a mailing's due deliveries (and the next dispatch for later ones)."""
    from campaign.extensions import db
    from campaign.mailings import sending

    sending.expire_leases()
    rows = sending.dispatch_due(mailing_id)
    db.session.commit()
    log.info("job %s: mailing %s, %s job(s) scheduled", row.id, mailing_id, len(rows))
    sending.finish_if_done(mailing_id)
    queue.dispatch(*rows)


@job("mailing.documents", queue="default", max_attempts=3)
def render_documents(row: Job, mailing_id: int, version: int) -> None:
    """Render the PDFs of a mailing just approved (``documents.render_approved``)."""
    from campaign.mailings import documents

    rendered = documents.render_approved(mailing_id, version)
    log.info("job %s: mailing %s, %s PDF(s) rendered", row.id, mailing_id, rendered)


@job("mailing.chunk", queue="mail", max_attempts=3)
def send_mailing_chunk(row: Job, mailing_id: int) -> None:
    """Claim a chunk of a mailing's due deliveries and send them, then the chunks of the
    mailing's next jobs as they come due (``sending.send_chunks``).  Running twice is
    harmless: a second run claims other deliveries, or none."""
    from campaign.mailings import sending

    sent = sending.send_chunks(mailing_id, row.id)
    log.info("job %s: mailing %s, %s deliveries handled", row.id, mailing_id, sent)


@job("mailing.test", queue="high", max_attempts=3)
def send_test(row: Job, mailing_id: int, contact_id: int, to: str) -> None:
    """The mailing as ``contact`` would receive it, sent to ``to`` (the coordinator)."""
    from campaign.mailings import sending

    result = sending.send_test(mailing_id, contact_id, to)
    if result.retryable:
        raise TransientMailError(result.error)
    if not result.ok:
        row.message = f"not sent: {result.error}"[:500]


@queue.sweeper
def redispatch_stalled() -> int:
    """Dispatch again the mailings whose due deliveries wait with no job left to send them
    (their chunk jobs failed for good: the database was away, a PDF would not render);
    returns how many.  Registered with the worker's maintenance loop on import, like the jobs."""
    from campaign.extensions import db
    from campaign.mailings.models import Delivery, DeliveryStatus, Mailing, MailingStatus

    now = utcnow()
    waiting = db.session.scalars(
        sa.select(Mailing.id).where(
            Mailing.status.in_([MailingStatus.SCHEDULED.value, MailingStatus.SENDING.value]),
            sa.exists().where(
                Delivery.mailing_id == Mailing.id,
                Delivery.status == DeliveryStatus.PENDING.value,
                Delivery.due_at <= now - STALLED,
            ),
        )
    ).all()
    return resume_stalled("mailing", waiting, now)


def resume_stalled(name: str, waiting: Iterable[int], now: datetime) -> int:
    """Schedule ``<name>.dispatch`` again (``name``: ``mailing``, ``alert``) for each of the
    ``waiting`` ids that has no dispatch or chunk job queued, running or ended within
    ``STALLED``; commits, then hands the jobs to the queue.  Returns how many."""
    from campaign.extensions import db

    rows = []
    for parent_id in waiting:
        live = sa.exists().where(
            Job.kind.in_([f"{name}.dispatch", f"{name}.chunk"]),
            Job.payload[f"{name}_id"].as_integer() == parent_id,
            sa.or_(
                Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
                Job.finished_at > now - STALLED,
            ),
        )
        if not db.session.scalar(sa.select(live)):
            log.warning("%s %s: due deliveries wait with no job to send them; dispatching again", name, parent_id)
            rows.append(queue.schedule(f"{name}.dispatch", {f"{name}_id": parent_id},
                                       description=f"Send {name} {parent_id} (resumed)"))  # fmt: skip
    db.session.commit()
    queue.dispatch(*rows)
    return len(rows)
