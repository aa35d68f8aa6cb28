// make_amplifying_segment NAME: creates the segment NAME (in the default
// segment directory, or an absolute path) with
// libshmetrics and fills it with the amplifying entries of
// amplifying_segment.h, for script tests of the exporter binary. The caller
// removes the segment.
#include "amplifying_segment.h"

#include <shmetrics/shmetrics.h>

#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_amplifying_segment NAME\n");
    return 2;
  }
  try {
    shmetrics::SegmentOptions options;
    options.name = argv[1];
    options.capacities = shmetrics::testing::amplifying_capacities();
    shmetrics::Segment segment = shmetrics::Segment::open(options);
    std::uint32_t used = shmetrics::testing::write_amplifying_entries(segment.path());
    std::printf("%s: %u families and series sharing strings, %u bytes of strings\n", argv[1],
                shmetrics::testing::AmplifyingShape::kFamilies, used);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_amplifying_segment: %s\n", e.what());
    return 1;
  }
  return 0;
}
