"""A coordinator shows a donor what became of a mailing: from the mailing's page to its delivery
report (counts, charts and their tables, the deliveries that need a look), filtered to the bounced
ones, exported as CSV, then the printable delivery record of every message.

Every page on the way is screenshotted (``test-artifacts/browser/mailing-report-NN-step.png``)
and checked with axe-core: no serious or critical accessibility violation is allowed.
"""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa
from flask import Flask
from playwright.sync_api import Page, expect

from campaign import queue
from campaign.auth.models import User
from campaign.extensions import db
from campaign.mailings import services, tracking
from campaign.mailings.models import Delivery, Mailing
from tests.browser.conftest import Journey, sign_in, watch_problems
from tests.mailings.events import FakeSendGrid, event
from tests.mailings.world import CONTACTS, World, approved, make_world


def send_and_track(app: Flask, world: World) -> int:
    """The world's mailing sent through a provider that answers as SendGrid does, then SendGrid's
    events through the tracking code: Hassan's message bounces, the others are delivered."""
    app.extensions["mail_backend"] = FakeSendGrid()
    mailing_id = approved(app, world, name="Ahead of the ministerial meeting")
    with app.test_request_context():
        row = services.request_send(
            db.session.get(Mailing, mailing_id), {}, actor=db.session.get(User, world.author.id)
        )
        db.session.commit()
        queue.dispatch(row)
        deliveries = db.session.scalars(sa.select(Delivery).where(Delivery.mailing_id == mailing_id)).all()
        events = []
        for delivery in deliveries:
            if delivery.email == "hassan@mission.example":
                events.append(event(delivery, "bounce", type="bounce", status="5.1.1",
                                    reason="550 5.1.1 The email account does not exist"))  # fmt: skip
            else:
                events.append(event(delivery, "delivered", response="250 2.0.0 OK"))
        tracking.receive(events)
        db.session.commit()
    return mailing_id


@pytest.mark.only_browser("chromium")
def test_open_filter_export_and_print_a_mailings_report(live_app: Flask, live_server: str, page: Page) -> None:
    world = make_world(live_app)
    mailing_id = send_and_track(live_app, world)
    page.set_default_timeout(15_000)
    problems = watch_problems(page)
    journey = Journey(page, prefix="mailing-report-")

    sign_in(page, live_server, world.author)
    page.goto(f"{live_server}/admin/mailings/{mailing_id}")
    expect(page.locator("[data-mailing-status]")).to_have_text("Finished")
    page.get_by_role("link", name="Delivery report").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delivery report")
    expect(page.locator("[data-state-count='delivered']")).to_have_text(str(len(CONTACTS) - 1))
    expect(page.locator("[data-state-count='bounced']")).to_have_text("1")
    expect(page.get_by_role("img", name="Deliveries by language")).to_be_visible()
    expect(page.get_by_role("img", name="Deliveries by UN regional group")).to_be_visible()
    page.get_by_text("The figures as a table").first.click()
    expect(page.get_by_role("table", name="Deliveries by language and outcome")).to_be_visible()
    evidence = page.locator("article.evidence")
    expect(evidence).to_have_count(1)
    expect(evidence).to_contain_text("hassan@mission.example")
    expect(evidence).to_contain_text("550 5.1.1 The email account does not exist")
    journey.record("report")

    # Filter by a state: the links to the export and the record carry the filter.
    page.get_by_label("State", exact=True).select_option("delivered")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{live_server}/admin/mailings/{mailing_id}/report?state=delivered&language=&country=")
    expect(page.get_by_text("No delivery matching the filters needs a look.")).to_be_visible()
    journey.record("filtered by a state")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export the deliveries in the state delivered as CSV").click()
    download = download_info.value
    assert download.suggested_filename.startswith(f"mailing-{mailing_id}-deliveries-")
    body = download.path().read_bytes()
    assert body.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert sorted(row["email"] for row in rows) == sorted(c[1] for c in CONTACTS if c[1] != "hassan@mission.example")
    assert {row["status"] for row in rows} == {"delivered"} and all(row["message_id"] for row in rows)
    garcia = next(row for row in rows if row["email"] == "garcia@mission.example")
    assert garcia["contact_name"] == "Excma. Sra. Lucía García"

    # The printable record of every delivery: the filter cleared first.
    page.get_by_role("link", name="Clear the filters").click()
    page.get_by_role("link", name="Printable delivery record").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delivery record: Ahead of the ministerial meeting")
    expect(page.locator("article.record-delivery")).to_have_count(len(CONTACTS))
    expect(page.get_by_text(f"by {world.approver.email} (version 1)")).to_be_visible()
    hassan = page.locator("article.record-delivery").filter(has_text="hassan@mission.example")
    expect(hassan.get_by_role("table")).to_contain_text("bounce")
    expect(hassan).to_contain_text("Message id")
    assert page.locator("script").count() == 0
    journey.record("printable record")
    page.emulate_media(media="print")
    expect(page.locator(".site-header")).to_be_hidden()
    journey.record("printable record as printed")

    assert not problems, problems
