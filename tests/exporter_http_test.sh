#!/usr/bin/env bash
# exporter_http_test.sh EXPORTER DEMO_WRITER
#
# Starts the exporter with both listeners on 127.0.0.1:0 for a fresh instance
# whose segments do not exist yet, reads the chosen ports from its log and
# checks over HTTP: the segment-down answers, one segment_down log line per
# role however often it is scraped, the ops role coming up when a demo writer
# starts (the judge role staying down), which status each method and path
# gets (/ a landing page, /healthz and /-/ready 200 or 503 by the segment,
# 404 on an unknown path whatever the method, 405 on /metrics, 413 and
# a closed connection for a body), gzip and OpenMetrics as negotiated (the Accept headers of Prometheus 3 and 2.42, strict-parsed), noticing a removed and
# recreated segment, --help, --version, --flag=VALUE, an unknown flag, a
# listener on [::1]:0, a port in use named in the error, SIGHUP logged and
# ignored, and a clean stop on SIGTERM.
#
# Prints "ok: ..." / "FAIL: ..." / "SKIP: ..." per check and a final
# "N passed, N failed[, N skipped]"; exits 0 only when nothing failed. The
# [::1] check is skipped, and says so, where ::1 cannot be bound.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=script_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/script_lib.sh"
take_script_args "$@"
PARSE=$HERE/parse_exposition.py
CLIENT=$HERE/exporter_load_client.py
CONTENT_TYPE='text/plain; version=0.0.4; charset=utf-8'
ETAG=5bcdd633308d109fdad6fd5e6697406ea1182086da3c46b04633a63bbf2e2358
WORKERS=3            # first ops writer
WORKERS_AGAIN=2      # the writer that recreates the ops segment
SCRAPES=5
REQUEST_SECONDS=5    # curl --max-time of a request

begin_test_run test

# ------------------------------------------------------------------- helpers
# lacks_header NAME HEADER: HEADER is absent (and headers were received).
lacks_header() {
  [ -s "$WORK/$1.headers" ] && ! grep -qi "^$2:" "$WORK/$1.headers"
}

parse() {
  local file=$1
  shift
  "$PYTHON" "$PARSE" "$@" <"$file"
}

# count_log REGEX: lines of the exporter log matching the extended REGEX.
count_log() {
  { grep -cE "$1" "$EXPORTER_LOG" || true; }
}

# answered_down NAME ROLE: the http_request NAME was answered 200 with what a role
# whose segment is missing answers: only shmetrics_segment_up{role=ROLE} 0.
answered_down() {
  if [ "$HTTP_STATUS" != 200 ]; then
    echo "  status $HTTP_STATUS, want 200" >&2
    return 1
  fi
  parse "$WORK/$1.body" --exact-families --expect-family shmetrics_segment_up=gauge \
    --expect-family shmetrics_exporter_scrapes_total=counter --expect-family shmetrics_exporter_build_info=gauge \
    --expect-family shmetrics_exporter_scrape_duration_seconds=histogram \
    --expect-family process_cpu_seconds_total=counter --expect-family process_resident_memory_bytes=gauge \
    --expect-family process_virtual_memory_bytes=gauge --expect-family process_start_time_seconds=gauge \
    --expect-family process_open_fds=gauge --expect-family process_max_fds=gauge \
    --expect-sample "shmetrics_segment_up{role=\"$2\"}=0"
}

OPS_FAMILIES=(--expect-family rbac_reload_checks_total=counter --expect-family rbac_reload_hit_total=counter
  --expect-family rbac_allowed_total=counter --expect-family rbac_forbidden_total=counter
  --expect-family rbac_route_matches_total=counter --expect-family rbac_map_info=gauge
  --expect-family demo_inflight_requests=gauge --expect-family demo_request_duration_seconds=histogram
  --expect-family shmetrics_segment_up=gauge)

# ops_up_with N: the ops listener answers 200 with segment_up 1, every family
# of the demo writer, a moved checks counter and at least N reload hits.
ops_up_with() {
  http_request ops-poll "$OPS_PORT" /metrics
  [ "$HTTP_STATUS" = 200 ] || return 1
  parse "$WORK/ops-poll.body" "${OPS_FAMILIES[@]}" --expect-sample 'shmetrics_segment_up{role="ops"}=1' \
    --expect-min rbac_reload_checks_total=1 --expect-min "rbac_reload_hit_total=$1" 2>"$WORK/ops-poll.why"
}

# ---------------------------------------------------------------- preconditions
command -v curl >/dev/null || die "curl not found"
require_prometheus_parser
check "segments of instance $INSTANCE do not exist before the test" no_segments_exist

# ------------------------------------------------------- --help, unknown flag
rc=0
"$EXPORTER" --help >"$WORK/help.out" 2>"$WORK/help.err" || rc=$?
check "--help exits 0 (got $rc)" [ "$rc" -eq 0 ]
missing=
for flag in --instance --ops-listen --judge-listen --ops-segment --judge-segment --once --help; do
  grep -qe "$flag" "$WORK/help.out" || missing="$missing $flag"
done
check "--help on stdout mentions every flag (missing:${missing:- none})" [ -z "$missing" ]

rc=0
"$EXPORTER" --no-such-flag >"$WORK/badflag.out" 2>"$WORK/badflag.err" || rc=$?
check "an unknown flag exits 2 (got $rc)" [ "$rc" -eq 2 ]
check "an unknown flag is named in a message on stderr" grep -q -e '--no-such-flag' "$WORK/badflag.err"

# ------------------------------------------------------------------ --version
# The versions it must print, from where they are defined.
project_version=$(sed -n "s/^  version : '\([^']*\)',\$/\1/p" "$HERE/../meson.build" | head -n 1)
layout_version=$(sed -n 's/.*kLayoutVersion = \([0-9]*\);.*/\1/p' "$HERE/../shm/include/shmetrics/shm/layout.h")
if [ -z "$project_version" ] || [ -z "$layout_version" ]; then
  die "cannot read the project version from meson.build ('$project_version') or kLayoutVersion from layout.h ('$layout_version')"
fi
want_version="shmetrics-exporter $project_version (segment layout $layout_version)"
rc=0
"$EXPORTER" --version >"$WORK/version.out" 2>"$WORK/version.err" || rc=$?
check "--version exits 0 (got $rc)" [ "$rc" -eq 0 ]
check "--version prints exactly '$want_version' (got '$(cat "$WORK/version.out")')" \
  [ "$(cat "$WORK/version.out")" = "$want_version" ]
check "--help mentions --version" grep -qe --version "$WORK/help.out"

# ------------------------------------------------------------- --flag=VALUE
# usage_error_of NAME ARGS...: runs the exporter with ARGS, which must be
# refused: exit status 2, the message in $WORK/NAME.err. Should ARGS be
# accepted, it listens on free ports only and is stopped.
usage_error_of() {
  local name=$1 rc=0
  shift
  local listen=() flag
  for flag in --ops-listen --judge-listen; do  # free ports, unless ARGS give the flag (twice is refused)
    [[ " $* " == *" $flag "* ]] || listen+=("$flag" 127.0.0.1:0)
  done
  local instance=(--instance "$INSTANCE")  # unless ARGS give it (twice is refused)
  [[ " $* " == *" --instance "* ]] && instance=()
  timeout "$STOP_SECONDS" "$EXPORTER" "${instance[@]}" "${listen[@]}" "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
  [ "$rc" -eq 2 ] && [ -s "$WORK/$name.err" ]
}
same_message() { [ -s "$WORK/$1.err" ] && cmp -s "$WORK/$1.err" "$WORK/$2.err"; }

check "--threads=0 is refused with exit 2" usage_error_of threads-eq --threads=0
usage_error_of threads-sp --threads 0 || true
check "--threads=0 gets the same message as --threads 0 ($(head -n 1 "$WORK/threads-eq.err"))" \
  same_message threads-eq threads-sp
check "--threads= (empty) is refused with exit 2" usage_error_of threads-empty-eq --threads=
usage_error_of threads-empty-sp --threads '' || true
check "--threads= gets the same message as --threads '' ($(head -n 1 "$WORK/threads-empty-eq.err"))" \
  same_message threads-empty-eq threads-empty-sp
check "--threads= says the value is empty" grep -q -e '--threads has an empty value' "$WORK/threads-empty-eq.err"
check "--accept-foreign-owner=yes is refused with exit 2" usage_error_of bool-eq --accept-foreign-owner=yes
check "--accept-foreign-owner=yes is told that the flag takes no value ($(head -n 1 "$WORK/bool-eq.err"))" \
  grep -q -e '--accept-foreign-owner takes no value' "$WORK/bool-eq.err"
check "--help=x is refused with exit 2 rather than printing the help" usage_error_of help-eq --help=x
check "--segment-owner of an unknown user is refused with exit 2" usage_error_of owner-unknown --segment-owner no-such-user-shm
check "... naming the user ($(head -n 1 "$WORK/owner-unknown.err"))" \
  grep -q -e '--segment-owner "no-such-user-shm" is invalid: expected a user name' "$WORK/owner-unknown.err"
check "--segment-owner with --accept-foreign-owner is refused with exit 2" \
  usage_error_of owner-both --segment-owner=nobody --accept-foreign-owner
check "... as a contradiction" grep -q 'contradict each other' "$WORK/owner-both.err"
check "--ops-listen ::1:0 (unbracketed IPv6) is refused with exit 2" usage_error_of ipv6-bare --ops-listen ::1:0
check "--ops-listen ::1:0 is told to bracket the address ($(head -n 1 "$WORK/ipv6-bare.err"))" \
  grep -q 'IPv6 address goes in brackets, as in \[::1\]:' "$WORK/ipv6-bare.err"
check "--ops-listen [localhost]:0 (a name in brackets) is refused with exit 2" \
  usage_error_of name-bracketed --ops-listen '[localhost]:0'
# An IPv6 zone passes the parser (fe80::1 is not on lo here: bind fails, exit 1).
rc=0
timeout "$STOP_SECONDS" "$EXPORTER" --instance "$INSTANCE" --ops-listen '[fe80::1%lo]:0' --judge-listen 127.0.0.1:0 \
  >"$WORK/zone.out" 2>"$WORK/zone.err" || rc=$?
check "--ops-listen [fe80::1%lo]:0 (an IPv6 zone) is not a usage error (exit $rc: $(tail -n 1 "$WORK/zone.err"))" \
  bash -c "[ $rc != 2 ] && ! grep -q 'is invalid' '$WORK/zone.err'"
check "--ops-listen [127.0.0.1]:0 (IPv4 in brackets) is refused with exit 2" \
  usage_error_of ipv4-bracketed --ops-listen '[127.0.0.1]:0'
check "... as not an IPv6 address ($(head -n 1 "$WORK/ipv4-bracketed.err"))" \
  grep -qF '"127.0.0.1" in brackets is not an IPv6 address' "$WORK/ipv4-bracketed.err"
# A flag where a value belongs is a forgotten value, not a value: `--role
# --openmetrics-created` would otherwise serve a role named so, the flag
# unapplied. (--role, --once and --segment-dir would exit 2 anyway, for other
# reasons: the message check is the one that fails if the refusal goes;
# --instance would start and --web.config.file exit 1.)
for taker in --role --instance --once --segment-dir --web.config.file; do
  check "$taker followed by --openmetrics-created is refused with exit 2" \
    usage_error_of "flag-as-value$taker" "$taker" --openmetrics-created
  check "... saying the next argument is a flag ($(head -n 1 "$WORK/flag-as-value$taker.err"))" \
    grep -qF -e "$taker needs a value, but the next argument \"--openmetrics-created\" is a flag" \
    "$WORK/flag-as-value$taker.err"
done
check "--instance -h is refused as a flag too, not printing the help" usage_error_of instance-h --instance -h
# A number is decimal digits: strtol's leading blanks and '+' are refused.
for number in " 4" "+4" $'\t4' "4 " "0x4"; do
  check "--threads '$number' is refused with exit 2" usage_error_of "threads-number" --threads "$number"
  check "... as not an integer of digits from 1 to 256" grep -qF 'is invalid: expected an integer (decimal digits only) from 1 to 256' "$WORK/threads-number.err"
done
# What a usage error quotes reaches a terminal: no control character, no 64 KiB.
check "--threads with an ESC sequence and 64 KiB is refused with exit 2" \
  usage_error_of threads-wild --threads "$(printf '\033[31m')$(head -c 65536 /dev/zero | tr '\0' 7)"
check "... in a message of at most 2 KiB without an ESC byte, still saying what was expected ($(wc -c <"$WORK/threads-wild.err") bytes)" \
  bash -c "[ \$(wc -c <'$WORK/threads-wild.err') -le 2048 ] && ! grep -q \$'\\033' '$WORK/threads-wild.err' && grep -qF 'x1b[31m' '$WORK/threads-wild.err' && grep -qF 'from 1 to 256' '$WORK/threads-wild.err'"
# A flag of one value given twice is refused, not replaced: a second
# --web.config.file would otherwise drop the first one's basic auth unsaid.
for twice in "--web.config.file /nonexistent-a.yml --web.config.file=/nonexistent-b.yml" \
  "--instance a --instance b" "--threads 2 --threads=3" "--max-scrape-bytes 65536 --max-scrape-bytes 65537" \
  "--segment-dir /tmp --segment-dir /tmp" "--segment-owner 0 --segment-owner 0"; do
  flag=${twice%% *}
  # shellcheck disable=SC2086 # the words of $twice are the arguments
  check "$twice is refused with exit 2" usage_error_of "twice$flag" $twice
  check "... saying $flag is given twice ($(head -n 1 "$WORK/twice$flag.err"))" \
    grep -qF -e "$flag is given twice: give it once" "$WORK/twice$flag.err"
done

# ------------------------------------------------------------ start exporter
start_exporter exporter
check "exporter logged a distinct listening port per role on 127.0.0.1 (ops $OPS_PORT, judge $JUDGE_PORT)" \
  test -n "$OPS_PORT" -a -n "$JUDGE_PORT" -a "$OPS_PORT" != "$JUDGE_PORT"
# The default --threads: the CPUs it may run on, at most 4.
cpus=$("$PYTHON" -c 'import os; print(len(os.sched_getaffinity(0)))')  # not nproc: it heeds OMP_NUM_THREADS
want_threads=$((cpus < 4 ? cpus : 4))
poll_until "$POLL_SECONDS" grep -q 'event=serving' "$EXPORTER_LOG" || true
check "with $cpus CPUs the exporter serves with $want_threads threads ($(grep -o 'event=serving.*' "$EXPORTER_LOG"))" \
  grep -q "event=serving threads=$want_threads\$" "$EXPORTER_LOG"
start_bg exporter-pinned taskset -c "$(taskset -pc $$ | sed 's/.*: //; s/[-,].*//')" "$EXPORTER" \
  --instance "$INSTANCE-pinned" --ops-listen 127.0.0.1:0 --judge-listen 127.0.0.1:0
pinned_pid=$BG_PID
poll_until "$POLL_SECONDS" grep -q 'event=serving' "$WORK/exporter-pinned.err" || true
check "pinned to one CPU by taskset, the exporter serves with 1 thread ($(grep -o 'event=serving.*' "$WORK/exporter-pinned.err"))" \
  grep -q 'event=serving threads=1$' "$WORK/exporter-pinned.err"
stop_process "$pinned_pid" "$STOP_SECONDS"

# ------------------------------------------------ both segments missing: down
for role in ops judge; do
  if [ "$role" = ops ]; then port=$OPS_PORT; else port=$JUDGE_PORT; fi
  http_request "down-$role" "$port" /metrics
  check "$role /metrics answers 200 while its segment is missing (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 200 ]
  ct=$(header "down-$role" Content-Type)
  check "$role /metrics Content-Type is exactly '$CONTENT_TYPE' (got '$ct')" [ "$ct" = "$CONTENT_TYPE" ]
  check "$role /metrics shows only shmetrics_segment_up{role=\"$role\"} 0" answered_down "down-$role" "$role"
  for ((i = 2; i <= SCRAPES; i++)); do
    http_request "down-$role-$i" "$port" /metrics
    check "$role scrape $i of $SCRAPES answers 200 with only segment_up 0" answered_down "down-$role-$i" "$role"
  done
done
for role in ops judge; do
  pattern="event=segment_down role=$role .*reason="
  poll_until "$POLL_SECONDS" grep -qE "$pattern" "$EXPORTER_LOG" || true
  n=$(count_log "$pattern")
  check "exporter logged segment_down with a reason once for $role over $SCRAPES scrapes (got $n lines)" [ "$n" -eq 1 ]
done

# --------------------------------------------------- ops writer: ops comes up
start_demo_writer writer1 ops "$WORKERS"
WRITER_PID=$BG_PID
if poll_until "$POLL_SECONDS" ops_up_with "$WORKERS"; then
  pass "ops /metrics shows shmetrics_segment_up{role=\"ops\"} 1 and the writer's families"
else
  die "ops /metrics did not come up within ${POLL_SECONDS}s of starting the writer: $(cat "$WORK/ops-poll.why" 2>/dev/null)"
fi
http_request ops-up "$OPS_PORT" /metrics
check "ops /metrics answers 200 with the segment up (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 200 ]
ct=$(header ops-up Content-Type)
check "ops /metrics Content-Type with data is exactly '$CONTENT_TYPE' (got '$ct')" [ "$ct" = "$CONTENT_TYPE" ]
check "ops /metrics: families, rbac_reload_hit_total == $WORKERS, map info, no judge families" \
  parse "$WORK/ops-up.body" "${OPS_FAMILIES[@]}" \
  --expect-sample 'shmetrics_segment_up{role="ops"}=1' \
  --expect-sample "rbac_reload_hit_total=$WORKERS" \
  --expect-min rbac_allowed_total=0 \
  --expect-sample "rbac_map_info{etag=\"$ETAG\"}=1" \
  --expect-absent readyz_checks_total --expect-absent readyz_failures_total
check "exporter logged segment_opened for ops" grep -qE 'event=segment_opened role=ops ' "$EXPORTER_LOG"

http_request judge-still-down "$JUDGE_PORT" /metrics
check "judge /metrics still shows only segment_up{role=\"judge\"} 0 with the ops writer running" \
  answered_down judge-still-down judge

# -------------------------------------------------------------- unknown path
for role in ops judge; do
  if [ "$role" = ops ]; then port=$OPS_PORT; else port=$JUDGE_PORT; fi
  http_request "nope-$role" "$port" /nope
  check "$role GET /nope answers 404 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 404 ]
done

# The landing page and the health checks: the judge segment is missing.
http_request landing "$OPS_PORT" /
check "GET / answers 200 text/html (got $HTTP_STATUS, '$(header landing Content-Type)')" \
  [ "$HTTP_STATUS:$(header landing Content-Type)" = "200:text/html; charset=utf-8" ]
landing_says() {
  grep -qF 'Role <b>ops</b>' "$WORK/landing.body" && grep -qF 'href="/metrics"' "$WORK/landing.body" &&
    grep -qF "Version $project_version, segment layout $layout_version." "$WORK/landing.body"
}
check "GET / names the role, links /metrics and gives the versions" landing_says
for path in /healthz /-/ready; do
  http_request "health-ops" "$OPS_PORT" "$path"
  check "ops GET $path answers 200 with its segment attached (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 200 ]
  http_request "health-judge" "$JUDGE_PORT" "$path"
  check "judge GET $path answers 503 without its segment (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 503 ]
  check "... naming why ($(head -c 120 "$WORK/health-judge.body"))" grep -q 'does not exist' "$WORK/health-judge.body"
done
http_request health-post "$OPS_PORT" /healthz -X POST
check "POST /healthz answers 405 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 405 ]

# The rules the README states: any path but /metrics is 404 whatever the
# method, another method than GET/HEAD on /metrics 405, a body 413 first.
http_request nope-head "$OPS_PORT" /nope --head
check "HEAD /nope answers 404 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 404 ]
for method in POST PUT PATCH DELETE OPTIONS; do
  http_request "nope-$method" "$OPS_PORT" /nope -X "$method"
  check "$method /nope without a body answers 404 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 404 ]
done
http_request post-metrics "$OPS_PORT" /metrics -X POST
check "POST /metrics without a body answers 405 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 405 ]
check "POST /metrics without a body names GET, HEAD in its Allow header (got '$(header post-metrics Allow)')" \
  [ "$(header post-metrics Allow)" = "GET, HEAD" ]
for method in POST PUT PATCH; do
  http_request "body-$method" "$OPS_PORT" /metrics -X "$method" --data 'x=1'
  check "$method /metrics with a body answers 413 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 413 ]
  check "$method /metrics with a body is answered Connection: close (got '$(header "body-$method" Connection)')" \
    [ "$(header "body-$method" Connection)" = close ]
done
http_request body-nope "$OPS_PORT" /nope -X PUT --data 'x=1'
check "PUT /nope with a body answers 413 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 413 ]
# The server must close the connection itself, at once (its keep-alive
# timeout is 5 s), without reading the body as a request of its own.
if "$PYTHON" "$CLIENT" smuggle "$OPS_PORT" --method POST --timeout 2 >"$WORK/smuggle.out" 2>"$WORK/smuggle.err" &&
  grep -q 'first="HTTP/1.1 413 ' "$WORK/smuggle.out"; then
  pass "POST /metrics with a body: one 413 answer, then the server closes the connection"
else
  fail "POST /metrics with a body: want one 413 answer and the connection closed, got: $(cat "$WORK/smuggle.out" "$WORK/smuggle.err")"
fi

# ------------------------------------- a second exporter: [::1], --flag=VALUE
# Its ops role on [::1]:0 where ::1 can be bound, and every flag as
# --flag=VALUE; its judge role on 127.0.0.1:0.
ipv6_loopback() {
  "$PYTHON" -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>"$WORK/ipv6.err"
}
if ipv6_loopback; then
  second_ops='[::1]:0'
else
  skip "the ops listener on [::1]:0: ::1 cannot be bound on this machine ($(tail -n 1 "$WORK/ipv6.err")); the second exporter uses 127.0.0.1:0"
  second_ops=127.0.0.1:0
fi
start_bg second "$EXPORTER" "--instance=$INSTANCE" "--ops-listen=$second_ops" --judge-listen=127.0.0.1:0 \
  --threads=2 --max-request-bytes=300 --openmetrics-created --no-openmetrics-created
SECOND_PID=$BG_PID
second_ops_address() {
  { grep -o 'event=listening role=ops address=[^ ]*:[1-9][0-9]*' "$WORK/second.err" || true; } |
    head -n 1 | sed 's/.*address=//'
}
second_ops_listening() { [ -n "$(second_ops_address)" ]; }  # evaluated at every poll
if poll_until "$POLL_SECONDS" second_ops_listening; then
  address=$(second_ops_address)
  pass "an exporter given every flag as --flag=VALUE, ops on $second_ops, logged its listener ($address)"
  if [ "$second_ops" = '[::1]:0' ]; then
    check "the ops listener of $second_ops is logged on [::1] (got $address)" grep -q '^\[::1\]:' <<<"$address"
  fi
  status=$(curl -sS -g --max-time "$REQUEST_SECONDS" -o "$WORK/second.body" -D "$WORK/second.headers" \
    -w '%{http_code}' "http://$address/metrics" 2>"$WORK/curl.err") || true
  check "ops /metrics on $address answers 200 (got ${status:-000})" [ "${status:-000}" = 200 ]
  check "ops /metrics on $address shows the ops role's segment up" \
    grep -q '^shmetrics_segment_up{role="ops"} 1$' "$WORK/second.body"
  status=$(curl -sS -g --max-time "$REQUEST_SECONDS" -o /dev/null -H "X-Pad: $(head -c 400 /dev/zero | tr '\0' a)" \
    -w '%{http_code}' "http://$address/metrics" 2>"$WORK/curl.err") || true
  check "--max-request-bytes=300 is in force on $address: a 400-byte header gets 431 (got ${status:-000})" \
    [ "${status:-000}" = 431 ]
  status=$(curl -sS -g --max-time "$REQUEST_SECONDS" -o "$WORK/second-om.body" \
    -H 'Accept: application/openmetrics-text;version=1.0.0' -w '%{http_code}' "http://$address/metrics" \
    2>"$WORK/curl.err") || true
  check "--openmetrics-created then --no-openmetrics-created: the last counts, no _created sample (got ${status:-000})" \
    bash -c "[ '${status:-000}' = 200 ] && grep -q '^rbac_allowed_total' '$WORK/second-om.body' && ! grep -q '_created' '$WORK/second-om.body'"
else
  fail "an exporter given every flag as --flag=VALUE, ops on $second_ops, did not log its listener within ${POLL_SECONDS}s: $(tail -n 3 "$WORK/second.err")"
fi
stop_process "$SECOND_PID" "$STOP_SECONDS"
check "the second exporter exits 0 on SIGTERM (got $STOP_RC)" [ "$STOP_RC" = 0 ]

# ------------------------------------------------------------ port in use
# A third exporter on the ops port of the first must fail, naming the address
# and the system's reason, not share the port.
start_bg in-use "$EXPORTER" --instance "$INSTANCE" --ops-listen "127.0.0.1:$OPS_PORT" --judge-listen 127.0.0.1:0
IN_USE_PID=$BG_PID
if poll_until "$STOP_SECONDS" process_gone "$IN_USE_PID"; then
  pass "an exporter on the ops port in use (127.0.0.1:$OPS_PORT) exits"
else
  fail "an exporter on the ops port in use (127.0.0.1:$OPS_PORT) still runs after ${STOP_SECONDS}s"
fi
stop_process "$IN_USE_PID" "$STOP_SECONDS"
check "an exporter on a port in use exits 1 (got $STOP_RC)" [ "$STOP_RC" = 1 ]
check "an exporter on a port in use logs 'cannot listen on 127.0.0.1:$OPS_PORT: Address already in use' ($(tail -n 1 "$WORK/in-use.err"))" \
  grep -q "event=listen_failed role=ops .*reason=\"cannot listen on 127\.0\.0\.1:$OPS_PORT: Address already in use\"" \
  "$WORK/in-use.err"

# ------------------------------------------- negotiation: encoding and format
# gzip when accepted; br alone gets identity (cpp-httplib's quality-11 br
# cost ~0.9 s per scrape: not offered).
http_request gzip "$OPS_PORT" /metrics -H 'Accept-Encoding: gzip, br'
check "ops /metrics with Accept-Encoding: gzip, br answers 200 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 200 ]
check "ops /metrics with Accept-Encoding: gzip, br has Content-Encoding: gzip (got '$(header gzip Content-Encoding)')" \
  [ "$(header gzip Content-Encoding)" = gzip ]
check "ops /metrics answers Vary: Accept, Accept-Encoding (got '$(header gzip Vary)')" \
  [ "$(header gzip Vary)" = "Accept, Accept-Encoding" ]
gunzip_to() { gzip -dc <"$WORK/$1.body" >"$WORK/$1.plain"; }
check "ops /metrics gzip body is one valid gzip stream" gunzip_to gzip
check "ops /metrics gzip body is the plain text exposition" \
  parse "$WORK/gzip.plain" "${OPS_FAMILIES[@]}" --expect-sample 'shmetrics_segment_up{role="ops"}=1'
http_request br "$OPS_PORT" /metrics -H 'Accept-Encoding: br'
check "ops /metrics with Accept-Encoding: br alone has no Content-Encoding (got '$(header br Content-Encoding)')" \
  lacks_header br Content-Encoding
check "ops /metrics with Accept-Encoding: br alone is the plain text exposition" \
  parse "$WORK/br.body" "${OPS_FAMILIES[@]}"
http_request head-gzip "$OPS_PORT" /metrics -I -H 'Accept-Encoding: gzip'
# (curl -I writes the head as its output: the output is the head, nothing after it)
check "HEAD /metrics with gzip answers 200 with Content-Encoding: gzip and no body" \
  bash -c "[ '$HTTP_STATUS' = 200 ] && [ '$(header head-gzip Content-Encoding)' = gzip ] && cmp -s '$WORK/head-gzip.body' '$WORK/head-gzip.headers'"

# The Accept headers real Prometheus servers send get OpenMetrics, checked by
# python3-prometheus-client's strict parser.
PROMETHEUS3_ACCEPT='application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2'
PROMETHEUS2_ACCEPT='application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
OM_TYPE='application/openmetrics-text; version=1.0.0; charset=utf-8'
OM_FAMILIES=(--expect-family rbac_reload_checks=counter --expect-family rbac_allowed=counter
  --expect-family rbac_map=info --expect-family demo_inflight_requests=gauge
  --expect-family demo_request_duration_seconds=histogram --expect-unit demo_request_duration_seconds=seconds
  --expect-family shmetrics_segment_up=gauge --expect-family shmetrics_series_refused=counter
  --expect-family shmetrics_exporter_build=info --expect-family shmetrics_exporter_scrape_duration_seconds=histogram
  --expect-family process_cpu_seconds=counter --expect-family process_open_fds=gauge
  --expect-sample "rbac_map_info{etag=\"$ETAG\"}=1" --expect-sample 'shmetrics_segment_up{role="ops"}=1')
om_check() { "$PYTHON" "$HERE/check_openmetrics.py" "${OM_FAMILIES[@]}" <"$WORK/$1"; }
# A header split over several lines is one list (RFC 9110 5.3).
http_request split "$OPS_PORT" /metrics -H 'Accept: text/plain;q=0.1' -H 'Accept: application/openmetrics-text' \
  -H 'Accept-Encoding: br' -H 'Accept-Encoding: gzip'
check "Accept over two lines: the second line's OpenMetrics wins ($(header split Content-Type))" \
  [ "$(header split Content-Type)" = "$OM_TYPE" ]
check "Accept-Encoding over two lines: the second line's gzip is taken ($(header split Content-Encoding))" \
  [ "$(header split Content-Encoding)" = gzip ]
http_request om3 "$OPS_PORT" /metrics -H "Accept: $PROMETHEUS3_ACCEPT" -H 'Accept-Encoding: gzip'
check "Prometheus 3's Accept gets '$OM_TYPE; escaping=allow-utf-8' (got '$(header om3 Content-Type)')" \
  [ "$(header om3 Content-Type)" = "$OM_TYPE; escaping=allow-utf-8" ]
check "Prometheus 3's scrape is gzipped (got '$(header om3 Content-Encoding)')" [ "$(header om3 Content-Encoding)" = gzip ]
check "Prometheus 3's scrape gunzips" gunzip_to om3
check "Prometheus 3's scrape passes the strict OpenMetrics parser with every family" om_check om3.plain
check "Prometheus 3's scrape ends with # EOF" bash -c "[ \"\$(tail -n 1 '$WORK/om3.plain')\" = '# EOF' ]"
http_request om2 "$OPS_PORT" /metrics -H "Accept: $PROMETHEUS2_ACCEPT"
check "Prometheus 2.42's Accept gets '$OM_TYPE' (got '$(header om2 Content-Type)')" \
  [ "$(header om2 Content-Type)" = "$OM_TYPE" ]
check "Prometheus 2.42's scrape passes the strict OpenMetrics parser with every family" om_check om2.body
check "... and has no _created sample by default (--openmetrics-created asks for them)" \
  bash -c "grep -q '^rbac_allowed_total' '$WORK/om2.body' && ! grep -q '_created' '$WORK/om2.body'"
http_request text-only "$OPS_PORT" /metrics -H 'Accept: text/plain;version=0.0.4'
check "text/plain;version=0.0.4 gets '$CONTENT_TYPE' (got '$(header text-only Content-Type)')" \
  [ "$(header text-only Content-Type)" = "$CONTENT_TYPE" ]
check "promtool check metrics accepts the text exposition silently" \
  bash -c "out=\$(promtool check metrics <'$WORK/text-only.body' 2>&1) && [ -z \"\$out\" ]"
# Prometheus 3 with scrape_protocols: [PrometheusText1.0.0]: the same body, named 1.0.0.
http_request text1 "$OPS_PORT" /metrics -H 'Accept: text/plain;version=1.0.0;escaping=allow-utf-8'
check "text/plain;version=1.0.0 gets 'text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8' (got '$(header text1 Content-Type)')" \
  [ "$(header text1 Content-Type)" = 'text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8' ]
check "text 1.0.0's body parses with every family as 0.0.4's" parse "$WORK/text1.body" "${OPS_FAMILIES[@]}"

# ------------------------------------------------------------ roles of your own
# One role, named by configuration, served from the ops writer's segment: it
# shows only itself. Bad --role values are refused with the reason.
role_refused() {  # role_refused NAME WANT ARGS...: exit 2 and WANT in the message
  local name=$1 want=$2 rc=0
  shift 2
  timeout "$STOP_SECONDS" "$EXPORTER" --instance "$INSTANCE" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
  [ "$rc" -eq 2 ] && grep -qF -e "$want" "$WORK/$name.err"
}
check "--role Bad=... is refused naming the rule" role_refused role-bad '1-64 characters of [a-z0-9_-]' --role Bad=127.0.0.1:0
check "--role twice for one name is refused" role_refused role-twice 'given twice' \
  --role billing=127.0.0.1:0 --role billing=127.0.0.1:0
check "--role with --ops-listen is refused" role_refused role-mixed 'cannot be combined' \
  --role billing=127.0.0.1:0 --ops-listen 127.0.0.1:0
check "--role-segment of a role not served is refused" role_refused role-segment-alone 'which is not served' \
  --role billing=127.0.0.1:0 --role-segment audit=x
# logged_port NAME ROLE: the port exporter NAME (started with start_bg NAME)
# logged for ROLE on 127.0.0.1, "" until it has.
logged_port() {
  { grep -o "event=listening role=$2 address=127\.0\.0\.1:[1-9][0-9]*" "$WORK/$1.err" || true; } |
    head -n 1 | sed 's/.*://'
}
has_logged_port() { [ -n "$(logged_port "$1" "$2")" ]; }
start_bg role-billing "$EXPORTER" --instance "$INSTANCE" --role billing=127.0.0.1:0 \
  --role-segment "billing=$INSTANCE.ops"
BILLING_PID=$BG_PID
check "an exporter with --role billing logs its listener" poll_until "$POLL_SECONDS" has_logged_port role-billing billing
check "... and no other listener" [ "$(grep -c 'event=listening' "$WORK/role-billing.err")" = 1 ]
http_request billing "$(logged_port role-billing billing)" /metrics
check "role billing answers 200 with its segment up and the writer's families" \
  parse "$WORK/billing.body" "${OPS_FAMILIES[@]}" \
  --expect-sample 'shmetrics_segment_up{role="billing"}=1'
check "role billing shows nothing of the ops and judge roles" \
  bash -c "! grep -qE 'role=\"(ops|judge)\"' '$WORK/billing.body'"
stop_process "$BILLING_PID" "$STOP_SECONDS"
check "the billing exporter stops with 0 on SIGTERM (got $STOP_RC)" [ "$STOP_RC" = 0 ]

# --------------------------------------------- every role on one listener
# --listen serves the default roles at /metrics/ops and /metrics/judge on one
# address (the ops writer is running, the judge segment is missing).
check "--listen with --ops-listen is refused" role_refused listen-ops-listen 'cannot be combined' \
  --listen 127.0.0.1:0 --ops-listen 127.0.0.1:0
check "--listen with --role NAME=HOST:PORT is refused, naming the role" role_refused listen-role-address \
  'give --role billing without one' --listen 127.0.0.1:0 --role billing=127.0.0.1:0
check "--role NAME without an address is refused without --listen" role_refused role-no-address \
  'has no address' --role billing
check "--listen twice is refused" role_refused listen-twice 'given twice' --listen 127.0.0.1:0 --listen 127.0.0.1:0
check "--role-segment twice for one role is refused" role_refused role-segment-twice 'given twice' \
  --role-segment ops=x --role-segment ops=y
check "--ops-segment with --role-segment ops is refused" role_refused ops-segment-both 'give one of them' \
  --ops-segment a --role-segment ops=b
check "--ops-listen twice is refused" role_refused ops-listen-twice 'given twice' \
  --ops-listen 127.0.0.1:0 --ops-listen 127.0.0.1:0
check "--once with --listen is refused" role_refused once-listen 'takes no --role, --listen' --listen 127.0.0.1:0 --once x
# --once uses few flags; the others are refused rather than ignored.
once_refused() {  # once_refused NAME ARGS...: the exporter given only ARGS exits 2 with a message
  local name=$1 rc=0
  shift
  timeout "$STOP_SECONDS" "$EXPORTER" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
  [ "$rc" -eq 2 ] && [ -s "$WORK/$name.err" ]
}
for extra in --instance=x --web.config.file=/nonexistent.yml --openmetrics-created --threads=2 --role-segment=ops=x; do
  check "--once x with ${extra%%=*} is refused with exit 2" once_refused "once${extra%%=*}" --once x "$extra"
  check "... naming it ($(head -n 1 "$WORK/once${extra%%=*}.err"))" grep -qF -e \
    "--once prints one segment in the text format 0.0.4 and exits: ${extra%%=*} does not apply to it" \
    "$WORK/once${extra%%=*}.err"
done
start_bg shared "$EXPORTER" --instance "$INSTANCE" --listen 127.0.0.1:0
SHARED_PID=$BG_PID
shared_port() { logged_port shared ops; }
shared_listening() {
  has_logged_port shared ops &&
    grep -q "event=listening role=ops address=127\.0\.0\.1:$(shared_port) path=/metrics/ops" "$WORK/shared.err" &&
    grep -q "event=listening role=judge address=127\.0\.0\.1:$(shared_port) path=/metrics/judge" "$WORK/shared.err"
}
check "an exporter with --listen logs both roles on one address, each with its path" poll_until "$POLL_SECONDS" shared_listening
check "... and no other listener" [ "$(grep -c 'event=listening' "$WORK/shared.err")" = 2 ]
SHARED_PORT=$(shared_port)
http_request shared-ops "$SHARED_PORT" /metrics/ops
check "/metrics/ops on the shared listener answers 200 with the ops writer's families" \
  parse "$WORK/shared-ops.body" "${OPS_FAMILIES[@]}" --expect-sample 'shmetrics_segment_up{role="ops"}=1'
check "... and nothing of the judge role" bash -c "! grep -q 'role=\"judge\"' '$WORK/shared-ops.body'"
http_request shared-judge "$SHARED_PORT" /metrics/judge
check "/metrics/judge on the shared listener answers 200 with only the judge role down" \
  answered_down shared-judge judge
http_request shared-judge-om "$SHARED_PORT" /metrics/judge -H "Accept: $PROMETHEUS3_ACCEPT" -H 'Accept-Encoding: gzip'
check "/metrics/judge negotiates OpenMetrics like a listener of its own ($(header shared-judge-om Content-Type))" \
  bash -c '[[ "$1" == "$2; escaping=allow-utf-8" ]]' _ "$(header shared-judge-om Content-Type)" "$OM_TYPE"
check "... gzipped ($(header shared-judge-om Content-Encoding))" [ "$(header shared-judge-om Content-Encoding)" = gzip ]
for path in /metrics /metrics/billing /metrics/ops/x; do
  http_request shared-404 "$SHARED_PORT" "$path"
  check "$path on the shared listener is 404 naming the paths served (got $HTTP_STATUS)" \
    bash -c "[ '$HTTP_STATUS' = 404 ] && grep -qF '/metrics/ops, /metrics/judge' '$WORK/shared-404.body'"
done
http_request shared-landing "$SHARED_PORT" /
check "/ on the shared listener links both roles" \
  bash -c "grep -qF 'href=\"/metrics/ops\"' '$WORK/shared-landing.body' && grep -qF 'href=\"/metrics/judge\"' '$WORK/shared-landing.body'"
http_request shared-health "$SHARED_PORT" /healthz
check "/healthz on the shared listener is 503 while the judge segment is missing, naming judge (got $HTTP_STATUS)" \
  bash -c "[ '$HTTP_STATUS' = 503 ] && grep -q '^unavailable: judge: ' '$WORK/shared-health.body'"
stop_process "$SHARED_PID" "$STOP_SECONDS"
check "the shared exporter stops with 0 on SIGTERM (got $STOP_RC)" [ "$STOP_RC" = 0 ]
check "... logging one listener's totals for both roles" grep -q 'event=http_totals role=ops,judge accepted=' "$WORK/shared.err"
# One role on one listener, named without an address: healthy.
start_bg shared-one "$EXPORTER" --instance "$INSTANCE" --listen 127.0.0.1:0 --role billing \
  --role-segment "billing=$INSTANCE.ops"
SHARED_ONE_PID=$BG_PID
check "--listen with --role billing logs its listener" poll_until "$POLL_SECONDS" has_logged_port shared-one billing
http_request shared-one "$(logged_port shared-one billing)" /metrics/billing
check "/metrics/billing answers 200 with the segment up" \
  parse "$WORK/shared-one.body" "${OPS_FAMILIES[@]}" --expect-sample 'shmetrics_segment_up{role="billing"}=1'
http_request shared-one-health "$(logged_port shared-one billing)" /healthz
check "/healthz with every role's segment served is 200 (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 200 ]
stop_process "$SHARED_ONE_PID" "$STOP_SECONDS"
check "the one-role shared exporter stops with 0 on SIGTERM (got $STOP_RC)" [ "$STOP_RC" = 0 ]

# ------------------------------------------------ the writers' own processes
# Each live process holding an ops record (the writer's $WORKERS workers, not
# its master, which records nothing) shows its CPU time and resident memory
# by pid; a writer in another pid namespace is left out and counted.
children_of() {  # children_of PID: the pids whose parent is PID, sorted
  "$PYTHON" - "$1" <<'PY'
import os, sys
out = []
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open("/proc/%s/stat" % d) as f:
            stat = f.read()
    except OSError:
        continue
    if stat[stat.rfind(")") + 2:].split()[1] == sys.argv[1]:
        out.append(int(d))
print(" ".join(str(p) for p in sorted(out)))
PY
}
labelled_pids() {  # labelled_pids NAME: the pid labels of the writers' resident memory in body NAME, sorted
  { grep -o '^shmetrics_writer_process_resident_memory_bytes{role="ops",pid="[0-9]*"} [1-9][0-9]*$' \
      "$WORK/$1.body" || true; } | sed 's/.*pid="\([0-9]*\)".*/\1/' | sort -n | tr '\n' ' ' | sed 's/ $//'
}
writers_state() {  # writers_state NAME STATE: the count of shmetrics_writer_processes{state=STATE} in body NAME
  { grep -o "^shmetrics_writer_processes{role=\"ops\",state=\"$2\"} [0-9]*" "$WORK/$1.body" || true; } | sed 's/.* //'
}
WRITER_CHILDREN=$(children_of "$WRITER_PID")
http_request writers "$OPS_PORT" /metrics
check "ops /metrics shows the resident memory of exactly the writer's $WORKERS workers by pid (want '$WRITER_CHILDREN', got '$(labelled_pids writers)')" \
  bash -c "[ -n '$WRITER_CHILDREN' ] && [ '$(labelled_pids writers)' = '$WRITER_CHILDREN' ] && [ \$(echo '$WRITER_CHILDREN' | wc -w) = $WORKERS ]"
check "... their CPU time too ($(grep -c '^shmetrics_writer_process_cpu_seconds_total{role="ops",pid=' "$WORK/writers.body") samples)" \
  [ "$(grep -c '^shmetrics_writer_process_cpu_seconds_total{role="ops",pid="[0-9]*"} [0-9]' "$WORK/writers.body")" = "$WORKERS" ]
check "... counted as shown: $WORKERS (got '$(writers_state writers shown)')" [ "$(writers_state writers shown)" = "$WORKERS" ]
check "... none in another namespace (got '$(writers_state writers other_namespace)')" \
  [ "$(writers_state writers other_namespace)" = 0 ]
http_request writers-judge "$JUDGE_PORT" /metrics
check "the judge role, whose segment is missing, shows no writer processes" \
  bash -c "! grep -q '^shmetrics_writer_process' '$WORK/writers-judge.body'"
if unshare --pid --fork true 2>"$WORK/unshare.err"; then
  # Two more ops workers in a pid namespace of their own (below this one).
  start_bg ns-writer unshare --pid --fork --kill-child=SIGTERM "$DEMO_WRITER" --instance "$INSTANCE" --role ops --workers 2
  NS_WRITER_PID=$BG_PID
  other_namespace_two() {
    http_request writers-ns "$OPS_PORT" /metrics
    [ "$(writers_state writers-ns other_namespace)" = 2 ]
  }
  poll_until "$POLL_SECONDS" other_namespace_two || true
  check "a writer in another pid namespace: its 2 workers are counted as other_namespace (got '$(writers_state writers-ns other_namespace)')" \
    [ "$(writers_state writers-ns other_namespace)" = 2 ]
  check "... and left out: still exactly the first writer's workers by pid (got '$(labelled_pids writers-ns)')" \
    [ "$(labelled_pids writers-ns)" = "$WRITER_CHILDREN" ]
  # unshare ignores SIGTERM while it waits: the writer's whole group gets it.
  kill -TERM -- "-$NS_WRITER_PID" 2>/dev/null || true
  stop_process "$NS_WRITER_PID" "$STOP_SECONDS"
  check "the namespaced writer stops on SIGTERM to its group (got $STOP_RC)" [ "$STOP_RC" != KILLED ]
else
  skip "unshare --pid cannot run here ($(head -n 1 "$WORK/unshare.err")): writers in another pid namespace not tried"
fi
# --no-writer-process-metrics leaves them out; --openmetrics-created adds
# OpenMetrics' _created samples (the last of it and --no-openmetrics-created counts).
start_bg no-writers "$EXPORTER" --instance "$INSTANCE" --role ops=127.0.0.1:0 --no-writer-process-metrics \
  --no-openmetrics-created --openmetrics-created
NO_WRITERS_PID=$BG_PID
check "an exporter with --no-writer-process-metrics logs its listener" poll_until "$POLL_SECONDS" has_logged_port no-writers ops
http_request no-writers "$(logged_port no-writers ops)" /metrics
check "... and shows the ops segment without any shmetrics_writer_process* line" \
  bash -c "grep -q '^shmetrics_segment_up{role=\"ops\"} 1$' '$WORK/no-writers.body' && ! grep -q '^shmetrics_writer_process' '$WORK/no-writers.body'"
http_request created "$(logged_port no-writers ops)" /metrics -H "Accept: $PROMETHEUS2_ACCEPT"
check "... its OpenMetrics scrape ('$(header created Content-Type)') passes the strict parser, every series of rbac_allowed and demo_request_duration_seconds with a _created sample" \
  "$PYTHON" "$HERE/check_openmetrics.py" --expect-family rbac_allowed=counter \
  --expect-family demo_request_duration_seconds=histogram --expect-family shmetrics_series_refused=counter \
  --expect-created rbac_allowed --expect-created demo_request_duration_seconds \
  --expect-sample 'shmetrics_segment_up{role="ops"}=1' <"$WORK/created.body"
check "... $(grep -c '_created' "$WORK/created.body") _created samples there, none in the default exporter's scrape" \
  bash -c "grep -q '_created' '$WORK/created.body' && ! grep -q '_created' '$WORK/om2.body' && grep -q '^rbac_allowed_total' '$WORK/om2.body'"
stop_process "$NO_WRITERS_PID" "$STOP_SECONDS"

# ------------------------------------------ remove and recreate the ops segment
opened_before=$(count_log 'event=segment_(opened|replaced) role=ops ')
stop_process "$WRITER_PID" "$STOP_SECONDS"
check "first ops writer exits 0 on SIGTERM (got $STOP_RC)" [ "$STOP_RC" = 0 ]
rm -f "$OPS_SEGMENT"
check "ops segment file removed" [ ! -e "$OPS_SEGMENT" ]
# A scrape meanwhile: the exporter says the segment was removed (not
# replaced: nothing is at the path), and why the role is down.
http_request removed "$OPS_PORT" /metrics
check "a scrape of the removed segment answers with shmetrics_segment_up 0" \
  grep -q '^shmetrics_segment_up{role="ops"} 0$' "$WORK/removed.body"
check "... and the exporter logged event=segment_removed, then segment_down saying it does not exist" \
  bash -c "grep -q 'event=segment_removed role=ops ' '$EXPORTER_LOG' && grep -q 'event=segment_down role=ops .*does not exist' '$EXPORTER_LOG'"
start_demo_writer writer2 ops "$WORKERS_AGAIN"
WRITER_PID=$BG_PID
check "new ops writer recreated $OPS_SEGMENT" poll_until "$POLL_SECONDS" test -e "$OPS_SEGMENT"

# The exporter must switch to the new segment: a new opened/replaced line and
# counters that restarted (the new writer's $WORKERS_AGAIN hits, not the old
# $WORKERS). The exporter looks at the segment when scraped, so scrape first;
# poll until it logged the switch and the new workers all counted.
replaced() {
  ops_up_with "$WORKERS_AGAIN" &&
    [ "$(count_log 'event=segment_(opened|replaced) role=ops ')" -gt "$opened_before" ]
}
if poll_until "$POLL_SECONDS" replaced; then
  pass "exporter logged segment_opened/segment_replaced for ops again after the segment was recreated"
else
  fail "exporter did not log segment_opened/segment_replaced for the recreated ops segment within ${POLL_SECONDS}s (lines before $opened_before, now $(count_log 'event=segment_(opened|replaced) role=ops '); last scrape: $(cat "$WORK/ops-poll.why" 2>/dev/null))"
fi
http_request ops-again "$OPS_PORT" /metrics
check "ops /metrics after recreation: rbac_reload_hit_total == $WORKERS_AGAIN (the new writer's workers), segment up" \
  parse "$WORK/ops-again.body" "${OPS_FAMILIES[@]}" \
  --expect-sample 'shmetrics_segment_up{role="ops"}=1' \
  --expect-sample "rbac_reload_hit_total=$WORKERS_AGAIN" \
  --expect-sample "rbac_map_info{etag=\"$ETAG\"}=1"
http_request judge-down-again "$JUDGE_PORT" /metrics
check "judge /metrics still down after the ops segment was recreated" \
  answered_down judge-down-again judge

stop_process "$WRITER_PID" "$STOP_SECONDS"
check "second ops writer exits 0 on SIGTERM (got $STOP_RC)" [ "$STOP_RC" = 0 ]

# -------------------------------------------------------------------- SIGHUP
# Logged and ignored: there is nothing to reload.
kill -HUP "$EXPORTER_PID"
sighup_logged_or_gone() { grep -q 'event=sighup ' "$EXPORTER_LOG" || ! alive "$EXPORTER_PID"; }
poll_until "$POLL_SECONDS" sighup_logged_or_gone || true
if grep -q 'event=sighup ' "$EXPORTER_LOG"; then
  pass "exporter logged event=sighup on SIGHUP"
else
  fail "exporter did not log event=sighup after SIGHUP (still running: $(alive "$EXPORTER_PID" && echo yes || echo no))"
fi
check "exporter still running after SIGHUP" alive "$EXPORTER_PID"
http_request after-hup "$OPS_PORT" /metrics
check "ops /metrics answers 200 after SIGHUP (got $HTTP_STATUS)" [ "$HTTP_STATUS" = 200 ]
check "exporter logged one line for one SIGHUP (got $(count_log 'event=sighup '))" [ "$(count_log 'event=sighup ')" -eq 1 ]

# ------------------------------------------------------------------- SIGTERM
check "exporter still running before SIGTERM" alive "$EXPORTER_PID"
stop_process "$EXPORTER_PID" "$STOP_SECONDS"
check "exporter exits 0 within ${STOP_SECONDS}s of SIGTERM (got $STOP_RC)" [ "$STOP_RC" = 0 ]
check "exporter logged event=stopped" grep -q 'event=stopped' "$EXPORTER_LOG"
# Its HTTP totals: the ops listener answered requests (its 404s among them)
# and rendered for its scrapes.
ops_totals=$(grep -o 'event=http_totals role=ops .*' "$EXPORTER_LOG" || true)
check "exporter logged its ops listener's HTTP totals with requests > 0 and renders > 0 ($ops_totals)" \
  grep -qE 'event=http_totals role=ops accepted=[1-9][0-9]* .*requests=[1-9][0-9]* .*renders=[1-9]' "$EXPORTER_LOG"
