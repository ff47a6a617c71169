from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField, URLField
from wtforms.validators import URL, DataRequired, Email, EqualTo, Length, Optional, Regexp

from campaign.auth.models import Role
from campaign.auth.passwords import MIN_PASSWORD_LENGTH
from campaign.forms import choices, no_line_breaks


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class TwoFactorForm(FlaskForm):
    code = StringField(
        "Code from your authenticator app, or a recovery code",
        validators=[DataRequired(), Length(max=20)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True},
    )


class TwoFactorSetupForm(FlaskForm):
    code = StringField(
        "Six-digit code from your authenticator app",
        validators=[DataRequired(), Length(max=10)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )


class PasswordResetRequestForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)])


class NewPasswordForm(FlaskForm):
    password = PasswordField(
        "New password",
        validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=1024)],
        description=f"At least {MIN_PASSWORD_LENGTH} characters. A passphrase of several words works well.",
        render_kw={"autocomplete": "new-password"},
    )
    confirm = PasswordField(
        "Repeat the new password",
        validators=[DataRequired(), EqualTo("password", message="The two passwords differ.")],
        render_kw={"autocomplete": "new-password"},
    )


class ChangePasswordForm(NewPasswordForm):
    current = PasswordField(
        "Current password", validators=[DataRequired()], render_kw={"autocomplete": "current-password"}
    )


class ConfirmForm(FlaskForm):
    """A form with only its CSRF token: for POST buttons."""


class OrganisationForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200), no_line_breaks])
    slug = StringField(
        "Short address",
        validators=[Optional(), Length(max=80), Regexp(r"^[a-z0-9-]+$", message="Use a-z, 0-9 and hyphens.")],
        description="Used in links. Leave empty to derive it from the name.",
    )
    country = SelectField("Country", validators=[DataRequired()])
    website = URLField("Website", validators=[Optional(), URL(require_tld=True), Length(max=300)])
    member = BooleanField("Member of the coalition")


class UserForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)])
    name = StringField("Name", validators=[DataRequired(), Length(max=200), no_line_breaks])
    role = SelectField("Role", choices=choices((r.value, r.label) for r in Role), default=Role.MEMBER.value)
    organisation = SelectField(
        "Organisation", description="Required for members: the organisation they sign for.", validate_choice=False
    )
    active = BooleanField("Active", default=True)


class TokenForm(FlaskForm):
    name = StringField(
        "Token name",
        validators=[DataRequired(), Length(max=100), no_line_breaks],
        description="Say where it is used, e.g. 'CRM sync'.",
    )
