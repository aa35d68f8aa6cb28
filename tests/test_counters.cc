// Counters across processes and threads: exact sums, slot hand-back, fork,
// takeover from a killed process, the overflow slot.
#include "support.h"

#include <shmetrics/shm/robust_mutex.h>
#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <chrono>
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

TEST_CASE("a_thread_writing_through_the_overflow_slot_claims_a_slot_once_one_is_handed_back") {
  ScopedName name("overflow-reclaim");
  Segment s = Segment::open(options(name, /*thread_slots=*/1));
  Counter c = s.counter("reclaimed_total", "Increments before and after a slot frees.");
  auto slot_claims = [&] {
    auto m = shm::MappedSegment::open_read_only(name.str());
    return reinterpret_cast<const shm::SlotHeader*>(m->base() + m->geometry().slot_offset(0))
        ->claims.load(std::memory_order_acquire);
  };
  std::latch holder_wrote(1), overflowed(1);
  std::thread holder([&] {
    c.inc();
    holder_wrote.count_down();
    overflowed.wait();
  });  // exits, handing the only slot back
  holder_wrote.wait();
  std::uint64_t increments = 0;
  c.inc();
  ++increments;
  overflowed.count_down();
  holder.join();
  CHECK(overflow_writers(testing::scrape(name.str())) == 1.0);
  // Keep writing until this thread holds the slot (a claim is retried every
  // ~10 ms of overflow writing); bounded, in case it never does.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (slot_claims() < 2 && std::chrono::steady_clock::now() < deadline) {
    for (int n = 0; n < 1000; ++n) c.inc();
    increments += 1000;
  }
  REQUIRE(slot_claims() == 2);
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "reclaimed_total") == static_cast<double>(increments + 1));
  CHECK(overflow_writers(text) == 1.0);  // counted as the thread began overflowing, not per retry
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

TEST_CASE("a_slot_claimed_four_billion_times_keeps_showing_its_counts") {
  ScopedName name("claims-wrap");
  Segment s = Segment::open(options(name, /*thread_slots=*/1));
  Counter c = s.counter("wrapped_total", "Counts in a slot claimed very often.");
  REQUIRE(testing::wait_child(testing::fork_child([&] { c.inc(5); return true; })) == 0);
  {
    // Pretend the slot was claimed UINT32_MAX times already.
    auto m = shm::MappedSegment::open_or_create(name.str(), options(name, 1).capacities, 0600);
    auto* h = reinterpret_cast<shm::SlotHeader*>(m->base() + m->geometry().slot_offset(0));
    h->claims.store(UINT32_MAX);
  }
  REQUIRE(testing::wait_child(testing::fork_child([&] { c.inc(); return true; })) == 0);
  CHECK(testing::sample(testing::scrape(name.str()), "wrapped_total") == 6.0);
}

TEST_CASE("double_counters_registered_interleaved_keep_their_own_values") {
  ScopedName name("double-interleaved");
  Segment s = Segment::open(options(name));
  CounterFamily a = s.counter_family("a_seconds_total", "A.", {"x"}, ValueType::kDouble);
  Counter a1 = a.labels({"1"});
  Counter b = s.counter("b_seconds_total", "B.", ValueType::kDouble);
  Counter a2 = a.labels({"2"});
  a1.inc(1.5);
  b.inc(100.25);
  a2.inc(20.5);
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "a_seconds_total{x=\"1\"}") == 1.5);
  CHECK(testing::sample(text, "a_seconds_total{x=\"2\"}") == 20.5);
  CHECK(testing::sample(text, "b_seconds_total") == 100.25);
}

TEST_CASE("closing_a_reader_opened_before_the_writer_keeps_the_writer_locks") {
  ScopedName name("reader-first");
  SegmentOptions o = options(name, /*thread_slots=*/1);
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            Segment::open(o).counter("held_total", "Held.");
            return true;
          })) == 0);
  auto early_reader = shm::MappedSegment::open_read_only(name.str());
  Counter c = Segment::open(o).counter("held_total", "Held.");
  c.inc();  // this process now owns the only slot
  early_reader.reset();  // must not drop this process's fcntl locks
  REQUIRE(testing::wait_child(testing::fork_child([&] { c.inc(); return true; })) == 0);
  std::string text = testing::scrape(name.str());
  CHECK(overflow_writers(text) == 1.0);  // the child found the slot held
  CHECK(testing::sample(text, "held_total") == 2.0);
}

TEST_CASE("a_stopped_registrar_does_not_hold_up_claims_of_other_threads") {
  ScopedName name("stopped-registrar");
  SegmentOptions o = options(name);
  o.lock_timeout = std::chrono::milliseconds(3000);
  Segment s = Segment::open(o);
  CounterFamily f = s.counter_family("f_total", "F.", {"k"});
  Counter existing = f.labels({"old"});
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  pid_t holder = testing::fork_child([&] {
    auto m = shm::MappedSegment::open_or_create(name.str(), o.capacities, 0600);
    if (shm::lock_robust(m->header()->registration_lock, std::chrono::seconds(5)) == shm::LockResult::kTimedOut)
      return false;
    (void)!::write(ready[1], "x", 1);
    for (;;) ::pause();
  });
  char byte;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  std::atomic<bool> registering_done{false};
  std::atomic<bool> increment_done_first{false};
  std::thread registrar([&] {
    f.labels({"new"});  // waits for the lock, up to 3 s
    registering_done = true;
  });
  std::atomic<double> writer_seconds{0};
  std::thread writer([&] {
    const auto start = std::chrono::steady_clock::now();
    existing.inc();  // a new thread's first update: claims a slot
    writer_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    increment_done_first = !registering_done;
  });
  writer.join();
  registrar.join();
  // The registrar waits the whole 3 s lock_timeout; a claim that waited for
  // the lock too would take as long (a generous bound, but one that fails).
  CHECK(writer_seconds < 1.5);
  CHECK(increment_done_first);
  ::kill(holder, SIGKILL);
  testing::wait_child(holder);
  ::close(ready[0]);
  ::close(ready[1]);
}

// The page pool: a slot's cells come in 8-cell pages taken on first touch.

namespace {

std::uint32_t pages_used(const std::string& segment) {
  auto m = shm::MappedSegment::open_read_only(segment);
  return m->header()->pages_used.load(std::memory_order_acquire);
}

}  // namespace

TEST_CASE("a_slot_takes_a_page_only_for_the_pages_of_series_it_writes") {
  ScopedName name("pages-first-touch");
  SegmentOptions o = options(name, /*thread_slots=*/4);
  Segment s = Segment::open(o);
  CounterFamily f = s.counter_family("paged_total", "Series in pages.", {"n"});
  std::vector<Counter> series;
  for (int i = 0; i < 64; ++i) series.push_back(f.labels({std::to_string(i)}));
  CHECK(pages_used(name.str()) == 0);
  // Two processes: one writes series 0-7 (one page), the other 3 and 60 (two).
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            for (int i = 0; i < 8; ++i) series[i].inc(i + 1);
            return true;
          })) == 0);
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            series[3].inc(100);
            series[60].inc(7);
            return true;
          })) == 0);
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "paged_total{n=\"3\"}") == 104.0);
  CHECK(testing::sample(text, "paged_total{n=\"7\"}") == 8.0);
  CHECK(testing::sample(text, "paged_total{n=\"60\"}") == 7.0);
  CHECK(testing::sample(text, "paged_total{n=\"61\"}") == 0.0);
  // The second process took over the first one's slot with its page of 0-7.
  CHECK(pages_used(name.str()) == 2);
}

TEST_CASE("updates_that_find_the_page_pool_empty_go_through_the_overflow_slot_exactly") {
  ScopedName name("pages-empty");
  SegmentOptions o = options(name, /*thread_slots=*/4);
  o.capacities.cell_pages = 2;
  Segment s = Segment::open(o);
  CounterFamily f = s.counter_family("pool_total", "Series beyond the pool.", {"n"});
  Counter a = f.labels({"a"}), b = f.labels({"b"});  // series 0, 1: page 0
  CounterFamily g = s.counter_family("more_total", "More series.", {"n"});
  std::vector<Counter> more;
  for (int i = 0; i < 16; ++i) more.push_back(g.labels({std::to_string(i)}));  // series 2-17
  std::latch first_done(1);
  std::thread t1([&] {
    a.inc(3);               // page 0 for this thread's slot
    more[14].inc(5);        // series 16: page 2
    first_done.count_down();
  });
  first_done.wait();
  t1.join();  // hands its slot back; the pages stay with the slot
  std::thread t2([&] {
    // Takes the handed-back slot: pages 0 and 2 are there already.
    for (int i = 0; i < 1000; ++i) b.inc();
    // Series 8-15 (page 1): the pool is empty, through the overflow slot.
    for (int i = 0; i < 1000; ++i) more[8].inc(2);
  });
  t2.join();
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "pool_total{n=\"a\"}") == 3.0);
  CHECK(testing::sample(text, "pool_total{n=\"b\"}") == 1000.0);
  CHECK(testing::sample(text, "more_total{n=\"14\"}") == 5.0);
  CHECK(testing::sample(text, "more_total{n=\"8\"}") == 2000.0);
  CHECK(testing::sample(text, "shmetrics_pageless_updates_total{role=\"test\"}") == 1000.0);
  CHECK(overflow_writers(text) == 0.0);  // a slot was had; only the page was not
  CHECK(pages_used(name.str()) == 2);
}
