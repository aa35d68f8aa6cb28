#!/usr/bin/python3
"""Builds deploy/container/Containerfile without a container runtime and runs
the image it describes: each stage's FROM debian:12 / debian:12-slim is a
Debian 12 root made by debootstrap (--variant=minbase, the slim image's
contents), its RUN lines run in that root with chroot, COPY copies from the
build context (this tree, less .dockerignore's paths) or from the build
stage's root; then the runtime root's ENTRYPOINT and CMD run as its USER
(setpriv, in the root), with a segment directory bound in, and must serve
both roles' /metrics (on 127.0.0.1: CMD's addresses on loopback, as
arguments to `docker run` would give them). Not a CI stage (it downloads and builds a Debian root
twice, about 10 minutes); run by hand, as root:

    tests/container_build_check.py WORKDIR

It checks what tests/container_recipe_check.py cannot: that the recipe's
packages and commands build the exporter in a clean Debian 12 and that the
runtime stage alone runs it.
"""
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def say(msg):
    print("==> " + msg, flush=True)


def sh(cmd, **kw):
    say(" ".join(cmd) if isinstance(cmd, list) else cmd)
    subprocess.run(cmd, check=True, **kw)


def stages(text):
    out = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arg = line.partition(" ")
        if keyword.upper() == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", arg.strip(), re.I)
            out.append({"from": m.group(1), "name": m.group(2), "steps": []})
        else:
            out[-1]["steps"].append((keyword.upper(), arg.strip()))
    return out


def copy_context(dest):
    ignore = [l.strip() for l in open(os.path.join(ROOT, ".dockerignore")) if l.strip() and not l.startswith("#")]
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if any(fnmatch.fnmatch(f, p) or fnmatch.fnmatch(f.split("/")[0], p) for p in ignore):
            continue
        os.makedirs(os.path.join(dest, os.path.dirname(f)), exist_ok=True)
        src = os.path.join(ROOT, f)
        if os.path.islink(src):
            os.symlink(os.readlink(src), os.path.join(dest, f))
        elif os.path.isfile(src):
            shutil.copy2(src, os.path.join(dest, f))


def main():
    work = os.path.abspath(sys.argv[1])
    st = stages(open(os.path.join(ROOT, "deploy", "container", "Containerfile")).read())
    roots = {}
    os.makedirs(work, exist_ok=True)
    for stage in st:
        image = stage["from"]
        assert image in ("debian:12", "debian:12-slim"), image
        root = os.path.join(work, stage["name"] or "runtime")
        if not os.path.exists(os.path.join(root, "etc", "debian_version")):
            shutil.rmtree(root, ignore_errors=True)
            sh(["debootstrap", "--variant=minbase", "bookworm", root, "http://deb.debian.org/debian"])
        roots[stage["name"]] = root
        workdir = "/"
        mounts = []
        for sub in ("proc", "dev"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
            sh(["mount", "--bind", "/" + sub, os.path.join(root, sub)])
            mounts.append(os.path.join(root, sub))
        try:
            for keyword, arg in stage["steps"]:
                if keyword == "WORKDIR":
                    workdir = arg
                    os.makedirs(root + arg, exist_ok=True)
                elif keyword == "RUN":
                    sh(["chroot", root, "/bin/sh", "-c", f"cd {shlex.quote(workdir)} && {arg}"],
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH="/usr/sbin:/usr/bin:/sbin:/bin"))
                elif keyword == "COPY":
                    words = arg.split()
                    if words[0].startswith("--from="):
                        src = roots[words[0].split("=", 1)[1]] + words[1]
                        dst = root + words[2]
                        os.makedirs(os.path.dirname(dst), exist_ok=True)
                        shutil.copy2(src, dst)
                    else:
                        assert words == [".", "."], words
                        copy_context(root + workdir)
                elif keyword in ("USER", "EXPOSE", "ENTRYPOINT", "CMD"):
                    stage[keyword] = arg
        finally:
            for m in reversed(mounts):
                subprocess.run(["umount", m])
    runtime = st[-1]
    root = roots[runtime["name"]]
    uid, gid = runtime["USER"].split(":")
    # The image's CMD listens on every address; run here on loopback only, as
    # `docker run IMAGE ARGS...` would with ARGS in CMD's place.
    argv = json.loads(runtime["ENTRYPOINT"]) + [a.replace("0.0.0.0:", "127.0.0.1:") for a in json.loads(runtime["CMD"])]
    ports = runtime["EXPOSE"].split()
    segdir = next(a.split("=", 1)[1] for a in argv if a.startswith("--segment-dir="))
    os.makedirs(root + segdir, exist_ok=True)
    os.chown(root + segdir, int(uid), int(gid))
    os.chmod(root + segdir, 0o700)
    for sub in ("proc", "dev"):
        sh(["mount", "--bind", "/" + sub, os.path.join(root, sub)])
    p = subprocess.Popen(["chroot", "--userspec", f"{uid}:{gid}", root] + argv, stderr=subprocess.PIPE, text=True)
    ok = True
    try:
        time.sleep(0.2)
        for port in ports:
            body = ""
            for _ in range(100):
                try:
                    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(0.1)
            served = "shmetrics_segment_up" in body
            print(("ok: " if served else "FAIL: ") + f"the image's exporter serves /metrics on {port}")
            ok &= served
    finally:
        p.terminate()
        p.wait(10)
        for sub in ("dev", "proc"):
            subprocess.run(["umount", os.path.join(root, sub)])
    print(p.stderr.read()[-1500:])
    size = subprocess.run(["du", "-sh", root], capture_output=True, text=True).stdout.split()[0]
    print(f"runtime root: {size}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
