"""How an alert reaches its subscribers, on the outbox backend with the jobs run in this process:
deliveries made once, targeting, suppression recorded, each message personalised and
escaped, RFC 8058 headers, one language per chunk, and the sending rule when things fail."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaign import queue
from campaign.alerts import render, sending, tokens
from campaign.alerts.models import Alert, AlertDelivery, AlertStatus, AlertText, Subscriber, Topic
from campaign.db import utcnow
from campaign.extensions import db
from campaign.mailings.backends import SendResult
from campaign.queue import Job
from tests.factories import drain_jobs, text_of

SITE = "https://alerts.example.org"


@pytest.fixture(autouse=True)
def https_site(app, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "SITE_URL", SITE)


def make_alert(
    topics: Iterable[str] = ("letters",),
    texts: dict[str, tuple[str, str]] | None = None,
    languages: Iterable[str] = (),
    language: str = "en",
) -> Alert:
    topic_ids = list(db.session.scalars(sa.select(Topic.id).where(Topic.key.in_(list(topics)))))
    alert = Alert(language=language, topic_ids=topic_ids, languages=list(languages))
    for lang, (subject, body) in (texts or {"en": ("A new letter", "Please read **it**.")}).items():
        alert.texts.append(AlertText(language=lang, subject=subject, body=body))
    db.session.add(alert)
    db.session.commit()
    return alert


def redispatch(alert_id: int) -> None:
    row = queue.schedule("alert.dispatch", {"alert_id": alert_id})
    db.session.commit()
    queue.dispatch(row)


def deliveries(alert_id: int) -> dict[str, AlertDelivery]:
    db.session.expire_all()
    rows = db.session.scalars(sa.select(AlertDelivery).where(AlertDelivery.alert_id == alert_id))
    return {row.email: row for row in rows}


def received(outbox) -> Counter[str]:
    return Counter(message["To"].addresses[0].addr_spec for message in outbox.messages())


def html_of(message) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


class BatchOnly:
    """A test backend defining ``send_batch`` alone: ``prepare_batch`` defers to it."""

    def prepare_batch(self, batch):
        return functools.partial(self.send_batch, batch)


class RecordingBackend(BatchOnly):
    """Wraps a backend and keeps each batch it was given."""

    name = "recording"

    def __init__(self, inner) -> None:
        self.inner, self.batches = inner, []

    def send(self, message):
        return self.inner.send(message)

    def send_batch(self, batch):
        self.batches.append(batch)
        return self.inner.send_batch(batch)


@pytest.fixture
def recording(app, monkeypatch) -> RecordingBackend:
    backend = RecordingBackend(app.extensions["mail_backend"])
    monkeypatch.setitem(app.extensions, "mail_backend", backend)
    return backend


# --- who receives it, once ------------------------------------------------------------------


def test_each_targeted_subscriber_gets_one_delivery_and_a_second_start_adds_none(ctx, outbox, subscriber) -> None:
    targeted = [subscriber(topics=("letters",)).email for _ in range(3)]
    subscriber(topics=("meetings",))
    subscriber(topics=("letters",), status="pending")
    subscriber(topics=("letters",), status="unsubscribed")
    alert = make_alert()

    assert sending.start(alert) == 3
    assert sending.start(alert) == 0
    drain_jobs()

    assert received(outbox) == Counter(targeted)
    assert {email: row.status for email, row in deliveries(alert.id).items()} == dict.fromkeys(targeted, "sent")
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).status == AlertStatus.FINISHED
    subscriber(topics=("letters",))  # a newcomer after the alert went out
    assert sending.start(db.session.get(Alert, alert.id)) == 0
    drain_jobs()
    assert received(outbox) == Counter(targeted)


def test_the_deliveries_are_made_by_one_insert_select_without_reading_the_subscribers(app, ctx, subscriber) -> None:
    for _ in range(5):
        subscriber()
    alert = make_alert()
    statements: list[str] = []

    def note(conn, cursor, statement, *args) -> None:
        statements.append(" ".join(statement.split()).lower())

    engine = db.session.get_bind()
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        made = sending.make_deliveries(alert)
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)

    assert made == 5
    inserts = [s for s in statements if s.startswith("insert")]
    assert len(inserts) == 1
    assert inserts[0].startswith("insert into alert_deliveries") and "from subscribers" in inserts[0]
    assert not [s for s in statements if "subscribers" in s and not s.startswith("insert")]


def test_targeting_by_topic_and_language(ctx, outbox, subscriber, topic) -> None:
    darfur = topic("Darfur")
    en = subscriber(language="en", topics=(darfur,)).email
    fr = subscriber(language="fr", topics=(darfur, "letters")).email
    es = subscriber(language="es", topics=(darfur,)).email
    subscriber(language="en", topics=("meetings",))
    texts = {"en": ("Darfur: the letter", "English body"), "fr": ("Darfour : la lettre", "Texte français")}

    # No languages chosen: the languages the alert has a text in.
    first = make_alert(topics=(darfur.key,), texts=texts)
    sending.start(first)
    # Spanish chosen without a Spanish text: the original (English) text.
    second = make_alert(topics=(darfur.key,), texts=texts, languages=("fr", "es"))
    sending.start(second)
    drain_jobs()

    assert set(deliveries(first.id)) == {en, fr}
    assert set(deliveries(second.id)) == {fr, es}
    subjects = Counter((m["To"].addresses[0].addr_spec, str(m["Subject"])) for m in outbox.messages())
    assert subjects == Counter(
        {
            (en, "Darfur: the letter"): 1,
            (fr, "Darfour : la lettre"): 2,
            (es, "Darfur: the letter"): 1,
        }
    )
    spanish = next(m for m in outbox.messages() if m["To"].addresses[0].addr_spec == es)
    assert text_of(spanish).startswith("Hello ")  # the layout speaks the text's language


def test_suppressed_subscribers_are_recorded_with_the_reason_and_not_sent(ctx, outbox, subscriber) -> None:
    kept = subscriber().email
    bounced = subscriber(suppressed=True).email
    alert = make_alert()
    sending.start(alert)
    drain_jobs()

    rows = deliveries(alert.id)
    assert rows[bounced].status == "suppressed"
    assert rows[bounced].reason == "suppressed: bounce: test"
    assert received(outbox) == Counter([kept])
    assert sending.progress(alert.id).counts["suppressed"] == 1
    assert sending.progress(alert.id).done == 2


def test_a_subscriber_who_leaves_after_the_start_is_not_sent(ctx, outbox, subscriber) -> None:
    from campaign.alerts import subscribers

    stays, leaves = subscriber().email, subscriber()
    alert = make_alert()
    sending.make_deliveries(alert)
    alert.status = AlertStatus.SENDING.value
    db.session.commit()
    subscribers.unsubscribe(leaves, via="page")
    db.session.commit()
    redispatch(alert.id)
    drain_jobs()

    assert received(outbox) == Counter([stays])
    assert deliveries(alert.id)[leaves.email].status == "suppressed"


# --- what each recipient receives -------------------------------------------------------------


def test_each_message_carries_its_recipients_name_links_and_the_one_click_headers(ctx, outbox, subscriber) -> None:
    from campaign.admin.models import CoalitionSettings

    db.session.merge(
        CoalitionSettings(
            id=1,
            name="Civilian Shield",
            postal_address="1 Rue de la Paix\n1202 Genève",
            privacy_notice="We keep little.",
        )
    )
    db.session.commit()
    odd = subscriber(name="<b>O'Neill & Co</b>")
    plain = subscriber(name="Amina")
    alert = make_alert(texts={"en": ("Line\nbreak [%name_text%]", "Read [the letter](https://example.org/l?a=1&b=2).")})
    sending.start(alert)
    drain_jobs()

    messages = {m["To"].addresses[0].addr_spec: m for m in outbox.messages()}
    assert set(messages) == {odd.email, plain.email}
    for who, message in messages.items():
        assert str(message["Subject"]) == "Line break [\u2060%name_text%]"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = re.fullmatch(r"<(https://alerts\.example\.org/unsubscribe/[\w.-]+)>", message["List-Unsubscribe"])
        assert link, message["List-Unsubscribe"]
        token = link.group(1).rsplit("/", 1)[1]
        assert tokens.load_subscriber(token, "unsubscribe").email == who
        text, html = text_of(message), html_of(message)
        assert link.group(1) in text and link.group(1) in html
        assert "/subscribe/preferences/" in text and "/subscribe/preferences/" in html
        assert "1202 Genève" in text and "1202 Genève" in html
        assert "We keep little." in text and "We keep little." in html
        assert "the letter (https://example.org/l?a=1&b=2)" in text
        assert '<a href="https://example.org/l?a=1&amp;b=2"' in html
        assert "[%" not in text and "[%" not in html.replace("[\u2060%", "")
    odd_message = messages[odd.email]
    assert "Hello &lt;b&gt;O&#x27;Neill &amp; Co&lt;/b&gt;," in html_of(odd_message)
    assert "<b>O'Neill" not in html_of(odd_message)
    assert text_of(odd_message).startswith("Hello <b>O'Neill & Co</b>,")
    assert text_of(messages[plain.email]).startswith("Hello Amina,")


def test_a_subscriber_without_a_name_is_greeted_without_one(ctx, subscriber) -> None:
    nameless = subscriber(language="fr")
    nameless.name = ""
    db.session.commit()
    alert = make_alert(texts={"fr": ("Sujet", "Corps")}, language="fr")
    message = render.message_for_subscriber(alert, nameless)
    assert message.text.startswith("Bonjour,\n")
    assert "<p>Bonjour,</p>" in message.html
    assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_tags_typed_by_a_coordinator_never_become_tags(ctx, subscriber) -> None:
    someone = subscriber(name="Amina")
    body = "Yours [%unsubscribe_html%] and [%name_text%] <script>alert(1)</script>"
    alert = make_alert(texts={"en": ("Subject [%name_html%]", body)})
    alert_parts = render.parts(alert, "en")
    own_tags = set(render.TAGS.values())
    assert set(re.findall(r"\[%\w+%\]", alert_parts.html + alert_parts.text + alert_parts.subject)) <= own_tags
    assert alert_parts.html.count("[%unsubscribe_html%]") == 1  # the layout's link only
    assert alert_parts.text.count("[%name_text%]") == 1  # the greeting only
    assert "<script>" not in alert_parts.html
    message = render.message_for_subscriber(alert, someone)
    assert "Amina" not in message.subject
    assert render.tag_problem(body) is not None and render.tag_problem("Fine text") is None


# --- chunks ------------------------------------------------------------------------------------


def test_a_chunk_carries_one_language_and_at_most_a_batch(ctx, outbox, subscriber, recording, monkeypatch) -> None:
    monkeypatch.setattr(sending, "MAX_BATCH", 2)
    for language in ("en", "fr", "en", "fr", "en", "ar"):
        subscriber(language=language)
    alert = make_alert(texts={"en": ("S", "B"), "fr": ("S fr", "B fr")}, languages=("en", "fr", "ar"))
    sending.start(alert)
    drain_jobs()

    sizes = sorted(
        (batch.subject, len(batch.recipients), len({r.address for r in batch.recipients}))
        for batch in recording.batches
    )
    # en: 3 -> 2 + 1; fr: 2; ar (the original, English, text) 1: four requests, none mixing languages.
    assert sizes == [("S", 1, 1), ("S", 1, 1), ("S", 2, 2), ("S fr", 2, 2)]
    for batch in recording.batches:
        assert len({r.substitutions[render.TAGS["name", "text"]][:1] for r in batch.recipients}) == 1
        for r in batch.recipients:
            assert r.custom_args["alert"] == str(alert.id)
            assert r.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sum(received(outbox).values()) == 6


def test_a_claim_takes_no_more_than_its_limit_and_one_language(ctx, subscriber) -> None:
    for language in ("en", "fr", "en", "en", "fr"):
        subscriber(language=language)
    alert = make_alert(texts={"en": ("S", "B"), "fr": ("S", "B")})
    sending.make_deliveries(alert)
    alert.status = AlertStatus.SENDING.value
    db.session.commit()

    first = sending.claim(alert.id, 2, "worker-a")
    second = sending.claim(alert.id, 5, "worker-b")
    rows = deliveries(alert.id).values()
    assert len(first[1]) == 2 and {r.language for r in rows if r.lease_owner == "worker-a"} == {first[0]}
    assert {r.language for r in rows if r.lease_owner == "worker-b"} == {second[0]}
    assert Counter(r.lease_owner for r in rows)[None] == 5 - len(first[1]) - len(second[1])


def test_a_scheduled_alert_waits_for_its_time(ctx, outbox, subscriber) -> None:
    subscriber()
    alert = make_alert()
    sending.start(alert, due_at=utcnow() + timedelta(days=2))
    queue.run_due()
    assert received(outbox) == Counter()
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).status == AlertStatus.SCHEDULED
    assert sending.send_chunk(alert.id) == 0


# --- when things go wrong ----------------------------------------------------------------------


def test_an_expired_lease_makes_deliveries_uncertain_and_they_are_never_resent(ctx, outbox, subscriber) -> None:
    emails = sorted(subscriber().email for _ in range(3))
    alert = make_alert()
    sending.make_deliveries(alert)
    alert.status = AlertStatus.SENDING.value
    db.session.commit()
    _, lost = sending.claim(alert.id, 2, "gone-host:4242/job-7")  # a worker claims two, then dies

    assert sending.expire_leases(utcnow() + timedelta(hours=1)) == 2
    redispatch(alert.id)
    drain_jobs()

    rows = deliveries(alert.id)
    uncertain = {email for email, row in rows.items() if row.status == "uncertain"}
    assert {rows[email].id for email in uncertain} == set(lost)
    assert all("may have been sent" in rows[email].reason for email in uncertain)
    assert received(outbox) == Counter(set(emails) - uncertain)
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).status == AlertStatus.FINISHED


def test_a_batch_whose_sending_fails_midway_stays_sending_then_uncertain(app, ctx, subscriber, monkeypatch) -> None:
    class Broken(BatchOnly):
        name = "broken"

        def send_batch(self, batch):
            raise RuntimeError("the worker was killed while the backend had the batch")

    subscriber()
    alert = make_alert()
    sending.make_deliveries(alert)
    alert.status = AlertStatus.SENDING.value
    db.session.commit()
    monkeypatch.setitem(app.extensions, "mail_backend", Broken())
    with pytest.raises(RuntimeError):
        sending.send_chunk(alert.id)
    assert [row.status for row in deliveries(alert.id).values()] == ["sending"]
    sending.expire_leases(utcnow() + timedelta(hours=1))
    assert [row.status for row in deliveries(alert.id).values()] == ["uncertain"]


class FlakyBackend(RecordingBackend):
    """Refuses its first batch as retryable (a 429 saying when to come back), then sends."""

    def send_batch(self, batch):
        self.batches.append(batch)
        if len(self.batches) == 1:
            return [SendResult(ok=False, error="429 too many", retryable=True, retry_after=90)] * len(batch.recipients)
        return self.inner.send_batch(batch)


def test_a_retryable_refusal_waits_its_backoff_then_sends_once(app, ctx, outbox, subscriber, monkeypatch) -> None:
    backend = FlakyBackend(app.extensions["mail_backend"])
    monkeypatch.setitem(app.extensions, "mail_backend", backend)
    emails = {subscriber().email for _ in range(2)}
    alert = make_alert()
    sending.start(alert)
    queue.run_due()

    rows = deliveries(alert.id)
    assert {row.status for row in rows.values()} == {"pending"}
    assert all(row.lease_until > utcnow() + timedelta(seconds=60) for row in rows.values())
    assert all("429 too many" in row.reason for row in rows.values())
    assert sending.send_chunk(alert.id) == 0  # not before its time
    retry = db.session.scalar(sa.select(Job).where(Job.kind == "alert.dispatch", Job.status == "queued"))
    assert retry is not None and retry.due_at > utcnow() + timedelta(seconds=60)

    db.session.execute(sa.update(AlertDelivery).values(lease_until=utcnow()))
    drain_jobs()
    assert received(outbox) == Counter(emails)
    assert len(backend.batches) == 2
    assert {row.status for row in deliveries(alert.id).values()} == {"sent"}


def test_results_are_recorded_per_recipient(app, ctx, subscriber, monkeypatch) -> None:
    class Mixed(BatchOnly):
        name = "mixed"

        def send_batch(self, batch):
            answers = {
                "ok@example.org": SendResult(ok=True, message_id="m-1"),
                "bad@example.org": SendResult(ok=False, error="400 does not contain a valid address"),
                "lost@example.org": SendResult(ok=False, uncertain=True, error="connection dropped"),
            }
            return [answers[r.address] for r in batch.recipients]

    for email in ("ok@example.org", "bad@example.org", "lost@example.org"):
        subscriber(email=email)
    alert = make_alert()
    sending.make_deliveries(alert)
    alert.status = AlertStatus.SENDING.value
    db.session.commit()
    monkeypatch.setitem(app.extensions, "mail_backend", Mixed())
    assert sending.send_chunk(alert.id) == 3

    rows = deliveries(alert.id)
    assert (rows["ok@example.org"].status, rows["ok@example.org"].message_id) == ("sent", "m-1")
    assert rows["ok@example.org"].sent_at is not None
    assert (rows["bad@example.org"].status, rows["bad@example.org"].reason) == (
        "failed",
        "400 does not contain a valid address",
    )
    assert rows["lost@example.org"].status == "uncertain"
    assert "connection dropped" in rows["lost@example.org"].reason
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).status == AlertStatus.FINISHED
    assert sending.progress(alert.id).percent == 100


def test_a_deleted_subscriber_is_failed_with_the_reason(ctx, outbox, subscriber) -> None:
    gone = subscriber()
    alert = make_alert()
    sending.make_deliveries(alert)
    alert.status = AlertStatus.SENDING.value
    db.session.commit()
    db.session.execute(
        sa.update(AlertDelivery).where(AlertDelivery.subscriber_id == gone.id).values(subscriber_id=None)
    )
    db.session.execute(sa.delete(Subscriber).where(Subscriber.id == gone.id))
    db.session.commit()
    sending.send_chunk(alert.id)
    row = next(iter(deliveries(alert.id).values()))
    assert (row.status, row.reason) == ("failed", "the subscriber was deleted before sending")
    assert received(outbox) == Counter()


def test_an_alert_whose_jobs_failed_for_good_is_resumed_by_maintenance(ctx, outbox, subscriber) -> None:
    from campaign.alerts import jobs

    emails = {subscriber().email for _ in range(2)}
    alert = make_alert()
    sending.make_deliveries(alert)
    alert.status, alert.due_at = AlertStatus.SENDING.value, utcnow() - timedelta(hours=1)
    db.session.commit()
    assert jobs.redispatch_stalled() == 1  # pending deliveries, and no job queued to send them
    drain_jobs()
    assert received(outbox) == Counter(emails)
    assert jobs.redispatch_stalled() == 0


def test_a_large_start_refreshes_the_statistics_the_claims_are_planned_on(ctx, subscriber, monkeypatch) -> None:
    monkeypatch.setattr(sending, "ANALYZE_AFTER", 3)
    for _ in range(3):
        subscriber()
    alert = make_alert()
    alert.due_at = utcnow() + timedelta(days=1)  # made now, sent tomorrow
    assert sending.start(alert, due_at=alert.due_at) == 3
    if db.session.get_bind().dialect.name == "postgresql":
        rows = db.session.scalar(sa.text("SELECT reltuples FROM pg_class WHERE relname = 'alert_deliveries'"))
        assert rows >= 3
    assert sending.progress(alert.id).counts["pending"] == 3
