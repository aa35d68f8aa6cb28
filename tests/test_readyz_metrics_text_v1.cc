// The original work order's readyz tests (gate_aj), ported: outcomes are
// recorded by forked worker processes, time comes from a clock word the test
// controls, and the exporter computes the windows at scrape time.
#include "http_server.h"
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>
#include <httplib.h>

#include <latch>
#include <thread>

using namespace shmetrics;
using testing::ScopedName;
using testing::SharedClock;

namespace {

// Windows of 2 s and 5 s, as the original tests used.
Segment open_readyz(const ScopedName& name, std::uint32_t thread_slots = 16) {
  SegmentOptions o;
  o.name = name.str();
  o.capacities.thread_slots = thread_slots;
  o.capacities.process_records = 8;
  o.capacities.series = 16;
  o.capacities.families = 8;
  o.capacities.string_bytes = 4096;
  o.capacities.readyz_short_window_seconds = 2;
  o.capacities.readyz_long_window_seconds = 5;
  return Segment::open(o);
}

// Runs `outcomes` in a forked worker, one observe() each.
void worker_observes(const Readyz& readyz, const std::vector<bool>& outcomes) {
  pid_t pid = testing::fork_child([&] {
    for (bool ok : outcomes) readyz.observe(ok);
    return true;
  });
  REQUIRE(testing::wait_child(pid) == 0);
}

double value(const std::string& text, const std::string& series) {
  auto v = testing::sample(text, series);
  INFO(text);
  REQUIRE(v.has_value());
  return *v;
}

}  // namespace

TEST_CASE("test_readyz_metrics_observe_increments_total") {
  ScopedName name("readyz-total");
  SharedClock clock;
  Readyz readyz = open_readyz(name).readyz(clock);
  for (int w = 0; w < 4; ++w) worker_observes(readyz, std::vector<bool>(25, true));
  std::string text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_checks_total") == 100);
  CHECK(value(text, "readyz_failures_total") == 0);
}

TEST_CASE("test_readyz_metrics_observe_increments_fail") {
  ScopedName name("readyz-fail");
  SharedClock clock;
  Readyz readyz = open_readyz(name).readyz(clock);
  std::vector<bool> outcomes(10, false);
  outcomes.insert(outcomes.end(), 5, true);
  for (int w = 0; w < 4; ++w) worker_observes(readyz, outcomes);
  std::string text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_checks_total") == 60);
  CHECK(value(text, "readyz_failures_total") == 40);
}

TEST_CASE("test_readyz_metrics_sliding_window_1m") {
  ScopedName name("readyz-window");
  SharedClock clock;
  Readyz readyz = open_readyz(name).readyz(clock);
  worker_observes(readyz, {true});
  worker_observes(readyz, {false});
  clock.advance_ms(2100);  // the original slept 2.1 s
  worker_observes(readyz, {true});
  std::string text = testing::scrape_at(name.str(), clock.now_ns());
  // The first two fell out of the 2 s window, not out of the 5 s one.
  CHECK(value(text, "readyz_success_ratio_1m") == 1.0);
  CHECK(value(text, "readyz_success_ratio_5m") == Approx(2.0 / 3.0));
  clock.advance_ms(5000);
  text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_success_ratio_5m") == 1.0);  // everything aged out: empty again
  CHECK(value(text, "readyz_checks_total") == 3);        // the totals keep counting
}

TEST_CASE("test_readyz_metrics_export_gauges_ratio") {
  ScopedName name("readyz-ratio");
  SharedClock clock;
  Readyz readyz = open_readyz(name).readyz(clock);
  worker_observes(readyz, {true, true});
  worker_observes(readyz, {true});
  worker_observes(readyz, {false});
  std::string text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_success_ratio_1m") == 0.75);
  CHECK(value(text, "readyz_success_ratio_5m") == 0.75);
}

TEST_CASE("test_readyz_metrics_export_gauges_empty_window") {
  ScopedName name("readyz-empty");
  SharedClock clock;
  open_readyz(name).readyz(clock);
  std::string text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_success_ratio_1m") == 1.0);
  CHECK(value(text, "readyz_success_ratio_5m") == 1.0);
  CHECK(value(text, "readyz_checks_total") == 0);
}

TEST_CASE("test_metrics_text_endpoint_contains_readyz_gauges") {
  ScopedName name("readyz-http");
  SharedClock clock;
  Readyz readyz = open_readyz(name).readyz(clock);
  worker_observes(readyz, {true, false, true, true});
  auto source = std::make_shared<exporter::RoleSource>("judge", name.str(),
                                                       [&clock] { return clock.now_ns(); });
  exporter::HttpServer server(exporter::ServerOptions{});
  std::string error;
  int index = server.add_listener(source, "127.0.0.1", 0, error);
  INFO(error);
  REQUIRE(index >= 0);
  server.start();
  httplib::Client client("127.0.0.1", server.port(static_cast<std::size_t>(index)));
  auto res = client.Get("/metrics");
  server.stop();
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == exporter::kTextContentType);
  const std::string& text = res->body;
  CHECK(testing::count_lines(text, "# TYPE readyz_success_ratio_1m gauge") == 1);
  CHECK(testing::count_lines(text, "# TYPE readyz_success_ratio_5m gauge") == 1);
  CHECK(value(text, "readyz_success_ratio_1m") == 0.75);
  CHECK(value(text, "readyz_success_ratio_5m") == 0.75);
  CHECK(value(text, "readyz_status{status=\"ready\"}") == 1);
  CHECK(value(text, "shmetrics_segment_up{role=\"judge\"}") == 1);
}

TEST_CASE("test_readyz_metrics_last_status_updated") {
  ScopedName name("readyz-status");
  SharedClock clock;
  Readyz readyz = open_readyz(name).readyz(clock);
  worker_observes(readyz, {true});
  std::string text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_status{status=\"ready\"}") == 1);
  CHECK(value(text, "readyz_status{status=\"degraded\"}") == 0);
  clock.advance_ms(1);
  worker_observes(readyz, {false});  // another process, a later sample
  text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_status{status=\"ready\"}") == 0);
  CHECK(value(text, "readyz_status{status=\"degraded\"}") == 1);
  clock.advance_ms(1);
  worker_observes(readyz, {true});
  text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_status{status=\"ready\"}") == 1);
}

TEST_CASE("readyz_status_is_the_newest_sample_of_all_slots_not_of_the_first") {
  // A live process holds the first slot with an older ok; another process,
  // in another slot, fails later: degraded. Then the reverse.
  ScopedName name("readyz-status-slots");
  SharedClock clock;
  Readyz readyz = open_readyz(name).readyz(clock);
  testing::ParkedChild first([&] { readyz.observe(true); });  // keeps its slot while parked
  clock.advance_ms(1000);
  worker_observes(readyz, {false});
  std::string text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_status{status=\"degraded\"}") == 1);
  testing::ParkedChild later([&] { readyz.observe(false); });
  clock.advance_ms(1000);
  testing::ParkedChild latest([&] { readyz.observe(true); });
  text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_status{status=\"ready\"}") == 1);
}

TEST_CASE("readyz_buckets_stamped_in_the_past_or_future_never_leave_0_to_1") {
  ScopedName name("readyz-skew");
  SharedClock clock;
  Readyz readyz = open_readyz(name).readyz(clock);
  // At t = 1061 s: the future, seen from 1000 s, and in another bucket of
  // the 5 s ring than t = 1000 s's (at 1060 s the present sample would reuse
  // its bucket and erase it, and a reader counting future buckets would pass).
  clock.advance_ms(61'000);
  worker_observes(readyz, {true, false});
  clock.set_ns(1'000'000'000'000ULL);
  worker_observes(readyz, {false});        // at t = 1000 s
  std::string text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_success_ratio_1m") == 0.0);  // only the present sample counts
  text = testing::scrape_at(name.str(), clock.now_ns() + 100'000'000'000ULL);  // long after
  CHECK(value(text, "readyz_success_ratio_5m") == 1.0);
}

TEST_CASE("readyz_counts_saturate_without_ok_exceeding_total") {
  ScopedName name("readyz-saturate");
  SharedClock clock;
  Readyz readyz = open_readyz(name).readyz(clock);
  std::vector<bool> outcomes(70'000, true);
  outcomes.insert(outcomes.end(), 10, false);  // past 0xffff in one second
  worker_observes(readyz, outcomes);
  std::string text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_checks_total") == 70'010);
  CHECK(value(text, "readyz_failures_total") == 10);
  double ratio = value(text, "readyz_success_ratio_1m");
  CHECK(ratio >= 0.0);
  CHECK(ratio <= 1.0);
  // The bucket saturated at 65,535 samples, all ok: 1.0 exactly. The next
  // second saturates with failures first; the oks after them are past the
  // limit and must not count (ok and total saturate together): 0.5 exactly.
  CHECK(ratio == 1.0);
  clock.advance_ms(1000);
  std::vector<bool> failures_first(0xffff, false);
  failures_first.insert(failures_first.end(), 1'000, true);
  worker_observes(readyz, failures_first);
  text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_success_ratio_1m") == 0.5);
  CHECK(value(text, "readyz_checks_total") == 70'010 + 0xffff + 1'000);
}

TEST_CASE("readyz_through_the_overflow_slot_stays_exact") {
  ScopedName name("readyz-overflow");
  SharedClock clock;
  Readyz readyz = open_readyz(name, /*thread_slots=*/1).readyz(clock);
  std::latch first(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      readyz.observe(true);
      first.arrive_and_wait();  // four writers, one slot
      for (int i = 1; i < 10'000; ++i) readyz.observe(t != 0);
    });
  for (auto& t : threads) t.join();
  std::string text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_checks_total") == 40'000);
  CHECK(value(text, "readyz_failures_total") == 9'999);
  CHECK(value(text, "shmetrics_overflow_writers_total{role=\"test\"}") >= 1);
}

TEST_CASE("readyz_rings_come_from_the_page_pool_on_first_use_or_the_overflow_slot") {
  ScopedName name("readyz-pages");
  SegmentOptions o;
  o.name = name.str();
  o.capacities.thread_slots = 4;
  o.capacities.process_records = 4;
  o.capacities.series = 16;
  o.capacities.families = 8;
  o.capacities.string_bytes = 4096;
  o.capacities.readyz_short_window_seconds = 2;
  o.capacities.readyz_long_window_seconds = 5;
  shm::Geometry g{};
  REQUIRE(shm::compute_geometry(o.capacities, g));
  o.capacities.cell_pages = static_cast<std::uint32_t>(g.readyz_pages + 1);  // one ring and one page
  Segment s = Segment::open(o);
  Counter c = s.counter("hits_total", "Hits.");
  SharedClock clock;
  Readyz readyz = s.readyz(clock);
  auto pages_used = [&] {
    return shm::MappedSegment::open_read_only(name.str())->header()->pages_used.load();
  };
  c.inc();  // a slot that never records readyz holds no ring: one page
  CHECK(pages_used() == 1);
  readyz.observe(true);  // this thread's ring: readyz_pages more
  CHECK(pages_used() == g.readyz_pages + 1);
  // Another process's slot finds the pool empty: its samples go through the
  // overflow slot's ring, exact and counted.
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            for (int i = 0; i < 10; ++i) readyz.observe(false);
            return true;
          })) == 0);
  std::string text = testing::scrape_at(name.str(), clock.now_ns());
  CHECK(value(text, "readyz_checks_total") == 11);
  CHECK(value(text, "readyz_failures_total") == 10);
  CHECK(value(text, "shmetrics_pageless_updates_total{role=\"test\"}") == 10);
  CHECK(pages_used() == g.readyz_pages + 1);
}
