#!/usr/bin/python3
"""The mutation harness's engine (scripts/mutate.sh runs it): applies each
mutation of the catalogue (tests/mutations/*.txt) alone, rebuilds
incrementally, runs the test suite, restores the file, and reports which
tests caught it.

A catalogue file holds mutations separated by lines "=== NAME":

    === counter-inc-adds-two
    file: writer_lib/include/shmetrics/counter.h
    breaks: every increment of an integer counter adds one more
    --- find
    detail::add_own(own, n);
    --- replace
    detail::add_own(own, n + 1);

`find` must occur exactly once in the file (else the catalogue is stale: an
error). Before a mutation its file must match git's HEAD; after it, the
file is restored byte for byte and checked against HEAD again: a file the
harness cannot restore stops the run (exit 2).
"""
import argparse
import signal
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Mutation:
    def __init__(self, name, origin):
        self.name, self.origin = name, origin
        self.file = self.breaks = None
        self.find = self.replace = None


def parse_catalogue(paths):
    mutations = []
    for path in paths:
        current, section, lines = None, None, []

        def close_section():
            if current is not None and section is not None:
                text = "\n".join(lines)
                setattr(current, section, text)

        with open(path, encoding="utf-8") as f:
            for number, raw in enumerate(f.read().split("\n"), 1):
                where = f"{os.path.relpath(path, ROOT)}:{number}"
                if raw.startswith("=== "):
                    close_section()
                    current, section, lines = Mutation(raw[4:].strip(), where), None, []
                    mutations.append(current)
                elif current is None:
                    if raw.strip() and not raw.startswith("#"):
                        raise SystemExit(f"{where}: expected '=== NAME' before anything else")
                elif raw in ("--- find", "--- replace"):
                    close_section()
                    section, lines = raw[4:], []
                elif section is not None:
                    lines.append(raw)
                elif raw.startswith("file: "):
                    current.file = raw[6:].strip()
                elif raw.startswith("breaks: "):
                    current.breaks = raw[8:].strip()
                elif raw.strip() and not raw.startswith("#"):
                    raise SystemExit(f"{where}: expected 'file:', 'breaks:', '--- find' or '--- replace'")
            close_section()
    names = set()
    for m in mutations:
        # A section's text ends at the next marker; a trailing blank line
        # separates mutations and is not part of it.
        for attr in ("find", "replace"):
            value = getattr(m, attr)
            if value is not None:
                setattr(m, attr, value.rstrip("\n"))
        missing = [a for a in ("file", "breaks", "find", "replace") if getattr(m, a) in (None, "")
                   and not (a == "replace" and m.replace == "")]
        if missing:
            raise SystemExit(f"{m.origin}: mutation {m.name} has no {', '.join(missing)}")
        if m.name in names:
            raise SystemExit(f"{m.origin}: mutation {m.name} named twice")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", m.name):
            raise SystemExit(f"{m.origin}: mutation name {m.name!r}: expected [a-z0-9-]")
        names.add(m.name)
    return mutations


def git_clean(path):
    return subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", path]).returncode == 0


def run(cmd, log, timeout):
    with open(log, "a") as out:
        out.write("\n$ " + " ".join(cmd) + "\n")
        out.flush()
        try:
            return subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            out.write(f"(timed out after {timeout} s)\n")
            return 124


def failed_tests(build):
    """The tests meson's last run failed, from its JSON log. A test meson
    stopped because another failed first (--maxfail: INTERRUPT) did not fail."""
    path = os.path.join(build, "meson-logs", "testlog.json")
    out, ran = [], 0
    with open(path) as f:
        for line in f:
            if line.strip():
                t = json.loads(line)
                ran += 1
                if t["result"] in ("FAIL", "TIMEOUT", "ERROR", "UNEXPECTEDPASS"):
                    out.append(t["name"])
    return out, ran


# The suite, less the catalogue's own check: with a mutation in the tree its
# text is, by design, not where the catalogue says, so it would "catch" every
# mutation (and with --fail-fast stop the suite before the tests that matter).
SUITE = ["--no-suite", "catalogue"]


def main():
    # SIGTERM (a stopped run) unwinds like Ctrl-C, so the mutated file is
    # restored by the finally below instead of left in the tree.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-mutate"))
    ap.add_argument("--only", help="comma-separated mutation names")
    ap.add_argument("--integration", action="store_true", help="also run scripts/integration.sh per mutation")
    ap.add_argument("--fail-fast", action="store_true",
                    help="stop each mutation's suite at its first failing test (meson test --maxfail 1): "
                         "a caught mutation then names one test; a missed one still ran every test")
    ap.add_argument("--markdown", help="write the table to this file (tests/MUTATIONS.md)")
    ap.add_argument("--list", action="store_true", help="list the catalogue and exit")
    ap.add_argument("--check", action="store_true",
                    help="check every mutation applies (its text found once in its file), build nothing")
    a = ap.parse_args()

    catalogue_dir = os.path.join(ROOT, "tests", "mutations")
    files = sorted(os.path.join(catalogue_dir, f) for f in os.listdir(catalogue_dir) if f.endswith(".txt"))
    mutations = parse_catalogue(files)
    if a.only:
        wanted = a.only.split(",")
        unknown = sorted(set(wanted) - {m.name for m in mutations})
        if unknown:
            raise SystemExit("unknown mutation(s): " + ", ".join(unknown))
        mutations = [m for m in mutations if m.name in wanted]
    stale = []
    for m in mutations:
        text = open(os.path.join(ROOT, m.file), encoding="utf-8").read()
        if text.count(m.find) != 1:
            stale.append(f"{m.origin}: {m.name}: its find text occurs {text.count(m.find)} times in {m.file}")
    if a.list:
        for m in mutations:
            print(f"{m.name:48} {m.file}: {m.breaks}")
        return 0
    if stale:
        print("\n".join(stale), file=sys.stderr)
        return 1
    if a.check:
        print(f"{len(mutations)} mutations, each found once in its file")
        return 0

    build = os.path.abspath(a.build_dir)
    log = os.path.join(build, "mutate.log") if os.path.isdir(build) else None
    if not os.path.isfile(os.path.join(build, "build.ninja")):
        if subprocess.run(["meson", "setup", build, ROOT], cwd=ROOT).returncode != 0:
            return 1
    log = os.path.join(build, "mutate.log")
    open(log, "w").close()
    print(f"==> baseline: build and suite without mutations (log: {log})", flush=True)
    if run(["ninja", "-C", build], log, 3600) != 0:
        print("the unmutated tree does not build", file=sys.stderr)
        return 1
    run(["meson", "test", "-C", build, "--no-rebuild", "--num-processes", "2"] + SUITE, log, 3600)
    baseline_failed, ran = failed_tests(build)
    if baseline_failed or ran == 0:
        print(f"the unmutated suite does not pass (failed: {', '.join(baseline_failed) or 'none ran'})",
              file=sys.stderr)
        return 1

    rows = []
    for i, m in enumerate(mutations, 1):
        path = os.path.join(ROOT, m.file)
        if not git_clean(m.file):
            print(f"{m.file} differs from HEAD: commit or stash it before mutating", file=sys.stderr)
            return 2
        original = open(path, "rb").read()
        t0 = time.time()
        try:
            with open(path, "wb") as f:
                f.write(original.replace(m.find.encode(), m.replace.encode(), 1))
            if run(["ninja", "-C", build], log, 3600) != 0:
                verdict, caught = "does not compile", []
            else:
                run(["meson", "test", "-C", build, "--no-rebuild", "--num-processes", "2"] + SUITE +
                    (["--maxfail", "1"] if a.fail_fast else []), log, 3600)
                caught, _ = failed_tests(build)
                if a.integration and run(["bash", "scripts/integration.sh", build], log, 1800) != 0:
                    caught.append("integration")
                verdict = "caught" if caught else "MISSED"
        finally:
            with open(path, "wb") as f:
                f.write(original)
        if not git_clean(m.file):
            print(f"{m.file} could not be restored to HEAD after {m.name}: stopping", file=sys.stderr)
            return 2
        seconds = time.time() - t0
        rows.append((m, verdict, caught))
        print(f"[{i}/{len(mutations)}] {m.name}: {verdict}"
              f"{' by ' + ', '.join(caught) if caught else ''} ({seconds:.0f} s)", flush=True)
    # Rebuild the restored tree, so the build directory matches HEAD again.
    run(["ninja", "-C", build], log, 3600)

    missed = sum(1 for _, v, _ in rows if v != "caught")
    table = ["| mutation | file | breaks | verdict | caught by |", "|---|---|---|---|---|"]
    for m, verdict, caught in rows:
        table.append(f"| `{m.name}` | `{m.file}` | {m.breaks} | {verdict} | {', '.join(caught)} |")
    summary = f"{len(rows) - missed} of {len(rows)} mutations caught"
    print("\n".join(table) + "\n\n" + summary)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("\n".join(table) + "\n\n" + summary + "\n")
    return 0 if missed == 0 else 3


if __name__ == "__main__":
    sys.exit(main())
