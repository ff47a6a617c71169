"""Forms of the public sign-on, signers' data and moderation.

The sign-on form only carries the fields (and CSRF): ``public_signon`` checks
them, so the HTML form and any other caller obey the same rules.
"""

from __future__ import annotations

from functools import cache

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, SelectField, StringField, SubmitField, URLField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, Regexp

from campaign.auth.services import country_choices
from campaign.forms import choices, no_line_breaks


class SignOnForm(FlaskForm):
    organisation_name = StringField(
        "Organisation", render_kw={"autocomplete": "organization", "maxlength": 200, "required": True}
    )
    country = SelectField("Country", validate_choice=False, render_kw={"required": True})
    website = URLField(
        "Website (optional)", render_kw={"placeholder": "https://", "maxlength": 300, "autocomplete": "url"}
    )
    signer_name = StringField("Your name", render_kw={"autocomplete": "name", "maxlength": 200, "required": True})
    signer_title = StringField(
        "Your title or position",
        render_kw={"autocomplete": "organization-title", "maxlength": 200, "required": True},
    )
    signer_email = EmailField(
        "Your email address",
        description="We send a link to it: your signature counts once you confirm.",
        render_kw={"autocomplete": "email", "maxlength": 254, "required": True},
    )
    consent = BooleanField("I agree")
    #: A honeypot: hidden from sighted people, labelled for screen readers; bots fill it in.
    homepage = StringField("Leave this empty", render_kw={"autocomplete": "off", "tabindex": "-1"})

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.country.choices = list(_country_options())


@cache
def _country_options() -> tuple[SelectChoice, ...]:
    """The country list, sorted once per process: ISO 3166 does not change while it runs."""
    return tuple(choices([("", "Choose a country"), *country_choices()]))


class SignerDataRequestForm(FlaskForm):
    email = EmailField(
        "Email address you signed with",
        validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)],
        render_kw={"autocomplete": "email"},
    )


class ReconfirmForm(FlaskForm):
    reconfirm = SubmitField("Re-confirm our signature")
    withdraw = SubmitField("Withdraw our signature")


class EraseForm(FlaskForm):
    confirm = BooleanField("Yes, delete my name, title and email address", validators=[DataRequired()])


class RejectForm(FlaskForm):
    reason = StringField(
        "Reason for rejecting",
        validators=[
            DataRequired("Give a reason for rejecting: the signer is told it."),
            Length(max=500, message="The reason for rejecting is too long (at most 500 characters)."),
            Regexp(no_line_breaks.regex, message="Give the reason for rejecting on a single line."),
        ],
    )


class BulkForm(FlaskForm):
    reason = StringField(
        "Reason (for rejecting the ticked signatures)",
        validators=[Length(max=500), no_line_breaks],
        description="The signers are told it.",
    )
