// Histogram: observations counted in buckets of fixed upper bounds, with
// their count and sum, summed over every thread of every process.
#pragma once

#include <shmetrics/detail/hot_path.h>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace shmetrics {

// A handle to one histogram series. Keep it and call observe() on the hot
// path, inlined here under the rules of counters: the thread's own cells in
// its slot (one per bucket, +Inf included, and one double for the sum), a
// relaxed load and store to each of the two it touches, no lock, no syscall,
// no allocation. The bucket is found by a branch-free binary search of the
// bounds (four comparisons for the usual 10 to 15 bounds).
//
// Exact across threads, processes and worker deaths as counters are: a new
// owner of a dead worker's slot keeps adding to its cells. The exporter
// derives _count and the cumulative _bucket samples from the same reads of
// the per-bucket cells, so a scrape is self-consistent even while threads
// observe: no _bucket exceeds one of a higher bound or _count. _sum is read
// beside them and may lag or lead them by the observations in flight.
//
// Thread-safe: any thread of any process may call any method concurrently.
// NaN observations are dropped and counted in shmetrics_invalid_updates_total;
// infinities count in the first or the +Inf bucket (and make _sum infinite),
// as in the Go and Python clients. A default-constructed or refused handle
// drops its observations and counts them.
class Histogram {
 public:
  Histogram() = default;

  void observe(double v) noexcept {
    if (std::isnan(v)) [[unlikely]]
      return detail::count_invalid_update(real_segment());
    const std::uint32_t bucket = cell_ + bucket_of(v);
    const std::uint32_t sum = cell_ + buckets_ + 1;
    std::uint64_t* own_bucket = detail::own_cell(segment_, bucket);
    std::uint64_t* own_sum = detail::own_cell(segment_, sum);
    if (own_bucket != nullptr && own_sum != nullptr) [[likely]] {
      detail::add_own(own_bucket, 1);
      detail::add_own_double(own_sum, v);
    } else {
      detail::histogram_observe_slow(segment_, bucket, sum, v);
    }
  }

  // Which bucket `v` counts in: the first whose bound is >= v (Prometheus'
  // "le"), or the number of bounds for +Inf.
  std::uint32_t bucket_of(double v) const noexcept {
    if (buckets_ == 0) return 0;
    const double* base = bounds_;
    std::uint32_t n = buckets_;
    while (n > 1) {
      const std::uint32_t half = n / 2;
      base = base[half] < v ? base + half : base;
      n -= half;
    }
    return static_cast<std::uint32_t>(base - bounds_) + (*base < v ? 1 : 0);
  }

  // False for a handle whose series was refused (the segment was full).
  bool attached() const noexcept { return segment_ != detail::kDetachedSegment; }

 private:
  friend class HistogramFamily;
  Histogram(std::uint16_t segment, std::uint32_t cell, const std::vector<double>& bounds)
      : segment_(segment), buckets_(static_cast<std::uint32_t>(bounds.size())), cell_(cell),
        bounds_(bounds.data()) {}

  std::uint16_t real_segment() const noexcept {
    return attached() ? segment_ : static_cast<std::uint16_t>(cell_);
  }

  std::uint16_t segment_ = detail::kDetachedSegment;
  std::uint32_t buckets_ = 0;  // finite bounds
  std::uint32_t cell_ = 0;     // first cell; a refused handle: its real segment
  const double* bounds_ = nullptr;  // the family's, kept for the process's life
};

// Observes the seconds from its construction to its destruction (steady
// clock) into a histogram: `ScopedTimer timer(request_seconds);`.
// Not thread-safe: one timer, one thread.
class ScopedTimer {
 public:
  explicit ScopedTimer(const Histogram& histogram) noexcept
      : histogram_(histogram), start_(std::chrono::steady_clock::now()) {}
  ~ScopedTimer() {
    histogram_.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

 private:
  Histogram histogram_;
  std::chrono::steady_clock::time_point start_;
};

// The Prometheus clients' default bounds (Go's DefBuckets), for latencies in
// seconds: .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10.
std::vector<double> default_buckets();
// `count` bounds: start, start + width, ... Throws std::invalid_argument
// unless count >= 1, width > 0 and every bound is finite.
std::vector<double> linear_buckets(double start, double width, std::size_t count);
// `count` bounds: start, start × factor, ... Throws std::invalid_argument
// unless count >= 1, start > 0, factor > 1 and every bound is finite.
std::vector<double> exponential_buckets(double start, double factor, std::size_t count);

}  // namespace shmetrics
