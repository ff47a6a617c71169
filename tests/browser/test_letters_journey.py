"""A coordinator drafts a letter with the live preview and submits it; a second one opens it for signatures.

The second coordinator then publishes a French translation, and an anonymous visitor
reads the letter on /letters, switches to French and downloads the PDF.  Every page on
the way is screenshotted (``test-artifacts/browser/letters-*.png``) and checked with
axe-core: no serious or critical accessibility violation is allowed.  The downloaded
PDF is kept as ``test-artifacts/browser/letters-journey.pdf``.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import sqlalchemy as sa
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Page, expect

from campaign.audit import AuditEvent
from campaign.extensions import db
from campaign.letters import services
from tests import factories
from tests.browser.conftest import ARTIFACTS, BLOCKING_IMPACTS, format_violations, sign_in, watch_problems

TITLE = "Open letter on restraint of the veto"
ADDRESSEE = "To Heads of State and Government\nHigh-level week, New York"
MEETING = "High-level meeting on the veto"
ARABIC_TITLE = "رسالة مفتوحة بشأن ضبط استخدام حق النقض"
FRENCH_TITLE = "Lettre ouverte sur la limitation du recours au veto"
FRENCH_ADDRESSEE = "Aux chefs d\u2019État et de gouvernement\nSemaine de haut niveau, New York"
# No apostrophe (smart quotes) nor "fi"/"fl"/"ff" (ligatures), so pdftotext gives it back as typed.
FRENCH_SENTENCE = "Nous exhortons tous les membres permanents à renoncer au veto."
FRENCH_BODY = "Nous exhortons **tous les membres permanents** à renoncer au veto."
PDF_PATH = ARTIFACTS / "letters-journey.pdf"


class LettersJourney:
    """Like ``Journey``, with screenshots named ``letters-NN-step.png`` so the other journeys' stay."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.axe = Axe()
        self.step = 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTIFACTS.glob("letters-*.png"):
            old.unlink()

    def record(self, name: str) -> None:
        """Screenshot the page as the next step, then check it with axe-core."""
        self.step += 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        self.page.screenshot(path=str(ARTIFACTS / f"letters-{self.step:02d}-{slug}.png"), full_page=True)
        blocking = [v for v in self.axe.run(self.page).response["violations"] if v.get("impact") in BLOCKING_IMPACTS]
        assert not blocking, (
            f"step {self.step} ({name}) at {self.page.url}: "
            f"{len(blocking)} serious or critical accessibility violation(s)\n{format_violations(blocking)}"
        )


@pytest.mark.only_browser("chromium")
def test_coordinators_draft_review_and_open_a_letter(live_app: Flask, live_server: str, page: Page) -> None:
    with live_app.app_context():
        author = factories.Account.of(factories.user("coordinator"))
        reviewer = factories.Account.of(factories.user("coordinator"))
    page.set_default_timeout(10_000)
    # No inline script, style or handler may trip the CSP; the preview's fetch must succeed.
    problems = watch_problems(page)
    page.on("pageerror", lambda e: problems.append(str(e)))
    journey = LettersJourney(page)

    # The author signs in and opens the letters from the main navigation.
    sign_in(page, live_server, author)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Manage letters", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Letters")
    expect(page.get_by_text("No letters yet.")).to_be_visible()
    journey.record("letters list empty")

    # The occasion first: a meeting in New York, times local to it.
    page.get_by_role("link", name="Meetings").click()
    page.get_by_role("button", name="Add a meeting").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Add a meeting")
    page.get_by_label("Title").fill(MEETING)
    page.get_by_label("Place").fill("UN Headquarters, New York")
    page.get_by_label("Starts").fill("2030-09-24T10:00")
    page.get_by_label("Ends").fill("2030-09-24T13:00")
    expect(page.get_by_label("Time zone")).to_have_value("America/New_York")
    journey.record("add a meeting")
    page.get_by_role("button", name="Add the meeting").click()
    row = page.get_by_role("row").filter(has_text=MEETING)
    expect(row).to_contain_text("24 Sep 2030, 10:00 \u2013 13:00")
    expect(row).to_contain_text("24 Sep 2030, 14:00 UTC")
    journey.record("meetings")
    page.get_by_role("navigation", name="breadcrumb").get_by_role("link", name="Letters").click()

    page.get_by_role("button", name="Draft a letter").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Draft a letter")
    journey.record("draft a letter")
    page.get_by_label("Title").fill(TITLE)
    page.get_by_label("Addressee").fill(ADDRESSEE)

    # Typing Markdown: the server's rendering appears in the preview.
    body = page.get_by_label("Text (Markdown)")
    preview = page.locator("#preview")
    body.press_sequentially("We urge **all permanent members** to refrain from the veto.", delay=5)
    expect(preview.locator("strong")).to_have_text("all permanent members")
    expect(preview).to_contain_text("to refrain from the veto.")
    journey.record("live preview")

    # Markup that cannot be published: removed from the preview, and the author is told.
    body.press_sequentially('\n\n<script>alert("x")</script><b onclick="x()">Signed</b>', delay=5)
    warning = page.locator("#preview-warning")
    expect(warning).to_contain_text("Removed from the preview: <script> element, onclick attribute.")
    expect(preview.locator("script")).to_have_count(0)
    expect(preview.locator("b")).to_have_text("Signed")
    journey.record("preview warns about removed markup")
    body.fill("We urge **all permanent members** to refrain from the veto.\n\nSigned in 70<sup>th</sup> year.")
    expect(preview.locator("sup")).to_have_text("th")
    expect(warning).to_be_empty()

    page.get_by_label("Signature deadline").fill("2030-10-01T18:00")
    page.get_by_label("Time zone of these times").select_option("Europe/Zurich")
    page.get_by_label("Meeting").select_option(label=f"{MEETING} (24 Sep 2030, UN Headquarters, New York)")
    page.get_by_label("Revision note").fill("First draft")
    journey.record("letter form filled")
    page.get_by_role("button", name="Save the draft").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    expect(page.locator(".flash-success")).to_have_text(f"Drafted '{TITLE}' as revision 1.")
    expect(page.get_by_text("Not published yet. The latest text is revision 1.")).to_be_visible()
    expect(page.get_by_role("row", name="Signature deadline")).to_contain_text("01 Oct 2030, 16:00 UTC")
    expect(page.get_by_role("row", name="Meeting")).to_contain_text(MEETING)
    expect(page.locator("article.letter-text strong")).to_have_text("all permanent members")
    journey.record("draft saved")

    # Submitting for review goes through a confirmation page.
    page.get_by_role("button", name="Submit for review").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Submit for review?")
    expect(page.get_by_text("Revision 1 goes to the other coordinators for review.")).to_be_visible()
    journey.record("confirm submit for review")
    page.get_by_role("button", name="Submit for review").click()
    expect(page.locator(".flash-success")).to_contain_text("draft → in review")
    expect(page.locator(".badge.status")).to_have_text("In review")
    journey.record("in review")
    page.get_by_role("button", name="Sign out").click()

    # A second coordinator reviews it and opens it for signatures.
    sign_in(page, live_server, reviewer)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Manage letters", exact=True).click()
    row = page.get_by_role("row").filter(has_text=TITLE)
    expect(row).to_contain_text("In review")
    journey.record("letters list in review")
    row.get_by_role("link", name=TITLE).click()
    page.get_by_role("button", name="Open for signatures").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Open for signatures?")
    expect(page.get_by_text("Revision 1 is published")).to_be_visible()
    expect(page.get_by_text("until 01 Oct 2030, 16:00 UTC")).to_be_visible()
    journey.record("confirm open for signatures")
    page.get_by_role("button", name="Open for signatures").click()
    expect(page.locator(".badge.status")).to_have_text("Open for signatures")
    expect(page.get_by_text("The public text is revision 1")).to_be_visible()
    journey.record("open for signatures")

    # The reviewer starts the Arabic translation beside the original: right to left.
    page.get_by_role("link", name="Translate into Arabic").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Arabic translation")
    expect(page.locator("section.translation")).to_have_attribute("dir", "rtl")
    expect(page.locator("section.original strong")).to_have_text("all permanent members")
    translation = page.get_by_label("Text (Markdown)")
    expect(translation).to_have_attribute("dir", "rtl")
    page.get_by_label("Title").fill(ARABIC_TITLE)
    translation.fill("نحث **جميع الأعضاء الدائمين** على الامتناع عن استخدام حق النقض.")
    expect(preview.locator("strong")).to_have_text("جميع الأعضاء الدائمين")
    expect(preview).to_have_attribute("dir", "rtl")
    journey.record("arabic translation")
    page.get_by_role("button", name="Save the translation").click()
    expect(page.locator(".flash-success")).to_have_text("Saved the Arabic translation.")
    page.get_by_role("button", name="Send for review").click()
    expect(page.locator(".flash-success")).to_have_text("The Arabic translation is now review.")
    journey.record("arabic translation in review")

    # A change to the original, then its history and the difference.
    page.get_by_role("link", name=TITLE).click()
    page.get_by_role("button", name="Edit the text and settings").click()
    page.get_by_label("Text (Markdown)").fill(
        "We urge **all permanent members** to refrain from using the veto.\n\nSigned in 70<sup>th</sup> year."
    )
    page.get_by_label("Revision note").fill("Clearer wording")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".flash-success")).to_contain_text("Saved revision 2. The public still reads revision 1")
    expect(page.get_by_role("button", name="Publish changes")).to_be_visible()
    page.get_by_role("link", name="Revision history").click()
    expect(page.get_by_role("row", name=re.compile("^2 latest"))).to_contain_text("Clearer wording")
    journey.record("revision history")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator(".diff ins")).to_have_text(["using"])
    journey.record("diff")

    with live_app.app_context():
        letter = services.get_letter("open-letter-on-restraint-of-the-veto")
        assert letter.status == "open" and letter.published_revision.number == 1
        assert "<script" not in letter.published_revision.body_html
        moves = [(e.actor_email, e.details["after"]) for e in _transitions(letter.id)]
        assert moves == [(author.email, "review"), (reviewer.email, "open")]
    assert problems == []

    # --- public steps -----------------------------------------------------------------
    # The reviewer translates the letter into French and publishes the translation.
    page.get_by_role("navigation", name="breadcrumb").get_by_role("link", name=TITLE).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    page.get_by_role("link", name="Translate into French").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("French translation")
    expect(page.get_by_text("Not started.")).to_be_visible()
    expect(page.locator("section.translation")).to_have_attribute("lang", "fr")
    expect(page.locator("section.translation")).to_have_attribute("dir", "ltr")
    page.get_by_label("Title").fill(FRENCH_TITLE)
    page.get_by_label("Addressee").fill(FRENCH_ADDRESSEE)
    page.get_by_label("Text (Markdown)").fill(FRENCH_BODY)
    expect(preview.locator("strong")).to_have_text("tous les membres permanents")
    expect(preview).to_have_attribute("lang", "fr")
    journey.record("french translation")
    page.get_by_role("button", name="Save the translation").click()
    expect(page.locator(".flash-success")).to_have_text("Saved the French translation.")
    page.get_by_role("button", name="Publish the translation").click()
    expect(page.locator(".flash-success")).to_have_text("The French translation is now published.")
    expect(page.get_by_role("button", name="Publish the translation")).to_be_disabled()
    expect(page.locator("hgroup")).to_contain_text("Status: published · revision 1 · published: revision 1")
    journey.record("french translation published")
    page.get_by_role("navigation", name="breadcrumb").get_by_role("link", name=TITLE).click()
    french_row = page.get_by_role("row").filter(has_text="French")
    expect(french_row.get_by_role("cell").nth(1)).to_have_text("published")
    expect(page.get_by_role("row").filter(has_text="Arabic").get_by_role("cell").nth(1)).to_have_text("review")
    journey.record("translations")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)

    # An anonymous visitor finds the letter on /letters and reads it.
    page.goto(f"{live_server}/letters")
    expect(page.get_by_role("heading", level=1)).to_have_text("Open letters")
    summary = page.locator("article.letter-summary").filter(has_text=TITLE)
    expect(summary).to_contain_text("Open for signatures")
    expect(summary).to_contain_text(MEETING)
    journey.record("public letters")
    summary.get_by_role("link", name=TITLE).click()
    expect(page).to_have_url(f"{live_server}/letters/open-letter-on-restraint-of-the-veto")
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    letter_text = page.locator("div.letter-text")
    expect(letter_text).to_have_attribute("lang", "en")
    expect(letter_text.locator("strong")).to_have_text("all permanent members")
    # The public reads the published revision 1, not the unpublished revision 2.
    expect(letter_text).to_contain_text("We urge all permanent members to refrain from the veto.")
    expect(letter_text.locator("sup")).to_have_text("th")
    expect(letter_text.locator("script")).to_have_count(0)
    # Only published languages are offered: the Arabic translation is still in review.
    switcher = page.get_by_role("navigation", name="Languages of this letter")
    expect(switcher.get_by_role("link")).to_have_text(["English", "Français"])
    expect(switcher.get_by_role("link", name="English")).to_have_attribute("aria-current", "page")
    journey.record("public letter")

    # The visitor switches to the French translation.
    switcher.get_by_role("link", name="Français").click()
    expect(page).to_have_url(f"{live_server}/letters/open-letter-on-restraint-of-the-veto?lang=fr")
    expect(page.get_by_role("heading", level=1)).to_have_text(FRENCH_TITLE)
    expect(page.locator("article.letter > header")).to_have_attribute("lang", "fr")
    expect(letter_text).to_have_attribute("lang", "fr")
    expect(letter_text).to_have_attribute("dir", "ltr")
    expect(letter_text.locator("p.addressee")).to_contain_text(FRENCH_ADDRESSEE.splitlines()[0])
    expect(letter_text.locator("strong")).to_have_text("tous les membres permanents")
    expect(letter_text).to_contain_text(FRENCH_SENTENCE)
    expect(switcher.get_by_role("link", name="Français")).to_have_attribute("aria-current", "page")
    journey.record("public letter in french")

    # ... and downloads it as a PDF, in French.
    pdf_link = page.get_by_role("button", name="Download the PDF")
    expect(pdf_link).to_have_attribute("href", "/letters/open-letter-on-restraint-of-the-veto.pdf?lang=fr")
    # The PDF is served inline, so Chromium opens it in its viewer rather than firing a
    # download: fetch the link's own URL in the visitor's context (same cookies) instead.
    response = page.request.get(pdf_link.evaluate("link => link.href"))
    assert response.ok, f"{response.status} {response.url}"
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == 'inline; filename="open-letter-on-restraint-of-the-veto-fr.pdf"'
    PDF_PATH.unlink(missing_ok=True)
    PDF_PATH.write_bytes(response.body())
    assert PDF_PATH.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", "-enc", "UTF-8", str(PDF_PATH), "-"], check=True, capture_output=True, text=True
        ).stdout
        assert FRENCH_SENTENCE in " ".join(text.split())
        assert FRENCH_TITLE in " ".join(text.split())

    with live_app.app_context():
        letter = services.get_letter("open-letter-on-restraint-of-the-veto")
        french = letter.translation("fr")
        assert french.status == "published" and french.published_revision.title == FRENCH_TITLE
        assert letter.translation("ar").status == "review"
    assert problems == []


def _transitions(letter_id: int) -> list[AuditEvent]:
    query = sa.select(AuditEvent).where(
        AuditEvent.action == "letter.transition", AuditEvent.object_id == str(letter_id)
    )
    return list(db.session.scalars(query.order_by(AuditEvent.id)))
