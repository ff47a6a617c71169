"""``/api/v1/letters/{slug}/signatures``: public fields for anyone, all fields for staff, signing, moderation."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from campaign.auth import tokens
from campaign.auth.models import User
from campaign.extensions import db
from campaign.signatures.models import Signature
from tests.letters.publishing import ORIGINAL, publish
from tests.signatures.test_listing import add_signatures

PUBLIC_KEYS = {"organisation", "country", "country_name", "revision", "signed_published_revision", "approved_date",
               "needs_reconfirmation"}  # fmt: skip


@pytest.fixture
def token_for(app):
    def make(account) -> dict[str, str]:
        with app.app_context():
            _, raw = tokens.create_token(db.session.get(User, account.id), "test")
            db.session.commit()
        return {"Authorization": f"Bearer {raw}"}

    return make


@pytest.fixture
def letter(app):
    published = publish(app, ORIGINAL)
    add_signatures(
        app,
        published.slug,
        [
            ("Beta Org", "BR", "approved", "beta@example.org"),
            ("Alpha Org", "FR", "approved", "alpha@example.org"),
            ("Pending Org", "KE", "pending_approval", "pending@example.org"),
            ("Rejected Org", "KE", "rejected", "rejected@example.org"),
        ],
    )
    return published


def _id_of(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Signature.id).where(Signature.organisation_name == name))


def test_anyone_with_a_token_sees_public_fields_of_approved_signatures(client, member, token_for, letter):
    url = f"/api/v1/letters/{letter.slug}/signatures?status=pending_approval"  # ignored: not staff
    response = client.get(url, headers=token_for(member))
    body = response.get_json()
    assert response.status_code == 200
    assert body["total"] == 2 and body["page"] == 1 and body["per_page"] == 50
    assert [item["organisation"] for item in body["items"]] == ["Alpha Org", "Beta Org"]
    assert all(set(item) == PUBLIC_KEYS for item in body["items"])
    assert body["items"][0] | {"approved_date": None} == {
        "organisation": "Alpha Org", "country": "FR", "country_name": "France", "revision": 1,
        "signed_published_revision": True, "approved_date": None, "needs_reconfirmation": False,
    }  # fmt: skip


def test_coordinators_see_all_fields_and_filter_by_status(client, coordinator, token_for, letter):
    headers = token_for(coordinator)
    everything = client.get(f"/api/v1/letters/{letter.slug}/signatures", headers=headers).get_json()
    assert everything["total"] == 4
    item = next(i for i in everything["items"] if i["organisation"] == "Pending Org")
    assert item["signer_email"] == "pending@example.org" and item["status"] == "pending_approval"
    assert {"id", "source", "signer_name", "history", "created_date"} <= set(item)

    pending = client.get(f"/api/v1/letters/{letter.slug}/signatures?status=pending_approval", headers=headers)
    assert [i["organisation"] for i in pending.get_json()["items"]] == ["Pending Org"]
    paged = client.get(f"/api/v1/letters/{letter.slug}/signatures?per_page=1&page=2", headers=headers).get_json()
    assert paged["total"] == 4 and len(paged["items"]) == 1


def test_problems(client, member, coordinator, token_for, letter):
    assert client.get(f"/api/v1/letters/{letter.slug}/signatures").status_code == 401
    bad = client.get(f"/api/v1/letters/{letter.slug}/signatures?status=nope", headers=token_for(coordinator))
    assert bad.status_code == 422 and bad.mimetype == "application/problem+json"
    missing = client.get("/api/v1/letters/no-such-letter/signatures", headers=token_for(member))
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_a_draft_letter_is_hidden_from_members(app, client, member, coordinator, token_for):
    draft = publish(app, ORIGINAL, status="draft")
    assert client.get(f"/api/v1/letters/{draft.slug}/signatures", headers=token_for(member)).status_code == 404
    assert client.get(f"/api/v1/letters/{draft.slug}/signatures", headers=token_for(coordinator)).status_code == 200


def test_a_member_signs_once_for_their_organisation(app, client, member, coordinator, token_for, letter):
    url = f"/api/v1/letters/{letter.slug}/signatures"
    headers = token_for(member)
    response = client.post(url, json={"signer_name": "Ada Lovelace", "signer_title": "Director"}, headers=headers)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "approved" and body["signer_name"] == "Ada Lovelace" and body["source"] == "member"

    again = client.post(url, json={"signer_name": "Someone Else"}, headers=headers)
    assert again.status_code == 409 and again.mimetype == "application/problem+json"
    assert "already signed" in again.get_json()["detail"]

    assert client.post(url, json={}, headers=headers).status_code == 422
    assert client.post(url, json={"signer_name": "X\r\nBcc: y"}, headers=headers).status_code == 422
    assert client.post(url, json={"signer_name": "Staff"}, headers=token_for(coordinator)).status_code == 403
    listed = client.get(url, headers=headers).get_json()
    assert listed["total"] == 3


def test_a_closed_letter_refuses_signatures(app, client, member, token_for):
    closed = publish(app, ORIGINAL, status="closed")
    response = client.post(
        f"/api/v1/letters/{closed.slug}/signatures", json={"signer_name": "Ada"}, headers=token_for(member)
    )
    assert response.status_code == 409 and "not open" in response.get_json()["detail"]


def test_coordinators_approve_and_reject(app, client, coordinator, member, token_for, letter, outbox):
    headers = token_for(coordinator)
    pending = _id_of(app, "Pending Org")
    base = f"/api/v1/letters/{letter.slug}/signatures"

    assert client.post(f"{base}/{pending}/approve", headers=token_for(member)).status_code == 403
    approved = client.post(f"{base}/{pending}/approve", headers=headers)
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"
    assert client.post(f"{base}/{pending}/approve", headers=headers).status_code == 409

    public = client.get(base, headers=token_for(member)).get_json()
    assert "Pending Org" in [i["organisation"] for i in public["items"]]

    with app.app_context():
        db.session.execute(sa.update(Signature).where(Signature.id == pending).values(status="pending_approval"))
        db.session.commit()
    assert client.post(f"{base}/{pending}/reject", json={}, headers=headers).status_code == 422
    rejected = client.post(f"{base}/{pending}/reject", json={"reason": "Not an organisation"}, headers=headers)
    assert rejected.status_code == 200
    assert rejected.get_json()["rejection_reason"] == "Not an organisation"

    other = publish(app, ORIGINAL)
    assert client.post(f"/api/v1/letters/{other.slug}/signatures/{pending}/approve", headers=headers).status_code == 404


@pytest.mark.parametrize(
    ("signer_name", "message"),
    [
        ("   ", "Give the signer's name."),
        ("Ada\tLovelace", "Must be a single line."),
        ("Ada\x00Lovelace", "Must be a single line."),
    ],
)
def test_an_unusable_name_is_a_422_naming_the_field(client, member, token_for, letter, signer_name, message):
    response = client.post(
        f"/api/v1/letters/{letter.slug}/signatures", json={"signer_name": signer_name}, headers=token_for(member)
    )
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert response.get_json()["errors"] == {"json": {"signer_name": [message]}}


def test_a_blank_reason_is_a_422_and_the_signature_still_awaits_approval(app, client, coordinator, token_for, letter):
    pending = _id_of(app, "Pending Org")
    url = f"/api/v1/letters/{letter.slug}/signatures/{pending}/reject"
    response = client.post(url, json={"reason": "   "}, headers=token_for(coordinator))
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    reason = ["Give a reason for rejecting: the signer is told it."]
    assert response.get_json()["errors"] == {"json": {"reason": reason}}
    with app.app_context():
        assert db.session.get(Signature, pending).status == "pending_approval"
