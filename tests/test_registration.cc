// Registration: names, help, label values, sameness across processes,
// capacity limits; invalid updates are dropped and counted.
#include "support.h"

#include <shmetrics/shm/robust_mutex.h>
#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <cstdlib>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

using namespace shmetrics;
using testing::ScopedName;

namespace {

// Every operator new of this program, counted: labels() of a registered series
// must allocate nothing.
std::atomic<std::size_t> allocations{0};

void* counted_malloc(std::size_t size) noexcept {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}

void* counted_malloc_or_throw(std::size_t size) {
  if (void* p = counted_malloc(size)) return p;
  throw std::bad_alloc();
}

}  // namespace

// Every form that allocates with malloc here frees with free, so AddressSanitizer
// sees matching pairs (Catch2 itself uses new(std::nothrow)).
void* operator new(std::size_t size) { return counted_malloc_or_throw(size); }
void* operator new[](std::size_t size) { return counted_malloc_or_throw(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return counted_malloc(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return counted_malloc(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

Segment open_small(const ScopedName& name, std::uint32_t series = 64, std::uint32_t families = 16) {
  SegmentOptions o;
  o.name = name.str();
  o.capacities.thread_slots = 4;
  o.capacities.process_records = 4;
  o.capacities.families = families;
  o.capacities.series = series;
  o.capacities.string_bytes = 8192;
  o.capacities.info_families = 2;
  o.capacities.info_value_bytes = 64;
  return Segment::open(o);
}

}  // namespace

TEST_CASE("metric_and_label_names_are_checked_with_the_rule_in_the_message") {
  ScopedName name("names");
  Segment s = open_small(name);
  CHECK_THROWS_WITH(s.counter("9bad_total", "h"),
                    "metric name \"9bad_total\" is invalid: must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  CHECK_THROWS_WITH(s.counter_family("ok_total", "h", {"a-b"}), Catch::Contains("label name \"a-b\" is invalid"));
  CHECK_THROWS_WITH(s.counter_family("ok_total", "h", {"__x"}), Catch::Contains("reserved"));
  CHECK_THROWS_WITH(s.counter_family("ok_total", "h", {"a", "a"}), Catch::Contains("appears twice"));
  CHECK_THROWS_WITH(s.counter("requests", "h"), Catch::Contains("must end in \"_total\""));
  CHECK_THROWS_WITH(s.counter("shmetrics_x_total", "h"), Catch::Contains("exporter's own"));
  CHECK_THROWS_WITH(s.gauge_family("g", "h", {"pid"}, GaugeMode::kLiveAll), Catch::Contains("reserved"));
  CHECK_NOTHROW(s.gauge_family("g2", "h", {"pid"}, GaugeMode::kLiveSum));
}

TEST_CASE("help_is_required_and_must_be_utf8") {
  ScopedName name("help");
  Segment s = open_small(name);
  CHECK_THROWS_WITH(s.counter("a_total", ""), Catch::Contains("help is required"));
  CHECK_THROWS_WITH(s.counter("a_total", "bad \xff help"), Catch::Contains("not valid UTF-8"));
}

TEST_CASE("label_values_must_be_utf8_and_match_the_label_count") {
  ScopedName name("values");
  Segment s = open_small(name);
  CounterFamily f = s.counter_family("req_total", "Requests.", {"route", "code"});
  CHECK_THROWS_WITH(f.labels({"/a"}), Catch::Contains("has 2 label names but 1 label values"));
  CHECK_THROWS_WITH(f.labels({"/a", "2\xc0\x80"}),
                    Catch::Contains("label value for \"code\"") && Catch::Contains("not valid UTF-8"));
  CHECK(f.labels({"/é", "200"}).attached());
  // A span, a vector and a braced list of the same values name one series;
  // the span is checked too.
  const std::array<std::string_view, 2> values = {"/s", "201"};
  f.labels(std::span<const std::string_view>(values)).inc(2);
  f.labels(std::vector<std::string_view>(values.begin(), values.end())).inc(3);
  f.labels({"/s", "201"}).inc();
  CHECK(testing::sample(testing::scrape(name.str()), "req_total{route=\"/s\",code=\"201\"}") == 6.0);
  const std::array<std::string_view, 1> one = {"/s"};
  CHECK_THROWS_WITH(f.labels(std::span<const std::string_view>(one)),
                    Catch::Contains("has 2 label names but 1 label values"));
}

TEST_CASE("labels_take_std_string_values_and_allocate_nothing_for_a_registered_series") {
  ScopedName name("strings");
  Segment s = open_small(name);
  CounterFamily f = s.counter_family("req_total", "Requests.", {"route", "code"});
  GaugeFamily g = s.gauge_family("g", "G.", {"route"}, GaugeMode::kSum);
  // A route longer than std::string's inline buffer, so copies would allocate.
  const std::vector<std::string> strings = {"/a/route/longer/than/sso", "200"};
  const std::vector<std::string_view> views(strings.begin(), strings.end());
  const std::array<std::string, 2> array = {strings[0], strings[1]};
  const std::vector<std::string> gauge_route = {strings[0]};
  f.labels(strings).inc();  // registers the series
  g.labels(gauge_route).set(2.5);

  const std::size_t before = allocations.load();
  Counter by_strings = f.labels(strings);
  Counter by_views = f.labels(views);
  Counter by_array = f.labels(array);
  Counter by_list = f.labels({strings[0], strings[1]});
  Gauge gauge = g.labels(gauge_route);
  by_strings.inc();
  by_views.inc(2);
  by_array.inc(3);
  by_list.inc(4);
  gauge.inc(1);
  const std::size_t allocated = allocations.load() - before;

  CHECK(allocated == 0);
  const std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "req_total{route=\"/a/route/longer/than/sso\",code=\"200\"}") == 11.0);
  CHECK(testing::sample(text, "g{route=\"/a/route/longer/than/sso\"}") == 3.5);
  CHECK(testing::count_lines(text, "req_total{") == 1);
  CHECK_THROWS_WITH(f.labels(std::vector<std::string>{"/a"}),
                    Catch::Contains("has 2 label names but 1 label values"));
  CHECK_THROWS_WITH(f.labels(std::vector<std::string>(shm::kMaxLabels + 1, "x")),
                    Catch::Contains("has 2 label names but " + std::to_string(shm::kMaxLabels + 1) +
                                    " label values"));
  CHECK_THROWS_WITH(f.labels(std::vector<std::string>{"/b", "2\xc0\x80"}),
                    Catch::Contains("not valid UTF-8"));
}

TEST_CASE("same_registration_in_another_process_returns_the_same_metric") {
  ScopedName name("same");
  Segment s = open_small(name);
  s.counter_family("hits_total", "Hits.", {"route"}).labels({"/x"}).inc(5);
  pid_t child = testing::fork_child([&] {
    Segment again = open_small(name);
    again.counter_family("hits_total", "Other help is fine.", {"route"}).labels({"/x"}).inc(7);
    return true;
  });
  REQUIRE(testing::wait_child(child) == 0);
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "hits_total{route=\"/x\"}") == 12.0);
  CHECK(testing::count_lines(text, "# HELP hits_total Hits.") == 1);
}

TEST_CASE("conflicting_registration_fails_naming_both_sides") {
  ScopedName name("conflict");
  Segment s = open_small(name);
  s.counter_family("x_total", "X.", {"a"});
  CHECK_THROWS_WITH(s.counter_family("x_total", "X.", {"b"}),
                    Catch::Contains("counter with labels [a]") && Catch::Contains("counter with labels [b]"));
  CHECK_THROWS_WITH(s.counter_family("x_total", "X.", {"a"}, ValueType::kDouble),
                    Catch::Contains("(integer values)") && Catch::Contains("(double values)"));
  s.gauge_family("g", "G.", {}, GaugeMode::kLiveSum);
  CHECK_THROWS_WITH(s.gauge_family("g", "G.", {}, GaugeMode::kLiveMax),
                    Catch::Contains("mode livesum") && Catch::Contains("mode livemax"));
}

TEST_CASE("a_full_segment_refuses_series_and_counts_them_without_throwing") {
  ScopedName name("full");
  Segment s = open_small(name, /*series=*/4, /*families=*/2);
  CounterFamily f = s.counter_family("c_total", "C.", {"k"});
  std::vector<Counter> kept;
  for (int i = 0; i < 4; ++i) kept.push_back(f.labels({std::to_string(i)}));
  Counter refused = f.labels({"one too many"});
  CHECK_FALSE(refused.attached());
  refused.inc();
  refused.inc(3);
  for (auto& c : kept) c.inc();
  s.gauge("g", "G.", GaugeMode::kLiveSum);  // the second family fits, its series does not
  CHECK_THROWS_WITH(s.counter("third_total", "T."), Catch::Contains("all 2 families are registered"));

  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "shmetrics_series_refused_total{role=\"test\"}") == 3.0);
  CHECK(testing::sample(text, "shmetrics_refused_series_updates_total{role=\"test\"}") == 2.0);
  for (int i = 0; i < 4; ++i)
    CHECK(testing::sample(text, "c_total{k=\"" + std::to_string(i) + "\"}") == 1.0);
}

TEST_CASE("invalid_updates_are_dropped_and_counted") {
  ScopedName name("invalid");
  Segment s = open_small(name);
  Counter c = s.counter("c_total", "C.");
  Counter d = s.counter("d_total", "D.", ValueType::kDouble);
  Gauge g = s.gauge("g", "G.", GaugeMode::kLiveSum);
  c.inc(-1);
  c.inc(0.5);                 // fractional on an integer family
  c.inc(std::nan(""));
  d.inc(-0.25);
  d.inc(HUGE_VAL);
  g.set(std::nan(""));
  g.inc(std::nan(""));
  c.inc(2.0);                 // a whole double is fine
  d.inc(0.25);
  d.inc(0.5);
  g.set(4);
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "shmetrics_invalid_updates_total{role=\"test\"}") == 7.0);
  CHECK(testing::sample(text, "c_total") == 2.0);
  CHECK(testing::sample(text, "d_total") == 0.75);
  CHECK(testing::sample(text, "g") == 4.0);
}

namespace {

// A child that takes the segment's registration lock and keeps it until killed,
// as a registrar stopped or killed mid-registration would.
pid_t hold_registration_lock(const std::string& segment) {
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  pid_t pid = testing::fork_child([&] {
    auto caps = shm::MappedSegment::open_read_only(segment)->capacities();
    auto m = shm::MappedSegment::open_or_create(segment, caps, 0600);
    if (shm::lock_robust(m->header()->registration_lock, std::chrono::seconds(5)) == shm::LockResult::kTimedOut)
      return false;
    char byte = 1;
    (void)!::write(ready[1], &byte, 1);
    for (;;) ::pause();
  });
  char byte = 0;
  CHECK(::read(ready[0], &byte, 1) == 1);
  ::close(ready[0]);
  ::close(ready[1]);
  return pid;
}

}  // namespace

TEST_CASE("a_registration_lock_held_too_long_times_out_clearly") {
  ScopedName name("lock-held");
  SegmentOptions o;
  o.name = name.str();
  o.capacities.series = 64;
  o.lock_timeout = std::chrono::milliseconds(200);
  Segment s = Segment::open(o);
  CounterFamily f = s.counter_family("before_total", "Registered before.", {"k"});
  pid_t holder = hold_registration_lock(name.str());
  ::kill(holder, SIGSTOP);  // alive, but going nowhere

  CHECK_THROWS_WITH(s.counter("blocked_total", "Blocked."),
                    Catch::Contains("registration lock") && Catch::Contains("200 ms"));
  Counter refused = f.labels({"new"});
  CHECK_FALSE(refused.attached());
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "shmetrics_registration_lock_timeouts_total{role=\"test\"}") == 2.0);
  CHECK(testing::sample(text, "shmetrics_series_refused_total{role=\"test\"}") == 1.0);

  ::kill(holder, SIGKILL);
  REQUIRE(testing::wait_child(holder) == 128 + SIGKILL);
}

TEST_CASE("registration_recovers_the_lock_of_a_registrar_killed_holding_it") {
  ScopedName name("lock-dead");
  SegmentOptions o;
  o.name = name.str();
  o.capacities.series = 64;
  o.lock_timeout = std::chrono::milliseconds(5000);
  Segment s = Segment::open(o);
  pid_t holder = hold_registration_lock(name.str());
  ::kill(holder, SIGKILL);
  REQUIRE(testing::wait_child(holder) == 128 + SIGKILL);
  // The robust lock reports its owner dead; nothing was half-published.
  s.counter("after_total", "Registered after the holder died.").inc(3);
  s.counter_family("labelled_total", "Labelled.", {"k"}).labels({"v"}).inc();
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "after_total") == 3.0);
  CHECK(testing::sample(text, "labelled_total{k=\"v\"}") == 1.0);
  CHECK(testing::sample(text, "shmetrics_registration_lock_timeouts_total{role=\"test\"}") == 0.0);
}

TEST_CASE("gauge_series_have_a_capacity_of_their_own") {
  ScopedName name("gauge-capacity");
  SegmentOptions o;
  o.name = name.str();
  o.capacities.series = 16;
  o.capacities.gauge_series = 2;
  Segment s = Segment::open(o);
  GaugeFamily g = s.gauge_family("g", "G.", {"k"}, GaugeMode::kLiveSum);
  CounterFamily c = s.counter_family("c_total", "C.", {"k"});
  g.labels({"a"}).set(1);
  g.labels({"b"}).set(2);
  CHECK_FALSE(g.labels({"c"}).attached());  // no gauge cell left
  for (int i = 0; i < 10; ++i) c.labels({std::to_string(i)}).inc();  // counters unaffected
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "g{k=\"a\"}") == 1.0);
  CHECK(testing::sample(text, "g{k=\"b\"}") == 2.0);
  CHECK(testing::count_lines(text, "c_total{") == 10);
  CHECK(testing::sample(text, "shmetrics_series_refused_total{role=\"test\"}") == 1.0);
}
