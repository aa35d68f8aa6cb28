// The C API (shmetrics/shmetrics_c.h): the C example's forked workers counted
// exactly, every refusal a status and a message naming what was wrong,
// handles no call filled in dropped, and the per-thread message.
#include "support.h"

#include <shmetrics/shmetrics.h>
#include <shmetrics/shmetrics_c.h>

#include <catch2/catch.hpp>

#include <spawn.h>
#include <sys/wait.h>

#include <cmath>
#include <string>
#include <thread>

using namespace shmetrics;
using testing::ScopedName;

extern char** environ;

namespace {

// Runs the C example: WORKERS forked workers serving REQUESTS each; its exit status.
int run_c_example(const std::string& segment, int workers, int requests) {
  const std::string w = std::to_string(workers), r = std::to_string(requests);
  char* argv[] = {const_cast<char*>(C_EXAMPLE), const_cast<char*>(segment.c_str()), const_cast<char*>(w.c_str()),
                  const_cast<char*>(r.c_str()), nullptr};
  pid_t pid = 0;
  if (::posix_spawn(&pid, C_EXAMPLE, nullptr, nullptr, argv, environ) != 0) return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

shmetrics_segment open_small(const ScopedName& name) {
  shmetrics_options o;
  shmetrics_options_init(&o);
  o.name = name.str().c_str();
  o.capacities.thread_slots = 8;
  o.capacities.process_records = 8;
  o.capacities.families = 16;
  o.capacities.series = 8;
  o.capacities.string_bytes = 8192;
  o.capacities.info_families = 2;
  o.capacities.info_value_bytes = 96;
  shmetrics_segment s;
  REQUIRE(shmetrics_open(&o, &s) == SHMETRICS_OK);
  return s;
}

std::string error() { return shmetrics_last_error(); }

}  // namespace

TEST_CASE("the C example's forked workers count exactly what they served") {
  ScopedName name("c-example");
  REQUIRE(run_c_example(name.str(), 4, 2500) == 0);
  const std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(testing::sample(text, "c_requests_total{route=\"/\"}") == 10000.0);
  CHECK(testing::sample(text, "c_request_duration_seconds_bucket{route=\"/\",le=\"0.001\"}") == 0.0);
  CHECK(testing::sample(text, "c_request_duration_seconds_bucket{route=\"/\",le=\"0.01\"}") == 10000.0);
  CHECK(testing::sample(text, "c_request_duration_seconds_count{route=\"/\"}") == 10000.0);
  CHECK(std::fabs(*testing::sample(text, "c_request_duration_seconds_sum{route=\"/\"}") - 50.0) < 1e-6);
  CHECK(testing::sample(text, "readyz_checks_total") == 10000.0);
  CHECK(testing::sample(text, "shmetrics_invalid_updates_total{role=\"test\"}") == 0.0);
  // The workers are gone: their live gauge and info values with them.
  CHECK(text.find("c_busy_workers ") == std::string::npos);
  CHECK(text.find("c_build_info{") == std::string::npos);
  // A second run adds to the same series.
  REQUIRE(run_c_example(name.str(), 2, 500) == 0);
  CHECK(testing::sample(testing::scrape(name.str()), "c_requests_total{route=\"/\"}") == 11000.0);
}

TEST_CASE("the C API's updates reach the exposition, invalid values are dropped and counted") {
  ScopedName name("c-updates");
  shmetrics_segment s = open_small(name);
  CHECK(std::string(shmetrics_segment_path(s)) == name.str());
  shmetrics_counter_family f;
  REQUIRE(shmetrics_counter_family_register(s, "c_bytes_total", "Bytes.", nullptr, 0, SHMETRICS_DOUBLE, "bytes", &f) ==
          SHMETRICS_OK);
  shmetrics_counter c;
  REQUIRE(shmetrics_counter_labels(f, nullptr, 0, &c) == SHMETRICS_OK);
  CHECK(shmetrics_counter_attached(c) == 1);
  shmetrics_counter_add(c, 1.5);
  shmetrics_counter_inc(c, 2);
  shmetrics_counter_add(c, -1);   // dropped, counted
  shmetrics_counter_add(c, NAN);  // dropped, counted
  const char* mode_label[] = {"kind"};
  const char* kind[] = {"a"};
  shmetrics_gauge_family gf;
  REQUIRE(shmetrics_gauge_family_register(s, "c_level", "Level.", mode_label, 1, "livemax", SHMETRICS_DOUBLE, nullptr,
                                          &gf) == SHMETRICS_OK);
  shmetrics_gauge g;
  REQUIRE(shmetrics_gauge_labels(gf, kind, 1, &g) == SHMETRICS_OK);
  shmetrics_gauge_set(g, 10);
  shmetrics_gauge_add(g, -2.5);
  shmetrics_gauge_add(g, 0.5);
  shmetrics_gauge_family tf;
  shmetrics_gauge t;
  REQUIRE(shmetrics_gauge_family_register(s, "c_last_seen_seconds", "When.", nullptr, 0, "mostrecent",
                                          SHMETRICS_DOUBLE, nullptr, &tf) == SHMETRICS_OK);
  REQUIRE(shmetrics_gauge_labels(tf, nullptr, 0, &t) == SHMETRICS_OK);
  const double before = static_cast<double>(std::time(nullptr));
  shmetrics_gauge_set_to_current_time(t);
  // An integer family gets whole seconds (a fraction would be refused).
  shmetrics_gauge_family itf;
  shmetrics_gauge it;
  REQUIRE(shmetrics_gauge_family_register(s, "c_started_seconds", "When.", nullptr, 0, "max", SHMETRICS_INTEGER,
                                          nullptr, &itf) == SHMETRICS_OK);
  REQUIRE(shmetrics_gauge_labels(itf, nullptr, 0, &it) == SHMETRICS_OK);
  shmetrics_gauge_set_to_current_time(it);
  shmetrics_info info;
  const char* version_label[] = {"version"};
  const char* version[] = {"9.9"};
  REQUIRE(shmetrics_info_register(s, "c_version_info", "Version.", version_label, 1, &info) == SHMETRICS_OK);
  shmetrics_info_set(info, version, 1);
  const std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(testing::sample(text, "c_bytes_total") == 3.5);
  CHECK(testing::sample(text, "c_level{kind=\"a\"}") == 8.0);
  CHECK(*testing::sample(text, "c_last_seen_seconds") >= before);
  CHECK(*testing::sample(text, "c_last_seen_seconds") <= before + 60);
  REQUIRE(testing::sample(text, "c_started_seconds"));
  CHECK(*testing::sample(text, "c_started_seconds") >= before);
  CHECK(*testing::sample(text, "c_started_seconds") <= before + 60);
  CHECK(testing::sample(text, "c_version_info{version=\"9.9\"}") == 1.0);
  CHECK(testing::sample(text, "shmetrics_invalid_updates_total{role=\"test\"}") == 2.0);
  // A wrong count of info values clears this process's value, counted.
  const char* two[] = {"9.9", "extra"};
  shmetrics_info_set(info, two, 2);
  const std::string after = testing::scrape(name.str());
  CHECK(after.find("c_version_info{") == std::string::npos);
  CHECK(testing::sample(after, "shmetrics_invalid_updates_total{role=\"test\"}") == 3.0);
  shmetrics_info_set(info, version, 1);
  shmetrics_info_clear(info);
  CHECK(testing::scrape(name.str()).find("c_version_info{") == std::string::npos);
}

TEST_CASE("each refusal of the C API is a status and a message saying what was wrong") {
  ScopedName name("c-refusals");
  shmetrics_segment s = open_small(name);
  shmetrics_counter_family f;
  shmetrics_gauge_family gf;
  shmetrics_histogram_family hf;
  const char* one[] = {"a"};

  CHECK(shmetrics_open(nullptr, nullptr) == SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("options is NULL"));
  shmetrics_options o;
  shmetrics_options_init(&o);
  o.directory = "/tmp";  // writable by others: refused, never created in
  o.name = "c-refused";
  shmetrics_segment bad;
  CHECK(shmetrics_open(&o, &bad) == SHMETRICS_ERR_SEGMENT);
  CHECK_THAT(error(), Catch::StartsWith("shmetrics_open: ") && Catch::Contains("/tmp is writable by group or others"));
  CHECK(std::string(shmetrics_segment_path(bad)).empty());
  // The failed open's handle registers nothing.
  CHECK(shmetrics_counter_family_register(bad, "x_total", "X.", nullptr, 0, SHMETRICS_INTEGER, nullptr, &f) ==
        SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("not given by a successful shmetrics_open"));

  CHECK(shmetrics_counter_family_register(s, "no_suffix", "X.", nullptr, 0, SHMETRICS_INTEGER, nullptr, &f) ==
        SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("no_suffix") && Catch::Contains("_total"));
  CHECK(shmetrics_counter_family_register(s, nullptr, "X.", nullptr, 0, SHMETRICS_INTEGER, nullptr, &f) ==
        SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("name is NULL"));
  CHECK(shmetrics_counter_family_register(s, "x_total", "X.", nullptr, 1, SHMETRICS_INTEGER, nullptr, &f) ==
        SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("label_names is NULL but its count is 1"));
  CHECK(shmetrics_counter_family_register(s, "x_total", "X.", nullptr, 0, static_cast<shmetrics_value_type>(7),
                                          nullptr, &f) == SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("value_type 7 is invalid"));
  CHECK(shmetrics_counter_family_register(s, "x_total", "X.", nullptr, 0, SHMETRICS_INTEGER, nullptr, nullptr) ==
        SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("out is NULL"));
  CHECK(shmetrics_gauge_family_register(s, "g", "G.", nullptr, 0, "livesmum", SHMETRICS_DOUBLE, nullptr, &gf) ==
        SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("mode \"livesmum\" is invalid: expected livesum"));
  const double unsorted[] = {1, 0.5};
  CHECK(shmetrics_histogram_family_register(s, "h_seconds", "H.", nullptr, 0, unsorted, 2, nullptr, &hf) ==
        SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("increasing"));
  CHECK(shmetrics_histogram_family_register(s, "h_seconds", "H.", nullptr, 0, nullptr, 3, nullptr, &hf) ==
        SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("bounds is NULL but bound_count is 3"));

  // The same name with another definition.
  REQUIRE(shmetrics_counter_family_register(s, "x_total", "X.", one, 1, SHMETRICS_INTEGER, nullptr, &f) ==
          SHMETRICS_OK);
  shmetrics_counter_family other;
  CHECK(shmetrics_counter_family_register(s, "x_total", "X.", nullptr, 0, SHMETRICS_INTEGER, nullptr, &other) ==
        SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("x_total"));
  // Label values: the wrong count, a NULL value, invalid UTF-8; the handle given is detached.
  shmetrics_counter c;
  CHECK(shmetrics_counter_labels(f, one, 0, &c) == SHMETRICS_ERR_INVALID);
  CHECK(shmetrics_counter_attached(c) == 0);
  const char* null_value[] = {nullptr};
  CHECK(shmetrics_counter_labels(f, null_value, 1, &c) == SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("values[0] is NULL"));
  const char* not_utf8[] = {"\xff"};
  CHECK(shmetrics_counter_labels(f, not_utf8, 1, &c) == SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("UTF-8"));
  shmetrics_counter_inc(c, 5);  // dropped
  CHECK(testing::scrape(name.str()).find("x_total{") == std::string::npos);
}

TEST_CASE("C handles no call filled in are detached: their updates are dropped") {
  shmetrics_counter c{};
  shmetrics_gauge g{};
  shmetrics_histogram h{};
  shmetrics_info i{};
  shmetrics_readyz r{};
  CHECK(shmetrics_counter_attached(c) == 0);
  CHECK(shmetrics_gauge_attached(g) == 0);
  CHECK(shmetrics_histogram_attached(h) == 0);
  shmetrics_counter_inc(c, 1);
  shmetrics_counter_add(c, 1);
  shmetrics_gauge_set(g, 1);
  shmetrics_gauge_add_int(g, 1);
  shmetrics_histogram_observe(h, 1);
  const char* v[] = {"x"};
  shmetrics_info_set(i, v, 1);
  shmetrics_info_clear(i);
  shmetrics_readyz_observe(r, 1);
  shmetrics_counter_family f{};
  CHECK(shmetrics_counter_labels(f, nullptr, 0, &c) == SHMETRICS_ERR_INVALID);
  CHECK_THAT(error(), Catch::Contains("not given by a successful registration"));
  CHECK(std::string(shmetrics_segment_path(shmetrics_segment{})).empty());
}

TEST_CASE("a series the full segment refuses is a detached handle whose updates are counted") {
  ScopedName name("c-full");
  shmetrics_segment s = open_small(name);  // 8 series
  const char* label[] = {"n"};
  shmetrics_counter_family f;
  REQUIRE(shmetrics_counter_family_register(s, "many_total", "M.", label, 1, SHMETRICS_INTEGER, nullptr, &f) ==
          SHMETRICS_OK);
  shmetrics_counter c;
  int attached = 0;
  for (int n = 0; n < 10; ++n) {
    const std::string value = std::to_string(n);
    const char* values[] = {value.c_str()};
    REQUIRE(shmetrics_counter_labels(f, values, 1, &c) == SHMETRICS_OK);
    attached += shmetrics_counter_attached(c);
  }
  CHECK(attached == 8);
  shmetrics_counter_inc(c, 3);  // the last, refused
  CHECK(testing::sample(testing::scrape(name.str()), "shmetrics_refused_series_updates_total{role=\"test\"}") == 1.0);
}

TEST_CASE("the C API's message is per thread") {
  shmetrics_segment none{};
  shmetrics_counter_family f;
  CHECK(shmetrics_counter_family_register(none, "a_total", "A.", nullptr, 0, SHMETRICS_INTEGER, nullptr, &f) ==
        SHMETRICS_ERR_INVALID);
  const std::string mine = error();
  std::string theirs;
  std::thread([&] {
    theirs = error();  // nothing failed in this thread yet
    shmetrics_open(nullptr, nullptr);
  }).join();
  CHECK(theirs.empty());
  CHECK(error() == mine);
}
