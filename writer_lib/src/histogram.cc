// Histograms' bucket helpers and the observations that miss the inline path.
#include "process_segments.h"

#include <shmetrics/histogram.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace shmetrics {

std::vector<double> default_buckets() { return {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}; }

namespace {

void check_bounds(const char* helper, const std::vector<double>& bounds) {
  for (double b : bounds)
    if (!std::isfinite(b))
      throw std::invalid_argument(std::string(helper) + ": bound " + std::to_string(&b - bounds.data()) +
                                  " is not finite: choose a smaller start, width, factor or count");
}

}  // namespace

std::vector<double> linear_buckets(double start, double width, std::size_t count) {
  if (count < 1) throw std::invalid_argument("linear_buckets: count is 0, expected at least 1");
  if (!std::isfinite(start)) throw std::invalid_argument("linear_buckets: start must be finite");
  if (!(width > 0)) throw std::invalid_argument("linear_buckets: width must be > 0");
  if (count > shm::kMaxBuckets)
    throw std::invalid_argument("linear_buckets: count " + std::to_string(count) + " is more than the " +
                                std::to_string(shm::kMaxBuckets) + " buckets a histogram may have");
  std::vector<double> out(count);
  for (std::size_t i = 0; i < count; ++i) out[i] = start + width * static_cast<double>(i);
  check_bounds("linear_buckets", out);
  return out;
}

std::vector<double> exponential_buckets(double start, double factor, std::size_t count) {
  if (count < 1) throw std::invalid_argument("exponential_buckets: count is 0, expected at least 1");
  if (!(start > 0) || !std::isfinite(start))
    throw std::invalid_argument("exponential_buckets: start must be finite and > 0");
  if (!(factor > 1) || !std::isfinite(factor))
    throw std::invalid_argument("exponential_buckets: factor must be finite and > 1");
  if (count > shm::kMaxBuckets)
    throw std::invalid_argument("exponential_buckets: count " + std::to_string(count) + " is more than the " +
                                std::to_string(shm::kMaxBuckets) + " buckets a histogram may have");
  std::vector<double> out(count);
  double b = start;
  for (std::size_t i = 0; i < count; ++i, b *= factor) out[i] = b;
  check_bounds("exponential_buckets", out);
  return out;
}

}  // namespace shmetrics

namespace shmetrics::detail {

void histogram_observe_slow(std::uint16_t segment, std::uint32_t count, double v) noexcept {
  if (segment == kDetachedSegment)  // a refused handle: no bounds, its first cell its real segment
    return count_event(static_cast<std::uint16_t>(count), shm::kEventRefusedUpdates);
  counter_add_slow(segment, count, 1);
  counter_add_double_slow(segment, count + 1, v);
}

}  // namespace shmetrics::detail
