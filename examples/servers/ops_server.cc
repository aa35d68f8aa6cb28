// shmetrics-ops-server: the example Ops API. A preforked master; every worker
// checks RBAC before each handler and records the RBAC metrics in the ops
// segment, which shmetrics-exporter serves on its Ops listener.
#include "prefork.h"
#include "server_flags.h"
#include "worker_http.h"

#include <shmetrics/shmetrics.h>

#include <iostream>
#include <unistd.h>

using namespace shmetrics::examples;

int main(int argc, char** argv) {
  ServerFlags flags = parse_server_flags(argc, argv, "shmetrics-ops-server", 8091, /*judge=*/false);
  try {
    RoleMetrics metrics = open_role_metrics(flags.instance, "ops");  // inherited by workers
    PreforkOptions prefork{"ops-server", flags.host, flags.port, flags.workers, 128};
    return run_preforked(prefork, [&](int listen_fd, int worker) {
      rbac::RbacMapState state(flags.rbac_map, flags.reload_sec, metrics.rbac);
      AdoptedServer server;
      prepare_worker_server(server, state, metrics);
      server.Get("/ops/status", timed("/ops/status", [&](const httplib::Request&, httplib::Response& res) {
        json_reply(res, 200, {{"role", "ops"}, {"pid", ::getpid()}, {"worker", worker},
                              {"rbac_etag", state.etag()}});
      }));
      server.Get("/ops/jobs", timed("/ops/jobs", [](const httplib::Request&, httplib::Response& res) {
        json_reply(res, 200, {{"jobs", nlohmann::json::array()}});
      }));
      server.Post("/ops/jobs", timed("/ops/jobs", [](const httplib::Request&, httplib::Response& res) {
        json_reply(res, 201, {{"accepted", true}});
      }));
      server.serve_on(listen_fd);
    });
  } catch (const std::exception& e) {
    std::cerr << "event=start_failed server=ops-server reason=\"" << e.what() << "\"\n";
    return 1;
  }
}
