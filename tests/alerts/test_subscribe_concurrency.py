"""Twenty identical subscribe requests at once leave one subscriber and one confirmation email.

The unique normalised address is the guard, so this runs on PostgreSQL, with real commits
from real concurrent connections; the rows it made are deleted afterwards.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign import create_app
from campaign.alerts.models import Subscriber, Topic
from campaign.extensions import db
from campaign.queue import Job
from tests.conftest import settings_for_tests

REQUESTS = 20
DATABASE_URL = os.environ.get("DATABASE_URL", "")
EMAIL = "concurrent.supporter@example.org"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not DATABASE_URL.startswith("postgresql"),
        reason="the concurrency guarantee is PostgreSQL's: set DATABASE_URL=postgresql+psycopg://… to run it",
    ),
]


def test_twenty_identical_subscriptions_at_once_leave_one_row_and_one_email(app, tmp_path: Path) -> None:
    # ``app`` has built the schema from the migrations; this app commits for real on the same database.
    engine_options = {"pool_size": REQUESTS + 2, "max_overflow": 0, "pool_pre_ping": True}
    shared = create_app(
        settings_for_tests(
            tmp_path, DATABASE_URL=DATABASE_URL, SQLALCHEMY_ENGINE_OPTIONS=engine_options, QUEUE_MODE="inline"
        )
    )
    try:
        with shared.app_context():
            letters = db.session.scalar(sa.select(Topic.id).where(Topic.key == "letters"))
            first_job = db.session.scalar(sa.select(sa.func.max(Job.id))) or 0

        barrier = threading.Barrier(REQUESTS)
        statuses: list[int | str] = []
        lock = threading.Lock()

        def subscribe(n: int) -> None:
            client = shared.test_client()
            data = {"email": EMAIL.upper() if n % 2 else EMAIL, "language": "en", "topics": [str(letters)]}
            data["consent"] = "y"
            barrier.wait(timeout=30)
            try:
                status: int | str = client.post("/subscribe", data=data).status_code
            except Exception as exc:  # noqa: BLE001 - any failure fails the test below
                status = repr(exc)
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=subscribe, args=(n,)) for n in range(REQUESTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert statuses == [302] * REQUESTS, statuses
        with shared.app_context():
            rows = db.session.scalars(sa.select(Subscriber).where(Subscriber.email == EMAIL)).all()
            assert len(rows) == 1 and rows[0].status == "pending"
            assert [t.key for t in rows[0].topics] == ["letters"]
            emails = db.session.scalars(
                sa.select(Job).where(Job.id > first_job, Job.kind == "mail.send", Job.description.contains(EMAIL))
            ).all()
            assert len(emails) == 1
    finally:
        with shared.app_context():
            db.session.execute(sa.delete(Job).where(Job.id > first_job, Job.description.contains(EMAIL)))
            db.session.execute(sa.delete(Subscriber).where(Subscriber.email == EMAIL))
            db.session.commit()
            db.engine.dispose()
