"""An organisation outside the coalition signs a letter, confirms from its email, and a coordinator approves it.

Every page on the way is screenshotted (``test-artifacts/browser/signing-public-NN-step.png``)
and checked with axe-core: no serious or critical accessibility violation is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Page, expect

from campaign.extensions import db
from campaign.signatures.models import Signature
from tests import factories
from tests.browser.conftest import ARTIFACTS, BLOCKING_IMPACTS, Journey, format_violations
from tests.letters.publishing import ORIGINAL, publish

ORGANISATION = "Clean Rivers Trust"
SIGNER = ("Wanjiru Kamau", "Director", "wanjiru@rivers.example.org")
PREFIX = "signing-public-"


class PublicSigningJourney(Journey):
    """``Journey`` with its screenshots named ``signing-public-NN-step.png``, so the other journeys' stay."""

    def __init__(self, page: Page) -> None:
        self.page, self.directory, self.axe, self.step = page, ARTIFACTS, Axe(), 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTIFACTS.glob(f"{PREFIX}*.png"):
            old.unlink()

    def record(self, name: str) -> None:
        """Screenshot the page as the next step, then check it with axe-core."""
        self.step += 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        self.page.screenshot(path=str(ARTIFACTS / f"{PREFIX}{self.step:02d}-{slug}.png"), full_page=True)
        blocking = [v for v in self.axe.run(self.page).response["violations"] if v.get("impact") in BLOCKING_IMPACTS]
        assert not blocking, (
            f"step {self.step} ({name}) at {self.page.url}: "
            f"{len(blocking)} serious or critical accessibility violation(s)\n{format_violations(blocking)}"
        )


@pytest.mark.only_browser("chromium")
def test_an_outside_organisation_signs_confirms_and_is_approved(live_app: Flask, live_server: str, page: Page) -> None:
    letter = publish(live_app)
    with live_app.app_context():
        coordinator = factories.Account.of(factories.user("coordinator"))
    outbox = factories.Outbox(Path(live_app.config["OUTBOX_DIR"]))
    outbox.clear()
    page.set_default_timeout(10_000)
    journey = PublicSigningJourney(page)

    # An anonymous visitor reads the letter and signs it.
    page.goto(f"{live_server}/letters/{letter.slug}")
    expect(page.get_by_role("heading", level=1)).to_have_text(ORIGINAL.title)
    journey.record("the letter")
    page.get_by_role("button", name="Sign this letter").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign this letter")
    journey.record("the sign-on form")
    name, title, email = SIGNER
    page.get_by_label("Organisation", exact=True).fill(ORGANISATION)
    page.get_by_label("Country").select_option(label="Kenya")
    page.get_by_label("Website (optional)").fill("https://rivers.example.org")
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Your title or position").fill(title)
    page.get_by_label("Your email address").fill(email)
    page.get_by_role("button", name="Sign the letter").click()
    # Forgot the consent box: told so, the rest kept.
    expect(page.get_by_text("Tick the box to agree to how these details are used.")).to_be_visible()
    expect(page.get_by_label("Your name")).to_have_value(name)
    journey.record("consent missing")
    page.get_by_label("I agree").check()
    page.get_by_role("button", name="Sign the letter").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    journey.record("check your email")

    # The confirmation email, as the outbox wrote it.
    message = outbox.only()
    assert message["To"] == email
    links = re.findall(r"https?://\S+/sign/confirm/\S+", factories.text_of(message))
    assert len(links) == 1 and links[0].startswith(f"{live_server}/letters/{letter.slug}/sign/confirm/")

    # Opening the link confirms nothing; pressing the button does.
    page.goto(links[0])
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your signature")
    journey.record("confirm page")
    with live_app.app_context():
        assert db.session.scalar(sa.select(Signature.status)) == "pending_verification"
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you")
    expect(page.get_by_text("the secretariat will review it")).to_be_visible()
    journey.record("confirmed")

    # A coordinator signs in (password, then the authenticator code) and approves it.
    page.goto(f"{live_server}/login?next=/admin/signatures")
    page.get_by_label("Email").fill(coordinator.email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(coordinator.totp_secret).now())
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(f"{live_server}/admin/signatures")
    expect(page.get_by_role("heading", level=1)).to_have_text("Signatures to moderate")
    row = page.get_by_role("row").filter(has_text=ORGANISATION)
    expect(row).to_contain_text(email)
    expect(row).to_contain_text("Kenya")
    journey.record("moderation queue")
    row.get_by_role("button", name=f"Approve {ORGANISATION}").click()
    expect(page.get_by_text(f"Approved the signature of {ORGANISATION}; the signer is told.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text=ORGANISATION)).to_have_count(0)
    journey.record("approved")
    with live_app.app_context():
        assert db.session.scalar(sa.select(Signature.status)) == "approved"
    approved = [m for m in outbox.messages() if m["Subject"] == "Your signature is approved"]
    assert [m["To"] for m in approved] == [email]

    # The public letter page now lists the organisation.
    page.goto(f"{live_server}/letters/{letter.slug}")
    signatories = page.locator("#signatories")
    expect(signatories).to_contain_text("1 organisation has signed")
    expect(signatories.get_by_role("heading", name="Kenya (1)")).to_be_visible()
    expect(signatories.get_by_role("listitem").filter(has_text=ORGANISATION)).to_have_count(1)
    journey.record("listed on the letter")
