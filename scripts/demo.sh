#!/usr/bin/env bash
# scripts/demo.sh: install what is missing, build, run the demo.
#
# Usage: scripts/demo.sh [--for SECONDS] [--ops-port P] [--judge-port P] [--workers N]
#                        [--ops-app-port P] [--judge-app-port P]
#   --for SECONDS       stop by itself after SECONDS (default: run until Ctrl-C)
#   --ops-port P        port of the ops role's /metrics (default 8081)
#   --judge-port P      port of the judge role's /metrics (default 8082)
#   --workers N         workers each example server forks (default 3, at most 64)
#   --ops-app-port P    port of shmetrics-ops-server (default 0: a free one)
#   --judge-app-port P  port of shmetrics-judge-server (default 0: a free one)
#   Env: BUILD_DIR (default: build, at the repository root).
#
# Starts shmetrics-ops-server, shmetrics-judge-server (both with an RBAC map
# and --reload-sec 1) and the exporter on an instance of their own (demo-PID),
# sends a little traffic (allowed, forbidden, readyz ok and failing, one map
# change), prints both roles' /metrics, then keeps running. On exit it stops
# everything it started and removes the instance's shared-memory segments.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FOR_SECONDS=""
OPS_PORT=8081
JUDGE_PORT=8082
WORKERS=3
OPS_APP_PORT=0
JUDGE_APP_PORT=0

READY_TIMEOUT_MS=20000  # how long to wait for a server, the exporter, totals
RELOAD_TIMEOUT_MS=20000 # how long to wait for the servers to load the new map
POLL_INTERVAL=0.2       # seconds between polls
STOP_TIMEOUT_MS=10000   # how long SIGTERM may take before SIGKILL
READY_MARKER=rbac_allowed_total

usage() {
  sed -n '2,19s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# need_value OPTION VALUE: die unless the option was given a value.
need_value() {
  [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"
}

# check_port NAME VALUE MIN: die unless VALUE is a port number >= MIN.
check_port() {
  if ! [[ "$2" =~ ^[0-9]{1,5}$ ]] || ((10#$2 < $3 || 10#$2 > 65535)); then
    die "$1 wants a port ($3-65535), got '$2'"
  fi
}

parse_args() {
  while (($#)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --for) need_value "$@"; FOR_SECONDS="$2"; shift 2 ;;
      --for=*) FOR_SECONDS="${1#*=}"; shift ;;
      --ops-port) need_value "$@"; OPS_PORT="$2"; shift 2 ;;
      --ops-port=*) OPS_PORT="${1#*=}"; shift ;;
      --judge-port) need_value "$@"; JUDGE_PORT="$2"; shift 2 ;;
      --judge-port=*) JUDGE_PORT="${1#*=}"; shift ;;
      --workers) need_value "$@"; WORKERS="$2"; shift 2 ;;
      --workers=*) WORKERS="${1#*=}"; shift ;;
      --ops-app-port) need_value "$@"; OPS_APP_PORT="$2"; shift 2 ;;
      --ops-app-port=*) OPS_APP_PORT="${1#*=}"; shift ;;
      --judge-app-port) need_value "$@"; JUDGE_APP_PORT="$2"; shift 2 ;;
      --judge-app-port=*) JUDGE_APP_PORT="${1#*=}"; shift ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
  done
  if [[ -n "$FOR_SECONDS" ]]; then
    [[ "$FOR_SECONDS" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--for wants seconds, got '$FOR_SECONDS'"
  fi
  check_port --ops-port "$OPS_PORT" 1
  check_port --judge-port "$JUDGE_PORT" 1
  check_port --ops-app-port "$OPS_APP_PORT" 0
  check_port --judge-app-port "$JUDGE_APP_PORT" 0
  OPS_PORT=$((10#$OPS_PORT)) JUDGE_PORT=$((10#$JUDGE_PORT))
  OPS_APP_PORT=$((10#$OPS_APP_PORT)) JUDGE_APP_PORT=$((10#$JUDGE_APP_PORT))
  # Every fixed port must differ from the others (0 means "any free one").
  local -A seen=()
  local flag port
  for flag in ops-port judge-port ops-app-port judge-app-port; do
    case "$flag" in
      ops-port) port=$OPS_PORT ;;
      judge-port) port=$JUDGE_PORT ;;
      ops-app-port) port=$OPS_APP_PORT ;;
      judge-app-port) port=$JUDGE_APP_PORT ;;
    esac
    ((port != 0)) || continue
    [[ -z "${seen[$port]:-}" ]] || die "--${seen[$port]} and --$flag must differ (both $port)"
    seen[$port]=$flag
  done
  if ! [[ "$WORKERS" =~ ^[0-9]{1,3}$ ]] || ((10#$WORKERS < 1 || 10#$WORKERS > 64)); then
    die "--workers wants a count from 1 to 64, got '$WORKERS'"
  fi
  WORKERS=$((10#$WORKERS))
}

# ---------------------------------------------------------------------------
# Processes started by this script. Each runs in a session (and so a process
# group) of its own, so that Ctrl-C reaches only this script, which then
# stops them in order, and so that a server's forked workers can be found.
# ---------------------------------------------------------------------------

PIDS=()
NAMES=()
LOGS=()
TIMER_PID=""

# start NAME LOG COMMAND...: start COMMAND in the background, output to LOG.
start() {
  local name="$1" log="$2"
  shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  PIDS+=("$!")
  NAMES+=("$name")
  LOGS+=("$log")
  step "started $name (pid $!, log $log)"
}

# running PID: true while PID exists and is not a zombie.
running() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat%% *}" != Z ]]
}

# show_log I: the last lines of the log of process I.
show_log() {
  printf -- '--- last lines of %s (%s) ---\n' "${NAMES[$1]}" "${LOGS[$1]}" >&2
  tail -n 20 "${LOGS[$1]}" >&2 || true
  printf -- '---\n' >&2
}

# check_alive: die (with its log) when a started process has exited.
check_alive() {
  local i status
  for i in "${!PIDS[@]}"; do
    if ! running "${PIDS[$i]}"; then
      status=0
      wait "${PIDS[$i]}" 2>/dev/null || status=$?
      warn "${NAMES[$i]} exited (status $status)"
      show_log "$i"
      die "${NAMES[$i]} stopped unexpectedly"
    fi
  done
}

# group_running PGID: true while a process of group PGID is alive (zombies,
# which only wait for a reaper, do not count).
# shellcheck disable=SC2317 # called from the EXIT trap
group_running() {
  local f line state pgrp
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null <"$f" || continue
    read -r state _ pgrp _ <<<"${line##*) }"
    [[ "$pgrp" == "$1" && "$state" != Z ]] && return 0
  done
  return 1
}

# stop_all: SIGTERM every started process (last started first), wait up to
# STOP_TIMEOUT_MS for them and for their process groups (a server's
# workers) to end, then SIGKILL the groups still alive.
# shellcheck disable=SC2317 # called from the EXIT trap
stop_all() {
  local i pid deadline left
  if [[ -n "$TIMER_PID" ]]; then
    kill "$TIMER_PID" 2>/dev/null || true
    wait "$TIMER_PID" 2>/dev/null || true
    TIMER_PID=""
  fi
  ((${#PIDS[@]})) || return 0
  step "stopping ${NAMES[*]}"
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  deadline=$(($(now_ms) + STOP_TIMEOUT_MS))
  while :; do
    left=()
    for i in "${!PIDS[@]}"; do
      group_running "${PIDS[$i]}" && left+=("$i")
    done
    ((${#left[@]})) || break
    if (($(now_ms) >= deadline)); then
      for i in "${left[@]}"; do
        warn "${NAMES[$i]} (or its workers) did not stop on SIGTERM; sending SIGKILL"
        kill -KILL -- "-${PIDS[$i]}" 2>/dev/null || true
      done
      break
    fi
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

remove_segments() {
  local seg
  for seg in "${SEGMENTS[@]}"; do
    if [[ -e "$seg" ]]; then
      remove_segment_file "$seg"
      step "removed $seg and its semaphores"
    fi
  done
}

# shellcheck disable=SC2317 # the EXIT trap
cleanup() {
  local rc=$?
  trap '' INT TERM
  stop_all
  remove_segments
  if ((rc == 0)); then
    step "demo stopped"
  else
    step "demo stopped (exit $rc); logs are in $LOG_DIR"
  fi
  exit "$rc"
}

# port_busy PORT: true when something already listens on 127.0.0.1:PORT.
port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# show_logs: the last lines of every started process's log.
show_logs() {
  local i
  for i in "${!LOGS[@]}"; do show_log "$i"; done
}

# fail MESSAGE...: show the logs, then die.
fail() {
  show_logs
  die "$@"
}

# wait_until WHAT TIMEOUT_MS COMMAND...: run COMMAND every POLL_INTERVAL
# until it succeeds, for at most TIMEOUT_MS; fails (with the logs) when a
# started process exits or time runs out. COMMAND may set LAST_ERROR.
wait_until() {
  local what="$1" timeout_ms="$2" deadline
  shift 2
  LAST_ERROR=""
  deadline=$(($(now_ms) + timeout_ms))
  while :; do
    check_alive
    "$@" && return 0
    if (($(now_ms) >= deadline)); then
      fail "timed out after $((timeout_ms / 1000))s waiting for $what (last error: ${LAST_ERROR:-none})"
    fi
    sleep "$POLL_INTERVAL"
  done
}

# logged_port LOG: the port a server logged as event=listening.
logged_port() {
  local line
  line="$(grep -m1 -o 'event=listening address=[^ ]*' "$1" 2>/dev/null)" || return 1
  [[ "${line##*:}" =~ ^[0-9]+$ ]] || return 1
  printf '%s\n' "${line##*:}"
}

# server_up LOG: true once the server of LOG logged its address and one of
# its workers answers GET /healthz.
# shellcheck disable=SC2317 # run through wait_until
server_up() {
  local port
  port="$(logged_port "$1")" || {
    LAST_ERROR="no event=listening line in $1 yet"
    return 1
  }
  curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null || {
    LAST_ERROR="http://127.0.0.1:$port/healthz does not answer yet"
    return 1
  }
}

# fetch URL: print URL's body; sets LAST_ERROR and fails when it does not answer.
fetch() {
  local body
  body="$(curl -fsS --max-time 2 "$1" 2>&1)" || {
    LAST_ERROR="$1: $body"
    return 1
  }
  printf '%s\n' "$body"
}

# metrics_ready URL...: true when every URL answers and mentions READY_MARKER.
# shellcheck disable=SC2317 # run through wait_until
metrics_ready() {
  local url body
  for url; do
    body="$(fetch "$url")" || return 1
    [[ "$body" == *"$READY_MARKER"* ]] || {
      LAST_ERROR="$url answered without $READY_MARKER"
      return 1
    }
  done
}

# at_least URL NAME MIN [NAME MIN]...: true when URL's /metrics shows every
# unlabelled sample NAME with a value >= MIN.
# shellcheck disable=SC2317 # run through wait_until
at_least() {
  local url="$1" body value
  shift
  body="$(fetch "$url")" || return 1
  while (($# >= 2)); do
    value="$(awk -v n="$1" '$1 == n { print $2; exit }' <<<"$body")"
    if [[ -z "$value" ]] || ! awk -v v="$value" -v m="$2" 'BEGIN { exit !(v + 0 >= m + 0) }'; then
      LAST_ERROR="$url shows $1 ${value:-(missing)}, want >= $2"
      return 1
    fi
    shift 2
  done
}

# ---------------------------------------------------------------------------
# Traffic.
# ---------------------------------------------------------------------------

declare -A SENT=() # "ROLE KIND" -> requests sent and answered as expected

# sent ROLE KIND: how many requests of KIND went to ROLE.
sent() {
  printf '%s\n' "${SENT["$1 $2"]:-0}"
}

# send ROLE KIND STATUS METHOD PATH [SCOPES]: send one request to ROLE's
# server (with X-Scopes: SCOPES when given) and fail unless it answers
# STATUS; counts it as KIND (allowed, forbidden, readyz_ok, readyz_failing).
send() {
  local role="$1" kind="$2" want="$3" method="$4" path="$5" port out code body
  port="$OPS_APP_PORT"
  [[ "$role" == ops ]] || port="$JUDGE_APP_PORT"
  local url="http://127.0.0.1:$port$path"
  local args=(-sS --max-time 5 -w '\n%{http_code}')
  if [[ "$method" == POST ]]; then
    args+=(--data '') # a body length, as real clients send
  else
    args+=(-X "$method")
  fi
  (($# < 6)) || args+=(-H "X-Scopes: $6")
  out="$(curl "${args[@]}" "$url" 2>&1)" || true
  code="${out##*$'\n'}"
  body="${out%$'\n'*}"
  if [[ "$code" != "$want" ]]; then
    fail "$method $url${6:+ (X-Scopes: $6)} answered '$code', expected $want: ${body:0:300}"
  fi
  SENT["$role $kind"]=$(($(sent "$role" "$kind") + 1))
}

# total KIND: requests of KIND sent to both servers.
total() {
  printf '%s\n' "$(($(sent ops "$1") + $(sent judge "$1")))"
}

# write_map VERSION FILE: the demo's RBAC map. Version 2 adds one route
# (ops:read may list /ops/jobs); both versions allow the traffic below.
write_map() {
  local extra=""
  if (($1 == 2)); then
    extra='
    {"pattern": "/ops/jobs", "methods": ["GET"], "scopes": ["ops:read", "ops:write"]},'
  fi
  cat >"$2" <<EOF
{
  "require_all": false,
  "routes": [
    {"pattern": "/ops/status", "methods": ["GET"], "scopes": ["ops:read"]},$extra
    {"pattern": "/ops/jobs", "methods": ["GET", "POST"], "scopes": ["ops:write"]},
    {"pattern": "/judge/submit", "methods": ["POST"], "scopes": ["judge:submit"]},
    {"pattern": "/judge/results/*", "methods": ["GET"], "scopes": ["judge:read"]}
  ]
}
EOF
}

# etag FILE: the map version the servers report (SHA-256 of the file).
etag() {
  local sum
  sum="$(sha256sum "$1")" || die "could not hash $1"
  printf '%s\n' "${sum%% *}"
}

# send_traffic: allowed and forbidden requests on both servers, readyz while
# READY_FILE exists and after it is removed.
send_traffic() {
  local i
  step "sending traffic: ops-server 127.0.0.1:$OPS_APP_PORT, judge-server 127.0.0.1:$JUDGE_APP_PORT"
  for i in 1 2 3; do
    send ops allowed 200 GET /ops/status ops:read
    send judge allowed 202 POST /judge/submit judge:submit
  done
  send ops allowed 200 GET /ops/jobs ops:write
  send ops allowed 201 POST /ops/jobs "ops:read ops:write"
  send judge allowed 200 GET /judge/results/42 judge:read
  send judge allowed 200 GET /judge/results/43 "judge:read,judge:submit"
  send ops forbidden 403 GET /ops/status # no X-Scopes
  send ops forbidden 403 POST /ops/jobs ops:read # wrong scope
  send judge forbidden 403 POST /judge/submit # no X-Scopes
  send judge forbidden 403 GET /judge/results/42 judge:submit # wrong scope
  for i in 1 2 3; do
    send judge readyz_ok 200 GET /readyz
  done
  rm -f -- "$READY_FILE"
  for i in 1 2; do
    send judge readyz_failing 503 GET /readyz
  done
  step "$(total allowed) allowed, $(total forbidden) forbidden (no X-Scopes or a wrong scope)," \
    "$(total readyz_ok) readyz ok, $(total readyz_failing) readyz failing (after removing $(basename "$READY_FILE")):" \
    "$(($(total allowed) + $(total forbidden) + $(total readyz_ok) + $(total readyz_failing))) requests sent"
}

# reload_seen: one more allowed request to each server, then true once both
# roles' /metrics count a reload of the map.
# shellcheck disable=SC2317 # run through wait_until
reload_seen() {
  send ops allowed 200 GET /ops/status ops:read
  send judge allowed 202 POST /judge/submit judge:submit
  RELOAD_REQUESTS=$((RELOAD_REQUESTS + 2))
  at_least "$OPS_URL" rbac_reload_hit_total 1 && at_least "$JUDGE_URL" rbac_reload_hit_total 1
}

# change_map: replace the map with version 2 (write, then rename over it)
# and keep sending allowed requests until both servers have loaded it.
change_map() {
  local began
  write_map 2 "$MAP_FILE.tmp"
  mv -f -- "$MAP_FILE.tmp" "$MAP_FILE"
  NEW_ETAG="$(etag "$MAP_FILE")"
  step "map changed (version 2 lets ops:read list /ops/jobs), etag ${NEW_ETAG:0:16}..."
  RELOAD_REQUESTS=0
  began=$(now_ms)
  wait_until "both servers to load the new map (rbac_reload_hit_total >= 1)" \
    "$RELOAD_TIMEOUT_MS" reload_seen
  step "both servers reloaded it: $RELOAD_REQUESTS more allowed requests sent in $(fmt_ms $(($(now_ms) - began)))"
}

# totals_seen: true once the exporter shows at least what was sent.
# shellcheck disable=SC2317 # run through wait_until
totals_seen() {
  at_least "$OPS_URL" rbac_allowed_total "$(sent ops allowed)" \
    rbac_forbidden_total "$(sent ops forbidden)" &&
    at_least "$JUDGE_URL" rbac_allowed_total "$(sent judge allowed)" \
      rbac_forbidden_total "$(sent judge forbidden)" \
      readyz_checks_total "$(($(sent judge readyz_ok) + $(sent judge readyz_failing)))" \
      readyz_failures_total "$(sent judge readyz_failing)"
}

# look WHAT NOTE: one line of the guide below.
look() {
  printf '  %-36s %s\n' "$1" "$2"
}

# what_to_look_at: a short guide to the metrics just printed.
what_to_look_at() {
  local ok fails ratio
  ok="$(sent judge readyz_ok)"
  fails="$(sent judge readyz_failing)"
  ratio="$(awk -v ok="$ok" -v n="$((ok + fails))" 'BEGIN { printf "%g", ok / n }')"
  printf '\n==> what to look at\n'
  look rbac_allowed_total "ops $(sent ops allowed), judge $(sent judge allowed): the allowed requests sent"
  look rbac_forbidden_total "ops $(sent ops forbidden), judge $(sent judge forbidden): no X-Scopes or a wrong scope"
  look "rbac_reload_hit_total >= 1" "workers that loaded the changed map"
  look 'rbac_map_info{etag="..."}' "the new map is etag=\"$NEW_ETAG\";"
  look "" "the old ${OLD_ETAG:0:16}... stays listed while a worker holds it"
  look "readyz_success_ratio_1m $ratio" "below 1: $fails of $((ok + fails)) readyz checks failed"
  look 'readyz_status{status="degraded"} 1' "the newest check failed (the readyz file is gone)"
  look 'shmetrics_segment_up{role="..."} 1' "the exporter read and trusted the role's segment"
}

main() {
  parse_args "$@"

  install_deps
  build

  INSTANCE="demo-$$"
  SEGMENTS=("$(segment_dir)/$INSTANCE.ops" "$(segment_dir)/$INSTANCE.judge")
  LOG_DIR="$BUILD_DIR/demo-logs/$INSTANCE"
  [[ "$LOG_DIR" == /* ]] || LOG_DIR="$SHMETRICS_ROOT/$LOG_DIR" # printed in commands to copy
  MAP_FILE="$LOG_DIR/rbac-map.json"
  READY_FILE="$LOG_DIR/ready"
  OPS_URL="http://127.0.0.1:$OPS_PORT/metrics"
  JUDGE_URL="http://127.0.0.1:$JUDGE_PORT/metrics"
  local exporter="$BUILD_DIR/exporter/shmetrics-exporter"
  local ops_server="$BUILD_DIR/examples/shmetrics-ops-server"
  local judge_server="$BUILD_DIR/examples/shmetrics-judge-server"

  local bin
  for bin in "$exporter" "$ops_server" "$judge_server"; do
    [[ -x "$bin" ]] || die "$bin was not built"
  done
  local port
  for port in "$OPS_PORT" "$JUDGE_PORT"; do
    ! port_busy "$port" || die "127.0.0.1:$port is already in use (choose another with --ops-port / --judge-port)"
  done
  for port in "$OPS_APP_PORT" "$JUDGE_APP_PORT"; do
    ((port == 0)) || ! port_busy "$port" \
      || die "127.0.0.1:$port is already in use (choose another with --ops-app-port / --judge-app-port, or 0)"
  done

  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  mkdir -p "$LOG_DIR"
  remove_segments # a stale pair from an earlier run with the same PID
  write_map 1 "$MAP_FILE"
  OLD_ETAG="$(etag "$MAP_FILE")"
  touch "$READY_FILE"
  step "instance $INSTANCE, $WORKERS workers per server, RBAC map $MAP_FILE"

  local ops_log="$LOG_DIR/ops-server.log" judge_log="$LOG_DIR/judge-server.log"
  start "ops-server" "$ops_log" \
    "$ops_server" --instance "$INSTANCE" --listen "127.0.0.1:$OPS_APP_PORT" \
    --workers "$WORKERS" --rbac-map "$MAP_FILE" --reload-sec 1
  start "judge-server" "$judge_log" \
    "$judge_server" --instance "$INSTANCE" --listen "127.0.0.1:$JUDGE_APP_PORT" \
    --workers "$WORKERS" --rbac-map "$MAP_FILE" --reload-sec 1 --readyz-file "$READY_FILE"
  step "waiting for both servers (up to $((READY_TIMEOUT_MS / 1000))s)"
  wait_until "ops-server to answer /healthz" "$READY_TIMEOUT_MS" server_up "$ops_log"
  wait_until "judge-server to answer /healthz" "$READY_TIMEOUT_MS" server_up "$judge_log"
  OPS_APP_PORT="$(logged_port "$ops_log")"
  JUDGE_APP_PORT="$(logged_port "$judge_log")"

  start "exporter" "$LOG_DIR/exporter.log" \
    "$exporter" --instance "$INSTANCE" \
    --ops-listen "127.0.0.1:$OPS_PORT" --judge-listen "127.0.0.1:$JUDGE_PORT"
  step "waiting for $OPS_URL and $JUDGE_URL (up to $((READY_TIMEOUT_MS / 1000))s)"
  wait_until "both roles' /metrics" "$READY_TIMEOUT_MS" metrics_ready "$OPS_URL" "$JUDGE_URL"

  send_traffic
  change_map
  wait_until "the exporter to show the requests sent" "$READY_TIMEOUT_MS" totals_seen

  local role url body
  for role in ops judge; do
    url="$OPS_URL"
    [[ "$role" == ops ]] || url="$JUDGE_URL"
    body="$(fetch "$url")" || fail "could not fetch $url: $LAST_ERROR"
    printf '\n==> %s role: %s\n%s\n' "$role" "$url" "$body"
  done
  what_to_look_at
  printf '\n'
  step "look again:  curl $OPS_URL   (judge: curl $JUDGE_URL)"
  step "try:         curl -H 'X-Scopes: ops:read' http://127.0.0.1:$OPS_APP_PORT/ops/jobs   (allowed since the map change)"
  step "             touch $READY_FILE   (readyz ok again: curl http://127.0.0.1:$JUDGE_APP_PORT/readyz)"
  if [[ -n "$FOR_SECONDS" ]]; then
    step "stop:        Ctrl-C, or wait; the demo stops by itself after ${FOR_SECONDS}s"
    sleep "$FOR_SECONDS" &
    TIMER_PID=$!
  else
    step "stop:        Ctrl-C"
  fi
  step "logs:        $LOG_DIR"

  # Sleep until the timer ends or a started process exits; Ctrl-C and
  # SIGTERM interrupt the wait and go through cleanup.
  local done_pid="" status=0 i
  wait -n -p done_pid "${PIDS[@]}" ${TIMER_PID:+"$TIMER_PID"} || status=$?
  if [[ -n "$TIMER_PID" && "$done_pid" == "$TIMER_PID" ]]; then
    TIMER_PID=""
    step "${FOR_SECONDS}s elapsed"
    exit 0
  fi
  for i in "${!PIDS[@]}"; do
    if [[ "${PIDS[$i]}" == "$done_pid" ]]; then
      warn "${NAMES[$i]} exited (status $status)"
      show_log "$i"
      die "${NAMES[$i]} stopped unexpectedly"
    fi
  done
  check_alive
  die "a demo process exited"
}

main "$@"
