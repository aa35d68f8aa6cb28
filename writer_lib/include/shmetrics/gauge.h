// Gauge: a value that goes up and down, held per process and combined across
// processes by the family's GaugeMode.
#pragma once

#include <shmetrics/detail/hot_path.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <string_view>
#include <time.h>

namespace shmetrics {

using shm::GaugeMode;

// A handle to one gauge series. The value lives in this process's record of
// the segment (claimed on the first gauge or info update); every thread of the
// process writes the same cell, with atomic instructions inlined here.
//
// Values are doubles, or with ValueType::kInteger signed 64-bit integers.
// Prefer integers for counts that go up and down (requests in flight, open
// connections, queue length): inc()/dec() are then one atomic add, where a
// double needs a compare-and-swap loop (about twice the time). set() is one
// atomic store either way. An integer gauge refuses (drops and counts)
// fractional or out-of-range values; its sums wrap modulo 2^64.
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
// The mode of a name as spelt above ("livesum", "mostrecent", ...), as
// prometheus_client's multiprocess_mode spells them too. Throws
// std::invalid_argument naming the modes for any other name.
GaugeMode gauge_mode_from_name(std::string_view name);

class Gauge {
 public:
  Gauge() = default;

  template <typename T>
    requires std::integral<T> || std::floating_point<T>
  void set(T v) noexcept {
    update(v, Op::kSet);
  }

  void inc() noexcept { update(1, Op::kAdd); }
  template <typename T>
    requires std::integral<T> || std::floating_point<T>
  void inc(T v) noexcept {
    update(v, Op::kAdd);
  }

  void dec() noexcept { update(1, Op::kSubtract); }
  template <typename T>
    requires std::integral<T> || std::floating_point<T>
  void dec(T v) noexcept {
    update(v, Op::kSubtract);
  }

  // Seconds since the epoch (CLOCK_REALTIME): with nanoseconds as a double,
  // whole seconds in an integer gauge.
  void set_to_current_time() noexcept {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    if (integer_) return set(static_cast<std::int64_t>(now.tv_sec));
    set(static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9);
  }

  bool attached() const noexcept { return segment_ != detail::kDetachedSegment; }

 private:
  friend class GaugeFamily;
  Gauge(std::uint16_t segment, std::uint32_t cell, bool stamped, bool integer)
      : segment_(segment), stamped_(stamped), integer_(integer), cell_(cell) {}

  std::uint16_t real_segment() const noexcept {
    return attached() ? segment_ : static_cast<std::uint16_t>(cell_);
  }

  shm::GaugeCell* process_cells() const noexcept {
    shm::GaugeCell* cells = detail::process_gauge_cells[segment_].load(std::memory_order_acquire);
    if (cells != nullptr) [[likely]]
      return cells;
    return detail::gauge_cells_slow(segment_, cell_);
  }

  enum class Op { kSet, kAdd, kSubtract };

  template <typename T>
  void update(T v, Op op) noexcept {
    if constexpr (std::floating_point<T>) {
      double d = static_cast<double>(v);
      if (std::isnan(d)) return detail::count_invalid_update(real_segment());
      if (!integer_) return update_double(op == Op::kSubtract ? -d : d, op != Op::kSet);
      // Integral and inside [-2^63, 2^63).
      if (d != std::floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
        return detail::count_invalid_update(real_segment());
      update_integer(static_cast<std::uint64_t>(static_cast<std::int64_t>(d)), op);
    } else {
      if (!integer_) {
        const double d = static_cast<double>(v);
        return update_double(op == Op::kSubtract ? -d : d, op != Op::kSet);
      }
      // Inside [-2^63, 2^63): only types that can hold other values are checked.
      if constexpr (std::unsigned_integral<T> && sizeof(T) >= 8) {
        if (v > static_cast<T>(INT64_MAX)) return detail::count_invalid_update(real_segment());
      } else if constexpr (std::signed_integral<T> && sizeof(T) > 8) {
        if (v > static_cast<T>(INT64_MAX) || v < static_cast<T>(INT64_MIN))
          return detail::count_invalid_update(real_segment());
      }
      update_integer(static_cast<std::uint64_t>(static_cast<std::int64_t>(v)), op);
    }
  }

  // `bits`: the int64 value in two's complement; arithmetic wraps mod 2^64.
  void update_integer(std::uint64_t bits, Op op) noexcept {
    shm::GaugeCell* cells = process_cells();
    if (cells == nullptr) return;
    shm::GaugeCell& cell = cells[cell_];
    if (op == Op::kSubtract) bits = 0 - bits;
    // stamp: 0 until this process first wrote the cell, or the seqlock and
    // time of the timestamped modes: both handled out of line.
    if (stamped_ || cell.stamp.load(std::memory_order_acquire) == 0) [[unlikely]]
      return detail::gauge_update_slow(cell, bits, op != Op::kSet, /*integer=*/true, stamped_);
    if (op == Op::kSet)
      cell.value.store(bits, std::memory_order_relaxed);
    else
      cell.value.fetch_add(bits, std::memory_order_relaxed);
  }

  void update_double(double d, bool add) noexcept {
    shm::GaugeCell* cells = process_cells();
    if (cells == nullptr) return;
    std::atomic<std::uint64_t>& cell = cells[cell_].value;
    if (stamped_)
      return detail::gauge_update_slow(cells[cell_], std::bit_cast<std::uint64_t>(d), add,
                                       /*integer=*/false, /*stamped=*/true);
    if (!add) return cell.store(std::bit_cast<std::uint64_t>(d), std::memory_order_relaxed);
    std::uint64_t old = cell.load(std::memory_order_relaxed);
    for (;;) {
      double base = old == shm::kGaugeUnset ? 0.0 : std::bit_cast<double>(old);
      std::uint64_t next = std::bit_cast<std::uint64_t>(base + d);
      if (cell.compare_exchange_weak(old, next, std::memory_order_relaxed)) return;
    }
  }

  std::uint16_t segment_ = detail::kDetachedSegment;
  bool stamped_ = false;  // mostrecent modes: value and timestamp under a seqlock
  bool integer_ = false;  // ValueType::kInteger: int64 values
  std::uint32_t cell_ = 0;
};

}  // namespace shmetrics
