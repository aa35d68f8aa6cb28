#include <shmetrics/shm/test_hooks.h>

#include <atomic>
#include <cstring>
#include <unistd.h>

namespace shmetrics::shm {

namespace {
std::atomic<const char*> g_park_at{nullptr};
std::atomic<int> g_report_fd{-1};
std::atomic<int> g_resume_fd{-1};
}  // namespace

void set_park_point(const char* name, int report_fd, int resume_fd) {
  g_report_fd.store(report_fd, std::memory_order_relaxed);
  g_resume_fd.store(resume_fd, std::memory_order_relaxed);
  g_park_at.store(name, std::memory_order_release);
}

void park_point(const char* name) {
  const char* armed = g_park_at.load(std::memory_order_acquire);
  if (armed == nullptr || std::strcmp(armed, name) != 0) return;
  char byte = 'p';
  const int resume = g_resume_fd.load(std::memory_order_relaxed);
  if (resume == kReportOnly) {
    (void)!::write(g_report_fd.load(std::memory_order_relaxed), &byte, 1);
    return;
  }
  // Once, when it resumes: disarmed before reporting, so no other thread
  // that runs after the report parks too.
  if (resume >= 0) g_park_at.store(nullptr, std::memory_order_relaxed);
  (void)!::write(g_report_fd.load(std::memory_order_relaxed), &byte, 1);
  if (resume >= 0) {
    (void)!::read(resume, &byte, 1);
    return;
  }
  for (;;) ::pause();
}

}  // namespace shmetrics::shm
