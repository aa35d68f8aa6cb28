"""gunicorn settings for gunicorn_app.py: shmetrics' backend for
python3-prometheus-client, installed in the master before any worker forks
and before the application (imported by each worker) defines its metrics.

Environment: SHMETRICS_INSTANCE (default "gunicorn"), SHMETRICS_ROLE
(default "ops"), SHMETRICS_SEGMENT_DIR (default /dev/shm/shmetrics-<uid>),
GUNICORN_BIND (default 127.0.0.1:8000), GUNICORN_WORKERS (default 4).
"""
import os

import shmetrics.prometheus_client_backend
from prometheus_client import Counter

shmetrics.prometheus_client_backend.install(
    instance=os.environ.get("SHMETRICS_INSTANCE", "gunicorn"), role=os.environ.get("SHMETRICS_ROLE", "ops"))

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
worker_class = "sync"

# Counted by the master. Nothing has to be cleaned up when a worker dies:
# the exporter sees the death itself and keeps the worker's counts (no
# multiprocess.mark_process_dead here). The hook is only for the count.
# (registry=None: gunicorn runs this file again on SIGHUP, and a second
# registration in prometheus_client's registry would raise; the segment
# returns the same family.)
WORKER_EXITS = Counter("app_gunicorn_worker_exits", "Workers that exited (any cause), seen by the master.",
                       registry=None)


def child_exit(server, worker):
    WORKER_EXITS.inc()
