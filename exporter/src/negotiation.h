// Which exposition a scrape gets: its format from the Accept header, its
// encoding from Accept-Encoding (RFC 9110 §12.5), never a 406.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace shmetrics::exporter {

enum class Format : std::uint8_t {
  kText004 = 0,     // text/plain; version=0.0.4
  kOpenMetrics = 1,  // application/openmetrics-text; version=1.0.0 (or 0.0.1)
};
enum class Encoding : std::uint8_t { kIdentity = 0, kGzip = 1 };

// A format and an encoding: the bodies a role renders and shares, by index.
struct Exposition {
  Format format = Format::kText004;
  Encoding encoding = Encoding::kIdentity;

  static constexpr std::size_t kCount = 4;
  std::size_t index() const { return static_cast<std::size_t>(format) * 2 + static_cast<std::size_t>(encoding); }
  friend bool operator==(const Exposition&, const Exposition&) = default;
};

struct Negotiated {
  Exposition exposition;
  // The Content-Type to answer with: the format's, with the OpenMetrics
  // version asked for and the escaping scheme asked for, if any.
  std::string content_type;
};

// The format the Accept header prefers, by q-value (the most specific range
// matching a format gives its q; among equally specific ones, the highest):
// OpenMetrics 1.0.0 (or 0.0.1, as asked) when its q is above text 0.0.4's,
// text 0.0.4 otherwise, also when nothing acceptable matches (the same body
// labelled text 1.0.0 when that is preferred to 0.0.4). Media ranges
// of other versions do not match. The escaping parameter of the chosen
// range (allow-utf-8, also spelt allow-utf8; underscores; dots; values) is
// echoed in the Content-Type; an unknown one is ignored. Every name this
// exporter serves is a valid legacy Prometheus name, which no scheme
// changes (as client_golang's EscapeMetricFamily leaves such names alone),
// so the body is the same under each. gzip when Accept-Encoding gives gzip
// (or x-gzip, or *) a q above 0, identity otherwise (br alone included).
Negotiated negotiate(std::string_view accept, std::string_view accept_encoding);

}  // namespace shmetrics::exporter
