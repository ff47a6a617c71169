"""Response headers, the CSP, and pages that load nothing from elsewhere."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from campaign import queue
from campaign.auth import tokens
from campaign.auth.models import User
from campaign.extensions import db
from campaign.security import CONTENT_SECURITY_POLICY

STATIC = Path(__file__).resolve().parent.parent / "static"


class _Resources(HTMLParser):
    """Collects what a page loads: stylesheets, scripts, images, frames, inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "style" in found or any(name.startswith("on") for name in found):
            self.inline.append(f"<{tag} {attrs}>")
        if tag == "style" or (tag == "script" and "src" not in found):
            self.inline.append(tag)
        for name in ("src", "srcset", "data", "poster") + (("href",) if tag == "link" else ()):
            if found.get(name):
                self.urls.append(found[name])


def test_security_headers(client):
    response = client.get("/login")
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers  # only in production


def test_signed_in_pages_are_not_cached(client, auth, member):
    auth.login(member)
    assert client.get("/account").headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("role", ["anonymous", "member", "admin"])
def test_pages_load_only_local_resources(app, client, auth, make_account, role):
    accounts = {r: make_account(r) for r in ("member", "admin")}
    if role != "anonymous":
        auth.login(accounts[role])
    pages = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods and not rule.arguments and rule.endpoint not in ("static", "main.healthz")
    ]
    checked = 0
    for url in pages:
        response = client.get(url)
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        parser = _Resources()
        parser.feed(response.get_data(as_text=True))
        for resource in parser.urls:
            assert resource.startswith("/") and not resource.startswith("//"), f"{url} loads {resource}"
        assert parser.inline == [], f"{url} has inline style or script: {parser.inline}"
        checked += 1
    assert checked >= 3


def test_vendored_css_fetches_nothing():
    for css in STATIC.rglob("*.css"):
        text = css.read_text(encoding="utf-8")
        assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", text), css


def test_links_in_emails_ignore_the_host_header(client, member, outbox):
    client.post("/password/forgot", data={"email": member.email}, headers={"Host": "evil.example"})
    with client.application.app_context():
        queue.run_due()  # the worker sends password links
    text = outbox.only().get_body(preferencelist=("plain",)).get_content()
    assert "evil.example" not in text
    assert "http://localhost/password/reset/" in text


def test_public_answers_set_no_cookie_and_signed_in_answers_are_never_stored(app, client, auth, member):
    public = client.get("/letters")
    assert public.status_code == 200 and "Set-Cookie" not in public.headers and "Cache-Control" not in public.headers
    with app.app_context():
        _, raw = tokens.create_token(db.session.get(User, member.id), "tests")
        db.session.commit()
    api = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {raw}"})
    assert api.status_code == 200 and api.headers["Cache-Control"] == "no-store"
    auth.login(member)
    assert client.get("/letters").headers["Cache-Control"] == "no-store"
