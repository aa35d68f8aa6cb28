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
    CPU 1, this client on CPU 0): per scrape, the time the exporter spent
    rendering (its own shmetrics_exporter_scrape_duration_seconds, the
    figure comparable with client_python's render) and what the client waited
    (every scrape renders anew), and the round trip of /healthz on the same
    connection (what HTTP alone costs on this machine)."""
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
        # scraper's: the request, the head, Content-Length bytes of body,
        # received into one buffer (http.client's parsing, or a recv of a new
        # 256 KiB object each time, would double the time measured here).
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
        buf = bytearray(1 << 22)
        view = memoryview(buf)
        filled = 0  # bytes received, not yet consumed

        def receive():
            nonlocal filled
            n = conn.recv_into(view[filled:])
            if n == 0:
                raise SystemExit("the exporter closed the connection")
            filled += n

        def get(path):
            nonlocal filled
            conn.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n")
            while (end := buf.find(b"\r\n\r\n", 0, filled)) < 0:
                receive()
            end += 4
            head = bytes(buf[:end])
            m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            check(head.startswith(b"HTTP/1.1 200 ") and m is not None, "scrape: answered %r" % head[:40])
            size = int(m.group(1))
            while filled < end + size:
                receive()
            body = bytes(buf[end:end + size])
            buf[:filled - end - size] = buf[end + size:filled]
            filled -= end + size
            return body

        def timed(path):
            """ms per GET of path, per repetition; the last body of each."""
            per_rep, bodies = [], []
            for _ in range(a.reps):
                n = 0
                t0 = time.perf_counter_ns()
                while True:
                    body = get(path)
                    n += 1
                    if time.perf_counter_ns() - t0 >= a.min_time_s * 1e9:
                        break
                per_rep.append((time.perf_counter_ns() - t0) / n / 1e6)
                bodies.append(body)
            return per_rep, bodies

        def render_seconds(body):
            """The exporter's own account of its renders so far: (sum, count)."""
            key = '{role="ops"}'
            text = body.decode()
            return (sample(text, "shmetrics_exporter_scrape_duration_seconds_sum" + key),
                    sample(text, "shmetrics_exporter_scrape_duration_seconds_count" + key))

        pin(0)
        before = get(b"/metrics")  # warm-up
        per_rep, bodies = timed(b"/metrics")
        # Each body holds the renders before it: the time of the renders of
        # a repetition is the difference between its last body and the one before.
        render_ms = []
        for prev, cur in zip([before] + bodies, bodies):
            (s0, c0), (s1, c1) = render_seconds(prev), render_seconds(cur)
            render_ms.append((s1 - s0) / (c1 - c0) * 1e3)
        healthz_ms, _ = timed(b"/healthz")
        unpin()
        conn.close()
        body = bodies[-1]
    finally:
        exporter.terminate()
        exporter.wait(30)
    text = body.decode()
    expected = a.writers * (a.writers + 1) / 2
    good = sum(1 for i in range(a.series) if sample(text, 'bench_scrape_total{series="s%d"}' % i) == expected)
    check(good == a.series, "scrape: %d of %d series rendered %g" % (good, a.series, expected))
    return {"ms_per_scrape": per_rep, "render_ms": render_ms, "healthz_ms": healthz_ms,
            "exposition_bytes": len(body)}


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
