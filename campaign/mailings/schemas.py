"""The JSON shapes of ``/api/v1/mailings`` (``campaign.mailings.api``): what is read and written."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import marshmallow as ma

from campaign.contacts.validation import country_codes
from campaign.letters.models import UN_LANGUAGES
from campaign.mailings import schedule
from campaign.mailings.models import DeliveryStatus, MailingStatus
from campaign.rendering import TemplateError, compile_template
from campaign.restapi import PageArgs

_STATUSES = [s.value for s in MailingStatus]
_line = ma.validate.Regexp(r"^[^\r\n\x00]*$", error="Must be a single line.")
_slug = ma.validate.Regexp(r"^[^\x00]{1,120}$", error="A slug of 1 to 120 characters, without NUL.")


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise ma.ValidationError("Must not contain a NUL character.")


def _template(value: str) -> None:
    try:
        compile_template(value)
    except TemplateError as exc:
        raise ma.ValidationError(f"The template does not compile: {exc}.") from exc


def _country(value: str) -> None:
    if value.strip().upper() not in country_codes():
        raise ma.ValidationError("Not an ISO 3166-1 alpha-2 country code.")


def _sane_time(value: datetime) -> None:
    if not 1900 <= value.year <= 2999:
        raise ma.ValidationError("Out of range.")


def _checked_by(parse: Any) -> Any:
    def validate(value: str) -> None:
        try:
            parse(value)
        except schedule.ScheduleError as exc:
            raise ma.ValidationError(f"{str(exc)[:200]}.") from exc

    return validate


class AudienceSchema(ma.Schema):
    """Contacts with any of the tags, in the countries, reading the languages; an empty list
    places no condition (all three empty: every contact)."""

    tags = ma.fields.List(
        ma.fields.String(validate=[ma.validate.Length(1, 64), _line]), load_default=list,
        validate=ma.validate.Length(max=100),
    )  # fmt: skip
    countries = ma.fields.List(
        ma.fields.String(validate=_country, metadata={"example": "FR"}), load_default=list,
        validate=ma.validate.Length(max=300),
    )  # fmt: skip
    languages = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(list(UN_LANGUAGES))), load_default=list,
        validate=ma.validate.Length(max=len(UN_LANGUAGES)),
    )  # fmt: skip


class AudienceUpdateSchema(AudienceSchema):
    """Lists given replace the mailing's; lists omitted keep their value."""

    tags = ma.fields.List(ma.fields.String(validate=[ma.validate.Length(1, 64), _line]),
                          validate=ma.validate.Length(max=100))  # fmt: skip
    countries = ma.fields.List(ma.fields.String(validate=_country), validate=ma.validate.Length(max=300))
    languages = ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(list(UN_LANGUAGES))),
                               validate=ma.validate.Length(max=len(UN_LANGUAGES)))  # fmt: skip


_SUBJECT = {"description": "A template with merge fields, such as `Open letter: {{ letter.title }}`"}
_INTRODUCTION = {"description": "A template: `{{ contact.salutation }}`, `{% if 'P5' in contact.tags %}…{% endif %}`"}


class MailingCreateSchema(ma.Schema):
    letter = ma.fields.String(required=True, validate=_slug, metadata={"description": "Slug of a published letter"})
    audience = ma.fields.Nested(AudienceSchema, required=True)
    subject = ma.fields.String(
        required=True, validate=[ma.validate.Length(1, 500), _line, _template], metadata=_SUBJECT
    )
    introduction = ma.fields.String(
        load_default="", validate=[ma.validate.Length(max=20_000), _no_nul, _template], metadata=_INTRODUCTION
    )
    name = ma.fields.String(
        validate=[ma.validate.Length(max=200), _line],
        metadata={"description": "Made from the letter's title and the date when empty"},
    )
    rate_per_minute = ma.fields.Integer(
        validate=ma.validate.Range(1, 100_000),
        metadata={"description": "Messages a minute; MAILING_RATE when not given"},
    )


class MailingUpdateSchema(MailingCreateSchema):
    """Omitted fields keep their value; any change withdraws an approval."""

    letter = ma.fields.String(validate=_slug)
    audience = ma.fields.Nested(AudienceUpdateSchema)
    subject = ma.fields.String(validate=[ma.validate.Length(1, 500), _line, _template], metadata=_SUBJECT)
    introduction = ma.fields.String(validate=[ma.validate.Length(max=20_000), _no_nul, _template])


class MailingFilterArgs(PageArgs):
    status = ma.fields.String(validate=ma.validate.OneOf(_STATUSES))
    letter = ma.fields.String(validate=_slug, metadata={"description": "Slug of the letter"})


class SendSchema(ma.Schema):
    """Nothing (send now), ``at``, or ``before_meeting`` with ``local_time``."""

    at = ma.fields.AwareDateTime(validate=_sane_time, metadata={"description": "When to send, with its offset"})
    before_meeting = ma.fields.String(
        validate=[ma.validate.Length(max=40), _checked_by(schedule.parse_duration)],
        metadata={"description": "ISO 8601 duration before the letter's meeting starts", "example": "P3D"},
    )
    local_time = ma.fields.String(
        validate=[ma.validate.Length(max=10), _checked_by(schedule.parse_local_time)],
        metadata={"description": "Time of day in each recipient's timezone", "example": "09:00"},
    )

    @ma.validates_schema
    def _one_way(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "at" in data and "before_meeting" in data:
            raise ma.ValidationError("Give either at or before_meeting, not both.", "_schema")
        if "before_meeting" in data and "local_time" not in data:
            raise ma.ValidationError("Required with before_meeting.", "local_time")
        if "local_time" in data and "before_meeting" not in data:
            raise ma.ValidationError("Only with before_meeting.", "local_time")


class PreviewArgs(ma.Schema):
    contact = ma.fields.Integer(
        required=True, validate=ma.validate.Range(1, 2**31 - 1),
        metadata={"description": "Id of a contact in the mailing's audience"},
    )  # fmt: skip


DeliveryCountsSchema = type(
    "DeliveryCountsSchema", (ma.Schema,), {s.value: ma.fields.Integer(required=True) for s in DeliveryStatus}
)


class ProgressSchema(ma.Schema):
    counts = ma.fields.Nested(DeliveryCountsSchema, required=True, metadata={"description": "Deliveries per state"})
    total = ma.fields.Integer(required=True)
    done = ma.fields.Integer(required=True, metadata={"description": "Deliveries neither pending nor sending"})
    percent = ma.fields.Integer(required=True)


class ScheduleSchema(ma.Schema):
    description = ma.fields.String(required=True, metadata={"example": "3 days before the meeting, at 09:00…"})
    at = ma.fields.String(metadata={"format": "date-time"})
    before_meeting = ma.fields.String(metadata={"example": "P3D"})
    local_time = ma.fields.String(metadata={"example": "09:00"})


class MailingSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"enum": _STATUSES})
    version = ma.fields.Integer(required=True, metadata={"description": "Grows with every change; approval holds "
                                                                       "for the version approved"})  # fmt: skip
    letter = ma.fields.String(required=True, metadata={"description": "Slug of the letter"})
    subject = ma.fields.String(required=True)
    introduction = ma.fields.String(required=True)
    audience = ma.fields.Nested(AudienceSchema, required=True)
    rate_per_minute = ma.fields.Integer(required=True)
    created_by = ma.fields.String(allow_none=True, metadata={"description": "Email of the author"})
    approved_by = ma.fields.String(allow_none=True, metadata={"description": "Email of the approving coordinator"})
    approved_date = ma.fields.AwareDateTime(allow_none=True)
    schedule = ma.fields.Nested(ScheduleSchema, allow_none=True, metadata={"description": "How sending was asked"})
    send_requested_by = ma.fields.String(allow_none=True)
    send_requested_date = ma.fields.AwareDateTime(allow_none=True)
    first_due_date = ma.fields.AwareDateTime(allow_none=True, metadata={"description": "Earliest due delivery"})
    started_date = ma.fields.AwareDateTime(allow_none=True)
    finished_date = ma.fields.AwareDateTime(allow_none=True)
    cancelled_date = ma.fields.AwareDateTime(allow_none=True)
    progress = ma.fields.Nested(ProgressSchema, required=True)
    created_date = ma.fields.AwareDateTime(required=True)
    modified_date = ma.fields.AwareDateTime(required=True)


class PreviewSchema(ma.Schema):
    contact = ma.fields.Integer(required=True)
    email = ma.fields.String(required=True)
    language = ma.fields.String(required=True, metadata={"description": "The language of the letter sent"})
    revision = ma.fields.Integer(required=True, metadata={"description": "Number of the revision sent"})
    subject = ma.fields.String(required=True)
    text = ma.fields.String(required=True)
    html = ma.fields.String(required=True)


class FailureSchema(ma.Schema):
    contact = ma.fields.Integer(allow_none=True, metadata={"description": "null when the templates do not compile"})
    email = ma.fields.String(required=True)
    error = ma.fields.String(required=True)


class UncoveredSchema(ma.Schema):
    country = ma.fields.String(required=True)
    country_name = ma.fields.String(required=True)
    suppressed = ma.fields.Integer(required=True, metadata={"description": "Its suppressed contacts"})


class CheckSchema(ma.Schema):
    recipients = ma.fields.Integer(required=True, metadata={"description": "Deliverable contacts in the audience"})
    suppressed = ma.fields.Integer(required=True, metadata={"description": "Suppressed contacts in the audience"})
    failures = ma.fields.List(ma.fields.Nested(FailureSchema), required=True)
    uncovered = ma.fields.List(ma.fields.Nested(UncoveredSchema), required=True,
                               metadata={"description": "Targeted states without a deliverable contact"})  # fmt: skip
    ready = ma.fields.Boolean(required=True, metadata={"description": "Recipients exist and every one renders"})


class DeliveryFilterArgs(PageArgs):
    status = ma.fields.String(validate=ma.validate.OneOf([s.value for s in DeliveryStatus]))


class DeliveryEventSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True, metadata={"description": "A step of the sending (sent, retry, uncertain, "
                            "lease-expired, resolved-…) or SendGrid's event (processed, delivered, deferred, bounce, "
                            "blocked, dropped, spamreport, unsubscribe, open, click…)"})  # fmt: skip
    detail = ma.fields.String(required=True, metadata={"description": "What it did, e.g. `sent → delivered`"})
    source = ma.fields.String(required=True, metadata={"description": "A worker, a coordinator's email, sendgrid"})
    data = ma.fields.Dict(required=True, metadata={"description": "For SendGrid's events: sg_event_id, timestamp, "
                                                                  "type, status, reason…"})  # fmt: skip
    created_date = ma.fields.AwareDateTime(required=True)


class DeliverySchema(ma.Schema):
    """One contact's delivery of a mailing, with its whole history, oldest first."""

    id = ma.fields.Integer(required=True)
    mailing = ma.fields.Integer(required=True)
    contact = ma.fields.Integer(allow_none=True, metadata={"description": "null once the contact is deleted"})
    email = ma.fields.String(required=True)
    country = ma.fields.String(required=True)
    language = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"enum": [s.value for s in DeliveryStatus]})
    reason = ma.fields.String(required=True, metadata={"description": "Why it failed, bounced, was dropped…"})
    message_id = ma.fields.String(allow_none=True, metadata={"description": "The provider's message id"})
    attempts = ma.fields.Integer(required=True)
    due_date = ma.fields.AwareDateTime(required=True)
    sent_date = ma.fields.AwareDateTime(allow_none=True)
    modified_date = ma.fields.AwareDateTime(required=True)
    events = ma.fields.List(ma.fields.Nested(DeliveryEventSchema), required=True)
