#!/usr/bin/python3
"""Raw-socket attacks on the exporter, for tests/exporter_abuse_test.sh.

Standard library only; talks to 127.0.0.1 only. Every attack is bounded in
count (connections, bytes, requests) and in time (--seconds or --hold), so
it ends on a server that never answers, never closes, or reads forever.
Each prints what it measured as key=value lines on stdout (one summary line,
sometimes a line per connection) and exits 0; the script judges. Exit 2:
bad arguments.

  range PORT [--count N] [--head-only] [--seconds S]
      N (1) connections each GET /metrics with `Range: bytes=0-100000000`
      and read the answer (with --head-only: its head, then leave).
  many-ranges PORT [--ranges N] [--seconds S]
      One GET /metrics asking for N (500) ranges, each the whole body of a
      scrape made just before ("bytes=0-3031,0-3031,...": a ~4 KB head).
  flood-headers PORT --bytes N [--connections C] [--seconds S] [--pid PID --rss-growth-kb K]
      A request line, then small header lines ("X-Flood-NNNNNN: a") as fast as
      the socket takes them, up to N bytes per connection; the head never ends.
  long-line PORT --bytes N [...the same options]
      A request line, then one header line of N bytes with no newline.
      Both stop a connection when the server answers, closes or resets it, and
      stop everything after S seconds or, with --pid, once that process's
      VmRSS has grown by K kB since the start (the verdict is known then, and
      the machine is spared the rest). The client's send buffer is 64 KiB, so a server that
      stops reading is noticed within a few hundred KiB.
  idle PORT N [--hold S]
      Opens N connections and sends nothing. Prints "ready" when all are
      open, then holds them S seconds (or until SIGTERM) and reports how many
      the server closed and when.
  trickle PORT N [--interval S] [--hold S] [--reconnect]
      N clients each send a request head one byte every --interval seconds;
      the head (~1 KB) does not end within the hold. Prints "ready" when all
      are connected. With --reconnect a client the server cut connects again.
      Reports the cuts and the seconds from connect to cut.
  keep-alive PORT [--wait S]
      One GET /metrics on a keep-alive connection, then waits up to S seconds
      for the server to close the idle connection.
  scrapes PORT [--count N] [--timeout S] [--give-up-after F]
      N GET /metrics one after another, each on a new connection, each given
      S seconds; stops after F failures. Reports p50/p99/max milliseconds.
  pipeline PORT [--count N]
      N requests in one send(), alternating GET /metrics and GET /nope (the
      last says Connection: close); reads the answers in order.
  smuggle PORT --kind two-lengths|spaced-length|chunked [--seconds S]
      GET /metrics whose body is a second request, GET /smuggled, framed by
      "Content-Length: 0" then "Content-Length: N", by "Content-Length : N",
      or by "Transfer-Encoding: chunked" (a last chunk, then the request).
      The head goes first, the body 0.2 s later: a server that reads no body
      takes it for a request of its own. Reports every answer and how the
      connection ended.
  refused PORT [--requests N] [--connections C] [--seconds S]
      N GET /nope spread over C keep-alive connections (one thread each,
      connecting again when the server closes).
"""

import argparse
import resource
import select
import signal
import socket
import statistics
import sys
import threading
import time

HOST = "127.0.0.1"
SEND_BUFFER_BYTES = 64 * 1024
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect(port, timeout=5.0, send_buffer=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if send_buffer:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    s.settimeout(timeout)
    try:
        s.connect((HOST, port))
    except OSError:
        s.close()
        raise
    return s


def request(path="/metrics", headers=(), close=False):
    lines = [b"GET %s HTTP/1.1" % path.encode(), b"Host: 127.0.0.1"]
    lines += [h.encode() if isinstance(h, str) else h for h in headers]
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def rss_kb(pid):
    """VmRSS of `pid` in kB, or None when it cannot be read."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def spread(values):
    if not values:
        return "none"
    return "%.2f/%.2f/%.2f" % (min(values), statistics.median(values), max(values))


class Answers:
    """Reads HTTP answers one after another from a socket, until a deadline.

    `ended` says why reading stopped: "closed" (end of file), "reset",
    "timeout", or "" while the stream goes on.
    """

    def __init__(self, sock, deadline):
        self.sock = sock
        self.deadline = deadline
        self.buf = bytearray()
        self.ended = ""

    def _fill(self):
        remaining = self.deadline - time.monotonic()
        if self.ended or remaining <= 0:
            self.ended = self.ended or "timeout"
            return False
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        if not poller.poll(remaining * 1000):
            self.ended = "timeout"
            return False
        try:
            data = self.sock.recv(256 * 1024)
        except (ConnectionResetError, BrokenPipeError):
            self.ended = "reset"
            return False
        except OSError as e:
            self.ended = type(e).__name__
            return False
        if not data:
            self.ended = "closed"
            return False
        self.buf += data
        return True

    def _line(self):
        while True:
            at = self.buf.find(b"\r\n")
            if at >= 0:
                line = bytes(self.buf[:at])
                del self.buf[:at + 2]
                return line
            if len(self.buf) > 64 * 1024 or not self._fill():
                return None

    def _body(self, length, keep):
        """Reads `length` bytes (None: until the end); returns (count, kept bytes)."""
        count, kept = 0, bytearray()
        while length is None or count < length:
            if not self.buf and not self._fill():
                break
            take = len(self.buf) if length is None else min(len(self.buf), length - count)
            if len(kept) < keep:
                kept += self.buf[:min(take, keep - len(kept))]
            del self.buf[:take]
            count += take
        return count, bytes(kept)

    def next(self, head_only=False, keep=0):
        """The next answer as a dict (status, headers, content_length,
        body_bytes, complete, body: its first `keep` bytes), or None."""
        status_line = self._line()
        if status_line is None:
            return None
        parts = status_line.split(b" ", 2)
        answer = {"status": int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0,
                  "status_line": status_line.decode(errors="replace"), "headers": {}}
        while True:
            line = self._line()
            if line is None:
                answer["complete"] = False
                return answer
            if not line:
                break
            name, _, value = line.decode(errors="replace").partition(":")
            answer["headers"][name.strip().lower()] = value.strip()
        length = answer["headers"].get("content-length")
        answer["content_length"] = int(length) if length and length.isdigit() else None
        if head_only:
            answer.update(body_bytes=0, complete=True, body=b"")
            return answer
        if "chunked" in answer["headers"].get("transfer-encoding", ""):
            count, body, complete = self._chunked(keep)
        else:
            count, body = self._body(answer["content_length"], keep)
            complete = answer["content_length"] is None or count == answer["content_length"]
        answer.update(body_bytes=count, complete=complete, body=body)
        return answer

    def _chunked(self, keep):
        count, kept = 0, b""
        while True:
            size_line = self._line()
            if size_line is None:
                return count, kept, False
            try:
                size = int(size_line.split(b";")[0], 16)
            except ValueError:
                return count, kept, False
            if size == 0:
                return count, kept, self._line() == b""
            n, body = self._body(size, max(0, keep - len(kept)))
            count, kept = count + n, kept + body
            if n != size or self._line() != b"":
                return count, kept, False


# ---------------------------------------------------------------- range

def cmd_range(args):
    head = request(headers=["Range: bytes=0-100000000"], close=True)
    socks = [connect(args.port) for _ in range(args.count)]
    for s in socks:
        s.sendall(head)
    deadline = time.monotonic() + args.seconds
    answers = []
    for i, s in enumerate(socks):
        reader = Answers(s, deadline)
        a = reader.next(head_only=args.head_only)
        answers.append(a)
        if a is None:
            print("connection=%d answer=none ended=%s" % (i, reader.ended))
        else:
            print("connection=%d status=%d content_length=%s content_range=%s body_bytes=%d complete=%s ended=%s"
                  % (i, a["status"], a["content_length"], a["headers"].get("content-range", "none").replace(" ", "_"),
                     a["body_bytes"], a["complete"], reader.ended or "open"))
        s.close()
    statuses = [str(a["status"]) if a else "none" for a in answers]
    print("requests=%d answered=%d statuses=%s" % (args.count, sum(1 for a in answers if a), ",".join(statuses)))
    return 0


def cmd_many_ranges(args):
    with connect(args.port) as s:
        s.sendall(request(close=True))
        plain = Answers(s, time.monotonic() + args.seconds).next()
    if plain is None or not plain["body_bytes"]:
        print("status=none plain_scrape=failed")
        return 0
    ranges = ",".join(["0-%d" % (plain["body_bytes"] - 1)] * args.ranges)
    head = request(headers=["Range: bytes=" + ranges], close=True)
    with connect(args.port) as s:
        s.sendall(head)
        reader = Answers(s, time.monotonic() + args.seconds)
        a = reader.next()
    if a is None:
        print("head_bytes=%d status=none ended=%s" % (len(head), reader.ended))
        return 0
    print("head_bytes=%d plain_body_bytes=%d status=%d content_type=%s content_length=%s body_bytes=%d complete=%s"
          % (len(head), plain["body_bytes"], a["status"], a["headers"].get("content-type", "none").replace(" ", ""),
             a["content_length"], a["body_bytes"], a["complete"]))
    return 0


# ---------------------------------------------------------------- floods

def flood_chunks(kind, prefix):
    """Endless 256 KiB chunks of the attack after `prefix` (a request line)."""
    if kind == "long-line":
        yield prefix + b"X-Long: "
        chunk = b"a" * (256 * 1024)
        while True:
            yield chunk
    yield prefix
    n = 0
    while True:
        lines = []
        for _ in range(8192):
            lines.append(b"X-Flood-%06d: a\r\n" % (n % 1000000))
            n += 1
        yield b"".join(lines)


def cmd_flood(args):
    prefix = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    start = time.monotonic()
    conns = []
    for _ in range(args.connections):
        s = connect(args.port, send_buffer=SEND_BUFFER_BYTES)
        s.setblocking(False)
        conns.append({"sock": s, "chunks": flood_chunks(args.kind, prefix), "pending": b"", "sent": 0,
                      "outcome": "", "seconds": 0.0, "answer": b""})
    poller = select.poll()
    by_fd = {}
    for c in conns:
        poller.register(c["sock"], select.POLLIN | select.POLLOUT)
        by_fd[c["sock"].fileno()] = c
    start_rss = rss_kb(args.pid) if args.pid else 0
    peak_rss, stopped, rss_checked = start_rss or 0, "", 0.0

    def finish(c, outcome):
        c["outcome"] = outcome
        c["seconds"] = time.monotonic() - start
        poller.unregister(c["sock"])

    while any(not c["outcome"] for c in conns):
        if time.monotonic() - start > args.seconds:
            stopped = "time_limit_of_%gs" % args.seconds
            break
        if args.pid and time.monotonic() - rss_checked > 0.02:
            rss_checked = time.monotonic()
            rss = rss_kb(args.pid)
            peak_rss = max(peak_rss, rss or 0)
            if rss and start_rss and rss - start_rss > args.rss_growth_kb:
                stopped = "exporter_VmRSS_grew_from_%d_to_%d_kB" % (start_rss, rss)
                break
        for fd, events in poller.poll(50):
            c = by_fd[fd]
            if c["outcome"]:
                continue
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                try:
                    data = c["sock"].recv(65536)
                except OSError as e:
                    finish(c, "reset (%s)" % type(e).__name__)
                    continue
                if data:
                    c["answer"] += data
                    line = c["answer"].split(b"\r\n", 1)[0].decode(errors="replace")
                    finish(c, "answered " + line.replace(" ", "_"))
                else:
                    finish(c, "closed")
                continue
            if events & select.POLLOUT:
                if not c["pending"]:
                    room = args.bytes - c["sent"]
                    if room <= 0:
                        finish(c, "all_sent")
                        continue
                    c["pending"] = next(c["chunks"])[:room]
                try:
                    n = c["sock"].send(c["pending"])
                except BlockingIOError:
                    continue
                except OSError as e:
                    finish(c, "reset (%s)" % type(e).__name__)
                    continue
                c["sent"] += n
                c["pending"] = c["pending"][n:]
    for c in conns:
        if not c["outcome"]:
            c["outcome"] = "stopped"
            c["seconds"] = time.monotonic() - start
        c["sock"].close()
    for i, c in enumerate(conns):
        print("connection=%d sent_bytes=%d outcome=%s seconds=%.2f" % (i, c["sent"], c["outcome"].replace(" ", "_"),
                                                                        c["seconds"]))
    print("connections=%d max_sent_bytes=%d stopped=%s start_rss_kb=%d peak_rss_kb=%d seconds=%.2f" % (
        len(conns), max(c["sent"] for c in conns), stopped or "no", start_rss or 0, peak_rss,
        time.monotonic() - start))
    return 0


# ---------------------------------------------------------- idle, trickle

class Stop:
    """Set by SIGTERM: the holding loops end and report."""
    now = False


def on_term(signum, frame):
    Stop.now = True


def cmd_idle(args):
    start = time.monotonic()
    socks, failed = [], 0
    for _ in range(args.n):
        try:
            socks.append(connect(args.port, timeout=2.0))
        except OSError:
            failed += 1
    print("ready opened=%d failed=%d seconds=%.2f" % (len(socks), failed, time.monotonic() - start), flush=True)
    opened_at = time.monotonic()
    poller = select.poll()
    by_fd = {}
    for s in socks:
        poller.register(s, select.POLLIN)
        by_fd[s.fileno()] = s
    closed = []
    while not Stop.now and by_fd and time.monotonic() - opened_at < args.hold:
        for fd, _ in poller.poll(100):
            s = by_fd.pop(fd)
            poller.unregister(fd)
            closed.append(time.monotonic() - opened_at)
            s.close()
    for s in by_fd.values():
        s.close()
    print("opened=%d closed_by_server=%d still_open=%d close_seconds_min/median/max=%s" % (
        len(socks), len(closed), len(by_fd), spread(closed)), flush=True)
    return 0


def trickle_head():
    return b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000


def cmd_trickle(args):
    head = trickle_head()
    clients = []

    def open_client(c):
        c["sock"] = connect(args.port, timeout=2.0)
        c["sock"].setblocking(False)
        c["connected"], c["sent"], c["next_send"] = time.monotonic(), 0, time.monotonic()

    failed = 0
    for _ in range(args.n):
        c = {}
        try:
            open_client(c)
            clients.append(c)
        except OSError:
            failed += 1
    print("ready clients=%d failed=%d" % (len(clients), failed), flush=True)
    start = time.monotonic()
    cuts, answers, connects = [], [], len(clients)
    while not Stop.now and time.monotonic() - start < args.hold and any("sock" in c for c in clients):
        poller = select.poll()
        by_fd = {}
        for c in clients:
            if "sock" in c:
                poller.register(c["sock"], select.POLLIN)
                by_fd[c["sock"].fileno()] = c
        now = time.monotonic()
        wait = min([c["next_send"] for c in by_fd.values()] + [start + args.hold, now + 0.2]) - now
        for fd, _ in poller.poll(max(0.0, wait) * 1000):
            c = by_fd[fd]
            try:
                data = c["sock"].recv(4096)
            except OSError:
                data = b""
            if data:
                answers.append(data.split(b"\r\n", 1)[0].decode(errors="replace"))
            cuts.append(time.monotonic() - c["connected"])
            c.pop("sock").close()
            if args.reconnect and connects < args.n * 20:
                try:
                    open_client(c)
                    connects += 1
                except OSError:
                    pass
        now = time.monotonic()
        for c in clients:
            if "sock" in c and now >= c["next_send"] and c["sent"] < len(head):
                try:
                    c["sock"].send(head[c["sent"]:c["sent"] + 1])
                    c["sent"] += 1
                except OSError:
                    pass  # seen as a cut by the next poll
                c["next_send"] = now + args.interval
    open_now = sum(1 for c in clients if "sock" in c)
    for c in clients:
        if "sock" in c:
            c["sock"].close()
    print("clients=%d connects=%d cuts=%d still_open=%d cut_after_seconds_min/median/max=%s answers_before_cut=%s" % (
        len(clients), connects, len(cuts), open_now, spread(cuts),
        ",".join(sorted(set(a.replace(" ", "_") for a in answers))) or "none"), flush=True)
    return 0


# ------------------------------------------------------------ keep-alive

def cmd_keep_alive(args):
    with connect(args.port) as s:
        s.sendall(request())
        reader = Answers(s, time.monotonic() + 10)
        a = reader.next()
        if a is None:
            print("status=none ended=%s" % reader.ended)
            return 0
        answered = time.monotonic()
        reader.deadline = answered + args.wait
        reader._fill()
        closed = reader.ended in ("closed", "reset")
        print("status=%d closed=%s idle_seconds=%.2f ended=%s" % (
            a["status"], "yes" if closed else "no", time.monotonic() - answered, reader.ended or "data"))
    return 0


# --------------------------------------------------------------- scrapes

def scrape(port, timeout):
    """(ok, milliseconds, why) of one GET /metrics on a new connection."""
    start = time.monotonic()
    try:
        with connect(port, timeout=timeout) as s:
            s.sendall(request(close=True))
            reader = Answers(s, start + timeout)
            a = reader.next()
    except OSError as e:
        return False, (time.monotonic() - start) * 1000, "connect: %s" % type(e).__name__
    ms = (time.monotonic() - start) * 1000
    if a is None:
        return False, ms, "no answer (%s)" % reader.ended
    if a["status"] != 200 or not a["complete"]:
        return False, ms, "status %d, complete=%s, %d body bytes" % (a["status"], a["complete"], a["body_bytes"])
    return True, ms, ""


def cmd_scrapes(args):
    times, failures = [], []
    for _ in range(args.count):
        ok, ms, why = scrape(args.port, args.timeout)
        times.append(ms)
        if not ok:
            failures.append("%s after %.0f ms" % (why, ms))
            if len(failures) >= args.give_up_after:
                break
    for why in failures:
        print("failure: " + why, file=sys.stderr)
    print("scrapes=%d ok=%d failed=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f" % (
        len(times), len(times) - len(failures), len(failures), percentile(times, 50), percentile(times, 99),
        max(times)))
    return 0


# ------------------------------------------------- pipeline, smuggling

def cmd_pipeline(args):
    paths = ["/metrics" if i % 2 == 0 else "/nope" for i in range(args.count)]
    batch = b"".join(request(p, close=(i == args.count - 1)) for i, p in enumerate(paths))
    with connect(args.port) as s:
        s.sendall(batch)  # one send(): a single segment on loopback
        reader = Answers(s, time.monotonic() + args.seconds)
        answers = []
        while len(answers) < args.count + 1:
            a = reader.next()
            if a is None:
                break
            answers.append(a)
    want = [200 if p == "/metrics" else 404 for p in paths]
    got = [a["status"] for a in answers]
    print("sent=%d batch_bytes=%d answers=%d complete=%d in_order=%s ended=%s statuses=%s" % (
        args.count, len(batch), len(answers), sum(1 for a in answers if a["complete"]),
        "yes" if got == want else "no", reader.ended or "open", ",".join(map(str, got[:12])) or "none"))
    return 0


def cmd_smuggle(args):
    head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if args.kind == "two-lengths":
        head += b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
        body = SMUGGLED
    elif args.kind == "spaced-length":
        head += b"Content-Length : %d\r\n\r\n" % len(SMUGGLED)
        body = SMUGGLED
    else:
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        body = b"0\r\n\r\n" + SMUGGLED
    with connect(args.port) as s:
        s.sendall(head)
        time.sleep(0.2)
        try:
            s.sendall(body)
        except OSError:
            pass  # the server closed already: what it answered is still read
        reader = Answers(s, time.monotonic() + args.seconds)
        answers = []
        while len(answers) < 4:
            a = reader.next()
            if a is None:
                break
            answers.append(a)
    print("kind=%s answers=%d statuses=%s closed=%s smuggled_answered=%s" % (
        args.kind, len(answers), ",".join(str(a["status"]) for a in answers) or "none",
        "yes" if reader.ended in ("closed", "reset") else "no(%s)" % (reader.ended or "open"),
        "yes" if len(answers) > 1 else "no"))
    return 0


# ---------------------------------------------------------------- refused

def cmd_refused(args):
    lock = threading.Lock()
    state = {"left": args.requests, "statuses": {}, "reconnects": 0, "errors": 0}
    deadline = time.monotonic() + args.seconds

    def take():
        with lock:
            if state["left"] <= 0 or time.monotonic() > deadline:
                return False
            state["left"] -= 1
            return True

    def worker():
        s, reader = None, None
        while take():
            try:
                if s is None:
                    s = connect(args.port, timeout=max(0.1, deadline - time.monotonic()))
                    reader = Answers(s, deadline)
                s.sendall(request("/nope"))
                a = reader.next()
            except OSError:
                a = None
            with lock:
                if a is None:
                    state["errors"] += 1
                else:
                    state["statuses"][a["status"]] = state["statuses"].get(a["status"], 0) + 1
            if a is None or reader.ended:
                if s is not None:
                    s.close()
                s = None
                with lock:
                    state["reconnects"] += 1
        if s is not None:
            s.close()

    start = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 5)
    answered = sum(state["statuses"].values())
    print("requests=%d answered=%d not_answered=%d statuses=%s reconnects=%d seconds=%.2f" % (
        args.requests, answered, args.requests - answered,
        ",".join("%dx%d" % (n, st) for st, n in sorted(state["statuses"].items())) or "none",
        state["reconnects"], time.monotonic() - start))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, run, n=False):
        p = sub.add_parser(name)
        p.add_argument("port", type=int)
        if n:
            p.add_argument("n", type=int)
        p.set_defaults(run=run)
        return p

    p = command("range", cmd_range)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--head-only", action="store_true")
    p.add_argument("--seconds", type=float, default=3)
    p = command("many-ranges", cmd_many_ranges)
    p.add_argument("--ranges", type=int, default=500)
    p.add_argument("--seconds", type=float, default=5)
    for kind in ("flood-headers", "long-line"):
        p = command(kind, cmd_flood)
        p.add_argument("--bytes", type=int, required=True)
        p.add_argument("--connections", type=int, default=1)
        p.add_argument("--seconds", type=float, default=20)
        p.add_argument("--pid", type=int, default=0)
        p.add_argument("--rss-growth-kb", type=int, default=1 << 30)
        p.set_defaults(kind=kind)
    p = command("idle", cmd_idle, n=True)
    p.add_argument("--hold", type=float, default=60)
    p = command("trickle", cmd_trickle, n=True)
    p.add_argument("--interval", type=float, default=2)
    p.add_argument("--hold", type=float, default=60)
    p.add_argument("--reconnect", action="store_true")
    p = command("keep-alive", cmd_keep_alive)
    p.add_argument("--wait", type=float, default=5)
    p = command("scrapes", cmd_scrapes)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--timeout", type=float, default=2)
    p.add_argument("--give-up-after", type=int, default=5)
    p = command("pipeline", cmd_pipeline)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--seconds", type=float, default=5)
    p = command("smuggle", cmd_smuggle)
    p.add_argument("--kind", choices=["two-lengths", "spaced-length", "chunked"], required=True)
    p.add_argument("--seconds", type=float, default=3)
    p = command("refused", cmd_refused)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    raise_fd_limit()
    signal.signal(signal.SIGTERM, on_term)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
