"""Every ```python block of README.md, run as written by /usr/bin/python3
with the build's module importable and a segment directory of its own; each
must exit 0 and leave myapp_requests_total{route="/"} 1 in the exporter's
exposition of the segment it wrote.

Run: PYTHONPATH=<build>/bindings/python SHMETRICS_EXPORTER=<exporter>
/usr/bin/python3 tests/readme_python_check.py README.md
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

from prometheus_client.parser import text_string_to_metric_families

readme = open(sys.argv[1], encoding="utf-8").read()
blocks = re.findall(r"^```python\n(.*?)^```$", readme, re.S | re.M)
passed = failed = 0


def check(ok, what):
    global passed, failed
    print(("ok: " if ok else "FAIL: ") + what)
    if ok:
        passed += 1
    else:
        failed += 1


check(len(blocks) >= 2, f"README.md has Python blocks (found {len(blocks)})")
for n, code in enumerate(blocks, 1):
    d = tempfile.mkdtemp(prefix="shmpy-", dir="/dev/shm")
    try:
        env = dict(os.environ, SHMETRICS_SEGMENT_DIR=d)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        check(done.returncode == 0, f"block {n} runs (exit {done.returncode}) {done.stderr.strip()[-500:]}")
        segment = os.path.join(d, "myapp.ops")
        check(os.path.exists(segment), f"block {n} wrote the segment myapp.ops")
        if os.path.exists(segment):
            text = subprocess.run([os.environ["SHMETRICS_EXPORTER"], "--once", segment], capture_output=True,
                                  text=True, timeout=60).stdout
            values = [s.value for f in text_string_to_metric_families(text) for s in f.samples
                      if s.name == "myapp_requests_total" and s.labels == {"route": "/"}]
            check(values == [1.0], f'block {n}: myapp_requests_total{{route="/"}} is 1 (got {values})')
    finally:
        shutil.rmtree(d, ignore_errors=True)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
