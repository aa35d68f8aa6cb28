// MapFileSnapshot: one whole read of the RBAC map file and its version.
#pragma once

#include <cstddef>
#include <string>

namespace rbac {

// Larger map files are refused rather than read into every worker.
inline constexpr std::size_t kMaxMapFileBytes = 1 << 20;

// All the bytes of the map file as of one read, and their SHA-256 in
// lower-case hex: the map's version, shown as rbac_map_info's etag. A plain value.
struct MapFileSnapshot {
  std::string bytes;
  std::string sha256_hex;
};

// Reads `path` whole through one open file description, so a file renamed
// over it meanwhile is seen entirely old or entirely new. Symlinks are
// followed. Throws std::runtime_error with a one-line reason when the file
// cannot be opened, is not a regular file (a directory, a FIFO), cannot be
// read or is larger than kMaxMapFileBytes. Thread-safe.
MapFileSnapshot read_map_file(const std::string& path);

}  // namespace rbac
