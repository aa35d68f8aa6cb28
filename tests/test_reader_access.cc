// A process that can only read a segment cannot disturb its writers.
//
// The bound: a reader running as another user, with the group read access an
// exporter needs (segment mode 0640), that read-locks every byte of the file
// and tries every operation on the ownership semaphores, changes nothing for
// writers: each takes a thread slot and a process record of its own (no
// overflow, no dropped gauge or info update), and the reader, as that other
// user, still tells live processes from dead ones.
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/sem.h>
#include <thread>
#include <unistd.h>

using namespace shmetrics;

namespace {

constexpr uid_t kNobody = 65534;
constexpr int kSemaphores = 8;  // thread_slots + process_records below

// Becomes user nobody, keeping group 0 (the segment's group) as a
// supplementary group: read access to the segment and its semaphores, nothing
// else. Tests run as root.
bool become_group_reader() {
  const gid_t groups[] = {0};
  return ::setgroups(1, groups) == 0 && ::setgid(kNobody) == 0 && ::setuid(kNobody) == 0;
}

// A segment directory of the test's own, created by the writer with group
// search (the segment is 0640); removed at the end.
struct GroupDirectory {
  std::string path = "/dev/shm/test-reader-access-" + std::to_string(::getpid());
  ~GroupDirectory() {
    shm::remove_segment(path + "/segment");
    ::rmdir(path.c_str());
  }
};

}  // namespace

TEST_CASE("a_reader_with_read_access_cannot_take_writers_slots_or_records") {
  REQUIRE(::geteuid() == 0);  // the reader must run as another user
  GroupDirectory dir;
  const std::string path = dir.path + "/segment";
  SegmentOptions o = testing::small_options(path, /*slots=*/4, /*records=*/4);
  o.mode = 0640;
  Segment s = Segment::open(o);
  Counter served = s.counter("served_total", "Served.");
  Gauge busy = s.gauge("busy", "Busy.", GaugeMode::kLiveSum, ValueType::kInteger);
  Info version = s.info("worker_info", "Worker.", {"id"});
  const int set = shm::MappedSegment::open_read_only(path)->semaphore_set();


  // The attacker reports what it could do, one byte per attempt: 'y' when
  // the kernel let it, 'n' when refused.
  int report[2];
  REQUIRE(::pipe(report) == 0);
  testing::ParkedChild attacker([&] {
    std::string seen;
    auto note = [&](bool allowed) { seen += allowed ? 'y' : 'n'; };
    if (!become_group_reader()) throw std::runtime_error("cannot become a group reader");
    int ro = ::open(path.c_str(), O_RDONLY);
    note(ro >= 0);                                            // [0] reads the segment: y
    note(::open(path.c_str(), O_RDWR) >= 0);         // [1] writes it: n
    struct flock everything {};
    everything.l_type = F_RDLCK;
    everything.l_whence = SEEK_SET;  // l_start 0, l_len 0: every byte, past the end too
    note(::fcntl(ro, F_SETLK, &everything) == 0);             // [2] read-locks every byte: y
    bool took = false, set_value = false, removed = false;
    for (int n = 0; n < kSemaphores; ++n) {
      struct sembuf up {static_cast<unsigned short>(n), 1, IPC_NOWAIT | SEM_UNDO};
      took = took || ::semop(set, &up, 1) == 0;
      union { int val; } arg{1};
      set_value = set_value || ::semctl(set, n, SETVAL, arg) == 0;
    }
    removed = ::semctl(set, 0, IPC_RMID) == 0;
    note(took);                                               // [3] takes a semaphore: n
    note(set_value);                                          // [4] sets one: n
    note(removed);                                            // [5] removes the set: n
    note(::semctl(set, 0, GETVAL) >= 0);                      // [6] reads them: y
    // A waiter for zero on every semaphore, asleep while writers hold them.
    std::thread([set] {
      struct sembuf zero[kSemaphores];
      for (int n = 0; n < kSemaphores; ++n) zero[n] = {static_cast<unsigned short>(n), 0, 0};
      ::semop(set, zero, kSemaphores);
    }).detach();
    if (::write(report[1], seen.data(), seen.size()) != static_cast<ssize_t>(seen.size()))
      throw std::runtime_error("report");
  });
  char seen[7] = {};
  REQUIRE(::read(report[0], seen, sizeof seen) == sizeof seen);
  CHECK(std::string(seen, sizeof seen) == "ynynnny");

  // Four writers, started together while the attacker holds its locks.
  testing::ForkBarrier start;
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  std::vector<pid_t> writers;
  for (int w = 0; w < 4; ++w)
    writers.push_back(testing::fork_child([&, w] {
      start.wait();
      for (int i = 0; i < 1000; ++i) served.inc();
      busy.inc();
      version.set({std::to_string(w)});
      char byte = 1;
      if (::write(ready[1], &byte, 1) != 1) return false;
      for (;;) ::pause();
    }));
  start.release();
  for (int w = 0; w < 4; ++w) {
    char byte;
    REQUIRE(::read(ready[0], &byte, 1) == 1);
  }
  std::string text = testing::scrape(path);
  CHECK(testing::sample(text, "served_total") == 4000.0);
  CHECK(testing::sample(text, "busy") == 4.0);
  CHECK(testing::count_lines(text, "worker_info{") == 4);
  CHECK(testing::sample(text, "shmetrics_overflow_writers_total{role=\"test\"}") == 0.0);
  CHECK(testing::sample(text, "shmetrics_record_unavailable_total{role=\"test\"}") == 0.0);
  CHECK(testing::claimed_slots(path) == 4);

  // An exporter running as the other user tells live processes from dead ones.
  auto busy_as_reader = [&] {
    int result[2];
    REQUIRE(::pipe(result) == 0);
    pid_t reader = testing::fork_child([&] {
      if (!become_group_reader()) return false;
      exporter::RoleSource source("test", path);
      source.accept_foreign_owner(true);
      const std::string text = source.scrape();
      std::optional<double> v = testing::sample(text, "busy");
      // -2: the role was down (no liveness to speak of), -1: no live value.
      double out = testing::sample(text, "shmetrics_segment_up{role=\"test\"}") != 1.0 ? -2.0
                   : v                                                            ? *v
                                                                                  : -1.0;
      return ::write(result[1], &out, sizeof out) == sizeof out;
    });
    REQUIRE(testing::wait_child(reader) == 0);
    double v = 0;
    REQUIRE(::read(result[0], &v, sizeof v) == sizeof v);
    ::close(result[0]);
    ::close(result[1]);
    return v;
  };
  CHECK(busy_as_reader() == 4.0);
  for (pid_t pid : writers) {
    ::kill(pid, SIGKILL);
    testing::wait_child(pid);
  }
  CHECK(busy_as_reader() == -1.0);  // every writer dead: no live value to show
  CHECK(testing::sample(testing::scrape(path), "served_total") == 4000.0);
  ::close(report[0]);
  ::close(report[1]);
  ::close(ready[0]);
  ::close(ready[1]);
}

// A writer in a container (a pid namespace below the exporter's) names
// itself by its pid there; the exporter on the host sees its semaphore taken
// by another number, and must still find it live (NSpid), then dead once it
// is killed.
TEST_CASE("an_exporter_on_the_host_sees_live_gauges_of_writers_in_a_child_pid_namespace") {
  testing::ScopedName name("child-pidns");
  Segment s = Segment::open(testing::small_options(name.str(), /*slots=*/4, /*records=*/4));
  Gauge level = s.gauge("level", "Level.", GaugeMode::kLiveSum, ValueType::kInteger);
  int ready[2], pid_pipe[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(pid_pipe) == 0);
  pid_t outer = testing::fork_child([&] {
    if (::unshare(CLONE_NEWPID) != 0) return false;
    pid_t inner = testing::fork_child([&] {  // pid 1 of the new namespace
      if (::getpid() != 1) return false;
      level.set(42);
      char byte = 1;
      if (::write(ready[1], &byte, 1) != 1) return false;
      for (;;) ::pause();
    });
    if (::write(pid_pipe[1], &inner, sizeof inner) != sizeof inner) return false;
    testing::wait_child(inner);
    return true;
  });
  pid_t inner = 0;
  REQUIRE(::read(pid_pipe[0], &inner, sizeof inner) == sizeof inner);
  char byte;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  exporter::RoleSource source("test", name.str());
  CHECK(testing::sample(source.scrape(), "level") == 42.0);
  ::kill(inner, SIGKILL);
  testing::wait_child(outer);
  CHECK_FALSE(testing::sample(source.scrape(), "level"));
  for (int fd : {ready[0], ready[1], pid_pipe[0], pid_pipe[1]}) ::close(fd);
}
