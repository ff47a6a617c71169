"""Mail backends behind one small interface: ``send(message) -> SendResult``.

``outbox`` writes each message as an ``.eml`` file under ``instance/outbox/``;
``smtp`` hands it to an SMTP server; ``sendgrid`` (``campaign/mailings/sendgrid.py``) posts it
to SendGrid's v3 Web API.
The outbox and SMTP backends build the same RFC 5322 message with ``build_mime``, which
refuses CR or LF in anything that reaches a header and encodes non-ASCII names; the
SendGrid backend applies the same checks to the JSON it sends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import smtplib
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Protocol

from campaign.db import utcnow


class HeaderInjectionError(ValueError):
    """A header value carried a line break."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mimetype: str = "application/octet-stream"


@dataclass(frozen=True)
class Message:
    to: list[str]
    subject: str
    text: str
    html: str | None = None
    sender: str = ""
    reply_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    #: For providers that report events: labels, and opaque ids carried back with each event.
    categories: tuple[str, ...] = ()
    custom_args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    """What a backend reports: a message id, or an error and whether to retry.

    ``retryable``: nothing was handed over, trying again is safe (after ``retry_after``
    seconds when the server said).  ``uncertain``: the message may have been accepted
    (the connection dropped after it was sent), so it must not be sent again automatically.
    """

    ok: bool
    message_id: str | None = None
    error: str | None = None
    retryable: bool = False
    uncertain: bool = False
    retry_after: float | None = None


@dataclass(frozen=True)
class BatchRecipient:
    """One recipient of a ``Batch``: its address, the values of the batch's substitution tags
    for it, the opaque ids its provider events carry back, and headers of its own
    (``List-Unsubscribe``)."""

    address: str
    substitutions: Mapping[str, str] = field(default_factory=dict)
    custom_args: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """One message written to many recipients at once, each receiving their own copy in which
    every substitution tag (a key of ``BatchRecipient.substitutions``) found in the subject,
    text or HTML is replaced by the recipient's value, as given: the caller escapes what goes
    into the HTML part.  Addresses are distinct; at most ``MAX_BATCH`` recipients."""

    subject: str
    text: str
    html: str | None
    sender: str
    recipients: list[BatchRecipient]
    reply_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()


#: SendGrid's limit on personalizations (and recipients) per request.
MAX_BATCH = 1000


def substitute(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each tag of ``values`` replaced, in one pass (a value that happens to
    contain another tag is not substituted again)."""
    if not values or not template:
        return template
    pattern = re.compile("|".join(re.escape(tag) for tag in sorted(values, key=len, reverse=True)))
    return pattern.sub(lambda match: values[match.group(0)], template)


#: An address with nothing to parse: no display name, quoting, comment or second address.
_BARE_ADDRESS = re.compile(r"[^@\s<>()\[\]\\\",;:]+@[^@\s<>()\[\]\\\",;:]+")


def check_batch(batch: Batch) -> None:
    """Refuse a batch that no backend sends, before any of it is sent: ``ValueError`` for more
    than ``MAX_BATCH`` recipients or an address given twice (compared case-insensitively),
    ``HeaderInjectionError`` for a line break in a recipient's headers or ``custom_args``, or in a
    substitution for a tag of the subject or the reply-to address (the parts that become headers)."""
    if len(batch.recipients) > MAX_BATCH:
        raise ValueError(f"a batch has at most {MAX_BATCH} recipients, not {len(batch.recipients)}")
    in_headers = f"{batch.subject}\n{batch.reply_to or ''}"
    seen: set[str] = set()
    for recipient in batch.recipients:
        raw = _clean(recipient.address, "an address")
        address = (raw if _BARE_ADDRESS.fullmatch(raw) else parseaddr(raw)[1]).casefold()
        if address in seen:
            raise ValueError(f"the address {recipient.address!r} is in the batch twice")
        seen.add(address)
        for name, value in recipient.headers.items():
            _clean(value, f"the {_clean(name, 'a header name')} header")
        for name, value in recipient.custom_args.items():
            _clean(str(value), f"the custom_args {_clean(str(name), 'a custom_args name')}")
        for tag, value in recipient.substitutions.items():
            if tag in in_headers:
                _clean(value, f"the substitution for {tag}")


def message_for(batch: Batch, recipient: BatchRecipient) -> Message:
    """The single message ``recipient`` receives from ``batch``."""
    values = recipient.substitutions
    return Message(
        to=[recipient.address],
        subject=substitute(batch.subject, values),
        text=substitute(batch.text, values),
        html=substitute(batch.html, values) if batch.html is not None else None,
        sender=batch.sender,
        reply_to=batch.reply_to,
        headers={**batch.headers, **recipient.headers},
        categories=batch.categories,
        custom_args=recipient.custom_args,
    )


#: A batch checked and built for one backend: calling it hands the batch over and returns one
#: result per recipient, in order (see ``MailBackend.prepare_batch``).
PreparedBatch = Callable[[], list[SendResult]]


class MailBackend(Protocol):
    name: str

    def send(self, message: Message) -> SendResult: ...

    def send_batch(self, batch: Batch) -> list[SendResult]:
        """One result per recipient, in order.  Backends without batch requests send each
        recipient's message on its own.  A batch ``check_batch`` refuses raises before anything
        is sent."""
        ...

    def prepare_batch(self, batch: Batch) -> PreparedBatch:
        """``send_batch`` in two steps: the checks and whatever needs no network now (raising as
        ``send_batch`` does, nothing sent), the handing over when the result is called.  A caller
        with requests in flight builds the next batch while the last one travels."""
        ...


#: CR and LF, and the other characters ``str.splitlines`` breaks on (VT, FF, NEL, U+2028…).
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def has_line_break(value: str) -> bool:
    return not _LINE_BREAKS.isdisjoint(value)


def _clean(value: str, what: str) -> str:
    if has_line_break(value):
        raise HeaderInjectionError(f"line break in {what}")
    return value


def _address(raw: str) -> Address:
    name, addr = parseaddr(_clean(raw, "an address"))
    if "@" not in addr:
        raise ValueError(f"not an email address: {raw!r}")
    local, _, domain = addr.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def build_mime(message: Message, domain: str = "demarche.invalid") -> EmailMessage:
    """The message as MIME, with a Message-ID and Date; header values are checked."""
    mime = EmailMessage(policy=policy.SMTP)
    mime["Subject"] = _clean(message.subject, "the subject")
    mime["From"] = _address(message.sender)
    mime["To"] = [_address(addr) for addr in message.to]
    if message.reply_to:
        mime["Reply-To"] = _address(message.reply_to)
    mime["Date"] = format_datetime(utcnow())
    mime["Message-ID"] = make_msgid(idstring=secrets.token_hex(8), domain=domain)
    for name, value in message.headers.items():
        mime[_clean(name, "a header name")] = _clean(value, f"the {name} header")
    mime.set_content(message.text)
    if message.html is not None:
        mime.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        maintype, _, subtype = attachment.mimetype.partition("/")
        mime.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype,
            filename=_clean(attachment.filename, "an attachment name"),
        )
    return mime


class OutboxBackend:
    """Writes every message to a folder; nothing leaves the machine."""

    name = "outbox"
    #: A UTC time stamp to the microsecond (so names sort in the order sent), then random hex.
    FILENAME = re.compile(r"\A[0-9]{8}T[0-9]{6}(?:[0-9]{6})?-[0-9a-f]{12}\.eml\Z")

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def send(self, message: Message) -> SendResult:
        mime = build_mime(message)
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
        path = self.directory / f"{stamp}-{secrets.token_hex(6)}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(mime.as_bytes())
        os.replace(tmp, path)
        return SendResult(ok=True, message_id=path.name)

    def send_batch(self, batch: Batch) -> list[SendResult]:
        """Each recipient's message in a file of its own; ``check_batch`` first."""
        return self.prepare_batch(batch)()

    def prepare_batch(self, batch: Batch) -> PreparedBatch:
        check_batch(batch)
        return lambda: [self.send(message_for(batch, recipient)) for recipient in batch.recipients]

    def path_for(self, name: str) -> Path | None:
        """The stored message called ``name``, or None for any other name."""
        if not self.FILENAME.match(name):
            return None
        path = self.directory / name
        return path if path.is_file() else None

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted((p.name for p in self.directory.iterdir() if self.FILENAME.match(p.name)), reverse=True)


class _Tracking:
    """An SMTP client that notes when a message itself starts to go (the DATA command), which
    process opened it, and how many messages it carried."""

    data_sent = False
    owner_pid = 0
    messages = 0

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_sent = True
        return super().data(msg)  # type: ignore[misc]


class _SMTP(_Tracking, smtplib.SMTP):
    pass


class _SMTPSSL(_Tracking, smtplib.SMTP_SSL):
    pass


class SMTPBackend:
    """Sends through an SMTP server: plain, STARTTLS or implicit TLS, with optional login.

    Refusals with a 4xx code, and failures before the message was handed over (connecting,
    the envelope), are retryable; a 5xx, a certificate that does not verify, or a missing
    extension (AUTH, STARTTLS) is final.  A connection that breaks once DATA has begun
    leaves the message uncertain: the server may have accepted it.

    Within ``batch()`` (a mailing's chunk) one connection, TLS handshake and login included,
    carries up to ``MESSAGES_PER_CONNECTION`` messages; one the server closed meanwhile is
    replaced at once, since nothing was handed over on it.  Outside, each message has its own.
    """

    name = "smtp"
    MESSAGES_PER_CONNECTION = 50

    def __init__(
        self,
        host: str,
        port: int,
        tls: str = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ca_file: str | None = None,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.username, self.password = username, password
        self.timeout = timeout
        self.ca_file = ca_file
        self._local = threading.local()

    @functools.cached_property
    def _tls_context(self) -> ssl.SSLContext:
        # Built once: loading the CA bundle takes tens of milliseconds, more than sending.
        return ssl.create_default_context(cafile=self.ca_file)

    def _connect(self) -> _SMTP | _SMTPSSL:
        if self.tls == "ssl":
            client: _SMTP | _SMTPSSL = _SMTPSSL(self.host, self.port, timeout=self.timeout, context=self._tls_context)
        else:
            client = _SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.tls == "starttls":
                client.starttls(context=self._tls_context)
            if self.username:
                client.login(self.username, self.password or "")
        except BaseException:
            client.close()
            raise
        client.owner_pid = os.getpid()
        return client

    def _connection(self) -> tuple[_SMTP | _SMTPSSL, bool]:
        """This thread's open connection and whether it carried messages before, or a new one."""
        client = getattr(self._local, "client", None)
        if client is not None and client.owner_pid != os.getpid():
            # Inherited through fork: the socket is the parent's; leave it alone.
            client = self._local.client = None
        if client is not None and client.messages >= self.MESSAGES_PER_CONNECTION:
            self.close()
            client = None
        if client is None:
            client = self._local.client = self._connect()
        return client, client.messages > 0

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Send the messages of this block on one connection (per thread), closed at the end."""
        self._local.batch = True
        try:
            yield
        finally:
            self._local.batch = False
            self.close()

    def close(self) -> None:
        """Close this thread's connection, if it has one."""
        client, self._local.client = getattr(self._local, "client", None), None
        if client is not None and client.owner_pid == os.getpid():
            _quit(client)

    def send_batch(self, batch: Batch) -> list[SendResult]:
        """Each recipient's message on its own, over one connection; ``check_batch`` first."""
        return self.prepare_batch(batch)()

    def prepare_batch(self, batch: Batch) -> PreparedBatch:
        check_batch(batch)

        def send_each() -> list[SendResult]:
            with self.batch():
                return [self.send(message_for(batch, recipient)) for recipient in batch.recipients]

        return send_each

    def send(self, message: Message) -> SendResult:
        mime = build_mime(message, domain=_domain_of(message.sender))
        while True:
            client, reused = None, False
            try:
                client, reused = self._connection()
                client.data_sent = False
                refused = client.send_message(mime)
            except smtplib.SMTPResponseException as exc:
                # The server answered: its code says whether it took the message (it did not).
                self.close()
                if reused and exc.smtp_code == 421 and not client.data_sent:
                    continue  # "closing the connection" (idle, or enough messages on it): a new one
                reason = (
                    exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
                )
                return SendResult(ok=False, error=f"{exc.smtp_code} {reason}", retryable=400 <= exc.smtp_code < 500)
            except smtplib.SMTPRecipientsRefused as exc:
                self.close()
                codes = [code for code, _ in exc.recipients.values()]
                detail = "; ".join(f"{addr}: {code} {msg!r}" for addr, (code, msg) in exc.recipients.items())
                return SendResult(ok=False, error=detail, retryable=all(400 <= c < 500 for c in codes))
            except (ssl.SSLCertVerificationError, smtplib.SMTPNotSupportedError) as exc:
                # A configuration problem: retrying will not help.
                self.close()
                return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}", retryable=False)
            except (OSError, smtplib.SMTPException) as exc:
                self.close()
                if client is not None and client.data_sent:
                    # The connection broke while the message was being transferred or acknowledged:
                    # the server may have accepted it.
                    return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}", uncertain=True)
                if reused:
                    continue  # the server had closed the connection while it waited: a new one
                return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}", retryable=True)
            client.messages += 1
            if not getattr(self._local, "batch", False):
                self.close()
            if refused:
                detail = "; ".join(f"{addr}: {code} {msg!r}" for addr, (code, msg) in refused.items())
                return SendResult(ok=False, message_id=mime["Message-ID"], error=f"refused {detail}")
            return SendResult(ok=True, message_id=mime["Message-ID"])


def _quit(client: smtplib.SMTP) -> None:
    """Say goodbye; what happens then changes nothing (each message was taken or not)."""
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


def _domain_of(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "demarche.invalid"


def build_backend(config: Mapping[str, Any]) -> MailBackend:
    name = config["MAIL_BACKEND"]
    if name == "outbox":
        return OutboxBackend(config["OUTBOX_DIR"])
    if name == "smtp":
        return SMTPBackend(
            config["SMTP_HOST"],
            config["SMTP_PORT"],
            tls=config["SMTP_TLS"],
            username=config["SMTP_USERNAME"],
            password=config["SMTP_PASSWORD"],
            timeout=config["SMTP_TIMEOUT"],
            ca_file=config["SMTP_CA_FILE"],
        )
    if name == "sendgrid":
        from campaign.mailings import sendgrid  # the only module that imports the library

        return sendgrid.build(config)
    raise ValueError(f"unknown mail backend {name!r}")


def recipients_of(mime: EmailMessage) -> list[str]:
    return [addr for _, addr in getaddresses(mime.get_all("To", []))]
