"""Forms of the supporters' pages and of the coordinators' subscriber and topic pages.

The subscribe and preferences forms only carry the fields (and CSRF): ``subscribers``
checks them, so the pages and the API obey the same rules and the errors land on the
right field.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, SearchField, SelectField, SelectMultipleField, StringField, widgets
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from campaign.alerts.models import Topic
from campaign.auth.services import country_choices
from campaign.forms import choices, no_line_breaks
from campaign.letters.models import LANGUAGE_NAMES_EN, UN_LANGUAGES


def language_options() -> list[SelectChoice]:
    """The six UN languages, each named in itself and in English."""
    return choices(
        (code, f"{name} ({LANGUAGE_NAMES_EN[code]})" if code != "en" else name) for code, name in UN_LANGUAGES.items()
    )


class TopicsField(SelectMultipleField):
    """Topics as checkboxes; the choices are set from the topics offered when the form is built."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()

    def pre_validate(self, form: FlaskForm) -> None:
        """The service checks the ids against the topics offered."""


def topic_choices(topics: Iterable[Topic]) -> list[SelectChoice]:
    return choices((str(topic.id), topic.label) for topic in topics)


class SubscribeForm(FlaskForm):
    email = EmailField(
        "Your email address",
        description="We send a link to it: alerts start once you confirm.",
        render_kw={"autocomplete": "email", "maxlength": 254, "required": True},
    )
    name = StringField("Your name (optional)", render_kw={"autocomplete": "name", "maxlength": 200})
    language = SelectField("Language of the alerts", choices=language_options, default="en")
    topics = TopicsField("Alert me about", coerce=str)
    consent = BooleanField("I agree")
    #: A honeypot: hidden from sighted people, labelled for screen readers; bots fill it in.
    website = StringField("Leave this empty", render_kw={"autocomplete": "off", "tabindex": "-1"})

    def __init__(self, *args: object, topics: Iterable[Topic] = (), **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.topics.choices = topic_choices(topics)


class PreferencesForm(FlaskForm):
    name = StringField("Your name (optional)", render_kw={"autocomplete": "name", "maxlength": 200})
    language = SelectField("Language of the alerts", choices=language_options)
    topics = TopicsField("Alert me about", coerce=str)

    def __init__(self, *args: object, topics: Iterable[Topic] = (), **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.topics.choices = topic_choices(topics)


class ResumeForm(FlaskForm):
    consent = BooleanField("I agree", validators=[DataRequired(message="Tick the box to agree.")])


class DeleteForm(FlaskForm):
    confirm = BooleanField(
        "Yes, delete my subscription and my data", validators=[DataRequired(message="Tick the box to confirm.")]
    )


class SubscriberFilterForm(FlaskForm):
    """The subscriber list's filters, read from the query string."""

    class Meta:
        csrf = False

    q = SearchField("Search", validators=[Optional(), Length(max=200)], render_kw={"placeholder": "Email or name"})
    status = SelectField(
        "State",
        choices=lambda: choices(
            [
                ("", "Any state"),
                ("confirmed", "Confirmed"),
                ("pending", "Pending confirmation"),
                ("unsubscribed", "Unsubscribed"),
                ("suppressed", "Suppressed"),
            ]
        ),
        default="",
    )
    topic = SelectField("Topic", validate_choice=False, default="")
    language = SelectField(
        "Language", choices=lambda: [SelectChoice("", "Any language"), *language_options()], default=""
    )

    def args(self) -> dict[str, str]:
        """The filters in use, for links that keep them."""
        names = ("q", "status", "topic", "language")
        return {name: getattr(self, name).data for name in names if getattr(self, name).data}


class TopicForm(FlaskForm):
    kind = SelectField(
        "Kind", choices=lambda: choices([("situation", "A situation or theme"), ("country", "A country")])
    )
    label = StringField(
        "Label", validators=[DataRequired(message="Give the topic a label."), Length(max=120), no_line_breaks]
    )
    country = SelectField("Country (for a country)", validate_choice=False, default="")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.country.choices = choices([("", "Choose a country"), *country_choices()])


class RenameTopicForm(FlaskForm):
    label = StringField(
        "New label", validators=[DataRequired(message="Give the topic a label."), Length(max=120), no_line_breaks]
    )
