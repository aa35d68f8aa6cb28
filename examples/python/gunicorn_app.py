"""A WSGI application for gunicorn, instrumented with python3-prometheus-client
as any application is: it does not know where its metrics are stored.
gunicorn.conf.py installs shmetrics' backend in the master, so every
preforked worker writes to one shared segment and shmetrics-exporter serves
the totals: no PROMETHEUS_MULTIPROC_DIR, no files, no cleanup of dead
workers.

    gunicorn -c examples/python/gunicorn.conf.py gunicorn_app:app

Routes: /work?ms=N (sleeps N ms, at most 1000), /pid (the worker's pid),
anything else 404.
"""
import os
import time
from urllib.parse import parse_qs

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("app_http_requests", "Requests answered, by route and status.", ["route", "status"])
LATENCY = Histogram("app_http_request_seconds", "Time to answer a request.", ["route"],
                    buckets=(.001, .005, .01, .05, .1, .5, 1))
IN_FLIGHT = Gauge("app_http_requests_in_flight", "Requests being answered.", multiprocess_mode="livesum")


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    route = path if path in ("/work", "/pid") else "other"
    start = time.perf_counter()
    with IN_FLIGHT.track_inprogress():
        if path == "/work":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            try:
                ms = min(max(int(query.get("ms", ["0"])[0]), 0), 1000)
            except ValueError:
                ms = 0
            time.sleep(ms / 1000)
            status, body = "200 OK", b"done\n"
        elif path == "/pid":
            status, body = "200 OK", b"%d\n" % os.getpid()
        else:
            status, body = "404 Not Found", b"not found\n"
        LATENCY.labels(route).observe(time.perf_counter() - start)
        REQUESTS.labels(route, status.split()[0]).inc()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
