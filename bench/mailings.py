"""``mailing_2000_contacts``: a 2,000-contact mailing end to end through a real ``flask worker``
(RQ on ``REDIS_URL``) to the SendGrid stand-in, in messages a second, against the floor of the
same request bodies posted to the same stand-in by a bare keep-alive ``http.client`` loop.

The contacts speak the six UN languages (ar, zh, en, fr, ru, es); the letter has published
translations in fr, ar and zh, so Russian and Spanish speakers get the English text and the
mailing carries four PDFs.  They are rendered when the mailing is approved, as the job that
approval queues renders them; the time runs from the request to send to the mailing's end.
``mailing_2000_contacts_pdf_renders`` is the number of PDFs the mailing stored (one row per
language rendered) against the number of languages sent.
Run alone with ``python -m bench.mailings`` against a migrated ``DATABASE_URL`` and ``REDIS_URL``.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa

from bench.run import stop

CONTACTS = 2000
LANGUAGES = ("ar", "zh", "en", "fr", "ru", "es")
TRANSLATED = ("fr", "ar", "zh")
ROOT = Path(__file__).resolve().parent.parent


def _settings(env: dict[str, str], standin) -> dict[str, str]:
    from config import normalise_database_url

    return {"APP_ENV": "development", "DATABASE_URL": normalise_database_url(env["DATABASE_URL"]),
            "REDIS_URL": env["REDIS_URL"], "QUEUE_MODE": "redis", "MAIL_BACKEND": "sendgrid",
            "SENDGRID_API_KEY": standin.api_key, "SENDGRID_API_HOST": standin.url,
            "OUTBOX_DIR": env.get("OUTBOX_DIR", ""),
            # The run measures its own mailing or alert: letters the other benchmarks opened in
            # this database must not make automatic alerts to the benchmark's subscribers.
            "ALERTS_AUTOMATIC": "false"}  # fmt: skip


def _prepare(app, stamp: int) -> tuple[int, int]:
    """A letter published with three translations, 2,000 contacts (bulk-inserted) and an
    approved mailing to them; returns (mailing id, author id)."""
    from campaign.auth.models import User
    from campaign.contacts.models import Contact, ContactTag
    from campaign.extensions import db
    from campaign.letters.models import Letter
    from campaign.mailings import documents, services
    from tests import factories
    from tests.letters.publishing import TRANSLATIONS, publish

    tag = f"Bench mailing {stamp}"
    letter = publish(app, translations={language: TRANSLATIONS[language] for language in TRANSLATED},
                     slug=f"bench-mailing-{stamp}")  # fmt: skip
    with app.app_context():
        author, approver = (factories.user("coordinator", email=f"bench-{n}-{stamp}@example.org").id for n in (1, 2))
        rows = [{"email": f"mission{n:05d}-{stamp}@bench.example", "country": "FR", "language": LANGUAGES[n % 6],
                 "timezone": "America/New_York", "organisation": f"Permanent Mission {n}", "honorific": "H.E.",
                 "given_name": "Ada", "family_name": f"Family {n}", "salutation": "Excellency,"}
                for n in range(CONTACTS)]  # fmt: skip
        db.session.execute(sa.insert(Contact), rows)
        ids = db.session.scalars(sa.select(Contact.id).where(Contact.email.like(f"%-{stamp}@bench.example")))
        db.session.execute(sa.insert(ContactTag), [{"contact_id": i, "name": tag} for i in ids])
        mailing = services.create_mailing(
            services.MailingData(letter=db.session.get(Letter, letter.id), subject="Open letter: {{ letter.title }}",
                                 introduction="{{ contact.salutation }}\n\nOur letter, for {{ contact.full_name }}.",
                                 tags=[tag], rate_per_minute=100_000),
            actor=db.session.get(User, author),
        )  # fmt: skip
        db.session.commit()
        services.approve(mailing, db.session.get(User, approver))
        db.session.commit()
        # What the job that approval queues does (``mailing.documents``), before the send is asked.
        documents.render_approved(mailing.id, mailing.approved_version)
        return mailing.id, author


def _worker(env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, Path]:
    pidfile = workdir / "mailing-worker.pid"
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--pidfile", str(pidfile)]
    log = (workdir / "mailing-worker.log").open("wb")
    # A session of its own, so that ``stop`` can end the worker with the job process it forked.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process, pidfile


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {seconds} s")
        time.sleep(0.05)


def _post_loop(url: str, api_key: str, bodies: list[dict]) -> float:
    """Requests a second for the same bodies posted by a bare keep-alive loop."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    payloads = [json.dumps(body) for body in bodies]
    start = time.perf_counter()
    for payload in payloads:
        connection.request("POST", "/v3/mail/send", payload, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 202:
            raise RuntimeError(f"the stand-in answered {response.status} to the floor loop")
    elapsed = time.perf_counter() - start
    connection.close()
    return len(payloads) / elapsed


def measure(env: dict[str, str], workdir: Path) -> tuple[float, float, int, int]:
    """(messages a second, floor requests a second, PDFs stored, languages sent)."""
    from campaign import create_app, queue
    from campaign.auth.models import User
    from campaign.extensions import db
    from campaign.mailings import services
    from campaign.mailings.models import Delivery, Mailing, MailingDocument
    from tests.sendgrid_standin import StandIn

    with StandIn() as standin:
        settings = _settings(env, standin)
        app = create_app(dict(settings))
        mailing_id, author = _prepare(app, int(time.time()))
        worker_env = dict(env, **settings)
        worker, pidfile = _worker(worker_env, workdir)
        redis = app.extensions["redis"]
        try:
            _wait(lambda: pidfile.exists() and bool(redis.smembers("rq:workers")), 60, "the worker started")
            with app.app_context():
                start = time.perf_counter()
                row = services.request_send(db.session.get(Mailing, mailing_id), {}, db.session.get(User, author))
                db.session.commit()
                queue.dispatch(row)

                def finished() -> bool:
                    if worker.poll() is not None:
                        raise RuntimeError(f"the worker stopped; see {workdir / 'mailing-worker.log'}")
                    db.session.expire_all()
                    return db.session.get(Mailing, mailing_id).status == "finished"

                _wait(finished, 600, "the mailing finished")
                elapsed = time.perf_counter() - start
                states = dict(db.session.execute(sa.select(Delivery.status, sa.func.count())
                                                 .where(Delivery.mailing_id == mailing_id)
                                                 .group_by(Delivery.status)).all())  # fmt: skip
                documents = db.session.scalar(
                    sa.select(sa.func.count()).where(MailingDocument.mailing_id == mailing_id)
                )
                languages = len({"en", *TRANSLATED} & set(LANGUAGES))
        finally:
            stop(worker, pidfile, 60)
        counts = standin.counts()
        if states != {"sent": CONTACTS} or len(counts) != CONTACTS or max(counts.values()) != 1:
            twice = sorted(address for address, count in counts.items() if count > 1)
            raise RuntimeError(f"the mailing did not send each contact once: {states}, {len(counts)} addresses "
                               f"accepted, {len(twice)} more than once ({twice[:3]})")  # fmt: skip
        bodies = [accepted.body for accepted in standin.accepted]
        standin.reset()
        floor = _post_loop(standin.url, standin.api_key, bodies)
        with app.app_context():
            db.engine.dispose()
    return CONTACTS / elapsed, floor, documents, languages


def run(env: dict[str, str], workdir: Path, emit: Callable[[str, float, str, float], None]) -> None:
    if not env.get("REDIS_URL"):
        print("REDIS_URL is not set: mailing_2000_contacts needs Redis and a worker; skipped", file=sys.stderr)
        return
    rate, floor, documents, languages = measure(env, workdir)
    emit("mailing_2000_contacts", rate, "messages/s", floor)
    emit("mailing_2000_contacts_pdf_renders", documents, "pdfs", languages)


if __name__ == "__main__":
    import tempfile

    from bench.run import emit

    run(dict(os.environ), Path(tempfile.mkdtemp(prefix="demarche-bench-")), emit)
