#include "shmetrics/shm/names.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

using shmetrics::shm::check_label_name;
using shmetrics::shm::check_metric_name;
using shmetrics::shm::check_utf8;
using shmetrics::shm::is_valid_utf8;
using shmetrics::shm::printable;
using namespace std::string_view_literals;  // "\0"sv keeps embedded NULs

namespace {

// Encodes one code point the naive way, without the range checks a strict
// encoder would apply, so tests can build surrogates too.
std::string encode(std::uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        s += static_cast<char>(0xE0 | (cp >> 12));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        s += static_cast<char>(0xF0 | (cp >> 18));
        s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

}  // namespace

// --- metric names ---

TEST_CASE("metric_name_accepts_prometheus_names") {
    CHECK(check_metric_name("http_requests_total").empty());
    CHECK(check_metric_name("_private").empty());
    CHECK(check_metric_name("a").empty());
    CHECK(check_metric_name("Mixed_Case_9").empty());
}

TEST_CASE("metric_name_allows_colons_anywhere") {
    CHECK(check_metric_name("job:http_requests:rate5m").empty());
    CHECK(check_metric_name(":leading").empty());
}

TEST_CASE("metric_name_rejects_empty") {
    CHECK(check_metric_name("") ==
          R"(metric name "" is invalid: must match [a-zA-Z_:][a-zA-Z0-9_:]*)");
}

TEST_CASE("metric_name_rejects_leading_digit") {
    CHECK(check_metric_name("9bad") ==
          R"(metric name "9bad" is invalid: must match [a-zA-Z_:][a-zA-Z0-9_:]*)");
}

TEST_CASE("metric_name_rejects_other_punctuation") {
    CHECK_FALSE(check_metric_name("a-b").empty());
    CHECK_FALSE(check_metric_name("a.b").empty());
    CHECK_FALSE(check_metric_name("a b").empty());
}

TEST_CASE("metric_name_rejects_unicode_and_escapes_it_in_the_message") {
    CHECK(check_metric_name("caf\xc3\xa9") ==
          R"(metric name "caf\xc3\xa9" is invalid: must match [a-zA-Z_:][a-zA-Z0-9_:]*)");
}

// --- label names ---

TEST_CASE("label_name_accepts_prometheus_names") {
    CHECK(check_label_name("method").empty());
    CHECK(check_label_name("_x").empty());
    CHECK(check_label_name("status_code_2").empty());
}

TEST_CASE("label_name_rejects_colon") {
    CHECK(check_label_name("a:b") ==
          R"(label name "a:b" is invalid: must match [a-zA-Z_][a-zA-Z0-9_]*)");
}

TEST_CASE("label_name_rejects_dash_empty_and_leading_digit") {
    CHECK(check_label_name("a-b") ==
          R"(label name "a-b" is invalid: must match [a-zA-Z_][a-zA-Z0-9_]*)");
    CHECK_FALSE(check_label_name("").empty());
    CHECK_FALSE(check_label_name("1a").empty());
}

TEST_CASE("label_name_rejects_reserved_double_underscore_prefix") {
    CHECK(check_label_name("__x") ==
          R"(label name "__x" is invalid: names starting with "__" are reserved)");
    CHECK_FALSE(check_label_name("__").empty());
}

TEST_CASE("label_name_allows_single_underscore_prefix_and_inner_double_underscore") {
    CHECK(check_label_name("_a__b").empty());
}

// --- UTF-8 ---

TEST_CASE("utf8_accepts_ascii_and_empty") {
    CHECK(is_valid_utf8(""));
    CHECK(is_valid_utf8("plain ascii text that is longer than one 8-byte word"));
}

TEST_CASE("utf8_accepts_embedded_nul") {
    CHECK(is_valid_utf8("a\0b"sv));
    CHECK(is_valid_utf8("\0\0\0\0\0\0\0\0\0"sv));
}

TEST_CASE("utf8_accepts_multibyte_sequences") {
    CHECK(is_valid_utf8("\xc3\xa9"));          // U+00E9, 2 bytes
    CHECK(is_valid_utf8("\xe2\x82\xac"));      // U+20AC, 3 bytes
    CHECK(is_valid_utf8("\xf0\x9f\x98\x80"));  // U+1F600, 4 bytes
    CHECK(is_valid_utf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF, the last code point
    CHECK(is_valid_utf8("\xef\xbf\xbf"));      // U+FFFF
    CHECK(is_valid_utf8("before the fast path \xc3\xa9 and after it again"));
}

TEST_CASE("utf8_accepts_every_unicode_scalar_value") {
    bool all_valid = true;
    for (std::uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
        if (cp == 0xD800) {
            cp = 0xE000;  // skip the surrogates
        }
        all_valid = all_valid && is_valid_utf8(encode(cp));
    }
    CHECK(all_valid);
}

TEST_CASE("utf8_rejects_overlong_encodings") {
    CHECK_FALSE(is_valid_utf8("\xc0\x80"));          // U+0000 in 2 bytes
    CHECK_FALSE(is_valid_utf8("\xc1\xbf"));          // U+007F in 2 bytes
    CHECK_FALSE(is_valid_utf8("\xe0\x80\x80"));      // U+0000 in 3 bytes
    CHECK_FALSE(is_valid_utf8("\xe0\x9f\xbf"));      // U+07FF in 3 bytes
    CHECK_FALSE(is_valid_utf8("\xf0\x8f\xbf\xbf"));  // U+FFFF in 4 bytes
}

TEST_CASE("utf8_rejects_surrogates") {
    CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));  // U+D800
    CHECK_FALSE(is_valid_utf8("\xed\xbf\xbf"));  // U+DFFF
    bool any_valid = false;
    for (std::uint32_t cp = 0xD800; cp <= 0xDFFF; ++cp) {
        any_valid = any_valid || is_valid_utf8(encode(cp));
    }
    CHECK_FALSE(any_valid);
}

TEST_CASE("utf8_rejects_code_points_above_10ffff") {
    CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // U+110000
    CHECK_FALSE(is_valid_utf8("\xf5\x80\x80\x80"));
    CHECK_FALSE(is_valid_utf8("\xff"));
}

TEST_CASE("utf8_rejects_truncated_sequences") {
    CHECK_FALSE(is_valid_utf8("\xc3"));
    CHECK_FALSE(is_valid_utf8("\xe2\x82"));
    CHECK_FALSE(is_valid_utf8("\xf0\x9f\x98"));
    CHECK_FALSE(is_valid_utf8("\xe2\x82z"));  // cut short by an ASCII byte
}

TEST_CASE("utf8_rejects_lone_continuation_byte") {
    CHECK_FALSE(is_valid_utf8("\x80"));
    CHECK_FALSE(is_valid_utf8("abc\xbf"));
    CHECK_FALSE(is_valid_utf8("\xc3\xa9\xa9"));  // one continuation too many
}

TEST_CASE("utf8_rejects_invalid_byte_after_long_ascii_run") {
    CHECK_FALSE(is_valid_utf8("0123456789abcdef\xff"));
    CHECK_FALSE(is_valid_utf8("01234567\x80""89abcdef"));
}

TEST_CASE("check_utf8_accepts_valid_text") {
    CHECK(check_utf8("ok \xc3\xa9", "label value for \"etag\"").empty());
}

TEST_CASE("check_utf8_names_offset_and_escapes_the_byte") {
    CHECK(check_utf8("ab\xff", R"(label value for "etag")") ==
          R"(label value for "etag" "ab\xff" is not valid UTF-8: invalid byte 0xff at offset 2)");
}

TEST_CASE("check_utf8_points_at_the_byte_that_breaks_a_sequence") {
    CHECK(check_utf8("x\xed\xa0\x80", R"(help text of "x_total")") ==
          R"(help text of "x_total" "x\xed\xa0\x80" is not valid UTF-8: invalid byte 0xa0 at offset 2)");
}

TEST_CASE("check_utf8_reports_truncated_sequence_at_its_start") {
    CHECK(check_utf8("ab\xe2\x82", "value") ==
          R"(value "ab\xe2\x82" is not valid UTF-8: truncated sequence at offset 2)");
}

// --- printable ---

TEST_CASE("printable_quotes_and_escapes") {
    CHECK(printable("plain") == R"("plain")");
    CHECK(printable("") == R"("")");
    CHECK(printable(R"(say "hi" \o/)") == R"("say \"hi\" \\o/")");
    CHECK(printable("tab\tnl\n\x7f\0"sv) == R"("tab\x09nl\x0a\x7f\x00")");
}

TEST_CASE("printable_truncates_long_text_with_ellipsis") {
    const std::string long_text(100, 'a');
    CHECK(printable(long_text) == '"' + std::string(64, 'a') + "\"...");
    CHECK(printable("abcdef", 3) == R"("abc"...)");
}

TEST_CASE("printable_does_not_truncate_text_of_exactly_max_bytes") {
    CHECK(printable("abc", 3) == R"("abc")");
}

TEST_CASE("printable_counts_the_limit_in_input_bytes") {
    // Each escaped byte becomes four characters but counts as one.
    CHECK(printable("\xff\xff\xff\xff", 2) == R"("\xff\xff"...)");
}

TEST_CASE("printable_escapes_long_names_in_messages") {
    const std::string name = "9" + std::string(70, 'x');
    CHECK(check_metric_name(name) == "metric name \"9" + std::string(63, 'x') +
                                         "\"... is invalid: must match [a-zA-Z_:][a-zA-Z0-9_:]*");
}

// --- family definitions, as register_family checks them before writing ---

namespace {

using shmetrics::shm::GaugeMode;
using shmetrics::shm::MetricType;

std::string definition(std::string_view name, std::string_view help = "Help.",
                       MetricType type = MetricType::kGauge, GaugeMode mode = GaugeMode::kLiveSum,
                       const std::vector<std::string>& labels = {}) {
    return shmetrics::shm::check_family_definition(name, help, type, mode, labels);
}

}  // namespace

TEST_CASE("family_definition_accepts_each_kind") {
    CHECK(definition("requests_total", "Requests.", MetricType::kCounter, GaugeMode::kNone, {"route", "code"}) == "");
    CHECK(definition("inflight", "In flight.", MetricType::kGauge, GaugeMode::kLiveAll, {"route"}) == "");
    CHECK(definition("build_info", "Build.", MetricType::kInfo, GaugeMode::kNone, {"version"}) == "");
    std::vector<std::string> many;
    for (std::uint32_t i = 0; i < shmetrics::shm::kMaxLabels; ++i) many.push_back("l" + std::to_string(i));
    CHECK(definition("wide", "Wide.", MetricType::kGauge, GaugeMode::kLiveSum, many) == "");
    CHECK(definition(std::string(shmetrics::shm::kMaxNameBytes, 'n')) == "");
    CHECK(definition("h", std::string(shmetrics::shm::kMaxHelpBytes, 'h')) == "");
}

TEST_CASE("family_definition_refuses_bad_names_with_the_reason") {
    CHECK(definition("1bad").find("is invalid") != std::string::npos);
    const std::string long_name(shmetrics::shm::kMaxNameBytes + 1, 'n');
    CHECK(definition(long_name) == "metric name \"" + long_name.substr(0, 64) + "...\" is 257 bytes, more than the 256 allowed");
    CHECK(definition("shmetrics_own") ==
          "metric name \"shmetrics_own\" is reserved: names starting with \"shmetrics_\" are the exporter's own");
    CHECK(definition("requests", "Requests.", MetricType::kCounter, GaugeMode::kNone) ==
          "counter name \"requests\" is invalid: counter names must end in \"_total\"");
}

TEST_CASE("family_definition_refuses_bad_help_with_the_reason") {
    CHECK(definition("g", "") == "metric \"g\" has no help text: help is required");
    CHECK(definition("g", std::string(shmetrics::shm::kMaxHelpBytes + 1, 'h')) ==
          "help text of \"g\" is 4097 bytes, more than the 4096 allowed");
    CHECK(definition("g", "bad \xff byte").find("help text of \"g\"") != std::string::npos);
}

TEST_CASE("family_definition_refuses_bad_label_names_with_the_reason") {
    std::vector<std::string> too_many(shmetrics::shm::kMaxLabels + 1);
    for (std::size_t i = 0; i < too_many.size(); ++i) too_many[i] = "l" + std::to_string(i);
    CHECK(definition("g", "G.", MetricType::kGauge, GaugeMode::kLiveSum, too_many) ==
          "metric \"g\" has 33 label names, more than the 32 allowed");
    CHECK(definition("g", "G.", MetricType::kGauge, GaugeMode::kLiveSum, {"ok", "__reserved"})
              .find("__") != std::string::npos);
    const std::string long_label(shmetrics::shm::kMaxNameBytes + 1, 'l');
    CHECK(definition("g", "G.", MetricType::kGauge, GaugeMode::kLiveSum, {long_label}) ==
          "label name \"" + long_label.substr(0, 64) + "...\" is 257 bytes, more than the 256 allowed");
    CHECK(definition("g", "G.", MetricType::kGauge, GaugeMode::kLiveSum, {"a", "b", "a"}) ==
          "label name \"a\" appears twice in metric \"g\": label names must be distinct");
    // "pid" is the per-process modes' own label, and only theirs.
    CHECK(definition("g", "G.", MetricType::kGauge, GaugeMode::kLiveAll, {"pid"}) ==
          "label name \"pid\" of gauge \"g\" is reserved: liveall and all gauges add a pid label themselves");
    CHECK(definition("g", "G.", MetricType::kGauge, GaugeMode::kAll, {"pid"}) != "");
    CHECK(definition("g", "G.", MetricType::kGauge, GaugeMode::kLiveSum, {"pid"}) == "");
}

TEST_CASE("exposition_names_list_every_name_a_family_takes") {
    using shmetrics::shm::exposition_names;
    using V = std::vector<std::string>;
    CHECK(exposition_names(MetricType::kCounter, "sent_total") == V{"sent_total", "sent_created", "sent"});
    CHECK(exposition_names(MetricType::kHistogram, "wait_seconds") ==
          V{"wait_seconds", "wait_seconds_bucket", "wait_seconds_count", "wait_seconds_sum", "wait_seconds_created"});
    CHECK(exposition_names(MetricType::kInfo, "build_info") == V{"build_info", "build"});
    CHECK(exposition_names(MetricType::kInfo, "build") == V{"build", "build_info"});
    CHECK(exposition_names(MetricType::kGauge, "g") == V{"g"});
    // A gauge whose OpenMetrics family would be the readyz counter's is reserved too.
    CHECK(definition("readyz_checks").find("is reserved") != std::string::npos);
    CHECK(definition("shmetrics_x_total", "H.", MetricType::kCounter, GaugeMode::kNone).find("is reserved") !=
          std::string::npos);
}

TEST_CASE("family_definition_checks_units_and_bucket_bounds") {
    auto full = [](std::string_view name, MetricType type, std::string_view unit,
                   const std::vector<double>& bounds = {}) {
        return shmetrics::shm::check_family_definition(name, "H.", type, GaugeMode::kNone, {}, unit, bounds);
    };
    CHECK(full("wait_seconds", MetricType::kHistogram, "seconds", {0.1, 1}) == "");
    CHECK(full("sent_bytes_total", MetricType::kCounter, "bytes") == "");
    CHECK(full("sent_total", MetricType::kCounter, "bytes") ==
          "metric \"sent_total\" has unit \"bytes\" but its name does not end in \"_bytes_total\": OpenMetrics "
          "requires the unit as the name's suffix");
    CHECK(full("build_info", MetricType::kInfo, "info") ==
          "info metric \"build_info\" has unit \"info\": info metrics have no unit (OpenMetrics)");
    CHECK(full("x_seconds", MetricType::kHistogram, "sec onds").find("is invalid: must be 1-256 characters") !=
          std::string::npos);
    CHECK(full("x_total", MetricType::kCounter, "", {1}) ==
          "metric \"x_total\" has bucket bounds: only histograms have buckets");
    CHECK(full("x", MetricType::kHistogram, "", {2, 1}) ==
          "bucket bounds of histogram \"x\" are not strictly increasing: bound 1 (1) follows 2");
    CHECK(full("x", MetricType::kHistogram, "", {1, std::nan("")}).find("is NaN") != std::string::npos);
    CHECK(full("x", MetricType::kHistogram, "", std::vector<double>(shmetrics::shm::kMaxBuckets, 0)).find(
              "not strictly increasing") != std::string::npos);
    CHECK(full("x", MetricType::kHistogram, "", std::vector<double>(shmetrics::shm::kMaxBuckets + 1, 0)) ==
          "histogram \"x\" has 257 bucket bounds, more than the 256 allowed");
    CHECK(full("x_bucket", MetricType::kHistogram, "").find("must not end in \"_bucket\"") != std::string::npos);
    CHECK(shmetrics::shm::check_family_definition("x", "H.", MetricType::kHistogram, GaugeMode::kNone, {"le"}) ==
          "label name \"le\" of histogram \"x\" is reserved: a histogram's _bucket samples add it themselves");
}
