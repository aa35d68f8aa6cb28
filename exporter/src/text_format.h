// Building blocks of the Prometheus text exposition format 0.0.4. Each
// function appends to `out` in place, so a whole scrape is built in one
// buffer without temporary strings.
#pragma once

#include "negotiation.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace shmetrics::exporter {

/// Appends a label value escaped for use between double quotes:
/// `\` as `\\`, `"` as `\"` and newline as `\n`.
void append_escaped_label_value(std::string& out, std::string_view value);

/// Appends HELP text escaped as the format requires: `\` as `\\` and
/// newline as `\n`. Double quotes stay as they are.
void append_escaped_help(std::string& out, std::string_view help);

/// Appends a family's metadata, "# HELP F HELP\n# TYPE F TYPE\n", HELP
/// already escaped. F is `name`, the name its samples take, except for a
/// counter in OpenMetrics: without its "_total" there (the samples keep it).
void append_family_head(std::string& out, Format format, std::string_view name, std::string_view type,
                        std::string_view help);

/// Appends `value` in exact decimal.
void append_uint(std::string& out, std::uint64_t value);
void append_int(std::string& out, std::int64_t value);

/// Appends `value` in its shortest form that parses back to the same double
/// (1.0 as "1", 0.1 as "0.1", 1e300 as "1e+300"); NaN as "NaN", infinities
/// as "+Inf" and "-Inf", negative zero as "-0".
void append_double(std::string& out, double value);

/// Appends `value` as Go's strconv.FormatFloat(value, 'g', -1, 64) does, as
/// the Go client writes histogram bounds: the shortest digits that parse back,
/// in exponent form when the exponent is below -4 or at least 6 ("0.005",
/// "100000", "1e+06", "2.5e-05"); NaN, +Inf, -Inf as append_double.
void append_go_double(std::string& out, double value);

}  // namespace shmetrics::exporter
