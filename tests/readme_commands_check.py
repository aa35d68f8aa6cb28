#!/usr/bin/python3
"""Every fenced block of README.md is run or compiled by a test. This check
knows which test covers each kind of block, runs the blocks no other test
runs, and fails on a block it cannot place (a new block needs a test):

- the first ```cpp block: compiled by the build (readme_example_check.py)
  and run by install_check.sh and debian_package_test.sh;
- the ```sh block with the g++ line: install_check.sh, debian_package_test.sh;
- ```python and ```php blocks: readme_blocks_check.py;
- the two commands: scripts/test.sh is what .ci/run runs; scripts/demo.sh is
  run here, for 3 seconds (its --for), and must print both roles' /metrics;
- the gunicorn block: run here as written (its paths under BUILD_DIR), then
  the README's exporter line; both roles' requests must show;
- the exporter's synopsis: every flag in it is one --help documents, and
  every flag --help documents is in it;
- the ```yaml web configuration: the exporter starts with it, the files it
  names made here (a CA, a server and a client certificate) and the bcrypt
  placeholder replaced by a real hash;
- the ```json RBAC map: the ops example server loads it.

Usage: readme_commands_check.py README.md BUILD_DIR
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import checklib
from checklib import check, placed, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blocks(text):
    """[(line, language, body)] of every fenced block."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if m:
            start, lang, body = i + 1, m.group(1), []
            i += 1
            while i < len(lines) and lines[i] != "```":
                body.append(lines[i])
                i += 1
            out.append((start, lang, "\n".join(body) + "\n"))
        i += 1
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(seconds, predicate):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:  # an answer all the same
        return e.code, e.read().decode(errors="replace")
    except Exception as e:  # noqa: BLE001 - no answer: a failed check
        return None, str(e)


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def two_commands(body, build):
    check("the two commands are scripts/demo.sh and scripts/test.sh",
          [l.split()[0] for l in body.splitlines() if l and not l.startswith(" ")] ==
          ["scripts/demo.sh", "scripts/test.sh"], body)
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    check(".ci/run runs scripts/test.sh (the second command: CI runs it)", "scripts/test.sh" in ci)
    env = dict(os.environ, BUILD_DIR=build)
    r = subprocess.run(["bash", "scripts/demo.sh", "--for", "3", "--ops-port", str(free_port()),
                        "--judge-port", str(free_port())], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=900)
    out = r.stdout + r.stderr
    check("scripts/demo.sh --for 3 exits 0", r.returncode == 0, out[-3000:])
    for role, metric in [("ops", "rbac_allowed_total"), ("judge", "readyz_checks_total")]:
        check(f"... and prints the {role} role's /metrics ({metric})",
              re.search(rf"^{metric}\b", out, re.M) is not None, out[-2000:])


def gunicorn_block(body, build):
    work = tempfile.mkdtemp(prefix="shmetrics-readme-")
    segments = os.path.join(work, "segments")
    app_port, metrics_port = free_port(), None
    lines = body.replace("\\\n", " ").splitlines()
    gunicorn_line = next(l for l in lines if "gunicorn " in l)
    exporter_line = next(l for l in lines if "shmetrics-exporter" in l)
    # Paths under build/ are the build directory's; the exporter's address is
    # made free, and both get a private segment directory and instance.
    as_run = lambda l: l.replace("build/", build.rstrip("/") + "/")  # noqa: E731
    m = re.search(r"--role ops=127\.0\.0\.1:(\d+)", exporter_line)
    check("the README's exporter serves the ops role on 127.0.0.1", m is not None, exporter_line)
    metrics_port = free_port()
    env = dict(os.environ, SHMETRICS_SEGMENT_DIR=segments, GUNICORN_BIND=f"127.0.0.1:{app_port}",
               GUNICORN_WORKERS="2", PATH="/usr/bin:" + os.environ.get("PATH", ""))
    g = subprocess.Popen(["bash", "-c", "exec env " + as_run(gunicorn_line)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    e = subprocess.Popen(["bash", "-c", "exec " + as_run(exporter_line).replace(
        f"127.0.0.1:{m.group(1) if m else 0}", f"127.0.0.1:{metrics_port}") + f" --segment-dir {segments}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        up = wait_until(30, lambda: get(f"http://127.0.0.1:{app_port}/")[0] is not None)
        check("gunicorn, started as the README says, answers", up)
        for _ in range(4):  # and the one above: 5
            get(f"http://127.0.0.1:{app_port}/")
        shown = wait_until(20, lambda: re.search(r'^app_http_requests_total\{.*\} 5$',
                                                 get(f"http://127.0.0.1:{metrics_port}/metrics")[1], re.M) is not None)
        body_now = get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
        check("the README's exporter line serves the application's requests", shown, body_now[-1500:])
    finally:
        stop(g)
        stop(e)
        out = (g.stdout.read() or b"").decode(errors="replace")
        if checklib.failed:
            print("  gunicorn said:\n  " + out[-1500:].replace("\n", "\n  "))
        shutil.rmtree(work, ignore_errors=True)


def synopsis(body, exporter):
    listed = set(re.findall(r"--[a-z][a-z.-]*", body))
    help_text = subprocess.run([exporter, "--help"], capture_output=True, text=True).stdout
    # A flag's own entry: two spaces, then the flag (wrapped text is indented further).
    documented = set(re.findall(r"^  (--[a-z][a-z.-]*)", help_text, re.M))
    check("every flag of the README's synopsis is in --help", listed <= documented,
          "not in --help: " + " ".join(sorted(listed - documented)))
    check("every flag of --help is in the README's synopsis", documented <= listed,
          "not in the README: " + " ".join(sorted(documented - listed)))


def web_config(body, exporter):
    work = tempfile.mkdtemp(prefix="shmetrics-readme-tls-")
    try:
        def openssl(*args):
            subprocess.run(["openssl", *args], cwd=work, check=True, capture_output=True)
        for name, cn in [("ca", "ca"), ("clients-ca", "clients")]:
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.crt")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
                "-keyout", "server.key", "-out", "server.csr")
        with open(os.path.join(work, "san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        hashed = crypt.crypt("secret", crypt.mksalt(crypt.METHOD_BLOWFISH))
        check("the README's web configuration has one bcrypt placeholder", body.count("$2b$12$...") == 1)
        with open(os.path.join(work, "web.yml"), "w") as f:
            f.write(body.replace("$2b$12$...", "'" + hashed + "'"))
        os.mkdir(os.path.join(work, "segments"), 0o700)
        p = subprocess.Popen([exporter, "--segment-dir", os.path.join(work, "segments"), "--ops-listen",
                              "127.0.0.1:0", "--judge-listen", "127.0.0.1:0", "--web.config.file",
                              os.path.join(work, "web.yml")], stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        log = []
        ok = False
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = p.stderr.readline()
            if not line:
                break
            log.append(line)
            if "event=serving" in line:
                ok = True
                break
        check("the exporter starts with the README's web configuration", ok and p.poll() is None, "".join(log))
        stop(p)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def rbac_map(body, build):
    """The ops example server with the README's map: GET /ops/status with the
    scope the map asks is allowed, without it forbidden, and the map in force
    is the README's (rbac_map_info's etag, its SHA-256)."""
    import hashlib
    work = tempfile.mkdtemp(prefix="shmetrics-readme-map-")
    try:
        path = os.path.join(work, "map.json")
        with open(path, "w") as f:
            f.write(body)
        instance = f"readme-{os.getpid()}"
        segments = os.path.join(work, "segments")
        server = os.path.join(build, "examples", "shmetrics-ops-server")
        p = subprocess.Popen([server, "--instance", instance, "--listen", "127.0.0.1:0", "--workers", "1",
                              "--rbac-map", path], env=dict(os.environ, SHMETRICS_SEGMENT_DIR=segments),
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            line = ""
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "event=listening" not in line:
                line = p.stderr.readline() or ""
                if not line:
                    break
            m = re.search(r"address=127\.0\.0\.1:(\d+)", line)
            if not check("the ops example server starts with the README's RBAC map", m is not None, line):
                return

            def status(scopes):
                req = urllib.request.Request(f"http://127.0.0.1:{m.group(1)}/ops/status", headers={"X-Scopes": scopes})
                try:
                    with urllib.request.urlopen(req, timeout=5) as r:
                        return r.status
                except urllib.error.HTTPError as e:
                    return e.code
            check("the map allows GET /ops/status with scope ops:read", status("ops:read") == 200)
            check("... and forbids it without", status("judge:submit") == 403)
            etag = hashlib.sha256(body.encode()).hexdigest()
            once = subprocess.run([os.path.join(build, "exporter", "shmetrics-exporter"), "--once",
                                   os.path.join(segments, instance + ".ops")], capture_output=True, text=True).stdout
            check("rbac_map_info names the README map's SHA-256", f'etag="{etag}"' in once,
                  "\n".join(l for l in once.splitlines() if l.startswith("rbac_map_info")))
        finally:
            stop(p)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    readme, build = sys.argv[1], os.path.abspath(sys.argv[2])
    exporter = os.path.join(build, "exporter", "shmetrics-exporter")
    all_blocks = blocks(open(readme).read())
    cpp_seen = False
    for line, lang, body in all_blocks:
        where = f"README.md:{line} ```{lang}"
        if lang == "cpp" and not cpp_seen:
            cpp_seen = True
            placed(f"{where}: the example, compiled and run by readme_example_check, install_check")
        elif lang == "sh" and body.strip().startswith("g++ "):
            placed(f"{where}: the g++ line, run by install_check and debian_package_test")
        elif lang in ("python", "php"):
            placed(f"{where}: run by readme_blocks_check")
        elif lang == "sh" and body.startswith("scripts/demo.sh"):
            two_commands(body, build)
        elif lang == "sh" and "gunicorn " in body:
            gunicorn_block(body, build)
        elif lang == "" and body.startswith("shmetrics-exporter ["):
            synopsis(body, exporter)
        elif lang == "yaml" and "tls_server_config:" in body:
            web_config(body, exporter)
        elif lang == "json" and '"routes"' in body:
            rbac_map(body, build)
        else:
            check(f"{where} is run or compiled by a test (none knows this block)", False, body[:300])


if __name__ == "__main__":
    main()
    sys.exit(summary())
