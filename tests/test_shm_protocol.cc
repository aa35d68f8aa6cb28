// The segment's protocol pieces, each used by writers and the exporter from
// one place (shm/): the string-list codec, the seqlock and the robust mutex.
// The seqlock is raced by real threads (also under ThreadSanitizer); the
// mutex is held and abandoned by real forked processes.
#include "support.h"

#include <shmetrics/shm/robust_mutex.h>
#include <shmetrics/shm/seqlock.h>
#include <shmetrics/shm/string_list.h>

#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace shmetrics;

TEST_CASE("string lists round-trip, empty strings and NUL bytes included") {
  const std::vector<std::string_view> values = {"", "a", std::string_view("x\0y", 3), "héllo"};
  const std::string bytes = shm::encode_string_list(values);
  CHECK(bytes.size() == 4 * 4 + 0 + 1 + 3 + 6);
  std::vector<std::string> out;
  REQUIRE(shm::decode_string_list(bytes, 4, 16, out));
  CHECK(out == std::vector<std::string>{"", "a", std::string("x\0y", 3), "héllo"});
  // The empty list is no bytes.
  CHECK(shm::encode_string_list(std::span<const std::string_view>()).empty());
  CHECK(shm::decode_string_list("", 0, 16, out));
  CHECK(out.empty());
  // A kept buffer is cleared, not appended to.
  std::string buffer = "stale";
  shm::encode_string_list(buffer, values);
  CHECK(buffer == bytes);
}

TEST_CASE("a string list that is not exactly what is expected does not decode") {
  const std::vector<std::string_view> values = {"ab", "cde"};
  const std::string bytes = shm::encode_string_list(values);
  std::vector<std::string> out;
  CHECK_FALSE(shm::decode_string_list(bytes, 1, 16, out));       // too many
  CHECK_FALSE(shm::decode_string_list(bytes, 3, 16, out));       // too few
  CHECK(out.size() == 2);                                        // what decoded is kept
  CHECK_FALSE(shm::decode_string_list(bytes, 2, 2, out));        // one too long
  CHECK_FALSE(shm::decode_string_list(bytes.substr(0, bytes.size() - 1), 2, 16, out));  // truncated string
  CHECK_FALSE(shm::decode_string_list(bytes.substr(0, 8), 2, 16, out));  // truncated length
  CHECK_FALSE(shm::decode_string_list(bytes + "x", 2, 16, out));  // bytes left over
  std::string huge = bytes;
  const std::uint32_t n = 0xffffffffu;
  std::memcpy(huge.data(), &n, 4);  // a length past the end
  CHECK_FALSE(shm::decode_string_list(huge, 2, 0xffffffffu, out));
  CHECK(shm::decode_string_list(bytes, 2, 3, out));
}

namespace {

// Three words written together under one seqlock, as an info area or a
// timestamped gauge cell is.
struct Guarded {
  std::atomic<std::uint64_t> seq{0};
  std::array<std::atomic<std::uint64_t>, 3> words{};
};

}  // namespace

TEST_CASE("a seqlock reader never takes a half-written value, and threads of the writer take turns") {
  Guarded g;
  constexpr int kWriters = 3;
  constexpr std::uint64_t kMinWrites = 20000;
  constexpr std::uint64_t kWantReads = 2000;  // consistent reads while the writers write
  std::atomic<std::uint64_t> consistent{0};
  std::atomic<std::uint64_t> writes{0};
  std::atomic<bool> writers_done{false};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w)
    writers.emplace_back([&] {
      for (std::uint64_t i = 0; i < kMinWrites || (consistent.load() < kWantReads &&
                                                   std::chrono::steady_clock::now() < deadline);
           ++i) {
        const std::uint64_t s = shm::seqlock_write_begin(g.seq);
        // Inside: the words are this thread's alone, so a read-modify-write
        // of them loses nothing.
        const std::uint64_t v = g.words[0].load(std::memory_order_relaxed) + 1;
        for (auto& word : g.words) word.store(v, std::memory_order_relaxed);
        shm::seqlock_write_end(g.seq, s + 2);
        writes.fetch_add(1);
        if (i % 64 == 0) std::this_thread::yield();  // let the reader in on a busy machine
      }
    });
  std::uint64_t torn = 0, last = 0, backwards = 0;
  std::thread reader([&] {
    while (!writers_done.load()) {
      std::array<std::uint64_t, 3> seen{};
      if (!shm::seqlock_read(&g.seq, [&](std::uint64_t) {
            for (std::size_t i = 0; i < seen.size(); ++i) seen[i] = g.words[i].load(std::memory_order_relaxed);
            return true;
          }))
        continue;
      consistent.fetch_add(1);
      if (seen[0] != seen[1] || seen[1] != seen[2]) ++torn;
      if (seen[0] < last) ++backwards;
      last = seen[0];
    }
  });
  for (auto& t : writers) t.join();
  writers_done = true;
  reader.join();
  CHECK(g.words[0].load() == writes.load());  // no write lost to another thread's
  CHECK(g.seq.load() == 2 * writes.load());
  CHECK(consistent.load() >= kWantReads);
  CHECK(torn == 0);
  CHECK(backwards == 0);
}

TEST_CASE("a seqlock reader gives up on a writer stopped inside, and a reset evens the word out") {
  Guarded g;
  shm::seqlock_write_begin(g.seq);  // a writer that never ends its write
  int calls = 0;
  CHECK_FALSE(shm::seqlock_read(&g.seq, [&](std::uint64_t) { return ++calls, true; }));
  CHECK(calls == 0);  // odd: the data was never read
  shm::seqlock_reset(g.seq);
  CHECK(g.seq.load() == 2);
  CHECK(shm::seqlock_read(&g.seq, [&](std::uint64_t s) { return ++calls, s == 2; }));
  CHECK(calls == 1);
  // A reader that finds the data corrupt gives up at once.
  calls = 0;
  CHECK_FALSE(shm::seqlock_read(&g.seq, [&](std::uint64_t) { return ++calls, false; }));
  CHECK(calls == 1);
  // A write ended with a larger even value (a timestamp) is read as such.
  const std::uint64_t s = shm::seqlock_write_begin(g.seq);
  shm::seqlock_write_end(g.seq, 1000);
  CHECK(s == 2);
  std::uint64_t seen = 0;
  CHECK(shm::seqlock_read(&g.seq, [&](std::uint64_t v) { return seen = v, true; }));
  CHECK(seen == 1000);
}

namespace {

// A robust mutex in shared memory, as the segment holds its own.
struct SharedMutex {
  SharedMutex() {
    void* p = ::mmap(nullptr, sizeof(pthread_mutex_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    mutex = static_cast<pthread_mutex_t*>(p);
    REQUIRE(shm::init_robust_mutex(*mutex) == 0);
  }
  ~SharedMutex() { ::munmap(mutex, sizeof(pthread_mutex_t)); }
  pthread_mutex_t* mutex = nullptr;
};

}  // namespace

TEST_CASE("a robust lock is held, times out while a live process holds it, and is recovered from a dead one") {
  SharedMutex m;
  {
    shm::RobustLock lock(*m.mutex, std::chrono::milliseconds(100));
    CHECK(lock.held());
    CHECK_FALSE(lock.recovered());
  }
  // Released at the end of its scope: taken again at once.
  {
    shm::RobustLock again(*m.mutex, std::chrono::milliseconds(100));
    CHECK(again.held());
  }
  // A live process holds it.
  testing::ParkedChild holder([&] {
    if (shm::lock_robust(*m.mutex, std::chrono::seconds(5)) != shm::LockResult::kLocked)
      throw std::runtime_error("the child could not take the mutex");
  });
  {
    const auto start = std::chrono::steady_clock::now();
    shm::RobustLock waited(*m.mutex, std::chrono::milliseconds(200));
    CHECK_FALSE(waited.held());
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(200));
  }
  holder.kill();  // it dies holding the mutex
  {
    shm::RobustLock recovered(*m.mutex, std::chrono::seconds(5));
    CHECK(recovered.held());
    CHECK(recovered.recovered());
  }
  // Made consistent: the next lock is a plain one.
  shm::RobustLock plain(*m.mutex, std::chrono::milliseconds(100));
  CHECK(plain.held());
  CHECK_FALSE(plain.recovered());
}
