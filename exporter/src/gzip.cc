#include "gzip.h"

#include <zlib.h>

#include <algorithm>

namespace shmetrics::exporter {

std::string gzip(std::string_view in, std::size_t max_bytes, std::string& error) {
  if (in.size() > 0xffffffffu) {  // zlib's counts are 32-bit
    error = "the exposition is too large to compress";
    return {};
  }
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer; memLevel 8, zlib's default.
  if (deflateInit2(&z, kGzipLevel, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    error = "zlib could not start a deflate stream";
    return {};
  }
  std::string out;
  out.resize(std::min<std::size_t>(deflateBound(&z, in.size()), max_bytes));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  const std::size_t written = out.size() - z.avail_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    error = "the compressed exposition would take more than " + std::to_string(max_bytes) + " bytes";
    return {};
  }
  out.resize(written);
  // A body lives while it is sent: it keeps only the compressed size, not
  // deflateBound's (about the uncompressed size).
  out.shrink_to_fit();
  return out;
}

}  // namespace shmetrics::exporter
