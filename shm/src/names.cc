#include "shmetrics/shm/names.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace shmetrics::shm {
namespace {

constexpr char hex_digits[] = "0123456789abcdef";

void append_hex_byte(std::string& out, unsigned char byte) {
    out += hex_digits[byte >> 4];
    out += hex_digits[byte & 0xf];
}

// Plain comparisons instead of <cctype>, whose answers depend on the locale.
bool is_letter(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

bool is_metric_name_char(char c, bool first) noexcept {
    return is_letter(c) || c == '_' || c == ':' || (!first && is_digit(c));
}

bool is_label_name_char(char c, bool first) noexcept {
    return is_letter(c) || c == '_' || (!first && is_digit(c));
}

template <typename CharTest>
bool matches(std::string_view name, CharTest is_name_char) noexcept {
    if (name.empty()) {
        return false;
    }
    for (std::size_t i = 0; i < name.size(); ++i) {
        if (!is_name_char(name[i], i == 0)) {
            return false;
        }
    }
    return true;
}

// What a lead byte allows, from Unicode Table 3-7 (well-formed UTF-8). The
// narrowed second-byte ranges are what exclude overlong forms (E0, F0),
// surrogates (ED) and code points above U+10FFFF (F4).
struct LeadByte {
    std::size_t length;  // 0 when the byte cannot start a sequence
    unsigned char second_min;
    unsigned char second_max;
};

constexpr LeadByte lead_byte(unsigned char b) noexcept {
    if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
    if (b == 0xE0) return {3, 0xA0, 0xBF};
    if (b == 0xED) return {3, 0x80, 0x9F};
    if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
    if (b == 0xF0) return {4, 0x90, 0xBF};
    if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
    if (b == 0xF4) return {4, 0x80, 0x8F};
    return {0, 0, 0};  // continuation bytes, C0, C1, F5..FF
}

struct Utf8Error {
    // Offset of the first byte that cannot belong to a well-formed sequence,
    // or of the lead byte of a sequence cut short by the end of the text.
    // npos when the text is valid.
    std::size_t offset;
    bool truncated;
};

Utf8Error find_utf8_error(std::string_view text) noexcept {
    const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t size = text.size();
    std::size_t i = 0;
    while (i < size) {
        // Label values are mostly ASCII: skip 8 bytes at a time while none
        // has its high bit set. memcpy keeps the unaligned load well-defined.
        while (i + 8 <= size) {
            std::uint64_t word;
            std::memcpy(&word, bytes + i, sizeof word);
            if ((word & 0x8080808080808080u) != 0) {
                break;
            }
            i += 8;
        }
        if (i == size) {
            break;
        }
        if (bytes[i] < 0x80) {
            ++i;
            continue;
        }
        const LeadByte lead = lead_byte(bytes[i]);
        if (lead.length == 0) {
            return {i, false};
        }
        for (std::size_t k = 1; k < lead.length; ++k) {
            if (i + k == size) {
                return {i, true};
            }
            const unsigned char b = bytes[i + k];
            const unsigned char min = k == 1 ? lead.second_min : 0x80;
            const unsigned char max = k == 1 ? lead.second_max : 0xBF;
            if (b < min || b > max) {
                return {i + k, false};
            }
        }
        i += lead.length;
    }
    return {std::string_view::npos, false};
}

}  // namespace

std::string check_metric_name(std::string_view name) {
    if (matches(name, is_metric_name_char)) {
        return {};
    }
    return "metric name " + printable(name) +
           " is invalid: must match [a-zA-Z_:][a-zA-Z0-9_:]*";
}

std::string check_label_name(std::string_view name) {
    if (!matches(name, is_label_name_char)) {
        return "label name " + printable(name) +
               " is invalid: must match [a-zA-Z_][a-zA-Z0-9_]*";
    }
    if (name.starts_with("__")) {
        return "label name " + printable(name) +
               " is invalid: names starting with \"__\" are reserved";
    }
    return {};
}

std::string check_utf8(std::string_view text, std::string_view what) {
    const Utf8Error error = find_utf8_error(text);
    if (error.offset == std::string_view::npos) {
        return {};
    }
    std::string message(what);
    message += ' ';
    message += printable(text);
    message += " is not valid UTF-8: ";
    if (error.truncated) {
        message += "truncated sequence at offset ";
    } else {
        message += "invalid byte 0x";
        append_hex_byte(message, static_cast<unsigned char>(text[error.offset]));
        message += " at offset ";
    }
    message += std::to_string(error.offset);
    return message;
}

bool is_valid_utf8(std::string_view text) noexcept {
    return find_utf8_error(text).offset == std::string_view::npos;
}

std::string printable(std::string_view text, std::size_t max_bytes) {
    const std::string_view shown = text.substr(0, max_bytes);
    std::string out;
    out.reserve(shown.size() + 5);
    out += '"';
    for (const char c : shown) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (byte >= 0x20 && byte < 0x7f) {
            out += c;
        } else {
            out += "\\x";
            append_hex_byte(out, byte);
        }
    }
    out += '"';
    if (shown.size() < text.size()) {
        out += "...";
    }
    return out;
}

bool is_reserved_metric_name(std::string_view name) noexcept {
  // The readyz families' names in either format (exposition_names of the
  // counters readyz_checks_total and readyz_failures_total, and the gauges).
  for (std::string_view counter : {"readyz_checks", "readyz_failures"}) {
    if (!name.starts_with(counter)) continue;
    std::string_view rest = name.substr(counter.size());
    if (rest.empty() || rest == "_total" || rest == "_created") return true;
  }
  // The exporter's own process metrics (client_golang's names).
  if (name == "process_cpu_seconds" || name == "process_cpu_seconds_total" || name == "process_cpu_seconds_created" ||
      name == "process_resident_memory_bytes" || name == "process_virtual_memory_bytes" ||
      name == "process_start_time_seconds" || name == "process_open_fds" || name == "process_max_fds")
    return true;
  return name.starts_with("shmetrics_") || name == "readyz_success_ratio_1m" ||
         name == "readyz_success_ratio_5m" || name == "readyz_status";
}

}  // namespace shmetrics::shm

namespace shmetrics::shm {

namespace {

std::string shortest(double v) {
    char buffer[32];
    return std::string(buffer, std::to_chars(buffer, buffer + sizeof buffer, v).ptr);
}

std::string too_many_bytes(std::string_view what, std::string_view text, std::size_t limit) {
    return std::string(what) + " \"" + std::string(text.substr(0, 64)) + "...\" is " +
           std::to_string(text.size()) + " bytes, more than the " + std::to_string(limit) + " allowed";
}

}  // namespace

std::vector<std::string> exposition_names(MetricType type, std::string_view name) {
    const std::string n(name);
    switch (type) {
        case MetricType::kCounter:
            if (name.ends_with("_total")) {
                const std::string base(name.substr(0, name.size() - 6));
                return {n, base + "_created", base};
            }
            return {n};
        case MetricType::kHistogram:
            return {n, n + "_bucket", n + "_count", n + "_sum", n + "_created"};
        case MetricType::kSummary:
            return {n, n + "_count", n + "_sum", n + "_created"};
        case MetricType::kInfo:
            if (name.ends_with("_info")) return {n, std::string(name.substr(0, name.size() - 5))};
            return {n, n + "_info"};
        case MetricType::kGauge:
            break;
    }
    return {n};
}

std::string check_family_definition(std::string_view name, std::string_view help, MetricType type,
                                    GaugeMode mode, const std::vector<std::string>& label_names,
                                    std::string_view unit, const std::vector<double>& bounds) {
    if (std::string err = check_metric_name(name); !err.empty()) return err;
    if (name.size() > kMaxNameBytes) return too_many_bytes("metric name", name, kMaxNameBytes);
    const std::string quoted = "\"" + std::string(name) + "\"";
    for (const std::string& taken : exposition_names(type, name)) {
        if (!is_reserved_metric_name(taken)) continue;
        return "metric name " + quoted + " is reserved" +
               (taken == name ? std::string() : " (its samples or family would be named \"" + taken + "\")") + ": " +
               (taken.starts_with("shmetrics_")
                    ? "names starting with \"shmetrics_\" are the exporter's own"
                    : taken.starts_with("process_")
                          ? "the exporter shows its own process metrics under these names"
                          : "the exporter computes the readyz families from readyz samples (use Segment::readyz())");
    }
    if (type == MetricType::kCounter && !name.ends_with("_total"))
        return "counter name " + quoted + " is invalid: counter names must end in \"_total\"";
    if (type == MetricType::kHistogram || type == MetricType::kSummary) {
        const bool histogram = type == MetricType::kHistogram;
        for (std::string_view suffix : {"_bucket", "_count", "_sum", "_total", "_created"})
            if (name.ends_with(suffix))
                return std::string(histogram ? "histogram" : "summary") + " name " + quoted +
                       " is invalid: it must not end in \"" + std::string(suffix) + "\" (a " +
                       (histogram ? "histogram's samples add _bucket, _count" : "summary's samples add _count") +
                       ", _sum and _created to its name)";
    }
    if (!unit.empty()) {
        bool valid = unit.size() <= kMaxNameBytes;
        for (char c : unit) valid = valid && (is_letter(c) || is_digit(c) || c == '_');
        if (!valid)
            return "unit " + printable(unit) + " of metric " + quoted +
                   " is invalid: must be 1-" + std::to_string(kMaxNameBytes) + " characters of [a-zA-Z0-9_]";
        if (type == MetricType::kInfo)
            return "info metric " + quoted + " has unit \"" + std::string(unit) +
                   "\": info metrics have no unit (OpenMetrics)";
        std::string_view stem = name;
        if (type == MetricType::kCounter) stem.remove_suffix(6);  // "_total", checked above
        if (!stem.ends_with("_" + std::string(unit)))
            return "metric " + quoted + " has unit \"" + std::string(unit) + "\" but its name does not end in \"_" +
                   std::string(unit) + (type == MetricType::kCounter ? "_total" : "") +
                   "\": OpenMetrics requires the unit as the name's suffix";
    }
    if (type != MetricType::kHistogram && !bounds.empty())
        return "metric " + quoted + " has bucket bounds: only histograms have buckets";
    if (bounds.size() > kMaxBuckets)
        return "histogram " + quoted + " has " + std::to_string(bounds.size()) + " bucket bounds, more than the " +
               std::to_string(kMaxBuckets) + " allowed";
    for (std::size_t i = 0; i < bounds.size(); ++i) {
        if (!std::isfinite(bounds[i]))
            return "bucket bound " + std::to_string(i) + " of histogram " + quoted + " is " +
                   (std::isnan(bounds[i]) ? "NaN" : "infinite") +
                   ": bounds must be finite (+Inf is implicit and may only be the last)";
        if (i > 0 && !(bounds[i - 1] < bounds[i]))
            return "bucket bounds of histogram " + quoted + " are not strictly increasing: bound " +
                   std::to_string(i) + " (" + shortest(bounds[i]) + ") follows " + shortest(bounds[i - 1]);
    }
    if (help.empty()) return "metric " + quoted + " has no help text: help is required";
    if (help.size() > kMaxHelpBytes)
        return "help text of " + quoted + " is " + std::to_string(help.size()) + " bytes, more than the " +
               std::to_string(kMaxHelpBytes) + " allowed";
    if (std::string err = check_utf8(help, "help text of " + quoted); !err.empty()) return err;
    if (label_names.size() > kMaxLabels)
        return "metric " + quoted + " has " + std::to_string(label_names.size()) +
               " label names, more than the " + std::to_string(kMaxLabels) + " allowed";
    for (std::size_t i = 0; i < label_names.size(); ++i) {
        const std::string& label = label_names[i];
        if (std::string err = check_label_name(label); !err.empty()) return err;
        if (label.size() > kMaxNameBytes) return too_many_bytes("label name", label, kMaxNameBytes);
        if ((mode == GaugeMode::kLiveAll || mode == GaugeMode::kAll) && label == "pid")
            return "label name \"pid\" of gauge " + quoted +
                   " is reserved: liveall and all gauges add a pid label themselves";
        if (type == MetricType::kHistogram && label == "le")
            return "label name \"le\" of histogram " + quoted +
                   " is reserved: a histogram's _bucket samples add it themselves";
        if (type == MetricType::kSummary && label == "quantile")
            return "label name \"quantile\" of summary " + quoted +
                   " is reserved: OpenMetrics gives it to a summary's quantile samples";
        for (std::size_t j = 0; j < i; ++j)
            if (label_names[j] == label)
                return "label name \"" + label + "\" appears twice in metric " + quoted +
                       ": label names must be distinct";
    }
    return {};
}

}  // namespace shmetrics::shm
