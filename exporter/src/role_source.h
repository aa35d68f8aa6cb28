// One role's segment as the exporter serves it: opened read-only when it
// appears, re-opened when it is replaced (a new inode under the same name),
// and rendered together with the exporter's own metrics for the role.
#pragma once

#include "process_metrics.h"
#include "segment_reader.h"

#include <shmetrics/shm/segment_file.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace shmetrics::exporter {

// CLOCK_MONOTONIC in nanoseconds, the writers' readyz clock.
std::uint64_t monotonic_now_ns();

// Thread-safe: one render of a role runs at a time, and scrapes that arrive
// while it runs share its body; roles are independent.
class RoleSource {
 public:
  // `now_ns` is the clock of the readyz windows: CLOCK_MONOTONIC unless given.
  RoleSource(std::string role, std::string segment_path,
             std::function<std::uint64_t()> now_ns = monotonic_now_ns);

  // The whole exposition for the role. While the segment is missing or cannot
  // be trusted, or its parsed entries or exposition would take more than
  // max_scrape_bytes, it holds only the exporter's own metrics, with
  // shmetrics_segment_up 0; the reason is logged once per change.
  //
  // A scrape that arrives while another renders waits for that render and
  // takes the same body (begun before it arrived, so at most that one render
  // old); one that arrives later renders anew. So concurrent scrapes hold one
  // body between them, not one each, and a client's scrapes in sequence
  // never see counters go back.
  //
  // Bodies live while they are sent: a client reading slowly keeps its body
  // until its write deadline. While the bodies alive hold more than
  // max_scrape_bytes, a scrape takes the newest of them instead of rendering
  // anew, so slow readers cannot make a role hold more than that plus one
  // body, however many connections they open.
  //
  // Each exposition (format and encoding) is rendered and shared on its own:
  // a gzip body is compressed once per render, not once per scrape.
  // OpenMetrics ends with "# EOF".
  //
  // Counts one scrape of `exposition` (shmetrics_exporter_scrapes_total)
  // unless `count` is false: a caller serving many scrapes with one call
  // counts each with count_scrape() instead.
  std::shared_ptr<const std::string> scrape_shared(Exposition exposition = {}, bool count = true);
  void count_scrape(Exposition exposition) { scrapes_[exposition.index()].fetch_add(1, std::memory_order_relaxed); }
  // The same, copied (for --once and tests).
  std::string scrape(Exposition exposition = {}) { return *scrape_shared(exposition); }

  // Bounds the parsed entries of the segment and each whole exposition
  // (default kDefaultMaxScrapeBytes); at least kRoomAfterRender + 1024.
  void set_max_scrape_bytes(std::size_t bytes);

  // A segment is served only when its owner is the writers' user: `uid`
  // when given (--segment-owner), else the exporter's own. Anyone can make a
  // segment of their own, even in a directory whose name was squatted.
  void expect_owner(uid_t uid) { expected_owner_ = uid; }
  // Serves a segment of any owner, logging it (--accept-foreign-owner).
  void accept_foreign_owner(bool accept) { accept_foreign_owner_ = accept; }
  // Whether the role shows its live writers' CPU time and resident memory
  // (shmetrics_writer_process_*), read from /proc at most once a second
  // (default true; --no-writer-process-metrics).
  void set_writer_process_metrics(bool on) {
    std::lock_guard lock(mutex_);
    writer_process_metrics_ = on;
  }
  // Whether OpenMetrics scrapes carry the _created samples of counters,
  // histograms and summaries (default false; --openmetrics-created).
  void set_openmetrics_created(bool on) {
    std::lock_guard lock(mutex_);
    openmetrics_created_ = on;
  }
  // The version shmetrics_exporter_build_info shows (default "unknown").
  void set_version(std::string version) { version_ = std::move(version); }

  // Whether the segment is attached and trusted now (opening it if it
  // appeared); otherwise why not. For /healthz: renders nothing, and never
  // waits for a render: while one runs, it answers what the last render or
  // check found (not attached yet, before any).
  bool segment_ok(std::string& reason);

  const std::string& role() const { return role_; }
  const std::string& segment_path() const { return segment_path_; }

  // Diagnostics: how many times scrapes asked the kernel whether a process
  // record's owner is alive since the segment was (re)opened. A record found
  // dead is not asked about again until it is claimed anew.
  std::uint64_t liveness_queries();
  // Diagnostics: scrapes that took the newest body because the bodies still
  // being sent held more than max_scrape_bytes (see scrape_shared).
  std::uint64_t bodies_reused() {
    std::lock_guard lock(share_mutex_);
    return bodies_reused_;
  }
  // Diagnostics: renders of each exposition (Exposition::index()).
  std::uint64_t renders(Exposition exposition) {
    std::lock_guard lock(share_mutex_);
    return shares_[exposition.index()].renders_done;
  }
  // Diagnostics: bytes of the bodies alive now (being sent, or kept).
  std::size_t live_body_bytes() const { return live_body_bytes_->load(); }

  // Diagnostics: scrapes now waiting for the render in progress.
  std::uint32_t scrapes_waiting();

 private:
  bool ensure_open();
  void set_down(const std::string& reason, bool keep_mapping = false);
  std::shared_ptr<const std::string> render(Exposition exposition);
  void append_own_metrics(std::string& out, bool up, Format format) const;
  void note_health(bool ok, const std::string& reason);

  const std::string role_;
  std::string role_value_;  // role="<role>", escaped: the label of the role's own metrics
  std::string role_label_;  // {role="<role>"}
  const std::string segment_path_;
  const std::function<std::uint64_t()> now_ns_;
  std::size_t max_scrape_bytes_ = kDefaultMaxScrapeBytes;

  // Sharing a render of one exposition: whether one runs, and the body (or
  // exception) of the last one while scrapes that waited for it remain.
  struct Share {
    bool rendering = false;
    std::uint64_t renders_started = 0;
    std::uint64_t renders_done = 0;
    std::uint32_t waiting = 0;
    std::shared_ptr<const std::string> shared_body;
    std::exception_ptr shared_error;
    std::weak_ptr<const std::string> newest_body;
  };
  std::mutex share_mutex_;  // guards shares_ and bodies_reused_
  std::condition_variable rendered_;
  std::array<Share, Exposition::kCount> shares_;
  std::uint64_t bodies_reused_ = 0;
  // Scrapes asked for, by exposition: shmetrics_exporter_scrapes_total.
  std::array<std::atomic<std::uint64_t>, Exposition::kCount> scrapes_{};
  // shmetrics_exporter_scrape_duration_seconds: how long each render took
  // (reading, rendering, compressing), non-cumulative per bucket, under mutex_.
  static constexpr double kDurationBounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                               0.05,   0.1,   0.25,   0.5,   1,    2.5};
  std::array<std::uint64_t, std::size(kDurationBounds) + 1> duration_buckets_{};
  double duration_sum_ = 0;
  std::string version_ = "unknown";
  // Shared with each body's deleter, which may run after this object is gone.
  std::shared_ptr<std::atomic<std::size_t>> live_body_bytes_ = std::make_shared<std::atomic<std::size_t>>(0);

  std::mutex mutex_;  // the segment and reader, held while rendering
  std::unique_ptr<shm::MappedSegment> mapped_;
  std::unique_ptr<SegmentReader> reader_;
  std::string last_error_;  // what was logged last, to log each change once
  std::size_t last_scrape_bytes_[2] = {0, 0};  // per format: to reserve the next exposition at once
  bool accept_foreign_owner_ = false;
  std::optional<uid_t> expected_owner_;
  // The last verdict on the segment, for probes while a render runs.
  std::mutex health_mutex_;
  bool health_ok_ = false;
  std::string health_reason_ = "segment not checked yet";
  // Per-writer process metrics, under mutex_: the last read, and when.
  bool writer_process_metrics_ = true;
  bool openmetrics_created_ = false;  // under mutex_
  WriterProcesses writers_;
  std::optional<std::uint64_t> writers_read_ns_;
  // Thread slots held now (their claim's semaphore taken by a live thread),
  // read at each render; none when the set could not be read.
  std::optional<std::uint32_t> slots_held_;
  std::vector<pid_t> holders_;  // per process record, as kernel_liveness saw it
};

// The liveness the kernel proves: the record's ownership semaphore is held,
// last taken by the pid the record names — as this pid namespace sees it, or
// as the holder's own (innermost) namespace does, or by a process in a
// namespace this one cannot see. A record counts as dead only on the
// kernel's word (the reader keeps that verdict), so a set that cannot be
// read counts as live (and RoleSource takes the role down when its set is gone).
// When `holders` is given (sized process_records), the pid this namespace
// gives each live record's holder (0: not visible) is written there.
RecordLiveness kernel_liveness(const shm::MappedSegment& segment, std::vector<pid_t>* holders = nullptr);

}  // namespace shmetrics::exporter
