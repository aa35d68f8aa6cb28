#include <shmetrics/shmetrics.h>

#include <unistd.h>

int main() {
  // Every worker opens the role's segment; the first one creates it.
  shmetrics::SegmentOptions options;
  options.role = "ops";  // /dev/shm/shmetrics-<uid>/default.ops
  shmetrics::Segment segment = shmetrics::Segment::open(options);

  // Register once, keep the handles: updates are inlined and lock-free.
  shmetrics::Counter allowed =
      segment.counter("rbac_allowed_total", "Requests the RBAC middleware allowed.");
  shmetrics::CounterFamily requests = segment.counter_family(
      "http_requests_total", "HTTP requests by route.", {"route"});
  shmetrics::Counter home = requests.labels({"/"});
  shmetrics::Gauge busy = segment.gauge("busy_workers", "Workers serving a request.",
                                        shmetrics::GaugeMode::kLiveSum, shmetrics::ValueType::kInteger);

  for (int i = 0; i < 3; ++i) fork();  // eight processes, one segment
  busy.inc();
  allowed.inc();
  home.inc(2);
  busy.dec();
  pause();  // curl http://127.0.0.1:8081/metrics (shmetrics-exporter running)
}
