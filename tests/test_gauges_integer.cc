// Integer gauges (ValueType::kInteger): int64 values rendered exactly, inc/dec
// one atomic add, in every mode, with processes living and dying.
#include "support.h"

#include <shmetrics/shm/test_hooks.h>
#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <latch>
#include <limits>
#include <thread>
#include <unistd.h>

using namespace shmetrics;
using testing::ParkedChild;
using testing::ScopedName;

namespace {

SegmentOptions options(const ScopedName& name, std::uint32_t records = 16) {
  SegmentOptions o;
  o.name = name.str();
  o.capacities.thread_slots = 8;
  o.capacities.process_records = records;
  o.capacities.series = 64;
  o.capacities.families = 16;
  o.capacities.string_bytes = 8192;
  return o;
}

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

}  // namespace

TEST_CASE("integer_gauges_count_exactly_from_threads_and_processes") {
  ScopedName name("int-gauge-threads");
  Segment s = Segment::open(options(name));
  Gauge inflight = s.gauge("int_inflight", "In flight.", GaugeMode::kLiveSum, ValueType::kInteger);
  Gauge big = s.gauge("int_big", "Past 2^53.", GaugeMode::kLiveSum, ValueType::kInteger);
  std::latch start(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < 20'000; ++i) {
        inflight.inc();
        inflight.inc(std::int64_t{3});
        inflight.dec(3u);
        inflight.dec();
      }
      inflight.inc(5);
    });
  for (auto& t : threads) t.join();
  REQUIRE(testing::wait_child(testing::fork_child([&] { inflight.dec(7); return true; })) == 0);
  ParkedChild child([&] { inflight.set(-30); });
  big.set(std::int64_t{1} << 62);
  big.inc();
  big.inc(std::int64_t{1} << 61);
  big.dec(std::int64_t{1} << 61);
  std::string text = testing::scrape(name.str());
  // This process 20 (4 x 5), the live child -30; the dead one's -7 is gone (livesum).
  CHECK(has_line(text, "int_inflight -10"));
  CHECK(has_line(text, "int_big 4611686018427387905"));  // exact, not a double
}

TEST_CASE("integer_gauges_refuse_fractional_and_out_of_range_values_and_count_them") {
  ScopedName name("int-gauge-invalid");
  Segment s = Segment::open(options(name));
  Gauge g = s.gauge("int_level", "Level.", GaugeMode::kLiveSum, ValueType::kInteger);
  g.set(-3);
  g.set(0.5);
  g.inc(1e19);
  g.dec(std::numeric_limits<std::uint64_t>::max());
  g.set(std::nan(""));
  g.inc(2.0);  // integral doubles are fine
  std::string text = testing::scrape(name.str());
  CHECK(has_line(text, "int_level -1"));
  CHECK(testing::sample(text, "shmetrics_invalid_updates_total{role=\"test\"}") == 4.0);
  // One name, one value type.
  CHECK_THROWS_WITH(s.gauge("int_level", "Level.", GaugeMode::kLiveSum),
                    Catch::Contains("(integer values)") && Catch::Contains("(double values)"));
}

TEST_CASE("integer_gauges_combine_in_every_mode_and_fold_dead_values") {
  ScopedName name("int-gauge-modes");
  Segment s = Segment::open(options(name, /*records=*/3));
  auto gauge = [&](const char* n, GaugeMode m) { return s.gauge(n, "Integer gauge.", m, ValueType::kInteger); };
  Gauge livesum = gauge("i_livesum", GaugeMode::kLiveSum), livemax = gauge("i_livemax", GaugeMode::kLiveMax),
        livemin = gauge("i_livemin", GaugeMode::kLiveMin), sum = gauge("i_sum", GaugeMode::kSum),
        max = gauge("i_max", GaugeMode::kMax), min = gauge("i_min", GaugeMode::kMin),
        recent = gauge("i_recent", GaugeMode::kMostRecent), all = gauge("i_all", GaugeMode::kLiveAll);
  Gauge other = s.gauge("other", "Claims a record only.", GaugeMode::kLiveSum);
  auto worker = [&](std::int64_t v) {
    return [&, v] {
      for (Gauge* g : {&livesum, &livemax, &livemin, &sum, &max, &min, &all}) g->set(v);
      recent.inc(v);
    };
  };
  ParkedChild a(worker(-5)), b(worker(-9));
  // A live process that never set these gauges contributes nothing (not 0).
  ParkedChild c([&] { other.set(1); });
  std::string text = testing::scrape(name.str());
  CHECK(has_line(text, "i_livesum -14"));
  CHECK(has_line(text, "i_livemax -5"));
  CHECK(has_line(text, "i_livemin -9"));
  CHECK(has_line(text, "i_recent -9"));
  CHECK(has_line(text, "i_all{pid=\"" + std::to_string(b.pid()) + "\"} -9"));
  CHECK(testing::count_lines(text, "i_all{") == 2);
  b.kill();
  a.kill();
  c.kill();
  // The dead records are taken over: sum/max/min/mostrecent values are folded.
  ParkedChild d(worker(4)), e([&] { other.set(2); });
  text = testing::scrape(name.str());
  CHECK(has_line(text, "i_livesum 4"));
  CHECK(has_line(text, "i_sum -10"));
  CHECK(has_line(text, "i_max 4"));
  CHECK(has_line(text, "i_min -9"));
  CHECK(has_line(text, "i_recent 4"));
  CHECK(testing::count_lines(text, "i_all{") == 1);
}

TEST_CASE("threads_racing_on_a_process_first_integer_write_add_to_it") {
  ScopedName name("int-gauge-first");
  Segment s = Segment::open(options(name));
  Gauge g = s.gauge("int_first", "First write.", GaugeMode::kLiveSum, ValueType::kInteger);
  int report[2], resume[2];
  REQUIRE(::pipe(report) == 0);
  REQUIRE(::pipe(resume) == 0);
  // The first writer parks after its compare-and-swap, before it marks the cell set.
  shm::set_park_point("gauge.first_write", report[1], resume[0]);
  std::thread first([&] { g.set(10); });
  char byte;
  REQUIRE(::read(report[0], &byte, 1) == 1);
  g.inc(5);  // the cell is not marked yet: out of line, its CAS loses, it adds
  // ... and marks the cell set itself: both writes are in it.
  CHECK(has_line(testing::scrape(name.str()), "int_first 15"));
  REQUIRE(::write(resume[1], &byte, 1) == 1);
  first.join();
  CHECK(has_line(testing::scrape(name.str()), "int_first 15"));
  for (int fd : {report[0], report[1], resume[0], resume[1]}) ::close(fd);
}

TEST_CASE("integer_values_are_told_apart_by_their_stamp_and_ordered_as_integers") {
  ScopedName name("int-gauge-order");
  Segment s = Segment::open(options(name, /*records=*/4));
  // The bit pattern that marks an unset double cell is an ordinary integer.
  Gauge odd = s.gauge("int_odd", "Odd value.", GaugeMode::kLiveSum, ValueType::kInteger);
  odd.set(std::int64_t{0x7ff8'dead'beef'0001});
  // As doubles these bits order the other way round (-2.0 < -4.9e-324).
  constexpr std::int64_t kHigh = -(std::int64_t{1} << 62), kLow = INT64_MIN + 1;
  auto gauge = [&](const char* n, GaugeMode m) { return s.gauge(n, "Order.", m, ValueType::kInteger); };
  Gauge livemax = gauge("o_livemax", GaugeMode::kLiveMax), livemin = gauge("o_livemin", GaugeMode::kLiveMin),
        max = gauge("o_max", GaugeMode::kMax), min = gauge("o_min", GaugeMode::kMin);
  auto worker = [&](std::int64_t v) {
    return [&, v] {
      for (Gauge* g : {&livemax, &livemin, &max, &min}) g->set(v);
    };
  };
  {
    ParkedChild a(worker(kHigh)), b(worker(kLow));
    std::string text = testing::scrape(name.str());
    CHECK(has_line(text, "int_odd 9221365074855133185"));
    CHECK(has_line(text, "o_livemax -4611686018427387904"));
    CHECK(has_line(text, "o_livemin -9223372036854775807"));
  }
  // Both dead; newcomers fold their records (max/min keep dead values).
  ParkedChild c([&] { odd.inc(0); }), d([&] { odd.inc(0); }), e([&] { odd.inc(0); });
  std::string text = testing::scrape(name.str());
  CHECK(has_line(text, "o_max -4611686018427387904"));
  CHECK(has_line(text, "o_min -9223372036854775807"));
}
