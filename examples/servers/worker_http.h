// What the preforked Ops and Judge workers share: serving on the master's
// socket, the RBAC check before every handler, JSON replies.
#pragma once

#include "../rbac/rbac_state.h"

#include <shmetrics/shmetrics.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace shmetrics::examples {

// A cpp-httplib server that serves on a socket the master bound and listens
// on. cpp-httplib 0.11 has no public call for that; svr_sock_ is protected.
// Never call stop() in a worker: it shuts the socket down for every worker.
class AdoptedServer : public httplib::Server {
 public:
  bool serve_on(int listen_fd) {
    svr_sock_ = listen_fd;
    return listen_after_bind();
  }
};

// Replies `status` with `body` as JSON.
void json_reply(httplib::Response& res, int status, const nlohmann::json& body);

// Runs the RBAC check before every handler: public routes (/readyz, /healthz)
// pass; anything else needs the scopes of the X-Scopes header (space- or
// comma-separated) to satisfy the map in force. A refusal answers 403, a
// malformed header 400, both with a JSON error body; either way the RBAC
// counters say what happened. Also gives 404s and other errors a JSON body.
void install_rbac(httplib::Server& server, rbac::RbacMapState& state);

// A server role's metrics: the RBAC families of the original work order and
// the request latency, http_request_duration_seconds{route, status_class}.
struct RoleMetrics {
  rbac::RbacMetrics rbac;
  // Absent when the server runs without metrics.
  std::optional<shmetrics::HistogramFamily> request_seconds;
};

// What every worker's server has: bounded request sizes and timeouts, the
// RBAC check before every handler (install_rbac), GET /healthz, and every
// request timed into metrics.request_seconds from routing to the logger:
// labelled with the route pattern its handler was registered under through
// timed() ("none" when no handler served it: 404, or refused by RBAC) and its
// status class ("2xx".."5xx").
void prepare_worker_server(httplib::Server& server, rbac::RbacMapState& state, const RoleMetrics& metrics);

// `handler`, labelling the requests it serves with `route` (the pattern as
// people read it, e.g. "/judge/results/{id}").
httplib::Server::Handler timed(std::string route, httplib::Server::Handler handler);

// The role's metrics (and, given `readyz`, the readyz handle) in the segment
// of `role` ("ops", "judge"), opened by the master before forking so workers
// inherit it and the families registered in it. When the segment cannot be
// opened (its directory squatted, /dev/shm full, ...) the server must keep
// serving: one log line names the reason and the handles returned are
// detached, their updates dropped.
RoleMetrics open_role_metrics(const std::string& instance, const std::string& role,
                              shmetrics::Readyz* readyz = nullptr);

}  // namespace shmetrics::examples
