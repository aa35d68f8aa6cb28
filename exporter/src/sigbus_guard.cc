#include "sigbus_guard.h"

#include <atomic>
#include <csignal>
#include <sys/mman.h>
#include <unistd.h>

namespace shmetrics::exporter {

namespace {

struct Range {
  std::atomic<std::uintptr_t> begin{0};
  std::atomic<std::uintptr_t> end{0};
  std::atomic<bool> faulted{false};
  std::atomic<int> state{0};  // 0 free, 1 being filled in, 2 guarded
};
constexpr int kRanges = 64;
Range g_ranges[kRanges];

void on_sigbus(int, siginfo_t* info, void*) {
  auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  for (Range& r : g_ranges) {
    if (r.state.load(std::memory_order_acquire) != 2) continue;
    if (addr < r.begin.load(std::memory_order_relaxed) || addr >= r.end.load(std::memory_order_relaxed))
      continue;
    auto page_size = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    void* page = reinterpret_cast<void*>(addr & ~(page_size - 1));
    if (::mmap(page, page_size, PROT_READ, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) !=
        MAP_FAILED) {
      r.faulted.store(true, std::memory_order_relaxed);
      return;  // the faulting load runs again and reads zeros
    }
    break;
  }
  // Not ours, or unrecoverable: die of SIGBUS as if there were no handler.
  ::signal(SIGBUS, SIG_DFL);
}

}  // namespace

void install_sigbus_handler() {
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, nullptr);
}

SigbusGuard::SigbusGuard(const std::uint8_t* base, std::size_t size) : slot_(-1) {
  for (int i = 0; i < kRanges; ++i) {
    Range& r = g_ranges[i];
    int expected = 0;
    if (!r.state.compare_exchange_strong(expected, 1, std::memory_order_acquire)) continue;
    r.begin.store(reinterpret_cast<std::uintptr_t>(base), std::memory_order_relaxed);
    r.end.store(reinterpret_cast<std::uintptr_t>(base) + size, std::memory_order_relaxed);
    r.faulted.store(false, std::memory_order_relaxed);
    r.state.store(2, std::memory_order_release);
    slot_ = i;
    return;
  }
}

SigbusGuard::~SigbusGuard() {
  if (slot_ >= 0) g_ranges[slot_].state.store(0, std::memory_order_release);
}

bool SigbusGuard::faulted() const {
  return slot_ >= 0 && g_ranges[slot_].faulted.load(std::memory_order_relaxed);
}

}  // namespace shmetrics::exporter
