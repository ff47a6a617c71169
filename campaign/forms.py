"""Form pieces every domain uses."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from wtforms.fields.choices import SelectChoice
from wtforms.validators import Regexp

# \A and \Z: "$" would also match before a trailing newline and let "name\n" through.
no_line_breaks = Regexp(r"\A[^\r\n]*\Z", message="Use a single line.")


def has_control_characters(value: str) -> bool:
    """CR, LF, NUL, tabs and the rest: refused in anything that reaches a mail header or a CSV file."""
    return any(unicodedata.category(ch) == "Cc" for ch in value)


def choices(pairs: Iterable[tuple[str, str]]) -> list[SelectChoice]:
    """``(value, label)`` pairs as the options of a select field."""
    return [SelectChoice(value, label) for value, label in pairs]
