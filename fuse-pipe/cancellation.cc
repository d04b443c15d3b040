#include "fuse-pipe/cancellation.h"

#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

namespace fcvm::fusepipe {

namespace {

int wakeSignal() { return SIGRTMIN + 1; }

void ignoreWake(int) {}

// Installs the do-nothing handler once per process. Without SA_RESTART, so that blocking calls
// return EINTR instead of being restarted by the kernel.
void installWakeHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_handler = ignoreWake;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    ::sigaction(wakeSignal(), &action, nullptr);
  });
}

// While alive, the calling thread receives the wake signal every kWakeInterval.
class PeriodicWake {
 public:
  PeriodicWake() {
    sigevent event{};
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = wakeSignal();
    event._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));
    if (::timer_create(CLOCK_MONOTONIC, &event, &timer_) != 0) return;  // then: cancel() only
    armed_ = true;
    auto ns = std::chrono::nanoseconds(kWakeInterval).count();
    itimerspec spec{};
    spec.it_interval = {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    spec.it_value = spec.it_interval;
    ::timer_settime(timer_, 0, &spec, nullptr);
  }
  ~PeriodicWake() {
    if (armed_) ::timer_delete(timer_);
  }
  PeriodicWake(const PeriodicWake&) = delete;
  PeriodicWake& operator=(const PeriodicWake&) = delete;

 private:
  timer_t timer_{};
  bool armed_ = false;
};

}  // namespace

void Cancellation::cancel() {
  std::lock_guard lock(mutex_);
  cancelled_ = true;
  if (waiting_) ::pthread_kill(waiter_, wakeSignal());
}

Errno runInterruptibly(Cancellation* cancellation, const std::function<int()>& attempt) {
  if (!cancellation) {
    while (attempt() != 0) {
      if (errno != EINTR) return errno;
    }
    return 0;
  }
  installWakeHandler();
  sigset_t wake, previous;
  sigemptyset(&wake);
  sigaddset(&wake, wakeSignal());
  ::pthread_sigmask(SIG_UNBLOCK, &wake, &previous);
  {
    std::lock_guard lock(cancellation->mutex_);
    cancellation->waiter_ = ::pthread_self();
    cancellation->waiting_ = true;
  }
  Errno result = 0;
  {
    PeriodicWake periodic;
    while (true) {
      if (cancellation->cancelled()) {
        result = EINTR;
        break;
      }
      if (attempt() == 0) break;
      if (errno != EINTR) {
        result = errno;
        break;
      }
    }
  }
  {
    std::lock_guard lock(cancellation->mutex_);
    cancellation->waiting_ = false;  // no signal is sent to this thread after this point
  }
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return result;
}

}  // namespace fcvm::fusepipe
