// The exporter asks the kernel about a dead process's record once: the verdict
// holds until the record is claimed anew (a new pid or generation), so a scrape
// after many short-lived workers asks only about the live ones.
#include "support.h"

#include <shmetrics/shm/test_hooks.h>
#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <set>

using namespace shmetrics;
using testing::ParkedChild;
using testing::ScopedName;

namespace {

SegmentOptions options(const ScopedName& name, std::uint32_t records) {
  SegmentOptions o;
  o.name = name.str();
  o.capacities.thread_slots = 8;
  o.capacities.process_records = records;
  o.capacities.series = 64;
  o.capacities.families = 16;
  o.capacities.string_bytes = 8192;
  o.capacities.info_families = 1;
  o.capacities.info_value_bytes = 64;
  return o;
}

shm::RecordHeader& record_header(const shm::MappedSegment& m, std::uint32_t record) {
  return *reinterpret_cast<shm::RecordHeader*>(m.base() + m.geometry().record_offset(record));
}

}  // namespace

TEST_CASE("a_scrape_after_churn_asks_the_kernel_only_about_live_records") {
  constexpr int kDead = 4;
  ScopedName name("churn");
  // Room for the dead and one live process: the next process must take over a dead record.
  Segment s = Segment::open(options(name, kDead + 1));
  Gauge busy = s.gauge("busy_workers", "Busy workers.", GaugeMode::kLiveSum);
  Gauge done = s.gauge("jobs_done", "Jobs done.", GaugeMode::kSum);
  for (int k = 0; k < kDead; ++k)
    REQUIRE(testing::wait_child(testing::fork_child([&] {
              busy.set(1);  // claims a process record
              done.set(1);
              return true;
            })) == 0);
  ParkedChild live([&] {
    busy.set(1);
    done.set(10);
  });

  exporter::RoleSource source("test", name.str());
  std::string text = source.scrape();
  CHECK(source.liveness_queries() == kDead + 1);
  CHECK(testing::sample(text, "busy_workers") == 1.0);  // the dead leave the live sum
  CHECK(testing::sample(text, "jobs_done") == kDead + 10.0);  // and stay in the sum

  text = source.scrape();
  CHECK(source.liveness_queries() == kDead + 2);  // only the live record again
  CHECK(testing::sample(text, "busy_workers") == 1.0);
  CHECK(testing::sample(text, "jobs_done") == kDead + 10.0);

  // A newcomer takes over a dead record (folding its value): asked about, live.
  ParkedChild newcomer([&] {
    busy.set(1);
    done.set(100);
  });
  text = source.scrape();
  CHECK(source.liveness_queries() == kDead + 4);
  CHECK(testing::sample(text, "busy_workers") == 2.0);
  CHECK(testing::sample(text, "jobs_done") == kDead + 110.0);
  text = source.scrape();
  CHECK(source.liveness_queries() == kDead + 6);
  CHECK(testing::sample(text, "busy_workers") == 2.0);
}

TEST_CASE("a_record_being_claimed_stays_dead_until_its_new_owner_names_itself") {
  ScopedName name("claiming");
  Segment s = Segment::open(options(name, 1));
  Gauge busy = s.gauge("busy_workers", "Busy workers.", GaugeMode::kLiveSum);
  Gauge done = s.gauge("jobs_done", "Jobs done.", GaugeMode::kSum);
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            busy.set(1);
            done.set(4);
            return true;
          })) == 0);
  exporter::RoleSource source("test", name.str());
  std::string text = source.scrape();
  CHECK(source.liveness_queries() == 1);
  CHECK_FALSE(testing::sample(text, "busy_workers"));
  CHECK(testing::sample(text, "jobs_done") == 4.0);

  // The next owner stops half-way through resetting the record: it holds the
  // lock, the dead value is folded, the record still names the dead pid.
  int report[2], resume[2];
  REQUIRE(::pipe(report) == 0);
  REQUIRE(::pipe(resume) == 0);
  pid_t next = testing::fork_child([&] {
    shm::set_park_point("claim_record.mid_reset", report[1], resume[0]);
    busy.set(1);
    done.set(1);
    char byte = 1;
    (void)!::write(report[1], &byte, 1);
    for (;;) ::pause();
    return true;
  });
  char byte = 0;
  REQUIRE(::read(report[0], &byte, 1) == 1);
  text = source.scrape();
  CHECK(source.liveness_queries() == 1);
  CHECK_FALSE(testing::sample(text, "busy_workers"));
  CHECK(testing::sample(text, "jobs_done") == 4.0);  // from the dead buffer, once

  REQUIRE(::write(resume[1], &byte, 1) == 1);
  REQUIRE(::read(report[0], &byte, 1) == 1);  // claimed and set
  text = source.scrape();
  CHECK(source.liveness_queries() == 2);
  CHECK(testing::sample(text, "busy_workers") == 1.0);
  CHECK(testing::sample(text, "jobs_done") == 5.0);

  ::kill(next, SIGKILL);
  testing::wait_child(next);
  for (int fd : {report[0], report[1], resume[0], resume[1]}) ::close(fd);
}

TEST_CASE("a_dead_verdict_ends_when_the_record_names_another_generation_or_pid") {
  ScopedName name("reuse");
  const SegmentOptions o = options(name, 2);
  Segment s = Segment::open(o);
  Gauge busy = s.gauge("busy_workers", "Busy workers.", GaugeMode::kLiveSum);
  const pid_t dead = testing::fork_child([&] {
    busy.set(3);
    return true;
  });
  REQUIRE(testing::wait_child(dead) == 0);

  // The kernel cannot be made to reuse a pid: the liveness is made up, the
  // record header written as a claimer would.
  auto m = shm::MappedSegment::open_or_create(name.str(), o.capacities, 0600);
  shm::RecordHeader& header = record_header(*m, 0);
  REQUIRE(header.owner_pid.load() == static_cast<std::uint32_t>(dead));
  exporter::SegmentReader reader(m->base(), m->size_bytes());
  std::set<std::uint32_t> alive;
  int asked = 0;
  exporter::RecordLiveness live = [&](std::uint32_t, std::uint32_t pid) {
    ++asked;
    return alive.contains(pid);
  };
  auto render = [&] {
    std::string out;
    REQUIRE(reader.render(out, live, 0).empty());
    return out;
  };
  CHECK_FALSE(testing::sample(render(), "busy_workers"));
  CHECK_FALSE(testing::sample(render(), "busy_workers"));
  CHECK(asked == 1);

  // A new process with the dead one's pid claims the record: a new generation.
  alive.insert(static_cast<std::uint32_t>(dead));
  header.generation.fetch_add(1);
  CHECK(testing::sample(render(), "busy_workers") == 3.0);
  CHECK(testing::sample(render(), "busy_workers") == 3.0);
  CHECK(asked == 3);  // live records are asked about on every render

  // It dies; another process bumps the generation and writes its own pid.
  alive.clear();
  CHECK_FALSE(testing::sample(render(), "busy_workers"));
  CHECK(asked == 4);
  header.generation.fetch_add(1);
  header.owner_pid.store(static_cast<std::uint32_t>(dead) + 1);
  alive.insert(static_cast<std::uint32_t>(dead) + 1);
  CHECK(testing::sample(render(), "busy_workers") == 3.0);
  CHECK(asked == 5);
}

TEST_CASE("a_replaced_segment_is_asked_about_afresh") {
  constexpr int kDead = 3;
  ScopedName name("replaced");
  const SegmentOptions o = options(name, 4);
  // This process never writes it: each child opens whichever segment is there.
  auto worker_that_exits = [&] {
    return testing::wait_child(testing::fork_child([&] {
      Segment s = Segment::open(o);
      s.gauge("busy_workers", "Busy workers.", GaugeMode::kLiveSum).set(1);
      return true;
    }));
  };
  Segment::recreate(o);
  for (int k = 0; k < kDead; ++k) REQUIRE(worker_that_exits() == 0);
  exporter::RoleSource source("test", name.str());
  source.scrape();
  source.scrape();
  CHECK(source.liveness_queries() == kDead);

  // The new segment's records name the very owners and generations the old
  // one's did: verdicts about the old segment say nothing about it.
  std::vector<std::pair<std::uint32_t, std::uint32_t>> headers;
  {
    auto old = shm::MappedSegment::open_read_only(name.str());
    for (std::uint32_t r = 0; r < o.capacities.process_records; ++r)
      headers.emplace_back(record_header(*old, r).owner_pid.load(), record_header(*old, r).generation.load());
  }
  Segment::recreate(o);
  auto m = shm::MappedSegment::open_or_create(name.str(), o.capacities, 0600);
  for (std::uint32_t r = 0; r < o.capacities.process_records; ++r) {
    record_header(*m, r).generation.store(headers[r].second);
    record_header(*m, r).owner_pid.store(headers[r].first);
  }
  source.scrape();
  CHECK(source.liveness_queries() == kDead);
}
