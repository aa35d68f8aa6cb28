# shellcheck shell=bash
# scripts/segments.sh: where segments live, and removing one with its
# semaphore set, for the scripts and the script tests. Source it.
#
#   segment_dir               the default segment directory: $SHMETRICS_SEGMENT_DIR,
#                             else /dev/shm/shmetrics-<uid> (shm::default_segment_directory)
#   remove_segment_file PATH  removes the segment file PATH and the System V
#                             semaphore set its header names (int32 at byte 128,
#                             Header::semaphore_set); quiet when either is gone

segment_dir() {
  printf '%s\n' "${SHMETRICS_SEGMENT_DIR:-/dev/shm/shmetrics-$(id -u)}"
}

remove_segment_file() {
  local path=$1 set
  [[ -f $path && ! -L $path ]] || { rm -f -- "$path"; return 0; }
  set=$(od -An -t d4 -j 128 -N 4 -- "$path" 2>/dev/null | tr -d ' ') || set=""
  if [[ $set =~ ^[0-9]+$ ]]; then
    ipcrm -s "$set" 2>/dev/null || true
  fi
  rm -f -- "$path"
}
