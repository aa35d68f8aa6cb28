#!/usr/bin/env bash
# `meson install` delivers what a user needs: the library, its headers, the
# pkg-config file `shmetrics` and shmetrics-exporter; the README's example
# compiles and links against the installed copy through pkg-config alone.
set -euo pipefail
build_dir=$1 example=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
passed=0 failed=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@" >"$stage/out" 2>&1; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAILED: $what"; sed 's/^/  /' "$stage/out"; fi
}
meson install -C "$build_dir" --no-rebuild --destdir "$stage/root" >/dev/null
prefix=$(meson introspect "$build_dir" --buildoptions | /usr/bin/python3 -c \
  'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')
root="$stage/root$prefix"
pc_dir=$(dirname "$(find "$root" -name shmetrics.pc | head -n1)")
check "shmetrics.pc is installed" test -f "$pc_dir/shmetrics.pc"
check "shmetrics-exporter is installed and answers --help" "$root/bin/shmetrics-exporter" --help
check "the public header is installed" test -f "$root/include/shmetrics/shmetrics.h"
flags=$(PKG_CONFIG_PATH="$pc_dir" pkg-config --define-variable=prefix="$root" --cflags --libs shmetrics)
# shellcheck disable=SC2086 # flags are words on purpose
check "the README example builds against the installed library" \
  g++ -std=c++20 "$example" -o "$stage/example" $flags
check "the example links to the installed SONAME" \
  bash -c "readelf -d '$stage/example' | grep -q 'NEEDED.*libshmetrics.so.[0-9]'"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
