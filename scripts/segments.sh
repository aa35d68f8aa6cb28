# shellcheck shell=bash
# scripts/segments.sh: where segments live, and removing one with its
# semaphore set, for the scripts and the script tests. Source it.
#
#   segment_dir               the default segment directory: $SHMETRICS_SEGMENT_DIR,
#                             else /dev/shm/shmetrics-<uid> (shm::default_segment_directory)
#   remove_segment_file PATH  removes the segment file PATH and the System V
#                             semaphore set its header names (int32 at byte 128,
#                             Header::semaphore_set); quiet when either is gone

# The layout version whose header these offsets describe, from layout.h.
SEGMENT_LAYOUT_VERSION=$(sed -n 's/^inline constexpr std::uint32_t kLayoutVersion = \([0-9]*\);$/\1/p' \
  "$(dirname "${BASH_SOURCE[0]}")/../shm/include/shmetrics/shm/layout.h")

segment_dir() {
  printf '%s\n' "${SHMETRICS_SEGMENT_DIR:-/dev/shm/shmetrics-$(id -u)}"
}

remove_segment_file() {
  local path=$1 set magic version
  [[ -f $path && ! -L $path ]] || { rm -f -- "$path"; return 0; }
  # Only a segment of this layout, owned by this user, names a set of ours.
  magic=$(head -c 8 -- "$path" 2>/dev/null) || magic=""
  version=$(od -An -t u4 -j 8 -N 4 -- "$path" 2>/dev/null | tr -d ' ') || version=""
  set=$(od -An -t d4 -j 128 -N 4 -- "$path" 2>/dev/null | tr -d ' ') || set=""
  if [[ $magic == SMETRIC1 && $version == "$SEGMENT_LAYOUT_VERSION" && -O $path && $set =~ ^[0-9]+$ ]] &&
    ipcs -s -i "$set" 2>/dev/null | grep -q "uid=$(id -u)\b"; then
    ipcrm -s "$set" 2>/dev/null || true
  fi
  rm -f -- "$path"
}
