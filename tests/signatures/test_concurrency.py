"""Twenty representatives' requests at once for one organisation leave exactly one signature.

The unique (letter, organisation key) constraint is the guard, so this runs on
PostgreSQL, with real commits from real concurrent connections; the rows it made
are deleted afterwards.
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaign import create_app
from campaign.auth.models import User
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import services as letters
from campaign.letters.models import Letter
from campaign.letters.services import LetterText
from campaign.signatures import services
from campaign.signatures.models import Signature
from tests import factories
from tests.browser.conftest import empty_database
from tests.conftest import settings_for_tests

REQUESTS = 20
DATABASE_URL = os.environ.get("DATABASE_URL", "")

pytestmark = pytest.mark.skipif(
    not DATABASE_URL.startswith("postgresql"),
    reason="the concurrency guarantee is PostgreSQL's: set DATABASE_URL=postgresql+psycopg://… to run it",
)


def test_twenty_concurrent_signatures_for_one_organisation_leave_one(app, tmp_path: Path) -> None:
    # ``app`` has built the schema from the migrations; this app commits for real on the same database.
    # A connection per request, so all twenty really meet at the database.
    engine_options = {"pool_size": REQUESTS + 2, "max_overflow": 0, "pool_pre_ping": True}
    shared = create_app(
        settings_for_tests(tmp_path, DATABASE_URL=DATABASE_URL, SQLALCHEMY_ENGINE_OPTIONS=engine_options)
    )
    try:
        with shared.app_context():
            org = factories.organisation()
            representatives = [factories.user("member", organisation_=org).id for _ in range(REQUESTS)]
            letter = letters.create_letter(
                LetterText("Concurrency letter", "Twenty at once."), signature_deadline=utcnow() + timedelta(days=1)
            )
            letters.transition(letter, "review")
            letters.transition(letter, "open")
            db.session.commit()
            letter_id = letter.id

        barrier = threading.Barrier(REQUESTS)
        outcomes: list[str] = []
        lock = threading.Lock()

        def sign(user_id: int) -> None:
            with shared.app_context():
                user = db.session.get(User, user_id)
                target = db.session.get(Letter, letter_id)
                _ = (user.organisation.name, target.published_revision_id)  # loaded before the race
                barrier.wait(timeout=30)
                try:
                    services.sign_as_member(target, user, f"Signer {user_id}")
                    db.session.commit()
                    outcome = "signed"
                except services.SignatureError as exc:
                    db.session.rollback()
                    outcome = "refused" if "already signed" in str(exc) else f"other: {exc}"
                except Exception as exc:  # noqa: BLE001 - any other failure fails the test below
                    db.session.rollback()
                    outcome = f"error: {exc!r}"
                with lock:
                    outcomes.append(outcome)

        threads = [threading.Thread(target=sign, args=(user_id,)) for user_id in representatives]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert sorted(outcomes) == ["refused"] * (REQUESTS - 1) + ["signed"], outcomes
        with shared.app_context():
            rows = db.session.scalars(sa.select(Signature).where(Signature.letter_id == letter_id)).all()
            assert len(rows) == 1 and rows[0].status == "approved"
            assert [e.kind for e in rows[0].events] == ["signed"]
    finally:
        left = empty_database(shared)
        with shared.app_context():
            db.engine.dispose()
    assert not left, f"rows left behind: {left}"
