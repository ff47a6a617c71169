"""Signed links in subscribers' emails: confirm a subscription, manage preferences, unsubscribe.

A token names the subscriber and carries their ``token_key``; deleting the subscriber or
replacing the key revokes every link sent so far.  Each purpose has its own salt, so a
confirmation link cannot be used to unsubscribe and the other way round, and its own life:
an unsubscribe link in an old alert keeps working for months (RFC 8058 mail clients may
post to it long after the alert arrived).
"""

from __future__ import annotations

import hmac
import json
from datetime import timedelta

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes, want_bytes

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


class LinkSigner:
    """Signs the links of one purpose for many subscribers at once (a chunk of an alert signs two
    for each of its thousand recipients): the tokens ``make_token`` makes in the same second, with
    the key derived and the time stamp encoded once rather than for every link.

    The payload ``[id, token_key]`` is short and random, so ``URLSafeTimedSerializer`` would not
    compress it either: ``load_subscriber`` reads these tokens as it reads any other.
    """

    def __init__(self, purpose: str) -> None:
        signer = _serializer(purpose).make_signer()
        self._mac = hmac.new(signer.derive_key(), digestmod=signer.algorithm.digest_method)
        self._sep = want_bytes(signer.sep)
        self._stamp = self._sep + base64_encode(int_to_bytes(signer.get_timestamp()))
        self._prefix = current_app.config["SITE_URL"] + PATHS[purpose]

    def token(self, subscriber_id: int, token_key: str) -> str:
        value = base64_encode(json.dumps([subscriber_id, token_key], separators=(",", ":")).encode()) + self._stamp
        mac = self._mac.copy()
        mac.update(value)
        return (value + self._sep + base64_encode(mac.digest())).decode("ascii")

    def url(self, subscriber_id: int, token_key: str) -> str:
        return self._prefix + self.token(subscriber_id, token_key)


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
