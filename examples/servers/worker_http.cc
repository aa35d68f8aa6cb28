#include "worker_http.h"

#include "../rbac/scopes.h"

#include <chrono>
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

namespace {

// The request this thread serves: cpp-httplib runs a request's pre-routing
// handler, handler and logger on the thread of its connection, in turn.
struct RequestClock {
  std::chrono::steady_clock::time_point start;
  std::string route;
};
thread_local RequestClock t_request;

const char* status_class(int status) {
  if (status < 200) return "1xx";
  if (status < 300) return "2xx";
  if (status < 400) return "3xx";
  if (status < 500) return "4xx";
  return "5xx";
}

httplib::Server::HandlerResponse check_rbac(rbac::RbacMapState& state, const httplib::Request& req,
                                            httplib::Response& res) {
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
}

}  // namespace

void install_rbac(httplib::Server& server, rbac::RbacMapState& state) {
  server.set_pre_routing_handler([&state](const httplib::Request& req, httplib::Response& res) {
    t_request = {std::chrono::steady_clock::now(), "none"};
    return check_rbac(state, req, res);
  });
  server.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    json_reply(res, res.status, {{"error", error_word(res.status)}});
    return httplib::Server::HandlerResponse::Handled;
  }));
}

httplib::Server::Handler timed(std::string route, httplib::Server::Handler handler) {
  return [route = std::move(route), handler = std::move(handler)](const httplib::Request& req,
                                                                    httplib::Response& res) {
    t_request.route = route;
    handler(req, res);
  };
}

void prepare_worker_server(httplib::Server& server, rbac::RbacMapState& state, const RoleMetrics& metrics) {
  server.set_read_timeout(5, 0);
  server.set_write_timeout(5, 0);
  server.set_keep_alive_timeout(5);
  server.set_payload_max_length(64 * 1024);
  install_rbac(server, state);
  if (metrics.request_seconds) {
    server.set_logger([family = *metrics.request_seconds](const httplib::Request&, const httplib::Response& res) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t_request.start).count();
      family.labels({t_request.route, status_class(res.status)}).observe(seconds);
    });
  }
  server.Get("/healthz", timed("/healthz", [](const httplib::Request&, httplib::Response& res) {
    json_reply(res, 200, {{"status", "ok"}});
  }));
}

RoleMetrics open_role_metrics(const std::string& instance, const std::string& role, shmetrics::Readyz* readyz) {
  try {
    shmetrics::SegmentOptions options;
    options.instance = instance;
    options.role = role;
    shmetrics::Segment segment = shmetrics::Segment::open(options);
    RoleMetrics metrics{rbac::RbacMetrics(segment),
                        segment.histogram_family("http_request_duration_seconds",
                                                 "Time from routing a request to logging its response.",
                                                 {"route", "status_class"}, {}, "seconds")};
    if (readyz != nullptr) *readyz = segment.readyz();
    return metrics;
  } catch (const std::exception& e) {
    std::cerr << "event=metrics_disabled server=" << role << "-server reason=\"" << e.what()
              << "\" serving=without_metrics\n";
    return RoleMetrics();
  }
}

}  // namespace shmetrics::examples
