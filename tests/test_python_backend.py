"""shmetrics.prometheus_client_backend, as its users meet it: an application
written for python3-prometheus-client (tests/prometheus_client_app.py,
unmodified) runs once in one process on prometheus_client's own storage and
once in forked workers on the backend; the exporter's exposition of the
second must hold the same samples as prometheus_client's of the first.
What the backend cannot store is refused when the metric is defined.

Run: PYTHONPATH=<build>/bindings/python SHMETRICS_EXPORTER=<exporter>
/usr/bin/python3 tests/test_python_backend.py
"""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

from prometheus_client.parser import text_string_to_metric_families

HERE = os.path.dirname(os.path.abspath(__file__))
EXPORTER = os.environ["SHMETRICS_EXPORTER"]
REQUESTS = 3000
WORKERS = 6


def samples_of(text):
    """{(name, frozenset of labels): value}, without _created samples."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith("_created"):
                labels = dict(s.labels)
                if "le" in labels:  # 1.0 from prometheus_client, 1 from the exporter
                    labels["le"] = repr(float(labels["le"]))
                out[(s.name, frozenset(labels.items()))] = s.value
    return out


def run(code, **env):
    """Runs a Python program with the tests' directory importable; its stdout."""
    environment = dict(os.environ, **env)
    environment["PYTHONPATH"] = HERE + os.pathsep + environment.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environment, capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"the program failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


class BackendTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmpy-", dir="/dev/shm")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_an_unmodified_application_gives_the_same_samples_from_forked_workers(self):
        reference = run(f"""
            import prometheus_client, prometheus_client_app as app
            app.start()
            for i in range({REQUESTS}):
                app.handle(i)
            print(prometheus_client.generate_latest().decode())
            """)
        ours = run(f"""
            import os, subprocess, sys
            import shmetrics.prometheus_client_backend
            segment = shmetrics.prometheus_client_backend.install(instance="app", role="ops", directory={self.dir!r})
            import prometheus_client_app as app
            app.start()
            pids = []
            for w in range({WORKERS}):
                pid = os.fork()
                if pid == 0:
                    for i in range(w, {REQUESTS}, {WORKERS}):
                        app.handle(i)
                    os._exit(0)
                pids.append(pid)
            for pid in pids:
                assert os.waitpid(pid, 0)[1] == 0
            sys.stdout.write(subprocess.run([{EXPORTER!r}, "--once", segment.path], check=True,
                                            capture_output=True, text=True).stdout)
            """)
        want = {k: v for k, v in samples_of(reference).items() if not k[0].startswith(("python_", "process_"))}
        got = samples_of(ours)
        self.assertEqual(len(want), 33)  # 4 request series, 2 histograms, 2 summaries, 3 gauges, errors, info
        # A livesum gauge counts live processes only: every worker has exited
        # and the master never set it, so it has no sample (0 in one process).
        self.assertEqual(want.pop(("app_inflight_requests", frozenset())), 0.0)
        self.assertNotIn(("app_inflight_requests", frozenset()), got)
        for key, value in sorted(want.items(), key=repr):
            with self.subTest(sample=key):
                self.assertIn(key, got)
                if key[0].endswith("_sum"):
                    self.assertAlmostEqual(got[key], value, places=6)
                else:
                    self.assertEqual(got[key], value)
        # The families prometheus_client declares, with their types.
        types = {f.name: f.type for f in text_string_to_metric_families(ours)}
        for family in text_string_to_metric_families(reference):
            # (text 0.0.4 from prometheus_client: _created samples as gauges of their own)
            # and only families with samples: the exporter leaves out one without.
            if any(k[0].startswith(family.name) for k in want) and not family.name.endswith("_created"):
                self.assertEqual(types.get(family.name), family.type, family.name)

    def test_what_the_segment_cannot_hold_is_refused_at_definition(self):
        out = run(f"""
            import shmetrics.prometheus_client_backend as backend
            from prometheus_client import Counter, Enum, Gauge, Info
            backend.install(instance="refusals", role="ops", directory={self.dir!r})
            def refused(f):
                try:
                    f()
                except ValueError as e:
                    print("ValueError:", e)
                else:
                    print("accepted")
            refused(lambda: Enum("state", "State.", states=["a", "b"]))
            refused(lambda: Info("labelled", "Labelled.", ["a"]))
            refused(lambda: Gauge("g", "G.", multiprocess_mode="livesum").set_function(lambda: 1))
            refused(lambda: Counter("shmetrics_own", "Own."))
            Counter("clash_total", "Clash.", ["a"])
            refused(lambda: Counter("clash_total", "Clash.", ["b"], registry=None))
            g = Gauge("nan_gauge", "N.", multiprocess_mode="livesum")
            g.set(float("nan"))  # prometheus_client takes it: dropped and counted, not raised
            print("nan accepted")
            Counter("gen_total", "G.", (n for n in ["route"])).labels("/").inc()
            print("generator labelnames accepted")
            i = Info("ok", "Ok.")
            i.info({{"a": "1"}})
            refused(lambda: i.info({{"b": "1"}}))
            print(backend.install() is backend.install())
            """)
        lines = out.splitlines()
        self.assertIn("Enum state is not supported by the shmetrics backend", lines[0])
        self.assertIn("Info labelled: label names are not supported", lines[1])
        self.assertIn("set_function is not supported", lines[2])
        self.assertIn('"shmetrics_own_total" is reserved', lines[3])
        self.assertIn("asks for counter with labels [b]", lines[4])
        self.assertEqual(lines[5], "nan accepted")
        self.assertEqual(lines[6], "generator labelnames accepted")
        self.assertIn("differ from the first info() call's", lines[7])
        self.assertEqual(lines[8], "True")

    def test_install_after_metrics_are_defined_is_refused(self):
        out = run("""
            import prometheus_client, shmetrics.prometheus_client_backend as backend
            prometheus_client.Counter("early_total", "Defined before install().")
            try:
                backend.install(instance="late", role="ops")
            except RuntimeError as e:
                print(e)
            """, SHMETRICS_SEGMENT_DIR=self.dir)
        self.assertIn("install() must run before the application's metrics are defined", out)
        self.assertIn("early", out)
        self.assertEqual(os.listdir(self.dir), [])  # no segment was made


if __name__ == "__main__":
    unittest.main(verbosity=2)
