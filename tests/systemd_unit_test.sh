#!/usr/bin/env bash
# deploy/systemd with Debian's systemd-analyze: the exporter's unit verifies,
# its exposure (`systemd-analyze security --offline=yes`) is at most 2.0 and
# printed, it carries the hardening it promises, and its ExecReload makes a
# running exporter re-read its web configuration.
#
# Usage: systemd_unit_test.sh EXPORTER (the built binary)
#
# Without systemd as PID 1 here, `verify` checks a copy of the unit whose
# ExecStart names the built binary instead of /usr/bin/shmetrics-exporter (the
# Debian package's test verifies the installed unit itself), and the reload is
# the unit's ExecReload command run with $MAINPID set, as systemd runs it.
set -uo pipefail
exporter=$(realpath "${1:?usage: systemd_unit_test.sh EXPORTER}")
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../deploy/systemd" && pwd)"
unit="$dir/shmetrics-exporter.service"
work=$(mktemp -d "${TMPDIR:-/tmp}/shmetrics-systemd.XXXXXX")
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=tests/check_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/check_lib.sh"
setting() { sed -n "s/^$1=//p" "$unit"; }

# ------------------------------------------------------------------ verify
sed "s|^ExecStart=/usr/bin/shmetrics-exporter |ExecStart=$exporter |" "$unit" >"$work/shmetrics-exporter.service"
check "the unit names /usr/bin/shmetrics-exporter in ExecStart" grep -q '^ExecStart=/usr/bin/shmetrics-exporter ' "$unit"
check "systemd-analyze verify (ExecStart: the built binary)" \
  systemd-analyze verify --man=no "$work/shmetrics-exporter.service"

# ---------------------------------------------------------------- security
report=$(systemd-analyze security --offline=yes "$unit" 2>&1)
exposure=$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
echo "exposure: ${exposure:-none} (systemd-analyze security --offline=yes)"
check "exposure ${exposure:-none} is at most 2.0" awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }'
for want in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
  'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' 'SystemCallFilter=@system-service' \
  'CapabilityBoundingSet=' User=shmetrics-exporter Group=shmetrics; do
  check "the unit sets $want" grep -qx "$want" "$unit"
done
check "the unit bounds its memory (MemoryMax=$(setting MemoryMax))" test -n "$(setting MemoryMax)"
check "the unit reads its flags from /etc/default/shmetrics-exporter" \
  grep -qx 'EnvironmentFile=-/etc/default/shmetrics-exporter' "$unit"
check "the default file sets SHMETRICS_EXPORTER_ARGS, which ExecStart passes" \
  bash -c "grep -q '^SHMETRICS_EXPORTER_ARGS=' '$dir/shmetrics-exporter.default' && grep -q '\\\$SHMETRICS_EXPORTER_ARGS\$' '$unit'"
# The default flags parse: the exporter refuses unknown flags before it
# looks at segments (--help after them would hide that, so --version).
args=$(. "$dir/shmetrics-exporter.default" && echo "$SHMETRICS_EXPORTER_ARGS")
# shellcheck disable=SC2086
check "the default file's flags are the exporter's ($args)" "$exporter" $args --version

# ------------------------------------------------------------------ reload
# A running exporter with a web configuration adding a header; the file is
# changed, the unit's ExecReload run: the exporter logs the SIGHUP and serves
# the new header.
mkdir -m 0700 "$work/segments"
printf 'http_server_config:\n  headers:\n    X-Frame-Options: deny\n' >"$work/web.yml"
"$exporter" --segment-dir "$work/segments" --ops-listen 127.0.0.1:0 --judge-listen 127.0.0.1:0 \
  --web.config.file "$work/web.yml" 2>"$work/exporter.log" &
pid=$!
port_known() { grep -q 'event=listening role=ops address=127\.0\.0\.1:[1-9]' "$work/exporter.log"; }
if ! wait_for 20 port_known; then
  fail "the exporter did not start listening"
  cat "$work/exporter.log"
else
  port=$(grep -o 'event=listening role=ops address=127\.0\.0\.1:[0-9]*' "$work/exporter.log" | sed 's/.*://')
  header() { curl -s -D - -o /dev/null "http://127.0.0.1:$port/healthz" | tr -d '\r' | sed -n 's/^X-Frame-Options: //p'; }
  check "the header of the first configuration is served" test "$(header)" = deny
  printf 'http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n' >"$work/web.yml"
  reload=$(setting ExecReload)
  check "ExecReload sends SIGHUP to the main process ($reload)" test "$reload" = '/bin/kill -HUP $MAINPID'
  MAINPID=$pid
  eval "${reload//\$MAINPID/$MAINPID}"
  sighup_logged() { grep -q 'event=sighup action="re-reading the web configuration"' "$work/exporter.log"; }
  check "the exporter logged the reload" wait_for 20 sighup_logged
  after() { [ "$(header)" = sameorigin ]; }
  check "the header of the new configuration is served" wait_for 20 after
  check "the exporter still runs" kill -0 "$pid"
fi

check_summary
