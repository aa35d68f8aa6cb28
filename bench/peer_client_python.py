#!/usr/bin/python3
"""client_python (Debian's python3-prometheus-client 0.16) in multiprocess
mode: the peer of the multi-process scenarios. Run under /usr/bin/python3 (the
only interpreter Debian's package imports under).

    peer_client_python.py new_series --n N --reps R
    peer_client_python.py scrape --writers W --series S --reps R [--min-time-s T] [--gzip-level L]
    peer_client_python.py scrape_hist --writers W --series S --reps R [--min-time-s T]
    peer_client_python.py sparse_bytes --writers W --series S --percent P
    peer_client_python.py churn --generations G --series S --reps R
    peer_client_python.py counter_inc --n N --reps R
    peer_client_python.py histogram_observe --n N --reps R

Each mode works in a fresh PROMETHEUS_MULTIPROC_DIR (under /dev/shm, the best
case for the peer: its files live in memory as our segments do), removed at
the end, and prints one JSON object. Writers are forked processes, as gunicorn
forks them; dead ones are reported with mark_process_dead as gunicorn's
child_exit hook does. The timed part runs pinned to CPU 0, like shmetrics'
in-process benchmarks. Every figure comes with a check of the values rendered
(exit 3 when one fails), as on the shmetrics side.
"""

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time

# The value class is chosen when prometheus_client is imported: the directory
# must be set first.
_BASE = "/dev/shm" if os.path.isdir("/dev/shm") else None
MULTIPROC_DIR = tempfile.mkdtemp(prefix="shmetrics-bench-pyclient-", dir=_BASE)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = MULTIPROC_DIR

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest  # noqa: E402
from prometheus_client import multiprocess  # noqa: E402
import prometheus_client  # noqa: E402
from pycommon import histogram_value, pin, timed_loop, timed_observes, unpin  # noqa: E402

CHECK_FAILURES = []


def check(ok, what):
    if not ok:
        CHECK_FAILURES.append(what)
        print("check failed: " + what, file=sys.stderr)


def scrape_once():
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


def samples(text):
    out = {}
    for line in text.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


def fork_writer(body):
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        except BaseException as e:  # noqa: BLE001 - the child must always _exit
            print("peer writer %d: %r" % (os.getpid(), e), file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def wait_all(pids, what):
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, what + ": a writer failed")


def dir_bytes():
    total = 0
    for name in os.listdir(MULTIPROC_DIR):
        total += os.path.getsize(os.path.join(MULTIPROC_DIR, name))
    return total


def timed_scrapes(reps, min_time_s, scrape=scrape_once):
    """ms per scrape, per repetition (each a batch lasting >= min_time_s)."""
    pin(0)
    scrape()  # warm-up
    per_rep = []
    text = b""
    for _ in range(reps):
        n = 0
        t0 = time.perf_counter_ns()
        while True:
            text = scrape()
            n += 1
            if time.perf_counter_ns() - t0 >= min_time_s * 1e9:
                break
        per_rep.append((time.perf_counter_ns() - t0) / n / 1e6)
    unpin()
    return per_rep, text


def mode_new_series(a):
    c = Counter("bench_new_series_total", "First touches.", ["id"], registry=None)
    c.labels("warmup").inc()
    pin(0)
    per_rep = []
    nxt = 0
    for _ in range(a.reps):
        t0 = time.perf_counter_ns()
        for _ in range(a.n):
            c.labels(str(nxt)).inc()
            nxt += 1
        per_rep.append((time.perf_counter_ns() - t0) / a.n)
    unpin()
    s = samples(scrape_once())
    ones = sum(1 for i in range(nxt) if s.get('bench_new_series_total{id="%d"}' % i) == 1.0)
    check(ones == nxt, "new_series: %d of %d new series rendered 1" % (ones, nxt))
    return {"ns_per_op": per_rep, "n": a.n}


def mode_scrape(a):
    c = Counter("bench_scrape_total", "Scrape benchmark series.", ["series"], registry=None)
    pids = []
    for w in range(a.writers):
        def body(w=w):
            for i in range(a.series):
                c.labels("s%d" % i).inc(w + 1)
        pids.append(fork_writer(body))
    wait_all(pids, "scrape")
    files_bytes = dir_bytes()
    per_rep, text = timed_scrapes(a.reps, a.min_time_s)
    s = samples(text)
    expected = a.writers * (a.writers + 1) / 2
    good = sum(1 for i in range(a.series) if s.get('bench_scrape_total{series="s%d"}' % i) == expected)
    check(good == a.series, "scrape: %d of %d series rendered %g" % (good, a.series, expected))
    result = {"ms_per_scrape": per_rep, "files_bytes": files_bytes, "files": len(os.listdir(MULTIPROC_DIR)),
              "exposition_bytes": len(text)}
    if a.gzip_level is not None:
        # What its /metrics would send gzip-compressed: the same render, then
        # gzip.compress at the given zlib level. Checked after the timing.
        gz_per_rep, body = timed_scrapes(a.reps, a.min_time_s,
                                         lambda: gzip.compress(scrape_once(), compresslevel=a.gzip_level))
        s = samples(gzip.decompress(body))
        good = sum(1 for i in range(a.series) if s.get('bench_scrape_total{series="s%d"}' % i) == expected)
        check(good == a.series, "scrape gzip: %d of %d series rendered %g" % (good, a.series, expected))
        result.update({"gzip_ms_per_scrape": gz_per_rep, "gzip_bytes": len(body), "gzip_level": a.gzip_level})
    return result


# The histogram scenarios' bounds and values, as bench/common.h defines them
# (histogram_bounds, histogram_value): the same values, so the same exposition.
HISTOGRAM_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]


def histogram_expected(values):
    """(cumulative bucket counts, +Inf last; sum) of the observed values."""
    counts = [0] * (len(HISTOGRAM_BOUNDS) + 1)
    for v in values:
        i = 0
        while i < len(HISTOGRAM_BOUNDS) and HISTOGRAM_BOUNDS[i] < v:
            i += 1
        counts[i] += 1
    cumulative, total = [], 0
    for c in counts:
        total += c
        cumulative.append(total)
    return cumulative, sum(values)  # exact: multiples of 1/1024 below 16


def rendered_histograms(text, name):
    """{labels other than le: {"buckets": [(le, value)], "sum", "count"}}."""
    out = {}
    for line in text.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric, _, labels = key.partition("{")
        labels = labels.rstrip("}")
        if metric not in (name + "_bucket", name + "_sum", name + "_count"):
            continue
        parts = [p for p in labels.split(",") if p]
        le = [p for p in parts if p.startswith("le=")]
        rest = ",".join(p for p in parts if not p.startswith("le="))
        h = out.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if metric.endswith("_bucket") and le:
            h["buckets"].append((float(le[0][4:-1]), float(value)))
        elif metric.endswith("_sum"):
            h["sum"] = float(value)
        elif metric.endswith("_count"):
            h["count"] = float(value)
    return out


def mode_scrape_hist(a):
    h = Histogram("bench_scrape_hist_seconds", "Histogram scrape benchmark series.", ["series"],
                  buckets=HISTOGRAM_BOUNDS, registry=None)
    pids = []
    for w in range(a.writers):
        def body(w=w):
            for i in range(a.series):
                h.labels("s%d" % i).observe(histogram_value(i * a.writers + w))
        pids.append(fork_writer(body))
    wait_all(pids, "scrape_hist")
    files_bytes = dir_bytes()
    per_rep, text = timed_scrapes(a.reps, a.min_time_s)
    rendered = rendered_histograms(text, "bench_scrape_hist_seconds")
    bounds = HISTOGRAM_BOUNDS + [float("inf")]
    good = 0
    for i in range(a.series):
        cumulative, total = histogram_expected([histogram_value(i * a.writers + w) for w in range(a.writers)])
        got = rendered.get('series="s%d"' % i)
        if got and got["buckets"] == list(zip(bounds, map(float, cumulative))) and \
                got["count"] == cumulative[-1] and got["sum"] == total:
            good += 1
    check(good == a.series, "scrape_hist: %d of %d histograms rendered what was observed" % (good, a.series))
    return {"ms_per_scrape": per_rep, "files_bytes": files_bytes, "files": len(os.listdir(MULTIPROC_DIR)),
            "exposition_bytes": len(text)}


def mode_sparse_bytes(a):
    c = Counter("bench_bytes_total", "Segment size benchmark series.", ["series"], registry=None)

    def touches(w, i):
        return (i + w * 7) % 100 < a.percent

    pids = []
    for w in range(a.writers):
        def body(w=w):
            for i in range(a.series):
                if touches(w, i):
                    c.labels("s%d" % i).inc()
        pids.append(fork_writer(body))
    wait_all(pids, "sparse_bytes")
    files_bytes = dir_bytes()
    s = samples(scrape_once())
    good = 0
    for i in range(a.series):
        expected = sum(1 for w in range(a.writers) if touches(w, i))
        if s.get('bench_bytes_total{series="s%d"}' % i, 0.0) == expected:
            good += 1
    check(good == a.series, "sparse_bytes: %d of %d series rendered what was written" % (good, a.series))
    return {"files_bytes": files_bytes, "files": len(os.listdir(MULTIPROC_DIR))}


def mode_churn(a):
    c = Counter("bench_churn_total", "Churn benchmark series.", ["series"], registry=None)
    busy = Gauge("bench_busy_workers", "Workers alive.", registry=None, multiprocess_mode="livesum")
    release_r, release_w = os.pipe()
    ready_r, ready_w = os.pipe()
    live = []
    for g in range(a.generations):
        last = g + 1 == a.generations
        pids = []
        for _ in range(2):
            def body(last=last):
                busy.inc()
                for i in range(a.series):
                    c.labels("s%d" % i).inc()
                if last:
                    os.close(release_w)
                    os.write(ready_w, b"x")
                    os.read(release_r, 1)  # until the parent closes its end
            pids.append(fork_writer(body))
        if last:
            live = pids
        else:
            wait_all(pids, "churn")
            for pid in pids:
                multiprocess.mark_process_dead(pid)
    got = 0
    while got < 2:
        got += len(os.read(ready_r, 2 - got))
    per_rep, text = timed_scrapes(a.reps, a.min_time_s)
    os.close(release_w)
    wait_all(live, "churn")
    s = samples(text)
    expected = 2.0 * a.generations
    good = sum(1 for i in range(a.series) if s.get('bench_churn_total{series="s%d"}' % i) == expected)
    check(good == a.series, "churn: %d of %d series rendered %g" % (good, a.series, expected))
    check(s.get("bench_busy_workers") == 2.0, "churn: bench_busy_workers rendered %r" % s.get("bench_busy_workers"))
    return {"ms_per_scrape": per_rep, "files": len(os.listdir(MULTIPROC_DIR))}


def mode_counter_inc(a):
    """A held labelled child's inc(), in one process (py_counter_inc's peer)."""
    child = Counter("bench_py_inc_total", "Held child increments.", ["route"], registry=None).labels("/")

    def body(n):
        for _ in range(n):
            child.inc()

    per_rep = timed_loop(a.reps, a.n, body)
    want = a.n // 10 + a.reps * a.n
    got = samples(scrape_once()).get('bench_py_inc_total{route="/"}')
    check(got == want, "counter_inc: rendered %r, %d increments made" % (got, want))
    return {"ns_per_op": per_rep, "n": a.n}


def mode_histogram_observe(a):
    """A held labelled child's observe(v), the values of bench/common.h
    cycling, prometheus_client's default buckets (py_histogram_observe's peer)."""
    child = Histogram("bench_py_observe_seconds", "Held child observations.", ["route"], registry=None).labels("/")
    per_rep = timed_observes(a.reps, a.n, child)
    want = a.n // 10 + a.reps * a.n
    got = samples(scrape_once()).get('bench_py_observe_seconds_count{route="/"}')
    check(got == want, "histogram_observe: rendered count %r, %d observations made" % (got, want))
    return {"ns_per_op": per_rep, "n": a.n}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["new_series", "scrape", "scrape_hist", "sparse_bytes", "churn", "counter_inc",
                                    "histogram_observe"])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--writers", type=int, default=16)
    p.add_argument("--series", type=int, default=1000)
    p.add_argument("--percent", type=int, default=10)
    p.add_argument("--generations", type=int, default=50)
    p.add_argument("--min-time-s", type=float, default=0.2)
    p.add_argument("--gzip-level", type=int, help="scrape: also time render + gzip.compress at this zlib level")
    a = p.parse_args()
    try:
        result = {"new_series": mode_new_series, "scrape": mode_scrape, "scrape_hist": mode_scrape_hist,
                  "sparse_bytes": mode_sparse_bytes, "churn": mode_churn, "counter_inc": mode_counter_inc,
                  "histogram_observe": mode_histogram_observe}[a.mode](a)
    finally:
        shutil.rmtree(MULTIPROC_DIR, ignore_errors=True)
    result.update({"mode": a.mode, "client_python": getattr(prometheus_client, "__version__", "0.16"),
                   "ok": not CHECK_FAILURES, "check_failures": CHECK_FAILURES})
    print(json.dumps(result))
    return 3 if CHECK_FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
