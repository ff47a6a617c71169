"""The Atom feed of public letters and the iCalendar files of their meetings."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

import pytest

from campaign.db import utcnow
from campaign.letters import syndication
from campaign.letters.services import LetterText, MeetingData
from tests.letters.publishing import ORIGINAL, TRANSLATIONS, publish, seed_text
from tests.letters.xss_corpus import PAYLOADS, executable_parts

A = "{http://www.w3.org/2005/Atom}"

GENEVA_MEETING = MeetingData(
    title="Human Rights Council, 60th session; side event, \\ hall",
    location="Palais des Nations, Room XX; Geneva",
    starts_at_local=datetime(2025, 10, 7, 9, 30),
    ends_at_local=datetime(2025, 10, 7, 11, 0),
    timezone="Europe/Zurich",
    description="Agenda:\n1. Opening, welcome; remarks\n2. Статья — 議題 — بند " + "long text " * 12,
)


def feed_of(client) -> ET.Element:
    response = client.get("/feed.atom")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    return ET.fromstring(response.data)  # noqa: S314 - the app's own output


def test_feed_lists_public_letters_only(app, client):
    seed = publish(app, seed_text(), translations={"fr": TRANSLATIONS["fr"]})
    closed = publish(app, LetterText(title="A closed letter", body_markdown="Closed."), status="closed")
    publish(app, LetterText(title="A draft letter", body_markdown="Draft."), status="draft")
    publish(app, LetterText(title="A letter in review", body_markdown="Review."), status="review")
    publish(
        app,
        LetterText(title="An embargoed letter", body_markdown="Later."),
        embargo_until=utcnow() + timedelta(days=1),
    )

    feed = feed_of(client)

    site = app.config["SITE_URL"]
    assert feed.tag == f"{A}feed"
    assert feed.findtext(f"{A}title") == "Open letters from Demarche"
    assert feed.findtext(f"{A}id") == f"{site}/feed.atom"
    assert feed.find(f"{A}link[@rel='self']").get("href") == f"{site}/feed.atom"
    assert feed.findtext(f"{A}author/{A}name") == "Demarche"
    entries = feed.findall(f"{A}entry")
    assert [e.findtext(f"{A}title") for e in entries] == ["A closed letter", "ICRtoP"]

    entry = entries[1]
    assert re.fullmatch(rf"tag:localhost,\d{{4}}-\d\d-\d\d:letter-{seed.id}", entry.findtext(f"{A}id"))
    links = {link.get("hreflang"): link.get("href") for link in entry.findall(f"{A}link[@rel='alternate']")}
    assert links == {"en": f"{site}/letters/{seed.slug}", "fr": f"{site}/letters/{seed.slug}?lang=fr"}
    assert entry.findtext(f"{A}author/{A}name") == "Demarche"
    for stamp in ("published", "updated"):
        assert datetime.fromisoformat(entry.findtext(f"{A}{stamp}")).tzinfo is not None
    content = entry.find(f"{A}content")
    assert content.get("type") == "html"
    assert "70<sup>th</sup>" in content.text
    assert "<strong>International Coalition for the Responsibility to Protect (ICRtoP)</strong>" in content.text
    assert entry.findtext(f"{A}summary").startswith("Over the past few years, the United Nations")
    assert entries[0].findtext(f"{A}id").endswith(f":letter-{closed.id}")


def test_feed_escapes_markup_and_drops_forbidden_characters(app, client):
    body = "Bell\x07 and\x01 escape\x1b: *fine* & <b>bold</b> \ufffe."
    publish(app, LetterText(title="Fish & chips <b>now</b>", body_markdown=body))

    raw = client.get("/feed.atom").data
    feed = ET.fromstring(raw)  # noqa: S314 - the app's own output

    assert b"\x07" not in raw and b"\x01" not in raw and b"\x1b" not in raw
    assert b"<title>Fish &amp; chips &lt;b&gt;now&lt;/b&gt;</title>" in raw
    assert b"&lt;em&gt;fine&lt;/em&gt;" in raw and b"<em>" not in raw
    entry = feed.find(f"{A}entry")
    assert entry.findtext(f"{A}title") == "Fish & chips <b>now</b>"
    assert "<em>fine</em>" in entry.findtext(f"{A}content")


def test_nothing_executable_reaches_the_feed(app, client):
    body = "\n\n".join(f"{name}: {payload}" for name, payload in PAYLOADS)
    publish(app, LetterText(title="<script>alert(1)</script>", body_markdown=body))

    entry = feed_of(client).find(f"{A}entry")

    assert executable_parts(entry.findtext(f"{A}content")) == []
    assert "payload-para" in entry.findtext(f"{A}content")
    assert entry.findtext(f"{A}title") == "<script>alert(1)</script>"  # text, never markup


def test_empty_feed_is_valid(client):
    feed = feed_of(client)
    assert feed.findall(f"{A}entry") == []
    assert datetime.fromisoformat(feed.findtext(f"{A}updated")).tzinfo is not None


def unfold(body: str) -> list[str]:
    return body.replace("\r\n ", "").split("\r\n")


def test_meeting_calendar(app, client):
    letter = publish(app, LetterText(title="Letter, for; Geneva", body_markdown="Text."), meeting=GENEVA_MEETING)

    response = client.get(f"/meetings/{letter.meeting_id}.ics")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert response.headers["Content-Disposition"] == f'attachment; filename="meeting-{letter.meeting_id}.ics"'
    raw = response.data
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    physical = raw.split(b"\r\n")[:-1]
    assert all(len(line) <= 75 for line in physical)
    assert any(line.startswith(b" ") for line in physical), "the long description is folded"
    for line in physical:
        line.decode("utf-8")  # folding never splits a character
    lines = unfold(raw.decode("utf-8"))
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-2] == "END:VCALENDAR" and lines[-1] == ""
    assert "VERSION:2.0" in lines
    assert "DTSTART;TZID=Europe/Zurich:20251007T093000" in lines
    assert "DTEND;TZID=Europe/Zurich:20251007T110000" in lines
    assert f"UID:meeting-{letter.meeting_id}@localhost" in lines
    assert any(re.fullmatch(r"DTSTAMP:\d{8}T\d{6}Z", line) for line in lines)
    assert "SUMMARY:Human Rights Council\\, 60th session\\; side event\\, \\\\ hall" in lines
    assert "LOCATION:Palais des Nations\\, Room XX\\; Geneva" in lines
    description = next(line for line in lines if line.startswith("DESCRIPTION:"))
    assert description.startswith("DESCRIPTION:Agenda:\\n1. Opening\\, welcome\\; remarks\\n2. Статья — 議題 — بند ")
    site = app.config["SITE_URL"]
    assert description.endswith(
        f"\\n\\nOpen letters for this meeting:\\nLetter\\, for\\; Geneva: {site}/letters/{letter.slug}"
    )
    assert f"URL:{site}/letters/{letter.slug}" in lines
    # The zone the times are in is described, with its summer and winter time.
    assert "TZID:Europe/Zurich" in lines
    assert lines.index("BEGIN:VTIMEZONE") < lines.index("BEGIN:VEVENT")
    assert "BEGIN:DAYLIGHT" in lines and "BEGIN:STANDARD" in lines
    assert "TZOFFSETTO:+0200" in lines and "TZOFFSETTO:+0100" in lines


@pytest.mark.parametrize(("status", "embargo"), [("draft", None), ("review", None), ("open", timedelta(days=1))])
def test_meeting_of_letters_not_public_is_404(app, client, status, embargo):
    letter = publish(
        app, ORIGINAL, status=status, meeting=GENEVA_MEETING, embargo_until=utcnow() + embargo if embargo else None
    )

    assert client.get(f"/meetings/{letter.meeting_id}.ics").status_code == 404


def test_meeting_without_letters_and_unknown_ids_are_404(app, client):
    from campaign.extensions import db
    from campaign.letters import services

    with app.app_context():
        meeting = services.save_meeting(GENEVA_MEETING)
        db.session.commit()
        meeting_id = meeting.id

    assert client.get(f"/meetings/{meeting_id}.ics").status_code == 404
    assert client.get("/meetings/999999.ics").status_code == 404
    assert client.get("/meetings/0.ics").status_code == 404
    assert client.get(f"/meetings/{2**40}.ics").status_code == 404


def test_vtimezone_new_york_transitions():
    start = datetime(2015, 9, 30, 10, tzinfo=syndication.ZoneInfo("America/New_York"))

    lines = syndication.vtimezone("America/New_York", start, start)

    text = "\n".join(lines)
    # 2015: summer time from 8 March 02:00 EST, winter time from 1 November 02:00 EDT.
    assert "BEGIN:DAYLIGHT\nDTSTART:20150308T020000\nTZOFFSETFROM:-0500\nTZOFFSETTO:-0400\nTZNAME:EDT" in text
    assert "BEGIN:STANDARD\nDTSTART:20151101T020000\nTZOFFSETFROM:-0400\nTZOFFSETTO:-0500\nTZNAME:EST" in text


def test_vtimezone_without_summer_time():
    start = datetime(2024, 5, 1, 9, tzinfo=UTC)

    lines = syndication.vtimezone("Asia/Tokyo", start, start)

    assert lines.count("BEGIN:STANDARD") == 1 and "BEGIN:DAYLIGHT" not in lines
    assert "TZOFFSETFROM:+0900" in lines and "TZOFFSETTO:+0900" in lines


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a,b;c\\d", "a\\,b\\;c\\\\d"),
        ("line one\r\nline two\nthree\rfour", "line one\\nline two\\nthree\\nfour"),
        ("bell\x07 tab\tkept", "bell tab\tkept"),
    ],
)
def test_ics_text_escaping(value, expected):
    assert syndication.ics_text(value) == expected


def test_folding_counts_octets():
    line = "DESCRIPTION:" + "é" * 100 + "中" * 40
    folded = syndication.fold(line)

    parts = folded.encode("utf-8").split(b"\r\n")
    assert all(len(part) <= 75 for part in parts)
    assert all(part.startswith(b" ") for part in parts[1:])
    assert folded.replace("\r\n ", "") == line
    assert syndication.fold("SHORT:x") == "SHORT:x"
