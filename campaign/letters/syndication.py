"""The Atom feed of public letters and iCalendar files of meetings, written by hand.

Both formats are small enough to write directly, and doing so keeps two rules in
one place: no character that XML 1.0 or iCalendar forbids gets through, and every
link is absolute, built on ``SITE_URL``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

from campaign.letters.models import Letter, Meeting, Revision
from campaign.rendering import plain_text

ATOM = "http://www.w3.org/2005/Atom"
# Characters XML 1.0 does not allow (C0 controls but tab, LF, CR; surrogates; U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


def _atom_date(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def summary(text: str, limit: int = 300) -> str:
    """The first ``limit`` characters of ``text`` on one line, cut at a word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + "…"


@dataclass(frozen=True)
class FeedEntry:
    letter: Letter
    revision: Revision
    url: str
    #: (language, absolute URL) of each published translation.
    translations: Sequence[tuple[str, str]] = ()


def _tag_uri(site_url: str, when: datetime, specific: str) -> str:
    """A ``tag:`` URI (RFC 4151): stable however the letter's address changes."""
    host = urlsplit(site_url).hostname or "localhost"
    return f"tag:{host},{when.astimezone(UTC):%Y-%m-%d}:{specific}"


def atom_feed(entries: Sequence[FeedEntry], *, site_url: str, feed_url: str, title: str, author: str) -> bytes:
    """An Atom 1.0 document (RFC 4287) with one entry per letter, its body as escaped HTML."""
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", {k: xml_text(v) for k, v in attrs.items()})
        if text is not None:
            element.text = xml_text(text)
        return element

    feed = ET.Element(f"{{{ATOM}}}feed")
    sub(feed, "id", feed_url)
    sub(feed, "title", title)
    sub(feed, "link", rel="self", type="application/atom+xml", href=feed_url)
    sub(feed, "link", rel="alternate", type="text/html", href=site_url + "/letters")
    sub(sub(feed, "author"), "name", author)
    stamps = [max(e.letter.published_at or e.letter.updated_at, e.letter.updated_at) for e in entries]
    sub(feed, "updated", _atom_date(max(stamps, default=datetime.now(UTC))))
    for entry, updated in zip(entries, stamps, strict=True):
        letter, revision = entry.letter, entry.revision
        published = letter.published_at or letter.created_at
        item = sub(feed, "entry")
        sub(item, "id", _tag_uri(site_url, letter.created_at, f"letter-{letter.id}"))
        sub(item, "title", revision.title)
        sub(item, "link", rel="alternate", type="text/html", hreflang=revision.language, href=entry.url)
        for language, url in entry.translations:
            sub(item, "link", rel="alternate", type="text/html", hreflang=language, href=url)
        sub(item, "published", _atom_date(published))
        sub(item, "updated", _atom_date(updated))
        sub(sub(item, "author"), "name", author)
        sub(item, "summary", summary(plain_text(revision.body_html)), type="text")
        content = sub(item, "content", revision.body_html, type="html")
        content.set("{http://www.w3.org/XML/1998/namespace}lang", revision.language)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


# --- iCalendar (RFC 5545) ----------------------------------------------------------

_NOT_ICS = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def ics_text(value: str) -> str:
    """A TEXT value: backslash, semicolon, comma and newline escaped, other controls dropped."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")
    return _NOT_ICS.sub("", value)


def fold(line: str) -> str:
    """Fold a content line into lines of at most 75 octets, never inside a UTF-8 sequence."""
    out: list[str] = []
    current, size, limit = "", 0, 75
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            out.append(current)
            current, size, limit = " ", 1, 75
        current += char
        size += width
    out.append(current)
    return "\r\n".join(out)


def _local(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%S")


def _offset(delta: timedelta | None) -> str:
    seconds = int((delta or timedelta()).total_seconds())
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{sign}{hours:02d}{minutes:02d}" + (f"{seconds:02d}" if seconds else "")


def _transitions(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The UTC instants between ``start`` and ``end`` where ``zone``'s offset or name changes."""

    def state(instant: datetime) -> tuple[timedelta | None, str | None]:
        local = instant.astimezone(zone)
        return local.utcoffset(), local.tzname()

    found: list[datetime] = []
    step, cursor = timedelta(days=1), start
    while cursor < end:
        following = cursor + step
        if state(cursor) != state(following):
            low, high = cursor, following
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if state(middle) == state(low) else (low, middle)
            found.append(high.replace(second=0, microsecond=0))
        cursor = following
    return found


def vtimezone(name: str, around: datetime, until: datetime) -> list[str]:
    """A VTIMEZONE for ``name`` with the observances from a year before ``around`` to a year after ``until``."""
    zone = ZoneInfo(name)
    start = (around.astimezone(UTC) - timedelta(days=366)).replace(hour=0, minute=0, second=0, microsecond=0)
    end = until.astimezone(UTC) + timedelta(days=366)

    def observance(instant: datetime, before: datetime) -> list[str]:
        local, previous = instant.astimezone(zone), before.astimezone(zone)
        kind = "DAYLIGHT" if local.dst() else "STANDARD"
        onset = (instant + (previous.utcoffset() or timedelta())).replace(tzinfo=None)
        return [
            f"BEGIN:{kind}",
            f"DTSTART:{_local(onset)}",
            f"TZOFFSETFROM:{_offset(previous.utcoffset())}",
            f"TZOFFSETTO:{_offset(local.utcoffset())}",
            f"TZNAME:{ics_text(local.tzname() or name)}",
            f"END:{kind}",
        ]

    lines = ["BEGIN:VTIMEZONE", f"TZID:{name}"]
    lines += observance(start, start)  # the rules in force when the window opens
    for instant in _transitions(zone, start, end):
        lines += observance(instant, instant - timedelta(minutes=1))
    lines.append("END:VTIMEZONE")
    return lines


def meeting_calendar(
    meeting: Meeting,
    letters: Sequence[tuple[str, str]],
    *,
    site_url: str,
    now: datetime,
    product: str = "Demarche",
) -> str:
    """A VCALENDAR with the meeting as one VEVENT in its own time zone; ``letters`` are (title, URL)."""
    description = meeting.description.strip()
    if letters:
        listed = "\n".join(f"{title}: {url}" for title, url in letters)
        description = f"{description}\n\nOpen letters for this meeting:\n{listed}".strip()
    host = urlsplit(site_url).hostname or "localhost"
    tzid = meeting.timezone
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:-//{ics_text(product)}//Letters//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        *vtimezone(tzid, meeting.starts_at_aware, meeting.ends_at_aware or meeting.starts_at_aware),
        "BEGIN:VEVENT",
        f"UID:meeting-{meeting.id}@{host}",
        f"DTSTAMP:{now.astimezone(UTC):%Y%m%dT%H%M%SZ}",
        f"DTSTART;TZID={tzid}:{_local(meeting.starts_at_local)}",
    ]
    if meeting.ends_at_local is not None:
        lines.append(f"DTEND;TZID={tzid}:{_local(meeting.ends_at_local)}")
    lines.append(f"SUMMARY:{ics_text(meeting.title)}")
    if meeting.location:
        lines.append(f"LOCATION:{ics_text(meeting.location)}")
    if description:
        lines.append(f"DESCRIPTION:{ics_text(description)}")
    if len(letters) == 1:
        lines.append(f"URL:{letters[0][1]}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "".join(fold(line) + "\r\n" for line in lines)
