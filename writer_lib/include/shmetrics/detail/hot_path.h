// What the inline hot path of the public headers touches. Versioned with the
// segment layout (shm/layout.h): changing either changes the SONAME.
#pragma once

#include <shmetrics/shm/layout.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shmetrics::detail {

// Segments one process can map at once. Index kDetachedSegment is never
// mapped: handles refused at registration point there, so their updates take
// the slow path, which drops and counts them.
inline constexpr std::size_t kMaxSegments = 16;
inline constexpr std::uint16_t kDetachedSegment = kMaxSegments - 1;

// This thread's cells in each segment, or nullptr before the thread has
// claimed a slot there (and while it writes through the overflow slot).
// initial-exec: a plain %fs-relative load from the application, no call.
extern thread_local constinit std::uint64_t* tls_cells[kMaxSegments]
    __attribute__((tls_model("initial-exec")));

// This process's gauge cells in each segment, or nullptr before its first gauge
// or info update claimed a process record.
extern std::atomic<shm::GaugeCell*> process_gauge_cells[kMaxSegments];

// Out of line, taken once per thread and segment (or on every update while a
// thread writes through the overflow slot).
void counter_add_slow(std::uint16_t segment, std::uint32_t cell, std::uint64_t n) noexcept;
void counter_add_double_slow(std::uint16_t segment, std::uint32_t cell, double v) noexcept;
// Claims the process record; nullptr when none can be had (the update is then
// dropped and counted) or for a refused handle (segment == kDetachedSegment,
// `cell` holding its real segment).
shm::GaugeCell* gauge_cells_slow(std::uint16_t segment, std::uint32_t cell) noexcept;
// Sets (or adds to) a timestamped gauge cell: the value and the monotonic time
// it was written, under the cell's seqlock.
void gauge_update_stamped(shm::GaugeCell& cell, double v, bool add) noexcept;
// Counts an update refused as invalid (negative increment, NaN, ...).
void count_invalid_update(std::uint16_t segment) noexcept;

}  // namespace shmetrics::detail
