"""The ``sendgrid`` mail backend: one v3 ``mail/send`` request per message; and the check
that an event webhook post comes from SendGrid (``check_event_signature``).

The only module that imports the ``sendgrid`` library.  Each message becomes one
personalization carrying its opaque ids in ``custom_args`` (SendGrid's events bring
them back, which is how an ``uncertain`` delivery is settled); click, open and
subscription tracking are off.  What an answer means for the sending rule:

==========================================  =============  ====================================
outcome                                     result         why
==========================================  =============  ====================================
202                                         ok             ``X-Message-Id`` recorded
429, 503                                    retryable      refused before accepting;
                                                           ``retry_after`` from ``Retry-After``
                                                           or ``X-RateLimit-Reset``
no connection (refused, DNS, TLS, a         retryable      the request never reached SendGrid
timeout or reset while writing it)
timeout or dropped connection after the     uncertain      SendGrid may have accepted it
request was written; 502, 504
500, any other 5xx, any other answer        uncertain      see ``_answer``
other 4xx (400, 401, 403, 413…)             failed         SendGrid's messages in the reason
==========================================  =============  ====================================
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import http.client
import json
import logging
import re
import time
from base64 import b64encode
from collections.abc import Mapping
from typing import Any
from urllib.error import URLError

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from campaign.mailings.backends import Message, SendResult, _address, _clean

#: Bounds on a wait the server asks for: a clock off by hours must not stall a mailing.
MIN_RETRY_AFTER, MAX_RETRY_AFTER = 1.0, 3600.0
_RETRYABLE = frozenset({429, 503})
_TRACKING_OFF = {
    "click_tracking": {"enable": False, "enable_text": False},
    "open_tracking": {"enable": False},
    "subscription_tracking": {"enable": False},
}


class SendGridBackend:
    """Sends through SendGrid's v3 Web API (``SENDGRID_API_HOST`` points it elsewhere in tests)."""

    name = "sendgrid"

    def __init__(self, api_key: str, host: str = "https://api.sendgrid.com", timeout: float = 30.0) -> None:
        self.host = host.rstrip("/")
        self._api = SendGridAPIClient(api_key=api_key, host=self.host)
        # The library waits forever by default; a worker holds a lease while it waits.
        self._api.client.timeout = timeout
        # At DEBUG the HTTP client logs every request's headers, the API key among them.
        logging.getLogger("python_http_client.client").setLevel(logging.INFO)

    def send(self, message: Message) -> SendResult:
        """Hand ``message`` to SendGrid.  Raises ``HeaderInjectionError`` (nothing sent) for a
        line break in anything that reaches a header, like every backend."""
        body = request_body(message)
        if not body.get("content"):
            return SendResult(ok=False, error="the message has neither a text nor an HTML body")
        try:
            response = self._api.client.mail.send.post(request_body=body)
        except HTTPError as exc:
            return _answer(exc.status_code, exc.headers, exc.body)
        except URLError as exc:
            # urllib wraps in URLError only what fails while connecting or writing the request:
            # SendGrid cannot have received a whole request, so sending again is safe.
            return SendResult(ok=False, error=f"not sent: {_describe(exc.reason)}", retryable=True)
        except (OSError, http.client.HTTPException) as exc:
            # The request was written and the answer never came whole (timeout, connection
            # dropped, a status line cut off): SendGrid may have accepted it.
            return SendResult(ok=False, error=f"no answer after sending: {_describe(exc)}", uncertain=True)
        return _answer(response.status_code, response.headers, response.body)


def request_body(message: Message) -> dict[str, Any]:
    """The ``mail/send`` body for one message: one personalization, tracking off.

    Header values go through the same checks as ``build_mime`` (no CR or LF anywhere
    a header is made from).
    """
    personalization: dict[str, Any] = {"to": [_person(addr) for addr in message.to]}
    if message.custom_args:
        # On the personalization: the contract's top-level ``custom_args`` is mistyped.
        personalization["custom_args"] = {
            _clean(str(k), "a custom_args name"): _clean(str(v), "a custom_args value")
            for k, v in message.custom_args.items()
        }
    body: dict[str, Any] = {
        "personalizations": [personalization],
        "from": _person(message.sender),
        "subject": _clean(message.subject, "the subject"),
        "content": [
            {"type": kind, "value": value}
            for kind, value in (("text/plain", message.text), ("text/html", message.html))
            if value  # the contract refuses empty content; text/plain must come first
        ],
        "tracking_settings": _TRACKING_OFF,
    }
    if message.reply_to:
        body["reply_to"] = _person(message.reply_to)
    if message.headers:
        body["headers"] = {
            _clean(name, "a header name"): _clean(value, f"the {name} header")
            for name, value in message.headers.items()
        }
    if message.categories:
        body["categories"] = [_clean(c, "a category") for c in dict.fromkeys(message.categories)]
    if message.attachments:
        body["attachments"] = [
            {
                "content": _base64(a.content),
                "type": _clean(a.mimetype, "an attachment type"),
                "filename": _clean(a.filename, "an attachment name"),
                "disposition": "attachment",
            }
            for a in message.attachments
        ]
    return body


@functools.lru_cache(maxsize=8)
def _base64(content: bytes) -> str:
    """An attachment's base64, kept for the next messages: a mailing attaches the same few PDFs
    to every message (bytes keep their hash, so a hit costs no pass over the PDF)."""
    return b64encode(content).decode("ascii")


def _person(raw: str) -> dict[str, str]:
    address = _address(raw)
    person = {"email": address.addr_spec}
    if address.display_name:
        person["name"] = address.display_name
    return person


def _answer(status: int, headers: Any, body: bytes | None) -> SendResult:
    """What SendGrid's status means for the sending rule (see the module's table)."""
    if status == 202:
        message_id = headers.get("X-Message-Id") if headers is not None else None
        return SendResult(ok=True, message_id=message_id)
    reason = f"SendGrid answered {status}{_messages(body)}"
    if status in _RETRYABLE:
        return SendResult(ok=False, error=reason, retryable=True, retry_after=retry_after(headers))
    if 400 <= status < 500:
        return SendResult(ok=False, error=reason)
    # 502 and 504 come from a gateway that may have passed the request on.  SendGrid says a
    # 500 means it failed, yet nothing proves the message was not queued first: sending twice
    # would break the sending rule, while ``uncertain`` is shown to coordinators and settled
    # by SendGrid's events (a ``processed`` event carries the delivery id).  So every 5xx
    # but 503, and any answer other than 202 (a 200 is sandbox mode: validated, not sent), is
    # uncertain.
    return SendResult(ok=False, error=reason, uncertain=True)


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds or an HTTP date) or ``X-RateLimit-Reset``
    (epoch seconds), bounded; None when neither says."""
    if headers is None:
        return None
    now = time.time() if now is None else now
    wait: float | None = None
    raw = (headers.get("Retry-After") or "").strip()
    if raw:
        try:
            wait = float(raw)
        except ValueError:
            try:
                wait = email.utils.parsedate_to_datetime(raw).timestamp() - now
            except (TypeError, ValueError):
                wait = None
    if wait is None:
        try:
            wait = float(headers.get("X-RateLimit-Reset") or "") - now
        except ValueError:
            return None
    return min(max(wait, MIN_RETRY_AFTER), MAX_RETRY_AFTER)


def _messages(body: bytes | None) -> str:
    """SendGrid's error messages (``{"errors": [{"message", "field", "help"}]}``), if any."""
    try:
        errors = json.loads(body or b"")["errors"]
        parts = [f"{e['field']}: {e['message']}" if e.get("field") else str(e["message"]) for e in errors]
    except (ValueError, KeyError, TypeError):
        text = (body or b"").decode("utf-8", "replace").strip()
        return f": {text[:300]}" if text else ""
    return ": " + "; ".join(parts) if parts else ""


def _describe(exc: BaseException | str) -> str:
    return exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}".rstrip(": ")


def build(config: Mapping[str, Any]) -> SendGridBackend:
    return SendGridBackend(
        config["SENDGRID_API_KEY"], host=config["SENDGRID_API_HOST"], timeout=config["SENDGRID_TIMEOUT"]
    )


# --- the event webhook --------------------------------------------------------------------------


class SignatureRefused(ValueError):
    """A webhook post that cannot be shown to come from SendGrid, just now; the message says why."""


_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


def event_public_key(raw: str) -> ec.EllipticCurvePublicKey:
    """The webhook's verification key, from the base64 DER SendGrid shows (PEM armour accepted).

    Raises ``ValueError`` unless it is an ECDSA P-256 public key, the kind SendGrid signs with.
    """
    body = "".join(line for line in raw.strip().splitlines() if not line.startswith("-----"))
    try:
        key = load_der_public_key(base64.b64decode("".join(body.split()), validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm):
        raise ValueError("not a public key in base64 DER") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")
    return key


@functools.lru_cache(maxsize=4)
def _key(raw: str) -> ec.EllipticCurvePublicKey:
    return event_public_key(raw)


def check_event_signature(
    public_key: str | None,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    max_age: int,
    now: float | None = None,
) -> None:
    """Refuse (``SignatureRefused``) a post unless SendGrid signed it lately.

    SendGrid signs the timestamp header followed by the raw body (ECDSA P-256, SHA-256,
    DER, base64).  Its helper (``sendgrid.helpers.eventwebhook``) checks only that; a
    post captured once could be replayed forever, so the timestamp must also be within
    ``max_age`` seconds of now, either way.  Replays inside that window are harmless:
    events are stored once, by ``sg_event_id``.
    """
    if not public_key:
        raise SignatureRefused("SENDGRID_WEBHOOK_PUBLIC_KEY is not set: no post can be verified")
    if not signature or not timestamp:
        raise SignatureRefused("not signed")
    timestamp = timestamp.strip()
    if not _TIMESTAMP.match(timestamp):
        raise SignatureRefused("the timestamp is not a number of seconds")
    skew = (time.time() if now is None else now) - int(timestamp)
    if abs(skew) > max_age:
        raise SignatureRefused(f"the timestamp is {abs(skew):.0f} s {'old' if skew > 0 else 'ahead'}")
    try:
        decoded = base64.b64decode(signature.strip(), validate=True)
        _key(public_key).verify(decoded, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, InvalidSignature, ValueError):
        raise SignatureRefused("the signature does not match") from None
