"""Automatic alerts: a letter opens, a mailing of it is delivered, a meeting is near.  Each
fires one alert however often its trigger runs, and none when automatic alerts are off."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaign import queue
from campaign.alerts import triggers
from campaign.alerts.models import Alert, AlertDelivery, AlertKind
from campaign.auth.models import User
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import services as letters
from campaign.letters.models import Letter, Meeting
from campaign.letters.services import MeetingData
from campaign.mailings import services as mailings
from campaign.mailings.models import Mailing
from campaign.queue import Job
from tests.letters.publishing import TRANSLATIONS, publish
from tests.mailings.world import approved, make_world


def _alerts(kind: str | None = None) -> list[Alert]:
    query = sa.select(Alert).order_by(Alert.id)
    if kind:
        query = query.where(Alert.kind == kind)
    return list(db.session.scalars(query))


def _trigger_jobs() -> list[Job]:
    return list(db.session.scalars(sa.select(Job).where(Job.kind == triggers.TRIGGER_JOB).order_by(Job.id)))


def _run_due() -> None:
    while queue.run_due():
        pass


def _meeting(days: float, title: str = "Ministerial meeting") -> MeetingData:
    starts = (utcnow() + timedelta(days=days)).replace(tzinfo=None, second=0, microsecond=0)
    return MeetingData(title=title, location="Geneva", starts_at_local=starts, timezone="UTC")


def test_a_letter_opening_alerts_its_followers_in_their_language(app, ctx, subscriber, outbox):
    french = subscriber(language="fr", topics=["letters"])
    russian = subscriber(language="ru", topics=["letters"])
    subscriber(language="en", topics=["meetings"])
    published = publish(app, translations={"fr": TRANSLATIONS["fr"], "ar": TRANSLATIONS["ar"]})
    assert triggers.letters_opened() == 1  # opened outside a request: the workers' sweep finds it
    (alert,) = _alerts()
    assert (alert.kind, alert.status, alert.trigger_key) == (
        "letter_opened",
        "finished",
        f"letter_opened:{published.id}",
    )
    assert alert.letter_id == published.id and alert.created_by_id is None
    assert sorted(text.language for text in alert.texts) == ["ar", "en", "fr"]
    fr = alert.text_for("fr")
    assert fr.subject == f"Une nouvelle lettre ouverte est ouverte aux signatures: {TRANSLATIONS['fr'].title}"
    assert f"(http://localhost/letters/{published.slug}?lang=fr)" in fr.body
    received = {m["To"].addresses[0].addr_spec: m for m in outbox.messages()}
    assert set(received) == {french.email, russian.email}
    assert received[french.email]["Subject"] == fr.subject
    assert received[russian.email]["Subject"].startswith("A new open letter is open for signatures: ")  # no Russian
    assert received[russian.email]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_closing_and_reopening_a_letter_alerts_once(app, ctx, subscriber, outbox):
    subscriber(topics=["letters"])
    published = publish(app)
    assert triggers.letters_opened() == 1
    letter = db.session.get(Letter, published.id)
    letters.transition(letter, "closed")
    letters.transition(letter, "open")
    db.session.commit()
    assert triggers.letters_opened() == 0
    assert len(_alerts()) == 1
    assert len(outbox.messages()) == 1


def test_a_trigger_that_runs_twice_makes_one_alert(app, ctx, subscriber, outbox):
    subscriber(topics=["letters"])
    published = publish(app)
    first = triggers._schedule(AlertKind.LETTER_OPENED, published.id)
    second = triggers._schedule(AlertKind.LETTER_OPENED, published.id)
    db.session.commit()
    queue.dispatch(first, second)
    (alert,) = _alerts()
    assert [row.message for row in _trigger_jobs()] == [f"alert {alert.id}", "no alert"]
    assert triggers.letter_opened(db.session.get(Letter, published.id)) is None
    assert triggers.letters_opened() == 0
    assert len(_alerts()) == 1
    assert len(outbox.messages()) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AlertDelivery)) == 1


def test_a_letter_under_embargo_is_announced_when_it_ends(app, ctx, subscriber, outbox):
    subscriber(topics=["letters"])
    ends = utcnow() + timedelta(days=2)
    published = publish(app, embargo_until=ends)
    assert triggers.letters_opened() == 0
    letter = db.session.get(Letter, published.id)
    assert triggers.letter_opened(letter) is None
    (row,) = _trigger_jobs()
    assert abs(row.due_at - ends) < timedelta(seconds=1) and row.status == "queued"
    letter.embargo_until = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert triggers.letters_opened() == 1
    db.session.execute(sa.update(Job).where(Job.status == "queued").values(due_at=utcnow()))
    db.session.commit()
    _run_due()
    assert [alert.kind for alert in _alerts()] == ["letter_opened"]
    assert len(outbox.messages()) == 1


def test_a_letter_opened_long_ago_is_not_announced_by_the_sweep(app, ctx, subscriber):
    subscriber(topics=["letters"])
    published = publish(app)
    db.session.get(Letter, published.id).published_at = utcnow() - triggers.RECENT - timedelta(minutes=1)
    db.session.commit()
    assert triggers.letters_opened() == 0


def test_with_no_follower_the_alert_is_recorded_sent_to_no_one(app, ctx, outbox):
    publish(app)
    triggers.letters_opened()
    (alert,) = _alerts()
    assert alert.status == "finished" and alert.finished_at is not None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AlertDelivery)) == 0
    assert outbox.messages() == []


def test_opening_a_letter_on_its_page_alerts_once_the_move_is_committed(app, client, auth, coordinator, subscriber,
                                                                        outbox):  # fmt: skip
    follower = subscriber(topics=["letters"])
    published = publish(app, status="review")
    auth.login(coordinator)
    response = client.post(f"/admin/letters/{published.slug}/transition/open")
    assert response.status_code == 302
    with app.app_context():
        (alert,) = _alerts()
        assert (alert.kind, alert.status) == ("letter_opened", "finished")
        assert db.session.scalar(sa.select(Job.status).where(Job.kind == triggers.TRIGGER_JOB)) == "finished"
    assert [m["To"].addresses[0].addr_spec for m in outbox.messages()] == [follower.email]


def test_a_failing_trigger_does_not_stop_the_letter_opening(app, client, auth, coordinator, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the queue is down")

    monkeypatch.setattr(triggers, "_schedule", broken)
    published = publish(app, status="review")
    auth.login(coordinator)
    assert client.post(f"/admin/letters/{published.slug}/transition/open").status_code == 302
    with app.app_context():
        assert db.session.get(Letter, published.id).status == "open"
        assert _alerts() == []
        assert triggers.letters_opened() == 1  # the sweep makes up for it


def test_a_delivered_mailing_alerts_once(app, ctx, subscriber, outbox):
    follower = subscriber(language="fr", topics=["letters"])
    world = make_world(app)
    mailing_id = approved(app, world)
    mailings.request_send(db.session.get(Mailing, mailing_id), {}, actor=db.session.get(User, world.author.id))
    db.session.commit()
    _run_due()
    assert db.session.get(Mailing, mailing_id).status == "finished"
    (alert,) = _alerts("mailing_delivered")
    assert (alert.mailing_id, alert.letter_id) == (mailing_id, world.letter_id)
    assert alert.trigger_key == f"mailing_delivered:{mailing_id}"
    to_follower = [m for m in outbox.messages() if m["To"].addresses[0].addr_spec == follower.email]
    assert [m["Subject"] for m in to_follower] == [alert.text_for("fr").subject]
    assert to_follower[0]["Subject"].startswith("Notre lettre ouverte a été remise")
    assert triggers.mailing_delivered(db.session.get(Mailing, mailing_id)) is None
    triggers.on_mailing_finished(mailing_id)
    _run_due()
    assert len(_alerts("mailing_delivered")) == 1


def test_a_cancelled_mailing_alerts_no_one(app, ctx, subscriber):
    subscriber(topics=["letters"])
    world = make_world(app)
    mailing = db.session.get(Mailing, approved(app, world))
    mailings.cancel(mailing, db.session.get(User, world.author.id))
    db.session.commit()
    assert triggers.mailing_delivered(mailing) is None
    assert _alerts("mailing_delivered") == []


def test_a_meeting_within_the_days_set_alerts_its_followers_once(app, ctx, subscriber, outbox):
    follower = subscriber(language="en", topics=["meetings"])
    subscriber(language="en", topics=["letters"])
    published = publish(app, meeting=_meeting(2), translations={"fr": TRANSLATIONS["fr"]})
    assert triggers.meetings_due() == 1
    assert triggers.meetings_due() == 0
    (alert,) = _alerts("meeting_soon")
    assert alert.meeting_id == published.meeting_id and alert.trigger_key == f"meeting_soon:{published.meeting_id}"
    assert sorted(text.language for text in alert.texts) == ["en", "fr"]
    assert "Ministerial meeting" in alert.text_for("en").body
    assert f"http://localhost/letters/{published.slug}" in alert.text_for("en").body
    (message,) = outbox.messages()
    assert message["To"].addresses[0].addr_spec == follower.email
    assert message["Subject"] == "A meeting we wrote to is coming up: Ministerial meeting"


@pytest.mark.parametrize("days", [-1, 5])
def test_no_alert_for_a_meeting_past_or_further_off(app, ctx, subscriber, days):
    subscriber(topics=["meetings"])
    publish(app, meeting=_meeting(days))
    assert triggers.meetings_due() == 0
    assert _alerts("meeting_soon") == []


def test_the_days_before_a_meeting_are_a_setting(app, ctx, subscriber, monkeypatch):
    subscriber(topics=["meetings"])
    publish(app, meeting=_meeting(5))
    monkeypatch.setitem(app.config, "ALERT_MEETING_DAYS", 6)
    assert triggers.meetings_due() == 1


def test_no_alert_for_a_meeting_without_a_public_letter(app, ctx, subscriber):
    subscriber(topics=["meetings"])
    letters.save_meeting(_meeting(1, "A meeting nobody wrote to"))
    publish(app, status="review", meeting=_meeting(1, "A meeting with a letter in review"))
    db.session.commit()
    assert triggers.meetings_due() == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Meeting)) == 2


def test_automatic_alerts_can_be_switched_off(app, ctx, subscriber, monkeypatch, outbox):
    monkeypatch.setitem(app.config, "ALERTS_AUTOMATIC", False)
    subscriber(topics=["letters", "meetings"])
    published = publish(app, meeting=_meeting(1))
    assert triggers.letters_opened() == 0
    assert triggers.meetings_due() == 0
    assert triggers.letter_opened(db.session.get(Letter, published.id)) is None
    assert _alerts() == []
    assert outbox.messages() == []


def test_the_days_before_a_meeting_are_at_least_one():
    from config import ConfigurationError, TestingConfig

    with pytest.raises(ConfigurationError, match="ALERT_MEETING_DAYS"):
        TestingConfig({"ALERT_MEETING_DAYS": 0}).validate()
