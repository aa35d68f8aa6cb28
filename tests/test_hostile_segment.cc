// Live attacks on a segment while the exporter's reader serves it: bytes
// flipped in the header, descriptor tables, strings and counts; the file
// truncated under the mapping (SIGBUS); the segment removed and created anew
// with other capacities. The attacked role answers shmetrics_segment_up 0 or
// serves what it can validate; the other role keeps working; nothing crashes.
#include "sigbus_guard.h"
#include "support.h"

#include <shmetrics/shm/names.h>
#include <shmetrics/shmetrics.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <fcntl.h>
#include <functional>
#include <random>
#include <sys/mman.h>
#include <sys/stat.h>

using namespace shmetrics;
using testing::ScopedName;

namespace {

SegmentOptions options(const std::string& name) {
  SegmentOptions o;
  o.name = name;
  o.capacities.thread_slots = 4;
  o.capacities.process_records = 4;
  o.capacities.series = 32;
  o.capacities.families = 16;
  o.capacities.string_bytes = 4096;
  o.capacities.info_families = 2;
  o.capacities.info_value_bytes = 64;
  o.capacities.readyz_short_window_seconds = 2;
  o.capacities.readyz_long_window_seconds = 4;
  return o;
}

// Fills a segment the way a worker would, from a child process (the test
// process itself stays a pure reader, like the exporter).
void populate(const std::string& name) {
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            Segment s = Segment::open(options(name));
            s.counter("plain_total", "Plain.").inc(3);
            auto f = s.counter_family("req_total", "Requests \"quoted\".", {"route", "code"});
            f.labels({"/a", "200"}).inc(5);
            f.labels({"/b\n", "5é"}).inc(7);
            s.counter("secs_total", "Seconds.", ValueType::kDouble).inc(0.5);
            s.gauge("g", "G.", GaugeMode::kLiveSum).set(2);
            s.info("map_info", "Map.", {"etag"}).set({"abc"});
            s.readyz().observe(true);
            Histogram h = s.histogram_family("wait_seconds", "Wait.", {"route"}, {0.5, 1, 2}).labels({"/a"});
            for (double v : {0.25, 1.5, 9.0}) h.observe(v);
            return true;
          })) == 0);
}

// A scrape is whole: valid UTF-8, every line a comment or `name[{...}] value`,
// and it says whether the segment was up.
bool well_formed(const std::string& text) {
  if (!shm::is_valid_utf8(text) || text.empty() || text.back() != '\n') return false;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    std::string line = text.substr(at, end - at);
    at = end + 1;
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) continue;
    std::size_t space = line.rfind(' ');
    if (space == std::string::npos || space == 0) return false;
    std::string value = line.substr(space + 1);
    if (value != "NaN" && value != "+Inf" && value != "-Inf") {
      char* stop = nullptr;
      std::strtod(value.c_str(), &stop);
      if (*stop != '\0') return false;
    }
  }
  return text.find("shmetrics_segment_up{role=") != std::string::npos;
}

// A writable view of the segment file, as an attacker with write access has.
struct Attacker {
  int fd;
  std::uint8_t* base;
  std::size_t size;
  explicit Attacker(const std::string& name) {
    fd = ::open((name).c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    struct stat st {};
    ::fstat(fd, &st);
    size = static_cast<std::size_t>(st.st_size);
    base = static_cast<std::uint8_t*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    REQUIRE(base != MAP_FAILED);
  }
  ~Attacker() {
    ::munmap(base, size);
    ::close(fd);
  }
};

}  // namespace

TEST_CASE("flipped_bytes_anywhere_never_crash_the_reader_and_spare_the_other_role") {
  exporter::install_sigbus_handler();
  ScopedName target("attacked"), bystander("bystander");
  populate(target.str());
  populate(bystander.str());
  exporter::RoleSource attacked("judge", target.str()), other("ops", bystander.str());
  std::string clean = attacked.scrape();
  REQUIRE(testing::sample(clean, "req_total{route=\"/a\",code=\"200\"}") == 5.0);

  auto m = shm::MappedSegment::open_read_only(target.str());
  const shm::Geometry g = m->geometry();
  m.reset();
  struct Region {
    const char* what;
    std::uint64_t begin, end;
  };
  const Region regions[] = {
      {"header", 0, sizeof(shm::Header)},
      {"counts", offsetof(shm::Header, family_count), offsetof(shm::Header, events)},
      {"family table", g.families_offset, g.series_offset},
      {"series table", g.series_offset, g.strings_offset},
      {"strings", g.strings_offset, g.strings_offset + 512},
      {"slots", g.slots_offset, g.records_offset},
      {"records", g.records_offset, g.total_bytes},
  };
  std::mt19937 rng(7);
  Attacker attacker(target.str());
  int up = 0, down = 0, down_elsewhere = 0;
  for (const Region& r : regions) {
    for (int round = 0; round < 60; ++round) {
      // Flip a few bytes, scrape both roles, put the bytes back.
      std::vector<std::pair<std::uint64_t, std::uint8_t>> saved;
      for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k) {
        std::uint64_t at = r.begin + rng() % (r.end - r.begin);
        saved.emplace_back(at, attacker.base[at]);
        attacker.base[at] = static_cast<std::uint8_t>(rng());
      }
      std::string text = attacked.scrape();
      INFO(r.what << " round " << round << "\n" << text);
      REQUIRE(well_formed(text));
      const bool is_up = testing::sample(text, "shmetrics_segment_up{role=\"judge\"}") == 1.0;
      (is_up ? up : down)++;
      // Only the header (magic, version, capacities, counts) can take the
      // role down: a damaged entry, string, slot or record is left out.
      if (!is_up && std::string_view(r.what) != "header" && std::string_view(r.what) != "counts") ++down_elsewhere;
      REQUIRE(testing::sample(other.scrape(), "req_total{route=\"/a\",code=\"200\"}") == 5.0);
      for (auto [at, byte] : saved) attacker.base[at] = byte;
    }
  }
  INFO(up << " scrapes up, " << down << " down, " << down_elsewhere << " of them outside the header");
  CHECK(down_elsewhere == 0);
  CHECK(up >= 5 * 60);  // every round outside the header, at least
  // A flipped magic takes the role down; put back, the segment is served again.
  attacker.base[0] ^= 0xff;
  CHECK(testing::sample(attacked.scrape(), "shmetrics_segment_up{role=\"judge\"}") == 0.0);
  attacker.base[0] ^= 0xff;
  CHECK(testing::sample(attacked.scrape(), "shmetrics_segment_up{role=\"judge\"}") == 1.0);
  CHECK(testing::sample(other.scrape(), "shmetrics_segment_up{role=\"ops\"}") == 1.0);
}

TEST_CASE("a_segment_truncated_under_the_reader_takes_only_its_role_down") {
  exporter::install_sigbus_handler();
  ScopedName target("truncated"), bystander("bystander2");
  populate(target.str());
  populate(bystander.str());
  exporter::RoleSource attacked("judge", target.str()), other("ops", bystander.str());
  REQUIRE(testing::sample(attacked.scrape(), "shmetrics_segment_up{role=\"judge\"}") == 1.0);
  auto size = static_cast<off_t>(shm::MappedSegment::open_read_only(target.str())->size_bytes());

  REQUIRE(::truncate((target.str()).c_str(), 4096) == 0);
  std::string text = attacked.scrape();  // reads past the end: SIGBUS, handled
  REQUIRE(well_formed(text));
  CHECK(testing::sample(text, "shmetrics_segment_up{role=\"judge\"}") == 0.0);
  text = attacked.scrape();  // reopened: too short for its capacities
  CHECK(testing::sample(text, "shmetrics_segment_up{role=\"judge\"}") == 0.0);
  CHECK(testing::sample(other.scrape(), "shmetrics_segment_up{role=\"ops\"}") == 1.0);

  REQUIRE(::truncate((target.str()).c_str(), size) == 0);  // back, zero-filled
  text = attacked.scrape();
  REQUIRE(well_formed(text));
}

// A probe (/healthz, /-/ready) between scrapes sees the damage too: the
// file truncated or its header overwritten in place, no render run.
TEST_CASE("a_segment_damaged_in_place_fails_the_health_check_before_any_scrape") {
  exporter::install_sigbus_handler();
  ScopedName target("damaged"), overwritten("overwritten");
  populate(target.str());
  populate(overwritten.str());
  exporter::RoleSource truncated_source("judge", target.str()), overwritten_source("ops", overwritten.str());
  std::string reason;
  REQUIRE(truncated_source.segment_ok(reason));
  REQUIRE(overwritten_source.segment_ok(reason));
  const auto size = static_cast<off_t>(shm::MappedSegment::open_read_only(target.str())->size_bytes());

  REQUIRE(::truncate(target.str().c_str(), size / 2) == 0);
  CHECK_FALSE(truncated_source.segment_ok(reason));
  CHECK_THAT(reason, Catch::Contains("bytes but its capacities need " + std::to_string(size)) &&
                         Catch::Contains("truncated since it was opened"));
  REQUIRE(::truncate(target.str().c_str(), 0) == 0);
  REQUIRE(::truncate(target.str().c_str(), size) == 0);  // back, all zero: no magic
  CHECK_FALSE(truncated_source.segment_ok(reason));  // (opened again since it went down)
  CHECK_THAT(reason, Catch::Contains("bad magic"));

  {
    const int fd = ::open(overwritten.str().c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    const std::uint64_t junk = 0x4141414141414141u;
    REQUIRE(::pwrite(fd, &junk, sizeof junk, offsetof(shm::Header, magic)) == static_cast<ssize_t>(sizeof junk));
    ::close(fd);
  }
  CHECK_FALSE(overwritten_source.segment_ok(reason));
  CHECK_THAT(reason, Catch::Contains("magic or layout version changed"));
  CHECK(testing::sample(overwritten_source.scrape(), "shmetrics_segment_up{role=\"ops\"}") == 0.0);
}

TEST_CASE("a_segment_recreated_with_other_capacities_is_followed") {
  exporter::install_sigbus_handler();
  ScopedName target("recreated");
  populate(target.str());
  exporter::RoleSource attacked("judge", target.str());
  REQUIRE(testing::sample(attacked.scrape(), "plain_total") == 3.0);
  shm::remove_segment(target.str());
  REQUIRE(testing::wait_child(testing::fork_child([&] {
            SegmentOptions o = options(target.str());
            o.capacities.series = 64;
            o.capacities.thread_slots = 8;
            Segment::open(o).counter("plain_total", "Plain.").inc(11);
            return true;
          })) == 0);
  std::string text = attacked.scrape();
  REQUIRE(well_formed(text));
  CHECK(testing::sample(text, "plain_total") == 11.0);
  CHECK(testing::sample(text, "shmetrics_segment_up{role=\"judge\"}") == 1.0);
}

TEST_CASE("a_label_value_that_is_not_utf8_in_the_segment_is_left_out_and_counted") {
  ScopedName target("bad-utf8");
  populate(target.str());
  {
    // Corrupt the bytes of the label value "/a" of one series in place.
    Attacker attacker(target.str());
    auto m = shm::MappedSegment::open_read_only(target.str());
    std::string_view pool(reinterpret_cast<const char*>(attacker.base + m->geometry().strings_offset),
                          m->capacities().string_bytes);
    std::size_t at = pool.find("/a");
    REQUIRE(at != std::string_view::npos);
    attacker.base[m->geometry().strings_offset + at + 1] = 0xff;
  }
  exporter::RoleSource source("test", target.str());
  std::string text = source.scrape();
  INFO(text);
  CHECK(well_formed(text));
  CHECK(testing::count_lines(text, "req_total{route=\"/a") == 0);               // left out
  CHECK(testing::sample(text, "req_total{route=\"/b\\n\",code=\"5é\"}") == 7.0);  // the rest served
  CHECK(testing::sample(text, "plain_total") == 3.0);
  CHECK(testing::sample(text, "shmetrics_untrusted_entries_dropped_total{role=\"test\",kind=\"series\"}") == 1.0);
}

TEST_CASE("page_table_entries_past_the_pool_are_skipped_and_the_rest_summed") {
  ScopedName target("bad-pages");
  populate(target.str());
  {
    // The populating process's slot: point its page 0 (plain_total, req_total
    // series) past the pool, and a never-used entry at page 0 of the pool.
    Attacker attacker(target.str());
    auto m = shm::MappedSegment::open_read_only(target.str());
    const shm::Geometry& g = m->geometry();
    bool corrupted = false;
    for (std::uint32_t slot = 0; slot < m->capacities().thread_slots; ++slot) {
      auto* table = reinterpret_cast<std::uint32_t*>(attacker.base + g.page_table_offset(slot));
      if (table[0] == 0) continue;
      table[0] = static_cast<std::uint32_t>(g.pool_pages + 1);  // just past the pool
      table[1] = 0xffffffff;
      table[2] = 0;  // series 16-23: nothing there
      corrupted = true;
    }
    REQUIRE(corrupted);
  }
  exporter::RoleSource source("test", target.str());
  std::string text = source.scrape();
  INFO(text);
  CHECK(well_formed(text));
  // Their page is gone; nothing is read past the pool.
  CHECK(testing::sample(text, "plain_total") == 0.0);
  CHECK(testing::sample(text, "req_total{route=\"/a\",code=\"200\"}") == 0.0);
  CHECK(testing::sample(text, "secs_total") == 0.0);
  CHECK(testing::count_lines(text, "map_info{") == 0);  // its process is dead
}

namespace {

// The family entry named `name` in a segment, through the attacker's view.
shm::FamilyEntry* family_entry(Attacker& attacker, const shm::Geometry& g, std::string_view name) {
  auto* entries = reinterpret_cast<shm::FamilyEntry*>(attacker.base + g.families_offset);
  auto* header = reinterpret_cast<shm::Header*>(attacker.base);
  for (std::uint32_t f = 0; f < header->family_count.load(); ++f) {
    std::string_view n(reinterpret_cast<const char*>(attacker.base + g.strings_offset + entries[f].name_offset),
                       entries[f].name_length);
    if (n == name) return &entries[f];
  }
  FAIL("no family " << name);
  return nullptr;
}

// Writes `bytes` at the end of the used string pool and counts them in, as a
// writer could; returns their offset.
std::uint32_t plant(Attacker& a, const shm::Geometry& g, std::string_view bytes) {
  auto* header = reinterpret_cast<shm::Header*>(a.base);
  const std::uint32_t at = header->string_used.load();
  REQUIRE(at + bytes.size() <= header->capacities.string_bytes);
  std::memcpy(a.base + g.strings_offset + at, bytes.data(), bytes.size());
  header->string_used.store(at + static_cast<std::uint32_t>(bytes.size()));
  return at;
}

// Renames the family `name` to `new_name`, its bytes planted in the pool.
void rename_family(Attacker& a, const shm::Geometry& g, std::string_view name, std::string_view new_name) {
  shm::FamilyEntry& e = *family_entry(a, g, name);
  e.name_offset = plant(a, g, new_name);
  e.name_length = static_cast<std::uint32_t>(new_name.size());
}

// The series entries of the family entry `e`, in registration order.
std::vector<shm::SeriesEntry*> series_of(Attacker& a, const shm::Geometry& g, shm::FamilyEntry& e) {
  auto* header = reinterpret_cast<shm::Header*>(a.base);
  auto* series = reinterpret_cast<shm::SeriesEntry*>(a.base + g.series_offset);
  const auto family = static_cast<std::uint32_t>(&e - reinterpret_cast<shm::FamilyEntry*>(a.base + g.families_offset));
  std::vector<shm::SeriesEntry*> out;
  for (std::uint32_t i = 0; i < header->series_count.load(); ++i)
    if (series[i].family_index == family) out.push_back(&series[i]);
  REQUIRE(!out.empty());
  return out;
}

// Gives every series of family entry `e` the first cell `to(its cell)`.
template <typename To>
void move_series(Attacker& a, const shm::Geometry& g, shm::FamilyEntry& e, To to) {
  for (shm::SeriesEntry* series : series_of(a, g, e)) series->cell_index = to(series->cell_index);
}

}  // namespace

// Each lie a histogram's entries can tell: the family or the series is left
// out and counted, everything else served, and what is served is consistent.
TEST_CASE("histogram_entries_that_lie_are_left_out_and_the_rest_served") {
  struct Lie {
    const char* what;
    const char* dropped;  // the kind counted
    std::function<void(Attacker&, const shm::Geometry&, shm::FamilyEntry&)> tell;
  };
  const std::vector<Lie> lies = {
      {"more buckets than allowed", "family",
       [](Attacker&, const shm::Geometry&, shm::FamilyEntry& e) { e.bucket_count = shm::kMaxBuckets + 1; }},
      {"bounds reaching past the used pool", "family",
       [](Attacker&, const shm::Geometry&, shm::FamilyEntry& e) { e.bucket_count = 200; }},
      {"bounds out of order", "family",
       [](Attacker& a, const shm::Geometry& g, shm::FamilyEntry& e) {
         double first = 5;  // above the second bound (1)
         std::memcpy(a.base + g.strings_offset + e.bounds_offset, &first, 8);
       }},
      {"a NaN bound", "family",
       [](Attacker& a, const shm::Geometry& g, shm::FamilyEntry& e) {
         double nan = std::nan("");
         std::memcpy(a.base + g.strings_offset + e.bounds_offset + 8, &nan, 8);
       }},
      {"bounds sharing the help's bytes", "family",
       [](Attacker&, const shm::Geometry&, shm::FamilyEntry& e) { e.bounds_offset = e.help_offset; }},
      {"a gauge mode", "family",
       [](Attacker&, const shm::Geometry&, shm::FamilyEntry& e) { e.gauge_mode = shm::GaugeMode::kLiveSum; }},
      {"cells past the slots' cells", "series",
       [](Attacker& a, const shm::Geometry& g, shm::FamilyEntry& e) {
         const std::uint32_t cells = shm::slot_cells(reinterpret_cast<shm::Header*>(a.base)->capacities);
         move_series(a, g, e, [&](std::uint32_t) { return cells - 4; });  // its 8 cells end 4 past
       }},
      {"an odd first cell (its pairs would straddle pages)", "series",
       [](Attacker& a, const shm::Geometry& g, shm::FamilyEntry& e) {
         move_series(a, g, e, [](std::uint32_t cell) {
           REQUIRE(cell % 2 == 0);
           return cell + 1;  // still inside the slots' cells
         });
       }},
  };
  for (const Lie& lie : lies) {
    ScopedName target("lying-histogram");
    populate(target.str());
    {
      Attacker attacker(target.str());
      auto m = shm::MappedSegment::open_read_only(target.str());
      lie.tell(attacker, m->geometry(), *family_entry(attacker, m->geometry(), "wait_seconds"));
    }
    exporter::RoleSource source("test", target.str());
    std::string text = source.scrape();
    INFO(lie.what << "\n" << text);
    CHECK(well_formed(text));
    CHECK(testing::count_lines(text, "wait_seconds_count") == 0);
    CHECK(testing::sample(text, std::string("shmetrics_untrusted_entries_dropped_total{role=\"test\",kind=\"") +
                                    lie.dropped + "\"}") >= 1.0);
    CHECK(testing::sample(text, "req_total{route=\"/a\",code=\"200\"}") == 5.0);
  }
  // Told the truth, the same histogram is served.
  ScopedName honest("honest-histogram");
  populate(honest.str());
  std::string text = exporter::RoleSource("test", honest.str()).scrape();
  INFO(text);
  CHECK(testing::sample(text, "wait_seconds_bucket{route=\"/a\",le=\"0.5\"}") == 1.0);
  CHECK(testing::sample(text, "wait_seconds_bucket{route=\"/a\",le=\"2\"}") == 2.0);
  CHECK(testing::sample(text, "wait_seconds_count{route=\"/a\"}") == 3.0);
  CHECK(testing::sample(text, "wait_seconds_sum{route=\"/a\"}") == 10.75);
}

// Lies of counter, gauge and label entries, each at the edge of what the
// reader allows: the lying entry is left out and counted, and only it.
TEST_CASE("series_and_family_entries_that_lie_at_the_edge_are_left_out_and_only_they") {
  struct Lie {
    const char* what;
    const char* dropped;  // the kind counted
    std::function<void(Attacker&, const shm::Geometry&)> tell;
    std::function<void(const std::string&)> check;  // what is served then
  };
  auto entry = [](Attacker& a, const shm::Geometry& g, std::string_view name) -> shm::FamilyEntry& {
    return *family_entry(a, g, name);
  };
  const std::vector<Lie> lies = {
      {"a counter's cell just past the slots' cells", "series",
       [&](Attacker& a, const shm::Geometry& g) {
         const std::uint32_t cells = shm::slot_cells(reinterpret_cast<shm::Header*>(a.base)->capacities);
         series_of(a, g, entry(a, g, "plain_total"))[0]->cell_index = cells;
       },
       [](const std::string& text) { CHECK(testing::count_lines(text, "plain_total ") == 0); }},
      {"a gauge's record cell just past the gauge cells", "series",
       [&](Attacker& a, const shm::Geometry& g) {
         series_of(a, g, entry(a, g, "g"))[0]->cell_index =
             reinterpret_cast<shm::Header*>(a.base)->capacities.gauge_series;
       },
       [](const std::string& text) { CHECK(testing::count_lines(text, "g ") == 0); }},
      // A family without labels allows no label bytes: the entry is refused
      // before it claims the bytes it points at, which another series owns.
      {"label values longer than the family's labels allow", "series",
       [&](Attacker& a, const shm::Geometry& g) {
         const shm::SeriesEntry& owner = *series_of(a, g, entry(a, g, "req_total"))[0];
         shm::SeriesEntry& liar = *series_of(a, g, entry(a, g, "plain_total"))[0];
         liar.label_values_offset = owner.label_values_offset;
         liar.label_values_length = owner.label_values_length;
       },
       [](const std::string& text) {
         CHECK(testing::count_lines(text, "plain_total") == 0);
         CHECK(testing::sample(text, "req_total{route=\"/a\",code=\"200\"}") == 5.0);
       }},
      // The same label values in other bytes: a second series of one label set.
      {"a label set registered twice in one family", "series",
       [&](Attacker& a, const shm::Geometry& g) {
         auto series = series_of(a, g, entry(a, g, "req_total"));
         REQUIRE(series.size() == 2);
         std::string values(reinterpret_cast<const char*>(a.base + g.strings_offset + series[0]->label_values_offset),
                            series[0]->label_values_length);
         series[1]->label_values_offset = plant(a, g, values);
         series[1]->label_values_length = series[0]->label_values_length;
       },
       [](const std::string& text) {
         CHECK(testing::count_lines(text, "req_total{") == 1);
         CHECK(testing::sample(text, "req_total{route=\"/a\",code=\"200\"}") == 5.0);
       }},
      // A family registered later under a name another already takes.
      {"a second family of one name", "family",
       [](Attacker& a, const shm::Geometry& g) { rename_family(a, g, "secs_total", "plain_total"); },
       [](const std::string& text) {
         CHECK(testing::count_lines(text, "# TYPE plain_total ") == 1);
         CHECK(testing::count_lines(text, "plain_total ") == 1);
         CHECK(testing::sample(text, "plain_total") == 3.0);
       }},
      // A gauge under the name of a histogram's samples: the histogram,
      // registered after it, is the one left out.
      {"a family taking another's sample name", "family",
       [](Attacker& a, const shm::Geometry& g) { rename_family(a, g, "g", "wait_seconds_sum"); },
       [](const std::string& text) {
         CHECK(testing::count_lines(text, "wait_seconds_bucket") == 0);
       }},
  };
  for (const Lie& lie : lies) {
    ScopedName target("lying-entries");
    populate(target.str());
    {
      Attacker attacker(target.str());
      auto m = shm::MappedSegment::open_read_only(target.str());
      lie.tell(attacker, m->geometry());
    }
    exporter::RoleSource source("test", target.str());
    std::string text = source.scrape();
    INFO(lie.what << "\n" << text);
    CHECK(well_formed(text));
    lie.check(text);
    CHECK(testing::sample(text, std::string("shmetrics_untrusted_entries_dropped_total{role=\"test\",kind=\"") +
                                    lie.dropped + "\"}") == 1.0);
    CHECK(testing::sample(text, "shmetrics_segment_up{role=\"test\"}") == 1.0);
    CHECK(testing::sample(text, "wait_seconds_count{route=\"/a\"}").value_or(3.0) == 3.0);
  }
}
