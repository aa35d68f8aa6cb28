// The exporter's HTTP side: Boost.Beast over Boost.Asio, GET /metrics per role
// (and /, /healthz, /-/ready).
//
// Why Beast and not cpp-httplib (which still serves the example servers and
// the test clients): cpp-httplib 0.11.4 gives each connection a pool thread
// for its whole keep-alive life, reads a request head of any size before any
// hook runs, keeps an unbounded queue and answers Range requests itself. An
// exporter on a network must bound all of that, and Beast's parser and
// Asio's asynchronous sockets let it: a connection costs a few KiB and no
// thread while it waits, a head is limited while it is read, and every wait
// has a deadline.
#pragma once

#include "role_source.h"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace shmetrics::exporter {

class WebConfigWatcher;  // web_config.h: kept out of this header, as it pulls in Asio's SSL

// Content-Type of the text exposition format 0.0.4.
inline constexpr const char* kTextContentType = "text/plain; version=0.0.4; charset=utf-8";

// The limits of a server. Every wait has a deadline and every buffer a
// bound, so one client can hold at most one connection slot, its head
// buffer and (while it reads an answer) a reference to a shared body.
struct ServerOptions {
  // Threads of the whole process running every listener's connections,
  // each with its own share of the connections (taken in turn at accept)
  // running all of their handlers; one more thread accepts; and as many
  // render the expositions. A waiting connection holds none; a render holds
  // a render thread while it runs (never a connection's thread), and serves
  // every scrape of its role that asked before it ended. More threads than
  // CPUs only add switches between them and renders that could have been
  // shared: default_server_threads() fits the machine.
  std::size_t threads = 4;
  // Connections open at once, per listener. At the limit a new connection
  // takes the slot of the connection that has waited longest for its next
  // request head (evicted); when every connection is busy answering, the new
  // one is closed at once (refused). Both are counted and logged.
  std::size_t max_connections = 1024;
  // The largest request line and headers, enforced while reading: a longer
  // head gets 431 and the connection is closed.
  std::size_t max_request_bytes = 4096;
  // Deadline for a whole request head from its first byte; for a new
  // connection, from its accept (a TLS handshake included).
  std::chrono::milliseconds header_timeout{5000};
  // How long a connection may wait for its next request.
  std::chrono::milliseconds keep_alive_timeout{std::chrono::seconds(60)};
  // Deadline for writing one answer.
  std::chrono::milliseconds write_timeout{10000};  // Prometheus's default scrape_timeout
  int listen_backlog = 1024;
  // Password checks (bcrypt, tens of ms each, one at a time) queued at once,
  // for all listeners together. Past it, a request whose password is not in
  // the cache gets 503 with Retry-After: 1 and its connection is closed, so
  // a flood of guesses queues no more than this much work. Passwords that
  // passed once stay cached and never wait.
  std::size_t max_pending_auth = 16;
  // Shown on the landing page, GET /.
  std::string version = "unknown";
};

// The CPUs this process may run on (its affinity, as taskset or a cgroup's
// cpuset gives it), at most 4: the exporter's default --threads.
std::size_t default_server_threads();

// Counters of one listener, for logs and tests.
struct ListenerStats {
  std::uint64_t accepted = 0;      // connections taken
  std::uint64_t refused = 0;       // closed at once: every slot busy answering
  std::uint64_t evicted = 0;       // closed to make room for a new one
  std::uint64_t header_timeouts = 0;
  std::uint64_t unauthorized = 0;  // 401 answers
  std::uint64_t auth_busy = 0;     // 503 answers: max_pending_auth checks queued
  std::uint64_t requests = 0;      // heads read and answered
  std::uint64_t renders = 0;       // renders for scrapes (each serves every scrape waiting)
  std::uint64_t scrapes_waiting = 0;  // scrapes waiting for a render now
  std::uint64_t open = 0;          // connections now open
  std::uint64_t waiting = 0;       // of them, waiting for a request head
};

class HttpServer {
 public:
  explicit HttpServer(const ServerOptions& options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Adds a listener serving `source` on HOST:PORT (port 0: a free port) and
  // starts listening (accepting begins with start()). HOST is an IPv4 or
  // IPv6 address without brackets, or a name (the first of its addresses
  // that can be bound). Returns the listener's index, or -1 with `error`
  // naming the address and the system's reason, e.g. "cannot listen on
  // 127.0.0.1:8081: Address already in use". Before start() only.
  int add_listener(std::shared_ptr<RoleSource> source, const std::string& host, int port,
                   std::string& error);
  // Adds one listener serving every role of `sources` (distinct role names),
  // each at /metrics/<role>; / lists them and /healthz, /-/ready answer for
  // all of them (200 only when every segment is served). Otherwise as
  // add_listener.
  int add_shared_listener(std::vector<std::shared_ptr<RoleSource>> sources, const std::string& host, int port,
                          std::string& error);
  // The role names of `sources` as logs name a shared listener: "ops,judge".
  static std::string role_names(const std::vector<std::shared_ptr<RoleSource>>& sources);

  // Serves every listener under `web_config` (--web.config.file): a new
  // connection speaks TLS when the configuration current at its accept has
  // tls_server_config; a request is answered only after basic auth passes
  // when it has basic_auth_users (401 with "WWW-Authenticate: Basic"
  // otherwise, before anything is rendered); its headers go on every
  // answer. Bcrypt runs on a thread of its own, never on the threads that
  // serve connections. Before start() only.
  void set_web_config(std::shared_ptr<WebConfigWatcher> web_config);

  // The bound address of listener `index` as HOST:PORT, numeric, an IPv6
  // host in brackets; and its port.
  const std::string& address(std::size_t index) const;
  int port(std::size_t index) const;
  ListenerStats stats(std::size_t index) const;

  // Starts the threads. Returns at once.
  void start();
  // Stops accepting, closes every connection and joins the threads. From
  // any thread but the server's own; idempotent. The listeners are gone
  // afterwards (address(), port() and stats() throw std::out_of_range).
  void stop();

  struct Listener;  // one address's acceptor, roles and connections

 private:
  int add(std::vector<std::shared_ptr<RoleSource>> sources, bool per_role_paths, const std::string& host, int port,
          std::string& error);

  ServerOptions options_;
  struct Io;
  std::unique_ptr<Io> io_;
  std::shared_ptr<WebConfigWatcher> web_config_;
  std::vector<std::shared_ptr<Listener>> listeners_;
};

}  // namespace shmetrics::exporter
