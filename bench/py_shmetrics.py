#!/usr/bin/python3
"""shmetrics' Python module: the shmetrics side of the py_* scenarios, each
measured as peer_client_python.py measures client_python in multiprocess
mode (the same loops, pinned to CPU 0, the same values). Run under
/usr/bin/python3 with the build's module importable:

    PYTHONPATH=BUILD/bindings/python py_shmetrics.py counter_inc --n N --reps R --exporter EXE
    ... backend_counter_inc | histogram_observe (same arguments)
    ... scrape --writers W --series S --reps R --min-time-s T --exporter EXE

Each mode works in a fresh segment directory under /dev/shm, removed at the
end, and prints one JSON object; every figure comes with a check of what the
exporter renders (exit 3 when one fails).
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

SEGMENT_DIR = tempfile.mkdtemp(prefix="shmpy-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
os.environ["SHMETRICS_SEGMENT_DIR"] = SEGMENT_DIR

import shmetrics  # noqa: E402

CHECK_FAILURES = []
from pycommon import pin, timed_loop, timed_observes, unpin  # noqa: E402


def check(ok, what):
    if not ok:
        CHECK_FAILURES.append(what)
        print("check failed: " + what, file=sys.stderr)


def exposition(a, path):
    return subprocess.run([a.exporter, "--once", path], check=True, capture_output=True, text=True,
                          timeout=120).stdout


def sample(text, key):
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def timed_incs(a, segment, child, what):
    """ns per child.inc() of a held counter child, checked in the exposition."""

    def body(n):
        for _ in range(n):
            child.inc()

    per_rep = timed_loop(a.reps, a.n, body)
    want = a.n // 10 + a.reps * a.n
    got = sample(exposition(a, segment.path), 'bench_py_inc_total{route="/"}')
    check(got == want, "%s: rendered %r, %d increments made" % (what, got, want))
    return {"ns_per_op": per_rep, "n": a.n}


def mode_counter_inc(a):
    """A held labelled child's inc(), in one process."""
    segment = shmetrics.configure(role="ops", instance="py-inc")
    child = shmetrics.Counter("bench_py_inc", "Held child increments.", ["route"]).labels("/")
    return timed_incs(a, segment, child, "counter_inc")


def mode_backend_counter_inc(a):
    """prometheus_client's own Counter, on shmetrics' backend: a held
    labelled child's inc()."""
    import shmetrics.prometheus_client_backend
    segment = shmetrics.prometheus_client_backend.install(role="ops", instance="py-backend")
    from prometheus_client import Counter
    child = Counter("bench_py_inc", "Held child increments.", ["route"], registry=None).labels("/")
    return timed_incs(a, segment, child, "backend_counter_inc")


def mode_histogram_observe(a):
    """A held labelled child's observe(v): the peer's values and buckets."""
    segment = shmetrics.configure(role="ops", instance="py-observe")
    child = shmetrics.Histogram("bench_py_observe_seconds", "Held child observations.", ["route"]).labels("/")
    per_rep = timed_observes(a.reps, a.n, child)
    want = a.n // 10 + a.reps * a.n
    got = sample(exposition(a, segment.path), 'bench_py_observe_seconds_count{route="/"}')
    check(got == want, "histogram_observe: rendered count %r, %d observations made" % (got, want))
    return {"ns_per_op": per_rep, "n": a.n}


def mode_scrape(a):
    """W forked Python writers × S series, as the peer's scrape mode writes
    them; then scrapes of the exporter over HTTP (keep-alive, the exporter on
    CPU 1, this client on CPU 0): what a Prometheus server waits for, the
    render included (every scrape renders anew)."""
    segment = shmetrics.configure(role="ops", instance="py-scrape", series=max(2048, a.series))
    c = shmetrics.Counter("bench_scrape", "Scrape benchmark series.", ["series"])
    pids = []
    for w in range(a.writers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for i in range(a.series):
                    c.labels("s%d" % i).inc(w + 1)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        check(os.waitpid(pid, 0)[1] == 0, "scrape: a writer failed")
    exporter = subprocess.Popen(
        ["taskset", "-c", "1", a.exporter, "--ops-listen", "127.0.0.1:0", "--ops-segment", segment.path,
         "--judge-listen", "127.0.0.1:0", "--judge-segment", segment.path + "-absent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in exporter.stderr:
            m = re.search(r"event=listening role=ops address=127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            raise SystemExit("the exporter did not start (exit %s)" % exporter.wait())
        threading.Thread(target=lambda: [None for _ in exporter.stderr], daemon=True).start()
        # A minimal HTTP/1.1 client on one kept-alive connection, as a
        # scraper's: the request, the head, Content-Length bytes of body
        # (http.client's parsing would double the time measured here).
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
        request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n"
        pending = bytearray()

        def scrape():
            conn.sendall(request)
            while b"\r\n\r\n" not in pending:
                chunk = conn.recv(262144)
                if not chunk:
                    raise SystemExit("the exporter closed the connection")
                pending.extend(chunk)
            end = pending.index(b"\r\n\r\n") + 4
            head = bytes(pending[:end])
            m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            check(head.startswith(b"HTTP/1.1 200 ") and m is not None, "scrape: answered %r" % head[:40])
            size = int(m.group(1))
            while len(pending) < end + size:
                chunk = conn.recv(262144)
                if not chunk:
                    raise SystemExit("the exporter closed the connection")
                pending.extend(chunk)
            body = bytes(pending[end:end + size])
            del pending[:end + size]
            return body

        pin(0)
        scrape()  # warm-up
        per_rep, body = [], b""
        for _ in range(a.reps):
            n = 0
            t0 = time.perf_counter_ns()
            while True:
                body = scrape()
                n += 1
                if time.perf_counter_ns() - t0 >= a.min_time_s * 1e9:
                    break
            per_rep.append((time.perf_counter_ns() - t0) / n / 1e6)
        unpin()
        conn.close()
    finally:
        exporter.terminate()
        exporter.wait(30)
    text = body.decode()
    expected = a.writers * (a.writers + 1) / 2
    good = sum(1 for i in range(a.series) if sample(text, 'bench_scrape_total{series="s%d"}' % i) == expected)
    check(good == a.series, "scrape: %d of %d series rendered %g" % (good, a.series, expected))
    return {"ms_per_scrape": per_rep, "exposition_bytes": len(body)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["counter_inc", "backend_counter_inc", "histogram_observe", "scrape"])
    p.add_argument("--exporter", required=True)
    p.add_argument("--n", type=int, default=1000000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--writers", type=int, default=16)
    p.add_argument("--series", type=int, default=1000)
    p.add_argument("--min-time-s", type=float, default=0.2)
    a = p.parse_args()
    try:
        result = {"counter_inc": mode_counter_inc, "backend_counter_inc": mode_backend_counter_inc,
                  "histogram_observe": mode_histogram_observe, "scrape": mode_scrape}[a.mode](a)
    finally:
        shutil.rmtree(SEGMENT_DIR, ignore_errors=True)
    result.update({"mode": a.mode, "ok": not CHECK_FAILURES, "check_failures": CHECK_FAILURES})
    print(json.dumps(result))
    return 3 if CHECK_FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
