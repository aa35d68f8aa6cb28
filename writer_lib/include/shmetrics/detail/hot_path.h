// What the inline hot path of the public headers touches. Versioned with the
// segment layout (shm/layout.h): changing either changes the SONAME.
#pragma once

#include <shmetrics/shm/layout.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace shmetrics::detail {

// Segments one process can map at once. Index kDetachedSegment is never
// mapped: handles refused at registration point there, so their updates take
// the slow path, which drops and counts them.
inline constexpr std::size_t kMaxSegments = 16;
inline constexpr std::uint16_t kDetachedSegment = kMaxSegments - 1;

// This thread's slot in each segment: its page table and the segment's page
// pool (both nullptr before the thread has claimed a slot there, and while it
// writes through the overflow slot). Series s lives in cell s % 8 of pool
// page pages[s / 8]; entry 0 means the slot has no page there yet.
// initial-exec: a plain %fs-relative load from the application, no call.
struct ThreadCells {
  std::uint32_t* pages;
  std::uint64_t* pool;
};
extern thread_local constinit ThreadCells tls_cells[kMaxSegments]
    __attribute__((tls_model("initial-exec")));

// While every slot is held by live threads, a thread writes through the
// segment's shared overflow slot: `cells` points at its cells (nullptr while
// the thread is not overflowing) and integer increments there are one atomic
// add, inlined too. Every `countdown` updates, overflow_check() sees whether it
// is time to try for a slot of its own again.
struct OverflowWriter {
  std::uint64_t* cells;
  std::uint32_t countdown;
};
extern thread_local constinit OverflowWriter tls_overflow[kMaxSegments]
    __attribute__((tls_model("initial-exec")));

// This thread's own slot cell `cell` of `segment`, or nullptr when it has
// none yet (no slot, writing through the overflow slot, or no page for the
// cell): then the update takes the slow path. Two loads past the TLS one: the
// page table entry, then the cell.
inline std::uint64_t* own_cell(std::uint16_t segment, std::uint32_t cell) noexcept {
  const ThreadCells& t = tls_cells[segment];
  if (t.pages == nullptr) [[unlikely]]
    return nullptr;
  const std::uint32_t page =
      std::atomic_ref<std::uint32_t>(t.pages[cell >> shm::kPageShift]).load(std::memory_order_relaxed);
  if (page == 0) [[unlikely]]
    return nullptr;
  return t.pool + ((std::uint64_t{page} << shm::kPageShift) | (cell & (shm::kCellsPerPage - 1)));
}

// Adds to a cell only this thread writes: a relaxed load and store, no
// read-modify-write (the exporter reads it with a relaxed load).
inline void add_own(std::uint64_t* cell, std::uint64_t n) noexcept {
  std::atomic_ref<std::uint64_t> c(*cell);
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void add_own_double(std::uint64_t* cell, double v) noexcept {
  std::atomic_ref<std::uint64_t> c(*cell);
  c.store(std::bit_cast<std::uint64_t>(std::bit_cast<double>(c.load(std::memory_order_relaxed)) + v),
          std::memory_order_relaxed);
}

// This process's gauge cells in each segment, or nullptr before its first gauge
// or info update claimed a process record.
extern std::atomic<shm::GaugeCell*> process_gauge_cells[kMaxSegments];

// Out of line: a thread's first update in the segment, the first update of a
// page of series in its slot, updates that found the page pool empty, and
// refused handles.
void counter_add_slow(std::uint16_t segment, std::uint32_t cell, std::uint64_t n) noexcept;
// The overflow countdown ran out: resets it, and tries to claim a slot when
// the last try is long enough ago.
void overflow_check(std::uint16_t segment) noexcept;
void counter_add_double_slow(std::uint16_t segment, std::uint32_t cell, double v) noexcept;
// A histogram observation that found this thread without its own cells: one
// to cell `count`, `v` to the double cell after it (a refused handle: counted
// once, `count` holding its real segment).
void histogram_observe_slow(std::uint16_t segment, std::uint32_t count, double v) noexcept;
// Histogram::bucket_of() compares this many bounds per step: a family's bounds
// are kept padded with +Inf to a multiple of it.
inline constexpr std::uint32_t kBoundsPadding = 4;
// Claims the process record; nullptr when none can be had (the update is then
// dropped and counted) or for a refused handle (segment == kDetachedSegment,
// `cell` holding its real segment).
shm::GaugeCell* gauge_cells_slow(std::uint16_t segment, std::uint32_t cell) noexcept;
// The gauge updates not inlined: timestamped cells (the value and the
// monotonic time it was written, under the cell's seqlock), and an integer
// cell's first write by its process (which marks it set). `bits`: the double,
// or the int64 in two's complement.
void gauge_update_slow(shm::GaugeCell& cell, std::uint64_t bits, bool add, bool integer,
                       bool stamped) noexcept;
// Counts an update refused as invalid (negative increment, NaN, ...).
void count_invalid_update(std::uint16_t segment) noexcept;

}  // namespace shmetrics::detail
