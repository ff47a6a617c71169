"""Alerts as coordinators write them: validation, translations, editing rules, test sends,
sending once to the audience, and cancelling."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaign.alerts import services
from campaign.alerts.models import Alert, AlertDelivery, Topic
from campaign.alerts.services import AlertData, AlertError, AlertTextData
from campaign.audit import AuditEvent
from campaign.auth.models import User
from campaign.db import utcnow
from campaign.extensions import db


def _topic_id(key: str) -> int:
    return db.session.scalar(sa.select(Topic.id).where(Topic.key == key))


def _data(**overrides) -> AlertData:
    values = {
        "original": AlertTextData("en", "The letter is open", "Please **read** it."),
        "topic_ids": [_topic_id("letters")],
        "translations": [AlertTextData("fr", "La lettre est ouverte", "Merci de la *lire*.")],
        "languages": [],
    }
    values.update(overrides)
    return AlertData(**values)


@pytest.fixture
def author(ctx, coordinator) -> User:
    return db.session.get(User, coordinator.id)


def test_create_keeps_the_original_and_its_translations(author):
    alert = services.create_alert(_data(languages=["fr", "en"]), actor=author)
    db.session.commit()
    assert alert.status == "draft" and alert.kind == "manual"
    assert {(t.language, t.subject) for t in alert.texts} == {
        ("en", "The letter is open"),
        ("fr", "La lettre est ouverte"),
    }
    assert alert.languages == ["en", "fr"]  # in the UN's order
    assert alert.created_by_id == author.id
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "alerts.create"))
    assert event.object_id == str(alert.id) and event.actor_id == author.id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"original": AlertTextData("en", "Two\nlines", "Body")}, "single line"),
        ({"original": AlertTextData("en", "Two\u2028lines", "Body")}, "single line"),
        ({"original": AlertTextData("en", "   ", "Body")}, "subject of the original is required"),
        ({"original": AlertTextData("en", "x" * 301, "Body")}, "at most 300"),
        ({"original": AlertTextData("en", "Subject", "")}, "text of the original is required"),
        ({"original": AlertTextData("en", "Subject", "x" * 20_001)}, "at most 20,000"),
        ({"original": AlertTextData("en", "Subject", "Hello [%name_html%]")}, "reserved"),
        ({"original": AlertTextData("en", "[%unsubscribe_text%]", "Body")}, "reserved"),
        ({"original": AlertTextData("de", "Subject", "Body")}, "language of the original"),
        ({"translations": [AlertTextData("en", "Again", "Body")]}, "original's language"),
        ({"translations": [AlertTextData("fr", "", "Corps")]}, "subject of the Français translation"),
        ({"translations": [AlertTextData("fr", "A", "B"), AlertTextData("fr", "C", "D")]}, "given twice"),
        ({"topic_ids": []}, "at least one topic"),
        ({"topic_ids": [999_999]}, "among those offered"),
        ({"languages": ["de"]}, "Languages must"),
    ],
)
def test_what_cannot_be_sent_is_refused_with_the_reason(author, change, message):
    with pytest.raises(AlertError, match=message):
        services.create_alert(_data(**change), actor=author)


def test_a_retired_topic_is_refused(author, topic):
    retired = topic("Old situation", active=False)
    with pytest.raises(AlertError, match="among those offered"):
        services.create_alert(_data(topic_ids=[retired.id]), actor=author)


def test_editing_a_draft_replaces_texts_and_drops_emptied_translations(author):
    alert = services.create_alert(_data(), actor=author)
    db.session.commit()
    changed = services.update_alert(
        alert,
        _data(translations=[AlertTextData("es", "La carta", "Texto")], topic_ids=[_topic_id("meetings")]),
        actor=author,
    )
    db.session.commit()
    assert changed
    assert sorted(t.language for t in alert.texts) == ["en", "es"]
    assert alert.topic_ids == [_topic_id("meetings")]
    assert not services.update_alert(alert, _data(translations=[AlertTextData("es", "La carta", "Texto")],
                                                  topic_ids=[_topic_id("meetings")]), actor=author)  # fmt: skip


def test_only_drafts_change(author, subscriber):
    subscriber(topics=["letters"])
    alert = services.create_alert(_data(), actor=author)
    db.session.commit()
    services.request_send(alert, author)
    with pytest.raises(AlertError, match="can no longer be changed"):
        services.update_alert(alert, _data(original=AlertTextData("en", "Changed", "Body")), actor=author)


def test_test_send_reaches_the_coordinator_with_the_one_click_headers(author, outbox):
    alert = services.create_alert(_data(), actor=author)
    db.session.commit()
    row = services.test_send(alert, author, "fr")
    db.session.commit()
    from campaign import queue

    queue.dispatch(row)
    message = outbox.only()
    assert message["To"] == author.email
    assert message["Subject"] == "[Test] La lettre est ouverte"
    assert message["List-Unsubscribe"].startswith("<http://localhost/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Merci de la" in message.get_body(preferencelist=("plain",)).get_content()
    assert db.session.scalar(sa.select(AuditEvent.id).where(AuditEvent.action == "alerts.test")) is not None


def test_the_unsubscribe_link_of_a_test_unsubscribes_no_one(author):
    from campaign.alerts import tokens

    alert = services.create_alert(_data(), actor=author)
    message = services.preview(alert, "en")
    token = message.headers["List-Unsubscribe"].strip("<>").rsplit("/", 1)[1]
    assert tokens.load_subscriber(token, "unsubscribe") is None


def test_audience_counts_by_language_and_suppressed_apart(author, subscriber):
    subscriber(language="en", topics=["letters"])
    subscriber(language="fr", topics=["letters", "meetings"])
    subscriber(language="fr", topics=["letters"], suppressed=True)
    subscriber(language="ru", topics=["letters"])  # no Russian text, and no language chosen: not in it
    subscriber(language="en", topics=["meetings"])  # another topic
    subscriber(language="en", topics=["letters"], status="pending")
    subscriber(language="en", topics=["letters"], status="unsubscribed")
    alert = services.create_alert(_data(), actor=author)
    audience = services.audience_count(alert)
    assert audience.by_language == {"en": 1, "fr": 1}
    assert audience.suppressed == 1
    alert.languages = ["en", "fr", "ru"]
    assert services.audience_count(alert).by_language == {"en": 1, "fr": 1, "ru": 1}


def test_sending_reaches_each_subscriber_once_in_their_language(author, subscriber, outbox):
    english = subscriber(language="en", topics=["letters"], name="Ann O'Neill")
    french = subscriber(language="fr", topics=["letters"])
    subscriber(language="fr", topics=["letters"], status="pending")
    alert = services.create_alert(_data(), actor=author)
    db.session.commit()
    made = services.request_send(alert, author)
    assert made == 2
    received = {m["To"]: m for m in outbox.messages()}
    assert set(received) == {english.email, french.email}
    assert received[french.email]["Subject"] == "La lettre est ouverte"
    assert "Hello Ann O'Neill," in received[english.email].get_body(preferencelist=("plain",)).get_content()
    for message in received.values():
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    db.session.refresh(alert)
    assert alert.status == "finished" and alert.send_requested_by_id == author.id
    with pytest.raises(AlertError, match="Only a draft can be sent"):
        services.request_send(alert, author)
    assert len(outbox.messages()) == 2


def test_sending_to_no_one_is_refused(author, subscriber):
    subscriber(language="en", topics=["meetings"])
    alert = services.create_alert(_data(), actor=author)
    with pytest.raises(AlertError, match="no one to send to"):
        services.request_send(alert, author)
    assert alert.status == "draft"


def test_a_later_send_waits_and_cancelling_it_records_every_delivery(author, subscriber, outbox):
    for _ in range(3):
        subscriber(language="en", topics=["letters"])
    alert = services.create_alert(_data(), actor=author)
    db.session.commit()
    services.request_send(alert, author, utcnow() + timedelta(hours=2))
    db.session.refresh(alert)
    assert alert.status == "scheduled"
    assert outbox.messages() == []
    cancelled = services.cancel(alert, author)
    db.session.commit()
    assert cancelled == 3
    states = db.session.scalars(sa.select(AlertDelivery.status).where(AlertDelivery.alert_id == alert.id)).all()
    assert states == ["cancelled"] * 3
    reasons = set(db.session.scalars(sa.select(AlertDelivery.reason).where(AlertDelivery.alert_id == alert.id)))
    assert reasons == {f"cancelled by {author.email}"}
    with pytest.raises(AlertError, match="already cancelled"):
        services.cancel(alert, author)


def test_a_send_time_without_a_zone_is_refused(author, subscriber):
    subscriber(language="en", topics=["letters"])
    alert = services.create_alert(_data(), actor=author)
    with pytest.raises(AlertError, match="time zone"):
        services.request_send(alert, author, utcnow().replace(tzinfo=None))


def test_counts_by_language_report_each_state(author, subscriber):
    subscriber(language="en", topics=["letters"])
    subscriber(language="fr", topics=["letters"])
    subscriber(language="fr", topics=["letters"], suppressed=True)
    alert = services.create_alert(_data(), actor=author)
    db.session.commit()
    services.request_send(alert, author)
    counts = services.counts_by_language(db.session.get(Alert, alert.id))
    assert list(counts) == ["en", "fr"]
    assert counts["en"]["sent"] == 1
    assert (counts["fr"]["sent"], counts["fr"]["suppressed"]) == (1, 1)
