"""Re-confirming after a substantive change, for signers who do not sign in: the emailed link,
signatures still awaiting approval or their email confirmation when the text changes."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from campaign.extensions import db
from campaign.letters import services as letters
from campaign.letters.services import LetterText
from campaign.signatures import moderation, public_signon, services
from campaign.signatures.models import Signature, SignatureEvent
from campaign.signatures.public_signon import PublicSignOn
from tests import factories
from tests.factories import drain_jobs, text_of
from tests.letters.publishing import publish

SIGNER = "wanjiru.kamau@rivers.example.org"


@pytest.fixture
def slug(app, database) -> str:
    return publish(app).slug


def _sign_publicly(slug: str, *, confirm: bool = True, approve: bool = True) -> int:
    letter = letters.get_letter(slug)
    data = PublicSignOn("Clean Rivers Trust", "KE", "", "Wanjiru Kamau", "Director", SIGNER, True)
    signed = public_signon.start(letter, data, "consent")
    if confirm:
        public_signon.verify(public_signon.verification_token(signed))
    if approve:
        moderation.approve(db.session.get(Signature, signed.id), factories.user("coordinator"))
    db.session.commit()
    return signed.id


def _change_substantively(slug: str, body: str = "We now call on all States to act **today**.") -> int:
    """Publish a new text and ask the signers to re-confirm, as the letter page does; how many were asked."""
    letter = letters.get_letter(slug)
    letters.save_revision(letter, LetterText(letter.title, body, "To Heads of State and Government"))
    letters.publish_changes(letter)
    asked = services.mark_for_reconfirmation(letter)
    db.session.commit()
    drain_jobs()
    return asked


def _reconfirm_link(outbox, slug: str) -> str:
    message = outbox.messages()[-1]
    assert message["To"] == SIGNER and "re-confirm" in message["Subject"]
    links = re.findall(rf"http://localhost(/letters/{slug}/sign/reconfirm/\S+)", text_of(message))
    assert len(links) == 1, text_of(message)
    return links[0]


def _signature(signature_id: int) -> Signature:
    db.session.expire_all()
    return db.session.get(Signature, signature_id)


def test_a_public_signer_reconfirms_from_the_link_and_a_get_changes_nothing(ctx, client, slug, outbox):
    signature_id = _sign_publicly(slug)
    assert _change_substantively(slug) == 1
    link = _reconfirm_link(outbox, slug)
    assert "reply to this email" not in text_of(outbox.messages()[-1])
    assert services.mark_for_reconfirmation(letters.get_letter(slug)) == 0  # asked once per revision

    for _ in range(2):  # link scanners follow links: a GET only shows the buttons
        page = client.get(link).get_data(as_text=True)
        assert "Re-confirm our signature" in page and "Withdraw our signature" in page
    assert _signature(signature_id).needs_reconfirmation

    done = client.post(link, data={"reconfirm": "Re-confirm our signature"})
    assert done.status_code == 200 and "now stands for the current text" in done.get_data(as_text=True)
    signature = _signature(signature_id)
    assert not signature.needs_reconfirmation and signature.reconfirmed_at is not None
    assert signature.status == "approved" and signature.revision_id == letters.get_letter(slug).published_revision_id
    event = signature.events[-1]
    assert (event.kind, event.actor_email) == ("reconfirmed", SIGNER)
    again = client.post(link, data={"reconfirm": "Re-confirm our signature"})
    assert "not awaiting re-confirmation" in again.get_data(as_text=True)
    assert len(_signature(signature_id).events) == len(signature.events)


def test_a_public_signer_withdraws_from_the_link(ctx, client, slug, outbox):
    signature_id = _sign_publicly(slug)
    _change_substantively(slug)
    link = _reconfirm_link(outbox, slug)
    done = client.post(link, data={"withdraw": "Withdraw our signature"})
    assert done.status_code == 200 and "no longer signs this letter" in done.get_data(as_text=True)
    signature = _signature(signature_id)
    assert (signature.status, signature.needs_reconfirmation) == ("withdrawn", False)
    assert (signature.events[-1].kind, signature.events[-1].actor_email) == ("withdrawn", SIGNER)
    assert "Clean Rivers Trust" not in client.get(f"/letters/{slug}").get_data(as_text=True)
    assert "is withdrawn" in client.get(link).get_data(as_text=True)


def test_a_link_works_for_the_current_text_and_this_sign_on_only(ctx, client, slug, outbox):
    signature_id = _sign_publicly(slug)
    _change_substantively(slug)
    first = _reconfirm_link(outbox, slug)
    _change_substantively(slug, "A third text, which changes the demands again.")
    second = _reconfirm_link(outbox, slug)
    assert first != second

    stale = client.post(first, data={"reconfirm": "Re-confirm our signature"})
    assert stale.status_code == 404 and "for an earlier text" in stale.get_data(as_text=True)
    token = second.rsplit("/", 1)[1]
    for wrong in (
        f"/letters/{slug}/sign/reconfirm/{token}x",
        f"/letters/{publish(client.application, slug='another').slug}/sign/reconfirm/{token}",
    ):
        assert client.post(wrong, data={"reconfirm": "Re-confirm our signature"}).status_code == 404
    assert _signature(signature_id).needs_reconfirmation
    assert client.post(second, data={"reconfirm": "Re-confirm our signature"}).status_code == 200
    assert not _signature(signature_id).needs_reconfirmation


def test_a_signature_awaiting_approval_is_asked_too_and_approved_still_asked(ctx, client, slug, outbox):
    signature_id = _sign_publicly(slug, approve=False)
    assert _change_substantively(slug) == 1
    link = _reconfirm_link(outbox, slug)
    moderation.approve(_signature(signature_id), factories.user("coordinator"))
    db.session.commit()
    signature = _signature(signature_id)
    assert signature.status == "approved" and signature.needs_reconfirmation
    assert "signed revision 1" in client.get(f"/letters/{slug}").get_data(as_text=True)
    assert client.post(link, data={"reconfirm": "Re-confirm our signature"}).status_code == 200
    assert "signed revision" not in client.get(f"/letters/{slug}").get_data(as_text=True)


def test_a_signature_awaiting_its_email_confirmation_confirms_the_current_text(ctx, client, slug, outbox):
    signature_id = _sign_publicly(slug, confirm=False, approve=False)
    token = public_signon.verification_token(_signature(signature_id))
    assert _change_substantively(slug) == 0  # its confirmation page says the text changed
    link = f"/letters/{slug}/sign/confirm/{token}"
    page = client.get(link).get_data(as_text=True)
    assert "The text of the letter has changed since you signed." in page
    assert client.post(link).status_code == 200
    signature = _signature(signature_id)
    assert signature.status == "pending_approval" and not signature.needs_reconfirmation
    assert signature.revision_id == letters.get_letter(slug).published_revision_id
    verified = db.session.scalars(
        sa.select(SignatureEvent).where(
            SignatureEvent.signature_id == signature_id, SignatureEvent.kind == "public.verified"
        )
    ).one()
    assert verified.details == {"revision": 2}


def test_a_member_signature_gets_no_link(ctx, slug, outbox):
    letter = letters.get_letter(slug)
    member = factories.user("member", organisation_=factories.organisation("Réseau Océan Propre", member=True))
    signature = services.sign_as_member(letter, member, "Amina Diallo", "Director")
    db.session.commit()
    _change_substantively(slug)
    body = text_of(outbox.only())
    assert f"http://localhost/sign/{slug}" in body and "/reconfirm/" not in body
    assert public_signon.signature_to_reconfirm(public_signon.reconfirmation_token(signature)) is None
