#include "rbac_state.h"

#include "map_file.h"

#include <ctime>
#include <limits>
#include <stdexcept>
#include <unistd.h>

namespace rbac {
namespace {

constexpr std::int64_t kNanosPerSecond = 1'000'000'000;

std::int64_t reload_nanoseconds(std::int64_t reload_sec) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max() / kNanosPerSecond;
  if (reload_sec < 0 || reload_sec > kMax)
    throw std::invalid_argument("reload_sec " + std::to_string(reload_sec) +
                                " is out of range [0, " + std::to_string(kMax) + "]");
  return reload_sec * kNanosPerSecond;
}

// A key=value log value, quoted when asked or when it holds a space, quote,
// '=', tab, newline or backslash.
void append_value(std::string& out, std::string_view value, bool always_quote) {
  bool quote = always_quote || value.empty() || value.find_first_of(" \"=\t\n\\") != value.npos;
  if (!quote) {
    out += value;
    return;
  }
  out += '"';
  for (char c : value) {
    if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';  // other control bytes of a broken file: keep the line one line
    } else {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
  }
  out += '"';
}

// One line, written with one write(2) so lines of concurrent workers and
// threads never interleave.
void log_reload_failed(const std::string& file, const std::string& error) {
  std::string line = "level=warn event=rbac_reload_failed file=";
  append_value(line, file, false);
  line += " error=";
  append_value(line, error, true);
  line += " pid=" + std::to_string(::getpid()) + "\n";
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace

std::int64_t monotonic_now_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return std::int64_t{now.tv_sec} * kNanosPerSecond + now.tv_nsec;
}

bool is_public(std::string_view path) { return path == "/readyz" || path == "/healthz"; }

RbacMapState::RbacMapState(std::string path, std::int64_t reload_sec, RbacMetrics metrics,
                           MonotonicClock clock)
    : path_(std::move(path)),
      reload_ns_(reload_nanoseconds(reload_sec)),
      metrics_(metrics),
      clock_(std::move(clock)),
      last_read_ns_(clock_()) {
  load(Load::kAtStart);
}

void RbacMapState::ensure_fresh() {
  metrics_.reload_checks.inc();
  std::unique_lock reload(reload_mutex_, std::try_to_lock);
  if (!reload.owns_lock()) return;  // another thread is reading the file right now
  std::int64_t now = clock_();
  if (now - last_read_ns_ < reload_ns_) return;
  last_read_ns_ = now;
  load(Load::kReload);
}

void RbacMapState::load(Load kind) {
  MapFileSnapshot snapshot;
  try {
    snapshot = read_map_file(path_);
  } catch (const std::runtime_error& e) {
    // No bytes to hash: the read error itself tells one failure from another.
    return record_failure(std::string("unreadable: ") + e.what(), e.what());
  }
  if (snapshot.sha256_hex == etag_) {
    failed_version_.clear();  // the file is good again: a later breakage is news
    return;
  }
  if (snapshot.sha256_hex == failed_version_) return;
  std::shared_ptr<const RbacMap> map;
  try {
    map = std::make_shared<const RbacMap>(RbacMap::parse(snapshot.bytes));
  } catch (const std::invalid_argument& e) {
    return record_failure(snapshot.sha256_hex, e.what());
  }
  {
    std::lock_guard guard(map_mutex_);
    map_ = std::move(map);
    etag_ = snapshot.sha256_hex;
  }
  failed_version_.clear();
  metrics_.map_info.set({snapshot.sha256_hex});
  if (kind == Load::kReload) metrics_.reload_hits.inc();
}

void RbacMapState::record_failure(const std::string& version, const std::string& error) {
  if (version == failed_version_) return;
  failed_version_ = version;
  metrics_.reload_errors.inc();
  log_reload_failed(path_, error);
}

Decision RbacMapState::check(std::string_view method, std::string_view path,
                             std::span<const std::string> scopes) {
  if (is_public(path)) return {.matched = false, .allowed = true};
  std::shared_ptr<const RbacMap> map;
  {
    std::lock_guard guard(map_mutex_);
    map = map_;
  }
  Decision decision = map ? map->decide(method, path, scopes) : Decision{};
  if (decision.matched) metrics_.route_matches.inc();
  (decision.allowed ? metrics_.allowed : metrics_.forbidden).inc();
  return decision;
}

std::string RbacMapState::etag() const {
  std::lock_guard guard(map_mutex_);
  return etag_;
}

}  // namespace rbac
