#!/usr/bin/env bash
# exporter_load_test.sh EXPORTER DEMO_WRITER
#
# The exporter's HTTP side under load and abuse. Starts a demo writer for the
# ops role of a fresh instance and the exporter (--threads 8) on 127.0.0.1:0,
# then checks:
#   flags   --help names every HTTP limit; a bad value exits 2 naming it
#   (a)     200 scrapes at once all answer 200 with a complete body; the
#           listen backlog is 128
#   (b)     4 slow clients (fewer than the 8 threads) sending a request head a
#           byte a second: 20 scrapes meanwhile all answer before they let go
#   (c)     a 20 KB header line is refused (400 from cpp-httplib), a head over
#           --max-request-bytes gets 431, an unknown path 404, an unknown
#           method 400/405, POST/PUT /metrics 405 with Allow: GET, HEAD, HEAD
#           /metrics 200 with Content-Length and no body, a GET with a body
#           413 with a text body and its connection closed (the body is never
#           parsed as a request); the exporter still serves afterwards; the
#           keep-alive flags show in the Keep-Alive header
#   SIGTERM the exporter stops with status 0 at once, even while slow clients
#           hold every thread (cpp-httplib's stop() alone would wait for them)
#
# More slow clients than threads (measured, not asserted): cpp-httplib 0.11.4
# serves a connection on one pool thread for its whole life and its read
# timeout applies to each receive, so a client sending a byte a second (a gap
# shorter than --read-timeout-ms) keeps its thread for as long as it goes on,
# and connections beyond the threads wait in the pool's queue. The script runs
# 12 such clients against 8 threads for HOLD seconds and prints how long 20
# scrapes took: they are answered only when slow clients finish (here: when
# they send the rest of their head after HOLD s; with the default 5 s read
# timeout none is cut). It then runs the same against an exporter with
# --read-timeout-ms 500, shorter than the clients' gap: the slow clients are
# cut at their first pause and the scrapes answer at once. Measured here
# (2 CPUs, HOLD 6): 12 slow clients, read timeout 5000 ms -> every scrape took
# ~4.5 s (until the slow clients let go); read timeout 500 ms -> slow clients
# cut, scrapes took under 10 ms.
#
# Prints "ok: ..." / "FAIL: ..." per check, the measurements, and a final
# "N passed, N failed"; exits 0 only when nothing failed.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 EXPORTER DEMO_WRITER" >&2
  exit 2
fi
EXPORTER=$1
DEMO_WRITER=$2
HERE=$(cd "$(dirname "$0")" && pwd)
CLIENT=$HERE/exporter_load_client.py
PYTHON=/usr/bin/python3
THREADS=8
BURST=200
HOLD=6               # seconds the slow clients hold their threads
SLOW_HOLD_ON_STOP=30 # longer than STOP_SECONDS: the stop must not wait for them
POLL_SECONDS=20
STOP_SECONDS=10

INSTANCE=load-$$-$RANDOM
OPS_SEGMENT=/dev/shm/shmetrics.$INSTANCE.ops
JUDGE_SEGMENT=/dev/shm/shmetrics.$INSTANCE.judge
WORK=$(mktemp -d "${TMPDIR:-/tmp}/exporter_load_test.XXXXXX")
PASSED=0
FAILED=0
PIDS=()

pass() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*" >&2; }
check() {
  local desc=$1
  shift
  if "$@"; then pass "$desc"; else fail "$desc"; fi
}
die() {
  fail "$*"
  exit 1
}

alive() {
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# poll_until SECONDS COMMAND...: run COMMAND every 0.1 s until it succeeds.
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

# start_bg NAME COMMAND...: COMMAND in the background in its own process
# group; output in $WORK/NAME.out and .err; pid in $BG_PID.
start_bg() {
  local name=$1
  shift
  setsid "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  BG_PID=$!
  PIDS+=("$BG_PID")
}

# stop_process PID SECONDS: SIGTERM, wait, SIGKILL when it takes too long; the
# exit status is left in $STOP_RC (KILLED when killed). Also stops what is
# left of its process group.
stop_process() {
  local pid=$1 secs=$2
  STOP_RC=
  kill -TERM "$pid" 2>/dev/null || true
  if ! poll_until "$secs" eval "! alive $pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    STOP_RC=KILLED
  fi
  local rc=0
  wait "$pid" 2>/dev/null || rc=$?
  [ -n "$STOP_RC" ] || STOP_RC=$rc
  if kill -0 -- "-$pid" 2>/dev/null; then
    poll_until "$secs" eval "! kill -0 -- -$pid 2>/dev/null" || kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  local kept=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  PIDS=("${kept[@]+"${kept[@]}"}")
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_process "$pid" 5; done
  rm -f "$OPS_SEGMENT" "$JUDGE_SEGMENT"
  if [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then
    echo "--- logs of $WORK (instance $INSTANCE) ---" >&2
    local f
    for f in "$WORK"/*.err; do
      [ -e "$f" ] || continue
      echo "--- $(basename "$f")" >&2
      tail -n 30 "$f" >&2
    done
  fi
  rm -rf "$WORK"
  echo "$PASSED passed, $FAILED failed"
  if [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then exit 1; fi
  exit 0
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 1' INT TERM

# request NAME CURL ARGS...: one curl request; body in $WORK/NAME.body,
# headers in $WORK/NAME.headers, status in $HTTP_STATUS (000: no answer).
request() {
  local name=$1
  shift
  HTTP_STATUS=$(curl -sS --max-time 10 -o "$WORK/$name.body" -D "$WORK/$name.headers" \
    -w '%{http_code}' "$@" 2>"$WORK/$name.curl-err") || true
  [ -n "$HTTP_STATUS" ] || HTTP_STATUS=000
}

# status_in STATUS...: $HTTP_STATUS is one of them.
status_in() {
  local s
  for s in "$@"; do [ "$HTTP_STATUS" = "$s" ] && return 0; done
  return 1
}

# header NAME HEADER: the value of HEADER in $WORK/NAME.headers ("" if none).
header() {
  { grep -i "^$2:" "$WORK/$1.headers" || true; } | tail -n 1 | tr -d '\r' | sed 's/^[^:]*:[[:space:]]*//'
}

# start_exporter NAME FLAGS...: starts the exporter for $INSTANCE on
# 127.0.0.1:0 and leaves its pid in $EXPORTER_PID and the ops port in $PORT.
start_exporter() {
  local name=$1
  shift
  start_bg "$name" "$EXPORTER" --instance "$INSTANCE" --ops-listen 127.0.0.1:0 \
    --judge-listen 127.0.0.1:0 "$@"
  EXPORTER_PID=$BG_PID
  local log=$WORK/$name.err
  poll_until "$POLL_SECONDS" eval "alive $EXPORTER_PID && grep -qs 'event=listening role=ops address=127\.0\.0\.1:[1-9]' '$log'" ||
    die "exporter $name did not log event=listening role=ops within ${POLL_SECONDS}s"
  PORT=$(grep -o 'event=listening role=ops address=127\.0\.0\.1:[0-9]*' "$log" | head -n 1 | sed 's/.*://')
}

ops_up() {
  request up "http://127.0.0.1:$PORT/metrics"
  [ "$HTTP_STATUS" = 200 ] && grep -q '^shmetrics_segment_up{role="ops"} 1$' "$WORK/up.body"
}

# ---------------------------------------------------------------- preconditions
[ -x "$EXPORTER" ] || die "exporter $EXPORTER is not an executable file"
[ -x "$DEMO_WRITER" ] || die "demo writer $DEMO_WRITER is not an executable file"
command -v curl >/dev/null || die "curl not found"
[ -x "$PYTHON" ] || die "$PYTHON not found"
[ -r "$CLIENT" ] || die "$CLIENT not found"
check "segments of instance $INSTANCE do not exist before the test" \
  test ! -e "$OPS_SEGMENT" -a ! -e "$JUDGE_SEGMENT"

# ------------------------------------------------------------------------ flags
"$EXPORTER" --help >"$WORK/help.out" 2>&1 || true
missing=
for flag in --threads --read-timeout-ms --write-timeout-ms --keep-alive-max --keep-alive-timeout-s \
  --max-request-bytes; do
  grep -qe "$flag" "$WORK/help.out" || missing="$missing $flag"
done
check "--help names every HTTP limit (missing:${missing:- none})" [ -z "$missing" ]
check "--help gives the defaults of the HTTP limits" grep -q 'default 8' "$WORK/help.out"

# bad_value FLAG VALUE: the exporter exits 2 and names the flag and the value.
bad_value() {
  local rc=0
  "$EXPORTER" --instance "$INSTANCE" "$1" "$2" >"$WORK/bad.out" 2>"$WORK/bad.err" || rc=$?
  if [ "$rc" -ne 2 ]; then
    echo "  $1 $2: exit status $rc, want 2" >&2
    return 1
  fi
  grep -qF -e "$1 \"$2\"" "$WORK/bad.err" || {
    echo "  $1 $2: stderr does not name the flag and value: $(cat "$WORK/bad.err")" >&2
    return 1
  }
}
for bad in "--threads 0" "--threads 1025" "--threads eight" "--read-timeout-ms 0" \
  "--read-timeout-ms 5s" "--write-timeout-ms -1" "--keep-alive-max 0" \
  "--keep-alive-timeout-s 0" "--keep-alive-timeout-s 99999999999999999999" \
  "--max-request-bytes 10" "--max-request-bytes 4096x"; do
  # shellcheck disable=SC2086  # two words on purpose
  check "$bad is refused with exit 2, naming the value" bad_value $bad
done
rc=0
"$EXPORTER" --threads >"$WORK/novalue.out" 2>"$WORK/novalue.err" || rc=$?
check "--threads without a value exits 2 (got $rc)" [ "$rc" -eq 2 ]

# ---------------------------------------------------------- writer, exporter
start_bg writer "$DEMO_WRITER" --instance "$INSTANCE" --role ops --workers 2
start_exporter exporter --threads "$THREADS" --keep-alive-max 50 --keep-alive-timeout-s 4 \
  --read-timeout-ms 5000 --write-timeout-ms 5000 --max-request-bytes 4096
check "ops /metrics comes up with the writer's segment" poll_until "$POLL_SECONDS" ops_up

# ------------------------------------------------------------ (a) 200 at once
start=$(date +%s%N)
if "$PYTHON" "$CLIENT" burst "$PORT" "$BURST" >"$WORK/burst.out" 2>"$WORK/burst.err"; then
  pass "$BURST scrapes at once all answered 200 with a complete body"
else
  fail "$BURST scrapes at once: not all answered 200 with a complete body: $(cat "$WORK/burst.err")"
fi
echo "  measured: $(cat "$WORK/burst.out") (wall $((($(date +%s%N) - start) / 1000000)) ms)"
if command -v ss >/dev/null; then
  backlog=$(ss -Hltn "sport = :$PORT" | awk '{print $3}' | head -n 1)
  check "the ops listener's backlog is 128 (got '$backlog')" [ "$backlog" = 128 ]
fi

# ----------------------------------------------- (b) slow clients < threads
if "$PYTHON" "$CLIENT" slow "$PORT" --slow 4 --scrapes 20 --hold "$HOLD" --expect-during-hold \
  >"$WORK/slow4.out" 2>"$WORK/slow4.err"; then
  pass "with 4 slow clients on $THREADS threads, 20 scrapes all answered while they held on"
else
  fail "with 4 slow clients on $THREADS threads, scrapes did not all answer in time: $(cat "$WORK/slow4.err")"
fi
sed 's/^/  measured: /' "$WORK/slow4.out"

# ------------------------------------------ more slow clients than threads
# Documented above; only that the scrapes are answered in the end is checked.
if "$PYTHON" "$CLIENT" slow "$PORT" --slow 12 --scrapes 20 --hold "$HOLD" \
  >"$WORK/slow12.out" 2>"$WORK/slow12.err"; then
  pass "with 12 slow clients on $THREADS threads, 20 scrapes were all answered in the end"
else
  fail "with 12 slow clients on $THREADS threads, scrapes failed: $(cat "$WORK/slow12.err")"
fi
echo "  measured (12 slow clients, $THREADS threads, read timeout 5000 ms, hold ${HOLD}s):"
sed 's/^/    /' "$WORK/slow12.out"

# ------------------------------------------------------------ (c) abuse
request big20k "http://127.0.0.1:$PORT/metrics" -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' a)"
check "a 20 KB header line is refused with 400 or 431 (got $HTTP_STATUS)" status_in 400 431
request big5k "http://127.0.0.1:$PORT/metrics" -H "X-Big: $(head -c 5000 /dev/zero | tr '\0' a)"
check "a 5 KB head over --max-request-bytes 4096 gets 431 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 431 ]
request big3k "http://127.0.0.1:$PORT/metrics" -H "X-Big: $(head -c 3000 /dev/zero | tr '\0' a)"
check "a 3 KB head under --max-request-bytes 4096 is served (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 200 ]

request nope "http://127.0.0.1:$PORT/nope"
check "GET /nope answers 404 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 404 ]
request brew -X BREW "http://127.0.0.1:$PORT/metrics"
check "BREW /metrics answers 400 or 405 (got $HTTP_STATUS)" status_in 400 405
for method in POST PUT DELETE OPTIONS; do
  request "m-$method" -X "$method" "http://127.0.0.1:$PORT/metrics"
  allow=$(header "m-$method" Allow)
  check "$method /metrics answers 405 (got $HTTP_STATUS)" status_in 405
  check "$method /metrics names GET, HEAD in its Allow header (got '$allow')" [ "$allow" = "GET, HEAD" ]
done

request head --head "http://127.0.0.1:$PORT/metrics"
length=$(header head Content-Length)
check "HEAD /metrics answers 200 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 200 ]
check "HEAD /metrics has a Content-Length > 0 (got '$length')" [ "${length:-0}" -gt 0 ]
# curl prints HEAD's headers as its output; read the raw answer instead.
raw_head() {
  exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
  printf 'HEAD /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
  timeout 10 cat <&3 >"$WORK/head.raw" || true
  exec 3<&-
  # The answer ends with the blank line after the headers: nothing follows.
  [ "$(tail -c 4 "$WORK/head.raw" | od -An -c | tr -d ' ')" = '\r\n\r\n' ] &&
    grep -q '^HTTP/1.1 200' "$WORK/head.raw"
}
check "HEAD /metrics sends no body (the raw answer ends with its headers)" raw_head
ka=$(header head Keep-Alive)
check "the Keep-Alive header shows --keep-alive-timeout-s 4 and --keep-alive-max 50 (got '$ka')" \
  [ "$ka" = "timeout=4, max=50" ]

request body -X GET --data 'x=1' "http://127.0.0.1:$PORT/metrics"
check "GET /metrics with a body answers 413 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 413 ]
check "GET /metrics with a body gets a short text body" grep -q 'not accepted' "$WORK/body.body"
check "GET /metrics with a body is answered Connection: close (got '$(header body Connection)')" \
  [ "$(header body Connection)" = close ]
request chunked -X GET -H 'Transfer-Encoding: chunked' --data 'x=1' "http://127.0.0.1:$PORT/metrics"
check "GET /metrics with a chunked body answers 413 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 413 ]
request postbody -X POST --data-binary "@$WORK/help.out" "http://127.0.0.1:$PORT/nope"
check "POST /nope with a body is refused with 413 unread (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 413 ]
if "$PYTHON" "$CLIENT" smuggle "$PORT" >"$WORK/smuggle.out" 2>"$WORK/smuggle.err"; then
  pass "a refused body is never parsed as a request: one 4xx answer, then the connection closes"
else
  fail "a request inside a refused body: $(cat "$WORK/smuggle.out" "$WORK/smuggle.err")"
fi

check "exporter still running after the abuse" alive "$EXPORTER_PID"
check "ops /metrics still answers 200 with the segment up after the abuse" ops_up

# SIGTERM while 12 slow clients hold every thread: stop() alone would wait
# for them (they would go on for SLOW_HOLD_ON_STOP s).
start_bg slow-at-stop "$PYTHON" "$CLIENT" slow "$PORT" --slow 12 --scrapes 0 --hold "$SLOW_HOLD_ON_STOP"
SLOW_PID=$BG_PID
sleep 3
stop_start=$(date +%s%N)
stop_process "$EXPORTER_PID" "$STOP_SECONDS"
stop_ms=$((($(date +%s%N) - stop_start) / 1000000))
check "exporter exits 0 on SIGTERM while 12 slow clients hold its threads (got $STOP_RC after $stop_ms ms)" \
  [ "$STOP_RC" = 0 ]
check "exporter logged event=stopped" grep -q 'event=stopped' "$WORK/exporter.err"
poll_until "$STOP_SECONDS" eval "! alive $SLOW_PID" || true
stop_process "$SLOW_PID" "$STOP_SECONDS"
echo "  measured: SIGTERM to exit with 12 slow clients connected: $stop_ms ms; the slow clients saw:"
sed 's/^/    /' "$WORK/slow-at-stop.out"

# --------------------------------- slow clients cut by a short read timeout
start_exporter exporter-rt500 --threads "$THREADS" --read-timeout-ms 500
if "$PYTHON" "$CLIENT" slow "$PORT" --slow 12 --scrapes 20 --hold "$HOLD" \
  >"$WORK/slow12rt.out" 2>"$WORK/slow12rt.err"; then
  pass "with --read-timeout-ms 500 and 12 slow clients, 20 scrapes were all answered"
else
  fail "with --read-timeout-ms 500 and 12 slow clients, scrapes failed: $(cat "$WORK/slow12rt.err")"
fi
echo "  measured (12 slow clients, $THREADS threads, read timeout 500 ms, hold ${HOLD}s):"
sed 's/^/    /' "$WORK/slow12rt.out"
stop_process "$EXPORTER_PID" "$STOP_SECONDS"
check "exporter with --read-timeout-ms 500 exits 0 on SIGTERM (got $STOP_RC)" [ "$STOP_RC" = 0 ]
