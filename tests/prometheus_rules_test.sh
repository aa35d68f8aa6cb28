#!/usr/bin/env bash
# deploy/prometheus with Debian's promtool: the rules check, every alert's
# unit tests pass (rules_test.yml: each alert firing and not), and both
# scrape configurations (plain, TLS with basic auth) are valid.
set -uo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../deploy/prometheus" && pwd)"
# shellcheck source=tests/check_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/check_lib.sh"
cd "$dir" || exit 1
check "promtool check rules rules.yml" promtool check rules rules.yml
check "promtool test rules rules_test.yml" promtool test rules rules_test.yml
# Every alert of rules.yml has a test in rules_test.yml.
missing=()
for alert in $(sed -n 's/^ *- alert: *//p' rules.yml); do
  grep -q "alertname: $alert\$" rules_test.yml || missing+=("$alert")
done
check "every alert has a unit test (missing: ${missing[*]:-none})" test "${#missing[@]}" -eq 0
check "promtool check config prometheus.yml" promtool check config prometheus.yml
check "promtool check config prometheus-tls.yml" promtool check config prometheus-tls.yml
check_summary
