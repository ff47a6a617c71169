"""The sending rule through faults, on PostgreSQL and Redis with real ``flask worker`` processes
sending through the SendGrid stand-in (served from this process): workers killed with ``kill -9``
mid-mailing, three workers on one mailing, a 429 storm, an answer lost after the stand-in
accepted the message, and Redis emptied mid-mailing.

Leases are short (``MAILING_LEASE=5``) and the workers' maintenance runs every second
(``WORKER_MAINTENANCE_SECONDS=1``), so a dead worker's deliveries become ``uncertain`` quickly.
Every test ends with the same check: the stand-in accepted each contact at most once, and every
delivery is ``sent`` (accepted once), ``failed`` with a reason, or ``uncertain``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from campaign.auth.models import User
from campaign.extensions import db
from campaign.mailings import sending, services
from campaign.mailings.models import Delivery, Mailing
from tests.mailings.test_concurrency import DATABASE_URL, REDIS_URL, _setting_up, _start_worker, _stop, shared
from tests.sendgrid_standin import StandIn

__all__ = ["shared"]  # the fixture, from the concurrency tests

CHUNK, LEASE = 50, 5

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.skipif(
        not DATABASE_URL.startswith("postgresql") or not REDIS_URL,
        reason="the fault tests need PostgreSQL and Redis: set DATABASE_URL=postgresql+psycopg://… and REDIS_URL",
    ),
]


class Workers:
    """``flask worker`` processes on the stand-in, each in a session of its own; all stopped at the end."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.env, self.running, self.started, self.horses_killed = tmp_path, env, [], 0, 0

    def start(self):
        self.started += 1
        name = f"worker{self.started}"
        worker = _start_worker(self.env, self.tmp_path / f"{name}.pid", self.tmp_path / f"{name}.log")
        self.running.append(worker)
        return worker

    @staticmethod
    def horses(worker) -> list[int]:
        """The job processes ``worker`` has forked and not reaped (one while it runs a job)."""
        try:
            return [int(pid) for pid in Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()]
        except OSError:
            return []

    def busy(self, besides=None):
        """A running worker other than ``besides`` that is running a job, or None."""
        return next((w for w in self.running if w is not besides and self.horses(w)), None)

    def kill(self, worker) -> None:
        """``kill -9`` of the worker's process group and of the job process it forked, which RQ
        puts in a process group of its own (``os.setpgrp`` in the work horse)."""
        horses = self.horses(worker)
        os.killpg(worker.pid, signal.SIGKILL)
        for horse in horses:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(horse, signal.SIGKILL)
        worker.wait(timeout=10)
        self.running.remove(worker)
        self.horses_killed += len(horses)

    def check_alive(self) -> None:
        assert all(worker.poll() is None for worker in self.running), f"a worker stopped\n{self.logs()}"

    def logs(self) -> str:
        return "\n".join(path.read_text()[-2000:] for path in sorted(self.tmp_path.glob("worker*.log")))

    def stop_all(self) -> None:
        for worker in self.running:
            _stop(worker)
        self.running.clear()


@pytest.fixture
def faulty(shared, standin: StandIn, tmp_path: Path) -> Iterator[tuple[Flask, Workers]]:
    """The test's app and its workers, all sending through ``standin``."""
    settings = {"MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": standin.api_key, "SENDGRID_API_HOST": standin.url,
                "SENDGRID_TIMEOUT": 2, "MAILING_CHUNK": CHUNK, "MAILING_LEASE": LEASE,
                "WORKER_MAINTENANCE_SECONDS": 1}  # fmt: skip
    application = shared(**settings)
    env = os.environ | {key: str(value) for key, value in settings.items()}
    env |= {"APP_ENV": "testing", "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL, "QUEUE_MODE": "redis"}
    workers = Workers(tmp_path, env)
    try:
        yield application, workers
    finally:
        workers.stop_all()


def _mailing(application: Flask, contacts: int, rate_per_minute: int = 100_000) -> Callable[[], int]:
    """A mailing to ``contacts`` contacts, approved; returns a function that sends it."""
    mailing_id, author, approver, _ = _setting_up(application, contacts)
    with application.app_context():
        db.session.execute(sa.update(Mailing).where(Mailing.id == mailing_id).values(rate_per_minute=rate_per_minute))
        services.approve(db.session.get(Mailing, mailing_id), db.session.get(User, approver))
        db.session.commit()

    def send() -> int:
        from campaign import queue

        with application.app_context():
            row = services.request_send(db.session.get(Mailing, mailing_id), {}, db.session.get(User, author))
            db.session.commit()
            queue.dispatch(row)
        return mailing_id

    return send


def _wait(condition: Callable[[], bool], workers: Workers, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        workers.check_alive()
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s\n{workers.logs()}"
        time.sleep(0.2)


def _status(application: Flask, mailing_id: int) -> str:
    with application.app_context():
        return db.session.scalar(sa.select(Mailing.status).where(Mailing.id == mailing_id))


def _finished(application: Flask, mailing_id: int, workers: Workers, seconds: float = 300) -> None:
    _wait(lambda: _status(application, mailing_id) == "finished", workers, seconds, f"mailing {mailing_id} finished")


def _the_rule_holds(application: Flask, standin: StandIn, mailing_id: int, contacts: int) -> Counter[str]:
    """Each contact accepted at most once; every delivery sent (accepted once), failed with a
    reason, or uncertain.  Returns the deliveries' states."""
    counts = standin.counts()
    assert not counts or max(counts.values()) == 1, Counter(counts).most_common(3)
    with application.app_context():
        rows = db.session.execute(
            sa.select(Delivery.email, Delivery.status, Delivery.reason).where(Delivery.mailing_id == mailing_id)
        ).all()
        progress = sending.progress(mailing_id)
    assert len(rows) == contacts == progress.total
    states = Counter(status for _, status, _ in rows)
    assert set(states) <= {"sent", "failed", "uncertain"}, states
    for email, status, reason in rows:
        if status == "sent":
            assert counts.get(email) == 1, email
        elif status == "failed":
            assert reason, email
        else:
            assert counts.get(email, 0) <= 1, email
    return states


def test_workers_killed_mid_mailing_never_send_twice(faulty, standin: StandIn) -> None:
    """2,000 contacts; a worker's process group is killed (-9) after about 200, 900 and 1,600
    messages were accepted (the one running a job, when one does within a few seconds), and a
    new worker started each time.  The worker started first keeps RQ's scheduler (a killed one
    would hold its lock for a minute) and is never killed."""
    application, workers = faulty
    send = _mailing(application, 2000)
    keeper = workers.start()
    redis = application.extensions["redis"]
    _wait(lambda: bool(redis.keys("rq:scheduler-lock:*")), workers, 30, "the first worker runs the scheduler")
    victim = workers.start()
    started = time.monotonic()
    mailing_id = send()
    kills, held = 0, []
    for threshold in (200, 900, 1600):
        _wait(lambda t=threshold: len(standin.accepted) >= t, workers, 90, f"{threshold} accepted")
        deadline = time.monotonic() + 10
        while workers.busy(besides=keeper) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        workers.kill(workers.busy(besides=keeper) or victim)
        kills += 1
        with application.app_context():
            held.append(db.session.scalar(sa.select(sa.func.count()).where(Delivery.status == "sending")))
        victim = workers.start()
    _finished(application, mailing_id, workers)
    elapsed = time.monotonic() - started

    states = _the_rule_holds(application, standin, mailing_id, 2000)
    assert states["uncertain"] <= CHUNK * kills, states
    assert states["failed"] == 0, states
    assert workers.horses_killed >= 1, "no kill caught a job running"
    print(
        f"\n{kills} kills ({workers.horses_killed} job processes; deliveries sending at each: {held}),"
        f" {dict(states)} in {elapsed:.1f} s"
    )


def test_three_workers_on_one_mailing_send_each_once(faulty, standin: StandIn) -> None:
    application, workers = faulty
    send = _mailing(application, 2000)
    for _ in range(3):
        workers.start()
    started = time.monotonic()
    mailing_id = send()
    _finished(application, mailing_id, workers)
    elapsed = time.monotonic() - started

    states = _the_rule_holds(application, standin, mailing_id, 2000)
    assert states == {"sent": 2000}, states
    print(f"\n2000 messages by 3 workers through the stand-in in {elapsed:.1f} s ({2000 / elapsed:.0f}/s)")


def test_a_429_storm_sends_everything_once_and_backs_off_per_chunk(faulty, standin: StandIn) -> None:
    """The stand-in answers 429 (reset in a second) to the next 15 requests: each refusal stops
    its chunk until the reset, so the storm costs 15 requests, not a request per delivery."""
    application, workers = faulty
    send = _mailing(application, 300)
    standin.rate_limit(times=15, reset_in=1)
    for _ in range(2):
        workers.start()
    started = time.monotonic()
    mailing_id = send()
    _finished(application, mailing_id, workers)
    elapsed = time.monotonic() - started

    states = _the_rule_holds(application, standin, mailing_id, 300)
    assert states == {"sent": 300}, states
    assert standin.requests == 300 + 15
    print(f"\n300 messages through 15 429s in {elapsed:.1f} s")


def test_an_answer_lost_after_acceptance_is_uncertain_and_never_resent(faulty, standin: StandIn) -> None:
    application, workers = faulty
    send = _mailing(application, 20)
    standin.drop(times=1)
    workers.start()
    mailing_id = send()
    _finished(application, mailing_id, workers, seconds=60)
    time.sleep(2 * 1 + 0.5)  # two more maintenance rounds: nothing sends it again

    states = _the_rule_holds(application, standin, mailing_id, 20)
    assert states == {"sent": 19, "uncertain": 1}, states
    with application.app_context():
        lost = db.session.scalar(sa.select(Delivery).where(Delivery.mailing_id == mailing_id,
                                                           Delivery.status == "uncertain"))  # fmt: skip
        assert "may have been sent" in lost.reason
        assert standin.count(lost.email) == 1 and standin.requests == 20


def test_redis_flushed_mid_mailing_the_worker_loop_completes_it(faulty, standin: StandIn) -> None:
    """Chunks of 50 spaced 5 s apart (600 a minute); once the first two went, the test's Redis
    database is emptied.  The jobs' rows say what was lost: the maintenance loop enqueues them
    again (after ``queue.STALE``) and the mailing completes."""
    application, workers = faulty
    send = _mailing(application, 300, rate_per_minute=600)
    workers.start()
    started = time.monotonic()
    mailing_id = send()
    _wait(lambda: len(standin.accepted) >= 2 * CHUNK, workers, 60, f"{2 * CHUNK} accepted")
    application.extensions["redis"].flushdb()
    flushed_with = len(standin.accepted)
    _finished(application, mailing_id, workers, seconds=150)
    elapsed = time.monotonic() - started

    states = _the_rule_holds(application, standin, mailing_id, 300)
    assert states == {"sent": 300}, states
    assert flushed_with < 300
    print(f"\nRedis emptied after {flushed_with} of 300; finished in {elapsed:.1f} s")
