"""``MAIL_BACKEND=sendgrid``: its settings, and a whole mailing sent through the stand-in."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

import config
from campaign import queue
from campaign.auth.models import User
from campaign.db import utcnow
from campaign.extensions import db
from campaign.mailings import sending, services
from campaign.mailings.backends import build_backend
from campaign.mailings.models import Delivery, Mailing
from campaign.mailings.sendgrid import SendGridBackend
from config import ConfigurationError, load_config
from tests.mailings.world import CONTACTS, approved, make_world
from tests.sendgrid_standin import StandIn

PRODUCTION = {"APP_ENV": "production", "SECRET_KEY": "s3cret", "DATABASE_URL": "postgresql+psycopg://u:p@db/x",
              "REDIS_URL": "redis://127.0.0.1:1/0"}  # fmt: skip


@pytest.fixture
def clean_environment(monkeypatch) -> None:
    for name in [*config.Config.ENVIRONMENT, "APP_ENV"]:
        monkeypatch.delenv(name, raising=False)


# --- settings -----------------------------------------------------------------------


def test_sendgrid_is_a_mail_backend_with_its_settings(clean_environment, monkeypatch) -> None:
    monkeypatch.setenv("MAIL_BACKEND", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.from-the-environment")
    monkeypatch.setenv("SENDGRID_API_HOST", "http://127.0.0.1:8025/")
    monkeypatch.setenv("SENDGRID_TIMEOUT", "4.5")
    settings = load_config().as_dict()
    assert settings["SENDGRID_API_HOST"] == "http://127.0.0.1:8025"
    backend = build_backend(settings)
    assert isinstance(backend, SendGridBackend) and backend.name == "sendgrid"
    assert backend.host == "http://127.0.0.1:8025" and backend._api.client.timeout == 4.5


def test_sendgrid_defaults(clean_environment) -> None:
    settings = load_config({"MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": "SG.key"})
    assert settings.SENDGRID_API_HOST == "https://api.sendgrid.com" and settings.SENDGRID_TIMEOUT == 30


@pytest.mark.parametrize("environment", [{}, PRODUCTION], ids=["development", "production"])
def test_sendgrid_without_an_api_key_is_refused(clean_environment, environment) -> None:
    with pytest.raises(ConfigurationError, match="MAIL_BACKEND=sendgrid needs SENDGRID_API_KEY"):
        load_config({**environment, "MAIL_BACKEND": "sendgrid"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SENDGRID_API_HOST": "api.sendgrid.com"}, "SENDGRID_API_HOST must be an http"),
        ({"SENDGRID_TIMEOUT": 0}, "SENDGRID_TIMEOUT"),
        ({**PRODUCTION, "SENDGRID_API_HOST": "http://api.sendgrid.com"}, "https URL in production"),
    ],
)
def test_unusable_sendgrid_settings_are_refused(clean_environment, overrides, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_config({"MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": "SG.key", **overrides})


def test_production_accepts_sendgrid_over_https_or_on_this_machine(clean_environment) -> None:
    for host in ("https://api.sendgrid.com", "http://127.0.0.1:8025"):
        config = load_config(
            {**PRODUCTION, "MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": "SG.key", "SENDGRID_API_HOST": host}
        )
        assert config.APP_ENV == "production"
        assert config.MAIL_BACKEND == "sendgrid"
        assert host == config.SENDGRID_API_HOST


def test_an_app_built_with_sendgrid_uses_it(separate_app, standin) -> None:
    app = separate_app(MAIL_BACKEND="sendgrid", SENDGRID_API_KEY=standin.api_key, SENDGRID_API_HOST=standin.url)
    assert isinstance(app.extensions["mail_backend"], SendGridBackend)


# --- a mailing through the stand-in --------------------------------------------------


@pytest.fixture
def on_sendgrid(app: Flask, standin: StandIn) -> Iterator[StandIn]:
    """The session's app sends through the stand-in for one test."""
    settings = {**app.config, "MAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": standin.api_key,
                "SENDGRID_API_HOST": standin.url, "SENDGRID_TIMEOUT": 2}  # fmt: skip
    original = app.extensions["mail_backend"]
    app.extensions["mail_backend"] = build_backend(settings)
    try:
        yield standin
    finally:
        app.extensions["mail_backend"] = original


def _send(app: Flask, world) -> int:
    mailing_id = approved(app, world)
    mailing = db.session.get(Mailing, mailing_id)
    row = services.request_send(mailing, {}, actor=db.session.get(User, world.author.id))
    db.session.commit()
    queue.dispatch(row)
    return mailing_id


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _deliveries(mailing_id: int) -> dict[str, Delivery]:
    rows = db.session.scalars(sa.select(Delivery).where(Delivery.mailing_id == mailing_id))
    return {row.email: row for row in rows}


def test_a_mailing_reaches_each_contact_once_through_sendgrid(app, ctx, on_sendgrid) -> None:
    world = make_world(app, suppressed=1)
    mailing_id = _send(app, world)

    progress = sending.progress(mailing_id)
    assert progress.counts["sent"] == 5 and progress.counts["suppressed"] == 1, progress
    assert db.session.get(Mailing, mailing_id).status == "finished"
    deliveries = _deliveries(mailing_id)
    suppressed = CONTACTS[0][1]
    assert on_sendgrid.counts() == {email: 1 for email in deliveries if email != suppressed}
    for accepted in on_sendgrid.accepted:
        [address] = accepted.recipients
        delivery = deliveries[address]
        assert delivery.status == "sent" and delivery.message_id == accepted.message_id
        [personalization] = accepted.body["personalizations"]
        assert personalization["custom_args"]["delivery"] == str(delivery.id)
        assert accepted.body["categories"] == ["mailing", f"mailing-{mailing_id}"]
        assert not any(setting["enable"] for setting in accepted.body["tracking_settings"].values())
        [attachment] = accepted.body["attachments"]
        assert attachment["filename"].endswith(".pdf") and attachment["type"] == "application/pdf"
        assert base64.b64decode(attachment["content"]).startswith(b"%PDF")


def test_a_lost_answer_is_uncertain_and_a_rate_limit_is_retried_later(app, ctx, on_sendgrid) -> None:
    """Deliveries go out in id order: the first answer is lost, the second is a 429."""
    world = make_world(app)
    on_sendgrid.drop(times=1)
    on_sendgrid.rate_limit(times=1, reset_in=120)
    mailing_id = _send(app, world)

    deliveries = sorted(_deliveries(mailing_id).values(), key=lambda d: d.id)
    lost, limited, *rest = deliveries
    assert lost.status == "uncertain" and on_sendgrid.count(lost.email) == 1
    assert limited.status == "pending" and on_sendgrid.count(limited.email) == 0
    assert timedelta(seconds=100) < _aware(limited.due_at) - utcnow() < timedelta(seconds=125)
    # The 429 stopped the chunk: the rest wait with it, never tried (see test_backoff.py).
    assert [(d.status, d.attempts, d.due_at) for d in rest] == [("pending", 0, limited.due_at)] * len(rest)
    assert all(on_sendgrid.count(d.email) == 0 for d in rest)
    # Running the mailing's jobs again sends nothing twice: the uncertain one stays as it is.
    assert sending.send_chunk(mailing_id) == 0
    assert max(on_sendgrid.counts().values()) == 1
    assert db.session.get(Delivery, lost.id).status == "uncertain"
