"""A member's representative opens Sign letters, co-signs in one step, sees it in the history, withdraws.

Screenshots are ``test-artifacts/browser/signing-member-NN-step.png``; every page is
checked with axe-core.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Page, expect

from campaign.auth.models import Organisation
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import services as letters
from campaign.letters.services import LetterText
from tests import factories
from tests.browser.conftest import ARTIFACTS, BLOCKING_IMPACTS, format_violations

PREFIX = "signing-member-"
TITLE = "Open letter on the protection of aid workers"


class SigningJourney:
    """Like ``Journey``, with screenshots named ``signing-member-NN-step.png`` so the other journeys' stay."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.axe = Axe()
        self.step = 0
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


@pytest.fixture
def signing_letter(live_app: Flask) -> tuple[factories.Account, str, str]:
    with live_app.app_context():
        member = factories.Account.of(factories.user("member"))
        organisation = db.session.get(Organisation, member.organisation_id).name
        letter = letters.create_letter(
            LetterText(
                TITLE,
                "We call on all parties to **protect aid workers** and respect humanitarian law.",
                "To Heads of State and Government",
            ),
            signature_deadline=utcnow() + timedelta(days=7),
        )
        letters.transition(letter, "review")
        letters.transition(letter, "open")
        db.session.commit()
        return member, organisation, letter.slug


@pytest.mark.only_browser("chromium")
def test_member_co_signs_and_withdraws(live_server: str, page: Page, signing_letter) -> None:
    member, organisation, slug = signing_letter
    page.set_default_timeout(10_000)
    journey = SigningJourney(page)

    page.goto(f"{live_server}/login")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as")).to_contain_text(organisation)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sign letters").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign letters")
    expect(page.get_by_role("row", name=re.compile(TITLE))).to_contain_text("Not signed")
    journey.record("open letters")

    page.get_by_role("link", name=TITLE).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    expect(page.get_by_text("protect aid workers")).to_be_visible()
    expect(page.get_by_label("Your name")).not_to_have_value("")
    page.get_by_label("Your name").fill("Amina Diallo")
    page.get_by_label("Your title").fill("Executive Director")
    journey.record("sign form filled")
    page.get_by_role("button", name=f"Sign for {organisation}").click()
    expect(page.get_by_role("status").first).to_contain_text(f"{organisation} has signed")
    expect(page.get_by_text("Signed by Amina Diallo, Executive Director")).to_be_visible()
    journey.record("signed")

    page.goto(f"{live_server}/sign/history")
    expect(page.get_by_role("heading", level=2, name=TITLE)).to_be_visible()
    expect(page.get_by_text("Signed for")).to_be_visible()
    journey.record("history after signing")

    page.goto(f"{live_server}/sign/{slug}")
    page.get_by_role("button", name="Withdraw our signature").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Withdraw {organisation}'s signature?")
    journey.record("confirm withdrawal")
    page.get_by_role("button", name="Withdraw our signature").click()
    expect(page.get_by_role("status").first).to_contain_text("withdrawn")
    expect(page.get_by_role("button", name=f"Sign for {organisation}")).to_be_visible()
    journey.record("withdrawn")

    page.goto(f"{live_server}/sign/history")
    expect(page.get_by_text("Withdrawn (was approved)")).to_be_visible()
    journey.record("history after withdrawal")
