"""A local stand-in for SendGrid's ``POST /v3/mail/send``, for the tests and the benchmarks.

It checks the ``Authorization: Bearer`` key, validates every body against the contract
(``tests.sendgrid_contract``: the OpenAPI schema and the limits the real API adds), answers
202 with an ``X-Message-Id`` and records what it accepted, request by request and
personalization by personalization.  Told to, it answers the next requests with a 429
(``Retry-After``, ``X-RateLimit-*``) or a 5xx, slowly, or accepts a request and drops the
connection without answering; it refuses (400) every request to an address it was told to
refuse, naming the personalization as SendGrid does; it counts the connections it was opened,
and closes the idle ones when told to (as a server does after its keep-alive timeout).

In a test::

    with StandIn() as standin:
        backend = SendGridBackend(standin.api_key, host=standin.url)
        standin.rate_limit(times=1, reset_in=20)
        ...
        assert standin.count("someone@example.org") == 1

From another process: ``python -m tests.sendgrid_standin --port 8025 --pidfile F``; it is
then steered over HTTP with the same key: ``POST /_standin/faults`` (``{"kind": "status",
"status": 503, "times": 2}``; kinds ``rate_limit``, ``status``, ``slow``, ``drop``),
``POST /_standin/refuse`` (``{"address": …}``), ``GET /_standin/accepted`` (counts per address)
and ``POST /_standin/reset``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests import sendgrid_contract as contract

SEND_PATH = "/v3/mail/send"


@dataclass(frozen=True)
class Accepted:
    """A request the stand-in accepted (202, or dropped or answered late after accepting)."""

    message_id: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float

    @property
    def recipients(self) -> list[str]:
        return contract.recipients(self.body)

    @property
    def personalizations(self) -> list[dict[str, Any]]:
        return self.body["personalizations"]


@dataclass
class Fault:
    """What to do instead of a prompt 202, for the next ``times`` requests."""

    kind: str  # rate_limit | status | slow | drop
    times: int = 1
    status: int = 429
    reset_in: float = 10.0  # rate_limit: X-RateLimit-Reset is now plus this
    retry_after: float | None = None  # adds a Retry-After header (rate_limit or status)
    delay: float = 0.0  # slow: seconds before answering
    accept: bool = False  # status: record the request as accepted before failing (a gateway error)
    error_field: str | None = None  # status: the field SendGrid's error names
    headers: dict[str, str] = field(default_factory=dict)


class StandIn:
    """The server, its faults and what it accepted; a context manager giving ``url``."""

    def __init__(
        self, api_key: str | None = None, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        contract.validator()  # raises ContractMissing now rather than 500 on each request
        self.api_key = api_key or f"SG.standin-{secrets.token_urlsafe(16)}"
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._accepted: list[Accepted] = []
        self._counts: Counter[str] = Counter()
        self._refused: set[str] = set()
        self._open: dict[socket.socket, bool] = {}  # the connections clients hold, and whether busy
        self.requests = 0  # every authorised POST to mail/send, accepted or not
        self.connections = 0  # every connection a client opened
        self._stopping = threading.Event()
        self._server = _Server((host, port), _Handler)
        self._server.standin = self
        self.scheme = "http"
        if tls is not None:  # HTTPS: the handshake happens as each connection is accepted
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    # --- life --------------------------------------------------------------------

    def start(self) -> StandIn:
        # A short poll interval: ``shutdown`` waits for the loop's next look, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="sendgrid-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes slow answers
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- steering ----------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def rate_limit(self, times: int = 1, reset_in: float = 10.0, retry_after: float | None = None) -> None:
        """Answer the next ``times`` requests 429 with ``X-RateLimit-Reset`` (and ``Retry-After``)."""
        self.add_fault(Fault("rate_limit", times, status=429, reset_in=reset_in, retry_after=retry_after))

    def fail(
        self,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        accept: bool = False,
        error_field: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (its error naming ``error_field``);
        ``accept`` records them as sent first."""
        self.add_fault(
            Fault("status", times, status=status, retry_after=retry_after, accept=accept, error_field=error_field)
        )

    def slow(self, delay: float, times: int = 1) -> None:
        """Accept the next ``times`` requests but answer only after ``delay`` seconds."""
        self.add_fault(Fault("slow", times, delay=delay))

    def drop(self, times: int = 1) -> None:
        """Accept the next ``times`` requests, then close the connection without answering."""
        self.add_fault(Fault("drop", times))

    def refuse(self, address: str) -> None:
        """Answer 400 to every request that sends to ``address`` (compared case-insensitively),
        naming the field that holds it, until ``reset``."""
        with self._lock:
            self._refused.add(address.casefold())

    def close_idle(self) -> int:
        """Close the connections waiting for their next request (not one a request is on);
        returns how many."""
        with self._lock:
            idle = [sock for sock, busy in self._open.items() if not busy]
        for sock in idle:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(idle)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._accepted.clear()
            self._counts.clear()
            self._refused.clear()
            self.requests = self.connections = 0

    # --- what happened -----------------------------------------------------------

    @property
    def accepted(self) -> list[Accepted]:
        with self._lock:
            return list(self._accepted)

    def count(self, address: str) -> int:
        """How many accepted requests went to ``address`` (compared case-insensitively)."""
        with self._lock:
            return self._counts[address.casefold()]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def personalizations(self) -> int:
        """How many personalizations the accepted requests carried."""
        with self._lock:
            return sum(len(accepted.personalizations) for accepted in self._accepted)

    # --- used by the handler -----------------------------------------------------

    def _next_fault(self) -> Fault | None:
        with self._lock:
            self.requests += 1
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.pop(0)
            return fault

    def _connection(self, sock: socket.socket, state: bool | None) -> None:
        """Note a connection opened (False: idle), busy with a request (True), or closed (None)."""
        with self._lock:
            if state is None:
                self._open.pop(sock, None)
                return
            if sock not in self._open:
                self.connections += 1
            self._open[sock] = state

    def _refusal(self, body: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            if not self._refused:
                return None
            for field, address in contract.located_recipients(body):
                if address.casefold() in self._refused:
                    return contract.problem("Does not contain a valid address.", f"{field}.email")
        return None

    def _accept(self, body: dict[str, Any], headers: dict[str, str]) -> Accepted:
        accepted = Accepted(secrets.token_urlsafe(16), body, headers, time.time())
        with self._lock:
            self._accepted.append(accepted)
            self._counts.update(address.casefold() for address in accepted.recipients)
        return accepted


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: StandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) before a slow answer is part of the game.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the tests read what was accepted instead

    def setup(self) -> None:
        super().setup()
        self.server.standin._connection(self.connection, False)

    def finish(self) -> None:
        self.server.standin._connection(self.connection, None)
        super().finish()

    def parse_request(self) -> bool:
        self.server.standin._connection(self.connection, True)
        return super().parse_request()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            if not self.close_connection:
                self.server.standin._connection(self.connection, False)

    def _answer(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _errors(self, status: int, *problems: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._answer(status, {"errors": list(problems)}, headers)

    def _authorised(self) -> bool:
        expected = f"Bearer {self.server.standin.api_key}"
        if secrets.compare_digest(self.headers.get("Authorization", "").encode(), expected.encode()):
            return True
        self._errors(401, contract.problem("The provided authorization grant is invalid, expired, or revoked"))
        return False

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > contract.MAX_BODY_BYTES:
            self.close_connection = True
            self._errors(413, contract.problem("The request is larger than 30 MB.", None, contract.HELP))
            return None
        return self.rfile.read(length)

    def do_GET(self) -> None:
        if self.path != "/_standin/accepted":
            return self._errors(404, contract.problem("not found"))
        if self._authorised():
            standin = self.server.standin
            self._answer(200, {"requests": standin.requests, "accepted": len(standin.accepted),
                               "personalizations": standin.personalizations, "counts": standin.counts()})  # fmt: skip

    def do_POST(self) -> None:
        standin = self.server.standin
        if self.path in ("/_standin/faults", "/_standin/refuse", "/_standin/reset"):
            raw = self._body()
            if raw is not None and self._authorised():
                if self.path.endswith("reset"):
                    standin.reset()
                elif self.path.endswith("refuse"):
                    try:
                        address = json.loads(raw or b"{}")["address"]
                    except (ValueError, KeyError, TypeError):
                        address = None
                    if not isinstance(address, str) or not address:
                        return self._errors(400, contract.problem("not an address"))
                    standin.refuse(address)
                else:
                    try:
                        standin.add_fault(Fault(**json.loads(raw or b"{}")))
                    except (TypeError, ValueError) as exc:
                        return self._errors(400, contract.problem(f"not a fault: {exc}"))
                self._answer(204)
            return None
        if self.path != SEND_PATH:
            return self._errors(404, contract.problem("not found"))
        raw = self._body()
        if raw is None or not self._authorised():
            return None
        fault = standin._next_fault()
        if fault is not None and fault.kind in ("rate_limit", "status") and not fault.accept:
            return self._refuse(fault)
        try:
            body = json.loads(raw)
        except ValueError:
            return self._errors(400, contract.problem("Bad Request: the body is not valid JSON"))
        problems = contract.schema_problems(body) or contract.limits(body, time.time())
        refusal = None if problems else standin._refusal(body)
        if refusal is not None:
            problems = [refusal]
        if problems:
            return self._errors(400, *problems)
        headers = {name: value for name, value in self.headers.items() if name.lower() != "authorization"}
        accepted = standin._accept(body, headers)
        if fault is None:
            return self._answer(202, None, {"X-Message-Id": accepted.message_id})
        if fault.kind == "status":  # accepted, then the answer is lost behind a failing gateway
            return self._refuse(fault)
        if fault.kind == "slow":
            standin._stopping.wait(fault.delay)
            return self._answer(202, None, {"X-Message-Id": accepted.message_id})
        # drop: accepted, and the connection closes without a status line.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        return None

    def _refuse(self, fault: Fault) -> None:
        headers = dict(fault.headers)
        if fault.kind == "rate_limit":
            headers.update(
                {
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(time.time() + fault.reset_in)),
                }
            )
            message = "too many requests"
        else:
            message = {
                400: "bad request",
                500: "internal server error",
                502: "bad gateway",
                503: "service unavailable",
                504: "gateway timeout",
            }.get(fault.status, "error")
        if fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        self._errors(fault.status, contract.problem(message, fault.error_field), headers=headers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=os.environ.get("SENDGRID_API_KEY"))
    parser.add_argument("--pidfile", type=Path)
    options = parser.parse_args(argv)
    standin = StandIn(api_key=options.api_key, host=options.host, port=options.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with standin:
        if options.pidfile:
            options.pidfile.write_text(f"{os.getpid()}\n")
        print(f"{standin.url} {standin.api_key}", flush=True)
        try:
            stop.wait()
        finally:
            if options.pidfile:
                options.pidfile.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
