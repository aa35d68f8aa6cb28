#include "rbac_metrics.h"

namespace rbac {

RbacMetrics::RbacMetrics(const shmetrics::Segment& segment)
    : reload_checks(
          segment.counter("rbac_reload_checks_total", "Freshness checks of the RBAC map.")),
      reload_hits(
          segment.counter("rbac_reload_hit_total",
                          "Checks that found a new RBAC map version (new SHA-256) and loaded it.")),
      reload_errors(segment.counter(
          "rbac_reload_errors_total",
          "RBAC map versions that could not be read or parsed, once per worker and version.")),
      allowed(segment.counter("rbac_allowed_total", "Requests the RBAC middleware allowed.")),
      forbidden(segment.counter("rbac_forbidden_total",
                                "Requests the RBAC middleware refused with 403.")),
      route_matches(segment.counter("rbac_route_matches_total",
                                    "Requests whose route matched an RBAC map pattern.")),
      map_info(segment.info("rbac_map_info", "The RBAC map version in force (SHA-256 of the file).",
                            {"etag"})) {}

}  // namespace rbac
