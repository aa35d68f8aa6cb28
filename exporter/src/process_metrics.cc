#include "process_metrics.h"

#include "text_format.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
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
    append_family_head(out, format, name, type, help);
    out.append(name).append(" ");
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

bool in_own_pid_namespace(std::uint32_t pid, std::string_view status) {
  // The value of the line starting with `key`, or nullopt.
  auto field = [&](std::string_view key) -> std::optional<std::string_view> {
    std::size_t at = 0;
    while (at < status.size()) {
      std::size_t end = status.find('\n', at);
      if (end == std::string_view::npos) end = status.size();
      std::string_view line = status.substr(at, end - at);
      if (line.starts_with(key)) return line.substr(key.size());
      at = end + 1;
    }
    return std::nullopt;
  };
  auto numbers = [](std::string_view text) {
    std::vector<std::uint64_t> out;
    std::size_t i = 0;
    while (i < text.size()) {
      while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
      if (i == text.size()) break;
      std::uint64_t n = 0;
      std::size_t digits = 0;
      for (; i < text.size() && text[i] >= '0' && text[i] <= '9' && digits < 10; ++i, ++digits)
        n = n * 10 + static_cast<std::uint64_t>(text[i] - '0');
      if (digits == 0 || (i < text.size() && text[i] != ' ' && text[i] != '\t')) return std::vector<std::uint64_t>{};
      out.push_back(n);
    }
    return out;
  };
  std::optional<std::string_view> nspid = field("NSpid:");
  if (!nspid) nspid = field("Pid:");
  if (!nspid) return false;
  const std::vector<std::uint64_t> pids = numbers(*nspid);
  return pids.size() == 1 && pids[0] == pid;
}

namespace {

std::optional<std::string> read_small_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) return std::nullopt;
  std::string text(4096, '\0');
  const std::size_t n = std::fread(text.data(), 1, text.size(), f);
  std::fclose(f);
  text.resize(n);
  return text;
}

}  // namespace

WriterProcesses read_writer_processes(std::vector<LiveWriter> live,
                                      const std::function<bool(const LiveWriter&)>& still_held) {
  WriterProcesses out;
  // Each visible process once; those not visible (here 0) each count.
  std::sort(live.begin(), live.end(), [](const LiveWriter& a, const LiveWriter& b) { return a.here < b.here; });
  live.erase(std::unique(live.begin(), live.end(),
                         [](const LiveWriter& a, const LiveWriter& b) { return a.here > 0 && a.here == b.here; }),
             live.end());
  for (std::size_t i = 0; i < live.size(); ++i) {
    if (out.shown.size() + out.other_namespace + out.unreadable >= kMaxWriterProcesses) {
      out.not_read = live.size() - i;
      break;
    }
    const LiveWriter& w = live[i];
    if (w.here <= 0) {  // a holder this namespace cannot see
      ++out.other_namespace;
      continue;
    }
    const std::optional<std::string> status = read_small_file("/proc/" + std::to_string(w.here) + "/status");
    if (!status) {
      ++out.unreadable;
      continue;
    }
    if (!in_own_pid_namespace(w.pid, *status)) {
      ++out.other_namespace;
      continue;
    }
    const std::optional<ProcessStats> stats = read_process_stats(w.here);
    if (!stats || !still_held(w)) {
      ++out.unreadable;
      continue;
    }
    out.shown.push_back({w.pid, stats->cpu_seconds, stats->resident_bytes});
  }
  std::sort(out.shown.begin(), out.shown.end(),
            [](const WriterProcess& a, const WriterProcess& b) { return a.pid < b.pid; });
  return out;
}

void append_writer_process_metrics(std::string& out, Format format, std::string_view role_value,
                                   const WriterProcesses& writers) {
  // The two per-process families only with a process to show: no family without samples.
  if (!writers.shown.empty()) {
    append_family_head(out, format, "shmetrics_writer_process_cpu_seconds_total", "counter",
                       "Total user and system CPU time of each live writer process of this role, in seconds (read "
                       "from /proc at most once a second).");
    // One sample per writer shown: NAME{role,pid} VALUE.
    auto samples = [&](std::string_view name, auto append_value) {
      for (const WriterProcess& w : writers.shown) {
        out.append(name).append("{").append(role_value).append(",pid=\"");
        append_uint(out, w.pid);
        out += "\"} ";
        append_value(w);
        out += '\n';
      }
    };
    samples("shmetrics_writer_process_cpu_seconds_total", [&](const WriterProcess& w) { append_double(out, w.cpu_seconds); });
    append_family_head(out, format, "shmetrics_writer_process_resident_memory_bytes", "gauge",
                       "Resident memory of each live writer process of this role, in bytes (read from /proc at most "
                       "once a second).");
    samples("shmetrics_writer_process_resident_memory_bytes",
            [&](const WriterProcess& w) { append_uint(out, w.resident_bytes); });
  }
  append_family_head(out, format, "shmetrics_writer_processes", "gauge",
                     "Live writer processes of this role: shown by the two families above, or left out as in "
                     "another pid namespace, unreadable in /proc, or past the " +
                         std::to_string(kMaxWriterProcesses) + " read per refresh.");
  const struct {
    const char* state;
    std::uint64_t count;
  } states[] = {{"shown", writers.shown.size()},
                {"other_namespace", writers.other_namespace},
                {"unreadable", writers.unreadable},
                {"not_read", writers.not_read}};
  for (const auto& s : states) {
    out += "shmetrics_writer_processes{";
    out += role_value;
    out += ",state=\"";
    out += s.state;
    out += "\"} ";
    append_uint(out, s.count);
    out += '\n';
  }
}

}  // namespace shmetrics::exporter
