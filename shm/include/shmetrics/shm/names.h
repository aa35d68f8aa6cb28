// Validation of the names and texts a writer hands to the store, so bad
// input is refused at registration time instead of corrupting a scrape.
#pragma once

#include <shmetrics/shm/layout.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace shmetrics::shm {

// Each check_* returns "" when the input is valid, otherwise one line saying
// what was wrong and what was expected.

/// Checks a Prometheus metric name: non-empty and matching
/// [a-zA-Z_:][a-zA-Z0-9_:]*.
std::string check_metric_name(std::string_view name);

/// Checks a Prometheus label name: non-empty, matching [a-zA-Z_][a-zA-Z0-9_]*,
/// and not starting with "__" (that prefix is reserved by Prometheus).
std::string check_label_name(std::string_view name);

/// Checks that `text` is valid UTF-8 (see is_valid_utf8). `what` describes
/// the text for the message, e.g. `label value for "etag"`.
std::string check_utf8(std::string_view text, std::string_view what);

/// True when `text` is strictly valid UTF-8: no overlong encodings, no
/// surrogates (U+D800..U+DFFF), no code points above U+10FFFF and no
/// truncated sequences. NUL bytes are valid.
bool is_valid_utf8(std::string_view text) noexcept;

/// Quotes `text` for an error message: wraps it in double quotes, escapes
/// `"` and `\` with a backslash and every non-printable or non-ASCII byte as
/// \xHH, so the result is printable ASCII. Only the first `max_bytes` bytes
/// of input are shown; when more exist, "..." follows the closing quote.
std::string printable(std::string_view text, std::size_t max_bytes = 64);

// True for names the exporter renders itself: "shmetrics_*" (its own metrics)
// and every name the readyz families it computes from readyz samples take in
// either format (readyz_checks_total and its OpenMetrics family readyz_checks,
// ...), and the exporter's own process metrics (process_cpu_seconds_total,
// process_resident_memory_bytes, ...). Writers cannot register them, and a
// segment claiming them is not trusted.
bool is_reserved_metric_name(std::string_view name) noexcept;

/// The names a family takes in an exposition: its samples' names in either
/// format and its OpenMetrics family name. Counter "x_total": x_total,
/// x_created and x; histogram "x": x, x_bucket, x_count, x_sum and x_created;
/// info "x_info": x_info and x (info "x": x and x_info); gauge "x": x. Two
/// families whose names overlap cannot be exposed together: registration
/// refuses the second and the exporter leaves it out.
std::vector<std::string> exposition_names(MetricType type, std::string_view name);

/// Checks a family's definition as a writer registers it, before anything is
/// written: its name (valid, at most kMaxNameBytes, none of its exposition
/// names reserved; a counter's ending in "_total"; a histogram's not ending in
/// a suffix its samples add), its help text (present, at most kMaxHelpBytes,
/// UTF-8), its label names (at most kMaxLabels, each valid, at most
/// kMaxNameBytes and distinct; "pid" is the liveall and all gauges' own, "le"
/// the histograms'), its unit (empty, or [a-zA-Z0-9_]+ that the name ends in
/// as "_<unit>", before "_total" for counters; info metrics have none) and its
/// bucket bounds (histograms only: at most kMaxBuckets, finite, strictly
/// increasing).
std::string check_family_definition(std::string_view name, std::string_view help, MetricType type,
                                    GaugeMode mode, const std::vector<std::string>& label_names,
                                    std::string_view unit = {}, const std::vector<double>& bounds = {});

}  // namespace shmetrics::shm
