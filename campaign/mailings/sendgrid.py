"""The ``sendgrid`` mail backend: one v3 ``mail/send`` request per message, or per batch of up
to ``MAX_BATCH`` recipients; and the check that an event webhook post comes from SendGrid
(``check_event_signature``).

The only module that imports the ``sendgrid`` library: ``SendGridAPIClient`` builds the URL and
the headers (the API key among them) and turns refusals into its ``HTTPError`` classes; the
request itself travels over a kept-alive connection (``campaign.mailings.keepalive``), one per
thread and process, instead of the library's new connection per request.  Each recipient is one
personalization carrying its opaque ids in ``custom_args`` (SendGrid's events bring them back,
which is how an ``uncertain`` delivery is settled); click, open and subscription tracking are
off.  What an answer means for the sending rule (for a batch, for every recipient in it):

==========================================  =============  ====================================
outcome                                     result         why
==========================================  =============  ====================================
202                                         ok             ``X-Message-Id`` recorded
429, 503                                    retryable      refused before accepting;
                                                           ``retry_after`` from ``Retry-After``
                                                           or ``X-RateLimit-Reset``
no connection (refused, DNS, TLS, a         retryable      the request never reached SendGrid
timeout while connecting)
failure while writing the request on a      retryable      an incomplete request is never
new connection                                             accepted
failure while writing on a reused           sent again     the server had closed the idle
connection (broken pipe, reset)             at once, on a  connection; nothing was accepted
                                            new connection
timeout or dropped connection after the     uncertain      SendGrid may have accepted it; on a
request was written, on a new or a reused                  reused connection too (the server
connection; 502, 504                                       may have read it before closing)
500, any other 5xx, any other answer        uncertain      see ``_answer``
400 for a batch of several recipients       split          sent again in halves (a 400 accepts
                                                           nothing) until the refused address
                                                           stands alone, unless SendGrid names
                                                           only batch-wide fields
other 4xx (400, 401, 403, 413…)             failed         SendGrid's messages in the reason
==========================================  =============  ====================================

A reused connection is the one place where sending twice could creep in: a server that closes
an idle connection just as a request is written on it leaves the request unanswered, and that
request must be ``uncertain``.  To keep that rare, a connection idle for more than
``KeptAliveOpener.IDLE_SECONDS``, or one the server has closed or written on while it was idle
(it polls readable), is replaced by a new one before the request is written.
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
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from python_http_client.client import Response
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from campaign.mailings.backends import (
    _BARE_ADDRESS,
    Batch,
    Message,
    PreparedBatch,
    SendResult,
    _address,
    _clean,
    check_batch,
)
from campaign.mailings.keepalive import Exchange, KeptAliveOpener, NotSent

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
        # Built once: the library's ``post()`` would build the same client chain and a urllib
        # opener (0.2 ms) for every request.
        self._endpoint = self._api.client.mail.send
        self._url = self._endpoint._build_url(None)
        self._headers = {**self._endpoint.request_headers, "Content-Type": "application/json"}
        self._opener = KeptAliveOpener()

    def send(self, message: Message) -> SendResult:
        """Hand ``message`` to SendGrid.  Raises ``HeaderInjectionError`` (nothing sent) for a
        line break in anything that reaches a header, like every backend."""
        return self.start(message)()

    def start(self, message: Message) -> Callable[[], SendResult]:
        """``send`` in two steps: the request is built and written now (raising as ``send``
        does, nothing sent); calling the result reads SendGrid's answer, in this thread.  In
        between, the caller can build the next message while SendGrid reads this one."""
        body = request_body(message)
        if not body.get("content"):
            refused = SendResult(ok=False, error="the message has neither a text nor an HTML body")
            return lambda: refused
        written = self._write(body)
        return lambda: self._read(written).result

    def send_batch(self, batch: Batch) -> list[SendResult]:
        """Hand ``batch`` to SendGrid in one request, one personalization per recipient; one
        result per recipient, in order.  Raises ``ValueError`` (nothing sent) for more than
        ``MAX_BATCH`` recipients, an address given twice, or a line break in anything that
        reaches a header.  A 400 is split to find the refused addresses (see the module's table)."""
        return self.prepare_batch(batch)()

    def prepare_batch(self, batch: Batch) -> PreparedBatch:
        """The batch's body, checked and encoded now; posted (and split on a 400) when called."""
        body = batch_body(batch)
        if not batch.recipients:
            return list
        if not body.get("content"):
            refused = [SendResult(ok=False, error="the batch has neither a text nor an HTML body")]
            return (refused * len(batch.recipients)).copy
        return functools.partial(self._post_split, body, _encode(body))

    def close(self) -> None:
        """Close this thread's connection to SendGrid, if it has one."""
        self._opener.close()

    def _post_split(self, body: dict[str, Any], data: bytes | None = None) -> list[SendResult]:
        personalizations = body["personalizations"]
        answer = self._post(body, data)
        if answer.status != 400 or len(personalizations) < 2 or answer.batch_wide:
            return [answer.result] * len(personalizations)
        half = len(personalizations) // 2
        first = self._post_split({**body, "personalizations": personalizations[:half]})
        if all(result.retryable for result in first):
            # Refused before accepting (429, 503, no connection): the other half waits as well.
            return first + [first[-1]] * (len(personalizations) - half)
        return first + self._post_split({**body, "personalizations": personalizations[half:]})

    def _post(self, body: dict[str, Any], data: bytes | None = None) -> _Answer:
        """Post ``body`` (``data`` is its encoding, when already made)."""
        return self._read(self._write(body, data))

    def _write(self, body: dict[str, Any], data: bytes | None = None) -> _Written | _Answer:
        """Write the request for ``body``; an ``_Answer`` at once when it could not be written."""
        data = _encode(body) if data is None else data
        request = urllib.request.Request(self._url, data=data, headers=self._headers, method="POST")  # noqa: S310 - an http(s) URL, checked by the configuration
        try:
            return _Written(request, self._opener.write(request, timeout=self._endpoint.timeout))
        except NotSent as exc:
            return _Answer(SendResult(ok=False, error=f"not sent: {exc}", retryable=True))

    def _read(self, written: _Written | _Answer) -> _Answer:
        """SendGrid's answer to a written request, as the sending rule reads it."""
        if isinstance(written, _Answer):
            return written
        try:
            # The library's own step (it turns a refusal into its HTTPError classes), reading
            # the answer of the request already written.
            response = Response(
                self._endpoint._make_request(written.exchange, written.request, timeout=self._endpoint.timeout)
            )
        except HTTPError as exc:
            return _Answer(_answer(exc.status_code, exc.headers, exc.body), exc.status_code, _batch_wide(exc.body))
        except (OSError, http.client.HTTPException) as exc:
            # The request was written and the answer never came whole (timeout, connection
            # dropped, a status line cut off): SendGrid may have accepted it.
            return _Answer(SendResult(ok=False, error=f"no answer after sending: {_describe(exc)}", uncertain=True))
        return _Answer(_answer(response.status_code, response.headers, response.body), response.status_code)


@dataclass(frozen=True)
class _Written:
    request: urllib.request.Request
    exchange: Exchange


@dataclass(frozen=True)
class _Answer:
    result: SendResult
    status: int | None = None
    #: A refusal naming only fields outside ``personalizations``: a smaller batch fares no better.
    batch_wide: bool = False


# --- request bodies -------------------------------------------------------------------------


def request_body(message: Message) -> dict[str, Any]:
    """The ``mail/send`` body for one message: one personalization, tracking off.

    Header values go through the same checks as ``build_mime`` (no CR or LF anywhere
    a header is made from).
    """
    body = _common(message.subject, message.text, message.html, message.sender, message.reply_to,
                   message.headers, message.categories)  # fmt: skip
    body["personalizations"] = [_personalization(message.to, message.custom_args)]
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


def batch_body(batch: Batch) -> dict[str, Any]:
    """The ``mail/send`` body for a batch: the shared parts at the top level, and for each
    recipient a personalization with its address, substitutions, ``custom_args`` and headers.

    Raises what ``check_batch`` raises, and ``HeaderInjectionError`` for a line break in anything
    else that reaches a header.
    """
    check_batch(batch)
    body = _common(batch.subject, batch.text, batch.html, batch.sender, batch.reply_to, batch.headers,
                   batch.categories)  # fmt: skip
    personalizations = []
    for recipient in batch.recipients:
        # ``check_batch`` has checked the headers and custom_args for line breaks.
        personalization: dict[str, Any] = {"to": [_person(recipient.address)]}
        if recipient.custom_args:
            personalization["custom_args"] = {str(k): str(v) for k, v in recipient.custom_args.items()}
        if recipient.headers:
            personalization["headers"] = dict(recipient.headers)
        if recipient.substitutions:
            personalization["substitutions"] = {str(tag): str(value) for tag, value in recipient.substitutions.items()}
        personalizations.append(personalization)
    body["personalizations"] = personalizations
    return body


def _common(
    subject: str,
    text: str,
    html: str | None,
    sender: str,
    reply_to: str | None,
    headers: Mapping[str, str],
    categories: Sequence[str],
) -> dict[str, Any]:
    """The top level of a body: sender, subject, content, tracking off, headers and categories."""
    body: dict[str, Any] = {
        "from": _person(sender),
        "subject": _clean(subject, "the subject"),
        "content": [
            {"type": kind, "value": value}
            for kind, value in (("text/plain", text), ("text/html", html))
            if value  # the contract refuses empty content; text/plain must come first
        ],
        "tracking_settings": _TRACKING_OFF,
    }
    if reply_to:
        body["reply_to"] = _person(reply_to)
    if headers:
        body["headers"] = _headers(headers)
    if categories:
        body["categories"] = [_clean(c, "a category") for c in dict.fromkeys(categories)]
    return body


def _personalization(
    to: Sequence[str], custom_args: Mapping[str, str], headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    personalization: dict[str, Any] = {"to": [_person(address) for address in to]}
    if custom_args:
        # On the personalization: the contract's top-level ``custom_args`` is mistyped.
        personalization["custom_args"] = {
            _clean(str(k), "a custom_args name"): _clean(str(v), "a custom_args value") for k, v in custom_args.items()
        }
    if headers:
        personalization["headers"] = _headers(headers)
    return personalization


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {_clean(name, "a header name"): _clean(value, f"the {name} header") for name, value in headers.items()}


def _encode(body: dict[str, Any]) -> bytes:
    """``body`` as JSON.  The attachments' JSON is kept for the next messages, like their base64:
    encoding a PDF again for each message cost more than the rest of the body."""
    attachments = body.get("attachments")
    if not attachments:
        return json.dumps(body).encode()
    rest = json.dumps({name: value for name, value in body.items() if name != "attachments"}).encode()
    encoded = _attachments_json(tuple(tuple(attachment.items()) for attachment in attachments))
    return b"".join((rest[:-1], b', "attachments": ', encoded, b"}"))


@functools.lru_cache(maxsize=8)
def _attachments_json(attachments: tuple[tuple[tuple[str, str], ...], ...]) -> bytes:
    return json.dumps([dict(attachment) for attachment in attachments]).encode()


@functools.lru_cache(maxsize=8)
def _base64(content: bytes) -> str:
    """An attachment's base64, kept for the next messages: a mailing attaches the same few PDFs
    to every message (bytes keep their hash, so a hit costs no pass over the PDF)."""
    return b64encode(content).decode("ascii")


def _person(raw: str) -> dict[str, str]:
    if _BARE_ADDRESS.fullmatch(raw):  # most recipients: no parse needed (and no line break)
        return {"email": raw}
    return dict(_parsed_person(raw))


@functools.lru_cache(maxsize=64)
def _parsed_person(raw: str) -> tuple[tuple[str, str], ...]:
    """Parsing an address costs more than the rest of a body: the sender and the reply-to
    address, the same in every message of a mailing, are parsed once."""
    address = _address(raw)
    person = [("email", address.addr_spec)]
    if address.display_name:
        person.append(("name", address.display_name))
    return tuple(person)


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


def _batch_wide(body: bytes | None) -> bool:
    """Whether SendGrid's refusal names fields, none of them in ``personalizations``."""
    try:
        fields = [error.get("field") for error in json.loads(body or b"")["errors"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return bool(fields) and all(isinstance(f, str) and f and not f.startswith("personalizations") for f in fields)


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
