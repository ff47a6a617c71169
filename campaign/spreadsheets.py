"""Safe cells for CSV files people open in spreadsheets."""

from __future__ import annotations

#: What a spreadsheet reads as the start of a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """A cell a spreadsheet would run as a formula, prefixed with ``'`` so it stays text."""
    return "'" + value if value[:1] in FORMULA_STARTS else value
