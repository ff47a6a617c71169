"""Signed links in subscribers' emails: confirm a subscription, manage preferences, unsubscribe.

A token names the subscriber and carries their ``token_key``; deleting the subscriber or
replacing the key revokes every link sent so far.  Each purpose has its own salt, so a
confirmation link cannot be used to unsubscribe and the other way round, and its own life:
an unsubscribe link in an old alert keeps working for months (RFC 8058 mail clients may
post to it long after the alert arrived).
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from campaign.alerts.models import Subscriber
from campaign.extensions import db

#: How long each kind of link works.
LIFETIMES = {
    "confirm": timedelta(days=7),
    "preferences": timedelta(days=400),
    "unsubscribe": timedelta(days=540),
}
#: The path each kind of link opens (``SITE_URL`` + path + token).
PATHS = {
    "confirm": "/subscribe/confirm/",
    "preferences": "/subscribe/preferences/",
    "unsubscribe": "/unsubscribe/",
}


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    if purpose not in LIFETIMES:
        raise ValueError(f"unknown purpose {purpose!r}")
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"subscriber-{purpose}")


def make_token(subscriber: Subscriber, purpose: str) -> str:
    return _serializer(purpose).dumps([subscriber.id, subscriber.token_key])


def url(subscriber: Subscriber, purpose: str) -> str:
    """The absolute link of ``purpose`` for ``subscriber``, built on ``SITE_URL``."""
    return current_app.config["SITE_URL"] + PATHS[purpose] + make_token(subscriber, purpose)


def unsubscribe_url(subscriber: Subscriber) -> str:
    return url(subscriber, "unsubscribe")


def preferences_url(subscriber: Subscriber) -> str:
    return url(subscriber, "preferences")


def confirm_url(subscriber: Subscriber) -> str:
    return url(subscriber, "confirm")


def load_subscriber(token: str, purpose: str) -> Subscriber | None:
    """The subscriber a valid, unexpired ``purpose`` token names; None for anything else
    (forged, expired, another purpose, a deleted subscriber, a revoked key)."""
    if not token or len(token) > 500:
        return None
    try:
        data = _serializer(purpose).loads(token, max_age=int(LIFETIMES[purpose].total_seconds()))
    except BadSignature:  # SignatureExpired is a BadSignature
        return None
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], int) and isinstance(data[1], str)):
        return None
    subscriber = db.session.get(Subscriber, data[0])
    if subscriber is None or not hmac.compare_digest(subscriber.token_key.encode(), data[1].encode()):
        return None
    return subscriber
