// Readyz: outcomes of readiness checks, from which the exporter computes
// readyz_checks_total, readyz_failures_total, readyz_success_ratio_1m/_5m and
// readyz_status at scrape time.
#pragma once

#include <shmetrics/clock.h>
#include <shmetrics/detail/hot_path.h>

#include <cstdint>

namespace shmetrics {

// Records each outcome in the calling thread's slot: its totals, a ring of
// per-second buckets (one writer per bucket, like every cell), and the newest
// sample. The exporter adds the rings of all slots over the W whole seconds
// ending at the current one (W set when the segment was created: 60 s and 300 s
// by default); an empty window has ratio 1.0. Buckets stamped outside the
// window, in the past or the future, are ignored, so a ratio is always in [0, 1].
//
// Thread-safe: any thread of any process may call observe() concurrently.
class Readyz {
 public:
  Readyz() = default;
  void observe(bool ok) const noexcept;

 private:
  friend class Segment;
  Readyz(std::uint16_t segment, const Clock* clock) : segment_(segment), clock_(clock) {}
  std::uint16_t segment_ = detail::kDetachedSegment;
  const Clock* clock_ = nullptr;
};

}  // namespace shmetrics
