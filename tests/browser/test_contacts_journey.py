"""A coordinator imports mission contacts: a file with errors first, then the fixed file; filters; sees coverage.

Every page on the way is screenshotted (``test-artifacts/browser/contacts-NN-step.png``)
and checked with axe-core: no serious or critical accessibility violation is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
import pytest
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Page, expect

from tests import factories
from tests.browser.conftest import ARTIFACTS, BLOCKING_IMPACTS, format_violations, watch_problems

HEADER = "country_code,country,organisation,honorific,first_name,last_name,position,salutation,email,language,tags"
ROWS = [
    "FR,France,Permanent Mission of France,H.E. Mr.,Jean,Dupont,Permanent Representative,Excellency,"
    "jean.dupont@fr-mission.example.org,fr,P5;Security Council",
    "CN,China,Permanent Mission of China,H.E. Mr.,Wei,Zhang,Permanent Representative,Excellency,"
    "wei.zhang@cn-mission.example.org,zh,P5;Security Council",
    "GH,Ghana,Permanent Mission of Ghana,H.E. Ms.,Ama,Mensah,Ambassador,Excellency,"
    "ama.mensah@gh-mission.example.org,en,Africa Group",
    "SN,Senegal,Permanent Mission of Senegal,H.E. Ms.,Awa,Ndiaye,Ambassador,Excellence,"
    "awa.ndiaye@sn-mission.example.org,fr,Africa Group",
]
#: Line 4 (the header is line 1) gets a mistyped address, line 5 a country code that is not ISO 3166.
BROKEN = {2: ("ama.mensah@gh-mission.example.org", "ama.mensah.gh-mission.example.org"), 3: ("SN,", "SQ,")}


class ContactsJourney:
    """Like ``Journey``, with screenshots named ``contacts-NN-step.png`` so the other journeys' stay."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.axe = Axe()
        self.step = 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTIFACTS.glob("contacts-*.png"):
            old.unlink()

    def record(self, name: str) -> None:
        """Screenshot the page as the next step, then check it with axe-core."""
        self.step += 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        self.page.screenshot(path=str(ARTIFACTS / f"contacts-{self.step:02d}-{slug}.png"), full_page=True)
        blocking = [v for v in self.axe.run(self.page).response["violations"] if v.get("impact") in BLOCKING_IMPACTS]
        assert not blocking, (
            f"step {self.step} ({name}) at {self.page.url}: "
            f"{len(blocking)} serious or critical accessibility violation(s)\n{format_violations(blocking)}"
        )


def write_csv(path: Path, broken: bool) -> Path:
    rows = list(ROWS)
    if broken:
        for index, (good, bad) in BROKEN.items():
            rows[index] = rows[index].replace(good, bad)
    path.write_text("\r\n".join([HEADER, *rows]) + "\r\n", encoding="utf-8")
    return path


@pytest.mark.only_browser("chromium")
def test_coordinator_imports_fixes_filters_and_sees_coverage(
    live_app: Flask, live_server: str, page: Page, tmp_path: Path
) -> None:
    with live_app.app_context():
        coordinator = factories.Account.of(factories.user("coordinator"))
    page.set_default_timeout(10_000)
    problems = watch_problems(page)
    journey = ContactsJourney(page)

    # Sign in: password, then the authenticator code.
    page.goto(f"{live_server}/login")
    page.get_by_label("Email").fill(coordinator.email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/login/two-factor")
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(coordinator.totp_secret).now())
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(f"{live_server}/")

    # Contacts: empty for now.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Contacts").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Contacts")
    expect(page.get_by_text("No contacts match.")).to_be_visible()
    journey.record("empty directory")

    # The import page explains the format.
    page.get_by_role("navigation", name="Contacts").get_by_role("link", name="Import").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Import contacts")
    expect(page.get_by_role("link", name="Download a template (CSV with the header row)")).to_be_visible()
    journey.record("import page")

    # A file with two bad rows: nothing is imported, and the report says which and why.
    page.get_by_label("CSV file").set_input_files(str(write_csv(tmp_path / "missions.csv", broken=True)))
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was imported: 2 of 4 rows are rejected.")
    rejected = page.get_by_role("table", name="Rejected rows")
    expect(rejected.get_by_role("row")).to_have_count(3)  # the header and two rows
    expect(rejected.get_by_role("row").nth(1)).to_contain_text("4")
    expect(rejected.get_by_role("row").nth(1)).to_contain_text("ama.mensah.gh-mission.example.org")
    expect(rejected.get_by_role("row").nth(2)).to_contain_text("5")
    expect(rejected.get_by_role("row").nth(2)).to_contain_text("'SQ'")
    counts = page.get_by_role("table", name="Rows in the file")
    expect(counts.get_by_role("row").filter(has_text="Valid")).to_contain_text("2")
    expect(counts.get_by_role("row").filter(has_text="Rejected")).to_contain_text("2")
    journey.record("report with rejected rows")

    # Fixed, uploaded again: imported.
    page.get_by_label("CSV file").set_input_files(str(write_csv(tmp_path / "missions-fixed.csv", broken=False)))
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_role("status").filter(has_text="Imported")).to_have_text(
        "Imported: 4 new, 0 updated, 0 unchanged."
    )
    journey.record("imported")

    # The list, filtered by tag and then by country.
    page.get_by_role("link", name="See the contacts").click()
    expect(page.get_by_role("row")).to_have_count(5)
    page.get_by_label("Tag", exact=True).select_option("Africa Group")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("row")).to_have_count(3)
    expect(page.get_by_role("row").filter(has_text="Awa Ndiaye")).to_contain_text("Senegal")
    journey.record("filtered by tag")
    page.get_by_label("Country").select_option(label="Ghana")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("row")).to_have_count(2)
    row = page.get_by_role("row").filter(has_text="Ama Mensah")
    expect(row).to_contain_text("ama.mensah@gh-mission.example.org")
    expect(row).to_contain_text("Deliverable")
    journey.record("filtered by tag and country")

    # Tag the ticked contact; the same filtered list comes back.
    page.get_by_label("Select H.E. Ms. Ama Mensah").check()
    page.get_by_label("Tag for the selected contacts").fill("Visited 2026")
    page.get_by_role("button", name="Add the tag").click()
    expect(page.get_by_role("status").filter(has_text="Tagged")).to_have_text(
        "Tagged 1 of the 1 selected contacts: Visited 2026."
    )
    expect(page.get_by_label("Country")).to_have_value("GH")
    expect(page.get_by_role("row").filter(has_text="Ama Mensah")).to_contain_text("Visited 2026")
    journey.record("tagged in bulk")

    # Coverage: four of the 193 Member States, the gaps first, then only the gaps.
    page.get_by_role("navigation", name="Contacts").get_by_role("link", name="Coverage").click()
    expect(page.get_by_text("4 of 193")).to_be_visible()
    table = page.get_by_role("table", name="Member States, those without a deliverable contact first")
    expect(table.get_by_role("row").nth(1)).to_contain_text("No deliverable contact")
    expect(table.get_by_role("row").filter(has_text="Ghana")).to_contain_text("Covered")
    journey.record("coverage")
    page.get_by_label("Only states without a deliverable contact").check()
    page.get_by_role("button", name="Show").click()
    gaps = page.get_by_role("table", name="Member States without a deliverable contact")
    expect(gaps.get_by_role("row")).to_have_count(190)  # the header and 189 states
    expect(gaps.get_by_role("row").filter(has_text="Ghana")).to_have_count(0)
    journey.record("coverage gaps only")

    # Ghana's only contact stops receiving mail; the contact's history says so, and Ghana becomes a gap.
    page.get_by_role("navigation", name="Contacts").get_by_role("link", name="Directory").click()
    page.get_by_role("link", name="H.E. Ms. Ama Mensah").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("H.E. Ms. Ama Mensah")
    journey.record("contact page")
    page.get_by_label("Reason").select_option(label="Unsubscribed")
    page.get_by_label("Note").fill("Asked by phone to receive no more letters")
    page.get_by_role("button", name="Suppress: send no more mail").click()
    expect(page.get_by_role("status")).to_have_text(
        "No more mail goes to ama.mensah@gh-mission.example.org: Unsubscribed."
    )
    history = page.get_by_role("region", name="History")
    expect(history.get_by_role("row").nth(1)).to_contain_text("Suppressed: Unsubscribed")
    expect(history.get_by_role("row").nth(1)).to_contain_text(coordinator.email)
    journey.record("contact suppressed")
    page.get_by_role("button", name="Edit").click()
    expect(page.get_by_label("Email")).to_have_value("ama.mensah@gh-mission.example.org")
    page.get_by_label("Email").fill("ama.mensah@@gh-mission")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("The contact was not saved")
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    journey.record("contact form with an error")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Contacts").click()
    page.get_by_role("navigation", name="Contacts").get_by_role("link", name="Coverage").click()
    expect(page.get_by_text("3 of 193")).to_be_visible()

    # An audience: the P5 contacts, in French or Chinese.
    page.get_by_role("navigation", name="Contacts").get_by_role("link", name="Audiences").click()
    page.get_by_role("button", name="Add an audience").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Add an audience")
    page.get_by_label("Name").fill("P5 missions")
    page.get_by_label("Tags").select_option(["P5"])
    page.get_by_label("Languages").select_option(["fr", "zh"])
    journey.record("audience form")
    page.get_by_role("button", name="Add the audience").click()
    expect(page.get_by_role("status")).to_have_text("Saved the audience 'P5 missions': 2 deliverable contacts.")
    expect(page.get_by_role("row").filter(has_text="P5 missions")).to_contain_text("French, Chinese")
    journey.record("audiences")

    assert not problems, problems
