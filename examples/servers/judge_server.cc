// shmetrics-judge-server: the example Judge server. Like the Ops server, and
// its GET /readyz runs a real check and records the outcome, from which the
// exporter computes the readyz success ratios of the judge segment.
#include "prefork.h"
#include "server_flags.h"
#include "worker_http.h"

#include <shmetrics/shmetrics.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <iostream>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace shmetrics::examples;

namespace {

// Whether HOST:PORT accepts a TCP connection within `timeout_ms`.
bool tcp_accepts(const std::string& address, int timeout_ms, std::string& reason) {
  std::string host;
  int port = 0;
  parse_host_port("--readyz-tcp", address, host, port);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    reason = "not an IPv4 address: " + host;
    return false;
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    reason = "socket failed";
    return false;
  }
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  if (!ok && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    ok = ::poll(&p, 1, timeout_ms) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  }
  ::close(fd);
  if (!ok) reason = address + " does not accept connections";
  return ok;
}

// The configured readiness check: a file that must exist, or an address that
// must accept; with neither, always ready.
bool run_check(const ServerFlags& flags, std::string& reason) {
  if (!flags.readyz_file.empty()) {
    struct stat st {};
    if (::stat(flags.readyz_file.c_str(), &st) == 0) return true;
    reason = flags.readyz_file + " does not exist";
    return false;
  }
  if (!flags.readyz_tcp.empty()) return tcp_accepts(flags.readyz_tcp, 500, reason);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  ServerFlags flags = parse_server_flags(argc, argv, "shmetrics-judge-server", 8092, /*judge=*/true);
  try {
    shmetrics::Readyz readyz;
    RoleMetrics metrics = open_role_metrics(flags.instance, "judge", &readyz);  // inherited by workers
    PreforkOptions prefork{"judge-server", flags.host, flags.port, flags.workers, 128};
    return run_preforked(prefork, [&](int listen_fd, int worker) {
      rbac::RbacMapState state(flags.rbac_map, flags.reload_sec, metrics.rbac);
      AdoptedServer server;
      prepare_worker_server(server, state, metrics);
      server.Get("/readyz", timed("/readyz", [&](const httplib::Request&, httplib::Response& res) {
        std::string reason;
        bool ok = run_check(flags, reason);
        readyz.observe(ok);
        if (ok) json_reply(res, 200, {{"status", "ready"}});
        else json_reply(res, 503, {{"status", "degraded"}, {"reason", reason}});
      }));
      server.Post("/judge/submit", timed("/judge/submit", [worker](const httplib::Request&, httplib::Response& res) {
        json_reply(res, 202, {{"accepted", true}, {"worker", worker}});
      }));
      server.Get(R"(/judge/results/([A-Za-z0-9_-]{1,64}))",
                 timed("/judge/results/{id}", [](const httplib::Request& req, httplib::Response& res) {
        json_reply(res, 200, {{"id", req.matches[1].str()}, {"verdict", "pending"}});
      }));
      server.serve_on(listen_fd);
    });
  } catch (const std::exception& e) {
    std::cerr << "event=start_failed server=judge-server reason=\"" << e.what() << "\"\n";
    return 1;
  }
}
