// A writer SIGKILLed at each named point — between increments, registering a
// family or a label set, claiming a slot or a record, creating the segment —
// leaves every other process working, the segment valid and nothing
// half-published, and no counter goes backwards. Each point is reached
// deliberately (shm::set_park_point), not by chance.
#include "support.h"

#include <shmetrics/shm/test_hooks.h>
#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <dirent.h>
#include <sys/mman.h>

using namespace shmetrics;
using testing::ScopedName;

namespace {

SegmentOptions options(const ScopedName& name, std::uint32_t thread_slots = 4,
                       std::uint32_t records = 4) {
  SegmentOptions o;
  o.name = name.str();
  o.capacities.thread_slots = thread_slots;
  o.capacities.process_records = records;
  o.capacities.series = 32;
  o.capacities.gauge_series = 32;
  o.capacities.families = 32;
  o.capacities.string_bytes = 4096;
  o.capacities.info_families = 2;
  o.capacities.info_value_bytes = 64;
  // Generous: a recovered lock is had at once, a bug would wait this long.
  o.lock_timeout = std::chrono::milliseconds(5000);
  return o;
}

// Forks a child that arms `point`, runs `body` (which reaches the point and
// parks there), and returns its pid once it is parked.
pid_t park_child_at(const char* point, const std::function<void()>& body) {
  int report[2];
  REQUIRE(::pipe(report) == 0);
  pid_t pid = testing::fork_child([&] {
    shm::set_park_point(point, report[1]);
    body();
    return false;  // the point was never reached
  });
  char byte = 0;
  bool parked = ::read(report[0], &byte, 1) == 1;
  ::close(report[0]);
  ::close(report[1]);
  if (!parked) testing::wait_child(pid);
  REQUIRE(parked);
  return pid;
}

void kill_child(pid_t pid) {
  ::kill(pid, SIGKILL);
  REQUIRE(testing::wait_child(pid) == 128 + SIGKILL);
}

// The exposition is whole: the segment is up and the exporter dropped nothing.
void check_segment_sound(const std::string& text) {
  INFO(text);
  CHECK(testing::sample(text, "shmetrics_segment_up{role=\"test\"}") == 1.0);
  CHECK(testing::sample(text, "shmetrics_untrusted_entries_dropped_total{role=\"test\",kind=\"family\"}") == 0.0);
  CHECK(testing::sample(text, "shmetrics_untrusted_entries_dropped_total{role=\"test\",kind=\"series\"}") == 0.0);
}

}  // namespace

TEST_CASE("a_writer_killed_between_increments_loses_nothing_it_finished") {
  ScopedName name("kill-incr");
  Segment s = Segment::open(options(name));
  Counter c = s.counter("steps_total", "Steps.");
  // How many increments the child has finished, in memory the test can read.
  auto* done = static_cast<std::atomic<std::uint64_t>*>(
      ::mmap(nullptr, 8, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  done->store(0);
  pid_t child = testing::fork_child([&] {
    for (std::uint64_t i = 1;; ++i) {
      c.inc();
      done->store(i, std::memory_order_release);
    }
    return true;
  });
  double last = 0;
  while (done->load() < 100'000) {
    double now = testing::sample(testing::scrape(name.str()), "steps_total").value_or(0);
    CHECK(now >= last);  // never backwards
    last = now;
  }
  kill_child(child);
  std::uint64_t finished = done->load(std::memory_order_acquire);
  double total = testing::sample(testing::scrape(name.str()), "steps_total").value_or(-1);
  // The one increment between its store and the acknowledgement may be in.
  CHECK(total >= static_cast<double>(finished));
  CHECK(total <= static_cast<double>(finished + 1));
  ::munmap(done, 8);
}

TEST_CASE("a_registrar_killed_mid_registration_publishes_nothing_and_blocks_nobody") {
  const char* point = GENERATE("register_family.after_strings", "register_family.before_publish");
  ScopedName name("kill-family");
  Segment s = Segment::open(options(name));
  s.counter("before_total", "Registered before.").inc();
  pid_t child = park_child_at(point, [&] { s.counter("half_made_total", "Never published."); });
  kill_child(child);
  // The robust lock comes back at once; registration goes on.
  s.counter("after_total", "Registered after.").inc(2);
  s.counter_family("labels_total", "Labelled.", {"k"}).labels({"v"}).inc(3);
  std::string text = testing::scrape(name.str());
  check_segment_sound(text);
  CHECK_THAT(text, !Catch::Contains("half_made_total"));
  CHECK(testing::sample(text, "before_total") == 1.0);
  CHECK(testing::sample(text, "after_total") == 2.0);
  CHECK(testing::sample(text, "labels_total{k=\"v\"}") == 3.0);
  CHECK(testing::sample(text, "shmetrics_registration_lock_timeouts_total{role=\"test\"}") == 0.0);
  // The same name can still be registered: nothing of it was published.
  s.counter("half_made_total", "Published now.").inc();
  CHECK(testing::sample(testing::scrape(name.str()), "half_made_total") == 1.0);
}

TEST_CASE("a_registrar_killed_mid_label_set_publishes_nothing_and_blocks_nobody") {
  const char* point = GENERATE("register_series.after_strings", "register_series.before_publish");
  ScopedName name("kill-series");
  Segment s = Segment::open(options(name));
  CounterFamily f = s.counter_family("req_total", "Requests.", {"route"});
  f.labels({"/old"}).inc();
  pid_t child = park_child_at(point, [&] { f.labels({"/half"}); });
  kill_child(child);
  f.labels({"/new"}).inc(4);
  f.labels({"/half"}).inc(5);  // registered now, whole
  std::string text = testing::scrape(name.str());
  check_segment_sound(text);
  CHECK(testing::sample(text, "req_total{route=\"/old\"}") == 1.0);
  CHECK(testing::sample(text, "req_total{route=\"/new\"}") == 4.0);
  CHECK(testing::sample(text, "req_total{route=\"/half\"}") == 5.0);
  CHECK(testing::count_lines(text, "req_total{") == 3);
}

TEST_CASE("a_registrar_killed_mid_histogram_publishes_nothing_and_its_cells_go_to_the_next") {
  const char* point = GENERATE("register_family.after_strings", "register_family.before_publish",
                               "register_series.after_strings", "register_series.before_publish");
  ScopedName name("kill-histogram");
  Segment s = Segment::open(options(name));
  HistogramFamily made = s.histogram_family("made_seconds", "Made before.", {"route"}, {1, 2});
  made.labels({"/old"}).observe(1.5);
  const bool family_point = std::string_view(point).starts_with("register_family");
  pid_t child = park_child_at(point, [&] {
    if (family_point)
      s.histogram_family("half_seconds", "Never published.", {}, {1, 2, 3});
    else
      made.labels({"/half"});
  });
  kill_child(child);
  // Registered now, whole; its cells and the next series' are their own.
  Histogram half = family_point ? s.histogram_family("half_seconds", "Published now.", {}, {1, 2, 3}).labels({})
                                : made.labels({"/half"});
  Counter after = s.counter("after_total", "After.");
  half.observe(2.5);
  half.observe(0.5);
  after.inc(7);
  made.labels({"/old"}).observe(9);
  std::string text = testing::scrape(name.str());
  check_segment_sound(text);
  const std::string half_name = family_point ? "half_seconds" : "made_seconds";
  const std::string labels = family_point ? "" : "route=\"/half\",";
  INFO(text);
  CHECK(testing::sample(text, half_name + "_bucket{" + labels + "le=\"1\"}") == 1.0);
  CHECK(testing::sample(text, half_name + "_bucket{" + labels + "le=\"2\"}") == 1.0);
  CHECK(testing::sample(text, half_name + "_bucket{" + labels + "le=\"+Inf\"}") == 2.0);
  CHECK(testing::sample(text, "made_seconds_count{route=\"/old\"}") == 2.0);
  CHECK(testing::sample(text, "made_seconds_sum{route=\"/old\"}") == 10.5);
  CHECK(testing::sample(text, "after_total") == 7.0);
}

TEST_CASE("a_writer_killed_while_claiming_a_slot_leaves_it_claimable") {
  ScopedName name("kill-claim");
  Segment s = Segment::open(options(name, /*thread_slots=*/1));
  Counter c = s.counter("claimed_total", "Claimed.");
  pid_t child = park_child_at("claim_slot.after_lock", [&] { c.inc(); });
  kill_child(child);
  REQUIRE(testing::wait_child(testing::fork_child([&] { c.inc(7); return true; })) == 0);
  std::string text = testing::scrape(name.str());
  check_segment_sound(text);
  CHECK(testing::sample(text, "claimed_total") == 7.0);
  CHECK(testing::sample(text, "shmetrics_overflow_writers_total{role=\"test\"}") == 0.0);
}

TEST_CASE("a_writer_killed_while_resetting_its_record_leaves_it_claimable") {
  ScopedName name("kill-record");
  Segment s = Segment::open(options(name, 4, /*records=*/1));
  Gauge g = s.gauge("level", "Level.", GaugeMode::kLiveSum);
  for (int i = 0; i < 20; ++i)
    s.gauge("filler_" + std::to_string(i), "Filler.", GaugeMode::kLiveSum);
  Gauge other = s.gauge("other", "Other.", GaugeMode::kLiveSum);  // a cell past the half reset
  // A first process leaves a value in the only record and dies.
  REQUIRE(testing::wait_child(testing::fork_child([&] { other.set(5); return true; })) == 0);
  pid_t child = park_child_at("claim_record.mid_reset", [&] { g.set(1); });
  kill_child(child);
  int report[2];
  REQUIRE(::pipe(report) == 0);
  pid_t next = testing::fork_child([&] {
    g.set(9);
    (void)!::write(report[1], "x", 1);
    for (;;) ::pause();
    return true;
  });
  char byte;
  REQUIRE(::read(report[0], &byte, 1) == 1);
  std::string text = testing::scrape(name.str());
  check_segment_sound(text);
  CHECK(testing::sample(text, "level") == 9.0);
  CHECK_FALSE(testing::sample(text, "other"));  // reset whole: no stale cells
  kill_child(next);
  ::close(report[0]);
  ::close(report[1]);
}

TEST_CASE("a_creator_killed_mid_creation_publishes_nothing") {
  const char* point = GENERATE("create.mid_header", "create.before_link");
  ScopedName name("kill-create");
  auto shm_entries = [&] {  // files in the segment's directory (none while it is missing)
    int n = 0;
    DIR* d = ::opendir(name.str().substr(0, name.str().rfind('/')).c_str());
    if (d == nullptr) return 0;
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
    return n;
  };
  int before = shm_entries();
  pid_t child = park_child_at(point, [&] { Segment::open(options(name)); });
  CHECK(shm::current_inode(name.str()) == 0);  // not visible while being made
  kill_child(child);
  CHECK(shm::current_inode(name.str()) == 0);  // and never after
  CHECK(shm_entries() == before);             // the unnamed file went with its creator
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            Segment::open(options(name)).counter("made_total", "Made.").inc();
            return true;
          })) == 0);
  std::string text = testing::scrape(name.str());
  check_segment_sound(text);
  CHECK(testing::sample(text, "made_total") == 1.0);
}
