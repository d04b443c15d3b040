// Cancellation: one thread stops another thread's blocking system call (a lock wait) early.
//
// The blocking thread calls runInterruptibly(); a canceller calls cancel(), which sets a flag and
// sends the waiting thread kWakeSignal, whose handler does nothing but is installed without
// SA_RESTART, so the blocked call returns EINTR and the loop sees the flag. A cancel() that lands
// between the flag check and the call would be lost, so while it waits the thread also gets the
// signal from a periodic per-thread timer: a cancellation takes effect within kWakeInterval at
// worst, and at once in the common case.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>

#include "fuse-pipe/error.h"

namespace fcvm::fusepipe {

inline constexpr std::chrono::milliseconds kWakeInterval{100};

class Cancellation {
 public:
  // Any thread; idempotent. Wakes the thread inside runInterruptibly(), if any.
  void cancel();
  bool cancelled() const { return cancelled_; }

 private:
  friend Errno runInterruptibly(Cancellation* cancellation, const std::function<int()>& attempt);

  std::atomic<bool> cancelled_ = false;
  std::mutex mutex_;  // guards waiter_ and waiting_
  pthread_t waiter_{};
  bool waiting_ = false;
};

// Calls `attempt` (a system call wrapper returning -1 with errno set on failure) until it
// succeeds (0), fails with an errno other than EINTR (that errno), or `cancellation` is cancelled
// (EINTR). With a null cancellation it retries EINTR until success or another error.
Errno runInterruptibly(Cancellation* cancellation, const std::function<int()>& attempt);

}  // namespace fcvm::fusepipe
