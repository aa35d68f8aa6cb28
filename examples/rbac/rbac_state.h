// RbacMapState: the RBAC map in force in one worker process, reloaded when
// its file changes, and the RBAC metrics of every check.
#pragma once

#include "rbac_map.h"
#include "rbac_metrics.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

namespace rbac {

// Monotonic time in nanoseconds. Tests pass a clock they advance, so they
// never sleep.
using MonotonicClock = std::function<std::int64_t()>;

// CLOCK_MONOTONIC in nanoseconds.
std::int64_t monotonic_now_ns();

// True for "/readyz" and "/healthz", the routes that bypass RBAC: a load
// balancer probing them holds no scopes.
bool is_public(std::string_view path);

// The RBAC map one worker process enforces, and its reloads.
//
// The map file is read whole, hashed (SHA-256: the version) and parsed before
// anything changes, so a half-written or broken file is never half-applied:
// the last good map stays in force. A failure to read or parse is counted in
// rbac_reload_errors_total and logged as one stderr line
// (`event=rbac_reload_failed file=... error="..."`) once per version: the
// same broken bytes (or the same read error) seen again are not counted
// again until a good file has been seen.
//
// Every per-process rule (the reload interval, counting a failure once,
// rbac_map_info holding the version in force) assumes one state per worker
// process: make it in the worker, after fork.
//
// Thread-safe: any thread may call any method. A reload swaps a shared_ptr,
// so a request being decided keeps the map it started with.
class RbacMapState {
 public:
  // Loads the map; that load is not a hit. When the file is missing or
  // malformed no map is in force and every protected request is refused until
  // a reload finds a good version; the failure is counted and logged. Throws
  // std::invalid_argument when reload_sec is negative or too large for
  // nanoseconds in 64 bits.
  RbacMapState(std::string path, std::int64_t reload_sec, RbacMetrics metrics,
               MonotonicClock clock = monotonic_now_ns);

  // Counts rbac_reload_checks_total; when reload_sec has passed on the clock
  // since this process last read the file, reads it again. A new good version
  // (new SHA-256) is put in force, counted in rbac_reload_hit_total and set as
  // this process's rbac_map_info{etag}. A thread that finds another thread
  // reloading returns at once with the map in force.
  void ensure_fresh();

  // Decides a request and counts rbac_route_matches_total when a route
  // matched, then rbac_allowed_total or rbac_forbidden_total. Public paths
  // are allowed without looking at the map and counted nowhere. With no map
  // in force nothing matches, so the request is refused. A request whose
  // X-Scopes header is malformed is checked with no scopes, which no route
  // allows.
  Decision check(std::string_view method, std::string_view path,
                 std::span<const std::string> scopes);

  // The SHA-256 hex of the version in force; empty when no map is.
  std::string etag() const;

 private:
  enum class Load { kAtStart, kReload };

  // Called holding reload_mutex_ (or from the constructor).
  void load(Load kind);
  void record_failure(const std::string& version, const std::string& error);

  const std::string path_;
  const std::int64_t reload_ns_;
  RbacMetrics metrics_;
  const MonotonicClock clock_;

  std::mutex reload_mutex_;  // one reader of the file at a time; guards:
  std::int64_t last_read_ns_;
  std::string failed_version_;  // the failure counted and logged last

  mutable std::mutex map_mutex_;  // guards map_; etag_ is written holding both mutexes
  std::shared_ptr<const RbacMap> map_;
  std::string etag_;
};

}  // namespace rbac
