// Histograms: bucket bounds fixed at registration, observations exact across
// threads, processes and worker deaths, and every scrape self-consistent
// (cumulative buckets never decrease, the +Inf bucket is _count) even while
// writers observe.
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <limits>
#include <random>
#include <sstream>
#include <thread>

using namespace shmetrics;
using testing::ScopedName;

namespace {

SegmentOptions options(const ScopedName& name, std::uint32_t slots = 8) {
  SegmentOptions o = testing::small_options(name.str(), slots, 8);
  o.capacities.cells = 512;
  o.capacities.families = 64;
  return o;
}

double value(const std::string& text, const std::string& series) {
  auto v = testing::sample(text, series);
  if (!v) FAIL("no sample " << series << " in:\n" << text);
  return *v;
}

// The cumulative _bucket values of `name` (unlabelled) in bound order, as
// rendered, with the +Inf bucket last.
std::vector<double> buckets(const std::string& text, const std::string& name, const std::vector<std::string>& les) {
  std::vector<double> out;
  for (const auto& le : les) out.push_back(value(text, name + "_bucket{le=\"" + le + "\"}"));
  return out;
}

}  // namespace

TEST_CASE("bucket_of_is_the_first_bound_not_below_the_value") {
  ScopedName name("bucket-of");
  Segment s = Segment::open(options(name));
  std::mt19937_64 rng(7);
  for (std::size_t n = 0; n <= 20; ++n) {
    std::vector<double> bounds;
    for (std::size_t i = 0; i < n; ++i) bounds.push_back(static_cast<double>(i) * 1.5 - 3);
    Histogram h = s.histogram_family("h" + std::to_string(n), "H.", {}, bounds.empty() ? std::vector<double>{
                                         std::numeric_limits<double>::infinity()} : bounds)
                      .labels({});
    std::vector<double> probes = {-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity(),
                                  -1e300, 1e300, -0.0};
    for (double b : bounds) {
      probes.push_back(b);
      probes.push_back(std::nextafter(b, -1e9));
      probes.push_back(std::nextafter(b, 1e9));
    }
    std::uniform_real_distribution<double> any(-10, 40);
    for (int i = 0; i < 200; ++i) probes.push_back(any(rng));
    for (double v : probes) {
      auto expected = static_cast<std::uint32_t>(std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin());
      INFO("n=" << n << " v=" << v);
      REQUIRE(h.bucket_of(v) == expected);
    }
  }
}

TEST_CASE("a_histogram_renders_cumulative_buckets_sum_and_count") {
  ScopedName name("render");
  Segment s = Segment::open(options(name));
  // A counter first: the histogram's cell pairs start at the next even cell
  // (2) and its last pair is in the slot's second page.
  s.counter("before_total", "Before.").inc();
  HistogramFamily f = s.histogram_family("request_seconds", "Request latency.", {"route"}, {0.25, 0.5, 1});
  Histogram h = f.labels({"/a"});
  for (double v : {0.125, 0.25, 0.375, 0.5, 0.75, 1.0, 3.0, 3.0}) h.observe(v);  // a bound counts in its bucket
  std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(text.find("# HELP request_seconds Request latency.\n# TYPE request_seconds histogram\n"
                  "request_seconds_bucket{route=\"/a\",le=\"0.25\"} 2\n"
                  "request_seconds_bucket{route=\"/a\",le=\"0.5\"} 4\n"
                  "request_seconds_bucket{route=\"/a\",le=\"1\"} 6\n"
                  "request_seconds_bucket{route=\"/a\",le=\"+Inf\"} 8\n"
                  "request_seconds_sum{route=\"/a\"} 9\n"
                  "request_seconds_count{route=\"/a\"} 8\n") != std::string::npos);
}

TEST_CASE("default_buckets_are_the_go_clients_and_bounds_render_as_go_formats_them") {
  ScopedName name("defaults");
  Segment s = Segment::open(options(name));
  Histogram d = s.histogram("latency_seconds", "Latency.");
  d.observe(0.3);
  Histogram big = s.histogram("size_bytes", "Sizes.", {0.00001, 0.0001, 100000, 1e6, 1234567});
  big.observe(5e5);
  std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(buckets(text, "latency_seconds",
                {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}) ==
        std::vector<double>{0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1});
  CHECK(buckets(text, "size_bytes", {"1e-05", "0.0001", "100000", "1e+06", "1.234567e+06", "+Inf"}) ==
        std::vector<double>{0, 0, 0, 1, 1, 1});
  CHECK(default_buckets() == std::vector<double>{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10});
}

TEST_CASE("nan_is_dropped_and_counted_infinities_count_at_the_ends") {
  ScopedName name("nan");
  Segment s = Segment::open(options(name));
  Histogram h = s.histogram("x_seconds", "X.", {1, 2});
  h.observe(std::nan(""));
  h.observe(-std::numeric_limits<double>::infinity());
  h.observe(std::numeric_limits<double>::infinity());
  std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(buckets(text, "x_seconds", {"1", "2", "+Inf"}) == std::vector<double>{1, 1, 2});
  CHECK(value(text, "x_seconds_count") == 2);
  CHECK(std::isnan(value(text, "x_seconds_sum")));  // -Inf + +Inf, as the Go client sums
  CHECK(value(text, "shmetrics_invalid_updates_total{role=\"test\"}") == 1);
}

TEST_CASE("bounds_are_checked_at_registration") {
  ScopedName name("bounds");
  Segment s = Segment::open(options(name));
  const double inf = std::numeric_limits<double>::infinity();
  auto refused = [&](std::vector<double> bounds, const std::string& says) {
    INFO(says);
    CHECK_THROWS_WITH(s.histogram_family("h_seconds", "H.", {}, bounds), Catch::Contains(says));
  };
  refused({1, 0.5}, "not strictly increasing: bound 1 (0.5) follows 1");
  refused({1, 1}, "not strictly increasing");
  refused({1, std::nan("")}, "is NaN");
  refused({1, inf, 3}, "infinite");
  refused({-inf, 1}, "infinite");
  refused(std::vector<double>(257, 0.0), "257 bucket bounds, more than the 256 allowed");
  // A trailing +Inf is implicit, as in the Go client; {+Inf} alone is one bucket.
  Histogram h = s.histogram("trailing_seconds", "T.", {1, inf});
  Histogram only = s.histogram("only_inf_seconds", "O.", {inf});
  h.observe(5);
  only.observe(5);
  std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(buckets(text, "trailing_seconds", {"1", "+Inf"}) == std::vector<double>{0, 1});
  CHECK(value(text, "only_inf_seconds_bucket{le=\"+Inf\"}") == 1);
  CHECK(testing::count_lines(text, "only_inf_seconds_bucket") == 1);
  CHECK_THROWS_WITH(s.histogram_family("trailing_seconds", "T.", {}, {1, 2}),
                    Catch::Contains("as histogram with labels [] (buckets 1 +Inf)") &&
                        Catch::Contains("asks for histogram with labels [] (buckets 1 2 +Inf)"));
  CHECK_NOTHROW(s.histogram_family("trailing_seconds", "T.", {}, {1}));
}

TEST_CASE("histogram_names_labels_and_units_are_checked") {
  ScopedName name("names");
  Segment s = Segment::open(options(name));
  CHECK_THROWS_WITH(s.histogram_family("h", "H.", {"le"}), Catch::Contains("label name \"le\""));
  for (const char* n : {"h_bucket", "h_count", "h_sum", "h_total", "h_created"})
    CHECK_THROWS_WITH(s.histogram_family(n, "H.", {}), Catch::Contains("must not end in"));
  s.histogram("taken_seconds", "T.");
  CHECK_THROWS_WITH(s.gauge("taken_seconds_count", "G.", GaugeMode::kLiveSum),
                    Catch::Contains("the name \"taken_seconds_count\"") &&
                        Catch::Contains("is taken by histogram \"taken_seconds\""));
  s.gauge("held_sum", "G.", GaugeMode::kLiveSum);
  CHECK_THROWS_WITH(s.histogram("held", "H."), Catch::Contains("is taken by gauge \"held_sum\""));
  CHECK_THROWS_WITH(s.histogram_family("wait", "W.", {}, {}, "seconds"),
                    Catch::Contains("does not end in \"_seconds\""));
  CHECK_NOTHROW(s.histogram_family("wait_seconds", "W.", {}, {}, "seconds"));
  CHECK_THROWS_WITH(s.histogram_family("wait_seconds", "W.", {}, {}, ""), Catch::Contains("(unit seconds)"));
  CHECK_NOTHROW(s.counter_family("sent_bytes_total", "S.", {}, ValueType::kInteger, "bytes"));
  CHECK_THROWS_WITH(s.counter_family("sent_total", "S.", {}, ValueType::kInteger, "bytes"),
                    Catch::Contains("does not end in \"_bytes_total\""));
  CHECK_THROWS_WITH(s.histogram_family("odd_seconds", "O.", {}, {}, "sec-onds"), Catch::Contains("is invalid"));
}

TEST_CASE("helpers_make_linear_and_exponential_bounds") {
  CHECK(linear_buckets(1, 2, 4) == std::vector<double>{1, 3, 5, 7});
  CHECK(exponential_buckets(1, 2, 4) == std::vector<double>{1, 2, 4, 8});
  CHECK_THROWS_WITH(linear_buckets(1, 0, 3), Catch::Contains("width must be > 0"));
  CHECK_THROWS_WITH(linear_buckets(1, 1, 0), Catch::Contains("count is 0"));
  CHECK_THROWS_WITH(exponential_buckets(0, 2, 3), Catch::Contains("start must be finite and > 0"));
  CHECK_THROWS_WITH(exponential_buckets(1, 1, 3), Catch::Contains("factor must be finite and > 1"));
  CHECK_THROWS_WITH(exponential_buckets(1e300, 1e10, 3), Catch::Contains("is not finite"));
  CHECK_THROWS_WITH(linear_buckets(1, 1, 300), Catch::Contains("more than the 256"));
}

TEST_CASE("a_scoped_timer_observes_the_seconds_it_lived") {
  ScopedName name("timer");
  Segment s = Segment::open(options(name));
  Histogram h = s.histogram("block_seconds", "Block.", {1e-9, 3600});
  const auto before = std::chrono::steady_clock::now();
  {
    ScopedTimer t(h);
    const auto started = std::chrono::steady_clock::now();  // not before the timer's start
    while (std::chrono::steady_clock::now() - started < std::chrono::microseconds(50)) {
    }
  }
  const double most = std::chrono::duration<double>(std::chrono::steady_clock::now() - before).count();
  std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(buckets(text, "block_seconds", {"1e-09", "3600", "+Inf"}) == std::vector<double>{0, 1, 1});
  CHECK(value(text, "block_seconds_sum") >= 50e-6);
  CHECK(value(text, "block_seconds_sum") <= most);
}

TEST_CASE("histograms_are_exact_across_processes_and_threads") {
  ScopedName name("mp");
  Segment s = Segment::open(options(name, 32));
  HistogramFamily f = s.histogram_family("work_seconds", "Work.", {"kind"}, {1, 2, 3});
  testing::ForkBarrier barrier;
  std::vector<pid_t> children;
  for (int p = 0; p < 4; ++p)
    children.push_back(testing::fork_child([&] {
      barrier.wait();
      std::vector<std::thread> threads;
      for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
          Histogram h = f.labels({"a"});
          for (int n = 0; n < 100'000; ++n) h.observe(n % 4 + 0.5);  // one in each bucket, in turn
        });
      for (auto& t : threads) t.join();
      return true;
    }));
  barrier.release();
  for (pid_t pid : children) REQUIRE(testing::wait_child(pid) == 0);
  std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(value(text, "work_seconds_bucket{kind=\"a\",le=\"1\"}") == 400'000);
  CHECK(value(text, "work_seconds_bucket{kind=\"a\",le=\"2\"}") == 800'000);
  CHECK(value(text, "work_seconds_bucket{kind=\"a\",le=\"3\"}") == 1'200'000);
  CHECK(value(text, "work_seconds_bucket{kind=\"a\",le=\"+Inf\"}") == 1'600'000);
  CHECK(value(text, "work_seconds_count{kind=\"a\"}") == 1'600'000);
  CHECK(value(text, "work_seconds_sum{kind=\"a\"}") == 1'600'000 * 2.0);  // (0.5+1.5+2.5+3.5)/4 each
}

// A scrape reads a thread's cells while the thread observes: whatever it
// catches, the rendered histogram must be one that could have been: buckets
// cumulative, +Inf equal to _count, and nothing ever smaller than in the
// scrape before. Killed writers leave their counts; the slot's next owner
// adds to them.
TEST_CASE("every_scrape_is_self_consistent_while_writers_observe_and_die") {
  ScopedName name("consistent");
  SegmentOptions o = options(name, 4);
  Segment s = Segment::open(o);
  const std::vector<double> bounds = {1, 2, 3, 4, 5, 6, 7, 8, 9};  // cells across two pages
  HistogramFamily f = s.histogram_family("load_seconds", "Load.", {}, bounds);
  const std::vector<std::string> les = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "+Inf"};
  auto* done = static_cast<std::atomic<std::uint64_t>*>(
      ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  std::vector<double> previous(les.size(), 0);
  std::uint64_t killed_observed = 0;
  for (int round = 0; round < 6; ++round) {
    done[round].store(0);
    const pid_t pid = testing::fork_child([&, round] {
      Histogram h = f.labels({});
      for (std::uint64_t n = 0;; ++n) {
        h.observe(static_cast<double>(n % 11));  // 0..10: every bucket, +Inf included
        done[round].store(n + 1, std::memory_order_release);
      }
      return true;
    });
    struct KillOnExit {  // also when a REQUIRE below fails
      pid_t pid;
      ~KillOnExit() {
        ::kill(pid, SIGKILL);
        testing::wait_child(pid);
      }
    } writer{pid};
    // Once it observes, scrape while it goes on, then kill it.
    while (done[round].load(std::memory_order_acquire) == 0) {
    }
    for (int scrape = 0; scrape < 30; ++scrape) {
      std::string text = testing::scrape(name.str());
      std::vector<double> now = buckets(text, "load_seconds", les);
      for (std::size_t b = 0; b < now.size(); ++b) {
        INFO("round " << round << " bucket " << les[b] << "\n" << text);
        REQUIRE(now[b] >= previous[b]);               // never backwards
        if (b > 0) REQUIRE(now[b] >= now[b - 1]);     // cumulative
      }
      REQUIRE(value(text, "load_seconds_count") == now.back());
      previous = now;
    }
    ::kill(pid, SIGKILL);
    testing::wait_child(pid);
    killed_observed += done[round].load();  // final: the writer is gone
  }
  // Each kill may lose the one observation it interrupted between its
  // bucket cell and `done`; no more.
  std::string text = testing::scrape(name.str());
  const double count = value(text, "load_seconds_count");
  INFO(text);
  CHECK(count >= static_cast<double>(killed_observed));
  CHECK(count <= static_cast<double>(killed_observed) + 6);
  ::munmap(done, 4096);
}

TEST_CASE("histograms_that_find_no_room_are_refused_and_their_observations_counted") {
  ScopedName name("full");
  SegmentOptions o = options(name);
  o.capacities.cells = 30;  // one histogram of 10 bounds (22 cells) and no second
  Segment s = Segment::open(o);
  HistogramFamily f = s.histogram_family("fill_seconds", "Fill.", {"n"}, linear_buckets(1, 1, 10));
  Histogram first = f.labels({"1"});
  Histogram second = f.labels({"2"});
  CHECK(first.attached());
  CHECK_FALSE(second.attached());
  second.observe(1);
  second.observe(2);
  first.observe(3);
  Counter c = s.counter("after_total", "Fits: one cell.");
  c.inc();
  std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(value(text, "fill_seconds_count{n=\"1\"}") == 1);
  CHECK(testing::count_lines(text, "fill_seconds_count{n=\"2\"}") == 0);
  CHECK(value(text, "shmetrics_series_refused_total{role=\"test\"}") == 1);
  CHECK(value(text, "shmetrics_refused_series_updates_total{role=\"test\"}") == 2);
  CHECK(value(text, "after_total") == 1);
}

TEST_CASE("observations_without_pages_of_their_own_go_through_the_overflow_cells_exactly") {
  ScopedName name("pageless");
  SegmentOptions o = options(name, 2);
  o.capacities.cell_pages = 1;  // one page in the pool: the histogram's cells span four
  Segment s = Segment::open(o);
  Histogram h = s.histogram("spill_seconds", "Spill.", linear_buckets(1, 1, 12));
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&] {
      for (int n = 0; n < 50'000; ++n) h.observe(n % 14);
    });
  for (auto& t : threads) t.join();
  std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(value(text, "spill_seconds_count") == 150'000);
  double sum = 0, at_most_one = 0;
  for (int n = 0; n < 50'000; ++n) {
    sum += n % 14;
    at_most_one += n % 14 <= 1;
  }
  CHECK(value(text, "spill_seconds_bucket{le=\"1\"}") == 3 * at_most_one);
  CHECK(value(text, "spill_seconds_sum") == 3 * sum);
  CHECK(value(text, "shmetrics_pageless_updates_total{role=\"test\"}") > 0);
}

// Summaries: histograms without buckets, served as count and sum.
TEST_CASE("summaries_count_and_sum_across_processes_without_buckets") {
  ScopedName name("summary");
  Segment s = Segment::open(options(name));
  HistogramFamily family = s.summary_family("payload_bytes", "Payload sizes.", {"method"}, "bytes");
  Histogram get = family.labels({"GET"});
  std::vector<pid_t> children;
  for (int w = 0; w < 4; ++w)
    children.push_back(testing::fork_child([&] {
      for (int i = 0; i < 1000; ++i) get.observe(0.5);
      return true;
    }));
  for (pid_t pid : children) REQUIRE(testing::wait_child(pid) == 0);
  get.observe(std::nan(""));  // dropped and counted
  family.labels({"PUT"}).observe(-2);
  const std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(testing::count_lines(text, "# TYPE payload_bytes summary") == 1);
  CHECK(value(text, "payload_bytes_count{method=\"GET\"}") == 4000.0);
  CHECK(value(text, "payload_bytes_sum{method=\"GET\"}") == 2000.0);
  CHECK(value(text, "payload_bytes_count{method=\"PUT\"}") == 1.0);
  CHECK(value(text, "payload_bytes_sum{method=\"PUT\"}") == -2.0);
  CHECK(testing::count_lines(text, "payload_bytes_bucket") == 0);
  CHECK(value(text, "shmetrics_invalid_updates_total{role=\"test\"}") == 1.0);
  // The same name again is the same family; as a histogram, another.
  CHECK_NOTHROW(s.summary_family("payload_bytes", "Payload sizes.", {"method"}, "bytes"));
  CHECK_THROWS_WITH(s.histogram_family("payload_bytes", "Payload sizes.", {"method"}, {}, "bytes"),
                    Catch::Contains("as summary with labels [method]"));
}

TEST_CASE("summary_names_and_labels_are_checked") {
  ScopedName name("summary-names");
  Segment s = Segment::open(options(name));
  CHECK_THROWS_WITH(s.summary_family("latency_count", "L."), Catch::Contains("must not end in \"_count\""));
  CHECK_THROWS_WITH(s.summary_family("latency_sum", "L."), Catch::Contains("must not end in \"_sum\""));
  CHECK_THROWS_WITH(s.summary_family("latency", "L.", {"quantile"}),
                    Catch::Contains("label name \"quantile\" of summary \"latency\" is reserved"));
  CHECK_THROWS_WITH(s.summary_family("latency", "L.", {}, "seconds"),
                    Catch::Contains("does not end in \"_seconds\""));
  // The names its samples take are its own.
  s.counter("taken_count_total", "T.");
  CHECK_THROWS_WITH(s.summary_family("taken", "T."),
                    Catch::Contains("the name \"taken_count\" it would take in an exposition is taken by counter"));
  s.summary_family("other", "O.").labels({}).observe(1);
  CHECK_THROWS_WITH(s.gauge("other_sum", "O.", GaugeMode::kLiveSum), Catch::Contains("taken by summary \"other\""));
}
