#!/usr/bin/env bash
# exporter_bounds_test.sh EXPORTER MAKE_AMPLIFYING_SEGMENT
#
# The exporter binary against the amplifying segment of the defects issue
# (item 3; tests/amplifying_segment.h): 2,048 families and series of a 336 KB
# segment sharing one help text and one 128 KiB block of label values, which
# an unbounded exporter renders as 277 MB per scrape. Creates it as the ops
# segment of a fresh instance, starts the exporter, scrapes ops /metrics
# SCRAPES times at once (as slow Prometheus servers would overlap), then:
#   - every scrape answered 200 with shmetrics_segment_up{role="ops"} 1, the
#     2,047 entries reusing strings counted as dropped, and a body under 1 MiB;
#   - the exporter's peak RSS (VmHWM) stayed under PEAK_LIMIT_KB.
# With --max-scrape-bytes 65536 the role is down, with the reason logged.
# Timings are printed, not checked. A sanitizer build is skipped (exit 77):
# its RSS says nothing about the exporter.
#
# Prints "ok: ..." / "FAIL: ..." per check and a final "N passed, N failed";
# exits 0 only when nothing failed.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=script_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/script_lib.sh"
take_script_args "$@"
MAKE_SEGMENT=$DEMO_WRITER
SCRAPES=6
PEAK_LIMIT_KB=$((64 * 1024))
REQUEST_SECONDS=120 # an unbounded exporter needs seconds per scrape

# ldd's whole output first: grep -q stops at the first match, and under
# pipefail ldd's SIGPIPE would make the pipeline fail.
if grep -Eq 'lib(a|t|ub|l)san' <<<"$(ldd "$EXPORTER" 2>/dev/null || true)"; then
  echo "skipped: $EXPORTER is a sanitizer build; its RSS says nothing about the exporter"
  exit 77
fi

begin_test_run bounds
command -v curl >/dev/null || die "curl not found"

"$MAKE_SEGMENT" "$(basename "$OPS_SEGMENT")" >"$WORK/make.out" 2>"$WORK/make.err" ||
  die "$MAKE_SEGMENT failed: $(cat "$WORK/make.err")"
echo "  segment: $(cat "$WORK/make.out"), file $(stat -c %s "$OPS_SEGMENT") bytes"

start_exporter exporter

start=$(date +%s%N)
curls=()
for ((i = 1; i <= SCRAPES; i++)); do
  curl -sS --max-time "$REQUEST_SECONDS" -o "$WORK/scrape$i.body" -w '%{http_code}' \
    "http://127.0.0.1:$OPS_PORT/metrics" >"$WORK/scrape$i.status" 2>"$WORK/scrape$i.err" &
  curls+=($!)
done
wait "${curls[@]}" || true
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
peak_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$EXPORTER_PID/status")
echo "  measured: $SCRAPES concurrent scrapes in $elapsed_ms ms, body $(stat -c %s "$WORK/scrape1.body") bytes," \
  "exporter VmHWM $peak_kb kB"

scrape_ok() {
  local body=$WORK/scrape$1.body
  [ "$(cat "$WORK/scrape$1.status")" = 200 ] &&
    grep -q '^shmetrics_segment_up{role="ops"} 1$' "$body" &&
    grep -q '^shmetrics_untrusted_entries_dropped_total{role="ops",kind="family"} 2047$' "$body" &&
    grep -q '^shmetrics_untrusted_entries_dropped_total{role="ops",kind="series"} 2047$' "$body" &&
    [ "$(stat -c %s "$body")" -lt $((1024 * 1024)) ]
}
for ((i = 1; i <= SCRAPES; i++)); do
  check "scrape $i: 200, segment up, 2047 families and 2047 series dropped, body under 1 MiB" scrape_ok "$i"
done
check "exporter peak RSS ($peak_kb kB) under $PEAK_LIMIT_KB kB" [ "$peak_kb" -lt "$PEAK_LIMIT_KB" ]
stop_process "$EXPORTER_PID" "$STOP_SECONDS"

# The same segment under a limit it exceeds even without the shared strings.
start_exporter tight --max-scrape-bytes 65536
http_request tight "$OPS_PORT" /metrics
check "with --max-scrape-bytes 65536: 200 and shmetrics_segment_up{role=\"ops\"} 0" \
  grep -q '^shmetrics_segment_up{role="ops"} 0$' "$WORK/tight.body"
check "the reason is logged, naming --max-scrape-bytes" \
  grep -q 'event=segment_down.*too large to serve with --max-scrape-bytes 65536' "$EXPORTER_LOG"
