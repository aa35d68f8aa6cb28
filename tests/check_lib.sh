# shellcheck shell=bash
# tests/check_lib.sh: the check counters of the deployment test scripts
# (systemd_unit_test.sh, debian_package_test.sh, prometheus_rules_test.sh).
# Source it, do not run it. The exporter's test scripts share script_lib.sh.
#   pass WHAT / fail WHAT     count a check: "ok: WHAT" or "FAIL: WHAT"
#   check WHAT COMMAND...     runs COMMAND: pass, or fail with its output's tail
#   wait_for SECONDS CMD...   CMD every 50 ms until it succeeds; 1 if it never did
#   check_summary             "N passed, N failed"; status 0 only when none
#                             failed and some passed
passed=0 failed=0
pass() { passed=$((passed + 1)); echo "ok: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; }
check() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$what"
  else
    fail "$what"
    printf '%s\n' "$out" | tail -n 30 | sed 's/^/  /'
  fi
}
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS >= deadline)) && return 1
    sleep 0.05
  done
}
check_summary() {
  echo "$passed passed, $failed failed"
  ((failed == 0 && passed > 0))
}
