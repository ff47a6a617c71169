"""The JSON shapes of ``/api/v1/alerts`` (``campaign.alerts.api``): what is read and written."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import marshmallow as ma

from campaign.alerts.models import AlertKind, AlertStatus
from campaign.alerts.services import MAX_BODY, MAX_SUBJECT
from campaign.letters.models import UN_LANGUAGES
from campaign.mailings.models import DeliveryStatus
from campaign.restapi import PageArgs

_line = ma.validate.Regexp(r"^[^\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]*$", error="Must be a single line.")
_language = ma.validate.OneOf(list(UN_LANGUAGES))


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise ma.ValidationError("Must not contain a NUL character.")


def _sane_time(value: datetime) -> None:
    if not 1900 <= value.year <= 2999:
        raise ma.ValidationError("Out of range.")


class AlertTextSchema(ma.Schema):
    language = ma.fields.String(required=True, validate=_language)
    subject = ma.fields.String(required=True, validate=[ma.validate.Length(1, MAX_SUBJECT), _line])
    body = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(1, MAX_BODY), _no_nul],
        metadata={"description": "Markdown; the greeting, the subscriber's links and the coalition's address "
                                 "are added around it"},
    )  # fmt: skip


class AlertCreateSchema(ma.Schema):
    language = ma.fields.String(required=True, validate=_language, metadata={"description": "Of the original"})
    subject = ma.fields.String(required=True, validate=[ma.validate.Length(1, MAX_SUBJECT), _line])
    body = ma.fields.String(required=True, validate=[ma.validate.Length(1, MAX_BODY), _no_nul],
                            metadata={"description": "Markdown"})  # fmt: skip
    translations = ma.fields.List(
        ma.fields.Nested(AlertTextSchema), load_default=list, validate=ma.validate.Length(max=len(UN_LANGUAGES) - 1)
    )
    topics = ma.fields.List(
        ma.fields.String(validate=[ma.validate.Length(1, 80), _line]),
        required=True,
        validate=ma.validate.Length(1, 200),
        metadata={"description": "Keys of topics (`letters`, `meetings`, `country-sd`…): subscribers following "
                                 "any of them receive the alert"},
    )  # fmt: skip
    languages = ma.fields.List(
        ma.fields.String(validate=_language), load_default=list, validate=ma.validate.Length(max=len(UN_LANGUAGES)),
        metadata={"description": "Subscribers' languages to send to; empty: those the alert has a text in"},
    )  # fmt: skip
    send = ma.fields.Boolean(load_default=False, metadata={"description": "Send it now"})
    send_at = ma.fields.AwareDateTime(validate=_sane_time, metadata={"description": "Send it then (with its offset)"})

    @ma.validates_schema
    def _one_way(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("send") and "send_at" in data:
            raise ma.ValidationError("Give either send or send_at, not both.", "send_at")


class AlertFilterArgs(PageArgs):
    status = ma.fields.String(validate=ma.validate.OneOf([s.value for s in AlertStatus]))
    kind = ma.fields.String(validate=ma.validate.OneOf([k.value for k in AlertKind]))


class AlertSendSchema(ma.Schema):
    """Nothing (send now) or ``at``."""

    at = ma.fields.AwareDateTime(validate=_sane_time, metadata={"description": "When to send, with its offset"})


DeliveryCountsSchema = type(
    "AlertDeliveryCountsSchema", (ma.Schema,), {s.value: ma.fields.Integer(required=True) for s in DeliveryStatus}
)


class AlertProgressSchema(ma.Schema):
    counts = ma.fields.Nested(DeliveryCountsSchema, required=True, metadata={"description": "Deliveries per state"})
    total = ma.fields.Integer(required=True)
    done = ma.fields.Integer(required=True, metadata={"description": "Deliveries neither pending nor sending"})
    percent = ma.fields.Integer(required=True)


class AlertSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True, metadata={"enum": [k.value for k in AlertKind]})
    status = ma.fields.String(required=True, metadata={"enum": [s.value for s in AlertStatus]})
    language = ma.fields.String(required=True, metadata={"description": "Of the original"})
    texts = ma.fields.List(ma.fields.Nested(AlertTextSchema), required=True, metadata={"description": "The original "
                           "first, then its translations"})  # fmt: skip
    topics = ma.fields.List(ma.fields.String(), required=True, metadata={"description": "Keys of its topics"})
    languages = ma.fields.List(ma.fields.String(), required=True)
    letter = ma.fields.String(allow_none=True, metadata={"description": "Slug of the letter it is about"})
    created_by = ma.fields.String(allow_none=True, metadata={"description": "Email of the author; null when automatic"})
    send_requested_date = ma.fields.AwareDateTime(allow_none=True)
    due_date = ma.fields.AwareDateTime(allow_none=True)
    started_date = ma.fields.AwareDateTime(allow_none=True)
    finished_date = ma.fields.AwareDateTime(allow_none=True)
    cancelled_date = ma.fields.AwareDateTime(allow_none=True)
    progress = ma.fields.Nested(AlertProgressSchema, required=True)
    created_date = ma.fields.AwareDateTime(required=True)
    modified_date = ma.fields.AwareDateTime(required=True)
