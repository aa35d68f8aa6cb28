#include "role_source.h"

#include "gzip.h"
#include "log.h"
#include "process_metrics.h"
#include "sigbus_guard.h"
#include "text_format.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace shmetrics::exporter {

namespace {

struct OwnCounter {
  shm::Event event;
  const char* name;
  const char* help;
};

// The writers' event counters, exposed as the exporter's own metrics.
constexpr OwnCounter kOwnCounters[] = {
    {shm::kEventSeriesRefused, "shmetrics_series_refused_total",
     "Label sets and families refused because the segment was full or its lock was not had."},
    {shm::kEventRefusedUpdates, "shmetrics_refused_series_updates_total",
     "Updates dropped because their series had been refused."},
    {shm::kEventOverflowWriters, "shmetrics_overflow_writers_total",
     "Times a thread found no free slot and wrote through the shared overflow slot."},
    {shm::kEventPagelessUpdates, "shmetrics_pageless_updates_total",
     "Counter updates written through the shared overflow slot because the page pool (cell_pages) was empty."},
    {shm::kEventInvalidUpdates, "shmetrics_invalid_updates_total",
     "Updates dropped as invalid (negative or NaN increments, NaN gauge values, bad info values)."},
    {shm::kEventInfoRefused, "shmetrics_info_values_refused_total",
     "Info values refused as too long for the segment's info_value_bytes."},
    {shm::kEventRecordUnavailable, "shmetrics_record_unavailable_total",
     "Gauge and info updates dropped because every process record was held by a live process (or the fold lock by a stopped one)."},
    {shm::kEventLockTimeouts, "shmetrics_registration_lock_timeouts_total",
     "Registrations, and takeovers of dead process records, that gave up waiting for a segment lock held by a stopped process."},
};

}  // namespace

namespace {

// Whether process `pid` (as this pid namespace numbers it) is `inner` in its
// own innermost pid namespace: the last field of NSpid in /proc/PID/status.
// A writer in a container is numbered there; an exporter on the host sees it
// under another number.
bool innermost_pid_is(pid_t pid, std::uint32_t inner) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
  if (f == nullptr) return false;
  char line[256];
  bool match = false;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "NSpid:", 6) != 0) continue;
    const char* last = std::strrchr(line, '\t');
    match = last != nullptr && std::strtoul(last + 1, nullptr, 10) == inner;
    break;
  }
  std::fclose(f);
  return match;
}

}  // namespace

RecordLiveness kernel_liveness(const shm::MappedSegment& segment, std::vector<pid_t>* holders) {
  const int set = segment.semaphore_set();
  const std::uint32_t slots = segment.capacities().thread_slots;
  return [set, slots, holders](std::uint32_t record, std::uint32_t pid) {
    shm::ClaimHolder holder = shm::claim_holder(set, shm::Geometry::record_semaphore(slots, record));
    if (holder.error) return true;  // unknown: only the kernel's word makes a record dead
    if (!holder.held) return false;
    if (holders != nullptr && record < holders->size()) (*holders)[record] = holder.pid;
    // The holder must be the owner the record names: while a new owner takes
    // over a dead one's record, the old values are not shown as live. A
    // holder in a pid namespace this one cannot see shows as pid 0 and is
    // trusted; one in a namespace below this one (a writer in a container,
    // the exporter on the host) is compared by its innermost pid.
    if (holder.pid == 0 || static_cast<std::uint32_t>(holder.pid) == pid) return true;
    return innermost_pid_is(holder.pid, pid);
  };
}

std::uint64_t monotonic_now_ns() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

RoleSource::RoleSource(std::string role, std::string segment_path,
                       std::function<std::uint64_t()> now_ns)
    : role_(std::move(role)), segment_path_(std::move(segment_path)), now_ns_(std::move(now_ns)) {
  append_escaped_label_value(role_value_.append("role=\""), role_);
  role_value_ += '"';
  role_label_ = "{" + role_value_ + "}";
}

void RoleSource::set_max_scrape_bytes(std::size_t bytes) {
  std::lock_guard lock(mutex_);
  max_scrape_bytes_ = std::max(bytes, kRoomAfterRender + 1024);
}

// `keep_mapping`: the segment itself is fine (a limit was reached): it is not
// re-opened, and a reader that freed its entries for good is kept, so later
// scrapes are refused at once until the segment is replaced.
void RoleSource::set_down(const std::string& reason, bool keep_mapping) {
  if (!keep_mapping) {
    mapped_.reset();
    reader_.reset();
  }
  writers_ = {};
  writers_read_ns_.reset();
  if (reason == last_error_) return;
  last_error_ = reason;
  log_event("warn", "segment_down", {{"role", role_}, {"segment", segment_path_}, {"reason", reason}});
}

bool RoleSource::ensure_open() {
  if (const ino_t now = mapped_ ? shm::current_inode(segment_path_) : 0; mapped_ && now != mapped_->inode()) {
    // Gone (nothing at the path now; segment_down follows), or another file
    // (or the path cannot be looked at: segment_down says why).
    const bool gone = now == 0 && errno == ENOENT;
    log_event("info", gone ? "segment_removed" : "segment_replaced", {{"role", role_}, {"segment", segment_path_}});
    mapped_.reset();
    reader_.reset();
    writers_ = {};
    writers_read_ns_.reset();
  }
  if (mapped_) {
    // Liveness needs the semaphore set: one removed under the segment
    // (ipcrm, RemoveIPC) takes the role down rather than showing the dead
    // as live.
    std::string why = mapped_->check_semaphores();
    if (why.empty()) {
      // The file damaged in place (truncated, its header overwritten) is
      // seen here too, not only by a render: a probe between scrapes tells.
      struct stat st {};
      if (::fstat(mapped_->fd(), &st) != 0) {
        why = std::string("cannot stat it: ") + std::strerror(errno);
      } else if (static_cast<std::uint64_t>(st.st_size) < mapped_->size_bytes()) {
        why = "file is " + std::to_string(st.st_size) + " bytes but its capacities need " +
              std::to_string(mapped_->size_bytes()) + " (truncated since it was opened)";
      } else {
        SigbusGuard guard(mapped_->base(), mapped_->size_bytes());
        why = reader_->header_changed();
        if (guard.faulted()) why = "it was truncated while being read";
      }
    }
    if (why.empty()) return true;
    set_down("segment \"" + segment_path_ + "\" is unusable: " + why);
    return false;
  }
  try {
    mapped_ = shm::MappedSegment::open_read_only(segment_path_);
  } catch (const shm::SegmentError& e) {
    set_down(e.what());
    return false;
  }
  {
    // The header is read from the mapping: a file truncated meanwhile faults.
    SigbusGuard guard(mapped_->base(), mapped_->size_bytes());
    reader_ = std::make_unique<SegmentReader>(mapped_->base(), mapped_->size_bytes());
    if (guard.faulted()) {
      set_down("segment \"" + segment_path_ + "\" was truncated while being opened");
      return false;
    }
  }
  if (!reader_->error().empty()) {
    set_down("segment \"" + segment_path_ + "\" is invalid: " + reader_->error());
    return false;
  }
  const uid_t expected = expected_owner_.value_or(::geteuid());
  if (mapped_->owner_uid() != expected) {
    std::string who = "segment \"" + segment_path_ + "\" is owned by uid " +
                      std::to_string(mapped_->owner_uid()) + ", not by uid " + std::to_string(expected) +
                      (expected_owner_ ? " (--segment-owner)" : " (the exporter's)");
    if (!accept_foreign_owner_ || expected_owner_) {
      set_down(who + (expected_owner_ ? "" : "; give the writers' user with --segment-owner"));
      return false;
    }
    log_event("warn", "segment_foreign_owner", {{"role", role_}, {"reason", who}});
  }
  last_error_.clear();
  log_event("info", "segment_opened",
            {{"role", role_}, {"segment", segment_path_}, {"inode", std::to_string(mapped_->inode())},
             {"capacities", shm::describe(mapped_->capacities())}});
  return true;
}

std::shared_ptr<const std::string> RoleSource::scrape_shared(Exposition exposition, bool count) {
  if (count) count_scrape(exposition);
  std::unique_lock lock(share_mutex_);
  Share& share = shares_[exposition.index()];
  // Bodies still being sent (to slow readers, say) past the budget: the
  // newest of them serves this scrape too, so they stop multiplying.
  if (!share.rendering && live_body_bytes_->load() > max_scrape_bytes_) {
    if (std::shared_ptr<const std::string> newest = share.newest_body.lock()) {
      ++bodies_reused_;
      return newest;
    }
  }
  if (share.rendering) {
    const std::uint64_t joined = share.renders_started;
    ++share.waiting;
    rendered_.wait(lock, [&] { return share.renders_done >= joined; });
    std::shared_ptr<const std::string> body = share.shared_body;
    std::exception_ptr error = share.shared_error;
    if (--share.waiting == 0) {  // no body outlives the scrapes that share it
      share.shared_body.reset();
      share.shared_error = nullptr;
    }
    if (error) std::rethrow_exception(error);
    return body;
  }
  share.rendering = true;
  ++share.renders_started;
  lock.unlock();
  std::shared_ptr<const std::string> body;
  std::exception_ptr error;
  try {
    body = render(exposition);
  } catch (...) {
    error = std::current_exception();
  }
  lock.lock();
  share.rendering = false;
  ++share.renders_done;
  if (body) share.newest_body = body;
  if (share.waiting > 0) {
    share.shared_body = body;
    share.shared_error = error;
  }
  lock.unlock();
  rendered_.notify_all();
  if (error) std::rethrow_exception(error);
  return body;
}

std::shared_ptr<const std::string> RoleSource::render(Exposition exposition) {
  std::lock_guard lock(mutex_);
  const std::uint64_t started_ns = monotonic_now_ns();
  const Format format = exposition.format;
  std::size_t& last_bytes = last_scrape_bytes_[static_cast<std::size_t>(format)];
  std::string out;
  // The exposition barely changes between scrapes: no regrowth while building
  // it, with some room for counters gaining digits.
  out.reserve(std::min(last_bytes + last_bytes / 16, max_scrape_bytes_));
  bool up = ensure_open();
  note_health(up, up ? "" : last_error_);  // for probes while this render runs
  if (up) {
    std::string err;
    bool over_limit = false;
    {
      SigbusGuard guard(mapped_->base(), mapped_->size_bytes());
      // Room is left for the exporter's own metrics, appended below.
      // The writers' /proc is read at most once a second: this render
      // notes who holds each live record when it is due.
      const bool read_writers = writer_process_metrics_ && (!writers_read_ns_ || started_ns - *writers_read_ns_ >= 1'000'000'000u);
      if (read_writers) holders_.assign(reader_->capacities().process_records, 0);
      reader_->set_openmetrics_created(openmetrics_created_);
      err = reader_->render(out, kernel_liveness(*mapped_, read_writers ? &holders_ : nullptr), now_ns_(),
                            max_scrape_bytes_ - kRoomAfterRender, format);
      if (read_writers && err.empty()) {
        std::vector<LiveWriter> live;
        for (const auto& [record, pid] : reader_->live_records()) live.push_back({record, pid, holders_[record]});
        const int set = mapped_->semaphore_set();
        const std::uint32_t slots = mapped_->capacities().thread_slots;
        writers_ = read_writer_processes(std::move(live), [set, slots](const LiveWriter& w) {
          const shm::ClaimHolder h = shm::claim_holder(set, shm::Geometry::record_semaphore(slots, w.record));
          return !h.error && h.held && h.pid == w.here;
        });
        writers_read_ns_ = started_ns;
      }
      // Slot i is semaphore i (Geometry::slot_semaphore); the set was checked by ensure_open.
      slots_held_ = shm::claims_held(mapped_->semaphore_set(), reader_->capacities().thread_slots);
      over_limit = reader_->over_limit();
      if (guard.faulted()) {
        err = "segment \"" + segment_path_ + "\" was truncated while being read";
        over_limit = false;
      }
    }
    if (!err.empty()) {
      out = {};
      if (over_limit)
        err = "segment \"" + segment_path_ + "\" is too large to serve with --max-scrape-bytes " +
              std::to_string(max_scrape_bytes_) + ": " + err + " (the limit less " +
              std::to_string(kRoomAfterRender) +
              " bytes kept for the exporter's own metrics); raise it if the segment is legitimate";
      set_down(err, over_limit);
      up = false;
    } else if (!last_error_.empty()) {  // back within the limits
      last_error_.clear();
      log_event("info", "segment_served", {{"role", role_}, {"segment", segment_path_}});
    }
  }
  note_health(up, up ? "" : last_error_);
  // This render's duration so far goes into the histogram it shows.
  const double seconds = static_cast<double>(monotonic_now_ns() - started_ns) / 1e9;
  std::size_t bucket = 0;
  while (bucket < std::size(kDurationBounds) && seconds > kDurationBounds[bucket]) ++bucket;
  ++duration_buckets_[bucket];
  duration_sum_ += seconds;
  // The process's metrics, then the role's own (whose shmetrics_* lines end
  // every exposition).
  append_own_process_metrics(out, format);
  append_own_metrics(out, up, format);
  if (format == Format::kOpenMetrics) out += "# EOF\n";
  last_bytes = out.size();
  if (exposition.encoding == Encoding::kGzip) {
    std::string error;
    std::string compressed = gzip(out, max_scrape_bytes_, error);
    if (!error.empty()) throw std::runtime_error("role " + role_ + ": " + error);
    out = std::move(compressed);
  }
  // Counted while alive: its deleter gives its bytes back.
  const std::size_t bytes = out.capacity();
  live_body_bytes_->fetch_add(bytes);
  return std::shared_ptr<const std::string>(new std::string(std::move(out)),
                                            [live = live_body_bytes_, bytes](const std::string* body) {
                                              live->fetch_sub(bytes);
                                              delete body;
                                            });
}

bool RoleSource::segment_ok(std::string& reason) {
  // A probe never waits for a render (which may take long on a large
  // segment): while one runs, the verdict it or the last check left stands.
  std::unique_lock lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock()) {
    std::lock_guard health(health_mutex_);
    reason = health_reason_;
    return health_ok_;
  }
  // ensure_open reads the mapping under a SIGBUS guard of its own.
  const bool ok = ensure_open() && reader_->error().empty();
  if (!ok) reason = !last_error_.empty() ? last_error_ : reader_ ? reader_->error() : "segment not open";
  note_health(ok, ok ? "" : reason);
  return ok;
}

void RoleSource::note_health(bool ok, const std::string& reason) {
  std::lock_guard health(health_mutex_);
  health_ok_ = ok;
  health_reason_ = reason;
}

std::uint64_t RoleSource::liveness_queries() {
  std::lock_guard lock(mutex_);
  return reader_ ? reader_->liveness_queries() : 0;
}

std::uint32_t RoleSource::scrapes_waiting() {
  std::lock_guard lock(share_mutex_);
  std::uint32_t waiting = 0;
  for (const Share& share : shares_) waiting += share.waiting;
  return waiting;
}

void RoleSource::append_own_metrics(std::string& out, bool up, Format format) const {
  const std::string& role_label = role_label_;
  const std::string& role_value = role_value_;
  append_family_head(out, format, "shmetrics_segment_up", "gauge",
                     "Whether this role's segment was read and trusted (1) or not (0).");
  out += "shmetrics_segment_up";
  out += role_label;
  out += up ? " 1\n" : " 0\n";
  // The exporter's build, as an info metric (a gauge of 1 in 0.0.4).
  out += format == Format::kOpenMetrics
             ? "# HELP shmetrics_exporter_build The exporter's version and the segment layout it reads.\n"
               "# TYPE shmetrics_exporter_build info\n"
             : "# HELP shmetrics_exporter_build_info The exporter's version and the segment layout it reads.\n"
               "# TYPE shmetrics_exporter_build_info gauge\n";
  out += "shmetrics_exporter_build_info{version=\"";
  append_escaped_label_value(out, version_);
  out += "\",layout=\"" + std::to_string(shm::kLayoutVersion) + "\"} 1\n";
  // How long renders took.
  append_family_head(out, format, "shmetrics_exporter_scrape_duration_seconds", "histogram",
                     "Time to read, render and compress one exposition of this role.");
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b < duration_buckets_.size(); ++b) {
    cumulative += duration_buckets_[b];
    out += "shmetrics_exporter_scrape_duration_seconds_bucket{" + role_value + ",le=\"";
    if (b < std::size(kDurationBounds)) append_go_double(out, kDurationBounds[b]);
    else out += "+Inf";
    out += "\"} ";
    append_uint(out, cumulative);
    out += '\n';
  }
  out += "shmetrics_exporter_scrape_duration_seconds_sum" + role_label + " ";
  append_double(out, duration_sum_);
  out += "\nshmetrics_exporter_scrape_duration_seconds_count" + role_label + " ";
  append_uint(out, cumulative);
  out += '\n';
  // Scrapes by what they negotiated, this one included.
  append_family_head(out, format, "shmetrics_exporter_scrapes_total", "counter",
                     "Scrapes of this role by exposition format and encoding.");
  for (Format f : {Format::kText004, Format::kOpenMetrics}) {
    for (Encoding e : {Encoding::kIdentity, Encoding::kGzip}) {
      out += "shmetrics_exporter_scrapes_total{" + role_value;
      out += f == Format::kOpenMetrics ? ",format=\"openmetrics\"" : ",format=\"text\"";
      out += e == Encoding::kGzip ? ",encoding=\"gzip\"} " : ",encoding=\"identity\"} ";
      append_uint(out, scrapes_[Exposition{f, e}.index()].load(std::memory_order_relaxed));
      out += '\n';
    }
  }
  if (!up) return;
  for (const OwnCounter& c : kOwnCounters) {
    append_family_head(out, format, c.name, "counter", c.help);
    out += c.name;
    out += role_label;
    out += ' ';
    append_uint(out, reader_->event(c.event));
    out += '\n';
  }
  append_family_head(out, format, "shmetrics_untrusted_entries_dropped_total", "counter",
                     "Families and series the exporter left out because they failed validation.");
  const std::string head = "shmetrics_untrusted_entries_dropped_total{" + role_value;
  out += head + ",kind=\"family\"} ";
  append_uint(out, reader_->families_dropped());
  out += '\n' + head + ",kind=\"series\"} ";
  append_uint(out, reader_->series_dropped());
  out += '\n';

  // How full the segment is, per pool, in the pool's unit.
  const SegmentReader::Usage& u = reader_->usage();
  const shm::Capacities& c = reader_->capacities();
  const std::uint64_t pages = mapped_->geometry().pool_pages;
  const struct {
    const char* pool;
    std::uint64_t used, capacity;
  } pools[] = {{"families", u.families, c.families},
               {"series", u.series, c.series},
               {"cells", u.cells, shm::slot_cells(c)},
               {"gauge_series", u.gauge_series, c.gauge_series},
               {"string_bytes", u.string_bytes, c.string_bytes},
               {"pages", u.pages, pages},
               {"info_families", u.info_families, c.info_families}};
  for (bool capacity : {false, true}) {
    const char* name = capacity ? "shmetrics_segment_capacity" : "shmetrics_segment_used";
    append_family_head(out, format, name, "gauge",
                       capacity ? "What each pool of the segment can hold (Capacities), in the pool's unit."
                                : "What each pool of the segment holds, in the pool's unit (string_bytes: bytes).");
    for (const auto& p : pools) {
      out += std::string(name) + "{" + role_value + ",pool=\"" + p.pool + "\"} ";
      append_uint(out, capacity ? p.capacity : p.used);
      out += '\n';
    }
  }
  append_family_head(out, format, "shmetrics_thread_slots", "gauge",
                     "Thread slots of the segment: ever claimed by a writer thread, or not.");
  out += "shmetrics_thread_slots{" + role_value + ",state=\"claimed\"} ";
  append_uint(out, u.slots_claimed);
  out += "\nshmetrics_thread_slots{" + role_value + ",state=\"unclaimed\"} ";
  append_uint(out, c.thread_slots - std::min(u.slots_claimed, c.thread_slots));
  out += '\n';
  if (slots_held_) {
    append_family_head(out, format, "shmetrics_thread_slots_held", "gauge",
                       "Thread slots held now by live threads that wrote a counter, histogram or summary (one per "
                       "thread, until it exits).");
    out += "shmetrics_thread_slots_held";
    out += role_label;
    out += ' ';
    append_uint(out, *slots_held_);
    out += '\n';
  }
  append_family_head(out, format, "shmetrics_process_records", "gauge",
                     "Process records of the segment: held by a live process, left by a dead one (values not folded "
                     "yet), or free.");
  const std::uint32_t held = std::min(u.records_live + u.records_dead, c.process_records);
  out += "shmetrics_process_records{" + role_value + ",state=\"live\"} ";
  append_uint(out, u.records_live);
  out += "\nshmetrics_process_records{" + role_value + ",state=\"dead\"} ";
  append_uint(out, u.records_dead);
  out += "\nshmetrics_process_records{" + role_value + ",state=\"free\"} ";
  append_uint(out, c.process_records - held);
  out += '\n';
  if (writer_process_metrics_) append_writer_process_metrics(out, format, role_value, writers_);
}

}  // namespace shmetrics::exporter
