"""JSON endpoints for subscribers: ``/api/v1/subscribers`` (coordinators).

Read and delete only: subscribing needs the double opt-in of the public pages, so the
API cannot add anyone.  Field names follow the Open Supporter Data Interface where one
fits (``languages_spoken``, ``created_date``, ``modified_date``); a subscriber has one
``name`` (OSDI's given and family names do not apply) and one ``language``.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import abort
from flask_smorest import Blueprint
from sqlalchemy.orm import selectinload

from campaign import audit
from campaign.alerts import subscribers
from campaign.alerts.models import Subscriber
from campaign.extensions import db
from campaign.letters.models import UN_LANGUAGES
from campaign.restapi import PREFIX, PageArgs, api_roles, documents, page_of, paginate

blp = Blueprint("subscribers_api", __name__, url_prefix=PREFIX, description="Subscribers to alerts")

STAFF = ("coordinator", "admin")
_line = ma.validate.Regexp(r"^[^\r\n\x00]*$", error="Must be a single line.")


class TopicSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    key = ma.fields.String(dump_only=True, metadata={"example": "country-sd"})
    kind = ma.fields.String(dump_only=True, metadata={"enum": ["letters", "meetings", "country", "situation"]})
    label = ma.fields.String(dump_only=True)
    country = ma.fields.String(dump_only=True, allow_none=True)
    active = ma.fields.Boolean(dump_only=True)


class ConsentSchema(ma.Schema):
    text = ma.fields.String(attribute="consent_text", dump_only=True, metadata={"description": "As shown"})
    version = ma.fields.String(attribute="consent_version", dump_only=True)
    given_date = ma.fields.AwareDateTime(attribute="consented_at", dump_only=True, allow_none=True)


class SubscriberSchema(ma.Schema):
    """A subscriber to alerts."""

    id = ma.fields.Integer(dump_only=True)
    email = ma.fields.String(dump_only=True, metadata={"description": "Normalised: trimmed, lower case; unique"})
    name = ma.fields.String(dump_only=True)
    language = ma.fields.String(dump_only=True, metadata={"enum": list(UN_LANGUAGES)})
    languages_spoken = ma.fields.Function(
        lambda s: [s.language], dump_only=True, metadata={"type": "array", "items": {"type": "string"}}
    )
    status = ma.fields.String(dump_only=True, metadata={"enum": ["pending", "confirmed", "unsubscribed"]})
    receives_alerts = ma.fields.Boolean(
        dump_only=True, metadata={"description": "Confirmed and not suppressed: alerts go to this address"}
    )
    topics = ma.fields.List(ma.fields.Nested(TopicSchema), dump_only=True)
    consent = ma.fields.Function(lambda s: ConsentSchema().dump(s), dump_only=True, metadata={"type": "object"})
    confirmed_date = ma.fields.AwareDateTime(attribute="confirmed_at", dump_only=True, allow_none=True)
    unsubscribed_date = ma.fields.AwareDateTime(attribute="unsubscribed_at", dump_only=True, allow_none=True)
    unsubscribed_via = ma.fields.String(dump_only=True)
    suppressed_date = ma.fields.AwareDateTime(attribute="suppressed_at", dump_only=True, allow_none=True)
    suppressed_reason = ma.fields.String(dump_only=True)
    created_date = ma.fields.AwareDateTime(attribute="created_at", dump_only=True)
    modified_date = ma.fields.AwareDateTime(attribute="updated_at", dump_only=True)


class SubscriberFilterArgs(PageArgs):
    q = ma.fields.String(
        validate=[ma.validate.Length(max=200), _line], metadata={"description": "Words found in the email or name"}
    )
    status = ma.fields.String(
        validate=ma.validate.OneOf(list(subscribers.FILTER_STATES)),
        metadata={"description": "A state, or `suppressed` (any state, suppressed)"},
    )
    topic = ma.fields.String(
        validate=[ma.validate.Length(max=80), _line], metadata={"description": "A topic's key or id"}
    )
    language = ma.fields.String(validate=ma.validate.OneOf(list(UN_LANGUAGES)))


def _subscriber_or_404(id: int) -> Subscriber:
    return subscribers.get_subscriber(id) or abort(404)


@blp.route("/subscribers")
@documents(blp, 422)
@api_roles(*STAFF)
@blp.arguments(SubscriberFilterArgs, location="query")
@blp.response(200, page_of(SubscriberSchema))
def list_subscribers(args: dict[str, Any]) -> Any:
    """Subscribers, newest first; filter by words, state, topic (key or id) and language.
    An unknown topic matches nobody."""
    topic_id: int | None = None
    if args.get("topic"):
        topic_id = subscribers.topic_id_for(args["topic"])
        if topic_id is None:
            topic_id = -1
    criteria = subscribers.SubscriberFilter(
        q=args.get("q", ""), status=args.get("status", ""), topic=topic_id, language=args.get("language", "")
    )
    return paginate(subscribers.filter_query(criteria).options(selectinload(Subscriber.topics)), args)


@blp.route("/subscribers/<id:id>")
@documents(blp, 404)
@api_roles(*STAFF)
@blp.response(200, SubscriberSchema)
def get_subscriber(id: int) -> Any:
    return _subscriber_or_404(id)


@blp.route("/subscribers/<id:id>", methods=["DELETE"])
@documents(blp, 404)
@api_roles(*STAFF)
@blp.response(204)
def delete_subscriber(id: int) -> Any:
    """Delete a subscriber and their data (their alert deliveries stay, without the address)."""
    found = _subscriber_or_404(id)
    audit.record("subscribers.delete", found, f"Deleted subscriber {found.id} and their data (API)")
    subscribers.delete(found)
    db.session.commit()
    return ""
