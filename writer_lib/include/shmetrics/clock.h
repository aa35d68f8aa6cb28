// Clock: where code that depends on time reads it, so tests can give one they
// control (in multi-process tests, a word in shared memory) and never sleep.
#pragma once

#include <cstdint>

namespace shmetrics {

// Monotonic time in nanoseconds. Implementations must be thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::uint64_t now_ns() const noexcept = 0;
};

// CLOCK_MONOTONIC, the clock the exporter reads: writers and the exporter
// must share one time namespace.
const Clock& monotonic_clock() noexcept;

}  // namespace shmetrics
