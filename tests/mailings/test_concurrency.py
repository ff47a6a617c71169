"""The sending rule under real concurrency, on PostgreSQL and Redis: three `flask worker`
processes share one 2,000-contact mailing and each contact receives one message; two
coordinators approving and sending at once make one approval and one send.

Commits are real (PostgreSQL's row locks and ``SKIP LOCKED`` are what is tested), so the
rows made here are deleted afterwards, and the Redis database is emptied.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from campaign import create_app, queue
from campaign.auth.models import User
from campaign.contacts.models import Contact, ContactTag
from campaign.extensions import db
from campaign.letters.models import Letter
from campaign.mailings import sending, services
from campaign.mailings.models import Delivery, Mailing
from campaign.queue import Job
from tests import factories
from tests.browser.conftest import empty_database
from tests.conftest import settings_for_tests
from tests.letters.publishing import TRANSLATIONS, publish
from tests.mailings.smtp_sink import Sink, running

DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
ROOT = Path(__file__).resolve().parents[2]
CONTACTS, WORKERS, CHUNK = 2000, 3, 100
TAG = "Concurrency test"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.skipif(
        not DATABASE_URL.startswith("postgresql") or not REDIS_URL,
        reason="real concurrency needs PostgreSQL and Redis: set DATABASE_URL=postgresql+psycopg://… and REDIS_URL",
    ),
]


@pytest.fixture
def shared(app: Flask, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps that commit for real on the session's PostgreSQL database (``app`` has
    migrated it) with a Redis queue; every row and Redis key is gone afterwards."""
    built: list[Flask] = []

    def build(**overrides: object) -> Flask:
        settings = settings_for_tests(tmp_path, DATABASE_URL=DATABASE_URL, REDIS_URL=REDIS_URL, QUEUE_MODE="redis")
        settings.update(overrides)
        built.append(create_app(settings))
        built[-1].extensions["redis"].flushdb()
        return built[-1]

    yield build
    left = empty_database(built[0]) if built else {}
    for application in built:
        application.extensions["redis"].flushdb()
        with application.app_context():
            db.engine.dispose()
    assert not left, f"rows left behind: {left}"


def _contact(n: int) -> dict[str, str]:
    """The columns of a bulk-inserted contact: four countries, languages and three timezones."""
    return {
        "email": f"mission{n:05d}@concurrency.example",
        "country": ("FR", "CN", "EG", "BR")[n % 4],
        "language": ("fr", "zh", "ar", "en")[n % 4],
        "timezone": ("America/New_York", "Europe/Zurich", "Asia/Tokyo")[n % 3],
        "organisation": f"Permanent Mission {n}",
        "honorific": "H.E.",
        "given_name": "Ada",
        "family_name": f"Family {n}",
        "salutation": "Excellency,",
    }


def _setting_up(application: Flask, contacts: int) -> tuple[int, int, int, int]:
    """A published letter (en, fr, ar), three coordinators, ``contacts`` contacts inserted
    in bulk and a draft mailing to them; returns (mailing, author, approver, other) ids."""
    letter = publish(application, translations={language: TRANSLATIONS[language] for language in ("fr", "ar")})
    with application.app_context():
        author, approver, other = (factories.user("coordinator").id for _ in range(3))
        db.session.execute(sa.insert(Contact), [_contact(n) for n in range(contacts)])
        ids = db.session.scalars(sa.select(Contact.id).where(Contact.email.like("%@concurrency.example")))
        db.session.execute(sa.insert(ContactTag), [{"contact_id": i, "name": TAG} for i in ids])
        mailing = services.create_mailing(
            services.MailingData(
                letter=db.session.get(Letter, letter.id),
                subject="Open letter: {{ letter.title }}",
                introduction="{{ contact.salutation }}\n\nOur letter, for {{ contact.full_name }}.",
                tags=[TAG],
                rate_per_minute=100_000,
            ),
            actor=db.session.get(User, author),
        )
        db.session.commit()
        return mailing.id, author, approver, other


def _all_at_once(
    application: Flask, mailing_id: int, users: list[int], action: Callable[[Mailing, User], object]
) -> list[str]:
    """Run ``action`` for each user in a thread of its own (own session, own connection), all
    released together; commits what succeeds.  Returns the outcomes."""
    barrier, outcomes, lock = threading.Barrier(len(users)), [], threading.Lock()

    def run(user_id: int) -> None:
        with application.app_context():
            mailing, user = db.session.get(Mailing, mailing_id), db.session.get(User, user_id)
            _ = (mailing.letter.meeting, mailing.letter.translations, user.email)  # loaded before the race
            barrier.wait(timeout=30)
            try:
                result = action(mailing, user)
                db.session.commit()
                if isinstance(result, Job):
                    queue.dispatch(result)
                outcome = "done"
            except services.MailingError as exc:
                db.session.rollback()
                outcome = f"refused: {exc}"
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                db.session.rollback()
                outcome = f"error: {exc!r}"
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=run, args=(user_id,)) for user_id in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return sorted(outcomes)


def test_two_coordinators_approving_and_sending_at_once_make_one_of_each(shared) -> None:
    application = shared(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 4, "max_overflow": 0, "pool_pre_ping": True})
    mailing_id, _, approver, other = _setting_up(application, 50)

    approvals = _all_at_once(application, mailing_id, [approver, other], services.approve)
    assert approvals[0] == "done" and approvals[1].startswith("refused: The mailing changed or was approved"), approvals
    sends = _all_at_once(application, mailing_id, [approver, other], lambda m, user: services.request_send(m, {}, user))
    assert sends[0] == "done" and sends[1].startswith("refused: This mailing is already being sent"), sends

    with application.app_context():
        mailing = db.session.get(Mailing, mailing_id)
        assert mailing.status == "scheduled" and mailing.approved_by_id in (approver, other)
        assert mailing.send_requested_by_id in (approver, other)
        deliveries = db.session.scalar(sa.select(sa.func.count()).where(Delivery.mailing_id == mailing_id))
        dispatches = db.session.scalars(sa.select(Job).where(Job.kind == "mailing.dispatch")).all()
        assert (deliveries, len(dispatches)) == (50, 1)
        from rq import Queue

        [enqueued] = Queue("mail", connection=application.extensions["redis"]).get_jobs()
        assert enqueued.args == (dispatches[0].id,)


def _start_worker(env: dict[str, str], pidfile: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--pidfile", str(pidfile)]
    with log.open("wb") as output:
        # A session of its own: at the end, the worker and the job process it forked go together.
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def _stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)  # RQ's warm shutdown
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=5)


def test_three_workers_send_a_2000_contact_mailing_once_to_each(shared, tmp_path: Path) -> None:
    sink = Sink(keep_messages=False)
    with running(sink) as port:
        settings = {"MAIL_BACKEND": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": port, "MAILING_CHUNK": CHUNK}
        application = shared(**settings)
        mailing_id, author, approver, _ = _setting_up(application, CONTACTS)
        env = os.environ | {key: str(value) for key, value in settings.items()}
        env |= {"APP_ENV": "testing", "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL, "QUEUE_MODE": "redis"}
        workers = [_start_worker(env, tmp_path / f"worker{n}.pid", tmp_path / f"worker{n}.log") for n in range(WORKERS)]
        try:
            with application.app_context():
                services.approve(db.session.get(Mailing, mailing_id), db.session.get(User, approver))
                db.session.commit()
                row = services.request_send(db.session.get(Mailing, mailing_id), {}, db.session.get(User, author))
                db.session.commit()
                started = time.monotonic()
                queue.dispatch(row)
                status = ""
                while status != "finished" and time.monotonic() - started < 300:
                    assert all(worker.poll() is None for worker in workers), "a worker stopped"
                    time.sleep(0.5)
                    db.session.expire_all()
                    status = db.session.get(Mailing, mailing_id).status
                elapsed = time.monotonic() - started
                progress = sending.progress(mailing_id)
                jobs = Counter(db.session.execute(sa.select(Job.kind, Job.status)).all())
        finally:
            for worker in workers:
                _stop(worker)
        logs = "\n".join((tmp_path / f"worker{n}.log").read_text()[-3000:] for n in range(WORKERS))
        counts = sink.counts()

    assert status == "finished", f"{progress}\n{logs}"
    assert progress.counts["sent"] == CONTACTS == progress.total, progress
    assert len(counts) == CONTACTS and set(counts.values()) == {1}, counts.most_common(3)
    assert jobs[("mailing.chunk", "failed")] == jobs[("mailing.dispatch", "failed")] == 0, jobs
    print(f"\n{CONTACTS} messages by {WORKERS} workers in {elapsed:.1f} s ({CONTACTS / elapsed:.0f} a second)")
