#include "scopes.h"

namespace rbac {
namespace {

bool is_scope_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
         c == '.' || c == '_' || c == '-';
}

}  // namespace

bool is_valid_scope(std::string_view scope) {
  if (scope.empty() || scope.size() > kMaxScopeLength) return false;
  for (char c : scope)
    if (!is_scope_char(c)) return false;
  return true;
}

std::optional<std::vector<std::string>> parse_scopes(std::string_view header_value) {
  if (header_value.size() > kMaxScopesHeaderBytes) return std::nullopt;
  std::vector<std::string> scopes;
  std::size_t at = 0;
  while (at < header_value.size()) {
    std::size_t end = header_value.find_first_of(" ,", at);
    if (end == std::string_view::npos) end = header_value.size();
    if (end > at) {
      std::string_view scope = header_value.substr(at, end - at);
      if (!is_valid_scope(scope) || scopes.size() == kMaxCallerScopes) return std::nullopt;
      scopes.emplace_back(scope);
    }
    at = end + 1;
  }
  return scopes;
}

}  // namespace rbac
