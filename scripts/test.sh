#!/usr/bin/env bash
# scripts/test.sh: install what is missing, build, run the whole test suite.
#
# Usage: scripts/test.sh [STAGE...]
#   With no STAGE, every stage runs, in order. Stages: see STAGES below.
#   Env: BUILD_DIR (default: build, at the repository root).
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
  [[ -s "$log" ]] || warn "meson test ran no test"
  count_meson_log "$log"
  return "$rc"
}

# integration: both example servers, the exporter and a real Prometheus
# server, with known traffic and exact totals (scripts/integration.sh).
stage_integration() {
  local log="$BUILD_DIR/integration.log" rc=0
  bash scripts/integration.sh "$BUILD_DIR" 2>&1 | tee "$log" || rc=$?
  local counts
  counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1 | awk '{print $1, $3}')
  if [[ -n $counts ]]; then
    # shellcheck disable=SC2086 # two numbers
    record_counts $counts 0
  fi
  return "$rc"
}

# --- Later stages go here, each as stage_NAME plus an entry in STAGES. ---
# stage_sanitizers()  { ... }   # ASan/UBSan/TSan builds in their own dirs
# stage_fuzz()        { ... }   # bounded fuzz runs
# -------------------------------------------------------------------------

# The stages, in the order they run.
STAGES=(
  meson-test
  integration
  # sanitizers
  # fuzz
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
  sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
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
