from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField
from wtforms import BooleanField, DateField, EmailField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional

from campaign.forms import no_line_breaks
from campaign.letters.forms import timezone_choices

#: Missions sit in New York or Geneva (whose IANA zone is Europe/Zurich).
MISSION_TIMEZONES = ("America/New_York", "Europe/Zurich")


class SettingsForm(FlaskForm):
    name = StringField("Coalition name", validators=[DataRequired(), Length(max=200), no_line_breaks])
    letterhead = TextAreaField(
        "Letterhead",
        validators=[Length(max=2000)],
        description="Lines printed at the head of letters: address, registration, website.",
    )
    logo = FileField("Logo", validators=[FileAllowed(["png", "jpg", "jpeg"], "PNG or JPEG only.")])
    remove_logo = BooleanField("Remove the current logo")
    mail_from_name = StringField("Sender name", validators=[Length(max=200), no_line_breaks])
    mail_from_address = EmailField(
        "From address",
        validators=[Optional(), Email(check_deliverability=False), Length(max=254)],
        description="Mail goes out from this address; its domain must be authenticated with your mail provider.",
    )
    reply_to = EmailField(
        "Reply-To address", validators=[Optional(), Email(check_deliverability=False), Length(max=254)]
    )
    postal_address = TextAreaField(
        "Postal address", validators=[Length(max=1000)], description="Printed at the foot of every alert."
    )
    privacy_notice = TextAreaField(
        "Privacy notice", validators=[Length(max=20000)], description="Shown to supporters when they subscribe."
    )
    default_timezone = SelectField(
        "Default time zone for contacts",
        choices=lambda: timezone_choices(MISSION_TIMEZONES),
        description="Given to a contact entered or imported without a time zone; mailings are timed in it.",
    )


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False

    actor = StringField("Who (email)", validators=[Optional(), Length(max=254)])
    action = SelectField("Action", validate_choice=False)
    object_type = SelectField("Object", validate_choice=False)
    since = DateField("From", validators=[Optional()])
    until = DateField("Until", validators=[Optional()])
