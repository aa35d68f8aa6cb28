// The process metrics the Go and Python clients export, read from /proc.
#pragma once

#include "negotiation.h"

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// Per-writer process metrics: the live processes holding a role's process
// records, read from /proc.

// A live writer process as its record names it (`pid`, in the writer's own
// pid namespace) and as this process's namespace numbers it (`here`: the
// pid the kernel gives for the holder of the record's semaphore, 0 when the
// holder is in a namespace this one cannot see).
struct LiveWriter {
  std::uint32_t record;
  std::uint32_t pid;
  pid_t here;
};

// Whether the process whose /proc/<pid>/status is `status` is in this
// process's pid namespace under `pid`: its NSpid line (its pid in each
// namespace from /proc's down to its own) has that one entry. Without an
// NSpid line (kernels before 4.1), its Pid line decides. False for text
// that has neither.
bool in_own_pid_namespace(std::uint32_t pid, std::string_view status);

// At most this many writers are read per role and refresh; more are counted
// as not read.
inline constexpr std::size_t kMaxWriterProcesses = 1024;

struct WriterProcess {
  std::uint32_t pid;
  double cpu_seconds;  // user + system
  std::uint64_t resident_bytes;
};
struct WriterProcesses {
  std::vector<WriterProcess> shown;  // ascending pid
  std::uint64_t other_namespace = 0;  // in a pid namespace but this one's: left out
  std::uint64_t unreadable = 0;       // /proc could not be read (gone meanwhile, or hidden)
  std::uint64_t not_read = 0;         // past kMaxWriterProcesses
};

// Reads /proc for each of `live` in this pid namespace: each process once
// (by `here`; records of processes in other namespaces may name one pid
// twice). `still_held(w)` is asked after /proc was read: whether the
// record's holder is still that process, so a pid that a new process took
// meanwhile is not shown as the writer's (counted unreadable).
WriterProcesses read_writer_processes(std::vector<LiveWriter> live,
                                      const std::function<bool(const LiveWriter&)>& still_held);

// Appends shmetrics_writer_process_cpu_seconds_total and
// shmetrics_writer_process_resident_memory_bytes (labels `role_value`, e.g.
// role="ops", and pid) and shmetrics_writer_processes{state}.
void append_writer_process_metrics(std::string& out, Format format, std::string_view role_value,
                                   const WriterProcesses& writers);

}  // namespace shmetrics::exporter
