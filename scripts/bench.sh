#!/usr/bin/env bash
# scripts/bench.sh: install what is missing, build in release mode, run every
# benchmark scenario of shmetrics next to its peers (prometheus-cpp,
# client_python 0.16 in multiprocess mode, the hardware floor, a static
# cpp-httplib server under wrk, node_exporter over TLS) and print one table.
# BENCHMARKS.md says what each scenario means.
#
# Usage: scripts/bench.sh [--quick] [--json FILE] [--markdown FILE] [--only KEY,...]
#   --quick          a reduced set in well under two minutes, for CI: it
#                    catches breakage, it never judges speed
#   --json FILE      also write the table as JSON: a list of objects with op,
#                    shmetrics_ns|_ms|_bytes|_x, peer, peer_ns|..., ratio (peer
#                    time / shmetrics time), target, verdict
#   --markdown FILE  also write the table as Markdown (FILE.machine.json gets
#                    the machine, the CPU probes and the raw results)
#   --only KEY,...   only these scenarios (keys as in BENCHMARKS.md)
#   Env: BENCH_BUILD_DIR (default: build-release, at the repository root).
#
# Exit status: 0 when every scenario ran and every check passed — a target
# missed is reported in the table, never failed (benchmarks measure, tests
# assert); 3 when a scenario rendered other counts than it wrote; 1 when
# something could not be installed, built or run.

CALLER_PWD="$PWD"
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_BUILD_DIR="${BENCH_BUILD_DIR:-build-release}"
# The peers and the benchmark framework, on top of what the build needs.
SHMETRICS_PACKAGES+=(
  libbenchmark-dev
  prometheus-cpp-dev
  python3-prometheus-client
  wrk
  util-linux  # taskset
)

usage() {
  sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

run_args=()
while (($# > 0)); do
  case "$1" in
    --quick) run_args+=(--quick) ;;
    --json | --markdown | --only)
      (($# >= 2)) || die "$1 needs a value (see --help)"
      # Relative paths are taken from where the script was called.
      value="$2"
      if [[ $1 != --only && $value != /* ]]; then value="$CALLER_PWD/$value"; fi
      run_args+=("$1" "$value")
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument \"$1\" (see --help)" ;;
  esac
  shift
done

install_deps

grep -Eq "^[[:space:]]*subdir\('bench'\)" meson.build \
  || die "meson.build does not include bench/ yet: add subdir('bench') at its end"

if [[ ! -f "$BENCH_BUILD_DIR/build.ninja" ]]; then
  step "meson setup $BENCH_BUILD_DIR --buildtype=release"
  meson setup "$BENCH_BUILD_DIR" --buildtype=release
fi
buildtype="$(meson introspect --buildoptions "$BENCH_BUILD_DIR" \
  | /usr/bin/python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="buildtype"))')"
[[ $buildtype == release ]] \
  || die "$BENCH_BUILD_DIR is configured with buildtype=$buildtype; benchmarks need a release build (remove it or set BENCH_BUILD_DIR)"

# bench/ builds its programs only when Google Benchmark and prometheus-cpp were
# found; a build directory configured before they were installed looks again.
has_bench_targets() {
  meson introspect --targets "$BENCH_BUILD_DIR" | grep -q '"shmetrics-bench"'
}
if ! has_bench_targets; then
  step "meson setup --reconfigure $BENCH_BUILD_DIR (bench/ programs not configured yet)"
  meson setup --reconfigure "$BENCH_BUILD_DIR"
  has_bench_targets \
    || die "bench/ is not built: are libbenchmark-dev and prometheus-cpp-dev installed? (see $BENCH_BUILD_DIR/meson-logs/meson-log.txt)"
fi

targets=(shmetrics-bench shmetrics-bench-mp shmetrics-bench-static-server shmetrics-exporter python-module)
step "meson compile -C $BENCH_BUILD_DIR ${targets[*]}"
t0="$(now_ms)"
meson compile -C "$BENCH_BUILD_DIR" "${targets[@]}" || die "the release build failed"
step "built in $(fmt_ms $(($(now_ms) - t0)))"

step "running the benchmarks${run_args[*]:+ (${run_args[*]})}"
rc=0
/usr/bin/python3 bench/run.py --build-dir "$BENCH_BUILD_DIR" "${run_args[@]}" || rc=$?
exit "$rc"
