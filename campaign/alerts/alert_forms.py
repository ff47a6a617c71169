"""Forms of the coordinators' alert pages: composing an alert with its translations, sending it."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import DateTimeLocalField, Form, FormField, RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from campaign.alerts.forms import TopicsField, language_options, topic_choices
from campaign.alerts.models import Alert, Topic
from campaign.alerts.services import MAX_BODY, MAX_SUBJECT, AlertData, AlertTextData
from campaign.forms import choices, no_line_breaks
from campaign.letters.forms import COMMON_TIMEZONES, LOCAL_FORMATS, local_to_utc, timezone_choices
from campaign.letters.models import LANGUAGE_NAMES_EN, UN_LANGUAGES


class TranslationForm(Form):
    """One translation: both fields empty leaves the language out."""

    subject = StringField("Subject", validators=[Length(max=MAX_SUBJECT), no_line_breaks])
    body = TextAreaField("Text (Markdown)", validators=[Length(max=MAX_BODY)], render_kw={"rows": 8})


class LanguagesField(TopicsField):
    """Languages as checkboxes."""


class AlertForm(FlaskForm):
    """The original text, one sub-form per UN language for its translation, topics and languages."""

    language = SelectField("Language of the original", choices=language_options, default="en")
    subject = StringField(
        "Subject",
        validators=[DataRequired(message="Write a subject."), Length(max=MAX_SUBJECT), no_line_breaks],
        description="One line, at most 300 characters.",
    )
    body = TextAreaField(
        "Text (Markdown)",
        validators=[DataRequired(message="Write the text of the alert."), Length(max=MAX_BODY)],
        description="Markdown: **bold**, *italics*, [a link](https://…), a blank line between paragraphs. "
        "The greeting, the links to manage or end the subscription and the coalition's address are added.",
        render_kw={"rows": 12, "spellcheck": "true"},
    )
    topics = TopicsField(
        "Topics", coerce=str, description="The alert goes to the confirmed subscribers who follow any of them."
    )
    languages = LanguagesField(
        "Languages",
        coerce=str,
        choices=language_options,
        description="None ticked: the subscribers reading a language the alert has a text in. Subscribers "
        "whose language has no text receive the original.",
    )
    tr_ar = FormField(TranslationForm, label=f"{UN_LANGUAGES['ar']} ({LANGUAGE_NAMES_EN['ar']})")
    tr_zh = FormField(TranslationForm, label=f"{UN_LANGUAGES['zh']} ({LANGUAGE_NAMES_EN['zh']})")
    tr_en = FormField(TranslationForm, label=UN_LANGUAGES["en"])
    tr_fr = FormField(TranslationForm, label=f"{UN_LANGUAGES['fr']} ({LANGUAGE_NAMES_EN['fr']})")
    tr_ru = FormField(TranslationForm, label=f"{UN_LANGUAGES['ru']} ({LANGUAGE_NAMES_EN['ru']})")
    tr_es = FormField(TranslationForm, label=f"{UN_LANGUAGES['es']} ({LANGUAGE_NAMES_EN['es']})")

    def __init__(self, *args: Any, topics: list[Topic], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topics.choices = topic_choices(topics)

    @classmethod
    def for_alert(cls, alert: Alert | None, topics: list[Topic]) -> AlertForm:
        """The form for a new alert, or filled with a draft's texts (on GET; a POST reads the request)."""
        if alert is None:
            return cls(topics=topics)
        original = alert.text_for(alert.language)
        data: dict[str, Any] = {
            "language": alert.language,
            "subject": original.subject if original else "",
            "body": original.body if original else "",
            "topics": [str(topic_id) for topic_id in alert.topic_ids],
            "languages": list(alert.languages),
        }
        for text in alert.texts:
            if text.language != alert.language:
                data[f"tr_{text.language}"] = {"subject": text.subject, "body": text.body}
        return cls(data=data, topics=topics)

    def translation_fields(self) -> list[tuple[str, FormField]]:
        return [(code, getattr(self, f"tr_{code}")) for code in UN_LANGUAGES]

    def data_for_service(self) -> AlertData:
        translations = []
        for code, sub in self.translation_fields():
            subject, body = (sub.subject.data or "").strip(), (sub.body.data or "").strip()
            if subject or body:
                translations.append(AlertTextData(code, subject, body))
        return AlertData(
            original=AlertTextData(self.language.data or "", self.subject.data or "", self.body.data or ""),
            topic_ids=[int(value) for value in self.topics.data or [] if value.isascii() and value.isdigit()],
            translations=translations,
            languages=list(self.languages.data or []),
        )

    def attach_error(self, message: str) -> None:
        """Put a service's message beside the field it is about, else above the form."""
        for code, sub in self.translation_fields():
            if f"{UN_LANGUAGES[code]} translation" in message:
                target = sub.subject if "subject" in message else sub.body
                target.errors = [*target.errors, message]
                return
        targets = {
            "The subject of the original": self.subject,
            "The text of the original": self.body,
            "The original": self.body,
            "The language of the original": self.language,
            "Choose at least one topic": self.topics,
            "Topics must": self.topics,
            "Languages must": self.languages,
        }
        for prefix, field in targets.items():
            if message.startswith(prefix):
                field.errors = [*field.errors, message]
                return
        self.form_errors.append(message)


#: How a send is timed; the labels are the radio buttons'.
WHEN = (("now", "Now"), ("at", "At a set time"))


class AlertSendForm(FlaskForm):
    when = RadioField("When", choices=choices(WHEN), default="now")
    at = DateTimeLocalField("Date and time", validators=[Optional()], format=LOCAL_FORMATS)
    at_timezone = SelectField(
        "Time zone of that time", choices=lambda: timezone_choices(("UTC", *COMMON_TIMEZONES)), default="UTC"
    )

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        if self.when.data == "at" and self.at.data is None and not self.at.errors:
            self.at.errors = ["Give the date and time to send at."]
            valid = False
        return valid

    def send_at(self) -> Any:
        """The time asked for, in UTC, or None for now."""
        if self.when.data == "at":
            return local_to_utc(self.at.data, self.at_timezone.data)
        return None


class SendTestForm(FlaskForm):
    language = SelectField("Language", choices=language_options, default="en")
