// The shared segment: its layout and its concurrency protocol, in one place.
//
// Anyone changing this file changes kLayoutVersion (and with it the SONAME of
// libshmetrics, whose inline hot path reads the cells laid out here: meson
// reads the SONAME from the kLayoutVersion line, so keep its form).
//
// ┌──────────────────────────── segment (one file in /dev/shm) ───────────────────┐
// │ Header          magic, version, capacities, region offsets, registration     │
// │                 lock, published counts, event counters                       │
// │ FamilyEntry[families]                                                          │
// │ SeriesEntry[series]                                                            │
// │ string pool[string_bytes]       names, help, units, encoded label names and   │
// │                                 values, histogram bucket bounds               │
// │ thread slots[thread_slots + 1]  SlotHeader + uint32 page table[ceil(cells/8)] │
// │                                 the last is the overflow slot                 │
// │ overflow cells[cells]           uint64, the overflow slot's (dense)           │
// │ overflow ReadyzArea + ring      the overflow slot's readyz samples            │
// │ page pool[1 + pool pages]       64-byte pages: 8 uint64 counter cells each, or│
// │                                 a slot's ReadyzArea + ring (readyz_pages      │
// │                                 consecutive pages); page 0 is never handed out│
// │ process records[process_records] RecordHeader + GaugeCell[gauge_series]       │
// │                                 + InfoArea[info_families]                     │
// │ DeadArea                  state + 2 × (marker + GaugeCell[gauge_series]): the │
// │                                 folded values of dead processes               │
// └───────────────────────────────────────────────────────────────────────────────┘
//
// Who writes what, with which ordering, and what a reader must check:
//
// field                        | writer                          | write order         | reader checks
// -----------------------------+---------------------------------+---------------------+-------------------------------
// Header (all but the below)   | creator, before the segment is  | plain; published by | magic, version, capacities,
//                              | linked to its name              | linkat()            | offsets == compute_geometry()
// registration_lock, fold_lock | registrars / claimers (robust,  | pthread             | exporter never touches them
//                              | timed, shm::lock_robust)        |                     |
// semaphore_set, _count,       | creator, before linkat()        | plain               | own IPC namespace; IPC_STAT:
//   ipc_namespace_*,           |                                 |                     | owner = the file's owner,
//   semaphore_token            |                                 |                     | nsems = slots+records+4; the
//                              |                                 |                     | token semaphores hold the token
// string_used                  | registrar under the lock        | release, before the | acquire, once, after the
//                              |                                 | count that uses it  | counts; min(string_bytes)
// gauge_cells_used,            | registrar under the lock, before| release             | a gauge series' cell must be
//   cells_used                 | the series count                |                     | below gauge_series; a counter's
//                              |                                 |                     | or histogram's cells below
//                              |                                 |                     | slot_cells()
// family_count / series_count  | registrar under the lock, after | release (publishes  | acquire; <= capacity; every
//                              | the entry and its strings       | the entry)          | entry field re-validated
// FamilyEntry / SeriesEntry    | registrar, before the count     | relaxed             | offsets+lengths inside the
//                              |   (its strings appended to the  |                     | used pool, no byte shared
//                              |   pool, each written once)      |                     | with another entry, names
//                              |                                 |                     | valid, UTF-8; bounds sorted,
//                              |                                 |                     | finite, <= kMaxBuckets
// events[]                     | anyone                          | relaxed fetch_add   | none (monotonic counters)
// readyz_used                  | any process calling readyz()    | relaxed store of 1  | renders readyz families if 1
// SlotHeader.owner_pid         | the claiming process, holding   | relaxed             | not read: liveness comes from
//                              | the slot's semaphore; 0 when it |                     | the semaphore. Claimers try
//                              | hands the slot back             |                     | slots handed back (0) first
// SlotHeader.claims            | the claiming process, holding   | release, saturating | not read. Claimers: 0 = cells
//                              | the slot's semaphore            | at UINT32_MAX       | all zero (tried last)
// pages_used                   | a slot's owner taking a page    | CAS, never past the | pages above pool_pages are
//                              |                                 | pool's size         | never read
// page table entry,            | the one thread owning the slot, | release, after the  | acquire; 0 or past the pool:
//   SlotHeader.readyz_page     | after taking the page(s)        | CAS on pages_used   | none (skipped)
// slot cells (in its pages),   | the one thread owning the slot: | relaxed load+store  | relaxed load; integer cells
//   ReadyzArea                 | overflow slot: anyone           | relaxed fetch_add / | summed mod 2^64; buckets
//                              |                                 | CAS                 | outside the window ignored;
//                              |                                 |                     | histogram cells: see
//                              |                                 |                     | series_cells()
// RecordHeader.owner_pid       | the claiming process (holding   | release after reset | liveness comes from the
//                              | the record's semaphore)         | of the cells        | semaphore, never the pid
// RecordHeader.generation      | the claiming process, holding   | release fetch_add,  | acquire, before liveness is
//                              | fold_lock, after it folded and  | after the reset     | asked: a dead verdict and a
//                              | reset the record                |                     | DeadBuffer marker hold for
//                              |                                 |                     | one generation only
// GaugeCell.value              | any thread of the owner process | relaxed store / CAS | double: kGaugeUnset = never
//                              |   (integer gauges: fetch_add)   |                     | set; integer: set once stamp
//                              |                                 |                     | != 0
// GaugeCell.stamp (integer     | the owner process, once, after  | release store of 1  | acquire; 0 = never set
//   gauges, untimestamped)     | the first value                 |                     |
// InfoArea                     | threads of the owner process    | shm/seqlock.h: seq  | seqlock_read: seq even and
//                              | (a new owner: seqlock_reset)    | odd while writing   | unchanged around the copy
// GaugeCell.stamp (timestamped | threads of the owner process    | shm/seqlock.h: odd  | seqlock_read: even and
//   modes)                     |                                 | while writing; then | unchanged around the value
//                              |                                 | ts<<1               |
// DeadArea.state               | the folder, holding fold_lock   | release, after the  | acquire; re-read after the
//                              |                                 | inactive buffer     | families that use it
// DeadBuffer (inactive one)    | the folder, holding fold_lock   | relaxed             | only the active one is read
//
// Folding. The modes sum/max/min/mostrecent keep dead processes' values. A
// record whose owner died still holds its values and the exporter counts them
// ("dead, unfolded"). When another process takes the record over it first
// folds those values into the dead buffers, under fold_lock: it writes the
// combination of the active buffer and the record into the inactive buffer,
// marks that buffer with (record, generation), publishes it by flipping
// DeadArea.state, then resets the record and bumps its generation. The
// marker makes the fold happen exactly once: a folder killed before the flip
// left nothing visible; one killed after it is finished by the next holder of
// fold_lock, which sees the marker still naming the record's generation.
//
// Ownership. A thread slot belongs to one thread of one process, a process
// record to one process. Each has a System V semaphore in the segment's
// semaphore set (Header::semaphore_set; slot i is semaphore i, record i is
// semaphore thread_slots + i): 1 while a live process owns it, 0 when free.
// A claim is one semop that waits for zero and adds 1 with SEM_UNDO, without
// blocking: it succeeds only when no live process owns the semaphore, and the
// kernel undoes the 1 when the owner dies (SIGKILL included), so a claimer
// that succeeds has proof of death. A thread hands its slot back with a -1.
// Why semaphores and not fcntl locks on the segment file: altering a
// semaphore needs write permission on the set, which only the writers' user
// has; a reader with read access can look at the values (GETVAL, GETPID —
// the exporter's liveness check, valid across pid namespaces) but can hold
// nothing, whereas a read lock placed by any reader of the file blocked every
// writer's fcntl claim. SEM_UNDO adjustments are per process (shared by its
// threads), not inherited across fork(), and need no descriptor kept open.
// Threads of one process arbitrate among themselves under a process-local
// mutex. Cells of a slot are never zeroed: a new owner keeps adding to them.
//
// Counter cells come in pages. A slot's counter cells live in 64-byte pages
// of 8 cells taken from the segment's page pool the first time the slot's
// owner writes a series of that page, recorded in the slot's page table
// (entry p: the pool page holding series 8p..8p+7, 0 while none). Pages stay
// with the slot for the segment's life (a new owner keeps them, with their
// counts). A thread that finds the pool empty writes that series through the
// overflow slot's dense cells, counted (kEventPagelessUpdates). A slot's
// readyz area and ring take readyz_pages consecutive pages on its first
// readyz sample (or the overflow slot's fixed area when the pool is empty),
// so slots that never record readyz hold no ring. A process
// killed between taking a page and recording it loses that page (64 bytes).
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <pthread.h>

namespace shmetrics::shm {

inline constexpr std::uint64_t kMagic = 0x31434952'54454d53ULL;  // "SMETRIC1" little-endian
inline constexpr std::uint32_t kLayoutVersion = 9;  // 9: a (count, sum) cell pair per histogram bucket
inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::uint32_t kCellsPerPage = 8;  // one 64-byte page of uint64 counter cells
inline constexpr std::uint32_t kPageShift = 3;
static_assert(kCellsPerPage == 1u << kPageShift && kCellsPerPage * 8 == kCacheLine);

static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "64-bit atomics must be lock-free to live in shared memory");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

// A gauge cell holding this bit pattern (a NaN no arithmetic produces) has never
// been set by its process. Gauges refuse NaN values, so it cannot collide.
inline constexpr std::uint64_t kGaugeUnset = 0x7ff8'dead'beef'0001ULL;

// A summary is a histogram without buckets (bucket_count 0): its count and
// sum, served as OpenMetrics' summary without quantiles.
enum class MetricType : std::uint8_t { kCounter = 1, kGauge = 2, kInfo = 3, kHistogram = 4, kSummary = 5 };
enum class ValueType : std::uint8_t { kInteger = 1, kDouble = 2 };

// How the per-process values of a gauge series combine into one sample.
// Numbering is part of the layout.
enum class GaugeMode : std::uint8_t {
  kNone = 0,  // not a gauge
  kLiveSum = 1,
  kLiveMax = 2,
  kLiveMin = 3,
  kLiveAll = 4,
  // Dead processes' values are kept (folded on takeover, see above).
  kSum = 5,
  kMax = 6,
  kMin = 7,
  kAll = 8,          // one sample per process holding a value, labelled pid
  kMostRecent = 9,   // the value set last by any process, dead ones included
  kLiveMostRecent = 10,  // the value set last by a live process
};

inline constexpr bool is_timestamped(GaugeMode m) {
  return m == GaugeMode::kMostRecent || m == GaugeMode::kLiveMostRecent;
}

// Limits every reader enforces on a segment, whatever its header claims.
inline constexpr std::uint32_t kMaxLabels = 32;
inline constexpr std::uint32_t kMaxNameBytes = 256;
inline constexpr std::uint32_t kMaxHelpBytes = 4096;
inline constexpr std::uint32_t kMaxLabelValueBytes = 4096;
inline constexpr std::uint32_t kMaxSlots = 1u << 16;
// The semaphores after the slots' and records' that hold the set's token.
inline constexpr std::uint32_t kTokenSemaphores = 4;
inline constexpr std::uint32_t kTokenBitsPerSemaphore = 15;  // semaphore values stop at 32767
inline constexpr std::uint64_t kTokenMask = (1ULL << (kTokenSemaphores * kTokenBitsPerSemaphore)) - 1;
// thread_slots + process_records: one semaphore each (and the token's), numbered
// by semop's unsigned short sem_num.
inline constexpr std::uint32_t kMaxSemaphores = (1u << 16) - kTokenSemaphores;
inline constexpr std::uint32_t kMaxRecords = 1u << 16;
inline constexpr std::uint32_t kMaxFamilies = 1u << 20;
inline constexpr std::uint32_t kMaxSeries = 1u << 24;
inline constexpr std::uint32_t kMaxStringBytes = 1u << 30;
inline constexpr std::uint32_t kMaxInfoFamilies = 1024;
inline constexpr std::uint32_t kMaxInfoValueBytes = 1u << 16;
inline constexpr std::uint32_t kMaxWindowSeconds = 86400;
inline constexpr std::uint64_t kMaxSegmentBytes = 1ULL << 36;
// Finite bucket bounds of one histogram family (+Inf is implicit).
inline constexpr std::uint32_t kMaxBuckets = 256;
inline constexpr std::uint32_t kMaxCells = 1u << 26;

// Fixed at creation; opening with other capacities fails.
struct Capacities {
  std::uint32_t thread_slots = 64;        // not counting the overflow slot
  std::uint32_t process_records = 64;
  std::uint32_t families = 256;
  std::uint32_t series = 2048;            // all series; a slot's page table covers them all
  std::uint32_t string_bytes = 256 * 1024;
  std::uint32_t info_families = 8;
  std::uint32_t info_value_bytes = 512;   // encoded label values of one info value
  // readyz success windows (readyz_success_ratio_1m and _5m); each thread
  // slot keeps a ring of one bucket per second of the longer window.
  std::uint32_t readyz_short_window_seconds = 60;
  std::uint32_t readyz_long_window_seconds = 300;
  // Gauge series (each holds a 16-byte cell in every process record and in
  // the dead buffers; counters hold none there).
  std::uint32_t gauge_series = 512;
  // Pages of 8 counter cells (64 bytes each) in the pool the thread slots
  // draw from: a slot takes a page the first time it writes one of the
  // page's 8 series, and a few for its readyz ring on its first readyz
  // sample. 0: enough for every slot to write every series and record readyz
  // (thread_slots × (ceil(slot_cells / 8) + readyz pages)). Smaller
  // pools suit threads that each write a share of the series; updates that
  // find the pool empty go through the overflow slot and are counted.
  std::uint32_t cell_pages = 0;
  // Slot cells (uint64) that series take from each thread slot's page table:
  // a counter series one, a histogram series its buckets + 2 (the finite
  // buckets, +Inf and _sum). 0: as many as `series`. Raise it for histograms.
  std::uint32_t cells = 0;

  friend bool operator==(const Capacities&, const Capacities&) = default;
};
static_assert(sizeof(Capacities) == 48);

// The slot cells the capacities give: `cells`, or `series` when it is 0.
inline constexpr std::uint32_t slot_cells(const Capacities& c) { return c.cells != 0 ? c.cells : c.series; }

// Counters of events that the exporter exposes as its own metrics.
enum Event : std::uint32_t {
  kEventSeriesRefused = 0,      // a label set or family did not fit
  kEventOverflowWriters = 1,    // a thread fell back to the overflow slot
  kEventInvalidUpdates = 2,     // negative increment, NaN, ... dropped
  kEventInfoRefused = 3,        // an info value too long for its area
  kEventRecordUnavailable = 4,  // a gauge/info update with no process record to hold it
  kEventLockTimeouts = 5,       // registration lock not had within its bound
  kEventRefusedUpdates = 6,     // updates through a handle whose series was refused
  kEventPagelessUpdates = 7,    // counter updates and readyz samples that found the page pool empty
  kEventCount = 8,
};

struct alignas(kCacheLine) Header {
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t header_bytes;
  Capacities capacities;
  std::uint64_t total_bytes;
  std::uint64_t families_offset;
  std::uint64_t series_offset;
  std::uint64_t strings_offset;
  std::uint64_t slots_offset;
  std::uint64_t slot_stride;
  std::uint64_t records_offset;
  std::uint64_t record_stride;
  std::int32_t semaphore_set;       // System V semaphore set id: ownership (see above)
  std::uint32_t semaphore_count;    // thread_slots + process_records
  // The IPC namespace the set lives in (device and inode of the creator's
  // /proc/self/ns/ipc): set ids are per namespace, so a process in another
  // one must not take the id for its own.
  std::uint64_t ipc_namespace_device;
  std::uint64_t ipc_namespace_inode;
  // A random token the creator also writes into the set's last
  // kTokenSemaphores semaphores, 15 bits in each: a set id names this
  // segment's set only when they hold it (set ids and namespace inodes are
  // both reused, e.g. across container restarts).
  std::uint64_t semaphore_token;

  alignas(kCacheLine) pthread_mutex_t registration_lock;  // robust, process-shared
  alignas(kCacheLine) pthread_mutex_t fold_lock;          // robust, process-shared; timed

  alignas(kCacheLine) std::atomic<std::uint32_t> family_count;
  std::atomic<std::uint32_t> series_count;
  std::atomic<std::uint32_t> string_used;
  std::atomic<std::uint32_t> info_count;  // info areas handed out to info families
  std::atomic<std::uint32_t> readyz_used; // 1 once any process asked for readyz
  std::atomic<std::uint32_t> gauge_cells_used;  // gauge cells handed out to gauge series
  std::atomic<std::uint32_t> pages_used;  // pool pages handed out to slots (page 0 excluded)
  std::atomic<std::uint32_t> cells_used;  // slot cells handed out to counter and histogram series

  alignas(kCacheLine) std::atomic<std::uint64_t> events[kEventCount];
};
static_assert(offsetof(Header, magic) == 0);
static_assert(offsetof(Header, capacities) == 16);
static_assert(offsetof(Header, total_bytes) == 64);
static_assert(offsetof(Header, families_offset) == 72);
static_assert(offsetof(Header, semaphore_set) == 128);
static_assert(offsetof(Header, ipc_namespace_inode) == 144);
static_assert(offsetof(Header, semaphore_token) == 152);
static_assert(offsetof(Header, registration_lock) == 192);
static_assert(sizeof(pthread_mutex_t) <= 64);
static_assert(offsetof(Header, fold_lock) == 256);
static_assert(offsetof(Header, family_count) == 320);
static_assert(offsetof(Header, pages_used) == 344);
static_assert(offsetof(Header, cells_used) == 348);
static_assert(offsetof(Header, events) == 384);
static_assert(sizeof(Header) == 448);

// Strings are (offset, length) pairs relative to the string pool. A list of
// strings (label names, label values) is encoded as repeated
// [uint32 little-endian length][bytes]. A histogram's bucket bounds are
// bucket_count doubles (8 bytes each, little-endian, unaligned) in the pool,
// strictly increasing and finite; +Inf is implicit.
struct FamilyEntry {
  std::uint32_t name_offset;
  std::uint32_t name_length;
  std::uint32_t help_offset;
  std::uint32_t help_length;
  std::uint32_t label_names_offset;
  std::uint32_t label_names_length;
  MetricType type;
  ValueType value_type;
  GaugeMode gauge_mode;
  std::uint8_t label_count;
  std::uint32_t info_index;  // info families: which InfoArea of each record
  std::uint32_t bounds_offset;  // histograms: their finite bucket bounds
  std::uint32_t bucket_count;   //   (0 for other types)
  std::uint32_t unit_offset;    // OpenMetrics unit; length 0: none
  std::uint32_t unit_length;
};
static_assert(sizeof(FamilyEntry) == 48);
static_assert(offsetof(FamilyEntry, type) == 24 && offsetof(FamilyEntry, info_index) == 28);

// The slot cells of one series: a counter's one; a histogram's 2 ×
// (bucket_count + 1): a pair per bucket, finite ones in order then +Inf,
// each pair the bucket's non-cumulative count and the sum of its
// observations (a double's bits). A histogram's first cell is even
// (series_alignment), so a pair never straddles two pages of a slot and an
// observation looks up one page. A scrape sums each cell over the slots and
// accumulates the counts, so _count (the +Inf cumulative bucket) and every
// _bucket come from the same reads: no cumulative bucket ever shows above
// another of a higher bound, nor above _count. _sum is the bucket sums added
// up. A summary's two: the one pair of a histogram without bounds.
// Why a sum per bucket: an observation adds to a sum that the next
// observation of the series would load again, and a store-to-load chain of a
// double costs ~3.5 ns a link on the CPUs measured (an integer's is nearly
// free); with a sum per bucket consecutive observations rarely share one.
inline constexpr std::uint32_t series_cells(MetricType type, std::uint32_t bucket_count) {
  return type == MetricType::kHistogram || type == MetricType::kSummary ? 2 * (bucket_count + 1) : 1;
}
// The first slot cell of a series is a multiple of this: 2 for histograms
// and summaries (their pairs), 1 otherwise.
inline constexpr std::uint32_t series_alignment(MetricType type) {
  return type == MetricType::kHistogram || type == MetricType::kSummary ? 2 : 1;
}
static_assert(kCellsPerPage % 2 == 0, "a histogram's cell pair must not straddle pages");

struct SeriesEntry {
  std::uint32_t family_index;
  // Counters, histograms and summaries: their first slot cell; gauges: their record cell.
  std::uint32_t cell_index;
  std::uint32_t label_values_offset;
  std::uint32_t label_values_length;
  // When the series was registered (CLOCK_REALTIME ns): OpenMetrics
  // _created of counters and histograms, whose cells start at 0 then.
  std::uint64_t created_ns;
};
static_assert(sizeof(SeriesEntry) == 24);

struct alignas(kCacheLine) SlotHeader {
  std::atomic<std::uint32_t> owner_pid;  // 0: free (never claimed or handed back)
  std::atomic<std::uint32_t> claims;     // how many times it was claimed; 0: cells all zero
  // First of the readyz_pages pool pages holding this slot's ReadyzArea and
  // ring, taken on the slot's first readyz sample; 0: none yet.
  std::atomic<std::uint32_t> readyz_page;
};
static_assert(sizeof(SlotHeader) == kCacheLine);

// readyz samples of one thread slot. A bucket packs one second and the
// outcomes recorded in it: bits 63..32 the second (CLOCK_MONOTONIC, mod 2^32),
// 31..16 ok, 15..0 total. Both counts saturate at 0xffff together, so no
// reader ever sees ok > total.
struct ReadyzArea {
  std::atomic<std::uint64_t> checks;       // every observe()
  std::atomic<std::uint64_t> failures;     // observe(false)
  std::atomic<std::uint64_t> last_sample;  // monotonic ns << 1 | ok, of the newest sample
  std::atomic<std::uint64_t> reserved;
  // followed by std::atomic<std::uint64_t> buckets[readyz_ring_buckets()]
};
static_assert(sizeof(ReadyzArea) == 32);

inline constexpr std::uint64_t pack_bucket(std::uint32_t second, std::uint32_t ok, std::uint32_t total) {
  return std::uint64_t{second} << 32 | std::uint64_t{ok} << 16 | total;
}
inline constexpr std::uint32_t bucket_second(std::uint64_t b) { return static_cast<std::uint32_t>(b >> 32); }
inline constexpr std::uint32_t bucket_ok(std::uint64_t b) { return (b >> 16) & 0xffff; }
inline constexpr std::uint32_t bucket_total(std::uint64_t b) { return b & 0xffff; }
inline constexpr std::uint32_t kBucketMax = 0xffff;

struct GaugeCell {
  // Double families: the double's bits, or kGaugeUnset. Integer families
  // (ValueType::kInteger): the int64 in two's complement, meaningful once
  // stamp != 0 (the first write moves it from kGaugeUnset).
  std::atomic<std::uint64_t> value;
  // Timestamped modes: the seqlock and the time the value was set (odd while
  // written, then ns << 1). Other modes: 0, or for integer families 1 once
  // the process has set the value.
  std::atomic<std::uint64_t> stamp;
};
static_assert(sizeof(GaugeCell) == 16);

// Whether a gauge cell's (value, stamp) holds a value: integer cells once the
// stamp is set (1, or a timestamp), double cells once the value is not
// kGaugeUnset.
inline constexpr bool gauge_cell_set(std::uint64_t value, std::uint64_t stamp, bool integer) {
  return integer ? stamp != 0 : value != kGaugeUnset;
}

// Two values of one gauge series combined as the sum/max/min modes (live or
// not) say; `have` for the other modes. Integers combine as int64 (sums wrap
// modulo 2^64), doubles as doubles. Writers fold with it, readers render.
inline constexpr std::uint64_t combine_gauge_values(GaugeMode mode, bool integer, std::uint64_t have,
                                                    std::uint64_t v) {
  const double x = std::bit_cast<double>(v), y = std::bit_cast<double>(have);
  const auto i = static_cast<std::int64_t>(v), j = static_cast<std::int64_t>(have);
  switch (mode) {
    case GaugeMode::kLiveSum:
    case GaugeMode::kSum:
      return integer ? have + v : std::bit_cast<std::uint64_t>(y + x);
    case GaugeMode::kLiveMax:
    case GaugeMode::kMax:
      return (integer ? j >= i : y >= x) ? have : v;
    case GaugeMode::kLiveMin:
    case GaugeMode::kMin:
      return (integer ? j <= i : y <= x) ? have : v;
    default:
      return have;
  }
}

struct alignas(kCacheLine) RecordHeader {
  std::atomic<std::uint32_t> owner_pid;  // written after the record was reset
  std::atomic<std::uint32_t> generation; // bumped on every claim
};
static_assert(sizeof(RecordHeader) == kCacheLine);

// One info value of one process: a seqlock around the encoded label values.
// length: 0 = no value; otherwise 1 + the number of encoded bytes in words.
struct InfoAreaHeader {
  std::atomic<std::uint64_t> seq;  // odd while a writer is inside
  std::atomic<std::uint64_t> length;
};
static_assert(sizeof(InfoAreaHeader) == 16);
// The seqlock words are what shm/seqlock.h reads: 8-byte aligned uint64s.
static_assert(offsetof(InfoAreaHeader, seq) % 8 == 0 && offsetof(GaugeCell, stamp) % 8 == 0);
static_assert(sizeof(InfoAreaHeader::seq) == 8 && sizeof(GaugeCell::stamp) == 8);

inline constexpr std::uint32_t kNoRecord = 0xffffffff;

// The dead processes' folded gauge values: two buffers, one active.
struct alignas(kCacheLine) DeadState {
  std::atomic<std::uint64_t> state;  // folds << 1 | active buffer
};
static_assert(sizeof(DeadState) == kCacheLine);

struct alignas(kCacheLine) DeadBufferHeader {
  std::atomic<std::uint32_t> folded_record;      // the record whose fold made this buffer
  std::atomic<std::uint32_t> folded_generation;  // ... at that record generation
  // followed by GaugeCell cells[series]: kGaugeUnset where nothing was folded
  // (set at creation; the record index kNoRecord marks "no fold yet")
};
static_assert(sizeof(DeadBufferHeader) == kCacheLine);

inline constexpr std::uint64_t round_up(std::uint64_t n, std::uint64_t to) {
  return (n + to - 1) / to * to;
}

// Where everything is, derived from the capacities alone. Creator and reader
// both compute it; a header that disagrees is rejected.
struct Geometry {
  std::uint64_t families_offset;
  std::uint64_t series_offset;
  std::uint64_t strings_offset;
  std::uint64_t slots_offset;
  std::uint64_t slot_stride;
  std::uint64_t pages_per_slot;      // page table entries: ceil(slot cells / 8)
  std::uint64_t readyz_ring_buckets;
  std::uint64_t readyz_pages;        // pool pages of one ReadyzArea and its ring
  std::uint64_t overflow_cells_offset;  // uint64 cells[slot cells] of the overflow slot
  std::uint64_t overflow_readyz_offset;  // the overflow slot's ReadyzArea and ring
  std::uint64_t pool_offset;           // page 0 of the pool (never handed out)
  std::uint64_t pool_pages;            // pages that can be handed out: 1..pool_pages
  std::uint64_t records_offset;
  std::uint64_t record_stride;
  std::uint64_t info_area_stride;
  std::uint64_t info_offset_in_record;
  std::uint64_t dead_offset;         // DeadState
  std::uint64_t dead_buffer_stride;  // DeadBufferHeader + GaugeCell[gauge_series]
  std::uint64_t total_bytes;

  std::uint64_t slot_offset(std::uint32_t i) const { return slots_offset + i * slot_stride; }
  std::uint64_t page_table_offset(std::uint32_t slot) const { return slot_offset(slot) + sizeof(SlotHeader); }
  std::uint64_t page_offset(std::uint64_t page) const { return pool_offset + page * kCacheLine; }
  std::uint64_t record_offset(std::uint32_t i) const { return records_offset + i * record_stride; }
  std::uint64_t dead_buffer_offset(std::uint32_t buffer) const {
    return dead_offset + sizeof(DeadState) + buffer * dead_buffer_stride;
  }
  std::uint64_t info_area_offset(std::uint32_t record, std::uint32_t info) const {
    return record_offset(record) + info_offset_in_record + info * info_area_stride;
  }
  // Ownership semaphores: slots first (overflow slot excluded), then records.
  static std::uint32_t slot_semaphore(std::uint32_t i) { return i; }
  static std::uint32_t record_semaphore(std::uint32_t thread_slots, std::uint32_t i) {
    return thread_slots + i;
  }
};

// Returns false when the capacities are out of the limits above.
inline bool compute_geometry(const Capacities& c, Geometry& g) {
  if (c.thread_slots == 0 || c.thread_slots > kMaxSlots || c.process_records == 0 ||
      c.process_records > kMaxRecords || c.families == 0 || c.families > kMaxFamilies ||
      c.series == 0 || c.series > kMaxSeries || c.gauge_series > kMaxSeries || c.cells > kMaxCells ||
      c.string_bytes == 0 ||
      c.string_bytes > kMaxStringBytes || c.info_families > kMaxInfoFamilies ||
      c.info_value_bytes > kMaxInfoValueBytes || c.readyz_short_window_seconds == 0 ||
      c.readyz_long_window_seconds < c.readyz_short_window_seconds ||
      c.readyz_long_window_seconds > kMaxWindowSeconds ||
      std::uint64_t{c.thread_slots} + c.process_records > kMaxSemaphores)
    return false;
  std::uint64_t at = sizeof(Header);
  g.families_offset = at;
  at = round_up(at + std::uint64_t{c.families} * sizeof(FamilyEntry), kCacheLine);
  g.series_offset = at;
  at = round_up(at + std::uint64_t{c.series} * sizeof(SeriesEntry), kCacheLine);
  g.strings_offset = at;
  at = round_up(at + c.string_bytes, kCacheLine);
  g.slots_offset = at;
  g.pages_per_slot = (std::uint64_t{slot_cells(c)} + kCellsPerPage - 1) / kCellsPerPage;
  // One bucket more than the window: the current second never overwrites the
  // oldest second still inside the window.
  g.readyz_ring_buckets = std::uint64_t{c.readyz_long_window_seconds} + 1;
  g.readyz_pages = round_up(sizeof(ReadyzArea) + g.readyz_ring_buckets * 8, kCacheLine) / kCacheLine;
  g.slot_stride = sizeof(SlotHeader) + round_up(g.pages_per_slot * 4, kCacheLine);
  at += g.slot_stride * (std::uint64_t{c.thread_slots} + 1);
  g.overflow_cells_offset = at;
  at += round_up(std::uint64_t{slot_cells(c)} * 8, kCacheLine);
  g.overflow_readyz_offset = at;
  at += g.readyz_pages * kCacheLine;
  g.pool_pages = c.cell_pages != 0
                     ? c.cell_pages
                     : std::uint64_t{c.thread_slots} * (g.pages_per_slot + g.readyz_pages);
  if (g.pool_pages >= 0xffffffffULL) return false;  // page numbers are uint32
  g.pool_offset = at;
  at += (g.pool_pages + 1) * kCacheLine;
  g.records_offset = at;
  g.info_area_stride = sizeof(InfoAreaHeader) + round_up(c.info_value_bytes, 8);
  g.info_offset_in_record =
      sizeof(RecordHeader) + std::uint64_t{c.gauge_series} * sizeof(GaugeCell);
  g.record_stride = round_up(
      g.info_offset_in_record + std::uint64_t{c.info_families} * g.info_area_stride,
      kCacheLine);
  at += g.record_stride * c.process_records;
  g.dead_offset = at;
  g.dead_buffer_stride = round_up(sizeof(DeadBufferHeader) + std::uint64_t{c.gauge_series} * sizeof(GaugeCell),
                                  kCacheLine);
  at += sizeof(DeadState) + 2 * g.dead_buffer_stride;
  g.total_bytes = at;
  return g.total_bytes <= kMaxSegmentBytes;
}

}  // namespace shmetrics::shm
