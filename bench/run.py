"""``make bench``: figures for the app, each against a floor measured in the same run.

Prints one JSON object per line: ``{"name", "value", "unit", "floor", "ratio"}``;
``ratio`` is value over floor, higher is better.  Floor lines carry their own value
as floor (ratio 1).  The app is served by gunicorn on ``DATABASE_URL`` (PostgreSQL
in earnest; a SQLite file when unset) and ``REDIS_URL`` when set; the benchmark
migrates that database itself.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKERS = 2
GUNICORN = ["--workers", str(WORKERS), "--threads", "4", "--worker-class", "gthread", "--log-level", "warning",
            "--config", "python:bench.gunicorn_ready"]  # fmt: skip
WRK_SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
LOOP_COUNT = 2000


def emit(name: str, value: float, unit: str, floor: float) -> None:
    ratio = value / floor if floor else 0.0
    line = {"name": name, "value": round(value, 2), "unit": unit, "floor": round(floor, 2), "ratio": round(ratio, 3)}
    print(json.dumps(line), flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(port: int, path: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answered on port {port} within {seconds}s")


def stop(process: subprocess.Popen, pidfile: Path, seconds: float) -> None:
    """SIGTERM the server or worker named by ``pidfile``; if it has not ended within ``seconds``,
    SIGKILL its session (started with ``start_new_session``).  A worker that missed the signal
    (RQ loses one that arrives while it writes a log line) must not live on and take the next
    benchmark's jobs, with a configuration pointing at this benchmark's stand-in."""
    pid = int(pidfile.read_text()) if pidfile.exists() else process.pid
    os.kill(pid, signal.SIGTERM)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        print(f"{pidfile.name}: still running {seconds} s after SIGTERM, killed", file=sys.stderr)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def gunicorn(target: str, env: dict[str, str], workdir: Path, probe: str) -> Iterator[int]:
    """A gunicorn serving ``target`` on a free port, once every worker is ready (``bench.gunicorn_ready``)."""
    port = free_port()
    pidfile = workdir / f"gunicorn-{port}.pid"
    ready = workdir / f"gunicorn-{port}-ready"
    ready.mkdir()
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), *GUNICORN, "--bind", f"127.0.0.1:{port}", "--pid", str(pidfile), target],
        cwd=ROOT,
        env=dict(env, BENCH_READY_DIR=str(ready)),
        start_new_session=True,
    )
    try:
        wait_for(port, probe)
        deadline = time.monotonic() + 60
        while len(list(ready.iterdir())) < WORKERS:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"gunicorn on port {port}: not every worker started")
            time.sleep(0.05)
        yield port
    finally:
        stop(process, pidfile, 30)


def wrk(port: int, path: str, connections: int = 16) -> float:
    """Requests per second that wrk measured."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{WRK_SECONDS}s", f"http://127.0.0.1:{port}{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise RuntimeError(f"{path}: {non_2xx.group(1)} error responses\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def insert_floor(url: str, rounds: int = 3) -> float:
    """Rows a second for a bare one-row insert and commit, on the benchmark's database: the best
    of ``rounds`` runs.  Each commit waits for the disk, whose latency dips while it does other
    work (a checkpoint after the migration, say): a run of 860 rows/s on a machine where five
    others made 1,250 to 1,400 would flatter every ratio against it."""
    engine = sa.create_engine(url)
    table = sa.Table(
        "bench_floor", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Text)
    )
    table.drop(engine, checkfirst=True)
    table.create(engine)
    try:
        rates = []
        for _ in range(rounds):
            start = time.perf_counter()
            for n in range(LOOP_COUNT):
                with engine.begin() as connection:
                    connection.execute(table.insert().values(v=f"row {n}"))
            rates.append(LOOP_COUNT / (time.perf_counter() - start))
        return max(rates)
    finally:
        table.drop(engine)
        engine.dispose()


class _Accept(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def post_loop_floor() -> float:
    """Requests a second for a bare loop posting JSON to a local HTTP server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1])
        body = json.dumps({"personalizations": [{"to": [{"email": "a@example.org"}]}]})
        start = time.perf_counter()
        for _ in range(LOOP_COUNT):
            connection.request("POST", "/v3/mail/send", body, {"Content-Type": "application/json"})
            connection.getresponse().read()
        return LOOP_COUNT / (time.perf_counter() - start)
    finally:
        server.shutdown()


def main() -> int:
    if shutil.which("wrk") is None:
        print("make bench needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="demarche-bench-"))
    env = dict(os.environ, FLASK_APP="wsgi", APP_ENV="development")
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
        print("DATABASE_URL is not set: benchmarking on SQLite", file=sys.stderr)
    env.setdefault("OUTBOX_DIR", str(workdir / "outbox"))
    env["RATELIMIT_ENABLED"] = "false"
    subprocess.run([str(BIN / "flask"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)

    with gunicorn("bench.floor_app:app", env, workdir, "/hello") as port:
        hello = wrk(port, "/hello")
    emit("floor_hello_world", hello, "req/s", hello)
    with gunicorn("wsgi:app", env, workdir, "/healthz") as port:
        emit("healthz", wrk(port, "/healthz"), "req/s", hello)
        emit("login_page", wrk(port, "/login"), "req/s", hello)
    from config import normalise_database_url

    inserts = insert_floor(normalise_database_url(env["DATABASE_URL"]))
    emit("floor_db_insert_one_row", inserts, "rows/s", inserts)
    posts = post_loop_floor()
    emit("floor_http_post_loop", posts, "req/s", posts)
    from bench.contacts import import_rate

    emit("contacts_import_50000", import_rate(env), "rows/s", inserts)
    from bench.signatures import run as signatures_bench

    signatures_bench(env, workdir, hello, inserts)
    from bench.mailings import run as mailings_bench

    mailings_bench(env, workdir, emit)
    from bench.alerts import run as alerts_bench

    alerts_bench(env, workdir, emit)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
