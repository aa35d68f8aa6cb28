// This process's view of the segments it writes: the table behind Segment
// handles, local caches of what the segment registers, and what this process
// owns in each segment. Internal to libshmetrics.
#pragma once

#include <shmetrics/detail/hot_path.h>
#include <shmetrics/shm/layout.h>
#include <shmetrics/shm/segment_file.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace shmetrics::detail {

struct LocalFamily {
  std::string name;
  shm::MetricType type;
  shm::ValueType value_type;
  shm::GaugeMode gauge_mode;
  std::vector<std::string> label_names;
  std::uint32_t info_index;
  std::unordered_map<std::string, std::uint32_t> cells;  // encoded label values -> (first) cell
  std::string unit;
  // Histograms: the finite bucket bounds, and the same followed by +Inf up to
  // a multiple of kBoundsPadding, which handles point at (Histogram::bucket_of
  // compares them in groups): the vector's storage stays put for the
  // process's life (families are only appended).
  std::vector<double> bounds;
  std::vector<double> padded_bounds;
};

struct ProcessSegment {
  std::unique_ptr<shm::MappedSegment> mapped;
  std::chrono::milliseconds lock_timeout{1000};

  // Guards the local caches of what is registered. Held while a registration
  // writes the segment, so fork() (whose prepare handler takes it) never
  // copies a half-done one into the child; never held while waiting for the
  // registration lock.
  std::mutex mutex;
  std::vector<LocalFamily> families;
  std::unordered_map<std::string, std::uint32_t> family_by_name;
  // Every name a family takes in an exposition (shm::exposition_names), to
  // the first family taking it.
  std::unordered_map<std::string, std::uint32_t> family_by_exposition_name;
  std::uint32_t synced_families = 0;  // entries of the segment read into families
  std::uint32_t synced_series = 0;

  // Guards what this process owns. Separate from `mutex` and never held across
  // a wait, so claims, thread exits and fork() are never held up by a
  // registration waiting for a stopped process.
  std::mutex claims_mutex;
  std::vector<std::uint8_t> slots_held;  // by some thread of this process

  // Serialises this process's claim of its record. Held across the bounded
  // wait for the segment's fold lock (never across anything unbounded), so
  // slot claims, thread exits and fork() never wait behind a fold.
  std::mutex record_mutex;
  std::atomic<std::int32_t> record{-1};  // this process's record, -1: none yet
  std::atomic<std::uint32_t> record_retry_countdown{0};

  shm::Header& header() const { return *mapped->header(); }
  const shm::Geometry& geometry() const { return mapped->geometry(); }
  std::uint8_t* base() const { return mapped->base(); }
};

// nullptr when `index` names no open segment.
ProcessSegment* segment_at(std::uint16_t index) noexcept;
void count_event(std::uint16_t index, shm::Event event, std::uint64_t n = 1) noexcept;

// Reads families and series registered by any process since the last sync.
// Caller holds seg.mutex.
void sync_from_segment(ProcessSegment& seg);

// Whether this thread holds a slot, claiming one when due (false while it
// writes through the overflow slot).
bool thread_has_slot(std::uint16_t index, ProcessSegment& seg) noexcept;
// This thread's slot, or nullptr while it writes through the overflow slot.
shm::SlotHeader* slot_of_this_thread(std::uint16_t index, ProcessSegment& seg) noexcept;
// This thread's cell of counter cell `cell`, taking a page from the pool for
// it when its slot has none; nullptr when the thread has no slot or the pool
// is empty (then the update goes through the overflow slot, counted).
std::uint64_t* cell_of_this_thread(std::uint16_t index, ProcessSegment& seg, std::uint32_t cell) noexcept;
// The readyz area of `slot` (this thread's), taking its pages from the pool
// on first use; nullptr when the pool is empty (counted): then the overflow
// slot's area is used.
shm::ReadyzArea* readyz_area_of(std::uint16_t index, ProcessSegment& seg, shm::SlotHeader& slot) noexcept;
// The overflow slot's dense cells (shared: atomic read-modify-writes).
std::uint64_t* overflow_cells(ProcessSegment& seg) noexcept;

}  // namespace shmetrics::detail
