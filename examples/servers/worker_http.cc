#include "worker_http.h"

#include "../rbac/scopes.h"

#include <cstdlib>
#include <iostream>

namespace shmetrics::examples {

namespace {

const char* error_word(int status) {
  switch (status) {
    case 400: return "bad_request";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 431: return "request_header_fields_too_large";
    default: return status >= 500 ? "internal_error" : "error";
  }
}

}  // namespace

void json_reply(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump() + "\n", "application/json");
}

void install_rbac(httplib::Server& server, rbac::RbacMapState& state) {
  server.set_pre_routing_handler([&state](const httplib::Request& req, httplib::Response& res) {
    if (rbac::is_public(req.path)) return httplib::Server::HandlerResponse::Unhandled;
    state.ensure_fresh();
    std::optional<std::vector<std::string>> scopes = rbac::parse_scopes(req.get_header_value("X-Scopes"));
    const std::vector<std::string> none;
    rbac::Decision decision = state.check(req.method, req.path, scopes ? *scopes : none);
    if (!scopes) {
      json_reply(res, 400, {{"error", "bad_request"},
                            {"reason", "malformed X-Scopes header: expected at most 64 scopes of "
                                       "[A-Za-z0-9:._-], separated by spaces or commas"}});
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!decision.allowed) {
      json_reply(res, 403, {{"error", "forbidden"},
                            {"reason", decision.matched ? "the caller's scopes do not satisfy the route's rule"
                                                        : "no RBAC rule covers this method and route"}});
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    json_reply(res, res.status, {{"error", error_word(res.status)}});
    return httplib::Server::HandlerResponse::Handled;
  }));
}

void prepare_worker_server(httplib::Server& server, rbac::RbacMapState& state) {
  server.set_read_timeout(5, 0);
  server.set_write_timeout(5, 0);
  server.set_keep_alive_timeout(5);
  server.set_payload_max_length(64 * 1024);
  install_rbac(server, state);
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    json_reply(res, 200, {{"status", "ok"}});
  });
}

rbac::RbacMetrics open_role_metrics(const std::string& instance, const std::string& role,
                                    shmetrics::Readyz* readyz) {
  try {
    shmetrics::SegmentOptions options;
    options.instance = instance;
    options.role = role;
    shmetrics::Segment segment = shmetrics::Segment::open(options);
    rbac::RbacMetrics metrics(segment);
    if (readyz != nullptr) *readyz = segment.readyz();
    return metrics;
  } catch (const std::exception& e) {
    std::cerr << "event=metrics_disabled server=" << role << "-server reason=\"" << e.what()
              << "\" serving=without_metrics\n";
    return rbac::RbacMetrics();
  }
}

}  // namespace shmetrics::examples
