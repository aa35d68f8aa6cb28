"""What the tests of preforked servers (gunicorn_test.py, php_fpm_test.py)
share: a master process whose log is followed, its live workers from /proc,
and waits on conditions with a deadline."""
import re
import signal
import subprocess
import threading
import time

DEADLINE_S = 60


def wait_for(what, condition):
    """Polls condition() until it is true (its value is returned); fails
    naming `what` after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE_S} s waiting for {what}")
        time.sleep(0.02)


def live_children(pid):
    """The children of pid that exist and are not zombies."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids = [int(p) for p in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return set()
    out = set()
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.add(p)
        except (FileNotFoundError, ProcessLookupError):  # gone meanwhile
            pass
    return out


class Master:
    """A server's master process, started with its stderr followed line by
    line; stop() ends it with `stop_signal` (SIGKILL after DEADLINE_S)."""

    def __init__(self, args, env, stop_signal=signal.SIGTERM):
        self.stop_signal = stop_signal
        self.log = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stderr:
            with self.changed:
                self.log.append(line)
                self.changed.notify_all()

    def wait_log(self, what, pattern):
        """The first match of `pattern` in the log, waited for."""
        deadline = time.monotonic() + DEADLINE_S
        with self.changed:
            while True:
                for line in self.log:
                    m = re.search(pattern, line)
                    if m:
                        return m
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.process.args[0]} exited ({self.process.returncode}):\n"
                                         + "".join(self.log))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}:\n{''.join(self.log)}")
                self.changed.wait(left)

    def workers(self, count):
        """The live children once there are `count` of them, else None."""
        pids = live_children(self.process.pid)
        return pids if len(pids) == count else None

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(DEADLINE_S)
        self.process.stderr.close()
