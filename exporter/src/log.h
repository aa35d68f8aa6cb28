// One key=value line per event on stderr, e.g.
//   ts=2026-11-27T13:40:01.123Z level=info event=listening role=ops address=127.0.0.1:8081
#pragma once

#include <cstdio>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace shmetrics::exporter {

using LogField = std::pair<std::string_view, std::string_view>;

// Values with spaces, quotes or '=' are quoted. Thread-safe.
void log_event(std::string_view level, std::string_view event,
               std::initializer_list<LogField> fields = {});

// A control character (below 0x20, or DEL): written as an escape in log
// values and in the messages the exporter prints.
constexpr bool is_control_byte(unsigned char c) { return c < 0x20 || c == 0x7f; }
// Appends `c` as \xHH.
void append_hex_escape(std::string& out, unsigned char c);

// Where the lines go: stderr unless changed; nullptr drops them (the fuzz
// target, which opens thousands of segments). Call before any thread logs.
void set_log_output(std::FILE* out);

}  // namespace shmetrics::exporter
