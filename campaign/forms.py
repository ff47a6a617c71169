"""Form pieces every domain uses."""

from __future__ import annotations

from collections.abc import Iterable

from wtforms.fields.choices import SelectChoice
from wtforms.validators import Regexp

# \A and \Z: "$" would also match before a trailing newline and let "name\n" through.
no_line_breaks = Regexp(r"\A[^\r\n]*\Z", message="Use a single line.")


def choices(pairs: Iterable[tuple[str, str]]) -> list[SelectChoice]:
    """``(value, label)`` pairs as the options of a select field."""
    return [SelectChoice(value, label) for value, label in pairs]
