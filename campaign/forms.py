"""Form pieces every domain uses."""

from __future__ import annotations

from collections.abc import Iterable

from wtforms.fields.choices import SelectChoice
from wtforms.validators import Regexp

no_line_breaks = Regexp(r"^[^\r\n]*$", message="Use a single line.")


def choices(pairs: Iterable[tuple[str, str]]) -> list[SelectChoice]:
    """``(value, label)`` pairs as the options of a select field."""
    return [SelectChoice(value, label) for value, label in pairs]
