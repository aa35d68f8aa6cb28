#include "process_metrics.h"

#include "text_format.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <fstream>
#include <sstream>

namespace shmetrics::exporter {

namespace {

// /proc/stat's btime: the boot time, in seconds since the epoch.
std::optional<double> boot_time_seconds() {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double t = 0;
      if (in >> t) return t;
      return std::nullopt;
    }
    in.ignore(1 << 20, '\n');
  }
  return std::nullopt;
}

}  // namespace

std::optional<ProcessStats> read_process_stats(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name may hold spaces and parentheses: fields follow the last ')'.
  const std::size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 2));
  std::string f[22];  // fields 3..24 of proc(5)
  for (auto& v : f)
    if (!(fields >> v)) return std::nullopt;
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  ProcessStats s;
  // utime (14), stime (15), starttime (22), vsize (23), rss (24)
  s.cpu_seconds = (std::strtod(f[11].c_str(), nullptr) + std::strtod(f[12].c_str(), nullptr)) / ticks;
  static const std::optional<double> boot = boot_time_seconds();  // fixed until reboot
  s.start_time_seconds = boot.value_or(0) + std::strtod(f[19].c_str(), nullptr) / ticks;
  s.virtual_bytes = std::strtoull(f[20].c_str(), nullptr, 10);
  s.resident_bytes = std::strtoull(f[21].c_str(), nullptr, 10) * page;
  if (pid == ::getpid()) {
    if (DIR* d = ::opendir("/proc/self/fd")) {
      while (const dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') ++s.open_fds;
      ::closedir(d);
      --s.open_fds;  // the directory's own descriptor
    }
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) s.max_fds = limit.rlim_cur;
  }
  return s;
}

namespace {

// This process's stats, read from /proc at most once a second: a scrape may
// come thousands of times a second, and reading /proc (and listing every
// descriptor) each time cost more than the render (exporter_wrk halved).
std::optional<ProcessStats> own_stats() {
  static std::mutex mutex;
  static std::optional<ProcessStats> cached;
  static std::uint64_t read_at_ns = 0;
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  const std::uint64_t now = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
  std::lock_guard lock(mutex);
  if (!cached || now - read_at_ns >= 1'000'000'000u) {
    cached = read_process_stats(::getpid());
    read_at_ns = now;
  }
  return cached;
}

}  // namespace

void append_own_process_metrics(std::string& out, Format format) {
  const auto stats = own_stats();
  if (!stats) return;
  auto head = [&](std::string_view name, std::string_view type, std::string_view help) {
    std::string_view family = name;
    if (format == Format::kOpenMetrics && type == "counter") family.remove_suffix(6);
    out.append("# HELP ").append(family).append(" ").append(help).append("\n# TYPE ").append(family);
    out.append(" ").append(type).append("\n").append(name).append(" ");
  };
  head("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
  append_double(out, stats->cpu_seconds);
  out += '\n';
  head("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  append_uint(out, stats->resident_bytes);
  out += '\n';
  head("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  append_uint(out, stats->virtual_bytes);
  out += '\n';
  head("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
  append_double(out, stats->start_time_seconds);
  out += '\n';
  head("process_open_fds", "gauge", "Number of open file descriptors.");
  append_uint(out, stats->open_fds);
  out += '\n';
  head("process_max_fds", "gauge", "Maximum number of open file descriptors.");
  append_uint(out, stats->max_fds);
  out += '\n';
}

}  // namespace shmetrics::exporter
