"""A local SMTP server (aiosmtpd) that counts the messages each address receives, and
misbehaves on cue: refuses a recipient, hangs up before or after taking a message."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, keep_messages: bool = True) -> None:
        self.lock = threading.Lock()
        self.keep_messages = keep_messages
        #: (address, raw message, or b"" when not kept) for every message the server took, in order.
        self.received: list[tuple[str, bytes]] = []
        #: Replies to RCPT TO for an address, given in turn; then it is accepted.
        self.rcpt_replies: dict[str, list[str]] = {}
        #: Addresses whose message is taken, then the connection cut before the reply.
        self.drop_after_data: set[str] = set()
        #: Addresses whose message is taken and acknowledged, then the connection closed.
        self.hang_up_after: set[str] = set()
        #: Connections to cut at MAIL FROM, before anything is handed over.
        self.drop_at_mail = 0
        self.quit_reply: str | None = None
        #: The transport of each connection a message was begun on.
        self.transports: list = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            drop, self.drop_at_mail = self.drop_at_mail > 0, max(self.drop_at_mail - 1, 0)
        if drop:
            server.transport.abort()
            return "421 going away"
        with self.lock:
            if server.transport not in self.transports:
                self.transports.append(server.transport)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            replies = self.rcpt_replies.get(address)
            if replies:
                return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            raw = envelope.original_content if self.keep_messages else b""
            self.received.extend((address, raw) for address in envelope.rcpt_tos)
        if self.drop_after_data.intersection(envelope.rcpt_tos):
            server.transport.abort()  # taken, but the client never hears so
        elif self.hang_up_after.intersection(envelope.rcpt_tos):
            asyncio.get_running_loop().call_soon(server.transport.close)  # once the reply is out
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server, session, envelope):
        return self.quit_reply or "221 Bye"

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(address for address, _ in self.received)

    def messages_to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            raws = [raw for to, raw in self.received if to == address]
        return [BytesParser(policy=policy.default).parsebytes(raw) for raw in raws]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(sink: Sink) -> Iterator[int]:
    """Serve ``sink`` on a free port of 127.0.0.1; yields the port."""
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, data_size_limit=None)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
