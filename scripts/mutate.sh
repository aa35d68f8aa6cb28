#!/usr/bin/env bash
# scripts/mutate.sh: the mutation harness. Applies each mutation of
# tests/mutations/*.txt alone to the tree, rebuilds incrementally (in
# build-mutate/), runs the whole meson test suite (and with --integration
# the integration stage), restores the file, and prints which tests caught
# each mutation, or MISSED. Not a CI stage: a full run takes hours
# (tests/MUTATIONS.md holds the table of the last one).
#
#   scripts/mutate.sh [--only NAME,...] [--integration] [--fail-fast] [--markdown FILE]
#   scripts/mutate.sh --list | --check
#
# Exit status: 0 every mutation caught; 3 some missed or did not compile;
# 1 the catalogue is stale or the unmutated suite fails; 2 a file could not
# be restored (the tree is checked against git's HEAD after every mutation).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh
case "${1:-}" in
  --list | --check) ;;
  *) install_deps ;;
esac
exec /usr/bin/python3 scripts/mutate.py "$@"
