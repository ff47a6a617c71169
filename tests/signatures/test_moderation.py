"""Coordinators approve or reject confirmed public signatures, one by one or in bulk; signers are told."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from campaign.audit import AuditEvent
from campaign.auth.models import User
from campaign.extensions import db
from campaign.letters import services as letters
from campaign.signatures import moderation, public_signon
from campaign.signatures.models import Signature
from campaign.signatures.public_signon import PublicSignOn
from campaign.signatures.services import SignatureError
from tests import factories
from tests.letters.publishing import publish


@pytest.fixture
def letter(app, database):
    return publish(app)


def signed(app, slug: str, name: str, *, confirm: bool = True) -> int:
    """A public signature of ``name``, confirmed by email unless ``confirm`` is False; its id."""
    with app.test_request_context():
        signature = public_signon.start(
            letters.get_letter(slug),
            PublicSignOn(
                name, "BR", "", f"Signer of {name}", "Director", f"{name.split()[0].lower()}@example.org", True
            ),
            "consent",
        )
        db.session.commit()
        if confirm:
            public_signon.verify(public_signon.verification_token(signature))
            db.session.commit()
        return signature.id


def get(app, signature_id: int) -> Signature:
    with app.app_context():
        signature = db.session.get(Signature, signature_id)
        signature.events  # noqa: B018 - loaded while the session is open
        return signature


def audit_actions(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEvent.action).where(AuditEvent.action.like("signature.%"))))


def test_the_queue_lists_confirmed_signatures_with_their_details(app, client, auth, coordinator, letter):
    signed(app, letter.slug, "Amazonia Watch")
    signed(app, letter.slug, "Unconfirmed Group", confirm=False)
    auth.login(coordinator)
    page = client.get("/admin/signatures").get_data(as_text=True)
    assert "Amazonia Watch" in page and "amazonia@example.org" in page and "Brazil" in page
    assert "Unconfirmed Group" not in page
    assert 'aria-label="Filter signatures"' in page and "Select Amazonia Watch" in page
    waiting = client.get("/admin/signatures?status=pending_verification").get_data(as_text=True)
    assert "Unconfirmed Group" in waiting and "Amazonia Watch" not in waiting
    assert "Amazonia Watch" not in client.get("/admin/signatures?letter=another").get_data(as_text=True)
    assert "Amazonia Watch" in client.get(f"/admin/signatures?letter={letter.slug}").get_data(as_text=True)


def test_approving_one(app, client, auth, coordinator, letter, outbox):
    signature_id = signed(app, letter.slug, "Amazonia Watch")
    outbox.clear()
    auth.login(coordinator)
    response = client.post(f"/admin/signatures/{signature_id}/approve")
    assert response.status_code == 302
    signature = get(app, signature_id)
    assert signature.status == "approved" and signature.approved_at and signature.decided_at
    assert signature.decided_by_id == coordinator.id
    assert [e.kind for e in signature.events][-1] == "approved"
    assert signature.events[-1].actor_email == coordinator.email
    assert audit_actions(app) == ["signature.approve"]
    message = outbox.only()
    assert message["To"] == "amazonia@example.org" and message["Subject"] == "Your signature is approved"
    assert f"http://localhost/letters/{letter.slug}" in factories.text_of(message)
    # Decided once: a second approval is refused, and nothing more is sent.
    outbox.clear()
    client.post(f"/admin/signatures/{signature_id}/approve")
    assert outbox.messages() == []
    detail = client.get(f"/admin/signatures/{signature_id}").get_data(as_text=True)
    assert "Approved by the secretariat" in detail and "Email address confirmed" in detail


def test_rejecting_one_needs_a_reason_that_the_signer_is_told(app, client, auth, coordinator, letter, outbox):
    signature_id = signed(app, letter.slug, "Amazonia Watch")
    outbox.clear()
    auth.login(coordinator)
    refusals = {
        "": "Give a reason for rejecting",
        "Not an organisation\r\nBcc: x@y": "on a single line",
        "x" * 501: "too long (at most 500 characters)",
    }
    for reason, message in refusals.items():
        page = client.post(f"/admin/signatures/{signature_id}/reject", data={"reason": reason}, follow_redirects=True)
        assert message in page.get_data(as_text=True)
        assert get(app, signature_id).status == "pending_approval" and outbox.messages() == []

    client.post(f"/admin/signatures/{signature_id}/reject", data={"reason": "We could not find this organisation."})
    signature = get(app, signature_id)
    assert signature.status == "rejected" and signature.rejection_reason == "We could not find this organisation."
    assert signature.approved_at is None and signature.decided_by_id == coordinator.id
    assert signature.events[-1].summary == "Rejected: We could not find this organisation."
    assert audit_actions(app) == ["signature.reject"]
    message = outbox.only()
    assert message["Subject"] == "Your signature was not accepted"
    assert "Reason: We could not find this organisation." in factories.text_of(message)


def test_bulk_approval_skips_what_is_not_awaiting_approval(app, client, auth, coordinator, letter, outbox):
    first = signed(app, letter.slug, "Amazonia Watch")
    second = signed(app, letter.slug, "Cerrado Alliance")
    unconfirmed = signed(app, letter.slug, "Pantanal Network", confirm=False)
    outbox.clear()
    auth.login(coordinator)
    response = client.post(
        "/admin/signatures/bulk", data={"ids": [first, second, unconfirmed], "action": "approve"}, follow_redirects=True
    )
    assert "Approved 2 signatures; skipped 1 not awaiting approval." in response.get_data(as_text=True)
    assert [get(app, i).status for i in (first, second, unconfirmed)] == [
        "approved",
        "approved",
        "pending_verification",
    ]
    assert sorted(m["To"] for m in outbox.messages()) == ["amazonia@example.org", "cerrado@example.org"]
    assert audit_actions(app) == ["signature.approve", "signature.approve"]


def test_bulk_rejection_takes_one_reason(app, client, auth, coordinator, letter, outbox):
    ids = [signed(app, letter.slug, "Amazonia Watch"), signed(app, letter.slug, "Cerrado Alliance")]
    outbox.clear()
    auth.login(coordinator)
    client.post("/admin/signatures/bulk", data={"ids": ids, "action": "reject", "reason": ""})
    assert {get(app, i).status for i in ids} == {"pending_approval"}
    client.post("/admin/signatures/bulk", data={"ids": ids, "action": "reject", "reason": "Duplicate entries."})
    assert {(get(app, i).status, get(app, i).rejection_reason) for i in ids} == {("rejected", "Duplicate entries.")}
    assert all("Reason: Duplicate entries." in factories.text_of(m) for m in outbox.messages())
    assert len(outbox.messages()) == 2


def test_services_count_skipped_and_unknown_ids(app, ctx, letter):
    pending = signed(app, letter.slug, "Amazonia Watch")
    actor = db.session.scalar(sa.select(User).where(User.id == factories.user("coordinator").id))
    outcome = moderation.approve_many([pending, pending, 999_999], actor)
    assert [s.id for s in outcome.decided] == [pending] and outcome.skipped == 1
    with pytest.raises(SignatureError, match="is already approved, not awaiting approval"):
        moderation.reject(db.session.get(Signature, pending), "late", actor)
    with pytest.raises(SignatureError, match="Give a reason"):
        moderation.reject_many([pending], "  ", actor)


def test_members_cannot_moderate(app, client, auth, member, letter):
    signature_id = signed(app, letter.slug, "Amazonia Watch")
    assert client.get("/admin/signatures").status_code == 302  # anonymous: sign in first
    auth.login(member)
    assert client.get("/admin/signatures").status_code == 403
    assert client.get(f"/admin/signatures/{signature_id}").status_code == 403
    assert client.post(f"/admin/signatures/{signature_id}/approve").status_code == 403
    assert client.post("/admin/signatures/bulk", data={"ids": [signature_id], "action": "approve"}).status_code == 403
    assert get(app, signature_id).status == "pending_approval"
