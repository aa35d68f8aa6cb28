// Chaos: 8 workers (some with several threads) increment counters and
// register new label sets while the test SIGKILLs random workers hundreds of
// times and scrapes between kills. Each worker thread announces a batch on a
// pipe before starting it and acknowledges it after, so the test knows how
// many increments can be in the segment:
//   acknowledged <= total <= acknowledged + announced-but-unacknowledged
// batches of killed workers, with nothing pending for workers that exited
// normally. Each thread also counts its batches into a series of its own
// (chaos_thread_total{thread="PID-T"}), which must hold exactly what it
// acknowledged when it exited normally, and between what it acknowledged and
// announced when it was killed: so one increment too many or too few in any
// series is caught, not lost in the slack of hundreds of kills. Every scrape
// must be whole and every counter non-decreasing.
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <map>
#include <random>
#include <set>
#include <sys/mman.h>
#include <thread>

using namespace shmetrics;
using testing::ScopedName;

namespace {

struct Message {
  std::uint32_t kind;  // 1 announce, 2 acknowledge
  std::uint32_t pid;
  std::uint32_t thread;  // the worker's thread: 0, 1, 2
  std::uint32_t unused = 0;
  std::uint64_t increments;
};
static_assert(sizeof(Message) <= PIPE_BUF);  // one write() is atomic

struct Accounts {
  std::uint64_t announced = 0;
  std::uint64_t acknowledged = 0;
};

constexpr int kWorkers = 8;
constexpr int kKills = 300;

// Per process, and per thread ("PID-T", its series' label value).
struct Ledger {
  std::map<std::uint32_t, Accounts> processes;
  std::map<std::string, Accounts> threads;
};

// Reads every message available now (or until EOF when `block`).
void drain(int fd, Ledger& ledger, bool block) {
  Message m;
  for (;;) {
    ssize_t n = ::read(fd, &m, sizeof m);
    if (n == static_cast<ssize_t>(sizeof m)) {
      Accounts& p = ledger.processes[m.pid];
      Accounts& t = ledger.threads[std::to_string(m.pid) + "-" + std::to_string(m.thread)];
      (m.kind == 1 ? p.announced : p.acknowledged) += m.increments;
      (m.kind == 1 ? t.announced : t.acknowledged) += m.increments;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && block) continue;
    return;  // EOF, or nothing more for now
  }
}

}  // namespace

TEST_CASE("chaos_sigkilled_workers_never_lose_or_double_count") {
  ScopedName name("chaos");
  SegmentOptions o;
  o.name = name.str();
  o.capacities.thread_slots = 32;
  o.capacities.process_records = 16;
  o.capacities.series = 2048;  // 40 label sets, and a series per worker thread: up to 3 per kill
  o.capacities.families = 8;
  o.capacities.string_bytes = 16384;
  Segment s = Segment::open(o);
  Counter total = s.counter("chaos_total", "Increments announced on the pipe.");
  CounterFamily labelled = s.counter_family("chaos_labelled_total", "Increments by label.", {"k"});
  CounterFamily per_thread = s.counter_family("chaos_thread_total", "Increments by worker thread.", {"thread"});

  int channel[2];
  REQUIRE(::pipe2(channel, O_CLOEXEC) == 0);
  auto* stop = static_cast<std::atomic<int>*>(
      ::mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  stop->store(0);

  auto start_worker = [&](int index, std::uint32_t seed) {
    return testing::fork_child([&, index, seed] {
      ::close(channel[0]);
      auto work = [&](std::uint32_t thread, std::uint32_t thread_seed) {
        auto send = [&](std::uint32_t kind, std::uint64_t n) {
          Message m{kind, static_cast<std::uint32_t>(::getpid()), thread, 0, n};
          return ::write(channel[1], &m, sizeof m) == static_cast<ssize_t>(sizeof m);
        };
        std::mt19937 rng(thread_seed);
        Counter own = per_thread.labels({std::to_string(::getpid()) + "-" + std::to_string(thread)});
        while (stop->load(std::memory_order_relaxed) == 0) {
          std::uint64_t n = 5'000 + rng() % 20'000;
          if (!send(1, n)) return;
          Counter mine = labelled.labels({std::to_string(rng() % 40)});  // new label sets over time
          for (std::uint64_t i = 0; i < n; ++i) {
            total.inc();
            if (i % 1024 == 0) mine.inc();
          }
          own.inc(n);  // the batch at once: this loop's cost stays what it was under TSan
          if (!send(2, n)) return;
        }
      };
      std::vector<std::thread> threads;
      for (std::uint32_t t = 1; t < 1 + static_cast<std::uint32_t>(index % 3); ++t)
        threads.emplace_back(work, t, seed * 7 + t);
      work(0, seed * 7);
      for (auto& t : threads) t.join();
      return true;
    });
  };

  std::map<pid_t, int> workers;  // pid -> index
  std::uint32_t seed = 1;
  for (int i = 0; i < kWorkers; ++i) workers[start_worker(i, seed++)] = i;
  ::fcntl(channel[0], F_SETFL, O_NONBLOCK);

  Ledger ledger;
  std::map<std::uint32_t, Accounts>& accounts = ledger.processes;
  std::vector<std::uint32_t> killed;
  std::map<std::string, double> last;  // series -> last scraped value
  int scrapes = 0;
  auto scrape_and_check = [&] {
    std::string text = testing::scrape(name.str());
    ++scrapes;
    INFO(text);
    REQUIRE(testing::sample(text, "shmetrics_segment_up{role=\"test\"}") == 1.0);
    REQUIRE(testing::sample(text, "shmetrics_untrusted_entries_dropped_total{role=\"test\",kind=\"series\"}") == 0.0);
    std::size_t at = 0;
    while ((at = text.find("\nchaos_", at)) != std::string::npos) {
      std::size_t space = text.find(' ', at + 1), end = text.find('\n', at + 1);
      std::string series = text.substr(at + 1, space - at - 1);
      double value = std::stod(text.substr(space + 1, end - space - 1));
      auto it = last.find(series);
      if (it != last.end() && value < it->second) FAIL(series << " went back from " << it->second << " to " << value);
      last[series] = value;
      at = end;
    }
  };

  std::mt19937 rng(20261127);
  for (int kill = 0; kill < kKills; ++kill) {
    drain(channel[0], ledger, false);
    scrape_and_check();
    auto victim = workers.begin();
    std::advance(victim, static_cast<long>(rng() % workers.size()));
    pid_t pid = victim->first;
    int index = victim->second;
    ::kill(pid, SIGKILL);
    REQUIRE(testing::wait_child(pid) == 128 + SIGKILL);
    killed.push_back(static_cast<std::uint32_t>(pid));
    workers.erase(victim);
    workers[start_worker(index, seed++)] = index;
    scrape_and_check();
  }

  // The survivors finish their batches and exit normally. The pipe is drained
  // meanwhile: a worker blocked writing to a full pipe would never exit.
  stop->store(1);
  ::close(channel[1]);
  std::map<pid_t, int> running = workers;
  while (!running.empty()) {
    drain(channel[0], ledger, false);
    for (auto it = running.begin(); it != running.end();) {
      int status = 0;
      pid_t done = ::waitpid(it->first, &status, WNOHANG);
      if (done == 0) {
        ++it;
        continue;
      }
      CHECK((done == it->first && WIFEXITED(status) && WEXITSTATUS(status) == 0));
      it = running.erase(it);
    }
    std::this_thread::yield();
  }
  ::fcntl(channel[0], F_SETFL, 0);
  drain(channel[0], ledger, true);
  ::close(channel[0]);
  scrape_and_check();

  std::uint64_t acknowledged = 0, pending_of_killed = 0;
  for (const auto& [pid, a] : accounts) acknowledged += a.acknowledged;
  for (std::uint32_t pid : killed) pending_of_killed += accounts[pid].announced - accounts[pid].acknowledged;
  for (const auto& [pid, index] : workers) {
    INFO("worker " << pid << " exited normally");
    CHECK(accounts[static_cast<std::uint32_t>(pid)].announced ==
          accounts[static_cast<std::uint32_t>(pid)].acknowledged);
  }
  double final_total = last.at("chaos_total");
  std::printf("chaos: %zu kills, %d scrapes, total %.0f, acknowledged %llu, pending of killed %llu\n",
              killed.size(), scrapes, final_total, static_cast<unsigned long long>(acknowledged),
              static_cast<unsigned long long>(pending_of_killed));
  INFO("acknowledged " << acknowledged << ", pending of killed " << pending_of_killed << ", scrapes " << scrapes);
  CHECK(final_total >= static_cast<double>(acknowledged));
  CHECK(final_total <= static_cast<double>(acknowledged + pending_of_killed));
  // Each thread's own series: exact for threads that exited normally, within
  // its own last batch for killed ones.
  std::set<std::uint32_t> was_killed(killed.begin(), killed.end());
  std::size_t exact = 0, bounded = 0;
  for (const auto& [thread, a] : ledger.threads) {
    const std::string series = "chaos_thread_total{thread=\"" + thread + "\"}";
    const auto it = last.find(series);
    INFO(series << ": acknowledged " << a.acknowledged << ", announced " << a.announced);
    REQUIRE(it != last.end());
    if (was_killed.contains(static_cast<std::uint32_t>(std::stoul(thread)))) {
      CHECK(it->second >= static_cast<double>(a.acknowledged));
      CHECK(it->second <= static_cast<double>(a.announced));
      ++bounded;
    } else {
      CHECK(it->second == static_cast<double>(a.acknowledged));
      ++exact;
    }
  }
  CHECK(exact >= kWorkers);  // every survivor's threads, exactly
  CHECK(bounded >= kKills);
  CHECK(killed.size() == kKills);
  ::munmap(stop, sizeof(std::atomic<int>));
}
