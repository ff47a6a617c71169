"""Forms for the contacts directory: a contact, the list's filters, bulk tags, suppression, import, audiences."""

from __future__ import annotations

import re

import pycountry
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, EmailField, SearchField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from campaign.admin.forms import MISSION_TIMEZONES
from campaign.contacts.countries import country_name
from campaign.contacts.models import Suppression
from campaign.contacts.services import FIELDS as CONTACT_FIELDS
from campaign.contacts.services import FILTER_SUPPRESSION, ContactData
from campaign.forms import choices, no_line_breaks
from campaign.letters.forms import timezone_choices
from campaign.letters.models import LANGUAGE_NAMES_EN

#: Tags as typed in one field: "P5; Geneva, Africa Group".
TAG_SEPARATORS = re.compile(r"[,;]")


def split_tags(text: str | None) -> list[str]:
    return [tag for tag in (t.strip() for t in TAG_SEPARATORS.split(text or "")) if tag]


def country_pairs(codes: object = None) -> list[tuple[str, str]]:
    """``(code, name)`` of every ISO 3166-1 country (or of ``codes``), by name."""
    wanted = [c.alpha_2 for c in pycountry.countries] if codes is None else list(codes)  # type: ignore[call-overload]
    return sorted(((code, country_name(code)) for code in wanted), key=lambda pair: pair[1].casefold())


def language_choices() -> list[SelectChoice]:
    return choices((code, f"{name} ({code})") for code, name in LANGUAGE_NAMES_EN.items())


def suppression_label(value: str | None) -> str:
    """What the list shows in its State column."""
    return "Deliverable" if value is None else Suppression(value).label


def state_pairs() -> list[tuple[str, str]]:
    """The list's state filter: deliverable, suppressed for any reason, or for one."""
    special = {"deliverable": "Deliverable", "suppressed": "Suppressed (any reason)"}
    return [(value, special.get(value) or suppression_label(value)) for value in FILTER_SUPPRESSION]


class ContactForm(FlaskForm):
    """All of a contact's fields; the rules (syntax, codes, lengths) are the service's, see ``validate``."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=254)], render_kw={"autocomplete": "off"})
    country = SelectField(
        "Country",
        choices=lambda: choices([("", "— choose —"), *country_pairs()]),
        validators=[DataRequired(message="Choose a country.")],
    )
    organisation = StringField(
        "Organisation", validators=[Length(max=300)], description="e.g. Permanent Mission of Ghana to the UN"
    )
    honorific = StringField("Honorific", validators=[Length(max=80)], description="e.g. H.E. Ms., Ambassador")
    given_name = StringField("Given name", validators=[Length(max=120)])
    family_name = StringField("Family name", validators=[Length(max=120)])
    position = StringField("Position", validators=[Length(max=300)], description="e.g. Permanent Representative")
    salutation = StringField(
        "Salutation", validators=[Length(max=300)], description="How a letter opens, e.g. “Your Excellency,”"
    )
    language = SelectField("Language", choices=language_choices, default="en")
    timezone = SelectField(
        "Time zone",
        choices=lambda: [SelectChoice("", "The coalition's default"), *timezone_choices(MISSION_TIMEZONES)],
        default="",
        description="Mailings timed “09:00 local” use it.",
    )
    tags = StringField(
        "Tags", validators=[Length(max=2000)], description="Separated by commas or semicolons, e.g. P5; Geneva"
    )
    notes = TextAreaField("Notes", validators=[Length(max=5000)], render_kw={"rows": 3})

    def data_for_service(self) -> ContactData:
        return ContactData(
            country=self.country.data or "",
            email=self.email.data or "",
            organisation=self.organisation.data or "",
            honorific=self.honorific.data or "",
            given_name=self.given_name.data or "",
            family_name=self.family_name.data or "",
            position=self.position.data or "",
            salutation=self.salutation.data or "",
            language=self.language.data or "en",
            timezone=self.timezone.data or None,
            tags=split_tags(self.tags.data),
            notes=self.notes.data or "",
        )

    def fill_from(self, data: ContactData) -> None:
        for name in CONTACT_FIELDS:
            getattr(self, name).data = getattr(data, name)
        self.tags.data = "; ".join(data.tags)

    def attach_error(self, message: str) -> bool:
        """Put a service's message on the field it names ("Email …", "Tag …"); False when it names none."""
        targets = {"Tag ": self.tags, "A contact with the email": self.email, "Another contact": self.email}
        for name in CONTACT_FIELDS:
            targets[name.replace("_", " ").capitalize() + " "] = getattr(self, name)
        for prefix, field in targets.items():
            if message.startswith(prefix):
                field.errors = [*field.errors, message]
                return True
        return False


class ContactFilterForm(FlaskForm):
    """The list's filters, read from the query string."""

    class Meta:
        csrf = False

    q = SearchField(
        "Search", validators=[Optional(), Length(max=200)], render_kw={"placeholder": "Name, email, organisation"}
    )
    country = SelectField("Country", validate_choice=False, default="")
    tag = SelectField("Tag", validate_choice=False, default="")
    language = SelectField(
        "Language", choices=lambda: [SelectChoice("", "Any language"), *language_choices()], default=""
    )
    suppression = SelectField("State", choices=lambda: choices([("", "Any state"), *state_pairs()]), default="")

    def args(self) -> dict[str, str]:
        """The filters in use, for links that keep them (pages, export, return after bulk tags)."""
        names = ("q", "country", "tag", "language", "suppression")
        return {name: getattr(self, name).data for name in names if getattr(self, name).data}


class BulkTagsForm(FlaskForm):
    #: Not "tag": the list's own tag filter travels in the same form, to come back to the same page.
    bulk_tag = StringField(
        "Tag for the selected contacts",
        validators=[DataRequired(message="Enter a tag."), Length(max=200)],
        description="Several tags may be separated by commas or semicolons.",
    )


class SuppressForm(FlaskForm):
    reason = SelectField("Reason", choices=lambda: choices((s.value, s.label) for s in Suppression), default="manual")
    note = StringField("Note", validators=[Optional(), Length(max=500), no_line_breaks])


class ImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file to upload.")])
    dry_run = BooleanField("Check only (dry run): show the report, import nothing")
    accept_valid = BooleanField("Import the valid rows even if some rows are rejected")


class AudienceForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200), no_line_breaks])
    tags = SelectMultipleField(
        "Tags", description="Contacts with any of these tags; none selected: any tag.", render_kw={"size": 8}
    )
    countries = SelectMultipleField(
        "Countries",
        choices=lambda: choices(country_pairs()),
        description="None selected: every country.",
        render_kw={"size": 10},
    )
    languages = SelectMultipleField("Languages", choices=language_choices, description="None selected: every language.")
