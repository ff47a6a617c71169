"""Forms for mailings: composing one, sending it, and settling an uncertain delivery."""

from __future__ import annotations

from datetime import time
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    DateTimeLocalField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
    TimeField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from campaign.contacts.forms import country_pairs, language_choices
from campaign.forms import choices, no_line_breaks
from campaign.letters.forms import COMMON_TIMEZONES, LOCAL_FORMATS, local_to_utc, timezone_choices
from campaign.mailings.services import RESOLUTIONS, MailingData
from campaign.rendering import TemplateError, compile_template


def compiles(form: FlaskForm, field: Any) -> None:
    """The field is a template the sandbox can compile; the message names the line."""
    try:
        compile_template(field.data or "")
    except TemplateError as exc:
        raise ValidationError(f"The template has an error: {exc}.") from exc


class MailingForm(FlaskForm):
    """A mailing's letter, templates and audience; the letters and tags offered are set by the view."""

    letter = SelectField(
        "Letter",
        validators=[DataRequired(message="Choose a letter.")],
        description="Only a published letter (open, closed or sent) can be mailed.",
    )
    name = StringField(
        "Name",
        validators=[Optional(), Length(max=200), no_line_breaks],
        description="For coordinators only. Empty: the letter's title and today's date.",
    )
    subject = StringField(
        "Subject",
        validators=[DataRequired(message="Write a subject."), Length(max=500), no_line_breaks, compiles],
        description="A template: merge fields work here, e.g. Open letter: {{ letter.title }}",
    )
    introduction = TextAreaField(
        "Introduction",
        validators=[Length(max=20_000), compiles],
        description="Above the letter, in every message. A blank line starts a new paragraph.",
        render_kw={"rows": 10, "spellcheck": "true"},
    )
    audience = SelectField("Saved audience", validate_choice=False, default="")
    copy_audience = SubmitField("Copy its tags, countries and languages")
    tags = SelectMultipleField(
        "Tags", description="Contacts with any of these tags; none selected: any tag.", render_kw={"size": 8}
    )
    countries = SelectMultipleField(
        "Countries",
        choices=lambda: choices(country_pairs()),
        description="None selected: every country.",
        render_kw={"size": 10},
    )
    languages = SelectMultipleField(
        "Languages", choices=language_choices, description="Contacts who read these; none selected: every language."
    )
    rate_per_minute = IntegerField(
        "Messages a minute",
        validators=[InputRequired(message="Give a rate."), NumberRange(min=1, max=100_000)],
        description="Across all workers; the mail provider's limits decide it.",
    )

    def data_for_service(self, letter: Any) -> MailingData:
        return MailingData(
            letter=letter,
            subject=self.subject.data or "",
            introduction=self.introduction.data or "",
            name=self.name.data or "",
            tags=list(self.tags.data or []),
            countries=list(self.countries.data or []),
            languages=list(self.languages.data or []),
            rate_per_minute=self.rate_per_minute.data,
        )

    def attach_error(self, message: str) -> bool:
        """Put a service's message beside the field it is about; False when it names none."""
        targets = {
            "The subject": self.subject,
            "The introduction": self.introduction,
            "The templates": self.introduction,
            "Only a published letter": self.letter,
            "Not ISO 3166-1": self.countries,
            "Languages must": self.languages,
            "The rate": self.rate_per_minute,
        }
        for prefix, field in targets.items():
            if message.startswith(prefix):
                field.errors = [*field.errors, message]
                return True
        return False


#: How a send is timed; the labels are the radio buttons'.
WHEN = (
    ("now", "Now"),
    ("at", "At a set time"),
    ("before", "Before the letter's meeting, at a local time in each recipient's time zone"),
)


class SendForm(FlaskForm):
    when = RadioField("When", choices=choices(WHEN), default="now")
    at = DateTimeLocalField("Date and time", validators=[Optional()], format=LOCAL_FORMATS)
    at_timezone = SelectField(
        "Time zone of that time", choices=lambda: timezone_choices(("UTC", *COMMON_TIMEZONES)), default="UTC"
    )
    days = IntegerField("Days before the meeting", validators=[Optional(), NumberRange(min=0, max=365)], default=3)
    hours = IntegerField("Hours before", validators=[Optional(), NumberRange(min=0, max=23)], default=0)
    local_time = TimeField(
        "Local time of sending", validators=[Optional()], default=time(9, 0), description="In each recipient's zone."
    )

    def validate(self, extra_validators: Any = None) -> bool:
        """The fields the chosen timing needs are required (``Optional`` would skip field checks)."""
        valid = super().validate(extra_validators)
        if self.when.data == "at" and self.at.data is None and not self.at.errors:
            self.at.errors = ["Give the date and time to send at."]
            valid = False
        if self.when.data == "before" and self.local_time.data is None and not self.local_time.errors:
            self.local_time.errors = ["Give the time of day, e.g. 09:00."]
            valid = False
        return valid

    def request(self) -> dict[str, str]:
        """The send request ``services.request_send`` takes."""
        if self.when.data == "at":
            return {"at": local_to_utc(self.at.data, self.at_timezone.data).isoformat()}
        if self.when.data == "before":
            days, hours = self.days.data or 0, self.hours.data or 0
            duration = "P" + (f"{days}D" if days else "") + (f"T{hours}H" if hours or not days else "")
            return {"before_meeting": duration, "local_time": f"{self.local_time.data:%H:%M}"}
        return {}


class ResolveForm(FlaskForm):
    """A coordinator's decision on an uncertain delivery; the note says what it rests on."""

    outcome = RadioField(
        "Decision",
        choices=choices(RESOLUTIONS.items()),
        validators=[InputRequired(message="Choose a decision.")],
    )
    note = TextAreaField(
        "What the decision rests on",
        validators=[
            DataRequired(message="Say what the decision rests on (a reply, the provider's log…)."),
            Length(max=500),
        ],
        description="Kept in the delivery's history and the audit log.",
        render_kw={"rows": 2},
    )
