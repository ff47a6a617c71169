"""The coalition's settings page (logo included) and the audit log."""

import html
import io
import os
import re
import struct
import zlib
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from campaign.admin.models import CoalitionSettings
from campaign.audit import AuditEvent
from campaign.extensions import db
from tests import factories

# --- helpers -------------------------------------------------------------------

SETTINGS = {
    "name": "Civilian Shield Coalition",
    "letterhead": "Civilian Shield Coalition\nRue des Pâquis 12, 1201 Geneva",
    "mail_from_name": "Civilian Shield Secretariat",
    "mail_from_address": "Secretariat@Shield.example.org",
    "reply_to": "replies@shield.example.org",
    "postal_address": "Rue des Pâquis 12, 1201 Geneva, Switzerland",
    "privacy_notice": "We use your address only for the alerts you chose.",
    "default_timezone": "Europe/Zurich",
}
FIELDS = sorted(SETTINGS)


def png(width: int = 1, height: int = 1, noise: bool = False) -> bytes:
    """A valid RGB PNG; with ``noise`` its pixels are random, so it does not compress."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = (lambda: os.urandom(width * 3)) if noise else (lambda: b"\x10\x80\xc0" * width)
    pixels = b"".join(b"\x00" + row() for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _post(client, logo: tuple[bytes, str] | None = None, **changes: str | None):
    data: dict[str, object] = {**SETTINGS, **changes}
    data = {k: v for k, v in data.items() if v is not None}
    if logo is not None:
        data["logo"] = (io.BytesIO(logo[0]), logo[1])
    return client.post("/admin/settings", data=data, content_type="multipart/form-data")


def _settings(app) -> CoalitionSettings | None:
    with app.app_context():
        found = db.session.get(CoalitionSettings, 1, options=[sa.orm.undefer(CoalitionSettings.logo)])
        if found is not None:
            db.session.expunge(found)
        return found


def _settings_events(app) -> list[AuditEvent]:
    with app.app_context():
        query = sa.select(AuditEvent).where(AuditEvent.action == "settings.update").order_by(AuditEvent.id)
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


@pytest.fixture
def signed_in_admin(auth, admin):
    auth.login(admin)
    return admin


# --- settings ------------------------------------------------------------------


def test_settings_page_saves_every_field(app, client, signed_in_admin):
    response = _post(client)
    assert response.headers["Location"] == "/admin/settings"
    saved = _settings(app)
    for field in FIELDS:
        expected = SETTINGS[field].lower() if field == "mail_from_address" else SETTINGS[field]
        assert getattr(saved, field) == expected, field
    page = _text(client.get("/admin/settings"))
    assert "Settings saved." in page
    assert "Civilian Shield Coalition" in page and "Rue des Pâquis 12, 1201 Geneva, Switzerland" in page
    [event] = _settings_events(app)
    assert event.actor_id == signed_in_admin.id
    assert event.details == {"fields": FIELDS, "logo": False}


def test_audit_event_lists_only_the_fields_that_changed(app, client, signed_in_admin):
    _post(client)
    _post(client, reply_to="other@shield.example.org", privacy_notice="A new notice.")
    _post(client, reply_to="other@shield.example.org", privacy_notice="A new notice.")
    events = _settings_events(app)
    assert [e.details["fields"] for e in events] == [FIELDS, ["privacy_notice", "reply_to"], []]


def test_coalition_name_is_required(app, client, signed_in_admin):
    response = _post(client, name="")
    assert response.status_code == 200
    assert _settings(app) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mail_from_name", "Shield\r\nBcc: victim@example.org"),
        ("mail_from_name", "Shield\nBcc: victim@example.org"),
        ("mail_from_name", "Shield\rBcc: victim@example.org"),
        ("mail_from_name", "Shield Secretariat\n"),
        ("name", "Shield\r\nBcc: victim@example.org"),
        ("name", "Shield Coalition\n"),
        ("mail_from_address", "a@shield.example.org\r\nBcc: victim@example.org"),
        ("reply_to", "a@shield.example.org\nBcc: victim@example.org"),
        ("mail_from_address", "not an address"),
    ],
)
def test_line_breaks_and_bad_addresses_are_refused(app, client, signed_in_admin, field, value):
    _post(client)
    response = _post(client, **{field: value})
    assert response.status_code == 200
    saved = _settings(app)
    assert getattr(saved, field) == (SETTINGS[field].lower() if field == "mail_from_address" else SETTINGS[field])
    assert len(_settings_events(app)) == 1


# --- logo ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "filename", "mimetype"),
    [(png(), "logo.png", "image/png"), (png(3, 2), "LOGO.PNG", "image/png"), (JPEG, "logo.jpg", "image/jpeg")],
)
def test_logo_is_stored_and_served(app, client, signed_in_admin, content, filename, mimetype):
    assert client.get("/logo").status_code == 404
    assert _post(client, logo=(content, filename)).status_code == 302
    served = client.get("/logo")
    assert served.status_code == 200
    assert served.mimetype == mimetype
    assert served.data == content
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert _settings_events(app)[0].details["logo"] is True
    assert 'src="/logo"' in client.get("/").get_data(as_text=True)


def test_pages_show_the_logo_without_loading_it(app, client, signed_in_admin):
    """The logo (up to 512 KiB) is read by its own route and the PDF, not by every page that shows it."""
    _post(client, logo=(png(64, 64, noise=True), "logo.png"))
    with factories.statements(app) as statements:
        page = client.get("/").get_data(as_text=True)
    assert 'src="/logo"' in page
    assert any("coalition_settings" in statement for statement in statements)
    assert not any(re.search(r"coalition_settings\.logo\b", statement) for statement in statements)


@pytest.mark.parametrize(
    ("content", "filename", "message"),
    [
        (SVG, "logo.svg", "PNG or JPEG only."),
        (SVG, "logo.png", "The logo must be a PNG or JPEG image."),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "logo.png", "The logo must be a PNG or JPEG image."),
        (b"<html><script>alert(1)</script></html>", "logo.jpg", "The logo must be a PNG or JPEG image."),
        (png(), "logo.gif", "PNG or JPEG only."),
        (png(), "logo", "PNG or JPEG only."),
    ],
)
def test_logo_that_is_not_png_or_jpeg_is_refused(app, client, signed_in_admin, content, filename, message):
    _post(client, logo=(png(), "logo.png"))
    response = _post(client, logo=(content, filename), name="Renamed Coalition")
    assert response.status_code == 200
    assert message in _text(response)
    saved = _settings(app)
    assert (saved.logo, saved.logo_mimetype, saved.name) == (png(), "image/png", SETTINGS["name"])
    assert client.get("/logo").data == png()


def test_oversized_logo_is_refused(app, client, signed_in_admin, monkeypatch):
    monkeypatch.setitem(app.config, "LOGO_MAX_BYTES", 2048)
    small, large = png(4, 4), png(40, 40, noise=True)
    assert len(small) <= 2048 < len(large)
    assert _post(client, logo=(small, "logo.png")).status_code == 302
    response = _post(client, logo=(large, "logo.png"), name="Renamed Coalition")
    assert response.status_code == 200
    assert "The logo is larger than 2 KiB." in _text(response)
    saved = _settings(app)
    assert (saved.logo, saved.name) == (small, SETTINGS["name"])


def test_request_body_is_size_limited(app, client, signed_in_admin, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 10_000)
    assert _post(client, logo=(png(80, 80, noise=True), "logo.png")).status_code == 413
    assert _settings(app) is None


def test_logo_can_be_removed(app, client, signed_in_admin):
    _post(client, logo=(png(), "logo.png"))
    assert "Remove the current logo" in _text(client.get("/admin/settings"))
    assert _post(client, remove_logo="y").status_code == 302
    saved = _settings(app)
    assert (saved.logo, saved.logo_mimetype) == (None, None)
    assert client.get("/logo").status_code == 404


def test_saving_without_a_new_logo_keeps_the_old_one(app, client, signed_in_admin):
    _post(client, logo=(png(), "logo.png"))
    _post(client, letterhead="A new letterhead")
    _post(client, logo=(b"", "empty.png"))
    assert _settings(app).logo == png()


def test_settings_page_is_for_admins(client, auth, coordinator):
    auth.login(coordinator)
    assert client.get("/admin/settings").status_code == 403
    assert _post(client).status_code == 403


# --- the settings in mail ------------------------------------------------------


def _invite(client, email: str = "new.coordinator@example.org") -> None:
    form = {"email": email, "name": "New Coordinator", "role": "coordinator", "organisation": "", "active": "y"}
    assert client.post("/admin/users/new", data=form).status_code == 302


def test_invitation_uses_the_configured_sender_and_reply_to(app, client, signed_in_admin, outbox):
    _invite(client, "before@example.org")
    before = outbox.only()
    assert before["From"].addresses[0].addr_spec == app.config["MAIL_FROM"].split("<")[1].rstrip(">")
    assert before["Reply-To"] is None
    outbox.clear()

    _post(client)
    _invite(client)
    message = outbox.only()
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Civilian Shield Secretariat", "secretariat@shield.example.org")
    assert message["Reply-To"].addresses[0].addr_spec == "replies@shield.example.org"
    assert "Civilian Shield Coalition" in message.get_body(preferencelist=("plain",)).get_content()


@pytest.mark.parametrize(
    "name",
    ['Coalición "Escudo" Civil', "Back\\slash\\", "Shield <evil@example.org>, other@example.org", "Щит · 盾"],
)
def test_sender_names_with_special_characters_reach_the_header_intact(app, client, signed_in_admin, outbox, name):
    _post(client, mail_from_name=name)
    _invite(client)
    raw = next(outbox.directory.glob("*.eml")).read_bytes()
    header = raw.split(b"\r\n\r\n", 1)[0]
    assert all(byte < 128 for byte in header)
    [sender] = outbox.only()["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (name, "secretariat@shield.example.org")


def test_sender_name_falls_back_to_the_coalition_name(client, signed_in_admin, outbox):
    _post(client, mail_from_name="")
    _invite(client)
    assert outbox.only()["From"].addresses[0].display_name == "Civilian Shield Coalition"


# --- audit log -----------------------------------------------------------------

EVENTS = [
    # (actor email, action, object type, created at, summary)
    ("amina@example.org", "letter.publish", "Letter", datetime(2025, 1, 10, 9, 0, tzinfo=UTC), "alpha-event"),
    ("jonas@example.org", "letter.close", "Letter", datetime(2025, 2, 15, 23, 59, 30, tzinfo=UTC), "bravo-event"),
    ("a_b@example.org", "contact.import", "Contact", datetime(2025, 3, 20, 0, 0, tzinfo=UTC), "charlie-event"),
    ("axb@example.org", "user.update", "User", datetime(2025, 3, 21, 12, 0, tzinfo=UTC), "delta-event"),
    ("per%cent@example.org", "settings.update", "CoalitionSettings", datetime(2025, 4, 1, tzinfo=UTC), "echo-event"),
    ("back\\slash@example.org", "user.create", "User", datetime(2025, 4, 2, tzinfo=UTC), "foxtrot-event"),
    (None, "mailing.send", None, datetime(2025, 4, 3, tzinfo=UTC), "golf-event"),
]
ALL = [summary for *_, summary in EVENTS]


@pytest.fixture
def events(app, database):
    with app.app_context():
        for actor, action, object_type, when, summary in EVENTS:
            db.session.add(
                AuditEvent(
                    actor_email=actor,
                    action=action,
                    object_type=object_type,
                    object_id="1" if object_type else None,
                    created_at=when,
                    summary=summary,
                )
            )
        db.session.commit()


def _shown(client, **filters: str) -> list[str]:
    response = client.get("/admin/audit", query_string=filters)
    assert response.status_code == 200
    page = _text(response)
    return [summary for summary in ALL if summary in page]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ALL),
        ({"actor": "jonas"}, ["bravo-event"]),
        ({"actor": "JONAS@EXAMPLE.ORG"}, ["bravo-event"]),
        ({"actor": "a_b"}, ["charlie-event"]),
        ({"actor": "_"}, ["charlie-event"]),
        ({"actor": "%"}, ["echo-event"]),
        ({"actor": "r%c"}, ["echo-event"]),
        ({"actor": "per_cent"}, []),
        ({"actor": "\\"}, ["foxtrot-event"]),
        ({"actor": "nobody"}, []),
        ({"action": "letter.close"}, ["bravo-event"]),
        ({"action": "user.update"}, ["delta-event"]),
        ({"object_type": "Letter"}, ["alpha-event", "bravo-event"]),
        ({"object_type": "Contact"}, ["charlie-event"]),
        ({"since": "2025-02-01", "until": "2025-03-20"}, ["bravo-event", "charlie-event"]),
        ({"since": "2025-02-15", "until": "2025-02-15"}, ["bravo-event"]),
        ({"since": "2025-04-02"}, ["foxtrot-event", "golf-event"]),
        ({"until": "2025-01-10"}, ["alpha-event"]),
        ({"since": "2025-03-22", "until": "2025-03-01"}, []),
        ({"actor": "example.org", "object_type": "User", "since": "2025-04-01"}, ["foxtrot-event"]),
    ],
)
def test_audit_log_filters(client, auth, admin, events, filters, expected):
    auth.login(admin)
    assert _shown(client, **filters) == [s for s in ALL if s in expected]


@pytest.mark.parametrize(
    "filters", [{"since": "2025-13-45"}, {"until": "yesterday"}, {"action": "<script>"}, {"page": "-1"}]
)
def test_audit_log_survives_odd_filters(client, auth, admin, events, filters):
    auth.login(admin)
    response = client.get("/admin/audit", query_string=filters)
    assert response.status_code == 200
    assert "<script>" not in response.get_data(as_text=True)


def test_audit_log_shows_newest_first_and_paginates(app, client, auth, admin, events):
    with app.app_context():
        for n in range(60):
            when = datetime(2024, 6, 1, 0, n, tzinfo=UTC)
            db.session.add(AuditEvent(action="filler.event", created_at=when, summary=f"filler-{n:02}"))
        db.session.commit()
    auth.login(admin)
    first = _text(client.get("/admin/audit", query_string={"action": "filler.event"}))
    assert first.index("filler-59") < first.index("filler-58")
    assert "filler-09" not in first and "Page 1 of 2" in first
    second = _text(client.get("/admin/audit", query_string={"action": "filler.event", "page": 2}))
    assert "filler-09" in second and "filler-59" not in second


def test_coordinator_reads_the_audit_log(client, auth, coordinator, events):
    auth.login(coordinator)
    assert _shown(client, actor="jonas") == ["bravo-event"]


def test_members_and_strangers_cannot_read_the_audit_log(client, auth, member, events):
    anonymous = client.get("/admin/audit")
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
    auth.login(member)
    response = client.get("/admin/audit")
    assert response.status_code == 403
    assert "bravo-event" not in response.get_data(as_text=True)


def test_admin_actions_reach_the_audit_log(client, auth, admin):
    auth.login(admin)
    _post(client)
    assert "Updated coalition settings" in _text(client.get("/admin/audit", query_string={"actor": admin.email}))


def _options(page: str, name: str) -> list[str]:
    select = re.search(rf'<select[^>]*name="{name}"[^>]*>(.*?)</select>', page, re.S)
    assert select, name
    return re.findall(r'<option[^>]*value="([^"]*)"', select.group(1))


def test_audit_filter_choices_come_from_one_query(app, client, auth, admin, events):
    auth.login(admin)
    with factories.statements(app) as statements:
        page = client.get("/admin/audit").get_data(as_text=True)
    assert len([s for s in statements if "DISTINCT" in s.upper()]) == 1
    with app.app_context():
        logged = db.session.execute(sa.select(AuditEvent.action, AuditEvent.object_type)).all()
    assert _options(page, "action") == ["", *sorted({action for action, _ in logged})]
    assert _options(page, "object_type") == ["", *sorted({kind for _, kind in logged if kind is not None})]
    assert "mailing.send" in _options(page, "action")  # an action logged without an object
