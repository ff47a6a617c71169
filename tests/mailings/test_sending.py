"""The sending rule with inline jobs, on the outbox and on a real SMTP server (aiosmtpd):
no contact twice, none silently skipped, and what happens when things go wrong."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from campaign import queue
from campaign.auth.models import User
from campaign.contacts import services as contacts
from campaign.contacts.models import Contact
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import pdf
from campaign.mailings import documents, jobs, personalise, sending, services
from campaign.mailings.backends import OutboxBackend, SMTPBackend
from campaign.mailings.models import Delivery, DeliveryEvent, Mailing, MailingDocument
from campaign.queue import Job
from tests.factories import drain_jobs
from tests.mailings.smtp_sink import Sink, running
from tests.mailings.world import CONTACTS, World, approved, make_world

EVERYONE = sorted(row[1] for row in CONTACTS)


@pytest.fixture
def sink(app, monkeypatch) -> Iterator[Sink]:
    """Mail goes to a local SMTP server for this test."""
    server = Sink()
    with running(server) as port:
        monkeypatch.setitem(app.extensions, "mail_backend", SMTPBackend("127.0.0.1", port, timeout=5))
        yield server


def _user(account) -> User:
    return db.session.get(User, account.id)


def _request(world: World, mailing_id: int, request: dict | None = None) -> Job:
    row = services.request_send(db.session.get(Mailing, mailing_id), request or {}, actor=_user(world.author))
    db.session.commit()
    return row


def _send(world: World, mailing_id: int, request: dict | None = None) -> None:
    queue.dispatch(_request(world, mailing_id, request))


def _make_due(*emails: str) -> None:
    """Bring retries and scheduled deliveries forward to now."""
    query = sa.update(Delivery).where(Delivery.status == "pending")
    if emails:
        query = query.where(Delivery.email.in_(emails))
    db.session.execute(query.values(due_at=utcnow()))
    db.session.commit()


def _deliveries(mailing_id: int) -> dict[str, Delivery]:
    db.session.expire_all()
    rows = db.session.scalars(sa.select(Delivery).where(Delivery.mailing_id == mailing_id))
    return {row.email: row for row in rows}


def _states(mailing_id: int) -> dict[str, str]:
    return {email: row.status for email, row in _deliveries(mailing_id).items()}


def _outbox_counts(outbox) -> Counter[str]:
    return Counter(message["To"].addresses[0].addr_spec for message in outbox.messages())


def _events(delivery: Delivery) -> list[str]:
    return list(db.session.scalars(sa.select(DeliveryEvent.kind).where(DeliveryEvent.delivery_id == delivery.id)))


def _status(mailing_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Mailing, mailing_id).status


# --- no contact twice ------------------------------------------------------------------------


def test_no_contact_twice_when_dispatch_and_chunks_run_again(app, ctx, outbox, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "MAILING_CHUNK", 2)
    world = make_world(app, suppressed=1)
    mailing_id = approved(app, world)
    _request(world, mailing_id)
    # The dispatch ran twice before any chunk did: each scheduled a chunk job per two deliveries.
    assert len(sending.dispatch_due(mailing_id)) == len(sending.dispatch_due(mailing_id)) == 3
    db.session.commit()
    drain_jobs()  # the six chunks, and the dispatch job request_send made
    # Every job run again from the start, as RQ does when a worker dies with retries left,
    # and a stray `flask mailings send` beside them.
    ran = db.session.execute(sa.update(Job).where(Job.kind.like("mailing.%")).values(status="queued")).rowcount
    db.session.commit()
    assert drain_jobs() == ran >= 5
    assert sending.send_chunk(mailing_id) == 0

    assert _outbox_counts(outbox) == Counter(email for email in EVERYONE if email != "oneill@mission.example")
    assert sorted(Counter(_states(mailing_id).values()).items()) == [("sent", 5), ("suppressed", 1)]
    assert _status(mailing_id) == "finished"
    chunks = db.session.scalar(sa.select(sa.func.count()).where(Job.kind == "mailing.chunk"))
    assert chunks >= 6  # twice as many chunk jobs as there were deliveries to share out


def _chunk_jobs(mailing_id: int) -> list[Job]:
    db.session.expire_all()
    rows = db.session.scalars(sa.select(Job).where(Job.kind == "mailing.chunk").order_by(Job.due_at, Job.id))
    return [row for row in rows if row.payload["mailing_id"] == mailing_id]


def test_a_chunk_job_takes_over_the_next_due_chunk_jobs(app, ctx, outbox, monkeypatch) -> None:
    """One job sends its chunk, then the chunks of the mailing's other due jobs (marked done by
    it, so they send nothing more when their turn comes): one job start for the whole mailing."""
    monkeypatch.setitem(app.config, "MAILING_CHUNK", 2)
    world = make_world(app, suppressed=1)
    mailing_id = approved(app, world)
    _request(world, mailing_id)
    queue.run_job(db.session.scalar(sa.select(Job.id).where(Job.kind == "mailing.dispatch")))
    first, *others = _chunk_jobs(mailing_id)
    assert len(others) == 2

    queue.run_job(first.id)
    assert _outbox_counts(outbox) == Counter(email for email in EVERYONE if email != "oneill@mission.example")
    assert _status(mailing_id) == "finished"
    rows = _chunk_jobs(mailing_id)
    assert {row.status for row in rows} == {"finished"}
    assert [row.message for row in rows[1:]] == [f"sent by job {first.id}"] * 2
    assert drain_jobs() == 0  # nothing left for the jobs taken over


def test_a_chunk_job_leaves_chunks_not_yet_due_to_their_own_jobs(app, ctx, outbox, monkeypatch) -> None:
    """At 60 messages a minute a chunk of two is due every two seconds: the first job sends its
    chunk alone, and the next chunk waits for its own time."""
    monkeypatch.setitem(app.config, "MAILING_CHUNK", 2)
    world = make_world(app)
    mailing_id = approved(app, world)
    db.session.execute(sa.update(Mailing).where(Mailing.id == mailing_id).values(rate_per_minute=60))
    db.session.commit()
    _request(world, mailing_id)
    queue.run_job(db.session.scalar(sa.select(Job.id).where(Job.kind == "mailing.dispatch")))  # runs the first
    first, *others = _chunk_jobs(mailing_id)
    assert [round((row.due_at - first.due_at).total_seconds()) for row in others] == [2, 4]
    assert first.status == "finished" and not first.message
    assert sum(_outbox_counts(outbox).values()) == 2
    assert [row.status for row in others] == ["queued", "queued"]


def test_a_claim_takes_no_more_than_its_limit(app, ctx) -> None:
    world = make_world(app)
    mailing_id = approved(app, world)
    _request(world, mailing_id)
    first, second = sending.claim(mailing_id, 2, "worker-a"), sending.claim(mailing_id, 3, "worker-b")
    assert (len(first), len(second)) == (2, 3) and not set(first) & set(second)
    owners = Counter(row.lease_owner for row in _deliveries(mailing_id).values())
    assert owners == {"worker-a": 2, "worker-b": 3, None: 1}


class _DiesInTheBackend:
    """Hands the ``dies_on``-th message to nobody and raises, as a worker killed mid-send."""

    name = "dies"

    def __init__(self, inner: OutboxBackend, dies_on: int) -> None:
        self.inner, self.dies_on, self.calls = inner, dies_on, 0

    def send(self, message):
        self.calls += 1
        if self.calls == self.dies_on:
            raise RuntimeError("the worker was killed while the backend had the message")
        return self.inner.send(message)


class _DiesWritingInTheBackend(_DiesInTheBackend):
    """Writes each message with ``start`` (as SendGrid does; its answer is read later) and dies
    writing the ``dies_on``-th: the answer read just before must still be recorded."""

    def start(self, message):
        result = self.send(message)
        return lambda: result


@pytest.mark.parametrize("backend", [_DiesInTheBackend, _DiesWritingInTheBackend])
def test_a_chunk_that_dies_mid_send_puts_back_only_what_it_never_handed_over(
    app, ctx, outbox, monkeypatch, backend
) -> None:
    monkeypatch.setitem(app.extensions, "mail_backend", backend(app.extensions["mail_backend"], 2))
    world = make_world(app)
    mailing_id = approved(app, world)
    _send(world, mailing_id)

    states = _states(mailing_id)
    in_flight = [email for email, state in states.items() if state == "sending"]
    assert Counter(states.values()) == {"sent": 1, "sending": 1, "pending": 4}
    assert all(row.attempts == 0 for row in _deliveries(mailing_id).values() if row.status == "pending")
    drain_jobs()  # the chunk job's retry
    assert Counter(_states(mailing_id).values()) == {"sent": 5, "sending": 1}
    assert sending.expire_leases(utcnow() + timedelta(seconds=app.config["MAILING_LEASE"] + 1)) == 1
    drain_jobs()
    assert _states(mailing_id)[in_flight[0]] == "uncertain"
    assert _outbox_counts(outbox) == Counter(email for email in EVERYONE if email != in_flight[0])
    assert _status(mailing_id) == "finished"


def test_a_chunk_out_of_lease_time_puts_the_rest_back_for_another_chunk(app, ctx, outbox, monkeypatch) -> None:
    monkeypatch.setattr(sending, "LEASE_SHARE", 0)  # out of time after the first message
    world = make_world(app)
    mailing_id = approved(app, world)
    _send(world, mailing_id)
    assert Counter(_states(mailing_id).values()) == {"sent": 1, "pending": 5}
    drain_jobs()
    assert _outbox_counts(outbox) == Counter(EVERYONE)
    assert all(row.attempts == 1 for row in _deliveries(mailing_id).values())
    assert _status(mailing_id) == "finished"


def test_a_mailing_whose_chunk_jobs_failed_for_good_is_resumed_by_maintenance(app, ctx, outbox, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("the PDF renderer crashed")

    monkeypatch.setattr(personalise.Renderer, "document", broken)
    world = make_world(app)
    mailing_id = approved(app, world)
    _send(world, mailing_id)
    drain_jobs()  # the chunk job's retries, all failing
    assert set(_states(mailing_id).values()) == {"pending"} and outbox.messages() == []
    assert db.session.scalar(sa.select(Job.status).where(Job.kind == "mailing.chunk")) == "failed"
    assert jobs.redispatch_stalled() == 0  # too recent: the failure may be passing

    monkeypatch.undo()
    ago = utcnow() - jobs.STALLED - timedelta(minutes=1)
    db.session.execute(sa.update(Delivery).values(due_at=ago))
    db.session.execute(sa.update(Job).where(Job.finished_at.is_not(None)).values(finished_at=ago))
    db.session.commit()
    queue.recover()  # the worker's maintenance loop
    drain_jobs()
    assert _outbox_counts(outbox) == Counter(EVERYONE)
    assert _status(mailing_id) == "finished"
    assert jobs.redispatch_stalled() == 0


# --- suppressed, uncertain, resolved --------------------------------------------------------------


def test_suppressed_contacts_are_recorded_with_the_reason(app, ctx, outbox) -> None:
    world = make_world(app, suppressed=1)
    mailing_id = approved(app, world)
    _request(world, mailing_id, {"at": (utcnow() + timedelta(hours=1)).isoformat()})
    # Unsubscribed between the request and the send.
    contacts.suppress(db.session.get(Contact, world.contact_ids[1]), "unsubscribed", "asked by email")
    db.session.commit()
    _make_due()
    drain_jobs()
    rows = _deliveries(mailing_id)
    assert (rows["oneill@mission.example"].status, rows["oneill@mission.example"].reason) == (
        "suppressed",
        "Bounced: mailbox full",
    )
    assert rows["dupont@mission.example"].status == "suppressed"
    assert rows["dupont@mission.example"].reason == "suppressed before sending: unsubscribed"
    assert "suppressed" in _events(rows["dupont@mission.example"])
    assert set(_outbox_counts(outbox)) == set(EVERYONE) - {"oneill@mission.example", "dupont@mission.example"}
    assert _status(mailing_id) == "finished"


def test_expired_leases_become_uncertain_and_are_settled_only_by_a_coordinator(app, ctx, outbox) -> None:
    world = make_world(app)
    mailing_id = approved(app, world)
    row = _request(world, mailing_id)
    lost = sending.claim(mailing_id, 3, "gone-host:4242/job-7")  # a worker claims three, then dies
    db.session.execute(sa.update(Delivery).where(Delivery.id.in_(lost)).values(lease_until=utcnow()))
    db.session.commit()
    queue.recover()  # the worker's maintenance loop
    queue.dispatch(row)
    drain_jobs()

    rows = {row.id: row for row in _deliveries(mailing_id).values()}
    assert {rows[i].status for i in lost} == {"uncertain"}
    assert all("lease-expired" in _events(rows[i]) for i in lost)
    assert "may have been sent" in rows[lost[0]].reason
    assert set(_outbox_counts(outbox)) == {row.email for row in rows.values()} - {rows[i].email for i in lost}
    assert _status(mailing_id) == "finished"
    status = app.test_cli_runner().invoke(args=["mailings", "status", str(mailing_id)])
    assert f"uncertain: delivery {lost[0]} to {rows[lost[0]].email}" in status.output
    assert not sending.send_chunk(mailing_id) and not drain_jobs()  # never re-sent automatically

    coordinator = _user(world.approver)
    arrived, missing, again = (rows[i] for i in lost)
    assert services.resolve(arrived, "sent", "The mission confirmed it by phone", coordinator) is None
    assert services.resolve(missing, "failed", "The mission never got it", coordinator) is None
    resend = services.resolve(again, "resend", "Nothing in the provider's log", coordinator)
    db.session.commit()
    queue.dispatch(resend)
    drain_jobs()

    rows = {row.id: row for row in _deliveries(mailing_id).values()}
    assert (rows[arrived.id].status, rows[arrived.id].sent_at is not None) == ("sent", True)
    assert rows[arrived.id].reason.endswith("The mission confirmed it by phone")
    assert rows[missing.id].status == "failed"
    assert rows[again.id].status == "sent"
    counts = _outbox_counts(outbox)
    assert (counts[arrived.email], counts[missing.email], counts[again.email]) == (0, 0, 1)
    assert _status(mailing_id) == "finished"
    with pytest.raises(services.MailingError, match="no longer uncertain"):
        services.resolve(rows[again.id], "resend", "Once more", coordinator)


# --- the backend's answers, from a real SMTP server -----------------------------------------------


def test_a_retryable_refusal_waits_with_backoff_then_sends(app, ctx, sink) -> None:
    sink.rcpt_replies["dupont@mission.example"] = ["451 4.7.1 Greylisted, try again later"]
    world = make_world(app)
    mailing_id = approved(app, world)
    started = utcnow()
    _send(world, mailing_id)

    waiting = _deliveries(mailing_id)["dupont@mission.example"]
    assert (waiting.status, waiting.attempts) == ("pending", 1)
    assert "451" in waiting.reason and "retry" in _events(waiting)
    assert waiting.due_at >= started + timedelta(seconds=30)
    retry = db.session.scalar(sa.select(Job).where(Job.kind == "mailing.dispatch", Job.status == "queued"))
    assert retry is not None and retry.due_at == waiting.due_at
    assert _status(mailing_id) == "sending"

    _make_due("dupont@mission.example")
    drain_jobs()
    assert sink.counts() == Counter(EVERYONE)
    assert set(_states(mailing_id).values()) == {"sent"}
    assert _status(mailing_id) == "finished"


def test_a_permanent_refusal_fails_with_the_reason(app, ctx, sink) -> None:
    sink.rcpt_replies["dupont@mission.example"] = ["550 5.1.1 No such user here"]
    world = make_world(app)
    mailing_id = approved(app, world)
    _send(world, mailing_id)
    drain_jobs()
    failed = _deliveries(mailing_id)["dupont@mission.example"]
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert "550" in failed.reason and "No such user" in failed.reason
    assert sink.counts() == Counter(email for email in EVERYONE if email != "dupont@mission.example")
    assert _status(mailing_id) == "finished"


def test_a_connection_dropped_after_data_is_uncertain_and_never_resent(app, ctx, sink) -> None:
    sink.drop_after_data.add("dupont@mission.example")
    world = make_world(app)
    mailing_id = approved(app, world)
    _send(world, mailing_id)
    drain_jobs()
    sending.expire_leases(utcnow() + timedelta(hours=1))
    drain_jobs()
    dropped = _deliveries(mailing_id)["dupont@mission.example"]
    assert dropped.status == "uncertain"
    assert dropped.reason.startswith("may have been sent:")
    assert sink.counts() == Counter(EVERYONE)  # the server had it: once, and only once
    assert _status(mailing_id) == "finished"


def test_a_connection_dropped_before_data_is_retried(app, ctx, sink) -> None:
    sink.drop_at_mail = 1  # the first message's connection, before anything was handed over
    world = make_world(app)
    mailing_id = approved(app, world)
    _send(world, mailing_id)
    [retried] = [row for row in _deliveries(mailing_id).values() if row.status == "pending"]
    assert "retry" in _events(retried)
    _make_due()
    drain_jobs()
    assert sink.counts() == Counter(EVERYONE)
    assert set(_states(mailing_id).values()) == {"sent"}


def test_a_bad_answer_to_quit_after_the_message_was_taken_is_still_sent(app, ctx, sink, monkeypatch) -> None:
    monkeypatch.setattr(SMTPBackend, "MESSAGES_PER_CONNECTION", 1)  # a QUIT after each message
    sink.quit_reply = "421 4.3.0 Shutting down"
    world = make_world(app)
    mailing_id = approved(app, world)
    _send(world, mailing_id)
    drain_jobs()
    assert set(_states(mailing_id).values()) == {"sent"}
    assert sink.counts() == Counter(EVERYONE)


def test_a_chunk_sends_on_one_connection(app, ctx, sink) -> None:
    world = make_world(app)
    _send(world, approved(app, world))
    assert len(sink.transports) == 1 and sink.counts() == Counter(EVERYONE)


def test_a_connection_the_server_closed_between_messages_is_replaced_at_once(app, ctx, sink) -> None:
    world = make_world(app)
    mailing_id = approved(app, world)
    row = _request(world, mailing_id)
    first = db.session.scalar(sa.select(Delivery.email).where(Delivery.mailing_id == mailing_id).order_by(Delivery.id))
    sink.hang_up_after.add(first)  # as a server that limits messages per connection
    queue.dispatch(row)
    assert sink.counts() == Counter(EVERYONE) and len(sink.transports) == 2
    assert set(_states(mailing_id).values()) == {"sent"}
    assert max(row.attempts for row in _deliveries(mailing_id).values()) == 1  # no retry was needed


# --- cancelling, the PDF, approval ----------------------------------------------------------------


def test_cancel_stops_pending_deliveries_with_the_reason(app, ctx, outbox) -> None:
    world = make_world(app)
    mailing_id = approved(app, world)
    _send(world, mailing_id, {"at": (utcnow() + timedelta(hours=2)).isoformat()})
    assert _status(mailing_id) == "scheduled"
    coordinator = _user(world.approver)
    assert services.cancel(db.session.get(Mailing, mailing_id), coordinator) == 6
    db.session.commit()
    _make_due()
    drain_jobs()
    assert outbox.messages() == []
    rows = _deliveries(mailing_id).values()
    assert {(row.status, row.reason) for row in rows} == {("cancelled", f"cancelled by {coordinator.email}")}
    assert _status(mailing_id) == "cancelled"
    with pytest.raises(services.MailingError, match="already cancelled"):
        services.cancel(db.session.get(Mailing, mailing_id), coordinator)


def test_the_pdf_is_rendered_once_per_mailing_and_language(app, ctx, outbox, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "MAILING_CHUNK", 2)
    renders = []
    original = pdf.render_letter_pdf

    def counting(letter, revision, *args, **kwargs):
        renders.append(revision.id)
        return original(letter, revision, *args, **kwargs)

    monkeypatch.setattr(pdf, "render_letter_pdf", counting)
    world = make_world(app)
    mailing_id = approved(app, world)
    _send(world, mailing_id)
    drain_jobs()

    documents = db.session.scalars(sa.select(MailingDocument).where(MailingDocument.mailing_id == mailing_id)).all()
    assert sorted(document.language for document in documents) == ["ar", "en", "fr"]
    assert len(renders) == 3 and set(renders) == {document.revision_id for document in documents}
    content = {f"{world.letter_slug}-{document.language}.pdf": document.content for document in documents}
    for message in outbox.messages():
        [attachment] = message.iter_attachments()
        assert attachment.get_content() == content[attachment.get_filename()]
    assert len(outbox.messages()) == 6


def _same_data(mailing: Mailing, **changes: object) -> services.MailingData:
    fields = {name: getattr(mailing, name) for name in ("subject", "introduction", "name", "rate_per_minute")}
    fields |= {"tags": list(mailing.tags), "countries": list(mailing.countries), "languages": list(mailing.languages)}
    return services.MailingData(letter=mailing.letter, **(fields | changes))


def test_a_change_after_approval_withdraws_it(app, ctx) -> None:
    world = make_world(app)
    mailing = db.session.get(Mailing, approved(app, world))
    author = _user(world.author)
    services.update_mailing(mailing, _same_data(mailing), actor=author)
    assert mailing.is_approved and mailing.status == "approved"  # nothing changed

    services.update_mailing(mailing, _same_data(mailing, subject="A new subject"), actor=author)
    db.session.commit()
    assert (mailing.status, mailing.is_approved, mailing.approved_by_id) == ("draft", False, None)
    assert mailing.revisions == {}
    with pytest.raises(services.MailingError, match="Only an approved mailing"):
        services.request_send(mailing, {}, actor=author)
    assert not _deliveries(mailing.id)


def _documents(mailing_id: int) -> dict[str, MailingDocument]:
    rows = db.session.scalars(sa.select(MailingDocument).where(MailingDocument.mailing_id == mailing_id))
    return {row.language: row for row in rows}


def test_approval_renders_the_pdfs_and_an_edit_drops_them_for_the_next_approval(app, ctx, outbox) -> None:
    world = make_world(app)
    mailing_id = approved(app, world)
    mailing = db.session.get(Mailing, mailing_id)
    row = services.render_documents_later(mailing)
    db.session.commit()
    queue.dispatch(row)
    drain_jobs()
    first = _documents(mailing_id)
    assert sorted(first) == ["ar", "en", "fr"]  # zh, ru and es speakers get the English letter
    assert all(document.content.startswith(b"%PDF") for document in first.values())
    assert documents.render_approved(mailing_id, mailing.approved_version) == 0  # all there already

    # A test message after approval attaches the stored PDF, and renders nothing more.
    assert sending.send_test(mailing_id, world.contact_ids[1], "me@example.org").ok
    assert _documents(mailing_id).keys() == first.keys()

    version = mailing.approved_version
    services.update_mailing(mailing, _same_data(mailing, subject="A new subject"), actor=_user(world.author))
    db.session.commit()
    assert _documents(mailing_id) == {}
    assert documents.render_approved(mailing_id, version) == 0  # that approval was withdrawn
    assert _documents(mailing_id) == {}

    services.approve(mailing, _user(world.approver))
    db.session.commit()
    assert documents.render_approved(mailing_id, mailing.approved_version) == 3
    second = _documents(mailing_id)
    assert sorted(second) == ["ar", "en", "fr"]
    _send(world, mailing_id)
    drain_jobs()
    content = {document.filename: document.content for document in second.values()}
    sent = [m for m in outbox.messages() if not m["Subject"].startswith("[Test]")]
    assert len(sent) == 6
    for message in sent:
        [attachment] = message.iter_attachments()
        assert attachment.get_content() == content[attachment.get_filename()]


def test_pdfs_rendered_while_an_edit_withdraws_the_approval_are_not_kept(app, ctx, monkeypatch) -> None:
    world = make_world(app)
    mailing_id = approved(app, world)
    mailing = db.session.get(Mailing, mailing_id)
    version = mailing.approved_version
    original = personalise.render_document

    def render_then_edit(mailing: Mailing, revision: object) -> bytes:
        content = original(mailing, revision)
        # A coordinator saves a change while the PDFs render: committed before they are stored.
        services.update_mailing(mailing, _same_data(mailing, subject="Changed meanwhile"), actor=_user(world.author))
        return content

    monkeypatch.setattr(personalise, "render_document", render_then_edit)
    assert documents.render_approved(mailing_id, version) == 0
    assert _documents(mailing_id) == {}
    assert db.session.get(Mailing, mailing_id).subject == "Changed meanwhile"


# --- when --------------------------------------------------------------------------------------


def test_before_the_meeting_each_contact_gets_it_at_nine_in_their_timezone(app, ctx, outbox) -> None:
    world = make_world(app, meeting_in=timedelta(days=10))
    mailing_id = approved(app, world)
    _send(world, mailing_id, {"before_meeting": "P3D", "local_time": "09:00"})

    mailing = db.session.get(Mailing, mailing_id)
    assert mailing.status == "scheduled" and outbox.messages() == []
    assert (mailing.schedule["before_meeting"], mailing.schedule["local_time"]) == ("P3D", "09:00")
    day = mailing.letter.meeting.starts_at_aware - timedelta(days=3)
    zones = {email: tz for _, email, *_, tz in CONTACTS}
    rows = _deliveries(mailing_id)
    for email, row in rows.items():
        local = row.due_at.astimezone(ZoneInfo(zones[email]))
        assert (local.date(), local.time()) == (day.astimezone(ZoneInfo(zones[email])).date(), time(9, 0)), email
    assert len({row.due_at for row in rows.values()}) >= 4  # New York, Paris, Cairo, Shanghai… differ
    first = min(row.due_at for row in rows.values())
    assert mailing.first_due_at == first
    [dispatch] = db.session.scalars(sa.select(Job).where(Job.kind == "mailing.dispatch")).all()
    assert (dispatch.status, dispatch.due_at) == ("queued", first)


@pytest.mark.parametrize(
    ("send_request", "message"),
    [
        ({"at": "2020-03-01T09:00:00+01:00"}, "that time has passed"),
        ({"at": (utcnow() - timedelta(minutes=5)).isoformat()}, "that time has passed"),
        ({"at": "2030-03-01T09:00:00"}, "offset from UTC"),
        ({"at": (utcnow() + timedelta(days=500)).isoformat()}, "400 days"),
        ({"before_meeting": "P30D", "local_time": "09:00"}, "30 days before the meeting is already past"),
        ({"before_meeting": "P3D", "local_time": "9 am"}, "time of day"),
        ({"before_meeting": "3 days", "local_time": "09:00"}, "not a duration"),
        ({"at": (utcnow() + timedelta(days=1)).isoformat(), "before_meeting": "P3D"}, "not both"),
    ],
)
def test_past_and_unusable_times_are_refused(app, ctx, send_request, message) -> None:
    world = make_world(app, meeting_in=timedelta(days=10))
    mailing_id = approved(app, world)
    with pytest.raises(services.MailingError, match=message):
        _request(world, mailing_id, send_request)
    db.session.rollback()
    assert _status(mailing_id) == "approved"
    assert not _deliveries(mailing_id)


# --- the command line ----------------------------------------------------------------------------


def test_flask_mailings_send_and_status(app, database, outbox) -> None:
    world = make_world(app, suppressed=1)
    mailing_id = approved(app, world)
    runner = app.test_cli_runner()

    before = runner.invoke(args=["mailings", "status", str(mailing_id)])
    assert before.exit_code == 0 and f"mailing {mailing_id} approved: no deliveries yet" in before.output
    sent = runner.invoke(args=["mailings", "send", str(mailing_id)])
    assert sent.exit_code == 0, sent.output
    last = sent.output.strip().splitlines()[-1]
    assert last == f"mailing {mailing_id} finished: 6/6 (100 %) sent 5, suppressed 1"
    assert len(outbox.messages()) == 5
    after = runner.invoke(args=["mailings", "status", str(mailing_id)])
    assert after.output.strip() == last

    again = runner.invoke(args=["mailings", "send", str(mailing_id)])
    assert again.exit_code != 0 and "is finished" in again.output
    assert len(outbox.messages()) == 5
    missing = runner.invoke(args=["mailings", "status", "999999"])
    assert missing.exit_code != 0 and "no mailing 999999" in missing.output
