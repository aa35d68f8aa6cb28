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

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
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

// ---------------------------------------------------------------------------
// Histograms: the bounds and the observed values of every histogram scenario
// (bench/peer_client_python.py computes the same values), what a run of
// observations adds up to, and the check of a rendered histogram against it.
// ---------------------------------------------------------------------------

// 10 bounds: Go's default buckets without the last (10 s).
inline const std::vector<double>& histogram_bounds() {
  static const std::vector<double> bounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
  return bounds;
}

// The n-th observed value: log-uniform over [1/1024, 16) (its binary exponent
// drawn from 14: the first 1,024 put 66 to 164 values in each of the 11
// buckets, +Inf included, one of them equal to a bound, 0.25), in a hashed
// order a branch predictor cannot learn, as latencies come. Every value is a
// multiple of 1/1024 below 16, so any sum of fewer than 2^39 of them is exact
// in a double: every side renders the same _sum, whatever the order it added in.
inline double histogram_value(std::uint64_t n) {
  std::uint32_t h = static_cast<std::uint32_t>(n * 2654435761u);
  h ^= h >> 15;
  const std::uint32_t e = h % 14;
  const std::uint32_t m = (1u << e) + ((h >> 8) & ((1u << e) - 1));
  return m / 1024.0;
}

// The scenarios cycle over the first 1,024 values: observe(values[i++ & 1023]).
inline constexpr std::uint64_t kHistogramValues = 1024;
inline const std::array<double, kHistogramValues>& histogram_values() {
  static const auto values = [] {
    std::array<double, kHistogramValues> v{};
    for (std::uint64_t i = 0; i < kHistogramValues; ++i) v[i] = histogram_value(i);
    return v;
  }();
  return values;
}

// The bucket `v` counts in, by Prometheus' "le": the first bound >= v, or
// the number of bounds for +Inf. A plain linear search, independent of the
// library's.
inline std::size_t histogram_bucket(double v) {
  const auto& b = histogram_bounds();
  std::size_t i = 0;
  while (i < b.size() && b[i] < v) ++i;
  return i;
}

// What observations add to one histogram: non-cumulative counts per bucket
// (+Inf last) and the sum.
struct HistogramExpected {
  std::vector<std::uint64_t> buckets = std::vector<std::uint64_t>(histogram_bounds().size() + 1);
  double sum = 0;

  std::uint64_t count() const {
    std::uint64_t n = 0;
    for (std::uint64_t b : buckets) n += b;
    return n;
  }
  void add(double v, std::uint64_t times = 1) {
    buckets[histogram_bucket(v)] += times;
    sum += v * static_cast<double>(times);  // exact: see histogram_value
  }
  // values[(start + k) % 1024] for k in [0, n).
  void add_sequence(std::uint64_t start, std::uint64_t n,
                    const std::array<double, kHistogramValues>& values = histogram_values()) {
    const std::uint64_t cycles = n / kHistogramValues;
    if (cycles > 0)
      for (double v : values) add(v, cycles);
    for (std::uint64_t k = 0; k < n % kHistogramValues; ++k) add(values[(start + k) % kHistogramValues]);
  }
};

// One histogram series as an exposition renders it.
struct RenderedHistogram {
  std::vector<std::pair<double, double>> buckets;  // (le, cumulative count), in the order rendered
  double sum = std::nan("");
  double count = std::nan("");
};

// The series of histogram family `name` in a text exposition (0.0.4), by their
// labels other than le as rendered (`k="v",...`, "" for none). Reads the le
// bound as a number, so any spelling of it works ("1", "1.0", "1e+00").
inline std::unordered_map<std::string, RenderedHistogram> parse_histograms(const std::string& text,
                                                                           const std::string& name) {
  std::unordered_map<std::string, RenderedHistogram> out;
  const std::string bucket = name + "_bucket", sum = name + "_sum", count = name + "_count";
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + at, end - at);
    at = end + 1;
    if (line.empty() || line[0] == '#' || !line.starts_with(name + "_")) continue;
    const std::size_t space = line.rfind(' ');
    const std::size_t brace = line.find('{');
    const std::string_view metric = line.substr(0, std::min(space, brace));
    if (metric != bucket && metric != sum && metric != count) continue;
    std::string labels;
    if (brace != std::string_view::npos && brace < space) {
      const std::size_t close = line.rfind('}', space);
      if (close == std::string_view::npos || close < brace) continue;
      labels = std::string(line.substr(brace + 1, close - brace - 1));
    }
    const std::string value(line.substr(space + 1));
    const double v = value == "+Inf" ? HUGE_VAL : std::strtod(value.c_str(), nullptr);
    if (metric == bucket) {
      // le="X", with the comma that joins it to the other labels.
      const std::size_t le = labels.find("le=\"");
      if (le == std::string::npos) continue;
      const std::size_t le_end = labels.find('"', le + 4);
      if (le_end == std::string::npos) continue;
      const std::string bound = labels.substr(le + 4, le_end - le - 4);
      std::size_t cut_from = le, cut_to = le_end + 1;
      if (cut_to < labels.size() && labels[cut_to] == ',') ++cut_to;
      else if (cut_from > 0 && labels[cut_from - 1] == ',') --cut_from;
      labels.erase(cut_from, cut_to - cut_from);
      out[labels].buckets.emplace_back(bound == "+Inf" ? HUGE_VAL : std::strtod(bound.c_str(), nullptr), v);
    } else if (metric == sum) {
      out[labels].sum = v;
    } else {
      out[labels].count = v;
    }
  }
  return out;
}

// "" when `got` renders exactly `want` (every cumulative bucket at the
// scenario's bounds and +Inf, _count and _sum), or what differs.
inline std::string compare_histogram(const RenderedHistogram& got, const HistogramExpected& want) {
  const auto& bounds = histogram_bounds();
  if (got.buckets.size() != bounds.size() + 1)
    return std::to_string(got.buckets.size()) + " buckets rendered, " + std::to_string(bounds.size() + 1) +
           " expected";
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b <= bounds.size(); ++b) {
    cumulative += want.buckets[b];
    const double le = b < bounds.size() ? bounds[b] : HUGE_VAL;
    if (got.buckets[b].first != le)
      return "bucket " + std::to_string(b) + " has le " + std::to_string(got.buckets[b].first);
    if (got.buckets[b].second != static_cast<double>(cumulative))
      return "le=" + std::to_string(le) + " rendered " + std::to_string(got.buckets[b].second) + ", observed " +
             std::to_string(cumulative);
  }
  if (got.count != static_cast<double>(cumulative))
    return "_count rendered " + std::to_string(got.count) + ", observed " + std::to_string(cumulative);
  if (got.sum != want.sum) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "_sum rendered %.17g, observed %.17g", got.sum, want.sum);
    return buf;
  }
  return "";
}

// The check of one series of family `name` with `labels` in `text`.
inline std::string check_histogram(const std::string& text, const std::string& name, const std::string& labels,
                                   const HistogramExpected& want) {
  auto all = parse_histograms(text, name);
  auto it = all.find(labels);
  if (it == all.end()) return name + "{" + labels + "} not rendered";
  std::string diff = compare_histogram(it->second, want);
  return diff.empty() ? diff : name + "{" + labels + "}: " + diff;
}

inline std::string series_label(std::uint32_t i) {
  std::string s(1, 's');  // not "s" + to_string(i): g++ 12 warns falsely (-Wrestrict) on that
  s += std::to_string(i);
  return s;
}

}  // namespace shmetrics::bench
