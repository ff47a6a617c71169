"""SendGrid's events about alerts, posted signed to ``/webhooks/sendgrid``: each stored once and
matched to its alert delivery; deliveries move forward only; bounces and spam reports
suppress the subscriber, unsubscribes unsubscribe them."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from campaign.alerts import sending
from campaign.alerts.models import Alert, AlertDelivery, AlertText, Subscriber, Topic
from campaign.extensions import db
from campaign.mailings import tracking
from campaign.mailings.models import SendGridEvent
from tests.mailings.events import post

MESSAGE_ID = "batch-14c5d75ce93"


@pytest.fixture
def sent(ctx, subscriber) -> dict[str, AlertDelivery]:
    """An alert sent in one request to three subscribers: their deliveries by address."""
    for email in ("amina@example.org", "oneill@example.org", "wang@example.org"):
        subscriber(email=email)
    topic_ids = list(db.session.scalars(sa.select(Topic.id).where(Topic.key == "letters")))
    alert = Alert(language="en", topic_ids=topic_ids, status="sending")
    alert.texts.append(AlertText(language="en", subject="A letter", body="Read it."))
    db.session.add(alert)
    db.session.commit()
    sending.make_deliveries(alert)
    db.session.execute(
        sa.update(AlertDelivery)
        .where(AlertDelivery.alert_id == alert.id)
        .values(status="sent", message_id=MESSAGE_ID, lease_owner="worker")
    )
    db.session.commit()
    return deliveries(alert.id)


def deliveries(alert_id: int | None = None) -> dict[str, AlertDelivery]:
    db.session.expire_all()
    query = sa.select(AlertDelivery)
    if alert_id is not None:
        query = query.where(AlertDelivery.alert_id == alert_id)
    return {row.email: row for row in db.session.scalars(query)}


def subscriber_of(delivery: AlertDelivery) -> Subscriber:
    db.session.expire_all()
    return db.session.get(Subscriber, delivery.subscriber_id)


def alert_event(delivery: AlertDelivery, kind: str, /, *, custom_args: bool = True, **fields: Any) -> dict[str, Any]:
    """An event about ``delivery`` as SendGrid posts it (custom args at the top level)."""
    body: dict[str, Any] = {
        "email": delivery.email,
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": secrets.token_urlsafe(16),
        "sg_message_id": f"{delivery.message_id or 'none'}.filterdrecv-5bf99c48d-rncgb-1-5B8FEC4E-2.0",
        "category": ["alert", f"alert-{delivery.alert_id}"],
    }
    if custom_args:
        body |= {"alert": str(delivery.alert_id), "alert_delivery": str(delivery.id)}
    return body | fields


def outcomes() -> Counter[str]:
    db.session.expire_all()
    return Counter(db.session.scalars(sa.select(SendGridEvent.outcome)))


def test_delivered_moves_the_delivery_and_names_it_on_the_stored_event(client, key, sent) -> None:
    amina = sent["amina@example.org"]
    response = post(client, key, [alert_event(amina, "processed"), alert_event(amina, "delivered")])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["applied"] == 1  # processed changes nothing on a sent delivery
    assert deliveries()["amina@example.org"].status == "delivered"
    stored = db.session.scalars(sa.select(SendGridEvent).order_by(SendGridEvent.id)).all()
    assert [(row.event, row.alert_delivery_id, row.delivery_id) for row in stored] == [
        ("processed", amina.id, None),
        ("delivered", amina.id, None),
    ]


def test_processed_settles_an_uncertain_delivery(client, key, sent) -> None:
    wang = sent["wang@example.org"]
    db.session.execute(sa.update(AlertDelivery).where(AlertDelivery.id == wang.id).values(status="uncertain"))
    db.session.commit()
    post(client, key, [alert_event(wang, "processed")])
    assert deliveries()["wang@example.org"].status == "sent"


def test_a_bounce_suppresses_the_subscriber_and_a_blocked_one_does_not(client, key, sent) -> None:
    oneill, wang = sent["oneill@example.org"], sent["wang@example.org"]
    post(
        client,
        key,
        [
            alert_event(oneill, "bounce", type="bounce", status="5.1.1", reason="550 no such user"),
            alert_event(wang, "bounce", type="blocked", status="4.0.0", reason="try later"),
        ],
    )
    rows = deliveries()
    assert rows["oneill@example.org"].status == "bounced"
    assert "550 no such user" in rows["oneill@example.org"].reason
    assert subscriber_of(oneill).suppressed_at is not None
    assert "550 no such user" in subscriber_of(oneill).suppressed_reason
    assert subscriber_of(wang).suppressed_at is None
    assert subscriber_of(wang).status == "confirmed"


def test_a_spam_report_suppresses_the_subscriber(client, key, sent) -> None:
    amina = sent["amina@example.org"]
    post(client, key, [alert_event(amina, "spamreport")])
    assert subscriber_of(amina).suppressed_at is not None
    assert "spam" in subscriber_of(amina).suppressed_reason
    assert deliveries()["amina@example.org"].status == "delivered"


@pytest.mark.parametrize("kind", ["unsubscribe", "group_unsubscribe"])
def test_an_unsubscribe_unsubscribes_the_subscriber(client, key, sent, kind) -> None:
    amina = sent["amina@example.org"]
    post(client, key, [alert_event(amina, kind)])
    left = subscriber_of(amina)
    assert (left.status, left.unsubscribed_via) == ("unsubscribed", "sendgrid")


def test_the_same_event_posted_twice_is_applied_once(client, key, sent) -> None:
    oneill = sent["oneill@example.org"]
    bounce = alert_event(oneill, "bounce", type="bounce", reason="550 no such user")
    first = post(client, key, [bounce]).get_json()
    second = post(client, key, [bounce, bounce]).get_json()
    assert (first["applied"], first["duplicates"]) == (1, 0)
    assert (second["applied"], second["duplicates"], second["stored"]) == (0, 2, 0)
    assert outcomes() == Counter({"applied": 1})


def test_a_delivery_never_moves_backwards(client, key, sent) -> None:
    oneill = sent["oneill@example.org"]
    post(client, key, [alert_event(oneill, "bounce", type="bounce", reason="550")])
    post(client, key, [alert_event(oneill, "delivered"), alert_event(oneill, "processed")])
    assert deliveries()["oneill@example.org"].status == "bounced"
    assert outcomes() == Counter({"applied": 1, "recorded": 2})


def test_an_event_without_custom_args_is_matched_by_message_id_and_address(client, key, sent) -> None:
    wang = sent["wang@example.org"]
    post(client, key, [alert_event(wang, "delivered", custom_args=False)])
    rows = deliveries()
    assert rows["wang@example.org"].status == "delivered"
    assert rows["amina@example.org"].status == "sent"  # same request, another address


def test_an_event_naming_another_address_or_alert_matches_nothing(client, key, sent) -> None:
    amina = sent["amina@example.org"]
    post(
        client,
        key,
        [
            alert_event(amina, "bounce", email="someone@example.org"),
            alert_event(amina, "bounce", alert="999999"),
        ],
    )
    assert outcomes() == Counter({"unmatched": 2})
    assert deliveries()["amina@example.org"].status == "sent"
    assert subscriber_of(amina).suppressed_at is None


def test_an_event_that_outruns_the_send_waits_then_applies(client, key, sent) -> None:
    amina = sent["amina@example.org"]
    db.session.execute(sa.update(AlertDelivery).where(AlertDelivery.id == amina.id).values(status="sending"))
    db.session.commit()
    post(client, key, [alert_event(amina, "delivered")])
    assert outcomes() == Counter({"waiting": 1})
    assert deliveries()["amina@example.org"].status == "sending"

    db.session.execute(sa.update(AlertDelivery).where(AlertDelivery.id == amina.id).values(status="sent"))
    db.session.commit()
    assert tracking.apply_waiting() == 1
    assert deliveries()["amina@example.org"].status == "delivered"
    assert outcomes() == Counter({"applied": 1})
