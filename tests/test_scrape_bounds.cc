// What one segment writer can make the exporter spend (DESIGN.md invariant
// 11): bounded by the exporter's own limit, --max-scrape-bytes, not by what
// the segment claims. Entries sharing strings are refused and counted, so the
// amplifying segment of the defects issue (336 KB rendering 277 MB) renders a
// few KB with a peak RSS growth under 32 MiB; an honest segment whose parsed
// entries or exposition exceed the limit takes only its role down, with one
// logged reason; concurrent scrapes share one body.
#include "amplifying_segment.h"
#include "support.h"

#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>

using namespace shmetrics;
using testing::ScopedName;

namespace {

// VmHWM or VmRSS of this process, in kB.
long status_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with(field)) return std::stol(line.substr(std::strlen(field)));
  return -1;
}

// Resets VmHWM to the current RSS (Linux >= 4.0), so VmHWM afterwards is the
// peak of what follows.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// What this process writes on stderr (the exporter's log) while it lives.
class CapturedStderr {
 public:
  CapturedStderr() {
    std::fflush(stderr);
    file_ = std::tmpfile();
    saved_ = ::dup(2);
    ::dup2(::fileno(file_), 2);
  }
  ~CapturedStderr() { restore(); }
  std::string text() {
    restore();
    std::string out;
    std::rewind(file_);
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, file_)) > 0;) out.append(buf, n);
    return out;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  std::FILE* file_;
  int saved_ = -1;
};

void create_amplifying_segment(const std::string& name) {
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            SegmentOptions o;
            o.name = name;
            o.capacities = testing::amplifying_capacities();
            Segment::open(o);
            return true;
          })) == 0);
  testing::write_amplifying_entries(name);
}

// 64 counter series of one family, each with a distinct 4,000-byte label
// value: an honest segment whose exposition is ~260 KB.
void create_large_segment(const std::string& name) {
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            SegmentOptions o;
            o.name = name;
            o.capacities.string_bytes = 512 * 1024;
            Segment s = Segment::open(o);
            auto f = s.counter_family("big_total", "Big.", {"v"});
            for (int i = 0; i < 64; ++i) {
              std::string v = std::to_string(i) + std::string(4000, 'x');
              f.labels({std::string_view(v)}).inc(1);
            }
            return true;
          })) == 0);
}

// How many times `needle` occurs in `text`.
int occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (std::size_t at = 0; (at = text.find(needle, at)) != std::string::npos; at += needle.size()) ++n;
  return n;
}

const std::string kDropped = "shmetrics_untrusted_entries_dropped_total{role=\"test\",kind=";

}  // namespace

TEST_CASE("entries_sharing_strings_are_refused_so_the_amplifying_segment_renders_small") {
  ScopedName name("amplifying");
  create_amplifying_segment(name.str());
  exporter::RoleSource source("test", name.str());

  REQUIRE(reset_peak_rss());
  const long rss_before = status_kb("VmRSS:");
  const auto start = std::chrono::steady_clock::now();
  std::shared_ptr<const std::string> body = source.scrape_shared();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start).count();
  const long peak_growth_kb = status_kb("VmHWM:") - rss_before;
  std::printf("amplifying segment: %zu bytes of exposition in %lld ms, peak RSS +%ld kB\n",
              body->size(), static_cast<long long>(ms), peak_growth_kb);

  const std::string& text = *body;
  CHECK(testing::sample(text, "shmetrics_segment_up{role=\"test\"}") == 1.0);
  // Family 0 and its series own the shared strings: served. Every other
  // entry reuses them: left out and counted.
  CHECK(testing::count_lines(text, "amp_0000_total{l00=\"l00vvv") == 1);
  CHECK(testing::count_lines(text, "amp_0001_total") == 0);
  CHECK(testing::count_lines(text, "# HELP amp_") == 1);
  CHECK(testing::sample(text, kDropped + "\"family\"}") == testing::AmplifyingShape::kFamilies - 1);
  CHECK(testing::sample(text, kDropped + "\"series\"}") == testing::AmplifyingShape::kFamilies - 1);
  // One family's worth: 4 KiB of help and 32 label values of 4 KiB.
  CHECK(text.size() < 256 * 1024);
  CHECK(peak_growth_kb < 32 * 1024);

  // The next scrape parses nothing new and renders the same.
  CHECK(testing::without_scrape_counts(*source.scrape_shared()) == testing::without_scrape_counts(text));
}

TEST_CASE("strings_past_string_used_or_overlapping_are_refused_and_counted") {
  ScopedName name("past-used");
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            SegmentOptions o;
            o.name = name.str();
            Segment s = Segment::open(o);
            s.counter("a_total", "A.").inc(1);
            s.counter("b_total", "B.").inc(2);
            s.counter("c_total", "C.").inc(3);
            return true;
          })) == 0);
  {
    auto m = shm::MappedSegment::open_read_only(name.str());
    const std::uint64_t families = m->geometry().families_offset;
    const std::uint64_t size = m->size_bytes();
    int fd = ::open((name.str()).c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    auto* base = static_cast<std::uint8_t*>(
        ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    ::close(fd);
    REQUIRE(base != MAP_FAILED);
    auto* f = reinterpret_cast<shm::FamilyEntry*>(base + families);
    // b_total's help is now a_total's help ("A."): two entries, one string.
    f[1].help_offset = f[0].help_offset;
    // c_total's strings end past string_used, inside the pool's free room.
    auto* h = reinterpret_cast<shm::Header*>(base);
    h->string_used.store(f[2].label_names_offset - 1);
    ::munmap(base, size);
  }
  std::string text = testing::scrape(name.str());
  INFO(text);
  CHECK(testing::sample(text, "a_total") == 1.0);
  CHECK(testing::count_lines(text, "b_total") == 0);
  CHECK(testing::count_lines(text, "c_total") == 0);
  CHECK(testing::sample(text, kDropped + "\"family\"}") == 2.0);
}

TEST_CASE("an_honest_segment_past_max_scrape_bytes_takes_its_role_down_with_one_logged_reason") {
  ScopedName name("large");
  create_large_segment(name.str());
  exporter::RoleSource roomy("test", name.str());
  std::string text = roomy.scrape();
  CHECK(testing::sample(text, "shmetrics_segment_up{role=\"test\"}") == 1.0);
  CHECK(testing::count_lines(text, "big_total{") == 64);
  REQUIRE(text.size() > 250 * 1024);  // ~260 KB

  exporter::RoleSource tight("test", name.str());
  tight.set_max_scrape_bytes(128 * 1024);
  CapturedStderr log;
  std::shared_ptr<const std::string> first = tight.scrape_shared();
  std::shared_ptr<const std::string> second = tight.scrape_shared();
  std::string logged = log.text();
  INFO(*first << "\nlog:\n" << logged);
  CHECK(testing::sample(*first, "shmetrics_segment_up{role=\"test\"}") == 0.0);
  CHECK(testing::count_lines(*first, "big_total") == 0);
  CHECK(first->size() <= 128 * 1024);
  CHECK(testing::without_scrape_counts(*second) == testing::without_scrape_counts(*first));
  // Logged once, naming the limit and what to do about it; not re-parsed.
  CHECK(occurrences(logged, "event=segment_down") == 1);
  CHECK(occurrences(logged, "event=segment_opened") == 1);
  CHECK(logged.find("too large to serve") != std::string::npos);
  CHECK(logged.find("with --max-scrape-bytes 131072") != std::string::npos);
}

TEST_CASE("an_exposition_past_max_scrape_bytes_takes_its_role_down_until_it_fits_again") {
  // Parsed, the segment is small; its liveall gauge renders one line per
  // live process, so its exposition grows with the processes.
  ScopedName name("per-process");
  SegmentOptions o;
  o.name = name.str();
  o.capacities.process_records = 16;
  o.capacities.gauge_series = 4;
  const std::string value(3000, 'p');
  std::vector<std::unique_ptr<testing::ParkedChild>> children;
  for (int i = 0; i < 16; ++i)
    children.push_back(std::make_unique<testing::ParkedChild>([&] {
      Segment s = Segment::open(o);
      s.gauge_family("busy", "Busy.", {"v"}, GaugeMode::kLiveAll).labels({std::string_view(value)}).set(1);
    }));
  exporter::RoleSource source("test", name.str());
  source.set_max_scrape_bytes(48 * 1024);  // 16 lines of 3 KB do not fit; 4 do
  CapturedStderr log;
  std::string down = source.scrape();
  for (int i = 0; i < 12; ++i) children[i]->kill();
  std::string up = source.scrape();
  std::string logged = log.text();
  INFO(down << "\n" << up << "\nlog:\n" << logged);
  CHECK(testing::sample(down, "shmetrics_segment_up{role=\"test\"}") == 0.0);
  CHECK(down.size() <= 48 * 1024);
  CHECK(logged.find("its exposition takes more than") != std::string::npos);
  CHECK(testing::sample(up, "shmetrics_segment_up{role=\"test\"}") == 1.0);
  CHECK(testing::count_lines(up, "busy{") == 4);
  CHECK(logged.find("event=segment_served") != std::string::npos);
}

TEST_CASE("scrapes_arriving_during_a_render_share_its_body") {
  ScopedName name("shared");
  create_large_segment(name.str());
  // The clock is read once per render: the first render waits there until
  // the other scrapes wait for it.
  std::mutex m;
  std::condition_variable cv;
  bool release = false;
  int renders = 0;
  exporter::RoleSource source("test", name.str(), [&] {
    std::unique_lock lock(m);
    if (++renders == 1) cv.wait(lock, [&] { return release; });
    return std::uint64_t{1};
  });
  constexpr int kScrapes = 6;
  std::vector<std::shared_ptr<const std::string>> bodies(kScrapes);
  std::vector<std::thread> threads;
  threads.emplace_back([&] { bodies[0] = source.scrape_shared(); });
  while ([&] { std::lock_guard lock(m); return renders; }() == 0) std::this_thread::yield();
  for (int i = 1; i < kScrapes; ++i) threads.emplace_back([&, i] { bodies[i] = source.scrape_shared(); });
  // Bounded, so a source that makes them render instead fails, not hangs.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (source.scrapes_waiting() < kScrapes - 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  CHECK(source.scrapes_waiting() == kScrapes - 1);
  {
    std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
  for (auto& t : threads) t.join();
  for (int i = 1; i < kScrapes; ++i) CHECK(bodies[i] == bodies[0]);  // one body, not a copy each
  CHECK(renders == 1);
  CHECK(testing::count_lines(*bodies[0], "big_total{") == 64);
  CHECK(bodies[0].use_count() == kScrapes);  // the source keeps none of it
  // A scrape after the render finished renders anew.
  CHECK(source.scrape_shared() != bodies[0]);
  CHECK(renders == 2);
}
