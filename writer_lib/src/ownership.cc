// The process table, claiming thread slots and process records, handing them
// back, fork handling, and the slow paths of the inline updates.
#include "process_segments.h"

#include <shmetrics/segment.h>
#include <shmetrics/shm/robust_mutex.h>
#include <shmetrics/shm/seqlock.h>
#include <shmetrics/shm/test_hooks.h>

#include <algorithm>
#include <bit>
#include <optional>
#include <cerrno>
#include <ctime>
#include <cstring>
#include <pthread.h>
#include <unistd.h>

namespace shmetrics::detail {

constinit thread_local ThreadCells tls_cells[kMaxSegments] __attribute__((tls_model("initial-exec")));
constinit thread_local OverflowWriter tls_overflow[kMaxSegments] __attribute__((tls_model("initial-exec")));
std::atomic<shm::GaugeCell*> process_gauge_cells[kMaxSegments];

namespace {

// While a thread writes through the overflow slot it looks at the clock every
// kOverflowCheckEvery updates, and tries for a slot again when its last try
// is kOverflowRetryNs ago: a full segment costs a busy thread one scan of
// semop per 10 ms (~30 us for 64 slots), however fast it updates.
constexpr std::uint32_t kOverflowCheckEvery = 256;
constexpr std::uint64_t kOverflowRetryNs = 10'000'000;
// When every process record is held by a live process (or the fold lock was
// not had within lock_timeout), this many gauge and info updates skip the
// claim (and its syscalls) before the next try. A free or dead record is
// always claimed at once: only a full table backs off.
constexpr std::uint32_t kRecordRetryEvery = 4096;

std::mutex g_table_mutex;  // guards the table's shape (opening segments)
ProcessSegment* g_table[kMaxSegments];
std::atomic<std::uint16_t> g_table_size{0};

// What this thread owns, so that its exit hands it back. Trivial, so reaching
// it costs no TLS initialisation guard.
struct ThreadClaims {
  std::int32_t slot[kMaxSegments];  // slot + 1; 0: none
  std::uint64_t last_claim_try_ns[kMaxSegments];  // while overflowing
};
thread_local ThreadClaims tls_claims __attribute__((tls_model("initial-exec")));
pthread_key_t g_thread_exit_key;

shm::SlotHeader& slot_header(ProcessSegment& seg, std::uint32_t slot) {
  return *reinterpret_cast<shm::SlotHeader*>(seg.base() + seg.geometry().slot_offset(slot));
}
ThreadCells slot_cells(ProcessSegment& seg, std::uint32_t slot) {
  return {reinterpret_cast<std::uint32_t*>(seg.base() + seg.geometry().page_table_offset(slot)),
          reinterpret_cast<std::uint64_t*>(seg.base() + seg.geometry().pool_offset)};
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
    tls_cells[i] = {};
    ProcessSegment& seg = *g_table[i];
    auto slot = static_cast<std::uint32_t>(held - 1);
    std::lock_guard lock(seg.claims_mutex);
    slot_header(seg, slot).owner_pid.store(0, std::memory_order_release);
    shm::release_claim(seg.mapped->semaphore_set(), shm::Geometry::slot_semaphore(slot));
    seg.slots_held[slot] = 0;
  }
}

// Lock order: table, then each segment's mutex, record_mutex and claims_mutex,
// then shm's descriptor table.
void before_fork() {
  g_table_mutex.lock();
  for (std::uint16_t i = 0; i < g_table_size.load(std::memory_order_relaxed); ++i) {
    g_table[i]->mutex.lock();
    g_table[i]->record_mutex.lock();
    g_table[i]->claims_mutex.lock();
  }
  shm::lock_descriptor_table();
}

void after_fork_in_parent() {
  shm::unlock_descriptor_table();
  for (std::uint16_t i = g_table_size.load(std::memory_order_relaxed); i-- > 0;) {
    g_table[i]->claims_mutex.unlock();
    g_table[i]->record_mutex.unlock();
    g_table[i]->mutex.unlock();
  }
  g_table_mutex.unlock();
}

// The child holds no claims (SEM_UNDO adjustments are not inherited): it owns nothing,
// and claims its own slots and record on first write.
void after_fork_in_child() {
  shm::unlock_descriptor_table();
  for (std::uint16_t i = g_table_size.load(std::memory_order_relaxed); i-- > 0;) {
    ProcessSegment& seg = *g_table[i];
    std::fill(seg.slots_held.begin(), seg.slots_held.end(), 0);
    seg.record.store(-1, std::memory_order_relaxed);
    seg.record_retry_countdown.store(0, std::memory_order_relaxed);
    process_gauge_cells[i].store(nullptr, std::memory_order_relaxed);
    tls_cells[i] = {};
    tls_overflow[i] = {};
    tls_claims.slot[i] = 0;
    seg.claims_mutex.unlock();
    seg.record_mutex.unlock();
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

// Scans for a slot, preferring slots that were used before: first ones handed
// back, then ones whose owner the kernel proves dead, and only then ones never
// claimed — so recycled workers reuse slots and a scrape sums few of them.
// Returns the slot's page table and pool, or nullptrs when every slot is held
// by a live process. Caller holds seg.claims_mutex.
ThreadCells claim_slot(std::uint16_t index, ProcessSegment& seg) {
  const std::uint32_t slots = seg.mapped->capacities().thread_slots;
  const int set = seg.mapped->semaphore_set();
  enum Pass { kHandedBack, kOwnerMaybeDead, kNeverClaimed };
  for (int pass = kHandedBack; pass <= kNeverClaimed; ++pass) {
    for (std::uint32_t i = 0; i < slots; ++i) {
      if (seg.slots_held[i]) continue;
      shm::SlotHeader& h = slot_header(seg, i);
      const bool owned = h.owner_pid.load(std::memory_order_relaxed) != 0;
      const bool used = h.claims.load(std::memory_order_relaxed) != 0;
      const Pass kind = owned ? kOwnerMaybeDead : used ? kHandedBack : kNeverClaimed;
      if (kind != pass) continue;
      if (!shm::try_claim(set, shm::Geometry::slot_semaphore(i))) continue;
      // The claim is proof: nobody else owns it. Its cells are kept as they are.
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
  return {};
}

std::uint64_t clock_ns(clockid_t clock) noexcept {
  struct timespec ts {};
  ::clock_gettime(clock, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// Tries to claim a slot for this thread. When none can be had the thread
// writes through the overflow slot (counted once, as it starts to) until
// overflow_check() finds one. Returns whether it holds a slot now.
bool claim_for_thread(std::uint16_t index, ProcessSegment& seg) noexcept {
  ThreadCells cells{};
  try {
    std::lock_guard lock(seg.claims_mutex);
    cells = claim_slot(index, seg);
  } catch (...) {
    cells = {};  // a semop failure: write exactly, through the overflow slot
  }
  OverflowWriter& overflow = tls_overflow[index];
  if (cells.pages != nullptr) {
    overflow = {};
  } else {
    if (overflow.cells == nullptr) count_event(index, shm::kEventOverflowWriters);
    overflow = {overflow_cells(seg), kOverflowCheckEvery};
    tls_claims.last_claim_try_ns[index] = clock_ns(CLOCK_MONOTONIC_COARSE);
  }
  tls_cells[index] = cells;
  return cells.pages != nullptr;
}

shm::GaugeCell* record_cells(ProcessSegment& seg, std::uint32_t record) {
  return reinterpret_cast<shm::GaugeCell*>(seg.base() + seg.geometry().record_offset(record) +
                                           sizeof(shm::RecordHeader));
}

// Empties a record's gauge cells and info areas and starts a new generation.
void reset_record(ProcessSegment& seg, std::uint32_t record) {
  const auto& caps = seg.mapped->capacities();
  const auto& g = seg.geometry();
  shm::GaugeCell* cells = record_cells(seg, record);
  for (std::uint32_t c = 0; c < caps.gauge_series; ++c) {
    // Stamp first, value with release: a reader that sees the reset value
    // (after an acquire load of it) sees the integer cell unset too.
    cells[c].stamp.store(0, std::memory_order_relaxed);
    cells[c].value.store(shm::kGaugeUnset, std::memory_order_release);
    if (c == caps.gauge_series / 2) shm::park_point("claim_record.mid_reset");
  }
  for (std::uint32_t a = 0; a < caps.info_families; ++a) {
    auto* area = reinterpret_cast<shm::InfoAreaHeader*>(seg.base() + g.info_area_offset(record, a));
    // A dead writer may have left it odd; even it out, empty.
    area->length.store(0, std::memory_order_relaxed);
    shm::seqlock_reset(area->seq);
  }
  record_header(seg, record).generation.fetch_add(1, std::memory_order_release);
}

std::uint8_t* dead_buffer(ProcessSegment& seg, std::uint64_t state_word, bool active) {
  std::uint32_t buffer = static_cast<std::uint32_t>(state_word & 1) ^ (active ? 0u : 1u);
  return seg.base() + seg.geometry().dead_buffer_offset(buffer);
}

// Combines a dead process's value into the folded one, per mode.
void combine(shm::GaugeMode mode, bool integer, shm::GaugeCell& into, const shm::GaugeCell& from) {
  std::uint64_t v = from.value.load(std::memory_order_relaxed);
  std::uint64_t stamp = from.stamp.load(std::memory_order_relaxed);
  if (!shm::gauge_cell_set(v, stamp, integer) || (shm::is_timestamped(mode) && (stamp & 1)))
    return;  // unset, or torn
  std::uint64_t have = into.value.load(std::memory_order_relaxed);
  std::uint64_t out = v;
  if (shm::gauge_cell_set(have, into.stamp.load(std::memory_order_relaxed), integer)) {
    if (mode == shm::GaugeMode::kMostRecent) {
      if (into.stamp.load(std::memory_order_relaxed) > stamp) return;
    } else {
      out = shm::combine_gauge_values(mode, integer, have, v);
    }
  }
  into.value.store(out, std::memory_order_relaxed);
  into.stamp.store(stamp, std::memory_order_relaxed);
}

// Under fold_lock: the values of dead record `record` in the modes that keep
// them go into the inactive dead buffer, on top of the active one's, and that
// buffer is published. Exactly once per record generation: a buffer already
// marked with it means the fold happened.
void fold_record(ProcessSegment& seg, std::uint32_t record) {
  shm::Header& h = seg.header();
  const auto& caps = seg.mapped->capacities();
  auto& dead = *reinterpret_cast<shm::DeadState*>(seg.base() + seg.geometry().dead_offset);
  const std::uint32_t generation = record_header(seg, record).generation.load(std::memory_order_acquire);
  const std::uint64_t state = dead.state.load(std::memory_order_acquire);
  std::uint8_t* active = dead_buffer(seg, state, true);
  std::uint8_t* next = dead_buffer(seg, state, false);
  auto* active_marker = reinterpret_cast<shm::DeadBufferHeader*>(active);
  if (active_marker->folded_record.load(std::memory_order_relaxed) == record &&
      active_marker->folded_generation.load(std::memory_order_relaxed) == generation)
    return;
  auto* from = reinterpret_cast<shm::GaugeCell*>(active + sizeof(shm::DeadBufferHeader));
  auto* to = reinterpret_cast<shm::GaugeCell*>(next + sizeof(shm::DeadBufferHeader));
  for (std::uint32_t c = 0; c < caps.gauge_series; ++c) {
    to[c].value.store(from[c].value.load(std::memory_order_relaxed), std::memory_order_relaxed);
    to[c].stamp.store(from[c].stamp.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  // Which cells fold, and how, comes from the segment's own tables.
  const auto* series = reinterpret_cast<const shm::SeriesEntry*>(seg.base() + seg.geometry().series_offset);
  const auto* families = reinterpret_cast<const shm::FamilyEntry*>(seg.base() + seg.geometry().families_offset);
  const std::uint32_t series_count = std::min(h.series_count.load(std::memory_order_acquire), caps.series);
  const std::uint32_t family_count = std::min(h.family_count.load(std::memory_order_acquire), caps.families);
  const shm::GaugeCell* values = record_cells(seg, record);
  for (std::uint32_t s = 0; s < series_count; ++s) {
    const shm::SeriesEntry e = series[s];
    if (e.family_index >= family_count || e.cell_index >= caps.gauge_series) continue;
    if (families[e.family_index].type != shm::MetricType::kGauge) continue;
    const shm::GaugeMode mode = families[e.family_index].gauge_mode;
    if (mode == shm::GaugeMode::kSum || mode == shm::GaugeMode::kMax ||
        mode == shm::GaugeMode::kMin || mode == shm::GaugeMode::kMostRecent)
      combine(mode, families[e.family_index].value_type == shm::ValueType::kInteger,
              to[e.cell_index], values[e.cell_index]);
  }
  auto* marker = reinterpret_cast<shm::DeadBufferHeader*>(next);
  marker->folded_record.store(record, std::memory_order_relaxed);
  marker->folded_generation.store(generation, std::memory_order_relaxed);
  shm::park_point("fold.before_publish");
  dead.state.store(((state >> 1) + 1) << 1 | ((state & 1) ^ 1), std::memory_order_release);
  shm::park_point("fold.after_publish");
}

// A holder of fold_lock died: if its fold was published but the record not yet
// reset, finish that (the record is then free).
void finish_dead_folder(ProcessSegment& seg) {
  auto& dead = *reinterpret_cast<shm::DeadState*>(seg.base() + seg.geometry().dead_offset);
  auto* marker = reinterpret_cast<shm::DeadBufferHeader*>(
      dead_buffer(seg, dead.state.load(std::memory_order_acquire), true));
  std::uint32_t record = marker->folded_record.load(std::memory_order_relaxed);
  if (record >= seg.mapped->capacities().process_records) return;
  shm::RecordHeader& h = record_header(seg, record);
  if (h.owner_pid.load(std::memory_order_acquire) == 0 ||
      h.generation.load(std::memory_order_acquire) != marker->folded_generation.load(std::memory_order_relaxed))
    return;
  reset_record(seg, record);
  h.owner_pid.store(0, std::memory_order_release);
}

// Held while a record is folded and reset. A fold takes microseconds, so a
// claimer waits for it, at most lock_timeout (a stopped holder). A holder
// that died is finished first: its published fold's record reset.
class FoldLock {
 public:
  explicit FoldLock(ProcessSegment& seg) : lock_(seg.header().fold_lock, seg.lock_timeout) {
    if (lock_.recovered()) finish_dead_folder(seg);
  }
  bool held() const { return lock_.held(); }

 private:
  shm::RobustLock lock_;
};

enum class RecordClaim {
  kClaimed,
  kAllLive,       // every record is held by a live process (or is being claimed by one)
  kLockTimedOut,  // a dead record needed folding, and the fold lock was not had in time
  kBackingOff,    // another thread's claim just failed: this update waits out its back-off
};

// Claims a record for this process: a free one first, else one whose owner
// the kernel proves dead (folding its values first). Every record whose
// semaphore cannot be had is held by a live process, so when the scan ends
// without a record, the table is full. The fold lock is one for the whole
// segment: when a wait for it times out (a stopped holder), the scan ends
// there, so one claim waits at most lock_timeout in all.
RecordClaim claim_record(std::uint16_t index, ProcessSegment& seg, shm::GaugeCell*& out) {
  std::lock_guard lock(seg.record_mutex);
  if (seg.record.load(std::memory_order_relaxed) >= 0) {
    out = process_gauge_cells[index].load(std::memory_order_relaxed);
    return RecordClaim::kClaimed;
  }
  // Threads that queued here behind a claim that failed do not scan again.
  if (seg.record_retry_countdown.load(std::memory_order_relaxed) > 0) return RecordClaim::kBackingOff;
  const auto& caps = seg.mapped->capacities();
  const int set = seg.mapped->semaphore_set();
  for (int pass = 0; pass < 2; ++pass) {
    for (std::uint32_t i = 0; i < caps.process_records; ++i) {
      shm::RecordHeader& h = record_header(seg, i);
      bool looks_free = h.owner_pid.load(std::memory_order_relaxed) == 0;
      if (looks_free != (pass == 0)) continue;
      const std::uint32_t semaphore = shm::Geometry::record_semaphore(caps.thread_slots, i);
      shm::park_point("claim_record.before_lock");
      if (!shm::try_claim(set, semaphore)) continue;
      // Holding the claim, read the owner again: between the look above and the
      // lock, another process may have claimed the record and died.
      // A record a dead process left: its values in the modes that keep them
      // are folded first, then the record is reset, both under fold_lock.
      std::optional<FoldLock> fold;
      if (h.owner_pid.load(std::memory_order_acquire) != 0) {
        shm::park_point("claim_record.fold_wait");
        fold.emplace(seg);
        if (!fold->held()) {
          shm::release_claim(set, semaphore);
          return RecordClaim::kLockTimedOut;  // every other dead record needs the same lock
        }
        // A dead folder's unfinished reset may just have freed it: then there
        // is nothing to fold.
        if (h.owner_pid.load(std::memory_order_acquire) != 0) fold_record(seg, i);
      }
      reset_record(seg, i);
      shm::GaugeCell* cells = record_cells(seg, i);
      h.owner_pid.store(static_cast<std::uint32_t>(::getpid()), std::memory_order_release);
      seg.record.store(static_cast<std::int32_t>(i), std::memory_order_release);
      process_gauge_cells[index].store(cells, std::memory_order_release);
      out = cells;
      return RecordClaim::kClaimed;
    }
  }
  return RecordClaim::kAllLive;
}

}  // namespace

std::uint64_t* overflow_cells(ProcessSegment& seg) noexcept {
  return reinterpret_cast<std::uint64_t*>(seg.base() + seg.geometry().overflow_cells_offset);
}

void overflow_check(std::uint16_t index) noexcept {
  tls_overflow[index].countdown = kOverflowCheckEvery;
  ProcessSegment* seg = segment_at(index);
  if (seg == nullptr || tls_overflow[index].cells == nullptr) return;
  if (clock_ns(CLOCK_MONOTONIC_COARSE) - tls_claims.last_claim_try_ns[index] < kOverflowRetryNs) return;
  claim_for_thread(index, *seg);
}

bool thread_has_slot(std::uint16_t index, ProcessSegment& seg) noexcept {
  if (tls_cells[index].pages != nullptr) return true;
  OverflowWriter& overflow = tls_overflow[index];
  if (overflow.cells == nullptr) return claim_for_thread(index, seg);  // the thread's first update
  if (--overflow.countdown == 0) overflow_check(index);
  return tls_cells[index].pages != nullptr;
}

shm::SlotHeader* slot_of_this_thread(std::uint16_t index, ProcessSegment& seg) noexcept {
  if (!thread_has_slot(index, seg)) return nullptr;
  return &slot_header(seg, static_cast<std::uint32_t>(tls_claims.slot[index] - 1));
}

namespace {

// The first of `count` consecutive pages of the pool (1..pool_pages), or 0
// when the pool has not that many left. Pages are never given back: the
// pool's size bounds what the slots can hold.
std::uint32_t take_pages(ProcessSegment& seg, std::uint64_t count) noexcept {
  std::atomic<std::uint32_t>& used = seg.header().pages_used;
  const std::uint64_t pool = seg.geometry().pool_pages;
  std::uint32_t n = used.load(std::memory_order_relaxed);
  do {
    if (n + count > pool) return 0;
  } while (!used.compare_exchange_weak(n, static_cast<std::uint32_t>(n + count), std::memory_order_relaxed));
  return n + 1;
}

// The first page `entry` (a page table entry or a slot's readyz_page, written
// only by the slot's owner: this thread) names, taking `count` pages for it
// when it names none; 0 when the pool cannot give them (counted).
template <typename Entry>
std::uint32_t page_for(std::uint16_t index, ProcessSegment& seg, Entry&& entry, std::uint64_t count) noexcept {
  std::uint32_t page = entry.load(std::memory_order_relaxed);
  if (page != 0) return page;
  page = take_pages(seg, count);
  if (page == 0) {
    count_event(index, shm::kEventPagelessUpdates);
    return 0;
  }
  entry.store(page, std::memory_order_release);  // after the CAS that took it
  return page;
}

}  // namespace

std::uint64_t* cell_of_this_thread(std::uint16_t index, ProcessSegment& seg, std::uint32_t cell) noexcept {
  if (!thread_has_slot(index, seg)) return nullptr;
  const ThreadCells& t = tls_cells[index];
  const std::uint32_t page =
      page_for(index, seg, std::atomic_ref<std::uint32_t>(t.pages[cell >> shm::kPageShift]), 1);
  if (page == 0) return nullptr;
  return t.pool + ((std::uint64_t{page} << shm::kPageShift) | (cell & (shm::kCellsPerPage - 1)));
}

shm::ReadyzArea* readyz_area_of(std::uint16_t index, ProcessSegment& seg, shm::SlotHeader& slot) noexcept {
  const shm::Geometry& g = seg.geometry();
  const std::uint32_t page = page_for(index, seg, slot.readyz_page, g.readyz_pages);
  if (page == 0) return nullptr;
  return reinterpret_cast<shm::ReadyzArea*>(seg.base() + g.page_offset(page));
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
  if (std::uint64_t* own = cell_of_this_thread(segment, *seg, cell)) {
    std::atomic_ref<std::uint64_t> c(*own);
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
  std::uint64_t* own = cell_of_this_thread(segment, *seg, cell);
  bool shared = own == nullptr;
  std::atomic_ref<std::uint64_t> c(shared ? overflow_cells(*seg)[cell] : *own);
  std::uint64_t old = c.load(std::memory_order_relaxed);
  for (;;) {
    std::uint64_t next = std::bit_cast<std::uint64_t>(std::bit_cast<double>(old) + v);
    if (!shared) return c.store(next, std::memory_order_relaxed);
    if (c.compare_exchange_weak(old, next, std::memory_order_relaxed)) return;
  }
}

void gauge_update_slow(shm::GaugeCell& cell, std::uint64_t bits, bool add, bool integer,
                       bool stamped) noexcept {
  if (!stamped) {
    // An integer cell's first write by this process: from kGaugeUnset to the
    // value, then stamp 1 marks it set (readers ignore the value until then).
    // Threads racing here add (or store) after the CAS that lost. (Only if
    // the cell held exactly the int64 kGaugeUnset spells, in the nanoseconds
    // before the stamp, would a second CAS win and replace instead of add.)
    std::uint64_t unset = shm::kGaugeUnset;
    const bool first = cell.value.compare_exchange_strong(unset, bits, std::memory_order_relaxed);
    if (first) shm::park_point("gauge.first_write");
    if (!first) {
      if (add)  // another thread of this process wrote it first
        cell.value.fetch_add(bits, std::memory_order_relaxed);
      else
        cell.value.store(bits, std::memory_order_relaxed);
    }
    cell.stamp.store(1, std::memory_order_release);
    return;
  }
  // The stamp is the cell's seqlock; the time it was set ends the write.
  const std::uint64_t s = shm::seqlock_write_begin(cell.stamp);
  const std::uint64_t old = cell.value.load(std::memory_order_relaxed);
  std::uint64_t next = bits;
  if (add && integer) {
    next = (s == 0 ? 0 : old) + bits;  // stamp 0: never written, the value is kGaugeUnset
  } else if (add) {
    double base = old != shm::kGaugeUnset ? std::bit_cast<double>(old) : 0.0;
    next = std::bit_cast<std::uint64_t>(base + std::bit_cast<double>(bits));
  }
  cell.value.store(next, std::memory_order_relaxed);
  shm::seqlock_write_end(cell.stamp, std::max(clock_ns(CLOCK_MONOTONIC) << 1, s + 2));
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
  RecordClaim claim = RecordClaim::kAllLive;
  try {
    claim = claim_record(segment, *seg, cells);
  } catch (...) {
    claim = RecordClaim::kAllLive;  // a semop failure: back off as when full
  }
  if (claim != RecordClaim::kClaimed) {
    if (claim == RecordClaim::kLockTimedOut) count_event(segment, shm::kEventLockTimeouts);
    if (claim != RecordClaim::kBackingOff)
      seg->record_retry_countdown.store(kRecordRetryEvery, std::memory_order_relaxed);
    count_event(segment, shm::kEventRecordUnavailable);
    return nullptr;
  }
  return cells;
}

}  // namespace shmetrics::detail

namespace shmetrics {

namespace {

// The segment path the options give, after checking the options; throws
// std::invalid_argument naming what is wrong.
std::string checked_segment_path(const SegmentOptions& options) {
  if (!options.name.empty() && options.name.front() == '/' && !options.directory.empty())
    throw std::invalid_argument("segment name \"" + options.name + "\" is a path and directory \"" +
                                options.directory + "\" is set too: give one of them");
  std::string path = shm::segment_path(
      options.directory, options.name.empty() ? shm::segment_name(options.instance, options.role) : options.name);
  if (options.mode & 022)
    throw std::invalid_argument("mode 0" + std::to_string((options.mode >> 6) & 7) +
                                std::to_string((options.mode >> 3) & 7) + std::to_string(options.mode & 7) +
                                " is invalid: segments must not be writable by group or others "
                                "(0600, or 0640 to let a group read)");
  return path;
}

}  // namespace

Segment Segment::open(const SegmentOptions& options) {
  std::string name = checked_segment_path(options);
  if (options.lock_timeout.count() <= 0)
    throw std::invalid_argument("lock_timeout must be positive, got " +
                                std::to_string(options.lock_timeout.count()) + " ms");
  detail::install_process_hooks();
  std::lock_guard lock(detail::g_table_mutex);
  std::uint16_t size = detail::g_table_size.load(std::memory_order_relaxed);
  for (std::uint16_t i = 0; i < size; ++i)
    if (detail::g_table[i]->mapped->path() == name) {
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
  shm::recreate_segment(checked_segment_path(options), options.capacities, options.mode);
}

const std::string& Segment::path() const { return detail::g_table[index_]->mapped->path(); }
int Segment::fd() const { return detail::g_table[index_]->mapped->fd(); }

}  // namespace shmetrics
