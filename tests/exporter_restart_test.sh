#!/usr/bin/env bash
# Exporter death and restarts change nothing for writers and lose nothing:
# writers at full speed keep counting while the exporter is SIGKILLed and
# restarted; every count seen before is seen again (counters never go back),
# and the counts grew while no exporter was running.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=script_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/script_lib.sh"
take_script_args "$@"
begin_test_run restart
segment=$INSTANCE.ops

checks_now() {  # rbac_reload_checks_total as the running exporter serves it
  curl -fsS --max-time 5 "http://127.0.0.1:$OPS_PORT/metrics" | awk '$1 == "rbac_reload_checks_total" {print $2}'
}
checks_once() {  # the same, read without any exporter running
  "$EXPORTER" --once "$segment" 2>/dev/null | awk '$1 == "rbac_reload_checks_total" {print $2}'
}
has_counts() { [[ -n $(checks_once) ]]; }
checks_grew_past() { { [[ $(checks_once) -gt $1 ]]; } 2>/dev/null; }
kill_exporter() { stop_process "$EXPORTER_PID" "$STOP_SECONDS" KILL; }

start_demo_writer writer ops 2 --busy
writer_pid=$BG_PID
poll_until "$POLL_SECONDS" has_counts || die "timed out waiting for the writers' first counts"
start_exporter exporter
first=$(checks_now)
kill_exporter
# No exporter now: the writers go on.
while_dead=$(checks_once)
check "writers kept counting while the exporter was dead (past $while_dead)" \
  poll_until "$POLL_SECONDS" checks_grew_past "$while_dead"
grown=$(checks_once)
start_exporter exporter
second=$(checks_now)
# What was counted while no exporter ran is there: a restarted exporter
# reads the writers' cells, it keeps nothing of its own.
check "the restarted exporter shows what was counted while it was dead ($first -> $grown -> $second)" \
  test "$second" -ge "$grown" -a "$grown" -gt "$first"
# Stop the writers: the final count is fixed, and a fresh exporter shows it.
stop_process "$writer_pid" "$STOP_SECONDS"
final=$(checks_now)
kill_exporter
start_exporter exporter
check "a restarted exporter shows the same final count ($final)" test "$(checks_now)" = "$final"
check "the final count is at least any count seen before" test "$final" -ge "$second"
