"""``alert_fanout_100k``: one alert to 100,000 confirmed subscribers (English and French) end to
end, from ``sending.start`` (the deliveries made by one ``INSERT … SELECT``) through one real
``flask worker`` (RQ on ``REDIS_URL``) to the SendGrid stand-in, until the alert is finished.

- ``alert_fanout_100k``: recipients a second, against the floor of the same request bodies
  posted to the same stand-in by a bare keep-alive ``http.client`` loop (in recipients a
  second too: each body carries up to 1,000).
- ``alert_fanout_100k_requests``: requests the stand-in received, against the fewest possible
  (one per 1,000 recipients of one language: 100).
- ``alert_fanout_100k_peak_rss_mb``: the worker's peak resident memory, the largest of the
  worker process itself and every job process it forked and reaped (its ``VmHWM`` and
  ``getrusage``'s ``RUSAGE_CHILDREN``, written by the worker when it exits),
  against the worker's resident memory when idle before the alert.

The subscribers are written with PostgreSQL's ``COPY`` (``executemany`` elsewhere) and deleted
afterwards.  Run alone with ``python -m bench.alerts`` against a migrated ``DATABASE_URL`` and
``REDIS_URL``.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from bench.mailings import _post_loop, _settings, _wait
from bench.run import stop

SUBSCRIBERS = 100_000
LANGUAGES = ("en", "fr")
ROOT = Path(__file__).resolve().parent.parent


def _copy(connection: sa.Connection, table: str, columns: list[str], rows: list[tuple]) -> None:
    """Bulk-write ``rows``: ``COPY`` on PostgreSQL, ``executemany`` elsewhere."""
    if connection.dialect.name == "postgresql":
        cursor = connection.connection.driver_connection.cursor()
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # psycopg 3
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    connection.connection.driver_connection.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608 - names are ours
        rows,
    )


def _prepare(app, stamp: int) -> int:
    """A topic of this run, 100,000 confirmed subscribers following it (half English, half
    French) and a draft alert to it with a text in each language; returns the alert's id."""
    from campaign.alerts.models import Alert, AlertText, Subscriber, Topic
    from campaign.db import utcnow
    from campaign.extensions import db

    with app.app_context():
        topic = Topic(key=f"situation-bench-{stamp}", kind="situation", label=f"Bench {stamp}", position=9999)
        db.session.add(topic)
        db.session.commit()
        now = utcnow()
        rows = [
            (f"supporter{n:06d}-{stamp}@bench.example", f"Supporter {n}", LANGUAGES[n % 2], "confirmed",
             f"bench-key-{n}", "I agree to receive alerts.", "bench", now, now, now, now, "", "")
            for n in range(SUBSCRIBERS)
        ]  # fmt: skip
        columns = ["email", "name", "language", "status", "token_key", "consent_text", "consent_version",
                   "consented_at", "confirmed_at", "created_at", "updated_at", "unsubscribed_via",
                   "suppressed_reason"]  # fmt: skip
        with db.engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                rows = [(*row[:7], *(value.replace(tzinfo=None).isoformat(" ") for value in row[7:11]), *row[11:])
                        for row in rows]  # fmt: skip
            _copy(connection, "subscribers", columns, rows)
            ids = connection.scalars(
                sa.select(Subscriber.id).where(Subscriber.email.like(f"%-{stamp}@bench.example"))
            ).all()
            _copy(connection, "subscriber_topics", ["subscriber_id", "topic_id"], [(i, topic.id) for i in ids])
        if db.engine.dialect.name == "postgresql":
            # As autovacuum would on a live database: planned on fresh tables without statistics,
            # the INSERT … SELECT can take minutes instead of a second.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(sa.text("ANALYZE subscribers, subscriber_topics"))
        alert = Alert(language="en", topic_ids=[topic.id])
        alert.texts = [
            AlertText(language="en", subject="A new open letter", body="The coalition wrote **again**: read it."),
            AlertText(language="fr", subject="Une nouvelle lettre ouverte", body="La coalition a **écrit** : lisez."),
        ]
        db.session.add(alert)
        db.session.commit()
        return alert.id


def _forget(app, alert_id: int, stamp: int) -> None:
    """Delete the run's alert, deliveries, subscribers, topic and jobs, and take the chunk jobs
    the first one left with nothing to do off RQ's queue (a later benchmark's worker would
    start a process for each)."""
    from campaign.alerts.models import Alert, AlertDelivery, Subscriber, Topic
    from campaign.extensions import db
    from campaign.queue import Job, discard

    with app.app_context(), db.engine.begin() as connection:
        left = connection.scalars(
            sa.delete(Job).where(Job.kind.in_(["alert.dispatch", "alert.chunk"]),
                                 Job.payload["alert_id"].as_integer() == alert_id).returning(Job.rq_job_id)
        ).all()  # fmt: skip
        for rq_job_id in left:
            discard(rq_job_id)
        connection.execute(sa.delete(AlertDelivery).where(AlertDelivery.alert_id == alert_id))
        connection.execute(sa.delete(Alert).where(Alert.id == alert_id))
        connection.execute(sa.delete(Subscriber).where(Subscriber.email.like(f"%-{stamp}@bench.example")))
        connection.execute(sa.delete(Topic).where(Topic.key == f"situation-bench-{stamp}"))


def _worker(env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, Path, Path]:
    """One ``flask worker`` that writes its peak memory (and its job processes') when it exits."""
    pidfile, report = workdir / "alert-worker.pid", workdir / "alert-worker-rss.json"
    report.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.alerts", "worker", str(report), "--pidfile", str(pidfile)]
    log = (workdir / "alert-worker.log").open("wb")
    # A session of its own, so that ``stop`` can end the worker with the job process it forked.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process, pidfile, report


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def measure(env: dict[str, str], workdir: Path) -> dict[str, float]:
    from campaign import create_app
    from campaign.alerts import sending
    from campaign.alerts.models import Alert
    from campaign.extensions import db
    from tests.sendgrid_standin import StandIn

    stamp = int(time.time())
    with StandIn() as standin:
        settings = _settings(env, standin) | {"SITE_URL": "https://alerts.bench.example"}
        app = create_app(dict(settings))
        alert_id = _prepare(app, stamp)
        worker, pidfile, report = _worker(dict(env, **settings), workdir)
        redis = app.extensions["redis"]
        try:
            _wait(lambda: pidfile.exists() and bool(redis.smembers("rq:workers")), 60, "the worker started")
            pid = int(pidfile.read_text())
            idle_kb = _rss_kb(pid)
            with app.app_context():
                start = time.perf_counter()
                sending.start(db.session.get(Alert, alert_id))

                def finished() -> bool:
                    if worker.poll() is not None:
                        raise RuntimeError(f"the worker stopped; see {workdir / 'alert-worker.log'}")
                    db.session.expire_all()
                    return db.session.get(Alert, alert_id).status == "finished"

                _wait(finished, 600, "the alert finished")
                elapsed = time.perf_counter() - start
                progress = sending.progress(alert_id)
        finally:
            stop(worker, pidfile, 60)
        rss = json.loads(report.read_text()) if report.exists() else {}
        peak_kb = rss.get("peak_kb", 0)
        print(f"alert_fanout_100k: peak resident memory {rss.get('self_kb', 0) // 1024} MB in the worker, "
              f"{rss.get('children_kb', 0) // 1024} MB in its largest job process", file=sys.stderr)  # fmt: skip
        counts, requests = standin.counts(), standin.requests
        if progress.counts["sent"] != SUBSCRIBERS or len(counts) != SUBSCRIBERS or max(counts.values()) != 1:
            twice = sorted(address for address, count in counts.items() if count > 1)
            raise RuntimeError(f"the alert did not reach each subscriber once: {progress.counts}, {len(counts)} "
                               f"addresses accepted, {len(twice)} more than once ({twice[:3]})")  # fmt: skip
        bodies = [accepted.body for accepted in standin.accepted]
        standin.reset()
        floor_requests = _post_loop(standin.url, standin.api_key, bodies)
        per_request = sum(len(body["personalizations"]) for body in bodies) / len(bodies)
        _forget(app, alert_id, stamp)
        with app.app_context():
            db.engine.dispose()
    fewest = sum(math.ceil(SUBSCRIBERS / len(LANGUAGES) / 1000) for _ in LANGUAGES)
    return {
        "rate": SUBSCRIBERS / elapsed,
        "floor": floor_requests * per_request,
        "requests": requests,
        "fewest": fewest,
        "peak_mb": peak_kb / 1024,
        "idle_mb": idle_kb / 1024,
    }


def run(env: dict[str, str], workdir: Path, emit: Callable[[str, float, str, float], None]) -> None:
    if not env.get("REDIS_URL"):
        print("REDIS_URL is not set: alert_fanout_100k needs Redis and a worker; skipped", file=sys.stderr)
        return
    figures = measure(env, workdir)
    emit("alert_fanout_100k", figures["rate"], "recipients/s", figures["floor"])
    emit("alert_fanout_100k_requests", figures["requests"], "requests", figures["fewest"])
    emit("alert_fanout_100k_peak_rss_mb", figures["peak_mb"], "MB", figures["idle_mb"])


def _worker_main(report: Path, arguments: list[str]) -> None:
    """``flask worker`` in this process; on exit, the peak resident memory of the process and of
    the largest job process it reaped, in KiB.

    The process's own peak is ``VmHWM``, not ``ru_maxrss``: Linux keeps ``ru_maxrss`` across
    ``execve``, so it would report the benchmark process that started the worker (the moment
    between its fork and the exec), hundreds of MB after the other benchmarks ran in it.
    """

    def write() -> None:
        own = _rss_kb(os.getpid(), "VmHWM")
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        report.write_text(json.dumps({"self_kb": own, "children_kb": children, "peak_kb": max(own, children)}))

    atexit.register(write)
    from flask.cli import main

    sys.argv = ["flask", "--app", "wsgi", "worker", *arguments]
    main()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        _worker_main(Path(sys.argv[2]), sys.argv[3:])
    else:
        import tempfile

        from bench.run import emit

        run(dict(os.environ), Path(tempfile.mkdtemp(prefix="demarche-bench-")), emit)
