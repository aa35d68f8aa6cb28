// make_corpus: writes the seed corpus of fuzz/segment_reader_fuzz.cc.
//
// Usage: make_corpus OUT_DIR   (fuzz/make_corpus.sh builds and runs it)
//
// Creates a few small real segments with libshmetrics (in the default segment
// directory, names fzc<pid>.<what>, removed before exit), records into them from this
// process, from forked children and from extra threads, and writes each image
// twice: raw (the file's bytes) and in the fuzz target's synthetic form (0xA5,
// 10 capacity bytes, then the image from offset 128 on), which reproduces the
// same image. The capacities are inside the synthetic mode's ranges. A few
// variants exercise the target's other knobs: dead records, a late clock, a
// truncated image, a liveall family with a "pid" label, and published counts lowered in the image and raised back
// by the target's between-render flips (the incremental parse), a render
// limit the exposition exceeds, and a family whose help is another's.
//
// In every image the header padding carries what the target reads there:
// bytes 352..359 now_ns (the fake readyz clock's "now"), 360..367 the mask of
// dead records (0: all live), 368..371 the renders' byte limit (0: 1 MiB).
#include <shmetrics/shmetrics.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

namespace shm = shmetrics::shm;
using Bytes = std::vector<std::uint8_t>;

// As fuzz/segment_reader_fuzz.cc reads them: header padding after the counts.
constexpr std::size_t kNowOffset = offsetof(shm::Header, family_count) + 32;
constexpr std::size_t kMaskOffset = offsetof(shm::Header, family_count) + 40;
constexpr std::size_t kLimitOffset = offsetof(shm::Header, family_count) + 48;
static_assert(offsetof(shm::Header, pages_used) + 4 <= kNowOffset);
static_assert(kLimitOffset + 4 <= offsetof(shm::Header, events));
constexpr std::size_t kPrefix = offsetof(shm::Header, registration_lock);
constexpr std::size_t kFamilyCount = offsetof(shm::Header, family_count);
constexpr std::size_t kSeriesCount = offsetof(shm::Header, series_count);
constexpr std::uint64_t kSecond = 1'000'000'000ULL;

// The readyz clock: seconds we choose, shared with forked children by copy.
class FakeClock final : public shmetrics::Clock {
 public:
  std::uint64_t now_ns() const noexcept override { return ns.load(std::memory_order_relaxed); }
  std::atomic<std::uint64_t> ns{1000 * kSecond};
};
FakeClock g_clock;

std::string g_out_dir;
std::vector<std::string> g_created;
int g_files = 0;
std::size_t g_bytes = 0;

void cleanup() {
  for (const auto& name : g_created) shm::remove_segment(name);
  g_created.clear();
}

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "make_corpus: %s\n", message.c_str());
  cleanup();
  std::exit(1);
}

shmetrics::Segment open_segment(const std::string& what, const shm::Capacities& caps) {
  shmetrics::SegmentOptions options;
  options.instance = "fzc" + std::to_string(::getpid());
  options.role = what;
  options.capacities = caps;
  shmetrics::Segment segment = shmetrics::Segment::open(options);
  g_created.push_back(segment.path());
  return segment;
}

Bytes read_image(const shmetrics::Segment& segment) {
  std::ifstream in(segment.path(), std::ios::binary);
  if (!in) die("cannot read " + segment.path());
  Bytes bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  shm::Header h;
  if (bytes.size() < sizeof h) die(segment.path() + " is shorter than a header");
  std::memcpy(static_cast<void*>(&h), bytes.data(), kPrefix);
  if (bytes.size() != h.total_bytes)
    die(segment.path() + ": file is " + std::to_string(bytes.size()) + " bytes, header says " +
        std::to_string(h.total_bytes));
  return bytes;
}

template <typename T>
void put(Bytes& b, std::size_t offset, T v) {
  std::memcpy(b.data() + offset, &v, sizeof v);
}
template <typename T>
T get(const Bytes& b, std::size_t offset) {
  T v;
  std::memcpy(&v, b.data() + offset, sizeof v);
  return v;
}

void write_file(const std::string& name, const Bytes& bytes) {
  std::string path = g_out_dir + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) die("cannot write " + path);
  ++g_files;
  g_bytes += bytes.size();
  std::printf("  %-28s %6zu bytes\n", name.c_str(), bytes.size());
}

// The synthetic form: 0xA5, the capacities as the target decodes them, then
// the image from the registration lock on. Its image is exactly `image`.
Bytes synthetic(const Bytes& image) {
  shm::Capacities c;
  std::memcpy(&c, image.data() + offsetof(shm::Header, capacities), sizeof c);
  if (c.thread_slots < 1 || c.thread_slots > 4 || c.process_records < 1 || c.process_records > 4 ||
      c.families < 1 || c.families > 8 || c.series < 1 || c.series > 16 || c.string_bytes < 64 ||
      c.string_bytes > 512 || c.info_families > 2 || c.info_value_bytes < 8 ||
      c.info_value_bytes > 64 || c.readyz_short_window_seconds < 1 ||
      c.readyz_short_window_seconds > 5 || c.readyz_long_window_seconds > 10 || c.cell_pages > 23 ||
      c.cells != 0)
    die("capacities outside the synthetic mode's ranges: " + shm::describe(c));
  const std::uint32_t sb = c.string_bytes - 64;
  Bytes out = {0xA5,
               static_cast<std::uint8_t>((c.thread_slots - 1) | c.cell_pages << 2),
               static_cast<std::uint8_t>(c.process_records - 1),
               static_cast<std::uint8_t>(c.families - 1),
               static_cast<std::uint8_t>(c.series - 1),
               static_cast<std::uint8_t>(sb & 0xff),
               static_cast<std::uint8_t>(sb >> 8),
               static_cast<std::uint8_t>(c.info_families),
               static_cast<std::uint8_t>(c.info_value_bytes - 8),
               static_cast<std::uint8_t>(c.readyz_short_window_seconds - 1),
               static_cast<std::uint8_t>(c.readyz_long_window_seconds - c.readyz_short_window_seconds)};
  out.insert(out.end(), image.begin() + kPrefix, image.end());
  return out;
}

void write_both(const std::string& name, const Bytes& image) {
  write_file("raw-" + name, image);
  write_file("syn-" + name, synthetic(image));
}

// Runs `body` in a forked child that leaves with _exit (its records and slots
// stay in the segment, its locks go: liveness is the fuzz target's business).
template <typename Body>
void in_child(Body body) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) die(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    int rc = 0;
    try {
      body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "make_corpus child: %s\n", e.what());
      rc = 1;
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die("a child failed");
}

void observe_at(const shmetrics::Readyz& r, std::uint64_t second, bool ok) {
  g_clock.ns.store(second * kSecond + 250'000'000, std::memory_order_relaxed);
  r.observe(ok);
}

// Every metric type, three processes, readyz over a few seconds.
Bytes make_basic() {
  shm::Capacities caps;
  caps.thread_slots = 4;
  caps.process_records = 4;
  caps.families = 8;
  caps.series = 16;
  caps.gauge_series = 16;
  caps.cell_pages = 3;  // fewer than 4 slots x 2 pages: some updates go through the overflow slot
  caps.string_bytes = 512;
  caps.info_families = 1;
  caps.info_value_bytes = 64;
  caps.readyz_short_window_seconds = 5;
  caps.readyz_long_window_seconds = 10;
  shmetrics::Segment s = open_segment("basic", caps);

  auto requests = s.counter("requests_total", "Requests.");
  auto http = s.counter_family("http_requests_total", "By route\\code\nand more.", {"route", "code"});
  auto seconds = s.counter("busy_seconds_total", "Seconds busy.", shm::ValueType::kDouble);
  auto busy = s.gauge("busy", "Busy workers.", shmetrics::GaugeMode::kLiveSum);
  auto peak = s.gauge("peak", "Peak.", shmetrics::GaugeMode::kLiveMax);
  auto low = s.gauge("low", "Low.", shmetrics::GaugeMode::kLiveMin);
  auto temp = s.gauge_family("temp", "Per process.", {"zone"}, shmetrics::GaugeMode::kLiveAll);
  auto build = s.info("build_info", "Build.", {"version", "etag"});
  auto readyz = s.readyz(g_clock);

  requests.inc(5);
  http.labels({"/", "200"}).inc(3);
  http.labels({"/a\"b\\c\nd", "500"}).inc();
  http.labels({"\xc3\xa9\xe2\x9c\x93", "404"}).inc(2);
  seconds.inc(0.25);
  seconds.inc(1.5);
  busy.set(1);
  peak.set(10);
  low.set(-3);
  temp.labels({"a"}).set(21.5);
  build.set({"1.0", "abc"});
  for (std::uint64_t sec = 990; sec <= 1000; ++sec) observe_at(readyz, sec, sec % 3 != 0);

  for (int child = 0; child < 2; ++child) {
    in_child([&, child] {
      requests.inc(7);
      http.labels({"/", "200"}).inc(1);
      seconds.inc(0.125);
      busy.set(child + 2);
      peak.set(child == 0 ? 1e300 : -0.0);
      low.set(child == 0 ? 5 : -1e-310);
      temp.labels({"a"}).set(child);
      temp.labels({"b"}).set(1.0 / 3);
      build.set({child == 0 ? "1.0" : "2.0", child == 0 ? "abc" : "d\"e"});
      observe_at(readyz, 999, false);
      observe_at(readyz, 1000, true);
    });
  }
  Bytes image = read_image(s);
  put<std::uint64_t>(image, kNowOffset, 1000 * kSecond + 500'000'000);
  return image;
}

// Histograms (one with a unit) observed by the parent and by a child that
// left, NaN dropped, infinities at both ends; a counter with a unit.
Bytes make_histogram() {
  shm::Capacities caps;
  caps.thread_slots = 2;
  caps.process_records = 2;
  caps.families = 3;
  // And as many cells (the synthetic form has no cells of its own): the
  // counter's (0), then from even cells a histogram series of 3 bounds (2-9)
  // and one of 2 (10-15).
  caps.series = 16;
  caps.gauge_series = 1;
  caps.string_bytes = 512;
  caps.info_families = 0;
  caps.info_value_bytes = 8;
  caps.readyz_short_window_seconds = 1;
  caps.readyz_long_window_seconds = 2;
  shmetrics::Segment s = open_segment("histogram", caps);
  auto wait = s.histogram_family("wait_seconds", "Wait.", {"route"}, {0.5, 1, 2.5}, "seconds");
  auto sent = s.counter_family("sent_bytes_total", "Sent.", {}, shm::ValueType::kInteger, "bytes").labels({});
  auto sizes = s.histogram_family("size", "Sizes.", {}, {1e-5, 1e6});
  wait.labels({"/b\"x"}).observe(0.25);
  wait.labels({"/b\"x"}).observe(1);
  wait.labels({"/b\"x"}).observe(std::numeric_limits<double>::infinity());
  sizes.labels({}).observe(std::nan(""));
  sizes.labels({}).observe(-std::numeric_limits<double>::infinity());
  sent.inc(512);
  in_child([&] {
    wait.labels({"/b\"x"}).observe(3);
    sizes.labels({}).observe(5e5);
    sent.inc(1);
  });
  return read_image(s);
}

// Summaries (2 cells a series): one with a negative sum, one observed by a
// process that died, and a counter beside them.
Bytes make_summary() {
  shm::Capacities caps;
  caps.thread_slots = 2;
  caps.process_records = 2;
  caps.families = 3;
  caps.series = 8;
  caps.gauge_series = 1;
  caps.string_bytes = 256;
  caps.info_families = 0;
  caps.info_value_bytes = 8;
  caps.readyz_short_window_seconds = 1;
  caps.readyz_long_window_seconds = 2;
  shmetrics::Segment s = open_segment("summary", caps);
  auto payload = s.summary_family("payload_bytes", "Payloads.", {"k"}, "bytes");
  auto wait = s.summary_family("wait", "Waits.");
  auto sent = s.counter("sent_total", "Sent.");
  payload.labels({"up"}).observe(3.5);
  payload.labels({"down"}).observe(-1);
  sent.inc(2);
  in_child([&] {
    payload.labels({"up"}).observe(1);
    wait.labels({}).observe(0.25);
  });
  return read_image(s);
}

// Two info families, values refused for length, a cleared value; an integer
// sum gauge near the int64 limit.
Bytes make_info() {
  shm::Capacities caps;
  caps.thread_slots = 2;
  caps.process_records = 3;
  caps.families = 4;
  caps.series = 5;
  caps.gauge_series = 4;
  caps.string_bytes = 256;
  caps.info_families = 2;
  caps.info_value_bytes = 24;
  caps.readyz_short_window_seconds = 1;
  caps.readyz_long_window_seconds = 2;
  shmetrics::Segment s = open_segment("info", caps);
  auto version = s.info("version_info", "Version.", {"v"});
  auto map = s.info("map_info", "Map.", {"etag", "path"});
  auto up = s.gauge("up", "Up.", shmetrics::GaugeMode::kLiveMax);
  auto queued = s.gauge("queued", "Queued, integer.", shmetrics::GaugeMode::kSum, shm::ValueType::kInteger);
  version.set({"1"});
  map.set({"e1", "/m"});
  up.set(1);
  queued.set(-7);
  in_child([&] {
    queued.inc(INT64_MAX);
    version.set({"2"});
    map.set({"far too long a value for this area", "/x"});  // refused, counted
    up.set(0);
  });
  in_child([&] {
    version.set({"\xf0\x9f\x99\x82"});
    map.set({"e2", ""});
    map.clear();
  });
  Bytes image = read_image(s);
  put<std::uint64_t>(image, kNowOffset, 5 * kSecond);
  return image;
}

// Families and series at capacity: refusals counted in the events.
Bytes make_full() {
  shm::Capacities caps;
  caps.thread_slots = 1;
  caps.process_records = 1;
  caps.families = 2;
  caps.series = 3;
  caps.gauge_series = 3;
  caps.string_bytes = 128;
  caps.info_families = 0;
  caps.info_value_bytes = 8;
  caps.readyz_short_window_seconds = 2;
  caps.readyz_long_window_seconds = 4;
  shmetrics::Segment s = open_segment("full", caps);
  auto f = s.counter_family("jobs_total", "Jobs.", {"kind"});
  for (const char* kind : {"a", "b", "c", "d", "e"}) f.labels({kind}).inc();  // d, e refused
  auto g = s.gauge("depth", "Depth.", shmetrics::GaugeMode::kLiveSum);
  g.set(4);
  try {
    s.counter("more_total", "No room.");
  } catch (const shm::SegmentError&) {
    // expected: no room for a third family
  }
  f.labels({"a"}).inc(-1.0);  // invalid, counted
  return read_image(s);
}

// Nothing registered.
Bytes make_empty() {
  shm::Capacities caps;
  caps.thread_slots = 1;
  caps.process_records = 1;
  caps.families = 1;
  caps.series = 1;
  caps.gauge_series = 1;
  caps.string_bytes = 64;
  caps.info_families = 0;
  caps.info_value_bytes = 8;
  caps.readyz_short_window_seconds = 1;
  caps.readyz_long_window_seconds = 1;
  return read_image(open_segment("empty", caps));
}

// More threads than slots: the overflow slot, readyz included.
Bytes make_overflow() {
  shm::Capacities caps;
  caps.thread_slots = 1;
  caps.process_records = 2;
  caps.families = 4;
  caps.series = 8;
  caps.gauge_series = 8;
  caps.string_bytes = 200;
  caps.info_families = 0;
  caps.info_value_bytes = 8;
  caps.readyz_short_window_seconds = 3;
  caps.readyz_long_window_seconds = 7;
  shmetrics::Segment s = open_segment("overflow", caps);
  auto hits = s.counter("hits_total", "Hits.");
  auto ratio = s.counter("ratio_total", "Fractions.", shm::ValueType::kDouble);
  auto readyz = s.readyz(g_clock);
  observe_at(readyz, 2000, true);
  hits.inc(1);  // this thread takes the only slot and keeps it
  std::thread other([&] {
    hits.inc(41);
    ratio.inc(0.5);
    observe_at(readyz, 2001, false);
  });
  other.join();
  Bytes image = read_image(s);
  put<std::uint64_t>(image, kNowOffset, 2001 * kSecond);
  return image;
}

// Published counts lowered to `families`/`series` in the image, and a tail
// that asks the fuzz target to XOR them back between its two renders.
Bytes with_growth(Bytes image, std::uint32_t families, std::uint32_t series) {
  const auto fc = get<std::uint32_t>(image, kFamilyCount);
  const auto sc = get<std::uint32_t>(image, kSeriesCount);
  if (families > fc || series > sc || fc > 255 || sc > 255) die("with_growth: bad counts");
  put<std::uint32_t>(image, kFamilyCount, families);
  put<std::uint32_t>(image, kSeriesCount, series);
  // Walking back from the last byte: n=2, then flip 1 (a, b, x), then flip 2.
  const std::size_t n = image.size();
  for (std::size_t i = n - 7; i < n; ++i)
    if (image[i] != 0) die("with_growth: the image's last bytes are in use");
  image[n - 1] = 2;
  image[n - 4] = 0x80;
  image[n - 3] = kFamilyCount - 192;
  image[n - 2] = static_cast<std::uint8_t>(families ^ fc);
  image[n - 7] = 0x80;
  image[n - 6] = kSeriesCount - 192;
  image[n - 5] = static_cast<std::uint8_t>(series ^ sc);
  return image;
}

// A corruption the writer refuses: the liveall gauge family `family` (one
// label, "zone") renamed to label "pid", which the reader must drop.
Bytes with_pid_label(Bytes image, std::uint32_t family) {
  const auto families_offset = get<std::uint64_t>(image, offsetof(shm::Header, families_offset));
  const auto strings_offset = get<std::uint64_t>(image, offsetof(shm::Header, strings_offset));
  const std::size_t entry = families_offset + family * sizeof(shm::FamilyEntry);
  const auto off = get<std::uint32_t>(image, entry + offsetof(shm::FamilyEntry, label_names_offset));
  const auto len = get<std::uint32_t>(image, entry + offsetof(shm::FamilyEntry, label_names_length));
  std::uint8_t* pool = image.data() + strings_offset + off;
  if (len != 8 || std::memcmp(pool, "\x04\0\0\0zone", 8) != 0)
    die("with_pid_label: family " + std::to_string(family) + " is not the liveall family");
  std::memcpy(pool, "\x03\0\0\0pid", 7);
  put<std::uint32_t>(image, entry + offsetof(shm::FamilyEntry, label_names_length), 7);
  return image;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus OUT_DIR\n");
    return 2;
  }
  g_out_dir = argv[1];
  try {
    Bytes basic = make_basic();
    write_both("basic", basic);
    write_both("info", make_info());
    write_both("histogram", make_histogram());
    write_both("summary", make_summary());
    write_both("full", make_full());
    write_both("empty", make_empty());
    write_both("overflow", make_overflow());

    Bytes dead = basic;
    put<std::uint64_t>(dead, kMaskOffset, 0b0101);  // records 0 and 2 dead
    write_both("basic-dead", dead);
    Bytes late = basic;
    put<std::uint64_t>(late, kNowOffset, 100000 * kSecond);  // readyz windows empty
    write_file("raw-basic-late", late);
    write_both("basic-grow", with_growth(basic, 3, 2));
    write_file("raw-basic-pid-label", with_pid_label(basic, 6));
    write_file("raw-basic-truncated", Bytes(basic.begin(), basic.end() - 1));
    write_file("raw-header-only", Bytes(basic.begin(), basic.begin() + sizeof(shm::Header)));
    Bytes limited = basic;
    put<std::uint32_t>(limited, kLimitOffset, 1);  // 1,025 bytes: less than its exposition
    write_both("basic-limited", limited);
    Bytes shared = basic;  // family 1's help is family 0's: both own those bytes
    const auto families = get<std::uint64_t>(shared, offsetof(shm::Header, families_offset));
    put<std::uint32_t>(shared, families + sizeof(shm::FamilyEntry) + offsetof(shm::FamilyEntry, help_offset),
                       get<std::uint32_t>(shared, families + offsetof(shm::FamilyEntry, help_offset)));
    write_both("basic-shared-help", shared);
  } catch (const std::exception& e) {
    die(e.what());
  }
  cleanup();
  std::printf("make_corpus: %d files, %zu bytes in %s\n", g_files, g_bytes, g_out_dir.c_str());
  return 0;
}
