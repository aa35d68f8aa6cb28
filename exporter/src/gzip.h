// gzip (RFC 1952) with zlib, for scrapes that accept it.
#pragma once

#include <string>
#include <string_view>

namespace shmetrics::exporter {

// zlib's level 1: the exposition is text of a few KB to tens of MB read once
// per scrape, where speed pays more than the last percent of size.
inline constexpr int kGzipLevel = 1;

// `in` as one gzip member, at most `max_bytes` long; "" with `error` set when
// zlib fails or the output would be longer (text this compressible never
// is: a limit only an attacker's input could reach).
std::string gzip(std::string_view in, std::size_t max_bytes, std::string& error);

}  // namespace shmetrics::exporter
