"""The gunicorn example (examples/python/) under Debian's gunicorn: four
preforked sync workers on 127.0.0.1, python3-prometheus-client metrics on
shmetrics' backend. Rounds of requests; after each, two idle workers are
SIGKILLed and gunicorn starts new ones. The exporter's totals must count
every answered request exactly, the dead workers' included, and the
master's child_exit hook every killed worker.

Run: PYTHONPATH=<build>/bindings/python SHMETRICS_EXPORTER=<exporter>
/usr/bin/python3 tests/gunicorn_test.py
"""
import http.client
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

from prometheus_client.parser import text_string_to_metric_families
from prefork_lib import DEADLINE_S, Master, live_children, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "python")
EXPORTER = os.environ["SHMETRICS_EXPORTER"]
GUNICORN = shutil.which("gunicorn", path="/usr/bin") or "/usr/bin/gunicorn"
WORKERS = 4
ROUNDS = 5
REQUESTS_PER_ROUND = 120
KILLS_PER_ROUND = 2


class GunicornTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmpy-", dir="/dev/shm")
        self.addCleanup(shutil.rmtree, self.dir, True)
        env = dict(os.environ, SHMETRICS_SEGMENT_DIR=self.dir, SHMETRICS_INSTANCE="gunicorn-test",
                   SHMETRICS_ROLE="ops", GUNICORN_BIND="127.0.0.1:0", GUNICORN_WORKERS=str(WORKERS))
        env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "") + os.pathsep + EXAMPLE
        self.master = Master([GUNICORN, "-c", os.path.join(EXAMPLE, "gunicorn.conf.py"), "gunicorn_app:app"], env)
        self.addCleanup(self.master.stop)
        line = self.master.wait_log("gunicorn's 'Listening at'", r"Listening at: http://127\.0\.0\.1:(\d+)")
        self.port = int(line.group(1))

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE_S)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def workers(self):
        """The master's children once there are WORKERS of them, all alive and booted."""
        pids = self.master.workers(WORKERS)
        if pids is None:
            return None
        booted = {int(m) for line in self.master.log for m in re.findall(r"Booting worker with pid: (\d+)", line)}
        return pids if pids <= booted else None

    def test_sigkilled_workers_lose_no_count(self):
        answered = {"/work": 0, "/pid": 0, "other": 0}
        killed = []
        seen_pids = set()
        for round_ in range(ROUNDS):
            pids = wait_for(f"{WORKERS} booted workers in round {round_}", self.workers)
            for i in range(REQUESTS_PER_ROUND):
                path = ("/work?ms=0", "/pid", "/nowhere")[i % 3]
                status, body = self.get(path)
                route = "other" if path == "/nowhere" else path.split("?")[0]
                self.assertEqual(status, 404 if route == "other" else 200, path)
                if route == "/pid":
                    seen_pids.add(int(body))
                answered[route] += 1
            # Every request is answered, so the workers are idle: kill two.
            victims = sorted(pids)[:KILLS_PER_ROUND]
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            killed += victims
            wait_for("the killed workers to be reaped",
                     lambda: not any(p in live_children(self.master.process.pid) for p in victims))
        wait_for(f"{WORKERS} booted workers at the end", self.workers)
        wait_for("child_exit for every killed worker",
                 lambda: self.sample("app_gunicorn_worker_exits_total") == len(killed))
        self.assertGreater(len(seen_pids & set(killed)), 0, "no killed worker had answered a request")

        s = self.samples()
        for route, n in answered.items():
            status = "404" if route == "other" else "200"
            with self.subTest(route=route):
                self.assertEqual(s.get(("app_http_requests_total", (("route", route), ("status", status)))), n)
                self.assertEqual(s.get(("app_http_request_seconds_count", (("route", route),))), n)
                self.assertEqual(s.get(("app_http_request_seconds_bucket", (("le", "+Inf"), ("route", route)))), n)
        self.assertEqual(sum(answered.values()), ROUNDS * REQUESTS_PER_ROUND)
        # The live workers are idle: none in flight.
        self.assertEqual(s.get(("app_http_requests_in_flight", ())), 0.0)
        self.assertEqual(s.get(("app_gunicorn_worker_exits_total", ())), float(len(killed)))

    def exposition(self):
        path = os.path.join(self.dir, "gunicorn-test.ops")
        return subprocess.run([EXPORTER, "--once", path], check=True, capture_output=True, text=True,
                              timeout=DEADLINE_S).stdout

    def samples(self):
        out = {}
        for family in text_string_to_metric_families(self.exposition()):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def sample(self, name):
        return self.samples().get((name, ()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
