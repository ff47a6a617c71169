"""A urllib-style opener over kept-alive HTTP(S) connections, for the SendGrid backend.

``python_http_client`` (under the ``sendgrid`` library) opens a new connection, TLS handshake
included, for every request; most of a message's cost went there.  ``KeptAliveOpener`` keeps
one connection per thread and process, and says which failures left the request unsent
(``NotSent``) and which may have let it through, which is what the sending rule turns on.
HTTPS goes through the proxy ``HTTPS_PROXY`` names (``NO_PROXY`` honoured), as with urllib;
plain HTTP, used only towards a local stand-in, always connects directly.
"""

from __future__ import annotations

import base64
import functools
import http.client
import io
import os
import select
import ssl
import threading
import time
import urllib.error
import urllib.request
import weakref
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit


class NotSent(Exception):
    """The request never reached the server whole: connecting failed, or writing it did."""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Built once per process: loading the CA bundle costs more than a request.
    return ssl.create_default_context()


class _Answered:
    """A whole answer, read off the connection, in the shape urllib's openers return."""

    def __init__(self, status: int, body: bytes, headers: http.client.HTTPMessage) -> None:
        self.status, self._body, self.headers = status, body, headers

    def getcode(self) -> int:
        return self.status

    def read(self) -> bytes:
        return self._body

    def info(self) -> http.client.HTTPMessage:
        return self.headers


class KeptAliveOpener:
    """A urllib-style opener (``open(request, timeout)``) that keeps one HTTP(S) connection per
    thread and process open between requests, certificates verified against the system's CAs.

    Failing to connect, or failing to write the request on a new connection, raises ``NotSent``.
    A write that fails on a reused connection (the server closed it meanwhile) is repeated once on
    a new connection: an incomplete request is never accepted.  Once the request is written, any
    failure propagates as it is (``OSError``, ``http.client.HTTPException``): it may have been
    accepted.  Answers other than 2xx raise ``urllib.error.HTTPError``, as urllib's do.
    """

    #: A connection idle longer is not reused: servers close idle connections after a while.
    IDLE_SECONDS = 20.0

    def __init__(self) -> None:
        self._local = threading.local()
        # Every thread's open connection with the process that opened it, closed with the opener.
        self._open: set[tuple[int, http.client.HTTPConnection]] = set()
        weakref.finalize(self, _close_all, self._open)

    def open(self, request: urllib.request.Request, timeout: float | None = None) -> _Answered:
        return self.write(request, timeout).answer()

    def write(self, request: urllib.request.Request, timeout: float | None = None) -> Exchange:
        """``open`` in two steps: the request is written now (``NotSent`` as ``open`` raises it);
        ``answer()`` on the result, called later in this thread, reads the answer.  Meanwhile
        the caller can work while the server reads the request; no other request goes on this
        thread's connection before the answer is read."""
        url = urlsplit(request.full_url)
        target = url.path + (f"?{url.query}" if url.query else "")
        headers = {name.title(): value for name, value in request.header_items()}
        method = request.get_method()
        for attempt in (1, 2):
            connection, reused = self._connection(url.scheme, url.hostname or "", url.port, timeout)
            try:
                connection.request(method, target, body=request.data, headers=headers)
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if not (reused and attempt == 1):
                    raise NotSent(_describe(exc)) from exc
        return Exchange(self, connection, request.full_url)

    def _connection(
        self, scheme: str, host: str, port: int | None, timeout: float | None
    ) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to ``host`` and whether it carried requests before, or a new one."""
        local = self._local
        connection: http.client.HTTPConnection | None = getattr(local, "connection", None)
        if connection is not None and local.pid != os.getpid():
            # Inherited through fork: the socket is the parent's; leave it alone.
            connection = local.connection = None
        if connection is not None and (
            local.key != (scheme, host, port)
            or connection.sock is None
            or time.monotonic() - local.used > self.IDLE_SECONDS
            or _readable(connection.sock)
        ):
            self.close()
            connection = None
        if connection is not None:
            connection.sock.settimeout(timeout)
            return connection, True
        proxy = _proxy(scheme, host)
        if proxy is not None:
            # Through the proxy's CONNECT tunnel; TLS (and the certificate check) still end at ``host``.
            connection = http.client.HTTPSConnection(
                proxy.hostname or "", proxy.port or 8080, timeout=timeout, context=_tls_context()
            )
            connection.set_tunnel(host, port, headers=_proxy_authorization(proxy))
        elif scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=_tls_context())
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise NotSent(_describe(exc)) from exc
        local.connection, local.pid = connection, os.getpid()
        local.key, local.used = (scheme, host, port), time.monotonic()
        self._open.add((local.pid, connection))
        return connection, False

    def close(self) -> None:
        """Close this thread's connection, if it has one (in this process)."""
        connection, self._local.connection = getattr(self._local, "connection", None), None
        if connection is not None and self._local.pid == os.getpid():
            self._open.discard((self._local.pid, connection))
            connection.close()


class Exchange:
    """A request written on a kept-alive connection, its answer still to be read."""

    def __init__(self, opener: KeptAliveOpener, connection: http.client.HTTPConnection, url: str) -> None:
        self._opener, self._connection, self._url = opener, connection, url

    def answer(self) -> _Answered:
        """The answer, read whole.  Any failure propagates as it is: the request may have been
        accepted.  Answers other than 2xx raise ``urllib.error.HTTPError``, as urllib's do."""
        try:
            response = self._connection.getresponse()
            body = response.read()
        except BaseException:
            self._opener.close()
            raise
        if response.will_close:
            self._opener.close()
        else:
            self._opener._local.used = time.monotonic()
        if not 200 <= response.status < 300:
            answer = io.BytesIO(body)
            raise urllib.error.HTTPError(self._url, response.status, response.reason, response.headers, answer)
        return _Answered(response.status, body, response.headers)

    def open(self, request: urllib.request.Request, timeout: float | None = None) -> _Answered:
        """The opener's interface, for a library that opens: the answer to the request written."""
        return self.answer()


def _close_all(connections: set[tuple[int, http.client.HTTPConnection]]) -> None:
    """Close the connections this process opened (an inherited one is the parent's)."""
    pid = os.getpid()
    for owner, connection in list(connections):
        if owner == pid:
            connection.close()
    connections.clear()


def _proxy(scheme: str, host: str) -> SplitResult | None:
    """The proxy urllib would take to ``host`` (``HTTPS_PROXY``, minus ``NO_PROXY``), for HTTPS."""
    proxy = urllib.request.getproxies().get(scheme) if scheme == "https" else None
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return urlsplit(proxy if "://" in proxy else f"http://{proxy}")


def _proxy_authorization(proxy: SplitResult) -> dict[str, str]:
    if proxy.username is None:
        return {}
    credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
    return {"Proxy-Authorization": f"Basic {base64.b64encode(credentials).decode('ascii')}"}


def _readable(sock: Any) -> bool:
    """Whether an idle connection has something to read: the server closed it, or wrote
    something unasked for.  Either way it is not fit to carry a request."""
    if getattr(sock, "pending", None) is not None and sock.pending():
        return True
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")
