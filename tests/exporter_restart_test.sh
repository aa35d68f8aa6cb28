#!/usr/bin/env bash
# Exporter death and restarts change nothing for writers and lose nothing:
# writers at full speed keep counting while the exporter is SIGKILLed and
# restarted; every count seen before is seen again (counters never go back),
# and the counts grew while no exporter was running.
set -euo pipefail
exporter=$1 writer=$2
instance=restart-$$-$RANDOM
segment=shmetrics.$instance.ops
work=$(mktemp -d)
pids=()
passed=0 failed=0
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -f "/dev/shm/$segment"
  rm -rf "$work"
}
trap cleanup EXIT
check() {  # check DESCRIPTION CONDITION...
  local what=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $what"
  else failed=$((failed + 1)); echo "FAILED: $what"; fi
}
wait_for() {  # wait_for DESCRIPTION COMMAND...: every 0.1 s, up to 20 s
  local what=$1; shift
  for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what"; exit 1
}
start_exporter() {
  : >"$work/exporter.log"
  "$exporter" --instance "$instance" --ops-listen 127.0.0.1:0 --judge-listen 127.0.0.1:0 \
    2>"$work/exporter.log" & exporter_pid=$!
  wait_for "the exporter's listener" grep -q 'role=ops address' "$work/exporter.log"
  port=$(grep -o 'role=ops address=127.0.0.1:[0-9]*' "$work/exporter.log" | grep -o '[0-9]*$')
}
checks_now() {  # rbac_reload_checks_total as the running exporter serves it
  curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" | awk '$1 == "rbac_reload_checks_total" {print $2}'
}
checks_once() {  # the same, read without any exporter running
  "$exporter" --once "$segment" 2>/dev/null | awk '$1 == "rbac_reload_checks_total" {print $2}'
}
has_counts() { [[ -n $(checks_once) ]]; }

"$writer" --instance "$instance" --role ops --workers 2 --busy 2>"$work/writer.log" & pids+=($!)
wait_for "the writers' first counts" has_counts
start_exporter
first=$(checks_now)
kill -KILL "$exporter_pid"; wait "$exporter_pid" 2>/dev/null || true
# No exporter now: the writers go on.
while_dead=$(checks_once)
wait_for "counts to grow with no exporter" bash -c "[[ \$('$exporter' --once '$segment' 2>/dev/null | awk '\$1 == \"rbac_reload_checks_total\" {print \$2}') -gt $while_dead ]]"
check "writers kept counting while the exporter was dead" true
start_exporter
pids+=("$exporter_pid")
second=$(checks_now)
check "nothing lost across the restart ($first -> $second)" test "$second" -ge "$first"
# Stop the writers: the final count is fixed, and a fresh exporter shows it.
kill -TERM "${pids[0]}"; wait "${pids[0]}" || true
final=$(checks_now)
kill -KILL "$exporter_pid"; wait "$exporter_pid" 2>/dev/null || true
start_exporter
pids+=("$exporter_pid")
check "a restarted exporter shows the same final count ($final)" test "$(checks_now)" = "$final"
check "the final count is at least any count seen before" test "$final" -ge "$second"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
