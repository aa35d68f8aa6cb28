#!/usr/bin/env bash
# The Debian packages, as a user of Debian 12 gets them: `dpkg-buildpackage
# -us -uc -b` on a copy of the tree builds libshmetrics<N>, libshmetrics-dev
# and shmetrics-exporter; lintian reports no error; they install on this
# machine (root: apt-get; they are purged again at the end); the README's
# example compiles against the installed libshmetrics-dev with the README's
# own g++ line and its eight processes' counts are read back by the installed
# exporter; the installed unit verifies; and the exporter is started the way
# the unit starts it (its User, Group, EnvironmentFile and ExecStart; without
# systemd as PID 1 here, by setpriv) and serves /metrics on the default
# address, then stops on SIGTERM.
#
# Usage: tests/debian_package_test.sh WORKDIR
# Needs root (or sudo), and the ports 127.0.0.1:8081 and :8082 free.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work=$(realpath -m "${1:?usage: debian_package_test.sh WORKDIR}")
# shellcheck source=tests/check_lib.sh
source "$root/tests/check_lib.sh"
finish() {
  check_summary
  exit
}
sudo=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || { fail "not root and no sudo: the packages cannot be installed"; finish; }
  sudo=(sudo)
fi

# ------------------------------------------------------------------- build
rm -rf "$work"
mkdir -p "$work/src"
# The tree as git knows it (tracked and new files, not ignored ones: no build
# directories), symlinks kept.
(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp -P --parents -t "$work/src")
layout=$(sed -n 's/^inline constexpr std::uint32_t kLayoutVersion = \([0-9]*\);.*/\1/p' \
  "$root/shm/include/shmetrics/shm/layout.h")
version=$(dpkg-parsechangelog -l "$root/debian/changelog" -S Version)
arch=$(dpkg --print-architecture)
if ! (cd "$work/src" && dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1); then
  fail "dpkg-buildpackage -us -uc -b (log: $work/build.log)"
  tail -n 40 "$work/build.log" | sed 's/^/  /'
  finish
fi
pass "dpkg-buildpackage -us -uc -b"
lib="$work/libshmetrics${layout}_${version}_${arch}.deb"
dev="$work/libshmetrics-dev_${version}_${arch}.deb"
exp="$work/shmetrics-exporter_${version}_${arch}.deb"
for deb in "$lib" "$dev" "$exp"; do check "built $(basename "$deb")" test -f "$deb"; done
contents() { dpkg-deb -c "$1" | awk '{print $6}' | sed 's|^\./|/|'; }
check "libshmetrics$layout holds libshmetrics.so.$layout (the SONAME is the layout version)" \
  bash -c "dpkg-deb -c '$lib' | grep -q 'libshmetrics.so.$layout -> libshmetrics.so.$layout.0.0'"
for f in /usr/include/shmetrics/shmetrics.h /usr/include/shmetrics/shmetrics_c.h \
  "/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/pkgconfig/shmetrics.pc" \
  "/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/pkgconfig/shmetrics-c.pc"; do
  check "libshmetrics-dev holds $f" bash -c "dpkg-deb -c '$dev' | awk '{print \$6}' | grep -qx '.$f'"
done
for f in /usr/bin/shmetrics-exporter /lib/systemd/system/shmetrics-exporter.service \
  /etc/default/shmetrics-exporter /usr/share/man/man1/shmetrics-exporter.1.gz \
  /usr/share/doc/shmetrics-exporter/shmetrics-writers.conf; do
  check "shmetrics-exporter holds $f" bash -c "dpkg-deb -c '$exp' | awk '{print \$6}' | grep -qx '.$f'"
done
unset -f contents

# ----------------------------------------------------------------- lintian
lintian --tag-display-limit 0 "$work"/*.changes >"$work/lintian.log" 2>&1
sed 's/^/  lintian: /' "$work/lintian.log" | grep -v 'running with root privileges' || true
check "lintian reports no error" bash -c "! grep -q '^E: ' '$work/lintian.log'"

# ----------------------------------------------------------------- install
had_user=$(id -u shmetrics-exporter 2>/dev/null || true)
cleanup() {
  [[ -n ${writer_pgid:-} ]] && kill -- "-$writer_pgid" 2>/dev/null
  [[ -n ${exporter_pid:-} ]] && kill "$exporter_pid" 2>/dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q \
    shmetrics-exporter libshmetrics-dev "libshmetrics$layout" >>"$work/apt.log" 2>&1
  if [[ -z $had_user ]]; then
    "${sudo[@]}" deluser --system --quiet shmetrics-exporter >>"$work/apt.log" 2>&1
    "${sudo[@]}" delgroup --system --quiet shmetrics >>"$work/apt.log" 2>&1
  fi
  "${sudo[@]}" rm -rf /run/pkgtest-shmetrics
}
trap cleanup EXIT
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  "$lib" "$dev" "$exp" >"$work/apt.log" 2>&1; then
  fail "apt-get install of the three packages (log: $work/apt.log)"
  tail -n 30 "$work/apt.log" | sed 's/^/  /'
  finish
fi
pass "apt-get install of the three packages"
check "the user shmetrics-exporter exists, in group shmetrics" \
  bash -c "[ \"\$(id -gn shmetrics-exporter)\" = shmetrics ]"
check "the installed exporter is the packaged version ($version)" \
  bash -c "/usr/bin/shmetrics-exporter --version | grep -q '^shmetrics-exporter $version (segment layout $layout)'"
check "man shmetrics-exporter is installed" test -s /usr/share/man/man1/shmetrics-exporter.1.gz
man=no
command -v man >/dev/null && man=yes
check "systemd-analyze verify of the installed unit (man pages checked: $man)" \
  systemd-analyze verify --man=$man /lib/systemd/system/shmetrics-exporter.service

# -------------------------------------------- the README example, installed
mkdir -p "$work/user"
awk '/^```cpp$/ {inside = 1; next} inside && /^```$/ {exit} inside' "$root/README.md" >"$work/user/prog.cc"
line=$(awk '/^```sh$/ {inside = 1; next} /^```$/ {inside = 0} inside && /^g\+\+ /' "$root/README.md" | head -n1)
check "the README's '$line' builds the README example against the installed libshmetrics-dev" \
  env -C "$work/user" bash -c "$line"
check "the example links to the installed libshmetrics.so.$layout" \
  bash -c "ldd '$work/user/a.out' | grep -Eq 'libshmetrics.so.$layout => (/usr)?/lib/'"
# Its eight processes count into /run/pkgtest-shmetrics/default.ops; the
# installed exporter reads them back.
"${sudo[@]}" rm -rf /run/pkgtest-shmetrics
setsid env SHMETRICS_SEGMENT_DIR=/run/pkgtest-shmetrics "$work/user/a.out" >"$work/user/out.log" 2>&1 &
writer_pgid=$!
counted() {
  /usr/bin/shmetrics-exporter --once /run/pkgtest-shmetrics/default.ops 2>/dev/null >"$work/user/once.txt" &&
    grep -qx 'rbac_allowed_total 8' "$work/user/once.txt" &&
    grep -qx 'http_requests_total{route="/"} 16' "$work/user/once.txt"
}
check "the installed exporter reads the example's eight processes' counts (8 allowed, 16 on /)" wait_for 30 counted
kill -- "-$writer_pgid" 2>/dev/null
writer_pgid=""

# --------------------------------------------- the exporter, as the unit runs it
unit=/lib/systemd/system/shmetrics-exporter.service
setting() { sed -n "s/^$1=//p" "$unit" | tail -n1; }
user=$(setting User) group=$(setting Group) envfile=$(setting EnvironmentFile) exec=$(setting ExecStart)
envfile=${envfile#-}
check "the unit names its user, group, environment file and command ($user:$group, $envfile, $exec)" \
  test -n "$user" -a -n "$group" -a -f "$envfile" -a -n "$exec"
# systemd expands $SHMETRICS_EXPORTER_ARGS from the environment file into words.
args=$(set -a && . "$envfile" && eval "echo $exec")
# shellcheck disable=SC2086 # words, as systemd splits them
"${sudo[@]}" setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs -- $args 2>"$work/exporter.log" &
exporter_pid=$!
listening() { grep -q 'event=listening role=ops address=127.0.0.1:8081' "$work/exporter.log"; }
if ! wait_for 20 listening; then
  fail "the exporter started as the unit starts it did not listen on 127.0.0.1:8081"
  sed 's/^/  /' "$work/exporter.log"
else
  pass "the exporter started as the unit starts it ($args, as $user:$group) listens on 127.0.0.1:8081"
  body=$(curl -s -w '\n%{http_code}' http://127.0.0.1:8081/metrics)
  check "GET /metrics answers 200 with the role's segment down (no writers yet)" \
    bash -c "printf '%s\n' \"\$1\" | tail -n1 | grep -qx 200 && printf '%s\n' \"\$1\" | grep -qx 'shmetrics_segment_up{role=\"ops\"} 0'" _ "$body"
  check "the exporter runs as $user" bash -c "[ \"\$(ps -o user= -p \$(pgrep -f -n '^/usr/bin/shmetrics-exporter'))\" = '$user' ]"
  "${sudo[@]}" pkill -TERM -f '^/usr/bin/shmetrics-exporter --segment-dir'
  status=0
  wait "$exporter_pid" || status=$?
  exporter_pid=""
  check "it stops on SIGTERM, exit status 0 (got $status)" test "$status" = 0
fi
finish
