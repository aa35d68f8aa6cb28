// Content negotiation: which format and encoding a scrape's Accept and
// Accept-Encoding headers get, as Prometheus 2 and 3 send them and as a
// careless or hostile client might.
#include "negotiation.h"

#include <catch2/catch.hpp>

#include <string>

using shmetrics::exporter::Encoding;
using shmetrics::exporter::Format;
using shmetrics::exporter::negotiate;

namespace {

constexpr const char* kText = "text/plain; version=0.0.4; charset=utf-8";
constexpr const char* kText1 = "text/plain; version=1.0.0; charset=utf-8";
constexpr const char* kOpenMetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8";

// What Prometheus 3.x sends by default (scrape.go's acceptHeader with the
// default scrape_protocols and allow-utf-8 names).
constexpr const char* kPrometheus3 =
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
// What Prometheus 2.42 (Debian 12's) sends.
constexpr const char* kPrometheus2 =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

std::string type_for(const char* accept) { return negotiate(accept, "").content_type; }

}  // namespace

TEST_CASE("prometheus_3_gets_openmetrics_with_its_escaping_echoed") {
  auto n = negotiate(kPrometheus3, "gzip");
  CHECK(n.exposition.format == Format::kOpenMetrics);
  CHECK(n.exposition.encoding == Encoding::kGzip);
  CHECK(n.content_type == std::string(kOpenMetrics) + "; escaping=allow-utf-8");
  // With native histograms it asks for protobuf first, which is not served.
  const std::string proto_first =
      "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7," +
      std::string(kPrometheus3);
  CHECK(type_for(proto_first.c_str()) == std::string(kOpenMetrics) + "; escaping=allow-utf-8");
}

TEST_CASE("prometheus_2_42_gets_openmetrics") {
  CHECK(type_for(kPrometheus2) == kOpenMetrics);
  CHECK(negotiate(kPrometheus2, "gzip").exposition == shmetrics::exporter::Exposition{Format::kOpenMetrics, Encoding::kGzip});
}

TEST_CASE("text_0_0_4_unless_openmetrics_is_preferred_and_never_406") {
  CHECK(type_for("") == kText);
  CHECK(type_for("*/*") == kText);
  CHECK(type_for("text/plain") == kText);
  CHECK(type_for("text/*") == kText);
  CHECK(type_for("application/json") == kText);  // nothing acceptable: text anyway
  CHECK(type_for("text/plain;q=0, application/openmetrics-text;q=0") == kText);
  CHECK(type_for("application/openmetrics-text;q=0.5, text/plain;q=0.9") == kText);
  CHECK(type_for("application/openmetrics-text;q=0.5, text/plain;q=0.5") == kText);  // a tie: text
  CHECK(type_for("application/openmetrics-text;version=2.0.0") == kText);            // another version
  CHECK(type_for("application/openmetrics-text;q=2") == kText);                      // a malformed q
  CHECK(type_for("application/openmetrics-text;q=0.0001") == kText);
  CHECK(type_for(",,, ;;; =, /") == kText);
}

TEST_CASE("openmetrics_as_asked_for") {
  CHECK(type_for("application/openmetrics-text") == kOpenMetrics);
  CHECK(type_for("Application/OpenMetrics-Text; Version=1.0.0; Q=0.9, TEXT/PLAIN; q=0.3") == kOpenMetrics);
  CHECK(type_for("application/openmetrics-text;version=0.0.1") ==
        "application/openmetrics-text; version=0.0.1; charset=utf-8");
  CHECK(type_for("application/*;q=0.9, text/plain;q=0.8") == kOpenMetrics);
  // The most specific range decides: text/plain;q=0 excludes text although */* allows it.
  CHECK(type_for("*/*;q=0.9, application/openmetrics-text;q=0.5, text/plain;q=0") == kOpenMetrics);
  CHECK(type_for("application/openmetrics-text;foo=\"a,b;q=0\";q=0.9, text/plain;q=0.1") == kOpenMetrics);
}

TEST_CASE("each_version_of_a_format_is_weighed_on_its_own") {
  // A range for one version neither refuses nor prefers another (helper-14's cases).
  CHECK(type_for("application/openmetrics-text;version=0.0.1;q=0, application/openmetrics-text") == kOpenMetrics);
  CHECK(type_for("application/openmetrics-text;version=1.0.0;q=0, application/openmetrics-text;q=0.9") ==
        "application/openmetrics-text; version=0.0.1; charset=utf-8");
  // Either OpenMetrics version at the same q: 1.0.0.
  CHECK(type_for("application/openmetrics-text;version=0.0.1, application/openmetrics-text;version=1.0.0") ==
        kOpenMetrics);
}

TEST_CASE("every_escaping_scheme_prometheus_names_is_echoed_and_others_ignored") {
  auto om = [](const char* scheme) {
    return type_for(("application/openmetrics-text;version=1.0.0;escaping=" + std::string(scheme)).c_str());
  };
  CHECK(om("allow-utf-8") == std::string(kOpenMetrics) + "; escaping=allow-utf-8");
  CHECK(om("allow-utf8") == std::string(kOpenMetrics) + "; escaping=allow-utf-8");
  CHECK(om("underscores") == std::string(kOpenMetrics) + "; escaping=underscores");
  CHECK(om("dots") == std::string(kOpenMetrics) + "; escaping=dots");
  CHECK(om("values") == std::string(kOpenMetrics) + "; escaping=values");
  CHECK(om("bogus") == kOpenMetrics);
  CHECK(om("\"\r\nX-Injected: 1\"") == kOpenMetrics);  // never echoed raw
  CHECK(type_for("text/plain;version=1.0.0;escaping=underscores") == std::string(kText1) + "; escaping=underscores");
}

TEST_CASE("text_1_0_0_is_named_when_preferred_to_0_0_4_with_the_same_body") {
  // Prometheus 3 with scrape_protocols: [PrometheusText1.0.0].
  auto n = negotiate("text/plain;version=1.0.0;escaping=allow-utf-8", "");
  CHECK(n.exposition.format == Format::kText004);
  CHECK(n.content_type == std::string(kText1) + "; escaping=allow-utf-8");
  // 0.0.4 refused, 1.0.0 taken (helper-14's F8): never the refused version.
  CHECK(type_for("text/plain;version=0.0.4;q=0, text/plain;version=1.0.0;q=0.5") == kText1);
  CHECK(type_for("text/plain;version=0.0.4;q=0.4, text/plain;version=1.0.0;q=0.5") == kText1);
  // 0.0.4 on a tie and when either version would do.
  CHECK(type_for("text/plain;version=0.0.4, text/plain;version=1.0.0") == kText);
  CHECK(type_for("text/plain;version=0.0.4;q=0.6, text/plain;version=1.0.0;q=0.5") == kText);
  CHECK(type_for("text/plain;version=1.0.0;q=0.5, text/plain;q=0.5") == kText);
  CHECK(type_for("text/plain;version=1.0.0;q=0.5, */*;q=0.6") == kText);  // */* gives 0.0.4 its q of 0.6
  // Prometheus 3's default list still gets OpenMetrics; text 1.0.0 when OpenMetrics is refused.
  CHECK(type_for("application/openmetrics-text;q=0, text/plain;version=1.0.0;q=0.4, text/plain;version=0.0.4;q=0.3") ==
        kText1);
}

TEST_CASE("gzip_when_the_client_takes_it") {
  auto encoding = [](const char* accept_encoding) { return negotiate("", accept_encoding).exposition.encoding; };
  CHECK(encoding("gzip") == Encoding::kGzip);
  CHECK(encoding("GZIP") == Encoding::kGzip);
  CHECK(encoding("x-gzip") == Encoding::kGzip);
  CHECK(encoding("gzip, deflate, br") == Encoding::kGzip);
  CHECK(encoding("*") == Encoding::kGzip);
  CHECK(encoding("br") == Encoding::kIdentity);
  CHECK(encoding("") == Encoding::kIdentity);
  CHECK(encoding("gzip;q=0") == Encoding::kIdentity);
  CHECK(encoding("*;q=0") == Encoding::kIdentity);
  CHECK(encoding("*, gzip;q=0") == Encoding::kIdentity);
  CHECK(encoding("identity;q=1, gzip;q=0.5") == Encoding::kIdentity);
  CHECK(encoding("identity;q=0.5, gzip;q=0.5") == Encoding::kGzip);
  CHECK(encoding("identity;q=0") == Encoding::kIdentity);  // never 406
  CHECK(encoding("gzip;q=1.5") == Encoding::kIdentity);    // malformed
}
