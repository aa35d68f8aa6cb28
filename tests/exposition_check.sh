#!/usr/bin/env bash
# exposition_check.sh EXPORTER DEMO_WRITER
#
# Starts a demo writer (3 workers) for each role of a fresh instance, waits
# until `EXPORTER --once` shows every family, then checks each role's
# exposition with `promtool check metrics` (must be silent, exit 0) and with
# parse_exposition.py (families, types, values), and that every family has
# exactly one "# HELP" and one "# TYPE" line although 3 processes wrote it.
# Then stops the writers and checks the counters they left behind.
#
# Prints "ok: ..." / "FAIL: ..." per check and a final "N passed, N failed";
# exits 0 only when nothing failed.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=script_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/script_lib.sh"
take_script_args "$@"
PARSE=$HERE/parse_exposition.py
WORKERS=3
ETAG=5bcdd633308d109fdad6fd5e6697406ea1182086da3c46b04633a63bbf2e2358
LOG_TAIL_LINES=20

begin_test_run test

# ---------------------------------------------------------------- preconditions
PROMTOOL=$(command -v promtool) || die "promtool not found (Debian package prometheus)"
require_prometheus_parser
for seg in "$OPS_SEGMENT" "$JUDGE_SEGMENT"; do
  [ ! -e "$seg" ] || die "segment $seg exists before the test started"
done

# -------------------------------------------------------------- start writers
for role in ops judge; do
  start_demo_writer "writer-$role" "$role" "$WORKERS"
  eval "WRITER_PID_$role=\$BG_PID"
done
for role in ops judge; do
  check "demo writer ($role) logged event=ready with workers=$WORKERS" \
    poll_until "$POLL_SECONDS" grep -qs "event=ready role=$role .*workers=$WORKERS\$" "$WORK/writer-$role.err"
done

# Families per role (exposition name=type).
families_for() {
  local role=$1
  echo rbac_reload_checks_total=counter rbac_reload_hit_total=counter rbac_allowed_total=counter \
    rbac_forbidden_total=counter rbac_route_matches_total=counter rbac_map_info=gauge \
    demo_inflight_requests=gauge demo_request_duration_seconds=histogram shmetrics_segment_up=gauge
  if [ "$role" = judge ]; then echo readyz_checks_total=counter readyz_failures_total=counter; fi
}
family_args() {
  local f
  for f in $(families_for "$1"); do printf -- '--expect-family\n%s\n' "$f"; done
}

# once ROLE OUT: one exposition of ROLE's segment into OUT; status of --once.
once() {
  "$EXPORTER" --once "$INSTANCE.$1" >"$2" 2>"$WORK/once-$1.err"
}

# The writers' workers register their families right after the fork and each
# adds 1 to rbac_reload_hit_total before its first rbac_reload_checks_total;
# wait until every family is there, the checks counter moved and all
# $WORKERS workers added their hit.
ready() {
  local role=$1
  once "$role" "$WORK/poll-$role.txt" || return 1
  local args
  mapfile -t args < <(family_args "$role")
  "$PYTHON" "$PARSE" "${args[@]}" --expect-min rbac_reload_checks_total=1 \
    --expect-min "rbac_reload_hit_total=$WORKERS" <"$WORK/poll-$role.txt" 2>"$WORK/poll-$role.why"
}
for role in ops judge; do
  if poll_until "$POLL_SECONDS" ready "$role"; then
    pass "--once $INSTANCE.$role shows every family of the $role role and $WORKERS reload hits"
  else
    die "--once $INSTANCE.$role did not show every family within ${POLL_SECONDS}s: $(cat "$WORK/poll-$role.why" "$WORK/once-$role.err" 2>/dev/null)"
  fi
done

# ------------------------------------------------------------ check each role
check_help_type_once() {
  local file=$1 family kind n ok=0
  for family in $(families_for "$2" | tr ' ' '\n' | cut -d= -f1); do
    for kind in HELP TYPE; do
      n=$(grep -c "^# $kind $family " "$file" || true)
      if [ "$n" != 1 ]; then
        echo "  '# $kind $family' appears $n times, want 1" >&2
        ok=1
      fi
    done
  done
  local dups
  dups=$(grep -E '^# (HELP|TYPE) ' "$file" | awk '{print $2, $3}' | sort | uniq -d)
  if [ -n "$dups" ]; then
    echo "  repeated comment lines: $dups" >&2
    ok=1
  fi
  return $ok
}

run_promtool() {
  local file=$1 out rc=0
  out=$("$PROMTOOL" check metrics <"$file" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
    echo "  promtool check metrics exited $rc and said: $out" >&2
    return 1
  fi
}

run_parse() {
  local file=$1
  shift
  "$PYTHON" "$PARSE" "$@" <"$file"
}

for role in ops judge; do
  file=$WORK/exposition-$role.txt
  rc=0
  once "$role" "$file" || rc=$?
  check "--once $INSTANCE.$role exits 0 (got $rc)" [ "$rc" -eq 0 ]
  check "promtool check metrics accepts the $role exposition silently" run_promtool "$file"
  mapfile -t args < <(family_args "$role")
  absent=()
  [ "$role" = ops ] && absent=(--expect-absent readyz_checks_total --expect-absent readyz_failures_total)
  check "parse_exposition.py: $role families, types and values" run_parse "$file" "${args[@]}" \
    "${absent[@]+"${absent[@]}"}" \
    --expect-sample "rbac_map_info{etag=\"$ETAG\"}=1" \
    --expect-sample "rbac_reload_hit_total=$WORKERS" \
    --expect-min rbac_reload_checks_total=1 \
    --expect-min rbac_route_matches_total=1 \
    --expect-min demo_inflight_requests=0 \
    --expect-max "demo_inflight_requests=$WORKERS" \
    --expect-min 'demo_request_duration_seconds_count{route="/rbac/check"}=1' \
    --expect-min 'demo_request_duration_seconds_bucket{route="/rbac/check",le="+Inf"}=1' \
    --expect-sample 'shmetrics_segment_up{role="once"}=1'
  check "$role exposition has exactly one '# HELP' and one '# TYPE' line per family" \
    check_help_type_once "$file" "$role"
done

# ------------------------------------------------- stop writers, check leftovers
for role in ops judge; do
  eval "pid=\$WRITER_PID_$role"
  stop_process "$pid" "$STOP_SECONDS"
  check "demo writer ($role) exits 0 on SIGTERM within ${STOP_SECONDS}s (got $STOP_RC)" [ "$STOP_RC" = 0 ]
done

# With every worker gone no increment is in flight: the three counters the
# demo writer moves together (it counts each decision as a match and as
# allowed or forbidden: no RBAC code runs here, see
# test_rbac_metrics_hit_miss_v1 and scripts/integration.sh for that) must
# be shown consistently, summed over dead workers' slots, and must have
# survived their writers. Gauge and info values belong to live processes only (a dead
# process's value does not carry over), so their series are gone.
sum_matches() {
  local file=$1
  awk '$1 == "rbac_allowed_total" {a = $2} $1 == "rbac_forbidden_total" {f = $2}
       $1 == "rbac_route_matches_total" {m = $2}
       END {
         if (a == "" || f == "" || m == "") { print "  a counter is missing" > "/dev/stderr"; exit 1 }
         if (a + f != m) { printf "  allowed %s + forbidden %s != matches %s\n", a, f, m > "/dev/stderr"; exit 1 }
       }' "$file"
}
for role in ops judge; do
  file=$WORK/after-$role.txt
  rc=0
  once "$role" "$file" || rc=$?
  check "--once reads the $role segment after its writer stopped (exit $rc)" [ "$rc" -eq 0 ]
  check "$role: the exposition sums the dead writers' slots consistently (matches == allowed + forbidden, as written)" \
    sum_matches "$file"
  check "$role: counters kept after the writer stopped, live-process gauge/info series gone" \
    run_parse "$file" \
    --expect-sample "rbac_reload_hit_total=$WORKERS" \
    --expect-min rbac_reload_checks_total=1 \
    --expect-no-series rbac_map_info \
    --expect-no-series demo_inflight_requests \
    --expect-sample 'shmetrics_segment_up{role="once"}=1'
  check "promtool check metrics accepts the $role exposition after the writer stopped" run_promtool "$file"
done

rc=0
"$EXPORTER" --once "shmetrics.$INSTANCE-missing.ops" >"$WORK/missing.out" 2>"$WORK/missing.err" || rc=$?
check "--once on a missing segment exits 1 (got $rc)" [ "$rc" -eq 1 ]
