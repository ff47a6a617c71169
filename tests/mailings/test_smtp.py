"""The SMTP backend against a real SMTP server (aiosmtpd): TLS, login, encodings, refusals."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from campaign.mailings.backends import HeaderInjectionError, Message, SMTPBackend

USER, PASSWORD = "mailer", "s3cret-pass"


class Recorder:
    def __init__(self) -> None:
        self.envelopes: list = []
        self.rcpt_reply: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca, tmp_path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def smtp_server(request, ca) -> Iterator[tuple[Recorder, int, str]]:
    """A running server; parametrise with "plain", "starttls" or "ssl"."""
    mode = getattr(request, "param", "plain")
    recorder, port = Recorder(), _free_port()
    options: dict = {}
    if mode == "starttls":
        options = {"tls_context": _server_context(ca), "require_starttls": True, "authenticator": _authenticate}
    elif mode == "ssl":
        options = {"ssl_context": _server_context(ca), "authenticator": _authenticate, "auth_require_tls": False}
    else:
        options = {"authenticator": _authenticate, "auth_require_tls": False}
    # PLAIN only: smtplib then gets one clear 535 for a wrong password.
    controller = Controller(recorder, hostname="127.0.0.1", port=port, auth_exclude_mechanism=["LOGIN"], **options)
    if mode == "ssl":
        controller.ready_timeout = 10
    controller.start()
    try:
        yield recorder, port, mode
    finally:
        controller.stop()


def _message(**overrides) -> Message:
    fields = {
        "to": ["Zoë Ñúñez <zoe@mission.example.org>"],
        "subject": "Lettre ouverte — réunion ministérielle",
        "text": "Excellence,\n\nVeuillez trouver ci-joint notre lettre.\n",
        "html": "<p>Excellence,</p><p>Veuillez trouver ci-joint notre lettre.</p>",
        "sender": "Коалиция защиты <secretariat@coalition.example.org>",
        "reply_to": "李雷 <reply@coalition.example.org>",
    }
    fields.update(overrides)
    return Message(**fields)


@pytest.mark.parametrize("smtp_server", ["plain", "starttls", "ssl"], indirect=True)
def test_sends_with_each_transport_and_login(smtp_server, ca_file):
    recorder, port, mode = smtp_server
    backend = SMTPBackend(
        "127.0.0.1",
        port,
        tls="none" if mode == "plain" else mode,
        username=USER,
        password=PASSWORD,
        timeout=10,
        ca_file=ca_file,
    )
    result = backend.send(_message())
    assert result.ok, result.error
    assert result.message_id.startswith("<") and result.message_id.endswith("@coalition.example.org>")
    (envelope,) = recorder.envelopes
    assert envelope.mail_from == "secretariat@coalition.example.org"
    assert envelope.rcpt_tos == ["zoe@mission.example.org"]
    raw = envelope.original_content
    assert raw.isascii()  # every non-ASCII header is RFC 2047 encoded
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed["To"].addresses[0].display_name == "Zoë Ñúñez"
    assert parsed["From"].addresses[0].display_name == "Коалиция защиты"
    assert parsed["Reply-To"].addresses[0].display_name == "李雷"
    assert parsed["Subject"] == "Lettre ouverte — réunion ministérielle"
    assert str(parsed["Message-ID"]).strip() == result.message_id
    assert "Veuillez trouver" in parsed.get_body(preferencelist=("plain",)).get_content()


def test_wrong_password_is_a_final_failure(smtp_server):
    _, port, _ = smtp_server
    result = SMTPBackend("127.0.0.1", port, username=USER, password="wrong", timeout=10).send(_message())
    assert not result.ok
    assert result.error.startswith("535")
    assert not result.retryable


@pytest.mark.parametrize("smtp_server", ["starttls"], indirect=True)
def test_starttls_certificate_must_be_trusted(smtp_server):
    _, port, _ = smtp_server
    result = SMTPBackend("127.0.0.1", port, tls="starttls", username=USER, password=PASSWORD, timeout=10).send(
        _message()
    )
    assert not result.ok
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert not result.retryable


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("450 Mailbox busy, try later", True), ("550 No such user here", False)],
)
def test_recipient_refusals_are_classified(smtp_server, reply, retryable):
    recorder, port, _ = smtp_server
    recorder.rcpt_reply = reply
    result = SMTPBackend("127.0.0.1", port, timeout=10).send(_message())
    assert not result.ok
    assert reply.split()[0] in result.error
    assert result.retryable is retryable
    assert recorder.envelopes == []


def test_unreachable_server_is_retryable():
    result = SMTPBackend("127.0.0.1", _free_port(), timeout=2).send(_message())
    assert not result.ok and result.retryable
    assert "ConnectionRefused" in result.error


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "Hello\r\nBcc: victim@example.org"},
        {"to": ["Name\r\nBcc: victim@example.org <a@example.org>"]},
        {"sender": "x@example.org\nBcc: victim@example.org"},
        {"reply_to": "r@example.org\r\nX-Injected: yes"},
        {"headers": {"X-Delivery": "1\r\nBcc: victim@example.org"}},
    ],
)
def test_header_injection_never_reaches_the_server(smtp_server, overrides):
    recorder, port, _ = smtp_server
    with pytest.raises(HeaderInjectionError):
        SMTPBackend("127.0.0.1", port, timeout=10).send(_message(**overrides))
    assert recorder.envelopes == []
