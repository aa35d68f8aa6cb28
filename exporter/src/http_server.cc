#include "http_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

// Runs before routing, after the head is read and before any body is. The
// rules, first match wins: a head over max_request_bytes gets 431; a body 413
// (no route takes one); a path other than /metrics 404; a method other than
// GET or HEAD 405.
httplib::Server::HandlerResponse MetricsServer::refuse_abuse(const httplib::Request& req,
                                                             httplib::Response& res) const {
  t_close_after_answer = false;  // never left over from a request whose answer failed
  bool body = has_body(req);
  if (head_size(req) > options_.max_request_bytes)
    return refuse(res, 431, "request head larger than " + std::to_string(options_.max_request_bytes) + " bytes",
                  body);
  // Refused unread, a body costs nothing; the library would read one into
  // memory, or hold the thread to skip a too long one.
  if (body) return refuse(res, 413, "request bodies are not accepted", true);
  if (req.path != "/metrics") return refuse(res, 404, "not found: only /metrics is served", false);
  if (req.method != "GET" && req.method != "HEAD") {
    res.set_header("Allow", "GET, HEAD");
    return refuse(res, 405, "method " + req.method + " not allowed on /metrics: use GET or HEAD", false);
  }
  return HandlerResponse::Unhandled;
}

namespace {

// The numeric address of `addr` as HOST:PORT, an IPv6 host in brackets.
std::string address_text(const sockaddr_storage& addr, socklen_t len) {
  char host[NI_MAXHOST];
  char service[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host, sizeof host, service, sizeof service,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "?";
  return addr.ss_family == AF_INET6 ? "[" + std::string(host) + "]:" + service
                                    : std::string(host) + ":" + service;
}

// A listening socket bound to `address`, or -1 with `error` naming the
// failed call and errno.
int listen_on(const addrinfo& address, int backlog, std::string& error) {
  int fd = ::socket(address.ai_family, address.ai_socktype | SOCK_CLOEXEC, address.ai_protocol);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  auto fail = [&](const char* call) {
    error = std::strerror(errno);
    if (call != nullptr) error = std::string(call) + ": " + error;
    ::close(fd);
    return -1;
  };
  // SO_REUSEADDR lets a restarted exporter bind while old connections linger
  // in TIME_WAIT. Accepted sockets inherit TCP_NODELAY: the library writes
  // the head and the body separately, and with Nagle a keep-alive client's
  // delayed ACK holds every body back ~40 ms. [::] takes IPv4 clients too.
  int one = 1;
  int zero = 0;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
      (address.ai_family == AF_INET6 && ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0))
    return fail("setsockopt");
  if (::bind(fd, address.ai_addr, address.ai_addrlen) != 0) return fail(nullptr);  // the usual failure
  if (::listen(fd, backlog) != 0) return fail("listen");
  return fd;
}

}  // namespace

// Binds through the sockets API, not the library's bind_to_port: that one
// drops errno, and sets SO_REUSEPORT, with which a second exporter on the
// same port starts without a word and takes half the scrapes. The socket is
// handed to the library as its listener (svr_sock_ is protected, 0.11.4 has
// no public call for it), which listen_after_bind then serves.
int MetricsServer::bind_listener(const std::string& host, int port, std::string& error) {
  std::string wanted =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0) {
    error = "cannot listen on " + wanted + ": cannot resolve \"" + host + "\": " +
            (rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc));
    return -1;
  }
  // Like the library: the first address of `host` that can be bound.
  int fd = -1;
  std::string why;
  for (const addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next)
    fd = listen_on(*a, options_.listen_backlog, why);
  freeaddrinfo(found);
  if (fd < 0) {
    error = "cannot listen on " + wanted + ": " + why;
    return -1;
  }
  Endpoint local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local.addr), &local.len) != 0) {
    error = "cannot listen on " + wanted + ": getsockname: " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  svr_sock_ = fd;
  port_ = port_of(local);
  address_ = address_text(local.addr, local.len);
  return port_;
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
