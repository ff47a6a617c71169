"""Supporters' side of alerts: subscribe (double opt-in, no enumeration), confirm by POST only,
preferences, export and deletion, and RFC 8058 one-click unsubscribe."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner

from campaign.alerts import subscribers, tokens
from campaign.alerts.models import Alert, AlertDelivery, AlertText, Subscriber, Topic
from campaign.alerts.subscribers import InvalidEmail, SubscribeRequest, SubscriberError
from campaign.db import utcnow
from campaign.extensions import db
from campaign.mailings.models import SendGridEvent
from tests import factories

EMAIL = "wanjiru.kamau@rivers.example.org"


def topic_id(app, key: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Topic.id).where(Topic.key == key))


def form(app, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "email": "  Wanjiru.Kamau@Rivers.Example.ORG ",
        "name": "Wanjiru Kamau",
        "language": "fr",
        "topics": [str(topic_id(app, "letters")), str(topic_id(app, "meetings"))],
        "consent": "y",
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def rows(app) -> list[Subscriber]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(Subscriber).order_by(Subscriber.id)))
        for row in found:
            list(row.topics)
        db.session.expunge_all()
        return found


def get(app, subscriber_id: int) -> Subscriber:
    with app.app_context():
        found = db.session.get(Subscriber, subscriber_id)
        if found is not None:
            list(found.topics)
            db.session.expunge(found)
        return found


def link(outbox, path: str) -> str:
    text = factories.text_of(outbox.messages()[-1])
    found = re.findall(rf"http://localhost({re.escape(path)}\S+)", text)
    assert len(found) == 1, text
    return found[0]


def token_for(app, subscriber_id: int, purpose: str) -> str:
    with app.test_request_context():
        return tokens.make_token(db.session.get(Subscriber, subscriber_id), purpose)


# --- the form --------------------------------------------------------------------------------


def test_the_form_offers_topics_languages_and_the_consent_text(client, topic):
    topic("Sudan", kind="country", country="SD")
    topic("Retired theme", active=False)
    page = client.get("/subscribe")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    assert "<legend>Alert me about</legend>" in html
    assert html.index("New letters") < html.index("Meetings") < html.index("Sudan")
    assert "Retired theme" not in html
    assert 'value="ar"' in html and 'value="zh"' in html
    assert "I agree that Demarche emails me alerts" in html
    assert 'name="website"' in html  # the honeypot


def test_subscribing_records_a_pending_subscriber_with_consent_and_mails_the_link(app, client, outbox):
    response = client.post("/subscribe", data=form(app))
    assert response.status_code == 302 and response.headers["Location"] == "/subscribe/sent"
    (row,) = rows(app)
    assert (row.email, row.name, row.language, row.status) == (EMAIL, "Wanjiru Kamau", "fr", "pending")
    assert {t.key for t in row.topics} == {"letters", "meetings"}
    with app.test_request_context():
        shown = subscribers.consent_text()
    assert row.consent_text == shown and row.consent_version == subscribers.consent_version(shown)
    assert row.consented_at is not None and row.confirmed_at is None
    message = outbox.only()
    assert message["To"] == EMAIL and message["Subject"] == "Confirm your subscription"
    assert link(outbox, "/subscribe/confirm/")
    assert "Check your email" in client.get("/subscribe/sent").get_data(as_text=True)


def test_the_consent_text_carries_the_privacy_notice(ctx):
    from campaign.admin.models import CoalitionSettings

    db.session.merge(CoalitionSettings(id=1, name="Civilian Shield", privacy_notice="We keep little, for long."))
    db.session.commit()
    from flask import g

    g.pop("coalition_settings", None)
    text = subscribers.consent_text()
    assert "Civilian Shield" in text and text.endswith("Privacy notice: We keep little, for long.")
    assert subscribers.consent_version(text) != subscribers.consent_version(text + " ")


def test_subscribing_again_is_idempotent_whatever_the_case_of_the_address(app, client, outbox):
    client.post("/subscribe", data=form(app))
    client.post("/subscribe", data=form(app, email="wanjiru.kamau@rivers.example.org", name="W. Kamau"))
    (row,) = rows(app)
    assert row.email == EMAIL and row.name == "W. Kamau" and row.status == "pending"
    assert len(outbox.messages()) == 1  # the second request came within the resend interval


def test_a_new_confirmation_email_goes_out_only_after_the_resend_interval(app, client, outbox):
    client.post("/subscribe", data=form(app))
    (row,) = rows(app)
    with app.app_context():
        db.session.execute(
            sa.update(Subscriber)
            .where(Subscriber.id == row.id)
            .values(confirmation_sent_at=utcnow() - subscribers.RESEND_INTERVAL - timedelta(seconds=1))
        )
        db.session.commit()
    client.post("/subscribe", data=form(app))
    assert len(outbox.messages()) == 2


def test_the_honeypot_answers_as_if_accepted_and_records_nothing(app, client, outbox):
    response = client.post("/subscribe", data=form(app, website="http://spam.example"))
    assert response.status_code == 302 and response.headers["Location"] == "/subscribe/sent"
    assert rows(app) == [] and outbox.messages() == []


BAD_INPUT = [
    ("email", "wanjiru@example.org\r\nBcc: all@example.org", "single line"),
    ("email", "wanjiru@example.org\nBcc: all@example.org", "single line"),
    ("email", "wanjiru\x00@example.org", "single line"),
    ("email", "not an address", "not a valid email address"),
    ("email", "", "Give an email address"),
    ("email", "a" * 250 + "@example.org", "at most 254"),
    ("email", "a" * 65 + "@example.org", "at most 64"),
    ("name", "x" * 10_000, "at most 200"),
    ("name", "Wanjiru\r\nKamau", "single line"),
    ("language", "xx", "Not a valid choice"),
    ("topics", ["999999"], "Choose topics from the list"),
    ("topics", ["letters"], "Choose topics from the list"),
    ("topics", [], "Choose at least one topic"),
    ("consent", "", "Tick the box"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_INPUT)
def test_bad_input_is_refused_on_its_field_and_nothing_is_lost(app, client, outbox, field, value, message):
    data = form(app, **{field: value})
    if field == "consent":
        data.pop("consent")
    response = client.post("/subscribe", data=data)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html
    assert 'role="alert"' in html and f'href="#{field}"' in html  # the summary links to the field
    if field in ("email", "name"):
        assert 'aria-invalid="true"' in html
    if field != "name":
        assert 'value="Wanjiru Kamau"' in html  # what was typed is kept
    if field != "language":
        assert '<option selected value="fr">' in html
    assert rows(app) == [] and outbox.messages() == []


def test_every_wrong_field_is_reported_at_once(app, client):
    response = client.post("/subscribe", data={"email": "bad", "name": "a\nb", "language": "en", "topics": []})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    for message in ("not a valid email address", "single line", "Choose at least one topic", "Tick the box"):
        assert message in html


def test_a_retired_topic_is_refused(app, client, topic):
    retired = topic("Old theme", active=False)
    response = client.post("/subscribe", data=form(app, topics=[str(retired.id)]))
    assert response.status_code == 400 and "Choose topics from the list" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Foo@Example.ORG", "foo@example.org"),
        ("  foo@example.org\t".strip(), "foo@example.org"),
        (" Foo.Bar+alerts@Sub.Example.org ", "foo.bar+alerts@sub.example.org"),
    ],
)
def test_normalise_email(ctx, raw, expected):
    assert subscribers.normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw", ["foo@example.org\r\n", "foo@example.org\x00", "\tfoo@example.org", '"a b"@example.org', "foo@[127.0.0.1]"]
)
def test_normalise_email_refuses(ctx, raw):
    with pytest.raises(InvalidEmail):
        subscribers.normalise_email(raw)


def test_service_refuses_unknown_topic_ids_of_any_type(ctx):
    for ids in (["x"], [None], [10**12]):
        with pytest.raises(SubscriberError) as caught:
            subscribers.subscribe(SubscribeRequest(email=EMAIL, topic_ids=ids, consent=True))
        assert caught.value.field == "topics"


# --- no enumeration ------------------------------------------------------------------------------


def test_the_answer_is_the_same_for_every_kind_of_address(app, client, outbox, subscriber):
    confirmed = subscriber("confirmed@example.org", language="es", topics=["meetings"], name="Known")
    subscriber("pending@example.org", status="pending")
    subscriber("left@example.org", status="unsubscribed")
    subscriber("bounced@example.org", suppressed=True)
    answers = []
    for address in ("new@example.org", "confirmed@example.org", "pending@example.org", "left@example.org",
                    "bounced@example.org"):  # fmt: skip
        with app.app_context():  # the resend interval is not what is under test here
            db.session.execute(sa.update(Subscriber).values(confirmation_sent_at=None))
            db.session.commit()
        response = client.post("/subscribe", data=form(app, email=address))
        page = client.get(response.headers["Location"])
        answers.append((response.status_code, response.headers["Location"], response.get_data(), page.get_data()))
    assert all(answer == answers[0] for answer in answers)
    sent = {m["To"]: m["Subject"] for m in outbox.messages()}
    assert sent == {
        "new@example.org": "Confirm your subscription",
        "confirmed@example.org": "You are already subscribed",
        "pending@example.org": "Confirm your subscription",
        "left@example.org": "Confirm your subscription",
    }
    assert "/subscribe/preferences/" in factories.text_of(
        next(m for m in outbox.messages() if m["To"] == "confirmed@example.org")
    )
    after = get(app, confirmed.id)  # a stranger cannot change a confirmed subscriber's choices
    assert (after.name, after.language, [t.key for t in after.topics]) == ("Known", "es", ["meetings"])


def test_the_answer_is_the_same_with_csrf_on_modulo_the_token(app, separate_app):
    secured = separate_app(WTF_CSRF_ENABLED=True)
    client = secured.test_client()
    with secured.app_context():
        letters = db.session.scalar(sa.select(Topic.id).where(Topic.key == "letters"))
    bodies = []
    for address in ("first@example.org", "first@example.org"):
        page = client.get("/subscribe").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        data = {"email": address, "language": "en", "topics": [str(letters)], "consent": "y", "csrf_token": token}
        response = client.post("/subscribe", data=data)
        bodies.append((response.status_code, response.headers.get("Location")))
    assert bodies == [(302, "/subscribe/sent")] * 2
    missing = client.post("/subscribe", data={"email": "x@example.org", "topics": [str(letters)], "consent": "y"})
    assert missing.status_code == 400


# --- confirmation ---------------------------------------------------------------------------------


def test_get_of_the_confirmation_link_changes_nothing_and_post_confirms_once(app, client, outbox):
    client.post("/subscribe", data=form(app))
    path = link(outbox, "/subscribe/confirm/")
    for _ in range(2):
        page = client.get(path)
        assert page.status_code == 200 and "Confirm my subscription" in page.get_data(as_text=True)
    assert rows(app)[0].status == "pending"
    head = client.head(path)
    assert head.status_code == 200 and rows(app)[0].status == "pending"

    done = client.post(path)
    assert done.status_code == 200 and "You are subscribed" in done.get_data(as_text=True)
    (row,) = rows(app)
    assert row.status == "confirmed" and row.confirmed_at is not None
    again = client.post(path)
    assert again.status_code == 200 and "You are subscribed" in again.get_data(as_text=True)
    assert rows(app)[0].confirmed_at == row.confirmed_at


def test_an_old_confirmation_link_does_not_subscribe_again_after_unsubscribing(app, client, subscriber):
    left = subscriber(status="unsubscribed")
    path = "/subscribe/confirm/" + token_for(app, left.id, "confirm")
    assert client.post(path).status_code == 404
    assert get(app, left.id).status == "unsubscribed"


def test_resubscribing_after_unsubscribing_needs_a_new_confirmation(app, client, outbox, subscriber):
    left = subscriber(EMAIL, status="unsubscribed")
    with app.app_context():
        db.session.execute(sa.update(Subscriber).values(confirmation_sent_at=None))
        db.session.commit()
    client.post("/subscribe", data=form(app))
    assert get(app, left.id).status == "pending"
    client.post(link(outbox, "/subscribe/confirm/"))
    row = get(app, left.id)
    assert row.status == "confirmed" and row.unsubscribed_at is None and row.language == "fr"


def _expired(monkeypatch, app, subscriber_id: int, purpose: str, age: timedelta) -> str:
    now = int(utcnow().timestamp())
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now - int(age.total_seconds()))
    try:
        return token_for(app, subscriber_id, purpose)
    finally:
        monkeypatch.undo()


def test_forged_expired_and_other_purpose_tokens_are_refused(app, client, subscriber, monkeypatch):
    pending = subscriber(status="pending")
    good = token_for(app, pending.id, "confirm")
    forged = [
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "not-a-token",
        "x" * 600,
        token_for(app, pending.id, "unsubscribe"),
        token_for(app, pending.id, "preferences"),
        _expired(monkeypatch, app, pending.id, "confirm", timedelta(days=8)),
    ]
    for token in forged:
        response = client.post("/subscribe/confirm/" + token)
        assert response.status_code == 404, token
        assert "This link does not work" in response.get_data(as_text=True)
        assert pending.email not in response.get_data(as_text=True)
    assert get(app, pending.id).status == "pending"
    assert client.get("/subscribe/preferences/" + good).status_code == 404
    assert client.post("/unsubscribe/" + good).status_code == 400


def test_the_unsubscribe_link_stays_valid_for_months(app, client, subscriber, monkeypatch):
    someone = subscriber()
    old = _expired(monkeypatch, app, someone.id, "unsubscribe", timedelta(days=300))
    assert client.post("/unsubscribe/" + old).status_code == 200
    too_old = _expired(monkeypatch, app, someone.id, "unsubscribe", timedelta(days=600))
    assert client.post("/unsubscribe/" + too_old).status_code == 400


def test_a_batch_signs_the_same_tokens_as_one_link_at_a_time(app, subscriber, monkeypatch):
    """``LinkSigner`` (an alert's chunk) and ``make_token`` (every other email) agree, and the
    token opens the link only for its purpose and subscriber."""
    people = [subscriber() for _ in range(20)]
    now = int(utcnow().timestamp())
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now)
    with app.app_context():
        for purpose in ("preferences", "unsubscribe"):
            signer = tokens.LinkSigner(purpose)
            for person in people:
                someone = db.session.get(Subscriber, person.id)
                batch_token = signer.token(someone.id, someone.token_key)
                assert batch_token == tokens.make_token(someone, purpose)
                assert signer.url(someone.id, someone.token_key) == tokens.url(someone, purpose)
                assert tokens.load_subscriber(batch_token, purpose).id == someone.id
                other = "unsubscribe" if purpose == "preferences" else "preferences"
                assert tokens.load_subscriber(batch_token, other) is None


def test_a_replaced_token_key_revokes_every_link(app, client, subscriber):
    someone = subscriber()
    token = token_for(app, someone.id, "preferences")
    with app.app_context():
        db.session.execute(sa.update(Subscriber).where(Subscriber.id == someone.id).values(token_key="replaced"))
        db.session.commit()
    assert client.get("/subscribe/preferences/" + token).status_code == 404


# --- preferences, export, deletion -----------------------------------------------------------------


def test_preferences_show_and_change_the_choices(app, client, subscriber, topic):
    sudan = topic("Sudan", kind="country", country="SD")
    someone = subscriber(name="Ama", language="en", topics=["letters"])
    path = "/subscribe/preferences/" + token_for(app, someone.id, "preferences")
    page = client.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert someone.email in html and 'value="Ama"' in html and "Download your data" in html
    response = client.post(path, data={"name": "Ama Mensah", "language": "ar", "topics": [str(sudan.id)]})
    assert response.status_code == 200 and "preferences are saved" in response.get_data(as_text=True)
    row = get(app, someone.id)
    assert (row.name, row.language, [t.key for t in row.topics]) == ("Ama Mensah", "ar", ["country-sd"])
    bad = client.post(path, data={"name": "Ama", "language": "ar", "topics": ["999999"]})
    assert bad.status_code == 400 and "Choose topics from the list" in bad.get_data(as_text=True)
    assert [t.key for t in get(app, someone.id).topics] == ["country-sd"]


def test_a_retired_topic_already_followed_may_be_kept(app, client, subscriber, topic):
    theme = topic("Old theme")
    someone = subscriber(topics=["letters", theme])
    with app.app_context():
        db.session.execute(sa.update(Topic).where(Topic.id == theme.id).values(active=False))
        db.session.commit()
    path = "/subscribe/preferences/" + token_for(app, someone.id, "preferences")
    assert "Old theme" in client.get(path).get_data(as_text=True)
    response = client.post(path, data={"language": "en", "topics": [str(theme.id)]})
    assert response.status_code == 200
    assert [t.key for t in get(app, someone.id).topics] == [theme.key]


def test_an_unsubscribed_supporter_can_subscribe_again_from_the_preferences(app, client, subscriber):
    left = subscriber(status="unsubscribed")
    token = token_for(app, left.id, "preferences")
    assert client.post(f"/subscribe/preferences/{token}/resume").status_code == 400
    assert get(app, left.id).status == "unsubscribed"
    response = client.post(f"/subscribe/preferences/{token}/resume", data={"consent": "y"})
    assert response.status_code == 200
    row = get(app, left.id)
    assert row.status == "confirmed" and row.unsubscribed_at is None and row.consented_at > left.consented_at


def _alert_for(app, subscriber_id: int, status: str = "sent") -> int:
    with app.app_context():
        alert = Alert(kind="manual", status="finished", language="en", topic_ids=[], languages=[])
        alert.texts.append(AlertText(language="en", subject="A new letter is open", body="Sign it."))
        db.session.add(alert)
        db.session.flush()
        row = db.session.get(Subscriber, subscriber_id)
        delivery = AlertDelivery(
            alert_id=alert.id, subscriber_id=row.id, email=row.email, language="en", status=status, sent_at=utcnow()
        )
        db.session.add(delivery)
        db.session.commit()
        return delivery.id


def test_export_is_a_json_download_of_everything_held(app, client, subscriber):
    someone = subscriber(name="Ama", topics=["letters"])
    _alert_for(app, someone.id)
    token = token_for(app, someone.id, "preferences")
    response = client.get(f"/subscribe/preferences/{token}/export.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"] and response.headers["Cache-Control"] == "no-store"
    data = json.loads(response.get_data())
    assert data["email"] == someone.email and data["name"] == "Ama" and data["status"] == "confirmed"
    assert data["consent"]["text"] == someone.consent_text and data["consent"]["given_at"]
    assert [t["key"] for t in data["topics"]] == ["letters"]
    (delivery,) = data["alert_deliveries"]
    assert delivery["subject"] == "A new letter is open" and delivery["email"] == someone.email
    assert client.get("/subscribe/preferences/forged/export.json").status_code == 404


def test_delete_needs_the_box_then_removes_the_subscriber_and_blanks_deliveries(app, client, subscriber):
    someone = subscriber()
    sent = _alert_for(app, someone.id, "delivered")
    pending = _alert_for(app, someone.id, "pending")
    with app.app_context():
        event = SendGridEvent(
            sg_event_id="delete-me-1", event="delivered", email=someone.email, alert_delivery_id=sent,
            outcome="recorded", detail=someone.email, data={"email": someone.email},
        )  # fmt: skip
        db.session.add(event)
        db.session.commit()
        event_id = event.id
    token = token_for(app, someone.id, "preferences")
    refused = client.post(f"/subscribe/preferences/{token}/delete")
    assert refused.status_code == 400 and get(app, someone.id) is not None
    done = client.post(f"/subscribe/preferences/{token}/delete", data={"confirm": "y"})
    assert done.status_code == 200 and "are deleted" in done.get_data(as_text=True)
    assert get(app, someone.id) is None
    with app.app_context():
        kept = {d.id: (d.status, d.email, d.subscriber_id) for d in db.session.scalars(sa.select(AlertDelivery))}
    assert kept[sent] == ("delivered", "", None)
    assert kept[pending] == ("cancelled", "", None)
    with app.app_context():
        event = db.session.get(SendGridEvent, event_id)
        assert (event.sg_event_id, event.email, event.detail, event.data, event.alert_delivery_id) == (
            "delete-me-1", "", "", {}, sent
        )  # fmt: skip
    assert client.get(f"/subscribe/preferences/{token}").status_code == 404


# --- unsubscribing --------------------------------------------------------------------------------


def test_the_unsubscribe_page_shows_a_button_and_get_changes_nothing(app, client, subscriber):
    someone = subscriber()
    path = "/unsubscribe/" + token_for(app, someone.id, "unsubscribe")
    page = client.get(path)
    assert page.status_code == 200 and "<button" in page.get_data(as_text=True)
    assert get(app, someone.id).status == "confirmed"
    response = client.post(path)
    assert response.status_code == 200 and "You are unsubscribed" in response.get_data(as_text=True)
    row = get(app, someone.id)
    assert row.status == "unsubscribed" and row.unsubscribed_via == "page"


def test_one_click_unsubscribe_needs_no_csrf_token_and_is_idempotent(app, separate_app):
    secured = separate_app(WTF_CSRF_ENABLED=True)
    with secured.test_request_context():
        topic = db.session.scalar(sa.select(Topic).where(Topic.key == "letters"))
        someone = Subscriber(email="one@example.org", language="en", status="confirmed", topics=[topic])
        db.session.add(someone)
        db.session.commit()
        subscriber_id, token = someone.id, tokens.make_token(someone, "unsubscribe")
    client = secured.test_client()
    body = "List-Unsubscribe=One-Click"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    first = client.post(f"/unsubscribe/{token}", data=body, headers=headers)
    assert first.status_code == 200
    with secured.app_context():
        row = db.session.get(Subscriber, subscriber_id)
        stamped = (row.status, row.unsubscribed_via, row.unsubscribed_at)
    assert stamped[:2] == ("unsubscribed", "one-click")
    second = client.post(f"/unsubscribe/{token}", data=body, headers=headers)
    assert second.status_code == 200
    with secured.app_context():
        row = db.session.get(Subscriber, subscriber_id)
        assert (row.status, row.unsubscribed_via, row.unsubscribed_at) == stamped
    refused = client.post(f"/unsubscribe/{token[:-3]}xyz", data=body, headers=headers)
    assert refused.status_code == 400 and "one@example.org" not in refused.get_data(as_text=True)
    # the exemption is this view's alone: the preferences form still needs the token
    with secured.test_request_context():
        preferences = tokens.make_token(db.session.get(Subscriber, subscriber_id), "preferences")
    assert client.post(f"/subscribe/preferences/{preferences}", data={"language": "en"}).status_code == 400


def test_unsubscribing_suppresses_pending_deliveries(app, client, subscriber):
    someone = subscriber()
    pending = _alert_for(app, someone.id, "pending")
    client.post("/unsubscribe/" + token_for(app, someone.id, "unsubscribe"), data={"List-Unsubscribe": "One-Click"})
    with app.app_context():
        delivery = db.session.get(AlertDelivery, pending)
        assert (delivery.status, delivery.reason) == ("suppressed", "unsubscribed")


def test_suppress_and_unsubscribe_keep_the_first_record(ctx, subscriber):
    someone = subscriber()
    subscribers.suppress(someone, "bounce: no such mailbox")
    first = someone.suppressed_at
    subscribers.suppress(someone, "spamreport")
    assert (someone.suppressed_at, someone.suppressed_reason) == (first, "bounce: no such mailbox")
    assert not someone.receives_alerts
    subscribers.unsubscribe(someone, "sendgrid")
    subscribers.unsubscribe(someone, "page")
    assert (someone.status, someone.unsubscribed_via) == ("unsubscribed", "sendgrid")


def test_a_suppressed_address_gets_no_email_but_the_same_answer(app, client, outbox, subscriber):
    subscriber(EMAIL, suppressed=True, status="pending")
    with app.app_context():
        db.session.execute(sa.update(Subscriber).values(confirmation_sent_at=None))
        db.session.commit()
    response = client.post("/subscribe", data=form(app))
    assert response.headers["Location"] == "/subscribe/sent" and outbox.messages() == []


# --- rate limit -------------------------------------------------------------------------------------


def test_subscribing_is_rate_limited(limited_app):
    limited = limited_app(SIGNON_RATE_LIMIT="2 per minute")
    client = limited.test_client()
    with limited.app_context():
        letters = db.session.scalar(sa.select(Topic.id).where(Topic.key == "letters"))
    data = {"email": "rate@example.org", "language": "en", "topics": [str(letters)], "consent": "y"}
    statuses = [client.post("/subscribe", data=data).status_code for _ in range(3)]
    assert statuses == [302, 302, 429]
    assert client.get("/subscribe").status_code == 200  # reading the form is not limited
