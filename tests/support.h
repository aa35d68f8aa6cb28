// Helpers shared by the tests: unique segment names removed on exit, forked
// children started together at a barrier, and reading a segment the way the
// exporter does.
#pragma once

#include "role_source.h"

#include <shmetrics/clock.h>
#include <shmetrics/segment.h>

#include <shmetrics/shm/segment_file.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace shmetrics::testing {

// The path of a segment unique to this test run, in the default segment
// directory; the segment is removed when the object goes out of scope, also
// when the test fails.
class ScopedName {
 public:
  explicit ScopedName(const std::string& tag) {
    static std::atomic<int> counter{0};
    name_ = shm::segment_path(
        "", "test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + tag);
    shm::prepare_segment_directory(shm::default_segment_directory(), 0600);
    shm::remove_segment(name_);
  }
  ~ScopedName() { shm::remove_segment(name_); }
  const std::string& str() const { return name_; }

 private:
  std::string name_;
};

// Options of a small segment at `path` (a name in the default directory, or
// an absolute path): `slots` thread slots, `records` process records, 64
// series, 16 families, 8 KiB of strings, 4 info families of 96 bytes.
inline SegmentOptions small_options(const std::string& path, std::uint32_t slots, std::uint32_t records) {
  SegmentOptions o;
  o.name = path;
  o.capacities.thread_slots = slots;
  o.capacities.process_records = records;
  o.capacities.series = 64;
  o.capacities.families = 16;
  o.capacities.string_bytes = 8192;
  o.capacities.info_families = 4;
  o.capacities.info_value_bytes = 96;
  return o;
}

// Children block in wait() until the parent calls release(): they start
// together, so their writes overlap and races have a chance to show.
class ForkBarrier {
 public:
  ForkBarrier() {
    if (::pipe(fds_) != 0) std::perror("pipe");
  }
  ~ForkBarrier() {
    close_fd(fds_[0]);
    close_fd(fds_[1]);
  }
  void wait() {
    close_fd(fds_[1]);
    char c;
    while (::read(fds_[0], &c, 1) < 0 && errno == EINTR) {
    }
  }
  void release() { close_fd(fds_[1]); }

 private:
  static void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  int fds_[2] = {-1, -1};
};

// Forks a child that runs `body` and leaves with _exit: 0 when body returned
// true, 1 when it returned false or threw.
inline pid_t fork_child(const std::function<bool()>& body) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    bool ok = false;
    try {
      ok = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: %s\n", ::getpid(), e.what());
    } catch (...) {
    }
    std::fflush(nullptr);
    ::_exit(ok ? 0 : 1);
  }
  return pid;
}

// Waits for `pid`; its exit status, or 128 + signal when killed.
inline int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// A clock word in shared memory: the test moves time for every process it
// forked, and scrapes at the same time, exactly and without sleeping.
class SharedClock final : public Clock {
 public:
  SharedClock() {
    void* p = ::mmap(nullptr, sizeof(std::atomic<std::uint64_t>), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    word_ = new (p) std::atomic<std::uint64_t>(1'000'000'000'000ULL);  // 1000 s
  }
  ~SharedClock() override { ::munmap(word_, sizeof *word_); }
  std::uint64_t now_ns() const noexcept override { return word_->load(); }
  void set_ns(std::uint64_t ns) { word_->store(ns); }
  void advance_ms(std::uint64_t ms) { word_->fetch_add(ms * 1'000'000ULL); }

 private:
  std::atomic<std::uint64_t>* word_;
};

// One exposition of the segment, read and rendered exactly as the exporter does.
inline std::string scrape(const std::string& segment) {
  exporter::RoleSource source("test", segment);
  return source.scrape();
}

// The same, with the readyz windows computed for the time `now_ns`.
inline std::string scrape_at(const std::string& segment, std::uint64_t now_ns) {
  exporter::RoleSource source("test", segment, [now_ns] { return now_ns; });
  return source.scrape();
}

// The value of the sample whose line starts with `series` (name plus labels
// exactly as rendered, e.g. `x_total` or `g{pid="12"}`), if present.
inline std::optional<double> sample(const std::string& text, const std::string& series) {
  std::size_t at = 0;
  while ((at = text.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') {
      std::size_t end = text.find('\n', at);
      std::string value = text.substr(at + series.size() + 1, end - at - series.size() - 1);
      if (value == "+Inf") return HUGE_VAL;
      if (value == "-Inf") return -HUGE_VAL;
      return std::stod(value);
    }
    at += series.size();
  }
  return std::nullopt;
}

// `text` without the samples of the exporter's metrics that every scrape
// moves (its scrape counts and durations, its process's and the writers' CPU
// and memory): to
// compare two scrapes' bodies.
inline std::string without_scrape_counts(const std::string& text) {
  std::string out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    end = end == std::string::npos ? text.size() : end + 1;
    const std::string_view line(text.data() + at, end - at);
    if (!line.starts_with("shmetrics_exporter_scrape") && !line.starts_with("process_") &&
        !line.starts_with("shmetrics_writer_process_"))
      out.append(line);
    at = end;
  }
  return out;
}

// How many lines of `text` start with `prefix`.
inline int count_lines(const std::string& text, const std::string& prefix) {
  int n = 0;
  std::size_t at = 0;
  while (at < text.size()) {
    if (text.compare(at, prefix.size(), prefix) == 0) ++n;
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return n;
}

// Slots of the segment ever claimed (claims > 0), from a read-only mapping.
inline std::uint32_t claimed_slots(const std::string& segment) {
  auto m = shm::MappedSegment::open_read_only(segment);
  std::uint32_t n = 0;
  for (std::uint32_t i = 0; i < m->capacities().thread_slots; ++i) {
    auto* h = reinterpret_cast<const shm::SlotHeader*>(m->base() + m->geometry().slot_offset(i));
    if (h->claims.load(std::memory_order_relaxed) > 0) ++n;
  }
  return n;
}

// A child process that runs `setup`, reports on a pipe, and waits to be killed.
class ParkedChild {
 public:
  explicit ParkedChild(const std::function<void()>& setup) {
    if (::pipe(fds_) != 0) throw std::runtime_error("pipe failed");
    pid_ = testing::fork_child([&] {
      setup();
      char byte = 1;
      (void)!::write(fds_[1], &byte, 1);
      for (;;) ::pause();
      return true;
    });
    char byte;
    if (::read(fds_[0], &byte, 1) != 1) throw std::runtime_error("parked child exited before reporting");
  }
  ~ParkedChild() {
    kill();
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    testing::wait_child(pid_);
    pid_ = 0;
  }
  pid_t pid() const { return pid_; }

 private:
  int fds_[2];
  pid_t pid_ = 0;
};

}  // namespace shmetrics::testing
