"""The sending rule under real concurrency, on PostgreSQL and Redis: two `flask worker` processes
share one alert to 5,000 subscribers in two languages, sending through the SendGrid backend to
the stand-in, and each address receives the alert exactly once, in one request per chunk.

Commits are real (PostgreSQL's ``SKIP LOCKED`` is what is tested), so the rows made here are
deleted afterwards, and the Redis database is emptied.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from campaign import create_app
from campaign.alerts import sending
from campaign.alerts.models import Alert, AlertDelivery, AlertText, Subscriber, Topic, subscriber_topics
from campaign.db import utcnow
from campaign.extensions import db
from campaign.mailings.models import SendGridEvent
from campaign.queue import Job
from tests.conftest import settings_for_tests
from tests.mailings.test_concurrency import _start_worker, _stop
from tests.sendgrid_standin import StandIn

DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
SUBSCRIBERS, WORKERS = 5000, 2

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.skipif(
        not DATABASE_URL.startswith("postgresql") or not REDIS_URL,
        reason="real concurrency needs PostgreSQL and Redis: set DATABASE_URL=postgresql+psycopg://… and REDIS_URL",
    ),
]


def _forget(application: Flask) -> None:
    """Delete what the test made (the built-in topics stay)."""
    with application.app_context(), db.engine.begin() as connection:
        connection.execute(sa.delete(SendGridEvent).where(SendGridEvent.alert_delivery_id.is_not(None)))
        for table in (AlertDelivery.__table__, AlertText.__table__, Alert.__table__, subscriber_topics,
                      Subscriber.__table__, Job.__table__):  # fmt: skip
            connection.execute(table.delete())


@pytest.fixture
def shared(app: Flask, tmp_path: Path, contract: None) -> Iterator[tuple[Flask, StandIn]]:
    """An app committing for real on the session's PostgreSQL database with a Redis queue and the
    SendGrid backend on a running stand-in."""
    with StandIn() as standin:
        settings = settings_for_tests(
            tmp_path,
            DATABASE_URL=DATABASE_URL,
            REDIS_URL=REDIS_URL,
            QUEUE_MODE="redis",
            MAIL_BACKEND="sendgrid",
            SENDGRID_API_KEY=standin.api_key,
            SENDGRID_API_HOST=standin.url,
            SITE_URL="https://alerts.example.org",
        )
        application = create_app(settings)
        application.extensions["redis"].flushdb()
        _forget(application)
        try:
            yield application, standin
        finally:
            application.extensions["redis"].flushdb()
            _forget(application)
            with application.app_context():
                db.engine.dispose()


def _setting_up(application: Flask) -> int:
    """5,000 confirmed subscribers (English and French) following new letters, and a draft alert."""
    with application.app_context():
        now = utcnow()
        rows = [
            {"email": f"supporter{n:05d}@workers.example", "name": f"Supporter {n}", "language": ("en", "fr")[n % 2],
             "status": "confirmed", "token_key": f"key-{n}", "consent_text": "yes", "consent_version": "t",
             "consented_at": now, "confirmed_at": now, "created_at": now, "updated_at": now}
            for n in range(SUBSCRIBERS)
        ]  # fmt: skip
        db.session.execute(sa.insert(Subscriber), rows)
        letters = db.session.scalar(sa.select(Topic.id).where(Topic.key == "letters"))
        ids = db.session.scalars(sa.select(Subscriber.id)).all()
        db.session.execute(sa.insert(subscriber_topics), [{"subscriber_id": i, "topic_id": letters} for i in ids])
        alert = Alert(language="en", topic_ids=[letters])
        alert.texts = [
            AlertText(language="en", subject="A new letter", body="Please read it."),
            AlertText(language="fr", subject="Une nouvelle lettre", body="Lisez-la."),
        ]
        db.session.add(alert)
        db.session.commit()
        return alert.id


def test_two_workers_send_an_alert_to_5000_subscribers_once_each(shared, tmp_path: Path) -> None:
    application, standin = shared
    alert_id = _setting_up(application)
    env = os.environ | {
        "APP_ENV": "testing",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "QUEUE_MODE": "redis",
        "MAIL_BACKEND": "sendgrid",
        "SENDGRID_API_KEY": standin.api_key,
        "SENDGRID_API_HOST": standin.url,
        "SITE_URL": "https://alerts.example.org",
    }
    workers = [_start_worker(env, tmp_path / f"worker{n}.pid", tmp_path / f"worker{n}.log") for n in range(WORKERS)]
    try:
        with application.app_context():
            assert sending.start(db.session.get(Alert, alert_id)) == SUBSCRIBERS
            started, status = time.monotonic(), ""
            while status != "finished" and time.monotonic() - started < 120:
                assert all(worker.poll() is None for worker in workers), "a worker stopped"
                time.sleep(0.5)
                db.session.expire_all()
                status = db.session.get(Alert, alert_id).status
            progress = sending.progress(alert_id)
            jobs = Counter(db.session.execute(sa.select(Job.kind, Job.status, Job.worker)).all())
    finally:
        for worker in workers:
            _stop(worker)
    logs = "\n".join((tmp_path / f"worker{n}.log").read_text()[-3000:] for n in range(WORKERS))

    assert status == "finished", f"{progress}\n{jobs}\n{logs}"
    assert progress.counts["sent"] == SUBSCRIBERS == progress.total, progress
    counts = standin.counts()
    assert len(counts) == SUBSCRIBERS and set(counts.values()) == {1}, Counter(counts).most_common(3)
    accepted = standin.accepted
    # 2,500 a language: at least 1,000 + 1,000 + 500, twice; two workers claiming at the same
    # moment may split a chunk between them, never a recipient.
    assert standin.requests == len(accepted) >= 6
    assert max(len(request.personalizations) for request in accepted) <= 1000
    for request in accepted:  # one language a request: even numbers read English, odd ones French
        parities = {int(p["to"][0]["email"][len("supporter") :][:5]) % 2 for p in request.personalizations}
        assert parities == {"A new letter": {0}, "Une nouvelle lettre": {1}}[request.body["subject"]]
    by_language = Counter(request.body["subject"] for request in accepted)
    assert set(by_language) == {"A new letter", "Une nouvelle lettre"} and min(by_language.values()) >= 3
    chunk_workers = {w for (kind, state, w), n in jobs.items() if kind == "alert.chunk" and state == "finished"}
    assert not [key for key in jobs if key[1] == "failed"], jobs
    print(f"\n{SUBSCRIBERS} recipients by {WORKERS} workers ({len(chunk_workers)} ran chunks)")
