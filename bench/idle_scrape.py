#!/usr/bin/python3
"""The client of the exporter_idle_2000 scenario: scrape latency of one role
with and without idle connections open to the same listener.

    bench/idle_scrape.py --port P --server-pid PID --expect-body FILE
                         [--idle 2000] [--scrapes 200] [--reps 5]

Each repetition times --scrapes scrapes without idle connections, then opens
--idle connections that send nothing, waits until the server holds a
descriptor for each of them (/proc/PID/fd), times as many scrapes again,
checks that every idle connection is still open, and closes them. A scrape is
a new connection, `GET /metrics` with `Connection: close`, timed from before
connect() to the last byte of the body (read up to its Content-Length); its
status must be 200 and its body the bytes of FILE but for the samples that
every scrape moves (steady_part). 127.0.0.1 only.

Prints one JSON object: p99 per repetition for each phase (ms), every
latency, the server's descriptors, "ok" and "check_failures". Exit status 3
when a check failed.
"""

import argparse
import json
import math
import os
import resource
import socket
import statistics
import sys
import time

HOST = "127.0.0.1"
WARMUP_SCRAPES = 10


def p99(values):
    """Nearest-rank 99th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def server_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_for_fds(pid, predicate, timeout_s):
    deadline = time.monotonic() + timeout_s
    while True:
        n = server_fds(pid)
        if predicate(n) or time.monotonic() > deadline:
            return n
        time.sleep(0.02)


def steady_part(body):
    """The body without the exporter's samples that every scrape moves: its
    scrape counts and durations and its process's CPU and memory."""
    return b"\n".join(line for line in body.split(b"\n")
                      if not line.startswith((b"shmetrics_exporter_scrape", b"process_", b"shmetrics_writer_process_")))


def scrape(port, request):
    """(seconds, status line, body) of one scrape on a new connection."""
    t0 = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the connection closed before the end of the head")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ConnectionError("no Content-Length in the answer")
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the connection closed after %d of %d body bytes" % (len(body), length))
            body += chunk
        elapsed = time.perf_counter() - t0
    return elapsed, head.split(b"\r\n", 1)[0].decode(errors="replace"), body


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server-pid", type=int, required=True, help="whose /proc/PID/fd counts the connections held")
    ap.add_argument("--expect-body", required=True, help="the bytes every scrape must return (but for steady_part)")
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.idle + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.idle + 1024), hard))
    expected = steady_part(open(args.expect_body, "rb").read())
    request = b"GET /metrics HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (HOST.encode(), args.port)
    failures = []

    def timed_scrapes(phase):
        times = []
        for i in range(WARMUP_SCRAPES + args.scrapes):
            try:
                elapsed, status, body = scrape(args.port, request)
            except OSError as e:
                failures.append("%s: scrape %d failed: %s" % (phase, i, e))
                return times
            if not status.startswith("HTTP/1.1 200"):
                failures.append("%s: scrape %d answered %r" % (phase, i, status))
                return times
            if steady_part(body) != expected:
                failures.append("%s: scrape %d returned %d bytes, not the %d expected" % (
                    phase, i, len(body), len(expected)))
                return times
            if i >= WARMUP_SCRAPES:
                times.append(elapsed * 1e3)
        return times

    result = {"idle_connections": args.idle, "scrapes_per_phase": args.scrapes, "reps": args.reps,
              "connection_per_scrape": True, "body_bytes": len(expected),
              "without_idle_p99_ms": [], "with_idle_p99_ms": [], "without_idle_ms": [], "with_idle_ms": [],
              "server_fds_without_idle": [], "server_fds_with_idle": [], "open_idle_s": []}
    for rep in range(args.reps):
        base_fds = server_fds(args.server_pid)
        result["server_fds_without_idle"].append(base_fds)
        times = timed_scrapes("rep %d without idle connections" % rep)
        if failures:
            break
        result["without_idle_ms"].extend(times)
        result["without_idle_p99_ms"].append(p99(times))

        t0 = time.monotonic()
        idle = []
        try:
            for _ in range(args.idle):
                idle.append(socket.create_connection((HOST, args.port), timeout=10))
        except OSError as e:
            failures.append("rep %d: idle connection %d could not connect: %s" % (rep, len(idle), e))
        held = wait_for_fds(args.server_pid, lambda n: n >= base_fds + args.idle, 20)
        result["open_idle_s"].append(time.monotonic() - t0)
        result["server_fds_with_idle"].append(held)
        if held < base_fds + args.idle:
            failures.append("rep %d: the server holds %d descriptors, %d before the %d idle connections" % (
                rep, held, base_fds, args.idle))
        if not failures:
            times = timed_scrapes("rep %d with %d idle connections" % (rep, args.idle))
            result["with_idle_ms"].extend(times)
            if times:
                result["with_idle_p99_ms"].append(p99(times))
        closed = 0
        for s in idle:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass  # still open and silent, as it should be
            except OSError:
                closed += 1
        if closed:
            failures.append("rep %d: %d of the %d idle connections were closed by the server during the "
                            "measurement" % (rep, closed, len(idle)))
        for s in idle:
            s.close()
        # The next baseline starts once the server has let them go.
        wait_for_fds(args.server_pid, lambda n: n <= base_fds, 20)
        if failures:
            break

    for phase in ("without_idle", "with_idle"):
        times = result[phase + "_ms"]
        result[phase + "_pooled_p99_ms"] = p99(times) if times else None
        result[phase + "_pooled_median_ms"] = statistics.median(times) if times else None
    result["ok"] = not failures
    result["check_failures"] = failures
    print(json.dumps(result))
    return 3 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
