"""Sending a mailing under the sending rule: no contact twice, none silently skipped.

Every recipient has a delivery row (unique per mailing and contact).  A mail job
claims a chunk of due ``pending`` deliveries in one statement (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL; ``BEGIN IMMEDIATE`` and ``UPDATE … RETURNING`` on SQLite),
marking them ``sending`` with a lease (the worker's id and an expiry), so any number
of workers share one mailing and no two claim the same delivery.  On SQLite each result
is committed as soon as the backend answers; on PostgreSQL results are committed a few
at a time (``RECORD_BATCH`` messages or ``RECORD_AGE`` seconds, whichever comes first,
and whatever is held when the chunk stops or fails), so one commit serves several
messages.  Either way nothing is recorded as sent before the backend accepted it, and a
result lost with its worker leaves the delivery ``sending``.  A delivery still ``sending``
when its lease expires may or may not have gone: it becomes ``uncertain`` and is never
sent again automatically; a coordinator decides, with its history shown.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import selectinload

from campaign import queue
from campaign.contacts.models import Contact, Suppression
from campaign.db import begin_write, utcnow
from campaign.extensions import db
from campaign.mailings import documents, personalise
from campaign.mailings.backends import Attachment, Message, SendResult
from campaign.mailings.models import OPEN, Delivery, DeliveryEvent, DeliveryStatus, Mailing, MailingStatus
from campaign.mailings.schedule import Plan
from campaign.rendering import TemplateError

log = logging.getLogger(__name__)
#: Attempts for failures the backend calls retryable (before the request was sent, 4xx SMTP).
MAX_ATTEMPTS = 5
#: Share of its lease a chunk spends sending; the rest is margin for the last send and the clocks.
LEASE_SHARE = 0.5
#: Where a database locks rows (not SQLite), results wait for at most this many messages or
#: seconds before one commit records them; a worker killed meanwhile leaves them ``uncertain``.
RECORD_BATCH, RECORD_AGE = 20, 1.0
#: How long one mail job goes on taking over further chunks, in seconds (``send_chunks``).
JOB_SECONDS = 30.0
_INSERT_BATCH = 1000
_SENDING_STATES = (MailingStatus.SCHEDULED.value, MailingStatus.SENDING.value)
_SOON = timedelta(seconds=1)


def make_deliveries(mailing: Mailing, plan: Plan) -> datetime | None:
    """One delivery per contact of the audience, with its due time; suppressed contacts are
    recorded as ``suppressed`` with the reason.  Returns the earliest due time (None: nobody)."""
    from campaign.mailings.services import recipients_query

    if db.session.get_bind().dialect.name == "postgresql":
        # The audience is read to its end through a server-side cursor.  Planned for its first
        # rows, as PostgreSQL plans cursors, the tag condition on a freshly imported list became
        # a nested loop over every contact: seconds for 2,000 recipients instead of milliseconds.
        db.session.execute(sa.text("SET LOCAL cursor_tuple_fraction = 1.0"))
    contacts = db.session.execute(
        recipients_query(mailing)
        .with_only_columns(
            Contact.id,
            Contact.email,
            Contact.country,
            Contact.language,
            Contact.timezone,
            Contact.suppression,
            Contact.suppression_reason,
        )
        .order_by(Contact.id)
        .execution_options(yield_per=_INSERT_BATCH)
    )
    now, first, batch = utcnow(), None, []
    for contact_id, email, country, language, timezone, suppression, suppression_reason in contacts:
        due = plan.due_for(timezone)
        first = due if first is None or due < first else first
        row = {"mailing_id": mailing.id, "contact_id": contact_id, "email": email, "country": country,
               "language": language, "due_at": due, "status": DeliveryStatus.PENDING.value, "reason": "",
               "attempts": 0, "updated_at": now}  # fmt: skip
        if suppression:
            label = Suppression(suppression).label if suppression in {s.value for s in Suppression} else suppression
            row.update(status=DeliveryStatus.SUPPRESSED.value, due_at=now,
                       reason=f"{label}: {suppression_reason}".rstrip(": ")[:1000])  # fmt: skip
        batch.append(row)
        if len(batch) >= _INSERT_BATCH:
            db.session.execute(sa.insert(Delivery), batch)
            batch = []
    if batch:
        db.session.execute(sa.insert(Delivery), batch)
    return first


def _owner(job_id: int | None) -> str:
    return f"{queue.worker_name()}/job-{job_id}"[:160]


def claim(mailing_id: int, limit: int, owner: str) -> list[int]:
    """Take up to ``limit`` due pending deliveries for ``owner``; commits.  Returns their ids."""
    db.session.commit()
    begin_write(db.session)
    now = utcnow()
    lease = timedelta(seconds=current_app.config["MAILING_LEASE"])
    # A CTE, run once: as ``IN (subquery)`` PostgreSQL may run the locking subquery again for
    # each row it updates, each time past the rows already taken, and claim far beyond ``limit``.
    due = (
        sa.select(Delivery.id)
        .where(
            Delivery.mailing_id == mailing_id,
            Delivery.status == DeliveryStatus.PENDING.value,
            Delivery.due_at <= now,
            # A cancelled mailing sends nothing more, even to a chunk that started before.
            sa.exists().where(Mailing.id == mailing_id, Mailing.status.in_(_SENDING_STATES)),
        )
        .order_by(Delivery.due_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    ids = db.session.scalars(
        sa.update(Delivery)
        .where(Delivery.id == due.c.id, Delivery.status == DeliveryStatus.PENDING.value)
        .values(
            status=DeliveryStatus.SENDING.value,
            lease_owner=owner,
            lease_until=now + lease,
            attempts=Delivery.attempts + 1,
            updated_at=now,
        )
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return sorted(ids)


def send_chunks(mailing_id: int, job_id: int | None = None, budget: float = JOB_SECONDS) -> int:
    """Send the job's chunk (``send_chunk``), then take over the mailing's next chunk jobs as
    they come due and send theirs too, until none is due, the provider asks to wait, or
    ``budget`` seconds have passed; returns how many deliveries were claimed.

    Each chunk still starts no sooner than its own job was due, so the mailing keeps its rate;
    a job pays its start (a process, a connection, the templates compiled, the PDFs read) once
    for all the chunks it takes over.  Chunk jobs not yet due, or that another worker took,
    stay where they are: workers share a mailing job by job, and a worker that dies loses only
    the chunk it was sending.
    """
    owner = _owner(job_id)
    until = time.monotonic() + budget
    kept: dict[int, personalise.Renderer] = {}
    total = 0
    with _kept_after_commit():
        while True:
            claimed, go_on = _send_one_chunk(mailing_id, owner, kept)
            total += claimed
            if not go_on or time.monotonic() >= until or not _take_over_next(mailing_id, job_id):
                return total


def _take_over_next(mailing_id: int, job_id: int | None) -> bool:
    """Mark the mailing's next due chunk job as done by ``job_id`` (which then sends its chunk)
    and take it off the queue; False when no chunk job of the mailing is due and free."""
    db.session.commit()
    begin_write(db.session)
    now = utcnow()
    Job = queue.Job
    due = (
        sa.select(Job.id)
        .where(
            Job.kind == "mailing.chunk",
            Job.status == queue.JobStatus.QUEUED.value,
            Job.due_at <= now,
            Job.payload["mailing_id"].as_integer() == mailing_id,
        )
        .order_by(Job.due_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    taken = db.session.execute(
        sa.update(Job)
        .where(Job.id == due.c.id, Job.status == queue.JobStatus.QUEUED.value)
        .values(
            status=queue.JobStatus.FINISHED.value,
            started_at=now,
            finished_at=now,
            message=f"sent by job {job_id}" if job_id else "sent by another job",
        )
        .returning(Job.id, Job.rq_job_id)
        .execution_options(synchronize_session=False)
    ).first()
    db.session.commit()
    if taken is None:
        return False
    queue.discard(taken.rq_job_id)
    return True


def _spacing(mailing: Mailing) -> timedelta:
    """The time between the starts of two chunks of ``mailing`` that keeps its rate."""
    return timedelta(seconds=60 * current_app.config["MAILING_CHUNK"] / mailing.rate_per_minute)


def send_chunk(mailing_id: int, job_id: int | None = None) -> int:
    """Claim a chunk of the mailing's due deliveries and send each; returns how many were claimed.

    A delivery claimed but never handed to the backend (the chunk used up its share of
    the lease, or something failed) goes back to ``pending``; one handed over whose
    result was not recorded stays ``sending`` until its lease expires, then ``uncertain``.
    """
    return _send_one_chunk(mailing_id, _owner(job_id), {})[0]


def _send_one_chunk(mailing_id: int, owner: str, kept: dict[int, personalise.Renderer]) -> tuple[int, bool]:
    """``send_chunk``, with the renderer kept in ``kept`` for the next chunk; returns how many
    deliveries were claimed and whether another chunk may follow at once."""
    # Read afresh: a chunk that started after a cancellation sends nothing.
    mailing = db.session.get(Mailing, mailing_id, populate_existing=True)
    if mailing is None or mailing.status not in _SENDING_STATES:
        return 0, False
    ids = claim(mailing_id, current_app.config["MAILING_CHUNK"], owner)
    if not ids:
        finish_if_done(mailing_id)
        return 0, False
    # Stop well before the lease ends: past it, maintenance calls a delivery uncertain, and
    # sending it then could make a second copy once a coordinator asks for a resend.
    deadline = time.monotonic() + current_app.config["MAILING_LEASE"] * LEASE_SHARE
    handed_over: set[int] = set()
    backoff: list[datetime] = []
    try:
        retry_at = _send_claimed(mailing, ids, owner, deadline, handed_over, backoff, kept)
    except BaseException:
        db.session.rollback()
        try:
            _release(set(ids) - handed_over, owner)
        except Exception:
            log.exception("mailing %s: could not put back the deliveries %s did not send", mailing_id, owner)
        raise
    if backoff:
        # The provider asked us to wait (429, 503): the rest of the chunk waits with the refused
        # one, and one dispatch at that time sends them, instead of a request each meanwhile.
        _release(set(ids) - handed_over, owner, due_at=backoff[0])
        retry_at = backoff[0]
    elif _release(set(ids) - handed_over, owner):
        # Out of time: the rest goes in another chunk, from the queue (not nested in this one).
        soon = utcnow() + _SOON
        retry_at = min(retry_at, soon) if retry_at else soon
    if retry_at is not None:
        row = queue.schedule("mailing.dispatch", {"mailing_id": mailing_id}, due_at=retry_at,
                             description=f"Retry mailing {mailing_id}")  # fmt: skip
        db.session.commit()
        queue.dispatch(row)
    finish_if_done(mailing_id)
    return len(ids), retry_at is None


def _send_claimed(
    mailing: Mailing,
    ids: list[int],
    owner: str,
    deadline: float,
    handed_over: set[int],
    backoff: list[datetime] | None = None,
    kept: dict[int, personalise.Renderer] | None = None,
) -> datetime | None:
    """Send the claimed deliveries, committing their results; returns when to retry the
    retryable failures.  ``handed_over`` gathers the ids given to the backend.  A refusal that
    says when to come back (``retry_after``: 429, 503) stops the chunk; that time goes in
    ``backoff``.  A renderer in ``kept`` (by mailing) is used, and one made here is kept there."""
    _mark_started(mailing.id)
    deliveries = db.session.scalars(
        sa.select(Delivery)
        .where(Delivery.id.in_(ids))
        .options(selectinload(Delivery.contact).selectinload(Contact.tag_rows))
        .order_by(Delivery.id)
    ).all()
    renderer = (kept or {}).get(mailing.id) or _renderer(mailing, deliveries, owner)
    if renderer is None:
        return None
    if kept is not None:
        kept[mailing.id] = renderer
    backend = current_app.extensions["mail_backend"]
    # SQLite takes its one write lock per transaction (BEGIN IMMEDIATE, below); elsewhere rows
    # are locked one by one, so building a message needs no write transaction and the results
    # of several messages go in one commit.  There too, with a backend that writes a request
    # and reads its answer in two steps (``start``: SendGrid), the next message is built and
    # the last answer recorded while the provider reads a message: one message at a time is
    # with the provider, as without it.
    serial = db.session.get_bind().dialect.name == "sqlite"
    start = getattr(backend, "start", None) if not serial else None
    in_flight: tuple[Delivery, Callable[[], SendResult]] | None = None
    unrecorded: tuple[Delivery, SendResult] | None = None
    accepted = _Accepted(owner)
    retry_at, held, held_since = None, 0, time.monotonic()

    def conclude(delivery: Delivery, result: SendResult) -> bool:
        """Record one answer; True when the provider asked to wait and the chunk stops."""
        nonlocal retry_at, held
        if serial:
            begin_write(db.session)
        due = _record(delivery, result, owner, accepted)
        retry_at = due or retry_at
        held += 1
        if result.retryable and result.retry_after and backoff is not None:
            accepted.commit()
            backoff.append(due or utcnow() + timedelta(seconds=result.retry_after))
            log.warning("mailing %s: the provider asks to wait %.0f s; %s stops its chunk",
                        mailing.id, result.retry_after, owner)  # fmt: skip
            return True
        return False

    with _kept_after_commit(), _batch(backend):
        try:
            for delivery in deliveries:
                if handed_over and time.monotonic() > deadline:  # the first always goes: every chunk progresses
                    log.warning("mailing %s: %s ran out of time, the rest of its chunk goes back", mailing.id, owner)
                    break
                # No transaction stays open while the backend talks to the network.  On SQLite each
                # write step starts as a writer (BEGIN IMMEDIATE: a transaction that read first
                # cannot take the write lock once another connection wrote).
                if serial:
                    accepted.commit()
                    begin_write(db.session)
                message = _message(renderer, mailing, delivery, owner)
                if serial:
                    accepted.commit()
                elif message is None:
                    held += 1  # its reason is recorded with the next results
                if in_flight is not None:
                    # The previous message was with the provider while this one was built.
                    unrecorded, in_flight = (in_flight[0], in_flight[1]()), None
                    if unrecorded[1].retryable and unrecorded[1].retry_after:
                        previous, unrecorded = unrecorded, None
                        conclude(*previous)
                        break  # this message is not handed over: it goes back with the rest
                if message is not None:
                    handed_over.add(delivery.id)
                    in_flight = (delivery, _start(backend, start, message))
                if unrecorded is not None:
                    # Recorded while this message travels.
                    previous, unrecorded = unrecorded, None
                    conclude(*previous)
                if in_flight is not None and start is None:
                    # Sent already: recorded now, as the backend has nothing to overlap.
                    answered, in_flight = (in_flight[0], in_flight[1]()), None
                    if conclude(*answered):
                        break
                if serial or held >= RECORD_BATCH or time.monotonic() - held_since >= RECORD_AGE:
                    accepted.commit()
                    held, held_since = 0, time.monotonic()
            if in_flight is not None:
                answered, in_flight = (in_flight[0], in_flight[1]()), None
                conclude(*answered)
        except BaseException:
            # Keep what was recorded before the failure (the backend's answers are facts), the
            # answer to a message already written included; if that fails too, those
            # deliveries stay ``sending`` and become uncertain.
            try:
                if unrecorded is not None:  # an answer read, not yet recorded
                    _record(*unrecorded, owner, accepted)
                if in_flight is not None:
                    _record(in_flight[0], in_flight[1](), owner, accepted)
                accepted.commit()
            except Exception:
                db.session.rollback()
                log.exception("mailing %s: %s could not record its last results", mailing.id, owner)
            raise
        accepted.commit()
    return retry_at


def _start(
    backend: Any, start: Callable[[Message], Callable[[], SendResult]] | None, message: Message
) -> Callable[[], SendResult]:
    """Hand ``message`` over (``start`` writes it, ``send`` sends it whole); calling the result
    gives the answer.  A backend raises ``ValueError`` only for a message it could not build,
    before writing anything (``HeaderInjectionError``): that one failed, nothing was sent."""
    try:
        if start is not None:
            return start(message)
        result: SendResult = backend.send(message)
    except ValueError as exc:
        # The message could not be built (a header refused): nothing left this machine.
        result = SendResult(ok=False, error=f"cannot be sent: {exc}")
    return lambda: result


def _batch(backend: Any) -> contextlib.AbstractContextManager[Any]:
    """The backend's scope for many messages where it has one (SMTP keeps one connection)."""
    batch = getattr(backend, "batch", None)
    return batch() if batch is not None else contextlib.nullcontext()


@contextlib.contextmanager
def _kept_after_commit() -> Iterator[None]:
    """Commits keep what the session loaded: the chunk's contacts, the letter and its PDFs are
    read once, not again after each message's commit (five queries a message otherwise)."""
    session = db.session()
    previous, session.expire_on_commit = session.expire_on_commit, False
    try:
        yield
    finally:
        session.expire_on_commit = previous


def _release(ids: set[int], owner: str, due_at: datetime | None = None) -> int:
    """Put back deliveries ``owner`` claimed and never handed to the backend (due at ``due_at``
    when given); commits."""
    if not ids:
        return 0
    later = {"due_at": due_at} if due_at is not None else {}
    released = db.session.execute(
        sa.update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.status == DeliveryStatus.SENDING.value, Delivery.lease_owner == owner)
        .values(
            status=DeliveryStatus.PENDING.value,
            lease_owner=None,
            lease_until=None,
            attempts=Delivery.attempts - 1,
            updated_at=utcnow(),
            **later,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return released


def _mark_started(mailing_id: int) -> None:
    db.session.execute(
        sa.update(Mailing)
        .where(Mailing.id == mailing_id, Mailing.status == MailingStatus.SCHEDULED.value)
        .values(status=MailingStatus.SENDING.value, started_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _renderer(mailing: Mailing, deliveries: Sequence[Delivery], owner: str) -> personalise.Renderer | None:
    try:
        return personalise.Renderer(mailing)
    except TemplateError as exc:
        for delivery in deliveries:
            _settle(delivery, DeliveryStatus.FAILED, f"the templates do not compile: {exc}", owner)
        db.session.commit()
        return None


def _message(renderer: personalise.Renderer, mailing: Mailing, delivery: Delivery, owner: str) -> Message | None:
    """The message for one delivery, or None after recording why it cannot be sent."""
    contact = delivery.contact
    if contact is None:
        _settle(delivery, DeliveryStatus.FAILED, "the contact was deleted before sending", owner)
        return None
    if contact.suppression:
        _settle(delivery, DeliveryStatus.SUPPRESSED, f"suppressed before sending: {contact.suppression}", owner)
        return None
    try:
        rendered = renderer.render(contact)
    except TemplateError as exc:
        _settle(delivery, DeliveryStatus.FAILED, f"does not render: {exc}", owner)
        return None
    document = renderer.document(rendered.language, rendered.revision)
    sender, reply_to = renderer.sender
    return Message(
        to=[contact.email],
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        sender=sender,
        reply_to=reply_to or sender,
        headers={"X-Demarche-Delivery": str(delivery.id)},
        attachments=[Attachment(document.filename, document.content, "application/pdf")],
        categories=("mailing", f"mailing-{mailing.id}"),
        custom_args={"delivery": str(delivery.id), "mailing": str(mailing.id)},
    )


class _Accepted:
    """The deliveries the backend accepted since the last commit, written by ``commit``: one
    UPDATE and one INSERT of their "sent" events for all of them (flushing an ORM object and
    an event each took about a fifth of the sending loop's time).  Other answers are rare and
    recorded on the delivery objects, in the same transaction."""

    _UPDATE = (
        sa.update(Delivery.__table__)
        .where(Delivery.__table__.c.id == sa.bindparam("b_id"))
        .values(
            status=DeliveryStatus.SENT.value,
            reason="",
            lease_owner=None,
            lease_until=None,
            message_id=sa.func.coalesce(sa.bindparam("b_message_id", type_=sa.String), Delivery.__table__.c.message_id),
            sent_at=sa.bindparam("b_sent_at"),
            updated_at=sa.bindparam("b_sent_at"),
        )
    )

    def __init__(self, owner: str) -> None:
        self.source = owner[:254]
        self.rows: list[dict[str, Any]] = []

    def add(self, delivery: Delivery, message_id: str | None) -> None:
        message_id = message_id[:255] if message_id else None
        self.rows.append({"b_id": delivery.id, "b_message_id": message_id, "b_sent_at": utcnow()})

    def commit(self) -> None:
        """Write what was accepted, and commit with whatever else the session holds."""
        if self.rows:
            rows, self.rows = self.rows, []
            db.session.execute(self._UPDATE, rows)
            db.session.execute(
                sa.insert(DeliveryEvent),
                [{"delivery_id": row["b_id"], "created_at": row["b_sent_at"], "kind": DeliveryStatus.SENT.value,
                  "detail": f"message id {row['b_message_id']}" if row["b_message_id"] else "",
                  "source": self.source, "data": {}} for row in rows],
            )  # fmt: skip
        db.session.commit()


def _record(delivery: Delivery, result: SendResult, owner: str, accepted: _Accepted) -> datetime | None:
    """Record the backend's answer (an acceptance in ``accepted``, written with its next
    commit); returns when to try again for a retryable failure."""
    if result.ok:
        accepted.add(delivery, result.message_id)
        return None
    if result.uncertain:
        _settle(delivery, DeliveryStatus.UNCERTAIN, f"may have been sent: {result.error}", owner)
        return None
    if result.retryable and delivery.attempts < MAX_ATTEMPTS:
        wait = result.retry_after or 30 * 2 ** (delivery.attempts - 1)
        due = utcnow() + timedelta(seconds=wait)
        delivery.status, delivery.due_at = DeliveryStatus.PENDING.value, due
        delivery.lease_owner = delivery.lease_until = None
        delivery.reason = (result.error or "")[:1000]
        _event(delivery, "retry", f"not sent, trying again at {due:%H:%M:%S} UTC: {result.error}", owner)
        return due
    _settle(delivery, DeliveryStatus.FAILED, result.error or "refused", owner)
    return None


def _settle(delivery: Delivery, status: DeliveryStatus, reason: str, source: str) -> None:
    """End ``delivery`` unsent (sent ones are written by ``_Accepted``), with its history line."""
    delivery.status, delivery.reason = status.value, reason[:1000]
    delivery.lease_owner = delivery.lease_until = None
    _event(delivery, status.value, reason, source)


def _event(delivery: Delivery, kind: str, detail: str, source: str, **data: Any) -> None:
    db.session.add(
        DeliveryEvent(delivery_id=delivery.id, kind=kind, detail=detail[:1000], source=source[:254], data=data)
    )


def finish_if_done(mailing_id: int) -> bool:
    """Mark the mailing finished once no delivery is pending or sending; commits."""
    still_open = sa.exists().where(Delivery.mailing_id == mailing_id, Delivery.status.in_([s.value for s in OPEN]))
    done = db.session.execute(
        sa.update(Mailing)
        .where(
            Mailing.id == mailing_id,
            Mailing.status.in_([MailingStatus.SCHEDULED.value, MailingStatus.SENDING.value]),
            ~still_open,
        )
        .values(status=MailingStatus.FINISHED.value, finished_at=utcnow())
        # The mailing in the session says so too: a job sending chunks keeps what it loaded.
        .execution_options(synchronize_session="fetch")
    ).rowcount
    db.session.commit()
    if done:
        log.info("mailing %s: finished", mailing_id)
        from campaign.alerts import triggers

        triggers.on_mailing_finished(mailing_id)
    return bool(done)


def expire_leases(now: datetime | None = None) -> int:
    """Deliveries left ``sending`` past their lease become ``uncertain`` (never re-sent
    automatically); returns how many.  Runs in the worker's maintenance loop."""
    now = now or utcnow()
    # RETURNING names exactly the rows this call changed: two sweepers at once record each once.
    rows = db.session.execute(
        sa.update(Delivery)
        .where(Delivery.status == DeliveryStatus.SENDING.value, Delivery.lease_until < now)
        .values(
            status=DeliveryStatus.UNCERTAIN.value,
            lease_until=None,
            updated_at=now,
            reason="the worker sending it stopped before recording the result; it may have been sent",
        )
        .returning(Delivery.id, Delivery.mailing_id, Delivery.lease_owner)
        .execution_options(synchronize_session=False)
    ).all()
    if not rows:
        db.session.commit()
        return 0
    db.session.add_all(
        DeliveryEvent(
            delivery_id=row.id,
            kind="lease-expired",
            source="maintenance",
            detail=f"held by {row.lease_owner} until the lease expired; not sent again",
        )
        for row in rows
    )
    db.session.commit()
    for mailing_id in {row.mailing_id for row in rows}:
        finish_if_done(mailing_id)
    log.warning("%s deliveries became uncertain after their lease expired", len(rows))
    return len(rows)


def cancel_pending(mailing_id: int, reason: str) -> int:
    pending = sa.select(Delivery.id).where(
        Delivery.mailing_id == mailing_id, Delivery.status == DeliveryStatus.PENDING.value
    )
    ids = db.session.scalars(pending).all()
    for chunk in _chunks(ids, _INSERT_BATCH):
        db.session.execute(
            sa.update(Delivery)
            .where(Delivery.id.in_(chunk), Delivery.status == DeliveryStatus.PENDING.value)
            .values(status=DeliveryStatus.CANCELLED.value, reason=reason[:1000], updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return len(ids)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def dispatch_due(mailing_id: int) -> list[queue.Job]:
    """Schedule the mail jobs for the mailing's due deliveries, spaced to keep its rate, and a
    later dispatch for deliveries due later.  Returns the job rows for the caller to dispatch."""
    mailing = db.session.get(Mailing, mailing_id)
    if mailing is None or mailing.status not in (MailingStatus.SCHEDULED, MailingStatus.SENDING):
        return []
    now, chunk = utcnow(), current_app.config["MAILING_CHUNK"]
    due = db.session.scalar(
        sa.select(sa.func.count()).where(
            Delivery.mailing_id == mailing_id, Delivery.status == DeliveryStatus.PENDING.value, Delivery.due_at <= now
        )
    )
    if due:
        # Rendered now unless approval did (``documents``), so that chunks running at once on
        # several workers load them instead of each rendering its own.
        languages = db.session.scalars(
            sa.select(Delivery.language)
            .where(Delivery.mailing_id == mailing.id, Delivery.status == DeliveryStatus.PENDING.value)
            .distinct()
        )
        documents.prepare(mailing, languages)
    spacing = _spacing(mailing)
    rows = [
        queue.schedule(
            "mailing.chunk",
            {"mailing_id": mailing_id},
            due_at=now + index * spacing,
            description=f"Mailing {mailing_id}: chunk {index + 1} of {math.ceil(due / chunk)}",
        )
        for index in range(math.ceil(due / chunk))
    ]
    later = db.session.scalar(
        sa.select(sa.func.min(Delivery.due_at)).where(
            Delivery.mailing_id == mailing_id, Delivery.status == DeliveryStatus.PENDING.value, Delivery.due_at > now
        )
    )
    if later is not None:
        rows.append(queue.schedule("mailing.dispatch", {"mailing_id": mailing_id}, due_at=later,
                                   description=f"Send mailing {mailing_id} (next due time)"))  # fmt: skip
    return rows


@dataclass(frozen=True)
class Progress:
    counts: dict[str, int]
    total: int
    done: int

    @property
    def percent(self) -> int:
        return 100 if not self.total else math.floor(100 * self.done / self.total)


def progress(mailing_id: int) -> Progress:
    """Deliveries per state (every state listed, zeros included) and how many are done."""
    found = dict(
        db.session.execute(
            sa.select(Delivery.status, sa.func.count())
            .where(Delivery.mailing_id == mailing_id)
            .group_by(Delivery.status)
        ).all()
    )
    counts = {state.value: found.get(state.value, 0) for state in DeliveryStatus}
    total = sum(counts.values())
    return Progress(counts=counts, total=total, done=total - sum(counts[s.value] for s in OPEN))


def send_test(mailing_id: int, contact_id: int, to: str) -> SendResult:
    """The message ``contact`` would receive, sent to ``to`` with "[Test]" before the subject.

    Before approval the PDF is rendered for this message only: the one sent with the
    mailing is made from what approval freezes.
    """
    mailing, contact = db.session.get(Mailing, mailing_id), db.session.get(Contact, contact_id)
    if mailing is None or contact is None:
        return SendResult(ok=False, error="the mailing or the contact no longer exists")
    try:
        rendered = personalise.Renderer(mailing).render(contact)
    except TemplateError as exc:
        return SendResult(ok=False, error=f"does not render: {exc}")
    if mailing.is_approved:
        document = personalise.document(mailing, rendered.language, rendered.revision)
        db.session.commit()
        attachment = Attachment(document.filename, document.content, "application/pdf")
    else:
        from campaign.admin.services import get_settings
        from campaign.letters import pdf

        signatories = [tuple(row) for row in personalise.signatories_of(mailing)]
        content = pdf.render_letter_pdf(mailing.letter, rendered.revision, get_settings(), signatories)
        attachment = Attachment(f"{mailing.letter.slug}-{rendered.language}.pdf", content, "application/pdf")
    from campaign.mailings.notices import sender_address

    sender, reply_to = sender_address()
    message = Message(to=[to], subject=f"[Test] {rendered.subject}", text=rendered.text, html=rendered.html,
                      sender=sender, reply_to=reply_to or sender, attachments=[attachment],
                      categories=("mailing-test",))  # fmt: skip
    return current_app.extensions["mail_backend"].send(message)
