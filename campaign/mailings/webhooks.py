"""``POST /webhooks/sendgrid``: SendGrid's event webhook.

No session and no CSRF token: a post is taken only when SendGrid signed it (ECDSA over
the timestamp header and the raw body, verified with ``SENDGRID_WEBHOOK_PUBLIC_KEY``)
less than ``SENDGRID_WEBHOOK_MAX_AGE`` seconds ago (or ahead); anything else is a 401
with nothing stored.  Events are stored once each and applied by
``campaign.mailings.tracking``; a signed post always gets a 200 once stored, events
naming no delivery included, so SendGrid does not retry it for a day.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from campaign.extensions import db
from campaign.mailings import tracking
from campaign.mailings.sendgrid import SignatureRefused, check_event_signature
from campaign.restapi import problem

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger(__name__)

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
#: 401 rather than 403: what is missing is the proof of who sent the post, and HTTP asks for a challenge.
_CHALLENGE = {"WWW-Authenticate": 'Signature realm="sendgrid-event-webhook"'}


@bp.route("/sendgrid", methods=["POST"])
def sendgrid_events() -> Response:
    config = current_app.config
    request.max_content_length = config["SENDGRID_WEBHOOK_MAX_BYTES"]
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        return problem(413, f"A post has at most {config['SENDGRID_WEBHOOK_MAX_BYTES']} bytes.")
    try:
        check_event_signature(
            config["SENDGRID_WEBHOOK_PUBLIC_KEY"],
            body,
            request.headers.get(SIGNATURE),
            request.headers.get(TIMESTAMP),
            max_age=config["SENDGRID_WEBHOOK_MAX_AGE"],
        )
    except SignatureRefused as exc:
        log.warning("SendGrid webhook: refused a post from %s: %s", request.remote_addr, exc)
        return problem(401, "Not signed by SendGrid with the configured key, or not lately.", headers=_CHALLENGE)
    try:
        events = json.loads(body)
    except (ValueError, RecursionError):
        return problem(400, "The body is not JSON.")
    if not isinstance(events, list):
        return problem(400, "The body is not a list of events.")
    received = tracking.receive(events)
    db.session.commit()
    try:
        tracking.apply_waiting()
    except Exception:  # the post is stored; the worker's maintenance loop tries again
        db.session.rollback()
        log.exception("SendGrid webhook: applying waiting events failed")
    log.info("SendGrid webhook: %s", received.as_dict())
    return jsonify(received.as_dict())
