// Gauge: a value that goes up and down, held per process and combined across
// processes by the family's GaugeMode.
#pragma once

#include <shmetrics/detail/hot_path.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>

namespace shmetrics {

using shm::GaugeMode;

// A handle to one gauge series. The value lives in this process's record of
// the segment (claimed on the first gauge or info update); every thread of the
// process writes the same cell, so set() is an atomic store and inc()/dec() a
// compare-and-swap loop, all inlined here.
//
// How the exporter combines the processes' values (the table in README.md
// says what happens when a process dies):
//   livesum, livemax, livemin, liveall   live processes only
//   sum, max, min, all                   dead processes' values kept
//   mostrecent, livemostrecent           the value set last (by a timestamp
//                                        written with it under a seqlock)
// liveall and all give one sample per process, labelled pid="<pid>". A process
// contributes only once it has set the series.
//
// Thread-safe: any thread of any process may call any method concurrently.
// NaN values are dropped and counted in shmetrics_invalid_updates_total.
class Gauge {
 public:
  Gauge() = default;

  void set(double v) noexcept {
    if (std::isnan(v)) return detail::count_invalid_update(real_segment());
    shm::GaugeCell* cells = process_cells();
    if (cells == nullptr) return;
    if (stamped_) return detail::gauge_update_stamped(cells[cell_], v, /*add=*/false);
    cells[cell_].value.store(std::bit_cast<std::uint64_t>(v), std::memory_order_relaxed);
  }

  void inc(double v = 1.0) noexcept { add(v); }
  void dec(double v = 1.0) noexcept { add(-v); }

  bool attached() const noexcept { return segment_ != detail::kDetachedSegment; }

 private:
  friend class GaugeFamily;
  Gauge(std::uint16_t segment, std::uint32_t cell, bool stamped)
      : segment_(segment), stamped_(stamped), cell_(cell) {}

  std::uint16_t real_segment() const noexcept {
    return attached() ? segment_ : static_cast<std::uint16_t>(cell_);
  }

  shm::GaugeCell* process_cells() const noexcept {
    shm::GaugeCell* cells = detail::process_gauge_cells[segment_].load(std::memory_order_acquire);
    if (cells != nullptr) [[likely]]
      return cells;
    return detail::gauge_cells_slow(segment_, cell_);
  }

  void add(double d) noexcept {
    if (std::isnan(d)) return detail::count_invalid_update(real_segment());
    shm::GaugeCell* cells = process_cells();
    if (cells == nullptr) return;
    if (stamped_) return detail::gauge_update_stamped(cells[cell_], d, /*add=*/true);
    std::atomic<std::uint64_t>& cell = cells[cell_].value;
    std::uint64_t old = cell.load(std::memory_order_relaxed);
    for (;;) {
      double base = old == shm::kGaugeUnset ? 0.0 : std::bit_cast<double>(old);
      std::uint64_t next = std::bit_cast<std::uint64_t>(base + d);
      if (cell.compare_exchange_weak(old, next, std::memory_order_relaxed)) return;
    }
  }

  std::uint16_t segment_ = detail::kDetachedSegment;
  bool stamped_ = false;  // mostrecent modes: value and timestamp under a seqlock
  std::uint32_t cell_ = 0;
};

}  // namespace shmetrics
