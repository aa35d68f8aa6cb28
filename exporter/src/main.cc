// shmetrics-exporter: serves each role's segment on its own /metrics listener.
#include "http_server.h"
#include "log.h"
#include "role_source.h"
#include "sigbus_guard.h"

#include <shmetrics/shm/segment_file.h>

#include <httplib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using shmetrics::exporter::log_event;
using shmetrics::exporter::RoleSource;
using shmetrics::exporter::ServerOptions;

struct RoleConfig {
  std::string role;
  std::string segment;  // empty: shmetrics.<instance>.<role>
  std::string listen;
  std::string host;
  int port = 0;
};

struct Options {
  std::string instance = "default";
  std::vector<RoleConfig> roles{{"ops", "", "127.0.0.1:8081", "", 0}, {"judge", "", "127.0.0.1:8082", "", 0}};
  std::string once_segment;
  bool accept_foreign_owner = false;
  std::size_t max_scrape_bytes = shmetrics::exporter::kDefaultMaxScrapeBytes;
  ServerOptions server;
};

static_assert(shmetrics::exporter::kDefaultMaxScrapeBytes == 67108864, "--help gives the default");

void print_help() {
  std::cout <<
R"(Usage: shmetrics-exporter [FLAG]...
Serves the shmetrics segments of the Ops and Judge roles in the Prometheus text
format, each role on its own listener: GET /metrics.

  --instance NAME         instance prefix of the segment names; the segments are
                          /dev/shm/shmetrics.NAME.ops and shmetrics.NAME.judge
                          (default: default)
  --ops-listen HOST:PORT  listener of the Ops role (default: 127.0.0.1:8081);
                          port 0 picks a free port, logged as event=listening
  --judge-listen HOST:PORT
                          listener of the Judge role (default: 127.0.0.1:8082)
  --ops-segment NAME      segment of the Ops role (default: shmetrics.INSTANCE.ops)
  --judge-segment NAME    segment of the Judge role (default: shmetrics.INSTANCE.judge)
  --once SEGMENT          print one exposition of SEGMENT to stdout and exit
                          (status 0 when the segment was read, 1 when not)
  --accept-foreign-owner  serve segments owned by another user than the
                          exporter's (by default such a role is down: anyone
                          able to write /dev/shm could have made it)
  --max-scrape-bytes N    most bytes one role may hold parsed from its segment,
                          and the largest exposition it renders, 65536-2^40
                          (default 67108864, 64 MiB); a segment past either
                          answers shmetrics_segment_up 0, with the reason logged

HTTP limits, per role listener:
  --threads N             worker threads, 1-1024 (default 8). A connection holds
                          its thread for its whole keep-alive life, so N is how
                          many clients are served at once; others queue
  --read-timeout-ms N     give up on a client when one receive waits this long,
                          1-600000 (default 5000). It is per receive, not per
                          request: a client sending a byte at a time within it
                          keeps its thread
  --write-timeout-ms N    give up on a client when one send waits this long,
                          1-600000 (default 5000)
  --keep-alive-max N      requests served on one connection, 1-100000 (default 100)
  --keep-alive-timeout-s N
                          close a connection that sends no request for N
                          seconds, 1-3600 (default 5); also bounds the wait for
                          the first byte of a new connection
  --max-request-bytes N   largest request line and headers, 256-1048576
                          (default 4096); larger heads get 431 (a single header
                          line over 8 KiB gets 400 from cpp-httplib first)
  --help                  print this help and exit

Only GET and HEAD /metrics are served: other methods on /metrics get 405, any
request body gets 413 and its connection is closed, unknown paths get 404 and
methods cpp-httplib does not know get 400. The listen backlog is 128.

Logs one key=value line per event on stderr. SIGTERM and SIGINT stop it.
A missing or invalid segment leaves its role answering 200 with
shmetrics_segment_up{role="..."} 0; the other role is unaffected.
)";
}

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "shmetrics-exporter: " << message << "\n(see shmetrics-exporter --help)\n";
  std::exit(2);
}

void parse_listen(RoleConfig& r) {
  auto colon = r.listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == r.listen.size())
    usage_error("--" + r.role + "-listen \"" + r.listen + "\" is invalid: expected HOST:PORT, e.g. 127.0.0.1:8081");
  r.host = r.listen.substr(0, colon);
  std::string port = r.listen.substr(colon + 1);
  char* end = nullptr;
  long value = std::strtol(port.c_str(), &end, 10);
  if (*end != '\0' || value < 0 || value > 65535)
    usage_error("--" + r.role + "-listen port \"" + port + "\" is invalid: expected 0-65535");
  r.port = static_cast<int>(value);
}

// The integer value of `flag`, which must lie in [lo, hi].
long parse_number(std::string_view flag, const std::string& value, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  long n = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno == ERANGE || n < lo || n > hi)
    usage_error(std::string(flag) + " \"" + value + "\" is invalid: expected an integer from " +
                std::to_string(lo) + " to " + std::to_string(hi));
  return n;
}

constexpr std::string_view kServerFlags[] = {"--threads", "--read-timeout-ms", "--write-timeout-ms",
                                            "--keep-alive-max", "--keep-alive-timeout-s",
                                            "--max-request-bytes"};

bool is_server_flag(std::string_view flag) {
  return std::find(std::begin(kServerFlags), std::end(kServerFlags), flag) != std::end(kServerFlags);
}

// Parses the HTTP limit `flag` (one of kServerFlags) into `s`.
void parse_server_flag(std::string_view flag, const std::string& value, ServerOptions& s) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  auto count = [&](long lo, long hi) { return static_cast<std::size_t>(parse_number(flag, value, lo, hi)); };
  if (flag == "--threads") s.threads = count(1, 1024);
  else if (flag == "--read-timeout-ms") s.read_timeout = milliseconds(parse_number(flag, value, 1, 600000));
  else if (flag == "--write-timeout-ms") s.write_timeout = milliseconds(parse_number(flag, value, 1, 600000));
  else if (flag == "--keep-alive-max") s.keep_alive_max = count(1, 100000);
  else if (flag == "--keep-alive-timeout-s") s.keep_alive_timeout = seconds(parse_number(flag, value, 1, 3600));
  else if (flag == "--max-request-bytes") s.max_request_bytes = count(256, 1048576);
}

Options parse_options(int argc, char** argv) {
  Options o;
  auto value_of = [&](int& i) -> std::string {
    if (i + 1 >= argc) usage_error(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      print_help();
      std::exit(0);
    } else if (a == "--instance") {
      o.instance = value_of(i);
    } else if (a == "--ops-listen") {
      o.roles[0].listen = value_of(i);
    } else if (a == "--judge-listen") {
      o.roles[1].listen = value_of(i);
    } else if (a == "--ops-segment") {
      o.roles[0].segment = value_of(i);
    } else if (a == "--judge-segment") {
      o.roles[1].segment = value_of(i);
    } else if (a == "--once") {
      o.once_segment = value_of(i);
    } else if (a == "--accept-foreign-owner") {
      o.accept_foreign_owner = true;
    } else if (a == "--max-scrape-bytes") {
      o.max_scrape_bytes = static_cast<std::size_t>(parse_number(a, value_of(i), 65536, 1L << 40));
    } else if (is_server_flag(a)) {
      parse_server_flag(a, value_of(i), o.server);
    } else {
      usage_error("unknown flag \"" + std::string(a) + "\"");
    }
  }
  for (RoleConfig& r : o.roles) {
    try {
      if (r.segment.empty()) r.segment = shmetrics::shm::segment_name(o.instance, r.role);
    } catch (const std::invalid_argument& e) {
      usage_error(e.what());
    }
    if (std::string err = shmetrics::shm::check_segment_name(r.segment); !err.empty())
      usage_error(err);
    parse_listen(r);
  }
  if (o.roles[0].port != 0 && o.roles[0].port == o.roles[1].port && o.roles[0].host == o.roles[1].host)
    usage_error("the ops and judge roles cannot listen on the same address " + o.roles[0].listen);
  return o;
}

int run_once(const std::string& segment, const Options& options) {
  if (std::string err = shmetrics::shm::check_segment_name(segment); !err.empty()) usage_error(err);
  RoleSource source("once", segment);
  source.accept_foreign_owner(options.accept_foreign_owner);
  source.set_max_scrape_bytes(options.max_scrape_bytes);
  std::string text = source.scrape();
  std::fwrite(text.data(), 1, text.size(), stdout);
  return text.find("shmetrics_segment_up{role=\"once\"} 1") == std::string::npos ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parse_options(argc, argv);
  shmetrics::exporter::install_sigbus_handler();
  if (!options.once_segment.empty())
    return run_once(options.once_segment, options);

  // Signals go to the waiting main thread only: block them before any thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::vector<std::unique_ptr<shmetrics::exporter::MetricsServer>> servers;
  for (const RoleConfig& r : options.roles) {
    auto source = std::make_shared<RoleSource>(r.role, r.segment);
    source->accept_foreign_owner(options.accept_foreign_owner);
    source->set_max_scrape_bytes(options.max_scrape_bytes);
    auto server = shmetrics::exporter::make_metrics_server(source, options.server);
    std::string error;
    int port = server->bind_listener(r.host, r.port, error);
    if (port <= 0) {
      log_event("error", "listen_failed", {{"role", r.role}, {"address", r.listen}, {"reason", error}});
      return 1;
    }
    log_event("info", "listening", {{"role", r.role}, {"address", r.host + ":" + std::to_string(port)},
              {"segment", r.segment}});
    servers.push_back(std::move(server));
  }
  std::vector<std::thread> threads;
  for (auto& server : servers) threads.emplace_back([s = server.get()] { s->listen_after_bind(); });

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  log_event("info", "stopping", {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"}});
  for (auto& server : servers) server->stop();
  for (auto& server : servers) server->disconnect_clients();
  for (auto& t : threads) t.join();
  log_event("info", "stopped");
  return 0;
}
