"""The PHP example (examples/php/app.php) under Debian's PHP-FPM 8.2: four
static workers behind a unix socket, asked by libfcgi's cgi-fcgi (a real
FastCGI client, as a web server would), the Shmetrics classes over the C API
through FFI.

- preloaded, as production runs it (ffi.preload and opcache.preload,
  ffi.enable=preload): rounds of requests; after each, two idle workers are
  SIGKILLed and FPM starts new ones. The exporter's totals must count every
  answered request exactly, the dead workers' included.
- not preloaded (ffi.enable=true: every request loads the declarations):
  the same counts, fewer requests.

Run: SHMETRICS_EXPORTER=<exporter> SHMETRICS_BUILD=<build dir>
/usr/bin/python3 tests/php_fpm_test.py
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

from prometheus_client.parser import text_string_to_metric_families
from prefork_lib import DEADLINE_S, Master, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "..", "examples", "php", "app.php")
EXPORTER = os.environ["SHMETRICS_EXPORTER"]
BUILD = os.environ["SHMETRICS_BUILD"]
PHP_DIR = os.path.join(BUILD, "bindings", "php")
FPM = "/usr/sbin/php-fpm8.2"
WORKERS = 4
ROUTES = ["/work", "/pid", "/nowhere"]


class Fpm:
    """php-fpm in the foreground with a pool of WORKERS static workers on a
    unix socket in `work`, and the given php.ini settings."""

    def __init__(self, work, ini):
        self.work = work
        self.socket = os.path.join(work, "fpm.sock")
        self.segments = os.path.join(work, "segments")
        os.makedirs(self.segments)
        conf = os.path.join(work, "fpm.conf")
        with open(conf, "w") as f:
            f.write(f"""[global]
daemonize = no
error_log = /proc/self/fd/2
pid = {work}/fpm.pid
[test]
listen = {self.socket}
pm = static
pm.max_children = {WORKERS}
clear_env = yes
env[SHMETRICS_SEGMENT_DIR] = {self.segments}
env[SHMETRICS_INSTANCE] = php-test
env[SHMETRICS_ROLE] = ops
env[SHMETRICS_PHP_DIR] = {PHP_DIR}
""")
        args = [FPM, "--nodaemonize", "--allow-to-run-as-root", "-n", "-y", conf,
                "-d", "extension=ffi", "-d", "zend_extension=opcache"]
        for key, value in ini.items():
            args += ["-d", f"{key}={value}"]
        env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(BUILD, "writer_lib"))
        self.master = Master(args, env, stop_signal=signal.SIGQUIT)  # SIGQUIT: graceful
        self.master.wait_log("FPM's 'ready to handle connections'", r"ready to handle connections")

    def stop(self):
        self.master.stop()

    def get(self, route):
        """(status, body) of app.php?route=ROUTE, through cgi-fcgi."""
        env = {"SCRIPT_FILENAME": os.path.abspath(APP), "SCRIPT_NAME": "/app.php", "REQUEST_METHOD": "GET",
               "QUERY_STRING": "route=" + route, "SERVER_PROTOCOL": "HTTP/1.1", "PATH": "/usr/bin:/bin"}
        out = subprocess.run(["cgi-fcgi", "-bind", "-connect", self.socket], env=env, capture_output=True,
                             timeout=DEADLINE_S)
        if out.returncode != 0:
            raise AssertionError(f"cgi-fcgi failed ({out.returncode}): {out.stderr!r}\n{''.join(self.master.log)}")
        head, _, body = out.stdout.decode().partition("\r\n\r\n")
        m = re.search(r"^Status: (\d+)", head, re.M)
        return (int(m.group(1)) if m else 200), body

    def workers(self):
        return self.master.workers(WORKERS)

    def samples(self):
        path = os.path.join(self.segments, "php-test.ops")
        text = subprocess.run([EXPORTER, "--once", path], check=True, capture_output=True, text=True,
                              timeout=DEADLINE_S).stdout
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out


class PhpFpmTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="shmphp-", dir="/dev/shm")
        self.addCleanup(shutil.rmtree, self.work, True)

    def start(self, ini):
        fpm = Fpm(self.work, ini)
        self.addCleanup(fpm.stop)
        return fpm

    def ask(self, fpm, n, answered, pids):
        for i in range(n):
            route = ROUTES[i % 3]
            status, body = fpm.get(route)
            want = 404 if route == "/nowhere" else 200
            self.assertEqual(status, want, f"{route}: {body}")
            key = "other" if route == "/nowhere" else route
            answered[(key, str(status))] = answered.get((key, str(status)), 0) + 1
            if route == "/pid":
                pids.add(int(body))

    def check_totals(self, fpm, answered):
        s = fpm.samples()
        for (route, status), n in answered.items():
            with self.subTest(route=route):
                self.assertEqual(s.get(("app_php_requests_total", (("route", route), ("status", status)))), n)
                self.assertEqual(s.get(("app_php_request_seconds_count", (("route", route),))), n)

    def test_preloaded_workers_killed_lose_no_count(self):
        fpm = self.start({"ffi.enable": "preload", "ffi.preload": os.path.join(PHP_DIR, "shmetrics_ffi.h"),
                          "opcache.enable": "1", "opcache.preload": os.path.join(PHP_DIR, "preload.php"),
                          "opcache.preload_user": "root"})
        answered, seen, killed = {}, set(), []
        for round_ in range(5):
            workers = wait_for(f"{WORKERS} live workers in round {round_}", fpm.workers)
            self.ask(fpm, 60, answered, seen)
            # Every request is answered, so the workers are idle: kill two.
            victims = sorted(workers)[:2]
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            killed += victims
            wait_for("FPM to replace the killed workers",
                     lambda: (w := fpm.workers()) is not None and not (w & set(victims)))
        self.assertGreater(len(seen & set(killed)), 0, "no killed worker had answered a request")
        self.assertEqual(sum(answered.values()), 300)
        self.check_totals(fpm, answered)

    def test_without_preloading(self):
        fpm = self.start({"ffi.enable": "true", "opcache.enable": "0"})
        answered, seen = {}, set()
        self.ask(fpm, 30, answered, seen)
        self.check_totals(fpm, answered)


if __name__ == "__main__":
    unittest.main(verbosity=2)
