#include "rbac_map.h"

#include "scopes.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <set>
#include <stdexcept>

namespace rbac {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 9> kMethods = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"};

[[noreturn]] void reject(std::string_view where, std::string_view rule) {
  throw std::invalid_argument("RBAC map " + std::string(where) + ": " + std::string(rule));
}

std::string index_name(std::size_t index) { return "routes[" + std::to_string(index) + "]"; }

// "routes[2] (pattern \"/x\")": the index, and the pattern when there is one.
std::string route_name(std::size_t index, const json& route) {
  std::string name = index_name(index);
  if (auto it = route.find("pattern"); it != route.end() && it->is_string())
    name += " (pattern \"" + it->get<std::string>() + "\")";
  return name;
}

// A key given twice in one object is rejected: which of the two counts would
// otherwise be the parser's choice, not the author's.
json parse_json(std::string_view text) {
  std::vector<std::set<std::string>> open_objects;
  auto on_event = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second)
        throw std::invalid_argument("RBAC map has the key \"" + key + "\" twice in one object");
    }
    return true;
  };
  try {
    return json::parse(text, on_event);
  } catch (const json::exception& e) {
    throw std::invalid_argument(std::string("RBAC map is not valid JSON: ") + e.what());
  }
}

void check_keys(const json& object, std::initializer_list<std::string_view> allowed,
                std::string_view where) {
  for (const auto& item : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), item.key()) != allowed.end()) continue;
    std::string names;
    for (std::string_view name : allowed) names += (names.empty() ? "" : ", ") + std::string(name);
    reject(where, "unknown key \"" + item.key() + "\" (allowed: " + names + ")");
  }
}

// `key` as a non-empty array of strings, each accepted by `valid`.
std::vector<std::string> string_list(const json& route, const char* key, std::string_view where,
                                     bool (*valid)(std::string_view), std::string_view rule) {
  auto it = route.find(key);
  if (it == route.end() || !it->is_array() || it->empty())
    reject(where,
           "\"" + std::string(key) + "\" is required and must be a non-empty array of strings");
  std::vector<std::string> values;
  for (const json& value : *it) {
    if (!value.is_string()) reject(where, "\"" + std::string(key) + "\" must hold only strings");
    const std::string& text = value.get_ref<const std::string&>();
    if (!valid(text))
      reject(where, "\"" + std::string(key) + "\" has \"" + text + "\": " + std::string(rule));
    values.push_back(text);
  }
  return values;
}

bool is_method(std::string_view method) {
  return method == "*" || std::find(kMethods.begin(), kMethods.end(), method) != kMethods.end();
}

bool require_all(const json& object, bool fallback, std::string_view where) {
  auto it = object.find("require_all");
  if (it == object.end()) return fallback;
  if (!it->is_boolean()) reject(where, "\"require_all\" must be true or false");
  return it->get<bool>();
}

// The pattern's own message names it: "routes[1]: pattern \"/a//b\" has ...".
RoutePattern parse_pattern(std::size_t index, const std::string& text) {
  try {
    return RoutePattern::parse(text);
  } catch (const std::invalid_argument& e) {
    reject(index_name(index), e.what());
  }
}

Route parse_route(std::size_t index, const json& value, bool default_require_all) {
  if (!value.is_object()) reject(index_name(index), "must be an object");
  const std::string where = route_name(index, value);
  check_keys(value, {"pattern", "methods", "scopes", "require_all"}, where);
  auto pattern = value.find("pattern");
  if (pattern == value.end() || !pattern->is_string())
    reject(where, "\"pattern\" is required and must be a string");
  return Route{
      .pattern = parse_pattern(index, pattern->get_ref<const std::string&>()),
      .methods = string_list(value, "methods", where, is_method,
                             "methods are upper-case HTTP methods (GET, HEAD, POST, PUT, DELETE, "
                             "PATCH, OPTIONS, CONNECT, TRACE) or \"*\""),
      .scopes = string_list(value, "scopes", where, is_valid_scope,
                            "scopes are 1-64 characters of [A-Za-z0-9:._-]"),
      .require_all = require_all(value, default_require_all, where),
  };
}

bool covers(const Route& route, std::string_view method) {
  return std::any_of(route.methods.begin(), route.methods.end(),
                     [&](const std::string& m) { return m == "*" || m == method; });
}

bool satisfies(const Route& route, std::span<const std::string> caller_scopes) {
  auto held = [&](const std::string& scope) {
    return std::find(caller_scopes.begin(), caller_scopes.end(), scope) != caller_scopes.end();
  };
  return route.require_all ? std::all_of(route.scopes.begin(), route.scopes.end(), held)
                           : std::any_of(route.scopes.begin(), route.scopes.end(), held);
}

}  // namespace

RbacMap RbacMap::parse(std::string_view text) {
  const json doc = parse_json(text);
  if (!doc.is_object()) reject("document", "must be a JSON object");
  check_keys(doc, {"require_all", "routes"}, "document");
  const bool default_require_all = require_all(doc, false, "document");
  auto routes = doc.find("routes");
  if (routes == doc.end() || !routes->is_array())
    reject("document", "\"routes\" is required and must be an array");
  RbacMap map;
  for (std::size_t i = 0; i < routes->size(); ++i)
    map.routes_.push_back(parse_route(i, (*routes)[i], default_require_all));
  return map;
}

Decision RbacMap::decide(std::string_view method, std::string_view path,
                         std::span<const std::string> caller_scopes) const {
  for (const Route& route : routes_)
    if (covers(route, method) && route.pattern.matches(path))
      return {.matched = true, .allowed = satisfies(route, caller_scopes)};
  return {};
}

}  // namespace rbac
