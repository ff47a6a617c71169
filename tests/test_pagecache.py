"""The public letter page kept in Redis: replayed without the database, never stale after a commit.

The cache tests need Redis (``REDIS_URL``; they flush its database, as the queue tests
do) and run on the suite's database, PostgreSQL when ``DATABASE_URL`` is set.  Pages are
read by an anonymous visitor with a client of its own; changes are made through the
services (or a coordinator's pages) and committed, as the application makes them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from campaign import pagecache
from campaign.admin import services as admin_services
from campaign.db import utcnow
from campaign.extensions import db
from campaign.letters import services as letters
from campaign.letters.models import Letter, Meeting
from campaign.letters.services import LetterText, MeetingData
from campaign.signatures import moderation
from campaign.signatures import services as signatures
from campaign.signatures.models import Signature
from tests.factories import statements
from tests.letters.publishing import ORIGINAL, TRANSLATIONS, Published, publish
from tests.letters.test_public import UN_MEETING
from tests.signatures.test_listing import add_signatures

needs_redis = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set")


@pytest.fixture
def redis(app: Flask, database: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The session's app with the page cache on (the tests' configuration has it off), Redis emptied."""
    client = app.extensions["redis"]
    monkeypatch.setitem(app.config, "PAGE_CACHE_SECONDS", 60)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def reader(app: Flask, redis: Any) -> FlaskClient:
    """An anonymous visitor: it never holds a cookie (the letter page sets none)."""
    return app.test_client()


def queries_for(app: Flask, client: FlaskClient, url: str, **kwargs: Any) -> tuple[int, TestResponse]:
    """(statements the database received, the response) for one GET."""
    with statements(app) as issued:
        response = client.get(url, **kwargs)
    return len(issued), response


def page(client: FlaskClient, letter: Published, query: str = "") -> str:
    response = client.get(f"/letters/{letter.slug}{query}")
    assert response.status_code == 200, response.status
    return response.get_data(as_text=True)


def change(app: Flask, make: Callable[[Letter], object]) -> None:
    """Apply ``make`` to the letter (reloaded in a request of its own) and commit."""
    with app.test_request_context():
        letter = db.session.scalar(sa.select(Letter).order_by(Letter.id.desc()).limit(1))
        make(letter)
        db.session.commit()


def settings(**changed: object) -> Callable[[Letter], None]:
    """A change to ``change`` the letter's settings with: those given, none of the others."""
    values = {"signature_deadline": None, "embargo_until": None, "meeting": None, "members_only": False, **changed}
    return lambda letter: letters.update_settings(letter, **values)


def signature_named(letter: Letter, name: str) -> Signature:
    return db.session.scalar(
        sa.select(Signature).where(Signature.letter_id == letter.id, Signature.organisation_name == name)
    )


# --- what is served from the cache ---------------------------------------------------------


@pytest.mark.redis
@needs_redis
@pytest.mark.parametrize("query", ["", "?by=name", "?lang=fr"])
def test_the_next_visit_is_answered_without_the_database(app, reader, query):
    letter = publish(app, ORIGINAL, translations={"fr": TRANSLATIONS["fr"]})
    add_signatures(app, letter.slug, [("First Org", "FR"), ("Second Org", "KE")])
    url = f"/letters/{letter.slug}{query}"

    rendered_queries, rendered = queries_for(app, reader, url)
    cached_queries, cached = queries_for(app, reader, url)

    assert rendered_queries > 0 and cached_queries == 0
    assert cached.status_code == 200 and cached.data == rendered.data
    assert list(cached.headers.items()) == list(rendered.headers.items())
    assert cached.headers["Content-Security-Policy"] and cached.headers["Cache-Control"] == "no-cache"
    assert "Set-Cookie" not in cached.headers


@pytest.mark.redis
@needs_redis
def test_revalidation_and_head_are_answered_as_rendering_answers_them(app, reader):
    letter = publish(app)
    url = f"/letters/{letter.slug}"
    first = reader.get(url)
    etag = first.headers["ETag"]

    count, revalidated = queries_for(app, reader, url, headers={"If-None-Match": etag})
    app.config["PAGE_CACHE_SECONDS"] = 0
    rendered = reader.get(url, headers={"If-None-Match": etag})
    app.config["PAGE_CACHE_SECONDS"] = 60

    assert count == 0 and revalidated.status_code == rendered.status_code == 304 and revalidated.data == b""
    assert list(revalidated.headers.items()) == list(rendered.headers.items())
    head = reader.head(url)
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == first.headers["Content-Length"]


@pytest.mark.redis
@needs_redis
def test_signed_in_readers_and_flashed_messages_are_never_served_nor_kept(app, reader, client, auth, member):
    letter = publish(app)
    page(reader, letter)
    auth.login(member)
    own = page(client, letter)
    assert "Sign letters" in own and "Sign in" not in own  # the member's own navigation
    assert "Sign letters" not in page(reader, letter)
    visitor = app.test_client()
    with visitor.session_transaction() as session:
        session["_flashes"] = [("info", "A message for this visitor")]
    assert "A message for this visitor" in page(visitor, letter)
    assert "A message for this visitor" not in page(reader, letter)


# --- every change shows on the next request -------------------------------------------------


def _approve(letter: Letter) -> None:
    signature = signature_named(letter, "Waiting Org")
    moderation.approve(signature, actor=None)


def _withdraw(letter: Letter) -> None:
    signatures.withdraw(signature_named(letter, "First Org"))


def _bulk_approve(letter: Letter) -> None:
    db.session.execute(
        sa.update(Signature)
        .where(Signature.letter_id == letter.id, Signature.organisation_name == "Waiting Org")
        .values(status="approved", approved_at=utcnow(), updated_at=sa.func.now())
    )


def _publish_revision(letter: Letter) -> None:
    text = LetterText(title=ORIGINAL.title, addressee=ORIGINAL.addressee, body_markdown="A **newly published** text.")
    letters.save_revision(letter, text)
    letters.publish_changes(letter)


def _settings(letter: Letter) -> None:
    current = admin_services.get_settings()
    data = admin_services.SettingsData(
        name="Coalition Renamed", letterhead="", mail_from_name="", mail_from_address="", reply_to="",
        postal_address="", privacy_notice="", default_timezone=current.default_timezone or "America/New_York",
    )  # fmt: skip
    admin_services.update_settings(data)


def _translation(letter: Letter) -> None:
    translation = letters.save_translation(letter, "es", TRANSLATIONS["es"])
    letters.set_translation_status(translation, "published")


def _meeting(letter: Letter) -> None:
    meeting = db.session.get(Meeting, letter.meeting_id)
    letters.save_meeting(
        MeetingData(
            title="Meeting moved to Geneva",
            starts_at_local=meeting.starts_at_local,
            timezone="Europe/Zurich",
            location="Palais des Nations",
        ),
        meeting,
    )


def _close(letter: Letter) -> None:
    letters.transition(letter, "closed")


@pytest.mark.redis
@needs_redis
@pytest.mark.parametrize(
    ("make", "gone", "shown"),
    [
        (_approve, [], ["Waiting Org", "2 organisations have signed"]),
        (_bulk_approve, [], ["Waiting Org", "2 organisations have signed"]),
        (_withdraw, ["First Org"], ["The organisations that sign this letter will be listed here"]),
        (_publish_revision, ["act <em>without delay</em>"], ["A <strong>newly published</strong> text."]),
        (_settings, [], ["Coalition Renamed"]),
        (_translation, [], ["Español"]),
        (_meeting, ["United Nations Headquarters"], ["Meeting moved to Geneva, Palais des Nations"]),
        (_close, ["Open for signatures", "Sign this letter"], ["Closed"]),
    ],
    ids=["approve", "bulk update", "withdraw", "revision", "settings", "translation", "meeting", "close"],
)
def test_a_committed_change_shows_on_the_next_request(app, reader, make, gone, shown):
    letter = publish(app, ORIGINAL, translations={"fr": TRANSLATIONS["fr"]}, meeting=UN_MEETING)
    add_signatures(app, letter.slug, [("First Org", "FR"), ("Waiting Org", "KE", "pending_approval", "w@example.org")])
    for query in ("", "?by=name", "?lang=fr"):
        page(reader, letter, query)
    etag = reader.get(f"/letters/{letter.slug}").headers["ETag"]
    for query in ("", "?by=name"):
        count, kept = queries_for(app, reader, f"/letters/{letter.slug}{query}")
        text = kept.get_data(as_text=True)
        assert count == 0 and all(t in text for t in gone) and not any(t in text for t in shown)

    change(app, make)

    for query in ("", "?by=name"):
        fresh = page(reader, letter, query)
        assert all(t in fresh for t in shown) and not any(t in fresh for t in gone), query
    assert reader.get(f"/letters/{letter.slug}", headers={"If-None-Match": etag}).status_code == 200


@pytest.mark.redis
@needs_redis
def test_a_sign_on_awaiting_confirmation_keeps_the_page_until_it_is_approved(app, reader, redis):
    """A surge of public sign-ons must not empty the cache of the letter being signed: no
    page shows a signature before its approval."""
    letter = publish(app)
    add_signatures(app, letter.slug, [("First Org", "FR")])
    url = f"/letters/{letter.slug}"
    page(reader, letter)
    versions = {key: redis.get(key) for key in (pagecache.SITE_KEY, f"{pagecache.PREFIX}letter:{letter.slug}")}
    assert all(versions.values())
    form = {"organisation_name": "Surge Org", "country": "KE", "website": "", "signer_name": "Amani Otieno",
            "signer_title": "Director", "signer_email": "amani@surge.example.org", "consent": "y"}  # fmt: skip

    assert app.test_client().post(f"{url}/sign", data=form).status_code == 302

    assert {key: redis.get(key) for key in versions} == versions
    count, kept = queries_for(app, reader, url)
    assert count == 0 and "Surge Org" not in kept.get_data(as_text=True)
    rendering = app.test_client()  # a session cookie: past the cache, the application answers
    rendering.set_cookie(app.config["SESSION_COOKIE_NAME"], "none")
    fresh = rendering.get(url)
    assert (fresh.headers["ETag"], fresh.data) == (kept.headers["ETag"], kept.data)  # as kept
    change(app, _confirm_and_approve)
    assert "Surge Org" in page(reader, letter)


def _confirm_and_approve(letter: Letter) -> None:
    signature = signature_named(letter, "Surge Org")
    signature.status = "pending_approval"
    moderation.approve(signature, actor=None)


@pytest.mark.redis
@needs_redis
def test_the_kept_page_ends_at_the_signature_deadline(app, reader):
    letter = publish(app)
    deadline = utcnow() + timedelta(seconds=3)
    change(app, settings(signature_deadline=deadline))
    assert "Sign this letter" in page(reader, letter)
    count, _ = queries_for(app, reader, f"/letters/{letter.slug}")
    assert count == 0
    time.sleep(max(0.0, (deadline - utcnow()).total_seconds()) + 0.2)
    after = page(reader, letter)
    assert "Sign this letter" not in after and "Signature deadline passed" in after


@pytest.mark.redis
@needs_redis
def test_an_embargo_set_later_hides_the_kept_page(app, reader):
    letter = publish(app)
    page(reader, letter)
    embargo = utcnow() + timedelta(days=1)
    change(app, settings(embargo_until=embargo))
    assert reader.get(f"/letters/{letter.slug}").status_code == 404


@pytest.mark.redis
@needs_redis
def test_a_letter_made_members_only_loses_the_kept_pages_sign_button(app, reader):
    letter = publish(app)
    assert "Sign this letter" in page(reader, letter)
    change(app, settings(members_only=True))
    assert "Sign this letter" not in page(reader, letter)


@pytest.mark.redis
@needs_redis
def test_a_rolled_back_change_keeps_the_page(app, reader, redis):
    letter = publish(app)
    page(reader, letter)
    with app.test_request_context():
        letters.transition(letters.get_letter(letter.slug), "closed")
        db.session.rollback()
    count, response = queries_for(app, reader, f"/letters/{letter.slug}")
    assert count == 0 and "Open for signatures" in response.get_data(as_text=True)


# --- the races and losses the versions guard against -----------------------------------------


@pytest.mark.redis
@needs_redis
def test_a_page_rendered_before_a_commit_is_never_served_after_it(app, redis):
    letter = publish(app)
    entry = pagecache.Entry('"old"', [("Content-Type", "text/html")], b"rendered before the commit")
    with app.app_context():
        found = pagecache.lookup(redis, letter.slug, None, "country")  # the versions, read first
        pagecache.bump({letter.slug})  # a commit lands while the page renders
        assert pagecache.store(redis, found, entry, 60, None)
        assert pagecache.lookup(redis, letter.slug, None, "country").hit is None

        redis.delete(pagecache.SITE_KEY, f"{pagecache.PREFIX}letter:{letter.slug}")
        missing = pagecache.lookup(redis, letter.slug, None, "country")  # no versions yet
        pagecache.bump({letter.slug}, site=True)  # a commit mints them meanwhile
        assert not pagecache.store(redis, missing, entry, 60, None)
        assert pagecache.lookup(redis, letter.slug, None, "country").hit is None


@pytest.mark.redis
@needs_redis
def test_a_version_lost_by_redis_never_brings_an_old_page_back(app, reader, redis):
    letter = publish(app)
    add_signatures(app, letter.slug, [("First Org", "FR")])
    assert "First Org" in page(reader, letter)
    with app.app_context():  # a change no hook sees (raw SQL): kept pages may show the old list ...
        db.session.execute(sa.text("UPDATE signatures SET status = 'withdrawn'"))
        db.session.commit()
    assert "First Org" in page(reader, letter)  # ... until they expire, PAGE_CACHE_SECONDS at most,
    for key in redis.scan_iter(f"{pagecache.PREFIX}letter:*"):
        redis.delete(key)  # or until a version is lost: it is minted anew, never reissued
    assert "First Org" not in page(reader, letter)


def test_pages_render_when_redis_is_unreachable(separate_app):
    app = separate_app(REDIS_URL="redis://127.0.0.1:1/0", PAGE_CACHE_SECONDS=60)
    letter = publish(app)
    client = app.test_client()
    assert client.get(f"/letters/{letter.slug}").status_code == 200
    assert client.get(f"/letters/{letter.slug}").status_code == 200
