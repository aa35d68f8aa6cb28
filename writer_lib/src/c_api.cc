// The C API (shmetrics/shmetrics_c.h) over the C++ one: each C handle holds
// the C++ handle's bytes and a tag, so a handle no call filled in is told
// from a real one; every exception stops here as a status and a message.
#include <shmetrics/shmetrics.h>
#include <shmetrics/shmetrics_c.h>
#include <shmetrics/shm/segment_file.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using namespace shmetrics;

thread_local std::string last_error;

// shmetrics_capacities is Capacities, field for field: copied as bytes.
#define SHMETRICS_SAME_FIELD(f) \
  static_assert(offsetof(shmetrics_capacities, f) == offsetof(Capacities, f) && \
                sizeof(shmetrics_capacities::f) == sizeof(Capacities::f))
SHMETRICS_SAME_FIELD(thread_slots);
SHMETRICS_SAME_FIELD(process_records);
SHMETRICS_SAME_FIELD(families);
SHMETRICS_SAME_FIELD(series);
SHMETRICS_SAME_FIELD(string_bytes);
SHMETRICS_SAME_FIELD(info_families);
SHMETRICS_SAME_FIELD(info_value_bytes);
SHMETRICS_SAME_FIELD(readyz_short_window_seconds);
SHMETRICS_SAME_FIELD(readyz_long_window_seconds);
SHMETRICS_SAME_FIELD(gauge_series);
SHMETRICS_SAME_FIELD(cell_pages);
SHMETRICS_SAME_FIELD(cells);
#undef SHMETRICS_SAME_FIELD
static_assert(sizeof(shmetrics_capacities) == sizeof(Capacities), "every field of Capacities is in the C struct");
static_assert(std::is_trivially_copyable_v<Capacities>);

constexpr std::uint64_t kTag = 0x73686d6574726963;  // "shmetric": a handle a call filled in

// C++ handle T in C handle C: its bytes in words 0-2, the tag in word 3.
template <typename C, typename T>
void put(C* out, const T& value) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 3 * sizeof(std::uint64_t));
  std::memset(out->opaque_, 0, sizeof out->opaque_);
  std::memcpy(out->opaque_, &value, sizeof(T));
  out->opaque_[3] = kTag;
}

// The C++ handle of `in`; a default (detached) one when no call filled it in.
template <typename T, typename C>
T get(const C& in) {
  T value{};
  if (in.opaque_[3] == kTag) std::memcpy(&value, in.opaque_, sizeof(T));
  return value;
}

template <typename C>
bool filled(const C& in) {
  return in.opaque_[3] == kTag;
}

shmetrics_status fail(shmetrics_status status, std::string message) {
  try {
    last_error = std::move(message);
  } catch (...) {
    // No room even for the message: the status still tells.
  }
  return status;
}

// Runs `body`, turning what it throws into a status and this thread's message.
template <typename Body>
shmetrics_status guarded(const char* call, Body body) noexcept {
  try {
    body();
    return SHMETRICS_OK;
  } catch (const std::invalid_argument& e) {
    return fail(SHMETRICS_ERR_INVALID, std::string(call) + ": " + e.what());
  } catch (const shm::SegmentError& e) {
    return fail(SHMETRICS_ERR_SEGMENT, std::string(call) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return fail(SHMETRICS_ERR_MEMORY, std::string(call) + ": out of memory");
  } catch (const std::exception& e) {
    return fail(SHMETRICS_ERR_INTERNAL, std::string(call) + ": " + e.what());
  } catch (...) {
    return fail(SHMETRICS_ERR_INTERNAL, std::string(call) + ": an unknown exception");
  }
}

// `count` strings of `items`, each checked not null.
template <typename String>
std::vector<String> strings(const char* what, const char* const* items, std::size_t count) {
  if (count > 0 && items == nullptr)
    throw std::invalid_argument(std::string(what) + " is NULL but its count is " + std::to_string(count) +
                                ": expected an array of that many strings");
  std::vector<String> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    if (items[i] == nullptr)
      throw std::invalid_argument(std::string(what) + "[" + std::to_string(i) + "] is NULL: expected a string");
    out.emplace_back(items[i]);
  }
  return out;
}

std::string_view text(const char* what, const char* s) {
  if (s == nullptr) throw std::invalid_argument(std::string(what) + " is NULL: expected a string");
  return s;
}

// A Segment has no default (detached) value: its bytes, when a call filled them in.
Segment segment_of(shmetrics_segment s) {
  if (!filled(s))
    throw std::invalid_argument("the segment handle was not given by a successful shmetrics_open");
  std::array<unsigned char, sizeof(Segment)> bytes;
  std::memcpy(bytes.data(), s.opaque_, sizeof(Segment));
  return std::bit_cast<Segment>(bytes);
}

template <typename C>
void check_out(C* out) {
  if (out == nullptr) throw std::invalid_argument("out is NULL: expected where to put the handle");
}

ValueType value_type_of(shmetrics_value_type t) {
  if (t == SHMETRICS_INTEGER) return ValueType::kInteger;
  if (t == SHMETRICS_DOUBLE) return ValueType::kDouble;
  throw std::invalid_argument("value_type " + std::to_string(static_cast<int>(t)) +
                              " is invalid: expected SHMETRICS_INTEGER (1) or SHMETRICS_DOUBLE (2)");
}

GaugeMode mode_of(const char* mode) { return gauge_mode_from_name(text("mode", mode)); }

std::string_view unit_of(const char* unit) { return unit == nullptr ? std::string_view() : std::string_view(unit); }

}  // namespace

extern "C" {

const char* shmetrics_last_error(void) { return last_error.c_str(); }

void shmetrics_options_init(shmetrics_options* o) {
  if (o == nullptr) return;
  const SegmentOptions defaults;
  *o = shmetrics_options{};
  o->instance = "default";
  o->capacities = std::bit_cast<shmetrics_capacities>(defaults.capacities);
  o->mode = static_cast<std::uint32_t>(defaults.mode);
  o->lock_timeout_ms = static_cast<std::uint32_t>(defaults.lock_timeout.count());
}

shmetrics_status shmetrics_open(const shmetrics_options* o, shmetrics_segment* out) {
  if (out != nullptr) std::memset(out->opaque_, 0, sizeof out->opaque_);
  return guarded("shmetrics_open", [&] {
    if (o == nullptr) throw std::invalid_argument("options is NULL: expected options from shmetrics_options_init");
    check_out(out);
    SegmentOptions options;
    if (o->instance != nullptr) options.instance = o->instance;
    if (o->role != nullptr) options.role = o->role;
    if (o->name != nullptr) options.name = o->name;
    if (o->directory != nullptr) options.directory = o->directory;
    options.capacities = std::bit_cast<Capacities>(o->capacities);
    options.mode = static_cast<mode_t>(o->mode);
    options.lock_timeout = std::chrono::milliseconds(o->lock_timeout_ms);
    put(out, Segment::open(options));
  });
}

const char* shmetrics_segment_path(shmetrics_segment s) {
  if (!filled(s)) return "";
  try {
    return segment_of(s).path().c_str();
  } catch (...) {
    return "";
  }
}

shmetrics_status shmetrics_counter_family_register(shmetrics_segment s, const char* name, const char* help,
                                                   const char* const* label_names, size_t label_count,
                                                   shmetrics_value_type value_type, const char* unit,
                                                   shmetrics_counter_family* out) {
  if (out != nullptr) put(out, CounterFamily{});
  return guarded("shmetrics_counter_family_register", [&] {
    check_out(out);
    put(out, segment_of(s).counter_family(text("name", name), text("help", help),
                                          strings<std::string>("label_names", label_names, label_count),
                                          value_type_of(value_type), unit_of(unit)));
  });
}

shmetrics_status shmetrics_gauge_family_register(shmetrics_segment s, const char* name, const char* help,
                                                 const char* const* label_names, size_t label_count,
                                                 const char* mode, shmetrics_value_type value_type,
                                                 const char* unit, shmetrics_gauge_family* out) {
  if (out != nullptr) put(out, GaugeFamily{});
  return guarded("shmetrics_gauge_family_register", [&] {
    check_out(out);
    put(out, segment_of(s).gauge_family(text("name", name), text("help", help),
                                        strings<std::string>("label_names", label_names, label_count),
                                        mode_of(mode), value_type_of(value_type), unit_of(unit)));
  });
}

shmetrics_status shmetrics_histogram_family_register(shmetrics_segment s, const char* name, const char* help,
                                                     const char* const* label_names, size_t label_count,
                                                     const double* bounds, size_t bound_count, const char* unit,
                                                     shmetrics_histogram_family* out) {
  if (out != nullptr) put(out, HistogramFamily{});
  return guarded("shmetrics_histogram_family_register", [&] {
    check_out(out);
    if (bound_count > 0 && bounds == nullptr)
      throw std::invalid_argument("bounds is NULL but bound_count is " + std::to_string(bound_count) +
                                  ": expected that many bounds, or 0 for the default buckets");
    std::vector<double> b(bounds, bounds + bound_count);
    put(out, segment_of(s).histogram_family(text("name", name), text("help", help),
                                            strings<std::string>("label_names", label_names, label_count),
                                            std::move(b), unit_of(unit)));
  });
}

shmetrics_status shmetrics_info_register(shmetrics_segment s, const char* name, const char* help,
                                         const char* const* label_names, size_t label_count, shmetrics_info* out) {
  if (out != nullptr) put(out, Info{});
  return guarded("shmetrics_info_register", [&] {
    check_out(out);
    put(out, segment_of(s).info(text("name", name), text("help", help),
                                strings<std::string>("label_names", label_names, label_count)));
  });
}

shmetrics_status shmetrics_readyz_get(shmetrics_segment s, shmetrics_readyz* out) {
  if (out != nullptr) put(out, Readyz{});
  return guarded("shmetrics_readyz_get", [&] {
    check_out(out);
    put(out, segment_of(s).readyz());
  });
}

}  // extern "C"

namespace {

// The series of `values` in the family of C handle `f` (C++ family Family,
// whose labels() gives Handle), into `out`.
template <typename Family, typename Handle, typename CFamily, typename CHandle>
shmetrics_status labels_of(const char* call, const CFamily& f, const char* const* values, size_t count,
                           CHandle* out) {
  if (out != nullptr) put(out, Handle{});
  return guarded(call, [&] {
    check_out(out);
    if (!filled(f)) throw std::invalid_argument("the family was not given by a successful registration");
    put(out, get<Family>(f).labels(strings<std::string_view>("values", values, count)));
  });
}

}  // namespace

extern "C" {

shmetrics_status shmetrics_counter_labels(shmetrics_counter_family f, const char* const* values, size_t count,
                                          shmetrics_counter* out) {
  return labels_of<CounterFamily, Counter>("shmetrics_counter_labels", f, values, count, out);
}
shmetrics_status shmetrics_gauge_labels(shmetrics_gauge_family f, const char* const* values, size_t count,
                                        shmetrics_gauge* out) {
  return labels_of<GaugeFamily, Gauge>("shmetrics_gauge_labels", f, values, count, out);
}
shmetrics_status shmetrics_histogram_labels(shmetrics_histogram_family f, const char* const* values, size_t count,
                                            shmetrics_histogram* out) {
  return labels_of<HistogramFamily, Histogram>("shmetrics_histogram_labels", f, values, count, out);
}

int shmetrics_counter_attached(shmetrics_counter c) { return get<Counter>(c).attached() ? 1 : 0; }
int shmetrics_gauge_attached(shmetrics_gauge g) { return get<Gauge>(g).attached() ? 1 : 0; }
int shmetrics_histogram_attached(shmetrics_histogram h) { return get<Histogram>(h).attached() ? 1 : 0; }

void shmetrics_counter_inc(shmetrics_counter c, uint64_t n) { get<Counter>(c).inc(n); }
void shmetrics_counter_add(shmetrics_counter c, double v) { get<Counter>(c).inc(v); }
void shmetrics_gauge_set(shmetrics_gauge g, double v) { get<Gauge>(g).set(v); }
void shmetrics_gauge_add(shmetrics_gauge g, double delta) {
  if (delta < 0) get<Gauge>(g).dec(-delta);
  else get<Gauge>(g).inc(delta);
}
void shmetrics_gauge_set_int(shmetrics_gauge g, int64_t v) { get<Gauge>(g).set(v); }
void shmetrics_gauge_add_int(shmetrics_gauge g, int64_t delta) { get<Gauge>(g).inc(delta); }
void shmetrics_gauge_set_to_current_time(shmetrics_gauge g) { get<Gauge>(g).set_to_current_time(); }
void shmetrics_histogram_observe(shmetrics_histogram h, double v) { get<Histogram>(h).observe(v); }

void shmetrics_info_set(shmetrics_info info, const char* const* values, size_t count) {
  const Info i = get<Info>(info);
  std::vector<std::string_view> v;
  try {
    v = strings<std::string_view>("values", values, count);
  } catch (...) {
    v.assign(count + 1, std::string_view());  // the wrong count: refused, counted, the old value cleared
  }
  i.set(v);
}
void shmetrics_info_clear(shmetrics_info info) { get<Info>(info).clear(); }
void shmetrics_readyz_observe(shmetrics_readyz r, int ok) { get<Readyz>(r).observe(ok != 0); }

}  // extern "C"
