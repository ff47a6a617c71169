"""Background jobs at three levels: called directly, what was enqueued, a real worker."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaign import queue
from campaign.audit import AuditEvent, record
from campaign.db import utcnow
from campaign.extensions import db
from campaign.queue import Job, JobStatus
from tests.factories import statements

REDIS_URL = os.environ.get("REDIS_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL is not set")


@queue.job("test.record")
def _record_run(row: Job, label: str) -> None:
    record("test.ran", row, label)
    queue.report(row, 1, total=1, message=f"ran {label}")


@queue.job("test.flaky", max_attempts=2)
def _always_fails(row: Job) -> None:
    raise RuntimeError("the provider is down")


def _runs(label: str | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.action == "test.ran")
    if label:
        query = query.where(AuditEvent.summary == label)
    return db.session.scalar(query)


def test_inline_dispatch_runs_a_due_job_once(ctx):
    row = queue.schedule("test.record", {"label": "a"}, description="Record a")
    db.session.commit()
    queue.dispatch(row)
    queue.dispatch(row)  # delivered twice: claimed once
    queue.run_job(row.id)
    db.session.refresh(row)
    assert row.status == JobStatus.FINISHED
    assert (row.progress, row.total, row.message) == (1, 1, "ran a")
    assert _runs("a") == 1


def test_dispatch_refuses_uncommitted_rows(ctx):
    row = queue.schedule("test.record", {"label": "b"})
    with pytest.raises(RuntimeError, match="commit"):
        queue.dispatch(row)


def test_a_job_added_by_id_runs_once_after_the_commit(ctx):
    job_id = queue.add("test.record", {"label": "added"}, description="Record added")
    assert isinstance(job_id, int)
    with pytest.raises(RuntimeError, match="commit"):
        queue.dispatch(job_id)
    db.session.commit()
    queue.dispatch(job_id)
    queue.dispatch(job_id)  # delivered twice: claimed once
    row = db.session.get(Job, job_id)
    assert (row.kind, row.queue, row.status, row.description, row.max_attempts) == (
        "test.record", "default", JobStatus.FINISHED, "Record added", 3)  # fmt: skip
    assert _runs("added") == 1


def test_a_rolled_back_addition_leaves_no_row(ctx):
    queue.add("test.record", {"label": "undone"})
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Job)) == 0
    with pytest.raises(KeyError):
        queue.add("no.such.job")


def test_unknown_kind_is_refused(ctx):
    with pytest.raises(KeyError):
        queue.schedule("no.such.job")


def test_future_jobs_wait_for_their_time(ctx):
    row = queue.schedule("test.record", {"label": "later"}, due_at=utcnow() + timedelta(hours=1))
    db.session.commit()
    queue.dispatch(row)
    assert queue.run_due() == 0
    row.due_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert queue.run_due() == 1
    assert _runs("later") == 1


def test_failures_are_retried_with_backoff_then_recorded(ctx):
    row = queue.schedule("test.flaky")
    db.session.commit()
    queue.dispatch(row)
    db.session.refresh(row)
    assert row.status == JobStatus.QUEUED
    assert row.attempts == 1
    assert "provider is down" in row.error
    assert row.due_at > utcnow() + timedelta(seconds=20)
    row.due_at = utcnow()
    db.session.commit()
    queue.run_job(row.id)
    db.session.refresh(row)
    assert row.status == JobStatus.FAILED
    assert row.attempts == 2


def test_recover_puts_back_jobs_whose_worker_died(ctx):
    row = queue.schedule("test.record", {"label": "orphan"})
    row.status, row.attempts, row.lease_until = JobStatus.RUNNING.value, 1, utcnow() - timedelta(seconds=1)
    spent = queue.schedule("test.record", {"label": "spent"})
    spent.status, spent.attempts, spent.lease_until = JobStatus.RUNNING.value, 3, utcnow() - timedelta(seconds=1)
    db.session.commit()
    queue.recover()
    db.session.refresh(row)
    db.session.refresh(spent)
    assert row.status == JobStatus.QUEUED
    assert spent.status == JobStatus.FAILED
    assert queue.run_due() == 1
    assert _runs("orphan") == 1


def test_polling_worker_runs_due_work_without_redis(app, database):
    with app.app_context():
        row = queue.schedule("test.record", {"label": "polled"}, due_at=utcnow() + timedelta(hours=1))
        db.session.commit()
        queue.dispatch(row)
        db.session.execute(sa.update(Job).values(due_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["worker", "--burst"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert _runs("polled") == 1
        assert db.session.scalar(sa.select(Job.status)) == JobStatus.FINISHED


def test_worker_writes_and_removes_its_pidfile(app, database, tmp_path):
    pidfile = tmp_path / "worker.pid"
    result = app.test_cli_runner().invoke(args=["worker", "--burst", "--pidfile", str(pidfile)])
    assert result.exit_code == 0, result.output
    assert not pidfile.exists()


def test_jobs_page_shows_progress(app, client, auth, coordinator):
    with app.app_context():
        row = queue.schedule("test.record", {"label": "shown"}, description="Record for the page")
        db.session.commit()
        queue.dispatch(row)
    auth.login(coordinator)
    page = client.get("/admin/jobs").get_data(as_text=True)
    assert "Record for the page" in page
    assert "<progress" in page
    assert "Inline" in client.get("/admin").get_data(as_text=True)


# --- with Redis ------------------------------------------------------------


@pytest.fixture
def redis_app(separate_app):
    app = separate_app(REDIS_URL=REDIS_URL, QUEUE_MODE="redis")
    app.extensions["redis"].flushdb()
    yield app
    app.extensions["redis"].flushdb()


@pytest.mark.redis
@needs_redis
def test_dispatch_enqueues_the_job_id_on_its_queue(redis_app):
    from rq import Queue

    with redis_app.app_context():
        row = queue.schedule("test.record", {"label": "enqueued"})
        db.session.commit()
        queue.dispatch(row)
        rq_jobs = Queue("default", connection=redis_app.extensions["redis"]).get_jobs()
        assert [(j.func_name, j.args) for j in rq_jobs] == [("campaign.queue.run_job", (row.id,))]
        assert db.session.get(Job, row.id).rq_job_id == rq_jobs[0].id
        assert _runs() == 0  # nothing ran inline


@pytest.mark.redis
@needs_redis
@pytest.mark.parametrize("by_id", [False, True], ids=["scheduled rows", "ids added"])
def test_dispatch_after_the_commit_is_one_call_to_redis_and_no_sql(redis_app, by_id):
    """Each job is enqueued under the RQ id planned and committed with its row."""
    from rq import Queue

    with redis_app.app_context():
        make = queue.add if by_id else queue.schedule
        jobs = [make("test.record", {"label": f"d{n}"}) for n in range(2)]
        db.session.commit()
        with statements(redis_app) as issued:
            queue.dispatch(*jobs)
        rq_jobs = Queue("default", connection=redis_app.extensions["redis"]).get_jobs()
        stored = {rq_id: (job_id,) for job_id, rq_id in db.session.execute(sa.select(Job.id, Job.rq_job_id))}
        assert all(db.session.scalars(sa.select(Job.enqueued_at))) and _runs() == 0
    assert issued == []
    assert {j.id: j.args for j in rq_jobs} == stored and len(stored) == 2
    assert {j.timeout for j in rq_jobs} == {queue.LEASE.total_seconds()}


@pytest.mark.redis
@needs_redis
def test_a_job_committed_but_never_handed_to_redis_is_enqueued_by_recover(redis_app):
    """The process died between the commit and ``dispatch``: the row waits in the database."""
    from campaign.worker import build_worker

    with redis_app.app_context():
        queue.schedule("test.record", {"label": "orphan"})
        db.session.commit()  # and no dispatch
        assert queue.recover() == 0  # too recent to call lost
        db.session.execute(sa.update(Job).values(enqueued_at=utcnow() - queue.STALE - timedelta(seconds=1)))
        db.session.commit()
        assert queue.recover() == 1
    build_worker(redis_app, simple=True).work(burst=True)
    with redis_app.app_context():
        assert _runs("orphan") == 1


def _started_by(redis_app, row: Job, worker: str) -> None:
    """As if ``worker`` had taken the row's RQ job and begun it a while ago."""
    from rq.job import Job as RQJob
    from rq.job import JobStatus as RQStatus

    rq_job = RQJob.fetch(row.rq_job_id, connection=redis_app.extensions["redis"])
    rq_job.worker_name = worker
    rq_job.save()
    rq_job.set_status(RQStatus.STARTED)
    db.session.execute(
        sa.update(Job)
        .where(Job.id == row.id)
        .values(status=JobStatus.RUNNING.value, attempts=1, started_at=utcnow() - queue.STALE * 2)
    )
    db.session.commit()


@pytest.mark.redis
@needs_redis
def test_a_job_whose_worker_died_is_run_again_before_its_lease_ends(redis_app):
    """The worker was killed with its job: RQ still says started, but the worker's key is gone."""
    from campaign.worker import build_worker

    with redis_app.app_context():
        row = queue.schedule("test.record", {"label": "orphaned"})
        db.session.commit()
        queue.dispatch(row)
        redis_app.extensions["redis"].delete("rq:queue:default")  # taken off the queue by the dead worker
        _started_by(redis_app, row, "demarche-gone:1")
        first = row.rq_job_id
        assert queue.recover() == 1
        again = db.session.get(Job, row.id)
        assert again.status == JobStatus.QUEUED and again.rq_job_id != first
    build_worker(redis_app, simple=True).work(burst=True)
    with redis_app.app_context():
        assert _runs("orphaned") == 1


@pytest.mark.redis
@needs_redis
def test_a_job_running_on_a_live_worker_is_left_alone(redis_app):
    with redis_app.app_context():
        row = queue.schedule("test.record", {"label": "busy"})
        db.session.commit()
        queue.dispatch(row)
        redis_app.extensions["redis"].set("rq:worker:demarche-alive:1", "1", ex=60)
        _started_by(redis_app, row, "demarche-alive:1")
        assert queue.recover() == 0
        assert db.session.get(Job, row.id).status == JobStatus.RUNNING


@pytest.mark.redis
@needs_redis
def test_a_rolled_back_schedule_is_never_dispatched(redis_app):
    from rq import Queue

    with redis_app.app_context():
        queue.schedule("test.record", {"label": "rolled back"})
        db.session.rollback()
        assert db.session.info.get("planned_enqueues") is None
        kept = queue.schedule("test.record", {"label": "kept"})
        db.session.commit()
        queue.dispatch(kept)
        assert len(Queue("default", connection=redis_app.extensions["redis"]).get_jobs()) == 1


@pytest.mark.redis
@needs_redis
@pytest.mark.parametrize("simple", [True, False], ids=["in-process", "forked"])
def test_real_worker_runs_enqueued_jobs(redis_app, simple):
    from campaign.worker import build_worker

    with redis_app.app_context():
        rows = [queue.schedule("test.record", {"label": f"w{n}"}) for n in range(3)]
        db.session.commit()
        queue.dispatch(*rows)
    build_worker(redis_app, simple=simple).work(burst=True, with_scheduler=True)
    with redis_app.app_context():
        assert _runs() == 3
        assert set(db.session.scalars(sa.select(Job.status))) == {JobStatus.FINISHED}


@pytest.mark.redis
@needs_redis
def test_worker_loop_re_enqueues_what_redis_lost(redis_app):
    from campaign.worker import build_worker

    with redis_app.app_context():
        row = queue.schedule("test.record", {"label": "lost"})
        db.session.commit()
        queue.dispatch(row)
        redis_app.extensions["redis"].flushdb()  # Redis loses everything
        assert queue.recover() == 0  # too recent to call lost
        db.session.execute(sa.update(Job).values(enqueued_at=utcnow() - queue.STALE - timedelta(seconds=1)))
        db.session.commit()
        assert queue.recover() == 1
    build_worker(redis_app, simple=True).work(burst=True)
    with redis_app.app_context():
        assert _runs("lost") == 1
        assert queue.recover() == 0


@pytest.mark.redis
@needs_redis
def test_flask_worker_burst_with_redis(redis_app):
    with redis_app.app_context():
        row = queue.schedule("test.record", {"label": "cli"})
        db.session.commit()
        queue.dispatch(row)
    result = redis_app.test_cli_runner().invoke(args=["worker", "--burst", "--simple"])
    assert result.exit_code == 0, result.output
    with redis_app.app_context():
        assert _runs("cli") == 1


@pytest.mark.redis
@needs_redis
def test_a_stop_signal_lost_in_a_log_call_still_stops_the_worker(redis_app):
    """RQ stops an idle worker by raising ``StopRequested`` from its SIGTERM handler; when the
    signal lands while the worker writes a log line, ``logging`` swallows the exception.  The
    stop is noted first, so the worker's loop still ends at its next turn, running nothing more."""
    import signal

    from rq.exceptions import StopRequested

    from campaign.worker import build_worker

    with redis_app.app_context():
        row = queue.schedule("test.record", {"label": "after the stop"})
        db.session.commit()
        queue.dispatch(row)
        row_id = row.id
    worker = build_worker(redis_app, simple=True)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(StopRequested):  # what logging's handleError would swallow
            worker.request_stop(signal.SIGTERM, None)
        assert worker.work(burst=True) is False
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    with redis_app.app_context():
        assert _runs("after the stop") == 0 and db.session.get(Job, row_id).status == JobStatus.QUEUED


@pytest.mark.redis
@needs_redis
def test_a_job_dequeued_after_a_lost_stop_is_handed_back_not_run(redis_app):
    """The stop was lost while the worker waited in its blocking dequeue, and then a job came:
    the worker hands it back to the front of its queue and stops; the next worker runs it."""
    import signal

    from rq import Queue
    from rq.exceptions import StopRequested

    from campaign.worker import build_worker

    with redis_app.app_context():
        row = queue.schedule("test.record", {"label": "dequeued after the stop"})
        db.session.commit()
        queue.dispatch(row)
        row_id = row.id
    connection = redis_app.extensions["redis"]
    rq_queue = Queue("default", connection=connection)
    worker = build_worker(redis_app, simple=True)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(StopRequested):  # what logging's handleError would swallow
            worker.request_stop(signal.SIGTERM, None)
        job, found = Queue.dequeue_any([rq_queue], None, connection=connection)  # what the loop's dequeue returns
        worker.execute_job(job, found)
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert rq_queue.job_ids == [job.id] and job.get_status() == "queued"
    with redis_app.app_context():
        assert _runs("dequeued after the stop") == 0 and db.session.get(Job, row_id).status == JobStatus.QUEUED
    build_worker(redis_app, simple=True).work(burst=True)
    with redis_app.app_context():
        assert _runs("dequeued after the stop") == 1
