#!/usr/bin/env bash
# tests/segment_squat_test.sh EXPORTER DEMO_WRITER OPS_SERVER: another local
# user (nobody) plants a file, a symlink and a FIFO where segments used to live
# (/dev/shm/shmetrics.<instance>.<role>) and where they live now (the segment
# directory's name, here in a sticky world-writable directory like /dev/shm).
#   - Under the old names: the example Ops server ignores them; it serves, and
#     its segment in the segment directory is up.
#   - Under the new name: the server logs one event=metrics_disabled line
#     naming the directory and why, and keeps serving (/healthz 200, RBAC
#     answers), without metrics; nothing is written through the planted path.
# Needs root (to act as nobody); exits non-zero on any failure.
set -euo pipefail
# shellcheck source=tests/script_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/script_lib.sh"

take_script_args "$1" "$2"
OPS_SERVER=$3
begin_test_run squat
[ -x "$OPS_SERVER" ] || die "ops server $OPS_SERVER is not an executable file"
[ "$(id -u)" -eq 0 ] || die "must run as root, to plant files as user nobody"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

cat >"$WORK/map.json" <<'JSON'
{"require_all": false,
 "routes": [{"pattern": "/ops/status", "methods": ["GET"], "scopes": ["ops:read"]}]}
JSON

# plant KIND PATH: as nobody, a 1-byte file, a symlink (to a directory of
# nobody's), a FIFO or a directory of nobody's at PATH.
plant() {
  local kind=$1 path=$2
  rm -rf -- "$path" "$path.target"
  case $kind in
    file) as_nobody sh -c 'printf x >"$1"' sh "$path" ;;
    symlink) as_nobody sh -c 'mkdir "$1.target" && ln -s "$1.target" "$1"' sh "$path" ;;
    fifo) as_nobody mkfifo -m 0666 "$path" ;;
    directory) as_nobody mkdir -m 0755 "$path" ;;
  esac
}

# start_ops NAME [ENV...]: the Ops server with 2 workers on 127.0.0.1:0;
# $OPS_SERVER_PID, $APP_PORT (0 when it did not listen).
start_ops() {
  local name=$1
  shift
  start_bg "$name" env "$@" "$OPS_SERVER" --instance "$INSTANCE" --listen 127.0.0.1:0 --workers 2 \
    --rbac-map "$WORK/map.json"
  OPS_SERVER_PID=$BG_PID
  poll_until "$POLL_SECONDS" grep -q 'event=listening' "$WORK/$name.err" || true
  APP_PORT=$({ grep -o 'event=listening.*address=127\.0\.0\.1:[0-9]*' "$WORK/$name.err" || true; } |
    head -n 1 | sed 's/.*://')
  APP_PORT=${APP_PORT:-0}
}

serves() {  # serves NAME: /healthz 200 and the RBAC middleware answers /ops/status (403 without scopes)
  http_request "$1-healthz" "$APP_PORT" /healthz
  [ "$HTTP_STATUS" = 200 ] || return 1
  http_request "$1-status" "$APP_PORT" /ops/status
  [ "$HTTP_STATUS" = 403 ] || [ "$HTTP_STATUS" = 200 ]
}

old_name=/dev/shm/shmetrics.$INSTANCE.ops
for kind in file symlink fifo; do
  plant "$kind" "$old_name"
  start_ops "old-$kind"
  check "a $kind planted at the old name $old_name: the server listens" [ "$APP_PORT" -ne 0 ]
  check "... and serves" serves "old-$kind"
  check "... its segment in $(segment_dir) is up" \
    bash -c "\"\$1\" --once \"\$2\" | grep -qx 'shmetrics_segment_up{role=\"once\"} 1'" _ "$EXPORTER" "$INSTANCE.ops"
  check "... and it logged no metrics_disabled" bash -c "! grep -q metrics_disabled '$WORK/old-$kind.err'"
  stop_process "$OPS_SERVER_PID" "$STOP_SECONDS"
  rm -rf -- "$old_name" "$old_name.target"
done

fake_shm=$(mktemp -d /dev/shm/test-squat.XXXXXX)
chmod 1777 "$fake_shm"
squatted=$fake_shm/shmetrics-0
for kind in file symlink fifo directory; do
  plant "$kind" "$squatted"
  start_ops "new-$kind" SHMETRICS_SEGMENT_DIR="$squatted"
  check "$kind planted at the segment directory's name: the server still listens" [ "$APP_PORT" -ne 0 ]
  check "... and serves without metrics" serves "new-$kind"
  check "... after one event=metrics_disabled line naming $squatted" \
    test "$(grep -c "event=metrics_disabled.*$squatted" "$WORK/new-$kind.err")" -eq 1
  check "... nothing was created through it" bash -c "[ ! -e '$squatted.target/$INSTANCE.ops' ] && [ ! -e '$squatted/$INSTANCE.ops' ]"
  stop_process "$OPS_SERVER_PID" "$STOP_SECONDS"
done
rm -rf -- "$fake_shm"

# The master's supervision: a worker SIGKILLed is reaped, logged, and
# replaced, and the server keeps serving.
live_workers() {  # the live children of the Ops server, one pid a line
  local pid
  for pid in $(cat "/proc/$OPS_SERVER_PID/task/$OPS_SERVER_PID/children" 2>/dev/null); do
    if [[ -e /proc/$pid && $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then echo "$pid"; fi
  done
  return 0
}
replaced() {  # replaced PID: two live workers again, PID not among them
  local now
  now=$(live_workers)
  [[ $(wc -l <<<"$now") -eq 2 ]] && ! grep -qx "$1" <<<"$now"
}
start_ops prefork
check "the Ops server listens with 2 workers" \
  bash -c "[ '$APP_PORT' -ne 0 ] && [ \$(cat /proc/$OPS_SERVER_PID/task/$OPS_SERVER_PID/children | wc -w) -eq 2 ]"
victim=$(live_workers)
victim=${victim%%$'\n'*}  # the first (no pipe into head: SIGPIPE under pipefail)
kill -KILL "$victim"
check "a SIGKILLed worker ($victim) is logged as died by signal 9" \
  poll_until "$POLL_SECONDS" grep -q "event=worker_died pid=$victim status=signal_9" "$WORK/prefork.err"
check "... and replaced: two live workers again" poll_until "$POLL_SECONDS" replaced "$victim"
check "... and the server serves" serves prefork
stop_process "$OPS_SERVER_PID" "$STOP_SECONDS"
