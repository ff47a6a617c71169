"""Gunicorn settings of the benchmarks' servers: each worker says when it is ready to serve.

``bench.run.gunicorn`` waits for every worker before it lets a load generator in.  A load
generator's keep-alive connections stay with the worker that accepted them, so one that
starts while the second worker is still importing the app gives every connection to the
first: the run then measures one core of two (seen as the same page at 1,300 and 3,400
requests a second in alternate runs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def post_worker_init(worker: Any) -> None:
    folder = os.environ.get("BENCH_READY_DIR")
    if folder:
        (Path(folder) / str(worker.pid)).touch()
