"""``POST /webhooks/sendgrid``: only SendGrid's signed, fresh posts; each event stored once; deliveries
moved forward only; bounces, spam reports and unsubscribes suppress the contact."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask

from campaign import create_app, queue
from campaign.auth.models import User
from campaign.contacts.models import Contact, ContactEvent
from campaign.db import utcnow
from campaign.extensions import db
from campaign.mailings import sending, services, tracking
from campaign.mailings.models import Delivery, DeliveryEvent, Mailing, SendGridEvent
from campaign.mailings.sendgrid import SendGridBackend, SignatureRefused, check_event_signature
from config import ConfigurationError
from tests.conftest import settings_for_tests
from tests.mailings.events import URL, FakeSendGrid, SigningKey, event, post
from tests.mailings.world import World, approved, make_world

ONEILL, DUPONT, HASSAN, WANG, IVANOV, GARCIA = range(6)


@pytest.fixture
def provider(app: Flask, monkeypatch: pytest.MonkeyPatch) -> FakeSendGrid:
    fake = FakeSendGrid()
    monkeypatch.setitem(app.extensions, "mail_backend", fake)
    return fake


@pytest.fixture
def world(app: Flask, ctx: None) -> World:
    return make_world(app)


def send(app: Flask, world: World) -> int:
    """An approved mailing to the whole world, sent now through the backend; its id."""
    mailing_id = approved(app, world)
    row = services.request_send(db.session.get(Mailing, mailing_id), {}, actor=db.session.get(User, world.author.id))
    db.session.commit()
    queue.dispatch(row)
    return mailing_id


def delivery_to(mailing_id: int, world: World, index: int) -> Delivery:
    db.session.expire_all()
    return db.session.scalars(
        sa.select(Delivery).where(Delivery.mailing_id == mailing_id, Delivery.contact_id == world.contact_ids[index])
    ).one()


def stored() -> Counter[str]:
    """Stored events by outcome."""
    return Counter(db.session.scalars(sa.select(SendGridEvent.outcome)))


def provider_history(delivery: Delivery) -> list[tuple[str, str]]:
    rows = db.session.scalars(
        sa.select(DeliveryEvent)
        .where(DeliveryEvent.delivery_id == delivery.id, DeliveryEvent.source == "sendgrid")
        .order_by(DeliveryEvent.id)
    )
    return [(row.kind, row.detail) for row in rows]


def contact(world: World, index: int) -> Contact:
    db.session.expire_all()
    return db.session.get(Contact, world.contact_ids[index])


# --- only SendGrid, only lately ------------------------------------------------------------------


def test_a_signed_post_moves_the_delivery_and_keeps_the_event(app, client, world, key, provider) -> None:
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, DUPONT)
    assert delivery.status == "sent" and delivery.message_id

    response = post(client, key, [event(delivery, "processed"), event(delivery, "delivered", response="250 OK")])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"posted": 2, "stored": 2, "duplicates": 0, "ignored": 0, "applied": 1,
                                        "recorded": 1, "waiting": 0, "unmatched": 0}  # fmt: skip
    assert "Set-Cookie" not in response.headers
    delivery = delivery_to(mailing_id, world, DUPONT)
    assert delivery.status == "delivered"
    assert provider_history(delivery) == [("processed", "stays sent"), ("delivered", "sent → delivered")]
    row = db.session.scalars(sa.select(SendGridEvent).where(SendGridEvent.event == "delivered")).one()
    assert (row.delivery_id, row.outcome, row.email, row.data["response"]) == (
        delivery.id, "applied", delivery.email, "250 OK",
    )  # fmt: skip
    assert row.sg_message_id.startswith(delivery.message_id + ".")


def _refused_posts(key: SigningKey, body: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    now = int(time.time())
    good = key.headers(body, now)
    return {
        "unsigned": (body, {"Content-Type": "application/json"}),
        "no timestamp": (body, {k: v for k, v in good.items() if "Timestamp" not in k}),
        "tampered body": (body.replace(b"delivered", b"bounce"), good),
        "tampered timestamp": (body, good | {"X-Twilio-Email-Event-Webhook-Timestamp": str(now + 1)}),
        "wrong key": (body, SigningKey().headers(body, now)),
        "stale": (body, key.headers(body, now - 301)),
        # ``now`` is cut to the second and the post comes later: ahead by 310 s, not 301, stays
        # more than 300 s ahead when the check runs.
        "future": (body, key.headers(body, now + 310)),
        "not base64": (body, good | {"X-Twilio-Email-Event-Webhook-Signature": "%%%"}),
        "timestamp not a number": (body, key.headers(body, "1e9")),
    }


@pytest.mark.parametrize(
    "case",
    ["unsigned", "no timestamp", "tampered body", "tampered timestamp", "wrong key", "stale", "future",
     "not base64", "timestamp not a number"],
)  # fmt: skip
def test_posts_not_signed_by_sendgrid_lately_are_refused_and_store_nothing(app, client, world, key, provider, case):
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, DUPONT)
    body = json.dumps([event(delivery, "delivered")]).encode()
    data, headers = _refused_posts(key, body)[case]

    response = client.post(URL, data=data, headers=headers)
    assert response.status_code == 401, case
    assert response.content_type == "application/problem+json"
    assert "WWW-Authenticate" in response.headers
    assert stored() == Counter() and delivery_to(mailing_id, world, DUPONT).status == "sent"


def test_without_a_configured_key_every_post_is_refused(app, client, world, provider, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", None)
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, DUPONT)
    assert post(client, SigningKey(), [event(delivery, "delivered")]).status_code == 401
    assert stored() == Counter()


def test_the_timestamp_window_is_a_setting(app, client, world, key, provider, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_MAX_AGE", 3600)
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, DUPONT)
    assert post(client, key, [event(delivery, "delivered")], timestamp=int(time.time()) - 1800).status_code == 200
    assert post(client, key, [event(delivery, "open")], timestamp=int(time.time()) - 3700).status_code == 401


def test_the_signature_covers_the_raw_bytes() -> None:
    signing = SigningKey()
    now = int(time.time())
    body = b'[{"event": "delivered", "email": "a\\u00e9@example.org"}] \xff'  # not even UTF-8
    headers = signing.headers(body, now)
    check = {"signature": headers["X-Twilio-Email-Event-Webhook-Signature"], "timestamp": str(now), "max_age": 300}
    check_event_signature(signing.public, body, **check)
    with pytest.raises(SignatureRefused, match="does not match"):
        check_event_signature(signing.public, body.replace(b"\\u00e9", "é".encode()), **check)


# --- stored once -----------------------------------------------------------------------------------


def test_a_replayed_post_changes_nothing_and_a_late_one_is_refused(app, client, world, key, provider) -> None:
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, DUPONT)
    body = json.dumps([event(delivery, "delivered")]).encode()
    headers = key.headers(body)
    assert client.post(URL, data=body, headers=headers).get_json()["applied"] == 1

    again = client.post(URL, data=body, headers=headers)  # the same post, inside the window
    assert again.status_code == 200 and again.get_json()["duplicates"] == 1 and again.get_json()["stored"] == 0
    old = key.headers(body, int(time.time()) - 3600)  # signed, an hour ago
    assert client.post(URL, data=body, headers=old).status_code == 401
    assert stored() == Counter(applied=1)
    assert provider_history(delivery_to(mailing_id, world, DUPONT)) == [("delivered", "sent → delivered")]


def test_the_same_event_forty_times_is_stored_and_applied_once(app, client, world, key, provider) -> None:
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, ONEILL)
    bounce = event(delivery, "bounce", type="bounce", status="5.1.1", reason="550 5.1.1 mailbox unknown")
    assert post(client, key, [bounce] * 20).get_json()["duplicates"] == 19
    for _ in range(20):
        assert post(client, key, [bounce]).status_code == 200

    assert stored() == Counter(applied=1)
    assert [kind for kind, _ in provider_history(delivery_to(mailing_id, world, ONEILL))] == ["bounce"]
    suppressions = db.session.scalars(
        sa.select(ContactEvent).where(
            ContactEvent.contact_id == world.contact_ids[ONEILL], ContactEvent.kind == "suppressed"
        )
    ).all()
    assert len(suppressions) == 1


# --- what events do ---------------------------------------------------------------------------------


def test_a_bounce_suppresses_the_contact_and_the_next_mailing_records_it_suppressed(
    app, client, world, key, provider
) -> None:
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, HASSAN)
    bounce = event(
        delivery, "bounce", type="bounce", status="5.1.1", reason="550 5.1.1 The email account does not exist"
    )
    post(client, key, [event(delivery, "processed"), bounce])

    delivery = delivery_to(mailing_id, world, HASSAN)
    assert delivery.status == "bounced"
    assert delivery.reason == "bounced: 5.1.1 550 5.1.1 The email account does not exist"
    hassan = contact(world, HASSAN)
    assert (hassan.suppression, hassan.needs_verification, hassan.suppressed_at is not None) == ("bounced", True, True)
    assert "550 5.1.1" in hassan.suppression_reason and " UTC, mailing " in hassan.suppression_reason
    [line] = [e for e in hassan.events if e.kind == "suppressed"]
    assert (line.actor_email, line.summary) == ("SendGrid", "Suppressed: Bounced")
    assert provider_history(delivery)[-1][1].endswith("contact suppressed: Bounced")

    following = approved(app, world, subject="Reminder: {{ letter.title }}")
    services.request_send(db.session.get(Mailing, following), {}, actor=db.session.get(User, world.author.id))
    db.session.commit()
    nextone = delivery_to(following, world, HASSAN)
    assert nextone.status == "suppressed" and nextone.reason.startswith("Bounced: SendGrid: bounce")
    assert delivery_to(following, world, DUPONT).status == "pending"


def test_a_blocked_bounce_is_recorded_but_does_not_suppress(app, client, world, key, provider) -> None:
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, WANG)
    post(client, key, [event(delivery, "bounce", type="blocked", status="4.7.1", reason="IP listed on a blocklist")])

    delivery = delivery_to(mailing_id, world, WANG)
    assert delivery.status == "bounced"
    assert delivery.reason == "blocked by the receiving server (not permanent): 4.7.1 IP listed on a blocklist"
    wang = contact(world, WANG)
    assert (wang.suppression, wang.needs_verification) == (None, False)
    assert [(e.kind, e.actor_email) for e in wang.events if e.kind == "blocked"] == [("blocked", "SendGrid")]
    assert provider_history(delivery)[0][0] == "blocked"
    assert stored() == Counter(applied=1)

    following = approved(app, world, subject="Reminder: {{ letter.title }}")
    services.request_send(db.session.get(Mailing, following), {}, actor=db.session.get(User, world.author.id))
    db.session.commit()
    assert delivery_to(following, world, WANG).status == "pending"


@pytest.mark.parametrize(
    ("kind", "suppression", "verify"),
    [("spamreport", "complained", True), ("unsubscribe", "unsubscribed", False),
     ("group_unsubscribe", "unsubscribed", False)],
)  # fmt: skip
def test_spam_reports_and_unsubscribes_suppress_the_contact(
    app, client, world, key, provider, kind, suppression, verify
) -> None:
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, IVANOV)
    post(client, key, [event(delivery, kind, asm_group_id=7) if "group" in kind else event(delivery, kind)])

    ivanov = contact(world, IVANOV)
    assert (ivanov.suppression, ivanov.needs_verification) == (suppression, verify)
    # The message evidently arrived.
    assert delivery_to(mailing_id, world, IVANOV).status == "delivered"
    assert contact(world, GARCIA).suppression is None


def test_an_address_already_suppressed_keeps_its_reason(app, client, world, key, provider) -> None:
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, IVANOV)
    post(client, key, [event(delivery, "unsubscribe")])
    post(client, key, [event(delivery, "spamreport")])
    ivanov = contact(world, IVANOV)
    assert ivanov.suppression == "unsubscribed"
    assert "already suppressed (Unsubscribed)" in ivanov.events[0].summary
    assert stored() == Counter(applied=1, recorded=1)


def test_dropped_and_deferred(app, client, world, key, provider) -> None:
    mailing_id = send(app, world)
    dropped, deferred = delivery_to(mailing_id, world, DUPONT), delivery_to(mailing_id, world, GARCIA)
    post(client, key, [event(dropped, "dropped", reason="Invalid SMTPAPI header"),
                       event(deferred, "deferred", response="421 try again later", attempt="1")])  # fmt: skip
    dropped, deferred = delivery_to(mailing_id, world, DUPONT), delivery_to(mailing_id, world, GARCIA)
    assert (dropped.status, dropped.reason) == ("dropped", "dropped by SendGrid: Invalid SMTPAPI header")
    assert deferred.status == "sent" and provider_history(deferred) == [("deferred", "stays sent")]
    assert contact(world, DUPONT).suppression is None


def test_processed_settles_an_uncertain_delivery_and_records_its_message_id(app, client, world, key, provider) -> None:
    provider.lose = {"garcia@mission.example"}
    mailing_id = send(app, world)
    lost = delivery_to(mailing_id, world, GARCIA)
    assert (lost.status, lost.message_id, lost.sent_at) == ("uncertain", None, None)
    [(_, message_id)] = [sent for sent in provider.sent if sent[0] == lost.email]

    processed = event(
        lost, "processed", sg_message_id=f"{message_id}.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC1D6-8A-0"
    )
    assert post(client, key, [processed]).get_json()["applied"] == 1
    settled = delivery_to(mailing_id, world, GARCIA)
    assert (settled.status, settled.message_id, settled.reason) == ("sent", message_id, "")
    assert settled.sent_at is not None
    assert provider_history(settled) == [("processed", f"uncertain → sent; message id {message_id} recorded")]
    # A coordinator's decision now has nothing to settle.
    with pytest.raises(services.MailingError, match="no longer uncertain"):
        services.resolve(settled, "resend", "no reply", db.session.get(User, world.author.id))
    db.session.rollback()
    assert sending.send_chunk(mailing_id) == 0 and [s[0] for s in provider.sent].count(lost.email) == 1


def test_a_delivery_never_moves_backwards(app, client, world, key, provider) -> None:
    mailing_id = send(app, world)
    first, second = delivery_to(mailing_id, world, DUPONT), delivery_to(mailing_id, world, WANG)
    post(client, key, [event(first, "delivered")])
    post(client, key, [event(first, "processed"), event(first, "deferred"), event(first, "dropped")])
    post(client, key, [event(second, "bounce", type="bounce", reason="550 gone")])
    post(client, key, [event(second, "delivered"), event(second, "processed")])

    assert delivery_to(mailing_id, world, DUPONT).status == "delivered"
    assert delivery_to(mailing_id, world, WANG).status == "bounced"
    assert [detail for _, detail in provider_history(first)][1:] == [
        "stays delivered", "stays delivered", "stays delivered; dropped by SendGrid",
    ]  # fmt: skip
    # A bounce after the receiving server's 250 (an asynchronous bounce) still counts.
    post(client, key, [event(first, "bounce", type="bounce", reason="552 mailbox full")])
    assert delivery_to(mailing_id, world, DUPONT).status == "bounced"


def test_events_for_unknown_deliveries_are_kept_and_acknowledged(app, client, world, key, provider) -> None:
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, DUPONT)
    stranger = event(delivery, "bounce", custom_args=False, email="someone@elsewhere.example",
                     sg_message_id="unknownid.filterdrecv-1")  # fmt: skip
    missing = event(delivery, "delivered", delivery="999999", mailing="999999")
    # Another installation on the same SendGrid account, whose delivery ids overlap with ours.
    elsewhere = event(delivery, "bounce", email="ambassador@other.example", mailing="424242")
    test_send = {"event": "delivered", "email": "coordinator@example.org", "sg_event_id": "t1",
                 "timestamp": int(time.time()), "category": ["mailing-test"]}  # fmt: skip

    response = post(client, key, [stranger, missing, elsewhere, test_send, "not an event", {"no": "event"}])
    assert response.status_code == 200
    assert response.get_json() | {"stored": 4, "unmatched": 4, "ignored": 2} == response.get_json()
    assert delivery_to(mailing_id, world, DUPONT).status == "sent" and contact(world, DUPONT).suppression is None
    assert stored() == Counter(unmatched=4)


def test_without_custom_args_the_message_id_and_address_find_the_delivery(app, client, world, key, provider) -> None:
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, DUPONT)
    other = delivery_to(mailing_id, world, WANG)
    post(client, key, [event(delivery, "delivered", custom_args=False),
                       event(other, "delivered", custom_args=False, email="not-wang@mission.example")])  # fmt: skip
    assert delivery_to(mailing_id, world, DUPONT).status == "delivered"
    assert delivery_to(mailing_id, world, WANG).status == "sent"
    assert stored() == Counter(applied=1, unmatched=1)


# --- events that outrun the worker ---------------------------------------------------------------


def test_events_arriving_before_the_send_was_recorded_wait_then_apply(app, client, world, key, provider) -> None:
    """SendGrid's events reach the webhook while the worker still waits for the 202 (or before
    it commits it): they wait, untouched by the worker's own record, and apply once it is made."""

    def webhook_meanwhile(message, message_id) -> None:
        if message.to[0] == "wang@mission.example":
            delivery = db.session.get(Delivery, int(message.custom_args["delivery"]))
            assert delivery.status == "sending"
            early = [
                event(delivery, kind, sg_message_id=f"{message_id}.filter-1") for kind in ("processed", "delivered")
            ]
            early.append(event(delivery, "bounce", type="bounce", reason="550 unknown", sg_message_id=message_id))
            assert post(client, key, early).get_json()["waiting"] == 3

    provider.during_send = webhook_meanwhile
    mailing_id = send(app, world)

    wang = delivery_to(mailing_id, world, WANG)
    assert wang.status == "sent"  # the worker recorded its result
    assert stored() == Counter(waiting=3)
    assert contact(world, WANG).suppression is None

    # The next post applies what waits (so does the worker's maintenance loop: below).
    post(client, key, [event(delivery_to(mailing_id, world, GARCIA), "delivered")])
    wang = delivery_to(mailing_id, world, WANG)
    assert wang.status == "bounced" and contact(world, WANG).suppression == "bounced"
    assert stored() == Counter(applied=3, recorded=1)  # a processed after the send was recorded changes nothing
    history = provider_history(wang)
    assert history[0] == ("processed", "arrived while the delivery was sending, before its send was recorded: "
                                       "applied once it is")  # fmt: skip
    assert history[4][1].startswith("sent → delivered; received ")
    assert kinds_of(wang) == ["processed", "delivered", "bounce", "sent", "processed", "delivered", "bounce"]


def kinds_of(delivery: Delivery) -> list[str]:
    rows = db.session.scalars(
        sa.select(DeliveryEvent.kind).where(DeliveryEvent.delivery_id == delivery.id).order_by(DeliveryEvent.id)
    )
    return [kind for kind in rows if kind != "claimed"]


def test_the_worker_maintenance_applies_events_waiting_on_an_expired_lease(app, client, world, key, provider) -> None:
    """The worker died after handing the message over: the lease expires, the delivery becomes
    uncertain, and the processed event that waited settles it."""
    mailing_id = approved(app, world)
    services.request_send(db.session.get(Mailing, mailing_id), {}, actor=db.session.get(User, world.author.id))
    db.session.commit()
    [claimed, *_] = sending.claim(mailing_id, 1, "worker-that-dies")
    delivery = db.session.get(Delivery, claimed)
    post(client, key, [event(delivery, "processed", sg_message_id="SGid123.filter-1")])
    assert stored() == Counter(waiting=1)

    db.session.execute(sa.update(Delivery).where(Delivery.id == claimed).values(lease_until=utcnow() - timedelta(1)))
    db.session.commit()
    assert tracking.apply_waiting in queue._SWEEPERS
    queue.recover()  # expire_leases, then apply_waiting
    db.session.expire_all()
    settled = db.session.get(Delivery, claimed)
    assert (settled.status, settled.message_id) == ("sent", "SGid123")
    assert stored() == Counter(applied=1)


# --- the request itself ------------------------------------------------------------------------------


def test_malformed_and_oversized_posts(app, client, world, key, provider, monkeypatch) -> None:
    assert post(client, key, b"[{not json").status_code == 400
    assert post(client, key, b'{"event": "delivered"}').status_code == 400
    assert post(client, key, b"[" * 100_000 + b"]" * 100_000).status_code == 400
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_MAX_BYTES", 1000)
    assert post(client, key, [{"event": "open", "padding": "x" * 1000}]).status_code == 413
    assert post(client, key, []).get_json()["posted"] == 0
    assert stored() == Counter()


@pytest.fixture
def csrf_app(separate_app) -> Iterator[tuple[Flask, SigningKey]]:
    signing = SigningKey()
    yield separate_app(WTF_CSRF_ENABLED=True, SENDGRID_WEBHOOK_PUBLIC_KEY=signing.public), signing


def test_the_webhook_needs_no_csrf_token_and_sets_no_cookie(csrf_app) -> None:
    app, signing = csrf_app
    client = app.test_client()
    response = post(client, signing, [{"event": "delivered", "email": "x@example.org", "sg_event_id": "e1"}])
    assert response.status_code == 200 and response.get_json()["unmatched"] == 1
    assert "Set-Cookie" not in response.headers
    assert client.post("/login", data={"email": "x@example.org", "password": "x"}).status_code == 400  # CSRF is on


def test_an_unusable_public_key_stops_the_app_at_start(separate_app, tmp_path) -> None:
    refused = settings_for_tests(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'refused.db'}")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rsa_der = rsa_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for value, why in (("bm90IGEga2V5", "not a public key"), (base64.b64encode(rsa_der).decode(), "P-256")):
        with pytest.raises(ConfigurationError, match=why):
            create_app(refused | {"SENDGRID_WEBHOOK_PUBLIC_KEY": value})
    pem = (
        SigningKey()
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    separate_app(SENDGRID_WEBHOOK_PUBLIC_KEY=pem.decode())  # PEM armour is accepted too


# --- the contact's page ----------------------------------------------------------------------------


def test_the_contact_page_shows_each_mailing_and_its_events(app, client, auth, world, key, provider) -> None:
    mailing_id = send(app, world)
    delivery = delivery_to(mailing_id, world, HASSAN)
    post(client, key, [event(delivery, "bounce", type="bounce", reason="550 5.1.1 no such user")])
    name = db.session.get(Mailing, mailing_id).name

    auth.login(world.author)
    page = client.get(f"/admin/contacts/{world.contact_ids[HASSAN]}").get_data(as_text=True)
    assert name in page and f"/admin/mailings/{mailing_id}/deliveries/{delivery.id}" in page
    assert "sent → bounced" in page and "550 5.1.1 no such user" in page and "Suppressed: Bounced" in page
    quiet = client.get(f"/admin/contacts/{world.contact_ids[GARCIA]}").get_data(as_text=True)
    assert name in quiet and "sent → bounced" not in quiet


# --- with SendGrid's client, against the stand-in ----------------------------------------------------


def test_sendgrid_events_settle_a_mailing_sent_through_the_stand_in(app, client, world, key, standin, monkeypatch):
    """The custom args and message ids SendGrid's API received come back in its events: the
    delivery whose answer was lost (uncertain) is settled like the others."""
    monkeypatch.setitem(app.extensions, "mail_backend", SendGridBackend(standin.api_key, host=standin.url, timeout=2))
    standin.drop(times=1)
    mailing_id = send(app, world)
    counts = sending.progress(mailing_id).counts
    assert (counts["uncertain"], counts["sent"]) == (1, 5)

    events = []
    for accepted in standin.accepted:
        [personalization] = accepted.body["personalizations"]
        [address] = accepted.recipients
        for kind in ("processed", "delivered"):
            events.append({"email": address, "timestamp": int(time.time()), "event": kind,
                           "sg_event_id": secrets.token_urlsafe(16), "sg_message_id": f"{accepted.message_id}.f-1",
                           **personalization["custom_args"]})  # fmt: skip
    assert post(client, key, events).get_json()["unmatched"] == 0

    db.session.expire_all()
    deliveries = db.session.scalars(sa.select(Delivery).where(Delivery.mailing_id == mailing_id)).all()
    assert {d.status for d in deliveries} == {"delivered"}
    assert {d.email: d.message_id for d in deliveries} == {a.recipients[0]: a.message_id for a in standin.accepted}
