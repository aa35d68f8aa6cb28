// shmetrics-exporter: serves each role's segment on its own /metrics listener,
// or every role on one listener at /metrics/<role>.
#include "http_server.h"
#include "log.h"
#include "role_source.h"
#include "sigbus_guard.h"
#include "web_config.h"

#include <shmetrics/shm/layout.h>
#include <shmetrics/shm/segment_file.h>

#include <algorithm>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <optional>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
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
  std::string segment;  // a name in the segment directory, or a path; empty: <instance>.<role>
  std::string listen;
  std::string host;
  int port = 0;
  std::string flag;     // where the listen address came from, for messages
};

struct Options {
  std::string instance = "default";
  std::string segment_dir;  // empty: shm::default_segment_directory()
  std::vector<RoleConfig> roles{{"ops", "", "127.0.0.1:8081", "", 0, "--ops-listen"},
                                {"judge", "", "127.0.0.1:8082", "", 0, "--judge-listen"}};
  bool roles_given = false;                  // --role replaced the two defaults
  std::optional<RoleConfig> shared_listen;   // --listen: every role on one address, at /metrics/<role>
  std::vector<std::string> ops_judge_flags;  // --ops-listen & co. given: they need the defaults
  std::vector<std::pair<std::string, std::string>> role_segments;  // --role-segment NAME=SEGMENT
  std::string once_segment;
  bool accept_foreign_owner = false;
  bool writer_process_metrics = true;
  bool openmetrics_created = false;  // --openmetrics-created; off as in client_golang and client_java
  std::optional<uid_t> segment_owner;
  std::size_t max_scrape_bytes = shmetrics::exporter::kDefaultMaxScrapeBytes;
  std::string web_config_file;  // empty: plain HTTP, no auth
  ServerOptions server = [] {
    ServerOptions o;
    o.threads = shmetrics::exporter::default_server_threads();
    o.version = SHMETRICS_VERSION;
    return o;
  }();
};

static_assert(shmetrics::exporter::kDefaultMaxScrapeBytes == 67108864, "--help gives the default");
static_assert(shmetrics::exporter::kMaxWriterProcesses == 1024, "--help gives the bound");

void print_help() {
  std::cout <<
R"(Usage: shmetrics-exporter [FLAG]...
Serves the shmetrics segments of server roles (by default Ops and Judge) in
the Prometheus text format or OpenMetrics, each role on its own listener:
GET /metrics.

  --role NAME=HOST:PORT   serve role NAME (1-64 characters of [a-z0-9_-]) on
                          HOST:PORT, from segment INSTANCE.NAME; repeatable.
                          Given once or more, only these roles are served
                          (the Ops and Judge defaults are then not served,
                          and their flags below are refused)
  --role-segment NAME=SEGMENT
                          segment of role NAME (default: INSTANCE.NAME); a
                          SEGMENT with a '/' is an absolute path
  --listen HOST:PORT      serve every role on this one address instead, each
                          at /metrics/NAME (/metrics/ops, /metrics/judge by
                          default); roles are then given as --role NAME,
                          without an address, and --ops-listen and
                          --judge-listen are refused. /healthz answers 200
                          only while every role's segment is served

  --instance NAME         instance prefix of the segment names; the segments are
                          NAME.ops and NAME.judge in the segment directory
                          (default: default)
  --segment-dir DIR       the writers' segment directory (default:
                          $SHMETRICS_SEGMENT_DIR, else /dev/shm/shmetrics-UID
                          with the exporter's own UID: give the writers' one
                          when the exporter runs as another user). It must be
                          a real directory, not writable by group or others; a
                          directory named shmetrics-N must belong to uid N,
                          and segments must belong to the directory's owner
  --ops-listen HOST:PORT  listener of the Ops role (default: 127.0.0.1:8081);
                          HOST is an IPv4 address, an IPv6 address in
                          brackets ([::1]:8081) or a name (the first of its
                          addresses that can be bound); port 0 picks a free
                          port, logged as event=listening
  --judge-listen HOST:PORT
                          listener of the Judge role (default: 127.0.0.1:8082)
  --ops-segment NAME      segment of the Ops role (default: INSTANCE.ops); a
                          NAME with a '/' is an absolute path instead
  --judge-segment NAME    segment of the Judge role (default: INSTANCE.judge)
  --once SEGMENT          print one exposition of SEGMENT (a name or a path),
                          in the text format 0.0.4, to stdout and exit
                          (status 0 when the segment was read, 1 when not).
                          Takes only --segment-dir, --segment-owner,
                          --accept-foreign-owner, --max-scrape-bytes and
                          --no-writer-process-metrics besides
  --segment-owner USER    the writers' user (a name or a uid): segments
                          owned by anyone else are not served (default: the
                          exporter's own user). Give it when the exporter
                          runs as another user than the writers
  --accept-foreign-owner  serve segments of any owner, logging it (unsafe
                          where another user could have made the segment,
                          e.g. in a directory whose name it took first)
  --no-writer-process-metrics
                          leave out each live writer process's CPU time and
                          resident memory (shmetrics_writer_process_*{pid},
                          read from /proc at most once a second, at most
                          1024 processes per role; writers in another pid
                          namespace are left out and counted in
                          shmetrics_writer_processes{state})
  --openmetrics-created   write a _created sample (when the series was
                          registered) for every series of the writers'
                          counters, histograms and summaries in OpenMetrics
                          scrapes. Off by default, as in client_golang and
                          client_java: Prometheus stores each as a series of
                          its own (NAME_created) unless it is 3.0 or later
                          with created-timestamp-zero-ingestion on, and they
                          add more bytes than the rest of a counter's scrape
  --no-openmetrics-created
                          no _created samples (the default); of this flag
                          and --openmetrics-created, the last given counts
  --max-scrape-bytes N    most bytes one role may hold parsed from its segment,
                          and the largest exposition it renders, 65536-2^40
                          (default 67108864, 64 MiB); a segment past either
                          answers shmetrics_segment_up 0, with the reason
                          logged. Also bounds the bodies a role keeps alive
                          for clients still reading them: past it, a scrape
                          gets the newest of them instead of a new render

TLS and authentication:
  --web.config.file FILE  node_exporter's web configuration file (Prometheus
                          exporter-toolkit format): tls_server_config (TLS,
                          client certificates), http_server_config.headers,
                          basic_auth_users (bcrypt hashes). The same file
                          serves node_exporter and this exporter; unknown keys
                          are refused at start, naming the file and key. It is
                          re-read when it or a file it names changes (checked
                          at most once a second, and on SIGHUP); a file that
                          becomes invalid keeps the last good configuration,
                          logged as event=web_config_invalid


HTTP limits (the server is Boost.Beast over Boost.Asio; a connection waiting
for a request holds no thread):
  --threads N             threads serving every listener, 1-256 (default:
                          the CPUs the exporter may run on, at most 4), each
                          its share of the connections; one more accepts;
                          as many render. A render serves every scrape of its
                          role asking meanwhile; one taking under 0.5 ms runs
                          on the asking connection's thread, a longer one on a
                          render thread, so a large role never holds others
  --max-connections N     connections open at once per listener, 1-65536
                          (default 1024). At the limit a new connection takes
                          the slot of the one that has waited longest for its
                          next request head (logged as connection_evicted);
                          when every connection is busy answering, the new one
                          is closed at once (connection_refused)
  --max-request-bytes N   largest request line and headers, 256-65536 (default
                          4096), enforced while reading: a longer head gets
                          431 and the connection is closed
  --header-timeout-ms N   deadline for a whole request head from its first
                          byte, and for a new connection's first head from its
                          accept (TLS handshake included), 1-600000 (default
                          5000); past it the connection is closed
  --keep-alive-timeout-s N
                          close a connection that sends no next request for N
                          seconds, 1-3600 (default 60)
  --write-timeout-ms N    deadline for writing one answer, 1-600000 (default
                          10000, Prometheus's default scrape timeout)
  --max-auth-queue N      password checks (bcrypt) queued at once, 1-4096
                          (default 16); past it, a request whose password is
                          not cached gets 503 with Retry-After: 1
  --help                  print this help and exit
  --version               print the version and the segment layout version
                          it reads, and exit

A flag's value may also be given as --flag=VALUE; no value may be empty. A
value given as the next argument may not begin with "--" (nor be "-h"): that
is taken for a forgotten value; give such a value as --flag=VALUE. A flag
taking one value may be given once (--role and --role-segment once per role).

GET and HEAD are served on /metrics (the exposition: OpenMetrics or text
0.0.4 by the Accept header, gzip by Accept-Encoding), / (a landing page),
/healthz and /-/ready (200 while the role's segment is attached and trusted,
503 otherwise), over HTTP/1.0 and 1.1; pipelined
requests are answered in order, and Range is ignored (200, the whole body).
Other requests get, by the first rule that matches: 400 for a malformed head
or several Content-Length values; 431 for a head over --max-request-bytes;
505 for another HTTP version; 413 for a request with a body (Content-Length
above 0 or Transfer-Encoding); 404 for any other path, whatever the
method; 405 with "Allow: GET, HEAD" for another method on a path served. After a
400, 413, 431 or 505 the connection is closed, so nothing after the head is
read as a request. The listen backlog is 1024; the port is bound without
SO_REUSEPORT, so a port in use is an error.

Logs one key=value line per event on stderr. SIGTERM and SIGINT stop it.
SIGHUP re-reads --web.config.file (event=sighup); segments need no reload,
as every scrape checks its segment and reopens one created anew.
A missing or invalid segment leaves its role answering 200 with
shmetrics_segment_up{role="..."} 0; the other role is unaffected.
)";
}

// The message quotes what was given: its control characters are written as
// \xHH (a terminal gets no escape sequence from a flag), and a message past
// 1 KiB once escaped (a 64 KiB value) keeps its first and last 512 bytes, cut
// at UTF-8 character boundaries, so the reason and what was expected stay.
[[noreturn]] void usage_error(const std::string& message) {
  constexpr std::size_t kKeep = 512;
  std::string escaped;
  for (char c : message) {
    if (shmetrics::exporter::is_control_byte(static_cast<unsigned char>(c)))
      shmetrics::exporter::append_hex_escape(escaped, static_cast<unsigned char>(c));
    else
      escaped += c;
  }
  if (escaped.size() > 2 * kKeep) {
    auto continuation = [&](std::size_t at) { return (static_cast<unsigned char>(escaped[at]) & 0xc0) == 0x80; };
    std::size_t head = kKeep, tail = escaped.size() - kKeep;
    while (head > 0 && continuation(head)) --head;
    while (tail < escaped.size() && continuation(tail)) ++tail;
    escaped = escaped.substr(0, head) + "[... " + std::to_string(tail - head) + " bytes ...]" + escaped.substr(tail);
  }
  std::cerr << "shmetrics-exporter: " << escaped << "\n(see shmetrics-exporter --help)\n";
  std::exit(2);
}

// HOST:PORT or [IPV6]:PORT into r.host and r.port.
void parse_listen(RoleConfig& r) {
  const std::string& flag = r.flag;
  const std::string& listen = r.listen;
  const std::string expected = "expected HOST:PORT, e.g. 127.0.0.1:8081, or [IPV6]:PORT, e.g. [::1]:8081";
  std::size_t colon = std::string::npos;  // the one before the port
  if (listen.starts_with('[')) {
    std::size_t close = listen.find(']');
    if (close == std::string::npos || close == 1 || close + 1 == listen.size() || listen[close + 1] != ':')
      usage_error(flag + " \"" + listen + "\" is invalid: " + expected);
    r.host = listen.substr(1, close - 1);
    in6_addr address{};  // (a zone, as in fe80::1%eth0, is left to the resolver)
    if (::inet_pton(AF_INET6, r.host.substr(0, r.host.find('%')).c_str(), &address) != 1)
      usage_error(flag + " \"" + listen + "\" is invalid: \"" + r.host +
                  "\" in brackets is not an IPv6 address; an IPv4 address or a name goes without them, as in "
                  "127.0.0.1:8081");
    colon = close + 1;
  } else {
    colon = listen.rfind(':');
    if (colon == std::string::npos || colon == 0)
      usage_error(flag + " \"" + listen + "\" is invalid: " + expected);
    r.host = listen.substr(0, colon);
    if (r.host.find(':') != std::string::npos)
      usage_error(flag + " \"" + listen + "\" is invalid: an IPv6 address goes in brackets, " +
                  "as in [::1]:8081");
  }
  std::string port = listen.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535)
    usage_error(flag + " port \"" + port + "\" is invalid: expected 0-65535");
  r.port = std::stoi(port);
}

// A role name: it names a segment (INSTANCE.NAME) and labels the metrics.
bool valid_role(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

// The integer value of `flag`, which must lie in [lo, hi]: decimal digits,
// nothing else (strtol alone would take " 4", "+4" and "\t4").
long parse_number(std::string_view flag, const std::string& value, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  long n = std::strtol(value.c_str(), &end, 10);
  const bool digits = !value.empty() && value.find_first_not_of("0123456789", value[0] == '-' ? 1 : 0) ==
                                            std::string::npos && value != "-";
  if (!digits || *end != '\0' || errno == ERANGE || n < lo || n > hi)
    usage_error(std::string(flag) + " \"" + value + "\" is invalid: expected an integer (decimal digits only) from " +
                std::to_string(lo) + " to " + std::to_string(hi));
  return n;
}

constexpr std::string_view kServerFlags[] = {"--threads", "--max-connections", "--max-request-bytes",
                                            "--header-timeout-ms", "--keep-alive-timeout-s",
                                            "--write-timeout-ms", "--max-auth-queue"};

bool is_server_flag(std::string_view flag) {
  return std::find(std::begin(kServerFlags), std::end(kServerFlags), flag) != std::end(kServerFlags);
}

// Parses the HTTP limit `flag` (one of kServerFlags) into `s`.
void parse_server_flag(std::string_view flag, const std::string& value, ServerOptions& s) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  auto count = [&](long lo, long hi) { return static_cast<std::size_t>(parse_number(flag, value, lo, hi)); };
  if (flag == "--threads") s.threads = count(1, 256);
  else if (flag == "--max-connections") s.max_connections = count(1, 65536);
  else if (flag == "--max-request-bytes") s.max_request_bytes = count(256, 65536);
  else if (flag == "--header-timeout-ms") s.header_timeout = milliseconds(parse_number(flag, value, 1, 600000));
  else if (flag == "--keep-alive-timeout-s") s.keep_alive_timeout = seconds(parse_number(flag, value, 1, 3600));
  else if (flag == "--write-timeout-ms") s.write_timeout = milliseconds(parse_number(flag, value, 1, 600000));
  else if (flag == "--max-auth-queue") s.max_pending_auth = count(1, 4096);
}

// The uid of `user`: a user name, or a number.
uid_t parse_user(const std::string& user) {
  if (!user.empty() && user.find_first_not_of("0123456789") == std::string::npos) {
    errno = 0;
    char* end = nullptr;
    unsigned long uid = std::strtoul(user.c_str(), &end, 10);
    if (errno == 0 && *end == '\0' && uid < 0xffffffffUL) return static_cast<uid_t>(uid);
  }
  struct passwd entry {};
  struct passwd* found = nullptr;
  std::vector<char> buffer(16384);
  if (::getpwnam_r(user.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr)
    usage_error("--segment-owner \"" + user + "\" is invalid: expected a user name known to this system, or a uid");
  return found->pw_uid;
}

// The flags taking one value that may be given once (the HTTP limits of
// kServerFlags too).
constexpr std::string_view kOnceFlags[] = {"--instance", "--segment-dir", "--once", "--segment-owner",
                                          "--web.config.file", "--max-scrape-bytes"};

Options parse_options(int argc, char** argv) {
  Options o;
  std::vector<std::string> given;  // kOnceFlags and kServerFlags seen
  std::vector<std::string> flags;  // every flag given, for --once's check
  std::string a;                            // the flag, without any "=VALUE"
  std::optional<std::string> inline_value;  // VALUE of --flag=VALUE
  auto value_of = [&](int& i) -> std::string {
    std::string value;
    if (inline_value) value = *inline_value;
    else if (i + 1 < argc) value = argv[++i];
    else usage_error(a + " needs a value: expected " + a + " VALUE or " + a + "=VALUE");
    // `--role --openmetrics-created` is a forgotten value, not a role named
    // so: a separate value never starts with "--" (--flag=VALUE may).
    if (!inline_value && (value.starts_with("--") || value == "-h"))
      usage_error(a + " needs a value, but the next argument \"" + value + "\" is a flag: expected " + a +
                  " VALUE (or " + a + "=VALUE for a value that itself begins with '-')");
    if (value.empty()) usage_error(a + " has an empty value: expected a non-empty one");
    return value;
  };
  auto no_value = [&] {
    if (inline_value) usage_error(a + " takes no value: expected " + a + ", got " + a + "=" + *inline_value);
  };
  for (int i = 1; i < argc; ++i) {
    a = argv[i];
    inline_value.reset();
    if (std::size_t equals = a.find('='); a.starts_with("--") && equals != std::string::npos) {
      inline_value = a.substr(equals + 1);
      a.resize(equals);
    }
    // A flag of one value given twice is a mistake to report, not a value to
    // replace: `--web.config.file auth.yml --web.config.file other.yml`
    // would drop basic auth without a word. (--role and --role-segment are
    // repeatable per role, and checked per role below.)
    flags.push_back(a);
    if (std::find(std::begin(kOnceFlags), std::end(kOnceFlags), a) != std::end(kOnceFlags) || is_server_flag(a)) {
      if (std::find(given.begin(), given.end(), a) != given.end())
        usage_error(a + " is given twice: give it once");
      given.push_back(a);
    }
    if (a == "--help" || a == "-h") {
      no_value();
      print_help();
      std::exit(0);
    } else if (a == "--version") {
      no_value();
      std::cout << "shmetrics-exporter " << SHMETRICS_VERSION << " (segment layout "
                << shmetrics::shm::kLayoutVersion << ")\n";
      std::exit(0);
    } else if (a == "--instance") {
      o.instance = value_of(i);
    } else if (a == "--segment-dir") {
      o.segment_dir = value_of(i);
    } else if (a == "--role") {
      const std::string value = value_of(i);
      const std::size_t eq = value.find('=');
      const std::string name = value.substr(0, eq);
      if (!valid_role(name) || eq + 1 == value.size())
        usage_error("--role \"" + value + "\" is invalid: expected NAME=HOST:PORT (or NAME alone with --listen), "
                    "NAME 1-64 characters of [a-z0-9_-], e.g. --role billing=127.0.0.1:8083");
      if (!o.roles_given) o.roles.clear();
      o.roles_given = true;
      for (const RoleConfig& r : o.roles)
        if (r.role == name) usage_error("--role " + name + " is given twice: each role is served once");
      o.roles.push_back({name, "", eq == std::string::npos ? "" : value.substr(eq + 1), "", 0, "--role " + name});
    } else if (a == "--listen") {
      if (o.shared_listen) usage_error("--listen is given twice: every role is served on one address");
      o.shared_listen = RoleConfig{"", "", value_of(i), "", 0, "--listen"};
    } else if (a == "--role-segment") {
      const std::string value = value_of(i);
      const std::size_t eq = value.find('=');
      if (eq == std::string::npos || eq + 1 == value.size() || !valid_role(value.substr(0, eq)))
        usage_error("--role-segment \"" + value + "\" is invalid: expected NAME=SEGMENT for a role of --role");
      for (const auto& [name, segment] : o.role_segments)
        if (name == value.substr(0, eq))
          usage_error("--role-segment " + name + " is given twice: each role has one segment");
      o.role_segments.emplace_back(value.substr(0, eq), value.substr(eq + 1));
    } else if (a == "--ops-listen" || a == "--judge-listen" || a == "--ops-segment" || a == "--judge-segment") {
      if (std::find(o.ops_judge_flags.begin(), o.ops_judge_flags.end(), a) != o.ops_judge_flags.end())
        usage_error(a + " is given twice: give it once");
      o.ops_judge_flags.push_back(a);  // refused below if --role is given too
      const std::string value = value_of(i);
      if (!o.roles_given) {
        RoleConfig& r = o.roles[a.starts_with("--ops") ? 0 : 1];
        (a.ends_with("-listen") ? r.listen : r.segment) = value;
      }
    } else if (a == "--once") {
      o.once_segment = value_of(i);
    } else if (a == "--segment-owner") {
      o.segment_owner = parse_user(value_of(i));
    } else if (a == "--accept-foreign-owner") {
      no_value();
      o.accept_foreign_owner = true;
    } else if (a == "--no-writer-process-metrics") {
      no_value();
      o.writer_process_metrics = false;
    } else if (a == "--openmetrics-created" || a == "--no-openmetrics-created") {
      no_value();
      o.openmetrics_created = a == "--openmetrics-created";
    } else if (a == "--web.config.file") {
      o.web_config_file = value_of(i);
    } else if (a == "--max-scrape-bytes") {
      o.max_scrape_bytes = static_cast<std::size_t>(parse_number(a, value_of(i), 65536, 1L << 40));
    } else if (is_server_flag(a)) {
      parse_server_flag(a, value_of(i), o.server);
    } else {
      usage_error("unknown flag \"" + std::string(a) + "\"");
    }
  }
  if (o.shared_listen) {
    for (const std::string& flag : o.ops_judge_flags)
      if (flag.ends_with("-listen"))
        usage_error(flag + " and --listen cannot be combined: with --listen every role is served on its address, "
                    "at /metrics/<role>");
    for (const RoleConfig& r : o.roles)
      if (o.roles_given && !r.listen.empty())
        usage_error(r.flag + "=" + r.listen + " has an address, but --listen serves every role on one: give "
                    "--role " + r.role + " without one");
    parse_listen(*o.shared_listen);
  } else {
    for (const RoleConfig& r : o.roles)
      if (r.listen.empty())
        usage_error(r.flag + " has no address: expected --role " + r.role + "=HOST:PORT, or --listen HOST:PORT "
                    "to serve every role on one address");
  }
  if (o.roles_given && !o.ops_judge_flags.empty())
    usage_error(o.ops_judge_flags.front() + " and --role cannot be combined: with --role, give every role's "
                "address with --role and its segment with --role-segment");
  if (!o.once_segment.empty() && (o.shared_listen || o.roles_given || !o.ops_judge_flags.empty()))
    usage_error("--once prints one segment and exits: it takes no --role, --listen or --ops-/--judge- flags");
  if (!o.once_segment.empty()) {
    // The flags --once uses; any other would be ignored without a word.
    constexpr std::string_view kOnceUses[] = {"--once", "--segment-dir", "--segment-owner", "--accept-foreign-owner",
                                             "--max-scrape-bytes", "--no-writer-process-metrics"};
    for (const std::string& flag : flags)
      if (std::find(std::begin(kOnceUses), std::end(kOnceUses), flag) == std::end(kOnceUses))
        usage_error("--once prints one segment in the text format 0.0.4 and exits: " + flag +
                    " does not apply to it (it takes --segment-dir, --segment-owner, --accept-foreign-owner, "
                    "--max-scrape-bytes and --no-writer-process-metrics)");
  }
  for (const auto& [name, segment] : o.role_segments) {
    auto it = std::find_if(o.roles.begin(), o.roles.end(), [&](const RoleConfig& r) { return r.role == name; });
    if (it != o.roles.end() && !it->segment.empty())
      usage_error("--" + name + "-segment and --role-segment " + name + " both give the " + name +
                  " role's segment: give one of them");
    if (it == o.roles.end())
      usage_error("--role-segment names role \"" + name + "\", which is not served: give --role " + name +
                  (o.shared_listen ? " too" : "=HOST:PORT too"));
    it->segment = segment;
  }
  for (RoleConfig& r : o.roles) {
    try {
      r.segment = shmetrics::shm::segment_path(o.segment_dir, r.segment.empty() ? shmetrics::shm::segment_name(o.instance, r.role)
                                                                : r.segment);
    } catch (const std::invalid_argument& e) {
      usage_error(e.what());
    }
    if (!o.shared_listen) parse_listen(r);
  }
  if (o.segment_owner && o.accept_foreign_owner)
    usage_error("--segment-owner and --accept-foreign-owner contradict each other: give one of them");
  if (!o.once_segment.empty()) {
    try {
      o.once_segment = shmetrics::shm::segment_path(o.segment_dir, o.once_segment);
    } catch (const std::invalid_argument& e) {
      usage_error(e.what());
    }
  }
  for (std::size_t i = 0; i < o.roles.size() && !o.shared_listen; ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (o.roles[i].port != 0 && o.roles[i].port == o.roles[j].port && o.roles[i].host == o.roles[j].host)
        usage_error("the " + o.roles[j].role + " and " + o.roles[i].role + " roles cannot listen on the same address " +
                    o.roles[i].listen);
  return o;
}

// Raises the soft limit of open descriptors to the hard one: every listener
// may hold --max-connections sockets. Logs when even the hard limit is lower
// than that (accept then fails for want of descriptors, and is retried).
void raise_descriptor_limit(const Options& options) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  const rlim_t listeners = options.shared_listen ? 1 : options.roles.size();
  const rlim_t wanted = listeners * options.server.max_connections + 64;
  if (limit.rlim_cur < wanted)
    log_event("warn", "descriptor_limit_low",
              {{"limit", std::to_string(limit.rlim_cur)}, {"wanted", std::to_string(wanted)},
               {"reason", "RLIMIT_NOFILE is below --max-connections for every listener; raise it (LimitNOFILE= "
                          "in systemd) or lower --max-connections"}});
}

int run_once(const std::string& segment, const Options& options) {
  RoleSource source("once", segment);
  source.set_version(SHMETRICS_VERSION);
  source.accept_foreign_owner(options.accept_foreign_owner);
  if (options.segment_owner) source.expect_owner(*options.segment_owner);
  source.set_max_scrape_bytes(options.max_scrape_bytes);
  source.set_writer_process_metrics(options.writer_process_metrics);
  source.set_openmetrics_created(options.openmetrics_created);
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
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  raise_descriptor_limit(options);
  std::shared_ptr<shmetrics::exporter::WebConfigWatcher> web_config;
  if (!options.web_config_file.empty()) {
    try {
      web_config = std::make_shared<shmetrics::exporter::WebConfigWatcher>(options.web_config_file);
    } catch (const std::exception& e) {
      log_event("error", "web_config_invalid", {{"file", options.web_config_file}, {"reason", e.what()}});
      return 1;
    }
    auto loaded = web_config->current();
    log_event("info", "web_config_loaded",
              {{"file", options.web_config_file}, {"tls", loaded->tls ? "on" : "off"},
               {"basic_auth", loaded->auth->enabled() ? "on" : "off"}});
  }
  shmetrics::exporter::HttpServer server(options.server);
  server.set_web_config(web_config);
  std::vector<std::shared_ptr<RoleSource>> sources;
  std::vector<std::string> listener_roles;  // per listener, for the totals logged at stop
  for (const RoleConfig& r : options.roles) {
    auto source = std::make_shared<RoleSource>(r.role, r.segment);
    source->set_version(SHMETRICS_VERSION);
    source->accept_foreign_owner(options.accept_foreign_owner);
    if (options.segment_owner) source->expect_owner(*options.segment_owner);
    source->set_max_scrape_bytes(options.max_scrape_bytes);
    source->set_writer_process_metrics(options.writer_process_metrics);
    source->set_openmetrics_created(options.openmetrics_created);
    sources.push_back(source);
    if (options.shared_listen) continue;
    std::string error;
    int index = server.add_listener(source, r.host, r.port, error);
    if (index < 0) {
      log_event("error", "listen_failed", {{"role", r.role}, {"address", r.listen}, {"reason", error}});
      return 1;
    }
    listener_roles.push_back(r.role);
    log_event("info", "listening",
              {{"role", r.role}, {"address", server.address(static_cast<std::size_t>(index))}, {"path", "/metrics"},
               {"segment", r.segment}});
  }
  if (const std::optional<RoleConfig>& shared = options.shared_listen) {
    std::string error;
    const std::string names = shmetrics::exporter::HttpServer::role_names(sources);
    int index = server.add_shared_listener(sources, shared->host, shared->port, error);
    if (index < 0) {
      log_event("error", "listen_failed", {{"role", names}, {"address", shared->listen}, {"reason", error}});
      return 1;
    }
    listener_roles.push_back(names);
    for (const RoleConfig& r : options.roles)
      log_event("info", "listening",
                {{"role", r.role}, {"address", server.address(static_cast<std::size_t>(index))},
                 {"path", "/metrics/" + r.role}, {"segment", r.segment}});
  }
  server.start();
  log_event("info", "serving", {{"threads", std::to_string(options.server.threads)}});

  int signal_number = 0;
  // SIGHUP, which would end the process, re-reads the web configuration.
  while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGHUP) {
    if (web_config) {
      log_event("info", "sighup", {{"action", "re-reading the web configuration"}});
      web_config->reload_now();
    } else {
      log_event("info", "sighup",
                {{"action", "ignored"}, {"reason", "no --web.config.file; every scrape rechecks its segment"}});
    }
  }
  log_event("info", "stopping", {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"}});
  // What each listener met in its life, for the operator reading the log.
  for (std::size_t i = 0; i < listener_roles.size(); ++i) {
    shmetrics::exporter::ListenerStats st = server.stats(i);
    log_event("info", "http_totals",
              {{"role", listener_roles[i]}, {"accepted", std::to_string(st.accepted)},
               {"refused", std::to_string(st.refused)}, {"evicted", std::to_string(st.evicted)},
               {"header_timeouts", std::to_string(st.header_timeouts)}, {"requests", std::to_string(st.requests)},
               {"unauthorized", std::to_string(st.unauthorized)}, {"auth_busy", std::to_string(st.auth_busy)},
               {"renders", std::to_string(st.renders)}});
  }
  server.stop();
  log_event("info", "stopped");
  return 0;
}
