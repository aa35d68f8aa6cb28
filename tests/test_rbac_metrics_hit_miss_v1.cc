// The RBAC metrics of the original work order
// (tests/gates/gate_sec/test_rbac_metrics_hit_miss_v1.py), ported: the same
// six tests, now with forked workers sharing one segment, exact totals, and a
// clock the test advances instead of sleeps. Then the rules for bad input:
// missing, malformed and unreadable maps, invalid patterns, X-Scopes values.
#include "support.h"

#include "../examples/rbac/rbac_state.h"
#include "../examples/rbac/scopes.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <set>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <thread>

using namespace shmetrics;
using rbac::Decision;
using rbac::RbacMap;
using rbac::RbacMapState;
using testing::ScopedName;

namespace {

constexpr std::int64_t kReloadSec = 5;
constexpr std::int64_t kSecondNs = 1'000'000'000;

// The example map of rbac_map.h.
const std::string kMapV1 = R"({
  "require_all": false,
  "routes": [
    {"pattern": "/ops/status", "methods": ["GET"], "scopes": ["ops:read"]},
    {"pattern": "/ops/jobs/*", "methods": ["GET", "POST"], "scopes": ["ops:read", "ops:write"], "require_all": true},
    {"pattern": "/judge/**", "methods": ["*"], "scopes": ["judge:submit"]}
  ]
}
)";
// v1 with /ops/status requiring new:scope instead.
const std::string kMapV2 = R"({
  "require_all": false,
  "routes": [
    {"pattern": "/ops/status", "methods": ["GET"], "scopes": ["new:scope"]},
    {"pattern": "/ops/jobs/*", "methods": ["GET", "POST"], "scopes": ["ops:read", "ops:write"], "require_all": true},
    {"pattern": "/judge/**", "methods": ["*"], "scopes": ["judge:submit"]}
  ]
}
)";
// The etags, computed apart from the code under test: printf '%s' "$MAP" | sha256sum
const std::string kMapV1Sha256 = "23e1274892db895c565cf5359cb478d2b47d1e4c53e2546864aeb472bbf46b16";
const std::string kMapV2Sha256 = "5d688e76de582ffb3129fd55f2eda6883eb0c3ca486bf813551ee1a8a934bb92";

std::string etag_series(const std::string& sha256) {
  return "rbac_map_info{etag=\"" + sha256 + "\"}";
}

// Replaces `path` atomically: written beside it, then renamed over it, as a
// deploy tool does.
void replace_file(const std::string& path, const std::string& bytes) {
  std::string next = path + ".next";
  {
    std::ofstream out(next, std::ios::binary | std::ios::trunc);
    out << bytes;
    REQUIRE(out.good());
  }
  REQUIRE(std::rename(next.c_str(), path.c_str()) == 0);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A mkdtemp directory, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    char path[] = "/tmp/shmetrics-rbac-XXXXXX";
    REQUIRE(::mkdtemp(path) != nullptr);
    path_ = path;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A clock word in shared memory: the test advances it and every worker reads
// it, so reload intervals pass without sleeping.
class SharedClock {
 public:
  SharedClock() {
    void* word = ::mmap(nullptr, sizeof(std::atomic<std::int64_t>), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(word != MAP_FAILED);
    now_ns_ = new (word) std::atomic<std::int64_t>(1000 * kSecondNs);
  }
  SharedClock(const SharedClock&) = delete;
  SharedClock& operator=(const SharedClock&) = delete;
  ~SharedClock() { ::munmap(now_ns_, sizeof *now_ns_); }

  void advance_seconds(std::int64_t seconds) { now_ns_->fetch_add(seconds * kSecondNs); }
  rbac::MonotonicClock clock() const {
    return [now_ns = now_ns_] { return now_ns->load(); };
  }

 private:
  std::atomic<std::int64_t>* now_ns_;
};

// One test's world: its own segment, a temporary directory holding the map
// file, and the clock.
struct Fixture {
  explicit Fixture(const std::string& tag) : name(tag), map_path(dir.file("rbac_map.json")) {}

  ScopedName name;
  TempDir dir;
  std::string map_path;
  SharedClock clock;

  SegmentOptions options() const {
    SegmentOptions o;
    o.name = name.str();
    o.capacities.thread_slots = 16;
    o.capacities.process_records = 16;
    o.capacities.series = 64;
    o.capacities.families = 16;
    o.capacities.string_bytes = 8192;
    o.capacities.info_families = 2;
    o.capacities.info_value_bytes = 96;
    return o;
  }
  void write_map(const std::string& bytes) const { replace_file(map_path, bytes); }
  std::string scrape() const { return testing::scrape(name.str()); }
  // The sample's value, -1 when it is absent.
  double value(const std::string& series) const {
    return testing::sample(scrape(), series).value_or(-1);
  }
};

// The parent's ends of every live worker's pipes. A worker closes the ones
// it inherits, so each worker sees end-of-file when the test closes its pipe
// and the test sees end-of-file when a worker dies.
std::set<int>& parent_pipe_ends() {
  static std::set<int> ends;
  return ends;
}

// A worker process of a preforked server: after fork it opens the segment,
// registers RbacMetrics and makes its RbacMapState, as a real worker does.
// The test sends it one command line at a time, so it can change the map and
// the clock between commands and scrape while the workers live (their
// rbac_map_info values live with them). The worker's stderr goes to a file.
//   refresh N                     ensure_fresh() N times; replies "ok"
//   check N METHOD PATH X-SCOPES  check() N times with parse_scopes(X-SCOPES),
//                                 or no scopes when malformed; replies
//                                 "<matched> <allowed>" of the last
class Worker {
 public:
  Worker(const Fixture& fx, std::string log_path) : log_path_(std::move(log_path)) {
    std::signal(SIGPIPE, SIG_IGN);  // a dead worker fails the test, not kills it
    int commands[2], replies[2];
    REQUIRE(::pipe(commands) == 0);
    REQUIRE(::pipe(replies) == 0);
    pid_ = testing::fork_child([&] {
      for (int fd : parent_pipe_ends()) ::close(fd);
      ::close(commands[1]);
      ::close(replies[0]);
      return serve(fx, commands[0], replies[1]);
    });
    ::close(commands[0]);
    ::close(replies[1]);
    commands_ = commands[1];
    replies_ = ::fdopen(replies[0], "r");
    parent_pipe_ends().insert({commands_, replies[0]});
    REQUIRE(reply() == "ready");
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() {
    parent_pipe_ends().erase(commands_);
    parent_pipe_ends().erase(::fileno(replies_));
    ::close(commands_);
    std::fclose(replies_);
    CHECK(testing::wait_child(pid_) == 0);
  }

  void send(const std::string& command) {
    std::string line = command + "\n";
    REQUIRE(::write(commands_, line.data(), line.size()) == static_cast<ssize_t>(line.size()));
  }
  std::string reply() {
    char line[256];
    REQUIRE(std::fgets(line, sizeof line, replies_) != nullptr);  // nullptr: the worker died
    std::string text = line;
    if (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  }

  void refresh(int times = 1) {
    send("refresh " + std::to_string(times));
    REQUIRE(reply() == "ok");
  }
  // How many lines of the worker's stderr contain `needle`.
  int log_lines(const std::string& needle) const {
    std::istringstream log(read_text(log_path_));
    int n = 0;
    for (std::string line; std::getline(log, line);)
      if (line.find(needle) != std::string::npos) ++n;
    return n;
  }
  std::string log() const { return read_text(log_path_); }

 private:
  bool serve(const Fixture& fx, int commands, int replies) {
    int log = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log < 0 || ::dup2(log, STDERR_FILENO) < 0) return false;
    ::close(log);
    Segment segment = Segment::open(fx.options());
    RbacMapState state(fx.map_path, kReloadSec, rbac::RbacMetrics(segment), fx.clock.clock());
    auto answer = [&](const std::string& text) {
      std::string line = text + "\n";
      return ::write(replies, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    };
    if (!answer("ready")) return false;
    FILE* in = ::fdopen(commands, "r");
    char buffer[8192];
    while (std::fgets(buffer, sizeof buffer, in) != nullptr) {
      std::istringstream command(buffer);
      std::string verb;
      int times = 0;
      command >> verb >> times;
      if (verb == "refresh") {
        for (int i = 0; i < times; ++i) state.ensure_fresh();
        if (!answer("ok")) return false;
      } else if (verb == "check") {
        std::string method, path, header;
        command >> method >> path >> std::ws;
        std::getline(command, header);
        std::vector<std::string> scopes =
            rbac::parse_scopes(header).value_or(std::vector<std::string>{});
        Decision d;
        for (int i = 0; i < times; ++i) d = state.check(method, path, scopes);
        if (!answer(std::to_string(d.matched) + " " + std::to_string(d.allowed))) return false;
      } else {
        return false;
      }
    }
    return true;  // the test closed the pipe
  }

  std::string log_path_;
  pid_t pid_ = 0;
  int commands_ = -1;
  FILE* replies_ = nullptr;
};

// How many workers matched and allowed a request.
struct Tally {
  int matched = 0;
  int allowed = 0;
};

// Workers commanded together: each command goes to every worker before any
// reply is read, so they run it at the same time.
class Workers {
 public:
  Workers(const Fixture& fx, int count) {
    for (int i = 0; i < count; ++i)
      list_.push_back(
          std::make_unique<Worker>(fx, fx.dir.file("worker-" + std::to_string(i) + ".log")));
  }

  void refresh(int times = 1) {
    for (auto& w : list_) w->send("refresh " + std::to_string(times));
    for (auto& w : list_) REQUIRE(w->reply() == "ok");
  }
  Tally check(const std::string& method, const std::string& path, const std::string& x_scopes,
              int times = 1) {
    for (auto& w : list_)
      w->send("check " + std::to_string(times) + " " + method + " " + path + " " + x_scopes);
    Tally tally;
    for (auto& w : list_) {
      std::istringstream reply(w->reply());
      int matched = 0, allowed = 0;
      reply >> matched >> allowed;
      tally.matched += matched;
      tally.allowed += allowed;
    }
    return tally;
  }
  Worker& operator[](std::size_t i) { return *list_[i]; }
  std::size_t size() const { return list_.size(); }

 private:
  std::vector<std::unique_ptr<Worker>> list_;
};

bool is_metric_name(std::string_view name) {
  auto first = [](char c) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
  };
  return !name.empty() && first(name[0]) && std::all_of(name.begin(), name.end(), [&](char c) {
    return first(c) || std::isdigit(static_cast<unsigned char>(c));
  });
}

// Splits a sample line of the text format, `name{label="value",...} value`,
// checking its syntax; false when it is not one.
bool parse_sample_line(std::string_view line, std::string& name, std::string& value) {
  std::size_t at = line.find_first_of("{ ");
  if (at == std::string_view::npos || !is_metric_name(line.substr(0, at))) return false;
  name = line.substr(0, at);
  if (line[at] == '{') {
    do {
      ++at;  // past '{' or ','
      std::size_t equals = line.find("=\"", at);
      if (equals == std::string_view::npos) return false;
      std::string_view label = line.substr(at, equals - at);
      if (!is_metric_name(label) || label.find(':') != std::string_view::npos) return false;
      for (at = equals + 2; at < line.size() && line[at] != '"'; ++at) {
        if (line[at] != '\\') continue;
        ++at;  // an escape: \\, \" or \n
        if (at == line.size() || std::string_view("\\\"n").find(line[at]) == std::string_view::npos)
          return false;
      }
      if (at == line.size()) return false;  // no closing quote
      ++at;
    } while (at < line.size() && line[at] == ',');
    if (at == line.size() || line[at++] != '}') return false;
  }
  if (at == line.size() || line[at] != ' ') return false;
  value = line.substr(at + 1);
  return !value.empty() && value.find(' ') == std::string::npos;
}

// A map whose second route has `pattern`.
std::string route(const std::string& pattern) {
  return R"({"routes": [{"pattern": "/ok", "methods": ["GET"], "scopes": ["a"]},
                        {"pattern": ")" +
         pattern + R"(", "methods": ["GET"], "scopes": ["a"]}]})";
}

// What RbacMap::parse throws for `json`.
std::string parse_error(const std::string& json) {
  try {
    RbacMap::parse(json);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

// ---- The original's six tests ---------------------------------------------

TEST_CASE("test_rbac_reload_metrics_inc") {
  Fixture fx("reload-checks");
  fx.write_map(kMapV1);
  Workers workers(fx, 4);
  workers.refresh(25);
  CHECK(fx.value("rbac_reload_checks_total") == 100.0);
  CHECK(fx.value("rbac_reload_hit_total") == 0.0);  // the loads at start are not hits

  fx.clock.advance_seconds(kReloadSec);
  workers.refresh();  // the file is read again, unchanged: a check, not a hit
  CHECK(fx.value("rbac_reload_checks_total") == 104.0);
  CHECK(fx.value("rbac_reload_hit_total") == 0.0);
  CHECK(fx.value("rbac_reload_errors_total") == 0.0);
}

TEST_CASE("test_rbac_reload_hit_on_change") {
  Fixture fx("reload-hit");
  fx.write_map(kMapV1);
  Workers workers(fx, 4);
  fx.write_map(kMapV2);

  // Within reload_sec of the last read the file is not read again.
  workers.refresh();
  fx.clock.advance_seconds(kReloadSec - 1);
  workers.refresh();
  CHECK(fx.value("rbac_reload_hit_total") == 0.0);
  CHECK(workers.check("GET", "/ops/status", "new:scope").allowed == 0);  // v1 still in force

  fx.clock.advance_seconds(1);
  workers.refresh();
  CHECK(fx.value("rbac_reload_hit_total") == 4.0);  // once per worker
  CHECK(workers.check("GET", "/ops/status", "new:scope").allowed == 4);
  CHECK(workers.check("GET", "/ops/status", "ops:read").allowed == 0);

  fx.clock.advance_seconds(kReloadSec);
  workers.refresh(3);  // unchanged since: no more hits
  CHECK(fx.value("rbac_reload_hit_total") == 4.0);
  CHECK(fx.value("rbac_reload_checks_total") == 4.0 * 6);
}

TEST_CASE("test_rbac_map_etag_info_metric") {
  Fixture fx("etag");
  fx.write_map(kMapV1);
  Workers workers(fx, 3);
  std::string text = fx.scrape();
  CHECK(testing::sample(text, etag_series(kMapV1Sha256)) == 1.0);  // once, though three hold it
  CHECK(testing::count_lines(text, "rbac_map_info{") == 1);

  // A rollout: two workers have reloaded, the third still enforces v1.
  fx.write_map(kMapV2);
  fx.clock.advance_seconds(kReloadSec);
  workers[0].refresh();
  workers[1].refresh();
  text = fx.scrape();
  CHECK(testing::sample(text, etag_series(kMapV1Sha256)) == 1.0);
  CHECK(testing::sample(text, etag_series(kMapV2Sha256)) == 1.0);
  CHECK(testing::count_lines(text, "rbac_map_info{") == 2);

  workers[2].refresh();
  text = fx.scrape();
  CHECK(testing::sample(text, etag_series(kMapV2Sha256)) == 1.0);
  CHECK(testing::count_lines(text, "rbac_map_info{") == 1);
}

TEST_CASE("test_rbac_allowed_forbidden_counters") {
  Fixture fx("allowed-forbidden");
  fx.write_map(kMapV1);
  Workers workers(fx, 4);
  CHECK(workers.check("GET", "/ops/status", "ops:read", 10).allowed == 4);
  CHECK(workers.check("POST", "/ops/jobs/7", "ops:read,ops:write", 5).allowed == 4);
  CHECK(workers.check("POST", "/ops/jobs/7", "ops:read", 3).allowed == 0);   // require_all
  CHECK(workers.check("GET", "/ops/status", "", 2).allowed == 0);            // no scopes
  CHECK(workers.check("GET", "/ops/status", "ops:read;x", 1).allowed == 0);  // malformed X-Scopes
  CHECK(workers.check("GET", "/unmapped", "ops:read", 1).allowed == 0);      // fails closed
  CHECK(workers.check("GET", "/readyz", "", 7).allowed == 4);                // public: not counted
  std::string text = fx.scrape();
  CHECK(testing::sample(text, "rbac_allowed_total") == 4.0 * (10 + 5));
  CHECK(testing::sample(text, "rbac_forbidden_total") == 4.0 * (3 + 2 + 1 + 1));
}

TEST_CASE("test_rbac_route_matches_counter") {
  Fixture fx("route-matches");
  fx.write_map(kMapV1);
  Workers workers(fx, 4);
  CHECK(workers.check("GET", "/ops/status", "ops:read", 3).matched == 4);
  CHECK(workers.check("PUT", "/judge/runs/9", "", 2).matched == 4);  // matched, then refused
  CHECK(workers.check("DELETE", "/ops/status", "ops:read", 4).matched == 0);  // method not covered
  CHECK(workers.check("GET", "/ops/jobs", "ops:read", 1).matched == 0);       // "*" needs a segment
  CHECK(workers.check("GET", "/ops/status/", "ops:read", 1).matched == 0);    // empty segment
  CHECK(workers.check("GET", "/healthz", "", 5).matched == 0);                // public
  std::string text = fx.scrape();
  CHECK(testing::sample(text, "rbac_route_matches_total") == 4.0 * (3 + 2));
  CHECK(testing::sample(text, "rbac_allowed_total") == 4.0 * 3);
  CHECK(testing::sample(text, "rbac_forbidden_total") == 4.0 * (2 + 4 + 1 + 1));
}

TEST_CASE("test_metrics_render_text_prometheus_format") {
  Fixture fx("render");
  fx.write_map(kMapV1);
  Workers workers(fx, 2);
  workers.refresh(3);
  workers.check("GET", "/ops/status", "ops:read", 2);
  workers.check("GET", "/nowhere", "", 1);
  std::string text = fx.scrape();
  REQUIRE(!text.empty());
  CHECK(text.back() == '\n');

  std::map<std::string, int> helps, types;
  std::map<std::string, std::string> type_of;
  std::string family;  // of the last # TYPE line: samples follow their family
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    INFO("line: " << line);
    std::istringstream words(line);
    std::string hash, keyword, name, rest;
    if (line.starts_with("# ")) {
      words >> hash >> keyword >> name >> std::ws;
      std::getline(words, rest);
      REQUIRE(is_metric_name(name));
      REQUIRE(!rest.empty());
      if (keyword == "HELP") {
        ++helps[name];
      } else {
        REQUIRE(keyword == "TYPE");
        ++types[name];
        type_of[name] = rest;
        family = name;
      }
      continue;
    }
    std::string value;
    REQUIRE(parse_sample_line(line, name, value));
    if (type_of[family] == "histogram")
      CHECK((name == family + "_bucket" || name == family + "_sum" || name == family + "_count"));
    else
      CHECK(name == family);
    if (value != "+Inf" && value != "-Inf" && value != "NaN") {
      std::size_t used = 0;
      CHECK_NOTHROW(std::stod(value, &used));
      CHECK(used == value.size());
    }
  }
  for (const auto& [name, n] : types) {
    INFO("family " << name);
    CHECK(n == 1);
    CHECK(helps[name] == 1);
  }
  for (const char* counter :
       {"rbac_reload_checks_total", "rbac_reload_hit_total", "rbac_reload_errors_total",
        "rbac_allowed_total", "rbac_forbidden_total", "rbac_route_matches_total"}) {
    INFO("family " << counter);
    CHECK(type_of[counter] == "counter");
  }
  CHECK(type_of["rbac_map_info"] == "gauge");
  CHECK(testing::sample(text, etag_series(kMapV1Sha256)) == 1.0);
  CHECK(testing::sample(text, "rbac_reload_checks_total") == 6.0);
  CHECK(testing::sample(text, "rbac_reload_errors_total") == 0.0);
  CHECK(testing::sample(text, "rbac_route_matches_total") == 4.0);
}

// ---- Bad input --------------------------------------------------------------

TEST_CASE("a_map_missing_at_start_refuses_everything") {
  Fixture fx("missing");
  Workers workers(fx, 2);
  CHECK(workers.check("GET", "/ops/status", "ops:read").allowed == 0);
  CHECK(workers.check("GET", "/judge/x", "judge:submit").matched == 0);
  CHECK(workers.check("GET", "/readyz", "").allowed == 2);  // public routes need no map
  workers.refresh();
  std::string text = fx.scrape();
  CHECK(testing::sample(text, "rbac_forbidden_total") == 4.0);
  CHECK(testing::sample(text, "rbac_allowed_total") == 0.0);
  CHECK(testing::sample(text, "rbac_reload_errors_total") == 2.0);
  CHECK(testing::count_lines(text, "rbac_map_info{") == 0);
  for (std::size_t i = 0; i < workers.size(); ++i) {
    INFO(workers[i].log());
    CHECK(workers[i].log_lines("event=rbac_reload_failed file=" + fx.map_path +
                               " error=\"cannot open: No such file or directory\"") == 1);
  }

  // The map appears: the next due check loads it, and that is a hit.
  fx.write_map(kMapV1);
  fx.clock.advance_seconds(kReloadSec);
  workers.refresh();
  CHECK(fx.value("rbac_reload_hit_total") == 2.0);
  CHECK(workers.check("GET", "/ops/status", "ops:read").allowed == 2);
  CHECK(fx.value(etag_series(kMapV1Sha256)) == 1.0);
}

TEST_CASE("a_malformed_map_at_start_refuses_everything") {
  const std::string not_json = R"({"routes": [)";
  const std::string bad_scope =
      R"({"routes": [{"pattern": "/ops/status", "methods": ["GET"], "scopes": ["ops read"]}]})";
  for (const std::string& broken : {not_json, bad_scope}) {
    INFO(broken);
    Fixture fx("malformed-start");
    fx.write_map(broken);
    Workers workers(fx, 2);
    CHECK(workers.check("GET", "/ops/status", "ops:read").allowed == 0);
    workers.refresh(2);
    fx.clock.advance_seconds(kReloadSec);
    workers.refresh();  // the same broken bytes again: not counted again
    std::string text = fx.scrape();
    CHECK(testing::sample(text, "rbac_forbidden_total") == 2.0);
    CHECK(testing::sample(text, "rbac_reload_errors_total") == 2.0);
    CHECK(testing::count_lines(text, "rbac_map_info{") == 0);
    CHECK(workers[0].log_lines("event=rbac_reload_failed file=" + fx.map_path +
                               " error=\"RBAC map ") == 1);
  }
}

TEST_CASE("a_broken_map_keeps_the_last_good_one_counting_once_per_worker_and_version") {
  Fixture fx("becoming-malformed");
  fx.write_map(kMapV1);
  Workers workers(fx, 4);

  // Half of a new version, as a writer that does not rename leaves it.
  const std::string half_written = kMapV2.substr(0, kMapV2.size() / 2);
  fx.write_map(half_written);
  fx.clock.advance_seconds(kReloadSec);
  workers.refresh();
  CHECK(fx.value("rbac_reload_errors_total") == 4.0);
  CHECK(workers.check("GET", "/ops/status", "ops:read").allowed == 4);   // v1 still in force
  CHECK(workers.check("GET", "/ops/status", "new:scope").allowed == 0);  // none of v2 applied
  CHECK(fx.value(etag_series(kMapV1Sha256)) == 1.0);

  // The same broken bytes, written again and read twice more: still 4.
  fx.write_map(half_written);
  for (int i = 0; i < 2; ++i) {
    fx.clock.advance_seconds(kReloadSec);
    workers.refresh();
  }
  CHECK(fx.value("rbac_reload_errors_total") == 4.0);

  // Another broken version is counted again.
  fx.write_map(route("/ops//status"));
  fx.clock.advance_seconds(kReloadSec);
  workers.refresh();
  CHECK(fx.value("rbac_reload_errors_total") == 8.0);
  CHECK(fx.value("rbac_reload_hit_total") == 0.0);
  const std::string failed = "event=rbac_reload_failed file=" + fx.map_path + " error=";
  for (std::size_t i = 0; i < workers.size(); ++i) {
    INFO(workers[i].log());
    CHECK(workers[i].log_lines("event=rbac_reload_failed") == 2);
    CHECK(workers[i].log_lines(failed + "\"RBAC map is not valid JSON: ") == 1);
    CHECK(workers[i].log_lines(failed + "\"RBAC map routes[1]: pattern \\\"/ops//status\\\"") == 1);
  }

  // A good version ends it.
  fx.write_map(kMapV2);
  fx.clock.advance_seconds(kReloadSec);
  workers.refresh();
  CHECK(fx.value("rbac_reload_hit_total") == 4.0);
  CHECK(workers.check("GET", "/ops/status", "new:scope").allowed == 4);
  std::string text = fx.scrape();
  CHECK(testing::sample(text, etag_series(kMapV2Sha256)) == 1.0);
  CHECK(testing::count_lines(text, "rbac_map_info{") == 1);

  // Broken again, then the map in force comes back unchanged (nothing to
  // load), then the same breakage: news again, counted once more per worker.
  fx.write_map(half_written);
  fx.clock.advance_seconds(kReloadSec);
  workers.refresh();
  CHECK(fx.value("rbac_reload_errors_total") == 12.0);
  fx.write_map(kMapV2);
  fx.clock.advance_seconds(kReloadSec);
  workers.refresh();
  CHECK(fx.value("rbac_reload_hit_total") == 4.0);  // v2 was in force: not a reload
  fx.write_map(half_written);
  fx.clock.advance_seconds(kReloadSec);
  workers.refresh();
  CHECK(fx.value("rbac_reload_errors_total") == 16.0);
}

TEST_CASE("a_map_with_invalid_patterns_is_rejected_naming_the_pattern") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"ops/status", "must be an absolute path"},
      {"", "must be an absolute path"},
      {"/ops//status", "has an empty segment"},
      {"/ops/", "has an empty segment"},
      {"//", "has an empty segment"},
      {"/ops/**/logs", "has \"**\" before its last segment"},
      {"/ops/st*tus", "a wildcard is a whole segment"},
      {"/ops/***", "a wildcard is a whole segment"},
      {"/ops/a?b", "'?'"},
      {"/ops/a b", "a space"},
      {"/ops/../admin", "\"..\" segment"},
      {"/./ops", "\"..\" segment"},
  };
  for (const auto& [pattern, rule] : cases) {
    std::string message = parse_error(route(pattern));
    INFO(message);
    CHECK_THAT(message, Catch::StartsWith("RBAC map routes[1]: pattern \"" + pattern + "\" ") &&
                            Catch::Contains(rule));
  }
}

TEST_CASE("a_map_breaking_the_other_rules_is_rejected_naming_the_route_and_rule") {
  const std::string ok_route = R"({"pattern": "/x", "methods": ["GET"], "scopes": ["a"]})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "RBAC map is not valid JSON"},
      {R"({"routes": []} trailing)", "RBAC map is not valid JSON"},
      {"[]", "RBAC map document: must be a JSON object"},
      {R"({})", "RBAC map document: \"routes\" is required and must be an array"},
      {R"({"routes": {}})", "RBAC map document: \"routes\" is required and must be an array"},
      {R"({"routes": [], "require_all": "yes"})",
       "RBAC map document: \"require_all\" must be true or false"},
      {R"({"routes": [], "reload_sec": 1})",
       "RBAC map document: unknown key \"reload_sec\" (allowed: require_all, routes)"},
      {R"({"routes": [], "routes": []})", "RBAC map has the key \"routes\" twice in one object"},
      {R"({"routes": [)" + ok_route + R"(, "x"]})", "RBAC map routes[1]: must be an object"},
      {R"({"routes": [{"methods": ["GET"], "scopes": ["a"]}]})",
       "RBAC map routes[0]: \"pattern\" is required and must be a string"},
      {R"({"routes": [{"pattern": 7, "methods": ["GET"], "scopes": ["a"]}]})",
       "RBAC map routes[0]: \"pattern\" is required and must be a string"},
      {R"({"routes": [{"pattern": "/x", "methods": ["GET"], "scopes": ["a"], "scope": "b"}]})",
       "RBAC map routes[0] (pattern \"/x\"): unknown key \"scope\""},
      {R"({"routes": [{"pattern": "/x", "methods": [], "scopes": ["a"]}]})",
       "RBAC map routes[0] (pattern \"/x\"): \"methods\" is required and must be a non-empty "
       "array"},
      {R"({"routes": [{"pattern": "/x", "methods": "GET", "scopes": ["a"]}]})",
       "RBAC map routes[0] (pattern \"/x\"): \"methods\" is required and must be a non-empty "
       "array"},
      {R"({"routes": [{"pattern": "/x", "methods": ["get"], "scopes": ["a"]}]})",
       "RBAC map routes[0] (pattern \"/x\"): \"methods\" has \"get\": methods are upper-case HTTP "
       "methods"},
      {R"({"routes": [{"pattern": "/x", "methods": ["GET", 1], "scopes": ["a"]}]})",
       "RBAC map routes[0] (pattern \"/x\"): \"methods\" must hold only strings"},
      {R"({"routes": [{"pattern": "/x", "methods": ["GET"]}]})",
       "RBAC map routes[0] (pattern \"/x\"): \"scopes\" is required and must be a non-empty array"},
      {R"({"routes": [{"pattern": "/x", "methods": ["GET"], "scopes": []}]})",
       "RBAC map routes[0] (pattern \"/x\"): \"scopes\" is required and must be a non-empty array"},
      {R"({"routes": [{"pattern": "/x", "methods": ["GET"], "scopes": ["ops read"]}]})",
       "RBAC map routes[0] (pattern \"/x\"): \"scopes\" has \"ops read\": scopes are 1-64 "
       "characters"},
      {R"({"routes": [{"pattern": "/x", "methods": ["GET"], "scopes": [""]}]})",
       "RBAC map routes[0] (pattern \"/x\"): \"scopes\" has \"\": scopes are 1-64 characters"},
      {R"({"routes": [{"pattern": "/x", "methods": ["GET"], "scopes": [")" + std::string(65, 'a') +
           R"("]}]})",
       "RBAC map routes[0] (pattern \"/x\"): \"scopes\" has \"" + std::string(65, 'a') +
           "\": scopes are 1-64 characters of [A-Za-z0-9:._-]"},
      {R"({"routes": [{"pattern": "/x", "methods": ["GET"], "scopes": ["a"], "require_all": 1}]})",
       "RBAC map routes[0] (pattern \"/x\"): \"require_all\" must be true or false"},
  };
  for (const auto& [json, expected] : cases) {
    std::string message = parse_error(json);
    INFO(json << "\n -> " << message);
    CHECK_THAT(message, Catch::StartsWith(expected));
  }
  CHECK_NOTHROW(RbacMap::parse(R"({"routes": []})"));
  CHECK_NOTHROW(RbacMap::parse(kMapV1));
}

TEST_CASE("a_map_replaced_by_rename_between_checks_is_loaded_whole") {
  Fixture fx("rename");
  fx.write_map(kMapV1);
  Workers workers(fx, 2);
  CHECK(workers.check("GET", "/ops/status", "ops:read").allowed == 2);

  // Renamed over the file between checks; the map in force changes only on
  // the next due check, and then completely.
  fx.write_map(kMapV2);
  CHECK(workers.check("GET", "/ops/status", "ops:read").allowed == 2);
  fx.clock.advance_seconds(kReloadSec);
  workers.refresh();
  CHECK(workers.check("GET", "/ops/status", "ops:read").allowed == 0);
  CHECK(workers.check("GET", "/ops/status", "new:scope").allowed == 2);
  CHECK(fx.value("rbac_reload_hit_total") == 2.0);
  CHECK(fx.value(etag_series(kMapV2Sha256)) == 1.0);
  CHECK(fx.value("rbac_reload_errors_total") == 0.0);
}

TEST_CASE("an_unreadable_map_keeps_the_last_good_one") {
  Fixture fx("unreadable");
  fx.write_map(kMapV1);
  Workers workers(fx, 2);

  // A directory in the file's place (chmod 000 would not stop root).
  REQUIRE(std::remove(fx.map_path.c_str()) == 0);
  REQUIRE(::mkdir(fx.map_path.c_str(), 0700) == 0);
  for (int i = 0; i < 2; ++i) {
    fx.clock.advance_seconds(kReloadSec);
    workers.refresh();
  }
  CHECK(fx.value("rbac_reload_errors_total") == 2.0);
  CHECK(workers.check("GET", "/ops/status", "ops:read").allowed == 2);

  // Then a dangling symlink: another failure, counted again.
  REQUIRE(::rmdir(fx.map_path.c_str()) == 0);
  REQUIRE(::symlink("no-such-target.json", fx.map_path.c_str()) == 0);
  fx.clock.advance_seconds(kReloadSec);
  workers.refresh();
  CHECK(fx.value("rbac_reload_errors_total") == 4.0);
  CHECK(workers.check("GET", "/ops/status", "ops:read").allowed == 2);
  CHECK(fx.value(etag_series(kMapV1Sha256)) == 1.0);
  for (std::size_t i = 0; i < workers.size(); ++i) {
    INFO(workers[i].log());
    CHECK(workers[i].log_lines("error=\"not a regular file: a directory\"") == 1);
    CHECK(workers[i].log_lines("error=\"cannot open: No such file or directory\"") == 1);
  }

  // The good file back: nothing new to load, so no hit.
  REQUIRE(std::remove(fx.map_path.c_str()) == 0);
  fx.write_map(kMapV1);
  fx.clock.advance_seconds(kReloadSec);
  workers.refresh();
  CHECK(fx.value("rbac_reload_hit_total") == 0.0);
  CHECK(fx.value("rbac_reload_errors_total") == 4.0);
}

TEST_CASE("checks_and_reloads_from_many_threads_are_exact") {
  Fixture fx("threads");
  fx.write_map(kMapV1);
  pid_t worker = testing::fork_child([&] {
    Segment segment = Segment::open(fx.options());
    RbacMapState state(fx.map_path, kReloadSec, rbac::RbacMetrics(segment), fx.clock.clock());
    const std::vector<std::string> scopes = {"judge:submit"};
    std::atomic<bool> all_allowed{true};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&] {
        for (int i = 0; i < 20'000; ++i)
          if (!state.check("POST", "/judge/runs", scopes).allowed) all_allowed = false;
      });
    // Meanwhile the map changes 20 times; /judge/** is the same in both versions.
    for (int i = 0; i < 20; ++i) {
      fx.write_map(i % 2 == 0 ? kMapV2 : kMapV1);
      fx.clock.advance_seconds(kReloadSec);
      state.ensure_fresh();
    }
    for (auto& t : threads) t.join();
    return all_allowed.load() && state.etag() == kMapV1Sha256;  // the last written
  });
  REQUIRE(testing::wait_child(worker) == 0);
  std::string text = fx.scrape();
  CHECK(testing::sample(text, "rbac_allowed_total") == 80'000.0);
  CHECK(testing::sample(text, "rbac_route_matches_total") == 80'000.0);
  CHECK(testing::sample(text, "rbac_reload_hit_total") == 20.0);
}

TEST_CASE("a_reload_interval_out_of_range_is_rejected") {
  Fixture fx("reload-sec");
  fx.write_map(kMapV1);
  pid_t worker = testing::fork_child([&] {
    rbac::RbacMetrics metrics(Segment::open(fx.options()));
    for (std::int64_t reload_sec : {std::int64_t{-1}, std::int64_t{1} << 62}) {
      try {
        RbacMapState state(fx.map_path, reload_sec, metrics, fx.clock.clock());
        return false;
      } catch (const std::invalid_argument& e) {
        if (!std::string_view(e.what()).starts_with("reload_sec " + std::to_string(reload_sec) +
                                                    " is out of range [0, "))
          return false;
      }
    }
    RbacMapState zero(fx.map_path, 0, metrics, fx.clock.clock());
    return zero.etag() == kMapV1Sha256;
  });
  CHECK(testing::wait_child(worker) == 0);
}

TEST_CASE("public_routes_are_exactly_readyz_and_healthz") {
  CHECK(rbac::is_public("/readyz"));
  CHECK(rbac::is_public("/healthz"));
  CHECK_FALSE(rbac::is_public("/readyz/"));
  CHECK_FALSE(rbac::is_public("/readyz/x"));
  CHECK_FALSE(rbac::is_public("/healthz?x=1"));
  CHECK_FALSE(rbac::is_public("/metrics"));
  CHECK_FALSE(rbac::is_public("/"));
}

TEST_CASE("parse_scopes_accepts_spaces_and_commas_and_refuses_malformed_headers") {
  using Scopes = std::vector<std::string>;
  CHECK(rbac::parse_scopes("") == Scopes{});
  CHECK(rbac::parse_scopes(" , ,") == Scopes{});
  CHECK(rbac::parse_scopes("ops:read") == Scopes{"ops:read"});
  CHECK(rbac::parse_scopes("ops:read ops:write") == Scopes{"ops:read", "ops:write"});
  CHECK(rbac::parse_scopes("ops:read,ops:write") == Scopes{"ops:read", "ops:write"});
  CHECK(rbac::parse_scopes(" a, b ,,c  ") == Scopes{"a", "b", "c"});
  CHECK(rbac::parse_scopes("A-Z.a_z:0-9") == Scopes{"A-Z.a_z:0-9"});
  CHECK(rbac::parse_scopes(std::string(64, 's')) == Scopes{std::string(64, 's')});

  CHECK_FALSE(rbac::parse_scopes(std::string(65, 's')));  // a scope too long
  CHECK_FALSE(rbac::parse_scopes("ops;read"));
  CHECK_FALSE(rbac::parse_scopes("ops:read\tops:write"));  // tab is no separator
  CHECK_FALSE(rbac::parse_scopes("ops/read"));
  CHECK_FALSE(rbac::parse_scopes("caf\xc3\xa9"));
  CHECK_FALSE(rbac::parse_scopes(std::string("a\0b", 3)));

  std::string sixty_four, sixty_five;
  for (int i = 0; i < 64; ++i) sixty_four += "s" + std::to_string(i) + " ";
  sixty_five = sixty_four + "s64";
  CHECK(rbac::parse_scopes(sixty_four)->size() == 64);
  CHECK_FALSE(rbac::parse_scopes(sixty_five));

  CHECK(rbac::parse_scopes(std::string(4096, ' ')) == Scopes{});
  CHECK_FALSE(rbac::parse_scopes(std::string(4097, ' ')));  // longer than 4096 bytes
}

TEST_CASE("route_patterns_match_as_the_table_says") {
  struct Case {
    const char* pattern;
    const char* path;
    bool matches;
  };
  const Case cases[] = {
      {"/", "/", true},
      {"/", "/ops", false},
      {"/", "", false},
      {"/ops/status", "/ops/status", true},
      {"/ops/status", "/ops/status/", false},
      {"/ops/status", "/ops/Status", false},
      {"/ops/status", "/ops/status/x", false},
      {"/ops/status", "/ops", false},
      {"/ops/status", "ops/status", false},
      {"/ops/status", "/ops//status", false},
      {"/ops/status", "/ops/status?x=1", false},  // paths come without the query
      {"/ops/jobs/*", "/ops/jobs/7", true},
      {"/ops/jobs/*", "/ops/jobs/", false},
      {"/ops/jobs/*", "/ops/jobs", false},
      {"/ops/jobs/*", "/ops/jobs/7/logs", false},
      {"/ops/jobs/*", "/ops/jobs/..", false},
      {"/ops/jobs/*", "/ops/jobs/.", false},
      {"/ops/*/logs", "/ops/7/logs", true},
      {"/ops/*/logs", "/ops//logs", false},
      {"/judge/**", "/judge/a", true},
      {"/judge/**", "/judge/a/b/c", true},
      {"/judge/**", "/judge", false},
      {"/judge/**", "/judge/", false},
      {"/judge/**", "/judge/a//b", false},
      {"/judge/**", "/judge/a/", false},
      {"/judge/**", "/judge/../ops/status", false},
      {"/judge/**", "/judge/a/./b", false},
      {"/judge/**", "/judgement/a", false},
      {"/**", "/anything/at/all", true},
      {"/**", "/", false},
      {"/*", "/x", true},
      {"/*", "/x/y", false},
      {"/a.b/c-d_e", "/a.b/c-d_e", true},
      {"/...", "/...", true},
  };
  for (const Case& c : cases) {
    INFO(c.pattern << " vs " << c.path);
    CHECK(rbac::RoutePattern::parse(c.pattern).matches(c.path) == c.matches);
  }
}

TEST_CASE("the_first_matching_route_decides_and_unmatched_routes_are_refused") {
  RbacMap map = RbacMap::parse(R"({
    "require_all": true,
    "routes": [
      {"pattern": "/ops/jobs/latest", "methods": ["GET"], "scopes": ["ops:read"]},
      {"pattern": "/ops/jobs/*", "methods": ["GET", "POST"], "scopes": ["ops:read", "ops:write"]},
      {"pattern": "/ops/**", "methods": ["*"], "scopes": ["ops:admin", "ops:root"], "require_all": false}
    ]})");
  using Scopes = std::vector<std::string>;
  auto decide = [&](const char* method, const char* path, const Scopes& scopes) {
    Decision d = map.decide(method, path, scopes);
    return std::pair{d.matched, d.allowed};
  };
  const std::pair refused{true, false}, allowed{true, true}, unmatched{false, false};
  CHECK(decide("GET", "/ops/jobs/latest", {"ops:read"}) == allowed);  // the first match wins
  CHECK(decide("GET", "/ops/jobs/latest", {}) == refused);
  CHECK(decide("GET", "/ops/jobs/7", {"ops:read"}) == refused);  // the map-wide require_all
  CHECK(decide("GET", "/ops/jobs/7", {"ops:write", "ops:read"}) == allowed);
  CHECK(decide("DELETE", "/ops/jobs/7", {"ops:read"}) == refused);  // DELETE falls to /ops/**
  CHECK(decide("DELETE", "/ops/jobs/7", {"ops:root"}) == allowed);  // any one, as that route says
  CHECK(decide("GET", "/judge/x", {"ops:root"}) == unmatched);       // fails closed
}
