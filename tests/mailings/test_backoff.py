"""Chunk-level backoff: a 429 or 503 that says when to come back stops the chunk, so a rate
limit costs one request per chunk, not one per delivery.  The refused delivery and the rest of
its chunk wait until then (attempts kept only for the one tried), and one dispatch sends them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from campaign import queue
from campaign.auth.models import User
from campaign.db import utcnow
from campaign.extensions import db
from campaign.mailings import services
from campaign.mailings.backends import build_backend
from campaign.mailings.models import Delivery, DeliveryEvent, Mailing
from campaign.queue import Job
from tests.mailings.world import CONTACTS, approved, make_world
from tests.sendgrid_standin import StandIn

EVERYONE = {row[1]: 1 for row in CONTACTS}


@pytest.fixture
def on_sendgrid(app: Flask, standin: StandIn) -> Iterator[StandIn]:
    """The session's app sends through the in-process stand-in for one test."""
    settings = {**app.config, "MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": standin.api_key,
                "SENDGRID_API_HOST": standin.url, "SENDGRID_TIMEOUT": 2}  # fmt: skip
    original = app.extensions["mail_backend"]
    app.extensions["mail_backend"] = build_backend(settings)
    try:
        yield standin
    finally:
        app.extensions["mail_backend"] = original


def _send(app: Flask) -> int:
    world = make_world(app)
    mailing_id = approved(app, world)
    row = services.request_send(db.session.get(Mailing, mailing_id), {}, actor=db.session.get(User, world.author.id))
    db.session.commit()
    queue.dispatch(row)
    return mailing_id


def _deliveries(mailing_id: int) -> list[Delivery]:
    db.session.expire_all()
    return db.session.scalars(sa.select(Delivery).where(Delivery.mailing_id == mailing_id).order_by(Delivery.id)).all()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _queued() -> list[Job]:
    return db.session.scalars(sa.select(Job).where(Job.status == "queued").order_by(Job.id)).all()


def _run_when_due() -> None:
    """What the workers do once the retry time comes: bring it forward and run what is queued."""
    for _ in range(20):
        db.session.execute(sa.update(Job).where(Job.status == "queued").values(due_at=utcnow()))
        db.session.execute(sa.update(Delivery).where(Delivery.status == "pending").values(due_at=utcnow()))
        db.session.commit()
        if not queue.run_due():
            return
    raise AssertionError("jobs keep coming")


def test_a_429_stops_the_chunk_until_the_reset_then_one_dispatch_sends_it(app, ctx, on_sendgrid) -> None:
    on_sendgrid.rate_limit(times=1, reset_in=120)
    started = utcnow()
    mailing_id = _send(app)

    # One request was made: the 429 stopped the chunk instead of trying the five others.
    assert on_sendgrid.requests == 1 and on_sendgrid.counts() == {}
    refused, *rest = _deliveries(mailing_id)
    assert (refused.status, refused.attempts) == ("pending", 1) and "429" in refused.reason
    assert [(d.status, d.attempts, d.lease_owner) for d in rest] == [("pending", 0, None)] * len(rest)
    wait = _aware(refused.due_at) - _aware(started)
    assert timedelta(seconds=100) < wait < timedelta(seconds=125), wait
    assert {d.due_at for d in rest} == {refused.due_at}
    # One dispatch at the reset time, and nothing sooner.
    [retry] = _queued()
    assert (retry.kind, retry.due_at) == ("mailing.dispatch", refused.due_at)
    assert queue.run_due() == 0 and on_sendgrid.requests == 1
    assert db.session.get(Mailing, mailing_id).status == "sending"
    events = db.session.scalars(sa.select(DeliveryEvent.kind).where(DeliveryEvent.delivery_id == refused.id)).all()
    assert "retry" in events

    _run_when_due()
    assert on_sendgrid.counts() == EVERYONE and on_sendgrid.requests == len(CONTACTS) + 1
    assert {(d.status, d.attempts) for d in _deliveries(mailing_id)} == {("sent", 2), ("sent", 1)}
    assert db.session.get(Mailing, mailing_id).status == "finished"


def test_a_503_with_retry_after_midway_keeps_what_went_and_holds_the_rest(app, ctx, on_sendgrid) -> None:
    on_sendgrid.slow(0, times=1)  # the first request is accepted (a prompt 202)
    on_sendgrid.fail(503, times=1, retry_after=30)
    mailing_id = _send(app)

    first, refused, *rest = _deliveries(mailing_id)
    assert first.status == "sent" and on_sendgrid.counts() == {first.email: 1}
    assert on_sendgrid.requests == 2
    assert (refused.status, refused.attempts) == ("pending", 1) and "503" in refused.reason
    assert [(d.status, d.attempts) for d in rest] == [("pending", 0)] * len(rest)
    wait = _aware(refused.due_at) - utcnow()
    assert timedelta(seconds=20) < wait <= timedelta(seconds=30), wait
    assert {d.due_at for d in rest} == {refused.due_at}
    assert [job.kind for job in _queued()] == ["mailing.dispatch"]

    _run_when_due()
    assert on_sendgrid.counts() == EVERYONE
    assert {d.status for d in _deliveries(mailing_id)} == {"sent"}


def test_a_chunk_stops_at_each_429_and_the_mailing_still_sends_everyone_once(app, ctx, on_sendgrid) -> None:
    """A storm: every first request after a wait is refused again, three times over."""
    on_sendgrid.rate_limit(times=3, reset_in=30)
    mailing_id = _send(app)
    for round_ in range(1, 4):
        assert on_sendgrid.requests == round_ and on_sendgrid.counts() == {}
        _run_once_due()
    assert on_sendgrid.counts() == EVERYONE
    assert on_sendgrid.requests == 3 + len(CONTACTS)
    deliveries = _deliveries(mailing_id)
    assert max(d.attempts for d in deliveries) == 4 and {d.status for d in deliveries} == {"sent"}


def _run_once_due() -> None:
    db.session.execute(sa.update(Job).where(Job.status == "queued").values(due_at=utcnow()))
    db.session.execute(sa.update(Delivery).where(Delivery.status == "pending").values(due_at=utcnow()))
    db.session.commit()
    queue.run_due()
