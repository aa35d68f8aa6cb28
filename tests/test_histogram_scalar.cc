// Histogram::bucket_of() without SIMD: the plain loop over the bounds that
// builds for other CPUs than x86-64 use, forced here with
// SHMETRICS_SCALAR_BUCKETS (this file alone is compiled with it), checked
// against std::lower_bound for every bound count up to 20 and rendered.
#define SHMETRICS_SCALAR_BUCKETS 1
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

using namespace shmetrics;
using testing::ScopedName;

TEST_CASE("the_scalar_bucket_search_is_the_first_bound_not_below_the_value") {
  ScopedName name("scalar-buckets");
  SegmentOptions o = testing::small_options(name.str(), 4, 4);
  o.capacities.cells = 1024;
  o.capacities.families = 64;
  Segment s = Segment::open(o);
  std::mt19937_64 rng(11);
  for (std::size_t n = 1; n <= 20; ++n) {
    std::vector<double> bounds;
    for (std::size_t i = 0; i < n; ++i) bounds.push_back(static_cast<double>(i) * 2 - 5);
    Histogram h = s.histogram_family("h" + std::to_string(n), "H.", {}, bounds).labels({});
    std::vector<double> probes = {-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
    for (double b : bounds) {
      probes.push_back(b);
      probes.push_back(std::nextafter(b, -1e9));
      probes.push_back(std::nextafter(b, 1e9));
    }
    std::uniform_real_distribution<double> any(-10, 45);
    for (int i = 0; i < 100; ++i) probes.push_back(any(rng));
    for (double v : probes) {
      auto expected = static_cast<std::uint32_t>(std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin());
      INFO("n=" << n << " v=" << v);
      REQUIRE(h.bucket_of(v) == expected);
    }
  }
  // Observed through this file's inline observe(): rendered exactly.
  Histogram h = s.histogram_family("scalar_seconds", "S.", {}, {0.25, 0.5, 1}).labels({});
  for (double v : {0.125, 0.25, 0.375, 0.5, 0.75, 1.0, 3.0, 3.0}) h.observe(v);
  const std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(testing::sample(text, "scalar_seconds_bucket{le=\"0.25\"}") == 2);
  CHECK(testing::sample(text, "scalar_seconds_bucket{le=\"0.5\"}") == 4);
  CHECK(testing::sample(text, "scalar_seconds_bucket{le=\"1\"}") == 6);
  CHECK(testing::sample(text, "scalar_seconds_count") == 8);
  CHECK(testing::sample(text, "scalar_seconds_sum") == 9);
}
