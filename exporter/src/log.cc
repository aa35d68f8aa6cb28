#include "log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>

namespace shmetrics::exporter {

namespace {

std::FILE* g_output = stderr;

// A value as is when it is a plain word, else quoted, with quotes and
// backslashes escaped by a backslash and every control character written as an escape (\n, \r, \t,
// \xHH): a reason quoting a file name or a peer's bytes can neither break
// the one-line format nor send a terminal its escape sequences.
void append_value(std::string& out, std::string_view v) {
  bool quote = v.empty();
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if (is_control_byte(u) || c == ' ' || c == '"' || c == '=' || c == '\\') quote = true;
  }
  if (!quote) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (is_control_byte(u)) {
      append_hex_escape(out, u);
    } else {
      out += c;
    }
  }
  out += '"';
}

}  // namespace

void append_hex_escape(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 15];
}

void set_log_output(std::FILE* out) { g_output = out; }

void log_event(std::string_view level, std::string_view event,
               std::initializer_list<LogField> fields) {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t secs = system_clock::to_time_t(now);
  auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char ts[64];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  std::string line = "ts=";
  line += ts;
  line += " level=";
  line += level;
  line += " event=";
  line += event;
  for (const auto& [key, value] : fields) {
    line += ' ';
    line += key;
    line += '=';
    append_value(line, value);
  }
  line += '\n';
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  if (g_output == nullptr) return;
  std::fwrite(line.data(), 1, line.size(), g_output);
  std::fflush(g_output);
}

}  // namespace shmetrics::exporter
