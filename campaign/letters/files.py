"""Letters as files: Markdown with YAML front matter, read by ``flask letters import`` and written by ``export``.

An original is ``<slug>.md``; a translation is ``<slug>.<language>.md``.  Reading is
strict and touches no database: a file is checked whole (encoding, front matter,
known keys, languages, dates) and any problem is a ``LetterFileError`` that says
what to fix.  ``campaign.letters.imports`` applies what was read.  YAML is read with
``yaml.safe_load`` and written with a ``SafeDumper``; times are written in UTC with Z.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

import frontmatter
import yaml

from campaign.letters import services
from campaign.letters.models import UN_LANGUAGES, Letter, LetterStatus, TranslationStatus
from campaign.letters.services import LetterText

MAX_FILE_BYTES = 1_000_000
LETTER_KEYS = (
    "title",
    "slug",
    "language",
    "status",
    "addressee",
    "signature_deadline",
    "embargo_until",
    "members_only",
    "meeting",
)
TRANSLATION_KEYS = ("title", "slug", "language", "status", "addressee")
MEETING_KEYS = ("title", "location", "starts_at", "ends_at", "timezone", "description")
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_HANDLER = frontmatter.YAMLHandler()


class LetterFileError(ValueError):
    """A letter file that cannot be imported; the message says why."""


@dataclass(frozen=True)
class MeetingSource:
    title: str
    starts_at_local: datetime
    timezone: str
    location: str = ""
    ends_at_local: datetime | None = None
    #: None when the file does not say: the meeting keeps the description it has.
    description: str | None = None


@dataclass(frozen=True)
class LetterFile:
    """What a file says, checked.  For a translation, ``language`` is the translation's."""

    path: Path
    slug: str
    language: str
    translation: bool
    text: LetterText
    status: str | None = None
    signature_deadline: datetime | None = None
    embargo_until: datetime | None = None
    members_only: bool = False
    meeting: MeetingSource | None = None


# --- reading -------------------------------------------------------------------


def read_file(path: Path) -> LetterFile:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise LetterFileError(f"The file is {size:,} bytes; a letter file may have {MAX_FILE_BYTES:,}.")
    with path.open("rb") as handle:
        return parse(handle.read(MAX_FILE_BYTES + 1), path)


def parse(data: bytes, path: Path) -> LetterFile:
    """Check a letter file's bytes; ``path`` names it (``<slug>.md`` or ``<slug>.<language>.md``)."""
    if len(data) > MAX_FILE_BYTES:
        raise LetterFileError(f"The file is over {MAX_FILE_BYTES:,} bytes.")
    slug, translated = _name_parts(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LetterFileError(
            f"The file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8."
        ) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if "\x00" in text:
        raise LetterFileError("The file contains a NUL character.")
    meta, body = _split(text)
    allowed = TRANSLATION_KEYS if translated else LETTER_KEYS
    _refuse_unknown(meta, allowed, "a translation" if translated else "a letter")

    named_slug = _string(meta, "slug")
    if named_slug is not None and named_slug != slug:
        raise LetterFileError(f"slug: {named_slug!r} does not match the file name; name the file {named_slug}.md.")
    if not _SLUG.match(slug) or len(slug) > 80:
        raise LetterFileError(
            f"{slug!r} is not a letter address: use lowercase letters, digits and hyphens (at most 80)."
        )
    language = _string(meta, "language")
    if translated:
        if language is not None and language != translated:
            raise LetterFileError(f"language: {language!r} does not match the file name's {translated!r}.")
        language = translated
    language = language or "en"
    if language not in UN_LANGUAGES:
        raise LetterFileError(f"language: {language!r} is not a UN language ({', '.join(UN_LANGUAGES)}).")

    title = " ".join((_string(meta, "title") or "").split())
    if not title:
        raise LetterFileError("The front matter has no title (title: …).")
    if len(title) > 300:
        raise LetterFileError("title: keep it under 300 characters.")
    body = clean_body(body)
    if not body:
        raise LetterFileError("The letter has no text after the front matter.")
    if len(body) > services.MAX_BODY:
        raise LetterFileError(f"The text is longer than {services.MAX_BODY:,} characters.")
    status = _string(meta, "status")
    statuses = [s.value for s in (TranslationStatus if translated else LetterStatus)]
    if status is not None and status not in statuses:
        raise LetterFileError(f"status: {status!r} is not one of {', '.join(statuses)}.")
    return LetterFile(
        path=path,
        slug=slug,
        language=language,
        translation=bool(translated),
        text=LetterText(title=title, body_markdown=body, addressee=(_string(meta, "addressee") or "").strip()),
        status=status,
        signature_deadline=_instant(meta, "signature_deadline"),
        embargo_until=_instant(meta, "embargo_until"),
        members_only=_flag(meta, "members_only"),
        meeting=_meeting(meta.get("meeting")),
    )


def _name_parts(path: Path) -> tuple[str, str | None]:
    if path.suffix != ".md":
        raise LetterFileError("A letter file's name ends in .md.")
    parts = path.name.removesuffix(".md").split(".")
    if len(parts) == 2:
        if parts[1] not in UN_LANGUAGES:
            raise LetterFileError(f"{parts[1]!r} in the file name is not a UN language ({', '.join(UN_LANGUAGES)}).")
        return parts[0], parts[1]
    if len(parts) != 1:
        raise LetterFileError("Name the file <slug>.md, or <slug>.<language>.md for a translation.")
    return parts[0], None


def _split(text: str) -> tuple[dict[str, Any], str]:
    if not _HANDLER.detect(text):
        raise LetterFileError("No front matter: the file must begin with a line '---', the YAML keys, then '---'.")
    try:
        raw, body = _HANDLER.split(text)
    except ValueError:
        raise LetterFileError("The front matter is not closed: end it with a line '---'.") from None
    try:
        duplicates = _duplicate_keys(yaml.compose(raw, Loader=yaml.SafeLoader))
        meta = yaml.safe_load(raw)
    except ValueError as exc:  # YAML reads 2027-13-45T10:00:00Z as a timestamp, then fails to build it
        raise LetterFileError(f"The front matter has an impossible value: {exc}.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""  # +1 for counting, +1 for '---'
        problem = getattr(exc, "problem", None) or exc
        raise LetterFileError(f"The front matter is not valid YAML: {problem}{where}.") from None
    if not isinstance(meta, dict):
        raise LetterFileError("The front matter must be 'key: value' lines.")
    if duplicates:
        raise LetterFileError(f"The front matter repeats {', '.join(sorted(set(duplicates)))}.")
    return meta, body


def _duplicate_keys(node: yaml.Node | None, seen_nodes: set[int] | None = None) -> list[str]:
    """Keys given twice in any mapping (``safe_load`` would silently keep the last)."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if node is None or id(node) in seen_nodes:  # aliases can make a node its own child
        return []
    seen_nodes.add(id(node))
    found: list[str] = []
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                found += [key.value] if key.value in keys else []
                keys.add(key.value)
            found += _duplicate_keys(value, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found += _duplicate_keys(item, seen_nodes)
    return found


def _refuse_unknown(meta: dict[Any, Any], allowed: tuple[str, ...], what: str, prefix: str = "") -> None:
    unknown = sorted(str(key) for key in meta if key not in allowed)
    if unknown:
        raise LetterFileError(
            f"Unknown key{'s' if len(unknown) > 1 else ''} {', '.join(prefix + k for k in unknown)}; "
            f"{what} has {', '.join(allowed)}."
        )


def _string(meta: dict[str, Any], key: str, prefix: str = "") -> str | None:
    value = meta.get(key)
    if value is not None and not isinstance(value, str):
        raise LetterFileError(f"{prefix}{key}: give text (in quotes if YAML reads it as a number, date or yes/no).")
    return value


def _flag(meta: dict[str, Any], key: str) -> bool:
    value = meta.get(key)
    if value is not None and not isinstance(value, bool):
        raise LetterFileError(f"{key}: give true or false.")
    return bool(value)


def clean_body(body: str) -> str:
    """The text as stored and compared: no blank lines before it, no white space after."""
    return re.sub(r"\A(?:[ \t]*\n)+", "", body).rstrip()


def _datetime(value: Any, key: str) -> datetime:
    example = "such as 2027-09-15T22:00:00Z"
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, str) and len(value.strip()) > 10:
        try:
            result = datetime.fromisoformat(value.strip())
        except ValueError:
            raise LetterFileError(f"{key}: {value!r} is not an ISO 8601 date and time, {example}.") from None
    else:
        raise LetterFileError(f"{key}: give a date and a time in ISO 8601, {example}.")
    if not 1900 <= result.year <= 2999:
        raise LetterFileError(f"{key}: {result.year} is out of range.")
    return result


def _instant(meta: dict[str, Any], key: str) -> datetime | None:
    if meta.get(key) is None:
        return None
    value = _datetime(meta[key], key)
    if value.utcoffset() is None:
        raise LetterFileError(f"{key}: add the offset from UTC, or Z for UTC (2027-09-15T22:00:00Z).")
    return value.astimezone(UTC)


def _local(meta: dict[str, Any], key: str) -> datetime:
    value = _datetime(meta[key], f"meeting.{key}")
    if value.tzinfo is not None:
        raise LetterFileError(f"meeting.{key}: give the local time without an offset; timezone says where it is.")
    return value


def _meeting(value: Any) -> MeetingSource | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise LetterFileError("meeting: give its title, location, starts_at, ends_at and timezone beneath it.")
    _refuse_unknown(value, MEETING_KEYS, "a meeting", prefix="meeting.")
    for key in ("title", "starts_at", "timezone"):
        if value.get(key) is None:
            raise LetterFileError(f"meeting.{key} is missing.")
    zone = _string(value, "timezone", "meeting.")
    if zone not in available_timezones():
        raise LetterFileError(f"meeting.timezone: {zone!r} is not a time zone name such as Europe/Zurich.")
    starts = _local(value, "starts_at")
    ends = _local(value, "ends_at") if value.get("ends_at") is not None else None
    if ends is not None and ends < starts:
        raise LetterFileError("meeting: it ends before it starts.")
    title = " ".join((_string(value, "title", "meeting.") or "").split())
    if not title:
        raise LetterFileError("meeting.title is empty.")
    return MeetingSource(
        title=title[:300],
        starts_at_local=starts,
        timezone=zone,
        location=" ".join((_string(value, "location", "meeting.") or "").split())[:300],
        ends_at_local=ends,
        description=_string(value, "description", "meeting."),
    )


def source_paths(path: Path) -> list[Path]:
    """The file itself, or a folder's ``.md`` files: originals first, then translations."""
    if not path.is_dir():
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".md" and not p.name.startswith("."))
    return [p for p in found if p.name.count(".") == 1] + [p for p in found if p.name.count(".") > 1]


# --- exporting -----------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """``yaml.safe_dump``'s dumper, writing multi-line text as a literal block (``|``) people can edit."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _represent_str)


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _document(meta: dict[str, Any], body: str) -> str:
    post = frontmatter.Post(clean_body(body), **meta)
    return frontmatter.dumps(post, handler=_HANDLER, Dumper=_Dumper, sort_keys=False, width=10_000) + "\n"


def documents(letter: Letter) -> dict[str, str]:
    """File name → text: the letter and each of its translations, as ``import`` reads them back."""
    revision = letter.current_revision
    meta: dict[str, Any] = {"title": revision.title, "slug": letter.slug, "language": letter.language}
    meta["status"] = letter.status
    if revision.addressee:
        meta["addressee"] = revision.addressee
    if letter.signature_deadline:
        meta["signature_deadline"] = _utc(letter.signature_deadline)
    if letter.embargo_until:
        meta["embargo_until"] = _utc(letter.embargo_until)
    if letter.members_only:
        meta["members_only"] = True
    if letter.meeting:
        meeting = letter.meeting
        meta["meeting"] = {"title": meeting.title, "location": meeting.location or None}
        meta["meeting"]["starts_at"] = meeting.starts_at_local.isoformat()
        meta["meeting"]["ends_at"] = meeting.ends_at_local.isoformat() if meeting.ends_at_local else None
        meta["meeting"]["timezone"] = meeting.timezone
        meta["meeting"]["description"] = meeting.description or None
        meta["meeting"] = {key: value for key, value in meta["meeting"].items() if value is not None}
    found = {f"{letter.slug}.md": _document(meta, revision.body_markdown)}
    for translation in letter.translations:
        text = translation.current_revision
        if text is None:
            continue
        meta = {"title": text.title, "slug": letter.slug, "language": translation.language}
        meta["status"] = translation.status
        if text.addressee:
            meta["addressee"] = text.addressee
        found[f"{letter.slug}.{translation.language}.md"] = _document(meta, text.body_markdown)
    return found


def export_letter(letter: Letter, directory: Path) -> list[Path]:
    """Write the letter's files into ``directory`` (made if missing); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in documents(letter).items():
        path = directory / name
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written
