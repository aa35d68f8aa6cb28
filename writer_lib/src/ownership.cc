// The process table, claiming thread slots and process records, handing them
// back, fork handling, and the slow paths of the inline updates.
#include "process_segments.h"

#include <shmetrics/segment.h>
#include <shmetrics/shm/test_hooks.h>

#include <bit>
#include <cstring>
#include <pthread.h>
#include <unistd.h>

namespace shmetrics::detail {

constinit thread_local std::uint64_t* tls_cells[kMaxSegments] __attribute__((tls_model("initial-exec")));
std::atomic<shm::GaugeCell*> process_gauge_cells[kMaxSegments];

namespace {

// While a thread writes through the overflow slot it retries a real claim
// after this many updates.
constexpr std::uint32_t kOverflowRetryEvery = 4096;
// After failing to claim a process record, updates skip this many attempts.
constexpr std::uint32_t kRecordRetryEvery = 4096;

std::mutex g_table_mutex;  // guards the table's shape (opening segments)
ProcessSegment* g_table[kMaxSegments];
std::atomic<std::uint16_t> g_table_size{0};

// What this thread owns, so that its exit hands it back. Trivial, so reaching
// it costs no TLS initialisation guard.
struct ThreadClaims {
  std::int32_t slot[kMaxSegments];  // slot + 1; 0: none
  std::uint32_t overflow_countdown[kMaxSegments];
};
thread_local ThreadClaims tls_claims __attribute__((tls_model("initial-exec")));
pthread_key_t g_thread_exit_key;

shm::SlotHeader& slot_header(ProcessSegment& seg, std::uint32_t slot) {
  return *reinterpret_cast<shm::SlotHeader*>(seg.base() + seg.geometry().slot_offset(slot));
}
std::uint64_t* slot_cells(ProcessSegment& seg, std::uint32_t slot) {
  return reinterpret_cast<std::uint64_t*>(seg.base() + seg.geometry().slot_offset(slot) +
                                          sizeof(shm::SlotHeader));
}
shm::RecordHeader& record_header(ProcessSegment& seg, std::uint32_t record) {
  return *reinterpret_cast<shm::RecordHeader*>(seg.base() + seg.geometry().record_offset(record));
}

// Hands back every slot this thread holds. Runs at thread exit (pthread key
// destructor) — the segments stay mapped until the process exits.
void release_thread_slots(void*) {
  for (std::uint16_t i = 0; i < g_table_size.load(std::memory_order_acquire); ++i) {
    std::int32_t held = tls_claims.slot[i];
    if (held == 0) continue;
    tls_claims.slot[i] = 0;
    tls_cells[i] = nullptr;
    ProcessSegment& seg = *g_table[i];
    auto slot = static_cast<std::uint32_t>(held - 1);
    std::lock_guard lock(seg.claims_mutex);
    slot_header(seg, slot).owner_pid.store(0, std::memory_order_release);
    shm::unlock_byte(seg.mapped->fd(), seg.geometry().slot_lock_byte(slot));
    seg.slots_held[slot] = 0;
  }
}

// Lock order: table, then each segment's mutex and claims_mutex, then shm's
// descriptor table.
void before_fork() {
  g_table_mutex.lock();
  for (std::uint16_t i = 0; i < g_table_size.load(std::memory_order_relaxed); ++i) {
    g_table[i]->mutex.lock();
    g_table[i]->claims_mutex.lock();
  }
  shm::lock_descriptor_table();
}

void after_fork_in_parent() {
  shm::unlock_descriptor_table();
  for (std::uint16_t i = g_table_size.load(std::memory_order_relaxed); i-- > 0;) {
    g_table[i]->claims_mutex.unlock();
    g_table[i]->mutex.unlock();
  }
  g_table_mutex.unlock();
}

// The child holds no fcntl locks (they are not inherited): it owns nothing,
// and claims its own slots and record on first write.
void after_fork_in_child() {
  shm::unlock_descriptor_table();
  for (std::uint16_t i = g_table_size.load(std::memory_order_relaxed); i-- > 0;) {
    ProcessSegment& seg = *g_table[i];
    std::fill(seg.slots_held.begin(), seg.slots_held.end(), 0);
    seg.record.store(-1, std::memory_order_relaxed);
    seg.record_retry_countdown.store(0, std::memory_order_relaxed);
    process_gauge_cells[i].store(nullptr, std::memory_order_relaxed);
    tls_cells[i] = nullptr;
    tls_claims.slot[i] = 0;
    tls_claims.overflow_countdown[i] = 0;
    seg.claims_mutex.unlock();
    seg.mutex.unlock();
  }
  g_table_mutex.unlock();
}

void install_process_hooks() {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_key_create(&g_thread_exit_key, release_thread_slots);
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
  });
}

// Scans for a slot: free ones first, then ones whose owner the kernel proves
// dead. Returns the slot's cells, or nullptr when every slot is held by a live
// process. Caller holds seg.claims_mutex.
std::uint64_t* claim_slot(std::uint16_t index, ProcessSegment& seg) {
  const std::uint32_t slots = seg.mapped->capacities().thread_slots;
  const int fd = seg.mapped->fd();
  for (int pass = 0; pass < 2; ++pass) {
    for (std::uint32_t i = 0; i < slots; ++i) {
      if (seg.slots_held[i]) continue;
      shm::SlotHeader& h = slot_header(seg, i);
      bool looks_free = h.owner_pid.load(std::memory_order_relaxed) == 0;
      if (looks_free != (pass == 0)) continue;
      if (!shm::try_lock_byte(fd, seg.geometry().slot_lock_byte(i))) continue;
      // The lock is proof: nobody else owns it. Its cells are kept as they are.
      shm::park_point("claim_slot.after_lock");
      seg.slots_held[i] = 1;
      h.owner_pid.store(static_cast<std::uint32_t>(::getpid()), std::memory_order_relaxed);
      // Saturates: a count that wrapped to 0 would hide the slot's cells.
      std::uint32_t claims = h.claims.load(std::memory_order_relaxed);
      if (claims != UINT32_MAX) h.claims.store(claims + 1, std::memory_order_release);
      tls_claims.slot[index] = static_cast<std::int32_t>(i) + 1;
      pthread_setspecific(g_thread_exit_key, &tls_claims);
      return slot_cells(seg, i);
    }
  }
  return nullptr;
}

// The thread's cells, claiming a slot when due; nullptr while it must use the
// overflow slot.
std::uint64_t* cells_for_thread(std::uint16_t index, ProcessSegment& seg) noexcept {
  if (tls_claims.overflow_countdown[index] > 0) {
    --tls_claims.overflow_countdown[index];
    return nullptr;
  }
  std::uint64_t* cells = nullptr;
  try {
    std::lock_guard lock(seg.claims_mutex);
    cells = claim_slot(index, seg);
  } catch (...) {
    cells = nullptr;  // an fcntl failure: write exactly, through the overflow slot
  }
  if (cells == nullptr) {
    tls_claims.overflow_countdown[index] = kOverflowRetryEvery;
    count_event(index, shm::kEventOverflowWriters);
  }
  tls_cells[index] = cells;
  return cells;
}

shm::GaugeCell* claim_record(std::uint16_t index, ProcessSegment& seg) {
  std::lock_guard lock(seg.claims_mutex);
  if (seg.record.load(std::memory_order_relaxed) >= 0)
    return process_gauge_cells[index].load(std::memory_order_relaxed);
  const auto& caps = seg.mapped->capacities();
  const auto& g = seg.geometry();
  const int fd = seg.mapped->fd();
  for (int pass = 0; pass < 2; ++pass) {
    for (std::uint32_t i = 0; i < caps.process_records; ++i) {
      shm::RecordHeader& h = record_header(seg, i);
      bool looks_free = h.owner_pid.load(std::memory_order_relaxed) == 0;
      if (looks_free != (pass == 0)) continue;
      if (!shm::try_lock_byte(fd, g.record_lock_byte(caps.thread_slots, i))) continue;
      // A dead owner's values do not carry over in the live modes: reset.
      auto* cells = reinterpret_cast<shm::GaugeCell*>(seg.base() + g.record_offset(i) +
                                                      sizeof(shm::RecordHeader));
      for (std::uint32_t c = 0; c < caps.series; ++c) {
        cells[c].value.store(shm::kGaugeUnset, std::memory_order_relaxed);
        cells[c].stamp.store(0, std::memory_order_relaxed);
        if (c == caps.series / 2) shm::park_point("claim_record.mid_reset");
      }
      for (std::uint32_t a = 0; a < caps.info_families; ++a) {
        auto* area = reinterpret_cast<shm::InfoAreaHeader*>(seg.base() + g.info_area_offset(i, a));
        // A dead writer may have left it odd; even it out, empty.
        std::uint64_t s = area->seq.load(std::memory_order_relaxed);
        area->seq.store((s | 1) + 1, std::memory_order_relaxed);
        area->length.store(0, std::memory_order_relaxed);
      }
      h.generation.fetch_add(1, std::memory_order_relaxed);
      h.owner_pid.store(static_cast<std::uint32_t>(::getpid()), std::memory_order_release);
      seg.record.store(static_cast<std::int32_t>(i), std::memory_order_release);
      process_gauge_cells[index].store(cells, std::memory_order_release);
      return cells;
    }
  }
  return nullptr;
}

}  // namespace

std::uint64_t* overflow_cells(ProcessSegment& seg) noexcept {
  return slot_cells(seg, seg.mapped->capacities().thread_slots);
}

std::uint64_t* cells_of_this_thread(std::uint16_t index, ProcessSegment& seg) noexcept {
  if (std::uint64_t* cells = tls_cells[index]) return cells;
  return cells_for_thread(index, seg);
}

ProcessSegment* segment_at(std::uint16_t index) noexcept {
  if (index >= g_table_size.load(std::memory_order_acquire)) return nullptr;
  return g_table[index];
}

void count_event(std::uint16_t index, shm::Event event, std::uint64_t n) noexcept {
  if (ProcessSegment* seg = segment_at(index))
    seg->header().events[event].fetch_add(n, std::memory_order_relaxed);
}

void count_invalid_update(std::uint16_t segment) noexcept {
  count_event(segment, shm::kEventInvalidUpdates);
}

void counter_add_slow(std::uint16_t segment, std::uint32_t cell, std::uint64_t n) noexcept {
  if (segment == kDetachedSegment)
    return count_event(static_cast<std::uint16_t>(cell), shm::kEventRefusedUpdates);
  ProcessSegment* seg = segment_at(segment);
  if (seg == nullptr) return;
  if (std::uint64_t* cells = cells_of_this_thread(segment, *seg)) {
    std::atomic_ref<std::uint64_t> c(cells[cell]);
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  } else {
    std::atomic_ref<std::uint64_t>(overflow_cells(*seg)[cell]).fetch_add(n, std::memory_order_relaxed);
  }
}

void counter_add_double_slow(std::uint16_t segment, std::uint32_t cell, double v) noexcept {
  if (segment == kDetachedSegment)
    return count_event(static_cast<std::uint16_t>(cell), shm::kEventRefusedUpdates);
  ProcessSegment* seg = segment_at(segment);
  if (seg == nullptr) return;
  std::uint64_t* cells = cells_of_this_thread(segment, *seg);
  bool shared = cells == nullptr;
  std::atomic_ref<std::uint64_t> c(shared ? overflow_cells(*seg)[cell] : cells[cell]);
  std::uint64_t old = c.load(std::memory_order_relaxed);
  for (;;) {
    std::uint64_t next = std::bit_cast<std::uint64_t>(std::bit_cast<double>(old) + v);
    if (!shared) return c.store(next, std::memory_order_relaxed);
    if (c.compare_exchange_weak(old, next, std::memory_order_relaxed)) return;
  }
}

shm::GaugeCell* gauge_cells_slow(std::uint16_t segment, std::uint32_t cell) noexcept {
  if (segment == kDetachedSegment) {
    count_event(static_cast<std::uint16_t>(cell), shm::kEventRefusedUpdates);
    return nullptr;
  }
  ProcessSegment* seg = segment_at(segment);
  if (seg == nullptr) return nullptr;
  // After a failed claim, most updates skip the scan (and its syscalls).
  std::uint32_t countdown = seg->record_retry_countdown.load(std::memory_order_relaxed);
  if (countdown > 0) {
    seg->record_retry_countdown.store(countdown - 1, std::memory_order_relaxed);
    count_event(segment, shm::kEventRecordUnavailable);
    return nullptr;
  }
  shm::GaugeCell* cells = nullptr;
  try {
    cells = claim_record(segment, *seg);
  } catch (...) {
    cells = nullptr;
  }
  if (cells == nullptr) {
    seg->record_retry_countdown.store(kRecordRetryEvery, std::memory_order_relaxed);
    count_event(segment, shm::kEventRecordUnavailable);
  }
  return cells;
}

}  // namespace shmetrics::detail

namespace shmetrics {

Segment Segment::open(const SegmentOptions& options) {
  std::string name = options.name.empty() ? shm::segment_name(options.instance, options.role)
                                          : options.name;
  if (std::string err = shm::check_segment_name(name); !err.empty())
    throw std::invalid_argument(err);
  if (options.mode & 022)
    throw std::invalid_argument("mode 0" + std::to_string((options.mode >> 6) & 7) +
                                std::to_string((options.mode >> 3) & 7) + std::to_string(options.mode & 7) +
                                " is invalid: segments must not be writable by group or others "
                                "(0600, or 0640 to let a group read)");
  if (options.lock_timeout.count() <= 0)
    throw std::invalid_argument("lock_timeout must be positive, got " +
                                std::to_string(options.lock_timeout.count()) + " ms");
  detail::install_process_hooks();
  std::lock_guard lock(detail::g_table_mutex);
  std::uint16_t size = detail::g_table_size.load(std::memory_order_relaxed);
  for (std::uint16_t i = 0; i < size; ++i)
    if (detail::g_table[i]->mapped->name() == name) {
      if (!(detail::g_table[i]->mapped->capacities() == options.capacities))
        throw shm::SegmentError("segment \"" + name + "\" is open in this process with capacities " +
                                shm::describe(detail::g_table[i]->mapped->capacities()) +
                                " but was asked for " + shm::describe(options.capacities));
      return Segment(i);
    }
  if (size >= detail::kDetachedSegment)
    throw std::invalid_argument("cannot open segment \"" + name + "\": this process already has " +
                                std::to_string(size) + " segments open, the most it can have");
  auto seg = std::make_unique<detail::ProcessSegment>();
  seg->mapped = shm::MappedSegment::open_or_create(name, options.capacities, options.mode);
  seg->lock_timeout = options.lock_timeout;
  seg->slots_held.assign(options.capacities.thread_slots, 0);
  // Segments stay mapped until the process exits: handles never dangle.
  detail::g_table[size] = seg.release();
  detail::g_table_size.store(size + 1, std::memory_order_release);
  return Segment(size);
}

void Segment::recreate(const SegmentOptions& options) {
  std::string name = options.name.empty() ? shm::segment_name(options.instance, options.role)
                                          : options.name;
  if (std::string err = shm::check_segment_name(name); !err.empty())
    throw std::invalid_argument(err);
  shm::recreate_segment(name, options.capacities, options.mode);
}

const std::string& Segment::name() const { return detail::g_table[index_]->mapped->name(); }
int Segment::fd() const { return detail::g_table[index_]->mapped->fd(); }

}  // namespace shmetrics
