// The exporter's HTTP side: one cpp-httplib server per role, GET /metrics.
#pragma once

#include "role_source.h"

#include <httplib.h>

#include <memory>

namespace shmetrics::exporter {

// Content-Type of the text exposition format 0.0.4.
inline constexpr const char* kTextContentType = "text/plain; version=0.0.4; charset=utf-8";

// A server answering GET /metrics with `source`'s exposition, sent through a
// fixed-length content provider so the library never compresses it (its
// brotli is slow enough to stall a scrape). Not yet bound or listening.
std::unique_ptr<httplib::Server> make_metrics_server(std::shared_ptr<RoleSource> source);

}  // namespace shmetrics::exporter
