#include "segment_reader.h"

#include "text_format.h"

#include <shmetrics/shm/names.h>
#include <shmetrics/shm/segment_file.h>
#include <shmetrics/shm/seqlock.h>
#include <shmetrics/shm/string_list.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <set>
#include <unordered_set>

namespace shmetrics::exporter {

namespace {

template <typename T>
T load_relaxed(const std::uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const T*>(p), __ATOMIC_RELAXED);
}
template <typename T>
T load_acquire(const std::uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const T*>(p), __ATOMIC_ACQUIRE);
}

// name="value",... for already validated label names and values.
std::string render_labels(const std::vector<std::string>& names,
                          const std::vector<std::string>& values) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i) out += ',';
    out += names[i];
    out += "=\"";
    append_escaped_label_value(out, values[i]);
    out += '"';
  }
  return out;
}

bool valid_label_values(const std::vector<std::string>& values) {
  for (const auto& v : values)
    if (!shm::is_valid_utf8(v)) return false;
  return true;
}

void append_sample_head(std::string& out, const std::string& name, std::string_view labels) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
}

bool has_sum(shm::MetricType type) {
  return shm::series_alignment(type) == 2;  // a (count, sum) pair per bucket: histograms, summaries
}

const char* type_word(shm::MetricType type) {
  switch (type) {
    case shm::MetricType::kCounter: return "counter";
    case shm::MetricType::kHistogram: return "histogram";
    case shm::MetricType::kSummary: return "summary";
    default: return "gauge";  // info is a gauge in 0.0.4
  }
}

// Bounds of what one sample line appends past its name and labels: a value
// (at most 24 characters as append_uint, append_int or append_double write
// it) and the newline; the pid label of the per-process gauge modes.
constexpr std::size_t kValueBytes = 32;
constexpr std::size_t kPidLabelBytes = 24;  // ,pid="4294967295"
// The readyz families, whatever their values (about 1 KB).
constexpr std::size_t kReadyzBytes = 2048;
// Estimated bytes of bookkeeping per parsed entry, past its strings: a node
// of a hash set or of claimed_strings_.
constexpr std::size_t kNodeBytes = 64;

}  // namespace

SegmentReader::SegmentReader(const std::uint8_t* base, std::uint64_t size_bytes)
    : base_(base), size_bytes_(size_bytes) {
  // Only the immutable prefix of the header is copied; the counts after it
  // are read with atomic loads when rendering.
  alignas(shm::Header) unsigned char copy[sizeof(shm::Header)] = {};
  constexpr std::size_t kImmutable = offsetof(shm::Header, registration_lock);
  if (size_bytes < sizeof(shm::Header)) {
    error_ = "image is " + std::to_string(size_bytes) + " bytes, smaller than a header (" +
             std::to_string(sizeof(shm::Header)) + " bytes)";
    return;
  }
  std::memcpy(copy, base, kImmutable);
  const auto* header = reinterpret_cast<const shm::Header*>(copy);
  error_ = shm::check_header(*header, size_bytes, geometry_);
  if (error_.empty()) capacities_ = header->capacities;
}

// Only the pool's used bytes hold strings: a range past string_used is refused
// even where the pool has room.
std::string_view SegmentReader::pool_string(std::uint32_t offset, std::uint32_t length) const {
  if (offset > string_used_ || length > string_used_ - offset) return {};
  return {reinterpret_cast<const char*>(base_ + geometry_.strings_offset + offset), length};
}

// Claims the strings of one entry for it, all or none: false when two of
// them overlap or one overlaps a string of an entry examined before. The
// registrar writes each entry's strings once, so honest entries never share a
// byte; shared strings are how one writer would make the exporter render (or
// just copy and validate) the same bytes thousands of times. So each pool
// byte is examined for one entry at most, and parsing costs at most the pool
// once. Empty strings own no byte.
bool SegmentReader::claim_strings(std::initializer_list<PoolRange> ranges) {
  auto overlaps_claimed = [this](std::uint32_t begin, std::uint32_t end) {
    auto next = claimed_strings_.upper_bound(begin);  // first range starting after begin
    if (next != claimed_strings_.end() && next->first < end) return true;
    return next != claimed_strings_.begin() && std::prev(next)->second > begin;
  };
  for (auto a = ranges.begin(); a != ranges.end(); ++a) {
    if (a->length == 0) continue;
    const std::uint32_t end = a->offset + a->length;  // within the pool: checked by pool_string
    if (overlaps_claimed(a->offset, end)) return false;
    for (auto b = ranges.begin(); b != a; ++b)
      if (b->length != 0 && b->offset < end && a->offset < b->offset + b->length) return false;
  }
  for (const PoolRange& r : ranges) {
    if (r.length == 0) continue;
    std::uint32_t begin = r.offset, end = r.offset + r.length;
    // Merged with the ranges it touches: an honest segment's claims stay few.
    auto next = claimed_strings_.lower_bound(end);
    if (next != claimed_strings_.end() && next->first == end) {
      end = next->second;
      next = claimed_strings_.erase(next);
    }
    if (next != claimed_strings_.begin() && std::prev(next)->second == begin) {
      std::prev(next)->second = end;
    } else {
      claimed_strings_.emplace_hint(next, begin, end);
      parsed_bytes_ += kNodeBytes;
    }
  }
  return true;
}

bool SegmentReader::parse_family(std::uint32_t index, Family& f) {
  shm::FamilyEntry e;
  std::memcpy(&e, base_ + geometry_.families_offset + std::uint64_t{index} * sizeof e, sizeof e);
  f.trusted = false;
  // Copy each string once, then validate the copy.
  if (e.name_length == 0 || e.name_length > shm::kMaxNameBytes ||
      e.help_length > shm::kMaxHelpBytes || e.label_count > shm::kMaxLabels ||
      e.label_names_length > e.label_count * (4 + shm::kMaxNameBytes) ||
      e.bucket_count > shm::kMaxBuckets || e.unit_length > shm::kMaxNameBytes)
    return false;
  const std::uint32_t bounds_length = e.bucket_count * 8;
  std::string_view name = pool_string(e.name_offset, e.name_length);
  std::string_view help = pool_string(e.help_offset, e.help_length);
  std::string_view labels = pool_string(e.label_names_offset, e.label_names_length);
  std::string_view unit = pool_string(e.unit_offset, e.unit_length);
  std::string_view bound_bytes = pool_string(e.bounds_offset, bounds_length);
  if (name.size() != e.name_length || help.size() != e.help_length ||
      labels.size() != e.label_names_length || unit.size() != e.unit_length ||
      bound_bytes.size() != bounds_length)
    return false;
  // Claimed before anything is copied, valid or not: entries pointing at the
  // same bytes cost one copy of them, not one each.
  if (!claim_strings({{e.name_offset, e.name_length},
                      {e.help_offset, e.help_length},
                      {e.label_names_offset, e.label_names_length},
                      {e.unit_offset, e.unit_length},
                      {e.bounds_offset, bounds_length}}))
    return false;
  f.name.assign(name);
  std::string help_copy(help);
  if (!shm::decode_string_list(labels, e.label_count, shm::kMaxNameBytes, f.label_names)) return false;
  std::vector<double> bounds(e.bucket_count);
  if (bounds_length != 0) std::memcpy(bounds.data(), bound_bytes.data(), bounds_length);
  // The rules writers register by (names, reserved names, help, label names,
  // unit, bounds), checked on the copies.
  if (!shm::check_family_definition(f.name, help_copy, e.type, e.gauge_mode, f.label_names, unit, bounds)
           .empty())
    return false;
  f.type = e.type;
  f.value_type = e.value_type;
  f.gauge_mode = e.gauge_mode;
  f.info_index = e.info_index;
  f.cells = shm::series_cells(e.type, e.bucket_count);
  switch (e.type) {
    case shm::MetricType::kCounter:
      if (!f.name.ends_with("_total") || e.gauge_mode != shm::GaugeMode::kNone ||
          (e.value_type != shm::ValueType::kInteger && e.value_type != shm::ValueType::kDouble))
        return false;
      break;
    case shm::MetricType::kGauge:
      if (e.gauge_mode < shm::GaugeMode::kLiveSum || e.gauge_mode > shm::GaugeMode::kLiveMostRecent ||
          (e.value_type != shm::ValueType::kInteger && e.value_type != shm::ValueType::kDouble))
        return false;
      if ((e.gauge_mode == shm::GaugeMode::kLiveAll || e.gauge_mode == shm::GaugeMode::kAll) &&
          std::find(f.label_names.begin(), f.label_names.end(), "pid") != f.label_names.end())
        return false;
      break;
    case shm::MetricType::kInfo:
      if (e.gauge_mode != shm::GaugeMode::kNone || e.info_index >= capacities_.info_families)
        return false;
      break;
    case shm::MetricType::kHistogram:
      if (e.gauge_mode != shm::GaugeMode::kNone || e.value_type != shm::ValueType::kDouble) return false;
      for (double b : bounds) {
        std::string le = "le=\"";
        append_go_double(le, b);
        f.le_labels.push_back(le + '"');
      }
      f.le_labels.push_back("le=\"+Inf\"");
      break;
    case shm::MetricType::kSummary:  // no bounds: check_family_definition refuses them
      if (e.gauge_mode != shm::GaugeMode::kNone || e.value_type != shm::ValueType::kDouble) return false;
      break;
    default:
      return false;
  }
  f.help_line = "# HELP " + f.name + " ";
  append_escaped_help(f.help_line, help_copy);
  f.help_line += "\n# TYPE " + f.name + " " + type_word(f.type) + "\n";
  // OpenMetrics: the family's name (a counter's without _total, an info's
  // without _info), help escaped with its quotes too, the unit.
  std::string om_name = f.name;
  if (f.type == shm::MetricType::kCounter) om_name.resize(om_name.size() - 6);
  if (f.type == shm::MetricType::kInfo) {
    if (om_name.ends_with("_info")) om_name.resize(om_name.size() - 5);
    f.om_info_name = om_name + "_info";
  }
  f.om_help_line = "# HELP " + om_name + " ";
  append_escaped_label_value(f.om_help_line, help_copy);
  f.om_help_line += "\n# TYPE " + om_name + " " +
                    (f.type == shm::MetricType::kInfo ? "info" : type_word(f.type)) + "\n";
  if (!unit.empty()) f.om_help_line += "# UNIT " + om_name + " " + std::string(unit) + "\n";
  f.negative_bounds = !bounds.empty() && bounds.front() < 0;
  f.trusted = true;
  return true;
}

bool SegmentReader::parse_series(std::uint32_t index, std::uint32_t& family, Series& s) {
  shm::SeriesEntry e;
  std::memcpy(&e, base_ + geometry_.series_offset + std::uint64_t{index} * sizeof e, sizeof e);
  if (e.family_index >= families_.size() || !families_[e.family_index].trusted) return false;
  const Family& f = families_[e.family_index];
  if (f.type == shm::MetricType::kInfo) return false;  // info values live in records
  // Counters, histograms and summaries index slot cells, gauges record cells;
  // a histogram's or summary's (count, sum) pairs start at an even cell.
  if (std::uint64_t{e.cell_index} + f.cells >
      (f.type == shm::MetricType::kGauge ? capacities_.gauge_series : shm::slot_cells(capacities_)))
    return false;
  if (f.type != shm::MetricType::kGauge && e.cell_index % shm::series_alignment(f.type) != 0) return false;
  if (e.label_values_length > f.label_names.size() * (4 + shm::kMaxLabelValueBytes)) return false;
  std::string_view bytes = pool_string(e.label_values_offset, e.label_values_length);
  if (bytes.size() != e.label_values_length) return false;
  if (!claim_strings({{e.label_values_offset, e.label_values_length}})) return false;  // before the copy
  std::vector<std::string> values;
  if (!shm::decode_string_list(std::string(bytes), f.label_names.size(), shm::kMaxLabelValueBytes, values) ||
      !valid_label_values(values))
    return false;
  family = e.family_index;
  s.cell = e.cell_index;
  s.double_index = -1;
  s.labels = render_labels(f.label_names, values);
  // OpenMetrics' _created: fixed at registration; its line is rendered once,
  // by build_created_lines, only when asked for.
  s.created_ns = f.type == shm::MetricType::kGauge ? 0 : e.created_ns;
  s.family = e.family_index;
  return true;
}

bool SegmentReader::parse_new_entries(std::size_t max_bytes) {
  const std::uint8_t* h = base_;
  // Series first: every family a series names was published before it. The
  // strings of every entry counted were written before string_used, which is
  // read after the counts.
  std::uint32_t series = std::min(
      load_acquire<std::uint32_t>(h + offsetof(shm::Header, series_count)), capacities_.series);
  std::uint32_t families = std::min(
      load_acquire<std::uint32_t>(h + offsetof(shm::Header, family_count)), capacities_.families);
  string_used_ = std::min(load_acquire<std::uint32_t>(h + offsetof(shm::Header, string_used)),
                          capacities_.string_bytes);
  if (families > parsed_families_) {
    // Every name a trusted family takes in an exposition: a family taking one
    // already taken would make the exposition invalid, so it is left out.
    std::unordered_set<std::string> names;
    for (const auto& f : families_)
      if (f.trusted)
        for (std::string& n : shm::exposition_names(f.type, f.name)) names.insert(std::move(n));
    auto take_names = [&](const Family& f) {
      std::vector<std::string> taken = shm::exposition_names(f.type, f.name);
      for (const std::string& n : taken)
        if (names.contains(n)) return false;
      for (std::string& n : taken) names.insert(std::move(n));
      return true;
    };
    for (std::uint32_t i = parsed_families_; i < families; ++i) {
      Family f;
      bool ok = parse_family(i, f) && take_names(f);
      f.trusted = ok;
      if (!ok) ++families_dropped_;
      parsed_bytes_ += sizeof(Family) + f.name.size() + f.help_line.size() + kNodeBytes;
      for (const auto& n : f.label_names) parsed_bytes_ += sizeof n + n.size();
      for (const auto& le : f.le_labels) parsed_bytes_ += sizeof le + le.size();
      families_.push_back(std::move(f));
      parsed_families_ = i + 1;
      if (parsed_bytes_ > max_bytes) return false;
    }
  }
  for (std::uint32_t i = parsed_series_; i < series; ++i) {
    Series s;
    std::uint32_t family = 0;
    bool ok = parse_series(i, family, s);
    // A label set twice in one family would break the exposition.
    if (!ok || !families_[family].label_sets.insert(s.labels).second) {
      ++series_dropped_;
      continue;
    }
    const Family& f = families_[family];
    if (has_sum(f.type)) {
      // _sum: the sum cells of its pairs, added up into one accumulator.
      const std::uint32_t counts = f.cells / 2;
      s.double_index = static_cast<std::int32_t>(double_sums_count_++);
      for (std::uint32_t b = 0; b < counts; ++b)
        double_cells_.push_back({s.cell + 2 * b + 1, static_cast<std::uint32_t>(s.double_index)});
      counter_cells_ = std::max(counter_cells_, s.cell + 2 * counts);
      double_cells_sorted_ = false;
    } else if (f.type == shm::MetricType::kCounter) {
      if (f.value_type == shm::ValueType::kDouble) {
        s.double_index = static_cast<std::int32_t>(double_sums_count_++);
        double_cells_.push_back({s.cell, static_cast<std::uint32_t>(s.double_index)});
        double_cells_sorted_ = false;
      }
      counter_cells_ = std::max(counter_cells_, s.cell + 1);
    }
    if (!has_sum(f.type)) append_sample_head(s.head, f.name, s.labels);  // rendered once, appended per scrape
    // The series, its head and its labels (here and in the family's set).
    parsed_bytes_ += sizeof s + sizeof(std::uint32_t) + kNodeBytes + s.head.size() + 2 * s.labels.size();
    families_[family].series.push_back(static_cast<std::uint32_t>(series_.size()));
    series_.push_back(std::move(s));
    if (parsed_bytes_ > max_bytes) return false;
  }
  parsed_series_ = std::max(parsed_series_, series);
  return !created_ || build_created_lines(max_bytes);
}

// The _created line of every series taken since the last call, in one
// buffer in series order (an OpenMetrics render copies them from
// consecutive memory). Built only once a render asks for them: without
// --openmetrics-created they take neither memory nor --max-scrape-bytes.
bool SegmentReader::build_created_lines(std::size_t max_bytes) {
  for (; created_built_ < series_.size(); ++created_built_) {
    Series& s = series_[created_built_];
    if (s.created_ns == 0) continue;  // gauges, and series registered without one
    const Family& f = families_[s.family];
    std::string_view base = f.name;
    if (f.type == shm::MetricType::kCounter) base.remove_suffix(6);  // "_total"
    s.created_at = created_lines_.size();
    created_lines_.append(base).append("_created");
    if (!s.labels.empty()) created_lines_.append("{").append(s.labels).append("}");
    created_lines_ += ' ';
    append_uint(created_lines_, s.created_ns / 1'000'000'000u);
    const std::string fraction = std::to_string(1'000'000'000u + s.created_ns % 1'000'000'000u);
    created_lines_.append(".").append(fraction, 1).append("\n");
    s.created_length = static_cast<std::uint32_t>(created_lines_.size() - s.created_at);
    parsed_bytes_ += s.created_length;
    if (parsed_bytes_ > max_bytes) return false;
  }
  return true;
}

void SegmentReader::sum_counters() {
  const std::uint32_t cells = counter_cells_;
  const std::uint32_t pages = static_cast<std::uint32_t>((std::uint64_t{cells} + shm::kCellsPerPage - 1) >> shm::kPageShift);
  if (!double_cells_sorted_ || double_page_begin_.size() != std::size_t{pages} + 1) {
    // By cell, so that each page's double cells are one run, found by
    // double_page_begin_ (registration hands out cells in order, so this is
    // nearly sorted already).
    if (!double_cells_sorted_)
      std::sort(double_cells_.begin(), double_cells_.end(),
                [](const DoubleCell& a, const DoubleCell& b) { return a.cell < b.cell; });
    double_page_begin_.assign(std::size_t{pages} + 1, 0);
    std::size_t d = 0;
    for (std::uint32_t p = 0; p <= pages; ++p) {
      while (d < double_cells_.size() && (double_cells_[d].cell >> shm::kPageShift) < p) ++d;
      double_page_begin_[p] = static_cast<std::uint32_t>(d);
    }
    double_cells_sorted_ = true;
  }
  int_sums_.assign(cells, 0);
  double_sums_.assign(double_sums_count_, 0.0);
  auto add_row = [&](const std::uint8_t* row, std::uint32_t first, std::uint32_t end) {
    for (std::uint32_t c = first; c < end; ++c)
      int_sums_[c] += load_relaxed<std::uint64_t>(row + std::uint64_t{c - first} * 8);
  };
  auto add_doubles = [&](const std::uint8_t* row, std::size_t begin, std::size_t end, std::uint32_t first) {
    for (std::size_t d = begin; d < end; ++d)
      double_sums_[double_cells_[d].sum] +=
          std::bit_cast<double>(load_relaxed<std::uint64_t>(row + std::uint64_t{double_cells_[d].cell - first} * 8));
  };
  // The overflow slot's dense cells are always read.
  const std::uint8_t* overflow = base_ + geometry_.overflow_cells_offset;
  add_row(overflow, 0, cells);
  add_doubles(overflow, 0, double_cells_.size(), 0);
  // Thread slots only once claimed; in them only the pages their table names
  // (an entry past the pool, which no writer makes, is skipped).
  auto page_of = [&](const std::uint8_t* table, std::uint32_t p) -> const std::uint8_t* {
    std::uint32_t page = load_acquire<std::uint32_t>(table + std::uint64_t{p} * 4);
    if (page == 0 || page > geometry_.pool_pages) return nullptr;
    return base_ + geometry_.page_offset(page);
  };
  usage_.slots_claimed = 0;
  for (std::uint32_t slot = 0; slot < capacities_.thread_slots; ++slot) {
    const std::uint8_t* header = base_ + geometry_.slot_offset(slot);
    if (load_acquire<std::uint32_t>(header + offsetof(shm::SlotHeader, claims)) == 0) continue;
    ++usage_.slots_claimed;
    const std::uint8_t* table = base_ + geometry_.page_table_offset(slot);
    for (std::uint32_t p = 0; p < pages; ++p) {
      if (const std::uint8_t* row = page_of(table, p)) {
        const std::uint32_t first = p << shm::kPageShift;
        add_row(row, first, std::min(cells, first + shm::kCellsPerPage));
        add_doubles(row, double_page_begin_[p], double_page_begin_[p + 1], first);
      }
    }
  }
}

namespace {

// A gauge cell's value and, for the timestamped modes, the time it was set;
// false when unset or never stable across kSeqlockReadTries reads.
// Integer cells are set once their stamp is (1, or a timestamp); double
// cells once their value is not kGaugeUnset.
bool read_gauge_cell(const std::uint8_t* cell, bool stamped, bool integer, std::uint64_t& bits,
                     std::uint64_t& stamp) {
  const std::uint8_t* stamp_word = cell + offsetof(shm::GaugeCell, stamp);
  const std::uint8_t* value_word = cell + offsetof(shm::GaugeCell, value);
  if (stamped) {  // the stamp is the cell's seqlock
    bool set = false;
    return shm::seqlock_read(stamp_word, [&](std::uint64_t s) {
             if (integer && s == 0) return false;  // never set
             bits = load_relaxed<std::uint64_t>(value_word);
             stamp = s;
             set = shm::gauge_cell_set(bits, s, integer);
             return true;
           }) &&
           set;
  }
  if (!integer) {
    bits = load_acquire<std::uint64_t>(value_word);
    return shm::gauge_cell_set(bits, 0, false);
  }
  // Integer, untimestamped: the stamp is 1 once set. A record reset clears
  // it, then the value (with release), so a stamp unchanged around the value
  // says the value is not of a reset half seen.
  for (int attempt = 0; attempt < shm::kSeqlockReadTries; ++attempt) {
    const std::uint64_t s1 = load_acquire<std::uint64_t>(stamp_word);
    if (s1 == 0) return false;
    bits = load_acquire<std::uint64_t>(value_word);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (load_relaxed<std::uint64_t>(stamp_word) != s1) continue;
    stamp = s1;
    return shm::gauge_cell_set(bits, s1, true);
  }
  return false;
}

void append_gauge_value(std::string& out, std::uint64_t bits, bool integer) {
  if (integer)
    append_int(out, static_cast<std::int64_t>(bits));
  else
    append_double(out, std::bit_cast<double>(bits));
}

bool keeps_dead_values(shm::GaugeMode m) {
  return m == shm::GaugeMode::kSum || m == shm::GaugeMode::kMax || m == shm::GaugeMode::kMin ||
         m == shm::GaugeMode::kAll || m == shm::GaugeMode::kMostRecent;
}

bool per_process(shm::GaugeMode m) { return m == shm::GaugeMode::kLiveAll || m == shm::GaugeMode::kAll; }

}  // namespace

bool SegmentReader::render_gauge(const Family& f, std::string& out, const GaugeSources& sources) {
  const shm::GaugeMode mode = f.gauge_mode;
  const bool stamped = shm::is_timestamped(mode);
  const bool integer = f.value_type == shm::ValueType::kInteger;
  for (std::uint32_t index : f.series) {
    const Series& s = series_[index];
    std::uint64_t combined = 0;
    std::uint64_t newest = 0;
    bool any = false;
    auto take = [&](std::uint64_t bits, std::uint64_t stamp) {
      if (!any || (stamped && stamp > newest)) {
        combined = bits;
        newest = stamp;
      } else if (!stamped) {
        combined = shm::combine_gauge_values(mode, integer, combined, bits);
      }
      any = true;
    };
    auto from_records = [&](const std::vector<LiveRecord>& records) {
      for (const LiveRecord& r : records) {
        const std::uint8_t* cell = base_ + geometry_.record_offset(r.record) + sizeof(shm::RecordHeader) +
                                   std::uint64_t{s.cell} * sizeof(shm::GaugeCell);
        std::uint64_t bits = 0, stamp = 0;
        if (!read_gauge_cell(cell, stamped, integer, bits, stamp)) continue;
        if (!per_process(mode)) {
          take(bits, stamp);
          continue;
        }
        if (!r.first_with_pid) continue;  // two series with one pid label would be a duplicate
        if (!room_for(out, f.name.size() + s.labels.size() + kPidLabelBytes + kValueBytes + 3))
          return false;
        std::string labels = s.labels;
        if (!labels.empty()) labels += ',';
        labels += "pid=\"" + std::to_string(r.pid) + "\"";
        append_sample_head(out, f.name, labels);
        append_gauge_value(out, bits, integer);
        out += '\n';
      }
      return true;
    };
    if (!from_records(sources.live)) return false;
    if (keeps_dead_values(mode)) {
      if (!from_records(sources.dead)) return false;
      if (!per_process(mode)) {
        const std::uint8_t* cell = sources.folded_cells + std::uint64_t{s.cell} * sizeof(shm::GaugeCell);
        std::uint64_t bits = load_relaxed<std::uint64_t>(cell + offsetof(shm::GaugeCell, value));
        std::uint64_t stamp = load_relaxed<std::uint64_t>(cell + offsetof(shm::GaugeCell, stamp));
        if (shm::gauge_cell_set(bits, stamp, integer)) take(bits, stamp);
      }
    }
    if (any) {
      if (!room_for(out, s.head.size() + kValueBytes)) return false;
      out += s.head;
      append_gauge_value(out, combined, integer);
      out += '\n';
    }
  }
  return true;
}

bool SegmentReader::render_info(const Family& f, std::string& out,
                                const std::vector<LiveRecord>& live) {
  // Each process may hold another value: the set of them is bounded by the
  // room left in the exposition, as the lines they become.
  std::set<std::string> distinct;
  std::size_t lines_bytes = 0;
  std::vector<std::uint64_t> words((capacities_.info_value_bytes + 7) / 8);
  std::vector<std::string> values;
  const std::string& name = format_ == Format::kOpenMetrics ? f.om_info_name : f.name;
  for (const LiveRecord& r : live) {
    const std::uint8_t* area = base_ + geometry_.info_area_offset(r.record, f.info_index);
    const std::uint8_t* data = area + sizeof(shm::InfoAreaHeader);
    // Under its seqlock; a process whose value is never stable across
    // kSeqlockReadTries reads, or is corrupt, is left out this time.
    std::uint64_t length = 0;
    const bool consistent = shm::seqlock_read(area + offsetof(shm::InfoAreaHeader, seq), [&](std::uint64_t) {
      length = load_relaxed<std::uint64_t>(area + offsetof(shm::InfoAreaHeader, length));
      const std::uint64_t bytes = length == 0 ? 0 : length - 1;
      if (bytes > capacities_.info_value_bytes) return false;  // corrupt
      for (std::size_t i = 0; i < (bytes + 7) / 8; ++i) words[i] = load_relaxed<std::uint64_t>(data + i * 8);
      return true;
    });
    if (!consistent || length == 0) continue;
    std::string_view encoded(reinterpret_cast<const char*>(words.data()), length - 1);
    if (shm::decode_string_list(encoded, f.label_names.size(), shm::kMaxLabelValueBytes, values) &&
        valid_label_values(values)) {
      std::string labels = render_labels(f.label_names, values);
      const std::size_t line = name.size() + labels.size() + 5;  // name{labels} 1\n
      if (distinct.insert(std::move(labels)).second) lines_bytes += line;
      if (out.size() + lines_bytes > max_bytes_) return false;
    }
  }
  if (!room_for(out, lines_bytes)) return false;
  for (const auto& labels : distinct) {
    append_sample_head(out, name, labels);
    out += "1\n";
  }
  return true;
}

bool SegmentReader::render_readyz(std::string& out, std::uint64_t now_ns) {
  if (load_relaxed<std::uint32_t>(base_ + offsetof(shm::Header, readyz_used)) == 0) return true;
  if (!room_for(out, kReadyzBytes)) return false;
  const auto now = static_cast<std::int64_t>(now_ns / 1'000'000'000u);
  const std::int64_t short_window = capacities_.readyz_short_window_seconds;
  const std::int64_t long_window = capacities_.readyz_long_window_seconds;
  std::uint64_t checks = 0, failures = 0, newest = 0;
  std::uint64_t ok_short = 0, total_short = 0, ok_long = 0, total_long = 0;
  // The overflow slot's fixed area, then each claimed slot's pages (none
  // until it recorded a sample; an area past the pool is skipped).
  for (std::uint32_t slot = 0; slot <= capacities_.thread_slots; ++slot) {
    const std::uint8_t* area = base_ + geometry_.overflow_readyz_offset;
    if (slot < capacities_.thread_slots) {
      const std::uint8_t* header = base_ + geometry_.slot_offset(slot);
      if (load_acquire<std::uint32_t>(header + offsetof(shm::SlotHeader, claims)) == 0) continue;
      const std::uint64_t page = load_acquire<std::uint32_t>(header + offsetof(shm::SlotHeader, readyz_page));
      if (page == 0 || page + geometry_.readyz_pages - 1 > geometry_.pool_pages) continue;
      area = base_ + geometry_.page_offset(page);
    }
    checks += load_relaxed<std::uint64_t>(area + offsetof(shm::ReadyzArea, checks));
    failures += load_relaxed<std::uint64_t>(area + offsetof(shm::ReadyzArea, failures));
    std::uint64_t last = load_relaxed<std::uint64_t>(area + offsetof(shm::ReadyzArea, last_sample));
    if ((last >> 1) > (newest >> 1)) newest = last;
    const std::uint8_t* buckets = area + sizeof(shm::ReadyzArea);
    for (std::uint64_t b = 0; b < geometry_.readyz_ring_buckets; ++b) {
      std::uint64_t word = load_relaxed<std::uint64_t>(buckets + b * 8);
      std::uint32_t ok = shm::bucket_ok(word), total = shm::bucket_total(word);
      // Truncated to 32 bits like the writer's stamp; past or future buckets drop out.
      std::int64_t age = static_cast<std::int32_t>(static_cast<std::uint32_t>(now) - shm::bucket_second(word));
      if (ok > total || age < 0) continue;
      if (age < short_window) {
        ok_short += ok;
        total_short += total;
      }
      if (age < long_window) {
        ok_long += ok;
        total_long += total;
      }
    }
  }
  auto counter = [&](const char* name, const char* help, std::uint64_t v) {
    append_family_head(out, format_, name, "counter", help);
    out.append(name).append(" ");
    append_uint(out, v);
    out += '\n';
  };
  auto ratio = [&](const char* name, std::int64_t window, std::uint64_t ok, std::uint64_t total) {
    append_family_head(out, format_, name, "gauge",
                       "Share of readyz checks that succeeded in the last " + std::to_string(window) +
                           " s (1 when there were none).");
    out.append(name).append(" ");
    append_double(out, total == 0 ? 1.0 : static_cast<double>(ok) / static_cast<double>(total));
    out += '\n';
  };
  counter("readyz_checks_total", "readyz checks recorded by all workers.", checks);
  counter("readyz_failures_total", "readyz checks that failed.", failures);
  ratio("readyz_success_ratio_1m", short_window, ok_short, total_short);
  ratio("readyz_success_ratio_5m", long_window, ok_long, total_long);
  // No sample yet counts as ready, as an empty window counts as all good.
  bool ready = newest == 0 || (newest & 1) != 0;
  append_family_head(out, format_, "readyz_status", "gauge", "Outcome of the newest readyz check (1 on its status).");
  out += ready ? "readyz_status{status=\"ready\"} 1\nreadyz_status{status=\"degraded\"} 0\n"
               : "readyz_status{status=\"ready\"} 0\nreadyz_status{status=\"degraded\"} 1\n";
  return true;
}

SegmentReader::GaugeSources SegmentReader::gauge_sources(const RecordLiveness& live,
                                                         std::uint64_t& dead_state) {
  GaugeSources sources;
  dead_state = load_acquire<std::uint64_t>(base_ + geometry_.dead_offset);
  const std::uint8_t* active = base_ + geometry_.dead_buffer_offset(static_cast<std::uint32_t>(dead_state & 1));
  const auto folded_record = load_relaxed<std::uint32_t>(active + offsetof(shm::DeadBufferHeader, folded_record));
  const auto folded_generation =
      load_relaxed<std::uint32_t>(active + offsetof(shm::DeadBufferHeader, folded_generation));
  sources.folded_cells = active + sizeof(shm::DeadBufferHeader);
  dead_verdicts_.resize(capacities_.process_records);  // once: the capacities are fixed
  for (std::uint32_t r = 0; r < capacities_.process_records; ++r) {
    const std::uint8_t* header = base_ + geometry_.record_offset(r);
    std::uint32_t pid = load_acquire<std::uint32_t>(header + offsetof(shm::RecordHeader, owner_pid));
    if (pid == 0) continue;
    // Read before liveness is asked: a claimer bumps the generation only once
    // it holds the lock, so a record found dead after this load stays dead at
    // this generation, even if the next owner happens to have the same pid.
    std::uint32_t generation = load_acquire<std::uint32_t>(header + offsetof(shm::RecordHeader, generation));
    DeadVerdict& verdict = dead_verdicts_[r];
    if (verdict.pid != pid || verdict.generation != generation) {
      ++liveness_queries_;
      if (live(r, pid)) {
        sources.live.push_back({r, pid, true});
        continue;
      }
      verdict = {pid, generation};
    }
    if (r == folded_record && generation == folded_generation) continue;  // already in the dead buffer
    sources.dead.push_back({r, pid, true});
  }
  // A pid is shown once (the all modes): by its first live record, else by its
  // first dead one. Sorted rather than hashed: no allocation per dead record.
  pid_order_.clear();
  const auto live_count = static_cast<std::uint32_t>(sources.live.size());
  for (std::uint32_t i = 0; i < live_count; ++i) pid_order_.emplace_back(sources.live[i].pid, i);
  for (std::uint32_t i = 0; i < sources.dead.size(); ++i)
    pid_order_.emplace_back(sources.dead[i].pid, live_count + i);
  std::sort(pid_order_.begin(), pid_order_.end());
  for (std::size_t i = 1; i < pid_order_.size(); ++i) {
    if (pid_order_[i].first != pid_order_[i - 1].first) continue;
    const std::uint32_t at = pid_order_[i].second;
    (at < live_count ? sources.live[at] : sources.dead[at - live_count]).first_with_pid = false;
  }
  return sources;
}

// _bucket{labels,le="…"} cumulative, then _sum and _count: the Go client's
// order. Each cumulative bucket and _count add up the same reads of the
// per-bucket cells (see shm::series_cells), so they never contradict.
bool SegmentReader::render_histogram(const Family& f, std::string& out) {
  std::size_t le_bytes = 0;
  for (const auto& le : f.le_labels) le_bytes += le.size();
  for (std::uint32_t index : f.series) {
    const Series& s = series_[index];
    const std::size_t line = f.name.size() + s.labels.size() + 12 + kValueBytes;
    if (!room_for(out, f.le_labels.size() * line + le_bytes + 2 * line + (created_ ? s.created_length : 0))) return false;
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < f.le_labels.size(); ++b) {
      // Saturating: only a forged segment holds cells near 2^64, and even its
      // buckets must not decrease.
      if (__builtin_add_overflow(cumulative, int_sums_[s.cell + 2 * b], &cumulative)) cumulative = UINT64_MAX;
      out += f.name;
      out += "_bucket{";
      if (!s.labels.empty()) {
        out += s.labels;
        out += ',';
      }
      out += f.le_labels[b];
      out += "} ";
      append_uint(out, cumulative);
      out += '\n';
    }
    render_sum_and_count(f, s, cumulative, out);
  }
  return true;
}

// _sum and _count, then _created in OpenMetrics. OpenMetrics has no _sum
// (nor then _count) for histograms that may observe negative values, nor a
// negative or NaN one (of a summary either: its parsers refuse them).
void SegmentReader::render_sum_and_count(const Family& f, const Series& s, std::uint64_t count,
                                         std::string& out) const {
  auto sample = [&](const char* suffix) {
    out += f.name;
    out += suffix;
    if (!s.labels.empty()) {
      out += '{';
      out += s.labels;
      out += '}';
    }
    out += ' ';
  };
  const double sum = double_sums_[static_cast<std::size_t>(s.double_index)];
  if (format_ == Format::kText004 || (!f.negative_bounds && sum >= 0)) {
    sample("_sum");
    append_double(out, sum);
    out += '\n';
    sample("_count");
    append_uint(out, count);
    out += '\n';
  }
  if (created_) out.append(created_lines_.data() + s.created_at, s.created_length);
}

// A summary: a histogram's _sum and _count without buckets, its count cell
// the one bucket (+Inf) of a histogram without bounds.
bool SegmentReader::render_summary(const Family& f, std::string& out) {
  for (std::uint32_t index : f.series) {
    const Series& s = series_[index];
    const std::size_t line = f.name.size() + s.labels.size() + 12 + kValueBytes;
    if (!room_for(out, 2 * line + (created_ ? s.created_length : 0))) return false;
    render_sum_and_count(f, s, int_sums_[s.cell], out);
  }
  return true;
}

bool SegmentReader::render_counter(const Family& f, std::string& out) {
  for (std::uint32_t index : f.series) {
    const Series& s = series_[index];
    if (!room_for(out, s.head.size() + kValueBytes + (created_ ? s.created_length : 0))) return false;
    out += s.head;
    if (s.double_index >= 0) {
      append_double(out, double_sums_[static_cast<std::size_t>(s.double_index)]);
    } else {
      append_uint(out, int_sums_[s.cell]);
    }
    out += '\n';
    if (created_) out.append(created_lines_.data() + s.created_at, s.created_length);
  }
  return true;
}

bool SegmentReader::render_families(std::string& out, const GaugeSources& sources) {
  for (const Family& f : families_) {
    if (!f.trusted) continue;
    std::size_t start = out.size();
    const std::string& head = format_ == Format::kOpenMetrics ? f.om_help_line : f.help_line;
    if (!room_for(out, head.size())) return false;
    out += head;
    std::size_t samples = out.size();
    switch (f.type) {
      case shm::MetricType::kCounter:
        if (!render_counter(f, out)) return false;
        break;
      case shm::MetricType::kGauge:
        if (!render_gauge(f, out, sources)) return false;
        break;
      case shm::MetricType::kInfo:
        if (!render_info(f, out, sources.live)) return false;
        break;
      case shm::MetricType::kHistogram:
        if (!render_histogram(f, out)) return false;
        break;
      case shm::MetricType::kSummary:
        if (!render_summary(f, out)) return false;
        break;
    }
    if (out.size() == samples) out.resize(start);  // no samples: leave the family out
  }
  return true;
}

// Whether `more` bytes may be appended to `out` within this render's limit.
// When they may, `out` has room for them: grown here to an exact capacity,
// since std::string doubles its own, which could allocate twice the limit.
bool SegmentReader::room_for(std::string& out, std::size_t more) {
  if (more > max_bytes_ || out.size() > max_bytes_ - more) return false;
  if (out.capacity() - out.size() >= more) return true;
  const std::size_t ceiling = std::min(max_bytes_, SIZE_MAX - kRoomAfterRender) + kRoomAfterRender;
  std::string bigger;
  bigger.reserve(std::min(std::max(out.capacity() * 2, out.size() + more), ceiling));
  bigger.append(out);
  out.swap(bigger);
  return true;
}

std::string SegmentReader::header_changed() const {
  if (load_relaxed<std::uint64_t>(base_ + offsetof(shm::Header, magic)) != shm::kMagic ||
      load_relaxed<std::uint32_t>(base_ + offsetof(shm::Header, layout_version)) != shm::kLayoutVersion)
    return "the segment's magic or layout version changed under the exporter";
  return "";
}

std::string SegmentReader::render(std::string& out, const RecordLiveness& live, std::uint64_t now_ns,
                                  std::size_t max_bytes, Format format) {
  if (!error_.empty()) return error_;  // over_limit_ stays as the error left it
  over_limit_ = false;
  max_bytes_ = max_bytes;
  format_ = format;
  created_ = format == Format::kOpenMetrics && openmetrics_created_;
  if (std::string why = header_changed(); !why.empty()) return why;
  if (!parse_new_entries(max_bytes)) {
    // Freed, for good: the image only grows, so parsing it again would only
    // reach the limit again.
    families_ = {};
    series_ = {};
    claimed_strings_ = {};
    double_cells_ = {};
    created_lines_ = {};
    created_built_ = 0;
    double_page_begin_ = {};
    double_sums_count_ = 0;
    parsed_bytes_ = 0;
    over_limit_ = true;
    error_ = "its families and series take more than " + std::to_string(max_bytes) +
             " bytes parsed";
    return error_;
  }
  for (std::uint32_t e = 0; e < shm::kEventCount; ++e)
    events_[e] = load_relaxed<std::uint64_t>(base_ + offsetof(shm::Header, events) + e * 8);
  auto count = [&](std::size_t offset, std::uint64_t capacity) {
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(load_relaxed<std::uint32_t>(base_ + offset), capacity));
  };
  usage_.families = count(offsetof(shm::Header, family_count), capacities_.families);
  usage_.series = count(offsetof(shm::Header, series_count), capacities_.series);
  usage_.cells = count(offsetof(shm::Header, cells_used), shm::slot_cells(capacities_));
  usage_.gauge_series = count(offsetof(shm::Header, gauge_cells_used), capacities_.gauge_series);
  usage_.string_bytes = count(offsetof(shm::Header, string_used), capacities_.string_bytes);
  usage_.pages = count(offsetof(shm::Header, pages_used), geometry_.pool_pages);
  usage_.info_families = count(offsetof(shm::Header, info_count), capacities_.info_families);
  sum_counters();

  // Gauges of the modes that keep dead values read the dead buffers; a fold
  // published meanwhile would be missed or counted twice, so the families are
  // rendered again when the dead state moved (folds are rare: one per takeover).
  const std::size_t start = out.size();
  bool fits = true;
  for (int attempt = 0;; ++attempt) {
    std::uint64_t state_before = 0;
    GaugeSources sources = gauge_sources(live, state_before);
    usage_.records_live = static_cast<std::uint32_t>(sources.live.size());
    usage_.records_dead = static_cast<std::uint32_t>(sources.dead.size());
    live_records_.clear();
    for (const LiveRecord& r : sources.live) live_records_.emplace_back(r.record, r.pid);
    fits = render_families(out, sources);
    std::uint64_t state_after = load_acquire<std::uint64_t>(base_ + geometry_.dead_offset);
    if (!fits) break;
    if (state_after == state_before || attempt == 3) break;
    out.resize(start);
  }
  if (!fits || !render_readyz(out, now_ns)) {
    over_limit_ = true;
    return "its exposition takes more than " + std::to_string(max_bytes) + " bytes";
  }
  return "";
}

}  // namespace shmetrics::exporter
