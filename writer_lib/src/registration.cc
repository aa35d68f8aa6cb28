// Registering families and series in the segment, the process-local caches of
// what is registered, and info values.
//
// Registration is the one cross-process synchronised step. Under the robust
// registration lock a registrar writes the strings and the entry, then stores
// string_used and finally the count (release) that publishes the entry. A
// registrar killed at any instruction leaves the count unchanged, so its
// half-written entry is invisible and the next registrar overwrites it.
#include "process_segments.h"

#include <shmetrics/segment.h>
#include <shmetrics/shm/names.h>
#include <shmetrics/shm/robust_mutex.h>
#include <shmetrics/shm/seqlock.h>
#include <shmetrics/shm/string_list.h>
#include <shmetrics/shm/test_hooks.h>

#include <algorithm>
#include <limits>
#include <charconv>
#include <cstring>
#include <ctime>
#include <optional>
#include <stdexcept>

namespace shmetrics::detail {

namespace {

const char* type_name(shm::MetricType type) {
  switch (type) {
    case shm::MetricType::kCounter: return "counter";
    case shm::MetricType::kGauge: return "gauge";
    case shm::MetricType::kInfo: return "info";
    case shm::MetricType::kHistogram: return "histogram";
    case shm::MetricType::kSummary: return "summary";
  }
  return "unknown";
}

const char* mode_name(shm::GaugeMode mode) {
  switch (mode) {
    case shm::GaugeMode::kNone: return "none";
    case shm::GaugeMode::kLiveSum: return "livesum";
    case shm::GaugeMode::kLiveMax: return "livemax";
    case shm::GaugeMode::kLiveMin: return "livemin";
    case shm::GaugeMode::kLiveAll: return "liveall";
    case shm::GaugeMode::kSum: return "sum";
    case shm::GaugeMode::kMax: return "max";
    case shm::GaugeMode::kMin: return "min";
    case shm::GaugeMode::kAll: return "all";
    case shm::GaugeMode::kMostRecent: return "mostrecent";
    case shm::GaugeMode::kLiveMostRecent: return "livemostrecent";
  }
  return "unknown";
}

std::string format_bound(double v) {
  char buffer[32];
  return std::string(buffer, std::to_chars(buffer, buffer + sizeof buffer, v).ptr);
}

// What makes two registrations of one name the same family.
struct Definition {
  shm::MetricType type;
  shm::ValueType value_type;
  shm::GaugeMode mode;
  const std::vector<std::string>& label_names;
  std::string_view unit;
  const std::vector<double>& bounds;

  bool same_as(const LocalFamily& f) const {
    return f.type == type && f.value_type == value_type && f.gauge_mode == mode &&
           f.label_names == label_names && f.unit == unit && f.bounds == bounds;
  }
};

std::string describe_family(const Definition& d) {
  std::string out = type_name(d.type);
  out += " with labels [";
  for (std::size_t i = 0; i < d.label_names.size(); ++i) out += (i ? ", " : "") + d.label_names[i];
  out += "]";
  if (d.type == shm::MetricType::kCounter || d.type == shm::MetricType::kGauge)
    out += d.value_type == shm::ValueType::kDouble ? " (double values)" : " (integer values)";
  if (d.type == shm::MetricType::kGauge) out += std::string(" (mode ") + mode_name(d.mode) + ")";
  if (d.type == shm::MetricType::kHistogram) {
    out += " (buckets";
    for (double b : d.bounds) out += " " + format_bound(b);
    out += " +Inf)";
  }
  if (!d.unit.empty()) out += " (unit " + std::string(d.unit) + ")";
  return out;
}

std::string describe_family(const LocalFamily& f) {
  return describe_family({f.type, f.value_type, f.gauge_mode, f.label_names, f.unit, f.bounds});
}

std::string_view pool_string(const ProcessSegment& seg, std::uint32_t offset, std::uint32_t length) {
  const std::uint32_t pool = seg.mapped->capacities().string_bytes;
  if (offset > pool || length > pool - offset) return {};
  return {reinterpret_cast<const char*>(seg.base() + seg.geometry().strings_offset + offset), length};
}

// A family's label names as this process's own segment holds them (what
// decodes, should the entry be damaged).
std::vector<std::string> label_names_of(const ProcessSegment& seg, const shm::FamilyEntry& e) {
  std::vector<std::string> out;
  shm::decode_string_list(pool_string(seg, e.label_names_offset, e.label_names_length), e.label_count,
                          shm::kMaxNameBytes, out);
  return out;
}

// A histogram family's bucket bounds as the pool holds them (none when they
// do not fit in it).
std::vector<double> bounds_of(const ProcessSegment& seg, const shm::FamilyEntry& e) {
  std::vector<double> out;
  if (e.type != shm::MetricType::kHistogram || e.bucket_count > shm::kMaxBuckets) return out;
  std::string_view bytes = pool_string(seg, e.bounds_offset, e.bucket_count * 8);
  out.resize(bytes.size() / 8);
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * 8);
  return out;
}

shm::FamilyEntry* family_entries(ProcessSegment& seg) {
  return reinterpret_cast<shm::FamilyEntry*>(seg.base() + seg.geometry().families_offset);
}
shm::SeriesEntry* series_entries(ProcessSegment& seg) {
  return reinterpret_cast<shm::SeriesEntry*>(seg.base() + seg.geometry().series_offset);
}

// Holds the registration lock for one registration. Taken before seg.mutex.
// A holder that died left nothing to repair: registration publishes by a
// count written last, so what it left half-done is invisible and simply
// overwritten.
class RegistrationLock {
 public:
  explicit RegistrationLock(ProcessSegment& seg) : lock_(seg.header().registration_lock, seg.lock_timeout) {}
  bool held() const { return lock_.held(); }

 private:
  shm::RobustLock lock_;
};

// Appends `parts` to the string pool (not yet published). Returns their
// offsets, or false when the pool has no room.
bool write_strings(ProcessSegment& seg, const std::vector<std::string_view>& parts,
                   std::vector<std::uint32_t>& offsets, std::uint32_t& new_used) {
  std::uint64_t used = seg.header().string_used.load(std::memory_order_relaxed);
  std::uint64_t total = 0;
  for (auto p : parts) total += p.size();
  if (used + total > seg.mapped->capacities().string_bytes) return false;
  std::uint8_t* pool = seg.base() + seg.geometry().strings_offset;
  for (auto p : parts) {
    offsets.push_back(static_cast<std::uint32_t>(used));
    if (!p.empty()) std::memcpy(pool + used, p.data(), p.size());
    used += p.size();
  }
  new_used = static_cast<std::uint32_t>(used);
  return true;
}

std::uint64_t realtime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

LocalFamily& family_of(ProcessSegment& seg, std::uint32_t family) {
  return seg.families.at(family);
}

std::string check_label_values(const LocalFamily& fam, std::span<const std::string_view> values) {
  if (values.size() != fam.label_names.size())
    return "metric \"" + fam.name + "\" has " + std::to_string(fam.label_names.size()) +
           " label names but " + std::to_string(values.size()) + " label values were given";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i].size() > shm::kMaxLabelValueBytes)
      return "label value for \"" + fam.label_names[i] + "\" of metric \"" + fam.name + "\" is " +
             std::to_string(values[i].size()) + " bytes, more than the " +
             std::to_string(shm::kMaxLabelValueBytes) + " allowed";
    std::string err = shm::check_utf8(values[i], "label value for \"" + fam.label_names[i] + "\"");
    if (!err.empty()) return err;
  }
  return "";
}

// The cell of the series (family, values), registering it when new; nullopt
// when the segment has no room or its lock cannot be had (counted).
std::optional<std::uint32_t> find_or_register_series(std::uint16_t index, std::uint32_t family,
                                                     std::span<const std::string_view> values) {
  ProcessSegment* seg = segment_at(index);
  if (seg == nullptr) throw std::invalid_argument("family handle of a segment that is not open");
  // The lookup key, encoded into a buffer this thread reuses: no allocation
  // for a series already registered.
  thread_local std::string key;
  shm::encode_string_list(key, values);
  {
    std::lock_guard lock(seg->mutex);
    LocalFamily* fam = &family_of(*seg, family);
    // Look up first: a registered key was valid when it was registered, and
    // checking every call would cost more than the lookup itself.
    if (auto it = fam->cells.find(key); it != fam->cells.end()) return it->second;
    if (std::string err = check_label_values(*fam, values); !err.empty())
      throw std::invalid_argument(err);
    sync_from_segment(*seg);
    fam = &family_of(*seg, family);
    if (auto it = fam->cells.find(key); it != fam->cells.end()) return it->second;
  }
  // Lock order: the registration lock, then seg->mutex; the wait for the
  // former never holds up threads that only look up or claim.
  RegistrationLock reg(*seg);
  if (!reg.held()) {
    count_event(index, shm::kEventLockTimeouts);
    count_event(index, shm::kEventSeriesRefused);
    return std::nullopt;
  }
  std::lock_guard lock(seg->mutex);
  sync_from_segment(*seg);
  LocalFamily* fam = &family_of(*seg, family);
  if (auto it = fam->cells.find(key); it != fam->cells.end()) return it->second;

  shm::Header& h = seg->header();
  const auto& caps = seg->mapped->capacities();
  std::uint32_t count = h.series_count.load(std::memory_order_relaxed);
  // Gauges hold a record cell each, counters and histograms consecutive slot
  // cells (shm::series_cells): records hold none for them, slots none for gauges.
  const bool gauge = fam->type == shm::MetricType::kGauge;
  std::atomic<std::uint32_t>& cells_used = gauge ? h.gauge_cells_used : h.cells_used;
  const std::uint64_t cell_limit = gauge ? caps.gauge_series : shm::slot_cells(caps);
  const std::uint32_t width =
      gauge ? 1 : shm::series_cells(fam->type, static_cast<std::uint32_t>(fam->bounds.size()));
  // A histogram's cell pairs are 2-cell aligned (shm::kSeriesAlignment), so
  // each pair is in one page of a slot; the cell skipped before one is unused.
  const std::uint32_t used = cells_used.load(std::memory_order_relaxed);
  const std::uint32_t align = gauge ? 1 : shm::series_alignment(fam->type);
  const std::uint32_t cell = (used + align - 1) / align * align;
  std::vector<std::uint32_t> offsets;
  std::uint32_t new_used = 0;
  if (count >= caps.series || std::uint64_t{cell} + width > cell_limit ||
      !write_strings(*seg, {key}, offsets, new_used)) {
    count_event(index, shm::kEventSeriesRefused);
    return std::nullopt;
  }
  shm::park_point("register_series.after_strings");
  series_entries(*seg)[count] = shm::SeriesEntry{family, cell, offsets[0],
                                                 static_cast<std::uint32_t>(key.size()), realtime_ns()};
  shm::park_point("register_series.before_publish");
  h.string_used.store(new_used, std::memory_order_release);
  cells_used.store(cell + width, std::memory_order_release);
  h.series_count.store(count + 1, std::memory_order_release);
  sync_from_segment(*seg);
  return cell;
}

std::uint32_t register_family(std::uint16_t index, std::string_view name, std::string_view help,
                              shm::MetricType type, shm::ValueType value_type,
                              shm::GaugeMode mode, const std::vector<std::string>& label_names,
                              std::string_view unit = {}, const std::vector<double>& bounds = {}) {
  if (std::string err = shm::check_family_definition(name, help, type, mode, label_names, unit, bounds);
      !err.empty())
    throw std::invalid_argument(err);

  ProcessSegment* seg = segment_at(index);
  if (seg == nullptr) throw std::invalid_argument("segment handle does not name an open segment");
  std::string key(name);
  const Definition wanted{type, value_type, mode, label_names, unit, bounds};
  auto matches = [&](std::uint32_t f) {
    const LocalFamily& fam = seg->families[f];
    if (wanted.same_as(fam)) return f;
    throw std::invalid_argument(
        "metric \"" + key + "\" is already registered in segment \"" + seg->mapped->path() +
        "\" as " + describe_family(fam) + "; this registration asks for " + describe_family(wanted));
  };

  {
    std::lock_guard lock(seg->mutex);
    sync_from_segment(*seg);
    if (auto it = seg->family_by_name.find(key); it != seg->family_by_name.end())
      return matches(it->second);
  }
  RegistrationLock reg(*seg);  // before seg->mutex, as for series
  if (!reg.held()) {
    count_event(index, shm::kEventLockTimeouts);
    throw shm::SegmentError("cannot register \"" + key + "\": the registration lock of segment \"" +
                            seg->mapped->path() + "\" was not had within " +
                            std::to_string(seg->lock_timeout.count()) +
                            " ms (is a writer stopped while registering?)");
  }
  std::lock_guard lock(seg->mutex);
  sync_from_segment(*seg);
  if (auto it = seg->family_by_name.find(key); it != seg->family_by_name.end())
    return matches(it->second);
  for (const std::string& taken : shm::exposition_names(type, name)) {
    auto it = seg->family_by_exposition_name.find(taken);
    if (it == seg->family_by_exposition_name.end()) continue;
    const LocalFamily& other = seg->families[it->second];
    throw std::invalid_argument("metric \"" + key + "\" cannot be registered in segment \"" +
                                seg->mapped->path() + "\": the name \"" + taken + "\" it would take in an " +
                                "exposition is taken by " + type_name(other.type) + " \"" + other.name + "\"");
  }

  shm::Header& h = seg->header();
  const auto& caps = seg->mapped->capacities();
  std::uint32_t count = h.family_count.load(std::memory_order_relaxed);
  auto refuse = [&](const std::string& why) {
    count_event(index, shm::kEventSeriesRefused);
    return shm::SegmentError("cannot register \"" + key + "\" in segment \"" + seg->mapped->path() +
                             "\": " + why + "; create the segment with larger capacities");
  };
  if (count >= caps.families)
    throw refuse("all " + std::to_string(caps.families) + " families are registered");
  std::uint32_t info_index = 0;
  if (type == shm::MetricType::kInfo) {
    info_index = h.info_count.load(std::memory_order_relaxed);
    if (info_index >= caps.info_families)
      throw refuse("all " + std::to_string(caps.info_families) + " info families are registered");
  }
  std::vector<std::string_view> label_views(label_names.begin(), label_names.end());
  std::string encoded_labels = shm::encode_string_list(label_views);
  std::vector<std::uint32_t> offsets;
  std::uint32_t new_used = 0;
  const std::string_view bound_bytes(reinterpret_cast<const char*>(bounds.data()), bounds.size() * 8);
  if (!write_strings(*seg, {name, help, encoded_labels, unit, bound_bytes}, offsets, new_used))
    throw refuse("its string pool of " + std::to_string(caps.string_bytes) + " bytes is full");

  shm::park_point("register_family.after_strings");
  family_entries(*seg)[count] = shm::FamilyEntry{
      offsets[0], static_cast<std::uint32_t>(name.size()),
      offsets[1], static_cast<std::uint32_t>(help.size()),
      offsets[2], static_cast<std::uint32_t>(encoded_labels.size()),
      type, value_type, mode, static_cast<std::uint8_t>(label_names.size()), info_index,
      offsets[4], static_cast<std::uint32_t>(bounds.size()),
      offsets[3], static_cast<std::uint32_t>(unit.size())};
  shm::park_point("register_family.before_publish");
  h.string_used.store(new_used, std::memory_order_release);
  if (type == shm::MetricType::kInfo) h.info_count.store(info_index + 1, std::memory_order_release);
  h.family_count.store(count + 1, std::memory_order_release);
  sync_from_segment(*seg);
  return count;
}

std::uint8_t* info_area(ProcessSegment& seg, std::uint32_t info_index) {
  const auto& g = seg.geometry();
  return seg.base() + g.info_area_offset(
                          static_cast<std::uint32_t>(seg.record.load(std::memory_order_acquire)),
                          info_index);
}

// Writes one info area under its seqlock.
void write_info(std::uint8_t* area, const std::string* encoded) {
  auto* h = reinterpret_cast<shm::InfoAreaHeader*>(area);
  const std::uint64_t s = shm::seqlock_write_begin(h->seq);
  if (encoded == nullptr) {
    h->length.store(0, std::memory_order_relaxed);
  } else {
    auto* words = reinterpret_cast<std::atomic<std::uint64_t>*>(area + sizeof(shm::InfoAreaHeader));
    for (std::size_t i = 0; i * 8 < encoded->size(); ++i) {
      std::uint64_t w = 0;
      std::memcpy(&w, encoded->data() + i * 8, std::min<std::size_t>(8, encoded->size() - i * 8));
      words[i].store(w, std::memory_order_relaxed);
    }
    h->length.store(encoded->size() + 1, std::memory_order_relaxed);
  }
  shm::seqlock_write_end(h->seq, s + 2);
}

}  // namespace

void sync_from_segment(ProcessSegment& seg) {
  shm::Header& h = seg.header();
  const auto& caps = seg.mapped->capacities();
  // Series first: every family a series names was published before it.
  std::uint32_t series = std::min(h.series_count.load(std::memory_order_acquire), caps.series);
  std::uint32_t families = std::min(h.family_count.load(std::memory_order_acquire), caps.families);
  for (std::uint32_t f = seg.synced_families; f < families; ++f) {
    const shm::FamilyEntry e = family_entries(seg)[f];
    LocalFamily fam{std::string(pool_string(seg, e.name_offset, e.name_length)),
                    e.type,
                    e.value_type,
                    e.gauge_mode,
                    label_names_of(seg, e),
                    e.info_index,
                    {},
                    std::string(pool_string(seg, e.unit_offset, e.unit_length)),
                    bounds_of(seg, e),
                    {}};
    fam.padded_bounds = fam.bounds;
    while (fam.padded_bounds.size() % kBoundsPadding != 0)
      fam.padded_bounds.push_back(std::numeric_limits<double>::infinity());
    seg.family_by_name.emplace(fam.name, f);
    for (std::string& taken : shm::exposition_names(fam.type, fam.name))
      seg.family_by_exposition_name.emplace(std::move(taken), f);
    seg.families.push_back(std::move(fam));
  }
  seg.synced_families = families;
  for (std::uint32_t s = seg.synced_series; s < series; ++s) {
    const shm::SeriesEntry e = series_entries(seg)[s];
    if (e.family_index >= seg.families.size()) continue;
    const LocalFamily& fam = seg.families[e.family_index];
    const bool gauge = fam.type == shm::MetricType::kGauge;
    const std::uint64_t width =
        gauge ? 1 : shm::series_cells(fam.type, static_cast<std::uint32_t>(fam.bounds.size()));
    if (e.cell_index + width > (gauge ? caps.gauge_series : shm::slot_cells(caps))) continue;
    if (!gauge && e.cell_index % shm::series_alignment(fam.type) != 0) continue;  // forged: not written
    seg.families[e.family_index].cells.emplace(
        std::string(pool_string(seg, e.label_values_offset, e.label_values_length)), e.cell_index);
  }
  seg.synced_series = series;
}

}  // namespace shmetrics::detail

namespace shmetrics {

CounterFamily Segment::counter_family(std::string_view name, std::string_view help,
                                      const std::vector<std::string>& label_names,
                                      ValueType value_type, std::string_view unit) const {
  if (value_type != ValueType::kInteger && value_type != ValueType::kDouble)
    throw std::invalid_argument("counter \"" + std::string(name) +
                                "\": value type must be kInteger or kDouble");
  CounterFamily f;
  f.segment_ = index_;
  f.family_ = detail::register_family(index_, name, help, shm::MetricType::kCounter, value_type,
                                      shm::GaugeMode::kNone, label_names, unit);
  f.is_double_ = value_type == ValueType::kDouble;
  return f;
}

GaugeMode gauge_mode_from_name(std::string_view name) {
  static constexpr struct {
    std::string_view name;
    GaugeMode mode;
  } kModes[] = {{"livesum", GaugeMode::kLiveSum}, {"livemax", GaugeMode::kLiveMax},
                {"livemin", GaugeMode::kLiveMin}, {"liveall", GaugeMode::kLiveAll},
                {"sum", GaugeMode::kSum},         {"max", GaugeMode::kMax},
                {"min", GaugeMode::kMin},         {"all", GaugeMode::kAll},
                {"mostrecent", GaugeMode::kMostRecent}, {"livemostrecent", GaugeMode::kLiveMostRecent}};
  for (const auto& m : kModes)
    if (name == m.name) return m.mode;
  throw std::invalid_argument("gauge mode \"" + std::string(name) +
                              "\" is invalid: expected livesum, livemax, livemin, liveall, sum, max, min, all, "
                              "mostrecent or livemostrecent");
}

GaugeFamily Segment::gauge_family(std::string_view name, std::string_view help,
                                  const std::vector<std::string>& label_names, GaugeMode mode,
                                  ValueType value_type, std::string_view unit) const {
  if (mode < GaugeMode::kLiveSum || mode > GaugeMode::kLiveMostRecent)
    throw std::invalid_argument("gauge \"" + std::string(name) +
                                "\": mode must be one of livesum, livemax, livemin, liveall, sum, "
                                "max, min, all, mostrecent, livemostrecent");
  if (value_type != ValueType::kInteger && value_type != ValueType::kDouble)
    throw std::invalid_argument("gauge \"" + std::string(name) +
                                "\": value type must be kInteger or kDouble");
  GaugeFamily f;
  f.segment_ = index_;
  f.family_ = detail::register_family(index_, name, help, shm::MetricType::kGauge, value_type, mode,
                                      label_names, unit);
  f.stamped_ = shm::is_timestamped(mode);
  f.integer_ = value_type == ValueType::kInteger;
  return f;
}

HistogramFamily Segment::histogram_family(std::string_view name, std::string_view help,
                                          const std::vector<std::string>& label_names,
                                          std::vector<double> bounds, std::string_view unit) const {
  if (bounds.empty())
    bounds = default_buckets();
  else if (bounds.back() == std::numeric_limits<double>::infinity())
    bounds.pop_back();  // +Inf is implicit, as in the Go client
  HistogramFamily f;
  f.segment_ = index_;
  f.family_ = detail::register_family(index_, name, help, shm::MetricType::kHistogram,
                                      ValueType::kDouble, shm::GaugeMode::kNone, label_names, unit, bounds);
  return f;
}

HistogramFamily Segment::summary_family(std::string_view name, std::string_view help,
                                        const std::vector<std::string>& label_names, std::string_view unit) const {
  HistogramFamily f;
  f.segment_ = index_;
  f.family_ = detail::register_family(index_, name, help, shm::MetricType::kSummary, ValueType::kDouble,
                                      shm::GaugeMode::kNone, label_names, unit);
  return f;
}

Info Segment::info(std::string_view name, std::string_view help,
                   const std::vector<std::string>& label_names) const {
  Info i;
  i.segment_ = index_;
  i.family_ = detail::register_family(index_, name, help, shm::MetricType::kInfo,
                                      ValueType::kInteger, shm::GaugeMode::kNone, label_names);
  return i;
}

Counter CounterFamily::labels(std::span<const std::string_view> values) const {
  auto cell = detail::find_or_register_series(segment_, family_, values);
  if (!cell) return Counter(detail::kDetachedSegment, segment_, is_double_);
  return Counter(segment_, *cell, is_double_);
}

Histogram HistogramFamily::labels(std::span<const std::string_view> values) const {
  auto cell = detail::find_or_register_series(segment_, family_, values);
  static constexpr double kNoBounds[detail::kBoundsPadding] = {};
  if (!cell) return Histogram(detail::kDetachedSegment, segment_, kNoBounds, 0);
  detail::ProcessSegment* seg = detail::segment_at(segment_);
  std::lock_guard lock(seg->mutex);
  const detail::LocalFamily& fam = detail::family_of(*seg, family_);
  return Histogram(segment_, *cell, fam.padded_bounds.data(), static_cast<std::uint32_t>(fam.bounds.size()));
}

Gauge GaugeFamily::labels(std::span<const std::string_view> values) const {
  auto cell = detail::find_or_register_series(segment_, family_, values);
  if (!cell) return Gauge(detail::kDetachedSegment, segment_, false, integer_);
  return Gauge(segment_, *cell, stamped_, integer_);
}

void Info::set(const std::vector<std::string_view>& values) const noexcept {
  detail::ProcessSegment* seg = detail::segment_at(segment_);
  if (seg == nullptr) return;
  // Claim the record first (it takes seg->record_mutex itself).
  if (detail::process_gauge_cells[segment_].load(std::memory_order_acquire) == nullptr &&
      detail::gauge_cells_slow(segment_, 0) == nullptr)
    return;
  try {
    std::lock_guard lock(seg->mutex);
    const detail::LocalFamily& fam = detail::family_of(*seg, family_);
    std::uint8_t* area = detail::info_area(*seg, fam.info_index);
    if (!detail::check_label_values(fam, values).empty()) {
      detail::write_info(area, nullptr);
      detail::count_event(segment_, shm::kEventInvalidUpdates);
      return;
    }
    std::string encoded = shm::encode_string_list(values);
    if (encoded.size() > seg->mapped->capacities().info_value_bytes) {
      detail::write_info(area, nullptr);
      detail::count_event(segment_, shm::kEventInfoRefused);
      return;
    }
    detail::write_info(area, &encoded);
  } catch (...) {
    detail::count_event(segment_, shm::kEventInvalidUpdates);
  }
}

void Info::clear() const noexcept {
  detail::ProcessSegment* seg = detail::segment_at(segment_);
  if (seg == nullptr) return;
  std::lock_guard lock(seg->mutex);
  if (seg->record.load(std::memory_order_acquire) < 0) return;
  detail::write_info(detail::info_area(*seg, detail::family_of(*seg, family_).info_index), nullptr);
}

}  // namespace shmetrics
