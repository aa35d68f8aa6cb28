#include "http_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace shmetrics::exporter {

namespace {

// Set by the pre-routing handler when it refused a request whose body it did
// not read; consumed by the logger, which runs on the same thread once the
// answer is written.
thread_local bool t_close_after_answer = false;

// Answers with `body` through a fixed-length content provider: the library
// compresses bodies set with set_content, never these. The body is sent from
// where it is, shared with any other response holding it, never copied.
void send_fixed(httplib::Response& res, std::shared_ptr<const std::string> body,
                const char* content_type) {
  const std::size_t size = body->size();
  res.set_content_provider(
      size, content_type,
      [body = std::move(body)](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
        if (offset > body->size()) return false;
        return sink.write(body->data() + offset, std::min(length, body->size() - offset));
      });
}

void send_fixed(httplib::Response& res, std::string text, const char* content_type) {
  send_fixed(res, std::make_shared<const std::string>(std::move(text)), content_type);
}

bool has_body(const httplib::Request& req) {
  if (req.has_header("Transfer-Encoding")) return true;
  std::string length = req.get_header_value("Content-Length");
  return !length.empty() && length.find_first_not_of('0') != std::string::npos;
}

// The bytes of the request line and headers as sent. cpp-httplib adds four
// headers of its own (REMOTE_ADDR, REMOTE_PORT, LOCAL_ADDR, LOCAL_PORT): not
// the client's, so not counted.
std::size_t head_size(const httplib::Request& req) {
  std::size_t n = req.method.size() + req.target.size() + req.version.size() + 4;
  for (const auto& [key, value] : req.headers) n += key.size() + value.size() + 4;
  std::size_t added = std::string_view("REMOTE_ADDRREMOTE_PORTLOCAL_ADDRLOCAL_PORT").size() + 4 * 4 +
                      req.remote_addr.size() + std::to_string(req.remote_port).size() +
                      req.local_addr.size() + std::to_string(req.local_port).size();
  return n + 2 - std::min(added, n);
}

// Whether `addr` is host:port as cpp-httplib spells the request's addresses
// (getnameinfo, numeric).
bool endpoint_is(const sockaddr_storage& addr, socklen_t len, const std::string& host, int port) {
  char name[NI_MAXHOST];
  char service[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, name, sizeof name, service,
                  sizeof service, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return false;
  return host == name && std::to_string(port) == service;
}

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = sizeof(sockaddr_storage);
};

int port_of(const Endpoint& e) {
  if (e.addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(e.addr).sin_port);
  if (e.addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(e.addr).sin6_port);
  return -1;
}

// Calls visit(fd, local, peer) on each connected socket of this process until
// it returns true; returns that descriptor, or -1. cpp-httplib 0.11.4 does not
// say which sockets it serves, but /proc/self/fd does.
template <typename Visit>
int find_connection(Visit visit) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    long number = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || end == entry->d_name || number == dirfd(dir)) continue;
    int fd = static_cast<int>(number);
    Endpoint local;
    Endpoint peer;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local.addr), &local.len) != 0 ||
        getpeername(fd, reinterpret_cast<sockaddr*>(&peer.addr), &peer.len) != 0)
      continue;  // not a socket, or not connected (a listener)
    if (visit(fd, local, peer)) {
      found = fd;
      break;
    }
  }
  closedir(dir);
  return found;
}

// The descriptor of the connection `req` came on, or -1: the one socket with
// the request's local and remote address. Handlers get neither the stream nor
// the socket; only refused requests pay for this walk.
int connection_fd(const httplib::Request& req) {
  return find_connection([&req](int, const Endpoint& local, const Endpoint& peer) {
    return endpoint_is(local.addr, local.len, req.local_addr, req.local_port) &&
           endpoint_is(peer.addr, peer.len, req.remote_addr, req.remote_port);
  });
}

// Ends the connection `req` came on once its answer is written: FIN after the
// answer, then /dev/null over the descriptor, so the library's next read sees
// end of file and it closes the descriptor itself (the number is never free
// for another thread to reuse meanwhile). Unread body bytes are never parsed.
void close_connection(const httplib::Request& req) {
  int fd = connection_fd(req);
  if (fd < 0) return;  // the library goes on as usual: the body is parsed and refused
  ::shutdown(fd, SHUT_WR);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) return;
  ::dup3(null_fd, fd, O_CLOEXEC);
  ::close(null_fd);
}

httplib::Server::HandlerResponse refuse(httplib::Response& res, int status, std::string why,
                                        bool body_unread) {
  res.status = status;
  send_fixed(res, std::move(why) + "\n", "text/plain; charset=utf-8");
  if (body_unread) {
    res.set_header("Connection", "close");
    t_close_after_answer = true;
  }
  return httplib::Server::HandlerResponse::Handled;
}

void check_options(const ServerOptions& o) {
  if (o.threads == 0) throw std::invalid_argument("ServerOptions::threads must be at least 1");
  if (o.keep_alive_max == 0)
    throw std::invalid_argument("ServerOptions::keep_alive_max must be at least 1");
  if (o.read_timeout.count() <= 0 || o.write_timeout.count() <= 0 || o.keep_alive_timeout.count() <= 0)
    throw std::invalid_argument("ServerOptions timeouts must be positive");
  if (o.listen_backlog <= 0) throw std::invalid_argument("ServerOptions::listen_backlog must be positive");
}

}  // namespace

MetricsServer::MetricsServer(std::shared_ptr<RoleSource> source, const ServerOptions& options)
    : options_(options) {
  check_options(options_);
  new_task_queue = [n = options_.threads] { return new httplib::ThreadPool(n); };
  set_read_timeout(options_.read_timeout);
  set_write_timeout(options_.write_timeout);
  // The library writes the head and the body separately: with Nagle, a
  // keep-alive client's delayed ACK holds every body back ~40 ms.
  set_tcp_nodelay(true);
  set_keep_alive_max_count(options_.keep_alive_max);
  set_keep_alive_timeout(options_.keep_alive_timeout.count());
  // Every body is refused before the library reads it; this bounds any route
  // that takes one later.
  set_payload_max_length(options_.max_request_bytes);
  set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    return refuse_abuse(req, res);
  });
  // The library adds Keep-Alive to an answer after which it would go on
  // reading; ours says Connection: close.
  set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
    if (t_close_after_answer) res.headers.erase("Keep-Alive");
  });
  set_logger([](const httplib::Request& req, const httplib::Response&) {
    if (!t_close_after_answer) return;
    t_close_after_answer = false;
    close_connection(req);
  });
  route_metrics(std::move(source));
}

void MetricsServer::route_metrics(std::shared_ptr<RoleSource> source) {
  // HEAD reaches this handler too; the library sends the headers only.
  Get("/metrics", [source](const httplib::Request&, httplib::Response& res) {
    send_fixed(res, source->scrape_shared(), kTextContentType);
  });
}

// Runs before routing, after the head is read and before any body is.
httplib::Server::HandlerResponse MetricsServer::refuse_abuse(const httplib::Request& req,
                                                             httplib::Response& res) const {
  t_close_after_answer = false;  // never left over from a request whose answer failed
  bool body = has_body(req);
  if (head_size(req) > options_.max_request_bytes)
    return refuse(res, 431, "request head larger than " + std::to_string(options_.max_request_bytes) + " bytes",
                  body);
  if (req.path == "/metrics" && req.method != "GET" && req.method != "HEAD") {
    res.set_header("Allow", "GET, HEAD");
    return refuse(res, 405, "method " + req.method + " not allowed on /metrics: use GET or HEAD", body);
  }
  // No route takes a body. Refused unread, a body costs nothing; the library
  // would read one into memory, or hold the thread to skip a too long one.
  if (body) return refuse(res, 413, "request bodies are not accepted", true);
  return HandlerResponse::Unhandled;
}

int MetricsServer::bind_listener(const std::string& host, int port, std::string& error) {
  int bound = port == 0 ? bind_to_any_port(host) : (bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    error = "cannot bind (address in use, or not an address of this host?)";
    return -1;
  }
  // The library listened with a backlog of 5: a burst of connects beyond it
  // waits for SYN retransmits (1 s, then 3 s). Listening again raises it.
  if (::listen(svr_sock_, options_.listen_backlog) != 0) {
    error = "cannot raise the listen backlog to " + std::to_string(options_.listen_backlog) + ": " +
            std::strerror(errno);
    return -1;
  }
  port_ = bound;
  return bound;
}

void MetricsServer::disconnect_clients() {
  if (port_ <= 0) return;
  find_connection([this](int fd, const Endpoint& local, const Endpoint&) {
    if (port_of(local) == port_) ::shutdown(fd, SHUT_RDWR);
    return false;
  });
}

std::unique_ptr<MetricsServer> make_metrics_server(std::shared_ptr<RoleSource> source,
                                                   const ServerOptions& options) {
  return std::make_unique<MetricsServer>(std::move(source), options);
}

}  // namespace shmetrics::exporter
