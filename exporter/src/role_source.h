// One role's segment as the exporter serves it: opened read-only when it
// appears, re-opened when it is replaced (a new inode under the same name),
// and rendered together with the exporter's own metrics for the role.
#pragma once

#include "segment_reader.h"

#include <shmetrics/shm/segment_file.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace shmetrics::exporter {

// CLOCK_MONOTONIC in nanoseconds, the writers' readyz clock.
std::uint64_t monotonic_now_ns();

// Thread-safe: scrapes of one role are serialised; roles are independent.
class RoleSource {
 public:
  // `now_ns` is the clock of the readyz windows: CLOCK_MONOTONIC unless given.
  RoleSource(std::string role, std::string segment_name,
             std::function<std::uint64_t()> now_ns = monotonic_now_ns);

  // The whole exposition for the role. While the segment is missing or cannot
  // be trusted it holds only the exporter's own metrics, with
  // shmetrics_segment_up 0; the reason is logged once per change.
  std::string scrape();

  // By default a segment owned by another user than the exporter's is not
  // served (its owner could be anyone able to write /dev/shm).
  void accept_foreign_owner(bool accept) { accept_foreign_owner_ = accept; }

  const std::string& role() const { return role_; }
  const std::string& segment_name() const { return segment_name_; }

  // Diagnostics: how many times scrapes asked the kernel whether a process
  // record's owner is alive since the segment was (re)opened. A record found
  // dead is not asked about again until it is claimed anew.
  std::uint64_t liveness_queries();

 private:
  bool ensure_open();
  void set_down(const std::string& reason);
  void append_own_metrics(std::string& out, bool up) const;

  const std::string role_;
  const std::string segment_name_;
  const std::function<std::uint64_t()> now_ns_;
  std::mutex mutex_;
  std::unique_ptr<shm::MappedSegment> mapped_;
  std::unique_ptr<SegmentReader> reader_;
  std::string last_error_;  // what was logged last, to log each change once
  std::size_t last_scrape_bytes_ = 0;  // to reserve the next exposition at once
  bool accept_foreign_owner_ = false;
};

// The liveness the kernel proves: the record's ownership semaphore is held,
// last taken by the pid the record names (or by a process in another pid
// namespace). A record counts as dead only on the kernel's word (the reader
// keeps that verdict), so a set that cannot be read counts as live.
RecordLiveness kernel_liveness(const shm::MappedSegment& segment);

}  // namespace shmetrics::exporter
