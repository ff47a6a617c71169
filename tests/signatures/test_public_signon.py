"""The public sign-on: the form, the email confirmation (POST only), its refusals, and signers' own data."""

from __future__ import annotations

import html as html_module
import json
import os
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaign.admin.models import CoalitionSettings
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import services as letters
from campaign.queue import Job
from campaign.signatures import moderation, public_signon
from campaign.signatures.models import Signature, SignatureEvent
from campaign.signatures.public_signon import PublicSignOn, SignOnInvalid
from campaign.signatures.services import SignatureError
from tests import factories
from tests.factories import drain_jobs
from tests.letters.publishing import publish

FORM = {
    "organisation_name": "Clean Rivers Trust",
    "country": "KE",
    "website": "https://rivers.example.org",
    "signer_name": "Wanjiru Kamau",
    "signer_title": "Director",
    "signer_email": "Wanjiru.Kamau@Rivers.example.org",
    "consent": "y",
}
EMAIL = "wanjiru.kamau@rivers.example.org"


@pytest.fixture
def letter(app, database):
    return publish(app)


def rows(app) -> list[Signature]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Signature).order_by(Signature.id)))


def confirm_link(outbox, slug: str) -> str:
    text = factories.text_of(outbox.messages()[-1])
    links = re.findall(rf"http://localhost(/letters/{slug}/sign/confirm/\S+)", text)
    assert len(links) == 1, text
    return links[0]


def started(letter: object, data: PublicSignOn, consent: str) -> Signature:
    """``public_signon.start``, and the signature it recorded."""
    return db.session.get(Signature, public_signon.start(letter, data, consent).id)


def signon(**changes: object) -> PublicSignOn:
    values = {k: v for k, v in FORM.items() if k != "consent"} | {"consent": True}
    return PublicSignOn(**(values | changes))


def test_form_creates_a_pending_signature_and_mails_the_link(app, client, letter, outbox):
    page = client.get(f"/letters/{letter.slug}/sign")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "how these details are used" in html.lower() and "My name, title and email address are not published" in html
    assert 'class="visually-hidden"' in html and "Leave this empty" in html

    response = client.post(f"/letters/{letter.slug}/sign", data=FORM)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/letters/{letter.slug}/sign/sent"
    assert "Check your email" in client.get(response.headers["Location"]).get_data(as_text=True)

    [signature] = rows(app)
    assert (signature.status, signature.source, signature.signer_email) == ("pending_verification", "public", EMAIL)
    assert signature.organisation_key == "clean rivers trust" and signature.country == "KE"
    assert signature.consent_at is not None and "list the organisation's name and country" in signature.consent_text
    with app.app_context():
        assert signature.revision_id == letters.get_letter(letter.slug).published_revision_id
    message = outbox.only()
    assert message["To"] == EMAIL and message["Subject"] == "Confirm your signature"
    assert confirm_link(outbox, letter.slug)


def test_the_signature_and_its_email_commit_together(app, client, letter, outbox, monkeypatch):
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the email could not be queued")

    monkeypatch.setattr("campaign.queue.add", refuse)
    with pytest.raises(RuntimeError):
        client.post(f"/letters/{letter.slug}/sign", data=FORM)
    assert rows(app) == [] and outbox.messages() == []  # no signature waits for a link never sent


def test_get_confirms_nothing_post_confirms_once(app, client, letter, outbox):
    client.post(f"/letters/{letter.slug}/sign", data=FORM)
    link = confirm_link(outbox, letter.slug)

    page = client.get(link)
    assert page.status_code == 200 and "Confirm your signature" in page.get_data(as_text=True)
    client.get(link)
    assert rows(app)[0].status == "pending_verification"

    done = client.post(link)
    assert done.status_code == 200 and "the secretariat will review it" in done.get_data(as_text=True)
    [signature] = rows(app)
    assert signature.status == "pending_approval" and signature.verified_at is not None
    assert "Already confirmed" in client.post(link).get_data(as_text=True)
    assert "Already confirmed" in client.get(link).get_data(as_text=True)
    with app.app_context():
        kinds = db.session.scalars(sa.select(SignatureEvent.kind).order_by(SignatureEvent.id)).all()
    assert kinds == ["public.started", "public.verified"]

    # Once decided, the link says what became of the signature, not that it awaits review.
    with app.app_context():
        moderation.approve(db.session.get(Signature, signature.id), factories.user("coordinator"))
        db.session.commit()
    page = client.get(link).get_data(as_text=True)
    assert "confirmed and approved" in page and "reviews it" not in page


def test_tampered_expired_and_replaced_links_do_not_work(app, client, letter, outbox, monkeypatch):
    client.post(f"/letters/{letter.slug}/sign", data=FORM)
    first = confirm_link(outbox, letter.slug)
    assert client.post(first[:-3] + "abc").status_code == 404
    assert client.post(first.replace(letter.slug, "another-letter")).status_code == 404
    monkeypatch.setattr(public_signon, "VERIFY_MAX_AGE", -1)
    expired = client.post(first)
    assert expired.status_code == 404 and "more than 7 days old" in expired.get_data(as_text=True)
    monkeypatch.undo()

    # A second attempt replaces the first (new email): only the new link works.
    client.post(f"/letters/{letter.slug}/sign", data=FORM | {"signer_email": "other@rivers.example.org"})
    second = confirm_link(outbox, letter.slug)
    assert second != first
    assert client.post(first).status_code == 404
    assert client.post(second).status_code == 200
    [signature] = rows(app)
    assert signature.signer_email == "other@rivers.example.org" and signature.status == "pending_approval"
    with app.app_context():
        replaced = db.session.scalar(sa.select(SignatureEvent).where(SignatureEvent.kind == "public.replaced"))
        assert replaced.details["email_changed"] is True


def test_honeypot_pretends_success_and_records_nothing(app, client, letter, outbox):
    response = client.post(f"/letters/{letter.slug}/sign", data=FORM | {"homepage": "http://spam.example"})
    assert response.status_code == 302 and response.headers["Location"] == f"/letters/{letter.slug}/sign/sent"
    assert rows(app) == [] and outbox.messages() == []


@pytest.mark.parametrize("store", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_sign_on_is_rate_limited(limited_app, separate_app, store):
    if store == "memory":
        limited = limited_app(SIGNON_RATE_LIMIT="2 per minute")
    else:
        if not os.environ.get("REDIS_URL"):
            pytest.skip("REDIS_URL is not set")
        limited = separate_app(
            RATELIMIT_ENABLED=True, REDIS_URL=os.environ["REDIS_URL"], SIGNON_RATE_LIMIT="2 per minute"
        )
        limited.extensions["redis"].flushdb()
    slug = publish(limited).slug
    client = limited.test_client()
    answers = [client.post(f"/letters/{slug}/sign", data={}) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [400, 400, 429]
    assert client.get(f"/letters/{slug}/sign").status_code == 200  # reading the form is not limited
    # The refusal says when to come back, within the minute; the posts let through carry no
    # X-RateLimit-* headers, which would cost each one a second trip to the limit's store.
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
    refusal = answers[2].get_data(as_text=True)
    assert "Too many attempts from your address: nothing was recorded. Try again in " in refusal
    assert not [name for answer in answers for name, _ in answer.headers if name.lower().startswith("x-ratelimit")]


@pytest.mark.parametrize(
    "typed",
    [
        "Réseau Océan Propre",
        "reseau ocean propre",
        "RÉSEAU  OCÉAN-PROPRE",
        "Réseau Océan Propre a.s.b.l.",
        "The Réseau Océan Propre",
        # legal forms at the end, in the coalition's languages
        "Réseau Océan Propre SARL",
        "Réseau Océan Propre S.A.",
        "Réseau Océan Propre SA",
        "Réseau Océan Propre, A.C.",
        "Réseau Océan Propre S.L.",
        "Réseau Océan Propre Ltda.",
        "Réseau Océan Propre Lda",
        "Réseau Océan Propre e. V.",
        "Réseau Océan Propre gGmbH",
        "Réseau Océan Propre gemeinnützige GmbH",
        "Réseau Océan Propre Limited",
        "Réseau Océan Propre plc",
        "Réseau Océan Propre CIC",
        "Réseau Océan Propre ONG",
        "Réseau Océan Propre vzw",
        "Réseau Océan Propre ONLUS",
        "Réseau Océan Propre Ltd Inc",
    ],
)
def test_a_member_organisation_is_pointed_to_its_representative(app, client, letter, typed):
    with app.app_context():
        org = factories.organisation("Réseau Océan Propre", member=True)
        rep = factories.user("member", email="amina@ocean.example.org", organisation_=org)
        rep_name = rep.name
    response = client.post(f"/letters/{letter.slug}/sign", data=FORM | {"organisation_name": typed})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Réseau Océan Propre is a member of the coalition" in html and f"contact {rep_name}" in html
    assert "amina@ocean.example.org" not in html
    assert rows(app) == []


@pytest.mark.parametrize(
    ("member", "typed"),
    [
        ("Women's Rights Network", "Womens Rights Network"),
        ("Women\u2019s Rights Network", "Women's Rights Network"),  # typographic apostrophe
        ("Women\u02bcs Rights Network", "WOMENS RIGHTS NETWORK LIMITED"),  # modifier letter
    ],
)
def test_apostrophes_do_not_tell_a_member_apart(ctx, letter, member, typed):
    factories.organisation(member, member=True)
    with pytest.raises(SignOnInvalid, match="is a member of the coalition"):
        public_signon.start(letters.get_letter(letter.slug), signon(organisation_name=typed), "consent")


@pytest.mark.parametrize(
    ("member", "typed"),
    [
        ("Peace", "Foundation for Peace"),
        ("Peace", "Peace Foundation"),
        ("Human Rights Network", "SA Human Rights Network"),
        ("Human Rights Network", "NGO Human Rights Network"),
        ("Solidarité", "Solidarité Association Internationale"),
        ("Plan A World", "Plan B. A World"),
    ],
)
def test_names_that_differ_in_more_than_a_legal_form_stay_distinct(ctx, letter, member, typed):
    factories.organisation(member, member=True)
    signature = started(letters.get_letter(letter.slug), signon(organisation_name=typed), "consent")
    assert signature.organisation_id is None and signature.status == "pending_verification"


def test_a_member_without_representative_points_to_the_secretariat(app, ctx, letter):
    factories.organisation("Green Future", member=True)
    db.session.add(CoalitionSettings(id=1, name="Coalition", reply_to="secretariat@coalition.example.org"))
    db.session.commit()
    with pytest.raises(SignOnInvalid, match=r"contact the secretariat at secretariat@coalition\.example\.org"):
        public_signon.start(letters.get_letter(letter.slug), signon(organisation_name="GREEN FUTURE"), "consent")


def test_a_non_member_registered_organisation_is_linked(ctx, letter):
    org = factories.organisation("Friends of the Sea", member=False)
    signature = started(letters.get_letter(letter.slug), signon(organisation_name="friends of the sea"), "")
    assert signature.organisation_id == org.id


def test_duplicates_are_refused_replaced_or_reused(ctx, letter):
    item = letters.get_letter(letter.slug)
    first = started(item, signon(), "c")
    db.session.commit()
    again = started(item, signon(organisation_name="CLEAN-RIVERS trust", signer_email="b@x.org"), "c")
    assert again.id == first.id and again.signer_email == "b@x.org" and again.organisation_name == "CLEAN-RIVERS trust"
    for status, refused in (("pending_approval", "awaits the secretariat's approval"), ("approved", "already signed")):
        again.status = status
        db.session.commit()
        with pytest.raises(SignOnInvalid, match=refused):
            public_signon.start(item, signon(), "c")
    for status in ("rejected", "withdrawn"):
        again.status, again.rejection_reason = status, "no"
        db.session.commit()
        reused = started(item, signon(), "c")
        assert reused.id == first.id and reused.status == "pending_verification" and reused.rejection_reason == ""
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Signature)) == 1


def test_the_signature_records_the_consent_text_the_form_showed(app, client, letter):
    url = f"/letters/{letter.slug}/sign"
    client.post(url, data=FORM)
    [unsaved] = rows(app)
    assert "I agree that Demarche uses the details" in unsaved.consent_text
    assert "Privacy notice" not in unsaved.consent_text
    with app.app_context():
        db.session.add(CoalitionSettings(id=1, name="Civilian Shield", privacy_notice="  We keep little, for long. "))
        db.session.commit()
    shown = html_module.unescape(client.get(url).get_data(as_text=True))
    client.post(url, data=FORM | {"organisation_name": "Second Trust", "signer_email": "second@example.org"})
    recorded = rows(app)[1].consent_text
    assert "I agree that Civilian Shield uses" in recorded and recorded.endswith(
        "Privacy notice: We keep little, for long."
    )
    assert recorded in shown


def test_the_worker_emails_the_link_of_the_current_attempt_only(ctx, letter, outbox):
    item = letters.get_letter(letter.slug)
    first = public_signon.start(item, signon(), "c")
    public_signon.queue_verification(first)
    db.session.commit()  # the worker has not run its job yet when the organisation signs again
    replaced = db.session.scalars(sa.select(Job).where(Job.kind == public_signon.VERIFY_JOB)).one()
    again = public_signon.start(item, signon(signer_email="b@x.org"), "c")
    public_signon.queue_verification(again)
    db.session.commit()
    assert db.session.get(Job, replaced.id).payload == {"signature_id": first.id,
                                                        "fingerprint": replaced.payload["fingerprint"]}  # fmt: skip
    drain_jobs()
    message = outbox.only()
    assert message["To"] == "b@x.org" and message["Subject"] == "Confirm your signature"
    assert db.session.get(Job, replaced.id).message == "not sent: the sign-on was replaced or confirmed meanwhile"

    kind = public_signon.VERIFY_JOB
    current = db.session.scalars(sa.select(Job).where(Job.id != replaced.id, Job.kind == kind)).one()
    public_signon.verify(public_signon.verification_token(again))
    db.session.commit()
    assert public_signon.verification_email(again.id, current.payload["fingerprint"]) is None  # confirmed: no email


def test_a_letter_past_its_deadline_refuses_though_still_open(app, client, letter):
    with app.app_context():
        item = letters.get_letter(letter.slug)
        item.signature_deadline = utcnow() - timedelta(hours=1)
        db.session.commit()
        assert item.status == "open"
    page = client.get(f"/letters/{letter.slug}/sign")
    assert page.status_code == 200 and "deadline for signing this letter passed" in page.get_data(as_text=True)
    assert "<form" not in page.get_data(as_text=True).split("<main", 1)[1]
    assert client.post(f"/letters/{letter.slug}/sign", data=FORM).status_code == 409
    assert rows(app) == []
    assert "Sign this letter" not in client.get(f"/letters/{letter.slug}").get_data(as_text=True)


@pytest.mark.parametrize("change", ["deadline passed", "members only"])
def test_confirmation_is_refused_once_the_letter_no_longer_takes_the_signature(app, client, letter, outbox, change):
    client.post(f"/letters/{letter.slug}/sign", data=FORM)
    link = confirm_link(outbox, letter.slug)
    with app.app_context():
        if change == "deadline passed":
            letters.get_letter(letter.slug).signature_deadline = utcnow() - timedelta(minutes=1)
        else:
            letters.get_letter(letter.slug).members_only = True
        db.session.commit()
    refused = client.post(link)
    assert refused.status_code == 409
    assert rows(app)[0].status == "pending_verification"
    if change == "members only":
        assert "signed by member organisations only" in refused.get_data(as_text=True)


def test_members_only_letters_have_no_public_form(app, client, letter):
    assert "Sign this letter" in client.get(f"/letters/{letter.slug}").get_data(as_text=True)
    with app.app_context():
        letters.get_letter(letter.slug).members_only = True
        db.session.commit()
    page = client.get(f"/letters/{letter.slug}/sign").get_data(as_text=True)
    assert "signed by member organisations only" in page
    assert client.post(f"/letters/{letter.slug}/sign", data=FORM).status_code == 409
    assert "Sign this letter" not in client.get(f"/letters/{letter.slug}").get_data(as_text=True)
    assert rows(app) == []


def test_drafts_have_no_sign_page(app, client, database):
    draft = publish(app, status="review")
    assert client.get(f"/letters/{draft.slug}/sign").status_code == 404


@pytest.mark.parametrize(
    "field", ["organisation_name", "country", "website", "signer_name", "signer_title", "signer_email"]
)
@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
def test_line_breaks_are_refused_in_every_field(app, client, ctx, letter, field, newline):
    value = (FORM[field] if field != "website" else "https://a.example.org") + newline + "Bcc: victim@example.org"
    with pytest.raises(SignOnInvalid, match="single line") as raised:
        public_signon.start(letters.get_letter(letter.slug), signon(**{field: value}), "c")
    assert raised.value.field == field
    response = client.post(f"/letters/{letter.slug}/sign", data=FORM | {field: value})
    assert response.status_code == 400 and "must be a single line" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Signature)) == 0


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"organisation_name": "  "}, "organisation_name", "is missing"),
        ({"organisation_name": "x" * 201}, "organisation_name", "too long"),
        ({"country": "XX"}, "country", "Choose a country"),
        ({"website": "javascript:alert(1)"}, "website", "http:// or https://"),
        ({"website": "https://"}, "website", "http:// or https://"),
        ({"signer_email": "not-an-address"}, "signer_email", "not valid"),
        ({"signer_title": ""}, "signer_title", "is missing"),
        ({"consent": False}, "consent", "Tick the box"),
    ],
)
def test_invalid_fields_are_named(ctx, letter, changes, field, message):
    with pytest.raises(SignOnInvalid, match=message) as raised:
        public_signon.start(letters.get_letter(letter.slug), signon(**changes), "c")
    assert raised.value.field == field


@pytest.mark.parametrize("consent", [None, "", "false"])
def test_missing_consent_is_shown_on_the_form(app, client, letter, consent):
    data = {k: v for k, v in FORM.items() if k != "consent"} | ({"consent": consent} if consent is not None else {})
    response = client.post(f"/letters/{letter.slug}/sign", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "Tick the box" in html
    assert 'value="Clean Rivers Trust"' in html and '<option selected value="KE">' in html  # what was typed is kept
    assert rows(app) == []


def test_a_post_without_the_forms_csrf_token_is_refused(separate_app, outbox):
    secured = separate_app(WTF_CSRF_ENABLED=True)
    letter = publish(secured)
    client = secured.test_client()
    url = f"/letters/{letter.slug}/sign"
    assert client.post(url, data=FORM).status_code == 400
    assert client.post(url, data=FORM | {"csrf_token": "forged"}).status_code == 400
    assert rows(secured) == []
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get(url).get_data(as_text=True))
    assert client.post(url, data=FORM | {"csrf_token": token.group(1)}).status_code == 302
    assert [signature.organisation_name for signature in rows(secured)] == ["Clean Rivers Trust"]


def test_the_service_refuses_letters_not_open(ctx, database, app):
    closed = publish(app, status="closed")
    with pytest.raises(SignatureError, match="not open for signatures"):
        public_signon.start(letters.get_letter(closed.slug), signon(), "c")


# --- signers' data -------------------------------------------------------------


def data_link(outbox) -> str:
    text = factories.text_of(outbox.only())
    [link] = re.findall(r"http://localhost(/letters/signer-data/\S+)", text)
    return link


def test_signer_data_request_answers_the_same_without_signatures(client, letter, outbox):
    unknown = client.post("/letters/signer-data", data={"email": "nobody@example.org"})
    assert unknown.status_code == 200 and outbox.messages() == []
    client.post(f"/letters/{letter.slug}/sign", data=FORM)
    outbox.clear()
    known = client.post("/letters/signer-data", data={"email": EMAIL.upper()})
    assert known.get_data(as_text=True) == unknown.get_data(as_text=True)
    assert outbox.only()["To"] == EMAIL


def test_signer_can_export_and_delete_their_data(app, client, letter, outbox):
    client.post(f"/letters/{letter.slug}/sign", data=FORM)
    second = publish(app, slug="second-letter")
    client.post(f"/letters/{second.slug}/sign", data=FORM | {"organisation_name": "Rivers Kenya"})
    with app.app_context():  # the first signature was approved; the second awaits confirmation
        first = db.session.scalar(sa.select(Signature).where(Signature.organisation_name == "Clean Rivers Trust"))
        first.status, first.approved_at = "approved", utcnow()
        db.session.commit()
    outbox.clear()
    client.post("/letters/signer-data", data={"email": EMAIL})
    link = data_link(outbox)

    page = client.get(link).get_data(as_text=True)
    assert "Clean Rivers Trust" in page and "Rivers Kenya" in page and "Download my data (JSON)" in page
    assert "name and country are not personal data" in page
    exported = client.get(link + "/export.json")
    assert exported.headers["Content-Disposition"].startswith("attachment")
    data = json.loads(exported.get_data(as_text=True))
    assert {s["organisation"] for s in data["signatures"]} == {"Clean Rivers Trust", "Rivers Kenya"}
    assert all(s["signer_name"] == "Wanjiru Kamau" and s["history"] for s in data["signatures"])

    assert client.post(link + "/delete", data={}).status_code == 400  # not confirmed
    done = client.post(link + "/delete", data={"confirm": "y"})
    assert done.status_code == 200 and "from 2 signatures" in done.get_data(as_text=True)
    with app.app_context():
        found = {s.organisation_name: s for s in db.session.scalars(sa.select(Signature))}
        for signature in found.values():
            assert signature.signer_name == signature.signer_title == ""
            assert signature.signer_email == f"deleted-{signature.id}@invalid"
            assert EMAIL not in {e.actor_email for e in signature.events}
        assert found["Clean Rivers Trust"].status == "approved"
        assert found["Rivers Kenya"].status == "withdrawn" and found["Rivers Kenya"].withdrawn_at is not None
    assert "No signature is held" in client.get(link).get_data(as_text=True)


def test_signer_data_links_are_signed_and_short_lived(client, database, monkeypatch):
    assert client.get("/letters/signer-data/forged-token").status_code == 404
    with client.application.test_request_context():
        token = public_signon.signer_data_token(EMAIL)
    monkeypatch.setattr(public_signon, "SIGNER_DATA_MAX_AGE", -1)
    assert client.get(f"/letters/signer-data/{token}").status_code == 404
    assert client.post(f"/letters/signer-data/{token}/delete", data={"confirm": "y"}).status_code == 404
