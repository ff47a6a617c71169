"""Two coordinators send a letter to mission contacts: one composes it with a condition on a tag,
previews it as two contacts and sends a test to herself; the other approves and sends it (two
clicks at once) and watches the progress reach 100 %; then the deliveries, and the outbox.

Every page on the way is screenshotted (``test-artifacts/browser/mailings-NN-step.png``) and
checked with axe-core: no serious or critical accessibility violation is allowed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from flask import Flask
from playwright.sync_api import Page, expect

from campaign import queue
from campaign.extensions import db
from campaign.mailings.models import Delivery
from tests import factories
from tests.browser.conftest import Journey, sign_in, watch_problems
from tests.mailings.world import CONTACTS, make_world

INTRODUCTION = (
    "{{ contact.salutation }}\n\n"
    "{% if 'P5' in contact.tags %}As a permanent member of the Security Council, your country bears a particular "
    "responsibility.{% else %}We count on your delegation's support.{% endif %}"
)


#: The send form posted twice at once from the page, as two quick clicks on a slow line would.
TWO_CLICKS = """() => {
  const form = document.querySelector("form.send");
  const post = () => fetch(form.action, {method: "POST", body: new FormData(form), credentials: "same-origin"});
  return Promise.all([post(), post()]).then((responses) => Promise.all(responses.map((r) => r.text())));
}"""


def MailingJourney(page: Page) -> Journey:
    """A ``Journey`` whose screenshots are named ``mailings-NN-step.png``, so the other journeys' stay."""
    return Journey(page, prefix="mailings-")


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()


@contextmanager
def worker(app: Flask) -> Iterator[None]:
    """What ``flask worker`` does without Redis: run the jobs that fall due (the later chunks)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.25):
            with app.app_context():
                try:
                    queue.run_due()
                except Exception:  # noqa: BLE001 - a locked SQLite file: try again next round
                    db.session.rollback()

    thread = threading.Thread(target=loop, name="mail-worker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


@pytest.mark.only_browser("chromium")
def test_compose_preview_test_approve_send_and_follow(live_app: Flask, live_server: str, page: Page) -> None:
    world = make_world(live_app)
    with live_app.app_context():
        admin = factories.Account.of(factories.user("admin"))
    live_app.config["MAILING_CHUNK"] = 1  # one message a job, two seconds apart: progress to watch
    dupont, hassan = world.contact_ids[1], world.contact_ids[2]
    page.set_default_timeout(15_000)
    problems = watch_problems(page)
    sends: list[str] = []
    page.on("request", lambda r: sends.append(r.url) if r.method == "POST" and r.url.endswith("/send") else None)
    journey = MailingJourney(page)

    # The author: no mailing yet.
    sign_in(page, live_server, world.author)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mailings").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Mailings")
    expect(page.get_by_text("No mailings yet.")).to_be_visible()
    journey.record("no mailings")

    # Compose, with a merge field that does not exist: the error is beside the field, the text stays.
    page.get_by_role("button", name="New mailing").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New mailing")
    expect(page.get_by_role("complementary").get_by_text("{{ contact.salutation }}").first).to_be_visible()
    page.get_by_label("Letter").select_option(str(world.letter_id))
    page.get_by_label("Name").fill("Ahead of the ministerial meeting")
    page.get_by_label("Subject").fill("Open letter: {{ letter.title }}")
    page.get_by_label("Introduction").fill("Dear {{ contact.first_name }},\n\n" + INTRODUCTION)
    page.get_by_label("Messages a minute").fill("30")
    journey.record("compose")
    page.get_by_role("button", name="Save the draft").click()
    expect(page.get_by_role("alert")).to_have_text("The mailing was not saved: correct the fields marked below.")
    expect(page.get_by_label("Introduction")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("It does not render: contact has no field 'first_name'.")).to_be_visible()
    expect(page.get_by_label("Introduction")).to_have_value("Dear {{ contact.first_name }},\n\n" + INTRODUCTION)
    journey.record("compose with an error")
    page.get_by_label("Introduction").fill(INTRODUCTION)
    page.get_by_role("button", name="Save the draft").click()
    expect(page.get_by_role("status").filter(has_text="Drafted")).to_have_text(
        "Drafted the mailing 'Ahead of the ministerial meeting'."
    )
    expect(page.get_by_text("6 deliverable contacts")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_be_disabled()
    expect(
        page.get_by_text("You drafted this mailing: a coordinator other than its author approves it.")
    ).to_be_visible()
    journey.record("draft mailing")
    mailing_url = page.url

    # Every recipient renders.
    page.get_by_role("button", name="Check every recipient").click()
    expect(page.get_by_role("status")).to_have_text("All 6 recipients render.")
    journey.record("every recipient checked")

    # Preview as a French P5 mission, then as an Arabic-speaking one without the tag.
    page.goto(mailing_url)
    page.get_by_role("button", name="Preview as a recipient").click()
    page.get_by_label("Recipient").select_option(str(dupont))
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("preview-subject")).to_have_text(
        "Open letter: Lettre ouverte sur la protection des civils"
    )
    text = page.get_by_test_id("preview-text")
    expect(text).to_contain_text("Excellence,")
    expect(text).to_contain_text("As a permanent member of the Security Council")
    frame = page.frame_locator("iframe.mail-preview")
    expect(frame.get_by_role("heading", name="Lettre ouverte sur la protection des civils")).to_be_visible()
    expect(frame.get_by_text("As a permanent member of the Security Council")).to_be_visible()
    page.locator("iframe.mail-preview").scroll_into_view_if_needed()  # offscreen frames are not painted
    journey.record("preview as dupont")
    page.get_by_label("Recipient").select_option(str(hassan))
    page.get_by_role("button", name="Preview").click()
    expect(text).to_contain_text("We count on your delegation's support.")
    expect(text).not_to_contain_text("permanent member")
    expect(text).to_contain_text("سعادة السفير")
    expect(frame.get_by_text("We count on your delegation's support.")).to_be_visible()
    page.locator("iframe.mail-preview").scroll_into_view_if_needed()
    journey.record("preview as hassan")

    # A test, as that contact, to the author's own address.
    page.get_by_role("button", name=f"Send a test to me ({world.author.email})").click()
    expect(page.get_by_role("status").filter(has_text="test")).to_have_text(
        f"Sent a test as hassan@mission.example to {world.author.email}."
    )
    journey.record("test sent")
    sign_out(page)

    # The second coordinator approves, then sends: two clicks at once send it once.
    sign_in(page, live_server, world.approver)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mailings").click()
    expect(page.get_by_role("row").filter(has_text="Ahead of the ministerial meeting")).to_contain_text("Draft")
    journey.record("mailings list")
    page.get_by_role("link", name="Ahead of the ministerial meeting").click()
    page.get_by_role("button", name="Approve version 1").click()
    expect(page.get_by_role("status").filter(has_text="Approved")).to_have_text(
        "Approved version 1: it can be sent now."
    )
    expect(page.get_by_text(f"Approved by {world.approver.email}")).to_be_visible()
    journey.record("approved")
    # Chromium merges a double click into one submission: the form is posted twice at once instead.
    expect(page.get_by_role("button", name="Send to 6 recipients")).to_be_enabled()
    answers = [" ".join(re.findall(r'<p class="flash[^>]*>([^<]*)</p>', html)) for html in page.evaluate(TWO_CLICKS)]
    assert sum("Sending now." in answer for answer in answers) == 1, answers
    assert sum("Only an approved mailing can be sent" in answer for answer in answers) == 1, answers
    with worker(live_app):  # the first message went within the request; the worker sends the others
        page.reload()
        expect(page.get_by_role("heading", name="Progress")).to_be_visible()
        journey.record("sending")
        summary = page.locator("#progress-summary")
        expect(summary).to_have_text("Finished: 6 of 6 handled (100 %): 6 sent.", timeout=60_000)
        expect(page.locator("section#progress progress")).to_have_attribute("value", "6")
        expect(page.locator("[data-count='sent']")).to_have_text("6")
        expect(page.locator("[data-mailing-status]")).to_have_text("Finished")
        journey.record("finished")

    # The proof: one delivery per contact, each sent once.
    page.get_by_role("link", name="Deliveries", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Deliveries")
    table = page.get_by_role("table")
    expect(table.get_by_role("row")).to_have_count(len(CONTACTS) + 1)
    expect(table.get_by_role("row").filter(has=page.locator(".delivery-state.state-sent"))).to_have_count(len(CONTACTS))
    journey.record("deliveries")
    page.get_by_role("link", name="History of the delivery to dupont@mission.example").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delivery to dupont@mission.example")
    expect(page.get_by_role("table").get_by_role("row").nth(1)).to_contain_text("sent")
    expect(page.get_by_role("table").get_by_role("row").nth(1)).to_contain_text("message id")
    journey.record("delivery history")
    with live_app.app_context():
        states = db.session.execute(sa.select(Delivery.email, Delivery.status)).all()
    assert sorted(states) == sorted((row[1], "sent") for row in CONTACTS)
    assert len(sends) == 2, sends  # both clicks reached the server
    sign_out(page)

    # An admin reads what Dupont received in the outbox.
    sign_in(page, live_server, admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Outbox").click()
    rows = page.get_by_role("row").filter(has_text="dupont@mission.example")
    expect(rows).to_have_count(1)
    rows.get_by_role("link").click()
    expect(page.get_by_test_id("mail-text")).to_contain_text("Excellence,")
    expect(page.get_by_test_id("mail-text")).to_contain_text("As a permanent member of the Security Council")
    journey.record("outbox message")

    assert not problems, problems
