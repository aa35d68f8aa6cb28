// RoutePattern: the path pattern of one route of the RBAC map.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace rbac {

// An absolute path pattern, matched segment by segment against request paths:
//   literal   matches exactly that segment          /ops/status
//   *         matches exactly one non-empty segment  /ops/jobs/*
//   **        last segment only: one or more         /judge/**
// The root pattern "/" matches only the path "/". No other pattern has an
// empty segment, and "." and ".." are not segments a pattern may name.
//
// Request paths are decoded paths without the query string. A path with an
// empty, "." or ".." segment ("/a//b", "/judge/../ops") matches no pattern,
// so a server that normalises paths differently can never route such a
// request past a pattern it did not match: unmatched requests are refused.
//
// Immutable after parse(): thread-safe.
class RoutePattern {
 public:
  // Throws std::invalid_argument naming the pattern and the rule it breaks.
  static RoutePattern parse(std::string_view pattern);

  bool matches(std::string_view path) const;

 private:
  std::vector<std::string> segments_;  // "/" has none
};

}  // namespace rbac
