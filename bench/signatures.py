"""``letter_page_1000_signatories`` and ``sign_on_post``, on the benchmark's database and gunicorn.

``letter_page_1000_signatories``: wrk on the public page of an open letter with 1,000
approved signatures (bulk-inserted), against the hello-world floor.  wrk sends no
``If-None-Match``, so this measures the page itself, not the 304 path; and no cookie, so
with ``REDIS_URL`` set the first request renders the page and ``campaign.pagecache``
answers the others, as it answers anonymous readers (without Redis each one renders).

``sign_on_post``: the public sign-on form posted by a Python load loop, against the
bare one-row insert floor.  Each thread GETs the form once for its session cookie and
CSRF token, then POSTs new organisations on a keep-alive connection of its own (a bare
HTTP/1.1 writer, ``_Connection``) until the time is up, each answer read in full before
the next post, so none is in flight when it stops.  A redirect to the "check your email" page is a success; 429s are not
counted (the rate limit is raised for the run anyway).  Afterwards the database must
hold exactly as many signatures awaiting verification as successes, or the run fails.
Run alone with ``python -m bench.signatures`` against a migrated ``DATABASE_URL``.
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa

SIGNATORIES = 1000
THREADS = 8
COUNTRIES = ("FR", "BR", "KE", "JP", "DE", "CL", "IN", "ZA", "PL", "US", "TH", "EG")


def _app(env: dict[str, str]):
    from campaign import create_app
    from config import normalise_database_url

    return create_app({
        "APP_ENV": "development", "DATABASE_URL": normalise_database_url(env["DATABASE_URL"]),
        "OUTBOX_DIR": env.get("OUTBOX_DIR", ""), "REDIS_URL": env.get("REDIS_URL") or None,
    })  # fmt: skip


def prepare(env: dict[str, str]) -> tuple[str, str]:
    """Two open letters: one with 1,000 approved signatures, one for the sign-on posts; their slugs."""
    from campaign.auth.services import organisation_name_key
    from campaign.db import utcnow
    from campaign.extensions import db
    from campaign.letters import services
    from campaign.letters.services import LetterText
    from campaign.signatures.models import Signature

    app = _app(env)
    stamp = int(time.time())
    with app.app_context():
        slugs = []
        for kind in ("page", "signon"):
            text = LetterText(
                title=f"Benchmark letter {kind} {stamp}",
                addressee="To Heads of State and Government",
                body_markdown="We call on all States to **protect civilians**.\n\n" * 12,
            )
            letter = services.create_letter(text, slug=f"bench-{kind}-{stamp}")
            for step in ("review", "open"):
                services.transition(letter, step)
            db.session.flush()
            slugs.append(letter.slug)
            if kind == "page":
                now = utcnow()
                db.session.execute(
                    sa.insert(Signature),
                    [
                        {
                            "letter_id": letter.id, "organisation_name": f"Organisation Ç{n:04d} for Peace",
                            "organisation_key": organisation_name_key(f"Organisation Ç{n:04d} for Peace"),
                            "country": COUNTRIES[n % len(COUNTRIES)], "signer_name": f"Signer {n}",
                            "signer_title": "Director", "signer_email": f"signer{n}@bench.example.org",
                            "status": "approved", "source": "public", "revision_id": letter.published_revision_id,
                            "needs_reconfirmation": False, "approved_at": now, "created_at": now,
                            "updated_at": now, "consent_text": "", "rejection_reason": "",
                        }
                        for n in range(SIGNATORIES)
                    ],
                )  # fmt: skip
        db.session.commit()
        db.engine.dispose()
    return slugs[0], slugs[1]


_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


class _Connection:
    """A keep-alive HTTP/1.1 connection that writes prepared requests and reads back only the
    status and the body's length.  The load loop shares the machine's cores with the server,
    so it should cost as little as it can: ``http.client`` parses every answer's headers with
    the ``email`` package, which cost the server about a twentieth of its throughput."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.pending += chunk

    def exchange(self, request: bytes) -> int:
        """Send ``request``; the answer's status, once all of it is read."""
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.pending:
            self._more()
        head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        if _CHUNKED.search(head):
            raise RuntimeError("a chunked answer: this client reads Content-Length only")
        length = _LENGTH.search(head)
        size = int(length.group(1)) if length else 0
        while len(self.pending) < size:
            self._more()
        self.pending = self.pending[size:]
        return int(head[9:12])

    def close(self) -> None:
        self.sock.close()


_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[ \t]*chunked", re.IGNORECASE)


class _Poster(threading.Thread):
    def __init__(self, port: int, slug: str, deadline: float, names: Callable[[], int]) -> None:
        super().__init__(daemon=True)
        self.port, self.slug, self.deadline, self.names = port, slug, deadline, names
        self.ok = self.limited = self.failed = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.error = repr(exc)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        path = f"/letters/{self.slug}/sign"
        connection.request("GET", path)
        response = connection.getresponse()
        page = response.read().decode()
        cookie = "; ".join(
            header.split(";", 1)[0] for name, header in response.getheaders() if name.lower() == "set-cookie"
        )
        connection.close()
        match = _TOKEN.search(page)
        if response.status != 200 or not match:
            raise RuntimeError(f"no sign-on form at {path} (HTTP {response.status})")
        token = match.group(1) or match.group(2)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nCookie: {cookie}\r\n"
        )
        poster = _Connection(self.port)
        try:
            while time.perf_counter() < self.deadline:
                n = self.names()
                body = urlencode({
                    "csrf_token": token, "organisation_name": f"Bench Sign-on Organisation {n}",
                    "country": COUNTRIES[n % len(COUNTRIES)],
                    "website": "", "signer_name": f"Signer {n}", "signer_title": "Director",
                    "signer_email": f"signer{n}@signon.bench.example.org", "consent": "y", "homepage": "",
                }).encode()  # fmt: skip
                status = poster.exchange(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                if status in (302, 303):
                    self.ok += 1
                elif status == 429:
                    self.limited += 1
                else:
                    self.failed += 1
        finally:
            poster.close()


def sign_on_rate(port: int, slug: str, seconds: float, threads: int = THREADS) -> tuple[float, int, int]:
    """(successful posts a second, successes, 429s) for ``seconds`` of posting."""
    counter = itertools.count()
    lock = threading.Lock()

    def next_name() -> int:
        with lock:
            return next(counter)

    start = time.perf_counter()
    posters = [_Poster(port, slug, start + seconds, next_name) for _ in range(threads)]
    for poster in posters:
        poster.start()
    for poster in posters:
        poster.join()
    elapsed = time.perf_counter() - start
    errors = [p.error for p in posters if p.error]
    failed = sum(p.failed for p in posters)
    if errors or failed:
        raise RuntimeError(f"sign-on posts failed: {failed} error responses, {errors[:3]}")
    ok = sum(p.ok for p in posters)
    return ok / elapsed, ok, sum(p.limited for p in posters)


def pending_count(env: dict[str, str], slug: str) -> int:
    from campaign.extensions import db
    from campaign.letters import services
    from campaign.signatures.models import Signature

    app = _app(env)
    with app.app_context():
        letter = services.get_letter(slug)
        count = db.session.scalar(
            sa.select(sa.func.count(Signature.id)).where(
                Signature.letter_id == letter.id, Signature.status == "pending_verification"
            )
        )
        db.engine.dispose()
    return count


def forget_emails(env: dict[str, str]) -> int:
    """Delete the confirmation emails the run queued (no worker ran to send them), rows and RQ
    entries, so that the benchmarks' workers after this one send only their own mail."""
    from campaign import queue
    from campaign.extensions import db
    from campaign.signatures import public_signon

    app = _app(env)
    with app.app_context():
        rows = db.session.execute(
            sa.delete(queue.Job)
            .where(queue.Job.kind == public_signon.VERIFY_JOB, queue.Job.status == queue.JobStatus.QUEUED.value,
                   queue.Job.description.like("%@signon.bench.example.org"))
            .returning(queue.Job.rq_job_id)
        ).all()  # fmt: skip
        db.session.commit()
        for (rq_job_id,) in rows:
            queue.discard(rq_job_id)
        db.engine.dispose()
    return len(rows)


def run(env: dict[str, str], workdir: Path, hello: float, inserts: float) -> None:
    """Emit both figures; the gunicorn of the run has the sign-on rate limit raised."""
    from bench.run import WRK_SECONDS, emit, gunicorn, wrk

    page_slug, signon_slug = prepare(env)
    if not env.get("REDIS_URL"):
        print("REDIS_URL is not set: the letter page is rendered for every request", file=sys.stderr)
    served = dict(env, SIGNON_RATE_LIMIT="1000000 per minute")
    with gunicorn("wsgi:app", served, workdir, "/healthz") as port:
        emit("letter_page_1000_signatories", wrk(port, f"/letters/{page_slug}"), "req/s", hello)
        rate, successes, limited = sign_on_rate(port, signon_slug, WRK_SECONDS)
    stored = pending_count(env, signon_slug)
    print(
        f"sign_on_post: {successes} posts answered with success, {limited} with 429; "
        f"{stored} signatures awaiting verification in the database",
        file=sys.stderr,
    )
    if stored != successes:
        raise RuntimeError(f"sign_on_post: {successes} successes but {stored} pending signatures")
    emit("sign_on_post", rate, "req/s", inserts)
    forget_emails(env)


if __name__ == "__main__":
    import tempfile

    from bench.run import insert_floor
    from config import normalise_database_url

    if not os.environ.get("DATABASE_URL"):
        sys.exit("set DATABASE_URL to a migrated database (and keep SIGNON_RATE_LIMIT high or RATELIMIT_ENABLED=false)")
    floor = insert_floor(normalise_database_url(os.environ["DATABASE_URL"]))
    run(dict(os.environ), Path(tempfile.mkdtemp(prefix="demarche-bench-")), hello=1.0, inserts=floor)
