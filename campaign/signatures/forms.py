"""Forms for signing as a member, inviting member organisations, and asking signers to re-confirm."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectMultipleField, StringField, widgets
from wtforms.validators import DataRequired, Length

from campaign.forms import no_line_breaks


class MemberSignForm(FlaskForm):
    signer_name = StringField("Your name", validators=[DataRequired(), Length(max=200), no_line_breaks])
    signer_title = StringField(
        "Your title",
        validators=[Length(max=200), no_line_breaks],
        description="Your position in the organisation, as it should appear (e.g. Executive Director).",
    )


class CheckboxListField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class InviteForm(FlaskForm):
    all_members = BooleanField("All member organisations not yet invited")
    organisations = CheckboxListField("Member organisations", coerce=int, validate_choice=True)


class PublishChangesForm(FlaskForm):
    """Publish changes, optionally asking the letter's signatories to re-confirm."""

    substantive = BooleanField(
        "This is a substantive change: ask signatories to re-confirm",
        description="Organisations that signed an earlier revision get an email asking them to re-confirm.",
    )
