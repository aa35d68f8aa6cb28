// Reading a segment the exporter does not trust, and rendering it in the
// Prometheus text format 0.0.4 or in OpenMetrics 1.0.0.
#pragma once

#include "negotiation.h"

#include <shmetrics/shm/layout.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <unordered_set>
#include <vector>

namespace shmetrics::exporter {

// Whether process record `record`, whose header names `pid`, belongs to a live
// process. The exporter asks the kernel (the record's semaphore); the fuzz target makes
// it up. A "dead" answer is taken as final for that claim of the record: the
// reader does not ask again until the record names another pid or generation.
using RecordLiveness = std::function<bool(std::uint32_t record, std::uint32_t pid)>;

// The exporter's default bound on one role's parsed entries and on one
// exposition (--max-scrape-bytes).
inline constexpr std::size_t kDefaultMaxScrapeBytes = std::size_t{64} << 20;

// Room render() leaves in its buffer past its limit, for the lines a caller
// appends after it (the exporter's own metrics) without a reallocation.
inline constexpr std::size_t kRoomAfterRender = 16 * 1024;

// Reads one segment image — a live mapping or any heap buffer — and renders
// it. Treats every byte as untrusted: each field is read once (atomic loads in
// the order the layout's protocol gives), every offset, length, count, name
// and string is checked, and what cannot be trusted is left out and counted,
// never read out of bounds. What was registered is append-only, so the parsed
// families and series are kept between reads of the same image and only new
// entries are parsed; records found dead are remembered too (DeadVerdict).
//
// What a render spends is bounded by the reader's limit, not by what the
// image claims. The registrar appends every entry's strings to the pool, so
// no byte of the pool belongs to two entries: an entry whose strings reach
// past string_used or overlap another entry's is left out and counted, which
// keeps a few shared strings from being rendered thousands of times. Even
// honest entries can add up to more than the exporter should hold: the parsed
// entries and each exposition are limited to `max_bytes` (render()).
//
// Not thread-safe: one reader per image, used by one thread at a time.
class SegmentReader {
 public:
  // Fails (error() non-empty) when the image's header cannot be trusted.
  SegmentReader(const std::uint8_t* base, std::uint64_t size_bytes);

  const std::string& error() const { return error_; }
  // "" while the header still names this layout (magic and layout version),
  // else why not. Reads the mapping: call it under a SigbusGuard.
  std::string header_changed() const;
  const shm::Capacities& capacities() const { return capacities_; }

  // Appends the exposition of every trusted family to `out`, and the readyz
  // families computed for the time `now_ns` (CLOCK_MONOTONIC nanoseconds).
  // Returns "" or, when the image stopped being trustworthy (its magic or
  // version changed) or a limit was reached, a message; `out` is then
  // unspecified.
  //
  // Limits: `out` never grows past `max_bytes` (what it held before
  // counts), checked before each append; its capacity is grown by the reader
  // to at most max_bytes + kRoomAfterRender. The parsed entries kept between
  // renders are estimated in bytes as they are parsed; past `max_bytes` they
  // are freed and every later render returns the same message (the image
  // only grows: re-parsing it would only reach the limit again).
  // over_limit() tells these refusals from an untrustworthy image.
  //
  // OpenMetrics (`format`): counter families named without "_total" in their
  // metadata, a _created sample (the series' registration time; when set_openmetrics_created) after each
  // counter and histogram sample group, info families as type info with
  // samples named *_info, # UNIT where registered. A histogram whose _sum
  // OpenMetrics cannot carry (negative bounds, a negative or NaN sum) shows
  // its buckets alone. The caller appends "# EOF".
  std::string render(std::string& out, const RecordLiveness& live, std::uint64_t now_ns,
                     std::size_t max_bytes = kDefaultMaxScrapeBytes, Format format = Format::kText004);

  // Whether OpenMetrics renders write the _created samples (default false, as in client_golang).
  // Prometheus stores each as a series of its own (name_created), one more
  // per counter, histogram and summary series, unless it is 3.0 or later
  // with created-timestamp-zero-ingestion on.
  void set_openmetrics_created(bool on) { openmetrics_created_ = on; }

  // Whether the last render() failed on its byte limit.
  bool over_limit() const { return over_limit_; }
  // Estimated bytes held by the parsed families and series.
  std::size_t parsed_bytes() const { return parsed_bytes_; }

  // Events counted by writers (shm::Event), as read during the last render.
  std::uint64_t event(shm::Event e) const { return events_[e]; }
  // Entries left out because they failed validation.
  std::uint64_t families_dropped() const { return families_dropped_; }
  std::uint64_t series_dropped() const { return series_dropped_; }
  std::uint32_t family_count() const { return static_cast<std::uint32_t>(families_.size()); }
  std::uint32_t series_count() const { return static_cast<std::uint32_t>(series_.size()); }
  // How full the segment is and who holds it, as read during the last
  // render (counts clamped to the capacities).
  struct Usage {
    std::uint32_t families = 0, series = 0, cells = 0, gauge_series = 0, string_bytes = 0, pages = 0,
                  info_families = 0;
    std::uint32_t slots_claimed = 0;  // ever claimed (their cells hold counts)
    std::uint32_t records_live = 0, records_dead = 0;  // owned by a live / a dead process
  };
  const Usage& usage() const { return usage_; }
  // The process records held by a live process in the last render:
  // (record, pid as the record names it, in the writer's pid namespace).
  const std::vector<std::pair<std::uint32_t, std::uint32_t>>& live_records() const { return live_records_; }
  // Diagnostics: how many times renders of this reader asked `live`.
  std::uint64_t liveness_queries() const { return liveness_queries_; }

 private:
  struct Family {
    std::string name;
    std::string help_line;  // "# HELP ...\n# TYPE ...\n", escaped
    std::string om_help_line;  // the same in OpenMetrics, # UNIT included
    std::string om_info_name;  // info families: the OpenMetrics sample name (…_info)
    bool negative_bounds = false;  // histograms: OpenMetrics shows no _sum/_count
    shm::MetricType type;
    shm::ValueType value_type;
    shm::GaugeMode gauge_mode;
    std::vector<std::string> label_names;
    std::uint32_t info_index;
    // Histograms: "le=\"<bound>\"" of each finite bound, then +Inf's.
    std::vector<std::string> le_labels;
    // Counters, histograms, summaries: the slot cells of a series
    // (shm::series_cells); gauges: 1, their record cell.
    std::uint32_t cells = 1;
    bool trusted;
    std::vector<std::uint32_t> series;  // indexes into series_, in registration order
    std::unordered_set<std::string> label_sets;  // of its series, to refuse duplicates
  };
  struct Series {
    std::uint32_t cell;         // first slot cell (counters, histograms) or record cell (gauges)
    std::int32_t double_index;  // into double_sums_: double counters, histograms' _sum; else -1
    std::string labels;         // a="x",b="y" escaped, no braces
    std::string head;           // name{labels} and the space before the value (not histograms)
    std::uint32_t family;       // index into families_
    // Counters, histograms, summaries: the registration time (0: none), and
    // once build_created_lines ran, OpenMetrics' whole _created line, bytes
    // [created_at, created_at + created_length) of created_lines_.
    std::uint64_t created_ns = 0;
    std::size_t created_at = 0;
    std::uint32_t created_length = 0;
  };
  struct LiveRecord {
    std::uint32_t record;
    std::uint32_t pid;        // read once, when liveness was decided
    bool first_with_pid;      // false for a second record naming a pid already shown
  };
  // A record found dead, by the owner and generation its header named before
  // `live` was asked. Death is final for a claim: a process that lost the
  // record's lock owns it again only by claiming it, and a claimer takes the
  // lock, bumps the generation, then writes its pid. So that pair never shows
  // live again, even under a reused pid, and the record is not asked about
  // until its header names another.
  struct DeadVerdict {
    std::uint32_t pid = 0;  // 0: none (records naming pid 0 are never asked about)
    std::uint32_t generation = 0;
  };
  // Where gauge values come from in one render.
  struct GaugeSources {
    std::vector<LiveRecord> live;
    std::vector<LiveRecord> dead;       // dead owners, values not folded yet
    const std::uint8_t* folded_cells;   // the active dead buffer's GaugeCells
  };

  // A string of an entry: bytes [offset, offset + length) of the pool.
  struct PoolRange {
    std::uint32_t offset;
    std::uint32_t length;
  };

  bool parse_new_entries(std::size_t max_bytes);
  bool build_created_lines(std::size_t max_bytes);
  bool parse_family(std::uint32_t index, Family& out);
  bool parse_series(std::uint32_t index, std::uint32_t& family, Series& out);
  std::string_view pool_string(std::uint32_t offset, std::uint32_t length) const;
  bool claim_strings(std::initializer_list<PoolRange> ranges);
  void sum_counters();
  bool room_for(std::string& out, std::size_t more);
  bool render_readyz(std::string& out, std::uint64_t now_ns);
  bool render_gauge(const Family& f, std::string& out, const GaugeSources& sources);
  bool render_families(std::string& out, const GaugeSources& sources);
  GaugeSources gauge_sources(const RecordLiveness& live, std::uint64_t& dead_state);
  bool render_info(const Family& f, std::string& out, const std::vector<LiveRecord>& live);
  bool render_histogram(const Family& f, std::string& out);
  bool render_summary(const Family& f, std::string& out);
  void render_sum_and_count(const Family& f, const Series& s, std::uint64_t count, std::string& out) const;
  bool render_counter(const Family& f, std::string& out);

  const std::uint8_t* base_;
  std::uint64_t size_bytes_;
  std::string error_;
  shm::Capacities capacities_{};
  shm::Geometry geometry_{};
  std::uint32_t parsed_families_ = 0;  // entries of the image examined so far
  std::uint32_t parsed_series_ = 0;
  std::uint32_t string_used_ = 0;  // header.string_used, read once per parse
  // The pool bytes of the entries examined so far (claim_strings), as
  // disjoint [begin, end) ranges (begin -> end), adjacent ones merged.
  std::map<std::uint32_t, std::uint32_t> claimed_strings_;
  std::size_t parsed_bytes_ = 0;
  std::size_t max_bytes_ = kDefaultMaxScrapeBytes;  // of the render in progress
  Format format_ = Format::kText004;                 // of the render in progress
  bool openmetrics_created_ = false;
  bool created_ = false;  // this render writes _created samples (OpenMetrics, openmetrics_created_)
  bool over_limit_ = false;
  std::vector<Family> families_;
  std::vector<Series> series_;
  std::string created_lines_;    // every series' _created line, in series order
  std::size_t created_built_ = 0;  // series_ whose _created line is built
  std::uint64_t families_dropped_ = 0;
  std::uint64_t series_dropped_ = 0;
  std::uint64_t events_[shm::kEventCount] = {};
  Usage usage_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> live_records_;
  std::vector<std::uint64_t> int_sums_;  // per cell, this render
  // The slot cells holding doubles (double counters' cells, the sum cells of
  // histograms' and summaries' pairs), each with the accumulator it adds to.
  struct DoubleCell {
    std::uint32_t cell;
    std::uint32_t sum;  // into double_sums_
  };
  std::vector<DoubleCell> double_cells_;  // sorted by cell when double_cells_sorted_
  bool double_cells_sorted_ = true;
  std::vector<std::uint32_t> double_page_begin_;  // page p's double cells: [begin[p], begin[p + 1])
  std::uint32_t double_sums_count_ = 0;   // accumulators: one per series with doubles
  std::uint32_t counter_cells_ = 0;       // past the highest slot cell of a trusted series
  std::vector<double> double_sums_;       // per accumulator, this render
  std::vector<DeadVerdict> dead_verdicts_;  // per process record
  std::uint64_t liveness_queries_ = 0;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> pid_order_;  // gauge_sources' scratch
};

}  // namespace shmetrics::exporter
