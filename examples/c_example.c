/* A preforked C server's metrics through shmetrics' C API: the master opens
 * the segment and resolves its handles once, forks workers, and each worker
 * counts its requests, observes their latency and marks itself busy. Built
 * as C11 with -Wall -Wextra -pedantic by the build; tests/test_c_api.cc runs
 * it and checks what the exporter reads.
 *
 * Usage: c-example SEGMENT WORKERS REQUESTS
 *   SEGMENT   a segment name (in the segment directory) or an absolute path
 *   WORKERS   worker processes to fork, 1-64
 *   REQUESTS  requests each worker serves, 0-1000000
 * Exits 0 when every worker did; prints what failed otherwise. */
#include <shmetrics/shmetrics_c.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int failed(const char* call) {
  fprintf(stderr, "c-example: %s failed: %s\n", call, shmetrics_last_error());
  return 1;
}

/* A whole number from `text` in [lo, hi], or -1. */
static long number(const char* text, long lo, long hi) {
  char* end = NULL;
  long n = strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || n < lo || n > hi) return -1;
  return n;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: c-example SEGMENT WORKERS REQUESTS\n");
    return 2;
  }
  long workers = number(argv[2], 1, 64);
  long requests = number(argv[3], 0, 1000000);
  if (workers < 0 || requests < 0) {
    fprintf(stderr, "c-example: WORKERS must be 1-64 and REQUESTS 0-1000000\n");
    return 2;
  }

  shmetrics_options options;
  shmetrics_options_init(&options);
  options.name = argv[1];
  shmetrics_segment segment;
  if (shmetrics_open(&options, &segment) != SHMETRICS_OK) return failed("shmetrics_open");

  /* Registration and label sets: once, in the master, before fork(). */
  const char* route_label[] = {"route"};
  const char* index_route[] = {"/"};
  shmetrics_counter_family requests_family;
  shmetrics_counter served;
  if (shmetrics_counter_family_register(segment, "c_requests_total", "Requests served.", route_label, 1,
                                        SHMETRICS_INTEGER, NULL, &requests_family) != SHMETRICS_OK)
    return failed("shmetrics_counter_family_register");
  if (shmetrics_counter_labels(requests_family, index_route, 1, &served) != SHMETRICS_OK)
    return failed("shmetrics_counter_labels");

  shmetrics_gauge_family busy_family;
  shmetrics_gauge busy;
  if (shmetrics_gauge_family_register(segment, "c_busy_workers", "Workers serving a request.", NULL, 0, "livesum",
                                      SHMETRICS_INTEGER, NULL, &busy_family) != SHMETRICS_OK)
    return failed("shmetrics_gauge_family_register");
  if (shmetrics_gauge_labels(busy_family, NULL, 0, &busy) != SHMETRICS_OK) return failed("shmetrics_gauge_labels");

  const double bounds[] = {0.001, 0.01, 0.1, 1};
  shmetrics_histogram_family latency_family;
  shmetrics_histogram latency;
  if (shmetrics_histogram_family_register(segment, "c_request_duration_seconds", "Time to serve a request.",
                                          route_label, 1, bounds, 4, "seconds", &latency_family) != SHMETRICS_OK)
    return failed("shmetrics_histogram_family_register");
  if (shmetrics_histogram_labels(latency_family, index_route, 1, &latency) != SHMETRICS_OK)
    return failed("shmetrics_histogram_labels");

  const char* version_label[] = {"version"};
  const char* version[] = {"1.2.3"};
  shmetrics_info build;
  if (shmetrics_info_register(segment, "c_build_info", "The server's build.", version_label, 1, &build) !=
      SHMETRICS_OK)
    return failed("shmetrics_info_register");
  shmetrics_readyz readyz;
  if (shmetrics_readyz_get(segment, &readyz) != SHMETRICS_OK) return failed("shmetrics_readyz_get");

  for (long w = 0; w < workers; ++w) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("c-example: fork");
      return 1;
    }
    if (pid == 0) {
      /* A worker: the handles resolved before fork() write its own cells. */
      shmetrics_info_set(build, version, 1);
      for (long r = 0; r < requests; ++r) {
        shmetrics_gauge_add_int(busy, 1);
        shmetrics_counter_inc(served, 1);
        shmetrics_histogram_observe(latency, 0.005); /* the le="0.01" bucket */
        shmetrics_readyz_observe(readyz, 1);
        shmetrics_gauge_add_int(busy, -1);
      }
      _exit(0);
    }
  }
  int bad = 0;
  for (long w = 0; w < workers; ++w) {
    int status = 0;
    if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) bad = 1;
  }
  if (bad) {
    fprintf(stderr, "c-example: a worker failed\n");
    return 1;
  }
  printf("%s: %ld workers served %ld requests each\n", shmetrics_segment_path(segment), workers, requests);
  return 0;
}
