// Reading a segment the exporter does not trust, and rendering it in the
// Prometheus text format 0.0.4.
#pragma once

#include <shmetrics/shm/layout.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

namespace shmetrics::exporter {

// Whether process record `record`, whose header names `pid`, belongs to a live
// process. The exporter asks the kernel (the record's semaphore); the fuzz target makes
// it up. A "dead" answer is taken as final for that claim of the record: the
// reader does not ask again until the record names another pid or generation.
using RecordLiveness = std::function<bool(std::uint32_t record, std::uint32_t pid)>;

// Reads one segment image — a live mapping or any heap buffer — and renders
// it. Treats every byte as untrusted: each field is read once (atomic loads in
// the order the layout's protocol gives), every offset, length, count, name
// and string is checked, and what cannot be trusted is left out and counted,
// never read out of bounds. What was registered is append-only, so the parsed
// families and series are kept between reads of the same image and only new
// entries are parsed; records found dead are remembered too (DeadVerdict).
//
// Not thread-safe: one reader per image, used by one thread at a time.
class SegmentReader {
 public:
  // Fails (error() non-empty) when the image's header cannot be trusted.
  SegmentReader(const std::uint8_t* base, std::uint64_t size_bytes);

  const std::string& error() const { return error_; }
  const shm::Capacities& capacities() const { return capacities_; }

  // Appends the exposition of every trusted family to `out`, and the readyz
  // families computed for the time `now_ns` (CLOCK_MONOTONIC nanoseconds).
  // Returns "" or, when the image stopped being trustworthy (its magic or
  // version changed), a message; `out` is then unspecified.
  std::string render(std::string& out, const RecordLiveness& live, std::uint64_t now_ns);

  // Events counted by writers (shm::Event), as read during the last render.
  std::uint64_t event(shm::Event e) const { return events_[e]; }
  // Entries left out because they failed validation.
  std::uint64_t families_dropped() const { return families_dropped_; }
  std::uint64_t series_dropped() const { return series_dropped_; }
  std::uint32_t family_count() const { return static_cast<std::uint32_t>(families_.size()); }
  std::uint32_t series_count() const { return static_cast<std::uint32_t>(series_.size()); }
  // Diagnostics: how many times renders of this reader asked `live`.
  std::uint64_t liveness_queries() const { return liveness_queries_; }

 private:
  struct Family {
    std::string name;
    std::string help_line;  // "# HELP ...\n# TYPE ...\n", escaped
    shm::MetricType type;
    shm::ValueType value_type;
    shm::GaugeMode gauge_mode;
    std::vector<std::string> label_names;
    std::uint32_t info_index;
    bool trusted;
    std::vector<std::uint32_t> series;  // indexes into series_, in registration order
    std::unordered_set<std::string> label_sets;  // of its series, to refuse duplicates
  };
  struct Series {
    std::uint32_t cell;
    std::int32_t double_index;  // into double_sums_, for double counters; else -1
    std::string labels;         // a="x",b="y" escaped, no braces
    std::string head;           // name{labels} and the space before the value
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

  void parse_new_entries();
  bool parse_family(std::uint32_t index, Family& out);
  bool parse_series(std::uint32_t index, std::uint32_t& family, Series& out);
  std::string_view pool_string(std::uint32_t offset, std::uint32_t length) const;
  void sum_counters();
  void render_readyz(std::string& out, std::uint64_t now_ns);
  void render_gauge(const Family& f, std::string& out, const GaugeSources& sources);
  void render_families(std::string& out, const GaugeSources& sources);
  GaugeSources gauge_sources(const RecordLiveness& live, std::uint64_t& dead_state);
  void render_info(const Family& f, std::string& out, const std::vector<LiveRecord>& live);

  const std::uint8_t* base_;
  std::uint64_t size_bytes_;
  std::string error_;
  shm::Capacities capacities_{};
  shm::Geometry geometry_{};
  std::uint32_t parsed_families_ = 0;  // entries of the image examined so far
  std::uint32_t parsed_series_ = 0;
  std::vector<Family> families_;
  std::vector<Series> series_;
  std::uint64_t families_dropped_ = 0;
  std::uint64_t series_dropped_ = 0;
  std::uint64_t events_[shm::kEventCount] = {};
  std::vector<std::uint64_t> int_sums_;  // per cell, this render
  std::vector<std::uint32_t> double_cells_;
  std::uint32_t counter_cells_ = 0;      // 1 + the highest slot cell of a trusted counter series
  std::vector<double> double_sums_;      // per cell of double counters, this render
  std::vector<DeadVerdict> dead_verdicts_;  // per process record
  std::uint64_t liveness_queries_ = 0;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> pid_order_;  // gauge_sources' scratch
};

}  // namespace shmetrics::exporter
