// The exporter's HTTP side: one cpp-httplib server per role, GET /metrics.
#pragma once

#include "role_source.h"

#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace shmetrics::exporter {

// Content-Type of the text exposition format 0.0.4.
inline constexpr const char* kTextContentType = "text/plain; version=0.0.4; charset=utf-8";

// Limits of one listener. cpp-httplib 0.11.4 serves each connection on one
// pool thread for its whole keep-alive life and times out each receive, not
// the request: `threads` is how many clients are served at once, and a client
// that keeps sending a byte within every read timeout keeps its thread.
struct ServerOptions {
  std::size_t threads = 8;
  std::chrono::milliseconds read_timeout{5000};   // per receive
  std::chrono::milliseconds write_timeout{5000};  // per send
  std::size_t keep_alive_max = 100;               // requests per connection
  std::chrono::seconds keep_alive_timeout{5};     // wait for a connection's next request
  // The largest request head (request line and headers); also the library's
  // body limit, though every body is refused before the library reads it.
  std::size_t max_request_bytes = 4096;
  int listen_backlog = 128;  // the library would listen with 5
};

// A server answering GET and HEAD /metrics with `source`'s exposition, sent
// through a fixed-length content provider so the library never compresses it
// (its brotli is slow enough to stall a scrape). Every other request is
// refused before its body is read, by the first rule that matches: a head
// larger than max_request_bytes gets 431; a request body 413 (no route takes
// one); a path other than /metrics 404, whatever the method; a method other
// than GET or HEAD on /metrics 405 with `Allow: GET, HEAD`. A refused request
// whose body was not read has its connection closed after the answer, so the
// body is never parsed as a request. Methods the library does not know get
// 400 from it before these rules. Not yet bound or listening.
class MetricsServer : public httplib::Server {
 public:
  MetricsServer(std::shared_ptr<RoleSource> source, const ServerOptions& options);

  // Listens on HOST:PORT (port 0: a free port) with options.listen_backlog.
  // HOST is an IPv4 or IPv6 address without brackets, or a name (the first of
  // its addresses that can be bound). Returns the port, or -1 with `error`
  // saying which address failed and the system's reason, e.g. "cannot listen
  // on 127.0.0.1:8081: Address already in use".
  int bind_listener(const std::string& host, int port, std::string& error);

  // The bound address as HOST:PORT, numeric, an IPv6 host in brackets.
  const std::string& address() const { return address_; }

  // After stop(): shuts down every connection still open on this listener,
  // so its threads see end of file instead of waiting on a client that sends
  // a byte at a time (stop() alone waits for every connection to end). Stop
  // every listener of the process first: then no new socket can take the
  // number of one that closes meanwhile.
  void disconnect_clients();

 private:
  void route_metrics(std::shared_ptr<RoleSource> source);
  HandlerResponse refuse_abuse(const httplib::Request& req, httplib::Response& res) const;

  ServerOptions options_;
  int port_ = 0;         // the bound port, once bind_listener succeeded
  std::string address_;  // and its address
};

std::unique_ptr<MetricsServer> make_metrics_server(std::shared_ptr<RoleSource> source,
                                                   const ServerOptions& options = {});

}  // namespace shmetrics::exporter
