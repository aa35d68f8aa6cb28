// The segment's seqlock: one sequence word guarding a few words of data that
// one process's threads write and any process reads, as the kernel's
// include/linux/seqlock.h documents its own.
//
// Write side (threads of the one process that owns the data):
//
//   std::uint64_t s = shm::seqlock_write_begin(seq);  // waits while odd, makes it odd
//   ... relaxed stores of the data ...
//   shm::seqlock_write_end(seq, s + 2);               // even again, with release
//
// The threads of the owner take turns on the odd value, so two of them never
// write the data at once; another process never writes it. A value greater
// than s + 2 may end the write (a timestamped gauge stores its time there),
// as long as it is even and greater than s.
//
// Read side (the exporter, through a read-only mapping it does not trust):
//
//   bool ok = shm::seqlock_read(seq_address, [&](std::uint64_t s) {
//     ... relaxed loads of the data into locals ...
//     return true;  // or false: give up (the data is corrupt, or unset)
//   });
//
// The loads are retried while the sequence is odd or changed around them, at
// most kSeqlockReadTries times: a writer that stopped inside (SIGSTOP, or a
// process that died there) costs a reader a few retries, never a hang. The
// locals are used only when seqlock_read returns true.
//
// A process that takes over a dead owner's data first evens out the word it
// may have left odd: seqlock_reset.
#pragma once

#include <atomic>
#include <cstdint>

namespace shmetrics::shm {

// Attempts of a reader before it leaves the value out of this scrape.
inline constexpr int kSeqlockReadTries = 8;

// Enters the write side; returns the even value the word had.
inline std::uint64_t seqlock_write_begin(std::atomic<std::uint64_t>& seq) {
  std::uint64_t s = seq.load(std::memory_order_relaxed);
  for (;;) {
    if (s & 1) {  // another thread of this process is inside
      s = seq.load(std::memory_order_relaxed);
      continue;
    }
    if (seq.compare_exchange_weak(s, s | 1, std::memory_order_acquire, std::memory_order_relaxed)) break;
  }
  // The odd value is visible before any store of the data.
  std::atomic_thread_fence(std::memory_order_release);
  return s;
}

// Leaves the write side: `next` is even and greater than what
// seqlock_write_begin returned; the data's stores are visible before it.
inline void seqlock_write_end(std::atomic<std::uint64_t>& seq, std::uint64_t next) {
  seq.store(next, std::memory_order_release);
}

// Evens out a word a dead writer may have left odd, past every value it had,
// with no reader able to take what was inside for consistent. Only by the
// data's new owner, before it writes.
inline void seqlock_reset(std::atomic<std::uint64_t>& seq) {
  const std::uint64_t s = seq.load(std::memory_order_relaxed);
  seq.store((s | 1) + 1, std::memory_order_release);
}

// Runs `read(s)` between two loads of the sequence word at `seq` (8 bytes,
// aligned, in a mapping of another process) until both loads give the same
// even value s, at most kSeqlockReadTries times. `read` returns false to give
// up at once. True when a read was consistent and `read` returned true.
template <typename Read>
bool seqlock_read(const void* seq, Read&& read) {
  const auto* word = static_cast<const std::uint64_t*>(seq);
  for (int attempt = 0; attempt < kSeqlockReadTries; ++attempt) {
    const std::uint64_t s1 = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    if (s1 & 1) continue;
    if (!read(s1)) return false;
    // The data's loads happen before the second load of the word.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (__atomic_load_n(word, __ATOMIC_RELAXED) == s1) return true;
  }
  return false;
}

}  // namespace shmetrics::shm
