// The exporter's HTTP server in process, over raw sockets on 127.0.0.1: the
// bounds it keeps (connection slots, evictions, refusals, head size and head
// deadline), pipelining in order, a stop with connections open, and TLS with
// basic auth from a web config (bcrypt on its own thread). Run
// under ThreadSanitizer too: connections run on several threads and meet in
// their listener's bookkeeping.
#include "http_server.h"
#include "support.h"
#include "web_config.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>
#include <httplib.h>

#include <crypt.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

using namespace shmetrics;
using exporter::HttpServer;
using exporter::RoleSource;
using exporter::ServerOptions;

namespace {

constexpr int kWaitMs = 10000;  // bound of every wait: a failure, never a pass

// A blocking client socket connected to 127.0.0.1:port.
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~Client() { ::close(fd_); }
  int fd() const { return fd_; }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends all of `data`; false when the server closed meanwhile.
  bool send(const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }

  // Everything until the server closes, or until kWaitMs pass without a byte.
  std::string read_to_end() {
    std::string out;
    char buf[65536];
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, kWaitMs) <= 0) {
        out += "<no end of stream>";
        return out;
      }
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return out;
      out.append(buf, static_cast<std::size_t>(n));
    }
  }

  // Whether the server closed the connection (end of stream or reset) within kWaitMs.
  bool closed_by_server() {
    return read_to_end().find("<no end of stream>") == std::string::npos;
  }

 private:
  int fd_ = -1;
};

std::vector<std::string> statuses(const std::string& answers) {
  static const std::regex status_line("HTTP/1\\.1 ([0-9]{3}) ");
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(answers.begin(), answers.end(), status_line); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1]);
  return out;
}

// Polls `done` every millisecond for up to kWaitMs.
template <typename Done>
bool wait_until(Done done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// A server with one listener on 127.0.0.1:0 serving `source`.
struct Served {
  Served(std::shared_ptr<RoleSource> source, const ServerOptions& options) : server(options) {
    std::string error;
    int index = server.add_listener(std::move(source), "127.0.0.1", 0, error);
    INFO(error);
    REQUIRE(index == 0);
    port = server.port(0);
    server.start();
  }
  HttpServer server;
  int port = 0;
};

std::shared_ptr<RoleSource> missing_segment_source() {
  return std::make_shared<RoleSource>("ops", "/nonexistent-shmetrics-dir/none.ops");
}

// The readyz clock of a RoleSource, asked once per render of a segment:
// it counts the renders, and while held it keeps a render waiting there.
class RenderGate {
 public:
  explicit RenderGate(bool held) : held_(held) {}

  std::function<std::uint64_t()> clock() {
    return [this] {
      std::unique_lock lock(mutex_);
      ++renders_;
      changed_.notify_all();
      changed_.wait(lock, [&] { return !held_; });
      return exporter::monotonic_now_ns();
    };
  }
  // Whether a render reached the clock within kWaitMs.
  bool wait_rendering() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::milliseconds(kWaitMs), [&] { return renders_ > 0; });
  }
  void release() {
    {
      std::lock_guard lock(mutex_);
      held_ = false;
    }
    changed_.notify_all();
  }
  int renders() {
    std::lock_guard lock(mutex_);
    return renders_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool held_;
  int renders_ = 0;
};

const std::string kGet = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
const std::string kGetClose = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

}  // namespace

TEST_CASE("pipelined requests are answered in order") {
  ServerOptions options;
  options.threads = 2;
  Served s(missing_segment_source(), options);
  std::string requests;
  std::vector<std::string> want;
  for (int i = 0; i < 20; ++i) {
    requests += i % 2 == 0 ? kGet : "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n";
    want.push_back(i % 2 == 0 ? "200" : "404");
  }
  requests += kGetClose;
  want.push_back("200");
  Client c(s.port);
  REQUIRE(c.send(requests));
  CHECK(statuses(c.read_to_end()) == want);
  CHECK(s.server.stats(0).requests == 21);
}

TEST_CASE("at the connection limit the connection waiting longest is evicted") {
  ServerOptions options;
  options.max_connections = 2;
  Served s(missing_segment_source(), options);
  // Each waits for its first head on its serving thread before the next
  // comes: only a waiting connection can be evicted (one admitted by the
  // accepting thread and not yet started by its own is busy).
  Client first(s.port);
  REQUIRE(wait_until([&] { return s.server.stats(0).waiting == 1; }));
  Client second(s.port);
  REQUIRE(wait_until([&] { return s.server.stats(0).waiting == 2; }));
  Client third(s.port);
  CHECK(first.closed_by_server());
  CHECK(s.server.stats(0).evicted == 1);
  CHECK(s.server.stats(0).refused == 0);
  REQUIRE(third.send(kGetClose));
  CHECK(statuses(third.read_to_end()) == std::vector<std::string>{"200"});
  // The second one was not touched and still gets answers.
  REQUIRE(second.send(kGetClose));
  CHECK(statuses(second.read_to_end()) == std::vector<std::string>{"200"});
  CHECK(s.server.stats(0).open <= 2);
}

TEST_CASE("when every connection is busy answering, a new one is closed at once") {
  testing::ScopedName name("http-busy");
  Segment segment = Segment::open(testing::small_options(name.str(), 4, 4));
  REQUIRE(segment.path() == name.str());
  // The render asks the clock for the readyz windows: the test holds it there.
  RenderGate gate(true);
  auto source = std::make_shared<RoleSource>("ops", name.str(), gate.clock());
  ServerOptions options;
  options.max_connections = 1;
  options.threads = 2;
  Served s(source, options);
  Client busy(s.port);
  REQUIRE(busy.send(kGetClose));
  REQUIRE(gate.wait_rendering());
  Client refused(s.port);
  CHECK(refused.closed_by_server());
  CHECK(s.server.stats(0).refused == 1);
  CHECK(s.server.stats(0).evicted == 0);
  gate.release();
  std::string answer = busy.read_to_end();
  CHECK(statuses(answer) == std::vector<std::string>{"200"});
  CHECK(answer.find("shmetrics_segment_up{role=\"ops\"} 1") != std::string::npos);
}

TEST_CASE("a head over max_request_bytes gets 431 and the connection is closed") {
  ServerOptions options;
  options.max_request_bytes = 512;
  Served s(missing_segment_source(), options);
  Client c(s.port);
  // Within the limit: served.
  REQUIRE(c.send("GET /metrics HTTP/1.1\r\nX: " + std::string(400, 'a') + "\r\n\r\n"));
  // Over it, without an end: refused after reading no more than the limit.
  c.send("GET /metrics HTTP/1.1\r\nX: " + std::string(600, 'a'));
  std::string answers = c.read_to_end();
  CHECK(statuses(answers) == std::vector<std::string>{"200", "431"});
  CHECK(answers.find("request head larger than 512 bytes") != std::string::npos);
}

TEST_CASE("a head not complete within header_timeout is cut") {
  ServerOptions options;
  options.header_timeout = std::chrono::milliseconds(200);
  Served s(missing_segment_source(), options);
  Client c(s.port);
  REQUIRE(c.send("GET /metr"));
  CHECK(c.read_to_end().empty());  // closed without an answer
  // Beast closes the socket at the deadline, before the handler counts it.
  CHECK(wait_until([&] { return s.server.stats(0).header_timeouts == 1; }));
}

TEST_CASE("a connection idle past keep_alive_timeout is closed, one within it is served") {
  ServerOptions options;
  options.keep_alive_timeout = std::chrono::milliseconds(300);
  options.header_timeout = std::chrono::milliseconds(kWaitMs);
  Served s(missing_segment_source(), options);
  Client c(s.port);
  REQUIRE(c.send(kGet));
  CHECK(c.closed_by_server());  // after the answer, idle: closed
  CHECK(s.server.stats(0).requests == 1);
  CHECK(s.server.stats(0).header_timeouts == 0);
}

TEST_CASE("stop() returns with connections open and closes them") {
  auto s = std::make_unique<Served>(missing_segment_source(), ServerOptions{});
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 16; ++i) clients.push_back(std::make_unique<Client>(s->port));
  clients[0]->send("GET /met");  // one in the middle of a head
  REQUIRE(wait_until([&] { return s->server.stats(0).open == 16; }));
  s->server.stop();
  for (auto& c : clients) CHECK(c->closed_by_server());
  s.reset();
}

namespace {

// A self-signed certificate for 127.0.0.1 and a web config serving it with
// basic auth for user "prom", in a temporary directory removed afterwards.
struct TlsAuthConfig {
  explicit TlsAuthConfig(int bcrypt_cost = 4) {
    char tmpl[] = "/tmp/shmetrics-http-tls.XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    std::string command = "cd " + dir +
                          " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
                          " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
                          " -keyout server.key -out server.crt 2>openssl.log";
    REQUIRE(std::system(command.c_str()) == 0);
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    REQUIRE(::crypt_gensalt_rn("$2b$", bcrypt_cost, nullptr, 0, salt, sizeof salt) != nullptr);
    crypt_data data{};
    const char* hash = ::crypt_r(password.c_str(), salt, &data);
    REQUIRE(hash != nullptr);
    REQUIRE(std::string(hash).starts_with("$2b$"));
    std::FILE* f = std::fopen((dir + "/web.yml").c_str(), "w");
    REQUIRE(f != nullptr);
    std::fprintf(f,
                 "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                 "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
                 "basic_auth_users:\n  prom: '%s'\n",
                 hash);
    std::fclose(f);
  }
  ~TlsAuthConfig() { std::system(("rm -rf " + dir).c_str()); }
  std::string dir;
  const std::string password = "scrape-secret";
};

// A server on 127.0.0.1:0 under a TlsAuthConfig with `bcrypt_cost`.
struct TlsServed {
  TlsServed(int bcrypt_cost, const ServerOptions& options) : config(bcrypt_cost), server(options) {
    std::string error;
    REQUIRE(server.add_listener(missing_segment_source(), "127.0.0.1", 0, error) == 0);
    server.set_web_config(std::make_shared<exporter::WebConfigWatcher>(config.dir + "/web.yml"));
    server.start();
    port = server.port(0);
  }
  TlsAuthConfig config;
  HttpServer server;
  int port = 0;
};

ServerOptions two_threads(std::size_t max_pending_auth = 16) {
  ServerOptions options;
  options.threads = 2;
  options.max_pending_auth = max_pending_auth;
  return options;
}

}  // namespace

TEST_CASE("TLS with basic auth: bcrypt runs off the serving threads and answers return in order") {
  TlsServed s(4, two_threads());
  const TlsAuthConfig& config = s.config;
  HttpServer& server = s.server;
  const int port = s.port;

  // Clients at once: right password, wrong ones (each new, so each costs a
  // bcrypt), none; on keep-alive connections, two requests each.
  std::vector<std::thread> clients;
  // Catch2's assertions are not thread-safe: the clients record, the test
  // thread checks.
  std::vector<std::vector<int>> got(12);
  std::vector<std::vector<std::string>> header(12);  // the one each answer must carry
  for (int i = 0; i < 12; ++i) {
    clients.emplace_back([&, i] {
      httplib::SSLClient client("127.0.0.1", port);
      client.enable_server_certificate_verification(false);
      client.set_connection_timeout(10);
      client.set_read_timeout(30);
      if (i % 3 == 0) client.set_basic_auth("prom", config.password.c_str());
      if (i % 3 == 1) client.set_basic_auth("prom", ("wrong-" + std::to_string(i)).c_str());
      for (int r = 0; r < 2; ++r) {
        auto res = client.Get("/metrics");
        got[i].push_back(res ? res->status : -1);
        if (res) header[i].push_back(res->get_header_value(i % 3 == 0 ? "X-Frame-Options" : "WWW-Authenticate"));
      }
    });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < 12; ++i) {
    INFO("client " << i);
    int want = i % 3 == 0 ? 200 : 401;
    CHECK(got[i] == std::vector<int>{want, want});
    const std::string want_header = i % 3 == 0 ? "deny" : "Basic";
    CHECK(header[i] == std::vector<std::string>{want_header, want_header});
  }
  CHECK(server.stats(0).unauthorized == 16);

  // Plain HTTP to the TLS port gets the 400 Go's servers give, in plain text.
  Client plain(port);
  REQUIRE(plain.send(kGetClose));
  std::string answer = plain.read_to_end();
  CHECK(answer.starts_with("HTTP/1.0 400 Bad Request\r\n"));
  CHECK(answer.find("Client sent an HTTP request to an HTTPS server.") != std::string::npos);
  server.stop();
}

TEST_CASE("a head of many empty fields is held to max_request_bytes too") {
  // Beast 1.74's own header_limit counts only bytes its parser has not
  // consumed; four-byte fields are each consumed as they complete.
  ServerOptions options;
  options.max_request_bytes = 4096;
  Served s(missing_segment_source(), options);
  Client c(s.port);
  std::string head = "GET /metrics HTTP/1.1\r\n";
  for (int i = 0; i < 20000; ++i) head += "a:\r\n";
  c.send(head + "\r\n");  // the server may close before all of it is sent
  std::string answers = c.read_to_end();
  CHECK(statuses(answers) == std::vector<std::string>{"431"});
}

TEST_CASE("an absolute-form target is served like its path") {
  Served s(missing_segment_source(), ServerOptions{});
  Client c(s.port);
  REQUIRE(c.send("GET http://127.0.0.1/metrics?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET HTTP://example/nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  CHECK(statuses(c.read_to_end()) == std::vector<std::string>{"200", "404"});
}

TEST_CASE("a connection lingering after its last answer gives up its slot to a new one") {
  ServerOptions options;
  options.max_connections = 1;
  Served s(missing_segment_source(), options);
  Client lingering(s.port);
  // Answered and closed by the server's side; the client keeps its side
  // open, so the server lingers, reading what the client might still send.
  REQUIRE(lingering.send("GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  // The server's FIN (end of stream here) comes once it lingers.
  CHECK(statuses(lingering.read_to_end()) == std::vector<std::string>{"404"});
  Client next(s.port);
  REQUIRE(next.send(kGetClose));
  CHECK(statuses(next.read_to_end()) == std::vector<std::string>{"200"});
  CHECK(s.server.stats(0).refused == 0);
  CHECK(s.server.stats(0).evicted == 1);
}

TEST_CASE("password checks past max_pending_auth get 503 at once, not a place in the queue") {
  TlsServed s(12, two_threads(1));  // ~0.3 s a check: the others arrive while it runs
  HttpServer& server = s.server;
  const int port = s.port;
  std::vector<std::thread> clients;
  std::vector<int> got(4, 0);
  std::vector<std::string> retry_after(4);  // checked by the test thread: Catch2 is not thread-safe
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      httplib::SSLClient client("127.0.0.1", port);
      client.enable_server_certificate_verification(false);
      client.set_read_timeout(30);
      client.set_basic_auth("prom", ("guess-" + std::to_string(i)).c_str());
      auto res = client.Get("/metrics");
      got[i] = res ? res->status : -1;
      if (res) retry_after[i] = res->get_header_value("Retry-After");
    });
  }
  for (auto& t : clients) t.join();
  const auto busy = static_cast<std::size_t>(std::count(got.begin(), got.end(), 503));
  const auto denied = static_cast<std::size_t>(std::count(got.begin(), got.end(), 401));
  INFO("statuses: " << got[0] << " " << got[1] << " " << got[2] << " " << got[3]);
  for (int i = 0; i < 4; ++i) CHECK(retry_after[i] == (got[i] == 503 ? "1" : ""));
  CHECK(busy + denied == 4);
  CHECK(busy >= 1);
  CHECK(denied >= 1);
  CHECK(server.stats(0).auth_busy == busy);
  server.stop();
}

TEST_CASE("stop() with password checks queued destroys their connections while the server still exists") {
  // Run under ASan too: the queued checks hold their connections, whose
  // sockets and listener belong to the server's contexts.
  TlsServed s(12, two_threads());  // ~0.3 s a check: the later ones wait in the queue
  std::vector<std::thread> clients;
  std::vector<int> got(3, 0);
  for (int i = 0; i < 3; ++i) {
    clients.emplace_back([&, i] {
      httplib::SSLClient client("127.0.0.1", s.port);
      client.enable_server_certificate_verification(false);
      client.set_read_timeout(30);
      client.set_basic_auth("prom", ("guess-" + std::to_string(i)).c_str());
      auto res = client.Get("/metrics");
      got[i] = res ? res->status : -1;
    });
  }
  // Every head read: one check running, the others queued behind it.
  CHECK(wait_until([&] { return s.server.stats(0).requests == 3; }));
  s.server.stop();
  for (auto& t : clients) t.join();
  // At most the check that was running answered; the queued ones never ran.
  CHECK(std::count(got.begin(), got.end(), -1) >= 2);
}

TEST_CASE("while the bodies being sent hold more than max_scrape_bytes, a scrape takes the newest") {
  // Slow readers keep their bodies alive; past the budget they stop
  // multiplying: the newest serves the next scrapes.
  testing::ScopedName name("http-bodies");
  Segment segment = Segment::open(testing::small_options(name.str(), 4, 4));
  REQUIRE(segment.path() == name.str());
  RoleSource source("ops", name.str());
  const std::size_t budget = exporter::kRoomAfterRender + 1024;
  source.set_max_scrape_bytes(budget);
  std::vector<std::shared_ptr<const std::string>> held;  // the slow readers' bodies
  while (source.live_body_bytes() <= budget && held.size() < 100000) {
    held.push_back(source.scrape_shared());
    if (held.size() > 1) REQUIRE(held.back() != held[held.size() - 2]);  // each rendered anew
  }
  REQUIRE(source.live_body_bytes() > budget);
  const std::size_t live = source.live_body_bytes();
  CHECK(source.scrape_shared() == held.back());
  CHECK(source.scrape_shared() == held.back());
  CHECK(source.bodies_reused() == 2);
  CHECK(source.live_body_bytes() == live);  // nothing new rendered
  held.clear();
  CHECK(source.live_body_bytes() == 0);
  auto fresh = source.scrape_shared();
  CHECK(source.bodies_reused() == 2);
  CHECK(source.live_body_bytes() > 0);
}

TEST_CASE("a scrape that asks while a render of its role runs takes that render's body") {
  testing::ScopedName name("http-join");
  Segment segment = Segment::open(testing::small_options(name.str(), 4, 4));
  Counter served = segment.counter("served_total", "Served.");
  served.inc();
  RenderGate gate(true);
  ServerOptions options;
  options.threads = 2;  // the two clients' connections are served by different threads
  Served s(std::make_shared<RoleSource>("ops", name.str(), gate.clock()), options);
  Client first(s.port);
  REQUIRE(first.send(kGetClose));
  REQUIRE(gate.wait_rendering());
  Client second(s.port);
  REQUIRE(second.send(kGetClose));
  // The second scrape waits for the render in progress; none starts for it.
  CHECK(wait_until([&] { return s.server.stats(0).scrapes_waiting == 2; }));
  gate.release();
  std::string a = first.read_to_end(), b = second.read_to_end();
  CHECK(statuses(a) == std::vector<std::string>{"200"});
  CHECK(a == b);
  CHECK(testing::sample(a.substr(a.find("\r\n\r\n")), "served_total") == 1.0);
  CHECK(gate.renders() == 1);
  CHECK(s.server.stats(0).renders == 1);
  CHECK(s.server.stats(0).scrapes_waiting == 0);
}

TEST_CASE("scrapes whose requests arrive together share one render, and a later one renders anew") {
  testing::ScopedName name("http-batch");
  Segment segment = Segment::open(testing::small_options(name.str(), 4, 4));
  Counter served = segment.counter("served_total", "Served.");
  served.inc();
  // One render thread, held by a render of another listener while four
  // clients of this one send their requests.
  RenderGate blocker(true), gate(false);
  ServerOptions options;
  options.threads = 1;
  HttpServer server(options);
  std::string error;
  REQUIRE(server.add_listener(std::make_shared<RoleSource>("judge", name.str(), blocker.clock()), "127.0.0.1", 0,
                              error) == 0);
  REQUIRE(server.add_listener(std::make_shared<RoleSource>("ops", name.str(), gate.clock()), "127.0.0.1", 0,
                              error) == 1);
  server.start();
  // Four connections, each read by the serving thread.
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(std::make_unique<Client>(server.port(1)));
  REQUIRE(wait_until([&] { return server.stats(1).waiting == 4; }));
  Client held(server.port(0));
  REQUIRE(held.send(kGetClose));
  REQUIRE(blocker.wait_rendering());
  // Their requests are read and wait for a render while the render thread is held.
  for (auto& c : clients) REQUIRE(c->send(kGet));
  CHECK(wait_until([&] { return server.stats(1).scrapes_waiting == 4; }));
  blocker.release();
  CHECK(statuses(held.read_to_end()) == std::vector<std::string>{"200"});
  // Each gets its answer (read up to its body's last line), from one render.
  auto answer = [](Client& c) {
    std::string got;
    char buf[65536];
    while (got.find("shmetrics_untrusted_entries_dropped_total{role=\"ops\",kind=\"series\"}") == std::string::npos ||
           got.back() != '\n') {
      pollfd p{c.fd(), POLLIN, 0};
      if (::poll(&p, 1, kWaitMs) <= 0) return got + "<timeout>";
      ssize_t n = ::recv(c.fd(), buf, sizeof buf, 0);
      if (n <= 0) return got + "<closed>";
      got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
  };
  for (auto& c : clients) {
    std::string a = answer(*c);
    CHECK(statuses(a) == std::vector<std::string>{"200"});
    CHECK(testing::sample(a.substr(a.find("\r\n\r\n")), "served_total") == 1.0);
  }
  CHECK(gate.renders() == 1);
  CHECK(server.stats(1).renders == 1);
  // A scrape asked after that render ended sees what was written since.
  served.inc();
  REQUIRE(clients[0]->send(kGetClose));
  std::string later = clients[0]->read_to_end();
  CHECK(statuses(later) == std::vector<std::string>{"200"});
  CHECK(testing::sample(later.substr(later.find("\r\n\r\n")), "served_total") == 2.0);
  // Each scrape counted, not each render: the four that shared one, and this.
  CHECK(testing::sample(later.substr(later.find("\r\n\r\n")),
                        "shmetrics_exporter_scrapes_total{role=\"ops\",format=\"text\",encoding=\"identity\"}") ==
        5.0);
  CHECK(gate.renders() == 2);
  CHECK(server.stats(1).renders == 2);
}

TEST_CASE("a shared listener serves each role at /metrics/<role>, rendering them side by side") {
  testing::ScopedName ops_name("http-shared-ops");
  testing::ScopedName judge_name("http-shared-judge");
  Segment ops = Segment::open(testing::small_options(ops_name.str(), 4, 4));
  Segment judge = Segment::open(testing::small_options(judge_name.str(), 4, 4));
  Counter ops_served = ops.counter("served_total", "Served.");
  Counter judge_served = judge.counter("served_total", "Served.");
  ops_served.inc(3);
  judge_served.inc(5);
  RenderGate ops_gate(true), judge_gate(false);
  ServerOptions options;
  options.threads = 2;
  HttpServer server(options);
  std::string error;
  REQUIRE(server.add_shared_listener({std::make_shared<RoleSource>("ops", ops_name.str(), ops_gate.clock()),
                                      std::make_shared<RoleSource>("judge", judge_name.str(), judge_gate.clock())},
                                     "127.0.0.1", 0, error) == 0);
  server.start();
  const int port = server.port(0);
  auto get = [&](const std::string& path) {
    Client c(port);
    REQUIRE(c.send("GET " + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    return c.read_to_end();
  };
  // An ops scrape held in its render does not hold the judge role's.
  Client ops_client(port);
  REQUIRE(ops_client.send("GET /metrics/ops HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  REQUIRE(ops_gate.wait_rendering());
  std::string j = get("/metrics/judge");
  CHECK(statuses(j) == std::vector<std::string>{"200"});
  CHECK(testing::sample(j.substr(j.find("\r\n\r\n")), "served_total") == 5.0);
  CHECK(j.find("role=\"judge\"") != std::string::npos);
  CHECK(j.find("role=\"ops\"") == std::string::npos);
  ops_gate.release();
  std::string o = ops_client.read_to_end();
  CHECK(statuses(o) == std::vector<std::string>{"200"});
  CHECK(testing::sample(o.substr(o.find("\r\n\r\n")), "served_total") == 3.0);
  CHECK(o.find("role=\"judge\"") == std::string::npos);
  CHECK(ops_gate.renders() == 1);
  CHECK(judge_gate.renders() == 1);
  CHECK(server.stats(0).renders == 2);
  // /metrics alone, an unknown role and a role's name with a suffix are not served.
  for (const char* path : {"/metrics", "/metrics/", "/metrics/audit", "/metrics/ops/", "/metrics/opsx"}) {
    std::string a = get(path);
    INFO(path);
    CHECK(statuses(a) == std::vector<std::string>{"404"});
    CHECK(a.find("/metrics/ops, /metrics/judge") != std::string::npos);
  }
  std::string landing = get("/");
  CHECK(statuses(landing) == std::vector<std::string>{"200"});
  CHECK(landing.find("<a href=\"/metrics/ops\">") != std::string::npos);
  CHECK(landing.find("<a href=\"/metrics/judge\">") != std::string::npos);
  std::string health = get("/healthz");
  CHECK(statuses(health) == std::vector<std::string>{"200"});
  CHECK(health.find("ops: segment") != std::string::npos);
  CHECK(health.find("judge: segment") != std::string::npos);
}

TEST_CASE("a shared listener's health is 503 while any role's segment is missing, naming it") {
  testing::ScopedName ops_name("http-shared-health");
  [[maybe_unused]] Segment ops = Segment::open(testing::small_options(ops_name.str(), 4, 4));
  HttpServer server(ServerOptions{});
  std::string error;
  // One role twice is refused, and no role at all.
  CHECK_THROWS_WITH(server.add_shared_listener({std::make_shared<RoleSource>("ops", ops_name.str()),
                                                missing_segment_source()},
                                               "127.0.0.1", 0, error),
                    Catch::Contains("role ops given twice"));
  CHECK_THROWS_AS(server.add_shared_listener({}, "127.0.0.1", 0, error), std::invalid_argument);
  REQUIRE(server.add_shared_listener({std::make_shared<RoleSource>("ops", ops_name.str()),
                                      std::make_shared<RoleSource>("judge", "/nonexistent-shmetrics-dir/none.judge")},
                                     "127.0.0.1", 0, error) == 0);
  server.start();
  for (const char* path : {"/healthz", "/-/ready"}) {
    Client c(server.port(0));
    REQUIRE(c.send("GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    std::string a = c.read_to_end();
    INFO(a);
    CHECK(statuses(a) == std::vector<std::string>{"503"});
    CHECK(a.find("judge: ") != std::string::npos);
    CHECK(a.find("ops: ") == std::string::npos);  // only the roles that are down
  }
}

TEST_CASE("/healthz answers while a render of its role runs, with what the render found") {
  testing::ScopedName name("http-health-render");
  [[maybe_unused]] Segment segment = Segment::open(testing::small_options(name.str(), 4, 4));
  RenderGate gate(true);
  ServerOptions options;
  options.threads = 2;
  Served s(std::make_shared<RoleSource>("ops", name.str(), gate.clock()), options);
  Client scrape(s.port);
  REQUIRE(scrape.send(kGetClose));
  REQUIRE(gate.wait_rendering());  // the first render, held with the role's lock
  for (const char* path : {"/healthz", "/-/ready"}) {
    Client probe(s.port);
    REQUIRE(probe.send("GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    const std::string a = probe.read_to_end();
    INFO(a);
    CHECK(statuses(a) == std::vector<std::string>{"200"});
    CHECK(a.find("ok: segment ") != std::string::npos);
  }
  CHECK(gate.renders() == 1);
  gate.release();
  CHECK(statuses(scrape.read_to_end()) == std::vector<std::string>{"200"});
}

TEST_CASE("a render runs off the serving threads: the connections of its scrape's thread go on") {
  testing::ScopedName big_name("http-offthread-big");
  testing::ScopedName small_name("http-offthread-small");
  [[maybe_unused]] Segment big = Segment::open(testing::small_options(big_name.str(), 4, 4));
  Segment small = Segment::open(testing::small_options(small_name.str(), 4, 4));
  Counter served = small.counter("served_total", "Served.");
  served.inc(7);
  RenderGate big_gate(true), small_gate(false);
  ServerOptions options;
  options.threads = 2;
  HttpServer server(options);
  std::string error;
  REQUIRE(server.add_shared_listener({std::make_shared<RoleSource>("big", big_name.str(), big_gate.clock()),
                                      std::make_shared<RoleSource>("small", small_name.str(), small_gate.clock())},
                                     "127.0.0.1", 0, error) == 0);
  server.start();
  const int port = server.port(0);
  // Connections take the two serving threads in turn: the first and third
  // share one. The first's render is held.
  Client held(port);
  REQUIRE(held.send("GET /metrics/big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  REQUIRE(big_gate.wait_rendering());
  Client second(port);
  Client third(port);
  for (Client* c : {&third, &second}) {
    REQUIRE(c->send("GET /metrics/small HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n"
                    "Connection: close\r\n\r\n"));
    const std::string a = c->read_to_end();
    INFO(a);
    CHECK(statuses(a) == std::vector<std::string>{"200", "200"});
    CHECK(a.find("\nserved_total 7\n") != std::string::npos);
  }
  CHECK(big_gate.renders() == 1);
  big_gate.release();
  CHECK(statuses(held.read_to_end()) == std::vector<std::string>{"200"});
}

TEST_CASE("a gzip body keeps the memory of its compressed size, not of the exposition's") {
  testing::ScopedName name("http-gzip-capacity");
  Segment segment = Segment::open(testing::small_options(name.str(), 4, 4));
  CounterFamily f = segment.counter_family("padded_total", "Padded.", {"pad"});
  for (int i = 0; i < 40; ++i) f.labels({std::string(100, static_cast<char>('a' + i % 26)) + std::to_string(i)}).inc();
  RoleSource source("ops", name.str());
  const std::size_t text_bytes = source.scrape().size();
  std::shared_ptr<const std::string> body = source.scrape_shared({exporter::Format::kText004, exporter::Encoding::kGzip});
  INFO("text " << text_bytes << " bytes, gzip " << body->size() << ", kept " << source.live_body_bytes());
  CHECK(body->size() < text_bytes / 4);
  CHECK(source.live_body_bytes() <= body->size() + 64);
}
