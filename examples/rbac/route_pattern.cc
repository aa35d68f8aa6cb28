#include "route_pattern.h"

#include <stdexcept>

namespace rbac {
namespace {

// Removes the leading "/segment" from `rest` (which starts with '/') and
// returns the segment.
std::string_view take_segment(std::string_view& rest) {
  std::size_t end = rest.find('/', 1);
  std::string_view segment = rest.substr(1, end == std::string_view::npos ? end : end - 1);
  rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  return segment;
}

bool is_matchable(std::string_view segment) {
  return !segment.empty() && segment != "." && segment != "..";
}

// Visible ASCII; '*' only as a whole wildcard segment; '?' and '#' would
// begin a query or fragment, which request paths never contain.
bool is_literal_char(char c) { return c > ' ' && c < 0x7f && c != '*' && c != '?' && c != '#'; }

[[noreturn]] void reject(std::string_view pattern, std::string_view rule) {
  throw std::invalid_argument("pattern \"" + std::string(pattern) + "\" " + std::string(rule));
}

}  // namespace

RoutePattern RoutePattern::parse(std::string_view pattern) {
  if (pattern.empty() || pattern.front() != '/')
    reject(pattern, "must be an absolute path starting with \"/\"");
  RoutePattern result;
  if (pattern == "/") return result;
  std::string_view rest = pattern;
  while (!rest.empty()) {
    std::string_view segment = take_segment(rest);
    if (segment.empty())
      reject(pattern, "has an empty segment: only the root pattern \"/\" may end in \"/\"");
    if (segment == "." || segment == "..") reject(pattern, "has a \".\" or \"..\" segment");
    if (segment == "**" && !rest.empty()) reject(pattern, "has \"**\" before its last segment");
    if (segment != "*" && segment != "**") {
      for (char c : segment)
        if (!is_literal_char(c))
          reject(pattern,
                 "has a segment with '*', '?', '#', a space or a non-ASCII byte "
                 "(a wildcard is a whole segment: \"*\" or a final \"**\")");
    }
    result.segments_.emplace_back(segment);
  }
  return result;
}

bool RoutePattern::matches(std::string_view path) const {
  if (path == "/") return segments_.empty();
  if (path.empty() || path.front() != '/') return false;
  std::string_view rest = path;
  for (const std::string& wanted : segments_) {
    if (rest.empty()) return false;
    if (wanted == "**") {
      while (!rest.empty())
        if (!is_matchable(take_segment(rest))) return false;
      return true;
    }
    std::string_view segment = take_segment(rest);
    if (!is_matchable(segment)) return false;
    if (wanted != "*" && segment != wanted) return false;
  }
  return rest.empty();
}

}  // namespace rbac
