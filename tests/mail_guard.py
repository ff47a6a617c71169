"""The suite's guard: no test reaches a real mail provider (STYLE.md).

Every SendGrid request (whatever client or setting built it) and every SMTP connection
must go to this machine's loopback interface, where the stand-ins and aiosmtpd run.
Anything else fails the test before a byte leaves, and is remembered so that a
failure swallowed on its way up (a worker thread, a broad ``except``) still counts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import smtplib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from python_http_client.client import Client

from campaign.mailings.keepalive import KeptAliveOpener

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` names this machine by a loopback name or address (no DNS lookup)."""
    if not host:
        return False
    host = host.strip("[]").rstrip(".").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RealProviderGuard:
    def __init__(self) -> None:
        self.refused: list[str] = []

    def check(self, what: str, host: str | None) -> None:
        if not is_loopback(host):
            self.refused.append(f"{what} to {host!r}")
            pytest.fail(
                f"a test tried to reach a real mail provider ({what} to {host!r}); "
                "point it at the local stand-in (tests.sendgrid_standin) or aiosmtpd",
                pytrace=False,
            )

    @contextlib.contextmanager
    def installed(self) -> Iterator[RealProviderGuard]:
        guard = self
        make_request, smtp_connect = Client._make_request, smtplib.SMTP.connect
        write = KeptAliveOpener.write

        def checked_request(client: Client, opener: Any, request: Any, timeout: float | None = None) -> Any:
            guard.check("a SendGrid request", urlsplit(request.full_url).hostname)
            return make_request(client, opener, request, timeout=timeout)

        def checked_write(opener: KeptAliveOpener, request: Any, timeout: float | None = None) -> Any:
            # The backend writes a request before the library reads its answer: checked before connecting.
            guard.check("a SendGrid request", urlsplit(request.full_url).hostname)
            return write(opener, request, timeout)

        def checked_connect(smtp: smtplib.SMTP, host: str = "localhost", port: int = 0, **kwargs: Any) -> Any:
            # smtplib reads "host:port" from ``host`` when no port is given (not for IPv6 addresses).
            guard.check("an SMTP connection", host.partition(":")[0] if not port and host.count(":") == 1 else host)
            return smtp_connect(smtp, host, port, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Client, "_make_request", checked_request)
            patch.setattr(KeptAliveOpener, "write", checked_write)
            patch.setattr(smtplib.SMTP, "connect", checked_connect)
            yield self
