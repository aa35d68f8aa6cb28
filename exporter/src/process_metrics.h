// The process metrics the Go and Python clients export, read from /proc.
#pragma once

#include "negotiation.h"

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace shmetrics::exporter {

struct ProcessStats {
  double cpu_seconds = 0;          // user + system
  std::uint64_t resident_bytes = 0;
  std::uint64_t virtual_bytes = 0;
  double start_time_seconds = 0;   // since the Unix epoch
  std::uint64_t open_fds = 0;
  std::uint64_t max_fds = 0;
};

// What /proc says of `pid`, or nullopt when it cannot be read (the process
// is gone, or /proc hides it). Open and max descriptors only for this
// process's own pid (another's need its privileges).
std::optional<ProcessStats> read_process_stats(pid_t pid);

// Appends process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_start_time_seconds, process_open_fds
// and process_max_fds of this process, as client_golang's process collector
// names them, read at most once a second; nothing when /proc cannot be read.
void append_own_process_metrics(std::string& out, Format format);

}  // namespace shmetrics::exporter
