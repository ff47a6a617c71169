"""SendGrid's side of delivery tracking, for tests: a signing key, events shaped like SendGrid's,
signed posts to the webhook, and a mail backend that answers as SendGrid would, offline."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient

from campaign.mailings.backends import Message, SendResult
from campaign.mailings.models import Delivery
from campaign.mailings.webhooks import SIGNATURE, TIMESTAMP

URL = "/webhooks/sendgrid"


class SigningKey:
    """An ECDSA P-256 key pair, as SendGrid holds one for each account's event webhook."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())

    @property
    def public(self) -> str:
        """The verification key as SendGrid's settings page shows it: base64 DER."""
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")

    def sign(self, body: bytes, timestamp: str) -> str:
        """SendGrid's signature: over the timestamp header followed by the raw body."""
        signature = self.private.sign(timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode("ascii")

    def headers(self, body: bytes, timestamp: int | str | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        return {SIGNATURE: self.sign(body, stamp), TIMESTAMP: stamp, "Content-Type": "application/json"}


def event(delivery: Delivery, kind: str, /, *, custom_args: bool = True, **fields: Any) -> dict[str, Any]:
    """An event for ``delivery`` as SendGrid posts it (its custom args at the top level)."""
    message_id = delivery.message_id or secrets.token_urlsafe(16)
    body: dict[str, Any] = {
        "email": delivery.email,
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": secrets.token_urlsafe(16),
        "sg_message_id": f"{message_id}.filterdrecv-5bf99c48d-rncgb-1-5B8FEC4E-2.0",
        "smtp-id": f"<{message_id}@ismtpd0001p1lon1.sendgrid.net>",
        "category": ["mailing", f"mailing-{delivery.mailing_id}"],
    }
    if custom_args:
        body |= {"delivery": str(delivery.id), "mailing": str(delivery.mailing_id)}
    return body | fields


def post(client: FlaskClient, key: SigningKey, events: Any, timestamp: int | str | None = None) -> Any:
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    return client.post(URL, data=body, headers=key.headers(body, timestamp))


@dataclass
class FakeSendGrid:
    """A mail backend answering as SendGrid's API does, without a network: 202 with an
    ``X-Message-Id``; the answer is lost (``uncertain``) for the addresses in ``lose``.
    ``during_send`` runs while a message is with the provider, before its answer is recorded."""

    name: str = "sendgrid"
    lose: set[str] = field(default_factory=set)
    during_send: Callable[[Message, str], None] | None = None
    sent: list[tuple[str, str]] = field(default_factory=list)

    def send(self, message: Message) -> SendResult:
        message_id = secrets.token_urlsafe(16)
        self.sent.append((message.to[0], message_id))
        if self.during_send is not None:
            self.during_send(message, message_id)
        if message.to[0] in self.lose:
            return SendResult(ok=False, error="no answer after sending: TimeoutError", uncertain=True)
        return SendResult(ok=True, message_id=message_id)
