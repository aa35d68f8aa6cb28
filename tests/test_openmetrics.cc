// The OpenMetrics 1.0.0 rendering: family names, _created, info, units, the
// histograms OpenMetrics cannot give a _sum, # EOF; and the same segment in
// text 0.0.4 unchanged. (exporter_http_test.sh feeds real scrapes to
// python3-prometheus-client's strict OpenMetrics parser.)
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <ctime>
#include <limits>

using namespace shmetrics;
using testing::ScopedName;
using exporter::Encoding;
using exporter::Exposition;
using exporter::Format;

namespace {

constexpr Exposition kOpenMetrics{Format::kOpenMetrics, Encoding::kIdentity};

// An OpenMetrics scrape with the _created samples (--openmetrics-created).
std::string openmetrics_with_created(const std::string& segment) {
  exporter::RoleSource source("test", segment);
  source.set_openmetrics_created(true);
  return source.scrape(kOpenMetrics);
}

bool has_line(const std::string& text, const std::string& line) {
  return text.starts_with(line + "\n") || text.find("\n" + line + "\n") != std::string::npos;
}

}  // namespace

TEST_CASE("openmetrics_names_counter_families_without_total_and_adds_created") {
  ScopedName name("om-counter");
  Segment s = Segment::open(testing::small_options(name.str(), 4, 4));
  const auto before = static_cast<double>(std::time(nullptr));
  s.counter_family("sent_bytes_total", "Bytes \"sent\".", {"peer"}, ValueType::kInteger, "bytes")
      .labels({"a"})
      .inc(5);
  s.info("build_info", "Build.", {"version"}).set({"1.2"});
  s.info("map", "Map.", {"etag"}).set({"e"});
  s.gauge("busy", "Busy.", GaugeMode::kLiveSum).set(2);
  const std::string om = openmetrics_with_created(name.str());
  INFO(om);
  CHECK(has_line(om, "# HELP sent_bytes Bytes \\\"sent\\\"."));
  CHECK(has_line(om, "# TYPE sent_bytes counter"));
  CHECK(has_line(om, "# UNIT sent_bytes bytes"));
  CHECK(has_line(om, "sent_bytes_total{peer=\"a\"} 5"));
  const auto created = testing::sample(om, "sent_bytes_created{peer=\"a\"}");
  REQUIRE(created);
  CHECK(*created >= before - 1);
  CHECK(*created <= static_cast<double>(std::time(nullptr)) + 1);
  CHECK(has_line(om, "# TYPE build info"));
  CHECK(has_line(om, "build_info{version=\"1.2\"} 1"));
  CHECK(has_line(om, "# TYPE map info"));
  CHECK(has_line(om, "map_info{etag=\"e\"} 1"));
  CHECK(has_line(om, "# TYPE busy gauge"));
  CHECK(has_line(om, "# TYPE shmetrics_series_refused counter"));
  CHECK(has_line(om, "shmetrics_series_refused_total{role=\"test\"} 0"));
  CHECK(om.ends_with("\n# EOF\n"));
  CHECK(testing::count_lines(om, "# EOF") == 1);
  // The same segment in 0.0.4: as before, with no _created even when asked for.
  exporter::RoleSource asking("test", name.str());
  asking.set_openmetrics_created(true);
  const std::string text = asking.scrape();
  INFO(text);
  CHECK(has_line(text, "# HELP sent_bytes_total Bytes \"sent\"."));
  CHECK(has_line(text, "# TYPE sent_bytes_total counter"));
  CHECK(has_line(text, "# TYPE map gauge"));
  CHECK(has_line(text, "map{etag=\"e\"} 1"));
  CHECK(text.find("_created") == std::string::npos);
  CHECK(text.find("# UNIT") == std::string::npos);
  CHECK(text.find("# EOF") == std::string::npos);
}

TEST_CASE("openmetrics_histograms_have_created_and_no_sum_where_it_could_be_negative") {
  ScopedName name("om-histogram");
  SegmentOptions o = testing::small_options(name.str(), 4, 4);
  o.capacities.cells = 64;
  Segment s = Segment::open(o);
  Histogram wait = s.histogram("wait_seconds", "Wait.", {0.5, 1}, "seconds");
  Histogram delta = s.histogram("delta", "Signed.", {-1, 0, 1});
  Histogram odd = s.histogram_family("odd", "Odd.", {"k"}, {1}).labels({"neg"});
  wait.observe(0.25);
  wait.observe(2);
  delta.observe(-3);
  odd.observe(-5);  // a negative _sum without negative bounds
  const std::string om = openmetrics_with_created(name.str());
  INFO(om);
  CHECK(has_line(om, "# TYPE wait_seconds histogram"));
  CHECK(has_line(om, "# UNIT wait_seconds seconds"));
  CHECK(has_line(om, "wait_seconds_bucket{le=\"0.5\"} 1"));
  CHECK(has_line(om, "wait_seconds_bucket{le=\"+Inf\"} 2"));
  CHECK(has_line(om, "wait_seconds_sum 2.25"));
  CHECK(has_line(om, "wait_seconds_count 2"));
  CHECK(testing::sample(om, "wait_seconds_created"));
  CHECK(has_line(om, "delta_bucket{le=\"-1\"} 1"));
  CHECK(testing::count_lines(om, "delta_sum") == 0);
  CHECK(testing::count_lines(om, "delta_count") == 0);
  CHECK(testing::sample(om, "delta_created"));
  CHECK(testing::count_lines(om, "odd_sum") == 0);
  CHECK(has_line(om, "odd_bucket{k=\"neg\",le=\"+Inf\"} 1"));
  // 0.0.4 keeps every _sum and _count.
  const std::string text = exporter::RoleSource("test", name.str()).scrape();
  CHECK(testing::sample(text, "delta_sum") == -3.0);
  CHECK(testing::sample(text, "odd_sum{k=\"neg\"}") == -5.0);
  CHECK(testing::sample(text, "odd_count{k=\"neg\"}") == 1.0);
}

TEST_CASE("openmetrics_summaries_have_count_sum_and_created_and_no_negative_sum") {
  ScopedName name("om-summary");
  SegmentOptions o = testing::small_options(name.str(), 4, 4);
  o.capacities.cells = 64;
  Segment s = Segment::open(o);
  HistogramFamily sizes = s.summary_family("payload_bytes", "Payloads.", {"k"}, "bytes");
  sizes.labels({"a"}).observe(3);
  sizes.labels({"a"}).observe(4.5);
  sizes.labels({"neg"}).observe(-1);
  const std::string om = openmetrics_with_created(name.str());
  INFO(om);
  CHECK(has_line(om, "# TYPE payload_bytes summary"));
  CHECK(has_line(om, "# UNIT payload_bytes bytes"));
  CHECK(has_line(om, "payload_bytes_sum{k=\"a\"} 7.5"));
  CHECK(has_line(om, "payload_bytes_count{k=\"a\"} 2"));
  CHECK(testing::sample(om, "payload_bytes_created{k=\"a\"}"));
  CHECK(testing::count_lines(om, "payload_bytes_sum{k=\"neg\"}") == 0);
  CHECK(testing::count_lines(om, "payload_bytes_count{k=\"neg\"}") == 0);
  CHECK(testing::sample(om, "payload_bytes_created{k=\"neg\"}"));
  const std::string text = exporter::RoleSource("test", name.str()).scrape();
  CHECK(has_line(text, "# TYPE payload_bytes summary"));
  CHECK(testing::sample(text, "payload_bytes_sum{k=\"neg\"}") == -1.0);
  CHECK(testing::sample(text, "payload_bytes_count{k=\"neg\"}") == 1.0);
}

TEST_CASE("a_gzip_exposition_is_the_identity_one_compressed_and_rendered_once_for_its_sharers") {
  ScopedName name("om-gzip");
  Segment s = Segment::open(testing::small_options(name.str(), 4, 4));
  s.counter("done_total", "Done.").inc(3);
  exporter::RoleSource source("test", name.str());
  const std::string plain = source.scrape(kOpenMetrics);
  const std::string zipped = source.scrape({Format::kOpenMetrics, Encoding::kGzip});
  REQUIRE(zipped.size() > 18);
  CHECK(static_cast<unsigned char>(zipped[0]) == 0x1f);
  CHECK(static_cast<unsigned char>(zipped[1]) == 0x8b);
  CHECK(zipped.size() < plain.size());
  CHECK(source.renders({Format::kOpenMetrics, Encoding::kGzip}) == 1);
  CHECK(source.renders(kOpenMetrics) == 1);
  CHECK(source.renders({}) == 0);
}

TEST_CASE("the_exporter_shows_its_build_pools_slots_records_renders_and_process") {
  ScopedName name("own-metrics");
  SegmentOptions o = testing::small_options(name.str(), 4, 4);
  o.capacities.cells = 100;
  Segment s = Segment::open(o);
  s.counter("a_total", "A.").inc();
  s.histogram("h", "H.", {1, 2}).observe(1);  // 6 cells, from cell 2 (pairs start even: cell 1 unused)
  s.gauge("g", "G.", GaugeMode::kLiveSum).set(1);  // claims this process's record
  exporter::RoleSource source("test", name.str());
  source.set_version("9.9.9");
  source.scrape();
  const std::string text = source.scrape();
  INFO(text);
  auto value = [&](const std::string& series) { return testing::sample(text, series).value_or(-1); };
  CHECK(value("shmetrics_exporter_build_info{version=\"9.9.9\",layout=\"" + std::to_string(shm::kLayoutVersion) +
              "\"}") == 1);
  CHECK(value("shmetrics_segment_used{role=\"test\",pool=\"families\"}") == 3);
  CHECK(value("shmetrics_segment_capacity{role=\"test\",pool=\"families\"}") == 16);
  CHECK(value("shmetrics_segment_used{role=\"test\",pool=\"series\"}") == 3);
  CHECK(value("shmetrics_segment_used{role=\"test\",pool=\"cells\"}") == 8);
  CHECK(value("shmetrics_segment_capacity{role=\"test\",pool=\"cells\"}") == 100);
  CHECK(value("shmetrics_segment_used{role=\"test\",pool=\"gauge_series\"}") == 1);
  CHECK(value("shmetrics_segment_used{role=\"test\",pool=\"pages\"}") >= 1);
  CHECK(value("shmetrics_segment_used{role=\"test\",pool=\"string_bytes\"}") > 0);
  CHECK(value("shmetrics_thread_slots{role=\"test\",state=\"claimed\"}") == 1);
  CHECK(value("shmetrics_thread_slots{role=\"test\",state=\"unclaimed\"}") == 3);
  CHECK(value("shmetrics_process_records{role=\"test\",state=\"live\"}") == 1);
  CHECK(value("shmetrics_process_records{role=\"test\",state=\"dead\"}") == 0);
  CHECK(value("shmetrics_process_records{role=\"test\",state=\"free\"}") == 3);
  // Two renders so far: the first's and this one's.
  CHECK(value("shmetrics_exporter_scrape_duration_seconds_count{role=\"test\"}") == 2);
  CHECK(value("shmetrics_exporter_scrape_duration_seconds_bucket{role=\"test\",le=\"+Inf\"}") == 2);
  CHECK(value("shmetrics_exporter_scrape_duration_seconds_sum{role=\"test\"}") > 0);
  CHECK(value("process_open_fds") > 2);
  CHECK(value("process_max_fds") >= value("process_open_fds"));
  CHECK(value("process_resident_memory_bytes") > 1e6);
  CHECK(value("process_cpu_seconds_total") >= 0);
  const double now = static_cast<double>(std::time(nullptr));
  CHECK(value("process_start_time_seconds") > now - 3600);
  CHECK(value("process_start_time_seconds") <= now + 1);
  // A writer cannot take those names.
  CHECK_THROWS_WITH(s.gauge("process_open_fds", "Mine.", GaugeMode::kLiveSum),
                    Catch::Contains("the exporter shows its own process metrics"));
}

// _created samples are opt-in (--openmetrics-created; optional in
// OpenMetrics): without, the same OpenMetrics scrape less those lines.
TEST_CASE("openmetrics_created_samples_are_opt_in_and_the_rest_of_the_scrape_is_the_same") {
  ScopedName name("om-no-created");
  Segment s = Segment::open(testing::small_options(name.str(), 4, 4));
  s.counter_family("sent_bytes_total", "Sent.", {"peer"}).labels({"a"}).inc(5);
  s.counter("plain_total", "Plain.", ValueType::kDouble).inc(0.5);
  s.histogram("wait_seconds", "Wait.", {0.5, 1}).observe(0.75);
  s.summary_family("size_bytes", "Size.", {}).labels({}).observe(3);
  exporter::RoleSource with("test", name.str());
  with.set_openmetrics_created(true);
  exporter::RoleSource without("test", name.str());  // the default
  const std::string full = with.scrape(kOpenMetrics);
  const std::string lean = without.scrape(kOpenMetrics);
  INFO(full << "\n----\n" << lean);
  // Four _created samples in the full scrape, none in the lean one.
  for (const char* created : {"sent_bytes_created{peer=\"a\"} ", "plain_created ", "wait_seconds_created ",
                              "size_bytes_created "})
    CHECK(testing::count_lines(full, created) == 1);
  CHECK(lean.find("_created") == std::string::npos);
  // Every other line the same, in the same order (the exporter's own
  // metrics, which measure the scrapes themselves, aside).
  auto without_created = [](const std::string& text) {
    std::string out;
    std::size_t at = 0;
    while (at < text.size()) {
      const std::size_t end = text.find('\n', at);
      const std::string line = text.substr(at, end - at + 1);
      at = end + 1;
      // The exporter's own families come last; the process_* ones change
      // between two scrapes.
      if (line.starts_with("# HELP process_") || line.starts_with("# HELP shmetrics_")) break;
      if (line.find("_created") == std::string::npos) out += line;
    }
    return out;
  };
  CHECK(without_created(full) == without_created(lean));
  CHECK(without_created(lean).find("wait_seconds_bucket{le=\"1\"} 1") != std::string::npos);
  CHECK(lean.ends_with("\n# EOF\n"));
  // The text 0.0.4 scrape never has them; and the switch turns back off.
  CHECK(with.scrape().find("_created") == std::string::npos);
  with.set_openmetrics_created(false);
  CHECK(with.scrape(kOpenMetrics).find("_created") == std::string::npos);
}

// The _created lines are built once a render asks for them, and only then
// count in the bytes a role may hold parsed (--max-scrape-bytes): without
// --openmetrics-created they cost nothing. Series taken afterwards get theirs.
TEST_CASE("created_lines_are_built_and_counted_only_once_asked_for") {
  ScopedName name("om-lazy-created");
  Segment s = Segment::open(testing::small_options(name.str(), 4, 4));
  CounterFamily sent = s.counter_family("sent_bytes_total", "Sent.", {"peer"});
  sent.labels({"a"}).inc(5);
  s.histogram("wait_seconds", "Wait.", {0.5, 1}).observe(0.75);
  s.gauge("busy", "Busy.", GaugeMode::kLiveSum).set(1);
  auto m = shm::MappedSegment::open_read_only(name.str());
  exporter::SegmentReader reader(m->base(), m->size_bytes());
  const exporter::RecordLiveness live = [](std::uint32_t, std::uint32_t) { return true; };
  auto render = [&](Format format) {
    std::string out;
    REQUIRE(reader.render(out, live, 0, exporter::kDefaultMaxScrapeBytes, format).empty());
    return out;
  };
  // The sum of the lengths of the _created lines of `text`.
  auto created_bytes = [](const std::string& text) {
    std::size_t n = 0, at = 0;
    while (at < text.size()) {
      const std::size_t end = text.find('\n', at);
      if (text.substr(at, end - at).find("_created") != std::string::npos) n += end - at + 1;
      at = end + 1;
    }
    return n;
  };
  const std::string lean = render(Format::kOpenMetrics);
  REQUIRE(lean.find("_created") == std::string::npos);
  const std::size_t parsed = reader.parsed_bytes();
  render(Format::kText004);
  CHECK(reader.parsed_bytes() == parsed);

  reader.set_openmetrics_created(true);
  const std::string full = render(Format::kOpenMetrics);
  INFO(full);
  CHECK(testing::count_lines(full, "sent_bytes_created{peer=\"a\"} ") == 1);
  CHECK(testing::count_lines(full, "wait_seconds_created ") == 1);
  CHECK(full.find("busy_created") == std::string::npos);
  CHECK(created_bytes(full) > 0);
  CHECK(reader.parsed_bytes() == parsed + created_bytes(full));
  render(Format::kOpenMetrics);
  CHECK(reader.parsed_bytes() == parsed + created_bytes(full));  // built once

  // A series registered afterwards: parsed, and its line built, at the next render.
  sent.labels({"b"}).inc(1);
  const std::string more = render(Format::kOpenMetrics);
  CHECK(testing::count_lines(more, "sent_bytes_created{peer=\"b\"} ") == 1);
  CHECK(testing::count_lines(more, "sent_bytes_created{peer=\"a\"} ") == 1);
}
