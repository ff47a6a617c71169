"""Sending an alert to its subscribers under the mailings' sending rule: no subscriber
receives an alert twice, none is silently skipped.

``start`` makes one delivery row per targeted subscriber with a single ``INSERT … SELECT``
(the subscriber list never passes through Python), unique per alert and subscriber, so
starting twice adds nothing.  The audience is the confirmed subscribers following any of
the alert's topics whose language is one of the alert's languages; when ``Alert.languages``
is empty, the languages the alert has a text in.  A listed language without a text gets
the original's (``Alert.text_for``).  Confirmed subscribers whose address is suppressed (a
bounce, a spam report) get a row in state ``suppressed`` with the reason.

A chunk job claims up to ``MAX_BATCH`` due pending deliveries of one language in one
statement (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; ``BEGIN IMMEDIATE`` and ``UPDATE …
RETURNING`` on SQLite), marking them ``sending`` with a lease, and hands them to the
backend as one ``Batch``: one request to SendGrid per chunk.  The answers are recorded
with a few set-based updates: ``sent`` with the request's message id, ``failed`` with the
reason, ``uncertain`` where the provider may have taken the message, and retryable ones
back to ``pending``.  A pending delivery's ``lease_until`` is the time before which it is
not tried again (the backoff, honouring the provider's ``retry_after``).  A delivery still
``sending`` when its lease expires becomes ``uncertain`` (``expire_leases``): it is never
sent again automatically.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from campaign import queue
from campaign.alerts import render
from campaign.alerts.models import (
    Alert,
    AlertDelivery,
    AlertStatus,
    Subscriber,
    SubscriberStatus,
    subscriber_topics,
)
from campaign.db import begin_write, utcnow
from campaign.extensions import db
from campaign.mailings.backends import MAX_BATCH, BatchRecipient, PreparedBatch, SendResult
from campaign.mailings.models import OPEN, DeliveryStatus
from campaign.mailings.sending import MAX_ATTEMPTS, Progress

log = logging.getLogger(__name__)
_SENDING_STATES = (AlertStatus.SCHEDULED.value, AlertStatus.SENDING.value)
_PENDING, _SENDING = DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value
#: How long one chunk job goes on claiming further chunks, in seconds.
JOB_SECONDS = 30.0
#: Deliveries made at once past which PostgreSQL's statistics of the table are refreshed.
ANALYZE_AFTER = 10_000


class AlertStateError(ValueError):
    """The alert's state refuses the step (a cancelled or finished alert cannot start)."""


def audience_languages(alert: Alert) -> list[str]:
    """The languages the alert goes to: those chosen, else those it has a text in."""
    return sorted(set(alert.languages or [text.language for text in alert.texts]))


def audience(alert: Alert) -> sa.Select[Any]:
    """The confirmed subscribers the alert targets (suppressed ones included), as a query."""
    follows = sa.exists().where(
        subscriber_topics.c.subscriber_id == Subscriber.id,
        subscriber_topics.c.topic_id.in_([int(t) for t in alert.topic_ids or []]),
    )
    return sa.select(Subscriber.id).where(
        Subscriber.status == SubscriberStatus.CONFIRMED.value,
        Subscriber.language.in_(audience_languages(alert)),
        follows,
    )


def make_deliveries(alert: Alert) -> int:
    """One delivery per subscriber of the audience that has none yet; returns how many were made."""
    now = utcnow()
    suppressed = Subscriber.suppressed_at.is_not(None)
    rows = audience(alert).with_only_columns(
        sa.literal(alert.id).label("alert_id"),
        Subscriber.id,
        Subscriber.email,
        Subscriber.language,
        sa.case((suppressed, DeliveryStatus.SUPPRESSED.value), else_=_PENDING),
        sa.case(
            (suppressed, sa.func.substr("suppressed: " + Subscriber.suppressed_reason, 1, 1000)),
            else_="",
        ),
        sa.literal(0),
        sa.literal(now, type_=AlertDelivery.updated_at.type),
    )
    rows = rows.where(
        ~sa.exists().where(AlertDelivery.alert_id == alert.id, AlertDelivery.subscriber_id == Subscriber.id)
    )
    columns = ["alert_id", "subscriber_id", "email", "language", "status", "reason", "attempts", "updated_at"]
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # Two starts at once: the unique (alert, subscriber) keeps one row each, the other is skipped.
    statement = insert(AlertDelivery).from_select(columns, rows).on_conflict_do_nothing()
    return db.session.execute(statement.execution_options(preserve_rowcount=True)).rowcount


def start(alert: Alert, actor: Any = None, due_at: datetime | None = None) -> int:
    """Make the alert's deliveries and have them sent at ``due_at`` (now by default).

    Commits and dispatches the job that sends them; returns how many deliveries were made.
    Starting again is harmless: 0 (and nothing more sent) for an alert started before, even
    once finished.  A cancelled alert is refused with ``AlertStateError``.
    """
    if alert.status == AlertStatus.CANCELLED.value:
        raise AlertStateError("the alert was cancelled")
    if alert.status == AlertStatus.FINISHED.value:
        return 0
    if not alert.texts:
        raise AlertStateError("the alert has no text")
    now = utcnow()
    made = make_deliveries(alert)
    if made >= ANALYZE_AFTER and db.session.get_bind().dialect.name == "postgresql":
        # The claims of the chunks are planned on the table's statistics: taken while it was far
        # smaller, they make each claim scan the table (seconds instead of milliseconds).
        db.session.execute(sa.text("ANALYZE alert_deliveries"))
    if alert.status == AlertStatus.DRAFT.value:
        alert.due_at = due_at or now
        alert.status = AlertStatus.SCHEDULED.value if alert.due_at > now else AlertStatus.SENDING.value
        if alert.status == AlertStatus.SENDING.value:
            alert.started_at = now
        alert.send_requested_at = now
        alert.send_requested_by_id = getattr(actor, "id", None)
    row = queue.schedule(
        "alert.dispatch",
        {"alert_id": alert.id},
        due_at=alert.due_at if alert.due_at and alert.due_at > now else now,
        description=f"Send alert {alert.id}",
        created_by=actor,
    )
    db.session.commit()
    log.info("alert %s: %s deliveries made", alert.id, made)
    queue.dispatch(row)
    return made


def _claimable(alert_id: int, now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        AlertDelivery.alert_id == alert_id,
        AlertDelivery.status == _PENDING,
        sa.or_(AlertDelivery.lease_until.is_(None), AlertDelivery.lease_until <= now),
    )


def claim(alert_id: int, limit: int, owner: str) -> tuple[str | None, list[int]]:
    """Take up to ``limit`` due pending deliveries of one language for ``owner``; commits.

    Returns their language and ids (``None, []`` when nothing is due).
    """
    db.session.commit()
    begin_write(db.session)
    now = utcnow()
    lease = timedelta(seconds=current_app.config["MAILING_LEASE"])
    live = sa.exists().where(
        Alert.id == alert_id, Alert.status.in_(_SENDING_STATES), sa.or_(Alert.due_at.is_(None), Alert.due_at <= now)
    )
    # The language of one claimable row, that row locked: the claim below then finds at least it.
    language = db.session.scalar(
        sa.select(AlertDelivery.language)
        .where(_claimable(alert_id, now), live)
        .order_by(AlertDelivery.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if language is None:
        db.session.commit()
        return None, []
    # A CTE, run once (as ``IN (subquery)`` PostgreSQL may re-run the locking subquery per row).
    due = (
        sa.select(AlertDelivery.id)
        .where(_claimable(alert_id, now), AlertDelivery.language == language)
        .order_by(AlertDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    ids = db.session.scalars(
        sa.update(AlertDelivery)
        .where(AlertDelivery.id == due.c.id, AlertDelivery.status == _PENDING)
        .values(
            status=_SENDING,
            lease_owner=owner,
            lease_until=now + lease,
            attempts=AlertDelivery.attempts + 1,
            updated_at=now,
        )
        .returning(AlertDelivery.id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return language, sorted(ids)


def send_chunks(alert_id: int, job_id: int | None = None, budget: float = JOB_SECONDS) -> int:
    """Send chunk after chunk, one request each, until nothing is left to claim or ``budget``
    seconds have passed; returns how many deliveries were claimed.

    While one chunk's request is with the provider (in a thread of its own), the next chunk is
    claimed and built, and the answer is recorded once it comes: the database and the network
    wait for each other as little as possible.  The dispatcher queues one job per chunk, so
    whatever one job leaves is taken by the next.
    """
    deadline, total = time.monotonic() + budget, 0
    owner = _owner(job_id)
    in_flight: tuple[Chunk, Future[list[SendResult]]] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert-send") as pool:
        try:
            while True:
                chunk = prepare(alert_id, owner) if time.monotonic() < deadline else None
                if in_flight is not None:
                    done, in_flight = in_flight, None
                    wait_until = conclude(done[0], done[1].result())
                    if wait_until is not None and chunk is not None:
                        # The provider asked us to wait: the chunk built meanwhile waits too.
                        _release(chunk.ids, owner, until=wait_until)
                        break
                if chunk is None:
                    break
                total += chunk.claimed
                if chunk.recipients:
                    in_flight = (chunk, pool.submit(deliver, chunk))
        finally:
            if in_flight is not None:
                # Something failed while a request was out: its answer is still recorded when it comes.
                conclude(in_flight[0], in_flight[1].result())
    finish_if_done(alert_id)
    return total


def _among(ids: list[int]) -> sa.ColumnElement[bool]:
    """``AlertDelivery.id IN ids``; on PostgreSQL one array parameter (``= ANY``) rather than a
    thousand, so the statement is the same text for every chunk."""
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return AlertDelivery.id == sa.any_(sa.bindparam("ids", list(ids), type_=ARRAY(sa.BigInteger), unique=True))
    return AlertDelivery.id.in_(ids)


def _owner(job_id: int | None) -> str:
    return f"{queue.worker_name()}/job-{job_id}"[:160]


@dataclass
class Chunk:
    """Deliveries claimed together: one language, one request."""

    alert_id: int
    owner: str
    language: str
    claimed: int
    #: The chunk's batch, checked and built for the backend; None when nothing is to go.
    send: PreparedBatch | None
    #: The delivery each recipient of the batch is, in order.
    ids: list[int]
    started: float

    @property
    def recipients(self) -> int:
        return len(self.ids)


def send_chunk(alert_id: int, job_id: int | None = None) -> int:
    """Claim one chunk of the alert's deliveries, send it as one batch, record the results.

    Returns how many deliveries were claimed.  Deliveries claimed but not handed to the
    backend (the subscriber left meanwhile, an address repeated) are settled or put back;
    once the batch is handed over, a failure before its results are recorded leaves them
    ``sending`` until their lease expires, then ``uncertain``.
    """
    chunk = prepare(alert_id, _owner(job_id))
    if chunk is None:
        finish_if_done(alert_id)
        return 0
    if chunk.recipients:
        conclude(chunk, deliver(chunk))
    finish_if_done(alert_id)
    return chunk.claimed


def prepare(alert_id: int, owner: str) -> Chunk | None:
    """Claim a chunk and build its batch (settling what cannot go); None when nothing is due."""
    alert = db.session.get(Alert, alert_id)
    if alert is None or alert.status not in _SENDING_STATES:
        return None
    began = time.perf_counter()
    language, ids = claim(alert_id, MAX_BATCH, owner)
    if not ids:
        return None
    _mark_started(alert_id)
    try:
        recipients = _recipients(alert, language, ids, owner)
        if recipients is None:
            return Chunk(alert_id, owner, language, len(ids), None, [], began)
        alert_parts, by_id = recipients
        batch = render.batch(alert_id, alert_parts, list(by_id.values()))
        try:
            # Built here, so that the thread sending the previous chunk only waits on the network.
            send = current_app.extensions["mail_backend"].prepare_batch(batch)
        except ValueError as exc:
            # The request could not be built (a header refused): nothing leaves this machine.
            refused = [SendResult(ok=False, error=f"cannot be sent: {exc}")] * len(by_id)
            send = refused.copy
    except BaseException:
        # Nothing of the chunk was handed over: what is still claimed goes back.
        db.session.rollback()
        _release(ids, owner)
        raise
    return Chunk(alert_id, owner, language, len(ids), send, list(by_id), began)


def deliver(chunk: Chunk) -> list[SendResult]:
    """Hand the chunk's batch to the backend: one result per recipient.  Touches no database."""
    if chunk.send is None:
        return []
    results = chunk.send()
    if len(results) != chunk.recipients:
        return [SendResult(ok=False, uncertain=True, error="the backend answered for another number")] * len(chunk.ids)
    return results


def conclude(chunk: Chunk, results: list[SendResult]) -> datetime | None:
    """Record a chunk's results, and have the retryable ones tried again at their time; commits.
    Returns that time (None when nothing is to be retried)."""
    retry_at = record(chunk.ids, results, chunk.owner)
    if retry_at is not None:
        row = queue.schedule(
            "alert.dispatch", {"alert_id": chunk.alert_id}, due_at=retry_at, description=f"Retry alert {chunk.alert_id}"
        )
        db.session.commit()
        queue.dispatch(row)
    log.info(
        "alert %s: %s deliveries in %s, %s sent in one request, done in %.3f s",
        chunk.alert_id,
        chunk.claimed,
        chunk.language,
        sum(r.ok for r in results),
        time.perf_counter() - chunk.started,
    )
    return retry_at


def _recipients(
    alert: Alert, language: str, ids: list[int], owner: str
) -> tuple[render.Parts, dict[int, BatchRecipient]] | None:
    """The claimed deliveries as batch recipients, in one query; settles those that cannot go."""
    rows = db.session.execute(
        sa.select(
            AlertDelivery.id,
            AlertDelivery.email,
            Subscriber.id,
            Subscriber.token_key,
            Subscriber.name,
            Subscriber.status,
            Subscriber.suppressed_at.is_not(None),
        )
        .outerjoin(Subscriber, Subscriber.id == AlertDelivery.subscriber_id)
        .where(_among(ids))
        .order_by(AlertDelivery.id)
    ).all()
    try:
        alert_parts = render.parts(alert, language)
    except LookupError as exc:
        _settle(ids, owner, DeliveryStatus.FAILED, str(exc))
        db.session.commit()
        return None
    args = {"alert": str(alert.id)}
    links = render.Links()
    by_id: dict[int, BatchRecipient] = {}
    gone: list[int] = []
    left: list[int] = []
    stopped: list[int] = []
    repeated: list[int] = []
    seen: set[str] = set()
    for delivery_id, email, subscriber_id, token_key, name, status, suppressed in rows:
        if subscriber_id is None:
            gone.append(delivery_id)
        elif status != SubscriberStatus.CONFIRMED.value:
            left.append(delivery_id)
        elif suppressed:
            stopped.append(delivery_id)
        elif email.casefold() in seen:
            repeated.append(delivery_id)  # never two copies in one request: back to pending
        else:
            seen.add(email.casefold())
            signed = render.SubscriberRow(id=subscriber_id, token_key=token_key, name=name)
            by_id[delivery_id] = render.recipient_for(
                email, signed, name, alert_parts.language, {**args, "alert_delivery": str(delivery_id)}, links
            )
    _settle(gone, owner, DeliveryStatus.FAILED, "the subscriber was deleted before sending")
    _settle(left, owner, DeliveryStatus.CANCELLED, "unsubscribed before sending")
    _settle(stopped, owner, DeliveryStatus.SUPPRESSED, "suppressed before sending")
    db.session.commit()
    _release(repeated, owner)
    return (alert_parts, by_id) if by_id else None


def record(ids: list[int], results: list[SendResult], owner: str) -> datetime | None:
    """Record the backend's answer for each delivery, a few updates for the whole chunk; commits.

    Returns when the retryable ones are due again (None when there are none).
    """
    db.session.commit()
    begin_write(db.session)
    attempts: dict[int, int] = {}
    if any(result.retryable for result in results):
        query = sa.select(AlertDelivery.id, AlertDelivery.attempts).where(_among(ids))
        attempts = dict(db.session.execute(query).all())
    sent: dict[str | None, list[int]] = defaultdict(list)
    settled: dict[tuple[DeliveryStatus, str], list[int]] = defaultdict(list)
    retry: dict[tuple[datetime, str], list[int]] = defaultdict(list)
    now, retry_at = utcnow(), None
    for delivery_id, result in zip(ids, results, strict=True):
        if result.ok:
            sent[result.message_id].append(delivery_id)
        elif result.uncertain:
            settled[DeliveryStatus.UNCERTAIN, f"may have been sent: {result.error}"].append(delivery_id)
        elif result.retryable and attempts.get(delivery_id, MAX_ATTEMPTS) < MAX_ATTEMPTS:
            wait = result.retry_after or 30 * 2 ** (attempts[delivery_id] - 1)
            due = now + timedelta(seconds=wait)
            retry[due, (result.error or "")[:1000]].append(delivery_id)
            retry_at = due if retry_at is None or due < retry_at else retry_at
        else:
            settled[DeliveryStatus.FAILED, result.error or "refused"].append(delivery_id)
    mine = (AlertDelivery.lease_owner == owner, AlertDelivery.status.in_([_SENDING, DeliveryStatus.UNCERTAIN.value]))
    for message_id, group in sent.items():
        db.session.execute(
            sa.update(AlertDelivery)
            .where(_among(group), *mine)
            .values(
                status=DeliveryStatus.SENT.value,
                message_id=(message_id or "")[:255] or None,
                sent_at=now,
                reason="",
                lease_until=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    for (status, reason), group in settled.items():
        _settle(group, owner, status, reason)
    for (due, reason), group in retry.items():
        db.session.execute(
            sa.update(AlertDelivery)
            .where(_among(group), *mine)
            .values(
                status=_PENDING,
                lease_owner=None,
                lease_until=due,
                updated_at=now,
                reason=f"not sent, trying again at {due:%H:%M:%S} UTC: {reason}"[:1000],
            )
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    return retry_at


def _settle(ids: list[int], owner: str, status: DeliveryStatus, reason: str) -> None:
    if not ids:
        return
    db.session.execute(
        sa.update(AlertDelivery)
        .where(
            _among(ids),
            AlertDelivery.lease_owner == owner,
            AlertDelivery.status.in_([_SENDING, DeliveryStatus.UNCERTAIN.value]),
        )
        .values(status=status.value, reason=reason[:1000], lease_until=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def _release(ids: list[int], owner: str, until: datetime | None = None) -> None:
    """Put back deliveries ``owner`` claimed and never handed to the backend (not to be claimed
    before ``until`` when given); commits."""
    if ids:
        db.session.execute(
            sa.update(AlertDelivery)
            .where(_among(ids), AlertDelivery.status == _SENDING, AlertDelivery.lease_owner == owner)
            .values(
                status=_PENDING,
                lease_owner=None,
                lease_until=until,
                attempts=AlertDelivery.attempts - 1,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
    db.session.commit()


def _mark_started(alert_id: int) -> None:
    db.session.execute(
        sa.update(Alert)
        .where(Alert.id == alert_id, Alert.status == AlertStatus.SCHEDULED.value)
        .values(status=AlertStatus.SENDING.value, started_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def finish_if_done(alert_id: int) -> bool:
    """Mark the alert finished once no delivery is pending or sending; commits."""
    still_open = sa.exists().where(
        AlertDelivery.alert_id == alert_id, AlertDelivery.status.in_([s.value for s in OPEN])
    )
    done = db.session.execute(
        sa.update(Alert)
        .where(Alert.id == alert_id, Alert.status.in_(_SENDING_STATES), ~still_open)
        .values(status=AlertStatus.FINISHED.value, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if done:
        log.info("alert %s: finished", alert_id)
    return bool(done)


def expire_leases(now: datetime | None = None) -> int:
    """Alert deliveries left ``sending`` past their lease become ``uncertain`` (never re-sent
    automatically); returns how many.  Runs in the worker's maintenance loop."""
    now = now or utcnow()
    alert_ids = db.session.scalars(
        sa.update(AlertDelivery)
        .where(AlertDelivery.status == _SENDING, AlertDelivery.lease_until < now)
        .values(
            status=DeliveryStatus.UNCERTAIN.value,
            lease_until=None,
            updated_at=now,
            reason="the worker sending it stopped before recording the result; it may have been sent",
        )
        .returning(AlertDelivery.alert_id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    for alert_id in set(alert_ids):
        finish_if_done(alert_id)
    if alert_ids:
        log.warning("%s alert deliveries became uncertain after their lease expired", len(alert_ids))
    return len(alert_ids)


def dispatch_due(alert_id: int) -> list[queue.Job]:
    """Schedule one chunk job per ``MAX_BATCH`` due deliveries of each language, and a later
    dispatch for deliveries waiting on a backoff (or for an alert not due yet).  Returns the
    job rows for the caller to commit and dispatch."""
    alert = db.session.get(Alert, alert_id)
    if alert is None or alert.status not in _SENDING_STATES:
        return []
    now = utcnow()
    if alert.due_at is not None and alert.due_at > now:
        return [
            queue.schedule(
                "alert.dispatch", {"alert_id": alert_id}, due_at=alert.due_at, description=f"Send alert {alert_id}"
            )
        ]
    per_language = db.session.execute(
        sa.select(AlertDelivery.language, sa.func.count())
        .where(_claimable(alert_id, now))
        .group_by(AlertDelivery.language)
        .order_by(AlertDelivery.language)
    ).all()
    chunks = sum(math.ceil(count / MAX_BATCH) for _, count in per_language)
    rows = [
        queue.schedule(
            "alert.chunk", {"alert_id": alert_id}, description=f"Alert {alert_id}: chunk {index + 1} of {chunks}"
        )
        for index in range(chunks)
    ]
    later = db.session.scalar(
        sa.select(sa.func.min(AlertDelivery.lease_until)).where(
            AlertDelivery.alert_id == alert_id, AlertDelivery.status == _PENDING, AlertDelivery.lease_until > now
        )
    )
    if later is not None:
        rows.append(
            queue.schedule(
                "alert.dispatch", {"alert_id": alert_id}, due_at=later, description=f"Retry alert {alert_id}"
            )
        )
    return rows


def progress(alert_id: int) -> Progress:
    """Deliveries per state (every state listed, zeros included) and how many are done: one GROUP BY."""
    from campaign.mailings.services import progress_of

    return progress_of(AlertDelivery.alert_id, [alert_id])[alert_id]
