// Counter: a monotonically increasing count, summed over every thread of every
// process that writes it.
#pragma once

#include <shmetrics/detail/hot_path.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>

namespace shmetrics {

// A handle to one counter series. Keep it (it is two integers) and call inc()
// on the hot path: the increment is inlined here — a thread-local load, a
// relaxed load and a relaxed store to a cell only this thread writes. No lock,
// no syscall, no allocation, no call into the library after the thread's first
// update in the segment. The cell is found through the slot's page table
// (one more load: cells come in 64-byte pages taken from the segment's pool
// as a slot first writes them). A thread that found every slot held writes
// through the shared overflow slot: one atomic add, also inlined.
//
// Integer families count exactly (modulo 2^64). Families registered with
// ValueType::kDouble accept fractional increments; their cells are doubles, so
// totals are exact up to 2^53 and each increment costs a conversion more.
//
// Thread-safe: any thread of any process may call any method concurrently.
// A default-constructed or refused handle drops its updates and counts them.
class Counter {
 public:
  Counter() = default;

  void inc() noexcept {
    if (is_double_) [[unlikely]]
      return add_double(1.0);
    add_integer(1);
  }

  // Adds `v`. Negative, NaN or infinite increments are dropped and counted in
  // shmetrics_invalid_updates_total; so is a fractional increment of an
  // integer family.
  template <typename T>
    requires std::integral<T> || std::floating_point<T>
  void inc(T v) noexcept {
    if constexpr (std::floating_point<T>) {
      double d = static_cast<double>(v);
      if (!(d >= 0.0) || std::isinf(d)) return detail::count_invalid_update(real_segment());
      if (is_double_) return add_double(d);
      if (d != std::floor(d) || d >= 18446744073709551616.0)
        return detail::count_invalid_update(real_segment());
      add_integer(static_cast<std::uint64_t>(d));
    } else {
      if constexpr (std::signed_integral<T>) {
        if (v < 0) return detail::count_invalid_update(real_segment());
      }
      if (is_double_) return add_double(static_cast<double>(v));
      add_integer(static_cast<std::uint64_t>(v));
    }
  }

  // False for a handle whose series was refused (the segment was full).
  bool attached() const noexcept { return segment_ != detail::kDetachedSegment; }

 private:
  friend class CounterFamily;
  Counter(std::uint16_t segment, std::uint32_t cell, bool is_double)
      : segment_(segment), is_double_(is_double), cell_(cell) {}

  // A refused handle keeps its real segment in cell_ so drops can be counted.
  std::uint16_t real_segment() const noexcept {
    return attached() ? segment_ : static_cast<std::uint16_t>(cell_);
  }

  void add_integer(std::uint64_t n) noexcept {
    if (std::uint64_t* own = detail::own_cell(segment_, cell_)) [[likely]]
      detail::add_own(own, n);
    else
      add_unowned(n);
  }

  // Before the thread's first update in the segment or the page, or while it
  // writes through the shared overflow slot.
  void add_unowned(std::uint64_t n) noexcept {
    detail::OverflowWriter& overflow = detail::tls_overflow[segment_];
    if (overflow.cells != nullptr) {
      std::atomic_ref<std::uint64_t>(overflow.cells[cell_]).fetch_add(n, std::memory_order_relaxed);
      if (--overflow.countdown == 0) detail::overflow_check(segment_);
    } else {
      detail::counter_add_slow(segment_, cell_, n);
    }
  }

  void add_double(double d) noexcept {
    if (std::uint64_t* own = detail::own_cell(segment_, cell_)) [[likely]]
      detail::add_own_double(own, d);
    else
      detail::counter_add_double_slow(segment_, cell_, d);
  }

  std::uint16_t segment_ = detail::kDetachedSegment;
  bool is_double_ = false;
  std::uint32_t cell_ = 0;
};

}  // namespace shmetrics
