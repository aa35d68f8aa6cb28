#!/usr/bin/env bash
# install_check.sh SOURCE_DIR BUILD_DIR: what a user gets from `meson install`.
#
# - A library-only build (-Dexamples=false -Dtests=false), configured where
#   pkg-config and CMake find no package at all, builds and installs
#   libshmetrics, its headers and shmetrics.pc into a temporary prefix; its
#   meson log shows no lookup of Catch2, nlohmann-json, cpp-httplib or the
#   bench/ libraries, and with -Dexporter=disabled none of the exporter's
#   (OpenSSL, yaml-cpp, libcrypt) either. Without them it builds no exporter.
# - The installed library's SONAME is libshmetrics.so.<kLayoutVersion>, the
#   value the installed layout.h gives a compiler.
# - The README's first example, saved as the README says, compiles with the
#   README's own `g++ ... $(pkg-config ...)` line (both read from README.md, so
#   README and test cannot drift) against that prefix, and runs: in a private
#   /dev/shm its eight processes count into one segment, read with BUILD_DIR's
#   exporter.
# - BUILD_DIR's full install also delivers a working shmetrics-exporter.
# shellcheck disable=SC2317 # its functions run through check and unshare
set -euo pipefail
src=$(cd "$1" && pwd) build_dir=$(cd "$2" && pwd)
stage=$(mktemp -d "${TMPDIR:-/tmp}/shmetrics-install.XXXXXX")
trap 'rm -rf "$stage"' EXIT
passed=0 failed=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@" >"$stage/out" 2>&1; then passed=$((passed + 1)); echo "ok: $what"; else
    failed=$((failed + 1)); echo "FAILED: $what"; sed 's/^/  /' "$stage/out"; fi
}
finish() {
  echo "$passed passed, $failed failed"
  exit $((failed == 0 ? 0 : 1))
}

# --- The library alone, with no package pkg-config or CMake could find. ---
mkdir -p "$stage/no-packages"
printf "[binaries]\ncmake = '%s'\n" "$stage/no-cmake" >"$stage/native.ini"
library_only_setup() {  # library_only_setup DIR MESON_OPTION...
  local dir=$1; shift
  env PKG_CONFIG_LIBDIR="$stage/no-packages" PKG_CONFIG_PATH= \
    meson setup "$dir" "$src" --native-file "$stage/native.ini" \
    -Dexamples=false -Dtests=false --prefix "$stage/prefix" "$@"
}
# no_lookup_of LOG NAME...: LOG (a meson log) records no lookup of any NAME.
no_lookup_of() {
  local log=$1 names; shift
  names=$(IFS='|'; echo "$*")
  ! grep -Ei "(Determining|Run-time) dependency '?($names)\b" "$log"
}
optional=(catch2 nlohmann_json cpp-httplib benchmark prometheus-cpp-core)
exporter_deps=(openssl libssl libcrypto yaml-cpp libcrypt)

lib_build="$stage/library-only"
check "-Dexamples=false -Dtests=false configures with no pkg-config or CMake package" \
  library_only_setup "$lib_build"
[[ -f $lib_build/build.ninja ]] || finish
check "it looks up none of: ${optional[*]}" \
  no_lookup_of "$lib_build/meson-logs/meson-log.txt" "${optional[@]}"
check "-Dexporter=disabled configures too" \
  library_only_setup "$stage/no-exporter" -Dexporter=disabled
check "and looks up none of those nor the exporter's: ${exporter_deps[*]}" \
  no_lookup_of "$stage/no-exporter/meson-logs/meson-log.txt" "${exporter_deps[@]}" "${optional[@]}"
check "the library-only build compiles and installs" \
  bash -c "meson compile -C '$lib_build' -j 2 && meson install -C '$lib_build' --no-rebuild"

prefix="$stage/prefix"
pc_file=$(find "$prefix" -name shmetrics.pc | head -n1)
check "shmetrics.pc is installed" test -f "$pc_file"
[[ -f $pc_file ]] || finish
pc_dir=$(dirname "$pc_file")
lib_dir=$(PKG_CONFIG_PATH="$pc_dir" pkg-config --variable=libdir shmetrics)
check "the public header is installed" test -f "$prefix/include/shmetrics/shmetrics.h"
check "no exporter without its dependencies (no yaml-cpp without pkg-config)" \
  test ! -e "$prefix/bin/shmetrics-exporter"

# --- The SONAME is the layout version the installed headers declare. ---
cat >"$stage/layout_version.cc" <<'EOF'
#include <shmetrics/shm/layout.h>
#include <cstdio>
int main() { std::printf("%u\n", shmetrics::shm::kLayoutVersion); }
EOF
# shellcheck disable=SC2046 # flags are words on purpose
check "a program prints the installed kLayoutVersion" \
  g++ "$stage/layout_version.cc" -o "$stage/layout_version" \
  $(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags shmetrics)
layout_version=$("$stage/layout_version" 2>/dev/null || echo none)
soname=$(readelf -d "$lib_dir/libshmetrics.so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
check "the installed SONAME ($soname) is libshmetrics.so.<kLayoutVersion> ($layout_version)" \
  test "$soname" = "libshmetrics.so.$layout_version"

# --- The README's example, built and run as the README tells a user. ---
work="$stage/user"
mkdir -p "$work"
# The first ```cpp block is the example (readme_example_check.py pins it to
# examples/readme_example.cc); the README says to save it as prog.cc.
awk '/^```cpp$/ {inside = 1; next} inside && /^```$/ {exit} inside' "$src/README.md" >"$work/prog.cc"
mapfile -t commands < <(awk '/^```sh$/ {inside = 1; next} /^```$/ {inside = 0} inside && /^g\+\+ /' "$src/README.md")
check "README.md has one g++ command line, in a \`\`\`sh block (found ${#commands[@]})" \
  test "${#commands[@]}" -eq 1
command=${commands[0]:-false}
check "the README's '$command' builds the README example against the installed library" \
  env -C "$work" PKG_CONFIG_PATH="$pc_dir" bash -c "$command"
check "the example links to libshmetrics.so.$layout_version" \
  bash -c "readelf -d '$work/a.out' | grep -F '[libshmetrics.so.$layout_version]'"

# --- A C program through the C API and shmetrics-c.pc. ---
check "shmetrics-c.pc is installed beside shmetrics.pc" test -f "$pc_dir/shmetrics-c.pc"
# shellcheck disable=SC2046 # flags are words on purpose
check "the C example builds as C11 with -Wall -Wextra -pedantic -Werror against the installed library" \
  gcc -std=c11 -Wall -Wextra -pedantic -Werror "$src/examples/c_example.c" -o "$stage/c_example" \
  $(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs shmetrics-c)
check "the C example links to libshmetrics.so.$layout_version" \
  bash -c "readelf -d '$stage/c_example' | grep -F '[libshmetrics.so.$layout_version]'"

# Runs the example in a private /dev/shm (its segment name is fixed), reads
# its segment with the exporter once all eight processes counted (for up to
# 20 s), and stops them, also when the run is cut short.
# The bindings as installed: the Python package in the interpreter's
# platform directory under the prefix, the PHP files in share/shmetrics/php.
module=$(find "$prefix" -name '_shmetrics*.so' | head -n1)
check "the Python extension is installed (${module#"$prefix"/})" test -f "$module"
segments="$stage/segments"
mkdir -p "$segments"
check "the installed Python module imports and counts, with the backend" \
  env PYTHONPATH="$(dirname "$(dirname "$module")")" LD_LIBRARY_PATH="$lib_dir" SHMETRICS_SEGMENT_DIR="$segments" \
  /usr/bin/python3 -c 'import shmetrics, shmetrics.prometheus_client_backend
shmetrics.Counter("installed_total", "I.", segment=shmetrics.Segment("ops", instance="py")).inc(3)'
check "its segment holds the count" bash -c "'$build_dir/exporter/shmetrics-exporter' --once '$segments/py.ops' | grep -qx 'installed_total 3'"
for f in Shmetrics.php preload.php shmetrics_ffi.h; do
  check "share/shmetrics/php/$f is installed" test -f "$prefix/share/shmetrics/php/$f"
done
if command -v php >/dev/null; then
  check "the installed PHP class counts through FFI" \
    env LD_LIBRARY_PATH="$lib_dir" SHMETRICS_SEGMENT_DIR="$segments" php -n -d extension=ffi -d ffi.enable=true -r \
    "require '$prefix/share/shmetrics/php/Shmetrics.php'; Shmetrics\\Segment::open('ops', 'php')->counter('installed_total', 'I.')->labels()->inc(4);"
  check "its segment holds the count" bash -c "'$build_dir/exporter/shmetrics-exporter' --once '$segments/php.ops' | grep -qx 'installed_total 4'"
fi

run_example() {
  mount -t tmpfs tmpfs /dev/shm
  set -m  # the example and its children in a process group of their own
  LD_LIBRARY_PATH="$lib_dir" "$work/a.out" &
  group=$!
  trap 'kill -TERM -- "-$group" 2>/dev/null' EXIT
  trap 'exit 1' TERM INT
  local deadline=$((SECONDS + 20))
  while ((SECONDS < deadline)) && kill -0 "$group" 2>/dev/null; do
    "$exporter" --once default.ops >"$work/exposition" 2>&1 || true
    grep -qx 'rbac_allowed_total 8' "$work/exposition" && break
    sleep 0.1
  done
  cat "$work/exposition"
  grep -qx 'rbac_allowed_total 8' "$work/exposition" \
    && grep -qx 'http_requests_total{route="/"} 16' "$work/exposition"
}
exporter="$build_dir/exporter/shmetrics-exporter"
if [[ ! -x $exporter ]]; then
  echo "skipped: running the example (no $exporter to read its segment)"
elif ! unshare --user --map-root-user --mount --ipc true 2>/dev/null; then
  echo "skipped: running the example (no private /dev/shm: unshare --user --mount --ipc is not allowed here)"
else
  check "the example's eight processes count into one segment" \
    timeout 60 unshare --user --map-root-user --mount --ipc \
    bash -c "$(declare -f run_example); work='$work' lib_dir='$lib_dir' exporter='$exporter'; run_example"
fi

# --- The full build's install delivers the exporter. ---
check "BUILD_DIR installs" \
  meson install -C "$build_dir" --no-rebuild --destdir "$stage/full" --quiet
check "shmetrics-exporter is installed and answers --help" \
  bash -c "\"\$(find '$stage/full' -path '*/bin/shmetrics-exporter')\" --help"
finish
