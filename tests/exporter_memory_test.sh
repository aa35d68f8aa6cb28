#!/usr/bin/env bash
# exporter_memory_test.sh EXPORTER DEMO_WRITER
#
# The exporter's memory under sustained scraping while writers run. Starts
# demo writers for the ops role of a fresh instance (with --busy when the demo
# writer offers it; otherwise two writers of several workers each, at the demo
# writer's own pace) and the exporter on 127.0.0.1:0, then:
#   - warms up with WARMUP scrapes over CONCURRENCY keep-alive connections and
#     reads the exporter's VmRSS;
#   - does SCRAPES more scrapes the same way and reads VmRSS again;
#   - checks RSS after <= RSS after warm-up + 1 MiB, and that nothing is lost:
#     every scrape answered 200 with a complete body, the writers' counters
#     never went down from one scrape to the next of a connection, and they
#     moved while the scrapes ran.
# Meant for the normal build: RSS under a sanitizer says nothing about the
# exporter, so a sanitizer build is skipped (exit 77, meson's SKIP).
#
# Prints "ok: ..." / "FAIL: ..." per check and a final "N passed, N failed";
# exits 0 only when nothing failed.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=script_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/script_lib.sh"
take_script_args "$@"
CLIENT=$HERE/exporter_load_client.py
WARMUP=100
SCRAPES=10000
CONCURRENCY=4
# After warm-up the exporter keeps nothing per scrape: about 100 kB of
# allocator and page noise was measured over 10,000 scrapes. 1 MiB of slack
# catches anything that keeps more than ~105 bytes per scrape (a leak of 600
# bytes a scrape grows RSS by 5.9 MB here).
SLACK_KB=1024
DEADLINE_SECONDS=240
WRITERS=2
WORKERS=6
SERIES=(rbac_reload_checks_total rbac_allowed_total rbac_forbidden_total rbac_route_matches_total)

# ldd's whole output first: grep -q stops at the first match, and under
# pipefail ldd's SIGPIPE would make the pipeline fail.
if grep -Eq 'lib(a|t|ub|l)san' <<<"$(ldd "$EXPORTER" 2>/dev/null || true)"; then
  echo "skipped: $EXPORTER is a sanitizer build; its RSS says nothing about the exporter"
  exit 77
fi

begin_test_run memory

rss_kb() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# scrapes NAME COUNT: COUNT scrapes over CONCURRENCY keep-alive connections,
# checking every answer and that the writers' counters never go down.
scrapes() {
  local name=$1 count=$2 args=() s
  for s in "${SERIES[@]}"; do args+=(--series "$s"); done
  "$PYTHON" "$CLIENT" scrapes "$OPS_PORT" --count "$count" --concurrency "$CONCURRENCY" \
    --deadline "$DEADLINE_SECONDS" "${args[@]}" >"$WORK/$name.out" 2>"$WORK/$name.err"
}

# ---------------------------------------------------------------- preconditions
[ -r /proc/self/status ] || die "/proc/PID/status is not readable here"
command -v curl >/dev/null || die "curl not found"
[ -r "$CLIENT" ] || die "$CLIENT not found"

# ----------------------------------------------------------- writers, exporter
busy=()
if "$DEMO_WRITER" --help 2>&1 | grep -q -e '--busy'; then busy=(--busy); fi
for ((w = 1; w <= WRITERS; w++)); do
  start_demo_writer "writer$w" ops "$WORKERS" "${busy[@]+"${busy[@]}"}"
done
echo "  writers: $WRITERS demo writers of $WORKERS workers each${busy[*]:+ with ${busy[*]}}"
start_exporter exporter
poll_until "$POLL_SECONDS" ops_segment_up || die "ops /metrics did not show the writers' segment within ${POLL_SECONDS}s"

# --------------------------------------------------------------------- warm-up
if scrapes warmup "$WARMUP"; then
  pass "warm-up: $WARMUP scrapes at concurrency $CONCURRENCY all answered and complete"
else
  fail "warm-up scrapes: $(cat "$WORK/warmup.out" "$WORK/warmup.err")"
fi
rss_warm=$(rss_kb "$EXPORTER_PID")

# ---------------------------------------------------------------- the long run
start=$(date +%s%N)
if scrapes long "$SCRAPES"; then
  pass "$SCRAPES scrapes at concurrency $CONCURRENCY: every one 200 and complete, no counter went down"
else
  fail "$SCRAPES scrapes at concurrency $CONCURRENCY: $(cat "$WORK/long.out" "$WORK/long.err")"
fi
long_ms=$((($(date +%s%N) - start) / 1000000))
rss_after=$(rss_kb "$EXPORTER_PID")
sed 's/^/  measured: /' "$WORK/long.out"

echo "  measured: VmRSS after warm-up ${rss_warm} kB, after $SCRAPES scrapes ${rss_after} kB" \
  "(+$((rss_after - rss_warm)) kB) in $long_ms ms"
check "RSS after $SCRAPES scrapes (${rss_after} kB) <= RSS after warm-up (${rss_warm} kB) + 1 MiB" \
  [ "$rss_after" -le $((rss_warm + SLACK_KB)) ]

# The writers really wrote while the scrapes ran.
moved() {
  local name=$1 line first last
  line=$(grep "^series=$name " "$WORK/long.out") || return 1
  first=${line#* first=}
  first=${first%% *}
  last=${line#* last=}
  last=${last%% *}
  "$PYTHON" -c "import sys; sys.exit(0 if float('$last') > float('$first') else 1)"
}
check "rbac_reload_checks_total moved while the scrapes ran" moved rbac_reload_checks_total

for ((w = 1; w <= WRITERS; w++)); do
  check "demo writer $w still running" alive "${PIDS[$((w - 1))]}"
done
check "exporter still running" alive "$EXPORTER_PID"
stop_process "$EXPORTER_PID" "$STOP_SECONDS"
check "exporter exits 0 on SIGTERM (got $STOP_RC)" [ "$STOP_RC" = 0 ]
