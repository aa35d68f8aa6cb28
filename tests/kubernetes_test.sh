#!/usr/bin/env bash
# deploy/kubernetes: every manifest valid against its kind's schema and the
# fields the deployment relies on (tests/kubernetes/validate.mjs, with the
# npm packages of tests/kubernetes/package-lock.json installed by `npm ci`
# into WORKDIR, kept between runs); and what the manifest assumes of the
# exporter: GET / answers 200 before the writers made any segment (its
# liveness probe), /healthz 503 (so it is no probe there).
#
# Usage: kubernetes_test.sh EXPORTER WORKDIR
set -uo pipefail
exporter=$(realpath "${1:?usage: kubernetes_test.sh EXPORTER WORKDIR}")
work=${2:?usage: kubernetes_test.sh EXPORTER WORKDIR}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v npm >/dev/null || { echo "FAIL: npm is not installed (Node.js 20 and npm: see TOOLCHAIN notes)"; exit 1; }
mkdir -p "$work"
if ! cmp -s "$root/tests/kubernetes/package-lock.json" "$work/package-lock.json" || [ ! -d "$work/node_modules" ]; then
  cp "$root/tests/kubernetes/package.json" "$root/tests/kubernetes/package-lock.json" "$work/"
  (cd "$work" && npm ci --no-audit --no-fund --loglevel=error) || { echo "FAIL: npm ci in $work"; exit 1; }
fi
cp "$root/tests/kubernetes/validate.mjs" "$work/"
node "$work/validate.mjs" "$root/deploy/kubernetes"
status=$?

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmetrics-k8s.XXXXXX")
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
"$exporter" --segment-dir "$tmp/segments" --ops-listen 127.0.0.1:0 --judge-listen 127.0.0.1:0 2>"$tmp/log" &
pid=$!
deadline=$((SECONDS + 20))
until grep -q 'event=listening role=ops address=127\.0\.0\.1:[1-9]' "$tmp/log"; do
  if ((SECONDS >= deadline)); then echo "FAIL: the exporter did not listen"; cat "$tmp/log"; exit 1; fi
  sleep 0.01
done
port=$(grep -o 'event=listening role=ops address=127\.0\.0\.1:[0-9]*' "$tmp/log" | sed 's/.*://')
landing=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")
health=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")
if [ "$landing" = 200 ]; then echo "ok: GET / answers 200 with no segment yet (the liveness probe)"; else echo "FAIL: GET / answered $landing with no segment"; status=1; fi
if [ "$health" = 503 ]; then echo "ok: GET /healthz answers 503 with no segment (no probe there)"; else echo "FAIL: GET /healthz answered $health with no segment"; status=1; fi
exit $status
