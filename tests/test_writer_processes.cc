// Per-writer process metrics: the exporter reads /proc for each live process
// holding a record of the role and shows its CPU time and resident memory
// with a pid label; writers in another pid namespace are left out and
// counted. Writers here are real fork()ed processes.
#include "process_metrics.h"
#include "role_source.h"
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>

using namespace shmetrics;
using testing::ParkedChild;
using testing::ScopedName;

TEST_CASE("a process is in this pid namespace when its NSpid line has its one pid") {
  using exporter::in_own_pid_namespace;
  CHECK(in_own_pid_namespace(123, "Name:\tw\nPid:\t123\nPPid:\t1\nNSpid:\t123\nNSpgid:\t123\n"));
  // Seen here as 11853, as 2 in its own namespace below this one.
  CHECK_FALSE(in_own_pid_namespace(2, "Pid:\t11853\nNSpid:\t11853\t2\n"));
  CHECK_FALSE(in_own_pid_namespace(11853, "Pid:\t11853\nNSpid:\t11853\t2\n"));
  // Another pid than the record names (a pid reused meanwhile).
  CHECK_FALSE(in_own_pid_namespace(124, "Pid:\t123\nNSpid:\t123\n"));
  // No NSpid line (before Linux 4.1): the Pid line decides.
  CHECK(in_own_pid_namespace(77, "Name:\tw\nPid:\t77\n"));
  CHECK_FALSE(in_own_pid_namespace(77, "Name:\tw\nPid:\t78\n"));
  // Neither, or garbage: not shown.
  CHECK_FALSE(in_own_pid_namespace(77, ""));
  CHECK_FALSE(in_own_pid_namespace(77, "Name:\tw\n"));
  CHECK_FALSE(in_own_pid_namespace(77, "NSpid:\t77x\n"));
  CHECK_FALSE(in_own_pid_namespace(77, "NSpid:\t\n"));
  CHECK_FALSE(in_own_pid_namespace(77, "NSpid:\t99999999999999999977\n"));
}

namespace {

SegmentOptions options(const ScopedName& name) {
  SegmentOptions o = testing::small_options(name.str(), 8, 8);
  return o;
}

// A segment with one live writer process holding a record.
struct OneWriter {
  explicit OneWriter(const char* name_text)
      : name(name_text), segment(Segment::open(options(name))),
        busy(segment.gauge("busy_workers", "Busy workers.", GaugeMode::kLiveSum)), writer([&] { busy.set(1); }) {}
  ScopedName name;
  Segment segment;
  Gauge busy;
  ParkedChild writer;
};

std::string pid_series(const char* family, pid_t pid) {
  return std::string(family) + "{role=\"ops\",pid=\"" + std::to_string(pid) + "\"}";
}

// Scrapes until `done(text)` (the writers' /proc is read at most once a
// second), for at most 10 s; the last text.
template <typename Done>
std::string scrape_until(exporter::RoleSource& source, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string text = source.scrape();
  while (!done(text) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    text = source.scrape();
  }
  return text;
}

}  // namespace

TEST_CASE("each live writer process shows its CPU time and resident memory by pid, the dead none") {
  ScopedName name("writer-procs");
  Segment s = Segment::open(options(name));
  Gauge busy = s.gauge("busy_workers", "Busy workers.", GaugeMode::kLiveSum);
  ParkedChild first([&] { busy.set(1); });   // each claims a process record
  ParkedChild second([&] { busy.set(1); });
  exporter::RoleSource source("ops", name.str());
  std::string text = source.scrape();
  INFO(text);
  CHECK(testing::sample(text, "shmetrics_writer_processes{role=\"ops\",state=\"shown\"}") == 2.0);
  CHECK(testing::sample(text, "shmetrics_writer_processes{role=\"ops\",state=\"other_namespace\"}") == 0.0);
  CHECK(testing::sample(text, "shmetrics_writer_processes{role=\"ops\",state=\"unreadable\"}") == 0.0);
  CHECK(testing::sample(text, "shmetrics_writer_processes{role=\"ops\",state=\"not_read\"}") == 0.0);
  for (pid_t pid : {first.pid(), second.pid()}) {
    const auto rss = testing::sample(text, pid_series("shmetrics_writer_process_resident_memory_bytes", pid));
    REQUIRE(rss.has_value());
    // What /proc says of it now, in pages: the same order of magnitude.
    const auto stats = exporter::read_process_stats(pid);
    REQUIRE(stats.has_value());
    CHECK(*rss > 0);
    CHECK(*rss <= 4.0 * static_cast<double>(stats->resident_bytes));
    CHECK(*rss >= static_cast<double>(stats->resident_bytes) / 4.0);
    const auto cpu = testing::sample(text, pid_series("shmetrics_writer_process_cpu_seconds_total", pid));
    REQUIRE(cpu.has_value());
    CHECK(*cpu >= 0.0);
    CHECK(*cpu <= stats->cpu_seconds);
  }
  // The exporter's own process holds no record: not shown.
  CHECK_FALSE(testing::sample(text, pid_series("shmetrics_writer_process_resident_memory_bytes", ::getpid())));
  CHECK(testing::count_lines(text, "shmetrics_writer_process_resident_memory_bytes{") == 2);

  // A writer killed leaves the metrics at the next read of /proc.
  const pid_t killed = first.pid();
  first.kill();
  text = scrape_until(source, [&](const std::string& t) {
    return testing::sample(t, "shmetrics_writer_processes{role=\"ops\",state=\"shown\"}") == 1.0;
  });
  CHECK(testing::sample(text, "shmetrics_writer_processes{role=\"ops\",state=\"shown\"}") == 1.0);
  CHECK_FALSE(testing::sample(text, pid_series("shmetrics_writer_process_resident_memory_bytes", killed)));
  // Its record is dead: not looked up in /proc at all.
  CHECK(testing::sample(text, "shmetrics_writer_processes{role=\"ops\",state=\"unreadable\"}") == 0.0);
  CHECK(testing::sample(text, pid_series("shmetrics_writer_process_resident_memory_bytes", second.pid())));
}

TEST_CASE("OpenMetrics names the writers' CPU counter family without _total") {
  OneWriter w("writer-procs-om");
  exporter::RoleSource source("ops", w.name.str());
  const std::string text = source.scrape({exporter::Format::kOpenMetrics, exporter::Encoding::kIdentity});
  INFO(text);
  CHECK(text.find("# TYPE shmetrics_writer_process_cpu_seconds counter\n") != std::string::npos);
  CHECK(testing::count_lines(text, pid_series("shmetrics_writer_process_cpu_seconds_total", w.writer.pid())) == 1);
}

TEST_CASE("set_writer_process_metrics(false) leaves the writers' /proc unread and their metrics out") {
  OneWriter w("writer-procs-off");
  exporter::RoleSource source("ops", w.name.str());
  source.set_writer_process_metrics(false);
  const std::string text = source.scrape();
  CHECK(text.find("shmetrics_writer_process") == std::string::npos);
  CHECK(testing::sample(text, "busy_workers") == 1.0);
}

TEST_CASE("each writer process is read once, and one that no longer holds its record is not shown") {
  ParkedChild a([] {});
  ParkedChild b([] {});
  using exporter::LiveWriter;
  const auto pa = static_cast<std::uint32_t>(a.pid());
  const auto pb = static_cast<std::uint32_t>(b.pid());
  // Two records naming one pid in this namespace; two held where this
  // namespace cannot see (here 0), naming one pid between them.
  const std::vector<LiveWriter> live = {{0, pa, a.pid()}, {1, pa, a.pid()}, {2, pb, b.pid()}, {3, 1, 0}, {4, 1, 0}};
  exporter::WriterProcesses w = exporter::read_writer_processes(live, [](const LiveWriter&) { return true; });
  REQUIRE(w.shown.size() == 2);
  CHECK(w.shown[0].pid == std::min(pa, pb));
  CHECK(w.shown[1].pid == std::max(pa, pb));
  CHECK(w.other_namespace == 2);
  CHECK(w.unreadable == 0);
  // b's record taken over meanwhile (a new process under its pid, say).
  w = exporter::read_writer_processes(live, [&](const LiveWriter& x) { return x.here != b.pid(); });
  REQUIRE(w.shown.size() == 1);
  CHECK(w.shown[0].pid == pa);
  CHECK(w.unreadable == 1);
}

// shmetrics_thread_slots_held: the slots live writer threads hold now, so
// an operator sees when no writer runs (a counter-only writer holds no
// record: shmetrics_process_records cannot tell).
TEST_CASE("shmetrics_thread_slots_held counts the threads writing now and drops as they exit") {
  ScopedName name("slots-held");
  Segment segment = Segment::open(options(name));
  Counter hits = segment.counter("hits_total", "Hits.");
  exporter::RoleSource source("ops", name.str());
  auto held = [&] { return testing::sample(source.scrape(), "shmetrics_thread_slots_held{role=\"ops\"}"); };
  CHECK(held() == 0.0);  // registering claims no slot
  auto first = std::make_unique<ParkedChild>([&] { hits.inc(); });
  ParkedChild second([&] {
    hits.inc();
    std::thread([&] { hits.inc(); }).join();  // a thread that wrote and exited gives its slot back
  });
  CHECK(held() == 2.0);
  first.reset();  // SIGKILLed: the kernel gives its slot back
  CHECK(held() == 1.0);
  CHECK(testing::sample(source.scrape(), "hits_total") == 3.0);
  CHECK(testing::sample(source.scrape(), "shmetrics_thread_slots{role=\"ops\",state=\"claimed\"}") >= 2.0);
}
