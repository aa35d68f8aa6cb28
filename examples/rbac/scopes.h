// Scopes: the permission names a route requires and a caller holds.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rbac {

inline constexpr std::size_t kMaxScopeLength = 64;
inline constexpr std::size_t kMaxCallerScopes = 64;
inline constexpr std::size_t kMaxScopesHeaderBytes = 4096;

// 1-64 characters of [A-Za-z0-9:._-], e.g. "ops:read".
bool is_valid_scope(std::string_view scope);

// The caller's scopes from an X-Scopes header value: scopes separated by
// spaces and/or commas ("ops:read ops:write", "ops:read,ops:write"). Empty or
// separators only gives no scopes. nullopt when the header is malformed: a
// scope breaks the charset (tabs and other separators included), there are
// more than 64 scopes, or the value is longer than 4096 bytes. Callers refuse
// such a request like one without scopes. Thread-safe (a pure function).
std::optional<std::vector<std::string>> parse_scopes(std::string_view header_value);

}  // namespace rbac
