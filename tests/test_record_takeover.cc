// Taking over dead process records: many newcomers at once, none of their
// gauge or info updates lost.
#include "support.h"

#include <shmetrics/shm/test_hooks.h>
#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace shmetrics;
using testing::ScopedName;

// The bound: once every process record has been used, newcomers take over
// dead records (folding their values under the fold lock), and no gauge or
// info update is lost while a record is free or dead. 64 processes one after
// another leave 64 dead records; then 10 rounds of 16 processes released
// together each do 1,000 inc()s and set an info value while alive: the sum is
// exactly 64 + 10 × 16 × 1,000 = 160,064, every round's 16 info values show,
// and shmetrics_record_unavailable_total stays 0.
TEST_CASE("newcomers_taking_over_dead_records_together_lose_no_gauge_or_info_update") {
  const ValueType type = GENERATE(ValueType::kDouble, ValueType::kInteger);
  ScopedName name("takeover");
  SegmentOptions o = testing::small_options(name.str(), /*slots=*/16, /*records=*/64);
  Segment s = Segment::open(o);
  Gauge done = s.gauge("jobs_done", "Jobs done.", GaugeMode::kSum, type);
  Info id = s.info("worker_info", "The worker.", {"id"});
  for (int i = 0; i < 64; ++i)
    REQUIRE(testing::wait_child(testing::fork_child([&] {
              done.inc();
              return true;
            })) == 0);
  exporter::RoleSource exporter("test", name.str());
  constexpr int kRounds = 10, kWorkers = 16, kIncrements = 1000;
  for (int round = 0; round < kRounds; ++round) {
    testing::ForkBarrier start, leave;
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    std::vector<pid_t> workers;
    for (int w = 0; w < kWorkers; ++w)
      workers.push_back(testing::fork_child([&, w] {
        start.wait();
        id.set({std::to_string(round * kWorkers + w)});
        for (int i = 0; i < kIncrements; ++i) done.inc();
        char byte = 1;
        if (::write(ready[1], &byte, 1) != 1) return false;
        leave.wait();  // alive until the parent has seen its info value
        return true;
      }));
    start.release();
    for (int w = 0; w < kWorkers; ++w) {
      char byte;
      REQUIRE(::read(ready[0], &byte, 1) == 1);
    }
    std::string text = exporter.scrape();
    CHECK(testing::count_lines(text, "worker_info{") == kWorkers);
    for (int w = 0; w < kWorkers; ++w)
      CHECK(testing::sample(text, "worker_info{id=\"" + std::to_string(round * kWorkers + w) + "\"}") == 1.0);
    leave.release();
    for (pid_t pid : workers) CHECK(testing::wait_child(pid) == 0);
    ::close(ready[0]);
    ::close(ready[1]);
  }
  std::string text = exporter.scrape();
  CHECK(testing::sample(text, "jobs_done") == 64.0 + kRounds * kWorkers * kIncrements);
  CHECK(testing::sample(text, "shmetrics_record_unavailable_total{role=\"test\"}") == 0.0);
  CHECK(testing::sample(text, "shmetrics_registration_lock_timeouts_total{role=\"test\"}") == 0.0);
}

// The bound: the fold lock is one for the whole segment, so while a stopped
// process holds it a newcomer waits for it once, at most lock_timeout, and
// not once per dead record; its update is dropped and counted, and once the
// holder is gone the next newcomer folds everything exactly once.
TEST_CASE("a_stopped_folder_costs_a_newcomer_one_bounded_wait_not_one_per_dead_record") {
  ScopedName name("stopped-folder");
  SegmentOptions o = testing::small_options(name.str(), /*slots=*/4, /*records=*/8);
  o.lock_timeout = std::chrono::milliseconds(100);
  Segment s = Segment::open(o);
  Gauge done = s.gauge("jobs_done", "Jobs done.", GaugeMode::kSum, ValueType::kInteger);
  for (int i = 0; i < 8; ++i)  // eight dead records, one job each
    REQUIRE(testing::wait_child(testing::fork_child([&] {
              done.inc();
              return true;
            })) == 0);
  int parked[2], waits[2];
  REQUIRE(::pipe(parked) == 0);
  REQUIRE(::pipe(waits) == 0);
  // A takes over a dead record and stops inside its fold, holding the lock.
  pid_t folder = testing::fork_child([&] {
    shm::set_park_point("fold.before_publish", parked[1]);
    done.inc();
    return false;
  });
  char byte;
  REQUIRE(::read(parked[0], &byte, 1) == 1);
  // B finds seven more dead records; it reports each wait for the fold lock.
  pid_t newcomer = testing::fork_child([&] {
    shm::set_park_point("claim_record.fold_wait", waits[1], shm::kReportOnly);
    done.inc(5);  // dropped: no record within lock_timeout
    done.inc(5);  // dropped without another wait: backing off
    return ::write(waits[1], "d", 1) == 1;
  });
  int fold_waits = 0;
  while (::read(waits[0], &byte, 1) == 1 && byte != 'd') ++fold_waits;
  CHECK(testing::wait_child(newcomer) == 0);
  CHECK(fold_waits == 1);
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "shmetrics_registration_lock_timeouts_total{role=\"test\"}") == 1.0);
  CHECK(testing::sample(text, "shmetrics_record_unavailable_total{role=\"test\"}") == 2.0);
  ::kill(folder, SIGKILL);
  testing::wait_child(folder);
  // With the holder dead, the next newcomer gets a record at once.
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            done.inc();
            return true;
          })) == 0);
  text = testing::scrape(name.str());
  CHECK(testing::sample(text, "jobs_done") == 9.0);  // 8 dead + 1; the dropped 10 never counted
  CHECK(testing::sample(text, "shmetrics_record_unavailable_total{role=\"test\"}") == 2.0);
  for (int fd : {parked[0], parked[1], waits[0], waits[1]}) ::close(fd);
}

TEST_CASE("mostrecent_values_of_dead_processes_are_folded_by_time_when_their_records_are_reused") {
  // Two records. The newer value ends in record 0, the older in record 1;
  // newcomers take both over (folding them in either order): the value set
  // last must survive, and the older one must not replace it.
  ScopedName name("mostrecent-fold");
  Segment s = Segment::open(testing::small_options(name.str(), /*slots=*/4, /*records=*/2));
  Gauge any = s.gauge("config_version", "Config.", GaugeMode::kMostRecent);
  Gauge other = s.gauge("other", "Claims a record.", GaugeMode::kSum);
  testing::ParkedChild x([&] { other.set(0); });  // record 0, for now
  testing::ParkedChild a([&] { any.set(1); });    // record 1: the older value
  x.kill();
  testing::ParkedChild b([&] { any.set(2); });  // takes record 0 over: the newer value
  CHECK(testing::sample(testing::scrape(name.str()), "config_version") == 2.0);
  b.kill();
  a.kill();
  testing::ParkedChild c([&] { other.set(0); });  // the newcomers fold both dead records
  testing::ParkedChild d([&] { other.set(0); });
  const std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(testing::sample(text, "config_version") == 2.0);
}
