#include "agent/realtime_clock.h"

#include <kj/debug.h>
#include <time.h>

namespace fcvm::agent {

void SystemRealtimeClock::set(int64_t realtimeNs) {
  KJ_REQUIRE(realtimeNs > 0, "clock: time before the epoch", realtimeNs);
  struct timespec ts;
  ts.tv_sec = realtimeNs / 1'000'000'000;
  ts.tv_nsec = realtimeNs % 1'000'000'000;
  KJ_SYSCALL(clock_settime(CLOCK_REALTIME, &ts), "set CLOCK_REALTIME");
}

}  // namespace fcvm::agent
