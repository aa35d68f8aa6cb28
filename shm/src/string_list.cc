#include <shmetrics/shm/string_list.h>

#include <cstdint>
#include <cstring>

namespace shmetrics::shm {

void encode_string_list(std::string& out, std::span<const std::string_view> values) {
  out.clear();
  for (std::string_view v : values) {
    const auto n = static_cast<std::uint32_t>(v.size());
    out.append(reinterpret_cast<const char*>(&n), sizeof n);
    out.append(v);
  }
}

std::string encode_string_list(std::span<const std::string_view> values) {
  std::string out;
  encode_string_list(out, values);
  return out;
}

bool decode_string_list(std::string_view bytes, std::size_t expected, std::size_t max_each,
                        std::vector<std::string>& out) {
  out.clear();
  while (!bytes.empty()) {
    std::uint32_t n;
    if (bytes.size() < sizeof n || out.size() >= expected) return false;
    std::memcpy(&n, bytes.data(), sizeof n);
    bytes.remove_prefix(sizeof n);
    if (n > bytes.size() || n > max_each) return false;
    out.emplace_back(bytes.substr(0, n));
    bytes.remove_prefix(n);
  }
  return out.size() == expected;
}

}  // namespace shmetrics::shm
