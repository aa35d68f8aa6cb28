// Recording readyz samples into the calling thread's slot.
#include "process_segments.h"

#include <shmetrics/readyz.h>
#include <shmetrics/segment.h>

#include <ctime>

namespace shmetrics {

namespace {

class MonotonicClock final : public Clock {
 public:
  std::uint64_t now_ns() const noexcept override {
    struct timespec ts {};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
  }
};

std::uint64_t bucket_with_sample(std::uint64_t bucket, std::uint32_t second, bool ok) {
  std::uint32_t okays = 0, total = 0;
  if (shm::bucket_second(bucket) == second) {
    okays = shm::bucket_ok(bucket);
    total = shm::bucket_total(bucket);
  }
  if (total < shm::kBucketMax) {  // saturate ok and total together
    ++total;
    if (ok) ++okays;
  }
  return shm::pack_bucket(second, okays, total);
}

}  // namespace

const Clock& monotonic_clock() noexcept {
  static const MonotonicClock clock;
  return clock;
}

Readyz Segment::readyz(const Clock& clock) const {
  detail::ProcessSegment* seg = detail::segment_at(index_);
  if (seg == nullptr) throw std::invalid_argument("segment handle does not name an open segment");
  seg->header().readyz_used.store(1, std::memory_order_relaxed);
  return Readyz(index_, &clock);
}

void Readyz::observe(bool ok) const noexcept {
  detail::ProcessSegment* seg = detail::segment_at(segment_);
  if (seg == nullptr || clock_ == nullptr) return;
  const std::uint64_t now_ns = clock_->now_ns();
  const auto second = static_cast<std::uint32_t>(now_ns / 1'000'000'000u);
  const shm::Geometry& g = seg->geometry();

  shm::SlotHeader* own = detail::slot_of_this_thread(segment_, *seg);
  shm::ReadyzArea* area = own != nullptr ? detail::readyz_area_of(segment_, *seg, *own) : nullptr;
  const bool owned = area != nullptr;
  if (!owned) area = reinterpret_cast<shm::ReadyzArea*>(seg->base() + g.overflow_readyz_offset);
  auto* buckets = reinterpret_cast<std::atomic<std::uint64_t>*>(area + 1);
  std::atomic<std::uint64_t>& bucket = buckets[second % g.readyz_ring_buckets];
  const std::uint64_t sample = now_ns << 1 | (ok ? 1 : 0);

  if (owned) {  // the one writer of these words: load and store
    auto bump = [](std::atomic<std::uint64_t>& w) {
      w.store(w.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    };
    bump(area->checks);
    if (!ok) bump(area->failures);
    bucket.store(bucket_with_sample(bucket.load(std::memory_order_relaxed), second, ok),
                 std::memory_order_relaxed);
    area->last_sample.store(sample, std::memory_order_relaxed);
    return;
  }
  // The shared overflow slot: read-modify-writes.
  area->checks.fetch_add(1, std::memory_order_relaxed);
  if (!ok) area->failures.fetch_add(1, std::memory_order_relaxed);
  std::uint64_t old = bucket.load(std::memory_order_relaxed);
  while (!bucket.compare_exchange_weak(old, bucket_with_sample(old, second, ok),
                                       std::memory_order_relaxed)) {
  }
  old = area->last_sample.load(std::memory_order_relaxed);
  while ((old >> 1) <= now_ns &&
         !area->last_sample.compare_exchange_weak(old, sample, std::memory_order_relaxed)) {
  }
}

}  // namespace shmetrics
