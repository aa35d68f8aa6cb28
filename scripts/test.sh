#!/usr/bin/env bash
# scripts/test.sh: install what is missing, build, run the whole test suite.
#
# Usage: scripts/test.sh [STAGE...]
#   With no STAGE, every stage runs, in order. Stages: see STAGES below.
#   Env: BUILD_DIR (default: build, at the repository root; sanitizer stages
#   build in build-asan and build-tsan).
# Exits non-zero when the build or any stage fails (with the first failing
# stage's exit status). Ends with one line "summary: N passed, N failed, N
# skipped" counting the tests of every stage that ran.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------------------
# Stages. Each is a function `stage_NAME`, run in a subshell with `set -e`
# in force; its exit status is the stage's result. A stage reports how many
# tests it ran with `record_counts PASSED FAILED SKIPPED` (a stage that fails
# without recording a failure counts as one failed test).
# ---------------------------------------------------------------------------

# meson-test: the unit and component tests meson knows about.
stage_meson_test() {
  local log="$BUILD_DIR/meson-logs/testlog.json" rc=0
  rm -f "$log"
  meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2 || rc=$?
  if [[ ! -s "$log" ]]; then
    warn "meson test ran no test"
    rc=1
  fi
  count_meson_log "$log"
  return "$rc"
}

# Sanitizer stages. Each builds the tree in a directory of its own (configured
# the first time), runs tests there and fails on any finding: the runtimes halt
# the process at the first report, and every report is also written to a file
# under DIR/sanitizer-reports (log_path), so a finding in a process whose exit
# status no test looks at (a background exporter, a forked child) still fails
# the stage. Each stage has a time budget covering configure, compile and
# test (seconds; env ASAN_BUDGET_S, TSAN_BUDGET_S); a hang is killed at the
# budget and fails the stage. The per-test meson timeouts apply as well.
# Both build with line tables only (-g1: what a sanitizer's report names,
# function, file, line), ASan's at -Og. Compiling the Beast and Catch2 units
# under ASan at -O2 -g took most of CI (710 s of the stage's 893); -Og -g1
# compiles them about 6x faster, and its tests run as fast. TSan's stays at
# -O2: test_chaos, 149 s under TSan at -O2, passed its 300 s timeout at -Og.
# ASan's budget leaves room for a busy machine (a run beside other builds
# once took over 1500 s to compile alone at -O2 -g).
ASAN_BUILD_DIR=build-asan
ASAN_BUDGET_S="${ASAN_BUDGET_S:-2400}"
# The sanitizer builds' optimisation and debug information (see the stages).
LINE_TABLES=(-Ddebug=false -Dc_args=-g1 -Dcpp_args=-g1)
TSAN_BUILD_DIR=build-tsan
TSAN_BUDGET_S="${TSAN_BUDGET_S:-900}"
# The concurrency tests, the ones run under ThreadSanitizer.
TSAN_TESTS=(
  test_counters
  test_gauges_info
  test_gauges_integer
  test_record_takeover
  test_reader_access
  test_dead_verdicts
  test_registration
  test_readyz_metrics_text_v1
  test_http_server
  test_web_config
  test_rbac_metrics_hit_miss_v1
  test_segment
  test_shm_protocol
  test_crash
  test_chaos
  test_histograms
)

# within_budget DEADLINE_S COMMAND...: run COMMAND, killed (with everything in
# its process group) when the epoch second DEADLINE_S passes.
within_budget() {
  local deadline="$1" left rc=0
  shift
  left=$((deadline - $(now_ms) / 1000))
  if ((left <= 0)); then
    warn "stage time budget used up before: $*"
    return 124
  fi
  timeout --kill-after=30 "$left" "$@" || rc=$?
  if ((rc == 124 || rc == 137)); then
    warn "stage time budget used up (killed after ${left}s): $*"
  fi
  return "$rc"
}

# sanitizer_build DIR DEADLINE_S MESON_OPTION...: set DIR up with the
# options (or give an existing DIR those options), then compile it.
# Builds every target, or only the targets named in the array BUILD_TARGETS
# when it is set (the TSan stage needs only its tests).
sanitizer_build() {
  local dir="$1" deadline="$2" t0
  shift 2
  t0="$(now_ms)"
  if [[ ! -f "$dir/build.ninja" ]]; then
    step "meson setup $dir $*"
    within_budget "$deadline" meson setup "$dir" "$@"
  else
    within_budget "$deadline" meson configure "$dir" "$@"  # options changed since it was set up
  fi
  step "meson compile -C $dir ${BUILD_TARGETS[*]:-}"
  within_budget "$deadline" meson compile -C "$dir" ${BUILD_TARGETS[@]+"${BUILD_TARGETS[@]}"}
  step "$dir built in $(fmt_ms $(($(now_ms) - t0)))"
}

# fresh_reports_dir DIR: an empty DIR/sanitizer-reports; prints its absolute
# path (tests run in other directories).
fresh_reports_dir() {
  local reports="$SHMETRICS_ROOT/$1/sanitizer-reports"
  rm -rf "$reports"
  mkdir -p "$reports"
  printf '%s\n' "$reports"
}

# check_reports DIR: false when DIR holds sanitizer reports. Prints every
# report's SUMMARY line and the first few reports in full.
check_reports() {
  local dir="$1" files=() f
  for f in "$dir"/*; do
    [[ -e $f ]] && files+=("$f")
  done
  ((${#files[@]} == 0)) && return 0
  step "${#files[@]} sanitizer report file(s) in $dir:"
  grep -h 'SUMMARY:' "${files[@]}" | sort | uniq -c || true
  for f in "${files[@]:0:3}"; do
    step "report $f"
    cat "$f"
  done
  return 1
}

# sanitize-asan: the whole meson test suite built with AddressSanitizer (leak
# checks included) and UndefinedBehaviorSanitizer.
stage_sanitize_asan() {
  local dir="$ASAN_BUILD_DIR" deadline reports rc=0
  deadline=$(($(now_ms) / 1000 + ASAN_BUDGET_S))
  sanitizer_build "$dir" "$deadline" \
    -Db_sanitize=address,undefined -Db_lundef=false -Doptimization=g "${LINE_TABLES[@]}"
  reports="$(fresh_reports_dir "$dir")"
  rm -f "$dir/meson-logs/testlog.json"
  within_budget "$deadline" env \
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:halt_on_error=1:log_path=$reports/asan" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan" \
    meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes 2 || rc=$?
  count_meson_log "$dir/meson-logs/testlog.json"
  check_reports "$reports" || ((rc != 0)) || rc=1
  return "$rc"
}

# sanitize-tsan: the concurrency tests (TSAN_TESTS) built with
# ThreadSanitizer. tests/tsan.supp silences only the uninstrumented
# cpp-httplib library, never our code.
stage_sanitize_tsan() {
  local dir="$TSAN_BUILD_DIR" deadline reports rc=0 norandom=()
  deadline=$(($(now_ms) / 1000 + TSAN_BUDGET_S))
  # Only the tests it runs: the exporter, the examples and the rest are
  # built under ASan already.
  local BUILD_TARGETS=("${TSAN_TESTS[@]}")
  sanitizer_build "$dir" "$deadline" \
    -Db_sanitize=thread -Db_lundef=false -Doptimization=2 "${LINE_TABLES[@]}"
  reports="$(fresh_reports_dir "$dir")"
  # GCC 12's TSan cannot place its shadow memory when the kernel randomises
  # mmap with more than 28 bits ("unexpected memory mapping"): run without
  # address randomisation there.
  local bits
  bits="$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28)"
  if ((bits > 28)); then
    warn "vm.mmap_rnd_bits=$bits: running the TSan tests under setarch -R"
    norandom=(setarch "$(uname -m)" -R)
  fi
  rm -f "$dir/meson-logs/testlog.json"
  within_budget "$deadline" "${norandom[@]}" env \
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$SHMETRICS_ROOT/tests/tsan.supp:log_path=$reports/tsan" \
    meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes 2 "${TSAN_TESTS[@]}" || rc=$?
  count_meson_log "$dir/meson-logs/testlog.json"
  check_reports "$reports" || ((rc != 0)) || rc=1
  return "$rc"
}

# run_counted LOG COMMAND...: runs a stage's script with its output also in
# LOG, and records the "N passed, N failed" line the script ends with.
run_counted() {
  local log="$1" rc=0 counts
  shift
  "$@" 2>&1 | tee "$log" || rc=$?
  counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1 | awk '{print $1, $3}')
  if [[ -n $counts ]]; then
    # shellcheck disable=SC2086 # two numbers
    record_counts $counts 0
  fi
  return "$rc"
}

# integration: both example servers, the exporter and a real Prometheus
# server, with known traffic and exact totals (scripts/integration.sh).
stage_integration() {
  run_counted "$BUILD_DIR/integration.log" bash scripts/integration.sh "$BUILD_DIR"
}

# fuzz: libFuzzer over the exporter's untrusted segment reader, starting from
# fuzz/corpus/, for FUZZ_SECONDS seconds (default 60) (scripts/fuzz.sh).
stage_fuzz() {
  run_counted "$BUILD_DIR/fuzz.log" bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
}

# bench-quick: the benchmark suite's reduced set in a release build, to catch
# breakage (every scenario checks its own counts); its timings are not judged
# here — these machines are shared and noisy (scripts/bench.sh, BENCHMARKS.md).
stage_bench_quick() {
  local json="$BUILD_DIR/bench-quick.json" rc=0 ops=0
  rm -f "$json"
  bash scripts/bench.sh --quick --json "$json" || rc=$?
  if [[ -s $json ]]; then
    ops="$(python3 -c 'import json, sys; print(len({r["op"] for r in json.load(open(sys.argv[1]))}))' "$json")"
  fi
  if ((rc == 0)); then record_counts "$ops" 0 0; else record_counts 0 1 0; fi
  return "$rc"
}

# package: the Debian packages built with dpkg-buildpackage, checked by
# lintian, installed on this machine, used (the README example against
# libshmetrics-dev, the exporter started as its unit starts it) and purged
# (tests/debian_package_test.sh; needs root or sudo).
stage_package() {
  run_counted "$BUILD_DIR/package.log" bash tests/debian_package_test.sh "$BUILD_DIR/debian-package"
}

# --- Later stages go here, each as stage_NAME plus an entry in STAGES. ---
# -------------------------------------------------------------------------

# The stages, in the order they run.
STAGES=(
  meson-test
  sanitize-asan
  sanitize-tsan
  integration
  package
  fuzz
  bench-quick
)

# ---------------------------------------------------------------------------
# Machinery.
# ---------------------------------------------------------------------------

COUNTS_FILE=""

# record_counts PASSED FAILED SKIPPED: add to the run's tally.
record_counts() {
  printf '%d %d %d\n' "$1" "$2" "$3" >>"$COUNTS_FILE"
}

# count_meson_log TESTLOG_JSON: tally the results of one `meson test` run.
count_meson_log() {
  local log="$1" counts
  [[ -f "$log" ]] || return 0
  counts="$(python3 - "$log" <<'EOF'
import json, sys
passed = failed = skipped = 0
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        line = line.strip()
        if not line:
            continue
        result = json.loads(line).get("result", "")
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
print(passed, failed, skipped)
EOF
)" || { warn "could not read $log"; return 0; }
  # shellcheck disable=SC2086 # three numbers, split on purpose
  record_counts $counts
}

# sum_counts FILE: "PASSED FAILED SKIPPED" summed over lines of FILE.
sum_counts() {
  local p=0 f=0 s=0 a b c
  while read -r a b c; do
    p=$((p + a)) f=$((f + b)) s=$((s + c))
  done <"$1"
  printf '%d %d %d\n' "$p" "$f" "$s"
}

usage() {
  sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
  printf 'Stages: %s\n' "${STAGES[*]}"
}

main() {
  local selected=() name
  for name in "$@"; do
    case "$name" in
      -h | --help) usage; exit 0 ;;
      -*) usage >&2; die "unknown option: $name" ;;
    esac
    [[ " ${STAGES[*]} " == *" $name "* ]] || die "unknown stage: $name (stages: ${STAGES[*]})"
    selected+=("$name")
  done
  ((${#selected[@]})) || selected=("${STAGES[@]}")

  COUNTS_FILE="$(mktemp "${TMPDIR:-/tmp}/shmetrics-test-counts.XXXXXX")"
  trap 'rm -f "$COUNTS_FILE"' EXIT

  local t0 t total_start status=0 rc before after timings=()
  total_start="$(now_ms)"

  t0="$(now_ms)"
  install_deps
  timings+=("install $(fmt_ms $(($(now_ms) - t0)))")

  t0="$(now_ms)"
  build
  timings+=("build $(fmt_ms $(($(now_ms) - t0)))")
  step "build done in $(fmt_ms $(($(now_ms) - t0)))"

  for name in "${selected[@]}"; do
    step "stage $name"
    before="$(sum_counts "$COUNTS_FILE")"
    t0="$(now_ms)"
    rc=0
    set +e
    (
      set -e
      "stage_${name//-/_}"
    )
    rc=$?
    set -e
    t="$(fmt_ms $(($(now_ms) - t0)))"
    after="$(sum_counts "$COUNTS_FILE")"
    if ((rc != 0)); then
      # A failed stage counts at least one failure.
      read -r _ before _ <<<"$before"
      read -r _ after _ <<<"$after"
      ((after > before)) || record_counts 0 1 0
      ((status != 0)) || status=$rc
      step "stage $name FAILED (exit $rc) in $t"
      timings+=("$name $t FAILED")
    else
      step "stage $name passed in $t"
      timings+=("$name $t")
    fi
  done

  local p f s
  read -r p f s < <(sum_counts "$COUNTS_FILE")
  local joined
  joined="$(printf '%s, ' "${timings[@]}")"
  step "times: ${joined%, } (total $(fmt_ms $(($(now_ms) - total_start))))"
  if ((status != 0)); then
    step "FAILED"
  else
    step "all stages passed"
  fi
  printf 'summary: %d passed, %d failed, %d skipped\n' "$p" "$f" "$s"
  return "$status"
}

main "$@"
