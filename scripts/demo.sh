#!/usr/bin/env bash
# scripts/demo.sh: install what is missing, build, run the demo.
#
# Usage: scripts/demo.sh [--for SECONDS] [--ops-port P] [--judge-port P] [--workers N]
#   --for SECONDS   stop by itself after SECONDS (default: run until Ctrl-C)
#   --ops-port P    port of the ops role's /metrics (default 8081)
#   --judge-port P  port of the judge role's /metrics (default 8082)
#   --workers N     workers each demo writer forks (default 3)
#   Env: BUILD_DIR (default: build, at the repository root).
#
# Starts one demo writer per role (ops, judge) and the exporter on an
# instance of its own (demo-PID), waits until both /metrics answer, prints
# them, then keeps running. On exit it stops everything it started and
# removes the instance's shared-memory segments.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FOR_SECONDS=""
OPS_PORT=8081
JUDGE_PORT=8082
WORKERS=3

READY_TIMEOUT_MS=20000 # how long to wait for both /metrics
POLL_INTERVAL=0.2      # seconds between readiness polls
STOP_TIMEOUT_MS=10000  # how long SIGTERM may take before SIGKILL
READY_MARKER=rbac_allowed_total

usage() {
  sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# need_value OPTION VALUE: die unless the option was given a value.
need_value() {
  [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"
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
      *) usage >&2; die "unknown argument: $1" ;;
    esac
  done
  if [[ -n "$FOR_SECONDS" ]]; then
    [[ "$FOR_SECONDS" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--for wants seconds, got '$FOR_SECONDS'"
  fi
  local port
  for port in "$OPS_PORT" "$JUDGE_PORT"; do
    if ! [[ "$port" =~ ^[0-9]+$ ]] || ((10#$port < 1 || 10#$port > 65535)); then
      die "not a port: '$port'"
    fi
  done
  ((10#$OPS_PORT != 10#$JUDGE_PORT)) || die "--ops-port and --judge-port must differ"
  if ! [[ "$WORKERS" =~ ^[0-9]+$ ]] || ((10#$WORKERS < 1)); then
    die "--workers wants a count >= 1, got '$WORKERS'"
  fi
}

# ---------------------------------------------------------------------------
# Processes started by this script. Each runs in a session (and so a process
# group) of its own, so that Ctrl-C reaches only this script, which then
# stops them in order, and so that a writer's forked workers can be found.
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
# STOP_TIMEOUT_MS for them and for their process groups (a writer's
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
      rm -f -- "$seg"
      step "removed $seg"
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

# metrics_ready URL: true when URL answers and mentions READY_MARKER.
metrics_ready() {
  local body
  body="$(curl -fsS --max-time 2 "$1" 2>&1)" || {
    LAST_ERROR="$body"
    return 1
  }
  [[ "$body" == *"$READY_MARKER"* ]] || {
    LAST_ERROR="$1 answered without $READY_MARKER"
    return 1
  }
}

# wait_ready URL...: poll every POLL_INTERVAL until every URL is ready, for
# at most READY_TIMEOUT_MS; dies when a process exits or time runs out.
wait_ready() {
  local url deadline pending=("$@") still
  LAST_ERROR=""
  deadline=$(($(now_ms) + READY_TIMEOUT_MS))
  step "waiting for ${pending[*]} (up to $((READY_TIMEOUT_MS / 1000))s)"
  while :; do
    check_alive
    still=()
    for url in "${pending[@]}"; do
      metrics_ready "$url" || still+=("$url")
    done
    ((${#still[@]})) || return 0
    pending=("${still[@]}")
    if (($(now_ms) >= deadline)); then
      local i
      for i in "${!PIDS[@]}"; do show_log "$i"; done
      die "not ready after $((READY_TIMEOUT_MS / 1000))s: ${pending[*]} (last error: ${LAST_ERROR:-none})"
    fi
    sleep "$POLL_INTERVAL"
  done
}

main() {
  parse_args "$@"

  install_deps
  build

  INSTANCE="demo-$$"
  SEGMENTS=("/dev/shm/shmetrics.$INSTANCE.ops" "/dev/shm/shmetrics.$INSTANCE.judge")
  LOG_DIR="$BUILD_DIR/demo-logs/$INSTANCE"
  local exporter="$BUILD_DIR/exporter/shmetrics-exporter"
  local writer="$BUILD_DIR/examples/shmetrics-demo-writer"
  local ops_url="http://127.0.0.1:$OPS_PORT/metrics"
  local judge_url="http://127.0.0.1:$JUDGE_PORT/metrics"

  [[ -x "$exporter" ]] || die "$exporter was not built"
  [[ -x "$writer" ]] || die "$writer was not built"
  local port
  for port in "$OPS_PORT" "$JUDGE_PORT"; do
    ! port_busy "$port" || die "127.0.0.1:$port is already in use (choose another with --ops-port / --judge-port)"
  done

  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  mkdir -p "$LOG_DIR"
  remove_segments # a stale pair from an earlier run with the same PID
  step "instance $INSTANCE, $WORKERS workers per writer"
  start "ops-writer" "$LOG_DIR/ops-writer.log" \
    "$writer" --instance "$INSTANCE" --role ops --workers "$WORKERS"
  start "judge-writer" "$LOG_DIR/judge-writer.log" \
    "$writer" --instance "$INSTANCE" --role judge --workers "$WORKERS"
  start "exporter" "$LOG_DIR/exporter.log" \
    "$exporter" --instance "$INSTANCE" \
    --ops-listen "127.0.0.1:$OPS_PORT" --judge-listen "127.0.0.1:$JUDGE_PORT"

  wait_ready "$ops_url" "$judge_url"

  local role url body
  for role in ops judge; do
    url="$ops_url"
    [[ "$role" == ops ]] || url="$judge_url"
    body="$(curl -fsS --max-time 5 "$url")" || die "could not fetch $url"
    printf '\n==> %s role: %s\n%s\n' "$role" "$url" "$body"
  done
  printf '\n'
  step "look again:  curl $ops_url   (judge: curl $judge_url)"
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
