"""``flask worker``: runs background jobs inside the application context.

With Redis: an RQ worker (with its scheduler) on the queues ``high``, ``mail``, ``default``
and ``low``, plus a maintenance thread that puts back work whose worker died and
re-enqueues due work that Redis lost.  Without Redis: a loop that polls the
database for due jobs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from rq import SimpleWorker, Worker

from campaign import queue
from campaign.extensions import db

log = logging.getLogger(__name__)
MAINTENANCE_SECONDS = 30


class AppWorkerMixin:
    """Runs each job in an application context; a forked child drops the parent's connections."""

    app: Flask

    def perform_job(self, job: Any, rq_queue: Any, *args: Any, **kwargs: Any) -> bool:
        with self.app.app_context():
            return super().perform_job(job, rq_queue, *args, **kwargs)  # type: ignore[misc]

    def _shutdown(self) -> None:
        # RQ stops an idle worker by raising StopRequested from its SIGTERM handler; a signal
        # that lands while the worker writes a log line has that exception swallowed by
        # ``logging``, and the stop was lost: the worker ran on.  Noted first, the stop holds
        # at the main loop's next turn, and a job dequeued meanwhile is handed back (``execute_job``).
        self._stop_requested = True
        super()._shutdown()  # type: ignore[misc]

    def execute_job(self, job: Any, rq_queue: Any) -> None:
        if self._stop_requested:  # type: ignore[has-type]
            # The stop was lost while the worker waited for work, and a job came: it goes back
            # to the front of its queue, untouched (RQ still holds it as queued), for the next
            # worker, and this one stops at its loop's next turn.
            rq_queue.push_job_id(job.id, at_front=True)
            log.info("job %s: handed back to queue %s, this worker is stopping", job.id, rq_queue.name)
            return
        super().execute_job(job, rq_queue)  # type: ignore[misc]

    def main_work_horse(self, job: Any, rq_queue: Any) -> None:
        # The pool's sockets belong to the parent; close=False leaves them to it.
        with self.app.app_context():
            db.engine.dispose(close=False)
        super().main_work_horse(job, rq_queue)  # type: ignore[misc]


class AppWorker(AppWorkerMixin, Worker):
    pass


class AppSimpleWorker(AppWorkerMixin, SimpleWorker):
    """Runs jobs in the worker's own process (tests, and hosts without fork)."""


def build_worker(app: Flask, simple: bool = False) -> Worker:
    cls = AppSimpleWorker if simple else AppWorker
    worker = cls(list(queue.QUEUES), connection=app.extensions["redis"], name=f"demarche-{queue.worker_name()}")
    worker.app = app
    return worker


def _maintenance(app: Flask, stop: threading.Event) -> None:
    interval = float(app.config.get("WORKER_MAINTENANCE_SECONDS") or MAINTENANCE_SECONDS)
    while not stop.wait(interval):
        try:
            with app.app_context():
                queue.recover()
        except Exception:
            log.exception("worker maintenance failed")


def _poll(app: Flask, burst: bool, interval: float) -> None:
    log.info("no Redis: polling the database for due jobs every %ss", interval)
    while True:
        with app.app_context():
            try:
                queue.recover()
                ran = queue.run_due()
            except Exception:
                # A busy database or a failing sweep must not stop the only worker: try again.
                log.exception("polling for due jobs failed; trying again")
                db.session.rollback()
                ran = 0
        if burst and ran == 0:
            return
        if not ran:
            time.sleep(interval)


@click.command("worker")
@click.option("--burst", is_flag=True, help="Run what is due, then exit.")
@click.option("--pidfile", type=click.Path(dir_okay=False), help="Write the process id here.")
@click.option("--interval", default=2.0, show_default=True, help="Polling interval without Redis, in seconds.")
@click.option("--simple", is_flag=True, help="Run jobs in this process instead of a forked child.")
@with_appcontext
def worker_command(burst: bool, pidfile: str | None, interval: float, simple: bool) -> None:
    """Run background jobs until stopped (or, with --burst, until none is due)."""
    app = current_app._get_current_object()
    if pidfile:
        Path(pidfile).write_text(f"{os.getpid()}\n")
    try:
        if queue.mode() != "redis":
            try:
                _poll(app, burst, interval)
            except KeyboardInterrupt:
                log.info("worker stopped")
            return
        queue.recover()
        stop = threading.Event()
        if not burst:
            threading.Thread(target=_maintenance, args=(app, stop), daemon=True, name="maintenance").start()
        try:
            build_worker(app, simple=simple).work(burst=burst, with_scheduler=True)
        finally:
            stop.set()
    finally:
        if pidfile:
            Path(pidfile).unlink(missing_ok=True)
