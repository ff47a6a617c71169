"""The SendGrid backend against the contract stand-in: what it sends, and what each answer means.

Every request goes through the stand-in, which refuses (400) any body the contract's
schema or the real API's limits refuse; the bodies are also validated directly.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import email.utils
import http.client
import smtplib
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
import trustme

from campaign.mailings import keepalive
from campaign.mailings.backends import Attachment, HeaderInjectionError, Message, SendResult
from campaign.mailings.keepalive import KeptAliveOpener
from campaign.mailings.sendgrid import MAX_RETRY_AFTER, MIN_RETRY_AFTER, SendGridBackend, request_body, retry_after
from tests import sendgrid_contract
from tests.sendgrid_standin import StandIn

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 4


def _message(**overrides: object) -> Message:
    fields: dict = {
        "to": ["Siobhán O'Neill <oneill@mission.example>"],
        "subject": "Open letter: protect civilians",
        "text": "Excellency,\n\nPlease find our letter attached.",
        "html": "<p>Excellency,</p><p>Please find our letter attached.</p>",
        "sender": "Civilian Shield Coalition <letters@coalition.example>",
        "reply_to": "Secretariat <secretariat@coalition.example>",
        "headers": {"X-Demarche-Delivery": "41"},
        "attachments": [Attachment("open-letter-en.pdf", PDF, "application/pdf")],
        "categories": ("mailing", "mailing-7"),
        "custom_args": {"delivery": "41", "mailing": "7"},
    }
    fields.update(overrides)
    return Message(**fields)


def _assert_valid(body: dict) -> None:
    assert sendgrid_contract.schema_problems(body) == []
    assert sendgrid_contract.limits(body, time.time()) == []


def _eventually(condition, seconds: float = 10) -> None:
    """Wait for the stand-in's thread to catch up with what the client already did."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the stand-in never got there"
        time.sleep(0.01)


# --- what is sent ------------------------------------------------------------------


def test_a_message_is_accepted_and_its_x_message_id_recorded(standin, sendgrid_backend) -> None:
    result = sendgrid_backend.send(_message())

    assert result == SendResult(ok=True, message_id=standin.accepted[0].message_id)
    [accepted] = standin.accepted
    body = accepted.body
    _assert_valid(body)
    assert body["personalizations"] == [
        {"to": [{"email": "oneill@mission.example", "name": "Siobhán O'Neill"}],
         "custom_args": {"delivery": "41", "mailing": "7"}}
    ]  # fmt: skip
    assert "custom_args" not in body  # the contract's top-level custom_args is mistyped
    assert body["from"] == {"email": "letters@coalition.example", "name": "Civilian Shield Coalition"}
    assert body["reply_to"] == {"email": "secretariat@coalition.example", "name": "Secretariat"}
    assert body["subject"] == "Open letter: protect civilians"
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert body["categories"] == ["mailing", "mailing-7"]
    assert body["headers"] == {"X-Demarche-Delivery": "41"}
    [attachment] = body["attachments"]
    assert base64.b64decode(attachment["content"]) == PDF
    assert attachment | {"content": "…"} == {
        "content": "…", "type": "application/pdf", "filename": "open-letter-en.pdf", "disposition": "attachment"
    }  # fmt: skip
    assert body["tracking_settings"] == {
        "click_tracking": {"enable": False, "enable_text": False},
        "open_tracking": {"enable": False},
        "subscription_tracking": {"enable": False},
    }
    assert accepted.headers["User-Agent"].startswith("sendgrid/")
    assert standin.count("ONEILL@mission.example") == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"html": None, "reply_to": None, "headers": {}, "attachments": [], "categories": (), "custom_args": {}},
        {"text": "", "html": "<p>HTML only</p>"},
        {"to": ["a@mission.example", "B <b@mission.example>"], "sender": "plain@coalition.example"},
        {"subject": "Lettre ouverte : « protéger les civils » — 保护平民", "sender": "Коалиция <c@coalition.example>"},
        {"attachments": [Attachment("a.pdf", PDF, "application/pdf"), Attachment("b.txt", b"x", "text/plain")]},
        {"categories": ("alerts", "alerts", "mailing-test")},
        {
            "headers": {
                "List-Unsubscribe": "<https://x.example/u/t>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        },
    ],
    ids=[
        "full",
        "minimal",
        "html-only",
        "several-to",
        "non-ascii",
        "two-attachments",
        "repeated-category",
        "list-unsub",
    ],
)
def test_every_body_meets_the_contract(standin, sendgrid_backend, overrides) -> None:
    message = _message(**overrides)
    _assert_valid(request_body(message))
    assert sendgrid_backend.send(message).ok  # the stand-in answers 400 to anything else
    _assert_valid(standin.accepted[0].body)


def test_a_started_message_is_written_at_once_and_its_answer_read_when_asked(standin, sendgrid_backend) -> None:
    """``start`` writes the request and returns; the caller builds the next message meanwhile,
    then reads the answer.  Two in turn go over one connection."""
    answers = []
    for n in range(2):
        answer = sendgrid_backend.start(_message(to=[f"minister{n}@example.org"]))
        _eventually(lambda n=n: len(standin.accepted) == n + 1)  # on its way before its answer is asked for
        answers.append(answer())
    assert [a.message_id for a in answers] == [accepted.message_id for accepted in standin.accepted]
    assert standin.connections == 1


def test_a_message_without_any_body_is_refused_before_sending(standin, sendgrid_backend) -> None:
    result = sendgrid_backend.send(_message(text="", html=None))
    assert not result.ok and not result.retryable and not result.uncertain
    assert standin.requests == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "Hello\r\nBcc: victim@example.org"},
        {"subject": "Hello\nthere"},
        {"to": ["a@mission.example\r\nBcc: victim@example.org"]},
        {"sender": "Coalition\r\n <letters@coalition.example>"},
        {"reply_to": "r@coalition.example\n"},
        {"headers": {"X-Note": "one\r\nBcc: victim@example.org"}},
        {"headers": {"X-Note\r\nBcc": "victim@example.org"}},
        {"attachments": [Attachment("letter\r\n.pdf", PDF, "application/pdf")]},
        {"categories": ("mailing\n",)},
        {"custom_args": {"delivery": "41\r\n"}},
        {"subject": "Hello\u2028there"},
    ],
)
def test_line_breaks_are_refused_before_anything_is_sent(standin, sendgrid_backend, overrides) -> None:
    with pytest.raises(HeaderInjectionError, match="line break"):
        sendgrid_backend.send(_message(**overrides))
    assert standin.requests == 0


# --- what each answer means ----------------------------------------------------------


def test_a_429_is_retried_after_the_rate_limit_reset(standin, sendgrid_backend) -> None:
    standin.rate_limit(times=1, reset_in=30)
    result = sendgrid_backend.send(_message())
    assert (result.ok, result.retryable, result.uncertain) == (False, True, False)
    assert 28 <= result.retry_after <= 31
    assert "429" in result.error
    assert standin.accepted == []
    assert sendgrid_backend.send(_message()).ok  # the limit was for one request


def test_retry_after_wins_over_the_reset_and_far_resets_are_bounded(standin, sendgrid_backend) -> None:
    standin.rate_limit(reset_in=30, retry_after=5)
    assert sendgrid_backend.send(_message()).retry_after == 5
    standin.rate_limit(reset_in=10 * 24 * 3600)
    assert sendgrid_backend.send(_message()).retry_after == MAX_RETRY_AFTER


@pytest.mark.parametrize("seconds", [None, 12])
def test_a_503_is_retryable(standin, sendgrid_backend, seconds) -> None:
    standin.fail(503, retry_after=seconds)
    result = sendgrid_backend.send(_message())
    assert (result.ok, result.retryable, result.uncertain, result.retry_after) == (False, True, False, seconds)
    assert standin.accepted == []


@pytest.mark.parametrize("status", [500, 502, 504])
@pytest.mark.parametrize("accepted", [False, True], ids=["lost", "accepted-then-failed"])
def test_500_502_and_504_may_have_been_accepted(standin, sendgrid_backend, status, accepted) -> None:
    standin.fail(status, accept=accepted)
    result = sendgrid_backend.send(_message())
    assert (result.ok, result.retryable, result.uncertain) == (False, False, True)
    assert str(status) in result.error
    # Why not retry: behind a failing gateway the message may well have gone.
    assert standin.count("oneill@mission.example") == int(accepted)


def test_a_timeout_after_sending_is_uncertain(standin) -> None:
    backend = SendGridBackend(standin.api_key, host=standin.url, timeout=0.5)
    standin.slow(delay=3)
    started = time.monotonic()
    result = backend.send(_message())
    assert time.monotonic() - started < 2.5  # the client's timeout, not the server's pace
    assert (result.ok, result.retryable, result.uncertain) == (False, False, True)
    assert "TimeoutError" in result.error or "timed out" in result.error
    assert standin.count("oneill@mission.example") == 1  # it was in fact accepted


def test_a_dropped_connection_after_sending_is_uncertain(standin, sendgrid_backend) -> None:
    standin.drop()
    result = sendgrid_backend.send(_message())
    assert (result.ok, result.retryable, result.uncertain) == (False, False, True)
    assert standin.count("oneill@mission.example") == 1


def test_a_400_fails_with_sendgrids_messages(standin, sendgrid_backend) -> None:
    result = sendgrid_backend.send(_message(to=["a@mission.example", "A@Mission.example"]))
    assert (result.ok, result.retryable, result.uncertain) == (False, False, False)
    assert "400" in result.error and "duplicate" in result.error and "personalizations.0.to" in result.error
    assert standin.accepted == []


def test_a_wrong_key_fails_with_the_reason(standin) -> None:
    result = SendGridBackend("SG.wrong", host=standin.url, timeout=2).send(_message())
    assert (result.ok, result.retryable, result.uncertain) == (False, False, False)
    assert result.error.startswith("SendGrid answered 401: The provided authorization grant is invalid")


@pytest.mark.parametrize("status", [403, 413])
def test_other_4xx_fail(standin, sendgrid_backend, status) -> None:
    standin.fail(status)
    result = sendgrid_backend.send(_message())
    assert (result.ok, result.retryable, result.uncertain) == (False, False, False)


def test_a_refused_connection_is_retryable(contract) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        result = SendGridBackend("SG.key", host=f"http://127.0.0.1:{port}", timeout=2).send(_message())
    assert (result.ok, result.retryable, result.uncertain) == (False, True, False)
    assert "ConnectionRefusedError" in result.error


@pytest.mark.parametrize(
    ("phase", "raised", "retryable", "uncertain"),
    [
        ("connect", socket.gaierror(-2, "Name or service not known"), True, False),  # DNS: never left
        ("connect", TimeoutError("timed out"), True, False),
        ("connect", ssl.SSLCertVerificationError("certificate verify failed"), True, False),
        ("send", BrokenPipeError(32, "Broken pipe"), True, False),  # cut while writing: incomplete
        ("send", TimeoutError("timed out"), True, False),
        ("getresponse", TimeoutError("timed out"), False, True),  # written, then no answer in time
        ("getresponse", ConnectionResetError(104, "Connection reset by peer"), False, True),
        ("getresponse", http.client.RemoteDisconnected("Remote end closed connection without response"), False, True),
        ("read", http.client.IncompleteRead(b'{"errors": [{"mess'), False, True),
    ],
)
def test_transport_failures_are_told_apart_by_whether_the_request_was_written(
    monkeypatch, standin, sendgrid_backend, phase, raised, retryable, uncertain
) -> None:
    """A failure on a new connection, in each phase of the exchange: connecting and writing
    (nothing reached SendGrid whole), waiting for and reading the answer (it may have been accepted)."""

    def fail(*args: object, **kwargs: object) -> None:
        raise raised

    owner = http.client.HTTPResponse if phase == "read" else http.client.HTTPConnection
    monkeypatch.setattr(owner, phase, fail)
    result = sendgrid_backend.send(_message())
    assert (result.ok, result.retryable, result.uncertain) == (False, retryable, uncertain)
    assert type(raised).__name__ in result.error
    if uncertain:  # the request was whole: the stand-in accepts it, in its own thread
        _eventually(lambda: len(standin.accepted) == 1)
    else:
        assert standin.requests == 0


# --- the kept-alive connection -------------------------------------------------------------


def _to(n: int) -> Message:
    return _message(to=[f"m{n}@mission.example"])


def test_messages_share_one_kept_alive_connection(standin, sendgrid_backend) -> None:
    assert all(sendgrid_backend.send(_to(n)).ok for n in range(5))
    assert standin.connections == 1 and len(standin.accepted) == 5


def test_a_connection_the_server_closed_while_idle_is_replaced_before_writing(
    monkeypatch, standin, sendgrid_backend
) -> None:
    assert sendgrid_backend.send(_to(1)).ok
    closed = sendgrid_backend._opener._local.connection
    _eventually(lambda: standin.close_idle() == 1)
    _eventually(lambda: keepalive._readable(closed.sock))  # the server's FIN arrived
    write, written_on = http.client.HTTPConnection.send, []

    def noting(connection: http.client.HTTPConnection, data: bytes) -> None:
        written_on.append(connection)
        write(connection, data)

    monkeypatch.setattr(http.client.HTTPConnection, "send", noting)
    assert sendgrid_backend.send(_to(2)).ok
    assert closed not in written_on  # not a byte was written on the closed one
    assert standin.connections == 2 and standin.count("m2@mission.example") == 1


def test_a_write_that_fails_on_a_reused_connection_is_made_on_a_new_one(monkeypatch, standin, sendgrid_backend) -> None:
    """The server closed the connection just as the request went (unseen while idle): nothing was
    accepted from an incomplete request, so it goes again at once, once."""
    assert sendgrid_backend.send(_to(1)).ok
    write, failures = http.client.HTTPConnection.send, []

    def cut_once(connection: http.client.HTTPConnection, data: bytes) -> None:
        if not failures:
            failures.append(data)
            raise BrokenPipeError(32, "Broken pipe")
        write(connection, data)

    monkeypatch.setattr(http.client.HTTPConnection, "send", cut_once)
    assert sendgrid_backend.send(_to(2)).ok
    assert failures and standin.connections == 2 and standin.count("m2@mission.example") == 1


def test_a_request_written_on_a_reused_connection_and_left_unanswered_is_uncertain(standin, sendgrid_backend) -> None:
    """The keep-alive race seen from the client: the request was written whole, the connection
    closed without an answer.  The server may have read it first: never sent again automatically."""
    assert sendgrid_backend.send(_to(1)).ok
    standin.drop()
    result = sendgrid_backend.send(_to(2))
    assert (result.ok, result.retryable, result.uncertain) == (False, False, True)
    assert standin.requests == 2 and standin.count("m2@mission.example") == 1
    assert sendgrid_backend.send(_to(3)).ok  # and the next message has a new connection
    assert standin.connections == 2


def test_an_idle_connection_is_not_reused(monkeypatch, standin, sendgrid_backend) -> None:
    monkeypatch.setattr(KeptAliveOpener, "IDLE_SECONDS", 0.0)
    assert sendgrid_backend.send(_to(1)).ok and sendgrid_backend.send(_to(2)).ok
    assert standin.connections == 2


def test_a_forked_process_opens_its_own_connection(standin, sendgrid_backend) -> None:
    """What a forked job process sees: a connection its parent opened (another pid)."""
    assert sendgrid_backend.send(_to(1)).ok
    inherited = sendgrid_backend._opener._local.connection
    sendgrid_backend._opener._local.pid = -1  # as if opened by the parent process
    assert sendgrid_backend.send(_to(2)).ok
    assert standin.connections == 2
    assert inherited.sock is not None  # the parent's socket, left alone
    inherited.close()


def test_each_thread_has_its_own_connection(standin, sendgrid_backend) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        barrier = threading.Barrier(3)

        def send(n: int) -> bool:
            barrier.wait(timeout=10)  # three threads at once, so none reuses another's thread
            return sendgrid_backend.send(_to(n)).ok

        assert all(pool.map(send, range(3)))
    assert standin.connections == 3 and len(standin.accepted) == 3
    sendgrid_backend._opener.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_standin(contract, ca) -> Iterator[StandIn]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with StandIn(tls=context) as server:
        yield server


def test_https_certificates_are_verified(tls_standin) -> None:
    """The stand-in's certificate comes from a CA the system does not trust: nothing is sent."""
    result = SendGridBackend(tls_standin.api_key, host=tls_standin.url, timeout=2).send(_message())
    assert (result.ok, result.retryable, result.uncertain) == (False, True, False)
    assert "certificate verify failed" in result.error
    assert tls_standin.requests == 0


def test_https_connections_are_kept_alive_too(monkeypatch, tls_standin, ca) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    monkeypatch.setattr(keepalive, "_tls_context", lambda: context)
    backend = SendGridBackend(tls_standin.api_key, host=tls_standin.url, timeout=2)
    assert all(backend.send(_to(n)).ok for n in range(3))
    assert tls_standin.connections == 1 and len(tls_standin.accepted) == 3
    backend.close()


class _ConnectProxy(socketserver.ThreadingTCPServer):
    """An HTTP proxy that only tunnels (CONNECT), noting each request line and its headers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.requests: list[tuple[str, str | None]] = []


class _Tunnel(socketserver.StreamRequestHandler):
    server: _ConnectProxy

    def handle(self) -> None:
        line = self.rfile.readline().decode("latin-1").strip()
        headers = http.client.parse_headers(self.rfile)
        self.server.requests.append((line, headers.get("Proxy-Authorization")))
        host, _, port = line.split()[1].rpartition(":")
        with socket.create_connection((host, int(port)), timeout=5) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pipe = threading.Thread(target=_pipe, args=(upstream, self.connection), daemon=True)
            pipe.start()
            _pipe(self.connection, upstream)
            pipe.join(timeout=5)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def test_https_goes_through_the_proxy_the_environment_names(monkeypatch, tls_standin, ca) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    monkeypatch.setattr(keepalive, "_tls_context", lambda: context)
    proxy = _ConnectProxy()
    threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://relay:p%40ss@127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        backend = SendGridBackend(tls_standin.api_key, host=tls_standin.url, timeout=2)
        assert backend.send(_to(1)).ok and backend.send(_to(2)).ok
        backend.close()
    finally:
        proxy.shutdown()
        proxy.server_close()
    port = tls_standin.url.rpartition(":")[2]
    credentials = base64.b64encode(b"relay:p@ss").decode()
    assert proxy.requests == [(f"CONNECT 127.0.0.1:{port} HTTP/1.0", f"Basic {credentials}")]  # one tunnel, kept
    assert len(tls_standin.accepted) == 2


def test_retry_after_reads_seconds_dates_and_resets() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert retry_after({"Retry-After": "7"}, now) == 7
    assert retry_after({"Retry-After": date}, now) == pytest.approx(90)
    assert retry_after({"X-RateLimit-Reset": str(int(now) + 42)}, now) == 42
    assert retry_after({"Retry-After": "soon", "X-RateLimit-Reset": str(int(now) + 42)}, now) == 42
    assert retry_after({"X-RateLimit-Reset": str(int(now) - 600)}, now) == MIN_RETRY_AFTER  # a skewed clock
    assert retry_after({"Retry-After": "99999999"}, now) == MAX_RETRY_AFTER
    assert retry_after({}, now) is None
    assert retry_after({"X-RateLimit-Reset": "tomorrow"}, now) is None


# --- the suite's guard ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["https://api.sendgrid.com", "http://api.eu.sendgrid.com", "http://10.0.0.1:8025"])
def test_no_test_can_reach_a_real_provider(no_real_mail_provider, host) -> None:
    """The autouse guard (tests/conftest.py) fails the test before the request leaves."""
    before = list(no_real_mail_provider.refused)
    with pytest.raises(pytest.fail.Exception, match="real mail provider"):
        SendGridBackend("SG.key", host=host, timeout=2).send(_message())
    with pytest.raises(pytest.fail.Exception, match="real mail provider"):
        smtplib.SMTP("smtp.sendgrid.net", 587, timeout=2)
    assert len(no_real_mail_provider.refused) == len(before) + 2
    no_real_mail_provider.refused[:] = before  # this test meant to; the session must not fail for it
