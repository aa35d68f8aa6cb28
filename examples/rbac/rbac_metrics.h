// RbacMetrics: the RBAC metrics of the original work order, registered in a
// server role's shmetrics segment.
#pragma once

#include <shmetrics/shmetrics.h>

namespace rbac {

// Handles to the RBAC families; each worker process registers them once (the
// same names from every process are the same metrics) and keeps the handles.
// Thread-safe: the handles are shmetrics handles.
struct RbacMetrics {
  // Throws what shmetrics registration throws (std::invalid_argument,
  // shmetrics::shm::SegmentError).
  explicit RbacMetrics(const shmetrics::Segment& segment);
  // Detached handles: every update is dropped (a server running without metrics).
  RbacMetrics() = default;

  shmetrics::Counter reload_checks;  // rbac_reload_checks_total
  shmetrics::Counter reload_hits;    // rbac_reload_hit_total
  shmetrics::Counter reload_errors;  // rbac_reload_errors_total
  shmetrics::Counter allowed;        // rbac_allowed_total
  shmetrics::Counter forbidden;      // rbac_forbidden_total
  shmetrics::Counter route_matches;  // rbac_route_matches_total
  shmetrics::Info map_info;          // rbac_map_info{etag}
};

}  // namespace rbac
