"""Background work: a database row per job, RQ to carry it.

The ``jobs`` table is the source of truth for every job and its due time; Redis
only carries job ids.  ``schedule`` adds a row (``add``, for a hot path, inserts it
without an ORM object and gives its id), the caller commits, then ``dispatch`` hands
it to RQ (or, without Redis, runs it inline when due; the polling ``flask worker``
runs what falls due later).  ``run_job`` claims a row with
a conditional UPDATE, so a job that RQ delivers twice, or that the worker loop
re-enqueues after Redis lost it, runs once.  A job whose worker died is put back
when its lease expires: handlers must be idempotent against the database.
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
import socket
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Mapped, mapped_column

from campaign.db import begin_write, utcnow
from campaign.extensions import db

log = logging.getLogger(__name__)

#: In the order a worker takes them: account emails first, then mailings' chunks, then the rest.
QUEUES = ("high", "mail", "default", "low")
LEASE = timedelta(minutes=10)
#: A queued job RQ has held this long without running it is checked against Redis.
STALE = timedelta(seconds=60)


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class Job(db.Model):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64), index=True)
    queue: Mapped[str] = mapped_column(sa.String(20), default="default")
    status: Mapped[str] = mapped_column(sa.String(12), default=JobStatus.QUEUED.value, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    description: Mapped[str] = mapped_column(sa.String(200), default="")
    due_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    progress: Mapped[int] = mapped_column(default=0)
    total: Mapped[int | None]
    message: Mapped[str] = mapped_column(sa.String(500), default="")
    error: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    rq_job_id: Mapped[str | None] = mapped_column(sa.String(80))
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(sa.String(120))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return min(100, round(100 * self.progress / self.total))


class PermanentJobError(RuntimeError):
    """Raised by a handler when trying again cannot help: the job fails at once."""


Handler = Callable[..., None]
_HANDLERS: dict[str, tuple[Handler, str, int]] = {}
_SWEEPERS: list[Callable[[], object]] = []


def sweeper(function: Callable[[], object]) -> Callable[[], object]:
    """Register ``function`` to run with ``recover`` (the worker's maintenance loop)."""
    if function not in _SWEEPERS:
        _SWEEPERS.append(function)
    return function


def job(kind: str, queue: str = "default", max_attempts: int = 3) -> Callable[[Handler], Handler]:
    """Register ``handler(job, **payload)`` to run jobs of ``kind``."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")

    def register(handler: Handler) -> Handler:
        _HANDLERS[kind] = (handler, queue, max_attempts)
        return handler

    return register


def mode() -> str:
    """``redis`` or ``inline``, from ``QUEUE_MODE`` (``auto``: Redis when ``REDIS_URL`` is set)."""
    configured = current_app.config["QUEUE_MODE"]
    if configured == "auto":
        return "redis" if current_app.config["REDIS_URL"] else "inline"
    return configured


def schedule(
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    due_at: datetime | None = None,
    description: str = "",
    created_by: Any = None,
) -> Job:
    """Add a job row; commit, then ``dispatch`` it."""
    row = Job(**_new_row(kind, payload, due_at, description, getattr(created_by, "id", None)))
    db.session.add(row)
    db.session.flush()
    _note(row.id, row.queue, row.rq_job_id, row.due_at, row.description or row.kind)
    return row


def add(kind: str, payload: dict[str, Any] | None = None, *, description: str = "") -> int:
    """``schedule`` for a public form's hot path: the row is inserted in one statement, with no
    ORM object to flush; its id.  Commit, then ``dispatch`` the id."""
    values = _new_row(kind, payload, None, description, None)
    job_id = db.session.execute(_ADD, values).scalar_one()
    _note(job_id, values["queue"], values["rq_job_id"], values["due_at"], values["description"] or kind)
    return job_id


def _new_row(kind: str, payload: dict[str, Any] | None, due_at: datetime | None, description: str,
             created_by_id: int | None) -> dict[str, Any]:  # fmt: skip
    if kind not in _HANDLERS:
        raise KeyError(f"no handler registered for job kind {kind!r}")
    _, queue, max_attempts = _HANDLERS[kind]
    values = {
        "kind": kind, "queue": queue, "status": JobStatus.QUEUED.value, "payload": payload or {},
        "due_at": due_at or utcnow(), "description": description[:200], "max_attempts": max_attempts,
        "created_by_id": created_by_id, "rq_job_id": None, "enqueued_at": None,
    }  # fmt: skip
    if mode() == "redis":
        # The RQ id is chosen now and committed with the row, so that ``dispatch`` after the
        # commit is one call to Redis: no reload, no second commit.  A process that dies
        # between the commit and the enqueue leaves a queued row that Redis does not hold;
        # ``recover`` enqueues it once it is ``STALE``.
        values["rq_job_id"], values["enqueued_at"] = _rq_job_id(), utcnow()
    return values


def _note(job_id: int, queue: str, rq_job_id: str | None, due_at: datetime, description: str) -> None:
    """Remember a row added in this transaction: not dispatchable before the commit, and
    what ``dispatch`` hands to RQ after it."""
    db.session.info.setdefault(_UNCOMMITTED, set()).add(job_id)
    if rq_job_id is not None:
        db.session.info.setdefault(_PLANNED, {})[job_id] = _Plan(queue, rq_job_id, due_at, description)


_UNCOMMITTED = "uncommitted_jobs"
_PLANNED = "planned_enqueues"
#: ``add``'s statement, built once so that its compiled form is found by identity.
_ADD = sa.insert(Job.__table__).returning(Job.__table__.c.id)


class _Plan(NamedTuple):
    """What ``dispatch`` hands to RQ for a row scheduled in this session."""

    queue: str
    rq_id: str
    due_at: datetime
    description: str


def forget_uncommitted(session: sa.orm.Session, *_: Any) -> None:
    """Session hook (after commit): no scheduled row is pending any more."""
    session.info.pop(_UNCOMMITTED, None)


def forget_scheduled(session: sa.orm.Session, *_: Any) -> None:
    """Session hook (after rollback): the rows scheduled in the transaction are gone."""
    session.info.pop(_UNCOMMITTED, None)
    session.info.pop(_PLANNED, None)


def install(app: Any) -> None:
    if not sa.event.contains(sa.orm.Session, "after_commit", forget_uncommitted):
        sa.event.listen(sa.orm.Session, "after_commit", forget_uncommitted)
        sa.event.listen(sa.orm.Session, "after_soft_rollback", forget_scheduled)


def _row_id(row: Job | int) -> int | None:
    """The row's id without loading it (after a commit its attributes are expired)."""
    if isinstance(row, int):
        return row
    identity = sa.inspect(row).identity
    return identity[0] if identity else None


def dispatch(*jobs: Job | int) -> None:
    """Hand committed job rows (or the ids ``add`` gave) to the queue; inline mode runs those already due."""
    session = db.session
    pending = session.info.get(_UNCOMMITTED, set())
    ids = [_row_id(row) for row in jobs]
    if any(job_id is None or job_id in pending for job_id in ids) or session.new or session.deleted:
        raise RuntimeError("commit the job rows (and what they work on) before dispatching them")
    if mode() == "inline":
        for job_id in ids:
            row = db.session.get(Job, job_id)
            if row is not None and row.status == JobStatus.QUEUED and row.due_at <= utcnow():
                run_job(job_id)
        return
    planned = session.info.get(_PLANNED, {})
    unplanned = []
    for job_id in ids:
        plan = planned.pop(job_id, None)
        if plan is None:
            unplanned.append(job_id)
        else:
            _put(job_id, *plan)
    for job_id in unplanned:
        _enqueue(db.session.get(Job, job_id))
    if unplanned:
        db.session.commit()


def _rq_queue(name: str) -> Any:
    from rq import Queue

    return Queue(name, connection=current_app.extensions["redis"])


def _rq_job_id() -> str:
    return f"job-{secrets.token_hex(10)}"


def _put(job_id: int, queue: str, rq_id: str, due_at: datetime, description: str) -> None:
    # RQ stops a job after its own default of 180 s; a job may run as long as its lease (a mail
    # job takes over chunks for 30 s, and one chunk may take half of ``MAILING_LEASE``).
    options = {"job_id": rq_id, "description": description, "failure_ttl": 7 * 24 * 3600,
               "job_timeout": int(LEASE.total_seconds())}  # fmt: skip
    # One round trip: RQ writes its keys in the pipeline it is given (two without one).
    with current_app.extensions["redis"].pipeline() as pipe:
        if due_at > utcnow():
            _rq_queue(queue).enqueue_at(due_at, run_job, job_id, pipeline=pipe, **options)
        else:
            _rq_queue(queue).enqueue(run_job, job_id, pipeline=pipe, **options)
        pipe.execute()


def _enqueue(row: Job) -> None:
    """Hand ``row`` to RQ under a new RQ id, noted on the row (the caller commits)."""
    rq_id = _rq_job_id()
    _put(row.id, row.queue, rq_id, row.due_at, row.description or row.kind)
    row.rq_job_id, row.enqueued_at = rq_id, utcnow()


def discard(rq_job_id: str | None) -> None:
    """Take a job that another one did off RQ's queue; harmless if RQ no longer has it (and
    if this fails, RQ runs it later and ``run_job`` finds nothing to do)."""
    if not rq_job_id or mode() != "redis":
        return
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RQJob

    try:
        RQJob.fetch(rq_job_id, connection=current_app.extensions["redis"]).delete()
    except NoSuchJobError:
        pass
    except Exception:  # only tidiness is lost
        log.warning("RQ job %s: could not be taken off the queue", rq_job_id, exc_info=True)


def _current_rq_job() -> Any:
    """The RQ job this process is running, if it is running one."""
    from rq import get_current_job

    return get_current_job()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


def run_job(job_id: int) -> None:
    """Claim the job and run its handler; the RQ entry point and the inline runner."""
    db.session.commit()  # callers' reads end here: the claim starts as a writer (SQLite)
    begin_write(db.session)
    now = utcnow()
    claim: dict[str, Any] = {"status": JobStatus.RUNNING.value, "started_at": now, "lease_until": now + LEASE}
    rq_job = _current_rq_job()
    if rq_job is not None:
        claim["rq_job_id"] = rq_job.id  # the one running it, which recover() asks RQ about
    claimed = db.session.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value, Job.due_at <= now)
        .values(**claim, attempts=Job.attempts + 1, worker=worker_name())
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if not claimed:
        log.info("job %s: not queued or not due, nothing to do", job_id)
        return
    row = db.session.get(Job, job_id)
    db.session.refresh(row)
    handler = _HANDLERS.get(row.kind, (None,))[0]
    log.info("job %s (%s): started, attempt %s", row.id, row.kind, row.attempts)
    try:
        if handler is None:
            raise LookupError(f"no handler for job kind {row.kind!r}")
        handler(row, **row.payload)
        if db.session.get_bind().dialect.name == "sqlite":
            # A transaction that read cannot take the write lock once another connection wrote:
            # the handler's work commits on its own, and the row is finished by a writer.
            db.session.commit()
            begin_write(db.session)
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the row
        db.session.rollback()
        _record_failure(job_id, exc)
        return
    row.status, row.finished_at, row.lease_until = JobStatus.FINISHED.value, utcnow(), None
    db.session.commit()
    log.info("job %s (%s): finished", row.id, row.kind)


def _record_failure(job_id: int, exc: Exception) -> None:
    begin_write(db.session)
    row = db.session.get(Job, job_id)
    row.error = "".join(traceback.format_exception_only(exc)).strip()[:4000]
    row.lease_until = None
    if row.attempts < row.max_attempts and not isinstance(exc, PermanentJobError):
        row.status = JobStatus.QUEUED.value
        row.due_at = utcnow() + timedelta(seconds=30 * 2 ** (row.attempts - 1))
        log.warning("job %s (%s): failed, retrying at %s: %s", row.id, row.kind, row.due_at, row.error)
    else:
        row.status, row.finished_at = JobStatus.FAILED.value, utcnow()
        log.error("job %s (%s): failed for good: %s", row.id, row.kind, row.error)
    db.session.commit()
    if row.status == JobStatus.QUEUED and mode() == "redis":
        dispatch(row)


def report(row: Job, progress: int, total: int | None = None, message: str | None = None) -> None:
    """Record progress (and renew the lease) so pages can show it; commits."""
    row.progress = progress
    if total is not None:
        row.total = total
    if message is not None:
        row.message = message[:500]
    row.lease_until = utcnow() + LEASE
    db.session.commit()


_STOPPED = "the worker running this job stopped; queued again"


def recover() -> int:
    """Put back jobs whose worker died, and re-enqueue due work that Redis lost.

    Returns how many jobs were handed to the queue again.
    """
    now = utcnow()
    db.session.execute(
        sa.update(Job)
        .where(Job.status == JobStatus.RUNNING.value, Job.attempts >= Job.max_attempts, Job.lease_until < now)
        .values(status=JobStatus.FAILED.value, finished_at=now, error="the worker stopped on the last attempt")
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        sa.update(Job)
        .where(Job.status == JobStatus.RUNNING.value, Job.lease_until < now)
        .values(status=JobStatus.QUEUED.value, error=_STOPPED)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    for sweep in _SWEEPERS:
        sweep()
    if mode() != "redis":
        return 0
    connection = current_app.extensions["redis"]
    _put_back_orphans(connection, now)
    candidates = db.session.scalars(
        sa.select(Job).where(
            Job.status == JobStatus.QUEUED.value,
            sa.or_(Job.enqueued_at.is_(None), Job.enqueued_at < now - STALE),
        )
    ).all()
    lost = [row for row in candidates if not _held_by_rq(connection, row.rq_job_id)]
    for row in lost:
        log.warning("job %s (%s): not in Redis, enqueuing again", row.id, row.kind)
        _enqueue(row)
    db.session.commit()
    return len(lost)


def _held_by_rq(connection: Any, rq_job_id: str | None) -> bool:
    """Whether RQ will run the job or is running it on a live worker.

    A worker killed with its job leaves the job "started" until RQ's own registry cleanup,
    up to ten minutes later; its worker key, which it renews while it works (every 30
    seconds for a forking worker, for the job's timeout for a simple one), is gone sooner.
    """
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RQJob
    from rq.worker import Worker

    if not rq_job_id:
        return False
    try:
        rq_job = RQJob.fetch(rq_job_id, connection=connection)
    except NoSuchJobError:
        return False
    status = rq_job.get_status()
    if status in ("queued", "scheduled", "deferred"):
        return True
    if status == "started":
        return bool(rq_job.worker_name) and bool(
            connection.exists(Worker.redis_worker_namespace_prefix + rq_job.worker_name)
        )
    return False


def _put_back_orphans(connection: Any, now: datetime) -> None:
    """Running jobs whose RQ job no live worker holds (its worker was killed, or its job
    process was) are queued again at once, rather than when their lease ends; a job on its
    last attempt fails."""
    running = db.session.execute(
        sa.select(Job.id, Job.rq_job_id).where(Job.status == JobStatus.RUNNING.value, Job.started_at < now - STALE)
    ).all()
    orphans = [job_id for job_id, rq_job_id in running if not _held_by_rq(connection, rq_job_id)]
    if not orphans:
        return
    log.warning("jobs %s: their worker stopped; queued again", orphans)
    orphaned = sa.and_(Job.id.in_(orphans), Job.status == JobStatus.RUNNING.value)
    db.session.execute(
        sa.update(Job)
        .where(orphaned, Job.attempts >= Job.max_attempts)
        .values(status=JobStatus.FAILED.value, finished_at=now, error="the worker stopped on the last attempt")
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        sa.update(Job)
        .where(orphaned)
        .values(status=JobStatus.QUEUED.value, enqueued_at=None, error=_STOPPED)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def run_due(limit: int = 100) -> int:
    """Run due jobs in this process (inline mode's worker); returns how many ran."""
    ids = db.session.scalars(
        sa.select(Job.id)
        .where(Job.status == JobStatus.QUEUED.value, Job.due_at <= utcnow())
        .order_by(Job.due_at, Job.id)
        .limit(limit)
    ).all()
    for job_id in ids:
        run_job(job_id)
    return len(ids)
