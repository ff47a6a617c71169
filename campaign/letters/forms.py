"""Forms for drafting letters and translations, the workflow and meetings."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateTimeLocalField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, Regexp

from campaign.forms import choices, no_line_breaks
from campaign.letters.models import UN_LANGUAGES, TranslationStatus
from campaign.letters.services import MAX_BODY, LetterText

#: Where coalitions meet most (UN offices), listed before the full list of zones, with the city.
#: Geneva keeps Zurich's time: the IANA database has no "Europe/Geneva".
COMMON_TIMEZONES = {
    "America/New_York": "New York",
    "Europe/Zurich": "Geneva",
    "Africa/Nairobi": "Nairobi",
    "Asia/Bangkok": "Bangkok",
    "Europe/Vienna": "Vienna",
}
# The browser submits "2026-09-22T10:00"; the first format is also how values are shown.
LOCAL_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]


@cache
def _all_timezones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def timezone_choices(first: tuple[str, ...] = tuple(COMMON_TIMEZONES)) -> list[SelectChoice]:
    """Every IANA zone, sorted, with ``first`` in a group of its own at the top."""
    common = [
        SelectChoice(
            name, f"{name} ({COMMON_TIMEZONES[name]})" if name in COMMON_TIMEZONES else name, optgroup="Common"
        )
        for name in first
    ]
    rest = [SelectChoice(name, name, optgroup="All time zones") for name in _all_timezones() if name not in first]
    return common + rest


def language_choices() -> list[SelectChoice]:
    return choices((code, f"{name} ({code})") for code, name in UN_LANGUAGES.items())


def local_to_utc(value: datetime | None, timezone: str) -> datetime | None:
    """A wall-clock time in ``timezone`` as an aware UTC datetime."""
    return value.replace(tzinfo=ZoneInfo(timezone)).astimezone(UTC) if value else None


def utc_to_local(value: datetime | None, timezone: str = "UTC") -> datetime | None:
    return value.astimezone(ZoneInfo(timezone)).replace(tzinfo=None) if value else None


class _TextFields(FlaskForm):
    """The text of a letter or of a translation: what a revision holds."""

    title = StringField(
        "Title", validators=[DataRequired(), Length(max=300), no_line_breaks], render_kw={"dir": "auto"}
    )
    addressee = TextAreaField(
        "Addressee",
        validators=[Length(max=5000)],
        description="Who the letter is to, as printed above the text (line breaks kept).",
        render_kw={"rows": 4},
    )
    body_markdown = TextAreaField(
        "Text (Markdown)",
        validators=[DataRequired(), Length(max=MAX_BODY)],
        description="**bold**, *italics*, ## headings, lists, [links](https://…), <sup>th</sup>, footnotes[^1].",
        render_kw={"rows": 22, "spellcheck": "true"},
    )
    note = StringField(
        "Revision note",
        validators=[Optional(), Length(max=500), no_line_breaks],
        description="What changed, for the revision history.",
    )

    def text(self) -> LetterText:
        return LetterText(
            title=self.title.data or "",
            body_markdown=self.body_markdown.data or "",
            addressee=self.addressee.data or "",
            note=self.note.data or "",
        )


class LetterForm(_TextFields):
    slug = StringField(
        "Short address",
        validators=[
            Optional(),
            Length(max=80),
            Regexp(r"\A[a-z0-9]+(-[a-z0-9]+)*\Z", message="Use a-z, 0-9 and single hyphens."),
        ],
        description="The letter's link: /letters/short-address. Leave empty to derive it from the title.",
    )
    language = SelectField("Language", choices=language_choices, default="en")
    signature_deadline = DateTimeLocalField("Signature deadline", validators=[Optional()], format=LOCAL_FORMATS)
    embargo_until = DateTimeLocalField(
        "Embargo until",
        validators=[Optional()],
        format=LOCAL_FORMATS,
        description="Optional: the letter is not public before this time, even once open for signatures.",
    )
    timezone = SelectField(
        "Time zone of these times", choices=lambda: timezone_choices(("UTC", *COMMON_TIMEZONES)), default="UTC"
    )
    meeting = SelectField("Meeting", validate_choice=False, description="The occasion the letter is written for.")
    members_only = BooleanField(
        "Member organisations only",
        description="No public sign-on form: only the coalition's member organisations can sign. "
        "Signatures already given stay.",
    )

    def deadline_utc(self) -> datetime | None:
        return local_to_utc(self.signature_deadline.data, self.timezone.data)

    def embargo_utc(self) -> datetime | None:
        return local_to_utc(self.embargo_until.data, self.timezone.data)


class TranslationForm(_TextFields):
    pass


class TranslationStatusForm(FlaskForm):
    status = SelectField("Status", choices=lambda: choices((s.value, s.value) for s in TranslationStatus))


class MeetingForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=300), no_line_breaks])
    location = StringField(
        "Place", validators=[Optional(), Length(max=300), no_line_breaks], description="e.g. UN Headquarters, New York"
    )
    starts_at_local = DateTimeLocalField(
        "Starts", validators=[InputRequired()], format=LOCAL_FORMATS, description="Local time at the meeting's place."
    )
    ends_at_local = DateTimeLocalField(
        "Ends", validators=[Optional()], format=LOCAL_FORMATS, description="Optional; local time too."
    )
    timezone = SelectField("Time zone", choices=timezone_choices, default="America/New_York")
    description = TextAreaField("Description", validators=[Length(max=5000)], render_kw={"rows": 4})
