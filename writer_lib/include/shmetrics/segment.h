// Segment: one role's shared metrics segment as this process sees it, and the
// registration of metric families and their series in it.
#pragma once

#include <shmetrics/counter.h>
#include <shmetrics/gauge.h>
#include <shmetrics/histogram.h>
#include <shmetrics/readyz.h>
#include <shmetrics/shm/layout.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace shmetrics {

using shm::Capacities;
using shm::ValueType;

struct SegmentOptions {
  // The segment is the file <instance>.<role> (or `name`, when set) in
  // `directory`. An empty directory is $SHMETRICS_SEGMENT_DIR when set, else
  // /dev/shm/shmetrics-<euid>, created on first use: a directory only this
  // user can create files in, so nobody can squat the name. `name` may also be
  // an absolute path (then `directory` stays empty).
  std::string instance = "default";
  std::string role;
  std::string name;
  std::string directory;
  // Fixed when the segment is created; opening it with others fails.
  Capacities capacities{};
  // File mode at creation, set with fchmod so the umask cannot strip it.
  mode_t mode = 0600;
  // Longest wait for the registration lock (a holder stopped with SIGSTOP).
  std::chrono::milliseconds lock_timeout{1000};
};

namespace detail {

// family.labels() of std::string values through views of them, kept on the
// stack when there are no more than a family can have label names: so
// std::string values, like string_views, allocate nothing for a series already
// registered. More values than that are refused by labels()' count check.
template <typename Family>
auto labels_of_strings(const Family& family, std::span<const std::string> values) {
  if (values.size() > shm::kMaxLabels)
    return family.labels(std::vector<std::string_view>(values.begin(), values.end()));
  std::array<std::string_view, shm::kMaxLabels> views;
  std::copy(values.begin(), values.end(), views.begin());
  return family.labels(std::span<const std::string_view>(views.data(), values.size()));
}

}  // namespace detail

// A family of counter series sharing a name, help and label names.
// Thread-safe: labels() may be called from any thread.
class CounterFamily {
 public:
  // The series with these label values (a braced list, or a vector, array or
  // span of std::string_view or std::string), registered on first use; no
  // allocation for a series already registered. Throws
  // std::invalid_argument when the number of values differs from the label
  // names or a value is not valid UTF-8. When the segment has no room left the
  // handle is refused: its updates are dropped and counted, never thrown.
  Counter labels(std::span<const std::string_view> values) const;
  Counter labels(const std::vector<std::string_view>& values) const {
    return labels(std::span<const std::string_view>(values));
  }
  Counter labels(std::initializer_list<std::string_view> values) const {
    return labels(std::span<const std::string_view>(values.begin(), values.size()));
  }
  Counter labels(std::span<const std::string> values) const {
    return detail::labels_of_strings(*this, values);
  }

 private:
  friend class Segment;
  std::uint16_t segment_ = detail::kDetachedSegment;
  std::uint32_t family_ = 0;
  bool is_double_ = false;
};

// A family of gauge series; see Gauge for how processes' values combine.
// Thread-safe: labels() may be called from any thread.
class GaugeFamily {
 public:
  // As CounterFamily::labels.
  Gauge labels(std::span<const std::string_view> values) const;
  Gauge labels(const std::vector<std::string_view>& values) const {
    return labels(std::span<const std::string_view>(values));
  }
  Gauge labels(std::initializer_list<std::string_view> values) const {
    return labels(std::span<const std::string_view>(values.begin(), values.size()));
  }
  Gauge labels(std::span<const std::string> values) const {
    return detail::labels_of_strings(*this, values);
  }

 private:
  friend class Segment;
  std::uint16_t segment_ = detail::kDetachedSegment;
  std::uint32_t family_ = 0;
  bool stamped_ = false;
  bool integer_ = false;
};

// A family of histogram series sharing a name, help, label names and bucket
// bounds. Thread-safe: labels() may be called from any thread.
class HistogramFamily {
 public:
  // As CounterFamily::labels.
  Histogram labels(std::span<const std::string_view> values) const;
  Histogram labels(const std::vector<std::string_view>& values) const {
    return labels(std::span<const std::string_view>(values));
  }
  Histogram labels(std::initializer_list<std::string_view> values) const {
    return labels(std::span<const std::string_view>(values.begin(), values.size()));
  }
  Histogram labels(std::span<const std::string> values) const {
    return detail::labels_of_strings(*this, values);
  }

 private:
  friend class Segment;
  std::uint16_t segment_ = detail::kDetachedSegment;
  std::uint32_t family_ = 0;
};

// An info metric: each process holds one current value (a set of label
// values), rendered with value 1. The exporter shows every distinct value held
// by a live process, so during a rollout old and new values show side by side.
// Thread-safe.
class Info {
 public:
  // Replaces this process's value. Never throws: values of the wrong count or
  // not valid UTF-8, or too long for the segment's info_value_bytes, are
  // refused and counted, and this process's previous value is cleared so a
  // stale one never shows.
  void set(const std::vector<std::string_view>& values) const noexcept;
  void set(std::initializer_list<std::string_view> values) const noexcept {
    set(std::vector<std::string_view>(values));
  }
  // Removes this process's value.
  void clear() const noexcept;

 private:
  friend class Segment;
  std::uint16_t segment_ = detail::kDetachedSegment;
  std::uint32_t family_ = 0;
};

// One role's segment, mapped into this process for its lifetime. Cheap to
// copy: every copy refers to the same mapping. Thread-safe.
//
// Registering a name that exists (in this or any process) with the same type,
// value type, label names and gauge mode returns the same family; any other
// difference throws std::invalid_argument naming both sides. The first help
// text registered is kept.
class Segment {
 public:
  // Opens the segment, creating it when absent. Opening the same name twice
  // in one process returns the same segment. Throws shm::SegmentError when the
  // segment cannot be created, opened or trusted (another layout version or
  // other capacities), std::invalid_argument for bad options.
  static Segment open(const SegmentOptions& options);

  // Replaces the segment with a new, empty one of options.capacities: every
  // counter starts again from 0. Refuses (shm::SegmentError naming their pids)
  // while any process — this one included — holds a slot or record of it.
  static void recreate(const SegmentOptions& options);

  // Registration. Names must match [a-zA-Z_:][a-zA-Z0-9_:]* and not start with
  // "shmetrics_" (the exporter's own); counter names end in "_total"; label
  // names match [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__"; help is
  // required, valid UTF-8. A family's names in an exposition (a histogram
  // "x" also takes x_bucket, x_count, x_sum and x_created, a summary all but
  // x_bucket; a counter "x_total"
  // also x and x_created in OpenMetrics) must not be another family's. An
  // optional unit (OpenMetrics' # UNIT, e.g. "seconds") must be the name's
  // suffix: "request_seconds", "sent_bytes_total". Throws
  // std::invalid_argument, or shm::SegmentError when the segment has no room
  // for another family or its registration lock cannot be had within
  // lock_timeout.
  CounterFamily counter_family(std::string_view name, std::string_view help,
                               const std::vector<std::string>& label_names = {},
                               ValueType value_type = ValueType::kInteger,
                               std::string_view unit = {}) const;
  // Gauges hold doubles unless asked for ValueType::kInteger (see Gauge).
  GaugeFamily gauge_family(std::string_view name, std::string_view help,
                           const std::vector<std::string>& label_names, GaugeMode mode,
                           ValueType value_type = ValueType::kDouble, std::string_view unit = {}) const;
  // Bucket bounds are fixed at registration: finite, strictly increasing, at
  // most shm::kMaxBuckets (256); +Inf is implicit (a trailing +Inf is
  // dropped). None given: default_buckets(). Each series takes
  // 2 × (bounds + 1) slot cells of the segment's Capacities::cells (a count
  // and a sum per bucket, +Inf's included). Registering the
  // name again with other bounds throws.
  HistogramFamily histogram_family(std::string_view name, std::string_view help,
                                   const std::vector<std::string>& label_names = {},
                                   std::vector<double> bounds = {}, std::string_view unit = {}) const;
  // A summary: the count and sum of observations, without quantiles (as
  // prometheus_client's Summary), served as OpenMetrics' summary: x_count,
  // x_sum and x_created. Its series are histograms without buckets: observe()
  // adds one to the count and the value to the sum, under the rules of
  // histograms (one cell each, NaN dropped and counted). Each series takes 2
  // slot cells. "quantile" is not a label name it may have.
  HistogramFamily summary_family(std::string_view name, std::string_view help,
                                 const std::vector<std::string>& label_names = {}, std::string_view unit = {}) const;
  Info info(std::string_view name, std::string_view help,
            const std::vector<std::string>& label_names) const;

  // The segment's readyz recorder. `clock` must outlive every use of the
  // returned handle; tests pass one they control.
  Readyz readyz(const Clock& clock = monotonic_clock()) const;

  // Unlabelled shorthands.
  Counter counter(std::string_view name, std::string_view help,
                  ValueType value_type = ValueType::kInteger) const {
    return counter_family(name, help, {}, value_type).labels({});
  }
  Gauge gauge(std::string_view name, std::string_view help, GaugeMode mode,
              ValueType value_type = ValueType::kDouble) const {
    return gauge_family(name, help, {}, mode, value_type).labels({});
  }
  Histogram histogram(std::string_view name, std::string_view help, std::vector<double> bounds = {},
                      std::string_view unit = {}) const {
    return histogram_family(name, help, {}, std::move(bounds), unit).labels({});
  }

  // The segment file's path.
  const std::string& path() const;
  // The descriptor this process keeps of the segment for its life;
  // in-process readers reuse it.
  int fd() const;

 private:
  explicit Segment(std::uint16_t index) : index_(index) {}
  std::uint16_t index_;
};

}  // namespace shmetrics
