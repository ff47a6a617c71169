"""A supporter subscribes and confirms from the email; a coordinator writes and sends an alert
to the supporter's topic; the alert arrives with the RFC 8058 headers and the supporter
unsubscribes in one click, as a mail client does, then sees the page say so.

Every page on the way is screenshotted (``test-artifacts/browser/alerts-NN-step.png``) and
checked with axe-core: no serious or critical accessibility violation is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from playwright.sync_api import Page, expect

from campaign.alerts.models import Subscriber
from campaign.extensions import db
from tests import factories
from tests.browser.conftest import Journey, sign_in

SUPPORTER = ("Mariam O'Neill", "mariam@supporters.example.org")
SUBJECT = "The letter on civilians is open for signatures"


def _only_to(outbox: factories.Outbox, address: str) -> list:
    return [message for message in outbox.messages() if message["To"].addresses[0].addr_spec == address]


@pytest.mark.only_browser("chromium")
def test_subscribe_confirm_receive_an_alert_and_unsubscribe_in_one_click(
    live_app: Flask, live_server: str, page: Page
) -> None:
    with live_app.app_context():
        coordinator = factories.Account.of(factories.user("coordinator"))
    outbox = factories.Outbox(Path(live_app.config["OUTBOX_DIR"]))
    outbox.clear()
    page.set_default_timeout(15_000)
    journey = Journey(page, prefix="alerts-")
    name, email = SUPPORTER

    # A supporter subscribes to alerts on new letters.
    page.goto(f"{live_server}/subscribe")
    expect(page.get_by_role("heading", level=1)).to_have_text("Subscribe to alerts")
    journey.record("the subscribe form")
    page.get_by_label("Your email address").fill(email)
    page.get_by_label("Your name (optional)").fill(name)
    page.get_by_label("New letters").check()
    page.get_by_label("I agree").check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page).to_have_url(f"{live_server}/subscribe/sent")
    journey.record("check your email")

    # The confirmation email, as the outbox wrote it: its link opens a page with a button.
    (confirmation,) = _only_to(outbox, email)
    links = re.findall(r"https?://\S+/subscribe/confirm/\S+", factories.text_of(confirmation))
    assert len(links) == 1 and links[0].startswith(f"{live_server}/subscribe/confirm/")
    page.goto(links[0])
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your subscription")
    journey.record("the confirmation page")
    with live_app.app_context():
        assert db.session.scalar(sa.select(Subscriber.status).where(Subscriber.email == email)) == "pending"
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
    journey.record("subscribed")

    # A coordinator writes an alert to the followers of new letters and sends it.
    outbox.clear()
    sign_in(page, live_server, coordinator)
    page.get_by_role("link", name="Alerts", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Alerts")
    journey.record("the alerts")
    page.get_by_role("button", name="New alert").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New alert")
    page.locator("#subject").fill(SUBJECT)
    page.locator("#body").fill("Read it and ask your organisation to **co-sign** before the meeting.")
    page.get_by_label("New letters").check()
    journey.record("composing the alert")
    page.get_by_role("button", name="Save the draft").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(SUBJECT)
    expect(page.get_by_text("1 confirmed subscriber would receive it")).to_be_visible()
    journey.record("the draft alert")
    page.get_by_role("button", name="Preview as a subscriber").click()
    expect(page.get_by_test_id("preview-subject")).to_have_text(SUBJECT)
    expect(page.frame_locator("iframe.mail-preview").get_by_text("before the meeting")).to_be_visible()
    journey.record("the preview")
    page.get_by_role("link", name=re.compile("^← Alert")).click()
    page.get_by_role("button", name="Send to 1 subscriber").click()
    expect(page.locator("#progress-summary")).to_contain_text("1 sent")
    journey.record("the delivery report")

    # The alert in the supporter's mailbox, with the one-click headers of RFC 8058.
    (alert,) = _only_to(outbox, email)
    assert alert["Subject"] == SUBJECT
    assert alert["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.fullmatch(r"<(\S+)>", alert["List-Unsubscribe"])[1]
    assert unsubscribe.startswith(f"{live_server}/unsubscribe/")
    assert f"Hello {name}," in factories.text_of(alert)

    # The mail client's one-click POST: no cookie, no CSRF token, just the signed link.
    response = page.context.request.post(
        unsubscribe,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        data="List-Unsubscribe=One-Click",
    )
    assert response.status == 200
    with live_app.app_context():
        found = db.session.scalar(sa.select(Subscriber).where(Subscriber.email == email))
        assert (found.status, found.unsubscribed_via) == ("unsubscribed", "one-click")

    # The supporter opens the link later: the page says it is done.
    page.goto(unsubscribe)
    expect(page.get_by_text(f"{email} is already unsubscribed")).to_be_visible()
    journey.record("already unsubscribed")
