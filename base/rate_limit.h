// A token bucket: at most `burst` events at once, refilled at `perSecond`. For what an untrusted
// peer can make us do without end, such as writing its log lines into ours.
#pragma once

#include <chrono>
#include <cstdint>

namespace fcvm {

class RateLimit {
 public:
  using Clock = std::chrono::steady_clock;

  RateLimit(double burst, double perSecond);

  // True if one more event may happen at `now`; it then takes one token.
  bool allow(Clock::time_point now = Clock::now());
  // Events refused since the last allowed one, and resets the count: for a "K suppressed" note.
  uint64_t takeRefused();

 private:
  double burst_;
  double perSecond_;
  double tokens_;
  Clock::time_point last_;
  uint64_t refused_ = 0;
};

}  // namespace fcvm
