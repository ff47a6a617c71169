"""``/api/v1/subscribers``: coordinators list, read and delete subscribers; nobody adds one through it."""

from __future__ import annotations

import sqlalchemy as sa

from campaign.alerts.models import Subscriber
from campaign.audit import AuditEvent
from campaign.extensions import db


def test_the_list_pages_and_filters(client, coordinator, bearer, subscriber, topic):
    headers = bearer(coordinator)
    sudan = topic("Sudan", kind="country", country="SD")
    subscriber("amina@example.org", name="Amina Diallo", language="fr", topics=["letters", sudan])
    subscriber("tom@example.org", name="Tom", language="en")
    subscriber("li@example.org", language="zh", status="pending")

    body = client.get("/api/v1/subscribers", headers=headers).get_json()
    assert body["total"] == 3 and body["page"] == 1 and body["per_page"] == 50
    first = next(item for item in body["items"] if item["email"] == "amina@example.org")
    assert first["name"] == "Amina Diallo" and first["language"] == "fr" and first["languages_spoken"] == ["fr"]
    assert first["status"] == "confirmed" and first["receives_alerts"] is True
    assert [t["key"] for t in first["topics"]] == ["letters", "country-sd"]
    assert first["consent"]["text"] and first["consent"]["version"] and first["consent"]["given_date"]
    assert {"created_date", "modified_date", "confirmed_date"} <= first.keys()

    def emails(**query: str) -> list[str]:
        found = client.get("/api/v1/subscribers", query_string=query, headers=headers).get_json()
        return sorted(item["email"] for item in found["items"])

    assert emails(status="pending") == ["li@example.org"]
    assert emails(topic="country-sd") == ["amina@example.org"]
    assert emails(topic=str(sudan.id)) == ["amina@example.org"]
    assert emails(topic="no-such-topic") == []
    assert emails(language="en") == ["tom@example.org"]
    assert emails(q="DIALLO") == ["amina@example.org"]
    assert client.get("/api/v1/subscribers?per_page=1&page=2", headers=headers).get_json()["total"] == 3


def test_bad_filters_are_problems(client, coordinator, bearer):
    headers = bearer(coordinator)
    for query in ("status=asleep", "language=xx", "per_page=1000", "q=a%0Ab"):
        response = client.get(f"/api/v1/subscribers?{query}", headers=headers)
        assert response.status_code == 422 and response.mimetype == "application/problem+json", query


def test_one_subscriber_and_its_deletion(app, client, coordinator, bearer, subscriber):
    headers = bearer(coordinator)
    someone = subscriber("amina@example.org")
    one = client.get(f"/api/v1/subscribers/{someone.id}", headers=headers)
    assert one.status_code == 200 and one.get_json()["email"] == "amina@example.org"
    assert client.delete(f"/api/v1/subscribers/{someone.id}", headers=headers).status_code == 204
    missing = client.get(f"/api/v1/subscribers/{someone.id}", headers=headers)
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    assert client.delete(f"/api/v1/subscribers/{someone.id}", headers=headers).status_code == 404
    with app.app_context():
        assert db.session.get(Subscriber, someone.id) is None
        logged = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "subscribers.delete"))
        assert logged.object_id == str(someone.id) and "amina" not in logged.summary


def test_members_and_anonymous_callers_are_refused(client, member, bearer, subscriber):
    subscriber()
    assert client.get("/api/v1/subscribers").status_code == 401
    assert client.get("/api/v1/subscribers", headers=bearer(member)).status_code == 403


def test_the_api_cannot_add_subscribers(client, coordinator, bearer):
    response = client.post("/api/v1/subscribers", headers=bearer(coordinator), json={"email": "x@example.org"})
    assert response.status_code == 405
