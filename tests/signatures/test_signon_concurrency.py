"""Public sign-ons posted at the same moment on the default set-up (SQLite in a file, jobs
run inline) each answer with the redirect and leave their signature and its sent link.

Every request begins as a writer: a request that read first and then wrote would be refused
at once ("database is locked") when another one wrote in between."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from flask import Flask

from campaign.extensions import db
from campaign.queue import Job
from campaign.signatures.models import Signature
from tests.factories import Outbox, statements
from tests.letters.publishing import publish

THREADS = 6
ROUNDS = 3


def form(n: int) -> dict[str, str]:
    return {
        "organisation_name": f"Simultaneous Organisation {n}",
        "country": "KE",
        "signer_name": f"Signer {n}",
        "signer_title": "Director",
        "signer_email": f"signer{n}@simultaneous.example.org",
        "consent": "y",
    }


def post_at_once(app: Flask, slug: str, numbers: range) -> list[int | str]:
    """The status of each POST (or the error it raised), all started together, each from a
    client of its own."""
    barrier = threading.Barrier(len(numbers))
    outcomes: dict[int, int | str] = {}

    def sign(n: int) -> None:
        client = app.test_client()
        barrier.wait(timeout=30)
        try:
            outcomes[n] = client.post(f"/letters/{slug}/sign", data=form(n)).status_code
        except Exception as exc:  # noqa: BLE001 - the test shows what each request met
            outcomes[n] = repr(exc)

    threads = [threading.Thread(target=sign, args=(n,)) for n in numbers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return [outcomes.get(n, "no answer") for n in numbers]


def test_simultaneous_signons_on_sqlite_all_succeed(separate_app: Callable[..., Flask]) -> None:
    app = separate_app(REDIS_URL=None, QUEUE_MODE="inline")
    letter = publish(app)
    for round_ in range(ROUNDS):
        numbers = range(round_ * THREADS, (round_ + 1) * THREADS)
        assert post_at_once(app, letter.slug, numbers) == [302] * THREADS

    with app.app_context():
        signatures = db.session.scalars(sa.select(Signature.status).where(Signature.letter_id == letter.id)).all()
        jobs = db.session.execute(sa.select(Job.status, sa.func.count()).group_by(Job.status)).all()
    assert signatures == ["pending_verification"] * THREADS * ROUNDS
    assert jobs == [("finished", THREADS * ROUNDS)]
    assert len(Outbox(Path(app.config["OUTBOX_DIR"])).messages()) == THREADS * ROUNDS


def test_a_signon_is_one_transaction_of_six_statements(app, client) -> None:
    """Beginning as a writer adds nothing to the sign-on itself: the letter, the settings, the
    lookup and three inserts, then the commit (a savepoint's release here); on PostgreSQL
    not even a BEGIN."""
    letter = publish(app)
    with statements(app) as issued:
        response = client.post(f"/letters/{letter.slug}/sign", data=form(0))
    assert response.status_code == 302
    first = issued[1 : next(i for i, sql in enumerate(issued) if sql.startswith("RELEASE SAVEPOINT"))]
    assert [sql.split()[0] for sql in first] == ["SELECT"] * 3 + ["INSERT"] * 3, first
