// shmetrics-bench-mp: the multi-process scenarios, run for fixed durations on
// pinned CPUs, each printing one JSON object on stdout.
//
//   probe [--iters N] [--cpu K]       per-CPU speed: ns per step of a dependent
//                                     multiply-add chain, pinned to each CPU (or K)
//   two_writers [--duration-ms D] [--reps R]
//                                     counter_inc_2writers: one writer pinned to
//                                     CPU 0, then writer k of two pinned to CPU
//                                     k, for shmetrics (processes), the floor
//                                     (owned lines, processes) and
//                                     prometheus-cpp (threads, one counter)
//   histogram_two_writers [--duration-ms D] [--reps R]
//                                     histogram_observe_2writers: the same with
//                                     one histogram of 10 bounds observing the
//                                     values of common.h
//   segment_bytes [--writers W] [--series S] [--sparse-percent P]
//                                     segment_bytes_64x10000 and _sparse
//   serve_segment [--series S] [--writers W]
//                                     creates and fills a segment for the
//                                     exporter_wrk scenario, prints its name and
//                                     expected values, and keeps it until stdin
//                                     closes
//
// Every shmetrics figure comes with a check of the counts it wrote against the
// exporter's render; a failed check makes the program exit 3 ("ok": false).
#include "common.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cinttypes>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

using namespace shmetrics;
namespace sb = shmetrics::bench;

namespace {

int g_check_failures = 0;
std::vector<std::string> g_check_messages;

void check(bool ok, const std::string& what) {
  if (ok) return;
  ++g_check_failures;
  g_check_messages.push_back(what);
  std::fprintf(stderr, "check failed: %s\n", what.c_str());
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string json_list(const std::vector<double>& v) {
  std::ostringstream o;
  o.precision(6);
  o << "[";
  for (std::size_t i = 0; i < v.size(); ++i) o << (i ? ", " : "") << v[i];
  o << "]";
  return o.str();
}

std::string checks_json() {
  std::string out = "\"ok\": " + std::string(g_check_failures == 0 ? "true" : "false") + ", \"check_failures\": [";
  for (std::size_t i = 0; i < g_check_messages.size(); ++i)
    out += (i ? ", " : "") + json_string(g_check_messages[i]);
  return out + "]";
}

std::uint64_t flag(int argc, char** argv, const std::string& name, std::uint64_t fallback) {
  for (int i = 2; i + 1 < argc; ++i)
    if (name == argv[i]) return std::stoull(argv[i + 1]);
  return fallback;
}

// ---------------------------------------------------------------------------
// probe: a dependent multiply-add chain (one step per multiply latency), so a
// slower or shared CPU shows as more ns per step.
// ---------------------------------------------------------------------------

double probe_cpu(int cpu, std::uint64_t iters) {
  sb::pin_to_cpu(cpu);
  double best = 1e99;
  for (int rep = 0; rep < 3; ++rep) {
    std::uint64_t x = 88172645463325252ULL;
    std::uint64_t t0 = sb::now_ns();
    for (std::uint64_t i = 0; i < iters; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      asm volatile("" : "+r"(x));
    }
    std::uint64_t t1 = sb::now_ns();
    if (x == 42) std::fprintf(stderr, " ");
    best = std::min(best, static_cast<double>(t1 - t0) / static_cast<double>(iters));
  }
  return best;
}

// Every CPU in turn, or only `only` when >= 0.
std::string probe_json(std::uint64_t iters, int only = -1) {
  int online = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  std::ostringstream o;
  o.precision(4);
  o << "{";
  bool first = true;
  for (int c = 0; c < online; ++c) {
    if (only >= 0 && c != only) continue;
    o << (first ? "" : ", ") << "\"cpu" << c << "\": " << probe_cpu(c, iters);
    first = false;
  }
  o << "}";
  sb::unpin();
  return o.str();
}

int run_probe(int argc, char** argv) {
  const auto only = static_cast<int>(flag(argc, argv, "--cpu", 1000));
  std::printf("{\"probe_ns_per_step\": %s}\n",
              probe_json(flag(argc, argv, "--iters", 20'000'000), only == 1000 ? -1 : only).c_str());
  return 0;
}

// ---------------------------------------------------------------------------
// two_writers
// ---------------------------------------------------------------------------

struct alignas(64) Control {
  std::atomic<int> stop{0};
  alignas(64) std::atomic<int> ready{0};
  alignas(64) std::uint64_t ops[2] = {0, 0};
  std::uint64_t ns[2] = {0, 0};
};

// What one writer does: `step` performs 256 updates.
enum class Kind { kShmetrics, kShmetricsHistogram, kFloorFetchAdd, kFloorLoadStore };

// What the shmetrics writers update: one counter, or one histogram.
struct Target {
  Counter counter;
  Histogram histogram;
};

alignas(64) std::atomic<std::uint64_t> g_owned_line{0};  // per process after fork: owned

struct RunResult {
  std::vector<double> ns_per_op;  // per writer
  std::vector<std::uint64_t> ops;  // per writer, timed loop only
  double aggregate_ops_per_s = 0;
};

template <typename Step>
void writer_loop(Control* ctl, int k, Step step) {
  std::uint64_t n = 0;
  std::uint64_t t0 = sb::now_ns();
  while (ctl->stop.load(std::memory_order_relaxed) == 0) {
    step();
    n += 256;
  }
  std::uint64_t t1 = sb::now_ns();
  ctl->ops[k] = n;
  ctl->ns[k] = t1 - t0;
}

RunResult run_processes(Kind kind, int writers, std::uint64_t duration_ms, const Target& target) {
  auto* ctl = sb::shared_block<Control>();
  sb::Gate gate;
  std::vector<pid_t> pids;
  for (int k = 0; k < writers; ++k)
    pids.push_back(sb::fork_child([&] {
      sb::pin_to_cpu(k);
      // Warm up out of the timed loop (a shmetrics writer claims its slot
      // here; a histogram writer observes the 1,024 values once, which takes
      // the pages of all its cells).
      Counter counter = target.counter;
      Histogram histogram = target.histogram;
      if (kind == Kind::kShmetrics) counter.inc(0);
      if (kind == Kind::kShmetricsHistogram)
        for (double v : sb::histogram_values()) histogram.observe(v);
      ctl->ready.fetch_add(1);
      gate.wait();
      switch (kind) {
        case Kind::kShmetrics: {
          Counter c = counter;
          writer_loop(ctl, k, [&] {
            for (int i = 0; i < 256; ++i) c.inc();
          });
          break;
        }
        case Kind::kShmetricsHistogram: {
          Histogram h = histogram;
          const double* values = sb::histogram_values().data();
          std::uint64_t next = 0;
          writer_loop(ctl, k, [&] {
            for (int i = 0; i < 256; ++i) h.observe(values[next++ & (sb::kHistogramValues - 1)]);
          });
          break;
        }
        case Kind::kFloorFetchAdd:
          writer_loop(ctl, k, [] {
            for (int i = 0; i < 256; ++i) g_owned_line.fetch_add(1, std::memory_order_relaxed);
          });
          break;
        case Kind::kFloorLoadStore:
          writer_loop(ctl, k, [] {
            for (int i = 0; i < 256; ++i)
              g_owned_line.store(g_owned_line.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
          });
          break;
      }
      return true;
    }));
  while (ctl->ready.load() < writers) sb::sleep_ms(1);
  gate.release();
  sb::sleep_ms(duration_ms);
  ctl->stop.store(1);
  for (pid_t pid : pids) check(sb::wait_child(pid) == 0, "a two_writers child failed");
  RunResult r;
  double total_rate = 0;
  for (int k = 0; k < writers; ++k) {
    double ns = static_cast<double>(ctl->ns[k]);
    double ops = static_cast<double>(ctl->ops[k]);
    r.ns_per_op.push_back(ops > 0 ? ns / ops : 0);
    r.ops.push_back(ctl->ops[k]);
    total_rate += ops > 0 ? ops / (ns * 1e-9) : 0;
  }
  r.aggregate_ops_per_s = total_rate;
  ::munmap(ctl, sizeof(Control));
  return r;
}

// `update(i)`: the i-th update of a thread, i from 0.
template <typename Update>
RunResult run_prometheus_threads(int writers, std::uint64_t duration_ms, Update update) {
  Control ctl;
  std::atomic<int> go{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < writers; ++k)
    threads.emplace_back([&, k] {
      sb::pin_to_cpu(k);
      ctl.ready.fetch_add(1);
      while (go.load() == 0) std::this_thread::yield();
      std::uint64_t next = 0;
      writer_loop(&ctl, k, [&] {
        for (int i = 0; i < 256; ++i) update(next++);
      });
    });
  while (ctl.ready.load() < writers) sb::sleep_ms(1);
  go.store(1);
  sb::sleep_ms(duration_ms);
  ctl.stop.store(1);
  for (auto& t : threads) t.join();
  RunResult r;
  for (int k = 0; k < writers; ++k) {
    double ns = static_cast<double>(ctl.ns[k]);
    double ops = static_cast<double>(ctl.ops[k]);
    r.ns_per_op.push_back(ops > 0 ? ns / ops : 0);
    r.ops.push_back(ctl.ops[k]);
    r.aggregate_ops_per_s += ops > 0 ? ops / (ns * 1e-9) : 0;
  }
  return r;
}

// counter_inc_2writers, or histogram_observe_2writers when `histogram`: the
// shmetrics writers are processes on one series, the floor writers processes
// on lines of their own, the prometheus-cpp writers threads on one series; 1
// and 2 writers of each, interleaved, `reps` times.
int run_two_writers(int argc, char** argv, bool histogram) {
  const std::string scenario = histogram ? "histogram_observe_2writers" : "counter_inc_2writers";
  const std::uint64_t duration_ms = flag(argc, argv, "--duration-ms", 1000);
  const int reps = static_cast<int>(flag(argc, argv, "--reps", 5));
  const std::string probe_before = probe_json(flag(argc, argv, "--probe-iters", 5'000'000));

  std::string name = sb::unique_segment_name(histogram ? "histogram_two_writers" : "two_writers");
  SegmentOptions o;
  o.name = name;
  o.capacities.series = 16;
  o.capacities.families = 16;
  o.capacities.string_bytes = 4096;
  if (histogram) o.capacities.cells = 64;  // a histogram of 10 bounds takes 22
  Segment segment = Segment::open(o);
  Target target;
  if (histogram)
    target.histogram = segment.histogram("bench_two_writers_seconds", "Observations of the two-writer benchmark.",
                                         sb::histogram_bounds());
  else
    target.counter = segment.counter("bench_two_writers_total", "Increments of the two-writer benchmark.");
  const Kind shmetrics_kind = histogram ? Kind::kShmetricsHistogram : Kind::kShmetrics;
  std::uint64_t expected = 0;            // counter: increments; histogram: observations
  sb::HistogramExpected expected_hist;   // histogram: what they add up to

  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::Counter* prom_counter = nullptr;
  prometheus::Histogram* prom_histogram = nullptr;
  if (histogram)
    prom_histogram = &prometheus::BuildHistogram()
                          .Name("bench_two_writers_seconds")
                          .Help("h")
                          .Register(*registry)
                          .Add({}, sb::histogram_bounds());
  else
    prom_counter = &prometheus::BuildCounter().Name("bench_two_writers_total").Help("h").Register(*registry).Add({});
  const double* values = sb::histogram_values().data();
  auto run_prometheus = [&](int writers) {
    if (histogram)
      return run_prometheus_threads(writers, duration_ms, [&](std::uint64_t i) {
        prom_histogram->Observe(values[i & (sb::kHistogramValues - 1)]);
      });
    return run_prometheus_threads(writers, duration_ms, [&](std::uint64_t) { prom_counter->Increment(); });
  };
  std::uint64_t prom_expected = 0;
  sb::HistogramExpected prom_expected_hist;

  // series name -> per-rep values
  std::map<std::string, std::vector<double>> out;
  auto record = [&](const std::string& key, const RunResult& r, int writers) {
    for (std::uint64_t ops : r.ops) {
      if (key.starts_with("shmetrics")) {
        expected += ops;
        if (histogram) {
          expected_hist.add_sequence(0, sb::kHistogramValues);  // the warm-up
          expected_hist.add_sequence(0, ops);
        }
      } else if (key.starts_with("prometheus_cpp")) {
        prom_expected += ops;
        if (histogram) prom_expected_hist.add_sequence(0, ops);
      }
    }
    double mean_ns = 0;
    for (double v : r.ns_per_op) mean_ns += v / writers;
    out[key + "_ns_per_op"].push_back(mean_ns);
    out[key + "_ops_per_s"].push_back(r.aggregate_ops_per_s);
  };

  for (int rep = 0; rep < reps; ++rep) {
    // Interleaved, so drift over the run touches every configuration alike.
    record("shmetrics_1", run_processes(shmetrics_kind, 1, duration_ms, target), 1);
    record("shmetrics_2", run_processes(shmetrics_kind, 2, duration_ms, target), 2);
    record("floor_fetch_add_1", run_processes(Kind::kFloorFetchAdd, 1, duration_ms, target), 1);
    record("floor_fetch_add_2", run_processes(Kind::kFloorFetchAdd, 2, duration_ms, target), 2);
    record("floor_load_store_1", run_processes(Kind::kFloorLoadStore, 1, duration_ms, target), 1);
    record("floor_load_store_2", run_processes(Kind::kFloorLoadStore, 2, duration_ms, target), 2);
    record("prometheus_cpp_1", run_prometheus(1), 1);
    record("prometheus_cpp_2", run_prometheus(2), 2);
    // The check: every update of every shmetrics writer is rendered.
    std::string text = sb::scrape(name);
    if (histogram) {
      std::string diff = sb::check_histogram(text, "bench_two_writers_seconds", "", expected_hist);
      check(diff.empty(), scenario + ": " + diff);
    } else {
      double got = sb::sample(text, "bench_two_writers_total");
      check(got == static_cast<double>(expected),
            scenario + ": rendered " + std::to_string(got) + ", wrote " + std::to_string(expected));
    }
    check(sb::sample(text, "shmetrics_overflow_writers_total{role=\"bench\"}") == 0,
          scenario + ": a writer fell back to the overflow slot");
  }
  if (histogram) {
    const prometheus::ClientMetric m = prom_histogram->Collect();
    sb::RenderedHistogram got;
    for (const auto& b : m.histogram.bucket)
      got.buckets.emplace_back(b.upper_bound, static_cast<double>(b.cumulative_count));
    got.sum = m.histogram.sample_sum;
    got.count = static_cast<double>(m.histogram.sample_count);
    std::string diff = sb::compare_histogram(got, prom_expected_hist);
    check(diff.empty(), scenario + ": prometheus-cpp: " + diff);
  } else {
    check(prom_counter->Value() == static_cast<double>(prom_expected), scenario + ": prometheus-cpp count");
  }
  for (const std::string key : {"shmetrics", "floor_fetch_add", "floor_load_store", "prometheus_cpp"}) {
    std::vector<double> scaling;
    for (int rep = 0; rep < reps; ++rep)
      scaling.push_back(out[key + "_2_ops_per_s"][rep] / out[key + "_1_ops_per_s"][rep]);
    out[key + "_scaling"] = scaling;
  }
  const std::string probe_after = probe_json(flag(argc, argv, "--probe-iters", 5'000'000));
  std::printf("{\"scenario\": \"%s\", \"duration_ms\": %" PRIu64 ", \"reps\": %d,\n", scenario.c_str(),
              duration_ms, reps);
  std::printf(" \"probe_before\": %s, \"probe_after\": %s,\n", probe_before.c_str(), probe_after.c_str());
  std::printf(" \"shmetrics_total_ops\": %" PRIu64 ",\n", expected);
  for (const auto& [key, values] : out) std::printf(" \"%s\": %s,\n", key.c_str(), json_list(values).c_str());
  std::printf(" %s}\n", checks_json().c_str());
  return g_check_failures ? 3 : 0;
}

// ---------------------------------------------------------------------------
// segment_bytes
// ---------------------------------------------------------------------------

struct BytesResult {
  std::uint64_t blocks = 0, size = 0, names = 0, cells = 0;
  // For a page pool that does not exist yet: the share of (slot, page) pairs
  // the writers touched, for pages of 8, 64 and 512 cells.
  std::vector<std::pair<std::uint32_t, double>> touched_pages;
  std::uint64_t pages_used = 0, pool_pages = 0;
  shm::Geometry g{};
  Capacities caps{};
};

// Writer w touches series i when (i + w * 7) % 100 < percent: each writer a
// different `percent` share of the series, in runs of consecutive series (as
// a worker serving some routes touches the series those routes registered).
bool touches(std::uint32_t percent, std::uint32_t w, std::uint32_t i) { return (i + w * 7) % 100 < percent; }

// (slot, page) pairs the pattern touches for pages of `page` cells.
std::uint64_t touched_pages(std::uint32_t writers, std::uint32_t series, std::uint32_t percent,
                            std::uint32_t page) {
  const std::uint32_t pages = (series + page - 1) / page;
  std::uint64_t touched = 0;
  for (std::uint32_t w = 0; w < writers; ++w)
    for (std::uint32_t p = 0; p < pages; ++p)
      for (std::uint32_t i = p * page; i < std::min(series, (p + 1) * page); ++i)
        if (touches(percent, w, i)) {
          ++touched;
          break;
        }
  return touched;
}

// Both segments are made for counters only (no gauge cells, no info areas in
// the process records); `cell_pages` 0 gives the pool every (slot, page).
BytesResult fill_and_measure(std::uint32_t writers, std::uint32_t series, std::uint32_t percent,
                             std::uint32_t cell_pages, const std::string& tag) {
  std::string name = sb::unique_segment_name(tag);
  SegmentOptions o;
  o.name = name;
  o.capacities.thread_slots = writers;
  o.capacities.series = series;
  o.capacities.families = 16;
  o.capacities.string_bytes = series * 16 + 4096;
  o.capacities.gauge_series = 0;
  o.capacities.info_families = 0;
  o.capacities.cell_pages = cell_pages;
  Segment s = Segment::open(o);
  CounterFamily fam = s.counter_family("bench_bytes_total", "Segment size benchmark series.", {"series"});
  std::vector<Counter> handles;
  for (std::uint32_t i = 0; i < series; ++i) handles.push_back(fam.labels({sb::series_label(i)}));
  auto touches = [&](std::uint32_t w, std::uint32_t i) { return ::touches(percent, w, i); };
  // Every writer keeps its slot until all have written and the segment is
  // measured: 64 slots, each with its own pages (a writer that exited would
  // hand its slot, and its pages, to the next one).
  int wrote[2];
  check(::pipe(wrote) == 0, tag + ": pipe failed");
  sb::Gate gate;
  std::vector<pid_t> pids;
  for (std::uint32_t w = 0; w < writers; ++w)
    pids.push_back(sb::fork_child([&] {
      for (std::uint32_t i = 0; i < series; ++i)
        if (touches(w, i)) handles[i].inc();
      char byte = 1;
      if (::write(wrote[1], &byte, 1) != 1) return false;
      ::close(wrote[1]);  // a writer that dies before writing ends the parent's read
      gate.wait();
      return true;
    }));
  ::close(wrote[1]);
  for (std::uint32_t w = 0; w < writers; ++w) {
    char byte;
    if (::read(wrote[0], &byte, 1) != 1) {
      check(false, tag + ": a writer died before writing");
      break;
    }
  }
  std::string text = sb::scrape(name);
  auto samples = sb::parse_samples(text);
  std::uint32_t good = 0;
  for (std::uint32_t i = 0; i < series; ++i) {
    double expected = 0;
    for (std::uint32_t w = 0; w < writers; ++w) expected += touches(w, i);
    auto it = samples.find("bench_bytes_total{series=\"" + sb::series_label(i) + "\"}");
    if (it != samples.end() && it->second == expected) ++good;
  }
  check(good == series, tag + ": " + std::to_string(good) + " of " + std::to_string(series) +
                            " series rendered what was written");
  auto pageless = samples.find("shmetrics_pageless_updates_total{role=\"bench\"}");
  check(pageless != samples.end() && pageless->second == 0,
        tag + ": some updates found the page pool empty");
  BytesResult r;
  sb::SegmentBytes b = sb::segment_bytes(name);
  r.blocks = b.blocks_bytes;
  r.size = b.size_bytes;
  auto m = shm::MappedSegment::open_read_only(name);
  r.g = m->geometry();
  r.caps = m->capacities();
  const shm::Header* h = m->header();
  r.names = h->string_used.load() + std::uint64_t{h->series_count.load()} * sizeof(shm::SeriesEntry) +
            std::uint64_t{h->family_count.load()} * sizeof(shm::FamilyEntry);
  r.cells = std::uint64_t{writers} * series * 8;
  r.pages_used = h->pages_used.load();
  r.pool_pages = r.g.pool_pages;
  gate.release();
  for (pid_t pid : pids) check(sb::wait_child(pid) == 0, tag + ": a writer failed");
  ::close(wrote[0]);
  for (std::uint32_t page : {8u, 64u, 512u}) {
    const std::uint32_t pages = (series + page - 1) / page;
    r.touched_pages.emplace_back(page, static_cast<double>(touched_pages(writers, series, percent, page)) /
                                           (static_cast<double>(writers) * pages));
  }
  return r;
}

std::string bytes_json(const BytesResult& r) {
  const shm::Geometry& g = r.g;
  std::ostringstream o;
  o << "{\"blocks_bytes\": " << r.blocks << ", \"size_bytes\": " << r.size
    << ", \"names_bytes\": " << r.names << ", \"cell_bytes\": " << r.cells
    << ", \"bound_bytes\": " << static_cast<std::uint64_t>(1.25 * static_cast<double>(r.cells)) + r.names
    << ", \"regions\": {\"header_entries_strings\": " << g.slots_offset
    << ", \"thread_slots\": " << (g.overflow_cells_offset - g.slots_offset)
    << ", \"slot_page_tables\": " << std::uint64_t{r.caps.thread_slots + 1} * (g.slot_stride - sizeof(shm::SlotHeader))
    << ", \"overflow_cells\": " << (g.overflow_readyz_offset - g.overflow_cells_offset)
    << ", \"overflow_readyz\": " << (g.pool_offset - g.overflow_readyz_offset)
    << ", \"page_pool\": " << (g.records_offset - g.pool_offset)
    << ", \"readyz_ring_bytes\": " << g.readyz_pages * shm::kCacheLine
    << ", \"process_records\": " << (g.dead_offset - g.records_offset)
    << ", \"record_gauge_cells\": " << std::uint64_t{r.caps.process_records} * r.caps.gauge_series * sizeof(shm::GaugeCell)
    << ", \"dead_buffers\": " << (g.total_bytes - g.dead_offset) << "}"
    << ", \"touched_page_fraction\": {";
  for (std::size_t i = 0; i < r.touched_pages.size(); ++i)
    o << (i ? ", " : "") << "\"" << r.touched_pages[i].first << "\": " << r.touched_pages[i].second;
  o << "}, \"pool_pages\": " << r.pool_pages << ", \"pages_used\": " << r.pages_used
    << ", \"capacities\": " << json_string(shm::describe(r.caps)) << "}";
  return o.str();
}

int run_segment_bytes(int argc, char** argv) {
  const auto writers = static_cast<std::uint32_t>(flag(argc, argv, "--writers", 64));
  const auto series = static_cast<std::uint32_t>(flag(argc, argv, "--series", 10000));
  const auto percent = static_cast<std::uint32_t>(flag(argc, argv, "--sparse-percent", 10));
  BytesResult dense = fill_and_measure(writers, series, 100, 0, "bytes_dense");
  // The sparse segment's pool: the pages the pattern touches, plus 5 %.
  const std::uint64_t needed = touched_pages(writers, series, percent, shm::kCellsPerPage);
  const auto pool = static_cast<std::uint32_t>((needed * 105 + 99) / 100);
  BytesResult sparse = fill_and_measure(writers, series, percent, pool, "bytes_sparse");
  std::printf("{\"scenario\": \"segment_bytes\", \"writers\": %u, \"series\": %u, \"sparse_percent\": %u,\n",
              writers, series, percent);
  std::printf(" \"dense\": %s,\n \"sparse\": %s,\n %s}\n", bytes_json(dense).c_str(),
              bytes_json(sparse).c_str(), checks_json().c_str());
  return g_check_failures ? 3 : 0;
}

// ---------------------------------------------------------------------------
// serve_segment: the segment the exporter serves under wrk.
// ---------------------------------------------------------------------------

int run_serve_segment(int argc, char** argv) {
  const auto series = static_cast<std::uint32_t>(flag(argc, argv, "--series", 1000));
  const auto writers = static_cast<std::uint32_t>(flag(argc, argv, "--writers", 2));
  std::string name = sb::unique_segment_name("wrk");
  SegmentOptions o;
  o.name = name;
  o.capacities.series = series + 16;
  o.capacities.families = 16;
  o.capacities.string_bytes = series * 16 + 4096;
  Segment s = Segment::open(o);
  CounterFamily fam = s.counter_family("bench_wrk_total", "Series served under wrk.", {"series"});
  std::vector<Counter> handles;
  for (std::uint32_t i = 0; i < series; ++i) handles.push_back(fam.labels({sb::series_label(i)}));
  std::vector<pid_t> pids;
  for (std::uint32_t w = 0; w < writers; ++w)
    pids.push_back(sb::fork_child([&] {
      for (Counter& h : handles) h.inc(w + 1);
      return true;
    }));
  for (pid_t pid : pids) check(sb::wait_child(pid) == 0, "serve_segment: a writer failed");
  const double each = static_cast<double>(writers) * (writers + 1) / 2;
  std::printf("{\"segment\": %s, \"family\": \"bench_wrk_total\", \"series\": %u, \"expected_each\": %g, %s}\n",
              json_string(name).c_str(), series, each, checks_json().c_str());
  std::fflush(stdout);
  // Kept until the caller closes our stdin.
  char buf[256];
  while (std::fread(buf, 1, sizeof buf, stdin) > 0) {
  }
  sb::remove_created_segments();
  return g_check_failures ? 3 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  sb::install_cleanup();
  if (mode == "probe") return run_probe(argc, argv);
  if (mode == "two_writers") return run_two_writers(argc, argv, false);
  if (mode == "histogram_two_writers") return run_two_writers(argc, argv, true);
  if (mode == "segment_bytes") return run_segment_bytes(argc, argv);
  if (mode == "serve_segment") return run_serve_segment(argc, argv);
  std::fprintf(stderr,
               "usage: shmetrics-bench-mp probe|two_writers|histogram_two_writers|segment_bytes|serve_segment [flags]\n"
               "  (see the comment at the top of bench/bench_mp.cc)\n");
  return 2;
}
