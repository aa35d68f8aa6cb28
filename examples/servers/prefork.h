// A preforked master: binds one listening socket, forks N workers that serve
// on it, restarts a worker that dies, and stops them all on SIGTERM/SIGINT.
#pragma once

#include <functional>
#include <string>

namespace shmetrics::examples {

struct PreforkOptions {
  std::string name;            // for log lines, e.g. "ops-server"
  std::string host = "127.0.0.1";
  int port = 0;                // 0: any free port, logged as event=listening
  int workers = 4;
  int backlog = 128;
};

// Runs the master until SIGTERM or SIGINT; returns the process exit status.
// `worker_main(listen_fd, worker_number)` runs in each forked worker and must
// not return while serving; a worker that exits is restarted. Signals are
// delivered to workers with default dispositions, so SIGTERM ends a worker.
int run_preforked(const PreforkOptions& options,
                  const std::function<void(int listen_fd, int worker_number)>& worker_main);

// The HOST:PORT flag parser shared by the servers; exits 2 with a message on
// bad input.
void parse_host_port(const std::string& flag, const std::string& value, std::string& host, int& port);

}  // namespace shmetrics::examples
