#!/usr/bin/env bash
# exporter_abuse_test.sh EXPORTER DEMO_WRITER
#
# Issue 10's table "What was measured against main", row by row, as checks of
# the bound the exporter must hold against that attack. The attacks come from
# tests/http_abuse_client.py (raw sockets, each bounded in count and time);
# this script judges what it measured. Every section starts an exporter of
# its own, so one attack's damage (a spinning thread, a grown heap) never
# decides another's check. A demo writer fills the ops segment and is stopped
# first: every scrape has the same body, so sizes compare to a few bytes.
#
#   1 Range           `Range: bytes=0-100000000` answers 200 with the whole
#                     body (Content-Length = bytes sent = a plain scrape).
#                     With --threads 2, 9 such requests whose clients leave
#                     after the head: a scrape still answers 200, and the
#                     exporter spends under 0.5 s of CPU in the next 2 s.
#   2 big heads       64 MB of small header lines; one 64 MB header line; 3
#                     lines of 512 MB at once: each answered 431 or closed
#                     before the client got 2 MiB into its socket
#                     (each attack stops after 20 s or once the exporter's RSS
#                     grew by 64 MiB); VmHWM under 64 MiB; scrapes still work.
#   3 idle, slow      2,000 idle connections, then 64 clients trickling a byte
#                     every 2 s (reconnecting when cut): a scrape on a new
#                     connection answers 200, 100 scrapes each within 2 s
#                     (p50/p99 printed; the 100 ms p99 target is the
#                     benchmark's), VmHWM under 64 MiB; the same again with
#                     all three at once (2,000 idle, 64 slow and a client
#                     sending 64 MB heads over and over). With
#                     --header-timeout-ms 1000 a client trickling a byte every
#                     0.5 s, and a connection that sends nothing, are closed
#                     after 0.8-4 s; with --keep-alive-timeout-s 1 an idle
#                     keep-alive connection after 0.8-4 s. With
#                     --max-connections 50, 60 idle connections are logged as
#                     evicted or refused, and a scrape answers 200.
#   4 port taken      a second exporter on the first one's ops port exits
#                     non-zero within 5 s naming 127.0.0.1:PORT and "Address
#                     already in use"; the first answers 10 of 10 scrapes.
#   5 pipelining      50 requests in one send(), alternating /metrics and
#                     /nope: 50 complete answers 200,404,200,... in order.
#   6 smuggling       a body that is a request (GET /smuggled), framed by
#                     "Content-Length: 0" + "Content-Length: 43", by
#                     "Content-Length : 43", or by chunked Transfer-Encoding:
#                     one answer (400, 400, 413), the connection closed, the
#                     smuggled request never answered.
#   7 many ranges     500 whole-body ranges in a ~3.5 KB head: one 200 the
#                     size of a plain scrape (the ratio is printed).
#   8 refused         with 2,000 idle connections open, 1,000 GET /nope on 4
#                     keep-alive connections all answer 404 within 10 s and
#                     cost the exporter under 1 s of CPU in all.
#
# What it expects of the exporter (issue 10's server on Boost.Beast): the
# flags --threads, --header-timeout-ms, --keep-alive-timeout-s and
# --max-connections, each given only where a check needs it, and log lines
# "event=connection_evicted" or "event=connection_refused" with role=ROLE and
# count=N. A server that drains a refused head (a lingering close) before
# closing fails section 2: it reads what it refused.
#
# Against today's exporter (cpp-httplib 0.11.4, 2 CPUs; 31 checks there, as
# the two sections whose flag it lacks count one failure each) 22 fail: 206
# with Content-Length 100000001 and, with --threads 2, both threads spinning
# (the scrape times out; 1-4 s of CPU in 2 s, as the shared CPUs allow); each
# flood is read until the client stops it at +64 MiB of exporter RSS (~11.7
# MB of small headers, 34-64 MB of the line, 9-31 MB per 512 MB line; VmHWM
# 175-257 MB); with 2,000 idle or 64 slow clients no scrape answers within
# 5 s; --header-timeout-ms and --max-connections are unknown (exit 2); 1 of
# 50 pipelined requests is answered; both Content-Length forms answer 200,
# then the smuggled request 404; 500 ranges answer a 1.59 MB multipart 206
# (523x); none of the 1,000 refused requests is answered behind the idle
# connections (so their CPU per request is not measured there). 9 pass, and why:
# a scrape after the floods (the old server answers once they end), the
# client's 2,000 connections open (a precondition), VmHWM with idle or slow
# clients (they hold threads, not memory), the idle keep-alive timeout
# (cpp-httplib honours it on a connection it serves), the three checks of a
# second exporter on a taken port (the exporter binds its own socket without
# SO_REUSEPORT since the defects issue), and chunked Transfer-Encoding (413
# and closed by the pre-routing handler). The run takes 85-105 s there.
#
# A sanitizer build is skipped (exit 77): its RSS and CPU say nothing about
# the exporter. So is a machine whose hard limit on open files is under 4,500;
# the soft limit is raised to the hard one here, for the exporter too.
# Prints "ok: ..." / "FAIL: ..." per check with what was measured, and a final
# "N passed, N failed"; exits 0 only when nothing failed.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=script_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/script_lib.sh"
take_script_args "$@"
CLIENT=$HERE/http_abuse_client.py
STOP_SECONDS=3                # an exporter with a spinning thread is killed, not waited for
REQUEST_SECONDS=5             # a plain scrape
RSS_LIMIT_KB=$((64 * 1024))   # the issue's bar for RSS under abuse
HEAD_BYTES_BOUND=$((2 << 20)) # bytes a client may push before a refused head is cut
SIZE_SLACK=16                 # bytes the exporter's own samples may move between scrapes
FDS_NEEDED=4500               # 2,000 sockets on each side, and the rest

# ldd's whole output first: grep -q stops at the first match, and under
# pipefail ldd's SIGPIPE would make the pipeline fail.
if grep -Eq 'lib(a|t|ub|l)san' <<<"$(ldd "$EXPORTER" 2>/dev/null || true)"; then
  echo "skipped: $EXPORTER is a sanitizer build; its RSS and CPU time say nothing about the exporter"
  exit 77
fi
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$FDS_NEEDED" ]; then
  echo "skipped: the hard limit on open files is $(ulimit -Hn); 2,000 connections need $FDS_NEEDED"
  exit 77
fi
ulimit -n "$(ulimit -Hn)"

begin_test_run abuse
command -v curl >/dev/null || die "curl not found"
[ -x "$PYTHON" ] || die "$PYTHON not found"
[ -r "$CLIENT" ] || die "$CLIENT not found"

# ---------------------------------------------------------------- helpers

# cpu_ms PID: the process's user + system CPU time so far, in ms; 0 when gone.
CLOCK_TICKS=$(getconf CLK_TCK)
cpu_ms() {
  { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null || true; } |
    awk -v hz="$CLOCK_TICKS" '{ms = int(($12 + $13) * 1000 / hz)} END {print ms + 0}'
}

# status_kb PID FIELD: a kB field of /proc/PID/status (VmRSS, VmHWM); 0 when gone.
status_kb() {
  awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# client NAME SUBCOMMAND ARGS...: one attack, to its end; its output in
# $WORK/NAME.out, shown as "measured" lines.
client() {
  local name=$1
  shift
  "$PYTHON" "$CLIENT" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" ||
    fail "the client's $1 exited with status $?: $(tail -n 3 "$WORK/$name.err")"
  sed "s/^/  measured ($name): /" "$WORK/$name.out"
}

# client_bg NAME SUBCOMMAND ARGS...: an attack that holds on (idle, trickle)
# in the background, once it printed "ready"; $CLIENT_PID. stop_client shows
# what it measured.
client_bg() {
  local name=$1
  shift
  start_bg "$name" "$PYTHON" "$CLIENT" "$@"
  CLIENT_PID=$BG_PID
  poll_until "$POLL_SECONDS" grep -q '^ready' "$WORK/$name.out" ||
    fail "the client's $1 did not get ready within ${POLL_SECONDS}s: $(tail -n 3 "$WORK/$name.err")"
  sed "s/^/  measured ($name): /" "$WORK/$name.out"
}
stop_client() {
  stop_process "$CLIENT_PID" "$STOP_SECONDS"
  grep -v '^ready' "$WORK/$1.out" | sed "s/^/  measured ($1): /" || true
}

# kv NAME KEY: the value of KEY=VALUE in the last line of $WORK/NAME.out
# that has it ("" when none has).
kv() {
  { grep -oE "(^| )$2=[^ ]*" "$WORK/$1.out" || true; } | tail -n 1 | sed 's/^ //; s/^[^=]*=//; s/"//g'
}

# plain_scrape NAME: GET ops /metrics with curl; $HTTP_STATUS, $SCRAPE_BYTES,
# $SCRAPE_MS.
plain_scrape() {
  local start
  start=$(date +%s%N)
  http_request "$1" "$OPS_PORT" /metrics
  SCRAPE_MS=$((($(date +%s%N) - start) / 1000000))
  SCRAPE_BYTES=$(stat -c %s "$WORK/$1.body" 2>/dev/null || echo 0)
}

# near A B: A and B differ by at most SIZE_SLACK.
near() {
  local d=$(($1 - $2))
  [ "${d#-}" -le "$SIZE_SLACK" ]
}
# between LOW X HIGH: LOW <= X <= HIGH for decimals ("" is not).
between() { [ -n "$2" ] && awk -v lo="$1" -v x="$2" -v hi="$3" 'BEGIN {exit !(lo <= x && x <= hi)}'; }

# flood_cut NAME: every connection of the flood NAME was answered (431 or
# another 4xx) or closed, after at most HEAD_BYTES_BOUND bytes.
flood_cut() {
  awk -v bound="$HEAD_BYTES_BOUND" '/^connection=/ {
      n++
      split($2, sent, "="); split($3, outcome, "=")
      if (sent[2] > bound || outcome[2] !~ /^(answered_HTTP\/1\.[01]_4|closed|reset)/) bad++
    } END {exit !(n > 0 && bad == 0)}' "$WORK/$1.out"
}
# flood_summary NAME: what the flood NAME saw, for a check's message.
flood_summary() {
  local outcomes
  outcomes=$(grep -o 'outcome=[^ ]*' "$WORK/$1.out" | sed 's/outcome=//' | sort | uniq -c | awk '{printf "%s%sx %s", s, $1, $2; s=", "}')
  echo "most accepted $(kv "$1" max_sent_bytes) bytes, outcomes: $outcomes, stopped: $(kv "$1" stopped)"
}

# exporter_flag_missing NAME FLAG: a check about FLAG that cannot run, with
# what the exporter said.
exporter_flag_missing() {
  fail "$2: not measured, the exporter did not start with it: $(head -n 1 "$WORK/$1.err")"
  stop_process "$EXPORTER_PID" "$STOP_SECONDS"
}

# One fixed exposition: the writer fills the segment and stops.
start_demo_writer writer ops 2
poll_until "$POLL_SECONDS" grep -q 'event=ready' "$WORK/writer.err" || die "the demo writer did not get ready"
sleep 0.5
stop_process "$BG_PID" "$STOP_SECONDS"

# ------------------------------------------------------------- 1 Range
echo "--- 1: Range: bytes=0-100000000"
start_exporter exporter-range --threads 2
plain_scrape range-plain
plain_bytes=$SCRAPE_BYTES
echo "  measured: a plain scrape: $HTTP_STATUS, $plain_bytes bytes"
client range range "$OPS_PORT"
status=$(kv range status)
length=$(kv range content_length)
sent=$(kv range body_bytes)
check "Range is ignored: 200 (got $status, Content-Range $(kv range content_range))" [ "$status" = 200 ]
check "Range: Content-Length ($length) is the body sent ($sent bytes)" [ "$length" = "$sent" ]
check "Range: Content-Length ($length) is a plain scrape's ($plain_bytes bytes)" near "${length:-0}" "$plain_bytes"
client range-leave range "$OPS_PORT" --count 8 --head-only
plain_scrape range-after
check "with --threads 2, a scrape after 9 Range requests answers 200 (got $HTTP_STATUS after $SCRAPE_MS ms)" \
  [ "$HTTP_STATUS" = 200 ]
cpu_before=$(cpu_ms "$EXPORTER_PID")
sleep 2
range_cpu=$(($(cpu_ms "$EXPORTER_PID") - cpu_before))
check "the exporter spends under 500 ms of CPU in the 2 s after the Range requests (spent $range_cpu ms)" \
  [ "$range_cpu" -lt 500 ]
stop_process "$EXPORTER_PID" "$STOP_SECONDS"

# --------------------------------------------------------- 2 big heads
echo "--- 2: large request heads"
start_exporter exporter-heads
flood() { # flood NAME SUBCOMMAND BYTES [CONNECTIONS]
  client "$1" "$2" "$OPS_PORT" --bytes "$3" --connections "${4:-1}" --seconds 20 \
    --pid "$EXPORTER_PID" --rss-growth-kb "$RSS_LIMIT_KB"
}
flood flood64 flood-headers $((64 << 20))
check "64 MB of small header lines: 431 or closed within $HEAD_BYTES_BOUND bytes ($(flood_summary flood64))" \
  flood_cut flood64
flood line64 long-line $((64 << 20))
check "one 64 MB header line: 431 or closed within $HEAD_BYTES_BOUND bytes ($(flood_summary line64))" \
  flood_cut line64
flood line512x3 long-line $((512 << 20)) 3
check "3 header lines of 512 MB at once: each 431 or closed within $HEAD_BYTES_BOUND bytes ($(flood_summary line512x3))" \
  flood_cut line512x3
peak_kb=$(status_kb "$EXPORTER_PID" VmHWM)
check "after the large heads the exporter's VmHWM ($peak_kb kB) is under $RSS_LIMIT_KB kB" \
  [ "$peak_kb" -lt "$RSS_LIMIT_KB" ]
plain_scrape heads-after
check "after the large heads a scrape answers 200 (got $HTTP_STATUS, $SCRAPE_BYTES bytes, $SCRAPE_MS ms)" \
  [ "$HTTP_STATUS" = 200 ]
stop_process "$EXPORTER_PID" "$STOP_SECONDS"

# --------------------------------------------------------- 3 idle, slow
# scrapes_hold SUBJECT: a scrape on a new connection, then 100 scrapes each
# within 2 s, and the exporter's peak RSS, while SUBJECT holds on.
scrapes_hold() {
  plain_scrape first
  check "with $1, a scrape on a new connection answers 200 (got $HTTP_STATUS after $SCRAPE_MS ms)" \
    [ "$HTTP_STATUS" = 200 ]
  client scrapes scrapes "$OPS_PORT" --count 100 --timeout 2 --give-up-after 5
  local times
  times="p50 $(kv scrapes p50_ms) ms, p99 $(kv scrapes p99_ms) ms, max $(kv scrapes max_ms) ms"
  check "with $1, 100 scrapes each answer 200 within 2 s (ok $(kv scrapes ok) of $(kv scrapes scrapes) tried; $times)" \
    [ "$(kv scrapes ok)" = 100 ]
  local peak
  peak=$(status_kb "$EXPORTER_PID" VmHWM)
  check "with $1, the exporter's VmHWM ($peak kB) is under $RSS_LIMIT_KB kB" [ "$peak" -lt "$RSS_LIMIT_KB" ]
}

echo "--- 3: idle and slow clients"
start_exporter exporter-idle
client_bg idle2000 idle "$OPS_PORT" 2000 --hold 60
check "the client opened 2,000 idle connections (opened $(kv idle2000 opened), failed $(kv idle2000 failed))" \
  [ "$(kv idle2000 opened)" = 2000 ]
scrapes_hold "2,000 idle connections"
stop_client idle2000
stop_process "$EXPORTER_PID" "$STOP_SECONDS"

start_exporter exporter-slow
client_bg trickle64 trickle "$OPS_PORT" 64 --interval 2 --hold 60 --reconnect
sleep 1 # every slow client has sent its first byte
scrapes_hold "64 clients trickling a byte every 2 s"
stop_client trickle64
stop_process "$EXPORTER_PID" "$STOP_SECONDS"

# All three at once, as the issue asks: 2,000 idle connections, 64 slow
# clients and a client sending 64 MB of headers again and again (each cut
# after a few KiB). --max-connections 4096 admits them all, so nothing is
# evicted and the scrapes compete with every one of them.
echo "--- 3b: idle, slow and a header flood at once"
start_exporter exporter-all --max-connections 4096
client_bg idle-all idle "$OPS_PORT" 2000 --hold 90
IDLE_ALL_PID=$CLIENT_PID
client_bg trickle-all trickle "$OPS_PORT" 64 --interval 2 --hold 90 --reconnect
TRICKLE_ALL_PID=$CLIENT_PID
# shellcheck disable=SC2016 # expanded by the inner shell
start_bg flood-all bash -c 'while :; do "$0" "$1" flood-headers "$2" --bytes $((64 << 20)) --seconds 20 || exit 1; done' \
  "$PYTHON" "$CLIENT" "$OPS_PORT"
FLOOD_ALL_PID=$BG_PID
poll_until "$POLL_SECONDS" grep -q '^connection=' "$WORK/flood-all.out" ||
  fail "the header flood did not start within ${POLL_SECONDS}s: $(tail -n 3 "$WORK/flood-all.err")"
scrapes_hold "2,000 idle connections, 64 slow clients and a 64 MB header flood at once"
check "the header flood was still running during the scrapes" alive "$FLOOD_ALL_PID"
floods=$(grep -c '^connection=' "$WORK/flood-all.out" || true)
echo "  measured (flood-all): $floods flood connections, each cut; the last: $(grep '^connection=' "$WORK/flood-all.out" | tail -n 1)"
stop_process "$FLOOD_ALL_PID" "$STOP_SECONDS"
CLIENT_PID=$TRICKLE_ALL_PID
stop_client trickle-all
CLIENT_PID=$IDLE_ALL_PID
stop_client idle-all
stop_process "$EXPORTER_PID" "$STOP_SECONDS"

if try_start_exporter exporter-deadline --header-timeout-ms 1000; then
  client trickle1 trickle "$OPS_PORT" 1 --interval 0.5 --hold 6
  cut=$(kv trickle1 cut_after_seconds_min/median/max | cut -d/ -f1)
  check "with --header-timeout-ms 1000 a client sending a byte every 0.5 s is cut after 0.8-4 s (after ${cut:-never} s of 6)" \
    between 0.8 "${cut/none/}" 4
  client idle1 idle "$OPS_PORT" 1 --hold 6
  closed=$(kv idle1 close_seconds_min/median/max | cut -d/ -f1)
  check "with --header-timeout-ms 1000 a connection that sends nothing is closed after 0.8-4 s (after ${closed:-never} s of 6)" \
    between 0.8 "${closed/none/}" 4
  stop_process "$EXPORTER_PID" "$STOP_SECONDS"
else
  exporter_flag_missing exporter-deadline "--header-timeout-ms 1000 cuts a trickling client and a silent connection"
fi

start_exporter exporter-keepalive --keep-alive-timeout-s 1
client keepalive keep-alive "$OPS_PORT" --wait 6
idle_closed=
[ "$(kv keepalive closed)" != yes ] || idle_closed=$(kv keepalive idle_seconds)
check "with --keep-alive-timeout-s 1 an idle keep-alive connection is closed after 0.8-4 s (status $(kv keepalive status), closed $(kv keepalive closed) after $(kv keepalive idle_seconds) s)" \
  between 0.8 "$idle_closed" 4
stop_process "$EXPORTER_PID" "$STOP_SECONDS"

if try_start_exporter exporter-limit --max-connections 50; then
  client_bg idle60 idle "$OPS_PORT" 60 --hold 30
  over_limit_logged() {
    grep -E 'event=connection_(evicted|refused)' "$EXPORTER_LOG" | grep 'role=ops' | grep -qE 'count=[1-9]'
  }
  poll_until 10 over_limit_logged || true
  logged=$(grep -oE 'event=connection_(evicted|refused).*' "$EXPORTER_LOG" | tail -n 1 || true)
  check "with --max-connections 50 and 60 idle connections, the log says event=connection_evicted or connection_refused with role=ops and count=N (logged: ${logged:-nothing})" \
    over_limit_logged
  plain_scrape limit-scrape
  check "with --max-connections 50 and 60 idle connections a scrape answers 200 (got $HTTP_STATUS after $SCRAPE_MS ms)" \
    [ "$HTTP_STATUS" = 200 ]
  stop_client idle60
  stop_process "$EXPORTER_PID" "$STOP_SECONDS"
else
  exporter_flag_missing exporter-limit "--max-connections 50 evicts or refuses connections over it"
fi

# ------------------------------------------------ 4-7 on one exporter
start_exporter exporter-protocol

echo "--- 4: a second exporter on a port in use"
start_bg second "$EXPORTER" --instance "$INSTANCE" --ops-listen "127.0.0.1:$OPS_PORT" --judge-listen 127.0.0.1:0
second_pid=$BG_PID
poll_until 5 process_gone "$second_pid" || true
if alive "$second_pid"; then
  fail "a second exporter on 127.0.0.1:$OPS_PORT is still running after 5 s"
  client second-scrapes scrapes "$OPS_PORT" --count 10 --timeout 2
  stop_process "$second_pid" "$STOP_SECONDS"
else
  stop_process "$second_pid" "$STOP_SECONDS"
  check "a second exporter on 127.0.0.1:$OPS_PORT exits non-zero (status $STOP_RC)" [ "$STOP_RC" != 0 ]
  check "its error names 127.0.0.1:$OPS_PORT and \"Address already in use\" ($(head -n 1 "$WORK/second.err"))" \
    grep -q "127\.0\.0\.1:$OPS_PORT.*Address already in use" "$WORK/second.err"
  client second-scrapes scrapes "$OPS_PORT" --count 10 --timeout 2
fi
check "the first exporter answers 10 of 10 scrapes after it (ok $(kv second-scrapes ok))" \
  [ "$(kv second-scrapes ok)" = 10 ]

echo "--- 5: pipelining"
client pipeline pipeline "$OPS_PORT" --count 50
got="answers $(kv pipeline answers), complete $(kv pipeline complete), in order $(kv pipeline in_order)"
check "50 pipelined requests get 50 complete answers in order ($got; the first: $(kv pipeline statuses))" \
  [ "$(kv pipeline answers)/$(kv pipeline complete)/$(kv pipeline in_order)" = 50/50/yes ]

echo "--- 6: request smuggling"
for kind in two-lengths:400 spaced-length:400 chunked:413; do
  name=smuggle-${kind%:*}
  client "$name" smuggle "$OPS_PORT" --kind "${kind%:*}"
  got="$(kv "$name" statuses)/$(kv "$name" closed)/$(kv "$name" smuggled_answered)"
  check "a body framed by ${kind%:*} gets one ${kind#*:}, then close; the smuggled request is never answered (answers/closed/smuggled answered: $got)" \
    [ "$got" = "${kind#*:}/yes/no" ]
done

echo "--- 7: many ranges"
client ranges many-ranges "$OPS_PORT" --ranges 500
ranges_bytes=$(kv ranges body_bytes)
ranges_plain=$(kv ranges plain_body_bytes)
check "500 ranges in a $(kv ranges head_bytes)-byte head get one 200 (got $(kv ranges status), $(kv ranges content_type))" \
  [ "$(kv ranges status)" = 200 ]
ratio=$(awk -v a="${ranges_bytes:-0}" -v b="${ranges_plain:-0}" 'BEGIN {printf "%.1f", b ? a / b : 0}')
check "500 ranges: the answer ($ranges_bytes bytes) is a plain scrape's ($ranges_plain bytes): ratio $ratio" \
  near "${ranges_bytes:-0}" "${ranges_plain:-0}"
stop_process "$EXPORTER_PID" "$STOP_SECONDS"

# ---------------------------------------------------------- 8 refused
echo "--- 8: refused requests with 2,000 connections open"
start_exporter exporter-refused
client_bg idle-refused idle "$OPS_PORT" 2000 --hold 60
cpu_before=$(cpu_ms "$EXPORTER_PID")
client refused refused "$OPS_PORT" --requests 1000 --connections 4 --seconds 10
refused_cpu=$(($(cpu_ms "$EXPORTER_PID") - cpu_before))
answered=$(kv refused answered)
check "1,000 GET /nope on 4 keep-alive connections all answer 404 (answered $answered: $(kv refused statuses), in $(kv refused seconds) s)" \
  [ "$(kv refused statuses)" = 1000x404 ]
per_request=$(awk -v c="$refused_cpu" -v n="${answered:-0}" 'BEGIN {if (n > 0) printf "%.3f ms", c / n; else printf "n/a"}')
check "1,000 refused requests cost the exporter under 1000 ms of CPU (spent $refused_cpu ms, $per_request per answered request)" \
  [ "$refused_cpu" -lt 1000 -a "${answered:-0}" -gt 0 ]
stop_client idle-refused
stop_process "$EXPORTER_PID" "$STOP_SECONDS"
