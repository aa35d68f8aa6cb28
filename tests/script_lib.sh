# shellcheck shell=bash
# tests/script_lib.sh: what the exporter test scripts in tests/ share (each
# of them sources it). Source it, do not run it:
#   source "$(dirname "${BASH_SOURCE[0]}")/script_lib.sh"
#
# A script calls take_script_args "$@", then begin_test_run PREFIX, then
# uses the rest:
#   take_script_args "$@"     EXPORTER DEMO_WRITER into $EXPORTER and
#                             $DEMO_WRITER; usage and exit 2 otherwise
#   begin_test_run PREFIX     a fresh $INSTANCE (PREFIX-PID-RANDOM) with its
#                             $OPS_SEGMENT and $JUDGE_SEGMENT, a $WORK
#                             directory, the pass/fail counters and the
#                             cleanup trap; dies unless both programs exist
#   pass / fail / check / die count checks: "ok: ..." on stdout, "FAIL: ..."
#                             on stderr; die is a failure that ends the run
#   skip REASON               a check this machine cannot make: "SKIP: ..."
#                             on stdout, counted apart
#   cleanup (EXIT trap)       stops every process start_bg started, removes
#                             both segments and $WORK (showing the logs'
#                             tails first when anything failed), prints
#                             "N passed, N failed" (", N skipped" appended
#                             when some were), exits 0 only when nothing
#                             failed; SIGINT/SIGTERM end the run through it
#   alive PID                 the process exists and is not a zombie
#   poll_until SECONDS CMD... CMD every 0.1 s until it succeeds, bounded
#   start_bg NAME CMD...      CMD in the background in its own process group,
#                             output in $WORK/NAME.out and .err, pid $BG_PID
#   stop_process PID SECONDS [SIGNAL]  stop one of those; status in $STOP_RC
#   start_demo_writer NAME ROLE WORKERS [FLAGS...]  a demo writer for ROLE
#                             of $INSTANCE, through start_bg
#   start_exporter NAME [FLAGS...]  the exporter for $INSTANCE on
#                             127.0.0.1:0, through start_bg; waits for the
#                             ports it logs (event=listening role=...
#                             address=127.0.0.1:PORT): $EXPORTER_PID,
#                             $EXPORTER_LOG, $OPS_PORT, $JUDGE_PORT
#   try_start_exporter NAME [FLAGS...]  the same, but returns 1 instead of
#                             dying when the exporter exits or does not listen
#   http_request NAME PORT PATH [CURL ARGS...]  one request to 127.0.0.1;
#                             $WORK/NAME.body, $WORK/NAME.headers,
#                             $HTTP_STATUS (000: no answer)
#   header NAME HEADER        a header of the answer to http_request NAME
#   ops_segment_up            ops /metrics answers 200 with
#                             shmetrics_segment_up{role="ops"} 1
#   no_segments_exist         neither segment of $INSTANCE exists
#   require_prometheus_parser dies unless $PYTHON imports
#                             prometheus_client.parser

# shellcheck source=scripts/segments.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/segments.sh"

# Settings the scripts share; a script may change them after sourcing.
# shellcheck disable=SC2034  # used by the scripts, not here
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) # tests/, with the Python helpers
PYTHON=/usr/bin/python3 # Debian's python3-prometheus-client imports only here
POLL_SECONDS=20         # deadline for what the scripts wait for
STOP_SECONDS=10         # how long a process gets to exit after its signal
REQUEST_SECONDS=10      # curl's --max-time in http_request
LOG_TAIL_LINES=30       # lines of each log shown when the run failed

take_script_args() {
  if [ $# -ne 2 ]; then
    echo "usage: $0 EXPORTER DEMO_WRITER" >&2
    exit 2
  fi
  EXPORTER=$1
  DEMO_WRITER=$2
}

begin_test_run() {
  INSTANCE=$1-$$-$RANDOM
  OPS_SEGMENT=$(segment_dir)/$INSTANCE.ops
  JUDGE_SEGMENT=$(segment_dir)/$INSTANCE.judge
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX")
  PASSED=0
  FAILED=0
  SKIPPED=0
  PIDS=()
  trap cleanup EXIT
  trap 'echo "interrupted" >&2; exit 1' INT TERM
  [ -x "$EXPORTER" ] || die "exporter $EXPORTER is not an executable file"
  [ -x "$DEMO_WRITER" ] || die "demo writer $DEMO_WRITER is not an executable file"
}

pass() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*" >&2; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "SKIP: $*"; }
# check DESCRIPTION COMMAND...: one check; passes when COMMAND succeeds.
check() {
  local desc=$1
  shift
  if "$@"; then pass "$desc"; else fail "$desc"; fi
}
# die MESSAGE: a failed check after which the script cannot go on.
die() {
  fail "$*"
  exit 1
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_process "$pid" 5; done
  remove_segment_file "$OPS_SEGMENT"
  remove_segment_file "$JUDGE_SEGMENT"
  if [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then
    echo "--- logs of $WORK (instance $INSTANCE) ---" >&2
    local f
    for f in "$WORK"/*.err; do
      [ -e "$f" ] || continue
      echo "--- $(basename "$f")" >&2
      tail -n "$LOG_TAIL_LINES" "$f" >&2
    done
  fi
  rm -rf "$WORK"
  if [ "$SKIPPED" -gt 0 ]; then
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
  else
    echo "$PASSED passed, $FAILED failed"
  fi
  if [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then exit 1; fi
  exit 0
}

alive() {
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# poll_until SECONDS COMMAND...: fails when SECONDS pass first.
poll_until() {
  local tries=$(($1 * 10))
  shift
  local i
  for ((i = 0; i < tries; i++)); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  "$@"
}

# Own process group: setsid without a fork, so the pid is the group id and
# forked workers can be stopped with their parent.
start_bg() {
  local name=$1
  shift
  setsid "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  BG_PID=$!
  PIDS+=("$BG_PID")
}

process_gone() { ! alive "$1"; }
process_group_gone() { ! kill -0 -- "-$1" 2>/dev/null; }

# stop_process PID SECONDS [SIGNAL]: send SIGNAL (TERM), wait up to SECONDS
# for the exit, SIGKILL after that; $STOP_RC is the exit status (KILLED when
# killed). Whatever is left of its process group (orphaned workers) gets the
# same time, then SIGKILL.
stop_process() {
  local pid=$1 secs=$2 sig=${3:-TERM}
  STOP_RC=
  kill "-$sig" "$pid" 2>/dev/null || true
  if ! poll_until "$secs" process_gone "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    STOP_RC=KILLED
  fi
  local rc=0
  wait "$pid" 2>/dev/null || rc=$?
  [ -n "$STOP_RC" ] || STOP_RC=$rc
  if ! process_group_gone "$pid"; then
    poll_until "$secs" process_group_gone "$pid" || kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  local kept=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  PIDS=("${kept[@]+"${kept[@]}"}")
}

start_demo_writer() {
  local name=$1 role=$2 workers=$3
  shift 3
  start_bg "$name" "$DEMO_WRITER" --instance "$INSTANCE" --role "$role" --workers "$workers" "$@"
}

# listening_port ROLE: the port of ROLE's listener in $EXPORTER_LOG ("" when
# not logged yet).
listening_port() {
  { grep -o "event=listening role=$1 address=127\.0\.0\.1:[1-9][0-9]*" "$EXPORTER_LOG" 2>/dev/null || true; } |
    head -n 1 | sed 's/.*://'
}

exporter_listening() {
  alive "$EXPORTER_PID" && [ -n "$(listening_port ops)" ] && [ -n "$(listening_port judge)" ]
}

# Listening, or gone: nothing more to wait for.
exporter_settled() { exporter_listening || ! alive "$EXPORTER_PID"; }

try_start_exporter() {
  local name=$1
  shift
  start_bg "$name" "$EXPORTER" --instance "$INSTANCE" --ops-listen 127.0.0.1:0 \
    --judge-listen 127.0.0.1:0 "$@"
  EXPORTER_PID=$BG_PID
  EXPORTER_LOG=$WORK/$name.err
  poll_until "$POLL_SECONDS" exporter_settled || true
  exporter_listening || return 1
  OPS_PORT=$(listening_port ops)
  JUDGE_PORT=$(listening_port judge)
}

start_exporter() {
  try_start_exporter "$@" ||
    die "exporter $1 did not log event=listening for both roles on 127.0.0.1 within ${POLL_SECONDS}s (alive: $(alive "$EXPORTER_PID" && echo yes || echo no))"
}

http_request() {
  local name=$1 port=$2 path=$3
  shift 3
  HTTP_STATUS=$(curl -sS --max-time "$REQUEST_SECONDS" "$@" -o "$WORK/$name.body" \
    -D "$WORK/$name.headers" -w '%{http_code}' "http://127.0.0.1:$port$path" 2>"$WORK/curl.err") || true
  [ -n "$HTTP_STATUS" ] || HTTP_STATUS=000
}

# header NAME HEADER: "" when there is no such header.
header() {
  { grep -i "^$2:" "$WORK/$1.headers" || true; } | tail -n 1 | tr -d '\r' | sed 's/^[^:]*:[[:space:]]*//'
}

ops_segment_up() {
  http_request ops-segment-up "$OPS_PORT" /metrics
  [ "$HTTP_STATUS" = 200 ] && grep -q '^shmetrics_segment_up{role="ops"} 1$' "$WORK/ops-segment-up.body"
}

no_segments_exist() {
  [ ! -e "$OPS_SEGMENT" ] && [ ! -e "$JUDGE_SEGMENT" ]
}

require_prometheus_parser() {
  "$PYTHON" -c 'import prometheus_client.parser' 2>"$WORK/python.err" ||
    die "$PYTHON cannot import prometheus_client.parser (python3-prometheus-client): $(cat "$WORK/python.err")"
}
