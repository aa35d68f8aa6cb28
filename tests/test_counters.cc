// Counters across processes and threads: exact sums, slot hand-back, fork,
// takeover from a killed process, the overflow slot.
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <latch>
#include <thread>

using namespace shmetrics;
using testing::ScopedName;

namespace {

SegmentOptions options(const ScopedName& name, std::uint32_t thread_slots = 64) {
  SegmentOptions o;
  o.name = name.str();
  o.capacities.thread_slots = thread_slots;
  o.capacities.process_records = 16;
  o.capacities.series = 64;
  o.capacities.families = 16;
  o.capacities.string_bytes = 8192;
  return o;
}

double overflow_writers(const std::string& text) {
  return testing::sample(text, "shmetrics_overflow_writers_total{role=\"test\"}").value_or(-1);
}

}  // namespace

TEST_CASE("eight_processes_times_a_million_increments_render_exactly") {
  ScopedName name("8x1m");
  Segment s = Segment::open(options(name));
  Counter c = s.counter("work_total", "Work done.");
  testing::ForkBarrier barrier;
  std::vector<pid_t> children;
  for (int i = 0; i < 8; ++i)
    children.push_back(testing::fork_child([&] {
      barrier.wait();
      for (int n = 0; n < 1'000'000; ++n) c.inc();
      return true;
    }));
  barrier.release();
  for (pid_t pid : children) REQUIRE(testing::wait_child(pid) == 0);
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "work_total") == 8'000'000.0);
  CHECK(overflow_writers(text) == 0.0);
}

TEST_CASE("two_processes_of_four_threads_each_are_exact") {
  ScopedName name("2x4");
  Segment s = Segment::open(options(name));
  CounterFamily f = s.counter_family("req_total", "Requests.", {"route"});
  testing::ForkBarrier barrier;
  std::vector<pid_t> children;
  for (int p = 0; p < 2; ++p)
    children.push_back(testing::fork_child([&] {
      barrier.wait();
      std::vector<std::thread> threads;
      for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
          Counter mine = f.labels({t % 2 ? "/odd" : "/even"});
          for (int n = 0; n < 250'000; ++n) mine.inc(2);
        });
      for (auto& t : threads) t.join();
      return true;
    }));
  barrier.release();
  for (pid_t pid : children) REQUIRE(testing::wait_child(pid) == 0);
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "req_total{route=\"/even\"}") == 2'000'000.0);
  CHECK(testing::sample(text, "req_total{route=\"/odd\"}") == 2'000'000.0);
}

TEST_CASE("threads_that_exit_hand_their_slots_back") {
  ScopedName name("handback");
  Segment s = Segment::open(options(name));
  Counter c = s.counter("short_lived_total", "Increments by short-lived threads.");
  // 1,000 threads, at most 10 alive at once.
  for (int batch = 0; batch < 100; ++batch) {
    std::latch start(10);
    std::vector<std::thread> threads;
    for (int t = 0; t < 10; ++t)
      threads.emplace_back([&] {
        start.arrive_and_wait();
        c.inc();
      });
    for (auto& t : threads) t.join();
  }
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "short_lived_total") == 1000.0);
  CHECK(testing::claimed_slots(name.str()) <= 10);
  CHECK(overflow_writers(text) == 0.0);
}

TEST_CASE("a_forked_child_claims_its_own_slot_and_the_sum_is_exact") {
  ScopedName name("fork");
  Segment s = Segment::open(options(name));
  Counter c = s.counter("forked_total", "Increments around a fork.");
  c.inc(100);  // the parent now owns a slot
  pid_t child = testing::fork_child([&] {
    for (int i = 0; i < 50; ++i) c.inc();
    return true;
  });
  REQUIRE(testing::wait_child(child) == 0);
  c.inc();  // still the parent's own slot
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "forked_total") == 151.0);
  CHECK(testing::claimed_slots(name.str()) == 2);
}

TEST_CASE("the_slot_of_a_sigkilled_process_is_taken_over_and_its_counts_kept") {
  ScopedName name("takeover");
  Segment s = Segment::open(options(name, /*thread_slots=*/1));
  Counter c = s.counter("kept_total", "Increments that must survive a SIGKILL.");
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  pid_t holder = testing::fork_child([&] {
    c.inc(1000);
    char byte = 1;
    (void)!::write(ready[1], &byte, 1);
    for (;;) ::pause();
    return true;
  });
  char byte;
  REQUIRE(::read(ready[0], &byte, 1) == 1);

  // While the holder lives, its slot is not taken: a second writer overflows.
  pid_t while_alive = testing::fork_child([&] {
    c.inc(10);
    return true;
  });
  REQUIRE(testing::wait_child(while_alive) == 0);
  CHECK(overflow_writers(testing::scrape(name.str())) == 1.0);

  ::kill(holder, SIGKILL);
  REQUIRE(testing::wait_child(holder) == 128 + SIGKILL);
  pid_t successor = testing::fork_child([&] {
    c.inc(500);
    return true;
  });
  REQUIRE(testing::wait_child(successor) == 0);
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "kept_total") == 1510.0);
  CHECK(overflow_writers(text) == 1.0);  // the successor got the dead holder's slot
  CHECK(testing::claimed_slots(name.str()) == 1);
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_CASE("writers_beyond_the_slots_use_the_overflow_slot_and_stay_exact") {
  ScopedName name("overflow");
  Segment s = Segment::open(options(name, /*thread_slots=*/2));
  Counter c = s.counter("crowded_total", "Increments from more threads than slots.");
  // Every thread has written once before any finishes: 8 writers, 2 slots.
  std::latch first_written(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      c.inc();
      first_written.arrive_and_wait();
      for (int n = 1; n < 200'000; ++n) c.inc();
    });
  for (auto& t : threads) t.join();
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "crowded_total") == 1'600'000.0);
  CHECK(overflow_writers(text) >= 1.0);
}

TEST_CASE("double_counters_accept_fractions_across_processes") {
  ScopedName name("double");
  Segment s = Segment::open(options(name));
  Counter seconds = s.counter("busy_seconds_total", "Seconds spent busy.", ValueType::kDouble);
  std::vector<pid_t> children;
  for (int i = 0; i < 4; ++i)
    children.push_back(testing::fork_child([&] {
      for (int n = 0; n < 1000; ++n) seconds.inc(0.5);
      return true;
    }));
  for (pid_t pid : children) REQUIRE(testing::wait_child(pid) == 0);
  CHECK(testing::sample(testing::scrape(name.str()), "busy_seconds_total") == 2000.0);
}
