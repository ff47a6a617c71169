"""Coordinators' mailing pages, sending: now, at a time or before the meeting; cancelling; the
progress; the deliveries; settling uncertain ones; and two send clicks at once."""

from __future__ import annotations

import os
import re
import threading
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from campaign import create_app, queue
from campaign.contacts import services as contacts
from campaign.db import utcnow
from campaign.extensions import db
from campaign.mailings import sending, services
from campaign.mailings.models import Delivery, DeliveryEvent, Mailing
from tests.browser.conftest import empty_database
from tests.conftest import AuthActions, settings_for_tests
from tests.factories import Outbox
from tests.mailings.pages import deliveries_of, flashes, load, local, text
from tests.mailings.world import CONTACTS, approved, draft, make_world

CONTACT_EMAILS = [row[1] for row in CONTACTS]


@pytest.fixture
def world(app, database):
    return make_world(app)


@pytest.fixture
def author(auth, world):
    auth.login(world.author)
    return world.author


# --- sending -----------------------------------------------------------------------------------------


def test_send_now_reaches_each_contact_once_and_a_second_click_is_refused(app, client, world, author, outbox):
    mailing_id = approved(app, world)
    response = client.post(f"/admin/mailings/{mailing_id}/send", data={"when": "now"})
    assert response.status_code == 302 and response.headers["Location"].endswith("#progress")
    page = text(client.get(response.headers["Location"]))
    assert "Sending now. No contact receives it twice; the progress is below." in flashes(page)
    assert "Finished: 6 of 6 handled (100 %): 6 sent." in page
    assert len(outbox.messages()) == 6
    again = client.post(f"/admin/mailings/{mailing_id}/send", data={"when": "now"}, follow_redirects=True)
    assert "Only an approved mailing can be sent; this one is finished." in flashes(text(again))
    assert len(outbox.messages()) == 6
    assert set(deliveries_of(app, mailing_id).values()) == {"sent"}
    progress = client.get(f"/admin/mailings/{mailing_id}/progress").get_json()
    assert progress == {"status": "finished", "status_label": "Finished", "active": False, "total": 6, "done": 6,
                        "percent": 100, "counts": progress["counts"],
                        "summary": "Finished: 6 of 6 handled (100 %): 6 sent."}  # fmt: skip
    assert progress["counts"]["sent"] == 6 and progress["counts"]["pending"] == 0


def test_send_at_a_time_in_a_chosen_zone(app, client, world, author, outbox):
    mailing_id = approved(app, world)
    at = local(days=2, zone="Europe/Zurich")
    response = client.post(f"/admin/mailings/{mailing_id}/send",
                           data={"when": "at", "at": at, "at_timezone": "Europe/Zurich"})  # fmt: skip
    assert response.status_code == 302
    mailing = load(app, mailing_id)
    assert mailing.status == "scheduled" and outbox.messages() == []
    expected = (utcnow() + timedelta(days=2)).replace(second=0, microsecond=0)
    assert abs(mailing.first_due_at - expected) < timedelta(minutes=1)
    page = text(client.get(f"/admin/mailings/{mailing_id}"))
    assert f"When: at {expected:%d %B %Y, %H:%M} UTC; asked by {world.author.email}" in page
    progress = client.get(f"/admin/mailings/{mailing_id}/progress").get_json()
    assert (progress["active"], progress["counts"]["pending"], progress["percent"]) == (True, 6, 0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"when": "at", "at": "", "at_timezone": "UTC"}, "Give the date and time to send at."),
        ({"when": "before", "days": "3", "hours": "0", "local_time": ""}, "Give the time of day, e.g. 09:00."),
        ({"when": "before", "days": "-1", "hours": "0", "local_time": "09:00"}, "Number must be between 0 and 365."),
        ({"when": "at", "at": "2020-01-01T09:00", "at_timezone": "UTC"}, "not sent: that time has passed"),
    ],
)
def test_a_refused_send_keeps_the_form_as_typed(app, client, world, author, data, message):
    mailing_id = approved(app, world)
    response = client.post(f"/admin/mailings/{mailing_id}/send", data=data)
    assert response.status_code == 200
    page = text(response)
    assert message in page
    for name, value in data.items():
        if name != "when" and value:
            kept = (
                rf'name="{name}"[^>]*value="{value}"|value="{value}"[^>]*name="{name}"|<option selected value="{value}"'
            )
            assert re.search(kept, page), name
    assert re.search(rf'<input checked id="when-\d" name="when" type="radio" value="{data["when"]}">', page)
    assert load(app, mailing_id).status == "approved"


def test_send_before_the_meeting_at_local_time_in_each_recipients_zone(app, client, world, author, outbox):
    mailing_id = approved(app, world)
    data = {"when": "before", "days": "3", "hours": "0", "local_time": "09:00"}
    response = client.post(f"/admin/mailings/{mailing_id}/send", data=data)
    assert response.status_code == 302
    mailing = load(app, mailing_id)
    assert mailing.status == "scheduled"
    assert mailing.schedule["before_meeting"] == "P3D" and mailing.schedule["local_time"] == "09:00"
    with app.app_context():
        query = sa.select(Delivery.email, Delivery.due_at).where(Delivery.mailing_id == mailing_id)
        due = dict(db.session.execute(query).all())
    assert due["dupont@mission.example"].astimezone(ZoneInfo("Europe/Paris")).strftime("%H:%M") == "09:00"
    assert due["oneill@mission.example"].astimezone(ZoneInfo("America/New_York")).strftime("%H:%M") == "09:00"
    page = text(client.get(f"/admin/mailings/{mailing_id}"))
    assert "3 days before the meeting, at 09:00 in each recipient's timezone" in page
    assert "When the deliveries fall due" in page


def test_cancel_asks_first_then_records_every_pending_delivery_as_cancelled(app, client, world, author, outbox):
    mailing_id = approved(app, world)
    client.post(f"/admin/mailings/{mailing_id}/send", data={"when": "at", "at": local(days=1), "at_timezone": "UTC"})
    page = text(client.get(f"/admin/mailings/{mailing_id}/cancel"))
    assert "6 deliveries are not sent yet" in page and "Cancel the mailing" in page
    response = client.post(f"/admin/mailings/{mailing_id}/cancel", follow_redirects=True)
    assert "Cancelled the mailing: 6 deliveries will not be sent." in flashes(text(response))
    assert set(deliveries_of(app, mailing_id).values()) == {"cancelled"}
    again = client.post(f"/admin/mailings/{mailing_id}/cancel", follow_redirects=True)
    assert "This mailing is cancelled: there is nothing left to cancel." in flashes(text(again))
    assert outbox.messages() == []


def test_progress_of_a_draft_is_empty(app, client, world, author):
    mailing_id = draft(app, world)
    data = client.get(f"/admin/mailings/{mailing_id}/progress").get_json()
    assert (data["status"], data["total"], data["percent"], data["active"]) == ("draft", 0, 100, False)


# --- deliveries, uncertain ones ------------------------------------------------------------------------


def test_deliveries_are_listed_filtered_by_state_and_paged(app, client, world, author, outbox, monkeypatch):
    with app.app_context():
        contacts.suppress(contacts.get_contact(world.contact_ids[2]), "bounced", "mailbox full")
        db.session.commit()
    mailing_id = approved(app, world)
    client.post(f"/admin/mailings/{mailing_id}/send", data={"when": "now"})
    page = text(client.get(f"/admin/mailings/{mailing_id}/deliveries"))
    assert "All (6)" in page and "Sent (5)" in page and "Suppressed (1)" in page
    page = text(client.get(f"/admin/mailings/{mailing_id}/deliveries?state=suppressed"))
    assert "hassan@mission.example" in page and "Bounced: mailbox full" in page
    assert "dupont@mission.example" not in page
    assert "dupont@mission.example" in text(client.get(f"/admin/mailings/{mailing_id}/deliveries?q=DUPONT"))
    from campaign.mailings import sending_routes

    monkeypatch.setattr(sending_routes, "PER_PAGE", 4)
    page = text(client.get(f"/admin/mailings/{mailing_id}/deliveries?page=2"))
    assert "Page 2 of 2" in page and len(re.findall(r"@mission.example</td>", page)) == 2


def _uncertain(app, world) -> tuple[int, int]:
    """A mailing whose first delivery a worker claimed and never finished: its lease expired."""
    mailing_id = approved(app, world)
    with app.app_context():
        services.request_send(db.session.get(Mailing, mailing_id), {})
        db.session.commit()
        [claimed] = sending.claim(mailing_id, 1, "worker-7/job-1")
        sending.expire_leases(now=utcnow() + timedelta(hours=1))
    return mailing_id, claimed


def test_uncertain_deliveries_show_their_evidence_and_are_resolved_with_a_note(app, client, world, author, outbox):
    mailing_id, delivery_id = _uncertain(app, world)
    page = text(client.get(f"/admin/mailings/{mailing_id}"))
    assert "Uncertain deliveries (1)" in page
    assert "lease-expired" in page and "held by worker-7/job-1 until the lease expired" in page
    url = f"/admin/mailings/{mailing_id}/deliveries/{delivery_id}"
    assert f'action="{url}"' in page
    # No note: the delivery's page says so and keeps the choice.
    response = client.post(url, data={f"d{delivery_id}-outcome": "resend", f"d{delivery_id}-note": ""})
    assert response.status_code == 200
    page = text(response)
    assert "Say what the decision rests on" in page
    kept = r'<input checked id="d\d+-outcome-2" name="d\d+-outcome" required type="radio" value="resend">'
    assert re.search(kept, page)
    # With a note: sent again, once, and the history says who decided and why.
    note = "The mission confirmed by phone it never arrived"
    response = client.post(url, data={f"d{delivery_id}-outcome": "resend", f"d{delivery_id}-note": note})
    assert response.status_code == 302 and response.headers["Location"].endswith("#uncertain")
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "sent"
        kinds = db.session.scalars(sa.select(DeliveryEvent.kind).where(DeliveryEvent.delivery_id == delivery_id)).all()
        assert kinds == ["lease-expired", "resolved-resend", "sent"]
        email = delivery.email
    assert sum(1 for m in outbox.messages() if m["To"].addresses[0].addr_spec == email) == 1
    page = text(client.get(url))
    assert note in page and world.author.email in page and "What happened?" not in page
    again = client.post(url, data={f"d{delivery_id}-outcome": "failed", f"d{delivery_id}-note": "late"},
                        follow_redirects=True)  # fmt: skip
    assert "This delivery is no longer uncertain; reload the page." in flashes(text(again))


def test_a_delivery_of_another_mailing_is_not_found(app, client, world, author):
    mailing_id, delivery_id = _uncertain(app, world)
    other = draft(app, world)
    assert client.get(f"/admin/mailings/{other}/deliveries/{delivery_id}").status_code == 404
    assert client.get(f"/admin/mailings/{mailing_id}/deliveries/{delivery_id}").status_code == 200


# --- two clicks at once ----------------------------------------------------------------------------


@pytest.fixture
def committing_app(request, separate_app, tmp_path):
    """An app whose commits are real (two requests at once need that): its own SQLite file, or the
    PostgreSQL database of the run, emptied afterwards."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        yield separate_app()
        return
    request.getfixturevalue("app")  # the schema is built
    application = create_app(settings_for_tests(tmp_path, DATABASE_URL=url))
    try:
        yield application
    finally:
        empty_database(application)
        with application.app_context():
            db.engine.dispose()


def test_two_send_clicks_at_once_send_once(committing_app):
    world = make_world(committing_app)
    mailing_id = approved(committing_app, world)
    clients = []
    for account in (world.author, world.approver):
        client = committing_app.test_client()
        AuthActions(committing_app, client).login(account)
        clients.append(client)
    barrier = threading.Barrier(2)
    answers: list[str] = []

    def click(client) -> None:
        barrier.wait()
        response = client.post(f"/admin/mailings/{mailing_id}/send", data={"when": "now"}, follow_redirects=True)
        answers.append(" ".join(flashes(text(response))) or str(response.status_code))

    threads = [threading.Thread(target=click, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum("Sending now." in answer for answer in answers) == 1, answers
    assert sum("Only an approved mailing can be sent" in answer for answer in answers) == 1, answers
    with committing_app.app_context():  # the worker: jobs a locked SQLite left to it, retries falling due
        for _ in range(10):
            db.session.execute(sa.update(queue.Job).where(queue.Job.status == "queued").values(due_at=utcnow()))
            db.session.commit()
            if not queue.run_due():
                break
    box = Outbox(Path(committing_app.config["OUTBOX_DIR"]))
    assert sorted(m["To"].addresses[0].addr_spec for m in box.messages()) == sorted(set(CONTACT_EMAILS))
    with committing_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == len(CONTACT_EMAILS)
