"""An application written for python3-prometheus-client alone: it imports
nothing of shmetrics. test_python_backend.py runs it unmodified on
prometheus_client's own storage and on shmetrics' backend, and compares."""
from prometheus_client import Counter, Gauge, Histogram, Info, Summary

REQUESTS = Counter("app_requests", "Requests handled.", ["method", "code"])
ERRORS = Counter("app_errors_total", "Requests that raised.")
INFLIGHT = Gauge("app_inflight_requests", "Requests in flight.", multiprocess_mode="livesum")
HANDLED = Gauge("app_handled_requests", "Requests handled, by worker.", multiprocess_mode="sum")
LAST = Gauge("app_last_request_number", "The highest request number handled.", multiprocess_mode="max")
LATENCY = Histogram("app_request_seconds", "Request latency.", ["method"], buckets=(0.1, 0.5, 1, 5))
SIZE = Histogram("app_response_bytes", "Response sizes.", unit="bytes", buckets=[100, 1000, 10000])
PAYLOAD = Summary("app_request_payload_bytes", "Request payload sizes.", ["method"], unit="bytes")
BUILD = Info("app_build", "The build.")


def start():
    BUILD.info({"version": "1.2.3", "flavour": "test"})


@ERRORS.count_exceptions()
def fail():
    raise ValueError("a failed request")


def handle(i):
    """Request i: its method, code, latency and size follow from i."""
    method = "POST" if i % 3 == 0 else "GET"
    with INFLIGHT.track_inprogress():
        REQUESTS.labels(method, "500" if i % 5 == 0 else "200").inc()
        LATENCY.labels(method=method).observe((i % 7) * 0.3)
        SIZE.observe(i * 37 % 20000)
        PAYLOAD.labels(method).observe(i % 13 * 100)
        HANDLED.inc()
        LAST.set(i)
        if i % 11 == 0:
            try:
                fail()
            except ValueError:
                pass
