#!/usr/bin/python3
"""deploy/container/Containerfile, checked without a container runtime (CI has
none): its build stage's meson options configure this tree and make the
exporter a target, with the Debian packages it installs providing what that
configuration finds; its runtime stage installs the Debian packages that hold
every shared library the built exporter loads; it runs as a numeric non-root
user, with an exec-form ENTRYPOINT, exposing the ports its CMD listens on.

Usage: container_recipe_check.py EXPORTER WORKDIR
"""
import os
import re
import shlex
import shutil
import subprocess
import sys

from checklib import check, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def stages(text):
    """[(from, name, [instructions as (keyword, argument)])], continuation lines joined."""
    out = []
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arg = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", arg.strip(), re.I)
            out.append((m.group(1), m.group(2), []))
        else:
            out[-1][2].append((keyword, arg.strip()))
    return out


def apt_packages(instructions):
    pkgs = []
    for keyword, arg in instructions:
        if keyword == "RUN":
            for part in arg.split("&&"):
                words = shlex.split(part)
                if words[:2] == ["apt-get", "install"]:
                    pkgs += [w for w in words[2:] if not w.startswith("-")]
    return pkgs


def package_of(path):
    r = run(["dpkg", "-S", os.path.realpath(path)])
    if r.returncode != 0:
        r = run(["dpkg", "-S", path])
    return r.stdout.split(":")[0].strip() if r.returncode == 0 else None


def provided_by(listed):
    """The listed packages and what they depend on (one level): a -dev
    package often pulls the versioned one holding the files."""
    out = set(listed)
    for p in listed:
        r = run(["apt-cache", "depends", "--no-recommends", "--no-suggests", p])
        out.update(m.group(1) for m in re.finditer(r"Depends: <?([^\s>]+)>?", r.stdout))
    return out


def main():
    exporter, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    text = open(os.path.join(ROOT, "deploy", "container", "Containerfile")).read()
    st = stages(text)
    check("two stages: FROM debian:12 AS build, then FROM debian:12-slim",
          [(s[0], s[1]) for s in st] == [("debian:12", "build"), ("debian:12-slim", None)], repr([s[:2] for s in st]))
    if len(st) != 2:
        return
    build, runtime = st[0][2], st[1][2]

    # The build stage's meson setup, here, into WORKDIR.
    setup = next((a for k, a in build if k == "RUN" and "meson setup" in a), "")
    words = shlex.split(setup.split("&&")[0]) if setup else []
    check("the build stage runs meson setup", words[:2] == ["meson", "setup"], setup)
    options = [w for w in words[3:]]
    shutil.rmtree(work, ignore_errors=True)
    r = run(["meson", "setup", work, ROOT] + options)
    check("its options configure this tree (" + " ".join(options) + ")", r.returncode == 0, r.stdout[-2000:] + r.stderr)
    if r.returncode == 0:
        targets = run(["ninja", "-C", work, "-t", "targets", "all"]).stdout
        check("... and make exporter/shmetrics-exporter a target", "exporter/shmetrics-exporter:" in targets)
        check("... and no test, example or Python module",
              "tests/" not in targets and "examples/" not in targets and "_shmetrics" not in targets)
    listed = apt_packages(build)
    have = provided_by(listed)
    for pc in ["zlib", "openssl", "yaml-cpp", "libcrypt"]:
        d = run(["pkg-config", "--variable=pcfiledir", pc]).stdout.strip()
        pkg = package_of(os.path.join(d, pc + ".pc")) if d else None
        check(f"the build stage installs what holds {pc}.pc ({pkg})", pkg in have)
    pkg = package_of("/usr/include/boost/version.hpp")
    check(f"the build stage installs what holds Boost's headers ({pkg})", pkg in have)
    for tool, path in [("meson", "/usr/bin/meson"), ("ninja", "/usr/bin/ninja"), ("g++", "/usr/bin/g++"),
                       ("pkg-config", "/usr/bin/pkg-config")]:
        pkg = package_of(path)
        check(f"the build stage installs {tool} ({pkg})", pkg in have or tool in listed)

    # The runtime stage: every library the exporter loads, from a listed package.
    runtime_pkgs = set(apt_packages(runtime))
    ldd = run(["ldd", exporter]).stdout
    libs = re.findall(r"=> (/\S+)", ldd)
    check("ldd names the exporter's libraries", len(libs) >= 5, ldd)
    for lib in libs:
        pkg = package_of(lib)
        check(f"the runtime stage installs {os.path.basename(lib)} ({pkg})", pkg in runtime_pkgs,
              "listed: " + " ".join(sorted(runtime_pkgs)))
    copy = [a for k, a in runtime if k == "COPY"]
    check("the runtime stage copies the built exporter to /usr/bin",
          copy == ["--from=build /build/exporter/shmetrics-exporter /usr/bin/shmetrics-exporter"], repr(copy))

    user = [a for k, a in runtime if k == "USER"]
    m = re.fullmatch(r"(\d+):(\d+)", user[-1]) if user else None
    check(f"it runs as a numeric non-root user ({user})", m is not None and int(m.group(1)) != 0)
    entry = [a for k, a in runtime if k == "ENTRYPOINT"]
    check("ENTRYPOINT is the exporter, in exec form", entry == ['["/usr/bin/shmetrics-exporter"]'], repr(entry))
    cmd = [a for k, a in runtime if k == "CMD"]
    import json
    args = json.loads(cmd[-1]) if cmd else []
    listens = sorted(a.rsplit(":", 1)[1] for a in args if a.startswith(("--ops-listen=", "--judge-listen=")))
    exposed = sorted(" ".join(a for k, a in runtime if k == "EXPOSE").split())
    check(f"EXPOSE {exposed} are the ports CMD listens on {listens}", listens == exposed and len(listens) == 2)
    check("CMD listens on every address", all(a.split("=", 1)[1].startswith("0.0.0.0:")
                                              for a in args if a.startswith(("--ops-listen=", "--judge-listen="))))
    # CMD's flags are the exporter's: it refuses unknown ones before anything else.
    r = run([exporter] + args + ["--version"])
    check("CMD's flags are the exporter's", r.returncode == 0, r.stderr)
    ignore = open(os.path.join(ROOT, ".dockerignore")).read().split()
    check(".dockerignore keeps build directories and .git out of the context", "build*" in ignore and ".git" in ignore)


if __name__ == "__main__":
    main()
    sys.exit(summary())
