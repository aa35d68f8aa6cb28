#include "http_server.h"

#include "log.h"
#include "web_config.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <netdb.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

namespace shmetrics::exporter {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// Logs an event at most once per kEvery, with how often it happened since.
class ThrottledLog {
 public:
  static constexpr auto kEvery = std::chrono::seconds(10);

  void note(std::string_view level, std::string_view event, const std::string& role,
            std::uint64_t total, std::string_view reason) {
    std::unique_lock lock(mutex_);
    ++unlogged_;
    Clock::time_point now = Clock::now();
    if (now < next_) return;
    next_ = now + kEvery;
    std::string since = std::to_string(unlogged_);
    unlogged_ = 0;
    lock.unlock();
    std::string count = std::to_string(total);
    log_event(level, event, {{"role", role}, {"count", count}, {"since_last_log", since}, {"reason", reason}});
  }

 private:
  std::mutex mutex_;
  Clock::time_point next_{};
  std::uint64_t unlogged_ = 0;
};

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

int port_of(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(addr).sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(addr).sin6_port);
  return -1;
}

// A listening socket bound to `address`, or -1 with `error` naming the
// failed call and errno. SO_REUSEADDR only: it lets a restarted exporter
// bind while old connections linger in TIME_WAIT, where SO_REUSEPORT would
// let a second exporter share the port and take half the scrapes.
int listen_on(const addrinfo& address, int backlog, std::string& error) {
  int fd = ::socket(address.ai_family, address.ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, address.ai_protocol);
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
  // Accepted sockets inherit TCP_NODELAY. [::] takes IPv4 clients too.
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

void check_options(const ServerOptions& o) {
  if (o.threads == 0) throw std::invalid_argument("ServerOptions::threads must be at least 1");
  if (o.max_connections == 0) throw std::invalid_argument("ServerOptions::max_connections must be at least 1");
  if (o.max_request_bytes < 64) throw std::invalid_argument("ServerOptions::max_request_bytes must be at least 64");
  if (o.header_timeout.count() <= 0 || o.keep_alive_timeout.count() <= 0 || o.write_timeout.count() <= 0)
    throw std::invalid_argument("ServerOptions timeouts must be positive");
  if (o.listen_backlog <= 0) throw std::invalid_argument("ServerOptions::listen_backlog must be positive");
  if (o.max_pending_auth == 0) throw std::invalid_argument("ServerOptions::max_pending_auth must be at least 1");
}

// Lingering close: after the answer and a FIN, unread bytes of the client
// (a refused body, say) are read and dropped for a while, so the kernel
// does not answer them with a reset that could destroy the answer before
// the client reads it.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr std::size_t kLingerBytes = 64 * 1024;

}  // namespace

// One io_context per serving thread, each run by that thread alone: a
// connection lives on one of them (taken in turn at accept) and all its
// handlers run there, in order, with no strand. Other threads only post to
// it: a render's body for the scrapes that shared it, a password check's
// verdict, an eviction. (One context run by every thread woke another
// thread for most handlers: on a busy CPU those hand-offs cost more than
// serving.) The acceptors have a context and a thread of their own, so a
// long render never delays an accept, and accepted sockets move to their
// context.
struct HttpServer::Io {
  explicit Io(std::size_t threads) : renders(threads) {
    for (std::size_t i = 0; i < threads + 1; ++i) {
      contexts.push_back(std::make_unique<asio::io_context>(1));
      guards.push_back(asio::make_work_guard(*contexts.back()));
    }
  }
  asio::io_context& acceptors() { return *contexts.front(); }
  // A serving context, taken in turn.
  asio::io_context& next() {
    return *contexts[1 + turn.fetch_add(1, std::memory_order_relaxed) % (contexts.size() - 1)];
  }

  // The acceptors' context, then one per serving thread; destroyed last
  // first: the first holds the acceptors, which the connections on the
  // others keep alive through their listener.
  struct Contexts : std::vector<std::unique_ptr<asio::io_context>> {
    ~Contexts() {
      while (!empty()) pop_back();
    }
  } contexts;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::atomic<std::size_t> turn{0};
  // Bcrypt, one at a time, off the threads serving connections. Declared
  // after the contexts, so destroyed before them: the checks still queued
  // at stop hold their connections, whose sockets, timers and listener
  // belong to the contexts.
  asio::thread_pool auth{1};
  std::atomic<std::size_t> pending_auth{0};  // checks queued or running there
  // Renders, off the threads serving connections: a long render (a large
  // segment, gzip) holds one of these, never a connection's thread, so the
  // other connections of that thread (other roles, probes) go on. As many
  // as serving threads: renders are work for the CPUs. Each role renders
  // one at a time; up to this many roles at once.
  asio::thread_pool renders;
  std::vector<std::thread> threads;
  bool started = false;
  bool stopped = false;
};

class ConnectionBase;

struct HttpServer::Listener : std::enable_shared_from_this<HttpServer::Listener> {
  Listener(HttpServer::Io& server_io, std::vector<std::shared_ptr<RoleSource>> role_sources, bool role_paths,
           const ServerOptions& o)
      : io(server_io), auth(server_io.auth), pending_auth(server_io.pending_auth), sources(std::move(role_sources)),
        per_role_paths(role_paths), name(HttpServer::role_names(sources)), options(o), acceptor(server_io.acceptors()),
        retry(acceptor.get_executor()), renders_of(sources.size()) {}

  void accept();
  void on_accept(beast::error_code ec, tcp::socket socket);
  bool admit();
  void give_back_slot();  // of a connection admitted but never started
  void release(ConnectionBase& c);
  void wait_begin(ConnectionBase& c);
  void wait_end(ConnectionBase& c);
  void request_body(std::shared_ptr<ConnectionBase> c);
  void render_for_waiters(std::size_t role);
  void drop_body_waiters();

  HttpServer::Io& io;
  asio::thread_pool& auth;
  std::atomic<std::size_t>& pending_auth;  // the server's, all listeners together
  std::shared_ptr<WebConfigWatcher> web_config;  // null: plain HTTP, no auth
  // The roles served: one at /metrics, or (per_role_paths) each at
  // /metrics/<role>.
  const std::vector<std::shared_ptr<RoleSource>> sources;
  const bool per_role_paths;
  const std::string name;
  const ServerOptions options;
  tcp::acceptor acceptor;
  asio::steady_timer retry;  // after accept fails for want of descriptors or memory
  std::string address;
  int port = 0;

  std::atomic<std::uint64_t> accepted{0}, refused{0}, evicted{0}, header_timeouts{0}, requests{0},
      unauthorized{0}, auth_busy{0}, renders{0};
  ThrottledLog refused_log, evicted_log, accept_error_log;

  // The connections and the order they began waiting for a request head.
  std::mutex mutex;
  std::list<ConnectionBase*> waiting;  // longest waiting first
  std::size_t open = 0;                // slots taken

  // Scrapes waiting for a body, and whether a render for them is posted or
  // running. One render serves every scrape that asked before it ended:
  // scrapes whose heads came in one batch of events share a render.
  std::mutex body_mutex;
  // Renders expected to take less run on the connection's thread: they hold
  // it at most this long (times Exposition::kCount, then they yield).
  static constexpr std::chrono::microseconds kInlineRender{500};
  // Per role (index in sources): a shared listener renders its roles side
  // by side, as listeners of their own would.
  struct RoleRenders {
    std::array<std::vector<std::shared_ptr<ConnectionBase>>, Exposition::kCount> body_waiters;  // per exposition
    bool render_posted = false;
    bool rendering = false;
    // How long its last render took: one that is cheap runs on the thread of
    // the connection that asked (no hand-off, which on a busy CPU costs more
    // than the render), a costly one on a render thread. The first (which
    // parses the whole segment) always on a render thread.
    std::chrono::nanoseconds last_render = kInlineRender;
  };
  // Where the next render of `r` runs (under body_mutex).
  asio::any_io_executor render_executor(const RoleRenders& r, const asio::any_io_executor& connection) {
    if (r.last_render < kInlineRender) return connection;
    return io.renders.get_executor();
  }
  std::vector<RoleRenders> renders_of;
};

// What the listener knows of a connection: whether it waits for a request
// head (and since when, by its place in the list), and whether it was
// evicted. Closing is posted to the connection's context.
class ConnectionBase : public std::enable_shared_from_this<ConnectionBase> {
 public:
  ConnectionBase(std::shared_ptr<HttpServer::Listener> listener, asio::any_io_executor strand)
      : listener_(std::move(listener)), strand_(std::move(strand)) {}
  virtual ~ConnectionBase() { listener_->release(*this); }

  // The exposition asked for by request_body, or why there is none.
  virtual void body_ready(std::shared_ptr<const std::string> body, std::exception_ptr error) = 0;

  // Closes the connection on its own context, if it still exists. Not
  // virtual: it may run while the object is being destroyed elsewhere.
  void evict() {
    asio::post(strand_, [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->close_now();
    });
  }

  const asio::any_io_executor& executor() const { return strand_; }
  // What the request being answered negotiated, and the role (its index in
  // the listener's sources) it asks for; set before request_body.
  const Negotiated& negotiated() const { return negotiated_; }
  std::size_t role_index() const { return role_index_; }

 protected:
  virtual void close_now() = 0;

  std::shared_ptr<HttpServer::Listener> listener_;
  // The connection's own context: one thread runs its handlers in order.
  asio::any_io_executor strand_;
  Negotiated negotiated_;
  std::size_t role_index_ = 0;

 private:
  friend struct HttpServer::Listener;
  std::list<ConnectionBase*>::iterator waiting_at_;
  bool is_waiting_ = false;  // under the listener's mutex
  bool was_evicted_ = false;
};

bool HttpServer::Listener::admit() {
  std::lock_guard lock(mutex);
  if (open < options.max_connections) {
    ++open;
    return true;
  }
  if (waiting.empty()) return false;
  // The slot of the connection that waited longest passes to the new one.
  ConnectionBase* oldest = waiting.front();
  waiting.pop_front();
  oldest->is_waiting_ = false;
  oldest->was_evicted_ = true;
  evicted.fetch_add(1, std::memory_order_relaxed);  // before the close a client may see
  oldest->evict();
  return true;
}

void HttpServer::Listener::give_back_slot() {
  std::lock_guard lock(mutex);
  --open;
}

void HttpServer::Listener::release(ConnectionBase& c) {
  std::lock_guard lock(mutex);
  if (c.is_waiting_) waiting.erase(c.waiting_at_);
  c.is_waiting_ = false;
  if (!c.was_evicted_) --open;
}

void HttpServer::Listener::wait_begin(ConnectionBase& c) {
  std::lock_guard lock(mutex);
  if (c.is_waiting_ || c.was_evicted_) return;
  c.waiting_at_ = waiting.insert(waiting.end(), &c);
  c.is_waiting_ = true;
}

void HttpServer::Listener::wait_end(ConnectionBase& c) {
  std::lock_guard lock(mutex);
  if (c.is_waiting_) waiting.erase(c.waiting_at_);
  c.is_waiting_ = false;
}

// Asks for the exposition of c's role for `c`, answered on c's context through
// body_ready. The render is posted behind the events already queued, so
// scrapes whose heads arrived together (one epoll batch on one thread, or
// others meanwhile) share it; one that asks while it runs takes it too, as
// RoleSource::scrape_shared does.
void HttpServer::Listener::request_body(std::shared_ptr<ConnectionBase> c) {
  asio::any_io_executor ex = c->executor();
  {
    std::lock_guard lock(body_mutex);
    const std::size_t role = c->role_index();
    sources.at(role)->count_scrape(c->negotiated().exposition);
    RoleRenders& r = renders_of.at(role);
    r.body_waiters[c->negotiated().exposition.index()].push_back(std::move(c));
    if (r.render_posted || r.rendering) return;
    r.render_posted = true;
    asio::post(render_executor(r, ex), [self = shared_from_this(), role] { self->render_for_waiters(role); });
  }
}

// Renders each exposition of `role` that scrapes wait for (a format and an
// encoding: each its own body), on a render thread (or inline on the asking
// connection's thread, when the role's last render was cheap: see
// render_executor), until none waits; after
// as many renders as there are expositions it goes to the back of the render
// queue, so scrapes asking without pause for two expositions cannot keep a
// render thread from other roles.
void HttpServer::Listener::render_for_waiters(std::size_t role) {
  std::unique_lock lock(body_mutex);
  RoleRenders& r = renders_of[role];
  r.render_posted = false;
  for (std::size_t round = 0;; ++round) {
    std::size_t index = 0;
    while (index < Exposition::kCount && r.body_waiters[index].empty()) ++index;
    if (index == Exposition::kCount) {
      r.rendering = false;
      return;
    }
    if (round == Exposition::kCount) {
      r.rendering = false;
      r.render_posted = true;
      asio::any_io_executor ex = render_executor(r, r.body_waiters[index].front()->executor());
      lock.unlock();
      asio::post(ex, [self = shared_from_this(), role] { self->render_for_waiters(role); });
      return;
    }
    r.rendering = true;
    const Exposition exposition = r.body_waiters[index].front()->negotiated().exposition;
    lock.unlock();
    std::shared_ptr<const std::string> body;
    std::exception_ptr error;
    const auto started = Clock::now();
    try {
      body = sources[role]->scrape_shared(exposition, false);  // each scrape counted when it asked
    } catch (...) {
      error = std::current_exception();
    }
    std::vector<std::shared_ptr<ConnectionBase>> served;
    lock.lock();
    r.last_render = Clock::now() - started;
    renders.fetch_add(1, std::memory_order_relaxed);
    served.swap(r.body_waiters[index]);
    lock.unlock();
    // Posted to each connection's own thread.
    for (auto& c : served) {
      asio::any_io_executor ex = c->executor();
      asio::post(ex, [c = std::move(c), body, error] { c->body_ready(body, error); });
    }
    lock.lock();
  }
}

// At stop, after the threads are gone: the connections waiting for a body
// are destroyed while their contexts still exist.
void HttpServer::Listener::drop_body_waiters() {
  std::vector<RoleRenders> dropped(renders_of.size());
  std::lock_guard lock(body_mutex);
  dropped.swap(renders_of);
}

namespace {

using Parser = http::request_parser<http::empty_body>;

struct Answer {
  http::status status = http::status::ok;
  std::string text;  // the body of a refusal
  bool close = false;
  bool allow = false;         // add Allow: GET, HEAD
  bool authenticate = false;  // add WWW-Authenticate: Basic
  const char* content_type = "text/plain; charset=utf-8";
};

std::string_view view(beast::string_view s) { return {s.data(), s.size()}; }

// The path of a request target, without its query; an absolute-form
// target (http://host:port/metrics, as sent to proxies) without its scheme
// and authority, as RFC 9112 asks servers to accept.
std::string_view target_path(beast::string_view target) {
  std::string_view t = view(target);
  for (std::string_view scheme : {"http://", "https://"}) {
    std::string_view head = t.substr(0, scheme.size());
    if (beast::iequals(beast::string_view(head.data(), head.size()),
                       beast::string_view(scheme.data(), scheme.size()))) {
      std::size_t slash = t.find('/', scheme.size());
      t = slash == std::string_view::npos ? std::string_view("/") : t.substr(slash);
      break;
    }
  }
  return t.substr(0, t.find('?'));
}

// The first rule of the protocol a request head breaks, checked before
// authentication. No request carries a body: one announcing a body is
// refused unread and its connection closed, so the body is never parsed as
// a request.
std::optional<Answer> refuse_framing(const http::request<http::empty_body>& req, const Parser& parser) {
  if (req.version() != 10 && req.version() != 11)
    return Answer{http::status::http_version_not_supported, "HTTP/1.0 and HTTP/1.1 are served", true};
  std::size_t lengths = 0;
  for (const auto& field : req) {
    if (field.name() != http::field::content_length) continue;
    lengths += 1 + static_cast<std::size_t>(std::count(field.value().begin(), field.value().end(), ','));
  }
  if (lengths > 1) return Answer{http::status::bad_request, "several Content-Length values", true};
  if (req.find(http::field::transfer_encoding) != req.end() || parser.chunked() ||
      parser.content_length().value_or(0) > 0)
    return Answer{http::status::payload_too_large, "request bodies are not accepted", true};
  return std::nullopt;
}

// What a path asks for: a role's exposition (by its index in the
// listener's sources), the landing page or the health of every role.
struct Route {
  enum Kind { kMetrics, kLanding, kHealth } kind;
  std::size_t role = 0;
};

// The paths served: /metrics (or /metrics/<role> for each role of a shared
// listener), a landing page and two health checks.
std::optional<Route> route_of(const HttpServer::Listener& l, std::string_view path) {
  if (path == "/") return Route{Route::kLanding};
  if (path == "/healthz" || path == "/-/ready") return Route{Route::kHealth};
  if (!l.per_role_paths) {
    if (path == "/metrics") return Route{Route::kMetrics};
    return std::nullopt;
  }
  constexpr std::string_view kPrefix = "/metrics/";
  if (!path.starts_with(kPrefix)) return std::nullopt;
  const std::string_view role = path.substr(kPrefix.size());
  for (std::size_t i = 0; i < l.sources.size(); ++i)
    if (l.sources[i]->role() == role) return Route{Route::kMetrics, i};
  return std::nullopt;
}

std::string paths_served(const HttpServer::Listener& l) {
  std::string metrics;
  if (!l.per_role_paths) metrics = "/metrics";
  for (std::size_t i = 0; l.per_role_paths && i < l.sources.size(); ++i)
    metrics += (i == 0 ? "/metrics/" : ", /metrics/") + l.sources[i]->role();
  return metrics + ", /, /healthz and /-/ready are served";
}

// After authentication: the refusal of an unknown path, or of a method but
// GET or HEAD; otherwise nothing, and `route` is the request's.
std::optional<Answer> refuse_route(const HttpServer::Listener& l, const http::request<http::empty_body>& req,
                                   Route& route) {
  const std::string_view path = target_path(req.target());
  const std::optional<Route> found = route_of(l, path);
  if (!found) return Answer{http::status::not_found, "not found: " + paths_served(l)};
  route = *found;
  if (req.method() != http::verb::get && req.method() != http::verb::head)
    return Answer{http::status::method_not_allowed,
                  "method " + std::string(view(req.method_string())) + " not allowed on " + std::string(path) +
                      ": use GET or HEAD",
                  false, true};
  return std::nullopt;
}

void append_html_escaped(std::string& out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
}

// GET /: what this listener is, for a person with a browser.
Answer landing_page(const HttpServer::Listener& l) {
  std::string roles;
  append_html_escaped(roles, l.name);
  std::string page = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>shmetrics exporter: " + roles +
                     "</title></head>\n<body><h1>shmetrics exporter</h1>\n";
  for (const auto& source : l.sources) {
    std::string role;
    append_html_escaped(role, source->role());
    const std::string path = l.per_role_paths ? "/metrics/" + role : "/metrics";
    page += "<p>Role <b>" + role + "</b>: <a href=\"" + path + "\">" + path + "</a></p>\n";
  }
  page += "<p>Health: <a href=\"/healthz\">/healthz</a></p>\n<p>Version ";
  append_html_escaped(page, l.options.version);
  page += ", segment layout " + std::to_string(shm::kLayoutVersion) + ".</p>\n</body></html>";
  Answer a{http::status::ok, std::move(page)};
  a.content_type = "text/html; charset=utf-8";
  return a;
}

// GET /healthz and /-/ready: 200 while the segment of every role served is
// attached and trusted, 503 with each reason otherwise.
Answer health(const HttpServer::Listener& l) {
  std::string ok;
  std::string down;
  for (const auto& source : l.sources) {
    std::string reason;
    const std::string prefix = l.sources.size() > 1 ? source->role() + ": " : "";
    if (source->segment_ok(reason)) ok += (ok.empty() ? "" : "\n") + prefix + "segment " + source->segment_path() + " is served";
    else down += (down.empty() ? "" : "\n") + prefix + reason;
  }
  if (down.empty()) return Answer{http::status::ok, "ok: " + ok};
  return Answer{http::status::service_unavailable, "unavailable: " + down};
}

// The first byte of a TLS connection: a handshake record. Anything else is
// a client speaking plain HTTP to a TLS port.
constexpr unsigned char kTlsHandshakeRecord = 0x16;
constexpr std::string_view kPlainToTls =
    "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
    "Client sent an HTTP request to an HTTPS server.\n";

// One connection, plain or TLS: reads request heads one after another
// (pipelined ones in order), answers each, and closes at the first error,
// refusal that leaves bytes unread, deadline, or eviction.
template <bool kTls>
class Connection final : public ConnectionBase {
 public:
  using Stream = std::conditional_t<kTls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;

  Connection(std::shared_ptr<HttpServer::Listener> listener, tcp::socket socket,
             std::shared_ptr<ssl::context> tls)
      : ConnectionBase(std::move(listener), socket.get_executor()),
        tls_(std::move(tls)),
        stream_(make_stream(std::move(socket), tls_.get())),
        buffer_(listener_->options.max_request_bytes) {}

  void start() {
    asio::dispatch(strand_, [self = shared()] {
      // The first head, TLS handshake included, is due header_timeout
      // after the accept; so is an idle connection's first byte.
      self->tcp().expires_after(self->listener_->options.header_timeout);
      self->listener_->wait_begin(*self);
      if constexpr (kTls) {
        self->tcp().async_read_some(self->buffer_.prepare(self->buffer_.max_size()),
                                    [self](beast::error_code ec, std::size_t n) { self->on_first_bytes(ec, n); });
      } else {
        self->read_head();
      }
    });
  }

 private:
  static Stream make_stream(tcp::socket socket, ssl::context* tls) {
    if constexpr (kTls) return Stream(std::move(socket), *tls);
    else return Stream(std::move(socket));
  }

  std::shared_ptr<Connection> shared() { return std::static_pointer_cast<Connection>(shared_from_this()); }
  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }

  void close_now() override {
    beast::error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().close();
  }

  // TLS: the client's first bytes decide. A handshake goes on with them; a
  // plain HTTP request gets the 400 Go's servers give it, in plain text.
  void on_first_bytes(beast::error_code ec, std::size_t n) {
    buffer_.commit(n);
    if (ec) {
      listener_->wait_end(*this);
      if (ec == beast::error::timeout) listener_->header_timeouts.fetch_add(1, std::memory_order_relaxed);
      return close_now();
    }
    if (static_cast<const unsigned char*>(buffer_.data().data())[0] != kTlsHandshakeRecord) {
      listener_->wait_end(*this);
      tcp().expires_after(listener_->options.write_timeout);
      return asio::async_write(tcp(), asio::buffer(kPlainToTls.data(), kPlainToTls.size()),
                               [self = shared()](beast::error_code write_ec, std::size_t) {
                                 if (write_ec) return self->close_now();
                                 self->linger_plain();
                               });
    }
    if constexpr (kTls) {
      stream_.async_handshake(ssl::stream_base::server, buffer_.data(),
                              [self = shared()](beast::error_code handshake_ec, std::size_t used) {
                                self->buffer_.consume(used);
                                self->on_handshake(handshake_ec);
                              });
    }
  }

  void on_handshake(beast::error_code ec) {
    if (ec) {
      listener_->wait_end(*this);
      if (ec == beast::error::timeout) listener_->header_timeouts.fetch_add(1, std::memory_order_relaxed);
      return close_now();
    }
    read_head();
  }

  // Waits for the next request: up to keep_alive_timeout for its first
  // byte (header_timeout on a new connection), then header_timeout for the
  // rest of its head. Bytes already buffered (pipelined) start the head.
  void read_head() {
    if (buffer_.size() == 0 && !first_) {
      listener_->wait_begin(*this);
      tcp().expires_after(listener_->options.keep_alive_timeout);
      stream_.async_read_some(buffer_.prepare(buffer_.max_size()),
                              [self = shared()](beast::error_code ec, std::size_t n) {
                                self->buffer_.commit(n);
                                if (ec) {
                                  self->listener_->wait_end(*self);
                                  return self->close_now();
                                }
                                self->tcp().expires_after(self->listener_->options.header_timeout);
                                self->parse_head();
                              });
      return;
    }
    if (!first_) {
      listener_->wait_begin(*this);
      tcp().expires_after(listener_->options.header_timeout);
    }
    parse_head();
  }

  // Reads a request head, counting its bytes: Beast 1.74's header_limit
  // bounds only the bytes its parser has not consumed yet, so a head of many
  // short fields (each consumed, and kept, as it completes) would pass it.
  void parse_head() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(listener_->options.max_request_bytes));
    head_bytes_ = 0;
    feed_head();
  }

  void feed_head() {
    const std::size_t limit = listener_->options.max_request_bytes;
    while (buffer_.size() > 0 && !parser_->is_header_done()) {
      beast::error_code ec;
      std::size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      head_bytes_ += used;
      if (head_bytes_ > limit) return on_head(http::error::header_limit);
      if (ec == http::error::need_more) break;
      if (ec) return on_head(ec);
    }
    if (parser_->is_header_done()) return on_head({});
    // What is buffered is an incomplete head: it may grow to the limit.
    if (head_bytes_ + buffer_.size() >= limit) return on_head(http::error::header_limit);
    stream_.async_read_some(buffer_.prepare(limit - head_bytes_ - buffer_.size()),
                            [self = shared()](beast::error_code ec, std::size_t n) {
                              self->buffer_.commit(n);
                              if (ec == asio::error::eof)
                                ec = self->head_bytes_ + self->buffer_.size() == 0 ? http::error::end_of_stream
                                                                                  : http::error::partial_message;
                              if (ec) return self->on_head(ec);
                              self->feed_head();
                            });
  }

  void on_head(beast::error_code ec) {
    listener_->wait_end(*this);
    first_ = false;
    // The configuration of this request: its headers go on every answer.
    config_ = listener_->web_config ? listener_->web_config->current() : nullptr;
    if (ec == beast::error::timeout) {
      listener_->header_timeouts.fetch_add(1, std::memory_order_relaxed);
      return close_now();
    }
    if (ec == http::error::end_of_stream || ec == http::error::partial_message || ec == asio::error::eof ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
        ec == asio::error::bad_descriptor || ec == ssl::error::stream_truncated)
      return close_now();
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow)
      return answer(Answer{http::status::request_header_fields_too_large,
                           "request head larger than " + std::to_string(listener_->options.max_request_bytes) +
                               " bytes",
                           true},
                    11, false);
    if (ec)
      return answer(Answer{http::status::bad_request, "malformed request: " + ec.message(), true}, 11, false);
    listener_->requests.fetch_add(1, std::memory_order_relaxed);
    const auto& req = parser_->get();
    if (auto refusal = refuse_framing(req, *parser_)) return answer(std::move(*refusal), req.version(), head_only());
    if (config_ && config_->auth->enabled()) {
      auto found = req.find(http::field::authorization);
      std::string authorization = found == req.end() ? std::string() : std::string(view(found->value()));
      if (std::optional<bool> known = config_->auth->cached(authorization)) return authorized(*known);
      // Bcrypt on the auth thread, at most max_pending_auth checks queued
      // for the whole server; the answer comes back on this strand.
      if (listener_->pending_auth.fetch_add(1) >= listener_->options.max_pending_auth) {
        listener_->pending_auth.fetch_sub(1);
        listener_->auth_busy.fetch_add(1, std::memory_order_relaxed);
        return answer(Answer{http::status::service_unavailable,
                             "too many password checks in progress; try again", true},
                      req.version(), head_only());
      }
      asio::post(listener_->auth, [self = shared(), auth = config_->auth, authorization = std::move(authorization)] {
        bool ok = auth->check(authorization);
        self->listener_->pending_auth.fetch_sub(1);
        asio::post(self->strand_, [self, ok] { self->authorized(ok); });
      });
      return;
    }
    authorized(true);
  }

  bool head_only() const { return parser_->get().method() == http::verb::head; }

  void authorized(bool ok) {
    const auto& req = parser_->get();
    if (!ok) {
      listener_->unauthorized.fetch_add(1, std::memory_order_relaxed);
      return answer(Answer{http::status::unauthorized, "Unauthorized", !req.keep_alive(), false, true},
                    req.version(), head_only());
    }
    Route route{};
    if (auto refusal = refuse_route(*listener_, req, route)) {
      refusal->close = refusal->close || !req.keep_alive();
      return answer(std::move(*refusal), req.version(), head_only());
    }
    if (route.kind == Route::kMetrics) {
      role_index_ = route.role;
      return serve_metrics();
    }
    Answer page = route.kind == Route::kLanding ? landing_page(*listener_) : health(*listener_);
    page.close = !req.keep_alive();
    answer(std::move(page), req.version(), head_only());
  }

  template <typename Message>
  void add_configured_headers(Message& res) const {
    if (!config_) return;
    for (const auto& [name, value] : config_->config.headers) res.set(name, value);
  }

  // Every line of a header, joined as one list (RFC 9110 §5.3): a client
  // may split Accept over several lines. Within max_request_bytes.
  static std::string joined(const http::request<http::empty_body>& req, http::field name) {
    std::string out;
    for (auto range = req.equal_range(name); range.first != range.second; ++range.first) {
      if (!out.empty()) out += ", ";
      out.append(range.first->value().data(), range.first->value().size());
    }
    return out;
  }

  void serve_metrics() {
    const auto& req = parser_->get();
    negotiated_ = negotiate(joined(req, http::field::accept), joined(req, http::field::accept_encoding));
    listener_->request_body(shared_from_this());
  }

  void body_ready(std::shared_ptr<const std::string> body, std::exception_ptr error) override {
    const auto& req = parser_->get();
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();
    const bool head_only = this->head_only();
    if (error) {
      std::string why = "unknown exception";
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        why = e.what();
      } catch (...) {
      }
      log_event("error", "scrape_failed", {{"role", listener_->sources[role_index_]->role()}, {"reason", why}});
      return answer(Answer{http::status::internal_server_error, "the exposition could not be rendered", true},
                    version, head_only);
    }
    body_ = std::move(body);
    auto res = std::make_shared<http::response<http::span_body<const char>>>(http::status::ok, version);
    res->set(http::field::content_type, negotiated_.content_type);
    if (negotiated_.exposition.encoding == Encoding::kGzip) res->set(http::field::content_encoding, "gzip");
    res->set(http::field::vary, "Accept, Accept-Encoding");
    add_configured_headers(*res);
    if (!head_only) res->body() = beast::span<const char>(body_->data(), body_->size());
    res->content_length(body_->size());
    res->keep_alive(keep_alive);
    send(std::move(res), !keep_alive);
  }

  void answer(Answer a, unsigned version, bool head_only) {
    text_ = std::move(a.text);
    text_ += '\n';
    auto res = std::make_shared<http::response<http::span_body<const char>>>(a.status, version);
    res->set(http::field::content_type, a.content_type);
    if (a.allow) res->set(http::field::allow, "GET, HEAD");
    if (a.authenticate) res->set(http::field::www_authenticate, "Basic");
    if (a.status == http::status::service_unavailable) res->set(http::field::retry_after, "1");
    add_configured_headers(*res);
    if (!head_only) res->body() = beast::span<const char>(text_.data(), text_.size());
    res->content_length(text_.size());
    res->keep_alive(!a.close);
    send(std::move(res), a.close);
  }

  void send(std::shared_ptr<http::response<http::span_body<const char>>> res, bool close) {
    tcp().expires_after(listener_->options.write_timeout);
    http::async_write(stream_, *res, [self = shared(), res, close](beast::error_code ec, std::size_t) {
      self->body_.reset();
      if (ec) return self->close_now();
      if (close) return self->finish();
      self->read_head();
    });
  }

  // Ends the connection after an answer: close_notify for TLS, then FIN,
  // then a lingering read of whatever the client still sends.
  void finish() {
    if constexpr (kTls) {
      listener_->wait_begin(*this);  // answered: its slot may go to a new connection
      tcp().expires_after(kLingerTime);
      stream_.async_shutdown([self = shared()](beast::error_code) { self->close_now(); });
    } else {
      linger_plain();
    }
  }

  void linger_plain() {
    listener_->wait_begin(*this);  // answered: its slot may go to a new connection
    tcp().expires_after(kLingerTime);
    beast::error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
    linger();
  }

  void linger() {
    buffer_.clear();
    tcp().async_read_some(buffer_.prepare(buffer_.max_size()),
                          [self = shared()](beast::error_code ec, std::size_t n) {
                            self->lingered_ += n;
                            if (ec || self->lingered_ >= kLingerBytes) return self->close_now();
                            self->linger();
                          });
  }

  std::shared_ptr<ssl::context> tls_;  // outlives stream_
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<Parser> parser_;
  std::shared_ptr<const LoadedWebConfig> config_;  // of the request being answered
  std::shared_ptr<const std::string> body_;        // the exposition being sent
  std::string text_;                               // a refusal being sent
  bool first_ = true;
  std::size_t head_bytes_ = 0;  // of the head being read, consumed by the parser
  std::size_t lingered_ = 0;
};

}  // namespace

namespace {

// The same connection, served by `context`; on failure it is closed and
// `ec` says why.
tcp::socket move_to(asio::io_context& context, tcp::socket socket, beast::error_code& ec) {
  tcp::socket moved(context);
  const tcp protocol = socket.local_endpoint(ec).protocol();
  if (!ec) {
    tcp::socket::native_handle_type fd = socket.release(ec);
    if (!ec) {
      moved.assign(protocol, fd, ec);
      if (ec) ::close(fd);
    }
  }
  beast::error_code ignored;
  socket.close(ignored);
  return moved;
}

}  // namespace

void HttpServer::Listener::accept() {
  acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    self->on_accept(ec, std::move(socket));
  });
}

void HttpServer::Listener::on_accept(beast::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
  if (ec) {
    // Out of descriptors or memory: waiting connections stay in the
    // backlog until some close; try again shortly instead of spinning.
    accept_error_log.note("error", "accept_failed", name, 0, ec.message());
    retry.expires_after(std::chrono::milliseconds(100));
    retry.async_wait([self = shared_from_this()](beast::error_code wait_ec) {
      if (!wait_ec) self->accept();
    });
    return;
  }
  accepted.fetch_add(1, std::memory_order_relaxed);
  std::uint64_t evicted_before = evicted.load(std::memory_order_relaxed);
  if (!admit()) {
    std::uint64_t total = refused.fetch_add(1, std::memory_order_relaxed) + 1;  // before the close
    beast::error_code ignored;
    socket.close(ignored);
    refused_log.note("warn", "connection_refused", name, total,
                     "every connection slot is busy answering (--max-connections " +
                         std::to_string(options.max_connections) + ")");
  } else {
    if (evicted.load(std::memory_order_relaxed) != evicted_before)
      evicted_log.note("warn", "connection_evicted", name, evicted.load(std::memory_order_relaxed),
                       "connection limit reached (--max-connections " + std::to_string(options.max_connections) +
                           "): closed the connection that waited longest for a request");
    std::shared_ptr<const LoadedWebConfig> config = web_config ? web_config->current() : nullptr;
    // The connection moves to its own context, taken in turn.
    beast::error_code moved;
    socket = move_to(io.next(), std::move(socket), moved);
    if (moved) {
      give_back_slot();
      accept_error_log.note("error", "accept_failed", name, 0,
                            "cannot hand the connection to a serving thread: " + moved.message());
      return accept();
    }
    if (config && config->tls)
      std::make_shared<Connection<true>>(shared_from_this(), std::move(socket), config->tls)->start();
    else
      std::make_shared<Connection<false>>(shared_from_this(), std::move(socket), nullptr)->start();
  }
  accept();
}

std::size_t default_server_threads() {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  if (::sched_getaffinity(0, sizeof cpus, &cpus) != 0) return 4;
  return static_cast<std::size_t>(std::clamp(CPU_COUNT(&cpus), 1, 4));
}

HttpServer::HttpServer(const ServerOptions& options) : options_(options) {
  check_options(options_);
  io_ = std::make_unique<Io>(options_.threads);
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::add_listener(std::shared_ptr<RoleSource> source, const std::string& host, int port,
                             std::string& error) {
  return add(std::vector<std::shared_ptr<RoleSource>>{std::move(source)}, false, host, port, error);
}

std::string HttpServer::role_names(const std::vector<std::shared_ptr<RoleSource>>& sources) {
  std::string names;
  for (const auto& s : sources) names += (names.empty() ? "" : ",") + s->role();
  return names;
}

int HttpServer::add_shared_listener(std::vector<std::shared_ptr<RoleSource>> sources, const std::string& host,
                                    int port, std::string& error) {
  if (sources.empty()) throw std::invalid_argument("HttpServer::add_shared_listener needs at least one role");
  for (std::size_t i = 0; i < sources.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (sources[i]->role() == sources[j]->role())
        throw std::invalid_argument("HttpServer::add_shared_listener: role " + sources[i]->role() + " given twice");
  return add(std::move(sources), true, host, port, error);
}

int HttpServer::add(std::vector<std::shared_ptr<RoleSource>> sources, bool per_role_paths, const std::string& host,
                    int port, std::string& error) {
  if (io_->started) throw std::logic_error("HttpServer::add_listener after start()");
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
  int fd = -1;
  int family = AF_UNSPEC;
  std::string why;
  for (const addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = listen_on(*a, options_.listen_backlog, why);
    family = a->ai_family;
  }
  freeaddrinfo(found);
  if (fd < 0) {
    error = "cannot listen on " + wanted + ": " + why;
    return -1;
  }
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    error = "cannot listen on " + wanted + ": getsockname: " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  auto listener = std::make_shared<Listener>(*io_, std::move(sources), per_role_paths, options_);
  beast::error_code ec;
  listener->acceptor.assign(family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    error = "cannot listen on " + wanted + ": " + ec.message();
    return -1;
  }
  listener->port = port_of(local);
  listener->address = address_text(local, len);
  listeners_.push_back(std::move(listener));
  return static_cast<int>(listeners_.size() - 1);
}

const std::string& HttpServer::address(std::size_t index) const { return listeners_.at(index)->address; }
int HttpServer::port(std::size_t index) const { return listeners_.at(index)->port; }

ListenerStats HttpServer::stats(std::size_t index) const {
  const Listener& l = *listeners_.at(index);
  ListenerStats s;
  s.accepted = l.accepted.load();
  s.refused = l.refused.load();
  s.evicted = l.evicted.load();
  s.header_timeouts = l.header_timeouts.load();
  s.requests = l.requests.load();
  s.unauthorized = l.unauthorized.load();
  s.auth_busy = l.auth_busy.load();
  s.renders = l.renders.load();
  {
    std::lock_guard lock(const_cast<Listener&>(l).mutex);
    s.open = l.open;
    s.waiting = l.waiting.size();
  }
  {
    std::lock_guard lock(const_cast<Listener&>(l).body_mutex);
    s.scrapes_waiting = 0;
    for (const auto& role : l.renders_of)
      for (const auto& waiters : role.body_waiters) s.scrapes_waiting += waiters.size();
  }
  return s;
}

void HttpServer::set_web_config(std::shared_ptr<WebConfigWatcher> web_config) {
  if (io_->started) throw std::logic_error("HttpServer::set_web_config after start()");
  web_config_ = std::move(web_config);
}

void HttpServer::start() {
  if (io_->started) return;
  io_->started = true;
  for (auto& l : listeners_) l->web_config = web_config_;
  for (auto& l : listeners_) asio::dispatch(l->acceptor.get_executor(), [l] { l->accept(); });
  for (auto& context : io_->contexts) io_->threads.emplace_back([&context = *context] { context.run(); });
}

void HttpServer::stop() {
  if (!io_ || io_->stopped) return;
  io_->stopped = true;
  for (auto& context : io_->contexts) context->stop();
  for (auto& t : io_->threads) t.join();
  io_->threads.clear();
  io_->auth.stop();
  io_->auth.join();
  io_->renders.stop();  // a render running ends first: its bodies go to stopped contexts
  io_->renders.join();
  for (auto& l : listeners_) {
    beast::error_code ignored;
    l->acceptor.close(ignored);
  }
  // The listeners go first, then the password checks never run, then the
  // contexts: destroying them destroys the pending handlers and with them
  // the connections (each holding its listener), while the contexts'
  // services still exist.
  for (auto& l : listeners_) l->drop_body_waiters();
  listeners_.clear();
  io_.reset();
}

}  // namespace shmetrics::exporter
