// Segment directories: nobody else can plant, squat or redirect a segment.
//
// The bound: another user can create files only in world-writable
// directories. In one (a sticky 1777 directory, as /dev/shm is) it may plant
// a file, a symlink, a FIFO or a directory of its own under the name of a
// segment directory; writers and readers then refuse that directory with one
// line saying why — never write through it, follow it or block on it — and
// inside a directory the writers made, it can plant nothing at all.
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <sys/sem.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace shmetrics;

namespace {

constexpr uid_t kNobody = 65534;

// A world-writable sticky directory like /dev/shm, removed with what is in it.
struct FakeShm {
  std::string path;
  FakeShm() {
    char templ[] = "/dev/shm/test-squat-XXXXXX";
    if (::mkdtemp(templ) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = templ;
    ::chmod(path.c_str(), 01777);
  }
  ~FakeShm() {
    std::string cmd = "rm -rf '" + path + "'";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", path.c_str());
  }
};

// Runs `plant` as user nobody in a child; true when it succeeded.
bool as_nobody(const std::function<bool()>& plant) {
  return testing::wait_child(testing::fork_child([&] {
           if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) return false;
           return plant();
         })) == 0;
}

std::string open_error(const std::string& directory) {
  try {
    Segment::open(testing::small_options(directory + "/default.ops", /*slots=*/2, /*records=*/2));
  } catch (const shm::SegmentError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a_directory_name_squatted_by_another_user_is_refused_with_a_reason") {
  REQUIRE(::geteuid() == 0);  // the squatter must be another user
  FakeShm shm;
  const std::string dir = shm.path + "/shmetrics-0";  // the default name of uid 0's directory
  struct Kind {
    const char* what;
    std::function<bool()> plant;
    const char* reason;
  };
  const std::string elsewhere = shm.path + "/elsewhere";
  const Kind kinds[] = {
      {"a file", [&] { return ::close(::open(dir.c_str(), O_CREAT | O_WRONLY, 0644)) == 0; },
       "a file or symbolic link is in its place"},
      {"a symlink to a directory of the squatter's",
       [&] { return ::mkdir(elsewhere.c_str(), 0700) == 0 && ::symlink(elsewhere.c_str(), dir.c_str()) == 0; },
       "a file or symbolic link is in its place"},
      {"a FIFO", [&] { return ::mkfifo(dir.c_str(), 0666) == 0; }, "a file or symbolic link is in its place"},
      {"a directory of the squatter's", [&] { return ::mkdir(dir.c_str(), 0700) == 0; },
       "is owned by uid 65534"},
      {"a directory of the squatter's, open to all", [&] { return ::mkdir(dir.c_str(), 0777) == 0 && ::chmod(dir.c_str(), 0777) == 0; },
       "writable by group or others"},
  };
  for (const Kind& k : kinds) {
    INFO(k.what);
    std::string cmd = "rm -rf '" + dir + "' '" + elsewhere + "'";
    REQUIRE(std::system(cmd.c_str()) == 0);
    REQUIRE(as_nobody(k.plant));
    const std::string err = open_error(dir);
    CHECK_THAT(err, Catch::Contains(dir) && Catch::Contains(k.reason));
    CHECK_THAT(err, Catch::Contains(dir + " ") || Catch::Contains(dir + ":"));
    // Nothing was written through it.
    struct stat st {};
    CHECK(::stat((elsewhere + "/default.ops").c_str(), &st) != 0);
    // A reader refuses it as well, without blocking.
    CHECK_THROWS_WITH(shm::MappedSegment::open_read_only(dir + "/default.ops"), Catch::Contains(dir));
  }
  // A directory whose name claims another uid is refused even when a reader
  // is told to trust another owner.
  std::string cmd = "rm -rf '" + dir + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  const std::string claims_1000 = shm.path + "/shmetrics-1000";
  REQUIRE(as_nobody([&] { return ::mkdir(claims_1000.c_str(), 0700) == 0; }));
  CHECK_THROWS_WITH(shm::MappedSegment::open_read_only(claims_1000 + "/default.ops"),
                    Catch::Contains("is owned by uid 65534 but its name says uid 1000"));
  // A name of another form says nothing about its owner: served.
  const std::string named = shm.path + "/shmetrics-myapp";
  REQUIRE(::mkdir(named.c_str(), 0700) == 0);
  {
    SegmentOptions o;
    o.directory = named;
    o.role = "ops";
    Segment::open(o).counter("named_total", "N.").inc();
  }
  CHECK(shm::MappedSegment::open_read_only(named + "/default.ops") != nullptr);
}

TEST_CASE("another_user_can_plant_nothing_in_a_segment_directory_writers_made") {
  REQUIRE(::geteuid() == 0);
  FakeShm shm;
  const std::string dir = shm.path + "/shmetrics-0";
  CHECK(open_error(dir).empty());  // the writer made the directory and its segment
  struct stat st {};
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  CHECK(st.st_uid == 0);
  const std::string segment = dir + "/default.ops";
  const std::string planted = dir + "/default.judge";
  CHECK_FALSE(as_nobody([&] { return ::open(planted.c_str(), O_CREAT | O_WRONLY, 0644) >= 0; }));
  CHECK_FALSE(as_nobody([&] { return ::symlink("/etc/passwd", planted.c_str()) == 0; }));
  CHECK_FALSE(as_nobody([&] { return ::mkfifo(planted.c_str(), 0666) == 0; }));
  CHECK_FALSE(as_nobody([&] { return ::unlink(segment.c_str()) == 0; }));
  CHECK(::stat(planted.c_str(), &st) != 0);
  shm::remove_segment(segment);
}

TEST_CASE("a_group_readable_segment_gets_a_directory_its_group_can_search_and_nothing_more") {
  FakeShm shm;
  const std::string dir = shm.path + "/app";
  SegmentOptions o = testing::small_options("x.ops", /*slots=*/2, /*records=*/2);
  o.directory = dir;
  o.mode = 0640;
  ::umask(077);  // a strict umask must not strip what the mode asks for
  Segment s = Segment::open(o);
  ::umask(022);
  struct stat st {};
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0710);
  REQUIRE(::stat(s.path().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  CHECK(s.path() == dir + "/x.ops");
  shm::remove_segment(s.path());
}

TEST_CASE("segment_paths_come_from_the_options_the_environment_or_the_uid") {
  ::unsetenv("SHMETRICS_SEGMENT_DIR");
  CHECK(shm::default_segment_directory() == "/dev/shm/shmetrics-" + std::to_string(::geteuid()));
  ::setenv("SHMETRICS_SEGMENT_DIR", "/run/myapp", 1);
  CHECK(shm::default_segment_directory() == "/run/myapp");
  CHECK(shm::segment_path("", "default.ops") == "/run/myapp/default.ops");
  ::setenv("SHMETRICS_SEGMENT_DIR", "relative/dir", 1);
  CHECK_THROWS_WITH(shm::segment_path("", "default.ops"),
                    Catch::Contains("expected an absolute path") && Catch::Contains("SHMETRICS_SEGMENT_DIR"));
  ::unsetenv("SHMETRICS_SEGMENT_DIR");
  CHECK(shm::segment_path("/a/b/", "c.ops") == "/a/b/c.ops");
  CHECK_THROWS_WITH(shm::segment_path("/a", "../c"), Catch::Contains("is invalid"));
  // A directory ending in . or .. could never be opened: refused at once.
  for (const char* dir : {"/tmp/x/seg/.", "/tmp/x/seg/..", "/tmp/x/seg/./", "/.."})
    CHECK_THROWS_WITH(shm::segment_path(dir, "c.ops"), Catch::Contains("expected a path that does not end in . or .."));
  CHECK(shm::segment_path("/tmp/x/.seg", "c.ops") == "/tmp/x/.seg/c.ops");
  SegmentOptions o;
  o.role = "ops";
  o.name = "/dev/shm/x/y.ops";
  o.directory = "/dev/shm/x";
  CHECK_THROWS_WITH(Segment::open(o), Catch::Contains("give one of them"));
}

TEST_CASE("a_segment_directory_is_not_created_under_a_parent_another_user_chose") {
  REQUIRE(::geteuid() == 0);
  FakeShm shm;
  const std::string elsewhere = shm.path + "/elsewhere", link = shm.path + "/link";
  REQUIRE(as_nobody([&] { return ::mkdir(elsewhere.c_str(), 0755) == 0 && ::symlink(elsewhere.c_str(), link.c_str()) == 0; }));
  CHECK_THAT(open_error(link + "/segs"), Catch::Contains("refusing to create segment directory " + link + "/segs") &&
                                             Catch::Contains("belongs to uid 65534"));
  struct stat st {};
  CHECK(::stat((elsewhere + "/segs").c_str(), &st) != 0);  // nothing made where the other user chose
}

TEST_CASE("the_semaphores_follow_the_segment_files_mode_and_group") {
  FakeShm shm;
  const std::string path = shm.path + "/app/x.ops";
  const shm::Capacities c = testing::small_options(path, /*slots=*/2, /*records=*/2).capacities;
  auto set_mode = [](int set) {
    struct semid_ds ds {};
    union {
      struct semid_ds* buf;
    } arg{&ds};
    return ::semctl(set, 0, IPC_STAT, arg) == 0 ? static_cast<int>(ds.sem_perm.mode & 0777) : -1;
  };
  const int set = shm::MappedSegment::open_or_create(path, c, 0600)->semaphore_set();
  CHECK(set_mode(set) == 0600);
  // An operator lets a group read the file: the next writer to open it lets
  // the group read the semaphores too (an exporter needs both).
  REQUIRE(::chmod(path.c_str(), 0640) == 0);
  shm::MappedSegment::open_or_create(path, c, 0600);
  CHECK(set_mode(set) == 0640);
  shm::remove_segment(path);
}
