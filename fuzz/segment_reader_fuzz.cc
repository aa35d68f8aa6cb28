// libFuzzer target: the exporter's untrusted segment reader over arbitrary
// segment images (DESIGN.md invariants 7 and 11). Built and run by
// scripts/fuzz.sh.
//
// Whatever the bytes, SegmentReader must give an error or an exposition:
// never a crash, a hang or a read outside the image. The image lives in a heap
// buffer of exactly the image's size, so AddressSanitizer reports any read past
// its end. The exposition it produces is checked here (valid UTF-8, every line a
// comment or a well-formed sample, no duplicate family or series, no more
// bytes than the render's limit and no buffer grown past it); a violation is a
// __builtin_trap, which libFuzzer reports as a crash with its input.
// scripts/fuzz.sh bounds the time (-timeout) and memory (-rss_limit_mb,
// -malloc_limit_mb) of each input, so an input that makes the reader spend
// more than its limits is reported too.
//
// The same image is also served by a RoleSource, as the exporter serves a
// role: written to <default segment directory>/fuzz-<pid> (removed at exit,
// though not after a crash), opened, checked and scraped twice with the same
// limit; its body must be a well-formed exposition within the limit that says
// whether the segment was up. A reader refuses a segment whose semaphore set
// is not a real one of the right size, so when the image's header asks for a
// few (thread_slots + process_records up to kMaxFuzzSemaphores) the file's
// header is pointed at a real set of that size in this IPC namespace, with
// its token, made once per size and removed at exit; other images take the
// refusal path.
//
// How the input becomes an image:
//
//   raw       the input is the image, byte for byte (real segments, truncated
//             ones, broken headers).
//   0xA5 ...  the first byte 0xA5 asks for a *valid* header for small
//             capacities taken from the next 10 bytes (see kParamBytes), and the
//             rest of the image, from the end of the header's immutable prefix
//             (offset 192: registration lock, counts, events, entries, strings,
//             slots, records) to total_bytes, is filled with the remaining input
//             bytes, repeated as often as needed. So mutations land in the
//             families, series, strings, cells, info and readyz areas instead
//             of dying in the header check.
//
// Taken from the image itself (bytes the reader never reads, the padding of
// the header after gauge_cells_used; zero in a real segment):
//   bytes counts+32..+39  now_ns given to render() (CLOCK_MONOTONIC nanoseconds)
//   bytes counts+40..+47  a mask: record r counts as dead when bit r % 64 is set,
//                   so a real segment (zeros) has every record live.
//   bytes counts+48..+51  the renders' byte limit: 0 (a real segment) for
//                   1 MiB, else 1 KiB + the value % 256 KiB.
//
// Between the two renders (the second goes through the reader's incremental
// parse: families and series already parsed are kept, only new ones parsed),
// the image is changed as a writer or an attacker could change it: the last
// input byte's low 2 bits give 0-3 flips, each described by the 3 input bytes
// before it (walking backwards): a, b, x. When a's top bit is set the flip hits
// the header's published counts (offset of family_count + b % 28: family_count,
// series_count, string_used, info_count, readyz_used, gauge_cells_used,
// pages_used), else offset
// ((a & 0x7f) << 8 | b) % size. The byte there is XORed with x. After flips a
// fresh reader also renders the changed image.
//
// SHMETRICS_FUZZ_PRINT=1 in the environment prints each exposition or error
// to stderr (to look at what a seed renders: run the binary on the file).

#include "log.h"
#include "role_source.h"
#include "segment_reader.h"

#include <shmetrics/shm/layout.h>
#include <shmetrics/shm/names.h>
#include <shmetrics/shm/segment_file.h>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <memory>
#include <sys/sem.h>
#include <sys/stat.h>
#include <string>
#include <string_view>
#include <system_error>
#include <unistd.h>
#include <unordered_set>

namespace {

namespace shm = shmetrics::shm;
using shmetrics::exporter::kRoomAfterRender;
using shmetrics::exporter::RecordLiveness;
using shmetrics::exporter::RoleSource;
using shmetrics::exporter::SegmentReader;

constexpr std::size_t kImmutablePrefix = offsetof(shm::Header, registration_lock);  // 192
constexpr std::size_t kCountsOffset = offsetof(shm::Header, family_count);
constexpr std::size_t kCountsBytes = 28;  // seven uint32 counts
// Header padding after the counts, never read by the reader.
constexpr std::size_t kNowOffset = kCountsOffset + 32;
constexpr std::size_t kMaskOffset = kCountsOffset + 40;
constexpr std::size_t kLimitOffset = kCountsOffset + 48;
static_assert(offsetof(shm::Header, pages_used) + 4 == kCountsOffset + kCountsBytes);
static_assert(kCountsOffset + kCountsBytes <= kNowOffset, "now_ns must lie in header padding");
static_assert(kMaskOffset + 8 <= kLimitOffset);
static_assert(kLimitOffset + 4 <= offsetof(shm::Header, events), "limit must lie in header padding");

constexpr std::uint8_t kSyntheticTag = 0xA5;
constexpr std::size_t kParamBytes = 10;  // after the tag

bool print_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("SHMETRICS_FUZZ_PRINT");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  return enabled;
}

[[noreturn]] void fail(const char* what, std::string_view line) {
  std::fprintf(stderr, "segment_reader_fuzz: invariant violated: %s: line \"%.*s\"\n", what,
               static_cast<int>(line.size() > 300 ? 300 : line.size()), line.data());
  __builtin_trap();
}

// Heap copy of exactly `size` bytes, 64-byte aligned like a mapping (the reader
// loads atomics at the layout's offsets).
struct Image {
  std::uint8_t* data = nullptr;
  std::size_t size = 0;
  explicit Image(std::size_t n) : size(n) {
    void* p = nullptr;
    if (::posix_memalign(&p, shm::kCacheLine, n == 0 ? 1 : n) != 0) std::abort();
    data = static_cast<std::uint8_t*>(p);
  }
  ~Image() { std::free(data); }
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;
};

template <typename T>
void put(std::uint8_t* image, std::size_t offset, T value) {
  std::memcpy(image + offset, &value, sizeof value);
}

std::uint64_t get_u64(const std::uint8_t* image, std::size_t size, std::size_t offset) {
  std::uint64_t v = 0;
  if (size >= offset + 8) std::memcpy(&v, image + offset, 8);
  return v;
}

// The small capacities of the synthetic mode, from 10 parameter bytes.
shm::Capacities synthetic_capacities(const std::uint8_t* p) {
  shm::Capacities c;
  c.thread_slots = 1 + p[0] % 4;
  c.cell_pages = (p[0] >> 2) % 24;  // 0 (every slot every page) or a small pool
  c.process_records = 1 + p[1] % 4;
  c.families = 1 + p[2] % 8;
  c.series = 1 + p[3] % 16;
  c.gauge_series = p[3] / 16;  // 0-15, from the same byte
  c.string_bytes = 64 + (static_cast<std::uint32_t>(p[4]) | std::uint32_t{p[5]} << 8) % 449;
  c.info_families = p[6] % 3;
  c.info_value_bytes = 8 + p[7] % 57;
  c.readyz_short_window_seconds = 1 + p[8] % 5;
  c.readyz_long_window_seconds =
      c.readyz_short_window_seconds + p[9] % (11 - c.readyz_short_window_seconds);
  return c;
}

// Builds the synthetic image: a valid header for the capacities, then the
// payload repeated from offset 192 (the registration lock) to the end.
bool build_synthetic(const std::uint8_t* data, std::size_t size, std::unique_ptr<Image>& out) {
  if (size < 1 + kParamBytes) return false;
  const shm::Capacities c = synthetic_capacities(data + 1);
  shm::Geometry g{};
  if (!shm::compute_geometry(c, g)) __builtin_trap();  // cannot happen for these ranges
  out = std::make_unique<Image>(g.total_bytes);
  std::uint8_t* img = out->data;
  std::memset(img, 0, kImmutablePrefix);
  put(img, offsetof(shm::Header, magic), shm::kMagic);
  put(img, offsetof(shm::Header, layout_version), shm::kLayoutVersion);
  put(img, offsetof(shm::Header, header_bytes), static_cast<std::uint32_t>(sizeof(shm::Header)));
  put(img, offsetof(shm::Header, capacities), c);
  put(img, offsetof(shm::Header, total_bytes), g.total_bytes);
  put(img, offsetof(shm::Header, families_offset), g.families_offset);
  put(img, offsetof(shm::Header, series_offset), g.series_offset);
  put(img, offsetof(shm::Header, strings_offset), g.strings_offset);
  put(img, offsetof(shm::Header, slots_offset), g.slots_offset);
  put(img, offsetof(shm::Header, slot_stride), g.slot_stride);
  put(img, offsetof(shm::Header, records_offset), g.records_offset);
  put(img, offsetof(shm::Header, record_stride), g.record_stride);
  const std::uint8_t* payload = data + 1 + kParamBytes;
  const std::size_t n = size - 1 - kParamBytes;
  std::uint8_t* at = img + kImmutablePrefix;
  std::size_t left = g.total_bytes - kImmutablePrefix;
  if (n == 0) {
    std::memset(at, 0, left);
  } else {
    while (left > 0) {
      std::size_t k = left < n ? left : n;
      std::memcpy(at, payload, k);
      at += k;
      left -= k;
    }
  }
  return true;
}

bool is_metric_name(std::string_view s) { return shm::check_metric_name(s).empty(); }

bool is_label_name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         (!first && c >= '0' && c <= '9');
}

bool is_sample_value(std::string_view v) {
  if (v == "NaN" || v == "+Inf" || v == "-Inf") return true;
  if (v.empty()) return false;
  // Integers first: counters up to 2^64-1 do not all fit a double exactly but
  // from_chars<double> parses them anyway; both must consume the whole text.
  double d = 0;
  auto r = std::from_chars(v.data(), v.data() + v.size(), d);
  return (r.ec == std::errc() || r.ec == std::errc::result_out_of_range) &&
         r.ptr == v.data() + v.size();
}

// Parses `{name="value",...}` starting at line[i] == '{'; returns the index
// after '}' or npos.
std::size_t parse_labels(std::string_view line, std::size_t i) {
  ++i;  // '{'
  if (i < line.size() && line[i] == '}') return i + 1;
  for (;;) {
    std::size_t start = i;
    while (i < line.size() && is_label_name_char(line[i], i == start)) ++i;
    if (i == start || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"')
      return std::string_view::npos;
    i += 2;
    for (;;) {
      if (i >= line.size()) return std::string_view::npos;
      char c = line[i];
      if (c == '"') break;
      if (c == '\\') {
        if (i + 1 >= line.size()) return std::string_view::npos;
        char e = line[i + 1];
        if (e != '\\' && e != '"' && e != 'n') return std::string_view::npos;
        i += 2;
        continue;
      }
      ++i;
    }
    ++i;  // closing quote
    if (i >= line.size()) return std::string_view::npos;
    if (line[i] == '}') return i + 1;
    if (line[i] != ',') return std::string_view::npos;
    ++i;
  }
}

// Checks an exposition in the text format 0.0.4 as this exporter writes it:
// "# HELP name text" then "# TYPE name counter|gauge" then at least one sample
// of exactly that name; no family or series twice.
void check_exposition(const std::string& out) {
  if (!shm::is_valid_utf8(out)) fail("exposition is not valid UTF-8", out);
  if (out.empty()) return;
  if (out.back() != '\n') fail("exposition does not end with a newline", out);
  std::unordered_set<std::string_view> families;
  std::unordered_set<std::string_view> series;
  std::string_view family;       // of the last TYPE line
  std::string_view family_type;
  std::string_view help_family;  // of a HELP line waiting for its TYPE
  bool family_has_sample = true;
  // A histogram's series: its labels without le, its cumulative buckets so
  // far (never decreasing), whether +Inf was the last, which _count must equal.
  std::string_view histogram_labels;
  double last_bucket = 0;
  bool inf_last = false;
  bool in_histogram_series = false;  // its buckets begun, its _count not yet seen
  std::string_view text(out);
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    if (line.starts_with('#')) {
      if (!help_family.empty() && !line.starts_with("# TYPE ")) fail("HELP without TYPE", line);
      if (line.starts_with("# HELP ")) {
        if (!family_has_sample) fail("family without samples", family);
        std::string_view rest = line.substr(7);
        std::string_view name = rest.substr(0, rest.find(' '));
        if (name.size() == rest.size() || !is_metric_name(name)) fail("bad HELP line", line);
        help_family = name;
        // Help text: escaped (no raw newline, by construction of `line`);
        // a backslash only before '\' or 'n'.
        std::string_view help = rest.substr(name.size() + 1);
        for (std::size_t i = 0; i < help.size(); ++i) {
          if (help[i] != '\\') continue;
          if (i + 1 >= help.size() || (help[i + 1] != '\\' && help[i + 1] != 'n'))
            fail("bad escape in HELP", line);
          ++i;
        }
      } else if (line.starts_with("# TYPE ")) {
        std::string_view rest = line.substr(7);
        std::size_t sp = rest.find(' ');
        if (sp == std::string_view::npos) fail("bad TYPE line", line);
        std::string_view name = rest.substr(0, sp), type = rest.substr(sp + 1);
        if (!is_metric_name(name) ||
            (type != "counter" && type != "gauge" && type != "histogram" && type != "summary"))
          fail("bad TYPE line", line);
        if (name != help_family) fail("TYPE does not follow its HELP", line);
        if (!families.insert(name).second) fail("family twice", line);
        if (in_histogram_series) fail("histogram series without _count", line);
        family = name;
        family_type = type;
        help_family = {};
        family_has_sample = false;
      } else {
        fail("comment neither HELP nor TYPE", line);
      }
      continue;
    }
    if (!help_family.empty()) fail("HELP without TYPE", line);
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    std::string_view name = line.substr(0, i);
    if (!is_metric_name(name)) fail("bad sample name", line);
    const bool histogram = family_type == "histogram";
    std::string_view suffix;
    if (histogram || family_type == "summary") {
      if (!name.starts_with(family)) fail("sample outside its family", line);
      suffix = name.substr(family.size());
      if (suffix != "_sum" && suffix != "_count" && (!histogram || suffix != "_bucket"))
        fail("sample outside its family", line);
    } else if (name != family) {
      fail("sample outside its family", line);
    }
    const std::size_t labels_at = i;
    if (i < line.size() && line[i] == '{') {
      i = parse_labels(line, i);
      if (i == std::string_view::npos) fail("bad labels", line);
    }
    if (i >= line.size() || line[i] != ' ') fail("no space before the value", line);
    if (!series.insert(line.substr(0, i)).second) fail("series twice", line);
    std::string_view value = line.substr(i + 1);
    if (!is_sample_value(value)) fail("bad sample value", line);
    family_has_sample = true;
    if (!histogram) continue;
    // Labels inside the braces; a bucket's end in le="…", which the others lack.
    std::string_view labels = i > labels_at ? line.substr(labels_at + 1, i - labels_at - 2) : std::string_view{};
    const double v = std::strtod(std::string(value).c_str(), nullptr);
    if (suffix == "_bucket") {
      std::size_t le = labels.rfind("le=\"");
      if (le == std::string_view::npos || (le != 0 && labels[le - 1] != ',')) fail("bucket without le", line);
      std::string_view own = labels.substr(0, le == 0 ? 0 : le - 1);
      if (!in_histogram_series) {
        in_histogram_series = true;
        histogram_labels = own;
        last_bucket = 0;
      } else if (own != histogram_labels || inf_last) {
        fail("histogram series without its +Inf bucket, _sum and _count", line);
      }
      if (v < last_bucket) fail("cumulative bucket decreases", line);
      last_bucket = v;
      inf_last = labels.substr(le) == "le=\"+Inf\"";
    } else if (suffix == "_count") {
      if (!in_histogram_series || labels != histogram_labels || !inf_last || v != last_bucket)
        fail("_count is not its +Inf bucket", line);
      in_histogram_series = false;
      inf_last = false;
    } else if (!in_histogram_series || labels != histogram_labels || !inf_last) {
      fail("_sum outside its series", line);
    }
  }
  if (!help_family.empty()) fail("HELP without TYPE", help_family);
  if (!family_has_sample) fail("family without samples", family);
  if (in_histogram_series) fail("histogram series without _count", family);
}

// The byte limit of this image's renders.
std::size_t render_limit(const Image& image) {
  std::uint32_t v = 0;
  if (image.size >= kLimitOffset + 4) std::memcpy(&v, image.data + kLimitOffset, 4);
  return v == 0 ? std::size_t{1} << 20 : 1024 + v % (256 * 1024);
}

// Renders and checks; returns the exposition, or "error: ..." when render()
// gave an error.
std::string render_and_check(SegmentReader& reader, const Image& image, const char* what) {
  const std::size_t limit = render_limit(image);
  const std::uint64_t now_ns = get_u64(image.data, image.size, kNowOffset);
  const std::uint64_t dead_mask = get_u64(image.data, image.size, kMaskOffset);
  // Records past this reader's capacities never get asked about.
  const std::uint32_t records = reader.capacities().process_records;
  RecordLiveness live = [dead_mask, records](std::uint32_t record, std::uint32_t pid) {
    if (record >= records || pid == 0) __builtin_trap();  // the reader asked about nonsense
    return ((dead_mask >> (record % 64)) & 1) == 0;
  };
  std::string out;
  const std::size_t initial_capacity = out.capacity();
  std::string err = reader.render(out, live, now_ns, limit);
  if (out.capacity() > initial_capacity && out.capacity() > limit + kRoomAfterRender)
    fail("render grew its buffer past its limit and room", std::to_string(out.capacity()));
  if (reader.over_limit() && err.empty()) fail("over the limit without an error", out);
  if (print_enabled()) {
    if (err.empty())
      std::fprintf(stderr, "--- %s: %zu bytes of exposition\n%s", what, out.size(), out.c_str());
    else
      std::fprintf(stderr, "--- %s: error: %s\n", what, err.c_str());
  }
  if (!err.empty()) {
    if (!shm::is_valid_utf8(err)) fail("error message is not valid UTF-8", err);
    return "error: " + err;
  }
  if (out.size() > limit) fail("exposition larger than the render's limit", std::to_string(out.size()));
  check_exposition(out);
  // The same image in OpenMetrics, without the _created samples (the
  // default), then with them (--openmetrics-created: the most it writes,
  // their lines built after the series were parsed): bounded alike, UTF-8,
  // every line metadata or a sample with a value.
  for (const bool created : {false, true}) {
    reader.set_openmetrics_created(created);
    std::string om;
    const std::size_t om_initial_capacity = om.capacity();
    if (!reader.render(om, live, now_ns, limit, shmetrics::exporter::Format::kOpenMetrics).empty()) break;
    if (om.capacity() > om_initial_capacity && om.capacity() > limit + kRoomAfterRender)
      fail("OpenMetrics render grew its buffer past its limit and room", std::to_string(om.capacity()));
    if (om.size() > limit) fail("OpenMetrics exposition larger than the limit", std::to_string(om.size()));
    if (!shm::is_valid_utf8(om)) fail("OpenMetrics exposition is not valid UTF-8", om);
    std::string_view text(om);
    while (!text.empty()) {
      const std::size_t nl = text.find('\n');
      if (nl == std::string_view::npos) fail("OpenMetrics exposition does not end with a newline", om);
      std::string_view line = text.substr(0, nl);
      text.remove_prefix(nl + 1);
      if (line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.starts_with("# UNIT ")) continue;
      const std::size_t sp = line.rfind(' ');
      if (sp == std::string_view::npos || !is_sample_value(line.substr(sp + 1)))
        fail("bad OpenMetrics line", line);
    }
  }
  return out;
}

// The segment file RoleSource reads, one per fuzzing process (a plain array:
// the exit handler that removes it runs after static strings are destroyed).
char g_segment_path[256];

// Real semaphore sets by size, for images whose header asks for a few.
constexpr std::uint32_t kMaxFuzzSemaphores = 512;
std::map<std::uint32_t, int>* g_semaphore_sets = new std::map<std::uint32_t, int>;

// The id of a real semaphore set for `count` slots and records (plus the
// token's semaphores, spelling token 1), or -1.
int semaphore_set_of(std::uint32_t count) {
  if (count == 0 || count > kMaxFuzzSemaphores) return -1;
  auto [it, made] = g_semaphore_sets->emplace(count, -1);
  if (made) {
    it->second = ::semget(IPC_PRIVATE, static_cast<int>(count + shm::kTokenSemaphores), IPC_CREAT | 0600);
    union {
      int val;
    } one{1};
    if (it->second >= 0) ::semctl(it->second, static_cast<int>(count), SETVAL, one);
  }
  return it->second;
}

// Serves the image as the exporter serves a role, through a segment file.
void serve_and_check(const Image& image) {
  if (g_segment_path[0] == '\0') {
    const std::string dir = shm::default_segment_directory();
    shm::prepare_segment_directory(dir, 0600);
    std::snprintf(g_segment_path, sizeof g_segment_path, "%s/fuzz-%d", dir.c_str(), ::getpid());
    std::atexit([] {
      ::unlink(g_segment_path);
      for (const auto& [count, set] : *g_semaphore_sets) ::semctl(set, 0, IPC_RMID);
    });
  }
  const std::string name = g_segment_path;
  int fd = ::open(g_segment_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  for (std::size_t at = 0; at < image.size;) {
    ssize_t n = ::write(fd, image.data + at, image.size - at);
    if (n <= 0) std::abort();
    at += static_cast<std::size_t>(n);
  }
  if (image.size >= sizeof(shm::Header)) {
    shm::Capacities c{};
    std::memcpy(&c, image.data + offsetof(shm::Header, capacities), sizeof c);
    const std::uint64_t count = std::uint64_t{c.thread_slots} + c.process_records;
    if (int set = count <= kMaxFuzzSemaphores ? semaphore_set_of(static_cast<std::uint32_t>(count)) : -1; set >= 0) {
      const auto n = static_cast<std::uint32_t>(count);
      const std::uint64_t token = 1;
      struct stat ns {};  // the set lives in this IPC namespace
      ::stat("/proc/self/ns/ipc", &ns);
      const std::uint64_t ns_device = ns.st_dev, ns_inode = ns.st_ino;
      if (::pwrite(fd, &ns_device, 8, offsetof(shm::Header, ipc_namespace_device)) != 8 ||
          ::pwrite(fd, &ns_inode, 8, offsetof(shm::Header, ipc_namespace_inode)) != 8 ||
          ::pwrite(fd, &set, sizeof set, offsetof(shm::Header, semaphore_set)) != sizeof set ||
          ::pwrite(fd, &n, sizeof n, offsetof(shm::Header, semaphore_count)) != sizeof n ||
          ::pwrite(fd, &token, sizeof token, offsetof(shm::Header, semaphore_token)) != sizeof token)
        std::abort();
    }
  }
  ::close(fd);
  // The reader's limit is then render_limit(image), as for the renders below.
  const std::size_t limit = render_limit(image) + kRoomAfterRender;
  const std::uint64_t now_ns = get_u64(image.data, image.size, kNowOffset);
  RoleSource source("fuzz", name, [now_ns] { return now_ns; });
  source.set_max_scrape_bytes(limit);
  for (int scrape = 0; scrape < 2; ++scrape) {
    std::shared_ptr<const std::string> body = source.scrape_shared();
    if (print_enabled()) std::fprintf(stderr, "--- role scrape %d:\n%s", scrape + 1, body->c_str());
    if (body->size() > limit)
      fail("role body larger than --max-scrape-bytes", std::to_string(body->size()));
    check_exposition(*body);
    if (body->find("\nshmetrics_segment_up{role=\"fuzz\"} ") == std::string::npos)
      fail("role body without shmetrics_segment_up", *body);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (!print_enabled()) shmetrics::exporter::set_log_output(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::unique_ptr<Image> image;
  if (size > 0 && data[0] == kSyntheticTag) {
    if (!build_synthetic(data, size, image)) return 0;
  } else {
    image = std::make_unique<Image>(size);
    if (size > 0) std::memcpy(image->data, data, size);
  }

  serve_and_check(*image);

  SegmentReader reader(image->data, image->size);
  if (print_enabled() && !reader.error().empty())
    std::fprintf(stderr, "--- header: %s\n", reader.error().c_str());
  if (!reader.error().empty() && reader.error().find_first_of('\n') != std::string::npos)
    fail("header error spans lines", reader.error());
  const std::string first = render_and_check(reader, *image, "render 1");

  // Flips from the input's tail, then the incremental render.
  int flips = size > 0 ? data[size - 1] & 3 : 0;
  std::size_t at = size > 0 ? size - 1 : 0;
  int done = 0;
  for (int k = 0; k < flips && at >= 3 && image->size > 0; ++k, ++done) {
    std::uint8_t a = data[at - 3], b = data[at - 2], x = data[at - 1];
    at -= 3;
    std::size_t offset = (a & 0x80) ? kCountsOffset + b % kCountsBytes
                                    : ((std::size_t{a} & 0x7f) << 8 | b) % image->size;
    if (offset < image->size) image->data[offset] ^= x;
  }
  const std::string second = render_and_check(reader, *image, "render 2");
  // The same image, the same liveness and time: the same exposition.
  if (done == 0 && second != first) fail("second render of an unchanged image differs", second);
  if (done > 0) {
    SegmentReader fresh(image->data, image->size);
    render_and_check(fresh, *image, "fresh reader after flips");
  }
  return 0;
}
