"""Alerts through the SendGrid backend to the local stand-in, which checks every request against
SendGrid's published contract: one request per chunk of up to 1,000 personalizations of one
language, per-recipient substitutions and headers, no address twice, a refused address split
out, a 429 retried later, a dropped connection left uncertain."""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa

from campaign import queue
from campaign.alerts import render, sending, tokens
from campaign.alerts.models import Alert, AlertDelivery, Subscriber, Topic, subscriber_topics
from campaign.db import utcnow
from campaign.extensions import db
from campaign.mailings.sendgrid import SendGridBackend
from tests.alerts.test_fanout import deliveries, make_alert
from tests.factories import drain_jobs

SITE = "https://alerts.example.org"
TEXTS = {"en": ("A new letter", "Please **read** it."), "fr": ("Une nouvelle lettre", "Lisez-la.")}


@pytest.fixture
def sendgrid(app, monkeypatch, sendgrid_backend: SendGridBackend) -> SendGridBackend:
    monkeypatch.setitem(app.extensions, "mail_backend", sendgrid_backend)
    monkeypatch.setitem(app.config, "SITE_URL", SITE)
    return sendgrid_backend


def many(count: int, language: str, prefix: str) -> list[str]:
    """``count`` confirmed subscribers following new letters, inserted in bulk; their addresses."""
    now = utcnow()
    emails = [f"{prefix}{n}@example.org" for n in range(count)]
    rows = [
        {"email": e, "name": f"{prefix.title()} {n}", "language": language, "status": "confirmed",
         "token_key": f"key-{prefix}-{n}", "consent_text": "yes", "consent_version": "t", "consented_at": now,
         "confirmed_at": now, "created_at": now, "updated_at": now}
        for n, e in enumerate(emails)
    ]  # fmt: skip
    db.session.execute(sa.insert(Subscriber), rows)
    letters = db.session.scalar(sa.select(Topic.id).where(Topic.key == "letters"))
    ids = db.session.scalars(sa.select(Subscriber.id).where(Subscriber.email.in_(emails))).all()
    db.session.execute(sa.insert(subscriber_topics), [{"subscriber_id": i, "topic_id": letters} for i in ids])
    db.session.commit()
    return emails


def test_2500_and_1200_subscribers_go_in_five_contract_checked_requests(ctx, sendgrid, standin, subscriber) -> None:
    english = many(2499, "en", "reader")
    odd = subscriber(email="oneill@example.org", name="<b>O'Neill & Co</b>", language="en")
    english.append(odd.email)
    french = many(1200, "fr", "lecteur")
    alert = make_alert(texts=TEXTS)
    sending.start(alert)
    drain_jobs()

    accepted = standin.accepted
    assert standin.requests == len(accepted) == 5
    sizes = Counter((request.body["subject"], len(request.personalizations)) for request in accepted)
    assert sizes == Counter(
        {("A new letter", 1000): 2, ("A new letter", 500): 1, ("Une nouvelle lettre", 1000): 1,
         ("Une nouvelle lettre", 200): 1}
    )  # fmt: skip
    for request in accepted:
        addresses = [address.casefold() for address in request.recipients]
        assert len(addresses) == len(set(addresses))  # no address twice in a request
        assert [part["type"] for part in request.body["content"]] == ["text/plain", "text/html"]
        assert "[%name_text%]" in request.body["content"][0]["value"]
        assert "[%unsubscribe_html%]" in request.body["content"][1]["value"]
        assert request.body["tracking_settings"]["subscription_tracking"] == {"enable": False}
        for personalization in request.personalizations:
            assert set(personalization["substitutions"]) == set(render.TAGS.values())
            assert set(personalization["custom_args"]) == {"alert", "alert_delivery"}
            headers = personalization["headers"]
            assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            unsubscribe = personalization["substitutions"]["[%unsubscribe_text%]"]
            assert headers["List-Unsubscribe"] == f"<{unsubscribe}>" and unsubscribe.startswith(f"{SITE}/unsubscribe/")
    assert Counter(standin.counts()) == Counter({address.casefold(): 1 for address in english + french})

    rows = deliveries(alert.id)
    by_request = {request.message_id: set(request.recipients) for request in accepted}
    assert {row.status for row in rows.values()} == {"sent"}
    for email, row in rows.items():
        assert email in by_request[row.message_id]

    personal = next(
        p for request in accepted for p in request.personalizations if p["to"][0]["email"] == "oneill@example.org"
    )
    values = personal["substitutions"]
    assert values["[%name_html%]"] == " &lt;b&gt;O&#x27;Neill &amp; Co&lt;/b&gt;"
    assert values["[%name_text%]"] == " <b>O'Neill & Co</b>"
    assert personal["custom_args"] == {"alert": str(alert.id), "alert_delivery": str(rows["oneill@example.org"].id)}
    token = values["[%unsubscribe_text%]"].rsplit("/", 1)[1]
    assert tokens.load_subscriber(token, "unsubscribe").email == "oneill@example.org"


def test_a_refused_address_is_split_out_and_failed_with_the_reason(ctx, sendgrid, standin) -> None:
    emails = many(8, "en", "member")
    standin.refuse("member5@example.org")
    alert = make_alert()
    sending.start(alert)
    drain_jobs()

    rows = deliveries(alert.id)
    assert rows["member5@example.org"].status == "failed"
    assert "valid address" in rows["member5@example.org"].reason
    assert {email: row.status for email, row in rows.items() if email != "member5@example.org"} == dict.fromkeys(
        set(emails) - {"member5@example.org"}, "sent"
    )
    assert standin.count("member5@example.org") == 0
    assert all(standin.count(email) == 1 for email in emails if email != "member5@example.org")
    # 8 → 4 + 4 → (2 + 2) → (1 + 1): the first request, then the halves that hold the bad address.
    assert standin.requests == 1 + 2 + 2 + 2


def test_a_rate_limited_batch_is_retried_after_the_wait_and_sent_once(ctx, sendgrid, standin) -> None:
    emails = many(30, "en", "friend")
    standin.rate_limit(times=1, reset_in=120)
    alert = make_alert()
    sending.start(alert)
    while queue.run_due():  # what is due now; the retry waits for its time
        pass

    rows = deliveries(alert.id)
    assert {row.status for row in rows.values()} == {"pending"}
    assert all(row.lease_until > utcnow() for row in rows.values())
    assert standin.accepted == []

    db.session.execute(sa.update(AlertDelivery).values(lease_until=utcnow()))
    db.session.commit()
    drain_jobs()
    assert {row.status for row in deliveries(alert.id).values()} == {"sent"}
    assert standin.counts() == dict.fromkeys(emails, 1)
    assert standin.requests == 2
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).status == "finished"


def test_a_dropped_connection_leaves_the_batch_uncertain_and_it_is_never_resent(ctx, sendgrid, standin) -> None:
    emails = many(12, "en", "ally")
    standin.drop(times=1)
    alert = make_alert()
    sending.start(alert)
    drain_jobs()

    rows = deliveries(alert.id)
    assert {row.status for row in rows.values()} == {"uncertain"}
    assert all("may have been sent" in row.reason for row in rows.values())
    assert standin.counts() == dict.fromkeys(emails, 1)  # the stand-in took it before dropping
    sending.start(db.session.get(Alert, alert.id))
    drain_jobs()
    assert standin.requests == 1


def test_a_rate_limit_stops_the_job_and_the_chunk_built_meanwhile_waits_too(
    ctx, sendgrid, standin, monkeypatch
) -> None:
    monkeypatch.setattr(sending, "MAX_BATCH", 2)
    many(4, "en", "patient")
    standin.rate_limit(times=1, reset_in=120)
    alert = make_alert()
    sending.start(alert)
    while queue.run_due():
        pass

    assert standin.requests == 1  # the second chunk, built while the first was out, was not sent
    rows = deliveries(alert.id).values()
    assert {row.status for row in rows} == {"pending"}
    assert all(row.lease_until > utcnow() for row in rows)

    db.session.execute(sa.update(AlertDelivery).values(lease_until=utcnow()))
    db.session.commit()
    drain_jobs()
    assert {row.status for row in deliveries(alert.id).values()} == {"sent"}
    assert set(standin.counts().values()) == {1} and len(standin.counts()) == 4
