// Integer gauges (ValueType::kInteger): int64 values rendered exactly, inc/dec
// one atomic add, in every mode, with processes living and dying.
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <latch>
#include <limits>
#include <thread>

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
