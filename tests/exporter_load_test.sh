#!/usr/bin/env bash
# exporter_load_test.sh EXPORTER DEMO_WRITER
#
# The exporter's HTTP side under load and abuse. Starts a demo writer for the
# ops role of a fresh instance and the exporter (--threads 2) on 127.0.0.1:0,
# then checks:
#   flags   --help names every HTTP limit; a bad value exits 2 naming it
#   (a)     200 scrapes at once all answer 200 with a complete body; the
#           listen backlog is 1024
#   (b)     12 slow clients, six times the threads, sending a request head a
#           byte a second: 20 scrapes meanwhile all answer before the slow
#           clients let go (a waiting connection holds no thread)
#   (c)     a 20 KB header line gets 431, as does a head over
#           --max-request-bytes; an unknown path 404; any other method on
#           /metrics (BREW included) 405 with Allow: GET, HEAD; HEAD /metrics
#           200 with Content-Length and no body; a GET with a body 413 with
#           a text body and its connection closed (the body is never parsed
#           as a request); the exporter still serves afterwards
#   SIGTERM the exporter stops with status 0 at once, even while slow clients
#           are connected
#
# tests/exporter_abuse_test.sh attacks the same side harder (the rows of the
# HTTP issue's table).
#
# Prints "ok: ..." / "FAIL: ..." per check, the measurements, and a final
# "N passed, N failed"; exits 0 only when nothing failed.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=script_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/script_lib.sh"
take_script_args "$@"
CLIENT=$HERE/exporter_load_client.py
THREADS=2
BURST=200
HOLD=6               # seconds the slow clients hold their threads
SLOW_HOLD_ON_STOP=30 # longer than STOP_SECONDS: the stop must not wait for them

begin_test_run load

# status_in STATUS...: $HTTP_STATUS is one of them.
status_in() {
  local s
  for s in "$@"; do [ "$HTTP_STATUS" = "$s" ] && return 0; done
  return 1
}

# ---------------------------------------------------------------- preconditions
command -v curl >/dev/null || die "curl not found"
[ -x "$PYTHON" ] || die "$PYTHON not found"
[ -r "$CLIENT" ] || die "$CLIENT not found"
check "segments of instance $INSTANCE do not exist before the test" no_segments_exist

# ------------------------------------------------------------------------ flags
"$EXPORTER" --help >"$WORK/help.out" 2>&1 || true
missing=
for flag in --threads --max-connections --max-request-bytes --header-timeout-ms --keep-alive-timeout-s \
  --write-timeout-ms; do
  grep -qe "$flag" "$WORK/help.out" || missing="$missing $flag"
done
check "--help names every HTTP limit (missing:${missing:- none})" [ -z "$missing" ]
check "--help gives the defaults of the HTTP limits" grep -q 'default 1024' "$WORK/help.out"

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
for bad in "--threads 0" "--threads 257" "--threads eight" "--header-timeout-ms 0" \
  "--header-timeout-ms 5s" "--write-timeout-ms -1" "--max-connections 0" "--max-connections 65537" \
  "--keep-alive-timeout-s 0" "--keep-alive-timeout-s 99999999999999999999" \
  "--max-request-bytes 10" "--max-request-bytes 255" "--max-request-bytes 65537" "--max-request-bytes 4096x"; do
  # shellcheck disable=SC2086  # two words on purpose
  check "$bad is refused with exit 2, naming the value" bad_value $bad
done
rc=0
"$EXPORTER" --threads >"$WORK/novalue.out" 2>"$WORK/novalue.err" || rc=$?
check "--threads without a value exits 2 (got $rc)" [ "$rc" -eq 2 ]

# ---------------------------------------------------------- writer, exporter
start_demo_writer writer ops 2
start_exporter exporter --threads "$THREADS" --max-connections 512 --keep-alive-timeout-s 4 \
  --header-timeout-ms 10000 --write-timeout-ms 5000 --max-request-bytes 4096
check "ops /metrics comes up with the writer's segment" poll_until "$POLL_SECONDS" ops_segment_up

# ------------------------------------------------------------ (a) 200 at once
start=$(date +%s%N)
if "$PYTHON" "$CLIENT" burst "$OPS_PORT" "$BURST" >"$WORK/burst.out" 2>"$WORK/burst.err"; then
  pass "$BURST scrapes at once all answered 200 with a complete body"
else
  fail "$BURST scrapes at once: not all answered 200 with a complete body: $(cat "$WORK/burst.err")"
fi
echo "  measured: $(cat "$WORK/burst.out") (wall $((($(date +%s%N) - start) / 1000000)) ms)"
if command -v ss >/dev/null; then
  backlog=$(ss -Hltn "sport = :$OPS_PORT" | awk '{print $3}' | head -n 1)
  check "the ops listener's backlog is 1024 (got '$backlog')" [ "$backlog" = 1024 ]
fi

# ----------------------------------------- (b) slow clients > threads
# The head deadline (--header-timeout-ms 10000) is longer than HOLD: the
# slow clients are not cut, they just hold no thread.
if "$PYTHON" "$CLIENT" slow "$OPS_PORT" --slow 12 --scrapes 20 --hold "$HOLD" --expect-during-hold \
  >"$WORK/slow12.out" 2>"$WORK/slow12.err"; then
  pass "with 12 slow clients on $THREADS threads, 20 scrapes all answered while they held on"
else
  fail "with 12 slow clients on $THREADS threads, scrapes did not all answer in time: $(cat "$WORK/slow12.err")"
fi
sed 's/^/  measured: /' "$WORK/slow12.out"

# ------------------------------------------------------------ (c) abuse
http_request big20k "$OPS_PORT" /metrics -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' a)"
check "a 20 KB header line gets 431 (got $HTTP_STATUS)" status_in 431
http_request big5k "$OPS_PORT" /metrics -H "X-Big: $(head -c 5000 /dev/zero | tr '\0' a)"
check "a 5 KB head over --max-request-bytes 4096 gets 431 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 431 ]
http_request big3k "$OPS_PORT" /metrics -H "X-Big: $(head -c 3000 /dev/zero | tr '\0' a)"
check "a 3 KB head under --max-request-bytes 4096 is served (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 200 ]

http_request nope "$OPS_PORT" /nope
check "GET /nope answers 404 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 404 ]
http_request brew "$OPS_PORT" /metrics -X BREW
for method in BREW POST PUT DELETE OPTIONS; do
  http_request "m-$method" "$OPS_PORT" /metrics -X "$method"
  allow=$(header "m-$method" Allow)
  check "$method /metrics answers 405 (got $HTTP_STATUS)" status_in 405
  check "$method /metrics names GET, HEAD in its Allow header (got '$allow')" [ "$allow" = "GET, HEAD" ]
done

http_request head "$OPS_PORT" /metrics --head
length=$(header head Content-Length)
check "HEAD /metrics answers 200 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 200 ]
check "HEAD /metrics has a Content-Length > 0 (got '$length')" [ "${length:-0}" -gt 0 ]
# curl prints HEAD's headers as its output; read the raw answer instead.
raw_head() {
  exec 3<>"/dev/tcp/127.0.0.1/$OPS_PORT" || return 1
  printf 'HEAD /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
  timeout 10 cat <&3 >"$WORK/head.raw" || true
  exec 3<&-
  # The answer ends with the blank line after the headers: nothing follows.
  [ "$(tail -c 4 "$WORK/head.raw" | od -An -c | tr -d ' ')" = '\r\n\r\n' ] &&
    grep -q '^HTTP/1.1 200' "$WORK/head.raw"
}
check "HEAD /metrics sends no body (the raw answer ends with its headers)" raw_head

http_request body "$OPS_PORT" /metrics -X GET --data 'x=1'
check "GET /metrics with a body answers 413 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 413 ]
check "GET /metrics with a body gets a short text body" grep -q 'not accepted' "$WORK/body.body"
check "GET /metrics with a body is answered Connection: close (got '$(header body Connection)')" \
  [ "$(header body Connection)" = close ]
http_request chunked "$OPS_PORT" /metrics -X GET -H 'Transfer-Encoding: chunked' --data 'x=1'
check "GET /metrics with a chunked body answers 413 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 413 ]
http_request postbody "$OPS_PORT" /nope -X POST --data-binary "@$WORK/help.out"
check "POST /nope with a body is refused with 413 unread (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 413 ]
# Within 2 s: the keep-alive timeout (4 s) would close it too.
if "$PYTHON" "$CLIENT" smuggle "$OPS_PORT" --timeout 2 >"$WORK/smuggle.out" 2>"$WORK/smuggle.err"; then
  pass "a refused body is never parsed as a request: one 4xx answer, then the connection closes"
else
  fail "a request inside a refused body: $(cat "$WORK/smuggle.out" "$WORK/smuggle.err")"
fi

check "exporter still running after the abuse" alive "$EXPORTER_PID"
check "ops /metrics still answers 200 with the segment up after the abuse" ops_segment_up

# SIGTERM while 12 slow clients are connected: the stop must not wait for
# them (they would go on for SLOW_HOLD_ON_STOP s).
start_bg slow-at-stop "$PYTHON" "$CLIENT" slow "$OPS_PORT" --slow 12 --scrapes 0 --hold "$SLOW_HOLD_ON_STOP"
SLOW_PID=$BG_PID
sleep 3
stop_start=$(date +%s%N)
stop_process "$EXPORTER_PID" "$STOP_SECONDS"
stop_ms=$((($(date +%s%N) - stop_start) / 1000000))
check "exporter exits 0 on SIGTERM while 12 slow clients are connected (got $STOP_RC after $stop_ms ms)" \
  [ "$STOP_RC" = 0 ]
check "exporter logged event=stopped" grep -q 'event=stopped' "$WORK/exporter.err"
poll_until "$STOP_SECONDS" process_gone "$SLOW_PID" || true
stop_process "$SLOW_PID" "$STOP_SECONDS"
echo "  measured: SIGTERM to exit with 12 slow clients connected: $stop_ms ms; the slow clients saw:"
sed 's/^/    /' "$WORK/slow-at-stop.out"

