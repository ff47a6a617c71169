"""Member organisations sign in one step, withdraw, sign again and re-confirm."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaign.auth.models import User
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import services as letters
from campaign.letters.models import Letter
from campaign.letters.services import LetterText
from campaign.signatures import services
from campaign.signatures.models import Signature
from tests import factories
from tests.factories import text_of

TEXT = LetterText(
    title="Open letter on humanitarian access",
    addressee="To Heads of State and Government",
    body_markdown="We call on all parties to **allow humanitarian access** without delay.",
)


def open_letter(app, *, deadline=None, slug=None, text=TEXT, members_only=False) -> str:
    """A letter opened for signatures through the letters services; returns its slug."""
    deadline = deadline or utcnow() + timedelta(days=10)
    with app.app_context():
        letter = letters.create_letter(text, slug=slug, signature_deadline=deadline, members_only=members_only)
        letters.transition(letter, "review")
        letters.transition(letter, "open")
        db.session.commit()
        return letter.slug


def signatures_of(app, slug: str) -> list[Signature]:
    with app.app_context():
        letter = letters.get_letter(slug)
        found = db.session.scalars(sa.select(Signature).where(Signature.letter_id == letter.id)).all()
        for signature in found:
            _ = [e.kind for e in signature.events]  # loaded while the session is open
        return list(found)


def sign(client, slug: str, name: str = "Amina Diallo", title: str = "Director"):
    return client.post(f"/sign/{slug}", data={"signer_name": name, "signer_title": title})


def test_member_sees_open_letters_and_signs_in_one_step(app, client, auth, member):
    slug = open_letter(app)
    auth.login(member)
    listing = client.get("/sign").get_data(as_text=True)
    assert TEXT.title in listing and "Not signed" in listing
    page = client.get(f"/sign/{slug}").get_data(as_text=True)
    assert "allow humanitarian access" in page
    with app.app_context():
        user = db.session.get(User, member.id)
        assert f'value="{user.name}"' in page  # the signer's name is prefilled

    response = sign(client, slug)
    assert response.status_code == 302
    [signature] = signatures_of(app, slug)
    with app.app_context():
        user = db.session.get(User, member.id)
        letter = letters.get_letter(slug)
        assert signature.status == "approved" and signature.source == "member"
        assert signature.approved_at is not None and signature.decided_at is not None
        assert signature.organisation_id == user.organisation_id
        assert signature.organisation_name == user.organisation.name
        assert signature.country == user.organisation.country
        assert signature.signer_email == user.email and signature.user_id == user.id
        assert (signature.signer_name, signature.signer_title) == ("Amina Diallo", "Director")
        assert signature.revision_id == letter.published_revision_id
    assert [e.kind for e in signature.events] == ["signed"]
    page = client.get(f"/sign/{slug}").get_data(as_text=True)
    assert "Signed" in page and "Withdraw our signature" in page
    assert "Signed" in client.get("/sign").get_data(as_text=True)


def test_members_sign_a_members_only_letter_on_the_page_and_through_the_api(
    app, client, auth, member, make_account, bearer
):
    slug = open_letter(app, members_only=True)
    auth.login(member)
    assert TEXT.title in client.get("/sign").get_data(as_text=True)
    assert sign(client, slug).status_code == 302
    other = make_account("member")
    url = f"/api/v1/letters/{slug}/signatures"
    signed = client.post(url, json={"signer_name": "Ada Lovelace"}, headers=bearer(other))
    assert signed.status_code == 201 and signed.get_json()["status"] == "approved"
    found = signatures_of(app, slug)
    assert [(s.source, s.status) for s in found] == [("member", "approved"), ("member", "approved")]
    public = client.get(f"/letters/{slug}").get_data(as_text=True)
    assert all(s.organisation_name in public for s in found) and "Sign this letter" not in public


def test_a_second_signature_is_refused_with_who_and_when(app, client, auth, member):
    slug = open_letter(app)
    auth.login(member)
    sign(client, slug, name="First Signer")
    with app.app_context():
        letter = letters.get_letter(slug)
        user = db.session.get(User, member.id)
        with pytest.raises(services.SignatureError, match="already signed this letter: First Signer on"):
            services.sign_as_member(letter, user, "Second Signer")
    # A second representative of the same organisation is refused too.
    with app.app_context():
        colleague = factories.Account.of(
            factories.user("member", organisation_=db.session.get(User, member.id).organisation)
        )
    auth.logout()
    auth.login(colleague)
    page = client.post(f"/sign/{slug}", data={"signer_name": "Second Signer"}, follow_redirects=True)
    assert "already signed" in page.get_data(as_text=True)
    assert [s.signer_name for s in signatures_of(app, slug)] == ["First Signer"]


@pytest.mark.parametrize("role", ["coordinator", "admin"])
def test_other_roles_cannot_sign(app, client, auth, make_account, role):
    slug = open_letter(app)
    auth.login(make_account(role))
    for url in ("/sign", f"/sign/{slug}", "/sign/history", f"/sign/{slug}/withdraw"):
        assert client.get(url).status_code == 403, url
    assert sign(client, slug).status_code == 403
    assert signatures_of(app, slug) == []


def test_anonymous_is_sent_to_sign_in(app, client):
    slug = open_letter(app)
    response = client.get(f"/sign/{slug}")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_a_letter_past_its_deadline_refuses_even_while_open(app, client, auth, member):
    slug = open_letter(app)
    with app.app_context():  # no job ran: the status is still "open"
        db.session.execute(
            sa.update(Letter).where(Letter.slug == slug).values(signature_deadline=utcnow() - timedelta(hours=1))
        )
        db.session.commit()
    auth.login(member)
    page = client.get(f"/sign/{slug}").get_data(as_text=True)
    assert "no longer takes signatures" in page
    assert "Sign for" not in page
    refused = sign(client, slug).get_data(as_text=True)
    assert refused.count("no longer takes signatures") == 1  # said once, not also flashed
    assert signatures_of(app, slug) == []
    assert TEXT.title not in client.get("/sign").get_data(as_text=True)


def test_withdraw_and_sign_again_keep_the_history(app, client, auth, member):
    slug = open_letter(app)
    auth.login(member)
    sign(client, slug, name="First Signer")
    confirm = client.get(f"/sign/{slug}/withdraw").get_data(as_text=True)
    assert "stay in your organisation's history" in confirm
    assert client.post(f"/sign/{slug}/withdraw").status_code == 302
    [signature] = signatures_of(app, slug)
    assert signature.status == "withdrawn" and signature.withdrawn_at is not None
    page = client.get(f"/sign/{slug}").get_data(as_text=True)
    assert "earlier signature was withdrawn" in page

    sign(client, slug, name="Second Signer")
    [again] = signatures_of(app, slug)
    assert again.id == signature.id  # the same row: one per organisation and letter
    assert again.status == "approved" and again.signer_name == "Second Signer" and again.withdrawn_at is None
    assert [e.kind for e in again.events] == ["signed", "withdrawn", "signed_again"]
    history = client.get("/sign/history").get_data(as_text=True)
    assert TEXT.title in history
    assert "Withdrawn (was approved)" in history and "Signed again" in history


def test_withdrawal_is_refused_after_the_deadline(app, client, auth, member):
    slug = open_letter(app)
    auth.login(member)
    sign(client, slug)
    with app.app_context():
        db.session.execute(
            sa.update(Letter).where(Letter.slug == slug).values(signature_deadline=utcnow() - timedelta(minutes=1))
        )
        db.session.commit()
    page = client.post(f"/sign/{slug}/withdraw", follow_redirects=True).get_data(as_text=True)
    assert "can no longer be withdrawn" in page
    assert signatures_of(app, slug)[0].status == "approved"
    # Nor is the withdrawal offered: the confirmation page is not shown.
    offered = client.get(f"/sign/{slug}/withdraw", follow_redirects=True).get_data(as_text=True)
    assert "can no longer be withdrawn" in offered and "Withdraw our signature" not in offered


def _publish_new_revision(app, slug: str, substantive: bool, client, auth, coordinator) -> None:
    with app.app_context():
        letter = letters.get_letter(slug)
        letters.save_revision(
            letter, LetterText(TEXT.title, TEXT.body_markdown + "\n\nAnd a new demand.", TEXT.addressee)
        )
        db.session.commit()
    auth.logout()
    auth.login(coordinator)
    assert "ask signatories to re-confirm" in client.get(f"/admin/letters/{slug}/publish").get_data(as_text=True)
    data = {"substantive": "y"} if substantive else {}
    response = client.post(f"/admin/letters/{slug}/publish", data=data, follow_redirects=True)
    assert "is now the published text" in response.get_data(as_text=True)
    auth.logout()


def test_a_substantive_change_asks_signers_to_reconfirm(app, client, auth, member, coordinator, outbox):
    slug = open_letter(app)
    auth.login(member)
    sign(client, slug)
    _publish_new_revision(app, slug, True, client, auth, coordinator)
    [signature] = signatures_of(app, slug)
    assert signature.needs_reconfirmation
    message = outbox.only()
    assert message["To"] == member.email
    assert "re-confirm" in message["Subject"]
    body = text_of(message)
    assert f"http://localhost/letters/{slug}" in body and f"http://localhost/sign/{slug}" in body

    auth.login(member)
    page = client.get(f"/sign/{slug}").get_data(as_text=True)
    assert "Re-confirm our signature" in page
    assert client.post(f"/sign/{slug}/reconfirm").status_code == 302
    [signature] = signatures_of(app, slug)
    with app.app_context():
        letter = letters.get_letter(slug)
        assert signature.revision_id == letter.published_revision_id
    assert not signature.needs_reconfirmation and signature.reconfirmed_at is not None
    assert [e.kind for e in signature.events] == ["signed", "reconfirmation_requested", "reconfirmed"]
    assert "Re-confirm our signature" not in client.get(f"/sign/{slug}").get_data(as_text=True)


def test_a_change_not_marked_substantive_asks_nobody(app, client, auth, member, coordinator, outbox):
    slug = open_letter(app)
    auth.login(member)
    sign(client, slug)
    _publish_new_revision(app, slug, False, client, auth, coordinator)
    assert not signatures_of(app, slug)[0].needs_reconfirmation
    assert outbox.messages() == []


def test_a_withdrawn_signature_is_not_asked_to_reconfirm(app, ctx, member):
    slug = open_letter(app)
    letter = letters.get_letter(slug)
    user = db.session.get(User, member.id)
    signature = services.sign_as_member(letter, user, "Signer")
    services.withdraw(signature, user)
    letters.save_revision(letter, LetterText(TEXT.title, "A different text.", TEXT.addressee))
    letters.publish_changes(letter)
    assert services.mark_for_reconfirmation(letter) == 0


@pytest.mark.parametrize(
    ("name", "title", "message"),
    [("", "", "Give the signer's name"), ("A\nB", "", "single line"), ("A", "x" * 201, "under 200")],
)
def test_signer_details_are_checked(app, ctx, member, name, title, message):
    letter = letters.get_letter(open_letter(app))
    with pytest.raises(services.SignatureError, match=message):
        services.sign_as_member(letter, db.session.get(User, member.id), name, title)
