// The amplifying segment of the defects issue (item 3): a small, valid
// segment whose entries all point at the same strings, written byte by byte
// as an attacker with write access to the segment could. 2,048 counter families
// share one 4 KiB help text and one label-names block; their 2,048 series (one
// each) share one block of 32 label values of 4 KiB. Family 0 and series 0 own
// those strings, laid out as the registrar lays them out; every other entry
// only adds its own name. Read naively, the 336 KB file renders 277 MB.
#pragma once

#include <shmetrics/shm/layout.h>
#include <shmetrics/shm/string_list.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace shmetrics::testing {

struct AmplifyingShape {
  static constexpr std::uint32_t kFamilies = 2048;
  static constexpr std::uint32_t kLabels = 32;
  static constexpr std::uint32_t kValueBytes = 4096;
  static constexpr std::uint32_t kHelpBytes = 4096;
};

// The capacities the segment is created with (by the library, in a child).
inline shm::Capacities amplifying_capacities() {
  shm::Capacities c;
  c.thread_slots = 1;
  c.process_records = 1;
  c.families = AmplifyingShape::kFamilies;
  c.series = AmplifyingShape::kFamilies;
  c.gauge_series = 0;
  c.info_families = 0;
  c.info_value_bytes = 8;
  c.string_bytes = 192 * 1024;
  return c;
}

// The layout's encoding of label names and values.
inline std::string encode_strings(const std::vector<std::string>& parts) {
  std::vector<std::string_view> views(parts.begin(), parts.end());
  return shm::encode_string_list(views);
}

// Writes the entries, strings and counts into the existing, empty segment
// file `path` (created with amplifying_capacities()) through a writable mapping.
// Returns the bytes of string pool used.
inline std::uint32_t write_amplifying_entries(const std::string& path) {
  using S = AmplifyingShape;
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  struct stat st {};
  ::fstat(fd, &st);
  auto size = static_cast<std::size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw std::runtime_error("cannot map " + path);
  auto* base = static_cast<std::uint8_t*>(p);
  auto* header = reinterpret_cast<shm::Header*>(base);
  const std::uint64_t families_at = header->families_offset;
  const std::uint64_t series_at = header->series_offset;
  std::uint8_t* pool = base + header->strings_offset;
  const std::uint32_t pool_bytes = header->capacities.string_bytes;

  std::vector<std::string> label_names, label_values;
  for (std::uint32_t i = 0; i < S::kLabels; ++i) {
    char n[8];
    std::snprintf(n, sizeof n, "l%02u", i);
    label_names.emplace_back(n);
    std::string v(S::kValueBytes, 'v');
    std::memcpy(v.data(), n, 3);
    label_values.push_back(std::move(v));
  }
  const std::string help(S::kHelpBytes, 'h');
  const std::string names_block = encode_strings(label_names);
  const std::string values_block = encode_strings(label_values);

  std::uint32_t used = 0;
  auto append = [&](const std::string& s) {
    if (used + s.size() > pool_bytes) throw std::runtime_error("amplifying segment: pool too small");
    std::memcpy(pool + used, s.data(), s.size());
    used += static_cast<std::uint32_t>(s.size());
    return used - static_cast<std::uint32_t>(s.size());
  };
  auto family_name = [](std::uint32_t i) {
    char n[32];
    std::snprintf(n, sizeof n, "amp_%04u_total", i);
    return std::string(n);
  };
  // Family 0 and series 0 exactly as the registrar writes them: name, help,
  // label names, then the series' label values, each appended to the pool.
  const std::string name0 = family_name(0);
  const std::uint32_t name0_at = append(name0);
  const std::uint32_t help_at = append(help);
  const std::uint32_t names_at = append(names_block);
  const std::uint32_t values_at = append(values_block);
  for (std::uint32_t i = 0; i < S::kFamilies; ++i) {
    const std::string n = family_name(i);
    const std::uint32_t n_at = i == 0 ? name0_at : append(n);
    shm::FamilyEntry f{n_at, static_cast<std::uint32_t>(n.size()),
                       help_at, static_cast<std::uint32_t>(help.size()),
                       names_at, static_cast<std::uint32_t>(names_block.size()),
                       shm::MetricType::kCounter, shm::ValueType::kInteger, shm::GaugeMode::kNone,
                       static_cast<std::uint8_t>(S::kLabels), 0, 0, 0, 0, 0};
    std::memcpy(base + families_at + std::uint64_t{i} * sizeof f, &f, sizeof f);
    shm::SeriesEntry s{i, i, values_at, static_cast<std::uint32_t>(values_block.size()), 0};
    std::memcpy(base + series_at + std::uint64_t{i} * sizeof s, &s, sizeof s);
  }
  header->string_used.store(used, std::memory_order_release);
  header->series_count.store(0, std::memory_order_release);
  header->family_count.store(S::kFamilies, std::memory_order_release);
  header->series_count.store(S::kFamilies, std::memory_order_release);
  ::munmap(p, size);
  return used;
}

}  // namespace shmetrics::testing
