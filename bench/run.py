#!/usr/bin/python3
"""Runs every benchmark scenario of shmetrics and its peers, and prints one
table: for each operation, shmetrics and each peer, median and min-max over
the repetitions, the ratio peer/shmetrics, the target and a verdict.

Called by scripts/bench.sh (which installs the packages and builds in release
mode); usable on its own:

    bench/run.py --build-dir build-release [--quick] [--json FILE] [--only KEY,...]

Exit status: 0 when every scenario ran and every check passed (targets missed
are reported, not failed: benchmarks measure, tests assert); 3 when a check
failed (a scenario rendered other counts than it wrote); 1 when a scenario
could not run.
"""

import argparse
import json
import os
import platform
import queue
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"  # Debian's python3-prometheus-client imports only here
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"  # Debian's prometheus-node-exporter 1.5.0
# One cheap collector: node_exporter's own body stays small (about 7 KB).
NODE_EXPORTER_FLAGS = ["--collector.disable-defaults", "--collector.loadavg"]

EXPORTER_SCENARIOS = ["exporter_wrk", "exporter_idle_2000", "exporter_tls"]
PYTHON_SCENARIOS = ["py_counter_inc", "py_backend_counter_inc", "py_histogram_observe", "py_scrape_16x1000"]
SCENARIOS = [
    "counter_inc", "counter_inc_2writers", "histogram_observe", "histogram_observe_2writers",
    "labelled_inc_lookup", "new_series", "scrape_16x1000", "scrape_64x10000", "scrape_64x10000_gzip",
    "scrape_64x10000_openmetrics", "scrape_hist_64x1000", "scrape_after_churn", "segment_bytes_64x10000",
    "segment_bytes_sparse",
] + EXPORTER_SCENARIOS + PYTHON_SCENARIOS


class Failure(Exception):
    pass


class Processes:
    """The servers of a scenario, each with its output in the log NAME.log,
    stopped when the block ends: SIGTERM (or, with stop="stdin", its stdin
    closed), SIGKILL after 20 s."""

    def __init__(self, runner):
        self.runner = runner
        self.started = []  # (process, stop, log, copying thread)
        self.ready_line = {}  # process -> the line that matched `ready`

    def __enter__(self):
        return self

    def start(self, name, cmd, ready, ready_stream="stderr", stdin=subprocess.DEVNULL, stop="sigterm",
              timeout_s=20):
        """Starts cmd and waits until a line of its ready_stream ("stdout" or
        "stderr") matches the regex `ready`; returns (process, match)."""
        log = open(self.runner.log_path(name + ".log"), "w")
        streams = {"stdout": log, "stderr": log}
        streams[ready_stream] = subprocess.PIPE
        p = subprocess.Popen(cmd, stdin=stdin, stdout=streams["stdout"], stderr=streams["stderr"], text=True)
        lines = queue.Queue()

        def copy():
            for line in getattr(p, ready_stream):
                log.write(line)
                log.flush()
                lines.put(line)
            lines.put(None)
        thread = threading.Thread(target=copy, daemon=True)
        thread.start()
        self.started.append((p, stop, log, thread))
        deadline = time.time() + timeout_s
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                raise Failure("%s did not start within %d s; see %s" % (name, timeout_s, log.name))
            if line is None:
                raise Failure("%s exited with status %s before it served; see %s" % (name, p.wait(), log.name))
            m = re.search(ready, line.rstrip("\n"))
            if m:
                self.ready_line[p] = line
                return p, m

    def __exit__(self, *exc):
        for p, stop, _, _ in reversed(self.started):
            if p.poll() is None:
                if stop == "stdin":
                    p.stdin.close()
                else:
                    p.send_signal(signal.SIGTERM)
        for p, _, log, thread in self.started:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            thread.join(timeout=5)
            log.close()
        return False


class Runner:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.build = os.path.abspath(args.build_dir)
        self.bin = os.path.join(self.build, "bench")
        self.log_dir = args.log_dir or os.path.join(self.build, "bench-logs")
        os.makedirs(self.log_dir, exist_ok=True)
        self.only = set(args.only.split(",")) if args.only else set(SCENARIOS)
        unknown = self.only - set(SCENARIOS)
        if unknown:
            raise SystemExit("unknown scenario(s): %s (known: %s)" % (", ".join(sorted(unknown)), ", ".join(SCENARIOS)))
        self.rows = []
        self.check_failures = []
        self.errors = []
        self.results = {}  # raw results by source
        self.probes = {}

    # ------------------------------------------------------------------ util
    def want(self, *keys):
        return any(k in self.only for k in keys)

    def log_path(self, name):
        return os.path.join(self.log_dir, name)

    def say(self, msg):
        print("==> " + msg, flush=True)

    def run_json(self, name, cmd, timeout):
        """Runs cmd, stderr to a log, returns the JSON object it printed last."""
        err_path = self.log_path(name + ".stderr.log")
        t0 = time.time()
        with open(err_path, "w") as err:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, timeout=timeout, text=True)
        with open(self.log_path(name + ".stdout.log"), "w") as f:
            f.write(p.stdout)
        try:
            obj = json.loads(p.stdout[p.stdout.index("{"):]) if "{" in p.stdout else None
        except ValueError:
            obj = None
        self.say("%s: %.1fs, exit %d" % (name, time.time() - t0, p.returncode))
        if obj is None:
            raise Failure("%s exited %d without a result; see %s" % (name, p.returncode, err_path))
        if not obj.get("ok", True):
            for c in obj.get("check_failures", []):
                self.check_failures.append("%s: %s" % (name, c))
        elif p.returncode != 0:
            raise Failure("%s exited %d; see %s" % (name, p.returncode, err_path))
        return obj

    def probe(self, when):
        iters = "5000000" if self.quick else "20000000"
        obj = self.run_json("probe-" + when, [os.path.join(self.bin, "shmetrics-bench-mp"), "probe", "--iters", iters], 120)
        p = obj["probe_ns_per_step"]
        p["loadavg"] = open("/proc/loadavg").read().split()[0:3]
        self.probes[when] = p
        self.say("cpu probe (%s): %s ns/step, load average %s" % (
            when, ", ".join("%s %.3f" % (k, v) for k, v in p.items() if k.startswith("cpu")), " ".join(p["loadavg"])))

    # ---------------------------------------------------------- rows, stats
    def add_row(self, op, variant, unit, shm, peer, peer_vals, target=None, higher_is_better=False,
                note="", extra=None):
        """shm, peer_vals: lists of per-repetition values in `unit`.
        target: (text, minimum ratio) or None (reported only)."""
        def stats(v):
            return (statistics.median(v), min(v), max(v)) if v else (None, None, None)
        sm, smin, smax = stats(shm)
        pm, pmin, pmax = stats(peer_vals)
        ratio = None
        if sm and pm:
            ratio = sm / pm if higher_is_better else pm / sm
        verdict = "reported"
        if target is not None:
            if ratio is None:
                verdict = "no result"
            elif ratio >= target[1]:
                verdict = "met"
            else:
                verdict = "MISSED (%.2f of %.2f)" % (ratio, target[1])
        self.rows.append({
            "op": op, "variant": variant, "unit": unit,
            "shmetrics": (sm, smin, smax), "peer": peer, "peer_vals": (pm, pmin, pmax),
            "reps": (len(shm), len(peer_vals)), "ratio": ratio,
            "target": target[0] if target else "", "target_min_ratio": target[1] if target else None,
            "verdict": verdict, "note": note, "extra": extra or {},
        })

    # ----------------------------------------------------------- scenarios
    def google_benchmark(self):
        keys = ["counter_inc", "histogram_observe", "labelled_inc_lookup", "new_series", "scrape_16x1000",
                "scrape_64x10000", "scrape_64x10000_gzip", "scrape_64x10000_openmetrics", "scrape_hist_64x1000",
                "scrape_after_churn"]
        wanted = [k for k in keys if k in self.only]
        if not wanted:
            return {}
        if "scrape_64x10000_openmetrics" in wanted:
            wanted.append("scrape_64x10000_openmetrics_created")  # rows of the same scenario
        out = self.log_path("google-benchmark.json")
        reps = 5
        min_time = "0.01" if self.quick else "0.3"
        cmd = [os.path.join(self.bin, "shmetrics-bench"), "--benchmark_out=" + out,
               "--benchmark_out_format=json", "--benchmark_repetitions=%d" % reps,
               "--benchmark_min_time=" + min_time, "--benchmark_display_aggregates_only=true",
               "--benchmark_filter=^(%s)/" % "|".join(wanted)]
        if self.quick:
            cmd.append("--quick")
        t0 = time.time()
        with open(self.log_path("google-benchmark.stdout.log"), "w") as so, \
                open(self.log_path("google-benchmark.stderr.log"), "w") as se:
            rc = subprocess.run(cmd, stdout=so, stderr=se, timeout=1200).returncode
        self.say("shmetrics-bench (Google Benchmark): %.1fs, exit %d" % (time.time() - t0, rc))
        if not os.path.exists(out):
            raise Failure("shmetrics-bench wrote no results (exit %d); see %s" % (rc, self.log_path("google-benchmark.stderr.log")))
        data = json.load(open(out))
        factor = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
        per = {}
        for b in data["benchmarks"]:
            if b.get("run_type") != "iteration":
                continue
            name = b.get("run_name", b["name"])
            name = re.sub(r"/(real_time|iterations:\d+|repeats:\d+)", "", name)
            if b.get("error_occurred"):
                self.check_failures.append("%s: %s" % (name, b.get("error_message")))
                continue
            per.setdefault(name, []).append(b["real_time"] * factor[b["time_unit"]])  # ns
            # User counters, as "NAME:COUNTER": sizes, and the figures a
            # benchmark times itself (scrape_64x10000_openmetrics: *_ns).
            for counter in ("bytes", "gzip_bytes", "text_bytes", "openmetrics_bytes", "text_ns", "openmetrics_ns"):
                if counter in b:
                    per.setdefault("%s:%s" % (name, counter), []).append(b[counter])
        if rc != 0 and not self.check_failures:
            raise Failure("shmetrics-bench exited %d; see %s" % (rc, self.log_path("google-benchmark.stderr.log")))
        return per

    def python_ours(self, name, args, timeout=900):
        """bench/py_shmetrics.py: the shmetrics module of this build."""
        env_path = os.path.join(self.build, "bindings", "python")
        cmd = ["env", "PYTHONPATH=" + env_path, PYTHON, os.path.join(HERE, "py_shmetrics.py")] + args + [
            "--exporter", os.path.join(self.build, "exporter", "shmetrics-exporter")]
        return self.run_json("py_shmetrics-" + name, cmd, timeout)

    def python_scenarios(self):
        """The py_* rows: shmetrics' Python module against client_python in
        multiprocess mode, the same loops in the same kind of process."""
        n = "200000" if self.quick else "2000000"
        loops = [
            ("py_counter_inc", "counter_inc", "counter_inc", "child.inc() (held labelled child)",
             "client_python multiprocess child.inc()", ("≥20×", 20.0)),
            ("py_backend_counter_inc", "backend_counter_inc", "counter_inc",
             "prometheus_client Counter child.inc() on shmetrics' backend",
             "client_python multiprocess child.inc()", ("≥5×", 5.0)),
            ("py_histogram_observe", "histogram_observe", "histogram_observe",
             "child.observe(v) (held labelled child, 15 buckets)", "client_python multiprocess child.observe(v)",
             ("≥20×", 20.0)),
        ]
        peers = {}
        for key, ours_mode, peer_mode, variant, peer_variant, target in loops:
            if not self.want(key):
                continue
            try:
                if peer_mode not in peers:
                    peers[peer_mode] = self.python_peer("py-" + peer_mode, [peer_mode, "--n", n, "--reps", "5"])
                ours = self.python_ours(key, [ours_mode, "--n", n, "--reps", "5"])
                self.add_row(key, variant, "ns", ours["ns_per_op"], peer_variant, peers[peer_mode]["ns_per_op"],
                             target, note="%s calls per repetition, loop included on both sides" % n)
            except Failure as e:
                self.errors.append(str(e))
        if self.want("py_scrape_16x1000"):
            try:
                args = ["--writers", "16", "--series", "1000", "--reps", "5",
                        "--min-time-s", "0.05" if self.quick else "0.3"]
                py = self.python_peer("py_scrape_16x1000", ["scrape"] + args)
                ours = self.python_ours("py_scrape_16x1000", ["scrape"] + args)
                peer = "client_python MultiProcessCollector + generate_latest"
                self.add_row("py_scrape_16x1000", "exporter render (its scrape_duration), Python writers", "ms",
                             ours["render_ms"], peer, py["ms_per_scrape"], ("≥50×", 50.0),
                             note="16 forked Python writers × 1,000 series; the renders of GET /metrics as the "
                                  "exporter times them, against client_python's render in process")
                self.add_row("py_scrape_16x1000", "GET /metrics over HTTP, the client's wait", "ms",
                             ours["ms_per_scrape"], peer, py["ms_per_scrape"],
                             note="keep-alive, exporter on CPU 1, client on CPU 0; GET /healthz on the same "
                                  "connection: %.3f ms (HTTP alone on this machine)"
                                  % statistics.median(ours["healthz_ms"]))
            except Failure as e:
                self.errors.append(str(e))

    def python_peer(self, name, args, timeout=900):
        return self.run_json("client_python-" + name, [PYTHON, os.path.join(HERE, "peer_client_python.py")] + args,
                             timeout)

    def run(self):
        t_start = time.time()
        self.probe("start")
        gb = {}
        try:
            gb = self.google_benchmark()
        except Failure as e:
            self.errors.append(str(e))
        ns = lambda k: gb.get(k, [])  # noqa: E731
        ms = lambda k: [v / 1e6 for v in gb.get(k, [])]  # noqa: E731
        live_target = ("≤1.2× floor (≥0.83)", 1 / 1.2)

        # counter_inc -------------------------------------------------------
        if self.want("counter_inc"):
            self.add_row("counter_inc", "counter.inc()", "ns", ns("counter_inc/shmetrics"),
                         "prometheus-cpp Counter::Increment()", ns("counter_inc/prometheus_cpp"), ("≥5×", 5.0))
            self.add_row("counter_inc", "counter.inc()", "ns", ns("counter_inc/shmetrics"),
                         "floor load+store (owned line)", ns("counter_inc/floor_load_store"))
            self.add_row("counter_inc", "counter.inc()", "ns", ns("counter_inc/shmetrics"),
                         "floor fetch_add (owned line)", ns("counter_inc/floor_fetch_add"))
            # Integer gauges carry the target; double gauges' inc/dec are a
            # compare-and-swap loop on a double (BENCHMARKS.md), reported.
            for mode in ["livesum", "livemax", "livemin", "liveall"]:
                for op in ["inc", "dec", "set"]:
                    self.add_row("counter_inc", "gauge %s %s() [integer]" % (mode, op), "ns",
                                 ns("counter_inc/gauge_%s_int_%s" % (mode, op)),
                                 "floor fetch_add (owned line)", ns("counter_inc/floor_fetch_add"),
                                 live_target)
            for mode in ["livesum", "livemax", "livemin", "liveall"]:
                for op in ["inc", "dec", "set"]:
                    self.add_row("counter_inc", "gauge %s %s() [double]" % (mode, op), "ns",
                                 ns("counter_inc/gauge_%s_%s" % (mode, op)),
                                 "floor fetch_add (owned line)", ns("counter_inc/floor_fetch_add"),
                                 live_target if op == "set" else None)
            for mode in ["mostrecent", "livemostrecent"]:
                for op in ["inc", "set"]:
                    self.add_row("counter_inc", "gauge %s %s() [reads clock]" % (mode, op), "ns",
                                 ns("counter_inc/gauge_%s_%s" % (mode, op)),
                                 "floor fetch_add (owned line)", ns("counter_inc/floor_fetch_add"))
            self.add_row("counter_inc", "overflow slot (1 of 1 slots held)", "ns",
                         ns("counter_inc/overflow_slot_1held"),
                         "floor fetch_add (owned line)", ns("counter_inc/floor_fetch_add"), live_target)
            self.add_row("counter_inc", "overflow slot (64 of 64 slots held)", "ns",
                         ns("counter_inc/overflow_slot_64held"),
                         "floor fetch_add (owned line)", ns("counter_inc/floor_fetch_add"), live_target)

        # counter_inc_2writers, histogram_observe_2writers ------------------------
        if self.want("counter_inc_2writers"):
            self.two_writers("counter_inc_2writers", "two_writers", "one counter")

        # histogram_observe ----------------------------------------------------------
        if self.want("histogram_observe"):
            self.add_row("histogram_observe", "histogram.observe(v), 1,024 values, 11 buckets", "ns",
                         ns("histogram_observe/shmetrics_cycling"),
                         "prometheus-cpp Histogram::Observe(v), same values",
                         ns("histogram_observe/prometheus_cpp_cycling"), ("≥5×", 5.0),
                         note="10 bounds; the values cycle over a table of 1,024 (every bucket, hashed order)")
            self.add_row("histogram_observe", "histogram.observe(v), one value, one bucket", "ns",
                         ns("histogram_observe/shmetrics_one"),
                         "prometheus-cpp Histogram::Observe(v), same value", ns("histogram_observe/prometheus_cpp_one"))
            self.add_row("histogram_observe", "histogram.observe(v), 1,024 values, 11 buckets", "ns",
                         ns("histogram_observe/shmetrics_cycling"),
                         "floor +1 and += v (owned line)", ns("histogram_observe/floor"))
        if self.want("histogram_observe_2writers"):
            self.two_writers("histogram_observe_2writers", "histogram_two_writers", "one histogram", alone_row=True)

        # labelled_inc_lookup ---------------------------------------------------
        if self.want("labelled_inc_lookup"):
            self.add_row("labelled_inc_lookup", "family.labels({route, method}).inc()", "ns",
                         ns("labelled_inc_lookup/shmetrics"),
                         "prometheus-cpp Family::Add(labels).Increment()", ns("labelled_inc_lookup/prometheus_cpp"),
                         ("≥3×", 3.0))

        # new_series --------------------------------------------------------------
        if self.want("new_series"):
            n = 2000 if self.quick else 20000
            try:
                py = self.python_peer("new_series", ["new_series", "--n", str(n), "--reps", "5"])
                self.add_row("new_series", "family.labels({new}).inc()", "ns", ns("new_series/shmetrics"),
                             "client_python labels(new).inc()", py["ns_per_op"], ("≥10×", 10.0),
                             note="%d new series per repetition" % n)
            except Failure as e:
                self.errors.append(str(e))

        # scrapes ----------------------------------------------------------------
        if self.want("scrape_16x1000"):
            try:
                py = self.python_peer("scrape_16x1000", ["scrape", "--writers", "16", "--series", "1000", "--reps", "5",
                                                         "--min-time-s", "0.05" if self.quick else "0.3"])
                self.add_row("scrape_16x1000", "exporter render to a string", "ms", ms("scrape_16x1000/shmetrics"),
                             "client_python collect + generate_latest", py["ms_per_scrape"],
                             ("≥50×", 50.0))
            except Failure as e:
                self.errors.append(str(e))
        py64 = None
        if self.want("scrape_64x10000", "scrape_64x10000_gzip", "segment_bytes_64x10000") and not self.quick:
            # One client_python fixture for the plain and the gzip scrapes (about 20 s to write).
            gzip_args = ["--gzip-level", "1"] if self.want("scrape_64x10000_gzip") else []
            try:
                py64 = self.python_peer("scrape_64x10000", ["scrape", "--writers", "64", "--series", "10000",
                                                            "--reps", "5", "--min-time-s", "0"] + gzip_args,
                                        timeout=1200)
            except Failure as e:
                self.errors.append(str(e))
        if self.want("scrape_64x10000"):
            if py64 is not None:
                self.add_row("scrape_64x10000", "exporter render to a string", "ms", ms("scrape_64x10000/shmetrics"),
                             "client_python collect + generate_latest", py64["ms_per_scrape"],
                             ("≥300×", 300.0))
            else:
                self.add_row("scrape_64x10000", "exporter render to a string", "ms", ms("scrape_64x10000/shmetrics"),
                             "client_python (skipped in --quick)", [], None)
            self.add_row("scrape_64x10000", "exporter render to a string", "ms", ms("scrape_64x10000/shmetrics"),
                         "prometheus-cpp Collect+Serialize, 10k series",
                         ms("scrape_64x10000/prometheus_cpp"), ("≥4×", 4.0))
        if self.want("scrape_64x10000_gzip"):
            self.scrape_gzip_rows(gb, py64)
        if self.want("scrape_64x10000_openmetrics"):
            self.scrape_openmetrics_rows(gb)
        if self.want("scrape_hist_64x1000"):
            py_hist = None
            if not self.quick:
                try:
                    py_hist = self.python_peer("scrape_hist_64x1000", [
                        "scrape_hist", "--writers", "64", "--series", "1000", "--reps", "5", "--min-time-s", "0"],
                        timeout=1200)
                except Failure as e:
                    self.errors.append(str(e))
            if py_hist is not None:
                self.add_row("scrape_hist_64x1000", "exporter render to a string", "ms",
                             ms("scrape_hist_64x1000/shmetrics"),
                             "client_python collect + generate_latest", py_hist["ms_per_scrape"], ("≥300×", 300.0),
                             note="1,000 histograms of 10 bounds, 64 writers; client_python: %d files, %.1f MB, "
                                  "%d-byte exposition" % (py_hist["files"], py_hist["files_bytes"] / 1e6,
                                                          py_hist["exposition_bytes"]))
            else:
                self.add_row("scrape_hist_64x1000", "exporter render to a string", "ms",
                             ms("scrape_hist_64x1000/shmetrics"), "client_python (skipped in --quick)", [], None)
            self.add_row("scrape_hist_64x1000", "exporter render to a string", "ms",
                         ms("scrape_hist_64x1000/shmetrics"),
                         "prometheus-cpp Collect+Serialize, 1k histograms",
                         ms("scrape_hist_64x1000/prometheus_cpp"), ("≥4×", 4.0))
        if self.want("scrape_after_churn"):
            try:
                reps_args = ["--reps", "5", "--min-time-s", "0.05" if self.quick else "0.3", "--series", "1000"]
                py1 = self.python_peer("churn_1gen", ["churn", "--generations", "1"] + reps_args)
                py50 = self.python_peer("churn_50gen", ["churn", "--generations", "50"] + reps_args)
                self.add_row("scrape_after_churn", "after 50 generations", "ms", ms("scrape_after_churn/shmetrics_50gen"),
                             "shmetrics after 1 generation", ms("scrape_after_churn/shmetrics_1gen"),
                             ("≤1.2× 1 gen (≥0.83)", 1 / 1.2))
                self.add_row("scrape_after_churn", "after 50 generations", "ms", ms("scrape_after_churn/shmetrics_50gen"),
                             "client_python after 50 generations", py50["ms_per_scrape"],
                             note="client_python: %.2f ms after 1 generation, %.2f ms after 50 (%d files)" % (
                                 statistics.median(py1["ms_per_scrape"]), statistics.median(py50["ms_per_scrape"]),
                                 py50["files"]))
                self.add_row("scrape_after_churn", "after 1 generation", "ms", ms("scrape_after_churn/shmetrics_1gen"),
                             "client_python after 1 generation", py1["ms_per_scrape"])
            except Failure as e:
                self.errors.append(str(e))

        # segment bytes --------------------------------------------------------------
        if self.want("segment_bytes_64x10000", "segment_bytes_sparse"):
            try:
                sbytes = self.run_json("segment_bytes", [os.path.join(self.bin, "shmetrics-bench-mp"), "segment_bytes",
                                                         "--writers", "64", "--series", "10000",
                                                         "--sparse-percent", "10"], 600)
                self.results["segment_bytes"] = sbytes
                dense, sparse = sbytes["dense"], sbytes["sparse"]
                r = dense["regions"]
                def breakdown_of(seg):
                    r = seg["regions"]
                    return ("page pool %.2f MB (%d of %d pages used), page tables %.2f MB, overflow cells %.2f MB, "
                            "readyz ring %d B (overflow slot; other slots' from the pool on first use), "
                            "process records %.2f MB, dead buffers %.2f MB, "
                            "entries+strings %.2f MB; counters only (gauge_series 0, info_families 0)" % (
                                r["page_pool"] / 1e6, seg["pages_used"], seg["pool_pages"],
                                r["slot_page_tables"] / 1e6, r["overflow_cells"] / 1e6,
                                r["overflow_readyz"], r["process_records"] / 1e6,
                                r["dead_buffers"] / 1e6, r["header_entries_strings"] / 1e6))
                breakdown = breakdown_of(dense)
                if self.want("segment_bytes_64x10000"):
                    self.add_row("segment_bytes_64x10000", "64 slots × 10k series, all touched", "bytes",
                                 [dense["blocks_bytes"]], "bound 1.25×64×10k×8 B + names",
                                 [dense["bound_bytes"]], ("≤ bound (≥1)", 1.0), note=breakdown)
                    if py64 is not None:
                        self.add_row("segment_bytes_64x10000", "64 slots × 10k series, all touched",
                                     "bytes", [dense["blocks_bytes"]], "client_python files, 64 × 10k",
                                     [py64["files_bytes"]])
                if self.want("segment_bytes_sparse"):
                    self.add_row("segment_bytes_sparse", "64 slots × 10k series, 10% each",
                                 "bytes", [sparse["blocks_bytes"]], "bound 0.3 × dense segment",
                                 [0.3 * dense["blocks_bytes"]], ("≤0.3× dense (≥1)", 1.0),
                                 note="pool sized to the pattern's (slot, page) pairs + 5%%: %s; share of (slot, page) "
                                      "pairs touched, for pages of 8/64/512 cells: %s" % (
                                          breakdown_of(sparse),
                                          ", ".join("%.0f%%" % (100 * v) for v in
                                                    sparse["touched_page_fraction"].values())))
                    try:
                        pysp = self.python_peer("sparse_bytes", ["sparse_bytes", "--writers", "64", "--series", "10000",
                                                                 "--percent", "10"])
                        self.add_row("segment_bytes_sparse", "64 slots × 10k series, 10% each",
                                     "bytes", [sparse["blocks_bytes"]], "client_python files, 64 × 1k",
                                     [pysp["files_bytes"]])
                    except Failure as e:
                        self.errors.append(str(e))
            except Failure as e:
                self.errors.append(str(e))

        # Python writers ----------------------------------------------------------------
        if self.want(*PYTHON_SCENARIOS):
            self.python_scenarios()

        # the exporter over HTTP -------------------------------------------------------
        if self.want(*EXPORTER_SCENARIOS):
            try:
                self.exporter_scenarios()
            except Failure as e:
                self.errors.append(str(e))

        self.probe("end")
        self.elapsed = time.time() - t_start

    def scrape_gzip_rows(self, gb, py64):
        """scrape_64x10000_gzip: GET /metrics with Accept-Encoding: gzip from
        the exporter's HTTP server in process, against client_python's render
        + gzip.compress at zlib level 1 (the exporter's level); and the
        compressed bodies' sizes."""
        key = "scrape_64x10000_gzip/shmetrics_http"
        ms = [v / 1e6 for v in gb.get(key, [])]
        gz = gb.get(key + ":gzip_bytes", [])
        plain = gb.get(key + ":bytes", [])
        variant = "HTTP GET, gzip (server in process)"
        note = ("keep-alive connection, client on CPU 0, HttpServer with 1 thread on CPU 1; timed from sending the "
                "request to the last body byte; each answer inflated and checked untimed")
        if gz and plain:
            note += "; body %d bytes gzip of %d (%.1f×)" % (statistics.median(gz), statistics.median(plain),
                                                           statistics.median(plain) / statistics.median(gz))
        extra = {"body_bytes": statistics.median(plain) if plain else None,
                 "gzip_body_bytes": statistics.median(gz) if gz else None, "gzip_level": 1}
        if py64 is not None and "gzip_ms_per_scrape" in py64:
            note += "; client_python: %d bytes gzip of %d" % (py64["gzip_bytes"], py64["exposition_bytes"])
            extra.update({"peer_body_bytes": py64["exposition_bytes"], "peer_gzip_body_bytes": py64["gzip_bytes"]})
            self.add_row("scrape_64x10000_gzip", variant, "ms", ms,
                         "client_python collect + generate_latest + gzip level 1", py64["gzip_ms_per_scrape"],
                         ("≥100×", 100.0), note=note, extra=extra)
            self.add_row("scrape_64x10000_gzip", "gzip body", "bytes", [statistics.median(gz)] if gz else [],
                         "client_python gzip body", [py64["gzip_bytes"]])
        else:
            self.add_row("scrape_64x10000_gzip", variant, "ms", ms, "client_python (skipped in --quick)", [],
                         note=note, extra=extra)
            self.add_row("scrape_64x10000_gzip", "gzip body", "bytes", [statistics.median(gz)] if gz else [],
                         "client_python (skipped in --quick)", [])

    def scrape_openmetrics_rows(self, gb):
        """scrape_64x10000_openmetrics: the OpenMetrics render against the
        0.0.4 render of the same segment, both timed in each iteration."""
        # The target is the default's; --openmetrics-created (opt-in, a
        # _created line per series: 1.43x the 0.0.4 body's bytes) is reported.
        for op, variant, what, target in (
                ("scrape_64x10000_openmetrics", "exporter render, OpenMetrics 1.0.0",
                 "without _created samples (the default)", ("≤1.1× 0.0.4 (≥0.91)", 1 / 1.1)),
                ("scrape_64x10000_openmetrics_created",
                 "exporter render, OpenMetrics 1.0.0, --openmetrics-created",
                 "with a _created sample per series (opt-in)", None)):
            key = op + "/paired"
            om = [v / 1e6 for v in gb.get(key + ":openmetrics_ns", [])]
            text = [v / 1e6 for v in gb.get(key + ":text_ns", [])]
            om_bytes, text_bytes = gb.get(key + ":openmetrics_bytes", []), gb.get(key + ":text_bytes", [])
            note = "each iteration renders both, the order alternating, each timed on its own (scrape_shared, no copy)"
            if om_bytes and text_bytes:
                note += "; bodies %d bytes (OpenMetrics, %s) and %d (0.0.4)" % (
                    statistics.median(om_bytes), what, statistics.median(text_bytes))
            self.add_row(op, variant, "ms", om,
                         "the same render, text 0.0.4", text, target, note=note,
                         extra={"body_bytes": statistics.median(om_bytes) if om_bytes else None,
                                "peer_body_bytes": statistics.median(text_bytes) if text_bytes else None})

    def two_writers(self, op, mode, series, alone_row=False):
        """The rows of a two-writer scenario: shmetrics-bench-mp MODE (one
        series updated by 1, then 2 processes) against the floor and
        prometheus-cpp, per-writer time and scaling; alone_row: also one
        writer against one prometheus-cpp thread of a process with threads."""
        try:
            tw = self.run_json(mode, [
                os.path.join(self.bin, "shmetrics-bench-mp"), mode,
                "--duration-ms", "100" if self.quick else "1000", "--reps", "5",
                "--probe-iters", "2000000" if self.quick else "5000000"], 600)
        except Failure as e:
            self.errors.append(str(e))
            return
        self.results[mode] = tw
        variant = "2 processes, " + series
        note = "per-writer ns/op, writers pinned to CPU 0 and 1; one writer alone: %.3f ns/op" % (
            statistics.median(tw["shmetrics_1_ns_per_op"]))
        self.add_row(op, variant, "ns", tw["shmetrics_2_ns_per_op"],
                     "floor load+store, 2 processes", tw["floor_load_store_2_ns_per_op"], note=note)
        self.add_row(op, variant, "ns", tw["shmetrics_2_ns_per_op"],
                     "floor fetch_add, 2 processes", tw["floor_fetch_add_2_ns_per_op"])
        self.add_row(op, variant, "ns", tw["shmetrics_2_ns_per_op"],
                     "prometheus-cpp, 2 threads, 1 " + series.split()[-1], tw["prometheus_cpp_2_ns_per_op"],
                     note="prometheus-cpp 1 thread: %.3f ns/op" % statistics.median(tw["prometheus_cpp_1_ns_per_op"]))
        if alone_row:
            # glibc's mutex skips its atomic instructions until a process starts
            # its first thread: Google Benchmark's process never does, a server
            # using prometheus-cpp (its Exposer) always has.
            self.add_row(op, "1 process, " + series, "ns", tw["shmetrics_1_ns_per_op"],
                         "prometheus-cpp, 1 thread, process with threads", tw["prometheus_cpp_1_ns_per_op"],
                         note="prometheus-cpp's mutex pays its locked instructions here, as in a process serving "
                              "/metrics; Google Benchmark's single-threaded process spares them")
        self.add_row(op, "scaling (2 writers / 1)", "x", tw["shmetrics_scaling"],
                     "floor fetch_add scaling", tw["floor_fetch_add_scaling"],
                     ("≥0.9× floor (≥0.9)", 0.9), higher_is_better=True, extra={
                         "shmetrics_1writer_ns": tw["shmetrics_1_ns_per_op"],
                         "shmetrics_2writers_ns": tw["shmetrics_2_ns_per_op"],
                         "floor_fetch_add_1writer_ns": tw["floor_fetch_add_1_ns_per_op"],
                         "floor_fetch_add_2writers_ns": tw["floor_fetch_add_2_ns_per_op"]})
        self.add_row(op, "scaling (2 writers / 1)", "x", tw["shmetrics_scaling"],
                     "floor load+store scaling", tw["floor_load_store_scaling"],
                     ("≥0.9× floor (≥0.9)", 0.9), higher_is_better=True,
                     note="probe before %s, after %s" % (
                         json.dumps(tw["probe_before"]), json.dumps(tw["probe_after"])))

    # ------------------------------------------------- the exporter over HTTP
    def exporter_scenarios(self):
        """exporter_wrk, exporter_idle_2000 and exporter_tls: one segment of
        1,000 counter series written by 2 processes (serve_segment checks its
        own counts), served by a fresh exporter per scenario, pinned to CPU 1
        like its peer; the clients run on CPU 0."""
        with Processes(self) as procs:
            seg, _ = procs.start("exporter-segment", [os.path.join(self.bin, "shmetrics-bench-mp"), "serve_segment",
                                                      "--series", "1000", "--writers", "2"],
                                 stdin=subprocess.PIPE, ready_stream="stdout", ready=r"^\{.*\}$", stop="stdin")
            info = json.loads(procs.ready_line[seg])
            if not info.get("ok", False):
                self.check_failures.extend("serve_segment: " + c for c in info.get("check_failures", []))
            for key, scenario in (("exporter_wrk", self.exporter_wrk), ("exporter_idle_2000", self.exporter_idle),
                                  ("exporter_tls", self.exporter_tls)):
                if self.want(key):
                    try:
                        scenario(info)
                    except Failure as e:
                        self.errors.append("%s: %s" % (key, e))

    def start_exporter(self, procs, info, name, flags=()):
        """The exporter serving info's segment as its ops role on CPU 1;
        returns (process, port)."""
        exporter = os.path.join(self.build, "exporter", "shmetrics-exporter")
        p, m = procs.start(name, ["taskset", "-c", "1", exporter, "--ops-listen", "127.0.0.1:0",
                                  "--ops-segment", info["segment"], "--judge-listen", "127.0.0.1:0",
                                  "--judge-segment", info["segment"] + "-absent", *flags],
                           ready=r"event=listening role=ops address=127\.0\.0\.1:(\d+)")
        return p, int(m.group(1))

    def exporter_threads(self, name):
        """The serving threads the exporter started as `name` logged."""
        with open(self.log_path(name + ".log")) as f:
            m = re.search(r"event=serving threads=(\d+)", f.read())
        return m.group(1) if m else "?"

    @staticmethod
    def fetch(url, context=None):
        try:
            return urllib.request.urlopen(url, timeout=10, context=context).read()
        except OSError as e:
            raise Failure("GET %s failed: %s" % (url, e))

    def check_exporter_body(self, op, body, info, when):
        """Every series of the segment renders the count its writers wrote."""
        text = body.decode()
        family = info["family"]
        values = {}
        for line in text.splitlines():
            if line.startswith(family + "{"):
                key, _, v = line.rpartition(" ")
                values[key] = float(v)
        good = sum(1 for i in range(info["series"])
                   if values.get('%s{series="s%d"}' % (family, i)) == info["expected_each"])
        if good != info["series"]:
            self.check_failures.append("%s (%s): %d of %d series rendered %g" % (
                op, when, good, info["series"], info["expected_each"]))
        if 'shmetrics_segment_up{role="ops"} 1' not in text:
            self.check_failures.append("%s (%s): the exporter does not serve the segment" % (op, when))

    def wrk_pairs(self, op, urls, duration, reps):
        """wrk -t1 -c4 on CPU 0 against each (name, url) in turn, reps times
        interleaved; {name: [{"rps", "p99_ms"}, ...]}."""
        results = {name: [] for name, _ in urls}
        for rep in range(reps):
            for name, url in urls:
                results[name].append(self.wrk(op, url, duration, "%s-%s-%d" % (op, name, rep)))
        return results

    def exporter_wrk(self, info):
        duration = 1 if self.quick else 10
        reps = 5
        static = os.path.join(self.bin, "shmetrics-bench-static-server")
        with Processes(self) as procs:
            _, port = self.start_exporter(procs, info, "wrk-exporter")
            url = "http://127.0.0.1:%d/metrics" % port
            body = self.fetch(url)
            self.check_exporter_body("exporter_wrk", body, info, "before wrk")
            body_path = self.log_path("wrk-body.txt")
            with open(body_path, "wb") as f:
                f.write(body)
            _, m = procs.start("wrk-static", ["taskset", "-c", "1", static, body_path], ready_stream="stdout",
                               ready=r"^port (\d+)$")
            static_url = "http://127.0.0.1:%s/metrics" % m.group(1)
            if self.fetch(static_url) != body:
                raise Failure("the static server does not serve the exporter's bytes")
            results = self.wrk_pairs("exporter_wrk", [("exporter", url), ("static", static_url)], duration, reps)
            self.check_exporter_body("exporter_wrk", self.fetch(url), info, "after wrk")
        threads = self.exporter_threads("wrk-exporter")
        self.results["wrk"] = results
        e_rps = [r["rps"] for r in results["exporter"]]
        s_rps = [r["rps"] for r in results["static"]]
        note = ("exporter p99 %.2f ms, static p99 %.2f ms; %d-byte body, keep-alive, "
                "wrk -t1 -c4 -d%ds on CPU 0, server on CPU 1 (exporter: default flags, so %s serving thread(s) "
                "for its one CPU)" % (
                    statistics.median([r["p99_ms"] for r in results["exporter"]]),
                    statistics.median([r["p99_ms"] for r in results["static"]]), len(body), duration, threads))
        self.add_row("exporter_wrk", "exporter GET /metrics, 1k series", "rps", e_rps,
                     "cpp-httplib, same bytes, static", s_rps, ("≥1.0×", 1.0), higher_is_better=True, note=note,
                     extra={"shmetrics_p99_ms": [r["p99_ms"] for r in results["exporter"]],
                            "peer_p99_ms": [r["p99_ms"] for r in results["static"]],
                            "body_bytes": len(body), "wrk": "-t1 -c4 -d%ds --latency" % duration})

    def exporter_idle(self, info):
        reps = 3 if self.quick else 5
        scrapes = 100 if self.quick else 1000
        idle = 2000
        with Processes(self) as procs:
            # Every idle connection admitted (the default --max-connections is
            # 1024) and held for the whole measurement (the default
            # --header-timeout-ms of 5 s would close them).
            exporter, port = self.start_exporter(procs, info, "idle-exporter", [
                "--max-connections", "4096", "--header-timeout-ms", "600000"])
            body = self.fetch("http://127.0.0.1:%d/metrics" % port)
            self.check_exporter_body("exporter_idle_2000", body, info, "before")
            body_path = self.log_path("idle-body.txt")
            with open(body_path, "wb") as f:
                f.write(body)
            res = self.run_json("exporter_idle_2000", [
                "taskset", "-c", "0", PYTHON, os.path.join(HERE, "idle_scrape.py"), "--port", str(port),
                "--server-pid", str(exporter.pid), "--expect-body", body_path, "--idle", str(idle),
                "--scrapes", str(scrapes), "--reps", str(reps)], 600)
        self.results["idle"] = res
        note = ("p99 per repetition of %d scrapes, each a new connection (Connection: close), timed from connect() "
                "to the last body byte by a Python client on CPU 0; exporter on CPU 1 with --max-connections 4096 "
                "--header-timeout-ms 600000 (all %d idle connections held: %s server descriptors with them, %s "
                "without); pooled over the repetitions, p99 %.2f ms with, %.2f ms without, median %.2f ms with, "
                "%.2f ms without; %d-byte body" % (
                    scrapes, idle, "/".join(map(str, res["server_fds_with_idle"])),
                    "/".join(map(str, res["server_fds_without_idle"])),
                    *(res[k] or float("nan") for k in ("with_idle_pooled_p99_ms", "without_idle_pooled_p99_ms",
                                                       "with_idle_pooled_median_ms", "without_idle_pooled_median_ms")),
                    len(body)))
        self.add_row("exporter_idle_2000", "p99 scrape, 2,000 idle connections open", "ms",
                     res["with_idle_p99_ms"], "the same, no idle connections", res["without_idle_p99_ms"],
                     ("≤1.5× without (≥0.67)", 1 / 1.5), note=note,
                     extra={"idle_connections": idle, "scrapes_per_repetition": scrapes,
                            "connection_per_scrape": True, "body_bytes": len(body)})

    def exporter_tls(self, info):
        duration = 1 if self.quick else 10
        reps = 3 if self.quick else 5
        tls_dir = tempfile.mkdtemp(prefix="shmetrics-bench-tls-")
        try:
            cert, key = os.path.join(tls_dir, "server.crt"), os.path.join(tls_dir, "server.key")
            with open(self.log_path("tls-openssl.log"), "w") as log:
                rc = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                     "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-keyout", key, "-out", cert,
                                     "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                                    stdout=log, stderr=log, timeout=60).returncode
            if rc != 0:
                raise Failure("openssl could not make the certificate; see " + self.log_path("tls-openssl.log"))
            web_config = os.path.join(tls_dir, "web-config.yml")
            with open(web_config, "w") as f:
                f.write("tls_server_config:\n  cert_file: %s\n  key_file: %s\n" % (cert, key))
            context = ssl.create_default_context(cafile=cert)
            with Processes(self) as procs:
                _, port = self.start_exporter(procs, info, "tls-exporter", ["--web.config.file", web_config])
                # node_exporter logs the port it took (":0") once it serves TLS.
                _, m = procs.start("tls-node-exporter", ["taskset", "-c", "1", NODE_EXPORTER] + NODE_EXPORTER_FLAGS + [
                    "--web.listen-address=127.0.0.1:0", "--web.config.file=" + web_config],
                    ready=r'msg="TLS is enabled\." .*address=127\.0\.0\.1:(\d+)')
                url = "https://127.0.0.1:%d/metrics" % port
                node_url = "https://127.0.0.1:%s/metrics" % m.group(1)
                body = self.fetch(url, context)
                self.check_exporter_body("exporter_tls", body, info, "before wrk")
                node_body = self.fetch(node_url, context)
                self.check_node_exporter_body(node_body, "before wrk")
                ciphers = [self.tls_session(p, context) for p in (port, int(m.group(1)))]
                results = self.wrk_pairs("exporter_tls", [("exporter", url), ("node_exporter", node_url)],
                                         duration, reps)
                self.check_exporter_body("exporter_tls", self.fetch(url, context), info, "after wrk")
                self.check_node_exporter_body(self.fetch(node_url, context), "after wrk")
        finally:
            shutil.rmtree(tls_dir, ignore_errors=True)
        self.results["tls"] = results
        e_rps = [r["rps"] for r in results["exporter"]]
        n_rps = [r["rps"] for r in results["node_exporter"]]
        note = ("bodies: exporter %d bytes (1,000 series), node_exporter %d bytes (%s, with its go_/process_ "
                "metrics); p99 %.2f ms vs %.2f ms; negotiated by OpenSSL's client defaults: %s vs %s; P-256 "
                "certificate, HTTP/1.1 keep-alive, wrk -t1 -c4 -d%ds on CPU 0, both servers on CPU 1 "
                "(node_exporter: GOMAXPROCS 1 from the affinity)" % (
                    len(body), len(node_body), " ".join(NODE_EXPORTER_FLAGS),
                    statistics.median([r["p99_ms"] for r in results["exporter"]]),
                    statistics.median([r["p99_ms"] for r in results["node_exporter"]]), ciphers[0], ciphers[1],
                    duration))
        self.add_row("exporter_tls", "exporter GET /metrics over TLS, 1k series", "rps", e_rps,
                     "node_exporter 1.5.0 /metrics over TLS", n_rps, higher_is_better=True, note=note,
                     extra={"shmetrics_p99_ms": [r["p99_ms"] for r in results["exporter"]],
                            "peer_p99_ms": [r["p99_ms"] for r in results["node_exporter"]],
                            "body_bytes": len(body), "peer_body_bytes": len(node_body),
                            "wrk": "-t1 -c4 -d%ds --latency" % duration})

    @staticmethod
    def tls_session(port, context):
        """The protocol and cipher a client with OpenSSL's defaults (as wrk's)
        gets from the server on `port`."""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                name, version, _ = tls.cipher()
                return "%s %s" % (version, name)
        except OSError as e:
            raise Failure("TLS handshake with 127.0.0.1:%d failed: %s" % (port, e))

    def check_node_exporter_body(self, body, when):
        if not re.search(rb"^node_load1 [0-9.e+-]+$", body, re.M):
            self.check_failures.append("exporter_tls (%s): node_exporter's body has no node_load1 sample" % when)

    def wrk(self, op, url, duration, tag):
        cmd = ["taskset", "-c", "0", "wrk", "-t1", "-c4", "-d%ds" % duration, "--latency", url]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=duration + 60)
        with open(self.log_path("wrk-%s.log" % tag), "w") as f:
            f.write(p.stdout)
        m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
        l99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", p.stdout, re.M)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", p.stdout)
        if p.returncode != 0 or not m:
            raise Failure("wrk failed on %s; see %s" % (url, self.log_path("wrk-%s.log" % tag)))
        if errors:
            self.check_failures.append("%s: wrk reported errors on %s: %s" % (op, url, errors.group(0)))
        p99_ms = float(l99.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[l99.group(2)] if l99 else float("nan")
        return {"rps": float(m.group(1)), "p99_ms": p99_ms}

    # ------------------------------------------------------------- output
    @staticmethod
    def scale(unit, v):
        """(divisor, unit text) that suits the value v."""
        if unit == "bytes":
            return (1e6, "MB") if v >= 1e6 else (1e3, "kB")
        if unit == "x":
            return 1.0, "×"
        if unit == "rps":
            return 1.0, "req/s"
        ns = v * 1e6 if unit == "ms" else v
        if ns >= 1e6:
            return (1.0, "ms") if unit == "ms" else (1e6, "ms")
        if ns >= 1e3:
            return (1e-3, "µs") if unit == "ms" else (1e3, "µs")
        return (1e-6, "ns") if unit == "ms" else (1.0, "ns")

    @staticmethod
    def num(x):
        return "%.0f" % x if x >= 100 else "%.1f" % x if x >= 10 else "%.2f" % x

    def cell(self, triple, unit):
        m, lo, hi = triple
        if m is None:
            return "-"
        div, text = self.scale(unit, m)
        sep = "" if text == "×" else " "
        if lo == hi:
            return "%s%s%s" % (self.num(m / div), sep, text)
        return "%s%s%s [%s–%s]" % (self.num(m / div), sep, text, self.num(lo / div), self.num(hi / div))

    @staticmethod
    def ratio_text(r):
        if r is None:
            return "-"
        return "%.0f" % r if r >= 100 else "%.1f" % r if r >= 10 else "%.2f" % r

    def table(self):
        header = ["op", "shmetrics", "median [min – max]", "peer", "median [min – max]", "ratio", "target",
                  "verdict"]
        lines = []
        for r in self.rows:
            lines.append([r["op"], r["variant"], self.cell(r["shmetrics"], r["unit"]), r["peer"],
                          self.cell(r["peer_vals"], r["unit"]),
                          self.ratio_text(r["ratio"]), r["target"], r["verdict"]])
        return header, lines

    def print_table(self, markdown=False):
        header, lines = self.table()
        if markdown:
            out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for l in lines:
                out.append("| " + " | ".join(x.replace("|", "\\|") for x in l) + " |")
            return "\n".join(out)
        widths = [max(len(header[i]), *(len(l[i]) for l in lines)) if lines else len(header[i])
                  for i in range(len(header))]
        out = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(header)),
               "  ".join("-" * w for w in widths)]
        for l in lines:
            out.append("  ".join(x.ljust(widths[i]) for i, x in enumerate(l)).rstrip())
        return "\n".join(out)

    def json_rows(self):
        out = []
        run = {"quick": self.quick, "cpu_probe_ns_per_step": self.probes}
        for r in self.rows:
            u = r["unit"]
            sm, smin, smax = r["shmetrics"]
            pm, pmin, pmax = r["peer_vals"]
            out.append({
                "op": r["op"], "variant": r["variant"],
                "shmetrics_" + u: sm, "shmetrics_min_" + u: smin, "shmetrics_max_" + u: smax,
                "peer": r["peer"],
                "peer_" + u: pm, "peer_min_" + u: pmin, "peer_max_" + u: pmax,
                "ratio": r["ratio"], "target": r["target"], "target_min_ratio": r["target_min_ratio"],
                "verdict": r["verdict"], "repetitions": {"shmetrics": r["reps"][0], "peer": r["reps"][1]},
                "note": r["note"], **r["extra"], "run": run,
            })
        return out


def machine():
    def first(cmd):
        try:
            return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    lscpu = first(["lscpu"])
    get = lambda k: (re.search(r"^%s:\s*(.*)$" % re.escape(k), lscpu, re.M) or [None, "?"])[1]  # noqa: E731
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1))
    versions = {}
    for pkg in ["libbenchmark-dev", "prometheus-cpp-dev", "python3-prometheus-client", "wrk", "libcpp-httplib-dev"]:
        versions[pkg] = first(["dpkg-query", "-W", "-f=${Version}", pkg]) or "?"
    return {
        "cpu": get("Model name"), "vcpus": os.cpu_count(), "hypervisor": get("Hypervisor vendor"),
        "threads_per_core": get("Thread(s) per core"), "l2": get("L2 cache"), "l3": get("L3 cache"),
        "memory_gib": round(mem_kb / 1048576, 1), "kernel": platform.release(),
        "os": first(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "compiler": first(["c++", "--version"]).splitlines()[0] if first(["c++", "--version"]) else "?",
        "packages": versions,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", required=True, help="a release build with bench/ built")
    ap.add_argument("--quick", action="store_true", help="reduced set for CI (breakage, never speed)")
    ap.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    ap.add_argument("--only", metavar="KEY,...", help="run only these scenarios: " + ", ".join(SCENARIOS))
    ap.add_argument("--log-dir", help="where each program's output goes (default BUILD/bench-logs)")
    args = ap.parse_args()
    r = Runner(args)
    m = machine()
    r.say("machine: %s, %d vCPUs (%s), %s GiB, kernel %s, %s" % (
        m["cpu"], m["vcpus"], m["hypervisor"], m["memory_gib"], m["kernel"], m["os"]))
    try:
        r.run()
    except Failure as e:
        r.errors.append(str(e))
    print()
    print("shmetrics benchmarks%s — %s, %d vCPUs; ratio = peer time / shmetrics time (for scaling and "
          "requests/s: shmetrics / peer); higher is better for shmetrics" % (
              " (--quick)" if r.quick else "", m["cpu"], m["vcpus"]))
    for when, p in r.probes.items():
        print("cpu probe %-5s: %s ns/step; load average %s" % (
            when, ", ".join("%s %.3f" % (k, v) for k, v in p.items() if k.startswith("cpu")), " ".join(p["loadavg"])))
    print()
    print(r.print_table())
    notes = [(row["op"], row["peer"], row["note"]) for row in r.rows if row["note"]]
    if notes:
        print()
        for op, peer, note in notes:
            print("note %s (vs %s): %s" % (op, peer, note))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r.json_rows(), f, indent=1, ensure_ascii=False)
            f.write("\n")
        print("\nJSON written to %s" % args.json)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(r.print_table(markdown=True) + "\n")
        with open(args.markdown + ".machine.json", "w") as f:
            json.dump({"machine": m, "probes": r.probes, "elapsed_s": getattr(r, "elapsed", None),
                       "results": r.results}, f, indent=1)
    print("\nelapsed %.0f s; logs in %s" % (getattr(r, "elapsed", 0), r.log_dir))
    status = 0
    if r.errors:
        for e in r.errors:
            print("error: " + e, file=sys.stderr)
        status = 1
    if r.check_failures:
        for c in r.check_failures:
            print("CHECK FAILED: " + c, file=sys.stderr)
        status = 3
    missed = [row for row in r.rows if row["verdict"].startswith("MISSED")]
    print("%d target(s) met, %d missed, %d check failure(s), %d error(s)" % (
        sum(1 for row in r.rows if row["verdict"] == "met"), len(missed), len(r.check_failures), len(r.errors)))
    return status


if __name__ == "__main__":
    sys.exit(main())
