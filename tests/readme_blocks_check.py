"""Every ```python and ```php block of README.md, run as written, each with
a segment directory of its own ($SHMETRICS_SEGMENT_DIR): Python blocks by
/usr/bin/python3 with the build's module importable, PHP blocks by PHP's
CLI with FFI enabled and the build's bindings/php where the block names the
installed /usr/share/shmetrics/php (the one substitution). Each must exit 0
and leave its sample, read back through the exporter's exposition:
myapp_requests_total{route="/"} 1 in myapp.ops (Python),
http_requests_total{route="/cart",status="200"} 1 in shop.ops (PHP).

Run: PYTHONPATH=<build>/bindings/python SHMETRICS_EXPORTER=<exporter>
SHMETRICS_BUILD=<build> LD_LIBRARY_PATH=<build>/writer_lib
/usr/bin/python3 tests/readme_blocks_check.py README.md [--languages python,php]
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

from prometheus_client.parser import text_string_to_metric_families

readme = open(sys.argv[1], encoding="utf-8").read()
# --languages python,php (default both): which blocks to run.
languages = sys.argv[3].split(",") if len(sys.argv) > 3 and sys.argv[2] == "--languages" else ["python", "php"]
build = os.environ["SHMETRICS_BUILD"]
LANGUAGES = {
    "python": ([sys.executable, "-c"], "myapp.ops", "myapp_requests_total", {"route": "/"}),
    "php": (["php", "-n", "-d", "extension=ffi", "-d", "ffi.enable=true", "-r"], "shop.ops", "http_requests_total",
            {"route": "/cart", "status": "200"}),
}
passed = failed = 0


def check(ok, what):
    global passed, failed
    print(("ok: " if ok else "FAIL: ") + what)
    if ok:
        passed += 1
    else:
        failed += 1


for language, (command, segment_name, sample, labels) in LANGUAGES.items():
    if language not in languages:
        print(f"not run in this build: the {language} blocks")
        continue
    blocks = re.findall(r"^```%s\n(.*?)^```$" % language, readme, re.S | re.M)
    check(len(blocks) >= 1, f"README.md has {language} blocks (found {len(blocks)})")
    for n, code in enumerate(blocks, 1):
        what = f"{language} block {n}"
        if language == "php":
            code = code.replace("/usr/share/shmetrics/php", os.path.join(build, "bindings", "php"))
            code = re.sub(r"^<\?php\n", "", code)  # php -r takes the code without its tag
        d = tempfile.mkdtemp(prefix="shmreadme-", dir="/dev/shm")
        try:
            env = dict(os.environ, SHMETRICS_SEGMENT_DIR=d)
            done = subprocess.run(command + [code], env=env, capture_output=True, text=True, timeout=60)
            check(done.returncode == 0, f"{what} runs (exit {done.returncode}) {(done.stderr + done.stdout).strip()[-500:]}")
            segment = os.path.join(d, segment_name)
            check(os.path.exists(segment), f"{what} wrote the segment {segment_name}")
            if os.path.exists(segment):
                text = subprocess.run([os.environ["SHMETRICS_EXPORTER"], "--once", segment], capture_output=True,
                                      text=True, timeout=60).stdout
                values = [s.value for f in text_string_to_metric_families(text) for s in f.samples
                          if s.name == sample and s.labels == labels]
                check(values == [1.0], f"{what}: {sample}{labels} is 1 (got {values})")
        finally:
            shutil.rmtree(d, ignore_errors=True)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
