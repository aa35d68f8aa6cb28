#!/usr/bin/env bash
# scripts/fuzz.sh: fuzz the exporter's untrusted segment reader with libFuzzer.
#
# Usage: scripts/fuzz.sh [SECONDS]     (default 60)
#   Installs clang and libclang-rt-14-dev when missing, builds
#   build-fuzz/segment_reader_fuzz (fuzz/segment_reader_fuzz.cc with the
#   reader's sources, under ASan+UBSan), and fuzzes for SECONDS seconds,
#   starting from a copy of fuzz/corpus/ (the committed corpus is not changed).
#   Prints the executions done; a crash, timeout, leak or out-of-memory fails
#   the run and its input is left under build-fuzz/artifacts/. Each input gets
#   at most TIMEOUT_SECONDS, RSS_LIMIT_MB of RSS and no single allocation over
#   MALLOC_LIMIT_MB: the target's renders are limited to about 1 MiB, so an
#   input that makes the reader spend more is a failure.
#   Env: FUZZ_LOG (default build-fuzz/fuzz.log) keeps libFuzzer's output.
# Ends with "1 passed, 0 failed" or "0 passed, 1 failed"; exits non-zero on failure.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_TO_RUN="${1:-60}"
TIMEOUT_SECONDS=5
RSS_LIMIT_MB=1024
MALLOC_LIMIT_MB=64
[[ "$SECONDS_TO_RUN" =~ ^[1-9][0-9]*$ ]] || die "SECONDS must be a positive integer, got \"$SECONDS_TO_RUN\""

OUT=build-fuzz
TARGET="$OUT/segment_reader_fuzz"
ARTIFACTS="$OUT/artifacts"
LOG="${FUZZ_LOG:-$OUT/fuzz.log}"

FUZZ_PACKAGES=(clang libclang-rt-14-dev libboost-dev)

finish() {
  if (($1 == 0)); then
    printf '1 passed, 0 failed\n'
  else
    printf '0 passed, 1 failed\n'
  fi
  exit "$1"
}

install_fuzz_deps() {
  local pkg missing=() sudo=()
  for pkg in "${FUZZ_PACKAGES[@]}"; do
    pkg_installed "$pkg" || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 \
      || die "not root and no sudo; install as root: apt-get install --no-install-recommends ${missing[*]}"
    sudo=(sudo)
  fi
  step "installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  # The runtime libFuzzer needs is only a Recommends of clang: name it.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends -q "${missing[@]}"
  for pkg in "${missing[@]}"; do
    pkg_installed "$pkg" || die "package $pkg is still not installed"
  done
}

# The reader, the role source serving it, and what they link: the exporter's
# text format, negotiation, gzip (zlib) and process metrics, SIGBUS guard and log, and all of shm/ (names, header check;
# segment_file.cc needs Boost's headers only).
SOURCES=(
  fuzz/segment_reader_fuzz.cc
  exporter/src/segment_reader.cc
  exporter/src/role_source.cc
  exporter/src/text_format.cc
  exporter/src/sigbus_guard.cc
  exporter/src/log.cc
  exporter/src/negotiation.cc
  exporter/src/gzip.cc
  exporter/src/process_metrics.cc
)
for f in shm/src/*.cc; do SOURCES+=("$f"); done

build_target() {
  mkdir -p "$OUT"
  # Rebuild when the target is missing or older than any source or header.
  if [[ -x "$TARGET" ]] \
    && [[ -z "$(find "${SOURCES[@]}" shm/include exporter/src scripts/fuzz.sh -newer "$TARGET" -print -quit)" ]]; then
    step "$TARGET is up to date"
    return 0
  fi
  step "building $TARGET"
  clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -Ishm/include -Iexporter/src "${SOURCES[@]}" -pthread -lz -o "$TARGET.tmp"
  mv -f "$TARGET.tmp" "$TARGET"
}

main() {
  command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script expects Debian 12"
  install_fuzz_deps
  build_target
  compgen -G "fuzz/corpus/*" >/dev/null || die "fuzz/corpus/ is empty (fuzz/make_corpus.sh writes it)"

  local work rc=0
  work="$(mktemp -d "${TMPDIR:-/tmp}/shmetrics-fuzz.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/corpus" "$ARTIFACTS"
  cp fuzz/corpus/* "$work/corpus/"

  step "fuzzing for ${SECONDS_TO_RUN}s from $(find "$work/corpus" -type f | wc -l) seeds (log: $LOG)"
  # Leak checks stay on (ASan's default); UBSan stops at the first report.
  ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    "$TARGET" -max_total_time="$SECONDS_TO_RUN" -timeout="$TIMEOUT_SECONDS" -rss_limit_mb="$RSS_LIMIT_MB" \
    -malloc_limit_mb="$MALLOC_LIMIT_MB" \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$ARTIFACTS/" \
    "$work/corpus" >"$LOG" 2>&1 || rc=$?

  local done_line execs rate
  done_line="$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$LOG" | tail -n1 || true)"
  execs="$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$LOG" | tail -n1)"
  rate="$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$LOG" | tail -n1)"
  [[ -z $done_line ]] || step "libFuzzer: $done_line"
  [[ -z $execs ]] || step "executions: $execs (${rate:-?} exec/s), corpus now $(find "$work/corpus" -type f | wc -l) inputs"

  if ((rc != 0)) || [[ -z $done_line ]]; then
    warn "the fuzzer failed (exit $rc); the end of $LOG:"
    tail -n 60 "$LOG" >&2
    local artifact
    artifact="$(sed -nE 's/.*Test unit written to ([^ ]+).*/\1/p' "$LOG" | tail -n1)"
    if [[ -n $artifact ]]; then
      warn "failing input: $artifact (reproduce: $TARGET $artifact)"
    fi
    finish 1
  fi
  finish 0
}

main "$@"
