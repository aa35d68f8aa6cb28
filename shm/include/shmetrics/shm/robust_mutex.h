// The segment's mutexes (registration_lock, fold_lock): process-shared,
// robust pthread mutexes, every wait on them bounded. One type for all, so a
// holder that died (EOWNERDEAD: the mutex is made consistent and taken) or
// stopped (the wait times out) is met the same way everywhere, and each
// caller decides only what a dead holder left behind.
#pragma once

#include <pthread.h>

#include <chrono>

namespace shmetrics::shm {

// Initialises a mutex in the segment: process-shared and robust. Returns 0
// or the pthread error number.
int init_robust_mutex(pthread_mutex_t& mutex);

// What a wait for a robust mutex gave.
enum class LockResult {
  kLocked,     // held
  kRecovered,  // held; its previous holder died holding it (made consistent)
  kTimedOut,   // not held: `timeout` passed (or the mutex is unrecoverable)
};

// Takes `mutex`, waiting at most `timeout`; the caller unlocks it when held.
// Prefer RobustLock.
LockResult lock_robust(pthread_mutex_t& mutex, std::chrono::milliseconds timeout);

// Holds a robust mutex of the segment for a scope, when it could be had
// within the timeout.
class RobustLock {
 public:
  RobustLock(pthread_mutex_t& mutex, std::chrono::milliseconds timeout)
      : mutex_(mutex), result_(lock_robust(mutex, timeout)) {}
  ~RobustLock() {
    if (held()) ::pthread_mutex_unlock(&mutex_);
  }
  RobustLock(const RobustLock&) = delete;
  RobustLock& operator=(const RobustLock&) = delete;

  bool held() const { return result_ != LockResult::kTimedOut; }
  // Held, from a holder that died with it: what it was doing is half done.
  bool recovered() const { return result_ == LockResult::kRecovered; }

 private:
  pthread_mutex_t& mutex_;
  const LockResult result_;
};

// Tells ThreadSanitizer (when built with it) that `mutex`, a robust mutex whose
// lock returned EOWNERDEAD, is now held by the calling thread.
void note_recovered_lock(pthread_mutex_t* mutex);

}  // namespace shmetrics::shm
