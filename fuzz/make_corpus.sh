#!/usr/bin/env bash
# fuzz/make_corpus.sh: regenerate the seed corpus in fuzz/corpus/.
#
# Builds fuzz/make_corpus.cc together with libshmetrics' sources (so the
# segments are written by the library of this checkout, whatever state build/
# is in) into build-fuzz/, runs it, and replaces the files in fuzz/corpus/.
# It creates a few small segments in the default segment directory (fzc<pid>.*) and
# removes them again. The generated files are committed; run this after a
# layout change (kLayoutVersion) and commit the result.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out=build-fuzz
mkdir -p "$out"
CXX="${CXX:-g++}"
echo "==> building $out/make_corpus"
"$CXX" -std=c++20 -O1 -g -pthread \
  -Iwriter_lib/include -Ishm/include -Iwriter_lib/src \
  fuzz/make_corpus.cc writer_lib/src/*.cc shm/src/*.cc \
  -o "$out/make_corpus"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/shmetrics-corpus.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
"$out/make_corpus" "$tmp"
mkdir -p fuzz/corpus
rm -f fuzz/corpus/*
cp "$tmp"/* fuzz/corpus/
echo "==> fuzz/corpus: $(find fuzz/corpus -type f | wc -l) files, $(du -cb fuzz/corpus/* | tail -n1 | cut -f1) bytes"
