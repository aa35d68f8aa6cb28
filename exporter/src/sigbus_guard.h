// Surviving a segment truncated under the exporter. Reading a page of a
// mapping past the file's new end raises SIGBUS; the handler maps a zero page
// there and marks the range faulted, so the read finishes (with zeros) and the
// caller throws the result away. No longjmp through C++ frames.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shmetrics::exporter {

// Installs the process-wide SIGBUS handler; call once before any guarded read.
void install_sigbus_handler();

// Marks [base, base + size) as a mapping whose reads may fault, for the
// lifetime of the guard. At most 64 ranges at once.
class SigbusGuard {
 public:
  SigbusGuard(const std::uint8_t* base, std::size_t size);
  ~SigbusGuard();
  SigbusGuard(const SigbusGuard&) = delete;
  SigbusGuard& operator=(const SigbusGuard&) = delete;
  // True when a read of the range faulted since the guard was made: what was
  // read must be discarded and the mapping replaced.
  bool faulted() const;

 private:
  int slot_;
};

}  // namespace shmetrics::exporter
