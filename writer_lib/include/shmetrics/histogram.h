// Histogram: observations counted in buckets of fixed upper bounds, with
// their count and sum, summed over every thread of every process.
#pragma once

#include <shmetrics/detail/hot_path.h>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__SSE2__) && defined(__x86_64__) && !defined(SHMETRICS_SCALAR_BUCKETS)
#include <emmintrin.h>
#endif

namespace shmetrics {

// A handle to one histogram series. Keep it and call observe() on the hot
// path, inlined here under the rules of counters: the thread's own cells in
// its slot, a pair per bucket (+Inf included): the bucket's count and the sum
// of its observations as a double. An observation finds its bucket by
// comparing `v` with every bound at once (SSE2 on x86-64, two bounds per
// instruction: no branch, no chain of dependent loads), then looks up one
// page of its slot for both cells of the pair and adds to them: a relaxed
// load and store each, no lock, no syscall, no allocation. Keeping a sum per
// bucket rather than one per series takes the double addition off a
// store-to-load chain that back-to-back observations of one series would
// otherwise wait on (see shm::series_cells).
//
// Exact across threads, processes and worker deaths as counters are: a new
// owner of a dead worker's slot keeps adding to its cells. The exporter
// derives _count and the cumulative _bucket samples from the same reads of
// the per-bucket counts, so a scrape is self-consistent even while threads
// observe: no _bucket exceeds one of a higher bound or _count. _sum, the
// bucket sums added up, is read beside them and may lag or lead them by the
// observations in flight.
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
    // The pair is 2-cell aligned, so both cells are in one page.
    const std::uint32_t count = cell_ + 2 * bucket_of(v);
    std::uint64_t* own = detail::own_cell(segment_, count);
    if (own != nullptr) [[likely]] {
      detail::add_own(own, 1);
      detail::add_own_double(own + 1, v);
    } else {
      detail::histogram_observe_slow(segment_, count, v);
    }
  }

  // Which bucket `v` counts in: the first whose bound is >= v (Prometheus'
  // "le"), or the number of bounds for +Inf; that is, how many bounds are
  // below `v`. Not for NaN (which observe() drops).
  // Elsewhere than x86-64 (or with SHMETRICS_SCALAR_BUCKETS defined), a plain
  // loop over the bounds.
  std::uint32_t bucket_of(double v) const noexcept {
#if defined(__SSE2__) && defined(__x86_64__) && !defined(SHMETRICS_SCALAR_BUCKETS)
    // (x86-64: SSE2 is part of it.) The family's bounds are padded with +Inf to a multiple of
    // kBoundsPadding, which no value is below.
    const __m128d x = _mm_set1_pd(v);
    __m128i a = _mm_setzero_si128();
    __m128i b = _mm_setzero_si128();
    for (std::uint32_t i = 0; i < buckets_; i += detail::kBoundsPadding) {
      // A lane of cmplt is all ones (-1) where the bound is below v.
      a = _mm_sub_epi64(a, _mm_castpd_si128(_mm_cmplt_pd(_mm_loadu_pd(bounds_ + i), x)));
      b = _mm_sub_epi64(b, _mm_castpd_si128(_mm_cmplt_pd(_mm_loadu_pd(bounds_ + i + 2), x)));
    }
    a = _mm_add_epi64(a, b);
    return static_cast<std::uint32_t>(_mm_cvtsi128_si64(a) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(a, a)));
#else
    std::uint32_t below = 0;
    for (std::uint32_t i = 0; i < buckets_; ++i) below += bounds_[i] < v ? 1 : 0;
    return below;
#endif
  }

  // False for a handle whose series was refused (the segment was full).
  bool attached() const noexcept { return segment_ != detail::kDetachedSegment; }

 private:
  friend class HistogramFamily;
  // `bounds`: `buckets` finite bounds followed by +Inf up to a multiple of
  // kBoundsPadding, kept by the family for the process's life.
  Histogram(std::uint16_t segment, std::uint32_t cell, const double* bounds, std::uint32_t buckets)
      : segment_(segment), buckets_(buckets), cell_(cell), bounds_(bounds) {}

  std::uint16_t real_segment() const noexcept {
    return attached() ? segment_ : static_cast<std::uint16_t>(cell_);
  }

  std::uint16_t segment_ = detail::kDetachedSegment;
  std::uint32_t buckets_ = 0;  // finite bounds
  std::uint32_t cell_ = 0;     // first cell (even); a refused handle: its real segment
  const double* bounds_ = nullptr;
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
