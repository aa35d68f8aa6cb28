// shmetrics-bench: the in-process operations, with Google Benchmark, next to
// prometheus-cpp and the floor (a relaxed fetch_add and a relaxed load+store on
// a cache line this process owns).
//
// Benchmark names are SCENARIO/VARIANT, SCENARIO being the key of the table in
// BENCHMARKS.md (counter_inc, histogram_observe, labelled_inc_lookup,
// new_series, scrape_16x1000, scrape_64x10000, scrape_64x10000_gzip,
// scrape_64x10000_openmetrics, scrape_hist_64x1000, scrape_after_churn).
// Every shmetrics benchmark reads its segment back through the exporter's
// renderer (scrape_64x10000_gzip: over HTTP) after its timed loop and checks
// that the counts it wrote are the counts rendered; a mismatch skips the
// benchmark with an error and the program exits 3.
//
// Own flags (before Google Benchmark's): --quick (smaller new_series batches),
// --new-series=N (series created per repetition of new_series).
#include "common.h"
#include "http_server.h"

#include <benchmark/benchmark.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <zlib.h>

#include <array>
#include <cctype>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

using namespace shmetrics;
namespace sb = shmetrics::bench;

namespace {

int g_check_failures = 0;
std::uint32_t g_new_series_batch = 20'000;
std::uint32_t g_max_repetitions = 12;

// Records a failed check: the benchmark is reported as an error, the program
// exits non-zero.
bool check(benchmark::State& st, const std::string& bench, bool ok, const std::string& what) {
  if (ok) return true;
  ++g_check_failures;
  std::string msg = "check failed: " + what;
  std::fprintf(stderr, "%s: %s\n", bench.c_str(), msg.c_str());
  st.SkipWithError(msg.c_str());
  return false;
}

std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// Children forked by the fixtures, and the gates that hold the long-lived ones.
std::vector<pid_t> g_children;
std::vector<std::unique_ptr<sb::Gate>> g_gates;

void teardown() {
  for (auto& g : g_gates) g->release();
  for (pid_t pid : g_children) sb::wait_child(pid);
  g_children.clear();
  g_gates.clear();
}

// Waits until *count reaches n (children report readiness there).
void await_count(const std::atomic<int>* count, int n) {
  while (count->load(std::memory_order_acquire) < n) sb::sleep_ms(1);
}

// ---------------------------------------------------------------------------
// The in-process segment: one counter, one labelled family, gauges of every
// mode. Default capacities.
// ---------------------------------------------------------------------------

constexpr std::array<std::string_view, 8> kRoutes = {"/api/items", "/api/users", "/api/orders",
                                                     "/api/carts", "/login",     "/logout",
                                                     "/healthz",   "/static"};

struct Inproc {
  std::string name;
  Counter counter;
  std::uint64_t counter_expected = 0;
  CounterFamily labelled;
  std::uint64_t labelled_expected = 0;
  struct GaugeCase {
    Gauge inc, dec, set;
    double inc_expected = 0, dec_expected = 0;
    std::uint64_t sets = 0;
  };
  std::map<std::string, GaugeCase> gauges;
};

const std::vector<std::pair<std::string, GaugeMode>>& gauge_modes() {
  static const std::vector<std::pair<std::string, GaugeMode>> modes = {
      {"livesum", GaugeMode::kLiveSum},       {"livemax", GaugeMode::kLiveMax},
      {"livemin", GaugeMode::kLiveMin},       {"liveall", GaugeMode::kLiveAll},
      {"mostrecent", GaugeMode::kMostRecent}, {"livemostrecent", GaugeMode::kLiveMostRecent},
      {"livesum_int", GaugeMode::kLiveSum},   {"livemax_int", GaugeMode::kLiveMax},
      {"livemin_int", GaugeMode::kLiveMin},   {"liveall_int", GaugeMode::kLiveAll}};
  return modes;
}

Inproc& inproc() {
  static Inproc* in = [] {
    auto* p = new Inproc{sb::unique_segment_name("inproc"), {}, 0, {}, 0, {}};
    SegmentOptions o;
    o.name = p->name;
    Segment segment = Segment::open(o);
    p->counter = segment.counter("bench_counter_inc_total", "Increments of the counter_inc benchmark.");
    p->counter.inc();  // the thread's first update claims its slot: out of the timed loop
    p->counter_expected = 1;
    p->labelled = segment.counter_family("bench_labelled_total", "Labelled increments.",
                                            {"route", "method"});
    for (auto r : kRoutes) p->labelled.labels({r, "GET"}).inc();
    p->labelled_expected = kRoutes.size();
    for (const auto& [mode_name, mode] : gauge_modes()) {
      // "<mode>" holds doubles, "<mode>_int" (live modes) integers.
      const bool integer = mode_name.ends_with("_int");
      GaugeFamily f = segment.gauge_family("bench_gauge_" + mode_name, "Gauge benchmark.", {"op"}, mode,
                                           integer ? ValueType::kInteger : ValueType::kDouble);
      Inproc::GaugeCase c;
      c.inc = f.labels({"inc"});
      c.dec = f.labels({"dec"});
      c.set = f.labels({"set"});
      c.inc.inc(0.0);  // claims the process record
      c.dec.dec(0.0);
      c.set.set(0.0);
      p->gauges.emplace(mode_name, c);
    }
    return p;
  }();
  return *in;
}

// The rendered sample of gauge `mode`, series op=`op`, for this process.
double gauge_sample(const std::string& text, const std::string& mode, const std::string& op) {
  std::string series = "bench_gauge_" + mode + "{op=\"" + op + "\"";
  if (mode.starts_with("liveall")) series += ",pid=\"" + std::to_string(::getpid()) + "\"";
  return sb::sample(text, series + "}");
}

// ---------------------------------------------------------------------------
// counter_inc: a held handle, one thread, integer cells; gauges; the overflow
// slot; the floor; prometheus-cpp.
// ---------------------------------------------------------------------------

void bm_counter_inc_shmetrics(benchmark::State& st) {
  Inproc& in = inproc();
  Counter c = in.counter;
  for (auto _ : st) c.inc();
  in.counter_expected += static_cast<std::uint64_t>(st.iterations());
  std::string text = sb::scrape(in.name);
  double got = sb::sample(text, "bench_counter_inc_total");
  check(st, "counter_inc/shmetrics", got == static_cast<double>(in.counter_expected),
        "rendered " + fmt(got) + ", wrote " + std::to_string(in.counter_expected));
}

void bm_floor_fetch_add(benchmark::State& st) {
  alignas(64) static std::atomic<std::uint64_t> line{0};
  static std::uint64_t expected = 0;
  for (auto _ : st) line.fetch_add(1, std::memory_order_relaxed);
  expected += static_cast<std::uint64_t>(st.iterations());
  check(st, "counter_inc/floor_fetch_add", line.load() == expected, "floor count");
}

void bm_floor_load_store(benchmark::State& st) {
  alignas(64) static std::atomic<std::uint64_t> line{0};
  static std::uint64_t expected = 0;
  for (auto _ : st) line.store(line.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  expected += static_cast<std::uint64_t>(st.iterations());
  check(st, "counter_inc/floor_load_store", line.load() == expected, "floor count");
}

void bm_counter_inc_prometheus_cpp(benchmark::State& st) {
  static auto registry = std::make_shared<prometheus::Registry>();
  static prometheus::Counter& c =
      prometheus::BuildCounter().Name("bench_counter_inc_total").Help("Increments.").Register(*registry).Add({});
  static double expected = 0;
  for (auto _ : st) c.Increment();
  expected += static_cast<double>(st.iterations());
  check(st, "counter_inc/prometheus_cpp", c.Value() == expected, "prometheus-cpp count");
}

constexpr std::array<double, 8> kSetValues = {1.5, 2.5, 3.25, 4.0, 5.5, 6.75, 7.0, 8.125};
constexpr std::array<std::int64_t, 8> kIntSetValues = {1, -2, 3, 40, 5, -600, 7, 8};

void bm_gauge(benchmark::State& st, const std::string& mode, const std::string& op) {
  Inproc& in = inproc();
  Inproc::GaugeCase& gc = in.gauges.at(mode);
  const std::string bench = "counter_inc/gauge_" + mode + "_" + op;
  double expected = 0;
  if (op == "inc") {
    Gauge g = gc.inc;
    for (auto _ : st) g.inc();
    gc.inc_expected += static_cast<double>(st.iterations());
    expected = gc.inc_expected;
  } else if (op == "dec") {
    Gauge g = gc.dec;
    for (auto _ : st) g.dec();
    gc.dec_expected -= static_cast<double>(st.iterations());
    expected = gc.dec_expected;
  } else {
    Gauge g = gc.set;
    std::uint64_t i = gc.sets;
    if (mode.ends_with("_int")) {
      for (auto _ : st) g.set(kIntSetValues[i++ & 7]);
      expected = i == 0 ? 0.0 : static_cast<double>(kIntSetValues[(i - 1) & 7]);
    } else {
      for (auto _ : st) g.set(kSetValues[i++ & 7]);
      expected = i == 0 ? 0.0 : kSetValues[(i - 1) & 7];
    }
    gc.sets = i;
  }
  std::string text = sb::scrape(in.name);
  double got = gauge_sample(text, mode, op);
  check(st, bench, got == expected, "rendered " + fmt(got) + ", expected " + fmt(expected));
}

// The overflow slot: every thread slot held by another live process, so this
// thread writes through the shared slot with atomic read-modify-writes.
struct Overflow {
  std::string name;
  Counter counter;
  std::uint64_t expected = 0;
};

Overflow& overflow(std::uint32_t slots) {
  static std::map<std::uint32_t, Overflow*> fixtures;
  auto it = fixtures.find(slots);
  if (it != fixtures.end()) return *it->second;
  auto* f = new Overflow{sb::unique_segment_name("overflow" + std::to_string(slots)), {}, 0};
  SegmentOptions o;
  o.name = f->name;
  o.capacities.thread_slots = slots;
  o.capacities.series = 16;
  o.capacities.families = 16;
  o.capacities.string_bytes = 4096;
  Segment s = Segment::open(o);
  f->counter = s.counter("bench_overflow_total", "Increments through the overflow slot.");
  auto* ready = sb::shared_block<std::atomic<int>>();
  g_gates.push_back(std::make_unique<sb::Gate>());
  sb::Gate* gate = g_gates.back().get();
  Counter c = f->counter;
  for (std::uint32_t k = 0; k < slots; ++k)
    g_children.push_back(sb::fork_child([&] {
      c.inc();  // claims a slot, held until the gate opens
      ready->fetch_add(1, std::memory_order_release);
      gate->wait();
      return true;
    }));
  await_count(ready, static_cast<int>(slots));
  f->expected = slots;
  f->counter.inc();  // this thread finds no slot: the overflow slot from now on
  f->expected += 1;
  fixtures[slots] = f;
  return *f;
}

void bm_overflow(benchmark::State& st, std::uint32_t slots) {
  Overflow& f = overflow(slots);
  Counter c = f.counter;
  for (auto _ : st) c.inc();
  f.expected += static_cast<std::uint64_t>(st.iterations());
  std::string text = sb::scrape(f.name);
  double got = sb::sample(text, "bench_overflow_total");
  double overflowed = sb::sample(text, "shmetrics_overflow_writers_total{role=\"bench\"}");
  const std::string bench = "counter_inc/overflow_slot_" + std::to_string(slots) + "held";
  if (!check(st, bench, got == static_cast<double>(f.expected),
             "rendered " + fmt(got) + ", wrote " + std::to_string(f.expected)))
    return;
  check(st, bench, overflowed >= 1, "shmetrics_overflow_writers_total is " + fmt(overflowed));
}

// ---------------------------------------------------------------------------
// histogram_observe: Histogram::observe() through a held handle, one thread,
// 10 bounds, the thread's slot and every page of the series' cells already
// taken. Both sides read the value from a table of 1,024: the values of
// common.h (every bucket, in an order no branch predictor learns) or one
// value over and over (one bucket).
// ---------------------------------------------------------------------------

constexpr double kOneValue = 0.3125;  // 320/1024: exact sums, bucket le="0.5"

const std::array<double, sb::kHistogramValues>& one_value_table() {
  static const auto table = [] {
    std::array<double, sb::kHistogramValues> t{};
    t.fill(kOneValue);
    return t;
  }();
  return table;
}

const std::array<double, sb::kHistogramValues>& value_table(bool cycling) {
  return cycling ? sb::histogram_values() : one_value_table();
}

struct HistogramCase {
  Histogram handle;
  sb::HistogramExpected expected;
  std::uint64_t next = 0;  // index of the next value in the table
};

struct HistogramObserve {
  std::string name;
  HistogramCase cycling, one;
};

HistogramObserve& histogram_observe() {
  static HistogramObserve* h = [] {
    auto* p = new HistogramObserve;
    p->name = sb::unique_segment_name("histogram");
    SegmentOptions o;
    o.name = p->name;
    o.capacities.series = 16;
    o.capacities.families = 16;
    o.capacities.string_bytes = 4096;
    o.capacities.cells = 64;  // each series takes 2 × (10 bounds + 1) cells
    Segment s = Segment::open(o);
    HistogramFamily f = s.histogram_family("bench_observe_seconds",
                                           "Observations of the histogram_observe benchmark.", {"values"},
                                           sb::histogram_bounds());
    p->cycling.handle = f.labels({"cycling"});
    p->one.handle = f.labels({"one"});
    // Out of the timed loop: the thread's slot and the pages of every cell.
    for (HistogramCase* c : {&p->cycling, &p->one}) {
      const auto& table = value_table(c == &p->cycling);
      for (double v : table) c->handle.observe(v);
      c->next = sb::kHistogramValues;
      c->expected.add_sequence(0, sb::kHistogramValues, table);
    }
    return p;
  }();
  return *h;
}

void bm_histogram_shmetrics(benchmark::State& st, bool cycling) {
  HistogramObserve& h = histogram_observe();
  HistogramCase& c = cycling ? h.cycling : h.one;
  const auto& table = value_table(cycling);
  const double* values = table.data();
  Histogram handle = c.handle;
  std::uint64_t i = c.next;
  for (auto _ : st) handle.observe(values[i++ & (sb::kHistogramValues - 1)]);
  c.expected.add_sequence(c.next, i - c.next, table);
  c.next = i;
  const std::string labels = std::string("values=\"") + (cycling ? "cycling" : "one") + "\"";
  std::string diff = sb::check_histogram(sb::scrape(h.name), "bench_observe_seconds", labels, c.expected);
  check(st, std::string("histogram_observe/shmetrics_") + (cycling ? "cycling" : "one"), diff.empty(), diff);
}

// The floor of an observation whose bucket is known: what observe() stores,
// +1 to a bucket cell and += v to a double cell, relaxed loads and stores on
// a line only this process touches, the value read from the same table.
void bm_histogram_floor(benchmark::State& st) {
  struct alignas(64) Line {
    std::uint64_t bucket = 0;
    double sum = 0;
  };
  static Line line;
  static sb::HistogramExpected expected;
  static std::uint64_t next = 0;
  const double* values = sb::histogram_values().data();
  std::atomic_ref<std::uint64_t> bucket(line.bucket);
  std::atomic_ref<double> sum(line.sum);
  std::uint64_t i = next;
  for (auto _ : st) {
    bucket.store(bucket.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    sum.store(sum.load(std::memory_order_relaxed) + values[i++ & (sb::kHistogramValues - 1)],
              std::memory_order_relaxed);
  }
  expected.add_sequence(next, i - next);
  next = i;
  check(st, "histogram_observe/floor", line.bucket == expected.count() && line.sum == expected.sum,
        "floor count or sum");
}

void bm_histogram_prometheus_cpp(benchmark::State& st, bool cycling) {
  struct Peer {
    std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
    prometheus::Histogram* handle = nullptr;
    sb::HistogramExpected expected;
    std::uint64_t next = 0;
  };
  static std::map<bool, Peer> peers;
  Peer& p = peers[cycling];
  if (p.handle == nullptr) {
    auto& fam = prometheus::BuildHistogram()
                    .Name("bench_observe_seconds")
                    .Help("Observations of the histogram_observe benchmark.")
                    .Register(*p.registry);
    p.handle = &fam.Add({{"values", cycling ? "cycling" : "one"}}, sb::histogram_bounds());
  }
  const auto& table = value_table(cycling);
  const double* values = table.data();
  prometheus::Histogram& handle = *p.handle;
  std::uint64_t i = p.next;
  for (auto _ : st) handle.Observe(values[i++ & (sb::kHistogramValues - 1)]);
  p.expected.add_sequence(p.next, i - p.next, table);
  p.next = i;
  // Its own Collect(): the same check as ours, on its numbers.
  const prometheus::ClientMetric m = handle.Collect();
  sb::RenderedHistogram got;
  for (const auto& b : m.histogram.bucket)
    got.buckets.emplace_back(b.upper_bound, static_cast<double>(b.cumulative_count));
  got.sum = m.histogram.sample_sum;
  got.count = static_cast<double>(m.histogram.sample_count);
  std::string diff = sb::compare_histogram(got, p.expected);
  check(st, std::string("histogram_observe/prometheus_cpp_") + (cycling ? "cycling" : "one"), diff.empty(), diff);
}

// ---------------------------------------------------------------------------
// labelled_inc_lookup: label lookup on every call, existing series.
// ---------------------------------------------------------------------------

void bm_labelled_shmetrics(benchmark::State& st) {
  Inproc& in = inproc();
  CounterFamily fam = in.labelled;
  std::uint64_t i = 0;
  for (auto _ : st) fam.labels({kRoutes[i++ & 7], "GET"}).inc();
  in.labelled_expected += i;
  std::string text = sb::scrape(in.name);
  double sum = 0;
  for (auto r : kRoutes)
    sum += sb::sample(text, "bench_labelled_total{route=\"" + std::string(r) + "\",method=\"GET\"}");
  check(st, "labelled_inc_lookup/shmetrics", sum == static_cast<double>(in.labelled_expected),
        "rendered sum " + fmt(sum) + ", wrote " + std::to_string(in.labelled_expected));
}

void bm_labelled_prometheus_cpp(benchmark::State& st) {
  static auto registry = std::make_shared<prometheus::Registry>();
  static auto& fam =
      prometheus::BuildCounter().Name("bench_labelled_total").Help("Labelled.").Register(*registry);
  static const std::vector<std::string> routes(kRoutes.begin(), kRoutes.end());
  static double expected = [] {
    for (const auto& r : routes) fam.Add({{"route", r}, {"method", "GET"}}).Increment();
    return static_cast<double>(routes.size());
  }();
  std::uint64_t i = 0;
  for (auto _ : st) fam.Add({{"route", routes[i++ & 7]}, {"method", "GET"}}).Increment();
  expected += static_cast<double>(i);
  double sum = 0;
  for (const auto& r : routes) sum += fam.Add({{"route", r}, {"method", "GET"}}).Value();
  check(st, "labelled_inc_lookup/prometheus_cpp", sum == expected, "prometheus-cpp sum");
}

// ---------------------------------------------------------------------------
// new_series: the first touch of a new label set (registration included).
// ---------------------------------------------------------------------------

struct NewSeries {
  std::string name;
  CounterFamily family;
  std::uint64_t created = 0;
};

NewSeries& new_series() {
  static NewSeries* f = [] {
    auto* p = new NewSeries{sb::unique_segment_name("new_series"), {}, 0};
    SegmentOptions o;
    o.name = p->name;
    o.capacities.thread_slots = 2;
    o.capacities.process_records = 2;
    o.capacities.families = 16;
    o.capacities.series = g_new_series_batch * g_max_repetitions + 64;
    o.capacities.string_bytes = o.capacities.series * 16 + 4096;
    Segment s = Segment::open(o);
    p->family = s.counter_family("bench_new_series_total", "First touches.", {"id"});
    p->family.labels({"warmup"}).inc();  // claims the slot
    return p;
  }();
  return *f;
}

void bm_new_series_shmetrics(benchmark::State& st) {
  NewSeries& f = new_series();
  CounterFamily fam = f.family;
  std::uint64_t next = f.created;
  for (auto _ : st) fam.labels({std::to_string(next++)}).inc();
  f.created = next;
  std::string text = sb::scrape(f.name);
  auto samples = sb::parse_samples(text);
  std::uint64_t ones = 0;
  for (std::uint64_t i = 0; i < f.created; ++i) {
    auto it = samples.find("bench_new_series_total{id=\"" + std::to_string(i) + "\"}");
    if (it != samples.end() && it->second == 1.0) ++ones;
  }
  check(st, "new_series/shmetrics", ones == f.created,
        std::to_string(ones) + " of " + std::to_string(f.created) + " new series rendered with 1");
}

// ---------------------------------------------------------------------------
// Scrapes: W writer processes x S counter series, every cell touched, then the
// exporter's in-process render to a string (RoleSource::scrape, kept between
// scrapes as the exporter keeps it).
// ---------------------------------------------------------------------------

struct ScrapeFixture {
  std::string name;
  std::uint32_t series = 0;
  double expected_each = 0;
  std::shared_ptr<exporter::RoleSource> source;  // shared with an HttpServer in scrape_64x10000_gzip
  std::string extra_check;  // a sample that must be present, "" if none
  double extra_expected = 0;
  // A counter this process moves between scrapes (scrape_64x10000_gzip), so
  // each one shows it has a render of its own; empty otherwise.
  Counter moves;
  std::uint64_t moves_expected = 0;
};

constexpr const char* kMovesCounter = "bench_scrape_moves_total";

bool verify_scrape(benchmark::State& st, const std::string& bench, const ScrapeFixture& f,
                   const std::string& family, const std::string& text) {
  auto samples = sb::parse_samples(text);
  std::uint32_t good = 0;
  for (std::uint32_t i = 0; i < f.series; ++i) {
    auto it = samples.find(family + "{series=\"" + sb::series_label(i) + "\"}");
    if (it != samples.end() && it->second == f.expected_each) ++good;
  }
  if (!check(st, bench, good == f.series,
             std::to_string(good) + " of " + std::to_string(f.series) + " series rendered " +
                 fmt(f.expected_each)))
    return false;
  if (!f.extra_check.empty()) {
    auto it = samples.find(f.extra_check);
    double got = it == samples.end() ? std::nan("") : it->second;
    return check(st, bench, got == f.extra_expected,
                 f.extra_check + " rendered " + fmt(got) + ", expected " + fmt(f.extra_expected));
  }
  return true;
}

// W writers x S series; `moving`: a fixture of its own, with kMovesCounter.
ScrapeFixture& scrape_fixture(std::uint32_t writers, std::uint32_t series, bool moving = false) {
  static std::map<std::tuple<std::uint32_t, std::uint32_t, bool>, ScrapeFixture*> fixtures;
  auto key = std::make_tuple(writers, series, moving);
  if (auto it = fixtures.find(key); it != fixtures.end()) return *it->second;
  auto* f = new ScrapeFixture;
  f->name = sb::unique_segment_name("scrape" + std::to_string(writers) + "x" + std::to_string(series) +
                                    (moving ? "-moving" : ""));
  f->series = series;
  SegmentOptions o;
  o.name = f->name;
  o.capacities.thread_slots = std::max<std::uint32_t>(64, writers);
  o.capacities.series = series + 16;
  o.capacities.families = 16;
  o.capacities.string_bytes = series * 16 + 4096;
  Segment s = Segment::open(o);
  CounterFamily fam = s.counter_family("bench_scrape_total", "Scrape benchmark series.", {"series"});
  std::vector<Counter> handles;
  handles.reserve(series);
  for (std::uint32_t i = 0; i < series; ++i) handles.push_back(fam.labels({sb::series_label(i)}));
  std::vector<pid_t> pids;
  for (std::uint32_t w = 0; w < writers; ++w)
    pids.push_back(sb::fork_child([&] {
      for (Counter& h : handles) h.inc(w + 1);
      return true;
    }));
  int failed = 0;
  for (pid_t pid : pids) failed += sb::wait_child(pid) != 0;
  if (failed) std::fprintf(stderr, "scrape fixture: %d writer(s) failed\n", failed);
  f->expected_each = static_cast<double>(writers) * (writers + 1) / 2;
  if (moving) {
    f->moves = s.counter(kMovesCounter, "Moved by the benchmark between scrapes.");
    f->moves.inc();  // claims this process's slot (a dead writer's) out of the timed loop
    f->moves_expected = 1;
  }
  f->source = std::make_unique<exporter::RoleSource>("bench", f->name);
  fixtures[key] = f;
  return *f;
}

void bm_scrape_shmetrics(benchmark::State& st, const std::string& bench, ScrapeFixture& (*make)()) {
  ScrapeFixture& f = make();
  std::string out;
  for (auto _ : st) {
    out = f.source->scrape();
    benchmark::DoNotOptimize(out.data());
  }
  st.counters["bytes"] = static_cast<double>(out.size());
  const std::string family = bench.starts_with("scrape_after_churn") ? "bench_churn_total" : "bench_scrape_total";
  verify_scrape(st, bench, f, family, out);
}

ScrapeFixture& scrape_16x1000() { return scrape_fixture(16, 1000); }
ScrapeFixture& scrape_64x10000() { return scrape_fixture(64, 10000); }
ScrapeFixture& scrape_64x10000_moving() { return scrape_fixture(64, 10000, true); }

// ---------------------------------------------------------------------------
// scrape_64x10000_openmetrics: the scrape_64x10000 segment rendered in
// OpenMetrics 1.0.0 and in text 0.0.4 (RoleSource::scrape_shared: the body
// the HTTP server sends, not copied), both in every iteration, the order
// alternating, each render timed on its own: the two figures come from the
// same moments of a noisy machine: the exporter's default, no _created
// sample. scrape_64x10000_openmetrics_created: the same with the exporter's
// --openmetrics-created (a _created sample per series).
// ---------------------------------------------------------------------------

// "" when `om` is the OpenMetrics exposition of f's segment: the family typed
// `counter` under its name without _total, every series' _total sample
// rendering what was written with its _created sample (none when not
// `with_created`), "# EOF" once, last.
std::string check_openmetrics(const ScrapeFixture& f, const std::string& om, bool with_created) {
  if (!om.ends_with("\n# EOF\n")) return "the OpenMetrics exposition does not end with \"# EOF\"";
  if (om.find("# EOF") != om.size() - 6) return "\"# EOF\" before the end of the exposition";
  if (om.find("\n# TYPE bench_scrape counter\n") == std::string::npos)
    return "no \"# TYPE bench_scrape counter\" (the family named without _total)";
  const auto samples = sb::parse_samples(om);
  std::uint32_t totals = 0, created = 0;
  for (std::uint32_t i = 0; i < f.series; ++i) {
    const std::string labels = "{series=\"" + sb::series_label(i) + "\"}";
    auto t = samples.find("bench_scrape_total" + labels);
    if (t != samples.end() && t->second == f.expected_each) ++totals;
    auto c = samples.find("bench_scrape_created" + labels);
    if (c != samples.end() && c->second > 0) ++created;
  }
  if (totals != f.series || created != (with_created ? f.series : 0))
    return std::to_string(totals) + " of " + std::to_string(f.series) + " series rendered bench_scrape_total " +
           fmt(f.expected_each) + ", " + std::to_string(created) + " a bench_scrape_created sample";
  return "";
}

void bm_scrape_openmetrics(benchmark::State& st, bool with_created) {
  const std::string bench =
      with_created ? "scrape_64x10000_openmetrics_created/paired" : "scrape_64x10000_openmetrics/paired";
  ScrapeFixture& f = scrape_64x10000();
  f.source->set_openmetrics_created(with_created);
  const exporter::Exposition om{exporter::Format::kOpenMetrics, exporter::Encoding::kIdentity};
  const exporter::Exposition text{exporter::Format::kText004, exporter::Encoding::kIdentity};
  // Untimed: the first render of a format after the segment opens parses every series.
  std::shared_ptr<const std::string> om_body = f.source->scrape_shared(om);
  std::shared_ptr<const std::string> text_body = f.source->scrape_shared(text);
  const std::uint64_t om_renders = f.source->renders(om), text_renders = f.source->renders(text);
  std::uint64_t om_ns = 0, text_ns = 0, n = 0;
  for (auto _ : st) {
    const bool om_first = (n++ & 1) == 0;
    for (int k = 0; k < 2; ++k) {
      const bool is_om = (k == 0) == om_first;
      const std::uint64_t t0 = sb::now_ns();
      std::shared_ptr<const std::string> body = f.source->scrape_shared(is_om ? om : text);
      (is_om ? om_ns : text_ns) += sb::now_ns() - t0;
      (is_om ? om_body : text_body) = std::move(body);  // the previous body is freed untimed
    }
  }
  f.source->set_openmetrics_created(false);  // the default, for the other scenarios
  using benchmark::Counter;
  st.counters["openmetrics_ns"] = Counter(static_cast<double>(om_ns), Counter::kAvgIterations);
  st.counters["text_ns"] = Counter(static_cast<double>(text_ns), Counter::kAvgIterations);
  st.counters["openmetrics_bytes"] = static_cast<double>(om_body->size());
  st.counters["text_bytes"] = static_cast<double>(text_body->size());
  const std::uint64_t om_done = f.source->renders(om) - om_renders, text_done = f.source->renders(text) - text_renders;
  if (!check(st, bench, om_done == n && text_done == n,
             std::to_string(om_done) + " OpenMetrics and " + std::to_string(text_done) + " 0.0.4 renders for " +
                 std::to_string(n) + " iterations"))
    return;
  if (!verify_scrape(st, bench, f, "bench_scrape_total", *text_body)) return;
  const std::string problem = check_openmetrics(f, *om_body, with_created);
  check(st, bench, problem.empty(), problem);
}

// ---------------------------------------------------------------------------
// scrape_64x10000_gzip: the scrape_64x10000 data (a segment of its own, with
// one more counter this thread moves between requests) served by the
// exporter's HTTP server in process (HttpServer + RoleSource, one serving
// thread, on CPU 1) and fetched with Accept-Encoding: gzip over one
// keep-alive connection by a blocking client on CPU 0. Timed: from sending
// the request to the last byte of the compressed body. Untimed, after each
// request: the body inflated and the moved counter checked (so the answer
// was rendered and compressed for this request), and the render count.
// ---------------------------------------------------------------------------

// A blocking HTTP/1.1 client on one keep-alive connection to 127.0.0.1:port.
// Every wait is bounded (10 s): a failure, never a hang.
class HttpClient {
 public:
  explicit HttpClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~HttpClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends `request` and reads one answer with a Content-Length: its head
  // (status line and headers) into `head`, its body into `body` (both
  // reused). "" or what went wrong.
  std::string exchange(const std::string& request, std::string& head, std::string& body) {
    if (fd_ < 0) return "not connected";
    for (std::size_t sent = 0; sent < request.size();) {
      const ssize_t n = ::send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return "send failed";
      sent += static_cast<std::size_t>(n);
    }
    head.clear();
    std::size_t end;
    while ((end = head.find("\r\n\r\n")) == std::string::npos) {
      char buf[4096];
      const ssize_t n = receive(buf, sizeof buf);
      if (n <= 0) return "the connection ended before the answer's head";
      head.append(buf, static_cast<std::size_t>(n));
    }
    body.assign(head, end + 4);  // the server sends one answer at a time: nothing past it
    head.resize(end + 2);
    std::string lower = head;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const std::size_t at = lower.find("\r\ncontent-length:");
    if (at == std::string::npos) return "no Content-Length";
    const std::size_t length = std::strtoull(head.c_str() + at + 17, nullptr, 10);
    std::size_t got = body.size();
    body.resize(length);
    while (got < length) {
      const ssize_t n = receive(body.data() + got, length - got);
      if (n <= 0) return "the connection ended in the body";
      got += static_cast<std::size_t>(n);
    }
    return "";
  }

 private:
  ssize_t receive(char* buf, std::size_t size) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 10'000) <= 0) return -1;
    return ::recv(fd_, buf, size, 0);
  }
  int fd_ = -1;
};

// `in`, one gzip member, inflated into `out`; "" or what went wrong.
std::string gunzip(std::string_view in, std::string& out) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) return "zlib could not start an inflate stream";
  out.resize(std::max<std::size_t>(out.capacity(), in.size() * 4 + 4096));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc;
  for (;;) {
    if (z.total_out == out.size()) out.resize(out.size() * 2);
    z.next_out = reinterpret_cast<Bytef*>(out.data() + z.total_out);
    z.avail_out = static_cast<uInt>(out.size() - z.total_out);
    rc = inflate(&z, Z_NO_FLUSH);
    // Input used up with room left for output: inflate has nothing more to give.
    if (rc != Z_OK || (z.avail_in == 0 && z.avail_out != 0)) break;
  }
  const bool whole = rc == Z_STREAM_END && z.avail_in == 0;
  out.resize(z.total_out);
  inflateEnd(&z);
  return whole ? "" : "the body is not one whole gzip member (zlib: " + std::to_string(rc) + ")";
}

// "" when an answer is 200, gzip-encoded, and inflates to an exposition
// whose moved counter shows `moves` (into `text`).
std::string check_gzip_answer(const std::string& head, const std::string& body, std::uint64_t moves,
                              std::string& text) {
  if (!head.starts_with("HTTP/1.1 200 ")) return "answer " + head.substr(0, head.find('\r'));
  if (head.find("\r\nContent-Encoding: gzip\r\n") == std::string::npos) return "the answer is not gzip-encoded";
  std::string problem = gunzip(body, text);
  if (!problem.empty()) return problem;
  const double got = sb::sample(text, kMovesCounter);
  if (got != static_cast<double>(moves))
    return std::string(kMovesCounter) + " rendered " + fmt(got) + ", moved to " + std::to_string(moves) +
           ": the answer was not rendered for this request";
  return "";
}

void bm_scrape_gzip_http(benchmark::State& st) {
  const std::string bench = "scrape_64x10000_gzip/shmetrics_http";
  ScrapeFixture& f = scrape_64x10000_moving();
  exporter::ServerOptions options;
  options.threads = 1;  // what the exporter takes on one CPU (default_server_threads)
  exporter::HttpServer server(options);
  std::string error;
  if (!check(st, bench, server.add_listener(f.source, "127.0.0.1", 0, error) == 0, error)) return;
  sb::pin_to_cpu(1);  // the server's threads, started now, run on CPU 1; the client stays on CPU 0
  server.start();
  sb::pin_to_cpu(0);
  HttpClient client(server.port(0));
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n";
  const exporter::Exposition gzip_text{exporter::Format::kText004, exporter::Encoding::kGzip};
  std::string head, body, text, problem = client.exchange(request, head, body);  // warm-up, untimed
  if (problem.empty()) problem = check_gzip_answer(head, body, f.moves_expected, text);
  if (problem.empty() && !verify_scrape(st, bench, f, "bench_scrape_total", text)) return;
  const std::uint64_t renders_before = f.source->renders(gzip_text);
  std::uint64_t requests = 0;
  for (auto _ : st) {
    if (!problem.empty()) break;
    problem = client.exchange(request, head, body);
    st.PauseTiming();
    ++requests;
    if (problem.empty()) problem = check_gzip_answer(head, body, f.moves_expected, text);
    f.moves.inc();  // the next answer must show it
    ++f.moves_expected;
    st.ResumeTiming();
  }
  server.stop();
  if (!check(st, bench, problem.empty(), problem)) return;
  if (!check(st, bench, f.source->renders(gzip_text) - renders_before == requests,
             std::to_string(f.source->renders(gzip_text) - renders_before) + " gzip renders for " +
                 std::to_string(requests) + " requests"))
    return;
  st.counters["gzip_bytes"] = static_cast<double>(body.size());
  st.counters["bytes"] = static_cast<double>(text.size());
  verify_scrape(st, bench, f, "bench_scrape_total", text);
}

// prometheus-cpp collecting and serialising 10,000 series of one process.
void bm_scrape_prometheus_cpp(benchmark::State& st, std::uint32_t series) {
  static std::map<std::uint32_t, std::shared_ptr<prometheus::Registry>> registries;
  auto& registry = registries[series];
  if (!registry) {
    registry = std::make_shared<prometheus::Registry>();
    auto& fam = prometheus::BuildCounter().Name("bench_scrape_total").Help("Scrape benchmark series.").Register(*registry);
    for (std::uint32_t i = 0; i < series; ++i) fam.Add({{"series", sb::series_label(i)}}).Increment(2080);
  }
  prometheus::TextSerializer serializer;
  std::string out;
  for (auto _ : st) {
    auto families = registry->Collect();
    out = serializer.Serialize(families);
    benchmark::DoNotOptimize(out.data());
  }
  st.counters["bytes"] = static_cast<double>(out.size());
  std::size_t lines = 0, at = 0;
  while ((at = out.find("\nbench_scrape_total{", at)) != std::string::npos) {
    ++lines;
    ++at;
  }
  check(st, "scrape/prometheus_cpp", lines == series,
        std::to_string(lines) + " of " + std::to_string(series) + " series serialised");
}

// scrape_hist_64x1000: W writer processes each observe one value into each of
// S histogram series of 10 bounds (writer w into series i: histogram_value(i
// × W + w), so every series holds W values spread over its buckets), and
// exit; then the exporter's render, as for the counter scrapes.
struct HistogramScrape {
  std::string name;
  std::uint32_t writers = 0, series = 0;
  std::vector<sb::HistogramExpected> expected;  // per series
  std::unique_ptr<exporter::RoleSource> source;
};

constexpr const char* kScrapeHistogram = "bench_scrape_hist_seconds";

// What series i holds after every writer observed into it.
std::vector<sb::HistogramExpected> hist_scrape_expected(std::uint32_t writers, std::uint32_t series) {
  std::vector<sb::HistogramExpected> out(series);
  for (std::uint32_t i = 0; i < series; ++i)
    for (std::uint32_t w = 0; w < writers; ++w) out[i].add(sb::histogram_value(std::uint64_t{i} * writers + w));
  return out;
}

// "" when all of `series` render what was observed, or how many do not and the first difference.
std::string check_hist_scrape(const std::string& text, const std::vector<sb::HistogramExpected>& expected) {
  auto rendered = sb::parse_histograms(text, kScrapeHistogram);
  std::uint32_t good = 0;
  std::string first;
  for (std::uint32_t i = 0; i < expected.size(); ++i) {
    auto it = rendered.find("series=\"" + sb::series_label(i) + "\"");
    std::string diff = it == rendered.end() ? "not rendered" : sb::compare_histogram(it->second, expected[i]);
    if (diff.empty()) ++good;
    else if (first.empty()) first = sb::series_label(i) + ": " + diff;
  }
  if (good == expected.size()) return "";
  return std::to_string(good) + " of " + std::to_string(expected.size()) +
         " histograms rendered what was observed; " + first;
}

HistogramScrape& hist_scrape_fixture(std::uint32_t writers, std::uint32_t series) {
  static std::map<std::pair<std::uint32_t, std::uint32_t>, HistogramScrape*> fixtures;
  auto key = std::make_pair(writers, series);
  if (auto it = fixtures.find(key); it != fixtures.end()) return *it->second;
  auto* f = new HistogramScrape;
  f->name = sb::unique_segment_name("scrapehist" + std::to_string(writers) + "x" + std::to_string(series));
  f->writers = writers;
  f->series = series;
  const std::uint32_t cells_per_series =
      shm::series_cells(shm::MetricType::kHistogram, static_cast<std::uint32_t>(sb::histogram_bounds().size()));
  SegmentOptions o;
  o.name = f->name;
  o.capacities.thread_slots = std::max<std::uint32_t>(64, writers);
  o.capacities.series = series + 16;
  o.capacities.families = 16;
  o.capacities.string_bytes = series * 16 + 4096;
  o.capacities.cells = series * cells_per_series + 64;
  Segment s = Segment::open(o);
  HistogramFamily fam = s.histogram_family(kScrapeHistogram, "Histogram scrape benchmark series.", {"series"},
                                           sb::histogram_bounds());
  std::vector<Histogram> handles;
  handles.reserve(series);
  for (std::uint32_t i = 0; i < series; ++i) handles.push_back(fam.labels({sb::series_label(i)}));
  std::vector<pid_t> pids;
  for (std::uint32_t w = 0; w < writers; ++w)
    pids.push_back(sb::fork_child([&] {
      for (std::uint32_t i = 0; i < series; ++i) handles[i].observe(sb::histogram_value(std::uint64_t{i} * writers + w));
      return true;
    }));
  int failed = 0;
  for (pid_t pid : pids) failed += sb::wait_child(pid) != 0;
  if (failed) std::fprintf(stderr, "histogram scrape fixture: %d writer(s) failed\n", failed);
  f->expected = hist_scrape_expected(writers, series);
  f->source = std::make_unique<exporter::RoleSource>("bench", f->name);
  fixtures[key] = f;
  return *f;
}

void bm_scrape_hist_shmetrics(benchmark::State& st, std::uint32_t writers, std::uint32_t series) {
  HistogramScrape& f = hist_scrape_fixture(writers, series);
  std::string out;
  for (auto _ : st) {
    out = f.source->scrape();
    benchmark::DoNotOptimize(out.data());
  }
  st.counters["bytes"] = static_cast<double>(out.size());
  std::string diff = check_hist_scrape(out, f.expected);
  check(st, "scrape_hist/shmetrics", diff.empty(), diff);
}

// prometheus-cpp collecting and serialising S histograms of one process, each
// holding the W values the writers observed into ours.
void bm_scrape_hist_prometheus_cpp(benchmark::State& st, std::uint32_t writers, std::uint32_t series) {
  static std::map<std::pair<std::uint32_t, std::uint32_t>, std::shared_ptr<prometheus::Registry>> registries;
  auto& registry = registries[{writers, series}];
  if (!registry) {
    registry = std::make_shared<prometheus::Registry>();
    auto& fam = prometheus::BuildHistogram()
                    .Name(kScrapeHistogram)
                    .Help("Histogram scrape benchmark series.")
                    .Register(*registry);
    for (std::uint32_t i = 0; i < series; ++i) {
      auto& h = fam.Add({{"series", sb::series_label(i)}}, sb::histogram_bounds());
      for (std::uint32_t w = 0; w < writers; ++w) h.Observe(sb::histogram_value(std::uint64_t{i} * writers + w));
    }
  }
  prometheus::TextSerializer serializer;
  std::string out;
  for (auto _ : st) {
    auto families = registry->Collect();
    out = serializer.Serialize(families);
    benchmark::DoNotOptimize(out.data());
  }
  st.counters["bytes"] = static_cast<double>(out.size());
  std::string diff = check_hist_scrape(out, hist_scrape_expected(writers, series));
  check(st, "scrape_hist/prometheus_cpp", diff.empty(), diff);
}

// scrape_after_churn: G generations of 2 workers; each worker raises a livesum
// gauge and increments every one of 1,000 series, the workers of all but the
// last generation exit. The last two stay alive while the scrapes run.
ScrapeFixture& churn_fixture(std::uint32_t generations) {
  static std::map<std::uint32_t, ScrapeFixture*> fixtures;
  if (auto it = fixtures.find(generations); it != fixtures.end()) return *it->second;
  constexpr std::uint32_t kSeries = 1000;
  auto* f = new ScrapeFixture;
  f->name = sb::unique_segment_name("churn" + std::to_string(generations));
  f->series = kSeries;
  SegmentOptions o;
  o.name = f->name;
  o.capacities.series = kSeries + 16;
  o.capacities.families = 16;
  o.capacities.string_bytes = 64 * 1024;
  Segment s = Segment::open(o);
  CounterFamily fam = s.counter_family("bench_churn_total", "Churn benchmark series.", {"series"});
  Gauge busy = s.gauge("bench_busy_workers", "Workers alive.", GaugeMode::kLiveSum);
  std::vector<Counter> handles;
  for (std::uint32_t i = 0; i < kSeries; ++i) handles.push_back(fam.labels({sb::series_label(i)}));
  auto* ready = sb::shared_block<std::atomic<int>>();
  g_gates.push_back(std::make_unique<sb::Gate>());
  sb::Gate* gate = g_gates.back().get();
  // Every fixture renders the same numbers (each series 2 x 50), so the
  // scrapes compare the cost of churn, not of formatting longer numbers.
  constexpr std::uint32_t kMostGenerations = 50;
  const std::uint64_t per_worker = kMostGenerations / generations;
  for (std::uint32_t g = 0; g < generations; ++g) {
    const bool last = g + 1 == generations;
    std::vector<pid_t> pids;
    for (int k = 0; k < 2; ++k)
      pids.push_back(sb::fork_child([&] {
        busy.inc();
        for (Counter& h : handles) h.inc(per_worker);
        if (last) {
          ready->fetch_add(1, std::memory_order_release);
          gate->wait();
        }
        return true;
      }));
    if (last) {
      g_children.insert(g_children.end(), pids.begin(), pids.end());
    } else {
      for (pid_t pid : pids)
        if (sb::wait_child(pid) != 0) std::fprintf(stderr, "churn worker failed\n");
    }
  }
  await_count(ready, 2);
  f->expected_each = 2.0 * static_cast<double>(per_worker * generations);
  f->extra_check = "bench_busy_workers";
  f->extra_expected = 2;
  f->source = std::make_unique<exporter::RoleSource>("bench", f->name);
  fixtures[generations] = f;
  return *f;
}

ScrapeFixture& churn_1() { return churn_fixture(1); }
ScrapeFixture& churn_50() { return churn_fixture(50); }

void register_all() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("counter_inc/shmetrics", bm_counter_inc_shmetrics)->UseRealTime();
  RegisterBenchmark("counter_inc/prometheus_cpp", bm_counter_inc_prometheus_cpp)->UseRealTime();
  RegisterBenchmark("counter_inc/floor_fetch_add", bm_floor_fetch_add)->UseRealTime();
  RegisterBenchmark("counter_inc/floor_load_store", bm_floor_load_store)->UseRealTime();
  for (const auto& [mode, m] : gauge_modes()) {
    const bool stamped = m == GaugeMode::kMostRecent || m == GaugeMode::kLiveMostRecent;
    for (std::string op : {"inc", "dec", "set"}) {
      if (stamped && op == "dec") continue;  // same path as inc
      RegisterBenchmark(("counter_inc/gauge_" + mode + "_" + op).c_str(),
                        [mode = mode, op](benchmark::State& st) { bm_gauge(st, mode, op); })
          ->UseRealTime();
    }
  }
  RegisterBenchmark("counter_inc/overflow_slot_1held", [](benchmark::State& st) { bm_overflow(st, 1); })
      ->UseRealTime();
  RegisterBenchmark("counter_inc/overflow_slot_64held", [](benchmark::State& st) { bm_overflow(st, 64); })
      ->UseRealTime();
  RegisterBenchmark("histogram_observe/floor", bm_histogram_floor)->UseRealTime();
  for (bool cycling : {true, false}) {
    const std::string values = cycling ? "cycling" : "one";
    RegisterBenchmark(("histogram_observe/shmetrics_" + values).c_str(),
                      [cycling](benchmark::State& st) { bm_histogram_shmetrics(st, cycling); })
        ->UseRealTime();
    RegisterBenchmark(("histogram_observe/prometheus_cpp_" + values).c_str(),
                      [cycling](benchmark::State& st) { bm_histogram_prometheus_cpp(st, cycling); })
        ->UseRealTime();
  }
  RegisterBenchmark("labelled_inc_lookup/shmetrics", bm_labelled_shmetrics)->UseRealTime();
  RegisterBenchmark("labelled_inc_lookup/prometheus_cpp", bm_labelled_prometheus_cpp)->UseRealTime();
  RegisterBenchmark("new_series/shmetrics", bm_new_series_shmetrics)
      ->Iterations(g_new_series_batch)
      ->UseRealTime();
  RegisterBenchmark("scrape_16x1000/shmetrics", [](benchmark::State& st) {
    bm_scrape_shmetrics(st, "scrape_16x1000/shmetrics", scrape_16x1000);
  })->UseRealTime()->Unit(benchmark::kMillisecond);
  RegisterBenchmark("scrape_64x10000/shmetrics", [](benchmark::State& st) {
    bm_scrape_shmetrics(st, "scrape_64x10000/shmetrics", scrape_64x10000);
  })->UseRealTime()->Unit(benchmark::kMillisecond);
  RegisterBenchmark("scrape_64x10000/prometheus_cpp", [](benchmark::State& st) {
    bm_scrape_prometheus_cpp(st, 10000);
  })->UseRealTime()->Unit(benchmark::kMillisecond);
  for (bool with_created : {false, true})
    RegisterBenchmark(with_created ? "scrape_64x10000_openmetrics_created/paired" : "scrape_64x10000_openmetrics/paired",
                      [with_created](benchmark::State& st) { bm_scrape_openmetrics(st, with_created); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  RegisterBenchmark("scrape_64x10000_gzip/shmetrics_http", bm_scrape_gzip_http)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  RegisterBenchmark("scrape_hist_64x1000/shmetrics", [](benchmark::State& st) {
    bm_scrape_hist_shmetrics(st, 64, 1000);
  })->UseRealTime()->Unit(benchmark::kMillisecond);
  RegisterBenchmark("scrape_hist_64x1000/prometheus_cpp", [](benchmark::State& st) {
    bm_scrape_hist_prometheus_cpp(st, 64, 1000);
  })->UseRealTime()->Unit(benchmark::kMillisecond);
  RegisterBenchmark("scrape_after_churn/shmetrics_1gen", [](benchmark::State& st) {
    bm_scrape_shmetrics(st, "scrape_after_churn/shmetrics_1gen", churn_1);
  })->UseRealTime()->Unit(benchmark::kMillisecond);
  RegisterBenchmark("scrape_after_churn/shmetrics_50gen", [](benchmark::State& st) {
    bm_scrape_shmetrics(st, "scrape_after_churn/shmetrics_50gen", churn_50);
  })->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  // Our own flags first; Google Benchmark rejects what it does not know.
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    std::string_view a = argv[i];
    if (i > 0 && a == "--quick") {
      g_new_series_batch = 2'000;
    } else if (i > 0 && a.starts_with("--new-series=")) {
      g_new_series_batch = static_cast<std::uint32_t>(std::stoul(std::string(a.substr(13))));
    } else {
      if (a.starts_with("--benchmark_repetitions="))
        g_max_repetitions = std::max<std::uint32_t>(
            g_max_repetitions, static_cast<std::uint32_t>(std::stoul(std::string(a.substr(24)))) + 2);
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  // One writer, one CPU: the process (and the writers its fixtures fork) run on CPU 0.
  sb::pin_to_cpu(0);
  sb::install_cleanup();
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  teardown();
  sb::remove_created_segments();
  if (g_check_failures > 0) {
    std::fprintf(stderr, "shmetrics-bench: %d check(s) failed\n", g_check_failures);
    return 3;
  }
  return 0;
}
