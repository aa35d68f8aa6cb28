#!/usr/bin/python3
"""HTTP clients for the exporter's load, abuse and memory tests (stdlib only).

  burst PORT N
      N scrapes of /metrics at once, each on its own connection, released
      together from a barrier. Exit 0 when every one answered 200 with a
      complete body.
  slow PORT --slow N --scrapes M --hold S [--expect-during-hold]
      N slow clients each send a GET /metrics head one byte a second for S
      seconds, then the rest of it at once, and read the answer. 1.5 s after
      they connected, M scrapes start at once (each on its own connection).
      Reports what happened to the slow clients and how long the scrapes
      took. Exit 0 when every scrape answered 200 with a complete body (with
      --expect-during-hold: and before the slow clients let go).
  scrapes PORT --count N --concurrency C [--series NAME]... [--deadline S]
      N scrapes over C keep-alive connections (one thread each, reconnecting
      when the server closes). Exit 0 when every scrape answered 200 with a
      complete body and no --series value ever went down from one scrape to
      the next of the same thread.
  smuggle PORT [--method METHOD] [--timeout S]
      METHOD (default GET) /metrics with a body that is itself a request, on
      one connection. Exit 0 when the answer is a 4xx and the server then
      closes the connection within S seconds (default 10; less than the
      server's keep-alive timeout to tell a close for the refusal from one
      for idleness) without answering the inner request.

A complete body ends with a newline, its last line is one of the exporter's
own shmetrics_* samples, and it says shmetrics_segment_up{role="ops"} 1.
Prints key=value lines on stdout; reasons for failures on stderr.
"""

import argparse
import http.client
import socket
import statistics
import sys
import threading
import time

HOST = "127.0.0.1"
UP = b'shmetrics_segment_up{role="ops"} 1\n'


def complete(body):
    if not body.endswith(b"\n") or UP not in body:
        return False
    return body.rstrip(b"\n").rsplit(b"\n", 1)[-1].startswith(b"shmetrics_")


def scrape_once(port, timeout):
    """One GET /metrics on a fresh connection: (ok, seconds, why)."""
    start = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        res = conn.getresponse()
        body = res.read()
        seconds = time.monotonic() - start
        if res.status != 200:
            return False, seconds, "status %d" % res.status
        if not complete(body):
            return False, seconds, "incomplete body of %d bytes" % len(body)
        return True, seconds, ""
    except (OSError, http.client.HTTPException) as e:
        return False, time.monotonic() - start, "%s: %s" % (type(e).__name__, e)
    finally:
        conn.close()


def run_threads(count, target):
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    return threads


def summary(values):
    if not values:
        return "none"
    return "min=%.3f median=%.3f max=%.3f" % (min(values), statistics.median(values), max(values))


def cmd_burst(args):
    barrier = threading.Barrier(args.n)
    results = [None] * args.n

    def one(i):
        barrier.wait()
        results[i] = scrape_once(args.port, args.timeout)

    for t in run_threads(args.n, one):
        t.join(args.timeout + 30)
    results = [r or (False, 0.0, "client thread did not finish") for r in results]
    ok = sum(1 for r in results if r[0])
    for why in sorted({r[2] for r in results if not r[0]}):
        print("burst failure: " + why, file=sys.stderr)
    print("burst_scrapes=%d answered_complete=%d seconds %s" % (args.n, ok, summary([r[1] for r in results])))
    return 0 if ok == args.n else 1


def slow_client(port, hold, out):
    """Sends a request head a byte a second for `hold` seconds, then the rest."""
    head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 64
    start = time.monotonic()
    try:
        s = socket.create_connection((HOST, port), timeout=hold + 60)
    except OSError as e:
        out.update(outcome="connect failed: %s" % e, seconds=0.0)
        return
    with s:
        try:
            sent = 0
            while time.monotonic() - start < hold and sent < len(head):
                s.sendall(head[sent:sent + 1])
                sent += 1
                time.sleep(1.0)
            out["let_go"] = time.monotonic()
            s.sendall(head[sent:] + b"\r\nConnection: close\r\n\r\n")
            answer = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except OSError as e:
            out.update(outcome="cut by the server (%s)" % type(e).__name__, seconds=time.monotonic() - start)
            return
        seconds = time.monotonic() - start
        if answer.startswith(b"HTTP/1.1 200"):
            out.update(outcome="answered 200", seconds=seconds)
        elif answer:
            out.update(outcome="answered " + answer.split(b"\r\n", 1)[0].decode(errors="replace"), seconds=seconds)
        else:
            out.update(outcome="cut by the server (closed)", seconds=seconds)


def cmd_slow(args):
    slow = [dict() for _ in range(args.slow)]
    slow_threads = run_threads(args.slow, lambda i: slow_client(args.port, args.hold, slow[i]))
    time.sleep(1.5)  # the slow clients are connected and have sent a byte or two
    started = time.monotonic()
    results = [None] * args.scrapes
    finished = [float("inf")] * args.scrapes
    timeout = args.hold + 30

    def one(i):
        results[i] = scrape_once(args.port, timeout)
        finished[i] = time.monotonic()

    for t in run_threads(args.scrapes, one):
        t.join(timeout + 10)
    results = [r or (False, 0.0, "client thread did not finish") for r in results]
    for t in slow_threads:
        t.join(args.hold + 70)
    ok = sum(1 for r in results if r[0])
    for why in sorted({r[2] for r in results if not r[0]}):
        print("scrape failure: " + why, file=sys.stderr)
    outcomes = {}
    for s in slow:
        outcomes.setdefault(s.get("outcome", "unfinished"), []).append(s.get("seconds", 0.0))
    for outcome, seconds in sorted(outcomes.items()):
        print("slow_clients=%d outcome=\"%s\" after_seconds %s" % (len(seconds), outcome, summary(seconds)))
    # Answered while the slow clients still held on: before the first one
    # that was still sending sent the rest of its head.
    let_go = min([s["let_go"] for s in slow if "let_go" in s], default=float("inf"))
    during = sum(1 for r, f in zip(results, finished) if r[0] and f < let_go)
    print("scrapes=%d answered_complete=%d answered_during_hold=%d seconds %s" %
          (args.scrapes, ok, during, summary([r[1] for r in results])))
    if ok != args.scrapes:
        return 1
    if args.expect_during_hold and during != args.scrapes:
        print("only %d of %d scrapes answered before the slow clients let go after %.1f s" %
              (during, args.scrapes, args.hold), file=sys.stderr)
        return 1
    return 0


def series_value(body, name):
    """The value of the first sample of `name` (any labels), or None."""
    plain, labelled = name.encode() + b" ", name.encode() + b"{"
    for line in body.split(b"\n"):
        if line.startswith(plain) or line.startswith(labelled):
            return float(line.rsplit(b" ", 1)[1])
    return None


def cmd_scrapes(args):
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "failed": 0, "decreases": 0, "whys": set(), "first": {}, "last": {}}
    deadline = time.monotonic() + args.deadline

    def take():
        with lock:
            if state["next"] >= args.count or time.monotonic() > deadline:
                return False
            state["next"] += 1
            return True

    def record(ok, why="", decreases=0):
        with lock:
            state["ok" if ok else "failed"] += 1
            state["decreases"] += decreases
            if why:
                state["whys"].add(why)

    def worker(i):
        conn = http.client.HTTPConnection(HOST, args.port, timeout=30)
        previous = {}
        while take():
            try:
                conn.request("GET", "/metrics")
                res = conn.getresponse()
                body = res.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                record(False, "%s: %s" % (type(e).__name__, e))
                continue
            if res.status != 200 or not complete(body):
                record(False, "status %d, %d bytes, complete=%s" % (res.status, len(body), complete(body)))
                continue
            whys, down = [], 0
            for name in args.series:
                value = series_value(body, name)
                if value is None:
                    whys.append("no sample of %s" % name)
                    continue
                if name in previous and value < previous[name]:
                    down += 1
                    whys.append("%s went down from %g to %g" % (name, previous[name], value))
                previous[name] = value
                with lock:
                    state["first"].setdefault(name, value)
                    state["last"][name] = max(state["last"].get(name, value), value)
            record(not whys, "; ".join(whys), down)
        conn.close()

    start = time.monotonic()
    for t in run_threads(args.concurrency, worker):
        t.join(args.deadline + 60)
    seconds = time.monotonic() - start
    for why in sorted(state["whys"]):
        print("scrape failure: " + why, file=sys.stderr)
    done = state["ok"] + state["failed"]
    print("scrapes=%d ok=%d failed=%d decreases=%d seconds=%.1f per_second=%.0f" %
          (done, state["ok"], state["failed"], state["decreases"], seconds, done / max(seconds, 1e-9)))
    for name in args.series:
        if name in state["first"]:
            print("series=%s first=%g last=%g" % (name, state["first"][name], state["last"][name]))
    if done < args.count:
        print("only %d of %d scrapes within the %d s deadline" % (done, args.count, args.deadline), file=sys.stderr)
        return 1
    return 0 if state["ok"] == args.count and state["decreases"] == 0 else 1


def cmd_smuggle(args):
    inner = b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    outer = b"%s /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % (
        args.method.encode(), len(inner))
    with socket.create_connection((HOST, args.port), timeout=args.timeout) as s:
        s.sendall(outer + inner)
        answer = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except socket.timeout:
            print("the server kept the connection open for %g s after refusing the body" % args.timeout,
                  file=sys.stderr)
            return 1
        except OSError as e:  # a reset after the answer still counts as closed
            print("connection ended with %s" % type(e).__name__)
    status_lines = [line for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")]
    print("answers=%d first=\"%s\"" % (len(status_lines), status_lines[0].decode() if status_lines else ""))
    if len(status_lines) != 1 or not status_lines[0].split(b" ")[1].startswith(b"4"):
        print("want exactly one 4xx answer, got: %r" % answer[:300], file=sys.stderr)
        return 1
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("burst")
    p.add_argument("port", type=int)
    p.add_argument("n", type=int)
    p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(run=cmd_burst)
    p = sub.add_parser("slow")
    p.add_argument("port", type=int)
    p.add_argument("--slow", type=int, required=True)
    p.add_argument("--scrapes", type=int, required=True)
    p.add_argument("--hold", type=float, required=True)
    p.add_argument("--expect-during-hold", action="store_true")
    p.set_defaults(run=cmd_slow)
    p = sub.add_parser("scrapes")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--series", action="append", default=[])
    p.add_argument("--deadline", type=int, default=300)
    p.set_defaults(run=cmd_scrapes)
    p = sub.add_parser("smuggle")
    p.add_argument("port", type=int)
    p.add_argument("--method", default="GET")
    p.add_argument("--timeout", type=float, default=10)
    p.set_defaults(run=cmd_smuggle)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
