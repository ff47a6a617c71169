"""Safe cells for CSV files people open in spreadsheets, and CSV exports streamed a batch at a time."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence

#: What a spreadsheet reads as the start of a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """A cell a spreadsheet would run as a formula, prefixed with ``'`` so it stays text."""
    return "'" + value if value[:1] in FORMULA_STARTS else value


def cell(value: object) -> str:
    """A value as an export writes it: nothing for None, yes/no for booleans, text neutralised."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return neutralise(str(value))


def csv_lines(header: Sequence[str], batches: Iterable[Iterable[Sequence[object]]]) -> Iterator[str]:
    """A CSV file as text chunks: a byte order mark and the header (spreadsheets then read
    UTF-8), then one chunk per batch of rows, every cell through ``cell``.  Only one batch is
    held at a time, so an export of any size streams."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    yield "\ufeff" + buffer.getvalue()
    for batch in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([cell(value) for value in row] for row in batch)
        yield buffer.getvalue()
