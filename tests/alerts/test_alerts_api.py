"""``/api/v1/alerts``: writing an alert (and sending it), validation as problem details, roles."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from campaign.alerts.models import Alert, AlertDelivery
from campaign.extensions import db

PROBLEM = "application/problem+json"


def body(**changes: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "language": "en",
        "subject": "The letter is open",
        "body": "Please **sign** it.",
        "translations": [{"language": "fr", "subject": "La lettre est ouverte", "body": "Merci de la signer."}],
        "topics": ["letters"],
    }
    payload.update(changes)
    return payload


@pytest.fixture
def headers(bearer, coordinator):
    return bearer(coordinator)


def test_post_writes_a_draft_that_get_reads_back(client, headers):
    response = client.post("/api/v1/alerts", json=body(languages=["fr", "en"]), headers=headers)
    assert response.status_code == 201, response.get_json()
    made = response.get_json()
    assert made["status"] == "draft" and made["kind"] == "manual" and made["topics"] == ["letters"]
    assert [text["language"] for text in made["texts"]] == ["en", "fr"]
    assert made["languages"] == ["en", "fr"] and made["progress"]["total"] == 0
    read = client.get(f"/api/v1/alerts/{made['id']}", headers=headers).get_json()
    assert read["texts"] == made["texts"] and read["created_by"] == made["created_by"]
    listed = client.get("/api/v1/alerts?status=draft", headers=headers).get_json()
    assert [item["id"] for item in listed["items"]] == [made["id"]] and listed["total"] == 1
    assert client.get("/api/v1/alerts?status=finished", headers=headers).get_json()["items"] == []


def test_post_with_send_sends_it_at_once(app, client, headers, subscriber, outbox):
    english = subscriber(language="en", topics=["letters"])
    french = subscriber(language="fr", topics=["letters"])
    subscriber(language="en", topics=["meetings"])
    response = client.post("/api/v1/alerts", json=body(send=True), headers=headers)
    assert response.status_code == 202, response.get_json()
    made = response.get_json()
    assert made["status"] == "finished" and made["progress"]["counts"]["sent"] == 2
    subjects = {m["To"]: m["Subject"] for m in outbox.messages()}
    assert subjects == {english.email: "The letter is open", french.email: "La lettre est ouverte"}


def test_a_draft_is_sent_once_and_cancelled_alerts_refuse_more(app, client, headers, subscriber, outbox):
    subscriber(topics=["letters"])
    alert_id = client.post("/api/v1/alerts", json=body(), headers=headers).get_json()["id"]
    later = client.post("/api/v1/alerts", json=body(), headers=headers).get_json()["id"]
    sent = client.post(f"/api/v1/alerts/{alert_id}/send", headers=headers)
    assert sent.status_code == 202 and sent.get_json()["progress"]["counts"]["sent"] == 1
    again = client.post(f"/api/v1/alerts/{alert_id}/send", headers=headers)
    assert again.status_code == 409 and again.mimetype == PROBLEM
    assert "Only a draft can be sent" in again.get_json()["detail"]
    scheduled = client.post(f"/api/v1/alerts/{later}/send", json={"at": "2999-01-01T09:00:00+01:00"}, headers=headers)
    assert scheduled.status_code == 202 and scheduled.get_json()["status"] == "scheduled"
    cancelled = client.post(f"/api/v1/alerts/{later}/cancel", headers=headers)
    assert cancelled.status_code == 200 and cancelled.get_json()["progress"]["counts"]["cancelled"] == 1
    assert client.post(f"/api/v1/alerts/{later}/cancel", headers=headers).status_code == 409
    assert len(outbox.messages()) == 1


def test_sending_to_no_one_keeps_the_draft_and_says_why(client, headers):
    response = client.post("/api/v1/alerts", json=body(send=True), headers=headers)
    assert response.status_code == 409 and response.mimetype == PROBLEM
    assert "saved as a draft but not sent" in response.get_json()["detail"]
    assert "no one to send to" in response.get_json()["detail"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"subject": "Two\nlines"}, "subject"),
        ({"subject": ""}, "subject"),
        ({"body": ""}, "body"),
        ({"language": "de"}, "language"),
        ({"topics": []}, "topics"),
        ({"topics": ["no-such-topic"]}, "topics"),
        ({"languages": ["xx"]}, "languages"),
        ({"send": True, "send_at": "2999-01-01T00:00:00Z"}, "send_at"),
        ({"send_at": "2999-01-01T00:00:00"}, "send_at"),
    ],
)
def test_unusable_input_is_a_422_naming_the_field(app, client, headers, changes, field):
    response = client.post("/api/v1/alerts", json=body(**changes), headers=headers)
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert field in response.get_json()["errors"]["json"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Alert)) == 0


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"body": "Dear [%name_text%],"}, "reserved"),
        ({"translations": [{"language": "en", "subject": "Again", "body": "Again"}]}, "original's language"),
    ],
)
def test_what_the_rules_refuse_is_a_422_with_the_reason(client, headers, changes, detail):
    response = client.post("/api/v1/alerts", json=body(**changes), headers=headers)
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert detail in response.get_json()["detail"]


def test_only_coordinators_and_admins_use_it(client, bearer, member, admin):
    assert client.post("/api/v1/alerts", json=body()).status_code == 401
    refused = client.post("/api/v1/alerts", json=body(), headers=bearer(member))
    assert refused.status_code == 403 and refused.mimetype == PROBLEM
    assert client.get("/api/v1/alerts", headers=bearer(member)).status_code == 403
    assert client.post("/api/v1/alerts", json=body(), headers=bearer(admin)).status_code == 201


def test_unknown_alerts_are_404(client, headers):
    assert client.get("/api/v1/alerts/999999", headers=headers).status_code == 404
    assert client.post("/api/v1/alerts/999999/send", headers=headers).status_code == 404


def test_deliveries_are_counted_per_state(app, client, headers, subscriber):
    subscriber(topics=["letters"])
    subscriber(topics=["letters"], suppressed=True)
    made = client.post("/api/v1/alerts", json=body(send=True), headers=headers).get_json()
    counts = client.get(f"/api/v1/alerts/{made['id']}", headers=headers).get_json()["progress"]["counts"]
    assert (counts["sent"], counts["suppressed"]) == (1, 1)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AlertDelivery)) == 2
