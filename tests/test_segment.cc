// The segment file: publication, validation, mode.
#include "segment_reader.h"
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <sched.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

using namespace shmetrics;
using testing::ScopedName;

namespace {

shm::Capacities small_capacities() {
  shm::Capacities c;
  c.thread_slots = 4;
  c.process_records = 4;
  c.families = 16;
  c.series = 64;
  c.string_bytes = 4096;
  c.info_families = 2;
  c.info_value_bytes = 128;
  return c;
}

// Overwrites bytes of a segment file in place, as corruption would.
void poke(const std::string& name, std::size_t offset, const void* bytes, std::size_t n) {
  int fd = ::open((name).c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, bytes, n, static_cast<off_t>(offset)) == static_cast<ssize_t>(n));
  ::close(fd);
}

std::string open_error(const std::string& name) {
  try {
    shm::MappedSegment::open_read_only(name);
  } catch (const shm::SegmentError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("concurrent_creators_publish_exactly_one_segment") {
  ScopedName name("creators");
  testing::ForkBarrier barrier;
  std::vector<pid_t> children;
  for (int i = 0; i < 8; ++i)
    children.push_back(testing::fork_child([&] {
      barrier.wait();
      SegmentOptions o;
      o.name = name.str();
      o.capacities = small_capacities();
      Segment s = Segment::open(o);
      s.counter("created_total", "Processes that opened the segment.").inc();
      return true;
    }));
  barrier.release();
  for (pid_t pid : children) REQUIRE(testing::wait_child(pid) == 0);
  // Had two been published, some increments would be in a lost one.
  std::string text = testing::scrape(name.str());
  CHECK(testing::sample(text, "created_total") == 8.0);
}

TEST_CASE("opening_with_other_capacities_fails_naming_both") {
  ScopedName name("caps");
  shm::Capacities mine = small_capacities();
  auto created = shm::MappedSegment::open_or_create(name.str(), mine, 0600);
  shm::Capacities other = mine;
  other.series = 128;
  std::string message;
  try {
    shm::MappedSegment::open_or_create(name.str(), other, 0600);
  } catch (const shm::SegmentError& e) {
    message = e.what();
  }
  CHECK_THAT(message, Catch::Contains(shm::describe(mine)) && Catch::Contains(shm::describe(other)));
  CHECK(message.find('\n') == std::string::npos);
}

TEST_CASE("opening_another_layout_version_fails_naming_both") {
  ScopedName name("version");
  shm::MappedSegment::open_or_create(name.str(), small_capacities(), 0600);
  std::uint32_t version = 999;
  poke(name.str(), offsetof(shm::Header, layout_version), &version, sizeof version);
  std::string message = open_error(name.str());
  CHECK_THAT(message, Catch::Contains("layout version 999") &&
                          Catch::Contains("layout version " + std::to_string(shm::kLayoutVersion)));
  CHECK_THROWS_AS(shm::MappedSegment::open_or_create(name.str(), small_capacities(), 0600),
                  shm::SegmentError);
}

TEST_CASE("bad_headers_are_refused_with_a_reason") {
  ScopedName name("header");
  shm::MappedSegment::open_or_create(name.str(), small_capacities(), 0600);

  SECTION("bad magic") {
    std::uint64_t junk = 0x1234;
    poke(name.str(), offsetof(shm::Header, magic), &junk, sizeof junk);
    CHECK_THAT(open_error(name.str()), Catch::Contains("bad magic"));
  }
  SECTION("capacities that disagree with the recorded offsets") {
    std::uint32_t series = 65;
    poke(name.str(), offsetof(shm::Header, capacities) + offsetof(shm::Capacities, series), &series,
         sizeof series);
    CHECK_THAT(open_error(name.str()), Catch::Contains("do not match"));
  }
  SECTION("capacities out of range") {
    std::uint32_t zero = 0;
    poke(name.str(), offsetof(shm::Header, capacities), &zero, sizeof zero);
    CHECK_THAT(open_error(name.str()), Catch::Contains("out of range"));
  }
  SECTION("a file shorter than its capacities need") {
    REQUIRE(::truncate((name.str()).c_str(), 4096) == 0);
    CHECK_THAT(open_error(name.str()), Catch::Contains("capacities need"));
  }
  SECTION("a file shorter than a header") {
    REQUIRE(::truncate((name.str()).c_str(), 10) == 0);
    CHECK_THAT(open_error(name.str()), Catch::Contains("smaller than a header"));
  }
}

TEST_CASE("missing_segment_is_reported_as_missing") {
  ScopedName name("missing");
  try {
    shm::MappedSegment::open_read_only(name.str());
    FAIL("opened a segment that does not exist");
  } catch (const shm::SegmentError& e) {
    CHECK(e.missing());
    CHECK_THAT(e.what(), Catch::Contains("does not exist"));
  }
}

TEST_CASE("segment_mode_is_set_despite_the_umask") {
  ScopedName name("mode");
  mode_t old = ::umask(0077);
  shm::MappedSegment::open_or_create(name.str(), small_capacities(), 0640);
  ::umask(old);
  struct stat st {};
  REQUIRE(::stat((name.str()).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);

  ScopedName plain("mode-default");
  SegmentOptions o;
  o.name = plain.str();
  Segment::open(o);
  REQUIRE(::stat((plain.str()).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("segment_names_carry_the_instance_prefix_and_are_validated") {
  CHECK(shm::segment_name("blue", "ops") == "blue.ops");
  CHECK_THROWS_WITH(shm::segment_name("a/b", "ops"), Catch::Contains("instance \"a/b\" is invalid"));
  CHECK_THROWS_WITH(shm::segment_name("x", ""), Catch::Contains("role \"\" is invalid"));
  CHECK_THAT(shm::check_segment_name("../etc"), Catch::Contains("is invalid"));
}

TEST_CASE("capacities_too_large_for_memory_fail_at_creation") {
  ScopedName name("huge");
  shm::Capacities c = small_capacities();
  c.series = shm::kMaxSeries;
  c.thread_slots = 4096;
  CHECK_THROWS_WITH(shm::MappedSegment::open_or_create(name.str(), c, 0600),
                    Catch::Contains("out of range") || Catch::Contains("cannot reserve"));
  CHECK(shm::current_inode(name.str()) == 0);  // nothing half-made was published
}

TEST_CASE("reader_rejects_an_image_that_is_not_a_segment") {
  std::vector<std::uint8_t> junk(4096, 0xab);
  exporter::SegmentReader reader(junk.data(), junk.size());
  CHECK_THAT(reader.error(), Catch::Contains("bad magic"));
  exporter::SegmentReader tiny(junk.data(), 16);
  CHECK_THAT(tiny.error(), Catch::Contains("smaller than a header"));
}

TEST_CASE("a_fifo_or_symlink_under_the_segment_name_is_refused_without_blocking") {
  ScopedName name("fifo");
  REQUIRE(::mkfifo((name.str()).c_str(), 0600) == 0);
  CHECK_THAT(open_error(name.str()), Catch::Contains("not a regular file"));
  CHECK_THROWS_WITH(shm::MappedSegment::open_or_create(name.str(), small_capacities(), 0600),
                    Catch::Contains("not a regular file"));
  ScopedName link("symlink");
  REQUIRE(::symlink((name.str()).c_str(), (link.str()).c_str()) == 0);
  CHECK_THAT(open_error(link.str()), Catch::Contains("symbolic link"));
}

TEST_CASE("writers_refuse_a_segment_others_may_write_and_modes_that_allow_it") {
  ScopedName name("loose-mode");
  shm::MappedSegment::open_or_create(name.str(), small_capacities(), 0600);
  REQUIRE(::chmod((name.str()).c_str(), 0666) == 0);
  CHECK_THROWS_WITH(shm::MappedSegment::open_or_create(name.str(), small_capacities(), 0600),
                    Catch::Contains("writable by group or others (mode 0666)"));
  SegmentOptions o;
  o.name = name.str() + "-new";
  o.mode = 0660;
  CHECK_THROWS_WITH(Segment::open(o), Catch::Contains("mode 0660 is invalid"));
}

TEST_CASE("recreating_a_segment_refuses_while_live_processes_hold_it_and_names_them") {
  ScopedName name("recreate");
  SegmentOptions o;
  o.name = name.str();
  o.capacities = small_capacities();
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  pid_t holder = testing::fork_child([&] {
    Segment::open(o).counter("kept_total", "Kept.").inc(5);
    (void)!::write(ready[1], "x", 1);
    for (;;) ::pause();
    return true;
  });
  char byte;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  CHECK_THROWS_WITH(Segment::recreate(o), Catch::Contains("in use by live processes " + std::to_string(holder)));
  CHECK(testing::sample(testing::scrape(name.str()), "kept_total") == 5.0);  // untouched
  ::kill(holder, SIGKILL);
  testing::wait_child(holder);
  ino_t before = shm::current_inode(name.str());
  Segment::recreate(o);
  CHECK(shm::current_inode(name.str()) != before);
  CHECK_FALSE(testing::sample(testing::scrape(name.str()), "kept_total"));  // a fresh, empty segment
  // This process having it open counts as a holder too, before any write
  // (it holds no claim yet, but its handles would write the old segment)...
  Counter mine = Segment::open(o).counter("mine_total", "Mine.");
  CHECK_THROWS_WITH(Segment::recreate(o), Catch::Contains("(this process)"));
  // ...and after one.
  mine.inc();
  CHECK_THROWS_WITH(Segment::recreate(o), Catch::Contains("(this process)"));
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_CASE("the_exporter_refuses_a_segment_owned_by_another_user_unless_told") {
  // Created by another user (tests run as root) in its own directory: the
  // file and its semaphores are nobody's.
  const std::string nobody_dir = "/dev/shm/shmetrics-65534";
  struct Removed {
    std::string path;
    ~Removed() { shm::remove_segment(path); }
  } name{nobody_dir + "/test-" + std::to_string(::getpid()) + "-foreign"};
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            if (::setgid(65534) != 0 || ::setuid(65534) != 0) return false;
            shm::MappedSegment::open_or_create(name.path, small_capacities(), 0600);
            return true;
          })) == 0);
  exporter::RoleSource strict("test", name.path);
  std::string text = strict.scrape();
  CHECK(testing::sample(text, "shmetrics_segment_up{role=\"test\"}") == 0.0);
  exporter::RoleSource trusting("test", name.path);
  trusting.accept_foreign_owner(true);
  CHECK(testing::sample(trusting.scrape(), "shmetrics_segment_up{role=\"test\"}") == 1.0);
  // Told the writers' user, it serves theirs and nobody else's.
  exporter::RoleSource owned_by_nobody("test", name.path);
  owned_by_nobody.expect_owner(65534);
  CHECK(testing::sample(owned_by_nobody.scrape(), "shmetrics_segment_up{role=\"test\"}") == 1.0);
  exporter::RoleSource owned_by_another("test", name.path);
  owned_by_another.expect_owner(1000);
  owned_by_another.accept_foreign_owner(true);  // an expected owner wins
  CHECK(testing::sample(owned_by_another.scrape(), "shmetrics_segment_up{role=\"test\"}") == 0.0);
  // Writers never write into it.
  CHECK_THROWS_WITH(shm::MappedSegment::open_or_create(name.path, small_capacities(), 0600),
                    Catch::Contains("owned by uid 65534"));
}

TEST_CASE("a_segment_whose_semaphores_live_in_another_ipc_namespace_is_refused") {
  // Set ids are per IPC namespace: the id in a header made in another one
  // would name an unrelated set here (or none).
  ScopedName name("other-ipcns");
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            if (::unshare(CLONE_NEWIPC) != 0) return false;
            shm::MappedSegment::open_or_create(name.str(), small_capacities(), 0600);
            return true;
          })) == 0);
  CHECK_THAT(open_error(name.str()), Catch::Contains("another IPC namespace"));
  CHECK_THROWS_WITH(shm::MappedSegment::open_or_create(name.str(), small_capacities(), 0600),
                    Catch::Contains("another IPC namespace"));
}

TEST_CASE("a_header_naming_another_segments_semaphore_set_is_refused") {
  // Set ids are reused (after a set is removed, or in a new IPC namespace
  // whose inode number came back): an id alone could name another segment's
  // set, of the same owner and size, and two segments would share claims.
  ScopedName a("token-a"), b("token-b");
  shm::MappedSegment::open_or_create(a.str(), small_capacities(), 0600);
  const int b_set = shm::MappedSegment::open_or_create(b.str(), small_capacities(), 0600)->semaphore_set();
  poke(a.str(), offsetof(shm::Header, semaphore_set), &b_set, sizeof b_set);
  CHECK_THAT(open_error(a.str()), Catch::Contains("is not this segment's") && Catch::Contains("token"));
  CHECK_THROWS_WITH(shm::MappedSegment::open_or_create(a.str(), small_capacities(), 0600),
                    Catch::Contains("is not this segment's"));
  // Removing the forged segment leaves the other's set alone.
  shm::remove_segment(a.str());
  CHECK(shm::MappedSegment::open_read_only(b.str())->check_semaphores().empty());
}
