// Helpers shared by the benchmark programs: unique segment names removed at
// exit, CPU pinning, forked writers, and reading a segment back the way the
// exporter does, so every scenario can check the counts it wrote.
#pragma once

#include "role_source.h"

#include <shmetrics/shmetrics.h>

#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace shmetrics::bench {

// ---------------------------------------------------------------------------
// Segment names: unique to this run, removed when the program exits (also on
// SIGINT/SIGTERM). Forked children leave with _exit and remove nothing.
// ---------------------------------------------------------------------------

inline std::vector<std::string>& created_segments() {
  // Never destroyed: the atexit handler below runs after static destructors.
  static auto* names = new std::vector<std::string>;
  return *names;
}

inline void remove_created_segments() {
  for (const auto& n : created_segments()) shm::remove_segment(n);
  created_segments().clear();
}

inline void on_fatal_signal(int sig) {
  // Not async-signal-safe in theory (std::string), good enough for a
  // benchmark interrupted by hand: the segments must not outlive it.
  for (const auto& n : created_segments()) {
    ::unlink(n.c_str());
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

inline void install_cleanup() {
  static bool done = false;
  if (done) return;
  done = true;
  std::atexit(remove_created_segments);
  ::signal(SIGINT, on_fatal_signal);
  ::signal(SIGTERM, on_fatal_signal);
}

inline std::string unique_segment_name(const std::string& tag) {
  static int counter = 0;
  install_cleanup();
  std::string name = shm::segment_path("", "bench-" + std::to_string(::getpid()) + "-" +
                                               std::to_string(counter++) + "-" + tag);
  shm::remove_segment(name);
  created_segments().push_back(name);
  return name;
}

// ---------------------------------------------------------------------------
// CPUs and time.
// ---------------------------------------------------------------------------

inline int cpu_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return CPU_COUNT(&set) > 0 ? CPU_COUNT(&set) : 1;
}

// Pins the calling thread (or process, before it starts threads) to `cpu`,
// modulo the CPUs there are. Returns the CPU used.
inline int pin_to_cpu(int cpu) {
  static const int online = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  int c = online > 0 ? cpu % online : 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(c, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) std::perror("sched_setaffinity");
  return c;
}

inline void unpin() {
  static const int online = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c = 0; c < online; ++c) CPU_SET(c, &set);
  ::sched_setaffinity(0, sizeof set, &set);
}

inline std::uint64_t now_ns() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

inline void sleep_ms(std::uint64_t ms) {
  struct timespec ts {};
  ts.tv_sec = static_cast<time_t>(ms / 1000);
  ts.tv_nsec = static_cast<long>((ms % 1000) * 1'000'000);
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// ---------------------------------------------------------------------------
// Forked children.
// ---------------------------------------------------------------------------

// Forks a child running `body`; it leaves with _exit(0) when body returns
// true, 1 otherwise (or when it throws).
inline pid_t fork_child(const std::function<bool()>& body) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    std::exit(2);
  }
  if (pid == 0) {
    bool ok = false;
    try {
      ok = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench child %d: %s\n", ::getpid(), e.what());
    } catch (...) {
    }
    std::fflush(nullptr);
    ::_exit(ok ? 0 : 1);
  }
  return pid;
}

// Exit status of `pid`, or 128 + signal.
inline int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// A pipe children block on until the parent releases them all at once.
class Gate {
 public:
  Gate() {
    if (::pipe(fds_) != 0) std::perror("pipe");
  }
  ~Gate() {
    close_fd(fds_[0]);
    close_fd(fds_[1]);
  }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
  // In a child: blocks until release() (or the parent's death).
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

// Memory shared with forked children (MAP_SHARED | MAP_ANONYMOUS).
template <typename T>
T* shared_block() {
  void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(2);
  }
  return new (p) T();
}

// ---------------------------------------------------------------------------
// Reading the segment back.
// ---------------------------------------------------------------------------

// One exposition, rendered exactly as the exporter does.
inline std::string scrape(const std::string& segment) {
  exporter::RoleSource source("bench", segment);
  return source.scrape();
}

// Samples of an exposition: "name{labels}" -> value (comments skipped).
inline std::unordered_map<std::string, double> parse_samples(const std::string& text) {
  std::unordered_map<std::string, double> out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + at, end - at);
    at = end + 1;
    if (line.empty() || line[0] == '#') continue;
    std::size_t space = line.rfind(' ');
    if (space == std::string_view::npos) continue;
    std::string value(line.substr(space + 1));
    double v = value == "+Inf" ? HUGE_VAL : value == "-Inf" ? -HUGE_VAL : std::strtod(value.c_str(), nullptr);
    out.emplace(std::string(line.substr(0, space)), v);
  }
  return out;
}

// The value of one sample, or NaN when absent.
inline double sample(const std::string& text, const std::string& series) {
  std::size_t at = 0;
  while ((at = text.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') {
      std::size_t start = at + series.size() + 1;
      std::size_t end = text.find('\n', start);
      return std::strtod(text.substr(start, end - start).c_str(), nullptr);
    }
    at += series.size();
  }
  return std::nan("");
}

// Bytes of the segment file as tmpfs holds them (blocks) and as its size says.
struct SegmentBytes {
  std::uint64_t blocks_bytes = 0;
  std::uint64_t size_bytes = 0;
};
inline SegmentBytes segment_bytes(const std::string& name) {
  struct stat st {};
  SegmentBytes b;
  if (::stat(name.c_str(), &st) == 0) {
    b.blocks_bytes = static_cast<std::uint64_t>(st.st_blocks) * 512u;
    b.size_bytes = static_cast<std::uint64_t>(st.st_size);
  }
  return b;
}

inline std::string series_label(std::uint32_t i) {
  std::string s(1, 's');  // not "s" + to_string(i): g++ 12 warns falsely (-Wrestrict) on that
  s += std::to_string(i);
  return s;
}

}  // namespace shmetrics::bench
