// Gauges in the live modes and info metrics, with processes living and dying.
#include "support.h"

#include <shmetrics/shm/test_hooks.h>
#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <latch>
#include <limits>
#include <sched.h>
#include <thread>

using namespace shmetrics;
using testing::ParkedChild;
using testing::ScopedName;

namespace {

SegmentOptions options(const ScopedName& name, std::uint32_t records = 16) {
  return testing::small_options(name.str(), 8, records);
}

}  // namespace

TEST_CASE("live_gauge_modes_follow_the_live_processes") {
  ScopedName name("live");
  Segment s = Segment::open(options(name));
  Gauge sum = s.gauge("busy_workers", "Busy workers.", GaugeMode::kLiveSum);
  Gauge max = s.gauge("queue_max", "Longest queue.", GaugeMode::kLiveMax);
  Gauge min = s.gauge("queue_min", "Shortest queue.", GaugeMode::kLiveMin);
  GaugeFamily all = s.gauge_family("heap_bytes", "Heap per worker.", {"pool"}, GaugeMode::kLiveAll);
  auto worker = [&](double v) {
    return [&, v] {
      sum.set(v);
      max.set(v);
      min.set(v);
      all.labels({"main"}).set(v);
    };
  };
  ParkedChild a(worker(1)), b(worker(5)), c(worker(3));

  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "busy_workers") == 9.0);
  CHECK(testing::sample(text, "queue_max") == 5.0);
  CHECK(testing::sample(text, "queue_min") == 1.0);
  for (auto [child, v] : {std::pair{&a, 1.0}, {&b, 5.0}, {&c, 3.0}})
    CHECK(testing::sample(text, "heap_bytes{pool=\"main\",pid=\"" + std::to_string(child->pid()) + "\"}") == v);

  pid_t dead = b.pid();
  b.kill();
  text = testing::scrape(name.str());
  CHECK(testing::sample(text, "busy_workers") == 4.0);
  CHECK(testing::sample(text, "queue_max") == 3.0);
  CHECK(testing::sample(text, "queue_min") == 1.0);
  CHECK_FALSE(testing::sample(text, "heap_bytes{pool=\"main\",pid=\"" + std::to_string(dead) + "\"}"));
  CHECK(testing::count_lines(text, "heap_bytes{") == 2);

  a.kill();
  c.kill();
  text = testing::scrape(name.str());
  CHECK_FALSE(testing::sample(text, "busy_workers"));  // nobody live has a value
  CHECK(testing::count_lines(text, "# TYPE busy_workers") == 0);
}

TEST_CASE("gauge_inc_and_dec_from_many_threads_are_exact") {
  ScopedName name("gauge-threads");
  Segment s = Segment::open(options(name));
  Gauge inflight = s.gauge("inflight", "In flight.", GaugeMode::kLiveSum);
  Gauge total = s.gauge("moved", "Moved.", GaugeMode::kLiveSum);
  std::latch start(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < 20'000; ++i) {
        inflight.inc();
        total.inc(0.5);
        inflight.dec();
      }
    });
  for (auto& t : threads) t.join();
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "inflight") == 0.0);
  CHECK(testing::sample(text, "moved") == 40'000.0);
}

TEST_CASE("the_record_of_a_dead_process_is_reused_without_its_values") {
  ScopedName name("record-reuse");
  Segment s = Segment::open(options(name, /*records=*/1));
  Gauge g = s.gauge("level", "Level.", GaugeMode::kLiveSum);
  Gauge other = s.gauge("other", "Other.", GaugeMode::kLiveSum);
  {
    ParkedChild first([&] {
      g.set(7);
      other.set(1);
    });
    // The only record is taken: a second live process's update is dropped and counted.
    pid_t crowded = testing::fork_child([&] {
      g.set(100);
      return true;
    });
    REQUIRE(testing::wait_child(crowded) == 0);
    std::string text = testing::scrape(name.str());
    CHECK(testing::sample(text, "level") == 7.0);
    CHECK(testing::sample(text, "shmetrics_record_unavailable_total{role=\"test\"}") == 1.0);
  }
  ParkedChild second([&] { g.set(2); });
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "level") == 2.0);
  CHECK_FALSE(testing::sample(text, "other"));  // the dead process's value did not carry over
}

TEST_CASE("info_set_replaces_this_process_value") {
  ScopedName name("info-replace");
  Segment s = Segment::open(options(name));
  Info map = s.info("rbac_map_info", "RBAC map version.", {"etag"});
  map.set({"v1"});
  map.set({"v2"});
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "rbac_map_info{etag=\"v2\"}") == 1.0);
  CHECK_FALSE(testing::sample(text, "rbac_map_info{etag=\"v1\"}"));
  map.clear();
  CHECK(testing::count_lines(testing::scrape(name.str()), "rbac_map_info{") == 0);
}

TEST_CASE("info_shows_each_distinct_value_of_live_processes") {
  ScopedName name("info-rollout");
  Segment s = Segment::open(options(name));
  Info map = s.info("rbac_map_info", "RBAC map version.", {"etag"});
  ParkedChild old_a([&] { map.set({"old"}); });
  ParkedChild old_b([&] { map.set({"old"}); });
  ParkedChild fresh([&] { map.set({"new"}); });
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "rbac_map_info{etag=\"old\"}") == 1.0);  // once, though two hold it
  CHECK(testing::sample(text, "rbac_map_info{etag=\"new\"}") == 1.0);
  CHECK(testing::count_lines(text, "rbac_map_info{") == 2);
  old_a.kill();
  old_b.kill();
  text = testing::scrape(name.str());
  CHECK(testing::count_lines(text, "rbac_map_info{") == 1);
  CHECK(testing::sample(text, "rbac_map_info{etag=\"new\"}") == 1.0);
}

TEST_CASE("an_info_value_too_long_is_refused_counted_and_the_old_one_cleared") {
  ScopedName name("info-long");
  Segment s = Segment::open(options(name));
  Info map = s.info("rbac_map_info", "RBAC map version.", {"etag"});
  map.set({"short"});
  map.set({std::string(200, 'x')});  // info_value_bytes is 96
  std::string text = testing::scrape(name.str());
  CHECK(testing::count_lines(text, "rbac_map_info{") == 0);
  CHECK(testing::sample(text, "shmetrics_info_values_refused_total{role=\"test\"}") == 1.0);

  // At the edge: a value encodes as its 4-byte length and its bytes, so 92
  // bytes fill the 96 exactly (kept) and 93 are one too many (refused).
  map.set({std::string(92, 'e')});
  text = testing::scrape(name.str());
  CHECK(testing::count_lines(text, "rbac_map_info{etag=\"" + std::string(92, 'e') + "\"} 1") == 1);
  map.set({std::string(93, 'e')});
  text = testing::scrape(name.str());
  CHECK(testing::count_lines(text, "rbac_map_info{") == 0);
  CHECK(testing::sample(text, "shmetrics_info_values_refused_total{role=\"test\"}") == 2.0);

  map.set({"ok"});
  map.set({"bad \xff"});  // not UTF-8: refused, counted, cleared
  text = testing::scrape(name.str());
  CHECK(testing::count_lines(text, "rbac_map_info{") == 0);
  CHECK(testing::sample(text, "shmetrics_invalid_updates_total{role=\"test\"}") == 1.0);
}

TEST_CASE("label_values_and_help_are_escaped_in_the_exposition") {
  ScopedName name("escape");
  Segment s = Segment::open(options(name));
  s.counter_family("esc_total", "Help with \\ and\nnewline and \"quotes\".", {"v"})
      .labels({"a\"b\\c\nd"})
      .inc();
  std::string text = testing::scrape(name.str());
  CHECK_THAT(text, Catch::Contains("# HELP esc_total Help with \\\\ and\\nnewline and \"quotes\".\n"));
  CHECK(testing::sample(text, "esc_total{v=\"a\\\"b\\\\c\\nd\"}") == 1.0);
}

TEST_CASE("gauge_values_render_in_shortest_round_trip_form") {
  ScopedName name("numbers");
  Segment s = Segment::open(options(name));
  s.gauge("tenth", "0.1.", GaugeMode::kLiveSum).set(0.1);
  s.gauge("big", "Big.", GaugeMode::kLiveSum).set(1e300);
  s.gauge("neg_inf", "-Inf.", GaugeMode::kLiveMax).set(-HUGE_VAL);
  s.gauge("pos_inf", "+Inf.", GaugeMode::kLiveMax).set(HUGE_VAL);
  std::string text = testing::scrape(name.str());
  CHECK_THAT(text, Catch::Contains("\ntenth 0.1\n") && Catch::Contains("\nbig 1e+300\n") &&
                       Catch::Contains("\nneg_inf -Inf\n") && Catch::Contains("\npos_inf +Inf\n"));
}

TEST_CASE("an_exporter_in_another_pid_namespace_sees_live_gauges") {
  ScopedName name("pidns");
  Segment s = Segment::open(options(name));
  Gauge g = s.gauge("level", "Level.", GaugeMode::kLiveSum);
  ParkedChild writer([&] { g.set(42); });
  int result[2];
  REQUIRE(::pipe(result) == 0);
  // A reader in a new pid namespace, like an exporter in a sidecar container:
  // F_GETLK reports the holder's pid there as 0.
  pid_t outer = testing::fork_child([&] {
    if (::unshare(CLONE_NEWPID) != 0) {
      std::perror("unshare(CLONE_NEWPID)");
      return false;
    }
    pid_t inner = testing::fork_child([&] {
      std::string text = testing::scrape(name.str());
      char seen = testing::sample(text, "level") == 42.0 ? 'y' : 'n';
      return ::write(result[1], &seen, 1) == 1;
    });
    return testing::wait_child(inner) == 0;
  });
  REQUIRE(testing::wait_child(outer) == 0);
  char seen = 0;
  REQUIRE(::read(result[0], &seen, 1) == 1);
  CHECK(seen == 'y');
  ::close(result[0]);
  ::close(result[1]);
}

TEST_CASE("sum_max_min_keep_dead_values_and_fold_them_exactly_once") {
  ScopedName name("dead-modes");
  Segment s = Segment::open(options(name, /*records=*/3));
  Gauge sum = s.gauge("jobs_done", "Jobs done.", GaugeMode::kSum);
  Gauge max = s.gauge("peak", "Peak.", GaugeMode::kMax);
  Gauge min = s.gauge("low", "Low.", GaugeMode::kMin);
  auto worker = [&](double v) {
    return [&, v] {
      sum.set(v);
      max.set(v);
      min.set(v);
    };
  };
  ParkedChild a(worker(1)), b(worker(5)), c(worker(3));
  b.kill();  // dead, its record not yet reused: still counted
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "jobs_done") == 9.0);
  CHECK(testing::sample(text, "peak") == 5.0);
  CHECK(testing::sample(text, "low") == 1.0);
  a.kill();
  // A newcomer takes over a dead record: its values are folded, not lost.
  ParkedChild d(worker(0.5));
  text = testing::scrape(name.str());
  CHECK(testing::sample(text, "jobs_done") == 9.5);
  CHECK(testing::sample(text, "peak") == 5.0);
  CHECK(testing::sample(text, "low") == 0.5);
  ParkedChild e(worker(2));  // takes over the other dead record
  text = testing::scrape(name.str());
  CHECK(testing::sample(text, "jobs_done") == 11.5);
  CHECK(testing::sample(text, "peak") == 5.0);
}

TEST_CASE("a_folder_killed_before_or_after_publishing_never_double_counts") {
  const char* point = GENERATE("fold.before_publish", "fold.after_publish");
  ScopedName name("fold-kill");
  Segment s = Segment::open(options(name, /*records=*/1));
  Gauge sum = s.gauge("total_items", "Items.", GaugeMode::kSum);
  REQUIRE(testing::wait_child(testing::fork_child([&] { sum.set(4); return true; })) == 0);
  CHECK(testing::sample(testing::scrape(name.str()), "total_items") == 4.0);  // dead, kept
  // The next claimer parks mid-fold and is killed there.
  int report[2];
  REQUIRE(::pipe(report) == 0);
  pid_t folder = testing::fork_child([&] {
    shm::set_park_point(point, report[1]);
    sum.set(100);
    return false;
  });
  char byte;
  REQUIRE(::read(report[0], &byte, 1) == 1);
  ::kill(folder, SIGKILL);
  testing::wait_child(folder);
  CHECK(testing::sample(testing::scrape(name.str()), "total_items") == 4.0);
  ParkedChild next([&] { sum.set(1); });
  CHECK(testing::sample(testing::scrape(name.str()), "total_items") == 5.0);
  ::close(report[0]);
  ::close(report[1]);
}

TEST_CASE("all_keeps_dead_pids_until_reused_and_never_shows_a_pid_twice") {
  ScopedName name("all-mode");
  Segment s = Segment::open(options(name, /*records=*/4));
  Gauge g = s.gauge("conns", "Connections.", GaugeMode::kAll);
  ParkedChild a([&] { g.set(1); }), b([&] { g.set(2); });
  pid_t dead_pid = b.pid();
  b.kill();
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "conns{pid=\"" + std::to_string(a.pid()) + "\"}") == 1.0);
  CHECK(testing::sample(text, "conns{pid=\"" + std::to_string(dead_pid) + "\"}") == 2.0);
  // Pretend the dead pid was reused by a live process: the dead one is dropped.
  auto m = shm::MappedSegment::open_or_create(name.str(), options(name, 4).capacities, 0600);
  for (std::uint32_t r = 0; r < 4; ++r) {
    auto* h = reinterpret_cast<shm::RecordHeader*>(m->base() + m->geometry().record_offset(r));
    if (h->owner_pid.load() == static_cast<std::uint32_t>(dead_pid))
      h->owner_pid.store(static_cast<std::uint32_t>(a.pid()));
  }
  text = testing::scrape(name.str());
  CHECK(testing::count_lines(text, "conns{") == 1);
  CHECK(testing::sample(text, "conns{pid=\"" + std::to_string(a.pid()) + "\"}") == 1.0);
}

TEST_CASE("mostrecent_shows_the_value_set_last_and_livemostrecent_only_live_ones") {
  ScopedName name("mostrecent");
  Segment s = Segment::open(options(name));
  Gauge any = s.gauge("config_version", "Config.", GaugeMode::kMostRecent);
  Gauge live = s.gauge("live_config_version", "Live config.", GaugeMode::kLiveMostRecent);
  ParkedChild first([&] {
    any.set(1);
    live.set(1);
  });
  ParkedChild second([&] {
    any.set(2);
    live.set(2);
  });
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "config_version") == 2.0);
  CHECK(testing::sample(text, "live_config_version") == 2.0);
  second.kill();
  text = testing::scrape(name.str());
  CHECK(testing::sample(text, "config_version") == 2.0);       // the dead one set it last
  CHECK(testing::sample(text, "live_config_version") == 1.0);  // among the living
  any.inc(10);  // this process, later still: 0 + 10
  CHECK(testing::sample(testing::scrape(name.str()), "config_version") == 10.0);
}

TEST_CASE("a_record_claimed_and_left_by_a_dead_process_while_another_looked_is_folded") {
  ScopedName name("claim-race");
  Segment s = Segment::open(options(name, /*records=*/1));
  Gauge sum = s.gauge("jobs", "Jobs.", GaugeMode::kSum);
  int report[2], resume[2];
  REQUIRE(::pipe(report) == 0);
  REQUIRE(::pipe(resume) == 0);
  // A saw the record free and stops just before locking it...
  pid_t a = testing::fork_child([&] {
    shm::set_park_point("claim_record.before_lock", report[1], resume[0]);
    sum.set(5);
    (void)!::write(report[1], "d", 1);
    for (;;) ::pause();
    return true;
  });
  char byte;
  REQUIRE(::read(report[0], &byte, 1) == 1);
  // ...while B claims it, sets a value and dies.
  REQUIRE(testing::wait_child(testing::fork_child([&] { sum.set(7); return true; })) == 0);
  CHECK(testing::sample(testing::scrape(name.str()), "jobs") == 7.0);
  REQUIRE(::write(resume[1], "r", 1) == 1);  // A goes on: it must fold B's value, not drop it
  REQUIRE(::read(report[0], &byte, 1) == 1);
  CHECK(testing::sample(testing::scrape(name.str()), "jobs") == 12.0);
  ::kill(a, SIGKILL);
  testing::wait_child(a);
  for (int fd : {report[0], report[1], resume[0], resume[1]}) ::close(fd);
}
