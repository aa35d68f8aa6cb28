#!/usr/bin/env bash
# scripts/integration.sh: the whole path for real. Starts the preforked Ops and
# Judge servers, shmetrics-exporter and a Prometheus server (Debian's, on
# 127.0.0.1, scraping both roles every second over TLS with basic auth, from a
# --web.config.file with a certificate and a bcrypt hash made here), drives
# known traffic, and asks Prometheus's HTTP API for exact totals and the work
# order's PromQL examples.
#
# Usage: scripts/integration.sh [BUILD_DIR]   (default: build, already built)
# Prints "N passed, N failed"; exits non-zero when a check fails. Stops
# everything it started and removes its files, also on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/segments.sh
source scripts/segments.sh
build_dir=${1:-build}
exporter=$build_dir/exporter/shmetrics-exporter
ops_server=$build_dir/examples/shmetrics-ops-server
judge_server=$build_dir/examples/shmetrics-judge-server
for bin in "$exporter" "$ops_server" "$judge_server"; do
  [[ -x $bin ]] || { echo "integration: $bin is missing: build first (scripts/test.sh)"; exit 2; }
done
command -v prometheus >/dev/null || { echo "integration: prometheus is not installed"; exit 2; }
command -v openssl >/dev/null || { echo "integration: openssl is not installed"; exit 2; }

workers=2
instance=it-$$-$RANDOM
work=$(mktemp -d)
pids=()
passed=0 failed=0

cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ $failed -gt 0 || $rc -ne 0 ]]; then
    for log in "$work"/*.log; do echo "--- last lines of $(basename "$log")"; tail -n 15 "$log"; done
  fi
  remove_segment_file "$(segment_dir)/$instance.ops"
  remove_segment_file "$(segment_dir)/$instance.judge"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check() {  # check DESCRIPTION EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then
    passed=$((passed + 1)); echo "ok: $1 = $3"
  else
    failed=$((failed + 1)); echo "FAILED: $1: expected $2, got $3"
  fi
}

# wait_for DESCRIPTION COMMAND...: polls every 0.2 s, up to 30 s.
wait_for() {
  local what=$1; shift
  for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "integration: timed out waiting for $what"; return 1
}

address_in_log() {  # the address a server logged as event=listening
  grep -o 'event=listening[^\n]*address=127.0.0.1:[0-9]*' "$1" | head -n1 | grep -o '[0-9]*$'
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- the RBAC map both servers enforce ---------------------------------------
cat >"$work/map.json" <<'EOF'
{
  "require_all": false,
  "routes": [
    {"pattern": "/ops/status", "methods": ["GET"], "scopes": ["ops:read"]},
    {"pattern": "/ops/jobs", "methods": ["GET", "POST"], "scopes": ["ops:write"]},
    {"pattern": "/judge/submit", "methods": ["POST"], "scopes": ["judge:submit"]},
    {"pattern": "/judge/results/*", "methods": ["GET"], "scopes": ["judge:read"]}
  ]
}
EOF
touch "$work/ready"

# --- TLS and basic auth: a CA, a certificate for 127.0.0.1, a bcrypt hash -----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=integration-ca \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>"$work/openssl.log"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
  -keyout "$work/server.key" -out "$work/server.csr" 2>>"$work/openssl.log"
# Also the name deploy/prometheus/prometheus-tls.yml verifies (server_name).
printf 'subjectAltName=IP:127.0.0.1,DNS:metrics.example.internal\n' >"$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
  -extfile "$work/san.ext" -out "$work/server.crt" 2>>"$work/openssl.log"
scrape_password=$(head -c 18 /dev/urandom | base64)
printf '%s' "$scrape_password" >"$work/password"
hash=$(/usr/bin/python3 -c 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))' \
  "$scrape_password" 2>/dev/null)
cat >"$work/web.yml" <<WEB
tls_server_config:
  cert_file: server.crt
  key_file: server.key
basic_auth_users:
  prometheus: '$hash'
WEB

# --- start everything ---------------------------------------------------------
"$exporter" --instance "$instance" --ops-listen 127.0.0.1:0 --judge-listen 127.0.0.1:0 \
  --web.config.file "$work/web.yml" 2>"$work/exporter.log" & pids+=($!)
"$ops_server" --instance "$instance" --listen 127.0.0.1:0 --workers $workers \
  --rbac-map "$work/map.json" --reload-sec 1 2>"$work/ops-server.log" & pids+=($!)
"$judge_server" --instance "$instance" --listen 127.0.0.1:0 --workers $workers \
  --rbac-map "$work/map.json" --reload-sec 1 --readyz-file "$work/ready" \
  2>"$work/judge-server.log" & pids+=($!)
wait_for "the exporter's listeners" grep -q 'role=judge address' "$work/exporter.log"
wait_for "the servers' listeners" bash -c "grep -q listening '$work/ops-server.log' && grep -q listening '$work/judge-server.log'"
exporter_ops=$(grep -o 'role=ops address=127.0.0.1:[0-9]*' "$work/exporter.log" | grep -o '[0-9]*$')
exporter_judge=$(grep -o 'role=judge address=127.0.0.1:[0-9]*' "$work/exporter.log" | grep -o '[0-9]*$')
ops=$(address_in_log "$work/ops-server.log")
judge=$(address_in_log "$work/judge-server.log")

prom_port=$(free_port)
# The shipped TLS configuration (deploy/prometheus/prometheus-tls.yml) and its
# rules, as an operator adapts them: this CA, this password file, the
# exporter's ports, every second.
/usr/bin/python3 - deploy/prometheus/prometheus-tls.yml "$work/prometheus.yml" "$work" \
  "$exporter_ops" "$exporter_judge" "$PWD/deploy/prometheus/rules.yml" <<'PY'
import sys, yaml
src, out, work, ops, judge, rules = sys.argv[1:]
c = yaml.safe_load(open(src))
c["global"].update(scrape_interval="1s", evaluation_interval="1s")
c["rule_files"] = [rules]
ports = {"ops": ops, "judge": judge}
assert sorted(j["job_name"] for j in c["scrape_configs"]) == ["judge", "ops"], c["scrape_configs"]
for job in c["scrape_configs"]:
    assert job["scheme"] == "https" and job["tls_config"]["server_name"] == "metrics.example.internal", job
    job["tls_config"]["ca_file"] = work + "/ca.crt"
    job["basic_auth"]["password_file"] = work + "/password"
    job["static_configs"] = [{"targets": ["127.0.0.1:" + ports[job["job_name"]]]}]
yaml.safe_dump(c, open(out, "w"))
PY

# Without the password, or without TLS, nothing is served.
for port in "$exporter_ops" "$exporter_judge"; do
  status=$(curl -sS --max-time 5 --cacert "$work/ca.crt" -o /dev/null -w '%{http_code}' \
    "https://127.0.0.1:$port/metrics" 2>/dev/null || true)
  check "https://127.0.0.1:$port/metrics without credentials answers" 401 "$status"
  status=$(curl -sS --max-time 5 --cacert "$work/ca.crt" -u prometheus:wrong -o /dev/null -w '%{http_code}' \
    "https://127.0.0.1:$port/metrics" 2>/dev/null || true)
  check "https://127.0.0.1:$port/metrics with a wrong password answers" 401 "$status"
  status=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics" 2>/dev/null || true)
  check "plain http://127.0.0.1:$port/metrics answers" 400 "$status"
done
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" 2>"$work/prometheus.log" & pids+=($!)

# query EXPR: the value of the first sample of an instant query, or "none".
query() {
  curl -fsS --max-time 5 "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")'
}
is_value() { [[ "$(query "$1")" == "$2" ]]; }

wait_for "prometheus to be ready" curl -fsS "http://127.0.0.1:$prom_port/-/ready"
# Traffic starts only once both targets are up and the series exist (at 0).
wait_for "both targets up" bash -c "[[ \$(curl -fsS 'http://127.0.0.1:$prom_port/api/v1/query' --data-urlencode 'query=sum(up)') == *'\"2\"'* ]]"
wait_for "ops series in prometheus" is_value 'rbac_allowed_total{job="ops"}' 0
wait_for "judge series in prometheus" is_value 'readyz_checks_total{job="judge"}' 0

# --- known traffic -------------------------------------------------------------
request() {  # request METHOD URL [SCOPES]: prints the HTTP status
  local args=(-s -o /dev/null -w '%{http_code}' --max-time 5 -X "$1" "$2")
  [[ $1 == POST ]] && args+=(--data '')   # Content-Length: 0, as real clients send
  [[ $# -ge 3 ]] && args+=(-H "X-Scopes: $3")
  curl "${args[@]}" || true
}
ops_allowed=0 ops_forbidden=0 ops_matched=0
send_ops() {  # send_ops EXPECTED_STATUS MATCHED METHOD PATH [SCOPES]
  local status
  status=$(request "$3" "http://127.0.0.1:$ops$4" "${@:5}")
  [[ $status == "$1" ]] || { echo "FAILED: $3 $4 answered $status, expected $1"; failed=$((failed + 1)); }
  if [[ $1 == 200 || $1 == 201 ]]; then ops_allowed=$((ops_allowed + 1)); else ops_forbidden=$((ops_forbidden + 1)); fi
  [[ $2 == yes ]] && ops_matched=$((ops_matched + 1))
  return 0
}
for _ in $(seq 20); do send_ops 200 yes GET /ops/status ops:read; done
for _ in $(seq 5); do send_ops 403 yes GET /ops/status; done            # no scopes
for _ in $(seq 3); do send_ops 403 yes POST /ops/jobs ops:read; done    # wrong scope
for _ in $(seq 2); do send_ops 403 no GET /ops/unknown ops:read; done   # no rule: refused
for _ in $(seq 2); do send_ops 400 yes GET /ops/status 'ops:read, bad!'; done  # malformed
send_ops 201 yes POST /ops/jobs 'ops:read ops:write'
# An oversized header: refused by cpp-httplib before routing (not counted),
# and the worker stays up.
big=$(head -c 20000 /dev/zero | tr '\0' a)
oversized=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "X-Big: $big" \
  -H 'X-Scopes: ops:read' "http://127.0.0.1:$ops/ops/status" || true)
check "an oversized header answers 400" 400 "$oversized"
send_ops 200 yes GET /ops/status ops:read

judge_allowed=0 judge_forbidden=0
for _ in $(seq 6); do
  [[ $(request POST "http://127.0.0.1:$judge/judge/submit" judge:submit) == 202 ]] && judge_allowed=$((judge_allowed + 1))
done
for _ in $(seq 4); do
  [[ $(request POST "http://127.0.0.1:$judge/judge/submit") == 403 ]] && judge_forbidden=$((judge_forbidden + 1))
done
readyz_ok=0 readyz_failed=0
for _ in $(seq 6); do [[ $(request GET "http://127.0.0.1:$judge/readyz") == 200 ]] && readyz_ok=$((readyz_ok + 1)); done
rm "$work/ready"
for _ in $(seq 2); do [[ $(request GET "http://127.0.0.1:$judge/readyz") == 503 ]] && readyz_failed=$((readyz_failed + 1)); done
check "judge requests answered as expected" "6 4 6 2" "$judge_allowed $judge_forbidden $readyz_ok $readyz_failed"

# One map change, replaced atomically; then allowed requests until a worker
# reports the reload (each request is counted like the others).
python3 - "$work/map.json" <<'EOF'
import json, os, sys
path = sys.argv[1]
m = json.load(open(path))
m["routes"].append({"pattern": "/ops/audit", "methods": ["GET"], "scopes": ["ops:audit"]})
open(path + ".new", "w").write(json.dumps(m, indent=2))
os.rename(path + ".new", path)
EOF
hits() { "$exporter" --once "$instance.ops" 2>/dev/null | awk '$1 == "rbac_reload_hit_total" {print $2}'; }
for _ in $(seq 150); do
  [[ $(hits) -ge 1 ]] && break
  send_ops 200 yes GET /ops/status ops:read
  sleep 0.2
done

# --- what Prometheus saw ---------------------------------------------------------
wait_for "prometheus to see the final ops totals" is_value 'rbac_allowed_total{job="ops"}' "$ops_allowed"
wait_for "prometheus to see the final readyz totals" is_value 'readyz_checks_total{job="judge"}' 8
check 'rbac_allowed_total{job="ops"}' "$ops_allowed" "$(query 'rbac_allowed_total{job="ops"}')"
check 'rbac_forbidden_total{job="ops"}' "$ops_forbidden" "$(query 'rbac_forbidden_total{job="ops"}')"
check 'rbac_route_matches_total{job="ops"}' "$ops_matched" "$(query 'rbac_route_matches_total{job="ops"}')"
check 'rbac_allowed_total{job="judge"}' 6 "$(query 'rbac_allowed_total{job="judge"}')"
check 'rbac_forbidden_total{job="judge"}' 4 "$(query 'rbac_forbidden_total{job="judge"}')"
check 'readyz_checks_total{job="judge"}' 8 "$(query 'readyz_checks_total{job="judge"}')"
check 'readyz_failures_total{job="judge"}' 2 "$(query 'readyz_failures_total{job="judge"}')"
# Every sample here is seconds old, so both windows hold all of them: this
# checks the ratios' way through the servers, the exporter and Prometheus.
# How the windows differ (a sample older than 1m counted in 5m only) is
# tested with a clock the test moves: test_readyz_metrics_sliding_window_1m.
check 'readyz_success_ratio_5m{job="judge"}' 0.75 "$(query 'readyz_success_ratio_5m{job="judge"}')"
check 'readyz_success_ratio_1m{job="judge"}' 0.75 "$(query 'readyz_success_ratio_1m{job="judge"}')"
check 'readyz_status{job="judge",status="degraded"}' 1 "$(query 'readyz_status{job="judge",status="degraded"}')"
# Prometheus (2.42 asks for OpenMetrics first, and gzip) got OpenMetrics,
# gzipped, and never the text format: the values above came through it.
check 'prometheus scraped ops as gzipped OpenMetrics' yes \
  "$(python3 -c "print('yes' if float('$(query 'shmetrics_exporter_scrapes_total{job="ops",format="openmetrics",encoding="gzip"}')') > 0 else 'no')")"
check 'prometheus never scraped ops as text' 0 \
  "$(query 'sum(shmetrics_exporter_scrapes_total{job="ops",format="text"})')"

# Request latency, by route pattern and status class: counts exact, one
# series per handler pattern; refused and unrouted requests are route="none".
latency='http_request_duration_seconds_count{job="judge"'
wait_for "prometheus to see the judge latency counts" is_value "$latency,route=\"/readyz\",status_class=\"5xx\"}" 2
check "$latency,route=\"/readyz\",status_class=\"2xx\"}" 6 "$(query "$latency,route=\"/readyz\",status_class=\"2xx\"}")"
check "$latency,route=\"/judge/submit\",status_class=\"2xx\"}" 6 \
  "$(query "$latency,route=\"/judge/submit\",status_class=\"2xx\"}")"
check "$latency,route=\"none\",status_class=\"4xx\"}" 4 "$(query "$latency,route=\"none\",status_class=\"4xx\"}")"
check 'the +Inf bucket of /readyz 2xx is its count' 6 \
  "$(query 'http_request_duration_seconds_bucket{job="judge",route="/readyz",status_class="2xx",le="+Inf"}')"
check 'histogram_quantile(0.5, ...) of the judge latency is a positive number' yes \
  "$(python3 -c "v=float('$(query 'histogram_quantile(0.5, sum by (le) (http_request_duration_seconds_bucket{job="judge"}))')'); print('yes' if 0 < v < 10 else 'no (%s)' % v)")"
ops_hits=$(query 'rbac_reload_hit_total{job="ops"}')
check "rbac_reload_hit_total{job=\"ops\"} within 1..$workers" yes \
  "$([[ $ops_hits -ge 1 && $ops_hits -le $workers ]] && echo yes || echo "no ($ops_hits)")"
check 'rbac_map_info of the new version shown' 1 \
  "$(query "count(rbac_map_info{job=\"ops\",etag=\"$(sha256sum "$work/map.json" | cut -c1-64)\"})")"
# The work order's PromQL examples.
wait_for "a positive reload rate" bash -c "[[ \$(curl -fsS 'http://127.0.0.1:$prom_port/api/v1/query' --data-urlencode 'query=rate(rbac_reload_hit_total{job=\"ops\"}[5m]) > 0') == *'\"value\"'* ]]"
check 'rate(rbac_reload_hit_total[5m]) > 0' yes \
  "$(python3 -c "print('yes' if float('$(query 'rate(rbac_reload_hit_total{job="ops"}[5m])')') > 0 else 'no')")"
# (At its highest over the run: on a busy machine the last forbidden request
# can be more than a minute old by now, and the 1m rate then 0.)
check 'rate(rbac_forbidden_total[1m]) > 0 during the run' yes \
  "$(python3 -c "print('yes' if float('$(query 'max_over_time(rate(rbac_forbidden_total{job="ops"}[1m])[10m:1s])')') > 0 else 'no')")"
check 'readyz_success_ratio_5m' 0.75 "$(query 'readyz_success_ratio_5m')"
# deploy/prometheus/rules.yml, loaded through the shipped configuration: every
# group and rule there, each evaluated without error, and a recording rule's
# series present.
rules_state() {
  curl -fsS --max-time 5 "http://127.0.0.1:$prom_port/api/v1/rules" | /usr/bin/python3 -c '
import json, sys, yaml
groups = json.load(sys.stdin)["data"]["groups"]
want = yaml.safe_load(open(sys.argv[1]))["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [r["name"] + ": " + r.get("lastError", r["health"]) for r in rules if r["health"] != "ok"]
print(len(groups), "of", len(want), "groups,", len(rules), "of", sum(len(g["rules"]) for g in want), "rules,",
      len(bad), "unhealthy", *bad)' deploy/prometheus/rules.yml
}
rules_evaluated() { [[ "$(rules_state)" == *" 0 unhealthy" ]]; }
wait_for "every rule evaluated" rules_evaluated || true
state=$(rules_state)
want_groups=$(/usr/bin/python3 -c 'import yaml,sys; g=yaml.safe_load(open(sys.argv[1]))["groups"]; print(len(g), "of", len(g), "groups,", sum(len(x["rules"]) for x in g), "of", sum(len(x["rules"]) for x in g), "rules, 0 unhealthy")' deploy/prometheus/rules.yml)
check "the shipped rules, loaded and evaluated" "$want_groups" "$state"
wait_for "a recorded series" is_value 'count(job:rbac_decisions:rate5m{job="ops"} > 0)' 1 || true
check 'job:rbac_decisions:rate5m{job="ops"} > 0 (a recording rule of rules.yml)' 1 \
  "$(query 'count(job:rbac_decisions:rate5m{job="ops"} > 0)')"
# deploy/grafana's dashboard: every expression of every panel parses and
# returns data from this Prometheus (the dashboard's datasource variable
# aside, they are plain PromQL).
dashboard_queries() {
  /usr/bin/python3 - deploy/grafana/shmetrics.json "http://127.0.0.1:$prom_port" <<'PY'
import json, sys, urllib.parse, urllib.request
dashboard, prometheus = sys.argv[1:3]
bad = []
exprs = [t["expr"] for p in json.load(open(dashboard))["panels"] for t in p["targets"]]
for e in exprs:
    url = prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": e})
    try:
        r = json.load(urllib.request.urlopen(url, timeout=10))
    except Exception as err:  # a 400 names the parse error
        body = getattr(err, "read", lambda: b"")().decode(errors="replace")
        bad.append(f"{e}: {err} {body}")
        continue
    if r.get("status") != "success" or not r["data"]["result"]:
        bad.append(f"{e}: {r.get('status')}, {len(r.get('data', {}).get('result', []))} series")
print(f"{len(exprs)} expressions, {len(bad)} without data")
for b in bad:
    print("  " + b)
sys.exit(1 if bad or not exprs else 0)
PY
}
dashboard_out=$(dashboard_queries 2>&1) || true  # its lines say what failed
check "the Grafana dashboard's expressions all return data ($(head -n1 <<<"$dashboard_out"))" 0 \
  "$(grep -c '^  ' <<<"$dashboard_out")"
grep '^  ' <<<"$dashboard_out" || true
check 'servers stayed up' "0 0" "$(kill -0 "${pids[1]}"; echo -n "$? "; kill -0 "${pids[2]}"; echo $?)"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
