"""Contacts as CSV: reading a file into checked rows, importing it in bulk, and exporting.

The format
----------
UTF-8, with or without a byte-order mark; any other encoding is refused as a whole.
Comma-separated (a header row separated by ``;`` or tabs is recognised too).  The first
line names the columns, in any order and case, spaces or underscores alike:

``country_code, country, organisation, honorific, first_name, last_name, position,
salutation, email, language, tags, timezone, notes`` — ``email`` and ``country_code``
are required, the others optional.  OSDI names are accepted for ``first_name``
(``given_name``), ``last_name`` (``family_name``), ``honorific`` (``honorific_prefix``)
and ``email`` (``email_address``).  ``country`` (the name) is informational and never
read.  Other columns are ignored with a warning.

Each row: ``email`` valid without a DNS lookup; ``country_code`` ISO 3166-1 alpha-2 in
any case; ``language`` one of ar, zh, en, fr, ru, es in any case, empty meaning en;
``timezone`` an IANA name, empty meaning the coalition's default; ``tags`` separated by
``;``.  No cell may hold a line break or another control character (tab aside).  A
cell beginning with ``= + - @`` (after any spaces) is refused as a spreadsheet formula,
except in ``notes``; a leading ``'`` marks such a cell as text and is dropped (that is
how the export writes them, with a byte-order mark so spreadsheets read UTF-8).
An email already in the directory (compared case-insensitively) updates that contact:
the columns present in the file replace its values (tags included), absent columns
leave them as they are.  An email repeated in the file is refused after its first row.
Line numbers are physical lines; the header is line 1.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from campaign import audit
from campaign.contacts import services
from campaign.contacts.countries import country_name
from campaign.contacts.models import Contact, ContactEvent, ContactTag
from campaign.db import utcnow
from campaign.extensions import db
from campaign.spreadsheets import neutralise

MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 200_000

#: Import columns in export order, with the ``ContactData`` field each fills.
COLUMNS = {
    "country_code": "country", "country": None, "organisation": "organisation", "honorific": "honorific",
    "first_name": "given_name", "last_name": "family_name", "position": "position", "salutation": "salutation",
    "email": "email", "language": "language", "tags": "tags", "timezone": "timezone", "notes": "notes",
}  # fmt: skip
ALIASES = {
    "given_name": "first_name", "family_name": "last_name", "honorific_prefix": "honorific",
    "email_address": "email", "e_mail": "email", "organization": "organisation",
}  # fmt: skip
REQUIRED = ("email", "country_code")
#: Written by the export for reading; the import leaves suppression to the contact's page.
EXPORT_ONLY = ("suppression", "suppression_reason", "suppressed_date", "last_verified_date")
FORMULA_START = ("=", "+", "-", "@")


class FileError(ValueError):
    """The file as a whole cannot be imported; the message says why and what to do."""


class RowError(ValueError):
    """One row is refused; the message is its reason."""


# --- reading ------------------------------------------------------------------------------------


def decode(data: bytes) -> str:
    """The file's text, or ``FileError`` when it is too large or not UTF-8."""
    if len(data) > MAX_BYTES:
        raise FileError(f"The file is {len(data) / 1024 / 1024:.1f} MB; the limit is 20 MB. Split it into parts.")
    boms = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
            (codecs.BOM_UTF16_BE, "UTF-16"))  # fmt: skip
    advice = "Save it as UTF-8 (“CSV UTF-8” in a spreadsheet's Save As) and import it again."
    for bom, name in boms:
        if data.startswith(bom):
            raise FileError(f"The file is encoded as {name}, not UTF-8. {advice}")
    sample = data[:4096]
    if sample.count(b"\x00") > len(sample) // 4:
        raise FileError(f"The file looks like UTF-16 (every other byte is zero), not UTF-8. {advice}")
    try:
        return data.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileError(
            f"The file is not UTF-8: line {line} (byte {exc.start + 1}) holds the byte 0x{data[exc.start]:02X}, "
            f"which is not UTF-8 — perhaps Latin-1 or Windows-1252. {advice}"
        ) from None


def records(text: str) -> Iterator[tuple[int, list[str]]]:
    """``(line, cells)`` for each non-blank record, ``line`` being where it starts."""
    first_line = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first_line.count)  # the first wins a tie
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    last = 0
    try:
        for cells in reader:
            start, last = last + 1, reader.line_num
            if any(cell.strip() for cell in cells):
                yield start, cells
    except csv.Error as exc:
        raise FileError(f"Line {last + 1} cannot be read as CSV ({exc}); is a quote left open?") from None


def header(cells: list[str]) -> tuple[list[str | None], list[str]]:
    """The column each position fills (``None``: ignored), and warnings about the header."""
    columns: list[str | None] = []
    unknown, export_only = [], []
    for cell in cells:
        name = re.sub(r"[\s\-]+", "_", cell.replace("\ufeff", "").strip().lower()).strip("_")
        name = ALIASES.get(name, name)
        if name in COLUMNS:
            if name in columns:
                raise FileError(f"The column {name} appears twice in the header row.")
            columns.append(name)
            continue
        columns.append(None)
        if name in EXPORT_ONLY:
            export_only.append(name)
        elif name:
            unknown.append(cell.strip()[:40])
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        found = ", ".join(c.strip()[:40] for c in cells if c.strip())[:300] or "nothing"
        hint = " (country holds the name; country_code the ISO code, e.g. FR)" if "country" in columns else ""
        raise FileError(
            f"The header row lacks the required column{'s' * (len(missing) > 1)} "
            f"{' and '.join(missing)}{hint}. It names: {found}."
        )
    warnings = []
    if unknown:
        warnings.append(f"Ignored unknown columns: {', '.join(unknown)}.")
    if export_only:
        warnings.append(
            f"Ignored {', '.join(export_only)}: suppression is changed on the contact's page, not by import."
        )
    return columns, warnings


def row_data(cells: list[str], columns: list[str | None], default_tz: str) -> services.ContactData:
    """The row as a validated contact, or ``RowError`` with the reason."""
    if len(cells) != len(columns):
        raise RowError(f"The row has {len(cells)} cells; the header has {len(columns)}.")
    values: dict[str, Any] = {}
    for raw, column in zip(cells, columns, strict=True):
        label = column or "an ignored column"
        if "\r" in raw or "\n" in raw:
            raise RowError(f"A line break inside {label}; every contact must be on one line.")
        if "\x00" in raw:
            raise RowError(f"A NUL byte in {label}.")
        field = COLUMNS.get(column or "")
        if field is None:
            continue
        value = raw.strip()
        if value[:1] == "'" and value[1:2] in FORMULA_START:
            value = value[1:]  # marked as text: kept as written
        elif value[:1] in FORMULA_START and column != "notes":
            raise RowError(f"{column} looks like a spreadsheet formula (it begins with {value[0]}).")
        values[field] = value.split(";") if field == "tags" else value
    try:
        return services.validate(services.ContactData(**values), default_tz=default_tz)
    except services.ContactError as exc:
        raise RowError(str(exc)) from None


# --- importing ----------------------------------------------------------------------------------


def import_csv(data: bytes, *, dry_run: bool, accept_valid: bool, actor: Any = None) -> services.ImportReport:
    """See ``services.import_csv`` and this module's docstring."""
    report = services.ImportReport(dry_run=dry_run)
    try:
        rows, present = _read(data, report)
    except FileError as exc:
        report.error = str(exc)
        return report
    existing = _existing([d.email for _, d in rows], with_tags="tags" in present)
    tag_spelling = _tag_spellings({tag for _, d in rows for tag in d.tags})
    new, updates = [], []
    for _, contact in rows:
        contact.tags = services.normalise_tags(tag_spelling.get(t.lower(), t) for t in contact.tags)
        old = existing.get(contact.email)
        if old is None:
            new.append(contact)
            continue
        changes = {f: [old[f], getattr(contact, f)] for f in present - {"tags"} if old[f] != getattr(contact, f)}
        if "tags" in present and old["tags"] != contact.tags:
            changes["tags"] = [old["tags"], contact.tags]
        if changes:
            updates.append((old["id"], contact, changes))
        else:
            report.unchanged += 1
    report.new, report.updated = len(new), len(updates)
    if dry_run or (report.rejected and not accept_valid):
        return report
    with db.session.begin_nested():  # all of the import or none of it
        _write(new, updates, present, actor)
        audit.record(
            "contacts.import", None, f"Imported contacts: {report.new} new, {report.updated} updated", actor=actor,
            total=report.total, new=report.new, updated=report.updated, unchanged=report.unchanged,
            rejected=len(report.rejected),
        )  # fmt: skip
    report.imported = True
    return report


def _read(data: bytes, report: services.ImportReport) -> tuple[list[tuple[int, services.ContactData]], set[str]]:
    """The valid rows and the fields the file has; rejected rows go into ``report``."""
    found = records(decode(data))
    first = next(found, None)
    if first is None:
        raise FileError("The file is empty; the first line must be a header row (country_code, email, …).")
    columns, report.warnings = header(first[1])
    present = {COLUMNS[c] for c in columns if c and COLUMNS[c]}
    rows: list[tuple[int, services.ContactData]] = []
    seen: dict[str, int] = {}
    default_tz = services.default_timezone()
    for line, cells in found:
        report.total += 1
        if report.total > MAX_ROWS:
            raise FileError(f"The file has more than {MAX_ROWS:,} rows; split it into parts.")
        email_cell = cells[columns.index("email")].strip()[:254] if len(cells) == len(columns) else ""
        try:
            contact = row_data(cells, columns, default_tz)
            if contact.email in seen:
                raise RowError(f"The same email as line {seen[contact.email]}.")
        except RowError as exc:
            report.rejected.append(services.RejectedRow(line, email_cell, str(exc)))
            continue
        seen[contact.email] = line
        rows.append((line, contact))
    if report.total == 0:
        raise FileError("The file has a header row but no contacts.")
    report.valid = len(rows)
    return rows, present


def _existing(emails: list[str], *, with_tags: bool) -> dict[str, dict[str, Any]]:
    """The saved contacts with these emails, as plain values, in one query per chunk."""
    found: dict[str, dict[str, Any]] = {}
    columns = [Contact.id, *(getattr(Contact, name) for name in services.FIELDS)]
    for chunk in _chunks(emails):
        for row in db.session.execute(sa.select(*columns).where(Contact.email.in_(chunk))).mappings():
            found[row["email"]] = {**row, "tags": []}
    if with_tags and found:
        by_id = {values["id"]: values for values in found.values()}
        for chunk in _chunks(sorted(by_id)):
            query = sa.select(ContactTag.contact_id, ContactTag.name).where(ContactTag.contact_id.in_(chunk))
            for contact_id, name in db.session.execute(query):
                by_id[contact_id]["tags"].append(name)
        for values in found.values():
            values["tags"] = services.normalise_tags(values["tags"])
    return found


def _tag_spellings(tags: set[str]) -> dict[str, str]:
    """How each tag (by its lower case) is already spelt in the directory."""
    spelling: dict[str, str] = {}
    for chunk in _chunks(sorted({t.lower() for t in tags})):
        query = sa.select(ContactTag.name).where(sa.func.lower(ContactTag.name).in_(chunk)).distinct()
        for name in db.session.scalars(query):
            spelling.setdefault(name.lower(), name)
    return spelling


def _write(new: list[services.ContactData], updates: list, present: set[str], actor: Any) -> None:
    """Bulk statements: contacts, their tags, one history line each."""
    now, email = utcnow(), services.actor_email(actor)
    defaults = {"suppression": None, "suppression_reason": "", "needs_verification": False, "created_at": now,
                "updated_at": now}  # fmt: skip
    ids: dict[str, int] = {}
    for chunk in _chunks(new, 1000):
        rows = [{**{f: getattr(c, f) for f in services.FIELDS}, **defaults} for c in chunk]
        ids |= {e: i for i, e in db.session.execute(sa.insert(Contact).returning(Contact.id, Contact.email), rows)}
    tag_rows = [{"contact_id": ids[c.email], "name": t} for c in new for t in c.tags]
    events = [{"contact_id": ids[c.email], "kind": "imported", "summary": "Created by CSV import",
               "actor_email": email, "details": {}, "created_at": now} for c in new]  # fmt: skip
    if updates:
        fields = sorted(present - {"tags"})
        values = [{"id": i, **{f: getattr(c, f) for f in fields}, "updated_at": now} for i, c, _ in updates]
        for chunk in _chunks(values, 1000):
            db.session.execute(sa.update(Contact), chunk)
        retagged = [i for i, _, changes in updates if "tags" in changes]
        for chunk in _chunks(retagged):
            db.session.execute(sa.delete(ContactTag).where(ContactTag.contact_id.in_(chunk)))
        tag_rows += [{"contact_id": i, "name": t} for i, c, changes in updates if "tags" in changes for t in c.tags]
        events += [
            {"contact_id": i, "kind": "updated", "summary": "Updated by CSV import: " + ", ".join(sorted(changes)),
             "actor_email": email, "details": {"changes": changes}, "created_at": now}
            for i, _, changes in updates
        ]  # fmt: skip
    for table, rows in ((ContactTag, tag_rows), (ContactEvent, events)):
        for chunk in _chunks(rows, 5000):
            db.session.execute(sa.insert(table), chunk)
    services.expire_contacts(i for i, _, _ in updates)


def _chunks(items: list, size: int = services.CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- exporting ----------------------------------------------------------------------------------

EXPORT_COLUMNS = (*COLUMNS, *EXPORT_ONLY)


def _cells(contact: Contact) -> list[str]:
    values = {column: getattr(contact, field) for column, field in COLUMNS.items() if field and field != "tags"}
    values |= {"country": country_name(contact.country), "tags": ";".join(contact.tags)}
    values |= {
        "suppression": contact.suppression or "",
        "suppression_reason": contact.suppression_reason,
        "suppressed_date": contact.suppressed_at.isoformat() if contact.suppressed_at else "",
        "last_verified_date": contact.last_verified_at.isoformat() if contact.last_verified_at else "",
    }
    return [neutralise(values[column] or "") for column in EXPORT_COLUMNS]


def export_csv(query: sa.Select) -> Iterator[str]:
    """The header, then the contacts in chunks of lines; begins with a BOM so spreadsheets read UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    yield "\ufeff" + buffer.getvalue()
    statement = query.options(selectinload(Contact.tag_rows)).execution_options(yield_per=500)
    for partition in db.session.scalars(statement).partitions():
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(_cells(contact) for contact in partition)
        yield buffer.getvalue()
