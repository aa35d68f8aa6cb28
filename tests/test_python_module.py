"""The Python module shmetrics, as its users meet it: classes shaped like
prometheus_client's, written from real fork()ed processes, read back through
the real exporter (shmetrics-exporter --once) and python3-prometheus-client's
own parser.

Run: PYTHONPATH=<build>/bindings/python SHMETRICS_EXPORTER=<exporter>
/usr/bin/python3 tests/test_python_module.py
"""
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import unittest.mock

import shmetrics
from prometheus_client.parser import text_string_to_metric_families

EXPORTER = os.environ["SHMETRICS_EXPORTER"]


def scrape(path):
    """{(sample name, frozenset of labels): value} of one exposition."""
    out = subprocess.run([EXPORTER, "--once", path], check=True, capture_output=True, text=True, timeout=60).stdout
    samples = {}
    for family in text_string_to_metric_families(out):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def fork(work):
    """Runs work() in a forked child; returns its pid. The child exits 0 when
    work() returns, 1 when it raises (the traceback on stderr)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def wait(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# A process maps at most 16 segments and keeps each for its life (as a
# worker does), so the tests share one; each names its own families.
SEGMENT_DIR = tempfile.mkdtemp(prefix="shmpy-", dir="/dev/shm")
SEGMENT = shmetrics.Segment("ops", instance="t", directory=SEGMENT_DIR)


def bucket(samples, name, le, **labels):
    """A _bucket sample by its bound as a number (the exporter writes 10, not 10.0)."""
    for (n, ls), v in samples.items():
        d = dict(ls)
        if n == name and float(d.pop("le")) == float(le) and d == labels:
            return v
    return None


class SegmentTest(unittest.TestCase):
    def setUp(self):
        self.segment = SEGMENT

    def scrape(self):
        return scrape(self.segment.path)


class CounterTest(SegmentTest):
    def test_four_processes_count_exactly_labelled_and_not(self):
        c = shmetrics.Counter("jobs", "Jobs done.", ["kind"], segment=self.segment)
        total = shmetrics.Counter("ticks_total", "Ticks.", segment=self.segment)

        def work():
            child = c.labels("a")
            for _ in range(1000):
                child.inc()
                total.inc(2)
            c.labels(kind="b").inc(0.25)

        pids = [fork(work) for _ in range(4)]
        self.assertEqual([wait(p) for p in pids], [0] * 4)
        s = self.scrape()
        self.assertEqual(value(s, "jobs_total", kind="a"), 4000.0)
        self.assertEqual(value(s, "jobs_total", kind="b"), 1.0)
        self.assertEqual(value(s, "ticks_total"), 8000.0)

    def test_a_sigkilled_process_keeps_its_counts(self):
        c = shmetrics.Counter("kills", "Counted before a SIGKILL.", segment=self.segment, value_type="int")
        r, w = os.pipe()

        def work():
            for _ in range(12345):
                c.inc()
            os.write(w, b"x")
            time.sleep(60)

        pid = fork(work)
        self.assertEqual(os.read(r, 1), b"x")
        os.kill(pid, signal.SIGKILL)
        self.assertEqual(wait(pid), -signal.SIGKILL)
        c.inc()
        self.assertEqual(value(self.scrape(), "kills_total"), 12346.0)

    def test_int_counters_are_exact_past_two_to_the_53(self):
        c = shmetrics.Counter("big", "Big.", segment=self.segment, value_type="int")
        c.inc(2**53)
        c.inc(1)
        out = subprocess.run([EXPORTER, "--once", self.segment.path], check=True, capture_output=True,
                             text=True).stdout
        self.assertIn("big_total %d\n" % (2**53 + 1), out)

    def test_label_values_are_made_str_and_children_are_kept(self):
        c = shmetrics.Counter("codes", "Codes.", ["code", "method"], segment=self.segment)
        self.assertIs(c.labels(200, "GET"), c.labels("200", "GET"))
        self.assertIs(c.labels(code=200, method="GET"), c.labels("200", "GET"))

        class Route:  # str() is the label value, as prometheus_client makes it; not repr()
            def __str__(self):
                return "/cart"

            def __repr__(self):
                return "Route()"

        self.assertIs(c.labels(Route(), "GET"), c.labels("/cart", "GET"))
        c.labels(200, "GET").inc()
        c.labels(method="GET", code="200").inc()
        self.assertEqual(value(self.scrape(), "codes_total", code="200", method="GET"), 2.0)

    def test_refusals_raise_with_the_reason(self):
        c = shmetrics.Counter("r", "R.", ["a"], segment=self.segment)
        i = shmetrics.Counter("ri", "RI.", segment=self.segment, value_type="int")
        cases = [
            (lambda: c.labels("x", "y"), ValueError, "takes 1 label values"),
            (lambda: c.labels(b="x"), ValueError, "takes the label names ('a',)"),
            (lambda: c.labels("x", a="y"), ValueError, "by position or by name, not both"),
            (lambda: c.inc(), ValueError, "has label names ('a',): expected .labels(...) first"),
            (lambda: c.labels("x").inc(-1), ValueError, "is negative"),
            (lambda: c.labels("x").inc(math.nan), ValueError, "expected a finite number >= 0"),
            (lambda: c.labels("x").inc(math.inf), ValueError, "expected a finite number >= 0"),
            (lambda: c.labels("x").inc("1"), TypeError, "must be a number, not str"),
            (lambda: c.labels("x").inc(1, {}, 3), TypeError, "at most 2 arguments"),
            (lambda: c.labels("x").inc(size=1), TypeError, "unexpected or repeated keyword argument 'size'"),
            (lambda: c.labels("x").inc(1, amount=1), TypeError, "repeated keyword argument 'amount'"),
            (lambda: i.inc(0.5), ValueError, "is not an integer below 2**64"),
            (lambda: i.inc(2**64), ValueError, "is not an integer below 2**64"),
            (lambda: i.inc(1e20), ValueError, "is not an integer below 2**64"),
            (lambda: i.inc(10**400), OverflowError, "too large"),
            (lambda: i.labels("x"), ValueError, "has no label names"),
            (lambda: shmetrics.Counter("bad name", "B.", segment=self.segment), ValueError, "is invalid"),
            (lambda: shmetrics.Counter("r", "R.", ["b"], segment=self.segment), ValueError,
             "asks for counter with labels [b]"),
            (lambda: shmetrics.Counter("v", "V.", segment=self.segment, value_type="decimal"), ValueError,
             'expected "float" or "int"'),
            (lambda: shmetrics.Counter("l", "L.", "ab", segment=self.segment), TypeError, "not a str"),
            (lambda: shmetrics.Counter("l", "L.", [1], segment=self.segment), TypeError, "must be a str"),
            (lambda: shmetrics.Counter("shmetrics_x", "X.", segment=self.segment), ValueError, "shmetrics_"),
        ]
        for f, error, message in cases:
            with self.subTest(message=message):
                with self.assertRaises(error) as caught:
                    f()
                self.assertIn(message, str(caught.exception))
        # Nothing refused was counted.
        s = self.scrape()
        self.assertEqual(value(s, "r_total", a="x"), 0.0)
        self.assertEqual(value(s, "ri_total"), 0.0)

    def test_a_full_segment_refuses_series_without_raising_and_families_with_segment_error(self):
        d = tempfile.mkdtemp(prefix="shmpy-", dir="/dev/shm")
        self.addCleanup(shutil.rmtree, d, True)
        small = shmetrics.Segment("ops", instance="small", directory=d, families=2, series=3)
        second = shmetrics.Counter("second", "Second.", segment=small)
        c = shmetrics.Counter("few", "Few.", ["n"], segment=small)
        kept = [c.labels(str(n)) for n in range(4)]
        self.assertEqual([k.attached for k in kept], [True, True, False, False])
        self.assertIsNot(c.labels("3"), kept[3])  # a refused series is not kept
        for k in kept:
            k.inc()  # dropped and counted, never raised
        second.inc()
        with self.assertRaises(shmetrics.SegmentError) as caught:
            shmetrics.Counter("third", "Third.", segment=small)
        self.assertIsInstance(caught.exception, OSError)
        s = scrape(small.path)
        self.assertEqual(value(s, "few_total", n="0"), 1.0)
        self.assertIsNone(value(s, "few_total", n="3"))
        self.assertEqual(value(s, "second_total"), 1.0)
        # Two label sets, one of them asked for twice, and a family.
        self.assertEqual(value(s, "shmetrics_series_refused_total", role="once"), 4.0)
        self.assertEqual(value(s, "shmetrics_refused_series_updates_total", role="once"), 2.0)

    def test_prometheus_clients_call_forms_and_numbers_beyond_64_bits(self):
        c = shmetrics.Counter("forms", "Forms.", segment=self.segment)
        c.inc(amount=2)
        c.inc(3, {"trace_id": "abc"})  # an exemplar: accepted, not stored
        c.inc(amount=1, exemplar={"trace_id": "abc"})
        c.inc(2**64)  # a double family holds it
        g = shmetrics.Gauge("forms_gauge", "Forms.", multiprocess_mode="livesum", segment=self.segment)
        g.set(value=5)
        g.inc(amount=2)
        g.dec(amount=1)
        h = shmetrics.Histogram("forms_seconds", "Forms.", buckets=[1], segment=self.segment)
        h.observe(amount=0.5, exemplar={"trace_id": "abc"})
        h.observe(10**20)
        s = self.scrape()
        self.assertEqual(value(s, "forms_total"), 6.0 + 2.0**64)
        self.assertEqual(value(s, "forms_gauge"), 6.0)
        self.assertEqual(value(s, "forms_seconds_count"), 2.0)
        self.assertEqual(bucket(s, "forms_seconds_bucket", 1), 1.0)

        class Interrupting:
            def __float__(self):
                raise KeyboardInterrupt

        with self.assertRaises(KeyboardInterrupt):  # not turned into TypeError
            c.inc(Interrupting())
        gen = shmetrics.Counter("gen_labels", "G.", (n for n in ["route"]), segment=self.segment)
        gen.labels("/").inc()
        info = shmetrics.Segment.info(self.segment, "gen_info", "G.", (n for n in ["version"]))
        self.assertEqual(info.labelnames, ("version",))
        hist = shmetrics.Histogram("gen_seconds", "G.", (n for n in ["route"]), segment=self.segment)
        hist.labels("/").observe(1)
        s = self.scrape()
        self.assertEqual(value(s, "gen_labels_total", route="/"), 1.0)
        self.assertEqual(value(s, "gen_seconds_count", route="/"), 1.0)

    def test_a_refused_series_is_asked_for_again_once_a_second_and_rebound(self):
        d = tempfile.mkdtemp(prefix="shmpy-", dir="/dev/shm")
        self.addCleanup(shutil.rmtree, d, True)
        full = shmetrics.Segment("ops", instance="rebind", directory=d, series=1)
        shmetrics.Counter("first", "F.", segment=full).inc()  # the only series
        refused = shmetrics.Counter("second", "S.", ["k"], segment=full).labels("x")
        self.assertFalse(refused.attached)
        good = shmetrics.Counter("rebound", "R.", ["k"], segment=self.segment).labels("x")
        answers = [refused, refused, good]
        asked = []

        def resolve():
            asked.append(1)
            return answers.pop(0)

        class Owner:
            pass

        owner = Owner()
        now = [1000.0]
        with unittest.mock.patch.object(shmetrics.time, "monotonic", lambda: now[0]):
            shmetrics._bind(owner, {"inc": "inc"}, resolve)
            owner.inc()          # dropped, and not asked again within the second
            now[0] += 0.5
            owner.inc(2)
            self.assertEqual(len(asked), 1)
            now[0] += 0.6        # a second later: asked again, still refused
            owner.inc(4)
            self.assertEqual(len(asked), 2)
            now[0] += 1.0        # had: rebound to the series' own method
            owner.inc(8)
            self.assertEqual(len(asked), 3)
            self.assertEqual(owner.inc, good.inc)
            owner.inc(16)
        self.assertEqual(value(self.scrape(), "rebound_total", k="x"), 24.0)
        self.assertEqual(value(scrape(full.path), "shmetrics_refused_series_updates_total", role="once"), 3.0)

    def test_count_exceptions(self):
        c = shmetrics.Counter("failures", "Failures.", segment=self.segment)

        @c.count_exceptions(KeyError)
        def f(x):
            return {}[x]

        for _ in range(3):
            with self.assertRaises(KeyError):
                f(1)
        with self.assertRaises(ValueError):
            with c.count_exceptions(KeyError):
                raise ValueError("not counted")
        self.assertEqual(value(self.scrape(), "failures_total"), 3.0)


class GaugeTest(SegmentTest):
    def test_livesum_forgets_a_dead_process_and_sum_keeps_it(self):
        live = shmetrics.Gauge("inflight", "In flight.", multiprocess_mode="livesum", segment=self.segment)
        kept = shmetrics.Gauge("handled", "Handled.", multiprocess_mode="sum", segment=self.segment)
        live.set(1)
        kept.set(1)
        pid = fork(lambda: (live.set(10), kept.set(10)))
        self.assertEqual(wait(pid), 0)
        s = self.scrape()
        self.assertEqual(value(s, "inflight"), 1.0)
        self.assertEqual(value(s, "handled"), 11.0)

    def test_all_gives_a_sample_per_process(self):
        g = shmetrics.Gauge("memory", "Memory.", ["kind"], segment=self.segment)  # multiprocess_mode='all'
        g.labels("rss").set(5)
        s = self.scrape()
        self.assertEqual(value(s, "memory", kind="rss", pid=str(os.getpid())), 5.0)

    def test_inc_dec_track_inprogress_and_time(self):
        g = shmetrics.Gauge("busy", "Busy.", multiprocess_mode="livesum", segment=self.segment)
        g.inc()
        g.inc(2.5)
        g.dec(0.5)
        with g.track_inprogress():
            self.assertEqual(value(self.scrape(), "busy"), 4.0)

        @g.track_inprogress()
        def f():
            return value(self.scrape(), "busy")

        self.assertEqual(f(), 4.0)
        self.assertEqual(value(self.scrape(), "busy"), 3.0)
        t = shmetrics.Gauge("last_seconds", "Seconds.", multiprocess_mode="livemax", segment=self.segment)
        with t.time():
            time.sleep(0.01)
        self.assertGreaterEqual(value(self.scrape(), "last_seconds"), 0.01)

    def test_set_to_current_time_and_integer_gauges(self):
        g = shmetrics.Gauge("started", "Start time.", multiprocess_mode="livemax", segment=self.segment)
        before = time.time()
        g.set_to_current_time()
        self.assertTrue(before <= value(self.scrape(), "started") <= time.time())
        n = shmetrics.Gauge("queue", "Queue.", multiprocess_mode="livesum", segment=self.segment, value_type="int")
        n.set(2**62)
        n.inc(3)
        out = subprocess.run([EXPORTER, "--once", self.segment.path], check=True, capture_output=True,
                             text=True).stdout
        self.assertIn("queue %d\n" % (2**62 + 3), out)
        for bad, error in [(0.5, ValueError), (2**63, ValueError), (math.nan, ValueError), ("1", TypeError)]:
            with self.subTest(bad=bad), self.assertRaises(error):
                n.set(bad)

    def test_refusals(self):
        with self.assertRaises(ValueError) as caught:
            shmetrics.Gauge("g", "G.", multiprocess_mode="livesmum", segment=self.segment)
        self.assertIn('"livesmum" is invalid: expected livesum', str(caught.exception))
        g = shmetrics.Gauge("g2", "G.", segment=self.segment)
        with self.assertRaises(ValueError):
            g.set(math.nan)
        with self.assertRaises(ValueError) as caught:
            g.set_function(lambda: 1)
        self.assertIn("not supported", str(caught.exception))


class HistogramTest(SegmentTest):
    def test_processes_observe_into_prometheus_clients_default_buckets(self):
        h = shmetrics.Histogram("latency_seconds", "Latency.", ["route"], segment=self.segment)

        def work():
            child = h.labels("/")
            for v in (0.001, 0.07, 0.7, 7, 100):
                child.observe(v)

        pids = [fork(work) for _ in range(3)]
        self.assertEqual([wait(p) for p in pids], [0] * 3)
        s = self.scrape()
        want = {"0.005": 3, "0.075": 6, "0.75": 9, "7.5": 12, "10.0": 12, "+Inf": 15}
        for le, n in want.items():
            self.assertEqual(bucket(s, "latency_seconds_bucket", le, route="/"), n, le)
        self.assertEqual(value(s, "latency_seconds_count", route="/"), 15.0)
        self.assertAlmostEqual(value(s, "latency_seconds_sum", route="/"), 3 * 107.771)
        les = sorted(float(dict(k[1])["le"]) for k in s if k[0] == "latency_seconds_bucket")
        self.assertEqual(les, [float(b) for b in shmetrics.Histogram.DEFAULT_BUCKETS])

    def test_time_nan_and_bounds(self):
        h = shmetrics.Histogram("work_seconds", "Work.", buckets=[0.5, 1, math.inf], segment=self.segment)

        @h.time()
        def f():
            return 7

        self.assertEqual(f(), 7)
        with h.time():
            pass
        with self.assertRaises(ValueError):
            h.observe(math.nan)
        s = self.scrape()
        self.assertEqual(value(s, "work_seconds_count"), 2.0)
        self.assertEqual(bucket(s, "work_seconds_bucket", 0.5), 2.0)
        for buckets, message in [([1, 0.5], "increasing"), ([], "empty"), (["x"], "bucket 'x' is not a number")]:
            with self.subTest(buckets=buckets), self.assertRaises((ValueError, TypeError)) as caught:
                shmetrics.Histogram("b%d" % len(message), "B.", buckets=buckets, segment=self.segment)
            self.assertIn(message, str(caught.exception))
        with self.assertRaises(ValueError):
            shmetrics.Histogram("le_label", "L.", ["le"], segment=self.segment)


class SummaryTest(SegmentTest):
    def test_count_and_sum_from_processes_no_quantiles(self):
        s_ = shmetrics.Summary("payload_bytes", "Payloads.", ["method"], unit="bytes", segment=self.segment)
        pids = [fork(lambda: [s_.labels("GET").observe(2.5) for _ in range(100)]) for _ in range(3)]
        self.assertEqual([wait(p) for p in pids], [0] * 3)
        with s_.labels("PUT").time():
            pass
        with self.assertRaises(ValueError):
            s_.labels("GET").observe(math.nan)
        with self.assertRaises(ValueError):
            shmetrics.Summary("q", "Q.", ["quantile"], segment=self.segment)
        s = self.scrape()
        self.assertEqual(value(s, "payload_bytes_count", method="GET"), 300.0)
        self.assertEqual(value(s, "payload_bytes_sum", method="GET"), 750.0)
        self.assertEqual(value(s, "payload_bytes_count", method="PUT"), 1.0)
        out = subprocess.run([EXPORTER, "--once", self.segment.path], check=True, capture_output=True,
                             text=True).stdout
        self.assertIn("# TYPE payload_bytes summary\n", out)


class InfoReadyzTest(SegmentTest):
    def test_info_shows_the_live_processes_value(self):
        i = shmetrics.Info("build", "Build.", segment=self.segment)
        i.info({"version": "1.2.3", "commit": "abc"})
        s = self.scrape()
        self.assertEqual(value(s, "build_info", version="1.2.3", commit="abc"), 1.0)
        with self.assertRaises(ValueError) as caught:
            i.info({"version": "2"})
        self.assertIn("differ from the first info() call's", str(caught.exception))
        with self.assertRaises(TypeError):
            i.info([("version", "2")])
        with self.assertRaises(ValueError):
            shmetrics.Info("labelled", "L.", ["a"], segment=self.segment)
        i.clear()
        self.assertIsNone(value(self.scrape(), "build_info", version="1.2.3", commit="abc"))

    def test_readyz(self):
        r = shmetrics.Readyz(segment=self.segment)
        for ok in (True, True, False):
            r.observe(ok)
        s = self.scrape()
        self.assertEqual(value(s, "readyz_checks_total"), 3.0)
        self.assertEqual(value(s, "readyz_failures_total"), 1.0)


class DefaultSegmentTest(unittest.TestCase):
    def test_configure_from_the_environment_and_refusals(self):
        d = tempfile.mkdtemp(prefix="shmpy-", dir="/dev/shm")
        self.addCleanup(shutil.rmtree, d, True)
        code = (
            "import shmetrics, sys\n"
            "try:\n"
            "    shmetrics.Counter('x', 'X.')\n"
            "except ValueError as e:\n"
            "    print('refused:', e)\n"
            "import os; os.environ['SHMETRICS_ROLE'] = 'judge'; os.environ['SHMETRICS_INSTANCE'] = 'env'\n"
            "shmetrics.Counter('x', 'X.').inc(3)\n"
            "print(shmetrics.default_segment().path)\n")
        env = dict(os.environ, SHMETRICS_SEGMENT_DIR=d)
        env.pop("SHMETRICS_ROLE", None)
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                             text=True).stdout.splitlines()
        self.assertIn("refused: no segment: call shmetrics.configure", out[0])
        self.assertEqual(out[1], os.path.join(d, "env.judge"))
        self.assertEqual(value(scrape(out[1]), "x_total"), 3.0)
        with self.assertRaises(shmetrics.SegmentError):
            shmetrics.Segment("ops", instance="t", directory="/proc/nonexistent")
        with self.assertRaises(ValueError):
            shmetrics.Segment("ops", instance="t", directory=d, series=-1)


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        shutil.rmtree(SEGMENT_DIR, ignore_errors=True)
