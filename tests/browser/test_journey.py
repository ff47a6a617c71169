"""An admin adds a member organisation and its representative, who then signs in.

Every page on the way is screenshotted (``test-artifacts/browser/``) and checked
with axe-core: no serious or critical accessibility violation is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from tests import factories
from tests.browser.conftest import Journey

ORGANISATION = "Réseau Océan Propre"
WEBSITE = "https://ocean-propre.example.org"
REPRESENTATIVE = ("amina.diallo@ocean-propre.example.org", "Amina Diallo")
NEW_PASSWORD = "tide pools and mangroves forever"


@pytest.mark.only_browser("chromium")
def test_admin_invites_a_representative_who_signs_in(live_app: Flask, live_server: str, page: Page) -> None:
    with live_app.app_context():
        admin = factories.Account.of(factories.user("admin"))
    page.set_default_timeout(10_000)
    journey = Journey(page)

    # The admin signs in: password, then the code from the authenticator app.
    page.goto(f"{live_server}/login")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    journey.record("sign in")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/login/two-factor")
    journey.record("two-factor code")
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(admin.totp_secret).now())
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(f"{live_server}/")
    expect(page.get_by_text("Signed in as")).to_contain_text("admin")
    journey.record("admin home")

    # Organisations → Add an organisation.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Organisations").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Organisations")
    journey.record("organisations")
    page.get_by_role("button", name="Add an organisation").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Add an organisation")
    journey.record("add an organisation")
    page.get_by_label("Name", exact=True).fill(ORGANISATION)
    page.get_by_label("Country").select_option(label="Senegal")
    page.get_by_label("Website").fill(WEBSITE)
    page.get_by_label("Member of the coalition").check()
    journey.record("organisation form filled")
    page.get_by_role("button", name="Add the organisation").click()

    # The organisation's page, saved as entered.
    expect(page.get_by_role("status")).to_have_text(f"Added {ORGANISATION}.")
    expect(page.get_by_role("heading", level=1)).to_have_text(ORGANISATION)
    expect(page.get_by_label("Country")).to_have_value("SN")
    expect(page.get_by_label("Website")).to_have_value(WEBSITE)
    expect(page.get_by_label("Member of the coalition")).to_be_checked()
    expect(page.get_by_text(f"No one represents {ORGANISATION} yet.")).to_be_visible()
    journey.record("organisation added")

    # Add a representative: a member of this organisation, preselected.
    page.get_by_role("link", name="Add a representative").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Add a user")
    expect(page.get_by_label("Role")).to_have_value("member")
    expect(page.get_by_label("Organisation", exact=True).locator("option:checked")).to_have_text(ORGANISATION)
    email, name = REPRESENTATIVE
    page.get_by_label("Email").fill(email)
    page.get_by_label("Name", exact=True).fill(name)
    journey.record("representative form filled")
    page.get_by_role("button", name="Create and invite").click()
    expect(page.get_by_role("status")).to_contain_text(f"{email} has been sent a link")
    row = page.get_by_role("row").filter(has_text=email)
    expect(row).to_contain_text(ORGANISATION)
    expect(row).to_contain_text("invited")
    journey.record("representative invited")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    journey.record("admin signed out")

    # The invitation, as the outbox wrote it.
    message = factories.Outbox(Path(live_app.config["OUTBOX_DIR"])).only()
    assert message["To"] == email
    links = re.findall(r"https?://\S+/password/reset/\S+", factories.text_of(message))
    assert len(links) == 1, factories.text_of(message)
    assert links[0].startswith(f"{live_server}/password/reset/")

    # The representative chooses a password: a mistyped repeat first.
    page.goto(links[0])
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a password")
    expect(page.get_by_text(f"For {email}.")).to_be_visible()
    journey.record("choose a password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD + " typo")
    page.get_by_role("button", name="Save the password").click()
    expect(page.get_by_label("Repeat the new password")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("The two passwords differ.")).to_be_visible()
    journey.record("passwords differ")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Save the password").click()
    expect(page).to_have_url(f"{live_server}/login")
    expect(page.get_by_role("status")).to_have_text("Your password is saved. Sign in with it now.")
    journey.record("password saved")

    # … and signs in with it, for the organisation.
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/")
    expect(page.get_by_text("Signed in as")).to_have_text(f"Signed in as {name} (member, {ORGANISATION}).")
    expect(page.get_by_role("link", name="Organisations")).to_have_count(0)
    journey.record("representative home")
