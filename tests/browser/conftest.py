"""Real Chromium against the app served from a thread, CSRF on.

Chromium is Debian's (``/usr/bin/chromium``), driven through pytest-playwright's
fixtures; ``playwright install`` is never needed.  The app under test is a second
application on its own SQLite file, or on ``DATABASE_URL`` (PostgreSQL) when set,
where it commits for real: the fixture empties every table afterwards, because the
rest of the suite expects an empty database.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Page, expect
from werkzeug.serving import make_server

from campaign import create_app
from campaign.alerts.models import BUILTIN_TOPICS
from campaign.extensions import db
from tests import factories
from tests.conftest import reset_schema, settings_for_tests

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
#: axe-core impacts that fail a page; "minor" and "moderate" are left to review.
BLOCKING_IMPACTS = frozenset({"serious", "critical"})


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package to run the browser tests")
    return {"headless": True, **browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def base_url() -> None:
    """No fixed base URL: each test serves its own app on a free port.

    This also replaces pytest-playwright's own ``base_url``, defined as an instance
    method, which pytest deprecates (and this suite turns warnings into errors).
    """
    return None


def empty_database(application: Flask) -> dict[str, int]:
    """Delete every row (children first), keeping the tables and the rows the migrations put
    there (the built-in alert topics); returns the other rows still there."""
    with application.app_context(), db.engine.begin() as connection:
        existing = set(sa.inspect(connection).get_table_names())
        tables = [table for table in reversed(db.metadata.sorted_tables) if table.name in existing]
        counts = {}
        for table in tables:
            kept = _MIGRATION_ROWS.get(table.name)
            where = table.c.key.not_in(kept) if kept else sa.true()
            connection.execute(table.delete().where(where))
            counts[table.name] = connection.scalar(sa.select(sa.func.count()).select_from(table).where(where))
    return {name: n for name, n in counts.items() if n}


#: Rows a migration inserts, by table and key: the schema's, not a test's.
_MIGRATION_ROWS = {"alert_topics": tuple(BUILTIN_TOPICS)}


@pytest.fixture
def live_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """An application with CSRF on whose commits are real; no rows are left behind."""
    shared_url = os.environ.get("DATABASE_URL")
    if shared_url:
        request.getfixturevalue("app")  # the session's app has built the schema from the migrations
    database_url = shared_url or f"sqlite:///{tmp_path / 'browser.db'}"
    application = create_app(settings_for_tests(tmp_path, DATABASE_URL=database_url, WTF_CSRF_ENABLED=True))
    if not shared_url:
        reset_schema(application)
    try:
        yield application
    finally:
        try:
            left = empty_database(application)
        finally:
            with application.app_context():
                db.engine.dispose()
    assert not left, f"rows left behind: {left}"


@pytest.fixture
def live_server(live_app: Flask) -> Iterator[str]:
    """The app on a free port of 127.0.0.1, served from a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, live_app, threaded=True)
    base_url = f"http://127.0.0.1:{server.server_port}"
    live_app.config["SITE_URL"] = base_url  # links in emails point at this server
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield base_url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def format_violations(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
        for node in v["nodes"]:
            lines.append(f"    at {', '.join(map(str, node['target']))}: {node['html']}")
            summary = (node.get("failureSummary") or "").strip()
            lines.extend(f"      {line.strip()}" for line in summary.splitlines() if line.strip())
    return "\n".join(lines)


class Journey:
    """Numbered full-page screenshots and an axe-core check of every page visited."""

    def __init__(self, page: Page, directory: Path = ARTIFACTS, prefix: str = "") -> None:
        self.page = page
        self.directory = directory
        self.prefix = prefix
        self.axe = Axe()
        self.step = 0
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob(f"{prefix}[0-9][0-9]-*.png"):  # this journey's own: others use other prefixes
            old.unlink()

    def record(self, name: str) -> None:
        """Screenshot the page as the next step, then check it with axe-core."""
        self.step += 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        self.page.screenshot(path=str(self.directory / f"{self.prefix}{self.step:02d}-{slug}.png"), full_page=True)
        results = self.axe.run(self.page)
        blocking = [v for v in results.response["violations"] if v.get("impact") in BLOCKING_IMPACTS]
        assert not blocking, (
            f"step {self.step} ({name}) at {self.page.url}: "
            f"{len(blocking)} serious or critical accessibility violation(s)\n{format_violations(blocking)}"
        )


def watch_problems(page: Page) -> list[str]:
    """The list the page's console errors (CSP refusals among them) and failed responses are
    appended to from now on; a journey asserts it empty at the end."""
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(m.text) if m.type == "error" and "Failed to load" not in m.text else None
    )
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
    )
    return problems


def sign_in(page: Page, base: str, account: factories.Account) -> None:
    """Sign in as a staff ``account`` with its password and a fresh two-factor code."""
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/login/two-factor")
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(account.totp_secret).now())
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(f"{base}/")
