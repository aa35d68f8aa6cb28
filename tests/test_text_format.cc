#include "text_format.h"

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>

using shmetrics::exporter::append_double;
using shmetrics::exporter::append_escaped_help;
using shmetrics::exporter::append_escaped_label_value;
using shmetrics::exporter::append_uint;

namespace {

std::string label_value(std::string_view value) {
    std::string out;
    append_escaped_label_value(out, value);
    return out;
}

std::string help(std::string_view text) {
    std::string out;
    append_escaped_help(out, text);
    return out;
}

std::string format_double(double value) {
    std::string out;
    append_double(out, value);
    return out;
}

std::string format_uint(std::uint64_t value) {
    std::string out;
    append_uint(out, value);
    return out;
}

}  // namespace

// --- escaping ---

TEST_CASE("label_value_without_specials_is_unchanged") {
    CHECK(label_value("") == "");
    CHECK(label_value("GET /index.html") == "GET /index.html");
    CHECK(label_value("caf\xc3\xa9\ttab") == "caf\xc3\xa9\ttab");
}

TEST_CASE("label_value_escapes_backslash") {
    CHECK(label_value(R"(C:\dir)") == R"(C:\\dir)");
}

TEST_CASE("label_value_escapes_double_quote") {
    CHECK(label_value(R"(say "hi")") == R"(say \"hi\")");
}

TEST_CASE("label_value_escapes_newline") {
    CHECK(label_value("line1\nline2") == R"(line1\nline2)");
}

TEST_CASE("label_value_escapes_combinations_and_adjacent_specials") {
    CHECK(label_value("\\\"\n") == R"(\\\"\n)");
    CHECK(label_value("\\n") == R"(\\n)");  // a literal backslash-n stays distinguishable
    CHECK(label_value("\n\n") == R"(\n\n)");
    CHECK(label_value("a\"b\\c\nd") == R"(a\"b\\c\nd)");
}

TEST_CASE("help_escapes_backslash_and_newline") {
    CHECK(help("a\\b\nc") == R"(a\\b\nc)");
}

TEST_CASE("help_leaves_double_quotes_alone") {
    CHECK(help(R"(counts "GET" requests)") == R"(counts "GET" requests)");
}

TEST_CASE("escaping_appends_to_existing_content") {
    std::string out = "name{l=\"";
    append_escaped_label_value(out, "a\"b");
    out += "\"} ";
    append_uint(out, 7);
    CHECK(out == R"(name{l="a\"b"} 7)");
}

// --- numbers ---

TEST_CASE("uint_is_exact_decimal") {
    CHECK(format_uint(0) == "0");
    CHECK(format_uint(42) == "42");
    CHECK(format_uint(std::numeric_limits<std::uint64_t>::max()) == "18446744073709551615");
}

TEST_CASE("double_uses_shortest_form") {
    CHECK(format_double(0.0) == "0");
    CHECK(format_double(1.0) == "1");
    CHECK(format_double(0.1) == "0.1");
    CHECK(format_double(1e-7) == "1e-07");
    CHECK(format_double(1e300) == "1e+300");
    CHECK(format_double(123456789.125) == "123456789.125");
    CHECK(format_double(9007199254740992.0) == "9007199254740992");  // 2^53
}

TEST_CASE("double_keeps_sign_of_negative_zero") {
    CHECK(format_double(-0.0) == "-0");
}

TEST_CASE("double_extremes_are_exact") {
    CHECK(format_double(std::numeric_limits<double>::max()) == "1.7976931348623157e+308");
    CHECK(format_double(std::numeric_limits<double>::denorm_min()) == "5e-324");
    CHECK(format_double(-std::numeric_limits<double>::min()) == "-2.2250738585072014e-308");
}

TEST_CASE("double_special_values_use_prometheus_spelling") {
    CHECK(format_double(std::numeric_limits<double>::quiet_NaN()) == "NaN");
    CHECK(format_double(-std::numeric_limits<double>::quiet_NaN()) == "NaN");
    CHECK(format_double(std::numeric_limits<double>::infinity()) == "+Inf");
    CHECK(format_double(-std::numeric_limits<double>::infinity()) == "-Inf");
}

TEST_CASE("double_round_trips_bit_for_bit") {
    std::mt19937_64 random(20240601);  // fixed seed: failures reproduce
    std::uniform_real_distribution<double> everyday(-1e6, 1e6);
    int checked = 0;
    int mismatches = 0;
    for (int i = 0; i < 5000; ++i) {
        // Alternate arbitrary bit patterns (every exponent) with ordinary values.
        const double x = i % 2 == 0 ? std::bit_cast<double>(random()) : everyday(random);
        if (!std::isfinite(x)) {
            continue;
        }
        const std::string text = format_double(x);
        const double parsed = std::strtod(text.c_str(), nullptr);
        if (std::bit_cast<std::uint64_t>(parsed) != std::bit_cast<std::uint64_t>(x)) {
            ++mismatches;
            UNSCOPED_INFO("mismatch: " << text);
        }
        ++checked;
    }
    CHECK(checked > 4900);
    CHECK(mismatches == 0);
}

TEST_CASE("go_double_formats_as_gos_strconv_g_shortest") {
    // What strconv.FormatFloat(v, 'g', -1, 64) gives: the Go client's "le" values.
    auto go = [](double v) {
        std::string out;
        shmetrics::exporter::append_go_double(out, v);
        return out;
    };
    CHECK(go(0.005) == "0.005");
    CHECK(go(1) == "1");
    CHECK(go(2.5) == "2.5");
    CHECK(go(0.0001) == "0.0001");
    CHECK(go(0.00001) == "1e-05");
    CHECK(go(100000) == "100000");
    CHECK(go(123456) == "123456");
    CHECK(go(1e6) == "1e+06");
    CHECK(go(1234567) == "1.234567e+06");
    CHECK(go(2.893904e6) == "2.893904e+06");
    CHECK(go(1.5e300) == "1.5e+300");
    CHECK(go(-0.25) == "-0.25");
    CHECK(go(-1e-7) == "-1e-07");
    CHECK(go(0) == "0");
    CHECK(go(std::numeric_limits<double>::infinity()) == "+Inf");
    // Every finite value round-trips.
    std::mt19937_64 random(11);
    for (int i = 0; i < 2000; ++i) {
        const double x = std::bit_cast<double>(random());
        if (!std::isfinite(x)) continue;
        const std::string text = go(x);
        INFO(text);
        REQUIRE(std::bit_cast<std::uint64_t>(std::strtod(text.c_str(), nullptr)) == std::bit_cast<std::uint64_t>(x));
    }
}
