// Counter values at their edges: increments above 32 bits on each path, and
// inc() of a double family. (Beside test_counters.cc because a process maps
// at most 15 segments, and each case here opens one.)
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <string>

using namespace shmetrics;
using testing::ScopedName;

namespace {

SegmentOptions options(const ScopedName& name) { return testing::small_options(name.str(), 8, 8); }

}  // namespace

TEST_CASE("increments_above_32_bits_are_exact_on_the_slow_and_the_inline_path") {
  ScopedName name("big-increments");
  Segment s = Segment::open(options(name));
  Counter c = s.counter("bytes_total", "Bytes.");
  constexpr std::uint64_t kBig = (std::uint64_t{1} << 40) + 3;
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            c.inc(kBig);      // a new process's first update: the slow path
            c.inc(kBig * 2);  // its slot and page held: inline
            return true;
          })) == 0);
  const std::string text = testing::scrape(name.str());
  CHECK(text.find("\nbytes_total " + std::to_string(kBig * 3) + "\n") != std::string::npos);
}

TEST_CASE("inc_without_an_amount_adds_one_to_a_double_counter") {
  // Found by the Python module: inc() wrote the integer 1 into a double
  // cell (5e-324, not 1).
  ScopedName name("double-inc");
  Segment s = Segment::open(options(name));
  Counter c = s.counter("ticks_total", "Ticks.", ValueType::kDouble);
  c.inc();
  c.inc(0.5);
  c.inc();
  REQUIRE(testing::wait_child(testing::fork_child([&] { c.inc(); return true; })) == 0);
  CHECK(testing::sample(testing::scrape(name.str()), "ticks_total") == 3.5);
}
