"""``/api/v1/mailings/{id}/deliveries``: each contact's delivery with its history, SendGrid's events included."""

from __future__ import annotations

import pytest

from campaign.extensions import db
from tests.mailings.events import FakeSendGrid, SigningKey, event, post
from tests.mailings.world import World, draft, make_world

URL = "/api/v1/mailings"


@pytest.fixture
def world(app, database) -> World:
    return make_world(app, suppressed=1)


@pytest.fixture
def author(world, bearer) -> dict[str, str]:
    return bearer(world.author)


@pytest.fixture
def sent(app, client, world, author, bearer, monkeypatch) -> int:
    """A mailing sent through an offline SendGrid to the world's six contacts (one suppressed)."""
    monkeypatch.setitem(app.extensions, "mail_backend", FakeSendGrid())
    mailing_id = draft(app, world)
    assert client.post(f"{URL}/{mailing_id}/approve", headers=bearer(world.approver)).status_code == 200
    assert client.post(f"{URL}/{mailing_id}/send", headers=author).status_code == 202
    return mailing_id


def test_a_mailings_deliveries_page_by_page_with_their_history(client, world, author, sent) -> None:
    response = client.get(f"{URL}/{sent}/deliveries?per_page=4", headers=author)
    assert response.status_code == 200, response.get_data(as_text=True)
    first = response.get_json()
    assert (first["page"], first["per_page"], first["total"], len(first["items"])) == (1, 4, 6, 4)
    second = client.get(f"{URL}/{sent}/deliveries?per_page=4&page=2", headers=author).get_json()
    items = first["items"] + second["items"]
    assert [item["id"] for item in items] == sorted(item["id"] for item in items)
    assert {item["contact"] for item in items} == set(world.contact_ids)
    by_status = {item["email"]: item["status"] for item in items}
    assert by_status.pop("oneill@mission.example") == "suppressed"
    assert set(by_status.values()) == {"sent"}
    one = next(item for item in items if item["status"] == "sent")
    assert one["mailing"] == sent and one["message_id"] and one["sent_date"] and one["attempts"] == 1
    assert [(e["kind"], e["detail"]) for e in one["events"]] == [("sent", f"message id {one['message_id']}")]


def test_filter_by_status(client, author, sent) -> None:
    suppressed = client.get(f"{URL}/{sent}/deliveries?status=suppressed", headers=author).get_json()
    assert suppressed["total"] == 1 and suppressed["items"][0]["reason"].startswith("Bounced")
    assert client.get(f"{URL}/{sent}/deliveries?status=bounced", headers=author).get_json()["total"] == 0
    refused = client.get(f"{URL}/{sent}/deliveries?status=lost", headers=author)
    assert refused.status_code == 422 and refused.content_type == "application/problem+json"


def test_one_delivery_shows_sendgrids_events(app, client, world, author, sent, monkeypatch) -> None:
    key = SigningKey()
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", key.public)
    listing = client.get(f"{URL}/{sent}/deliveries?status=sent&per_page=1", headers=author).get_json()
    delivery_id = listing["items"][0]["id"]
    with app.app_context():
        from campaign.mailings.models import Delivery

        delivery = db.session.get(Delivery, delivery_id)
        bounce = event(delivery, "bounce", type="bounce", status="5.1.1", reason="550 no such user")
    assert post(client, key, [event(delivery, "processed"), bounce]).status_code == 200

    response = client.get(f"{URL}/{sent}/deliveries/{delivery_id}", headers=author)
    assert response.status_code == 200
    body = response.get_json()
    assert (body["status"], body["reason"]) == ("bounced", "bounced: 5.1.1 550 no such user")
    assert [(e["kind"], e["source"]) for e in body["events"]] == [
        ("sent", body["events"][0]["source"]), ("processed", "sendgrid"), ("bounce", "sendgrid"),
    ]  # fmt: skip
    bounced = body["events"][-1]
    assert bounced["detail"].startswith("sent → bounced") and bounced["data"]["sg_event_id"] == bounce["sg_event_id"]
    assert bounced["data"]["reason"] == "550 no such user" and bounced["created_date"]
    filtered = client.get(f"{URL}/{sent}/deliveries?status=bounced", headers=author).get_json()
    assert [item["id"] for item in filtered["items"]] == [delivery_id]


def test_unknown_deliveries_and_other_mailings_deliveries_are_404(app, client, world, author, sent) -> None:
    other = draft(app, world, subject="Another")
    listing = client.get(f"{URL}/{sent}/deliveries", headers=author).get_json()
    delivery_id = listing["items"][0]["id"]
    for url in (f"{URL}/{other}/deliveries/{delivery_id}", f"{URL}/{sent}/deliveries/999999",
                f"{URL}/999999/deliveries", f"{URL}/999999/deliveries/{delivery_id}"):  # fmt: skip
        response = client.get(url, headers=author)
        assert response.status_code == 404 and response.content_type == "application/problem+json", url
    assert client.get(f"{URL}/{other}/deliveries", headers=author).get_json()["total"] == 0


def test_coordinators_and_admins_only(client, world, sent, bearer, make_account) -> None:
    listing, one = f"{URL}/{sent}/deliveries", f"{URL}/{sent}/deliveries/1"
    member = bearer(make_account("member"))
    admin = bearer(make_account("admin"))
    for url in (listing, one):
        assert client.get(url).status_code == 401
        assert client.get(url, headers=member).status_code == 403
    assert client.get(listing, headers=admin).get_json()["total"] == 6


def test_the_document_describes_the_deliveries(client) -> None:
    spec = client.get(f"{URL[: -len('/mailings')]}/openapi.json").get_json()
    assert {"/api/v1/mailings/{id}/deliveries", "/api/v1/mailings/{id}/deliveries/{delivery_id}"} <= set(spec["paths"])
    parameters = spec["paths"]["/api/v1/mailings/{id}/deliveries"]["get"]["parameters"]
    assert {"status", "page", "per_page"} <= {p["name"] for p in parameters}
