// RbacMap: which scopes each route of a server requires, parsed from JSON.
//
// The RBAC map file
// -----------------
// A JSON object listing routes in order. Example:
//
//   {
//     "require_all": false,
//     "routes": [
//       {"pattern": "/ops/status", "methods": ["GET"], "scopes": ["ops:read"]},
//       {"pattern": "/ops/jobs/*", "methods": ["GET", "POST"],
//        "scopes": ["ops:read", "ops:write"], "require_all": true},
//       {"pattern": "/judge/**", "methods": ["*"], "scopes": ["judge:submit"]}
//     ]
//   }
//
//   require_all  optional boolean, default false: whether a route needs all of
//                its scopes (true) or any one of them (false). A route's own
//                "require_all" overrides it.
//   routes       required array; may be empty (then every request is refused).
//   pattern      required: an absolute path. "*" matches exactly one non-empty
//                segment, "**" (last segment only) one or more segments, any
//                other segment matches literally. No empty segments except the
//                root pattern "/"; no "." or ".." segments; literal segments
//                are visible ASCII without '*', '?' or '#'.
//   methods      required, non-empty: upper-case HTTP methods (GET, HEAD, POST,
//                PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE) or "*" for any.
//   scopes       required, non-empty: each 1-64 characters of [A-Za-z0-9:._-].
//
// A request matches a route when its method is listed (or "*" is) and its path
// matches the pattern; the first matching route in file order decides.
// Paths are matched decoded and without the query string; a path with an
// empty, "." or ".." segment ("/a//b", "/judge/../ops") matches no pattern.
// Requests that match no route are refused: the map fails closed. Unknown
// keys, duplicate keys, wrong types and anything breaking the rules above
// reject the whole map.
#pragma once

#include "route_pattern.h"

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rbac {

// The outcome for one request: whether a route matched, and whether the
// caller's scopes satisfy it. Unmatched requests are never allowed. A plain
// value.
struct Decision {
  bool matched = false;
  bool allowed = false;
};

// One route of the map as parsed; `methods` holds "*" for any method. A plain
// value, immutable inside an RbacMap.
struct Route {
  RoutePattern pattern;
  std::vector<std::string> methods;
  std::vector<std::string> scopes;
  bool require_all = false;
};

// A parsed, validated RBAC map. Immutable after parse(): thread-safe.
class RbacMap {
 public:
  // Throws std::invalid_argument naming the route (routes[i] and its pattern)
  // and the rule broken, or why the text is not JSON.
  static RbacMap parse(std::string_view json);

  Decision decide(std::string_view method, std::string_view path,
                  std::span<const std::string> caller_scopes) const;

 private:
  std::vector<Route> routes_;
};

}  // namespace rbac
