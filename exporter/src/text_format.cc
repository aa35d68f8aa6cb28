#include "text_format.h"

#include <charconv>
#include <cmath>
#include <limits>

namespace shmetrics::exporter {
namespace {

// Appends `text` with each byte listed in `specials` replaced by its escape.
// Runs between special bytes are copied with a single append.
void append_escaped(std::string& out, std::string_view text, std::string_view specials) {
    for (;;) {
        const std::size_t pos = text.find_first_of(specials);
        out.append(text.substr(0, pos));
        if (pos == std::string_view::npos) {
            return;
        }
        switch (text[pos]) {
            case '\\': out += "\\\\"; break;
            case '"': out += "\\\""; break;
            case '\n': out += "\\n"; break;
        }
        text.remove_prefix(pos + 1);
    }
}

}  // namespace

void append_escaped_label_value(std::string& out, std::string_view value) {
    append_escaped(out, value, "\\\"\n");
}

void append_escaped_help(std::string& out, std::string_view help) {
    append_escaped(out, help, "\\\n");
}

void append_family_head(std::string& out, Format format, std::string_view name, std::string_view type,
                        std::string_view help) {
    std::string_view family = name;
    if (format == Format::kOpenMetrics && type == "counter" && family.ends_with("_total")) family.remove_suffix(6);
    out.append("# HELP ").append(family).append(" ").append(help);
    out.append("\n# TYPE ").append(family).append(" ").append(type).append("\n");
}

namespace {

// Formats straight into the string's tail (one resize, no copy from a stack
// buffer): the scrape's output is reserved, so this never reallocates.
template <typename Int>
void append_integer(std::string& out, Int value) {
    constexpr std::size_t kMaxChars = std::numeric_limits<Int>::digits10 + 2;
    const std::size_t at = out.size();
    out.resize(at + kMaxChars);
    const auto result = std::to_chars(out.data() + at, out.data() + at + kMaxChars, value);
    out.resize(static_cast<std::size_t>(result.ptr - out.data()));
}

}  // namespace

void append_uint(std::string& out, std::uint64_t value) { append_integer(out, value); }

void append_int(std::string& out, std::int64_t value) { append_integer(out, value); }

void append_double(std::string& out, double value) {
    // to_chars would write "nan" and "inf"; Prometheus spells them this way.
    if (std::isnan(value)) {
        out += "NaN";
        return;
    }
    if (std::isinf(value)) {
        out += value > 0 ? "+Inf" : "-Inf";
        return;
    }
    // The longest shortest form is 24 chars, e.g. "-2.2250738585072014e-308".
    char buffer[32];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    out.append(buffer, result.ptr);
}

void append_go_double(std::string& out, double value) {
    if (!std::isfinite(value)) return append_double(out, value);
    char buffer[32];
    const auto sci = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
    const std::string_view text(buffer, static_cast<std::size_t>(sci.ptr - buffer));
    int exponent = 0;
    const std::string_view digits = text.substr(text.find('e') + 1);
    std::from_chars(digits.data() + (digits.front() == '+' ? 1 : 0), digits.data() + digits.size(), exponent);
    if (exponent < -4 || exponent >= 6) {
        out += text;  // d.ddde±XX: the exponent has at least two digits, as in Go
        return;
    }
    const auto fixed = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::fixed);
    out.append(buffer, fixed.ptr);
}

}  // namespace shmetrics::exporter
