// The segment's encoding of a list of strings (a family's label names, a
// series' label values, an info value): for each string its length as a
// uint32 in the machine's byte order, then its bytes, back to back. Writers
// encode with it and the exporter decodes with it, so both sides read the
// same format from one place.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace shmetrics::shm {

// `values` encoded into `out` (cleared first: a buffer kept between calls
// keeps its capacity).
void encode_string_list(std::string& out, std::span<const std::string_view> values);
std::string encode_string_list(std::span<const std::string_view> values);

// Decodes `bytes` into exactly `expected` strings of at most `max_each`
// bytes each, the bytes used up exactly. False when they are not that (a
// truncated length or string, a string too long, too many or too few, bytes
// left over): `out` then holds the strings decoded before the fault.
bool decode_string_list(std::string_view bytes, std::size_t expected, std::size_t max_each,
                        std::vector<std::string>& out);

}  // namespace shmetrics::shm
