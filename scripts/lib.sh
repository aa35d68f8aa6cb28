# shellcheck shell=bash
# scripts/lib.sh: shared helpers for scripts/test.sh and scripts/demo.sh.
#
# Source it; do not run it. After sourcing, the caller is in the repository
# root, `set -euo pipefail` is in force, and BUILD_DIR is set (default
# `build`, relative to the repository root).

set -euo pipefail

# Repository root, from this file's own location (scripts/..).
SHMETRICS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$SHMETRICS_ROOT"

BUILD_DIR="${BUILD_DIR:-build}"

# shellcheck source=scripts/segments.sh
source "$SHMETRICS_ROOT/scripts/segments.sh"

# Debian 12 packages the build, the tests and the demo need.
SHMETRICS_PACKAGES=(
  g++
  meson
  ninja-build
  pkg-config
  libboost-dev
  libcpp-httplib-dev
  catch2
  zlib1g-dev
  libssl-dev
  libyaml-cpp-dev
  libcrypt-dev
  nlohmann-json3-dev
  prometheus
  prometheus-node-exporter
  openssl
  python3-prometheus-client
  python3-dev
  gunicorn
  php8.2-cli
  php8.2-fpm
  php8.2-opcache
  libfcgi-bin
  curl
  ca-certificates
  systemd
  dpkg-dev
  debhelper
  help2man
  lintian
)

# step MESSAGE...: one short progress line.
step() {
  printf '==> %s\n' "$*"
}

# warn / die: messages on stderr.
warn() {
  printf 'warning: %s\n' "$*" >&2
}
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# now_ms: wall-clock milliseconds (bash 5's EPOCHREALTIME, no fork).
now_ms() {
  local t="${EPOCHREALTIME/[.,]/}"
  printf '%s\n' "$((10#$t / 1000))"
}

# fmt_ms MS: "12.3s".
fmt_ms() {
  local ms="$1"
  printf '%d.%ds' "$((ms / 1000))" "$(((ms % 1000) / 100))"
}

# pkg_installed PKG: true when dpkg records PKG as installed.
pkg_installed() {
  local status
  status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" || return 1
  [[ "$status" == "install ok installed" ]]
}

# install_deps: apt-get install whichever of SHMETRICS_PACKAGES is missing.
# Runs `apt-get update` once, and only when something is missing.
install_deps() {
  local pkg missing=()
  step "checking packages"
  command -v dpkg-query >/dev/null 2>&1 \
    || die "dpkg-query not found: this script expects Debian 12 (install these by hand: ${SHMETRICS_PACKAGES[*]})"
  for pkg in "${SHMETRICS_PACKAGES[@]}"; do
    pkg_installed "$pkg" || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    step "all ${#SHMETRICS_PACKAGES[@]} packages present"
    return 0
  fi

  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 \
      || die "not root and no sudo; install as root: apt-get install ${missing[*]}"
    sudo=(sudo)
  fi
  step "installing missing packages: ${missing[*]}"
  step "apt-get update"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends -q "${missing[@]}"
  for pkg in "${missing[@]}"; do
    pkg_installed "$pkg" || die "package $pkg is still not installed"
  done
  step "packages installed"
}

# build: configure BUILD_DIR when it has no build.ninja yet, then compile.
build() {
  if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
    step "meson setup $BUILD_DIR"
    meson setup "$BUILD_DIR"
  fi
  step "meson compile -C $BUILD_DIR"
  meson compile -C "$BUILD_DIR"
}
