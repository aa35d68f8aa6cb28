// shmetrics-demo-writer: a preforked master whose workers record the original
// work order's metrics into their role's segment, for scripts/demo.sh.
#include <shmetrics/shmetrics.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

struct Options {
  std::string instance = "default";
  std::string role;
  int workers = 3;
  bool busy = false;  // no pause between requests: writers at full speed
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "shmetrics-demo-writer: " << message
            << "\nusage: shmetrics-demo-writer --role ops|judge [--instance NAME] [--workers N] [--busy]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--busy") {
      o.busy = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      std::cout << "usage: shmetrics-demo-writer --role ops|judge [--instance NAME] [--workers N] [--busy]\n"
                   "Forks N workers (1-64, default 3) that record the work order's metrics into the\n"
                   "segment INSTANCE.ROLE of the segment directory ($SHMETRICS_SEGMENT_DIR, else\n"
                   "/dev/shm/shmetrics-<uid>) until SIGTERM.\n";
      std::exit(0);
    }
    if (i + 1 >= argc) usage_error(a + " needs a value");
    std::string v = argv[++i];
    if (a == "--instance") o.instance = v;
    else if (a == "--role") o.role = v;
    else if (a == "--workers") o.workers = std::atoi(v.c_str());
    else usage_error("unknown flag \"" + a + "\"");
  }
  if (o.role != "ops" && o.role != "judge") usage_error("--role must be ops or judge");
  if (o.workers < 1 || o.workers > 64) usage_error("--workers must be 1-64");
  return o;
}

// What one worker does: the RBAC middleware's counters on every request, the
// map version as an info metric, and on the Judge role readyz samples.
[[noreturn]] void run_worker(const shmetrics::Segment& segment, const std::string& role, int number,
                             bool busy) {
  auto checks = segment.counter("rbac_reload_checks_total", "Every freshness check of the RBAC map.");
  auto hits = segment.counter("rbac_reload_hit_total", "Checks that found the RBAC map changed and reloaded it.");
  auto allowed = segment.counter("rbac_allowed_total", "Requests the RBAC middleware allowed.");
  auto forbidden = segment.counter("rbac_forbidden_total", "Requests the RBAC middleware refused with 403.");
  auto matches = segment.counter("rbac_route_matches_total", "Requests whose route matched an RBAC map pattern.");
  auto map_info = segment.info("rbac_map_info", "The RBAC map version in force (SHA-256 of the map file).", {"etag"});
  auto inflight = segment.gauge("demo_inflight_requests", "Requests being served, over live workers.",
                                shmetrics::GaugeMode::kLiveSum);
  auto latency = segment.histogram_family("demo_request_duration_seconds", "Time one request of the loop took.",
                                          {"route"}, {}, "seconds").labels({"/rbac/check"});
  shmetrics::Readyz readyz;
  if (role == "judge") readyz = segment.readyz();

  map_info.set({"5bcdd633308d109fdad6fd5e6697406ea1182086da3c46b04633a63bbf2e2358"});
  hits.inc();
  for (unsigned long i = 0; !g_stop; ++i) {
    shmetrics::ScopedTimer timer(latency);
    checks.inc();
    inflight.inc();
    bool allow = (i + static_cast<unsigned long>(number)) % 5 != 0;
    matches.inc();
    (allow ? allowed : forbidden).inc();
    if (role == "judge") {
      readyz.observe(i % 10 != 0);
    }
    inflight.dec();
    if (!busy) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  std::signal(SIGTERM, on_stop);
  std::signal(SIGINT, on_stop);
  std::optional<shmetrics::Segment> segment;
  try {
    shmetrics::SegmentOptions options;
    options.instance = o.instance;
    options.role = o.role;
    segment = shmetrics::Segment::open(options);
  } catch (const std::exception& e) {
    std::cerr << "event=open_failed role=" << o.role << " reason=\"" << e.what() << "\"\n";
    return 1;
  }
  std::vector<pid_t> workers;
  for (int n = 0; n < o.workers; ++n) {
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) {
      std::cerr << "event=fork_failed reason=\"" << std::strerror(errno) << "\"\n";
      break;
    }
    if (pid == 0) run_worker(*segment, o.role, n, o.busy);
    workers.push_back(pid);
  }
  std::cerr << "event=ready role=" << o.role << " segment=" << segment->path()
            << " workers=" << workers.size() << "\n";
  while (!g_stop) pause();
  for (pid_t pid : workers) kill(pid, SIGTERM);
  for (pid_t pid : workers) waitpid(pid, nullptr, 0);
  std::cerr << "event=stopped role=" << o.role << "\n";
  return 0;
}
