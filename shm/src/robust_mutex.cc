#include <shmetrics/shm/robust_mutex.h>

#include <cerrno>
#include <ctime>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace shmetrics::shm {

int init_robust_mutex(pthread_mutex_t& mutex) {
  pthread_mutexattr_t attr;
  int rc = ::pthread_mutexattr_init(&attr);
  if (rc != 0) return rc;
  rc = ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = ::pthread_mutex_init(&mutex, &attr);
  ::pthread_mutexattr_destroy(&attr);
  return rc;
}

void note_recovered_lock(pthread_mutex_t* mutex) {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer records a lock only when the call returns 0; a robust
  // mutex recovered from a dead holder returns EOWNERDEAD.
  __tsan_mutex_pre_lock(mutex, __tsan_mutex_try_lock);
  __tsan_mutex_post_lock(mutex, __tsan_mutex_try_lock, 0);
#else
  (void)mutex;
#endif
}

LockResult lock_robust(pthread_mutex_t& mutex, std::chrono::milliseconds timeout) {
  // pthread_mutex_timedlock (CLOCK_REALTIME) rather than clocklock: ThreadSanitizer
  // in GCC 12 does not intercept the latter. A clock step only stretches or
  // shortens one bounded wait.
  struct timespec deadline {};
  ::clock_gettime(CLOCK_REALTIME, &deadline);
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
  deadline.tv_sec += ns / 1'000'000'000;
  deadline.tv_nsec += ns % 1'000'000'000;
  if (deadline.tv_nsec >= 1'000'000'000) {
    deadline.tv_sec += 1;
    deadline.tv_nsec -= 1'000'000'000;
  }
  int rc = ::pthread_mutex_timedlock(&mutex, &deadline);
  if (rc == EOWNERDEAD) {
    ::pthread_mutex_consistent(&mutex);
    note_recovered_lock(&mutex);
    return LockResult::kRecovered;
  }
  return rc == 0 ? LockResult::kLocked : LockResult::kTimedOut;
}

}  // namespace shmetrics::shm
