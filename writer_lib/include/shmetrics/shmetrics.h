// shmetrics: a shared-memory, multi-process metrics store for Prometheus.
// Include this one header; see README.md for an example.
#pragma once

#include <shmetrics/counter.h>
#include <shmetrics/gauge.h>
#include <shmetrics/histogram.h>
#include <shmetrics/readyz.h>
#include <shmetrics/segment.h>
#include <shmetrics/shm/segment_file.h>
